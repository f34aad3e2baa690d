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
#include "apr_atomic.h"
#include "mod_ocireg.h"
#include <unistd.h>
#include "ocireg_parse.h"

APLOG_USE_MODULE(ocireg);

static const char *blob_location(ocireg_req *q, const char *digest)
{
    return apr_pstrcat(q->r->pool, "/v2/", q->route.name, "/blobs/", digest,
                       NULL);
}

/* The Location names the version of the session's record it answers, so
 * that a request sent with an older one (a retried chunk) is recognised
 * wherever it lands. */
static const char *upload_location(ocireg_req *q,
                                   const ocireg_upload_session *s)
{
    return apr_psprintf(q->r->pool,
                        "/v2/%s/blobs/uploads/%s?_state=%" APR_UINT64_T_FMT,
                        q->route.name, s->uuid, s->version);
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
    apr_table_setn(t, "Location", upload_location(q, s));
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

/* Gives back what session_take took: the store's lock, then this host's
 * slot, storing `updated` there when it is non-NULL. */
static void session_release(ocireg_req *q, const char *uuid,
                            const ocireg_upload_session *updated)
{
    if (q->lock)
        q->store->ops->upload_unlock(q->lock);
    q->lock = NULL;
    if (q->held_slot)
        ocireg_uploads_release(q->uploads, updated, uuid);
    q->held_slot = 0;
}

/* The session is over (finished, cancelled or gone). */
static void session_forget(ocireg_req *q, const char *uuid)
{
    if (q->lock)
        q->store->ops->upload_unlock(q->lock);
    q->lock = NULL;
    if (q->held_slot)
        ocireg_uploads_remove(q->uploads, uuid);
    q->held_slot = 0;
}

/* The session was committed or aborted in the store, its lock with it. */
static void session_gone(ocireg_req *q, const char *uuid)
{
    if (q->lock)
        q->store->ops->upload_lock_drop(q->lock);
    q->lock = NULL;
    session_forget(q, uuid);
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

/* Links the blob a source's link (src) names into the target: where the
 * bytes are, the new link says the same. */
static int link_mounted(ocireg_req *q, const char *digest,
                        const ocireg_blob_body *src)
{
    ocireg_blob_ref ref;
    apr_status_t rv;
    ref.size = src->size;
    ref.data = src->data;
    rv = q->store->ops->blob_link(q->store, q->r->pool, q->route.name,
                                  digest, &ref);
    if (rv != APR_SUCCESS)
        return ocireg_store_failure(q->r, rv, "blob link (mount)");
    return created(q, digest);
}

static int try_mount(ocireg_req *q, const char *digest, const char *from)
{
    request_rec *r = q->r;
    ocireg_blob_body src;

    if (!from || !ocireg_name_valid(from)
        || ocireg_digest_parse(digest) != OCIREG_DIGEST_SHA256)
        return DECLINED;
    /* A client may mount only what it may read: the same rules, asked
     * about the source, before any store request. */
    if (!ocireg_access_allowed(r, from, "pull"))
        return DECLINED;
    if (q->store->ops->blob_open_linked(q->store, r->pool, from, digest, 0,
                                        &src)
        != APR_SUCCESS)
        return DECLINED;
    return link_mounted(q, digest, &src);
}

/* How many repositories holding a digest a mount without `from` looks
 * at: one listing of the holder index, and at most this many verdicts
 * of the access rules (no store request each). */
#define DISCOVERY_HOLDERS_MAX 100

/* A mount without `from` (the spec's optional automatic content
 * discovery): the store's holder index names the repositories that link
 * the digest (one listing); the first of them this client may pull from
 * whose link is still there (one HEAD: an index entry is only a hint) is
 * the source. Nothing found, nothing allowed: DECLINED, and the caller
 * opens a session as for any unmountable blob. */
static int try_discovered_mount(ocireg_req *q, const char *digest)
{
    request_rec *r = q->r;
    apr_array_header_t *holders;
    apr_status_t rv;
    int i;

    if (ocireg_digest_parse(digest) != OCIREG_DIGEST_SHA256)
        return DECLINED;
    rv = q->store->ops->blob_holders(q->store, r->pool, digest,
                                     DISCOVERY_HOLDERS_MAX, &holders);
    if (rv != APR_SUCCESS) {
        ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r,
                      "OCIREG00490: mount of %s into %s without from: the "
                      "repositories holding it could not be listed (%s); "
                      "an upload session instead",
                      digest, q->route.name, ocireg_status_why(r->pool, rv));
        return DECLINED;
    }
    for (i = 0; i < holders->nelts; i++) {
        const char *holder = APR_ARRAY_IDX(holders, i, const char *);
        ocireg_blob_body src;
        if (!ocireg_access_allowed(r, holder, "pull"))
            continue;
        rv = q->store->ops->blob_open_linked(q->store, r->pool, holder,
                                             digest, 0, &src);
        if (rv != APR_SUCCESS)
            continue;
        ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, r,
                      "OCIREG00491: %s mounted into %s from %s (found by "
                      "its digest)",
                      digest, q->route.name, holder);
        return link_mounted(q, digest, &src);
    }
    return DECLINED;
}

/* Verifies and publishes an upload whose bytes are all in: the digest
 * must match the running hash, and only then does the blob appear. */
static int finish_upload(ocireg_req *q, const char *uuid,
                         ocireg_upload_session *s, const char *digest,
                         ocireg_upload_writer *w)
{
    request_rec *r = q->r;
    char actual[72];
    ocireg_blob_ref ref;
    apr_status_t rv;
    int status;

    ocireg_hash_digest(&s->hash, actual);
    if (strcmp(actual, digest) != 0) {
        q->store->ops->upload_abort(q->store, r->pool, uuid, s->driver,
                                    s->version, NULL);
        session_forget(q, uuid);
        return ocireg_respond_error(r, HTTP_BAD_REQUEST, OCIREG_E_DIGEST_INVALID,
                            "the uploaded content does not match the digest",
                            apr_psprintf(r->pool, "expected %s, got %s",
                                         digest, actual));
    }
    rv = q->store->ops->upload_commit(q->store, r->pool, uuid, s->driver,
                                      s->version, w, digest, s->offset,
                                      &ref, q->route.name);
    if (rv == OCIREG_STORE_ECONFLICT) {
        ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r,
                      "OCIREG00024: upload %s: stored parts differ from "
                      "what the session sent (a racing request, or a "
                      "change in the bucket); the upload is dropped",
                      uuid);
        q->store->ops->upload_abort(q->store, r->pool, uuid, s->driver,
                                    s->version, NULL);
        session_forget(q, uuid);
        return ocireg_respond_error(r, HTTP_BAD_REQUEST,
                                    OCIREG_E_BLOB_UPLOAD_INVALID,
                                    "the upload was corrupted by a racing "
                                    "request; upload the blob again",
                                    NULL);
    }
    if (rv != APR_SUCCESS) {
        session_release(q, uuid, NULL);
        return ocireg_store_failure(r, rv, "committing the upload");
    }
    session_gone(q, uuid);
    status = created(q, digest);
    /* The blob is visible: the client hears so now, and what the upload
     * kept goes after. */
    ap_rflush(r);
    q->store->ops->upload_cleanup(q->store, r->pool, uuid, s->driver,
                                  s->version);
    return status;
}

static apr_status_t session_save(ocireg_req *q, ocireg_upload_session *s,
                                 const ocireg_upload_session *before,
                                 ocireg_upload_writer *w);
static int session_busy(ocireg_req *q, const ocireg_upload_session *s,
                        const char *why);

#define WRITING_ELSEWHERE "another request is writing to this upload"

static apr_status_t session_read(ocireg_req *q, const char *uuid,
                                 apr_uint64_t hint,
                                 ocireg_upload_session *out);

/* Another request moved the session on from the record this one started
 * from (this host's copy was behind, or the client raced itself): the
 * store's latest is what this host and the client go on from. */
static int moved_elsewhere(ocireg_req *q, const char *uuid)
{
    ocireg_upload_session latest;
    apr_status_t rv = session_read(q, uuid, 0, &latest);
    if (rv == APR_ENOENT) {
        /* Finished or cancelled meanwhile. */
        session_forget(q, uuid);
        return upload_unknown(q);
    }
    session_release(q, uuid, rv == APR_SUCCESS ? &latest : NULL);
    return session_busy(q, rv == APR_SUCCESS ? &latest : NULL,
                        WRITING_ELSEWHERE);
}

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
 * the session advanced (s updated; *wp the closed writer, whose bytes the
 * next record or the commit takes, or NULL when there was no body), or
 * the finished error response. The session is released on error. */
static int append_body(ocireg_req *q, ocireg_upload_session *s,
                       ocireg_upload_writer **wp)
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
        session_release(q, s->uuid, NULL);
        return ocireg_respond_error(r, HTTP_BAD_REQUEST, OCIREG_E_SIZE_INVALID,
                            "invalid Content-Length", cl);
    }
    if (cr) {
        if (!ocireg_content_range_parse(cr, &start, &end, &total)) {
            session_release(q, s->uuid, NULL);
            return ocireg_respond_error(r, HTTP_BAD_REQUEST,
                                OCIREG_E_BLOB_UPLOAD_INVALID,
                                "invalid Content-Range", cr);
        }
        if (start != s->offset) {
            session_release(q, s->uuid, NULL);
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
            session_release(q, s->uuid, NULL);
            return ocireg_respond_error(r, HTTP_BAD_REQUEST, OCIREG_E_SIZE_INVALID,
                                "Content-Length does not match "
                                "Content-Range",
                                NULL);
        }
    }
    if ((cr && total >= 0 && too_big(q, total))
        || (length >= 0 && too_big(q, s->offset + length))) {
        session_release(q, s->uuid, NULL);
        return refuse_too_big(q);
    }
    *wp = NULL;
    if (!ap_request_has_body(r))
        return DECLINED;

    rv = q->store->ops->upload_open(q->store, r->pool, s->uuid, next.driver,
                                    s->version, s->offset, length, q->lock,
                                    &w);
    /* The record this request started from is gone: superseded (and its
     * bytes settled) by another request, or the session ended. */
    if (rv == APR_ENOENT)
        return moved_elsewhere(q, s->uuid);
    if (rv != APR_SUCCESS) {
        session_release(q, s->uuid, NULL);
        return ocireg_store_failure(r, rv, "opening the upload");
    }
    brv = ocireg_body_stream(r, q->store, w, q->lock, &next.hash, &res);
    /* Whatever happened to the body, what reached the store is kept and
     * the session says so: the client resumes from the Range it reads. */
    rv = q->store->ops->upload_close(w, next.driver);
    if (rv != APR_SUCCESS) {
        /* The old offset, hash and record stand; this host's copy keeps
         * the driver's fallback state (what this request started, to be
         * reused here; elsewhere the sweep frees it). */
        ocireg_upload_session keep = *s;
        memcpy(keep.driver, next.driver, sizeof(keep.driver));
        if (rv == APR_EBUSY || rv == OCIREG_STORE_ESTALE)
            return moved_elsewhere(q, s->uuid);
        session_release(q, s->uuid, &keep);
        return ocireg_store_failure(r, rv, "closing the upload");
    }
    next.offset += res.received;
    next.touched = apr_time_now();
    if (!res.status && !(cr && res.received != end - start + 1)) {
        *s = next; /* still held: the caller answers or finishes */
        *wp = w;
        return DECLINED;
    }
    /* What arrived is kept: saved like any progress. */
    if (session_save(q, &next, s, w) == APR_SUCCESS)
        q->store->ops->upload_settle(q->store, r->pool, s->uuid, s->version,
                                     s->driver, next.driver);
    else
        next = *s;
    session_release(q, s->uuid, &next);
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

static int session_busy(ocireg_req *q, const ocireg_upload_session *s,
                        const char *why)
{
    ocireg_upload_session cached;
    if (!s && ocireg_uploads_get(q->uploads, q->route.arg, &cached)
                  == APR_SUCCESS)
        s = &cached;
    if (s)
        set_session_headers(q, s, q->r->err_headers_out);
    return ocireg_respond_error(q->r, HTTP_RANGE_NOT_SATISFIABLE,
                        OCIREG_E_BLOB_UPLOAD_INVALID, why, NULL);
}


/* Who opened a session, for OCIRegUploadsPerClient: the authenticated
 * user, else the address (mod_remoteip's, when it is loaded). */
static const char *client_of(request_rec *r)
{
    if (r->user && *r->user)
        return apr_pstrcat(r->pool, "user:", r->user, NULL);
    return apr_pstrcat(r->pool, "ip:", r->useragent_ip, NULL);
}

static int over_limit(request_rec *r, apr_status_t rv, const char *name)
{
    int client = rv == OCIREG_UPLOADS_ECLIENT;
    ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r,
                  "OCIREG00151: new upload in %s refused: %s (%s %d)", name,
                  ocireg_status_why(r->pool, rv),
                  client ? "OCIRegUploadsPerClient"
                         : "OCIRegUploadsPerRepository",
                  client ? ocireg_conf_uploads_per_client
                         : ocireg_conf_uploads_per_repository);
    apr_table_setn(r->err_headers_out, "Retry-After", "30");
    return ocireg_respond_error(r, HTTP_TOO_MANY_REQUESTS,
                                OCIREG_E_TOOMANYREQUESTS,
                                client ? "too many uploads in progress for "
                                         "this client"
                                       : "too many uploads in progress for "
                                         "this repository",
                                NULL);
}

static int table_full(request_rec *r)
{
    /* Once a minute per process at most: a client flooding POSTs must
     * not flood the log as well. */
    static apr_time_t last_warned;
    apr_time_t now = apr_time_now();
    if (now - last_warned >= apr_time_from_sec(60)) {
        last_warned = now;
        ap_log_rerror(APLOG_MARK, APLOG_WARNING, 0, r,
                      "OCIREG00152: upload table full; raise "
                      "OCIRegUploadSlots (or lower OCIRegUploadsPerClient)");
    }
    apr_table_setn(r->err_headers_out, "Retry-After", "10");
    return ocireg_respond_error(r, HTTP_TOO_MANY_REQUESTS,
                                OCIREG_E_TOOMANYREQUESTS,
                                "too many uploads in progress", NULL);
}

/* A record that fails its checks is a session this registry does not
 * know: its client hears 404 BLOB_UPLOAD_UNKNOWN and starts again. It
 * is worth one warning (someone wrote the bucket, or the record key
 * changed), not one per retry: a process remembers the last it told. */
static void warn_bad_record(ocireg_req *q, const char *uuid, apr_status_t rv)
{
    /* Threads of the process share it: one atomic word, a hash of the id. */
    static volatile apr_uint32_t last;
    apr_uint32_t h = ocireg_store_id(uuid);
    if (apr_atomic_xchg32(&last, h) == h)
        return;
    ap_log_rerror(APLOG_MARK, APLOG_WARNING, 0, q->r,
                  "OCIREG00150: upload %s: the store's record of the "
                  "session is refused (%s); the session is treated as "
                  "unknown",
                  uuid, ocireg_status_why(q->r->pool, rv));
}

/* The session as the store has it. The store's record is the truth: the
 * shared-memory copy of this host may be behind another host's, or gone
 * with a stop. */
static apr_status_t session_read(ocireg_req *q, const char *uuid,
                                 apr_uint64_t hint,
                                 ocireg_upload_session *out)
{
    void *data;
    apr_size_t len;
    apr_uint64_t version;
    apr_status_t rv = q->store->ops->state_get(q->store, q->r->pool, uuid,
                                               hint, &version, &data, &len);
    if (rv == APR_SUCCESS) {
        apr_status_t drv = ocireg_session_decode(data, len,
                                                 q->conf->record_key,
                                                 q->conf->record_keylen, out);
        /* A record must name the session it was read for. */
        if (drv == APR_SUCCESS && strcmp(out->uuid, uuid) != 0)
            drv = OCIREG_SESSION_EBAD;
        if (drv != APR_SUCCESS) {
            warn_bad_record(q, uuid, drv);
            rv = APR_ENOENT;
        }
    }
    if (rv == APR_SUCCESS)
        out->version = version;
    return rv;
}

void ocireg_lock_owner_of(ocireg_req *q, ocireg_lock_owner *me)
{
    char name[OCIREG_LOCK_HOST_MAX + 1];
    memset(me, 0, sizeof(*me));
    if (apr_gethostname(name, sizeof(name), q->r->pool) != APR_SUCCESS)
        strcpy(name, "localhost");
    ocireg_lock_host_id(name, me->host);
    /* The instance vouches for its own processes only while this request
     * holds the session's slot (ocireg_lock.h). */
    me->instance = q->held_slot ? ocireg_uploads_instance(q->uploads) : 0;
    me->pid = (apr_int64_t)getpid();
    me->expires = apr_time_now() + ocireg_conf_upload_lease;
}

/* The record version the client's Location names (0: none), which is
 * the one to read: a client that follows the Locations it is given names
 * the latest. */
static apr_uint64_t location_version(ocireg_req *q)
{
    int bad = 0;
    const char *v = ocireg_query_arg(q->r->pool, q->r->args, "_state", &bad);
    apr_off_t n;
    if (!v || bad || !ocireg_off_parse(v, &n) || n <= 0)
        return 0;
    return (apr_uint64_t)n;
}

/* Takes the session for changing it: this host's slot in shared memory
 * (its cache, and the lock among its processes), then the store's lock,
 * which reaches every host and tells whether the cached copy is the
 * latest. Returns DECLINED with *s filled, or the finished response. A
 * session this host has no room for still works, from the store alone. */
static int session_take(ocireg_req *q, const char *uuid,
                        ocireg_upload_session *s)
{
    request_rec *r = q->r;
    ocireg_lock_owner me;
    apr_uint64_t hint = location_version(q);
    apr_status_t rv = ocireg_uploads_acquire(q->uploads, uuid, s);
    int attempt;

    if (rv == APR_EBUSY)
        return session_busy(q, NULL, WRITING_ELSEWHERE);
    if (rv == APR_SUCCESS) {
        q->held_slot = 1;
        /* The client names a record newer than this host's copy: another
         * host moved the session on. */
        if (hint > s->version) {
            ocireg_upload_session fresh;
            rv = session_read(q, uuid, hint, &fresh);
            if (rv == APR_SUCCESS && fresh.version > s->version)
                *s = fresh;
        }
    }
    else {
        /* Not known here yet (another host, a restart). */
        rv = session_read(q, uuid, hint, s);
        if (rv == APR_ENOENT)
            return upload_unknown(q);
        if (rv != APR_SUCCESS)
            return ocireg_store_failure(r, rv, "reading the upload state");
        rv = ocireg_uploads_add(q->uploads, s);
        if (rv == APR_SUCCESS || rv == APR_EEXIST) {
            ocireg_upload_session fresh = *s;
            rv = ocireg_uploads_acquire(q->uploads, uuid, s);
            if (rv == APR_EBUSY)
                return session_busy(q, &fresh, WRITING_ELSEWHERE);
            q->held_slot = rv == APR_SUCCESS;
            /* The record just read, unless this host's copy is newer. */
            if (rv != APR_SUCCESS || s->version < fresh.version)
                *s = fresh;
        }
    }
    ocireg_lock_owner_of(q, &me);
    for (attempt = 0;; attempt++) {
        rv = q->store->ops->upload_lock(q->store, r->pool, uuid, s->version,
                                        &me, &q->lock);
        if (rv != OCIREG_STORE_ESTALE || attempt == 3)
            break;
        /* Another host moved the session on: its record is the truth. */
        rv = session_read(q, uuid, 0, s);
        if (rv != APR_SUCCESS)
            break;
    }
    if (rv == APR_SUCCESS)
        return DECLINED;
    q->lock = NULL;
    if (rv == APR_ENOENT) {
        session_forget(q, uuid);
        return upload_unknown(q);
    }
    session_release(q, uuid, NULL);
    if (rv == APR_EBUSY || rv == OCIREG_STORE_ESTALE)
        return session_busy(q, s, WRITING_ELSEWHERE);
    return ocireg_store_failure(r, rv, "locking the upload");
}

/* Saves the session's new state, as the record's next version, before the
 * client hears 2xx. APR_EEXIST: another request (on a host that took over
 * this one's lease) saved that version first. */
static apr_status_t session_save(ocireg_req *q, ocireg_upload_session *s,
                                 const ocireg_upload_session *before,
                                 ocireg_upload_writer *w)
{
    ocireg_upload_session next = *s;
    apr_size_t len;
    const void *data;
    apr_status_t rv;
    next.version++;
    if (before && next.offset != before->offset)
        next.moved = next.version;
    data = ocireg_session_encode(q->r->pool, &next, q->conf->record_key,
                                 q->conf->record_keylen, &len);
    rv = q->store->ops->state_put(q->store, q->r->pool, s->uuid,
                                  next.version, data, len, w);
    if (rv == APR_SUCCESS) {
        s->version = next.version;
        s->moved = next.moved;
    }
    return rv;
}

/* A request carrying a Location from before the session last took bytes:
 * a retry of a chunk already taken, or a client that lost track. A record
 * that changed nothing but the driver's bookkeeping (a failed request's)
 * leaves older Locations good. */
static int stale_location(ocireg_req *q, const ocireg_upload_session *s)
{
    int bad = 0;
    const char *v = ocireg_query_arg(q->r->pool, q->r->args, "_state", &bad);
    apr_off_t n;
    if (!v)
        return 0;
    return !ocireg_off_parse(v, &n) || (apr_uint64_t)n < s->moved
           || (apr_uint64_t)n > s->version;
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
        /* The latest, whatever the client's Location says: this is how
         * a client that lost track finds where to resume. */
        rv = session_read(q, uuid, 0, &s);
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
        session_release(q, uuid, NULL);
        return upload_unknown(q);
    }
    if ((m == M_PATCH || m == M_PUT) && stale_location(q, &s)) {
        session_release(q, uuid, NULL);
        return session_busy(q, &s,
                            "the Location is stale: the upload has moved "
                            "on since");
    }

    switch (m) {
    case M_GET:
        return session_answer(q, &s, HTTP_NO_CONTENT);
    case M_DELETE:
        {
            /* The digest of what the session holds: if a crash left its
             * blob's data complete, the driver can tell whether a blob
             * names it. */
            char held[80];
            ocireg_hash_digest(&s.hash, held);
            rv = q->store->ops->upload_abort(q->store, r->pool, uuid,
                                             s.driver, s.version, held);
        }
        if (rv != APR_SUCCESS && rv != APR_ENOENT) {
            session_release(q, uuid, NULL);
            return ocireg_store_failure(r, rv, "aborting the upload");
        }
        session_gone(q, uuid);
        return ocireg_respond(r, HTTP_NO_CONTENT, NULL, NULL, 0);
    case M_PATCH: {
        ocireg_upload_session before = s;
        ocireg_upload_writer *w;
        if ((status = append_body(q, &s, &w)) != DECLINED)
            return status;
        /* Nothing came: nothing to record. */
        if (!w) {
            session_release(q, uuid, &s);
            return session_answer(q, &s, HTTP_ACCEPTED);
        }
        rv = session_save(q, &s, &before, w);
        if (rv != APR_SUCCESS) {
            if (rv == APR_EEXIST)
                return moved_elsewhere(q, uuid);
            session_release(q, uuid, NULL);
            return ocireg_store_failure(r, rv, "saving the upload state");
        }
        session_release(q, uuid, &s);
        status = session_answer(q, &s, HTTP_ACCEPTED);
        /* The record it supersedes goes once the client has its answer. */
        ap_rflush(r);
        q->store->ops->upload_settle(q->store, r->pool, uuid, before.version,
                                     before.driver, s.driver);
        return status;
    }
    default: { /* M_PUT */
        ocireg_upload_writer *w;
        if ((status = append_body(q, &s, &w)) != DECLINED)
            return status;
        return finish_upload(q, uuid, &s, digest, w);
    }
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
            q->store, r->pool, uuid, s.driver, 0, 0,
            request_length(r), NULL, &w);
    if (rv != APR_SUCCESS)
        return ocireg_store_failure(r, rv, "starting an upload");
    ocireg_body_stream(r, q->store, w, NULL, &s.hash, &res);
    rv = q->store->ops->upload_close(w, s.driver);
    if (res.status || rv != APR_SUCCESS) {
        q->store->ops->upload_abort(q->store, r->pool, uuid, s.driver, 0,
                                    NULL);
        if (rv != APR_SUCCESS || res.status == HTTP_INTERNAL_SERVER_ERROR)
            return ocireg_store_failure(r, rv, "writing the upload");
        return ocireg_respond_error(r, res.status, OCIREG_E_BLOB_UPLOAD_INVALID,
                            "the request body could not be read", NULL);
    }
    s.offset = res.received;
    return finish_upload(q, uuid, &s, digest, w);
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
        status = from ? try_mount(q, mount, from)
                      : try_discovered_mount(q, mount);
        if (status != DECLINED)
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
    /* Room in this host's table, within the client's and the
     * repository's share, is what admits a new upload, and is checked
     * before the store is asked for anything: a client flooding POSTs
     * costs no store requests once refused. The record (version 1) is
     * what makes the session exist. */
    rv = ocireg_uploads_add_limited(q->uploads, &s, client_of(r),
                                    ocireg_conf_uploads_per_client,
                                    ocireg_conf_uploads_per_repository);
    if (rv == APR_ENOSPC)
        return table_full(r);
    if (rv == OCIREG_UPLOADS_ECLIENT || rv == OCIREG_UPLOADS_EREPO)
        return over_limit(r, rv, q->route.name);
    if (rv != APR_SUCCESS)
        return ocireg_store_failure(r, rv, "creating an upload");
    /* Nobody else knows the id yet; held, so that the expiry does not
     * take it half made. */
    rv = ocireg_uploads_acquire(q->uploads, s.uuid, &s);
    if (rv != APR_SUCCESS)
        return ocireg_store_failure(r, rv, "creating an upload");
    rv = q->store->ops->upload_create(q->store, r->pool, s.uuid, s.driver);
    if (rv != APR_SUCCESS) {
        ocireg_uploads_remove(q->uploads, s.uuid);
        return ocireg_store_failure(r, rv, "creating an upload");
    }
    rv = session_save(q, &s, NULL, NULL);
    if (rv != APR_SUCCESS) {
        q->store->ops->upload_abort(q->store, r->pool, s.uuid, s.driver, 0,
                                    NULL);
        ocireg_uploads_remove(q->uploads, s.uuid);
        return ocireg_store_failure(r, rv, "creating an upload");
    }
    ocireg_uploads_release(q->uploads, &s, s.uuid);
    apr_table_setn(r->headers_out, "OCI-Chunk-Min-Length",
                   apr_off_t_toa(r->pool,
                                 q->store->ops->chunk_min_length(q->store)));
    return session_answer(q, &s, HTTP_ACCEPTED);
}
