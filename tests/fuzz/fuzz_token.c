/* Bearer tokens, the one credential clients send that the module parses
 * itself. The input is tried twice: as a whole compact token (structure,
 * base64url, header JSON, alg; its signature never verifies), and, split
 * at the first '\n', as a header and claims that this target signs ES256
 * with its own key, so the claim checks behind the signature are reached
 * with any JSON. */
#include "fuzz.h"
#include <openssl/bn.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include "ocireg_token.h"

#define NOW 1800000000

static EVP_PKEY *signing_key;
static char *public_pem;
static long public_pem_len;

/* The public key is parsed again for each input, into its pool: pool
 * memory may be mmap()ed, where LeakSanitizer cannot see the pointers a
 * longer-lived key set would keep. */
static apr_array_header_t *setup(apr_pool_t *p)
{
    apr_array_header_t *keys = apr_array_make(p, 1, sizeof(void *));
    if (!signing_key) {
        BIO *b = BIO_new(BIO_s_mem());
        char *pem;
        signing_key = EVP_EC_gen("P-256");
        if (!signing_key || !b || PEM_write_bio_PUBKEY(b, signing_key) != 1)
            abort();
        public_pem_len = BIO_get_mem_data(b, &pem);
        public_pem = malloc((size_t)public_pem_len);
        if (!public_pem)
            abort();
        memcpy(public_pem, pem, (size_t)public_pem_len);
        BIO_free(b);
    }
    if (ocireg_token_keys_parse(p, public_pem, (apr_size_t)public_pem_len,
                                keys))
        abort();
    return keys;
}

static char *b64url(apr_pool_t *p, const unsigned char *d, size_t n)
{
    static const char al[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    char *out = apr_palloc(p, n / 3 * 4 + 5), *o = out;
    size_t i;
    for (i = 0; i + 2 < n; i += 3) {
        unsigned v = (unsigned)d[i] << 16 | (unsigned)d[i + 1] << 8 | d[i + 2];
        *o++ = al[v >> 18];
        *o++ = al[(v >> 12) & 63];
        *o++ = al[(v >> 6) & 63];
        *o++ = al[v & 63];
    }
    if (n - i >= 1) {
        unsigned v = (unsigned)d[i] << 16
                     | (n - i == 2 ? (unsigned)d[i + 1] << 8 : 0);
        *o++ = al[v >> 18];
        *o++ = al[(v >> 12) & 63];
        if (n - i == 2)
            *o++ = al[(v >> 6) & 63];
    }
    *o = '\0';
    return out;
}

static char *es256(apr_pool_t *p, const char *input)
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned char der[128], raw[64];
    const unsigned char *q = der;
    size_t n = sizeof(der);
    ECDSA_SIG *sig;
    if (!ctx || EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL,
                                   signing_key) != 1
        || EVP_DigestSign(ctx, der, &n, (const unsigned char *)input,
                          strlen(input)) != 1)
        abort();
    EVP_MD_CTX_free(ctx);
    sig = d2i_ECDSA_SIG(NULL, &q, (long)n);
    if (!sig)
        abort();
    BN_bn2binpad(ECDSA_SIG_get0_r(sig), raw, 32);
    BN_bn2binpad(ECDSA_SIG_get0_s(sig), raw + 32, 32);
    ECDSA_SIG_free(sig);
    return b64url(p, raw, 64);
}

static void check_token(const ocireg_token *t)
{
    int i;
    FUZZ_ASSERT(t->subject && t->issuer && t->access && t->alg);
    for (i = 0; i < t->access->nelts; i++) {
        const ocireg_token_access *a =
            &APR_ARRAY_IDX(t->access, i, ocireg_token_access);
        FUZZ_ASSERT(a->type && a->name && a->actions);
        if (a->actions->nelts > 0)
            FUZZ_ASSERT(ocireg_token_allows(
                t, a->type, a->name,
                APR_ARRAY_IDX(a->actions, 0, const char *)));
    }
    (void)ocireg_token_allows(t, "repository", "a/b", "pull");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    apr_pool_t *p;
    ocireg_token_verifier v;
    ocireg_token *t = NULL;
    ocireg_token_status st;
    unsigned char *raw;
    apr_size_t rawlen;
    char *s, *claims;

    p = fuzz_pool();
    v.issuer = "iss";
    v.audience = "aud";
    v.keys = setup(p);
    v.leeway = 30;

    /* As sent. Only this target's key could verify it. */
    st = ocireg_token_verify(p, &v, (const char *)data, size, NOW, &t);
    FUZZ_ASSERT(st != OCIREG_TOKEN_OK || t);
    if (st == OCIREG_TOKEN_OK)
        check_token(t);

    /* base64url has one spelling per value. */
    raw = ocireg_base64url_decode(p, (const char *)data, size, &rawlen);
    if (raw)
        FUZZ_ASSERT(strlen(b64url(p, raw, rawlen)) == size
                    && memcmp(b64url(p, raw, rawlen), data, size) == 0);

    /* Header and claims, signed. */
    s = fuzz_cstr(p, data, size);
    claims = fuzz_next_line(s);
    if (claims) {
        char *input = apr_pstrcat(
            p, b64url(p, (const unsigned char *)s, strlen(s)), ".",
            b64url(p, (const unsigned char *)claims, strlen(claims)), NULL);
        char *jwt = apr_pstrcat(p, input, ".", es256(p, input), NULL);
        t = NULL;
        st = ocireg_token_verify(p, &v, jwt, strlen(jwt), NOW, &t);
        /* ES256 verifies; RS256 finds no RSA key here. */
        FUZZ_ASSERT(st != OCIREG_TOKEN_BAD_SIGNATURE);
        FUZZ_ASSERT((st == OCIREG_TOKEN_OK) == (t != NULL));
        if (t)
            check_token(t);
    }
    apr_pool_destroy(p);
    return 0;
}
