/* Unit tests for ocireg_token.h: tokens minted here with OpenSSL, both
 * algorithms, and every way one is refused. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <string.h>
#include <stdio.h>
#include <stdlib.h>
#include <cmocka.h>

#include <apr_general.h>
#include <apr_pools.h>
#include <apr_strings.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "ocireg_token.h"

#define NOW 1800000000
#define ISS "test-issuer"
#define AUD "test-registry"

static apr_pool_t *pool;
static EVP_PKEY *ec_key, *ec_other, *rsa_key, *rsa_other;

/* PEM of a key's public half, in pool memory. */
static const char *public_pem(EVP_PKEY *k)
{
    BIO *b = BIO_new(BIO_s_mem());
    char *data;
    long n;
    const char *out;
    assert_int_equal(PEM_write_bio_PUBKEY(b, k), 1);
    n = BIO_get_mem_data(b, &data);
    out = apr_pstrndup(pool, data, (apr_size_t)n);
    BIO_free(b);
    return out;
}

static apr_array_header_t *keys_of(EVP_PKEY *k1, EVP_PKEY *k2)
{
    apr_array_header_t *keys = apr_array_make(pool, 2, sizeof(void *));
    const char *pem;
    if (k1) {
        pem = public_pem(k1);
        assert_null(ocireg_token_keys_parse(pool, pem, strlen(pem), keys));
    }
    if (k2) {
        pem = public_pem(k2);
        assert_null(ocireg_token_keys_parse(pool, pem, strlen(pem), keys));
    }
    return keys;
}

static char *b64url(const unsigned char *d, size_t n)
{
    static const char al[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    char *out = apr_palloc(pool, n / 3 * 4 + 5), *o = out;
    size_t i;
    for (i = 0; i + 2 < n; i += 3) {
        unsigned v = (unsigned)d[i] << 16 | (unsigned)d[i + 1] << 8 | d[i + 2];
        *o++ = al[v >> 18];
        *o++ = al[(v >> 12) & 63];
        *o++ = al[(v >> 6) & 63];
        *o++ = al[v & 63];
    }
    if (n - i == 1) {
        unsigned v = (unsigned)d[i] << 16;
        *o++ = al[v >> 18];
        *o++ = al[(v >> 12) & 63];
    }
    else if (n - i == 2) {
        unsigned v = (unsigned)d[i] << 16 | (unsigned)d[i + 1] << 8;
        *o++ = al[v >> 18];
        *o++ = al[(v >> 12) & 63];
        *o++ = al[(v >> 6) & 63];
    }
    *o = '\0';
    return out;
}

static char *b64s(const char *s)
{
    return b64url((const unsigned char *)s, strlen(s));
}

/* The signature JOSE wants of input under key: ES256 as raw r||s. */
static char *sign(EVP_PKEY *key, const char *input)
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned char sig[1024];
    size_t n = sizeof(sig);
    assert_int_equal(EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, key), 1);
    assert_int_equal(EVP_DigestSign(ctx, sig, &n,
                                    (const unsigned char *)input,
                                    strlen(input)), 1);
    EVP_MD_CTX_free(ctx);
    if (EVP_PKEY_get_base_id(key) == EVP_PKEY_EC) {
        const unsigned char *q = sig;
        ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &q, (long)n);
        unsigned char raw[64];
        assert_non_null(es);
        BN_bn2binpad(ECDSA_SIG_get0_r(es), raw, 32);
        BN_bn2binpad(ECDSA_SIG_get0_s(es), raw + 32, 32);
        ECDSA_SIG_free(es);
        return b64url(raw, 64);
    }
    return b64url(sig, n);
}

static char *mint_raw(EVP_PKEY *key, const char *header, const char *claims)
{
    char *input = apr_pstrcat(pool, b64s(header), ".", b64s(claims), NULL);
    return apr_pstrcat(pool, input, ".", sign(key, input), NULL);
}

static const char *alg_of(EVP_PKEY *key)
{
    return EVP_PKEY_get_base_id(key) == EVP_PKEY_EC ? "ES256" : "RS256";
}

static char *mint(EVP_PKEY *key, const char *claims)
{
    return mint_raw(key, apr_psprintf(pool, "{\"typ\":\"JWT\",\"alg\":\"%s\","
                                      "\"kid\":\"ABCD:EFGH\"}", alg_of(key)),
                    claims);
}

#define CLAIMS(extra)                                                        \
    "{\"iss\":\"" ISS "\",\"sub\":\"alice\",\"aud\":\"" AUD "\","            \
    "\"exp\":1800000300,\"nbf\":1799999990,\"iat\":1799999990,"              \
    "\"jti\":\"x\",\"access\":[{\"type\":\"repository\",\"name\":\"team/app\"," \
    "\"actions\":[\"pull\",\"push\"]},{\"type\":\"repository\","              \
    "\"name\":\"pub/*\",\"actions\":[\"*\"]},{\"type\":\"registry\","       \
    "\"name\":\"catalog\",\"actions\":[\"*\"]}]" extra "}"

static ocireg_token_verifier verifier(apr_array_header_t *keys)
{
    ocireg_token_verifier v;
    v.issuer = ISS;
    v.audience = AUD;
    v.keys = keys;
    v.leeway = 30;
    return v;
}

static ocireg_token_status check(apr_array_header_t *keys, const char *jwt,
                                 apr_int64_t now, ocireg_token **t)
{
    ocireg_token_verifier v = verifier(keys);
    ocireg_token *tmp;
    return ocireg_token_verify(pool, &v, jwt, strlen(jwt), now, t ? t : &tmp);
}

static void test_es256_valid(void **st)
{
    ocireg_token *t;
    (void)st;
    assert_int_equal(check(keys_of(ec_key, NULL), mint(ec_key, CLAIMS("")),
                           NOW, &t), OCIREG_TOKEN_OK);
    assert_string_equal(t->alg, "ES256");
    assert_string_equal(t->subject, "alice");
    assert_string_equal(t->issuer, ISS);
    assert_int_equal(t->expires, 1800000300);
    assert_true(ocireg_token_allows(t, "repository", "team/app", "pull"));
    assert_true(ocireg_token_allows(t, "repository", "team/app", "push"));
    assert_false(ocireg_token_allows(t, "repository", "team/app", "delete"));
    assert_false(ocireg_token_allows(t, "repository", "team/ap", "pull"));
    assert_false(ocireg_token_allows(t, "repository", "team/app2", "pull"));
    assert_false(ocireg_token_allows(t, "registry", "team/app", "pull"));
    /* A name is matched exactly: "pub/<star>" is a name, not a pattern. */
    assert_false(ocireg_token_allows(t, "repository", "pub/x", "pull"));
    assert_true(ocireg_token_allows(t, "repository", "pub/*", "delete"));
    assert_true(ocireg_token_allows(t, "registry", "catalog", "*"));
    assert_true(ocireg_token_allows(t, "registry", "catalog", "pull"));
    assert_false(ocireg_token_allows(NULL, "registry", "catalog", "*"));
}

static void test_rs256_valid(void **st)
{
    ocireg_token *t;
    (void)st;
    /* Several keys of both types: the one that fits is found. */
    apr_array_header_t *keys = keys_of(ec_other, rsa_other);
    const char *pem = public_pem(rsa_key);
    assert_null(ocireg_token_keys_parse(pool, pem, strlen(pem), keys));
    assert_int_equal(keys->nelts, 3);
    assert_int_equal(check(keys, mint(rsa_key, CLAIMS("")), NOW, &t),
                     OCIREG_TOKEN_OK);
    assert_string_equal(t->alg, "RS256");
    assert_true(ocireg_token_allows(t, "repository", "team/app", "push"));
}

static void test_audience_array_and_optional_claims(void **st)
{
    ocireg_token *t;
    apr_array_header_t *keys = keys_of(ec_key, NULL);
    (void)st;
    assert_int_equal(
        check(keys, mint(ec_key, "{\"iss\":\"" ISS "\",\"aud\":[\"other\",\""
                         AUD "\"],\"exp\":1800000001}"), NOW, &t),
        OCIREG_TOKEN_OK);
    /* No sub (an anonymous token), no access: valid, allows nothing. */
    assert_string_equal(t->subject, "");
    assert_int_equal(t->access->nelts, 0);
    assert_false(ocireg_token_allows(t, "repository", "a", "pull"));
    /* A real number of seconds, and actions left out. */
    assert_int_equal(
        check(keys, mint(ec_key, "{\"iss\":\"" ISS "\",\"aud\":\"" AUD "\","
                         "\"exp\":1800000001.5,\"access\":[{\"type\":"
                         "\"repository\",\"name\":\"a\"}]}"), NOW, &t),
        OCIREG_TOKEN_OK);
    assert_int_equal(t->access->nelts, 1);
    assert_false(ocireg_token_allows(t, "repository", "a", "pull"));
    /* An expiry far beyond 64 bits of seconds. */
    assert_int_equal(
        check(keys, mint(ec_key, "{\"iss\":\"" ISS "\",\"aud\":\"" AUD "\","
                         "\"exp\":1800e000300}"), NOW, &t),
        OCIREG_TOKEN_OK);
    assert_true(t->expires == INT64_MAX);
}

static void test_time_claims_with_leeway(void **st)
{
    apr_array_header_t *keys = keys_of(ec_key, NULL);
    const char *jwt = mint(ec_key, CLAIMS(""));
    (void)st;
    /* exp 1800000300, nbf 1799999990, leeway 30 */
    assert_int_equal(check(keys, jwt, 1800000329, NULL), OCIREG_TOKEN_OK);
    assert_int_equal(check(keys, jwt, 1800000330, NULL), OCIREG_TOKEN_EXPIRED);
    assert_int_equal(check(keys, jwt, 1900000000, NULL), OCIREG_TOKEN_EXPIRED);
    assert_int_equal(check(keys, jwt, 1799999960, NULL), OCIREG_TOKEN_OK);
    assert_int_equal(check(keys, jwt, 1799999959, NULL),
                     OCIREG_TOKEN_NOT_YET_VALID);
    /* Without leeway. */
    {
        ocireg_token_verifier v = verifier(keys);
        ocireg_token *t;
        v.leeway = 0;
        assert_int_equal(ocireg_token_verify(pool, &v, jwt, strlen(jwt),
                                             1800000300, &t),
                         OCIREG_TOKEN_EXPIRED);
        assert_null(t);
        assert_int_equal(ocireg_token_verify(pool, &v, jwt, strlen(jwt),
                                             1799999989, &t),
                         OCIREG_TOKEN_NOT_YET_VALID);
    }
    assert_int_equal(check(keys, mint(ec_key, "{\"iss\":\"" ISS "\",\"aud\":"
                                      "\"" AUD "\"}"), NOW, NULL),
                     OCIREG_TOKEN_NO_EXPIRY);
    assert_int_equal(check(keys, mint(ec_key, "{\"iss\":\"" ISS "\",\"aud\":"
                                      "\"" AUD "\",\"exp\":\"1800000300\"}"),
                           NOW, NULL),
                     OCIREG_TOKEN_MALFORMED);
    assert_int_equal(check(keys, mint(ec_key, "{\"iss\":\"" ISS "\",\"aud\":"
                                      "\"" AUD "\",\"exp\":1800000300,"
                                      "\"nbf\":null}"), NOW, NULL),
                     OCIREG_TOKEN_MALFORMED);
}

static void test_issuer_and_audience(void **st)
{
    apr_array_header_t *keys = keys_of(rsa_key, NULL);
    (void)st;
    assert_int_equal(check(keys, mint(rsa_key, "{\"iss\":\"other\",\"aud\":"
                                      "\"" AUD "\",\"exp\":1800000300}"),
                           NOW, NULL),
                     OCIREG_TOKEN_WRONG_ISSUER);
    assert_int_equal(check(keys, mint(rsa_key, "{\"aud\":\"" AUD "\","
                                      "\"exp\":1800000300}"), NOW, NULL),
                     OCIREG_TOKEN_WRONG_ISSUER);
    assert_int_equal(check(keys, mint(rsa_key, "{\"iss\":\"" ISS "x\",\"aud\":"
                                      "\"" AUD "\",\"exp\":1800000300}"),
                           NOW, NULL),
                     OCIREG_TOKEN_WRONG_ISSUER);
    assert_int_equal(check(keys, mint(rsa_key, "{\"iss\":\"" ISS "\",\"aud\":"
                                      "\"other\",\"exp\":1800000300}"),
                           NOW, NULL),
                     OCIREG_TOKEN_WRONG_AUDIENCE);
    assert_int_equal(check(keys, mint(rsa_key, "{\"iss\":\"" ISS "\",\"aud\":"
                                      "[\"a\",\"b\"],\"exp\":1800000300}"),
                           NOW, NULL),
                     OCIREG_TOKEN_WRONG_AUDIENCE);
    assert_int_equal(check(keys, mint(rsa_key, "{\"iss\":\"" ISS "\","
                                      "\"exp\":1800000300}"), NOW, NULL),
                     OCIREG_TOKEN_WRONG_AUDIENCE);
    assert_int_equal(check(keys, mint(rsa_key, "{\"iss\":\"" ISS "\",\"aud\":"
                                      "[],\"exp\":1800000300}"), NOW, NULL),
                     OCIREG_TOKEN_WRONG_AUDIENCE);
    assert_int_equal(check(keys, mint(rsa_key, "{\"iss\":\"" ISS "\",\"aud\":"
                                      "7,\"exp\":1800000300}"), NOW, NULL),
                     OCIREG_TOKEN_MALFORMED);
    /* A verifier without an issuer or audience accepts nothing. */
    {
        const char *jwt = mint(rsa_key, CLAIMS(""));
        ocireg_token_verifier v = verifier(keys);
        ocireg_token *t;
        v.issuer = NULL;
        assert_int_equal(ocireg_token_verify(pool, &v, jwt, strlen(jwt), NOW,
                                             &t), OCIREG_TOKEN_WRONG_ISSUER);
        v.issuer = ISS;
        v.audience = NULL;
        assert_int_equal(ocireg_token_verify(pool, &v, jwt, strlen(jwt), NOW,
                                             &t), OCIREG_TOKEN_WRONG_AUDIENCE);
    }
}

static void test_bad_signatures(void **st)
{
    apr_array_header_t *keys = keys_of(ec_key, rsa_key);
    char *jwt, *dot;
    (void)st;
    /* Signed by keys that are not configured. */
    assert_int_equal(check(keys, mint(ec_other, CLAIMS("")), NOW, NULL),
                     OCIREG_TOKEN_BAD_SIGNATURE);
    assert_int_equal(check(keys, mint(rsa_other, CLAIMS("")), NOW, NULL),
                     OCIREG_TOKEN_BAD_SIGNATURE);
    /* No key of the alg's type at all. */
    assert_int_equal(check(keys_of(ec_key, NULL), mint(rsa_key, CLAIMS("")),
                           NOW, NULL),
                     OCIREG_TOKEN_NO_KEY);
    assert_int_equal(check(keys_of(rsa_key, NULL), mint(ec_key, CLAIMS("")),
                           NOW, NULL),
                     OCIREG_TOKEN_NO_KEY);
    /* The claims changed after signing (alice becomes root). */
    jwt = mint(ec_key, CLAIMS(""));
    dot = strchr(jwt, '.');
    {
        char *forged = apr_pstrcat(
            pool, apr_pstrndup(pool, jwt, (apr_size_t)(dot - jwt + 1)),
            b64s(apr_pstrcat(pool, CLAIMS(",\"x\":1"), NULL)),
            strrchr(jwt, '.'), NULL);
        assert_int_equal(check(keys, forged, NOW, NULL),
                         OCIREG_TOKEN_BAD_SIGNATURE);
    }
    /* An RSA signature under a header claiming ES256, and the reverse. */
    {
        const char *claims = b64s(CLAIMS(""));
        const char *h_es = b64s("{\"alg\":\"ES256\"}");
        const char *h_rs = b64s("{\"alg\":\"RS256\"}");
        const char *rs_sig =
            sign(rsa_key, apr_pstrcat(pool, h_es, ".", claims, NULL));
        const char *es_sig =
            sign(ec_key, apr_pstrcat(pool, h_rs, ".", claims, NULL));
        assert_int_equal(check(keys, apr_pstrcat(pool, h_es, ".", claims, ".",
                                                 rs_sig, NULL), NOW, NULL),
                         OCIREG_TOKEN_BAD_SIGNATURE);
        assert_int_equal(check(keys, apr_pstrcat(pool, h_rs, ".", claims, ".",
                                                 es_sig, NULL), NOW, NULL),
                         OCIREG_TOKEN_BAD_SIGNATURE);
    }
    /* An ES256 signature of the wrong length, and a zero one. */
    {
        unsigned char raw[65];
        const char *input = apr_pstrcat(pool, b64s("{\"alg\":\"ES256\"}"), ".",
                                        b64s(CLAIMS("")), NULL);
        memset(raw, 0, sizeof(raw));
        assert_int_equal(check(keys, apr_pstrcat(pool, input, ".",
                                                 b64url(raw, 65), NULL),
                               NOW, NULL),
                         OCIREG_TOKEN_BAD_SIGNATURE);
        assert_int_equal(check(keys, apr_pstrcat(pool, input, ".",
                                                 b64url(raw, 64), NULL),
                               NOW, NULL),
                         OCIREG_TOKEN_BAD_SIGNATURE);
    }
}

static void test_algorithms_refused(void **st)
{
    apr_array_header_t *keys = keys_of(ec_key, rsa_key);
    const char *claims = b64s(CLAIMS(""));
    const char *pem = public_pem(rsa_key);
    unsigned char mac[32];
    unsigned int maclen = sizeof(mac);
    const char *input;
    (void)st;
    /* alg none, with and without a signature part. */
    input = apr_pstrcat(pool, b64s("{\"alg\":\"none\"}"), ".", claims, NULL);
    assert_int_equal(check(keys, apr_pstrcat(pool, input, ".", NULL), NOW,
                           NULL), OCIREG_TOKEN_BAD_ALG);
    assert_int_equal(check(keys, apr_pstrcat(pool, input, ".AAAA", NULL), NOW,
                           NULL), OCIREG_TOKEN_BAD_ALG);
    /* HS256 keyed with the public key's PEM: the classic confusion. */
    input = apr_pstrcat(pool, b64s("{\"alg\":\"HS256\"}"), ".", claims, NULL);
    HMAC(EVP_sha256(), pem, (int)strlen(pem), (const unsigned char *)input,
         strlen(input), mac, &maclen);
    assert_int_equal(check(keys, apr_pstrcat(pool, input, ".",
                                             b64url(mac, maclen), NULL),
                           NOW, NULL), OCIREG_TOKEN_BAD_ALG);
    assert_int_equal(check(keys, mint_raw(ec_key, "{\"alg\":\"ES384\"}",
                                          CLAIMS("")), NOW, NULL),
                     OCIREG_TOKEN_BAD_ALG);
    assert_int_equal(check(keys, mint_raw(rsa_key, "{\"alg\":\"PS256\"}",
                                          CLAIMS("")), NOW, NULL),
                     OCIREG_TOKEN_BAD_ALG);
    assert_int_equal(check(keys, mint_raw(rsa_key, "{\"alg\":\"rs256\"}",
                                          CLAIMS("")), NOW, NULL),
                     OCIREG_TOKEN_BAD_ALG);
    assert_int_equal(check(keys, mint_raw(rsa_key, "{\"typ\":\"JWT\"}",
                                          CLAIMS("")), NOW, NULL),
                     OCIREG_TOKEN_MALFORMED);
    assert_int_equal(check(keys, mint_raw(rsa_key, "{\"alg\":256}",
                                          CLAIMS("")), NOW, NULL),
                     OCIREG_TOKEN_MALFORMED);
    /* Extensions we would have to understand. */
    assert_int_equal(check(keys, mint_raw(rsa_key, "{\"alg\":\"RS256\","
                                          "\"crit\":[\"exp\"]}", CLAIMS("")),
                           NOW, NULL),
                     OCIREG_TOKEN_MALFORMED);
}

static void test_malformed(void **st)
{
    apr_array_header_t *keys = keys_of(ec_key, rsa_key);
    const char *good = mint(ec_key, CLAIMS(""));
    const char *h = b64s("{\"alg\":\"ES256\"}");
    char *bad;
    char big[OCIREG_TOKEN_MAX_LEN + 2];
    (void)st;
    assert_int_equal(check(keys, "", NOW, NULL), OCIREG_TOKEN_MALFORMED);
    assert_int_equal(check(keys, "abc", NOW, NULL), OCIREG_TOKEN_MALFORMED);
    assert_int_equal(check(keys, "a.b", NOW, NULL), OCIREG_TOKEN_MALFORMED);
    assert_int_equal(check(keys, "..", NOW, NULL), OCIREG_TOKEN_MALFORMED);
    assert_int_equal(check(keys, apr_pstrcat(pool, good, ".x", NULL), NOW,
                           NULL), OCIREG_TOKEN_MALFORMED);
    /* Standard base64's characters and padding are not base64url. */
    bad = apr_pstrdup(pool, good);
    bad[3] = '+';
    assert_int_equal(check(keys, bad, NOW, NULL), OCIREG_TOKEN_MALFORMED);
    assert_int_equal(check(keys, apr_pstrcat(pool, good, "==", NULL), NOW,
                           NULL), OCIREG_TOKEN_MALFORMED);
    bad = apr_pstrcat(pool, "  ", good, NULL);
    assert_int_equal(check(keys, bad, NOW, NULL), OCIREG_TOKEN_MALFORMED);
    /* Header or claims that are not a JSON object. */
    assert_int_equal(check(keys, mint_raw(ec_key, "[\"ES256\"]", CLAIMS("")),
                           NOW, NULL), OCIREG_TOKEN_MALFORMED);
    assert_int_equal(check(keys, mint_raw(ec_key, "{\"alg\":\"ES256\"",
                                          CLAIMS("")), NOW, NULL),
                     OCIREG_TOKEN_MALFORMED);
    assert_int_equal(check(keys, mint(ec_key, "[1800000300]"), NOW, NULL),
                     OCIREG_TOKEN_MALFORMED);
    assert_int_equal(check(keys, mint(ec_key, "\"claims\""), NOW, NULL),
                     OCIREG_TOKEN_MALFORMED);
    assert_int_equal(check(keys, mint(ec_key, "{\"exp\":"), NOW, NULL),
                     OCIREG_TOKEN_MALFORMED);
    /* A claim given twice could be read either way. */
    assert_int_equal(check(keys, mint(ec_key, CLAIMS(",\"sub\":\"root\"")),
                           NOW, NULL), OCIREG_TOKEN_MALFORMED);
    /* An access claim of the wrong shape. */
    assert_int_equal(check(keys, mint(ec_key, "{\"iss\":\"" ISS "\",\"aud\":"
                                      "\"" AUD "\",\"exp\":1800000300,"
                                      "\"access\":{\"type\":\"repository\"}}"),
                           NOW, NULL), OCIREG_TOKEN_MALFORMED);
    assert_int_equal(check(keys, mint(ec_key, "{\"iss\":\"" ISS "\",\"aud\":"
                                      "\"" AUD "\",\"exp\":1800000300,"
                                      "\"access\":[{\"type\":\"repository\","
                                      "\"name\":\"a\",\"actions\":[1]}]}"),
                           NOW, NULL), OCIREG_TOKEN_MALFORMED);
    assert_int_equal(check(keys, mint(ec_key, "{\"iss\":\"" ISS "\",\"aud\":"
                                      "\"" AUD "\",\"exp\":1800000300,"
                                      "\"access\":[\"repository:a:pull\"]}"),
                           NOW, NULL), OCIREG_TOKEN_MALFORMED);
    assert_int_equal(check(keys, mint(ec_key, "{\"iss\":\"" ISS "\",\"aud\":"
                                      "\"" AUD "\",\"exp\":1800000300,"
                                      "\"sub\":5}"), NOW, NULL),
                     OCIREG_TOKEN_MALFORMED);
    /* Claims that are not base64url even though the signature covers
     * them. */
    {
        const char *input = apr_pstrcat(pool, h, ".e30*", NULL);
        assert_int_equal(check(keys, apr_pstrcat(pool, input, ".",
                                                 sign(ec_key, input), NULL),
                               NOW, NULL),
                         OCIREG_TOKEN_MALFORMED);
    }
    /* Over the cap, before anything is decoded. */
    memset(big, 'A', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    big[10] = '.';
    big[20] = '.';
    assert_int_equal(check(keys, big, NOW, NULL), OCIREG_TOKEN_TOO_LONG);
}

static void test_base64url(void **st)
{
    apr_size_t n;
    unsigned char *d;
    (void)st;
    d = ocireg_base64url_decode(pool, "", 0, &n);
    assert_non_null(d);
    assert_int_equal(n, 0);
    d = ocireg_base64url_decode(pool, "aGk", 3, &n);
    assert_non_null(d);
    assert_int_equal(n, 2);
    assert_memory_equal(d, "hi", 2);
    d = ocireg_base64url_decode(pool, "-_8", 3, &n);
    assert_non_null(d);
    assert_int_equal(n, 2);
    assert_int_equal(d[0], 0xfb);
    assert_int_equal(d[1], 0xff);
    assert_null(ocireg_base64url_decode(pool, "aGl", 3, &n)); /* stray bits */
    assert_null(ocireg_base64url_decode(pool, "aGk=", 4, &n));
    assert_null(ocireg_base64url_decode(pool, "a", 1, &n));
    assert_null(ocireg_base64url_decode(pool, "a/Gk", 4, &n));
    assert_null(ocireg_base64url_decode(pool, "aG\0k", 4, &n));
}

static const char *refusal(const char *pem)
{
    apr_array_header_t *keys = apr_array_make(pool, 1, sizeof(void *));
    const char *err = ocireg_token_keys_parse(pool, pem, strlen(pem), keys);
    if (err)
        assert_int_equal(keys->nelts, 0);
    return err;
}

static const char *private_pem(EVP_PKEY *k)
{
    BIO *b = BIO_new(BIO_s_mem());
    char *data;
    long n;
    const char *out;
    assert_int_equal(PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL,
                                              NULL), 1);
    n = BIO_get_mem_data(b, &data);
    out = apr_pstrndup(pool, data, (apr_size_t)n);
    BIO_free(b);
    return out;
}

static const char *certificate_pem(EVP_PKEY *k)
{
    X509 *x = X509_new();
    X509_NAME *name;
    BIO *b = BIO_new(BIO_s_mem());
    char *data;
    long n;
    const char *out;
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), 0);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600);
    X509_set_pubkey(x, k);
    name = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                               (const unsigned char *)"token", -1, -1, 0);
    X509_set_issuer_name(x, name);
    assert_true(X509_sign(x, k, EVP_sha256()) > 0);
    assert_int_equal(PEM_write_bio_X509(b, x), 1);
    n = BIO_get_mem_data(b, &data);
    out = apr_pstrndup(pool, data, (apr_size_t)n);
    BIO_free(b);
    X509_free(x);
    return out;
}

static void test_keys(void **st)
{
    apr_array_header_t *keys = apr_array_make(pool, 1, sizeof(void *));
    const char *both, *cert;
    EVP_PKEY *p384 = EVP_EC_gen("P-384");
    EVP_PKEY *rsa1024 = EVP_RSA_gen(1024);
    EVP_PKEY *ed = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    const char *err;
    (void)st;
    /* Two keys in one file; a certificate's key verifies a token. */
    both = apr_pstrcat(pool, public_pem(ec_key), "\n", public_pem(rsa_key),
                       NULL);
    assert_null(ocireg_token_keys_parse(pool, both, strlen(both), keys));
    assert_int_equal(keys->nelts, 2);
    assert_int_equal(ocireg_token_key_type_of(
                         APR_ARRAY_IDX(keys, 0, ocireg_token_key *)),
                     OCIREG_TOKEN_KEY_EC_P256);
    assert_int_equal(ocireg_token_key_type_of(
                         APR_ARRAY_IDX(keys, 1, ocireg_token_key *)),
                     OCIREG_TOKEN_KEY_RSA);
    cert = certificate_pem(rsa_key);
    keys = apr_array_make(pool, 1, sizeof(void *));
    assert_null(ocireg_token_keys_parse(pool, cert, strlen(cert), keys));
    assert_int_equal(keys->nelts, 1);
    assert_int_equal(check(keys, mint(rsa_key, CLAIMS("")), NOW, NULL),
                     OCIREG_TOKEN_OK);

    assert_non_null(err = refusal(""));
    assert_non_null(strstr(err, "no PUBLIC KEY"));
    assert_non_null(refusal("not a key at all\n"));
    assert_non_null(err = refusal(private_pem(ec_key)));
    assert_non_null(strstr(err, "private key"));
    assert_non_null(err = refusal(public_pem(p384)));
    assert_non_null(strstr(err, "P-256"));
    assert_non_null(err = refusal(public_pem(rsa1024)));
    assert_non_null(strstr(err, "1024 bits"));
    assert_non_null(err = refusal(public_pem(ed)));
    assert_non_null(strstr(err, "ED25519"));
    /* One bad key spoils the file: nothing of it is kept. */
    assert_non_null(refusal(apr_pstrcat(pool, public_pem(ec_key),
                                        public_pem(p384), NULL)));
    assert_non_null(refusal("-----BEGIN PUBLIC KEY-----\nAAAA\n"
                            "-----END PUBLIC KEY-----\n"));
    EVP_PKEY_free(p384);
    EVP_PKEY_free(rsa1024);
    EVP_PKEY_free(ed);
}

static void test_status_text(void **st)
{
    int i;
    (void)st;
    for (i = OCIREG_TOKEN_OK; i <= OCIREG_TOKEN_WRONG_AUDIENCE; i++)
        assert_string_not_equal(ocireg_token_status_text(i), "unknown");
    assert_string_equal(ocireg_token_status_text(OCIREG_TOKEN_EXPIRED),
                        "expired");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_es256_valid),
        cmocka_unit_test(test_rs256_valid),
        cmocka_unit_test(test_audience_array_and_optional_claims),
        cmocka_unit_test(test_time_claims_with_leeway),
        cmocka_unit_test(test_issuer_and_audience),
        cmocka_unit_test(test_bad_signatures),
        cmocka_unit_test(test_algorithms_refused),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_base64url),
        cmocka_unit_test(test_keys),
        cmocka_unit_test(test_status_text),
    };
    int rc;
    apr_initialize();
    apr_pool_create(&pool, NULL);
    ec_key = EVP_EC_gen("P-256");
    ec_other = EVP_EC_gen("P-256");
    rsa_key = EVP_RSA_gen(2048);
    rsa_other = EVP_RSA_gen(2048);
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    apr_pool_destroy(pool);
    EVP_PKEY_free(ec_key);
    EVP_PKEY_free(ec_other);
    EVP_PKEY_free(rsa_key);
    EVP_PKEY_free(rsa_other);
    apr_terminate();
    return rc;
}
