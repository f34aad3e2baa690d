/* Resumable SHA-256: the running state is a plain fixed-size value, so it can
 * live in a shared-memory slot (or a durable record) between requests that
 * are served by different processes. */
#ifndef OCIREG_HASH_H
#define OCIREG_HASH_H

#include <apr.h>
#include <apr_pools.h>

/* Large enough for OpenSSL's SHA256_CTX (112 bytes on LP64), with room. */
#define OCIREG_HASH_STATE_SIZE 128

/* Held as 64-bit words so the cast to the library's context is aligned. */
typedef struct {
    apr_uint64_t opaque[OCIREG_HASH_STATE_SIZE / 8];
} ocireg_hash_state;

void ocireg_hash_init(ocireg_hash_state *st);
void ocireg_hash_update(ocireg_hash_state *st, const void *data,
                        apr_size_t len);
/* Writes "sha256:<64 hex>" into out (at least 72 bytes). Does not modify st,
 * so the running state stays usable. */
void ocireg_hash_digest(const ocireg_hash_state *st, char *out);

/* One-shot digest of a buffer, "sha256:<hex>" in pool memory. */
const char *ocireg_sha256_digest(apr_pool_t *p, const void *data,
                                 apr_size_t len);

#endif
