/* Unit tests for the S3 XML answer parsers of ocireg_s3.h */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <string.h>
#include <cmocka.h>

#include <apr_general.h>
#include <apr_pools.h>
#include <apr_strings.h>

#include "ocireg_s3.h"

static apr_pool_t *pool;

static int truncated;

/* The entries of a page under prefix as strings; a common prefix is
 * marked with a leading '+'. */
static apr_status_t list(const char *xml, const char *prefix,
                         apr_array_header_t **keys, const char **next)
{
    apr_array_header_t *e = apr_array_make(pool, 4,
                                           sizeof(ocireg_s3_list_entry));
    apr_status_t rv = ocireg_s3_parse_list(pool, xml, strlen(xml), prefix, e,
                                           &truncated, next);
    int i;
    *keys = apr_array_make(pool, 4, sizeof(const char *));
    for (i = 0; i < e->nelts; i++) {
        const ocireg_s3_list_entry *en =
            &APR_ARRAY_IDX(e, i, ocireg_s3_list_entry);
        APR_ARRAY_PUSH(*keys, const char *) =
            apr_pstrcat(pool, en->is_prefix ? "+" : "", en->key, NULL);
    }
    return rv;
}

static void test_list_page(void **st)
{
    apr_array_header_t *k;
    const char *next;
    (void)st;
    assert_int_equal(
        list("<?xml version=\"1.0\"?><ListBucketResult xmlns=\"http://s3."
             "amazonaws.com/doc/2006-03-01/\"><IsTruncated>true</IsTruncated>"
             "<NextContinuationToken>tok/+=</NextContinuationToken>"
             "<Contents><Key>p/a&amp;b</Key><Size>1</Size></Contents>"
             "<Contents><Key>p/</Key></Contents><Contents/>"
             "<Contents><Key>q/not-ours</Key></Contents>"
             "<CommonPrefixes><Prefix>p/dir/</Prefix></CommonPrefixes>"
             "</ListBucketResult>",
             "p/", &k, &next),
        APR_SUCCESS);
    assert_int_equal(k->nelts, 2);
    assert_string_equal(APR_ARRAY_IDX(k, 0, const char *), "a&b");
    assert_string_equal(APR_ARRAY_IDX(k, 1, const char *), "+dir/");
    assert_string_equal(next, "tok/+=");
    assert_true(truncated);

    assert_int_equal(list("<ListBucketResult><IsTruncated>false"
                          "</IsTruncated><NextContinuationToken>t"
                          "</NextContinuationToken></ListBucketResult>",
                          "", &k, &next),
                     APR_SUCCESS);
    assert_null(next);
    assert_false(truncated);
    /* truncated but no token: the last page, not a loop */
    assert_int_equal(list("<ListBucketResult><IsTruncated>true</IsTruncated>"
                          "<NextContinuationToken></NextContinuationToken>"
                          "</ListBucketResult>",
                          "", &k, &next),
                     APR_SUCCESS);
    assert_null(next);
    assert_int_equal(list("not xml", "", &k, &next), OCIREG_S3_EREFUSED);
    assert_int_equal(list("<a><b>", "", &k, &next), OCIREG_S3_EREFUSED);
    assert_int_equal(ocireg_s3_parse_list(pool, NULL, 0, "", k, &truncated,
                                          &next),
                     OCIREG_S3_EREFUSED);
}

static void test_upload_id(void **st)
{
    const char *ok = "<InitiateMultipartUploadResult><Bucket>b</Bucket>"
                     "<UploadId>abc-123</UploadId>"
                     "</InitiateMultipartUploadResult>";
    const char *empty = "<InitiateMultipartUploadResult><UploadId/>"
                        "</InitiateMultipartUploadResult>";
    (void)st;
    assert_string_equal(ocireg_s3_parse_upload_id(pool, ok, strlen(ok)),
                        "abc-123");
    assert_null(ocireg_s3_parse_upload_id(pool, empty, strlen(empty)));
    assert_null(ocireg_s3_parse_upload_id(pool, "<x/>", 4));
    assert_null(ocireg_s3_parse_upload_id(pool, "", 0));
}

/* Parts lacking a number or an ETag would make Complete dereference NULL;
 * numbers at the ends of int overflowed the old subtracting comparison. */
static void test_parts(void **st)
{
    const char *xml =
        "<ListPartsResult><IsTruncated>true</IsTruncated>"
        "<NextPartNumberMarker>3</NextPartNumberMarker>"
        "<Part><PartNumber>2147483647</PartNumber><ETag>\"b\"</ETag>"
        "<Size>5242880</Size></Part>"
        "<Part><PartNumber>-2147483648</PartNumber><ETag>\"a\"</ETag></Part>"
        "<Part><PartNumber>1</PartNumber></Part>"
        "<Part><ETag>\"c\"</ETag></Part>"
        "<Part><PartNumber>3</PartNumber><ETag>\"d\"</ETag><Size>7</Size>"
        "</Part></ListPartsResult>";
    apr_array_header_t *parts = apr_array_make(pool, 4, sizeof(ocireg_s3_part));
    const char *next;
    ocireg_s3_part *p;
    (void)st;
    assert_int_equal(ocireg_s3_parse_parts(pool, xml, strlen(xml), parts,
                                           &next),
                     APR_SUCCESS);
    assert_string_equal(next, "3");
    assert_int_equal(parts->nelts, 3);
    ocireg_s3_sort_parts(parts);
    p = (ocireg_s3_part *)parts->elts;
    assert_int_equal(p[0].number, -2147483647 - 1);
    assert_int_equal(p[1].number, 3);
    assert_int_equal(p[1].size, 7);
    assert_string_equal(p[1].etag, "\"d\"");
    assert_int_equal(p[2].number, 2147483647);
    assert_int_equal(p[2].size, 5242880);
    assert_int_equal(ocireg_s3_parse_parts(pool, "<x", 2, parts, &next),
                     OCIREG_S3_EREFUSED);
    assert_null(next);
}

static void test_uploads(void **st)
{
    const char *xml =
        "<ListMultipartUploadsResult><IsTruncated>true</IsTruncated>"
        "<NextKeyMarker>data/b</NextKeyMarker>"
        "<NextUploadIdMarker>id2</NextUploadIdMarker>"
        "<Upload><Key>data/a</Key><UploadId>id1</UploadId>"
        "<Initiated>2026-11-29T02:00:00.000Z</Initiated></Upload>"
        "<Upload><Key>data/b</Key></Upload>"
        "<Upload><UploadId>id3</UploadId></Upload>"
        "</ListMultipartUploadsResult>";
    apr_array_header_t *u = apr_array_make(pool, 4, sizeof(ocireg_s3_upload));
    const char *nk, *ni;
    (void)st;
    assert_int_equal(ocireg_s3_parse_uploads(pool, xml, strlen(xml), u, &nk,
                                             &ni),
                     APR_SUCCESS);
    assert_int_equal(u->nelts, 1);
    assert_string_equal(APR_ARRAY_IDX(u, 0, ocireg_s3_upload).key, "data/a");
    assert_string_equal(APR_ARRAY_IDX(u, 0, ocireg_s3_upload).upload_id,
                        "id1");
    assert_string_equal(APR_ARRAY_IDX(u, 0, ocireg_s3_upload).initiated,
                        "2026-11-29T02:00:00.000Z");
    assert_string_equal(nk, "data/b");
    assert_string_equal(ni, "id2");
}

static void test_error(void **st)
{
    const char *xml = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error>"
                      "<Code>NoSuchUpload</Code><Message>gone &lt;x&gt;"
                      "</Message></Error>";
    const char *code = "keep", *msg = "keep";
    (void)st;
    ocireg_s3_parse_error(pool, "junk", 4, &code, &msg);
    assert_string_equal(code, "keep");
    ocireg_s3_parse_error(pool, xml, strlen(xml), &code, &msg);
    assert_string_equal(code, "NoSuchUpload");
    assert_string_equal(msg, "gone <x>");
}

static void test_copy_result(void **st)
{
    const char *etag, *code = NULL, *msg = NULL;
    const char *obj = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>"
                      "<CopyObjectResult><LastModified>2026-01-01T00:00:00Z"
                      "</LastModified><ETag>&quot;abc&quot;</ETag>"
                      "</CopyObjectResult>";
    /* S3 keeps a long copy alive with whitespace before the XML. */
    const char *part = "  \n\n<CopyPartResult><ETag>\"p1\"</ETag>"
                       "</CopyPartResult>";
    (void)st;
    assert_int_equal(ocireg_s3_parse_copy_result(pool, obj, strlen(obj),
                                                 &etag, &code, &msg),
                     APR_SUCCESS);
    assert_string_equal(etag, "\"abc\"");
    assert_int_equal(ocireg_s3_parse_copy_result(pool, part, strlen(part),
                                                 &etag, &code, &msg),
                     APR_SUCCESS);
    assert_string_equal(etag, "\"p1\"");
    assert_null(code);
}

static apr_status_t copy_error(const char *c, const char **code)
{
    const char *etag = "x", *msg = NULL;
    const char *xml = apr_psprintf(pool,
                                   "\n<Error><Code>%s</Code><Message>m"
                                   "</Message></Error>",
                                   c);
    apr_status_t rv = ocireg_s3_parse_copy_result(pool, xml, strlen(xml),
                                                  &etag, code, &msg);
    assert_null(etag);
    assert_string_equal(msg, "m");
    return rv;
}

static void test_copy_result_errors(void **st)
{
    const char *etag = NULL, *code = NULL, *msg = NULL;
    (void)st;
    /* An <Error> in a 200: what its code means. */
    assert_int_equal(copy_error("InternalError", &code),
                     OCIREG_S3_EUNAVAILABLE);
    assert_string_equal(code, "InternalError");
    assert_int_equal(copy_error("SlowDown", &code), OCIREG_S3_EUNAVAILABLE);
    assert_int_equal(copy_error("NoSuchKey", &code), APR_ENOENT);
    assert_int_equal(copy_error("NoSuchUpload", &code), APR_ENOENT);
    assert_int_equal(copy_error("PreconditionFailed", &code),
                     OCIREG_S3_ECHANGED);
    assert_int_equal(copy_error("AccessDenied", &code), OCIREG_S3_EREFUSED);
    /* Not a copy result, or one without an ETag. */
    assert_int_equal(ocireg_s3_parse_copy_result(pool, "", 0, &etag, &code,
                                                 &msg),
                     OCIREG_S3_EREFUSED);
    assert_int_equal(ocireg_s3_parse_copy_result(pool, "junk", 4, &etag,
                                                 &code, &msg),
                     OCIREG_S3_EREFUSED);
    assert_int_equal(
        ocireg_s3_parse_copy_result(
            pool, "<CopyObjectResult/>", 19, &etag, &code, &msg),
        OCIREG_S3_EREFUSED);
    assert_int_equal(
        ocireg_s3_parse_copy_result(
            pool, "<CopyObjectResult><ETag></ETag></CopyObjectResult>", 51,
            &etag, &code, &msg),
        OCIREG_S3_EREFUSED);
    assert_int_equal(ocireg_s3_parse_copy_result(
                         pool, "<Other><ETag>x</ETag></Other>", 29, &etag,
                         &code, &msg),
                     OCIREG_S3_EREFUSED);
    assert_null(etag);
    assert_int_equal(ocireg_s3_code_status(NULL), OCIREG_S3_EREFUSED);
}

static void test_delete_result(void **st)
{
    const char *code = NULL, *msg = NULL;
    apr_array_header_t *e = apr_array_make(pool, 2,
                                           sizeof(ocireg_s3_delete_error));
    const char *xml =
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>"
        "<DeleteResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
        "<Deleted><Key>a</Key></Deleted>"
        "<Error><Key>gone</Key><Code>NoSuchKey</Code></Error>"
        "<Error><Key>x&amp;y</Key><Code>AccessDenied</Code>"
        "<Message>no</Message></Error>"
        "<Error><Key>z</Key><Code>InternalError</Code></Error>"
        "<Error><Message>keyless</Message></Error>"
        "</DeleteResult>";
    const ocireg_s3_delete_error *d;
    (void)st;
    assert_int_equal(ocireg_s3_parse_delete_result(pool, xml, strlen(xml), e,
                                                   &code, &msg),
                     APR_SUCCESS);
    /* NoSuchKey counts as deleted; a keyless error still counts. */
    assert_int_equal(e->nelts, 3);
    d = (const ocireg_s3_delete_error *)e->elts;
    assert_string_equal(d[0].key, "x&y");
    assert_string_equal(d[0].code, "AccessDenied");
    assert_string_equal(d[0].message, "no");
    assert_string_equal(d[1].key, "z");
    assert_string_equal(d[1].code, "InternalError");
    assert_null(d[1].message);
    assert_string_equal(d[2].key, "");
    assert_null(d[2].code);
    assert_null(code);

    apr_array_clear(e);
    assert_int_equal(ocireg_s3_parse_delete_result(
                         pool, "<DeleteResult/>", 15, e, &code, &msg),
                     APR_SUCCESS);
    assert_int_equal(e->nelts, 0);
    assert_int_equal(
        ocireg_s3_parse_delete_result(
            pool, "<Error><Code>SlowDown</Code></Error>", 36, e, &code,
            &msg),
        OCIREG_S3_EUNAVAILABLE);
    assert_string_equal(code, "SlowDown");
    assert_int_equal(ocireg_s3_parse_delete_result(pool, "", 0, e, &code,
                                                   &msg),
                     OCIREG_S3_EREFUSED);
    assert_int_equal(ocireg_s3_parse_delete_result(pool, "<a>", 3, e, &code,
                                                   &msg),
                     OCIREG_S3_EREFUSED);
    assert_int_equal(ocireg_s3_parse_delete_result(
                         pool, "<ListBucketResult/>", 19, e, &code, &msg),
                     OCIREG_S3_EREFUSED);
    assert_int_equal(e->nelts, 0);
}

static int setup(void **st)
{
    (void)st;
    return apr_pool_create(&pool, NULL) == APR_SUCCESS ? 0 : -1;
}

static int teardown(void **st)
{
    (void)st;
    apr_pool_destroy(pool);
    return 0;
}

int main(void)
{
    apr_initialize();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_list_page, setup, teardown),
        cmocka_unit_test_setup_teardown(test_upload_id, setup, teardown),
        cmocka_unit_test_setup_teardown(test_parts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_uploads, setup, teardown),
        cmocka_unit_test_setup_teardown(test_error, setup, teardown),
        cmocka_unit_test_setup_teardown(test_copy_result, setup, teardown),
        cmocka_unit_test_setup_teardown(test_copy_result_errors, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_delete_result, setup, teardown),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    apr_terminate();
    return rc;
}
