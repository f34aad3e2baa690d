/* Unit tests for ocireg_route.h */
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

#include "ocireg_route.h"

static apr_pool_t *pool;

#define HEX64 "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
#define DIG "sha256:" HEX64
#define UUID "123e4567-e89b-12d3-a456-426614174000"

static void route_is(const char *path, ocireg_route_kind kind,
                     const char *name, const char *arg)
{
    ocireg_route r;
    memset(&r, 0x5a, sizeof r);
    ocireg_route_parse(pool, path, &r);
    if (r.kind != kind)
        fail_msg("'%s': kind %d, want %d", path, (int)r.kind, (int)kind);
    if (name) {
        if (!r.name || strcmp(r.name, name) != 0)
            fail_msg("'%s': name '%s', want '%s'", path,
                     r.name ? r.name : "(null)", name);
    }
    if (arg) {
        if (!r.arg || strcmp(r.arg, arg) != 0)
            fail_msg("'%s': arg '%s', want '%s'", path,
                     r.arg ? r.arg : "(null)", arg);
    }
    if (r.error != OCIREG_E_NONE)
        fail_msg("'%s': matched but error %d", path, (int)r.error);
}

static void route_none(const char *path)
{
    ocireg_route r;
    memset(&r, 0x5a, sizeof r);
    ocireg_route_parse(pool, path, &r);
    if (r.kind != OCIREG_R_NONE)
        fail_msg("'%s': kind %d, want NONE", path, (int)r.kind);
}

static void route_invalid(const char *path, ocireg_error_code err)
{
    ocireg_route r;
    memset(&r, 0x5a, sizeof r);
    ocireg_route_parse(pool, path, &r);
    if (r.kind != OCIREG_R_NONE)
        fail_msg("'%s': kind %d, want NONE", path, (int)r.kind);
    if (r.error != err)
        fail_msg("'%s': error %d, want %d", path, (int)r.error, (int)err);
}

static void test_base(void **st)
{
    (void)st;
    route_is("/v2", OCIREG_R_BASE, NULL, NULL);
    route_is("/v2/", OCIREG_R_BASE, NULL, NULL);
}

static void test_catalog(void **st)
{
    (void)st;
    route_is("/v2/_catalog", OCIREG_R_CATALOG, NULL, NULL);
}

static void test_blob(void **st)
{
    (void)st;
    route_is("/v2/x/blobs/" DIG, OCIREG_R_BLOB, "x", DIG);
    route_is("/v2/a/b/c/blobs/" DIG, OCIREG_R_BLOB, "a/b/c", DIG);
    route_is("/v2/library/ubuntu/blobs/" DIG, OCIREG_R_BLOB, "library/ubuntu",
             DIG);
    /* the argument is not validated by the router */
    route_is("/v2/x/blobs/notadigest", OCIREG_R_BLOB, "x", "notadigest");
    route_is("/v2/x/blobs/sha256:ABC", OCIREG_R_BLOB, "x", "sha256:ABC");
}

static void test_uploads(void **st)
{
    (void)st;
    route_is("/v2/x/blobs/uploads/", OCIREG_R_UPLOADS, "x", NULL);
    route_is("/v2/x/blobs/uploads", OCIREG_R_UPLOADS, "x", NULL);
    route_is("/v2/a/b/blobs/uploads/", OCIREG_R_UPLOADS, "a/b", NULL);
    route_is("/v2/x/blobs/uploads/" UUID, OCIREG_R_UPLOAD, "x", UUID);
    route_is("/v2/a/b/c/blobs/uploads/" UUID, OCIREG_R_UPLOAD, "a/b/c", UUID);
    route_is("/v2/x/blobs/uploads/not-a-uuid", OCIREG_R_UPLOAD, "x",
             "not-a-uuid");
}

static void test_manifest(void **st)
{
    (void)st;
    route_is("/v2/x/manifests/latest", OCIREG_R_MANIFEST, "x", "latest");
    route_is("/v2/a/b/manifests/" DIG, OCIREG_R_MANIFEST, "a/b", DIG);
    route_is("/v2/x/manifests/v1.0.0-rc_1", OCIREG_R_MANIFEST, "x",
             "v1.0.0-rc_1");
}

static void test_tags(void **st)
{
    (void)st;
    route_is("/v2/x/tags/list", OCIREG_R_TAGS, "x", NULL);
    route_is("/v2/a/b/c/tags/list", OCIREG_R_TAGS, "a/b/c", NULL);
}

static void test_referrers(void **st)
{
    (void)st;
    route_is("/v2/x/referrers/" DIG, OCIREG_R_REFERRERS, "x", DIG);
    route_is("/v2/a/b/referrers/" DIG, OCIREG_R_REFERRERS, "a/b", DIG);
}

static void test_names_with_keywords(void **st)
{
    (void)st;
    route_is("/v2/blobs/manifests/manifests/latest", OCIREG_R_MANIFEST,
             "blobs/manifests", "latest");
    route_is("/v2/blobs/blobs/" DIG, OCIREG_R_BLOB, "blobs", DIG);
    route_is("/v2/manifests/blobs/" DIG, OCIREG_R_BLOB, "manifests", DIG);
    route_is("/v2/a/blobs/uploads/blobs/" DIG, OCIREG_R_BLOB,
             "a/blobs/uploads", DIG);
    route_is("/v2/a/manifests/tags/list", OCIREG_R_TAGS, "a/manifests", NULL);
    route_is("/v2/tags/list/tags/list", OCIREG_R_TAGS, "tags/list", NULL);
    route_is("/v2/uploads/blobs/uploads/", OCIREG_R_UPLOADS, "uploads", NULL);
    route_is("/v2/blobs/blobs/uploads/" UUID, OCIREG_R_UPLOAD, "blobs", UUID);
    route_is("/v2/referrers/referrers/" DIG, OCIREG_R_REFERRERS, "referrers",
             DIG);
    route_is("/v2/v2/manifests/latest", OCIREG_R_MANIFEST, "v2", "latest");
    route_is("/v2/a/tags/manifests/list", OCIREG_R_MANIFEST, "a/tags", "list");
}

static void test_invalid_names(void **st)
{
    (void)st;
    route_invalid("/v2/UPPER/manifests/x", OCIREG_E_NAME_INVALID);
    route_invalid("/v2/a//b/manifests/x", OCIREG_E_NAME_INVALID);
    route_invalid("/v2/../etc/manifests/x", OCIREG_E_NAME_INVALID);
    route_invalid("/v2/a/../b/manifests/x", OCIREG_E_NAME_INVALID);
    route_invalid("/v2/./a/manifests/x", OCIREG_E_NAME_INVALID);
    route_invalid("/v2/a___b/manifests/x", OCIREG_E_NAME_INVALID);
    route_invalid("/v2/-a/blobs/" DIG, OCIREG_E_NAME_INVALID);
    route_invalid("/v2/a./tags/list", OCIREG_E_NAME_INVALID);
    route_invalid("/v2/Foo/blobs/uploads/", OCIREG_E_NAME_INVALID);
    route_invalid("/v2/a b/blobs/uploads/" UUID, OCIREG_E_NAME_INVALID);
    route_invalid("/v2/a%2fb/referrers/" DIG, OCIREG_E_NAME_INVALID);

    char *longname = apr_palloc(pool, 300);
    memset(longname, 'a', 299);
    longname[299] = '\0';
    route_invalid(apr_pstrcat(pool, "/v2/", longname, "/manifests/x", NULL),
                  OCIREG_E_NAME_INVALID);
    longname[255] = '\0';
    route_is(apr_pstrcat(pool, "/v2/", longname, "/manifests/x", NULL),
             OCIREG_R_MANIFEST, longname, "x");
}

static void test_unknown_shapes(void **st)
{
    (void)st;
    route_none("/v2/x/y");
    route_none("/v2/x");
    route_none("/v2/x/manifests");
    route_none("/v2/x/tags");
    route_none("/v2/x/tags/other");
    route_none("/v2/x/referrers");
    route_none("/v2/x/blobs");
    route_none("/v3/x/manifests/latest");
    route_none("/v3/");
    route_none("/v2x");
    route_none("/v2x/x/manifests/latest");
    route_none("/");
    route_none("");
    route_none("/x/v2/manifests/latest");
    route_none("/V2/x/manifests/latest");
    /* nothing before the keyword */
    route_none("/v2/manifests/latest");
    route_none("/v2/blobs/" DIG);
    route_none("/v2//manifests/latest");
}

static int contains_method(const char *allow, const char *m)
{
    size_t n = strlen(m);
    for (const char *p = allow; (p = strstr(p, m)) != NULL; p += n) {
        int start_ok = p == allow || p[-1] == ' ' || p[-1] == ',';
        int end_ok = p[n] == '\0' || p[n] == ',' || p[n] == ' ';
        if (start_ok && end_ok)
            return 1;
    }
    return 0;
}

static void allow_has(ocireg_route_kind k, const char *methods[])
{
    const char *a = ocireg_route_allow(k);
    assert_non_null(a);
    assert_true(strlen(a) > 0);
    for (int i = 0; methods[i]; i++) {
        if (!contains_method(a, methods[i]))
            fail_msg("Allow for kind %d is '%s', lacks %s", (int)k, a,
                     methods[i]);
    }
}

static void test_allow(void **st)
{
    (void)st;
    allow_has(OCIREG_R_BASE, (const char *[]){ "GET", NULL });
    allow_has(OCIREG_R_CATALOG, (const char *[]){ "GET", NULL });
    allow_has(OCIREG_R_BLOB, (const char *[]){ "GET", "HEAD", "DELETE", NULL });
    allow_has(OCIREG_R_UPLOADS, (const char *[]){ "POST", NULL });
    allow_has(OCIREG_R_UPLOAD,
              (const char *[]){ "GET", "PATCH", "PUT", "DELETE", NULL });
    allow_has(OCIREG_R_MANIFEST,
              (const char *[]){ "GET", "HEAD", "PUT", "DELETE", NULL });
    allow_has(OCIREG_R_TAGS, (const char *[]){ "GET", NULL });
    allow_has(OCIREG_R_REFERRERS, (const char *[]){ "GET", NULL });

    /* methods that do not belong */
    assert_false(contains_method(ocireg_route_allow(OCIREG_R_BLOB), "PUT"));
    assert_false(contains_method(ocireg_route_allow(OCIREG_R_BLOB), "POST"));
    assert_false(contains_method(ocireg_route_allow(OCIREG_R_TAGS), "DELETE"));
    assert_false(contains_method(ocireg_route_allow(OCIREG_R_UPLOADS),
                                 "DELETE"));
    assert_false(contains_method(ocireg_route_allow(OCIREG_R_MANIFEST),
                                 "POST"));
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

int main(void)
{
    apr_initialize();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_base, setup, teardown),
        cmocka_unit_test_setup_teardown(test_catalog, setup, teardown),
        cmocka_unit_test_setup_teardown(test_blob, setup, teardown),
        cmocka_unit_test_setup_teardown(test_uploads, setup, teardown),
        cmocka_unit_test_setup_teardown(test_manifest, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tags, setup, teardown),
        cmocka_unit_test_setup_teardown(test_referrers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_names_with_keywords, setup, teardown),
        cmocka_unit_test_setup_teardown(test_invalid_names, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unknown_shapes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_allow, setup, teardown),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    apr_terminate();
    return rc;
}
