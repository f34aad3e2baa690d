/* The storage driver interface. Two shapes of backend sit behind it: a local
 * filesystem and an S3-style object store with multipart uploads. So:
 *  - blobs are content-addressed and written once; a repository only holds
 *    links to them;
 *  - an upload is opened, written as a stream and closed per request, with
 *    whatever the driver must remember between requests kept in a small
 *    fixed-size state that travels with the session (shared memory);
 *  - committing an upload makes the blob visible under its digest in one
 *    step and never copies its bytes.
 * Every call returns APR_SUCCESS, APR_ENOENT for "not there", or another
 * status for a real failure. */
#ifndef OCIREG_STORE_H
#define OCIREG_STORE_H

#include <apr.h>
#include <apr_pools.h>
#include <apr_tables.h>
#include <apr_file_io.h>
#include "ocireg_lock.h"

#define OCIREG_DRIVER_STATE_SIZE 512
/* The longest mirror mark (mirror_mark_put). */
#define OCIREG_MIRROR_MARK_MAX 512

typedef struct ocireg_store ocireg_store;
typedef struct ocireg_upload_writer ocireg_upload_writer;
typedef struct ocireg_upload_lock ocireg_upload_lock;

/* A session record newer than the caller's exists. */
#define OCIREG_STORE_ESTALE (APR_OS_START_USERERR + 720)
/* An upload's stored data is not what its session sent (a request that
 * lost its lock wrote over it): it cannot be completed. */
#define OCIREG_STORE_ECONFLICT (APR_OS_START_USERERR + 721)
/* The backend could not be reached, timed out or answered 5xx: worth a
 * retry later (clients get 503). Equal to OCIREG_S3_EUNAVAILABLE, so the
 * S3 driver passes its client's codes on as they are. */
#define OCIREG_STORE_EUNAVAILABLE (APR_OS_START_USERERR + 701)
/* The backend refused the request (credentials, signature, bucket): a
 * configuration problem (clients get 500, the log names the cause). Equal
 * to OCIREG_S3_EREFUSED. */
#define OCIREG_STORE_EREFUSED (APR_OS_START_USERERR + 702)
/* What the calling thread's last failed backend request was and how the
 * backend answered, for the error log (never holds credentials). */
const char *ocireg_store_last_error(void);

/* Where a blob's bytes go when it is sent: the caller's writer. */
typedef apr_status_t (*ocireg_sink_fn)(void *ctx, const char *buf,
                                       apr_size_t len);

/* A blob opened for reading, in one of three forms: a file the server may
 * send with sendfile; a URL the client may fetch directly (a presigned
 * object store URL); or a stream of bytes [offset, offset+len) into a
 * sink. */
/* Where a linked blob's bytes are and how many: `data` is the driver's
 * own name for them (S3: the key of the object holding the bytes) or
 * NULL, `size` -1 when unknown. A driver may keep this with a repository's
 * link, so that reading the blob through the link needs nothing else: a
 * digest's bytes never move while a link names it. */
typedef struct {
    apr_off_t size;
    const char *data;
} ocireg_blob_ref;

typedef struct {
    apr_off_t size;
    apr_file_t *file;
    const char *redirect_url;
    apr_status_t (*send)(void *ctx, apr_pool_t *p, apr_off_t offset,
                         apr_off_t len, ocireg_sink_fn sink, void *sink_ctx);
    void *ctx;
    /* The driver's name for the bytes (ocireg_blob_ref.data), or NULL. */
    const char *data;
} ocireg_blob_body;

/* One reference checked by links_exist: a blob link (manifest 0) or a
 * manifest link (1) of the repository; `status` gets the outcome
 * (APR_SUCCESS, APR_ENOENT, or a failure). */
typedef struct {
    const char *digest;
    int manifest;
    apr_status_t status;
} ocireg_link_check;

typedef struct {
    const char *driver;

    apr_status_t (*blob_stat)(ocireg_store *s, apr_pool_t *p,
                              const char *digest, apr_off_t *size);
    apr_status_t (*blob_open)(ocireg_store *s, apr_pool_t *p,
                              const char *digest, ocireg_blob_body *out);
    /* Small blobs (manifests), read or written whole. */
    apr_status_t (*blob_read_all)(ocireg_store *s, apr_pool_t *p,
                                  const char *digest, apr_size_t max,
                                  char **data, apr_size_t *len);
    apr_status_t (*blob_put)(ocireg_store *s, apr_pool_t *p,
                             const char *digest, const char *data,
                             apr_size_t len);

    /* Repository links to blobs (layers, configs). `ref` is where the
     * blob's bytes are, when the caller knows (an upload just committed,
     * the link of a mount's source); NULL, or unknown fields, and the
     * driver finds out itself. */
    apr_status_t (*blob_link)(ocireg_store *s, apr_pool_t *p,
                              const char *name, const char *digest,
                              const ocireg_blob_ref *ref);
    apr_status_t (*blob_linked)(ocireg_store *s, apr_pool_t *p,
                                const char *name, const char *digest);
    /* A blob through the repository's link: APR_ENOENT when the
     * repository has no link to it. Fills size and data always, and with
     * want_body what reads the bytes (file, send, or redirect_url). */
    apr_status_t (*blob_open_linked)(ocireg_store *s, apr_pool_t *p,
                                     const char *name, const char *digest,
                                     int want_body, ocireg_blob_body *out);
    apr_status_t (*blob_unlink)(ocireg_store *s, apr_pool_t *p,
                                const char *name, const char *digest);
    /* Whether each of n links exists (checks[i].status), all at once:
     * the call fails only when it could not check at all. */
    apr_status_t (*links_exist)(ocireg_store *s, apr_pool_t *p,
                                const char *name, ocireg_link_check *checks,
                                int n);
    /* Repositories that hold a link to the blob, for a mount without
     * `from`: at most max (> 0) names in lexical order, from one look at
     * an index kept by digest (S3: one ListObjectsV2 request; filesystem:
     * one directory read). blob_link adds a name, blob_unlink removes it.
     * The index may name a repository whose link is gone (a failed or
     * racing unlink) and misses links made before it existed: a caller
     * confirms a name with blob_open_linked before trusting it. An empty
     * array when none is known. */
    apr_status_t (*blob_holders)(ocireg_store *s, apr_pool_t *p,
                                 const char *digest, int max,
                                 apr_array_header_t **names);

    /* Manifests. manifest_put stores the bytes (as the content-addressed
     * blob `digest`) and links them in the repository with the pushed
     * media type; a driver may keep the bytes with the link too, so that
     * manifest_read_linked costs one request. */
    apr_status_t (*manifest_put)(ocireg_store *s, apr_pool_t *p,
                                 const char *name, const char *digest,
                                 const char *media_type, const char *data,
                                 apr_size_t len);
    apr_status_t (*manifest_linked)(ocireg_store *s, apr_pool_t *p,
                                    const char *name, const char *digest,
                                    const char **media_type);
    /* A manifest linked in the repository: its media type and length, and
     * with want_body its bytes (at most max; longer is a failure).
     * APR_ENOENT when it is not linked there. */
    apr_status_t (*manifest_read_linked)(ocireg_store *s, apr_pool_t *p,
                                         const char *name,
                                         const char *digest, apr_size_t max,
                                         int want_body, char **data,
                                         apr_size_t *len,
                                         const char **media_type);
    apr_status_t (*manifest_unlink)(ocireg_store *s, apr_pool_t *p,
                                    const char *name, const char *digest);

    apr_status_t (*tag_set)(ocireg_store *s, apr_pool_t *p, const char *name,
                            const char *tag, const char *digest);
    apr_status_t (*tag_get)(ocireg_store *s, apr_pool_t *p, const char *name,
                            const char *tag, const char **digest);
    apr_status_t (*tag_delete)(ocireg_store *s, apr_pool_t *p,
                               const char *name, const char *tag);
    /* One page of tags in lexical order (ocireg_listing.h): at most n
     * (0 < n <= OCIREG_PAGE_MAX) after `last` (NULL: from the first), and
     * in *more whether any follow. Memory and store requests are bounded
     * by the page, not by how many tags there are. APR_ENOENT when the
     * repository does not exist. */
    apr_status_t (*tag_list)(ocireg_store *s, apr_pool_t *p, const char *name,
                             const char *last, int n,
                             apr_array_header_t **tags, int *more);

    /* Referrers of a subject digest: descriptor JSON texts, keyed by the
     * referring manifest's digest. */
    apr_status_t (*referrer_add)(ocireg_store *s, apr_pool_t *p,
                                 const char *name, const char *subject,
                                 const char *digest, const char *descriptor);
    apr_status_t (*referrer_remove)(ocireg_store *s, apr_pool_t *p,
                                    const char *name, const char *subject,
                                    const char *digest);
    /* Hands each descriptor text to fn in order of referring digest,
     * starting after `last` (NULL: the first), until fn returns non-zero.
     * Texts live in a pool that goes after the call: fn copies what it
     * keeps. Memory is bounded by one batch of entries. */
    apr_status_t (*referrer_each)(ocireg_store *s, apr_pool_t *p,
                                  const char *name, const char *subject,
                                  const char *last,
                                  int (*fn)(void *ctx, const char *digest,
                                            const char *descriptor),
                                  void *ctx);

    /* Whether the repository holds anything (one cheap request). */
    apr_status_t (*repo_exists)(ocireg_store *s, apr_pool_t *p,
                                const char *name);
    /* One page of the catalog in lexical order, as tag_list. A repository
     * is listed once a manifest was linked in it. */
    apr_status_t (*repo_list)(ocireg_store *s, apr_pool_t *p,
                              const char *last, int n,
                              apr_array_header_t **names, int *more);

    /* Uploads. `state` is the driver's OCIREG_DRIVER_STATE_SIZE bytes kept
     * with the session; `version` is the number of the session's record
     * that state was read from (see state_put): a driver may keep bytes
     * with its records. */
    apr_status_t (*upload_create)(ocireg_store *s, apr_pool_t *p,
                                  const char *uuid, unsigned char *state);
    /* Opens the upload for appending at `offset`; bytes beyond it (left by
     * a request that failed half-way) are discarded. `expected` is how
     * many bytes the request announced, or -1 when it did not say. `lock`
     * is the session's (upload_lock), or NULL for an upload no one else
     * knows yet: a driver may take it only once it must change what other
     * records share (an object store, once a part must go out). */
    apr_status_t (*upload_open)(ocireg_store *s, apr_pool_t *p,
                                const char *uuid, unsigned char *state,
                                apr_uint64_t version, apr_off_t offset,
                                apr_off_t expected, ocireg_upload_lock *lock,
                                ocireg_upload_writer **w);
    apr_status_t (*upload_write)(ocireg_upload_writer *w, const char *buf,
                                 apr_size_t len);
    /* Makes everything written durable, or ready to be with the next
     * record (state_put with this writer), and updates `state`. After a
     * failed close the session's previous offset stays the truth, and
     * `state` is the state it had. The writer lives as long as its pool. */
    apr_status_t (*upload_close)(ocireg_upload_writer *w,
                                 unsigned char *state);
    /* Makes the upload visible as blob `digest` of `size` bytes, moving no
     * bytes through this server that a record or part already holds. `w`
     * is this request's closed writer, or NULL when it brought no bytes.
     * If the blob already exists the upload is dropped. *ref (when not
     * NULL) gets where the blob's bytes are, for blob_link. With
     * link_name, the blob is linked into that repository as well (as
     * blob_link would), at the same time as the blob is made where the
     * driver can. */
    apr_status_t (*upload_commit)(ocireg_store *s, apr_pool_t *p,
                                  const char *uuid, unsigned char *state,
                                  apr_uint64_t version,
                                  ocireg_upload_writer *w,
                                  const char *digest, apr_off_t size,
                                  ocireg_blob_ref *ref,
                                  const char *link_name);
    /* `digest` is the digest of the session's bytes when they are all
     * there (NULL otherwise): a driver that made the blob's data before a
     * crash can tell whether a blob now names it. */
    apr_status_t (*upload_abort)(ocireg_store *s, apr_pool_t *p,
                                 const char *uuid, unsigned char *state,
                                 apr_uint64_t version, const char *digest);
    /* After a commit, once the client has its answer: frees what the
     * upload kept (records, locks). What it misses (leftovers of failed
     * requests), the sweep finds. */
    void (*upload_cleanup)(ocireg_store *s, apr_pool_t *p, const char *uuid,
                           const unsigned char *state, apr_uint64_t version);

    /* Smallest chunk worth sending, advertised as OCI-Chunk-Min-Length. */
    apr_off_t (*chunk_min_length)(ocireg_store *s);
    /* Largest blob the store can take, or -1 for no limit. */
    apr_off_t (*max_blob_size)(ocireg_store *s);
    /* Frees what uploads left behind without a session (a stop, a crash):
     * upload data older than `before` whose id `live` does not know. */
    apr_status_t (*upload_sweep)(ocireg_store *s, apr_pool_t *p,
                                 apr_time_t before,
                                 int (*live)(void *ctx, const char *uuid),
                                 void *ctx, int *swept);
    /* After record `version + 1` is saved and the client answered: frees
     * what only record `version` (state `before`) needed. */
    apr_status_t (*upload_settle)(ocireg_store *s, apr_pool_t *p,
                                  const char *uuid, apr_uint64_t version,
                                  const unsigned char *before,
                                  const unsigned char *after);
    /* The durable record of an upload session, so that any process, on
     * any host sharing the store, or httpd after a stop, continues it.
     * Records are numbered: `version` is written once (APR_EEXIST when that
     * version is already there: another request got there first), and
     * supersedes the record before it. `w` is the closed writer of the
     * request that moved the session on (the driver may keep bytes it
     * holds with the record), or NULL when the state keeps no such bytes.
     * Removed with the upload by upload_cleanup and upload_abort. */
    apr_status_t (*state_put)(ocireg_store *s, apr_pool_t *p,
                              const char *uuid, apr_uint64_t version,
                              const void *data, apr_size_t len,
                              ocireg_upload_writer *w);
    /* The latest record and its version. `hint` (0: none) is the version
     * the caller believes latest: a driver may read it directly instead of
     * looking for the latest, so the answer may be older than the latest;
     * state_put tells (APR_EEXIST). */
    apr_status_t (*state_get)(ocireg_store *s, apr_pool_t *p,
                              const char *uuid, apr_uint64_t hint,
                              apr_uint64_t *version, void **data,
                              apr_size_t *len);
    /* Takes the session for changing it from record `version`, across
     * every process and host sharing the store. APR_EBUSY while another
     * holder has it (see ocireg_lock.h), OCIREG_STORE_ESTALE when a later
     * record exists, APR_ENOENT when the session is gone. `me->expires`
     * sets the lease, which upload_lock_keep extends by as much. The lock
     * goes with upload_unlock, or with pool p. A driver may defer taking
     * it until a writer opened with it needs it (upload_open), so that a
     * request that changes nothing shared costs no store request; those
     * answers then come from the writer. */
    apr_status_t (*upload_lock)(ocireg_store *s, apr_pool_t *p,
                                const char *uuid, apr_uint64_t version,
                                const ocireg_lock_owner *me,
                                ocireg_upload_lock **out);
    /* Claims period `period` of the task `what` (a name), once among all
     * hosts sharing the store: APR_SUCCESS for the one caller that did,
     * APR_EEXIST for the others. The claim of the period before goes. */
    apr_status_t (*claim_period)(ocireg_store *s, apr_pool_t *p,
                                 const char *what, apr_int64_t period);
    /* Called often while the holder works: renews its lease when due. */
    void (*upload_lock_keep)(ocireg_upload_lock *l);
    void (*upload_unlock)(ocireg_upload_lock *l);
    /* Lets go of the lock without removing it: the session it guarded was
     * committed or aborted, and its removal goes with the rest. */
    void (*upload_lock_drop)(ocireg_upload_lock *l);

    /* Pull-through mirror (ocireg_mirror.h). A tag fetched from an
     * upstream has a mark: what the mirror keeps about that fetch (the
     * digest, when, the upstream's ETag), a line of text of at most
     * OCIREG_MIRROR_MARK_MAX bytes the store keeps as it is. mark_get:
     * APR_ENOENT when there is none; mark_delete: APR_SUCCESS when there
     * was none either. */
    apr_status_t (*mirror_mark_put)(ocireg_store *s, apr_pool_t *p,
                                    const char *name, const char *tag,
                                    const char *text);
    apr_status_t (*mirror_mark_get)(ocireg_store *s, apr_pool_t *p,
                                    const char *name, const char *tag,
                                    char **text);
    apr_status_t (*mirror_mark_delete)(ocireg_store *s, apr_pool_t *p,
                                       const char *name, const char *tag);
    /* The claim of fetching blob `digest` from an upstream into the
     * store, once among every process and host sharing it. APR_SUCCESS
     * when `me` holds it now (again: a renewal moves me->expires on),
     * APR_EBUSY while another holder's claim stands (ocireg_lock_takeover
     * says when it does not: lease run out, a dead process of this host).
     * fill_release removes the claim if it is still me's. */
    apr_status_t (*fill_claim)(ocireg_store *s, apr_pool_t *p,
                               const char *digest,
                               const ocireg_lock_owner *me);
    void (*fill_release)(ocireg_store *s, apr_pool_t *p, const char *digest,
                         const ocireg_lock_owner *me);

    /* Work a store does in the background once children serve, off every
     * request's path (S3: completes the listing index of a store written
     * before it, or marks an empty store's; both stores: completes the
     * holder index for blob links made before it, once, then marks it);
     * NULL when there is none. It asks `stop` between steps and gives up
     * with APR_EINTR once it says so (the process is exiting and the
     * store's resources go with it); what was done stays, as every step is
     * idempotent, and the next start finishes it. */
    apr_status_t (*prepare)(ocireg_store *s, apr_pool_t *p,
                            int (*stop)(void));
} ocireg_store_ops;

struct ocireg_store {
    const ocireg_store_ops *ops;
    void *impl;
    /* Identifies the backing store, so an upload id is never continued
     * against a different store (another vhost). */
    apr_uint32_t id;
};

/* Helpers shared by the drivers. */
/* "sha256:abc" -> "sha256/abc": the digest grammar keeps both parts free
 * of '/' and of "." and "..", so the result is a safe relative path. */
const char *ocireg_digest_path(apr_pool_t *p, const char *digest);
/* A stable 32-bit id of a store's identifying text (FNV-1a). */
apr_uint32_t ocireg_store_id(const char *text);

/* Filesystem driver rooted at `root` (created if missing). Layout in
 * README. The store lives as long as pool. */
apr_status_t ocireg_store_fs_create(apr_pool_t *pool, const char *root,
                                    ocireg_store **out);

/* S3 / R2 driver. The client configuration is in ocireg_s3.h. */
typedef struct {
    const char *endpoint, *bucket, *region, *access_key, *secret_key;
    const char *prefix;          /* "" or ending in '/' */
    const char *ca_file;
    long connect_timeout_ms, timeout_ms;
    int retries;
    apr_off_t part_size;         /* every part but the last */
    const char *spool_dir;       /* bounded local spool of one part */
    int redirect_seconds;        /* >0: blob GETs answer 307 to a
                                  * presigned URL valid this long */
} ocireg_store_s3_config;

apr_status_t ocireg_store_s3_create(apr_pool_t *pool,
                                    const ocireg_store_s3_config *cfg,
                                    ocireg_store **out);
/* Lets an S3 store keep what it reads in a shared cache (ocireg_cache.h):
 * what a digest names for good, tags and repository links for at most
 * `ttl` (0: not at all) unless this host changes them first. */
typedef struct ocireg_cache ocireg_cache;
void ocireg_store_s3_set_cache(ocireg_store *s, ocireg_cache *cache,
                               apr_interval_time_t ttl);

#endif
