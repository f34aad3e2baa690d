/* The libcurl machinery every outgoing HTTP client of the core shares (the
 * S3 client, the upstream registry client): pooled easy and multi handles
 * so connections are reused across requests and threads, one place that
 * sets timeouts, TLS verification and the CA file, and the calling
 * thread's while-waiting hook. */
#ifndef OCIREG_HTTP_H
#define OCIREG_HTTP_H

#include <curl/curl.h>
#include <apr.h>
#include <apr_pools.h>
#include <apr_errno.h>

typedef struct {
    long connect_timeout_ms;
    long timeout_ms;             /* whole request, or stall of a stream */
    const char *ca_file;         /* NULL: the system's */
} ocireg_http_settings;

/* Idle easy handles and multi handles (the latter hold the warm
 * connections); safe between threads. Freed with the pool. */
typedef struct ocireg_http_pool ocireg_http_pool;

apr_status_t ocireg_http_pool_create(apr_pool_t *p, ocireg_http_pool **out);

/* An easy handle, reset, for one request; given back after it. A handle
 * whose transfer failed may hold a dead connection: curl_easy_cleanup it
 * instead of giving it back. */
CURL *ocireg_http_take_handle(ocireg_http_pool *hp);
void ocireg_http_give_handle(ocireg_http_pool *hp, CURL *h);
/* A multi handle serves one thread at a time: taken for a request or a
 * batch and given back with its connections. */
CURLM *ocireg_http_take_multi(ocireg_http_pool *hp);
void ocireg_http_give_multi(ocireg_http_pool *hp, CURLM *m);

/* The settings every client's handles get: no signals, the connect
 * timeout, a whole-request timeout (or, for a stream, a stall limit and
 * larger reads), peer and host verification with the CA file, TCP
 * keepalive, and the while-waiting hook on progress. */
void ocireg_http_configure(CURL *h, const ocireg_http_settings *s,
                           int stream);

/* Runs one configured easy handle to its end on a pooled multi handle,
 * calling the while-waiting hook about once a second. */
CURLcode ocireg_http_perform(ocireg_http_pool *hp, CURL *h);

/* While a request of the calling thread waits (a slow answer, a retry's
 * backoff, a stream), fn(ctx) is called about once a second, e.g. to
 * renew a lease; never from within itself. Cleared by
 * ocireg_http_while_waiting_clear(ctx), which does nothing when another
 * ctx was set since. */
void ocireg_http_while_waiting(void (*fn)(void *ctx), void *ctx);
void ocireg_http_while_waiting_clear(void *ctx);
/* Calls the hook if a second has passed since it last ran. */
void ocireg_http_still_waiting(void);
/* Sleeps t, calling the hook meanwhile. */
void ocireg_http_sleep_waiting(apr_interval_time_t t);

/* Appends n bytes to an answer's body kept NUL-ended in pool memory:
 * grown to what arrives, not sized to the largest allowed (the announced
 * length when there is one below max, else doubling from 16 KiB), never
 * beyond max + 1 bytes. The caller has checked that *len + n <= max. */
void ocireg_http_body_append(apr_pool_t *p, char **body, apr_size_t *len,
                             apr_size_t *cap, apr_size_t max,
                             apr_off_t announced, const char *buf,
                             apr_size_t n);

#endif
