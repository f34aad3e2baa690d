/* Bearer tokens of the Docker token protocol: compact JWTs signed ES256 or
 * RS256 by a token server, verified against configured public keys, their
 * claims checked and their `access` claim asked what they allow.
 *
 * Pure core: APR, jansson and OpenSSL only. */
#ifndef OCIREG_TOKEN_H
#define OCIREG_TOKEN_H

#include <apr_pools.h>
#include "ocireg_parse.h"
#include <apr_tables.h>

/* Longer tokens are refused before any decoding. Real ones with a few
 * scopes are well under 2 KiB; 16 KiB leaves room for long access lists. */
#define OCIREG_TOKEN_MAX_LEN (16 * 1024)

/* Why a token was refused: for the log only, never for the client. */
typedef enum {
    OCIREG_TOKEN_OK = 0,
    OCIREG_TOKEN_MALFORMED,       /* not header.payload.signature, bad
                                     base64url, JSON not an object, a claim
                                     of the wrong type, `crit` */
    OCIREG_TOKEN_TOO_LONG,        /* over OCIREG_TOKEN_MAX_LEN */
    OCIREG_TOKEN_BAD_ALG,         /* alg none, HS*, anything but ES256 and
                                     RS256 */
    OCIREG_TOKEN_NO_KEY,          /* no configured key of the alg's type */
    OCIREG_TOKEN_BAD_SIGNATURE,   /* no configured key verifies it */
    OCIREG_TOKEN_NO_EXPIRY,       /* `exp` missing */
    OCIREG_TOKEN_EXPIRED,
    OCIREG_TOKEN_NOT_YET_VALID,   /* `nbf` in the future */
    OCIREG_TOKEN_WRONG_ISSUER,
    OCIREG_TOKEN_WRONG_AUDIENCE
} ocireg_token_status;

const char *ocireg_token_status_text(ocireg_token_status st);

/* A public key a token may be signed with. */
typedef enum {
    OCIREG_TOKEN_KEY_EC_P256 = 1, /* for ES256 */
    OCIREG_TOKEN_KEY_RSA          /* for RS256 */
} ocireg_token_key_type;

typedef struct ocireg_token_key ocireg_token_key;

ocireg_token_key_type ocireg_token_key_type_of(const ocireg_token_key *k);

/* RSA keys shorter than this are refused. */
#define OCIREG_TOKEN_RSA_MIN_BITS 2048

/* Appends to keys (an array of ocireg_token_key *) every key in a PEM text:
 * PUBLIC KEY blocks and CERTIFICATE blocks (their subject key; the
 * certificate itself is not validated, as token servers hand out
 * self-signed ones). Keys live until p is cleared. Returns NULL, or why the
 * text was refused (no key at all, a key that is neither EC P-256 nor RSA
 * of at least OCIREG_TOKEN_RSA_MIN_BITS bits, an unreadable block); on
 * refusal nothing is appended. */
const char *ocireg_token_keys_parse(apr_pool_t *p, const char *pem,
                                    apr_size_t len,
                                    apr_array_header_t *keys);

/* What a verified token says. */
typedef struct {
    const char *type;                /* "repository", "registry", ... */
    const char *name;
    apr_array_header_t *actions;     /* const char * */
} ocireg_token_access;

typedef struct {
    const char *alg;                 /* "ES256" or "RS256" */
    const char *subject;             /* `sub`, "" when absent */
    const char *issuer;
    apr_int64_t expires;             /* `exp`, seconds since the epoch */
    apr_array_header_t *access;      /* ocireg_token_access */
} ocireg_token;

typedef struct {
    const char *issuer;              /* `iss` must equal it */
    const char *audience;            /* `aud` must be or hold it */
    const apr_array_header_t *keys;  /* ocireg_token_key * */
    apr_int64_t leeway;              /* seconds of clock skew allowed */
} ocireg_token_verifier;

/* Verifies jwt (len bytes, not necessarily NUL-terminated) at time now
 * (seconds since the epoch). On OCIREG_TOKEN_OK *out is the token, in p. */
ocireg_token_status ocireg_token_verify(apr_pool_t *p,
                                        const ocireg_token_verifier *v,
                                        const char *jwt, apr_size_t len,
                                        apr_int64_t now, ocireg_token **out);

/* Whether t grants action on the resource (type, name): an `access` entry
 * of that exact type and name listing the action or "*". */
int ocireg_token_allows(const ocireg_token *t, const char *type,
                        const char *name, const char *action);

#endif
