/* Unit tests for ocireg_parse.h */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <string.h>
#include <strings.h>
#include <stdio.h>
#include <cmocka.h>

#include <apr_general.h>
#include <apr_pools.h>
#include <apr_strings.h>

#include "ocireg_parse.h"

static apr_pool_t *pool;

static char *repeat(char c, int n)
{
    char *s = apr_palloc(pool, n + 1);
    memset(s, c, n);
    s[n] = '\0';
    return s;
}

#define HEX64 "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
#define HEX64U "0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF"
#define HEX128 HEX64 HEX64

/* ------------------------------------------------------------------ names */

static void test_name_valid_simple(void **st)
{
    (void)st;
    const char *ok[] = {
        "a", "z", "0", "abc", "library/ubuntu", "a/b/c", "a/b/c/d/e/f",
        "a.b", "a_b", "a__b", "a-b", "a--b", "a---b", "a.b.c", "a1/b2.c3",
        "my-org/my_repo.name", "0abc/9xyz", "a-b_c.d__e/f--g",
        "blobs", "manifests/tags", "uploads",
        NULL
    };
    for (int i = 0; ok[i]; i++) {
        if (!ocireg_name_valid(ok[i]))
            fail_msg("name should be valid: '%s'", ok[i]);
    }
}

static void test_name_invalid(void **st)
{
    (void)st;
    const char *bad[] = {
        "", "/", "..", ".", "a/..", "../a", "a/../b", "a/./b", "./a",
        "%2e", "%2e%2e", "a/%2e%2e/b", "a%2fb",
        "/a", "a/", "/a/", "a//b", "a///b",
        "A", "Abc", "a/B", "library/Ubuntu",
        "a___b", "a____b",
        ".a", "a.", "_a", "a_", "-a", "a-", "a/.b", "a/b.", "a/_b", "a/b_",
        "a/-b", "a/b-", "a.-b", "a._b", "a-.b", "a_.b", "a..b", "a_-b",
        "a b", " a", "a ", "a\tb", "a\nb", "a:b", "a@b", "a+b", "a~b",
        "a\\b", "a?b", "a#b", "a%b", "a*b", "\xc3\xa9", "a\xff",
        NULL
    };
    for (int i = 0; bad[i]; i++) {
        if (ocireg_name_valid(bad[i]))
            fail_msg("name should be invalid: '%s'", bad[i]);
    }
}

static void test_name_embedded_nul(void **st)
{
    (void)st;
    /* A C string stops at NUL: "a\0/../x" is just "a" and is valid, the
     * check is that nothing after it is looked at. */
    char buf[16];
    memcpy(buf, "a\0/../x", 8);
    assert_true(ocireg_name_valid(buf));
}

static void test_name_length(void **st)
{
    (void)st;
    assert_true(ocireg_name_valid(repeat('a', 1)));
    assert_true(ocireg_name_valid(repeat('a', 254)));
    assert_true(ocireg_name_valid(repeat('a', OCIREG_NAME_MAX)));
    assert_false(ocireg_name_valid(repeat('a', OCIREG_NAME_MAX + 1)));
    assert_false(ocireg_name_valid(repeat('a', 1000)));
    assert_false(ocireg_name_valid(repeat('a', 70000)));

    /* 255 with components */
    char *s = apr_pstrcat(pool, repeat('a', 127), "/", repeat('b', 127), NULL);
    assert_int_equal(strlen(s), 255);
    assert_true(ocireg_name_valid(s));
    s = apr_pstrcat(pool, repeat('a', 128), "/", repeat('b', 127), NULL);
    assert_int_equal(strlen(s), 256);
    assert_false(ocireg_name_valid(s));
}

/* ------------------------------------------------------------------- tags */

static void test_tag_valid(void **st)
{
    (void)st;
    const char *ok[] = {
        "latest", "v1", "V1", "1.0.0", "1.0.0-rc.1", "_", "_a", "a_b",
        "A", "ABC", "a.b-c_d", "0", "a..b", "a--", "a.", "a-", "a_",
        "sha256-" HEX64, NULL
    };
    for (int i = 0; ok[i]; i++) {
        if (!ocireg_tag_valid(ok[i]))
            fail_msg("tag should be valid: '%s'", ok[i]);
    }
}

static void test_tag_invalid(void **st)
{
    (void)st;
    const char *bad[] = {
        "", ".", "-", ".a", "-a", "..", "a b", "a/b", "a:b", "a+b", "a@b",
        "sha256:" HEX64, " a", "a ", "a\n", "\xc3\xa9", "a%20", "a~", NULL
    };
    for (int i = 0; bad[i]; i++) {
        if (ocireg_tag_valid(bad[i]))
            fail_msg("tag should be invalid: '%s'", bad[i]);
    }
}

static void test_tag_length(void **st)
{
    (void)st;
    assert_true(ocireg_tag_valid(repeat('a', 127)));
    assert_true(ocireg_tag_valid(repeat('a', OCIREG_TAG_MAX)));
    assert_false(ocireg_tag_valid(repeat('a', OCIREG_TAG_MAX + 1)));
    assert_false(ocireg_tag_valid(repeat('a', 1000)));
    char *s = apr_pstrcat(pool, "_", repeat('.', 127), NULL);
    assert_true(ocireg_tag_valid(s));
    s = apr_pstrcat(pool, "_", repeat('.', 128), NULL);
    assert_false(ocireg_tag_valid(s));
}

/* ---------------------------------------------------------------- digests */

static void test_digest_sha256(void **st)
{
    (void)st;
    assert_int_equal(ocireg_digest_parse("sha256:" HEX64), OCIREG_DIGEST_SHA256);
    assert_int_equal(ocireg_digest_parse(
        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
        OCIREG_DIGEST_SHA256);
}

static void test_digest_sha256_bad(void **st)
{
    (void)st;
    const char *bad[] = {
        "sha256:" HEX64U,                       /* uppercase hex */
        "sha256:E3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "sha256:" HEX64 "0",                    /* 65 */
        "sha256:" HEX64 "a",
        "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde", /* 63 */
        "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdeg",
        "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde=",
        "sha256:" HEX128,                       /* sha512 length under sha256 */
        "sha256:",
        "sha256",
        "sha256:abc",
        "SHA256:" HEX64,
        "sha256::" HEX64,
        "sha256:" HEX64 " ",
        " sha256:" HEX64,
        "sha256:" HEX64 "\n",
        "",
        ":",
        ":" HEX64,
        NULL
    };
    for (int i = 0; bad[i]; i++) {
        ocireg_digest_kind k = ocireg_digest_parse(bad[i]);
        if (k != OCIREG_DIGEST_BAD)
            fail_msg("digest should be BAD: '%s' got %d", bad[i], (int)k);
    }
}

static void test_digest_sha512(void **st)
{
    (void)st;
    assert_int_equal(ocireg_digest_parse("sha512:" HEX128), OCIREG_DIGEST_SHA512);
    assert_int_equal(ocireg_digest_parse("sha512:" HEX64), OCIREG_DIGEST_BAD);
    assert_int_equal(ocireg_digest_parse("sha512:" HEX128 "0"), OCIREG_DIGEST_BAD);
    assert_int_equal(ocireg_digest_parse("sha512:" HEX64U HEX64U), OCIREG_DIGEST_BAD);
    assert_int_equal(ocireg_digest_parse("sha512:"), OCIREG_DIGEST_BAD);
    char *s = apr_pstrdup(pool, "sha512:" HEX128);
    s[strlen(s) - 1] = '\0'; /* 127 */
    assert_int_equal(ocireg_digest_parse(s), OCIREG_DIGEST_BAD);
    assert_int_equal(strlen("sha512:" HEX128), OCIREG_DIGEST_MAX);
}

static void test_digest_other(void **st)
{
    (void)st;
    const char *other[] = {
        "multihash+base58:QmRZxt2b1FVZPNqd8hsiykDL3TdBDeTSPX9Kv46HmX4Gx8",
        "foo:bar",
        "sha384:abc",
        "a.b_c-d+e:XYZ=_-09",
        "md5:d41d8cd98f00b204e9800998ecf8427e",
        NULL
    };
    for (int i = 0; other[i]; i++) {
        ocireg_digest_kind k = ocireg_digest_parse(other[i]);
        if (k != OCIREG_DIGEST_OTHER)
            fail_msg("digest should be OTHER: '%s' got %d", other[i], (int)k);
    }
}

/* An unregistered digest is refused past OCIREG_DIGEST_TEXT_MAX: the
 * stores hold it as one path component or key segment. */
static void test_digest_other_length(void **st)
{
    (void)st;
    char d[OCIREG_DIGEST_TEXT_MAX + 2];
    memset(d, 'a', sizeof(d));
    memcpy(d, "foo:", 4);
    d[OCIREG_DIGEST_TEXT_MAX] = '\0';
    assert_int_equal(ocireg_digest_parse(d), OCIREG_DIGEST_OTHER);
    d[OCIREG_DIGEST_TEXT_MAX] = 'a';
    d[OCIREG_DIGEST_TEXT_MAX + 1] = '\0';
    assert_int_equal(ocireg_digest_parse(d), OCIREG_DIGEST_BAD);
}

static void test_digest_bad_grammar(void **st)
{
    (void)st;
    const char *bad[] = {
        "foo:", "foo", "Foo:bar", "foo+:bar", "+foo:bar", "foo++bar:x",
        "foo.:bar", "foo:ba/r", "foo:ba r", "foo:bar:baz", "foo:ba+r",
        "foo bar:x", "foo:ba.r", "multihash+base58:", ":x", NULL
    };
    for (int i = 0; bad[i]; i++) {
        ocireg_digest_kind k = ocireg_digest_parse(bad[i]);
        if (k != OCIREG_DIGEST_BAD)
            fail_msg("digest should be BAD: '%s' got %d", bad[i], (int)k);
    }
}

static void test_reference_kind(void **st)
{
    (void)st;
    assert_int_equal(ocireg_reference_kind("latest"), 1);
    assert_int_equal(ocireg_reference_kind("v1.0.0"), 1);
    assert_int_equal(ocireg_reference_kind("_x"), 1);
    assert_int_equal(ocireg_reference_kind(repeat('t', 128)), 1);
    assert_int_equal(ocireg_reference_kind("sha256:" HEX64), 2);
    assert_int_equal(ocireg_reference_kind(repeat('t', 129)), 0);
    assert_int_equal(ocireg_reference_kind(""), 0);
    assert_int_equal(ocireg_reference_kind("-x"), 0);
    assert_int_equal(ocireg_reference_kind(".x"), 0);
    assert_int_equal(ocireg_reference_kind("a/b"), 0);
    assert_int_equal(ocireg_reference_kind("sha256:" HEX64U), 0);
    assert_int_equal(ocireg_reference_kind("sha256:abc"), 0);
    assert_int_equal(ocireg_reference_kind("sha256:"), 0);
    assert_int_equal(ocireg_reference_kind(
        "multihash+base58:QmRZxt2b1FVZPNqd8hsiykDL3TdBDeTSPX9Kv46HmX4Gx8"), 0);
}

/* ------------------------------------------------------------------ uuids */

static void test_uuid(void **st)
{
    (void)st;
    assert_true(ocireg_uuid_valid("123e4567-e89b-12d3-a456-426614174000"));
    assert_true(ocireg_uuid_valid("00000000-0000-0000-0000-000000000000"));
    assert_true(ocireg_uuid_valid("ffffffff-ffff-ffff-ffff-ffffffffffff"));
    assert_int_equal(strlen("123e4567-e89b-12d3-a456-426614174000"),
                     OCIREG_UUID_LEN);

    const char *bad[] = {
        "", "123E4567-E89B-12D3-A456-426614174000",
        "123e4567-e89b-12d3-a456-42661417400A",
        "123e4567e89b12d3a456426614174000",
        "123e4567-e89b-12d3-a456-42661417400",
        "123e4567-e89b-12d3-a456-4266141740000",
        "{123e4567-e89b-12d3-a456-426614174000}",
        "123e4567-e89b-12d3-a456_426614174000",
        "123e456-7e89b-12d3-a456-426614174000",
        "123e4567-e89b1-2d3-a456-426614174000",
        "123e4567-e89b-12d3-a4564-26614174000",
        "123e4567-e89b-12d3-a456-42661417400g",
        "g23e4567-e89b-12d3-a456-426614174000",
        " 123e4567-e89b-12d3-a456-42661417400",
        "123e4567-e89b-12d3-a456-426614174000/",
        "../../../../../../../../../etc/passw",
        "------------------------------------",
        NULL
    };
    for (int i = 0; bad[i]; i++) {
        if (ocireg_uuid_valid(bad[i]))
            fail_msg("uuid should be invalid: '%s'", bad[i]);
    }
}

/* ---------------------------------------------------------- Content-Range */

static void cr_ok(const char *v, apr_off_t s, apr_off_t e, apr_off_t t)
{
    apr_off_t a = -7, b = -7, c = -7;
    if (!ocireg_content_range_parse(v, &a, &b, &c))
        fail_msg("Content-Range '%s' should parse", v);
    if (a != s || b != e || c != t)
        fail_msg("Content-Range '%s': got %lld-%lld/%lld want %lld-%lld/%lld",
                 v, (long long)a, (long long)b, (long long)c,
                 (long long)s, (long long)e, (long long)t);
}

static void cr_bad(const char *v)
{
    apr_off_t a = 0, b = 0, c = 0;
    if (ocireg_content_range_parse(v, &a, &b, &c))
        fail_msg("Content-Range '%s' should be rejected (got %lld-%lld/%lld)",
                 v, (long long)a, (long long)b, (long long)c);
}

static void test_content_range_forms(void **st)
{
    (void)st;
    cr_ok("0-9", 0, 9, -1);
    cr_ok("bytes 0-9", 0, 9, -1);
    cr_ok("bytes=0-9", 0, 9, -1);
    cr_ok("bytes 0-9/10", 0, 9, 10);
    cr_ok("bytes 0-9/*", 0, 9, -1);
    cr_ok("0-0", 0, 0, -1);
    cr_ok("5-5", 5, 5, -1);
    cr_ok("10-19", 10, 19, -1);
    cr_ok("bytes 1048576-2097151/3000000", 1048576, 2097151, 3000000);
    /* up to the largest blob a store accepts, inclusive */
    cr_ok("0-1125899906842624", 0, 1125899906842624LL, -1);
    cr_ok("1125899906842623-1125899906842624", 1125899906842623LL,
          1125899906842624LL, -1);
    cr_ok("bytes 0-1125899906842623/1125899906842624", 0,
          1125899906842623LL, OCIREG_OFFSET_MAX);
}

/* Every number is bounded before it is used: end - start + 1 and
 * offset + length can never overflow. */
static void test_content_range_bounded(void **st)
{
    (void)st;
    apr_off_t a, b, t;
    assert_int_equal(OCIREG_OFFSET_MAX, 1125899906842624LL);
    cr_bad("0-9223372036854775807");
    cr_bad("0-9223372036854775806");
    cr_bad("9223372036854775805-9223372036854775806");
    cr_bad("0-1125899906842625");
    cr_bad("1125899906842625-1125899906842626");
    cr_bad("bytes 0-9/1125899906842625");
    cr_bad("bytes 0-9/9223372036854775807");
    assert_true(ocireg_content_range_parse("0-1125899906842624", &a, &b, &t));
    assert_true(b - a + 1 > 0);
    assert_true(b + OCIREG_OFFSET_MAX > 0);
}

static void test_content_range_bad(void **st)
{
    (void)st;
    cr_bad("9-0");
    cr_bad("10-9");
    cr_bad("-5");
    cr_bad("0-");
    cr_bad("-");
    cr_bad("bytes 0-9/abc");
    cr_bad("bytes 0-9/");
    cr_bad("bytes 0-9/-1");
    cr_bad("");
    cr_bad(" ");
    cr_bad("bytes");
    cr_bad("bytes ");
    cr_bad("bytes=");
    cr_bad("0-99999999999999999999999");
    cr_bad("99999999999999999999999-99999999999999999999999");
    cr_bad("0-9223372036854775808");
    cr_bad("bytes 0-9/99999999999999999999999");
    cr_bad("0 - 9");
    cr_bad("0 -9");
    cr_bad("0- 9");
    cr_bad("0-9x");
    cr_bad("x0-9");
    cr_bad("0-9 junk");
    cr_bad("0-9/10/11");
    cr_bad("+0-9");
    cr_bad("0-+9");
    cr_bad("-0-9");
    cr_bad("0--9");
    cr_bad("a-b");
    cr_bad("0x0-0x9");
    cr_bad("0.5-9");
    cr_bad("bytes\t0-9junk");
    cr_bad("items 0-9");
    cr_bad("0-9,10-19");
    cr_bad("bytes 0-9/10 trailing");
}

/* ---------------------------------------------------------------- offsets */

static void test_off_parse(void **st)
{
    (void)st;
    apr_off_t v = -1;
    assert_true(ocireg_off_parse("0", &v));
    assert_int_equal(v, 0);
    assert_true(ocireg_off_parse("123", &v));
    assert_int_equal(v, 123);
    assert_true(ocireg_off_parse("4294967296", &v));
    assert_true(v == 4294967296LL);
    assert_true(ocireg_off_parse("1125899906842624", &v));
    assert_true(v == OCIREG_OFFSET_MAX);

    const char *bad[] = {
        "", "-1", "+1", " 1", "1 ", "1a", "a", "0x10", "1.5", "1e3",
        "1125899906842625", "9223372036854775807", "9223372036854775808", "99999999999999999999999",
        "18446744073709551616", "-0", "\t1", "1\n", NULL
    };
    for (int i = 0; bad[i]; i++) {
        apr_off_t x = 0;
        if (ocireg_off_parse(bad[i], &x))
            fail_msg("off_parse should reject '%s' (got %lld)", bad[i],
                     (long long)x);
    }
}

/* ---------------------------------------------------------------- queries */

static const char *qa(const char *q, const char *name, int *bad)
{
    *bad = 0;
    return ocireg_query_arg(pool, q, name, bad);
}

static void test_query_arg_basic(void **st)
{
    (void)st;
    int bad;
    const char *v;

    v = qa("digest=x&mount=y", "digest", &bad);
    assert_non_null(v);
    assert_string_equal(v, "x");
    assert_int_equal(bad, 0);

    v = qa("digest=x&mount=y", "mount", &bad);
    assert_non_null(v);
    assert_string_equal(v, "y");
    assert_int_equal(bad, 0);

    v = qa("digest=x&mount=y", "from", &bad);
    assert_null(v);
    assert_int_equal(bad, 0);

    v = qa("", "n", &bad);
    assert_null(v);
    assert_int_equal(bad, 0);

    v = qa("n=1", "n", &bad);
    assert_string_equal(v, "1");

    v = qa("n=", "n", &bad);
    assert_non_null(v);
    assert_string_equal(v, "");
    assert_int_equal(bad, 0);
}

static void test_query_arg_prefix_names(void **st)
{
    (void)st;
    int bad;
    const char *v;

    v = qa("n=1&nn=2", "n", &bad);
    assert_non_null(v);
    assert_string_equal(v, "1");
    v = qa("n=1&nn=2", "nn", &bad);
    assert_non_null(v);
    assert_string_equal(v, "2");
    v = qa("nn=2&n=1", "n", &bad);
    assert_non_null(v);
    assert_string_equal(v, "1");
    v = qa("nn=2", "n", &bad);
    assert_null(v);
    assert_int_equal(bad, 0);
    v = qa("xn=2", "n", &bad);
    assert_null(v);
    v = qa("n2=5", "n", &bad);
    assert_null(v);
    v = qa("lastx=a&last=b", "last", &bad);
    assert_non_null(v);
    assert_string_equal(v, "b");
    /* the name appearing inside a value is not the argument */
    v = qa("x=n%3D5&y=n=6", "n", &bad);
    assert_null(v);
    v = qa("x=n%3D5&n=1", "n", &bad);
    assert_non_null(v);
    assert_string_equal(v, "1");
    v = qa("mount=sha256:abc&from=other/repo", "from", &bad);
    assert_non_null(v);
    assert_string_equal(v, "other/repo");
}

static void test_query_arg_decoding(void **st)
{
    (void)st;
    int bad;
    const char *v;

    v = qa("digest=sha256%3A" HEX64, "digest", &bad);
    assert_non_null(v);
    assert_string_equal(v, "sha256:" HEX64);
    assert_int_equal(bad, 0);

    v = qa("digest=sha256%3a" HEX64, "digest", &bad);
    assert_non_null(v);
    assert_string_equal(v, "sha256:" HEX64);

    v = qa("a=%41%42c", "a", &bad);
    assert_string_equal(v, "ABc");

    v = qa("from=a%2Fb%2fc", "from", &bad);
    assert_string_equal(v, "a/b/c");

    v = qa("a=%2B", "a", &bad);
    assert_string_equal(v, "+");

    v = qa("a=%20", "a", &bad);
    assert_string_equal(v, " ");

    v = qa("a=%25", "a", &bad);
    assert_string_equal(v, "%");

    v = qa("a=%26b&b=1", "a", &bad);
    assert_string_equal(v, "&b");
    assert_int_equal(bad, 0);

    v = qa("artifactType=application%2Fvnd.example.sbom.v1", "artifactType",
           &bad);
    assert_string_equal(v, "application/vnd.example.sbom.v1");
    assert_int_equal(bad, 0);
}

static void test_query_arg_bad(void **st)
{
    (void)st;
    int bad;

    qa("a=%00", "a", &bad);
    assert_int_equal(bad != 0, 1);
    qa("a=x%00y", "a", &bad);
    assert_int_equal(bad != 0, 1);
    qa("a=%zz", "a", &bad);
    assert_int_equal(bad != 0, 1);
    qa("a=%", "a", &bad);
    assert_int_equal(bad != 0, 1);
    qa("a=%4", "a", &bad);
    assert_int_equal(bad != 0, 1);
    qa("a=%4g", "a", &bad);
    assert_int_equal(bad != 0, 1);
    qa("b=1&a=%g1", "a", &bad);
    assert_int_equal(bad != 0, 1);

    /* a malformed other argument does not make ours bad */
    const char *v = qa("b=%zz&a=1", "a", &bad);
    assert_non_null(v);
    assert_string_equal(v, "1");
    assert_int_equal(bad, 0);
}

static void test_query_escape(void **st)
{
    (void)st;
    const char *e;

    e = ocireg_query_escape(pool, "abcXYZ019-._~");
    assert_string_equal(e, "abcXYZ019-._~");
    e = ocireg_query_escape(pool, "");
    assert_string_equal(e, "");
    e = ocireg_query_escape(pool, "a b");
    assert_true(strcasecmp(e, "a%20b") == 0);
    e = ocireg_query_escape(pool, "sha256:abc");
    assert_true(strcasecmp(e, "sha256%3Aabc") == 0);
    e = ocireg_query_escape(pool, "a/b");
    assert_true(strcasecmp(e, "a%2Fb") == 0);
    e = ocireg_query_escape(pool, "&=+%#?");
    assert_true(strcasecmp(e, "%26%3D%2B%25%23%3F") == 0);
    e = ocireg_query_escape(pool, "\xc3\xa9");
    assert_true(strcasecmp(e, "%C3%A9") == 0);
    e = ocireg_query_escape(pool, "<>\"");
    assert_true(strcasecmp(e, "%3C%3E%22") == 0);
}

static void test_query_escape_roundtrip(void **st)
{
    (void)st;
    char all[256];
    for (int i = 1; i < 256; i++)
        all[i - 1] = (char)i;
    all[255] = '\0';
    const char *e = ocireg_query_escape(pool, all);
    for (const char *c = e; *c; c++) {
        if (!(((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
               (*c >= '0' && *c <= '9') || strchr("-._~%", *c))))
            fail_msg("escaped output contains '%c' (0x%02x)", *c,
                     (unsigned char)*c);
    }
    int bad = 0;
    const char *q = apr_pstrcat(pool, "x=1&v=", e, "&y=2", NULL);
    const char *d = ocireg_query_arg(pool, q, "v", &bad);
    assert_int_equal(bad, 0);
    assert_non_null(d);
    assert_string_equal(d, all);
}

/* Found by fuzz_ranges: an end of INT64_MAX parsed, and the handler's
 * end - start + 1 overflowed. */
static void test_content_range_end_max(void **st)
{
    (void)st;
    cr_bad("0-9223372036854775807");
    cr_bad("bytes 9223372036854775807-9223372036854775807");
    cr_bad("bytes 0-9223372036854775807/*");
}

/* ------------------------------------------------------------ blob Range */

static void range_ok(const char *h, apr_off_t size, apr_off_t start,
                     apr_off_t len)
{
    apr_off_t a = -1, n = -1;
    int sat = 0;
    if (!ocireg_range_parse(h, size, &a, &n, &sat) || !sat)
        fail_msg("range %s of %" APR_OFF_T_FMT " refused", h, size);
    if (a != start || n != len)
        fail_msg("range %s of %" APR_OFF_T_FMT ": %" APR_OFF_T_FMT
                 "+%" APR_OFF_T_FMT, h, size, a, n);
}

static void test_range_parse(void **st)
{
    apr_off_t a, n;
    int sat = 1;
    (void)st;
    range_ok("bytes=0-9", 100, 0, 10);
    range_ok("bytes=90-", 100, 90, 10);
    range_ok("bytes=-10", 100, 90, 10);
    range_ok("bytes=-1000", 100, 0, 100);
    range_ok("bytes=50-1000", 100, 50, 50);
    range_ok("bytes=0-1000000000000", 100, 0, 100);
    range_ok("bytes=-1000000000000", 100, 0, 100);
    assert_true(ocireg_range_parse("bytes=100-", 100, &a, &n, &sat));
    assert_false(sat);
    assert_true(ocireg_range_parse("bytes=1000000000000-", 100, &a, &n,
                                   &sat));
    assert_false(sat);
    assert_true(ocireg_range_parse("bytes=-0", 100, &a, &n, &sat));
    assert_false(sat);
    assert_true(ocireg_range_parse("bytes=-5", 0, &a, &n, &sat));
    assert_false(sat);
    assert_false(ocireg_range_parse(NULL, 100, &a, &n, &sat));
    assert_false(ocireg_range_parse("bytes=0-1,3-4", 100, &a, &n, &sat));
    assert_false(ocireg_range_parse("bytes=5-4", 100, &a, &n, &sat));
    assert_false(ocireg_range_parse("bytes=-", 100, &a, &n, &sat));
    assert_false(ocireg_range_parse("bytes 0-1", 100, &a, &n, &sat));
    assert_false(ocireg_range_parse("bytes=0-9223372036854775808", 100, &a,
                                    &n, &sat));
    assert_false(ocireg_range_parse("bytes=99999999999999999999-", 100, &a,
                                    &n, &sat));
    assert_false(ocireg_range_parse(
        "bytes=000000000000000000000000000000001-", 100, &a, &n, &sat));
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
        cmocka_unit_test_setup_teardown(test_name_valid_simple, setup, teardown),
        cmocka_unit_test_setup_teardown(test_name_invalid, setup, teardown),
        cmocka_unit_test_setup_teardown(test_name_embedded_nul, setup, teardown),
        cmocka_unit_test_setup_teardown(test_name_length, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tag_valid, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tag_invalid, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tag_length, setup, teardown),
        cmocka_unit_test_setup_teardown(test_digest_sha256, setup, teardown),
        cmocka_unit_test_setup_teardown(test_digest_sha256_bad, setup, teardown),
        cmocka_unit_test_setup_teardown(test_digest_sha512, setup, teardown),
        cmocka_unit_test_setup_teardown(test_digest_other, setup, teardown),
        cmocka_unit_test_setup_teardown(test_digest_other_length, setup, teardown),
        cmocka_unit_test_setup_teardown(test_digest_bad_grammar, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reference_kind, setup, teardown),
        cmocka_unit_test_setup_teardown(test_uuid, setup, teardown),
        cmocka_unit_test_setup_teardown(test_content_range_forms, setup, teardown),
        cmocka_unit_test_setup_teardown(test_content_range_bad, setup, teardown),
        cmocka_unit_test_setup_teardown(test_content_range_bounded, setup, teardown),
        cmocka_unit_test_setup_teardown(test_off_parse, setup, teardown),
        cmocka_unit_test_setup_teardown(test_query_arg_basic, setup, teardown),
        cmocka_unit_test_setup_teardown(test_query_arg_prefix_names, setup, teardown),
        cmocka_unit_test_setup_teardown(test_query_arg_decoding, setup, teardown),
        cmocka_unit_test_setup_teardown(test_query_arg_bad, setup, teardown),
        cmocka_unit_test_setup_teardown(test_query_escape, setup, teardown),
        cmocka_unit_test_setup_teardown(test_query_escape_roundtrip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_content_range_end_max, setup, teardown),
        cmocka_unit_test_setup_teardown(test_range_parse, setup, teardown),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    apr_terminate();
    return rc;
}
