/* The S3 store: upload sessions (parts, tails, finishing, sweep).
 *
 * A session's bytes are in two places: full parts of one multipart upload
 * (data/<uuid>), every part exactly part_size bytes as R2 wants them, and
 * the tail, the bytes after the last full part, which is the body of the
 * session's latest record object (uploads/<uuid>/state.<version>,
 * ocireg_store_s3_records.c). So a request that adds less than a part
 * costs one PUT, its record, and no multipart upload exists until a part
 * does.
 *
 * A request that fills parts receives each part into a local spool and,
 * once it is full and more bytes come, hands it to a thread that uploads
 * it while the next part is received into a second spool: the client's
 * bytes keep flowing while S3 answers, and the disk holds at most two
 * parts per request.
 *
 * Finishing moves no byte through this server that S3 already has: the
 * tail is copied server-side, as the blob itself (CopyObject) for a blob
 * smaller than a part, or as the last part (UploadPartCopy) before
 * Complete. */
#include <string.h>
#include <stdlib.h>
#include <unistd.h>
#include <apr_strings.h>
#include <apr_lib.h>
#include <apr_thread_proc.h>
#include <apr_thread_mutex.h>
#include <apr_thread_cond.h>
#include <openssl/evp.h>
#include <apr_file_io.h>
#include <apr_portable.h>
#include "ocireg_store_s3_int.h"

/* A part upload (from a spool) or copy (of a record's tail), run by a
 * thread of its own so that the request thread goes on receiving. */
typedef struct {
    ocireg_s3 *s3;
    const char *key;             /* data/<uuid> */
    const char *upload_id;
    int part;
    apr_file_t *spool;           /* upload: part bytes from its start */
    apr_off_t len;
    const char *copy_src;        /* copy: this object's bytes */
    const char *copy_if_match;
    int retries;
    int counted;                 /* a full part the state then counts */
    /* A part sent while its bytes arrive: the thread reads the spool up
     * to `filled` and waits for more until `len`, or gives up (abandon:
     * the body ended first, the part is not made). */
    int stream;
    apr_off_t filled;
    apr_off_t read_off;
    int abandon;
    apr_status_t rv;
    char etag[160];
    apr_thread_mutex_t *mutex;
    apr_thread_cond_t *cond;
    int done;
    apr_thread_t *thread;
    apr_pool_t *pool;            /* the thread's: its own allocator */
} part_job;

struct ocireg_upload_writer {
    ocireg_store *s;
    s3_store *st;
    apr_pool_t *p;
    const char *uuid;
    apr_uint64_t version;        /* of the record the writer started from */
    ocireg_upload_lock *lock;    /* taken before the first part goes */
    s3_state state;
    s3_state opened;             /* the state at open: the fallback */
    apr_status_t failed;         /* a write failed: nothing more is kept */
    apr_file_t *spool[2];        /* filling, and the part being sent */
    int fill;
    apr_off_t cur;               /* bytes in spool[fill] */
    EVP_MD_CTX *md5;             /* of spool[fill]'s bytes */
    apr_off_t expected;          /* still to come in this request, or -1 */
    part_job *job;               /* the older part in flight, or NULL */
    part_job *streaming;         /* the part spool[fill] is sent as, or
                                  * NULL */
    int filled_parts;            /* parts this request filled */
    part_job jobs[2];
    int closed;
};

/* Uploads */

static const char *data_key(ocireg_store *s, apr_pool_t *p, const char *uuid)
{
    return key(s, p, "data/", uuid, "");
}

static const char *md5_hex(apr_pool_t *p, const unsigned char *md5)
{
    static const char hex[] = "0123456789abcdef";
    char *out = apr_palloc(p, 33);
    int i;
    for (i = 0; i < 16; i++) {
        out[2 * i] = hex[md5[i] >> 4];
        out[2 * i + 1] = hex[md5[i] & 15];
    }
    out[32] = '\0';
    return out;
}

/* Whether an ETag (quoted or not) is this MD5: what a server-side copy of
 * a tail answers must be the bytes the record counts, whether or not the
 * server honoured the copy's condition. */
static int etag_is(const char *etag, const unsigned char *md5)
{
    static const char digits[] = "0123456789abcdef";
    char hex[33];
    apr_size_t len;
    int i;
    if (!etag)
        return 0;
    len = strlen(etag);
    if (len >= 2 && etag[0] == '"' && etag[len - 1] == '"') {
        etag++;
        len -= 2;
    }
    for (i = 0; i < 16; i++) {
        hex[2 * i] = digits[md5[i] >> 4];
        hex[2 * i + 1] = digits[md5[i] & 15];
    }
    hex[32] = '\0';
    return len == 32 && strncasecmp(etag, hex, 32) == 0;
}

apr_status_t s3_state_check(const unsigned char *state)
{
    const s3_state *st = (const s3_state *)state;
    apr_size_t i;
    if (st->magic != S3_STATE_MAGIC
        || memchr(st->upload_id, '\0', sizeof(st->upload_id)) == NULL
        || st->part_size == 0
        || st->part_size > (apr_uint64_t)5 * 1024 * 1024 * 1024
        || st->tail > st->part_size || st->parts > S3_MAX_PARTS
        || (st->parts > 0 && !st->upload_id[0]))
        return S3_EBADSTATE;
    /* The upload id goes into a query string: printable, no separators. */
    for (i = 0; st->upload_id[i]; i++)
        if (!apr_isgraph(st->upload_id[i]) || st->upload_id[i] == '&')
            return S3_EBADSTATE;
    return APR_SUCCESS;
}

apr_status_t s3_upload_create(ocireg_store *s, apr_pool_t *p,
                                     const char *uuid, unsigned char *state)
{
    s3_state *st = (s3_state *)state;
    (void)p;
    (void)uuid;
    memset(st, 0, sizeof(*st));
    /* The multipart upload itself starts with the first full part: a blob
     * smaller than one part never needs one. */
    st->magic = S3_STATE_MAGIC;
    st->part_size = (apr_uint64_t)S3(s)->part_size;
    return APR_SUCCESS;
}

apr_ssize_t s3_spool_reader(void *ctx, char *buf, apr_size_t n)
{
    apr_size_t got = n;
    apr_status_t rv = apr_file_read((apr_file_t *)ctx, buf, &got);
    if (rv == APR_EOF)
        return 0;
    return rv == APR_SUCCESS ? (apr_ssize_t)got : -1;
}

apr_status_t s3_spool_rewind(apr_file_t *f)
{
    apr_off_t zero = 0;
    return apr_file_seek(f, APR_SET, &zero);
}

static apr_status_t spool_open(ocireg_store *s, apr_pool_t *p,
                               apr_file_t **f)
{
    char *tmpl = apr_pstrcat(p, S3(s)->spool_dir, "/ocireg-spool-XXXXXX",
                             NULL);
    apr_status_t rv = apr_file_mktemp(f, tmpl,
                                      APR_FOPEN_CREATE | APR_FOPEN_READ
                                          | APR_FOPEN_WRITE | APR_FOPEN_EXCL
                                          | APR_FOPEN_BINARY,
                                      p);
    /* Nameless from the start: nothing is left behind, even by kill -9. */
    if (rv == APR_SUCCESS) {
        rv = apr_file_remove(tmpl, p);
        if (rv != APR_SUCCESS) {
            apr_file_close(*f);
            *f = NULL;
        }
    }
    return rv;
}

typedef struct {
    apr_file_t *f;
    EVP_MD_CTX *md5;
} spool_fill;

static apr_status_t spool_sink(void *ctx, const char *buf, apr_size_t n)
{
    spool_fill *fill = ctx;
    EVP_DigestUpdate(fill->md5, buf, n);
    return apr_file_write_full(fill->f, buf, n, NULL);
}

/* The tail the writer starts from: the body of the record it opened. */
static apr_status_t load_tail(ocireg_upload_writer *w)
{
    ocireg_store *s = w->s;
    unsigned char md5[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    ocireg_s3_result res;
    spool_fill fill;
    EVP_MD_CTX *ctx;
    apr_off_t got = 0;
    apr_status_t rv;

    if (w->state.tail == 0)
        return APR_SUCCESS;
    fill.f = w->spool[w->fill];
    fill.md5 = w->md5;
    rv = ocireg_s3_get_stream(w->st->s3, w->p,
                              s3_state_key(s, w->p, w->uuid, w->version), 0,
                              -1, spool_sink, &fill, &res);
    if (rv == APR_SUCCESS)
        rv = apr_file_seek(w->spool[w->fill], APR_CUR, &got);
    if (rv != APR_SUCCESS)
        return rv;
    /* The bytes the record counts, or the record is not ours. */
    ctx = EVP_MD_CTX_new();
    if (!ctx)
        return APR_ENOMEM;
    EVP_MD_CTX_copy_ex(ctx, w->md5);
    EVP_DigestFinal_ex(ctx, md5, &n);
    EVP_MD_CTX_free(ctx);
    if (got != (apr_off_t)w->state.tail
        || memcmp(md5, w->state.tail_md5, 16) != 0)
        return OCIREG_STORE_ECONFLICT;
    w->cur = got;
    return APR_SUCCESS;
}

static apr_status_t job_wait(ocireg_upload_writer *w);
static void stream_abandon(ocireg_upload_writer *w);

static apr_status_t writer_cleanup(void *data)
{
    ocireg_upload_writer *w = data;
    /* A request that ends early (an error, an aborted connection) still
     * waits for its part threads: they read spools of this pool. */
    stream_abandon(w);
    job_wait(w);
    if (w->md5)
        EVP_MD_CTX_free(w->md5);
    w->md5 = NULL;
    return APR_SUCCESS;
}

apr_status_t s3_upload_open(ocireg_store *s, apr_pool_t *p,
                                   const char *uuid, unsigned char *state,
                                   apr_uint64_t version, apr_off_t offset,
                                   apr_off_t expected,
                                   ocireg_upload_lock *lock,
                                   ocireg_upload_writer **out)
{
    ocireg_upload_writer *w = apr_pcalloc(p, sizeof(*w));
    apr_status_t rv;
    int i;
    w->s = s;
    w->st = S3(s);
    w->p = p;
    w->uuid = uuid;
    w->version = version;
    w->lock = lock;
    w->expected = expected;
    rv = s3_state_check(state);
    if (rv != APR_SUCCESS)
        return rv;
    memcpy(&w->state, state, sizeof(w->state));
    w->opened = w->state;
    if ((apr_off_t)(w->state.parts * w->state.part_size + w->state.tail)
        != offset)
        return APR_EGENERAL;
    for (i = 0; i < 2; i++) {
        rv = spool_open(s, p, &w->spool[i]);
        if (rv == APR_SUCCESS)
            rv = apr_thread_mutex_create(&w->jobs[i].mutex,
                                         APR_THREAD_MUTEX_DEFAULT, p);
        if (rv == APR_SUCCESS)
            rv = apr_thread_cond_create(&w->jobs[i].cond, p);
        if (rv != APR_SUCCESS)
            return rv;
    }
    w->md5 = EVP_MD_CTX_new();
    if (!w->md5 || !EVP_DigestInit_ex(w->md5, EVP_md5(), NULL))
        return APR_ENOMEM;
    apr_pool_cleanup_register(p, w, writer_cleanup, apr_pool_cleanup_null);
    rv = load_tail(w);
    if (rv != APR_SUCCESS)
        return rv;
    *out = w;
    return APR_SUCCESS;
}

/* etags' = SHA-256(etags || ETag without its quotes) */
static void chain_etag(unsigned char *etags, const char *etag)
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    apr_size_t len = strlen(etag);
    unsigned int n = 0;
    if (len >= 2 && etag[0] == '"' && etag[len - 1] == '"') {
        etag++;
        len -= 2;
    }
    if (!ctx)
        return;
    EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
    EVP_DigestUpdate(ctx, etags, 32);
    EVP_DigestUpdate(ctx, etag, len);
    EVP_DigestFinal_ex(ctx, etags, &n);
    EVP_MD_CTX_free(ctx);
}

/* The thread's reader of a part still arriving: what the request thread
 * wrote to the spool, waiting for more until the part is whole. */
static apr_ssize_t stream_reader(void *ctx, char *buf, apr_size_t n)
{
    part_job *j = ctx;
    apr_off_t avail;
    apr_os_file_t fd;
    ssize_t got;
    apr_thread_mutex_lock(j->mutex);
    while (!j->abandon && j->read_off < j->len && j->read_off >= j->filled)
        apr_thread_cond_wait(j->cond, j->mutex);
    if (j->abandon) {
        apr_thread_mutex_unlock(j->mutex);
        return -1;
    }
    avail = j->filled - j->read_off;
    apr_thread_mutex_unlock(j->mutex);
    if (j->read_off >= j->len)
        return 0;
    if ((apr_off_t)n > avail)
        n = (apr_size_t)avail;
    if (apr_os_file_get(&fd, j->spool) != APR_SUCCESS)
        return -1;
    /* pread: the request thread appends through its own file offset. */
    got = pread(fd, buf, n, j->read_off);
    if (got <= 0)
        return -1;
    j->read_off += got;
    return (apr_ssize_t)got;
}

static void *APR_THREAD_FUNC part_thread(apr_thread_t *t, void *data)
{
    part_job *j = data;
    apr_status_t rv = APR_EGENERAL;
    int attempt;
    for (attempt = 0;; attempt++) {
        const char *etag = NULL;
        if (j->copy_src) {
            rv = ocireg_s3_part_copy(j->s3, j->pool, j->key, j->upload_id,
                                     j->part, j->copy_src, j->copy_if_match,
                                     &etag);
        }
        else {
            ocireg_s3_result res;
            memset(&res, 0, sizeof(res));
            j->read_off = 0;
            rv = j->stream ? APR_SUCCESS : s3_spool_rewind(j->spool);
            if (rv == APR_SUCCESS)
                rv = ocireg_s3_put_stream(
                    j->s3, j->pool, j->key,
                    apr_psprintf(j->pool, "partNumber=%d&uploadId=%s",
                                 j->part, j->upload_id),
                    j->len, j->stream ? stream_reader : s3_spool_reader,
                    j->stream ? (void *)j : (void *)j->spool, &res);
            etag = res.etag;
        }
        if (rv == APR_SUCCESS) {
            apr_cpystrn(j->etag, etag ? etag : "", sizeof(j->etag));
            break;
        }
        /* From the spool, a part is sent again without the client. */
        if (rv != OCIREG_S3_EUNAVAILABLE || attempt >= j->retries
            || j->abandon)
            break;
        apr_sleep(apr_time_from_msec(200) << attempt);
    }
    apr_thread_mutex_lock(j->mutex);
    j->rv = rv;
    j->done = 1;
    apr_thread_cond_broadcast(j->cond);
    apr_thread_mutex_unlock(j->mutex);
    /* A plain return, not apr_thread_exit: pthread_exit's forced unwind
     * leaves the stack poisoned under AddressSanitizer, and the thread's
     * pool goes with j->pool after the join anyway. */
    (void)t;
    return NULL;
}

static apr_status_t job_start(part_job *j, ocireg_s3 *s3, const char *key,
                              const char *upload_id, int retries)
{
    apr_status_t rv;
    j->s3 = s3;
    j->key = key;
    j->upload_id = upload_id;
    j->retries = retries;
    j->done = 0;
    j->abandon = 0;
    j->read_off = 0;
    j->rv = APR_EGENERAL;
    j->etag[0] = '\0';
    /* The thread allocates only from a pool with an allocator of its own:
     * the request's pools are not for two threads. */
    rv = apr_pool_create_unmanaged_ex(&j->pool, NULL, NULL);
    if (rv != APR_SUCCESS)
        return rv;
    rv = apr_thread_create(&j->thread, NULL, part_thread, j, j->pool);
    if (rv != APR_SUCCESS)
        apr_pool_destroy(j->pool);
    return rv;
}

/* Waits for a job, renewing the lease (if any) meanwhile. */
static apr_status_t job_join(part_job *j, ocireg_upload_lock *lock)
{
    apr_status_t trv;
    apr_thread_mutex_lock(j->mutex);
    while (!j->done) {
        apr_thread_cond_timedwait(j->cond, j->mutex, apr_time_from_sec(1));
        if (!j->done && lock) {
            apr_thread_mutex_unlock(j->mutex);
            s3_upload_lock_keep(lock);
            apr_thread_mutex_lock(j->mutex);
        }
    }
    apr_thread_mutex_unlock(j->mutex);
    apr_thread_join(&trv, j->thread);
    apr_pool_destroy(j->pool);
    return j->rv;
}

/* Waits for the writer's older part in flight; a full part uploaded
 * joins the state (parts join in order: the older goes first). */
static apr_status_t job_wait(ocireg_upload_writer *w)
{
    part_job *j = w->job;
    apr_status_t rv;
    if (!j)
        return APR_SUCCESS;
    rv = job_join(j, w->lock);
    w->job = NULL;
    if (rv == APR_SUCCESS && j->counted) {
        chain_etag(w->state.etags, j->etag);
        w->state.parts++;
    }
    return rv;
}

/* The part being streamed will not be whole (the body ended, or a
 * failure): its transfer is dropped and the part is not made. */
static void stream_abandon(ocireg_upload_writer *w)
{
    part_job *j = w->streaming;
    if (!j)
        return;
    apr_thread_mutex_lock(j->mutex);
    j->abandon = 1;
    apr_thread_cond_broadcast(j->cond);
    apr_thread_mutex_unlock(j->mutex);
    job_join(j, w->lock);
    w->streaming = NULL;
}

/* What sending a part needs first: the lock, and the multipart upload. */
static apr_status_t ready_for_parts(ocireg_upload_writer *w)
{
    apr_status_t rv = APR_SUCCESS;
    if (w->lock)
        rv = s3_lock_acquire(w->lock);
    if (rv == APR_SUCCESS && !w->state.upload_id[0]) {
        const char *id;
        rv = ocireg_s3_mpu_create(w->st->s3, w->p,
                                  data_key(w->s, w->p, w->uuid), &id);
        if (rv == APR_SUCCESS && strlen(id) >= sizeof(w->state.upload_id))
            rv = APR_ENAMETOOLONG;
        if (rv == APR_SUCCESS)
            strcpy(w->state.upload_id, id);
    }
    return rv;
}

/* Starts the part spool[fill] is (or becomes) as a transfer: whole
 * already, or streamed while its bytes arrive. */
static apr_status_t part_start(ocireg_upload_writer *w, int stream)
{
    part_job *j = &w->jobs[w->fill];
    int number = (int)w->state.parts + 1 + (w->job ? 1 : 0);
    apr_status_t rv = ready_for_parts(w);
    if (rv != APR_SUCCESS)
        return rv;
    if (number > S3_MAX_PARTS)
        return APR_ENOSPC;
    j->copy_src = NULL;
    j->counted = 1;
    j->spool = w->spool[w->fill];
    j->len = (apr_off_t)w->state.part_size;
    j->stream = stream;
    j->filled = stream ? w->cur : j->len;
    j->part = number;
    return job_start(j, w->st->s3, data_key(w->s, w->p, w->uuid),
                     apr_pstrdup(w->p, w->state.upload_id), w->st->retries);
}

/* The filling spool is a whole part and more bytes come: it goes out (or
 * has been going out), and the other spool, free once the older part is
 * answered, takes the bytes. */
static apr_status_t send_full_spool(ocireg_upload_writer *w)
{
    apr_status_t rv;
    part_job *j = w->streaming;
    if (!j) {
        /* Waiting for the older part first keeps part numbers in order. */
        rv = job_wait(w);
        if (rv == APR_SUCCESS)
            rv = part_start(w, 0);
        if (rv != APR_SUCCESS)
            return rv;
        j = &w->jobs[w->fill];
    }
    else {
        rv = job_wait(w);
        if (rv != APR_SUCCESS)
            return rv;
        w->streaming = NULL;
    }
    w->job = j;
    w->filled_parts++;
    w->fill = 1 - w->fill;
    w->cur = 0;
    EVP_DigestInit_ex(w->md5, EVP_md5(), NULL);
    rv = apr_file_trunc(w->spool[w->fill], 0);
    if (rv == APR_SUCCESS)
        rv = s3_spool_rewind(w->spool[w->fill]);
    return rv;
}

/* Whether the part now filling will be whole: the request says it brings
 * enough, or (chunked) it already filled a part, so it is a big body.
 * Such a part is sent while it arrives; any other waits until it is
 * whole, so that a body ending inside a part costs no part at all. */
static int stream_this_part(ocireg_upload_writer *w)
{
    apr_off_t psize = (apr_off_t)w->state.part_size;
    if (w->streaming || w->cur >= psize)
        return 0;
    /* Ending exactly on the boundary, it is a part only for an upload
     * that has parts (as at close). */
    if (w->expected >= 0)
        return w->cur + w->expected > psize
               || (w->cur + w->expected == psize
                   && (w->state.parts > 0 || w->job));
    return w->filled_parts > 0;
}

static apr_status_t write_some(ocireg_upload_writer *w, const char *buf,
                               apr_size_t len)
{
    apr_off_t psize = (apr_off_t)w->state.part_size;
    apr_status_t rv;

    while (len > 0) {
        apr_size_t n = len;
        /* A full spool becomes a part only when more bytes come: a body
         * that ends there leaves it as the tail, which finishing copies
         * server-side. */
        if (w->cur == psize) {
            rv = send_full_spool(w);
            if (rv != APR_SUCCESS)
                return rv;
        }
        if (stream_this_part(w)) {
            rv = part_start(w, 1);
            if (rv != APR_SUCCESS)
                return rv;
            w->streaming = &w->jobs[w->fill];
        }
        if ((apr_off_t)n > psize - w->cur)
            n = (apr_size_t)(psize - w->cur);
        rv = apr_file_write_full(w->spool[w->fill], buf, n, NULL);
        if (rv != APR_SUCCESS)
            return rv;
        EVP_DigestUpdate(w->md5, buf, n);
        w->cur += (apr_off_t)n;
        if (w->expected >= 0)
            w->expected -= (apr_off_t)n;
        if (w->streaming) {
            part_job *j = w->streaming;
            apr_thread_mutex_lock(j->mutex);
            j->filled = w->cur;
            apr_thread_cond_broadcast(j->cond);
            apr_thread_mutex_unlock(j->mutex);
        }
        buf += n;
        len -= n;
    }
    return APR_SUCCESS;
}

/* The caller counts a buffer as written only when all of it was; after a
 * failure the spool may hold part of it, so the request keeps nothing and
 * the session stays at its previous offset. */
apr_status_t s3_upload_write(ocireg_upload_writer *w, const char *buf,
                                    apr_size_t len)
{
    if (w->failed == APR_SUCCESS)
        w->failed = write_some(w, buf, len);
    return w->failed;
}

apr_status_t s3_upload_close(ocireg_upload_writer *w,
                                    unsigned char *state)
{
    apr_status_t rv = w->failed, jrv;
    apr_off_t psize = (apr_off_t)w->state.part_size;
    /* A part streamed that the body did not fill is not made. */
    if (w->streaming && (rv != APR_SUCCESS || w->cur < psize))
        stream_abandon(w);
    /* A body that ends on a part boundary of an upload that has parts
     * sends its last part now rather than leaving a whole part for the
     * closing PUT to copy; a blob of one part stays a single object. */
    if (rv == APR_SUCCESS && w->cur == psize
        && (w->streaming || w->state.parts > 0 || w->job))
        rv = send_full_spool(w);
    jrv = job_wait(w);
    if (rv == APR_SUCCESS)
        rv = jrv;
    if (rv != APR_SUCCESS) {
        /* Back to the state at open, which its record still holds. A
         * multipart upload this request started is kept in the state, so
         * that this host's copy reuses it; parts sent since are
         * overwritten on the retry, or ignored. */
        s3_state fallback = w->opened;
        memcpy(fallback.upload_id, w->state.upload_id,
               sizeof(fallback.upload_id));
        memcpy(state, &fallback, sizeof(fallback));
        return rv;
    }
    {
        unsigned char md5[EVP_MAX_MD_SIZE];
        unsigned int n = 0;
        EVP_MD_CTX *ctx = EVP_MD_CTX_new();
        if (!ctx)
            return APR_ENOMEM;
        EVP_MD_CTX_copy_ex(ctx, w->md5);
        EVP_DigestFinal_ex(ctx, md5, &n);
        EVP_MD_CTX_free(ctx);
        memcpy(w->state.tail_md5, md5, 16);
    }
    w->state.tail = (apr_uint64_t)w->cur;
    w->closed = 1;
    memcpy(state, &w->state, sizeof(w->state));
    return APR_SUCCESS;
}

apr_status_t s3_writer_tail(ocireg_upload_writer *w, apr_file_t **spool,
                            apr_off_t *len)
{
    if (!w->closed)
        return APR_EGENERAL;
    *spool = w->spool[w->fill];
    *len = w->cur;
    return APR_SUCCESS;
}

/* Removes everything an upload kept under uploads/<uuid>/: records,
 * locks and what failed requests left. */
static apr_status_t delete_upload_objects(ocireg_store *s, apr_pool_t *p,
                                          const char *uuid)
{
    const char *prefix = key(s, p, "uploads/", uuid, "/");
    apr_array_header_t *keys;
    apr_status_t rv = ocireg_s3_list(S3(s)->s3, p, prefix, NULL, &keys);
    int i;
    for (i = 0; rv == APR_SUCCESS && i < keys->nelts; i++)
        APR_ARRAY_IDX(keys, i, const char *) =
            apr_pstrcat(p, prefix, APR_ARRAY_IDX(keys, i, const char *),
                        NULL);
    if (rv == APR_SUCCESS && keys->nelts > 0)
        rv = ocireg_s3_delete_many(S3(s)->s3, p, keys);
    return rv;
}

/* Multipart uploads of this session that its state does not name: a
 * request that failed (or a process killed) after starting one, before any
 * record could say so. */
static void abort_strays(ocireg_store *s, apr_pool_t *p, const char *uuid,
                         const char *keep)
{
    const char *dk = data_key(s, p, uuid);
    apr_array_header_t *mpus;
    int i;
    if (ocireg_s3_mpu_list(S3(s)->s3, p, dk, &mpus) != APR_SUCCESS)
        return;
    for (i = 0; i < mpus->nelts; i++) {
        const ocireg_s3_upload *u = &APR_ARRAY_IDX(mpus, i, ocireg_s3_upload);
        if (strcmp(u->key, dk) == 0 && strcmp(u->upload_id, keep) != 0)
            ocireg_s3_mpu_abort(S3(s)->s3, p, dk, u->upload_id);
    }
}

/* data/<uuid> that a Complete made but no pointer names (a process killed
 * between the two, and the client gave up): it goes with the session,
 * unless the pointer of the session's digest names it (a process killed
 * after the pointer). Whatever cannot be told is kept. */
static void drop_unnamed_data(ocireg_store *s, apr_pool_t *p,
                              const char *uuid, const char *digest)
{
    ocireg_s3 *s3 = S3(s)->s3;
    const char *dk = data_key(s, p, uuid), *named;
    ocireg_s3_result res;
    apr_status_t rv;
    if (ocireg_s3_head(s3, p, dk, NULL) != APR_SUCCESS)
        return; /* the usual case: nothing completed */
    if (!digest)
        return;
    rv = ocireg_s3_head(s3, p, blob_key(s, p, digest), &res);
    if (rv == APR_SUCCESS) {
        named = apr_table_get(res.meta, META_DATA);
        if (named && strcmp(named, dk) == 0)
            return;
    }
    else if (rv != APR_ENOENT) {
        return;
    }
    ocireg_s3_delete(s3, p, dk, NULL);
}

apr_status_t s3_upload_abort(ocireg_store *s, apr_pool_t *p,
                             const char *uuid, unsigned char *state,
                             apr_uint64_t version, const char *digest)
{
    s3_state *st = (s3_state *)state;
    apr_status_t rv = APR_SUCCESS;
    int have_id = memchr(st->upload_id, '\0', sizeof(st->upload_id))
                  && st->upload_id[0];
    (void)version;
    /* Only a session with parts can have completed. */
    if (have_id && st->parts > 0)
        drop_unnamed_data(s, p, uuid, digest);
    if (have_id) {
        rv = ocireg_s3_mpu_abort(S3(s)->s3, p, data_key(s, p, uuid),
                                 st->upload_id);
        if (rv == APR_ENOENT)
            rv = APR_SUCCESS;
    }
    if (rv == APR_SUCCESS) {
        abort_strays(s, p, uuid, "");
        rv = delete_upload_objects(s, p, uuid);
    }
    return rv;
}

apr_status_t s3_upload_settle(ocireg_store *s, apr_pool_t *p,
                                     const char *uuid, apr_uint64_t version,
                                     const unsigned char *before,
                                     const unsigned char *after)
{
    const s3_state *b = (const s3_state *)before;
    (void)after;
    /* A record whose body holds bytes goes as soon as it is superseded;
     * an empty one waits for the upload's cleanup, which takes them all
     * in one request. */
    if (s3_state_check(before) != APR_SUCCESS || b->tail == 0
        || version == 0)
        return APR_SUCCESS;
    return ocireg_s3_delete(S3(s)->s3, p, s3_state_key(s, p, uuid, version),
                            NULL);
}

/* After the commit, off the client's time: the records 1..version (those
 * settled are gone already; deleting them again is free of effect) in one
 * DeleteObjects per thousand. Leftovers of failed requests (records they
 * could not supersede, locks of dead holders, multipart uploads nobody
 * recorded) are the sweep's. */
void s3_upload_cleanup(ocireg_store *s, apr_pool_t *p,
                              const char *uuid, const unsigned char *state,
                              apr_uint64_t version)
{
    const s3_state *st = (const s3_state *)state;
    apr_array_header_t *keys = apr_array_make(p, 4, sizeof(const char *));
    apr_uint64_t v;
    /* A session that had parts may have started a multipart upload its
     * records never named (a request that failed after starting one). */
    if (memchr(st->upload_id, '\0', sizeof(st->upload_id))
        && st->upload_id[0])
        abort_strays(s, p, uuid, st->upload_id);
    for (v = 1; v <= version && v <= 100000; v++)
        APR_ARRAY_PUSH(keys, const char *) = s3_state_key(s, p, uuid, v);
    if (keys->nelts > 0)
        ocireg_s3_delete_many(S3(s)->s3, p, keys);
}

/* Whether data/<uuid> is what an earlier Complete of this session made,
 * when that Complete's answer was lost or the process died before the
 * pointer: the key is the session's own, and size and part count (the
 * "-<n>" of a multipart ETag) are the session's. */
static int completed_before(ocireg_store *s, apr_pool_t *p, const char *dk,
                            const s3_state *st, apr_off_t size)
{
    ocireg_s3_result res;
    const char *dash;
    char *end;
    apr_int64_t n;
    if (ocireg_s3_head(S3(s)->s3, p, dk, &res) != APR_SUCCESS
        || res.content_length != size || !res.etag)
        return 0;
    dash = strrchr(res.etag, '-');
    if (!dash)
        return 0;
    n = apr_strtoi64(dash + 1, &end, 10);
    return (*end == '\0' || *end == '"')
           && n == (apr_int64_t)st->parts + (st->tail > 0 ? 1 : 0);
}

/* The pointer blobs/sha256/<hex> -> data/<uuid>, created once: when two
 * uploads of one blob finish at once, one pointer wins and the other's
 * data goes, so one copy stays. A pointer that exists and names our own
 * data is ours (an earlier attempt whose answer was lost, or a request of
 * this session killed after writing it): its data stays. */
/* After a 412 on the pointer bk: whose it is. One naming our data dk is
 * ours; another upload's makes ours a second copy, which goes, and
 * *in_use (and *size, for a blob stored whole at bk) name theirs. */
static apr_status_t pointer_taken(ocireg_store *s, apr_pool_t *p,
                                  const char *bk, const char *dk,
                                  const char **in_use, apr_off_t *size)
{
    ocireg_s3 *s3 = S3(s)->s3;
    ocireg_s3_result res;
    const char *named;
    apr_status_t rv = ocireg_s3_head(s3, p, bk, &res);
    if (rv == APR_ENOENT)
        /* Deleted meanwhile: our data stays for the client's retry. */
        return OCIREG_S3_EUNAVAILABLE;
    if (rv != APR_SUCCESS)
        return rv;
    named = apr_table_get(res.meta, META_DATA);
    if (named && strcmp(named, dk) == 0)
        return APR_SUCCESS;
    ocireg_s3_delete(s3, p, dk, NULL);
    *in_use = named ? named : bk;
    if (!named)
        *size = res.content_length;
    return APR_SUCCESS;
}

static apr_status_t write_pointer(ocireg_store *s, apr_pool_t *p,
                                  const char *bk, const char *dk,
                                  apr_off_t size, const char **in_use,
                                  const char *digest, const char *link_name)
{
    ocireg_s3 *s3 = S3(s)->s3;
    apr_table_t *meta = apr_table_make(p, 3);
    ocireg_s3_op ops[1 + S3_LINK_OPS];
    apr_uint32_t gen;
    apr_status_t rv;

    apr_table_setn(meta, META_DATA, dk);
    apr_table_setn(meta, META_SIZE, apr_off_t_toa(p, size));
    *in_use = dk;
    if (!link_name) {
        rv = s3_create_only(s, p, bk, "", 0, meta);
        return rv == APR_EEXIST ? pointer_taken(s, p, bk, dk, in_use, &size)
                                : rv;
    }
    /* The pointer and the link (with its holder entry) at once; a link
     * naming this upload's data before the pointer does points at
     * complete bytes. */
    gen = s3_link_gen(s, p, link_name, digest);
    s3_link_ops(s, p, link_name, digest, dk, size, &ops[1]);
    memset(&ops[0], 0, sizeof(ops[0]));
    ops[0].kind = OCIREG_S3_OP_PUT;
    ops[0].key = bk;
    ops[0].data = "";
    ops[0].meta = s3_create_only_meta(p, meta);
    ops[0].if_none_match = 1;
    rv = ocireg_s3_run(s3, p, ops, 1 + S3_LINK_OPS, 1 + S3_LINK_OPS);
    if (rv == APR_SUCCESS)
        rv = ops[0].status;
    if (rv == APR_EEXIST)
        rv = s3_created_by_us(s, p, bk, ops[0].meta);
    if (rv == APR_EEXIST)
        rv = pointer_taken(s, p, bk, dk, in_use, &size);
    if (rv != APR_SUCCESS)
        return rv;
    /* Another upload's blob: the link must name its data (the holder
     * entry is written already). */
    if (*in_use != dk) {
        s3_link_ops(s, p, link_name, digest, *in_use, size, &ops[1]);
        rv = ocireg_s3_run(s3, p, &ops[1], 1, 1);
    }
    if (rv == APR_SUCCESS)
        rv = ops[1].status;
    if (rv == APR_SUCCESS && *in_use == dk)
        s3_link_written(s, p, link_name, digest, dk, size, gen);
    return rv;
}

/* A blob smaller than a part: its bytes are the tail. From this request's
 * spool they go straight to the blob's key; from a record, S3 copies them
 * (only if the record still holds exactly the bytes its state counts). A
 * blob already there is simply written again with the same bytes. */
static apr_status_t put_small(ocireg_store *s, apr_pool_t *p,
                              const s3_state *st, ocireg_upload_writer *w,
                              const char *bk)
{
    ocireg_s3 *s3 = S3(s)->s3;
    apr_status_t rv;
    int attempt;
    if (!w || st->tail == 0)
        return ocireg_s3_put(s3, p, bk, "", 0, NULL, 0, NULL);
    for (attempt = 0;; attempt++) {
        rv = s3_spool_rewind(w->spool[w->fill]);
        if (rv == APR_SUCCESS)
            rv = ocireg_s3_put_stream(s3, p, bk, NULL, (apr_off_t)st->tail,
                                      s3_spool_reader, w->spool[w->fill],
                                      NULL);
        if (rv != OCIREG_S3_EUNAVAILABLE || attempt >= S3(s)->retries)
            return rv;
        apr_sleep(apr_time_from_msec(100) << attempt);
    }
}

static apr_status_t commit_small(ocireg_store *s, apr_pool_t *p,
                                 const char *uuid, const s3_state *st,
                                 apr_uint64_t version,
                                 ocireg_upload_writer *w, const char *bk,
                                 const char *digest, apr_off_t size,
                                 const char *link_name)
{
    ocireg_s3 *s3 = S3(s)->s3;
    ocireg_s3_op ops[1 + S3_LINK_OPS];
    apr_uint32_t gen = 0;
    apr_status_t rv;
    int n = 0;

    if (w || st->tail == 0) {
        rv = put_small(s, p, st, w, bk);
        if (rv == APR_SUCCESS && link_name) {
            gen = s3_link_gen(s, p, link_name, digest);
            s3_link_ops(s, p, link_name, digest, bk, size, ops);
            rv = ocireg_s3_run(s3, p, ops, S3_LINK_OPS, S3_LINK_OPS);
            if (rv == APR_SUCCESS)
                rv = ops[0].status;
            if (rv == APR_SUCCESS)
                s3_link_written(s, p, link_name, digest, bk, size, gen);
        }
        return rv;
    }
    /* The copy of the record's tail and the link at once: a link to bytes
     * that are not there yet is no worse than none (a reader gets 404),
     * and it goes again if the copy fails. */
    memset(&ops[0], 0, sizeof(ops[0]));
    ops[n].kind = OCIREG_S3_OP_COPY;
    ops[n].key = bk;
    ops[n].src_key = s3_state_key(s, p, uuid, version);
    ops[n++].if_match = md5_hex(p, st->tail_md5);
    if (link_name) {
        gen = s3_link_gen(s, p, link_name, digest);
        s3_link_ops(s, p, link_name, digest, bk, size, &ops[n]);
        n += S3_LINK_OPS;
    }
    rv = ocireg_s3_run(s3, p, ops, n, n);
    if (rv == APR_SUCCESS)
        rv = ops[0].status;
    if (rv == APR_SUCCESS && !etag_is(ops[0].res.etag, st->tail_md5)) {
        /* A server that ignored the condition copied other bytes: a
         * missing blob is better than a wrong one. */
        ocireg_s3_delete(s3, p, bk, NULL);
        rv = OCIREG_S3_ECHANGED;
    }
    if (link_name && rv == APR_SUCCESS) {
        rv = ops[1].status;
        if (rv == APR_SUCCESS)
            s3_link_written(s, p, link_name, digest, bk, size, gen);
    }
    else if (link_name && ops[1].status == APR_SUCCESS) {
        ocireg_s3_delete(s3, p, ops[1].key, NULL);
    }
    return rv;
}

apr_status_t s3_upload_commit(ocireg_store *s, apr_pool_t *p,
                              const char *uuid, unsigned char *state,
                              apr_uint64_t version, ocireg_upload_writer *w,
                              const char *digest, apr_off_t size,
                              ocireg_blob_ref *ref, const char *link_name)
{
    s3_state *st = (s3_state *)state;
    ocireg_s3 *s3 = S3(s)->s3;
    const char *bk = blob_key(s, p, digest), *dk = data_key(s, p, uuid);
    apr_array_header_t *parts = NULL, *complete;
    const char *last_etag = NULL;
    apr_status_t rv, lrv;
    part_job *job = NULL, local;
    int i;

    rv = s3_state_check(state);
    if (rv != APR_SUCCESS)
        return rv;
    if ((apr_off_t)(st->parts * st->part_size + st->tail) != size)
        return APR_EGENERAL;
    if (w && !w->closed)
        return APR_EGENERAL;
    if (ref) {
        ref->size = size;
        ref->data = st->parts == 0 ? bk : dk;
    }
    if (st->parts == 0) {
        rv = commit_small(s, p, uuid, st, version, w, bk, digest, size,
                          link_name);
        if (rv == OCIREG_S3_ECHANGED)
            rv = OCIREG_STORE_ECONFLICT;
        return rv;
    }

    /* The tail becomes the last part, in a thread, while the parts are
     * listed here: from this request's spool, or copied from the record
     * that holds it. Its ETag is not chained (the state does not count
     * it), only given to Complete. */
    if (st->tail > 0) {
        job = w ? &w->jobs[w->fill] : &local;
        if (!w) {
            memset(&local, 0, sizeof(local));
            rv = apr_thread_mutex_create(&local.mutex,
                                         APR_THREAD_MUTEX_DEFAULT, p);
            if (rv == APR_SUCCESS)
                rv = apr_thread_cond_create(&local.cond, p);
            if (rv != APR_SUCCESS)
                return rv;
            local.copy_src = s3_state_key(s, p, uuid, version);
            local.copy_if_match = md5_hex(p, st->tail_md5);
        }
        else {
            job->copy_src = NULL;
            job->spool = w->spool[w->fill];
            job->len = (apr_off_t)st->tail;
        }
        job->counted = 0;
        job->part = (int)st->parts + 1;
        rv = job_start(job, s3, dk, st->upload_id, S3(s)->retries);
        if (rv != APR_SUCCESS)
            return rv;
        lrv = ocireg_s3_mpu_list_parts(s3, p, dk, st->upload_id, &parts);
        rv = job_join(job, w ? w->lock : NULL);
        last_etag = apr_pstrdup(p, job->etag);
        if (rv == APR_SUCCESS && !w && !etag_is(last_etag, st->tail_md5))
            rv = OCIREG_S3_ECHANGED;
        if (rv == APR_SUCCESS)
            rv = lrv;
    }
    else {
        rv = ocireg_s3_mpu_list_parts(s3, p, dk, st->upload_id, &parts);
    }
    if (rv == OCIREG_S3_ECHANGED)
        rv = OCIREG_STORE_ECONFLICT;
    if (rv != APR_SUCCESS)
        goto completed;
    /* The parts the state counts, in order and of the size R2 wants; a
     * part past them is a leftover of a failed request and is not
     * joined. */
    if (parts->nelts < (int)st->parts) {
        rv = APR_EGENERAL;
        return rv;
    }
    complete = apr_array_make(p, (int)st->parts + 1, sizeof(ocireg_s3_part));
    {
        unsigned char etags[32];
        memset(etags, 0, sizeof(etags));
        for (i = 0; i < (int)st->parts; i++) {
            ocireg_s3_part *pt = &APR_ARRAY_IDX(parts, i, ocireg_s3_part);
            if (pt->number != i + 1
                || pt->size != (apr_off_t)st->part_size)
                return APR_EGENERAL;
            chain_etag(etags, pt->etag ? pt->etag : "");
            APR_ARRAY_PUSH(complete, ocireg_s3_part) = *pt;
        }
        if (memcmp(etags, st->etags, sizeof(etags)) != 0)
            return OCIREG_STORE_ECONFLICT;
    }
    if (st->tail > 0) {
        ocireg_s3_part *last = apr_array_push(complete);
        last->number = (int)st->parts + 1;
        last->etag = last_etag;
        last->size = (apr_off_t)st->tail;
    }
    rv = ocireg_s3_mpu_complete(s3, p, dk, st->upload_id, complete);
completed:
    /* NoSuchUpload: an earlier Complete of this session went through and
     * only its answer (or the process) was lost. */
    if (rv == APR_ENOENT && completed_before(s, p, dk, st, size))
        rv = APR_SUCCESS;
    if (rv == APR_SUCCESS) {
        const char *in_use = dk;
        rv = write_pointer(s, p, bk, dk, size, &in_use, digest, link_name);
        if (ref)
            ref->data = in_use;
    }
    return rv;
}

apr_off_t s3_chunk_min_length(ocireg_store *s)
{
    return S3(s)->part_size;
}

/* "2026-11-28T04:30:25.000Z" -> apr_time_t, 0 when unreadable. */
static apr_time_t iso8601(const char *s)
{
    apr_time_exp_t t;
    apr_time_t out;
    int y, mo, d, h, mi, sec;
    if (!s || sscanf(s, "%d-%d-%dT%d:%d:%d", &y, &mo, &d, &h, &mi, &sec) != 6)
        return 0;
    /* The server's text: out of range reads as unknown, never as an
     * overflowed year. */
    if (y < 1970 || y > 9999 || mo < 1 || mo > 12 || d < 1 || d > 31
        || h < 0 || h > 23 || mi < 0 || mi > 59 || sec < 0 || sec > 60)
        return 0;
    memset(&t, 0, sizeof(t));
    t.tm_year = y - 1900;
    t.tm_mon = mo - 1;
    t.tm_mday = d;
    t.tm_hour = h;
    t.tm_min = mi;
    t.tm_sec = sec;
    return apr_time_exp_gmt_get(&out, &t) == APR_SUCCESS ? out : 0;
}

/* The uuid in "<prefix>data/<uuid>" or "<prefix>uploads/<uuid>/tail". */
static const char *uuid_of(apr_pool_t *p, const char *rest)
{
    const char *slash = strchr(rest, '/');
    return slash ? apr_pstrmemdup(p, rest, (apr_size_t)(slash - rest))
                 : rest;
}

/* Whether the session's record was written since `before`: a session this
 * host does not hold may still be alive on another host, or here after a
 * restart. */
static int recently_active(ocireg_store *s, apr_pool_t *p, const char *uuid,
                           apr_time_t before)
{
    ocireg_s3_result res;
    apr_uint64_t version;
    return s3_latest_state(s, p, uuid, &version) == APR_SUCCESS
           && ocireg_s3_head(S3(s)->s3, p, s3_state_key(s, p, uuid, version),
                             &res) == APR_SUCCESS
           && res.last_modified >= before;
}

/* Only what is older than `before` goes: another host sharing the bucket
 * may be in the middle of an upload this host does not know. */
apr_status_t s3_upload_sweep(ocireg_store *s, apr_pool_t *p,
                                    apr_time_t before,
                                    int (*live)(void *ctx, const char *uuid),
                                    void *ctx, int *swept)
{
    ocireg_s3 *s3 = S3(s)->s3;
    const char *data_prefix = key(s, p, "data/", "", "");
    const char *tail_prefix = key(s, p, "uploads/", "", "");
    apr_array_header_t *mpus, *tails;
    apr_status_t rv;
    int i;

    *swept = 0;
    rv = ocireg_s3_mpu_list(s3, p, data_prefix, &mpus);
    for (i = 0; rv == APR_SUCCESS && i < mpus->nelts; i++) {
        const ocireg_s3_upload *u = &APR_ARRAY_IDX(mpus, i, ocireg_s3_upload);
        apr_time_t at = iso8601(u->initiated);
        const char *uuid = u->key + strlen(data_prefix);
        if (!at || at >= before || live(ctx, uuid)
            || recently_active(s, p, uuid, before))
            continue;
        if (ocireg_s3_mpu_abort(s3, p, u->key, u->upload_id) == APR_SUCCESS)
            (*swept)++;
    }
    if (rv == APR_SUCCESS)
        rv = ocireg_s3_list(s3, p, tail_prefix, NULL, &tails);
    for (i = 0; rv == APR_SUCCESS && i < tails->nelts; i++) {
        const char *rest = APR_ARRAY_IDX(tails, i, const char *);
        const char *k = apr_pstrcat(p, tail_prefix, rest, NULL);
        ocireg_s3_result res;
        if (live(ctx, uuid_of(p, rest))
            || recently_active(s, p, uuid_of(p, rest), before)
            || ocireg_s3_head(s3, p, k, &res) != APR_SUCCESS
            || !res.last_modified || res.last_modified >= before)
            continue;
        if (ocireg_s3_delete(s3, p, k, NULL) == APR_SUCCESS)
            (*swept)++;
    }
    return rv;
}

/* S3 and R2 take at most 10,000 parts. */
apr_off_t s3_max_blob_size(ocireg_store *s)
{
    return S3(s)->part_size * 10000;
}
