/* Shared by the libFuzzer targets: APR is initialised once, each input
 * gets a fresh pool (destroyed after it, so leaks and use-after-free show
 * under ASan), and inputs are copied into NUL-terminated strings because
 * the parsers under test read C strings, as httpd hands them over. */
#ifndef OCIREG_FUZZ_H
#define OCIREG_FUZZ_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <apr_general.h>
#include <apr_pools.h>
#include <apr_strings.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static inline apr_pool_t *fuzz_pool(void)
{
    static int ready;
    apr_pool_t *p = NULL;
    if (!ready) {
        if (apr_initialize() != APR_SUCCESS)
            abort();
        ready = 1;
    }
    if (apr_pool_create(&p, NULL) != APR_SUCCESS)
        abort();
    return p;
}

/* The input as a C string; an embedded NUL ends it, as it would in a
 * header or a decoded path. */
static inline char *fuzz_cstr(apr_pool_t *p, const uint8_t *data, size_t size)
{
    return apr_pstrmemdup(p, (const char *)data, size);
}

/* Splits the string at the first '\n' (NULL when there is none) so one
 * input can carry several fields. */
static inline char *fuzz_next_line(char *s)
{
    char *nl = s ? strchr(s, '\n') : NULL;
    if (!nl)
        return NULL;
    *nl = '\0';
    return nl + 1;
}

/* A check the parser's callers rely on; a failure is a finding. */
#define FUZZ_ASSERT(c) do { if (!(c)) abort(); } while (0)

#endif
