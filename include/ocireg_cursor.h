/* Sealed listing cursors: where a filtered listing stopped, handed to the
 * client in a Link without telling it the name (a repository it may not
 * see). AES-256-GCM under a key of the server's; the client cannot read
 * or forge one. */
#ifndef OCIREG_CURSOR_H
#define OCIREG_CURSOR_H

#include <apr_pools.h>

#define OCIREG_CURSOR_KEY_LEN 32
/* Cursors start with this; no repository name can. */
#define OCIREG_CURSOR_MARK '~'

/* "~" + base64url(nonce, ciphertext, tag), or NULL on a crypto failure. */
const char *ocireg_cursor_seal(apr_pool_t *p,
                               const unsigned char key[OCIREG_CURSOR_KEY_LEN],
                               const char *name);

/* The name sealed in cursor, or NULL when it is not one of ours (another
 * key, altered, malformed). */
const char *ocireg_cursor_open(apr_pool_t *p,
                               const unsigned char key[OCIREG_CURSOR_KEY_LEN],
                               const char *cursor);

/* A key for cursors from secret (the record key: hosts sharing a store
 * share it), or random when secret is empty. 0 on success. */
int ocireg_cursor_key(unsigned char key[OCIREG_CURSOR_KEY_LEN],
                      const unsigned char *secret, apr_size_t secretlen);

#endif
