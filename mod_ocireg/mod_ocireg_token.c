/* mod_ocireg_token: the Docker token protocol for Apache.
 *
 * `AuthType oci-token` makes a location take `Authorization: Bearer <jwt>`
 * from a token server (Harbor's, GitLab's, docker_auth, distribution's
 * reference one): the token's signature and claims are checked here
 * (ocireg_token.c), its `sub` becomes the user, and `Require oci-token`
 * grants what its `access` claim lists. A client without a fitting token
 * gets 401 with a `WWW-Authenticate: Bearer realm=...,service=...,scope=...`
 * challenge that tells it where to get one and for what. */
#include <string.h>
#include "httpd.h"
#include "http_config.h"
#include "http_core.h"
#include "http_log.h"
#include "http_protocol.h"
#include "http_request.h"
#include "mod_auth.h"
#include "ap_provider.h"
#include "apr_file_io.h"
#include "apr_lib.h"
#include "apr_strings.h"
#include "apr_uri.h"
#include "mod_ocireg.h"
#include "ocireg_token.h"

APLOG_USE_MODULE(ocireg);

#define AUTH_TYPE "oci-token"
#define DEFAULT_LEEWAY 30
#define MAX_LEEWAY 3600
/* A PEM file of a few keys or certificates is a few KiB. */
#define MAX_KEY_FILE (1024 * 1024)

/* r->pool userdata: the request's verified ocireg_token. */
#define TOKEN_KEY "ocireg-token"
/* r->notes: what became of the token a client sent, for the challenge
 * ("invalid": refused; "valid": accepted, so a refusal is its scope). */
#define NOTE_STATE "ocireg-token-state"

typedef struct ocireg_token_conf {
    const char *realm;
    const char *service;
    const char *issuer;
    apr_array_header_t *keys;   /* ocireg_token_key *; NULL: unset */
    int leeway;                 /* -1: unset */
} ocireg_token_conf;

static ocireg_token_conf *new_conf(apr_pool_t *p)
{
    ocireg_token_conf *c = apr_pcalloc(p, sizeof(*c));
    c->leeway = -1;
    return c;
}

struct ocireg_token_conf *ocireg_token_conf_merge(
    apr_pool_t *p, const struct ocireg_token_conf *base,
    const struct ocireg_token_conf *add)
{
    ocireg_token_conf *c;
    if (!base || !add)
        return (ocireg_token_conf *)(add ? add : base);
    c = new_conf(p);
    c->realm = add->realm ? add->realm : base->realm;
    c->service = add->service ? add->service : base->service;
    c->issuer = add->issuer ? add->issuer : base->issuer;
    /* A section's keys replace those it inherits: a location trusting
     * another token server must not also trust the outer one's. */
    c->keys = add->keys ? add->keys : base->keys;
    c->leeway = add->leeway != -1 ? add->leeway : base->leeway;
    return c;
}

/* Directives */

/* The value goes into a quoted WWW-Authenticate parameter. */
static int quotable(const char *s)
{
    for (; *s; s++)
        if (*s == '"' || *s == '\\' || apr_iscntrl(*s))
            return 0;
    return 1;
}

static const char *read_key_file(cmd_parms *cmd, const char *arg,
                                 apr_array_header_t *keys)
{
    const char *path = ap_server_root_relative(cmd->temp_pool, arg);
    apr_file_t *f;
    apr_finfo_t fi;
    apr_size_t n;
    char *buf;
    const char *err;
    apr_status_t rv;

    if (!path)
        return apr_psprintf(cmd->pool, "OCIRegTokenPublicKey: bad path %s",
                            arg);
    rv = apr_file_open(&f, path, APR_FOPEN_READ, APR_FPROT_OS_DEFAULT,
                       cmd->temp_pool);
    if (rv == APR_SUCCESS) {
        rv = apr_file_info_get(&fi, APR_FINFO_SIZE, f);
        if (rv == APR_SUCCESS && (fi.size <= 0 || fi.size > MAX_KEY_FILE)) {
            apr_file_close(f);
            return apr_psprintf(cmd->pool, "OCIRegTokenPublicKey: %s is "
                                "empty or larger than %d bytes",
                                path, MAX_KEY_FILE);
        }
    }
    if (rv == APR_SUCCESS) {
        n = (apr_size_t)fi.size;
        buf = apr_palloc(cmd->temp_pool, n + 1);
        rv = apr_file_read_full(f, buf, n, &n);
        apr_file_close(f);
    }
    if (rv != APR_SUCCESS) {
        char msg[120];
        return apr_psprintf(cmd->pool, "OCIRegTokenPublicKey: cannot read "
                            "%s: %s", path,
                            apr_strerror(rv, msg, sizeof(msg)));
    }
    err = ocireg_token_keys_parse(cmd->pool, buf, n, keys);
    if (err)
        return apr_psprintf(cmd->pool, "OCIRegTokenPublicKey: %s holds %s",
                            path, err);
    return NULL;
}

const char *ocireg_token_cmd(cmd_parms *cmd, void *dconf, const char *arg)
{
    ocireg_dir_conf *dc = dconf;
    const char *what = cmd->info;
    const char *name = cmd->directive->directive;
    ocireg_token_conf *c;

    if (!dc->token)
        dc->token = new_conf(cmd->pool);
    c = dc->token;
    if (strcmp(what, "key") == 0) {
        if (!c->keys)
            c->keys = apr_array_make(cmd->pool, 2, sizeof(void *));
        return read_key_file(cmd, arg, c->keys);
    }
    if (strcmp(what, "leeway") == 0) {
        char *end;
        apr_int64_t v = apr_strtoi64(arg, &end, 10);
        if (end == arg || *end || v < 0 || v > MAX_LEEWAY)
            return apr_psprintf(cmd->pool, "%s: \"%s\" is not a number of "
                                "seconds from 0 to %d",
                                name, arg, MAX_LEEWAY);
        c->leeway = (int)v;
        return NULL;
    }
    if (!*arg || !quotable(arg))
        return apr_psprintf(cmd->pool, "%s: the value must be non-empty, "
                            "without quotes, backslashes or control "
                            "characters", name);
    if (strcmp(what, "realm") == 0) {
        apr_uri_t u;
        if (apr_uri_parse(cmd->temp_pool, arg, &u) != APR_SUCCESS
            || !u.scheme || !u.hostname
            || (strcasecmp(u.scheme, "https") != 0
                && strcasecmp(u.scheme, "http") != 0))
            return apr_psprintf(cmd->pool, "%s: \"%s\" is not an http:// or "
                                "https:// URL of the token server",
                                name, arg);
        c->realm = arg;
    }
    else if (strcmp(what, "service") == 0)
        c->service = arg;
    else
        c->issuer = arg;
    return NULL;
}

/* Requests */

static int token_mode(request_rec *r)
{
    const char *type = ap_auth_type(r);
    return type && strcasecmp(type, AUTH_TYPE) == 0;
}

static const ocireg_token_conf *conf_of(request_rec *r)
{
    ocireg_dir_conf *dc =
        ap_get_module_config(r->per_dir_config, &ocireg_module);
    return dc ? dc->token : NULL;
}

/* The token verified for r, or for the request r is a sub-request of
 * (rights asked for other repositories run as sub-requests that reuse the
 * main request's authentication). */
static const ocireg_token *token_of(request_rec *r)
{
    for (; r; r = r->main) {
        void *t = NULL;
        apr_pool_userdata_get(&t, TOKEN_KEY, r->pool);
        if (t)
            return t;
    }
    return NULL;
}

static const char *env_of(request_rec *r, const char *name)
{
    const char *v = apr_table_get(r->subprocess_env, name);
    return v ? v : "";
}

/* What to ask the token server for: Docker's scope for r. */
static const char *scope_of(request_rec *r)
{
    const char *repository = env_of(r, OCIREG_ENV_REPOSITORY);
    const char *action = env_of(r, OCIREG_ENV_ACTION);
    if (*repository) {
        const char *actions = strcmp(action, "push") == 0 ? "pull,push"
                              : strcmp(action, "delete") == 0 ? "delete"
                                                               : "pull";
        return apr_pstrcat(r->pool, "repository:", repository, ":", actions,
                           NULL);
    }
    if (r->uri) {
        ocireg_route route;
        ocireg_route_parse(r->pool, r->uri, &route);
        if (route.kind == OCIREG_R_CATALOG)
            return "registry:catalog:*";
    }
    return NULL; /* /v2/: any valid token will do */
}

static const char *missing_setting(const ocireg_token_conf *c)
{
    if (!c || !c->realm)
        return "OCIRegTokenRealm";
    if (!c->service)
        return "OCIRegTokenService";
    if (!c->issuer)
        return "OCIRegTokenIssuer";
    if (!c->keys || c->keys->nelts == 0)
        return "OCIRegTokenPublicKey";
    return NULL;
}

static int refuse(request_rec *r, const char *state)
{
    if (state)
        apr_table_setn(r->notes, NOTE_STATE, state);
    ap_note_auth_failure(r);
    return HTTP_UNAUTHORIZED;
}

/* The authn hook of AuthType oci-token. The token itself is never logged:
 * it is a credential until it expires. */
static int authenticate(request_rec *r)
{
    const ocireg_token_conf *c;
    const char *header, *scheme, *missing;
    ocireg_token_verifier v;
    ocireg_token *t = NULL;
    ocireg_token_status st;
    apr_size_t len;

    if (!token_mode(r))
        return DECLINED;
    c = conf_of(r);
    missing = missing_setting(c);
    if (missing) {
        ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r,
                      "OCIREG00470: AuthType oci-token here needs %s",
                      missing);
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    header = ocireg_credentials_header(r);
    if (!header)
        return refuse(r, NULL);
    scheme = ap_getword_white(r->pool, &header);
    if (strcasecmp(scheme, "Bearer") != 0) {
        ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r,
                      "OCIREG00471: %s credentials where a bearer token is "
                      "wanted (%s %s)",
                      ap_escape_logitem(r->pool, scheme), r->method,
                      ap_escape_logitem(r->pool, r->uri));
        return refuse(r, NULL);
    }
    while (apr_isspace(*header))
        header++;
    len = strlen(header);
    while (len > 0 && apr_isspace(header[len - 1]))
        len--;
    v.issuer = c->issuer;
    v.audience = c->service;
    v.keys = c->keys;
    v.leeway = c->leeway >= 0 ? c->leeway : DEFAULT_LEEWAY;
    st = ocireg_token_verify(r->pool, &v, header, len,
                             apr_time_sec(r->request_time), &t);
    if (st != OCIREG_TOKEN_OK) {
        ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r,
                      "OCIREG00472: bearer token refused: %s (%s %s)",
                      ocireg_token_status_text(st), r->method,
                      ap_escape_logitem(r->pool, r->uri));
        return refuse(r, "invalid");
    }
    r->user = (char *)t->subject;
    apr_pool_userdata_setn(t, TOKEN_KEY, NULL, r->pool);
    apr_table_setn(r->notes, NOTE_STATE, "valid");
    ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, r,
                  "OCIREG00473: %s bearer token of \"%s\" accepted, %d "
                  "access entries",
                  t->alg, ap_escape_logitem(r->pool, t->subject),
                  t->access->nelts);
    return OK;
}

/* The challenge of every 401 in token mode. RFC 6750's error tells a
 * client that sent a token whether to get a fresh one (invalid_token) or
 * one with more rights (insufficient_scope); why a token was refused stays
 * in the error log. */
static int challenge(request_rec *r, const char *auth_type)
{
    const ocireg_token_conf *c;
    const char *scope, *state, *value;
    if (!auth_type || strcasecmp(auth_type, AUTH_TYPE) != 0)
        return DECLINED;
    c = conf_of(r);
    value = apr_psprintf(r->pool, "Bearer realm=\"%s\",service=\"%s\"",
                         c && c->realm ? c->realm : "",
                         c && c->service ? c->service : "");
    scope = scope_of(r);
    if (scope)
        value = apr_pstrcat(r->pool, value, ",scope=\"", scope, "\"", NULL);
    state = apr_table_get(r->notes, NOTE_STATE);
    if (state && strcmp(state, "invalid") == 0)
        value = apr_pstrcat(r->pool, value, ",error=\"invalid_token\"", NULL);
    else if (state && strcmp(state, "valid") == 0)
        value = apr_pstrcat(r->pool, value, ",error=\"insufficient_scope\"",
                            NULL);
    apr_table_setn(r->err_headers_out, "WWW-Authenticate", value);
    return OK;
}

/* Require oci-token: the request's verified token allows its action on
 * its repository. /v2/ and the catalog belong to no repository: any valid
 * token reaches them, and the catalog lists only the repositories the
 * token may pull (asked through sub-requests, which come back here). */
static authz_status token_allows(request_rec *r, const char *line,
                                 const void *parsed)
{
    const ocireg_token *t;
    const char *repository, *action;
    int allowed;
    (void)line;
    (void)parsed;
    if (!r->user)
        return AUTHZ_DENIED_NO_USER;
    t = token_of(r);
    /* A user some other authentication made has no token to ask. */
    if (!t || strcmp(t->subject, r->user) != 0)
        return AUTHZ_DENIED;
    repository = apr_table_get(r->subprocess_env, OCIREG_ENV_REPOSITORY);
    action = apr_table_get(r->subprocess_env, OCIREG_ENV_ACTION);
    if (!repository || !action)
        return AUTHZ_DENIED; /* not a registry request */
    if (!*repository)
        return AUTHZ_GRANTED;
    allowed = ocireg_token_allows(t, "repository", repository, action);
    if (!allowed && !r->main)
        ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r,
                      "OCIREG00474: the bearer token of \"%s\" does not "
                      "allow %s on %s",
                      ap_escape_logitem(r->pool, t->subject), action,
                      repository);
    return allowed ? AUTHZ_GRANTED : AUTHZ_DENIED;
}

static const char *parse_require(cmd_parms *cmd, const char *line,
                                 const void **parsed)
{
    (void)cmd;
    *parsed = NULL;
    if (line && *line)
        return "Require oci-token takes no arguments: the token's access "
               "claim says what it allows";
    return NULL;
}

static const authz_provider token_provider = {token_allows, parse_require};

/* Settings every token location needs. Where a <Location> gets them from
 * is only known per request (sections merge by URL), so `apachectl -t`
 * refuses only what is certain: AuthType oci-token somewhere, and one of
 * these nowhere in the whole configuration. */
static const char *const required[] = {
    "OCIRegTokenRealm", "OCIRegTokenService", "OCIRegTokenIssuer",
    "OCIRegTokenPublicKey",
};
#define NREQUIRED (sizeof(required) / sizeof(required[0]))

static void survey(apr_pool_t *p, const ap_directive_t *d, int seen[],
                   const ap_directive_t **token_auth)
{
    apr_size_t i;
    for (; d; d = d->next) {
        if (strcasecmp(d->directive, "AuthType") == 0 && !*token_auth) {
            const char *args = d->args;
            if (strcasecmp(ap_getword_conf(p, &args), AUTH_TYPE) == 0)
                *token_auth = d;
        }
        for (i = 0; i < NREQUIRED; i++)
            if (strcasecmp(d->directive, required[i]) == 0)
                seen[i] = 1;
        survey(p, d->first_child, seen, token_auth);
    }
}

static int check_token_settings(apr_pool_t *pconf, apr_pool_t *plog,
                                apr_pool_t *ptemp, server_rec *s)
{
    int seen[NREQUIRED] = {0};
    const ap_directive_t *token_auth = NULL;
    apr_size_t i;
    (void)pconf;
    (void)plog;
    survey(ptemp, ap_conftree, seen, &token_auth);
    if (!token_auth)
        return OK;
    for (i = 0; i < NREQUIRED; i++) {
        if (seen[i])
            continue;
        ap_log_error(APLOG_MARK, APLOG_STARTUP | APLOG_CRIT, 0, s,
                     "OCIREG00475: AuthType oci-token (%s:%d) needs %s, "
                     "which is set nowhere",
                     token_auth->filename, token_auth->line_num,
                     required[i]);
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    return OK;
}

void ocireg_token_register(apr_pool_t *p)
{
    ap_hook_check_authn(authenticate, NULL, NULL, APR_HOOK_MIDDLE,
                        AP_AUTH_INTERNAL_PER_CONF);
    ap_hook_note_auth_failure(challenge, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_check_config(check_token_settings, NULL, NULL, APR_HOOK_MIDDLE);
    ap_register_auth_provider(p, AUTHZ_PROVIDER_GROUP, AUTH_TYPE,
                              AUTHZ_PROVIDER_VERSION, &token_provider,
                              AP_AUTH_INTERNAL_PER_CONF);
}
