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
    assert_int_equal(check(&good), APR_SUCCESS);

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
    st.tail = st.part_size; /* a full part kept as the tail is fine */
    assert_int_equal(check(&st), APR_SUCCESS);
    st.tail = st.part_size + 1;
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
                                         (unsigned char *)&st, 1, 0, -1,
                                         NULL, &w),
                     S3_EBADSTATE);
    assert_null(w);
    assert_int_equal(
        s->ops->upload_commit(s, pool, UUID1, (unsigned char *)&st, 1, NULL,
                              "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e"
                              "4649b934ca495991b7852b855",
                              0, NULL, NULL),
        S3_EBADSTATE);
    /* settle with a bad state deletes nothing and does not crash */
    assert_int_equal(s->ops->upload_settle(s, pool, UUID1, 1,
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
