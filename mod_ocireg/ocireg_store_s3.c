/* The S3 / Cloudflare R2 store.
 *
 * Keys under the configured prefix:
 *   blobs/sha256/<hex>        a blob's bytes, or for blobs that came as a
 *                             multipart upload an empty pointer object whose
 *                             metadata names the data object (x-amz-meta-
 *                             ocireg-data) and its size (ocireg-size)
 *   data/<uuid>               the data object a multipart upload completed
 *   repositories/<name>/...   links, tags, referrers, as on the filesystem
 *   uploads/<uuid>/tail       bytes of an upload that do not fill a part yet
 *
 * An upload session is one multipart upload. Every part but the last is
 * exactly part_size bytes (R2 rejects anything else at Complete): a part is
 * sent while the request body arrives, and whatever is left at the end of
 * a request goes to the tail object, so any process on any host continues
 * from the state. Finishing renames nothing and copies nothing: it uploads
 * the tail as the last part, completes, and writes the pointer. */
#include <string.h>
#include <stdlib.h>
#include <apr_strings.h>
#include <openssl/evp.h>
#include <apr_file_io.h>
#include <apr_hash.h>
#include "ocireg_store.h"
#include "ocireg_s3.h"
#include "ocireg_parse.h"

#define IO_BUFFER (256 * 1024)
#define META_DATA "ocireg-data"
#define META_SIZE "ocireg-size"

typedef struct {
    ocireg_s3 *s3;
    const char *prefix;
    apr_off_t part_size;
    const char *spool_dir;
    int redirect_seconds;
    int retries;
} s3_store;

/* What a session remembers between requests; lives in the session slot. */
typedef struct {
    apr_uint64_t part_size;      /* fixed when the session starts */
    apr_uint32_t parts;          /* full parts uploaded */
    apr_uint32_t tail;           /* bytes in the tail object */
    /* SHA-256 chained over the ETags of the full parts, in order: what
     * Complete is about to join must be what this session's requests sent,
     * never parts a racing request (one that lost its lease) rewrote. */
    unsigned char etags[32];
    char upload_id[OCIREG_DRIVER_STATE_SIZE - 48];
} s3_state;

typedef char s3_state_fits[sizeof(s3_state) <= OCIREG_DRIVER_STATE_SIZE
                               ? 1 : -1];

struct ocireg_upload_writer {
    ocireg_store *s;
    s3_store *st;
    apr_pool_t *p;
    const char *uuid;
    s3_state state;
    s3_state opened;            /* the state at open: the fallback */
    apr_status_t failed;        /* a write failed: nothing more is kept */
    apr_file_t *spool;          /* bytes of the current, unfinished part */
    apr_off_t cur;              /* how many */
    apr_off_t expected;         /* still to come in this request, or -1 */
    int changed;                /* the tail object must be rewritten */
    ocireg_s3_stream *part;     /* part being sent, or NULL */
    char *buf;
};

#define S3(s) ((s3_store *)(s)->impl)

static const char *key(ocireg_store *s, apr_pool_t *p, const char *a,
                       const char *b, const char *c)
{
    return apr_pstrcat(p, S3(s)->prefix, a, b, c, NULL);
}


static const char *blob_key(ocireg_store *s, apr_pool_t *p, const char *d)
{
    return key(s, p, "blobs/", ocireg_digest_path(p, d), "");
}

static const char *repo_key(ocireg_store *s, apr_pool_t *p, const char *name,
                            const char *rest)
{
    return key(s, p, "repositories/", name, rest);
}

static apr_status_t put_empty(ocireg_store *s, apr_pool_t *p, const char *k)
{
    return ocireg_s3_put(S3(s)->s3, p, k, "", 0, NULL, 0, NULL);
}

static apr_status_t exists(ocireg_store *s, apr_pool_t *p, const char *k)
{
    return ocireg_s3_head(S3(s)->s3, p, k, NULL);
}

/* Blobs */

/* Where a blob's bytes are and how many there are. */
static apr_status_t locate(ocireg_store *s, apr_pool_t *p, const char *digest,
                           const char **data_key, apr_off_t *size)
{
    ocireg_s3_result res;
    const char *k = blob_key(s, p, digest), *dk, *sz;
    apr_status_t rv = ocireg_s3_head(S3(s)->s3, p, k, &res);
    if (rv != APR_SUCCESS)
        return rv;
    dk = apr_table_get(res.meta, META_DATA);
    sz = apr_table_get(res.meta, META_SIZE);
    *data_key = dk ? dk : k;
    *size = dk && sz ? apr_atoi64(sz) : res.content_length;
    return APR_SUCCESS;
}

static apr_status_t s3_blob_stat(ocireg_store *s, apr_pool_t *p,
                                 const char *digest, apr_off_t *size)
{
    const char *dk;
    return locate(s, p, digest, &dk, size);
}

typedef struct {
    ocireg_s3 *s3;
    const char *key;
} send_ctx;

static apr_status_t s3_send(void *ctx, apr_pool_t *p, apr_off_t offset,
                            apr_off_t len, ocireg_sink_fn sink,
                            void *sink_ctx)
{
    send_ctx *c = ctx;
    if (len == 0)
        return APR_SUCCESS;
    return ocireg_s3_get_stream(c->s3, p, c->key, offset, len, sink,
                                sink_ctx, NULL);
}

static apr_status_t s3_blob_open(ocireg_store *s, apr_pool_t *p,
                                 const char *digest, ocireg_blob_body *out)
{
    send_ctx *c = apr_pcalloc(p, sizeof(*c));
    apr_status_t rv;
    memset(out, 0, sizeof(*out));
    rv = locate(s, p, digest, &c->key, &out->size);
    if (rv != APR_SUCCESS)
        return rv;
    c->s3 = S3(s)->s3;
    out->send = s3_send;
    out->ctx = c;
    if (S3(s)->redirect_seconds > 0)
        out->redirect_url = ocireg_s3_presign_get(c->s3, p, c->key,
                                                  S3(s)->redirect_seconds);
    return APR_SUCCESS;
}

static apr_status_t s3_blob_read_all(ocireg_store *s, apr_pool_t *p,
                                     const char *digest, apr_size_t max,
                                     char **data, apr_size_t *len)
{
    ocireg_s3_result res;
    apr_status_t rv = ocireg_s3_get_small(S3(s)->s3, p, blob_key(s, p, digest),
                                          max, &res);
    if (rv != APR_SUCCESS)
        return rv;
    *data = res.body;
    *len = res.body_len;
    return APR_SUCCESS;
}

static apr_status_t s3_blob_put(ocireg_store *s, apr_pool_t *p,
                                const char *digest, const char *data,
                                apr_size_t len)
{
    return ocireg_s3_put(S3(s)->s3, p, blob_key(s, p, digest), data, len,
                         NULL, 0, NULL);
}

/* Links */

static const char *link_key(ocireg_store *s, apr_pool_t *p, const char *name,
                            const char *kind, const char *digest)
{
    return repo_key(s, p, name,
                    apr_pstrcat(p, "/", kind, "/",
                                ocireg_digest_path(p, digest),
                                NULL));
}

static apr_status_t s3_blob_link(ocireg_store *s, apr_pool_t *p,
                                 const char *name, const char *digest)
{
    return put_empty(s, p, link_key(s, p, name, "_layers", digest));
}

static apr_status_t s3_blob_linked(ocireg_store *s, apr_pool_t *p,
                                   const char *name, const char *digest)
{
    return exists(s, p, link_key(s, p, name, "_layers", digest));
}

static apr_status_t delete_existing(ocireg_store *s, apr_pool_t *p,
                                    const char *k)
{
    /* S3 deletes quietly; the API wants to know whether it was there. */
    apr_status_t rv = exists(s, p, k);
    if (rv != APR_SUCCESS)
        return rv;
    return ocireg_s3_delete(S3(s)->s3, p, k, NULL);
}

static apr_status_t s3_blob_unlink(ocireg_store *s, apr_pool_t *p,
                                   const char *name, const char *digest)
{
    return delete_existing(s, p, link_key(s, p, name, "_layers", digest));
}

static apr_status_t s3_manifest_link(ocireg_store *s, apr_pool_t *p,
                                     const char *name, const char *digest,
                                     const char *media_type)
{
    return ocireg_s3_put(S3(s)->s3, p,
                         link_key(s, p, name, "_manifests", digest),
                         media_type, strlen(media_type), NULL, 0, NULL);
}

static apr_status_t s3_manifest_linked(ocireg_store *s, apr_pool_t *p,
                                       const char *name, const char *digest,
                                       const char **media_type)
{
    ocireg_s3_result res;
    apr_status_t rv = ocireg_s3_get_small(
        S3(s)->s3, p, link_key(s, p, name, "_manifests", digest), 1024, &res);
    if (rv == APR_SUCCESS && media_type)
        *media_type = res.body;
    return rv;
}

static apr_status_t s3_manifest_unlink(ocireg_store *s, apr_pool_t *p,
                                       const char *name, const char *digest)
{
    return delete_existing(s, p, link_key(s, p, name, "_manifests", digest));
}

/* Tags */

static const char *tag_key(ocireg_store *s, apr_pool_t *p, const char *name,
                           const char *tag)
{
    return repo_key(s, p, name, apr_pstrcat(p, "/_tags/", tag, NULL));
}

static apr_status_t s3_tag_set(ocireg_store *s, apr_pool_t *p,
                               const char *name, const char *tag,
                               const char *digest)
{
    return ocireg_s3_put(S3(s)->s3, p, tag_key(s, p, name, tag), digest,
                         strlen(digest), NULL, 0, NULL);
}

static apr_status_t s3_tag_get(ocireg_store *s, apr_pool_t *p,
                               const char *name, const char *tag,
                               const char **digest)
{
    ocireg_s3_result res;
    apr_status_t rv = ocireg_s3_get_small(S3(s)->s3, p,
                                          tag_key(s, p, name, tag),
                                          OCIREG_DIGEST_MAX, &res);
    if (rv == APR_SUCCESS)
        *digest = res.body;
    return rv;
}

static apr_status_t s3_tag_delete(ocireg_store *s, apr_pool_t *p,
                                  const char *name, const char *tag)
{
    return delete_existing(s, p, tag_key(s, p, name, tag));
}

static apr_status_t s3_repo_exists(ocireg_store *s, apr_pool_t *p,
                                   const char *name)
{
    static const char *const kinds[] = {"/_manifests/", "/_layers/"};
    apr_size_t i;
    for (i = 0; i < 2; i++) {
        apr_array_header_t *keys;
        apr_status_t rv = ocireg_s3_list(S3(s)->s3, p,
                                         repo_key(s, p, name, kinds[i]), NULL,
                                         &keys);
        if (rv != APR_SUCCESS)
            return rv;
        if (keys->nelts)
            return APR_SUCCESS;
    }
    return APR_ENOENT;
}

static apr_status_t s3_tag_list(ocireg_store *s, apr_pool_t *p,
                                const char *name, apr_array_header_t **tags)
{
    apr_status_t rv = ocireg_s3_list(S3(s)->s3, p,
                                     repo_key(s, p, name, "/_tags/"), NULL,
                                     tags);
    if (rv == APR_SUCCESS && (*tags)->nelts == 0)
        rv = s3_repo_exists(s, p, name);
    return rv;
}

/* Referrers */

static const char *referrer_prefix(ocireg_store *s, apr_pool_t *p,
                                   const char *name, const char *subject)
{
    return repo_key(s, p, name,
                    apr_pstrcat(p, "/_referrers/",
                                ocireg_digest_path(p, subject),
                                "/", NULL));
}

static apr_status_t s3_referrer_add(ocireg_store *s, apr_pool_t *p,
                                    const char *name, const char *subject,
                                    const char *digest,
                                    const char *descriptor)
{
    return ocireg_s3_put(S3(s)->s3, p,
                         apr_pstrcat(p, referrer_prefix(s, p, name, subject),
                                     digest, NULL),
                         descriptor, strlen(descriptor), NULL, 0, NULL);
}

static apr_status_t s3_referrer_remove(ocireg_store *s, apr_pool_t *p,
                                       const char *name, const char *subject,
                                       const char *digest)
{
    return ocireg_s3_delete(S3(s)->s3, p,
                            apr_pstrcat(p,
                                        referrer_prefix(s, p, name, subject),
                                        digest, NULL),
                            NULL);
}

static apr_status_t s3_referrer_list(ocireg_store *s, apr_pool_t *p,
                                     const char *name, const char *subject,
                                     apr_array_header_t **descriptors)
{
    const char *prefix = referrer_prefix(s, p, name, subject);
    apr_array_header_t *keys;
    apr_status_t rv = ocireg_s3_list(S3(s)->s3, p, prefix, NULL, &keys);
    int i;
    *descriptors = apr_array_make(p, 8, sizeof(const char *));
    if (rv != APR_SUCCESS)
        return rv;
    /* ListObjectsV2 returns keys in byte order: digest order. */
    for (i = 0; i < keys->nelts; i++) {
        ocireg_s3_result res;
        if (ocireg_s3_get_small(S3(s)->s3, p,
                                apr_pstrcat(p, prefix,
                                            APR_ARRAY_IDX(keys, i,
                                                          const char *),
                                            NULL),
                                1024 * 1024, &res)
            == APR_SUCCESS)
            APR_ARRAY_PUSH(*descriptors, const char *) = res.body;
    }
    return APR_SUCCESS;
}

/* Catalog: every link key is repositories/<name>/_<kind>/...; the name is
 * what precedes the first "/_" (no name component starts with '_'). */
static apr_status_t s3_repo_list(ocireg_store *s, apr_pool_t *p,
                                 apr_array_header_t **names)
{
    apr_array_header_t *keys;
    apr_hash_t *seen = apr_hash_make(p);
    apr_status_t rv = ocireg_s3_list(S3(s)->s3, p,
                                     key(s, p, "repositories/", "", ""), NULL,
                                     &keys);
    int i;
    *names = apr_array_make(p, 16, sizeof(const char *));
    if (rv != APR_SUCCESS)
        return rv;
    for (i = 0; i < keys->nelts; i++) {
        const char *k = APR_ARRAY_IDX(keys, i, const char *);
        const char *cut = strstr(k, "/_");
        const char *name;
        if (!cut || !(strncmp(cut, "/_layers/", 9) == 0
                      || strncmp(cut, "/_manifests/", 12) == 0))
            continue;
        name = apr_pstrmemdup(p, k, (apr_size_t)(cut - k));
        if (!apr_hash_get(seen, name, APR_HASH_KEY_STRING)
            && ocireg_name_valid(name)) {
            apr_hash_set(seen, name, APR_HASH_KEY_STRING, name);
            APR_ARRAY_PUSH(*names, const char *) = name;
        }
    }
    return APR_SUCCESS;
}

/* Uploads */

/* A tail is named by where it starts and how long it is, so a request
 * that fails half-way never overwrites the tail the saved session state
 * points at. */
static const char *tail_key(ocireg_store *s, apr_pool_t *p, const char *uuid,
                            const s3_state *st, apr_off_t len)
{
    return key(s, p, "uploads/", uuid,
               apr_psprintf(p, "/tail.%u.%" APR_OFF_T_FMT, st->parts, len));
}

/* Records and locks carry zero-padded versions, so that a listing sorts
 * them. */
static const char *state_key(ocireg_store *s, apr_pool_t *p, const char *uuid,
                             apr_uint64_t version)
{
    return key(s, p, "uploads/", uuid,
               apr_psprintf(p, "/state.%020" APR_UINT64_T_FMT, version));
}

static const char *lock_key(ocireg_store *s, apr_pool_t *p, const char *uuid,
                            apr_uint64_t version, int attempt)
{
    return key(s, p, "uploads/", uuid,
               apr_psprintf(p, "/lock.%020" APR_UINT64_T_FMT ".%d", version,
                            attempt));
}

/* The version of the session's latest record: 0 and APR_ENOENT when it
 * has none. */
static apr_status_t latest_state(ocireg_store *s, apr_pool_t *p,
                                 const char *uuid, apr_uint64_t *version)
{
    apr_array_header_t *keys;
    apr_status_t rv = ocireg_s3_list(S3(s)->s3, p,
                                     key(s, p, "uploads/", uuid, "/state."),
                                     NULL, &keys);
    int i;
    *version = 0;
    for (i = 0; rv == APR_SUCCESS && i < keys->nelts; i++) {
        const char *v = APR_ARRAY_IDX(keys, i, const char *);
        char *end;
        apr_uint64_t n = (apr_uint64_t)apr_strtoi64(v, &end, 10);
        if (*end == '\0' && n > *version)
            *version = n;
    }
    if (rv == APR_SUCCESS && *version == 0)
        rv = APR_ENOENT;
    return rv;
}

/* Removes everything an upload kept under uploads/<uuid>/: tails of
 * failed requests included. */
static apr_status_t delete_upload_objects(ocireg_store *s, apr_pool_t *p,
                                          const char *uuid)
{
    const char *prefix = key(s, p, "uploads/", uuid, "/");
    apr_array_header_t *keys;
    apr_status_t rv = ocireg_s3_list(S3(s)->s3, p, prefix, NULL, &keys);
    int i;
    for (i = 0; rv == APR_SUCCESS && i < keys->nelts; i++)
        rv = ocireg_s3_delete(S3(s)->s3, p,
                              apr_pstrcat(p, prefix,
                                          APR_ARRAY_IDX(keys, i,
                                                        const char *),
                                          NULL),
                              NULL);
    return rv;
}

static const char *data_key(ocireg_store *s, apr_pool_t *p, const char *uuid)
{
    return key(s, p, "data/", uuid, "");
}

static apr_status_t s3_upload_create(ocireg_store *s, apr_pool_t *p,
                                     const char *uuid, unsigned char *state)
{
    s3_state *st = (s3_state *)state;
    (void)p;
    (void)uuid;
    memset(st, 0, sizeof(*st));
    /* The multipart upload itself starts with the first full part: a blob
     * smaller than one part never needs one. */
    st->part_size = (apr_uint64_t)S3(s)->part_size;
    return APR_SUCCESS;
}

static apr_status_t spool_sink(void *ctx, const char *buf, apr_size_t n)
{
    return apr_file_write_full((apr_file_t *)ctx, buf, n, NULL);
}

static apr_ssize_t spool_reader(void *ctx, char *buf, apr_size_t n)
{
    apr_size_t got = n;
    apr_status_t rv = apr_file_read((apr_file_t *)ctx, buf, &got);
    if (rv == APR_EOF)
        return 0;
    return rv == APR_SUCCESS ? (apr_ssize_t)got : -1;
}

static apr_status_t spool_open(ocireg_store *s, apr_pool_t *p,
                               apr_file_t **f)
{
    char *tmpl = apr_pstrcat(p, S3(s)->spool_dir, "/ocireg-spool-XXXXXX",
                             NULL);
    return apr_file_mktemp(f, tmpl,
                           APR_FOPEN_CREATE | APR_FOPEN_READ
                               | APR_FOPEN_WRITE | APR_FOPEN_EXCL
                               | APR_FOPEN_DELONCLOSE | APR_FOPEN_BINARY,
                           p);
}

static apr_status_t spool_rewind(apr_file_t *f)
{
    apr_off_t zero = 0;
    return apr_file_seek(f, APR_SET, &zero);
}

/* Loads the tail object into a fresh spool: a bounded copy on local disk,
 * never in memory. */
static apr_status_t load_tail(ocireg_store *s, apr_pool_t *p,
                              const char *uuid, const s3_state *st,
                              apr_file_t **spool)
{
    apr_status_t rv = spool_open(s, p, spool);
    apr_off_t got = 0, len = st->tail;
    if (rv != APR_SUCCESS || len == 0)
        return rv;
    rv = ocireg_s3_get_stream(S3(s)->s3, p, tail_key(s, p, uuid, st, len),
                              0, -1,
                              spool_sink, *spool, NULL);
    if (rv == APR_SUCCESS)
        rv = apr_file_seek(*spool, APR_CUR, &got);
    if (rv == APR_SUCCESS && got != len)
        rv = APR_EGENERAL;
    return rv;
}

static apr_status_t s3_upload_open(ocireg_store *s, apr_pool_t *p,
                                   const char *uuid, unsigned char *state,
                                   apr_off_t offset, apr_off_t expected,
                                   ocireg_upload_writer **out)
{
    ocireg_upload_writer *w = apr_pcalloc(p, sizeof(*w));
    apr_status_t rv;
    w->s = s;
    w->st = S3(s);
    w->p = p;
    w->uuid = uuid;
    memcpy(&w->state, state, sizeof(w->state));
    w->opened = w->state;
    if ((apr_off_t)(w->state.parts * w->state.part_size + w->state.tail)
        != offset)
        return APR_EGENERAL;
    rv = load_tail(s, p, uuid, &w->state, &w->spool);
    if (rv != APR_SUCCESS)
        return rv;
    w->cur = w->state.tail;
    w->expected = expected;
    w->buf = apr_palloc(p, IO_BUFFER);
    *out = w;
    return APR_SUCCESS;
}

/* etags' = SHA-256(etags || ETag without its quotes) */
static void chain_etag(unsigned char *etags, const char *etag)
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    apr_size_t len = strlen(etag);
    unsigned int n = 0;
    if (len >= 2 && etag[0] == '"' && etag[len - 1] == '"') {
        etag++;
        len -= 2;
    }
    if (!ctx)
        return;
    EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
    EVP_DigestUpdate(ctx, etags, 32);
    EVP_DigestUpdate(ctx, etag, len);
    EVP_DigestFinal_ex(ctx, etags, &n);
    EVP_MD_CTX_free(ctx);
}

/* Starts sending the current part: what the spool holds goes first, the
 * rest of the part follows as the body arrives. */
static apr_status_t start_part(ocireg_upload_writer *w)
{
    ocireg_store *s = w->s;
    ocireg_s3 *s3 = w->st->s3;
    apr_status_t rv;
    apr_off_t sent = 0;

    if (!w->state.upload_id[0]) {
        const char *id;
        rv = ocireg_s3_mpu_create(s3, w->p, data_key(s, w->p, w->uuid), &id);
        if (rv != APR_SUCCESS)
            return rv;
        if (strlen(id) >= sizeof(w->state.upload_id))
            return APR_ENAMETOOLONG;
        strcpy(w->state.upload_id, id);
    }
    rv = ocireg_s3_part_start(s3, w->p, data_key(s, w->p, w->uuid),
                              w->state.upload_id, (int)w->state.parts + 1,
                              (apr_off_t)w->state.part_size, &w->part);
    if (rv == APR_SUCCESS)
        rv = spool_rewind(w->spool);
    while (rv == APR_SUCCESS && sent < w->cur) {
        apr_size_t n = IO_BUFFER;
        if ((apr_off_t)n > w->cur - sent)
            n = (apr_size_t)(w->cur - sent);
        rv = apr_file_read_full(w->spool, w->buf, n, NULL);
        if (rv == APR_SUCCESS)
            rv = ocireg_s3_part_write(w->part, w->buf, n);
        sent += (apr_off_t)n;
    }
    if (rv != APR_SUCCESS && w->part) {
        ocireg_s3_part_abort(w->part);
        w->part = NULL;
    }
    return rv;
}

/* A part whose transfer failed is sent again from the spool, which holds
 * every byte of it received so far: nothing is asked of the client. */
static apr_status_t restart_part(ocireg_upload_writer *w, apr_status_t rv)
{
    int attempt;
    for (attempt = 0; rv == OCIREG_S3_EUNAVAILABLE
                      && attempt < w->st->retries; attempt++) {
        if (w->part)
            ocireg_s3_part_abort(w->part);
        w->part = NULL;
        apr_sleep(apr_time_from_msec(200) << attempt);
        rv = start_part(w);
    }
    if (rv != APR_SUCCESS && w->part) {
        ocireg_s3_part_abort(w->part);
        w->part = NULL;
    }
    return rv;
}

static apr_status_t write_some(ocireg_upload_writer *w, const char *buf,
                               apr_size_t len);

/* The caller counts a buffer as written only when all of it was; after a
 * failure the spool may hold part of it, so the request keeps nothing and
 * the session stays at its previous offset. */
static apr_status_t s3_upload_write(ocireg_upload_writer *w, const char *buf,
                                    apr_size_t len)
{
    if (w->failed == APR_SUCCESS)
        w->failed = write_some(w, buf, len);
    return w->failed;
}

static apr_status_t write_some(ocireg_upload_writer *w, const char *buf,
                               apr_size_t len)
{
    apr_off_t psize = (apr_off_t)w->state.part_size;
    apr_status_t rv;

    while (len > 0) {
        apr_size_t n = len;
        if ((apr_off_t)n > psize - w->cur)
            n = (apr_size_t)(psize - w->cur);
        rv = apr_file_write_full(w->spool, buf, n, NULL);
        if (rv != APR_SUCCESS)
            return restart_part(w, rv);
        w->changed = 1;
        w->cur += (apr_off_t)n;
        if (w->expected >= 0)
            w->expected -= (apr_off_t)n;
        /* A part goes out only when it can be filled: with the request's
         * length known that is certain; without it we start anyway and
         * fall back to the tail if the body ends first. Starting sends
         * the spool, these bytes included. */
        if (!w->part && (w->expected < 0 || w->cur + w->expected >= psize))
            rv = restart_part(w, start_part(w));
        else if (w->part)
            rv = restart_part(w, ocireg_s3_part_write(w->part, buf, n));
        if (rv != APR_SUCCESS)
            return rv;
        buf += n;
        len -= n;
        if (w->cur == psize) {
            const char *etag = NULL;
            int attempt;
            rv = ocireg_s3_part_finish(w->part, &etag);
            w->part = NULL;
            for (attempt = 0; rv == OCIREG_S3_EUNAVAILABLE
                              && attempt < w->st->retries; attempt++) {
                apr_sleep(apr_time_from_msec(200) << attempt);
                rv = start_part(w);
                if (rv == APR_SUCCESS)
                    rv = ocireg_s3_part_finish(w->part, &etag);
                w->part = NULL;
            }
            if (rv != APR_SUCCESS)
                return rv;
            chain_etag(w->state.etags, etag ? etag : "");
            w->state.parts++;
            w->cur = 0;
            rv = apr_file_trunc(w->spool, 0);
            if (rv == APR_SUCCESS)
                rv = spool_rewind(w->spool);
            if (rv != APR_SUCCESS)
                return rv;
        }
    }
    return APR_SUCCESS;
}

static apr_status_t s3_upload_close(ocireg_upload_writer *w,
                                    unsigned char *state)
{
    ocireg_store *s = w->s;
    apr_status_t rv = w->failed;

    if (w->part) {
        /* The body ended inside a part: that part is not created; its
         * bytes are in the spool and become the tail. */
        ocireg_s3_part_abort(w->part);
        w->part = NULL;
        /* A multipart upload without parts is not kept waiting: the
         * next full part starts a new one. */
        if (rv == APR_SUCCESS && w->state.parts == 0
            && w->state.upload_id[0]) {
            ocireg_s3_mpu_abort(w->st->s3, w->p, data_key(s, w->p, w->uuid),
                                w->state.upload_id);
            w->state.upload_id[0] = '\0';
            w->changed = 1;
        }
    }
    if (rv == APR_SUCCESS && w->changed) {
        if (w->cur > 0) {
            rv = spool_rewind(w->spool);
            if (rv == APR_SUCCESS)
                rv = ocireg_s3_put_stream(
                    w->st->s3, w->p,
                    tail_key(s, w->p, w->uuid, &w->state, w->cur), NULL,
                    w->cur, spool_reader, w->spool, NULL);
        }
        /* The previous tail goes once the new state is saved
         * (upload_settle): until then it is what that state names. */
        w->state.tail = (apr_uint32_t)w->cur;
    }
    apr_file_close(w->spool);
    if (rv != APR_SUCCESS) {
        /* Back to the state at open, which the old tail object still
         * matches; parts sent since are overwritten on the retry. The
         * multipart upload, if this request started it, is kept in the
         * state so that it is continued or aborted, not lost. */
        s3_state fallback = w->opened;
        memcpy(fallback.upload_id, w->state.upload_id,
               sizeof(fallback.upload_id));
        memcpy(state, &fallback, sizeof(fallback));
        return rv;
    }
    memcpy(state, &w->state, sizeof(w->state));
    return APR_SUCCESS;
}

/* Multipart uploads of this session that its state does not name: a
 * process killed after starting one, before any record could say so. */
static void abort_strays(ocireg_store *s, apr_pool_t *p, const char *uuid,
                         const char *keep)
{
    const char *dk = data_key(s, p, uuid);
    apr_array_header_t *mpus;
    int i;
    if (ocireg_s3_mpu_list(S3(s)->s3, p, dk, &mpus) != APR_SUCCESS)
        return;
    for (i = 0; i < mpus->nelts; i++) {
        const ocireg_s3_upload *u = &APR_ARRAY_IDX(mpus, i, ocireg_s3_upload);
        if (strcmp(u->key, dk) == 0 && strcmp(u->upload_id, keep) != 0)
            ocireg_s3_mpu_abort(S3(s)->s3, p, dk, u->upload_id);
    }
}

static apr_status_t s3_upload_abort(ocireg_store *s, apr_pool_t *p,
                                    const char *uuid, unsigned char *state)
{
    s3_state *st = (s3_state *)state;
    apr_status_t rv = APR_SUCCESS;
    if (st->upload_id[0]) {
        rv = ocireg_s3_mpu_abort(S3(s)->s3, p, data_key(s, p, uuid),
                                 st->upload_id);
        if (rv == APR_ENOENT)
            rv = APR_SUCCESS;
    }
    if (rv == APR_SUCCESS) {
        abort_strays(s, p, uuid, "");
        rv = delete_upload_objects(s, p, uuid);
    }
    return rv;
}

static apr_status_t s3_upload_settle(ocireg_store *s, apr_pool_t *p,
                                     const char *uuid,
                                     const unsigned char *before,
                                     const unsigned char *after)
{
    const s3_state *b = (const s3_state *)before;
    const s3_state *a = (const s3_state *)after;
    if (b->tail == 0 || (b->parts == a->parts && b->tail == a->tail))
        return APR_SUCCESS;
    return ocireg_s3_delete(S3(s)->s3, p, tail_key(s, p, uuid, b, b->tail),
                            NULL);
}

/* Creates `k` unless it exists (APR_EEXIST), then removes `previous`
 * (if any), which it replaces: numbered records whose writers race. */
static apr_status_t create_replacing(ocireg_store *s, apr_pool_t *p,
                                     const char *k, const char *previous,
                                     const void *data, apr_size_t len)
{
    apr_status_t rv = ocireg_s3_put(S3(s)->s3, p, k, data, len, NULL, 1,
                                    NULL);
    if (rv == APR_SUCCESS && previous)
        ocireg_s3_delete(S3(s)->s3, p, previous, NULL);
    return rv;
}

static apr_status_t s3_state_put(ocireg_store *s, apr_pool_t *p,
                                 const char *uuid, apr_uint64_t version,
                                 const void *data, apr_size_t len)
{
    /* Create-only: of two writers of one version (a holder whose lease ran
     * out, and its successor), exactly one succeeds. */
    return create_replacing(
        s, p, state_key(s, p, uuid, version),
        version > 1 ? state_key(s, p, uuid, version - 1) : NULL, data, len);
}

static apr_status_t s3_state_get(ocireg_store *s, apr_pool_t *p,
                                 const char *uuid, apr_uint64_t *version,
                                 void **data, apr_size_t *len)
{
    ocireg_s3_result res;
    apr_status_t rv;
    int attempt;
    /* A record listed may be replaced before it is read: list again. */
    for (attempt = 0; attempt < 5; attempt++) {
        rv = latest_state(s, p, uuid, version);
        if (rv != APR_SUCCESS)
            return rv;
        rv = ocireg_s3_get_small(S3(s)->s3, p,
                                 state_key(s, p, uuid, *version), 64 * 1024,
                                 &res);
        if (rv != APR_ENOENT)
            break;
    }
    if (rv == APR_SUCCESS) {
        *data = res.body;
        *len = res.body_len;
    }
    return rv;
}

/* The lock is an object created with If-None-Match: *, so of two hosts
 * only one creates it. Its name holds the version it changes, and an
 * attempt number, so that taking over a dead holder's lock is itself a
 * create that only one taker wins. */
#define LOCK_ATTEMPTS 64

struct ocireg_upload_lock {
    ocireg_store *s;
    apr_pool_t *p;
    const char *uuid;
    apr_uint64_t version;
    int attempt;                 /* locks 0..attempt go at unlock */
    int held;
    ocireg_lock_owner me;
    apr_interval_time_t lease;
    apr_time_t renewed;
};

static apr_status_t unlock_cleanup(void *data)
{
    ocireg_upload_lock *l = data;
    apr_pool_t *tmp;
    int a;
    if (!l->held)
        return APR_SUCCESS;
    l->held = 0;
    /* Not l->p: this may run while that pool is being destroyed. */
    if (apr_pool_create(&tmp, NULL) != APR_SUCCESS)
        return APR_SUCCESS;
    for (a = l->attempt; a >= 0; a--)
        ocireg_s3_delete(S3(l->s)->s3, tmp,
                         lock_key(l->s, tmp, l->uuid, l->version, a), NULL);
    apr_pool_destroy(tmp);
    return APR_SUCCESS;
}

static void s3_upload_unlock(ocireg_upload_lock *l)
{
    apr_pool_cleanup_run(l->p, l, unlock_cleanup);
}

static apr_status_t put_lock(ocireg_upload_lock *l, int create)
{
    const char *text = ocireg_lock_owner_format(l->p, &l->me);
    return ocireg_s3_put(S3(l->s)->s3, l->p,
                         lock_key(l->s, l->p, l->uuid, l->version,
                                  l->attempt),
                         text, strlen(text), NULL, create, NULL);
}

/* Whether the lock of this attempt may be taken over; APR_ENOENT when it
 * went meanwhile. */
static apr_status_t lock_stale(ocireg_upload_lock *l, int *stale)
{
    ocireg_lock_owner holder;
    ocireg_s3_result res;
    apr_status_t rv = ocireg_s3_get_small(
        S3(l->s)->s3, l->p,
        lock_key(l->s, l->p, l->uuid, l->version, l->attempt), 4096, &res);
    if (rv != APR_SUCCESS)
        return rv;
    /* An unreadable lock was never written by a holder that works. */
    *stale = !ocireg_lock_owner_parse(res.body, res.body_len, &holder)
             || ocireg_lock_takeover(&holder, &l->me, apr_time_now(),
                                     ocireg_pid_alive);
    return APR_SUCCESS;
}

static apr_status_t s3_upload_lock(ocireg_store *s, apr_pool_t *p,
                                   const char *uuid, apr_uint64_t version,
                                   const ocireg_lock_owner *me,
                                   ocireg_upload_lock **out)
{
    ocireg_upload_lock *l = apr_pcalloc(p, sizeof(*l));
    apr_uint64_t latest;
    apr_status_t rv = APR_EBUSY;
    int retries = 0, stale;

    l->s = s;
    l->p = p;
    l->uuid = uuid;
    l->version = version;
    l->me = *me;
    l->renewed = apr_time_now();
    l->lease = me->expires - l->renewed;
    for (l->attempt = 0; l->attempt < LOCK_ATTEMPTS; l->attempt++) {
        rv = put_lock(l, 1);
        if (rv == APR_SUCCESS)
            break;
        if (rv != APR_EEXIST)
            return rv;
        rv = lock_stale(l, &stale);
        if (rv == APR_ENOENT && retries++ < 3) {
            l->attempt--; /* released meanwhile: try it again */
            continue;
        }
        if (rv != APR_SUCCESS)
            return rv;
        if (!stale)
            return APR_EBUSY;
    }
    if (rv != APR_SUCCESS)
        return APR_EBUSY;
    l->held = 1;
    apr_pool_cleanup_register(p, l, unlock_cleanup, apr_pool_cleanup_null);
    /* The lock is ours; is the record it changes still the latest? A
     * holder saves its record before it lets go of the lock, so what is
     * listed now is all there is. */
    rv = latest_state(s, p, uuid, &latest);
    if (rv == APR_SUCCESS && latest != version)
        rv = OCIREG_STORE_ESTALE;
    if (rv != APR_SUCCESS) {
        s3_upload_unlock(l);
        return rv;
    }
    *out = l;
    return APR_SUCCESS;
}

static const char *claim_key(ocireg_store *s, apr_pool_t *p,
                             const char *what, apr_int64_t period)
{
    return key(s, p, "claims/", what,
               apr_psprintf(p, ".%" APR_INT64_T_FMT, period));
}

static apr_status_t s3_claim_period(ocireg_store *s, apr_pool_t *p,
                                    const char *what, apr_int64_t period)
{
    return create_replacing(s, p, claim_key(s, p, what, period),
                            claim_key(s, p, what, period - 1), "", 0);
}

static void s3_upload_lock_drop(ocireg_upload_lock *l)
{
    l->held = 0;
    apr_pool_cleanup_kill(l->p, l, unlock_cleanup);
}

static void s3_upload_cleanup(ocireg_store *s, apr_pool_t *p,
                              const char *uuid, const unsigned char *state)
{
    abort_strays(s, p, uuid, ((const s3_state *)state)->upload_id);
    delete_upload_objects(s, p, uuid);
}

static void s3_upload_lock_keep(ocireg_upload_lock *l)
{
    apr_time_t now = apr_time_now();
    if (!l->held || now - l->renewed < l->lease / 3)
        return;
    l->renewed = now;
    l->me.expires = now + l->lease;
    /* A failed renewal is no error: the lease runs out, and the holder's
     * record, written create-only, cannot overwrite a successor's. */
    put_lock(l, 0);
}

/* Uploads a spooled tail of len bytes to key, as an object or (with an
 * upload id) as part `part`. */
static apr_status_t upload_spool(ocireg_store *s, apr_pool_t *p,
                                 apr_file_t *spool, apr_off_t len,
                                 const char *k, const char *upload_id,
                                 int part)
{
    const char *query =
        upload_id ? apr_psprintf(p, "partNumber=%d&uploadId=%s", part,
                                 upload_id)
                  : NULL;
    apr_status_t rv = spool_rewind(spool);
    if (rv != APR_SUCCESS)
        return rv;
    return ocireg_s3_put_stream(S3(s)->s3, p, k, query, len, spool_reader,
                                spool, NULL);
}

static apr_status_t s3_upload_commit(ocireg_store *s, apr_pool_t *p,
                                     const char *uuid, unsigned char *state,
                                     const char *digest, apr_off_t size)
{
    s3_state *st = (s3_state *)state;
    ocireg_s3 *s3 = S3(s)->s3;
    const char *bk = blob_key(s, p, digest), *dk = data_key(s, p, uuid);
    apr_array_header_t *parts;
    apr_table_t *meta;
    apr_file_t *spool = NULL;
    apr_status_t rv;
    int i;

    if ((apr_off_t)(st->parts * st->part_size + st->tail) != size)
        return APR_EGENERAL;
    /* Already stored (another repository, or a race): keep one copy. */
    if (exists(s, p, bk) == APR_SUCCESS)
        return s3_upload_abort(s, p, uuid, state);

    rv = load_tail(s, p, uuid, st, &spool);
    if (rv != APR_SUCCESS)
        goto leave;
    if (st->parts == 0) {
        /* Smaller than one part: one PutObject, no multipart at all. */
        rv = upload_spool(s, p, spool, st->tail, bk, NULL, 0);
        if (rv == APR_SUCCESS && st->upload_id[0])
            ocireg_s3_mpu_abort(s3, p, dk, st->upload_id);
        goto leave;
    }
    if (st->tail > 0) {
        rv = upload_spool(s, p, spool, st->tail, dk, st->upload_id,
                          (int)st->parts + 1);
        if (rv != APR_SUCCESS)
            goto leave;
    }
    rv = ocireg_s3_mpu_list_parts(s3, p, dk, st->upload_id, &parts);
    if (rv != APR_SUCCESS)
        goto leave;
    /* Refuse to complete anything R2 would reject, or a gap. */
    for (i = 0; i < parts->nelts; i++) {
        ocireg_s3_part *pt = &APR_ARRAY_IDX(parts, i, ocireg_s3_part);
        if (pt->number != i + 1
            || (i + 1 < parts->nelts
                && pt->size != (apr_off_t)st->part_size)) {
            rv = APR_EGENERAL;
            goto leave;
        }
    }
    if ((apr_uint32_t)parts->nelts != st->parts + (st->tail > 0 ? 1 : 0)) {
        rv = APR_EGENERAL;
        goto leave;
    }
    {
        unsigned char etags[32];
        memset(etags, 0, sizeof(etags));
        for (i = 0; i < (int)st->parts; i++)
            chain_etag(etags,
                       APR_ARRAY_IDX(parts, i, ocireg_s3_part).etag ?
                       APR_ARRAY_IDX(parts, i, ocireg_s3_part).etag : "");
        if (memcmp(etags, st->etags, sizeof(etags)) != 0) {
            rv = OCIREG_STORE_ECONFLICT;
            goto leave;
        }
    }
    rv = ocireg_s3_mpu_complete(s3, p, dk, st->upload_id, parts);
    if (rv != APR_SUCCESS)
        goto leave;
    meta = apr_table_make(p, 2);
    apr_table_setn(meta, META_DATA, dk);
    apr_table_setn(meta, META_SIZE, apr_off_t_toa(p, size));
    /* Create-only: when two uploads of one blob finish at once, one
     * pointer wins and the other's data goes, so one copy stays. */
    rv = ocireg_s3_put(s3, p, bk, "", 0, meta, 1, NULL);
    if (rv == APR_EEXIST) {
        ocireg_s3_delete(s3, p, dk, NULL);
        rv = APR_SUCCESS;
    }
leave:
    if (spool)
        apr_file_close(spool);
    return rv;
}

static apr_off_t s3_chunk_min_length(ocireg_store *s)
{
    return S3(s)->part_size;
}

/* "2026-11-28T04:30:25.000Z" -> apr_time_t, 0 when unreadable. */
static apr_time_t iso8601(const char *s)
{
    apr_time_exp_t t;
    apr_time_t out;
    int y, mo, d, h, mi, sec;
    if (!s || sscanf(s, "%d-%d-%dT%d:%d:%d", &y, &mo, &d, &h, &mi, &sec) != 6)
        return 0;
    memset(&t, 0, sizeof(t));
    t.tm_year = y - 1900;
    t.tm_mon = mo - 1;
    t.tm_mday = d;
    t.tm_hour = h;
    t.tm_min = mi;
    t.tm_sec = sec;
    return apr_time_exp_gmt_get(&out, &t) == APR_SUCCESS ? out : 0;
}

/* The uuid in "<prefix>data/<uuid>" or "<prefix>uploads/<uuid>/tail". */
static const char *uuid_of(apr_pool_t *p, const char *rest)
{
    const char *slash = strchr(rest, '/');
    return slash ? apr_pstrmemdup(p, rest, (apr_size_t)(slash - rest))
                 : rest;
}

/* Whether the session's record was written since `before`: a session this
 * host does not hold may still be alive on another host, or here after a
 * restart. */
static int recently_active(ocireg_store *s, apr_pool_t *p, const char *uuid,
                           apr_time_t before)
{
    ocireg_s3_result res;
    apr_uint64_t version;
    return latest_state(s, p, uuid, &version) == APR_SUCCESS
           && ocireg_s3_head(S3(s)->s3, p, state_key(s, p, uuid, version),
                             &res) == APR_SUCCESS
           && res.last_modified >= before;
}

/* Only what is older than `before` goes: another host sharing the bucket
 * may be in the middle of an upload this host does not know. */
static apr_status_t s3_upload_sweep(ocireg_store *s, apr_pool_t *p,
                                    apr_time_t before,
                                    int (*live)(void *ctx, const char *uuid),
                                    void *ctx, int *swept)
{
    ocireg_s3 *s3 = S3(s)->s3;
    const char *data_prefix = key(s, p, "data/", "", "");
    const char *tail_prefix = key(s, p, "uploads/", "", "");
    apr_array_header_t *mpus, *tails;
    apr_status_t rv;
    int i;

    *swept = 0;
    rv = ocireg_s3_mpu_list(s3, p, data_prefix, &mpus);
    for (i = 0; rv == APR_SUCCESS && i < mpus->nelts; i++) {
        const ocireg_s3_upload *u = &APR_ARRAY_IDX(mpus, i, ocireg_s3_upload);
        apr_time_t at = iso8601(u->initiated);
        const char *uuid = u->key + strlen(data_prefix);
        if (!at || at >= before || live(ctx, uuid)
            || recently_active(s, p, uuid, before))
            continue;
        if (ocireg_s3_mpu_abort(s3, p, u->key, u->upload_id) == APR_SUCCESS)
            (*swept)++;
    }
    if (rv == APR_SUCCESS)
        rv = ocireg_s3_list(s3, p, tail_prefix, NULL, &tails);
    for (i = 0; rv == APR_SUCCESS && i < tails->nelts; i++) {
        const char *rest = APR_ARRAY_IDX(tails, i, const char *);
        const char *k = apr_pstrcat(p, tail_prefix, rest, NULL);
        ocireg_s3_result res;
        if (live(ctx, uuid_of(p, rest))
            || recently_active(s, p, uuid_of(p, rest), before)
            || ocireg_s3_head(s3, p, k, &res) != APR_SUCCESS
            || !res.last_modified || res.last_modified >= before)
            continue;
        if (ocireg_s3_delete(s3, p, k, NULL) == APR_SUCCESS)
            (*swept)++;
    }
    return rv;
}

/* S3 and R2 take at most 10,000 parts. */
static apr_off_t s3_max_blob_size(ocireg_store *s)
{
    return S3(s)->part_size * 10000;
}

static const ocireg_store_ops s3_ops = {
    "s3",
    s3_blob_stat,
    s3_blob_open,
    s3_blob_read_all,
    s3_blob_put,
    s3_blob_link,
    s3_blob_linked,
    s3_blob_unlink,
    s3_manifest_link,
    s3_manifest_linked,
    s3_manifest_unlink,
    s3_tag_set,
    s3_tag_get,
    s3_tag_delete,
    s3_tag_list,
    s3_referrer_add,
    s3_referrer_remove,
    s3_referrer_list,
    s3_repo_exists,
    s3_repo_list,
    s3_upload_create,
    s3_upload_open,
    s3_upload_write,
    s3_upload_close,
    s3_upload_commit,
    s3_upload_abort,
    s3_upload_cleanup,
    s3_chunk_min_length,
    s3_max_blob_size,
    s3_upload_sweep,
    s3_upload_settle,
    s3_state_put,
    s3_state_get,
    s3_upload_lock,
    s3_claim_period,
    s3_upload_lock_keep,
    s3_upload_unlock,
    s3_upload_lock_drop,
};


apr_status_t ocireg_store_s3_create(apr_pool_t *pool,
                                    const ocireg_store_s3_config *cfg,
                                    ocireg_store **out)
{
    ocireg_store *s = apr_pcalloc(pool, sizeof(*s));
    s3_store *st = apr_pcalloc(pool, sizeof(*st));
    ocireg_s3_config c;
    apr_status_t rv;

    memset(&c, 0, sizeof(c));
    c.endpoint = cfg->endpoint;
    c.bucket = cfg->bucket;
    c.region = cfg->region;
    c.access_key = cfg->access_key;
    c.secret_key = cfg->secret_key;
    c.ca_file = cfg->ca_file;
    c.connect_timeout_ms = cfg->connect_timeout_ms;
    c.timeout_ms = cfg->timeout_ms;
    c.retries = cfg->retries;
    rv = ocireg_s3_create(pool, &c, &st->s3);
    if (rv != APR_SUCCESS)
        return rv;
    st->prefix = apr_pstrdup(pool, cfg->prefix ? cfg->prefix : "");
    st->part_size = cfg->part_size;
    st->spool_dir = apr_pstrdup(pool, cfg->spool_dir);
    st->redirect_seconds = cfg->redirect_seconds;
    st->retries = cfg->retries;
    s->ops = &s3_ops;
    s->impl = st;
    s->id = ocireg_store_id(apr_pstrcat(pool, "s3:", cfg->endpoint, "/",
                                        cfg->bucket,
                              "/", st->prefix, NULL));
    *out = s;
    return APR_SUCCESS;
}
