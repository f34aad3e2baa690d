/* The filesystem store. Blobs are content-addressed files written once;
 * everything a repository holds is a small link file next to them. Every
 * write goes to a temporary file that is fsynced and renamed into place, so
 * a crash leaves either the old or the new state, never a partial one. */
#include <string.h>
#include <stdlib.h>
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>
#include <dirent.h>
#include <sys/stat.h>
#include <sys/file.h>
#include <apr_strings.h>
#include <apr_file_info.h>
#include <apr_general.h>
#include "ocireg_store.h"
#include "ocireg_parse.h"
#include "ocireg_listing.h"
#include "ocireg_manifest.h"

typedef struct {
    const char *root;
} fs_store;

struct ocireg_upload_writer {
    int fd;
    const char *path;
    apr_off_t pos;          /* file offset of the next write */
    apr_off_t flushed;      /* writeback started up to here */
};

/* Writeback is started every this many bytes, so the fsync before the 202
 * waits for the last stretch only, not for the whole body. */
#define WRITEBACK_STEP (8 * 1024 * 1024)

#define FS(s) ((fs_store *)(s)->impl)

/* "sha256:abc" -> "sha256/abc": the digest grammar keeps both parts free
 * of '/' and of "." and "..". */

static const char *blob_file(ocireg_store *s, apr_pool_t *p,
                             const char *digest)
{
    const char *colon = strchr(digest, ':');
    const char *enc = colon ? colon + 1 : digest;
    return apr_psprintf(p, "%s/blobs/%.*s/%.2s/%s", FS(s)->root,
                        (int)(colon ? colon - digest : 0), digest, enc, enc);
}

static const char *repo_dir(ocireg_store *s, apr_pool_t *p, const char *name)
{
    return apr_psprintf(p, "%s/repositories/%s", FS(s)->root, name);
}

static apr_status_t errno_status(void)
{
    return errno == ENOENT || errno == ENOTDIR ? APR_ENOENT
                                               : APR_FROM_OS_ERROR(errno);
}

static apr_status_t make_parent(apr_pool_t *p, const char *path)
{
    const char *slash = strrchr(path, '/');
    const char *dir = apr_pstrmemdup(p, path, (apr_size_t)(slash - path));
    return apr_dir_make_recursive(dir, APR_FPROT_OS_DEFAULT, p);
}

static void fsync_dir_of(apr_pool_t *p, const char *path)
{
    const char *slash = strrchr(path, '/');
    const char *dir = apr_pstrmemdup(p, path, (apr_size_t)(slash - path));
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd >= 0) {
        (void)fsync(fd);
        close(fd);
    }
}

static const char *temp_path(ocireg_store *s, apr_pool_t *p)
{
    unsigned char rnd[12];
    char hex[25];
    int i;
    apr_generate_random_bytes(rnd, sizeof(rnd));
    for (i = 0; i < 12; i++)
        apr_snprintf(hex + 2 * i, 3, "%02x", rnd[i]);
    return apr_psprintf(p, "%s/tmp/%s", FS(s)->root, hex);
}

static apr_status_t write_all(int fd, const char *buf, apr_size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, buf, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return APR_FROM_OS_ERROR(errno);
        }
        buf += n;
        len -= (apr_size_t)n;
    }
    return APR_SUCCESS;
}

/* Writes a whole file atomically: temp, fsync, rename, fsync dir. */
static apr_status_t write_atomic(ocireg_store *s, apr_pool_t *p,
                                 const char *path, const char *data,
                                 apr_size_t len)
{
    const char *tmp = temp_path(s, p);
    apr_status_t rv;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0)
        return APR_FROM_OS_ERROR(errno);
    rv = write_all(fd, data, len);
    if (rv == APR_SUCCESS && fsync(fd) != 0)
        rv = APR_FROM_OS_ERROR(errno);
    if (close(fd) != 0 && rv == APR_SUCCESS)
        rv = APR_FROM_OS_ERROR(errno);
    if (rv == APR_SUCCESS)
        rv = make_parent(p, path);
    if (rv == APR_SUCCESS && rename(tmp, path) != 0)
        rv = APR_FROM_OS_ERROR(errno);
    if (rv != APR_SUCCESS)
        unlink(tmp);
    else
        fsync_dir_of(p, path);
    return rv;
}

static apr_status_t read_small(apr_pool_t *p, const char *path,
                               apr_size_t max, char **data, apr_size_t *len)
{
    struct stat st;
    apr_size_t got = 0;
    char *buf;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno_status();
    if (fstat(fd, &st) != 0 || (apr_size_t)st.st_size > max) {
        close(fd);
        return APR_EGENERAL;
    }
    buf = apr_palloc(p, (apr_size_t)st.st_size + 1);
    while (got < (apr_size_t)st.st_size) {
        ssize_t n = read(fd, buf + got, (apr_size_t)st.st_size - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += (apr_size_t)n;
    }
    close(fd);
    if (got != (apr_size_t)st.st_size)
        return APR_EGENERAL;
    buf[got] = '\0';
    *data = buf;
    *len = got;
    return APR_SUCCESS;
}

static apr_status_t path_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? APR_SUCCESS : errno_status();
}

static apr_status_t remove_file(apr_pool_t *p, const char *path)
{
    if (unlink(path) != 0)
        return errno_status();
    fsync_dir_of(p, path);
    return APR_SUCCESS;
}

/* Blobs */

static apr_status_t fs_blob_stat(ocireg_store *s, apr_pool_t *p,
                                 const char *digest, apr_off_t *size)
{
    struct stat st;
    if (stat(blob_file(s, p, digest), &st) != 0)
        return errno_status();
    *size = st.st_size;
    return APR_SUCCESS;
}

static apr_status_t fs_blob_open(ocireg_store *s, apr_pool_t *p,
                                 const char *digest, ocireg_blob_body *out)
{
    apr_finfo_t fi;
    apr_status_t rv;
    memset(out, 0, sizeof(*out));
    rv = apr_file_open(&out->file, blob_file(s, p, digest),
                       APR_FOPEN_READ | APR_FOPEN_BINARY
                           | APR_FOPEN_SENDFILE_ENABLED,
                       APR_FPROT_OS_DEFAULT, p);
    if (APR_STATUS_IS_ENOENT(rv))
        return APR_ENOENT;
    if (rv == APR_SUCCESS)
        rv = apr_file_info_get(&fi, APR_FINFO_SIZE, out->file);
    if (rv == APR_SUCCESS)
        out->size = fi.size;
    return rv;
}

static apr_status_t fs_blob_read_all(ocireg_store *s, apr_pool_t *p,
                                     const char *digest, apr_size_t max,
                                     char **data, apr_size_t *len)
{
    return read_small(p, blob_file(s, p, digest), max, data, len);
}

static apr_status_t fs_blob_put(ocireg_store *s, apr_pool_t *p,
                                const char *digest, const char *data,
                                apr_size_t len)
{
    const char *path = blob_file(s, p, digest);
    if (path_exists(path) == APR_SUCCESS)
        return APR_SUCCESS;
    return write_atomic(s, p, path, data, len);
}

/* Repository links */

static const char *link_path(ocireg_store *s, apr_pool_t *p, const char *name,
                             const char *kind, const char *digest)
{
    return apr_psprintf(p, "%s/%s/%s", repo_dir(s, p, name), kind,
                        ocireg_digest_path(p, digest));
}

/* The holder index: holders/<alg>/<hex>/<name with '/' as '+'>, an empty
 * file per repository linking the blob, so that the repositories holding
 * a digest are one directory read away. '+' is outside the name grammar,
 * so the mapping is one to one and a name of 255 characters still fits
 * one file name. */
static const char *holders_dir(ocireg_store *s, apr_pool_t *p,
                               const char *digest)
{
    return apr_psprintf(p, "%s/holders/%s", FS(s)->root,
                        ocireg_digest_path(p, digest));
}

static const char *holder_file(ocireg_store *s, apr_pool_t *p,
                               const char *name, const char *digest)
{
    char *escaped = apr_pstrdup(p, name), *c;
    for (c = escaped; *c; c++)
        if (*c == '/')
            *c = '+';
    return apr_pstrcat(p, holders_dir(s, p, digest), "/", escaped, NULL);
}

/* An empty file says all there is: created in place (it is whole or
 * absent), and the directory synced so that it stays. */
static apr_status_t add_holder(ocireg_store *s, apr_pool_t *p,
                               const char *name, const char *digest)
{
    const char *path = holder_file(s, p, name, digest);
    apr_status_t rv;
    int fd;
    if (path_exists(path) == APR_SUCCESS)
        return APR_SUCCESS;
    rv = make_parent(p, path);
    if (rv != APR_SUCCESS)
        return rv;
    fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        return APR_FROM_OS_ERROR(errno);
    close(fd);
    fsync_dir_of(p, path);
    return APR_SUCCESS;
}

/* The link is an empty file: the blob's file is found by its digest,
 * which costs nothing here, so `ref` is not kept. The holder entry goes
 * first, so that a crash between the two leaves an entry without a link
 * (which readers confirm against the link), not a link the index misses;
 * an entry that cannot be written fails nothing (the index is a hint:
 * a mount without `from` then opens a session). A link already there
 * gets its entry too (links made before the index). */
static apr_status_t fs_blob_link(ocireg_store *s, apr_pool_t *p,
                                 const char *name, const char *digest,
                                 const ocireg_blob_ref *ref)
{
    const char *path = link_path(s, p, name, "_layers", digest);
    (void)ref;
    (void)add_holder(s, p, name, digest);
    if (path_exists(path) == APR_SUCCESS)
        return APR_SUCCESS;
    return write_atomic(s, p, path, "", 0);
}

static apr_status_t fs_blob_linked(ocireg_store *s, apr_pool_t *p,
                                   const char *name, const char *digest)
{
    return path_exists(link_path(s, p, name, "_layers", digest));
}

static apr_status_t fs_blob_open_linked(ocireg_store *s, apr_pool_t *p,
                                        const char *name, const char *digest,
                                        int want_body, ocireg_blob_body *out)
{
    apr_status_t rv = fs_blob_linked(s, p, name, digest);
    memset(out, 0, sizeof(*out));
    if (rv != APR_SUCCESS)
        return rv;
    if (want_body)
        return fs_blob_open(s, p, digest, out);
    return fs_blob_stat(s, p, digest, &out->size);
}

static apr_status_t fs_manifest_linked(ocireg_store *s, apr_pool_t *p,
                                       const char *name, const char *digest,
                                       const char **media_type);

static apr_status_t fs_links_exist(ocireg_store *s, apr_pool_t *p,
                                   const char *name, ocireg_link_check *checks,
                                   int n)
{
    int i;
    for (i = 0; i < n; i++)
        checks[i].status =
            checks[i].manifest
                ? fs_manifest_linked(s, p, name, checks[i].digest, NULL)
                : fs_blob_linked(s, p, name, checks[i].digest);
    return APR_SUCCESS;
}

/* The link, then the holder entry (an entry left by a failure here is
 * confirmed against the link by its readers). */
static apr_status_t fs_blob_unlink(ocireg_store *s, apr_pool_t *p,
                                   const char *name, const char *digest)
{
    apr_status_t rv = remove_file(p, link_path(s, p, name, "_layers",
                                               digest));
    if (rv == APR_SUCCESS || rv == APR_ENOENT)
        (void)remove_file(p, holder_file(s, p, name, digest));
    return rv;
}

/* One pass over the digest's holder directory, keeping the max smallest
 * names. */
static apr_status_t fs_blob_holders(ocireg_store *s, apr_pool_t *p,
                                    const char *digest, int max,
                                    apr_array_header_t **names)
{
    ocireg_select sel;
    struct dirent *e;
    DIR *d;

    if (max <= 0 || ocireg_digest_parse(digest) == OCIREG_DIGEST_BAD) {
        *names = apr_array_make(p, 1, sizeof(const char *));
        return APR_SUCCESS;
    }
    ocireg_select_init(&sel, p, max, NULL, ocireg_lexical_cmp);
    d = opendir(holders_dir(s, p, digest));
    if (!d) {
        apr_status_t rv = errno_status();
        *names = apr_array_make(p, 1, sizeof(const char *));
        return rv == APR_ENOENT ? APR_SUCCESS : rv;
    }
    while ((e = readdir(d)) != NULL) {
        char name[OCIREG_SELECT_NAME_MAX], *c;
        if (e->d_name[0] == '.' || strlen(e->d_name) >= sizeof(name))
            continue;
        strcpy(name, e->d_name);
        for (c = name; *c; c++)
            if (*c == '+')
                *c = '/';
        if (ocireg_name_valid(name))
            ocireg_select_offer(&sel, name);
    }
    closedir(d);
    *names = ocireg_select_sorted(&sel, p);
    return APR_SUCCESS;
}

/* Content first, then the link that makes it reachable. */
static apr_status_t fs_manifest_put(ocireg_store *s, apr_pool_t *p,
                                    const char *name, const char *digest,
                                    const char *media_type, const char *data,
                                    apr_size_t len)
{
    apr_status_t rv = fs_blob_put(s, p, digest, data, len);
    if (rv != APR_SUCCESS)
        return rv;
    return write_atomic(s, p, link_path(s, p, name, "_manifests", digest),
                        media_type, strlen(media_type));
}

static apr_status_t fs_manifest_linked(ocireg_store *s, apr_pool_t *p,
                                       const char *name, const char *digest,
                                       const char **media_type)
{
    char *data;
    apr_size_t len;
    apr_status_t rv = read_small(p, link_path(s, p, name, "_manifests",
                                              digest),
                                 1024, &data, &len);
    if (rv == APR_SUCCESS && media_type)
        *media_type = data;
    return rv;
}

static apr_status_t fs_manifest_read_linked(ocireg_store *s, apr_pool_t *p,
                                            const char *name,
                                            const char *digest,
                                            apr_size_t max, int want_body,
                                            char **data, apr_size_t *len,
                                            const char **media_type)
{
    apr_off_t size = 0;
    apr_status_t rv = fs_manifest_linked(s, p, name, digest, media_type);
    *data = NULL;
    if (rv != APR_SUCCESS)
        return rv;
    if (want_body)
        return fs_blob_read_all(s, p, digest, max, data, len);
    rv = fs_blob_stat(s, p, digest, &size);
    if (rv == APR_SUCCESS && (apr_uint64_t)size > max)
        rv = APR_EGENERAL;
    if (rv == APR_SUCCESS)
        *len = (apr_size_t)size;
    return rv;
}

static apr_status_t fs_manifest_unlink(ocireg_store *s, apr_pool_t *p,
                                       const char *name, const char *digest)
{
    return remove_file(p, link_path(s, p, name, "_manifests", digest));
}

/* Tags */

static const char *tag_path(ocireg_store *s, apr_pool_t *p, const char *name,
                            const char *tag)
{
    return apr_psprintf(p, "%s/_tags/%s", repo_dir(s, p, name), tag);
}

static apr_status_t fs_tag_set(ocireg_store *s, apr_pool_t *p,
                               const char *name, const char *tag,
                               const char *digest)
{
    return write_atomic(s, p, tag_path(s, p, name, tag), digest,
                        strlen(digest));
}

static apr_status_t fs_tag_get(ocireg_store *s, apr_pool_t *p,
                               const char *name, const char *tag,
                               const char **digest)
{
    char *data;
    apr_size_t len;
    apr_status_t rv = read_small(p, tag_path(s, p, name, tag),
                                 OCIREG_DIGEST_MAX, &data, &len);
    if (rv == APR_SUCCESS)
        *digest = data;
    return rv;
}

static apr_status_t fs_tag_delete(ocireg_store *s, apr_pool_t *p,
                                  const char *name, const char *tag)
{
    return remove_file(p, tag_path(s, p, name, tag));
}

/* Names of the entries of dir that are not hidden or temporary. */
static apr_status_t list_dir(apr_pool_t *p, const char *dir,
                             apr_array_header_t **out)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    *out = apr_array_make(p, 16, sizeof(const char *));
    if (!d)
        return errno_status();
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        APR_ARRAY_PUSH(*out, const char *) = apr_pstrdup(p, e->d_name);
    }
    closedir(d);
    return APR_SUCCESS;
}

static apr_status_t fs_repo_exists(ocireg_store *s, apr_pool_t *p,
                                   const char *name)
{
    const char *dir = repo_dir(s, p, name);
    if (path_exists(apr_pstrcat(p, dir, "/_layers", NULL)) == APR_SUCCESS
        || path_exists(apr_pstrcat(p, dir, "/_manifests", NULL))
               == APR_SUCCESS)
        return APR_SUCCESS;
    return APR_ENOENT;
}

/* One pass over the directory, keeping only the page: memory is n names
 * whatever the directory holds. */
static apr_status_t fs_tag_list(ocireg_store *s, apr_pool_t *p,
                                const char *name, const char *last, int n,
                                apr_array_header_t **tags, int *more)
{
    ocireg_select sel;
    struct dirent *e;
    DIR *d;
    apr_status_t rv = fs_repo_exists(s, p, name);

    *more = 0;
    if (rv != APR_SUCCESS)
        return rv;
    ocireg_select_init(&sel, p, n, last, ocireg_lexical_cmp);
    d = opendir(apr_pstrcat(p, repo_dir(s, p, name), "/_tags", NULL));
    if (!d) {
        rv = errno_status();
        *tags = apr_array_make(p, 1, sizeof(const char *));
        return rv == APR_ENOENT ? APR_SUCCESS : rv;
    }
    while ((e = readdir(d)) != NULL)
        if (ocireg_tag_valid(e->d_name))
            ocireg_select_offer(&sel, e->d_name);
    closedir(d);
    *more = sel.more;
    *tags = ocireg_select_sorted(&sel, p);
    return APR_SUCCESS;
}

/* Referrers: _referrers/<subject alg>/<subject enc>/<alg>:<enc> */

static const char *referrer_dir(ocireg_store *s, apr_pool_t *p,
                                const char *name, const char *subject)
{
    return apr_psprintf(p, "%s/_referrers/%s", repo_dir(s, p, name),
                        ocireg_digest_path(p, subject));
}

static apr_status_t fs_referrer_add(ocireg_store *s, apr_pool_t *p,
                                    const char *name, const char *subject,
                                    const char *digest,
                                    const char *descriptor)
{
    return write_atomic(s, p,
                        apr_pstrcat(p, referrer_dir(s, p, name, subject), "/",
                                    digest, NULL),
                        descriptor, strlen(descriptor));
}

static apr_status_t fs_referrer_remove(ocireg_store *s, apr_pool_t *p,
                                       const char *name, const char *subject,
                                       const char *digest)
{
    return remove_file(p, apr_pstrcat(p, referrer_dir(s, p, name, subject),
                                      "/", digest, NULL));
}

/* Digests are lowercase: byte order is their order. */
static int digest_cmp(const char *a, const char *b)
{
    return strcmp(a, b);
}

#define REFERRER_BATCH 64

static apr_status_t fs_referrer_each(ocireg_store *s, apr_pool_t *p,
                                     const char *name, const char *subject,
                                     const char *last,
                                     int (*fn)(void *ctx, const char *digest,
                                               const char *descriptor),
                                     void *ctx)
{
    const char *dir = referrer_dir(s, p, name, subject);
    char after[OCIREG_SELECT_NAME_MAX];
    apr_pool_t *batch;
    apr_status_t rv;
    int more = 1;

    if (last && strlen(last) >= sizeof(after))
        return APR_SUCCESS;
    after[0] = '\0';
    if (last)
        strcpy(after, last);
    if ((rv = apr_pool_create(&batch, p)) != APR_SUCCESS)
        return rv;
    /* Batches of the next smallest names, one directory pass each. */
    while (more) {
        ocireg_select sel;
        apr_array_header_t *names;
        struct dirent *e;
        DIR *d;
        int i;

        apr_pool_clear(batch);
        d = opendir(dir);
        if (!d) {
            rv = errno_status();
            if (rv == APR_ENOENT)
                rv = APR_SUCCESS;
            break;
        }
        ocireg_select_init(&sel, batch, REFERRER_BATCH,
                           after[0] ? after : NULL, digest_cmp);
        while ((e = readdir(d)) != NULL)
            if (e->d_name[0] != '.')
                ocireg_select_offer(&sel, e->d_name);
        closedir(d);
        more = sel.more;
        names = ocireg_select_sorted(&sel, batch);
        for (i = 0; i < names->nelts; i++) {
            const char *dg = APR_ARRAY_IDX(names, i, const char *);
            char *data;
            apr_size_t len;
            strcpy(after, dg);
            /* A referrer removed while we list is simply not listed. */
            if (read_small(batch, apr_pstrcat(batch, dir, "/", dg, NULL),
                           OCIREG_REFERRER_DESCRIPTOR_MAX, &data,
                           &len) == APR_SUCCESS
                && fn(ctx, dg, data)) {
                more = 0;
                break;
            }
        }
    }
    apr_pool_destroy(batch);
    return rv;
}

/* Every directory under repositories/ whose path is a valid name, depth
 * first, with one directory handle per level; names never start with '_',
 * so a repository's own _manifests, _layers... are never taken for one.
 * visit's failure stops the walk and is returned. */
typedef apr_status_t (*repo_visit_fn)(void *ctx, apr_pool_t *p,
                                      const char *name, const char *path);

static apr_status_t walk_repositories(apr_pool_t *p, const char *dir,
                                      const char *prefix,
                                      repo_visit_fn visit, void *ctx)
{
    apr_pool_t *sub;
    struct dirent *e;
    apr_status_t rv = APR_SUCCESS;
    DIR *d = opendir(dir);
    if (!d)
        return APR_SUCCESS;
    if (apr_pool_create(&sub, p) != APR_SUCCESS) {
        closedir(d);
        return APR_SUCCESS;
    }
    while (rv == APR_SUCCESS && (e = readdir(d)) != NULL) {
        const char *name, *path;
        struct stat st;
        if (e->d_name[0] == '_' || e->d_name[0] == '.')
            continue;
        apr_pool_clear(sub);
        path = apr_pstrcat(sub, dir, "/", e->d_name, NULL);
        if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode))
            continue;
        name = prefix ? apr_pstrcat(sub, prefix, "/", e->d_name, NULL)
                      : apr_pstrdup(sub, e->d_name);
        if (strlen(name) > OCIREG_NAME_MAX)
            continue;
        if (ocireg_name_valid(name))
            rv = visit(ctx, sub, name, path);
        if (rv == APR_SUCCESS)
            rv = walk_repositories(sub, path, name, visit, ctx);
    }
    closedir(d);
    apr_pool_destroy(sub);
    return rv;
}

/* Catalog: a repository is a directory holding _manifests. The whole tree
 * is walked once per page, keeping only the page. */
static apr_status_t offer_if_listed(void *ctx, apr_pool_t *p,
                                    const char *name, const char *path)
{
    if (path_exists(apr_pstrcat(p, path, "/_manifests", NULL))
        == APR_SUCCESS)
        ocireg_select_offer(ctx, name);
    return APR_SUCCESS;
}

static apr_status_t fs_repo_list(ocireg_store *s, apr_pool_t *p,
                                 const char *last, int n,
                                 apr_array_header_t **names, int *more)
{
    ocireg_select sel;
    ocireg_select_init(&sel, p, n, last, ocireg_lexical_cmp);
    walk_repositories(p, apr_pstrcat(p, FS(s)->root, "/repositories", NULL),
                      NULL, offer_if_listed, &sel);
    *more = sel.more;
    *names = ocireg_select_sorted(&sel, p);
    return APR_SUCCESS;
}

/* Uploads: one data file per session; the offset in the session table is
 * the truth, the file may hold more after a failed request. */

static const char *upload_file(ocireg_store *s, apr_pool_t *p,
                               const char *uuid)
{
    return apr_psprintf(p, "%s/uploads/%s", FS(s)->root, uuid);
}

static const char *state_file(ocireg_store *s, apr_pool_t *p,
                              const char *uuid)
{
    return apr_psprintf(p, "%s/uploads/%s.state", FS(s)->root, uuid);
}

static const char *lock_file(ocireg_store *s, apr_pool_t *p,
                             const char *uuid)
{
    return apr_psprintf(p, "%s/uploads/%s.lock", FS(s)->root, uuid);
}

static apr_status_t fs_upload_create(ocireg_store *s, apr_pool_t *p,
                                     const char *uuid, unsigned char *state)
{
    int fd = open(upload_file(s, p, uuid),
                  O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    (void)state;
    if (fd < 0)
        return APR_FROM_OS_ERROR(errno);
    close(fd);
    return APR_SUCCESS;
}

static apr_status_t writer_cleanup(void *data)
{
    ocireg_upload_writer *w = data;
    if (w->fd >= 0)
        close(w->fd);
    w->fd = -1;
    return APR_SUCCESS;
}

static apr_status_t fs_upload_open(ocireg_store *s, apr_pool_t *p,
                                   const char *uuid, unsigned char *state,
                                   apr_uint64_t version, apr_off_t offset,
                                   apr_off_t expected,
                                   ocireg_upload_lock *lock,
                                   ocireg_upload_writer **w)
{
    ocireg_upload_writer *wr = apr_pcalloc(p, sizeof(*wr));
    (void)state;
    (void)version;
    (void)expected;
    (void)lock; /* taken at upload_lock: the file is written in place */
    wr->path = upload_file(s, p, uuid);
    wr->fd = open(wr->path, O_WRONLY | O_CLOEXEC);
    if (wr->fd < 0)
        return errno_status();
    apr_pool_cleanup_register(p, wr, writer_cleanup, apr_pool_cleanup_null);
    if (ftruncate(wr->fd, offset) != 0
        || lseek(wr->fd, offset, SEEK_SET) != offset)
        return APR_FROM_OS_ERROR(errno);
    wr->pos = wr->flushed = offset;
    *w = wr;
    return APR_SUCCESS;
}

static apr_status_t fs_upload_write(ocireg_upload_writer *w, const char *buf,
                                    apr_size_t len)
{
    apr_status_t rv = write_all(w->fd, buf, len);
    if (rv != APR_SUCCESS)
        return rv;
    w->pos += (apr_off_t)len;
    if (w->pos - w->flushed >= WRITEBACK_STEP) {
        /* A hint: failure only means the final fsync does all the work. */
        (void)sync_file_range(w->fd, w->flushed, w->pos - w->flushed,
                              SYNC_FILE_RANGE_WRITE);
        w->flushed = w->pos;
    }
    return APR_SUCCESS;
}

static apr_status_t fs_upload_close(ocireg_upload_writer *w,
                                    unsigned char *state)
{
    apr_status_t rv = APR_SUCCESS;
    (void)state;
    /* Durable before the client hears 202: a crash after it must not lose
     * bytes the client will not send again. */
    if (fdatasync(w->fd) != 0)
        rv = APR_FROM_OS_ERROR(errno);
    if (close(w->fd) != 0 && rv == APR_SUCCESS)
        rv = APR_FROM_OS_ERROR(errno);
    w->fd = -1;
    return rv;
}

static apr_status_t fs_upload_commit(ocireg_store *s, apr_pool_t *p,
                                     const char *uuid, unsigned char *state,
                                     apr_uint64_t version,
                                     ocireg_upload_writer *w,
                                     const char *digest, apr_off_t size,
                                     ocireg_blob_ref *ref,
                                     const char *link_name)
{
    const char *from = upload_file(s, p, uuid);
    const char *to = blob_file(s, p, digest);
    struct stat st;
    apr_status_t rv;
    (void)state;
    (void)version;
    (void)w;
    if (ref) {
        ref->size = size;
        ref->data = NULL;
    }
    if (stat(from, &st) != 0)
        return errno_status();
    if (st.st_size < size)
        return APR_EGENERAL;
    /* Drop what a failed request left past the verified end. */
    if (st.st_size > size && truncate(from, size) != 0)
        return APR_FROM_OS_ERROR(errno);
    rv = make_parent(p, to);
    if (rv != APR_SUCCESS)
        return rv;
    /* Same content under the same name: replacing an existing copy is
     * harmless and keeps a single one. */
    if (rename(from, to) != 0)
        return APR_FROM_OS_ERROR(errno);
    fsync_dir_of(p, to);
    unlink(state_file(s, p, uuid));
    unlink(lock_file(s, p, uuid));
    return link_name ? fs_blob_link(s, p, link_name, digest, ref)
                     : APR_SUCCESS;
}

static apr_status_t fs_upload_abort(ocireg_store *s, apr_pool_t *p,
                                    const char *uuid, unsigned char *state,
                                    apr_uint64_t version, const char *digest)
{
    (void)state;
    (void)version;
    (void)digest;
    unlink(state_file(s, p, uuid));
    unlink(lock_file(s, p, uuid));
    return remove_file(p, upload_file(s, p, uuid));
}

static apr_off_t fs_chunk_min_length(ocireg_store *s)
{
    (void)s;
    /* No minimum is needed on local disk; this is the size below which
     * per-request overhead starts to dominate. */
    return 1024 * 1024;
}

static apr_status_t fs_upload_sweep(ocireg_store *s, apr_pool_t *p,
                                    apr_time_t before,
                                    int (*live)(void *ctx, const char *uuid),
                                    void *ctx, int *swept)
{
    const char *dir = apr_pstrcat(p, FS(s)->root, "/uploads", NULL);
    apr_array_header_t *names;
    apr_status_t rv = list_dir(p, dir, &names);
    int i;
    *swept = 0;
    if (rv != APR_SUCCESS)
        return rv == APR_ENOENT ? APR_SUCCESS : rv;
    for (i = 0; i < names->nelts; i++) {
        const char *name = APR_ARRAY_IDX(names, i, const char *);
        const char *f = apr_pstrcat(p, dir, "/", name, NULL);
        const char *uuid = apr_pstrmemdup(p, name, strcspn(name, "."));
        struct stat st;
        if (stat(f, &st) != 0 || apr_time_from_sec(st.st_mtime) >= before
            || live(ctx, uuid))
            continue;
        if (unlink(f) == 0)
            (*swept)++;
    }
    return APR_SUCCESS;
}

static apr_status_t fs_upload_settle(ocireg_store *s, apr_pool_t *p,
                                     const char *uuid, apr_uint64_t version,
                                     const unsigned char *before,
                                     const unsigned char *after)
{
    (void)s, (void)p, (void)uuid, (void)version, (void)before, (void)after;
    return APR_SUCCESS;
}

/* The record file starts with its version, so that a lock taker can tell
 * whether the record it read is still the latest. Only the lock holder
 * writes it, so replacing it is enough to keep versions in order. */
#define STATE_HEADER 16

static apr_status_t fs_state_put(ocireg_store *s, apr_pool_t *p,
                                 const char *uuid, apr_uint64_t version,
                                 const void *data, apr_size_t len,
                                 ocireg_upload_writer *w)
{
    char *buf = apr_palloc(p, STATE_HEADER + len);
    (void)w; /* the bytes are in the upload's file already */
    apr_snprintf(buf, STATE_HEADER + 1, "%015" APR_UINT64_T_FMT "\n",
                 version);
    memcpy(buf + STATE_HEADER, data, len);
    return write_atomic(s, p, state_file(s, p, uuid), buf,
                        STATE_HEADER + len);
}

static apr_status_t fs_state_get(ocireg_store *s, apr_pool_t *p,
                                 const char *uuid, apr_uint64_t hint,
                                 apr_uint64_t *version, void **data,
                                 apr_size_t *len)
{
    char *d, *end;
    (void)hint; /* one record file: it is the latest */
    apr_size_t n;
    apr_status_t rv = read_small(p, state_file(s, p, uuid), 64 * 1024, &d,
                                 &n);
    if (rv != APR_SUCCESS)
        return rv;
    if (n < STATE_HEADER || d[STATE_HEADER - 1] != '\n')
        return APR_EGENERAL;
    *version = (apr_uint64_t)apr_strtoi64(d, &end, 10);
    if (end != d + STATE_HEADER - 1)
        return APR_EGENERAL;
    *data = d + STATE_HEADER;
    *len = n - STATE_HEADER;
    return APR_SUCCESS;
}

/* The lock is flock(2) on a lock file next to the upload: the kernel
 * drops it when its holder exits however it ends, and it reaches every
 * httpd on this machine (and on a shared filesystem that supports it). */
struct ocireg_upload_lock {
    int fd;
};

static apr_status_t close_lock(void *data)
{
    ocireg_upload_lock *l = data;
    if (l->fd >= 0)
        close(l->fd);
    l->fd = -1;
    return APR_SUCCESS;
}

static apr_status_t fs_upload_lock(ocireg_store *s, apr_pool_t *p,
                                   const char *uuid, apr_uint64_t version,
                                   const ocireg_lock_owner *me,
                                   ocireg_upload_lock **out)
{
    ocireg_upload_lock *l = apr_pcalloc(p, sizeof(*l));
    apr_uint64_t latest;
    void *data;
    apr_size_t len;
    apr_status_t rv;
    (void)me;
    /* Only an existing session has a lock: no O_CREAT on a missing one. */
    if (access(upload_file(s, p, uuid), F_OK) != 0)
        return errno_status();
    /* Read-only is enough for flock(2). */
    l->fd = open(lock_file(s, p, uuid), O_RDONLY | O_CREAT | O_CLOEXEC, 0644);
    if (l->fd < 0)
        return errno_status();
    apr_pool_cleanup_register(p, l, close_lock, apr_pool_cleanup_null);
    if (flock(l->fd, LOCK_EX | LOCK_NB) != 0) {
        rv = errno == EWOULDBLOCK ? APR_EBUSY : APR_FROM_OS_ERROR(errno);
        apr_pool_cleanup_run(p, l, close_lock);
        return rv;
    }
    rv = fs_state_get(s, p, uuid, 0, &latest, &data, &len);
    if (rv == APR_SUCCESS && latest != version)
        rv = OCIREG_STORE_ESTALE;
    if (rv != APR_SUCCESS) {
        apr_pool_cleanup_run(p, l, close_lock);
        return rv;
    }
    *out = l;
    return APR_SUCCESS;
}

static apr_status_t fs_claim_period(ocireg_store *s, apr_pool_t *p,
                                    const char *what, apr_int64_t period)
{
    const char *path = apr_psprintf(p, "%s/claims/%s.%" APR_INT64_T_FMT,
                                    FS(s)->root, what, period);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0 && errno == ENOENT) {
        apr_status_t rv = make_parent(p, path);
        if (rv != APR_SUCCESS)
            return rv;
        fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    }
    if (fd < 0)
        return errno == EEXIST ? APR_EEXIST : APR_FROM_OS_ERROR(errno);
    close(fd);
    unlink(apr_psprintf(p, "%s/claims/%s.%" APR_INT64_T_FMT, FS(s)->root,
                        what, period - 1));
    return APR_SUCCESS;
}

/* Pull-through mirror marks: mirror/<name>/_tags/<tag>, outside
 * repositories/ so that no listing or backfill sees them. No name
 * component starts with '_', so a nested repository's marks never mix
 * with these. */
static apr_status_t mark_path(ocireg_store *s, apr_pool_t *p,
                              const char *name, const char *tag,
                              const char **path)
{
    if (!ocireg_name_valid(name) || !ocireg_tag_valid(tag))
        return APR_EINVAL;
    *path = apr_psprintf(p, "%s/mirror/%s/_tags/%s", FS(s)->root, name, tag);
    return APR_SUCCESS;
}

static apr_status_t fs_mirror_mark_put(ocireg_store *s, apr_pool_t *p,
                                       const char *name, const char *tag,
                                       const char *text)
{
    const char *path;
    apr_size_t len = strlen(text);
    apr_status_t rv = mark_path(s, p, name, tag, &path);
    if (rv != APR_SUCCESS)
        return rv;
    if (len > OCIREG_MIRROR_MARK_MAX)
        return APR_EINVAL;
    return write_atomic(s, p, path, text, len);
}

static apr_status_t fs_mirror_mark_get(ocireg_store *s, apr_pool_t *p,
                                       const char *name, const char *tag,
                                       char **text)
{
    const char *path;
    apr_size_t len;
    apr_status_t rv = mark_path(s, p, name, tag, &path);
    if (rv != APR_SUCCESS)
        return rv;
    return read_small(p, path, OCIREG_MIRROR_MARK_MAX, text, &len);
}

static apr_status_t fs_mirror_mark_delete(ocireg_store *s, apr_pool_t *p,
                                          const char *name, const char *tag)
{
    const char *path;
    apr_status_t rv = mark_path(s, p, name, tag, &path);
    if (rv != APR_SUCCESS)
        return rv;
    rv = remove_file(p, path);
    return rv == APR_ENOENT ? APR_SUCCESS : rv;
}

/* Fill claims: fills/sha256/<hex> holds the claimer's lock record.
 * Reading a record and replacing or removing it is done under flock(2) on
 * fills/.lock, so that of two processes that find one stale claim only one
 * takes it over, and a release never removes a claim taken over since it
 * read it. The kernel drops the flock with its process however it ends. */
static apr_status_t fill_path(ocireg_store *s, apr_pool_t *p,
                              const char *digest, const char **path)
{
    if (ocireg_digest_parse(digest) != OCIREG_DIGEST_SHA256)
        return APR_EINVAL;
    *path = apr_psprintf(p, "%s/fills/%s", FS(s)->root,
                         ocireg_digest_path(p, digest));
    return APR_SUCCESS;
}

static apr_status_t fills_lock(ocireg_store *s, apr_pool_t *p, int *fd)
{
    const char *path = apr_pstrcat(p, FS(s)->root, "/fills/.lock", NULL);
    apr_status_t rv;
    *fd = open(path, O_RDONLY | O_CREAT | O_CLOEXEC, 0644);
    if (*fd < 0 && errno == ENOENT) {
        rv = make_parent(p, path);
        if (rv != APR_SUCCESS)
            return rv;
        *fd = open(path, O_RDONLY | O_CREAT | O_CLOEXEC, 0644);
    }
    if (*fd < 0)
        return APR_FROM_OS_ERROR(errno);
    while (flock(*fd, LOCK_EX) != 0) {
        if (errno != EINTR) {
            rv = APR_FROM_OS_ERROR(errno);
            close(*fd);
            return rv;
        }
    }
    return APR_SUCCESS;
}

/* The holder of the claim at path: APR_ENOENT when there is none, and
 * *readable 0 for a record that is not a lock record (never written by a
 * claimer that works). */
static apr_status_t fill_holder(apr_pool_t *p, const char *path,
                                ocireg_lock_owner *holder, int *readable)
{
    char *text;
    apr_size_t len;
    apr_status_t rv = read_small(p, path, 4096, &text, &len);
    *readable = 0;
    if (rv == APR_EGENERAL) /* too large or short read: garbage */
        return APR_SUCCESS;
    if (rv == APR_SUCCESS)
        *readable = ocireg_lock_owner_parse(text, len, holder);
    return rv;
}

static apr_status_t fs_fill_claim(ocireg_store *s, apr_pool_t *p,
                                  const char *digest,
                                  const ocireg_lock_owner *me)
{
    ocireg_lock_owner holder;
    const char *path, *text;
    int fd, readable;
    apr_status_t rv = fill_path(s, p, digest, &path);
    if (rv != APR_SUCCESS)
        return rv;
    rv = fills_lock(s, p, &fd);
    if (rv != APR_SUCCESS)
        return rv;
    rv = fill_holder(p, path, &holder, &readable);
    if (rv == APR_SUCCESS && readable
        && !ocireg_lock_owner_same(&holder, me)
        && !ocireg_lock_takeover(&holder, me, apr_time_now(),
                                 ocireg_pid_alive))
        rv = APR_EBUSY;
    else if (rv == APR_SUCCESS || rv == APR_ENOENT) {
        /* Free, ours (a renewal), or a stale holder's: replaced whole. */
        text = ocireg_lock_owner_format(p, me);
        rv = write_atomic(s, p, path, text, strlen(text));
    }
    close(fd);
    return rv;
}

static void fs_fill_release(ocireg_store *s, apr_pool_t *p,
                            const char *digest, const ocireg_lock_owner *me)
{
    ocireg_lock_owner holder;
    const char *path;
    int fd, readable;
    if (fill_path(s, p, digest, &path) != APR_SUCCESS
        || fills_lock(s, p, &fd) != APR_SUCCESS)
        return;
    if (fill_holder(p, path, &holder, &readable) == APR_SUCCESS && readable
        && ocireg_lock_owner_same(&holder, me))
        (void)remove_file(p, path);
    close(fd);
}

static void fs_upload_lock_keep(ocireg_upload_lock *l)
{
    (void)l;
}

static void fs_upload_unlock(ocireg_upload_lock *l)
{
    close_lock(l);
}

static void fs_upload_lock_drop(ocireg_upload_lock *l)
{
    close_lock(l);
}

static void fs_upload_cleanup(ocireg_store *s, apr_pool_t *p,
                              const char *uuid, const unsigned char *state,
                              apr_uint64_t version)
{
    /* The commit removed everything already: renames and unlinks are
     * cheap. */
    (void)s, (void)p, (void)uuid, (void)state, (void)version;
}

static apr_off_t fs_max_blob_size(ocireg_store *s)
{
    (void)s;
    return -1;
}

/* The one-time backfill of the holder index for blob links made before
 * it: a walk of repositories/ adding each _layers link's entry, then the
 * marker. Entries are idempotent, so a walk cut short is done again at the
 * next start; until then a mount without `from` misses those links (an
 * upload session, never a wrong answer). */
#define HOLDERS_MARKER "holders.complete"

typedef struct {
    ocireg_store *s;
    int (*stop)(void);
} holder_fill;

static apr_status_t fill_holders_of(void *ctx, apr_pool_t *p,
                                    const char *name, const char *path)
{
    holder_fill *h = ctx;
    ocireg_store *s = h->s;
    apr_status_t rv = APR_SUCCESS;
    DIR *links;
    if (h->stop())
        return APR_EINTR;
    links = opendir(apr_pstrcat(p, path, "/_layers/sha256", NULL));
    struct dirent *l;
    while (links && rv == APR_SUCCESS && (l = readdir(links)) != NULL) {
        const char *digest = apr_pstrcat(p, "sha256:", l->d_name, NULL);
        if (ocireg_digest_parse(digest) == OCIREG_DIGEST_SHA256)
            rv = add_holder(s, p, name, digest);
    }
    if (links)
        closedir(links);
    return rv;
}

static apr_status_t fs_prepare(ocireg_store *s, apr_pool_t *p,
                               int (*stop)(void))
{
    const char *marker = apr_pstrcat(p, FS(s)->root, "/" HOLDERS_MARKER,
                                     NULL);
    holder_fill h = {s, stop};
    apr_status_t rv = path_exists(marker);
    if (rv != APR_ENOENT)
        return rv;
    rv = walk_repositories(p, apr_pstrcat(p, FS(s)->root, "/repositories",
                                          NULL),
                           NULL, fill_holders_of, &h);
    if (rv == APR_SUCCESS)
        rv = write_atomic(s, p, marker, "", 0);
    return rv;
}

static const ocireg_store_ops fs_ops = {
    "filesystem",
    fs_blob_stat,
    fs_blob_open,
    fs_blob_read_all,
    fs_blob_put,
    fs_blob_link,
    fs_blob_linked,
    fs_blob_open_linked,
    fs_blob_unlink,
    fs_links_exist,
    fs_blob_holders,
    fs_manifest_put,
    fs_manifest_linked,
    fs_manifest_read_linked,
    fs_manifest_unlink,
    fs_tag_set,
    fs_tag_get,
    fs_tag_delete,
    fs_tag_list,
    fs_referrer_add,
    fs_referrer_remove,
    fs_referrer_each,
    fs_repo_exists,
    fs_repo_list,
    fs_upload_create,
    fs_upload_open,
    fs_upload_write,
    fs_upload_close,
    fs_upload_commit,
    fs_upload_abort,
    fs_upload_cleanup,
    fs_chunk_min_length,
    fs_max_blob_size,
    fs_upload_sweep,
    fs_upload_settle,
    fs_state_put,
    fs_state_get,
    fs_upload_lock,
    fs_claim_period,
    fs_upload_lock_keep,
    fs_upload_unlock,
    fs_upload_lock_drop,
    fs_mirror_mark_put,
    fs_mirror_mark_get,
    fs_mirror_mark_delete,
    fs_fill_claim,
    fs_fill_release,
    fs_prepare,
};


apr_status_t ocireg_store_fs_create(apr_pool_t *pool, const char *root,
                                    ocireg_store **out)
{
    static const char *const dirs[] = {"blobs", "repositories", "uploads",
                                       "tmp"};
    ocireg_store *s = apr_pcalloc(pool, sizeof(*s));
    fs_store *fs = apr_pcalloc(pool, sizeof(*fs));
    apr_size_t i;
    fs->root = apr_pstrdup(pool, root);
    s->ops = &fs_ops;
    s->impl = fs;
    s->id = ocireg_store_id(apr_pstrcat(pool, "filesystem:", root, NULL));
    for (i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
        apr_status_t rv = apr_dir_make_recursive(
            apr_pstrcat(pool, root, "/", dirs[i], NULL),
            APR_FPROT_OS_DEFAULT, pool);
        if (rv != APR_SUCCESS)
            return rv;
    }
    *out = s;
    return APR_SUCCESS;
}
