/* Drives the upstream registry client (ocireg_upstream.h) against a real
 * registry, for test_upstream_client.py: one operation per run (repeated
 * --repeat times in the one process, sharing its token cache), its
 * outcome on stdout as `name=value` lines.
 *
 *   upstream_client_ops [--user U] [--password P] [--repeat N]
 *                       [--if-none-match V] [--out FILE] [--retries N]
 *                       BASE_URL OP REPO REFERENCE
 *
 * OP: get-manifest (read whole, capped), head-manifest, get-blob
 * (streamed into FILE, "-" for stdout, default none), head-blob. Printed:
 * outcome, status, content_type, digest, etag, content_length, bytes and
 * sha256 of the body received, not_modified, redirects, token_fetches
 * (over all repeats), error. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/evp.h>

#include <apr_general.h>
#include <apr_pools.h>
#include <apr_strings.h>

#include "ocireg_upstream.h"

typedef struct {
    EVP_MD_CTX *md;
    FILE *out;
    apr_off_t bytes;
} body_sink;

static apr_status_t to_sink(void *ctx, const char *buf, apr_size_t n)
{
    body_sink *s = ctx;
    EVP_DigestUpdate(s->md, buf, n);
    s->bytes += (apr_off_t)n;
    if (s->out && fwrite(buf, 1, n, s->out) != n)
        return APR_EGENERAL;
    return APR_SUCCESS;
}

static const char *outcome(apr_status_t rv)
{
    switch (rv) {
    case APR_SUCCESS:
        return "ok";
    case APR_ENOENT:
        return "enoent";
    case OCIREG_UP_EUNAVAILABLE:
        return "eunavailable";
    case OCIREG_UP_EREFUSED:
        return "erefused";
    case OCIREG_UP_ETRUNCATED:
        return "etruncated";
    case OCIREG_UP_EINVALID:
        return "einvalid";
    default:
        return "other";
    }
}

static void usage(void)
{
    fprintf(stderr, "usage: upstream_client_ops [--user U] [--password P] "
                    "[--repeat N] [--if-none-match V] [--out FILE] "
                    "[--retries N] BASE_URL OP REPO REFERENCE\n");
    exit(2);
}

int main(int argc, char **argv)
{
    apr_pool_t *p;
    ocireg_upstream_config cfg;
    ocireg_upstream_tokens *tokens;
    ocireg_upstream *u;
    ocireg_upstream_req rq;
    ocireg_upstream_result res;
    const char *inm = NULL, *outfile = NULL, *op;
    int repeat = 1, i, fetches = 0, a = 1;
    apr_status_t rv = APR_EGENERAL;
    body_sink sink;
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;

    apr_initialize();
    apr_pool_create(&p, NULL);
    memset(&cfg, 0, sizeof(cfg));
    cfg.http.connect_timeout_ms = 3000;
    cfg.http.timeout_ms = 20000;
    cfg.retries = 1;
    for (; a + 1 < argc && strncmp(argv[a], "--", 2) == 0; a += 2) {
        if (strcmp(argv[a], "--user") == 0)
            cfg.user = argv[a + 1];
        else if (strcmp(argv[a], "--password") == 0)
            cfg.password = argv[a + 1];
        else if (strcmp(argv[a], "--repeat") == 0)
            repeat = atoi(argv[a + 1]);
        else if (strcmp(argv[a], "--if-none-match") == 0)
            inm = argv[a + 1];
        else if (strcmp(argv[a], "--out") == 0)
            outfile = argv[a + 1];
        else if (strcmp(argv[a], "--retries") == 0)
            cfg.retries = atoi(argv[a + 1]);
        else
            usage();
    }
    if (argc - a != 4)
        usage();
    cfg.base_url = argv[a];
    op = argv[a + 1];
    memset(&rq, 0, sizeof(rq));
    rq.repo = argv[a + 2];
    rq.reference = argv[a + 3];
    rq.if_none_match = inm;
    if (strcmp(op, "get-manifest") == 0)
        rq.kind = OCIREG_UP_MANIFEST;
    else if (strcmp(op, "head-manifest") == 0) {
        rq.kind = OCIREG_UP_MANIFEST;
        rq.head = 1;
    }
    else if (strcmp(op, "get-blob") == 0)
        rq.kind = OCIREG_UP_BLOB;
    else if (strcmp(op, "head-blob") == 0) {
        rq.kind = OCIREG_UP_BLOB;
        rq.head = 1;
    }
    else
        usage();
    if (ocireg_upstream_tokens_create(p, 16, &tokens) != APR_SUCCESS
        || ocireg_upstream_create(p, &cfg, NULL, tokens, &u) != APR_SUCCESS) {
        fprintf(stderr, "bad configuration\n");
        return 2;
    }
    for (i = 0; i < repeat; i++) {
        memset(&sink, 0, sizeof(sink));
        sink.md = EVP_MD_CTX_new();
        EVP_DigestInit_ex(sink.md, EVP_sha256(), NULL);
        if (rq.kind == OCIREG_UP_BLOB && !rq.head) {
            if (outfile)
                sink.out = strcmp(outfile, "-") == 0 ? stdout
                                                     : fopen(outfile, "wb");
            rq.sink = to_sink;
            rq.sink_ctx = &sink;
        }
        rv = ocireg_upstream_fetch(u, p, &rq, &res);
        if (sink.out && sink.out != stdout)
            fclose(sink.out);
        if (!rq.sink && res.body)
            to_sink(&sink, res.body, res.body_len);
        EVP_DigestFinal_ex(sink.md, md, &mdlen);
        EVP_MD_CTX_free(sink.md);
        fetches += res.token_fetches;
    }
    /* With the body on stdout, the report goes to stderr. */
    {
        FILE *o = outfile && strcmp(outfile, "-") == 0 ? stderr : stdout;
        fprintf(o, "outcome=%s\nstatus=%ld\n", outcome(rv), res.status);
        fprintf(o, "content_type=%s\ndigest=%s\netag=%s\n",
                res.content_type ? res.content_type : "",
                res.digest ? res.digest : "", res.etag ? res.etag : "");
        fprintf(o, "content_length=%" APR_OFF_T_FMT "\n", res.content_length);
        fprintf(o, "bytes=%" APR_OFF_T_FMT "\nsha256=", sink.bytes);
        for (i = 0; i < (int)mdlen; i++)
            fprintf(o, "%02x", md[i]);
        fprintf(o, "\nnot_modified=%d\nredirects=%d\ntoken_fetches=%d\n",
                res.not_modified, res.redirects, fetches);
        fprintf(o, "error=%s\n", res.error ? res.error : "");
    }
    apr_pool_destroy(p);
    apr_terminate();
    return 0;
}
