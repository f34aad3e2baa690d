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

/* From the module's child_init: ties the expiry's rounds to the child's
 * lifetime (a stopping child waits for the round in progress). */
void ocireg_expiry_child_init(apr_pool_t *pchild, server_rec *s);

#endif
