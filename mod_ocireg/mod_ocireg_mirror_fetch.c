/* Pull-through: what a read of a mirrored name does when the store does
 * not have the answer, or has a tag older than its rule's tag-ttl.
 *
 * Manifests are small (at most 4 MiB): fetched whole, verified, stored with
 * their tag and a mark (the fetch's digest, time and ETag), then answered.
 * Blobs stream: the upstream's bytes go to the client and, in the same
 * pass, into an upload writer of the store (S3: uniform parts), hashed on
 * the way; the blob is committed and linked only once its digest matched,
 * and the client's last bytes are held back until then, so a wrong or
 * broken transfer ends in a cut connection, never in a whole wrong body.
 *
 * One fetch per blob: a slot of the shared upload table named after the
 * digest says which process of this host fetches it (the others wait for
 * it and serve the stored copy), and a claim in the store says which host
 * does (a host that loses it streams from upstream without storing). */
#include <string.h>
#include <unistd.h>
#include "httpd.h"
#include "http_core.h"
#include "http_log.h"
#include "http_protocol.h"
#include "http_request.h"
#include "apr_strings.h"
#include "apr_buckets.h"
#include "apr_hash.h"
#include "apr_thread_mutex.h"
#include "mod_ocireg.h"
#include "ocireg_parse.h"
#include "ocireg_manifest.h"
#include "ocireg_mirror.h"
#include "ocireg_upstream.h"

APLOG_USE_MODULE(ocireg);

/* Upstream requests: a connection is made quickly or not at all; a
 * stream may pause while the client or the store is slow, but not for
 * longer than a minute. */
#define UPSTREAM_CONNECT_MS 10000
#define UPSTREAM_TIMEOUT_MS 60000
/* A process waiting for another's fetch of the same blob looks this
 * often, and at most this long, before it fetches itself. */
#define FILL_POLL apr_time_from_msec(100)
#define FILL_WAIT_MAX apr_time_from_sec(3600)
/* The fetching process tells its progress in its slot about this often;
 * a waiter that sees none for FILL_STALL (a first client that stopped
 * reading holds its fetch back) streams from upstream itself, without
 * storing, rather than wait for httpd's Timeout to drop that client. */
#define FILL_PROGRESS apr_time_from_sec(1)
#define FILL_STALL apr_time_from_sec(10)

static ocireg_http_pool *up_handles;
static ocireg_upstream_tokens *up_tokens;

/* Upstreams that timed out lately, per process. While every upstream of a
 * rule did within DOWN_MEMO, a stale cached tag is served without asking
 * again: an upstream that drops packets costs each request its timeout,
 * and a registry in such an outage would cost every pull that. One that
 * refuses connections or answers 5xx costs little to ask and is asked.
 * What is not cached still asks. */
#define DOWN_MEMO apr_time_from_sec(10)
static apr_thread_mutex_t *down_lock;
static apr_hash_t *down_since;           /* base URL -> apr_time_t * */
static apr_pool_t *down_pool;

void ocireg_mirror_child_init(apr_pool_t *pchild)
{
    if (ocireg_http_pool_create(pchild, &up_handles) != APR_SUCCESS)
        up_handles = NULL;
    if (ocireg_upstream_tokens_create(pchild, 256, &up_tokens)
        != APR_SUCCESS)
        up_tokens = NULL;
    down_pool = pchild;
    down_since = apr_hash_make(pchild);
    if (apr_thread_mutex_create(&down_lock, APR_THREAD_MUTEX_DEFAULT, pchild)
        != APR_SUCCESS)
        down_lock = NULL;
}

static void note_upstream(const char *base_url, int down)
{
    apr_time_t *since;
    if (!down_lock)
        return;
    apr_thread_mutex_lock(down_lock);
    since = apr_hash_get(down_since, base_url, APR_HASH_KEY_STRING);
    if (!since && down) {
        /* One entry per configured upstream: bounded by the config. */
        since = apr_pcalloc(down_pool, sizeof(*since));
        apr_hash_set(down_since, apr_pstrdup(down_pool, base_url),
                     APR_HASH_KEY_STRING, since);
    }
    if (since)
        *since = down ? apr_time_now() : 0;
    apr_thread_mutex_unlock(down_lock);
}

static int rule_recently_down(const ocireg_mirror_rule *rule)
{
    int i, down = 1;
    apr_time_t now = apr_time_now();
    if (!down_lock)
        return 0;
    apr_thread_mutex_lock(down_lock);
    for (i = 0; i < rule->upstreams->nelts && down; i++) {
        const apr_time_t *since = apr_hash_get(
            down_since,
            APR_ARRAY_IDX(rule->upstreams, i, ocireg_mirror_upstream)
                .base_url,
            APR_HASH_KEY_STRING);
        down = since && *since && now - *since < DOWN_MEMO;
    }
    apr_thread_mutex_unlock(down_lock);
    return down;
}

static ocireg_upstream *upstream_client(request_rec *r,
                                        const ocireg_mirror_rule *rule,
                                        const ocireg_mirror_upstream *up)
{
    ocireg_upstream_config cfg;
    ocireg_upstream *u;
    memset(&cfg, 0, sizeof(cfg));
    cfg.base_url = up->base_url;
    cfg.user = rule->credentials.username;
    cfg.password = rule->credentials.password;
    cfg.http.connect_timeout_ms = UPSTREAM_CONNECT_MS;
    cfg.http.timeout_ms = UPSTREAM_TIMEOUT_MS;
    cfg.retries = 1;
    if (ocireg_upstream_create(r->pool, &cfg, up_handles, up_tokens, &u)
        != APR_SUCCESS)
        return NULL;
    return u;
}

/* How an upstream's not giving what was asked is answered when nothing
 * cached can stand in: 404 when no upstream has it (APR_ENOENT); 503 while the upstream is unreachable or overloaded (worth a retry),
 * 502 when it answered something unusable (refused our credentials, a
 * wrong digest, a malformed answer). The code is the spec's for what the
 * client asked for and does not get (its list has none for a gateway);
 * the status and the message say why. */
static int upstream_failure(ocireg_req *q, apr_status_t rv,
                            ocireg_upstream_kind kind,
                            const ocireg_upstream_result *res)
{
    request_rec *r = q->r;
    ocireg_error_code code = kind == OCIREG_UP_MANIFEST
                                 ? OCIREG_E_MANIFEST_UNKNOWN
                                 : OCIREG_E_BLOB_UNKNOWN;
    int status = rv == OCIREG_UP_EUNAVAILABLE ? HTTP_SERVICE_UNAVAILABLE
                                              : HTTP_BAD_GATEWAY;
    if (rv == APR_ENOENT)
        return ocireg_respond_error(r, HTTP_NOT_FOUND, code, NULL,
                                    q->route.arg);
    ap_log_rerror(APLOG_MARK, APLOG_WARNING, 0, r,
                  "OCIREG00553: %s %s of %s: upstream %s failed and "
                  "nothing is cached: %s (%s)",
                  kind == OCIREG_UP_MANIFEST ? "manifest" : "blob",
                  q->route.arg, q->route.name,
                  res && res->url ? res->url : "-",
                  res && res->error ? res->error : "-",
                  ocireg_status_why(r->pool, rv));
    if (status == HTTP_SERVICE_UNAVAILABLE)
        apr_table_setn(r->err_headers_out, "Retry-After", "30");
    return ocireg_respond_error(
        r, status, code,
        status == HTTP_SERVICE_UNAVAILABLE
            ? "not cached, and the upstream registry is unavailable"
            : "not cached, and the upstream registry gave an unusable "
              "answer",
        q->route.arg);
}

/* --- manifests ----------------------------------------------------- */

static void mark_write(ocireg_req *q, const char *tag, const char *digest,
                       const char *etag)
{
    ocireg_store *st = q->store;
    ocireg_mirror_mark m;
    apr_status_t rv;
    if (!st->ops->mirror_mark_put)
        return;
    m.digest = digest;
    m.fetched = apr_time_now();
    m.etag = etag;
    rv = st->ops->mirror_mark_put(st, q->r->pool, q->route.name, tag,
                                  ocireg_mirror_mark_format(q->r->pool, &m));
    if (rv != APR_SUCCESS)
        ap_log_rerror(APLOG_MARK, APLOG_WARNING, 0, q->r,
                      "OCIREG00554: %s:%s: the time of its fetch could not "
                      "be kept (it is asked for upstream again at the next "
                      "pull): %s",
                      q->route.name, tag, ocireg_status_why(q->r->pool, rv));
}

typedef struct {
    const char *digest;
    const char *media_type;
    char *data;
    apr_size_t len;
} manifest_found;

static apr_status_t read_cached(ocireg_req *q, const char *digest,
                                int want_body, manifest_found *out)
{
    ocireg_store *st = q->store;
    out->digest = digest;
    return st->ops->manifest_read_linked(st, q->r->pool, q->route.name,
                                         digest, OCIREG_MANIFEST_MAX,
                                         want_body, &out->data, &out->len,
                                         &out->media_type);
}

/* Asks the rule's upstreams in order, with rq (its repo set for each),
 * until one answers. The answer of the last attempt, or when every one
 * failed the worst failure: APR_ENOENT only when no upstream failed
 * otherwise. `may_go_on(ctx)` (NULL: always) says whether a failed
 * attempt leaves room for the next: a blob whose bytes began to flow to
 * the client does not. */
static apr_status_t ask_upstreams(ocireg_req *q,
                                  const ocireg_mirror_rule *rule,
                                  ocireg_upstream_req *rq,
                                  ocireg_upstream_result *res,
                                  int (*may_go_on)(void *ctx), void *ctx)
{
    request_rec *r = q->r;
    apr_status_t rv = OCIREG_UP_EUNAVAILABLE, worst = APR_SUCCESS;
    int i;
    memset(res, 0, sizeof(*res));
    for (i = 0; i < rule->upstreams->nelts; i++) {
        const ocireg_mirror_upstream *up =
            &APR_ARRAY_IDX(rule->upstreams, i, ocireg_mirror_upstream);
        ocireg_upstream *u = upstream_client(r, rule, up);
        rq->repo =
            ocireg_mirror_upstream_name(r->pool, rule, up, q->route.name);
        if (!u || !rq->repo)
            continue;
        memset(res, 0, sizeof(*res));
        rv = ocireg_upstream_fetch(u, r->pool, rq, res);
        note_upstream(up->base_url,
                      rv == OCIREG_UP_EUNAVAILABLE && res->timed_out);
        if (rv == APR_SUCCESS)
            return rv;
        ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, r,
                      "OCIREG00555: %s %s of %s at %s: %s (%s)",
                      rq->kind == OCIREG_UP_MANIFEST ? "manifest" : "blob",
                      rq->reference, q->route.name,
                      res->url ? res->url : "-",
                      res->error ? res->error : "-",
                      ocireg_status_why(r->pool, rv));
        if (may_go_on && !may_go_on(ctx))
            return rv;
        if (worst == APR_SUCCESS || worst == APR_ENOENT)
            worst = rv;
    }
    return worst != APR_SUCCESS ? worst : rv;
}

static apr_status_t fetch_manifest(ocireg_req *q,
                                   const ocireg_mirror_rule *rule,
                                   const char *reference,
                                   const char *if_none_match,
                                   ocireg_upstream_result *res)
{
    ocireg_upstream_req rq;
    memset(&rq, 0, sizeof(rq));
    rq.kind = OCIREG_UP_MANIFEST;
    rq.reference = reference;
    rq.if_none_match = if_none_match;
    rq.max = OCIREG_MANIFEST_MAX;
    return ask_upstreams(q, rule, &rq, res, NULL, NULL);
}

/* Stores a fetched manifest as a push would (content, referrer entry,
 * tag), after checking it is what it claims. APR_EINVAL: unusable. */
static apr_status_t store_fetched(ocireg_req *q, const char *tag,
                                  const char *want_digest,
                                  const ocireg_upstream_result *res,
                                  manifest_found *out)
{
    request_rec *r = q->r;
    ocireg_store *st = q->store;
    ocireg_manifest_info info;
    const char *digest = ocireg_sha256_digest(r->pool, res->body,
                                              res->body_len), *msg = NULL;
    apr_status_t rv;
    if ((want_digest && strcmp(digest, want_digest) != 0)
        || (res->digest && ocireg_digest_parse(res->digest)
                               == OCIREG_DIGEST_SHA256
            && strcmp(res->digest, digest) != 0)) {
        ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r,
                      "OCIREG00556: manifest %s:%s from %s has digest %s, "
                      "not %s: not stored, not served",
                      q->route.name, tag ? tag : want_digest, res->url,
                      digest, want_digest ? want_digest : res->digest);
        return APR_EINVAL;
    }
    if (ocireg_manifest_analyze(r->pool, res->body, res->body_len,
                                res->content_type, digest, &info, &msg)
        != OCIREG_E_NONE) {
        ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r,
                      "OCIREG00557: manifest %s:%s from %s is not a "
                      "manifest this registry takes: %s",
                      q->route.name, tag ? tag : want_digest, res->url,
                      msg ? msg : "-");
        return APR_EINVAL;
    }
    rv = st->ops->manifest_put(st, r->pool, q->route.name, digest,
                               info.media_type, res->body, res->body_len);
    if (rv == APR_SUCCESS && info.subject)
        rv = st->ops->referrer_add(st, r->pool, q->route.name, info.subject,
                                   digest, info.referrer_descriptor);
    if (rv == APR_SUCCESS && tag)
        rv = st->ops->tag_set(st, r->pool, q->route.name, tag, digest);
    if (rv == APR_SUCCESS && tag)
        mark_write(q, tag, digest, res->etag);
    if (rv != APR_SUCCESS)
        /* Served all the same: the bytes are verified; the next pull
         * fetches again. */
        ap_log_rerror(APLOG_MARK, APLOG_WARNING, 0, r,
                      "OCIREG00558: manifest %s@%s fetched but not "
                      "stored: %s",
                      q->route.name, digest, ocireg_status_why(r->pool, rv));
    else
        ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r,
                      "OCIREG00551: manifest %s%s%s@%s fetched from %s and "
                      "stored",
                      q->route.name, tag ? ":" : "", tag ? tag : "", digest,
                      res->url);
    out->digest = digest;
    out->media_type = info.media_type;
    out->data = res->body;
    out->len = res->body_len;
    return APR_SUCCESS;
}

/* The stale or unconfirmed copy, served while the upstream cannot say. */
static int serve_cached_instead(ocireg_req *q, apr_status_t why,
                                const ocireg_upstream_result *res,
                                const char *digest, manifest_found *out)
{
    ap_log_rerror(APLOG_MARK, APLOG_WARNING, 0, q->r,
                  "OCIREG00552: %s:%s: upstream %s failed (%s, %s); "
                  "serving the cached %s",
                  q->route.name, q->route.arg, res->url ? res->url : "-",
                  res->error ? res->error : "-",
                  ocireg_status_why(q->r->pool, why), digest);
    (void)out;
    return DECLINED;
}

int ocireg_mirror_manifest(ocireg_req *q, const ocireg_mirror_rule *rule,
                           int is_tag, const char **digest,
                           const char **media_type, char **data,
                           apr_size_t *len)
{
    request_rec *r = q->r;
    ocireg_store *st = q->store;
    const char *ref = q->route.arg, *cached = NULL, *inm = NULL;
    int want_body = !r->header_only, fresh = 0;
    ocireg_upstream_result res;
    manifest_found found;
    ocireg_mirror_mark mark;
    char *text;
    apr_status_t rv;

    memset(&found, 0, sizeof(found));
    memset(&mark, 0, sizeof(mark));
    if (!is_tag) {
        /* Content by digest never changes: a copy is the answer. */
        rv = read_cached(q, ref, want_body, &found);
        if (rv != APR_ENOENT && rv != APR_SUCCESS)
            return ocireg_store_failure(r, rv, "manifest lookup");
    }
    else {
        rv = st->ops->mirror_mark_get
                 ? st->ops->mirror_mark_get(st, r->pool, q->route.name, ref,
                                            &text)
                 : APR_ENOENT;
        if (rv == APR_SUCCESS && ocireg_mirror_mark_parse(r->pool, text,
                                                          &mark)) {
            cached = mark.digest;
            fresh = ocireg_mirror_tag_fresh(rule, mark.fetched,
                                            apr_time_now());
        }
        else if (rv != APR_SUCCESS && rv != APR_ENOENT)
            return ocireg_store_failure(r, rv, "mirror mark lookup");
        else {
            /* No fetch of it known: a tag pushed here (a rule with
             * `local`) is served as it is; any other is a stand-in for
             * when the upstream is down. */
            const char *local;
            rv = st->ops->tag_get(st, r->pool, q->route.name, ref, &local);
            if (rv == APR_SUCCESS) {
                cached = local;
                fresh = rule->local;
            }
            else if (rv != APR_ENOENT)
                return ocireg_store_failure(r, rv, "tag lookup");
        }
        if (cached && fresh) {
            rv = read_cached(q, cached, want_body, &found);
            if (rv != APR_SUCCESS && rv != APR_ENOENT)
                return ocireg_store_failure(r, rv, "manifest lookup");
            if (rv == APR_ENOENT)
                cached = NULL;
        }
        else
            rv = APR_ENOENT;
        /* A re-check asks whether the upstream's tag still names what we
         * have: by its ETag, else by the digest (distribution's ETag). */
        if (cached && mark.digest)
            inm = ocireg_mirror_if_none_match(r->pool, &mark);
    }
    if (rv == APR_SUCCESS)
        goto answer;

    if (cached && rule_recently_down(rule)) {
        memset(&res, 0, sizeof(res));
        res.error = "timed out within the last seconds";
        rv = OCIREG_UP_EUNAVAILABLE;
    }
    else
        rv = fetch_manifest(q, rule, ref, inm, &res);
    if (rv == APR_SUCCESS && res.not_modified && cached) {
        rv = read_cached(q, cached, want_body, &found);
        if (rv == APR_SUCCESS) {
            mark_write(q, ref, cached, mark.etag);
            goto answer;
        }
        /* The copy went meanwhile: fetch it whole. */
        rv = fetch_manifest(q, rule, ref, NULL, &res);
    }
    if (rv == APR_SUCCESS && !res.not_modified) {
        rv = store_fetched(q, is_tag ? ref : NULL, is_tag ? NULL : ref, &res,
                           &found);
        if (rv == APR_SUCCESS)
            goto answer;
        return upstream_failure(q, OCIREG_UP_EINVALID, OCIREG_UP_MANIFEST,
                                &res);
    }
    if (rv == APR_SUCCESS)
        rv = OCIREG_UP_EINVALID; /* 304 to a request that named nothing */
    /* Gone upstream is gone: the cache stands in for a failing upstream
     * only. */
    if (rv != APR_ENOENT && cached
        && read_cached(q, cached, want_body, &found) == APR_SUCCESS) {
        serve_cached_instead(q, rv, &res, cached, &found);
        goto answer;
    }
    return upstream_failure(q, rv, OCIREG_UP_MANIFEST, &res);

answer:
    *digest = found.digest;
    *media_type = found.media_type;
    *data = found.data;
    *len = found.len;
    return DECLINED;
}

void ocireg_mirror_tag_pushed(ocireg_req *q, const char *tag)
{
    ocireg_store *st = q->store;
    /* A tag pushed here is no longer the upstream's: no re-check may
     * replace it. */
    if (st->ops->mirror_mark_delete)
        st->ops->mirror_mark_delete(st, q->r->pool, q->route.name, tag);
}

/* --- blobs --------------------------------------------------------- */

typedef struct {
    ocireg_req *q;
    const char *digest;
    ocireg_upstream_result *res;
    /* the client: its last piece waits in `out` for the digest */
    int started;                 /* headers decided, bytes may flow */
    int client_gone;
    ocireg_gather out;
    /* the store; w NULL: not storing */
    ocireg_upload_writer *w;
    apr_status_t store_rv;
    ocireg_hash_state hash;
    apr_off_t total;
    /* the claim among hosts, renewed while the fetch goes on */
    ocireg_lock_owner *claim;
    apr_time_t renewed;
    /* this host's slot, where waiters see the fetch move on */
    ocireg_upload_session *slot;
    apr_time_t told;
} blob_fill;

static void start_client(blob_fill *f)
{
    ocireg_blob_headers(f->q->r, f->digest, f->res->content_length);
    f->started = 1;
}

static apr_status_t fill_sink(void *ctx, const char *buf, apr_size_t n)
{
    blob_fill *f = ctx;
    ocireg_store *st = f->q->store;
    if (!f->started)
        start_client(f);
    if (f->res->content_length >= 0
        && f->total + (apr_off_t)n > f->res->content_length)
        return APR_EGENERAL; /* more than announced: not this blob */
    ocireg_hash_update(&f->hash, buf, n);
    f->total += (apr_off_t)n;
    if (f->w && f->store_rv == APR_SUCCESS)
        f->store_rv = st->ops->upload_write(f->w, buf, n);
    if (f->slot && apr_time_now() - f->told > FILL_PROGRESS) {
        /* The slot's offset and hash stay those of an empty upload (what
         * the expiry would abort); its time says bytes flow. */
        f->told = apr_time_now();
        f->slot->touched = f->told;
        ocireg_uploads_update(f->q->uploads, f->slot);
    }
    if (f->claim && st->ops->fill_claim
        && apr_time_now() - f->renewed > ocireg_conf_upload_lease / 3) {
        f->renewed = apr_time_now();
        f->claim->expires = f->renewed + ocireg_conf_upload_lease;
        st->ops->fill_claim(st, f->q->r->pool, f->digest, f->claim);
    }
    /* The store still gets the whole blob when the client goes: others
     * will want it. */
    if (!f->client_gone && ocireg_gather_add(&f->out, buf, n) != APR_SUCCESS)
        f->client_gone = 1;
    if (f->client_gone && (!f->w || f->store_rv != APR_SUCCESS))
        return APR_ECONNABORTED; /* nobody wants the rest */
    return APR_SUCCESS;
}

/* Whether the client has had nothing yet, so that the failure can still
 * be answered with a status (the headers set for the blob go). */
static int nothing_sent(blob_fill *f)
{
    if (f->out.passed)
        return 0;
    ocireg_blob_headers_unset(f->q->r);
    return 1;
}

static void cut_client(blob_fill *f, const char *why)
{
    request_rec *r = f->q->r;
    ap_log_rerror(APLOG_MARK, APLOG_WARNING, 0, r,
                  "OCIREG00559: blob %s of %s from %s: %s; the client's "
                  "connection is cut after %" APR_OFF_T_FMT " bytes and "
                  "nothing is stored",
                  f->digest, f->q->route.name,
                  f->res->url ? f->res->url : "-", why, f->total);
    r->connection->keepalive = AP_CONN_CLOSE;
    r->connection->aborted = 1;
}

static int nothing_started(void *ctx)
{
    return !((blob_fill *)ctx)->started;
}

/* One pass of a blob from the rule's upstreams to the client, and into
 * the store when `uuid` names an upload made for it. Returns the
 * request's answer. */
static int stream_blob(ocireg_req *q, const ocireg_mirror_rule *rule,
                       const char *digest, const char *uuid,
                       ocireg_upload_session *s, ocireg_lock_owner *claim)
{
    request_rec *r = q->r;
    ocireg_store *st = q->store;
    ocireg_upstream_result res;
    ocireg_upstream_req rq;
    apr_status_t rv;
    blob_fill f;
    char actual[72];

    memset(&f, 0, sizeof(f));
    memset(&res, 0, sizeof(res));
    f.q = q;
    f.digest = digest;
    f.res = &res;
    ocireg_gather_init(&f.out, r);
    f.claim = claim;
    f.renewed = f.told = apr_time_now();
    f.slot = uuid ? s : NULL;
    ocireg_hash_init(&f.hash);
    if (uuid) {
        f.store_rv = st->ops->upload_open(st, r->pool, uuid, s->driver, 0, 0,
                                          -1, NULL, &f.w);
        if (f.store_rv != APR_SUCCESS)
            f.w = NULL;
    }
    memset(&rq, 0, sizeof(rq));
    rq.kind = OCIREG_UP_BLOB;
    rq.reference = digest;
    rq.sink = fill_sink;
    rq.sink_ctx = &f;
    rv = ask_upstreams(q, rule, &rq, &res, nothing_started, &f);
    if (rv == APR_SUCCESS && res.content_length >= 0
        && f.total != res.content_length)
        rv = OCIREG_UP_ETRUNCATED;
    if (rv == APR_SUCCESS) {
        ocireg_hash_digest(&f.hash, actual);
        if (strcmp(actual, digest) != 0) {
            if (f.w)
                st->ops->upload_abort(st, r->pool, uuid, s->driver, 0, NULL);
            res.error = apr_pstrcat(r->pool, "the bytes have digest ",
                                    actual, NULL);
            if (nothing_sent(&f))
                return upstream_failure(q, OCIREG_UP_EINVALID,
                                        OCIREG_UP_BLOB, &res);
            cut_client(&f, res.error);
            return OK;
        }
    }
    if (rv != APR_SUCCESS) {
        if (f.w)
            st->ops->upload_abort(st, r->pool, uuid, s->driver, 0, NULL);
        if (!f.started || nothing_sent(&f))
            return upstream_failure(q, rv, OCIREG_UP_BLOB, &res);
        cut_client(&f, apr_pstrcat(r->pool, res.error ? res.error
                                                      : "the transfer failed",
                                   " (", ocireg_status_why(r->pool, rv), ")",
                                   NULL));
        return OK;
    }
    if (!f.started)
        start_client(&f); /* an empty blob */
    /* Verified: stored and linked first, then the client's last bytes. */
    if (f.w) {
        ocireg_blob_ref ref;
        if (f.store_rv == APR_SUCCESS)
            f.store_rv = st->ops->upload_close(f.w, s->driver);
        if (f.store_rv == APR_SUCCESS)
            f.store_rv = st->ops->upload_commit(st, r->pool, uuid, s->driver,
                                                0, f.w, digest, f.total,
                                                &ref, q->route.name);
        if (f.store_rv == APR_SUCCESS) {
            ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r,
                          "OCIREG00560: blob %s (%" APR_OFF_T_FMT " bytes) "
                          "of %s fetched from %s and stored",
                          digest, f.total, q->route.name, res.url);
            st->ops->upload_cleanup(st, r->pool, uuid, s->driver, 0);
        }
        else {
            ap_log_rerror(APLOG_MARK, APLOG_WARNING, 0, r,
                          "OCIREG00561: blob %s of %s served but not "
                          "stored: %s",
                          digest, q->route.name,
                          ocireg_status_why(r->pool, f.store_rv));
            st->ops->upload_abort(st, r->pool, uuid, s->driver, 0, NULL);
        }
    }
    if (!f.client_gone)
        ocireg_gather_end(&f.out);
    return OK;
}

/* Asks the rule's upstreams in order whether they have the blob (HEAD). */
static apr_status_t upstream_has_blob(ocireg_req *q,
                                      const ocireg_mirror_rule *rule,
                                      const char *digest,
                                      ocireg_upstream_result *res)
{
    ocireg_upstream_req rq;
    memset(&rq, 0, sizeof(rq));
    rq.kind = OCIREG_UP_BLOB;
    rq.head = 1;
    rq.reference = digest;
    return ask_upstreams(q, rule, &rq, res, NULL, NULL);
}

/* A blob HEAD that missed: the upstream's answer, nothing stored. */
static int head_blob(ocireg_req *q, const ocireg_mirror_rule *rule,
                     const char *digest)
{
    request_rec *r = q->r;
    ocireg_upstream_result res;
    apr_status_t rv = upstream_has_blob(q, rule, digest, &res);
    if (rv != APR_SUCCESS)
        return upstream_failure(q, rv, OCIREG_UP_BLOB, &res);
    apr_table_setn(r->headers_out, "Docker-Content-Digest", digest);
    apr_table_setn(r->headers_out, "ETag",
                   apr_pstrcat(r->pool, "\"", digest, "\"", NULL));
    ap_set_content_type(r, "application/octet-stream");
    if (res.content_length >= 0)
        ap_set_content_length(r, res.content_length);
    return OK;
}

/* The store has the blob, but not under this name. Its bytes may be
 * anyone's (a private repository's layer, a layer of an upstream
 * repository only some clients may pull here): they become readable under
 * this name only once the upstream says this name has them (one HEAD, no
 * transfer), never on a digest alone. Returns DECLINED once linked, or
 * the answer. */
static int link_stored(ocireg_req *q, const ocireg_mirror_rule *rule,
                       const char *digest)
{
    request_rec *r = q->r;
    ocireg_store *st = q->store;
    ocireg_upstream_result res;
    apr_status_t rv = upstream_has_blob(q, rule, digest, &res);
    if (rv != APR_SUCCESS)
        return upstream_failure(q, rv, OCIREG_UP_BLOB, &res);
    rv = st->ops->blob_link(st, r->pool, q->route.name, digest, NULL);
    if (rv != APR_SUCCESS)
        return ocireg_store_failure(r, rv, "linking a cached blob");
    return DECLINED;
}

/* Takes this host's slot for fetching `digest`: APR_SUCCESS (held),
 * APR_EEXIST while another process has it, or a failure. */
static apr_status_t take_fill_slot(ocireg_req *q, const char *uuid,
                                   ocireg_upload_session *s)
{
    apr_status_t rv;
    memset(s, 0, sizeof(*s));
    apr_cpystrn(s->uuid, uuid, sizeof(s->uuid));
    apr_cpystrn(s->name, q->route.name, sizeof(s->name));
    s->store_id = q->store->id;
    s->created = s->touched = apr_time_now();
    ocireg_hash_init(&s->hash);
    rv = ocireg_uploads_add(q->uploads, s);
    if (rv == APR_SUCCESS)
        rv = ocireg_uploads_acquire(q->uploads, uuid, s);
    else if (rv == APR_EEXIST
             && ocireg_uploads_acquire(q->uploads, uuid, s) == APR_SUCCESS)
        /* Left by a process that died: ours now. */
        rv = APR_SUCCESS;
    if (rv == APR_SUCCESS)
        q->held_slot = 1;
    return rv;
}

static void drop_fill_slot(ocireg_req *q, const char *uuid)
{
    ocireg_uploads_remove(q->uploads, uuid);
    q->held_slot = 0;
}

/* Waits while the slot `uuid` is there and its holder's progress (the
 * time bytes last flowed) moves. 1 when the slot is gone (the
 * fetch ended: look again), 0 when it stalled or took too long. */
static int fill_moves_on(ocireg_req *q, const char *uuid,
                         apr_time_t waited_since)
{
    ocireg_upload_session seen;
    apr_time_t touched = -1, moved = apr_time_now();
    for (;;) {
        apr_time_t now = apr_time_now();
        if (ocireg_uploads_get(q->uploads, uuid, &seen) != APR_SUCCESS)
            return 1;
        if (seen.touched != touched) {
            touched = seen.touched;
            moved = now;
        }
        if (now - moved > FILL_STALL || now - waited_since > FILL_WAIT_MAX)
            return 0;
        apr_sleep(FILL_POLL);
    }
}

int ocireg_mirror_blob(ocireg_req *q, const ocireg_mirror_rule *rule,
                       const char *digest)
{
    request_rec *r = q->r;
    ocireg_store *st = q->store;
    const char *uuid = ocireg_mirror_fill_id(r->pool, digest);
    apr_time_t waited_since = apr_time_now();
    ocireg_upload_session s;
    ocireg_lock_owner me;
    apr_off_t size;
    apr_status_t rv;
    int status, waited = 0;

    for (;;) {
        /* Fetched here by the process waited for. */
        if (waited
            && st->ops->blob_linked(st, r->pool, q->route.name, digest)
                   == APR_SUCCESS)
            return DECLINED;
        /* Bytes the store has under another name only need a link. */
        rv = st->ops->blob_stat(st, r->pool, digest, &size);
        if (rv == APR_SUCCESS)
            return link_stored(q, rule, digest);
        if (rv != APR_ENOENT)
            return ocireg_store_failure(r, rv, "blob lookup");
        if (r->header_only)
            return head_blob(q, rule, digest);
        rv = take_fill_slot(q, uuid, &s);
        if (rv != APR_EEXIST)
            break;
        /* Another process of this host fetches it: wait for its end
         * while it moves on. */
        waited = 1;
        if (!fill_moves_on(q, uuid, waited_since)) {
            rv = APR_TIMEUP;
            break;
        }
    }
    if (rv != APR_SUCCESS) {
        /* No slot (the table is full, or waited too long): the client is
         * served straight from upstream. */
        ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r,
                      "OCIREG00562: blob %s of %s streamed from upstream "
                      "without storing: %s",
                      digest, q->route.name, ocireg_status_why(r->pool, rv));
        return stream_blob(q, rule, digest, NULL, NULL, NULL);
    }
    ocireg_lock_owner_of(q, &me);
    rv = st->ops->fill_claim ? st->ops->fill_claim(st, r->pool, digest, &me)
                             : APR_SUCCESS;
    if (rv != APR_SUCCESS) {
        drop_fill_slot(q, uuid);
        ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r,
                      "OCIREG00563: blob %s of %s streamed from upstream "
                      "without storing: %s",
                      digest, q->route.name,
                      rv == APR_EBUSY ? "another host is fetching it"
                                      : ocireg_status_why(r->pool, rv));
        return stream_blob(q, rule, digest, NULL, NULL, NULL);
    }
    /* Fetched meanwhile by a process that let go before we looked. */
    if (st->ops->blob_stat(st, r->pool, digest, &size) == APR_SUCCESS) {
        if (st->ops->fill_release)
            st->ops->fill_release(st, r->pool, digest, &me);
        drop_fill_slot(q, uuid);
        return link_stored(q, rule, digest);
    }
    /* The slot keeps no driver state: should this process die mid-fetch,
     * the expiry aborts whatever the store holds under the slot's id. */
    rv = st->ops->upload_create(st, r->pool, uuid, s.driver);
    if (rv == APR_EEXIST) {
        /* Left by a fetch that died half-way. */
        st->ops->upload_abort(st, r->pool, uuid, s.driver, 0, NULL);
        rv = st->ops->upload_create(st, r->pool, uuid, s.driver);
    }
    if (rv != APR_SUCCESS) {
        if (st->ops->fill_release)
            st->ops->fill_release(st, r->pool, digest, &me);
        drop_fill_slot(q, uuid);
        ap_log_rerror(APLOG_MARK, APLOG_WARNING, 0, r,
                      "OCIREG00564: blob %s of %s streamed from upstream "
                      "without storing: the store did not start an upload "
                      "(%s)",
                      digest, q->route.name, ocireg_status_why(r->pool, rv));
        return stream_blob(q, rule, digest, NULL, NULL, NULL);
    }
    status = stream_blob(q, rule, digest, uuid, &s, &me);
    if (st->ops->fill_release)
        st->ops->fill_release(st, r->pool, digest, &me);
    drop_fill_slot(q, uuid);
    return status;
}
