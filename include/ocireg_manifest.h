/* Understanding a pushed manifest: its media type, what it references and
 * what it says about itself for the referrers API. */
#ifndef OCIREG_MANIFEST_H
#define OCIREG_MANIFEST_H

#include <apr_pools.h>
#include <apr_tables.h>
#include "ocireg_error.h"

#define OCIREG_MANIFEST_MAX (4 * 1024 * 1024)
/* A manifest is refused (MANIFEST_INVALID) before it is parsed when its
 * parsed form would take more than this (estimated from its text: about
 * 17,000 minimal layer descriptors), or when it nests deeper than
 * OCIREG_MANIFEST_MAX_DEPTH. Real manifests nest 4 or 5 levels. */
#define OCIREG_MANIFEST_TREE_BUDGET (16 * 1024 * 1024)
#define OCIREG_MANIFEST_MAX_DEPTH 32
/* A manifest with a subject whose referrer descriptor (mostly its
 * annotations) exceeds this is refused: the referrers API could not list
 * it. */
#define OCIREG_REFERRER_DESCRIPTOR_MAX (1024 * 1024)

#define OCIREG_MT_OCI_MANIFEST "application/vnd.oci.image.manifest.v1+json"
#define OCIREG_MT_OCI_INDEX "application/vnd.oci.image.index.v1+json"
#define OCIREG_MT_DOCKER_MANIFEST \
    "application/vnd.docker.distribution.manifest.v2+json"
#define OCIREG_MT_DOCKER_LIST \
    "application/vnd.docker.distribution.manifest.list.v2+json"

typedef struct {
    const char *digest;
    int must_exist_as_manifest;   /* index children */
} ocireg_manifest_ref;

typedef struct {
    const char *media_type;        /* effective, never NULL on success */
    int is_index;
    /* ocireg_manifest_ref, in document order: config, layers, manifests.
     * Descriptors of foreign or non-distributable layers are left out:
     * their bytes live elsewhere by design. */
    apr_array_header_t *refs;
    const char *subject;           /* digest or NULL */
    /* Referrer descriptor JSON (mediaType, size, digest, artifactType,
     * annotations) for the referrers index, NULL without a subject. */
    const char *referrer_descriptor;
    const char *artifact_type;     /* as used in the descriptor, or NULL */
} ocireg_manifest_info;

/* Parses and checks a manifest. content_type is the request's Content-Type
 * (parameters ignored) or NULL; digest is the manifest's own digest.
 * On failure returns the error code and sets *msg. */
ocireg_error_code ocireg_manifest_analyze(apr_pool_t *p, const char *body,
                                          apr_size_t len,
                                          const char *content_type,
                                          const char *digest,
                                          ocireg_manifest_info *out,
                                          const char **msg);

/* Builds an image index from referrer descriptor JSON texts (already in
 * the wanted order), keeping only those whose artifactType equals
 * artifact_type when that is non-NULL. */
const char *ocireg_referrers_index(apr_pool_t *p,
                                   const apr_array_header_t *descriptors,
                                   const char *artifact_type);

/* A string field ("digest", "artifactType") of a descriptor JSON, or NULL. */
const char *ocireg_descriptor_string(apr_pool_t *p, const char *descriptor,
                                     const char *key);

#endif
