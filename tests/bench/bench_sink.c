/* bench_sink: a carrier backend for benchmarks (tests/bench/forward_bench.py): it serves
 * CarrierBackend.Deliver (proto/waygate/v1/backend.proto) over mTLS and accepts every delivery,
 * at a small fraction of the CPU of the dev stack's reference sink (deploy/backend-sink, Python),
 * so that a benchmark sharing the machine with it measures the gateway, not the sink.
 *
 *   bench_sink --listen HOST:PORT --ca CA --cert CRT --key KEY --log FILE
 *              [--client-cn NAME] [--pidfile FILE] [--views]
 *
 * The flags mirror deploy/backend-sink serve (no control file: this sink only accepts). The
 * connections, TLS and HTTP/2 are the gateway's own transport layer (gateway/transport: server,
 * tls, h2, grpc framing): a client certificate chaining to CA is required (the transport's TLS
 * policy); with --client-cn its common name must be NAME, else the call is answered
 * PERMISSION_DENIED. The gateway's rpc layer (identity, policy) is not used: the sink has no
 * principals, one method, and no handler beyond answering.
 *
 * The log (FILE, appended): one text line per delivery answered,
 *   D DELIVERY_ID KIND RECORD_ID ENQUEUED_AT_US RECEIVED_AT_US [VIEW]
 * KIND the DeliveryKind number, RECEIVED_AT_US the wall clock when the call's request had
 * arrived; with --views, VIEW is the base64 of the waybill view's encoding as received ("-" when
 * absent), for tests that check what the backend is given. Identifiers are written with any byte
 * outside [A-Za-z0-9_.-] replaced by '?', so a line is always six or seven fields. Duplicates are
 * left to the reader (same DELIVERY_ID twice): the sink keeps nothing per delivery once answered.
 * The log is buffered and flushed every 200 ms, and at exit (SIGTERM, SIGINT).
 *
 * Invariants: memory is bounded by the open streams (one request each, max_message_size); the
 * pidfile is written only once the listener is bound, so its presence means "serving". */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <openssl/evp.h>

#include "alloc.h"
#include "config.h"
#include "grpc.h"
#include "h2.h"
#include "log.h"
#include "server.h"
#include "tls.h"
#include "waygate/v1/backend.pb-c.h"

#define SINK_PATH "/waygate.v1.CarrierBackend/Deliver"
#define SINK_FLUSH_MS 200
#define SINK_MAX_MESSAGE (16u * 1024u * 1024u)
#define SINK_LOGBUF (1u << 20)

struct sink {
    struct event_base *base;
    struct gw_server *server;
    FILE *log;
    const char *client_cn; /* NULL: any certificate chaining to the CA */
    int views;
    uint64_t delivered;
};

struct sink_stream {
    struct sink *s;
    struct gw_h2_stream *st;
    struct gw_grpc_decoder dec;
    int answered;
};

static int64_t sink_now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Writes s as one log field: "-" when empty, unsafe bytes as '?'. */
static void sink_put_id(FILE *f, const char *s)
{
    const char *p;

    if (s == NULL || s[0] == '\0') {
        fputc('-', f);
        return;
    }
    for (p = s; *p != '\0'; p++) {
        char c = *p;
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                 c == '-' || c == '_' || c == '.';
        fputc(ok ? c : '?', f);
    }
}

/* The waybill view's encoding as base64 (--views). */
static void sink_put_view(FILE *f, const Waygate__V1__WaybillView *v)
{
    size_t n, enc;
    uint8_t *pb;
    unsigned char *b64;

    if (v == NULL) {
        fputs(" -", f);
        return;
    }
    n = waygate__v1__waybill_view__get_packed_size(v);
    pb = gw_malloc(n + 1);
    b64 = gw_malloc(4 * (n / 3 + 1) + 1);
    if (pb == NULL || b64 == NULL) {
        gw_free(pb);
        gw_free(b64);
        fputs(" -", f);
        return;
    }
    waygate__v1__waybill_view__pack(v, pb);
    enc = (size_t)EVP_EncodeBlock(b64, pb, (int)n);
    fputc(' ', f);
    fwrite(b64, 1, enc, f);
    gw_free(pb);
    gw_free(b64);
}

static void sink_log_delivery(struct sink *s, const Waygate__V1__Delivery *d, int64_t now_us)
{
    fputs("D ", s->log);
    sink_put_id(s->log, d->delivery_id);
    fprintf(s->log, " %d ", (int)d->kind);
    sink_put_id(s->log, d->record_id);
    fprintf(s->log, " %lld %lld", (long long)d->enqueued_at_us, (long long)now_us);
    if (s->views)
        sink_put_view(s->log, d->waybill);
    fputc('\n', s->log);
    s->delivered++;
}

/* One complete request: every delivery ACCEPTED, logged, answered. */
static void sink_answer(struct sink_stream *ss, const uint8_t *msg, size_t len)
{
    Waygate__V1__DeliverRequest *req;
    Waygate__V1__DeliverResponse resp = WAYGATE__V1__DELIVER_RESPONSE__INIT;
    Waygate__V1__DeliveryResult *results = NULL;
    Waygate__V1__DeliveryResult **ptrs = NULL;
    int64_t now_us = sink_now_us();
    size_t i, n, plen;
    uint8_t *out;

    ss->answered = 1;
    req = waygate__v1__deliver_request__unpack(NULL, len, msg);
    if (req == NULL) {
        gw_h2_stream_finish(ss->st, GW_GRPC_INVALID_ARGUMENT,
                            "request: not a DeliverRequest (protobuf decoding failed)");
        return;
    }
    n = req->n_deliveries;
    if (n > 0) {
        results = gw_calloc(n, sizeof(*results));
        ptrs = gw_calloc(n, sizeof(*ptrs));
        if (results == NULL || ptrs == NULL) {
            gw_h2_stream_finish(ss->st, GW_GRPC_RESOURCE_EXHAUSTED, "sink: out of memory");
            goto done;
        }
    }
    for (i = 0; i < n; i++) {
        const Waygate__V1__Delivery *d = req->deliveries[i];

        waygate__v1__delivery_result__init(&results[i]);
        results[i].delivery_id = d->delivery_id;
        results[i].outcome = WAYGATE__V1__DELIVERY_RESULT__OUTCOME__OUTCOME_ACCEPTED;
        ptrs[i] = &results[i];
        sink_log_delivery(ss->s, d, now_us);
    }
    resp.n_results = n;
    resp.results = ptrs;
    plen = waygate__v1__deliver_response__get_packed_size(&resp);
    out = gw_h2_stream_reserve(ss->st, plen);
    if (out == NULL) {
        gw_h2_stream_finish(ss->st, GW_GRPC_RESOURCE_EXHAUSTED, "sink: response not queued");
        goto done;
    }
    waygate__v1__deliver_response__pack(&resp, out);
    if (gw_h2_stream_commit(ss->st, plen) != 0) {
        gw_h2_stream_finish(ss->st, GW_GRPC_RESOURCE_EXHAUSTED, "sink: response not queued");
        goto done;
    }
    gw_h2_stream_finish(ss->st, GW_GRPC_OK, NULL);
done:
    gw_free(results);
    gw_free(ptrs);
    waygate__v1__deliver_request__free_unpacked(req, NULL);
}

static int sink_msg_cb(void *arg, const uint8_t *msg, size_t len)
{
    struct sink_stream *ss = arg;

    if (!ss->answered)
        sink_answer(ss, msg, len);
    return 0;
}

static void *sink_open(void *ctx, struct gw_h2_stream *st, const struct gw_grpc_headers *hdrs,
                       uint64_t timeout_ms)
{
    struct sink *s = ctx;
    const struct gw_peer *peer = gw_h2_stream_peer(st);
    struct sink_stream *ss;

    (void)timeout_ms;
    if (strcmp(hdrs->path, SINK_PATH) != 0) {
        gw_h2_stream_finish(st, GW_GRPC_UNIMPLEMENTED, "method: not served by bench_sink");
        return NULL;
    }
    if (s->client_cn != NULL && (!peer->cert || strcmp(peer->cert_cn, s->client_cn) != 0)) {
        gw_h2_stream_finish(st, GW_GRPC_PERMISSION_DENIED,
                            "client certificate: common name is not the one this sink serves");
        return NULL;
    }
    ss = gw_calloc(1, sizeof(*ss));
    if (ss == NULL)
        return NULL; /* the session answers RESOURCE_EXHAUSTED */
    ss->s = s;
    ss->st = st;
    gw_grpc_decoder_init(&ss->dec, SINK_MAX_MESSAGE);
    return ss;
}

static void sink_data(void *obj, const uint8_t *data, size_t len)
{
    struct sink_stream *ss = obj;
    int rc;

    if (ss->answered)
        return;
    rc = gw_grpc_decoder_feed(&ss->dec, data, len, sink_msg_cb, ss);
    if (rc != 0 && !ss->answered) {
        ss->answered = 1;
        gw_h2_stream_finish(
            ss->st, rc == GW_ETOOBIG ? GW_GRPC_RESOURCE_EXHAUSTED : GW_GRPC_INVALID_ARGUMENT,
            "request: malformed or oversized gRPC message");
    }
}

static void sink_end(void *obj)
{
    struct sink_stream *ss = obj;

    if (!ss->answered) {
        ss->answered = 1;
        gw_h2_stream_finish(ss->st, GW_GRPC_INVALID_ARGUMENT,
                            "request: a unary call needs exactly one message");
    }
}

static void sink_writable(void *obj)
{
    (void)obj; /* one small response per call: nothing waits for room */
}

static void sink_close(void *obj)
{
    struct sink_stream *ss = obj;

    gw_grpc_decoder_clear(&ss->dec);
    gw_free(ss);
}

static void sink_flush_cb(evutil_socket_t fd, short what, void *arg)
{
    struct sink *s = arg;

    (void)fd;
    (void)what;
    fflush(s->log);
}

static void sink_signal_cb(evutil_socket_t fd, short what, void *arg)
{
    struct sink *s = arg;

    (void)fd;
    (void)what;
    event_base_loopbreak(s->base);
}

static int usage(void)
{
    fprintf(stderr, "usage: bench_sink --listen HOST:PORT --ca CA --cert CRT --key KEY --log FILE "
                    "[--client-cn NAME] [--pidfile FILE] [--views]\n");
    return 2;
}

/* The transport's configuration: the gateway's defaults for what the server, TLS and HTTP/2
 * layers read (config.c), with a larger message cap (a whole batch is one message). */
static void sink_config(struct gw_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->max_connections = 1024;
    cfg->max_concurrent_streams = 100;
    cfg->max_header_list_size = 16384;
    cfg->max_message_size = SINK_MAX_MESSAGE;
    cfg->request_memory_per_connection = 10u * SINK_MAX_MESSAGE;
    cfg->request_memory = 10u * SINK_MAX_MESSAGE;
    cfg->handshake_timeout_ms = 10000;
    cfg->preauth_timeout_ms = 3000;
    cfg->max_preauth_per_address = 32;
    cfg->accept_rate_per_address = 64;
    cfg->idle_timeout_ms = 300000;
    cfg->stream_write_timeout_ms = 30000;
    cfg->drain_timeout_ms = 1000;
    cfg->max_deadline_ms = 60000;
}

static int write_pidfile(const char *path)
{
    char tmp[4096];
    FILE *f;

    if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp))
        return -1;
    f = fopen(tmp, "w");
    if (f == NULL)
        return -1;
    fprintf(f, "%ld\n", (long)getpid());
    if (fclose(f) != 0)
        return -1;
    return rename(tmp, path);
}

int main(int argc, char **argv)
{
    struct gw_config cfg;
    struct sink s;
    struct gw_tls *tls = NULL;
    struct gw_h2_upcalls up;
    struct event *flush_ev = NULL, *term_ev = NULL, *int_ev = NULL;
    struct timeval flush_tv = {0, SINK_FLUSH_MS * 1000};
    const char *logpath = NULL, *pidfile = NULL;
    char err[256], addr[80];
    int i, rc = 1;

    memset(&s, 0, sizeof(s));
    sink_config(&cfg);
    for (i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

        if (strcmp(a, "--views") == 0) {
            s.views = 1;
            continue;
        }
        if (v == NULL)
            return usage();
        if (strcmp(a, "--listen") == 0)
            cfg.listen = argv[++i];
        else if (strcmp(a, "--ca") == 0)
            cfg.tls_client_ca = argv[++i];
        else if (strcmp(a, "--cert") == 0)
            cfg.tls_cert = argv[++i];
        else if (strcmp(a, "--key") == 0)
            cfg.tls_key = argv[++i];
        else if (strcmp(a, "--log") == 0)
            logpath = argv[++i];
        else if (strcmp(a, "--client-cn") == 0)
            s.client_cn = argv[++i];
        else if (strcmp(a, "--pidfile") == 0)
            pidfile = argv[++i];
        else
            return usage();
    }
    if (cfg.listen == NULL || cfg.tls_client_ca == NULL || cfg.tls_cert == NULL ||
        cfg.tls_key == NULL || logpath == NULL)
        return usage();

    gw_log_level = GW_LOG_WARN;
    if (signal(SIGPIPE, SIG_IGN) == SIG_ERR)
        return 1;
    s.log = fopen(logpath, "a");
    if (s.log == NULL) {
        fprintf(stderr, "bench_sink: %s: %s\n", logpath, strerror(errno));
        return 1;
    }
    setvbuf(s.log, NULL, _IOFBF, SINK_LOGBUF);
    s.base = event_base_new();
    if (s.base == NULL)
        goto out;
    tls = gw_tls_new(&cfg, err, sizeof(err));
    if (tls == NULL) {
        fprintf(stderr, "bench_sink: %s\n", err);
        goto out;
    }
    up = (struct gw_h2_upcalls){.open = sink_open,
                                .data = sink_data,
                                .end = sink_end,
                                .writable = sink_writable,
                                .close = sink_close,
                                .ctx = &s};
    s.server = gw_server_new(&cfg, s.base, tls, &up, err, sizeof(err));
    if (s.server == NULL) {
        fprintf(stderr, "bench_sink: %s\n", err);
        goto out;
    }
    flush_ev = event_new(s.base, -1, EV_PERSIST, sink_flush_cb, &s);
    term_ev = evsignal_new(s.base, SIGTERM, sink_signal_cb, &s);
    int_ev = evsignal_new(s.base, SIGINT, sink_signal_cb, &s);
    if (flush_ev == NULL || term_ev == NULL || int_ev == NULL ||
        event_add(flush_ev, &flush_tv) != 0 || evsignal_add(term_ev, NULL) != 0 ||
        evsignal_add(int_ev, NULL) != 0)
        goto out;
    if (pidfile != NULL && write_pidfile(pidfile) != 0) {
        fprintf(stderr, "bench_sink: %s: %s\n", pidfile, strerror(errno));
        goto out;
    }
    gw_server_address(s.server, 0, addr, sizeof(addr));
    fprintf(stderr, "bench_sink: serving on %s\n", addr);
    event_base_dispatch(s.base);
    fprintf(stderr, "bench_sink: stopping after %llu deliveries\n",
            (unsigned long long)s.delivered);
    rc = 0;
out:
    gw_server_free(s.server);
    if (flush_ev != NULL)
        event_free(flush_ev);
    if (term_ev != NULL)
        event_free(term_ev);
    if (int_ev != NULL)
        event_free(int_ev);
    gw_tls_free(tls);
    if (s.base != NULL)
        event_base_free(s.base);
    if (fclose(s.log) != 0)
        rc = 1;
    if (pidfile != NULL && rc == 0)
        unlink(pidfile);
    return rc;
}
