/* Unit tests for ocireg_listing.h */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <string.h>
#include <stdlib.h>
#include <strings.h>
#include <stdio.h>
#include <cmocka.h>

#include <apr_general.h>
#include <apr_pools.h>
#include <apr_strings.h>
#include <apr_tables.h>

#include "ocireg_listing.h"

static apr_pool_t *pool;

static apr_array_header_t *arr(const char *items[])
{
    apr_array_header_t *a = apr_array_make(pool, 4, sizeof(const char *));
    for (int i = 0; items[i]; i++)
        APR_ARRAY_PUSH(a, const char *) = items[i];
    return a;
}

static void page_is(const ocireg_page *pg, const char *want[], int more)
{
    assert_non_null(pg->items);
    int n = 0;
    while (want[n])
        n++;
    if (pg->items->nelts != n) {
        char buf[512] = "";
        for (int i = 0; i < pg->items->nelts; i++) {
            strncat(buf, APR_ARRAY_IDX(pg->items, i, const char *),
                    sizeof buf - strlen(buf) - 2);
            strncat(buf, ",", sizeof buf - strlen(buf) - 1);
        }
        fail_msg("page has %d items [%s], want %d", pg->items->nelts, buf, n);
    }
    for (int i = 0; i < n; i++)
        assert_string_equal(APR_ARRAY_IDX(pg->items, i, const char *),
                            want[i]);
    assert_int_equal(pg->more, more);
}

static int sign(int x)
{
    return x < 0 ? -1 : x > 0 ? 1 : 0;
}

static void test_lexical_cmp(void **st)
{
    (void)st;
    assert_int_equal(sign(ocireg_lexical_cmp("a", "a")), 0);
    assert_int_equal(sign(ocireg_lexical_cmp("", "")), 0);
    assert_int_equal(sign(ocireg_lexical_cmp("a", "b")), -1);
    assert_int_equal(sign(ocireg_lexical_cmp("b", "a")), 1);
    /* case-insensitive first */
    assert_int_equal(sign(ocireg_lexical_cmp("a", "B")), -1);
    assert_int_equal(sign(ocireg_lexical_cmp("B", "a")), 1);
    assert_int_equal(sign(ocireg_lexical_cmp("A", "b")), -1);
    assert_int_equal(sign(ocireg_lexical_cmp("Zeta", "alpha")), 1);
    assert_int_equal(sign(ocireg_lexical_cmp("abc", "ABD")), -1);
    /* ties broken bytewise: 'A' (0x41) < 'a' (0x61) */
    assert_int_equal(sign(ocireg_lexical_cmp("A", "a")), -1);
    assert_int_equal(sign(ocireg_lexical_cmp("a", "A")), 1);
    assert_int_equal(sign(ocireg_lexical_cmp("aB", "Ab")), 1);
    assert_int_equal(sign(ocireg_lexical_cmp("Ab", "aB")), -1);
    assert_int_equal(sign(ocireg_lexical_cmp("LATEST", "latest")), -1);
    /* prefixes */
    assert_int_equal(sign(ocireg_lexical_cmp("a", "ab")), -1);
    assert_int_equal(sign(ocireg_lexical_cmp("AB", "a")), 1);
    assert_int_equal(sign(ocireg_lexical_cmp("", "a")), -1);
    /* digits and punctuation below letters */
    assert_int_equal(sign(ocireg_lexical_cmp("1", "a")), -1);
    assert_int_equal(sign(ocireg_lexical_cmp("1.0", "1.0-rc")), -1);
    assert_int_equal(sign(ocireg_lexical_cmp("10", "9")), -1);
    /* antisymmetry over a small set */
    const char *s[] = { "", "a", "A", "b", "B", "ab", "aB", "Ab", "AB", "1",
                        "a.b", "a-b", "z", "Z", NULL };
    for (int i = 0; s[i]; i++)
        for (int j = 0; s[j]; j++) {
            int x = sign(ocireg_lexical_cmp(s[i], s[j]));
            int y = sign(ocireg_lexical_cmp(s[j], s[i]));
            assert_int_equal(x, -y);
            assert_int_equal(x == 0, strcmp(s[i], s[j]) == 0);
        }
}

static void test_sort(void **st)
{
    (void)st;
    apr_array_header_t *a = arr((const char *[]){
        "b", "a", "C", "A", "B", "10", "9", "c", "latest", "Latest", "1.0",
        "a-b", NULL });
    ocireg_sort_strings(a);
    const char *want[] = { "1.0", "10", "9", "A", "a", "a-b", "B", "b",
                           "C", "c", "Latest", "latest", NULL };
    for (int i = 0; want[i]; i++)
        assert_string_equal(APR_ARRAY_IDX(a, i, const char *), want[i]);
    assert_int_equal(a->nelts, 12);

    apr_array_header_t *e = arr((const char *[]){ NULL });
    ocireg_sort_strings(e);
    assert_int_equal(e->nelts, 0);

    /* a big reversed list */
    apr_array_header_t *big = apr_array_make(pool, 2000, sizeof(const char *));
    for (int i = 1999; i >= 0; i--)
        APR_ARRAY_PUSH(big, const char *) = apr_psprintf(pool, "t%05d", i);
    ocireg_sort_strings(big);
    for (int i = 0; i < 2000; i++)
        assert_string_equal(APR_ARRAY_IDX(big, i, const char *),
                            apr_psprintf(pool, "t%05d", i));
}

static const char *ABCDE[] = { "a", "b", "c", "d", "e", NULL };

static void test_paginate_all(void **st)
{
    (void)st;
    ocireg_page pg;
    ocireg_paginate(pool, arr(ABCDE), NULL, -1, &pg);
    page_is(&pg, ABCDE, 0);

    ocireg_paginate(pool, arr(ABCDE), NULL, 5, &pg);
    page_is(&pg, ABCDE, 0);

    ocireg_paginate(pool, arr(ABCDE), NULL, 100, &pg);
    page_is(&pg, ABCDE, 0);

    ocireg_paginate(pool, arr((const char *[]){ NULL }), NULL, -1, &pg);
    page_is(&pg, (const char *[]){ NULL }, 0);

    ocireg_paginate(pool, arr((const char *[]){ NULL }), NULL, 3, &pg);
    page_is(&pg, (const char *[]){ NULL }, 0);

    ocireg_paginate(pool, arr((const char *[]){ NULL }), "x", 3, &pg);
    page_is(&pg, (const char *[]){ NULL }, 0);
}

static void test_paginate_zero(void **st)
{
    (void)st;
    ocireg_page pg;
    /* spec: n=0 MUST return an empty list and MUST NOT include a Link */
    ocireg_paginate(pool, arr(ABCDE), NULL, 0, &pg);
    page_is(&pg, (const char *[]){ NULL }, 0);
    ocireg_paginate(pool, arr(ABCDE), "b", 0, &pg);
    page_is(&pg, (const char *[]){ NULL }, 0);
}

static void test_paginate_n2(void **st)
{
    (void)st;
    ocireg_page pg;
    ocireg_paginate(pool, arr(ABCDE), NULL, 2, &pg);
    page_is(&pg, (const char *[]){ "a", "b", NULL }, 1);

    ocireg_paginate(pool, arr(ABCDE), "b", 2, &pg);
    page_is(&pg, (const char *[]){ "c", "d", NULL }, 1);

    ocireg_paginate(pool, arr(ABCDE), "c", 2, &pg);
    page_is(&pg, (const char *[]){ "d", "e", NULL }, 0);

    ocireg_paginate(pool, arr(ABCDE), "d", 2, &pg);
    page_is(&pg, (const char *[]){ "e", NULL }, 0);

    ocireg_paginate(pool, arr(ABCDE), "e", 2, &pg);
    page_is(&pg, (const char *[]){ NULL }, 0);

    ocireg_paginate(pool, arr(ABCDE), NULL, 1, &pg);
    page_is(&pg, (const char *[]){ "a", NULL }, 1);
}

static void test_paginate_last_absent(void **st)
{
    (void)st;
    ocireg_page pg;
    /* "bb" sorts between b and c */
    ocireg_paginate(pool, arr(ABCDE), "bb", 2, &pg);
    page_is(&pg, (const char *[]){ "c", "d", NULL }, 1);
    /* before everything */
    ocireg_paginate(pool, arr(ABCDE), "0", 2, &pg);
    page_is(&pg, (const char *[]){ "a", "b", NULL }, 1);
    /* "A" sorts right before "a" */
    ocireg_paginate(pool, arr(ABCDE), "A", 2, &pg);
    page_is(&pg, (const char *[]){ "a", "b", NULL }, 1);
    /* "B" sorts after "a", before "b" */
    ocireg_paginate(pool, arr(ABCDE), "B", 2, &pg);
    page_is(&pg, (const char *[]){ "b", "c", NULL }, 1);
    /* beyond the end */
    ocireg_paginate(pool, arr(ABCDE), "z", 2, &pg);
    page_is(&pg, (const char *[]){ NULL }, 0);
    ocireg_paginate(pool, arr(ABCDE), "zzz", -1, &pg);
    page_is(&pg, (const char *[]){ NULL }, 0);
    /* last without n */
    ocireg_paginate(pool, arr(ABCDE), "b", -1, &pg);
    page_is(&pg, (const char *[]){ "c", "d", "e", NULL }, 0);
    /* empty last string is the start */
    ocireg_paginate(pool, arr(ABCDE), "", 2, &pg);
    page_is(&pg, (const char *[]){ "a", "b", NULL }, 1);
}

static void test_paginate_mixed_case(void **st)
{
    (void)st;
    apr_array_header_t *a = arr((const char *[]){ "A", "a", "B", "b", NULL });
    ocireg_page pg;
    ocireg_paginate(pool, a, "A", 1, &pg);
    page_is(&pg, (const char *[]){ "a", NULL }, 1);
    ocireg_paginate(pool, a, "a", 1, &pg);
    page_is(&pg, (const char *[]){ "B", NULL }, 1);
    ocireg_paginate(pool, a, "B", 5, &pg);
    page_is(&pg, (const char *[]){ "b", NULL }, 0);
}

static void test_paginate_cap(void **st)
{
    (void)st;
    apr_array_header_t *big = apr_array_make(pool, 1500, sizeof(const char *));
    for (int i = 0; i < 1500; i++)
        APR_ARRAY_PUSH(big, const char *) = apr_psprintf(pool, "t%05d", i);
    ocireg_page pg;

    ocireg_paginate(pool, big, NULL, 2000, &pg);
    assert_int_equal(pg.items->nelts, OCIREG_PAGE_MAX);
    assert_int_equal(pg.more, 1);
    assert_string_equal(APR_ARRAY_IDX(pg.items, 0, const char *), "t00000");
    assert_string_equal(APR_ARRAY_IDX(pg.items, OCIREG_PAGE_MAX - 1,
                                      const char *), "t00999");

    ocireg_paginate(pool, big, NULL, -1, &pg);
    assert_int_equal(pg.items->nelts, OCIREG_PAGE_MAX);
    assert_int_equal(pg.more, 1);

    ocireg_paginate(pool, big, NULL, 2147483647, &pg);
    assert_int_equal(pg.items->nelts, OCIREG_PAGE_MAX);
    assert_int_equal(pg.more, 1);

    ocireg_paginate(pool, big, "t00999", 2000, &pg);
    assert_int_equal(pg.items->nelts, 500);
    assert_int_equal(pg.more, 0);
    assert_string_equal(APR_ARRAY_IDX(pg.items, 0, const char *), "t01000");

    ocireg_paginate(pool, big, "t00499", -1, &pg);
    assert_int_equal(pg.items->nelts, 1000);
    assert_int_equal(pg.more, 0);

    ocireg_paginate(pool, big, NULL, OCIREG_PAGE_MAX, &pg);
    assert_int_equal(pg.items->nelts, OCIREG_PAGE_MAX);
    assert_int_equal(pg.more, 1);
}

static void test_paginate_does_not_modify_input(void **st)
{
    (void)st;
    apr_array_header_t *a = arr(ABCDE);
    ocireg_page pg;
    ocireg_paginate(pool, a, "a", 2, &pg);
    assert_int_equal(a->nelts, 5);
    for (int i = 0; ABCDE[i]; i++)
        assert_string_equal(APR_ARRAY_IDX(a, i, const char *), ABCDE[i]);
}

static void test_next_link(void **st)
{
    (void)st;
    const char *l = ocireg_next_link(pool, "/v2/x/tags/list", 2, "b");
    assert_string_equal(l, "</v2/x/tags/list?n=2&last=b>; rel=\"next\"");

    l = ocireg_next_link(pool, "/v2/_catalog", 100, "library/ubuntu");
    assert_true(strcasecmp(l,
        "</v2/_catalog?n=100&last=library%2Fubuntu>; rel=\"next\"") == 0);
    assert_non_null(strstr(l, "</v2/_catalog?n=100&last=library%"));

    l = ocireg_next_link(pool, "/v2/x/tags/list", 1000, "a&b=c d");
    assert_true(strcasecmp(l,
        "</v2/x/tags/list?n=1000&last=a%26b%3Dc%20d>; rel=\"next\"") == 0);

    l = ocireg_next_link(pool, "/v2/x/tags/list", 2, "v1.0_rc-1~");
    assert_string_equal(l,
        "</v2/x/tags/list?n=2&last=v1.0_rc-1~>; rel=\"next\"");

    /* '>' would end the URI reference early */
    l = ocireg_next_link(pool, "/v2/x/tags/list", 2, "a>b");
    assert_null(strchr(l + 1, '<'));
    assert_true(strstr(l, ">;") == strchr(l, '>'));
}

static void test_parse_n(void **st)
{
    (void)st;
    int n = 42;
    assert_true(ocireg_parse_n(NULL, &n));
    assert_int_equal(n, -1);
    assert_true(ocireg_parse_n("0", &n));
    assert_int_equal(n, 0);
    assert_true(ocireg_parse_n("1", &n));
    assert_int_equal(n, 1);
    assert_true(ocireg_parse_n("1000", &n));
    assert_int_equal(n, 1000);
    assert_true(ocireg_parse_n("2147483647", &n));
    assert_int_equal(n, 2147483647);

    const char *bad[] = { "", "-1", "+1", " 1", "1 ", "1a", "abc",
                          "2147483648", "99999999999999999999", "0x10",
                          "1.5", "-0", NULL };
    for (int i = 0; bad[i]; i++) {
        int x = 7;
        if (ocireg_parse_n(bad[i], &x))
            fail_msg("parse_n should reject '%s' (got %d)", bad[i], x);
    }
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

/* The bounded selection agrees with sort-then-paginate on a shuffled
 * stream, for every page size and start. */
static void test_select(void **st)
{
    (void)st;
    const int total = 500;
    apr_array_header_t *all = apr_array_make(pool, total, sizeof(char *));
    const char **v;
    int i, n, k;

    for (i = 0; i < total; i++)
        APR_ARRAY_PUSH(all, const char *) =
            apr_psprintf(pool, "%c%d", "aAbB_z"[i % 6], i * 7919 % 1000);
    v = (const char **)all->elts;
    srand(1);
    for (i = total - 1; i > 0; i--) {
        int j = rand() % (i + 1);
        const char *t = v[i];
        v[i] = v[j];
        v[j] = t;
    }
    for (n = 0; n <= 40; n += 13) {
        for (k = -1; k < total; k += 97) {
            const char *last = k < 0 ? NULL : v[k];
            ocireg_select sel;
            ocireg_page pg;
            apr_array_header_t *sorted = apr_array_copy(pool, all), *got;
            ocireg_sort_strings(sorted);
            ocireg_paginate(pool, sorted, last, n, &pg);
            ocireg_select_init(&sel, pool, n, last, ocireg_lexical_cmp);
            for (i = 0; i < total; i++)
                ocireg_select_offer(&sel, v[i]);
            assert_int_equal(sel.more, pg.more || (n == 0 && sel.more));
            got = ocireg_select_sorted(&sel, pool);
            assert_int_equal(got->nelts, pg.items->nelts);
            for (i = 0; i < got->nelts; i++)
                assert_string_equal(APR_ARRAY_IDX(got, i, const char *),
                                    APR_ARRAY_IDX(pg.items, i, const char *));
        }
    }
}

int main(void)
{
    apr_initialize();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_lexical_cmp, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sort, setup, teardown),
        cmocka_unit_test_setup_teardown(test_paginate_all, setup, teardown),
        cmocka_unit_test_setup_teardown(test_paginate_zero, setup, teardown),
        cmocka_unit_test_setup_teardown(test_paginate_n2, setup, teardown),
        cmocka_unit_test_setup_teardown(test_paginate_last_absent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_paginate_mixed_case, setup, teardown),
        cmocka_unit_test_setup_teardown(test_paginate_cap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_paginate_does_not_modify_input, setup, teardown),
        cmocka_unit_test_setup_teardown(test_next_link, setup, teardown),
        cmocka_unit_test_setup_teardown(test_parse_n, setup, teardown),
        cmocka_unit_test_setup_teardown(test_select, setup, teardown),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    apr_terminate();
    return rc;
}
