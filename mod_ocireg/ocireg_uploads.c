#include <string.h>
#include <signal.h>
#include <errno.h>
#include <unistd.h>
#include <apr_general.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include "ocireg_uploads.h"

#define TABLE_MAGIC 0x6f636976u /* "ociv": the hashed layout */
#define NO_SLOT 0xffffffffu

typedef struct {
    apr_uint32_t in_use;
    apr_int32_t holder;             /* pid of the acquiring process, or 0 */
    apr_uint64_t client_key;        /* counted against these (0: not) */
    apr_uint64_t repo_key;
    ocireg_upload_session s;
} slot_t;

/* A count of open sessions per client or repository, keyed by a 64-bit
 * hash of its text (0: empty entry). */
typedef struct {
    apr_uint64_t key;
    apr_uint32_t count;
    apr_uint32_t pad;
} counter_t;

/* In the shared block, after the header: nslots slots, the id index
 * (index_size entries: a slot number or NO_SLOT), the free list (nslots
 * slot numbers, the first nfree of them free) and the counters
 * (counter_size entries). Sizes of the two hashed arrays are powers of
 * two of at least twice what they hold, so probes stay short. */
typedef struct {
    apr_uint32_t magic;
    apr_uint32_t nslots;
    apr_uint32_t used;
    apr_uint32_t nfree;
    apr_uint32_t index_size;
    apr_uint32_t counter_size;
    apr_uint64_t instance;
    apr_uint64_t seed;              /* of the hashes: random per format */
} table_t;

struct ocireg_uploads {
    table_t *t;
    slot_t *slots;
    apr_uint32_t *index;
    apr_uint32_t *free_list;
    counter_t *counters;
    apr_global_mutex_t *mutex;
};

static apr_uint32_t pow2_at_least(apr_uint64_t n)
{
    apr_uint64_t p = 8;
    while (p < n)
        p <<= 1;
    return (apr_uint32_t)p;
}

static apr_size_t align8(apr_size_t n)
{
    return (n + 7) & ~(apr_size_t)7;
}

static void layout(int slots, apr_uint32_t *index_size,
                   apr_uint32_t *counter_size, apr_size_t offs[5])
{
    *index_size = pow2_at_least(2 * (apr_uint64_t)slots);
    /* clients and repositories: at most `slots` of each */
    *counter_size = pow2_at_least(4 * (apr_uint64_t)slots);
    offs[0] = align8(sizeof(table_t));
    offs[1] = offs[0] + (apr_size_t)slots * sizeof(slot_t);
    offs[2] = offs[1] + align8((apr_size_t)*index_size * 4);
    offs[3] = offs[2] + align8((apr_size_t)slots * 4);
    offs[4] = offs[3] + (apr_size_t)*counter_size * sizeof(counter_t);
}

apr_size_t ocireg_uploads_size(int slots)
{
    apr_uint32_t a, b;
    apr_size_t offs[5];
    layout(slots, &a, &b, offs);
    return offs[4];
}

void ocireg_uploads_format(void *mem, int slots)
{
    table_t *t = mem;
    apr_uint32_t isz, csz, i;
    apr_size_t offs[5];
    apr_uint32_t *index, *free_list;
    layout(slots, &isz, &csz, offs);
    memset(mem, 0, offs[4]);
    t->magic = TABLE_MAGIC;
    t->nslots = (apr_uint32_t)slots;
    t->index_size = isz;
    t->counter_size = csz;
    index = (apr_uint32_t *)((char *)mem + offs[1]);
    free_list = (apr_uint32_t *)((char *)mem + offs[2]);
    for (i = 0; i < isz; i++)
        index[i] = NO_SLOT;
    /* Popped from the end: slot 0 first. */
    for (i = 0; i < (apr_uint32_t)slots; i++)
        free_list[i] = (apr_uint32_t)slots - 1 - i;
    t->nfree = (apr_uint32_t)slots;
    if (apr_generate_random_bytes((unsigned char *)&t->instance,
                                  sizeof(t->instance)) != APR_SUCCESS)
        t->instance = (apr_uint64_t)apr_time_now() ^ (apr_uint64_t)getpid();
    if (apr_generate_random_bytes((unsigned char *)&t->seed, sizeof(t->seed))
        != APR_SUCCESS)
        t->seed = t->instance * 0x9e3779b97f4a7c15ull;
}

apr_uint64_t ocireg_uploads_instance(ocireg_uploads *u)
{
    return u->t->instance;
}

ocireg_uploads *ocireg_uploads_attach(apr_pool_t *p, void *mem,
                                      apr_global_mutex_t *mutex)
{
    table_t *t = mem;
    ocireg_uploads *u;
    apr_uint32_t isz, csz;
    apr_size_t offs[5];
    if (t->magic != TABLE_MAGIC)
        return NULL;
    layout((int)t->nslots, &isz, &csz, offs);
    u = apr_pcalloc(p, sizeof(*u));
    u->t = t;
    u->slots = (slot_t *)((char *)mem + offs[0]);
    u->index = (apr_uint32_t *)((char *)mem + offs[1]);
    u->free_list = (apr_uint32_t *)((char *)mem + offs[2]);
    u->counters = (counter_t *)((char *)mem + offs[3]);
    u->mutex = mutex;
    return u;
}

static apr_status_t lock(ocireg_uploads *u)
{
    return u->mutex ? apr_global_mutex_lock(u->mutex) : APR_SUCCESS;
}

static void unlock(ocireg_uploads *u)
{
    if (u->mutex)
        apr_global_mutex_unlock(u->mutex);
}

/* FNV-1a over a seed, then a 64-bit finaliser: ids and names come from
 * clients, so the seed (random per table) keeps them from aiming at one
 * probe chain. */
static apr_uint64_t text_hash(apr_uint64_t seed, char kind, const char *s)
{
    apr_uint64_t h = 0xcbf29ce484222325ull ^ seed;
    h = (h ^ (unsigned char)kind) * 0x100000001b3ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 0x100000001b3ull;
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ull;
    h ^= h >> 33;
    return h ? h : 1;
}

/* The index position holding uuid's slot number, or of the empty entry
 * where it would go. */
static apr_uint32_t probe(ocireg_uploads *u, const char *uuid)
{
    apr_uint32_t mask = u->t->index_size - 1;
    apr_uint32_t i = (apr_uint32_t)text_hash(u->t->seed, 'u', uuid) & mask;
    while (u->index[i] != NO_SLOT
           && strcmp(u->slots[u->index[i]].s.uuid, uuid) != 0)
        i = (i + 1) & mask;
    return i;
}

static slot_t *find(ocireg_uploads *u, const char *uuid)
{
    apr_uint32_t i = probe(u, uuid);
    return u->index[i] == NO_SLOT ? NULL : &u->slots[u->index[i]];
}

/* Linear probing's deletion without tombstones: entries after the hole
 * that would no longer be reachable move back into it. */
static void index_delete(ocireg_uploads *u, apr_uint32_t hole)
{
    apr_uint32_t mask = u->t->index_size - 1, j = hole;
    for (;;) {
        apr_uint32_t home;
        j = (j + 1) & mask;
        if (u->index[j] == NO_SLOT)
            break;
        home = (apr_uint32_t)text_hash(u->t->seed, 'u',
                                       u->slots[u->index[j]].s.uuid)
               & mask;
        /* j's entry may fill the hole when its home is not cyclically in
         * (hole, j]. */
        if (((j - home) & mask) >= ((j - hole) & mask)) {
            u->index[hole] = u->index[j];
            hole = j;
        }
    }
    u->index[hole] = NO_SLOT;
}

static apr_uint32_t counter_probe(ocireg_uploads *u, apr_uint64_t key)
{
    apr_uint32_t mask = u->t->counter_size - 1;
    apr_uint32_t i = (apr_uint32_t)(key >> 32 ^ key) & mask;
    while (u->counters[i].key && u->counters[i].key != key)
        i = (i + 1) & mask;
    return i;
}

static apr_uint32_t counter_get(ocireg_uploads *u, apr_uint64_t key)
{
    return key ? u->counters[counter_probe(u, key)].count : 0;
}

static void counter_add(ocireg_uploads *u, apr_uint64_t key)
{
    apr_uint32_t i;
    if (!key)
        return;
    i = counter_probe(u, key);
    u->counters[i].key = key;
    u->counters[i].count++;
}

static void counter_drop(ocireg_uploads *u, apr_uint64_t key)
{
    apr_uint32_t mask = u->t->counter_size - 1, hole, j;
    if (!key)
        return;
    hole = counter_probe(u, key);
    if (!u->counters[hole].key || --u->counters[hole].count > 0)
        return;
    for (j = hole;;) {
        apr_uint32_t home;
        j = (j + 1) & mask;
        if (!u->counters[j].key)
            break;
        home = (apr_uint32_t)(u->counters[j].key >> 32 ^ u->counters[j].key)
               & mask;
        if (((j - home) & mask) >= ((j - hole) & mask)) {
            u->counters[hole] = u->counters[j];
            hole = j;
        }
    }
    memset(&u->counters[hole], 0, sizeof(u->counters[hole]));
}

/* A holder that no longer exists (killed mid-request) must not keep the
 * session locked forever. */
static int holder_alive(apr_int32_t pid)
{
    if (pid == 0)
        return 0;
    return kill((pid_t)pid, 0) == 0 || errno != ESRCH;
}

apr_status_t ocireg_uploads_add_limited(ocireg_uploads *u,
                                        const ocireg_upload_session *s,
                                        const char *client, int per_client,
                                        int per_repo)
{
    apr_uint64_t ck = 0, rk = 0;
    apr_uint32_t at, n;
    slot_t *sl;
    apr_status_t rv = lock(u);
    if (rv != APR_SUCCESS)
        return rv;
    if (client) {
        ck = text_hash(u->t->seed, 'c', client);
        rk = text_hash(u->t->seed, 'r', s->name);
    }
    at = probe(u, s->uuid);
    if (u->index[at] != NO_SLOT)
        rv = APR_EEXIST;
    else if (per_client > 0 && counter_get(u, ck) >= (apr_uint32_t)per_client)
        rv = OCIREG_UPLOADS_ECLIENT;
    else if (per_repo > 0 && counter_get(u, rk) >= (apr_uint32_t)per_repo)
        rv = OCIREG_UPLOADS_EREPO;
    else if (u->t->nfree == 0)
        rv = APR_ENOSPC;
    if (rv != APR_SUCCESS) {
        unlock(u);
        return rv;
    }
    n = u->free_list[--u->t->nfree];
    sl = &u->slots[n];
    sl->s = *s;
    sl->holder = 0;
    sl->in_use = 1;
    sl->client_key = ck;
    sl->repo_key = rk;
    counter_add(u, ck);
    counter_add(u, rk);
    u->index[at] = n;
    u->t->used++;
    unlock(u);
    return APR_SUCCESS;
}

apr_status_t ocireg_uploads_add(ocireg_uploads *u,
                                const ocireg_upload_session *s)
{
    return ocireg_uploads_add_limited(u, s, NULL, 0, 0);
}

static int count_of(ocireg_uploads *u, char kind, const char *text)
{
    int n = 0;
    if (lock(u) == APR_SUCCESS) {
        n = (int)counter_get(u, text_hash(u->t->seed, kind, text));
        unlock(u);
    }
    return n;
}

int ocireg_uploads_client_count(ocireg_uploads *u, const char *client)
{
    return count_of(u, 'c', client);
}

int ocireg_uploads_repo_count(ocireg_uploads *u, const char *name)
{
    return count_of(u, 'r', name);
}

apr_status_t ocireg_uploads_get(ocireg_uploads *u, const char *uuid,
                                ocireg_upload_session *out)
{
    apr_status_t rv = lock(u);
    slot_t *sl;
    if (rv != APR_SUCCESS)
        return rv;
    sl = find(u, uuid);
    if (sl)
        *out = sl->s;
    unlock(u);
    return sl ? APR_SUCCESS : APR_ENOENT;
}

apr_status_t ocireg_uploads_acquire(ocireg_uploads *u, const char *uuid,
                                    ocireg_upload_session *out)
{
    apr_status_t rv = lock(u);
    slot_t *sl;
    if (rv != APR_SUCCESS)
        return rv;
    sl = find(u, uuid);
    if (!sl) {
        rv = APR_ENOENT;
    }
    else if (holder_alive(sl->holder)) {
        rv = APR_EBUSY;
    }
    else {
        sl->holder = (apr_int32_t)getpid();
        *out = sl->s;
    }
    unlock(u);
    return rv;
}

apr_status_t ocireg_uploads_release(ocireg_uploads *u,
                                    const ocireg_upload_session *updated,
                                    const char *uuid)
{
    apr_status_t rv = lock(u);
    slot_t *sl;
    if (rv != APR_SUCCESS)
        return rv;
    sl = find(u, uuid);
    if (!sl || sl->holder != (apr_int32_t)getpid()) {
        rv = APR_ENOENT;
    }
    else {
        /* The id is the index's key: it never changes in place. */
        if (updated && strcmp(updated->uuid, sl->s.uuid) == 0)
            sl->s = *updated;
        sl->holder = 0;
    }
    unlock(u);
    return rv;
}

apr_status_t ocireg_uploads_update(ocireg_uploads *u,
                                   const ocireg_upload_session *updated)
{
    apr_status_t rv = lock(u);
    slot_t *sl;
    if (rv != APR_SUCCESS)
        return rv;
    sl = find(u, updated->uuid);
    if (!sl || sl->holder != (apr_int32_t)getpid())
        rv = APR_ENOENT;
    else
        sl->s = *updated;
    unlock(u);
    return rv;
}

apr_status_t ocireg_uploads_remove(ocireg_uploads *u, const char *uuid)
{
    apr_status_t rv = lock(u);
    apr_uint32_t at, n;
    slot_t *sl;
    if (rv != APR_SUCCESS)
        return rv;
    at = probe(u, uuid);
    n = u->index[at];
    sl = n == NO_SLOT ? NULL : &u->slots[n];
    if (!sl || sl->holder != (apr_int32_t)getpid()) {
        rv = APR_ENOENT;
    }
    else {
        counter_drop(u, sl->client_key);
        counter_drop(u, sl->repo_key);
        index_delete(u, at);
        memset(sl, 0, sizeof(*sl));
        u->free_list[u->t->nfree++] = n;
        u->t->used--;
    }
    unlock(u);
    return rv;
}

int ocireg_uploads_take_idle(ocireg_uploads *u, apr_time_t before,
                             apr_time_t empty_before,
                             ocireg_upload_session *out, int max)
{
    apr_uint32_t i;
    int n = 0;
    if (lock(u) != APR_SUCCESS)
        return 0;
    for (i = 0; i < u->t->nslots && n < max; i++) {
        slot_t *sl = &u->slots[i];
        apr_time_t limit;
        if (!sl->in_use)
            continue;
        limit = sl->s.offset == 0 && empty_before > before ? empty_before
                                                           : before;
        if (sl->s.touched < limit && !holder_alive(sl->holder)) {
            sl->holder = (apr_int32_t)getpid();
            out[n++] = sl->s;
        }
    }
    unlock(u);
    return n;
}

int ocireg_uploads_has(ocireg_uploads *u, const char *uuid)
{
    int found = 0;
    if (lock(u) == APR_SUCCESS) {
        found = find(u, uuid) != NULL;
        unlock(u);
    }
    return found;
}

int ocireg_uploads_count(ocireg_uploads *u)
{
    int n = 0;
    if (lock(u) == APR_SUCCESS) {
        n = (int)u->t->used;
        unlock(u);
    }
    return n;
}

/* Session records (the format is described in ocireg_uploads.h). */

#define MAC_LEN 32

typedef struct {
    unsigned char *p;
    apr_size_t len;
} writer_t;

static void put_bytes(writer_t *w, const void *b, apr_size_t n)
{
    memcpy(w->p + w->len, b, n);
    w->len += n;
}

static void put_be(writer_t *w, apr_uint64_t v, int bytes)
{
    while (bytes-- > 0)
        w->p[w->len++] = (unsigned char)(v >> (8 * bytes));
}

typedef struct {
    const unsigned char *p;
    apr_size_t len, at;
    int bad;
} reader_t;

static const unsigned char *get_bytes(reader_t *r, apr_size_t n)
{
    const unsigned char *b;
    if (r->bad || n > r->len - r->at) {
        r->bad = 1;
        return NULL;
    }
    b = r->p + r->at;
    r->at += n;
    return b;
}

static apr_uint64_t get_be(reader_t *r, int bytes)
{
    const unsigned char *b = get_bytes(r, (apr_size_t)bytes);
    apr_uint64_t v = 0;
    int i;
    if (!b)
        return 0;
    for (i = 0; i < bytes; i++)
        v = v << 8 | b[i];
    return v;
}

static void record_mac(const unsigned char *key, apr_size_t keylen,
                       const void *data, apr_size_t len,
                       unsigned char mac[MAC_LEN])
{
    static const unsigned char no_key[1] = {0};
    unsigned int maclen = MAC_LEN;
    if (!HMAC(EVP_sha256(), keylen ? key : no_key, (int)keylen, data, len,
              mac, &maclen))
        memset(mac, 0, MAC_LEN); /* never matches a real record's */
}

static apr_size_t trimmed_driver_len(const unsigned char *d)
{
    apr_size_t n = OCIREG_DRIVER_STATE_SIZE;
    while (n > 0 && d[n - 1] == 0)
        n--;
    return n;
}

const void *ocireg_session_encode(apr_pool_t *p,
                                  const ocireg_upload_session *s,
                                  const unsigned char *key, apr_size_t keylen,
                                  apr_size_t *len)
{
    ocireg_hash_midstate m;
    apr_size_t name_len = strnlen(s->name, sizeof(s->name) - 1);
    apr_size_t drv_len = trimmed_driver_len(s->driver);
    unsigned pending;
    writer_t w;
    int i;

    ocireg_hash_export(&s->hash, &m);
    pending = (unsigned)(m.length % 64);
    w.p = apr_palloc(p, 8 + 2 + 1 + OCIREG_UUID_LEN + 2 + name_len + 4
                            + 5 * 8 + 8 * 4 + 8 + 1 + 64 + 2 + drv_len
                            + MAC_LEN);
    w.len = 0;
    put_bytes(&w, OCIREG_SESSION_MAGIC, 8);
    put_be(&w, OCIREG_SESSION_FORMAT, 2);
    put_be(&w, OCIREG_UUID_LEN, 1);
    put_bytes(&w, s->uuid, OCIREG_UUID_LEN);
    put_be(&w, name_len, 2);
    put_bytes(&w, s->name, name_len);
    put_be(&w, s->store_id, 4);
    put_be(&w, (apr_uint64_t)s->offset, 8);
    put_be(&w, s->version, 8);
    put_be(&w, s->moved, 8);
    put_be(&w, (apr_uint64_t)s->created, 8);
    put_be(&w, (apr_uint64_t)s->touched, 8);
    for (i = 0; i < 8; i++)
        put_be(&w, m.h[i], 4);
    put_be(&w, m.length, 8);
    put_be(&w, pending, 1);
    put_bytes(&w, m.block, pending);
    put_be(&w, drv_len, 2);
    put_bytes(&w, s->driver, drv_len);
    record_mac(key, keylen, w.p, w.len, w.p + w.len);
    w.len += MAC_LEN;
    *len = w.len;
    return w.p;
}

/* Format 1. A later format adds its own function and a case below. */
static int decode_v1(reader_t *r, ocireg_upload_session *out)
{
    ocireg_hash_midstate m;
    const unsigned char *b;
    apr_size_t n;
    apr_uint64_t v;
    int i;

    n = (apr_size_t)get_be(r, 1);
    if (n != OCIREG_UUID_LEN || !(b = get_bytes(r, n)))
        return 0;
    memcpy(out->uuid, b, n);
    out->uuid[n] = '\0';
    n = (apr_size_t)get_be(r, 2);
    if (n < 1 || n > OCIREG_NAME_MAX || !(b = get_bytes(r, n)))
        return 0;
    memcpy(out->name, b, n);
    out->name[n] = '\0';
    /* An embedded NUL would make the name shorter than its length. */
    if (strlen(out->uuid) != OCIREG_UUID_LEN || strlen(out->name) != n
        || !ocireg_uuid_valid(out->uuid) || !ocireg_name_valid(out->name))
        return 0;
    out->store_id = (apr_uint32_t)get_be(r, 4);
    v = get_be(r, 8);
    if (v > (apr_uint64_t)APR_INT64_MAX)
        return 0;
    out->offset = (apr_off_t)v;
    out->version = get_be(r, 8);
    out->moved = get_be(r, 8);
    if (out->moved > out->version)
        return 0;
    out->created = (apr_time_t)get_be(r, 8);
    out->touched = (apr_time_t)get_be(r, 8);
    if (out->created < 0 || out->touched < 0)
        return 0;

    memset(&m, 0, sizeof(m));
    for (i = 0; i < 8; i++)
        m.h[i] = (apr_uint32_t)get_be(r, 4);
    m.length = get_be(r, 8);
    n = (apr_size_t)get_be(r, 1);
    if (r->bad || m.length != (apr_uint64_t)out->offset || n != m.length % 64
        || !(b = get_bytes(r, n)))
        return 0;
    memcpy(m.block, b, n);
    if (!ocireg_hash_import(&out->hash, &m))
        return 0;

    n = (apr_size_t)get_be(r, 2);
    if (n > OCIREG_DRIVER_STATE_SIZE || !(b = get_bytes(r, n)))
        return 0;
    memcpy(out->driver, b, n);
    return !r->bad;
}

apr_status_t ocireg_session_decode(const void *data, apr_size_t len,
                                   const unsigned char *key,
                                   apr_size_t keylen,
                                   ocireg_upload_session *out)
{
    unsigned char mac[MAC_LEN];
    reader_t r;
    int ok = 0;

    memset(out, 0, sizeof(*out));
    if (!data || len < 8 + 2 + MAC_LEN
        || memcmp(data, OCIREG_SESSION_MAGIC, 8) != 0)
        return OCIREG_SESSION_EBAD;
    /* The MAC first: nothing of a record that is not ours is parsed. */
    record_mac(key, keylen, data, len - MAC_LEN, mac);
    if (CRYPTO_memcmp(mac, (const unsigned char *)data + len - MAC_LEN,
                      MAC_LEN) != 0)
        return OCIREG_SESSION_EKEY;
    r.p = data;
    r.len = len - MAC_LEN;
    r.at = 8;
    r.bad = 0;
    switch (get_be(&r, 2)) {
    case 1:
        ok = decode_v1(&r, out);
        break;
    default:
        break;
    }
    if (!ok || r.bad || r.at != r.len) {
        memset(out, 0, sizeof(*out));
        return OCIREG_SESSION_EBAD;
    }
    return APR_SUCCESS;
}

const unsigned char *ocireg_session_key_derive(apr_pool_t *p,
                                               const char *secret,
                                               const char *context,
                                               apr_size_t *keylen)
{
    static const char label[] = "mod_ocireg session record key v1";
    apr_size_t n = sizeof(label) + strlen(context);
    unsigned char *msg = apr_palloc(p, n);
    unsigned char *key = apr_palloc(p, MAC_LEN);
    memcpy(msg, label, sizeof(label)); /* with its NUL, as a separator */
    memcpy(msg + sizeof(label), context, n - sizeof(label));
    record_mac((const unsigned char *)secret, strlen(secret), msg, n, key);
    *keylen = MAC_LEN;
    return key;
}
