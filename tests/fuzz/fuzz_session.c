/* The upload session record, read back from the store (a shared bucket is
 * input too): decoded, then used as a handler uses it (strings, offsets,
 * the SHA-256 state resumed and finished).
 *
 * The decoder is called through decode() only, so a new signature (a key
 * for an authenticated format) changes this one place. */
#include "fuzz.h"
#include "ocireg_hash.h"
#include "ocireg_parse.h"
#include "ocireg_uploads.h"

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
    free(copy);
    return 0;
}
