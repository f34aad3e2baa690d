#include <string.h>
#include <apr_thread_mutex.h>
#include <apr_time.h>
#include "ocireg_http.h"

#define MAX_IDLE_HANDLES 16
/* Multi handles hold the idle connections: one is taken for each request
 * or batch and for each stream. */
#define MAX_IDLE_MULTIS 16
/* Idle connections each multi keeps (a full batch's worth). */
#define MULTI_MAX_CONNECTS 32

struct ocireg_http_pool {
    apr_thread_mutex_t *lock;         /* guards the idle arrays */
    CURL *idle[MAX_IDLE_HANDLES];     /* easy handles, set up anew each use */
    int nidle;
    CURLM *idle_multi[MAX_IDLE_MULTIS]; /* their caches: warm connections */
    int nidle_multi;
};

/* Handles are taken for one request and given back, so every thread gets
 * its own while connections are reused across requests. */
CURL *ocireg_http_take_handle(ocireg_http_pool *hp)
{
    CURL *h = NULL;
    apr_thread_mutex_lock(hp->lock);
    if (hp->nidle > 0)
        h = hp->idle[--hp->nidle];
    apr_thread_mutex_unlock(hp->lock);
    if (h)
        curl_easy_reset(h);
    else
        h = curl_easy_init();
    return h;
}

void ocireg_http_give_handle(ocireg_http_pool *hp, CURL *h)
{
    apr_thread_mutex_lock(hp->lock);
    if (hp->nidle < MAX_IDLE_HANDLES) {
        hp->idle[hp->nidle++] = h;
        h = NULL;
    }
    apr_thread_mutex_unlock(hp->lock);
    if (h)
        curl_easy_cleanup(h);
}

/* Connections live in a multi handle's cache, and a multi handle serves
 * one thread at a time: each request or batch takes one from this pool and
 * gives it back with its connections. (A curl share of connections is not
 * safe between concurrent threads in libcurl 7.88.) */
CURLM *ocireg_http_take_multi(ocireg_http_pool *hp)
{
    CURLM *m = NULL;
    apr_thread_mutex_lock(hp->lock);
    if (hp->nidle_multi > 0)
        m = hp->idle_multi[--hp->nidle_multi];
    apr_thread_mutex_unlock(hp->lock);
    if (!m && (m = curl_multi_init()) != NULL)
        curl_multi_setopt(m, CURLMOPT_MAXCONNECTS, (long)MULTI_MAX_CONNECTS);
    return m;
}

void ocireg_http_give_multi(ocireg_http_pool *hp, CURLM *m)
{
    apr_thread_mutex_lock(hp->lock);
    if (hp->nidle_multi < MAX_IDLE_MULTIS) {
        hp->idle_multi[hp->nidle_multi++] = m;
        m = NULL;
    }
    apr_thread_mutex_unlock(hp->lock);
    if (m)
        curl_multi_cleanup(m);
}

/* With the pool go the idle handles and the connections they keep. */
static apr_status_t http_pool_cleanup(void *data)
{
    ocireg_http_pool *hp = data;
    while (hp->nidle_multi > 0)
        curl_multi_cleanup(hp->idle_multi[--hp->nidle_multi]);
    while (hp->nidle > 0)
        curl_easy_cleanup(hp->idle[--hp->nidle]);
    return APR_SUCCESS;
}

apr_status_t ocireg_http_pool_create(apr_pool_t *p, ocireg_http_pool **out)
{
    ocireg_http_pool *hp = apr_pcalloc(p, sizeof(*hp));
    apr_status_t rv;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    rv = apr_thread_mutex_create(&hp->lock, APR_THREAD_MUTEX_DEFAULT, p);
    if (rv != APR_SUCCESS)
        return rv;
    /* Registered after the mutex, so it runs before the mutex goes. */
    apr_pool_cleanup_register(p, hp, http_pool_cleanup,
                              apr_pool_cleanup_null);
    *out = hp;
    return APR_SUCCESS;
}

/* The calling thread's "still working" hook. */
static __thread void (*waiting_fn)(void *ctx);
static __thread void *waiting_ctx;
static __thread int in_waiting_fn;
static __thread apr_time_t waiting_called;

void ocireg_http_while_waiting(void (*fn)(void *ctx), void *ctx)
{
    waiting_fn = fn;
    waiting_ctx = ctx;
    waiting_called = 0;
}

void ocireg_http_while_waiting_clear(void *ctx)
{
    if (waiting_ctx == ctx) {
        waiting_fn = NULL;
        waiting_ctx = NULL;
    }
}

void ocireg_http_still_waiting(void)
{
    apr_time_t now;
    /* The hook may itself talk to a backend: not again from there. */
    if (!waiting_fn || in_waiting_fn)
        return;
    /* libcurl reports progress many times a second per transfer, and a
     * batch runs many transfers: the hook runs about once a second. */
    now = apr_time_now();
    if (waiting_called && now - waiting_called < apr_time_from_sec(1))
        return;
    waiting_called = now;
    in_waiting_fn = 1;
    waiting_fn(waiting_ctx);
    in_waiting_fn = 0;
}

void ocireg_http_sleep_waiting(apr_interval_time_t t)
{
    while (t > 0) {
        apr_interval_time_t slice = t < apr_time_from_sec(1)
                                        ? t
                                        : apr_time_from_sec(1);
        ocireg_http_still_waiting();
        apr_sleep(slice);
        t -= slice;
    }
}

/* libcurl calls this about once a second while a transfer waits. */
static int on_progress(void *ud, curl_off_t dltotal, curl_off_t dlnow,
                       curl_off_t ultotal, curl_off_t ulnow)
{
    (void)ud;
    (void)dltotal;
    (void)dlnow;
    (void)ultotal;
    (void)ulnow;
    ocireg_http_still_waiting();
    return 0;
}

void ocireg_http_configure(CURL *h, const ocireg_http_settings *s, int stream)
{
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, s->connect_timeout_ms);
    if (stream) {
        /* Big bodies take as long as they take; a stall does not. */
        curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
        curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME,
                         (s->timeout_ms + 999) / 1000);
        /* Fewer, larger reads (about a tenth less CPU per GiB than
         * curl's 16 KiB). */
        curl_easy_setopt(h, CURLOPT_BUFFERSIZE, 512L * 1024);
    }
    else {
        curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, s->timeout_ms);
    }
    /* Stated, not left to defaults: a peer is always verified. */
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
    if (s->ca_file)
        curl_easy_setopt(h, CURLOPT_CAINFO, s->ca_file);
    /* Pooled connections sit idle between requests: probes find a peer
     * that went away before a request is sent on its connection. */
    curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
}

CURLcode ocireg_http_perform(ocireg_http_pool *hp, CURL *h)
{
    CURLM *m = ocireg_http_take_multi(hp);
    CURLcode cc = CURLE_FAILED_INIT;
    int running = 1;
    if (!m)
        return CURLE_OUT_OF_MEMORY;
    if (curl_multi_add_handle(m, h) != CURLM_OK) {
        ocireg_http_give_multi(hp, m);
        return CURLE_FAILED_INIT;
    }
    for (;;) {
        CURLMsg *msg;
        int left, done = 0;
        if (curl_multi_perform(m, &running) != CURLM_OK)
            break;
        while ((msg = curl_multi_info_read(m, &left)) != NULL)
            if (msg->msg == CURLMSG_DONE && msg->easy_handle == h) {
                cc = msg->data.result;
                done = 1;
            }
        if (done || !running)
            break;
        ocireg_http_still_waiting();
        curl_multi_poll(m, NULL, 0, 1000, NULL);
    }
    curl_multi_remove_handle(m, h);
    ocireg_http_give_multi(hp, m);
    return cc;
}

void ocireg_http_body_append(apr_pool_t *p, char **body, apr_size_t *len,
                             apr_size_t *cap, apr_size_t max,
                             apr_off_t announced, const char *buf,
                             apr_size_t n)
{
    if (*len + n + 1 > *cap) {
        /* A page of 1000 keys is some 300 KiB of a 16 MiB limit. */
        apr_size_t want = *cap ? *cap * 2 : 16 * 1024;
        char *grown;
        if (!*cap && announced > 0 && (apr_uint64_t)announced < max)
            want = (apr_size_t)announced + 1;
        while (want < *len + n + 1)
            want *= 2;
        if (want > max + 1)
            want = max + 1;
        grown = apr_palloc(p, want);
        if (*len)
            memcpy(grown, *body, *len);
        *body = grown;
        *cap = want;
    }
    memcpy(*body + *len, buf, n);
    *len += n;
    (*body)[*len] = '\0';
}
