/* Maps a request path under /v2 to an OCI endpoint. Names may contain the
 * words "blobs", "manifests" and so on as components, so the route is read
 * from the end of the path. */
#ifndef OCIREG_ROUTE_H
#define OCIREG_ROUTE_H

#include <apr_pools.h>
#include "ocireg_error.h"

typedef enum {
    OCIREG_R_NONE = 0,        /* not an API path */
    OCIREG_R_BASE,            /* /v2/ */
    OCIREG_R_CATALOG,         /* /v2/_catalog */
    OCIREG_R_BLOB,            /* /v2/<name>/blobs/<digest> */
    OCIREG_R_UPLOADS,         /* /v2/<name>/blobs/uploads/ */
    OCIREG_R_UPLOAD,          /* /v2/<name>/blobs/uploads/<id> */
    OCIREG_R_MANIFEST,        /* /v2/<name>/manifests/<reference> */
    OCIREG_R_TAGS,            /* /v2/<name>/tags/list */
    OCIREG_R_REFERRERS        /* /v2/<name>/referrers/<digest> */
} ocireg_route_kind;

typedef struct {
    ocireg_route_kind kind;
    const char *name;        /* repository, validated */
    const char *arg;         /* digest, reference or upload id, unvalidated */
    /* When kind is NONE but the shape matched and a part was invalid,
     * the error to answer with (NAME_INVALID and friends). */
    ocireg_error_code error;
} ocireg_route;

/* path: the decoded request path, starting with "/v2". */
void ocireg_route_parse(apr_pool_t *p, const char *path, ocireg_route *out);

/* The methods an endpoint answers, for 405's Allow header. */
const char *ocireg_route_allow(ocireg_route_kind kind);

#endif
