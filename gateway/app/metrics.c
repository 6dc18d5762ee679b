/* metrics.c: Prometheus text metrics (GET /metrics, HTTP/1.1, libevent's evhttp) on a listener of
 * its own, a loopback address only ([metrics] listen; config.c refuses any other), since it has no
 * authentication. Each scrape reads the modules' own counters (pull: nothing is counted here):
 * calls by method and status with their latency, connections, the database pool, group commits,
 * scans, the audit chain, incidents by kind, the retention sweep, the process's resident memory,
 * and the seconds until the server certificate and the CRL expire. Nothing here is PII: method
 * paths, status names, incident kinds and numbers. Bounded: requests other than GET are refused,
 * headers and bodies are capped, a connection idle for METRICS_TIMEOUT_S is closed. */
#include "metrics.h"

#include <stdio.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/http.h>

#include "alloc.h"
#include "app.h"
#include "audit.h"
#include "config.h"
#include "db.h"
#include "incident.h"
#include "log.h"
#include "prom.h"
#include "rpc.h"
#include "server.h"
#include "store.h"
#include "store_scan.h"
#include "tls.h"

#define METRICS_TIMEOUT_S 10
#define METRICS_MAX_HEADERS 8192

struct gw_metrics {
    struct gw_metrics_sources src;
    struct evhttp *http;
    struct evhttp_bound_socket *sock;
};

static void write_calls(struct evbuffer *b, const struct gw_rpc *rpc)
{
    size_t n = gw_rpc_stats_n(rpc);

    gw_prom_family(b, "waygate_grpc_calls_total", "counter",
                   "gRPC calls finished, by method and status (a reset before a status: "
                   "CANCELLED)");
    for (size_t i = 0; i < n; i++) {
        const struct gw_rpc_method_stats *st = gw_rpc_stats(rpc, i);
        for (size_t c = 0; c < GW_GRPC_NSTATUS; c++)
            if (st->by_status[c] > 0)
                gw_prom_sample(b, "waygate_grpc_calls_total", "method", gw_rpc_stats_path(rpc, i),
                               "code", gw_grpc_status_name((enum gw_grpc_status)c),
                               (double)st->by_status[c]);
    }
    gw_prom_family(b, "waygate_grpc_call_seconds", "histogram",
                   "gRPC call latency, from the request headers to the status, by method");
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

/* The request-memory budget (issue 10, finding 2): use, high-water mark, limit. */
static void write_request_memory(struct evbuffer *b, const struct gw_rpc *rpc)
{
    size_t used, peak, limit;

    gw_rpc_request_memory(rpc, &used, &peak, &limit);
    gauge(b, "waygate_request_memory_bytes",
          "request memory in flight now (bodies arriving, unpacked requests)", (double)used);
    gauge(b, "waygate_request_memory_peak_bytes", "the most request memory in flight since start",
          (double)peak);
    gauge(b, "waygate_request_memory_limit_bytes", "the gateway's budget of request memory",
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
    gw_store_scan_stats(app->store, &sc);
    counter(b, "waygate_scan_groups_total", "scan-event insert transactions", (double)sc.groups);
    gauge(b, "waygate_scans_queued", "scan events waiting for a group now", (double)sc.queued);
}

static void write_db(struct evbuffer *b, const struct gw_app *app)
{
    gauge(b, "waygate_db_up", "1 while at least one database connection is ready",
          gw_db_ready(app->db) ? 1 : 0);
    gauge(b, "waygate_db_pool_size", "database connections configured",
          (double)gw_db_pool_size(app->db));
    gauge(b, "waygate_db_requests_pending", "database requests queued or in flight",
          (double)gw_db_pending(app->db));
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
    gauge(b, "waygate_audit_queued", "audit entries waiting now", (double)st.queued);
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
    write_request_memory(b, src->rpc);
    gauge(b, "waygate_connections", "client connections open now",
          (double)gw_server_connections(src->server));
    gauge(b, "waygate_connections_preauth",
          "client connections open now and not yet authenticated (TLS with a verified client "
          "certificate not done)",
          (double)gw_server_preauth(src->server));
    gw_prom_family(b, "waygate_connections_refused_total", "counter",
                   "connections refused at accept, by the [server] limit that refused them");
    for (int r = 0; r < GW_SERVER_REFUSED_N; r++)
        gw_prom_sample(b, "waygate_connections_refused_total", "limit",
                       gw_server_refusal_name((enum gw_server_refusal)r), NULL, NULL,
                       (double)gw_server_refused(src->server, (enum gw_server_refusal)r));
    gw_tls_expiry(src->tls, &ex);
    gauge(b, "waygate_tls_cert_expiry_seconds",
          "seconds until the server certificate expires (negative: expired)", (double)ex.cert_s);
    if (ex.has_crl)
        gauge(b, "waygate_tls_crl_next_update_seconds",
              "seconds until the CRL's nextUpdate (negative: past; clients are then refused)",
              (double)ex.crl_s);
}

static void render(struct evbuffer *b, const struct gw_metrics *m)
{
    const struct gw_app *app = m->src.app;

    write_calls(b, m->src.rpc);
    write_process(b, &m->src);
    write_db(b, app);
    write_store(b, app);
    write_audit(b, app);
    write_incidents(b, app);
    if (m->src.more != NULL)
        m->src.more(m->src.more_arg, b);
}

static void metrics_cb(struct evhttp_request *req, void *arg)
{
    struct gw_metrics *m = arg;
    struct evbuffer *b;

    if (evhttp_request_get_command(req) != EVHTTP_REQ_GET) {
        evhttp_send_error(req, 405, "only GET");
        return;
    }
    b = evbuffer_new();
    if (b == NULL) {
        evhttp_send_error(req, 500, "out of memory");
        return;
    }
    render(b, m);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                      "text/plain; version=0.0.4; charset=utf-8");
    evhttp_send_reply(req, 200, "OK", b);
    evbuffer_free(b);
}

static void other_cb(struct evhttp_request *req, void *arg)
{
    (void)arg;
    evhttp_send_error(req, 404, "only /metrics");
}

struct gw_metrics *gw_metrics_new(struct event_base *base, const char *listen,
                                  const struct gw_metrics_sources *src, char *err, size_t errlen)
{
    struct gw_metrics *m = gw_calloc(1, sizeof(*m));
    char host[256];
    uint16_t port;

    if (m == NULL) {
        snprintf(err, errlen, "[metrics] listen: out of memory");
        return NULL;
    }
    m->src = *src;
    if (gw_config_split_hostport(listen, host, sizeof(host), &port) != 0 ||
        (m->http = evhttp_new(base)) == NULL) {
        snprintf(err, errlen, "[metrics] listen: cannot create the listener");
        gw_metrics_free(m);
        return NULL;
    }
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
    GW_LOG(GW_LOG_INFO, "metrics", NULL, "metrics on http://%s/metrics", listen);
    return m;
}

void gw_metrics_free(struct gw_metrics *m)
{
    if (m == NULL)
        return;
    if (m->http != NULL)
        evhttp_free(m->http);
    gw_free(m);
}
