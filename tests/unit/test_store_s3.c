/* Unit tests for the S3 driver's session state (ocireg_store_s3_int.h):
 * a state read back from a shared bucket is checked before any use, and
 * a tail of 4 GiB or more (OCIRegS3PartSize allows 5 GiB) does not wrap. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <string.h>
#include <cmocka.h>

#include <apr_general.h>
#include <apr_pools.h>

#include "ocireg_store_s3_int.h"

#define GiB ((apr_uint64_t)1024 * 1024 * 1024)
#define UUID1 "123e4567-e89b-42d3-a456-426614174001"

static apr_pool_t *pool;
static ocireg_store *s;

static s3_state fresh(void)
{
    s3_state st;
    assert_int_equal(s->ops->upload_create(s, pool, UUID1,
                                           (unsigned char *)&st),
                     APR_SUCCESS);
    return st;
}

/* A midstate consistent with the state's full parts. */
static void at_part_boundary(s3_state *st)
{
    ocireg_hash_midstate m;
    memset(&m, 0, sizeof(m));
    m.length = (apr_uint64_t)st->parts * st->part_size;
    assert_true(ocireg_hash_import(&st->midstate, &m));
}

static apr_status_t check(const s3_state *st)
{
    return s3_state_check((const unsigned char *)st);
}

static void test_created_state_is_valid(void **unused)
{
    (void)unused;
    s3_state st = fresh();
    assert_int_equal(check(&st), APR_SUCCESS);
    assert_true(sizeof(st) <= OCIREG_DRIVER_STATE_SIZE);
    assert_true(sizeof(st.upload_id) >= 256);
}

static void test_tail_is_64_bit(void **unused)
{
    (void)unused;
    s3_state st = fresh();
    /* 5 GiB parts, a tail of 4.5 GiB: above 2^32 */
    st.part_size = 5 * GiB;
    st.parts = 3;
    strcpy(st.upload_id, "2~abc");
    st.tail = 4 * GiB + GiB / 2;
    memset(st.tail_token, 'a', S3_TAIL_TOKEN);
    st.tail_token[S3_TAIL_TOKEN] = '\0';
    at_part_boundary(&st);
    assert_int_equal(check(&st), APR_SUCCESS);
    assert_true(st.tail == 4 * GiB + GiB / 2);
    assert_true(st.parts * st.part_size + st.tail
                == 15 * GiB + 4 * GiB + GiB / 2);
}

static void test_bad_states_refused(void **unused)
{
    (void)unused;
    s3_state good = fresh(), st;
    strcpy(good.upload_id, "2~abc");
    good.parts = 1;
    good.tail = 10;
    memset(good.tail_token, 'f', S3_TAIL_TOKEN);
    good.tail_token[S3_TAIL_TOKEN] = '\0';
    at_part_boundary(&good);
    assert_int_equal(check(&good), APR_SUCCESS);

    /* A raw SHA-256 state that does not match the parts (or whose pending
     * count would run past its block) is refused before any use. */
    st = good;
    memset(&st.midstate, 0xff, sizeof(st.midstate));
    assert_int_not_equal(check(&st), APR_SUCCESS);
    st = good;
    st.parts = 2; /* midstate still at one part */
    assert_int_not_equal(check(&st), APR_SUCCESS);

    st = good;
    st.magic ^= 1;
    assert_int_not_equal(check(&st), APR_SUCCESS);
    st = good;
    memset(st.upload_id, 'x', sizeof(st.upload_id)); /* no NUL */
    assert_int_not_equal(check(&st), APR_SUCCESS);
    st = good;
    strcpy(st.upload_id, "id&partNumber=9");
    assert_int_not_equal(check(&st), APR_SUCCESS);
    st = good;
    st.upload_id[0] = '\0'; /* parts without a multipart upload */
    assert_int_not_equal(check(&st), APR_SUCCESS);
    st = good;
    st.tail = st.part_size;
    assert_int_not_equal(check(&st), APR_SUCCESS);
    st = good;
    st.parts = S3_MAX_PARTS + 1;
    assert_int_not_equal(check(&st), APR_SUCCESS);
    st = good;
    st.part_size = 0;
    assert_int_not_equal(check(&st), APR_SUCCESS);
    st = good;
    st.part_size = 6 * GiB;
    assert_int_not_equal(check(&st), APR_SUCCESS);
    st = good;
    st.tail_token[3] = '/';
    assert_int_not_equal(check(&st), APR_SUCCESS);
    st = good;
    st.tail_token[3] = 'A';
    assert_int_not_equal(check(&st), APR_SUCCESS);
    st = good;
    st.tail_token[S3_TAIL_TOKEN] = 'a';
    assert_int_not_equal(check(&st), APR_SUCCESS);
    st = good;
    st.tail_token[5] = '\0'; /* short */
    assert_int_not_equal(check(&st), APR_SUCCESS);
    st = good;
    st.tail = 0; /* a token without a tail */
    assert_int_not_equal(check(&st), APR_SUCCESS);
}

/* A bad state fails the request before anything reaches the backend (the
 * endpoint here does not exist). */
static void test_open_and_commit_refuse_bad_state(void **unused)
{
    (void)unused;
    s3_state st = fresh();
    ocireg_upload_writer *w = NULL;
    memset(st.upload_id, 'x', sizeof(st.upload_id));
    assert_int_equal(s->ops->upload_open(s, pool, UUID1,
                                         (unsigned char *)&st, 0, -1, &w),
                     S3_EBADSTATE);
    assert_null(w);
    assert_int_equal(
        s->ops->upload_commit(s, pool, UUID1, (unsigned char *)&st,
                              "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e"
                              "4649b934ca495991b7852b855",
                              0),
        S3_EBADSTATE);
    /* settle with a bad state deletes nothing and does not crash */
    assert_int_equal(s->ops->upload_settle(s, pool, UUID1,
                                           (unsigned char *)&st,
                                           (unsigned char *)&st),
                     APR_SUCCESS);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_created_state_is_valid),
        cmocka_unit_test(test_tail_is_64_bit),
        cmocka_unit_test(test_bad_states_refused),
        cmocka_unit_test(test_open_and_commit_refuse_bad_state),
    };
    ocireg_store_s3_config cfg;
    int rc;
    apr_initialize();
    apr_pool_create(&pool, NULL);
    memset(&cfg, 0, sizeof(cfg));
    cfg.endpoint = "http://127.0.0.1:9";
    cfg.bucket = "b";
    cfg.region = "us-east-1";
    cfg.access_key = "k";
    cfg.secret_key = "s";
    cfg.prefix = "";
    cfg.connect_timeout_ms = 100;
    cfg.timeout_ms = 100;
    cfg.part_size = 5 * 1024 * 1024;
    cfg.spool_dir = "/tmp";
    if (ocireg_store_s3_create(pool, &cfg, &s) != APR_SUCCESS)
        return 1;
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    apr_terminate();
    return rc;
}
