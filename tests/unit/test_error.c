/* Unit tests for ocireg_error.h */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <string.h>
#include <stdio.h>
#include <cmocka.h>

#include <apr_general.h>
#include <apr_pools.h>
#include <apr_strings.h>
#include <jansson.h>

#include "ocireg_error.h"
#include "ocireg_s3.h"
#include "ocireg_store.h"
#include "ocireg_uploads.h"

static apr_pool_t *pool;

static const struct {
    ocireg_error_code code;
    const char *name;
} names[] = {
    { OCIREG_E_BLOB_UNKNOWN, "BLOB_UNKNOWN" },
    { OCIREG_E_BLOB_UPLOAD_INVALID, "BLOB_UPLOAD_INVALID" },
    { OCIREG_E_BLOB_UPLOAD_UNKNOWN, "BLOB_UPLOAD_UNKNOWN" },
    { OCIREG_E_DIGEST_INVALID, "DIGEST_INVALID" },
    { OCIREG_E_MANIFEST_BLOB_UNKNOWN, "MANIFEST_BLOB_UNKNOWN" },
    { OCIREG_E_MANIFEST_INVALID, "MANIFEST_INVALID" },
    { OCIREG_E_MANIFEST_UNKNOWN, "MANIFEST_UNKNOWN" },
    { OCIREG_E_NAME_INVALID, "NAME_INVALID" },
    { OCIREG_E_NAME_UNKNOWN, "NAME_UNKNOWN" },
    { OCIREG_E_SIZE_INVALID, "SIZE_INVALID" },
    { OCIREG_E_UNAUTHORIZED, "UNAUTHORIZED" },
    { OCIREG_E_DENIED, "DENIED" },
    { OCIREG_E_UNSUPPORTED, "UNSUPPORTED" },
    { OCIREG_E_TOOMANYREQUESTS, "TOOMANYREQUESTS" },
    { OCIREG_E_TAG_INVALID, "TAG_INVALID" },
    { OCIREG_E_UNAVAILABLE, "UNAVAILABLE" },
    { OCIREG_E_INTERNAL, "INTERNAL_ERROR" },
};
#define NNAMES ((int)(sizeof(names) / sizeof(names[0])))

/* No detail given: the spec makes detail optional, so absent, null or an
 * empty object are all fine. */
static int no_detail(json_t *d)
{
    return d == NULL || json_is_null(d) ||
           (json_is_object(d) && json_object_size(d) == 0);
}

static int is_real_code_name(const char *s)
{
    for (int i = 0; i < NNAMES; i++)
        if (strcmp(s, names[i].name) == 0)
            return 1;
    return 0;
}

/* Parses a body and returns errors[idx], checking the envelope. */
static json_t *parse_body(const char *body, json_t **root_out)
{
    assert_non_null(body);
    size_t len = strlen(body);
    assert_true(len > 0);
    assert_int_equal(body[len - 1], '\n');
    json_error_t jerr;
    json_t *root = json_loads(body, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        fail_msg("error body is not valid JSON (%s): %s", jerr.text, body);
    assert_true(json_is_object(root));
    json_t *errors = json_object_get(root, "errors");
    assert_non_null(errors);
    assert_true(json_is_array(errors));
    *root_out = root;
    return errors;
}

static void test_code_names(void **st)
{
    (void)st;
    assert_int_equal(NNAMES, OCIREG_E__COUNT - 1);
    for (int i = 0; i < NNAMES; i++) {
        const char *n = ocireg_error_code_name(names[i].code);
        assert_non_null(n);
        assert_string_equal(n, names[i].name);
    }
    assert_string_equal(ocireg_error_code_name(OCIREG_E__COUNT), "UNKNOWN");
    assert_string_equal(ocireg_error_code_name((ocireg_error_code)999),
                        "UNKNOWN");
    assert_string_equal(ocireg_error_code_name((ocireg_error_code)-1),
                        "UNKNOWN");
}

static void test_default_messages(void **st)
{
    (void)st;
    for (int i = 0; i < NNAMES; i++) {
        const char *m = ocireg_error_default_message(names[i].code);
        assert_non_null(m);
        assert_true(strlen(m) > 0);
    }
    /* out of range does not crash */
    (void)ocireg_error_default_message((ocireg_error_code)999);
}

static void test_body_every_code(void **st)
{
    (void)st;
    for (int i = 0; i < NNAMES; i++) {
        ocireg_error e = { names[i].code, NULL, NULL };
        json_t *root;
        json_t *errors = parse_body(ocireg_error_body(pool, &e, 1), &root);
        assert_int_equal(json_array_size(errors), 1);
        json_t *e0 = json_array_get(errors, 0);
        assert_string_equal(json_string_value(json_object_get(e0, "code")),
                            names[i].name);
        const char *msg = json_string_value(json_object_get(e0, "message"));
        assert_non_null(msg);
        assert_string_equal(msg, ocireg_error_default_message(names[i].code));
        assert_true(no_detail(json_object_get(e0, "detail")));
        json_decref(root);
    }
}

static void test_body_detail_json(void **st)
{
    (void)st;
    ocireg_error e = { OCIREG_E_MANIFEST_BLOB_UNKNOWN, "blob unknown",
                       "{\"digest\":\"sha256:abc\",\"n\":[1,2]}" };
    json_t *root;
    json_t *errors = parse_body(ocireg_error_body(pool, &e, 1), &root);
    json_t *e0 = json_array_get(errors, 0);
    assert_string_equal(json_string_value(json_object_get(e0, "code")),
                        "MANIFEST_BLOB_UNKNOWN");
    assert_string_equal(json_string_value(json_object_get(e0, "message")),
                        "blob unknown");
    json_t *d = json_object_get(e0, "detail");
    assert_true(json_is_object(d));
    assert_string_equal(json_string_value(json_object_get(d, "digest")),
                        "sha256:abc");
    assert_int_equal(json_array_size(json_object_get(d, "n")), 2);
    json_decref(root);
}

static void test_body_multiple(void **st)
{
    (void)st;
    ocireg_error e[3] = {
        { OCIREG_E_NAME_INVALID, "first", NULL },
        { OCIREG_E_DIGEST_INVALID, NULL, "\"x\"" },
        { OCIREG_E_SIZE_INVALID, "third", "42" },
    };
    json_t *root;
    json_t *errors = parse_body(ocireg_error_body(pool, e, 3), &root);
    assert_int_equal(json_array_size(errors), 3);
    json_t *a = json_array_get(errors, 0);
    json_t *b = json_array_get(errors, 1);
    json_t *c = json_array_get(errors, 2);
    assert_string_equal(json_string_value(json_object_get(a, "code")),
                        "NAME_INVALID");
    assert_string_equal(json_string_value(json_object_get(a, "message")),
                        "first");
    assert_string_equal(json_string_value(json_object_get(b, "code")),
                        "DIGEST_INVALID");
    assert_string_equal(json_string_value(json_object_get(b, "message")),
                        ocireg_error_default_message(OCIREG_E_DIGEST_INVALID));
    assert_string_equal(json_string_value(json_object_get(b, "detail")), "x");
    assert_string_equal(json_string_value(json_object_get(c, "code")),
                        "SIZE_INVALID");
    assert_int_equal(json_integer_value(json_object_get(c, "detail")), 42);
    json_decref(root);
}

static void test_body_zero_errors(void **st)
{
    (void)st;
    json_t *root;
    json_t *errors = parse_body(ocireg_error_body(pool, NULL, 0), &root);
    assert_int_equal(json_array_size(errors), 0);
    json_decref(root);
}

static void check_body1(ocireg_error_code code, const char *msg,
                        const char *detail)
{
    json_t *root;
    json_t *errors = parse_body(ocireg_error_body1(pool, code, msg, detail),
                                &root);
    assert_int_equal(json_array_size(errors), 1);
    json_t *e0 = json_array_get(errors, 0);
    assert_string_equal(json_string_value(json_object_get(e0, "code")),
                        ocireg_error_code_name(code));
    const char *m = json_string_value(json_object_get(e0, "message"));
    assert_non_null(m);
    assert_string_equal(m, msg ? msg : ocireg_error_default_message(code));
    json_t *d = json_object_get(e0, "detail");
    if (detail) {
        assert_true(json_is_string(d));
        assert_string_equal(json_string_value(d), detail);
    } else {
        assert_true(no_detail(d));
    }
    json_decref(root);
}

static void test_body1_plain(void **st)
{
    (void)st;
    check_body1(OCIREG_E_BLOB_UNKNOWN, NULL, NULL);
    check_body1(OCIREG_E_BLOB_UNKNOWN, "blob unknown to registry",
                "sha256:abc");
    check_body1(OCIREG_E_NAME_INVALID, "bad", "");
    check_body1(OCIREG_E_NAME_INVALID, "", "x");
    check_body1(OCIREG_E_TOOMANYREQUESTS, NULL, "slow down");
}

static void test_body1_escaping(void **st)
{
    (void)st;
    check_body1(OCIREG_E_MANIFEST_INVALID, "a \"quoted\" word",
                "back\\slash \"q\"");
    check_body1(OCIREG_E_MANIFEST_INVALID, "line\nbreak\ttab\rcr",
                "ctl \x01\x02\x1f\x7f end");
    check_body1(OCIREG_E_MANIFEST_INVALID, "slash / and </script>",
                "{\"looks\":\"like json\"}");
    check_body1(OCIREG_E_MANIFEST_INVALID, "unicode \xc3\xa9\xe2\x82\xac",
                "\xf0\x9f\x90\xb3 whale");
    check_body1(OCIREG_E_DIGEST_INVALID, "\\", "\\\"");
    check_body1(OCIREG_E_DIGEST_INVALID, "\b\f", "\"");
}

static void test_body1_invalid_utf8_still_json(void **st)
{
    (void)st;
    /* A detail echoed from a client (a digest from the URL, say) may hold
     * bytes that are not UTF-8; the body must still be valid JSON. */
    const char *body = ocireg_error_body1(pool, OCIREG_E_DIGEST_INVALID,
                                          "bad digest", "sha256:\xff\xfe\xc3");
    json_error_t jerr;
    json_t *root = json_loads(body, 0, &jerr);
    if (!root)
        fail_msg("body with non-UTF-8 detail is not valid JSON (%s): %s",
                 jerr.text, body);
    json_decref(root);
}

static void test_body1_non_utf8_message_kept(void **st)
{
    (void)st;
    /* message NULL means the default; a given message is never dropped,
     * even when it is not UTF-8 (it is then sanitized or replaced) */
    json_error_t jerr;
    const char *body = ocireg_error_body1(pool, OCIREG_E_DIGEST_INVALID,
                                          "bad \xff msg", NULL);
    json_t *root = json_loads(body, 0, &jerr);
    if (!root)
        fail_msg("body with non-UTF-8 message is not valid JSON (%s): %s",
                 jerr.text, body);
    json_t *e0 = json_array_get(json_object_get(root, "errors"), 0);
    assert_string_equal(json_string_value(json_object_get(e0, "code")),
                        "DIGEST_INVALID");
    assert_non_null(json_string_value(json_object_get(e0, "message")));
    json_decref(root);
}

static void test_body_long_detail(void **st)
{
    (void)st;
    char *big = apr_palloc(pool, 100001);
    for (int i = 0; i < 100000; i++)
        big[i] = (i % 7 == 0) ? '"' : 'a' + (i % 26);
    big[100000] = '\0';
    check_body1(OCIREG_E_SIZE_INVALID, big, big);
}

static void test_for_status(void **st)
{
    (void)st;
    assert_int_equal(ocireg_error_for_status(401, OCIREG_BODY_NONE),
                     OCIREG_E_UNAUTHORIZED);
    assert_int_equal(ocireg_error_for_status(403, OCIREG_BODY_NONE),
                     OCIREG_E_DENIED);
    assert_int_equal(ocireg_error_for_status(405, OCIREG_BODY_NONE),
                     OCIREG_E_UNSUPPORTED);
    assert_int_equal(ocireg_error_for_status(413, OCIREG_BODY_BLOB),
                     OCIREG_E_SIZE_INVALID);
    assert_int_equal(ocireg_error_for_status(429, OCIREG_BODY_NONE),
                     OCIREG_E_TOOMANYREQUESTS);
    const char *n404 = ocireg_error_code_name(
        ocireg_error_for_status(404, OCIREG_BODY_NONE));
    assert_true(is_real_code_name(n404));
    /* httpd's 400 is about the body only when a body was being read */
    assert_int_equal(ocireg_error_for_status(400, OCIREG_BODY_NONE),
                     OCIREG_E_UNSUPPORTED);
    assert_int_equal(ocireg_error_for_status(400, OCIREG_BODY_BLOB),
                     OCIREG_E_BLOB_UPLOAD_INVALID);
    assert_int_equal(ocireg_error_for_status(400, OCIREG_BODY_MANIFEST),
                     OCIREG_E_MANIFEST_INVALID);
    assert_int_equal(ocireg_error_for_status(408, OCIREG_BODY_BLOB),
                     OCIREG_E_BLOB_UPLOAD_INVALID);
    assert_true(ocireg_error_for_status(400, OCIREG_BODY_NONE)
                != OCIREG_E_NAME_INVALID);
    /* anything else still maps to some code name */
    int others[] = { 400, 408, 411, 414, 416, 431, 500, 503 };
    for (unsigned i = 0; i < sizeof(others) / sizeof(others[0]); i++) {
        ocireg_error_code c = ocireg_error_for_status(others[i],
                                                      OCIREG_BODY_NONE);
        assert_true(c >= 0 && c < OCIREG_E__COUNT);
        assert_true(is_real_code_name(ocireg_error_code_name(c)));
    }
}

static int setup(void **st)
{
    (void)st;
    apr_pool_create(&pool, NULL);
    return 0;
}

static int teardown(void **st)
{
    (void)st;
    apr_pool_destroy(pool);
    return 0;
}

/* Our own status codes read as what they mean, not as APR's "does not
 * understand this error code". */
static void test_status_text(void **state)
{
    char buf[128];
    static const apr_status_t ours[] = {
        OCIREG_S3_EUNAVAILABLE, OCIREG_S3_EREFUSED, OCIREG_STORE_ESTALE,
        OCIREG_STORE_ECONFLICT, OCIREG_UPLOADS_ECLIENT, OCIREG_UPLOADS_EREPO,
        OCIREG_SESSION_EBAD, OCIREG_SESSION_EKEY,
        APR_OS_START_USERERR + 999};
    (void)state;
    for (size_t i = 0; i < sizeof(ours) / sizeof(ours[0]); i++) {
        const char *t = ocireg_status_text(ours[i], buf, sizeof(buf));
        assert_non_null(t);
        assert_true(strlen(t) > 10);
        assert_null(strstr(t, "does not understand"));
    }
    assert_non_null(strstr(ocireg_status_text(OCIREG_STORE_ESTALE, buf,
                                              sizeof(buf)),
                           "newer record"));
    assert_non_null(strstr(ocireg_status_text(OCIREG_S3_EUNAVAILABLE, buf,
                                              sizeof(buf)),
                           "unavailable"));
    /* APR's and the system's own codes keep their text */
    assert_string_equal(ocireg_status_text(APR_ENOENT, buf, sizeof(buf)),
                        apr_strerror(APR_ENOENT, (char[128]){0}, 128));
}

int main(void)
{
    apr_initialize();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_code_names, setup, teardown),
        cmocka_unit_test_setup_teardown(test_default_messages, setup, teardown),
        cmocka_unit_test_setup_teardown(test_body_every_code, setup, teardown),
        cmocka_unit_test_setup_teardown(test_body_detail_json, setup, teardown),
        cmocka_unit_test_setup_teardown(test_body_multiple, setup, teardown),
        cmocka_unit_test_setup_teardown(test_body_zero_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_body1_plain, setup, teardown),
        cmocka_unit_test_setup_teardown(test_body1_escaping, setup, teardown),
        cmocka_unit_test_setup_teardown(test_body1_invalid_utf8_still_json, setup, teardown),
        cmocka_unit_test_setup_teardown(test_body1_non_utf8_message_kept, setup, teardown),
        cmocka_unit_test_setup_teardown(test_body_long_detail, setup, teardown),
        cmocka_unit_test_setup_teardown(test_for_status, setup, teardown),
        cmocka_unit_test_setup_teardown(test_status_text, setup, teardown),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    apr_terminate();
    return rc;
}
