/* Pushed manifests and indexes (jansson included) with the request's
 * Content-Type: the first line of the input is the Content-Type (empty for
 * none), the rest the body. A manifest with a subject also goes through the
 * referrers index that lists it. */
#include <jansson.h>
#include "fuzz.h"
#include "ocireg_hash.h"
#include "ocireg_manifest.h"
#include "ocireg_parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    apr_pool_t *p = fuzz_pool();
    const uint8_t *nl = memchr(data, '\n', size);
    const char *ct = NULL, *body = (const char *)data, *msg = NULL;
    apr_size_t len = size;
    ocireg_manifest_info info;
    ocireg_error_code code;
    int i;

    if (nl) {
        ct = apr_pstrmemdup(p, (const char *)data, (apr_size_t)(nl - data));
        if (!*ct)
            ct = NULL;
        body = (const char *)nl + 1;
        len = size - (apr_size_t)(nl - data) - 1;
    }
    /* A copy of just the body, so ASan sees any read past it. */
    body = len ? apr_pmemdup(p, body, len) : "";
    code = ocireg_manifest_analyze(p, body, len, ct,
                                   ocireg_sha256_digest(p, body, len), &info,
                                   &msg);
    if (code != OCIREG_E_NONE) {
        FUZZ_ASSERT(msg != NULL);
        apr_pool_destroy(p);
        return 0;
    }
    FUZZ_ASSERT(info.media_type != NULL);
    for (i = 0; i < info.refs->nelts; i++) {
        const ocireg_manifest_ref *r =
            &APR_ARRAY_IDX(info.refs, i, ocireg_manifest_ref);
        FUZZ_ASSERT(ocireg_digest_parse(r->digest) != OCIREG_DIGEST_BAD);
    }
    if (info.subject) {
        apr_array_header_t *descs;
        const char *index, *dg;
        json_t *j;
        FUZZ_ASSERT(ocireg_digest_parse(info.subject) != OCIREG_DIGEST_BAD);
        FUZZ_ASSERT(info.referrer_descriptor != NULL);
        dg = ocireg_descriptor_string(p, info.referrer_descriptor, "digest");
        FUZZ_ASSERT(dg != NULL);
        descs = apr_array_make(p, 2, sizeof(const char *));
        APR_ARRAY_PUSH(descs, const char *) = info.referrer_descriptor;
        APR_ARRAY_PUSH(descs, const char *) = "not json";
        index = ocireg_referrers_index(p, descs, info.artifact_type);
        j = json_loads(index, 0, NULL);
        FUZZ_ASSERT(j != NULL);
        FUZZ_ASSERT(json_array_size(json_object_get(j, "manifests")) == 1);
        json_decref(j);
        (void)ocireg_referrers_index(p, descs, "x/y");
    }
    apr_pool_destroy(p);
    return 0;
}
