/* Unit tests for ocireg_manifest.h */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <string.h>
#include <stdlib.h>
#include <stdio.h>
#include <cmocka.h>

#include <apr_general.h>
#include <apr_pools.h>
#include <apr_strings.h>
#include <apr_tables.h>
#include <jansson.h>

#include "ocireg_manifest.h"

static apr_pool_t *pool;

#define D(c) "sha256:" c c c c c c c c c c c c c c c c \
             c c c c c c c c c c c c c c c c \
             c c c c c c c c c c c c c c c c \
             c c c c c c c c c c c c c c c c
#define DC D("c")
#define DL1 D("1")
#define DL2 D("2")
#define DM1 D("a")
#define DM2 D("b")
#define DS D("5")
#define DSELF D("e")

#define MT_CONFIG "application/vnd.oci.image.config.v1+json"
#define MT_LAYER "application/vnd.oci.image.layer.v1.tar+gzip"

#define OCI_MANIFEST                                                        \
    "{\"schemaVersion\":2,"                                                 \
    "\"mediaType\":\"" OCIREG_MT_OCI_MANIFEST "\","                         \
    "\"config\":{\"mediaType\":\"" MT_CONFIG "\",\"digest\":\"" DC "\","    \
    "\"size\":7023},"                                                       \
    "\"layers\":["                                                          \
    "{\"mediaType\":\"" MT_LAYER "\",\"digest\":\"" DL1 "\",\"size\":32654},"\
    "{\"mediaType\":\"" MT_LAYER "\",\"digest\":\"" DL2 "\",\"size\":16724}"\
    "],\"annotations\":{\"com.example.key1\":\"value1\"}}"

#define OCI_MANIFEST_NO_MT                                                  \
    "{\"schemaVersion\":2,"                                                 \
    "\"config\":{\"mediaType\":\"" MT_CONFIG "\",\"digest\":\"" DC "\","    \
    "\"size\":7023},"                                                       \
    "\"layers\":["                                                          \
    "{\"mediaType\":\"" MT_LAYER "\",\"digest\":\"" DL1 "\",\"size\":32654}"\
    "]}"

#define OCI_INDEX                                                           \
    "{\"schemaVersion\":2,"                                                 \
    "\"mediaType\":\"" OCIREG_MT_OCI_INDEX "\","                            \
    "\"manifests\":["                                                       \
    "{\"mediaType\":\"" OCIREG_MT_OCI_MANIFEST "\",\"digest\":\"" DM1 "\"," \
    "\"size\":7143,\"platform\":{\"architecture\":\"ppc64le\","             \
    "\"os\":\"linux\"}},"                                                   \
    "{\"mediaType\":\"" OCIREG_MT_OCI_MANIFEST "\",\"digest\":\"" DM2 "\"," \
    "\"size\":7682,\"platform\":{\"architecture\":\"amd64\","               \
    "\"os\":\"linux\"}}]}"

#define DOCKER_MANIFEST                                                     \
    "{\"schemaVersion\":2,"                                                 \
    "\"mediaType\":\"" OCIREG_MT_DOCKER_MANIFEST "\","                      \
    "\"config\":{\"mediaType\":"                                            \
    "\"application/vnd.docker.container.image.v1+json\","                   \
    "\"size\":7023,\"digest\":\"" DC "\"},"                                 \
    "\"layers\":["                                                          \
    "{\"mediaType\":\"application/vnd.docker.image.rootfs.diff.tar.gzip\"," \
    "\"size\":32654,\"digest\":\"" DL1 "\"},"                               \
    "{\"mediaType\":\"application/vnd.docker.image.rootfs.diff.tar.gzip\"," \
    "\"size\":16724,\"digest\":\"" DL2 "\"}]}"

#define DOCKER_LIST                                                         \
    "{\"schemaVersion\":2,"                                                 \
    "\"mediaType\":\"" OCIREG_MT_DOCKER_LIST "\","                          \
    "\"manifests\":["                                                       \
    "{\"mediaType\":\"" OCIREG_MT_DOCKER_MANIFEST "\",\"size\":7143,"       \
    "\"digest\":\"" DM1 "\",\"platform\":{\"architecture\":\"ppc64le\","    \
    "\"os\":\"linux\"}},"                                                   \
    "{\"mediaType\":\"" OCIREG_MT_DOCKER_MANIFEST "\",\"size\":7682,"       \
    "\"digest\":\"" DM2 "\",\"platform\":{\"architecture\":\"amd64\","      \
    "\"os\":\"linux\",\"features\":[\"sse4\"]}}]}"

static ocireg_error_code analyze(const char *body, const char *ct,
                                 const char *digest,
                                 ocireg_manifest_info *info, const char **msg)
{
    memset(info, 0, sizeof *info);
    *msg = NULL;
    return ocireg_manifest_analyze(pool, body, strlen(body), ct,
                                   digest ? digest : DSELF, info, msg);
}

static void refs_are(const ocireg_manifest_info *info, const char *digests[],
                     int must_exist)
{
    assert_non_null(info->refs);
    int n = 0;
    while (digests[n])
        n++;
    assert_int_equal(info->refs->nelts, n);
    for (int i = 0; i < n; i++) {
        ocireg_manifest_ref *r = &APR_ARRAY_IDX(info->refs, i,
                                                ocireg_manifest_ref);
        assert_non_null(r->digest);
        assert_string_equal(r->digest, digests[i]);
        assert_int_equal(r->must_exist_as_manifest != 0, must_exist);
    }
}

#define expect_ok(call, m)                                                  \
    do {                                                                    \
        ocireg_error_code rc_ = (call);                                     \
        expect_ok_(rc_, m);                                                 \
    } while (0)

static void expect_ok_(ocireg_error_code rc, const char *msg)
{
    if (rc != OCIREG_E_NONE)
        fail_msg("analyze failed with %d: %s", (int)rc, msg ? msg : "(null)");
}

static void test_oci_manifest(void **st)
{
    (void)st;
    ocireg_manifest_info info;
    const char *msg = NULL;
    expect_ok(analyze(OCI_MANIFEST, OCIREG_MT_OCI_MANIFEST, NULL, &info, &msg),
              msg);
    assert_string_equal(info.media_type, OCIREG_MT_OCI_MANIFEST);
    assert_int_equal(info.is_index, 0);
    refs_are(&info, (const char *[]){ DC, DL1, DL2, NULL }, 0);
    assert_null(info.subject);
    assert_null(info.referrer_descriptor);
}

static void test_oci_index(void **st)
{
    (void)st;
    ocireg_manifest_info info;
    const char *msg = NULL;
    expect_ok(analyze(OCI_INDEX, OCIREG_MT_OCI_INDEX, NULL, &info, &msg), msg);
    assert_string_equal(info.media_type, OCIREG_MT_OCI_INDEX);
    assert_int_equal(info.is_index != 0, 1);
    refs_are(&info, (const char *[]){ DM1, DM2, NULL }, 1);
    assert_null(info.subject);
    assert_null(info.referrer_descriptor);
}

static void test_oci_index_empty(void **st)
{
    (void)st;
    ocireg_manifest_info info;
    const char *msg = NULL;
    const char *body = "{\"schemaVersion\":2,\"mediaType\":\""
                       OCIREG_MT_OCI_INDEX "\",\"manifests\":[]}";
    expect_ok(analyze(body, OCIREG_MT_OCI_INDEX, NULL, &info, &msg), msg);
    assert_int_equal(info.is_index != 0, 1);
    assert_int_equal(info.refs->nelts, 0);
}

static void test_docker_manifest(void **st)
{
    (void)st;
    ocireg_manifest_info info;
    const char *msg = NULL;
    expect_ok(analyze(DOCKER_MANIFEST, OCIREG_MT_DOCKER_MANIFEST, NULL, &info,
                      &msg), msg);
    assert_string_equal(info.media_type, OCIREG_MT_DOCKER_MANIFEST);
    assert_int_equal(info.is_index, 0);
    refs_are(&info, (const char *[]){ DC, DL1, DL2, NULL }, 0);
}

static void test_docker_list(void **st)
{
    (void)st;
    ocireg_manifest_info info;
    const char *msg = NULL;
    expect_ok(analyze(DOCKER_LIST, OCIREG_MT_DOCKER_LIST, NULL, &info, &msg),
              msg);
    assert_string_equal(info.media_type, OCIREG_MT_DOCKER_LIST);
    assert_int_equal(info.is_index != 0, 1);
    refs_are(&info, (const char *[]){ DM1, DM2, NULL }, 1);
}

static void test_media_type_mismatch(void **st)
{
    (void)st;
    ocireg_manifest_info info;
    const char *msg = NULL;
    assert_int_equal(analyze(OCI_MANIFEST, OCIREG_MT_OCI_INDEX, NULL, &info,
                             &msg), OCIREG_E_MANIFEST_INVALID);
    assert_non_null(msg);
    assert_int_equal(analyze(OCI_INDEX, OCIREG_MT_OCI_MANIFEST, NULL, &info,
                             &msg), OCIREG_E_MANIFEST_INVALID);
    assert_int_equal(analyze(DOCKER_MANIFEST, OCIREG_MT_OCI_MANIFEST, NULL,
                             &info, &msg), OCIREG_E_MANIFEST_INVALID);
    assert_int_equal(analyze(OCI_MANIFEST,
                             "application/vnd.oci.image.index.v1+json; x=y",
                             NULL, &info, &msg), OCIREG_E_MANIFEST_INVALID);
}

static void test_content_type_params_ignored(void **st)
{
    (void)st;
    ocireg_manifest_info info;
    const char *msg = NULL;
    expect_ok(analyze(OCI_MANIFEST, OCIREG_MT_OCI_MANIFEST "; charset=utf-8",
                      NULL, &info, &msg), msg);
    assert_string_equal(info.media_type, OCIREG_MT_OCI_MANIFEST);
    refs_are(&info, (const char *[]){ DC, DL1, DL2, NULL }, 0);

    expect_ok(analyze(OCI_MANIFEST, OCIREG_MT_OCI_MANIFEST ";charset=utf-8",
                      NULL, &info, &msg), msg);
    assert_string_equal(info.media_type, OCIREG_MT_OCI_MANIFEST);
}

static void test_no_media_type_field(void **st)
{
    (void)st;
    ocireg_manifest_info info;
    const char *msg = NULL;
    expect_ok(analyze(OCI_MANIFEST_NO_MT, OCIREG_MT_OCI_MANIFEST, NULL, &info,
                      &msg), msg);
    assert_string_equal(info.media_type, OCIREG_MT_OCI_MANIFEST);
    refs_are(&info, (const char *[]){ DC, DL1, NULL }, 0);

    expect_ok(analyze(OCI_MANIFEST_NO_MT,
                      OCIREG_MT_OCI_MANIFEST "; charset=utf-8", NULL, &info,
                      &msg), msg);
    assert_string_equal(info.media_type, OCIREG_MT_OCI_MANIFEST);
}

static void test_media_type_field_without_content_type(void **st)
{
    (void)st;
    ocireg_manifest_info info;
    const char *msg = NULL;
    expect_ok(analyze(OCI_MANIFEST, NULL, NULL, &info, &msg), msg);
    assert_string_equal(info.media_type, OCIREG_MT_OCI_MANIFEST);
    expect_ok(analyze(OCI_INDEX, NULL, NULL, &info, &msg), msg);
    assert_string_equal(info.media_type, OCIREG_MT_OCI_INDEX);
    assert_int_equal(info.is_index != 0, 1);
}

static void test_invalid_json(void **st)
{
    (void)st;
    ocireg_manifest_info info;
    const char *msg = NULL;
    const char *bad[] = {
        "", "{", "not json", "[]", "\"string\"", "42", "null",
        "{\"schemaVersion\":2,", "{\"schemaVersion\":2}}",
        NULL
    };
    for (int i = 0; bad[i]; i++) {
        ocireg_error_code rc = analyze(bad[i], OCIREG_MT_OCI_MANIFEST, NULL,
                                       &info, &msg);
        if (rc != OCIREG_E_MANIFEST_INVALID)
            fail_msg("'%s': got %d, want MANIFEST_INVALID", bad[i], (int)rc);
        assert_non_null(msg);
    }
}

static void test_length_respected(void **st)
{
    (void)st;
    /* len, not strlen, bounds the document */
    ocireg_manifest_info info;
    const char *msg = NULL;
    char *body = apr_pstrcat(pool, OCI_MANIFEST, "garbage", NULL);
    memset(&info, 0, sizeof info);
    ocireg_error_code rc = ocireg_manifest_analyze(
        pool, body, strlen(OCI_MANIFEST), OCIREG_MT_OCI_MANIFEST, DSELF,
        &info, &msg);
    expect_ok_(rc, msg);
    refs_are(&info, (const char *[]){ DC, DL1, DL2, NULL }, 0);

    /* a truncated document is invalid even though the buffer goes on */
    rc = ocireg_manifest_analyze(pool, OCI_MANIFEST, strlen(OCI_MANIFEST) - 1,
                                 OCIREG_MT_OCI_MANIFEST, DSELF, &info, &msg);
    assert_int_equal(rc, OCIREG_E_MANIFEST_INVALID);
}

static void test_schema_version(void **st)
{
    (void)st;
    ocireg_manifest_info info;
    const char *msg = NULL;
    const char *v1 = "{\"schemaVersion\":1,\"mediaType\":\""
                     OCIREG_MT_OCI_MANIFEST "\",\"config\":{\"mediaType\":\""
                     MT_CONFIG "\",\"digest\":\"" DC "\",\"size\":1},"
                     "\"layers\":[]}";
    assert_int_equal(analyze(v1, OCIREG_MT_OCI_MANIFEST, NULL, &info, &msg),
                     OCIREG_E_MANIFEST_INVALID);
    const char *v3 = "{\"schemaVersion\":3,\"mediaType\":\""
                     OCIREG_MT_OCI_MANIFEST "\",\"config\":{\"mediaType\":\""
                     MT_CONFIG "\",\"digest\":\"" DC "\",\"size\":1},"
                     "\"layers\":[]}";
    assert_int_equal(analyze(v3, OCIREG_MT_OCI_MANIFEST, NULL, &info, &msg),
                     OCIREG_E_MANIFEST_INVALID);
    const char *vs = "{\"schemaVersion\":\"2\",\"mediaType\":\""
                     OCIREG_MT_OCI_MANIFEST "\",\"config\":{\"mediaType\":\""
                     MT_CONFIG "\",\"digest\":\"" DC "\",\"size\":1},"
                     "\"layers\":[]}";
    assert_int_equal(analyze(vs, OCIREG_MT_OCI_MANIFEST, NULL, &info, &msg),
                     OCIREG_E_MANIFEST_INVALID);
    const char *none = "{\"mediaType\":\""
                       OCIREG_MT_OCI_MANIFEST "\",\"config\":{\"mediaType\":\""
                       MT_CONFIG "\",\"digest\":\"" DC "\",\"size\":1},"
                       "\"layers\":[]}";
    assert_int_equal(analyze(none, OCIREG_MT_OCI_MANIFEST, NULL, &info, &msg),
                     OCIREG_E_MANIFEST_INVALID);
}

static void test_invalid_layer_digest(void **st)
{
    (void)st;
    ocireg_manifest_info info;
    const char *msg = NULL;
    const char *digests[] = { "sha256:xyz", "sha256:" "ABCDEF", "", "nocolon",
                              NULL };
    for (int i = 0; digests[i]; i++) {
        const char *body = apr_pstrcat(pool,
            "{\"schemaVersion\":2,\"mediaType\":\"" OCIREG_MT_OCI_MANIFEST
            "\",\"config\":{\"mediaType\":\"" MT_CONFIG "\",\"digest\":\"" DC
            "\",\"size\":1},\"layers\":[{\"mediaType\":\"" MT_LAYER
            "\",\"digest\":\"", digests[i], "\",\"size\":3}]}", NULL);
        ocireg_error_code rc = analyze(body, OCIREG_MT_OCI_MANIFEST, NULL,
                                       &info, &msg);
        if (rc != OCIREG_E_MANIFEST_INVALID && rc != OCIREG_E_DIGEST_INVALID)
            fail_msg("layer digest '%s': got %d", digests[i], (int)rc);
    }
    /* a layer without a digest at all */
    const char *body =
        "{\"schemaVersion\":2,\"mediaType\":\"" OCIREG_MT_OCI_MANIFEST
        "\",\"config\":{\"mediaType\":\"" MT_CONFIG "\",\"digest\":\"" DC
        "\",\"size\":1},\"layers\":[{\"mediaType\":\"" MT_LAYER
        "\",\"size\":3}]}";
    ocireg_error_code rc = analyze(body, OCIREG_MT_OCI_MANIFEST, NULL, &info,
                                   &msg);
    assert_true(rc == OCIREG_E_MANIFEST_INVALID ||
                rc == OCIREG_E_DIGEST_INVALID);
    /* an index child with a bad digest */
    body = "{\"schemaVersion\":2,\"mediaType\":\"" OCIREG_MT_OCI_INDEX
           "\",\"manifests\":[{\"mediaType\":\"" OCIREG_MT_OCI_MANIFEST
           "\",\"digest\":\"sha256:zz\",\"size\":1}]}";
    rc = analyze(body, OCIREG_MT_OCI_INDEX, NULL, &info, &msg);
    assert_true(rc == OCIREG_E_MANIFEST_INVALID ||
                rc == OCIREG_E_DIGEST_INVALID);
}

static void test_foreign_layers_left_out(void **st)
{
    (void)st;
    ocireg_manifest_info info;
    const char *msg = NULL;
    const char *body =
        "{\"schemaVersion\":2,\"mediaType\":\"" OCIREG_MT_DOCKER_MANIFEST
        "\",\"config\":{\"mediaType\":"
        "\"application/vnd.docker.container.image.v1+json\",\"size\":1,"
        "\"digest\":\"" DC "\"},\"layers\":["
        "{\"mediaType\":\"application/vnd.docker.image.rootfs.foreign.diff.tar.gzip\","
        "\"size\":1,\"digest\":\"" DM1 "\",\"urls\":[\"https://example.com/x\"]},"
        "{\"mediaType\":\"application/vnd.docker.image.rootfs.diff.tar.gzip\","
        "\"size\":2,\"digest\":\"" DL1 "\"}]}";
    expect_ok(analyze(body, OCIREG_MT_DOCKER_MANIFEST, NULL, &info, &msg), msg);
    refs_are(&info, (const char *[]){ DC, DL1, NULL }, 0);

    body =
        "{\"schemaVersion\":2,\"mediaType\":\"" OCIREG_MT_OCI_MANIFEST
        "\",\"config\":{\"mediaType\":\"" MT_CONFIG "\",\"size\":1,"
        "\"digest\":\"" DC "\"},\"layers\":["
        "{\"mediaType\":\"" MT_LAYER "\",\"size\":2,\"digest\":\"" DL1 "\"},"
        "{\"mediaType\":"
        "\"application/vnd.oci.image.layer.nondistributable.v1.tar+gzip\","
        "\"size\":1,\"digest\":\"" DM1 "\"},"
        "{\"mediaType\":\"" MT_LAYER "\",\"size\":2,\"digest\":\"" DL2 "\"}]}";
    expect_ok(analyze(body, OCIREG_MT_OCI_MANIFEST, NULL, &info, &msg), msg);
    refs_are(&info, (const char *[]){ DC, DL1, DL2, NULL }, 0);
}

/* Only the exact foreign/non-distributable media types skip the check. */
static void test_foreign_exact_match(void **st)
{
    (void)st;
    ocireg_manifest_info info;
    const char *msg = NULL;
    const char *lookalikes[] = {
        "application/vnd.example.foreign.layer",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip+x",
        "xapplication/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip ",
        NULL
    };
    for (int i = 0; lookalikes[i]; i++) {
        const char *body = apr_psprintf(pool,
            "{\"schemaVersion\":2,\"mediaType\":\"" OCIREG_MT_OCI_MANIFEST
            "\",\"config\":{\"mediaType\":\"" MT_CONFIG "\",\"size\":1,"
            "\"digest\":\"" DC "\"},\"layers\":["
            "{\"mediaType\":\"%s\",\"size\":1,\"digest\":\"" DM1 "\"}]}",
            lookalikes[i]);
        expect_ok(analyze(body, OCIREG_MT_OCI_MANIFEST, NULL, &info, &msg),
                  msg);
        refs_are(&info, (const char *[]){ DC, DM1, NULL }, 0);
    }
}

/* A manifest of n minimal layer descriptors. */
static char *many_layers(int n, const char *extra)
{
    char *b = malloc((size_t)n * 300 + 1024), *o = b;
    o += sprintf(o, "{\"schemaVersion\":2,\"mediaType\":\""
                 OCIREG_MT_OCI_MANIFEST "\",\"config\":{\"mediaType\":\""
                 MT_CONFIG "\",\"size\":1,\"digest\":\"" DC "\"},"
                 "\"layers\":[");
    for (int i = 0; i < n; i++)
        o += sprintf(o, "%s{\"mediaType\":\"" MT_LAYER "\",\"size\":%d,"
                     "\"digest\":\"sha256:%064x\"%s}",
                     i ? "," : "", i, i, extra);
    strcpy(o, "]}");
    return b;
}

static void test_thousands_of_layers_accepted(void **st)
{
    (void)st;
    ocireg_manifest_info info;
    const char *msg = NULL;
    char *b = many_layers(10000, "");
    expect_ok(analyze(b, OCIREG_MT_OCI_MANIFEST, NULL, &info, &msg), msg);
    assert_int_equal(info.refs->nelts, 10001);
    free(b);
    b = many_layers(3000, ",\"annotations\":{\"org.opencontainers.image."
                          "title\":\"layer.tar.gz\"}");
    expect_ok(analyze(b, OCIREG_MT_OCI_MANIFEST, NULL, &info, &msg), msg);
    assert_int_equal(info.refs->nelts, 3001);
    free(b);
}

/* Documents whose parsed form would be far larger than their text are
 * refused before jansson builds anything. */
static void test_costly_shapes_refused(void **st)
{
    (void)st;
    ocireg_manifest_info info;
    const char *msg = NULL;
    const size_t max = OCIREG_MANIFEST_MAX;
    const char *unit[] = { "{}", "[]", "1", "\"\"", "{\"a\":{}}", NULL };
    char *b = malloc(max + 1);
    for (int u = 0; unit[u]; u++) {
        size_t n = 0, ul = strlen(unit[u]);
        n += (size_t)sprintf(b, "{\"schemaVersion\":2,\"x\":[");
        while (n + ul + 3 < max) {
            memcpy(b + n, unit[u], ul);
            n += ul;
            b[n++] = ',';
        }
        memcpy(b + n - 1, "]}", 3);
        ocireg_error_code rc = ocireg_manifest_analyze(
            pool, b, strlen(b), OCIREG_MT_OCI_MANIFEST, DSELF, &info, &msg);
        if (rc != OCIREG_E_MANIFEST_INVALID)
            fail_msg("4 MiB of %s: want MANIFEST_INVALID, got %d", unit[u],
                     (int)rc);
        assert_non_null(strstr(msg, "too many values"));
    }
    /* nesting */
    {
        size_t n = 0;
        n += (size_t)sprintf(b, "{\"schemaVersion\":2,\"x\":");
        for (int i = 0; i < OCIREG_MANIFEST_MAX_DEPTH; i++)
            b[n++] = '[';
        for (int i = 0; i < OCIREG_MANIFEST_MAX_DEPTH; i++)
            b[n++] = ']';
        strcpy(b + n, "}");
        assert_int_equal(ocireg_manifest_analyze(pool, b, strlen(b),
                                                 OCIREG_MT_OCI_MANIFEST,
                                                 DSELF, &info, &msg),
                         OCIREG_E_MANIFEST_INVALID);
        assert_non_null(strstr(msg, "nested deeper"));
        /* a bracket inside a string is text, not nesting */
        n = (size_t)sprintf(b, "{\"schemaVersion\":2,\"annotations\":{\"a\":\"");
        for (int i = 0; i < 1000; i++)
            b[n++] = '[';
        strcpy(b + n, "\\\"{\"}," "\"config\":{\"mediaType\":\"" MT_CONFIG
               "\",\"size\":1,\"digest\":\"" DC "\"},\"layers\":[]}");
        expect_ok(ocireg_manifest_analyze(pool, b, strlen(b),
                                          OCIREG_MT_OCI_MANIFEST, DSELF,
                                          &info, &msg), msg);
    }
    /* unbalanced closers are refused at once */
    strcpy(b, "{\"schemaVersion\":2}]]]]");
    assert_int_equal(ocireg_manifest_analyze(pool, b, strlen(b),
                                             OCIREG_MT_OCI_MANIFEST, DSELF,
                                             &info, &msg),
                     OCIREG_E_MANIFEST_INVALID);
    /* one long string is cheap: its cost is its length */
    {
        size_t n = (size_t)sprintf(b, "{\"schemaVersion\":2,\"annotations\":"
                                      "{\"a\":\"");
        memset(b + n, 'x', 3 * 1024 * 1024);
        n += 3 * 1024 * 1024;
        strcpy(b + n, "\"},\"config\":{\"mediaType\":\"" MT_CONFIG
               "\",\"size\":1,\"digest\":\"" DC "\"},\"layers\":[]}");
        expect_ok(ocireg_manifest_analyze(pool, b, strlen(b),
                                          OCIREG_MT_OCI_MANIFEST, DSELF,
                                          &info, &msg), msg);
    }
    free(b);
}

/* A referrer whose descriptor the stores could not read back is refused
 * rather than stored unlisted. */
static void test_referrer_annotations_limit(void **st)
{
    (void)st;
    ocireg_manifest_info info;
    const char *msg = NULL;
    size_t big = OCIREG_REFERRER_DESCRIPTOR_MAX;
    char *b = malloc(big + 1024), *o = b;
    o += sprintf(o, "{\"schemaVersion\":2,\"mediaType\":\""
                 OCIREG_MT_OCI_MANIFEST "\",\"config\":{\"mediaType\":\""
                 MT_CONFIG "\",\"size\":1,\"digest\":\"" DC "\"},"
                 "\"layers\":[],\"subject\":{\"mediaType\":\""
                 OCIREG_MT_OCI_MANIFEST "\",\"size\":1,\"digest\":\"" DS
                 "\"},\"annotations\":{\"a\":\"");
    memset(o, 'x', big);
    strcpy(o + big, "\"}}");
    assert_int_equal(analyze(b, OCIREG_MT_OCI_MANIFEST, NULL, &info, &msg),
                     OCIREG_E_MANIFEST_INVALID);
    assert_non_null(strstr(msg, "referrers"));
    /* well below the limit: fine */
    strcpy(o + big / 2, "\"}}");
    expect_ok(analyze(b, OCIREG_MT_OCI_MANIFEST, NULL, &info, &msg), msg);
    assert_true(strlen(info.referrer_descriptor)
                < OCIREG_REFERRER_DESCRIPTOR_MAX);
    free(b);
}

static json_t *load(const char *text)
{
    assert_non_null(text);
    json_error_t e;
    json_t *j = json_loads(text, 0, &e);
    if (!j)
        fail_msg("invalid JSON (%s): %s", e.text, text);
    return j;
}

#define SUBJECT_MANIFEST                                                    \
    "{\"schemaVersion\":2,\"mediaType\":\"" OCIREG_MT_OCI_MANIFEST "\","    \
    "\"artifactType\":\"application/vnd.example.sbom.v1\","                 \
    "\"config\":{\"mediaType\":\"application/vnd.oci.empty.v1+json\","      \
    "\"digest\":\"" DC "\",\"size\":2},"                                    \
    "\"layers\":[{\"mediaType\":\"application/json\",\"digest\":\"" DL1     \
    "\",\"size\":100}],"                                                    \
    "\"subject\":{\"mediaType\":\"" OCIREG_MT_OCI_MANIFEST "\","            \
    "\"digest\":\"" DS "\",\"size\":1234},"                                 \
    "\"annotations\":{\"org.opencontainers.image.created\":"                \
    "\"2024-01-01T00:00:00Z\",\"org.example.sbom.format\":\"json\"}}"

static void test_subject_descriptor(void **st)
{
    (void)st;
    ocireg_manifest_info info;
    const char *msg = NULL;
    expect_ok(analyze(SUBJECT_MANIFEST, OCIREG_MT_OCI_MANIFEST, DSELF, &info,
                      &msg), msg);
    assert_non_null(info.subject);
    assert_string_equal(info.subject, DS);
    assert_non_null(info.artifact_type);
    assert_string_equal(info.artifact_type, "application/vnd.example.sbom.v1");
    refs_are(&info, (const char *[]){ DC, DL1, NULL }, 0);

    json_t *d = load(info.referrer_descriptor);
    assert_true(json_is_object(d));
    assert_string_equal(json_string_value(json_object_get(d, "mediaType")),
                        OCIREG_MT_OCI_MANIFEST);
    assert_string_equal(json_string_value(json_object_get(d, "digest")), DSELF);
    json_t *size = json_object_get(d, "size");
    assert_true(json_is_integer(size));
    assert_int_equal(json_integer_value(size), strlen(SUBJECT_MANIFEST));
    assert_string_equal(json_string_value(json_object_get(d, "artifactType")),
                        "application/vnd.example.sbom.v1");
    json_t *ann = json_object_get(d, "annotations");
    assert_true(json_is_object(ann));
    assert_int_equal(json_object_size(ann), 2);
    assert_string_equal(json_string_value(json_object_get(ann,
        "org.opencontainers.image.created")), "2024-01-01T00:00:00Z");
    assert_string_equal(json_string_value(json_object_get(ann,
        "org.example.sbom.format")), "json");
    /* the descriptor does not leak the subject itself */
    assert_null(json_object_get(d, "subject"));
    json_decref(d);

    assert_string_equal(ocireg_descriptor_string(pool,
                            info.referrer_descriptor, "artifactType"),
                        "application/vnd.example.sbom.v1");
}

static void test_subject_artifact_type_from_config(void **st)
{
    (void)st;
    ocireg_manifest_info info;
    const char *msg = NULL;
    const char *body =
        "{\"schemaVersion\":2,\"mediaType\":\"" OCIREG_MT_OCI_MANIFEST "\","
        "\"config\":{\"mediaType\":\"application/vnd.example.signature.v1\","
        "\"digest\":\"" DC "\",\"size\":2},"
        "\"layers\":[],"
        "\"subject\":{\"mediaType\":\"" OCIREG_MT_OCI_MANIFEST "\","
        "\"digest\":\"" DS "\",\"size\":1234}}";
    expect_ok(analyze(body, NULL, D("9"), &info, &msg), msg);
    assert_string_equal(info.subject, DS);
    assert_string_equal(info.artifact_type,
                        "application/vnd.example.signature.v1");
    json_t *d = load(info.referrer_descriptor);
    assert_string_equal(json_string_value(json_object_get(d, "artifactType")),
                        "application/vnd.example.signature.v1");
    assert_string_equal(json_string_value(json_object_get(d, "digest")),
                        D("9"));
    assert_int_equal(json_integer_value(json_object_get(d, "size")),
                     strlen(body));
    assert_string_equal(json_string_value(json_object_get(d, "mediaType")),
                        OCIREG_MT_OCI_MANIFEST);
    json_decref(d);

    /* empty artifactType string falls back to config.mediaType too */
    body =
        "{\"schemaVersion\":2,\"mediaType\":\"" OCIREG_MT_OCI_MANIFEST "\","
        "\"artifactType\":\"\","
        "\"config\":{\"mediaType\":\"application/vnd.oci.empty.v1+json\","
        "\"digest\":\"" DC "\",\"size\":2},"
        "\"layers\":[],"
        "\"subject\":{\"mediaType\":\"" OCIREG_MT_OCI_MANIFEST "\","
        "\"digest\":\"" DS "\",\"size\":1234}}";
    expect_ok(analyze(body, OCIREG_MT_OCI_MANIFEST, NULL, &info, &msg), msg);
    d = load(info.referrer_descriptor);
    assert_string_equal(json_string_value(json_object_get(d, "artifactType")),
                        "application/vnd.oci.empty.v1+json");
    json_decref(d);
}

static void test_index_subject(void **st)
{
    (void)st;
    ocireg_manifest_info info;
    const char *msg = NULL;
    const char *body =
        "{\"schemaVersion\":2,\"mediaType\":\"" OCIREG_MT_OCI_INDEX "\","
        "\"manifests\":[{\"mediaType\":\"" OCIREG_MT_OCI_MANIFEST "\","
        "\"digest\":\"" DM1 "\",\"size\":10}],"
        "\"subject\":{\"mediaType\":\"" OCIREG_MT_OCI_MANIFEST "\","
        "\"digest\":\"" DS "\",\"size\":1234},"
        "\"annotations\":{\"k\":\"v\"}}";
    expect_ok(analyze(body, OCIREG_MT_OCI_INDEX, DSELF, &info, &msg), msg);
    assert_int_equal(info.is_index != 0, 1);
    assert_string_equal(info.subject, DS);
    assert_null(info.artifact_type);
    refs_are(&info, (const char *[]){ DM1, NULL }, 1);
    json_t *d = load(info.referrer_descriptor);
    assert_null(json_object_get(d, "artifactType"));
    assert_string_equal(json_string_value(json_object_get(d, "mediaType")),
                        OCIREG_MT_OCI_INDEX);
    assert_string_equal(json_string_value(json_object_get(d, "digest")), DSELF);
    assert_int_equal(json_integer_value(json_object_get(d, "size")),
                     strlen(body));
    assert_string_equal(json_string_value(json_object_get(
                            json_object_get(d, "annotations"), "k")), "v");
    json_decref(d);
    assert_null(ocireg_descriptor_string(pool,
                                                info.referrer_descriptor, "artifactType"));

    /* with an artifactType it is kept */
    body =
        "{\"schemaVersion\":2,\"mediaType\":\"" OCIREG_MT_OCI_INDEX "\","
        "\"artifactType\":\"application/vnd.example.bundle\","
        "\"manifests\":[],"
        "\"subject\":{\"mediaType\":\"" OCIREG_MT_OCI_MANIFEST "\","
        "\"digest\":\"" DS "\",\"size\":1234}}";
    expect_ok(analyze(body, OCIREG_MT_OCI_INDEX, DSELF, &info, &msg), msg);
    assert_string_equal(info.artifact_type, "application/vnd.example.bundle");
    d = load(info.referrer_descriptor);
    assert_string_equal(json_string_value(json_object_get(d, "artifactType")),
                        "application/vnd.example.bundle");
    json_decref(d);
}

static void test_subject_bad_digest(void **st)
{
    (void)st;
    ocireg_manifest_info info;
    const char *msg = NULL;
    const char *body =
        "{\"schemaVersion\":2,\"mediaType\":\"" OCIREG_MT_OCI_MANIFEST "\","
        "\"config\":{\"mediaType\":\"" MT_CONFIG "\","
        "\"digest\":\"" DC "\",\"size\":2},\"layers\":[],"
        "\"subject\":{\"mediaType\":\"" OCIREG_MT_OCI_MANIFEST "\","
        "\"digest\":\"sha256:nothex\",\"size\":1234}}";
    ocireg_error_code rc = analyze(body, OCIREG_MT_OCI_MANIFEST, NULL, &info,
                                   &msg);
    assert_true(rc == OCIREG_E_MANIFEST_INVALID ||
                rc == OCIREG_E_DIGEST_INVALID);
}

static apr_array_header_t *descs(const char *items[])
{
    apr_array_header_t *a = apr_array_make(pool, 4, sizeof(const char *));
    for (int i = 0; items[i]; i++)
        APR_ARRAY_PUSH(a, const char *) = items[i];
    return a;
}

#define DESC_A "{\"mediaType\":\"" OCIREG_MT_OCI_MANIFEST "\",\"size\":10," \
    "\"digest\":\"" DM1 "\",\"artifactType\":\"application/vnd.example.sbom.v1\"," \
    "\"annotations\":{\"k\":\"v\"}}"
#define DESC_B "{\"mediaType\":\"" OCIREG_MT_OCI_MANIFEST "\",\"size\":11," \
    "\"digest\":\"" DM2 "\",\"artifactType\":\"application/vnd.example.signature.v1\"}"
#define DESC_C "{\"mediaType\":\"" OCIREG_MT_OCI_INDEX "\",\"size\":12," \
    "\"digest\":\"" DL1 "\"}"

static json_t *index_check(const char *text)
{
    json_t *j = load(text);
    assert_int_equal(json_integer_value(json_object_get(j, "schemaVersion")),
                     2);
    assert_string_equal(json_string_value(json_object_get(j, "mediaType")),
                        OCIREG_MT_OCI_INDEX);
    json_t *m = json_object_get(j, "manifests");
    assert_true(json_is_array(m));
    return j;
}

static void test_referrers_index(void **st)
{
    (void)st;
    const char *t = ocireg_referrers_index(pool,
        descs((const char *[]){ DESC_A, DESC_B, DESC_C, NULL }), NULL);
    json_t *j = index_check(t);
    json_t *m = json_object_get(j, "manifests");
    assert_int_equal(json_array_size(m), 3);
    json_t *a = load(DESC_A), *b = load(DESC_B), *c = load(DESC_C);
    assert_true(json_equal(json_array_get(m, 0), a));
    assert_true(json_equal(json_array_get(m, 1), b));
    assert_true(json_equal(json_array_get(m, 2), c));
    json_decref(j);

    t = ocireg_referrers_index(pool,
        descs((const char *[]){ DESC_A, DESC_B, DESC_C, NULL }),
        "application/vnd.example.signature.v1");
    j = index_check(t);
    m = json_object_get(j, "manifests");
    assert_int_equal(json_array_size(m), 1);
    assert_true(json_equal(json_array_get(m, 0), b));
    json_decref(j);

    t = ocireg_referrers_index(pool,
        descs((const char *[]){ DESC_A, DESC_B, DESC_C, NULL }),
        "application/vnd.example.none");
    j = index_check(t);
    assert_int_equal(json_array_size(json_object_get(j, "manifests")), 0);
    json_decref(j);

    json_decref(a);
    json_decref(b);
    json_decref(c);
}

static void test_referrers_index_empty(void **st)
{
    (void)st;
    const char *t = ocireg_referrers_index(pool, descs((const char *[]){ NULL }),
                                           NULL);
    json_t *j = index_check(t);
    assert_int_equal(json_array_size(json_object_get(j, "manifests")), 0);
    json_decref(j);
    t = ocireg_referrers_index(pool, descs((const char *[]){ NULL }),
                               "application/x");
    j = index_check(t);
    assert_int_equal(json_array_size(json_object_get(j, "manifests")), 0);
    json_decref(j);
}

static void test_referrers_index_roundtrip(void **st)
{
    (void)st;
    /* descriptors produced by analyze feed the index */
    ocireg_manifest_info info;
    const char *msg = NULL;
    expect_ok(analyze(SUBJECT_MANIFEST, OCIREG_MT_OCI_MANIFEST, DSELF, &info,
                      &msg), msg);
    const char *t = ocireg_referrers_index(pool,
        descs((const char *[]){ info.referrer_descriptor, NULL }),
        "application/vnd.example.sbom.v1");
    json_t *j = index_check(t);
    json_t *m = json_object_get(j, "manifests");
    assert_int_equal(json_array_size(m), 1);
    assert_string_equal(json_string_value(json_object_get(
                            json_array_get(m, 0), "digest")), DSELF);
    json_decref(j);
}

static void test_descriptor_artifact_type(void **st)
{
    (void)st;
    assert_string_equal(ocireg_descriptor_string(pool, DESC_A, "artifactType"),
                        "application/vnd.example.sbom.v1");
    assert_null(ocireg_descriptor_string(pool, DESC_C, "artifactType"));
    assert_null(ocireg_descriptor_string(pool, "not json", "artifactType"));
    assert_null(ocireg_descriptor_string(pool, "{\"artifactType\":5}", "artifactType"));
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
        cmocka_unit_test_setup_teardown(test_oci_manifest, setup, teardown),
        cmocka_unit_test_setup_teardown(test_oci_index, setup, teardown),
        cmocka_unit_test_setup_teardown(test_oci_index_empty, setup, teardown),
        cmocka_unit_test_setup_teardown(test_docker_manifest, setup, teardown),
        cmocka_unit_test_setup_teardown(test_docker_list, setup, teardown),
        cmocka_unit_test_setup_teardown(test_media_type_mismatch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_content_type_params_ignored, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_media_type_field, setup, teardown),
        cmocka_unit_test_setup_teardown(test_media_type_field_without_content_type, setup, teardown),
        cmocka_unit_test_setup_teardown(test_invalid_json, setup, teardown),
        cmocka_unit_test_setup_teardown(test_length_respected, setup, teardown),
        cmocka_unit_test_setup_teardown(test_schema_version, setup, teardown),
        cmocka_unit_test_setup_teardown(test_invalid_layer_digest, setup, teardown),
        cmocka_unit_test_setup_teardown(test_foreign_layers_left_out, setup, teardown),
        cmocka_unit_test_setup_teardown(test_subject_descriptor, setup, teardown),
        cmocka_unit_test_setup_teardown(test_subject_artifact_type_from_config, setup, teardown),
        cmocka_unit_test_setup_teardown(test_index_subject, setup, teardown),
        cmocka_unit_test_setup_teardown(test_subject_bad_digest, setup, teardown),
        cmocka_unit_test_setup_teardown(test_referrers_index, setup, teardown),
        cmocka_unit_test_setup_teardown(test_referrers_index_empty, setup, teardown),
        cmocka_unit_test_setup_teardown(test_referrers_index_roundtrip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_descriptor_artifact_type, setup, teardown),
        cmocka_unit_test_setup_teardown(test_foreign_exact_match, setup, teardown),
        cmocka_unit_test_setup_teardown(test_thousands_of_layers_accepted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_costly_shapes_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_referrer_annotations_limit, setup, teardown),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    apr_terminate();
    return rc;
}
