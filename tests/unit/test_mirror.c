/* Unit tests for ocireg_mirror.h: OCIRegMirror's words, credentials and
 * the mapping of local names to upstream names. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <string.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <cmocka.h>

#include <apr_general.h>
#include <apr_pools.h>
#include <apr_strings.h>

#include "ocireg_mirror.h"
#include "ocireg_parse.h"

static apr_pool_t *pool;

/* Parses a rule from one line of words; fails the test on an error. */
static const ocireg_mirror_rule *rule_of(const char *line)
{
    char *copy = apr_pstrdup(pool, line), *state, *w;
    const char *argv[32];
    int argc = 0;
    ocireg_mirror_rule *rule = NULL;
    const char *err;
    for (w = apr_strtok(copy, " ", &state); w && argc < 32;
         w = apr_strtok(NULL, " ", &state))
        argv[argc++] = w;
    err = ocireg_mirror_rule_parse(pool, argc, argv, &rule);
    if (err)
        fail_msg("'%s': %s", line, err);
    return rule;
}

/* The error of a line that must not parse. */
static const char *rule_error(const char *line)
{
    char *copy = apr_pstrdup(pool, line), *state, *w;
    const char *argv[32];
    int argc = 0;
    ocireg_mirror_rule *rule = NULL;
    const char *err;
    for (w = apr_strtok(copy, " ", &state); w && argc < 32;
         w = apr_strtok(NULL, " ", &state))
        argv[argc++] = w;
    err = ocireg_mirror_rule_parse(pool, argc, argv, &rule);
    if (!err)
        fail_msg("'%s' parsed, but must not", line);
    return err;
}

static const ocireg_mirror_upstream *up0(const ocireg_mirror_rule *rule)
{
    return &APR_ARRAY_IDX(rule->upstreams, 0, ocireg_mirror_upstream);
}

static void maps(const char *line, const char *name, const char *want)
{
    const ocireg_mirror_rule *rule = rule_of(line);
    const char *got = ocireg_mirror_upstream_name(pool, rule, up0(rule),
                                                  name);
    if (!want) {
        if (got)
            fail_msg("'%s': %s -> '%s', want none", line, name, got);
        return;
    }
    if (!got || strcmp(got, want) != 0)
        fail_msg("'%s': %s -> '%s', want '%s'", line, name,
                 got ? got : "(null)", want);
}

static void test_upstream_forms(void **st)
{
    ocireg_mirror_upstream u;
    (void)st;
    assert_null(ocireg_mirror_upstream_parse(pool, "docker.io", &u));
    assert_string_equal(u.base_url, "https://registry-1.docker.io");
    assert_string_equal(u.host, "registry-1.docker.io");
    assert_string_equal(u.name_prefix, "");
    assert_true(u.docker_hub);
    assert_false(u.plain_http);
    assert_null(ocireg_mirror_upstream_parse(pool, "https://Index.Docker.IO/",
                                             &u));
    assert_string_equal(u.base_url, "https://registry-1.docker.io");
    assert_true(u.docker_hub);
    assert_null(ocireg_mirror_upstream_parse(
        pool, "https://registry-1.docker.io", &u));
    assert_true(u.docker_hub);
    assert_null(ocireg_mirror_upstream_parse(pool, "ghcr.io", &u));
    assert_string_equal(u.base_url, "https://ghcr.io");
    assert_false(u.docker_hub);
    assert_null(ocireg_mirror_upstream_parse(pool, "https://ghcr.io/org/sub/",
                                             &u));
    assert_string_equal(u.base_url, "https://ghcr.io");
    assert_string_equal(u.name_prefix, "org/sub/");
    assert_null(ocireg_mirror_upstream_parse(pool, "http://127.0.0.1:5001",
                                             &u));
    assert_string_equal(u.base_url, "http://127.0.0.1:5001");
    assert_string_equal(u.host, "127.0.0.1:5001");
    assert_true(u.plain_http);
    assert_null(ocireg_mirror_upstream_parse(pool, "localhost:5000", &u));
    assert_string_equal(u.base_url, "https://localhost:5000");
    assert_null(ocireg_mirror_upstream_parse(pool, "http://[::1]:5000", &u));
    assert_string_equal(u.base_url, "http://[::1]:5000");
    /* A Hub namespace keeps its prefix (and so never needs library/). */
    assert_null(ocireg_mirror_upstream_parse(pool, "docker.io/bitnami", &u));
    assert_string_equal(u.name_prefix, "bitnami/");
    assert_true(u.docker_hub);
}

static void test_upstream_refused(void **st)
{
    ocireg_mirror_upstream u;
    const char *err;
    (void)st;
    assert_non_null(ocireg_mirror_upstream_parse(pool, "ftp://x.org", &u));
    assert_non_null(ocireg_mirror_upstream_parse(pool, "https://", &u));
    assert_non_null(ocireg_mirror_upstream_parse(pool, "https://:5000", &u));
    assert_non_null(ocireg_mirror_upstream_parse(pool, "https://a_b.org", &u));
    assert_non_null(ocireg_mirror_upstream_parse(pool, "https://x.org:0", &u));
    assert_non_null(ocireg_mirror_upstream_parse(pool, "https://x.org:99999",
                                                 &u));
    assert_non_null(ocireg_mirror_upstream_parse(pool, "https://x.org:+5",
                                                 &u));
    assert_non_null(ocireg_mirror_upstream_parse(pool, "https://x.org/v2?a=b",
                                                 &u));
    assert_non_null(ocireg_mirror_upstream_parse(pool, "https://x.org/Org",
                                                 &u));
    assert_non_null(ocireg_mirror_upstream_parse(pool, "https://x.org/a//b",
                                                 &u));
    assert_non_null(ocireg_mirror_upstream_parse(pool, "https://[zz]", &u));
    assert_non_null(ocireg_mirror_upstream_parse(pool, "http://docker.io", &u));
    /* User information is refused without being quoted back. */
    err = ocireg_mirror_upstream_parse(pool,
                                       "https://bob:Sekr1t-pw@x.org", &u);
    assert_non_null(err);
    assert_null(strstr(err, "Sekr1t"));
}

static void test_docker_hub_names(void **st)
{
    (void)st;
    maps("hub/* docker.io", "hub/alpine", "library/alpine");
    maps("hub/* docker.io", "hub/bitnami/redis", "bitnami/redis");
    maps("* docker.io", "alpine", "library/alpine");
    maps("* docker.io", "library/alpine", "library/alpine");
    maps("* docker.io", "bitnami/redis", "bitnami/redis");
    maps("* https://registry-1.docker.io", "alpine", "library/alpine");
    maps("hub/* docker.io/bitnami", "hub/redis", "bitnami/redis");
    /* Only Docker Hub has the library/ convention. */
    maps("* ghcr.io", "alpine", "alpine");
}

static void test_prefix_form_and_patterns(void **st)
{
    const ocireg_mirror_rule *rule;
    (void)st;
    maps("ghcr/* ghcr.io", "ghcr/org/app", "org/app");
    maps("ghcr/* https://ghcr.io/org", "ghcr/app", "org/app");
    /* Same names upstream: the URL's path puts the prefix back. */
    maps("org/* https://ghcr.io/org", "org/app", "org/app");
    maps("a/b/* quay.io", "a/b/c/d", "c/d");
    /* Patterns with other wildcards keep the whole name. */
    maps("*/cache quay.io", "team/cache", "team/cache");
    maps("team-?/* quay.io", "team-a/app", "team-a/app");
    maps("hub* quay.io", "hubble/x", "hubble/x");
    rule = rule_of("hub/* docker.io");
    assert_int_equal(rule->strip, 4);
    rule = rule_of("* docker.io");
    assert_int_equal(rule->strip, 0);
    /* A name made too long by the upstream prefix maps to none. */
    {
        char name[256];
        memset(name, 'a', 250);
        memcpy(name, "hub/", 4);
        name[250] = '\0';
        maps("hub/* docker.io/averylongnamespace", name, NULL);
    }
}

static void test_first_match_wins(void **st)
{
    apr_array_header_t *rules = apr_array_make(pool, 4, sizeof(void *));
    const ocireg_mirror_rule *a = rule_of("hub/library/* mirror.gcr.io"),
                             *b = rule_of("hub/* docker.io local"),
                             *c = rule_of("ghcr/* ghcr.io tag-ttl=60");
    (void)st;
    *(const ocireg_mirror_rule **)apr_array_push(rules) = a;
    *(const ocireg_mirror_rule **)apr_array_push(rules) = b;
    *(const ocireg_mirror_rule **)apr_array_push(rules) = c;
    assert_ptr_equal(ocireg_mirror_match(rules, "hub/library/alpine"), a);
    assert_ptr_equal(ocireg_mirror_match(rules, "hub/alpine"), b);
    assert_ptr_equal(ocireg_mirror_match(rules, "ghcr/org/app"), c);
    assert_null(ocireg_mirror_match(rules, "team/app"));
    assert_null(ocireg_mirror_match(rules, "hub"));
    assert_null(ocireg_mirror_match(rules, "hubble/x"));
    assert_null(ocireg_mirror_match(NULL, "hub/x"));
    assert_true(b->local);
    assert_false(a->local);
    assert_int_equal(apr_time_sec(c->tag_ttl), 60);
    assert_int_equal(apr_time_sec(a->tag_ttl), OCIREG_MIRROR_DEFAULT_TAG_TTL);
}

static void test_rule_options(void **st)
{
    const ocireg_mirror_rule *rule;
    (void)st;
    rule = rule_of("* docker.io mirror.gcr.io tag-ttl=0");
    assert_int_equal(rule->upstreams->nelts, 2);
    assert_string_equal(
        APR_ARRAY_IDX(rule->upstreams, 1, ocireg_mirror_upstream).base_url,
        "https://mirror.gcr.io");
    assert_int_equal(rule->tag_ttl, 0);
    assert_null(rule->credentials.username);
    rule = rule_of("* http://127.0.0.1:5001 insecure local");
    assert_true(rule->insecure);
    assert_true(rule->local);
    assert_non_null(strstr(rule_error("* http://127.0.0.1:5001"), "insecure"));
    assert_non_null(strstr(rule_error("hub/*"), "upstream"));
    assert_non_null(strstr(rule_error("hub/* local"), "no upstream"));
    assert_non_null(strstr(rule_error("hub/* docker.io ttl=5"), "ttl="));
    assert_non_null(strstr(rule_error("hub/* docker.io tag-ttl=-1"),
                           "tag-ttl"));
    assert_non_null(strstr(rule_error("hub/* docker.io tag-ttl=1y"),
                           "tag-ttl"));
    assert_non_null(strstr(rule_error("hub/* docker.io tag-ttl=99999999"),
                           "tag-ttl"));
    assert_non_null(strstr(rule_error("hub/* docker.io tag-ttl=1 tag-ttl=2"),
                           "twice"));
    assert_non_null(strstr(rule_error("hub/* docker.io mirror"), "mirror"));
    assert_non_null(strstr(rule_error("Hub/* docker.io"), "lowercase"));
    rule_error("hub/* docker.io credentials=AKID:secret");
}

static const char *write_file(const char *text)
{
    char *path = apr_pstrdup(pool, "/tmp/ocireg-test-mirror-XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (int)strlen(text));
    close(fd);
    return path;
}

static void test_credentials_file(void **st)
{
    const char *path = write_file("# Docker Hub\n\nusername = bob\n"
                                  "password =  dckr_pat_x=y= \n");
    const ocireg_mirror_rule *rule = rule_of(
        apr_psprintf(pool, "hub/* docker.io credentials=file:%s", path));
    ocireg_mirror_credentials c;
    const char *err;
    (void)st;
    assert_string_equal(rule->credentials.username, "bob");
    assert_string_equal(rule->credentials.password, "dckr_pat_x=y=");
    assert_string_equal(rule->credentials.source,
                        apr_pstrcat(pool, "file:", path, NULL));
    unlink(path);

    /* Messages never quote the file's text. */
    err = ocireg_mirror_credentials_parse(pool, "SeCrEt-token==\n", 15, &c);
    assert_non_null(err);
    assert_null(strstr(err, "SeCrEt"));
    err = ocireg_mirror_credentials_parse(pool, "username = a\n", 13, &c);
    assert_non_null(strstr(err, "password"));
    err = ocireg_mirror_credentials_parse(
        pool, "username = a\npassword = b\npassword = SeCrEt\n", 42, &c);
    assert_non_null(strstr(err, "line 3"));
    assert_null(strstr(err, "SeCrEt"));
    err = ocireg_mirror_credentials_parse(pool, "username = a\npassword =\n",
                                          24, &c);
    assert_non_null(strstr(err, "empty"));
    assert_non_null(ocireg_mirror_credentials_parse(pool, "a\0b", 3, &c));
    assert_null(ocireg_mirror_credentials_parse(
        pool, "username=a\r\npassword=b\r\n", 24, &c));
    assert_string_equal(c.username, "a");
    assert_string_equal(c.password, "b");

    err = ocireg_mirror_credentials_load(pool, "file:/nonexistent/cred", &c);
    assert_non_null(strstr(err, "/nonexistent/cred"));
}

static void test_credentials_env(void **st)
{
    const ocireg_mirror_rule *rule;
    ocireg_mirror_credentials c;
    const char *err;
    (void)st;
    setenv("OCIREG_TEST_MIRROR_USER", "alice", 1);
    setenv("OCIREG_TEST_MIRROR_PASS", "Pa55-w0rd", 1);
    rule = rule_of("* ghcr.io credentials=env:OCIREG_TEST_MIRROR_USER,"
                   "OCIREG_TEST_MIRROR_PASS");
    assert_string_equal(rule->credentials.username, "alice");
    assert_string_equal(rule->credentials.password, "Pa55-w0rd");
    err = ocireg_mirror_credentials_load(
        pool, "env:OCIREG_TEST_MIRROR_USER,OCIREG_TEST_NO_SUCH", &c);
    assert_non_null(strstr(err, "OCIREG_TEST_NO_SUCH"));
    assert_null(strstr(err, "alice"));
    assert_non_null(ocireg_mirror_credentials_load(pool, "env:ONLYONE", &c));
    assert_non_null(ocireg_mirror_credentials_load(pool, "env:A-B,C", &c));
    err = ocireg_mirror_credentials_load(pool, "bob:Pa55-w0rd", &c);
    assert_null(strstr(err, "Pa55"));
    /* Credentials never go to a second registry of the rule. */
    err = rule_error("* ghcr.io quay.io credentials=env:OCIREG_TEST_MIRROR_"
                     "USER,OCIREG_TEST_MIRROR_PASS");
    assert_non_null(strstr(err, "quay.io"));
    rule = rule_of("* ghcr.io/a ghcr.io/b credentials=env:OCIREG_TEST_MIRROR_"
                   "USER,OCIREG_TEST_MIRROR_PASS");
    assert_int_equal(rule->upstreams->nelts, 2);
    unsetenv("OCIREG_TEST_MIRROR_USER");
    unsetenv("OCIREG_TEST_MIRROR_PASS");
}

static int setup(void **st)
{
    (void)st;
    apr_pool_create(&pool, NULL);
    return 0;
}

#define D64 "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

static void test_marks(void **st)
{
    ocireg_mirror_mark m, back;
    const char *text;
    (void)st;
    m.digest = "sha256:" D64;
    m.fetched = apr_time_from_sec(1700000000);
    m.etag = "\"sha256:" D64 "\"";
    text = ocireg_mirror_mark_format(pool, &m);
    assert_string_equal(text, "sha256:" D64 " 1700000000 \"sha256:" D64 "\"");
    assert_true(ocireg_mirror_mark_parse(pool, text, &back));
    assert_string_equal(back.digest, m.digest);
    assert_true(back.fetched == m.fetched);
    assert_string_equal(back.etag, m.etag);
    /* An ETag that cannot travel in the line is left out. */
    m.etag = "W/\"a b\"";
    text = ocireg_mirror_mark_format(pool, &m);
    assert_string_equal(text, "sha256:" D64 " 1700000000 -");
    assert_true(ocireg_mirror_mark_parse(pool, text, &back));
    assert_null(back.etag);
    assert_string_equal(ocireg_mirror_if_none_match(pool, &back),
                        "\"sha256:" D64 "\"");
    back.etag = "W/\"x\"";
    assert_string_equal(ocireg_mirror_if_none_match(pool, &back), "W/\"x\"");
    /* What the store gives back is input: only a mark is one. */
    {
        static const char *const bad[] = {
            "", "sha256:" D64, "sha256:" D64 " 17", "sha256:" D64 " x -",
            "sha256:" D64 " -1 -", "sha256:" D64 " 1 - extra",
            "sha512:" D64 " 1 -", "sha256:../x 1 -",
            "sha256:" D64 " 99999999999999999999 -",
            "sha256:" D64 " 1e3 -"};
        apr_size_t i;
        for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
            assert_false(ocireg_mirror_mark_parse(pool, bad[i], &back));
        assert_false(ocireg_mirror_mark_parse(pool, NULL, &back));
    }
}

static void test_tag_freshness(void **st)
{
    ocireg_mirror_rule rule;
    apr_time_t t0 = apr_time_from_sec(1700000000);
    (void)st;
    memset(&rule, 0, sizeof(rule));
    rule.tag_ttl = apr_time_from_sec(300);
    assert_true(ocireg_mirror_tag_fresh(&rule, t0, t0));
    assert_true(ocireg_mirror_tag_fresh(&rule, t0, t0 + apr_time_from_sec(299)));
    assert_false(ocireg_mirror_tag_fresh(&rule, t0, t0 + apr_time_from_sec(300)));
    /* A fetch "in the future" (a clock put back) is not trusted. */
    assert_false(ocireg_mirror_tag_fresh(&rule, t0 + apr_time_from_sec(5), t0));
    rule.tag_ttl = 0;
    assert_false(ocireg_mirror_tag_fresh(&rule, t0, t0));
}

static void test_fill_ids(void **st)
{
    const char *id;
    (void)st;
    id = ocireg_mirror_fill_id(pool, "sha256:" D64);
    assert_string_equal(id, "01234567-89ab-cdef-0123-456789abcdef");
    assert_true(ocireg_uuid_valid(id));
    assert_null(ocireg_mirror_fill_id(pool, "sha256:abc"));
    assert_null(ocireg_mirror_fill_id(pool, "sha512:" D64 D64));
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
        cmocka_unit_test_setup_teardown(test_upstream_forms, setup, teardown),
        cmocka_unit_test_setup_teardown(test_upstream_refused, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_docker_hub_names, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_prefix_form_and_patterns, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_first_match_wins, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_rule_options, setup, teardown),
        cmocka_unit_test_setup_teardown(test_credentials_file, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_credentials_env, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_marks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tag_freshness, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fill_ids, setup, teardown),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    apr_terminate();
    return rc;
}
