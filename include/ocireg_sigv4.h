/* AWS Signature Version 4 (AWS4-HMAC-SHA256) for the S3 API, as spoken by
 * Cloudflare R2. Written here rather than taken from libcurl because
 * CURLOPT_AWS_SIGV4 in curl 7.88 signs S3 subresource queries ("?uploads")
 * and unsorted multipart queries ("uploadId=..&partNumber=..") wrongly.
 *
 * Every function returns pool memory, or NULL when an argument cannot be
 * signed (missing credentials, a date that is not YYYYMMDDTHHMMSSZ, a
 * failure inside OpenSSL). */
#ifndef OCIREG_SIGV4_H
#define OCIREG_SIGV4_H

#include <apr.h>
#include <apr_pools.h>
#include <apr_time.h>

/* SHA-256 of nothing: the payload hash of every body-less request. */
#define OCIREG_SIGV4_EMPTY_SHA256 \
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
#define OCIREG_SIGV4_UNSIGNED "UNSIGNED-PAYLOAD"

typedef struct {
    const char *name;   /* any case */
    const char *value;  /* raw; trimmed and space-collapsed when signed */
} ocireg_sigv4_header;

typedef struct {
    const char *access_key;
    const char *secret_key;
    const char *region;     /* "auto" for R2 */
    const char *service;    /* "s3" */
} ocireg_sigv4_creds;

/* RFC 3986 encoding as SigV4 wants it: everything but A-Z a-z 0-9 - . _ ~
 * becomes %XX (uppercase hex). keep_slash leaves '/' alone, for object
 * paths; a query component is encoded with keep_slash 0. */
const char *ocireg_sigv4_uri_encode(apr_pool_t *p, const char *s,
                                    int keep_slash);

/* The canonical form of a raw query string: pairs split on '&' (empty ones
 * dropped), '=' added to bare keys ("uploads" -> "uploads="), key and value
 * percent-decoded then re-encoded, pairs sorted by key then value. '+' is
 * a literal plus, not a space. Send this form on the wire too, so the
 * server reads exactly the bytes that were signed. */
const char *ocireg_sigv4_canonical_query(apr_pool_t *p, const char *query);

/* The canonical request. path is already encoded (S3: each segment once,
 * '/' kept; NULL or "" means "/"); query is raw, see above (NULL for
 * none). Header names may come in any case and order; a name given twice
 * has its values joined with ',' in the order given. payload_hash is the
 * lowercase hex SHA-256 of the body or OCIREG_SIGV4_UNSIGNED. */
const char *ocireg_sigv4_canonical_request(apr_pool_t *p, const char *method,
                                           const char *path,
                                           const char *query,
                                           const ocireg_sigv4_header *headers,
                                           int nheaders,
                                           const char *payload_hash);

/* "AWS4-HMAC-SHA256\n<amz_date>\n<scope>\n<hex sha256 of the request>". */
const char *ocireg_sigv4_string_to_sign(apr_pool_t *p,
                                        const ocireg_sigv4_creds *c,
                                        const char *amz_date,
                                        const char *canonical_request);

/* Lowercase hex HMAC of the string to sign under the key derived from the
 * secret, the date of amz_date, the region and the service. */
const char *ocireg_sigv4_signature(apr_pool_t *p, const ocireg_sigv4_creds *c,
                                   const char *amz_date,
                                   const char *string_to_sign);

/* The value of the Authorization header. The caller sends the same
 * headers it signs: host, x-amz-date (= amz_date) and, for S3,
 * x-amz-content-sha256 (= payload_hash). */
const char *ocireg_sigv4_authorization(apr_pool_t *p,
                                       const ocireg_sigv4_creds *c,
                                       const char *method, const char *path,
                                       const char *query,
                                       const ocireg_sigv4_header *headers,
                                       int nheaders,
                                       const char *payload_hash,
                                       const char *amz_date);

/* The whole query of a presigned URL: the caller's query (may be NULL)
 * plus X-Amz-Algorithm, -Credential, -Date, -Expires and -SignedHeaders,
 * canonical and sorted, then "&X-Amz-Signature=...". Only host is signed
 * and the payload is UNSIGNED-PAYLOAD. S3 accepts 1..604800 seconds. */
const char *ocireg_sigv4_presign_query(apr_pool_t *p,
                                       const ocireg_sigv4_creds *c,
                                       const char *method, const char *host,
                                       const char *path, const char *query,
                                       const char *amz_date,
                                       int expires_seconds);

/* Writes t (UTC) as "YYYYMMDDTHHMMSSZ" and a NUL. */
void ocireg_sigv4_amz_date(apr_time_t t, char out[17]);

#endif
