#include <string.h>
#include <stdlib.h>
#include <curl/curl.h>
#include <apr_strings.h>
#include <apr_thread_mutex.h>
#include <apr_xml.h>
#include <apr_lib.h>
#include <apr_date.h>
#include <apr_md5.h>
#include <apr_base64.h>
#include "ocireg_s3.h"
#include "ocireg_sigv4.h"
#include "ocireg_http.h"

#define DEFAULT_PARALLEL 32
#define ERROR_BODY_MAX (64 * 1024)

struct ocireg_s3 {
    ocireg_s3_config cfg;
    ocireg_sigv4_creds creds;
    const char *host;                 /* Host header: host[:port] */
    ocireg_http_settings http;
    ocireg_http_pool *handles;        /* pooled handles, warm connections */
};

apr_status_t ocireg_s3_create(apr_pool_t *p, const ocireg_s3_config *cfg,
                              ocireg_s3 **out)
{
    ocireg_s3 *s3 = apr_pcalloc(p, sizeof(*s3));
    const char *h = strstr(cfg->endpoint, "://");
    apr_status_t rv;

    if (!h || !cfg->bucket || !cfg->access_key || !cfg->secret_key)
        return APR_EINVAL;
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
    s3->http.connect_timeout_ms = cfg->connect_timeout_ms;
    s3->http.timeout_ms = cfg->timeout_ms;
    s3->http.ca_file = cfg->ca_file;
    rv = ocireg_http_pool_create(p, &s3->handles);
    if (rv != APR_SUCCESS)
        return rv;
    *out = s3;
    return APR_SUCCESS;
}

/* The hook is the HTTP engine's (ocireg_http.h): one per thread for
 * every client. */
void ocireg_s3_while_waiting(void (*fn)(void *ctx), void *ctx)
{
    ocireg_http_while_waiting(fn, ctx);
}

void ocireg_s3_while_waiting_clear(void *ctx)
{
    ocireg_http_while_waiting_clear(ctx);
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
    const char *content_type;         /* NULL: none sent */
    int copy_result;                  /* a 200 carries CopyObjectResult */
    apr_pool_t *p;
    ocireg_s3_result *res;
    apr_status_t rv;                  /* outcome, from the engine */
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
        ocireg_http_body_append(rq->p, &res->body, &res->body_len,
                                &rq->body_cap, max, res->content_length,
                                buf, len);
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

apr_status_t ocireg_s3_code_status(const char *code)
{
    static const char *const transient[] = {
        "InternalError", "SlowDown", "ServiceUnavailable", "RequestTimeout",
        "OperationAborted", NULL};
    static const char *const missing[] = {"NoSuchKey", "NoSuchUpload",
                                          "NoSuchBucket", NULL};
    int i;
    if (!code)
        return OCIREG_S3_EREFUSED;
    for (i = 0; transient[i]; i++)
        if (strcmp(code, transient[i]) == 0)
            return OCIREG_S3_EUNAVAILABLE;
    for (i = 0; missing[i]; i++)
        if (strcmp(code, missing[i]) == 0)
            return APR_ENOENT;
    if (strcmp(code, "PreconditionFailed") == 0)
        return OCIREG_S3_ECHANGED;
    return OCIREG_S3_EREFUSED;
}

/* A copy's answer may start with whitespace: S3 keeps a long copy's
 * connection alive with it before the XML (and its declaration) comes. */
static apr_xml_doc *xml_parse_padded(apr_pool_t *p, const char *body,
                                     apr_size_t len)
{
    while (body && len && apr_isspace(*body)) {
        body++;
        len--;
    }
    return xml_parse(p, body, len);
}

/* A whole-request <Error> as a status, its code and message set. */
static apr_status_t root_error(apr_pool_t *p, const apr_xml_elem *root,
                               const char **code, const char **message)
{
    const char *c = xml_find(p, root, "Code");
    const char *m = xml_find(p, root, "Message");
    if (c)
        *code = c;
    if (m)
        *message = m;
    return ocireg_s3_code_status(c);
}

apr_status_t ocireg_s3_parse_copy_result(apr_pool_t *p, const char *body,
                                         apr_size_t len, const char **etag,
                                         const char **code,
                                         const char **message)
{
    apr_xml_doc *doc = xml_parse_padded(p, body, len);
    const char *t;
    *etag = NULL;
    if (!doc || !doc->root)
        return OCIREG_S3_EREFUSED;
    if (strcmp(doc->root->name, "Error") == 0)
        return root_error(p, doc->root, code, message);
    if (strcmp(doc->root->name, "CopyObjectResult") != 0
        && strcmp(doc->root->name, "CopyPartResult") != 0)
        return OCIREG_S3_EREFUSED;
    t = xml_find(p, doc->root, "ETag");
    if (!t || !*t)
        return OCIREG_S3_EREFUSED;
    *etag = t;
    return APR_SUCCESS;
}

apr_status_t ocireg_s3_parse_delete_result(apr_pool_t *p, const char *body,
                                           apr_size_t len,
                                           apr_array_header_t *errors,
                                           const char **code,
                                           const char **message)
{
    apr_xml_doc *doc = xml_parse_padded(p, body, len);
    const apr_xml_elem *e;
    if (!doc || !doc->root)
        return OCIREG_S3_EREFUSED;
    if (strcmp(doc->root->name, "Error") == 0)
        return root_error(p, doc->root, code, message);
    if (strcmp(doc->root->name, "DeleteResult") != 0)
        return OCIREG_S3_EREFUSED;
    for (e = doc->root->first_child; e; e = e->next) {
        ocireg_s3_delete_error *de;
        const char *c;
        if (strcmp(e->name, "Error") != 0)
            continue;
        c = xml_find(p, e, "Code");
        /* Gone is what we wanted. */
        if (c && strcmp(c, "NoSuchKey") == 0)
            continue;
        /* An error without a key or code still means a key may be left:
         * never report it deleted. */
        de = apr_array_push(errors);
        de->key = xml_find(p, e, "Key");
        if (!de->key)
            de->key = "";
        de->code = c;
        de->message = xml_find(p, e, "Message");
    }
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
    list = curl_slist_append(
        list, rq->content_type
                  ? apr_pstrcat(p, "Content-Type: ", rq->content_type, NULL)
                  : "Content-Type:");
    if (rq->range)
        list = curl_slist_append(list,
                                 apr_pstrcat(p, "Range: ", rq->range, NULL));

    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, list);
    ocireg_http_configure(h, &s3->http, rq->stream);
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

/* One request's course through the engine: started on a pooled handle,
 * retried after a backoff while the backend is unavailable, then done. */
typedef enum { XFER_PENDING, XFER_RUNNING, XFER_BACKOFF, XFER_DONE } xfer_state;

typedef struct {
    s3_req *rq;
    CURL *h;
    struct curl_slist *list;
    apr_array_header_t *base_hdrs;    /* signed headers before signing */
    int attempt;
    apr_time_t retry_at;
    xfer_state state;
} s3_xfer;

static apr_status_t xfer_start(ocireg_s3 *s3, CURLM *m, s3_xfer *x)
{
    s3_req *rq = x->rq;
    CURL *h = ocireg_http_take_handle(s3->handles);
    if (!h)
        return APR_ENOMEM;
    memset(rq->res, 0, sizeof(*rq->res));
    rq->res->meta = apr_table_make(rq->p, 4);
    rq->signed_hdrs = x->base_hdrs ? apr_array_copy(rq->p, x->base_hdrs)
                                   : NULL;
    rq->body_pos = 0;
    rq->body_cap = 0;
    rq->sink_rv = APR_SUCCESS;
    x->list = prepare(s3, h, rq);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header_status);
    curl_easy_setopt(h, CURLOPT_PRIVATE, x);
    if (curl_multi_add_handle(m, h) != CURLM_OK) {
        curl_slist_free_all(x->list);
        x->list = NULL;
        curl_easy_cleanup(h);
        return APR_ENOMEM;
    }
    x->h = h;
    x->state = XFER_RUNNING;
    return APR_SUCCESS;
}

/* A copy answers 200 before it is done and may then report a failure in
 * the body: that answer counts as the failure it names. */
static apr_status_t check_copy_body(s3_req *rq)
{
    ocireg_s3_result *res = rq->res;
    const char *etag = NULL;
    apr_status_t rv = ocireg_s3_parse_copy_result(
        rq->p, res->body, res->body_len, &etag, &res->code, &res->message);
    if (rv == APR_SUCCESS)
        res->etag = etag;
    else if (!res->code)
        res->code = "no CopyObjectResult with an ETag in the answer";
    return note_failure(rq, rv);
}

/* The transfer of x ended with cc: its outcome, or a retry later. */
static void xfer_end(ocireg_s3 *s3, CURLM *m, s3_xfer *x, CURLcode cc)
{
    s3_req *rq = x->rq;
    apr_status_t rv = finish_result(rq, cc, x->h);
    if (rv == APR_SUCCESS && rq->copy_result)
        rv = check_copy_body(rq);
    curl_multi_remove_handle(m, x->h);
    curl_slist_free_all(x->list);
    x->list = NULL;
    /* A handle whose transfer broke may hold a dead connection. */
    if (cc == CURLE_OK)
        ocireg_http_give_handle(s3->handles, x->h);
    else
        curl_easy_cleanup(x->h);
    x->h = NULL;
    rq->rv = rv;
    /* Idempotent requests are retried with backoff while the backend is
     * unavailable; a body that streams from a reader or into a sink is
     * not (its bytes are gone). */
    if (rv == OCIREG_S3_EUNAVAILABLE && !rq->reader && !rq->sink
        && x->attempt < s3->cfg.retries) {
        x->retry_at = apr_time_now()
                      + (apr_time_from_msec(100) << x->attempt);
        x->attempt++;
        x->state = XFER_BACKOFF;
        ocireg_http_still_waiting();
    }
    else {
        x->state = XFER_DONE;
    }
}

/* Runs every request of rqs, at most `parallel` at once, on one multi
 * handle from the pool, so a batch reuses the connections earlier
 * requests left there. Each request's outcome is in its rv. */
static apr_status_t run_reqs(ocireg_s3 *s3, apr_pool_t *p, s3_req **rqs,
                             int n, int parallel)
{
    s3_xfer *xs;
    CURLM *m;
    int i, next = 0, inflight = 0, done = 0;
    apr_time_t hook_at = apr_time_now() + apr_time_from_sec(1);

    if (n <= 0)
        return APR_SUCCESS;
    if (parallel <= 0)
        parallel = 1;
    m = ocireg_http_take_multi(s3->handles);
    if (!m)
        return APR_ENOMEM;
    xs = apr_pcalloc(p, sizeof(*xs) * (apr_size_t)n);
    for (i = 0; i < n; i++) {
        xs[i].rq = rqs[i];
        xs[i].base_hdrs = rqs[i]->signed_hdrs;
        rqs[i]->rv = APR_EGENERAL;
    }
    while (done < n) {
        apr_time_t now = apr_time_now(), wake;
        CURLMsg *msg;
        int running, left;
        long wait_ms;

        /* Retries whose time has come go first, then new requests. */
        for (i = 0; i < next && inflight < parallel; i++) {
            if (xs[i].state != XFER_BACKOFF || xs[i].retry_at > now)
                continue;
            if (xfer_start(s3, m, &xs[i]) == APR_SUCCESS)
                inflight++;
            else {
                xs[i].state = XFER_DONE;
                done++;
            }
        }
        while (next < n && inflight < parallel) {
            s3_xfer *x = &xs[next++];
            apr_status_t rv = xfer_start(s3, m, x);
            if (rv == APR_SUCCESS)
                inflight++;
            else {
                x->rq->rv = rv;
                x->state = XFER_DONE;
                done++;
            }
        }
        curl_multi_perform(m, &running);
        while ((msg = curl_multi_info_read(m, &left)) != NULL) {
            s3_xfer *x = NULL;
            if (msg->msg != CURLMSG_DONE)
                continue;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&x);
            if (!x || x->state != XFER_RUNNING)
                continue;
            /* msg is invalid once its handle leaves the multi. */
            xfer_end(s3, m, x, msg->data.result);
            inflight--;
            if (x->state == XFER_DONE)
                done++;
        }
        if (done >= n)
            break;
        now = apr_time_now();
        if (now >= hook_at) {
            ocireg_http_still_waiting();
            hook_at = now + apr_time_from_sec(1);
        }
        /* A request that just ended may free a slot or be due again. */
        if (next < n && inflight < parallel)
            continue;
        /* Until the next retry is due, a second at most (the hook). */
        wake = now + apr_time_from_sec(1);
        for (i = 0; i < next; i++)
            if (xs[i].state == XFER_BACKOFF && xs[i].retry_at < wake)
                wake = xs[i].retry_at;
        wait_ms = wake > now ? (long)apr_time_as_msec(wake - now) : 0;
        if (wait_ms > 1000)
            wait_ms = 1000;
        curl_multi_poll(m, NULL, 0, (int)wait_ms, NULL);
    }
    ocireg_http_give_multi(s3->handles, m);
    return APR_SUCCESS;
}

static apr_status_t perform(ocireg_s3 *s3, s3_req *rq)
{
    apr_status_t rv = run_reqs(s3, rq->p, &rq, 1, 1);
    return rv == APR_SUCCESS ? rq->rv : rv;
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

/* The single calls and the ops of a batch set their requests up, and
 * read their outcomes, through these: one path for both. */
static void add_meta(s3_req *rq, const apr_table_t *meta)
{
    const apr_array_header_t *a;
    const apr_table_entry_t *e;
    int i;
    if (!meta)
        return;
    a = apr_table_elts(meta);
    e = (const apr_table_entry_t *)a->elts;
    for (i = 0; i < a->nelts; i++)
        add_signed(rq, apr_pstrcat(rq->p, "x-amz-meta-", e[i].key, NULL),
                   e[i].val);
}

static void setup_put(s3_req *rq, const char *data, apr_size_t len,
                      const apr_table_t *meta, int if_none_match)
{
    rq->body = data ? data : "";
    rq->body_len = data ? len : 0;
    add_meta(rq, meta);
    if (if_none_match)
        add_signed(rq, "if-none-match", "*");
}

/* x-amz-copy-source names bucket and key as a path; it is an x-amz-*
 * header, so it is signed like the others. */
static void setup_copy_source(ocireg_s3 *s3, s3_req *rq, const char *src_key,
                              const char *if_match)
{
    add_signed(rq, "x-amz-copy-source", object_path(s3, rq->p, src_key));
    if (if_match) {
        const char *q = *if_match == '"'
                            ? if_match
                            : apr_pstrcat(rq->p, "\"", if_match, "\"", NULL);
        add_signed(rq, "x-amz-copy-source-if-match", q);
        /* Ceph RGW up to at least 16.2 reads only this older name; S3
         * and R2 ignore it. */
        add_signed(rq, "x-amz-copy-if-match", q);
    }
    rq->body = "";
    rq->body_len = 0;
    rq->copy_result = 1;
    rq->collect_max = 64 * 1024;
}

static void setup_copy(ocireg_s3 *s3, s3_req *rq, const char *src_key,
                       const apr_table_t *meta, const char *if_match)
{
    setup_copy_source(s3, rq, src_key, if_match);
    add_signed(rq, "x-amz-metadata-directive", "REPLACE");
    add_meta(rq, meta);
    rq->content_type = "application/octet-stream";
}

/* A failed copy precondition is a changed source, not an existing key. */
static apr_status_t copy_outcome(apr_status_t rv)
{
    return rv == APR_EEXIST ? OCIREG_S3_ECHANGED : rv;
}

static apr_status_t get_outcome(s3_req *rq, apr_status_t rv)
{
    if (rv == APR_SUCCESS && !rq->res->body) {
        rq->res->body = apr_pcalloc(rq->p, 1);
        rq->res->body_len = 0;
    }
    return rv;
}

apr_status_t ocireg_s3_put(ocireg_s3 *s3, apr_pool_t *p, const char *key,
                           const char *data, apr_size_t len,
                           const apr_table_t *meta, int if_none_match,
                           ocireg_s3_result *res)
{
    ocireg_s3_result scratch;
    s3_req rq;
    init_req(&rq, p, res, &scratch, "PUT", key);
    setup_put(&rq, data, len, meta, if_none_match);
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
    init_req(&rq, p, res, &scratch, "GET", key);
    rq.collect_max = max;
    return get_outcome(&rq, perform(s3, &rq));
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
    init_req(&rq, p, res, &scratch, "DELETE", key);
    /* S3 answers 204 whether or not the key existed. */
    return perform(s3, &rq);
}

apr_status_t ocireg_s3_copy(ocireg_s3 *s3, apr_pool_t *p, const char *src_key,
                            const char *dst_key, const apr_table_t *meta,
                            const char *if_match, ocireg_s3_result *res)
{
    ocireg_s3_result scratch;
    s3_req rq;
    init_req(&rq, p, res, &scratch, "PUT", dst_key);
    setup_copy(s3, &rq, src_key, meta, if_match);
    return copy_outcome(perform(s3, &rq));
}

apr_status_t ocireg_s3_part_copy(ocireg_s3 *s3, apr_pool_t *p, const char *key,
                                 const char *upload_id, int part_number,
                                 const char *src_key, const char *if_match,
                                 const char **etag)
{
    ocireg_s3_result res;
    s3_req rq;
    apr_status_t rv;
    *etag = NULL;
    init_req(&rq, p, &res, NULL, "PUT", key);
    rq.query = apr_psprintf(p, "partNumber=%d&uploadId=%s", part_number,
                            ocireg_sigv4_uri_encode(p, upload_id, 0));
    setup_copy_source(s3, &rq, src_key, if_match);
    rv = copy_outcome(perform(s3, &rq));
    if (rv == APR_SUCCESS)
        *etag = res.etag;
    return rv;
}

/* One DeleteObjects request for keys [from, to). */
static s3_req *delete_batch_req(apr_pool_t *p, const char *const *keys,
                                int from, int to)
{
    s3_req *rq = apr_palloc(p, sizeof(*rq));
    ocireg_s3_result *res = apr_palloc(p, sizeof(*res));
    struct iovec *iov;
    unsigned char md5[APR_MD5_DIGESTSIZE];
    char *b64;
    apr_size_t len;
    int i, n = 0;

    iov = apr_palloc(p, sizeof(*iov) * (apr_size_t)(to - from + 2));
    iov[n].iov_base = "<Delete><Quiet>true</Quiet>";
    iov[n++].iov_len = 27;
    for (i = from; i < to; i++) {
        char *o = apr_pstrcat(p, "<Object><Key>",
                              apr_xml_quote_string(p, keys[i], 0),
                              "</Key></Object>", NULL);
        iov[n].iov_base = o;
        iov[n++].iov_len = strlen(o);
    }
    iov[n].iov_base = "</Delete>";
    iov[n++].iov_len = 9;
    init_req(rq, p, res, NULL, "POST", NULL);
    rq->query = "delete";
    rq->body = apr_pstrcatv(p, iov, n, &len);
    rq->body_len = len;
    rq->content_type = "application/xml";
    /* An answer names at most every key with an error. */
    rq->collect_max = 16 * 1024 * 1024;
    /* S3 requires Content-MD5 on DeleteObjects. */
    apr_md5(md5, rq->body, len);
    b64 = apr_palloc(p, (apr_size_t)apr_base64_encode_len(sizeof(md5)));
    apr_base64_encode(b64, (const char *)md5, sizeof(md5));
    add_signed(rq, "content-md5", b64);
    return rq;
}

apr_status_t ocireg_s3_delete_many(ocireg_s3 *s3, apr_pool_t *p,
                                   const apr_array_header_t *keys)
{
    const char *const *left = (const char *const *)keys->elts;
    int nleft = keys->nelts, round;
    apr_pool_t *sub;
    apr_status_t rv = APR_SUCCESS;

    if (nleft == 0)
        return APR_SUCCESS;
    if ((rv = apr_pool_create(&sub, p)) != APR_SUCCESS)
        return rv;
    /* A key the backend could not delete for now is tried again in the
     * next round (the requests themselves retry as any other). */
    for (round = 0;; round++) {
        int nreq = (nleft + OCIREG_S3_DELETE_BATCH - 1)
                   / OCIREG_S3_DELETE_BATCH;
        s3_req **rqs = apr_palloc(sub, sizeof(*rqs) * (apr_size_t)nreq);
        apr_array_header_t *again = apr_array_make(sub, 4, sizeof(char *));
        int i, j;

        for (i = 0; i < nreq; i++) {
            int from = i * OCIREG_S3_DELETE_BATCH;
            int to = from + OCIREG_S3_DELETE_BATCH < nleft
                         ? from + OCIREG_S3_DELETE_BATCH
                         : nleft;
            rqs[i] = delete_batch_req(sub, left, from, to);
        }
        rv = run_reqs(s3, sub, rqs, nreq, 4);
        for (i = 0; rv == APR_SUCCESS && i < nreq; i++) {
            s3_req *rq = rqs[i];
            ocireg_s3_result *res = rq->res;
            apr_array_header_t *errs;
            rv = rq->rv;
            if (rv != APR_SUCCESS)
                break;
            errs = apr_array_make(sub, 4, sizeof(ocireg_s3_delete_error));
            rv = note_failure(rq, ocireg_s3_parse_delete_result(
                                      sub, res->body, res->body_len, errs,
                                      &res->code, &res->message));
            for (j = 0; rv == APR_SUCCESS && j < errs->nelts; j++) {
                const ocireg_s3_delete_error *de =
                    &APR_ARRAY_IDX(errs, j, ocireg_s3_delete_error);
                apr_status_t krv = ocireg_s3_code_status(de->code);
                if (krv == OCIREG_S3_EUNAVAILABLE && *de->key) {
                    APR_ARRAY_PUSH(again, const char *) = de->key;
                    continue;
                }
                res->code = de->code ? de->code : "error without a code";
                res->message = apr_pstrcat(sub, "key ", de->key,
                                           de->message ? ": " : "",
                                           de->message, NULL);
                rv = note_failure(rq, OCIREG_S3_EREFUSED);
            }
        }
        if (rv != APR_SUCCESS || again->nelts == 0)
            break;
        if (round >= s3->cfg.retries) {
            apr_snprintf(last_error, sizeof(last_error),
                         "DeleteObjects: %d keys still not deleted "
                         "(backend busy), e.g. %s",
                         again->nelts, APR_ARRAY_IDX(again, 0, char *));
            rv = OCIREG_S3_EUNAVAILABLE;
            break;
        }
        /* The keys to try again outlive this round's pool. */
        {
            const char **copy =
                apr_palloc(p, sizeof(*copy) * (apr_size_t)again->nelts);
            for (i = 0; i < again->nelts; i++)
                copy[i] = apr_pstrdup(p, APR_ARRAY_IDX(again, i, char *));
            left = copy;
            nleft = again->nelts;
        }
        ocireg_http_sleep_waiting(apr_time_from_msec(100) << round);
        apr_pool_clear(sub);
    }
    apr_pool_destroy(sub);
    return rv;
}

apr_status_t ocireg_s3_run(ocireg_s3 *s3, apr_pool_t *p, ocireg_s3_op *ops,
                           int n, int parallel)
{
    s3_req **rqs;
    apr_status_t rv;
    int i;
    static const char *const methods[] = {"HEAD", "GET", "PUT", "DELETE",
                                          "PUT"};

    if (n <= 0)
        return APR_SUCCESS;
    if (!ops)
        return APR_EINVAL;
    for (i = 0; i < n; i++)
        if ((unsigned)ops[i].kind > OCIREG_S3_OP_COPY || !ops[i].key
            || (ops[i].kind == OCIREG_S3_OP_COPY && !ops[i].src_key))
            return APR_EINVAL;
    rqs = apr_palloc(p, sizeof(*rqs) * (apr_size_t)n);
    for (i = 0; i < n; i++) {
        ocireg_s3_op *op = &ops[i];
        s3_req *rq = rqs[i] = apr_palloc(p, sizeof(*rq));
        init_req(rq, p, &op->res, NULL, methods[op->kind], op->key);
        switch (op->kind) {
        case OCIREG_S3_OP_GET:
            rq->collect_max = op->max;
            break;
        case OCIREG_S3_OP_PUT:
            setup_put(rq, op->data, op->len, op->meta, op->if_none_match);
            break;
        case OCIREG_S3_OP_COPY:
            setup_copy(s3, rq, op->src_key, op->meta, op->if_match);
            break;
        default:
            break;
        }
    }
    rv = run_reqs(s3, p, rqs, n, parallel > 0 ? parallel : DEFAULT_PARALLEL);
    for (i = 0; i < n; i++) {
        ocireg_s3_op *op = &ops[i];
        apr_status_t orv = rv == APR_SUCCESS ? rqs[i]->rv : rv;
        if (op->kind == OCIREG_S3_OP_GET)
            orv = get_outcome(rqs[i], orv);
        else if (op->kind == OCIREG_S3_OP_COPY)
            orv = copy_outcome(orv);
        op->status = orv;
    }
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
