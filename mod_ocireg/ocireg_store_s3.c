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
 * the tail as the last part, completes, and writes the pointer.
 *
 * Upload sessions are in ocireg_store_s3_upload.c, their records, locks
 * and claims in ocireg_store_s3_records.c. */
#include <string.h>
#include <apr_strings.h>
#include <apr_hash.h>
#include "ocireg_store_s3_int.h"

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
