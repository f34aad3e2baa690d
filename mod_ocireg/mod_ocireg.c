/* mod_ocireg: module declaration, directives, hooks and request dispatch.
 * The protocol work is in the pure core (ocireg_*.c) and the endpoint
 * handlers (mod_ocireg_*.c). */
#include <string.h>
#include <unistd.h>
#include "httpd.h"
#include "http_config.h"
#include "http_core.h"
#include "http_log.h"
#include "http_protocol.h"
#include "http_request.h"
#include "util_mutex.h"
#include "ap_mpm.h"
#include "unixd.h"
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include "apr_strings.h"
#include "apr_shm.h"
#include "apr_global_mutex.h"
#include "ocireg_cache.h"
#include "mod_ocireg.h"
#include "mod_ocireg_expiry.h"
#include "ocireg_parse.h"
#include <stdlib.h>
#include <jansson.h>


#define NOTE_OURS "ocireg-request"

/* Process-wide state: the upload table lives in shared memory created by
 * the parent after the configuration dry run; each child re-opens the
 * mutex and attaches its own handle. */

#define TABLE_KEY "ocireg-upload-table"
typedef struct {
    apr_shm_t *shm;
    apr_global_mutex_t *mutex;
    int slots;
    apr_size_t size;             /* changes with the build's slot layout */
} persistent_table;

static apr_shm_t *upload_shm;
static apr_global_mutex_t *upload_mutex;
static ocireg_uploads *uploads;

static ocireg_uploads *upload_table(void)
{
    return uploads;
}

/* Lifecycle */

static int pre_config(apr_pool_t *pconf, apr_pool_t *plog, apr_pool_t *ptemp)
{
    (void)plog;
    (void)ptemp;
    ocireg_conf_upload_slots = OCIREG_DEFAULT_UPLOAD_SLOTS;
    ocireg_conf_cache_entries = OCIREG_DEFAULT_CACHE_ENTRIES;
    ocireg_conf_catalog_scan = OCIREG_DEFAULT_CATALOG_SCAN;
    ocireg_conf_cache_ttl = apr_time_from_sec(OCIREG_DEFAULT_CACHE_SECONDS);
    ocireg_conf_upload_expiry = OCIREG_DEFAULT_UPLOAD_EXPIRY;
    ocireg_conf_upload_lease = 0; /* unset: from Timeout (check_config) */
    ocireg_conf_upload_empty_expiry = OCIREG_DEFAULT_UPLOAD_EMPTY_EXPIRY;
    ocireg_conf_uploads_per_client = OCIREG_DEFAULT_UPLOADS_PER_CLIENT;
    ocireg_conf_uploads_per_repository =
        OCIREG_DEFAULT_UPLOADS_PER_REPOSITORY;
    return ap_mutex_register(pconf, OCIREG_MUTEX_TYPE, NULL, APR_LOCK_DEFAULT,
                             0);
}

/* Children run as User/Group: the store they write to must be theirs.
 * This runs as root at every start and graceful restart, on directories
 * the unprivileged user owns and can replace: a subdirectory swapped for a
 * symlink must never make root give the link's target away. So each one
 * is opened without following a link, checked to be a directory, and
 * changed through its descriptor. The root itself is the administrator's
 * configured path and may be a link. */
static apr_status_t own_dir_at(int dirfd, const char *name, uid_t uid,
                               gid_t gid)
{
    int fd = openat(dirfd, name,
                    O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    apr_status_t rv = APR_SUCCESS;
    struct stat st;
    if (fd < 0)
        return APR_FROM_OS_ERROR(errno);
    /* Ours are root's (just made) or already the user's; a directory of
     * anyone else was moved in and is not ours to give. */
    if (fstat(fd, &st) != 0)
        rv = APR_FROM_OS_ERROR(errno);
    else if (st.st_uid != 0 && st.st_uid != uid)
        rv = APR_EACCES;
    else if (fchown(fd, uid, gid) != 0)
        rv = APR_FROM_OS_ERROR(errno);
    close(fd);
    return rv;
}

static apr_status_t hand_store_to_user(server_rec *s, const char *root)
{
    static const char *const dirs[] = {"blobs", "repositories", "uploads",
                                       "tmp"};
    uid_t uid = ap_unixd_config.user_id;
    gid_t gid = ap_unixd_config.group_id;
    apr_status_t rv = APR_SUCCESS;
    apr_size_t i;
    int rootfd;
    if (geteuid() != 0)
        return APR_SUCCESS;
    rootfd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (rootfd < 0)
        return APR_FROM_OS_ERROR(errno);
    if (fchown(rootfd, uid, gid) != 0) {
        rv = APR_FROM_OS_ERROR(errno);
        close(rootfd);
        return rv;
    }
    for (i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
        apr_status_t drv = own_dir_at(rootfd, dirs[i], uid, gid);
        if (drv == APR_FROM_OS_ERROR(ELOOP)
            || drv == APR_FROM_OS_ERROR(ENOTDIR) || drv == APR_EACCES) {
            /* Planted by someone with the store's rights: refuse to touch
             * it, keep serving (it only holds what that user could write
             * anyway). */
            ap_log_error(APLOG_MARK, APLOG_ERR, drv, s,
                         "OCIREG00200: OCIRegStorage filesystem %s: %s is "
                         "a symlink, not a directory or another user's; "
                         "not handing it to User (replace it with a "
                         "directory)",
                         root, dirs[i]);
            continue;
        }
        if (drv != APR_SUCCESS) {
            rv = drv;
            break;
        }
    }
    close(rootfd);
    return rv;
}

/* With check_only, runs from check_config, which `apachectl -t` runs too,
 * and touches nothing on disk. */
static int open_stores(apr_pool_t *pconf, apr_pool_t *ptemp, server_rec *s,
                       int check_only)
{
    for (; s; s = s->next) {
        ocireg_server_conf *sc =
            ap_get_module_config(s->module_config, &ocireg_module);
        apr_status_t rv;
        if (!sc->storage_driver) {
            if (sc->registry_used) {
                ap_log_error(APLOG_MARK, APLOG_STARTUP | APLOG_CRIT, 0, s,
                             "OCIREG00001: OCIRegistry On in %s:%u, but no "
                             "OCIRegStorage is set for that server",
                             s->server_hostname, s->port);
                return HTTP_INTERNAL_SERVER_ERROR;
            }
            continue;
        }
        if (strcmp(sc->storage_driver, "s3") == 0) {
            const char *err = ocireg_s3conf_check(ptemp, sc);
            if (err) {
                ap_log_error(APLOG_MARK, APLOG_STARTUP | APLOG_CRIT, 0, s,
                             "OCIREG00008: %s", err);
                return HTTP_INTERNAL_SERVER_ERROR;
            }
            ocireg_record_key_check(pconf, sc);
            if (check_only)
                continue;
            if (ocireg_cursor_key(sc->cursor_key, sc->record_key,
                                  sc->record_keylen) != 0)
                return HTTP_INTERNAL_SERVER_ERROR;
            rv = ocireg_store_s3_create(pconf, &sc->s3, &sc->store);
            if (rv != APR_SUCCESS) {
                ap_log_error(APLOG_MARK, APLOG_STARTUP | APLOG_CRIT, 0, s,
                             "OCIREG00009: OCIRegStorage s3 %s: cannot set "
                             "up the client: %s",
                             sc->storage_arg, ocireg_status_why(ptemp, rv));
                return HTTP_INTERNAL_SERVER_ERROR;
            }
            continue;
        }
        ocireg_record_key_check(pconf, sc);
        if (check_only)
            continue;
        if (ocireg_cursor_key(sc->cursor_key, sc->record_key,
                              sc->record_keylen) != 0)
            return HTTP_INTERNAL_SERVER_ERROR;
        rv = ocireg_store_fs_create(pconf, sc->storage_arg, &sc->store);
        if (rv == APR_SUCCESS)
            rv = hand_store_to_user(s, sc->storage_arg);
        if (rv != APR_SUCCESS) {
            ap_log_error(APLOG_MARK, APLOG_CRIT, 0, s,
                         "OCIREG00002: OCIRegStorage filesystem %s: cannot "
                         "create or own the store: %s",
                         sc->storage_arg, ocireg_status_why(ptemp, rv));
            return HTTP_INTERNAL_SERVER_ERROR;
        }
    }
    return OK;
}

/* The shared cache of store answers: anonymous shared memory made by the
 * parent for this configuration (children inherit it at fork; a restart
 * starts it empty), handed to every S3 store. It needs no mutex: its
 * slots are seqlocked (ocireg_cache.h). */
static int open_cache(apr_pool_t *pconf, apr_pool_t *ptemp, server_rec *s)
{
    apr_size_t size;
    apr_shm_t *shm;
    ocireg_cache *cache;
    apr_status_t rv;
    server_rec *v;

    if (ocireg_conf_cache_entries <= 0)
        return OK;
    size = ocireg_cache_size(ocireg_conf_cache_entries);
    rv = apr_shm_create(&shm, size, NULL, pconf);
    if (rv != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_CRIT, 0, s,
                     "OCIREG00360: cannot create %" APR_SIZE_T_FMT " bytes "
                     "of shared memory for %d cache entries "
                     "(OCIRegCacheEntries): %s",
                     size, ocireg_conf_cache_entries,
                     ocireg_status_why(ptemp, rv));
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    ocireg_cache_format(apr_shm_baseaddr_get(shm), ocireg_conf_cache_entries);
    cache = ocireg_cache_attach(pconf, apr_shm_baseaddr_get(shm));
    for (v = s; v; v = v->next) {
        ocireg_server_conf *sc =
            ap_get_module_config(v->module_config, &ocireg_module);
        if (sc->store && sc->storage_driver
            && strcmp(sc->storage_driver, "s3") == 0)
            ocireg_store_s3_set_cache(sc->store, cache,
                                      ocireg_conf_cache_ttl);
    }
    return OK;
}

static int post_config(apr_pool_t *pconf, apr_pool_t *plog,
                       apr_pool_t *ptemp, server_rec *s)
{
    apr_status_t rv;
    apr_size_t size = ocireg_uploads_size(ocireg_conf_upload_slots);
    int status;
    (void)plog;

    /* The first pass only checks the configuration. */
    if (ap_state_query(AP_SQ_MAIN_STATE) == AP_SQ_MS_CREATE_PRE_CONFIG)
        return OK;

    status = open_stores(pconf, ptemp, s, 0);
    if (status != OK)
        return status;

    /* The table and its mutex outlive restarts: they hang off the
     * process pool, so uploads in flight carry on across `-k graceful`
     * and `-k restart`, with old and new children sharing one lock. Only a
     * new OCIRegUploadSlots value makes a new (empty) table. */
    {
        persistent_table *pt = NULL;
        apr_pool_t *keep = s->process->pool;
        apr_pool_userdata_get((void **)&pt, TABLE_KEY, keep);
        if (pt && (pt->slots != ocireg_conf_upload_slots
                   || pt->size != size)) {
            ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, s,
                         "OCIREG00007: OCIRegUploadSlots changed from %d to "
                         "%d: upload sessions in progress are dropped",
                         pt->slots, ocireg_conf_upload_slots);
            apr_shm_destroy(pt->shm);
            apr_global_mutex_destroy(pt->mutex);
            pt = NULL;
        }
        if (!pt) {
            pt = apr_pcalloc(keep, sizeof(*pt));
            rv = ap_global_mutex_create(&pt->mutex, NULL, OCIREG_MUTEX_TYPE,
                                        NULL, s, keep, 0);
            if (rv != APR_SUCCESS)
                return HTTP_INTERNAL_SERVER_ERROR; /* already logged */
            /* Anonymous: inherited by the children at fork. */
            rv = apr_shm_create(&pt->shm, size, NULL, keep);
            if (rv != APR_SUCCESS) {
                ap_log_error(APLOG_MARK, APLOG_CRIT, 0, s,
                             "OCIREG00003: cannot create %" APR_SIZE_T_FMT
                             " bytes of shared memory for %d upload slots: "
                             "%s",
                             size, ocireg_conf_upload_slots,
                             ocireg_status_why(ptemp, rv));
                apr_global_mutex_destroy(pt->mutex);
                return HTTP_INTERNAL_SERVER_ERROR;
            }
            pt->slots = ocireg_conf_upload_slots;
            pt->size = size;
            ocireg_uploads_format(apr_shm_baseaddr_get(pt->shm), ocireg_conf_upload_slots);
            apr_pool_userdata_set(pt, TABLE_KEY, apr_pool_cleanup_null, keep);
            ap_log_error(APLOG_MARK, APLOG_INFO, 0, s,
                         "OCIREG00004: upload table of %d slots (%"
                         APR_SIZE_T_FMT " bytes) ready",
                         ocireg_conf_upload_slots, size);
        }
        upload_shm = pt->shm;
        upload_mutex = pt->mutex;
    }
    uploads = ocireg_uploads_attach(pconf, apr_shm_baseaddr_get(upload_shm),
                                    upload_mutex);
    status = open_cache(pconf, ptemp, s);
    if (status != OK)
        return status;
    return ocireg_expiry_start(pconf, s, upload_table);
}

/* A lock holder may wait up to Timeout for the client's next bytes before
 * it can renew its lease: the lease must outlast that wait. */
static int settle_upload_lease(server_rec *s)
{
    apr_interval_time_t timeout = 0;
    server_rec *v;
    for (v = s; v; v = v->next)
        if (v->timeout > timeout)
            timeout = v->timeout;
    if (ocireg_conf_upload_lease == 0) {
        ocireg_conf_upload_lease = timeout + OCIREG_UPLOAD_LEASE_MARGIN;
        return OK;
    }
    if (ocireg_conf_upload_lease > timeout)
        return OK;
    ap_log_error(APLOG_MARK, APLOG_STARTUP | APLOG_CRIT, 0, s,
                 "OCIREG00100: OCIRegUploadLease %" APR_TIME_T_FMT " s must "
                 "be longer than httpd's Timeout (%" APR_TIME_T_FMT " s): a "
                 "holder waiting that long on its client would lose its lock",
                 apr_time_sec(ocireg_conf_upload_lease),
                 apr_time_sec(timeout));
    return HTTP_INTERNAL_SERVER_ERROR;
}

static int check_config(apr_pool_t *pconf, apr_pool_t *plog,
                        apr_pool_t *ptemp, server_rec *s)
{
    int rc;
    (void)plog;
    rc = settle_upload_lease(s);
    if (rc != OK)
        return rc;
    return open_stores(pconf, ptemp, s, 1);
}

static void child_init(apr_pool_t *p, server_rec *s)
{
    apr_status_t rv;
    if (!upload_mutex)
        return;
    ocireg_expiry_child_init(p, s);
    ocireg_mirror_child_init(p);
    rv = apr_global_mutex_child_init(
        &upload_mutex, apr_global_mutex_lockfile(upload_mutex), p);
    if (rv != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_CRIT, 0, s,
                     "OCIREG00005: cannot reopen the upload table mutex in "
                     "the child: %s",
                     ocireg_status_why(p, rv));
        uploads = NULL;
        return;
    }
    uploads = ocireg_uploads_attach(p, apr_shm_baseaddr_get(upload_shm),
                                    upload_mutex);
}

/* Requests */

static int path_is_api(const char *path)
{
    return path && strncmp(path, "/v2", 3) == 0
           && (path[3] == '\0' || path[3] == '/');
}

/* Marks our requests as early as possible, so that errors raised before
 * the handler (authentication, LimitRequestBody, malformed URLs) still get
 * the API version header and a JSON body. */
static int post_read_request(request_rec *r)
{
    ocireg_server_conf *sc =
        ap_get_module_config(r->server->module_config, &ocireg_module);
    if (!sc->registry_used || !path_is_api(r->parsed_uri.path))
        return DECLINED;
    apr_table_setn(r->notes, NOTE_OURS, "1");
    apr_table_setn(r->err_headers_out, "Docker-Distribution-API-Version",
                   OCIREG_API_VERSION);
    apr_table_setn(r->err_headers_out, "X-Content-Type-Options", "nosniff");
    return DECLINED;
}

int ocireg_registry_here(request_rec *r)
{
    ocireg_dir_conf *dc =
        ap_get_module_config(r->per_dir_config, &ocireg_module);
    return dc && dc->enabled == 1 && path_is_api(r->uri);
}

/* There is no file behind an API URL: claim it before the core maps it
 * onto DocumentRoot, and skip the directory walk (as mod_proxy does). */
static int translate_name(request_rec *r)
{
    ocireg_server_conf *sc =
        ap_get_module_config(r->server->module_config, &ocireg_module);
    if (!sc->registry_used || !path_is_api(r->uri))
        return DECLINED;
    r->filename = apr_pstrcat(r->pool, OCIREG_HANDLER ":", r->uri, NULL);
    return OK;
}

static int map_to_storage(request_rec *r)
{
    if (r->filename
        && strncmp(r->filename, OCIREG_HANDLER ":",
                   sizeof(OCIREG_HANDLER)) == 0)
        return OK;
    return DECLINED;
}

static int fixups(request_rec *r)
{
    if (ocireg_registry_here(r))
        r->handler = OCIREG_HANDLER;
    return DECLINED;
}

static int dispatch(ocireg_req *q)
{
    request_rec *r = q->r;
    int m = r->method_number;

    if (q->route.kind == OCIREG_R_NONE) {
        if (q->route.error)
            return ocireg_respond_error(r, HTTP_BAD_REQUEST, q->route.error, NULL,
                                r->uri);
        return ocireg_respond_error(r, HTTP_NOT_FOUND, OCIREG_E_UNSUPPORTED,
                            "no such API endpoint", r->uri);
    }
    switch (q->route.kind) {
    case OCIREG_R_BASE:
        if (m == M_GET)
            return ocireg_respond(r, HTTP_OK, "application/json", "{}\n", 3);
        break;
    case OCIREG_R_CATALOG:
        if (m == M_GET)
            return ocireg_handle_catalog(q);
        break;
    case OCIREG_R_TAGS:
        if (m == M_GET)
            return ocireg_handle_tags(q);
        break;
    case OCIREG_R_REFERRERS:
        if (m == M_GET)
            return ocireg_handle_referrers(q);
        break;
    case OCIREG_R_BLOB:
        if (m == M_GET || m == M_DELETE)
            return ocireg_handle_blob(q);
        break;
    case OCIREG_R_UPLOADS:
        if (m == M_POST)
            return ocireg_handle_uploads(q);
        break;
    case OCIREG_R_UPLOAD:
        if (m == M_GET || m == M_PATCH || m == M_PUT || m == M_DELETE)
            return ocireg_handle_upload(q);
        break;
    case OCIREG_R_MANIFEST:
        if (m == M_GET || m == M_PUT || m == M_DELETE)
            return ocireg_handle_manifest(q);
        break;
    default:
        break;
    }
    apr_table_setn(r->headers_out, "Allow", ocireg_route_allow(q->route.kind));
    return ocireg_respond_error(r, HTTP_METHOD_NOT_ALLOWED, OCIREG_E_UNSUPPORTED,
                        apr_psprintf(r->pool, "%s is not allowed here",
                                     r->method),
                        NULL);
}

static int handler(request_rec *r)
{
    ocireg_server_conf *sc;
    ocireg_dir_conf *dc;
    ocireg_req q;

    if (!r->handler || strcmp(r->handler, OCIREG_HANDLER) != 0)
        return DECLINED;
    sc = ap_get_module_config(r->server->module_config, &ocireg_module);
    dc = ap_get_module_config(r->per_dir_config, &ocireg_module);
    apr_table_setn(r->err_headers_out, "Docker-Distribution-API-Version",
                   OCIREG_API_VERSION);
    apr_table_setn(r->err_headers_out, "X-Content-Type-Options", "nosniff");
    memset(&q, 0, sizeof(q));
    q.r = r;
    q.store = sc->store;
    q.conf = sc;
    q.uploads = uploads;
    q.deletes = dc->deletes != 0;
    if (!q.store || !q.uploads) {
        ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r,
                      "OCIREG00006: registry not initialised (storage or "
                      "upload table missing)");
        return ocireg_respond_error(r, HTTP_INTERNAL_SERVER_ERROR,
                            OCIREG_E_INTERNAL, "registry not initialised",
                            NULL);
    }
    ocireg_route_parse(r->pool, r->uri, &q.route);
    return dispatch(&q);
}

/* What the request was sending when httpd made its error: the code for a
 * malformed chunked body is not the one for a malformed URL. */
static ocireg_body_kind body_kind(request_rec *r)
{
    ocireg_route route;
    /* Only a handler that started reading sets read_body. */
    if (r->read_body == REQUEST_NO_BODY || !r->uri)
        return OCIREG_BODY_NONE;
    ocireg_route_parse(r->pool, r->uri, &route);
    return route.kind == OCIREG_R_MANIFEST ? OCIREG_BODY_MANIFEST
                                           : OCIREG_BODY_BLOB;
}

/* A refusal names what was refused, never why: which credentials failed
 * or which rule said no is for the error log, not for the client. */
static const char *access_error_body(request_rec *r)
{
    request_rec *m = r;
    const char *repository, *action;
    ocireg_error e;
    json_t *detail;
    char *text;
    while (m->prev)
        m = m->prev;
    repository = apr_table_get(m->subprocess_env, OCIREG_ENV_REPOSITORY);
    action = apr_table_get(m->subprocess_env, OCIREG_ENV_ACTION);
    detail = json_pack("{s:s, s:s}", "repository",
                       repository ? repository : "", "action",
                       action ? action : "");
    text = detail ? json_dumps(detail, JSON_COMPACT) : NULL;
    e.code = r->status == HTTP_UNAUTHORIZED ? OCIREG_E_UNAUTHORIZED
                                             : OCIREG_E_DENIED;
    e.message = r->status == HTTP_UNAUTHORIZED
                    ? "authentication required"
                    : "requested access to the resource is denied";
    e.detail_json = text ? apr_pstrdup(r->pool, text) : NULL;
    free(text);
    json_decref(detail);
    return ocireg_error_body(r->pool, &e, 1);
}

/* Error responses made outside the handler (mod_auth_basic's 401,
 * LimitRequestBody's 413, core URL checks, a malformed chunked body, the
 * byterange filter's 416) carry httpd's HTML page; the API promises a JSON
 * error body on every error. */
static apr_status_t error_json_filter(ap_filter_t *f, apr_bucket_brigade *bb)
{
    request_rec *r = f->r;
    apr_bucket *b = APR_BRIGADE_FIRST(bb);

    while (b != APR_BRIGADE_SENTINEL(bb)) {
        apr_bucket *next = APR_BUCKET_NEXT(b);
        if (!APR_BUCKET_IS_METADATA(b))
            apr_bucket_delete(b);
        b = next;
    }
    if (!f->ctx) {
        /* "413 Request Entity Too Large" -> "Request Entity Too Large" */
        const char *line = ap_get_status_line(r->status);
        const char *body;
        if (r->status == HTTP_UNAUTHORIZED || r->status == HTTP_FORBIDDEN)
            body = access_error_body(r);
        else
            body = ocireg_error_body1(
                r->pool, ocireg_error_for_status(r->status, body_kind(r)),
                line && strlen(line) > 4 ? line + 4 : NULL, NULL);
        const char *size = apr_table_get(r->notes, OCIREG_NOTE_BLOB_SIZE);
        f->ctx = f;
        /* Some error paths (the byterange filter's 416) drop the headers
         * set earlier; this one runs on all of them. */
        apr_table_setn(r->headers_out, "Docker-Distribution-API-Version",
                       OCIREG_API_VERSION);
        apr_table_setn(r->headers_out, "X-Content-Type-Options", "nosniff");
        if (r->status == HTTP_RANGE_NOT_SATISFIABLE && size)
            apr_table_setn(r->headers_out, "Content-Range",
                           apr_pstrcat(r->pool, "bytes */", size, NULL));
        ap_set_content_type(r, "application/json");
        apr_table_unset(r->headers_out, "Content-Length");
        APR_BRIGADE_INSERT_HEAD(bb,
                                apr_bucket_pool_create(body, strlen(body),
                                                       r->pool,
                                                       bb->bucket_alloc));
    }
    return ap_pass_brigade(f->next, bb);
}

/* Also for errors made while the request was read (an oversized or
 * malformed header), before post_read_request could mark it: the request
 * line was read, so the path is known. */
static void insert_error_filter(request_rec *r)
{
    request_rec *main = r;
    ocireg_server_conf *sc;
    while (main->prev)
        main = main->prev;
    if (apr_table_get(main->notes, NOTE_OURS)) {
        ap_add_output_filter("OCIREG_ERROR_JSON", NULL, r, r->connection);
        return;
    }
    sc = ap_get_module_config(r->server->module_config, &ocireg_module);
    if (sc && sc->registry_used && path_is_api(main->uri)) {
        apr_table_setn(main->notes, NOTE_OURS, "1");
        ap_add_output_filter("OCIREG_ERROR_JSON", NULL, r, r->connection);
    }
}

static void register_hooks(apr_pool_t *p)
{
    /* The expiry's lock is in place before the watchdog's thread starts. */
    static const char *const before_watchdog[] = {"mod_watchdog.c", NULL};
    ap_hook_pre_config(pre_config, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_check_config(check_config, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_post_config(post_config, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_child_init(child_init, NULL, before_watchdog, APR_HOOK_MIDDLE);
    ap_hook_post_read_request(post_read_request, NULL, NULL,
                              APR_HOOK_MIDDLE);
    ap_hook_translate_name(translate_name, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_map_to_storage(map_to_storage, NULL, NULL, APR_HOOK_FIRST);
    ap_hook_fixups(fixups, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_handler(handler, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_insert_error_filter(insert_error_filter, NULL, NULL,
                                APR_HOOK_MIDDLE);
    ap_register_output_filter("OCIREG_ERROR_JSON", error_json_filter, NULL,
                              AP_FTYPE_RESOURCE);
    ocireg_access_register(p);
    ocireg_token_register(p);
    ocireg_mirror_register(p);
}

AP_DECLARE_MODULE(ocireg) = {
    STANDARD20_MODULE_STUFF,
    ocireg_create_dir_conf,
    ocireg_merge_dir_conf,
    ocireg_create_server_conf,
    ocireg_merge_server_conf,
    ocireg_cmds,
    register_hooks,
    AP_MODULE_FLAG_NONE,
};
