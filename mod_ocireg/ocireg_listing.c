#include <stdlib.h>
#include <string.h>
#include <limits.h>
#include <apr_strings.h>
#include <apr_lib.h>
#include "ocireg_listing.h"
#include "ocireg_parse.h"

int ocireg_lexical_cmp(const char *a, const char *b)
{
    int c = strcasecmp(a, b);
    return c ? c : strcmp(a, b);
}

static int cmp_ptr(const void *a, const void *b)
{
    return ocireg_lexical_cmp(*(const char *const *)a,
                              *(const char *const *)b);
}

void ocireg_sort_strings(apr_array_header_t *items)
{
    if (items->nelts > 1)
        qsort(items->elts, (size_t)items->nelts, sizeof(const char *),
              cmp_ptr);
}

void ocireg_paginate(apr_pool_t *p, const apr_array_header_t *all,
                     const char *last, int n, ocireg_page *out)
{
    const char *const *v = (const char *const *)all->elts;
    int i = 0, limit = n < 0 ? OCIREG_PAGE_MAX : n;

    if (limit > OCIREG_PAGE_MAX)
        limit = OCIREG_PAGE_MAX;
    if (last) {
        while (i < all->nelts && ocireg_lexical_cmp(v[i], last) <= 0)
            i++;
    }
    out->items = apr_array_make(p, limit > 0 ? limit : 1,
                                sizeof(const char *));
    for (; i < all->nelts && out->items->nelts < limit; i++)
        APR_ARRAY_PUSH(out->items, const char *) = v[i];
    /* n=0 asks for an empty page and no Link, by the spec's letter. */
    out->more = n != 0 && i < all->nelts;
}

const char *ocireg_next_link(apr_pool_t *p, const char *base, int n,
                             const char *last)
{
    if (n < 0 || n > OCIREG_PAGE_MAX)
        n = OCIREG_PAGE_MAX;
    return apr_psprintf(p, "<%s%cn=%d&last=%s>; rel=\"next\"", base,
                        strchr(base, '?') ? '&' : '?', n,
                        ocireg_query_escape(p, last));
}

int ocireg_parse_n(const char *s, int *n)
{
    apr_off_t v;
    if (!s) {
        *n = -1;
        return 1;
    }
    if (!ocireg_off_parse(s, &v) || v > INT_MAX)
        return 0;
    *n = (int)v;
    return 1;
}
