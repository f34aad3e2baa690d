/* Abandoned uploads: a client that starts an upload and walks away must
 * not hold a session slot, a multipart upload or spooled bytes forever.
 * A watchdog (mod_watchdog, child singleton: one child of the server runs
 * it, in the background, never on a request's path) aborts sessions idle
 * longer than OCIRegUploadExpiry (OCIRegUploadEmptyExpiry for those that
 * never received a byte), and sweeps upload data that no session of this
 * host knows and that is older than OCIRegUploadExpiry. */
#include <string.h>
#include "httpd.h"
#include "http_config.h"
#include "http_log.h"
#include "mod_watchdog.h"
#include "apr_strings.h"
#include "apr_atomic.h"
#include "apr_thread_mutex.h"
#include "mod_ocireg.h"
#include "mod_ocireg_expiry.h"

APLOG_USE_MODULE(ocireg);

#define WATCHDOG_NAME "ocireg-expiry"
#define BATCH 32

static APR_OPTIONAL_FN_TYPE(ap_watchdog_get_instance) *wd_get_instance;
static apr_interval_time_t sweep_every = APR_USEC_PER_SEC;
static APR_OPTIONAL_FN_TYPE(ap_watchdog_register_callback) *wd_register;
static ocireg_table_fn table_of_process;

/* mod_watchdog joins its thread only from a cleanup of a pool a child
 * never destroys, so in a stopping child the watchdog may still run while
 * the child's pool, and with it the table's mutex handle and the store's
 * resources, is being destroyed. Everything the watchdog does here
 * therefore runs under run_lock, which outlives the child pool: the child
 * pool's first cleanup raises `stopping`, which the work in progress asks
 * between steps (a store's background preparation included, which can
 * take many requests), then takes run_lock to wait for that work to give
 * up. No work starts after it. */
static apr_thread_mutex_t *run_lock;
static volatile apr_uint32_t stopping;

static int child_stopping(void)
{
    return apr_atomic_read32(&stopping) != 0;
}

static apr_status_t stop_rounds(void *data)
{
    (void)data;
    apr_atomic_set32(&stopping, 1);
    apr_thread_mutex_lock(run_lock);
    apr_thread_mutex_unlock(run_lock);
    return APR_SUCCESS;
}

/* Runs before mod_watchdog's child_init (the hook's order says so), so
 * run_lock and its cleanup are in place before the watchdog's thread
 * starts. */
void ocireg_expiry_child_init(apr_pool_t *pchild, server_rec *s)
{
    if (apr_thread_mutex_create(&run_lock, APR_THREAD_MUTEX_DEFAULT,
                                s->process->pool)
        != APR_SUCCESS) {
        run_lock = NULL;
        return;
    }
    apr_pool_pre_cleanup_register(pchild, NULL, stop_rounds);
}

static ocireg_server_conf *store_by_id(server_rec *s, apr_uint32_t id)
{
    for (; s; s = s->next) {
        ocireg_server_conf *sc =
            ap_get_module_config(s->module_config, &ocireg_module);
        if (sc->store && sc->store->id == id)
            return sc;
    }
    return NULL;
}

/* The idle limit that applies to a session as it stands. */
static apr_time_t limit_for(const ocireg_upload_session *u, apr_time_t before,
                            apr_time_t empty_before)
{
    return u->offset == 0 && empty_before > before ? empty_before : before;
}

static int session_live(void *ctx, const char *uuid)
{
    return ocireg_uploads_has((ocireg_uploads *)ctx, uuid);
}

/* Whether the store's record of a session idle here says it is alive:
 * another host sharing the store may be carrying it on. */
static int alive_elsewhere(ocireg_server_conf *sc, apr_pool_t *p,
                           const ocireg_upload_session *idle,
                           apr_time_t before, apr_time_t empty_before)
{
    ocireg_store *st = sc->store;
    ocireg_upload_session latest;
    apr_uint64_t version;
    void *data;
    apr_size_t len;
    return st->ops->state_get(st, p, idle->uuid, 0, &version, &data, &len)
               == APR_SUCCESS
           && ocireg_session_decode(data, len, sc->record_key,
                                    sc->record_keylen, &latest)
                  == APR_SUCCESS
           && latest.touched >= limit_for(&latest, before, empty_before);
}

/* Ends one idle session taken by take_idle: removed from the table when
 * it is over. Returns whether it was; if not, it stays held, and the
 * caller releases it. */
static int expire_one(server_rec *s, ocireg_uploads *u,
                      const ocireg_upload_session *idle, apr_time_t before,
                      apr_time_t empty_before, apr_pool_t *p)
{
    ocireg_server_conf *sc = store_by_id(s, idle->store_id);
    apr_status_t rv = APR_SUCCESS;
    if (sc && alive_elsewhere(sc, p, idle, before, empty_before)) {
        /* Only this host's copy is idle: drop the copy. */
        ocireg_uploads_remove(u, idle->uuid);
        return 1;
    }
    if (sc) {
        /* The digest of what it holds: a blob the session completed
         * before a crash would be named by it. */
        char digest[80];
        ocireg_hash_digest(&idle->hash, digest);
        rv = sc->store->ops->upload_abort(sc->store, p, idle->uuid,
                                          (unsigned char *)idle->driver,
                                          idle->version, digest);
    }
    if (rv != APR_SUCCESS && rv != APR_ENOENT) {
        ap_log_error(APLOG_MARK, APLOG_WARNING, 0, s,
                     "OCIREG00030: could not abort idle upload %s: %s",
                     idle->uuid, ocireg_status_why(p, rv));
        return 0;
    }
    ocireg_uploads_remove(u, idle->uuid);
    ap_log_error(APLOG_MARK, APLOG_INFO, 0, s,
                 "OCIREG00031: expired idle upload %s of %s (%" APR_OFF_T_FMT
                 " bytes)",
                 idle->uuid, idle->name, idle->offset);
    return 1;
}

/* Every session a batch took is removed or released, whatever happens to
 * the others: one held and never released would answer its client 416
 * and keep its slot forever. Those whose abort failed (the backend is
 * away, or that one upload cannot be removed) stay held until the round
 * ends, so the round does not take them again, and are then released, to
 * be tried next round. A batch that removes nothing ends the round: with
 * the backend away, every abort would wait for its timeout. */
static void expire_sessions(server_rec *s, ocireg_uploads *u,
                            apr_time_t before, apr_time_t empty_before,
                            apr_pool_t *p)
{
    ocireg_upload_session batch[BATCH];
    apr_array_header_t *failed;
    apr_pool_t *rp, *bp;
    int n, i, removed;
    if (apr_pool_create(&rp, p) != APR_SUCCESS)
        return;
    if (apr_pool_create(&bp, rp) != APR_SUCCESS) {
        apr_pool_destroy(rp);
        return;
    }
    failed = apr_array_make(rp, BATCH, sizeof(const char *));
    do {
        n = ocireg_uploads_take_idle(u, before, empty_before, batch, BATCH);
        removed = 0;
        for (i = 0; i < n; i++) {
            if (expire_one(s, u, &batch[i], before, empty_before, bp))
                removed++;
            else
                APR_ARRAY_PUSH(failed, const char *) =
                    apr_pstrdup(rp, batch[i].uuid);
        }
        apr_pool_clear(bp);
    } while (n > 0 && removed > 0 && !child_stopping());
    for (i = 0; i < failed->nelts; i++)
        ocireg_uploads_release(u, NULL, APR_ARRAY_IDX(failed, i, const char *));
    apr_pool_destroy(rp);
}

/* The sweep lists everything under uploads/ of a store: one host of all
 * that share the store does it per period, whichever claims it first. */
static void sweep_stores(server_rec *s, ocireg_uploads *u, apr_time_t before,
                         apr_int64_t period, apr_pool_t *p)
{
    apr_hash_t *done = apr_hash_make(p);
    for (; s && !child_stopping(); s = s->next) {
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
            ap_log_error(APLOG_MARK, APLOG_WARNING, 0, s,
                         "OCIREG00032: sweeping abandoned upload data "
                         "failed: %s",
                         ocireg_status_why(p, rv));
        else if (swept)
            ap_log_error(APLOG_MARK, APLOG_INFO, 0, s,
                         "OCIREG00033: removed %d pieces of abandoned upload "
                         "data",
                         swept);
    }
}

/* Once, when the watchdog starts in its child: what the stores do in the
 * background rather than on a request's path. */
static void prepare_stores(server_rec *s, apr_pool_t *p)
{
    apr_hash_t *done = apr_hash_make(p);
    for (; s && !child_stopping(); s = s->next) {
        ocireg_server_conf *sc =
            ap_get_module_config(s->module_config, &ocireg_module);
        apr_status_t rv;
        if (!sc->store || !sc->store->ops->prepare
            || apr_hash_get(done, &sc->store->id, sizeof(sc->store->id)))
            continue;
        apr_hash_set(done, &sc->store->id, sizeof(sc->store->id), sc);
        rv = sc->store->ops->prepare(sc->store, p, child_stopping);
        if (rv != APR_SUCCESS && !child_stopping())
            ap_log_error(APLOG_MARK, APLOG_WARNING, 0, s,
                         "OCIREG00361: preparing store %08x in the "
                         "background failed (the first listing does it "
                         "instead): %s",
                         (unsigned)sc->store->id, ocireg_status_why(p, rv));
    }
}

static apr_status_t expiry_run(int state, void *data, apr_pool_t *p)
{
    server_rec *s = data;
    ocireg_uploads *u;
    apr_time_t now, before;
    static int prepared;
    if (state == AP_WATCHDOG_STATE_STOPPING || !run_lock)
        return APR_SUCCESS;
    apr_thread_mutex_lock(run_lock);
    if (!prepared && !child_stopping()) {
        prepared = 1;
        prepare_stores(s, p);
    }
    u = table_of_process ? table_of_process() : NULL;
    if (state == AP_WATCHDOG_STATE_RUNNING && !child_stopping() && u) {
        now = apr_time_now();
        before = now - ocireg_conf_upload_expiry;
        expire_sessions(s, u, before, now - ocireg_conf_upload_empty_expiry,
                        p);
        if (!child_stopping())
            sweep_stores(s, u, before, apr_time_now() / sweep_every, p);
    }
    apr_thread_mutex_unlock(run_lock);
    return APR_SUCCESS;
}

int ocireg_expiry_start(apr_pool_t *pconf, server_rec *s,
                        ocireg_table_fn table)
{
    ap_watchdog_t *wd;
    apr_interval_time_t every;
    apr_status_t rv;

    table_of_process = table;
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
         * most (or a minute), rarely enough to cost nothing; the shorter
         * expiry, of empty sessions, sets the pace. */
        every = ocireg_conf_upload_expiry;
        if (ocireg_conf_upload_empty_expiry < every)
            every = ocireg_conf_upload_empty_expiry;
        every /= 4;
        if (every > apr_time_from_sec(60))
            every = apr_time_from_sec(60);
        if (every < apr_time_from_sec(1))
            every = apr_time_from_sec(1);
        sweep_every = every;
        rv = wd_register(wd, every, s, expiry_run);
    }
    if (rv != APR_SUCCESS && rv != APR_EEXIST) {
        ap_log_error(APLOG_MARK, APLOG_CRIT, 0, s,
                     "OCIREG00035: cannot start the upload expiry watchdog: "
                     "%s",
                     ocireg_status_why(pconf, rv));
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    return OK;
}
