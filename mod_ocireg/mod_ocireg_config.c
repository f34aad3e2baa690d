/* Directives and configuration merging. For S3 storage: where the bucket
 * is, how to sign, how big the parts are. Credentials are read here, at
 * configuration time, while httpd is still root, and never appear in a log
 * line or a response. */
#include <string.h>
#include <stdlib.h>
#include "httpd.h"
#include "http_config.h"
#include "apr_strings.h"
#include "apr_lib.h"
#include "apr_file_io.h"
#include "mod_ocireg.h"
#include "ocireg_parse.h"
#include "ocireg_uploads.h"

int ocireg_conf_upload_slots = OCIREG_DEFAULT_UPLOAD_SLOTS;
int ocireg_conf_cache_entries = OCIREG_DEFAULT_CACHE_ENTRIES;
int ocireg_conf_catalog_scan = OCIREG_DEFAULT_CATALOG_SCAN;
apr_interval_time_t ocireg_conf_cache_ttl =
    apr_time_from_sec(OCIREG_DEFAULT_CACHE_SECONDS);
apr_interval_time_t ocireg_conf_upload_expiry = OCIREG_DEFAULT_UPLOAD_EXPIRY;
apr_interval_time_t ocireg_conf_upload_lease = 0;
apr_interval_time_t ocireg_conf_upload_empty_expiry =
    OCIREG_DEFAULT_UPLOAD_EMPTY_EXPIRY;
int ocireg_conf_uploads_per_client = OCIREG_DEFAULT_UPLOADS_PER_CLIENT;
int ocireg_conf_uploads_per_repository = OCIREG_DEFAULT_UPLOADS_PER_REPOSITORY;

#define MIB (1024 * 1024)
#define DEFAULT_PART_SIZE (16 * MIB)
/* R2's and S3's bounds on a non-final part. */
#define MIN_PART_SIZE (5 * (apr_off_t)MIB)
#define MAX_PART_SIZE (5 * (apr_off_t)1024 * MIB)

static ocireg_server_conf *sconf(cmd_parms *cmd)
{
    return ap_get_module_config(cmd->server->module_config, &ocireg_module);
}

/* "16M", "64MiB", "5G", "1048576" */
static int parse_size(const char *s, apr_off_t *out)
{
    char *end;
    apr_int64_t v = apr_strtoi64(s, &end, 10);
    apr_off_t mul = 1;
    if (end == s || v <= 0)
        return 0;
    switch (apr_toupper(*end)) {
    case 'K': mul = 1024; end++; break;
    case 'M': mul = MIB; end++; break;
    case 'G': mul = 1024 * (apr_off_t)MIB; end++; break;
    default: break;
    }
    if (*end == 'i' || *end == 'I')
        end++;
    if (*end == 'B' || *end == 'b')
        end++;
    if (*end)
        return 0;
    *out = v * mul;
    return 1;
}

static const char *set_bucket(cmd_parms *cmd, void *d, const char *v)
{
    (void)d;
    sconf(cmd)->s3.bucket = v;
    return NULL;
}

static const char *set_prefix(cmd_parms *cmd, void *d, const char *v)
{
    (void)d;
    while (*v == '/')
        v++;
    sconf(cmd)->s3.prefix =
        *v && v[strlen(v) - 1] != '/' ? apr_pstrcat(cmd->pool, v, "/", NULL)
                                      : v;
    return NULL;
}

static const char *set_region(cmd_parms *cmd, void *d, const char *v)
{
    (void)d;
    sconf(cmd)->s3.region = v;
    return NULL;
}

/* "key = value" lines; '#' starts a comment. */
static const char *read_credentials_file(cmd_parms *cmd, const char *path,
                                         ocireg_store_s3_config *c)
{
    apr_file_t *f;
    char line[1024];
    apr_status_t rv = apr_file_open(&f, path, APR_FOPEN_READ,
                                    APR_FPROT_OS_DEFAULT, cmd->temp_pool);
    if (rv != APR_SUCCESS)
        return apr_psprintf(cmd->pool,
                            "OCIRegS3Credentials: cannot read %s", path);
    while (apr_file_gets(line, sizeof(line), f) == APR_SUCCESS) {
        char *eq = strchr(line, '='), *k = line, *v, *end;
        if (!eq || line[0] == '#')
            continue;
        *eq = '\0';
        v = eq + 1;
        while (apr_isspace(*k))
            k++;
        for (end = eq; end > k && apr_isspace(end[-1]);)
            *--end = '\0';
        while (apr_isspace(*v))
            v++;
        for (end = v + strlen(v); end > v && apr_isspace(end[-1]);)
            *--end = '\0';
        if (strcmp(k, "access_key") == 0 || strcmp(k, "access_key_id") == 0
            || strcmp(k, "aws_access_key_id") == 0)
            c->access_key = apr_pstrdup(cmd->pool, v);
        else if (strcmp(k, "secret_key") == 0
                 || strcmp(k, "secret_access_key") == 0
                 || strcmp(k, "aws_secret_access_key") == 0)
            c->secret_key = apr_pstrdup(cmd->pool, v);
    }
    apr_file_close(f);
    if (!c->access_key || !c->secret_key)
        return apr_psprintf(cmd->pool,
                            "OCIRegS3Credentials: %s must set access_key and "
                            "secret_key",
                            path);
    return NULL;
}

static const char *set_credentials(cmd_parms *cmd, void *d, const char *v)
{
    ocireg_store_s3_config *c = &sconf(cmd)->s3;
    (void)d;
    if (strncmp(v, "file:", 5) == 0)
        return read_credentials_file(
            cmd, ap_server_root_relative(cmd->temp_pool, v + 5), c);
    if (strncmp(v, "env:", 4) == 0 || strcmp(v, "env") == 0) {
        /* env:ACCESS_VAR,SECRET_VAR ; plain "env" uses the defaults */
        const char *ak = "OCIREG_S3_ACCESS_KEY", *sk = "OCIREG_S3_SECRET_KEY";
        if (v[3] == ':') {
            char *list = apr_pstrdup(cmd->temp_pool, v + 4);
            char *comma = strchr(list, ',');
            if (!comma)
                return "OCIRegS3Credentials env:ACCESS_VAR,SECRET_VAR";
            *comma = '\0';
            ak = list;
            sk = comma + 1;
        }
        c->access_key = getenv(ak);
        c->secret_key = getenv(sk);
        if (!c->access_key || !c->secret_key || !*c->access_key
            || !*c->secret_key)
            return apr_psprintf(cmd->pool,
                                "OCIRegS3Credentials: environment variables "
                                "%s and %s must both be set",
                                ak, sk);
        c->access_key = apr_pstrdup(cmd->pool, c->access_key);
        c->secret_key = apr_pstrdup(cmd->pool, c->secret_key);
        return NULL;
    }
    return "OCIRegS3Credentials: use file:<path> or env[:ACCESS_VAR,"
           "SECRET_VAR]; keys are never written in httpd.conf";
}

static const char *set_part_size(cmd_parms *cmd, void *d, const char *v)
{
    apr_off_t n;
    (void)d;
    if (!parse_size(v, &n) || n < MIN_PART_SIZE || n > MAX_PART_SIZE)
        return apr_psprintf(cmd->pool,
                            "OCIRegS3PartSize: '%s' is not a size from 5M "
                            "to 5G",
                            v);
    sconf(cmd)->s3.part_size = n;
    return NULL;
}

static const char *set_timeouts(cmd_parms *cmd, void *d, const char *conn,
                                const char *xfer)
{
    ocireg_store_s3_config *c = &sconf(cmd)->s3;
    int a = atoi(conn), b = xfer ? atoi(xfer) : 60;
    (void)d;
    if (a <= 0 || b <= 0)
        return "OCIRegS3Timeouts: <connect seconds> [<stall seconds>], "
               "both positive";
    c->connect_timeout_ms = a * 1000L;
    c->timeout_ms = b * 1000L;
    return NULL;
}

static const char *set_retries(cmd_parms *cmd, void *d, const char *v)
{
    char *end;
    long n = strtol(v, &end, 10);
    (void)d;
    if (*end || n < 0 || n > 10)
        return "OCIRegS3Retries: a number from 0 to 10";
    sconf(cmd)->s3.retries = (int)n;
    return NULL;
}

static const char *set_ca_file(cmd_parms *cmd, void *d, const char *v)
{
    (void)d;
    sconf(cmd)->s3.ca_file = ap_server_root_relative(cmd->pool, v);
    return NULL;
}

static const char *set_spool_dir(cmd_parms *cmd, void *d, const char *v)
{
    (void)d;
    sconf(cmd)->s3.spool_dir = ap_server_root_relative(cmd->pool, v);
    return NULL;
}

static const char *set_redirect(cmd_parms *cmd, void *d, const char *v)
{
    char *end;
    long n;
    (void)d;
    if (strcasecmp(v, "off") == 0) {
        sconf(cmd)->s3.redirect_seconds = -1;
        return NULL;
    }
    n = strtol(v, &end, 10);
    if (*end || n < 1 || n > 604800)
        return "OCIRegS3BlobRedirect: Off or a lifetime in seconds "
               "(1 to 604800)";
    sconf(cmd)->s3.redirect_seconds = (int)n;
    return NULL;
}




void *ocireg_create_server_conf(apr_pool_t *p, server_rec *s)
{
    ocireg_server_conf *c = apr_pcalloc(p, sizeof(*c));
    (void)s;
    c->s3.retries = -1;
    c->s3_allow_insecure = -1;
    return c;
}

void *ocireg_merge_server_conf(apr_pool_t *p, void *basev, void *addv)
{
    ocireg_server_conf *base = basev, *add = addv;
    ocireg_server_conf *c = apr_pcalloc(p, sizeof(*c));
    c->storage_driver = add->storage_driver ? add->storage_driver
                                            : base->storage_driver;
    c->storage_arg = add->storage_driver ? add->storage_arg
                                         : base->storage_arg;
    c->registry_used = add->registry_used || base->registry_used;
    ocireg_s3conf_merge(&c->s3, &base->s3, &add->s3);
    c->s3_allow_insecure = add->s3_allow_insecure != -1
                               ? add->s3_allow_insecure
                               : base->s3_allow_insecure;
    c->record_key_set = add->record_key_set || base->record_key_set;
    c->record_key = add->record_key_set ? add->record_key : base->record_key;
    c->record_keylen = add->record_key_set ? add->record_keylen
                                           : base->record_keylen;
    return c;
}

void *ocireg_create_dir_conf(apr_pool_t *p, char *dir)
{
    ocireg_dir_conf *c = apr_pcalloc(p, sizeof(*c));
    (void)dir;
    c->enabled = -1;
    c->deletes = -1;
    return c;
}

void *ocireg_merge_dir_conf(apr_pool_t *p, void *basev, void *addv)
{
    ocireg_dir_conf *base = basev, *add = addv;
    ocireg_dir_conf *c = apr_pcalloc(p, sizeof(*c));
    c->enabled = add->enabled != -1 ? add->enabled : base->enabled;
    c->deletes = add->deletes != -1 ? add->deletes : base->deletes;
    c->token = ocireg_token_conf_merge(p, base->token, add->token);
    c->mirror = ocireg_mirror_conf_merge(p, base->mirror, add->mirror);
    return c;
}

static const char *cmd_registry(cmd_parms *cmd, void *dconf, int on)
{
    ocireg_server_conf *sc =
        ap_get_module_config(cmd->server->module_config, &ocireg_module);
    ((ocireg_dir_conf *)dconf)->enabled = on;
    if (on)
        sc->registry_used = 1;
    return NULL;
}

static const char *cmd_deletes(cmd_parms *cmd, void *dconf, int on)
{
    (void)cmd;
    ((ocireg_dir_conf *)dconf)->deletes = on;
    return NULL;
}

static const char *cmd_storage(cmd_parms *cmd, void *dconf, const char *drv,
                               const char *arg)
{
    ocireg_server_conf *sc =
        ap_get_module_config(cmd->server->module_config, &ocireg_module);
    (void)dconf;
    if (strcmp(drv, "s3") == 0) {
        sc->storage_driver = drv;
        sc->storage_arg = arg;
        return NULL;
    }
    if (strcmp(drv, "filesystem") != 0)
        return apr_psprintf(cmd->pool,
                            "OCIRegStorage: unknown driver '%s' (expected "
                            "'filesystem' or 's3')",
                            drv);
    if (!*arg)
        return "OCIRegStorage filesystem: needs a directory";
    sc->storage_driver = drv;
    sc->storage_arg = ap_server_root_relative(cmd->pool, arg);
    if (!sc->storage_arg)
        return apr_psprintf(cmd->pool, "OCIRegStorage: invalid path '%s'",
                            arg);
    return NULL;
}

/* A whole number from lo to hi for a directive of the main server;
 * NULL, or the message naming the directive. */
static const char *global_number(cmd_parms *cmd, const char *arg,
                                 apr_off_t lo, apr_off_t hi,
                                 const char *unit, apr_off_t *n)
{
    const char *err = ap_check_cmd_context(cmd, GLOBAL_ONLY);
    if (err)
        return err;
    if (!ocireg_off_parse(arg, n) || *n < lo || *n > hi)
        return apr_psprintf(cmd->pool,
                            "%s: '%s' is not a number %sfrom %" APR_OFF_T_FMT
                            " to %" APR_OFF_T_FMT,
                            cmd->cmd->name, arg, unit, lo, hi);
    return NULL;
}

static const char *cmd_upload_slots(cmd_parms *cmd, void *dconf,
                                    const char *arg)
{
    apr_off_t n;
    const char *err = global_number(cmd, arg, 1, 1000000, "", &n);
    (void)dconf;
    if (!err)
        ocireg_conf_upload_slots = (int)n;
    return err;
}

static const char *cmd_cache_entries(cmd_parms *cmd, void *dconf,
                                     const char *arg)
{
    apr_off_t n;
    const char *err = global_number(cmd, arg, 0, 4000000, "", &n);
    (void)dconf;
    if (!err)
        ocireg_conf_cache_entries = (int)n;
    return err;
}

static const char *cmd_catalog_scan(cmd_parms *cmd, void *dconf,
                                    const char *arg)
{
    apr_off_t n;
    const char *err = global_number(cmd, arg, 1, 1000000, "", &n);
    (void)dconf;
    if (!err)
        ocireg_conf_catalog_scan = (int)n;
    return err;
}

static const char *cmd_cache_seconds(cmd_parms *cmd, void *dconf,
                                     const char *arg)
{
    apr_off_t n;
    const char *err = global_number(cmd, arg, 0, 3600, "of seconds ", &n);
    (void)dconf;
    if (!err)
        ocireg_conf_cache_ttl = apr_time_from_sec(n);
    return err;
}

/* The global directives that take a number of seconds: where each goes
 * and its largest value. */
typedef struct {
    apr_interval_time_t *target;
    apr_off_t max;
} seconds_setting;

static seconds_setting upload_expiry = {&ocireg_conf_upload_expiry,
                                        365 * 86400};
static seconds_setting upload_lease = {&ocireg_conf_upload_lease, 86400};
static seconds_setting upload_empty_expiry = {
    &ocireg_conf_upload_empty_expiry, 365 * 86400};

static const char *cmd_global_seconds(cmd_parms *cmd, void *dconf,
                                      const char *arg)
{
    const seconds_setting *setting = cmd->info;
    apr_off_t n;
    const char *err = global_number(cmd, arg, 1, setting->max, "of seconds ",
                                    &n);
    (void)dconf;
    if (!err)
        *setting->target = apr_time_from_sec(n);
    return err;
}

static const char *cmd_uploads_per(cmd_parms *cmd, void *dconf,
                                   const char *arg)
{
    apr_off_t n;
    const char *err = global_number(cmd, arg, 0, 1000000, "", &n);
    (void)dconf;
    if (err)
        return err;
    if (cmd->info == (void *)"client")
        ocireg_conf_uploads_per_client = (int)n;
    else
        ocireg_conf_uploads_per_repository = (int)n;
    return NULL;
}

static const char *cmd_s3_allow_insecure(cmd_parms *cmd, void *dconf, int on)
{
    (void)dconf;
    sconf(cmd)->s3_allow_insecure = on;
    return NULL;
}

/* The key is read now, while httpd is still root. It is the file's text
 * (such as `openssl rand -hex 32`) without the whitespace that ends it, at
 * least 16 bytes: binary keys are not meant, since one that happened to
 * end in a newline byte would silently lose it. */
#define RECORD_KEY_MIN 16
#define RECORD_KEY_MAX 4096
static const char *cmd_record_key(cmd_parms *cmd, void *dconf,
                                  const char *arg)
{
    ocireg_server_conf *sc = sconf(cmd);
    const char *path;
    apr_file_t *f;
    char *buf;
    apr_size_t n = RECORD_KEY_MAX + 1;
    apr_status_t rv;
    (void)dconf;
    if (strncmp(arg, "file:", 5) != 0 || !arg[5])
        return "OCIRegRecordKey: use file:<path>; the key is never written "
               "in httpd.conf";
    path = ap_server_root_relative(cmd->temp_pool, arg + 5);
    buf = apr_palloc(cmd->pool, n);
    rv = path ? apr_file_open(&f, path, APR_FOPEN_READ, APR_FPROT_OS_DEFAULT,
                              cmd->temp_pool)
              : APR_EBADPATH;
    if (rv == APR_SUCCESS) {
        rv = apr_file_read_full(f, buf, n, &n);
        apr_file_close(f);
        if (rv == APR_EOF)
            rv = APR_SUCCESS;
    }
    if (rv != APR_SUCCESS)
        return apr_psprintf(cmd->pool, "OCIRegRecordKey: cannot read %s",
                            arg + 5);
    while (n > 0 && apr_isspace(buf[n - 1]))
        n--;
    if (n < RECORD_KEY_MIN || n > RECORD_KEY_MAX)
        return apr_psprintf(cmd->pool,
                            "OCIRegRecordKey: %s must hold %d to %d bytes",
                            arg + 5, RECORD_KEY_MIN, RECORD_KEY_MAX);
    sc->record_key = (const unsigned char *)buf;
    sc->record_keylen = n;
    sc->record_key_set = 1;
    return NULL;
}

const command_rec ocireg_cmds[] = {
    AP_INIT_FLAG("OCIRegistry", cmd_registry, NULL, OR_OPTIONS | ACCESS_CONF,
                 "On to serve the OCI Distribution API at /v2 here"),
    AP_INIT_FLAG("OCIRegDeletes", cmd_deletes, NULL,
                 OR_OPTIONS | ACCESS_CONF | RSRC_CONF,
                 "Off to refuse every DELETE with 405 UNSUPPORTED"),
    OCIREG_TOKEN_CMDS,
    OCIREG_MIRROR_CMDS,
    AP_INIT_TAKE2("OCIRegStorage", cmd_storage, NULL, RSRC_CONF,
                  "storage driver and its argument: filesystem <dir> or "
                  "s3 <endpoint URL>"),
    AP_INIT_TAKE1("OCIRegCacheEntries", cmd_cache_entries, NULL, RSRC_CONF,
                  "entries of the shared cache of store answers (0: none)"),
    AP_INIT_TAKE1("OCIRegCatalogScanLimit", cmd_catalog_scan, NULL,
                  RSRC_CONF,
                  "repository names one filtered catalog response checks at "
                  "most before it answers with what it found"),
    AP_INIT_TAKE1("OCIRegCacheSeconds", cmd_cache_seconds, NULL, RSRC_CONF,
                  "how long another host's change to a tag or link may go "
                  "unseen here (0: tags and links are not cached)"),
    AP_INIT_TAKE1("OCIRegUploadSlots", cmd_upload_slots, NULL, RSRC_CONF,
                  "upload sessions held in shared memory at once"),
    AP_INIT_TAKE1("OCIRegUploadExpiry", cmd_global_seconds, &upload_expiry,
                  RSRC_CONF,
                  "seconds after which an idle upload is aborted "
                  "(default 86400)"),
    AP_INIT_TAKE1("OCIRegUploadLease", cmd_global_seconds, &upload_lease,
                  RSRC_CONF,
                  "seconds a host that stopped answering keeps an upload "
                  "locked against other hosts (default: httpd's Timeout + 60)"),
    AP_INIT_TAKE1("OCIRegUploadEmptyExpiry", cmd_global_seconds,
                  &upload_empty_expiry,
                  RSRC_CONF,
                  "seconds after which an upload that never received a byte "
                  "is aborted (default 300)"),
    AP_INIT_TAKE1("OCIRegUploadsPerClient", cmd_uploads_per, "client",
                  RSRC_CONF,
                  "upload sessions one client (user, else address) may "
                  "hold open; 0 for no limit (default 64)"),
    AP_INIT_TAKE1("OCIRegUploadsPerRepository", cmd_uploads_per,
                  "repository", RSRC_CONF,
                  "upload sessions one repository may have open; 0 for no "
                  "limit (default 256)"),
    AP_INIT_TAKE1("OCIRegRecordKey", cmd_record_key, NULL, RSRC_CONF,
                  "file:<path> of the key that signs upload session "
                  "records (HMAC-SHA256)"),
    AP_INIT_FLAG("OCIRegS3AllowInsecure", cmd_s3_allow_insecure, NULL,
                 RSRC_CONF,
                 "On to allow an http:// S3 endpoint (default Off)"),
    AP_INIT_TAKE1("OCIRegS3Bucket", set_bucket, NULL, RSRC_CONF,
                  "bucket of the s3 storage"),
    AP_INIT_TAKE1("OCIRegS3Prefix", set_prefix, NULL, RSRC_CONF,
                  "key prefix inside the bucket"),
    AP_INIT_TAKE1("OCIRegS3Region", set_region, NULL, RSRC_CONF,
                  "signing region (default auto, as R2 wants)"),
    AP_INIT_TAKE1("OCIRegS3Credentials", set_credentials, NULL, RSRC_CONF,
                  "file:<path> or env[:ACCESS_VAR,SECRET_VAR]"),
    AP_INIT_TAKE1("OCIRegS3PartSize", set_part_size, NULL, RSRC_CONF,
                  "size of every multipart part but the last (default 16M)"),
    AP_INIT_TAKE12("OCIRegS3Timeouts", set_timeouts, NULL, RSRC_CONF,
                   "connect timeout and stall timeout, in seconds"),
    AP_INIT_TAKE1("OCIRegS3Retries", set_retries, NULL, RSRC_CONF,
                  "extra attempts of idempotent requests (default 3)"),
    AP_INIT_TAKE1("OCIRegS3CAFile", set_ca_file, NULL, RSRC_CONF,
                  "CA bundle to verify the endpoint with"),
    AP_INIT_TAKE1("OCIRegS3SpoolDir", set_spool_dir, NULL, RSRC_CONF,
                  "directory for the bounded local spool (default /var/tmp)"),
    AP_INIT_TAKE1("OCIRegS3BlobRedirect", set_redirect, NULL, RSRC_CONF,
                  "Off, or answer blob GETs with 307 to a presigned URL "
                  "valid this many seconds"),
    {NULL}};


#define PICK(f) out->f = add->f ? add->f : base->f
void ocireg_s3conf_merge(ocireg_store_s3_config *out,
                         const ocireg_store_s3_config *base,
                         const ocireg_store_s3_config *add)
{
    PICK(bucket);
    PICK(prefix);
    PICK(region);
    PICK(access_key);
    PICK(secret_key);
    PICK(ca_file);
    PICK(spool_dir);
    PICK(part_size);
    PICK(connect_timeout_ms);
    PICK(timeout_ms);
    PICK(redirect_seconds);
    out->retries = add->retries >= 0 ? add->retries : base->retries;
}

const char *ocireg_s3conf_check(apr_pool_t *p, ocireg_server_conf *sc)
{
    ocireg_store_s3_config *c = &sc->s3;
    const char *ep = sc->storage_arg;
    if (!(strncmp(ep, "https://", 8) == 0 || strncmp(ep, "http://", 7) == 0)
        || strchr(strstr(ep, "://") + 3, '/'))
        return apr_psprintf(p,
                            "OCIRegStorage s3: '%s' is not an endpoint URL "
                            "like https://<account>.r2.cloudflarestorage.com",
                            ep);
    if (strncmp(ep, "http://", 7) == 0 && sc->s3_allow_insecure != 1)
        return apr_psprintf(p,
                            "OCIRegStorage s3: '%s' is plain http: requests, "
                            "blobs and upload records would travel "
                            "unprotected; use https:// or set "
                            "OCIRegS3AllowInsecure On",
                            ep);
    if (!c->bucket)
        return "OCIRegStorage s3 needs OCIRegS3Bucket";
    if (!c->access_key || !c->secret_key)
        return "OCIRegStorage s3 needs OCIRegS3Credentials";
    c->endpoint = ep;
    if (!c->region)
        c->region = "auto";
    if (!c->prefix)
        c->prefix = "";
    if (!c->part_size)
        c->part_size = DEFAULT_PART_SIZE;
    if (!c->connect_timeout_ms)
        c->connect_timeout_ms = 10000;
    if (!c->timeout_ms)
        c->timeout_ms = 60000;
    if (c->retries < 0)
        c->retries = 3;
    if (!c->spool_dir)
        c->spool_dir = "/var/tmp";
    if (c->redirect_seconds < 0)
        c->redirect_seconds = 0;
    return NULL;
}

/* Hosts sharing a bucket share its secret, so a key derived from it is
 * the same on all of them without another file to distribute; the bucket
 * and prefix keep two stores' records apart. */
void ocireg_record_key_check(apr_pool_t *p, ocireg_server_conf *sc)
{
    if (sc->record_key_set || !sc->storage_driver)
        return;
    if (strcmp(sc->storage_driver, "s3") == 0 && sc->s3.secret_key) {
        sc->record_key = ocireg_session_key_derive(
            p, sc->s3.secret_key,
            apr_pstrcat(p, sc->s3.bucket ? sc->s3.bucket : "", "/",
                        sc->s3.prefix ? sc->s3.prefix : "", NULL),
            &sc->record_keylen);
        return;
    }
    sc->record_key = NULL;
    sc->record_keylen = 0;
}
