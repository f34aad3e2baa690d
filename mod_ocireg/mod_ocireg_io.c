/* Responses and request bodies. */
#include <string.h>
#include "httpd.h"
#include "http_log.h"
#include "http_protocol.h"
#include "http_request.h"
#include "apr_strings.h"
#include "apr_buckets.h"
#include "mod_ocireg.h"

APLOG_USE_MODULE(ocireg);

/* Bytes gathered before each write to the store: large enough to keep
 * syscalls few, small and fixed so a 1 GiB body costs what a 1 KiB one
 * does. */
#define BODY_BUFFER (256 * 1024)

int ocireg_respond(request_rec *r, int status, const char *content_type,
                const char *body, apr_size_t len)
{
    r->status = status;
    if (content_type)
        ap_set_content_type(r, content_type);
    ap_set_content_length(r, (apr_off_t)len);
    if (len && !r->header_only)
        ap_rwrite(body, (int)len, r);
    return OK;
}

int ocireg_respond_error_body(request_rec *r, int status, const char *body)
{
    /* An input filter already answered (LimitRequestBody's 413). */
    if (status == AP_FILTER_ERROR)
        return AP_FILTER_ERROR;
    /* A refused request may still be sending a body we will not read;
     * don't read gigabytes to keep the connection. */
    if (ap_request_has_body(r) && !r->read_body)
        r->connection->keepalive = AP_CONN_CLOSE;
    return ocireg_respond(r, status, "application/json", body, strlen(body));
}

int ocireg_respond_error(request_rec *r, int status, ocireg_error_code code,
                 const char *message, const char *detail)
{
    return ocireg_respond_error_body(
        r, status, ocireg_error_body1(r->pool, code, message, detail));
}

int ocireg_respond_deletes_off(ocireg_req *q)
{
    /* Every route that takes DELETE lists it last. */
    const char *allow = ocireg_route_allow(q->route.kind);
    const char *cut = strstr(allow, ", DELETE");
    apr_table_setn(q->r->headers_out, "Allow",
                   cut ? apr_pstrmemdup(q->r->pool, allow,
                                        (apr_size_t)(cut - allow))
                       : allow);
    return ocireg_respond_error(q->r, HTTP_METHOD_NOT_ALLOWED,
                                OCIREG_E_UNSUPPORTED,
                                "deletes are disabled on this registry", NULL);
}

/* The backend's answer quoted in a log line is escaped: it may echo keys
 * and text that came from clients. */
int ocireg_store_failure(request_rec *r, apr_status_t rv, const char *what)
{
    if (rv == OCIREG_STORE_EUNAVAILABLE) {
        /* The backend is down or slow: the client should come back. */
        ap_log_rerror(APLOG_MARK, APLOG_WARNING, 0, r,
                      "OCIREG00013: storage unavailable: %s (%s)", what,
                      ap_escape_logitem(r->pool, ocireg_store_last_error()));
        apr_table_setn(r->err_headers_out, "Retry-After", "5");
        return ocireg_respond_error(r, HTTP_SERVICE_UNAVAILABLE,
                                    OCIREG_E_UNAVAILABLE,
                                    "storage backend unavailable", NULL);
    }
    if (rv == OCIREG_STORE_EREFUSED)
        ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r,
                      "OCIREG00014: storage refused: %s (%s)", what,
                      ap_escape_logitem(r->pool, ocireg_store_last_error()));
    else
        ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r,
                      "OCIREG00010: storage failure: %s: %s", what,
                      ocireg_status_why(r->pool, rv));
    return ocireg_respond_error(r, HTTP_INTERNAL_SERVER_ERROR,
                                OCIREG_E_INTERNAL, "storage failure", NULL);
}

static apr_status_t flush(ocireg_store *store, ocireg_upload_writer *w,
                          ocireg_hash_state *hash, const char *buf,
                          apr_size_t *fill, ocireg_body_result *res)
{
    apr_status_t rv;
    if (*fill == 0)
        return APR_SUCCESS;
    rv = store->ops->upload_write(w, buf, *fill);
    if (rv != APR_SUCCESS)
        return rv;
    /* Hash only what the store took, so offset and hash never diverge. */
    ocireg_hash_update(hash, buf, *fill);
    res->received += (apr_off_t)*fill;
    *fill = 0;
    return APR_SUCCESS;
}

apr_status_t ocireg_body_stream(request_rec *r, ocireg_store *store,
                                ocireg_upload_writer *w,
                                ocireg_upload_lock *lock,
                                ocireg_hash_state *hash,
                                ocireg_body_result *res)
{
    apr_bucket_brigade *bb =
        apr_brigade_create(r->pool, r->connection->bucket_alloc);
    char *buf = apr_palloc(r->pool, BODY_BUFFER);
    apr_size_t fill = 0;
    apr_status_t rv = APR_SUCCESS;
    int seen_eos = 0;

    memset(res, 0, sizeof(*res));
    r->read_body = REQUEST_CHUNKED_DECHUNK;
    while (!seen_eos) {
        apr_bucket *b;
        rv = ap_get_brigade(r->input_filters, bb, AP_MODE_READBYTES,
                            APR_BLOCK_READ, BODY_BUFFER);
        if (rv != APR_SUCCESS) {
            res->status = ap_map_http_request_error(rv, HTTP_BAD_REQUEST);
            ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r,
                          "OCIREG00011: request body ended early after %"
                          APR_OFF_T_FMT " bytes: %s",
                          res->received + (apr_off_t)fill,
                          ocireg_status_why(r->pool, rv));
            break;
        }
        if (lock)
            store->ops->upload_lock_keep(lock);
        for (b = APR_BRIGADE_FIRST(bb); b != APR_BRIGADE_SENTINEL(bb);
             b = APR_BUCKET_NEXT(b)) {
            const char *data;
            apr_size_t len;
            if (APR_BUCKET_IS_EOS(b)) {
                seen_eos = 1;
                break;
            }
            if (APR_BUCKET_IS_METADATA(b))
                continue;
            rv = apr_bucket_read(b, &data, &len, APR_BLOCK_READ);
            if (rv != APR_SUCCESS) {
                res->status = HTTP_BAD_REQUEST;
                break;
            }
            while (len > 0) {
                apr_size_t n = BODY_BUFFER - fill;
                if (n > len)
                    n = len;
                memcpy(buf + fill, data, n);
                fill += n;
                data += n;
                len -= n;
                if (fill == BODY_BUFFER) {
                    rv = flush(store, w, hash, buf, &fill, res);
                    if (rv != APR_SUCCESS) {
                        res->status = HTTP_INTERNAL_SERVER_ERROR;
                        goto leave;
                    }
                }
            }
        }
        apr_brigade_cleanup(bb);
        if (res->status)
            break;
    }
    /* Keep what arrived even when the body broke off: the client resumes
     * from the offset it reads back. */
    {
        apr_status_t frv = flush(store, w, hash, buf, &fill, res);
        if (frv != APR_SUCCESS) {
            res->status = HTTP_INTERNAL_SERVER_ERROR;
            rv = frv;
        }
    }
leave:
    apr_brigade_destroy(bb);
    return res->status ? (rv != APR_SUCCESS ? rv : APR_EGENERAL)
                       : APR_SUCCESS;
}

apr_status_t ocireg_body_read_small(request_rec *r, apr_size_t max,
                                    char **data, apr_size_t *len,
                                    int *status)
{
    apr_bucket_brigade *bb =
        apr_brigade_create(r->pool, r->connection->bucket_alloc);
    char *buf = apr_palloc(r->pool, max + 1);
    apr_size_t fill = 0;
    apr_status_t rv = APR_SUCCESS;
    int seen_eos = 0;

    *status = 0;
    r->read_body = REQUEST_CHUNKED_DECHUNK;
    while (!seen_eos && !*status) {
        apr_bucket *b;
        rv = ap_get_brigade(r->input_filters, bb, AP_MODE_READBYTES,
                            APR_BLOCK_READ, 64 * 1024);
        if (rv != APR_SUCCESS) {
            *status = ap_map_http_request_error(rv, HTTP_BAD_REQUEST);
            break;
        }
        for (b = APR_BRIGADE_FIRST(bb); b != APR_BRIGADE_SENTINEL(bb);
             b = APR_BUCKET_NEXT(b)) {
            const char *d;
            apr_size_t n;
            if (APR_BUCKET_IS_EOS(b)) {
                seen_eos = 1;
                break;
            }
            if (APR_BUCKET_IS_METADATA(b))
                continue;
            rv = apr_bucket_read(b, &d, &n, APR_BLOCK_READ);
            if (rv != APR_SUCCESS) {
                *status = HTTP_BAD_REQUEST;
                break;
            }
            if (n > max - fill) {
                *status = HTTP_REQUEST_ENTITY_TOO_LARGE;
                rv = APR_ENOSPC;
                break;
            }
            memcpy(buf + fill, d, n);
            fill += n;
        }
        apr_brigade_cleanup(bb);
    }
    apr_brigade_destroy(bb);
    buf[fill] = '\0';
    *data = buf;
    *len = fill;
    return *status ? (rv != APR_SUCCESS ? rv : APR_EGENERAL) : APR_SUCCESS;
}

const char *ocireg_new_uuid(apr_pool_t *p)
{
    unsigned char b[16];
    apr_generate_random_bytes(b, sizeof(b));
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
    return apr_psprintf(p,
                        "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-"
                        "%02x%02x%02x%02x%02x%02x",
                        b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8],
                        b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
}

const char *ocireg_status_why(apr_pool_t *p, apr_status_t rv)
{
    char buf[256];
    return apr_psprintf(p, "(%d)%s", (int)rv,
                        ocireg_status_text(rv, buf, sizeof(buf)));
}

void ocireg_gather_init(ocireg_gather *g, request_rec *r)
{
    g->r = r;
    g->bb = apr_brigade_create(r->pool, r->connection->bucket_alloc);
    g->buf = apr_palloc(r->pool, OCIREG_GATHER_SIZE);
    g->used = 0;
    g->passed = 0;
}

static apr_status_t gather_pass(ocireg_gather *g, int end)
{
    apr_status_t rv;
    if (g->used)
        APR_BRIGADE_INSERT_TAIL(
            g->bb, apr_bucket_transient_create(g->buf, g->used,
                                               g->bb->bucket_alloc));
    if (end)
        APR_BRIGADE_INSERT_TAIL(g->bb,
                                apr_bucket_eos_create(g->bb->bucket_alloc));
    if (APR_BRIGADE_EMPTY(g->bb))
        return APR_SUCCESS;
    rv = ap_pass_brigade(g->r->output_filters, g->bb);
    apr_brigade_cleanup(g->bb);
    if (g->used)
        g->passed = 1;
    g->used = 0;
    /* Nobody reads the rest: the stream need not go on. */
    if (rv == APR_SUCCESS && !end && g->r->connection->aborted)
        rv = APR_ECONNABORTED;
    return rv;
}

apr_status_t ocireg_gather_add(void *ctx, const char *buf, apr_size_t n)
{
    ocireg_gather *g = ctx;
    while (n) {
        apr_size_t k = OCIREG_GATHER_SIZE - g->used;
        if (!k) {
            apr_status_t rv = gather_pass(g, 0);
            if (rv != APR_SUCCESS)
                return rv;
            k = OCIREG_GATHER_SIZE;
        }
        if (k > n)
            k = n;
        memcpy(g->buf + g->used, buf, k);
        g->used += k;
        buf += k;
        n -= k;
    }
    return APR_SUCCESS;
}

apr_status_t ocireg_gather_end(ocireg_gather *g)
{
    return gather_pass(g, 1);
}

