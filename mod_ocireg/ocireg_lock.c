#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <apr_strings.h>
#include "ocireg_lock.h"

#define LOCK_MAGIC "ocireg-lock/1"

const char *ocireg_lock_owner_format(apr_pool_t *p,
                                     const ocireg_lock_owner *o)
{
    return apr_psprintf(p, LOCK_MAGIC " %s %" APR_UINT64_T_HEX_FMT
                        " %" APR_INT64_T_FMT " %" APR_INT64_T_FMT,
                        o->host, o->instance, o->pid,
                        (apr_int64_t)o->expires);
}

int ocireg_lock_owner_parse(const char *text, apr_size_t len,
                            ocireg_lock_owner *out)
{
    char buf[256], host[OCIREG_LOCK_HOST_MAX + 1];
    unsigned long long instance;
    long long pid, expires;
    int used = 0;
    if (len >= sizeof(buf))
        return 0;
    memcpy(buf, text, len);
    buf[len] = '\0';
    if (sscanf(buf, LOCK_MAGIC " %64s %llx %lld %lld%n", host, &instance,
               &pid, &expires, &used) != 4
        || buf[used + strspn(buf + used, "\r\n ")] != '\0' || pid <= 0)
        return 0;
    memset(out, 0, sizeof(*out));
    strcpy(out->host, host);
    out->instance = instance;
    out->pid = pid;
    out->expires = (apr_time_t)expires;
    return 1;
}

int ocireg_lock_takeover(const ocireg_lock_owner *holder,
                         const ocireg_lock_owner *me, apr_time_t now,
                         int (*alive)(apr_int64_t pid))
{
    /* A holder at work renews its lease: one that lapsed is not working
     * (or cannot reach the store, which comes to the same). */
    if (now > holder->expires)
        return 1;
    if (strcmp(holder->host, me->host) != 0)
        return 0;
    /* The taker holds this instance's shared-memory lock on the session:
     * no other process of the instance can be working on it. */
    if (me->instance != 0 && holder->instance == me->instance)
        return 1;
    return !alive(holder->pid);
}

int ocireg_pid_alive(apr_int64_t pid)
{
    return !(kill((pid_t)pid, 0) != 0 && errno == ESRCH);
}
