/* What an upstream registry says about authentication: the first byte
 * picks the parser, the rest is its input. Even: a WWW-Authenticate value
 * (ocireg_upstream_parse_challenges); odd: a token server's JSON answer
 * (ocireg_upstream_parse_token), and from byte 1 on, split at the first
 * '\n', a Location resolved against a registry URL and a token request's
 * realm. */
#include "fuzz.h"
#include "ocireg_upstream.h"

#define NOW apr_time_from_sec(1800000000)

/* A header line may carry nothing that ends it or starts another. */
static void assert_header_safe(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || (unsigned char)*s == 0x7f)
            abort();
}

static void challenges(apr_pool_t *p, const char *v)
{
    apr_array_header_t *a = apr_array_make(p, 2,
                                           sizeof(ocireg_upstream_challenge));
    int i;
    ocireg_upstream_parse_challenges(p, v, a);
    for (i = 0; i < a->nelts; i++) {
        const ocireg_upstream_challenge *c =
            &APR_ARRAY_IDX(a, i, ocireg_upstream_challenge);
        const char *realm;
        /* Every challenge kept has a scheme and a table. */
        if (!c->scheme || !*c->scheme || !c->params)
            abort();
        realm = apr_table_get(c->params, "realm");
        if (realm) {
            const char *url = ocireg_upstream_token_url(
                p, realm, apr_table_get(c->params, "service"),
                apr_table_get(c->params, "scope"));
            if (url)
                assert_header_safe(url);
        }
    }
}

static void token_and_urls(apr_pool_t *p, char *s, size_t len)
{
    ocireg_upstream_token t;
    char *second;
    if (ocireg_upstream_parse_token(p, s, len, NOW, &t) == APR_SUCCESS) {
        const char *c;
        /* A token goes into a header: printable, no spaces; it lives
         * after now and is renewed before it dies. */
        for (c = t.token; *c; c++)
            if ((unsigned char)*c <= 0x20 || (unsigned char)*c >= 0x7f)
                abort();
        if (!*t.token || t.expires <= NOW || t.refresh_at > t.expires
            || t.refresh_at <= NOW - apr_time_from_sec(86400))
            abort();
    }
    second = fuzz_next_line(s);
    {
        const char *from = "https://registry.example:5000/v2/a/blobs/x";
        const char *r = ocireg_upstream_resolve(p, from, s);
        if (r) {
            assert_header_safe(r);
            for (const char *c = r; *c; c++)
                if (*c == ' ')
                    abort();
            /* Resolved means an http(s) URL whose origin is decidable;
             * the same origin is the registry's. */
            if (ocireg_upstream_same_origin(r, r) != 1)
                abort();
        }
        if (second) {
            const char *u = ocireg_upstream_token_url(p, s, second, second);
            if (u)
                assert_header_safe(u);
            ocireg_upstream_same_origin(s, second);
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    apr_pool_t *p;
    char *s;
    if (size < 1)
        return 0;
    p = fuzz_pool();
    s = fuzz_cstr(p, data + 1, size - 1);
    if (data[0] & 1)
        token_and_urls(p, s, strlen(s));
    else
        challenges(p, s);
    apr_pool_destroy(p);
    return 0;
}
