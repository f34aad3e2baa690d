/* Private to the S3 store (ocireg_store_s3*.c): its types, key helpers
 * and the operations each of its files provides. */
#ifndef OCIREG_STORE_S3_INT_H
#define OCIREG_STORE_S3_INT_H

#include <apr_strings.h>
#include <apr_thread_mutex.h>
#include "ocireg_store.h"
#include "ocireg_s3.h"
#include "ocireg_parse.h"
#include "ocireg_hash.h"
#include "ocireg_cache.h"

#define META_DATA "ocireg-data"
#define META_SIZE "ocireg-size"
#define META_TOKEN "ocireg-token"
#define META_MEDIA_TYPE "ocireg-media-type"

typedef struct {
    ocireg_s3 *s3;
    const char *prefix;
    apr_off_t part_size;
    const char *spool_dir;
    int redirect_seconds;
    int retries;
    /* ocireg_store_s3.c: this process saw the listing index complete
     * (set once, never cleared), or when it last saw it was not. */
    volatile apr_uint32_t listing_ready;
    apr_time_t listing_checked;
    /* Repositories whose catalog entry this process wrote (or saw written):
     * a small direct-mapped table of names, so repeated pushes to one
     * repository do not write the entry again. */
    apr_thread_mutex_t *catalog_lock;
    char (*catalog_seen)[256];
    /* ocireg_store_s3.c: answers kept across requests and children
     * (ocireg_cache.h), or NULL; tags and links at most cache_ttl. */
    ocireg_cache *cache;
    apr_interval_time_t cache_ttl;
} s3_store;

/* What a session remembers between requests; lives in the session slot
 * and in the session's records, so it is checked (s3_state_check) before
 * any use: a record read back from a shared bucket is input too. */
#define S3_STATE_MAGIC 0x33537433u   /* "3St3": this layout */
#define S3_MAX_PARTS 10000           /* S3 and R2 take no more */
typedef struct {
    apr_uint64_t part_size;      /* fixed when the session starts */
    apr_uint32_t magic;
    apr_uint32_t parts;          /* full parts uploaded */
    /* Bytes after the full parts (at most one part): the body of the
     * record object of this state (uploads/<uuid>/state.<version>). */
    apr_uint64_t tail;
    /* SHA-256 chained over the ETags of the full parts, in order: what
     * Complete is about to join must be what this session's requests sent,
     * never parts a racing request (one that lost its lease) rewrote. */
    unsigned char etags[32];
    /* MD5 of the tail: the record object's ETag, so that copying the tail
     * into the blob (x-amz-copy-source-if-match) takes exactly these
     * bytes and nothing a writer of the bucket put there since. */
    unsigned char tail_md5[16];
    char upload_id[OCIREG_DRIVER_STATE_SIZE - 72];
} s3_state;

typedef char s3_state_fits[sizeof(s3_state) <= OCIREG_DRIVER_STATE_SIZE
                               ? 1 : -1];
typedef char s3_upload_id_room[sizeof(((s3_state *)0)->upload_id) >= 256
                                   ? 1 : -1];

/* A state that fails the check: the request fails (500), nothing else. */
#define S3_EBADSTATE APR_EGENERAL

/* APR_SUCCESS for a state this store can use; never trusts it before. */
apr_status_t s3_state_check(const unsigned char *state);

#define S3(s) ((s3_store *)(s)->impl)

static inline const char *key(ocireg_store *s, apr_pool_t *p, const char *a,
                       const char *b, const char *c)
{
    return apr_pstrcat(p, S3(s)->prefix, a, b, c, NULL);
}

static inline const char *blob_key(ocireg_store *s, apr_pool_t *p, const char *d)
{
    return key(s, p, "blobs/", ocireg_digest_path(p, d), "");
}

static inline const char *repo_key(ocireg_store *s, apr_pool_t *p, const char *name,
                            const char *rest)
{
    return key(s, p, "repositories/", name, rest);
}

static inline apr_status_t put_empty(ocireg_store *s, apr_pool_t *p, const char *k)
{
    return ocireg_s3_put(S3(s)->s3, p, k, "", 0, NULL, 0, NULL);
}

static inline apr_status_t exists(ocireg_store *s, apr_pool_t *p, const char *k)
{
    return ocireg_s3_head(S3(s)->s3, p, k, NULL);
}

/* ocireg_store_s3.c: a repository's blob link naming data key dk of
 * size bytes, as S3_LINK_OPS requests for one ocireg_s3_run: ops[0] the
 * link (its status is the link's), ops[1] the digest's holder entry for
 * the repository (a hint: its failure fails nothing); and what the cache
 * learns once the link is written. */
#define S3_LINK_OPS 2
void s3_link_ops(ocireg_store *s, apr_pool_t *p, const char *name,
                 const char *digest, const char *dk, apr_off_t size,
                 ocireg_s3_op *ops);
void s3_link_written(ocireg_store *s, apr_pool_t *p, const char *name,
                     const char *digest, const char *dk, apr_off_t size,
                     apr_uint32_t gen);
apr_uint32_t s3_link_gen(ocireg_store *s, apr_pool_t *p, const char *name,
                         const char *digest);

/* ocireg_store_s3_records.c: session records, locks, sweep and fill
 * claims */

/* Creates k with If-None-Match: * and a random token in its metadata
 * (META_TOKEN). APR_EEXIST only when the object is someone else's: one
 * that carries our token is our own earlier attempt, whose answer was lost
 * and which the S3 client retried. With `body`, the object's bytes are
 * read from it (len of them, from its start) instead of data. */
apr_status_t s3_create_only(ocireg_store *s, apr_pool_t *p, const char *k,
                            const void *data, apr_size_t len,
                            const apr_table_t *meta);
/* The same as a request of its own: metadata with a fresh token for an
 * If-None-Match PUT, and after its 412 whether the object is that PUT's
 * own (APR_SUCCESS) or someone else's (APR_EEXIST). */
apr_table_t *s3_create_only_meta(apr_pool_t *p, const apr_table_t *meta);
apr_status_t s3_created_by_us(ocireg_store *s, apr_pool_t *p, const char *k,
                              const apr_table_t *meta);
apr_status_t s3_create_only_file(ocireg_store *s, apr_pool_t *p,
                                 const char *k, apr_file_t *body,
                                 apr_off_t len, const apr_table_t *meta);
const char *s3_state_key(ocireg_store *s, apr_pool_t *p, const char *uuid,
                      apr_uint64_t version);
apr_status_t s3_latest_state(ocireg_store *s, apr_pool_t *p, const char *uuid,
                          apr_uint64_t *version);
apr_status_t s3_state_put(ocireg_store *s, apr_pool_t *p, const char *uuid,
                          apr_uint64_t version, const void *data,
                          apr_size_t len, ocireg_upload_writer *w);
apr_status_t s3_state_get(ocireg_store *s, apr_pool_t *p, const char *uuid,
                          apr_uint64_t hint, apr_uint64_t *version,
                          void **data, apr_size_t *len);
apr_status_t s3_upload_lock(ocireg_store *s, apr_pool_t *p, const char *uuid,
                            apr_uint64_t version, const ocireg_lock_owner *me,
                            ocireg_upload_lock **out);
/* Takes the lock s3_upload_lock deferred (nothing when it is held): the
 * lock object, then the check that no later record exists. */
apr_status_t s3_lock_acquire(ocireg_upload_lock *l);
apr_status_t s3_claim_period(ocireg_store *s, apr_pool_t *p, const char *what,
                             apr_int64_t period);
/* The claim of fetching a blob from an upstream (fill_claim,
 * fill_release of ocireg_store.h): fills/sha256/<hex>. */
apr_status_t s3_fill_claim(ocireg_store *s, apr_pool_t *p, const char *digest,
                           const ocireg_lock_owner *me);
void s3_fill_release(ocireg_store *s, apr_pool_t *p, const char *digest,
                     const ocireg_lock_owner *me);
void s3_upload_lock_keep(ocireg_upload_lock *l);
void s3_upload_unlock(ocireg_upload_lock *l);
void s3_upload_lock_drop(ocireg_upload_lock *l);

/* Reads a spool file for a PUT body. */
apr_ssize_t s3_spool_reader(void *ctx, char *buf, apr_size_t n);
apr_status_t s3_spool_rewind(apr_file_t *f);

/* ocireg_store_s3_upload.c: upload sessions */
apr_status_t s3_upload_create(ocireg_store *s, apr_pool_t *p,
                              const char *uuid, unsigned char *state);
apr_status_t s3_upload_open(ocireg_store *s, apr_pool_t *p, const char *uuid,
                            unsigned char *state, apr_uint64_t version,
                            apr_off_t offset, apr_off_t expected,
                            ocireg_upload_lock *lock,
                            ocireg_upload_writer **out);
apr_status_t s3_upload_write(ocireg_upload_writer *w, const char *buf,
                             apr_size_t len);
apr_status_t s3_upload_close(ocireg_upload_writer *w, unsigned char *state);
/* The closed writer's tail, for its record: the spool and its length. */
apr_status_t s3_writer_tail(ocireg_upload_writer *w, apr_file_t **spool,
                            apr_off_t *len);
apr_status_t s3_upload_commit(ocireg_store *s, apr_pool_t *p,
                              const char *uuid, unsigned char *state,
                              apr_uint64_t version, ocireg_upload_writer *w,
                              const char *digest, apr_off_t size,
                              ocireg_blob_ref *ref, const char *link_name);
apr_status_t s3_upload_abort(ocireg_store *s, apr_pool_t *p,
                             const char *uuid, unsigned char *state,
                             apr_uint64_t version, const char *digest);
void s3_upload_cleanup(ocireg_store *s, apr_pool_t *p, const char *uuid,
                       const unsigned char *state, apr_uint64_t version);
apr_off_t s3_chunk_min_length(ocireg_store *s);
apr_off_t s3_max_blob_size(ocireg_store *s);
apr_status_t s3_upload_sweep(ocireg_store *s, apr_pool_t *p,
                             apr_time_t before,
                             int (*live)(void *ctx, const char *uuid),
                             void *ctx, int *swept);
apr_status_t s3_upload_settle(ocireg_store *s, apr_pool_t *p,
                              const char *uuid, apr_uint64_t version,
                              const unsigned char *before,
                              const unsigned char *after);

#endif
