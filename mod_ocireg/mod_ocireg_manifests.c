/* Manifests: GET/HEAD/PUT/DELETE by tag or digest. */
#include <string.h>
#include "httpd.h"
#include "http_core.h"
#include "http_log.h"
#include "http_protocol.h"
#include "http_request.h"
#include "apr_strings.h"
#include "mod_ocireg.h"
#include "ocireg_parse.h"
#include "ocireg_manifest.h"
#include "ocireg_listing.h"

APLOG_USE_MODULE(ocireg);

/* A manifest that is not there is MANIFEST_UNKNOWN, whether or not its
 * repository exists (the spec and the conformance suite accept it): a
 * miss costs no listing. */
static int manifest_unknown(ocireg_req *q)
{
    return ocireg_respond_error(q->r, HTTP_NOT_FOUND,
                                OCIREG_E_MANIFEST_UNKNOWN, NULL,
                                q->route.arg);
}

/* Tag or digest -> the manifest linked under that digest in the
 * repository: its media type, length and (with want_body) bytes. The
 * link holds what a read needs: a digest costs one store request, a tag
 * two. */
static int resolve(ocireg_req *q, int is_tag, int want_body,
                   const char **digest, const char **media_type,
                   char **data, apr_size_t *len)
{
    ocireg_store *st = q->store;
    apr_status_t rv = APR_SUCCESS;
    *digest = q->route.arg;
    if (is_tag)
        rv = st->ops->tag_get(st, q->r->pool, q->route.name, q->route.arg,
                              digest);
    if (rv == APR_SUCCESS)
        rv = st->ops->manifest_read_linked(st, q->r->pool, q->route.name,
                                           *digest, OCIREG_MANIFEST_MAX,
                                           want_body, data, len, media_type);
    if (rv == APR_ENOENT)
        return manifest_unknown(q);
    if (rv != APR_SUCCESS)
        return ocireg_store_failure(q->r, rv, "manifest lookup");
    return DECLINED;
}

static int get_manifest(ocireg_req *q, int is_tag)
{
    request_rec *r = q->r;
    const char *digest, *media_type;
    char *data;
    apr_size_t len;
    const struct ocireg_mirror_rule *rule =
        ocireg_mirror_rule_for(r, q->route.name);
    int status = rule ? ocireg_mirror_manifest(q, rule, is_tag, &digest,
                                               &media_type, &data, &len)
                      : resolve(q, is_tag, !r->header_only, &digest,
                                &media_type, &data, &len);

    if (status != DECLINED)
        return status;
    apr_table_setn(r->headers_out, "Docker-Content-Digest", digest);
    apr_table_setn(r->headers_out, "ETag",
                   apr_pstrcat(r->pool, "\"", digest, "\"", NULL));
    ap_set_content_type(r, media_type);
    ap_set_content_length(r, (apr_off_t)len);
    if (ap_meets_conditions(r) == HTTP_NOT_MODIFIED) {
        r->status = HTTP_NOT_MODIFIED;
        return OK;
    }
    return ocireg_respond(r, HTTP_OK, media_type, data, len);
}

/* Every blob and child manifest must already be in this repository. The
 * store checks them all at once: the wait does not grow with the number
 * of layers. */
static int check_references(ocireg_req *q, const ocireg_manifest_info *info)
{
    request_rec *r = q->r;
    ocireg_store *st = q->store;
    apr_array_header_t *missing =
        apr_array_make(r->pool, 4, sizeof(ocireg_error));
    ocireg_link_check *checks;
    int i, n = info->refs->nelts;
    apr_status_t rv;

    if (n == 0)
        return DECLINED;
    checks = apr_pcalloc(r->pool, sizeof(*checks) * (apr_size_t)n);
    for (i = 0; i < n; i++) {
        const ocireg_manifest_ref *ref =
            &APR_ARRAY_IDX(info->refs, i, ocireg_manifest_ref);
        checks[i].digest = ref->digest;
        checks[i].manifest = ref->must_exist_as_manifest;
    }
    rv = st->ops->links_exist(st, r->pool, q->route.name, checks, n);
    if (rv != APR_SUCCESS)
        return ocireg_store_failure(r, rv, "reference lookup");
    for (i = 0; i < n; i++) {
        if (checks[i].status == APR_ENOENT) {
            ocireg_error *e = apr_array_push(missing);
            e->code = OCIREG_E_MANIFEST_BLOB_UNKNOWN;
            e->message = checks[i].manifest
                             ? "manifest unknown to this repository"
                             : "blob unknown to this repository";
            e->detail_json = apr_psprintf(r->pool, "{\"digest\":\"%s\"}",
                                          checks[i].digest);
        }
        else if (checks[i].status != APR_SUCCESS) {
            return ocireg_store_failure(r, checks[i].status,
                                        "reference lookup");
        }
    }
    if (missing->nelts)
        return ocireg_respond_error_body(
            r, HTTP_BAD_REQUEST,
            ocireg_error_body(r->pool, (ocireg_error *)missing->elts,
                              missing->nelts));
    return DECLINED;
}

static int put_manifest(ocireg_req *q, int is_tag)
{
    request_rec *r = q->r;
    ocireg_store *st = q->store;
    const char *cl = apr_table_get(r->headers_in, "Content-Length");
    const char *digest, *msg = NULL;
    ocireg_manifest_info info;
    ocireg_error_code code;
    apr_off_t length;
    apr_size_t len;
    apr_status_t rv;
    char *body;
    int status;

    if (cl && ocireg_off_parse(cl, &length) && length > OCIREG_MANIFEST_MAX)
        return ocireg_respond_error(r, HTTP_REQUEST_ENTITY_TOO_LARGE,
                            OCIREG_E_SIZE_INVALID,
                            "manifests are limited to 4 MiB", NULL);
    rv = ocireg_body_read_small(r, OCIREG_MANIFEST_MAX, &body, &len, &status);
    if (rv != APR_SUCCESS) {
        r->connection->keepalive = AP_CONN_CLOSE;
        if (status == HTTP_REQUEST_ENTITY_TOO_LARGE)
            return ocireg_respond_error(r, status, OCIREG_E_SIZE_INVALID,
                                "manifests are limited to 4 MiB", NULL);
        return ocireg_respond_error(r, status, OCIREG_E_MANIFEST_INVALID,
                            "the manifest could not be read", NULL);
    }
    digest = ocireg_sha256_digest(r->pool, body, len);
    if (!is_tag && strcmp(digest, q->route.arg) != 0)
        return ocireg_respond_error(r, HTTP_BAD_REQUEST, OCIREG_E_DIGEST_INVALID,
                            "the manifest does not match the digest",
                            apr_psprintf(r->pool, "expected %s, got %s",
                                         q->route.arg, digest));
    code = ocireg_manifest_analyze(r->pool, body, len,
                                   apr_table_get(r->headers_in,
                                                 "Content-Type"),
                                   digest, &info, &msg);
    if (code != OCIREG_E_NONE)
        return ocireg_respond_error(r, HTTP_BAD_REQUEST, code, msg, NULL);
    if ((status = check_references(q, &info)) != DECLINED)
        return status;

    /* Content and link first, then the referrer entry, the tag last: a
     * crash in between leaves nothing half-visible. */
    rv = st->ops->manifest_put(st, r->pool, q->route.name, digest,
                               info.media_type, body, len);
    if (rv == APR_SUCCESS && info.subject)
        rv = st->ops->referrer_add(st, r->pool, q->route.name, info.subject,
                                   digest, info.referrer_descriptor);
    if (rv == APR_SUCCESS && is_tag)
        rv = st->ops->tag_set(st, r->pool, q->route.name, q->route.arg,
                              digest);
    if (rv != APR_SUCCESS)
        return ocireg_store_failure(r, rv, "storing the manifest");
    if (is_tag && ocireg_mirror_rule_for(r, q->route.name))
        ocireg_mirror_tag_pushed(q, q->route.arg);

    apr_table_setn(r->headers_out, "Location",
                   apr_pstrcat(r->pool, "/v2/", q->route.name, "/manifests/",
                               digest, NULL));
    apr_table_setn(r->headers_out, "Docker-Content-Digest", digest);
    if (info.subject)
        apr_table_setn(r->headers_out, "OCI-Subject", info.subject);
    return ocireg_respond(r, HTTP_CREATED, NULL, NULL, 0);
}

/* Removes the tags naming `digest`, a page of tags at a time in a pool
 * of its own: memory is one page whatever the repository holds. */
static void delete_tags_of(ocireg_req *q, const char *digest)
{
    ocireg_store *st = q->store;
    char after[OCIREG_TAG_MAX + 1];
    apr_pool_t *page;
    int more = 1;

    after[0] = '\0';
    if (apr_pool_create(&page, q->r->pool) != APR_SUCCESS)
        return;
    while (more) {
        apr_array_header_t *tags;
        int i;
        apr_pool_clear(page);
        if (st->ops->tag_list(st, page, q->route.name,
                              after[0] ? after : NULL, OCIREG_PAGE_MAX, &tags,
                              &more)
            != APR_SUCCESS)
            break;
        for (i = 0; i < tags->nelts; i++) {
            const char *tag = APR_ARRAY_IDX(tags, i, const char *), *d;
            if (st->ops->tag_get(st, page, q->route.name, tag, &d)
                    == APR_SUCCESS
                && strcmp(d, digest) == 0)
                st->ops->tag_delete(st, page, q->route.name, tag);
        }
        if (tags->nelts == 0)
            break;
        apr_cpystrn(after, APR_ARRAY_IDX(tags, tags->nelts - 1, const char *),
                    sizeof(after));
    }
    apr_pool_destroy(page);
}

static int delete_manifest(ocireg_req *q, int is_tag)
{
    request_rec *r = q->r;
    ocireg_store *st = q->store;
    const char *digest, *media_type, *msg;
    ocireg_manifest_info info;
    apr_size_t len;
    apr_status_t rv;
    char *body;
    int status;

    if (!q->deletes)
        return ocireg_respond_deletes_off(q);
    if ((status = resolve(q, is_tag, !is_tag, &digest, &media_type, &body,
                          &len))
        != DECLINED)
        return status;
    if (is_tag) {
        rv = st->ops->tag_delete(st, r->pool, q->route.name, q->route.arg);
        if (rv != APR_SUCCESS && rv != APR_ENOENT)
            return ocireg_store_failure(r, rv, "tag delete");
        return ocireg_respond(r, HTTP_ACCEPTED, NULL, NULL, 0);
    }

    /* Tags pointing at it go with it, then its referrer entry. */
    delete_tags_of(q, digest);
    if (ocireg_manifest_analyze(r->pool, body, len, media_type, digest,
                                &info, &msg) == OCIREG_E_NONE
        && info.subject)
        st->ops->referrer_remove(st, r->pool, q->route.name, info.subject,
                                 digest);
    rv = st->ops->manifest_unlink(st, r->pool, q->route.name, digest);
    if (rv == APR_ENOENT)
        return manifest_unknown(q);
    if (rv != APR_SUCCESS)
        return ocireg_store_failure(r, rv, "manifest delete");
    return ocireg_respond(r, HTTP_ACCEPTED, NULL, NULL, 0);
}

int ocireg_handle_manifest(ocireg_req *q)
{
    const char *ref = q->route.arg;
    int kind = ocireg_reference_kind(ref);

    if (kind == 0) {
        /* Nothing can be stored under a reference that is not a valid tag
         * or sha256 digest, so to a reader it is simply not there (as the
         * conformance suite and clients expect); only a PUT, which would
         * store something, is told what is wrong with it. */
        if (q->r->method_number != M_PUT) {
            if (q->r->method_number == M_DELETE && !q->deletes)
                return ocireg_respond_deletes_off(q);
            return ocireg_respond_error(q->r, HTTP_NOT_FOUND,
                                        OCIREG_E_MANIFEST_UNKNOWN, NULL, ref);
        }
        if (!strchr(ref, ':'))
            return ocireg_respond_error(q->r, HTTP_BAD_REQUEST,
                                        OCIREG_E_TAG_INVALID, "invalid tag",
                                        ref);
        if (ocireg_digest_parse(ref) == OCIREG_DIGEST_BAD)
            return ocireg_respond_error(q->r, HTTP_BAD_REQUEST,
                                        OCIREG_E_DIGEST_INVALID, NULL, ref);
        /* Well-formed, but we address content by sha256 only. */
        return ocireg_respond_error(q->r, HTTP_BAD_REQUEST,
                                    OCIREG_E_DIGEST_INVALID,
                                    "only sha256 digests are supported", ref);
    }
    switch (q->r->method_number) {
    case M_PUT:
        return put_manifest(q, kind == 1);
    case M_DELETE:
        return delete_manifest(q, kind == 1);
    default:
        return get_manifest(q, kind == 1);
    }
}
