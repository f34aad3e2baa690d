/* SigV4 with OpenSSL's one-shot EVP_Digest and HMAC(), both of which are
 * current API in OpenSSL 3 (unlike SHA256_* and HMAC_CTX_*). */
#include <stdlib.h>
#include <string.h>
#include <apr_strings.h>
#include <apr_tables.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include "ocireg_sigv4.h"

#define ALGORITHM "AWS4-HMAC-SHA256"
#define MD_LEN 32

static const char hexdigits[] = "0123456789abcdef";

static char *to_hex(apr_pool_t *p, const unsigned char *md, apr_size_t n)
{
    char *out = apr_palloc(p, 2 * n + 1);
    apr_size_t i;
    for (i = 0; i < n; i++) {
        out[2 * i] = hexdigits[md[i] >> 4];
        out[2 * i + 1] = hexdigits[md[i] & 15];
    }
    out[2 * n] = '\0';
    return out;
}

static const char *sha256_hex(apr_pool_t *p, const char *s)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    if (!EVP_Digest(s, strlen(s), md, &len, EVP_sha256(), NULL)
        || len != MD_LEN)
        return NULL;
    return to_hex(p, md, len);
}

static int hmac(const unsigned char *key, apr_size_t keylen, const char *msg,
                unsigned char out[MD_LEN])
{
    unsigned int len = 0;
    return HMAC(EVP_sha256(), key, (int)keylen, (const unsigned char *)msg,
                strlen(msg), out, &len) != NULL && len == MD_LEN;
}

/* The date is copied into the credential scope and the signing key, so a
 * malformed one would sign a request the server can never verify. */
static int valid_amz_date(const char *d)
{
    int i;
    if (!d || strlen(d) != 16 || d[8] != 'T' || d[15] != 'Z')
        return 0;
    for (i = 0; i < 15; i++)
        if (i != 8 && (d[i] < '0' || d[i] > '9'))
            return 0;
    return 1;
}

static int valid_creds(const ocireg_sigv4_creds *c)
{
    return c && c->access_key && c->secret_key && c->region && c->service
        && *c->access_key && *c->region && *c->service;
}

static const char *scope(apr_pool_t *p, const ocireg_sigv4_creds *c,
                         const char *amz_date)
{
    return apr_psprintf(p, "%.8s/%s/%s/aws4_request", amz_date, c->region,
                        c->service);
}

static int unreserved(unsigned char ch)
{
    return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z')
        || (ch >= '0' && ch <= '9') || ch == '-' || ch == '.' || ch == '_'
        || ch == '~';
}

/* Takes a length because a decoded component may hold a NUL (%00). */
static char *encode_n(apr_pool_t *p, const char *s, apr_size_t n,
                      int keep_slash)
{
    char *out = apr_palloc(p, 3 * n + 1), *o = out;
    apr_size_t i;
    for (i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (unreserved(ch) || (keep_slash && ch == '/')) {
            *o++ = (char)ch;
        }
        else {
            *o++ = '%';
            *o++ = "0123456789ABCDEF"[ch >> 4];
            *o++ = "0123456789ABCDEF"[ch & 15];
        }
    }
    *o = '\0';
    return out;
}

const char *ocireg_sigv4_uri_encode(apr_pool_t *p, const char *s,
                                    int keep_slash)
{
    return encode_n(p, s ? s : "", s ? strlen(s) : 0, keep_slash);
}

static int hexval(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

/* Decodes s[0..n) in place. A '%' not followed by two hex digits stays a
 * literal '%', as S3 reads it. */
static apr_size_t decode_inplace(char *s, apr_size_t n)
{
    apr_size_t i, o = 0;
    for (i = 0; i < n; i++) {
        int hi, lo;
        if (s[i] == '%' && i + 2 < n && (hi = hexval(s[i + 1])) >= 0
            && (lo = hexval(s[i + 2])) >= 0) {
            s[o++] = (char)(hi * 16 + lo);
            i += 2;
        }
        else {
            s[o++] = s[i];
        }
    }
    return o;
}

typedef struct {
    const char *key;
    const char *value;
} qpair;

static int cmp_pair(const void *a, const void *b)
{
    const qpair *x = a, *y = b;
    int c = strcmp(x->key, y->key);
    return c ? c : strcmp(x->value, y->value);
}

static const char *canonical_component(apr_pool_t *p, const char *s,
                                       apr_size_t n)
{
    char *copy = apr_pstrmemdup(p, s, n);
    return encode_n(p, copy, decode_inplace(copy, n), 0);
}

const char *ocireg_sigv4_canonical_query(apr_pool_t *p, const char *query)
{
    apr_array_header_t *pairs = apr_array_make(p, 8, sizeof(qpair));
    const char *s = query ? query : "";
    qpair *v;
    char *out, *o;
    apr_size_t total = 0;
    int i;

    while (*s) {
        const char *end = strchr(s, '&'), *eq;
        apr_size_t n = end ? (apr_size_t)(end - s) : strlen(s);
        if (n) {
            qpair *q = apr_array_push(pairs);
            eq = memchr(s, '=', n);
            if (eq) {
                q->key = canonical_component(p, s, (apr_size_t)(eq - s));
                q->value = canonical_component(p, eq + 1,
                                               n - (apr_size_t)(eq - s) - 1);
            }
            else {
                q->key = canonical_component(p, s, n);
                q->value = "";
            }
            total += strlen(q->key) + strlen(q->value) + 2;
        }
        s += n;
        if (*s == '&')
            s++;
    }
    v = (qpair *)pairs->elts;
    if (pairs->nelts > 1)
        qsort(v, (size_t)pairs->nelts, sizeof(qpair), cmp_pair);
    o = out = apr_palloc(p, total + 1);
    for (i = 0; i < pairs->nelts; i++) {
        apr_size_t kl = strlen(v[i].key), vl = strlen(v[i].value);
        if (i)
            *o++ = '&';
        memcpy(o, v[i].key, kl);
        o += kl;
        *o++ = '=';
        memcpy(o, v[i].value, vl);
        o += vl;
    }
    *o = '\0';
    return out;
}

typedef struct {
    const char *name;   /* lowercase */
    const char *value;  /* trimmed, inner runs of blanks made one space */
    int order;          /* position given, so repeated names keep order */
} cheader;

static int cmp_header(const void *a, const void *b)
{
    const cheader *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    return c ? c : (x->order > y->order) - (x->order < y->order);
}

static const char *trimall(apr_pool_t *p, const char *v)
{
    char *out = apr_palloc(p, strlen(v) + 1), *o = out;
    int blank = 0;
    while (*v == ' ' || *v == '\t')
        v++;
    for (; *v; v++) {
        if (*v == ' ' || *v == '\t') {
            blank = 1;
            continue;
        }
        if (blank && o != out)
            *o++ = ' ';
        blank = 0;
        *o++ = *v;
    }
    *o = '\0';
    return out;
}

/* Builds the canonical request and, in *signed_out, the SignedHeaders
 * list that goes with it. */
static const char *canonical(apr_pool_t *p, const char *method,
                             const char *path, const char *query,
                             const ocireg_sigv4_header *headers, int nheaders,
                             const char *payload_hash,
                             const char **signed_out)
{
    cheader *h;
    const char *lines = "", *names = "";
    char *name, *n;
    int i, j;

    if (!method || !*method || !payload_hash || nheaders < 0
        || (nheaders && !headers))
        return NULL;
    h = apr_pcalloc(p, sizeof(cheader) * (apr_size_t)(nheaders + 1));
    for (i = 0; i < nheaders; i++) {
        if (!headers[i].name || !*headers[i].name)
            return NULL;
        name = apr_pstrdup(p, headers[i].name);
        for (n = name; *n; n++)
            if (*n >= 'A' && *n <= 'Z')
                *n = (char)(*n - 'A' + 'a');
        h[i].name = name;
        h[i].value = trimall(p, headers[i].value ? headers[i].value : "");
        h[i].order = i;
    }
    if (nheaders > 1)
        qsort(h, (size_t)nheaders, sizeof(cheader), cmp_header);
    for (i = 0; i < nheaders; i = j) {
        const char *value = h[i].value;
        for (j = i + 1; j < nheaders && !strcmp(h[j].name, h[i].name); j++)
            value = apr_pstrcat(p, value, ",", h[j].value, NULL);
        lines = apr_pstrcat(p, lines, h[i].name, ":", value, "\n", NULL);
        names = apr_pstrcat(p, names, *names ? ";" : "", h[i].name, NULL);
    }
    *signed_out = names;
    return apr_pstrcat(p, method, "\n", path && *path ? path : "/", "\n",
                       ocireg_sigv4_canonical_query(p, query), "\n", lines,
                       "\n", names, "\n", payload_hash, NULL);
}

const char *ocireg_sigv4_canonical_request(apr_pool_t *p, const char *method,
                                           const char *path,
                                           const char *query,
                                           const ocireg_sigv4_header *headers,
                                           int nheaders,
                                           const char *payload_hash)
{
    const char *names;
    return canonical(p, method, path, query, headers, nheaders, payload_hash,
                     &names);
}

const char *ocireg_sigv4_string_to_sign(apr_pool_t *p,
                                        const ocireg_sigv4_creds *c,
                                        const char *amz_date,
                                        const char *canonical_request)
{
    const char *hash;
    if (!valid_creds(c) || !valid_amz_date(amz_date) || !canonical_request)
        return NULL;
    if (!(hash = sha256_hex(p, canonical_request)))
        return NULL;
    return apr_pstrcat(p, ALGORITHM "\n", amz_date, "\n",
                       scope(p, c, amz_date), "\n", hash, NULL);
}

const char *ocireg_sigv4_signature(apr_pool_t *p, const ocireg_sigv4_creds *c,
                                   const char *amz_date,
                                   const char *string_to_sign)
{
    unsigned char k1[MD_LEN], k2[MD_LEN], sig[MD_LEN];
    char date[9];
    const char *secret;
    int ok;

    if (!valid_creds(c) || !valid_amz_date(amz_date) || !string_to_sign)
        return NULL;
    memcpy(date, amz_date, 8);
    date[8] = '\0';
    secret = apr_pstrcat(p, "AWS4", c->secret_key, NULL);
    ok = hmac((const unsigned char *)secret, strlen(secret), date, k1)
        && hmac(k1, MD_LEN, c->region, k2)
        && hmac(k2, MD_LEN, c->service, k1)
        && hmac(k1, MD_LEN, "aws4_request", k2)
        && hmac(k2, MD_LEN, string_to_sign, sig);
    /* The derived keys are as good as the secret for a day; the copy of
     * the secret itself lives on in the pool like the caller's. */
    OPENSSL_cleanse(k1, sizeof(k1));
    OPENSSL_cleanse(k2, sizeof(k2));
    return ok ? to_hex(p, sig, MD_LEN) : NULL;
}

const char *ocireg_sigv4_authorization(apr_pool_t *p,
                                       const ocireg_sigv4_creds *c,
                                       const char *method, const char *path,
                                       const char *query,
                                       const ocireg_sigv4_header *headers,
                                       int nheaders,
                                       const char *payload_hash,
                                       const char *amz_date)
{
    const char *names = NULL, *creq, *sts, *sig;

    if (!(creq = canonical(p, method, path, query, headers, nheaders,
                           payload_hash, &names))
        || !(sts = ocireg_sigv4_string_to_sign(p, c, amz_date, creq))
        || !(sig = ocireg_sigv4_signature(p, c, amz_date, sts)))
        return NULL;
    return apr_pstrcat(p, ALGORITHM " Credential=", c->access_key, "/",
                       scope(p, c, amz_date), ", SignedHeaders=", names,
                       ", Signature=", sig, NULL);
}

const char *ocireg_sigv4_presign_query(apr_pool_t *p,
                                       const ocireg_sigv4_creds *c,
                                       const char *method, const char *host,
                                       const char *path, const char *query,
                                       const char *amz_date,
                                       int expires_seconds)
{
    ocireg_sigv4_header h;
    const char *credential, *q, *creq, *sts, *sig;

    if (!valid_creds(c) || !valid_amz_date(amz_date) || !host || !*host
        || expires_seconds <= 0)
        return NULL;
    /* Encoded before it joins the query, so an odd byte in the key id
     * cannot split the pair; decode-then-encode gives it back unchanged. */
    credential = ocireg_sigv4_uri_encode(
        p, apr_pstrcat(p, c->access_key, "/", scope(p, c, amz_date), NULL),
        0);
    q = apr_psprintf(p,
                     "%s%sX-Amz-Algorithm=" ALGORITHM
                     "&X-Amz-Credential=%s&X-Amz-Date=%s&X-Amz-Expires=%d"
                     "&X-Amz-SignedHeaders=host",
                     query && *query ? query : "",
                     query && *query ? "&" : "", credential, amz_date,
                     expires_seconds);
    q = ocireg_sigv4_canonical_query(p, q);
    h.name = "host";
    h.value = host;
    if (!(creq = ocireg_sigv4_canonical_request(p, method, path, q, &h, 1,
                                                OCIREG_SIGV4_UNSIGNED))
        || !(sts = ocireg_sigv4_string_to_sign(p, c, amz_date, creq))
        || !(sig = ocireg_sigv4_signature(p, c, amz_date, sts)))
        return NULL;
    return apr_pstrcat(p, q, "&X-Amz-Signature=", sig, NULL);
}

void ocireg_sigv4_amz_date(apr_time_t t, char out[17])
{
    apr_time_exp_t tm;
    int year, i;
    int v[5];

    apr_time_exp_gmt(&tm, t);
    year = tm.tm_year + 1900;
    v[0] = tm.tm_mon + 1;
    v[1] = tm.tm_mday;
    v[2] = tm.tm_hour;
    v[3] = tm.tm_min;
    v[4] = tm.tm_sec;
    /* Digits by hand: the year is clamped to four, and snprintf would have
     * -Wformat-truncation guess at the widths of the other fields. */
    if (year < 0)
        year = 0;
    if (year > 9999)
        year = 9999;
    out[0] = (char)('0' + year / 1000);
    out[1] = (char)('0' + year / 100 % 10);
    out[2] = (char)('0' + year / 10 % 10);
    out[3] = (char)('0' + year % 10);
    for (i = 0; i < 5; i++) {
        int at = i < 1 ? 4 : i < 2 ? 6 : 9 + 2 * (i - 2);
        out[at] = (char)('0' + v[i] / 10 % 10);
        out[at + 1] = (char)('0' + v[i] % 10);
    }
    out[8] = 'T';
    out[15] = 'Z';
    out[16] = '\0';
}
