/* A small S3 client for Cloudflare R2 and other S3-compatible stores:
 * path-style URLs, our own SigV4 (ocireg_sigv4.h), UNSIGNED-PAYLOAD bodies
 * and an empty Expect header (R2 never sends 100 Continue). libcurl does
 * the HTTP; its easy and multi handles are pooled per process so
 * connections are reused across requests and threads. Every request, alone
 * or in a batch (ocireg_s3_run), goes through one engine on a pooled multi
 * handle, with the same retries. */
#ifndef OCIREG_S3_H
#define OCIREG_S3_H

#include <apr.h>
#include <apr_pools.h>
#include <apr_tables.h>
#include <apr_errno.h>

/* The backend could not be reached, timed out or answered 5xx: worth a
 * retry later (clients get 503). */
#define OCIREG_S3_EUNAVAILABLE (APR_OS_START_USERERR + 701)
/* The backend refused the request (credentials, signature, bucket): a
 * configuration problem (clients get 500, the log names the cause). */
#define OCIREG_S3_EREFUSED (APR_OS_START_USERERR + 702)
/* A conditional copy found its source changed (x-amz-copy-source-if-match
 * did not hold). */
#define OCIREG_S3_ECHANGED (APR_OS_START_USERERR + 704)

typedef struct {
    const char *endpoint;        /* scheme://host[:port], no path */
    const char *bucket;
    const char *region;          /* "auto" for R2 */
    const char *access_key;
    const char *secret_key;
    long connect_timeout_ms;
    long timeout_ms;             /* whole request, or stall of a stream */
    int retries;                 /* extra attempts of idempotent requests */
    const char *ca_file;         /* NULL: the system's */
} ocireg_s3_config;

typedef struct ocireg_s3 ocireg_s3;

/* Outcome of one request. */
typedef struct {
    long status;                 /* HTTP status, 0 when none came */
    const char *code;            /* S3 error <Code>, or a transport error */
    const char *message;
    const char *etag;
    apr_off_t content_length;
    apr_time_t last_modified;    /* 0 when not given */
    apr_table_t *meta;           /* x-amz-meta-* (names without prefix) */
    char *body;                  /* collected response body (small) */
    apr_size_t body_len;
} ocireg_s3_result;

/* A body source for uploads: fills buf, returns bytes written (0 at end)
 * or -1 on failure. */
typedef apr_ssize_t (*ocireg_s3_reader)(void *ctx, char *buf, apr_size_t n);
/* A body sink for downloads. */
typedef apr_status_t (*ocireg_s3_sink)(void *ctx, const char *buf,
                                       apr_size_t n);

apr_status_t ocireg_s3_create(apr_pool_t *p, const ocireg_s3_config *cfg,
                              ocireg_s3 **out);

/* Object operations. Missing objects give APR_ENOENT. */
apr_status_t ocireg_s3_put(ocireg_s3 *s3, apr_pool_t *p, const char *key,
                           const char *data, apr_size_t len,
                           const apr_table_t *meta, int if_none_match,
                           ocireg_s3_result *res);
apr_status_t ocireg_s3_put_stream(ocireg_s3 *s3, apr_pool_t *p,
                                  const char *key, const char *query,
                                  apr_off_t len, ocireg_s3_reader read,
                                  void *ctx, ocireg_s3_result *res);
apr_status_t ocireg_s3_head(ocireg_s3 *s3, apr_pool_t *p, const char *key,
                            ocireg_s3_result *res);
/* GET of a whole small object (at most max bytes) into res->body. */
apr_status_t ocireg_s3_get_small(ocireg_s3 *s3, apr_pool_t *p,
                                 const char *key, apr_size_t max,
                                 ocireg_s3_result *res);
/* GET of bytes [offset, offset+len) streamed into sink; len < 0 for all. */
apr_status_t ocireg_s3_get_stream(ocireg_s3 *s3, apr_pool_t *p,
                                  const char *key, apr_off_t offset,
                                  apr_off_t len, ocireg_s3_sink sink,
                                  void *ctx, ocireg_s3_result *res);
apr_status_t ocireg_s3_delete(ocireg_s3 *s3, apr_pool_t *p, const char *key,
                              ocireg_s3_result *res);

/* CopyObject within the bucket, server-side: no bytes pass through us.
 * The copy's metadata is `meta` (x-amz-metadata-directive: REPLACE; NULL =
 * none), Content-Type application/octet-stream. if_match non-NULL: copy
 * only if the source's ETag is that (quotes optional); otherwise
 * OCIREG_S3_ECHANGED. A missing source gives APR_ENOENT. The copy's ETag
 * is in res->etag. res may be NULL. */
apr_status_t ocireg_s3_copy(ocireg_s3 *s3, apr_pool_t *p, const char *src_key,
                            const char *dst_key, const apr_table_t *meta,
                            const char *if_match, ocireg_s3_result *res);
/* UploadPartCopy: the whole source object becomes part `part_number` of
 * the upload; the new part's ETag in *etag. if_match as above.
 * NoSuchUpload (and a missing source) give APR_ENOENT. */
apr_status_t ocireg_s3_part_copy(ocireg_s3 *s3, apr_pool_t *p, const char *key,
                                 const char *upload_id, int part_number,
                                 const char *src_key, const char *if_match,
                                 const char **etag);

/* DeleteObjects (quiet): every key of `keys` (const char *, whole keys),
 * 1000 per request. Missing keys count as deleted. APR_SUCCESS when all
 * are gone. */
#define OCIREG_S3_DELETE_BATCH 1000
apr_status_t ocireg_s3_delete_many(ocireg_s3 *s3, apr_pool_t *p,
                                   const apr_array_header_t *keys);

/* Independent requests in parallel, each with the retries of the single
 * call it stands for. */
typedef enum {
    OCIREG_S3_OP_HEAD,
    OCIREG_S3_OP_GET,
    OCIREG_S3_OP_PUT,
    OCIREG_S3_OP_DELETE,
    OCIREG_S3_OP_COPY
} ocireg_s3_op_kind;
typedef struct {
    ocireg_s3_op_kind kind;
    const char *key;
    /* GET: at most max bytes into res.body (as ocireg_s3_get_small) */
    apr_size_t max;
    /* PUT: body, metadata, create-only (If-None-Match: *) */
    const char *data;
    apr_size_t len;
    const apr_table_t *meta;
    int if_none_match;
    /* COPY: source key, if_match (and meta above) as ocireg_s3_copy */
    const char *src_key;
    const char *if_match;
    /* out: what the single call would have returned, and its result */
    apr_status_t status;
    ocireg_s3_result res;
} ocireg_s3_op;
/* Runs n ops, at most `parallel` (<=0: 32) in flight at once; returns
 * when all are done. Each op's outcome is in op->status / op->res. The
 * return is APR_SUCCESS unless the batch itself could not run. */
apr_status_t ocireg_s3_run(ocireg_s3 *s3, apr_pool_t *p, ocireg_s3_op *ops,
                           int n, int parallel);

/* Listing. ListObjectsV2 pages through keys under a prefix in byte order.
 * Every listing goes through ocireg_s3_list_pages, so memory stays at one
 * page (at most OCIREG_S3_LIST_PAGE keys) whatever the prefix holds. */
#define OCIREG_S3_LIST_PAGE 1000
/* Returned by a listing callback: enough, no more keys or requests. */
#define OCIREG_S3_LIST_STOP (APR_OS_START_USERERR + 703)

typedef struct {
    const char *prefix;
    const char *delimiter;       /* NULL: none */
    const char *start_after;     /* a whole key (prefix included), NULL */
    int max_keys;                /* keys per request, 1..1000 (0: 1000) */
} ocireg_s3_list_args;

/* Gets each key of a page without the prefix (a common prefix ends in the
 * delimiter, is_prefix set). The key and anything allocated from `page`
 * go when the page does: keep copies in a pool of your own. APR_SUCCESS
 * goes on, OCIREG_S3_LIST_STOP ends the listing successfully, anything
 * else ends it and is returned. */
typedef apr_status_t (*ocireg_s3_list_fn)(void *ctx, apr_pool_t *page,
                                          const char *key, int is_prefix);

/* Lists page by page until the end or a stop. With `more`: after a stop,
 * whether keys follow the one the callback stopped at. */
apr_status_t ocireg_s3_list_pages(ocireg_s3 *s3, apr_pool_t *p,
                                  const ocireg_s3_list_args *a,
                                  ocireg_s3_list_fn fn, void *ctx, int *more);

/* Every key under prefix (all pages) into an array, without the prefix:
 * for prefixes known to be small (one upload's objects). */
apr_status_t ocireg_s3_list(ocireg_s3 *s3, apr_pool_t *p, const char *prefix,
                            const char *delimiter, apr_array_header_t **keys);

/* Multipart uploads. */
apr_status_t ocireg_s3_mpu_create(ocireg_s3 *s3, apr_pool_t *p,
                                  const char *key, const char **upload_id);
typedef struct {
    int number;
    const char *etag;
    apr_off_t size;
} ocireg_s3_part;
/* All parts, in order (array of ocireg_s3_part). */
apr_status_t ocireg_s3_mpu_list_parts(ocireg_s3 *s3, apr_pool_t *p,
                                      const char *key, const char *upload_id,
                                      apr_array_header_t **parts);
apr_status_t ocireg_s3_mpu_complete(ocireg_s3 *s3, apr_pool_t *p,
                                    const char *key, const char *upload_id,
                                    const apr_array_header_t *parts);
apr_status_t ocireg_s3_mpu_abort(ocireg_s3 *s3, apr_pool_t *p,
                                 const char *key, const char *upload_id);
typedef struct {
    const char *key;
    const char *upload_id;
    const char *initiated;        /* ISO 8601, as the server wrote it */
} ocireg_s3_upload;
/* Multipart uploads in progress under prefix (array of ocireg_s3_upload),
 * all pages. */
apr_status_t ocireg_s3_mpu_list(ocireg_s3 *s3, apr_pool_t *p,
                                const char *prefix,
                                apr_array_header_t **uploads);

/* Parsers of the S3 XML answers, apart from the requests so they can be
 * fuzzed. A body that is not XML with a root element gives
 * OCIREG_S3_EREFUSED. Each next marker is set to NULL on the last page. */
/* <Error>: *code and *message are left alone when absent. */
void ocireg_s3_parse_error(apr_pool_t *p, const char *body, apr_size_t len,
                           const char **code, const char **message);
/* One entry of a ListObjectsV2 page: a key, or a common prefix (with a
 * delimiter), without the listed prefix. */
typedef struct {
    const char *key;
    int is_prefix;
} ocireg_s3_list_entry;
/* A ListObjectsV2 page: the keys and common prefixes that start with
 * prefix and are longer, onto entries (ocireg_s3_list_entry); *truncated
 * says whether the listing goes on, *next_token where. */
apr_status_t ocireg_s3_parse_list(apr_pool_t *p, const char *body,
                                  apr_size_t len, const char *prefix,
                                  apr_array_header_t *entries,
                                  int *truncated, const char **next_token);
/* InitiateMultipartUploadResult: the upload id, or NULL when none. */
const char *ocireg_s3_parse_upload_id(apr_pool_t *p, const char *body,
                                      apr_size_t len);
/* A ListParts page: parts with a number and an ETag, onto parts. */
apr_status_t ocireg_s3_parse_parts(apr_pool_t *p, const char *body,
                                   apr_size_t len, apr_array_header_t *parts,
                                   const char **next);
/* Orders parts by number, as Complete wants them. */
void ocireg_s3_sort_parts(apr_array_header_t *parts);
/* A ListMultipartUploads page: uploads with a key and an id, onto uploads. */
apr_status_t ocireg_s3_parse_uploads(apr_pool_t *p, const char *body,
                                     apr_size_t len,
                                     apr_array_header_t *uploads,
                                     const char **next_key,
                                     const char **next_id);

/* CopyObjectResult or CopyPartResult: the ETag in *etag. S3 may answer a
 * copy 200 and still put an <Error> in the body: then *code and *message
 * are set and the return says what the code means: OCIREG_S3_EUNAVAILABLE
 * (InternalError, SlowDown, ServiceUnavailable, RequestTimeout),
 * APR_ENOENT (NoSuchKey, NoSuchUpload, NoSuchBucket), OCIREG_S3_ECHANGED
 * (PreconditionFailed), else OCIREG_S3_EREFUSED (also for a body that is
 * neither, or a result without an ETag). */
apr_status_t ocireg_s3_parse_copy_result(apr_pool_t *p, const char *body,
                                         apr_size_t len, const char **etag,
                                         const char **code,
                                         const char **message);
/* A key DeleteObjects did not delete. */
typedef struct {
    const char *key;
    const char *code;
    const char *message;
} ocireg_s3_delete_error;
/* A DeleteResult: each <Error> onto errors (ocireg_s3_delete_error), but
 * NoSuchKey, which counts as deleted. A whole-request <Error> fills
 * *code / *message and is classified as in ocireg_s3_parse_copy_result. */
apr_status_t ocireg_s3_parse_delete_result(apr_pool_t *p, const char *body,
                                           apr_size_t len,
                                           apr_array_header_t *errors,
                                           const char **code,
                                           const char **message);
/* What an S3 error code means, as above (NULL: OCIREG_S3_EREFUSED). */
apr_status_t ocireg_s3_code_status(const char *code);

/* A part upload whose body is pushed as it arrives: the request starts at
 * once with Content-Length len, and each write returns when the bytes are
 * on their way, so memory stays at one buffer whatever the part size. */
typedef struct ocireg_s3_stream ocireg_s3_stream;
apr_status_t ocireg_s3_part_start(ocireg_s3 *s3, apr_pool_t *p,
                                  const char *key, const char *upload_id,
                                  int part_number, apr_off_t len,
                                  ocireg_s3_stream **out);
apr_status_t ocireg_s3_part_write(ocireg_s3_stream *st, const char *buf,
                                  apr_size_t n);
/* After len bytes: waits for the answer; the part's ETag in *etag. */
apr_status_t ocireg_s3_part_finish(ocireg_s3_stream *st, const char **etag);
/* Drops the transfer (the part is not created). */
void ocireg_s3_part_abort(ocireg_s3_stream *st);

/* A presigned GET URL valid for `seconds`. */
const char *ocireg_s3_presign_get(ocireg_s3 *s3, apr_pool_t *p,
                                  const char *key, int seconds);

/* While a request of the calling thread waits on the backend (a slow
 * answer, a retry's backoff, a part stream), fn(ctx) is called about once
 * a second, e.g. to renew a lease; never from within itself. Cleared by
 * ocireg_s3_while_waiting_clear(ctx), which does nothing when another ctx
 * was set since. */
void ocireg_s3_while_waiting(void (*fn)(void *ctx), void *ctx);
void ocireg_s3_while_waiting_clear(void *ctx);

/* What the last failed request of the calling thread was and how the
 * backend answered, for the error log (never holds credentials). */
const char *ocireg_s3_last_error(void);

/* A line for the error log describing the last failure in res. */
const char *ocireg_s3_describe(apr_pool_t *p, const ocireg_s3_result *res);

#endif
