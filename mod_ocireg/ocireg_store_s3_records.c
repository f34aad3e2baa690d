/* The S3 store: session records, locks and sweep claims. */
#include <string.h>
#include <apr_strings.h>
#include <apr_base64.h>
#include "ocireg_store_s3_int.h"

/* Records and locks carry zero-padded versions, so that a listing sorts
 * them. */
const char *s3_state_key(ocireg_store *s, apr_pool_t *p, const char *uuid,
                             apr_uint64_t version)
{
    return key(s, p, "uploads/", uuid,
               apr_psprintf(p, "/state.%020" APR_UINT64_T_FMT, version));
}

static const char *lock_key(ocireg_store *s, apr_pool_t *p, const char *uuid,
                            apr_uint64_t version, int attempt)
{
    return key(s, p, "uploads/", uuid,
               apr_psprintf(p, "/lock.%020" APR_UINT64_T_FMT ".%d", version,
                            attempt));
}

/* The version of the session's latest record: 0 and APR_ENOENT when it
 * has none. */
apr_status_t s3_latest_state(ocireg_store *s, apr_pool_t *p,
                                 const char *uuid, apr_uint64_t *version)
{
    apr_array_header_t *keys;
    apr_status_t rv = ocireg_s3_list(S3(s)->s3, p,
                                     key(s, p, "uploads/", uuid, "/state."),
                                     NULL, &keys);
    int i;
    *version = 0;
    for (i = 0; rv == APR_SUCCESS && i < keys->nelts; i++) {
        const char *v = APR_ARRAY_IDX(keys, i, const char *);
        char *end;
        apr_uint64_t n = (apr_uint64_t)apr_strtoi64(v, &end, 10);
        if (*end == '\0' && n > *version)
            *version = n;
    }
    if (rv == APR_SUCCESS && *version == 0)
        rv = APR_ENOENT;
    return rv;
}

static apr_status_t new_token(char *token, apr_size_t size)
{
    static const char hex[] = "0123456789abcdef";
    unsigned char r[16];
    apr_size_t i;
    apr_status_t rv = apr_generate_random_bytes(r, sizeof(r));
    if (rv != APR_SUCCESS || size < sizeof(r) * 2 + 1)
        return rv != APR_SUCCESS ? rv : APR_EINVAL;
    for (i = 0; i < sizeof(r); i++) {
        token[2 * i] = hex[r[i] >> 4];
        token[2 * i + 1] = hex[r[i] & 15];
    }
    token[sizeof(r) * 2] = '\0';
    return APR_SUCCESS;
}

/* After a 412: whether the object is our own earlier attempt. */
static apr_status_t ours_or_theirs(ocireg_store *s, apr_pool_t *p,
                                   const char *k, const char *token)
{
    ocireg_s3_result res;
    const char *theirs;
    /* The client retries a PUT whose answer it lost; the retry then meets
     * the object its first attempt created. */
    apr_status_t rv = ocireg_s3_head(S3(s)->s3, p, k, &res);
    if (rv == APR_ENOENT)
        return APR_EEXIST;   /* there, and already replaced */
    if (rv != APR_SUCCESS)
        return rv;
    theirs = apr_table_get(res.meta, META_TOKEN);
    return theirs && strcmp(theirs, token) == 0 ? APR_SUCCESS : APR_EEXIST;
}

apr_table_t *s3_create_only_meta(apr_pool_t *p, const apr_table_t *meta)
{
    char token[33];
    apr_table_t *m = meta ? apr_table_copy(p, meta) : apr_table_make(p, 1);
    if (new_token(token, sizeof(token)) == APR_SUCCESS)
        apr_table_set(m, META_TOKEN, token);
    return m;
}

apr_status_t s3_created_by_us(ocireg_store *s, apr_pool_t *p, const char *k,
                              const apr_table_t *meta)
{
    const char *token = apr_table_get(meta, META_TOKEN);
    return token ? ours_or_theirs(s, p, k, token) : APR_EEXIST;
}

apr_status_t s3_create_only(ocireg_store *s, apr_pool_t *p, const char *k,
                            const void *data, apr_size_t len,
                            const apr_table_t *meta)
{
    char token[33];
    apr_table_t *m = meta ? apr_table_copy(p, meta) : apr_table_make(p, 1);
    apr_status_t rv = new_token(token, sizeof(token));
    if (rv != APR_SUCCESS)
        return rv;
    apr_table_set(m, META_TOKEN, token);
    rv = ocireg_s3_put(S3(s)->s3, p, k, data, len, m, 1, NULL);
    if (rv != APR_EEXIST)
        return rv;
    return ours_or_theirs(s, p, k, token);
}

apr_status_t s3_create_only_file(ocireg_store *s, apr_pool_t *p,
                                 const char *k, apr_file_t *body,
                                 apr_off_t len, const apr_table_t *meta)
{
    char token[33];
    apr_table_t *m = meta ? apr_table_copy(p, meta) : apr_table_make(p, 1);
    apr_status_t rv = new_token(token, sizeof(token));
    int attempt;
    if (rv != APR_SUCCESS)
        return rv;
    apr_table_set(m, META_TOKEN, token);
    /* A body from a file is sent again from its start on a retry, which
     * the S3 client cannot do for a reader. */
    for (attempt = 0;; attempt++) {
        rv = s3_spool_rewind(body);
        if (rv == APR_SUCCESS)
            rv = ocireg_s3_put_stream_meta(S3(s)->s3, p, k, len,
                                           s3_spool_reader, body, m, 1,
                                           NULL);
        if (rv != OCIREG_S3_EUNAVAILABLE || attempt >= S3(s)->retries)
            break;
        apr_sleep(apr_time_from_msec(100) << attempt);
    }
    if (rv != APR_EEXIST)
        return rv;
    return ours_or_theirs(s, p, k, token);
}

/* Creates `k` unless it exists (APR_EEXIST), then removes `previous`
 * (if any), which it replaces: numbered records whose writers race. */
static apr_status_t create_replacing(ocireg_store *s, apr_pool_t *p,
                                     const char *k, const char *previous,
                                     const void *data, apr_size_t len)
{
    apr_status_t rv = s3_create_only(s, p, k, data, len, NULL);
    if (rv == APR_SUCCESS && previous)
        ocireg_s3_delete(S3(s)->s3, p, previous, NULL);
    return rv;
}

/* A record is one object, uploads/<uuid>/state.<version>: the session
 * record (encoded by the caller) in its metadata, the state's tail bytes
 * as its body. So a request that adds less than a part writes one object,
 * and the record and the bytes it counts can never disagree. Create-only:
 * of two writers of one version (a holder whose lease ran out, and its
 * successor; two requests racing from one record), exactly one succeeds.
 * Superseded records go after the answer (upload_settle) or with the
 * upload (upload_cleanup). */
#define META_SESSION "ocireg-session"

apr_status_t s3_state_put(ocireg_store *s, apr_pool_t *p,
                                 const char *uuid, apr_uint64_t version,
                                 const void *data, apr_size_t len,
                                 ocireg_upload_writer *w)
{
    apr_table_t *meta = apr_table_make(p, 2);
    char *text = apr_palloc(p, apr_base64_encode_len((int)len));
    const char *k = s3_state_key(s, p, uuid, version);
    apr_file_t *tail = NULL;
    apr_off_t tail_len = 0;
    apr_status_t rv;

    if (len > 16 * 1024)
        return APR_EINVAL;
    apr_base64_encode(text, data, (int)len);
    apr_table_setn(meta, META_SESSION, text);
    if (w) {
        rv = s3_writer_tail(w, &tail, &tail_len);
        if (rv != APR_SUCCESS)
            return rv;
    }
    if (tail_len > 0)
        return s3_create_only_file(s, p, k, tail, tail_len, meta);
    return s3_create_only(s, p, k, "", 0, meta);
}

static apr_status_t read_record(ocireg_store *s, apr_pool_t *p,
                                const char *uuid, apr_uint64_t version,
                                void **data, apr_size_t *len)
{
    ocireg_s3_result res;
    const char *text;
    int n;
    apr_status_t rv = ocireg_s3_head(S3(s)->s3, p,
                                     s3_state_key(s, p, uuid, version), &res);
    if (rv != APR_SUCCESS)
        return rv;
    text = apr_table_get(res.meta, META_SESSION);
    /* A record without one (another layout, or written by someone else)
     * reads as empty: the caller's decoding refuses it, and says so. */
    if (!text || strlen(text) > 32 * 1024)
        text = "";
    *data = apr_palloc(p, apr_base64_decode_len(text) + 1);
    n = apr_base64_decode(*data, text);
    *len = n > 0 ? (apr_size_t)n : 0;
    return APR_SUCCESS;
}

apr_status_t s3_state_get(ocireg_store *s, apr_pool_t *p,
                                 const char *uuid, apr_uint64_t hint,
                                 apr_uint64_t *version, void **data,
                                 apr_size_t *len)
{
    apr_status_t rv;
    int attempt;
    /* The version the client's Location names is the one to read: one
     * request. Without one, or when it is gone (superseded and settled),
     * the listing finds the latest. */
    if (hint > 0) {
        rv = read_record(s, p, uuid, hint, data, len);
        if (rv != APR_ENOENT) {
            *version = hint;
            return rv;
        }
    }
    /* A record listed may be settled before it is read: list again. */
    for (attempt = 0; attempt < 5; attempt++) {
        rv = s3_latest_state(s, p, uuid, version);
        if (rv != APR_SUCCESS)
            return rv;
        rv = read_record(s, p, uuid, *version, data, len);
        if (rv != APR_ENOENT)
            break;
    }
    return rv;
}

/* The lock is an object created with If-None-Match: *, so of two hosts
 * only one creates it. Its name holds the version it changes, and an
 * attempt number, so that taking over a dead holder's lock is itself a
 * create that only one taker wins. */
#define LOCK_ATTEMPTS 64

struct ocireg_upload_lock {
    ocireg_store *s;
    apr_pool_t *p;
    const char *uuid;
    apr_uint64_t version;
    int attempt;                 /* locks 0..attempt go at unlock */
    int held;
    ocireg_lock_owner me;
    apr_interval_time_t lease;
    apr_time_t renewed;
};

static apr_status_t unlock_cleanup(void *data)
{
    ocireg_upload_lock *l = data;
    apr_pool_t *tmp;
    int a;
    ocireg_s3_while_waiting_clear(l);
    if (!l->held)
        return APR_SUCCESS;
    l->held = 0;
    /* Not l->p: this may run while that pool is being destroyed. */
    if (apr_pool_create(&tmp, NULL) != APR_SUCCESS)
        return APR_SUCCESS;
    for (a = l->attempt; a >= 0; a--)
        ocireg_s3_delete(S3(l->s)->s3, tmp,
                         lock_key(l->s, tmp, l->uuid, l->version, a), NULL);
    apr_pool_destroy(tmp);
    return APR_SUCCESS;
}

void s3_upload_unlock(ocireg_upload_lock *l)
{
    apr_pool_cleanup_run(l->p, l, unlock_cleanup);
}

static apr_status_t put_lock(ocireg_upload_lock *l, int create)
{
    const char *text = ocireg_lock_owner_format(l->p, &l->me);
    const char *k = lock_key(l->s, l->p, l->uuid, l->version, l->attempt);
    if (create)
        return s3_create_only(l->s, l->p, k, text, strlen(text), NULL);
    return ocireg_s3_put(S3(l->s)->s3, l->p, k, text, strlen(text), NULL, 0,
                         NULL);
}

/* Whether the lock of this attempt may be taken over; APR_ENOENT when it
 * went meanwhile. */
static apr_status_t lock_stale(ocireg_upload_lock *l, int *stale)
{
    ocireg_lock_owner holder;
    ocireg_s3_result res;
    apr_status_t rv = ocireg_s3_get_small(
        S3(l->s)->s3, l->p,
        lock_key(l->s, l->p, l->uuid, l->version, l->attempt), 4096, &res);
    if (rv != APR_SUCCESS)
        return rv;
    /* An unreadable lock was never written by a holder that works. */
    *stale = !ocireg_lock_owner_parse(res.body, res.body_len, &holder)
             || ocireg_lock_takeover(&holder, &l->me, apr_time_now(),
                                     ocireg_pid_alive);
    return APR_SUCCESS;
}

static void keep_while_waiting(void *ctx)
{
    s3_upload_lock_keep(ctx);
}

/* Nothing is asked of the store yet: most requests (a chunk smaller than
 * a part, a closing PUT) change nothing another request could overwrite,
 * and their create-only record is all the exclusion they need. The lock
 * is taken (s3_lock_acquire) by a writer about to send a part. */
apr_status_t s3_upload_lock(ocireg_store *s, apr_pool_t *p,
                                   const char *uuid, apr_uint64_t version,
                                   const ocireg_lock_owner *me,
                                   ocireg_upload_lock **out)
{
    ocireg_upload_lock *l = apr_pcalloc(p, sizeof(*l));
    l->s = s;
    l->p = p;
    l->uuid = uuid;
    l->version = version;
    l->me = *me;
    l->lease = me->expires - apr_time_now();
    *out = l;
    return APR_SUCCESS;
}

apr_status_t s3_lock_acquire(ocireg_upload_lock *l)
{
    ocireg_store *s = l->s;
    apr_pool_t *p = l->p;
    apr_status_t rv = APR_EBUSY;
    int retries = 0, stale;

    if (l->held)
        return APR_SUCCESS;
    l->renewed = apr_time_now();
    l->me.expires = l->renewed + l->lease;
    for (l->attempt = 0; l->attempt < LOCK_ATTEMPTS; l->attempt++) {
        rv = put_lock(l, 1);
        if (rv == APR_SUCCESS)
            break;
        if (rv != APR_EEXIST)
            return rv;
        rv = lock_stale(l, &stale);
        if (rv == APR_ENOENT && retries++ < 3) {
            l->attempt--; /* released meanwhile: try it again */
            continue;
        }
        if (rv != APR_SUCCESS)
            return rv;
        if (!stale)
            return APR_EBUSY;
    }
    if (rv != APR_SUCCESS)
        return APR_EBUSY;
    l->held = 1;
    apr_pool_cleanup_register(p, l, unlock_cleanup, apr_pool_cleanup_null);
    /* A request waiting on S3 (slow answers, retries) is at work too. */
    ocireg_s3_while_waiting(keep_while_waiting, l);
    /* The lock is ours; is the record it changes still the latest? A
     * holder that sends parts saves its record before it lets go of the
     * lock, and every other writer's record is create-only at the next
     * version: if that one is not there now, no part this holder sends
     * can overwrite one a later record counts. */
    rv = exists(s, p, s3_state_key(s, p, l->uuid, l->version + 1));
    if (rv == APR_SUCCESS)
        rv = OCIREG_STORE_ESTALE;
    else if (rv == APR_ENOENT)
        rv = APR_SUCCESS;
    if (rv != APR_SUCCESS)
        s3_upload_unlock(l);
    return rv;
}

static const char *claim_key(ocireg_store *s, apr_pool_t *p,
                             const char *what, apr_int64_t period)
{
    return key(s, p, "claims/", what,
               apr_psprintf(p, ".%" APR_INT64_T_FMT, period));
}

apr_status_t s3_claim_period(ocireg_store *s, apr_pool_t *p,
                                    const char *what, apr_int64_t period)
{
    return create_replacing(s, p, claim_key(s, p, what, period),
                            claim_key(s, p, what, period - 1), "", 0);
}

void s3_upload_lock_drop(ocireg_upload_lock *l)
{
    /* The upload's cleanup takes only its records: a lock object this
     * request holds still goes when the request ends, after the answer. */
    ocireg_s3_while_waiting_clear(l);
}

void s3_upload_lock_keep(ocireg_upload_lock *l)
{
    apr_time_t now = apr_time_now();
    if (!l->held || now - l->renewed < l->lease / 3)
        return;
    l->renewed = now;
    l->me.expires = now + l->lease;
    /* A failed renewal is no error: the lease runs out, and the holder's
     * record, written create-only, cannot overwrite a successor's. */
    put_lock(l, 0);
}

/* Fill claims: fills/sha256/<hex> holds the claimer's lock record, created
 * with If-None-Match: * so that of two hosts only one creates it: a free
 * digest costs one request. A claim whose holder is gone (ocireg_lock.h)
 * is deleted and created again, which only one taker's create wins,
 * unless a second taker deleted the winner's claim in between: both then
 * fetch the same bytes, which land under their verified digest whichever
 * commits last, so the price of that rare race is one more upstream
 * fetch, never a wrong blob. */
#define FILL_ATTEMPTS 3

static apr_status_t fill_key(ocireg_store *s, apr_pool_t *p,
                             const char *digest, const char **k)
{
    if (ocireg_digest_parse(digest) != OCIREG_DIGEST_SHA256)
        return APR_EINVAL;
    *k = key(s, p, "fills/", ocireg_digest_path(p, digest), "");
    return APR_SUCCESS;
}

/* The claim's holder (APR_ENOENT when there is none); *readable 0 for an
 * object that is no lock record, never written by a claimer that works.
 * `token` (or NULL): the create-only PUT whose answer was lost; *ours says
 * whether the object is that PUT's. */
static apr_status_t fill_holder(ocireg_store *s, apr_pool_t *p,
                                const char *k, const char *token,
                                ocireg_lock_owner *holder, int *readable,
                                int *ours)
{
    ocireg_s3_result res;
    const char *theirs;
    apr_status_t rv = ocireg_s3_get_small(S3(s)->s3, p, k, 4096, &res);
    *readable = *ours = 0;
    if (rv != APR_SUCCESS)
        return rv;
    theirs = apr_table_get(res.meta, META_TOKEN);
    *ours = token && theirs && strcmp(token, theirs) == 0;
    *readable = res.body && res.body_len > 0
                && ocireg_lock_owner_parse(res.body, res.body_len, holder);
    return APR_SUCCESS;
}

apr_status_t s3_fill_claim(ocireg_store *s, apr_pool_t *p, const char *digest,
                           const ocireg_lock_owner *me)
{
    ocireg_lock_owner holder;
    const char *k, *text = ocireg_lock_owner_format(p, me);
    int attempt, readable, ours;
    apr_status_t rv = fill_key(s, p, digest, &k);
    if (rv != APR_SUCCESS)
        return rv;
    for (attempt = 0; attempt < FILL_ATTEMPTS; attempt++) {
        apr_table_t *meta = s3_create_only_meta(p, NULL);
        rv = ocireg_s3_put(S3(s)->s3, p, k, text, strlen(text), meta, 1,
                           NULL);
        if (rv != APR_EEXIST)
            return rv;
        /* The GET tells both who holds it and, by the token, whether the
         * object is this PUT's own (its first answer lost, retried). */
        rv = fill_holder(s, p, k, apr_table_get(meta, META_TOKEN), &holder,
                         &readable, &ours);
        if (rv == APR_ENOENT)
            continue; /* released meanwhile */
        if (rv != APR_SUCCESS)
            return rv;
        if (ours)
            return APR_SUCCESS;
        if (readable && ocireg_lock_owner_same(&holder, me))
            return ocireg_s3_put(S3(s)->s3, p, k, text, strlen(text), NULL,
                                 0, NULL); /* a renewal */
        if (readable
            && !ocireg_lock_takeover(&holder, me, apr_time_now(),
                                     ocireg_pid_alive))
            return APR_EBUSY;
        rv = ocireg_s3_delete(S3(s)->s3, p, k, NULL);
        if (rv != APR_SUCCESS && rv != APR_ENOENT)
            return rv;
    }
    return APR_EBUSY;
}

void s3_fill_release(ocireg_store *s, apr_pool_t *p, const char *digest,
                     const ocireg_lock_owner *me)
{
    ocireg_lock_owner holder;
    const char *k;
    int readable, ours;
    if (fill_key(s, p, digest, &k) != APR_SUCCESS)
        return;
    if (fill_holder(s, p, k, NULL, &holder, &readable, &ours) == APR_SUCCESS
        && readable && ocireg_lock_owner_same(&holder, me))
        (void)ocireg_s3_delete(S3(s)->s3, p, k, NULL);
}
