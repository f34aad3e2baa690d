/* mod_ocireg_access: the registry's facts for Apache's own authentication
 * and authorization.
 *
 * Apache decides who may do what; the module only says what a request is
 * about (OCI_REPOSITORY, OCI_ACTION), adds authz providers that read those
 * facts naturally (Require oci-pull/oci-push/oci-delete), and asks the
 * same rules about other repositories when a request touches them (the
 * catalog, a mount's source). */
#include <string.h>
#include "httpd.h"
#include "http_config.h"
#include "http_core.h"
#include "http_log.h"
#include "http_protocol.h"
#include "http_request.h"
#include "mod_auth.h"
#include "ap_provider.h"
#include "apr_fnmatch.h"
#include "apr_strings.h"
#include "apr_lib.h"
#include "util_script.h"
#include "mod_ocireg.h"

APLOG_USE_MODULE(ocireg);

/* r->notes: the request is the API's root, /v2/. */
#define NOTE_BASE "ocireg-base"

/* Per main request: verdicts already reached, so a catalog page asks
 * each repository once and each principal (a group file, an LDAP group)
 * once whatever the number of repositories. */
typedef struct {
    apr_hash_t *rights;      /* "<action> <repository>" -> "1" / "0" */
    apr_hash_t *principals;  /* "<provider>:<arg>" -> authz_status */
} access_cache;

static request_rec *main_request(request_rec *r)
{
    while (r->main)
        r = r->main;
    return r;
}

static access_cache *cache_of(request_rec *r)
{
    request_rec *m = main_request(r);
    access_cache *c = ap_get_module_config(m->request_config, &ocireg_module);
    if (!c) {
        c = apr_pcalloc(m->pool, sizeof(*c));
        c->rights = apr_hash_make(m->pool);
        c->principals = apr_hash_make(m->pool);
        ap_set_module_config(m->request_config, &ocireg_module, c);
    }
    return c;
}

const char *ocireg_action_of(int method_number, ocireg_route_kind kind)
{
    switch (method_number) {
    case M_GET:     /* HEAD is a GET to httpd */
    case M_OPTIONS: /* changes nothing; a browser's preflight has no
                       credentials to send */
        return "pull";
    case M_DELETE:
        /* Cancelling one's own upload removes only what one sent. */
        return kind == OCIREG_R_UPLOAD ? "push" : "delete";
    default:
        return "push";
    }
}

/* Runs for every request and sub-request once its <Location> is known,
 * before authentication and authorization. */
static int name_the_access(request_rec *r)
{
    ocireg_route route;
    const char *repository = "";
    if (!ocireg_registry_here(r))
        return DECLINED;
    ocireg_route_parse(r->pool, r->uri, &route);
    if (route.kind != OCIREG_R_NONE && route.name)
        repository = route.name;
    apr_table_setn(r->subprocess_env, OCIREG_ENV_REPOSITORY, repository);
    apr_table_setn(r->subprocess_env, OCIREG_ENV_ACTION,
                   ocireg_action_of(r->method_number, route.kind));
    if (route.kind == OCIREG_R_BASE)
        apr_table_setn(r->notes, NOTE_BASE, "1");
    return OK;
}

/* Credentials a client sends are always checked, even where the rules
 * would let it in anonymously: otherwise alice, pulling a public
 * repository with her password, would be served (and list the catalog) as
 * nobody, and a wrong password would pass unnoticed. containers/image
 * sends Basic with an empty user and password when it has none: that is
 * an anonymous client, not a failed login. */
const char *ocireg_credentials_header(request_rec *r)
{
    return apr_table_get(r->headers_in, PROXYREQ_PROXY == r->proxyreq
                                            ? "Proxy-Authorization"
                                            : "Authorization");
}

static int sent_credentials(request_rec *r)
{
    const char *v = ocireg_credentials_header(r);
    const char *scheme_end;
    char *decoded;
    if (!v)
        return 0;
    scheme_end = v;
    while (*scheme_end && !apr_isspace(*scheme_end))
        scheme_end++;
    if (scheme_end - v != 5 || strncasecmp(v, "Basic", 5) != 0)
        return 1;
    while (apr_isspace(*scheme_end))
        scheme_end++;
    decoded = ap_pbase64decode(r->pool, scheme_end);
    return decoded && *decoded && *decoded != ':';
}

static int check_sent_credentials(request_rec *r)
{
    if (!ocireg_registry_here(r) || !ap_auth_type(r))
        return DECLINED;
    return sent_credentials(r) ? OK : DECLINED;
}

/* The rules' verdict on rr, a sub-request whose authorization httpd
 * skipped because its configuration is its parent's: the same steps
 * ap_process_request_internal takes, with the parent's user. Refusals are
 * the expected answer for most repositories of a catalog, so rr logs only
 * what is worse than that. */
static int ask_rules(request_rec *rr)
{
    struct ap_logconf *quiet = apr_pcalloc(rr->pool, sizeof(*quiet));
    int rc;
    quiet->level = APLOG_CRIT;
    rr->log = quiet;
    if (ap_satisfies(rr) == SATISFY_ANY) {
        if (ap_run_access_checker(rr) == OK)
            return OK;
    }
    else if ((rc = ap_run_access_checker(rr)) != OK)
        return rc;
    rc = ap_run_access_checker_ex(rr);
    if (rc != DECLINED)
        return rc;
    if (!rr->user)
        return HTTP_UNAUTHORIZED; /* the rules want a user; there is none */
    return ap_run_auth_checker(rr);
}

static const char *probe_uri(apr_pool_t *p, const char *repository,
                             const char *action, const char **method)
{
    if (strcmp(action, "push") == 0) {
        *method = "POST";
        return apr_pstrcat(p, "/v2/", repository, "/blobs/uploads/", NULL);
    }
    if (strcmp(action, "delete") == 0) {
        *method = "DELETE";
        return apr_pstrcat(p, "/v2/", repository, "/manifests/latest",
                           NULL);
    }
    *method = "GET";
    return apr_pstrcat(p, "/v2/", repository, "/tags/list", NULL);
}

int ocireg_access_allowed(request_rec *r, const char *repository,
                          const char *action)
{
    access_cache *c = cache_of(r);
    const char *key = apr_pstrcat(r->pool, action, " ", repository, NULL);
    const char *known = apr_hash_get(c->rights, key, APR_HASH_KEY_STRING);
    const char *method, *uri;
    request_rec *rr;
    int rc, allowed;

    if (known)
        return *known == '1';
    uri = probe_uri(r->pool, repository, action, &method);
    rr = ap_sub_req_method_uri(method, uri, r, NULL);
    if (rr->status != HTTP_OK)
        rc = rr->status;          /* its own rules ran, and refused */
    else if (rr->per_dir_config == r->per_dir_config)
        rc = ask_rules(rr);       /* httpd skipped them: same <Location> */
    else
        rc = OK;                  /* its own rules ran, and let it in */
    allowed = rc == OK;
    if (rc != OK && rc != HTTP_UNAUTHORIZED && rc != HTTP_FORBIDDEN)
        ap_log_rerror(APLOG_MARK, APLOG_WARNING, 0, r,
                      "OCIREG00450: checking %s on %s gave status %d: "
                      "treated as refused",
                      action, repository, rc);
    else
        ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, r,
                      "OCIREG00451: %s on %s: %s", action, repository,
                      allowed ? "allowed" : "refused");
    ap_destroy_sub_req(rr);
    apr_hash_set(c->rights, apr_pstrdup(main_request(r)->pool, key),
                 APR_HASH_KEY_STRING, allowed ? "1" : "0");
    return allowed;
}

/* Require oci-pull|oci-push|oci-delete <pattern>... [<principal>...]
 *
 * A pattern is a repository name with shell wildcards (`*` matches any
 * characters, `/` included). A principal is `valid-user` or
 * `<provider>:<argument>`, handed to that authz provider (`user:alice`,
 * `group:devs`, `ldap-group:cn=devs,ou=groups,dc=example,dc=org`); with
 * none, the rule holds for anyone, anonymous clients included. push and
 * delete include pull: a client pushing or deleting reads back what it
 * touches. */
typedef struct {
    const char *provider_name;
    const authz_provider *provider;
    const char *arg;
    const void *parsed;
} principal;

typedef struct {
    int pull, push, delete;
    apr_array_header_t *patterns;   /* const char * */
    apr_array_header_t *principals; /* principal */
} oci_rule;

static const char *parse_rule(cmd_parms *cmd, const char *line,
                              const void **parsed, int push, int delete)
{
    oci_rule *rule = apr_pcalloc(cmd->pool, sizeof(*rule));
    const char *w, *t = line;
    rule->pull = 1;
    rule->push = push;
    rule->delete = delete;
    rule->patterns = apr_array_make(cmd->pool, 2, sizeof(const char *));
    rule->principals = apr_array_make(cmd->pool, 1, sizeof(principal));
    while (*(w = ap_getword_conf(cmd->pool, &t))) {
        const char *colon = strchr(w, ':');
        if (colon || strcmp(w, "valid-user") == 0) {
            principal *pr = apr_array_push(rule->principals);
            pr->provider_name =
                colon ? apr_pstrndup(cmd->pool, w, colon - w) : w;
            pr->arg = colon ? colon + 1 : "";
            pr->parsed = NULL;
            if (!*pr->provider_name)
                return apr_psprintf(cmd->pool, "Require oci-...: \"%s\" "
                                    "names no authz provider before ':'",
                                    w);
            pr->provider = ap_lookup_provider(AUTHZ_PROVIDER_GROUP,
                                              pr->provider_name,
                                              AUTHZ_PROVIDER_VERSION);
            if (!pr->provider && strcmp(w, "valid-user") == 0)
                continue; /* mod_authz_user absent: judged here */
            if (!pr->provider)
                return apr_psprintf(cmd->pool, "Require oci-...: unknown "
                                    "authz provider \"%s\" in \"%s\" (is "
                                    "its module loaded?)",
                                    pr->provider_name, w);
            if (pr->provider->parse_require_line) {
                const char *err = pr->provider->parse_require_line(
                    cmd, pr->arg, &pr->parsed);
                if (err)
                    return err;
            }
            continue;
        }
        if (!*w || strchr(w, ' '))
            return "Require oci-...: an empty or spaced pattern";
        *(const char **)apr_array_push(rule->patterns) = w;
    }
    if (rule->patterns->nelts == 0)
        return "Require oci-pull|oci-push|oci-delete needs at least one "
               "repository pattern (e.g. team-a/*)";
    *parsed = rule;
    return NULL;
}

static const char *parse_pull(cmd_parms *cmd, const char *line,
                              const void **parsed)
{
    return parse_rule(cmd, line, parsed, 0, 0);
}

static const char *parse_push(cmd_parms *cmd, const char *line,
                              const void **parsed)
{
    return parse_rule(cmd, line, parsed, 1, 0);
}

static const char *parse_delete(cmd_parms *cmd, const char *line,
                                const void **parsed)
{
    return parse_rule(cmd, line, parsed, 0, 1);
}

static int rule_covers(const oci_rule *rule, const char *repository,
                       const char *action)
{
    int i;
    if (strcmp(action, "pull") == 0) {
        if (!rule->pull)
            return 0;
    }
    else if (strcmp(action, "push") == 0) {
        if (!rule->push)
            return 0;
    }
    else if (strcmp(action, "delete") == 0) {
        if (!rule->delete)
            return 0;
    }
    else
        return 0;
    /* /v2/ and the catalog belong to no repository: anyone with some
     * right reaches them (the catalog then shows only what they may
     * pull). */
    if (!*repository)
        return strcmp(action, "pull") == 0;
    for (i = 0; i < rule->patterns->nelts; i++) {
        const char *pat = APR_ARRAY_IDX(rule->patterns, i, const char *);
        if (apr_fnmatch(pat, repository, 0) == APR_SUCCESS)
            return 1;
    }
    return 0;
}

static authz_status principal_verdict(request_rec *r, const principal *pr)
{
    access_cache *c = cache_of(r);
    const char *key;
    authz_status *known, st;
    /* Without a user every provider of users says so itself; caching
     * that would hide the user authentication brings later. */
    key = apr_pstrcat(r->pool, r->user ? r->user : "", "\n",
                      pr->provider_name, ":", pr->arg, NULL);
    known = apr_hash_get(c->principals, key, APR_HASH_KEY_STRING);
    if (known)
        return *known;
    st = pr->provider->check_authorization(r, pr->arg, pr->parsed);
    known = apr_palloc(main_request(r)->pool, sizeof(*known));
    *known = st;
    apr_hash_set(c->principals, apr_pstrdup(main_request(r)->pool, key),
                 APR_HASH_KEY_STRING, known);
    return st;
}

static authz_status check_rule(request_rec *r, const char *line,
                               const void *parsed)
{
    const oci_rule *rule = parsed;
    const char *repository = apr_table_get(r->subprocess_env,
                                           OCIREG_ENV_REPOSITORY);
    const char *action = apr_table_get(r->subprocess_env, OCIREG_ENV_ACTION);
    authz_status verdict = AUTHZ_DENIED;
    int i;
    (void)line;
    if (!rule || !repository || !action)
        return AUTHZ_DENIED; /* not a registry request */
    if (!rule_covers(rule, repository, action))
        return AUTHZ_DENIED;
    if (rule->principals->nelts == 0) {
        /* Clients learn how to authenticate from the answer to /v2/ alone
         * (docker, containers/image): where credentials can be checked,
         * an anonymous /v2/ gets the challenge, or no client would ever
         * send them. Anonymous pulls carry on without. */
        if (!r->user && ap_auth_type(r)
            && apr_table_get(r->notes, NOTE_BASE))
            return AUTHZ_DENIED_NO_USER;
        return AUTHZ_GRANTED;
    }
    for (i = 0; i < rule->principals->nelts; i++) {
        const principal *pr = &APR_ARRAY_IDX(rule->principals, i, principal);
        authz_status st;
        if (!pr->provider)
            st = r->user ? AUTHZ_GRANTED : AUTHZ_DENIED_NO_USER;
        else
            st = principal_verdict(r, pr);
        if (st == AUTHZ_GRANTED)
            return AUTHZ_GRANTED;
        if (st == AUTHZ_GENERAL_ERROR)
            return st;
        if (st == AUTHZ_DENIED_NO_USER)
            verdict = AUTHZ_DENIED_NO_USER;
    }
    return verdict;
}

static const authz_provider oci_pull_provider = {check_rule, parse_pull};
static const authz_provider oci_push_provider = {check_rule, parse_push};
static const authz_provider oci_delete_provider = {check_rule,
                                                   parse_delete};

void ocireg_access_register(apr_pool_t *p)
{
    ap_hook_post_perdir_config(name_the_access, NULL, NULL,
                               APR_HOOK_MIDDLE);
    ap_hook_force_authn(check_sent_credentials, NULL, NULL,
                        APR_HOOK_MIDDLE);
    ap_register_auth_provider(p, AUTHZ_PROVIDER_GROUP, "oci-pull",
                              AUTHZ_PROVIDER_VERSION, &oci_pull_provider,
                              AP_AUTH_INTERNAL_PER_CONF);
    ap_register_auth_provider(p, AUTHZ_PROVIDER_GROUP, "oci-push",
                              AUTHZ_PROVIDER_VERSION, &oci_push_provider,
                              AP_AUTH_INTERNAL_PER_CONF);
    ap_register_auth_provider(p, AUTHZ_PROVIDER_GROUP, "oci-delete",
                              AUTHZ_PROVIDER_VERSION, &oci_delete_provider,
                              AP_AUTH_INTERNAL_PER_CONF);
}
