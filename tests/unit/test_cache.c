/* Unit tests for the shared cache of store answers (ocireg_cache.h): what
 * is served, what is not (expired, read before a change of this host, a
 * slot taken by another key), and that readers racing a writer never see
 * a torn value. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include <apr_general.h>
#include <apr_pools.h>
#include <apr_strings.h>
#include <apr_thread_proc.h>

#include "ocireg_cache.h"

static apr_pool_t *pool;

static ocireg_cache *fresh(int slots, void **mem)
{
    *mem = apr_pcalloc(pool, ocireg_cache_size(slots));
    ocireg_cache_format(*mem, slots);
    return ocireg_cache_attach(pool, *mem);
}

static void test_immutable_entry_served(void **unused)
{
    void *mem;
    ocireg_cache *c = fresh(64, &mem);
    char *v;
    apr_size_t len;
    (void)unused;
    assert_false(ocireg_cache_get(c, pool, "P|sha256:aa", 1, &v, &len));
    ocireg_cache_put(c, "P|sha256:aa", "data/1 42", 9, 0,
                     ocireg_cache_generation(c, "P|sha256:aa"));
    assert_true(ocireg_cache_get(c, pool, "P|sha256:aa", 1, &v, &len));
    assert_int_equal(len, 9);
    assert_string_equal(v, "data/1 42");
    /* a change of another key (in another slot) does not touch it */
    ocireg_cache_bump(c, "T|repo|latest");
    assert_true(ocireg_cache_get(c, pool, "P|sha256:aa", 1000000, &v, &len));
    /* another handle on the same memory (another child) sees it */
    assert_true(ocireg_cache_get(ocireg_cache_attach(pool, mem), pool,
                                 "P|sha256:aa", 1, &v, &len));
}

static void test_mutable_entry_expires_and_yields_to_changes(void **unused)
{
    void *mem;
    ocireg_cache *c = fresh(64, &mem);
    const char *k = "T|repo|latest";
    apr_uint32_t gen = ocireg_cache_generation(c, k);
    char *v;
    apr_size_t len;
    (void)unused;
    ocireg_cache_put(c, k, "sha256:bb", 9, 1000, gen);
    assert_true(ocireg_cache_get(c, pool, k, 999, &v, &len));
    assert_false(ocireg_cache_get(c, pool, k, 1000, &v, &len));
    /* a change of this host: the entry goes at once */
    ocireg_cache_put(c, k, "sha256:bb", 9, 1000, gen);
    assert_true(ocireg_cache_get(c, pool, k, 1, &v, &len));
    ocireg_cache_bump(c, k);
    assert_false(ocireg_cache_get(c, pool, k, 1, &v, &len));
    /* a value read before the change but stored after it is refused */
    ocireg_cache_put(c, k, "sha256:bb", 9, 1000, gen);
    assert_false(ocireg_cache_get(c, pool, k, 1, &v, &len));
    /* read after it: served */
    ocireg_cache_put(c, k, "sha256:cc", 9, 1000,
                     ocireg_cache_generation(c, k));
    assert_true(ocireg_cache_get(c, pool, k, 1, &v, &len));
    assert_string_equal(v, "sha256:cc");
}

static void test_slot_taken_by_another_key(void **unused)
{
    void *mem;
    ocireg_cache *c = fresh(1, &mem); /* every key shares the one slot */
    char *v;
    apr_size_t len;
    (void)unused;
    ocireg_cache_put(c, "a", "1", 1, 0, ocireg_cache_generation(c, "a"));
    ocireg_cache_put(c, "b", "2", 1, 0, ocireg_cache_generation(c, "b"));
    assert_false(ocireg_cache_get(c, pool, "a", 1, &v, &len));
    assert_true(ocireg_cache_get(c, pool, "b", 1, &v, &len));
    /* a change to a key of the slot drops whatever it held */
    ocireg_cache_bump(c, "a");
    assert_false(ocireg_cache_get(c, pool, "b", 1, &v, &len));
}

static void test_too_long_not_cached(void **unused)
{
    void *mem;
    ocireg_cache *c = fresh(64, &mem);
    char key[OCIREG_CACHE_KEY_MAX + 10], val[OCIREG_CACHE_VALUE_MAX + 10];
    char *v;
    apr_size_t len;
    (void)unused;
    memset(key, 'k', sizeof(key) - 1);
    key[sizeof(key) - 1] = '\0';
    memset(val, 'v', sizeof(val));
    ocireg_cache_put(c, key, "x", 1, 0, ocireg_cache_generation(c, key));
    assert_false(ocireg_cache_get(c, pool, key, 1, &v, &len));
    ocireg_cache_put(c, "short", val, sizeof(val), 0,
                     ocireg_cache_generation(c, "short"));
    assert_false(ocireg_cache_get(c, pool, "short", 1, &v, &len));
    /* a null handle (no cache configured) is a cache that never hits */
    ocireg_cache_put(NULL, "short", "x", 1, 0, 0);
    assert_false(ocireg_cache_get(NULL, pool, "short", 1, &v, &len));
}

/* Writers store values that say which key they belong to; readers racing
 * them must only ever see a whole one. */
typedef struct {
    ocireg_cache *c;
    int id;
    volatile int *stop;
    long seen, bad;
} racer;

static void *APR_THREAD_FUNC writer(apr_thread_t *t, void *data)
{
    racer *r = data;
    char key[32], val[OCIREG_CACHE_VALUE_MAX - 1];
    int i;
    for (i = 0; !*r->stop && i < 200000; i++) {
        int k = i % 7;
        snprintf(key, sizeof(key), "k%d", k);
        memset(val, 'a' + k, sizeof(val));
        ocireg_cache_put(r->c, key, val, (apr_size_t)(10 + (i % 150)), 0,
                         ocireg_cache_generation(r->c, key));
        if (i % 5000 == 0)
            ocireg_cache_bump(r->c, key);
    }
    (void)t;
    return NULL;
}

static void *APR_THREAD_FUNC reader(apr_thread_t *t, void *data)
{
    racer *r = data;
    apr_pool_t *p;
    int i;
    apr_pool_create_unmanaged_ex(&p, NULL, NULL);
    for (i = 0; i < 200000; i++) {
        char key[32], *v;
        apr_size_t len, j;
        int k = i % 7;
        snprintf(key, sizeof(key), "k%d", k);
        if (ocireg_cache_get(r->c, p, key, 1, &v, &len)) {
            r->seen++;
            for (j = 0; j < len; j++)
                if (v[j] != 'a' + k) {
                    r->bad++;
                    break;
                }
        }
        if (i % 1000 == 0)
            apr_pool_clear(p);
    }
    apr_pool_destroy(p);
    (void)t;
    return NULL;
}

static void test_readers_never_see_torn_values(void **unused)
{
    void *mem;
    ocireg_cache *c = fresh(3, &mem); /* keys collide on purpose */
    volatile int stop = 0;
    racer w[2], rd[2];
    apr_thread_t *tw[2], *tr[2];
    apr_status_t rv;
    int i;
    (void)unused;
    for (i = 0; i < 2; i++) {
        memset(&w[i], 0, sizeof(w[i]));
        memset(&rd[i], 0, sizeof(rd[i]));
        w[i].c = rd[i].c = c;
        w[i].stop = rd[i].stop = &stop;
        assert_int_equal(apr_thread_create(&tw[i], NULL, writer, &w[i], pool),
                         APR_SUCCESS);
        assert_int_equal(apr_thread_create(&tr[i], NULL, reader, &rd[i], pool),
                         APR_SUCCESS);
    }
    for (i = 0; i < 2; i++)
        apr_thread_join(&rv, tr[i]);
    stop = 1;
    for (i = 0; i < 2; i++)
        apr_thread_join(&rv, tw[i]);
    assert_int_equal(rd[0].bad + rd[1].bad, 0);
    assert_true(rd[0].seen + rd[1].seen > 0);
}

static int setup(void **state)
{
    (void)state;
    apr_initialize();
    return apr_pool_create(&pool, NULL);
}

static int teardown(void **state)
{
    (void)state;
    apr_pool_destroy(pool);
    apr_terminate();
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_immutable_entry_served),
        cmocka_unit_test(test_mutable_entry_expires_and_yields_to_changes),
        cmocka_unit_test(test_slot_taken_by_another_key),
        cmocka_unit_test(test_too_long_not_cached),
        cmocka_unit_test(test_readers_never_see_torn_values),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
