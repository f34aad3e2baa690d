/* OCI error codes and their JSON bodies. */
#ifndef OCIREG_ERROR_H
#define OCIREG_ERROR_H

#include <apr_pools.h>
#include <apr_errno.h>

typedef enum {
    OCIREG_E_NONE = 0,
    OCIREG_E_BLOB_UNKNOWN,
    OCIREG_E_BLOB_UPLOAD_INVALID,
    OCIREG_E_BLOB_UPLOAD_UNKNOWN,
    OCIREG_E_DIGEST_INVALID,
    OCIREG_E_MANIFEST_BLOB_UNKNOWN,
    OCIREG_E_MANIFEST_INVALID,
    OCIREG_E_MANIFEST_UNKNOWN,
    OCIREG_E_NAME_INVALID,
    OCIREG_E_NAME_UNKNOWN,
    OCIREG_E_SIZE_INVALID,
    OCIREG_E_UNAUTHORIZED,
    OCIREG_E_DENIED,
    OCIREG_E_UNSUPPORTED,
    OCIREG_E_TOOMANYREQUESTS,
    /* Legacy Docker code the spec lets clients meet: a malformed tag. */
    OCIREG_E_TAG_INVALID,
    /* 5xx bodies, which the spec leaves free. */
    OCIREG_E_UNAVAILABLE,
    OCIREG_E_INTERNAL,
    OCIREG_E__COUNT
} ocireg_error_code;

/* "BLOB_UNKNOWN", ... ; "UNKNOWN" for out-of-range values. */
const char *ocireg_error_code_name(ocireg_error_code code);

/* The spec's default human message for a code. */
const char *ocireg_error_default_message(ocireg_error_code code);

/* One error entry; detail is a JSON text or NULL. */
typedef struct {
    ocireg_error_code code;
    const char *message;
    const char *detail_json;
} ocireg_error;

/* {"errors":[{"code":..,"message":..,"detail":..}, ...]} with a trailing
 * newline. message NULL means the default message. */
const char *ocireg_error_body(apr_pool_t *p, const ocireg_error *errs,
                              int nerrs);

/* Convenience for a single error whose detail is a JSON string value. */
const char *ocireg_error_body1(apr_pool_t *p, ocireg_error_code code,
                               const char *message, const char *detail);

/* What an error httpd made itself interrupted: nothing of the body, or
 * the reading of an upload's or a manifest's body. */
typedef enum {
    OCIREG_BODY_NONE = 0,
    OCIREG_BODY_BLOB,
    OCIREG_BODY_MANIFEST
} ocireg_body_kind;

/* The code a bare HTTP error status produced outside the handler (auth,
 * LimitRequestBody, core URL checks, a malformed chunked body) is
 * reported with. */
ocireg_error_code ocireg_error_for_status(int status, ocireg_body_kind body);

/* What a status means, for a log line: the module's own codes (from
 * APR_OS_START_USERERR up: OCIREG_S3_*, OCIREG_STORE_*, OCIREG_UPLOADS_*,
 * OCIREG_SESSION_*) by their meaning, which APR does not know, and any
 * other by apr_strerror. Returns buf or a static string. */
const char *ocireg_status_text(apr_status_t rv, char *buf,
                               apr_size_t bufsize);

#endif
