/* Listings: tags, catalog, referrers; all paginated with n/last and an
 * RFC 8288 Link to the next page. */
#include <string.h>
#include <jansson.h>
#include "httpd.h"
#include "http_log.h"
#include "http_protocol.h"
#include "apr_strings.h"
#include "apr_optional.h"
#include "http_core.h"
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
                          const apr_array_header_t *items, int more)
{
    const char *last;
    /* n=0 asks for an empty page and no Link, by the spec's letter. */
    if (!more || n == 0 || items->nelts == 0)
        return;
    last = APR_ARRAY_IDX(items, items->nelts - 1, const char *);
    apr_table_setn(r->headers_out, "Link",
                   ocireg_next_link(r->pool, base, n, last));
}

/* How many entries a page holds: n if given, never over the maximum. */
static int page_size(int n)
{
    return n < 0 || n > OCIREG_PAGE_MAX ? OCIREG_PAGE_MAX : n;
}

/* The store hands one page, already ordered: its cost is the page's, not
 * the repository's. */
int ocireg_handle_tags(ocireg_req *q)
{
    request_rec *r = q->r;
    apr_array_header_t *tags;
    const char *last;
    json_t *root;
    apr_status_t rv;
    int more, n, status = page_args(r, &n, &last, 0);

    if (status != DECLINED)
        return status;
    rv = q->store->ops->tag_list(q->store, r->pool, q->route.name, last,
                                 page_size(n), &tags, &more);
    if (rv == APR_ENOENT)
        return ocireg_respond_error(r, HTTP_NOT_FOUND, OCIREG_E_NAME_UNKNOWN, NULL,
                            q->route.name);
    if (rv != APR_SUCCESS)
        return ocireg_store_failure(r, rv, "tag list");
    set_next_link(r,
                  apr_pstrcat(r->pool, "/v2/", q->route.name, "/tags/list",
                              NULL),
                  n, tags, more);
    root = json_object();
    json_object_set_new(root, "name", json_string(q->route.name));
    json_object_set_new(root, "tags", string_array(tags));
    return send_json(r, root, "application/json");
}

/* Whether any Require rule guards this request's method here: without
 * one every repository is visible and the catalog needs no checks. */
static int catalog_is_guarded(request_rec *r)
{
    APR_OPTIONAL_FN_TYPE(authz_some_auth_required) *guarded =
        APR_RETRIEVE_OPTIONAL_FN(authz_some_auth_required);
    return !guarded || guarded(r);
}

/* The caller sees only the repositories it may pull, by the same rules
 * that guard a pull. The store's pages are read on (1000 names, one
 * ListObjectsV2 on S3) until the page is full; each name costs one check
 * of the rules (ocireg_access_allowed). Whether a next page exists is
 * settled within the store page at hand: a visible name after the page's
 * last says yes; when none is left in it, the store's own "more" answers
 * (the next page may then turn out empty), so proving it never costs
 * another store request. */
static apr_status_t visible_page(ocireg_req *q, const char *last, int want,
                                 apr_array_header_t **out, int *more,
                                 const char **resume)
{
    request_rec *r = q->r;
    apr_array_header_t *seen = apr_array_make(r->pool, want > 0 ? want : 1,
                                              sizeof(const char *));
    apr_pool_t *scratch;
    const char *cursor = last;
    int examined = 0, store_more = want > 0;

    *more = 0;
    *resume = NULL;
    apr_pool_create(&scratch, r->pool);
    while (store_more && !*resume) {
        apr_array_header_t *names;
        int i;
        apr_status_t rv;
        apr_pool_clear(scratch);
        rv = q->store->ops->repo_list(q->store, scratch, cursor,
                                      OCIREG_PAGE_MAX, &names, &store_more);
        if (rv != APR_SUCCESS) {
            apr_pool_destroy(scratch);
            return rv;
        }
        for (i = 0; i < names->nelts && !*more; i++) {
            const char *name = APR_ARRAY_IDX(names, i, const char *);
            if (examined == ocireg_conf_catalog_scan) {
                /* Enough work for one response: the client goes on after
                 * the last name checked (the previous one, or the previous
                 * store page's last: the cursor), without learning it (it
                 * may be one it cannot see). */
                *resume = ocireg_cursor_seal(
                    r->pool, q->conf->cursor_key,
                    i > 0 ? APR_ARRAY_IDX(names, i - 1, const char *)
                          : cursor);
                if (!*resume) {
                    apr_pool_destroy(scratch);
                    return APR_EGENERAL;
                }
                break;
            }
            examined++;
            if (!ocireg_access_allowed(r, name, "pull"))
                continue;
            if (seen->nelts == want)
                *more = 1;
            else
                APR_ARRAY_PUSH(seen, const char *) =
                    apr_pstrdup(r->pool, name);
        }
        if (*resume) {
            *more = 1;
            break;
        }
        if (seen->nelts == want) {
            *more = *more || store_more;
            break;
        }
        if (names->nelts == 0)
            break;
        cursor = apr_pstrdup(r->pool,
                             APR_ARRAY_IDX(names, names->nelts - 1,
                                           const char *));
    }
    apr_pool_destroy(scratch);
    ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, r,
                  "OCIREG00452: catalog page: %d of %d repositories "
                  "examined are visible to %s",
                  seen->nelts, examined, r->user ? r->user : "anonymous");
    *out = seen;
    return APR_SUCCESS;
}

int ocireg_handle_catalog(ocireg_req *q)
{
    request_rec *r = q->r;
    apr_array_header_t *names;
    const char *last, *resume = NULL;
    json_t *root;
    apr_status_t rv;
    int more, n, status = page_args(r, &n, &last, 1);

    if (status != DECLINED)
        return status;
    if (last && *last == OCIREG_CURSOR_MARK) {
        const char *opened = ocireg_cursor_open(r->pool, q->conf->cursor_key,
                                                last);
        if (!opened)
            return ocireg_respond_error(
                r, HTTP_BAD_REQUEST, OCIREG_E_UNSUPPORTED,
                "last is not a cursor of this registry (or it restarted)",
                NULL);
        last = opened;
    }
    if (catalog_is_guarded(r))
        rv = visible_page(q, last, page_size(n), &names, &more, &resume);
    else
        rv = q->store->ops->repo_list(q->store, r->pool, last, page_size(n),
                                      &names, &more);
    if (rv != APR_SUCCESS)
        return ocireg_store_failure(r, rv, "repository list");
    if (resume)
        apr_table_setn(r->headers_out, "Link",
                       ocireg_next_link(r->pool, "/v2/_catalog", n, resume));
    else
        set_next_link(r, "/v2/_catalog", n, names, more);
    root = json_object();
    json_object_set_new(root, "repositories", string_array(names));
    return send_json(r, root, "application/json");
}

/* Referrers are ordered by their digest; `last` is a digest. The store
 * hands them one by one from `last` on, and stops once the page and one
 * more (for the Link) are found. */
typedef struct {
    apr_pool_t *p;
    apr_pool_t *scratch;           /* one entry's parsing, cleared each */
    const char *atype;
    int limit;
    apr_array_header_t *digests, *descriptors;
    int more;
} referrer_page;

static int take_referrer(void *ctx, const char *digest, const char *d)
{
    referrer_page *pg = ctx;
    const char *dg;
    apr_pool_clear(pg->scratch);
    dg = ocireg_descriptor_string(pg->scratch, d, "digest");
    if (!dg || strcmp(dg, digest) != 0)
        return 0;
    if (pg->atype) {
        const char *at = ocireg_descriptor_string(pg->scratch, d,
                                                  "artifactType");
        if (!at || strcmp(at, pg->atype) != 0)
            return 0;
    }
    if (pg->descriptors->nelts == pg->limit) {
        pg->more = 1;
        return 1;
    }
    APR_ARRAY_PUSH(pg->digests, const char *) = apr_pstrdup(pg->p, dg);
    APR_ARRAY_PUSH(pg->descriptors, const char *) = apr_pstrdup(pg->p, d);
    return 0;
}

int ocireg_handle_referrers(ocireg_req *q)
{
    request_rec *r = q->r;
    const char *subject = q->route.arg, *last, *atype, *base;
    referrer_page pg;
    int n, bad = 0, status;

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

    memset(&pg, 0, sizeof(pg));
    pg.p = r->pool;
    apr_pool_create(&pg.scratch, r->pool);
    pg.atype = atype;
    pg.limit = page_size(n);
    pg.digests = apr_array_make(r->pool, 8, sizeof(const char *));
    pg.descriptors = apr_array_make(r->pool, 8, sizeof(const char *));
    /* An unreadable listing answers an empty index, as an unknown subject
     * does. */
    if (pg.limit > 0)
        q->store->ops->referrer_each(q->store, r->pool, q->route.name,
                                     subject, last, take_referrer, &pg);
    if (pg.more && pg.limit > 0) {
        base = apr_pstrcat(r->pool, "/v2/", q->route.name, "/referrers/",
                           subject, NULL);
        if (atype)
            base = apr_pstrcat(r->pool, base, "?artifactType=",
                               ocireg_query_escape(r->pool, atype), NULL);
        apr_table_setn(r->headers_out, "Link",
                       ocireg_next_link(r->pool, base, pg.limit,
                                        APR_ARRAY_IDX(pg.digests,
                                                      pg.digests->nelts - 1,
                                                      const char *)));
    }
    if (atype)
        apr_table_setn(r->headers_out, "OCI-Filters-Applied", "artifactType");
    {
        const char *body = ocireg_referrers_index(r->pool, pg.descriptors,
                                                  NULL);
        return ocireg_respond(r, HTTP_OK, OCIREG_MT_OCI_INDEX, body,
                           strlen(body));
    }
}
