#include <string.h>
#include <apr_strings.h>
#include "ocireg_store.h"

const char *ocireg_digest_path(apr_pool_t *p, const char *digest)
{
    char *d = apr_pstrdup(p, digest), *colon = strchr(d, ':');
    if (colon)
        *colon = '/';
    return d;
}

apr_uint32_t ocireg_store_id(const char *text)
{
    apr_uint32_t h = 2166136261u;
    while (*text)
        h = (h ^ (unsigned char)*text++) * 16777619u;
    return h;
}
