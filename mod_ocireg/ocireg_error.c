#include <stdlib.h>
#include <string.h>
#include <jansson.h>
#include <apr_strings.h>
#include "ocireg_error.h"
#include "ocireg_upstream.h"
#include "ocireg_s3.h"
#include "ocireg_store.h"
#include "ocireg_uploads.h"

static const struct {
    const char *name;
    const char *message;
} codes[OCIREG_E__COUNT] = {
    [OCIREG_E_NONE] = {"UNKNOWN", "unknown error"},
    [OCIREG_E_BLOB_UNKNOWN] = {"BLOB_UNKNOWN", "blob unknown to registry"},
    [OCIREG_E_BLOB_UPLOAD_INVALID] = {"BLOB_UPLOAD_INVALID",
                                      "blob upload invalid"},
    [OCIREG_E_BLOB_UPLOAD_UNKNOWN] = {"BLOB_UPLOAD_UNKNOWN",
                                      "blob upload unknown to registry"},
    [OCIREG_E_DIGEST_INVALID] = {"DIGEST_INVALID",
                                 "provided digest did not match uploaded "
                                 "content"},
    [OCIREG_E_MANIFEST_BLOB_UNKNOWN] = {"MANIFEST_BLOB_UNKNOWN",
                                        "manifest references a manifest or "
                                        "blob unknown to registry"},
    [OCIREG_E_MANIFEST_INVALID] = {"MANIFEST_INVALID", "manifest invalid"},
    [OCIREG_E_MANIFEST_UNKNOWN] = {"MANIFEST_UNKNOWN",
                                   "manifest unknown to registry"},
    [OCIREG_E_NAME_INVALID] = {"NAME_INVALID", "invalid repository name"},
    [OCIREG_E_NAME_UNKNOWN] = {"NAME_UNKNOWN",
                               "repository name not known to registry"},
    [OCIREG_E_SIZE_INVALID] = {"SIZE_INVALID",
                               "provided length did not match content "
                               "length"},
    [OCIREG_E_UNAUTHORIZED] = {"UNAUTHORIZED", "authentication required"},
    [OCIREG_E_DENIED] = {"DENIED",
                         "requested access to the resource is denied"},
    [OCIREG_E_UNSUPPORTED] = {"UNSUPPORTED", "the operation is unsupported"},
    [OCIREG_E_TOOMANYREQUESTS] = {"TOOMANYREQUESTS", "too many requests"},
    [OCIREG_E_TAG_INVALID] = {"TAG_INVALID", "manifest tag did not match URI"},
    [OCIREG_E_UNAVAILABLE] = {"UNAVAILABLE", "service unavailable"},
    [OCIREG_E_INTERNAL] = {"INTERNAL_ERROR", "internal server error"},
};

const char *ocireg_error_code_name(ocireg_error_code code)
{
    if ((int)code <= 0 || code >= OCIREG_E__COUNT)
        return codes[0].name;
    return codes[code].name;
}

const char *ocireg_error_default_message(ocireg_error_code code)
{
    if ((int)code <= 0 || code >= OCIREG_E__COUNT)
        return codes[0].message;
    return codes[code].message;
}

/* jansson refuses text that is not UTF-8; client-supplied strings in
 * messages may be anything, so keep them readable rather than drop them. */
static json_t *json_text(const char *s)
{
    json_t *j = json_string(s);
    if (!j) {
        char *copy = strdup(s), *c;
        for (c = copy; c && *c; c++)
            if ((unsigned char)*c >= 0x80)
                *c = '?';
        j = json_string(copy ? copy : "");
        free(copy);
    }
    return j;
}

const char *ocireg_error_body(apr_pool_t *p, const ocireg_error *errs,
                              int nerrs)
{
    json_t *root = json_object(), *list = json_array();
    char *text;
    const char *out;
    int i;

    for (i = 0; i < nerrs; i++) {
        json_t *e = json_object();
        json_t *detail = NULL;
        json_object_set_new(e, "code",
                            json_string(ocireg_error_code_name(errs[i].code)));
        json_object_set_new(e, "message",
                            json_text(errs[i].message
                                            ? errs[i].message
                                            : ocireg_error_default_message(
                                                  errs[i].code)));
        if (errs[i].detail_json)
            detail = json_loads(errs[i].detail_json, JSON_DECODE_ANY, NULL);
        json_object_set_new(e, "detail", detail ? detail : json_object());
        json_array_append_new(list, e);
    }
    json_object_set_new(root, "errors", list);
    text = json_dumps(root, JSON_COMPACT);
    out = apr_pstrcat(p, text ? text : "{\"errors\":[]}", "\n", NULL);
    free(text);
    json_decref(root);
    return out;
}

const char *ocireg_error_body1(apr_pool_t *p, ocireg_error_code code,
                               const char *message, const char *detail)
{
    ocireg_error e;
    e.code = code;
    e.message = message;
    e.detail_json = NULL;
    if (detail) {
        json_t *s = json_text(detail);
        char *t = s ? json_dumps(s, JSON_ENCODE_ANY) : NULL;
        if (t) {
            e.detail_json = apr_pstrdup(p, t);
            free(t);
        }
        json_decref(s);
    }
    return ocireg_error_body(p, &e, 1);
}

ocireg_error_code ocireg_error_for_status(int status, ocireg_body_kind body)
{
    switch (status) {
    case 401:
        return OCIREG_E_UNAUTHORIZED;
    case 403:
        return OCIREG_E_DENIED;
    case 404:
        /* httpd's own 404 under /v2: an encoded slash or NUL in the
         * name. */
        return OCIREG_E_NAME_UNKNOWN;
    case 411:
    case 413:
        return OCIREG_E_SIZE_INVALID;
    case 429:
        return OCIREG_E_TOOMANYREQUESTS;
    case 400:
    case 408:
        /* While reading a body: a malformed chunk, a timeout. Otherwise
         * the request itself (a bad escape, an oversized header). */
        if (body == OCIREG_BODY_BLOB)
            return OCIREG_E_BLOB_UPLOAD_INVALID;
        if (body == OCIREG_BODY_MANIFEST)
            return OCIREG_E_MANIFEST_INVALID;
        return OCIREG_E_UNSUPPORTED;
    case 503:
    case 504:
        return OCIREG_E_UNAVAILABLE;
    default:
        return status >= 500 ? OCIREG_E_INTERNAL : OCIREG_E_UNSUPPORTED;
    }
}

const char *ocireg_status_text(apr_status_t rv, char *buf, apr_size_t bufsize)
{
    switch (rv) {
    case OCIREG_S3_EUNAVAILABLE:
        return "the S3 endpoint is unavailable (unreachable, timed out or "
               "answering 5xx)";
    case OCIREG_S3_EREFUSED:
        return "the S3 endpoint refused the request (credentials, "
               "signature, bucket or permissions)";
    case OCIREG_STORE_ESTALE:
        return "a newer record of the upload session exists";
    case OCIREG_STORE_ECONFLICT:
        return "the upload's stored data differs from what its session "
               "sent";
    case OCIREG_UPLOADS_ECLIENT:
        return "the client has too many upload sessions open";
    case OCIREG_UPLOADS_EREPO:
        return "the repository has too many upload sessions open";
    case OCIREG_SESSION_EBAD:
        return "the upload session record is malformed";
    case OCIREG_SESSION_EKEY:
        return "the upload session record's HMAC does not match the "
               "record key";
    case OCIREG_UP_EUNAVAILABLE:
        return "the upstream registry is unavailable (unreachable, timed "
               "out or answering 5xx/429)";
    case OCIREG_UP_EREFUSED:
        return "the upstream registry refused the mirror's credentials";
    case OCIREG_UP_ETRUNCATED:
        return "the upstream registry's answer broke off";
    case OCIREG_UP_EINVALID:
        return "the upstream registry's answer is unusable";
    default:
        break;
    }
    if (rv >= APR_OS_START_USERERR && rv < APR_OS_START_USERERR + 1000) {
        apr_snprintf(buf, bufsize, "mod_ocireg status %d",
                     (int)(rv - APR_OS_START_USERERR));
        return buf;
    }
    return apr_strerror(rv, buf, bufsize);
}
