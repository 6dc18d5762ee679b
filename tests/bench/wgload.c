/* wgload.c: a gRPC load generator for waygate.v1.WaybillIntake (Submit, SubmitBatch) over mTLS
 * and HTTP/2 that presents a client certificate (h2load cannot). C connections keep S streams
 * each in flight (closed loop); every response's HTTP status, grpc-status and, for batches, every
 * item's code is checked. One thread, one libevent loop, libnghttp2 1.52 API; its own CPU time
 * (getrusage) is reported apart from the server's. Waybill numbers are used once each, in order,
 * from --first within the segment; `next=` in the RESULT line is the first unused one. */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <nghttp2/nghttp2.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "synth.h"
#include "waygate/v1/intake.pb-c.h"

#define MAX_RESP (64u << 20) /* bytes of one response body we are willing to buffer */
#define NCODES 17            /* gRPC status codes 0..16 */
#define NSAMPLES 6           /* distinct error messages kept for the report */

static const char *const code_names[NCODES] = {
    "OK",        "CANCELLED",      "UNKNOWN",           "INVALID_ARGUMENT",   "DEADLINE_EXCEEDED",
    "NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
    "ABORTED",   "OUT_OF_RANGE",   "UNIMPLEMENTED",     "INTERNAL",           "UNAVAILABLE",
    "DATA_LOSS", "UNAUTHENTICATED"};

struct opts {
    const char *addr, *ca, *cert, *key, *servername, *origin_branch, *path;
    char prefix[24];
    uint64_t seg_from, seg_to, first;
    int width, conns, streams, batch, dump;
    double duration, warmup;
    long long requests;
    long timeout_ms;
    uint64_t seed;
};

/* Failures, whatever the phase they happen in: any of them makes the exit status 1. */
struct errs {
    uint64_t grpc[NCODES + 1]; /* call-level grpc-status != 0; [NCODES] = out of range */
    uint64_t item[NCODES + 1]; /* per-item codes != 0 in SubmitBatch responses */
    uint64_t http, reset, nostatus, decode, conn, unfinished, exhausted;
};

enum phase { PH_CONNECT, PH_WARMUP, PH_MEASURE, PH_DRAIN, PH_DONE };

struct load;

struct req {
    struct conn *c;
    struct req *prev, *next; /* the connection's in-flight list */
    int32_t sid;
    uint32_t nwb;
    double t0;
    uint8_t *body;
    size_t blen, boff;
    uint8_t *resp;
    size_t rlen, rcap;
    int http, grpc;
    char msg[128];
};

struct conn {
    struct load *L;
    struct bufferevent *bev;
    nghttp2_session *ng;
    struct req *reqs;
    int inflight;
    bool ready, dead, goaway;
};

struct load {
    struct opts o;
    struct event_base *base;
    SSL_CTX *ssl;
    struct sockaddr_storage sa;
    socklen_t salen;
    char authority[300], timeout_hdr[32];
    struct conn *conns;
    int nready;
    struct wl_synth_cfg scfg;
    struct wl_synth *synth;
    Waygate__V1__Waybill **wbp;
    uint64_t next_no;
    long long issued;
    long inflight;
    enum phase phase;
    bool count_mode;
    struct event *ev_timer;
    double t_start, t_meas0, t_meas1;
    struct rusage ru0, ru1;
    /* measured window */
    uint64_t m_req_ok, m_wb_ok;
    uint32_t *lat_us;
    size_t nlat, caplat;
    /* whole run */
    uint64_t all_wb_ok, all_dup;
    struct errs e;
    char samples[NSAMPLES][160];
    int nsamples;
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double rusage_s(const struct rusage *r)
{
    return (double)r->ru_utime.tv_sec + (double)r->ru_utime.tv_usec / 1e6 +
           (double)r->ru_stime.tv_sec + (double)r->ru_stime.tv_usec / 1e6;
}

/* Keeps up to NSAMPLES distinct error descriptions: what, then detail (a gRPC message names a
 * field and a rule, never a value). */
static void sample(struct load *L, const char *what, const char *detail)
{
    char line[160];
    snprintf(line, sizeof line, "%s%s", what, detail);
    for (int i = 0; i < L->nsamples; i++)
        if (strcmp(L->samples[i], line) == 0)
            return;
    if (L->nsamples < NSAMPLES)
        snprintf(L->samples[L->nsamples++], sizeof L->samples[0], "%s", line);
}

static void ssl_errors(const char *what)
{
    unsigned long e;
    char buf[256];
    fprintf(stderr, "wgload: %s\n", what);
    while ((e = ERR_get_error()) != 0) {
        ERR_error_string_n(e, buf, sizeof buf);
        fprintf(stderr, "  %s\n", buf);
    }
}

/* ---- request building ---- */

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* Packs the next nwb synthetic waybills into a length-prefixed gRPC message. */
static int build_body(struct load *L, struct req *r)
{
    for (uint32_t i = 0; i < r->nwb; i++) {
        if (wl_synth_fill(&L->synth[i], &L->scfg, L->next_no + i) != 0)
            return -1;
        L->wbp[i] = &L->synth[i].wb;
    }
    L->next_no += r->nwb;

    size_t n;
    Waygate__V1__SubmitRequest sr = WAYGATE__V1__SUBMIT_REQUEST__INIT;
    Waygate__V1__SubmitBatchRequest br = WAYGATE__V1__SUBMIT_BATCH_REQUEST__INIT;
    if (L->o.batch) {
        br.n_waybills = r->nwb;
        br.waybills = L->wbp;
        n = waygate__v1__submit_batch_request__get_packed_size(&br);
    } else {
        sr.waybill = L->wbp[0];
        n = waygate__v1__submit_request__get_packed_size(&sr);
    }
    r->body = malloc(5 + n);
    if (!r->body)
        return -1;
    r->body[0] = 0;
    put_be32(r->body + 1, (uint32_t)n);
    if (L->o.batch)
        waygate__v1__submit_batch_request__pack(&br, r->body + 5);
    else
        waygate__v1__submit_request__pack(&sr, r->body + 5);
    r->blen = 5 + n;
    return 0;
}

static ssize_t body_read_cb(nghttp2_session *s, int32_t sid, uint8_t *buf, size_t len,
                            uint32_t *flags, nghttp2_data_source *src, void *ud)
{
    struct req *r = src->ptr;
    size_t n = r->blen - r->boff;
    if (n > len)
        n = len;
    memcpy(buf, r->body + r->boff, n);
    r->boff += n;
    if (r->boff == r->blen)
        *flags |= NGHTTP2_DATA_FLAG_EOF;
    return (ssize_t)n;
}

#define NV(n, v)                                                                                   \
    {                                                                                              \
        (uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, strlen(v),                                  \
            NGHTTP2_NV_FLAG_NO_COPY_NAME | NGHTTP2_NV_FLAG_NO_COPY_VALUE                           \
    }

static void req_free(struct req *r)
{
    if (!r)
        return;
    free(r->body);
    free(r->resp);
    free(r);
}

/* Opens one stream carrying the next waybills; returns 0, or -1 (nothing was issued). */
static int submit_one(struct conn *c)
{
    struct load *L = c->L;
    uint32_t nwb = L->o.batch ? (uint32_t)L->o.batch : 1;
    if (L->next_no + nwb - 1 > L->o.seg_to || L->next_no + nwb - 1 < L->next_no) {
        if (!L->e.exhausted)
            fprintf(stderr, "wgload: segment exhausted at %" PRIu64 "\n", L->next_no);
        L->e.exhausted = 1;
        return -1;
    }
    struct req *r = calloc(1, sizeof *r);
    if (!r || (r->nwb = nwb, build_body(L, r) != 0)) {
        req_free(r);
        fprintf(stderr, "wgload: cannot build a request\n");
        L->e.exhausted = 1; /* stops issuing; counted as a failure */
        return -1;
    }
    r->c = c;
    r->grpc = -1;
    nghttp2_nv hdrs[8] = {
        NV(":method", "POST"),
        NV(":scheme", "https"),
        NV(":authority", L->authority),
        NV(":path", L->o.path),
        NV("content-type", "application/grpc"),
        NV("te", "trailers"),
        NV("user-agent", "wgload/1"),
        NV("grpc-timeout", L->timeout_hdr),
    };
    size_t nh = L->timeout_hdr[0] ? 8 : 7;
    nghttp2_data_provider prd = {.source.ptr = r, .read_callback = body_read_cb};
    r->t0 = now_s();
    int32_t sid = nghttp2_submit_request(c->ng, NULL, hdrs, nh, &prd, r);
    if (sid < 0) {
        fprintf(stderr, "wgload: nghttp2_submit_request: %s\n", nghttp2_strerror(sid));
        req_free(r);
        L->e.conn++;
        c->goaway = true;
        return -1;
    }
    r->sid = sid;
    r->next = c->reqs;
    if (c->reqs)
        c->reqs->prev = r;
    c->reqs = r;
    c->inflight++;
    L->inflight++;
    L->issued++;
    return 0;
}

static bool may_issue(const struct load *L)
{
    if (L->phase != PH_WARMUP && L->phase != PH_MEASURE)
        return false;
    if (L->e.exhausted)
        return false;
    return !(L->count_mode && L->issued >= L->o.requests);
}

static void conn_fail(struct conn *c, const char *why);

static void conn_flush(struct conn *c)
{
    if (c->dead || !c->ng)
        return;
    int rv = nghttp2_session_send(c->ng);
    if (rv != 0)
        conn_fail(c, nghttp2_strerror(rv));
}

static void conn_fill(struct conn *c)
{
    while (!c->dead && c->ready && !c->goaway && c->inflight < c->L->o.streams && may_issue(c->L))
        if (submit_one(c) != 0)
            break;
    conn_flush(c);
}

/* ---- finishing ---- */

static void finish_run(struct load *L)
{
    if (L->phase == PH_DONE)
        return;
    if (L->count_mode || L->t_meas1 == 0) {
        L->t_meas1 = now_s();
        getrusage(RUSAGE_SELF, &L->ru1);
    }
    L->phase = PH_DONE;
    for (int i = 0; i < L->o.conns; i++) {
        struct conn *c = &L->conns[i];
        if (!c->dead && c->ng) {
            nghttp2_session_terminate_session(c->ng, NGHTTP2_NO_ERROR);
            conn_flush(c);
        }
    }
    struct timeval tv = {0, 50000}; /* let the GOAWAYs go out */
    event_base_loopexit(L->base, &tv);
}

static void maybe_done(struct load *L)
{
    if (L->phase == PH_MEASURE && L->count_mode && !may_issue(L) && L->inflight == 0)
        finish_run(L);
    else if (L->phase == PH_DRAIN && L->inflight == 0)
        finish_run(L);
    else if ((L->phase == PH_WARMUP || L->phase == PH_MEASURE) && L->e.exhausted &&
             L->inflight == 0)
        finish_run(L);
}

static void record_latency(struct load *L, double sec)
{
    if (L->nlat == L->caplat) {
        size_t cap = L->caplat ? L->caplat * 2 : 65536;
        uint32_t *p = realloc(L->lat_us, cap * sizeof *p);
        if (!p)
            return;
        L->lat_us = p;
        L->caplat = cap;
    }
    double us = sec * 1e6;
    L->lat_us[L->nlat++] = us > 4e9 ? 4000000000u : (uint32_t)us;
}

static uint32_t get_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Checks a completed call; returns -1 when the call failed, else the number of waybills it got
 * accepted (items of a batch refused one by one are counted in L->e.item). */
static long check_response(struct load *L, struct req *r, uint32_t error_code)
{
    if (error_code != NGHTTP2_NO_ERROR && r->grpc < 0) {
        L->e.reset++;
        sample(L, "stream reset: ", nghttp2_http2_strerror(error_code));
        return -1;
    }
    if (r->http != 200) {
        L->e.http++;
        char s[16];
        snprintf(s, sizeof s, "%d", r->http);
        sample(L, "HTTP status ", s);
        return -1;
    }
    if (r->grpc < 0) {
        L->e.nostatus++;
        sample(L, "no grpc-status", "");
        return -1;
    }
    if (r->grpc != 0) {
        L->e.grpc[r->grpc < NCODES ? r->grpc : NCODES]++;
        char w[40];
        snprintf(w, sizeof w, "%s: ", r->grpc < NCODES ? code_names[r->grpc] : "?");
        sample(L, w, r->msg);
        return -1;
    }
    if (r->rlen < 5 || r->resp[0] != 0 || get_be32(r->resp + 1) != r->rlen - 5) {
        L->e.decode++;
        sample(L, "bad gRPC framing of the response", "");
        return -1;
    }
    if (!L->o.batch) {
        Waygate__V1__SubmitResponse *m =
            waygate__v1__submit_response__unpack(NULL, r->rlen - 5, r->resp + 5);
        if (!m || !m->id || !m->id[0]) {
            L->e.decode++;
            sample(L, "SubmitResponse without id", "");
            if (m)
                waygate__v1__submit_response__free_unpacked(m, NULL);
            return -1;
        }
        L->all_dup += m->duplicate;
        waygate__v1__submit_response__free_unpacked(m, NULL);
        return 1;
    }
    Waygate__V1__SubmitBatchResponse *m =
        waygate__v1__submit_batch_response__unpack(NULL, r->rlen - 5, r->resp + 5);
    if (!m || m->n_results != r->nwb) {
        L->e.decode++;
        sample(L, "SubmitBatchResponse: wrong number of results", "");
        if (m)
            waygate__v1__submit_batch_response__free_unpacked(m, NULL);
        return -1;
    }
    long ok = 0;
    for (size_t i = 0; i < m->n_results; i++) {
        const Waygate__V1__ItemResult *it = m->results[i];
        if (it->code == 0 && it->id && it->id[0]) {
            ok++;
            L->all_dup += it->duplicate;
        } else {
            int code = it->code;
            L->e.item[code >= 0 && code < NCODES ? code : NCODES]++;
            char w[48];
            snprintf(w, sizeof w, "item %s: ", code > 0 && code < NCODES ? code_names[code] : "?");
            sample(L, w, it->message ? it->message : "");
        }
    }
    waygate__v1__submit_batch_response__free_unpacked(m, NULL);
    return ok;
}

static void complete(struct load *L, struct req *r, uint32_t error_code)
{
    double t = now_s();
    long ok = check_response(L, r, error_code);
    if (ok < 0)
        return;
    L->all_wb_ok += (uint64_t)ok;
    if (L->phase == PH_MEASURE || (L->phase == PH_DRAIN && L->count_mode)) {
        L->m_wb_ok += (uint64_t)ok;
        L->m_req_ok++;
        record_latency(L, t - r->t0);
    }
}

/* ---- nghttp2 callbacks ---- */

static ssize_t send_cb(nghttp2_session *s, const uint8_t *data, size_t len, int flags, void *ud)
{
    struct conn *c = ud;
    if (bufferevent_write(c->bev, data, len) != 0)
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    return (ssize_t)len;
}

static int header_cb(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags, void *ud)
{
    if (f->hd.type != NGHTTP2_HEADERS)
        return 0;
    struct req *r = nghttp2_session_get_stream_user_data(s, f->hd.stream_id);
    if (!r)
        return 0;
    if (namelen == 7 && memcmp(name, ":status", 7) == 0) {
        r->http = atoi((const char *)value);
    } else if (namelen == 11 && memcmp(name, "grpc-status", 11) == 0) {
        char v[8];
        size_t n = valuelen < sizeof v - 1 ? valuelen : sizeof v - 1;
        memcpy(v, value, n);
        v[n] = '\0';
        r->grpc = (n > 0 && n < 4) ? atoi(v) : NCODES;
    } else if (namelen == 12 && memcmp(name, "grpc-message", 12) == 0) {
        /* percent-encoded field path and rule; never a value (SPEC) */
        size_t n = valuelen < sizeof r->msg - 1 ? valuelen : sizeof r->msg - 1;
        memcpy(r->msg, value, n);
        r->msg[n] = '\0';
    }
    return 0;
}

static int data_cb(nghttp2_session *s, uint8_t flags, int32_t sid, const uint8_t *data, size_t len,
                   void *ud)
{
    struct req *r = nghttp2_session_get_stream_user_data(s, sid);
    if (!r)
        return 0;
    if (r->rlen + len > MAX_RESP)
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    if (r->rlen + len > r->rcap) {
        size_t cap = r->rcap ? r->rcap : 256;
        while (cap < r->rlen + len)
            cap *= 2;
        uint8_t *p = realloc(r->resp, cap);
        if (!p)
            return NGHTTP2_ERR_CALLBACK_FAILURE;
        r->resp = p;
        r->rcap = cap;
    }
    memcpy(r->resp + r->rlen, data, len);
    r->rlen += len;
    return 0;
}

static void unlink_req(struct conn *c, struct req *r)
{
    if (r->prev)
        r->prev->next = r->next;
    else
        c->reqs = r->next;
    if (r->next)
        r->next->prev = r->prev;
    c->inflight--;
    c->L->inflight--;
}

static int close_cb(nghttp2_session *s, int32_t sid, uint32_t error_code, void *ud)
{
    struct conn *c = ud;
    struct req *r = nghttp2_session_get_stream_user_data(s, sid);
    if (!r || c->dead)
        return 0;
    nghttp2_session_set_stream_user_data(s, sid, NULL);
    unlink_req(c, r);
    complete(c->L, r, error_code);
    req_free(r);
    return 0;
}

static int frame_recv_cb(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
    struct conn *c = ud;
    struct load *L = c->L;
    if (f->hd.type == NGHTTP2_SETTINGS && !(f->hd.flags & NGHTTP2_FLAG_ACK) && !c->ready) {
        c->ready = true;
        uint32_t max =
            nghttp2_session_get_remote_settings(s, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS);
        if ((uint32_t)L->o.streams > max)
            fprintf(stderr,
                    "wgload: server allows %u streams per connection; asked for %d "
                    "(the rest wait inside the client)\n",
                    max, L->o.streams);
        L->nready++;
    } else if (f->hd.type == NGHTTP2_GOAWAY) {
        c->goaway = true;
        if (L->phase != PH_DONE && f->goaway.error_code != NGHTTP2_NO_ERROR) {
            L->e.conn++;
            sample(L, "GOAWAY ", nghttp2_http2_strerror(f->goaway.error_code));
        }
    }
    return 0;
}

/* ---- libevent glue ---- */

static void conn_fail(struct conn *c, const char *why)
{
    struct load *L = c->L;
    if (c->dead)
        return;
    c->dead = true;
    if (L->phase != PH_DONE) {
        L->e.conn++;
        sample(L, "connection lost: ", why);
        L->e.unfinished += (uint64_t)c->inflight;
    }
    while (c->reqs) {
        struct req *r = c->reqs;
        unlink_req(c, r);
        req_free(r);
    }
    if (c->ready)
        L->nready--;
    c->ready = false;
    nghttp2_session_del(c->ng);
    c->ng = NULL;
    bufferevent_free(c->bev);
    c->bev = NULL;
    if (L->phase == PH_CONNECT) {
        fprintf(stderr, "wgload: connection failed before the run: %s\n", why);
        event_base_loopbreak(L->base);
        return;
    }
    maybe_done(L);
}

static void start_phase(struct load *L);

static void read_cb(struct bufferevent *bev, void *arg)
{
    struct conn *c = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    struct evbuffer_iovec v[16];
    while (!c->dead && evbuffer_get_length(in) > 0) {
        int n = evbuffer_peek(in, -1, NULL, v, 16);
        size_t used = 0;
        for (int i = 0; i < n && i < 16; i++) {
            ssize_t rv = nghttp2_session_mem_recv(c->ng, v[i].iov_base, v[i].iov_len);
            if (rv < 0) {
                conn_fail(c, nghttp2_strerror((int)rv));
                return;
            }
            used += (size_t)rv;
        }
        evbuffer_drain(in, used);
    }
    struct load *L = c->L;
    if (L->phase == PH_CONNECT && L->nready == L->o.conns)
        start_phase(L);
    conn_fill(c);
    maybe_done(L);
}

static void event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct conn *c = arg;
    struct load *L = c->L;
    if (what & BEV_EVENT_CONNECTED) {
        SSL *ssl = bufferevent_openssl_get_ssl(bev);
        const unsigned char *alpn = NULL;
        unsigned alpnlen = 0;
        SSL_get0_alpn_selected(ssl, &alpn, &alpnlen);
        if (alpnlen != 2 || memcmp(alpn, "h2", 2) != 0) {
            conn_fail(c, "server did not select ALPN h2");
            return;
        }
        int one = 1;
        setsockopt(bufferevent_getfd(bev), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        nghttp2_session_callbacks *cbs;
        if (nghttp2_session_callbacks_new(&cbs) != 0) {
            conn_fail(c, "out of memory");
            return;
        }
        nghttp2_session_callbacks_set_send_callback(cbs, send_cb);
        nghttp2_session_callbacks_set_on_header_callback(cbs, header_cb);
        nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, data_cb);
        nghttp2_session_callbacks_set_on_stream_close_callback(cbs, close_cb);
        nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, frame_recv_cb);
        int rv = nghttp2_session_client_new(&c->ng, cbs, c);
        nghttp2_session_callbacks_del(cbs);
        if (rv != 0) {
            conn_fail(c, nghttp2_strerror(rv));
            return;
        }
        nghttp2_settings_entry iv[] = {
            {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, 100},
            {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, 1u << 20},
            {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
        };
        if (nghttp2_submit_settings(c->ng, NGHTTP2_FLAG_NONE, iv, 3) != 0 ||
            nghttp2_session_set_local_window_size(c->ng, NGHTTP2_FLAG_NONE, 0, 1 << 24) != 0) {
            conn_fail(c, "cannot send SETTINGS");
            return;
        }
        conn_flush(c);
        return;
    }
    char why[300] = "";
    if (what & BEV_EVENT_EOF)
        snprintf(why, sizeof why, "closed by the server");
    else if (what & BEV_EVENT_TIMEOUT)
        snprintf(why, sizeof why, "timeout");
    else {
        unsigned long e = bufferevent_get_openssl_error(bev);
        if (e && ERR_GET_LIB(e) != 0) {
            ERR_error_string_n(e, why, sizeof why);
        } else {
            int err = EVUTIL_SOCKET_ERROR();
            snprintf(why, sizeof why, "%s",
                     err ? evutil_socket_error_to_string(err) : "closed without TLS close_notify");
        }
    }
    if (L->phase == PH_DONE)
        return;
    conn_fail(c, why);
}

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct load *L = arg;
    struct timeval tv;
    switch (L->phase) {
    case PH_WARMUP:
        L->phase = PH_MEASURE;
        L->t_meas0 = now_s();
        getrusage(RUSAGE_SELF, &L->ru0);
        if (!L->count_mode) {
            tv.tv_sec = (time_t)L->o.duration;
            tv.tv_usec = (suseconds_t)((L->o.duration - (double)tv.tv_sec) * 1e6);
            evtimer_add(L->ev_timer, &tv);
        }
        for (int i = 0; i < L->o.conns; i++)
            conn_fill(&L->conns[i]);
        break;
    case PH_MEASURE:
        L->phase = PH_DRAIN;
        L->t_meas1 = now_s();
        getrusage(RUSAGE_SELF, &L->ru1);
        tv.tv_sec = 15;
        tv.tv_usec = 0;
        evtimer_add(L->ev_timer, &tv); /* grace for the calls still in flight */
        maybe_done(L);
        break;
    case PH_DRAIN:
        fprintf(stderr, "wgload: %ld calls did not finish within 15 s\n", L->inflight);
        L->e.unfinished += (uint64_t)L->inflight;
        finish_run(L);
        break;
    default:
        break;
    }
}

static void start_phase(struct load *L)
{
    L->t_start = now_s();
    if (L->o.warmup > 0) {
        L->phase = PH_WARMUP;
        struct timeval tv = {(time_t)L->o.warmup,
                             (suseconds_t)((L->o.warmup - (double)(time_t)L->o.warmup) * 1e6)};
        evtimer_add(L->ev_timer, &tv);
        for (int i = 0; i < L->o.conns; i++)
            conn_fill(&L->conns[i]);
    } else {
        L->phase = PH_WARMUP;
        timer_cb(-1, 0, L); /* straight to PH_MEASURE */
    }
}

static int conn_open(struct load *L, struct conn *c)
{
    c->L = L;
    SSL *ssl = SSL_new(L->ssl);
    if (!ssl)
        return -1;
    const char *name = L->o.servername;
    unsigned char tmp[16];
    if (inet_pton(AF_INET, name, tmp) == 1 || inet_pton(AF_INET6, name, tmp) == 1) {
        if (!X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), name)) {
            SSL_free(ssl);
            return -1;
        }
    } else if (!SSL_set1_host(ssl, name) || !SSL_set_tlsext_host_name(ssl, name)) {
        SSL_free(ssl);
        return -1;
    }
    c->bev = bufferevent_openssl_socket_new(L->base, -1, ssl, BUFFEREVENT_SSL_CONNECTING,
                                            BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
    if (!c->bev) {
        SSL_free(ssl);
        return -1;
    }
    bufferevent_setcb(c->bev, read_cb, NULL, event_cb, c);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    if (bufferevent_socket_connect(c->bev, (struct sockaddr *)&L->sa, (int)L->salen) != 0)
        return -1;
    return 0;
}

/* ---- set-up and report ---- */

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static double pct_ms(const uint32_t *v, size_t n, double p)
{
    if (n == 0)
        return 0;
    size_t i = (size_t)(p * (double)(n - 1) + 0.5);
    return v[i] / 1000.0;
}

static uint64_t sum_errs(const struct errs *e)
{
    uint64_t s =
        e->http + e->reset + e->nostatus + e->decode + e->conn + e->unfinished + e->exhausted;
    for (int i = 0; i <= NCODES; i++)
        s += e->grpc[i] + e->item[i];
    return s;
}

static void print_codes(const char *label, const uint64_t *v)
{
    bool any = false;
    for (int i = 0; i <= NCODES; i++)
        if (v[i]) {
            printf("%s%s %s=%" PRIu64, any ? "," : "", any ? "" : label,
                   i < NCODES ? code_names[i] : "OTHER", v[i]);
            any = true;
        }
    if (any)
        printf("\n");
}

static int report(struct load *L)
{
    const struct opts *o = &L->o;
    double win = L->t_meas1 - L->t_meas0;
    if (win <= 0)
        win = 1e-9;
    if (L->nlat)
        qsort(L->lat_us, L->nlat, sizeof *L->lat_us, cmp_u32);
    double p50 = pct_ms(L->lat_us, L->nlat, 0.50), p90 = pct_ms(L->lat_us, L->nlat, 0.90);
    double p99 = pct_ms(L->lat_us, L->nlat, 0.99);
    double mx = L->nlat ? L->lat_us[L->nlat - 1] / 1000.0 : 0;
    double cpu = rusage_s(&L->ru1) - rusage_s(&L->ru0);
    double wps = (double)L->m_wb_ok / win, rps = (double)L->m_req_ok / win;
    uint64_t nerr = sum_errs(&L->e);
    const char *mode = o->batch ? "SubmitBatch" : "Submit";

    printf("wgload: %s of %d, %d connection(s) x %d streams = %d concurrent calls, "
           "warm-up %.1f s, measured %.2f s\n",
           mode, o->batch ? o->batch : 1, o->conns, o->streams, o->conns * o->streams, o->warmup,
           win);
    printf("  waybills/s   %.1f  (calls/s %.1f)\n", wps, rps);
    printf("  latency      p50 %.2f ms  p90 %.2f ms  p99 %.2f ms  max %.2f ms  (per call, %zu "
           "calls)\n",
           p50, p90, p99, mx, L->nlat);
    printf("  accepted     %" PRIu64 " waybills in the window, %" PRIu64 " in the whole run, "
           "%" PRIu64 " reported as duplicates\n",
           L->m_wb_ok, L->all_wb_ok, L->all_dup);
    printf("  errors       %" PRIu64 "  (http %" PRIu64 ", reset %" PRIu64
           ", no grpc-status %" PRIu64 ", undecodable %" PRIu64 ", connection %" PRIu64
           ", unfinished %" PRIu64 "%s)\n",
           nerr, L->e.http, L->e.reset, L->e.nostatus, L->e.decode, L->e.conn, L->e.unfinished,
           L->e.exhausted ? ", segment exhausted or request not buildable" : "");
    print_codes("  call status ", L->e.grpc);
    print_codes("  item status ", L->e.item);
    for (int i = 0; i < L->nsamples; i++)
        printf("  e.g.         %s\n", L->samples[i]);
    printf(
        "  client CPU   %.2f s user+sys in the window = %.0f%% of one core, %.1f us per waybill\n",
        cpu, 100.0 * cpu / win, L->m_wb_ok ? cpu * 1e6 / (double)L->m_wb_ok : 0.0);
    printf("RESULT mode=%s batch=%d conns=%d streams=%d concurrency=%d window_s=%.3f wps=%.1f "
           "cps=%.1f p50_ms=%.3f p90_ms=%.3f p99_ms=%.3f max_ms=%.3f ok_wb=%" PRIu64
           " ok_all=%" PRIu64 " errors=%" PRIu64 " dup=%" PRIu64
           " cpu_s=%.3f cpu_us_per_wb=%.2f next=%" PRIu64 "\n",
           o->batch ? "batch" : "submit", o->batch ? o->batch : 1, o->conns, o->streams,
           o->conns * o->streams, win, wps, rps, p50, p90, p99, mx, L->m_wb_ok, L->all_wb_ok, nerr,
           L->all_dup, cpu, L->m_wb_ok ? cpu * 1e6 / (double)L->m_wb_ok : 0.0, L->next_no);
    return nerr == 0 && L->m_wb_ok > 0 ? 0 : 1;
}

static void usage(FILE *f)
{
    fprintf(
        f,
        "usage: wgload [options]\n"
        "  --addr HOST:PORT      gateway mTLS listener (default $WAYGATE_ADDR)\n"
        "  --ca FILE             CA bundle that signs the server certificate (default "
        "$WAYGATE_CA)\n"
        "  --cert FILE --key FILE  client certificate and key (default "
        "$WAYGATE_P_courier_a_CERT/KEY)\n"
        "  --segment P:FROM-TO   waybill-number segment (default $WAYGATE_SEGMENT_A)\n"
        "  --first N             first numeric part to use (default FROM)\n"
        "  --width W             digits of the numeric part (default: those of TO)\n"
        "  -c, --connections C   connections (default 1)\n"
        "  -s, --streams S       concurrent calls per connection (default 16)\n"
        "  -b, --batch N         SubmitBatch of N waybills per call (default 0: Submit)\n"
        "  -d, --duration SEC    measured duration (default 10)\n"
        "  -w, --warmup SEC      warm-up before measuring (default 1; 0 with -n)\n"
        "  -n, --requests N      stop after N calls instead of a duration\n"
        "  --timeout-ms MS       send grpc-timeout\n"
        "  --origin-branch CODE  origin_branch of every waybill (default empty: the caller's)\n"
        "  --servername NAME     name (or IP) to verify in the server certificate (default: host)\n"
        "  --seed N              varies the synthetic content (default: from the clock)\n"
        "  --path PATH           override the method path\n"
        "  --dump N              print N synthetic waybills and exit\n"
        "  --self-test           check the ID check digit and the generator, then exit\n"
        "Exit status: 0 when every call succeeded, 1 when any failed, 2 on set-up errors.\n");
}

static int parse_segment(struct opts *o, const char *s)
{
    const char *colon = strchr(s, ':');
    if (!colon || (size_t)(colon - s) >= sizeof o->prefix)
        return -1;
    memcpy(o->prefix, s, (size_t)(colon - s));
    o->prefix[colon - s] = '\0';
    const char *to = strchr(colon + 1, '-');
    if (!to)
        return -1;
    char *end;
    errno = 0;
    o->seg_from = strtoull(colon + 1, &end, 10);
    if (end != to || errno)
        return -1;
    o->seg_to = strtoull(to + 1, &end, 10);
    if (*end || errno || o->seg_to < o->seg_from || end == to + 1)
        return -1;
    if (o->width == 0)
        o->width = (int)strlen(to + 1);
    return 0;
}

static int resolve(struct load *L, char *host, size_t hostlen)
{
    const char *a = L->o.addr, *port;
    if (a[0] == '[') {
        const char *rb = strchr(a, ']');
        if (!rb || rb[1] != ':' || (size_t)(rb - a - 1) >= hostlen)
            return -1;
        memcpy(host, a + 1, (size_t)(rb - a - 1));
        host[rb - a - 1] = '\0';
        port = rb + 2;
    } else {
        const char *c = strrchr(a, ':');
        if (!c || (size_t)(c - a) >= hostlen)
            return -1;
        memcpy(host, a, (size_t)(c - a));
        host[c - a] = '\0';
        port = c + 1;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res = NULL;
    int rv = getaddrinfo(host, port, &hints, &res);
    if (rv != 0 || !res) {
        fprintf(stderr, "wgload: %s: %s\n", a, gai_strerror(rv));
        return -1;
    }
    memcpy(&L->sa, res->ai_addr, res->ai_addrlen);
    L->salen = res->ai_addrlen;
    freeaddrinfo(res);
    snprintf(L->authority, sizeof L->authority, "%s", a);
    return 0;
}

static SSL_CTX *make_ssl(const struct opts *o)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx)
        return NULL;
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    if (SSL_CTX_set_alpn_protos(ctx, (const unsigned char *)"\x02h2", 3) != 0 ||
        SSL_CTX_load_verify_locations(ctx, o->ca, NULL) != 1 ||
        SSL_CTX_use_certificate_chain_file(ctx, o->cert) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx, o->key, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1) {
        SSL_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

static void dump(struct load *L)
{
    struct wl_synth *s = &L->synth[0];
    for (int i = 0; i < L->o.dump; i++) {
        if (wl_synth_fill(s, &L->scfg, L->next_no + (uint64_t)i) != 0) {
            printf("(number does not fit)\n");
            return;
        }
        const Waygate__V1__Party *p = &s->sender, *q = &s->recipient;
        printf("%s | %s %s %s%s%s%s [%s] id=%s g=%d | %s %s %s%s%s%s | %s | dest %s | %ug %s\n",
               s->wb.waybill_no, p->name, p->phone, p->province, p->city, p->district,
               p->address_detail, p->company, p->id_number, p->gender, q->name, q->phone,
               q->province, q->city, q->district, q->address_detail, s->wb.item_description,
               s->wb.dest_region_code, s->wb.weight_grams, s->wb.service_type);
    }
}

int main(int argc, char **argv)
{
    static struct load load; /* zeroed; big, so not on the stack */
    struct load *L = &load;
    struct opts *o = &L->o;
    int rc = 2;
    const char *segment = getenv("WAYGATE_SEGMENT_A");
    bool first_set = false, warm_set = false, selftest = false;

    o->addr = getenv("WAYGATE_ADDR");
    o->ca = getenv("WAYGATE_CA");
    o->cert = getenv("WAYGATE_P_courier_a_CERT");
    o->key = getenv("WAYGATE_P_courier_a_KEY");
    o->origin_branch = "";
    o->conns = 1;
    o->streams = 16;
    o->duration = 10;
    o->warmup = 1;
    o->seed = (uint64_t)time(NULL);

    enum {
        O_ADDR = 256,
        O_CA,
        O_CERT,
        O_KEY,
        O_SEG,
        O_FIRST,
        O_WIDTH,
        O_TMO,
        O_BRANCH,
        O_SNI,
        O_SEED,
        O_PATH,
        O_DUMP,
        O_SELF
    };
    static const struct option lo[] = {{"addr", 1, NULL, O_ADDR},
                                       {"ca", 1, NULL, O_CA},
                                       {"cert", 1, NULL, O_CERT},
                                       {"key", 1, NULL, O_KEY},
                                       {"segment", 1, NULL, O_SEG},
                                       {"first", 1, NULL, O_FIRST},
                                       {"width", 1, NULL, O_WIDTH},
                                       {"connections", 1, NULL, 'c'},
                                       {"streams", 1, NULL, 's'},
                                       {"batch", 1, NULL, 'b'},
                                       {"duration", 1, NULL, 'd'},
                                       {"warmup", 1, NULL, 'w'},
                                       {"requests", 1, NULL, 'n'},
                                       {"timeout-ms", 1, NULL, O_TMO},
                                       {"origin-branch", 1, NULL, O_BRANCH},
                                       {"servername", 1, NULL, O_SNI},
                                       {"seed", 1, NULL, O_SEED},
                                       {"path", 1, NULL, O_PATH},
                                       {"dump", 1, NULL, O_DUMP},
                                       {"self-test", 0, NULL, O_SELF},
                                       {"help", 0, NULL, 'h'},
                                       {NULL, 0, NULL, 0}};
    int ch;
    while ((ch = getopt_long(argc, argv, "c:s:b:d:w:n:h", lo, NULL)) != -1) {
        switch (ch) {
        case O_ADDR:
            o->addr = optarg;
            break;
        case O_CA:
            o->ca = optarg;
            break;
        case O_CERT:
            o->cert = optarg;
            break;
        case O_KEY:
            o->key = optarg;
            break;
        case O_SEG:
            segment = optarg;
            break;
        case O_FIRST:
            o->first = strtoull(optarg, NULL, 10);
            first_set = true;
            break;
        case O_WIDTH:
            o->width = atoi(optarg);
            break;
        case 'c':
            o->conns = atoi(optarg);
            break;
        case 's':
            o->streams = atoi(optarg);
            break;
        case 'b':
            o->batch = atoi(optarg);
            break;
        case 'd':
            o->duration = atof(optarg);
            break;
        case 'w':
            o->warmup = atof(optarg);
            warm_set = true;
            break;
        case 'n':
            o->requests = atoll(optarg);
            break;
        case O_TMO:
            o->timeout_ms = atol(optarg);
            break;
        case O_BRANCH:
            o->origin_branch = optarg;
            break;
        case O_SNI:
            o->servername = optarg;
            break;
        case O_SEED:
            o->seed = strtoull(optarg, NULL, 10);
            break;
        case O_PATH:
            o->path = optarg;
            break;
        case O_DUMP:
            o->dump = atoi(optarg);
            break;
        case O_SELF:
            selftest = true;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (selftest) {
        int bad = wl_synth_selftest();
        printf("wgload self-test: %s\n", bad ? "FAILED" : "ok");
        return bad ? 1 : 0;
    }
    if (optind != argc || !segment || parse_segment(o, segment) != 0) {
        fprintf(stderr, "wgload: need --segment PREFIX:FROM-TO (or $WAYGATE_SEGMENT_A)\n");
        return 2;
    }
    if (o->conns < 1 || o->conns > 1000 || o->streams < 1 || o->streams > 10000 || o->batch < 0 ||
        o->batch > 100000 || o->duration <= 0 || o->warmup < 0 || o->requests < 0 ||
        o->timeout_ms < 0) {
        fprintf(stderr, "wgload: an option is out of range\n");
        return 2;
    }
    if (!first_set)
        o->first = o->seg_from;
    if (o->first < o->seg_from || o->first > o->seg_to) {
        fprintf(stderr, "wgload: --first is outside the segment\n");
        return 2;
    }
    L->count_mode = o->requests > 0;
    if (L->count_mode && !warm_set)
        o->warmup = 0;
    if (!o->path)
        o->path =
            o->batch ? "/waygate.v1.WaybillIntake/SubmitBatch" : "/waygate.v1.WaybillIntake/Submit";
    if (o->timeout_ms)
        snprintf(L->timeout_hdr, sizeof L->timeout_hdr, "%ldm", o->timeout_ms);
    L->next_no = o->first;
    L->scfg = (struct wl_synth_cfg){.prefix = o->prefix,
                                    .width = o->width,
                                    .origin_branch = o->origin_branch,
                                    .seed = o->seed,
                                    .now = (int64_t)time(NULL)};
    size_t nsynth = o->batch ? (size_t)o->batch : 1;
    L->synth = calloc(nsynth, sizeof *L->synth);
    L->wbp = calloc(nsynth, sizeof *L->wbp);
    L->conns = calloc((size_t)o->conns, sizeof *L->conns);
    if (!L->synth || !L->wbp || !L->conns) {
        fprintf(stderr, "wgload: out of memory\n");
        goto out;
    }
    if (o->dump) {
        dump(L);
        rc = 0;
        goto out;
    }
    if (!o->addr || !o->ca || !o->cert || !o->key) {
        fprintf(stderr, "wgload: need --addr, --ca, --cert and --key (or the WAYGATE_* env)\n");
        goto out;
    }
    signal(SIGPIPE, SIG_IGN);
    char host[256];
    if (resolve(L, host, sizeof host) != 0)
        goto out;
    if (!o->servername)
        o->servername = host;
    L->ssl = make_ssl(o);
    if (!L->ssl) {
        ssl_errors("cannot set up TLS (CA, certificate or key)");
        goto out;
    }
    L->base = event_base_new();
    L->ev_timer = L->base ? evtimer_new(L->base, timer_cb, L) : NULL;
    if (!L->ev_timer) {
        fprintf(stderr, "wgload: cannot set up libevent\n");
        goto out;
    }
    for (int i = 0; i < o->conns; i++)
        if (conn_open(L, &L->conns[i]) != 0) {
            ssl_errors("cannot open a connection");
            goto out;
        }
    event_base_dispatch(L->base);
    if (L->phase == PH_CONNECT) {
        fprintf(stderr, "wgload: not every connection came up; no load was sent\n");
        goto out;
    }
    rc = report(L);
out:
    for (int i = 0; L->conns && i < o->conns; i++) {
        struct conn *c = &L->conns[i];
        while (c->reqs) {
            struct req *r = c->reqs;
            c->reqs = r->next;
            req_free(r);
        }
        nghttp2_session_del(c->ng);
        if (c->bev)
            bufferevent_free(c->bev);
    }
    if (L->ev_timer)
        event_free(L->ev_timer);
    if (L->base)
        event_base_free(L->base);
    SSL_CTX_free(L->ssl);
    free(L->conns);
    free(L->synth);
    free(L->wbp);
    free(L->lat_us);
    return rc;
}
