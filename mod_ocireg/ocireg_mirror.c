/* Pull-through mirror configuration and name mapping (ocireg_mirror.h). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <apr_file_io.h>
#include <apr_fnmatch.h>
#include <apr_lib.h>
#include <apr_strings.h>
#include "ocireg_mirror.h"
#include "ocireg_parse.h"

/* A credentials file is two short lines; anything this big is not one. */
#define CREDENTIALS_FILE_MAX (64 * 1024)

static int has_wildcard(const char *s, apr_size_t len)
{
    apr_size_t i;
    for (i = 0; i < len; i++)
        if (s[i] == '*' || s[i] == '?' || s[i] == '[' || s[i] == '\\')
            return 1;
    return 0;
}

/* "hub/" + "*", a plain name before the final "/" + "*": the prefix
 * form. */
static apr_size_t prefix_form(apr_pool_t *p, const char *pattern)
{
    apr_size_t n = strlen(pattern);
    if (n < 3 || strcmp(pattern + n - 2, "/*") != 0
        || has_wildcard(pattern, n - 2))
        return 0;
    if (!ocireg_name_valid(apr_pstrmemdup(p, pattern, n - 2)))
        return 0;
    return n - 1;
}

static int pattern_char_ok(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.'
           || c == '_' || c == '-' || c == '/' || c == '*' || c == '?'
           || c == '[' || c == ']' || c == '!' || c == '^';
}

static const char *check_pattern(apr_pool_t *p, const char *pattern)
{
    const char *c;
    if (!*pattern)
        return "an empty repository pattern";
    for (c = pattern; *c; c++)
        if (!pattern_char_ok(*c))
            return apr_psprintf(p, "repository pattern '%s' holds '%c', "
                                "which no repository name has (names are "
                                "lowercase; wildcards are * ? [...])",
                                pattern, *c);
    return NULL;
}

static int is_docker_hub(const char *host)
{
    return strcmp(host, "docker.io") == 0
           || strcmp(host, "index.docker.io") == 0
           || strcmp(host, "registry-1.docker.io") == 0;
}

static int host_char_ok(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.'
           || c == '-';
}

const char *ocireg_mirror_upstream_parse(apr_pool_t *p, const char *text,
                                         ocireg_mirror_upstream *out)
{
    const char *rest = text, *scheme = "https", *slash, *colon, *c;
    char *host, *path, *h;
    apr_size_t n;

    memset(out, 0, sizeof(*out));
    if (strncasecmp(rest, "https://", 8) == 0) {
        rest += 8;
    }
    else if (strncasecmp(rest, "http://", 7) == 0) {
        rest += 7;
        scheme = "http";
    }
    else if (strstr(rest, "://"))
        return apr_psprintf(p, "upstream '%s': only http:// and https:// "
                            "registries can be mirrored", text);
    if (strpbrk(rest, "?#"))
        return apr_psprintf(p, "upstream '%s': a registry URL has no query "
                            "or fragment", text);
    slash = strchr(rest, '/');
    n = slash ? (apr_size_t)(slash - rest) : strlen(rest);
    if (memchr(rest, '@', n))
        /* Not quoted back: what precedes the '@' may be a password. */
        return "an upstream URL holds user information ('@'): credentials "
               "are never written in the URL; use credentials=file:<path> "
               "or credentials=env:USER_VAR,PASS_VAR";
    host = apr_pstrmemdup(p, rest, n);
    for (h = host; *h; h++)
        *h = apr_tolower(*h);
    colon = strrchr(host, ':');
    if (host[0] == '[') {
        /* An IPv6 literal: [::1] or [::1]:5000 */
        const char *close = strchr(host, ']');
        if (!close || close == host + 1
            || strspn(host + 1, "0123456789abcdef:.")
                   != (apr_size_t)(close - host - 1))
            return apr_psprintf(p, "upstream '%s': bad IPv6 address", text);
        colon = close[1] == ':' ? close + 1 : NULL;
        if (close[1] && !colon)
            return apr_psprintf(p, "upstream '%s': bad host", text);
    }
    else {
        const char *end = colon ? colon : host + strlen(host);
        if (end == host)
            return apr_psprintf(p, "upstream '%s': no host", text);
        for (c = host; c < end; c++)
            if (!host_char_ok(*c))
                return apr_psprintf(p, "upstream '%s': bad host", text);
        if (host[0] == '.' || host[0] == '-' || end[-1] == '.'
            || end[-1] == '-')
            return apr_psprintf(p, "upstream '%s': bad host", text);
    }
    if (colon) {
        char *end;
        long port = strtol(colon + 1, &end, 10);
        if (end == colon + 1 || *end || port < 1 || port > 65535
            || !apr_isdigit(colon[1]))
            return apr_psprintf(p, "upstream '%s': bad port", text);
    }
    path = apr_pstrdup(p, slash ? slash + 1 : "");
    n = strlen(path);
    while (n > 0 && path[n - 1] == '/')
        path[--n] = '\0';
    if (*path && !ocireg_name_valid(path))
        return apr_psprintf(p, "upstream '%s': the path '%s' is no "
                            "repository namespace (lowercase components "
                            "as in repository names)", text, path);
    out->name_prefix = *path ? apr_pstrcat(p, path, "/", NULL) : "";
    if (is_docker_hub(host)) {
        if (strcmp(scheme, "https") != 0)
            return apr_psprintf(p, "upstream '%s': Docker Hub is served "
                                "over https only", text);
        out->docker_hub = 1;
        out->base_url = OCIREG_MIRROR_DOCKER_HUB;
        out->host = &OCIREG_MIRROR_DOCKER_HUB[sizeof("https://") - 1];
        return NULL;
    }
    out->plain_http = strcmp(scheme, "http") == 0;
    out->host = host;
    out->base_url = apr_pstrcat(p, scheme, "://", host, NULL);
    return NULL;
}

static char *trim(char *s)
{
    char *end;
    while (apr_isspace(*s))
        s++;
    for (end = s + strlen(s); end > s && apr_isspace(end[-1]);)
        *--end = '\0';
    return s;
}

const char *ocireg_mirror_credentials_parse(apr_pool_t *p, const char *text,
                                            apr_size_t len,
                                            ocireg_mirror_credentials *out)
{
    char *copy = apr_pstrmemdup(p, text, len), *line, *state = NULL;
    int lineno = 0;
    const char *user = NULL, *pass = NULL;

    if (memchr(text, '\0', len))
        return "holds a NUL byte";
    /* apr_strtok skips empty lines: count them by hand. */
    for (line = copy; line; line = state) {
        char *nl = strchr(line, '\n'), *eq, *key, *value;
        state = nl ? nl + 1 : NULL;
        if (nl)
            *nl = '\0';
        lineno++;
        line = trim(line);
        if (!*line || *line == '#')
            continue;
        eq = strchr(line, '=');
        if (!eq)
            return apr_psprintf(p, "line %d is not 'username = ...' or "
                                "'password = ...'", lineno);
        *eq = '\0';
        key = trim(line);
        value = trim(eq + 1);
        if (strcmp(key, "username") == 0) {
            if (user)
                return apr_psprintf(p, "line %d: a second username",
                                    lineno);
            user = value;
        }
        else if (strcmp(key, "password") == 0) {
            if (pass)
                return apr_psprintf(p, "line %d: a second password",
                                    lineno);
            pass = value;
        }
        else
            /* The key is not quoted: a token pasted alone may hold '='. */
            return apr_psprintf(p, "line %d is not 'username = ...' or "
                                "'password = ...'", lineno);
        if (!*value)
            return apr_psprintf(p, "line %d: an empty %s", lineno, key);
    }
    if (!user || !pass)
        return "must set both username and password";
    out->username = user;
    out->password = pass;
    return NULL;
}

static int env_name_ok(const char *s)
{
    if (!*s || !(apr_isalpha(*s) || *s == '_'))
        return 0;
    for (; *s; s++)
        if (!(apr_isalnum(*s) || *s == '_'))
            return 0;
    return 1;
}

static const char *load_file(apr_pool_t *p, const char *path,
                             ocireg_mirror_credentials *out)
{
    apr_file_t *f;
    apr_finfo_t fi;
    apr_size_t n = 0;
    char *buf = NULL;
    const char *err;
    char why[120];
    apr_status_t rv = apr_file_open(&f, path, APR_FOPEN_READ,
                                    APR_FPROT_OS_DEFAULT, p);
    if (rv == APR_SUCCESS) {
        rv = apr_file_info_get(&fi, APR_FINFO_SIZE, f);
        if (rv == APR_SUCCESS && fi.size > CREDENTIALS_FILE_MAX) {
            apr_file_close(f);
            return apr_psprintf(p, "credentials file %s is larger than %d "
                                "bytes", path, CREDENTIALS_FILE_MAX);
        }
        if (rv == APR_SUCCESS) {
            n = (apr_size_t)fi.size;
            buf = apr_palloc(p, n + 1);
            rv = n ? apr_file_read_full(f, buf, n, &n) : APR_SUCCESS;
        }
        apr_file_close(f);
    }
    if (rv != APR_SUCCESS)
        return apr_psprintf(p, "cannot read credentials file %s: %s", path,
                            apr_strerror(rv, why, sizeof(why)));
    err = ocireg_mirror_credentials_parse(p, buf, n, out);
    if (err)
        return apr_psprintf(p, "credentials file %s: %s", path, err);
    return NULL;
}

const char *ocireg_mirror_credentials_load(apr_pool_t *p, const char *spec,
                                           ocireg_mirror_credentials *out)
{
    memset(out, 0, sizeof(*out));
    if (strncmp(spec, "file:", 5) == 0) {
        const char *err;
        if (!spec[5])
            return "credentials=file: needs a path";
        err = load_file(p, spec + 5, out);
        if (err)
            return err;
    }
    else if (strncmp(spec, "env:", 4) == 0) {
        char *names = apr_pstrdup(p, spec + 4), *comma = strchr(names, ',');
        const char *user, *pass;
        if (!comma)
            return "use credentials=env:USER_VAR,PASS_VAR";
        *comma = '\0';
        if (!env_name_ok(names) || !env_name_ok(comma + 1))
            return apr_psprintf(p, "credentials=env:%s,%s: not two "
                                "environment variable names", names,
                                comma + 1);
        user = getenv(names);
        pass = getenv(comma + 1);
        if (!user || !*user || !pass || !*pass)
            return apr_psprintf(p, "environment variables %s and %s must "
                                "both be set and non-empty", names,
                                comma + 1);
        out->username = apr_pstrdup(p, user);
        out->password = apr_pstrdup(p, pass);
    }
    else
        /* Not quoted back: it may be the secret written inline. */
        return "credentials= takes file:<path> or env:USER_VAR,PASS_VAR; "
               "they are never written in the configuration";
    out->source = apr_pstrdup(p, spec);
    return NULL;
}

static const char *parse_ttl(apr_pool_t *p, const char *v,
                             apr_interval_time_t *out)
{
    apr_off_t n;
    if (!ocireg_off_parse(v, &n) || n > OCIREG_MIRROR_MAX_TAG_TTL)
        return apr_psprintf(p, "tag-ttl=%s is not a number of seconds from "
                            "0 to %d", v, OCIREG_MIRROR_MAX_TAG_TTL);
    *out = apr_time_from_sec(n);
    return NULL;
}

/* A word that can only be meant as a registry: a URL, a dotted host, a
 * host:port or localhost. */
static int looks_like_upstream(const char *w)
{
    return strstr(w, "://") || strchr(w, '.') || strchr(w, ':')
           || strncmp(w, "localhost", 9) == 0 || w[0] == '[';
}

const char *ocireg_mirror_rule_parse(apr_pool_t *p, int argc,
                                     const char *const *argv,
                                     ocireg_mirror_rule **out)
{
    ocireg_mirror_rule *rule;
    const char *err, *creds = NULL;
    int i, ttl_set = 0;

    if (argc < 2)
        return "needs a repository pattern and at least one upstream "
               "registry (e.g. hub/* docker.io)";
    err = check_pattern(p, argv[0]);
    if (err)
        return err;
    rule = apr_pcalloc(p, sizeof(*rule));
    rule->pattern = apr_pstrdup(p, argv[0]);
    rule->strip = prefix_form(p, rule->pattern);
    rule->upstreams = apr_array_make(p, 2, sizeof(ocireg_mirror_upstream));
    rule->tag_ttl = apr_time_from_sec(OCIREG_MIRROR_DEFAULT_TAG_TTL);
    for (i = 1; i < argc; i++) {
        const char *w = argv[i];
        if (strcmp(w, "local") == 0) {
            rule->local = 1;
        }
        else if (strcmp(w, "insecure") == 0) {
            rule->insecure = 1;
        }
        else if (strncmp(w, "credentials=", 12) == 0) {
            if (creds)
                return "credentials= given twice";
            creds = w + 12;
        }
        else if (strncmp(w, "tag-ttl=", 8) == 0) {
            if (ttl_set++)
                return "tag-ttl= given twice";
            err = parse_ttl(p, w + 8, &rule->tag_ttl);
            if (err)
                return err;
        }
        else if (looks_like_upstream(w) && !strchr(w, '=')) {
            ocireg_mirror_upstream *up = apr_array_push(rule->upstreams);
            err = ocireg_mirror_upstream_parse(p, w, up);
            if (err)
                return err;
        }
        else if (strchr(w, '='))
            return apr_psprintf(p, "unknown option '%.*s=' (options: "
                                "credentials=, tag-ttl=, local, insecure)",
                                (int)(strchr(w, '=') - w), w);
        else
            return apr_psprintf(p, "'%s' is neither an upstream registry "
                                "(a URL or host name) nor an option "
                                "(credentials=, tag-ttl=, local, insecure)",
                                w);
    }
    if (rule->upstreams->nelts == 0)
        return apr_psprintf(p, "repository pattern '%s' has no upstream "
                            "registry", rule->pattern);
    for (i = 0; i < rule->upstreams->nelts; i++) {
        const ocireg_mirror_upstream *up =
            &APR_ARRAY_IDX(rule->upstreams, i, ocireg_mirror_upstream);
        if (up->plain_http && !rule->insecure)
            return apr_psprintf(p, "upstream %s is plain http: tags (and "
                                "credentials) would travel unprotected; "
                                "use https:// or add the option insecure",
                                up->base_url);
        /* Credentials belong to one registry: a rule falling back to
         * another host must not hand them to it. */
        if (creds && strcmp(up->host, APR_ARRAY_IDX(rule->upstreams, 0,
                                                     ocireg_mirror_upstream)
                                              .host) != 0)
            return apr_psprintf(p, "credentials= would go to every upstream "
                                "of the rule, and %s and %s are different "
                                "registries; give credentials only to a "
                                "rule whose upstreams are one host",
                                APR_ARRAY_IDX(rule->upstreams, 0,
                                              ocireg_mirror_upstream).host,
                                up->host);
    }
    if (creds) {
        err = ocireg_mirror_credentials_load(p, creds,
                                             &rule->credentials);
        if (err)
            return err;
    }
    *out = rule;
    return NULL;
}

const ocireg_mirror_rule *ocireg_mirror_match(const apr_array_header_t *rules,
                                              const char *name)
{
    int i;
    if (!rules || !name)
        return NULL;
    for (i = 0; i < rules->nelts; i++) {
        const ocireg_mirror_rule *rule =
            APR_ARRAY_IDX(rules, i, const ocireg_mirror_rule *);
        if (apr_fnmatch(rule->pattern, name, 0) == APR_SUCCESS)
            return rule;
    }
    return NULL;
}

const char *ocireg_mirror_upstream_name(apr_pool_t *p,
                                        const ocireg_mirror_rule *rule,
                                        const ocireg_mirror_upstream *up,
                                        const char *name)
{
    const char *rest = name, *full;
    if (rule->strip) {
        if (strlen(name) <= rule->strip
            || strncmp(name, rule->pattern, rule->strip) != 0)
            return NULL;
        rest = name + rule->strip;
    }
    full = apr_pstrcat(p, up->name_prefix, rest, NULL);
    if (up->docker_hub && !strchr(full, '/'))
        full = apr_pstrcat(p, "library/", full, NULL);
    return ocireg_name_valid(full) ? full : NULL;
}

#define MARK_ETAG_MAX 200

const char *ocireg_mirror_mark_format(apr_pool_t *p,
                                      const ocireg_mirror_mark *m)
{
    const char *etag = m->etag, *c;
    if (etag) {
        for (c = etag; *c; c++)
            if ((unsigned char)*c <= ' ' || *c == 0x7f)
                break;
        if (*c || !*etag || c - etag > MARK_ETAG_MAX)
            etag = NULL;
    }
    return apr_psprintf(p, "%s %" APR_INT64_T_FMT " %s", m->digest,
                        (apr_int64_t)apr_time_sec(m->fetched),
                        etag ? etag : "-");
}

int ocireg_mirror_mark_parse(apr_pool_t *p, const char *text,
                             ocireg_mirror_mark *out)
{
    char *copy, *last = NULL, *d, *t = NULL, *e = NULL, *end;
    apr_int64_t sec;
    memset(out, 0, sizeof(*out));
    if (!text)
        return 0;
    copy = apr_pstrdup(p, text);
    /* apr_strtok must not be asked again once it found the end. */
    if ((d = apr_strtok(copy, " \n", &last)) != NULL
        && (t = apr_strtok(NULL, " \n", &last)) != NULL)
        e = apr_strtok(NULL, " \n", &last);
    if (!d || !t || !e || apr_strtok(NULL, " \n", &last)
        || ocireg_digest_parse(d) != OCIREG_DIGEST_SHA256)
        return 0;
    errno = 0;
    sec = apr_strtoi64(t, &end, 10);
    if (errno || *end || sec < 0 || sec > APR_INT64_C(253402300799))
        return 0;
    if (strlen(e) > MARK_ETAG_MAX)
        return 0;
    out->digest = d;
    out->fetched = apr_time_from_sec(sec);
    out->etag = strcmp(e, "-") != 0 ? e : NULL;
    return 1;
}

int ocireg_mirror_tag_fresh(const ocireg_mirror_rule *rule,
                            apr_time_t fetched, apr_time_t now)
{
    return now >= fetched && now - fetched < rule->tag_ttl;
}

const char *ocireg_mirror_if_none_match(apr_pool_t *p,
                                        const ocireg_mirror_mark *m)
{
    return m->etag ? m->etag : apr_pstrcat(p, "\"", m->digest, "\"", NULL);
}

const char *ocireg_mirror_fill_id(apr_pool_t *p, const char *digest)
{
    const char *h;
    if (ocireg_digest_parse(digest) != OCIREG_DIGEST_SHA256)
        return NULL;
    h = digest + 7;
    return apr_psprintf(p, "%.8s-%.4s-%.4s-%.4s-%.12s", h, h + 8, h + 12,
                        h + 16, h + 20);
}
