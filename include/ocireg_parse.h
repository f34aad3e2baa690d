/* Parsing of everything a client puts in a URL or header: repository names,
 * tags, digests, upload ids, Content-Range and pagination parameters.
 * Pure functions, no httpd. Each returns 1 (valid) or 0 (invalid) unless
 * documented otherwise; none of them allocate. */
#ifndef OCIREG_PARSE_H
#define OCIREG_PARSE_H

#include <apr.h>
#include <apr_pools.h>

/* Longest repository name accepted. Clients limit host + "/" + name to 255,
 * so no real client sends more. */
#define OCIREG_NAME_MAX 255
#define OCIREG_TAG_MAX 128
/* "sha256:" + 64 hex, or "sha512:" + 128 hex. */
#define OCIREG_DIGEST_MAX 135
#define OCIREG_UUID_LEN 36
/* Longest digest text of any algorithm: an unregistered one longer than
 * this is refused as DIGEST_INVALID rather than reaching the store, whose
 * paths and keys hold it as one component. */
#define OCIREG_DIGEST_TEXT_MAX 255
/* The largest blob any store accepts (S3's 10,000 parts of at most 5 GiB
 * is ~53 TB; one filesystem file no more): 2^50 bytes, 1 PiB. Every offset
 * a client sends (Content-Length, Content-Range, Range) is refused above
 * it before any arithmetic, so sums and differences of two of them never
 * overflow apr_off_t. */
#define OCIREG_OFFSET_MAX ((apr_off_t)1 << 50)

/* <name>: components of [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)* joined by '/'.
 * The grammar alone keeps a name inside the store: no '.', '..', empty,
 * absolute or NUL component can match it. */
int ocireg_name_valid(const char *name);

/* <tag>: [a-zA-Z0-9_][a-zA-Z0-9._-]{0,127} */
int ocireg_tag_valid(const char *tag);

typedef enum {
    OCIREG_DIGEST_BAD = 0,     /* not of the digest grammar */
    OCIREG_DIGEST_SHA256,      /* sha256:<64 lowercase hex> */
    OCIREG_DIGEST_SHA512,      /* sha512:<128 lowercase hex> */
    OCIREG_DIGEST_OTHER        /* grammatical, algorithm not supported */
} ocireg_digest_kind;

/* Classifies a digest string by the OCI image-spec grammar
 * algorithm ":" encoded, with the registered algorithms' exact encodings. */
ocireg_digest_kind ocireg_digest_parse(const char *digest);

/* A reference is a tag or a digest; returns 1 for a tag, 2 for a digest we
 * support, 0 for anything else (caller decides TAG_INVALID vs DIGEST_INVALID
 * by whether it contains ':'). */
int ocireg_reference_kind(const char *ref);

/* Upload ids are lowercase canonical UUIDs (8-4-4-4-12 hex). */
int ocireg_uuid_valid(const char *s);

/* Content-Range of a PATCH or closing PUT, in every form clients send:
 * "a-b", "bytes a-b", "bytes=a-b", "bytes a-b/total" and "bytes a-b/" followed by a star.
 * On success *start and *end are the inclusive byte positions and
 * *total is the declared total or -1. Returns 0 on any syntax error,
 * when end < start, or when a number exceeds OCIREG_OFFSET_MAX. */
int ocireg_content_range_parse(const char *value, apr_off_t *start,
                               apr_off_t *end, apr_off_t *total);

/* A non-negative decimal of at most OCIREG_OFFSET_MAX; no sign, no
 * spaces. */
int ocireg_off_parse(const char *s, apr_off_t *out);

/* Reads one query argument by name from a raw query string, percent-decoded
 * into pool memory. Returns NULL when absent. Sets *bad when the argument is
 * present but malformed (bad escape or an encoded NUL). */
const char *ocireg_query_arg(apr_pool_t *p, const char *query,
                             const char *name, int *bad);

/* Percent-encodes a query value (RFC 3986 unreserved kept). */
const char *ocireg_query_escape(apr_pool_t *p, const char *value);

/* The Range of a blob GET: one range "bytes=a-b", "bytes=a-" or
 * "bytes=-n" against a blob of size bytes. Returns 1 when it parses, with
 * *satisfiable telling whether it overlaps the blob and, if so, *start and
 * *len the bytes to send; 0 for anything else (multiple ranges included),
 * which the caller ignores by serving the whole blob. */
int ocireg_range_parse(const char *h, apr_off_t size, apr_off_t *start,
                       apr_off_t *len, int *satisfiable);

/* Strict base64url without padding (as JOSE uses it): NULL for any other
 * character, a length of 1 mod 4, or non-zero unused bits, so that a value
 * has one spelling. The result is NUL-terminated for convenience. */
unsigned char *ocireg_base64url_decode(apr_pool_t *p, const char *s,
                                       apr_size_t len, apr_size_t *outlen);

/* Base64url without padding. */
char *ocireg_base64url_encode(apr_pool_t *p, const unsigned char *in,
                              apr_size_t len);

#endif
