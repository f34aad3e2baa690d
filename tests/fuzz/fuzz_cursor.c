/* Catalog cursors: the `last` a client sends back is opened with the
 * server's key; whatever it is, opening must not crash, and what we seal
 * must open to itself. */
#include "fuzz.h"
#include "ocireg_cursor.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const unsigned char key[OCIREG_CURSOR_KEY_LEN] = "fuzzing key, 32 bytes long.....";
    apr_pool_t *p = fuzz_pool();
    const char *in = apr_pstrmemdup(p, (const char *)data, size);
    const char *opened = ocireg_cursor_open(p, key, in);
    const char *sealed;
    if (opened && strlen(opened) > 1024)
        abort();
    if (strlen(in) == size && size <= 1024) {
        sealed = ocireg_cursor_seal(p, key, in);
        if (!sealed || strcmp(ocireg_cursor_open(p, key, sealed), in) != 0)
            abort();
    }
    apr_pool_destroy(p);
    return 0;
}
