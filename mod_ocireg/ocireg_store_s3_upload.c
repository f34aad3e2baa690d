/* The S3 store: upload sessions (parts, tails, spool, finishing, sweep). */
#include <string.h>
#include <stdlib.h>
#include <apr_strings.h>
#include <apr_lib.h>
#include <openssl/evp.h>
#include <apr_file_io.h>
#include "ocireg_store_s3_int.h"

#define IO_BUFFER (256 * 1024)

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
    ocireg_hash_state running;  /* midstate plus the spool's bytes */
    apr_off_t expected;         /* still to come in this request, or -1 */
    int changed;                /* the tail object must be rewritten */
    ocireg_s3_stream *part;     /* part being sent, or NULL */
    char *buf;
};

/* Uploads */

/* A tail is named by a random token its state records, so no other
 * request (a failed one, or one racing on the session after a lost lease)
 * ever writes the tail a saved state points at. */
static const char *tail_key(ocireg_store *s, apr_pool_t *p, const char *uuid,
                            const s3_state *st)
{
    return key(s, p, "uploads/", uuid,
               apr_pstrcat(p, "/tail.", st->tail_token, NULL));
}

static apr_status_t new_tail_token(s3_state *st)
{
    static const char hex[] = "0123456789abcdef";
    unsigned char r[S3_TAIL_TOKEN / 2];
    apr_status_t rv = apr_generate_random_bytes(r, sizeof(r));
    apr_size_t i;
    if (rv != APR_SUCCESS)
        return rv;
    for (i = 0; i < sizeof(r); i++) {
        st->tail_token[2 * i] = hex[r[i] >> 4];
        st->tail_token[2 * i + 1] = hex[r[i] & 15];
    }
    st->tail_token[S3_TAIL_TOKEN] = '\0';
    return APR_SUCCESS;
}

apr_status_t s3_state_check(const unsigned char *state)
{
    const s3_state *st = (const s3_state *)state;
    apr_size_t i;
    if (st->magic != S3_STATE_MAGIC
        || memchr(st->upload_id, '\0', sizeof(st->upload_id)) == NULL
        || st->part_size == 0
        || st->part_size > (apr_uint64_t)5 * 1024 * 1024 * 1024
        || st->tail >= st->part_size || st->parts > S3_MAX_PARTS
        || (st->parts > 0 && !st->upload_id[0])
        || !ocireg_hash_state_valid(&st->midstate,
                                    (apr_uint64_t)st->parts * st->part_size))
        return S3_EBADSTATE;
    /* The upload id goes into a query string: printable, no separators. */
    for (i = 0; st->upload_id[i]; i++)
        if (!apr_isgraph(st->upload_id[i]) || st->upload_id[i] == '&')
            return S3_EBADSTATE;
    if (st->tail == 0)
        return st->tail_token[0] == '\0' ? APR_SUCCESS : S3_EBADSTATE;
    for (i = 0; i < S3_TAIL_TOKEN; i++)
        if (!apr_isxdigit(st->tail_token[i]) || apr_isupper(st->tail_token[i]))
            return S3_EBADSTATE;
    return st->tail_token[S3_TAIL_TOKEN] == '\0' ? APR_SUCCESS
                                                 : S3_EBADSTATE;
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

apr_status_t s3_upload_create(ocireg_store *s, apr_pool_t *p,
                                     const char *uuid, unsigned char *state)
{
    s3_state *st = (s3_state *)state;
    (void)p;
    (void)uuid;
    memset(st, 0, sizeof(*st));
    /* The multipart upload itself starts with the first full part: a blob
     * smaller than one part never needs one. */
    st->magic = S3_STATE_MAGIC;
    st->part_size = (apr_uint64_t)S3(s)->part_size;
    ocireg_hash_init(&st->midstate);
    return APR_SUCCESS;
}

typedef struct {
    apr_file_t *f;
    ocireg_hash_state *hash;
} spool_fill;

static apr_status_t spool_sink(void *ctx, const char *buf, apr_size_t n)
{
    spool_fill *fill = ctx;
    ocireg_hash_update(fill->hash, buf, n);
    return apr_file_write_full(fill->f, buf, n, NULL);
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
    apr_status_t rv = apr_file_mktemp(f, tmpl,
                                      APR_FOPEN_CREATE | APR_FOPEN_READ
                                          | APR_FOPEN_WRITE | APR_FOPEN_EXCL
                                          | APR_FOPEN_BINARY,
                                      p);
    /* Nameless from the start: nothing is left behind, even by kill -9. */
    if (rv == APR_SUCCESS) {
        rv = apr_file_remove(tmpl, p);
        if (rv != APR_SUCCESS) {
            apr_file_close(*f);
            *f = NULL;
        }
    }
    return rv;
}

static apr_status_t spool_rewind(apr_file_t *f)
{
    apr_off_t zero = 0;
    return apr_file_seek(f, APR_SET, &zero);
}

/* Loads the tail object into a fresh spool: a bounded copy on local disk,
 * never in memory. *hash goes on from the state's midstate over the tail's
 * bytes. */
static apr_status_t load_tail(ocireg_store *s, apr_pool_t *p,
                              const char *uuid, const s3_state *st,
                              apr_file_t **spool, ocireg_hash_state *hash)
{
    apr_status_t rv = spool_open(s, p, spool);
    apr_off_t got = 0, len = (apr_off_t)st->tail;
    spool_fill fill;
    *hash = st->midstate;
    if (rv != APR_SUCCESS || len == 0)
        return rv;
    fill.f = *spool;
    fill.hash = hash;
    rv = ocireg_s3_get_stream(S3(s)->s3, p, tail_key(s, p, uuid, st),
                              0, -1, spool_sink, &fill, NULL);
    if (rv == APR_SUCCESS)
        rv = apr_file_seek(*spool, APR_CUR, &got);
    if (rv == APR_SUCCESS && got != len)
        rv = APR_EGENERAL;
    return rv;
}

apr_status_t s3_upload_open(ocireg_store *s, apr_pool_t *p,
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
    rv = s3_state_check(state);
    if (rv != APR_SUCCESS)
        return rv;
    memcpy(&w->state, state, sizeof(w->state));
    w->opened = w->state;
    if ((apr_off_t)(w->state.parts * w->state.part_size + w->state.tail)
        != offset)
        return APR_EGENERAL;
    rv = load_tail(s, p, uuid, &w->state, &w->spool, &w->running);
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
apr_status_t s3_upload_write(ocireg_upload_writer *w, const char *buf,
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
        ocireg_hash_update(&w->running, buf, n);
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
            w->state.midstate = w->running;
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

apr_status_t s3_upload_close(ocireg_upload_writer *w,
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
        w->state.tail_token[0] = '\0';
        if (w->cur > 0) {
            rv = new_tail_token(&w->state);
            if (rv == APR_SUCCESS)
                rv = spool_rewind(w->spool);
            if (rv == APR_SUCCESS)
                rv = ocireg_s3_put_stream(
                    w->st->s3, w->p, tail_key(s, w->p, w->uuid, &w->state),
                    NULL, w->cur, spool_reader, w->spool, NULL);
        }
        /* The previous tail goes once the new state is saved
         * (upload_settle): until then it is what that state names. */
        w->state.tail = (apr_uint64_t)w->cur;
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

/* data/<uuid> that a Complete made but no pointer names (a process killed
 * between the two, and the client gave up): it goes with the session,
 * unless the pointer of the session's own digest names it (a process
 * killed after the pointer). That digest is the state's midstate over the
 * tail; `bk` is the pointer when the caller knows it. Whatever cannot be
 * told is kept. */
static void drop_unnamed_data(ocireg_store *s, apr_pool_t *p,
                              const char *uuid, const s3_state *st,
                              const char *bk)
{
    ocireg_s3 *s3 = S3(s)->s3;
    const char *dk = data_key(s, p, uuid), *named;
    ocireg_s3_result res;
    apr_status_t rv;
    if (ocireg_s3_head(s3, p, dk, NULL) != APR_SUCCESS)
        return; /* the usual case: nothing completed */
    if (!bk) {
        apr_file_t *spool = NULL;
        ocireg_hash_state hash;
        char digest[80];
        if (s3_state_check((const unsigned char *)st) != APR_SUCCESS)
            return;
        rv = load_tail(s, p, uuid, st, &spool, &hash);
        if (spool)
            apr_file_close(spool);
        if (rv != APR_SUCCESS)
            return;
        ocireg_hash_digest(&hash, digest);
        bk = blob_key(s, p, digest);
    }
    rv = ocireg_s3_head(s3, p, bk, &res);
    if (rv == APR_SUCCESS) {
        named = apr_table_get(res.meta, META_DATA);
        if (named && strcmp(named, dk) == 0)
            return;
    }
    else if (rv != APR_ENOENT) {
        return;
    }
    ocireg_s3_delete(s3, p, dk, NULL);
}

static apr_status_t abort_session(ocireg_store *s, apr_pool_t *p,
                                  const char *uuid, s3_state *st,
                                  const char *bk)
{
    apr_status_t rv = APR_SUCCESS;
    drop_unnamed_data(s, p, uuid, st, bk);
    /* Whatever the state holds, the session's uploads all go below. */
    if (memchr(st->upload_id, '\0', sizeof(st->upload_id)) && st->upload_id[0]) {
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

apr_status_t s3_upload_abort(ocireg_store *s, apr_pool_t *p,
                             const char *uuid, unsigned char *state)
{
    return abort_session(s, p, uuid, (s3_state *)state, NULL);
}

apr_status_t s3_upload_settle(ocireg_store *s, apr_pool_t *p,
                                     const char *uuid,
                                     const unsigned char *before,
                                     const unsigned char *after)
{
    const s3_state *b = (const s3_state *)before;
    const s3_state *a = (const s3_state *)after;
    if (s3_state_check(before) != APR_SUCCESS
        || s3_state_check(after) != APR_SUCCESS || b->tail == 0
        || strcmp(b->tail_token, a->tail_token) == 0)
        return APR_SUCCESS;
    return ocireg_s3_delete(S3(s)->s3, p, tail_key(s, p, uuid, b), NULL);
}


void s3_upload_cleanup(ocireg_store *s, apr_pool_t *p,
                              const char *uuid, const unsigned char *state)
{
    const s3_state *st = (const s3_state *)state;
    abort_strays(s, p, uuid,
                 memchr(st->upload_id, '\0', sizeof(st->upload_id))
                     ? st->upload_id : "");
    delete_upload_objects(s, p, uuid);
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

/* Whether data/<uuid> is what an earlier Complete of this session made,
 * when that Complete's answer was lost or the process died before the
 * pointer: the key is the session's own, and size and part count (the
 * "-<n>" of a multipart ETag) are the session's. */
static int completed_before(ocireg_store *s, apr_pool_t *p, const char *dk,
                            const s3_state *st, apr_off_t size)
{
    ocireg_s3_result res;
    const char *dash;
    char *end;
    apr_int64_t n;
    if (ocireg_s3_head(S3(s)->s3, p, dk, &res) != APR_SUCCESS
        || res.content_length != size || !res.etag)
        return 0;
    dash = strrchr(res.etag, '-');
    if (!dash)
        return 0;
    n = apr_strtoi64(dash + 1, &end, 10);
    return (*end == '\0' || *end == '"')
           && n == (apr_int64_t)st->parts + (st->tail > 0 ? 1 : 0);
}

/* The pointer blobs/sha256/<hex> -> data/<uuid>, created once: when two
 * uploads of one blob finish at once, one pointer wins and the other's
 * data goes, so one copy stays. A pointer that exists and names our own
 * data is ours (an earlier attempt whose answer was lost, or a request of
 * this session killed after writing it): its data stays. */
static apr_status_t write_pointer(ocireg_store *s, apr_pool_t *p,
                                  const char *bk, const char *dk,
                                  apr_off_t size)
{
    ocireg_s3 *s3 = S3(s)->s3;
    apr_table_t *meta = apr_table_make(p, 3);
    ocireg_s3_result res;
    const char *named;
    apr_status_t rv;

    apr_table_setn(meta, META_DATA, dk);
    apr_table_setn(meta, META_SIZE, apr_off_t_toa(p, size));
    rv = s3_create_only(s, p, bk, "", 0, meta);
    if (rv != APR_EEXIST)
        return rv;
    rv = ocireg_s3_head(s3, p, bk, &res);
    if (rv == APR_ENOENT)
        /* Deleted meanwhile: our data stays for the client's retry. */
        return OCIREG_S3_EUNAVAILABLE;
    if (rv != APR_SUCCESS)
        return rv;
    named = apr_table_get(res.meta, META_DATA);
    if (named && strcmp(named, dk) == 0)
        return APR_SUCCESS;
    /* Another upload's blob: ours is a second copy. */
    ocireg_s3_delete(s3, p, dk, NULL);
    return APR_SUCCESS;
}

apr_status_t s3_upload_commit(ocireg_store *s, apr_pool_t *p,
                              const char *uuid, unsigned char *state,
                              const char *digest, apr_off_t size)
{
    s3_state *st = (s3_state *)state;
    ocireg_s3 *s3 = S3(s)->s3;
    const char *bk = blob_key(s, p, digest), *dk = data_key(s, p, uuid);
    apr_array_header_t *parts;
    apr_file_t *spool = NULL;
    ocireg_hash_state hash;
    char actual[80];
    apr_status_t rv;
    int i;

    rv = s3_state_check(state);
    if (rv != APR_SUCCESS)
        return rv;
    if ((apr_off_t)(st->parts * st->part_size + st->tail) != size)
        return APR_EGENERAL;
    /* Already stored (another repository, a race, or this very session
     * before a lost answer): keep one copy. */
    if (exists(s, p, bk) == APR_SUCCESS)
        return abort_session(s, p, uuid, st, bk);

    rv = load_tail(s, p, uuid, st, &spool, &hash);
    if (rv != APR_SUCCESS)
        goto leave;
    /* The full parts' hash and the tail's bytes must make the digest: a
     * tail or midstate that another writer left is refused here. */
    ocireg_hash_digest(&hash, actual);
    if (strcmp(actual, digest) != 0) {
        rv = OCIREG_STORE_ECONFLICT;
        goto leave;
    }
    if (st->parts == 0) {
        /* Smaller than one part: one PutObject, no multipart at all. */
        rv = upload_spool(s, p, spool, (apr_off_t)st->tail, bk, NULL, 0);
        if (rv == APR_SUCCESS && st->upload_id[0])
            ocireg_s3_mpu_abort(s3, p, dk, st->upload_id);
        goto leave;
    }
    if (st->tail > 0) {
        rv = upload_spool(s, p, spool, (apr_off_t)st->tail, dk,
                          st->upload_id, (int)st->parts + 1);
        if (rv != APR_SUCCESS)
            goto completed;
    }
    rv = ocireg_s3_mpu_list_parts(s3, p, dk, st->upload_id, &parts);
    if (rv != APR_SUCCESS)
        goto completed;
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
completed:
    /* NoSuchUpload: an earlier Complete of this session went through and
     * only its answer (or the process) was lost. */
    if (rv == APR_ENOENT && completed_before(s, p, dk, st, size))
        rv = APR_SUCCESS;
    if (rv == APR_SUCCESS)
        rv = write_pointer(s, p, bk, dk, size);
leave:
    if (spool)
        apr_file_close(spool);
    return rv;
}

apr_off_t s3_chunk_min_length(ocireg_store *s)
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
    /* The server's text: out of range reads as unknown, never as an
     * overflowed year. */
    if (y < 1970 || y > 9999 || mo < 1 || mo > 12 || d < 1 || d > 31
        || h < 0 || h > 23 || mi < 0 || mi > 59 || sec < 0 || sec > 60)
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
    return s3_latest_state(s, p, uuid, &version) == APR_SUCCESS
           && ocireg_s3_head(S3(s)->s3, p, s3_state_key(s, p, uuid, version),
                             &res) == APR_SUCCESS
           && res.last_modified >= before;
}

/* Only what is older than `before` goes: another host sharing the bucket
 * may be in the middle of an upload this host does not know. */
apr_status_t s3_upload_sweep(ocireg_store *s, apr_pool_t *p,
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
apr_off_t s3_max_blob_size(ocireg_store *s)
{
    return S3(s)->part_size * 10000;
}
