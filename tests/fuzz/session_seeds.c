/* Writes a few real session records (as the store keeps them) into the
 * directory given, as seeds for fuzz_session: fresh, part-way through a
 * blob, and with every field at its longest. Rerun (`make fuzz-seeds`)
 * whenever the record format changes. */
#include <stdio.h>
#include <string.h>
#include <apr_general.h>
#include <apr_strings.h>
#include "ocireg_uploads.h"

static int put(apr_pool_t *p, const char *dir, int i,
               const ocireg_upload_session *s)
{
    apr_size_t len;
#ifdef OCIREG_SESSION_EKEY
    /* fuzz_session appends the HMAC itself: seeds are records without it. */
    static const unsigned char key[] = "fuzz-record-key";
    const void *d = ocireg_session_encode(p, s, key, sizeof(key) - 1, &len);
    len -= 32;
#else
    const void *d = ocireg_session_encode(p, s, &len);
#endif
    char path[4096];
    FILE *f;
    snprintf(path, sizeof(path), "%s/seed-%03d", dir, i);
    f = fopen(path, "wb");
    if (!f || fwrite(d, 1, len, f) != len)
        return 1;
    return fclose(f) != 0;
}

int main(int argc, char **argv)
{
    apr_pool_t *p;
    ocireg_upload_session s;
    int rc = 0;
    if (argc != 2)
        return 2;
    apr_initialize();
    apr_pool_create(&p, NULL);

    memset(&s, 0, sizeof(s));
    strcpy(s.uuid, "3f1d2c7e-5a4b-4c3d-9e8f-0123456789ab");
    strcpy(s.name, "library/ubuntu");
    ocireg_hash_init(&s.hash);
    s.created = s.touched = apr_time_from_sec(1796000000);
    rc |= put(p, argv[1], 0, &s);

    ocireg_hash_update(&s.hash, "0123456789", 10);
    s.offset = 10;
    s.version = s.moved = 3;
    s.store_id = 7;
    memcpy(s.driver, "VXBsb2FkIElE", 12);
    rc |= put(p, argv[1], 1, &s);

    memset(s.name, 'a', OCIREG_NAME_MAX);
    s.name[OCIREG_NAME_MAX] = '\0';
    {
        static char chunk[200];
        int i;
        for (i = 0; i < 50; i++)
            ocireg_hash_update(&s.hash, chunk, sizeof(chunk) - (apr_size_t)i);
    }
    s.offset = APR_INT64_MAX;
    memset(s.driver, 0xff, sizeof(s.driver));
    rc |= put(p, argv[1], 2, &s);
    apr_terminate();
    return rc;
}
