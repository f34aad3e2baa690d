/* Blobs: GET, HEAD and DELETE of /v2/<name>/blobs/<digest>. */
#include <string.h>
#include "httpd.h"
#include "http_core.h"
#include "http_log.h"
#include "http_protocol.h"
#include "http_request.h"
#include "apr_strings.h"
#include "apr_buckets.h"
#include "mod_ocireg.h"
#include "ocireg_parse.h"

APLOG_USE_MODULE(ocireg);

void ocireg_blob_headers(request_rec *r, const char *digest, apr_off_t size)
{
    apr_table_setn(r->headers_out, "Docker-Content-Digest", digest);
    apr_table_setn(r->headers_out, "ETag",
                   apr_pstrcat(r->pool, "\"", digest, "\"", NULL));
    /* Content-addressed: the bytes behind this URL never change. */
    apr_table_setn(r->headers_out, "Cache-Control",
                   "max-age=31536000, immutable");
    /* Bytes pushed by anyone, served on the enterprise's own origin: a
     * browser must neither sniff them as HTML nor run them. */
    apr_table_setn(r->headers_out, "Content-Security-Policy", "sandbox");
    ap_set_content_type(r, "application/octet-stream");
    if (size >= 0)
        ap_set_content_length(r, size);
}

void ocireg_blob_headers_unset(request_rec *r)
{
    static const char *const blob_only[] = {
        "Content-Range", "Cache-Control", "ETag", "Docker-Content-Digest",
        "Accept-Ranges"};
    apr_size_t i;
    for (i = 0; i < sizeof(blob_only) / sizeof(blob_only[0]); i++)
        apr_table_unset(r->headers_out, blob_only[i]);
}

/* A blob that is not a local file: redirect to it, or stream it, passing
 * a single Range through to the store. */
static int send_stream(ocireg_req *q, ocireg_blob_body *body,
                       const char *digest)
{
    request_rec *r = q->r;
    ocireg_gather g;
    apr_off_t start = 0, len = body->size;
    const char *range = apr_table_get(r->headers_in, "Range");
    const char *if_range = apr_table_get(r->headers_in, "If-Range");
    int ok = 0;
    apr_status_t rv;

    if (body->redirect_url) {
        ocireg_server_conf *sc =
            ap_get_module_config(r->server->module_config, &ocireg_module);
        apr_table_setn(r->headers_out, "Location", body->redirect_url);
        apr_table_unset(r->headers_out, "Content-Length");
        /* The redirect is only as good as the signature in it: a cache
         * may keep it for half the URL's lifetime, so that whoever follows
         * a cached copy still has time to fetch. Private: the URL grants
         * access without this client's credentials. */
        apr_table_setn(r->headers_out, "Cache-Control",
                       apr_psprintf(r->pool, "private, max-age=%d",
                                    sc->s3.redirect_seconds / 2));
        apr_table_unset(r->headers_out, "Content-Security-Policy");
        return ocireg_respond(r, HTTP_TEMPORARY_REDIRECT, NULL, NULL, 0);
    }
    /* The byterange filter would buffer a stream to cut it: do it here. */
    apr_table_unset(r->headers_in, "Range");
    if (range && (!if_range || strcmp(if_range, apr_table_get(r->headers_out,
                                                              "ETag")) == 0)
        && ocireg_range_parse(range, body->size, &start, &len, &ok)) {
        if (!ok) {
            apr_table_setn(r->err_headers_out, "Content-Range",
                           apr_psprintf(r->pool, "bytes */%" APR_OFF_T_FMT,
                                        body->size));
            return ocireg_respond_error(r, HTTP_RANGE_NOT_SATISFIABLE,
                                        OCIREG_E_UNSUPPORTED,
                                        "range not satisfiable", NULL);
        }
        r->status = HTTP_PARTIAL_CONTENT;
        apr_table_setn(r->headers_out, "Content-Range",
                       apr_psprintf(r->pool,
                                    "bytes %" APR_OFF_T_FMT "-%" APR_OFF_T_FMT
                                    "/%" APR_OFF_T_FMT,
                                    start, start + len - 1, body->size));
        ap_set_content_length(r, len);
    }
    ocireg_gather_init(&g, r);
    rv = body->send(body->ctx, r->pool, start, len, ocireg_gather_add, &g);
    if (rv == APR_SUCCESS)
        rv = ocireg_gather_end(&g);
    if (rv != APR_SUCCESS) {
        /* The link named bytes that are gone (removed behind the
         * registry's back): as unknown as a blob without a link. */
        if (rv == APR_ENOENT && !r->sent_bodyct && !r->bytes_sent) {
            ocireg_blob_headers_unset(r);
            r->status = HTTP_OK;
            return ocireg_respond_error(r, HTTP_NOT_FOUND,
                                        OCIREG_E_BLOB_UNKNOWN, NULL, digest);
        }
        if (!r->sent_bodyct && !r->bytes_sent)
            return ocireg_store_failure(r, rv, "reading the blob");
        /* Too late for a status: cut the connection so the client sees a
         * short body rather than a wrong one. */
        ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r,
                      "OCIREG00022: sending blob %s stopped: %s", digest,
                      ocireg_status_why(r->pool, rv));
        r->connection->keepalive = AP_CONN_CLOSE;
        r->connection->aborted = 1;
    }
    return OK;
}

/* GET/HEAD/DELETE /v2/<name>/blobs/<digest> */
int ocireg_handle_blob(ocireg_req *q)
{
    request_rec *r = q->r;
    const char *digest = q->route.arg;
    ocireg_blob_body body;
    apr_bucket_brigade *bb;
    apr_status_t rv;
    ocireg_digest_kind kind = ocireg_digest_parse(digest);

    if (kind == OCIREG_DIGEST_BAD)
        return ocireg_respond_error(r, HTTP_BAD_REQUEST, OCIREG_E_DIGEST_INVALID, NULL,
                            digest);
    if (r->method_number == M_DELETE && !q->deletes)
        return ocireg_respond_deletes_off(q);
    if (kind != OCIREG_DIGEST_SHA256)
        return ocireg_respond_error(r, HTTP_NOT_FOUND, OCIREG_E_BLOB_UNKNOWN, NULL,
                            digest);

    if (r->method_number == M_DELETE) {
        /* The unlink tells whether the link was there. */
        rv = q->store->ops->blob_unlink(q->store, r->pool, q->route.name,
                                        digest);
        if (rv == APR_ENOENT)
            return ocireg_respond_error(r, HTTP_NOT_FOUND, OCIREG_E_BLOB_UNKNOWN,
                                NULL, digest);
        if (rv != APR_SUCCESS)
            return ocireg_store_failure(r, rv, "blob unlink");
        return ocireg_respond(r, HTTP_ACCEPTED, NULL, NULL, 0);
    }

    /* The link says where the bytes are: a HEAD costs the link alone. */
    rv = q->store->ops->blob_open_linked(q->store, r->pool, q->route.name,
                                         digest, !r->header_only, &body);
    if (rv == APR_ENOENT) {
        const struct ocireg_mirror_rule *rule =
            ocireg_mirror_rule_for(r, q->route.name);
        int status;
        if (!rule)
            return ocireg_respond_error(r, HTTP_NOT_FOUND,
                                        OCIREG_E_BLOB_UNKNOWN, NULL, digest);
        status = ocireg_mirror_blob(q, rule, digest);
        if (status != DECLINED)
            return status;
        /* Linked here now, from the store's copy. */
        rv = q->store->ops->blob_open_linked(q->store, r->pool,
                                             q->route.name, digest,
                                             !r->header_only, &body);
        if (rv == APR_ENOENT)
            return ocireg_respond_error(r, HTTP_NOT_FOUND,
                                        OCIREG_E_BLOB_UNKNOWN, NULL, digest);
    }
    if (rv != APR_SUCCESS)
        return ocireg_store_failure(r, rv, "blob open");

    ocireg_blob_headers(r, digest, body.size);
    apr_table_setn(r->headers_out, "Accept-Ranges", "bytes");
    /* httpd's byterange filter makes its own 416 without Content-Range;
     * the error filter adds it from this. */
    apr_table_setn(r->notes, OCIREG_NOTE_BLOB_SIZE,
                   apr_off_t_toa(r->pool, body.size));
    if (ap_meets_conditions(r) == HTTP_NOT_MODIFIED) {
        r->status = HTTP_NOT_MODIFIED;
        return OK;
    }
    if (r->header_only)
        return OK;

    if (!body.file)
        return send_stream(q, &body, digest);
    /* A file bucket: httpd's byterange filter answers Range with 206 by
     * splitting it, and the core can sendfile it. */
    bb = apr_brigade_create(r->pool, r->connection->bucket_alloc);
    apr_brigade_insert_file(bb, body.file, 0, body.size, r->pool);
    APR_BRIGADE_INSERT_TAIL(bb, apr_bucket_eos_create(bb->bucket_alloc));
    rv = ap_pass_brigade(r->output_filters, bb);
    if (rv != APR_SUCCESS)
        ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r,
                      "OCIREG00021: sending blob %s stopped: %s", digest,
                      ocireg_status_why(r->pool, rv));
    return OK;
}
