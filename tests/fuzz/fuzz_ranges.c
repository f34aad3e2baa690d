/* What clients put in headers and query strings: Content-Range of PATCH
 * and PUT, Range of blob GETs, and the query arguments n, last, mount,
 * from, digest, _state and artifactType with the parsers applied to them. */
#include "fuzz.h"
#include "ocireg_parse.h"
#include "ocireg_listing.h"

static const char *const args[] = {
    "n", "last", "mount", "from", "digest", "_state", "artifactType",
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    apr_pool_t *p = fuzz_pool();
    char *s = fuzz_cstr(p, data, size);
    apr_off_t a, b, t, off, start, len;
    int ok, n;
    size_t i;

    /* Content-Range: the handler computes the chunk's length from it. */
    if (ocireg_content_range_parse(s, &a, &b, &t)) {
        FUZZ_ASSERT(a >= 0 && b >= a && t >= -1);
        FUZZ_ASSERT(b - a + 1 > 0);
        if (t >= 0)
            FUZZ_ASSERT(b < t);
    }
    if (ocireg_off_parse(s, &off))
        FUZZ_ASSERT(off >= 0);

    /* Range against blobs of a few sizes, the input's own number among
     * them. */
    {
        apr_off_t sizes[] = { 0, 1, 4096, APR_INT64_MAX, 0 };
        if (size >= 8) {
            apr_uint64_t v;
            memcpy(&v, data, 8);
            sizes[4] = (apr_off_t)(v >> 1);
        }
        for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
            ok = 0;
            if (ocireg_range_parse(s, sizes[i], &start, &len, &ok) && ok) {
                FUZZ_ASSERT(start >= 0 && len > 0);
                FUZZ_ASSERT(start < sizes[i] && len <= sizes[i] - start);
            }
        }
    }

    /* The query string, each argument parsed the way its handler does. */
    for (i = 0; i < sizeof(args) / sizeof(args[0]); i++) {
        int bad = 0;
        const char *v = ocireg_query_arg(p, s, args[i], &bad);
        if (!v)
            continue;
        if (strcmp(args[i], "n") == 0 && ocireg_parse_n(v, &n))
            FUZZ_ASSERT(n >= -1);
        else if (strcmp(args[i], "_state") == 0)
            (void)ocireg_off_parse(v, &off);
        else if (strcmp(args[i], "digest") == 0)
            (void)ocireg_digest_parse(v);
        else if (strcmp(args[i], "from") == 0)
            (void)ocireg_name_valid(v);
        else if (strcmp(args[i], "last") == 0)
            (void)ocireg_next_link(p, "/v2/_catalog", 10, v);
        (void)ocireg_query_escape(p, v);
    }

    /* Escaping round-trips through the query parser. */
    {
        const char *q = apr_pstrcat(p, "x=", ocireg_query_escape(p, s), NULL);
        int bad = 0;
        const char *back = ocireg_query_arg(p, q, "x", &bad);
        FUZZ_ASSERT(!bad && back && strcmp(back, s) == 0);
    }
    if (ocireg_parse_n(s, &n))
        FUZZ_ASSERT(n >= -1);
    apr_pool_destroy(p);
    return 0;
}
