/* SigV4 canonicalisation of object keys and queries holding any bytes:
 * the first line of the input is a key, the second a raw query. The key is
 * signed as the store signs its requests (each path segment encoded, '/'
 * kept) and presigned as redirects are. */
#include "fuzz.h"
#include "ocireg_sigv4.h"

static int encoded_only(const char *s, int keep_slash)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z')
            || (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_'
            || c == '~' || (keep_slash && c == '/'))
            continue;
        if (c != '%' || !s[1] || !s[2])
            return 0;
        if (!strchr("0123456789ABCDEF", s[1]) || !strchr("0123456789ABCDEF", s[2]))
            return 0;
        s += 2;
    }
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    apr_pool_t *p = fuzz_pool();
    char *key = fuzz_cstr(p, data, size);
    char *query = fuzz_next_line(key);
    static const ocireg_sigv4_creds creds = {
        "AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "auto", "s3"
    };
    const char *path, *e, *auth, *cq;
    ocireg_sigv4_header h[3];

    e = ocireg_sigv4_uri_encode(p, key, 0);
    FUZZ_ASSERT(e && encoded_only(e, 0));
    path = ocireg_sigv4_uri_encode(p, apr_pstrcat(p, "/bucket/", key, NULL),
                                   1);
    FUZZ_ASSERT(path && encoded_only(path, 1));

    cq = ocireg_sigv4_canonical_query(p, query);
    if (cq)
        FUZZ_ASSERT(!strchr(cq, ' ') && !strchr(cq, '\n'));

    h[0].name = "Host";
    h[0].value = "127.0.0.1:7480";
    h[1].name = "x-amz-date";
    h[1].value = "20261129T020000Z";
    h[2].name = "X-Amz-Meta-Key";
    h[2].value = key;
    auth = ocireg_sigv4_authorization(p, &creds, "PUT", path, query, h, 3,
                                      OCIREG_SIGV4_UNSIGNED,
                                      "20261129T020000Z");
    FUZZ_ASSERT(auth != NULL);
    (void)ocireg_sigv4_presign_query(p, &creds, "GET", "127.0.0.1:7480",
                                     path, query, "20261129T020000Z", 300);
    /* A date from the input is refused or signed, never misread. */
    (void)ocireg_sigv4_signature(p, &creds, key, "x");
    apr_pool_destroy(p);
    return 0;
}
