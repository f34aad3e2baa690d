/* Paginated listings (tags, catalog, referrers): order, n/last and the
 * RFC 8288 Link to the next page. */
#ifndef OCIREG_LISTING_H
#define OCIREG_LISTING_H

#include <apr_pools.h>
#include <apr_tables.h>

/* A page never holds more than this, whatever n asks; a Link points on. */
#define OCIREG_PAGE_MAX 1000

/* The spec's tag order: case-insensitive, ties broken bytewise so the order
 * is total and "last" is unambiguous. */
int ocireg_lexical_cmp(const char *a, const char *b);

/* Sorts an array of const char * in ocireg_lexical_cmp order. */
void ocireg_sort_strings(apr_array_header_t *items);

typedef struct {
    apr_array_header_t *items;     /* const char *, the page */
    int more;                      /* items remain after the page */
} ocireg_page;

/* Picks the page of sorted `all` after `last` (NULL for the start), at most
 * n items (n < 0 means no n given). */
void ocireg_paginate(apr_pool_t *p, const apr_array_header_t *all,
                     const char *last, int n, ocireg_page *out);

/* The n smallest names after `last` of a stream seen once in any order
 * (a directory read), in fixed memory: n slots of OCIREG_SELECT_NAME_MAX
 * bytes, whatever the stream holds. Longer names are ignored. */
#define OCIREG_SELECT_NAME_MAX 256
typedef struct {
    int n, count;
    char **heap;                   /* max-heap of the slots in use */
    const char *last;
    int (*cmp)(const char *a, const char *b);
    int more;                      /* a name after last did not fit */
} ocireg_select;

void ocireg_select_init(ocireg_select *sel, apr_pool_t *p, int n,
                        const char *last,
                        int (*cmp)(const char *a, const char *b));
void ocireg_select_offer(ocireg_select *sel, const char *name);
/* The selected names in cmp order (copies in p). */
apr_array_header_t *ocireg_select_sorted(ocireg_select *sel, apr_pool_t *p);

/* "<base?n=N&last=L>; rel=\"next\"", with '&' when base has a query. */
const char *ocireg_next_link(apr_pool_t *p, const char *base, int n,
                             const char *last);

/* Parses the n parameter: NULL gives -1; a decimal 0..INT_MAX gives its
 * value; anything else returns 0 (invalid). */
int ocireg_parse_n(const char *s, int *n);

#endif
