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

#include <openssl/evp.h>
#include <openssl/hmac.h>

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
    /* an update while held keeps it held */
    again.offset = 11;
    assert_int_equal(ocireg_uploads_update(up, &again), APR_SUCCESS);
    assert_int_equal(ocireg_uploads_acquire(up, s.uuid, &again), APR_EBUSY);
    assert_int_equal(ocireg_uploads_get(up, s.uuid, &again), APR_SUCCESS);
    assert_true(again.offset == 11);
    got.offset = 11;
    /* release with NULL keeps it unchanged */
    assert_int_equal(ocireg_uploads_release(up, NULL, s.uuid), APR_SUCCESS);
    assert_int_equal(ocireg_uploads_get(up, s.uuid, &again), APR_SUCCESS);
    assert_session_equal(&got, &again);
    assert_int_equal(ocireg_uploads_count(up), 1);
    /* only the holder updates */
    assert_int_equal(ocireg_uploads_update(up, &again), APR_ENOENT);
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

static const unsigned char KEY[] = "0123456789abcdef0123456789abcdef";
#define KEYLEN (sizeof(KEY) - 1)
#define MAC_LEN 32

static const unsigned char *encode(const ocireg_upload_session *s,
                                   apr_size_t *len)
{
    return ocireg_session_encode(pool, s, KEY, KEYLEN, len);
}

/* A record whose body was changed, signed again: what someone holding
 * the key, or a bug, could write; the field checks must catch it. */
static void resign(unsigned char *rec, apr_size_t len)
{
    unsigned int n = MAC_LEN;
    HMAC(EVP_sha256(), KEY, (int)KEYLEN, rec, len - MAC_LEN,
         rec + len - MAC_LEN, &n);
}

static void busy_session(ocireg_upload_session *s, int n)
{
    make_session(s, n);
    ocireg_hash_update(&s->hash, "hello world, and some more bytes", 31);
    s->offset = 31;
    s->version = 42;
    s->moved = 40;
}

static void test_session_record_round_trip(void **st)
{
    (void)st;
    ocireg_upload_session s, out;
    apr_size_t len;
    busy_session(&s, 13);
    const unsigned char *data = encode(&s, &len);
    assert_memory_equal(data, OCIREG_SESSION_MAGIC, 8);
    assert_int_equal(ocireg_session_decode(data, len, KEY, KEYLEN, &out),
                     APR_SUCCESS);
    assert_session_equal(&s, &out);
    assert_true(out.version == 42 && out.moved == 40);
    /* the hash carries on as if it had never left */
    char a[80], b[80];
    ocireg_hash_update(&s.hash, "tail", 4);
    ocireg_hash_update(&out.hash, "tail", 4);
    ocireg_hash_digest(&s.hash, a);
    ocireg_hash_digest(&out.hash, b);
    assert_string_equal(a, b);

    /* a fresh session, an empty driver state, a whole 64-byte block */
    make_session(&s, 14);
    memset(s.driver, 0, sizeof s.driver);
    data = encode(&s, &len);
    assert_int_equal(ocireg_session_decode(data, len, KEY, KEYLEN, &out),
                     APR_SUCCESS);
    assert_session_equal(&s, &out);
    make_session(&s, 15);
    char block[128];
    memset(block, 'b', sizeof block);
    ocireg_hash_update(&s.hash, block, 128);
    s.offset = 128;
    data = encode(&s, &len);
    assert_int_equal(ocireg_session_decode(data, len, KEY, KEYLEN, &out),
                     APR_SUCCESS);
    assert_session_equal(&s, &out);
    /* the longest name */
    memset(s.name, 'n', OCIREG_NAME_MAX);
    s.name[OCIREG_NAME_MAX] = '\0';
    data = encode(&s, &len);
    assert_int_equal(ocireg_session_decode(data, len, KEY, KEYLEN, &out),
                     APR_SUCCESS);
    assert_string_equal(out.name, s.name);
}

static void test_session_record_truncations(void **st)
{
    (void)st;
    ocireg_upload_session s, out;
    apr_size_t len, n;
    busy_session(&s, 16);
    const unsigned char *data = encode(&s, &len);
    for (n = 0; n < len; n++) {
        /* a copy of exactly n bytes, so ASan sees any overread */
        unsigned char *cut = malloc(n ? n : 1);
        memcpy(cut, data, n);
        assert_int_not_equal(ocireg_session_decode(cut, n, KEY, KEYLEN, &out),
                             APR_SUCCESS);
        /* truncated and signed again: the field lengths catch it */
        if (n > MAC_LEN + 10) {
            resign(cut, n);
            assert_int_equal(ocireg_session_decode(cut, n, KEY, KEYLEN, &out),
                             OCIREG_SESSION_EBAD);
        }
        free(cut);
    }
    assert_int_not_equal(ocireg_session_decode(NULL, 0, KEY, KEYLEN, &out),
                         APR_SUCCESS);
    /* one byte too many */
    unsigned char *longer = malloc(len + 1);
    memcpy(longer, data, len);
    longer[len] = 0;
    assert_int_not_equal(ocireg_session_decode(longer, len + 1, KEY, KEYLEN,
                                               &out),
                         APR_SUCCESS);
    free(longer);
}

static void test_session_record_bit_flips(void **st)
{
    (void)st;
    ocireg_upload_session s, out;
    apr_size_t len, i;
    busy_session(&s, 17);
    const unsigned char *data = encode(&s, &len);
    unsigned char *bad = malloc(len);
    for (i = 0; i < len * 8; i++) {
        memcpy(bad, data, len);
        bad[i / 8] ^= (unsigned char)(1u << (i % 8));
        assert_int_not_equal(ocireg_session_decode(bad, len, KEY, KEYLEN,
                                                   &out),
                             APR_SUCCESS);
        /* a failed decode leaves nothing half-filled */
        assert_int_equal(out.uuid[0], 0);
    }
    free(bad);
}

static void test_session_record_wrong_key(void **st)
{
    (void)st;
    ocireg_upload_session s, out;
    apr_size_t len;
    busy_session(&s, 18);
    const unsigned char *data = encode(&s, &len);
    static const unsigned char other[] = "another key entirely, 32 bytes!";
    assert_int_equal(ocireg_session_decode(data, len, other,
                                           sizeof(other) - 1, &out),
                     OCIREG_SESSION_EKEY);
    assert_int_equal(ocireg_session_decode(data, len, NULL, 0, &out),
                     OCIREG_SESSION_EKEY);
    /* no key: a checksum, still checked */
    data = ocireg_session_encode(pool, &s, NULL, 0, &len);
    assert_int_equal(ocireg_session_decode(data, len, NULL, 0, &out),
                     APR_SUCCESS);
    assert_int_equal(ocireg_session_decode(data, len, KEY, KEYLEN, &out),
                     OCIREG_SESSION_EKEY);
}

/* Offsets of the fields of a record of busy_session(): 31 bytes hashed,
 * so 31 pending, and a name "repo/nNN" of 8 bytes. */
#define AT_NAME_LEN (8 + 2 + 1 + 36)
#define AT_OFFSET (AT_NAME_LEN + 2 + 8 + 4)
#define AT_VERSION (AT_OFFSET + 8)
#define AT_MOVED (AT_VERSION + 8)
#define AT_CREATED (AT_MOVED + 8)
#define AT_HASH (AT_CREATED + 16)
#define AT_LENGTH (AT_HASH + 32)
#define AT_PENDING (AT_LENGTH + 8)
#define AT_DRIVER_LEN (AT_PENDING + 1 + 31)

static void expect_bad(const unsigned char *data, apr_size_t len,
                       void (*edit)(unsigned char *rec))
{
    ocireg_upload_session out;
    unsigned char *rec = malloc(len);
    memcpy(rec, data, len);
    edit(rec);
    resign(rec, len);
    assert_int_equal(ocireg_session_decode(rec, len, KEY, KEYLEN, &out),
                     OCIREG_SESSION_EBAD);
    free(rec);
}

static void hash_length_not_offset(unsigned char *rec) { rec[AT_LENGTH + 7] ^= 64; }
static void hash_length_huge(unsigned char *rec) { rec[AT_LENGTH] = 0xff; }
static void pending_count_wrong(unsigned char *rec) { rec[AT_PENDING] = 30; }
static void pending_count_huge(unsigned char *rec) { rec[AT_PENDING] = 200; }
static void offset_negative(unsigned char *rec) { rec[AT_OFFSET] = 0x80; }
static void moved_after_version(unsigned char *rec) { rec[AT_MOVED + 7] = 43; }
static void created_negative(unsigned char *rec) { rec[AT_CREATED] = 0xff; }
static void uuid_bad_char(unsigned char *rec) { rec[11] = 'G'; }
static void uuid_nul(unsigned char *rec) { rec[12] = '\0'; }
static void uuid_len(unsigned char *rec) { rec[10] = 35; }
static void name_bad(unsigned char *rec) { rec[AT_NAME_LEN + 2] = '/'; }
static void name_nul(unsigned char *rec) { rec[AT_NAME_LEN + 4] = '\0'; }
static void name_upper(unsigned char *rec) { rec[AT_NAME_LEN + 2] = 'R'; }
static void name_len_zero(unsigned char *rec) { rec[AT_NAME_LEN + 1] = 0; }
static void driver_len_huge(unsigned char *rec) { rec[AT_DRIVER_LEN] = 0x7f; }
static void format_unknown(unsigned char *rec) { rec[9] = 99; }

static void test_session_record_bad_fields(void **st)
{
    (void)st;
    ocireg_upload_session s, out;
    apr_size_t len;
    busy_session(&s, 19);
    const unsigned char *data = encode(&s, &len);
    /* the offsets above are right: a re-signed copy still decodes */
    unsigned char *same = malloc(len);
    memcpy(same, data, len);
    resign(same, len);
    assert_int_equal(ocireg_session_decode(same, len, KEY, KEYLEN, &out),
                     APR_SUCCESS);
    assert_true(same[AT_PENDING] == 31 && same[AT_OFFSET + 7] == 31);
    free(same);

    expect_bad(data, len, hash_length_not_offset);
    expect_bad(data, len, hash_length_huge);
    expect_bad(data, len, pending_count_wrong);
    expect_bad(data, len, pending_count_huge);
    expect_bad(data, len, offset_negative);
    expect_bad(data, len, moved_after_version);
    expect_bad(data, len, created_negative);
    expect_bad(data, len, uuid_bad_char);
    expect_bad(data, len, uuid_nul);
    expect_bad(data, len, uuid_len);
    expect_bad(data, len, name_bad);
    expect_bad(data, len, name_nul);
    expect_bad(data, len, name_upper);
    expect_bad(data, len, name_len_zero);
    expect_bad(data, len, driver_len_huge);
    expect_bad(data, len, format_unknown);
}

/* A hash state no SHA-256 run can reach: refused on import, so it never
 * reaches the library (whose block copy trusts its own counters). */
static void test_hash_import_refuses_bad_state(void **st)
{
    (void)st;
    ocireg_hash_state hs;
    ocireg_hash_midstate m;
    ocireg_hash_init(&hs);
    ocireg_hash_update(&hs, "abc", 3);
    ocireg_hash_export(&hs, &m);
    assert_true(m.length == 3);
    assert_true(ocireg_hash_import(&hs, &m));
    m.block[3] = 1;      /* bytes past the pending ones */
    assert_false(ocireg_hash_import(&hs, &m));
    m.block[3] = 0;
    m.length = (apr_uint64_t)1 << 62;
    assert_false(ocireg_hash_import(&hs, &m));
}

/* Random bytes behind a valid magic and MAC: never a crash. */
static void test_session_record_random(void **st)
{
    (void)st;
    ocireg_upload_session out;
    unsigned int seed = 12345;
    for (int round = 0; round < 20000; round++) {
        apr_size_t len = 8 + 2 + (apr_size_t)(rand_r(&seed) % 900) + MAC_LEN;
        unsigned char *rec = malloc(len);
        for (apr_size_t i = 0; i < len; i++)
            rec[i] = (unsigned char)rand_r(&seed);
        memcpy(rec, OCIREG_SESSION_MAGIC, 8);
        rec[8] = 0;
        rec[9] = 1;
        resign(rec, len);
        ocireg_session_decode(rec, len, KEY, KEYLEN, &out);
        free(rec);
    }
}

/* Many sessions through a larger table: every id found, every removal
 * leaving the others reachable (the index's backward shift), re-adds in
 * the freed slots, and a full table refusing one more. */
static void test_table_full_remove_readd(void **st)
{
    (void)st;
    enum { N = 5000 };
    apr_size_t size = ocireg_uploads_size(N);
    void *big = malloc(size);
    ocireg_uploads *t;
    ocireg_upload_session s, got;
    ocireg_uploads_format(big, N);
    t = ocireg_uploads_attach(pool, big, NULL);
    assert_non_null(t);
    for (int i = 0; i < N; i++) {
        make_session(&s, 50000 + i);
        assert_int_equal(ocireg_uploads_add(t, &s), APR_SUCCESS);
    }
    make_session(&s, 99999);
    assert_int_equal(ocireg_uploads_add(t, &s), APR_ENOSPC);
    assert_int_equal(ocireg_uploads_count(t), N);
    /* remove every third */
    for (int i = 0; i < N; i += 3) {
        const char *id = uuid_n(50000 + i);
        assert_int_equal(ocireg_uploads_acquire(t, id, &got), APR_SUCCESS);
        assert_int_equal(ocireg_uploads_remove(t, id), APR_SUCCESS);
        assert_int_equal(ocireg_uploads_remove(t, id), APR_ENOENT);
    }
    for (int i = 0; i < N; i++) {
        int gone = i % 3 == 0;
        assert_int_equal(ocireg_uploads_get(t, uuid_n(50000 + i), &got),
                         gone ? APR_ENOENT : APR_SUCCESS);
        if (!gone)
            assert_string_equal(got.uuid, uuid_n(50000 + i));
    }
    /* refill with new ids, then the old ones are refused as present */
    int added = 0;
    for (int i = 0; ocireg_uploads_count(t) < N; i++, added++) {
        make_session(&s, 70000 + i);
        assert_int_equal(ocireg_uploads_add(t, &s), APR_SUCCESS);
    }
    assert_int_equal(added, (N + 2) / 3);
    make_session(&s, 50001);
    assert_int_equal(ocireg_uploads_add(t, &s), APR_EEXIST);
    make_session(&s, 99999);
    assert_int_equal(ocireg_uploads_add(t, &s), APR_ENOSPC);
    for (int i = 0; i < added; i++) {
        assert_int_equal(ocireg_uploads_get(t, uuid_n(70000 + i), &got),
                         APR_SUCCESS);
        assert_session_equal(&got, &got);
    }
    /* empty it completely, in another order, and it is empty */
    for (int i = N - 1; i >= 0; i--) {
        const char *id = uuid_n(50000 + i);
        if (ocireg_uploads_acquire(t, id, &got) == APR_SUCCESS)
            assert_int_equal(ocireg_uploads_remove(t, id), APR_SUCCESS);
    }
    for (int i = 0; i < added; i++) {
        const char *id = uuid_n(70000 + i);
        assert_int_equal(ocireg_uploads_acquire(t, id, &got), APR_SUCCESS);
        assert_int_equal(ocireg_uploads_remove(t, id), APR_SUCCESS);
    }
    assert_int_equal(ocireg_uploads_count(t), 0);
    for (int i = 0; i < N; i++)
        assert_int_equal(ocireg_uploads_get(t, uuid_n(50000 + i), &got),
                         APR_ENOENT);
    free(big);
}

static void test_limits_per_client_and_repository(void **st)
{
    (void)st;
    apr_size_t size = ocireg_uploads_size(64);
    void *big = malloc(size);
    ocireg_uploads *t;
    ocireg_upload_session s, got;
    ocireg_uploads_format(big, 64);
    t = ocireg_uploads_attach(pool, big, NULL);
    /* client a: 3 at most */
    for (int i = 0; i < 3; i++) {
        make_session(&s, 600 + i);
        assert_int_equal(ocireg_uploads_add_limited(t, &s, "ip:a", 3, 5),
                         APR_SUCCESS);
    }
    make_session(&s, 610);
    assert_int_equal(ocireg_uploads_add_limited(t, &s, "ip:a", 3, 5),
                     OCIREG_UPLOADS_ECLIENT);
    assert_int_equal(ocireg_uploads_client_count(t, "ip:a"), 3);
    /* another client is not affected */
    assert_int_equal(ocireg_uploads_add_limited(t, &s, "ip:b", 3, 5),
                     APR_SUCCESS);
    /* one repository, many clients: 5 at most */
    for (int i = 0; i < 5; i++) {
        make_session(&s, 700 + i);
        apr_cpystrn(s.name, "one/repo", sizeof s.name);
        assert_int_equal(ocireg_uploads_add_limited(
                             t, &s, apr_psprintf(pool, "ip:c%d", i), 3, 5),
                         APR_SUCCESS);
    }
    make_session(&s, 710);
    apr_cpystrn(s.name, "one/repo", sizeof s.name);
    assert_int_equal(ocireg_uploads_add_limited(t, &s, "ip:d", 3, 5),
                     OCIREG_UPLOADS_EREPO);
    assert_int_equal(ocireg_uploads_repo_count(t, "one/repo"), 5);
    /* a removal frees the count */
    assert_int_equal(ocireg_uploads_acquire(t, uuid_n(702), &got),
                     APR_SUCCESS);
    assert_int_equal(ocireg_uploads_remove(t, uuid_n(702)), APR_SUCCESS);
    assert_int_equal(ocireg_uploads_repo_count(t, "one/repo"), 4);
    assert_int_equal(ocireg_uploads_client_count(t, "ip:c2"), 0);
    assert_int_equal(ocireg_uploads_add_limited(t, &s, "ip:d", 3, 5),
                     APR_SUCCESS);
    /* sessions cached from the store count against nobody */
    make_session(&s, 720);
    assert_int_equal(ocireg_uploads_add(t, &s), APR_SUCCESS);
    assert_int_equal(ocireg_uploads_client_count(t, "ip:a"), 3);
    /* no limits */
    for (int i = 0; i < 10; i++) {
        make_session(&s, 800 + i);
        assert_int_equal(ocireg_uploads_add_limited(t, &s, "ip:a", 0, 0),
                         APR_SUCCESS);
    }
    assert_int_equal(ocireg_uploads_client_count(t, "ip:a"), 13);
    free(big);
}

static void test_take_idle_empty_sooner(void **st)
{
    (void)st;
    ocireg_upload_session s, out[SLOTS];
    make_session(&s, 900);          /* empty, touched at T+900 */
    assert_int_equal(ocireg_uploads_add(up, &s), APR_SUCCESS);
    make_session(&s, 901);          /* has bytes */
    ocireg_hash_update(&s.hash, "x", 1);
    s.offset = 1;
    assert_int_equal(ocireg_uploads_add(up, &s), APR_SUCCESS);
    apr_time_t t0 = (apr_time_t)1700000000000000LL;
    /* neither idle long enough */
    assert_int_equal(ocireg_uploads_take_idle(up, t0, t0, out, SLOTS), 0);
    /* the empty one expires under the shorter limit only */
    assert_int_equal(ocireg_uploads_take_idle(up, t0, t0 + 10000, out, SLOTS),
                     1);
    assert_string_equal(out[0].uuid, uuid_n(900));
    /* taken: held by us, so not taken twice */
    assert_int_equal(ocireg_uploads_take_idle(up, t0, t0 + 10000, out, SLOTS),
                     0);
    assert_int_equal(ocireg_uploads_release(up, NULL, uuid_n(900)),
                     APR_SUCCESS);
    assert_int_equal(ocireg_uploads_take_idle(up, t0 + 10000, 0, out, SLOTS),
                     2);
}

/* Not an assertion on time: prints what a lookup costs, for README's
 * numbers. A million slots (1.1 GB) with OCIREG_UNIT_BENCH=1; otherwise a
 * small table, so the suite stays light (and bearable under valgrind). */
static void test_lookup_cost_at_a_million(void **st)
{
    (void)st;
    const char *bench = getenv("OCIREG_UNIT_BENCH");
    const int N = bench && *bench == '1' ? 1000000 : 20000;
    enum { LOOKUPS = 200000 };
    apr_size_t size = ocireg_uploads_size(N);
    void *big = malloc(size);
    ocireg_uploads *t;
    ocireg_upload_session s, got;
    apr_time_t t0, t1;
    ocireg_uploads_format(big, N);
    t = ocireg_uploads_attach(pool, big, NULL);
    make_session(&s, 0);
    for (int i = 0; i < N; i++) {
        snprintf(s.uuid, sizeof s.uuid, "%08x-e89b-42d3-a456-426614174000", i);
        assert_int_equal(ocireg_uploads_add(t, &s), APR_SUCCESS);
    }
    t0 = apr_time_now();
    for (int i = 0; i < LOOKUPS; i++) {
        char id[40];
        snprintf(id, sizeof id, "%08x-e89b-42d3-a456-426614174000",
                 (i * 7919) % N);
        if (ocireg_uploads_get(t, id, &got) != APR_SUCCESS)
            fail();
    }
    t1 = apr_time_now();
    printf("lookup at %d slots: %.3f us per get (%d gets)\n", N,
           (double)(t1 - t0) / LOOKUPS, LOOKUPS);
    free(big);
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
        cmocka_unit_test_setup_teardown(test_session_record_truncations, setup, teardown),
        cmocka_unit_test_setup_teardown(test_session_record_bit_flips, setup, teardown),
        cmocka_unit_test_setup_teardown(test_session_record_wrong_key, setup, teardown),
        cmocka_unit_test_setup_teardown(test_session_record_bad_fields, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hash_import_refuses_bad_state, setup, teardown),
        cmocka_unit_test_setup_teardown(test_session_record_random, setup, teardown),
        cmocka_unit_test_setup_teardown(test_table_full_remove_readd, setup, teardown),
        cmocka_unit_test_setup_teardown(test_limits_per_client_and_repository, setup, teardown),
        cmocka_unit_test_setup_teardown(test_take_idle_empty_sooner, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lookup_cost_at_a_million, setup, teardown),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    apr_terminate();
    return rc;
}
