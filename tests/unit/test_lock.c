/* Unit tests for ocireg_lock.h: who may take over an upload lock. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include <apr_general.h>
#include <apr_pools.h>

#include "ocireg_lock.h"

static apr_pool_t *pool;
static apr_int64_t dead_pid;

static int alive_unless_dead(apr_int64_t pid)
{
    return pid != dead_pid;
}

static ocireg_lock_owner make(const char *host, apr_uint64_t instance,
                              apr_int64_t pid, apr_time_t expires)
{
    ocireg_lock_owner o;
    memset(&o, 0, sizeof(o));
    strcpy(o.host, host);
    o.instance = instance;
    o.pid = pid;
    o.expires = expires;
    return o;
}

static void test_format_parse_round_trip(void **st)
{
    (void)st;
    ocireg_lock_owner o = make("node-1.example", 0xfeedfacecafebeefULL, 4242,
                               1764300000123456LL), back;
    const char *text = ocireg_lock_owner_format(pool, &o);
    assert_string_equal(text, "ocireg-lock/1 node-1.example feedfacecafebeef "
                              "4242 1764300000123456");
    assert_true(ocireg_lock_owner_parse(text, strlen(text), &back));
    assert_string_equal(back.host, o.host);
    assert_true(back.instance == o.instance);
    assert_int_equal(back.pid, 4242);
    assert_int_equal(back.expires, o.expires);
}

static void test_parse_refuses_garbage(void **st)
{
    (void)st;
    ocireg_lock_owner o;
    static const char *bad[] = {
        "", "ocireg-lock/1", "ocireg-lock/2 h 1 2 3", "ocireg-lock/1 h 1 0 3",
        "ocireg-lock/1 h 1 2 3 trailing", "lock h 1 2 3",
        "ocireg-lock/1 h zz 2 3",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_false(ocireg_lock_owner_parse(bad[i], strlen(bad[i]), &o));
    assert_true(ocireg_lock_owner_parse("ocireg-lock/1 h 1 2 3\n", 22, &o));
}

static void test_takeover_rules(void **st)
{
    (void)st;
    apr_time_t now = apr_time_from_sec(1000000);
    apr_time_t later = now + apr_time_from_sec(60);
    ocireg_lock_owner me = make("a", 7, 100, later);
    dead_pid = 555;

    /* another host: only when its lease ran out */
    ocireg_lock_owner h = make("b", 7, 200, later);
    assert_false(ocireg_lock_takeover(&h, &me, now, alive_unless_dead));
    h.expires = now - 1;
    assert_true(ocireg_lock_takeover(&h, &me, now, alive_unless_dead));

    /* this host, another instance: when its process is gone */
    h = make("a", 8, 200, later);
    assert_false(ocireg_lock_takeover(&h, &me, now, alive_unless_dead));
    h.pid = dead_pid;
    assert_true(ocireg_lock_takeover(&h, &me, now, alive_unless_dead));

    /* this instance: the taker holds its shared-memory lock */
    h = make("a", 7, 200, later);
    assert_true(ocireg_lock_takeover(&h, &me, now, alive_unless_dead));
    /* ... unless the taker says it does not (instance 0) */
    me.instance = 0;
    assert_false(ocireg_lock_takeover(&h, &me, now, alive_unless_dead));
    h.expires = now - 1;
    assert_true(ocireg_lock_takeover(&h, &me, now, alive_unless_dead));
}

static void test_owner_same_ignores_lease(void **st)
{
    (void)st;
    ocireg_lock_owner a, b;
    memset(&a, 0, sizeof(a));
    strcpy(a.host, "h1");
    a.instance = 3;
    a.pid = 10;
    a.expires = 100;
    b = a;
    b.expires = 200;
    assert_true(ocireg_lock_owner_same(&a, &b));
    b.pid = 11;
    assert_false(ocireg_lock_owner_same(&a, &b));
    b = a;
    b.instance = 4;
    assert_false(ocireg_lock_owner_same(&a, &b));
    b = a;
    strcpy(b.host, "h2");
    assert_false(ocireg_lock_owner_same(&a, &b));
}

static void test_pid_alive(void **st)
{
    (void)st;
    assert_true(ocireg_pid_alive(getpid()));
    /* above the kernel's pid_max */
    assert_false(ocireg_pid_alive(0x7ffffff0));
}

/* Two containers with one hostname are two hosts: boot id and pid
 * namespace name the host, so neither takes over the other's live lock. */
static void test_host_id_is_boot_and_pid_namespace(void **st)
{
    (void)st;
    char dir[] = "/tmp/ocireg-lock-XXXXXX";
    char boot[64], ns1[64], ns2[64], a[OCIREG_LOCK_HOST_MAX + 1],
        b[OCIREG_LOCK_HOST_MAX + 1], c[OCIREG_LOCK_HOST_MAX + 1];
    FILE *f;
    assert_non_null(mkdtemp(dir));
    snprintf(boot, sizeof(boot), "%s/boot_id", dir);
    snprintf(ns1, sizeof(ns1), "%s/ns1", dir);
    snprintf(ns2, sizeof(ns2), "%s/ns2", dir);
    f = fopen(boot, "w");
    assert_non_null(f);
    fputs("fbfd6f8b-960f-441d-8015-5e7490cd821e\n", f);
    fclose(f);
    assert_int_equal(symlink("pid:[4026531836]", ns1), 0);
    assert_int_equal(symlink("pid:[4026532201]", ns2), 0);

    ocireg_lock_host_id_from(boot, ns1, "web", a);
    ocireg_lock_host_id_from(boot, ns2, "web", b);
    assert_string_equal(a, "fbfd6f8b-960f-441d-8015-5e7490cd821e/4026531836");
    assert_string_not_equal(a, b);

    /* a live holder in the other container keeps its lock */
    apr_time_t now = apr_time_from_sec(1000000);
    ocireg_lock_owner holder = make(b, 7, 200, now + apr_time_from_sec(60));
    ocireg_lock_owner me = make(a, 8, 100, now + apr_time_from_sec(60));
    dead_pid = 200; /* that pid means nothing in our namespace */
    assert_false(ocireg_lock_takeover(&holder, &me, now, alive_unless_dead));

    /* unreadable /proc: the hostname, one word */
    ocireg_lock_host_id_from("/nonexistent", "/nonexistent", "my host", c);
    assert_string_equal(c, "my_host");

    /* the real one parses back from a lock record */
    ocireg_lock_host_id("web", c);
    assert_true(strlen(c) > 0 && strchr(c, ' ') == NULL);
    holder = make(c, 1, 2, 3);
    const char *text = ocireg_lock_owner_format(pool, &holder);
    assert_true(ocireg_lock_owner_parse(text, strlen(text), &me));
    assert_string_equal(me.host, c);

    unlink(ns1);
    unlink(ns2);
    unlink(boot);
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_format_parse_round_trip),
        cmocka_unit_test(test_parse_refuses_garbage),
        cmocka_unit_test(test_takeover_rules),
        cmocka_unit_test(test_owner_same_ignores_lease),
        cmocka_unit_test(test_pid_alive),
        cmocka_unit_test(test_host_id_is_boot_and_pid_namespace),
    };
    int rc;
    apr_initialize();
    apr_pool_create(&pool, NULL);
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    apr_terminate();
    return rc;
}
