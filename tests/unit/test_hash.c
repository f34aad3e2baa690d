/* Unit tests for ocireg_hash.h */
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

#include "ocireg_hash.h"

static apr_pool_t *pool;

#define D_EMPTY "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
#define D_ABC "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
#define D_MILLION_A "sha256:cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"
#define D_448 "sha256:248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"
#define D_HELLO_WORLD "sha256:b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9"

static void digest_of(const ocireg_hash_state *s, char out[80])
{
    memset(out, 'Z', 80);
    ocireg_hash_digest(s, out);
    assert_int_equal(strlen(out), 71);
}

static void test_empty(void **st)
{
    (void)st;
    ocireg_hash_state s;
    char d[80];
    ocireg_hash_init(&s);
    digest_of(&s, d);
    assert_string_equal(d, D_EMPTY);
    ocireg_hash_update(&s, "", 0);
    digest_of(&s, d);
    assert_string_equal(d, D_EMPTY);
    assert_string_equal(ocireg_sha256_digest(pool, "", 0), D_EMPTY);
}

static void test_abc(void **st)
{
    (void)st;
    ocireg_hash_state s;
    char d[80];
    ocireg_hash_init(&s);
    ocireg_hash_update(&s, "abc", 3);
    digest_of(&s, d);
    assert_string_equal(d, D_ABC);
    assert_string_equal(ocireg_sha256_digest(pool, "abc", 3), D_ABC);
    const char *m = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    assert_string_equal(ocireg_sha256_digest(pool, m, strlen(m)), D_448);
    assert_string_equal(ocireg_sha256_digest(pool, "hello world", 11),
                        D_HELLO_WORLD);
}

static void test_million_a(void **st)
{
    (void)st;
    ocireg_hash_state s;
    char d[80];
    char buf[1000];
    memset(buf, 'a', sizeof buf);
    ocireg_hash_init(&s);
    /* odd-sized updates: 1, 2, 3 ... wrapping, until a million */
    size_t done = 0, step = 1;
    while (done < 1000000) {
        size_t n = step;
        if (n > 1000000 - done)
            n = 1000000 - done;
        ocireg_hash_update(&s, buf, n);
        done += n;
        step = step % 997 + 1;
    }
    digest_of(&s, d);
    assert_string_equal(d, D_MILLION_A);

    char *big = malloc(1000000);
    assert_non_null(big);
    memset(big, 'a', 1000000);
    assert_string_equal(ocireg_sha256_digest(pool, big, 1000000), D_MILLION_A);
    free(big);
}

static void test_split_every_offset(void **st)
{
    (void)st;
    unsigned char buf[300];
    for (int i = 0; i < 300; i++)
        buf[i] = (unsigned char)(i * 7 + 3);
    const char *want = ocireg_sha256_digest(pool, buf, sizeof buf);
    for (size_t cut = 0; cut <= sizeof buf; cut++) {
        ocireg_hash_state s;
        char d[80];
        ocireg_hash_init(&s);
        ocireg_hash_update(&s, buf, cut);
        ocireg_hash_update(&s, buf + cut, sizeof buf - cut);
        digest_of(&s, d);
        if (strcmp(d, want) != 0)
            fail_msg("split at %zu: %s != %s", cut, d, want);
    }
    /* three-way splits around block boundaries */
    for (size_t a = 50; a <= 70; a++) {
        for (size_t b = a; b <= 140; b += 3) {
            ocireg_hash_state s;
            char d[80];
            ocireg_hash_init(&s);
            ocireg_hash_update(&s, buf, a);
            ocireg_hash_update(&s, buf + a, b - a);
            ocireg_hash_update(&s, buf + b, sizeof buf - b);
            digest_of(&s, d);
            if (strcmp(d, want) != 0)
                fail_msg("split at %zu,%zu: %s != %s", a, b, d, want);
        }
    }
}

static void test_copy_state_midstream(void **st)
{
    (void)st;
    unsigned char buf[5000];
    for (int i = 0; i < 5000; i++)
        buf[i] = (unsigned char)(i ^ (i >> 8));
    const char *want = ocireg_sha256_digest(pool, buf, sizeof buf);

    size_t cuts[] = { 0, 1, 63, 64, 65, 127, 128, 129, 1000, 4999, 5000 };
    for (size_t k = 0; k < sizeof cuts / sizeof cuts[0]; k++) {
        size_t cut = cuts[k];
        ocireg_hash_state *a = malloc(sizeof *a);
        ocireg_hash_state *b = malloc(sizeof *b);
        char d[80];
        ocireg_hash_init(a);
        ocireg_hash_update(a, buf, cut);
        memcpy(b, a, sizeof *a);
        /* the original is scribbled over and freed: the copy must not
         * depend on it (no pointers into it) */
        memset(a, 0xA5, sizeof *a);
        free(a);
        ocireg_hash_update(b, buf + cut, sizeof buf - cut);
        digest_of(b, d);
        if (strcmp(d, want) != 0)
            fail_msg("copy at %zu: %s != %s", cut, d, want);
        free(b);
    }
}

static void test_copy_state_unaligned(void **st)
{
    (void)st;
    /* ocireg_hash_state is an array of unsigned char, so it may sit at any
     * address (a packed record, a shm slot). */
    unsigned char raw[sizeof(ocireg_hash_state) + 16];
    ocireg_hash_state s;
    char d[80];
    ocireg_hash_init(&s);
    ocireg_hash_update(&s, "hello ", 6);
    memcpy(raw + 3, &s, sizeof s);
    ocireg_hash_state back;
    memset(&s, 0, sizeof s);
    memcpy(&back, raw + 3, sizeof back);
    ocireg_hash_update(&back, "world", 5);
    digest_of(&back, d);
    assert_string_equal(d, D_HELLO_WORLD);
}

static void test_state_across_processes(void **st)
{
    (void)st;
    /* A child process starts the hash in shared memory and exits; the
     * parent continues from the bytes it left. */
    ocireg_hash_state *shared = mmap(NULL, sizeof *shared,
                                     PROT_READ | PROT_WRITE,
                                     MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    assert_true(shared != MAP_FAILED);
    memset(shared, 0, sizeof *shared);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        ocireg_hash_state local;
        ocireg_hash_init(&local);
        /* allocate a bit so heap state differs from the parent's */
        void *junk = malloc(100000);
        ocireg_hash_update(&local, "hello ", 6);
        memcpy(shared, &local, sizeof local);
        free(junk);
        _exit(0);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    ocireg_hash_state mine;
    memcpy(&mine, shared, sizeof mine);
    ocireg_hash_update(&mine, "world", 5);
    char d[80];
    digest_of(&mine, d);
    assert_string_equal(d, D_HELLO_WORLD);
    munmap(shared, sizeof *shared);
}

static void test_digest_does_not_disturb(void **st)
{
    (void)st;
    ocireg_hash_state s, before;
    char d1[80], d2[80], d3[80];
    ocireg_hash_init(&s);
    ocireg_hash_update(&s, "hello ", 6);
    memcpy(&before, &s, sizeof s);
    digest_of(&s, d1);
    assert_memory_equal(&before, &s, sizeof s);
    digest_of(&s, d2);
    assert_string_equal(d1, d2);
    assert_string_equal(d1, ocireg_sha256_digest(pool, "hello ", 6));
    ocireg_hash_update(&s, "world", 5);
    digest_of(&s, d3);
    assert_string_equal(d3, D_HELLO_WORLD);
    /* digest at every step of a stream */
    ocireg_hash_init(&s);
    const char *txt = "The quick brown fox jumps over the lazy dog";
    for (size_t i = 0; i < strlen(txt); i++) {
        char d[80];
        ocireg_hash_update(&s, txt + i, 1);
        digest_of(&s, d);
        assert_string_equal(d, ocireg_sha256_digest(pool, txt, i + 1));
    }
}

static void test_state_size(void **st)
{
    (void)st;
    assert_int_equal(sizeof(ocireg_hash_state), OCIREG_HASH_STATE_SIZE);
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

/* Export and import at every length around block boundaries: the
 * rebuilt state goes on exactly as the original. */
static void test_midstate_round_trip(void **st)
{
    (void)st;
    unsigned char data[300];
    for (int i = 0; i < 300; i++)
        data[i] = (unsigned char)(i * 7 + 3);
    for (apr_size_t n = 0; n <= 200; n++) {
        ocireg_hash_state a, b;
        ocireg_hash_midstate m;
        char da[80], db[80];
        ocireg_hash_init(&a);
        ocireg_hash_update(&a, data, n);
        ocireg_hash_export(&a, &m);
        assert_true(m.length == n);
        memset(&b, 0xA5, sizeof b);
        assert_true(ocireg_hash_import(&b, &m));
        ocireg_hash_update(&a, data + n, 100);
        ocireg_hash_update(&b, data + n, 100);
        ocireg_hash_digest(&a, da);
        ocireg_hash_digest(&b, db);
        assert_string_equal(da, db);
    }
}

int main(void)
{
    apr_initialize();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_empty, setup, teardown),
        cmocka_unit_test_setup_teardown(test_abc, setup, teardown),
        cmocka_unit_test_setup_teardown(test_million_a, setup, teardown),
        cmocka_unit_test_setup_teardown(test_split_every_offset, setup, teardown),
        cmocka_unit_test_setup_teardown(test_copy_state_midstream, setup, teardown),
        cmocka_unit_test_setup_teardown(test_copy_state_unaligned, setup, teardown),
        cmocka_unit_test_setup_teardown(test_state_across_processes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_digest_does_not_disturb, setup, teardown),
        cmocka_unit_test_setup_teardown(test_state_size, setup, teardown),
        cmocka_unit_test_setup_teardown(test_midstate_round_trip, setup, teardown),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    apr_terminate();
    return rc;
}
