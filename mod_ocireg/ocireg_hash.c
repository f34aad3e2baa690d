/* The low-level SHA256_* API is deprecated in OpenSSL 3, but it is the only
 * one whose running state is a plain struct that can be copied between
 * processes; EVP contexts are opaque heap objects. */
#define OPENSSL_SUPPRESS_DEPRECATED 1
#include <string.h>
#include <openssl/sha.h>
#include "ocireg_hash.h"

typedef char state_fits[sizeof(SHA256_CTX) <= OCIREG_HASH_STATE_SIZE ? 1
                                                                     : -1];

void ocireg_hash_init(ocireg_hash_state *st)
{
    memset(st, 0, sizeof(*st));
    SHA256_Init((SHA256_CTX *)st->opaque);
}

void ocireg_hash_update(ocireg_hash_state *st, const void *data,
                        apr_size_t len)
{
    SHA256_Update((SHA256_CTX *)st->opaque, data, len);
}

static void hex_digest(const unsigned char *md, char *out)
{
    static const char hex[] = "0123456789abcdef";
    int i;
    memcpy(out, "sha256:", 7);
    for (i = 0; i < SHA256_DIGEST_LENGTH; i++) {
        out[7 + 2 * i] = hex[md[i] >> 4];
        out[8 + 2 * i] = hex[md[i] & 15];
    }
    out[7 + 2 * SHA256_DIGEST_LENGTH] = '\0';
}

void ocireg_hash_digest(const ocireg_hash_state *st, char *out)
{
    SHA256_CTX copy;
    unsigned char md[SHA256_DIGEST_LENGTH];
    memcpy(&copy, st->opaque, sizeof(copy));
    SHA256_Final(md, &copy);
    hex_digest(md, out);
}

const char *ocireg_sha256_digest(apr_pool_t *p, const void *data,
                                 apr_size_t len)
{
    unsigned char md[SHA256_DIGEST_LENGTH];
    char *out = apr_palloc(p, 72);
    SHA256(data, len, md);
    hex_digest(md, out);
    return out;
}
