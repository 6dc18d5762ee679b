/* config.c: the INI parser behind struct gw_config. A static key table (section, key, type,
 * offset, range, required) drives it; every value is validated as it is read, cross-field rules
 * after. Invariants: a failed load leaves nothing allocated in *out; an error message names the
 * file, the line and the key, never a value (values may be conninfo strings or paths to secrets).
 */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "alloc.h"
#include "conninfo.h"
#include "file.h"

#define CONFIG_LINE_MAX 4096          /* bytes of one line, newline excluded */
#define CONFIG_FILE_MAX (1024 * 1024) /* bytes of the whole file */
#define NAME_SHOWN_MAX 64             /* bytes of an unknown section or key name quoted back */

/* T_PATH: a file read at start; T_OUTPATH: a file the gateway writes (its directory must exist
 * and be writable, and what is at the path, if anything, a regular file) */
enum ktype { T_STRING, T_PATH, T_OUTPATH, T_BOOL, T_U32, T_LEVEL, T_HOSTPORT, T_SUITE };

/* What a SIGHUP does with a key whose value changed in the file (daemon.c's reload): RELOAD, it
 * is applied (the daemon reads those files again from the new value, then
 * gw_config_take_reloaded puts the value in the running config); RESTART, nothing reads it after
 * the start, so the reload is refused, naming the key (gw_config_restart_keys). Each row says
 * which: a row without it does not compile (-Wmissing-field-initializers, -Werror). */
enum kreload { RESTART, RELOAD };

struct keydef {
    const char *section;
    const char *key;
    enum ktype type;
    size_t off;
    uint32_t min, max;
    int required;
    enum kreload reload;
};

#define F(m) offsetof(struct gw_config, m)

static const struct keydef keys[] = {
    {"server", "listen", T_HOSTPORT, F(listen), 0, 0, 1, RESTART},
    {"server", "insecure_loopback_only", T_BOOL, F(insecure_loopback_only), 0, 0, 0, RESTART},
    {"server", "insecure_listen", T_HOSTPORT, F(insecure_listen), 0, 0, 0, RESTART},
    {"server", "max_connections", T_U32, F(max_connections), 1, 1000000, 0, RESTART},
    {"server", "max_concurrent_streams", T_U32, F(max_concurrent_streams), 1, 10000, 0, RESTART},
    {"server", "max_header_list_size", T_U32, F(max_header_list_size), 1024, 1048576, 0, RESTART},
    {"server", "max_message_size", T_U32, F(max_message_size), 1024, 67108864, 0, RESTART},
    {"server", "request_memory_per_connection", T_U32, F(request_memory_per_connection), 65536,
     4294967295u, 0, RESTART},
    {"server", "request_memory", T_U32, F(request_memory), 65536, 4294967295u, 0, RESTART},
    {"server", "request_memory_per_certificate", T_U32, F(request_memory_per_certificate), 65536,
     4294967295u, 0, RESTART},
    {"server", "response_memory_per_connection", T_U32, F(response_memory_per_connection), 65536,
     4294967295u, 0, RESTART},
    {"server", "response_memory", T_U32, F(response_memory), 65536, 4294967295u, 0, RESTART},
    {"server", "response_memory_per_certificate", T_U32, F(response_memory_per_certificate), 65536,
     4294967295u, 0, RESTART},
    {"server", "handshake_timeout_ms", T_U32, F(handshake_timeout_ms), 100, 600000, 0, RESTART},
    {"server", "preauth_timeout_ms", T_U32, F(preauth_timeout_ms), 100, 600000, 0, RESTART},
    {"server", "max_preauth_connections", T_U32, F(max_preauth_connections), 0, 1000000, 0,
     RESTART},
    {"server", "max_preauth_per_address", T_U32, F(max_preauth_per_address), 1, 1000000, 0,
     RESTART},
    {"server", "accept_rate_per_address", T_U32, F(accept_rate_per_address), 1, 1000000, 0,
     RESTART},
    {"server", "max_connections_per_certificate", T_U32, F(max_connections_per_certificate), 0,
     1000000, 0, RESTART},
    {"server", "idle_timeout_ms", T_U32, F(idle_timeout_ms), 1000, 86400000, 0, RESTART},
    {"server", "stream_write_timeout_ms", T_U32, F(stream_write_timeout_ms), 100, 3600000, 0,
     RESTART},
    {"server", "drain_timeout_ms", T_U32, F(drain_timeout_ms), 0, 600000, 0, RESTART},
    {"server", "max_deadline_ms", T_U32, F(max_deadline_ms), 100, 3600000, 0, RESTART},
    {"server", "segment_refresh_ms", T_U32, F(segment_refresh_ms), 100, 86400000, 0, RESTART},
    {"server", "incident_queue_max", T_U32, F(incident_queue_max), 1, 1000000, 0, RESTART},
    {"server", "lookup_throttle_principals", T_U32, F(lookup_throttle_principals), 16, 4194304, 0,
     RESTART},
    {"server", "lookup_throttle_keys", T_U32, F(lookup_throttle_keys), 1024, 67108864, 0, RESTART},
    {"tls", "cert", T_PATH, F(tls_cert), 0, 0, 1, RELOAD},
    {"tls", "key", T_PATH, F(tls_key), 0, 0, 1, RELOAD},
    {"tls", "client_ca", T_PATH, F(tls_client_ca), 0, 0, 1, RELOAD},
    {"tls", "crl", T_PATH, F(tls_crl), 0, 0, 0, RELOAD},
    {"tls", "crl_reload_ms", T_U32, F(crl_reload_ms), 0, 86400000, 0, RESTART},
    {"tls", "crl_warn_s", T_U32, F(crl_warn_s), 0, 31536000, 0, RESTART},
    {"database", "conninfo", T_STRING, F(db_conninfo), 0, 0, 1, RESTART},
    {"database", "pool_size", T_U32, F(db_pool_size), 1, 256, 0, RESTART},
    {"database", "pipeline_depth", T_U32, F(db_pipeline_depth), 1, 1024, 0, RESTART},
    {"database", "queue_max", T_U32, F(db_queue_max), 1, 1000000, 0, RESTART},
    {"database", "queue_share", T_U32, F(db_queue_share), 0, 1000000, 0, RESTART},
    {"database", "connect_timeout_ms", T_U32, F(db_connect_timeout_ms), 100, 600000, 0, RESTART},
    {"database", "reconnect_max_ms", T_U32, F(db_reconnect_max_ms), 100, 600000, 0, RESTART},
    {"keys", "keyring", T_PATH, F(keyring), 0, 0, 1, RELOAD},
    /* read at each lease (app/wrapguard.c), but a SIGHUP does not change it: at most 2^32 - 1
     * (NIST SP 800-38D's 2^32, less one: the key types are 32-bit) */
    {"keys", "kek_wrap_limit", T_U32, F(kek_wrap_limit), 1, 4294967295u, 0, RESTART},
    {"crypto", "suite", T_SUITE, F(crypto_suite), 0, 0, 0, RESTART},
    {"auth", "token_ttl_s", T_U32, F(token_ttl_s), 60, 604800, 0, RESTART},
    {"auth", "password_max_age_days", T_U32, F(password_max_age_days), 0, 3650, 0, RESTART},
    {"auth", "lockout_failures", T_U32, F(lockout_failures), 1, 100, 0, RESTART},
    {"auth", "lockout_minutes", T_U32, F(lockout_minutes), 1, 100000, 0, RESTART},
    {"auth", "inactive_disable_days", T_U32, F(inactive_disable_days), 0, 3650, 0, RESTART},
    {"auth", "inactive_check_ms", T_U32, F(inactive_check_ms), 1000, 86400000, 0, RESTART},
    {"auth", "scrypt_n", T_U32, F(scrypt_n), 1024, 1048576, 0, RESTART},
    {"auth", "workers", T_U32, F(auth_workers), 1, 64, 0, RESTART},
    {"auth", "worker_cgroup", T_STRING, F(auth_worker_cgroup), 0, 0, 0, RESTART},
    {"auth", "worker_filter_required", T_BOOL, F(auth_worker_filter_required), 0, 0, 0, RESTART},
    {"auth", "principal_cache_ms", T_U32, F(principal_cache_ms), 0, 600000, 0, RESTART},
    {"policy", "file", T_PATH, F(policy_file), 0, 0, 0, RELOAD},
    {"audit", "chain", T_STRING, F(audit_chain), 0, 0, 0, RESTART},
    {"audit", "checkpoint_every", T_U32, F(checkpoint_every), 1, 1000000, 0, RESTART},
    {"audit", "checkpoint_ms", T_U32, F(checkpoint_ms), 10, 86400000, 0, RESTART},
    {"audit", "refusal_window_s", T_U32, F(refusal_window_s), 1, 86400, 0, RESTART},
    {"audit", "queue_max", T_U32, F(audit_queue_max), 1, 1000000, 0, RESTART},
    {"audit", "spool", T_OUTPATH, F(audit_spool), 0, 0, 0, RESTART},
    {"compliance", "bulk_threshold", T_U32, F(bulk_threshold), 1, 1000000, 0, RESTART},
    {"compliance", "approval_ttl_s", T_U32, F(approval_ttl_s), 60, 2592000, 0, RESTART},
    {"compliance", "lawful_default_s", T_U32, F(lawful_default_s), 60, 31536000, 0, RESTART},
    /* at most 365 days: the database's own bound (sql/032_lawful_longest.sql) */
    {"compliance", "lawful_max_s", T_U32, F(lawful_max_s), 60, 31536000, 0, RESTART},
    {"compliance", "retention_days", T_U32, F(retention_days), 0, 36500, 0, RESTART},
    {"compliance", "retention_sweep_ms", T_U32, F(retention_sweep_ms), 100, 86400000, 0, RESTART},
    {"compliance", "retention_batch", T_U32, F(retention_batch), 1, 100000, 0, RESTART},
    {"compliance", "report_timeout_ms", T_U32, F(report_timeout_ms), 100, 3600000, 0, RESTART},
    {"metrics", "listen", T_HOSTPORT, F(metrics_listen), 0, 0, 0, RESTART},
    {"metrics", "tls", T_BOOL, F(metrics_tls), 0, 0, 0, RESTART},
    {"forward", "endpoint", T_STRING, F(fwd_endpoint), 0, 0, 0, RESTART},
    {"forward", "server_name", T_STRING, F(fwd_server_name), 0, 0, 0, RESTART},
    {"forward", "ca", T_PATH, F(fwd_ca), 0, 0, 0, RESTART},
    {"forward", "cert", T_PATH, F(fwd_cert), 0, 0, 0, RESTART},
    {"forward", "key", T_PATH, F(fwd_key), 0, 0, 0, RESTART},
    {"forward", "crl", T_PATH, F(fwd_crl), 0, 0, 0, RESTART},
    {"forward", "batch", T_U32, F(fwd_batch), 1, 1000, 0, RESTART},
    {"forward", "inflight", T_U32, F(fwd_inflight), 1, 64, 0, RESTART},
    {"forward", "deadline_ms", T_U32, F(fwd_deadline_ms), 100, 600000, 0, RESTART},
    {"forward", "lease_ms", T_U32, F(fwd_lease_ms), 1000, 3600000, 0, RESTART},
    {"forward", "poll_ms", T_U32, F(fwd_poll_ms), 10, 600000, 0, RESTART},
    {"forward", "backoff_min_ms", T_U32, F(fwd_backoff_min_ms), 10, 600000, 0, RESTART},
    {"forward", "backoff_max_ms", T_U32, F(fwd_backoff_max_ms), 10, 3600000, 0, RESTART},
    {"forward", "fast", T_BOOL, F(fwd_fast), 0, 0, 0, RESTART},
    {"forward", "fast_max", T_U32, F(fwd_fast_max), 1, 1000000, 0, RESTART},
    {"forward", "linger_ms", T_U32, F(fwd_linger_ms), 0, 600000, 0, RESTART},
    {"forward", "breaker_after", T_U32, F(fwd_breaker_after), 0, 1000000, 0, RESTART},
    {"log", "level", T_LEVEL, F(log_level), 0, 0, 0, RESTART},
    {"log", "file", T_STRING, F(log_file), 0, 0, 0, RESTART},
};

#define NKEYS (sizeof(keys) / sizeof(keys[0]))

/* Every field of struct gw_config is a key of the table above: a reload compares the running
 * config and the new one over this table only, so a field without a row would be silently
 * ignored by a SIGHUP. A new field: add its row (with RELOAD only if the daemon applies it on a
 * SIGHUP), then the size here. */
#define GW_CONFIG_SIZE_LP64 448
#if defined(__x86_64__) || defined(__aarch64__)
_Static_assert(sizeof(struct gw_config) == GW_CONFIG_SIZE_LP64,
               "struct gw_config changed: add the new field's row to keys[] (config.c), with "
               "its reload class, then update GW_CONFIG_SIZE_LP64");
#endif

static const char *const sections[] = {"server",  "tls",     "database", "keys",
                                       "auth",    "policy",  "audit",    "compliance",
                                       "metrics", "forward", "log",      "crypto"};

/* Parser state for one load. */
struct parse {
    const char *path; /* as given, for messages */
    char *dir;        /* directory of the file, for relative paths */
    int seen[NKEYS];  /* line on which each key was set, 0 = not set */
    char *errbuf;
    size_t errlen;
};

static void set_defaults(struct gw_config *c)
{
    memset(c, 0, sizeof(*c));
    c->insecure_loopback_only = false;
    c->max_connections = 1024;
    c->max_concurrent_streams = 100;
    c->max_header_list_size = 16384;
    c->max_message_size = 4u * 1024 * 1024;
    c->request_memory_per_connection = 64u * 1024 * 1024;
    c->request_memory = 512u * 1024 * 1024;
    /* 32 streams of one connection at their full queue (GW_H2_STREAM_HIGH, 256 KiB) */
    c->response_memory_per_connection = 8u * 1024 * 1024;
    c->response_memory = 256u * 1024 * 1024;
    c->handshake_timeout_ms = 10000;
    c->preauth_timeout_ms = 3000;
    c->max_preauth_per_address = 32;
    c->accept_rate_per_address = 64;
    c->idle_timeout_ms = 300000;
    c->stream_write_timeout_ms = 30000;
    c->drain_timeout_ms = 10000;
    c->max_deadline_ms = 60000;
    c->segment_refresh_ms = 5000;
    c->incident_queue_max = 4096;
    c->lookup_throttle_principals = 65536;
    c->lookup_throttle_keys = 1u << 20;
    c->kek_wrap_limit = 1u << 31;
    c->db_pool_size = 4;
    c->db_pipeline_depth = 8;
    c->db_queue_max = 4096;
    c->db_connect_timeout_ms = 5000;
    c->db_reconnect_max_ms = 5000;
    c->token_ttl_s = 8 * 3600;
    c->password_max_age_days = 90;
    c->lockout_failures = 5;
    c->lockout_minutes = 15;
    c->inactive_disable_days = 90;
    c->inactive_check_ms = 3600000;
    c->scrypt_n = 32768;
    c->auth_workers = 2;
    c->auth_worker_filter_required = true;
    c->principal_cache_ms = 1000;
    c->checkpoint_every = 1000;
    c->checkpoint_ms = 10000;
    c->refusal_window_s = 60;
    c->audit_queue_max = 4096;
    c->bulk_threshold = 20;
    c->approval_ttl_s = 86400;
    c->lawful_default_s = 7 * 86400;
    c->lawful_max_s = 365 * 86400;
    c->retention_days = 1095;
    c->retention_sweep_ms = 3600000;
    c->retention_batch = 500;
    c->report_timeout_ms = 30000;
    c->crl_reload_ms = 300000;
    c->crl_warn_s = 172800;
    c->fwd_batch = 64;
    c->fwd_inflight = 4;
    c->fwd_deadline_ms = 5000;
    c->fwd_lease_ms = 30000;
    c->fwd_poll_ms = 1000;
    c->fwd_backoff_min_ms = 200;
    c->fwd_backoff_max_ms = 30000;
    c->fwd_fast = true;
    c->fwd_fast_max = 4096;
    c->fwd_linger_ms = 10;
    c->fwd_breaker_after = 32;
    c->log_level = GW_LOG_INFO;
    c->crypto_suite = GW_CONFIG_SUITE_AES;
}

static bool is_string(enum ktype t)
{
    return t == T_STRING || t == T_PATH || t == T_OUTPATH || t == T_HOSTPORT;
}

void gw_config_clear(struct gw_config *cfg)
{
    size_t i;

    if (cfg == NULL)
        return;
    for (i = 0; i < NKEYS; i++) {
        if (is_string(keys[i].type)) {
            char **p = (char **)((char *)cfg + keys[i].off);
            gw_free(*p);
            *p = NULL;
        }
    }
}

/* One key's value in a and in b is the same (strings by content, NULL only equal to NULL). */
static bool same_value(const struct keydef *k, const struct gw_config *a, const struct gw_config *b)
{
    const char *pa = (const char *)a + k->off, *pb = (const char *)b + k->off;

    switch (k->type) {
    case T_BOOL:
        return *(const bool *)pa == *(const bool *)pb;
    case T_U32:
    case T_SUITE:
        return *(const uint32_t *)pa == *(const uint32_t *)pb;
    case T_LEVEL:
        return *(const enum gw_log_level *)pa == *(const enum gw_log_level *)pb;
    default: {
        const char *sa = *(char *const *)pa, *sb = *(char *const *)pb;
        return sa == sb || (sa != NULL && sb != NULL && strcmp(sa, sb) == 0);
    }
    }
}

size_t gw_config_restart_keys(const struct gw_config *running, const struct gw_config *next,
                              gw_config_key_cb cb, void *arg)
{
    size_t n = 0;

    for (size_t i = 0; i < NKEYS; i++) {
        if (keys[i].reload == RELOAD || same_value(&keys[i], running, next))
            continue;
        n++;
        if (cb != NULL)
            cb(arg, keys[i].section, keys[i].key);
    }
    return n;
}

void gw_config_take_reloaded(struct gw_config *running, struct gw_config *next)
{
    for (size_t i = 0; i < NKEYS; i++) {
        char **a, **b, *t;

        if (keys[i].reload != RELOAD)
            continue;
        if (!is_string(keys[i].type)) { /* none today: a number or a flag is copied */
            size_t sz = keys[i].type == T_BOOL    ? sizeof(bool)
                        : keys[i].type == T_LEVEL ? sizeof(enum gw_log_level)
                                                  : sizeof(uint32_t);
            memcpy((char *)running + keys[i].off, (const char *)next + keys[i].off, sz);
            continue;
        }
        a = (char **)((char *)running + keys[i].off);
        b = (char **)((char *)next + keys[i].off);
        t = *a;
        *a = *b;
        *b = t;
    }
}

/* Copies a name from the file for an error message: printable ASCII only, capped. */
static void shown_name(char *dst, size_t dstlen, const char *s, size_t n)
{
    size_t i, j = 0;

    for (i = 0; i < n && j + 1 < dstlen && i < NAME_SHOWN_MAX; i++)
        dst[j++] = (s[i] > 0x20 && s[i] < 0x7f) ? s[i] : '?';
    dst[j] = '\0';
}

static void __attribute__((format(printf, 3, 4)))
fail(struct parse *ps, int line, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (ps->errbuf == NULL || ps->errlen == 0)
        return;
    if (line > 0)
        n = snprintf(ps->errbuf, ps->errlen, "%s:%d: ", ps->path, line);
    else
        n = snprintf(ps->errbuf, ps->errlen, "%s: ", ps->path);
    if (n < 0 || (size_t)n >= ps->errlen)
        return;
    va_start(ap, fmt);
    vsnprintf(ps->errbuf + n, ps->errlen - (size_t)n, fmt, ap);
    va_end(ap);
}

static int is_ws(char c)
{
    return c == ' ' || c == '\t';
}

/* Trims [*s, *e) of blanks on both ends. */
static void trim(const char **s, const char **e)
{
    while (*s < *e && is_ws(**s))
        (*s)++;
    while (*e > *s && is_ws((*e)[-1]))
        (*e)--;
}

int gw_config_split_hostport(const char *s, char *host, size_t hostlen, uint16_t *port)
{
    const char *h, *he, *p;
    unsigned long v = 0;
    size_t hl, i;

    if (s == NULL || host == NULL || hostlen == 0 || port == NULL)
        return GW_EINVAL;
    if (s[0] == '[') {
        h = s + 1;
        he = strchr(h, ']');
        if (he == NULL || he[1] != ':')
            return GW_EINVAL;
        p = he + 2;
    } else {
        h = s;
        he = strrchr(s, ':');
        if (he == NULL)
            return GW_EINVAL;
        p = he + 1;
        if (memchr(h, ':', (size_t)(he - h)) != NULL) /* bare IPv6 must be bracketed */
            return GW_EINVAL;
    }
    hl = (size_t)(he - h);
    if (hl == 0 || hl >= hostlen)
        return GW_EINVAL;
    if (*p == '\0' || strlen(p) > 5)
        return GW_EINVAL;
    for (i = 0; p[i] != '\0'; i++) {
        if (p[i] < '0' || p[i] > '9')
            return GW_EINVAL;
        v = v * 10 + (unsigned long)(p[i] - '0');
    }
    if (v == 0 || v > 65535)
        return GW_EINVAL;
    for (i = 0; i < hl; i++) {
        char c = h[i];
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                 c == '.' || c == '-' || (s[0] == '[' && c == ':');
        if (!ok)
            return GW_EINVAL;
    }
    memcpy(host, h, hl);
    host[hl] = '\0';
    if (s[0] == '[') {
        struct in6_addr a6;
        if (inet_pton(AF_INET6, host, &a6) != 1)
            return GW_EINVAL;
    }
    *port = (uint16_t)v;
    return 0;
}

static int is_loopback_host(const char *host)
{
    struct in_addr a4;
    struct in6_addr a6;

    if (strcasecmp(host, "localhost") == 0)
        return 1;
    if (inet_pton(AF_INET, host, &a4) == 1)
        return (ntohl(a4.s_addr) >> 24) == 127;
    if (inet_pton(AF_INET6, host, &a6) == 1)
        return memcmp(&a6, &in6addr_loopback, sizeof(a6)) == 0;
    return 0;
}

/* Joins a relative path onto the config file's directory. Returns an allocated string or NULL. */
static char *resolve_path(const struct parse *ps, const char *v)
{
    size_t dl, vl;
    char *r;

    if (v[0] == '/' || ps->dir == NULL)
        return gw_strdup(v);
    dl = strlen(ps->dir);
    vl = strlen(v);
    r = gw_malloc(dl + 1 + vl + 1);
    if (r == NULL)
        return NULL;
    memcpy(r, ps->dir, dl);
    r[dl] = '/';
    memcpy(r + dl + 1, v, vl + 1);
    return r;
}

/* A file the gateway writes at path: its directory exists and this process may create files
 * in it, and what is at path already (if anything) is a regular file, not followed through a
 * symbolic link. Returns 0, or GW_EINVAL with the reason said. */
static int outpath_check(struct parse *ps, int line, const struct keydef *k, const char *path)
{
    const char *slash = strrchr(path, '/');
    char dir[4096];
    struct stat st;

    if (slash == NULL)
        snprintf(dir, sizeof(dir), ".");
    else if ((size_t)(slash - path) >= sizeof(dir) || slash[1] == '\0') {
        fail(ps, line, "[%s] %s: must name a file, not a directory", k->section, k->key);
        return GW_EINVAL;
    } else
        snprintf(dir, sizeof(dir), "%.*s", slash == path ? 1 : (int)(slash - path), path);
    if (stat(dir, &st) != 0) {
        fail(ps, line, "[%s] %s: its directory %s cannot be used: %s", k->section, k->key, dir,
             errno == ENOENT ? "it does not exist" : strerror(errno));
        return GW_EINVAL;
    }
    if (!S_ISDIR(st.st_mode)) {
        fail(ps, line, "[%s] %s: %s is not a directory", k->section, k->key, dir);
        return GW_EINVAL;
    }
    if (access(dir, W_OK | X_OK) != 0) {
        fail(ps, line, "[%s] %s: its directory %s is not writable by this process: %s", k->section,
             k->key, dir, strerror(errno));
        return GW_EINVAL;
    }
    if (lstat(path, &st) == 0 && !S_ISREG(st.st_mode)) {
        fail(ps, line, "[%s] %s: %s exists and is not a regular file", k->section, k->key, path);
        return GW_EINVAL;
    }
    return 0;
}

/* Converts and stores one value. v is NUL-terminated, already unquoted. */
static int set_value(struct parse *ps, struct gw_config *c, const struct keydef *k, int line,
                     const char *v)
{
    void *field = (char *)c + k->off;
    char host[256];
    uint16_t port;
    char *copy = NULL;

    switch (k->type) {
    case T_BOOL:
        if (strcmp(v, "true") == 0)
            *(bool *)field = true;
        else if (strcmp(v, "false") == 0)
            *(bool *)field = false;
        else {
            fail(ps, line, "[%s] %s: must be true or false", k->section, k->key);
            return GW_EINVAL;
        }
        return 0;
    case T_U32: {
        unsigned long long n = 0;
        size_t i;
        if (v[0] == '\0') {
            fail(ps, line, "[%s] %s: bad number: expected a decimal integer", k->section, k->key);
            return GW_EINVAL;
        }
        for (i = 0; v[i] != '\0'; i++) {
            if (v[i] < '0' || v[i] > '9') {
                fail(ps, line, "[%s] %s: bad number: expected a decimal integer", k->section,
                     k->key);
                return GW_EINVAL;
            }
            if (n <= UINT32_MAX)
                n = n * 10 + (unsigned long long)(v[i] - '0');
        }
        if (n < k->min || n > k->max) {
            fail(ps, line, "[%s] %s: out of range: must be between %u and %u", k->section, k->key,
                 (unsigned)k->min, (unsigned)k->max);
            return GW_EINVAL;
        }
        *(uint32_t *)field = (uint32_t)n;
        return 0;
    }
    case T_SUITE: /* the names and values of enum gw_suite (crypto.h, a layer above) */
        if (strcmp(v, "aes") == 0)
            *(uint32_t *)field = GW_CONFIG_SUITE_AES;
        else if (strcmp(v, "sm") == 0)
            *(uint32_t *)field = GW_CONFIG_SUITE_SM;
        else {
            fail(ps, line, "[%s] %s: must be aes or sm", k->section, k->key);
            return GW_EINVAL;
        }
        return 0;
    case T_LEVEL:
        if (gw_log_level_parse(v, (enum gw_log_level *)field) != 0) {
            fail(ps, line, "[%s] %s: must be one of debug, info, warn, error, off", k->section,
                 k->key);
            return GW_EINVAL;
        }
        return 0;
    case T_HOSTPORT:
        if (gw_config_split_hostport(v, host, sizeof(host), &port) != 0) {
            fail(ps, line,
                 "[%s] %s: bad host:port: expected host:port or [ipv6]:port, port 1-65535",
                 k->section, k->key);
            return GW_EINVAL;
        }
        copy = gw_strdup(v);
        break;
    case T_STRING:
        if (v[0] == '\0') {
            fail(ps, line, "[%s] %s: must not be empty", k->section, k->key);
            return GW_EINVAL;
        }
        copy = gw_strdup(v);
        break;
    case T_PATH: {
        struct stat st;
        int fd;
        if (v[0] == '\0') {
            fail(ps, line, "[%s] %s: must not be empty", k->section, k->key);
            return GW_EINVAL;
        }
        copy = resolve_path(ps, v);
        if (copy == NULL)
            break;
        fd = open(copy, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0) {
            fail(ps, line, "[%s] %s: file cannot be read: %s", k->section, k->key, strerror(errno));
            gw_free(copy);
            return GW_EINVAL;
        }
        if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
            fail(ps, line, "[%s] %s: not a regular file", k->section, k->key);
            close(fd);
            gw_free(copy);
            return GW_EINVAL;
        }
        close(fd);
        break;
    }
    case T_OUTPATH:
        if (v[0] == '\0') {
            fail(ps, line, "[%s] %s: must not be empty", k->section, k->key);
            return GW_EINVAL;
        }
        copy = resolve_path(ps, v);
        if (copy != NULL && outpath_check(ps, line, k, copy) != 0) {
            gw_free(copy);
            return GW_EINVAL;
        }
        break;
    }
    if (copy == NULL) {
        fail(ps, line, "[%s] %s: out of memory", k->section, k->key);
        return GW_ENOMEM;
    }
    gw_free(*(char **)field);
    *(char **)field = copy;
    return 0;
}

/* Unquotes/uncomments the value text [s, e) into dst (capacity > e - s). */
static int parse_value(struct parse *ps, int line, const struct keydef *k, const char *s,
                       const char *e, char *dst)
{
    size_t n = 0;

    trim(&s, &e);
    if (s < e && *s == '"') {
        s++;
        while (s < e && *s != '"') {
            if (*s == '\\' && s + 1 < e && (s[1] == '"' || s[1] == '\\'))
                s++;
            dst[n++] = *s++;
        }
        if (s >= e) {
            fail(ps, line, "[%s] %s: unterminated quoted value", k->section, k->key);
            return GW_EINVAL;
        }
        s++; /* closing quote */
        while (s < e && is_ws(*s))
            s++;
        if (s < e && *s != '#' && *s != ';') {
            fail(ps, line, "[%s] %s: text after the closing quote", k->section, k->key);
            return GW_EINVAL;
        }
    } else {
        /* an unquoted value ends at a '#' or ';' that follows a blank */
        const char *p;
        for (p = s; p < e; p++) {
            if ((*p == '#' || *p == ';') && p > s && is_ws(p[-1])) {
                e = p;
                break;
            }
        }
        trim(&s, &e);
        memcpy(dst, s, (size_t)(e - s));
        n = (size_t)(e - s);
    }
    dst[n] = '\0';
    return 0;
}

static int parse_line(struct parse *ps, struct gw_config *c, int line, const char *s, const char *e,
                      int *section)
{
    char shown[NAME_SHOWN_MAX + 1];
    char shown_key[NAME_SHOWN_MAX + 1];
    char value[CONFIG_LINE_MAX + 1];
    const char *eq, *ks, *ke;
    size_t i;
    int k = -1, rc;

    trim(&s, &e);
    if (s == e || *s == '#' || *s == ';')
        return 0;
    if (memchr(s, '\0', (size_t)(e - s)) != NULL) {
        fail(ps, line, "NUL byte in line");
        return GW_EINVAL;
    }
    if (*s == '[') {
        const char *ns = s + 1, *ne = e - 1;
        if (e[-1] != ']' || e - s < 2) {
            fail(ps, line, "section header must look like [name]");
            return GW_EINVAL;
        }
        trim(&ns, &ne);
        for (i = 0; i < sizeof(sections) / sizeof(sections[0]); i++) {
            if (strlen(sections[i]) == (size_t)(ne - ns) &&
                memcmp(sections[i], ns, (size_t)(ne - ns)) == 0) {
                *section = (int)i;
                return 0;
            }
        }
        shown_name(shown, sizeof(shown), ns, (size_t)(ne - ns));
        fail(ps, line, "[%s]: unknown section", shown);
        return GW_EINVAL;
    }

    eq = memchr(s, '=', (size_t)(e - s));
    ks = s;
    ke = eq;
    if (ke == NULL) /* without '=', the key is the first word */
        for (ke = s; ke < e && !is_ws(*ke); ke++)
            ;
    trim(&ks, &ke);
    shown_name(shown_key, sizeof(shown_key), ks, (size_t)(ke - ks));
    if (*section < 0) {
        fail(ps, line, "%s: key outside of any [section]", shown_key);
        return GW_EINVAL;
    }
    if (eq == NULL) {
        fail(ps, line, "[%s] %s: missing '='", sections[*section], shown_key);
        return GW_EINVAL;
    }
    if (ke == ks) {
        fail(ps, line, "[%s]: missing key name before '='", sections[*section]);
        return GW_EINVAL;
    }
    for (i = 0; i < NKEYS; i++) {
        if (strcmp(keys[i].section, sections[*section]) == 0 &&
            strlen(keys[i].key) == (size_t)(ke - ks) &&
            memcmp(keys[i].key, ks, (size_t)(ke - ks)) == 0) {
            k = (int)i;
            break;
        }
    }
    if (k < 0) {
        fail(ps, line, "[%s] %s: unknown key", sections[*section], shown_key);
        return GW_EINVAL;
    }
    if (ps->seen[k] != 0) {
        fail(ps, line, "[%s] %s: duplicate key (first set on line %d)", keys[k].section,
             keys[k].key, ps->seen[k]);
        return GW_EINVAL;
    }
    ps->seen[k] = line;
    rc = parse_value(ps, line, &keys[k], eq + 1, e, value);
    if (rc != 0)
        return rc;
    return set_value(ps, c, &keys[k], line, value);
}

static int key_index(const char *section, const char *key)
{
    size_t i;

    for (i = 0; i < NKEYS; i++)
        if (strcmp(keys[i].section, section) == 0 && strcmp(keys[i].key, key) == 0)
            return (int)i;
    return -1;
}

/* [forward]: an endpoint needs its host:port form, the backend's CA and the gateway's own client
 * certificate and key (mTLS both ways), a lease longer than a call's deadline (a delivery in
 * flight is not claimed by a second gateway), and a backoff whose cap is not below its start. */
static int forward_check(struct parse *ps, const struct gw_config *c)
{
    static const char *const need[] = {"ca", "cert", "key"};
    int line = ps->seen[key_index("forward", "endpoint")];
    char host[256];
    uint16_t port;
    size_t i;

    if (gw_config_split_hostport(c->fwd_endpoint, host, sizeof(host), &port) != 0) {
        fail(ps, line, "[forward] endpoint: must be host:port");
        return GW_EINVAL;
    }
    for (i = 0; i < sizeof(need) / sizeof(need[0]); i++) {
        if (ps->seen[key_index("forward", need[i])] == 0) {
            fail(ps, line, "[forward] %s: required when endpoint is set (mTLS to the backend)",
                 need[i]);
            return GW_EINVAL;
        }
    }
    if ((uint64_t)c->fwd_lease_ms <
        (uint64_t)c->fwd_deadline_ms + GW_FWD_LEASE_MARGIN_MS + GW_FWD_CALL_MIN_MS) {
        fail(ps, ps->seen[key_index("forward", "lease_ms")],
             "[forward] lease_ms: must exceed deadline_ms by at least %d ms (a call ends %d ms "
             "before its batch's lease)",
             GW_FWD_LEASE_MARGIN_MS + GW_FWD_CALL_MIN_MS, GW_FWD_LEASE_MARGIN_MS);
        return GW_EINVAL;
    }
    if (c->fwd_fast && (int64_t)c->fwd_linger_ms >= gw_config_fwd_fast_wait_ms(c)) {
        fail(ps, ps->seen[key_index("forward", "linger_ms")],
             "[forward] linger_ms: must be below %lld ms with this lease_ms and "
             "deadline_ms (half of lease_ms, and lease_ms - deadline_ms - %d: how long a "
             "delivery may wait in memory)",
             (long long)gw_config_fwd_fast_wait_ms(c), GW_FWD_LEASE_MARGIN_MS);
        return GW_EINVAL;
    }
    if (c->fwd_backoff_max_ms < c->fwd_backoff_min_ms) {
        fail(ps, ps->seen[key_index("forward", "backoff_max_ms")],
             "[forward] backoff_max_ms: must not be below backoff_min_ms");
        return GW_EINVAL;
    }
    return 0;
}

int64_t gw_config_fwd_fast_wait_ms(const struct gw_config *c)
{
    int64_t half = (int64_t)c->fwd_lease_ms / 2;
    int64_t room = (int64_t)c->fwd_lease_ms - (int64_t)c->fwd_deadline_ms - GW_FWD_LEASE_MARGIN_MS;

    return room < 0 ? 0 : room < half ? room : half;
}

/* A connection must be able to hold one message of the largest size while it arrives and
 * while it is unpacked (rpc/call.c: at most 8x its size + 64 KiB), a certificate one
 * connection's worth, and the gateway one certificate's worth; likewise for response memory
 * (h2.c), a certificate between one connection's and the gateway's. */
static int request_memory_check(struct parse *ps, const struct gw_config *c)
{
    if ((uint64_t)c->request_memory_per_connection < 10u * (uint64_t)c->max_message_size) {
        fail(ps, ps->seen[key_index("server", "request_memory_per_connection")],
             "[server] request_memory_per_connection: must be at least 10 x max_message_size");
        return GW_EINVAL;
    }
    if (c->request_memory < c->request_memory_per_connection) {
        fail(ps, ps->seen[key_index("server", "request_memory")],
             "[server] request_memory: must be at least request_memory_per_connection");
        return GW_EINVAL;
    }
    if (c->request_memory_per_certificate < c->request_memory_per_connection ||
        c->request_memory_per_certificate > c->request_memory) {
        fail(ps, ps->seen[key_index("server", "request_memory_per_certificate")],
             "[server] request_memory_per_certificate: must be between "
             "request_memory_per_connection and request_memory");
        return GW_EINVAL;
    }
    if (c->response_memory < c->response_memory_per_connection) {
        fail(ps, ps->seen[key_index("server", "response_memory")],
             "[server] response_memory: must be at least response_memory_per_connection");
        return GW_EINVAL;
    }
    if (c->response_memory_per_certificate < c->response_memory_per_connection ||
        c->response_memory_per_certificate > c->response_memory) {
        fail(ps, ps->seen[key_index("server", "response_memory_per_certificate")],
             "[server] response_memory_per_certificate: must be between "
             "response_memory_per_connection and response_memory");
        return GW_EINVAL;
    }
    return 0;
}

bool gw_config_chain_id_ok(const char *s)
{
    size_t n = s != NULL ? strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                     "0123456789._:@-")
                         : 0;
    return n >= 1 && n <= 64 && s[n] == '\0';
}

static int cross_check(struct parse *ps, const struct gw_config *c)
{
    size_t i;

    for (i = 0; i < NKEYS; i++) {
        if (keys[i].required && ps->seen[i] == 0) {
            fail(ps, 0, "[%s] %s: required key is missing", keys[i].section, keys[i].key);
            return GW_EINVAL;
        }
    }
    if (c->insecure_listen != NULL) {
        int line = ps->seen[key_index("server", "insecure_listen")];
        char host[256];
        uint16_t port;
        if (!c->insecure_loopback_only) {
            fail(ps, line, "[server] insecure_listen: requires insecure_loopback_only = true");
            return GW_EINVAL;
        }
        if (gw_config_split_hostport(c->insecure_listen, host, sizeof(host), &port) != 0 ||
            !is_loopback_host(host)) {
            fail(ps, line,
                 "[server] insecure_listen: must be a loopback address (127.0.0.0/8, ::1 or "
                 "localhost)");
            return GW_EINVAL;
        }
    }
    if (c->max_preauth_connections >= c->max_connections) {
        fail(ps, ps->seen[key_index("server", "max_preauth_connections")],
             "[server] max_preauth_connections: must be below max_connections (slots are kept "
             "for authenticated connections)");
        return GW_EINVAL;
    }
    if (c->max_connections_per_certificate > c->max_connections) {
        fail(ps, ps->seen[key_index("server", "max_connections_per_certificate")],
             "[server] max_connections_per_certificate: must not be above max_connections");
        return GW_EINVAL;
    }
    if (c->metrics_listen != NULL) {
        int line = ps->seen[key_index("metrics", "listen")];
        char host[256];
        uint16_t port;
        if (gw_config_split_hostport(c->metrics_listen, host, sizeof(host), &port) != 0 ||
            (!c->metrics_tls && !is_loopback_host(host))) {
            fail(ps, line,
                 "[metrics] listen: must be a loopback address (127.0.0.0/8, ::1 or localhost): "
                 "the metrics are plain HTTP without authentication (tls = true serves them "
                 "over mTLS to system_admin certificates only, on any address)");
            return GW_EINVAL;
        }
    } else if (c->metrics_tls) {
        fail(ps, ps->seen[key_index("metrics", "tls")], "[metrics] tls: requires [metrics] listen");
        return GW_EINVAL;
    }
    /* the password hash needs N a power of two (gw_password_*): any other N fails every hash,
     * the unknown account's stand-in included, so a login would answer an unknown name at once */
    if ((c->scrypt_n & (c->scrypt_n - 1)) != 0) {
        fail(ps, ps->seen[key_index("auth", "scrypt_n")],
             "[auth] scrypt_n: must be a power of two");
        return GW_EINVAL;
    }
    /* the chain id as the database takes it (sql/008): checked here, not cut to fit at start */
    if (c->audit_chain != NULL &&
        (!gw_config_chain_id_ok(c->audit_chain) || strcmp(c->audit_chain, "ctl") == 0)) {
        fail(ps, ps->seen[key_index("audit", "chain")],
             "[audit] chain: must match ^[A-Za-z0-9._:@-]{1,64}$ and not be \"ctl\" (the CLI's)");
        return GW_EINVAL;
    }
    if (c->log_file != NULL && c->log_file[0] != '/') {
        fail(ps, ps->seen[key_index("log", "file")], "[log] file: must be an absolute path");
        return GW_EINVAL;
    }
    if (c->auth_worker_cgroup != NULL && c->auth_worker_cgroup[0] != '/') {
        fail(ps, ps->seen[key_index("auth", "worker_cgroup")],
             "[auth] worker_cgroup: must be an absolute path");
        return GW_EINVAL;
    }
    if (c->lawful_default_s > c->lawful_max_s) { /* named by the key set, lawful_default_s first */
        if (ps->seen[key_index("compliance", "lawful_default_s")] != 0)
            fail(ps, ps->seen[key_index("compliance", "lawful_default_s")],
                 "[compliance] lawful_default_s: must not be above lawful_max_s (an approval's "
                 "longest lifetime)");
        else
            fail(ps, ps->seen[key_index("compliance", "lawful_max_s")],
                 "[compliance] lawful_max_s: must not be below lawful_default_s (an approval's "
                 "default lifetime)");
        return GW_EINVAL;
    }
    if (c->fwd_endpoint != NULL && forward_check(ps, c) != 0)
        return GW_EINVAL;
    if (request_memory_check(ps, c) != 0)
        return GW_EINVAL;
    if (c->db_conninfo != NULL) {
        int line = ps->seen[key_index("database", "conninfo")];
        enum gw_conninfo_verdict v = gw_conninfo_check(c->db_conninfo);

        if (v == GW_CONNINFO_PASSWORD) {
            fail(ps, line,
                 "[database] conninfo: must not contain a password (password, sslpassword): use "
                 "a passfile (passfile=, PGPASSFILE or ~/.pgpass) or an unencrypted client key");
            return GW_EINVAL;
        }
        if (v != GW_CONNINFO_OK) {
            fail(ps, line, "[database] conninfo: not a valid libpq connection string or URI");
            return GW_EINVAL;
        }
    }
    return 0;
}

/* Refuses a line over CONFIG_LINE_MAX, naming its key when one can be seen at its start. */
static void too_long(struct parse *ps, int line, int section, const char *s)
{
    char shown[NAME_SHOWN_MAX + 1];
    const char *e = s + NAME_SHOWN_MAX, *eq;

    while (s < e && is_ws(*s))
        s++;
    eq = memchr(s, '=', (size_t)(e - s));
    if (section >= 0 && *s != '[' && *s != '#' && *s != ';' && eq != NULL && eq > s) {
        e = eq;
        trim(&s, &e);
        shown_name(shown, sizeof(shown), s, (size_t)(e - s));
        fail(ps, line, "[%s] %s: line too long (over %d bytes)", sections[section], shown,
             CONFIG_LINE_MAX);
        return;
    }
    fail(ps, line, "line too long (over %d bytes)", CONFIG_LINE_MAX);
}

/* Reads the whole file (at most CONFIG_FILE_MAX bytes). */
int gw_config_load(const char *path, struct gw_config *out, char *errbuf, size_t errlen)
{
    struct parse ps;
    struct gw_config c;
    char *buf = NULL;
    const char *p, *end, *slash;
    size_t len = 0;
    int line = 0, section = -1, rc;

    memset(&ps, 0, sizeof(ps));
    set_defaults(&c);
    ps.path = path != NULL ? path : "(null)";
    ps.errbuf = errbuf;
    ps.errlen = errlen;
    if (errbuf != NULL && errlen > 0)
        errbuf[0] = '\0';
    if (path == NULL || out == NULL) {
        fail(&ps, 0, "no configuration file given");
        if (out != NULL)
            memset(out, 0, sizeof(*out));
        return GW_EINVAL;
    }
    slash = strrchr(path, '/');
    if (slash != NULL) {
        ps.dir = gw_strndup(path, slash == path ? 1 : (size_t)(slash - path));
        if (ps.dir == NULL) {
            fail(&ps, 0, "out of memory");
            memset(out, 0, sizeof(*out));
            return GW_ENOMEM;
        }
    }

    rc = gw_file_read(ps.path, CONFIG_FILE_MAX, false, &buf, &len, errbuf,
                      errbuf != NULL ? errlen : 0);
    if (rc != 0)
        goto out;
    p = buf;
    end = buf + len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl != NULL ? nl : end;
        line++;
        if (le > p && le[-1] == '\r')
            le--;
        if (le - p > CONFIG_LINE_MAX) {
            too_long(&ps, line, section, p);
            rc = GW_EINVAL;
            goto out;
        }
        rc = parse_line(&ps, &c, line, p, le, &section);
        if (rc != 0)
            goto out;
        p = nl != NULL ? nl + 1 : end;
    }
    /* by default an eighth of the gateway's request memory, and at least one connection's: one
     * certificate cannot hold it all, and one of its connections can hold its own budget */
    if (ps.seen[key_index("server", "request_memory_per_certificate")] == 0) {
        c.request_memory_per_certificate = c.request_memory / 8u;
        if (c.request_memory_per_certificate < c.request_memory_per_connection)
            c.request_memory_per_certificate = c.request_memory_per_connection;
    }
    /* likewise for response memory: one certificate's streams that never read cannot hold the
     * gateway's, and one of its connections can fill its own budget */
    if (ps.seen[key_index("server", "response_memory_per_certificate")] == 0) {
        c.response_memory_per_certificate = c.response_memory / 8u;
        if (c.response_memory_per_certificate < c.response_memory_per_connection)
            c.response_memory_per_certificate = c.response_memory_per_connection;
    }
    rc = cross_check(&ps, &c);
out:
    if (buf != NULL)
        gw_free_wipe(buf, len);
    gw_free(ps.dir);
    if (rc != 0) {
        gw_config_clear(&c);
        memset(out, 0, sizeof(*out));
        return rc;
    }
    *out = c;
    return 0;
}
