#define OPENSSL_SUPPRESS_DEPRECATED 1
#include <string.h>
#include <openssl/sha.h>
#include <signal.h>
#include <errno.h>
#include <unistd.h>
#include <apr_general.h>
#include "ocireg_uploads.h"

#define TABLE_MAGIC 0x6f636975u /* "ociu" */

typedef struct {
    apr_uint32_t in_use;
    apr_int32_t holder;             /* pid of the acquiring process, or 0 */
    ocireg_upload_session s;
} slot_t;

typedef struct {
    apr_uint32_t magic;
    apr_uint32_t nslots;
    apr_uint32_t used;
    apr_uint32_t pad;
    apr_uint64_t instance;
    slot_t slots[];
} table_t;

struct ocireg_uploads {
    table_t *t;
    apr_global_mutex_t *mutex;
};

apr_size_t ocireg_uploads_size(int slots)
{
    return sizeof(table_t) + (apr_size_t)slots * sizeof(slot_t);
}

void ocireg_uploads_format(void *mem, int slots)
{
    table_t *t = mem;
    memset(mem, 0, ocireg_uploads_size(slots));
    t->magic = TABLE_MAGIC;
    t->nslots = (apr_uint32_t)slots;
    if (apr_generate_random_bytes((unsigned char *)&t->instance,
                                  sizeof(t->instance)) != APR_SUCCESS)
        t->instance = (apr_uint64_t)apr_time_now() ^ (apr_uint64_t)getpid();
}

apr_uint64_t ocireg_uploads_instance(ocireg_uploads *u)
{
    return u->t->instance;
}

ocireg_uploads *ocireg_uploads_attach(apr_pool_t *p, void *mem,
                                      apr_global_mutex_t *mutex)
{
    ocireg_uploads *u;
    if (((table_t *)mem)->magic != TABLE_MAGIC)
        return NULL;
    u = apr_pcalloc(p, sizeof(*u));
    u->t = mem;
    u->mutex = mutex;
    return u;
}

static apr_status_t lock(ocireg_uploads *u)
{
    return u->mutex ? apr_global_mutex_lock(u->mutex) : APR_SUCCESS;
}

static void unlock(ocireg_uploads *u)
{
    if (u->mutex)
        apr_global_mutex_unlock(u->mutex);
}

/* Linear: a scan of a few thousand slots under the lock costs less than
 * the syscalls around it, and needs no index to keep consistent. */
static slot_t *find(table_t *t, const char *uuid)
{
    apr_uint32_t i;
    for (i = 0; i < t->nslots; i++)
        if (t->slots[i].in_use && strcmp(t->slots[i].s.uuid, uuid) == 0)
            return &t->slots[i];
    return NULL;
}

/* A holder that no longer exists (killed mid-request) must not keep the
 * session locked forever. */
static int holder_alive(apr_int32_t pid)
{
    if (pid == 0)
        return 0;
    return kill((pid_t)pid, 0) == 0 || errno != ESRCH;
}

apr_status_t ocireg_uploads_add(ocireg_uploads *u,
                                const ocireg_upload_session *s)
{
    apr_status_t rv = lock(u);
    apr_uint32_t i;
    if (rv != APR_SUCCESS)
        return rv;
    rv = APR_ENOSPC;
    if (find(u->t, s->uuid)) {
        unlock(u);
        return APR_EEXIST;
    }
    for (i = 0; i < u->t->nslots; i++) {
        slot_t *sl = &u->t->slots[i];
        if (!sl->in_use) {
            sl->s = *s;
            sl->holder = 0;
            sl->in_use = 1;
            u->t->used++;
            rv = APR_SUCCESS;
            break;
        }
    }
    unlock(u);
    return rv;
}

apr_status_t ocireg_uploads_get(ocireg_uploads *u, const char *uuid,
                                ocireg_upload_session *out)
{
    apr_status_t rv = lock(u);
    slot_t *sl;
    if (rv != APR_SUCCESS)
        return rv;
    sl = find(u->t, uuid);
    if (sl)
        *out = sl->s;
    unlock(u);
    return sl ? APR_SUCCESS : APR_ENOENT;
}

apr_status_t ocireg_uploads_acquire(ocireg_uploads *u, const char *uuid,
                                    ocireg_upload_session *out)
{
    apr_status_t rv = lock(u);
    slot_t *sl;
    if (rv != APR_SUCCESS)
        return rv;
    sl = find(u->t, uuid);
    if (!sl) {
        rv = APR_ENOENT;
    }
    else if (holder_alive(sl->holder)) {
        rv = APR_EBUSY;
    }
    else {
        sl->holder = (apr_int32_t)getpid();
        *out = sl->s;
    }
    unlock(u);
    return rv;
}

apr_status_t ocireg_uploads_release(ocireg_uploads *u,
                                    const ocireg_upload_session *updated,
                                    const char *uuid)
{
    apr_status_t rv = lock(u);
    slot_t *sl;
    if (rv != APR_SUCCESS)
        return rv;
    sl = find(u->t, uuid);
    if (!sl || sl->holder != (apr_int32_t)getpid()) {
        rv = APR_ENOENT;
    }
    else {
        if (updated)
            sl->s = *updated;
        sl->holder = 0;
    }
    unlock(u);
    return rv;
}

apr_status_t ocireg_uploads_remove(ocireg_uploads *u, const char *uuid)
{
    apr_status_t rv = lock(u);
    slot_t *sl;
    if (rv != APR_SUCCESS)
        return rv;
    sl = find(u->t, uuid);
    if (!sl || sl->holder != (apr_int32_t)getpid()) {
        rv = APR_ENOENT;
    }
    else {
        memset(sl, 0, sizeof(*sl));
        u->t->used--;
    }
    unlock(u);
    return rv;
}

int ocireg_uploads_take_idle(ocireg_uploads *u, apr_time_t before,
                             ocireg_upload_session *out, int max)
{
    apr_uint32_t i;
    int n = 0;
    if (lock(u) != APR_SUCCESS)
        return 0;
    for (i = 0; i < u->t->nslots && n < max; i++) {
        slot_t *sl = &u->t->slots[i];
        if (sl->in_use && sl->s.touched < before && !holder_alive(sl->holder)) {
            sl->holder = (apr_int32_t)getpid();
            out[n++] = sl->s;
        }
    }
    unlock(u);
    return n;
}

int ocireg_uploads_has(ocireg_uploads *u, const char *uuid)
{
    int found = 0;
    if (lock(u) == APR_SUCCESS) {
        found = find(u->t, uuid) != NULL;
        unlock(u);
    }
    return found;
}

#define SESSION_MAGIC "OCIRUS02"

const void *ocireg_session_encode(apr_pool_t *p,
                                  const ocireg_upload_session *s,
                                  apr_size_t *len)
{
    char *buf = apr_palloc(p, 8 + sizeof(*s));
    memcpy(buf, SESSION_MAGIC, 8);
    memcpy(buf + 8, s, sizeof(*s));
    *len = 8 + sizeof(*s);
    return buf;
}

/* OpenSSL trusts the state's buffer count and would write past its block
 * on a corrupt one: num is the buffered bytes, always the bit count's
 * bytes modulo the block, and md_len is fixed by SHA256_Init. */
static int hash_state_valid(const ocireg_hash_state *st)
{
    const SHA256_CTX *c = (const SHA256_CTX *)st->opaque;
    return c->md_len == SHA256_DIGEST_LENGTH && c->num < SHA256_CBLOCK
           && c->num == ((c->Nl >> 3) & (SHA256_CBLOCK - 1));
}

apr_status_t ocireg_session_decode(const void *data, apr_size_t len,
                                   ocireg_upload_session *out)
{
    if (len != 8 + sizeof(*out) || memcmp(data, SESSION_MAGIC, 8) != 0)
        return APR_EINVAL;
    memcpy(out, (const char *)data + 8, sizeof(*out));
    out->uuid[sizeof(out->uuid) - 1] = '\0';
    out->name[sizeof(out->name) - 1] = '\0';
    if (!hash_state_valid(&out->hash))
        return APR_EINVAL;
    return APR_SUCCESS;
}

int ocireg_uploads_count(ocireg_uploads *u)
{
    int n = 0;
    if (lock(u) == APR_SUCCESS) {
        n = (int)u->t->used;
        unlock(u);
    }
    return n;
}
