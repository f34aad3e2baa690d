/* Abandoned uploads: a client that starts an upload and walks away must
 * not hold a session slot, a multipart upload or spooled bytes forever.
 * A watchdog (mod_watchdog, child singleton: one child of the server runs
 * it, in the background, never on a request's path) aborts sessions idle
 * longer than OCIRegUploadExpiry, and sweeps upload data that no session
 * of this host knows and that is older than that. */
#include <string.h>
#include "httpd.h"
#include "http_config.h"
#include "http_log.h"
#include "mod_watchdog.h"
#include "apr_strings.h"
#include "mod_ocireg.h"

APLOG_USE_MODULE(ocireg);

#define WATCHDOG_NAME "ocireg-expiry"
#define BATCH 32

static APR_OPTIONAL_FN_TYPE(ap_watchdog_get_instance) *wd_get_instance;
static apr_interval_time_t sweep_every = APR_USEC_PER_SEC;
static APR_OPTIONAL_FN_TYPE(ap_watchdog_register_callback) *wd_register;

static ocireg_store *store_by_id(server_rec *s, apr_uint32_t id)
{
    for (; s; s = s->next) {
        ocireg_server_conf *sc =
            ap_get_module_config(s->module_config, &ocireg_module);
        if (sc->store && sc->store->id == id)
            return sc->store;
    }
    return NULL;
}

static int session_live(void *ctx, const char *uuid)
{
    return ocireg_uploads_has((ocireg_uploads *)ctx, uuid);
}

/* Whether the store's record of a session idle here says it is alive:
 * another host sharing the store may be carrying it on. */
static int alive_elsewhere(ocireg_store *st, apr_pool_t *p,
                           const ocireg_upload_session *idle,
                           apr_time_t before)
{
    ocireg_upload_session latest;
    apr_uint64_t version;
    void *data;
    apr_size_t len;
    return st->ops->state_get(st, p, idle->uuid, &version, &data, &len)
               == APR_SUCCESS
           && ocireg_session_decode(data, len, &latest) == APR_SUCCESS
           && latest.touched >= before;
}

static void expire_sessions(server_rec *s, ocireg_uploads *u, apr_time_t before,
                            apr_pool_t *p)
{
    ocireg_upload_session batch[BATCH];
    int n, i;
    while ((n = ocireg_uploads_take_idle(u, before, batch, BATCH)) > 0) {
        for (i = 0; i < n; i++) {
            ocireg_store *st = store_by_id(s, batch[i].store_id);
            apr_status_t rv = APR_SUCCESS;
            if (st && alive_elsewhere(st, p, &batch[i], before)) {
                /* Only this host's copy is idle: drop the copy. */
                ocireg_uploads_remove(u, batch[i].uuid);
                continue;
            }
            if (st)
                rv = st->ops->upload_abort(st, p, batch[i].uuid,
                                           batch[i].driver);
            if (rv != APR_SUCCESS && rv != APR_ENOENT) {
                /* The backend is away: try again next round. */
                ocireg_uploads_release(u, NULL, batch[i].uuid);
                ap_log_error(APLOG_MARK, APLOG_WARNING, rv, s,
                             "OCIREG00030: could not abort idle upload %s",
                             batch[i].uuid);
                return;
            }
            ocireg_uploads_remove(u, batch[i].uuid);
            ap_log_error(APLOG_MARK, APLOG_INFO, 0, s,
                         "OCIREG00031: expired idle upload %s of %s (%"
                         APR_OFF_T_FMT " bytes)",
                         batch[i].uuid, batch[i].name, batch[i].offset);
        }
    }
}

/* The sweep lists everything under uploads/ of a store: one host of all
 * that share the store does it per period, whichever claims it first. */
static void sweep_stores(server_rec *s, ocireg_uploads *u, apr_time_t before,
                         apr_int64_t period, apr_pool_t *p)
{
    apr_hash_t *done = apr_hash_make(p);
    for (; s; s = s->next) {
        ocireg_server_conf *sc =
            ap_get_module_config(s->module_config, &ocireg_module);
        int swept = 0;
        apr_status_t rv;
        if (!sc->store
            || apr_hash_get(done, &sc->store->id, sizeof(sc->store->id)))
            continue;
        apr_hash_set(done, &sc->store->id, sizeof(sc->store->id), sc);
        rv = sc->store->ops->claim_period(sc->store, p, "sweep", period);
        if (rv == APR_EEXIST)
            continue; /* another host's turn */
        if (rv == APR_SUCCESS) {
            ap_log_error(APLOG_MARK, APLOG_DEBUG, 0, s,
                         "OCIREG00036: sweeping store %08x, period %"
                         APR_INT64_T_FMT,
                         (unsigned)sc->store->id, period);
            rv = sc->store->ops->upload_sweep(sc->store, p, before,
                                              session_live, u, &swept);
        }
        if (rv != APR_SUCCESS)
            ap_log_error(APLOG_MARK, APLOG_WARNING, rv, s,
                         "OCIREG00032: sweeping abandoned upload data failed");
        else if (swept)
            ap_log_error(APLOG_MARK, APLOG_INFO, 0, s,
                         "OCIREG00033: removed %d pieces of abandoned upload "
                         "data",
                         swept);
    }
}

static apr_status_t expiry_run(int state, void *data, apr_pool_t *p)
{
    server_rec *s = data;
    ocireg_uploads *u = ocireg_upload_table();
    apr_time_t before;
    if (state != AP_WATCHDOG_STATE_RUNNING || !u)
        return APR_SUCCESS;
    before = apr_time_now() - ocireg_conf_upload_expiry;
    expire_sessions(s, u, before, p);
    sweep_stores(s, u, before, apr_time_now() / sweep_every, p);
    return APR_SUCCESS;
}

int ocireg_expiry_start(apr_pool_t *pconf, server_rec *s)
{
    ap_watchdog_t *wd;
    apr_interval_time_t every;
    apr_status_t rv;

    wd_get_instance = APR_RETRIEVE_OPTIONAL_FN(ap_watchdog_get_instance);
    wd_register = APR_RETRIEVE_OPTIONAL_FN(ap_watchdog_register_callback);
    if (!wd_get_instance || !wd_register) {
        ap_log_error(APLOG_MARK, APLOG_WARNING, 0, s,
                     "OCIREG00034: mod_watchdog is not loaded: abandoned "
                     "uploads are not expired");
        return OK;
    }
    rv = wd_get_instance(&wd, WATCHDOG_NAME, 0, 1, pconf);
    if (rv == APR_SUCCESS) {
        /* Often enough that an upload outlives its expiry by a quarter at
         * most, rarely enough to cost nothing. */
        every = ocireg_conf_upload_expiry / 4;
        if (every > apr_time_from_sec(60))
            every = apr_time_from_sec(60);
        if (every < apr_time_from_sec(1))
            every = apr_time_from_sec(1);
        sweep_every = every;
        rv = wd_register(wd, every, s, expiry_run);
    }
    if (rv != APR_SUCCESS && rv != APR_EEXIST) {
        ap_log_error(APLOG_MARK, APLOG_CRIT, rv, s,
                     "OCIREG00035: cannot start the upload expiry watchdog");
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    return OK;
}
