/* Bearer tokens: compact JWTs (RFC 7519) of the Docker token protocol.
 *
 * Only ES256 and RS256 are accepted: a token server signs with its private
 * key, the registry holds only public keys, so a symmetric alg (HS*) could
 * only mean someone using a public key as an HMAC secret, and `none` means
 * no signature at all. The alg is read from the header, but it only picks
 * which of the configured keys may verify: an EC P-256 key never verifies
 * RS256 and an RSA key never verifies ES256. */
#include <string.h>
#include <jansson.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/ecdsa.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/obj_mac.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <apr_strings.h>
#include "ocireg_token.h"

struct ocireg_token_key {
    EVP_PKEY *pkey;
    ocireg_token_key_type type;
};

const char *ocireg_token_status_text(ocireg_token_status st)
{
    switch (st) {
    case OCIREG_TOKEN_OK: return "valid";
    case OCIREG_TOKEN_MALFORMED: return "malformed";
    case OCIREG_TOKEN_TOO_LONG: return "too long";
    case OCIREG_TOKEN_BAD_ALG: return "algorithm not accepted";
    case OCIREG_TOKEN_NO_KEY: return "no configured key for its algorithm";
    case OCIREG_TOKEN_BAD_SIGNATURE: return "bad signature";
    case OCIREG_TOKEN_NO_EXPIRY: return "no expiry (exp)";
    case OCIREG_TOKEN_EXPIRED: return "expired";
    case OCIREG_TOKEN_NOT_YET_VALID: return "not yet valid (nbf)";
    case OCIREG_TOKEN_WRONG_ISSUER: return "wrong issuer";
    case OCIREG_TOKEN_WRONG_AUDIENCE: return "wrong audience";
    }
    return "unknown";
}

ocireg_token_key_type ocireg_token_key_type_of(const ocireg_token_key *k)
{
    return k->type;
}

/* Keys */

static apr_status_t free_pkey(void *data)
{
    EVP_PKEY_free(data);
    return APR_SUCCESS;
}

static const char *classify(apr_pool_t *p, EVP_PKEY *pkey,
                            ocireg_token_key_type *type)
{
    int id = EVP_PKEY_get_base_id(pkey);
    if (id == EVP_PKEY_EC) {
        char group[64];
        size_t n = 0;
        if (EVP_PKEY_get_group_name(pkey, group, sizeof(group), &n) != 1)
            return "an EC key of unknown curve (only P-256 is accepted)";
        if (strcmp(group, SN_X9_62_prime256v1) != 0)
            return apr_psprintf(p, "an EC key on curve %s (only P-256 is "
                                "accepted, for ES256)", group);
        *type = OCIREG_TOKEN_KEY_EC_P256;
        return NULL;
    }
    if (id == EVP_PKEY_RSA) {
        int bits = EVP_PKEY_get_bits(pkey);
        if (bits < OCIREG_TOKEN_RSA_MIN_BITS)
            return apr_psprintf(p, "an RSA key of %d bits (at least %d are "
                                "needed)", bits, OCIREG_TOKEN_RSA_MIN_BITS);
        *type = OCIREG_TOKEN_KEY_RSA;
        return NULL;
    }
    return apr_psprintf(p, "a %s key (only EC P-256 and RSA are accepted)",
                        OBJ_nid2sn(id));
}

static const char *key_of_block(apr_pool_t *p, const char *name,
                                const unsigned char *der, long len,
                                EVP_PKEY **out)
{
    const unsigned char *q = der;
    *out = NULL;
    if (strcmp(name, "PUBLIC KEY") == 0)
        *out = d2i_PUBKEY(NULL, &q, len);
    else if (strcmp(name, "RSA PUBLIC KEY") == 0)
        *out = d2i_PublicKey(EVP_PKEY_RSA, NULL, &q, len);
    else if (strcmp(name, "CERTIFICATE") == 0) {
        X509 *x = d2i_X509(NULL, &q, len);
        if (x) {
            *out = X509_get_pubkey(x);
            X509_free(x);
        }
    }
    else if (strstr(name, "PRIVATE KEY"))
        return "a private key: give the token server's public key "
               "(openssl pkey -pubout) or its certificate";
    else
        return apr_psprintf(p, "an unexpected PEM block \"%s\"", name);
    return *out ? NULL
                : apr_psprintf(p, "an unreadable \"%s\" block", name);
}

const char *ocireg_token_keys_parse(apr_pool_t *p, const char *pem,
                                    apr_size_t len,
                                    apr_array_header_t *keys)
{
    BIO *bio = BIO_new_mem_buf(pem, (int)len);
    apr_array_header_t *found = apr_array_make(p, 2, sizeof(EVP_PKEY *));
    const char *err = NULL;
    int i;

    if (!bio || len > (apr_size_t)1 << 30)
        err = "cannot read the PEM text";
    while (!err) {
        char *name = NULL, *header = NULL;
        unsigned char *data = NULL;
        long dlen = 0;
        EVP_PKEY *pkey = NULL;
        if (!PEM_read_bio(bio, &name, &header, &data, &dlen))
            break; /* no further block */
        /* `openssl ecparam -genkey` writes these before the key. */
        if (strcmp(name, "EC PARAMETERS") != 0) {
            err = key_of_block(p, name, data, dlen, &pkey);
            if (!err) {
                *(EVP_PKEY **)apr_array_push(found) = pkey;
                if (*header)
                    err = "an encrypted or annotated PEM block";
            }
        }
        OPENSSL_free(name);
        OPENSSL_free(header);
        OPENSSL_free(data);
    }
    ERR_clear_error();
    BIO_free(bio);
    if (!err && found->nelts == 0)
        err = "no PUBLIC KEY or CERTIFICATE block";
    for (i = 0; !err && i < found->nelts; i++) {
        ocireg_token_key_type type;
        err = classify(p, APR_ARRAY_IDX(found, i, EVP_PKEY *), &type);
    }
    for (i = 0; i < found->nelts; i++) {
        EVP_PKEY *pkey = APR_ARRAY_IDX(found, i, EVP_PKEY *);
        ocireg_token_key *k;
        if (err) {
            EVP_PKEY_free(pkey);
            continue;
        }
        k = apr_pcalloc(p, sizeof(*k));
        k->pkey = pkey;
        classify(p, pkey, &k->type);
        apr_pool_cleanup_register(p, pkey, free_pkey,
                                  apr_pool_cleanup_null);
        *(ocireg_token_key **)apr_array_push(keys) = k;
    }
    return err;
}

/* Signatures */

/* JOSE's ES256 signature is r and s, 32 bytes each, big-endian; OpenSSL
 * verifies the DER of an ECDSA-Sig-Value. */
static unsigned char *es256_der(const unsigned char *raw, int *derlen)
{
    ECDSA_SIG *sig = ECDSA_SIG_new();
    BIGNUM *r = BN_bin2bn(raw, 32, NULL);
    BIGNUM *s = BN_bin2bn(raw + 32, 32, NULL);
    unsigned char *der = NULL;
    if (!sig || !r || !s || !ECDSA_SIG_set0(sig, r, s)) {
        BN_free(r);
        BN_free(s);
        ECDSA_SIG_free(sig);
        return NULL;
    }
    *derlen = i2d_ECDSA_SIG(sig, &der);
    ECDSA_SIG_free(sig);
    if (*derlen <= 0) {
        OPENSSL_free(der);
        return NULL;
    }
    return der;
}

static int verify_with(EVP_PKEY *pkey, const unsigned char *sig,
                       size_t siglen, const char *input, size_t inlen)
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int ok = ctx
             && EVP_DigestVerifyInit(ctx, NULL, EVP_sha256(), NULL, pkey)
                    == 1
             && EVP_DigestVerify(ctx, sig, siglen,
                                 (const unsigned char *)input, inlen)
                    == 1;
    EVP_MD_CTX_free(ctx);
    return ok;
}

static ocireg_token_status check_signature(const ocireg_token_verifier *v,
                                           ocireg_token_key_type type,
                                           const unsigned char *sig,
                                           apr_size_t siglen,
                                           const char *input,
                                           apr_size_t inlen)
{
    unsigned char *der = NULL;
    int derlen = 0, tried = 0, ok = 0, i;

    if (type == OCIREG_TOKEN_KEY_EC_P256) {
        if (siglen != 64)
            return OCIREG_TOKEN_BAD_SIGNATURE;
        der = es256_der(sig, &derlen);
        if (!der)
            return OCIREG_TOKEN_BAD_SIGNATURE;
    }
    for (i = 0; v->keys && i < v->keys->nelts && !ok; i++) {
        const ocireg_token_key *k =
            APR_ARRAY_IDX(v->keys, i, const ocireg_token_key *);
        if (k->type != type)
            continue;
        tried++;
        ok = der ? verify_with(k->pkey, der, (size_t)derlen, input, inlen)
                 : verify_with(k->pkey, sig, siglen, input, inlen);
    }
    OPENSSL_free(der);
    ERR_clear_error();
    if (!tried)
        return OCIREG_TOKEN_NO_KEY;
    return ok ? OCIREG_TOKEN_OK : OCIREG_TOKEN_BAD_SIGNATURE;
}

/* Claims */

static json_t *decode_object(apr_pool_t *p, const char *s, apr_size_t len)
{
    apr_size_t n;
    unsigned char *raw = ocireg_base64url_decode(p, s, len, &n);
    json_t *j;
    if (!raw)
        return NULL;
    j = json_loadb((const char *)raw, n, JSON_REJECT_DUPLICATES, NULL);
    if (j && !json_is_object(j)) {
        json_decref(j);
        return NULL;
    }
    return j;
}

static int audience_matches(const json_t *aud, const char *want)
{
    size_t i;
    const json_t *a;
    if (json_is_string(aud))
        return strcmp(json_string_value(aud), want) == 0;
    json_array_foreach(aud, i, a)
        if (json_is_string(a) && strcmp(json_string_value(a), want) == 0)
            return 1;
    return 0;
}

static int parse_access(apr_pool_t *p, const json_t *access,
                        apr_array_header_t *out)
{
    size_t i, j;
    const json_t *e, *a;
    if (!access)
        return 1;
    if (!json_is_array(access))
        return 0;
    json_array_foreach(access, i, e) {
        const json_t *type = json_object_get(e, "type");
        const json_t *name = json_object_get(e, "name");
        const json_t *actions = json_object_get(e, "actions");
        ocireg_token_access *acc;
        if (!json_is_object(e) || !json_is_string(type)
            || !json_is_string(name)
            || (actions && !json_is_array(actions)))
            return 0;
        acc = apr_array_push(out);
        acc->type = apr_pstrdup(p, json_string_value(type));
        acc->name = apr_pstrdup(p, json_string_value(name));
        acc->actions = apr_array_make(p, 2, sizeof(const char *));
        json_array_foreach(actions, j, a) {
            if (!json_is_string(a))
                return 0;
            *(const char **)apr_array_push(acc->actions) =
                apr_pstrdup(p, json_string_value(a));
        }
    }
    return 1;
}

static ocireg_token_status check_claims(apr_pool_t *p,
                                        const ocireg_token_verifier *v,
                                        const json_t *c, apr_int64_t now,
                                        ocireg_token *t)
{
    const json_t *exp = json_object_get(c, "exp");
    const json_t *nbf = json_object_get(c, "nbf");
    const json_t *iss = json_object_get(c, "iss");
    const json_t *aud = json_object_get(c, "aud");
    const json_t *sub = json_object_get(c, "sub");
    double dnow = (double)now;
    double leeway = (double)(v->leeway > 0 ? v->leeway : 0);

    if ((exp && !json_is_number(exp)) || (nbf && !json_is_number(nbf))
        || (iss && !json_is_string(iss)) || (sub && !json_is_string(sub))
        || (aud && !json_is_string(aud) && !json_is_array(aud)))
        return OCIREG_TOKEN_MALFORMED;
    if (!exp)
        return OCIREG_TOKEN_NO_EXPIRY;
    if (json_number_value(exp) <= dnow - leeway)
        return OCIREG_TOKEN_EXPIRED;
    if (nbf && json_number_value(nbf) > dnow + leeway)
        return OCIREG_TOKEN_NOT_YET_VALID;
    if (!v->issuer || !iss || strcmp(json_string_value(iss), v->issuer) != 0)
        return OCIREG_TOKEN_WRONG_ISSUER;
    if (!v->audience || !aud || !audience_matches(aud, v->audience))
        return OCIREG_TOKEN_WRONG_AUDIENCE;
    t->issuer = apr_pstrdup(p, json_string_value(iss));
    t->subject = sub ? apr_pstrdup(p, json_string_value(sub)) : "";
    /* A double beyond 64 bits does not convert (found by fuzz_token). */
    t->expires = json_number_value(exp) >= 9223372036854775807.0
                     ? APR_INT64_MAX
                     : (apr_int64_t)json_number_value(exp);
    t->access = apr_array_make(p, 2, sizeof(ocireg_token_access));
    if (!parse_access(p, json_object_get(c, "access"), t->access))
        return OCIREG_TOKEN_MALFORMED;
    return OCIREG_TOKEN_OK;
}

ocireg_token_status ocireg_token_verify(apr_pool_t *p,
                                        const ocireg_token_verifier *v,
                                        const char *jwt, apr_size_t len,
                                        apr_int64_t now, ocireg_token **out)
{
    const char *dot1, *dot2, *payload, *sig64;
    json_t *header = NULL, *claims = NULL;
    const json_t *alg;
    unsigned char *sig;
    apr_size_t siglen;
    ocireg_token_key_type type;
    ocireg_token *t;
    ocireg_token_status st;

    *out = NULL;
    if (len > OCIREG_TOKEN_MAX_LEN)
        return OCIREG_TOKEN_TOO_LONG;
    dot1 = memchr(jwt, '.', len);
    if (!dot1)
        return OCIREG_TOKEN_MALFORMED;
    payload = dot1 + 1;
    dot2 = memchr(payload, '.', len - (apr_size_t)(payload - jwt));
    if (!dot2 || dot1 == jwt || dot2 == payload)
        return OCIREG_TOKEN_MALFORMED;
    sig64 = dot2 + 1;
    /* A third dot (JWE has five parts) fails base64url below. */

    header = decode_object(p, jwt, (apr_size_t)(dot1 - jwt));
    if (!header)
        return OCIREG_TOKEN_MALFORMED;
    t = apr_pcalloc(p, sizeof(*t));
    alg = json_object_get(header, "alg");
    if (!json_is_string(alg)) {
        st = OCIREG_TOKEN_MALFORMED;
        goto done;
    }
    if (strcmp(json_string_value(alg), "ES256") == 0) {
        type = OCIREG_TOKEN_KEY_EC_P256;
        t->alg = "ES256";
    }
    else if (strcmp(json_string_value(alg), "RS256") == 0) {
        type = OCIREG_TOKEN_KEY_RSA;
        t->alg = "RS256";
    }
    else {
        st = OCIREG_TOKEN_BAD_ALG;
        goto done;
    }
    /* Extensions a token says must be understood: we understand none. */
    if (json_object_get(header, "crit")) {
        st = OCIREG_TOKEN_MALFORMED;
        goto done;
    }
    sig = ocireg_base64url_decode(p, sig64, len - (apr_size_t)(sig64 - jwt),
                                  &siglen);
    if (!sig || siglen == 0) {
        st = OCIREG_TOKEN_MALFORMED;
        goto done;
    }
    st = check_signature(v, type, sig, siglen, jwt,
                         (apr_size_t)(dot2 - jwt));
    if (st != OCIREG_TOKEN_OK)
        goto done;
    claims = decode_object(p, payload, (apr_size_t)(dot2 - payload));
    if (!claims) {
        st = OCIREG_TOKEN_MALFORMED;
        goto done;
    }
    st = check_claims(p, v, claims, now, t);
    if (st == OCIREG_TOKEN_OK)
        *out = t;
done:
    json_decref(header);
    json_decref(claims);
    return st;
}

int ocireg_token_allows(const ocireg_token *t, const char *type,
                        const char *name, const char *action)
{
    int i, j;
    if (!t || !t->access)
        return 0;
    for (i = 0; i < t->access->nelts; i++) {
        const ocireg_token_access *a =
            &APR_ARRAY_IDX(t->access, i, ocireg_token_access);
        if (strcmp(a->type, type) != 0 || strcmp(a->name, name) != 0)
            continue;
        for (j = 0; j < a->actions->nelts; j++) {
            const char *have = APR_ARRAY_IDX(a->actions, j, const char *);
            if (strcmp(have, "*") == 0 || strcmp(have, action) == 0)
                return 1;
        }
    }
    return 0;
}
