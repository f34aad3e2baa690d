/* Drives the S3 client (ocireg_s3.h) against a real bucket, for
 * test_s3_client_ops.py: one operation per run, its outcome on stdout as
 * `name=value` words. The bucket comes from S3_ENDPOINT, S3_BUCKET,
 * S3_ACCESS_KEY and S3_SECRET_KEY.
 *
 *   put KEY TEXT                      PUT an object holding TEXT
 *   head KEY                          status, etag
 *   get KEY                           status, body
 *   copy SRC DST [IF_MATCH]           status, etag (metadata m=copied)
 *   part-copy DST SRC [IF_MATCH [UPLOAD_ID]]
 *                                     a multipart upload of DST whose one
 *                                     part is a copy of SRC, completed when
 *                                     the copy worked (aborted otherwise);
 *                                     UPLOAD_ID: that upload instead (none
 *                                     is created, completed or aborted)
 *   part-stream KEY N                 a multipart upload of KEY from N
 *                                     parts streamed from a reader
 *                                     (ocireg_s3_put_stream with the part's
 *                                     query) of 5 MiB and a last one of
 *                                     1 KiB
 *   delete-many PREFIX N              DeleteObjects of PREFIX0 .. PREFIX<N-1>
 *   run KIND PREFIX N [PARALLEL [SRC]] ocireg_s3_run of N ops of KIND
 *                                     (head, get, put, delete, copy) on
 *                                     PREFIX0 ..; copies are of SRC; counts
 *                                     of each outcome, and how often the
 *                                     while-waiting hook ran; the batch
 *                                     runs S3OPS_REPEAT times (default 1)
 *
 * and the S3 store's pull-through mirror records (ocireg_store.h), in a
 * store under S3_PREFIX ("" or ending in '/'):
 *   mark-put NAME TAG TEXT            status
 *   mark-get NAME TAG                 status, text
 *   mark-delete NAME TAG              status
 *   fill-claim DIGEST HOST INSTANCE PID LEASE
 *                                     status (ebusy, einval too): the claim
 *                                     of holder HOST INSTANCE(hex) PID with
 *                                     a lease of LEASE seconds (negative:
 *                                     run out)
 *   fill-release DIGEST HOST INSTANCE PID */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <curl/curl.h>

#include <apr_general.h>
#include <apr_pools.h>
#include <apr_strings.h>
#include <apr_tables.h>

#include "ocireg_s3.h"
#include "ocireg_store.h"

static int hooks;

static void count_hook(void *ctx)
{
    (void)ctx;
    hooks++;
}

static const char *status_name(apr_status_t rv)
{
    switch (rv) {
    case APR_SUCCESS:
        return "ok";
    case APR_ENOENT:
        return "enoent";
    case APR_EEXIST:
        return "eexist";
    case OCIREG_S3_ECHANGED:
        return "echanged";
    case OCIREG_S3_EUNAVAILABLE:
        return "eunavailable";
    case OCIREG_S3_EREFUSED:
        return "erefused";
    case APR_EBUSY:
        return "ebusy";
    case APR_EINVAL:
        return "einval";
    default:
        return "other";
    }
}

static int usage(void)
{
    fprintf(stderr, "usage: s3_client_ops put|head|get|copy|part-copy|"
                    "delete-many|run|mark-*|fill-* ARGS (see the source)\n");
    return 2;
}

static void print_result(apr_status_t rv, const ocireg_s3_result *res)
{
    printf("status=%s etag=%s", status_name(rv),
           res->etag ? res->etag : "-");
    if (rv != APR_SUCCESS && rv != APR_ENOENT)
        printf(" error=%s", ocireg_s3_last_error());
    printf("\n");
}

static int run_ops(ocireg_s3 *s3, apr_pool_t *p, int argc, char **argv)
{
    static const char *const kinds[] = {"head", "get", "put", "delete",
                                        "copy"};
    int n, parallel, i, k, counts[6] = {0};
    ocireg_s3_op *ops;
    apr_status_t rv;

    if (argc < 5)
        return usage();
    for (k = 0; k < 5 && strcmp(argv[2], kinds[k]) != 0; k++)
        ;
    if (k == 5)
        return usage();
    n = atoi(argv[4]);
    parallel = argc > 5 ? atoi(argv[5]) : 0;
    ops = apr_pcalloc(p, sizeof(*ops) * (apr_size_t)(n > 0 ? n : 1));
    for (i = 0; i < n; i++) {
        ops[i].kind = (ocireg_s3_op_kind)k;
        ops[i].key = apr_psprintf(p, "%s%d", argv[3], i);
        ops[i].max = 1024;
        ops[i].data = ops[i].key;
        ops[i].len = strlen(ops[i].key);
        ops[i].src_key = argc > 6 ? argv[6] : NULL;
    }
    ocireg_s3_while_waiting(count_hook, &hooks);
    /* S3OPS_REPEAT: the batch again, on the connections of the first. */
    for (i = getenv("S3OPS_REPEAT") ? atoi(getenv("S3OPS_REPEAT")) : 1;
         i > 0; i--)
        if ((rv = ocireg_s3_run(s3, p, ops, n, parallel)) != APR_SUCCESS)
            break;
    ocireg_s3_while_waiting_clear(&hooks);
    for (i = 0; i < n; i++) {
        const char *s = status_name(ops[i].status);
        static const char *const names[] = {"ok", "enoent", "eexist",
                                            "echanged", "eunavailable",
                                            "erefused"};
        int j;
        for (j = 0; j < 6 && strcmp(s, names[j]) != 0; j++)
            ;
        if (j < 6)
            counts[j]++;
        /* A GET's body is its key, as put wrote it. */
        if (k == 1 && ops[i].status == APR_SUCCESS
            && (ops[i].res.body_len != strlen(ops[i].key)
                || memcmp(ops[i].res.body, ops[i].key,
                          ops[i].res.body_len) != 0))
            printf("mismatch=%s\n", ops[i].key);
    }
    printf("batch=%s ok=%d enoent=%d eexist=%d echanged=%d eunavailable=%d "
           "erefused=%d other=%d hooks=%d\n",
           status_name(rv), counts[0], counts[1], counts[2], counts[3],
           counts[4], counts[5],
           n - counts[0] - counts[1] - counts[2] - counts[3] - counts[4]
               - counts[5],
           hooks);
    return 0;
}

static int part_copy(ocireg_s3 *s3, apr_pool_t *p, int argc, char **argv)
{
    const char *upload_id = argc > 5 ? argv[5] : NULL, *etag = NULL;
    const char *if_match = argc > 4 && *argv[4] ? argv[4] : NULL;
    apr_array_header_t *parts;
    apr_status_t rv;
    int own = !upload_id;

    if (own && (rv = ocireg_s3_mpu_create(s3, p, argv[2], &upload_id))
                   != APR_SUCCESS) {
        printf("status=%s error=%s\n", status_name(rv),
               ocireg_s3_last_error());
        return 1;
    }
    rv = ocireg_s3_part_copy(s3, p, argv[2], upload_id, 1, argv[3], if_match,
                             &etag);
    printf("status=%s etag=%s", status_name(rv), etag ? etag : "-");
    if (own && rv == APR_SUCCESS) {
        ocireg_s3_part *pt;
        parts = apr_array_make(p, 1, sizeof(ocireg_s3_part));
        pt = apr_array_push(parts);
        pt->number = 1;
        pt->etag = etag;
        rv = ocireg_s3_mpu_complete(s3, p, argv[2], upload_id, parts);
        printf(" complete=%s", status_name(rv));
    }
    else if (own) {
        printf(" abort=%s",
               status_name(ocireg_s3_mpu_abort(s3, p, argv[2], upload_id)));
    }
    printf("\n");
    return 0;
}

typedef struct {
    apr_off_t left;
} filler;

static apr_ssize_t fill_x(void *ctx, char *buf, apr_size_t n)
{
    filler *f = ctx;
    if ((apr_off_t)n > f->left)
        n = (apr_size_t)f->left;
    memset(buf, 'x', n);
    f->left -= (apr_off_t)n;
    return (apr_ssize_t)n;
}

static int part_stream(ocireg_s3 *s3, apr_pool_t *p, const char *key, int n)
{
    const char *upload_id;
    apr_array_header_t *parts = apr_array_make(p, n, sizeof(ocireg_s3_part));
    apr_status_t rv = ocireg_s3_mpu_create(s3, p, key, &upload_id);
    int i;

    for (i = 1; rv == APR_SUCCESS && i <= n; i++) {
        filler f;
        ocireg_s3_result res;
        ocireg_s3_part *pt;
        f.left = i < n ? 5 * 1024 * 1024 : 1024;
        rv = ocireg_s3_put_stream(
            s3, p, key,
            apr_psprintf(p, "partNumber=%d&uploadId=%s", i, upload_id),
            f.left, fill_x, &f, &res);
        pt = apr_array_push(parts);
        pt->number = i;
        pt->etag = rv == APR_SUCCESS ? res.etag : NULL;
    }
    if (rv == APR_SUCCESS)
        rv = ocireg_s3_mpu_complete(s3, p, key, upload_id, parts);
    else if (upload_id)
        ocireg_s3_mpu_abort(s3, p, key, upload_id);
    printf("status=%s", status_name(rv));
    if (rv != APR_SUCCESS)
        printf(" error=%s", ocireg_s3_last_error());
    printf("\n");
    return 0;
}

static void holder(ocireg_lock_owner *o, char **argv, int with_lease)
{
    memset(o, 0, sizeof(*o));
    apr_cpystrn(o->host, argv[0], sizeof(o->host));
    o->instance = (apr_uint64_t)apr_strtoi64(argv[1], NULL, 16);
    o->pid = apr_atoi64(argv[2]);
    o->expires = with_lease
                     ? apr_time_now() + apr_time_from_sec(apr_atoi64(argv[3]))
                     : 0;
}

/* The store's mirror records (see the top). */
static int store_ops(apr_pool_t *p, int argc, char **argv)
{
    ocireg_store_s3_config cfg;
    ocireg_store *s;
    ocireg_lock_owner me;
    const char *cmd = argv[1];
    char *text = NULL;
    apr_status_t rv;

    memset(&cfg, 0, sizeof(cfg));
    cfg.endpoint = getenv("S3_ENDPOINT");
    cfg.bucket = getenv("S3_BUCKET");
    cfg.access_key = getenv("S3_ACCESS_KEY");
    cfg.secret_key = getenv("S3_SECRET_KEY");
    cfg.prefix = getenv("S3_PREFIX") ? getenv("S3_PREFIX") : "";
    cfg.region = "us-east-1";
    cfg.connect_timeout_ms = 5000;
    cfg.timeout_ms = 30000;
    cfg.retries = 2;
    cfg.part_size = 5 * 1024 * 1024;
    cfg.spool_dir = "/tmp";
    if (ocireg_store_s3_create(p, &cfg, &s) != APR_SUCCESS)
        return 2;
    if (strcmp(cmd, "mark-put") == 0 && argc == 5)
        rv = s->ops->mirror_mark_put(s, p, argv[2], argv[3], argv[4]);
    else if (strcmp(cmd, "mark-get") == 0 && argc == 4)
        rv = s->ops->mirror_mark_get(s, p, argv[2], argv[3], &text);
    else if (strcmp(cmd, "mark-delete") == 0 && argc == 4)
        rv = s->ops->mirror_mark_delete(s, p, argv[2], argv[3]);
    else if (strcmp(cmd, "fill-claim") == 0 && argc == 7) {
        holder(&me, argv + 3, 1);
        rv = s->ops->fill_claim(s, p, argv[2], &me);
    }
    else if (strcmp(cmd, "fill-release") == 0 && argc == 6) {
        holder(&me, argv + 3, 0);
        s->ops->fill_release(s, p, argv[2], &me);
        rv = APR_SUCCESS;
    }
    else
        return usage();
    printf("status=%s", status_name(rv));
    if (text)
        printf(" text=%s", text);
    if (rv != APR_SUCCESS && rv != APR_ENOENT && rv != APR_EBUSY
        && rv != APR_EINVAL)
        printf(" error=%s", ocireg_store_last_error());
    printf("\n");
    return 0;
}

int main(int argc, char **argv)
{
    apr_pool_t *p;
    ocireg_s3_config cfg;
    ocireg_s3 *s3;
    ocireg_s3_result res;
    apr_status_t rv;
    const char *cmd;
    int rc = 0;

    if (argc < 3)
        return usage();
    apr_initialize();
    apr_pool_create(&p, NULL);
    memset(&cfg, 0, sizeof(cfg));
    cfg.endpoint = getenv("S3_ENDPOINT");
    cfg.bucket = getenv("S3_BUCKET");
    cfg.access_key = getenv("S3_ACCESS_KEY");
    cfg.secret_key = getenv("S3_SECRET_KEY");
    cfg.region = "us-east-1";
    cfg.connect_timeout_ms = 5000;
    cfg.timeout_ms = 30000;
    cfg.retries = 2;
    if (!cfg.endpoint || ocireg_s3_create(p, &cfg, &s3) != APR_SUCCESS) {
        fprintf(stderr, "s3_client_ops: set S3_ENDPOINT, S3_BUCKET, "
                        "S3_ACCESS_KEY, S3_SECRET_KEY\n");
        return 2;
    }
    memset(&res, 0, sizeof(res));
    cmd = argv[1];
    if (strcmp(cmd, "put") == 0 && argc == 4) {
        rv = ocireg_s3_put(s3, p, argv[2], argv[3], strlen(argv[3]), NULL, 0,
                           &res);
        print_result(rv, &res);
    }
    else if (strcmp(cmd, "head") == 0 && argc == 3) {
        rv = ocireg_s3_head(s3, p, argv[2], &res);
        printf("meta.m=%s ", apr_table_get(res.meta, "m") ?: "-");
        print_result(rv, &res);
    }
    else if (strcmp(cmd, "get") == 0 && argc == 3) {
        rv = ocireg_s3_get_small(s3, p, argv[2], 1 << 20, &res);
        printf("body=%.*s ", rv == APR_SUCCESS ? (int)res.body_len : 1,
               rv == APR_SUCCESS ? res.body : "-");
        print_result(rv, &res);
    }
    else if (strcmp(cmd, "copy") == 0 && (argc == 4 || argc == 5)) {
        apr_table_t *meta = apr_table_make(p, 1);
        apr_table_set(meta, "m", "copied");
        rv = ocireg_s3_copy(s3, p, argv[2], argv[3], meta,
                            argc == 5 ? argv[4] : NULL, &res);
        print_result(rv, &res);
    }
    else if (strcmp(cmd, "part-copy") == 0 && argc >= 4 && argc <= 6) {
        rc = part_copy(s3, p, argc, argv);
    }
    else if (strcmp(cmd, "part-stream") == 0 && argc == 4) {
        rc = part_stream(s3, p, argv[2], atoi(argv[3]));
    }
    else if (strcmp(cmd, "delete-many") == 0 && argc == 4) {
        apr_array_header_t *keys = apr_array_make(p, 16, sizeof(char *));
        int i, n = atoi(argv[3]);
        for (i = 0; i < n; i++)
            APR_ARRAY_PUSH(keys, const char *) =
                apr_psprintf(p, "%s%d", argv[2], i);
        rv = ocireg_s3_delete_many(s3, p, keys);
        printf("status=%s", status_name(rv));
        if (rv != APR_SUCCESS)
            printf(" error=%s", ocireg_s3_last_error());
        printf("\n");
    }
    else if (strcmp(cmd, "run") == 0) {
        rc = run_ops(s3, p, argc, argv);
    }
    else if (strncmp(cmd, "mark-", 5) == 0 || strncmp(cmd, "fill-", 5) == 0) {
        rc = store_ops(p, argc, argv);
    }
    else {
        rc = usage();
    }
    /* Handles and connections go with the pool (the sanitizer build checks
     * for leaks). */
    apr_pool_destroy(p);
    apr_terminate();
    curl_global_cleanup();
    return rc;
}
