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

/* "<base?n=N&last=L>; rel=\"next\"", with '&' when base has a query. */
const char *ocireg_next_link(apr_pool_t *p, const char *base, int n,
                             const char *last);

/* Parses the n parameter: NULL gives -1; a decimal 0..INT_MAX gives its
 * value; anything else returns 0 (invalid). */
int ocireg_parse_n(const char *s, int *n);

#endif
