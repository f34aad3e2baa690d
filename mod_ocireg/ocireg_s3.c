#include <string.h>
#include <stdlib.h>
#include <curl/curl.h>
#include <apr_strings.h>
#include <apr_thread_mutex.h>
#include <apr_xml.h>
#include <apr_lib.h>
#include <apr_date.h>
#include "ocireg_s3.h"
#include "ocireg_sigv4.h"

#define MAX_IDLE_HANDLES 16
#define ERROR_BODY_MAX (64 * 1024)

struct ocireg_s3 {
    ocireg_s3_config cfg;
    ocireg_sigv4_creds creds;
    const char *host;                 /* Host header: host[:port] */
    apr_thread_mutex_t *lock;         /* guards idle[] */
    CURL *idle[MAX_IDLE_HANDLES];     /* handles keeping warm connections */
    int nidle;
};

/* Handles are taken for one request and given back, so every thread gets
 * its own while connections are reused across requests. */
static CURL *take_handle(ocireg_s3 *s3)
{
    CURL *h = NULL;
    apr_thread_mutex_lock(s3->lock);
    if (s3->nidle > 0)
        h = s3->idle[--s3->nidle];
    apr_thread_mutex_unlock(s3->lock);
    if (h)
        curl_easy_reset(h);
    else
        h = curl_easy_init();
    return h;
}

static void give_handle(ocireg_s3 *s3, CURL *h)
{
    apr_thread_mutex_lock(s3->lock);
    if (s3->nidle < MAX_IDLE_HANDLES) {
        s3->idle[s3->nidle++] = h;
        h = NULL;
    }
    apr_thread_mutex_unlock(s3->lock);
    if (h)
        curl_easy_cleanup(h);
}

apr_status_t ocireg_s3_create(apr_pool_t *p, const ocireg_s3_config *cfg,
                              ocireg_s3 **out)
{
    ocireg_s3 *s3 = apr_pcalloc(p, sizeof(*s3));
    const char *h = strstr(cfg->endpoint, "://");
    apr_status_t rv;

    if (!h || !cfg->bucket || !cfg->access_key || !cfg->secret_key)
        return APR_EINVAL;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    s3->cfg = *cfg;
    s3->cfg.endpoint = apr_pstrdup(p, cfg->endpoint);
    if (!s3->cfg.region)
        s3->cfg.region = "auto";
    s3->host = apr_pstrdup(p, h + 3);
    if (strchr(s3->host, '/'))
        return APR_EINVAL;
    s3->creds.access_key = cfg->access_key;
    s3->creds.secret_key = cfg->secret_key;
    s3->creds.region = s3->cfg.region;
    s3->creds.service = "s3";
    rv = apr_thread_mutex_create(&s3->lock, APR_THREAD_MUTEX_DEFAULT, p);
    if (rv != APR_SUCCESS)
        return rv;
    *out = s3;
    return APR_SUCCESS;
}

/* The calling thread's "still working" hook (ocireg_s3_while_waiting). */
static __thread void (*waiting_fn)(void *ctx);
static __thread void *waiting_ctx;
static __thread int in_waiting_fn;

void ocireg_s3_while_waiting(void (*fn)(void *ctx), void *ctx)
{
    waiting_fn = fn;
    waiting_ctx = ctx;
}

void ocireg_s3_while_waiting_clear(void *ctx)
{
    if (waiting_ctx == ctx) {
        waiting_fn = NULL;
        waiting_ctx = NULL;
    }
}

static void still_waiting(void)
{
    /* The hook may itself talk to the backend: not again from there. */
    if (!waiting_fn || in_waiting_fn)
        return;
    in_waiting_fn = 1;
    waiting_fn(waiting_ctx);
    in_waiting_fn = 0;
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
    still_waiting();
    return 0;
}

/* Request description, shared by plain requests and part streams. */
typedef struct {
    const char *method;
    const char *key;                  /* NULL for the bucket itself */
    const char *query;                /* raw, canonicalized before use */
    apr_array_header_t *signed_hdrs;  /* ocireg_sigv4_header */
    const char *range;                /* unsigned Range header */
    const char *body;
    apr_size_t body_len;
    ocireg_s3_reader reader;
    void *reader_ctx;
    apr_off_t reader_len;
    ocireg_s3_sink sink;
    void *sink_ctx;
    apr_status_t sink_rv;
    apr_size_t collect_max;
    int stream;                       /* no total timeout, stall limit */
    apr_pool_t *p;
    ocireg_s3_result *res;
    apr_size_t body_pos;
    apr_size_t body_cap;              /* bytes allocated at res->body */
} s3_req;

static void add_signed(s3_req *rq, const char *name, const char *value)
{
    ocireg_sigv4_header *h;
    if (!rq->signed_hdrs)
        rq->signed_hdrs = apr_array_make(rq->p, 6, sizeof(*h));
    h = apr_array_push(rq->signed_hdrs);
    h->name = name;
    h->value = value;
}

static const char *object_path(ocireg_s3 *s3, apr_pool_t *p, const char *key)
{
    return apr_pstrcat(p, "/", ocireg_sigv4_uri_encode(p, s3->cfg.bucket, 0),
                       key ? "/" : "",
                       key ? ocireg_sigv4_uri_encode(p, key, 1) : "", NULL);
}

static size_t on_header(char *buf, size_t size, size_t n, void *ud)
{
    s3_req *rq = ud;
    size_t len = size * n;
    char *line = apr_pstrmemdup(rq->p, buf, len), *colon, *v, *end;
    colon = strchr(line, ':');
    if (!colon)
        return len;
    *colon = '\0';
    v = colon + 1;
    while (*v == ' ' || *v == '\t')
        v++;
    end = v + strlen(v);
    while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' '))
        *--end = '\0';
    if (strcasecmp(line, "Last-Modified") == 0)
        rq->res->last_modified = apr_date_parse_http(v);
    else if (strcasecmp(line, "ETag") == 0)
        rq->res->etag = v;
    else if (strcasecmp(line, "Content-Length") == 0)
        rq->res->content_length = apr_atoi64(v);
    else if (strncasecmp(line, "x-amz-meta-", 11) == 0)
        apr_table_set(rq->res->meta, apr_pstrdup(rq->p, line + 11), v);
    return len;
}

static size_t on_body(char *buf, size_t size, size_t n, void *ud)
{
    s3_req *rq = ud;
    size_t len = size * n;
    ocireg_s3_result *res = rq->res;
    /* res->status comes from the status line (on_header_status); error
     * bodies are collected whatever the request asked for. */
    if (rq->sink && res->status >= 200 && res->status < 300) {
        rq->sink_rv = rq->sink(rq->sink_ctx, buf, len);
        return rq->sink_rv == APR_SUCCESS ? len : 0;
    }
    {
        int ok = res->status >= 200 && res->status < 300;
        apr_size_t max = ok && rq->collect_max ? rq->collect_max
                                               : ERROR_BODY_MAX;
        if (res->body_len + len > max)
            return 0;
        if (res->body_len + len + 1 > rq->body_cap) {
            /* Grown to what arrives, not sized to the largest allowed. */
            apr_size_t cap = rq->body_cap ? rq->body_cap * 2 : 16 * 1024;
            char *grown;
            while (cap < res->body_len + len + 1)
                cap *= 2;
            if (cap > max + 1)
                cap = max + 1;
            grown = apr_palloc(rq->p, cap);
            if (res->body_len)
                memcpy(grown, res->body, res->body_len);
            res->body = grown;
            rq->body_cap = cap;
        }
        memcpy(res->body + res->body_len, buf, len);
        res->body_len += len;
        res->body[res->body_len] = '\0';
    }
    return len;
}

static size_t on_read(char *buf, size_t size, size_t n, void *ud)
{
    s3_req *rq = ud;
    size_t len = size * n;
    if (rq->reader) {
        apr_ssize_t got = rq->reader(rq->reader_ctx, buf, len);
        return got < 0 ? CURL_READFUNC_ABORT : (size_t)got;
    }
    if (len > rq->body_len - rq->body_pos)
        len = rq->body_len - rq->body_pos;
    memcpy(buf, rq->body + rq->body_pos, len);
    rq->body_pos += len;
    return len;
}

/* Inner text of the first element named `name` anywhere below e. */
static const char *xml_find(apr_pool_t *p, const apr_xml_elem *e,
                            const char *name)
{
    const apr_xml_elem *c;
    for (c = e ? e->first_child : NULL; c; c = c->next) {
        if (strcmp(c->name, name) == 0) {
            const char *t = NULL;
            apr_size_t len;
            apr_xml_to_text(p, c, APR_XML_X2T_INNER, NULL, NULL, &t, &len);
            return t ? t : "";
        }
    }
    return NULL;
}

static apr_xml_doc *xml_parse(apr_pool_t *p, const char *body, apr_size_t len)
{
    apr_xml_parser *x = apr_xml_parser_create(p);
    apr_xml_doc *doc = NULL;
    if (!body || !len)
        return NULL;
    if (apr_xml_parser_feed(x, body, len) != APR_SUCCESS
        || apr_xml_parser_done(x, &doc) != APR_SUCCESS)
        return NULL;
    return doc;
}

void ocireg_s3_parse_error(apr_pool_t *p, const char *body, apr_size_t len,
                           const char **code, const char **message)
{
    apr_xml_doc *doc = xml_parse(p, body, len);
    if (!doc || !doc->root)
        return;
    *code = xml_find(p, doc->root, "Code");
    *message = xml_find(p, doc->root, "Message");
}

static void parse_error_body(apr_pool_t *p, ocireg_s3_result *res)
{
    ocireg_s3_parse_error(p, res->body, res->body_len, &res->code,
                          &res->message);
}

/* A page is the last one unless it says it is truncated and names where
 * the next one starts. */
static const char *next_marker(apr_pool_t *p, const apr_xml_elem *root,
                               const char *name)
{
    const char *truncated = xml_find(p, root, "IsTruncated");
    const char *m = xml_find(p, root, name);
    if (!truncated || strcmp(truncated, "true") != 0 || !m || !*m)
        return NULL;
    return m;
}

apr_status_t ocireg_s3_parse_list(apr_pool_t *p, const char *body,
                                  apr_size_t len, const char *prefix,
                                  apr_array_header_t *entries,
                                  int *truncated, const char **next_token)
{
    apr_xml_doc *doc = xml_parse(p, body, len);
    apr_size_t plen = strlen(prefix);
    const apr_xml_elem *e;
    const char *t;
    *truncated = 0;
    *next_token = NULL;
    if (!doc || !doc->root)
        return OCIREG_S3_EREFUSED;
    for (e = doc->root->first_child; e; e = e->next) {
        ocireg_s3_list_entry en = { NULL, 0 };
        if (strcmp(e->name, "Contents") == 0)
            en.key = xml_find(p, e, "Key");
        else if (strcmp(e->name, "CommonPrefixes") == 0) {
            en.key = xml_find(p, e, "Prefix");
            en.is_prefix = 1;
        }
        /* Only what lies under the listed prefix: a confused or hostile
         * server's other keys are not ours to hand on. */
        if (!en.key || strlen(en.key) <= plen
            || strncmp(en.key, prefix, plen) != 0)
            continue;
        en.key += plen;
        APR_ARRAY_PUSH(entries, ocireg_s3_list_entry) = en;
    }
    t = xml_find(p, doc->root, "IsTruncated");
    *truncated = t && strcmp(t, "true") == 0;
    *next_token = next_marker(p, doc->root, "NextContinuationToken");
    return APR_SUCCESS;
}

const char *ocireg_s3_parse_upload_id(apr_pool_t *p, const char *body,
                                      apr_size_t len)
{
    apr_xml_doc *doc = xml_parse(p, body, len);
    const char *id = doc && doc->root ? xml_find(p, doc->root, "UploadId")
                                      : NULL;
    return id && *id ? id : NULL;
}

apr_status_t ocireg_s3_parse_parts(apr_pool_t *p, const char *body,
                                   apr_size_t len, apr_array_header_t *parts,
                                   const char **next)
{
    apr_xml_doc *doc = xml_parse(p, body, len);
    const apr_xml_elem *e;
    *next = NULL;
    if (!doc || !doc->root)
        return OCIREG_S3_EREFUSED;
    for (e = doc->root->first_child; e; e = e->next) {
        ocireg_s3_part *pt;
        const char *num, *size, *etag;
        if (strcmp(e->name, "Part") != 0)
            continue;
        num = xml_find(p, e, "PartNumber");
        size = xml_find(p, e, "Size");
        etag = xml_find(p, e, "ETag");
        /* Complete names every part by number and ETag. */
        if (!num || !etag)
            continue;
        pt = apr_array_push(parts);
        pt->number = atoi(num);
        pt->etag = etag;
        pt->size = size ? apr_atoi64(size) : 0;
    }
    *next = next_marker(p, doc->root, "NextPartNumberMarker");
    return APR_SUCCESS;
}

apr_status_t ocireg_s3_parse_uploads(apr_pool_t *p, const char *body,
                                     apr_size_t len,
                                     apr_array_header_t *uploads,
                                     const char **next_key,
                                     const char **next_id)
{
    apr_xml_doc *doc = xml_parse(p, body, len);
    const apr_xml_elem *e;
    *next_key = *next_id = NULL;
    if (!doc || !doc->root)
        return OCIREG_S3_EREFUSED;
    for (e = doc->root->first_child; e; e = e->next) {
        ocireg_s3_upload *u;
        const char *key, *id;
        if (strcmp(e->name, "Upload") != 0)
            continue;
        key = xml_find(p, e, "Key");
        id = xml_find(p, e, "UploadId");
        /* Callers compare and abort by key and id. */
        if (!key || !id)
            continue;
        u = apr_array_push(uploads);
        u->key = key;
        u->upload_id = id;
        u->initiated = xml_find(p, e, "Initiated");
    }
    *next_key = next_marker(p, doc->root, "NextKeyMarker");
    if (*next_key)
        *next_id = xml_find(p, doc->root, "NextUploadIdMarker");
    return APR_SUCCESS;
}

static apr_status_t status_of(long status)
{
    if (status >= 200 && status < 300)
        return APR_SUCCESS;
    if (status == 404)
        return APR_ENOENT;
    if (status == 412)
        return APR_EEXIST;
    if (status >= 500 || status == 429 || status == 408)
        return OCIREG_S3_EUNAVAILABLE;
    return OCIREG_S3_EREFUSED;
}

/* Sets up a handle for rq: URL, signature, callbacks, timeouts. The header
 * list is returned for the caller to free after the transfer. */
static struct curl_slist *prepare(ocireg_s3 *s3, CURL *h, s3_req *rq)
{
    apr_pool_t *p = rq->p;
    char date[17];
    const char *path = object_path(s3, p, rq->key);
    const char *query = rq->query ? ocireg_sigv4_canonical_query(p, rq->query)
                                  : NULL;
    const char *auth, *url;
    struct curl_slist *list = NULL;
    int i;

    ocireg_sigv4_amz_date(apr_time_now(), date);
    add_signed(rq, "host", s3->host);
    add_signed(rq, "x-amz-content-sha256", OCIREG_SIGV4_UNSIGNED);
    add_signed(rq, "x-amz-date", apr_pstrdup(p, date));
    auth = ocireg_sigv4_authorization(
        p, &s3->creds, rq->method, path, query,
        (const ocireg_sigv4_header *)rq->signed_hdrs->elts,
        rq->signed_hdrs->nelts, OCIREG_SIGV4_UNSIGNED, date);
    url = apr_pstrcat(p, s3->cfg.endpoint, path, query && *query ? "?" : "",
                      query ? query : "", NULL);

    for (i = 0; i < rq->signed_hdrs->nelts; i++) {
        const ocireg_sigv4_header *sh =
            &APR_ARRAY_IDX(rq->signed_hdrs, i, ocireg_sigv4_header);
        if (strcasecmp(sh->name, "host") != 0)
            list = curl_slist_append(
                list, apr_pstrcat(p, sh->name, ": ", sh->value, NULL));
    }
    list = curl_slist_append(list, apr_pstrcat(p, "Authorization: ",
                                               auth ? auth : "", NULL));
    /* R2 never answers 100 Continue: don't wait for one. */
    list = curl_slist_append(list, "Expect:");
    list = curl_slist_append(list, "Content-Type:");
    if (rq->range)
        list = curl_slist_append(list,
                                 apr_pstrcat(p, "Range: ", rq->range, NULL));

    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, list);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, s3->cfg.connect_timeout_ms);
    if (rq->stream) {
        /* Big bodies take as long as they take; a stall does not. */
        curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
        curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME,
                         (s3->cfg.timeout_ms + 999) / 1000);
    }
    else {
        curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, s3->cfg.timeout_ms);
    }
    if (s3->cfg.ca_file)
        curl_easy_setopt(h, CURLOPT_CAINFO, s3->cfg.ca_file);
    curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, rq);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, rq);

    if (strcmp(rq->method, "HEAD") == 0) {
        curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
    }
    else if (strcmp(rq->method, "PUT") == 0) {
        curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(h, CURLOPT_READFUNCTION, on_read);
        curl_easy_setopt(h, CURLOPT_READDATA, rq);
        /* A body in memory, or reader_len bytes from a reader or pushed
         * by part writes. */
        curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE,
                         (curl_off_t)(rq->body ? (apr_off_t)rq->body_len
                                               : rq->reader_len));
    }
    else if (strcmp(rq->method, "POST") == 0) {
        curl_easy_setopt(h, CURLOPT_POST, 1L);
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, rq->body ? rq->body : "");
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE,
                         (curl_off_t)rq->body_len);
    }
    else if (strcmp(rq->method, "GET") != 0) {
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, rq->method);
    }
    return list;
}

/* The status line arrives before any body byte; on_body reads it from
 * res->status, which this header hook fills. */
static size_t on_header_status(char *buf, size_t size, size_t n, void *ud)
{
    s3_req *rq = ud;
    if (size * n > 9 && strncmp(buf, "HTTP/", 5) == 0) {
        const char *sp = memchr(buf, ' ', size * n);
        if (sp)
            rq->res->status = atol(sp + 1);
    }
    return on_header(buf, size, n, ud);
}

/* The last failure of this thread, for the error log: the storage
 * interface only carries a status code. */
static __thread char last_error[512];

const char *ocireg_s3_last_error(void)
{
    return last_error[0] ? last_error : "no details";
}

static apr_status_t note_failure(s3_req *rq, apr_status_t rv)
{
    if (rv != APR_SUCCESS && rv != APR_ENOENT && rv != APR_EEXIST) {
        const char *d = ocireg_s3_describe(rq->p, rq->res);
        apr_snprintf(last_error, sizeof(last_error), "%s %s: %s",
                     rq->method, rq->key ? rq->key : "(bucket)", d);
    }
    return rv;
}

static apr_status_t finish_result(s3_req *rq, CURLcode cc, CURL *h)
{
    ocireg_s3_result *res = rq->res;
    long status = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    res->status = status;
    if (cc == CURLE_WRITE_ERROR && rq->sink_rv != APR_SUCCESS)
        return rq->sink_rv;
    if (cc != CURLE_OK) {
        res->code = curl_easy_strerror(cc);
        res->status = 0;
        return note_failure(rq, OCIREG_S3_EUNAVAILABLE);
    }
    if (status < 200 || status >= 300)
        parse_error_body(rq->p, res);
    return note_failure(rq, status_of(status));
}

static apr_status_t perform_once(ocireg_s3 *s3, s3_req *rq)
{
    CURL *h = take_handle(s3);
    struct curl_slist *list;
    CURLcode cc;
    apr_status_t rv;
    int keep;

    if (!h)
        return APR_ENOMEM;
    memset(rq->res, 0, sizeof(*rq->res));
    rq->res->meta = apr_table_make(rq->p, 4);
    rq->signed_hdrs = rq->signed_hdrs
                          ? apr_array_copy(rq->p, rq->signed_hdrs)
                          : NULL;
    rq->body_pos = 0;
    rq->body_cap = 0;
    rq->sink_rv = APR_SUCCESS;
    list = prepare(s3, h, rq);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header_status);
    cc = curl_easy_perform(h);
    rv = finish_result(rq, cc, h);
    curl_slist_free_all(list);
    /* A handle whose transfer broke may hold a dead connection. */
    keep = cc == CURLE_OK;
    if (keep)
        give_handle(s3, h);
    else
        curl_easy_cleanup(h);
    return rv;
}

/* Idempotent requests are retried with backoff while the backend is
 * unavailable; a body that streams from a reader is not (its bytes are
 * gone). */
static apr_status_t perform(ocireg_s3 *s3, s3_req *rq)
{
    apr_array_header_t *base = rq->signed_hdrs;
    int attempt;
    apr_status_t rv = APR_EGENERAL;
    for (attempt = 0;; attempt++) {
        rq->signed_hdrs = base;
        rv = perform_once(s3, rq);
        if (rv != OCIREG_S3_EUNAVAILABLE || rq->reader || rq->sink
            || attempt >= s3->cfg.retries)
            break;
        still_waiting();
        apr_sleep(apr_time_from_msec(100) << attempt);
    }
    return rv;
}

static void init_req(s3_req *rq, apr_pool_t *p, ocireg_s3_result *res,
                     ocireg_s3_result *scratch, const char *method,
                     const char *key)
{
    memset(rq, 0, sizeof(*rq));
    rq->p = p;
    rq->res = res ? res : scratch;
    rq->method = method;
    rq->key = key;
}

apr_status_t ocireg_s3_put(ocireg_s3 *s3, apr_pool_t *p, const char *key,
                           const char *data, apr_size_t len,
                           const apr_table_t *meta, int if_none_match,
                           ocireg_s3_result *res)
{
    ocireg_s3_result scratch;
    s3_req rq;
    init_req(&rq, p, res, &scratch, "PUT", key);
    rq.body = data ? data : "";
    rq.body_len = len;
    if (meta) {
        const apr_array_header_t *a = apr_table_elts(meta);
        const apr_table_entry_t *e = (const apr_table_entry_t *)a->elts;
        int i;
        for (i = 0; i < a->nelts; i++)
            add_signed(&rq, apr_pstrcat(p, "x-amz-meta-", e[i].key, NULL),
                       e[i].val);
    }
    if (if_none_match)
        add_signed(&rq, "if-none-match", "*");
    return perform(s3, &rq);
}

apr_status_t ocireg_s3_put_stream(ocireg_s3 *s3, apr_pool_t *p,
                                  const char *key, const char *query,
                                  apr_off_t len, ocireg_s3_reader read,
                                  void *ctx, ocireg_s3_result *res)
{
    ocireg_s3_result scratch;
    s3_req rq;
    init_req(&rq, p, res, &scratch, "PUT", key);
    rq.query = query;
    rq.reader = read;
    rq.reader_ctx = ctx;
    rq.reader_len = len;
    rq.stream = 1;
    return perform(s3, &rq);
}

apr_status_t ocireg_s3_put_stream_meta(ocireg_s3 *s3, apr_pool_t *p,
                                       const char *key, apr_off_t len,
                                       ocireg_s3_reader read, void *ctx,
                                       const apr_table_t *meta,
                                       int if_none_match,
                                       ocireg_s3_result *res)
{
    ocireg_s3_result scratch;
    s3_req rq;
    init_req(&rq, p, res, &scratch, "PUT", key);
    rq.reader = read;
    rq.reader_ctx = ctx;
    rq.reader_len = len;
    rq.stream = 1;
    if (meta) {
        const apr_array_header_t *a = apr_table_elts(meta);
        const apr_table_entry_t *e = (const apr_table_entry_t *)a->elts;
        int i;
        for (i = 0; i < a->nelts; i++)
            add_signed(&rq, apr_pstrcat(p, "x-amz-meta-", e[i].key, NULL),
                       e[i].val);
    }
    if (if_none_match)
        add_signed(&rq, "if-none-match", "*");
    return perform(s3, &rq);
}

apr_status_t ocireg_s3_head(ocireg_s3 *s3, apr_pool_t *p, const char *key,
                            ocireg_s3_result *res)
{
    ocireg_s3_result scratch;
    s3_req rq;
    init_req(&rq, p, res, &scratch, "HEAD", key);
    return perform(s3, &rq);
}

apr_status_t ocireg_s3_get_small(ocireg_s3 *s3, apr_pool_t *p,
                                 const char *key, apr_size_t max,
                                 ocireg_s3_result *res)
{
    ocireg_s3_result scratch;
    s3_req rq;
    apr_status_t rv;
    init_req(&rq, p, res, &scratch, "GET", key);
    rq.collect_max = max;
    rv = perform(s3, &rq);
    if (rv == APR_SUCCESS && !rq.res->body) {
        rq.res->body = apr_pcalloc(p, 1);
        rq.res->body_len = 0;
    }
    return rv;
}

apr_status_t ocireg_s3_get_stream(ocireg_s3 *s3, apr_pool_t *p,
                                  const char *key, apr_off_t offset,
                                  apr_off_t len, ocireg_s3_sink sink,
                                  void *ctx, ocireg_s3_result *res)
{
    ocireg_s3_result scratch;
    s3_req rq;
    init_req(&rq, p, res, &scratch, "GET", key);
    rq.sink = sink;
    rq.sink_ctx = ctx;
    rq.stream = 1;
    if (len >= 0)
        rq.range = apr_psprintf(p, "bytes=%" APR_OFF_T_FMT "-%" APR_OFF_T_FMT,
                                offset, offset + len - 1);
    else if (offset > 0)
        rq.range = apr_psprintf(p, "bytes=%" APR_OFF_T_FMT "-", offset);
    return perform(s3, &rq);
}

apr_status_t ocireg_s3_delete(ocireg_s3 *s3, apr_pool_t *p, const char *key,
                              ocireg_s3_result *res)
{
    ocireg_s3_result scratch;
    s3_req rq;
    apr_status_t rv;
    init_req(&rq, p, res, &scratch, "DELETE", key);
    rv = perform(s3, &rq);
    /* S3 answers 204 whether or not the key existed. */
    return rv;
}

/* ListObjectsV2, one page per request: each page's answer, its parse
 * tree and whatever the callback allocates from the page pool live in a
 * subpool that goes before the next request, so memory stays at one page
 * whatever the prefix holds. */
apr_status_t ocireg_s3_list_pages(ocireg_s3 *s3, apr_pool_t *p,
                                  const ocireg_s3_list_args *a,
                                  ocireg_s3_list_fn fn, void *ctx, int *more)
{
    int max_keys = a->max_keys > 0 && a->max_keys < OCIREG_S3_LIST_PAGE
                       ? a->max_keys
                       : OCIREG_S3_LIST_PAGE;
    char *token = NULL;
    apr_pool_t *page;
    apr_status_t rv;

    if (more)
        *more = 0;
    if ((rv = apr_pool_create(&page, p)) != APR_SUCCESS)
        return rv;
    for (;;) {
        ocireg_s3_result res;
        s3_req rq;
        apr_array_header_t *entries;
        const char *next;
        int is_truncated, i;

        apr_pool_clear(page);
        init_req(&rq, page, &res, NULL, "GET", NULL);
        rq.collect_max = 16 * 1024 * 1024;
        rq.query = apr_pstrcat(
            page, "list-type=2&prefix=",
            ocireg_sigv4_uri_encode(page, a->prefix, 0),
            apr_psprintf(page, "&max-keys=%d", max_keys),
            a->delimiter ? "&delimiter=" : "",
            a->delimiter ? ocireg_sigv4_uri_encode(page, a->delimiter, 0)
                         : "",
            token ? "&continuation-token=" : "",
            token ? ocireg_sigv4_uri_encode(page, token, 0) : "",
            !token && a->start_after ? "&start-after=" : "",
            !token && a->start_after
                ? ocireg_sigv4_uri_encode(page, a->start_after, 0)
                : "",
            NULL);
        free(token);
        token = NULL;
        rv = perform(s3, &rq);
        if (rv != APR_SUCCESS)
            break;
        entries = apr_array_make(page, 64, sizeof(ocireg_s3_list_entry));
        rv = ocireg_s3_parse_list(page, res.body, res.body_len, a->prefix,
                                  entries, &is_truncated, &next);
        for (i = 0; rv == APR_SUCCESS && i < entries->nelts; i++) {
            const ocireg_s3_list_entry *en =
                &APR_ARRAY_IDX(entries, i, ocireg_s3_list_entry);
            rv = fn(ctx, page, en->key, en->is_prefix);
            if (rv == OCIREG_S3_LIST_STOP && more)
                *more = is_truncated || i + 1 < entries->nelts;
        }
        if (rv != APR_SUCCESS || !next)
            break;
        /* The token outlives the page's pool. */
        token = strdup(next);
        if (!token) {
            rv = APR_ENOMEM;
            break;
        }
    }
    apr_pool_destroy(page);
    return rv == OCIREG_S3_LIST_STOP ? APR_SUCCESS : rv;
}

typedef struct {
    apr_pool_t *p;
    apr_array_header_t *keys;
} collect_ctx;

static apr_status_t collect_key(void *ctx, apr_pool_t *page, const char *key,
                                int is_prefix)
{
    collect_ctx *c = ctx;
    (void)page;
    (void)is_prefix;
    APR_ARRAY_PUSH(c->keys, const char *) = apr_pstrdup(c->p, key);
    return APR_SUCCESS;
}

apr_status_t ocireg_s3_list(ocireg_s3 *s3, apr_pool_t *p, const char *prefix,
                            const char *delimiter, apr_array_header_t **keys)
{
    ocireg_s3_list_args a;
    collect_ctx c;
    memset(&a, 0, sizeof(a));
    a.prefix = prefix;
    a.delimiter = delimiter;
    c.p = p;
    c.keys = *keys = apr_array_make(p, 32, sizeof(const char *));
    return ocireg_s3_list_pages(s3, p, &a, collect_key, &c, NULL);
}

apr_status_t ocireg_s3_mpu_create(ocireg_s3 *s3, apr_pool_t *p,
                                  const char *key, const char **upload_id)
{
    ocireg_s3_result res;
    s3_req rq;
    apr_status_t rv;
    init_req(&rq, p, &res, NULL, "POST", key);
    rq.query = "uploads";
    rq.collect_max = 64 * 1024;
    rv = perform(s3, &rq);
    if (rv != APR_SUCCESS)
        return rv;
    *upload_id = ocireg_s3_parse_upload_id(p, res.body, res.body_len);
    return *upload_id ? APR_SUCCESS : OCIREG_S3_EREFUSED;
}

/* By comparison, not subtraction: numbers come from the server and their
 * difference can overflow an int. */
static int cmp_part(const void *a, const void *b)
{
    int x = ((const ocireg_s3_part *)a)->number;
    int y = ((const ocireg_s3_part *)b)->number;
    return (x > y) - (x < y);
}

void ocireg_s3_sort_parts(apr_array_header_t *parts)
{
    if (parts->nelts > 1)
        qsort(parts->elts, (size_t)parts->nelts, sizeof(ocireg_s3_part),
              cmp_part);
}

apr_status_t ocireg_s3_mpu_list_parts(ocireg_s3 *s3, apr_pool_t *p,
                                      const char *key, const char *upload_id,
                                      apr_array_header_t **parts)
{
    const char *marker = NULL;
    *parts = apr_array_make(p, 16, sizeof(ocireg_s3_part));
    for (;;) {
        ocireg_s3_result res;
        s3_req rq;
        apr_status_t rv;
        init_req(&rq, p, &res, NULL, "GET", key);
        rq.collect_max = 16 * 1024 * 1024;
        rq.query = apr_pstrcat(p, "uploadId=",
                               ocireg_sigv4_uri_encode(p, upload_id, 0),
                               marker ? "&part-number-marker=" : "",
                               marker ? ocireg_sigv4_uri_encode(p, marker, 0)
                                      : "",
                               NULL);
        rv = perform(s3, &rq);
        if (rv != APR_SUCCESS)
            return rv;
        rv = ocireg_s3_parse_parts(p, res.body, res.body_len, *parts,
                                   &marker);
        if (rv != APR_SUCCESS)
            return rv;
        if (!marker)
            break;
    }
    ocireg_s3_sort_parts(*parts);
    return APR_SUCCESS;
}

apr_status_t ocireg_s3_mpu_complete(ocireg_s3 *s3, apr_pool_t *p,
                                    const char *key, const char *upload_id,
                                    const apr_array_header_t *parts)
{
    ocireg_s3_result res;
    s3_req rq;
    apr_status_t rv;
    struct iovec *iov;
    int i, n = 0;
    apr_size_t len;

    iov = apr_palloc(p, sizeof(*iov) * (apr_size_t)(parts->nelts + 2));
    iov[n].iov_base = "<CompleteMultipartUpload>";
    iov[n++].iov_len = 25;
    for (i = 0; i < parts->nelts; i++) {
        const ocireg_s3_part *pt = &APR_ARRAY_IDX(parts, i, ocireg_s3_part);
        char *s = apr_psprintf(p,
                               "<Part><PartNumber>%d</PartNumber><ETag>%s"
                               "</ETag></Part>",
                               pt->number,
                               apr_xml_quote_string(p, pt->etag, 0));
        iov[n].iov_base = s;
        iov[n++].iov_len = strlen(s);
    }
    iov[n].iov_base = "</CompleteMultipartUpload>";
    iov[n++].iov_len = 26;
    init_req(&rq, p, &res, NULL, "POST", key);
    rq.body = apr_pstrcatv(p, iov, n, &len);
    rq.body_len = len;
    rq.collect_max = 64 * 1024;
    rq.query = apr_pstrcat(p, "uploadId=",
                           ocireg_sigv4_uri_encode(p, upload_id, 0), NULL);
    rv = perform(s3, &rq);
    /* S3 may report a failed Complete inside a 200. */
    if (rv == APR_SUCCESS && res.body && strstr(res.body, "<Error>")) {
        parse_error_body(p, &res);
        rv = OCIREG_S3_EREFUSED;
    }
    return rv;
}

apr_status_t ocireg_s3_mpu_abort(ocireg_s3 *s3, apr_pool_t *p,
                                 const char *key, const char *upload_id)
{
    ocireg_s3_result res;
    s3_req rq;
    init_req(&rq, p, &res, NULL, "DELETE", key);
    rq.query = apr_pstrcat(p, "uploadId=",
                           ocireg_sigv4_uri_encode(p, upload_id, 0), NULL);
    return perform(s3, &rq);
}

apr_status_t ocireg_s3_mpu_list(ocireg_s3 *s3, apr_pool_t *p,
                                const char *prefix,
                                apr_array_header_t **uploads)
{
    const char *key_marker = NULL, *id_marker = NULL;
    *uploads = apr_array_make(p, 8, sizeof(ocireg_s3_upload));
    for (;;) {
        ocireg_s3_result res;
        s3_req rq;
        apr_status_t rv;
        init_req(&rq, p, &res, NULL, "GET", NULL);
        rq.collect_max = 16 * 1024 * 1024;
        rq.query = apr_pstrcat(
            p, "uploads&prefix=", ocireg_sigv4_uri_encode(p, prefix, 0),
            key_marker ? "&key-marker=" : "",
            key_marker ? ocireg_sigv4_uri_encode(p, key_marker, 0) : "",
            id_marker ? "&upload-id-marker=" : "",
            id_marker ? ocireg_sigv4_uri_encode(p, id_marker, 0) : "", NULL);
        rv = perform(s3, &rq);
        if (rv != APR_SUCCESS)
            return rv;
        rv = ocireg_s3_parse_uploads(p, res.body, res.body_len, *uploads,
                                     &key_marker, &id_marker);
        if (rv != APR_SUCCESS || !key_marker)
            return rv;
    }
}

/* Part streams: curl's multi interface drives the transfer from our
 * writes. The read callback hands curl what the last write brought and
 * pauses the transfer when it runs dry; the next write resumes it. */
struct ocireg_s3_stream {
    ocireg_s3 *s3;
    apr_pool_t *p;
    CURL *h;
    CURLM *multi;
    struct curl_slist *list;
    s3_req rq;
    ocireg_s3_result res;
    const char *pending;
    apr_size_t pending_len;
    int done;
    CURLcode cc;
};

static size_t stream_read(char *buf, size_t size, size_t n, void *ud)
{
    ocireg_s3_stream *st = ud;
    size_t len = size * n;
    if (st->pending_len == 0)
        return CURL_READFUNC_PAUSE;
    if (len > st->pending_len)
        len = st->pending_len;
    memcpy(buf, st->pending, len);
    st->pending += len;
    st->pending_len -= len;
    return len;
}

static void stream_drop(ocireg_s3_stream *st)
{
    if (st->multi) {
        curl_multi_remove_handle(st->multi, st->h);
        curl_multi_cleanup(st->multi);
        st->multi = NULL;
    }
    if (st->h) {
        curl_easy_cleanup(st->h);
        st->h = NULL;
    }
    if (st->list) {
        curl_slist_free_all(st->list);
        st->list = NULL;
    }
}

apr_status_t ocireg_s3_part_start(ocireg_s3 *s3, apr_pool_t *p,
                                  const char *key, const char *upload_id,
                                  int part_number, apr_off_t len,
                                  ocireg_s3_stream **out)
{
    ocireg_s3_stream *st = apr_pcalloc(p, sizeof(*st));
    st->s3 = s3;
    st->p = p;
    init_req(&st->rq, p, &st->res, NULL, "PUT", key);
    st->res.meta = apr_table_make(p, 2);
    st->rq.stream = 1;
    st->rq.reader_len = len;
    st->rq.query = apr_psprintf(p, "partNumber=%d&uploadId=%s", part_number,
                                ocireg_sigv4_uri_encode(p, upload_id, 0));
    st->h = take_handle(s3);
    st->multi = curl_multi_init();
    if (!st->h || !st->multi) {
        stream_drop(st);
        return APR_ENOMEM;
    }
    st->list = prepare(s3, st->h, &st->rq);
    curl_easy_setopt(st->h, CURLOPT_HEADERFUNCTION, on_header_status);
    curl_easy_setopt(st->h, CURLOPT_READFUNCTION, stream_read);
    curl_easy_setopt(st->h, CURLOPT_READDATA, st);
    curl_multi_add_handle(st->multi, st->h);
    *out = st;
    return APR_SUCCESS;
}

/* Runs the transfer until `until` holds, the transfer ends, or nothing
 * moved for the configured timeout. */
static apr_status_t stream_pump(ocireg_s3_stream *st, int finishing)
{
    apr_time_t last = apr_time_now();
    apr_size_t before = st->pending_len;
    for (;;) {
        int running = 0, left;
        CURLMsg *m;
        curl_multi_perform(st->multi, &running);
        while ((m = curl_multi_info_read(st->multi, &left)) != NULL) {
            if (m->msg == CURLMSG_DONE) {
                st->done = 1;
                st->cc = m->data.result;
            }
        }
        if (st->done)
            return APR_SUCCESS;
        if (!finishing && st->pending_len == 0)
            return APR_SUCCESS;
        if (st->pending_len != before) {
            before = st->pending_len;
            last = apr_time_now();
        }
        else if (apr_time_now() - last
                 > apr_time_from_msec(st->s3->cfg.timeout_ms)) {
            st->res.code = "stalled";
            return note_failure(&st->rq, OCIREG_S3_EUNAVAILABLE);
        }
        still_waiting();
        curl_multi_poll(st->multi, NULL, 0, 200, NULL);
    }
}

apr_status_t ocireg_s3_part_write(ocireg_s3_stream *st, const char *buf,
                                  apr_size_t n)
{
    apr_status_t rv;
    if (st->done)
        return OCIREG_S3_EUNAVAILABLE;
    st->pending = buf;
    st->pending_len = n;
    curl_easy_pause(st->h, CURLPAUSE_CONT);
    rv = stream_pump(st, 0);
    if (rv == APR_SUCCESS && st->done && st->pending_len)
        rv = finish_result(&st->rq, st->cc, st->h) == APR_SUCCESS
                 ? OCIREG_S3_EREFUSED
                 : finish_result(&st->rq, st->cc, st->h);
    return rv;
}

apr_status_t ocireg_s3_part_finish(ocireg_s3_stream *st, const char **etag)
{
    apr_status_t rv;
    curl_easy_pause(st->h, CURLPAUSE_CONT);
    rv = stream_pump(st, 1);
    if (rv == APR_SUCCESS)
        rv = finish_result(&st->rq, st->cc, st->h);
    if (rv == APR_SUCCESS) {
        *etag = st->res.etag;
        if (!*etag)
            rv = OCIREG_S3_EREFUSED;
    }
    if (rv == APR_SUCCESS) {
        CURL *h = st->h;
        curl_multi_remove_handle(st->multi, h);
        curl_multi_cleanup(st->multi);
        st->multi = NULL;
        st->h = NULL;
        curl_slist_free_all(st->list);
        st->list = NULL;
        give_handle(st->s3, h);
    }
    else {
        stream_drop(st);
    }
    return rv;
}

void ocireg_s3_part_abort(ocireg_s3_stream *st)
{
    stream_drop(st);
}

const char *ocireg_s3_presign_get(ocireg_s3 *s3, apr_pool_t *p,
                                  const char *key, int seconds)
{
    char date[17];
    const char *path = object_path(s3, p, key);
    const char *q;
    ocireg_sigv4_amz_date(apr_time_now(), date);
    q = ocireg_sigv4_presign_query(p, &s3->creds, "GET", s3->host, path,
                                   NULL, date, seconds);
    return q ? apr_pstrcat(p, s3->cfg.endpoint, path, "?", q, NULL) : NULL;
}

const char *ocireg_s3_describe(apr_pool_t *p, const ocireg_s3_result *res)
{
    if (res->status == 0)
        return apr_psprintf(p, "backend unreachable: %s",
                            res->code ? res->code : "no response");
    if (res->status == 403 && !res->code)
        /* HEAD answers carry no error body to say why. */
        return "backend answered 403 (no details: wrong credentials, "
               "a clock off by minutes, or no access to the bucket)";
    return apr_psprintf(p, "backend answered %ld %s%s%s", res->status,
                        res->code ? res->code : "",
                        res->message ? ": " : "",
                        res->message ? res->message : "");
}
