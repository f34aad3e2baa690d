#include <string.h>
#include <apr_strings.h>
#include "ocireg_store.h"
#include "ocireg_s3.h"

/* Only the S3 driver's backend talks back; the filesystem's failures are
 * plain errno values. */
_Static_assert(OCIREG_STORE_EUNAVAILABLE == OCIREG_S3_EUNAVAILABLE
                   && OCIREG_STORE_EREFUSED == OCIREG_S3_EREFUSED,
               "the store passes the S3 client's codes on unchanged");

const char *ocireg_store_last_error(void)
{
    return ocireg_s3_last_error();
}

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
