/* Sealed listing cursors (ocireg_cursor.h). */
#include <string.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <apr_strings.h>
#include "ocireg_cursor.h"
#include "ocireg_parse.h"

#define NONCE_LEN 12
#define TAG_LEN 16
/* Repository names are at most 255 bytes by the module's grammar; a
 * cursor never needs more. */
#define NAME_MAX_LEN 1024

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
    return ok ? apr_pstrcat(p, "~",
                            ocireg_base64url_encode(p, buf, NONCE_LEN + nlen
                                                                + TAG_LEN),
                            NULL)
              : NULL;
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
    raw = ocireg_base64url_decode(p, cursor + 1, strlen(cursor + 1), &len);
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
