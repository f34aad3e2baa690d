/* Sealed listing cursors (ocireg_cursor.h). */
#include <string.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <apr_strings.h>
#include "ocireg_cursor.h"

#define NONCE_LEN 12
#define TAG_LEN 16
/* Repository names are at most 255 bytes by the module's grammar; a
 * cursor never needs more. */
#define NAME_MAX_LEN 1024

static const char b64url[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static char *encode(apr_pool_t *p, const unsigned char *in, size_t len)
{
    char *out = apr_palloc(p, (len + 2) / 3 * 4 + 2), *o = out;
    size_t i;
    *o++ = OCIREG_CURSOR_MARK;
    for (i = 0; i + 2 < len; i += 3) {
        unsigned v = (unsigned)in[i] << 16 | (unsigned)in[i + 1] << 8
                     | in[i + 2];
        *o++ = b64url[v >> 18 & 63];
        *o++ = b64url[v >> 12 & 63];
        *o++ = b64url[v >> 6 & 63];
        *o++ = b64url[v & 63];
    }
    if (len - i == 1) {
        unsigned v = (unsigned)in[i] << 16;
        *o++ = b64url[v >> 18 & 63];
        *o++ = b64url[v >> 12 & 63];
    }
    else if (len - i == 2) {
        unsigned v = (unsigned)in[i] << 16 | (unsigned)in[i + 1] << 8;
        *o++ = b64url[v >> 18 & 63];
        *o++ = b64url[v >> 12 & 63];
        *o++ = b64url[v >> 6 & 63];
    }
    *o = '\0';
    return out;
}

static int sextet(char c)
{
    const char *at = c ? strchr(b64url, c) : NULL;
    return at ? (int)(at - b64url) : -1;
}

/* Unpadded base64url; NULL when anything else is in it. */
static unsigned char *decode(apr_pool_t *p, const char *in, size_t *len)
{
    size_t n = strlen(in), i, o = 0;
    unsigned char *out;
    unsigned v = 0;
    int bits = 0;
    if (n % 4 == 1)
        return NULL;
    out = apr_palloc(p, n * 3 / 4 + 1);
    for (i = 0; i < n; i++) {
        int s = sextet(in[i]);
        if (s < 0)
            return NULL;
        v = (v << 6 | (unsigned)s) & 0xffffff;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (unsigned char)(v >> bits);
        }
    }
    /* Only the canonical spelling: bits left over must be zero, or two
     * cursors would open to one. */
    if (v & ((1u << bits) - 1))
        return NULL;
    *len = o;
    return out;
}

const char *ocireg_cursor_seal(apr_pool_t *p,
                               const unsigned char key[OCIREG_CURSOR_KEY_LEN],
                               const char *name)
{
    size_t nlen = strlen(name);
    unsigned char *buf;
    EVP_CIPHER_CTX *ctx;
    int outl = 0, finl = 0, ok;
    if (nlen > NAME_MAX_LEN)
        return NULL;
    buf = apr_palloc(p, NONCE_LEN + nlen + TAG_LEN);
    if (RAND_bytes(buf, NONCE_LEN) != 1)
        return NULL;
    ctx = EVP_CIPHER_CTX_new();
    if (!ctx)
        return NULL;
    ok = EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, key, buf) == 1
         && EVP_EncryptUpdate(ctx, buf + NONCE_LEN, &outl,
                              (const unsigned char *)name, (int)nlen) == 1
         && EVP_EncryptFinal_ex(ctx, buf + NONCE_LEN + outl, &finl) == 1
         && EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, TAG_LEN,
                                buf + NONCE_LEN + nlen) == 1;
    EVP_CIPHER_CTX_free(ctx);
    return ok ? encode(p, buf, NONCE_LEN + nlen + TAG_LEN) : NULL;
}

const char *ocireg_cursor_open(apr_pool_t *p,
                               const unsigned char key[OCIREG_CURSOR_KEY_LEN],
                               const char *cursor)
{
    unsigned char *raw;
    char *name;
    size_t len, nlen;
    EVP_CIPHER_CTX *ctx;
    int outl = 0, finl = 0, ok;
    if (!cursor || cursor[0] != OCIREG_CURSOR_MARK
        || strlen(cursor) > (NONCE_LEN + NAME_MAX_LEN + TAG_LEN) * 4 / 3 + 4)
        return NULL;
    raw = decode(p, cursor + 1, &len);
    if (!raw || len < NONCE_LEN + TAG_LEN)
        return NULL;
    nlen = len - NONCE_LEN - TAG_LEN;
    name = apr_palloc(p, nlen + 1);
    ctx = EVP_CIPHER_CTX_new();
    if (!ctx)
        return NULL;
    ok = EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, key, raw) == 1
         && EVP_DecryptUpdate(ctx, (unsigned char *)name, &outl,
                              raw + NONCE_LEN, (int)nlen) == 1
         && EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, TAG_LEN,
                                raw + NONCE_LEN + nlen) == 1
         && EVP_DecryptFinal_ex(ctx, (unsigned char *)name + outl,
                                &finl) == 1;
    EVP_CIPHER_CTX_free(ctx);
    if (!ok)
        return NULL;
    name[nlen] = '\0';
    /* Sealed by us, so a name; still, a NUL inside is not one. */
    return strlen(name) == nlen ? name : NULL;
}

int ocireg_cursor_key(unsigned char key[OCIREG_CURSOR_KEY_LEN],
                      const unsigned char *secret, apr_size_t secretlen)
{
    static const char label[] = "ocireg listing cursor v1";
    unsigned int len = OCIREG_CURSOR_KEY_LEN;
    if (!secret || secretlen == 0)
        return RAND_bytes(key, OCIREG_CURSOR_KEY_LEN) == 1 ? 0 : -1;
    return HMAC(EVP_sha256(), secret, (int)secretlen,
                (const unsigned char *)label, sizeof(label) - 1, key, &len)
               ? 0 : -1;
}
