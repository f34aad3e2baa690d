/* mod_ocireg_mirror: OCIRegMirror, which repository names of a location
 * are pull-through mirrors of upstream registries (rules and mapping in
 * ocireg_mirror.c), and the refusal of pushes and deletes into them.
 *
 * Credentials are read while the configuration is parsed (as root, so a
 * file can be mode 0600) and never written to a log line or an answer. */
#include <stdlib.h>
#include <string.h>
#include <jansson.h>
#include "httpd.h"
#include "http_config.h"
#include "http_core.h"
#include "http_log.h"
#include "http_protocol.h"
#include "http_request.h"
#include "apr_strings.h"
#include "mod_ocireg.h"
#include "ocireg_mirror.h"

APLOG_USE_MODULE(ocireg);

typedef struct ocireg_mirror_conf {
    /* ocireg_mirror_rule *, in configuration order; empty after
     * `OCIRegMirror Off`. */
    apr_array_header_t *rules;
} ocireg_mirror_conf;

struct ocireg_mirror_conf *ocireg_mirror_conf_merge(
    apr_pool_t *p, const struct ocireg_mirror_conf *base,
    const struct ocireg_mirror_conf *add)
{
    (void)p;
    /* A section with rules of its own replaces those it inherits, as a
     * <Location>'s Require lines do: which names mirror what is read in
     * one place. */
    return (ocireg_mirror_conf *)(add ? add : base);
}

const char *ocireg_mirror_cmd(cmd_parms *cmd, void *dconf, const char *args)
{
    ocireg_dir_conf *dc = dconf;
    const char *words[64], *w, *err;
    ocireg_mirror_rule *rule;
    int n = 0;

    while (*(w = ap_getword_conf(cmd->pool, &args))) {
        if (n == (int)(sizeof(words) / sizeof(words[0])))
            return "OCIRegMirror: too many words";
        words[n++] = w;
    }
    if (!dc->mirror) {
        dc->mirror = apr_pcalloc(cmd->pool, sizeof(*dc->mirror));
        dc->mirror->rules = apr_array_make(cmd->pool, 2, sizeof(void *));
    }
    if (n == 1 && strcasecmp(words[0], "Off") == 0) {
        if (dc->mirror->rules->nelts)
            return "OCIRegMirror Off: this section has mirror rules already";
        return NULL;
    }
    err = ocireg_mirror_rule_parse(cmd->pool, n, words, &rule);
    if (err)
        return apr_pstrcat(cmd->pool, "OCIRegMirror: ", err, NULL);
    *(ocireg_mirror_rule **)apr_array_push(dc->mirror->rules) = rule;
    return NULL;
}

const ocireg_mirror_rule *ocireg_mirror_rule_for(request_rec *r,
                                                 const char *repository)
{
    ocireg_dir_conf *dc =
        ap_get_module_config(r->per_dir_config, &ocireg_module);
    if (!dc || !dc->mirror || !repository || !*repository)
        return NULL;
    return ocireg_mirror_match(dc->mirror->rules, repository);
}

/* The endpoint's methods that read, for the Allow of a refusal. */
static const char *pull_methods(apr_pool_t *p, ocireg_route_kind kind)
{
    const char *allow = ocireg_route_allow(kind);
    int get = strstr(allow, "GET") != NULL, head = strstr(allow, "HEAD")
                                                   != NULL;
    return apr_pstrcat(p, get ? "GET" : "", get && head ? ", " : "",
                       head ? "HEAD" : "", NULL);
}

/* A push or delete into a mirrored name is answered 405 UNSUPPORTED: the
 * operation does not exist for that name here, whoever asks (so not 403
 * DENIED, which docker and skopeo report as a permission problem, and
 * which the access rules own). Those rules run first, so a client who may
 * not push at all learns nothing about the mirror. */
static int refuse_push(request_rec *r)
{
    ocireg_route route;
    const ocireg_mirror_rule *rule;
    const char *action;
    ocireg_error e;
    json_t *detail;
    char *text;

    if (!r->handler || strcmp(r->handler, OCIREG_HANDLER) != 0)
        return DECLINED;
    ocireg_route_parse(r->pool, r->uri, &route);
    if (route.kind == OCIREG_R_NONE || !route.name)
        return DECLINED;
    action = ocireg_action_of(r->method_number, route.kind);
    if (strcmp(action, "pull") == 0)
        return DECLINED;
    rule = ocireg_mirror_rule_for(r, route.name);
    if (!rule || rule->local)
        return DECLINED;
    ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, r,
                  "OCIREG00550: %s %s refused: %s is mirrored (OCIRegMirror "
                  "%s, without local)",
                  r->method, r->uri, route.name, rule->pattern);
    apr_table_setn(r->err_headers_out, "Docker-Distribution-API-Version",
                   OCIREG_API_VERSION);
    apr_table_setn(r->err_headers_out, "X-Content-Type-Options", "nosniff");
    apr_table_setn(r->headers_out, "Allow", pull_methods(r->pool, route.kind));
    detail = json_pack("{s:s, s:s}", "repository", route.name, "action",
                       action);
    text = detail ? json_dumps(detail, JSON_COMPACT) : NULL;
    e.code = OCIREG_E_UNSUPPORTED;
    e.message = apr_psprintf(r->pool, "%s is a pull-through mirror: it "
                             "takes no %s", route.name,
                             strcmp(action, "delete") == 0 ? "deletes"
                                                           : "pushes");
    e.detail_json = text ? apr_pstrdup(r->pool, text) : NULL;
    free(text);
    json_decref(detail);
    return ocireg_respond_error_body(r, HTTP_METHOD_NOT_ALLOWED,
                                     ocireg_error_body(r->pool, &e, 1));
}

void ocireg_mirror_register(apr_pool_t *p)
{
    (void)p;
    /* Before the registry's own handler, which would take the push. */
    ap_hook_handler(refuse_push, NULL, NULL, APR_HOOK_FIRST);
}
