/* A small cache of what the store answered, in one block of memory that
 * every httpd child maps (APR shared memory), so a request in any child
 * of this host finds what another one read or wrote.
 *
 * It holds short values (a tag's digest, where a linked blob's bytes are)
 * under short keys, in a fixed number of slots, each picked by a hash of
 * its key: a new entry replaces whatever had its slot. Every slot carries
 * a sequence number (a seqlock): a writer makes it odd while it writes,
 * with a compare-and-swap, so two writers never interleave (the loser just
 * does not cache); a reader copies the slot and keeps the copy only if the
 * number was even and unchanged. No lock is ever waited for.
 *
 * Two kinds of entries:
 *  - immutable ones (what a digest names never changes) live until their
 *    slot is reused;
 *  - mutable ones (tags, repository links) carry the expiry the caller
 *    gives: how long another host's change may go unseen here.
 * A change this host makes goes to the store first, then bumps the key's
 * slot: the entry goes, and so does any answer read before the bump that
 * a slower request stores after it (a store carries the slot's generation
 * read before the store was asked, and is refused when it changed). */
#ifndef OCIREG_CACHE_H
#define OCIREG_CACHE_H

#include <apr.h>
#include <apr_pools.h>
#include <apr_time.h>

#define OCIREG_CACHE_KEY_MAX 360
#define OCIREG_CACHE_VALUE_MAX 200

typedef struct ocireg_cache ocireg_cache;

/* Bytes of shared memory for `slots` entries. */
apr_size_t ocireg_cache_size(int slots);
/* Formats mem (ocireg_cache_size(slots) bytes) as an empty cache. */
void ocireg_cache_format(void *mem, int slots);
/* A process-local handle on a formatted cache. */
ocireg_cache *ocireg_cache_attach(apr_pool_t *p, void *mem);

/* The generation to pass to ocireg_cache_put for key: read it before
 * asking the store, so that a change made meanwhile wins. */
apr_uint32_t ocireg_cache_generation(ocireg_cache *c, const char *key);
/* This host changed what key names (in the store already): the entry
 * goes, and answers read before now are not stored. */
void ocireg_cache_bump(ocireg_cache *c, const char *key);

/* Stores a value (at most OCIREG_CACHE_VALUE_MAX bytes; longer keys or
 * values are not cached). expires 0: immutable; else the time after which
 * it is not served. gen: ocireg_cache_generation(key) from before the
 * store was asked. */
void ocireg_cache_put(ocireg_cache *c, const char *key, const void *value,
                      apr_size_t len, apr_time_t expires, apr_uint32_t gen);
/* 1 and a copy of the value (NUL-terminated, in p) when the cache has a
 * live entry for key; 0 otherwise. */
int ocireg_cache_get(ocireg_cache *c, apr_pool_t *p, const char *key,
                     apr_time_t now, char **value, apr_size_t *len);

/* Counters, for tests and the status page. */
typedef struct {
    apr_uint64_t hits, misses, stores;
} ocireg_cache_stats;
void ocireg_cache_get_stats(ocireg_cache *c, ocireg_cache_stats *out);

#endif
