/* The table of upload sessions. It lives in one block of memory that all
 * httpd child processes map (APR shared memory), so any child can continue
 * any upload. Slots hold the whole resumable state: offset, SHA-256 state
 * and the storage driver's state.
 *
 * A request that changes a session first acquires it; the holder's pid is
 * recorded so that a second request racing on the same session is refused
 * rather than interleaved, and so that a session held by a process that
 * died (kill -9) can be taken over. */
#ifndef OCIREG_UPLOADS_H
#define OCIREG_UPLOADS_H

#include <apr.h>
#include <apr_global_mutex.h>
#include <apr_time.h>
#include "ocireg_hash.h"
#include "ocireg_parse.h"
#include "ocireg_store.h"

typedef struct {
    char uuid[OCIREG_UUID_LEN + 1];
    char name[OCIREG_NAME_MAX + 1];
    apr_uint32_t store_id;
    apr_off_t offset;               /* bytes received and durable */
    apr_uint64_t version;           /* of the store's record: one more at
                                     * every change, and in the Location */
    apr_uint64_t moved;             /* the version that last moved offset */
    ocireg_hash_state hash;         /* SHA-256 of bytes [0, offset) */
    apr_time_t created;
    apr_time_t touched;
    unsigned char driver[OCIREG_DRIVER_STATE_SIZE];
} ocireg_upload_session;

typedef struct ocireg_uploads ocireg_uploads;

/* Names this table, and so this httpd instance, in upload locks
 * (ocireg_lock.h); random, made when the table is formatted. */
apr_uint64_t ocireg_uploads_instance(ocireg_uploads *u);

/* Bytes of shared memory needed for `slots` sessions. */
apr_size_t ocireg_uploads_size(int slots);

/* Formats `mem` (of ocireg_uploads_size(slots) bytes) as an empty table.
 * Called once, in the parent. */
void ocireg_uploads_format(void *mem, int slots);

/* A process-local handle on a formatted table; mutex may be NULL when only
 * one thread of one process uses it (unit tests). */
ocireg_uploads *ocireg_uploads_attach(apr_pool_t *p, void *mem,
                                      apr_global_mutex_t *mutex);

/* Adds a session. APR_ENOSPC when every slot is taken, APR_EEXIST when
 * the table has it already. */
apr_status_t ocireg_uploads_add(ocireg_uploads *u,
                                const ocireg_upload_session *s);

/* Copies a session out without acquiring it. APR_ENOENT if unknown. */
apr_status_t ocireg_uploads_get(ocireg_uploads *u, const char *uuid,
                                ocireg_upload_session *out);

/* Takes a session for changing it and copies it out. APR_EBUSY when a live
 * process holds it; APR_ENOENT if unknown. */
apr_status_t ocireg_uploads_acquire(ocireg_uploads *u, const char *uuid,
                                    ocireg_upload_session *out);

/* Gives the session back, storing `updated` when it is non-NULL. */
apr_status_t ocireg_uploads_release(ocireg_uploads *u,
                                    const ocireg_upload_session *updated,
                                    const char *uuid);

/* Removes an acquired session. */
apr_status_t ocireg_uploads_remove(ocireg_uploads *u, const char *uuid);

/* Acquires up to max sessions nobody holds that were last touched before
 * `before`, copying them to out; returns how many. The caller aborts them
 * in the store and removes them. */
int ocireg_uploads_take_idle(ocireg_uploads *u, apr_time_t before,
                             ocireg_upload_session *out, int max);

/* Whether a session with this id is in the table. */
int ocireg_uploads_has(ocireg_uploads *u, const char *uuid);

/* The durable form of a session, kept by the store (state_put): a magic
 * and the session as this build lays it out, so every host sharing a
 * store must run the same build. */
const void *ocireg_session_encode(apr_pool_t *p,
                                  const ocireg_upload_session *s,
                                  apr_size_t *len);
apr_status_t ocireg_session_decode(const void *data, apr_size_t len,
                                   ocireg_upload_session *out);

/* Sessions in use, for status and tests. */
int ocireg_uploads_count(ocireg_uploads *u);

#endif
