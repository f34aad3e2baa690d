/* Listings: tags, catalog, referrers; all paginated with n/last and an
 * RFC 8288 Link to the next page. */
#include <string.h>
#include <jansson.h>
#include "httpd.h"
#include "http_log.h"
#include "http_protocol.h"
#include "apr_strings.h"
#include "mod_ocireg.h"
#include "ocireg_parse.h"
#include "ocireg_listing.h"
#include "ocireg_manifest.h"

APLOG_USE_MODULE(ocireg);

/* Reads n and last; returns DECLINED or the error response. */
static int page_args(request_rec *r, int *n, const char **last,
                     int last_is_digest)
{
    int bad = 0;
    const char *ns = ocireg_query_arg(r->pool, r->args, "n", &bad);
    *last = ocireg_query_arg(r->pool, r->args, "last", &bad);
    if (bad || !ocireg_parse_n(ns, n))
        return ocireg_respond_error(r, HTTP_BAD_REQUEST, OCIREG_E_UNSUPPORTED,
                            "n must be a non-negative integer", ns);
    if (*last && !**last)
        *last = NULL;
    if (*last && !last_is_digest && !ocireg_tag_valid(*last))
        return ocireg_respond_error(r, HTTP_BAD_REQUEST, OCIREG_E_TAG_INVALID,
                            "last is not a tag", *last);
    return DECLINED;
}

static int send_json(request_rec *r, json_t *root, const char *content_type)
{
    char *text = json_dumps(root, JSON_COMPACT);
    const char *body = apr_pstrcat(r->pool, text ? text : "{}", "\n", NULL);
    free(text);
    json_decref(root);
    return ocireg_respond(r, HTTP_OK, content_type, body, strlen(body));
}

static json_t *string_array(const apr_array_header_t *items)
{
    json_t *a = json_array();
    int i;
    for (i = 0; i < items->nelts; i++)
        json_array_append_new(
            a, json_string(APR_ARRAY_IDX(items, i, const char *)));
    return a;
}

static void set_next_link(request_rec *r, const char *base, int n,
                          const ocireg_page *page)
{
    const char *last;
    if (!page->more || page->items->nelts == 0)
        return;
    last = APR_ARRAY_IDX(page->items, page->items->nelts - 1, const char *);
    apr_table_setn(r->headers_out, "Link",
                   ocireg_next_link(r->pool, base, n, last));
}

int ocireg_handle_tags(ocireg_req *q)
{
    request_rec *r = q->r;
    apr_array_header_t *tags;
    ocireg_page page;
    const char *last;
    json_t *root;
    apr_status_t rv;
    int n, status = page_args(r, &n, &last, 0);

    if (status != DECLINED)
        return status;
    rv = q->store->ops->tag_list(q->store, r->pool, q->route.name, &tags);
    if (rv == APR_ENOENT)
        return ocireg_respond_error(r, HTTP_NOT_FOUND, OCIREG_E_NAME_UNKNOWN, NULL,
                            q->route.name);
    if (rv != APR_SUCCESS)
        return ocireg_store_failure(r, rv, "tag list");
    ocireg_sort_strings(tags);
    ocireg_paginate(r->pool, tags, last, n, &page);
    set_next_link(r,
                  apr_pstrcat(r->pool, "/v2/", q->route.name, "/tags/list",
                              NULL),
                  n, &page);
    root = json_object();
    json_object_set_new(root, "name", json_string(q->route.name));
    json_object_set_new(root, "tags", string_array(page.items));
    return send_json(r, root, "application/json");
}

int ocireg_handle_catalog(ocireg_req *q)
{
    request_rec *r = q->r;
    apr_array_header_t *names;
    ocireg_page page;
    const char *last;
    json_t *root;
    apr_status_t rv;
    int n, status = page_args(r, &n, &last, 1);

    if (status != DECLINED)
        return status;
    rv = q->store->ops->repo_list(q->store, r->pool, &names);
    if (rv != APR_SUCCESS)
        return ocireg_store_failure(r, rv, "repository list");
    ocireg_sort_strings(names);
    ocireg_paginate(r->pool, names, last, n, &page);
    set_next_link(r, "/v2/_catalog", n, &page);
    root = json_object();
    json_object_set_new(root, "repositories", string_array(page.items));
    return send_json(r, root, "application/json");
}

/* Referrers are ordered by their digest; `last` is a digest. */
int ocireg_handle_referrers(ocireg_req *q)
{
    request_rec *r = q->r;
    apr_array_header_t *all, *digests, *page_desc;
    const char *subject = q->route.arg, *last, *atype, *base;
    int i, n, limit, bad = 0, status;

    if (ocireg_digest_parse(subject) == OCIREG_DIGEST_BAD)
        return ocireg_respond_error(r, HTTP_BAD_REQUEST, OCIREG_E_DIGEST_INVALID,
                            NULL, subject);
    if ((status = page_args(r, &n, &last, 1)) != DECLINED)
        return status;
    atype = ocireg_query_arg(r->pool, r->args, "artifactType", &bad);
    if (bad)
        return ocireg_respond_error(r, HTTP_BAD_REQUEST, OCIREG_E_UNSUPPORTED,
                            "malformed artifactType", NULL);
    if (atype && !*atype)
        atype = NULL;

    if (q->store->ops->referrer_list(q->store, r->pool, q->route.name,
                                     subject, &all)
        != APR_SUCCESS)
        all = apr_array_make(r->pool, 1, sizeof(const char *));

    limit = n < 0 || n > OCIREG_PAGE_MAX ? OCIREG_PAGE_MAX : n;
    digests = apr_array_make(r->pool, 8, sizeof(const char *));
    page_desc = apr_array_make(r->pool, 8, sizeof(const char *));
    for (i = 0; i < all->nelts; i++) {
        const char *d = APR_ARRAY_IDX(all, i, const char *);
        const char *dg = ocireg_descriptor_string(r->pool, d, "digest");
        const char *at;
        if (!dg || (last && strcmp(dg, last) <= 0))
            continue;
        if (atype) {
            at = ocireg_descriptor_string(r->pool, d, "artifactType");
            if (!at || strcmp(at, atype) != 0)
                continue;
        }
        if (page_desc->nelts == limit) {
            /* One more exists: point to the next page. */
            base = apr_pstrcat(r->pool, "/v2/", q->route.name, "/referrers/",
                               subject, NULL);
            if (atype)
                base = apr_pstrcat(r->pool, base, "?artifactType=",
                                   ocireg_query_escape(r->pool, atype), NULL);
            if (limit > 0)
                apr_table_setn(r->headers_out, "Link",
                               ocireg_next_link(r->pool, base, limit,
                                                APR_ARRAY_IDX(
                                                    digests,
                                                    digests->nelts - 1,
                                                    const char *)));
            break;
        }
        APR_ARRAY_PUSH(digests, const char *) = dg;
        APR_ARRAY_PUSH(page_desc, const char *) = d;
    }
    if (atype)
        apr_table_setn(r->headers_out, "OCI-Filters-Applied", "artifactType");
    {
        const char *body = ocireg_referrers_index(r->pool, page_desc, NULL);
        return ocireg_respond(r, HTTP_OK, OCIREG_MT_OCI_INDEX, body,
                           strlen(body));
    }
}
