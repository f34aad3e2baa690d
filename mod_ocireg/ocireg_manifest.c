#include <string.h>
#include <strings.h>
#include <jansson.h>
#include <apr_strings.h>
#include <apr_lib.h>
#include "ocireg_manifest.h"
#include "ocireg_parse.h"

/* "type/subtype; charset=x" -> "type/subtype" */
static const char *bare_media_type(apr_pool_t *p, const char *ct)
{
    const char *end;
    if (!ct)
        return NULL;
    while (apr_isspace(*ct))
        ct++;
    end = ct;
    while (*end && *end != ';' && !apr_isspace(*end))
        end++;
    if (end == ct)
        return NULL;
    return apr_pstrmemdup(p, ct, (apr_size_t)(end - ct));
}

static int is_index_type(const char *mt)
{
    return strcmp(mt, OCIREG_MT_OCI_INDEX) == 0
           || strcmp(mt, OCIREG_MT_DOCKER_LIST) == 0;
}

static int is_manifest_type(const char *mt)
{
    return strcmp(mt, OCIREG_MT_OCI_MANIFEST) == 0
           || strcmp(mt, OCIREG_MT_DOCKER_MANIFEST) == 0;
}

/* Layers whose bytes are, by design, not pushed to the registry: the
 * media types the image spec and Docker define for them, exactly (a
 * substring match would let any layer type naming "foreign" skip the
 * check that its blob is there). */
static int is_foreign(const char *mt)
{
    static const char *const foreign[] = {
        "application/vnd.oci.image.layer.nondistributable.v1.tar",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
    };
    apr_size_t i;
    for (i = 0; mt && i < sizeof(foreign) / sizeof(foreign[0]); i++)
        if (strcmp(mt, foreign[i]) == 0)
            return 1;
    return 0;
}

static const char *string_field(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

/* Checks a descriptor's shape; returns its digest or NULL with *msg set. */
static const char *descriptor_digest(apr_pool_t *p, json_t *d,
                                     const char *what,
                                     ocireg_error_code *code,
                                     const char **msg)
{
    const char *digest;
    json_t *size;
    if (!json_is_object(d)) {
        *code = OCIREG_E_MANIFEST_INVALID;
        *msg = apr_psprintf(p, "%s is not a descriptor", what);
        return NULL;
    }
    digest = string_field(d, "digest");
    size = json_object_get(d, "size");
    if (!string_field(d, "mediaType") || !json_is_integer(size)
        || json_integer_value(size) < 0) {
        *code = OCIREG_E_MANIFEST_INVALID;
        *msg = apr_psprintf(p, "%s lacks mediaType or size", what);
        return NULL;
    }
    if (!digest || ocireg_digest_parse(digest) == OCIREG_DIGEST_BAD) {
        *code = OCIREG_E_DIGEST_INVALID;
        *msg = apr_psprintf(p, "%s has an invalid digest", what);
        return NULL;
    }
    return digest;
}

static int add_ref(apr_pool_t *p, ocireg_manifest_info *out, json_t *d,
                   const char *what, int as_manifest,
                   ocireg_error_code *code, const char **msg)
{
    ocireg_manifest_ref *ref;
    const char *digest = descriptor_digest(p, d, what, code, msg);
    if (!digest)
        return 0;
    if (!as_manifest && is_foreign(string_field(d, "mediaType")))
        return 1;
    ref = apr_array_push(out->refs);
    ref->digest = apr_pstrdup(p, digest);
    ref->must_exist_as_manifest = as_manifest;
    return 1;
}

static char *dump(apr_pool_t *p, json_t *j)
{
    char *t = json_dumps(j, JSON_COMPACT);
    char *out = apr_pstrdup(p, t ? t : "null");
    free(t);
    return out;
}

/* What jansson spends on each kind of value, measured with jansson 2.14
 * on glibc (rounded up): an empty object costs ~234 bytes for 2 bytes of
 * text, so 4 MiB of "{}," builds ~320 MB. */
#define COST_OBJECT 256
#define COST_ARRAY 160
#define COST_STRING 96 /* plus its length; keys cost the same */
#define COST_SCALAR 48

/* Estimates the memory the parsed tree would take, without building it,
 * and refuses a document whose tree would exceed the budget or nest
 * deeper than any manifest does. Malformed text is counted leniently:
 * jansson stops at the first error, so it never builds more than this
 * counted. */
static int json_shape_acceptable(apr_pool_t *p, const char *s,
                                 apr_size_t len, const char **msg)
{
    apr_size_t i, cost = 0, string_start = 0;
    int depth = 0, in_string = 0, in_scalar = 0;

    for (i = 0; i < len; i++) {
        char c = s[i];
        if (in_string) {
            if (c == '\\')
                i++;
            else if (c == '"') {
                in_string = 0;
                cost += COST_STRING + (i - string_start);
            }
            continue;
        }
        switch (c) {
        case '"':
            in_string = 1;
            in_scalar = 0;
            string_start = i;
            break;
        case '{':
        case '[':
            cost += c == '{' ? COST_OBJECT : COST_ARRAY;
            if (++depth > OCIREG_MANIFEST_MAX_DEPTH) {
                *msg = apr_psprintf(p, "JSON nested deeper than %d levels",
                                    OCIREG_MANIFEST_MAX_DEPTH);
                return 0;
            }
            in_scalar = 0;
            break;
        case '}':
        case ']':
            /* Unbalanced: not JSON, and nothing to build. */
            if (--depth < 0) {
                *msg = "invalid JSON: unbalanced brackets";
                return 0;
            }
            in_scalar = 0;
            break;
        case ',':
        case ':':
        case ' ':
        case '\t':
        case '\n':
        case '\r':
            in_scalar = 0;
            break;
        default:
            if (!in_scalar) {
                cost += COST_SCALAR;
                in_scalar = 1;
            }
            break;
        }
        if (cost > OCIREG_MANIFEST_TREE_BUDGET) {
            *msg = apr_psprintf(p, "JSON has too many values (its parsed "
                                   "form would exceed %d MiB)",
                                OCIREG_MANIFEST_TREE_BUDGET >> 20);
            return 0;
        }
    }
    /* An unterminated string still costs its copy. */
    return 1;
}

ocireg_error_code ocireg_manifest_analyze(apr_pool_t *p, const char *body,
                                          apr_size_t len,
                                          const char *content_type,
                                          const char *digest,
                                          ocireg_manifest_info *out,
                                          const char **msg)
{
    ocireg_error_code code = OCIREG_E_NONE;
    json_error_t jerr;
    json_t *root, *list, *subject, *config = NULL, *v;
    const char *field_mt, *ct_mt, *mt;
    size_t i;

    memset(out, 0, sizeof(*out));
    out->refs = apr_array_make(p, 8, sizeof(ocireg_manifest_ref));
    if (!json_shape_acceptable(p, body, len, msg))
        return OCIREG_E_MANIFEST_INVALID;
    root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root || !json_is_object(root)) {
        *msg = root ? "manifest is not a JSON object"
                    : apr_psprintf(p, "invalid JSON: %s", jerr.text);
        code = OCIREG_E_MANIFEST_INVALID;
        goto leave;
    }
    v = json_object_get(root, "schemaVersion");
    if (!json_is_integer(v) || json_integer_value(v) != 2) {
        *msg = "schemaVersion must be 2";
        code = OCIREG_E_MANIFEST_INVALID;
        goto leave;
    }
    field_mt = string_field(root, "mediaType");
    ct_mt = bare_media_type(p, content_type);
    if (field_mt && ct_mt && strcasecmp(field_mt, ct_mt) != 0) {
        *msg = "mediaType does not match Content-Type";
        code = OCIREG_E_MANIFEST_INVALID;
        goto leave;
    }
    mt = field_mt ? field_mt : ct_mt;
    if (!mt || strcmp(mt, "application/json") == 0
        || strcmp(mt, "application/octet-stream") == 0)
        mt = json_object_get(root, "manifests") ? OCIREG_MT_OCI_INDEX
                                                : OCIREG_MT_OCI_MANIFEST;
    if (!is_index_type(mt) && !is_manifest_type(mt)) {
        *msg = apr_psprintf(p, "unsupported manifest media type %s", mt);
        code = OCIREG_E_MANIFEST_INVALID;
        goto leave;
    }
    out->media_type = apr_pstrdup(p, mt);
    out->is_index = is_index_type(mt);

    if (out->is_index) {
        list = json_object_get(root, "manifests");
        if (!json_is_array(list)) {
            *msg = "index lacks a manifests array";
            code = OCIREG_E_MANIFEST_INVALID;
            goto leave;
        }
        for (i = 0; i < json_array_size(list); i++)
            if (!add_ref(p, out, json_array_get(list, i), "manifests[]", 1,
                         &code, msg))
                goto leave;
    }
    else {
        config = json_object_get(root, "config");
        if (!add_ref(p, out, config, "config", 0, &code, msg))
            goto leave;
        list = json_object_get(root, "layers");
        if (list && !json_is_array(list)) {
            *msg = "layers is not an array";
            code = OCIREG_E_MANIFEST_INVALID;
            goto leave;
        }
        for (i = 0; list && i < json_array_size(list); i++)
            if (!add_ref(p, out, json_array_get(list, i), "layers[]", 0,
                         &code, msg))
                goto leave;
    }

    subject = json_object_get(root, "subject");
    if (subject && !json_is_null(subject)) {
        json_t *desc, *ann;
        const char *at = string_field(root, "artifactType");
        const char *sd = descriptor_digest(p, subject, "subject", &code, msg);
        if (!sd)
            goto leave;
        out->subject = apr_pstrdup(p, sd);
        if ((!at || !*at) && config)
            at = string_field(config, "mediaType");
        desc = json_object();
        json_object_set_new(desc, "mediaType", json_string(mt));
        json_object_set_new(desc, "size", json_integer((json_int_t)len));
        json_object_set_new(desc, "digest", json_string(digest));
        if (at && *at) {
            out->artifact_type = apr_pstrdup(p, at);
            json_object_set_new(desc, "artifactType", json_string(at));
        }
        ann = json_object_get(root, "annotations");
        if (json_is_object(ann))
            json_object_set(desc, "annotations", ann);
        out->referrer_descriptor = dump(p, desc);
        json_decref(desc);
        /* The stores read a descriptor back with this limit: one larger
         * would be stored and never listed. */
        if (strlen(out->referrer_descriptor)
            >= OCIREG_REFERRER_DESCRIPTOR_MAX) {
            *msg = apr_psprintf(p, "annotations too large for the referrers "
                                   "API (its descriptor exceeds %d KiB)",
                                OCIREG_REFERRER_DESCRIPTOR_MAX >> 10);
            code = OCIREG_E_MANIFEST_INVALID;
            goto leave;
        }
    }

leave:
    if (root)
        json_decref(root);
    return code;
}

const char *ocireg_descriptor_string(apr_pool_t *p, const char *descriptor,
                                     const char *key)
{
    json_t *d = json_loads(descriptor, 0, NULL);
    const char *at = d ? string_field(d, key) : NULL;
    const char *out = at ? apr_pstrdup(p, at) : NULL;
    if (d)
        json_decref(d);
    return out;
}

const char *ocireg_referrers_index(apr_pool_t *p,
                                   const apr_array_header_t *descriptors,
                                   const char *artifact_type)
{
    json_t *root = json_object(), *list = json_array();
    const char *out;
    int i;
    for (i = 0; i < descriptors->nelts; i++) {
        const char *text = APR_ARRAY_IDX(descriptors, i, const char *);
        json_t *d = json_loads(text, 0, NULL);
        if (!d)
            continue;
        if (artifact_type) {
            const char *at = string_field(d, "artifactType");
            if (!at || strcmp(at, artifact_type) != 0) {
                json_decref(d);
                continue;
            }
        }
        json_array_append_new(list, d);
    }
    json_object_set_new(root, "schemaVersion", json_integer(2));
    json_object_set_new(root, "mediaType", json_string(OCIREG_MT_OCI_INDEX));
    json_object_set_new(root, "manifests", list);
    out = dump(p, root);
    json_decref(root);
    return out;
}
