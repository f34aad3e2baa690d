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

void ocireg_select_init(ocireg_select *sel, apr_pool_t *p, int n,
                        const char *last,
                        int (*cmp)(const char *a, const char *b))
{
    char *buf;
    int i;
    sel->n = n > 0 ? n : 0;
    sel->count = 0;
    sel->last = last;
    sel->cmp = cmp;
    sel->more = 0;
    sel->heap = apr_palloc(p, sizeof(char *) * (apr_size_t)(sel->n + 1));
    buf = apr_palloc(p, (apr_size_t)OCIREG_SELECT_NAME_MAX
                            * (apr_size_t)(sel->n + 1));
    for (i = 0; i < sel->n; i++)
        sel->heap[i] = buf + (apr_size_t)i * OCIREG_SELECT_NAME_MAX;
}

static void heap_swap(char **h, int a, int b)
{
    char *t = h[a];
    h[a] = h[b];
    h[b] = t;
}

static void sift_down(ocireg_select *sel, int i)
{
    char **h = sel->heap;
    for (;;) {
        int l = 2 * i + 1, r = l + 1, top = i;
        if (l < sel->count && sel->cmp(h[l], h[top]) > 0)
            top = l;
        if (r < sel->count && sel->cmp(h[r], h[top]) > 0)
            top = r;
        if (top == i)
            return;
        heap_swap(h, i, top);
        i = top;
    }
}

void ocireg_select_offer(ocireg_select *sel, const char *name)
{
    char **h = sel->heap;
    apr_size_t len = strlen(name);
    int i;

    if (len >= OCIREG_SELECT_NAME_MAX
        || (sel->last && sel->cmp(name, sel->last) <= 0))
        return;
    if (sel->count < sel->n) {
        /* A free slot: append and sift up. */
        i = sel->count++;
        memcpy(h[i], name, len + 1);
        while (i > 0 && sel->cmp(h[(i - 1) / 2], h[i]) < 0) {
            heap_swap(h, i, (i - 1) / 2);
            i = (i - 1) / 2;
        }
        return;
    }
    sel->more = 1;
    if (sel->n == 0 || sel->cmp(name, h[0]) >= 0)
        return;
    /* Smaller than the largest kept: it takes that slot. */
    memcpy(h[0], name, len + 1);
    sift_down(sel, 0);
}

apr_array_header_t *ocireg_select_sorted(ocireg_select *sel, apr_pool_t *p)
{
    int total = sel->count, i;
    apr_array_header_t *out =
        apr_array_make(p, total > 0 ? total : 1, sizeof(const char *));
    const char **v;

    out->nelts = total;
    v = (const char **)out->elts;
    /* Popping the largest fills the page from its end. */
    for (i = total - 1; i >= 0; i--) {
        v[i] = apr_pstrdup(p, sel->heap[0]);
        heap_swap(sel->heap, 0, --sel->count);
        sift_down(sel, 0);
    }
    return out;
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
