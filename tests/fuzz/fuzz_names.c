/* Repository names, tags, digests, references and upload ids, and the
 * request path router that cuts them out of /v2/... URLs. */
#include "fuzz.h"
#include "ocireg_parse.h"
#include "ocireg_route.h"

static int only(const char *s, const char *allowed)
{
    return strspn(s, allowed) == strlen(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    apr_pool_t *p = fuzz_pool();
    char *s = fuzz_cstr(p, data, size);
    ocireg_route route;
    ocireg_digest_kind dk;
    int rk;

    if (ocireg_name_valid(s)) {
        /* A valid name stays inside the store whatever it is joined to. */
        FUZZ_ASSERT(strlen(s) <= OCIREG_NAME_MAX);
        FUZZ_ASSERT(only(s, "abcdefghijklmnopqrstuvwxyz0123456789._-/"));
        FUZZ_ASSERT(s[0] != '/' && s[0] != '.' && !strstr(s, "//")
                    && !strstr(s, "/.") && !strstr(s, "./"));
    }
    if (ocireg_tag_valid(s)) {
        FUZZ_ASSERT(strlen(s) >= 1 && strlen(s) <= OCIREG_TAG_MAX);
        FUZZ_ASSERT(s[0] != '.' && s[0] != '-' && !strchr(s, '/'));
    }
    dk = ocireg_digest_parse(s);
    if (dk == OCIREG_DIGEST_SHA256)
        FUZZ_ASSERT(strlen(s) == 71);
    if (dk == OCIREG_DIGEST_SHA512)
        FUZZ_ASSERT(strlen(s) == 135);
    if (dk != OCIREG_DIGEST_BAD)
        FUZZ_ASSERT(strchr(s, ':') && !strchr(s, '/'));
    rk = ocireg_reference_kind(s);
    FUZZ_ASSERT(rk >= 0 && rk <= 2);
    if (ocireg_uuid_valid(s))
        FUZZ_ASSERT(strlen(s) == OCIREG_UUID_LEN);

    ocireg_route_parse(p, s, &route);
    if (route.kind != OCIREG_R_NONE && route.kind != OCIREG_R_BASE
        && route.kind != OCIREG_R_CATALOG) {
        FUZZ_ASSERT(route.name && ocireg_name_valid(route.name));
    }
    (void)ocireg_route_allow(route.kind);
    apr_pool_destroy(p);
    return 0;
}
