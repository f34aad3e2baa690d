/* Sealed listing cursors: they round-trip, and anything not sealed by the
 * same key (altered, truncated, another key, junk) opens to nothing. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <string.h>
#include <cmocka.h>
#include <apr_general.h>
#include <apr_strings.h>
#include "ocireg_cursor.h"

static apr_pool_t *pool;
static unsigned char key[OCIREG_CURSOR_KEY_LEN], other[OCIREG_CURSOR_KEY_LEN];

static void round_trip(void **state)
{
    const char *c = ocireg_cursor_seal(pool, key, "team-b/secret-project");
    (void)state;
    assert_non_null(c);
    assert_int_equal(c[0], '~');
    assert_null(strstr(c, "secret"));
    assert_string_equal(ocireg_cursor_open(pool, key, c),
                        "team-b/secret-project");
    /* Two seals of one name differ (random nonce). */
    assert_string_not_equal(c, ocireg_cursor_seal(pool, key,
                                                  "team-b/secret-project"));
    assert_string_equal(ocireg_cursor_open(pool, key,
                                           ocireg_cursor_seal(pool, key, "")),
                        "");
}

static void refuses_what_it_did_not_seal(void **state)
{
    const char *c = ocireg_cursor_seal(pool, key, "a/b");
    char *bent = apr_pstrdup(pool, c);
    size_t i;
    (void)state;
    assert_null(ocireg_cursor_open(pool, other, c));
    for (i = 1; bent[i]; i++) {
        char was = bent[i];
        bent[i] = was == 'A' ? 'B' : 'A';
        assert_null(ocireg_cursor_open(pool, key, bent));
        bent[i] = was;
    }
    assert_null(ocireg_cursor_open(pool, key, apr_pstrndup(pool, c, 10)));
    assert_null(ocireg_cursor_open(pool, key, "~"));
    assert_null(ocireg_cursor_open(pool, key, "~!!!!"));
    assert_null(ocireg_cursor_open(pool, key, "a/b"));
    assert_null(ocireg_cursor_open(pool, key, NULL));
}

static void keys(void **state)
{
    unsigned char a[OCIREG_CURSOR_KEY_LEN], b[OCIREG_CURSOR_KEY_LEN];
    (void)state;
    assert_int_equal(ocireg_cursor_key(a, (const unsigned char *)"s", 1), 0);
    assert_int_equal(ocireg_cursor_key(b, (const unsigned char *)"s", 1), 0);
    assert_memory_equal(a, b, sizeof(a));
    assert_int_equal(ocireg_cursor_key(b, NULL, 0), 0);
    assert_memory_not_equal(a, b, sizeof(a));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(round_trip),
        cmocka_unit_test(refuses_what_it_did_not_seal),
        cmocka_unit_test(keys),
    };
    int rc;
    apr_initialize();
    apr_pool_create(&pool, NULL);
    ocireg_cursor_key(key, (const unsigned char *)"k", 1);
    ocireg_cursor_key(other, (const unsigned char *)"other", 5);
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    apr_pool_destroy(pool);
    apr_terminate();
    return rc;
}
