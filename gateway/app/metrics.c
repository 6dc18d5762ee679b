/* metrics.c: Prometheus text metrics (GET /metrics, HTTP/1.1, libevent's evhttp) on a listener of
 * its own. Two ways to serve them ([metrics] tls):
 *  - plain HTTP on a loopback address only (the default; config.c refuses any other), since it
 *    has no authentication;
 *  - HTTPS with [tls]'s certificate, key, client CA and CRL (tls.h's gw_tls_http_new), on any
 *    address: a scrape is answered only over a verified client certificate that is registered,
 *    enabled and of role system_admin (looked up in the principal table on each scrape; while the
 *    database is unavailable, the certificate of the last answer is still admitted if that
 *    answer admitted it: every answer replaces it, so one disabled since is not). Any other
 *    scrape gets 403 and a warning naming the peer and the reason, never the principal or its
 *    role (Art. 16: a lawful_access one), the warnings rate-limited (REFUSAL_LOG_BURST, then
 *    REFUSAL_LOG_RATE a second, the next line counting those left out); no certificate, or one
 *    that does not verify (another CA, revoked), fails the handshake.
 * Each scrape reads the modules' own counters (pull: nothing is counted here): calls by method
 * and status with their latency, connections, the database pool, group commits, scans, the audit
 * chain, incidents by kind, the retention sweep, the outbox and the forwarder, the process's
 * resident memory, and the seconds until the server certificate and the CRL expire. The outbox's
 * depth needs a query: it is sampled at most once per SAMPLE_FRESH_MS, by the scrape that finds
 * the sample older, which waits for it at most SAMPLE_WAIT_MS (then the older sample is served,
 * with its age); the loop never blocks on it. Nothing here is PII: method paths, status names,
 * incident kinds, principal names and numbers. Bounded: requests other than GET are refused,
 * headers and bodies are capped, a connection serves one request (every answer closes it), a
 * connection idle for METRICS_TIMEOUT_S is closed and one not answered DEADLINE_S after its
 * accept too, however it trickles (deadline_cb: evhttp's timeout restarts at every byte), or at
 * once when its TLS peer sends more than KEY_UPDATES_MAX KeyUpdates (key_update_cb), scrapes
 * waiting at once are at most MAX_WAITING (more get 503), and connections open at once at most
 * MAX_CONNECTIONS: at the cap the listener stops accepting (further clients wait in the kernel's
 * backlog, holding none of the process's descriptors) until one closes. Per client address
 * (peerlimit.h: IPv4 by address, IPv6 by /64) at most MAX_PER_ADDRESS connections are open and
 * RATE_PER_ADDRESS accepted a second (burst twice that): one over either is closed as it is
 * accepted (admit(), from track_cb, before any byte of it is read), counted by the limit, so one
 * host cannot hold the MAX_CONNECTIONS slots, nor keep the backlog full of connections that are
 * accepted before a scrape's; and a connection that has sent no request byte FIRST_BYTE_S after
 * its accept (with TLS: no decrypted byte, so the handshake counts in it) is closed then
 * (first_byte_cb, deadline_cb), not DEADLINE_S after. An accept that fails for
 * want of descriptors pauses the listener (acceptpause.h) instead of retrying every loop turn.
 * libevent 2.1's evhttp has no cap of its own: each connection's bufferevent is made here
 * (evhttp_set_bevcb) and counted, and its close is seen through evhttp_connection_set_closecb,
 * registered from the loop once evhttp has made the connection (track_cb). */
#include "metrics.h"

#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/listener.h>

#include "acceptpause.h"
#include "accounts.h"
#include "alloc.h"
#include "app.h"
#include "audit.h"
#include "call.h"
#include "clock.h"
#include "config.h"
#include "crypto.h"
#include "db.h"
#include "forward.h"
#include "incident.h"
#include "log.h"
#include "outbox.h"
#include "peer.h"
#include "peerlimit.h"
#include "prom.h"
#include "ratelimit.h"
#include "refusals.h"
#include "retention.h"
#include "rpc.h"
#include "server.h"
#include "store.h"
#include "store_scan.h"
#include "throttle.h"
#include "tls.h"
#include "workers.h"
#include "wraplease.h"

#define METRICS_TIMEOUT_S 10
#define METRICS_MAX_HEADERS 8192
#define SAMPLE_FRESH_MS 1000 /* an outbox sample younger than this is served as it is */
#define SAMPLE_WAIT_MS 2000  /* a scrape waits this long at most for a fresh sample */
#define MAX_WAITING 64       /* scrapes waiting (role lookup or sample) at once */
#define MAX_CONNECTIONS 16   /* connections open at once */
#define DEADLINE_S 10        /* a connection's life, from accept to its one answer */
#define FIRST_BYTE_S 2       /* from accept to the request's first byte (TLS: handshake in it) */
#define MAX_PER_ADDRESS 4    /* connections open at once from one address (IPv6: one /64) */
#define RATE_PER_ADDRESS 64  /* connections accepted a second from one address (burst 128) */
#define PEER_TABLE_MAX 1024  /* addresses the per-address table holds at once */
#define REFUSAL_LOG_BURST 10 /* refusal warnings written at once, */
#define REFUSAL_LOG_RATE 1   /* then this many a second */
#define KEY_UPDATES_MAX 32   /* TLS KeyUpdates a connection may send in its life (DEADLINE_S) */
#define ADMIN_ROLE "system_admin"

/* One connection: counted from its bufferevent (bev_cb), closed at its deadline. */
struct mconn {
    struct gw_metrics *m;
    struct bufferevent *bev;              /* a reference held until track_cb */
    struct evhttp_connection *evcon;      /* evhttp's, once track_cb saw it */
    struct event *deadline;               /* FIRST_BYTE_S, then DEADLINE_S after accept; at once for
                                           * a flood */
    uint64_t accepted_ms;                 /* gw_clock_ms() at accept */
    struct evbuffer *input;               /* the bufferevent's input, watched for the first byte */
    struct evbuffer_cb_entry *first_byte; /* first_byte_cb, until the first byte or unwatch() */
    struct gw_peerlimit_slot *slot;       /* its address's slot (admit()), released at its close */
    struct ssl_st *ssl;        /* its TLS session ([metrics] tls), watched until unwatch() */
    struct gw_tls_watch watch; /* the peer's KeyUpdates, told to key_update_cb */
    uint32_t key_updates;      /* ... read by OpenSSL (past KEY_UPDATES_MAX: a flood) */
    struct mconn *prev, *next; /* gw_metrics.conns */
};

/* One scrape being answered: its role lookup ([metrics] tls), then the outbox sample. */
struct scrape {
    struct gw_metrics *m;
    struct evhttp_request *req;
    struct gw_acct_req *lookup; /* the certificate's registration, in flight */
    uint8_t fpr[GW_PEER_FPR_LEN];
    char peer[64];
    bool waits_sample;
    struct scrape *prev, *next;
};

struct gw_metrics {
    struct gw_metrics_sources src;
    struct evhttp *http;
    struct evhttp_bound_socket *sock;
    struct gw_acceptpause *pause;         /* the listener's answer to EMFILE and its kin */
    size_t nconns;                        /* connections open (counted from their bufferevent) */
    struct mconn *conns;                  /* every one counted, until its close */
    struct mconn *fresh[MAX_CONNECTIONS]; /* made, their close not yet watched */
    size_t nfresh;
    uint64_t deadline_closed;   /* connections closed at their deadline, unanswered */
    uint64_t key_update_closed; /* connections closed for a TLS KeyUpdate flood */
    uint64_t first_byte_closed; /* connections closed FIRST_BYTE_S after accept, silent */
    uint64_t refused[GW_PEERLIMIT_FULL + 1]; /* closed at accept, by admit()'s verdict */
    struct gw_peerlimit *pl;                 /* connections and accepts per address */
    struct gw_lines refusal_lines;           /* the budget of refusal warnings */
    struct event *track_ev;                  /* runs track_cb */
    bool capped;                             /* the listener is disabled at MAX_CONNECTIONS */
    bool closing;                            /* gw_metrics_free: the listener is going */
    struct gw_tls *tls;     /* [metrics] tls: the listener's context; NULL: plain loopback */
    struct scrape *waiting; /* scrapes not answered yet */
    size_t nwaiting;
    struct gw_outbox_req *sampling; /* the outbox depth query in flight */
    struct event *sample_wait;      /* SAMPLE_WAIT_MS after the query started */
    bool sampled;                   /* a sample was taken */
    struct gw_outbox_depth outbox;  /* the last sample */
    uint64_t sampled_ms;            /* when (gw_clock_ms) */
    uint64_t sample_failures;
    bool admin_known; /* the last certificate found registered as system_admin */
    uint8_t admin_fpr[GW_PEER_FPR_LEN];
};

static void write_calls(struct evbuffer *b, const struct gw_rpc *rpc)
{
    size_t n = gw_rpc_stats_n(rpc);

    gw_prom_family(b, "waygate_grpc_calls_total", "counter",
                   "gRPC calls finished, by method and status (a reset before a status: "
                   "CANCELLED); calls of lawful access (its Compliance methods, a lawful_access "
                   "account's Get) are in no series");
    for (size_t i = 0; i < n; i++) {
        const struct gw_rpc_method_stats *st = gw_rpc_stats(rpc, i);
        for (size_t c = 0; c < GW_GRPC_NSTATUS; c++)
            if (st->by_status[c] > 0)
                gw_prom_sample(b, "waygate_grpc_calls_total", "method", gw_rpc_stats_path(rpc, i),
                               "code", gw_grpc_status_name((enum gw_grpc_status)c),
                               (double)st->by_status[c]);
    }
    gw_prom_family(b, "waygate_grpc_call_seconds", "histogram",
                   "gRPC call latency, from the request headers to the status, by method "
                   "(lawful access in no series)");
    for (size_t i = 0; i < n; i++) {
        const struct gw_rpc_method_stats *st = gw_rpc_stats(rpc, i);
        if (st->latency.count > 0)
            gw_prom_hist_write(b, "waygate_grpc_call_seconds", "method", gw_rpc_stats_path(rpc, i),
                               &st->latency);
    }
}

static void gauge(struct evbuffer *b, const char *name, const char *help, double v)
{
    gw_prom_family(b, name, "gauge", help);
    gw_prom_sample(b, name, NULL, NULL, NULL, NULL, v);
}

/* The request-memory budgets (issue 10, finding 2): the gateway's use, high-water mark and
 * limit; the most one client certificate holds (certlimit.h), its high-water mark and limit. */
static void write_request_memory(struct evbuffer *b, const struct gw_rpc *rpc,
                                 const struct gw_server *server)
{
    size_t used, peak, limit;

    gw_server_request_memory_per_certificate(server, &used, &peak, &limit);
    gauge(b, "waygate_request_memory_certificate_max_bytes",
          "the most request memory in flight one client certificate's connections hold now",
          (double)used);
    gauge(b, "waygate_request_memory_certificate_peak_bytes",
          "the most request memory in flight one client certificate has held since start",
          (double)peak);
    gauge(b, "waygate_request_memory_certificate_limit_bytes",
          "each client certificate's budget of request memory", (double)limit);
    gw_rpc_request_memory(rpc, &used, &peak, &limit);
    gauge(b, "waygate_request_memory_bytes",
          "request memory in flight now (bodies arriving, unpacked requests)", (double)used);
    gauge(b, "waygate_request_memory_peak_bytes", "the most request memory in flight since start",
          (double)peak);
    gauge(b, "waygate_request_memory_limit_bytes", "the gateway's budget of request memory",
          (double)limit);
}

/* The response-memory budgets (h2.h, struct gw_h2_pool): the gateway's queued now, high-water
 * mark and limit; the most one client certificate has queued (certlimit.h), its high-water mark
 * and limit. */
static void write_response_memory(struct evbuffer *b, const struct gw_server *server)
{
    size_t used, peak, limit;

    gw_server_response_memory_per_certificate(server, &used, &peak, &limit);
    gauge(b, "waygate_response_memory_certificate_max_bytes",
          "the most response bytes one client certificate's connections have queued now",
          (double)used);
    gauge(b, "waygate_response_memory_certificate_peak_bytes",
          "the most response bytes one client certificate has had queued since start",
          (double)peak);
    gauge(b, "waygate_response_memory_certificate_limit_bytes",
          "each client certificate's budget of response memory", (double)limit);
    gw_server_response_memory(server, &used, &peak, &limit);
    gauge(b, "waygate_response_memory_bytes",
          "response bytes queued on streams now, waiting for clients' flow-control windows",
          (double)used);
    gauge(b, "waygate_response_memory_peak_bytes", "the most response bytes queued since start",
          (double)peak);
    gauge(b, "waygate_response_memory_limit_bytes", "the gateway's budget of response memory",
          (double)limit);
}

static void counter(struct evbuffer *b, const char *name, const char *help, double v)
{
    gw_prom_family(b, name, "counter", help);
    gw_prom_sample(b, name, NULL, NULL, NULL, NULL, v);
}

static void write_store(struct evbuffer *b, const struct gw_app *app)
{
    struct gw_store_stats st;
    struct gw_store_scan_stats sc;
    char le[16];
    uint64_t cum = 0;

    gw_store_stats(app->store, &st);
    counter(b, "waygate_waybills_accepted_total", "waybills stored by Submit and SubmitBatch",
            (double)st.submits);
    counter(b, "waygate_group_commits_total", "waybill insert transactions (group commits)",
            (double)st.groups);
    gw_prom_family(b, "waygate_group_commit_waybills", "histogram", "waybills per group commit");
    for (size_t i = 0; i < GW_STORE_GROUP_BUCKETS; i++) {
        cum += st.group_items[i];
        if (i + 1 < GW_STORE_GROUP_BUCKETS) {
            snprintf(le, sizeof(le), "%u", 1u << i);
            gw_prom_sample(b, "waygate_group_commit_waybills_bucket", "le", le, NULL, NULL,
                           (double)cum);
        }
    }
    gw_prom_sample(b, "waygate_group_commit_waybills_bucket", "le", "+Inf", NULL, NULL,
                   (double)cum);
    gw_prom_sample(b, "waygate_group_commit_waybills_count", NULL, NULL, NULL, NULL, (double)cum);
    gw_prom_sample(b, "waygate_group_commit_waybills_sum", NULL, NULL, NULL, NULL,
                   (double)st.submits);
    gauge(b, "waygate_submits_queued", "submits waiting for a group now", (double)st.queued);
    gauge(b, "waygate_group_commits_inflight", "group commits in flight now",
          (double)st.groups_inflight);
    counter(b, "waygate_waybill_rows_read_total",
            "waybill rows returned to Get, Reveal and Search under the caller's scope",
            (double)st.rows_read);
    counter(b, "waygate_waybill_records_opened_total",
            "stored waybills decrypted and authenticated for a caller",
            (double)app->records_opened);
    counter(b, "waygate_certificate_lookups_total",
            "database lookups of a client certificate's principal (cache misses)",
            (double)app->cert_lookups);
    counter(b, "waygate_certificate_lookups_shared_total",
            "calls that missed the certificate cache and waited for a lookup already in flight",
            (double)app->cert_lookups_shared);
    gw_store_scan_stats(app->store, &sc);
    counter(b, "waygate_scan_groups_total", "scan-event insert transactions", (double)sc.groups);
    gauge(b, "waygate_scans_queued", "scan events waiting for a group now", (double)sc.queued);
}

/* The scraping throttle's table (throttle.h): how full it is, and the lookups it refused for
 * want of room (not for a principal's limit). */
static void write_throttle(struct evbuffer *b, const struct gw_app *app)
{
    struct gw_throttle_stats st;

    if (app->throttle == NULL)
        return;
    gw_throttle_stats(app->throttle, &st);
    gauge(b, "waygate_lookup_throttle_principals",
          "principals the lookup throttle tracks now (each until idle a whole lookup window)",
          (double)st.principals);
    gauge(b, "waygate_lookup_throttle_principals_limit",
          "principals the lookup throttle can track ([server] lookup_throttle_principals)",
          (double)st.max_principals);
    gauge(b, "waygate_lookup_throttle_keys", "distinct lookups the throttle holds now",
          (double)st.keys);
    gauge(b, "waygate_lookup_throttle_keys_limit",
          "distinct lookups the throttle can hold ([server] lookup_throttle_keys)",
          (double)st.max_keys);
    counter(b, "waygate_lookup_throttle_full_total",
            "Get, Search, Reveal and RecordScan lookups and arrivals refused RESOURCE_EXHAUSTED "
            "because the throttle's table was full (not a principal's limit; incident kind "
            "throttle_full)",
            (double)st.full);
}

/* The password-hashing process (workers.h). */
static void write_workers(struct evbuffer *b, const struct gw_app *app)
{
    if (app->workers == NULL)
        return;
    gauge(b, "waygate_auth_jobs",
          "password-hashing jobs in the hashing process now (waiting or running)",
          (double)gw_workers_inflight(app->workers));
    gauge(b, "waygate_auth_jobs_waiting", "password-hashing jobs waiting for a worker thread now",
          (double)gw_workers_queued(app->workers));
    counter(b, "waygate_auth_process_deaths_total",
            "password-hashing processes that died (their unfinished jobs answered UNAVAILABLE; "
            "the next job starts a new one)",
            (double)gw_workers_deaths(app->workers));
    gauge(b, "waygate_auth_hashing_off",
          "1 once password hashing is off (the zygote that forks hashing processes was lost, or "
          "a hashing process could not put on its system-call filter): logins answer "
          "UNAVAILABLE until the gateway restarts",
          gw_workers_hashing_off(app->workers) ? 1.0 : 0.0);
}

static void write_db(struct evbuffer *b, const struct gw_app *app)
{
    gauge(b, "waygate_db_up", "1 while at least one database connection is ready",
          gw_db_ready(app->db) ? 1 : 0);
    gauge(b, "waygate_db_pool_size", "database connections configured",
          (double)gw_db_pool_size(app->db));
    gauge(b, "waygate_db_connections_ready",
          "database connections up, set up and taking requests (below waygate_db_pool_size while "
          "some are down or still preparing)",
          (double)gw_db_nready(app->db));
    gauge(b, "waygate_db_requests_pending", "callers' database requests queued or in flight",
          (double)gw_db_pending(app->db));
    gauge(b, "waygate_db_queue_share",
          "callers' database requests one principal (a certificate, or an account over one) may "
          "have queued or in flight before its new calls are refused ([database] queue_share)",
          (double)gw_db_share(app->db));
    gauge(b, "waygate_db_queue_share_peak",
          "the most callers' database requests one principal held at once since start",
          (double)gw_db_share_peak(app->db));
    counter(b, "waygate_db_queue_share_refusals_total",
            "calls refused RESOURCE_EXHAUSTED because their principal held its share of the "
            "database queue",
            (double)gw_db_share_refusals(app->db));
    gauge(b, "waygate_db_schema_version",
          "the newest migration applied to the database, as a connection's set-up last read it "
          "(-1 not read yet, -2 unreadable: a schema from before migration 29)",
          (double)gw_db_schema_version(app->db));
    gauge(b, "waygate_db_schema_needed",
          "the newest migration this build embeds: the oldest schema it uses",
          (double)gw_db_schema_min(app->db));
    gauge(b, "waygate_db_schema_behind",
          "1 while the database's schema is older than this build needs: no connection is used "
          "until `waygatectl migrate` has run",
          gw_db_schema_behind(app->db) ? 1.0 : 0.0);
    counter(b, "waygate_db_schema_refusals_total",
            "database connections closed after their set-up because the schema was older than "
            "this build needs (each retried after the backoff)",
            (double)gw_db_schema_refusals(app->db));
}

static void write_audit(struct evbuffer *b, const struct gw_app *app)
{
    struct gw_audit_stats st;

    gw_audit_stats(app->audit, &st);
    gw_prom_family(b, "waygate_audit_seq", "gauge", "last committed sequence of this chain");
    gw_prom_sample(b, "waygate_audit_seq", "chain", gw_audit_chain(app->audit), NULL, NULL,
                   (double)st.head_seq);
    counter(b, "waygate_audit_records_total", "audit records committed since start",
            (double)st.written);
    counter(b, "waygate_audit_checkpoints_total", "signed checkpoints committed since start",
            (double)st.checkpoints);
    counter(b, "waygate_audit_failed_total", "audit entries that failed (their action failed)",
            (double)st.failed);
    counter(b, "waygate_audit_spool_written_before_total",
            "audit spool entries skipped: written before, by an earlier replay of their spool",
            (double)st.written_before);
    gauge(b, "waygate_audit_queued", "audit entries waiting now", (double)st.queued);
    if (app->refusals != NULL) {
        struct gw_refusals_stats rs;

        gw_refusals_stats(app->refusals, &rs);
        counter(b, "waygate_audit_refusals_counted_total",
                "refused Admin calls counted into a later record instead of one of their own "
                "(a repeated kind, or the audit queue half full)",
                (double)rs.counted);
    }
}

static void write_incidents(struct evbuffer *b, const struct gw_app *app)
{
    const struct gw_incident_kind_count *k;
    struct gw_incident_stats st;
    size_t n = gw_incident_kinds(app->incidents, &k);

    gw_prom_family(b, "waygate_incidents_total", "counter",
                   "security incidents recorded since start, by kind and severity (Art. 17)");
    for (size_t i = 0; i < n; i++)
        if (k[i].count > 0)
            gw_prom_sample(b, "waygate_incidents_total", "kind", k[i].kind, "severity",
                           k[i].severity, (double)k[i].count);
    gw_incident_stats(app->incidents, &st);
    gauge(b, "waygate_incidents_unwritten", "incidents waiting to be written now",
          (double)st.pending);
    counter(b, "waygate_incidents_lost_total", "incidents lost for want of memory",
            (double)st.lost);
}

/* The data-key wraps under the current KEK (Art. 36, sql/050): the database's count for the
 * version at its last answer (every wrapper's leases, this gateway's and others'), this
 * gateway's wraps made and still held, and whether the version reached its limit. */
static void write_wraps(struct evbuffer *b, const struct gw_app *app)
{
    const struct gw_wraplease *l = app->wraps;
    char version[16];

    if (l == NULL || l->version == 0)
        return;
    snprintf(version, sizeof version, "%u", (unsigned)l->version);
    gw_prom_family(b, "waygate_kek_wraps_leased", "gauge",
                   "data-key wraps leased under the current KEK version by every wrapper, as the "
                   "database counted them at its last lease (a lower bound of none made)");
    gw_prom_sample(b, "waygate_kek_wraps_leased", "suite", gw_suite_name((enum gw_suite)l->suite),
                   "version", version, (double)l->counted);
    counter(b, "waygate_kek_wraps_used_total",
            "data-key wraps this gateway made under its current KEK version since it was loaded",
            (double)l->used);
    gauge(b, "waygate_kek_wraps_held", "data-key wraps leased to this gateway and not yet made",
          (double)(l->leased - l->used));
    gauge(b, "waygate_kek_wrap_limit_reached",
          "1 once the database refused a lease: the current KEK version is at its limit of wraps "
          "(rotate the KEK)",
          l->at_limit ? 1.0 : 0.0);
}

static void write_process(struct evbuffer *b, const struct gw_metrics_sources *src)
{
    struct gw_tls_expiry ex;
    unsigned long pages_total = 0, pages_rss = 0;
    FILE *f = fopen("/proc/self/statm", "r");

    if (f != NULL) {
        if (fscanf(f, "%lu %lu", &pages_total, &pages_rss) != 2)
            pages_rss = 0;
        fclose(f);
    }
    gauge(b, "waygate_process_resident_bytes", "resident memory of the gateway process",
          (double)pages_rss * 4096.0);
    write_request_memory(b, src->rpc, src->server);
    write_response_memory(b, src->server);
    gauge(b, "waygate_connections", "client connections open now",
          (double)gw_server_connections(src->server));
    gauge(b, "waygate_connections_preauth",
          "client connections open now and not yet authenticated (TLS with a verified client "
          "certificate not done, or refused over max_connections_per_certificate)",
          (double)gw_server_preauth(src->server));
    gw_prom_family(b, "waygate_connections_refused_total", "counter",
                   "connections refused at accept, by the [server] limit that refused them");
    for (int r = 0; r < GW_SERVER_REFUSED_N; r++)
        gw_prom_sample(b, "waygate_connections_refused_total", "limit",
                       gw_server_refusal_name((enum gw_server_refusal)r), NULL, NULL,
                       (double)gw_server_refused(src->server, (enum gw_server_refusal)r));
    {
        uint64_t conn = 0, stream = 0;
        gw_server_lines_suppressed(src->server, &conn, &stream);
        gw_prom_family(b, "waygate_log_lines_suppressed_total", "counter",
                       "log lines left out by the gateway's rate limits: about connections (their "
                       "handshakes, refusals, timeouts) and per-stream (refusals, resets, failed "
                       "calls)");
        gw_prom_sample(b, "waygate_log_lines_suppressed_total", "kind", "connection", NULL, NULL,
                       (double)conn);
        gw_prom_sample(b, "waygate_log_lines_suppressed_total", "kind", "stream", NULL, NULL,
                       (double)stream);
    }
    gw_prom_family(b, "waygate_connections_evicted_total", "counter",
                   "unauthenticated connections closed, oldest first, to make room for a new one "
                   "when the [server] limit was reached");
    {
        static const enum gw_server_refusal evicting[] = {GW_SERVER_REFUSED_MAX_PREAUTH,
                                                          GW_SERVER_REFUSED_MAX_CONNECTIONS};
        for (size_t i = 0; i < sizeof(evicting) / sizeof(evicting[0]); i++)
            gw_prom_sample(b, "waygate_connections_evicted_total", "limit",
                           gw_server_refusal_name(evicting[i]), NULL, NULL,
                           (double)gw_server_evicted(src->server, evicting[i]));
    }
    gw_tls_expiry(src->tls, &ex);
    gauge(b, "waygate_tls_cert_expiry_seconds",
          "seconds until the server certificate expires (negative: expired)", (double)ex.cert_s);
    if (ex.has_crl)
        gauge(b, "waygate_tls_crl_next_update_seconds",
              "seconds until the CRL's nextUpdate (negative: past; clients are then refused)",
              (double)ex.crl_s);
}

/* The transactional outbox (its last sample) and the forwarder (its counters, when it runs). */
static void write_outbox(struct evbuffer *b, const struct gw_metrics *m)
{
    struct gw_forward_stats fs;
    struct gw_tls_expiry ex;

    if (m->sampled) {
        gauge(b, "waygate_outbox_deliveries",
              "deliveries in the outbox now, parked ones included (sampled)",
              (double)m->outbox.depth);
        gauge(b, "waygate_outbox_parked",
              "deliveries the backend refused for good, waiting for `waygatectl outbox retry`",
              (double)m->outbox.parked);
        gauge(b, "waygate_outbox_oldest_seconds",
              "age of the oldest delivery not parked (0: none waits)",
              (double)m->outbox.oldest_ms / 1000.0);
        gauge(b, "waygate_outbox_sample_age_seconds", "how old the outbox sample above is",
              (double)(gw_clock_ms() - m->sampled_ms) / 1000.0);
    }
    counter(b, "waygate_outbox_sample_failures_total",
            "outbox samples that failed (database unavailable)", (double)m->sample_failures);
    if (m->src.forward == NULL)
        return;
    gw_forward_stats(m->src.forward, &fs);
    counter(b, "waygate_forward_sent_total", "deliveries sent to the backend (each attempt)",
            (double)fs.sent);
    counter(b, "waygate_forward_delivered_total",
            "deliveries the backend accepted (their delete from the outbox queued)",
            (double)fs.acked);
    counter(b, "waygate_forward_retried_total",
            "deliveries put back for a later attempt (backend down, RETRY, no answer)",
            (double)fs.later);
    counter(b, "waygate_forward_parked_total", "deliveries the backend refused for good",
            (double)fs.parked);
    counter(b, "waygate_forward_claimed_total", "deliveries claimed from the outbox (each claim)",
            (double)fs.claimed);
    counter(b, "waygate_forward_fast_sent_total",
            "deliveries sent by the fast path (from memory, under the insert's lease; no claim)",
            (double)fs.fast_sent);
    counter(b, "waygate_forward_fast_delivered_total",
            "deliveries the fast path sent and the backend accepted", (double)fs.fast_acked);
    counter(b, "waygate_forward_fast_dropped_total",
            "fast deliveries left to their lease and a later claim (queue full, waited too long)",
            (double)fs.fast_dropped);
    gauge(b, "waygate_forward_fast_queued",
          "fast deliveries waiting in memory for a batch now ([forward] fast_max bounds them)",
          (double)fs.fast_queued);
    gauge(b, "waygate_forward_calls_inflight", "Deliver calls (batches) in flight now",
          (double)fs.inflight);
    gauge(b, "waygate_forward_ack_pending",
          "deliveries the backend accepted whose delete from the outbox is not done yet "
          "(new calls wait at [forward] fast_max)",
          (double)fs.ack_pending);
    counter(b, "waygate_forward_pauses_total",
            "pauses of the outbox claims while the backend failed (each ends with one probe batch)",
            (double)fs.pauses);
    gauge(b, "waygate_forward_paused",
          "1 while the backend fails: claims paused between probes of one batch, fast path closed",
          (double)fs.paused);
    counter(b, "waygate_forward_breaker_opens_total",
            "times the breaker opened: [forward] breaker_after refusals in a row, none accepted",
            (double)fs.breaker_opens);
    gauge(b, "waygate_forward_breaker_open",
          "1 while the breaker is open: refused deliveries are sent again later, not parked",
          (double)fs.breaker_open);
    gauge(b, "waygate_forward_breaker_refusals",
          "deliveries the backend refused in a row now, none accepted since (opens at "
          "[forward] breaker_after)",
          (double)fs.breaker_refusals);
    gw_forward_tls_expiry(m->src.forward, &ex);
    gauge(b, "waygate_forward_cert_expiry_seconds",
          "seconds until the forwarder's client certificate expires (negative: expired)",
          (double)ex.cert_s);
    if (ex.has_crl)
        gauge(b, "waygate_forward_crl_next_update_seconds",
              "seconds until the [forward] CRL's nextUpdate (negative: past; the backend is then "
              "refused)",
              (double)ex.crl_s);
}

/* The retention sweep (Art. 26): a sweep that keeps failing (a period below the database's floor,
 * a batch the database refuses) destroys nothing, which only these counters and the log show. */
static void write_retention(struct evbuffer *b, const struct gw_retention *r)
{
    struct gw_retention_stats st;

    if (r == NULL)
        return;
    gw_retention_stats(r, &st);
    counter(b, "waygate_retention_batches_total",
            "retention batches destroyed, each with its destruction and audit record",
            (double)st.batches);
    counter(b, "waygate_retention_destroyed_total", "waybills the retention sweep destroyed",
            (double)st.destroyed);
    counter(b, "waygate_retention_failures_total",
            "retention batches that failed for another cause than the database being away (the "
            "period below the floor, a batch refused): their records are kept, past their period",
            (double)st.failures);
}

static void render(struct evbuffer *b, const struct gw_metrics *m)
{
    const struct gw_app *app = m->src.app;

    write_calls(b, m->src.rpc);
    write_process(b, &m->src);
    gw_prom_family(b, "waygate_accept_paused_total", "counter",
                   "accepts that failed for want of file descriptors or memory, after each of "
                   "which the listener paused, by listener");
    gw_prom_sample(b, "waygate_accept_paused_total", "listener", "grpc", NULL, NULL,
                   (double)gw_server_accept_paused(m->src.server));
    gw_prom_sample(b, "waygate_accept_paused_total", "listener", "metrics", NULL, NULL,
                   (double)gw_acceptpause_failures(m->pause));
    counter(b, "waygate_metrics_deadline_closed_total",
            "metrics connections closed unanswered 10 s after accept (a handshake or request "
            "trickled, a scrape whose lookup did not finish)",
            (double)m->deadline_closed);
    counter(b, "waygate_metrics_first_byte_closed_total",
            "metrics connections closed 2 s after accept without a byte of request (with TLS: "
            "after the handshake)",
            (double)m->first_byte_closed);
    gw_prom_family(b, "waygate_metrics_connections_refused_total", "counter",
                   "metrics connections closed as they were accepted, by the per-address limit "
                   "that refused them (4 open at once, 64 accepts a second; table: 1024 addresses "
                   "at once)");
    gw_prom_sample(b, "waygate_metrics_connections_refused_total", "limit", "per_address", NULL,
                   NULL, (double)m->refused[GW_PEERLIMIT_PREAUTH]);
    gw_prom_sample(b, "waygate_metrics_connections_refused_total", "limit", "rate", NULL, NULL,
                   (double)m->refused[GW_PEERLIMIT_RATE]);
    gw_prom_sample(b, "waygate_metrics_connections_refused_total", "limit", "table", NULL, NULL,
                   (double)m->refused[GW_PEERLIMIT_FULL]);
    counter(b, "waygate_metrics_key_update_closed_total",
            "metrics connections closed for sending more than 32 TLS KeyUpdate messages",
            (double)m->key_update_closed);
    write_db(b, app);
    write_workers(b, app);
    write_store(b, app);
    write_throttle(b, app);
    write_audit(b, app);
    write_incidents(b, app);
    write_wraps(b, app);
    write_outbox(b, m);
    write_retention(b, m->src.retention);
    if (m->src.more != NULL)
        m->src.more(m->src.more_arg, b);
}

/* ---- answering a scrape ---- */

static void unlink_scrape(struct scrape *s)
{
    struct gw_metrics *m = s->m;

    if (s->prev != NULL)
        s->prev->next = s->next;
    else
        m->waiting = s->next;
    if (s->next != NULL)
        s->next->prev = s->prev;
    m->nwaiting--;
    gw_acct_cancel(s->lookup);
    gw_free(s);
}

/* The refusal's warning comes out of the listener's budget of lines (REFUSAL_LOG_BURST, then
 * REFUSAL_LOG_RATE a second); the next line written says how many were left out before it. */
static void refuse(struct scrape *s, int code, const char *why)
{
    struct gw_metrics *m = s->m;

    if (GW_LOG_WARN >= gw_log_level && gw_lines_take(&m->refusal_lines, NULL, gw_clock_ms())) {
        uint64_t left_out = gw_lines_dropped(&m->refusal_lines);
        if (left_out > 0)
            GW_LOG(GW_LOG_WARN, "metrics", NULL,
                   "scrape from %s refused (%d): %s (%llu refusals before it not logged: log "
                   "rate limit)",
                   s->peer, code, why, (unsigned long long)left_out);
        else
            GW_LOG(GW_LOG_WARN, "metrics", NULL, "scrape from %s refused (%d): %s", s->peer, code,
                   why);
    }
    evhttp_send_error(s->req, code, code == 403 ? "Forbidden" : "Service Unavailable");
    unlink_scrape(s);
}

static void answer(struct scrape *s)
{
    struct evbuffer *b = evbuffer_new();

    if (b == NULL) {
        evhttp_send_error(s->req, 500, "out of memory");
        unlink_scrape(s);
        return;
    }
    render(b, s->m);
    evhttp_add_header(evhttp_request_get_output_headers(s->req), "Content-Type",
                      "text/plain; version=0.0.4; charset=utf-8");
    /* One request per connection, so that its deadline (deadline_cb) runs from accept to its one
     * answer: the answer closes it, as evhttp_send_error's (every refusal) do by themselves. */
    evhttp_add_header(evhttp_request_get_output_headers(s->req), "Connection", "close");
    evhttp_send_reply(s->req, 200, "OK", b);
    evbuffer_free(b);
    unlink_scrape(s);
}

/* Answers every scrape waiting for the sample (with the sample there is). */
static void answer_sample_waiters(struct gw_metrics *m)
{
    struct scrape *s = m->waiting, *next;

    evtimer_del(m->sample_wait);
    for (; s != NULL; s = next) {
        next = s->next;
        if (s->waits_sample)
            answer(s);
    }
}

static void sampled_cb(void *arg, int err, const struct gw_outbox_depth *d)
{
    struct gw_metrics *m = arg;

    m->sampling = NULL;
    if (err == 0) {
        m->outbox = *d;
        m->sampled = true;
        m->sampled_ms = gw_clock_ms();
    } else {
        m->sample_failures++;
    }
    answer_sample_waiters(m);
}

static void sample_wait_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    answer_sample_waiters(arg); /* the query goes on and refreshes the sample when it ends */
}

/* The scrape is admitted: answered now when the outbox sample is fresh, else once a fresh one is
 * taken or SAMPLE_WAIT_MS passed. */
static void admitted(struct scrape *s)
{
    struct gw_metrics *m = s->m;
    const struct timeval tv = gw_clock_tv(SAMPLE_WAIT_MS);

    if (m->sampled && gw_clock_ms() - m->sampled_ms < SAMPLE_FRESH_MS) {
        answer(s);
        return;
    }
    if (m->sampling == NULL &&
        gw_outbox_depth(m->src.app->store, sampled_cb, m, &m->sampling) != 0) {
        m->sampling = NULL;
        m->sample_failures++;
        answer(s);
        return;
    }
    s->waits_sample = true;
    /* also when a query outlived an earlier wait: this scrape waits SAMPLE_WAIT_MS at most too */
    if (!evtimer_pending(m->sample_wait, NULL))
        evtimer_add(m->sample_wait, &tv);
}

static void looked_up_cb(void *arg, int err, const struct gw_acct_cert *cert,
                         const struct gw_acct_session *sess)
{
    struct scrape *s = arg;
    struct gw_metrics *m = s->m;

    (void)sess;
    s->lookup = NULL;
    if (err != 0) {
        if (err == GW_EUNAVAIL && m->admin_known &&
            memcmp(m->admin_fpr, s->fpr, sizeof(s->fpr)) == 0) {
            admitted(s); /* the database is away: the last answer stands */
            return;
        }
        refuse(s, 503, "the client certificate's registration cannot be looked up now");
        return;
    }
    /* The database answered: its answer replaces the fallback, whatever it says, so a
     * certificate disabled or moved to another role is not admitted again while the database is
     * away; only an enabled system_admin sets it. */
    m->admin_known = cert != NULL && strcmp(cert->role, ADMIN_ROLE) == 0;
    if (m->admin_known)
        memcpy(m->admin_fpr, s->fpr, sizeof(s->fpr));
    if (cert == NULL) {
        refuse(s, 403, "the client certificate is not a registered, enabled principal");
        return;
    }
    if (!m->admin_known) { /* neither the principal nor its role named: a lawful_access one's
                            * may not be (Art. 16), and the wording is one for every role */
        refuse(s, 403, "the client certificate's principal is not of role " ADMIN_ROLE);
        return;
    }
    admitted(s);
}

/* [metrics] tls: the connection's verified certificate must be a registered system_admin. */
static void authorize(struct scrape *s)
{
    struct evhttp_connection *evcon = evhttp_request_get_connection(s->req);
    struct bufferevent *bev = evcon != NULL ? evhttp_connection_get_bufferevent(evcon) : NULL;
    struct ssl_st *ssl = bev != NULL ? bufferevent_openssl_get_ssl(bev) : NULL;
    struct gw_peer peer;
    int err;

    if (ssl == NULL) {
        refuse(s, 403, "not a TLS connection");
        return;
    }
    if (gw_tls_peer_cert(ssl, &peer) != 0) {
        refuse(s, 403, "no verified client certificate (a system_admin one is required)");
        return;
    }
    memcpy(s->fpr, peer.cert_sha256, sizeof(s->fpr));
    err = gw_acct_identify(s->m->src.app->db, s->fpr, NULL, 0, looked_up_cb, s, &s->lookup);
    if (err != 0) {
        s->lookup = NULL;
        looked_up_cb(s, err, NULL, NULL);
    }
}

static void metrics_cb(struct evhttp_request *req, void *arg)
{
    struct gw_metrics *m = arg;
    struct evhttp_connection *evcon = evhttp_request_get_connection(req);
    struct scrape *s;
    char *host = NULL;
    uint16_t port = 0;

    if (evhttp_request_get_command(req) != EVHTTP_REQ_GET) {
        evhttp_send_error(req, 405, "only GET");
        return;
    }
    if (m->nwaiting >= MAX_WAITING || (s = gw_calloc(1, sizeof(*s))) == NULL) {
        evhttp_send_error(req, 503, "too many scrapes at once");
        return;
    }
    s->m = m;
    s->req = req;
    if (evcon != NULL)
        evhttp_connection_get_peer(evcon, &host, &port);
    snprintf(s->peer, sizeof(s->peer), "%s:%u", host != NULL ? host : "?", (unsigned)port);
    s->next = m->waiting;
    if (m->waiting != NULL)
        m->waiting->prev = s;
    m->waiting = s;
    m->nwaiting++;
    if (m->tls != NULL)
        authorize(s);
    else
        admitted(s);
}

static bool flooded(const struct mconn *c);

static void conn_gone(struct mconn *c)
{
    struct gw_metrics *m = c->m;

    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        m->conns = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    event_free(c->deadline);
    gw_peerlimit_release(m->pl, c->slot);
    gw_free(c);
    m->nconns--;
    if (m->capped && !m->closing && m->nconns < MAX_CONNECTIONS) {
        m->capped = false;
        (void)evconnlistener_enable(evhttp_bound_socket_get_listener(m->sock));
    }
}

/* The connection's TLS session and input are no longer watched: called while they still exist,
 * before evhttp or the deadline frees the bufferevent that owns them (c may be freed first). */
static void unwatch(struct mconn *c)
{
    if (c->ssl != NULL)
        gw_tls_watch_key_updates(c->ssl, NULL);
    c->ssl = NULL;
    if (c->first_byte != NULL)
        (void)evbuffer_remove_cb_entry(c->input, c->first_byte);
    c->first_byte = NULL;
}

/* The request's first byte arrived (from inside the bufferevent's read): the deadline moves from
 * FIRST_BYTE_S to DEADLINE_S after the accept, and the input is no longer watched. */
static void first_byte_cb(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
    struct mconn *c = arg;
    uint64_t elapsed = gw_clock_ms() - c->accepted_ms;
    struct timeval left;

    if (info->n_added == 0 || c->first_byte == NULL)
        return;
    (void)evbuffer_remove_cb_entry(buf, c->first_byte);
    c->first_byte = NULL;
    left = gw_clock_tv(elapsed < DEADLINE_S * 1000u ? DEADLINE_S * 1000u - elapsed : 1u);
    if (!flooded(c)) /* (a flood's deadline is already active: it runs as it is) */
        (void)evtimer_add(c->deadline, &left);
}

static void conn_closed_cb(struct evhttp_connection *evcon, void *arg)
{
    (void)evcon;
    unwatch(arg); /* (evhttp calls this before it frees the bufferevent) */
    conn_gone(arg);
}

/* A KeyUpdate read by OpenSSL, from inside the bufferevent's read (nothing may be freed here):
 * past KEY_UPDATES_MAX the connection is closed from the loop (deadline_cb), once evhttp has made
 * it (track_cb). A scraper has no reason to send any within the connection's ten seconds; each
 * costs two key derivations, new cipher contexts and a record back when asked. */
static bool flooded(const struct mconn *c)
{
    return c->key_updates > KEY_UPDATES_MAX;
}

static void key_update_cb(void *arg)
{
    struct mconn *c = arg;

    if (flooded(c))
        return;
    c->key_updates++;
    if (flooded(c) && c->evcon != NULL)
        event_active(c->deadline, EV_TIMEOUT, 0);
}

/* The flood's warning, from the refusals' budget of lines, naming the peer. */
static void log_key_update_flood(struct gw_metrics *m, struct evhttp_connection *evcon)
{
    char *host = NULL;
    ev_uint16_t port = 0;

    if (GW_LOG_WARN < gw_log_level || !gw_lines_take(&m->refusal_lines, NULL, gw_clock_ms()))
        return;
    evhttp_connection_get_peer(evcon, &host, &port);
    GW_LOG(GW_LOG_WARN, "metrics", NULL,
           "connection from %s:%u closed: TLS KeyUpdate or renegotiation flood (more than %u on "
           "one connection)",
           host != NULL ? host : "?", (unsigned)port, (unsigned)KEY_UPDATES_MAX);
}

/* FIRST_BYTE_S after accept the connection has sent no byte of its request, or DEADLINE_S after
 * accept it is not answered yet (a handshake or request trickled
 * a byte at a time, which restarts evhttp's inactivity timeout at every byte; a scrape still
 * waiting for its lookup), or its peer sent more than KEY_UPDATES_MAX KeyUpdates: it is closed,
 * its scrape dropped unanswered. */
static void deadline_cb(evutil_socket_t fd, short what, void *arg)
{
    struct mconn *c = arg;
    struct gw_metrics *m = c->m;
    struct scrape *s, *next;

    (void)fd;
    (void)what;
    if (c->evcon == NULL) /* (track_cb runs in the loop pass after the accept) */
        return;
    for (s = m->waiting; s != NULL; s = next) {
        next = s->next;
        if (evhttp_request_get_connection(s->req) == c->evcon)
            unlink_scrape(s); /* evhttp_connection_free frees its request */
    }
    if (flooded(c)) {
        m->key_update_closed++;
        log_key_update_flood(m, c->evcon);
    } else if (c->first_byte != NULL) {
        m->first_byte_closed++;
    } else {
        m->deadline_closed++;
    }
    unwatch(c);
    evhttp_connection_set_closecb(c->evcon, NULL, NULL);
    evhttp_connection_free(c->evcon);
    conn_gone(c);
}

/* The per-address limits, for a connection evhttp made (c->evcon): true if admitted (its slot
 * held in c); otherwise counted, a warning from the refusals' budget, and the caller closes it.
 * A connection whose address cannot be read is admitted (it still counts in MAX_CONNECTIONS). */
static bool admit(struct gw_metrics *m, struct mconn *c, struct bufferevent *bev)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    evutil_socket_t fd = bufferevent_getfd(bev);
    enum gw_peerlimit_verdict v;
    char *host = NULL;
    ev_uint16_t port = 0;

    if (fd < 0 || getpeername(fd, (struct sockaddr *)&ss, &len) != 0)
        return true;
    v = gw_peerlimit_admit(m->pl, (struct sockaddr *)&ss, gw_clock_ms(), &c->slot);
    if (v == GW_PEERLIMIT_OK)
        return true;
    m->refused[v]++;
    if (GW_LOG_WARN < gw_log_level || !gw_lines_take(&m->refusal_lines, NULL, gw_clock_ms()))
        return false;
    evhttp_connection_get_peer(c->evcon, &host, &port);
    GW_LOG(GW_LOG_WARN, "metrics", NULL, "connection from %s:%u closed at accept: %s",
           host != NULL ? host : "?", (unsigned)port,
           v == GW_PEERLIMIT_PREAUTH ? "its address holds 4 connections already"
           : v == GW_PEERLIMIT_RATE  ? "its address opens more than 64 connections a second"
                                     : "the table of addresses is full");
    return false;
}

/* From the loop after evhttp made connections of the bufferevents bev_cb made, before any byte of
 * them is read (their reads are polled in a later pass): each one is admitted by its address or
 * closed, and an admitted one's close is watched from now on; one evhttp already freed (its
 * callbacks cleared) is gone. */
static void track_cb(evutil_socket_t fd, short what, void *arg)
{
    struct gw_metrics *m = arg;

    (void)fd;
    (void)what;
    while (m->nfresh > 0) {
        struct mconn *c = m->fresh[--m->nfresh];
        struct bufferevent *bev = c->bev;
        bufferevent_event_cb eventcb = NULL;
        void *evcon = NULL;

        c->bev = NULL;
        bufferevent_getcb(bev, NULL, NULL, &eventcb, &evcon);
        if (eventcb != NULL && evcon != NULL) { /* evhttp's: its argument is the connection */
            c->evcon = evcon;
            if (!admit(m, c, bev)) {
                unwatch(c); /* (the reference held keeps the bufferevent alive until below) */
                evhttp_connection_free(c->evcon);
                conn_gone(c);
            } else {
                evhttp_connection_set_closecb(evcon, conn_closed_cb, c);
                if (flooded(c)) /* (key_update_cb left it for now) */
                    event_active(c->deadline, EV_TIMEOUT, 0);
            }
        } else {
            unwatch(c); /* (the reference held keeps the bufferevent, and its session, alive) */
            conn_gone(c);
        }
        bufferevent_decref(bev);
    }
}

/* Each new connection's bufferevent: server-side TLS with [metrics] tls (ALPN http/1.1), plain
 * otherwise (and when TLS cannot be set up: its scrape is then refused by authorize()). Counted,
 * with its deadline; at MAX_CONNECTIONS the listener stops accepting. */
static struct bufferevent *bev_cb(struct event_base *base, void *arg)
{
    const uint64_t now =
        gw_clock_ms(); /* read first: the timers never fire before it + their time */
    const struct timeval life = gw_clock_tv(FIRST_BYTE_S * 1000u);
    const struct timeval whole = gw_clock_tv(DEADLINE_S * 1000u);
    struct gw_metrics *m = arg;
    struct ssl_st *ssl = m->tls != NULL ? gw_tls_http_ssl_new(m->tls) : NULL;
    struct bufferevent *bev = NULL;
    struct mconn *c;

    if (ssl != NULL) {
        bev = bufferevent_openssl_socket_new(base, -1, ssl, BUFFEREVENT_SSL_ACCEPTING,
                                             BEV_OPT_CLOSE_ON_FREE);
        if (bev == NULL)
            gw_tls_ssl_free(ssl);
    }
    if (bev == NULL)
        bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
    if (bev == NULL || m->nfresh >= MAX_CONNECTIONS || (c = gw_calloc(1, sizeof(*c))) == NULL)
        return bev; /* not counted (out of memory; evhttp makes its own when NULL) */
    c->m = m;
    c->deadline = evtimer_new(base, deadline_cb, c);
    if (c->deadline == NULL || evtimer_add(c->deadline, &life) != 0) {
        if (c->deadline != NULL)
            event_free(c->deadline);
        gw_free(c);
        return bev; /* not counted, no deadline: evhttp's inactivity timeout still closes it */
    }
    c->accepted_ms = now;
    c->input = bufferevent_get_input(bev);
    c->first_byte = evbuffer_add_cb(c->input, first_byte_cb, c);
    if (c->first_byte == NULL) /* (no watch: the deadline is DEADLINE_S after accept) */
        (void)evtimer_add(c->deadline, &whole);
    if (ssl != NULL && bufferevent_openssl_get_ssl(bev) == ssl) {
        c->ssl = ssl;
        c->watch = (struct gw_tls_watch){.key_update = key_update_cb, .arg = c};
        gw_tls_watch_key_updates(ssl, &c->watch);
    }
    bufferevent_incref(bev);
    c->bev = bev;
    c->next = m->conns;
    if (m->conns != NULL)
        m->conns->prev = c;
    m->conns = c;
    m->fresh[m->nfresh++] = c;
    event_active(m->track_ev, EV_TIMEOUT, 0);
    if (++m->nconns >= MAX_CONNECTIONS && !m->capped) {
        m->capped = true;
        (void)evconnlistener_disable(evhttp_bound_socket_get_listener(m->sock));
    }
    return bev;
}

static void other_cb(struct evhttp_request *req, void *arg)
{
    (void)arg;
    evhttp_send_error(req, 404, "only /metrics");
}

struct gw_metrics *gw_metrics_new(struct event_base *base, const struct gw_config *cfg,
                                  const struct gw_metrics_sources *src, char *err, size_t errlen)
{
    const char *listen = cfg->metrics_listen;
    struct gw_metrics *m = gw_calloc(1, sizeof(*m));
    char host[256];
    uint16_t port;

    if (m == NULL) {
        snprintf(err, errlen, "[metrics] listen: out of memory");
        return NULL;
    }
    m->src = *src;
    gw_lines_init(&m->refusal_lines, REFUSAL_LOG_BURST, REFUSAL_LOG_RATE, gw_clock_ms());
    if (gw_config_split_hostport(listen, host, sizeof(host), &port) != 0 ||
        (m->http = evhttp_new(base)) == NULL ||
        (m->sample_wait = evtimer_new(base, sample_wait_cb, m)) == NULL ||
        (m->track_ev = event_new(base, -1, 0, track_cb, m)) == NULL ||
        (m->pl = gw_peerlimit_new(RATE_PER_ADDRESS, MAX_PER_ADDRESS, PEER_TABLE_MAX)) == NULL) {
        snprintf(err, errlen, "[metrics] listen: cannot create the listener");
        gw_metrics_free(m);
        return NULL;
    }
    if (cfg->metrics_tls) {
        m->tls = gw_tls_http_new(cfg, err, errlen);
        if (m->tls == NULL) {
            gw_metrics_free(m);
            return NULL;
        }
    }
    evhttp_set_bevcb(m->http, bev_cb, m);
    evhttp_set_timeout(m->http, METRICS_TIMEOUT_S);
    evhttp_set_max_headers_size(m->http, METRICS_MAX_HEADERS);
    evhttp_set_max_body_size(m->http, 1024);
    evhttp_set_allowed_methods(m->http, EVHTTP_REQ_GET);
    if (evhttp_set_cb(m->http, "/metrics", metrics_cb, m) != 0) {
        snprintf(err, errlen, "[metrics] listen: cannot register /metrics");
        gw_metrics_free(m);
        return NULL;
    }
    evhttp_set_gencb(m->http, other_cb, m);
    m->sock = evhttp_bind_socket_with_handle(m->http, host, port);
    if (m->sock == NULL) {
        snprintf(err, errlen, "[metrics] listen: cannot listen on %s", listen);
        gw_metrics_free(m);
        return NULL;
    }
    m->pause = gw_acceptpause_new(base, evhttp_bound_socket_get_listener(m->sock), "metrics");
    if (m->pause == NULL) {
        snprintf(err, errlen, "[metrics] listen: out of memory");
        gw_metrics_free(m);
        return NULL;
    }
    GW_LOG(GW_LOG_INFO, "metrics", NULL, "metrics on %s://%s/metrics%s", m->tls ? "https" : "http",
           listen, m->tls ? " (client certificate of role " ADMIN_ROLE " required)" : "");
    return m;
}

void gw_metrics_reload_tls(struct gw_metrics *m, const struct gw_config *cfg)
{
    char err[512];
    struct gw_tls *fresh;

    if (m == NULL || m->tls == NULL)
        return;
    fresh = gw_tls_http_new(cfg, err, sizeof(err));
    if (fresh == NULL) {
        GW_LOG(GW_LOG_ERROR, "metrics", NULL, "certificates and CRL not reloaded: %s", err);
        return;
    }
    gw_tls_swap(m->tls, fresh);
}

void gw_metrics_free(struct gw_metrics *m)
{
    if (m == NULL)
        return;
    /* Unanswered scrapes: their lookups cancelled, a 503 queued (evhttp_free then frees the
     * requests with their connections; one whose client left is freed by the send itself). */
    while (m->waiting != NULL) {
        evhttp_send_error(m->waiting->req, 503, "shutting down");
        unlink_scrape(m->waiting);
    }
    gw_outbox_cancel(m->sampling);
    if (m->sample_wait != NULL)
        event_free(m->sample_wait);
    m->closing = true; /* closing connections must not enable the listener evhttp_free frees */
    gw_acceptpause_free(m->pause); /* before the listener */
    while (m->nfresh > 0) {        /* evhttp_free frees their connections, closecb not set yet */
        struct mconn *c = m->fresh[--m->nfresh];
        unwatch(c);
        bufferevent_decref(c->bev);
        conn_gone(c);
    }
    if (m->track_ev != NULL)
        event_free(m->track_ev);
    if (m->http != NULL)
        evhttp_free(m->http);
    while (m->conns != NULL) /* (evhttp reports each close once: none is left but by mistake) */
        conn_gone(m->conns);
    gw_tls_free(m->tls);
    gw_peerlimit_free(m->pl);
    gw_free(m);
}
