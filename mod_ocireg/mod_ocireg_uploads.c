/* Uploads: sessions (POST, PATCH, PUT, GET status, DELETE), monolithic
 * uploads and cross-repository mounts. */
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

static const char *blob_location(ocireg_req *q, const char *digest)
{
    return apr_pstrcat(q->r->pool, "/v2/", q->route.name, "/blobs/", digest,
                       NULL);
}

static const char *upload_location(ocireg_req *q, const char *uuid)
{
    return apr_pstrcat(q->r->pool, "/v2/", q->route.name, "/blobs/uploads/",
                       uuid, NULL);
}

/* "0-<last byte>"; an empty upload reads "0-0" as distribution has it,
 * which is what clients are written against. */
static const char *range_value(apr_pool_t *p, apr_off_t offset)
{
    return apr_psprintf(p, "0-%" APR_OFF_T_FMT, offset > 0 ? offset - 1 : 0);
}

static void set_session_headers(ocireg_req *q, const ocireg_upload_session *s,
                                apr_table_t *t)
{
    apr_table_setn(t, "Location", upload_location(q, s->uuid));
    apr_table_setn(t, "Range", range_value(q->r->pool, s->offset));
    apr_table_setn(t, "Docker-Upload-UUID", apr_pstrdup(q->r->pool, s->uuid));
}

static int session_answer(ocireg_req *q, const ocireg_upload_session *s,
                          int status)
{
    set_session_headers(q, s, q->r->headers_out);
    return ocireg_respond(q->r, status, NULL, NULL, 0);
}

static int created(ocireg_req *q, const char *digest)
{
    apr_table_setn(q->r->headers_out, "Location", blob_location(q, digest));
    apr_table_setn(q->r->headers_out, "Docker-Content-Digest", digest);
    return ocireg_respond(q->r, HTTP_CREATED, NULL, NULL, 0);
}

static int upload_unknown(ocireg_req *q)
{
    return ocireg_respond_error(q->r, HTTP_NOT_FOUND, OCIREG_E_BLOB_UPLOAD_UNKNOWN,
                        NULL, q->route.arg);
}

/* The digest query parameter of a closing PUT or monolithic POST. */
static int digest_arg(ocireg_req *q, const char **digest)
{
    int bad = 0;
    *digest = ocireg_query_arg(q->r->pool, q->r->args, "digest", &bad);
    if (bad || !*digest)
        return ocireg_respond_error(q->r, HTTP_BAD_REQUEST, OCIREG_E_DIGEST_INVALID,
                            "the digest query parameter is required", NULL);
    if (ocireg_digest_parse(*digest) != OCIREG_DIGEST_SHA256)
        return ocireg_respond_error(q->r, HTTP_BAD_REQUEST, OCIREG_E_DIGEST_INVALID,
                            "only sha256 digests are supported", *digest);
    return DECLINED;
}

/* A client may mount only what it may read: ask httpd's own access checks
 * about the source URL, as if the client had requested it. */
static int may_read(request_rec *r, const char *uri)
{
    request_rec *rr = ap_sub_req_method_uri("GET", uri, r, NULL);
    int ok = rr->status == HTTP_OK;
    ap_destroy_sub_req(rr);
    return ok;
}

static int try_mount(ocireg_req *q, const char *digest, const char *from)
{
    request_rec *r = q->r;
    apr_off_t size;
    apr_status_t rv;

    if (!from || !ocireg_name_valid(from)
        || ocireg_digest_parse(digest) != OCIREG_DIGEST_SHA256)
        return DECLINED;
    if (q->store->ops->blob_linked(q->store, r->pool, from, digest)
            != APR_SUCCESS
        || q->store->ops->blob_stat(q->store, r->pool, digest, &size)
               != APR_SUCCESS)
        return DECLINED;
    if (!may_read(r, apr_pstrcat(r->pool, "/v2/", from, "/blobs/", digest,
                                 NULL)))
        return DECLINED;
    rv = q->store->ops->blob_link(q->store, r->pool, q->route.name, digest);
    if (rv != APR_SUCCESS)
        return ocireg_store_failure(r, rv, "blob link (mount)");
    return created(q, digest);
}

/* Verifies and publishes an upload whose bytes are all in: the digest
 * must match the running hash, and only then does the blob appear. */
static int finish_upload(ocireg_req *q, const char *uuid,
                         ocireg_upload_session *s, const char *digest,
                         int in_table)
{
    request_rec *r = q->r;
    char actual[72];
    apr_status_t rv;

    ocireg_hash_digest(&s->hash, actual);
    if (strcmp(actual, digest) != 0) {
        q->store->ops->upload_abort(q->store, r->pool, uuid, s->driver);
        if (in_table)
            ocireg_uploads_remove(q->uploads, uuid);
        return ocireg_respond_error(r, HTTP_BAD_REQUEST, OCIREG_E_DIGEST_INVALID,
                            "the uploaded content does not match the digest",
                            apr_psprintf(r->pool, "expected %s, got %s",
                                         digest, actual));
    }
    rv = q->store->ops->upload_commit(q->store, r->pool, uuid, s->driver,
                                      digest, s->offset);
    if (rv == APR_SUCCESS)
        rv = q->store->ops->blob_link(q->store, r->pool, q->route.name,
                                      digest);
    if (rv != APR_SUCCESS) {
        if (in_table)
            ocireg_uploads_release(q->uploads, NULL, uuid);
        return ocireg_store_failure(r, rv, "committing the upload");
    }
    if (in_table)
        ocireg_uploads_remove(q->uploads, uuid);
    return created(q, digest);
}

static apr_status_t session_save(ocireg_req *q,
                                 const ocireg_upload_session *s);

/* A blob the store could never hold is refused before its data is read,
 * whenever the request tells how big it will be. */
static int too_big(ocireg_req *q, apr_off_t final_size)
{
    apr_off_t max = q->store->ops->max_blob_size(q->store);
    if (max < 0 || final_size <= max)
        return 0;
    q->r->connection->keepalive = AP_CONN_CLOSE;
    return 1;
}

static int refuse_too_big(ocireg_req *q)
{
    return ocireg_respond_error(
        q->r, HTTP_REQUEST_ENTITY_TOO_LARGE, OCIREG_E_SIZE_INVALID,
        apr_psprintf(q->r->pool,
                     "blobs on this store are limited to %" APR_OFF_T_FMT
                     " bytes",
                     q->store->ops->max_blob_size(q->store)),
        NULL);
}

/* Appends the request body to an acquired session. Returns DECLINED when
 * the session advanced (s updated), or the finished error response. The
 * session is released on error. */
static int append_body(ocireg_req *q, ocireg_upload_session *s)
{
    request_rec *r = q->r;
    const char *cr = apr_table_get(r->headers_in, "Content-Range");
    const char *cl = apr_table_get(r->headers_in, "Content-Length");
    apr_off_t start = 0, end = -1, total = -1, length = -1;
    ocireg_upload_writer *w;
    ocireg_body_result res;
    ocireg_upload_session next = *s;
    apr_status_t rv, brv;

    if (cl && !ocireg_off_parse(cl, &length)) {
        ocireg_uploads_release(q->uploads, NULL, s->uuid);
        return ocireg_respond_error(r, HTTP_BAD_REQUEST, OCIREG_E_SIZE_INVALID,
                            "invalid Content-Length", cl);
    }
    if (cr) {
        if (!ocireg_content_range_parse(cr, &start, &end, &total)) {
            ocireg_uploads_release(q->uploads, NULL, s->uuid);
            return ocireg_respond_error(r, HTTP_BAD_REQUEST,
                                OCIREG_E_BLOB_UPLOAD_INVALID,
                                "invalid Content-Range", cr);
        }
        if (start != s->offset) {
            ocireg_uploads_release(q->uploads, NULL, s->uuid);
            set_session_headers(q, s, r->err_headers_out);
            return ocireg_respond_error(r, HTTP_RANGE_NOT_SATISFIABLE,
                                OCIREG_E_BLOB_UPLOAD_INVALID,
                                "chunk out of order",
                                apr_psprintf(r->pool,
                                             "next byte expected at %"
                                             APR_OFF_T_FMT,
                                             s->offset));
        }
        if (length >= 0 && length != end - start + 1) {
            ocireg_uploads_release(q->uploads, NULL, s->uuid);
            return ocireg_respond_error(r, HTTP_BAD_REQUEST, OCIREG_E_SIZE_INVALID,
                                "Content-Length does not match "
                                "Content-Range",
                                NULL);
        }
    }
    if ((cr && total >= 0 && too_big(q, total))
        || (length >= 0 && too_big(q, s->offset + length))) {
        ocireg_uploads_release(q->uploads, NULL, s->uuid);
        return refuse_too_big(q);
    }
    if (!ap_request_has_body(r))
        return DECLINED;

    rv = q->store->ops->upload_open(q->store, r->pool, s->uuid, next.driver,
                                    s->offset, length, &w);
    if (rv != APR_SUCCESS) {
        ocireg_uploads_release(q->uploads, NULL, s->uuid);
        return ocireg_store_failure(r, rv, "opening the upload");
    }
    brv = ocireg_body_stream(r, q->store, w, &next.hash, &res);
    /* Whatever happened to the body, what reached the store is kept and
     * the session says so: the client resumes from the Range it reads. */
    rv = q->store->ops->upload_close(w, next.driver);
    if (rv != APR_SUCCESS) {
        /* The old offset and hash stand; the driver's fallback state is
         * kept with them. */
        ocireg_upload_session keep = *s;
        memcpy(keep.driver, next.driver, sizeof(keep.driver));
        /* Best effort: the record learns of what this request started. */
        session_save(q, &keep);
        ocireg_uploads_release(q->uploads, &keep, s->uuid);
        return ocireg_store_failure(r, rv, "closing the upload");
    }
    next.offset += res.received;
    next.touched = apr_time_now();
    if (!res.status && !(cr && res.received != end - start + 1)) {
        *s = next; /* still held: the caller answers or finishes */
        return DECLINED;
    }
    /* What arrived is kept: saved like any progress. */
    if (session_save(q, &next) == APR_SUCCESS)
        q->store->ops->upload_settle(q->store, r->pool, s->uuid, s->driver,
                                     next.driver);
    else
        next = *s;
    ocireg_uploads_release(q->uploads, &next, s->uuid);
    if (res.status == HTTP_INTERNAL_SERVER_ERROR)
        return ocireg_store_failure(r, brv, "writing the upload");
    set_session_headers(q, &next, r->err_headers_out);
    if (res.status)
        return ocireg_respond_error(r, res.status,
                                    OCIREG_E_BLOB_UPLOAD_INVALID,
                                    "the request body could not be read",
                                    NULL);
    return ocireg_respond_error(r, HTTP_BAD_REQUEST, OCIREG_E_SIZE_INVALID,
                                "body length does not match Content-Range",
                                NULL);
}

static int session_busy(ocireg_req *q)
{
    ocireg_upload_session s;
    if (ocireg_uploads_get(q->uploads, q->route.arg, &s) == APR_SUCCESS)
        set_session_headers(q, &s, q->r->err_headers_out);
    return ocireg_respond_error(q->r, HTTP_RANGE_NOT_SATISFIABLE,
                        OCIREG_E_BLOB_UPLOAD_INVALID,
                        "another request is writing to this upload", NULL);
}

static int table_full(request_rec *r)
{
    ap_log_rerror(APLOG_MARK, APLOG_WARNING, 0, r,
                  "OCIREG00022: upload table full; raise OCIRegUploadSlots");
    apr_table_setn(r->err_headers_out, "Retry-After", "10");
    return ocireg_respond_error(r, HTTP_TOO_MANY_REQUESTS,
                                OCIREG_E_TOOMANYREQUESTS,
                                "too many uploads in progress", NULL);
}

/* The session as the store has it. The store's record is the truth: the
 * shared-memory copy of this host may be behind another host's, or gone
 * with a stop. */
static apr_status_t session_read(ocireg_req *q, const char *uuid,
                                 ocireg_upload_session *out)
{
    void *data;
    apr_size_t len;
    apr_status_t rv = q->store->ops->state_get(q->store, q->r->pool, uuid,
                                               &data, &len);
    if (rv == APR_SUCCESS && ocireg_session_decode(data, len, out)
                                 != APR_SUCCESS) {
        ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, q->r,
                      "OCIREG00023: upload %s has an unreadable state record "
                      "(written by another build?)",
                      uuid);
        rv = APR_ENOENT;
    }
    return rv;
}

/* Takes the session for changing it: this host's lock in shared memory,
 * then the record read afresh under it. Returns DECLINED with *s filled,
 * or the finished response. */
static int session_take(ocireg_req *q, const char *uuid,
                        ocireg_upload_session *s)
{
    request_rec *r = q->r;
    ocireg_upload_session cached;
    apr_status_t rv = ocireg_uploads_acquire(q->uploads, uuid, s);
    if (rv == APR_ENOENT) {
        /* Not known here yet (another host, a restart): cache it. */
        rv = session_read(q, uuid, s);
        if (rv == APR_ENOENT)
            return upload_unknown(q);
        if (rv != APR_SUCCESS)
            return ocireg_store_failure(r, rv, "reading the upload state");
        rv = ocireg_uploads_add(q->uploads, s);
        if (rv == APR_ENOSPC)
            return table_full(r);
        rv = ocireg_uploads_acquire(q->uploads, uuid, s);
    }
    if (rv == APR_EBUSY)
        return session_busy(q);
    if (rv != APR_SUCCESS)
        return upload_unknown(q);
    cached = *s;
    rv = session_read(q, uuid, s);
    /* At the same offset this host's copy knows at least as much: it may
     * name a multipart upload a failed request started while the store
     * could not be told. Offsets only grow, so a larger one in the store
     * is another host's progress, and wins. */
    if (rv == APR_SUCCESS && cached.offset == s->offset)
        *s = cached;
    if (rv != APR_SUCCESS) {
        if (rv == APR_ENOENT) {
            ocireg_uploads_remove(q->uploads, uuid);
            return upload_unknown(q);
        }
        ocireg_uploads_release(q->uploads, NULL, uuid);
        return ocireg_store_failure(r, rv, "reading the upload state");
    }
    return DECLINED;
}

/* Saves the session's new state before the client hears 2xx. */
static apr_status_t session_save(ocireg_req *q,
                                 const ocireg_upload_session *s)
{
    apr_size_t len;
    const void *data = ocireg_session_encode(q->r->pool, s, &len);
    return q->store->ops->state_put(q->store, q->r->pool, s->uuid, data,
                                    len);
}

/* GET, PATCH, PUT, DELETE /v2/<name>/blobs/uploads/<uuid> */
int ocireg_handle_upload(ocireg_req *q)
{
    request_rec *r = q->r;
    const char *uuid = q->route.arg, *digest = NULL;
    ocireg_upload_session s;
    apr_status_t rv;
    int m = r->method_number, status;

    if (!ocireg_uuid_valid(uuid))
        return upload_unknown(q);
    if (m == M_DELETE && !q->deletes)
        return ocireg_respond_deletes_off(q);
    if (m == M_PUT && (status = digest_arg(q, &digest)) != DECLINED)
        return status;

    if (m == M_GET) {
        rv = session_read(q, uuid, &s);
        /* With the store away, this host's copy still tells the client
         * where to resume. */
        if (rv != APR_SUCCESS && rv != APR_ENOENT
            && ocireg_uploads_get(q->uploads, uuid, &s) == APR_SUCCESS)
            rv = APR_SUCCESS;
        if (rv == APR_ENOENT)
            return upload_unknown(q);
        if (rv != APR_SUCCESS)
            return ocireg_store_failure(r, rv, "reading the upload state");
    }
    else if ((status = session_take(q, uuid, &s)) != DECLINED) {
        return status;
    }
    if (strcmp(s.name, q->route.name) != 0 || s.store_id != q->store->id) {
        if (m != M_GET)
            ocireg_uploads_release(q->uploads, NULL, uuid);
        return upload_unknown(q);
    }

    switch (m) {
    case M_GET:
        return session_answer(q, &s, HTTP_NO_CONTENT);
    case M_DELETE:
        rv = q->store->ops->upload_abort(q->store, r->pool, uuid, s.driver);
        if (rv != APR_SUCCESS && rv != APR_ENOENT) {
            ocireg_uploads_release(q->uploads, NULL, uuid);
            return ocireg_store_failure(r, rv, "aborting the upload");
        }
        ocireg_uploads_remove(q->uploads, uuid);
        return ocireg_respond(r, HTTP_NO_CONTENT, NULL, NULL, 0);
    case M_PATCH: {
        ocireg_upload_session before = s;
        if ((status = append_body(q, &s)) != DECLINED)
            return status;
        rv = session_save(q, &s);
        if (rv != APR_SUCCESS) {
            ocireg_uploads_release(q->uploads, NULL, uuid);
            return ocireg_store_failure(r, rv, "saving the upload state");
        }
        q->store->ops->upload_settle(q->store, r->pool, uuid, before.driver,
                                     s.driver);
        ocireg_uploads_release(q->uploads, &s, uuid);
        return session_answer(q, &s, HTTP_ACCEPTED);
    }
    default: /* M_PUT */
        if ((status = append_body(q, &s)) != DECLINED)
            return status;
        return finish_upload(q, uuid, &s, digest, 1);
    }
}

static apr_off_t request_length(request_rec *r)
{
    const char *cl = apr_table_get(r->headers_in, "Content-Length");
    apr_off_t n;
    return cl && ocireg_off_parse(cl, &n) ? n : -1;
}

/* A session that needs no slot: a monolithic POST ?digest= is begun and
 * finished within one request. */
static int monolithic_upload(ocireg_req *q, const char *digest)
{
    request_rec *r = q->r;
    ocireg_upload_session s;
    ocireg_upload_writer *w;
    ocireg_body_result res;
    const char *uuid = ocireg_new_uuid(r->pool);
    apr_status_t rv;

    if (too_big(q, request_length(r)))
        return refuse_too_big(q);
    memset(&s, 0, sizeof(s));
    ocireg_hash_init(&s.hash);
    rv = q->store->ops->upload_create(q->store, r->pool, uuid, s.driver);
    if (rv == APR_SUCCESS)
        rv = q->store->ops->upload_open(
            q->store, r->pool, uuid, s.driver, 0,
            request_length(r), &w);
    if (rv != APR_SUCCESS)
        return ocireg_store_failure(r, rv, "starting an upload");
    ocireg_body_stream(r, q->store, w, &s.hash, &res);
    rv = q->store->ops->upload_close(w, s.driver);
    if (res.status || rv != APR_SUCCESS) {
        q->store->ops->upload_abort(q->store, r->pool, uuid, s.driver);
        if (rv != APR_SUCCESS || res.status == HTTP_INTERNAL_SERVER_ERROR)
            return ocireg_store_failure(r, rv, "writing the upload");
        return ocireg_respond_error(r, res.status, OCIREG_E_BLOB_UPLOAD_INVALID,
                            "the request body could not be read", NULL);
    }
    s.offset = res.received;
    return finish_upload(q, uuid, &s, digest, 0);
}

/* POST /v2/<name>/blobs/uploads/ : new session, monolithic upload, mount */
int ocireg_handle_uploads(ocireg_req *q)
{
    request_rec *r = q->r;
    ocireg_upload_session s;
    apr_status_t rv;
    int bad = 0, status;
    const char *mount = ocireg_query_arg(r->pool, r->args, "mount", &bad);
    const char *from = ocireg_query_arg(r->pool, r->args, "from", &bad);
    const char *digest = ocireg_query_arg(r->pool, r->args, "digest", &bad);

    if (bad)
        return ocireg_respond_error(r, HTTP_BAD_REQUEST, OCIREG_E_BLOB_UPLOAD_INVALID,
                            "malformed query", r->args);
    if (mount) {
        if (ocireg_digest_parse(mount) == OCIREG_DIGEST_BAD)
            return ocireg_respond_error(r, HTTP_BAD_REQUEST, OCIREG_E_DIGEST_INVALID,
                                NULL, mount);
        if ((status = try_mount(q, mount, from)) != DECLINED)
            return status;
        /* Not mountable: an ordinary session, as the spec asks. */
    }
    else if (digest) {
        if ((status = digest_arg(q, &digest)) != DECLINED)
            return status;
        return monolithic_upload(q, digest);
    }

    memset(&s, 0, sizeof(s));
    apr_cpystrn(s.uuid, ocireg_new_uuid(r->pool), sizeof(s.uuid));
    apr_cpystrn(s.name, q->route.name, sizeof(s.name));
    s.store_id = q->store->id;
    s.created = s.touched = apr_time_now();
    ocireg_hash_init(&s.hash);
    rv = q->store->ops->upload_create(q->store, r->pool, s.uuid, s.driver);
    if (rv != APR_SUCCESS)
        return ocireg_store_failure(r, rv, "creating an upload");
    rv = ocireg_uploads_add(q->uploads, &s);
    if (rv == APR_SUCCESS) {
        rv = session_save(q, &s);
        if (rv != APR_SUCCESS) {
            ocireg_uploads_acquire(q->uploads, s.uuid, &s);
            ocireg_uploads_remove(q->uploads, s.uuid);
        }
    }
    if (rv != APR_SUCCESS) {
        q->store->ops->upload_abort(q->store, r->pool, s.uuid, s.driver);
        if (rv == APR_ENOSPC)
            return table_full(r);
        return ocireg_store_failure(r, rv, "creating an upload");
    }
    apr_table_setn(r->headers_out, "OCI-Chunk-Min-Length",
                   apr_off_t_toa(r->pool,
                                 q->store->ops->chunk_min_length(q->store)));
    return session_answer(q, &s, HTTP_ACCEPTED);
}
