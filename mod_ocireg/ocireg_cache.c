/* The shared cache of store answers (ocireg_cache.h). */
#include <stddef.h>
#include <string.h>
#include <apr_strings.h>
#include "ocireg_cache.h"
#include "ocireg_store.h"

#define CACHE_MAGIC 0x4f434331u   /* "OCC1" */
#define EMPTY (-1)

typedef struct {
    apr_uint32_t seq;            /* odd while written */
    apr_uint32_t gen;            /* one more at every change of a key of
                                  * this slot (ocireg_cache_bump) */
    apr_uint32_t hash;
    apr_uint16_t keylen, vallen;
    apr_int64_t expires;         /* 0: immutable; EMPTY: no entry */
    char key[OCIREG_CACHE_KEY_MAX];
    char value[OCIREG_CACHE_VALUE_MAX];
} cache_slot;

typedef struct {
    apr_uint32_t magic;
    apr_uint32_t slots;
    apr_uint64_t hits, misses, stores;
} cache_head;

struct ocireg_cache {
    cache_head *head;
    cache_slot *slot;
};

apr_size_t ocireg_cache_size(int slots)
{
    return APR_ALIGN_DEFAULT(sizeof(cache_head))
           + (apr_size_t)(slots > 0 ? slots : 1) * sizeof(cache_slot);
}

void ocireg_cache_format(void *mem, int slots)
{
    cache_head *h = mem;
    cache_slot *s = (cache_slot *)((char *)mem
                                   + APR_ALIGN_DEFAULT(sizeof(cache_head)));
    int i;
    memset(h, 0, sizeof(*h));
    h->magic = CACHE_MAGIC;
    h->slots = (apr_uint32_t)(slots > 0 ? slots : 1);
    for (i = 0; i < (int)h->slots; i++) {
        memset(&s[i], 0, offsetof(cache_slot, key));
        s[i].expires = EMPTY;
    }
}

ocireg_cache *ocireg_cache_attach(apr_pool_t *p, void *mem)
{
    ocireg_cache *c;
    if (!mem || ((cache_head *)mem)->magic != CACHE_MAGIC)
        return NULL;
    c = apr_pcalloc(p, sizeof(*c));
    c->head = mem;
    c->slot = (cache_slot *)((char *)mem
                             + APR_ALIGN_DEFAULT(sizeof(cache_head)));
    return c;
}

static cache_slot *slot_of(ocireg_cache *c, const char *key, apr_uint32_t *h)
{
    *h = ocireg_store_id(key);
    return &c->slot[*h % c->head->slots];
}

/* Takes the slot for writing, or says it is someone else's right now. */
static int write_begin(cache_slot *s, apr_uint32_t *seq)
{
    apr_uint32_t v = __atomic_load_n(&s->seq, __ATOMIC_ACQUIRE);
    if (v & 1)
        return 0;
    if (!__atomic_compare_exchange_n(&s->seq, &v, v + 1, 0, __ATOMIC_ACQ_REL,
                                     __ATOMIC_RELAXED))
        return 0;
    *seq = v;
    return 1;
}

static void write_end(cache_slot *s, apr_uint32_t seq)
{
    __atomic_store_n(&s->seq, seq + 2, __ATOMIC_RELEASE);
}

apr_uint32_t ocireg_cache_generation(ocireg_cache *c, const char *key)
{
    apr_uint32_t h;
    if (!c)
        return 0;
    return __atomic_load_n(&slot_of(c, key, &h)->gen, __ATOMIC_ACQUIRE);
}

void ocireg_cache_bump(ocireg_cache *c, const char *key)
{
    apr_uint32_t h, seq;
    cache_slot *s;
    if (!c)
        return;
    s = slot_of(c, key, &h);
    /* Unlike a store, a change must not be skipped: wait out a writer
     * (it holds the slot for a copy of a few hundred bytes). */
    while (!write_begin(s, &seq))
        apr_sleep(0);
    s->gen++;
    s->expires = EMPTY;
    write_end(s, seq);
}

void ocireg_cache_put(ocireg_cache *c, const char *key, const void *value,
                      apr_size_t len, apr_time_t expires, apr_uint32_t gen)
{
    apr_size_t klen;
    apr_uint32_t h, seq;
    cache_slot *s;
    if (!c)
        return;
    klen = strlen(key);
    if (klen >= OCIREG_CACHE_KEY_MAX || len >= OCIREG_CACHE_VALUE_MAX)
        return;
    s = slot_of(c, key, &h);
    if (!write_begin(s, &seq))
        return;
    /* Read before a change of this host to a key of this slot: stale. */
    if (s->gen != gen) {
        write_end(s, seq);
        return;
    }
    s->hash = h;
    s->keylen = (apr_uint16_t)klen;
    s->vallen = (apr_uint16_t)len;
    s->expires = expires;
    memcpy(s->key, key, klen);
    memcpy(s->value, value, len);
    write_end(s, seq);
    __atomic_add_fetch(&c->head->stores, 1, __ATOMIC_RELAXED);
}

int ocireg_cache_get(ocireg_cache *c, apr_pool_t *p, const char *key,
                     apr_time_t now, char **value, apr_size_t *len)
{
    cache_slot copy, *s;
    apr_uint32_t h, before, after;
    apr_size_t klen;
    int hit = 0;
    if (!c)
        return 0;
    klen = strlen(key);
    s = slot_of(c, key, &h);
    before = __atomic_load_n(&s->seq, __ATOMIC_ACQUIRE);
    if (!(before & 1)) {
        memcpy(&copy, s, sizeof(copy));
        __atomic_thread_fence(__ATOMIC_ACQUIRE);
        after = __atomic_load_n(&s->seq, __ATOMIC_RELAXED);
        hit = after == before && copy.expires != EMPTY && copy.hash == h
              && copy.keylen == klen && copy.vallen < OCIREG_CACHE_VALUE_MAX
              && memcmp(copy.key, key, klen) == 0
              && (copy.expires == 0 || now < copy.expires);
    }
    __atomic_add_fetch(hit ? &c->head->hits : &c->head->misses, 1,
                       __ATOMIC_RELAXED);
    if (!hit)
        return 0;
    *value = apr_pstrmemdup(p, copy.value, copy.vallen);
    *len = copy.vallen;
    return 1;
}

void ocireg_cache_get_stats(ocireg_cache *c, ocireg_cache_stats *out)
{
    memset(out, 0, sizeof(*out));
    if (!c)
        return;
    out->hits = __atomic_load_n(&c->head->hits, __ATOMIC_RELAXED);
    out->misses = __atomic_load_n(&c->head->misses, __ATOMIC_RELAXED);
    out->stores = __atomic_load_n(&c->head->stores, __ATOMIC_RELAXED);
}
