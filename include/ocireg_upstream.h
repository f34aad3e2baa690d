/* A client of an upstream OCI registry (a pull-through mirror's source):
 * GET and HEAD of manifests and blobs, conditional re-checks of tags,
 * anonymous, Basic and bearer-token authentication, redirects followed
 * by hand so credentials never leave the upstream's origin. The HTTP is
 * the engine the S3 client uses (ocireg_http.h). Pure core: no httpd. */
#ifndef OCIREG_UPSTREAM_H
#define OCIREG_UPSTREAM_H

#include <apr.h>
#include <apr_pools.h>
#include <apr_tables.h>
#include <apr_errno.h>
#include <apr_time.h>
#include "ocireg_http.h"

/* Upstream unreachable, timed out, or answered 5xx/429/408. */
#define OCIREG_UP_EUNAVAILABLE (APR_OS_START_USERERR + 760)
/* 401 or 403 after authenticating (or with no way to). */
#define OCIREG_UP_EREFUSED (APR_OS_START_USERERR + 761)
/* A 2xx body ended before its Content-Length, or broke off midway. */
#define OCIREG_UP_ETRUNCATED (APR_OS_START_USERERR + 762)
/* An answer we cannot use: another 4xx, a malformed challenge or token
 * answer, too many redirects, a manifest over the size cap. */
#define OCIREG_UP_EINVALID (APR_OS_START_USERERR + 763)
/* Not found upstream (404) is APR_ENOENT. */

/* The largest manifest read whole (ocireg_upstream_fetch without sink). */
#define OCIREG_UP_MANIFEST_MAX (4 * 1024 * 1024)
/* Redirects followed per request. */
#define OCIREG_UP_MAX_REDIRECTS 5

/* What a manifest request accepts: OCI and Docker manifests and indexes. */
#define OCIREG_UP_MANIFEST_ACCEPT                                   \
    "application/vnd.oci.image.manifest.v1+json, "                  \
    "application/vnd.oci.image.index.v1+json, "                     \
    "application/vnd.docker.distribution.manifest.v2+json, "        \
    "application/vnd.docker.distribution.manifest.list.v2+json"

typedef struct {
    const char *base_url;        /* scheme://host[:port], no path */
    const char *user;            /* NULL: anonymous */
    const char *password;
    ocireg_http_settings http;
    int retries;                 /* extra attempts while unavailable */
} ocireg_upstream_config;

typedef struct ocireg_upstream ocireg_upstream;

/* Bearer tokens per (upstream, scope) until shortly before they expire;
 * safe between threads, held by the caller (one per process is enough)
 * and shared by any number of upstreams. */
typedef struct ocireg_upstream_tokens ocireg_upstream_tokens;
apr_status_t ocireg_upstream_tokens_create(apr_pool_t *p, int capacity,
                                           ocireg_upstream_tokens **out);
/* The token cached under key (upstream base URL, a space, the scope),
 * copied into p, while now is before its refresh time; else NULL. */
const char *ocireg_upstream_tokens_get(ocireg_upstream_tokens *t,
                                       apr_pool_t *p, const char *key,
                                       apr_time_t now);
/* Caches token under key until refresh_at; token NULL forgets key. */
void ocireg_upstream_tokens_put(ocireg_upstream_tokens *t, const char *key,
                                const char *token, apr_time_t refresh_at);

/* handles NULL: a pool of its own; tokens NULL: no cache (a token per
 * request that needs one). Both must live as long as the upstream. */
apr_status_t ocireg_upstream_create(apr_pool_t *p,
                                    const ocireg_upstream_config *cfg,
                                    ocireg_http_pool *handles,
                                    ocireg_upstream_tokens *tokens,
                                    ocireg_upstream **out);

typedef enum { OCIREG_UP_MANIFEST, OCIREG_UP_BLOB } ocireg_upstream_kind;

/* Gets the bytes of a 2xx answer only (never an error's or a redirect's
 * body); anything but APR_SUCCESS aborts the transfer and is returned. */
typedef apr_status_t (*ocireg_upstream_sink)(void *ctx, const char *buf,
                                             apr_size_t n);

typedef struct {
    ocireg_upstream_kind kind;
    int head;                    /* HEAD instead of GET */
    const char *repo;            /* upstream repository name */
    const char *reference;       /* tag or digest */
    /* A tag re-check: If-None-Match with the digest or ETag seen before;
     * a 304 gives APR_SUCCESS with res->not_modified. */
    const char *if_none_match;
    /* GET: the body streams into sink; without one it is read whole
     * into res->body, at most max bytes (0: OCIREG_UP_MANIFEST_MAX). */
    ocireg_upstream_sink sink;
    void *sink_ctx;
    apr_size_t max;
} ocireg_upstream_req;

typedef struct {
    long status;                 /* the final answer's, 0 when none */
    const char *content_type;
    const char *digest;          /* Docker-Content-Digest */
    const char *etag;
    apr_off_t content_length;    /* -1 when not given */
    int not_modified;
    char *body;                  /* without sink: the body, NUL-ended */
    apr_size_t body_len;
    apr_off_t received;          /* 2xx body bytes delivered */
    int redirects;               /* followed */
    int token_fetches;           /* token requests this call made */
    const char *url;             /* the last URL asked (no credentials) */
    const char *error;           /* for the log, when not APR_SUCCESS */
} ocireg_upstream_result;

apr_status_t ocireg_upstream_fetch(ocireg_upstream *u, apr_pool_t *p,
                                   const ocireg_upstream_req *rq,
                                   ocireg_upstream_result *res);

/* The pure parts, apart so they can be unit-tested and fuzzed. */

/* One challenge of WWW-Authenticate (RFC 7235): the scheme, its
 * auth-params (names case-insensitive, quoted-string values unescaped,
 * the first of a repeated name kept) or its token68. */
typedef struct {
    const char *scheme;
    apr_table_t *params;
    const char *token68;
} ocireg_upstream_challenge;
/* Appends the challenges of one header value to out; APR_EINVAL when the
 * value is malformed (out then holds those before the fault). */
apr_status_t ocireg_upstream_parse_challenges(apr_pool_t *p,
                                              const char *value,
                                              apr_array_header_t *out);

typedef struct {
    const char *token;           /* printable ASCII, no spaces */
    apr_time_t expires;
    apr_time_t refresh_at;       /* when to stop using it: shortly before */
} ocireg_upstream_token;
/* A token server's JSON: `token` (else `access_token`), `expires_in`
 * (seconds; default 60), `issued_at` (RFC 3339; counted from it when it
 * lies between now - expires_in and now, else from now). */
apr_status_t ocireg_upstream_parse_token(apr_pool_t *p, const char *body,
                                         apr_size_t len, apr_time_t now,
                                         ocireg_upstream_token *out);
/* An RFC 3339 date-time, or -1. */
apr_time_t ocireg_upstream_parse_rfc3339(const char *s);

/* Whether two absolute http(s) URLs share scheme, host and port (default
 * ports filled in, host case-insensitive). 0 for anything unparsable or
 * with userinfo. */
int ocireg_upstream_same_origin(const char *a, const char *b);
/* A Location resolved against the URL that answered it (absolute,
 * scheme-relative, absolute-path or relative); NULL when it is not an
 * http(s) URL or holds control characters or spaces. The fragment goes. */
const char *ocireg_upstream_resolve(apr_pool_t *p, const char *from,
                                    const char *location);
/* Whether the Authorization header may go to url on a request for the
 * upstream at base_url: only to the same origin. */
int ocireg_upstream_may_send_auth(const char *base_url, const char *url);

/* The token request's URL: realm plus service and scope, URL-encoded;
 * NULL when realm is not an http(s) URL. */
const char *ocireg_upstream_token_url(apr_pool_t *p, const char *realm,
                                      const char *service, const char *scope);

#endif
