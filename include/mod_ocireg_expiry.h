/* The background expiry of idle uploads (mod_ocireg_expiry.c), as the
 * module's lifecycle (mod_ocireg.c) starts it. The table is handed over
 * as a function, so the expiry needs nothing else of mod_ocireg.c. */
#ifndef MOD_OCIREG_EXPIRY_H
#define MOD_OCIREG_EXPIRY_H

#include "httpd.h"
#include "ocireg_uploads.h"

/* The calling process's handle on the shared table, or NULL. */
typedef ocireg_uploads *(*ocireg_table_fn)(void);

/* Registers the watchdog callback; OK or an HTTP status for post_config. */
int ocireg_expiry_start(apr_pool_t *pconf, server_rec *s,
                        ocireg_table_fn table);

#endif
