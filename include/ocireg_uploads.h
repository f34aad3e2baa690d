/* The table of upload sessions. It lives in one block of memory that all
 * httpd child processes map (APR shared memory), so any child can continue
 * any upload. Slots hold the whole resumable state: offset, SHA-256 state
 * and the storage driver's state.
 *
 * A request that changes a session first acquires it; the holder's pid is
 * recorded so that a second request racing on the same session is refused
 * rather than interleaved, and so that a session held by a process that
 * died (kill -9) can be taken over.
 *
 * Sessions are found by id through an open-addressing index (linear
 * probing, backward-shift deletion) beside the slots, so a lookup under
 * the table's mutex costs the same at a million slots as at ten. A second
 * such index counts the open sessions of each client and repository. */
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
 * the table has it already. Counts against no client or repository (a
 * session cached from the store). */
apr_status_t ocireg_uploads_add(ocireg_uploads *u,
                                const ocireg_upload_session *s);

/* A client already has its number of open sessions. */
#define OCIREG_UPLOADS_ECLIENT (APR_OS_START_USERERR + 740)
/* A repository already has its number of open sessions. */
#define OCIREG_UPLOADS_EREPO (APR_OS_START_USERERR + 741)

/* Adds a new session opened by `client` (any text naming who asked: an
 * address, a user), counting it against that client and against its
 * repository (s->name) until it is removed. A limit <= 0 is no limit.
 * Besides ocireg_uploads_add's answers: OCIREG_UPLOADS_ECLIENT or
 * OCIREG_UPLOADS_EREPO when the client or the repository already has as
 * many sessions as its limit. */
apr_status_t ocireg_uploads_add_limited(ocireg_uploads *u,
                                        const ocireg_upload_session *s,
                                        const char *client, int per_client,
                                        int per_repo);

/* Open sessions counted against a client / a repository. */
int ocireg_uploads_client_count(ocireg_uploads *u, const char *client);
int ocireg_uploads_repo_count(ocireg_uploads *u, const char *name);

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

/* Stores `updated` (found by its id) into a session this process
 * holds, which stays held: progress others may watch. APR_ENOENT when
 * this process does not hold it. */
apr_status_t ocireg_uploads_update(ocireg_uploads *u,
                                   const ocireg_upload_session *updated);

/* Removes an acquired session. */
apr_status_t ocireg_uploads_remove(ocireg_uploads *u, const char *uuid);

/* Acquires up to max sessions nobody holds that were last touched before
 * `before`, or before `empty_before` when they never received a byte,
 * copying them to out; returns how many. The caller aborts them in the
 * store and removes them, or releases them: every one it took. */
int ocireg_uploads_take_idle(ocireg_uploads *u, apr_time_t before,
                             apr_time_t empty_before,
                             ocireg_upload_session *out, int max);

/* Whether a session with this id is in the table. */
int ocireg_uploads_has(ocireg_uploads *u, const char *uuid);

/* The durable form of a session, kept by the store (state_put) and read
 * back by any host sharing it, so it is input like any request: anyone
 * who can write the bucket (or sit on an http:// link to it) can put
 * bytes there. The record is:
 *
 *   "OCIRSESS"  magic (8 bytes)
 *   u16         format version (OCIREG_SESSION_FORMAT)
 *   u8 n, n     upload id: 36 bytes of the UUID grammar
 *   u16 n, n    repository name: 1..OCIREG_NAME_MAX bytes, name grammar
 *   u32         store id
 *   u64 x 5     offset, version, moved, created, touched
 *   u32 x 8     SHA-256 chaining value; u64 bytes hashed (== offset);
 *   u8 n, n     the pending bytes of the last block (n == offset % 64)
 *   u16 n, n    the driver's state: up to OCIREG_DRIVER_STATE_SIZE bytes
 *   32 bytes    HMAC-SHA256, under the record key, of everything before
 *
 * Integers are big-endian; nothing depends on this build's struct layout
 * or on the crypto library's, so hosts running different builds share a
 * store. A later layout gets the next format number, and the decoder
 * keeps reading the formats before it, so uploads in progress across an
 * upgrade carry on. The key is the OCIRegRecordKey (or one derived from
 * the store's credentials); an empty key makes the HMAC a checksum. */
#define OCIREG_SESSION_FORMAT 1
#define OCIREG_SESSION_MAGIC "OCIRSESS"
/* A record that fails any check (see ocireg_session_decode). */
#define OCIREG_SESSION_EBAD (APR_OS_START_USERERR + 742)
/* A well-formed record whose HMAC does not match the key. */
#define OCIREG_SESSION_EKEY (APR_OS_START_USERERR + 743)

const void *ocireg_session_encode(apr_pool_t *p,
                                  const ocireg_upload_session *s,
                                  const unsigned char *key, apr_size_t keylen,
                                  apr_size_t *len);

/* Decodes `len` bytes at `data` (any bytes: NULL with len 0 too) into
 * *out, which is fully written (zeroed on failure). APR_SUCCESS only for
 * a record of a known format, of exactly its length, whose HMAC under key
 * matches and whose every field is valid: id and name of their grammars,
 * offset >= 0 and equal to the hash's byte count, a hash state SHA-256
 * can be in, moved <= version. OCIREG_SESSION_EKEY for a wrong HMAC,
 * OCIREG_SESSION_EBAD for anything else. Pure: no allocation, no global
 * state. A fuzz target reaches the field checks past the HMAC by signing
 * its input: HMAC-SHA256(key, input) appended. */
apr_status_t ocireg_session_decode(const void *data, apr_size_t len,
                                   const unsigned char *key,
                                   apr_size_t keylen,
                                   ocireg_upload_session *out);

/* A record key of 32 bytes derived from a secret (HMAC-SHA256 of a
 * fixed label and `context` under it), in pool memory. */
const unsigned char *ocireg_session_key_derive(apr_pool_t *p,
                                               const char *secret,
                                               const char *context,
                                               apr_size_t *keylen);

/* Sessions in use, for status and tests. */
int ocireg_uploads_count(ocireg_uploads *u);

#endif
