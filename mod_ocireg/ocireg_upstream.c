#include <string.h>
#include <stdlib.h>
#include <jansson.h>
#include <apr_strings.h>
#include <apr_lib.h>
#include <apr_base64.h>
#include <apr_thread_mutex.h>
#include "ocireg_upstream.h"

#define TOKEN_BODY_MAX (1024 * 1024)
#define ERROR_BODY_MAX (64 * 1024)
#define DEFAULT_TOKEN_LIFETIME 60

/* ---- the pure parts ---- */

static int is_tchar(int c)
{
    return apr_isalnum(c) || (c && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static int is_token68_char(int c)
{
    return apr_isalnum(c) || (c && strchr("-._~+/", c) != NULL);
}

static const char *skip_ows(const char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    return s;
}

/* A quoted-string at *s (on its opening quote), unescaped; NULL when it
 * is unterminated or holds a control character. */
static const char *quoted_string(apr_pool_t *p, const char **s)
{
    const char *q = *s + 1;
    char *out = apr_palloc(p, strlen(q) + 1), *o = out;
    for (;;) {
        unsigned char c = (unsigned char)*q;
        if (c == '"')
            break;
        if (c == '\\') {
            c = (unsigned char)q[1];
            if (c == 0 || (c < 0x20 && c != '\t') || c == 0x7f)
                return NULL;
            q++;
        }
        else if (c == 0 || (c < 0x20 && c != '\t') || c == 0x7f) {
            return NULL;
        }
        *o++ = (char)c;
        q++;
    }
    *o = '\0';
    *s = q + 1;
    return out;
}

static const char *token_at(apr_pool_t *p, const char **s)
{
    const char *b = *s;
    while (is_tchar((unsigned char)**s))
        (*s)++;
    return *s > b ? apr_pstrmemdup(p, b, (apr_size_t)(*s - b)) : NULL;
}

/* Whether s starts an auth-param (token BWS "="), not a token68 or the
 * next challenge's scheme. */
static int at_auth_param(const char *s)
{
    if (!is_tchar((unsigned char)*s))
        return 0;
    while (is_tchar((unsigned char)*s))
        s++;
    s = skip_ows(s);
    if (*s != '=')
        return 0;
    /* "abc=" followed by more '=', a comma or the end is a token68. */
    s = skip_ows(s + 1);
    return *s && *s != ',' && *s != '=';
}

apr_status_t ocireg_upstream_parse_challenges(apr_pool_t *p,
                                              const char *value,
                                              apr_array_header_t *out)
{
    const char *s = value ? value : "";
    for (;;) {
        ocireg_upstream_challenge *c;
        const char *scheme;
        /* Empty list elements are allowed: ", ,Basic". */
        while (*s == ',' || *s == ' ' || *s == '\t')
            s++;
        if (!*s)
            return APR_SUCCESS;
        if (!(scheme = token_at(p, &s)))
            return APR_EINVAL;
        c = apr_array_push(out);
        c->scheme = scheme;
        c->params = apr_table_make(p, 4);
        c->token68 = NULL;
        if (*s && *s != ' ' && *s != '\t' && *s != ',')
            return APR_EINVAL;
        s = skip_ows(s);
        if (!*s)
            return APR_SUCCESS;
        if (*s == ',')
            continue;
        if (!at_auth_param(s)) {
            /* token68: its characters, then '='s, then the end or a
             * comma before the next challenge. */
            const char *b = s;
            if (!is_token68_char((unsigned char)*s))
                return APR_EINVAL;
            while (is_token68_char((unsigned char)*s))
                s++;
            while (*s == '=')
                s++;
            c->token68 = apr_pstrmemdup(p, b, (apr_size_t)(s - b));
            s = skip_ows(s);
            if (*s && *s != ',')
                return APR_EINVAL;
            continue;
        }
        /* #auth-param: name=value pairs until one that is not. */
        for (;;) {
            const char *name = token_at(p, &s), *v;
            s = skip_ows(s);
            if (!name || *s != '=')
                return APR_EINVAL;
            s = skip_ows(s + 1);
            if (*s == '"')
                v = quoted_string(p, &s);
            else
                v = token_at(p, &s);
            if (!v)
                return APR_EINVAL;
            if (!apr_table_get(c->params, name))
                apr_table_setn(c->params, name, v);
            s = skip_ows(s);
            if (!*s)
                return APR_SUCCESS;
            if (*s != ',')
                return APR_EINVAL;
            while (*s == ',' || *s == ' ' || *s == '\t')
                s++;
            if (!*s)
                return APR_SUCCESS;
            if (!at_auth_param(s))
                break;           /* the next challenge */
        }
    }
}

static int two(const char *s, int *v)
{
    if (!apr_isdigit(s[0]) || !apr_isdigit(s[1]))
        return 0;
    *v = (s[0] - '0') * 10 + (s[1] - '0');
    return 1;
}

apr_time_t ocireg_upstream_parse_rfc3339(const char *s)
{
    apr_time_exp_t t;
    int y1, y2, mon, day, h, mi, sec, oh = 0, om = 0, sign = 0;
    apr_time_t r;
    memset(&t, 0, sizeof(t));
    if (!s || strlen(s) < 20 || !two(s, &y1) || !two(s + 2, &y2)
        || s[4] != '-' || !two(s + 5, &mon) || s[7] != '-'
        || !two(s + 8, &day) || (s[10] != 'T' && s[10] != 't')
        || !two(s + 11, &h) || s[13] != ':' || !two(s + 14, &mi)
        || s[16] != ':' || !two(s + 17, &sec))
        return -1;
    s += 19;
    if (*s == '.') {
        s++;
        if (!apr_isdigit(*s))
            return -1;
        while (apr_isdigit(*s))
            s++;
    }
    if (*s == 'Z' || *s == 'z') {
        s++;
    }
    else if (*s == '+' || *s == '-') {
        sign = *s == '-' ? -1 : 1;
        if (!two(s + 1, &oh) || s[3] != ':' || !two(s + 4, &om))
            return -1;
        s += 6;
    }
    else {
        return -1;
    }
    if (*s || mon < 1 || mon > 12 || day < 1 || day > 31 || h > 23
        || mi > 59 || sec > 60 || oh > 23 || om > 59)
        return -1;
    t.tm_year = y1 * 100 + y2 - 1900;
    t.tm_mon = mon - 1;
    t.tm_mday = day;
    t.tm_hour = h;
    t.tm_min = mi;
    t.tm_sec = sec;
    if (apr_time_exp_gmt_get(&r, &t) != APR_SUCCESS)
        return -1;
    return r - sign * apr_time_from_sec((apr_time_t)(oh * 60 + om) * 60);
}

/* A token goes into a header line: printable ASCII without spaces. */
static int token_printable(const char *t)
{
    if (!*t)
        return 0;
    for (; *t; t++)
        if ((unsigned char)*t <= 0x20 || (unsigned char)*t >= 0x7f)
            return 0;
    return 1;
}

apr_status_t ocireg_upstream_parse_token(apr_pool_t *p, const char *body,
                                         apr_size_t len, apr_time_t now,
                                         ocireg_upstream_token *out)
{
    json_error_t err;
    json_t *root = body ? json_loadb(body, len, JSON_REJECT_DUPLICATES, &err)
                        : NULL;
    json_t *tok, *exp, *iat;
    apr_int64_t lifetime = DEFAULT_TOKEN_LIFETIME;
    apr_time_t base = now, issued, life, margin;
    memset(out, 0, sizeof(*out));
    if (!root)
        return OCIREG_UP_EINVALID;
    if (!json_is_object(root)) {
        json_decref(root);
        return OCIREG_UP_EINVALID;
    }
    tok = json_object_get(root, "token");
    if (!json_is_string(tok) || !json_string_length(tok))
        tok = json_object_get(root, "access_token");
    if (!json_is_string(tok) || !token_printable(json_string_value(tok))) {
        json_decref(root);
        return OCIREG_UP_EINVALID;
    }
    out->token = apr_pstrdup(p, json_string_value(tok));
    exp = json_object_get(root, "expires_in");
    /* At most a day: a bigger number is a server's mistake. */
    if (json_is_integer(exp) && json_integer_value(exp) > 0)
        lifetime = json_integer_value(exp) < 86400 ? json_integer_value(exp)
                                                   : 86400;
    life = apr_time_from_sec(lifetime);
    iat = json_object_get(root, "issued_at");
    if (json_is_string(iat)) {
        issued = ocireg_upstream_parse_rfc3339(json_string_value(iat));
        /* The server's clock may be off: its date counts only when it
         * makes the token older, never younger or already dead. */
        if (issued >= 0 && issued <= now && now - issued < life)
            base = issued;
    }
    json_decref(root);
    out->expires = base + life;
    /* Renewed a fifth of its life early, at most 30 s. */
    margin = life / 5 < apr_time_from_sec(30) ? life / 5
                                              : apr_time_from_sec(30);
    out->refresh_at = out->expires - margin;
    return APR_SUCCESS;
}

typedef struct {
    int https;
    const char *host;            /* lower case; [v6] with brackets */
    int port;
    const char *rest;            /* from the path on ("" when none) */
} url_parts;

static int parse_url(apr_pool_t *p, const char *url, url_parts *u)
{
    const char *a, *e, *colon;
    char *host;
    apr_size_t i;
    if (strncasecmp(url, "http://", 7) == 0) {
        u->https = 0;
        a = url + 7;
    }
    else if (strncasecmp(url, "https://", 8) == 0) {
        u->https = 1;
        a = url + 8;
    }
    else {
        return 0;
    }
    e = a + strcspn(a, "/?#");
    if (e == a || memchr(a, '@', (apr_size_t)(e - a)))
        return 0;
    if (*a == '[') {
        const char *rb = memchr(a, ']', (apr_size_t)(e - a));
        if (!rb)
            return 0;
        colon = rb + 1 < e && rb[1] == ':' ? rb + 1 : NULL;
        if (rb + 1 < e && !colon)
            return 0;
    }
    else {
        colon = memchr(a, ':', (apr_size_t)(e - a));
    }
    host = apr_pstrmemdup(p, a, (apr_size_t)((colon ? colon : e) - a));
    if (!*host)
        return 0;
    for (i = 0; host[i]; i++)
        host[i] = (char)apr_tolower(host[i]);
    u->host = host;
    u->port = u->https ? 443 : 80;
    if (colon) {
        const char *d = colon + 1;
        long port = 0;
        if (d == e)
            return 0;
        for (; d < e; d++) {
            if (!apr_isdigit(*d))
                return 0;
            port = port * 10 + (*d - '0');
            if (port > 65535)
                return 0;
        }
        if (port == 0)
            return 0;
        u->port = (int)port;
    }
    u->rest = e;
    return 1;
}

int ocireg_upstream_same_origin(const char *a, const char *b)
{
    apr_pool_t *p;
    url_parts ua, ub;
    int same;
    if (!a || !b || apr_pool_create(&p, NULL) != APR_SUCCESS)
        return 0;
    same = parse_url(p, a, &ua) && parse_url(p, b, &ub)
           && ua.https == ub.https && ua.port == ub.port
           && strcmp(ua.host, ub.host) == 0;
    apr_pool_destroy(p);
    return same;
}

int ocireg_upstream_may_send_auth(const char *base_url, const char *url)
{
    return ocireg_upstream_same_origin(base_url, url);
}

static int url_chars_ok(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s <= 0x20 || (unsigned char)*s == 0x7f)
            return 0;
    return 1;
}

const char *ocireg_upstream_resolve(apr_pool_t *p, const char *from,
                                    const char *location)
{
    url_parts f, t;
    const char *loc, *origin, *r;
    apr_size_t n;
    if (!from || !location || !url_chars_ok(location))
        return NULL;
    loc = apr_pstrmemdup(p, location, strcspn(location, "#"));
    if (!parse_url(p, from, &f))
        return NULL;
    origin = apr_pstrmemdup(p, from, (apr_size_t)(f.rest - from));
    if (strncasecmp(loc, "http://", 7) == 0
        || strncasecmp(loc, "https://", 8) == 0)
        r = loc;
    else if (loc[0] == '/' && loc[1] == '/')
        r = apr_pstrcat(p, f.https ? "https:" : "http:", loc, NULL);
    else if (loc[0] == '/')
        r = apr_pstrcat(p, origin, loc, NULL);
    else if (strchr(loc, ':') && strcspn(loc, ":") < strcspn(loc, "/?"))
        return NULL;             /* another scheme */
    else if (loc[0] == '?') {
        n = strcspn(f.rest, "?#");
        r = apr_pstrcat(p, origin, apr_pstrmemdup(p, f.rest, n), loc, NULL);
    }
    else {
        /* Relative to the directory of the path that answered. */
        const char *path = apr_pstrmemdup(p, f.rest, strcspn(f.rest, "?#"));
        const char *slash = strrchr(path, '/');
        r = apr_pstrcat(p, origin,
                        slash ? apr_pstrmemdup(p, path,
                                               (apr_size_t)(slash - path) + 1)
                              : "/",
                        loc, NULL);
    }
    return parse_url(p, r, &t) ? r : NULL;
}

static const char *url_encode(apr_pool_t *p, const char *s)
{
    char *out = apr_palloc(p, strlen(s) * 3 + 1), *o = out;
    static const char hex[] = "0123456789ABCDEF";
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (apr_isalnum(c) || strchr("-._~", c))
            *o++ = (char)c;
        else {
            *o++ = '%';
            *o++ = hex[c >> 4];
            *o++ = hex[c & 15];
        }
    }
    *o = '\0';
    return out;
}

const char *ocireg_upstream_token_url(apr_pool_t *p, const char *realm,
                                      const char *service, const char *scope)
{
    url_parts u;
    const char *r;
    char sep;
    if (!realm || !url_chars_ok(realm) || !parse_url(p, realm, &u))
        return NULL;
    r = apr_pstrmemdup(p, realm, strcspn(realm, "#"));
    sep = strchr(r, '?') ? '&' : '?';
    if (service && *service) {
        r = apr_psprintf(p, "%s%cservice=%s", r, sep,
                         url_encode(p, service));
        sep = '&';
    }
    if (scope && *scope)
        r = apr_psprintf(p, "%s%cscope=%s", r, sep, url_encode(p, scope));
    return r;
}

/* ---- the token cache ---- */

typedef struct {
    char *key;                   /* malloc()ed: outlives requests */
    char *token;
    apr_time_t refresh_at;
} token_entry;

struct ocireg_upstream_tokens {
    apr_thread_mutex_t *lock;
    token_entry *e;
    int n;
};

static apr_status_t tokens_cleanup(void *data)
{
    ocireg_upstream_tokens *t = data;
    int i;
    for (i = 0; i < t->n; i++) {
        free(t->e[i].key);
        free(t->e[i].token);
        t->e[i].key = t->e[i].token = NULL;
    }
    return APR_SUCCESS;
}

apr_status_t ocireg_upstream_tokens_create(apr_pool_t *p, int capacity,
                                           ocireg_upstream_tokens **out)
{
    ocireg_upstream_tokens *t = apr_pcalloc(p, sizeof(*t));
    apr_status_t rv;
    t->n = capacity > 0 ? capacity : 64;
    t->e = apr_pcalloc(p, sizeof(*t->e) * (apr_size_t)t->n);
    rv = apr_thread_mutex_create(&t->lock, APR_THREAD_MUTEX_DEFAULT, p);
    if (rv != APR_SUCCESS)
        return rv;
    apr_pool_cleanup_register(p, t, tokens_cleanup, apr_pool_cleanup_null);
    *out = t;
    return APR_SUCCESS;
}

const char *ocireg_upstream_tokens_get(ocireg_upstream_tokens *t,
                                       apr_pool_t *p, const char *key,
                                       apr_time_t now)
{
    const char *tok = NULL;
    int i;
    if (!t)
        return NULL;
    apr_thread_mutex_lock(t->lock);
    for (i = 0; i < t->n; i++)
        if (t->e[i].key && strcmp(t->e[i].key, key) == 0) {
            if (now < t->e[i].refresh_at)
                tok = apr_pstrdup(p, t->e[i].token);
            break;
        }
    apr_thread_mutex_unlock(t->lock);
    return tok;
}

/* Replacing key's entry, else in a free slot, else over the one due
 * soonest. */
void ocireg_upstream_tokens_put(ocireg_upstream_tokens *t, const char *key,
                                const char *token, apr_time_t refresh_at)
{
    int i, slot = -1;
    if (!t)
        return;
    apr_thread_mutex_lock(t->lock);
    for (i = 0; i < t->n; i++)
        if (t->e[i].key && strcmp(t->e[i].key, key) == 0) {
            slot = i;
            break;
        }
    if (slot < 0 && token) {
        for (i = 0; i < t->n && slot < 0; i++)
            if (!t->e[i].key)
                slot = i;
        if (slot < 0) {
            slot = 0;
            for (i = 1; i < t->n; i++)
                if (t->e[i].refresh_at < t->e[slot].refresh_at)
                    slot = i;
        }
    }
    if (slot >= 0) {
        token_entry *e = &t->e[slot];
        free(e->key);
        free(e->token);
        e->key = e->token = NULL;
        if (token) {
            e->key = strdup(key);
            e->token = strdup(token);
            e->refresh_at = refresh_at;
            if (!e->key || !e->token) {
                free(e->key);
                free(e->token);
                e->key = e->token = NULL;
            }
        }
    }
    apr_thread_mutex_unlock(t->lock);
}

/* ---- requests ---- */

struct ocireg_upstream {
    ocireg_upstream_config cfg;
    ocireg_http_pool *handles;
    ocireg_upstream_tokens *tokens;
    const char *basic;           /* "Basic ..." when credentials are set */
};

apr_status_t ocireg_upstream_create(apr_pool_t *p,
                                    const ocireg_upstream_config *cfg,
                                    ocireg_http_pool *handles,
                                    ocireg_upstream_tokens *tokens,
                                    ocireg_upstream **out)
{
    ocireg_upstream *u = apr_pcalloc(p, sizeof(*u));
    url_parts parts;
    apr_size_t n;
    if (!cfg->base_url || !parse_url(p, cfg->base_url, &parts)
        || (*parts.rest && strcmp(parts.rest, "/") != 0))
        return APR_EINVAL;
    u->cfg = *cfg;
    n = strlen(cfg->base_url);
    u->cfg.base_url = apr_pstrmemdup(p, cfg->base_url,
                                     cfg->base_url[n - 1] == '/' ? n - 1 : n);
    if (cfg->user) {
        const char *up = apr_pstrcat(p, cfg->user, ":",
                                     cfg->password ? cfg->password : "",
                                     NULL);
        char *b64 = apr_palloc(p, (apr_size_t)apr_base64_encode_len(
                                      (int)strlen(up)));
        apr_base64_encode(b64, up, (int)strlen(up));
        u->basic = apr_pstrcat(p, "Basic ", b64, NULL);
    }
    u->tokens = tokens;
    if (handles)
        u->handles = handles;
    else {
        apr_status_t rv = ocireg_http_pool_create(p, &u->handles);
        if (rv != APR_SUCCESS)
            return rv;
    }
    *out = u;
    return APR_SUCCESS;
}

/* One HTTP exchange: its answer's headers and, per mode, its body. */
typedef struct {
    apr_pool_t *p;
    ocireg_upstream_result *res;
    apr_array_header_t *challenges;   /* WWW-Authenticate values */
    const char *location;
    ocireg_upstream_sink sink;        /* 2xx bodies */
    void *sink_ctx;
    apr_status_t sink_rv;
    apr_size_t collect_max;           /* without sink */
    apr_size_t cap;
    int too_big;
} exchange;

static size_t on_header(char *buf, size_t size, size_t n, void *ud)
{
    exchange *x = ud;
    size_t len = size * n;
    ocireg_upstream_result *res = x->res;
    char *line, *colon, *v, *end;
    if (len > 5 && strncmp(buf, "HTTP/", 5) == 0) {
        /* A new answer (after a 100 Continue): its own headers only. */
        const char *sp = memchr(buf, ' ', len);
        res->status = sp ? atol(sp + 1) : 0;
        res->content_type = res->digest = res->etag = NULL;
        res->content_length = -1;
        x->location = NULL;
        apr_array_clear(x->challenges);
        return len;
    }
    line = apr_pstrmemdup(x->p, buf, len);
    if (!(colon = strchr(line, ':')))
        return len;
    *colon = '\0';
    v = (char *)skip_ows(colon + 1);
    end = v + strlen(v);
    while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' '
                       || end[-1] == '\t'))
        *--end = '\0';
    if (strcasecmp(line, "Content-Type") == 0)
        res->content_type = v;
    else if (strcasecmp(line, "Docker-Content-Digest") == 0)
        res->digest = v;
    else if (strcasecmp(line, "ETag") == 0)
        res->etag = v;
    else if (strcasecmp(line, "Content-Length") == 0)
        res->content_length = apr_atoi64(v);
    else if (strcasecmp(line, "Location") == 0)
        x->location = v;
    else if (strcasecmp(line, "WWW-Authenticate") == 0)
        APR_ARRAY_PUSH(x->challenges, const char *) = v;
    return len;
}

static size_t on_body(char *buf, size_t size, size_t n, void *ud)
{
    exchange *x = ud;
    ocireg_upstream_result *res = x->res;
    size_t len = size * n;
    int ok = res->status >= 200 && res->status < 300;
    apr_size_t max;
    if (ok && x->sink) {
        x->sink_rv = x->sink(x->sink_ctx, buf, len);
        if (x->sink_rv != APR_SUCCESS)
            return 0;
        res->received += (apr_off_t)len;
        return len;
    }
    max = ok ? x->collect_max : ERROR_BODY_MAX;
    if (res->body_len + len > max) {
        if (ok) {
            x->too_big = 1;
            return 0;
        }
        return len;              /* an error's body: the start is enough */
    }
    ocireg_http_body_append(x->p, &res->body, &res->body_len, &x->cap, max,
                            res->content_length, buf, len);
    if (ok)
        res->received += (apr_off_t)len;
    return len;
}

/* One request, no redirects followed. The CURLcode says how the transfer
 * ended. */
static CURLcode exchange_run(ocireg_upstream *u, exchange *x,
                             const char *method, const char *url,
                             const char *authorization, const char *accept,
                             const char *if_none_match, int stream)
{
    CURL *h = ocireg_http_take_handle(u->handles);
    struct curl_slist *list = NULL;
    CURLcode cc;
    apr_pool_t *p = x->p;
    if (!h)
        return CURLE_OUT_OF_MEMORY;
    x->res->status = 0;
    x->res->body = NULL;
    x->res->body_len = 0;
    x->res->received = 0;
    x->res->content_length = -1;
    x->cap = 0;
    x->too_big = 0;
    x->sink_rv = APR_SUCCESS;
    x->location = NULL;
    apr_array_clear(x->challenges);
    ocireg_http_configure(h, &u->cfg.http, stream);
    curl_easy_setopt(h, CURLOPT_URL, url);
    /* Only ours: redirects are followed by hand, credentials decided per
     * hop. */
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    if (accept)
        list = curl_slist_append(list, apr_pstrcat(p, "Accept: ", accept,
                                                   NULL));
    if (authorization)
        list = curl_slist_append(
            list, apr_pstrcat(p, "Authorization: ", authorization, NULL));
    if (if_none_match)
        list = curl_slist_append(
            list, apr_pstrcat(p, "If-None-Match: ", if_none_match, NULL));
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, list);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "mod_ocireg");
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, x);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, x);
    if (strcmp(method, "HEAD") == 0)
        curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
    cc = ocireg_http_perform(u->handles, h);
    if (cc == CURLE_OK) {
        long status = 0;
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
        x->res->status = status;
    }
    curl_slist_free_all(list);
    /* A handle whose transfer broke may hold a dead connection. */
    if (cc == CURLE_OK)
        ocireg_http_give_handle(u->handles, h);
    else
        curl_easy_cleanup(h);
    return cc;
}

static apr_status_t status_of(long status)
{
    if (status >= 200 && status < 300)
        return APR_SUCCESS;
    if (status == 404)
        return APR_ENOENT;
    if (status == 401 || status == 403)
        return OCIREG_UP_EREFUSED;
    if (status >= 500 || status == 429 || status == 408)
        return OCIREG_UP_EUNAVAILABLE;
    return OCIREG_UP_EINVALID;
}

/* The outcome of an ended exchange, before redirects and auth. */
static apr_status_t exchange_outcome(exchange *x, CURLcode cc, int head)
{
    ocireg_upstream_result *res = x->res;
    if (cc == CURLE_WRITE_ERROR && x->sink_rv != APR_SUCCESS)
        return x->sink_rv;
    if (cc == CURLE_WRITE_ERROR && x->too_big) {
        res->error = "manifest over the size cap";
        return OCIREG_UP_EINVALID;
    }
    if (cc != CURLE_OK) {
        res->error = curl_easy_strerror(cc);
        /* Bytes of a 2xx were delivered: what came is not the whole. */
        if (res->received > 0 || (cc == CURLE_PARTIAL_FILE
                                   && res->status >= 200
                                   && res->status < 300))
            return OCIREG_UP_ETRUNCATED;
        res->status = 0;
        return OCIREG_UP_EUNAVAILABLE;
    }
    if (!head && res->status >= 200 && res->status < 300
        && res->content_length >= 0
        && res->received != res->content_length) {
        res->error = "body shorter than its Content-Length";
        return OCIREG_UP_ETRUNCATED;
    }
    return status_of(res->status);
}

/* An exchange retried with backoff while the upstream is unavailable and
 * no body byte has been delivered. */
static apr_status_t exchange_retried(ocireg_upstream *u, exchange *x,
                                     const char *method, const char *url,
                                     const char *authorization,
                                     const char *accept,
                                     const char *if_none_match, int stream)
{
    int attempt = 0;
    for (;;) {
        CURLcode cc = exchange_run(u, x, method, url, authorization, accept,
                                   if_none_match, stream);
        apr_status_t rv = exchange_outcome(x, cc, strcmp(method, "HEAD") == 0);
        if (rv != OCIREG_UP_EUNAVAILABLE || x->res->received > 0
            || attempt >= u->cfg.retries)
            return rv;
        ocireg_http_sleep_waiting(apr_time_from_msec(100) << attempt);
        attempt++;
    }
}

/* The first Bearer challenge among the WWW-Authenticate values, or
 * NULL; *basic set when a Basic one is among them. */
static const ocireg_upstream_challenge *bearer_of(apr_pool_t *p,
                                                  apr_array_header_t *values,
                                                  int *basic)
{
    apr_array_header_t *cs = apr_array_make(p, 2,
                                            sizeof(ocireg_upstream_challenge));
    const ocireg_upstream_challenge *bearer = NULL;
    int i;
    *basic = 0;
    for (i = 0; i < values->nelts; i++)
        /* What parsed before a fault still counts. */
        ocireg_upstream_parse_challenges(p, APR_ARRAY_IDX(values, i, char *),
                                         cs);
    for (i = 0; i < cs->nelts; i++) {
        const ocireg_upstream_challenge *c =
            &APR_ARRAY_IDX(cs, i, ocireg_upstream_challenge);
        if (strcasecmp(c->scheme, "Bearer") == 0 && !bearer
            && apr_table_get(c->params, "realm"))
            bearer = c;
        else if (strcasecmp(c->scheme, "Basic") == 0)
            *basic = 1;
    }
    return bearer;
}

/* Fetches a token for the challenge; "Bearer ..." or NULL. */
static const char *fetch_token(ocireg_upstream *u, apr_pool_t *p,
                               const ocireg_upstream_challenge *c,
                               const char *default_scope,
                               const char *cache_key,
                               ocireg_upstream_result *res)
{
    const char *scope = apr_table_get(c->params, "scope");
    const char *url = ocireg_upstream_token_url(
        p, apr_table_get(c->params, "realm"),
        apr_table_get(c->params, "service"), scope ? scope : default_scope);
    ocireg_upstream_result tres;
    ocireg_upstream_token tok;
    exchange x;
    apr_status_t rv;
    if (!url) {
        res->error = "Bearer challenge without a usable realm";
        return NULL;
    }
    memset(&tres, 0, sizeof(tres));
    memset(&x, 0, sizeof(x));
    x.p = p;
    x.res = &tres;
    x.challenges = apr_array_make(p, 1, sizeof(const char *));
    x.collect_max = TOKEN_BODY_MAX;
    res->token_fetches++;
    rv = exchange_retried(u, &x, "GET", url, u->basic, "application/json",
                          NULL, 0);
    if (rv != APR_SUCCESS) {
        res->error = apr_psprintf(p, "token server %s answered %ld%s%s",
                                  url, tres.status, tres.error ? ": " : "",
                                  tres.error ? tres.error : "");
        return NULL;
    }
    if (ocireg_upstream_parse_token(p, tres.body, tres.body_len,
                                    apr_time_now(), &tok) != APR_SUCCESS) {
        res->error = "token server's answer holds no usable token";
        return NULL;
    }
    ocireg_upstream_tokens_put(u->tokens, cache_key, tok.token, tok.refresh_at);
    return apr_pstrcat(p, "Bearer ", tok.token, NULL);
}

apr_status_t ocireg_upstream_fetch(ocireg_upstream *u, apr_pool_t *p,
                                   const ocireg_upstream_req *rq,
                                   ocireg_upstream_result *res)
{
    const char *method = rq->head ? "HEAD" : "GET";
    const char *scope, *cache_key, *auth, *url;
    int auth_tried = 0;
    exchange x;
    apr_status_t rv;

    memset(res, 0, sizeof(*res));
    res->content_length = -1;
    if (!rq->repo || !rq->reference || !*rq->repo || !*rq->reference
        || !url_chars_ok(rq->repo) || !url_chars_ok(rq->reference))
        return APR_EINVAL;
    url = apr_pstrcat(p, u->cfg.base_url, "/v2/", rq->repo,
                      rq->kind == OCIREG_UP_MANIFEST ? "/manifests/"
                                                     : "/blobs/",
                      rq->reference, NULL);
    scope = apr_pstrcat(p, "repository:", rq->repo, ":pull", NULL);
    cache_key = apr_pstrcat(p, u->cfg.base_url, " ", scope, NULL);
    auth = ocireg_upstream_tokens_get(u->tokens, p, cache_key, apr_time_now());
    auth = auth ? apr_pstrcat(p, "Bearer ", auth, NULL) : u->basic;

    memset(&x, 0, sizeof(x));
    x.p = p;
    x.res = res;
    x.challenges = apr_array_make(p, 2, sizeof(const char *));
    x.sink = rq->head ? NULL : rq->sink;
    x.sink_ctx = rq->sink_ctx;
    x.collect_max = rq->max ? rq->max : OCIREG_UP_MANIFEST_MAX;
    for (;;) {
        int same = ocireg_upstream_may_send_auth(u->cfg.base_url, url);
        res->url = url;
        rv = exchange_retried(
            u, &x, method, url, same ? auth : NULL,
            rq->kind == OCIREG_UP_MANIFEST ? OCIREG_UP_MANIFEST_ACCEPT : NULL,
            rq->if_none_match, x.sink != NULL);
        if (res->status == 304 && rq->if_none_match) {
            res->not_modified = 1;
            return APR_SUCCESS;
        }
        if (res->status >= 301 && res->status <= 308 && res->status != 304
            && res->status != 305 && res->status != 306 && x.location) {
            const char *next = ocireg_upstream_resolve(p, url, x.location);
            if (!next) {
                res->error = "redirect to an unusable Location";
                return OCIREG_UP_EINVALID;
            }
            if (++res->redirects > OCIREG_UP_MAX_REDIRECTS) {
                res->error = "too many redirects";
                return OCIREG_UP_EINVALID;
            }
            url = next;
            continue;
        }
        if (res->status == 401 && same && !auth_tried) {
            int basic;
            const ocireg_upstream_challenge *c =
                bearer_of(p, x.challenges, &basic);
            auth_tried = 1;
            /* A cached token the upstream no longer takes goes. */
            ocireg_upstream_tokens_put(u->tokens, cache_key, NULL, 0);
            if (c) {
                auth = fetch_token(u, p, c, scope, cache_key, res);
                if (!auth)
                    return OCIREG_UP_EREFUSED;
                continue;
            }
            if (basic && u->basic && auth != u->basic) {
                auth = u->basic;
                continue;
            }
        }
        if (rv != APR_SUCCESS && !res->error)
            res->error = apr_psprintf(p, "upstream answered %ld",
                                      res->status);
        return rv;
    }
}
