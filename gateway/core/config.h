/* config.h: the daemon's configuration, parsed from an INI file into one struct, validated,
 * then handed to modules as a const pointer. Secrets are never values in the file, only paths. */
#ifndef GW_CONFIG_H
#define GW_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "log.h"

/* The values of [crypto] suite: those of enum gw_suite (crypto.h, a layer above core). */
#define GW_CONFIG_SUITE_AES 1
#define GW_CONFIG_SUITE_SM 2

/* The forwarder ends a batch's every call a margin before the batch's lease, and sends no call
 * shorter than a minimum (forward.c): [forward] lease_ms must leave room for both beyond
 * deadline_ms, or nothing would ever be sent. */
#define GW_FWD_LEASE_MARGIN_MS 1000
#define GW_FWD_CALL_MIN_MS 100

/* Live sessions (bearer tokens) one account keeps: a login past it ends the account's oldest, in
 * its own transaction (Art. 35, 38; docs/threat-model.md). Not a config key: people log in from
 * a handful of places, and each session is a row that a token thief can use until it expires. */
#define GW_AUTH_SESSIONS_MAX 16

/* Every field is a key of config.c's table (keys[]), which also says whether a SIGHUP applies
 * it or it needs a restart: a new field needs its row there, or a reload would not see it change
 * (config.c's _Static_assert on this struct's size is there to stop you). */
struct gw_config {
    /* [server] */
    char *listen;                    /* "host:port" of the mTLS listener (required) */
    bool insecure_loopback_only;     /* default false; true allows insecure_listen */
    char *insecure_listen;           /* "host:port", must be a loopback address; NULL = none */
    uint32_t max_connections;        /* default 1024 */
    uint32_t max_concurrent_streams; /* per connection, default 100 */
    uint32_t max_header_list_size;   /* bytes, default 16384 */
    uint32_t max_message_size;       /* bytes of one gRPC message, default 4 MiB */
    uint32_t handshake_timeout_ms;   /* TLS handshake + HTTP/2 preface, default 10000 */
    /* Pre-authentication limits (before a client certificate is verified), issue 10 finding 4 */
    uint32_t preauth_timeout_ms;      /* TLS handshake done within, default 3000 */
    uint32_t max_preauth_connections; /* unauthenticated at once, all addresses; default 0 =
                                       * a quarter of max_connections (the rest is kept for
                                       * authenticated ones); else < max_connections */
    uint32_t max_preauth_per_address; /* unauthenticated at once from one address, default 32 */
    uint32_t accept_rate_per_address; /* connections accepted per second from one address
                                       * (burst twice that), default 64 */
    uint32_t max_connections_per_certificate; /* authenticated connections of one client
                                               * certificate at once; default 0 = an eighth of
                                               * max_connections (at least 1) */
    uint32_t request_memory_per_connection;   /* bytes of request memory in flight (bodies being
                                               * received, unpacked messages) on one connection,
                                               * default 64 MiB, at least 10 x max_message_size */
    uint32_t request_memory; /* the same for the whole gateway, default 512 MiB, at least
                              * request_memory_per_connection */
    uint32_t request_memory_per_certificate; /* the same for all connections of one client
                                              * certificate (certlimit.h), default an eighth of
                                              * request_memory and at least
                                              * request_memory_per_connection; between the two */
    uint32_t response_memory_per_connection; /* response bytes queued on one connection's
                                              * streams (h2.c): a streaming handler waits while
                                              * they are at or over it, default 8 MiB */
    uint32_t response_memory; /* the same for the whole gateway, default 256 MiB, at least
                               * response_memory_per_connection */
    uint32_t response_memory_per_certificate; /* the same for all connections of one client
                                               * certificate (certlimit.h), default an eighth of
                                               * response_memory and at least
                                               * response_memory_per_connection; between the two */
    uint32_t idle_timeout_ms;                 /* no stream open and no bytes, default 300000 */
    uint32_t stream_write_timeout_ms; /* a response stream whose client takes no bytes for this
                                       * long is reset, default 30000 */
    uint32_t drain_timeout_ms;        /* SIGTERM: longest wait for in-flight calls, default 10000 */
    uint32_t
        max_deadline_ms; /* cap on a client's grpc-timeout and default deadline, default 60000 */
    uint32_t segment_refresh_ms; /* segment cache: at most one reload per interval, default 5000 */
    uint32_t incident_queue_max; /* incident rows queued before coalescing, default 4096 */
    /* the scraping throttle's table (policy/throttle.h), read at start: principals tracked at
     * once, default 65536 (about 9 MiB), and keys over all of them, default 1048576 (about
     * 50 MiB when all are held) */
    uint32_t lookup_throttle_principals;
    uint32_t lookup_throttle_keys;

    /* [tls] */
    char *tls_cert;         /* server certificate chain (PEM), required */
    char *tls_key;          /* server private key (PEM), required */
    char *tls_client_ca;    /* CA bundle that client certificates must chain to, required */
    char *tls_crl;          /* certificate revocation list (PEM), optional */
    uint32_t crl_reload_ms; /* the CRL is read again this often (and on SIGHUP), default 300000;
                               0 = on SIGHUP only */
    uint32_t crl_warn_s;    /* warn (log, incident) when the CRL's nextUpdate is this close,
                               default 172800 (2 days) */

    /* [database] */
    char *db_conninfo;          /* libpq conninfo or URI; must not contain a password */
    uint32_t db_pool_size;      /* connections, default 4 */
    uint32_t db_pipeline_depth; /* requests in flight per connection, default 8 */
    uint32_t db_queue_max;      /* requests waiting for a connection, default 4096 */
    /* callers' requests queued or in flight per certificate (db.h's shares); 0, the default:
     * db_pool_size x db_pipeline_depth */
    uint32_t db_queue_share;
    uint32_t db_connect_timeout_ms; /* default 5000 */
    uint32_t db_reconnect_max_ms;   /* cap of the reconnect backoff, default 5000 */

    /* [keys] */
    char *keyring;           /* path of the keyring file (mode 0600), required */
    uint32_t kek_wrap_limit; /* data-key wraps leased under one KEK version at most (its
                              * random-nonce bound, sql/050), 1 .. 2^32 - 1, default 2^31; each
                              * lease is held to the lower of it and the version's row */

    /* [crypto] */
    uint32_t crypto_suite; /* suite = aes | sm: the cipher suite new records, tokens and audit
                            * checkpoints use; a GW_CONFIG_SUITE_* value (= enum gw_suite),
                            * default aes. The keyring must hold the suite's keys. */

    /* [auth] accounts, passwords and tokens (Art. 35, 38) */
    uint32_t token_ttl_s;             /* bearer-token lifetime, default 28800 (8 h) */
    uint32_t password_max_age_days;   /* a password older than this must be changed, default 90;
                                       * 0 = no expiry */
    uint32_t lockout_failures;        /* consecutive failed logins that lock, default 5 */
    uint32_t lockout_minutes;         /* how long the lock lasts, default 15 */
    uint32_t inactive_disable_days;   /* accounts unused this long are disabled, default 90;
                                       * 0 = never */
    uint32_t inactive_check_ms;       /* how often the gateway looks for them (and deletes
                                       * expired sessions, even with inactive_disable_days 0),
                                       * default 3600000 */
    uint32_t scrypt_n;                /* scrypt cost N for new password hashes (power of two),
                                       * default 32768 (r 8, p 1) */
    uint32_t auth_workers;            /* threads that run password hashing, default 2 */
    char *auth_worker_cgroup;         /* a cgroup directory the hashing process joins, marked
                                       * idle (workers.h); NULL = none */
    bool auth_worker_filter_required; /* default true: a hashing process whose system-call
                                       * filter the kernel refuses ends, and hashing is off
                                       * (workers.h); false: it runs unfiltered, logged */
    uint32_t principal_cache_ms;      /* how long a certificate's registration is cached; a
                                       * disabled certificate is refused at most this much later,
                                       * default 1000; 0 = look up on every call */

    /* [policy] */
    char *policy_file; /* the policy file (field views, levels, quotas); NULL = built-in */

    /* [audit] the audit chain (Art. 33) */
    char *audit_chain;         /* this instance's chain id, ^[A-Za-z0-9._:@-]{1,64}$; default
                                * "gw-<hostname>-<listen port>" (each instance needs its own) */
    uint32_t checkpoint_every; /* records between signed checkpoints, default 1000 */
    uint32_t checkpoint_ms;    /* a record is covered by a checkpoint within, default 10000 */
    uint32_t refusal_window_s; /* a refused call's kind (Admin, Reveal over quota, Search over
                                * the bulk threshold) is recorded on its own 8 times per window,
                                * the rest counted into one record, default 60 */
    uint32_t audit_queue_max;  /* audited actions waiting for the writer; more are refused,
                                * default 4096 */
    char *audit_spool;         /* the file where what the database has not taken at shutdown
                                * (kept audit entries, incidents, counted refusals) waits for the
                                * next start; NULL = none: those are lost (logged as counts) */
    /* [compliance] bulk operations, lawful access, retention (Art. 15, 16, 26, 37) */
    uint32_t bulk_threshold;   /* more records than this only through Compliance bulk, default 20 */
    uint32_t approval_ttl_s;   /* an approval (bulk) must be used within, default 86400 */
    uint32_t lawful_default_s; /* a lawful-access approval lasts by default, default 604800 */
    uint32_t lawful_max_s;     /* ... and at most (valid_until), default 31536000 (365 days) */
    uint32_t retention_days;   /* waybills older than this are destroyed, default 1095; 0 = keep */
    uint32_t retention_sweep_ms; /* how often the sweep runs, default 3600000 */
    uint32_t retention_batch;    /* records destroyed per transaction, default 500 */
    uint32_t report_timeout_ms;  /* Compliance.Report: each of its counting statements is
                                  * cancelled after this long (statement_timeout), default 30000 */
    /* [metrics] Prometheus text metrics over HTTP/1.1 (GET /metrics) */
    char *metrics_listen; /* "host:port", a loopback address unless metrics_tls; NULL = none */
    bool metrics_tls;     /* default false; true: HTTPS with [tls]'s files, answering only a
                           * registered system_admin client certificate (any address allowed) */
    /* [forward] the carrier backend (the outbox forwarder); no endpoint = forwarding off (the
     * outbox still fills, so that nothing accepted is lost while it is off) */
    char *fwd_endpoint;          /* "host:port" of CarrierBackend; NULL = do not forward */
    char *fwd_server_name;       /* name the backend's certificate must carry (SAN); default host */
    char *fwd_ca;                /* CA bundle the backend's certificate must chain to */
    char *fwd_cert;              /* the gateway's client certificate for the backend (PEM) */
    char *fwd_key;               /* its private key (PEM) */
    char *fwd_crl;               /* CRL (PEM) the backend's certificate is checked against, or
                                  * NULL; read again with [tls] crl_reload_ms and on SIGHUP */
    uint32_t fwd_batch;          /* deliveries per Deliver call, default 64 */
    uint32_t fwd_inflight;       /* Deliver calls in flight, default 4 */
    uint32_t fwd_deadline_ms;    /* deadline of one Deliver call, default 5000 */
    uint32_t fwd_lease_ms;       /* a claimed delivery is another gateway's again after, default
                                    30000 (must exceed fwd_deadline_ms) */
    uint32_t fwd_poll_ms;        /* polling fallback when no NOTIFY arrives, default 1000 */
    uint32_t fwd_backoff_min_ms; /* first retry delay, default 200 */
    uint32_t fwd_backoff_max_ms; /* cap of the exponential backoff (with jitter), default 30000 */
    bool fwd_fast;               /* default true: a waybill this gateway accepted is sent at once
                                    from memory under a lease its insert takes (no claim) */
    uint32_t fwd_fast_max;       /* deliveries the fast path holds in memory, default 4096 */
    uint32_t fwd_linger_ms;      /* the fast path holds a batch that is not full this long for
                                    more, default 10; 0: it goes as soon as a call slot is free */
    uint32_t fwd_breaker_after;  /* permanent refusals in a row, no acceptance between, after
                                    which refused deliveries go back instead of being parked
                                    (forward_int.h: the breaker), default 32; 0: off */
    /* [log] */
    enum gw_log_level log_level; /* default info */
    char *log_file; /* [log] file: append the log lines here instead of stderr (absolute path;
                       reopened on SIGUSR1, for rotation); NULL = stderr */
};

/* Parses the INI file at path into *out (fields not in the file get their defaults).
 * On any problem returns GW_EINVAL (or GW_EIO / GW_ENOMEM) and writes one line to errbuf
 * naming the file, the line and the key, e.g.
 *   "waygated.conf:12: [server] max_connections: must be between 1 and 1000000"
 * On failure *out holds nothing that needs freeing. */
int gw_config_load(const char *path, struct gw_config *out, char *errbuf,
                   size_t errlen) GW_MUST_CHECK;

/* Frees what gw_config_load allocated; safe on a zeroed struct. */
void gw_config_clear(struct gw_config *cfg);

/* An audit chain id as the database takes it (sql/008): ^[A-Za-z0-9._:@-]{1,64}$; NULL is not. */
bool gw_config_chain_id_ok(const char *s);

/* Called with the section and key of a key that differs, e.g. ("database", "pool_size"). */
typedef void (*gw_config_key_cb)(void *arg, const char *section, const char *key);

/* A reload (SIGHUP) applies [tls] cert, key, client_ca and crl, [keys] keyring and [policy] file;
 * nothing reads the other keys after the start. Calls cb (if not NULL) for each of those others
 * whose value in next differs from running, in the file's key order, and returns how many did: a
 * reload that would ignore them is refused. */
size_t gw_config_restart_keys(const struct gw_config *running, const struct gw_config *next,
                              gw_config_key_cb cb, void *arg);

/* The values of the keys a reload applies (above) moved from next into running, and running's
 * old ones into next, which the caller then clears with gw_config_clear. The other keys are left
 * as they are in both. */
void gw_config_take_reloaded(struct gw_config *running, struct gw_config *next);

/* How long a delivery of the fast path may wait in the forwarder's memory before it is left to
 * its lease (forward.c): half of [forward] lease_ms, and never so long that its call (up to
 * deadline_ms) could outlive the lease its insert took (GW_FWD_LEASE_MARGIN_MS for the time
 * between the insert's clock_timestamp() and the handover). linger_ms must stay below it. */
int64_t gw_config_fwd_fast_wait_ms(const struct gw_config *c);

/* Splits "host:port" or "[v6]:port" into host and port; returns 0 or GW_EINVAL. */
int gw_config_split_hostport(const char *s, char *host, size_t hostlen,
                             uint16_t *port) GW_MUST_CHECK;

#endif
