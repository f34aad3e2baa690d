/* The records read back from the store (a shared bucket is input too):
 * the upload session record, decoded, then used as a handler uses it
 * (strings, the SHA-256 state resumed and finished); and the same bytes as
 * a session lock record, parsed and weighed for a takeover.
 *
 * The decoder is called through decode() only, so a new signature (a key
 * for an authenticated format) changes this one place. */
#include "fuzz.h"
#include "ocireg_hash.h"
#include "ocireg_lock.h"
#include "ocireg_parse.h"
#include "ocireg_uploads.h"

static int nobody_alive(apr_int64_t pid)
{
    (void)pid;
    return 0;
}

static apr_status_t decode(const void *data, apr_size_t len,
                           ocireg_upload_session *out)
{
    return ocireg_session_decode(data, len, out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ocireg_upload_session s;
    char digest[80];
    /* A copy of exactly the input, so ASan sees any read past it. */
    void *copy = malloc(size ? size : 1);
    memcpy(copy, data, size);
    if (decode(copy, size, &s) == APR_SUCCESS) {
        FUZZ_ASSERT(strlen(s.uuid) <= OCIREG_UUID_LEN);
        FUZZ_ASSERT(strlen(s.name) <= OCIREG_NAME_MAX);
        (void)ocireg_uuid_valid(s.uuid);
        (void)ocireg_name_valid(s.name);
        ocireg_hash_update(&s.hash, "resumed", 7);
        ocireg_hash_digest(&s.hash, digest);
        FUZZ_ASSERT(strlen(digest) == 71);
    }
    {
        ocireg_lock_owner holder, me;
        memset(&me, 0, sizeof(me));
        strcpy(me.host, "host");
        me.instance = 1;
        if (ocireg_lock_owner_parse(copy, size, &holder)) {
            FUZZ_ASSERT(strlen(holder.host) <= OCIREG_LOCK_HOST_MAX);
            FUZZ_ASSERT(holder.pid > 0);
            (void)ocireg_lock_takeover(&holder, &me, 0, nobody_alive);
        }
    }
    free(copy);
    return 0;
}
