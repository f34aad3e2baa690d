#include <string.h>
#include <apr_strings.h>
#include <apr_lib.h>
#include "ocireg_parse.h"

static int is_lower_alnum(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

static int is_lower_hex(char c)
{
    return (c >= 'a' && c <= 'f') || (c >= '0' && c <= '9');
}

/* One path component: [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*; returns its length
 * or 0 when it does not match up to the next '/' or end. */
static apr_size_t component_len(const char *s)
{
    const char *c = s;
    if (!is_lower_alnum(*c))
        return 0;
    while (*c && *c != '/') {
        if (is_lower_alnum(*c)) {
            c++;
            continue;
        }
        /* a separator run: ".", "_", "__" or one or more "-" */
        if (*c == '.') {
            c++;
        }
        else if (*c == '_') {
            c++;
            if (*c == '_')
                c++;
        }
        else if (*c == '-') {
            while (*c == '-')
                c++;
        }
        else {
            return 0;
        }
        if (!is_lower_alnum(*c))
            return 0;
    }
    return (apr_size_t)(c - s);
}

int ocireg_name_valid(const char *name)
{
    const char *c = name;
    if (!name || !*name || strlen(name) > OCIREG_NAME_MAX)
        return 0;
    for (;;) {
        apr_size_t n = component_len(c);
        if (n == 0)
            return 0;
        c += n;
        if (*c == '\0')
            return 1;
        c++; /* the '/' */
    }
}

int ocireg_tag_valid(const char *tag)
{
    apr_size_t i;
    if (!tag || !*tag)
        return 0;
    if (!(apr_isalnum(tag[0]) || tag[0] == '_'))
        return 0;
    for (i = 1; tag[i]; i++) {
        char c = tag[i];
        if (i >= OCIREG_TAG_MAX)
            return 0;
        if (!(apr_isalnum(c) || c == '_' || c == '.' || c == '-'))
            return 0;
    }
    return 1;
}

/* algorithm-component ::= [a-z0-9]+ ; separator ::= [+._-] */
static int algorithm_valid(const char *s, apr_size_t len)
{
    apr_size_t i;
    int need_alnum = 1;
    if (len == 0)
        return 0;
    for (i = 0; i < len; i++) {
        if (is_lower_alnum(s[i])) {
            need_alnum = 0;
        }
        else if (strchr("+._-", s[i]) && !need_alnum) {
            need_alnum = 1;
        }
        else {
            return 0;
        }
    }
    return !need_alnum;
}

static int hex_run(const char *s, apr_size_t want)
{
    apr_size_t i;
    for (i = 0; i < want; i++)
        if (!is_lower_hex(s[i]))
            return 0;
    return s[want] == '\0';
}

ocireg_digest_kind ocireg_digest_parse(const char *d)
{
    const char *colon, *enc;
    apr_size_t i;
    if (!d || strlen(d) > OCIREG_DIGEST_TEXT_MAX)
        return OCIREG_DIGEST_BAD;
    colon = strchr(d, ':');
    if (!colon || !algorithm_valid(d, (apr_size_t)(colon - d)))
        return OCIREG_DIGEST_BAD;
    enc = colon + 1;
    if (strncmp(d, "sha256:", 7) == 0)
        return hex_run(enc, 64) ? OCIREG_DIGEST_SHA256 : OCIREG_DIGEST_BAD;
    if (strncmp(d, "sha512:", 7) == 0)
        return hex_run(enc, 128) ? OCIREG_DIGEST_SHA512 : OCIREG_DIGEST_BAD;
    /* encoded ::= [a-zA-Z0-9=_-]+ */
    if (!*enc)
        return OCIREG_DIGEST_BAD;
    for (i = 0; enc[i]; i++)
        if (!(apr_isalnum(enc[i]) || strchr("=_-", enc[i])))
            return OCIREG_DIGEST_BAD;
    return OCIREG_DIGEST_OTHER;
}

int ocireg_reference_kind(const char *ref)
{
    if (ocireg_tag_valid(ref))
        return 1;
    if (ocireg_digest_parse(ref) == OCIREG_DIGEST_SHA256)
        return 2;
    return 0;
}

int ocireg_uuid_valid(const char *s)
{
    static const int dash[] = {8, 13, 18, 23};
    int i, k = 0;
    if (!s)
        return 0;
    for (i = 0; i < OCIREG_UUID_LEN; i++) {
        if (k < 4 && i == dash[k]) {
            if (s[i] != '-')
                return 0;
            k++;
        }
        else if (!is_lower_hex(s[i])) {
            return 0;
        }
    }
    return s[OCIREG_UUID_LEN] == '\0';
}

/* Parses digits at *s, advancing it; 0 on no digits or a value above
 * OCIREG_OFFSET_MAX. */
static int parse_digits(const char **s, apr_off_t *out)
{
    const char *c = *s;
    apr_off_t v = 0;
    if (!apr_isdigit(*c))
        return 0;
    while (apr_isdigit(*c)) {
        int d = *c - '0';
        if (v > (OCIREG_OFFSET_MAX - d) / 10)
            return 0;
        v = v * 10 + d;
        c++;
    }
    *out = v;
    *s = c;
    return 1;
}

int ocireg_off_parse(const char *s, apr_off_t *out)
{
    return s && parse_digits(&s, out) && *s == '\0';
}

int ocireg_content_range_parse(const char *value, apr_off_t *start,
                               apr_off_t *end, apr_off_t *total)
{
    const char *c = value;
    apr_off_t a, b, t = -1;
    if (!c)
        return 0;
    if (strncmp(c, "bytes", 5) == 0) {
        c += 5;
        if (*c != ' ' && *c != '=')
            return 0;
        c++;
    }
    if (!parse_digits(&c, &a) || *c++ != '-' || !parse_digits(&c, &b))
        return 0;
    if (*c == '/') {
        c++;
        if (*c == '*')
            c++;
        else if (!parse_digits(&c, &t))
            return 0;
    }
    /* end < INT64_MAX keeps the chunk's length, end - start + 1, and the
     * offset after it within apr_off_t. */
    if (*c != '\0' || b < a || b == APR_INT64_MAX || (t >= 0 && b >= t))
        return 0;
    *start = a;
    *end = b;
    *total = t;
    return 1;
}

int ocireg_range_parse(const char *h, apr_off_t size, apr_off_t *start,
                       apr_off_t *len, int *satisfiable)
{
    apr_off_t a = -1, b = -1;
    const char *dash;
    if (!h || strncmp(h, "bytes=", 6) != 0 || strchr(h, ','))
        return 0;
    h += 6;
    dash = strchr(h, '-');
    if (!dash)
        return 0;
    {
        char tmp[32];
        apr_size_t n = (apr_size_t)(dash - h);
        if (n >= sizeof(tmp))
            return 0;
        memcpy(tmp, h, n);
        tmp[n] = '\0';
        if (n && !ocireg_off_parse(tmp, &a))
            return 0;
        if (dash[1] && !ocireg_off_parse(dash + 1, &b))
            return 0;
    }
    if (a < 0 && b < 0)
        return 0;
    if (a < 0) { /* suffix: the last b bytes */
        *satisfiable = b > 0 && size > 0;
        a = size > b ? size - b : 0;
        b = size - 1;
    }
    else {
        if (b >= 0 && b < a)
            return 0;
        *satisfiable = a < size;
        if (b < 0 || b >= size)
            b = size - 1;
    }
    *start = a;
    *len = b - a + 1;
    return 1;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = (char)apr_tolower(c);
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* '+' stays '+': digests and names never hold spaces, and artifact types
 * such as "application/vnd.x+json" keep their plus when a client does not
 * encode it. */
static char *query_unescape(apr_pool_t *p, const char *s, apr_size_t len,
                            int *bad)
{
    char *out = apr_palloc(p, len + 1), *o = out;
    apr_size_t i;
    for (i = 0; i < len; i++) {
        if (s[i] == '%') {
            int h, l;
            if (i + 2 >= len) {
                *bad = 1;
                return NULL;
            }
            h = hexval(s[i + 1]);
            l = h < 0 ? -1 : hexval(s[i + 2]);
            if (h < 0 || l < 0 || (h == 0 && l == 0)) {
                *bad = 1;
                return NULL;
            }
            *o++ = (char)(h * 16 + l);
            i += 2;
        }
        else {
            *o++ = s[i];
        }
    }
    *o = '\0';
    return out;
}

const char *ocireg_query_arg(apr_pool_t *p, const char *query,
                             const char *name, int *bad)
{
    apr_size_t nlen = strlen(name);
    const char *c = query;
    while (c && *c) {
        const char *amp = strchr(c, '&');
        apr_size_t seglen = amp ? (apr_size_t)(amp - c) : strlen(c);
        if (seglen >= nlen && strncmp(c, name, nlen) == 0
            && (seglen == nlen || c[nlen] == '=')) {
            if (seglen == nlen)
                return "";
            return query_unescape(p, c + nlen + 1, seglen - nlen - 1, bad);
        }
        c = amp ? amp + 1 : NULL;
    }
    return NULL;
}

const char *ocireg_query_escape(apr_pool_t *p, const char *value)
{
    static const char hex[] = "0123456789ABCDEF";
    apr_size_t len = strlen(value), i;
    char *out = apr_palloc(p, len * 3 + 1), *o = out;
    for (i = 0; i < len; i++) {
        unsigned char c = (unsigned char)value[i];
        if (apr_isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
            *o++ = (char)c;
        }
        else {
            *o++ = '%';
            *o++ = hex[c >> 4];
            *o++ = hex[c & 15];
        }
    }
    *o = '\0';
    return out;
}

/* Base64url (JOSE's, and the catalog cursor's) */

static int b64url_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '-')
        return 62;
    if (c == '_')
        return 63;
    return -1;
}

unsigned char *ocireg_base64url_decode(apr_pool_t *p, const char *s,
                                       apr_size_t len, apr_size_t *outlen)
{
    unsigned char *out;
    apr_size_t i, o = 0;
    apr_uint32_t acc = 0;
    int bits = 0;

    if (len % 4 == 1)
        return NULL;
    out = apr_palloc(p, len / 4 * 3 + 3);
    for (i = 0; i < len; i++) {
        int v = b64url_value((unsigned char)s[i]);
        if (v < 0)
            return NULL;
        acc = (acc << 6) | (apr_uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (unsigned char)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    /* The bits left over must be zero, so one token has one spelling. */
    if (acc != 0)
        return NULL;
    out[o] = '\0';
    *outlen = o;
    return out;
}

static const char b64url_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

char *ocireg_base64url_encode(apr_pool_t *p, const unsigned char *in,
                              apr_size_t len)
{
    char *out = apr_palloc(p, (len + 2) / 3 * 4 + 1), *o = out;
    apr_size_t i;
    for (i = 0; i + 2 < len; i += 3) {
        apr_uint32_t v = (apr_uint32_t)in[i] << 16
                         | (apr_uint32_t)in[i + 1] << 8 | in[i + 2];
        *o++ = b64url_alphabet[v >> 18 & 63];
        *o++ = b64url_alphabet[v >> 12 & 63];
        *o++ = b64url_alphabet[v >> 6 & 63];
        *o++ = b64url_alphabet[v & 63];
    }
    if (len - i == 1) {
        apr_uint32_t v = (apr_uint32_t)in[i] << 16;
        *o++ = b64url_alphabet[v >> 18 & 63];
        *o++ = b64url_alphabet[v >> 12 & 63];
    }
    else if (len - i == 2) {
        apr_uint32_t v = (apr_uint32_t)in[i] << 16
                         | (apr_uint32_t)in[i + 1] << 8;
        *o++ = b64url_alphabet[v >> 18 & 63];
        *o++ = b64url_alphabet[v >> 12 & 63];
        *o++ = b64url_alphabet[v >> 6 & 63];
    }
    *o = '\0';
    return out;
}
