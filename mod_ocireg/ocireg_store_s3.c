/* The S3 / Cloudflare R2 store.
 *
 * Keys under the configured prefix:
 *   blobs/sha256/<hex>        a blob's bytes, or for blobs that came as a
 *                             multipart upload an empty pointer object whose
 *                             metadata names the data object (x-amz-meta-
 *                             ocireg-data) and its size (ocireg-size)
 *   data/<uuid>               the data object a multipart upload completed
 *   repositories/<name>/_layers/sha256/<hex>
 *                             a blob link: empty, its metadata naming the
 *                             data object and size (as the pointer's)
 *   repositories/<name>/_manifests/sha256/<hex>
 *                             a manifest link: the manifest's bytes, its
 *                             media type in metadata (META_MEDIA_TYPE)
 *   repositories/<name>/...   referrers, as on the filesystem
 *   repositories/<name>/_tags/<lowercased tag>!<tag>
 *                             a tag (content: the digest), named so that
 *                             byte order is the spec's lexical order
 *   holders/sha256/<hex>/<name>
 *                             the repository links this blob (empty; written
 *                             beside each blob link, removed with it): the
 *                             holder index a mount without `from` lists
 *   holders.complete          the holder index covers links older than it
 *                             (see ensure_holder_index)
 *   catalog/<name>            the repository has had a manifest linked
 *   catalog.complete          the two above cover everything stored before
 *                             them (see ensure_listing_index)
 *   uploads/<uuid>/tail       bytes of an upload that do not fill a part yet
 *   mirror/<name>/_tags/<tag> a pull-through mirror's mark of the tag's
 *                             last fetch from its upstream (text)
 *   fills/sha256/<hex>        the claim of fetching that blob from an
 *                             upstream: the claimer's lock record
 *
 * An upload session is one multipart upload. Every part but the last is
 * exactly part_size bytes (R2 rejects anything else at Complete): a part is
 * sent while the request body arrives, and whatever is left at the end of
 * a request goes to the tail object, so any process on any host continues
 * from the state. Finishing renames nothing and copies nothing: it uploads
 * the tail as the last part, completes, and writes the pointer.
 *
 * Upload sessions are in ocireg_store_s3_upload.c, their records, locks
 * and claims in ocireg_store_s3_records.c. */
#include <string.h>
#include <errno.h>
#include <apr_strings.h>
#include <apr_hash.h>
#include <apr_lib.h>
#include <apr_atomic.h>
#include "ocireg_listing.h"
#include "ocireg_manifest.h"
#include "ocireg_store_s3_int.h"

/* The shared cache (ocireg_cache.h). Keys name the store (several vhosts
 * share one cache) and the kind: P a digest's bytes (immutable), L a
 * repository's blob link, M a manifest link, T a tag. A store's own
 * changes to L, M and T go to the store first and then bump the key, so
 * an answer read before the change, in any child, is not served after it;
 * another host's changes show here within cache_ttl. */
static const char *cache_key(ocireg_store *s, apr_pool_t *p, char kind,
                             const char *a, const char *b)
{
    return apr_psprintf(p, "%08x%c%s|%s", (unsigned)s->id, kind, a,
                        b ? b : "");
}

static int cache_get(ocireg_store *s, apr_pool_t *p, const char *k,
                     char **value)
{
    apr_size_t len;
    return S3(s)->cache
           && ocireg_cache_get(S3(s)->cache, p, k, apr_time_now(), value,
                               &len);
}

static apr_uint32_t cache_gen(ocireg_store *s, const char *k)
{
    return ocireg_cache_generation(S3(s)->cache, k);
}

/* A mutable answer read under generation gen. */
static void cache_mutable(ocireg_store *s, const char *k, const char *value,
                          apr_uint32_t gen)
{
    if (S3(s)->cache && S3(s)->cache_ttl > 0)
        ocireg_cache_put(S3(s)->cache, k, value, strlen(value),
                         apr_time_now() + S3(s)->cache_ttl, gen);
}

static void cache_immutable(ocireg_store *s, const char *k,
                            const char *value, apr_uint32_t gen)
{
    if (S3(s)->cache)
        ocireg_cache_put(S3(s)->cache, k, value, strlen(value), 0, gen);
}

/* After this host changed (replaced or removed) what k caches. */
static void cache_changed(ocireg_store *s, const char *k)
{
    ocireg_cache_bump(S3(s)->cache, k);
}

/* "<size> <data key>" */
static const char *ref_text(apr_pool_t *p, const char *dk, apr_off_t size)
{
    return apr_psprintf(p, "%" APR_OFF_T_FMT " %s", size, dk);
}

static int ref_parse(const char *text, const char **dk, apr_off_t *size)
{
    char *end;
    apr_int64_t n = apr_strtoi64(text, &end, 10);
    if (end == text || *end != ' ' || n < 0)
        return 0;
    *dk = end + 1;
    *size = (apr_off_t)n;
    return 1;
}

void ocireg_store_s3_set_cache(ocireg_store *s, ocireg_cache *cache,
                               apr_interval_time_t ttl)
{
    S3(s)->cache = cache;
    S3(s)->cache_ttl = ttl;
}

/* Blobs */

/* Where a blob's bytes are and how many there are. */
static apr_status_t locate(ocireg_store *s, apr_pool_t *p, const char *digest,
                           const char **data_key, apr_off_t *size)
{
    ocireg_s3_result res;
    const char *k = blob_key(s, p, digest), *dk, *sz;
    const char *ck = cache_key(s, p, 'P', digest, NULL);
    char *cached;
    apr_uint32_t gen = cache_gen(s, ck);
    apr_status_t rv;
    /* Where a digest's bytes are never changes while anything names it. */
    if (cache_get(s, p, ck, &cached) && ref_parse(cached, data_key, size))
        return APR_SUCCESS;
    rv = ocireg_s3_head(S3(s)->s3, p, k, &res);
    if (rv != APR_SUCCESS)
        return rv;
    dk = apr_table_get(res.meta, META_DATA);
    sz = apr_table_get(res.meta, META_SIZE);
    *data_key = dk ? dk : k;
    *size = dk && sz ? apr_atoi64(sz) : res.content_length;
    cache_immutable(s, ck, ref_text(p, *data_key, *size), gen);
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

/* What reads size bytes at data key dk: a stream, or a presigned URL. */
static void open_body(ocireg_store *s, apr_pool_t *p, const char *dk,
                      apr_off_t size, ocireg_blob_body *out)
{
    send_ctx *c = apr_pcalloc(p, sizeof(*c));
    c->s3 = S3(s)->s3;
    c->key = dk;
    out->size = size;
    out->data = dk;
    out->send = s3_send;
    out->ctx = c;
    if (S3(s)->redirect_seconds > 0)
        out->redirect_url = ocireg_s3_presign_get(c->s3, p, dk,
                                                  S3(s)->redirect_seconds);
}

static apr_status_t s3_blob_open(ocireg_store *s, apr_pool_t *p,
                                 const char *digest, ocireg_blob_body *out)
{
    const char *dk;
    apr_off_t size;
    apr_status_t rv;
    memset(out, 0, sizeof(*out));
    rv = locate(s, p, digest, &dk, &size);
    if (rv == APR_SUCCESS)
        open_body(s, p, dk, size, out);
    return rv;
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

/* The holder index: one empty key per repository linking a digest, under
 * the digest, so that one listing names the repositories holding it. */
static const char *holders_prefix(ocireg_store *s, apr_pool_t *p,
                                  const char *digest)
{
    return key(s, p, "holders/", ocireg_digest_path(p, digest), "/");
}

static const char *holder_key(ocireg_store *s, apr_pool_t *p,
                              const char *name, const char *digest)
{
    return apr_pstrcat(p, holders_prefix(s, p, digest), name, NULL);
}

/* The link, and beside it (same round trip) the holder entry. The entry
 * is a hint whose readers confirm it against the link, so its outcome is
 * not the link's: a lost entry only makes a mount without `from` open a
 * session. */
void s3_link_ops(ocireg_store *s, apr_pool_t *p, const char *name,
                 const char *digest, const char *dk, apr_off_t size,
                 ocireg_s3_op *ops)
{
    apr_table_t *meta = apr_table_make(p, 2);
    apr_table_setn(meta, META_DATA, dk);
    apr_table_setn(meta, META_SIZE, apr_off_t_toa(p, size));
    memset(ops, 0, S3_LINK_OPS * sizeof(*ops));
    ops[0].kind = OCIREG_S3_OP_PUT;
    ops[0].key = link_key(s, p, name, "_layers", digest);
    ops[0].data = "";
    ops[0].meta = meta;
    ops[1].kind = OCIREG_S3_OP_PUT;
    ops[1].key = holder_key(s, p, name, digest);
    ops[1].data = "";
}

/* A blob link is an empty object whose metadata says where the bytes are
 * (META_DATA: the data object's key, as the pointer's) and how many
 * (META_SIZE): a read through the link needs no look at the pointer. That
 * is safe to keep with the link because a digest's pointer is written
 * once and never changes while a link names it. Links written before
 * this carry no metadata: their readers ask the pointer. */
static apr_status_t s3_blob_link(ocireg_store *s, apr_pool_t *p,
                                 const char *name, const char *digest,
                                 const ocireg_blob_ref *ref)
{
    const char *dk = ref ? ref->data : NULL;
    apr_off_t size = ref ? ref->size : -1;
    ocireg_s3_op ops[S3_LINK_OPS];
    if (!dk || size < 0) {
        apr_status_t rv = locate(s, p, digest, &dk, &size);
        if (rv != APR_SUCCESS)
            return rv;
    }
    const char *ck = cache_key(s, p, 'L', name, digest);
    apr_uint32_t gen = cache_gen(s, ck);
    apr_status_t rv;
    s3_link_ops(s, p, name, digest, dk, size, ops);
    rv = ocireg_s3_run(S3(s)->s3, p, ops, S3_LINK_OPS, S3_LINK_OPS);
    if (rv == APR_SUCCESS)
        rv = ops[0].status;
    /* A link made replaces no answer anyone could have read but "none",
     * which is never kept: no bump. */
    if (rv == APR_SUCCESS)
        cache_mutable(s, ck, ref_text(p, dk, size), gen);
    return rv;
}

static int link_ref(ocireg_store *s, const apr_table_t *meta,
                    const char **dk, apr_off_t *size);

apr_uint32_t s3_link_gen(ocireg_store *s, apr_pool_t *p, const char *name,
                         const char *digest)
{
    return cache_gen(s, cache_key(s, p, 'L', name, digest));
}

void s3_link_written(ocireg_store *s, apr_pool_t *p, const char *name,
                     const char *digest, const char *dk, apr_off_t size,
                     apr_uint32_t gen)
{
    cache_mutable(s, cache_key(s, p, 'L', name, digest),
                  ref_text(p, dk, size), gen);
}

static apr_status_t s3_blob_linked(ocireg_store *s, apr_pool_t *p,
                                   const char *name, const char *digest)
{
    const char *ck = cache_key(s, p, 'L', name, digest), *dk;
    apr_uint32_t gen = cache_gen(s, ck);
    ocireg_s3_result res;
    apr_off_t size;
    char *cached;
    apr_status_t rv;
    if (cache_get(s, p, ck, &cached))
        return APR_SUCCESS;
    rv = ocireg_s3_head(S3(s)->s3, p, link_key(s, p, name, "_layers", digest),
                        &res);
    if (rv == APR_SUCCESS && link_ref(s, res.meta, &dk, &size))
        cache_mutable(s, ck, ref_text(p, dk, size), gen);
    return rv;
}

/* The data key and size a link's metadata names, when it names them and
 * the key is one of this store's data objects (blobs/ or data/ under the
 * prefix): a link is read back from a shared bucket, so it is input. */
static int link_ref(ocireg_store *s, const apr_table_t *meta,
                    const char **dk, apr_off_t *size)
{
    const char *k = apr_table_get(meta, META_DATA);
    const char *sz = apr_table_get(meta, META_SIZE);
    apr_size_t pl = strlen(S3(s)->prefix);
    char *end;
    apr_int64_t n;
    if (!k || !sz || strncmp(k, S3(s)->prefix, pl) != 0
        || (strncmp(k + pl, "blobs/", 6) != 0
            && strncmp(k + pl, "data/", 5) != 0)
        || !apr_isdigit(*sz))
        return 0;
    errno = 0;
    n = apr_strtoi64(sz, &end, 10);
    if (*end || n < 0 || errno == ERANGE)
        return 0;
    *dk = k;
    *size = (apr_off_t)n;
    return 1;
}

/* One HEAD of the link; a GET adds the data's GET when it is sent. */
static apr_status_t s3_blob_open_linked(ocireg_store *s, apr_pool_t *p,
                                        const char *name, const char *digest,
                                        int want_body, ocireg_blob_body *out)
{
    ocireg_s3_result res;
    const char *dk, *ck = cache_key(s, p, 'L', name, digest);
    apr_uint32_t gen = cache_gen(s, ck);
    apr_off_t size;
    char *cached;
    apr_status_t rv;
    memset(out, 0, sizeof(*out));
    if (cache_get(s, p, ck, &cached) && ref_parse(cached, &dk, &size)) {
        if (want_body)
            open_body(s, p, dk, size, out);
        out->size = size;
        out->data = dk;
        return APR_SUCCESS;
    }
    rv = ocireg_s3_head(S3(s)->s3, p, link_key(s, p, name, "_layers", digest),
                        &res);
    if (rv != APR_SUCCESS)
        return rv;
    if (link_ref(s, res.meta, &dk, &size))
        cache_mutable(s, ck, ref_text(p, dk, size), gen);
    else {
        rv = locate(s, p, digest, &dk, &size);
        if (rv != APR_SUCCESS)
            return rv;
    }
    if (want_body)
        open_body(s, p, dk, size, out);
    out->size = size;
    out->data = dk;
    return APR_SUCCESS;
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

/* The link's HEAD (the API tells whether it was there), then the link
 * and its holder entry removed together. An entry that stays (its DELETE
 * failed) is confirmed against the link by its readers. */
static apr_status_t s3_blob_unlink(ocireg_store *s, apr_pool_t *p,
                                   const char *name, const char *digest)
{
    ocireg_s3_op ops[2];
    apr_status_t rv = exists(s, p, link_key(s, p, name, "_layers", digest));
    if (rv == APR_SUCCESS) {
        memset(ops, 0, sizeof(ops));
        ops[0].kind = ops[1].kind = OCIREG_S3_OP_DELETE;
        ops[0].key = link_key(s, p, name, "_layers", digest);
        ops[1].key = holder_key(s, p, name, digest);
        rv = ocireg_s3_run(S3(s)->s3, p, ops, 2, 2);
        if (rv == APR_SUCCESS)
            rv = ops[0].status;
    }
    cache_changed(s, cache_key(s, p, 'L', name, digest));
    return rv;
}

static const char *catalog_key(ocireg_store *s, apr_pool_t *p,
                               const char *name)
{
    return key(s, p, "catalog/", name, "");
}

#define CATALOG_SEEN_SLOTS 512

/* The slot a name would have in catalog_seen; *known when it is there. */
static apr_size_t catalog_slot(ocireg_store *s, const char *name, int *known)
{
    apr_size_t slot = ocireg_store_id(name) % CATALOG_SEEN_SLOTS;
    *known = 0;
    if (S3(s)->catalog_lock && S3(s)->catalog_seen) {
        apr_thread_mutex_lock(S3(s)->catalog_lock);
        *known = strcmp(S3(s)->catalog_seen[slot], name) == 0;
        apr_thread_mutex_unlock(S3(s)->catalog_lock);
    }
    return slot;
}

static void catalog_remember(ocireg_store *s, apr_size_t slot,
                             const char *name)
{
    if (S3(s)->catalog_lock && S3(s)->catalog_seen
        && strlen(name) < sizeof(S3(s)->catalog_seen[0])) {
        apr_thread_mutex_lock(S3(s)->catalog_lock);
        strcpy(S3(s)->catalog_seen[slot], name);
        apr_thread_mutex_unlock(S3(s)->catalog_lock);
    }
}

/* Whether a media type can travel as S3 metadata unchanged: the
 * characters of RFC 6838 names. Anything else keeps the layout before
 * (the media type as the link's body). */
static int metadata_safe(const char *mt)
{
    const char *c;
    if (!*mt || strlen(mt) > 255)
        return 0;
    for (c = mt; *c; c++)
        if (!apr_isalnum(*c) && !strchr("!#$&-^_.+/", *c))
            return 0;
    return 1;
}

/* A manifest link carries the manifest: its bytes as the body, the media
 * type in metadata (META_MEDIA_TYPE), so a read by digest is one request.
 * The content-addressed blob is written too, for other repositories and
 * whatever collects garbage later; nothing reads it on this path, so it
 * goes out alongside the link. */
static apr_status_t s3_manifest_put(ocireg_store *s, apr_pool_t *p,
                                    const char *name, const char *digest,
                                    const char *media_type, const char *data,
                                    apr_size_t len)
{
    const char *lk = link_key(s, p, name, "_manifests", digest);
    const char *ldata = data;
    apr_size_t llen = len;
    apr_table_t *meta = NULL;
    ocireg_s3_op ops[2];
    int known, i;
    apr_size_t slot = catalog_slot(s, name, &known);
    const char *ck = cache_key(s, p, 'M', name, digest);
    apr_uint32_t gen = cache_gen(s, ck);
    apr_status_t rv;

    if (metadata_safe(media_type)) {
        meta = apr_table_make(p, 1);
        apr_table_setn(meta, META_MEDIA_TYPE, media_type);
    }
    else {
        ldata = media_type;
        llen = strlen(media_type);
    }
    memset(ops, 0, sizeof(ops));
    ops[0].kind = OCIREG_S3_OP_PUT;
    ops[0].key = blob_key(s, p, digest);
    ops[0].data = data;
    ops[0].len = len;
    ops[1].kind = OCIREG_S3_OP_PUT;
    /* The catalog's entry before the link: a linked manifest's repository
     * is always listed. The module never removes an entry, so one written
     * once by this process needs no second write. */
    if (known) {
        ops[1].key = lk;
        ops[1].data = ldata;
        ops[1].len = llen;
        ops[1].meta = meta;
    }
    else {
        ops[1].key = catalog_key(s, p, name);
        ops[1].data = "";
    }
    rv = ocireg_s3_run(S3(s)->s3, p, ops, 2, 2);
    for (i = 0; rv == APR_SUCCESS && i < 2; i++)
        rv = ops[i].status;
    if (rv == APR_SUCCESS && !known) {
        catalog_remember(s, slot, name);
        rv = ocireg_s3_put(S3(s)->s3, p, lk, ldata, llen, meta, 0, NULL);
    }
    if (rv == APR_SUCCESS)
        cache_mutable(s, ck,
                      apr_psprintf(p, "%" APR_SIZE_T_FMT " %s", len,
                                   media_type),
                      gen);
    return rv;
}

/* The media type a manifest link gives: from its metadata, or for a link
 * of the layout before (or an unusual media type) its body. */
static apr_status_t s3_manifest_linked(ocireg_store *s, apr_pool_t *p,
                                       const char *name, const char *digest,
                                       const char **media_type)
{
    const char *k = link_key(s, p, name, "_manifests", digest), *mt;
    const char *ck = cache_key(s, p, 'M', name, digest);
    ocireg_s3_result res;
    apr_off_t len;
    char *cached;
    apr_status_t rv;
    if (cache_get(s, p, ck, &cached) && ref_parse(cached, &mt, &len)) {
        if (media_type)
            *media_type = mt;
        return APR_SUCCESS;
    }
    rv = ocireg_s3_head(S3(s)->s3, p, k, &res);
    if (rv != APR_SUCCESS || !media_type)
        return rv;
    mt = apr_table_get(res.meta, META_MEDIA_TYPE);
    if (mt) {
        *media_type = mt;
        return APR_SUCCESS;
    }
    rv = ocireg_s3_get_small(S3(s)->s3, p, k, 1024, &res);
    if (rv == APR_SUCCESS)
        *media_type = res.body;
    return rv;
}

/* New links: one GET (a HEAD without the body). Links of the layout
 * before hold only the media type: the bytes come from the blob. */
static apr_status_t s3_manifest_read_linked(ocireg_store *s, apr_pool_t *p,
                                            const char *name,
                                            const char *digest,
                                            apr_size_t max, int want_body,
                                            char **data, apr_size_t *len,
                                            const char **media_type)
{
    ocireg_s3 *s3 = S3(s)->s3;
    const char *k = link_key(s, p, name, "_manifests", digest), *mt;
    const char *ck = cache_key(s, p, 'M', name, digest);
    apr_uint32_t gen = cache_gen(s, ck);
    ocireg_s3_result res;
    apr_off_t clen;
    char *cached;
    apr_status_t rv;

    *data = NULL;
    /* A HEAD needs only what the cache has; a GET reads the link. */
    if (!want_body && cache_get(s, p, ck, &cached)
        && ref_parse(cached, &mt, &clen) && (apr_uint64_t)clen <= max) {
        *media_type = mt;
        *len = (apr_size_t)clen;
        return APR_SUCCESS;
    }
    rv = want_body ? ocireg_s3_get_small(s3, p, k, max, &res)
                   : ocireg_s3_head(s3, p, k, &res);
    if (rv != APR_SUCCESS)
        return rv;
    mt = apr_table_get(res.meta, META_MEDIA_TYPE);
    if (mt) {
        if ((apr_uint64_t)res.content_length > max)
            return APR_EGENERAL;
        cache_mutable(s, ck,
                      apr_psprintf(p, "%" APR_OFF_T_FMT " %s",
                                   res.content_length, mt),
                      gen);
        *media_type = mt;
        *data = res.body;
        *len = want_body ? res.body_len : (apr_size_t)res.content_length;
        return APR_SUCCESS;
    }
    if (!want_body) {
        rv = ocireg_s3_get_small(s3, p, k, 1024, &res);
        if (rv != APR_SUCCESS)
            return rv;
    }
    else if (res.body_len > 1024) {
        return APR_EGENERAL;
    }
    *media_type = res.body;
    if (want_body)
        return s3_blob_read_all(s, p, digest, max, data, len);
    rv = ocireg_s3_head(s3, p, blob_key(s, p, digest), &res);
    if (rv == APR_SUCCESS && (apr_uint64_t)res.content_length > max)
        rv = APR_EGENERAL;
    if (rv == APR_SUCCESS)
        *len = (apr_size_t)res.content_length;
    return rv;
}

/* Every check at once: the time of one HEAD, however many there are. */
#define LINK_CHECKS_IN_FLIGHT 16

static apr_status_t s3_links_exist(ocireg_store *s, apr_pool_t *p,
                                   const char *name, ocireg_link_check *checks,
                                   int n)
{
    ocireg_s3_op *ops;
    int *op_of;
    const char **ck;
    apr_uint32_t *gen;
    apr_status_t rv;
    int i, m = 0;
    if (n <= 0)
        return APR_SUCCESS;
    ops = apr_pcalloc(p, sizeof(*ops) * (apr_size_t)n);
    op_of = apr_pcalloc(p, sizeof(*op_of) * (apr_size_t)n);
    ck = apr_pcalloc(p, sizeof(*ck) * (apr_size_t)n);
    gen = apr_pcalloc(p, sizeof(*gen) * (apr_size_t)n);
    for (i = 0; i < n; i++) {
        char *cached;
        ck[i] = cache_key(s, p, checks[i].manifest ? 'M' : 'L', name,
                          checks[i].digest);
        gen[i] = cache_gen(s, ck[i]);
        if (cache_get(s, p, ck[i], &cached)) {
            checks[i].status = APR_SUCCESS;
            op_of[i] = -1;
            continue;
        }
        op_of[i] = m;
        ops[m].kind = OCIREG_S3_OP_HEAD;
        ops[m++].key = link_key(s, p, name,
                                checks[i].manifest ? "_manifests" : "_layers",
                                checks[i].digest);
    }
    rv = m ? ocireg_s3_run(S3(s)->s3, p, ops, m, LINK_CHECKS_IN_FLIGHT)
           : APR_SUCCESS;
    for (i = 0; i < n; i++) {
        ocireg_s3_op *op;
        const char *dk, *mt;
        apr_off_t size;
        if (op_of[i] < 0)
            continue;
        op = &ops[op_of[i]];
        checks[i].status = op->status;
        if (op->status != APR_SUCCESS || !op->res.meta)
            continue;
        if (!checks[i].manifest && link_ref(s, op->res.meta, &dk, &size))
            cache_mutable(s, ck[i], ref_text(p, dk, size), gen[i]);
        else if (checks[i].manifest
                 && (mt = apr_table_get(op->res.meta, META_MEDIA_TYPE)))
            cache_mutable(s, ck[i],
                          apr_psprintf(p, "%" APR_OFF_T_FMT " %s",
                                       op->res.content_length, mt),
                          gen[i]);
    }
    return rv;
}

static apr_status_t s3_manifest_unlink(ocireg_store *s, apr_pool_t *p,
                                       const char *name, const char *digest)
{
    apr_status_t rv = delete_existing(
        s, p, link_key(s, p, name, "_manifests", digest));
    cache_changed(s, cache_key(s, p, 'M', name, digest));
    return rv;
}

/* Tags. ListObjectsV2 answers in byte order, the spec wants tags
 * case-insensitively ordered (ties bytewise): the key leads with the
 * lowercased tag, then '!' (below every tag character, so a tag sorts
 * before its extensions), then the tag itself. So a page of tags is one
 * request from any `last`. Stores written before this layout kept tags at
 * _tags/<tag>: ensure_listing_index moves them, and until this process
 * knows it did, lookups fall back to the old key. */

static const char *tag_sort_name(apr_pool_t *p, const char *tag)
{
    char *low = apr_pstrdup(p, tag), *c;
    for (c = low; *c; c++)
        *c = (char)apr_tolower(*c);
    return apr_pstrcat(p, low, "!", tag, NULL);
}

static const char *tags_prefix(ocireg_store *s, apr_pool_t *p,
                               const char *name)
{
    return repo_key(s, p, name, "/_tags/");
}

static const char *tag_key(ocireg_store *s, apr_pool_t *p, const char *name,
                           const char *tag)
{
    return apr_pstrcat(p, tags_prefix(s, p, name), tag_sort_name(p, tag),
                       NULL);
}

static const char *old_tag_key(ocireg_store *s, apr_pool_t *p,
                               const char *name, const char *tag)
{
    return apr_pstrcat(p, tags_prefix(s, p, name), tag, NULL);
}

#define LISTING_MARKER "catalog.complete"
/* How long a process trusts "not migrated yet" before asking again. */
#define LISTING_RECHECK apr_time_from_sec(60)

/* Whether the listing index is known complete; asks the store (one HEAD,
 * at most once a minute) when this process does not know yet. */
/* A complete index stays complete: once any child saw the marker, the
 * shared cache tells the others. */
static void listing_is_ready(ocireg_store *s, apr_pool_t *p)
{
    const char *ck = cache_key(s, p, 'I', LISTING_MARKER, NULL);
    apr_atomic_set32(&S3(s)->listing_ready, 1);
    cache_immutable(s, ck, "1", cache_gen(s, ck));
}

static int listing_ready(ocireg_store *s, apr_pool_t *p)
{
    s3_store *st = S3(s);
    apr_time_t now;
    char *cached;
    if (apr_atomic_read32(&st->listing_ready))
        return 1;
    if (cache_get(s, p, cache_key(s, p, 'I', LISTING_MARKER, NULL),
                  &cached)) {
        apr_atomic_set32(&st->listing_ready, 1);
        return 1;
    }
    now = apr_time_now();
    if (st->listing_checked && now - st->listing_checked < LISTING_RECHECK)
        return 0;
    if (exists(s, p, key(s, p, LISTING_MARKER, "", "")) == APR_SUCCESS) {
        listing_is_ready(s, p);
        return 1;
    }
    st->listing_checked = now;
    return 0;
}

static apr_status_t s3_tag_set(ocireg_store *s, apr_pool_t *p,
                               const char *name, const char *tag,
                               const char *digest)
{
    const char *ck = cache_key(s, p, 'T', name, tag);
    apr_status_t rv = ocireg_s3_put(S3(s)->s3, p, tag_key(s, p, name, tag),
                                    digest, strlen(digest), NULL, 0, NULL);
    /* The new value is in the store before the old one stops being
     * served: a child that read the old one meanwhile read it under the
     * key's generation before, which the bump retires. */
    cache_changed(s, ck);
    if (rv == APR_SUCCESS)
        cache_mutable(s, ck, digest, cache_gen(s, ck));
    return rv;
}

static apr_status_t get_tag(ocireg_store *s, apr_pool_t *p, const char *k,
                            const char **digest)
{
    ocireg_s3_result res;
    apr_status_t rv = ocireg_s3_get_small(S3(s)->s3, p, k, OCIREG_DIGEST_MAX,
                                          &res);
    if (rv == APR_SUCCESS)
        *digest = res.body;
    return rv;
}

static apr_status_t s3_tag_get(ocireg_store *s, apr_pool_t *p,
                               const char *name, const char *tag,
                               const char **digest)
{
    const char *ck = cache_key(s, p, 'T', name, tag);
    apr_uint32_t gen = cache_gen(s, ck);
    char *cached;
    apr_status_t rv;
    if (cache_get(s, p, ck, &cached)) {
        *digest = cached;
        return APR_SUCCESS;
    }
    rv = get_tag(s, p, tag_key(s, p, name, tag), digest);
    if (rv == APR_ENOENT && !listing_ready(s, p))
        rv = get_tag(s, p, old_tag_key(s, p, name, tag), digest);
    if (rv == APR_SUCCESS && ocireg_digest_parse(*digest) != OCIREG_DIGEST_BAD)
        cache_mutable(s, ck, *digest, gen);
    return rv;
}

static apr_status_t s3_tag_delete(ocireg_store *s, apr_pool_t *p,
                                  const char *name, const char *tag)
{
    apr_status_t rv = delete_existing(s, p, tag_key(s, p, name, tag));
    if ((rv == APR_SUCCESS || rv == APR_ENOENT) && !listing_ready(s, p)) {
        apr_status_t old = delete_existing(s, p,
                                           old_tag_key(s, p, name, tag));
        if (old != APR_ENOENT)
            rv = old;
    }
    cache_changed(s, cache_key(s, p, 'T', name, tag));
    return rv;
}

/* Pull-through mirror marks: mirror/<name>/_tags/<tag>, one object each,
 * outside repositories/ and catalog/, so that no listing, backfill or
 * sweep meets them. Never cached: a mark says when a tag was last checked
 * upstream, which another host may have just done. */
static apr_status_t mark_key(ocireg_store *s, apr_pool_t *p,
                             const char *name, const char *tag,
                             const char **k)
{
    if (!ocireg_name_valid(name) || !ocireg_tag_valid(tag))
        return APR_EINVAL;
    *k = key(s, p, "mirror/", name, apr_pstrcat(p, "/_tags/", tag, NULL));
    return APR_SUCCESS;
}

static apr_status_t s3_mirror_mark_put(ocireg_store *s, apr_pool_t *p,
                                       const char *name, const char *tag,
                                       const char *text)
{
    const char *k;
    apr_size_t len = strlen(text);
    apr_status_t rv = mark_key(s, p, name, tag, &k);
    if (rv != APR_SUCCESS)
        return rv;
    if (len > OCIREG_MIRROR_MARK_MAX)
        return APR_EINVAL;
    return ocireg_s3_put(S3(s)->s3, p, k, text, len, NULL, 0, NULL);
}

static apr_status_t s3_mirror_mark_get(ocireg_store *s, apr_pool_t *p,
                                       const char *name, const char *tag,
                                       char **text)
{
    ocireg_s3_result res;
    const char *k;
    apr_status_t rv = mark_key(s, p, name, tag, &k);
    if (rv != APR_SUCCESS)
        return rv;
    rv = ocireg_s3_get_small(S3(s)->s3, p, k, OCIREG_MIRROR_MARK_MAX, &res);
    if (rv == APR_SUCCESS)
        *text = res.body ? res.body : apr_pstrdup(p, "");
    return rv;
}

/* S3 deletes quietly, which is what the API wants here. */
static apr_status_t s3_mirror_mark_delete(ocireg_store *s, apr_pool_t *p,
                                          const char *name, const char *tag)
{
    const char *k;
    apr_status_t rv = mark_key(s, p, name, tag, &k);
    if (rv != APR_SUCCESS)
        return rv;
    rv = ocireg_s3_delete(S3(s)->s3, p, k, NULL);
    return rv == APR_ENOENT ? APR_SUCCESS : rv;
}

/* One request whatever the repository holds: its first key. */
static apr_status_t first_key(void *ctx, apr_pool_t *page, const char *k,
                              int is_prefix)
{
    (void)page;
    (void)k;
    (void)is_prefix;
    *(int *)ctx = 1;
    return OCIREG_S3_LIST_STOP;
}

static apr_status_t s3_repo_exists(ocireg_store *s, apr_pool_t *p,
                                   const char *name)
{
    ocireg_s3_list_args a;
    int found = 0;
    apr_status_t rv;
    memset(&a, 0, sizeof(a));
    /* Links, tags and referrers all sit under <name>/_; a nested
     * repository's keys cannot (no name component starts with '_'). */
    a.prefix = repo_key(s, p, name, "/_");
    a.max_keys = 1;
    rv = ocireg_s3_list_pages(S3(s)->s3, p, &a, first_key, &found, NULL);
    if (rv != APR_SUCCESS)
        return rv;
    return found ? APR_SUCCESS : APR_ENOENT;
}

/* The one-time backfill of a store written before the listing index: one
 * paged scan of every key under repositories/ (memory: one page) that
 * writes catalog/<name> for each repository with a manifest link and moves
 * tags from _tags/<tag> to their ordered keys. Every step is idempotent,
 * so hosts racing through it, or a scan cut short, do no harm: the marker
 * is written only after a whole scan, and until then the next listing
 * scans again. */
typedef struct {
    ocireg_store *s;
    int (*stop)(void);
    const char *repos;                     /* prefix of the scan */
    char indexed[OCIREG_NAME_MAX + 1];     /* last name given an entry */
} backfill_ctx;

static apr_status_t move_old_tag(ocireg_store *s, apr_pool_t *p,
                                 const char *name, const char *tag)
{
    const char *old = old_tag_key(s, p, name, tag), *digest;
    apr_status_t rv = get_tag(s, p, old, &digest);
    if (rv == APR_ENOENT)
        return APR_SUCCESS;
    if (rv != APR_SUCCESS)
        return rv;
    /* Create-only: a tag set since the upgrade is newer than this one. */
    rv = ocireg_s3_put(S3(s)->s3, p, tag_key(s, p, name, tag), digest,
                       strlen(digest), NULL, 1, NULL);
    if (rv != APR_SUCCESS && rv != APR_EEXIST)
        return rv;
    return ocireg_s3_delete(S3(s)->s3, p, old, NULL);
}

static apr_status_t backfill_key(void *ctx, apr_pool_t *page, const char *k,
                                 int is_prefix)
{
    backfill_ctx *b = ctx;
    const char *cut = strstr(k, "/_"), *name, *rest;
    (void)is_prefix;
    if (b->stop())
        return APR_EINTR;
    if (!cut)
        return APR_SUCCESS;
    name = apr_pstrmemdup(page, k, (apr_size_t)(cut - k));
    rest = cut + 1;
    if (!ocireg_name_valid(name))
        return APR_SUCCESS;
    if (strncmp(rest, "_manifests/", 11) == 0) {
        apr_status_t rv;
        /* A repository's keys are adjacent: one entry per repository. */
        if (strcmp(name, b->indexed) == 0)
            return APR_SUCCESS;
        rv = put_empty(b->s, page, catalog_key(b->s, page, name));
        if (rv == APR_SUCCESS)
            apr_cpystrn(b->indexed, name, sizeof(b->indexed));
        return rv;
    }
    if (strncmp(rest, "_tags/", 6) == 0 && !strchr(rest + 6, '!')
        && ocireg_tag_valid(rest + 6))
        return move_old_tag(b->s, page, name, rest + 6);
    return APR_SUCCESS;
}

/* A listing that finds the index incomplete completes it on its own
 * request, which nothing stops short. */
static int on_a_request(void)
{
    return 0;
}

static apr_status_t ensure_listing_index(ocireg_store *s, apr_pool_t *p,
                                         int (*stop)(void))
{
    ocireg_s3_list_args a;
    backfill_ctx *b;
    apr_status_t rv;
    if (listing_ready(s, p))
        return APR_SUCCESS;
    b = apr_pcalloc(p, sizeof(*b));
    b->s = s;
    b->stop = stop;
    memset(&a, 0, sizeof(a));
    a.prefix = key(s, p, "repositories/", "", "");
    rv = ocireg_s3_list_pages(S3(s)->s3, p, &a, backfill_key, b, NULL);
    if (rv == APR_SUCCESS)
        rv = put_empty(s, p, key(s, p, LISTING_MARKER, "", ""));
    if (rv == APR_SUCCESS)
        listing_is_ready(s, p);
    return rv;
}

/* The one-time backfill of the holder index for blob links made before
 * it: one paged scan of repositories/ writing holders/sha256/<hex>/<name>
 * for each _layers link, in parallel batches, then the marker. Entries are
 * empty and idempotent, so hosts racing through it, or a scan cut short
 * (retried at the next start), do no harm; until it is done a mount
 * without `from` misses those links (an upload session, never a wrong
 * answer). */
#define HOLDERS_MARKER "holders.complete"
#define HOLDER_FILL_BATCH 64
#define HOLDER_FILL_IN_FLIGHT 16

typedef struct {
    ocireg_store *s;
    int (*stop)(void);
    apr_pool_t *batch;                     /* keys of the ops below */
    ocireg_s3_op ops[HOLDER_FILL_BATCH];
    int n;
} holder_fill;

static apr_status_t holder_fill_flush(holder_fill *h)
{
    apr_status_t rv = APR_SUCCESS;
    int i;
    if (h->n)
        rv = ocireg_s3_run(S3(h->s)->s3, h->batch, h->ops, h->n,
                           HOLDER_FILL_IN_FLIGHT);
    for (i = 0; rv == APR_SUCCESS && i < h->n; i++)
        rv = h->ops[i].status;
    h->n = 0;
    apr_pool_clear(h->batch);
    return rv;
}

static apr_status_t holder_fill_key(void *ctx, apr_pool_t *page,
                                    const char *k, int is_prefix)
{
    holder_fill *h = ctx;
    const char *cut = strstr(k, "/_"), *name, *digest;
    ocireg_s3_op *op;
    (void)is_prefix;
    if (h->stop())
        return APR_EINTR;
    if (!cut || strncmp(cut + 1, "_layers/sha256/", 15) != 0)
        return APR_SUCCESS;
    name = apr_pstrmemdup(page, k, (apr_size_t)(cut - k));
    digest = apr_pstrcat(page, "sha256:", cut + 16, NULL);
    if (!ocireg_name_valid(name)
        || ocireg_digest_parse(digest) != OCIREG_DIGEST_SHA256)
        return APR_SUCCESS;
    op = &h->ops[h->n++];
    memset(op, 0, sizeof(*op));
    op->kind = OCIREG_S3_OP_PUT;
    op->key = holder_key(h->s, h->batch, name, digest);
    op->data = "";
    return h->n == HOLDER_FILL_BATCH ? holder_fill_flush(h) : APR_SUCCESS;
}

static apr_status_t ensure_holder_index(ocireg_store *s, apr_pool_t *p,
                                        int (*stop)(void))
{
    const char *marker = key(s, p, HOLDERS_MARKER, "", "");
    ocireg_s3_list_args a;
    holder_fill *h;
    apr_status_t rv = exists(s, p, marker);
    if (rv != APR_ENOENT)
        return rv;
    h = apr_pcalloc(p, sizeof(*h));
    h->s = s;
    h->stop = stop;
    rv = apr_pool_create(&h->batch, p);
    if (rv != APR_SUCCESS)
        return rv;
    memset(&a, 0, sizeof(a));
    a.prefix = key(s, p, "repositories/", "", "");
    rv = ocireg_s3_list_pages(S3(s)->s3, p, &a, holder_fill_key, h, NULL);
    if (rv == APR_SUCCESS)
        rv = holder_fill_flush(h);
    apr_pool_destroy(h->batch);
    if (rv == APR_SUCCESS)
        rv = put_empty(s, p, marker);
    return rv;
}

/* In the background at start: the index a listing needs is made before
 * the first listing asks for it (on an empty store, one LIST and the
 * marker); then the holder index is completed for links older than it
 * (on a store where that was done, one HEAD). */
static apr_status_t s3_prepare(ocireg_store *s, apr_pool_t *p,
                               int (*stop)(void))
{
    apr_status_t rv = ensure_listing_index(s, p, stop), hrv;
    if (stop())
        return APR_EINTR;
    hrv = ensure_holder_index(s, p, stop);
    return rv != APR_SUCCESS ? rv : hrv;
}

/* A page of names from one ListObjectsV2 request of up to n keys. */
typedef struct {
    apr_pool_t *p;
    apr_array_header_t *items;
    int n;
    int is_tags;
} page_ctx;

static apr_status_t page_key(void *ctx, apr_pool_t *page, const char *k,
                             int is_prefix)
{
    page_ctx *c = ctx;
    (void)page;
    (void)is_prefix;
    if (c->is_tags) {
        const char *bang = strchr(k, '!');
        if (!bang || !ocireg_tag_valid(bang + 1))
            return APR_SUCCESS;
        k = bang + 1;
    }
    else if (!ocireg_name_valid(k)) {
        return APR_SUCCESS;
    }
    APR_ARRAY_PUSH(c->items, const char *) = apr_pstrdup(c->p, k);
    return c->items->nelts >= c->n ? OCIREG_S3_LIST_STOP : APR_SUCCESS;
}

static apr_status_t list_page(ocireg_store *s, apr_pool_t *p,
                              const char *prefix, const char *after, int n,
                              int is_tags, apr_array_header_t **items,
                              int *more)
{
    ocireg_s3_list_args a;
    page_ctx c;
    memset(&a, 0, sizeof(a));
    a.prefix = prefix;
    a.start_after = after ? apr_pstrcat(p, prefix, after, NULL) : NULL;
    a.max_keys = n;
    c.p = p;
    c.items = *items = apr_array_make(p, n > 0 ? n : 1, sizeof(const char *));
    c.n = n;
    c.is_tags = is_tags;
    *more = 0;
    if (n <= 0)
        return APR_SUCCESS;
    return ocireg_s3_list_pages(S3(s)->s3, p, &a, page_key, &c, more);
}

static apr_status_t s3_tag_list(ocireg_store *s, apr_pool_t *p,
                                const char *name, const char *last, int n,
                                apr_array_header_t **tags, int *more)
{
    apr_status_t rv = ensure_listing_index(s, p, on_a_request);
    if (rv == APR_SUCCESS)
        rv = list_page(s, p, tags_prefix(s, p, name),
                       last ? tag_sort_name(p, last) : NULL, n, 1, tags,
                       more);
    if (rv == APR_SUCCESS && (*tags)->nelts == 0)
        rv = s3_repo_exists(s, p, name);
    return rv;
}

/* Catalog: one key per repository under catalog/; names are lowercase,
 * so byte order is lexical order. */
static apr_status_t s3_repo_list(ocireg_store *s, apr_pool_t *p,
                                 const char *last, int n,
                                 apr_array_header_t **names, int *more)
{
    apr_status_t rv = ensure_listing_index(s, p, on_a_request);
    *more = 0;
    if (rv != APR_SUCCESS) {
        *names = apr_array_make(p, 1, sizeof(const char *));
        return rv;
    }
    return list_page(s, p, key(s, p, "catalog/", "", ""), last, n, 0, names,
                     more);
}

/* The holder index under the digest: one ListObjectsV2 request of at most
 * max keys (names are lowercase, so byte order is lexical order). */
static apr_status_t s3_blob_holders(ocireg_store *s, apr_pool_t *p,
                                    const char *digest, int max,
                                    apr_array_header_t **names)
{
    int more;
    if (max > OCIREG_S3_LIST_PAGE)
        max = OCIREG_S3_LIST_PAGE;
    if (ocireg_digest_parse(digest) == OCIREG_DIGEST_BAD)
        max = 0;
    return list_page(s, p, holders_prefix(s, p, digest), NULL, max, 0,
                     names, &more);
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

typedef struct {
    ocireg_store *s;
    const char *prefix;
    int (*fn)(void *ctx, const char *digest, const char *descriptor);
    void *ctx;
} referrer_ctx;

static apr_status_t referrer_key(void *ctx, apr_pool_t *page, const char *k,
                                 int is_prefix)
{
    referrer_ctx *c = ctx;
    ocireg_s3_result res;
    (void)is_prefix;
    /* A referrer removed while we list is simply not listed. */
    if (ocireg_s3_get_small(S3(c->s)->s3, page,
                            apr_pstrcat(page, c->prefix, k, NULL),
                            OCIREG_REFERRER_DESCRIPTOR_MAX, &res)
            == APR_SUCCESS
        && c->fn(c->ctx, k, res.body))
        return OCIREG_S3_LIST_STOP;
    return APR_SUCCESS;
}

/* ListObjectsV2 returns keys in byte order: digest order. */
static apr_status_t s3_referrer_each(ocireg_store *s, apr_pool_t *p,
                                     const char *name, const char *subject,
                                     const char *last,
                                     int (*fn)(void *ctx, const char *digest,
                                               const char *descriptor),
                                     void *ctx)
{
    ocireg_s3_list_args a;
    referrer_ctx c;
    memset(&a, 0, sizeof(a));
    c.s = s;
    c.prefix = a.prefix = referrer_prefix(s, p, name, subject);
    c.fn = fn;
    c.ctx = ctx;
    a.start_after = last ? apr_pstrcat(p, a.prefix, last, NULL) : NULL;
    return ocireg_s3_list_pages(S3(s)->s3, p, &a, referrer_key, &c, NULL);
}

static const ocireg_store_ops s3_ops = {
    "s3",
    s3_blob_stat,
    s3_blob_open,
    s3_blob_read_all,
    s3_blob_put,
    s3_blob_link,
    s3_blob_linked,
    s3_blob_open_linked,
    s3_blob_unlink,
    s3_links_exist,
    s3_blob_holders,
    s3_manifest_put,
    s3_manifest_linked,
    s3_manifest_read_linked,
    s3_manifest_unlink,
    s3_tag_set,
    s3_tag_get,
    s3_tag_delete,
    s3_tag_list,
    s3_referrer_add,
    s3_referrer_remove,
    s3_referrer_each,
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
    s3_mirror_mark_put,
    s3_mirror_mark_get,
    s3_mirror_mark_delete,
    s3_fill_claim,
    s3_fill_release,
    s3_prepare,
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
    /* Without the table every manifest link writes its catalog entry. */
    if (apr_thread_mutex_create(&st->catalog_lock, APR_THREAD_MUTEX_DEFAULT,
                                pool) == APR_SUCCESS)
        st->catalog_seen = apr_pcalloc(pool, sizeof(*st->catalog_seen)
                                                 * CATALOG_SEEN_SLOTS);
    else
        st->catalog_lock = NULL;
    s->ops = &s3_ops;
    s->impl = st;
    s->id = ocireg_store_id(apr_pstrcat(pool, "s3:", cfg->endpoint, "/",
                                        cfg->bucket,
                              "/", st->prefix, NULL));
    *out = s;
    return APR_SUCCESS;
}
