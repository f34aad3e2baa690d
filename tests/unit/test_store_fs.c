/* Unit tests for the filesystem driver of ocireg_store.h */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <string.h>
#include <strings.h>
#include <stdio.h>
#include <stdlib.h>
#include <ftw.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include <apr_general.h>
#include <apr_pools.h>
#include <apr_strings.h>
#include <apr_tables.h>
#include <apr_file_io.h>
#include <openssl/evp.h>

#include "ocireg_store.h"
#include "ocireg_listing.h"

static apr_pool_t *pool;
static char tmpdir[256];
static const char *root;
static ocireg_store *s;
static const ocireg_store_ops *ops;

#define UUID1 "123e4567-e89b-42d3-a456-426614174001"
#define UUID2 "123e4567-e89b-42d3-a456-426614174002"
#define MT_MANIFEST "application/vnd.oci.image.manifest.v1+json"
#define MT_INDEX "application/vnd.oci.image.index.v1+json"

/* sha256 through OpenSSL, independent of ocireg_hash */
static const char *sha(const void *data, size_t len)
{
    unsigned char md[32];
    unsigned int mdlen = 0;
    EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL);
    char *out = apr_palloc(pool, 7 + 64 + 1);
    memcpy(out, "sha256:", 7);
    for (int i = 0; i < 32; i++)
        sprintf(out + 7 + 2 * i, "%02x", md[i]);
    return out;
}

static const char *fake_digest(char c)
{
    char *d = apr_palloc(pool, 72);
    memcpy(d, "sha256:", 7);
    memset(d + 7, c, 64);
    d[71] = '\0';
    return d;
}

static int rm_cb(const char *path, const struct stat *sb, int flag,
                 struct FTW *f)
{
    (void)sb;
    (void)flag;
    (void)f;
    return remove(path);
}

static int setup(void **st)
{
    (void)st;
    apr_pool_create(&pool, NULL);
    strcpy(tmpdir, "/tmp/ocireg-ut-XXXXXX");
    if (!mkdtemp(tmpdir))
        return -1;
    /* a root that does not exist yet: the driver creates it */
    root = apr_pstrcat(pool, tmpdir, "/store", NULL);
    if (ocireg_store_fs_create(pool, root, &s) != APR_SUCCESS || !s)
        return -1;
    ops = s->ops;
    return ops ? 0 : -1;
}

static int teardown(void **st)
{
    (void)st;
    apr_pool_destroy(pool);
    nftw(tmpdir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    return 0;
}

/* ---- tree inspection helpers */

static const char *walk_needle;
static int walk_hits;
static int walk_upload_files;

static int find_cb(const char *path, const struct stat *sb, int flag,
                   struct FTW *f)
{
    (void)sb;
    (void)f;
    if (walk_needle && strstr(path + strlen(root), walk_needle))
        walk_hits++;
    if (flag == FTW_F) {
        /* a regular file below anything named like an upload area */
        const char *rel = path + strlen(root);
        if (strcasestr(rel, "upload"))
            walk_upload_files++;
    }
    return 0;
}

static int count_paths_containing(const char *needle)
{
    walk_needle = needle;
    walk_hits = 0;
    walk_upload_files = 0;
    nftw(root, find_cb, 16, FTW_PHYS);
    return walk_hits;
}

static int count_upload_files(void)
{
    walk_needle = NULL;
    walk_hits = 0;
    walk_upload_files = 0;
    nftw(root, find_cb, 16, FTW_PHYS);
    return walk_upload_files;
}

static const char *blob_files_needle;
static int blob_files;
static int blobfile_cb(const char *path, const struct stat *sb, int flag,
                       struct FTW *f)
{
    (void)sb;
    (void)f;
    if (flag == FTW_F && strstr(path + strlen(root), blob_files_needle))
        blob_files++;
    return 0;
}

static int count_files_containing(const char *needle)
{
    blob_files_needle = needle;
    blob_files = 0;
    nftw(root, blobfile_cb, 16, FTW_PHYS);
    return blob_files;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static void strings_are(apr_array_header_t *arr, const char *want[])
{
    assert_non_null(arr);
    int n = 0;
    while (want[n])
        n++;
    qsort(arr->elts, arr->nelts, sizeof(const char *), cmp_str);
    if (arr->nelts != n) {
        char buf[1024] = "";
        for (int i = 0; i < arr->nelts; i++) {
            strncat(buf, APR_ARRAY_IDX(arr, i, const char *),
                    sizeof buf - strlen(buf) - 2);
            strncat(buf, ",", sizeof buf - strlen(buf) - 1);
        }
        fail_msg("got %d strings [%s], want %d", arr->nelts, buf, n);
    }
    for (int i = 0; i < n; i++)
        assert_string_equal(APR_ARRAY_IDX(arr, i, const char *), want[i]);
}

static void read_blob_is(const char *digest, const char *want, size_t wlen)
{
    char *data = NULL;
    apr_size_t len = 0;
    apr_status_t rv = ops->blob_read_all(s, pool, digest, 1 << 20, &data, &len);
    assert_int_equal(rv, APR_SUCCESS);
    assert_int_equal(len, wlen);
    assert_memory_equal(data, want, wlen);
    apr_off_t size = -1;
    assert_int_equal(ops->blob_stat(s, pool, digest, &size), APR_SUCCESS);
    assert_true(size == (apr_off_t)wlen);
}

/* ------------------------------------------------------------- blobs */

static void test_create(void **st)
{
    (void)st;
    assert_non_null(ops->driver);
    apr_finfo_t fi;
    assert_int_equal(apr_stat(&fi, root, APR_FINFO_TYPE, pool), APR_SUCCESS);
    assert_int_equal(fi.filetype, APR_DIR);
    /* creating again over an existing root works */
    ocireg_store *s2 = NULL;
    assert_int_equal(ocireg_store_fs_create(pool, root, &s2), APR_SUCCESS);
    assert_non_null(s2);
    if (ops->chunk_min_length)
        assert_true(ops->chunk_min_length(s) >= 0);
}

static void test_blob_put_read(void **st)
{
    (void)st;
    const char *d = sha("hello", 5);
    assert_int_equal(ops->blob_put(s, pool, d, "hello", 5), APR_SUCCESS);
    read_blob_is(d, "hello", 5);

    ocireg_blob_body body;
    memset(&body, 0, sizeof body);
    assert_int_equal(ops->blob_open(s, pool, d, &body), APR_SUCCESS);
    assert_true(body.size == 5);
    assert_non_null(body.file);
    char buf[16];
    apr_size_t n = sizeof buf;
    assert_int_equal(apr_file_read(body.file, buf, &n), APR_SUCCESS);
    assert_int_equal(n, 5);
    assert_memory_equal(buf, "hello", 5);

    /* put of the same blob again is fine */
    assert_int_equal(ops->blob_put(s, pool, d, "hello", 5), APR_SUCCESS);
    read_blob_is(d, "hello", 5);
    assert_int_equal(count_files_containing(d + 7), 1);
}

static void test_blob_empty_and_binary(void **st)
{
    (void)st;
    const char *d = sha("", 0);
    assert_int_equal(ops->blob_put(s, pool, d, "", 0), APR_SUCCESS);
    read_blob_is(d, "", 0);

    char bin[4096];
    for (int i = 0; i < (int)sizeof bin; i++)
        bin[i] = (char)(i * 13);
    d = sha(bin, sizeof bin);
    assert_int_equal(ops->blob_put(s, pool, d, bin, sizeof bin), APR_SUCCESS);
    read_blob_is(d, bin, sizeof bin);
}

static void test_blob_read_all_max(void **st)
{
    (void)st;
    const char *d = sha("0123456789", 10);
    assert_int_equal(ops->blob_put(s, pool, d, "0123456789", 10), APR_SUCCESS);
    char *data = NULL;
    apr_size_t len = 0;
    assert_int_equal(ops->blob_read_all(s, pool, d, 10, &data, &len),
                     APR_SUCCESS);
    assert_int_equal(len, 10);
    /* larger than max: must not succeed with a truncated document */
    apr_status_t rv = ops->blob_read_all(s, pool, d, 4, &data, &len);
    assert_int_not_equal(rv, APR_SUCCESS);
}

static void test_blob_unknown(void **st)
{
    (void)st;
    const char *d = fake_digest('0');
    apr_off_t size;
    char *data;
    apr_size_t len;
    ocireg_blob_body body;
    assert_true(APR_STATUS_IS_ENOENT(ops->blob_stat(s, pool, d, &size)));
    assert_true(APR_STATUS_IS_ENOENT(ops->blob_open(s, pool, d, &body)));
    assert_true(APR_STATUS_IS_ENOENT(ops->blob_read_all(s, pool, d, 100,
                                                        &data, &len)));
}

static void test_blob_links(void **st)
{
    (void)st;
    const char *d = sha("layer", 5);
    assert_int_equal(ops->blob_put(s, pool, d, "layer", 5), APR_SUCCESS);
    assert_true(APR_STATUS_IS_ENOENT(ops->blob_linked(s, pool, "a", d)));
    assert_int_equal(ops->blob_link(s, pool, "a", d, NULL), APR_SUCCESS);
    assert_int_equal(ops->blob_linked(s, pool, "a", d), APR_SUCCESS);
    assert_true(APR_STATUS_IS_ENOENT(ops->blob_linked(s, pool, "b", d)));
    assert_true(APR_STATUS_IS_ENOENT(ops->blob_linked(s, pool, "a/b", d)));
    /* idempotent */
    assert_int_equal(ops->blob_link(s, pool, "a", d, NULL), APR_SUCCESS);
    /* nested repository */
    assert_int_equal(ops->blob_link(s, pool, "a/b/c", d, NULL), APR_SUCCESS);
    assert_int_equal(ops->blob_linked(s, pool, "a/b/c", d), APR_SUCCESS);
    /* read through a link: the size always, the file when asked */
    {
        ocireg_blob_body body;
        assert_int_equal(ops->blob_open_linked(s, pool, "a/b/c", d, 0, &body),
                         APR_SUCCESS);
        assert_int_equal(body.size, 5);
        assert_null(body.file);
        assert_int_equal(ops->blob_open_linked(s, pool, "a/b/c", d, 1, &body),
                         APR_SUCCESS);
        assert_int_equal(body.size, 5);
        assert_non_null(body.file);
        apr_file_close(body.file);
        assert_true(APR_STATUS_IS_ENOENT(
            ops->blob_open_linked(s, pool, "b", d, 1, &body)));
    }

    assert_int_equal(ops->blob_unlink(s, pool, "a", d), APR_SUCCESS);
    assert_true(APR_STATUS_IS_ENOENT(ops->blob_linked(s, pool, "a", d)));
    assert_int_equal(ops->blob_linked(s, pool, "a/b/c", d), APR_SUCCESS);
    /* the blob itself stays */
    read_blob_is(d, "layer", 5);
    assert_true(APR_STATUS_IS_ENOENT(ops->blob_unlink(s, pool, "a", d)));
}

/* The holder index a mount without `from` reads. */
static void holders_are(const char *d, int max, const char *const *want,
                        int n)
{
    apr_array_header_t *names = NULL;
    assert_int_equal(ops->blob_holders(s, pool, d, max, &names), APR_SUCCESS);
    assert_non_null(names);
    assert_int_equal(names->nelts, n);
    for (int i = 0; i < n; i++)
        assert_string_equal(APR_ARRAY_IDX(names, i, const char *), want[i]);
}

static void test_blob_holders(void **st)
{
    (void)st;
    const char *d = sha("held", 4);
    const char *other = sha("other", 5);
    char longname[256];
    assert_int_equal(ops->blob_put(s, pool, d, "held", 4), APR_SUCCESS);
    holders_are(d, 100, NULL, 0);
    assert_int_equal(ops->blob_link(s, pool, "b/x", d, NULL), APR_SUCCESS);
    assert_int_equal(ops->blob_link(s, pool, "a", d, NULL), APR_SUCCESS);
    assert_int_equal(ops->blob_link(s, pool, "a/b/c", d, NULL), APR_SUCCESS);
    assert_int_equal(ops->blob_link(s, pool, "a", other, NULL), APR_SUCCESS);
    {
        const char *const all[] = {"a", "a/b/c", "b/x"};
        holders_are(d, 100, all, 3);
        holders_are(d, 2, all, 2);
    }
    {
        const char *const one[] = {"a"};
        holders_are(other, 100, one, 1);
    }
    /* Removing the link removes the entry; another repository's stays. */
    assert_int_equal(ops->blob_unlink(s, pool, "a", d), APR_SUCCESS);
    {
        const char *const left[] = {"a/b/c", "b/x"};
        holders_are(d, 100, left, 2);
    }
    /* An entry is a hint: one without a link is listed (readers confirm
     * it against the link); names that are not names are not. */
    {
        const char *dir = apr_psprintf(pool, "%s/holders/sha256/%s", root,
                                       d + 7);
        const char *junk[] = {"ghost", "UPPER", "..x", "_under", "a++b"};
        for (size_t i = 0; i < sizeof(junk) / sizeof(junk[0]); i++) {
            FILE *f = fopen(apr_pstrcat(pool, dir, "/", junk[i], NULL), "w");
            assert_non_null(f);
            fclose(f);
        }
        const char *const listed[] = {"a/b/c", "b/x", "ghost"};
        holders_are(d, 100, listed, 3);
        assert_true(APR_STATUS_IS_ENOENT(
            ops->blob_linked(s, pool, "ghost", d)));
        /* A link made before the index has no entry; linking it again
         * (a push, a mount) adds one. */
        assert_int_equal(remove(apr_pstrcat(pool, dir, "/b+x", NULL)), 0);
        const char *const missing[] = {"a/b/c", "ghost"};
        holders_are(d, 100, missing, 2);
        assert_int_equal(ops->blob_linked(s, pool, "b/x", d), APR_SUCCESS);
        assert_int_equal(ops->blob_link(s, pool, "b/x", d, NULL),
                         APR_SUCCESS);
        holders_are(d, 100, listed, 3);
    }
    /* The longest name fits one file name. */
    for (int i = 0; i < 255; i++)
        longname[i] = i % 2 ? '/' : 'z';
    longname[254] = 'z';
    longname[255] = '\0';
    assert_int_equal(ops->blob_link(s, pool, longname, other, NULL),
                     APR_SUCCESS);
    {
        const char *const two[] = {"a", longname};
        holders_are(other, 100, two, 2);
    }
    /* Unknown or malformed digests hold nothing. */
    holders_are(fake_digest('9'), 100, NULL, 0);
    holders_are("sha256:../../x", 100, NULL, 0);
}

static int never_stop(void)
{
    return 0;
}

static int stop_now(void)
{
    return 1;
}

/* Links made before the holder index get their entries once, at the
 * first start of a build that keeps it. */
static void test_holder_backfill(void **st)
{
    (void)st;
    const char *d = sha("old", 3);
    const char *dir = apr_psprintf(pool, "%s/holders/sha256/%s", root, d + 7);
    const char *marker = apr_pstrcat(pool, root, "/holders.complete", NULL);
    struct stat sb;
    assert_non_null(ops->prepare);
    assert_int_equal(ops->blob_put(s, pool, d, "old", 3), APR_SUCCESS);
    assert_int_equal(ops->blob_link(s, pool, "old/one", d, NULL), APR_SUCCESS);
    assert_int_equal(ops->blob_link(s, pool, "old/one/nested", d, NULL),
                     APR_SUCCESS);
    assert_int_equal(ops->blob_link(s, pool, "two", d, NULL), APR_SUCCESS);
    /* as an older build left it: links, no entries, no marker */
    assert_int_equal(remove(apr_pstrcat(pool, dir, "/old+one", NULL)), 0);
    assert_int_equal(remove(apr_pstrcat(pool, dir, "/old+one+nested", NULL)), 0);
    assert_int_equal(remove(apr_pstrcat(pool, dir, "/two", NULL)), 0);
    holders_are(d, 100, NULL, 0);
    /* A process that exits meanwhile gives up and leaves no marker, so
     * the next start walks again. */
    assert_int_equal(ops->prepare(s, pool, stop_now), APR_EINTR);
    assert_int_not_equal(stat(marker, &sb), 0);
    assert_int_equal(ops->prepare(s, pool, never_stop), APR_SUCCESS);
    {
        const char *const all[] = {"old/one", "old/one/nested", "two"};
        holders_are(d, 100, all, 3);
    }
    assert_int_equal(stat(marker, &sb), 0);
    /* Done once: the marker says so, and the walk is not repeated. */
    assert_int_equal(remove(apr_pstrcat(pool, dir, "/two", NULL)), 0);
    assert_int_equal(ops->prepare(s, pool, never_stop), APR_SUCCESS);
    {
        const char *const left[] = {"old/one", "old/one/nested"};
        holders_are(d, 100, left, 2);
    }
}

/* --------------------------------------------------------- manifests */

static void test_manifest_links(void **st)
{
    (void)st;
    const char *body = "{\"schemaVersion\":2}";
    const char *d = sha(body, strlen(body));
    const char *mt = NULL;
    assert_int_equal(ops->blob_put(s, pool, d, body, strlen(body)),
                     APR_SUCCESS);
    assert_true(APR_STATUS_IS_ENOENT(ops->manifest_linked(s, pool, "a", d,
                                                          &mt)));
    assert_int_equal(ops->manifest_put(s, pool, "a", d, MT_MANIFEST, "{}", 2),
                     APR_SUCCESS);
    assert_int_equal(ops->manifest_linked(s, pool, "a", d, &mt), APR_SUCCESS);
    assert_non_null(mt);
    assert_string_equal(mt, MT_MANIFEST);
    assert_true(APR_STATUS_IS_ENOENT(ops->manifest_linked(s, pool, "b", d,
                                                          &mt)));
    /* a manifest link is not a blob link and vice versa */
    assert_true(APR_STATUS_IS_ENOENT(ops->blob_linked(s, pool, "a", d)));

    /* another media type in another repository */
    assert_int_equal(ops->manifest_put(s, pool, "b", d,
                                        "application/vnd.custom+json", "{}", 2),
                     APR_SUCCESS);
    assert_int_equal(ops->manifest_linked(s, pool, "b", d, &mt), APR_SUCCESS);
    assert_string_equal(mt, "application/vnd.custom+json");
    assert_int_equal(ops->manifest_linked(s, pool, "a", d, &mt), APR_SUCCESS);
    assert_string_equal(mt, MT_MANIFEST);

    /* read through the link: bytes, length and media type */
    {
        char *data = NULL;
        apr_size_t len = 0;
        ocireg_link_check checks[3] = {{d, 1, APR_EGENERAL},
                                       {d, 0, APR_EGENERAL},
                                       {sha("x", 1), 1, APR_EGENERAL}};
        assert_int_equal(ops->manifest_read_linked(s, pool, "b", d, 1024, 1,
                                                   &data, &len, &mt),
                         APR_SUCCESS);
        assert_int_equal(len, strlen(body));
        assert_memory_equal(data, body, len);
        assert_string_equal(mt, "application/vnd.custom+json");
        len = 0;
        assert_int_equal(ops->manifest_read_linked(s, pool, "a", d, 1024, 0,
                                                   &data, &len, &mt),
                         APR_SUCCESS);
        assert_null(data);
        assert_int_equal(len, strlen(body));
        assert_string_equal(mt, MT_MANIFEST);
        assert_int_not_equal(ops->manifest_read_linked(s, pool, "a", d, 4, 1,
                                                       &data, &len, &mt),
                             APR_SUCCESS);
        assert_true(APR_STATUS_IS_ENOENT(ops->manifest_read_linked(
            s, pool, "c", d, 1024, 1, &data, &len, &mt)));
        assert_int_equal(ops->links_exist(s, pool, "a", checks, 3),
                         APR_SUCCESS);
        assert_int_equal(checks[0].status, APR_SUCCESS);
        assert_true(APR_STATUS_IS_ENOENT(checks[1].status));
        assert_true(APR_STATUS_IS_ENOENT(checks[2].status));
    }

    assert_int_equal(ops->manifest_unlink(s, pool, "a", d), APR_SUCCESS);
    assert_true(APR_STATUS_IS_ENOENT(ops->manifest_linked(s, pool, "a", d,
                                                          &mt)));
    assert_int_equal(ops->manifest_linked(s, pool, "b", d, &mt), APR_SUCCESS);
    assert_true(APR_STATUS_IS_ENOENT(ops->manifest_unlink(s, pool, "a", d)));
}


/* Whole listings through the paged interface. */
static apr_status_t all_tags(const char *name, apr_array_header_t **tags)
{
    int more = 0;
    apr_status_t rv = ops->tag_list(s, pool, name, NULL, OCIREG_PAGE_MAX,
                                    tags, &more);
    assert_false(more);
    return rv;
}

static apr_status_t all_repos(apr_array_header_t **names)
{
    int more = 0;
    apr_status_t rv = ops->repo_list(s, pool, NULL, OCIREG_PAGE_MAX, names,
                                     &more);
    assert_false(more);
    return rv;
}

static int collect_referrer(void *ctx, const char *digest, const char *d)
{
    apr_array_header_t *list = ctx;
    (void)digest;
    APR_ARRAY_PUSH(list, const char *) = apr_pstrdup(list->pool, d);
    return 0;
}

static apr_status_t all_referrers(const char *name, const char *subject,
                                  apr_array_header_t **list)
{
    *list = apr_array_make(pool, 4, sizeof(const char *));
    return ops->referrer_each(s, pool, name, subject, NULL, collect_referrer,
                              *list);
}

/* -------------------------------------------------------------- tags */

static void test_tags(void **st)
{
    (void)st;
    const char *d1 = fake_digest('1'), *d2 = fake_digest('2');
    const char *got = NULL;
    apr_array_header_t *tags = NULL;

    assert_true(APR_STATUS_IS_ENOENT(all_tags("nope", &tags)));
    assert_true(APR_STATUS_IS_ENOENT(ops->tag_get(s, pool, "a", "v1", &got)));

    /* as the handler does: the manifest is linked before it is tagged */
    assert_int_equal(ops->manifest_put(s, pool, "a", d1, MT_MANIFEST, "{}", 2),
                     APR_SUCCESS);
    assert_int_equal(ops->manifest_put(s, pool, "a", d2, MT_MANIFEST, "{}", 2),
                     APR_SUCCESS);
    assert_int_equal(ops->manifest_put(s, pool, "a/b", d1, MT_MANIFEST, "{}", 2),
                     APR_SUCCESS);
    assert_int_equal(ops->tag_set(s, pool, "a", "v1", d1), APR_SUCCESS);
    assert_int_equal(ops->tag_get(s, pool, "a", "v1", &got), APR_SUCCESS);
    assert_string_equal(got, d1);
    assert_int_equal(ops->tag_set(s, pool, "a", "v1", d2), APR_SUCCESS);
    assert_int_equal(ops->tag_get(s, pool, "a", "v1", &got), APR_SUCCESS);
    assert_string_equal(got, d2);
    assert_int_equal(ops->tag_set(s, pool, "a", "V1", d1), APR_SUCCESS);
    assert_int_equal(ops->tag_set(s, pool, "a", "latest", d1), APR_SUCCESS);
    assert_int_equal(ops->tag_set(s, pool, "a", "_x.y-z", d1), APR_SUCCESS);
    /* case-sensitive tags */
    assert_int_equal(ops->tag_get(s, pool, "a", "V1", &got), APR_SUCCESS);
    assert_string_equal(got, d1);

    assert_int_equal(all_tags("a", &tags), APR_SUCCESS);
    strings_are(tags, (const char *[]){ "V1", "_x.y-z", "latest", "v1",
                                        NULL });

    /* other repository does not see them */
    assert_true(APR_STATUS_IS_ENOENT(ops->tag_get(s, pool, "b", "v1", &got)));
    assert_int_equal(ops->tag_set(s, pool, "a/b", "other", d1), APR_SUCCESS);
    assert_int_equal(all_tags("a/b", &tags), APR_SUCCESS);
    strings_are(tags, (const char *[]){ "other", NULL });
    assert_int_equal(all_tags("a", &tags), APR_SUCCESS);
    assert_int_equal(tags->nelts, 4);

    assert_int_equal(ops->tag_delete(s, pool, "a", "v1"), APR_SUCCESS);
    assert_true(APR_STATUS_IS_ENOENT(ops->tag_get(s, pool, "a", "v1", &got)));
    assert_true(APR_STATUS_IS_ENOENT(ops->tag_delete(s, pool, "a", "v1")));
    assert_int_equal(all_tags("a", &tags), APR_SUCCESS);
    strings_are(tags, (const char *[]){ "V1", "_x.y-z", "latest", NULL });
}

static void test_tag_list_repo_without_tags(void **st)
{
    (void)st;
    apr_array_header_t *tags = NULL;
    const char *d = fake_digest('3');
    assert_int_equal(ops->manifest_put(s, pool, "m", d, MT_MANIFEST, "{}", 2),
                     APR_SUCCESS);
    assert_int_equal(all_tags("m", &tags), APR_SUCCESS);
    assert_non_null(tags);
    assert_int_equal(tags->nelts, 0);
}

static void test_many_tags(void **st)
{
    (void)st;
    const char *d = fake_digest('4');
    assert_int_equal(ops->manifest_put(s, pool, "many", d, MT_MANIFEST, "{}", 2),
                     APR_SUCCESS);
    for (int i = 0; i < 300; i++)
        assert_int_equal(ops->tag_set(s, pool, "many",
                                      apr_psprintf(pool, "t%03d", i), d),
                         APR_SUCCESS);
    apr_array_header_t *tags = NULL;
    assert_int_equal(all_tags("many", &tags), APR_SUCCESS);
    assert_int_equal(tags->nelts, 300);
    qsort(tags->elts, tags->nelts, sizeof(const char *), cmp_str);
    for (int i = 0; i < 300; i++)
        assert_string_equal(APR_ARRAY_IDX(tags, i, const char *),
                            apr_psprintf(pool, "t%03d", i));
}

/* Pages in the spec's order (case-insensitive, ties bytewise), each from
 * its `last`, with `more` exactly when tags follow. */
static void test_tag_pages(void **st)
{
    (void)st;
    const char *d = fake_digest('4');
    const char *want[] = { "_u", "a", "B", "b", "b-1", "B_2", "c", "Z", NULL };
    const char *set[] = { "Z", "c", "B_2", "b-1", "b", "B", "a", "_u", NULL };
    apr_array_header_t *tags = NULL;
    int i, n, more;

    assert_int_equal(ops->manifest_put(s, pool, "pg", d, MT_MANIFEST, "{}", 2),
                     APR_SUCCESS);
    for (i = 0; set[i]; i++)
        assert_int_equal(ops->tag_set(s, pool, "pg", set[i], d), APR_SUCCESS);
    for (n = 1; n <= 9; n++) {
        const char *last = NULL;
        int at = 0;
        do {
            assert_int_equal(ops->tag_list(s, pool, "pg", last, n, &tags,
                                           &more), APR_SUCCESS);
            assert_true(tags->nelts <= n);
            for (i = 0; i < tags->nelts; i++)
                assert_string_equal(APR_ARRAY_IDX(tags, i, const char *),
                                    want[at++]);
            assert_int_equal(more, want[at] != NULL);
            if (tags->nelts)
                last = APR_ARRAY_IDX(tags, tags->nelts - 1, const char *);
        } while (more);
        assert_null(want[at]);
    }
    /* `last` need not be a tag */
    assert_int_equal(ops->tag_list(s, pool, "pg", "b0", 2, &tags, &more),
                     APR_SUCCESS);
    assert_int_equal(tags->nelts, 2);
    assert_string_equal(APR_ARRAY_IDX(tags, 0, const char *), "B_2");
    assert_string_equal(APR_ARRAY_IDX(tags, 1, const char *), "c");
    assert_true(more);
    assert_int_equal(ops->tag_list(s, pool, "pg", "zz", 2, &tags, &more),
                     APR_SUCCESS);
    assert_int_equal(tags->nelts, 0);
    assert_false(more);
}

static void test_repo_pages(void **st)
{
    (void)st;
    const char *d = fake_digest('7');
    const char *want[] = { "a", "a-b", "a/b", "a/b/c", "b", "z/z", NULL };
    apr_array_header_t *names = NULL;
    int i, n, more;

    for (i = 0; want[i]; i++)
        assert_int_equal(ops->manifest_put(s, pool, want[i], d, MT_MANIFEST, "{}", 2),
                         APR_SUCCESS);
    /* only blob links: not in the catalog */
    assert_int_equal(ops->blob_link(s, pool, "blobsonly", d, NULL), APR_SUCCESS);
    for (n = 1; n <= 7; n++) {
        const char *last = NULL;
        int at = 0;
        do {
            assert_int_equal(ops->repo_list(s, pool, last, n, &names, &more),
                             APR_SUCCESS);
            for (i = 0; i < names->nelts; i++)
                assert_string_equal(APR_ARRAY_IDX(names, i, const char *),
                                    want[at++]);
            assert_int_equal(more, want[at] != NULL);
            if (names->nelts)
                last = APR_ARRAY_IDX(names, names->nelts - 1, const char *);
        } while (more);
        assert_null(want[at]);
    }
}

/* --------------------------------------------------------- referrers */

static void test_referrers(void **st)
{
    (void)st;
    const char *subj = fake_digest('5');
    const char *r1 = fake_digest('1'), *r2 = fake_digest('2'),
               *r3 = fake_digest('3');
    const char *desc1 = "{\"digest\":\"one\"}";
    const char *desc2 = "{\"digest\":\"two\"}";
    const char *desc3 = "{\"digest\":\"three\"}";
    apr_array_header_t *list = NULL;

    apr_status_t rv = all_referrers("a", subj, &list);
    assert_true(APR_STATUS_IS_ENOENT(rv) ||
                (rv == APR_SUCCESS && list && list->nelts == 0));

    assert_int_equal(ops->referrer_add(s, pool, "a", subj, r3, desc3),
                     APR_SUCCESS);
    assert_int_equal(ops->referrer_add(s, pool, "a", subj, r1, desc1),
                     APR_SUCCESS);
    assert_int_equal(ops->referrer_add(s, pool, "a", subj, r2, desc2),
                     APR_SUCCESS);
    assert_int_equal(all_referrers("a", subj, &list),
                     APR_SUCCESS);
    assert_int_equal(list->nelts, 3);
    assert_string_equal(APR_ARRAY_IDX(list, 0, const char *), desc1);
    assert_string_equal(APR_ARRAY_IDX(list, 1, const char *), desc2);
    assert_string_equal(APR_ARRAY_IDX(list, 2, const char *), desc3);

    /* adding the same referrer again does not duplicate it */
    assert_int_equal(ops->referrer_add(s, pool, "a", subj, r2, desc2),
                     APR_SUCCESS);
    assert_int_equal(all_referrers("a", subj, &list),
                     APR_SUCCESS);
    assert_int_equal(list->nelts, 3);

    /* other repository or other subject: none */
    rv = all_referrers("b", subj, &list);
    assert_true(APR_STATUS_IS_ENOENT(rv) ||
                (rv == APR_SUCCESS && list && list->nelts == 0));
    rv = all_referrers("a", fake_digest('6'), &list);
    assert_true(APR_STATUS_IS_ENOENT(rv) ||
                (rv == APR_SUCCESS && list && list->nelts == 0));

    assert_int_equal(ops->referrer_remove(s, pool, "a", subj, r1),
                     APR_SUCCESS);
    assert_int_equal(all_referrers("a", subj, &list),
                     APR_SUCCESS);
    assert_int_equal(list->nelts, 2);
    assert_string_equal(APR_ARRAY_IDX(list, 0, const char *), desc2);
    assert_string_equal(APR_ARRAY_IDX(list, 1, const char *), desc3);

    assert_int_equal(ops->referrer_remove(s, pool, "a", subj, r2),
                     APR_SUCCESS);
    assert_int_equal(ops->referrer_remove(s, pool, "a", subj, r3),
                     APR_SUCCESS);
    rv = all_referrers("a", subj, &list);
    assert_true(APR_STATUS_IS_ENOENT(rv) ||
                (rv == APR_SUCCESS && list && list->nelts == 0));
}

/* ------------------------------------------------------ repositories */

static void test_repos(void **st)
{
    (void)st;
    const char *d = fake_digest('7');
    apr_array_header_t *names = NULL;

    apr_status_t rv = all_repos(&names);
    assert_true(rv == APR_SUCCESS || APR_STATUS_IS_ENOENT(rv));
    if (rv == APR_SUCCESS)
        assert_int_equal(names->nelts, 0);

    assert_int_equal(ops->manifest_put(s, pool, "a", d, MT_MANIFEST, "{}", 2),
                     APR_SUCCESS);
    assert_int_equal(ops->manifest_put(s, pool, "a/b/c", d, MT_MANIFEST, "{}", 2),
                     APR_SUCCESS);
    assert_int_equal(ops->tag_set(s, pool, "a/b/c", "latest", d), APR_SUCCESS);
    assert_int_equal(ops->manifest_put(s, pool, "x.y/z-w", d, MT_INDEX, "{}", 2),
                     APR_SUCCESS);

    assert_int_equal(ops->repo_exists(s, pool, "a"), APR_SUCCESS);
    assert_int_equal(ops->repo_exists(s, pool, "a/b/c"), APR_SUCCESS);
    assert_int_equal(ops->repo_exists(s, pool, "x.y/z-w"), APR_SUCCESS);
    assert_true(APR_STATUS_IS_ENOENT(ops->repo_exists(s, pool, "zzz")));
    assert_true(APR_STATUS_IS_ENOENT(ops->repo_exists(s, pool, "a/b/c/d")));
    /* a mere path prefix of a repository is not a repository */
    assert_true(APR_STATUS_IS_ENOENT(ops->repo_exists(s, pool, "a/b")));
    assert_true(APR_STATUS_IS_ENOENT(ops->repo_exists(s, pool, "x.y")));

    assert_int_equal(all_repos(&names), APR_SUCCESS);
    strings_are(names, (const char *[]){ "a", "a/b/c", "x.y/z-w", NULL });
}

static void test_repos_with_keyword_names(void **st)
{
    (void)st;
    /* repository names that look like the store's own directory names */
    const char *d = fake_digest('8');
    const char *names_in[] = { "blobs", "tags", "uploads", "a/blobs/b",
                               "repositories", NULL };
    for (int i = 0; names_in[i]; i++) {
        assert_int_equal(ops->manifest_put(s, pool, names_in[i], d,
                                            MT_MANIFEST, "{}", 2), APR_SUCCESS);
        assert_int_equal(ops->tag_set(s, pool, names_in[i], "t", d),
                         APR_SUCCESS);
    }
    apr_array_header_t *names = NULL;
    assert_int_equal(all_repos(&names), APR_SUCCESS);
    strings_are(names, (const char *[]){ "a/blobs/b", "blobs", "repositories",
                                         "tags", "uploads", NULL });
    apr_array_header_t *tags = NULL;
    assert_int_equal(all_tags("a/blobs/b", &tags), APR_SUCCESS);
    strings_are(tags, (const char *[]){ "t", NULL });
}

/* ----------------------------------------------------------- uploads */

static void upload_write_at(const char *uuid, unsigned char *state,
                            apr_off_t off, const char *data, size_t len)
{
    ocireg_upload_writer *w = NULL;
    assert_int_equal(ops->upload_open(s, pool, uuid, state, 0, off, -1, NULL, &w),
                     APR_SUCCESS);
    assert_non_null(w);
    if (len)
        assert_int_equal(ops->upload_write(w, data, len), APR_SUCCESS);
    assert_int_equal(ops->upload_close(w, state), APR_SUCCESS);
}

static void test_upload_two_chunks(void **st)
{
    (void)st;
    unsigned char state[OCIREG_DRIVER_STATE_SIZE];
    memset(state, 0, sizeof state);
    assert_int_equal(ops->upload_create(s, pool, UUID1, state), APR_SUCCESS);
    upload_write_at(UUID1, state, 0, "hello ", 6);

    /* the state travels by value, as through shared memory */
    unsigned char state2[OCIREG_DRIVER_STATE_SIZE];
    memcpy(state2, state, sizeof state);
    memset(state, 0xAB, sizeof state);
    upload_write_at(UUID1, state2, 6, "world", 5);

    const char *d = sha("hello world", 11);
    assert_int_equal(ops->upload_commit(s, pool, UUID1, state2, 0, NULL, d, 11, NULL, NULL),
                     APR_SUCCESS);
    read_blob_is(d, "hello world", 11);
    assert_int_equal(count_paths_containing(UUID1), 0);
    assert_int_equal(count_upload_files(), 0);
}

static void test_upload_many_writes(void **st)
{
    (void)st;
    unsigned char state[OCIREG_DRIVER_STATE_SIZE];
    memset(state, 0, sizeof state);
    size_t total = 1 << 20;
    char *data = malloc(total);
    assert_non_null(data);
    for (size_t i = 0; i < total; i++)
        data[i] = (char)(i * 7 + (i >> 9));
    assert_int_equal(ops->upload_create(s, pool, UUID1, state), APR_SUCCESS);
    /* three requests, each with many small writes */
    size_t cuts[] = { 0, 100000, 700001, total };
    for (int r = 0; r < 3; r++) {
        ocireg_upload_writer *w = NULL;
        assert_int_equal(ops->upload_open(s, pool, UUID1, state, 0,
                                          (apr_off_t)cuts[r], -1, NULL, &w),
                         APR_SUCCESS);
        for (size_t off = cuts[r]; off < cuts[r + 1];) {
            size_t n = 8191;
            if (n > cuts[r + 1] - off)
                n = cuts[r + 1] - off;
            assert_int_equal(ops->upload_write(w, data + off, n), APR_SUCCESS);
            off += n;
        }
        assert_int_equal(ops->upload_close(w, state), APR_SUCCESS);
    }
    const char *d = sha(data, total);
    assert_int_equal(ops->upload_commit(s, pool, UUID1, state, 0, NULL, d,
                                        (apr_off_t)total, NULL, NULL), APR_SUCCESS);
    char *back = NULL;
    apr_size_t len = 0;
    assert_int_equal(ops->blob_read_all(s, pool, d, total, &back, &len),
                     APR_SUCCESS);
    assert_int_equal(len, total);
    assert_memory_equal(back, data, total);
    free(data);
    assert_int_equal(count_paths_containing(UUID1), 0);
}

static void test_upload_truncates_tail(void **st)
{
    (void)st;
    unsigned char state[OCIREG_DRIVER_STATE_SIZE];
    memset(state, 0, sizeof state);
    assert_int_equal(ops->upload_create(s, pool, UUID1, state), APR_SUCCESS);
    upload_write_at(UUID1, state, 0, "0123456789", 10);
    upload_write_at(UUID1, state, 4, "XY", 2);
    const char *d = sha("0123XY", 6);
    assert_int_equal(ops->upload_commit(s, pool, UUID1, state, 0, NULL, d, 6, NULL, NULL),
                     APR_SUCCESS);
    read_blob_is(d, "0123XY", 6);
    assert_int_equal(count_paths_containing(UUID1), 0);
}

static void test_upload_commit_drops_tail(void **st)
{
    (void)st;
    /* a failed last request left bytes past the verified size */
    unsigned char state[OCIREG_DRIVER_STATE_SIZE];
    memset(state, 0, sizeof state);
    assert_int_equal(ops->upload_create(s, pool, UUID1, state), APR_SUCCESS);
    upload_write_at(UUID1, state, 0, "0123456789", 10);
    const char *d = sha("012345", 6);
    assert_int_equal(ops->upload_commit(s, pool, UUID1, state, 0, NULL, d, 6, NULL, NULL),
                     APR_SUCCESS);
    read_blob_is(d, "012345", 6);
    assert_int_equal(count_paths_containing(UUID1), 0);
}

static int count_tmp_files(void)
{
    return count_files_containing("/tmp/");
}

static void test_no_temp_leftovers(void **st)
{
    (void)st;
    const char *d = sha("x", 1);
    assert_int_equal(ops->blob_put(s, pool, d, "x", 1), APR_SUCCESS);
    assert_int_equal(ops->blob_link(s, pool, "r", d, NULL), APR_SUCCESS);
    assert_int_equal(ops->manifest_put(s, pool, "r", d, MT_MANIFEST, "{}", 2),
                     APR_SUCCESS);
    assert_int_equal(ops->tag_set(s, pool, "r", "t", d), APR_SUCCESS);
    assert_int_equal(ops->referrer_add(s, pool, "r", d, d, "{}"),
                     APR_SUCCESS);
    unsigned char state[OCIREG_DRIVER_STATE_SIZE];
    memset(state, 0, sizeof state);
    assert_int_equal(ops->upload_create(s, pool, UUID1, state), APR_SUCCESS);
    upload_write_at(UUID1, state, 0, "y", 1);
    assert_int_equal(ops->upload_commit(s, pool, UUID1, state, 0, NULL, sha("y", 1), 1, NULL, NULL),
                     APR_SUCCESS);
    assert_int_equal(count_tmp_files(), 0);
    assert_int_equal(count_upload_files(), 0);
}

static void test_upload_open_without_write(void **st)
{
    (void)st;
    /* a request that failed before any byte: reopen at 0 */
    unsigned char state[OCIREG_DRIVER_STATE_SIZE];
    memset(state, 0, sizeof state);
    assert_int_equal(ops->upload_create(s, pool, UUID1, state), APR_SUCCESS);
    upload_write_at(UUID1, state, 0, "abc", 3);
    upload_write_at(UUID1, state, 0, "", 0);
    upload_write_at(UUID1, state, 0, "xyz", 3);
    const char *d = sha("xyz", 3);
    assert_int_equal(ops->upload_commit(s, pool, UUID1, state, 0, NULL, d, 3, NULL, NULL),
                     APR_SUCCESS);
    read_blob_is(d, "xyz", 3);
}

static void test_upload_empty_blob(void **st)
{
    (void)st;
    unsigned char state[OCIREG_DRIVER_STATE_SIZE];
    memset(state, 0, sizeof state);
    assert_int_equal(ops->upload_create(s, pool, UUID1, state), APR_SUCCESS);
    const char *d = sha("", 0);
    assert_int_equal(ops->upload_commit(s, pool, UUID1, state, 0, NULL, d, 0, NULL, NULL),
                     APR_SUCCESS);
    read_blob_is(d, "", 0);
    assert_int_equal(count_paths_containing(UUID1), 0);
}

static void test_upload_abort(void **st)
{
    (void)st;
    unsigned char state[OCIREG_DRIVER_STATE_SIZE];
    memset(state, 0, sizeof state);
    assert_int_equal(ops->upload_create(s, pool, UUID1, state), APR_SUCCESS);
    upload_write_at(UUID1, state, 0, "data", 4);
    assert_int_equal(count_paths_containing(UUID1) > 0, 1);
    assert_int_equal(ops->upload_abort(s, pool, UUID1, state, 0, NULL), APR_SUCCESS);
    assert_int_equal(count_paths_containing(UUID1), 0);
    assert_int_equal(count_upload_files(), 0);
    /* nothing became a blob */
    apr_off_t size;
    assert_true(APR_STATUS_IS_ENOENT(ops->blob_stat(s, pool, sha("data", 4),
                                                    &size)));
    /* and it cannot be continued */
    ocireg_upload_writer *w = NULL;
    assert_int_not_equal(ops->upload_open(s, pool, UUID1, state, 0, 4, -1, NULL, &w),
                         APR_SUCCESS);
}

static void test_upload_commit_existing_blob(void **st)
{
    (void)st;
    const char *d = sha("hello world", 11);
    assert_int_equal(ops->blob_put(s, pool, d, "hello world", 11),
                     APR_SUCCESS);
    unsigned char state[OCIREG_DRIVER_STATE_SIZE];
    memset(state, 0, sizeof state);
    assert_int_equal(ops->upload_create(s, pool, UUID1, state), APR_SUCCESS);
    upload_write_at(UUID1, state, 0, "hello world", 11);
    assert_int_equal(ops->upload_commit(s, pool, UUID1, state, 0, NULL, d, 11, NULL, NULL),
                     APR_SUCCESS);
    read_blob_is(d, "hello world", 11);
    assert_int_equal(count_files_containing(d + 7), 1);
    assert_int_equal(count_paths_containing(UUID1), 0);
    assert_int_equal(count_upload_files(), 0);

    /* and twice through uploads */
    memset(state, 0, sizeof state);
    assert_int_equal(ops->upload_create(s, pool, UUID2, state), APR_SUCCESS);
    upload_write_at(UUID2, state, 0, "hello world", 11);
    assert_int_equal(ops->upload_commit(s, pool, UUID2, state, 0, NULL, d, 11, NULL, NULL),
                     APR_SUCCESS);
    read_blob_is(d, "hello world", 11);
    assert_int_equal(count_files_containing(d + 7), 1);
    assert_int_equal(count_paths_containing(UUID2), 0);
}

static void test_two_uploads_interleaved(void **st)
{
    (void)st;
    unsigned char s1[OCIREG_DRIVER_STATE_SIZE], s2[OCIREG_DRIVER_STATE_SIZE];
    memset(s1, 0, sizeof s1);
    memset(s2, 0, sizeof s2);
    assert_int_equal(ops->upload_create(s, pool, UUID1, s1), APR_SUCCESS);
    assert_int_equal(ops->upload_create(s, pool, UUID2, s2), APR_SUCCESS);
    upload_write_at(UUID1, s1, 0, "one-", 4);
    upload_write_at(UUID2, s2, 0, "two-", 4);
    upload_write_at(UUID1, s1, 4, "first", 5);
    upload_write_at(UUID2, s2, 4, "second", 6);
    const char *d1 = sha("one-first", 9), *d2 = sha("two-second", 10);
    assert_int_equal(ops->upload_commit(s, pool, UUID2, s2, 0, NULL, d2, 10, NULL, NULL),
                     APR_SUCCESS);
    assert_int_equal(ops->upload_commit(s, pool, UUID1, s1, 0, NULL, d1, 9, NULL, NULL),
                     APR_SUCCESS);
    read_blob_is(d1, "one-first", 9);
    read_blob_is(d2, "two-second", 10);
    assert_int_equal(count_upload_files(), 0);
}

static void test_upload_survives_new_store_handle(void **st)
{
    (void)st;
    /* another process opens the same root and continues */
    unsigned char state[OCIREG_DRIVER_STATE_SIZE];
    memset(state, 0, sizeof state);
    assert_int_equal(ops->upload_create(s, pool, UUID1, state), APR_SUCCESS);
    upload_write_at(UUID1, state, 0, "hello ", 6);
    ocireg_store *other = NULL;
    apr_pool_t *p2;
    apr_pool_create(&p2, pool);
    assert_int_equal(ocireg_store_fs_create(p2, root, &other), APR_SUCCESS);
    ocireg_upload_writer *w = NULL;
    assert_int_equal(other->ops->upload_open(other, p2, UUID1, state, 0, 6, -1, NULL, &w),
                     APR_SUCCESS);
    assert_int_equal(other->ops->upload_write(w, "world", 5), APR_SUCCESS);
    assert_int_equal(other->ops->upload_close(w, state), APR_SUCCESS);
    const char *d = sha("hello world", 11);
    assert_int_equal(other->ops->upload_commit(other, p2, UUID1, state, 0, NULL, d, 11, NULL, NULL),
                     APR_SUCCESS);
    read_blob_is(d, "hello world", 11);
    assert_true(other->id == s->id);
}


/* -- session records and locks ------------------------------------------- */

static void test_state_versions(void **st)
{
    (void)st;
    unsigned char state[OCIREG_DRIVER_STATE_SIZE] = {0};
    apr_uint64_t v = 0;
    void *data;
    apr_size_t len;
    assert_int_equal(ops->upload_create(s, pool, UUID1, state), APR_SUCCESS);
    assert_int_equal(ops->state_get(s, pool, UUID1, 0, &v, &data, &len),
                     APR_ENOENT);
    assert_int_equal(ops->state_put(s, pool, UUID1, 1, "one", 3, NULL),
                     APR_SUCCESS);
    assert_int_equal(ops->state_put(s, pool, UUID1, 2, "second", 6, NULL),
                     APR_SUCCESS);
    assert_int_equal(ops->state_get(s, pool, UUID1, 0, &v, &data, &len),
                     APR_SUCCESS);
    assert_int_equal(v, 2);
    assert_int_equal(len, 6);
    assert_memory_equal(data, "second", 6);
    assert_int_equal(ops->upload_abort(s, pool, UUID1, state, 0, NULL), APR_SUCCESS);
    assert_int_equal(ops->state_get(s, pool, UUID1, 0, &v, &data, &len),
                     APR_ENOENT);
}

static void owner(ocireg_lock_owner *me)
{
    memset(me, 0, sizeof(*me));
    strcpy(me->host, "test");
    me->pid = 1;
    me->expires = apr_time_now() + apr_time_from_sec(60);
}

static void test_lock_excludes_and_checks_version(void **st)
{
    (void)st;
    unsigned char state[OCIREG_DRIVER_STATE_SIZE] = {0};
    ocireg_upload_lock *l1, *l2;
    ocireg_lock_owner me;
    owner(&me);
    assert_int_equal(ops->upload_lock(s, pool, UUID1, 1, &me, &l1),
                     APR_ENOENT);
    assert_int_equal(ops->upload_create(s, pool, UUID1, state), APR_SUCCESS);
    assert_int_equal(ops->state_put(s, pool, UUID1, 1, "r", 1, NULL), APR_SUCCESS);
    assert_int_equal(ops->upload_lock(s, pool, UUID1, 1, &me, &l1),
                     APR_SUCCESS);
    /* flock(2) locks belong to the open file: a second open is refused */
    assert_int_equal(ops->upload_lock(s, pool, UUID1, 1, &me, &l2),
                     APR_EBUSY);
    ops->upload_lock_keep(l1);
    assert_int_equal(ops->state_put(s, pool, UUID1, 2, "r2", 2, NULL), APR_SUCCESS);
    ops->upload_unlock(l1);
    ops->upload_unlock(l1); /* twice is harmless */
    /* a taker that read version 1 learns that it is behind */
    assert_int_equal(ops->upload_lock(s, pool, UUID1, 1, &me, &l2),
                     OCIREG_STORE_ESTALE);
    assert_int_equal(ops->upload_lock(s, pool, UUID1, 2, &me, &l2),
                     APR_SUCCESS);
    /* committing or aborting removes the lock file with the session */
    assert_int_equal(ops->upload_abort(s, pool, UUID1, state, 0, NULL), APR_SUCCESS);
    ops->upload_unlock(l2);
    assert_int_equal(ops->upload_lock(s, pool, UUID1, 2, &me, &l2),
                     APR_ENOENT);
}


static void test_claim_period_once(void **st)
{
    (void)st;
    assert_int_equal(ops->claim_period(s, pool, "sweep", 41), APR_SUCCESS);
    assert_int_equal(ops->claim_period(s, pool, "sweep", 41), APR_EEXIST);
    assert_int_equal(ops->claim_period(s, pool, "other", 41), APR_SUCCESS);
    assert_int_equal(ops->claim_period(s, pool, "sweep", 42), APR_SUCCESS);
    /* the claim before goes, the current one stays */
    struct stat sb;
    assert_int_not_equal(stat(apr_pstrcat(pool, root, "/claims/sweep.41",
                                          NULL), &sb), 0);
    assert_int_equal(stat(apr_pstrcat(pool, root, "/claims/sweep.42", NULL),
                          &sb), 0);
}

static void test_mirror_marks(void **st)
{
    (void)st;
    char *text = NULL;
    char longer[OCIREG_MIRROR_MARK_MAX + 2];
    apr_array_header_t *names;
    int more = 1;
    assert_int_equal(ops->mirror_mark_get(s, pool, "lib/app", "v1", &text),
                     APR_ENOENT);
    assert_int_equal(ops->mirror_mark_delete(s, pool, "lib/app", "v1"),
                     APR_SUCCESS);
    assert_int_equal(ops->mirror_mark_put(s, pool, "lib/app", "v1",
                                          "sha256:aa 1700000000 \"e1\""),
                     APR_SUCCESS);
    assert_int_equal(ops->mirror_mark_get(s, pool, "lib/app", "v1", &text),
                     APR_SUCCESS);
    assert_string_equal(text, "sha256:aa 1700000000 \"e1\"");
    /* a nested repository's marks are its own */
    assert_int_equal(ops->mirror_mark_get(s, pool, "lib", "v1", &text),
                     APR_ENOENT);
    assert_int_equal(ops->mirror_mark_put(s, pool, "lib/app", "v1", "second"),
                     APR_SUCCESS);
    assert_int_equal(ops->mirror_mark_get(s, pool, "lib/app", "v1", &text),
                     APR_SUCCESS);
    assert_string_equal(text, "second");
    /* the longest mark is kept, a longer one refused and the old kept */
    memset(longer, 'x', OCIREG_MIRROR_MARK_MAX);
    longer[OCIREG_MIRROR_MARK_MAX] = '\0';
    assert_int_equal(ops->mirror_mark_put(s, pool, "lib/app", "v2", longer),
                     APR_SUCCESS);
    assert_int_equal(ops->mirror_mark_get(s, pool, "lib/app", "v2", &text),
                     APR_SUCCESS);
    assert_int_equal(strlen(text), OCIREG_MIRROR_MARK_MAX);
    longer[OCIREG_MIRROR_MARK_MAX] = 'x';
    longer[OCIREG_MIRROR_MARK_MAX + 1] = '\0';
    assert_int_equal(ops->mirror_mark_put(s, pool, "lib/app", "v1", longer),
                     APR_EINVAL);
    assert_int_equal(ops->mirror_mark_get(s, pool, "lib/app", "v1", &text),
                     APR_SUCCESS);
    assert_string_equal(text, "second");
    /* marks are not repositories, tags or links */
    assert_int_equal(ops->repo_list(s, pool, NULL, 10, &names, &more),
                     APR_SUCCESS);
    assert_int_equal(names->nelts, 0);
    assert_int_equal(ops->repo_exists(s, pool, "lib/app"), APR_ENOENT);
    assert_int_equal(ops->mirror_mark_delete(s, pool, "lib/app", "v1"),
                     APR_SUCCESS);
    assert_int_equal(ops->mirror_mark_get(s, pool, "lib/app", "v1", &text),
                     APR_ENOENT);
    assert_int_equal(ops->mirror_mark_get(s, pool, "lib/app", "v2", &text),
                     APR_SUCCESS);
}

static void test_mirror_marks_refuse_bad_names(void **st)
{
    (void)st;
    char *text;
    static const char *const names[] = {"../x", "a/../b", "A", "/abs", "a//b",
                                        ""};
    static const char *const tags[] = {"../x", ".hidden", "a/b", "-x", ""};
    size_t i;
    for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        assert_int_equal(ops->mirror_mark_put(s, pool, names[i], "v1", "m"),
                         APR_EINVAL);
        assert_int_equal(ops->mirror_mark_get(s, pool, names[i], "v1", &text),
                         APR_EINVAL);
        assert_int_equal(ops->mirror_mark_delete(s, pool, names[i], "v1"),
                         APR_EINVAL);
    }
    for (i = 0; i < sizeof(tags) / sizeof(tags[0]); i++) {
        assert_int_equal(ops->mirror_mark_put(s, pool, "lib", tags[i], "m"),
                         APR_EINVAL);
        assert_int_equal(ops->mirror_mark_get(s, pool, "lib", tags[i], &text),
                         APR_EINVAL);
        assert_int_equal(ops->mirror_mark_delete(s, pool, "lib", tags[i]),
                         APR_EINVAL);
    }
    /* nothing was written anywhere */
    struct stat sb;
    assert_int_not_equal(stat(apr_pstrcat(pool, root, "/mirror", NULL), &sb),
                         0);
}

static const char *fill_file(const char *digest)
{
    return apr_pstrcat(pool, root, "/fills/sha256/", digest + 7, NULL);
}

static void read_fill(const char *digest, ocireg_lock_owner *holder)
{
    char buf[512];
    FILE *f = fopen(fill_file(digest), "r");
    size_t n;
    assert_non_null(f);
    n = fread(buf, 1, sizeof(buf), f);
    fclose(f);
    assert_true(ocireg_lock_owner_parse(buf, n, holder));
}

static void test_fill_claims(void **st)
{
    (void)st;
    const char *d = fake_digest('a');
    ocireg_lock_owner a, b, got;
    struct stat sb;
    owner(&a);
    a.instance = 1;
    owner(&b);
    strcpy(b.host, "other");
    b.instance = 2;
    assert_int_equal(ops->fill_claim(s, pool, d, &a), APR_SUCCESS);
    read_fill(d, &got);
    assert_true(ocireg_lock_owner_same(&got, &a));
    assert_true(got.expires == a.expires);
    /* another holder waits while the claim stands */
    assert_int_equal(ops->fill_claim(s, pool, d, &b), APR_EBUSY);
    /* the holder renews: its new lease is written */
    a.expires += apr_time_from_sec(30);
    assert_int_equal(ops->fill_claim(s, pool, d, &a), APR_SUCCESS);
    read_fill(d, &got);
    assert_true(got.expires == a.expires);
    /* another digest is another claim */
    assert_int_equal(ops->fill_claim(s, pool, fake_digest('b'), &b),
                     APR_SUCCESS);
    /* a release by someone else leaves the claim */
    ops->fill_release(s, pool, d, &b);
    assert_int_equal(stat(fill_file(d), &sb), 0);
    assert_int_equal(ops->fill_claim(s, pool, d, &b), APR_EBUSY);
    /* the holder's release removes it, and the digest is free again */
    ops->fill_release(s, pool, d, &a);
    assert_int_not_equal(stat(fill_file(d), &sb), 0);
    ops->fill_release(s, pool, d, &a); /* twice is harmless */
    assert_int_equal(ops->fill_claim(s, pool, d, &b), APR_SUCCESS);
    read_fill(d, &got);
    assert_true(ocireg_lock_owner_same(&got, &b));
}

static void test_fill_claim_takeover(void **st)
{
    (void)st;
    const char *d = fake_digest('c');
    ocireg_lock_owner a, b, got;
    pid_t child;
    owner(&a);
    strcpy(a.host, "gone");
    owner(&b);
    strcpy(b.host, "other");
    /* a claim whose lease ran out is taken over */
    a.expires = apr_time_now() - apr_time_from_sec(1);
    assert_int_equal(ops->fill_claim(s, pool, d, &a), APR_SUCCESS);
    assert_int_equal(ops->fill_claim(s, pool, d, &b), APR_SUCCESS);
    read_fill(d, &got);
    assert_true(ocireg_lock_owner_same(&got, &b));
    /* its old holder, back, finds it taken and its release changes nothing */
    a.expires = apr_time_now() + apr_time_from_sec(60);
    assert_int_equal(ops->fill_claim(s, pool, d, &a), APR_EBUSY);
    ops->fill_release(s, pool, d, &a);
    read_fill(d, &got);
    assert_true(ocireg_lock_owner_same(&got, &b));

    /* a live claim of a dead process of this host is taken over at once */
    d = fake_digest('d');
    child = fork();
    assert_true(child >= 0);
    if (child == 0)
        _exit(0);
    assert_int_equal(waitpid(child, NULL, 0), child);
    owner(&a);
    a.instance = 5;
    a.pid = child;
    owner(&b);
    b.instance = 6;
    b.pid = getpid();
    assert_int_equal(ops->fill_claim(s, pool, d, &a), APR_SUCCESS);
    assert_int_equal(ops->fill_claim(s, pool, d, &b), APR_SUCCESS);
    read_fill(d, &got);
    assert_true(ocireg_lock_owner_same(&got, &b));
    /* but a live process's claim of another instance stands */
    a.pid = getppid();
    assert_int_equal(ops->fill_claim(s, pool, d, &a), APR_EBUSY);

    /* a record that is no lock record was never a working claimer's */
    d = fake_digest('e');
    FILE *f;
    assert_int_equal(ops->fill_claim(s, pool, d, &a), APR_SUCCESS);
    f = fopen(fill_file(d), "w");
    assert_non_null(f);
    fputs("garbage", f);
    fclose(f);
    assert_int_equal(ops->fill_claim(s, pool, d, &b), APR_SUCCESS);
    read_fill(d, &got);
    assert_true(ocireg_lock_owner_same(&got, &b));
}

static void test_fill_claim_refuses_bad_digests(void **st)
{
    (void)st;
    ocireg_lock_owner me;
    struct stat sb;
    static const char *const bad[] = {
        "sha256:../../x", "sha256:ABC", "md5:abc", "",
        "sha512:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"};
    size_t i;
    owner(&me);
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(ops->fill_claim(s, pool, bad[i], &me), APR_EINVAL);
        ops->fill_release(s, pool, bad[i], &me);
    }
    assert_int_not_equal(stat(apr_pstrcat(pool, root, "/fills", NULL), &sb),
                         0);
}

int main(void)
{
    apr_initialize();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_create, setup, teardown),
        cmocka_unit_test_setup_teardown(test_blob_put_read, setup, teardown),
        cmocka_unit_test_setup_teardown(test_blob_empty_and_binary, setup, teardown),
        cmocka_unit_test_setup_teardown(test_blob_read_all_max, setup, teardown),
        cmocka_unit_test_setup_teardown(test_blob_unknown, setup, teardown),
        cmocka_unit_test_setup_teardown(test_blob_links, setup, teardown),
        cmocka_unit_test_setup_teardown(test_blob_holders, setup, teardown),
        cmocka_unit_test_setup_teardown(test_holder_backfill, setup, teardown),
        cmocka_unit_test_setup_teardown(test_manifest_links, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tags, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tag_list_repo_without_tags, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tag_pages, setup, teardown),
        cmocka_unit_test_setup_teardown(test_repo_pages, setup, teardown),
        cmocka_unit_test_setup_teardown(test_many_tags, setup, teardown),
        cmocka_unit_test_setup_teardown(test_referrers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_repos, setup, teardown),
        cmocka_unit_test_setup_teardown(test_repos_with_keyword_names, setup, teardown),
        cmocka_unit_test_setup_teardown(test_upload_two_chunks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_upload_many_writes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_upload_truncates_tail, setup, teardown),
        cmocka_unit_test_setup_teardown(test_upload_commit_drops_tail, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_temp_leftovers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_upload_open_without_write, setup, teardown),
        cmocka_unit_test_setup_teardown(test_upload_empty_blob, setup, teardown),
        cmocka_unit_test_setup_teardown(test_upload_abort, setup, teardown),
        cmocka_unit_test_setup_teardown(test_upload_commit_existing_blob, setup, teardown),
        cmocka_unit_test_setup_teardown(test_two_uploads_interleaved, setup, teardown),
        cmocka_unit_test_setup_teardown(test_upload_survives_new_store_handle, setup, teardown),
        cmocka_unit_test_setup_teardown(test_state_versions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lock_excludes_and_checks_version, setup, teardown),
        cmocka_unit_test_setup_teardown(test_claim_period_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mirror_marks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mirror_marks_refuse_bad_names, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fill_claims, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fill_claim_takeover, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fill_claim_refuses_bad_digests, setup, teardown),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    apr_terminate();
    return rc;
}
