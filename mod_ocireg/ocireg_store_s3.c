/* The S3 / Cloudflare R2 store.
 *
 * Keys under the configured prefix:
 *   blobs/sha256/<hex>        a blob's bytes, or for blobs that came as a
 *                             multipart upload an empty pointer object whose
 *                             metadata names the data object (x-amz-meta-
 *                             ocireg-data) and its size (ocireg-size)
 *   data/<uuid>               the data object a multipart upload completed
 *   repositories/<name>/...   links and referrers, as on the filesystem
 *   repositories/<name>/_tags/<lowercased tag>!<tag>
 *                             a tag (content: the digest), named so that
 *                             byte order is the spec's lexical order
 *   catalog/<name>            the repository has had a manifest linked
 *   catalog.complete          the two above cover everything stored before
 *                             them (see ensure_listing_index)
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
#include <apr_lib.h>
#include <apr_atomic.h>
#include "ocireg_listing.h"
#include "ocireg_manifest.h"
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

static apr_status_t s3_manifest_link(ocireg_store *s, apr_pool_t *p,
                                     const char *name, const char *digest,
                                     const char *media_type)
{
    /* The catalog's entry first: a linked manifest's repository is always
     * listed. The module never removes an entry, so one written once by
     * this process needs no second write. */
    int known;
    apr_size_t slot = catalog_slot(s, name, &known);
    if (!known) {
        apr_status_t rv = put_empty(s, p, catalog_key(s, p, name));
        if (rv != APR_SUCCESS)
            return rv;
        catalog_remember(s, slot, name);
    }
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
static int listing_ready(ocireg_store *s, apr_pool_t *p)
{
    s3_store *st = S3(s);
    apr_time_t now;
    if (apr_atomic_read32(&st->listing_ready))
        return 1;
    now = apr_time_now();
    if (st->listing_checked && now - st->listing_checked < LISTING_RECHECK)
        return 0;
    if (exists(s, p, key(s, p, LISTING_MARKER, "", "")) == APR_SUCCESS) {
        apr_atomic_set32(&st->listing_ready, 1);
        return 1;
    }
    st->listing_checked = now;
    return 0;
}

static apr_status_t s3_tag_set(ocireg_store *s, apr_pool_t *p,
                               const char *name, const char *tag,
                               const char *digest)
{
    return ocireg_s3_put(S3(s)->s3, p, tag_key(s, p, name, tag), digest,
                         strlen(digest), NULL, 0, NULL);
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
    apr_status_t rv = get_tag(s, p, tag_key(s, p, name, tag), digest);
    if (rv == APR_ENOENT && !listing_ready(s, p))
        rv = get_tag(s, p, old_tag_key(s, p, name, tag), digest);
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
    return rv;
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

static apr_status_t ensure_listing_index(ocireg_store *s, apr_pool_t *p)
{
    ocireg_s3_list_args a;
    backfill_ctx *b;
    apr_status_t rv;
    if (listing_ready(s, p))
        return APR_SUCCESS;
    b = apr_pcalloc(p, sizeof(*b));
    b->s = s;
    memset(&a, 0, sizeof(a));
    a.prefix = key(s, p, "repositories/", "", "");
    rv = ocireg_s3_list_pages(S3(s)->s3, p, &a, backfill_key, b, NULL);
    if (rv == APR_SUCCESS)
        rv = put_empty(s, p, key(s, p, LISTING_MARKER, "", ""));
    if (rv == APR_SUCCESS)
        apr_atomic_set32(&S3(s)->listing_ready, 1);
    return rv;
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
    apr_status_t rv = ensure_listing_index(s, p);
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
    apr_status_t rv = ensure_listing_index(s, p);
    *more = 0;
    if (rv != APR_SUCCESS) {
        *names = apr_array_make(p, 1, sizeof(const char *));
        return rv;
    }
    return list_page(s, p, key(s, p, "catalog/", "", ""), last, n, 0, names,
                     more);
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
