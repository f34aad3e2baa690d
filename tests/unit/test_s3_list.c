/* ocireg_s3_list_pages against a small in-process S3 endpoint that serves
 * ListObjectsV2 pages of generated keys: paging, start-after, stopping
 * early (no request beyond the page that satisfied the caller), `more`,
 * and memory bounded by one page however many pages the prefix holds
 * (peak RSS of forked children listing 1 and 200 pages). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <string.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <pthread.h>
#include <sys/socket.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <cmocka.h>

#include <apr_general.h>
#include <apr_pools.h>
#include <apr_strings.h>
#include "ocireg_s3.h"
#include "ocireg_store.h"

#define KEY_FMT "pfx/key-%08d"

static int listen_fd = -1, port;
static volatile int total_keys;      /* keys under pfx/ */
static volatile int list_requests;   /* ListObjectsV2 requests answered */
static volatile int other_requests;  /* HEAD and PUT */
static pthread_mutex_t count_lock = PTHREAD_MUTEX_INITIALIZER;
static apr_pool_t *pool;

/* The value of query parameter `name` in target (undecoded), or NULL. */
static const char *param(char *buf, size_t size, const char *target,
                         const char *name)
{
    const char *q = strchr(target, '?');
    size_t nlen = strlen(name);
    while (q) {
        q++;
        if (strncmp(q, name, nlen) == 0 && q[nlen] == '=') {
            size_t len = strcspn(q + nlen + 1, "& ");
            if (len >= size)
                len = size - 1;
            memcpy(buf, q + nlen + 1, len);
            buf[len] = '\0';
            return buf;
        }
        q = strchr(q, '&');
    }
    return NULL;
}

/* "%2F" and friends in a start-after value. */
static void percent_decode(char *s)
{
    char *o = s;
    for (; *s; s++) {
        if (s[0] == '%' && s[1] && s[2]) {
            char hex[3] = { s[1], s[2], 0 };
            *o++ = (char)strtol(hex, NULL, 16);
            s += 2;
        }
        else {
            *o++ = *s;
        }
    }
    *o = '\0';
}

/* The keys a prefix holds: pfx/key-N for the helper's tests; for the
 * store's, every repository's blob link under repositories/ (what the
 * catalog backfill scans) and its entry under catalog/. */
static void key_for(char *key, size_t size, const char *prefix, int i)
{
    if (strstr(prefix, "repositories"))
        snprintf(key, size, "pfx/repositories/r%08d/_layers/sha256/"
                 "%064d", i, i);
    else if (strstr(prefix, "catalog"))
        snprintf(key, size, "pfx/catalog/r%08d", i);
    else
        snprintf(key, size, KEY_FMT, i);
}

/* The position after a key: its first number. */
static int index_after(const char *key)
{
    const char *d = key + strcspn(key, "0123456789");
    return atoi(d) + 1;
}

static void answer(int fd, const char *target)
{
    char v[256], key[256], prefix[256] = "";
    int from = 0, max = 1000, i, end;
    size_t cap = 1 << 20, len = 0;
    char *body = malloc(cap), head[256];

    if (param(prefix, sizeof(prefix), target, "prefix"))
        percent_decode(prefix);
    if (param(v, sizeof(v), target, "continuation-token"))
        from = atoi(v);
    else if (param(v, sizeof(v), target, "start-after")) {
        percent_decode(v);
        from = index_after(v);
    }
    if (param(v, sizeof(v), target, "max-keys"))
        max = atoi(v);
    end = from + max < total_keys ? from + max : total_keys;
    len += (size_t)snprintf(body + len, cap - len,
                            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>"
                            "<ListBucketResult><Name>bkt</Name>"
                            "<Prefix>pfx/</Prefix><KeyCount>%d</KeyCount>"
                            "<MaxKeys>%d</MaxKeys>"
                            "<IsTruncated>%s</IsTruncated>",
                            end - from, max,
                            end < total_keys ? "true" : "false");
    if (end < total_keys)
        len += (size_t)snprintf(body + len, cap - len,
                                "<NextContinuationToken>%d"
                                "</NextContinuationToken>", end);
    for (i = from; i < end; i++) {
        key_for(key, sizeof(key), prefix, i);
        len += (size_t)snprintf(
            body + len, cap - len,
            "<Contents><Key>%s</Key><LastModified>2026-11-29T00:00:00.000Z"
            "</LastModified><ETag>&quot;d41d8cd98f00b204e9800998ecf8427e"
            "&quot;</ETag><Size>0</Size><StorageClass>STANDARD"
            "</StorageClass></Contents>", key);
    }
    len += (size_t)snprintf(body + len, cap - len, "</ListBucketResult>");
    snprintf(head, sizeof(head),
             "HTTP/1.1 200 OK\r\nContent-Type: application/xml\r\n"
             "Content-Length: %zu\r\n\r\n", len);
    pthread_mutex_lock(&count_lock);
    list_requests++;
    pthread_mutex_unlock(&count_lock);
    if (write(fd, head, strlen(head)) < 0 || write(fd, body, len) < 0) {
        /* the client went away */
    }
    free(body);
}

static void *serve_connection(void *arg)
{
    int fd = (int)(intptr_t)arg;
    char buf[16384];
    size_t have = 0;
    for (;;) {
        char *end;
        ssize_t n = read(fd, buf + have, sizeof(buf) - 1 - have);
        if (n <= 0)
            break;
        have += (size_t)n;
        buf[have] = '\0';
        while ((end = strstr(buf, "\r\n\r\n")) != NULL) {
            char target[8192], method[16];
            size_t used = (size_t)(end + 4 - buf);
            const char *cl = strcasestr(buf, "\r\ncontent-length:");
            long body = cl && cl < end ? atol(cl + 17) : 0;
            if (sscanf(buf, "%15s %8191s", method, target) != 2)
                break;
            /* Request bodies (the marker's PUT) are empty here. */
            if (body > 0)
                break;
            if (strcmp(method, "GET") == 0)
                answer(fd, target);
            else {
                /* HEAD: nothing there; PUT: stored. */
                const char *r = strcmp(method, "HEAD") == 0
                    ? "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"
                    : "HTTP/1.1 200 OK\r\nETag: \"e\"\r\n"
                      "Content-Length: 0\r\n\r\n";
                pthread_mutex_lock(&count_lock);
                other_requests++;
                pthread_mutex_unlock(&count_lock);
                if (write(fd, r, strlen(r)) < 0)
                    break;
            }
            memmove(buf, buf + used, have - used);
            have -= used;
            buf[have] = '\0';
        }
    }
    close(fd);
    return NULL;
}

static void *serve(void *arg)
{
    (void)arg;
    for (;;) {
        pthread_t t;
        int fd = accept(listen_fd, NULL, NULL);
        if (fd < 0)
            return NULL;
        pthread_create(&t, NULL, serve_connection, (void *)(intptr_t)fd);
        pthread_detach(t);
    }
}

static ocireg_s3 *client(apr_pool_t *p)
{
    ocireg_s3_config cfg;
    ocireg_s3 *s3 = NULL;
    memset(&cfg, 0, sizeof(cfg));
    cfg.endpoint = apr_psprintf(p, "http://127.0.0.1:%d", port);
    cfg.bucket = "bkt";
    cfg.region = "us-east-1";
    cfg.access_key = "AKIDTEST";
    cfg.secret_key = "secret";
    cfg.connect_timeout_ms = 5000;
    cfg.timeout_ms = 30000;
    assert_int_equal(ocireg_s3_create(p, &cfg, &s3), APR_SUCCESS);
    return s3;
}

typedef struct {
    int seen, stop_at, next;
    int in_order;
} count_ctx;

static apr_status_t count_key(void *ctx, apr_pool_t *page, const char *k,
                              int is_prefix)
{
    count_ctx *c = ctx;
    char want[64];
    (void)page;
    (void)is_prefix;
    snprintf(want, sizeof(want), "key-%08d", c->next++);
    if (strcmp(k, want) != 0)
        c->in_order = 0;
    c->seen++;
    return c->stop_at && c->seen == c->stop_at ? OCIREG_S3_LIST_STOP
                                               : APR_SUCCESS;
}

static int list(ocireg_s3 *s3, const char *after, int max_keys, int stop_at,
                int first, int *more)
{
    ocireg_s3_list_args a;
    count_ctx c = { 0, stop_at, first, 1 };
    memset(&a, 0, sizeof(a));
    a.prefix = "pfx/";
    a.start_after = after;
    a.max_keys = max_keys;
    list_requests = 0;
    assert_int_equal(ocireg_s3_list_pages(s3, pool, &a, count_key, &c, more),
                     APR_SUCCESS);
    assert_true(c.in_order);
    return c.seen;
}

static void test_paging(void **st)
{
    ocireg_s3 *s3 = client(pool);
    int more = -1;
    (void)st;

    total_keys = 2500;
    assert_int_equal(list(s3, NULL, 0, 0, 0, &more), 2500);
    assert_int_equal(list_requests, 3);
    assert_false(more);
    /* A page of 1000 from the start: one request, and more follow. */
    assert_int_equal(list(s3, NULL, 1000, 1000, 0, &more), 1000);
    assert_int_equal(list_requests, 1);
    assert_true(more);
    /* From start-after; the last page ends the listing: nothing follows. */
    assert_int_equal(list(s3, "pfx/key-00001999", 1000, 1000, 2000, &more),
                     500);
    assert_int_equal(list_requests, 1);
    assert_false(more);
    /* Stopping mid-page tells whether keys follow on that page. */
    assert_int_equal(list(s3, "pfx/key-00002400", 1000, 98, 2401, &more), 98);
    assert_int_equal(list_requests, 1);
    assert_true(more);
    assert_int_equal(list(s3, "pfx/key-00002400", 1000, 99, 2401, &more), 99);
    assert_false(more);
    /* Exactly at a page's end, when the listing ends there too. */
    total_keys = 2000;
    assert_int_equal(list(s3, "pfx/key-00000999", 1000, 1000, 1000, &more),
                     1000);
    assert_int_equal(list_requests, 1);
    assert_false(more);
}

static apr_status_t drop_key(void *ctx, apr_pool_t *page, const char *k,
                             int is_prefix)
{
    (void)page;
    (void)is_prefix;
    (void)k;
    (*(long *)ctx)++;
    return APR_SUCCESS;
}

/* Peak RSS (KiB) of a child that lists `pages` pages of 1000 keys, handing
 * them to a callback that keeps nothing (paged) or into one array (all). */
static long peak_kib(int pages, int keep_all)
{
    int fds[2];
    pid_t pid;
    long kib = -1;

    total_keys = pages * 1000;
    assert_int_equal(pipe(fds), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        apr_pool_t *p;
        struct rusage ru;
        long seen = 0;
        apr_status_t rv;
        close(fds[0]);
        apr_pool_create(&p, NULL);
        if (keep_all) {
            apr_array_header_t *keys;
            rv = ocireg_s3_list(client(p), p, "pfx/", NULL, &keys);
            seen = rv == APR_SUCCESS ? keys->nelts : -1;
        }
        else {
            ocireg_s3_list_args a;
            memset(&a, 0, sizeof(a));
            a.prefix = "pfx/";
            rv = ocireg_s3_list_pages(client(p), p, &a, drop_key, &seen,
                                      NULL);
        }
        getrusage(RUSAGE_SELF, &ru);
        kib = rv == APR_SUCCESS && seen == total_keys ? ru.ru_maxrss : -1;
        if (write(fds[1], &kib, sizeof(kib)) != sizeof(kib))
            _exit(1);
        _exit(0);
    }
    close(fds[1]);
    assert_int_equal(read(fds[0], &kib, sizeof(kib)), sizeof(kib));
    close(fds[0]);
    waitpid(pid, NULL, 0);
    assert_true(kib > 0);
    return kib;
}

/* The same for the S3 store's catalog on a store without its index: the
 * first page scans every key under repositories/ (the backfill), then
 * lists one page of catalog/. */
static long catalog_peak_kib(int repos)
{
    int fds[2];
    pid_t pid;
    long kib = -1;

    total_keys = repos;
    assert_int_equal(pipe(fds), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        apr_pool_t *p;
        struct rusage ru;
        ocireg_store_s3_config cfg;
        ocireg_store *store;
        apr_array_header_t *names = NULL;
        int more = 0;
        apr_status_t rv;
        close(fds[0]);
        apr_pool_create(&p, NULL);
        memset(&cfg, 0, sizeof(cfg));
        cfg.endpoint = apr_psprintf(p, "http://127.0.0.1:%d", port);
        cfg.bucket = "bkt";
        cfg.region = "us-east-1";
        cfg.access_key = "AKIDTEST";
        cfg.secret_key = "secret";
        cfg.prefix = "pfx/";
        cfg.connect_timeout_ms = 5000;
        cfg.timeout_ms = 30000;
        cfg.part_size = 5 * 1024 * 1024;
        cfg.spool_dir = "/tmp";
        rv = ocireg_store_s3_create(p, &cfg, &store);
        if (rv == APR_SUCCESS)
            rv = store->ops->repo_list(store, p, NULL, 1000, &names, &more);
        getrusage(RUSAGE_SELF, &ru);
        kib = rv == APR_SUCCESS && names->nelts == (repos < 1000 ? repos
                                                                 : 1000)
                      && more == (repos > 1000)
                  ? ru.ru_maxrss
                  : -1;
        if (write(fds[1], &kib, sizeof(kib)) != sizeof(kib))
            _exit(1);
        _exit(0);
    }
    close(fds[1]);
    assert_int_equal(read(fds[0], &kib, sizeof(kib)), sizeof(kib));
    close(fds[0]);
    waitpid(pid, NULL, 0);
    assert_true(kib > 0);
    return kib;
}

static void test_catalog_memory_bounded(void **st)
{
    long one, many;
    (void)st;
    other_requests = 0;
    one = catalog_peak_kib(1000);
    many = catalog_peak_kib(100000);
    print_message("peak RSS of the S3 catalog's first page on a store "
                  "without index: 1000 repositories: %ld KiB; 100000 "
                  "repositories: %ld KiB (+%ld)\n", one, many, many - one);
    assert_true(many - one < 2048);
}

static void test_memory_bounded_by_a_page(void **st)
{
    long one, some, many, all;
    (void)st;
    one = peak_kib(1, 0);
    some = peak_kib(20, 0);
    many = peak_kib(200, 0);
    all = peak_kib(200, 1);
    print_message("peak RSS listing 1 page: %ld KiB; paged, 20 pages: %ld "
                  "KiB (+%ld), 200 pages (200000 keys): %ld KiB (+%ld); "
                  "200 pages with every key kept: %ld KiB (+%ld)\n", one,
                  some, some - one, many, many - one, all, all - one);
    /* One page at a time, whatever the prefix holds: ten times the pages
     * cost no more. */
    assert_true(many - some < 512);
    assert_true(many - one < 2048);
}

static int setup_server(void **st)
{
    struct sockaddr_in a;
    socklen_t alen = sizeof(a);
    pthread_t t;
    (void)st;
    apr_initialize();
    apr_pool_create(&pool, NULL);
    listen_fd = socket(AF_INET, SOCK_STREAM, 0);
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(listen_fd, (struct sockaddr *)&a, sizeof(a)) != 0
        || listen(listen_fd, 16) != 0
        || getsockname(listen_fd, (struct sockaddr *)&a, &alen) != 0)
        return -1;
    port = ntohs(a.sin_port);
    pthread_create(&t, NULL, serve, NULL);
    pthread_detach(t);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_paging),
        cmocka_unit_test(test_memory_bounded_by_a_page),
        cmocka_unit_test(test_catalog_memory_bounded),
    };
    return cmocka_run_group_tests(tests, setup_server, NULL);
}
