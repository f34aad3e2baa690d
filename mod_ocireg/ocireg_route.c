#include <string.h>
#include <apr_strings.h>
#include "ocireg_route.h"
#include "ocireg_parse.h"

/* Splits the path after "/v2/" at the last `n` slashes. */
static int split_tail(const char *rest, int n, const char **segs)
{
    const char *end = rest + strlen(rest);
    const char *c = end;
    int i;
    for (i = n; i > 0; i--) {
        while (c > rest && c[-1] != '/')
            c--;
        if (c == rest)
            return 0;
        segs[i] = c;
        c--; /* onto the '/' */
    }
    segs[0] = c; /* end of the name */
    return 1;
}

static int seg_is(const char *seg, const char *word)
{
    apr_size_t n = strlen(word);
    return strncmp(seg, word, n) == 0 && (seg[n] == '/' || seg[n] == '\0');
}

static void with_name(apr_pool_t *p, const char *rest, const char *name_end,
                      ocireg_route_kind kind, const char *arg,
                      ocireg_route *out)
{
    const char *name = apr_pstrmemdup(p, rest, (apr_size_t)(name_end - rest));
    if (!ocireg_name_valid(name)) {
        out->error = OCIREG_E_NAME_INVALID;
        return;
    }
    out->kind = kind;
    out->name = name;
    out->arg = arg;
}

void ocireg_route_parse(apr_pool_t *p, const char *path, ocireg_route *out)
{
    const char *rest, *s[4];

    memset(out, 0, sizeof(*out));
    if (strncmp(path, "/v2", 3) != 0)
        return;
    if (path[3] == '\0' || strcmp(path + 3, "/") == 0) {
        out->kind = OCIREG_R_BASE;
        return;
    }
    if (path[3] != '/')
        return;
    rest = path + 4;
    if (strcmp(rest, "_catalog") == 0) {
        out->kind = OCIREG_R_CATALOG;
        return;
    }
    /* <name>/blobs/uploads/<id> and <name>/blobs/uploads/ */
    if (split_tail(rest, 3, s) && seg_is(s[1], "blobs")
        && seg_is(s[2], "uploads")) {
        if (*s[3])
            with_name(p, rest, s[0], OCIREG_R_UPLOAD, s[3], out);
        else
            with_name(p, rest, s[0], OCIREG_R_UPLOADS, NULL, out);
        return;
    }
    if (!split_tail(rest, 2, s))
        return;
    if (seg_is(s[1], "blobs") && strcmp(s[2], "uploads") == 0) {
        with_name(p, rest, s[0], OCIREG_R_UPLOADS, NULL, out);
        return;
    }
    if (seg_is(s[1], "tags") && strcmp(s[2], "list") == 0) {
        with_name(p, rest, s[0], OCIREG_R_TAGS, NULL, out);
        return;
    }
    if (!*s[2])
        return;
    if (seg_is(s[1], "blobs"))
        with_name(p, rest, s[0], OCIREG_R_BLOB, s[2], out);
    else if (seg_is(s[1], "manifests"))
        with_name(p, rest, s[0], OCIREG_R_MANIFEST, s[2], out);
    else if (seg_is(s[1], "referrers"))
        with_name(p, rest, s[0], OCIREG_R_REFERRERS, s[2], out);
}

const char *ocireg_route_allow(ocireg_route_kind kind)
{
    switch (kind) {
    case OCIREG_R_BASE:
    case OCIREG_R_CATALOG:
    case OCIREG_R_TAGS:
    case OCIREG_R_REFERRERS:
        return "GET, HEAD";
    case OCIREG_R_BLOB:
        return "GET, HEAD, DELETE";
    case OCIREG_R_UPLOADS:
        return "POST";
    case OCIREG_R_UPLOAD:
        return "GET, PATCH, PUT, DELETE";
    case OCIREG_R_MANIFEST:
        return "GET, HEAD, PUT, DELETE";
    default:
        return "";
    }
}
