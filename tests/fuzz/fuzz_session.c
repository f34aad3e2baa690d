/* The records read back from the store (a shared bucket is input too):
 * the upload session record, decoded, then used as a handler uses it
 * (strings, the SHA-256 state resumed and finished); and the same bytes as
 * a session lock record, parsed and weighed for a takeover.
 *
 * The decoder is called through decode() only; it speaks both the raw
 * record of older builds and the HMAC'd one (ocireg_uploads.h defines
 * OCIREG_SESSION_EKEY), whose seeds are records without their HMAC. */
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

#ifdef OCIREG_SESSION_EKEY
/* The checked, HMAC'd record format: the input is a record without its
 * HMAC, which is appended here so the decoder's field checks are reached
 * (a record with a wrong HMAC is refused before them). */
#include <openssl/evp.h>
#include <openssl/hmac.h>

static const unsigned char fuzz_key[] = "fuzz-record-key";

static apr_status_t decode(const void *data, apr_size_t len,
                           ocireg_upload_session *out)
{
    unsigned char *signed_rec = malloc(len + 32);
    unsigned int maclen = 32;
    apr_status_t rv;
    memcpy(signed_rec, data, len);
    if (!HMAC(EVP_sha256(), fuzz_key, (int)sizeof(fuzz_key) - 1, data, len,
              signed_rec + len, &maclen))
        abort();
    rv = ocireg_session_decode(signed_rec, len + maclen, fuzz_key,
                               sizeof(fuzz_key) - 1, out);
    free(signed_rec);
    return rv;
}
#else
static apr_status_t decode(const void *data, apr_size_t len,
                           ocireg_upload_session *out)
{
    return ocireg_session_decode(data, len, out);
}
#endif

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
