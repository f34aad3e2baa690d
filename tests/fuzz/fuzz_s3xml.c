/* The S3 backend's XML answers: the first byte picks the answer
 * (below 0x80, by its value modulo 5: ListObjectsV2,
 * InitiateMultipartUpload, ListParts, ListMultipartUploads, Error; from
 * 0x80, even: CopyObjectResult/CopyPartResult, odd: DeleteResult), the
 * rest is the body as the server sent it. Callers use what the parsers return as C strings and Complete sends
 * every part's number and ETag, so those must be there. */
#include "fuzz.h"
#include "ocireg_s3.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    apr_pool_t *p;
    const char *body, *next = NULL, *next2 = NULL;
    apr_size_t len;
    apr_array_header_t *a;
    int i;

    if (size < 1)
        return 0;
    p = fuzz_pool();
    len = size - 1;
    body = len ? apr_pmemdup(p, data + 1, len) : NULL;
    if (data[0] >= 0x80) {
        const char *etag = NULL, *code = NULL, *message = NULL;
        apr_status_t rv;
        if (data[0] % 2 == 0) {
            rv = ocireg_s3_parse_copy_result(p, body, len, &etag, &code,
                                             &message);
            /* A copy that worked has an ETag; one that did not, none. */
            FUZZ_ASSERT((rv == APR_SUCCESS) == (etag != NULL));
            if (etag)
                FUZZ_ASSERT(*etag);
        }
        else {
            a = apr_array_make(p, 4, sizeof(ocireg_s3_delete_error));
            rv = ocireg_s3_parse_delete_result(p, body, len, a, &code,
                                               &message);
            for (i = 0; i < a->nelts; i++)
                FUZZ_ASSERT(APR_ARRAY_IDX(a, i, ocireg_s3_delete_error).key);
            FUZZ_ASSERT(rv == APR_SUCCESS || a->nelts == 0);
        }
        if (code)
            (void)strlen(code);
        if (message)
            (void)strlen(message);
        apr_pool_destroy(p);
        return 0;
    }
    switch (data[0] % 5) {
    case 0: {
        static const char *const prefixes[] = {"", "p/", "repositories/",
                                               "uploads/x/"};
        const char *prefix = prefixes[data[0] / 5 % 4];
        int truncated;
        a = apr_array_make(p, 4, sizeof(ocireg_s3_list_entry));
        if (ocireg_s3_parse_list(p, body, len, prefix, a, &truncated, &next)
            == APR_SUCCESS) {
            for (i = 0; i < a->nelts; i++)
                FUZZ_ASSERT(*APR_ARRAY_IDX(a, i, ocireg_s3_list_entry).key);
            if (next)
                FUZZ_ASSERT(*next && truncated);
        }
        break;
    }
    case 1: {
        const char *id = ocireg_s3_parse_upload_id(p, body, len);
        if (id)
            FUZZ_ASSERT(*id);
        break;
    }
    case 2:
        a = apr_array_make(p, 4, sizeof(ocireg_s3_part));
        if (ocireg_s3_parse_parts(p, body, len, a, &next) == APR_SUCCESS) {
            ocireg_s3_sort_parts(a);
            for (i = 0; i < a->nelts; i++) {
                const ocireg_s3_part *pt =
                    &APR_ARRAY_IDX(a, i, ocireg_s3_part);
                FUZZ_ASSERT(pt->etag != NULL);
                if (i)
                    FUZZ_ASSERT(pt[-1].number <= pt->number);
            }
        }
        break;
    case 3:
        a = apr_array_make(p, 4, sizeof(ocireg_s3_upload));
        if (ocireg_s3_parse_uploads(p, body, len, a, &next, &next2)
            == APR_SUCCESS) {
            for (i = 0; i < a->nelts; i++) {
                const ocireg_s3_upload *u =
                    &APR_ARRAY_IDX(a, i, ocireg_s3_upload);
                FUZZ_ASSERT(u->key && u->upload_id);
            }
        }
        break;
    default: {
        const char *code = NULL, *message = NULL;
        ocireg_s3_parse_error(p, body, len, &code, &message);
        if (code)
            (void)strlen(code);
        if (message)
            (void)strlen(message);
        break;
    }
    }
    apr_pool_destroy(p);
    return 0;
}
