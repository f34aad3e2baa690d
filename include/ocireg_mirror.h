/* Pull-through mirror configuration: which local repository names mirror
 * which upstream registries, and under what name each upstream knows them.
 * Pure (APR only): the words of an OCIRegMirror line, credentials files,
 * and the name mapping. Nothing here talks to an upstream. */
#ifndef OCIREG_MIRROR_H
#define OCIREG_MIRROR_H

#include <apr_pools.h>
#include <apr_tables.h>
#include <apr_time.h>

/* How long a tag fetched by tag is served before upstream is asked again.
 * Content by digest never changes and is never asked again. */
#define OCIREG_MIRROR_DEFAULT_TAG_TTL 300
#define OCIREG_MIRROR_MAX_TAG_TTL (365 * 86400)
/* Where Docker Hub's registry API is: `docker.io` is only its name. */
#define OCIREG_MIRROR_DOCKER_HUB "https://registry-1.docker.io"

typedef struct {
    /* "https://host[:port]" (lowercase scheme and host, no path): the
     * registry whose /v2/ is asked. */
    const char *base_url;
    /* "host[:port]": for messages and for telling upstreams apart. */
    const char *host;
    /* "" or "org/" from the URL's path: prepended to every name asked
     * there (https://ghcr.io/org mirrors ghcr.io/org/<name>). */
    const char *name_prefix;
    int docker_hub;     /* a one-component name gets "library/" there */
    int plain_http;     /* http://: needs the rule's `insecure` */
} ocireg_mirror_upstream;

typedef struct {
    /* NULL: anonymous. Never logged, never in an answer. */
    const char *username;
    const char *password;
    /* "file:<path>" or "env:USER_VAR,PASS_VAR" as configured (NULL when
     * anonymous): what messages may name instead of the values. */
    const char *source;
} ocireg_mirror_credentials;

typedef struct ocireg_mirror_rule {
    /* As configured: shell wildcards as in `Require oci-*` (apr_fnmatch,
     * `*` matching '/' too). */
    const char *pattern;
    /* The prefix form `<prefix>/` + `*` (no other wildcard): the length of
     * "<prefix>/", removed from the local name upstream. 0 otherwise: the
     * name goes upstream as it is. */
    apr_size_t strip;
    apr_array_header_t *upstreams;      /* ocireg_mirror_upstream, in order */
    ocireg_mirror_credentials credentials; /* for every upstream of the rule */
    apr_interval_time_t tag_ttl;
    int local;          /* names are local too: pushes and deletes allowed */
    int insecure;       /* http:// upstreams allowed */
} ocireg_mirror_rule;

/* One OCIRegMirror line's words:
 *   <pattern> <upstream> [<upstream>...] [credentials=file:<path>|
 *   credentials=env:USER_VAR,PASS_VAR] [tag-ttl=<seconds>] [local]
 *   [insecure]
 * Credentials are read now (a file as `username = ...` and
 * `password = ...` lines). Returns NULL and *out, or a message that names
 * no credential value (the caller prefixes the directive's name). */
const char *ocireg_mirror_rule_parse(apr_pool_t *p, int argc,
                                     const char *const *argv,
                                     ocireg_mirror_rule **out);

/* An upstream: "https://host[:port][/org...]", "http://..." or a bare
 * "host[:port][/org...]" (https). docker.io, index.docker.io and
 * registry-1.docker.io are Docker Hub, at OCIREG_MIRROR_DOCKER_HUB.
 * No user info, query or fragment. NULL or the message. */
const char *ocireg_mirror_upstream_parse(apr_pool_t *p, const char *text,
                                         ocireg_mirror_upstream *out);

/* "file:<path>" or "env:USER_VAR,PASS_VAR" into *out. NULL or the
 * message (naming the file or the variables, never a value). */
const char *ocireg_mirror_credentials_load(apr_pool_t *p, const char *spec,
                                           ocireg_mirror_credentials *out);

/* A credentials file's text: `username = ...` and `password = ...`
 * lines, '#' comments and blank lines; both keys needed, once each.
 * NULL or the message (which quotes nothing of the text). */
const char *ocireg_mirror_credentials_parse(apr_pool_t *p, const char *text,
                                            apr_size_t len,
                                            ocireg_mirror_credentials *out);

/* The first rule (ocireg_mirror_rule *, in configuration order) whose
 * pattern matches name, or NULL: the name is local only. */
const ocireg_mirror_rule *ocireg_mirror_match(const apr_array_header_t *rules,
                                              const char *name);

/* The name an upstream of rule knows the local name by: without the prefix
 * form's prefix, after the upstream's name prefix, with "library/" for a
 * one-component Docker Hub name. NULL when that is no valid repository
 * name (too long). */
const char *ocireg_mirror_upstream_name(apr_pool_t *p,
                                        const ocireg_mirror_rule *rule,
                                        const ocireg_mirror_upstream *up,
                                        const char *name);

/* What the store keeps about a tag fetched from upstream (its mark,
 * ocireg_store.h mirror_mark_*): the digest the tag named, when it was
 * fetched (or last confirmed by a 304), and the upstream's ETag for the
 * next conditional re-check (NULL: none usable). As text:
 * "<digest> <seconds since the epoch> <etag or ->". */
typedef struct {
    const char *digest;
    apr_time_t fetched;
    const char *etag;
} ocireg_mirror_mark;

/* The text of a mark; an ETag with spaces or control characters, or over
 * 200 bytes, is left out (the re-check then names the digest). */
const char *ocireg_mirror_mark_format(apr_pool_t *p,
                                      const ocireg_mirror_mark *m);
/* 1 and *out for a well-formed mark (a sha256 digest, a time), else 0.
 * The text comes from the store: anything is refused but a mark. */
int ocireg_mirror_mark_parse(apr_pool_t *p, const char *text,
                             ocireg_mirror_mark *out);
/* Whether a tag fetched at `fetched` is served without asking upstream
 * at `now` (a fetch time in the future, a clock that went back, counts as
 * stale). */
int ocireg_mirror_tag_fresh(const ocireg_mirror_rule *rule,
                            apr_time_t fetched, apr_time_t now);
/* The If-None-Match of a re-check: the mark's ETag, else the quoted
 * digest (distribution's and this module's ETag of a manifest). */
const char *ocireg_mirror_if_none_match(apr_pool_t *p,
                                        const ocireg_mirror_mark *m);

/* The upload id (UUID form) a host's one fetch of a blob goes under: made
 * of the digest, so every process of the host finds it. NULL for anything
 * but a sha256 digest. */
const char *ocireg_mirror_fill_id(apr_pool_t *p, const char *digest);

#endif
