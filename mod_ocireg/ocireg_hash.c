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

void ocireg_hash_export(const ocireg_hash_state *st,
                        ocireg_hash_midstate *out)
{
    const SHA256_CTX *c = (const SHA256_CTX *)st->opaque;
    apr_uint64_t bits = ((apr_uint64_t)c->Nh << 32) | c->Nl;
    unsigned pending;
    int i;
    memset(out, 0, sizeof(*out));
    for (i = 0; i < 8; i++)
        out->h[i] = c->h[i];
    out->length = bits / 8;
    pending = (unsigned)(out->length % 64);
    memcpy(out->block, c->data, pending);
}

int ocireg_hash_import(ocireg_hash_state *st, const ocireg_hash_midstate *in)
{
    SHA256_CTX c;
    apr_uint64_t bits;
    unsigned pending, i;
    if (in->length >= ((apr_uint64_t)1 << 61))
        return 0;
    pending = (unsigned)(in->length % 64);
    for (i = pending; i < 64; i++)
        if (in->block[i])
            return 0;
    memset(&c, 0, sizeof(c));
    for (i = 0; i < 8; i++)
        c.h[i] = in->h[i];
    bits = in->length * 8;
    c.Nl = (SHA_LONG)(bits & 0xffffffffu);
    c.Nh = (SHA_LONG)(bits >> 32);
    memcpy(c.data, in->block, pending);
    c.num = pending;
    c.md_len = SHA256_DIGEST_LENGTH;
    memset(st, 0, sizeof(*st));
    memcpy(st->opaque, &c, sizeof(c));
    return 1;
}

int ocireg_hash_state_valid(const ocireg_hash_state *st, apr_uint64_t length)
{
    const SHA256_CTX *c = (const SHA256_CTX *)st->opaque;
    apr_uint64_t bits = ((apr_uint64_t)c->Nh << 32) | c->Nl;
    return length < ((apr_uint64_t)1 << 61) && bits == length * 8
           && c->num == (unsigned)(length % 64)
           && c->md_len == SHA256_DIGEST_LENGTH;
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
