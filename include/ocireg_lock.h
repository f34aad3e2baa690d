/* Who holds an upload session across processes and hosts.
 *
 * A request that changes a session takes its lock in the store, so that
 * two httpd instances (two hosts behind a load balancer, or two servers on
 * one machine) never write one session at once. A lock names its holder:
 * the host, the httpd instance (its shared-memory table) and the process,
 * and carries a lease the holder renews while it works. A lock is taken
 * over when its holder is known to be gone: once its lease has run out;
 * sooner on this host, when its process is dead or when it belongs to this
 * very instance, whose shared-memory lock on the session the taker holds
 * (a taker without that lock says instance 0).
 *
 * "Host" is the kernel's boot id and the pid namespace, not the hostname:
 * containers that share a hostname (or one image's default) are different
 * hosts whose pids name different processes, and a rebooted machine is a
 * new host whose old locks are dead. */
#ifndef OCIREG_LOCK_H
#define OCIREG_LOCK_H

#include <apr.h>
#include <apr_pools.h>
#include <apr_time.h>

#define OCIREG_LOCK_HOST_MAX 64

typedef struct {
    char host[OCIREG_LOCK_HOST_MAX + 1];
    apr_uint64_t instance;
    apr_int64_t pid;
    apr_time_t expires;
} ocireg_lock_owner;

/* One line of text: "ocireg-lock/1 <host> <instance> <pid> <expires>". */
const char *ocireg_lock_owner_format(apr_pool_t *p,
                                     const ocireg_lock_owner *o);
/* Zero for text that is not a lock record. */
int ocireg_lock_owner_parse(const char *text, apr_size_t len,
                            ocireg_lock_owner *out);

/* Whether `me` may take over a lock `holder` has, at time `now`.
 * `alive(pid)` tells whether a process of this host exists. */
int ocireg_lock_takeover(const ocireg_lock_owner *holder,
                         const ocireg_lock_owner *me, apr_time_t now,
                         int (*alive)(apr_int64_t pid));

/* Whether a and b name the same holder (host, instance, process), their
 * leases aside: a holder renewing its own record. */
int ocireg_lock_owner_same(const ocireg_lock_owner *a,
                           const ocireg_lock_owner *b);

/* This host's identity for lock records, "<boot id>/<pid namespace
 * inode>" (at most OCIREG_LOCK_HOST_MAX characters, one word, written to
 * out); `fallback` (the hostname) when /proc cannot tell. The _from form
 * reads the given files, for tests. */
void ocireg_lock_host_id(const char *fallback, char *out);
void ocireg_lock_host_id_from(const char *boot_id_path,
                              const char *pid_ns_path, const char *fallback,
                              char *out);

/* kill(pid, 0) does not say "no such process". */
int ocireg_pid_alive(apr_int64_t pid);

#endif
