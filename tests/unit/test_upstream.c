/* Unit tests for the pure parts of ocireg_upstream.h: WWW-Authenticate
 * challenges, token answers and their expiry, which URLs may receive
 * credentials, and Location resolution. */
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

#include "ocireg_upstream.h"

#define NOW apr_time_from_sec(1800000000)

static apr_pool_t *pool;

#define TOK(body, t) ocireg_upstream_parse_token(pool, body, strlen(body), NOW, t)

static apr_array_header_t *parse(const char *v, apr_status_t want)
{
    apr_array_header_t *a = apr_array_make(pool, 2,
                                           sizeof(ocireg_upstream_challenge));
    assert_int_equal(ocireg_upstream_parse_challenges(pool, v, a), want);
    return a;
}

static const ocireg_upstream_challenge *nth(apr_array_header_t *a, int i)
{
    assert_true(i < a->nelts);
    return &APR_ARRAY_IDX(a, i, ocireg_upstream_challenge);
}

static void test_docker_hub_challenge(void **state)
{
    apr_array_header_t *a = parse(
        "Bearer realm=\"https://auth.docker.io/token\",service=\"registry."
        "docker.io\",scope=\"repository:library/alpine:pull\"",
        APR_SUCCESS);
    (void)state;
    assert_int_equal(a->nelts, 1);
    assert_string_equal(nth(a, 0)->scheme, "Bearer");
    assert_string_equal(apr_table_get(nth(a, 0)->params, "realm"),
                        "https://auth.docker.io/token");
    assert_string_equal(apr_table_get(nth(a, 0)->params, "SERVICE"),
                        "registry.docker.io");
    assert_string_equal(apr_table_get(nth(a, 0)->params, "scope"),
                        "repository:library/alpine:pull");
}

static void test_several_challenges_and_syntax(void **state)
{
    apr_array_header_t *a;
    (void)state;
    /* Two challenges in one value, spaces around '=', tokens unquoted,
     * an escaped quote and backslash, a repeated name (first kept). */
    a = parse("Basic realm=\"x\\\"y\\\\z\" , Bearer realm = "
              "\"http://t/tok\", service=reg,scope=\"a b,c\",service=other",
              APR_SUCCESS);
    assert_int_equal(a->nelts, 2);
    assert_string_equal(nth(a, 0)->scheme, "Basic");
    assert_string_equal(apr_table_get(nth(a, 0)->params, "realm"),
                        "x\"y\\z");
    assert_string_equal(nth(a, 1)->scheme, "Bearer");
    assert_string_equal(apr_table_get(nth(a, 1)->params, "realm"),
                        "http://t/tok");
    assert_string_equal(apr_table_get(nth(a, 1)->params, "service"), "reg");
    assert_string_equal(apr_table_get(nth(a, 1)->params, "scope"), "a b,c");

    /* token68 and bare schemes, empty list elements. */
    a = parse(", Negotiate abc+/def==, ,Basic,Bearer realm=\"r\"",
              APR_SUCCESS);
    assert_int_equal(a->nelts, 3);
    assert_string_equal(nth(a, 0)->scheme, "Negotiate");
    assert_string_equal(nth(a, 0)->token68, "abc+/def==");
    assert_string_equal(nth(a, 1)->scheme, "Basic");
    assert_null(nth(a, 1)->token68);
    assert_string_equal(nth(a, 2)->scheme, "Bearer");
    /* A token68 that is just "x=". */
    a = parse("Foo x=", APR_SUCCESS);
    assert_string_equal(nth(a, 0)->token68, "x=");
    /* So is "realm=" with no value: the grammar says token68. */
    a = parse("Bearer realm=", APR_SUCCESS);
    assert_string_equal(nth(a, 0)->token68, "realm=");
    a = parse("", APR_SUCCESS);
    assert_int_equal(a->nelts, 0);
}

static void test_malformed_challenges(void **state)
{
    apr_array_header_t *a;
    (void)state;
    /* Unterminated quote, control character, missing value, garbage
     * after a value, a bad scheme character. */
    parse("Bearer realm=\"abc", APR_EINVAL);
    parse("Bearer realm=\"a\x01" "b\"", APR_EINVAL);
    parse("Bearer realm=, x=\"y", APR_EINVAL);
    parse("Bearer realm=\"a\",", APR_SUCCESS);
    parse("Bearer realm=\"a\" x", APR_EINVAL);
    parse("Bearer realm=\"a\\", APR_EINVAL);
    parse("(Bearer)", APR_EINVAL);
    parse("Bearer realm=a=b", APR_EINVAL);
    /* What parsed before the fault is kept. */
    a = parse("Basic realm=\"ok\", Bearer realm=\"bad", APR_EINVAL);
    assert_string_equal(nth(a, 0)->scheme, "Basic");
}

static void test_token_answers(void **state)
{
    ocireg_upstream_token t;
    (void)state;
    assert_int_equal(TOK("{\"token\":\"abc.def\",\"expires_in\":300}", &t),
                     APR_SUCCESS);
    assert_string_equal(t.token, "abc.def");
    assert_true(t.expires == NOW + apr_time_from_sec(300));
    assert_true(t.refresh_at == t.expires - apr_time_from_sec(30));

    /* access_token (OAuth2 spelling) and the 60 s default lifetime,
     * renewed a fifth early. */
    assert_int_equal(TOK("{\"access_token\":\"zz\"}", &t),
                     APR_SUCCESS);
    assert_string_equal(t.token, "zz");
    assert_true(t.expires == NOW + apr_time_from_sec(60));
    assert_true(t.refresh_at == NOW + apr_time_from_sec(48));
    /* An empty token falls back to access_token. */
    assert_int_equal(TOK("{\"token\":\"\",\"access_token\":\"y\"}", &t),
                     APR_SUCCESS);
    assert_string_equal(t.token, "y");
    /* A bad expires_in gives the default. */
    assert_int_equal(TOK("{\"token\":\"a\",\"expires_in\":-5}", &t),
                     APR_SUCCESS);
    assert_true(t.expires == NOW + apr_time_from_sec(60));

    /* No token, a token that would break a header, not JSON, not an
     * object, duplicate keys. */
    assert_int_equal(TOK("{}", &t),
                     OCIREG_UP_EINVALID);
    assert_int_equal(TOK("{\"token\":\"a\\r\\nX: y\"}", &t),
                     OCIREG_UP_EINVALID);
    assert_int_equal(TOK("{\"token\":\"a b\"}", &t),
                     OCIREG_UP_EINVALID);
    assert_int_equal(TOK("tok", &t),
                     OCIREG_UP_EINVALID);
    assert_int_equal(TOK("[\"a\"]", &t),
                     OCIREG_UP_EINVALID);
    assert_int_equal(TOK("{\"token\":\"a\",\"token\":\"b\"}", &t),
                     OCIREG_UP_EINVALID);
    assert_int_equal(ocireg_upstream_parse_token(pool, NULL, 0, NOW, &t),
                     OCIREG_UP_EINVALID);
}

static void test_token_issued_at(void **state)
{
    ocireg_upstream_token t;
    const char *body;
    apr_time_t iat = ocireg_upstream_parse_rfc3339("2027-01-15T08:00:00Z");
    (void)state;
    assert_true(iat > 0);
    /* Issued 100 s ago with 300 s to live: 200 s left. */
    body = apr_psprintf(pool, "{\"token\":\"t\",\"expires_in\":300,"
                              "\"issued_at\":\"2027-01-15T08:00:00Z\"}");
    assert_int_equal(ocireg_upstream_parse_token(
                         pool, body, strlen(body),
                         iat + apr_time_from_sec(100), &t),
                     APR_SUCCESS);
    assert_true(t.expires == iat + apr_time_from_sec(300));
    /* A date in the future (the server's clock is ahead) or older than
     * the lifetime counts from now. */
    assert_int_equal(ocireg_upstream_parse_token(
                         pool, body, strlen(body),
                         iat - apr_time_from_sec(100), &t),
                     APR_SUCCESS);
    assert_true(t.expires
                == iat - apr_time_from_sec(100) + apr_time_from_sec(300));
    assert_int_equal(ocireg_upstream_parse_token(
                         pool, body, strlen(body),
                         iat + apr_time_from_sec(1000), &t),
                     APR_SUCCESS);
    assert_true(t.expires
                == iat + apr_time_from_sec(1000) + apr_time_from_sec(300));

    /* RFC 3339 spellings: fractions, offsets; and refusals. */
    assert_true(ocireg_upstream_parse_rfc3339("2027-01-15T08:00:00.123456Z")
                == iat);
    assert_true(ocireg_upstream_parse_rfc3339("2027-01-15T10:30:00+02:30")
                == iat);
    assert_true(ocireg_upstream_parse_rfc3339("2027-01-15T07:00:00-01:00")
                == iat);
    assert_true(ocireg_upstream_parse_rfc3339("2027-01-15T08:00:00") == -1);
    assert_true(ocireg_upstream_parse_rfc3339("2027-13-15T08:00:00Z") == -1);
    assert_true(ocireg_upstream_parse_rfc3339("2027-01-15T08:00:00.Z") == -1);
    assert_true(ocireg_upstream_parse_rfc3339("2027-01-15T08:00:00Zx") == -1);
    assert_true(ocireg_upstream_parse_rfc3339("") == -1);
}

static void test_same_origin(void **state)
{
    (void)state;
    assert_true(ocireg_upstream_same_origin("https://reg.example",
                                            "https://REG.example:443/v2/x"));
    assert_true(ocireg_upstream_same_origin("http://127.0.0.1:5000",
                                            "http://127.0.0.1:5000/a?b"));
    assert_true(ocireg_upstream_same_origin("http://[::1]:80/", "http://[::1]"));
    /* Scheme, port, host differ; userinfo; not http(s). */
    assert_false(ocireg_upstream_same_origin("https://reg.example",
                                             "http://reg.example"));
    assert_false(ocireg_upstream_same_origin("http://reg.example",
                                             "http://reg.example:8080"));
    assert_false(ocireg_upstream_same_origin("http://127.0.0.1:5000",
                                             "http://127.0.0.2:5000"));
    assert_false(ocireg_upstream_same_origin("http://reg.example",
                                             "http://reg.example@evil/"));
    assert_false(ocireg_upstream_same_origin("http://reg.example",
                                             "http://reg.example.evil/"));
    assert_false(ocireg_upstream_same_origin("ftp://reg.example",
                                             "ftp://reg.example"));
    assert_false(ocireg_upstream_same_origin("http://a:99999", "http://a:99999"));
    assert_false(ocireg_upstream_same_origin("http://a:", "http://a:"));
    assert_false(ocireg_upstream_may_send_auth("https://registry-1.docker.io",
                                               "https://production.cloudflare"
                                               ".docker.com/blob"));
    assert_true(ocireg_upstream_may_send_auth("https://registry-1.docker.io",
                                              "https://registry-1.docker.io"
                                              "/v2/x/blobs/sha256:1"));
}

static void test_resolve(void **state)
{
    const char *from = "http://127.0.0.1:5000/v2/lib/x/blobs/sha256:ab?q=1";
    (void)state;
    assert_string_equal(ocireg_upstream_resolve(pool, from,
                                                "http://127.0.0.2:9/b#f"),
                        "http://127.0.0.2:9/b");
    assert_string_equal(ocireg_upstream_resolve(pool, from, "//cdn.example/o"),
                        "http://cdn.example/o");
    assert_string_equal(ocireg_upstream_resolve(pool, from, "/store/o?s=1"),
                        "http://127.0.0.1:5000/store/o?s=1");
    assert_string_equal(ocireg_upstream_resolve(pool, from, "other"),
                        "http://127.0.0.1:5000/v2/lib/x/blobs/other");
    assert_string_equal(ocireg_upstream_resolve(pool, from, "?z=2"),
                        "http://127.0.0.1:5000/v2/lib/x/blobs/sha256:ab?z=2");
    assert_string_equal(ocireg_upstream_resolve(pool, "https://h", "a"),
                        "https://h/a");
    assert_null(ocireg_upstream_resolve(pool, from, "file:///etc/passwd"));
    assert_null(ocireg_upstream_resolve(pool, from, "javascript:x"));
    assert_null(ocireg_upstream_resolve(pool, from, "/a b"));
    assert_null(ocireg_upstream_resolve(pool, from, "/a\r\nX: y"));
    assert_null(ocireg_upstream_resolve(pool, from, "http://u@evil/"));
    assert_null(ocireg_upstream_resolve(pool, "nonsense", "/a"));
}

static void test_token_url(void **state)
{
    (void)state;
    assert_string_equal(
        ocireg_upstream_token_url(pool, "https://auth.docker.io/token",
                                  "registry.docker.io",
                                  "repository:library/alpine:pull"),
        "https://auth.docker.io/token?service=registry.docker.io&scope="
        "repository%3Alibrary%2Falpine%3Apull");
    assert_string_equal(ocireg_upstream_token_url(pool, "http://t/x?a=1",
                                                  "s p", NULL),
                        "http://t/x?a=1&service=s%20p");
    assert_string_equal(ocireg_upstream_token_url(pool, "http://t/x", NULL,
                                                  "a&b"),
                        "http://t/x?scope=a%26b");
    assert_null(ocireg_upstream_token_url(pool, "/relative", "s", "x"));
    assert_null(ocireg_upstream_token_url(pool, "http://t/\r\n", "s", "x"));
}

static void test_token_cache_is_held_by_caller(void **state)
{
    ocireg_upstream_tokens *t;
    ocireg_upstream *u;
    ocireg_upstream_config cfg;
    (void)state;
    memset(&cfg, 0, sizeof(cfg));
    assert_int_equal(ocireg_upstream_tokens_create(pool, 4, &t), APR_SUCCESS);
    cfg.base_url = "http://127.0.0.1:1";
    assert_int_equal(ocireg_upstream_create(pool, &cfg, NULL, t, &u),
                     APR_SUCCESS);
    cfg.base_url = "http://127.0.0.1:1/";
    assert_int_equal(ocireg_upstream_create(pool, &cfg, NULL, t, &u),
                     APR_SUCCESS);
    /* Until shortly before expiry, per key; replaced, forgotten, and
     * the entry due soonest evicted when full. */
    ocireg_upstream_tokens_put(t, "u1 s", "tok1", NOW + 10);
    assert_string_equal(ocireg_upstream_tokens_get(t, pool, "u1 s", NOW),
                        "tok1");
    assert_null(ocireg_upstream_tokens_get(t, pool, "u1 s", NOW + 10));
    assert_null(ocireg_upstream_tokens_get(t, pool, "u2 s", NOW));
    ocireg_upstream_tokens_put(t, "u1 s", "tok2", NOW + 20);
    assert_string_equal(ocireg_upstream_tokens_get(t, pool, "u1 s", NOW + 15),
                        "tok2");
    ocireg_upstream_tokens_put(t, "u1 s", NULL, 0);
    assert_null(ocireg_upstream_tokens_get(t, pool, "u1 s", NOW));
    ocireg_upstream_tokens_put(t, "a", "A", NOW + 50);
    ocireg_upstream_tokens_put(t, "b", "B", NOW + 5);
    ocireg_upstream_tokens_put(t, "c", "C", NOW + 60);
    ocireg_upstream_tokens_put(t, "d", "D", NOW + 70);
    ocireg_upstream_tokens_put(t, "e", "E", NOW + 80);
    assert_null(ocireg_upstream_tokens_get(t, pool, "b", NOW));
    assert_string_equal(ocireg_upstream_tokens_get(t, pool, "a", NOW), "A");
    assert_string_equal(ocireg_upstream_tokens_get(t, pool, "e", NOW), "E");
    /* A base URL with a path, or not http(s), is refused. */
    cfg.base_url = "http://127.0.0.1:1/v2";
    assert_int_equal(ocireg_upstream_create(pool, &cfg, NULL, t, &u),
                     APR_EINVAL);
    cfg.base_url = "127.0.0.1:1";
    assert_int_equal(ocireg_upstream_create(pool, &cfg, NULL, t, &u),
                     APR_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_docker_hub_challenge),
        cmocka_unit_test(test_several_challenges_and_syntax),
        cmocka_unit_test(test_malformed_challenges),
        cmocka_unit_test(test_token_answers),
        cmocka_unit_test(test_token_issued_at),
        cmocka_unit_test(test_same_origin),
        cmocka_unit_test(test_resolve),
        cmocka_unit_test(test_token_url),
        cmocka_unit_test(test_token_cache_is_held_by_caller),
    };
    int rc;
    apr_initialize();
    apr_pool_create(&pool, NULL);
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    apr_pool_destroy(pool);
    apr_terminate();
    return rc;
}
