/* The Apache layer: what the handler files share. Everything here is glue
 * between httpd and the pure core (ocireg_*.h). */
#ifndef MOD_OCIREG_H
#define MOD_OCIREG_H

#include "httpd.h"
#include "http_config.h"
#include "ocireg_error.h"
#include "ocireg_route.h"
#include "ocireg_store.h"
#include "ocireg_uploads.h"
#include "ocireg_hash.h"
#include "ocireg_cursor.h"

extern module AP_MODULE_DECLARE_DATA ocireg_module;

#define OCIREG_HANDLER "ocireg"
#define OCIREG_MUTEX_TYPE "ocireg-uploads"
#define OCIREG_API_VERSION "registry/2.0"
/* r->notes key: the size of the blob a GET is serving, for the 416 that
 * httpd's byterange filter makes. */
#define OCIREG_NOTE_BLOB_SIZE "ocireg-blob-size"

typedef struct {
    const char *storage_driver;     /* "filesystem" or "s3" */
    const char *storage_arg;        /* root directory, or endpoint URL */
    ocireg_store_s3_config s3;      /* OCIRegS3* settings */
    ocireg_store *store;            /* opened in post_config */
    int registry_used;              /* some OCIRegistry On in this server */
    int s3_allow_insecure;          /* OCIRegS3AllowInsecure: -1 unset */
    /* The HMAC key of session records (ocireg_uploads.h): OCIRegRecordKey,
     * else derived from the S3 secret; empty (a checksum) for the
     * filesystem store. Set by ocireg_record_key_check. */
    const unsigned char *record_key;
    apr_size_t record_keylen;
    int record_key_set;
    /* Seals catalog cursors: from the record key, so hosts sharing a store
     * accept each other's (random when the key is empty). */
    unsigned char cursor_key[OCIREG_CURSOR_KEY_LEN];
} ocireg_server_conf;

/* Configuration (mod_ocireg_config.c). */
#define OCIREG_DEFAULT_UPLOAD_SLOTS 1024
extern int ocireg_conf_upload_slots;
/* The shared cache of store answers (ocireg_cache.h). */
#define OCIREG_DEFAULT_CACHE_ENTRIES 8192
#define OCIREG_DEFAULT_CACHE_SECONDS 5
extern int ocireg_conf_cache_entries;
/* A filtered catalog response checks at most this many names, then answers
 * with the visible ones found and a sealed cursor (ocireg_cursor.h). */
#define OCIREG_DEFAULT_CATALOG_SCAN 10000
extern int ocireg_conf_catalog_scan;
extern apr_interval_time_t ocireg_conf_cache_ttl;
#define OCIREG_DEFAULT_UPLOAD_EXPIRY apr_time_from_sec(86400)
extern apr_interval_time_t ocireg_conf_upload_expiry;
/* How long a host that stopped answering keeps a session locked against
 * other hosts (ocireg_lock.h); longer than httpd's Timeout, so a holder
 * waiting on a slow client does not lose it. Unset, it is Timeout plus
 * this margin. */
#define OCIREG_UPLOAD_LEASE_MARGIN apr_time_from_sec(60)
extern apr_interval_time_t ocireg_conf_upload_lease;
/* A session that never received a byte costs a slot and nothing else to
 * open: it goes much sooner than one with data. */
#define OCIREG_DEFAULT_UPLOAD_EMPTY_EXPIRY apr_time_from_sec(300)
extern apr_interval_time_t ocireg_conf_upload_empty_expiry;
/* Open sessions per client (user, else address) and per repository;
 * 0: no limit. */
#define OCIREG_DEFAULT_UPLOADS_PER_CLIENT 64
#define OCIREG_DEFAULT_UPLOADS_PER_REPOSITORY 256
extern int ocireg_conf_uploads_per_client;
extern int ocireg_conf_uploads_per_repository;

extern const command_rec ocireg_cmds[];
void *ocireg_create_server_conf(apr_pool_t *p, server_rec *s);
void *ocireg_merge_server_conf(apr_pool_t *p, void *basev, void *addv);
void *ocireg_create_dir_conf(apr_pool_t *p, char *dir);
void *ocireg_merge_dir_conf(apr_pool_t *p, void *basev, void *addv);
void ocireg_s3conf_merge(ocireg_store_s3_config *out,
                         const ocireg_store_s3_config *base,
                         const ocireg_store_s3_config *add);
/* Checks that an s3 storage has what it needs; NULL or the message. */
const char *ocireg_s3conf_check(apr_pool_t *p, ocireg_server_conf *sc);
/* Settles the server's record key (see record_key above). */
void ocireg_record_key_check(apr_pool_t *p, ocireg_server_conf *sc);
/* A status for a log line: "(n) meaning", with our own codes' meaning
 * (ocireg_status_text), which httpd's own status argument would print
 * as "APR does not understand this error code". */
const char *ocireg_status_why(apr_pool_t *p, apr_status_t rv);

struct ocireg_token_conf;
struct ocireg_mirror_conf;

typedef struct {
    int enabled;                    /* -1 unset */
    int deletes;                    /* -1 unset, default on */
    struct ocireg_token_conf *token; /* OCIRegToken*; NULL: none here */
    struct ocireg_mirror_conf *mirror; /* OCIRegMirror; NULL: none here */
} ocireg_dir_conf;

/* One API request in flight. */
typedef struct {
    request_rec *r;
    ocireg_route route;
    ocireg_store *store;
    const ocireg_server_conf *conf;
    ocireg_uploads *uploads;
    ocireg_upload_lock *lock;       /* the session's, while held */
    int held_slot;                  /* the session's slot, while held */
    int deletes;
} ocireg_req;

/* Responses. Each returns OK after writing the whole response, so a handler
 * can `return ocireg_respond_error(...)`. */
int ocireg_respond_error(request_rec *r, int status, ocireg_error_code code,
                 const char *message, const char *detail);
int ocireg_respond_error_body(request_rec *r, int status, const char *body);
int ocireg_respond(request_rec *r, int status, const char *content_type,
                const char *body, apr_size_t len);
/* 405 UNSUPPORTED for a DELETE while OCIRegDeletes is Off. */
int ocireg_respond_deletes_off(ocireg_req *q);
/* A storage failure: logged with its cause, answered 500. */
int ocireg_store_failure(request_rec *r, apr_status_t rv, const char *what);

/* Request bodies. */
typedef struct {
    apr_off_t received;   /* bytes written to the store and hashed */
    int status;           /* HTTP status when the body could not be read */
} ocireg_body_result;

/* Streams the body into an open upload writer, hashing what the store
 * accepted and keeping the session's lock (if any) renewed. On a read
 * failure the bytes received so far are still written and hashed, so the
 * client can resume from them. */
apr_status_t ocireg_body_stream(request_rec *r, ocireg_store *store,
                                ocireg_upload_writer *w,
                                ocireg_upload_lock *lock,
                                ocireg_hash_state *hash,
                                ocireg_body_result *res);

/* Response bodies that arrive in pieces (a store's or an upstream's
 * reads, 16 KiB from libcurl): passing each piece down the filter chain on
 * its own costs a trip through every filter and a write to the client per
 * piece. So the pieces are gathered into a buffer of OCIREG_GATHER_SIZE
 * bytes, passed as one bucket; the core writes it, blocking when the
 * client is slower, and keeps at most its own small remainder. A full
 * buffer goes on only once more bytes follow it, so the last piece is
 * still here when the stream ends: the mirror holds it back until the
 * digest matched. */
#define OCIREG_GATHER_SIZE (256 * 1024)
typedef struct {
    request_rec *r;
    apr_bucket_brigade *bb;
    char *buf;
    apr_size_t used;
    int passed;                 /* some bytes went down the chain */
} ocireg_gather;
void ocireg_gather_init(ocireg_gather *g, request_rec *r);
/* An ocireg_sink_fn (ctx: the ocireg_gather). A failure to pass, or a
 * client gone meanwhile, is returned. */
apr_status_t ocireg_gather_add(void *g, const char *buf, apr_size_t n);
/* Passes what is gathered, with the end of the body. */
apr_status_t ocireg_gather_end(ocireg_gather *g);

/* Reads a whole body of at most max bytes into memory. *status is 413 when
 * it is longer, or the read failure's status. */
apr_status_t ocireg_body_read_small(request_rec *r, apr_size_t max,
                                    char **data, apr_size_t *len,
                                    int *status);

/* What an answer with a blob's bytes says of them (size -1: unknown), and
 * taking that back when the bytes turn out not to be there after all
 * (mod_ocireg_blobs.c; the pull-through mirror's fetch too). */
void ocireg_blob_headers(request_rec *r, const char *digest, apr_off_t size);
void ocireg_blob_headers_unset(request_rec *r);

/* Endpoint handlers. */
int ocireg_handle_blob(ocireg_req *q);
int ocireg_handle_uploads(ocireg_req *q);
int ocireg_handle_upload(ocireg_req *q);
int ocireg_handle_manifest(ocireg_req *q);
int ocireg_handle_tags(ocireg_req *q);
int ocireg_handle_catalog(ocireg_req *q);
int ocireg_handle_referrers(ocireg_req *q);

/* Whether r is an API request under an `OCIRegistry On` location. */
int ocireg_registry_here(request_rec *r);

/* Access control (mod_ocireg_access.c). What a request is about, in its
 * environment for Apache's rules (set before authn/authz, sub-requests
 * included). */
#define OCIREG_ENV_REPOSITORY "OCI_REPOSITORY"
#define OCIREG_ENV_ACTION "OCI_ACTION"
void ocireg_access_register(apr_pool_t *p);
/* The credentials header the client sent (Authorization, or
 * Proxy-Authorization for a proxy request), or NULL. */
const char *ocireg_credentials_header(request_rec *r);
/* The action a request is, for Apache's rules: "pull" (GET, HEAD,
 * OPTIONS), "delete" (DELETE, but of an upload session), else "push". */
const char *ocireg_action_of(int method_number, ocireg_route_kind kind);
/* Whether r's client may do action ("pull", "push", "delete") on
 * repository, by the same rules (Require, authz providers) that guard r's
 * own URL, asked through a sub-request; verdicts are kept for the rest of
 * the main request. */
int ocireg_access_allowed(request_rec *r, const char *repository,
                          const char *action);

/* Bearer tokens (mod_ocireg_token.c): `AuthType oci-token`, `Require
 * oci-token` and the OCIRegToken* directives. */
void ocireg_token_register(apr_pool_t *p);
struct ocireg_token_conf *ocireg_token_conf_merge(
    apr_pool_t *p, const struct ocireg_token_conf *base,
    const struct ocireg_token_conf *add);
const char *ocireg_token_cmd(cmd_parms *cmd, void *dconf, const char *arg);
#define OCIREG_TOKEN_CMD(name, what, help)                                 \
    AP_INIT_TAKE1(name, ocireg_token_cmd, what, RSRC_CONF | ACCESS_CONF, help)
#define OCIREG_TOKEN_CMDS                                                  \
    OCIREG_TOKEN_CMD("OCIRegTokenRealm", "realm",                          \
                     "URL of the token server (the Bearer realm)"),        \
    OCIREG_TOKEN_CMD("OCIRegTokenService", "service",                      \
                     "this registry's name for the token server (the "     \
                     "service; tokens' aud must name it)"),                \
    OCIREG_TOKEN_CMD("OCIRegTokenIssuer", "issuer",                        \
                     "the token server's name (tokens' iss)"),             \
    OCIREG_TOKEN_CMD("OCIRegTokenPublicKey", "key",                        \
                     "PEM file of a public key or certificate tokens may " \
                     "be signed with (EC P-256 or RSA; repeatable)"),      \
    OCIREG_TOKEN_CMD("OCIRegTokenLeeway", "leeway",                        \
                     "seconds of clock skew allowed on exp and nbf "       \
                     "(default 30)")

/* Pull-through mirror (mod_ocireg_mirror.c): OCIRegMirror and the
 * refusal of pushes and deletes into mirrored names. */
void ocireg_mirror_register(apr_pool_t *p);
struct ocireg_mirror_conf *ocireg_mirror_conf_merge(
    apr_pool_t *p, const struct ocireg_mirror_conf *base,
    const struct ocireg_mirror_conf *add);
const char *ocireg_mirror_cmd(cmd_parms *cmd, void *dconf, const char *args);
/* The first OCIRegMirror rule of r's location matching repository, or
 * NULL: a local name. */
struct ocireg_mirror_rule;
/* Pull-through reads (mod_ocireg_mirror_fetch.c), for a name a rule
 * mirrors. The manifest: cached, re-checked or fetched, into the out
 * arguments (DECLINED), or the finished answer. The blob, on a miss:
 * DECLINED once the store has it linked here (the caller serves it), or
 * the finished answer (streamed from upstream). */
void ocireg_mirror_child_init(apr_pool_t *pchild);
int ocireg_mirror_manifest(ocireg_req *q,
                           const struct ocireg_mirror_rule *rule, int is_tag,
                           const char **digest, const char **media_type,
                           char **data, apr_size_t *len);
int ocireg_mirror_blob(ocireg_req *q, const struct ocireg_mirror_rule *rule,
                       const char *digest);
/* A tag pushed into a mirrored name (a rule with `local`) stops being the
 * upstream's. */
void ocireg_mirror_tag_pushed(ocireg_req *q, const char *tag);
/* Who this request is in the store's locks and claims (ocireg_lock.h). */
void ocireg_lock_owner_of(ocireg_req *q, ocireg_lock_owner *me);
const struct ocireg_mirror_rule *ocireg_mirror_rule_for(
    request_rec *r, const char *repository);
#define OCIREG_MIRROR_CMDS                                                 \
    AP_INIT_RAW_ARGS("OCIRegMirror", ocireg_mirror_cmd, NULL,              \
                     RSRC_CONF | ACCESS_CONF,                              \
                     "<repository pattern> <upstream registry>... "        \
                     "[credentials=file:<path>|env:USER_VAR,PASS_VAR] "    \
                     "[tag-ttl=<seconds>] [local] [insecure], or Off")

/* A random lowercase UUID (version 4) in pool memory. */
const char *ocireg_new_uuid(apr_pool_t *p);

#endif
