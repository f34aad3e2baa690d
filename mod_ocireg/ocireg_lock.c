#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
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

int ocireg_lock_owner_same(const ocireg_lock_owner *a,
                           const ocireg_lock_owner *b)
{
    return strcmp(a->host, b->host) == 0 && a->instance == b->instance
           && a->pid == b->pid;
}

int ocireg_pid_alive(apr_int64_t pid)
{
    return !(kill((pid_t)pid, 0) != 0 && errno == ESRCH);
}

/* The first line of a small file, or "" when it cannot be read. */
static void read_line(const char *path, char *out, apr_size_t size)
{
    FILE *f = fopen(path, "r");
    out[0] = '\0';
    if (!f)
        return;
    if (!fgets(out, (int)size, f))
        out[0] = '\0';
    fclose(f);
    out[strcspn(out, " \t\r\n")] = '\0';
}

void ocireg_lock_host_id_from(const char *boot_id_path,
                              const char *pid_ns_path, const char *fallback,
                              char *out)
{
    char boot[64], ns[64], digits[24];
    ssize_t n;
    apr_size_t i, d = 0;
    read_line(boot_id_path, boot, sizeof(boot));
    n = readlink(pid_ns_path, ns, sizeof(ns) - 1);
    ns[n > 0 ? n : 0] = '\0';
    /* "pid:[4026531836]": the namespace's inode number */
    for (i = 0; ns[i] && d + 1 < sizeof(digits); i++)
        if (ns[i] >= '0' && ns[i] <= '9')
            digits[d++] = ns[i];
    digits[d] = '\0';
    if (boot[0] && d > 0 && strlen(boot) + 1 + d <= OCIREG_LOCK_HOST_MAX)
        apr_snprintf(out, OCIREG_LOCK_HOST_MAX + 1, "%s/%s", boot, digits);
    else
        apr_snprintf(out, OCIREG_LOCK_HOST_MAX + 1, "%s",
                     fallback && fallback[0] ? fallback : "localhost");
    /* One word: the lock record is space-separated. */
    for (i = 0; out[i]; i++)
        if (out[i] == ' ' || out[i] == '\t' || out[i] == '\r'
            || out[i] == '\n')
            out[i] = '_';
}

void ocireg_lock_host_id(const char *fallback, char *out)
{
    ocireg_lock_host_id_from("/proc/sys/kernel/random/boot_id",
                             "/proc/self/ns/pid", fallback, out);
}
