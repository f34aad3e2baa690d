/* Unit tests for ocireg_uploads.h */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <string.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <cmocka.h>

#include <apr_general.h>
#include <apr_pools.h>
#include <apr_strings.h>
#include <apr_errno.h>

#include "ocireg_uploads.h"

#define SLOTS 4

static apr_pool_t *pool;
static void *mem;
static apr_size_t memsize;
static ocireg_uploads *up;

static const char *uuid_n(int n)
{
    return apr_psprintf(pool, "%08x-e89b-42d3-a456-426614174000", n);
}

static void make_session(ocireg_upload_session *s, int n)
{
    memset(s, 0, sizeof *s);
    apr_cpystrn(s->uuid, uuid_n(n), sizeof s->uuid);
    apr_cpystrn(s->name, apr_psprintf(pool, "repo/n%d", n), sizeof s->name);
    s->store_id = 0xC0FFEE00u + (apr_uint32_t)n;
    s->offset = 0;
    ocireg_hash_init(&s->hash);
    s->created = (apr_time_t)1700000000000000LL + n;
    s->touched = s->created;
    for (int i = 0; i < OCIREG_DRIVER_STATE_SIZE; i++)
        s->driver[i] = (unsigned char)(i * 31 + n);
}

static void assert_session_equal(const ocireg_upload_session *a,
                                 const ocireg_upload_session *b)
{
    assert_string_equal(a->uuid, b->uuid);
    assert_string_equal(a->name, b->name);
    assert_int_equal(a->store_id, b->store_id);
    assert_true(a->offset == b->offset);
    assert_memory_equal(&a->hash, &b->hash, sizeof a->hash);
    assert_true(a->created == b->created);
    assert_true(a->touched == b->touched);
    assert_memory_equal(a->driver, b->driver, sizeof a->driver);
}

static int setup(void **st)
{
    (void)st;
    apr_pool_create(&pool, NULL);
    memsize = ocireg_uploads_size(SLOTS);
    mem = mmap(NULL, memsize, PROT_READ | PROT_WRITE,
               MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED)
        return -1;
    memset(mem, 0xEE, memsize); /* format must not rely on zeroed memory */
    ocireg_uploads_format(mem, SLOTS);
    up = ocireg_uploads_attach(pool, mem, NULL);
    return up ? 0 : -1;
}

static int teardown(void **st)
{
    (void)st;
    munmap(mem, memsize);
    apr_pool_destroy(pool);
    return 0;
}

static void test_size(void **st)
{
    (void)st;
    assert_true(ocireg_uploads_size(1) >= sizeof(ocireg_upload_session));
    assert_true(ocireg_uploads_size(SLOTS) >=
                SLOTS * sizeof(ocireg_upload_session));
    assert_true(ocireg_uploads_size(64) > ocireg_uploads_size(32));
    assert_true(ocireg_uploads_size(1000) >=
                1000 * sizeof(ocireg_upload_session));
}

static void test_empty(void **st)
{
    (void)st;
    ocireg_upload_session s;
    assert_non_null(up);
    assert_int_equal(ocireg_uploads_count(up), 0);
    assert_int_equal(ocireg_uploads_get(up, uuid_n(1), &s), APR_ENOENT);
    assert_int_equal(ocireg_uploads_acquire(up, uuid_n(1), &s), APR_ENOENT);
}

static void test_add_get(void **st)
{
    (void)st;
    ocireg_upload_session s, out;
    make_session(&s, 1);
    assert_int_equal(ocireg_uploads_add(up, &s), APR_SUCCESS);
    assert_int_equal(ocireg_uploads_count(up), 1);
    memset(&out, 0, sizeof out);
    assert_int_equal(ocireg_uploads_get(up, s.uuid, &out), APR_SUCCESS);
    assert_session_equal(&s, &out);
    assert_int_equal(ocireg_uploads_get(up, uuid_n(2), &out), APR_ENOENT);
}

static void test_add_until_full(void **st)
{
    (void)st;
    ocireg_upload_session s;
    for (int i = 0; i < SLOTS; i++) {
        make_session(&s, 100 + i);
        assert_int_equal(ocireg_uploads_add(up, &s), APR_SUCCESS);
        assert_int_equal(ocireg_uploads_count(up), i + 1);
    }
    make_session(&s, 999);
    assert_int_equal(ocireg_uploads_add(up, &s), APR_ENOSPC);
    assert_int_equal(ocireg_uploads_count(up), SLOTS);
    /* all of them still readable and distinct */
    for (int i = 0; i < SLOTS; i++) {
        ocireg_upload_session want, got;
        make_session(&want, 100 + i);
        assert_int_equal(ocireg_uploads_get(up, want.uuid, &got), APR_SUCCESS);
        assert_session_equal(&want, &got);
    }
    assert_int_equal(ocireg_uploads_get(up, uuid_n(999), &s), APR_ENOENT);
}

static void test_acquire_release_roundtrip(void **st)
{
    (void)st;
    ocireg_upload_session s, got;
    make_session(&s, 7);
    assert_int_equal(ocireg_uploads_add(up, &s), APR_SUCCESS);

    memset(&got, 0, sizeof got);
    assert_int_equal(ocireg_uploads_acquire(up, s.uuid, &got), APR_SUCCESS);
    assert_session_equal(&s, &got);

    /* change everything a request changes */
    ocireg_hash_update(&got.hash, "hello ", 6);
    got.offset = 6;
    got.touched += 1000;
    for (int i = 0; i < OCIREG_DRIVER_STATE_SIZE; i++)
        got.driver[i] = (unsigned char)(255 - i);
    assert_int_equal(ocireg_uploads_release(up, &got, s.uuid), APR_SUCCESS);

    ocireg_upload_session again;
    assert_int_equal(ocireg_uploads_get(up, s.uuid, &again), APR_SUCCESS);
    assert_session_equal(&got, &again);

    /* the stored hash continues correctly */
    ocireg_hash_update(&again.hash, "world", 5);
    char d[80];
    ocireg_hash_digest(&again.hash, d);
    assert_string_equal(d, "sha256:b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9");

    /* can be acquired again after release */
    assert_int_equal(ocireg_uploads_acquire(up, s.uuid, &again), APR_SUCCESS);
    assert_session_equal(&got, &again);
    /* release with NULL keeps it unchanged */
    assert_int_equal(ocireg_uploads_release(up, NULL, s.uuid), APR_SUCCESS);
    assert_int_equal(ocireg_uploads_get(up, s.uuid, &again), APR_SUCCESS);
    assert_session_equal(&got, &again);
    assert_int_equal(ocireg_uploads_count(up), 1);
}

static void test_acquire_twice_busy(void **st)
{
    (void)st;
    ocireg_upload_session s, got;
    make_session(&s, 8);
    assert_int_equal(ocireg_uploads_add(up, &s), APR_SUCCESS);
    assert_int_equal(ocireg_uploads_acquire(up, s.uuid, &got), APR_SUCCESS);
    assert_int_equal(ocireg_uploads_acquire(up, s.uuid, &got), APR_EBUSY);
    /* get still works while held */
    assert_int_equal(ocireg_uploads_get(up, s.uuid, &got), APR_SUCCESS);
    assert_session_equal(&s, &got);
    /* other sessions are independent */
    ocireg_upload_session o;
    make_session(&o, 9);
    assert_int_equal(ocireg_uploads_add(up, &o), APR_SUCCESS);
    assert_int_equal(ocireg_uploads_acquire(up, o.uuid, &got), APR_SUCCESS);
    assert_int_equal(ocireg_uploads_release(up, NULL, o.uuid), APR_SUCCESS);
    /* release, then acquire works */
    assert_int_equal(ocireg_uploads_release(up, NULL, s.uuid), APR_SUCCESS);
    assert_int_equal(ocireg_uploads_acquire(up, s.uuid, &got), APR_SUCCESS);
    assert_int_equal(ocireg_uploads_release(up, NULL, s.uuid), APR_SUCCESS);
}

static void test_dead_holder_taken_over(void **st)
{
    (void)st;
    ocireg_upload_session s, got;
    make_session(&s, 10);
    assert_int_equal(ocireg_uploads_add(up, &s), APR_SUCCESS);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        ocireg_upload_session c;
        apr_status_t rv = ocireg_uploads_acquire(up, s.uuid, &c);
        _exit(rv == APR_SUCCESS ? 0 : 1); /* dies holding it */
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    assert_int_equal(ocireg_uploads_acquire(up, s.uuid, &got), APR_SUCCESS);
    assert_session_equal(&s, &got);
    assert_int_equal(ocireg_uploads_release(up, NULL, s.uuid), APR_SUCCESS);
}

static void test_live_other_holder_busy(void **st)
{
    (void)st;
    ocireg_upload_session s, got;
    make_session(&s, 11);
    assert_int_equal(ocireg_uploads_add(up, &s), APR_SUCCESS);
    int to_child[2], to_parent[2];
    assert_int_equal(pipe(to_child), 0);
    assert_int_equal(pipe(to_parent), 0);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        ocireg_upload_session c;
        char r = ocireg_uploads_acquire(up, s.uuid, &c) == APR_SUCCESS
                     ? 'y' : 'n';
        if (write(to_parent[1], &r, 1) != 1)
            _exit(2);
        char x;
        if (read(to_child[0], &x, 1) != 1)
            _exit(3);
        if (x == 'r') {
            c.offset = 42;
            ocireg_uploads_release(up, &c, s.uuid);
        }
        _exit(0);
    }
    char r = 0;
    assert_int_equal(read(to_parent[0], &r, 1), 1);
    assert_int_equal(r, 'y');
    /* a live process holds it */
    assert_int_equal(ocireg_uploads_acquire(up, s.uuid, &got), APR_EBUSY);
    /* let the child release with an update */
    char x = 'r';
    assert_int_equal(write(to_child[1], &x, 1), 1);
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    assert_int_equal(ocireg_uploads_acquire(up, s.uuid, &got), APR_SUCCESS);
    assert_true(got.offset == 42);
    assert_int_equal(ocireg_uploads_release(up, NULL, s.uuid), APR_SUCCESS);
    close(to_child[0]);
    close(to_child[1]);
    close(to_parent[0]);
    close(to_parent[1]);
}

static void test_remove_frees_slot(void **st)
{
    (void)st;
    ocireg_upload_session s, got;
    for (int i = 0; i < SLOTS; i++) {
        make_session(&s, 200 + i);
        assert_int_equal(ocireg_uploads_add(up, &s), APR_SUCCESS);
    }
    make_session(&s, 300);
    assert_int_equal(ocireg_uploads_add(up, &s), APR_ENOSPC);

    assert_int_equal(ocireg_uploads_acquire(up, uuid_n(201), &got),
                     APR_SUCCESS);
    assert_int_equal(ocireg_uploads_remove(up, uuid_n(201)), APR_SUCCESS);
    assert_int_equal(ocireg_uploads_count(up), SLOTS - 1);
    assert_int_equal(ocireg_uploads_get(up, uuid_n(201), &got), APR_ENOENT);
    assert_int_equal(ocireg_uploads_acquire(up, uuid_n(201), &got),
                     APR_ENOENT);

    make_session(&s, 300);
    assert_int_equal(ocireg_uploads_add(up, &s), APR_SUCCESS);
    assert_int_equal(ocireg_uploads_count(up), SLOTS);
    /* the new one is fresh: not held by anyone */
    assert_int_equal(ocireg_uploads_acquire(up, uuid_n(300), &got),
                     APR_SUCCESS);
    assert_session_equal(&s, &got);
    assert_int_equal(ocireg_uploads_release(up, NULL, uuid_n(300)),
                     APR_SUCCESS);
    /* the others untouched */
    for (int i = 0; i < SLOTS; i++) {
        if (i == 1)
            continue;
        ocireg_upload_session want;
        make_session(&want, 200 + i);
        assert_int_equal(ocireg_uploads_get(up, want.uuid, &got), APR_SUCCESS);
        assert_session_equal(&want, &got);
    }
}

static void test_remove_all_then_reuse(void **st)
{
    (void)st;
    ocireg_upload_session s, got;
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < SLOTS; i++) {
            make_session(&s, 1000 * round + i);
            assert_int_equal(ocireg_uploads_add(up, &s), APR_SUCCESS);
        }
        assert_int_equal(ocireg_uploads_count(up), SLOTS);
        for (int i = 0; i < SLOTS; i++) {
            const char *u = uuid_n(1000 * round + i);
            assert_int_equal(ocireg_uploads_acquire(up, u, &got), APR_SUCCESS);
            assert_int_equal(ocireg_uploads_remove(up, u), APR_SUCCESS);
        }
        assert_int_equal(ocireg_uploads_count(up), 0);
    }
}

static void test_format_resets(void **st)
{
    (void)st;
    ocireg_upload_session s;
    make_session(&s, 1);
    assert_int_equal(ocireg_uploads_add(up, &s), APR_SUCCESS);
    assert_int_equal(ocireg_uploads_count(up), 1);
    ocireg_uploads_format(mem, SLOTS);
    ocireg_uploads *u2 = ocireg_uploads_attach(pool, mem, NULL);
    assert_non_null(u2);
    assert_int_equal(ocireg_uploads_count(u2), 0);
    assert_int_equal(ocireg_uploads_get(u2, s.uuid, &s), APR_ENOENT);
}

static void test_two_handles_share(void **st)
{
    (void)st;
    /* a second attach (another child process) sees the same table */
    ocireg_uploads *u2 = ocireg_uploads_attach(pool, mem, NULL);
    ocireg_upload_session s, got;
    make_session(&s, 5);
    assert_int_equal(ocireg_uploads_add(up, &s), APR_SUCCESS);
    assert_int_equal(ocireg_uploads_get(u2, s.uuid, &got), APR_SUCCESS);
    assert_session_equal(&s, &got);
    assert_int_equal(ocireg_uploads_count(u2), 1);
}

static void test_long_name(void **st)
{
    (void)st;
    ocireg_upload_session s, got;
    make_session(&s, 6);
    memset(s.name, 'n', OCIREG_NAME_MAX);
    s.name[OCIREG_NAME_MAX] = '\0';
    assert_int_equal(ocireg_uploads_add(up, &s), APR_SUCCESS);
    assert_int_equal(ocireg_uploads_get(up, s.uuid, &got), APR_SUCCESS);
    assert_int_equal(strlen(got.name), OCIREG_NAME_MAX);
    assert_session_equal(&s, &got);
}


static void test_add_twice_refused(void **st)
{
    (void)st;
    ocireg_upload_session s;
    make_session(&s, 12);
    assert_int_equal(ocireg_uploads_add(up, &s), APR_SUCCESS);
    /* two children caching one session from the store at once */
    assert_int_equal(ocireg_uploads_add(up, &s), APR_EEXIST);
    assert_int_equal(ocireg_uploads_count(up), 1);
}

static void test_instance_is_random_per_format(void **st)
{
    (void)st;
    apr_uint64_t first = ocireg_uploads_instance(up);
    assert_true(first != 0);
    ocireg_uploads_format(mem, SLOTS);
    assert_true(ocireg_uploads_instance(up) != first);
}

static void test_session_record_round_trip(void **st)
{
    (void)st;
    ocireg_upload_session s, out;
    apr_size_t len;
    make_session(&s, 13);
    s.version = 42;
    const void *data = ocireg_session_encode(pool, &s, &len);
    assert_int_equal(ocireg_session_decode(data, len, &out), APR_SUCCESS);
    assert_session_equal(&s, &out);
    assert_true(out.version == 42);
    /* another build's record is refused, not misread */
    assert_int_equal(ocireg_session_decode(data, len - 1, &out), APR_EINVAL);
    char *bad = apr_pmemdup(pool, data, len);
    bad[0] ^= 1;
    assert_int_equal(ocireg_session_decode(bad, len, &out), APR_EINVAL);
}

/* Found by fuzz_session: a record whose SHA-256 state had a corrupt
 * buffer count decoded fine, and resuming the hash wrote out of bounds
 * (the child segfaulted). */
static void test_session_record_bad_hash_state(void **st)
{
    (void)st;
    ocireg_upload_session s, out;
    apr_size_t len;
    make_session(&s, 14);
    ocireg_hash_update(&s.hash, "0123456789", 10);
    s.offset = 10;
    const void *data = ocireg_session_encode(pool, &s, &len);
    assert_int_equal(ocireg_session_decode(data, len, &out), APR_SUCCESS);
    ocireg_hash_update(&out.hash, "x", 1);

    /* The buffered-byte count is a 32-bit word after h[8], Nl, Nh and the
     * 64-byte block: find it by its value rather than by layout. */
    char *bad = apr_pmemdup(pool, data, len);
    apr_size_t at = 8 + offsetof(ocireg_upload_session, hash);
    unsigned int num;
    memcpy(&num, bad + at + 8 * 4 + 2 * 4 + 64, sizeof(num));
    assert_int_equal(num, 10);
    num = 0x7fffffff;
    memcpy(bad + at + 8 * 4 + 2 * 4 + 64, &num, sizeof(num));
    assert_int_equal(ocireg_session_decode(bad, len, &out), APR_EINVAL);

    /* A count that disagrees with the bit count, and a wrong digest
     * length, are refused too. */
    bad = apr_pmemdup(pool, data, len);
    num = 11;
    memcpy(bad + at + 8 * 4 + 2 * 4 + 64, &num, sizeof(num));
    assert_int_equal(ocireg_session_decode(bad, len, &out), APR_EINVAL);
    bad = apr_pmemdup(pool, data, len);
    num = 28;
    memcpy(bad + at + 8 * 4 + 2 * 4 + 64 + 4, &num, sizeof(num));
    assert_int_equal(ocireg_session_decode(bad, len, &out), APR_EINVAL);
}

int main(void)
{
    apr_initialize();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_size, setup, teardown),
        cmocka_unit_test_setup_teardown(test_empty, setup, teardown),
        cmocka_unit_test_setup_teardown(test_add_get, setup, teardown),
        cmocka_unit_test_setup_teardown(test_add_until_full, setup, teardown),
        cmocka_unit_test_setup_teardown(test_acquire_release_roundtrip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_acquire_twice_busy, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dead_holder_taken_over, setup, teardown),
        cmocka_unit_test_setup_teardown(test_live_other_holder_busy, setup, teardown),
        cmocka_unit_test_setup_teardown(test_remove_frees_slot, setup, teardown),
        cmocka_unit_test_setup_teardown(test_remove_all_then_reuse, setup, teardown),
        cmocka_unit_test_setup_teardown(test_format_resets, setup, teardown),
        cmocka_unit_test_setup_teardown(test_two_handles_share, setup, teardown),
        cmocka_unit_test_setup_teardown(test_long_name, setup, teardown),
        cmocka_unit_test_setup_teardown(test_add_twice_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_instance_is_random_per_format, setup, teardown),
        cmocka_unit_test_setup_teardown(test_session_record_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_session_record_bad_hash_state, setup, teardown),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    apr_terminate();
    return rc;
}
