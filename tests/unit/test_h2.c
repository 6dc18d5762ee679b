/* test_h2.c: the HTTP/2 + gRPC layers (h2.c, grpc.c) and the rpc layer above them (rpc.c,
 * call.c: routing, the identity and policy step, the handler lifecycle, backpressure) driven in
 * memory by an nghttp2 client session: no sockets. The server's output goes into a buffer that the
 * test feeds to the client and vice versa; deadline timers run on a real event_base. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <event2/event.h>
#include <nghttp2/nghttp2.h>

#include "grpc/health/v1/health.pb-c.h"
#include "waygate/v1/intake.pb-c.h"

#include "alloc.h"
#include "budget.h"
#include "clock.h"
#include "config.h"
#include "grpc.h"
#include "h2.h"
#include "h2_calm.h"
#include "h2mem.h"
#include "policy.h"
#include "rpc.h"
#include "segcache.h"

/* nghttp2's share of an idle connection's 32 KiB (issue 10), in bytes */
#define GW_H2_IDLE_SESSION_MAX 6144u

/* ---- libevent's memory, seen by the test ----
 * Every libevent allocation goes through these (installed first thing in main), so a test can
 * ask whether a block went back to the C library still holding a marker string: response bytes
 * queued on a stream may be PII and must be wiped before their memory is released. */

static const char *freed_marker;
static unsigned freed_with_marker;

static void *ev_malloc(size_t n)
{
    size_t *b = malloc(n + 16);

    if (b == NULL)
        return NULL;
    b[0] = n;
    return (char *)b + 16;
}

static bool holds_marker(const char *p, size_t n)
{
    size_t m = freed_marker != NULL ? strlen(freed_marker) : 0;

    for (size_t i = 0; m > 0 && i + m <= n; i++)
        if (memcmp(p + i, freed_marker, m) == 0)
            return true;
    return false;
}

static void ev_free(void *p)
{
    char *b;

    if (p == NULL)
        return;
    b = (char *)p - 16;
    if (holds_marker(p, *(size_t *)(void *)b))
        freed_with_marker++;
    free(b);
}

static void *ev_realloc(void *p, size_t n)
{
    void *q;
    size_t old;

    if (p == NULL)
        return ev_malloc(n);
    old = *(size_t *)(void *)((char *)p - 16);
    q = ev_malloc(n);
    if (q == NULL)
        return NULL;
    memcpy(q, p, old < n ? old : n);
    ev_free(p);
    return q;
}

/* ---- test handlers ---- */

static int cancels;
static int hang_started;

static void echo_handler(struct gw_call *call, const uint8_t *req, size_t len)
{
    Grpc__Health__V1__HealthCheckRequest *in;

    in = (Grpc__Health__V1__HealthCheckRequest *)gw_call_unpack(
        call, &grpc__health__v1__health_check_request__descriptor, req, len);
    if (in == NULL)
        return;
    assert_int_equal(gw_call_send(call, &in->base), 0);
    gw_call_finish(call, GW_GRPC_OK, NULL);
}

/* Echo, as a call that becomes confidential in its handler (a lawful read through Get). */
static void hush_handler(struct gw_call *call, const uint8_t *req, size_t len)
{
    gw_call_set_confidential(call);
    echo_handler(call, req, len);
}

static void stream_handler(struct gw_call *call, const uint8_t *req, size_t len)
{
    Grpc__Health__V1__HealthCheckRequest out = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;

    (void)req;
    (void)len;
    out.service = "one";
    assert_int_equal(gw_call_send(call, &out.base), 0);
    out.service = "two";
    assert_int_equal(gw_call_send(call, &out.base), 0);
    out.service = "three";
    assert_int_equal(gw_call_send(call, &out.base), 0);
    gw_call_finish(call, GW_GRPC_OK, NULL);
}

static void unpack_handler(struct gw_call *call, const uint8_t *req, size_t len)
{
    if (gw_call_unpack(call, &waygate__v1__submit_batch_request__descriptor, req, len) == NULL)
        return;
    gw_call_finish(call, GW_GRPC_OK, NULL);
}

static void cancel_cb(void *arg)
{
    int *flag = arg;

    assert_int_equal(*flag, 0x5a);
    cancels++;
}

static int cancel_token = 0x5a;
static struct gw_call *hung_call;
static int guarded_runs;

/* Never finishes by itself: an asynchronous operation that only its cancel stops. */
static void hang_handler(struct gw_call *call, const uint8_t *req, size_t len)
{
    (void)req;
    (void)len;
    hang_started++;
    hung_call = call;
    gw_call_set_cancel(call, cancel_cb, &cancel_token);
}

/* For methods the policy must keep the caller out of: it counts the runs that must not happen. */
static void guarded_handler(struct gw_call *call, const uint8_t *req, size_t len)
{
    guarded_runs++;
    echo_handler(call, req, len);
}

/* ---- a server-streaming handler using the writable pattern (call.h) ----
 * Streams flood_count messages of flood_size bytes: HealthCheckRequest{service = "#<8-digit
 * sequence number><filler>"}, sending while gw_call_writable() and otherwise waiting for the
 * writable callback. The test reads its state after the call is gone, so it lives here. */

struct harness;
static struct harness *cur_h; /* the harness of the running test, for the handlers */
static size_t h_queued(void);

enum flood_mode {
    FLOOD_SEND,         /* send everything, then finish OK */
    FLOOD_FINISH_OWN,   /* on the writable callback: finish its own call */
    FLOOD_FINISH_GROUP, /* on the writable callback: finish every flood call still running */
};

struct flood {
    struct gw_call *call; /* NULL once finished or cancelled */
    unsigned sent;
    unsigned writable_runs;
    unsigned cancels;
    int send_err;
    size_t max_queued; /* the session's queued bytes, sampled after every send */
};

static unsigned flood_count, flood_size;
static enum flood_mode flood_mode;
static struct flood floods[4];
static unsigned nfloods;

static void flood_cancel(void *arg)
{
    struct flood *f = arg;

    f->cancels++;
    f->call = NULL;
}

static void flood_finish(struct flood *f)
{
    struct gw_call *call = f->call;

    f->call = NULL;
    gw_call_finish(call, GW_GRPC_OK, NULL); /* may free the call and its stream */
}

static void flood_pump(void *arg);

static void flood_send(struct flood *f)
{
    Grpc__Health__V1__HealthCheckRequest out = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
    char *svc = malloc(flood_size + 1);
    size_t q;

    assert_non_null(svc);
    memset(svc, 'x', flood_size);
    svc[flood_size] = '\0';
    while (f->sent < flood_count) {
        if (!gw_call_writable(f->call)) {
            gw_call_on_writable(f->call, flood_pump, f);
            free(svc);
            return;
        }
        snprintf(svc, flood_size + 1, "#%08u", f->sent);
        svc[9] = 'x';
        out.service = svc;
        f->send_err = gw_call_send(f->call, &out.base);
        if (f->send_err != 0) {
            struct gw_call *call = f->call;
            f->call = NULL;
            free(svc);
            gw_call_fail(call, f->send_err, NULL, GW_RULE_NONE);
            return;
        }
        f->sent++;
        q = h_queued();
        if (q > f->max_queued)
            f->max_queued = q;
    }
    free(svc);
    flood_finish(f);
}

static void flood_pump(void *arg)
{
    struct flood *f = arg;

    f->writable_runs++;
    assert_non_null(f->call);
    switch (flood_mode) {
    case FLOOD_SEND:
        flood_send(f);
        return;
    case FLOOD_FINISH_OWN:
        flood_finish(f);
        return;
    case FLOOD_FINISH_GROUP:
        for (unsigned i = 0; i < nfloods; i++)
            if (floods[i].call != NULL)
                flood_finish(&floods[i]);
        return;
    }
}

static void flood_handler(struct gw_call *call, const uint8_t *req, size_t len)
{
    struct flood *f;

    (void)req;
    (void)len;
    assert_true(nfloods < 4);
    f = &floods[nfloods++];
    memset(f, 0, sizeof(*f));
    f->call = call;
    gw_call_set_cancel(call, flood_cancel, f);
    flood_send(f);
}

/* A streaming handler that, on every writable callback, asks for the next one without sending:
 * polls_left more times, then finishes. */
static unsigned poll_runs, polls_left;

static void poll_writable(void *arg)
{
    struct gw_call *call = arg;

    poll_runs++;
    if (polls_left == 0) {
        gw_call_finish(call, GW_GRPC_OK, NULL);
        return;
    }
    polls_left--;
    gw_call_on_writable(call, poll_writable, call);
}

static void poll_handler(struct gw_call *call, const uint8_t *req, size_t len)
{
    (void)req;
    (void)len;
    gw_call_on_writable(call, poll_writable, call);
}

/* ---- waiters: calls parked on a list, answered by one completion (as the segment cache does) */

struct waiter {
    struct gw_call *call; /* NULL once answered or cancelled */
    unsigned cancels;
};
static struct waiter waiters[2];
static unsigned nwaiters;

static void waiter_cancel(void *arg)
{
    struct waiter *w = arg;

    w->cancels++;
    w->call = NULL;
}

static void wait_handler(struct gw_call *call, const uint8_t *req, size_t len)
{
    struct waiter *w;

    (void)req;
    (void)len;
    assert_true(nwaiters < 2);
    w = &waiters[nwaiters++];
    memset(w, 0, sizeof(*w));
    w->call = call;
    gw_call_set_cancel(call, waiter_cancel, w);
}

/* ---- calls waiting for the segment cache (as Submit does), answered by one load ---- */

static struct gw_segcache *segs;
static int seg_loads, seg_answers, seg_cancels;

static int seg_load(void *ctx, struct gw_segcache *c, void **handle)
{
    (void)ctx;
    (void)c;
    seg_loads++;
    *handle = &seg_loads;
    return 0;
}

static void seg_cancel_load(void *handle)
{
    (void)handle;
}

static uint64_t seg_now(void *ctx)
{
    (void)ctx;
    return 0;
}

struct seg_wait {
    struct gw_call *call;
    struct gw_segcache_req *req;
};

static void seg_wait_cancel(void *arg)
{
    struct seg_wait *w = arg;

    seg_cancels++;
    gw_segcache_cancel(w->req);
    free(w);
}

static void seg_answer_cb(void *arg, int err, bool found)
{
    struct seg_wait *w = arg;
    struct gw_call *call = w->call;

    seg_answers++;
    free(w);
    gw_call_set_cancel(call, NULL, NULL);
    if (err != 0 || !found)
        gw_call_fail(call, GW_EPRECOND, "waybill.waybill_no", GW_RULE_NONE);
    else
        gw_call_finish(call, GW_GRPC_OK, NULL);
}

static void seg_handler(struct gw_call *call, const uint8_t *req, size_t len)
{
    struct seg_wait *w = calloc(1, sizeof(*w));

    (void)req;
    (void)len;
    assert_non_null(w);
    w->call = call;
    assert_int_equal(gw_segcache_check(segs, "a", "WG", 1, seg_answer_cb, w, &w->req),
                     GW_OK_PENDING);
    gw_call_set_cancel(call, seg_wait_cancel, w);
}

static const struct gw_method test_methods[] = {
    {"/t.T/Echo", echo_handler, false, false},     {"/t.T/Stream", stream_handler, true, false},
    {"/t.T/Hang", hang_handler, false, false},     {"/t.T/Nothing", NULL, false, false},
    {"/t.T/Open", echo_handler, false, false},     {"/t.T/Unpack", unpack_handler, false, false},
    {"/t.T/Admin", guarded_handler, false, false}, {"/t.T/NoRule", guarded_handler, false, false},
    {"/t.T/Flood", flood_handler, true, false},    {"/t.T/Hold", hang_handler, true, false},
    {"/t.T/Poll", poll_handler, true, false},      {"/t.T/Wait", wait_handler, false, false},
    {"/t.T/Seg", seg_handler, false, false},       {"/t.T/Secret", echo_handler, false, true},
    {"/t.T/Hush", hush_handler, false, false},
};
static const struct gw_rpc_table test_table = {test_methods,
                                               sizeof(test_methods) / sizeof(test_methods[0])};

static const char *const admins[] = {"security_admin", NULL};
/* The policy's rules for the test methods; /t.T/NoRule has none, so nobody may call it. */
static const struct gw_policy_method test_rules[] = {
    {"/t.T/Echo", GW_POLICY_AUTHENTICATED, NULL},   {"/t.T/Stream", GW_POLICY_AUTHENTICATED, NULL},
    {"/t.T/Hang", GW_POLICY_AUTHENTICATED, NULL},   {"/t.T/Nothing", GW_POLICY_AUTHENTICATED, NULL},
    {"/t.T/Open", GW_POLICY_ANYONE, NULL},          {"/t.T/Unpack", GW_POLICY_AUTHENTICATED, NULL},
    {"/t.T/Admin", GW_POLICY_ROLES, admins},        {"/t.T/Flood", GW_POLICY_AUTHENTICATED, NULL},
    {"/t.T/Hold", GW_POLICY_AUTHENTICATED, NULL},   {"/t.T/Poll", GW_POLICY_AUTHENTICATED, NULL},
    {"/t.T/Wait", GW_POLICY_AUTHENTICATED, NULL},   {"/t.T/Seg", GW_POLICY_AUTHENTICATED, NULL},
    {"/t.T/Secret", GW_POLICY_AUTHENTICATED, NULL}, {"/t.T/Hush", GW_POLICY_AUTHENTICATED, NULL},
};

/* ---- the harness ---- */

struct reply {
    bool closed;
    uint32_t close_error; /* the HTTP/2 error code the stream closed with (RST_STREAM) */
    char http_status[8];
    int grpc_status;
    char grpc_message[256];
    uint8_t data[4096]; /* the first bytes of the response body */
    size_t ndata;
    size_t received; /* response body bytes, all of them */
    size_t consumed; /* of which the client gave back as flow-control window */
    struct gw_grpc_decoder dec;
    unsigned nmsgs;      /* response messages */
    unsigned nseq;       /* flood messages in order: "#<nseq>..." */
    unsigned seq_errors; /* flood messages out of order */
};

struct harness {
    struct event_base *base;
    bool shared_base;    /* harness_base's: freed by the test, not by harness_free */
    struct gw_peer peer; /* the server session's: outlives it */
    struct gw_config cfg;
    struct gw_policy *policy;
    struct gw_rpc *rpc;
    struct gw_h2 *server;
    nghttp2_session *client;
    uint8_t *out; /* server -> client bytes not yet delivered */
    size_t nout;
    struct reply replies[16]; /* indexed by (stream id - 1) / 2 */
};

static struct reply *reply_for(struct harness *h, int32_t id)
{
    size_t i = (size_t)(id - 1) / 2;

    assert_true(i < 16);
    return &h->replies[i];
}

static int io_send(void *arg, const uint8_t *data, size_t len)
{
    struct harness *h = arg;

    h->out = realloc(h->out, h->nout + len);
    assert_non_null(h->out);
    memcpy(h->out + h->nout, data, len);
    h->nout += len;
    return 0;
}

/* Output the "socket" has not taken yet: a test backs it up to keep frames queued in nghttp2. */
static size_t io_backlog;

static size_t io_pending(void *arg)
{
    (void)arg;
    return io_backlog;
}

static int c_on_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name,
                       size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                       void *ud)
{
    struct reply *r = reply_for(ud, f->hd.stream_id);

    (void)s;
    (void)flags;
    if (namelen == 7 && memcmp(name, ":status", 7) == 0)
        snprintf(r->http_status, sizeof(r->http_status), "%.*s", (int)valuelen, value);
    else if (namelen == 11 && memcmp(name, "grpc-status", 11) == 0)
        r->grpc_status = atoi((const char *)value);
    else if (namelen == 12 && memcmp(name, "grpc-message", 12) == 0)
        snprintf(r->grpc_message, sizeof(r->grpc_message), "%.*s", (int)valuelen, value);
    return 0;
}

/* One whole response message: counts it, and checks a flood message's sequence number. */
static int c_on_message(void *arg, const uint8_t *msg, size_t len)
{
    struct reply *r = arg;
    char digits[9];

    r->nmsgs++;
    /* HealthCheckRequest.service (field 1, a 3-byte length for flood sizes), then "#%08u" */
    if (len >= 13 && msg[0] == 0x0a && msg[4] == '#') {
        memcpy(digits, msg + 5, 8);
        digits[8] = '\0';
        if (strtoul(digits, NULL, 10) == r->nseq)
            r->nseq++;
        else
            r->seq_errors++;
    }
    return 0;
}

static int c_on_data(nghttp2_session *s, uint8_t flags, int32_t id, const uint8_t *data, size_t len,
                     void *ud)
{
    struct reply *r = reply_for(ud, id);

    (void)s;
    (void)flags;
    if (r->ndata < sizeof(r->data)) {
        size_t take = len < sizeof(r->data) - r->ndata ? len : sizeof(r->data) - r->ndata;
        memcpy(r->data + r->ndata, data, take);
        r->ndata += take;
    }
    r->received += len;
    if (r->dec.max_message == 0)
        gw_grpc_decoder_init(&r->dec, 1u << 20);
    assert_int_equal(gw_grpc_decoder_feed(&r->dec, data, len, c_on_message, r), 0);
    return 0;
}

static int c_on_close(nghttp2_session *s, int32_t id, uint32_t err, void *ud)
{
    struct reply *r = reply_for(ud, id);

    (void)s;
    r->closed = true;
    r->close_error = err;
    return 0;
}

/* Does what the owner's loop does with a flush the server scheduled (an answer given outside its
 * input processing, as a completion callback does), without running the rest of the loop: the
 * tests decide when timers and writable upcalls run. */
static void flush_scheduled(struct harness *h)
{
    assert_int_equal(gw_h2_flush(h->server), 0);
}

/* Moves bytes both ways until neither side has anything to say. */
static void pump(struct harness *h)
{
    for (int round = 0; round < 100; round++) {
        const uint8_t *data;
        ssize_t n;
        bool moved = false;

        flush_scheduled(h);
        while ((n = nghttp2_session_mem_send(h->client, &data)) > 0) {
            assert_int_equal(gw_h2_recv(h->server, data, (size_t)n), 0);
            moved = true;
        }
        assert_true(n == 0);
        if (h->nout > 0) {
            uint8_t *buf = h->out;
            size_t len = h->nout;
            h->out = NULL;
            h->nout = 0;
            assert_int_equal(nghttp2_session_mem_recv(h->client, buf, len), (ssize_t)len);
            free(buf);
            moved = true;
        }
        if (!moved)
            return;
    }
    fail_msg("pump did not settle");
}

/* The identity step of the next harness (NULL: the certificate's, synchronous). */
static gw_rpc_identify_fn harness_identify;
/* The next harness's handlers per loop turn (0: the default) and request-memory budgets (0: no
 * limit), set by a test before harness_new and reset by it. */
static unsigned harness_per_turn;
/* The next harness's share hooks (rpc.h's admit and within; NULL: none). */
static gw_rpc_admit_fn harness_admit;
static gw_rpc_within_fn harness_within;
static uint32_t harness_conn_mem, harness_total_mem;
/* The next harness's certificate budget of request memory (NULL: none), likewise. */
static struct gw_budget *harness_cert_mem;
/* The next harness's response budget per connection (0: no limit), likewise. */
static uint32_t harness_resp_mem;
/* The next harness's loop (NULL: its own) and client certificate's response memory (NULL:
 * none), likewise: two harnesses given the same stand for two connections of one certificate. */
static struct event_base *harness_base;
static struct gw_h2_pool *harness_cert_pool;

/* client_window: 0 for nghttp2's defaults (the client gives back window as it receives); else
 * the client's initial stream window, given back only when the test consumes (client_consume). */
/* An identity step that waits (as a bearer-token lookup in the database will): it parks the call
 * until the test completes it, and counts cancellations. NULL: the certificate step. */
static gw_rpc_identify_fn test_identify;
static struct gw_call *identifying;
static int identify_cancels;

static void identify_cancel_cb(void *arg)
{
    assert_ptr_equal(arg, identifying);
    identify_cancels++;
    identifying = NULL;
}

static void waiting_identify(void *ctx, struct gw_call *call, const struct gw_peer *peer,
                             const char *authorization)
{
    (void)ctx;
    (void)peer;
    (void)authorization;
    identifying = call;
    gw_call_set_cancel(call, identify_cancel_cb, call);
}

static struct harness *harness_new_window(bool authenticated, uint32_t client_window)
{
    struct harness *h = calloc(1, sizeof(*h));
    nghttp2_session_callbacks *cbs;
    nghttp2_option *opt;
    nghttp2_settings_entry iv = {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, client_window};
    struct gw_peer peer = {.addr = "127.0.0.1:1",
                           .tls = true,
                           .cert = true,
                           .cert_cn = "tester",
                           .cert_ou = "courier",
                           .cert_l = "a"};
    struct gw_rpc_params rp;
    struct gw_h2_params params;

    assert_non_null(h);
    if (!authenticated) {
        peer.tls = peer.cert = false;
        peer.cert_cn[0] = peer.cert_ou[0] = peer.cert_l[0] = '\0';
    }
    h->shared_base = harness_base != NULL;
    h->base = h->shared_base ? harness_base : gw_clock_loop_new();
    assert_non_null(h->base);
    h->cfg.max_concurrent_streams = 8;
    h->cfg.max_header_list_size = 2048;
    h->cfg.max_message_size = 1024;
    h->cfg.max_deadline_ms = 60000;
    h->cfg.stream_write_timeout_ms = 30000;
    h->cfg.request_memory_per_connection = harness_conn_mem;
    h->cfg.request_memory = harness_total_mem;
    h->cfg.response_memory_per_connection = harness_resp_mem;
    h->policy = gw_policy_new(test_rules, sizeof(test_rules) / sizeof(test_rules[0]));
    assert_non_null(h->policy);
    memset(&rp, 0, sizeof(rp));
    rp.cfg = &h->cfg;
    rp.base = h->base;
    rp.methods = &test_table;
    rp.policy = h->policy;
    rp.handlers_per_turn = harness_per_turn;
    rp.turn_ms = 600000; /* counts only: a busy machine's pause must not change a test */
    /* a test's waiting identity step, or NULL: the certificate step */
    rp.identify = test_identify != NULL ? test_identify : harness_identify;
    rp.admit = harness_admit;
    rp.within = harness_within;
    h->rpc = gw_rpc_new(&rp);
    assert_non_null(h->rpc);
    memset(&params, 0, sizeof(params));
    params.cfg = &h->cfg;
    params.base = h->base;
    h->peer = peer;
    params.peer = &h->peer;
    params.io = (struct gw_h2_io){io_send, io_pending, h};
    params.up = gw_rpc_upcalls(h->rpc);
    params.cert_mem = harness_cert_mem;
    params.cert_pool = harness_cert_pool;
    h->server = gw_h2_new(&params);
    assert_non_null(h->server);
    assert_int_equal(gw_h2_flush(h->server), 0);

    assert_int_equal(nghttp2_session_callbacks_new(&cbs), 0);
    nghttp2_session_callbacks_set_on_header_callback(cbs, c_on_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, c_on_data);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, c_on_close);
    assert_int_equal(nghttp2_option_new(&opt), 0);
    if (client_window > 0)
        nghttp2_option_set_no_auto_window_update(opt, 1);
    assert_int_equal(nghttp2_session_client_new2(&h->client, cbs, h, opt), 0);
    nghttp2_option_del(opt);
    nghttp2_session_callbacks_del(cbs);
    assert_int_equal(
        nghttp2_submit_settings(h->client, NGHTTP2_FLAG_NONE, &iv, client_window > 0 ? 1 : 0), 0);
    pump(h);
    assert_true(gw_h2_preface_received(h->server));
    cancels = 0;
    hang_started = 0;
    hung_call = NULL;
    guarded_runs = 0;
    nfloods = 0;
    memset(floods, 0, sizeof(floods));
    nwaiters = 0;
    memset(waiters, 0, sizeof(waiters));
    io_backlog = 0;
    flood_mode = FLOOD_SEND;
    cur_h = h;
    return h;
}

static struct harness *harness_new(bool authenticated)
{
    return harness_new_window(authenticated, 0);
}

static size_t h_queued(void)
{
    return gw_h2_queued(cur_h->server);
}

/* The client's application reads up to max bytes of what stream id received (all of it when
 * max is 0), giving the window back to the server. Returns the bytes consumed. */
static size_t client_consume(struct harness *h, int32_t id, size_t max)
{
    struct reply *r = reply_for(h, id);
    size_t n = r->received - r->consumed;

    if (max > 0 && n > max)
        n = max;
    if (n > 0) {
        assert_int_equal(nghttp2_session_consume(h->client, id, n), 0);
        r->consumed += n;
    }
    return n;
}

static void harness_free(struct harness *h)
{
    for (size_t i = 0; i < 16; i++)
        gw_grpc_decoder_clear(&h->replies[i].dec);
    gw_h2_free(h->server);
    gw_rpc_free(h->rpc);
    gw_policy_free(h->policy);
    nghttp2_session_del(h->client);
    if (!h->shared_base)
        event_base_free(h->base);
    free(h->out);
    free(h);
}

#define HNV(n, v)                                                                                  \
    {                                                                                              \
        (uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, sizeof(v) - 1, 0                            \
    }

struct body {
    const uint8_t *p;
    size_t n, off;
};

static ssize_t body_read(nghttp2_session *s, int32_t id, uint8_t *buf, size_t len, uint32_t *flags,
                         nghttp2_data_source *src, void *ud)
{
    struct body *b = src->ptr;
    size_t take = b->n - b->off;

    (void)s;
    (void)id;
    (void)ud;
    if (take > len)
        take = len;
    memcpy(buf, b->p + b->off, take);
    b->off += take;
    if (b->off == b->n)
        *flags |= NGHTTP2_DATA_FLAG_EOF;
    return (ssize_t)take;
}

/* A body that never ends: its bytes, then nothing (no END_STREAM), as long as the test runs. */
static ssize_t open_body_read(nghttp2_session *s, int32_t id, uint8_t *buf, size_t len,
                              uint32_t *flags, nghttp2_data_source *src, void *ud)
{
    struct body *b = src->ptr;
    size_t take = b->n - b->off;

    (void)s;
    (void)id;
    (void)flags;
    (void)ud;
    if (take == 0)
        return NGHTTP2_ERR_DEFERRED;
    if (take > len)
        take = len;
    memcpy(buf, b->p + b->off, take);
    b->off += take;
    return (ssize_t)take;
}

static const char *call_authorization; /* sent with the calls submit_call makes when set */
static const char *call_request_id;    /* likewise, as x-request-id */

/* Queues a call on the client without sending it; body (may be NULL) is sent whole, then
 * END_STREAM, at the next pump. */
static int32_t submit_call(struct harness *h, const char *path, const char *timeout,
                           struct body *body)
{
    nghttp2_nv nv[10] = {
        HNV(":method", "POST"),
        HNV(":scheme", "http"),
        HNV(":authority", "localhost"),
        {(uint8_t *)":path", (uint8_t *)path, 5, strlen(path), 0},
        HNV("content-type", "application/grpc"),
        HNV("te", "trailers"),
    };
    size_t n = 6;
    nghttp2_data_provider prd = {.source.ptr = body, .read_callback = body_read};
    int32_t id;

    if (timeout != NULL)
        nv[n++] =
            (nghttp2_nv){(uint8_t *)"grpc-timeout", (uint8_t *)timeout, 12, strlen(timeout), 0};
    if (call_authorization != NULL)
        nv[n++] = (nghttp2_nv){(uint8_t *)"authorization", (uint8_t *)call_authorization, 13,
                               strlen(call_authorization), 0};
    if (call_request_id != NULL)
        nv[n++] = (nghttp2_nv){(uint8_t *)"x-request-id", (uint8_t *)call_request_id, 12,
                               strlen(call_request_id), 0};
    id = nghttp2_submit_request(h->client, NULL, nv, n, body ? &prd : NULL, NULL);
    assert_true(id > 0);
    return id;
}

/* Starts a call: submit_call, then pump. */
static int32_t start_call(struct harness *h, const char *path, const char *timeout,
                          struct body *body)
{
    int32_t id = submit_call(h, path, timeout, body);

    pump(h);
    return id;
}

/* A framed HealthCheckRequest{service = svc}. */
static size_t frame_service(uint8_t *out, const char *svc)
{
    size_t n = strlen(svc);

    out[0] = 0;
    out[1] = out[2] = out[3] = 0;
    out[4] = (uint8_t)(n + 2);
    out[5] = 0x0a;
    out[6] = (uint8_t)n;
    memcpy(out + 7, svc, n);
    return n + 7;
}

/* ---- tests ---- */

static void test_unknown_method(void **state)
{
    struct harness *h = harness_new(true);
    uint8_t buf[32];
    struct body b = {buf, frame_service(buf, "x"), 0};
    struct reply *r;

    (void)state;
    r = reply_for(h, start_call(h, "/no.Such/Method", NULL, &b));
    assert_true(r->closed);
    assert_string_equal(r->http_status, "200");
    assert_int_equal(r->grpc_status, GW_GRPC_UNIMPLEMENTED);
    assert_string_equal(r->grpc_message, "unknown method");
    r = reply_for(h, start_call(h, "/t.T/Nothing", NULL, NULL));
    assert_int_equal(r->grpc_status, GW_GRPC_UNIMPLEMENTED);
    assert_string_equal(r->grpc_message, "/t.T/Nothing: is not implemented");
    harness_free(h);
}

static void test_echo(void **state)
{
    struct harness *h = harness_new(true);
    uint8_t buf[32];
    size_t n = frame_service(buf, "hello");
    struct body b = {buf, n, 0};
    struct reply *r;

    (void)state;
    r = reply_for(h, start_call(h, "/t.T/Echo", "10S", &b));
    assert_true(r->closed);
    assert_int_equal(r->grpc_status, GW_GRPC_OK);
    assert_int_equal(r->ndata, n);
    assert_memory_equal(r->data, buf, n);
    assert_int_equal(gw_h2_live_streams(h->server), 0);
    harness_free(h);
}

static void test_echo_bad_utf8(void **state)
{
    struct harness *h = harness_new(true);
    uint8_t buf[32];
    size_t n = frame_service(buf, "\xed\xa0\x80"); /* a surrogate */
    struct body b = {buf, n, 0};
    struct reply *r;

    (void)state;
    r = reply_for(h, start_call(h, "/t.T/Echo", NULL, &b));
    assert_int_equal(r->grpc_status, GW_GRPC_INVALID_ARGUMENT);
    assert_string_equal(r->grpc_message, "service: is not valid UTF-8");
    harness_free(h);
}

/* A NUL inside a string would be cut off silently by protobuf-c's NUL-terminated strings: it is
 * refused, with the field's path, before the handler sees a shortened value. */
static void test_embedded_nul_refused(void **state)
{
    struct harness *h = harness_new(true);
    uint8_t buf[32];
    size_t n = frame_service(buf, "ab_cd");
    struct body b = {buf, n, 0};
    struct reply *r;

    (void)state;
    buf[9] = '\0'; /* "ab\0cd" */
    r = reply_for(h, start_call(h, "/t.T/Echo", NULL, &b));
    assert_int_equal(r->grpc_status, GW_GRPC_INVALID_ARGUMENT);
    assert_string_equal(r->grpc_message, "service: must not contain a NUL character");
    harness_free(h);
}

/* A batch whose second waybill's sender name is not UTF-8: the message names the path. */
static void test_nested_utf8_path(void **state)
{
    struct harness *h = harness_new(true);
    Waygate__V1__Party good = WAYGATE__V1__PARTY__INIT, bad = WAYGATE__V1__PARTY__INIT;
    Waygate__V1__Waybill w0 = WAYGATE__V1__WAYBILL__INIT, w1 = WAYGATE__V1__WAYBILL__INIT;
    Waygate__V1__Waybill *ws[2] = {&w0, &w1};
    Waygate__V1__SubmitBatchRequest req = WAYGATE__V1__SUBMIT_BATCH_REQUEST__INIT;
    uint8_t buf[256];
    size_t n;
    struct body b;
    struct reply *r;

    (void)state;
    good.name = "\xe5\xbc\xa0\xe4\xb8\x89";
    bad.name = "\xe5\xbc";
    w0.sender = &good;
    w0.recipient = &good;
    w1.sender = &bad;
    req.n_waybills = 2;
    req.waybills = ws;
    n = protobuf_c_message_get_packed_size(&req.base);
    assert_true(n + 5 <= sizeof(buf));
    gw_grpc_frame_prefix(buf, (uint32_t)n);
    protobuf_c_message_pack(&req.base, buf + 5);
    b = (struct body){buf, n + 5, 0};
    r = reply_for(h, start_call(h, "/t.T/Unpack", NULL, &b));
    assert_int_equal(r->grpc_status, GW_GRPC_INVALID_ARGUMENT);
    assert_string_equal(r->grpc_message, "waybills[1].sender.name: is not valid UTF-8");

    bad.name = "\xe5\xbc\xa0";
    n = protobuf_c_message_get_packed_size(&req.base);
    gw_grpc_frame_prefix(buf, (uint32_t)n);
    protobuf_c_message_pack(&req.base, buf + 5);
    b = (struct body){buf, n + 5, 0};
    r = reply_for(h, start_call(h, "/t.T/Unpack", NULL, &b));
    assert_int_equal(r->grpc_status, GW_GRPC_OK);

    buf[5] = 0xff; /* not protobuf */
    b = (struct body){buf, n + 5, 0};
    r = reply_for(h, start_call(h, "/t.T/Unpack", NULL, &b));
    assert_int_equal(r->grpc_status, GW_GRPC_INVALID_ARGUMENT);
    harness_free(h);
}

static void test_streaming(void **state)
{
    struct harness *h = harness_new(true);
    uint8_t buf[32];
    struct body b = {buf, frame_service(buf, ""), 0};
    struct reply *r;

    (void)state;
    r = reply_for(h, start_call(h, "/t.T/Stream", NULL, &b));
    assert_true(r->closed);
    assert_int_equal(r->grpc_status, GW_GRPC_OK);
    assert_int_equal(r->ndata, (5 + 5) + (5 + 5) + (5 + 7));
    assert_memory_equal(r->data + 7, "one", 3);
    assert_memory_equal(r->data + 27, "three", 5);
    harness_free(h);
}

static void test_oversized(void **state)
{
    struct harness *h = harness_new(true);
    uint8_t *buf = calloc(1, 2000);
    struct body b = {buf, 2000, 0};
    struct reply *r;

    (void)state;
    buf[3] = 0x07; /* declared 0x7d0 = 2000 > 1024 */
    buf[4] = 0xd0;
    r = reply_for(h, start_call(h, "/t.T/Echo", NULL, &b));
    assert_true(r->closed);
    assert_int_equal(r->grpc_status, GW_GRPC_RESOURCE_EXHAUSTED);
    assert_string_equal(r->grpc_message, "request message exceeds the maximum size of 1024 bytes");
    free(buf);
    harness_free(h);
}

static void test_compressed_and_second_message(void **state)
{
    struct harness *h = harness_new(true);
    uint8_t buf[64];
    size_t n = frame_service(buf, "a");
    struct body b = {buf, n, 0};
    struct reply *r;

    (void)state;
    buf[0] = 1;
    r = reply_for(h, start_call(h, "/t.T/Echo", NULL, &b));
    assert_int_equal(r->grpc_status, GW_GRPC_UNIMPLEMENTED);
    assert_string_equal(r->grpc_message, "compressed messages are not supported");

    buf[0] = 0;
    n += frame_service(buf + n, "b");
    b = (struct body){buf, n, 0};
    r = reply_for(h, start_call(h, "/t.T/Echo", NULL, &b));
    assert_int_equal(r->grpc_status, GW_GRPC_INTERNAL);
    assert_string_equal(r->grpc_message, "more than one request message for a unary request");

    r = reply_for(h, start_call(h, "/t.T/Echo", NULL, NULL)); /* no message at all */
    assert_int_equal(r->grpc_status, GW_GRPC_INTERNAL);
    assert_string_equal(r->grpc_message, "request carries no message");
    harness_free(h);
}

static void test_unauthenticated(void **state)
{
    struct harness *h = harness_new(false);
    uint8_t buf[32];
    struct body b = {buf, frame_service(buf, "x"), 0};
    struct reply *r;

    (void)state;
    r = reply_for(h, start_call(h, "/t.T/Echo", NULL, &b));
    assert_int_equal(r->grpc_status, GW_GRPC_UNAUTHENTICATED);
    assert_string_equal(r->grpc_message, "a verified client certificate is required (Art. 31)");
    b.off = 0;
    r = reply_for(h, start_call(h, "/t.T/Open", NULL, &b));
    assert_int_equal(r->grpc_status, GW_GRPC_OK);
    harness_free(h);
}

/* The calls finished of a method in the dispatcher's counters (metrics.c prints these): every
 * status, and the latency histogram's count. */
static uint64_t counted(const struct harness *h, const char *path, uint64_t *latency)
{
    for (size_t i = 0; i < gw_rpc_stats_n(h->rpc); i++) {
        const struct gw_rpc_method_stats *st = gw_rpc_stats(h->rpc, i);
        uint64_t n = 0;
        if (strcmp(gw_rpc_stats_path(h->rpc, i), path) != 0)
            continue;
        for (size_t c = 0; c < GW_GRPC_NSTATUS; c++)
            n += st->by_status[c];
        *latency = st->latency.count;
        return n;
    }
    fail_msg("no counters for %s", path);
    return 0;
}

/* A confidential method's calls (lawful access, Art. 16), answered or refused before the handler,
 * and a call its handler makes confidential (a lawful read) leave no trace in the per-method
 * counters; another method's calls are counted. */
static void test_confidential_calls_not_counted(void **state)
{
    struct harness *h = harness_new(true);
    uint8_t buf[32];
    struct body b = {buf, frame_service(buf, "x"), 0};
    const char *paths[] = {"/t.T/Echo", "/t.T/Secret", "/t.T/Hush"};
    uint64_t lat = 0;

    (void)state;
    for (size_t i = 0; i < 3; i++) {
        b.off = 0;
        assert_int_equal(reply_for(h, start_call(h, paths[i], NULL, &b))->grpc_status, GW_GRPC_OK);
    }
    assert_int_equal(counted(h, "/t.T/Echo", &lat), 1);
    assert_int_equal(lat, 1);
    assert_int_equal(counted(h, "/t.T/Secret", &lat), 0);
    assert_int_equal(lat, 0);
    assert_int_equal(counted(h, "/t.T/Hush", &lat), 0);
    assert_int_equal(lat, 0);
    harness_free(h);
    h = harness_new(false); /* refused before any handler: still not counted */
    b.off = 0;
    assert_int_equal(reply_for(h, start_call(h, "/t.T/Secret", NULL, &b))->grpc_status,
                     GW_GRPC_UNAUTHENTICATED);
    assert_int_equal(counted(h, "/t.T/Secret", &lat), 0);
    b.off = 0;
    assert_int_equal(reply_for(h, start_call(h, "/t.T/Echo", NULL, &b))->grpc_status,
                     GW_GRPC_UNAUTHENTICATED);
    assert_int_equal(counted(h, "/t.T/Echo", &lat), 1);
    harness_free(h);
}

/* The log (fd 2) is written to a temporary file, at the most verbose level, until log_end(),
 * which gives back what was written (malloc'd) and restores both. */
static FILE *log_file;
static int log_saved_fd = -1;
static enum gw_log_level log_saved_level;

static void log_begin(void)
{
    fflush(stderr);
    log_file = tmpfile();
    assert_non_null(log_file);
    log_saved_fd = dup(2);
    assert_true(log_saved_fd >= 0);
    assert_true(dup2(fileno(log_file), 2) >= 0);
    log_saved_level = gw_log_level;
    gw_log_level = GW_LOG_DEBUG;
}

static char *log_end(void)
{
    long n;
    char *text;

    gw_log_level = log_saved_level;
    assert_true(dup2(log_saved_fd, 2) >= 0);
    close(log_saved_fd);
    assert_int_equal(fseek(log_file, 0, SEEK_END), 0); /* written through fd 2, not the FILE */
    n = ftell(log_file);
    assert_true(n >= 0);
    text = calloc(1, (size_t)n + 1);
    assert_non_null(text);
    rewind(log_file);
    assert_int_equal(fread(text, 1, (size_t)n, log_file), (size_t)n);
    fclose(log_file);
    log_file = NULL;
    return text;
}

/* Lawful access leaves no line in the log (Art. 16): a confidential method's calls, answered or
 * refused, and every call of a lawful_access principal (answered, refused by the policy), write
 * nothing that names their method, their request id or their caller, nor does a call its handler
 * makes confidential (no line is written before the handler runs); the lawful_access principal's
 * calls are not counted either. Another caller's calls in the same log are there, at debug: the
 * log was on. */
static void test_confidential_calls_not_logged(void **state)
{
    struct harness *h = harness_new(true);
    uint8_t buf[32];
    struct body b = {buf, frame_service(buf, "x"), 0};
    const char *ok_paths[] = {"/t.T/Secret", "/t.T/Echo", "/t.T/Hush"};
    uint64_t lat = 0;
    char *text;

    (void)state;
    log_begin();
    call_request_id = "rq-courier-1";
    b.off = 0;
    assert_int_equal(reply_for(h, start_call(h, "/t.T/Echo", NULL, &b))->grpc_status, GW_GRPC_OK);
    call_request_id = "rq-secret-1";
    b.off = 0;
    assert_int_equal(reply_for(h, start_call(h, "/t.T/Secret", NULL, &b))->grpc_status, GW_GRPC_OK);
    call_request_id = "rq-hush-1";
    b.off = 0;
    assert_int_equal(reply_for(h, start_call(h, "/t.T/Hush", NULL, &b))->grpc_status, GW_GRPC_OK);
    /* a lawful_access principal: every call of its, whatever the method */
    snprintf(h->peer.cert_cn, sizeof(h->peer.cert_cn), "officer7");
    snprintf(h->peer.cert_ou, sizeof(h->peer.cert_ou), "lawful_access");
    for (size_t i = 0; i < sizeof(ok_paths) / sizeof(ok_paths[0]); i++) {
        call_request_id = "rq-officer-ok";
        b.off = 0;
        assert_int_equal(reply_for(h, start_call(h, ok_paths[i], NULL, &b))->grpc_status,
                         GW_GRPC_OK);
    }
    call_request_id = "rq-officer-refused";
    b.off = 0;
    assert_int_equal(reply_for(h, start_call(h, "/t.T/Admin", NULL, &b))->grpc_status,
                     GW_GRPC_PERMISSION_DENIED);
    b.off = 0;
    assert_int_equal(reply_for(h, start_call(h, "/t.T/NoRule", NULL, &b))->grpc_status,
                     GW_GRPC_PERMISSION_DENIED);
    call_request_id = NULL;
    /* nor are the officer's calls counted in any series: the courier's Echo alone */
    assert_int_equal(counted(h, "/t.T/Echo", &lat), 1);
    assert_int_equal(counted(h, "/t.T/Admin", &lat), 0);
    assert_int_equal(counted(h, "/t.T/NoRule", &lat), 0);
    harness_free(h);
    h = harness_new(false); /* a confidential method refused before any handler */
    b.off = 0;
    assert_int_equal(reply_for(h, start_call(h, "/t.T/Secret", NULL, &b))->grpc_status,
                     GW_GRPC_UNAUTHENTICATED);
    harness_free(h);
    text = log_end();
    /* the courier's call is there, at debug, with its request id */
    assert_non_null(strstr(text, "\"level\":\"debug\""));
    assert_non_null(strstr(text, "call finished: /t.T/Echo grpc-status 0"));
    assert_non_null(strstr(text, "rq-courier-1"));
    /* and nothing of the others */
    for (const char *const *w =
             (const char *const[]){"Secret", "rq-secret-1", "officer7", "lawful", "rq-officer",
                                   "/t.T/Admin", "/t.T/NoRule", "Hush", "rq-hush-1", NULL};
         *w != NULL; w++)
        if (strstr(text, *w) != NULL)
            fail_msg("the log names \"%s\":\n%s", *w, text);
    /* exactly one Echo finished: the courier's, not the officer's */
    assert_null(strstr(strstr(text, "call finished: /t.T/Echo") + 1, "call finished: /t.T/Echo"));
    free(text);
}

static void test_deadline(void **state)
{
    struct harness *h = harness_new(true);
    uint8_t buf[32];
    struct body b = {buf, frame_service(buf, "x"), 0};
    struct reply *r;
    uint64_t t0 = gw_clock_ms();
    uint64_t t1;

    (void)state;
    r = reply_for(h, start_call(h, "/t.T/Hang", "50m", &b));
    t1 = gw_clock_ms();
    assert_int_equal(hang_started, 1);
    assert_false(r->closed);
    /* 50 ms from when the call started, which was between t0 and t1 (however loaded the box) */
    assert_true(gw_call_deadline_ms(hung_call) >= t0 + 50);
    assert_true(gw_call_deadline_ms(hung_call) <= t1 + 50);
    /* a turn may first run the dispatcher's zero timer (the handlers-per-turn count) */
    for (int turn = 0; turn < 10 && !r->closed; turn++) {
        event_base_loop(h->base, EVLOOP_ONCE);
        pump(h);
    }
    assert_true(r->closed);
    assert_int_equal(r->grpc_status, GW_GRPC_DEADLINE_EXCEEDED);
    assert_int_equal(cancels, 1);
    /* not before the deadline by the call's own clock: the loop (gw_clock_loop_new) times with
     * CLOCK_MONOTONIC, where libevent's default, CLOCK_MONOTONIC_COARSE (a tick of 4 ms here),
     * fired up to a tick early (">= 50" failed once on a loaded box) */
    assert_true(gw_clock_ms() >= t0 + 50);
    harness_free(h);
    assert_int_equal(cancels, 1);
}

static void test_client_reset(void **state)
{
    struct harness *h = harness_new(true);
    uint8_t buf[32];
    struct body b = {buf, frame_service(buf, "x"), 0};
    int32_t id;
    struct timeval tv = {0, 100000};

    (void)state;
    id = start_call(h, "/t.T/Hang", "50m", &b);
    assert_int_equal(hang_started, 1);
    assert_int_equal(nghttp2_submit_rst_stream(h->client, NGHTTP2_FLAG_NONE, id, NGHTTP2_CANCEL),
                     0);
    pump(h);
    assert_int_equal(cancels, 1);
    assert_int_equal(gw_h2_live_streams(h->server), 0);
    /* the deadline timer died with the call: nothing fires later */
    event_base_loopexit(h->base, &tv);
    event_base_dispatch(h->base);
    pump(h);
    assert_int_equal(cancels, 1);
    harness_free(h);
    assert_int_equal(cancels, 1);
}

/* The identity step may wait: the request arrives meanwhile, the handler runs only once the
 * step has completed and the policy allowed the call. */
static void test_identity_step_waits(void **state)
{
    struct harness *h;
    uint8_t buf[32];
    size_t n = frame_service(buf, "later");
    struct body b = {buf, n, 0};
    struct gw_principal p = {.name = "tester", .role = "courier", .branch = "a"};
    struct reply *r;
    int32_t id;

    (void)state;
    test_identify = waiting_identify;
    h = harness_new(true);
    identify_cancels = 0;
    id = start_call(h, "/t.T/Echo", NULL, &b);
    r = reply_for(h, id);
    assert_non_null(identifying);
    assert_false(r->closed); /* whole request in, no answer: the caller is not known yet */
    assert_int_equal(r->ndata, 0);
    p.authn = GW_AUTHN_TOKEN;
    gw_call_identified(identifying, NULL, &p);
    identifying = NULL;
    pump(h);
    assert_true(r->closed);
    assert_int_equal(r->grpc_status, GW_GRPC_OK);
    assert_int_equal(r->ndata, n); /* echoed */
    assert_int_equal(identify_cancels, 0);

    /* a principal the policy refuses: PERMISSION_DENIED, and the handler never runs */
    b.off = 0;
    id = start_call(h, "/t.T/Admin", NULL, &b);
    r = reply_for(h, id);
    assert_non_null(identifying);
    gw_call_identified(identifying, NULL, &p);
    identifying = NULL;
    pump(h);
    assert_int_equal(r->grpc_status, GW_GRPC_PERMISSION_DENIED);
    assert_int_equal(r->ndata, 0);
    test_identify = NULL;
    harness_free(h);
}

/* What the share hooks were asked with: the principal's account (-1: NULL, before the identity
 * step resolved one), in order; admit refuses an account in share_full. */
static int64_t share_seen[16];
static size_t share_nseen;
static int64_t share_full = -1;

static int64_t share_who(const struct gw_principal *p)
{
    return p != NULL ? p->account_id : -1;
}

static bool recording_admit(void *ctx, const struct gw_peer *peer, const struct gw_principal *p,
                            struct gw_fault *f)
{
    (void)ctx;
    assert_true(peer->cert);
    assert_true(share_nseen < sizeof(share_seen) / sizeof(share_seen[0]));
    share_seen[share_nseen++] = share_who(p);
    if (p == NULL || p->account_id != share_full)
        return true;
    (void)gw_fault_set(f, GW_ETOOBIG, NULL, NULL, GW_RULE_DB_SHARE);
    f->limit = 1;
    return false;
}

static void recording_within(void *ctx, const struct gw_peer *peer, const struct gw_principal *p,
                             gw_rpc_run_fn fn, void *arg)
{
    (void)ctx;
    assert_true(peer->cert);
    assert_true(share_nseen < sizeof(share_seen) / sizeof(share_seen[0]));
    share_seen[share_nseen++] = 1000 + share_who(p);
    fn(arg);
}

/* The share hooks get no principal for the identity step (its work is the certificate's, a
 * token's lookup included) and the one it resolved from the handler's start on: admit then
 * decides by the account, and a refusal there is RESOURCE_EXHAUSTED before the handler runs. */
static void test_share_hooks_get_the_resolved_principal(void **state)
{
    struct harness *h;
    uint8_t buf[32];
    size_t n = frame_service(buf, "mine");
    struct body b = {buf, n, 0};
    struct gw_principal p = {.name = "clerk", .role = "courier", .branch = "a"};
    struct reply *r;

    (void)state;
    test_identify = waiting_identify;
    harness_admit = recording_admit;
    harness_within = recording_within;
    share_nseen = 0;
    share_full = 7;
    h = harness_new(true);
    r = reply_for(h, start_call(h, "/t.T/Echo", NULL, &b));
    assert_non_null(identifying);
    assert_int_equal(share_nseen, 2); /* admit, then within the identity step: no principal */
    assert_int_equal(share_seen[0], -1);
    assert_int_equal(share_seen[1], 1000 - 1);
    p.authn = GW_AUTHN_TOKEN;
    p.account_id = 42;
    gw_call_identified(identifying, NULL, &p);
    identifying = NULL;
    pump(h);
    assert_int_equal(r->grpc_status, GW_GRPC_OK);
    assert_int_equal(r->ndata, n);
    assert_true(share_nseen >= 4); /* the handler's start: admit and within by the account */
    assert_int_equal(share_seen[2], 42);
    assert_int_equal(share_seen[3], 1000 + 42);

    /* another account over the same certificate whose share is full: refused before its
     * handler, though its identity step was admitted */
    share_nseen = 0;
    b.off = 0;
    r = reply_for(h, start_call(h, "/t.T/Echo", NULL, &b));
    assert_non_null(identifying);
    p.account_id = 7;
    gw_call_identified(identifying, NULL, &p);
    identifying = NULL;
    pump(h);
    assert_int_equal(r->grpc_status, GW_GRPC_RESOURCE_EXHAUSTED);
    assert_int_equal(r->ndata, 0);
    assert_int_equal(share_nseen, 3); /* admitted, identified, refused: no handler */
    assert_int_equal(share_seen[2], 7);
    harness_free(h);
}

/* The hooks off again, whether the test passed or not (a failure must not leave them to the
 * next tests). */
static int share_hooks_off(void **state)
{
    (void)state;
    test_identify = NULL;
    identifying = NULL;
    harness_admit = NULL;
    harness_within = NULL;
    return 0;
}

/* A client that resets the stream while its identity is being resolved: the step is cancelled
 * once, nothing else runs, and nothing is left behind. */
static void test_identity_step_cancelled_by_reset(void **state)
{
    struct harness *h;
    uint8_t buf[32];
    struct body b = {buf, frame_service(buf, "x"), 0};
    int32_t id;

    (void)state;
    test_identify = waiting_identify;
    h = harness_new(true);
    identify_cancels = 0;
    id = start_call(h, "/t.T/Hang", NULL, &b);
    assert_non_null(identifying);
    assert_int_equal(gw_h2_live_streams(h->server), 1);
    assert_int_equal(nghttp2_submit_rst_stream(h->client, NGHTTP2_FLAG_NONE, id, NGHTTP2_CANCEL),
                     0);
    pump(h);
    assert_int_equal(identify_cancels, 1);
    assert_null(identifying);
    assert_int_equal(hang_started, 0);
    assert_int_equal(gw_h2_live_streams(h->server), 0);
    test_identify = NULL;
    harness_free(h);
}

static void test_session_freed_with_live_call(void **state)
{
    struct harness *h = harness_new(true);
    uint8_t buf[32];
    struct body b = {buf, frame_service(buf, "x"), 0};

    (void)state;
    (void)start_call(h, "/t.T/Hang", NULL, &b);
    assert_int_equal(hang_started, 1);
    assert_int_equal(cancels, 0);
    harness_free(h); /* connection closed, e.g. at the end of a drain */
    assert_int_equal(cancels, 1);
}

static void test_header_list_cap(void **state)
{
    struct harness *h = harness_new(true);
    char big[1500];
    nghttp2_nv nv[10] = {
        HNV(":method", "POST"),
        HNV(":scheme", "http"),
        HNV(":authority", "localhost"),
        HNV(":path", "/t.T/Echo"),
        HNV("content-type", "application/grpc"),
    };
    int32_t id;
    struct reply *r;

    (void)state;
    memset(big, 'a', sizeof(big));
    nv[5] = (nghttp2_nv){(uint8_t *)"x-big", (uint8_t *)big, 5, sizeof(big), 0};
    nv[6] = (nghttp2_nv){(uint8_t *)"x-big2", (uint8_t *)big, 6, sizeof(big), 0};
    id = nghttp2_submit_request(h->client, NULL, nv, 7, NULL, NULL);
    pump(h);
    r = reply_for(h, id);
    assert_true(r->closed);
    assert_int_equal(r->grpc_status, GW_GRPC_RESOURCE_EXHAUSTED);
    assert_non_null(strstr(r->grpc_message, "maximum header list size"));
    /* Fields after the one over the cap: the answer is the same (it leaves before the rest of
     * the block is read, which then only resets the stream). */
    nv[7] = nv[8] = nv[9] = nv[6];
    id = nghttp2_submit_request(h->client, NULL, nv, 10, NULL, NULL);
    pump(h);
    r = reply_for(h, id);
    assert_true(r->closed);
    assert_int_equal(r->grpc_status, GW_GRPC_RESOURCE_EXHAUSTED);
    assert_non_null(strstr(r->grpc_message, "maximum header list size"));
    /* and the connection serves the next call */
    id = nghttp2_submit_request(h->client, NULL, nv, 5, NULL, NULL);
    pump(h);
    r = reply_for(h, id);
    assert_true(r->closed);
    assert_int_not_equal(r->grpc_status, GW_GRPC_RESOURCE_EXHAUSTED);
    harness_free(h);
}

static void test_goaway(void **state)
{
    struct harness *h = harness_new(true);
    uint8_t buf[32];
    struct body b = {buf, frame_service(buf, "x"), 0};
    struct reply *r;

    (void)state;
    r = reply_for(h, start_call(h, "/t.T/Hang", NULL, &b));
    gw_h2_goaway(h->server);
    pump(h);
    assert_true(gw_h2_want_io(h->server)); /* the call is still in flight */
    gw_call_finish(hung_call, GW_GRPC_OK, NULL);
    pump(h);
    assert_true(r->closed);
    assert_int_equal(r->grpc_status, GW_GRPC_OK);
    assert_false(gw_h2_want_io(h->server));
    assert_int_equal(cancels, 0);
    harness_free(h);
    assert_int_equal(cancels, 0);
}

/* HPACK: a literal header field without indexing, no Huffman coding (lengths < 127). */
static size_t hpack_literal(uint8_t *p, const char *name, const char *value)
{
    size_t nl = strlen(name), vl = strlen(value);

    p[0] = 0;
    p[1] = (uint8_t)nl;
    memcpy(p + 2, name, nl);
    p[2 + nl] = (uint8_t)vl;
    memcpy(p + 3 + nl, value, vl);
    return 3 + nl + vl;
}

/* What the server wrote since the last tally, read raw from its output (then emptied): answers
 * (HEADERS with END_STREAM), RST_STREAMs with reset_code and with any other code, and the last
 * GOAWAY's code (left as it was when none came). */
struct out_tally {
    unsigned answered, resets, other;
    uint32_t goaway;
};

static void tally_output(struct harness *h, uint32_t reset_code, struct out_tally *t)
{
    for (size_t off = 0; off + 9 <= h->nout;) {
        const uint8_t *p = h->out + off;
        size_t len = ((size_t)p[0] << 16) | ((size_t)p[1] << 8) | p[2];
        const uint8_t *c = p + 9 + (p[3] == NGHTTP2_GOAWAY ? 4 : 0);

        assert_true(off + 9 + len <= h->nout);
        if (p[3] == NGHTTP2_HEADERS && (p[4] & NGHTTP2_FLAG_END_STREAM))
            t->answered++;
        if (p[3] == NGHTTP2_RST_STREAM || p[3] == NGHTTP2_GOAWAY) {
            uint32_t code =
                ((uint32_t)c[0] << 24) | ((uint32_t)c[1] << 16) | ((uint32_t)c[2] << 8) | c[3];

            if (p[3] == NGHTTP2_GOAWAY)
                t->goaway = code;
            else if (code == reset_code)
                t->resets++;
            else
                t->other++;
        }
        off += 9 + len;
    }
    free(h->out);
    h->out = NULL;
    h->nout = 0;
}

/* Writes a raw frame header at p. */
static void raw_frame_hd(uint8_t *p, size_t len, uint8_t type, uint8_t flags, int32_t id)
{
    p[0] = (uint8_t)(len >> 16), p[1] = (uint8_t)(len >> 8), p[2] = (uint8_t)len;
    p[3] = type, p[4] = flags;
    p[5] = (uint8_t)(id >> 24), p[6] = (uint8_t)(id >> 16), p[7] = (uint8_t)(id >> 8);
    p[8] = (uint8_t)id;
}

/* MadeYouReset (CVE-2025-8671): stream after stream whose request headers hold `connection:
 * close` (forbidden in HTTP/2), which nghttp2 answers with RST_STREAM PROTOCOL_ERROR, the slot
 * free at once. Each such reset costs the client one RST_STREAM from its budget, as its own
 * would: once the burst is spent the server sends GOAWAY ENHANCE_YOUR_CALM and wants no more I/O.
 * Written in raw frames (the client session would not send the header); the server's frames are
 * read from its output, not by the client session. */
static void test_provoked_resets_charged(void **state)
{
    static const char *const hdrs[][2] = {
        {":method", "POST"},
        {":scheme", "https"},
        {":path", "/t.T/Echo"},
        {":authority", "localhost"},
        {"content-type", "application/grpc"},
        {"te", "trailers"},
        {"connection", "close"},
    };
    struct harness *h = harness_new(true);
    struct out_tally t = {.goaway = UINT32_MAX};
    unsigned sent;

    (void)state;
    free(h->out);
    h->out = NULL;
    h->nout = 0;
    for (sent = 0; sent < 4 * GW_H2_CALM_RST_STREAM_BURST && t.goaway == UINT32_MAX; sent++) {
        uint8_t f[256];
        size_t n = 9;
        int32_t id = (int32_t)(2 * sent + 1);

        for (size_t i = 0; i < sizeof(hdrs) / sizeof(hdrs[0]); i++)
            n += hpack_literal(f + n, hdrs[i][0], hdrs[i][1]);
        raw_frame_hd(f, n - 9, NGHTTP2_HEADERS, NGHTTP2_FLAG_END_HEADERS | NGHTTP2_FLAG_END_STREAM,
                     id);
        assert_int_equal(gw_h2_recv(h->server, f, n), 0);
        tally_output(h, NGHTTP2_PROTOCOL_ERROR, &t);
    }
    assert_int_equal(t.goaway, NGHTTP2_ENHANCE_YOUR_CALM);
    assert_int_equal(t.other, 0);
    /* the burst, then the one over it (counted as it left); the refill of a slow run at most */
    assert_true(t.resets > GW_H2_CALM_RST_STREAM_BURST);
    assert_true(t.resets < 2 * GW_H2_CALM_RST_STREAM_BURST);
    assert_int_equal(sent, t.resets);
    assert_false(gw_h2_want_io(h->server));
    harness_free(h);
}

/* HPACK bomb: one 1000-byte field added to the dynamic table once (by the first stream), then
 * stream after stream whose block is that field referenced BOMB_REFS times (one byte each,
 * 1035 header-list bytes each against the harness's cap of 2048). Each stream is answered at the
 * field that passed the cap (trailers-only, then nghttp2's RST_STREAM INTERNAL_ERROR: the rest of
 * its block is decoded for the HPACK table only) and costs the client one reset from its
 * RST_STREAM budget: the burst, then GOAWAY ENHANCE_YOUR_CALM. Counted by frames: before, no
 * stream was reset and no GOAWAY came, however many bombs. Raw frames, the server's output read
 * raw. */
#define BOMB_REFS 4000u
static void test_header_bomb_charged(void **state)
{
    static const char *const hdrs[][2] = {
        {":method", "POST"},
        {":scheme", "https"},
        {":path", "/t.T/Echo"},
        {":authority", "localhost"},
        {"content-type", "application/grpc"},
    };
    struct harness *h = harness_new(true);
    struct out_tally t = {.goaway = UINT32_MAX};
    unsigned sent;
    uint8_t *f = malloc(9 + 2048 + BOMB_REFS);

    (void)state;
    assert_non_null(f);
    free(h->out);
    h->out = NULL;
    h->nout = 0;
    for (sent = 0; sent < 4 * GW_H2_CALM_RST_STREAM_BURST && t.goaway == UINT32_MAX; sent++) {
        size_t n = 9;
        int32_t id = (int32_t)(2 * sent + 1);

        for (size_t i = 0; i < sizeof(hdrs) / sizeof(hdrs[0]); i++)
            n += hpack_literal(f + n, hdrs[i][0], hdrs[i][1]);
        if (sent == 0) { /* literal with incremental indexing, new name: index 62 */
            memcpy(f + n, "\x40\x03x-b\x7f", 6);
            f[n + 6] = (uint8_t)(((1000u - 127u) & 0x7fu) | 0x80u);
            f[n + 7] = (uint8_t)((1000u - 127u) >> 7);
            memset(f + n + 8, 'a', 1000);
            n += 1008;
        }
        memset(f + n, 0x80 | 62, BOMB_REFS);
        n += BOMB_REFS;
        raw_frame_hd(f, n - 9, NGHTTP2_HEADERS, NGHTTP2_FLAG_END_HEADERS | NGHTTP2_FLAG_END_STREAM,
                     id);
        assert_int_equal(gw_h2_recv(h->server, f, n), 0);
        tally_output(h, NGHTTP2_INTERNAL_ERROR, &t);
    }
    free(f);
    assert_int_equal(t.goaway, NGHTTP2_ENHANCE_YOUR_CALM);
    assert_int_equal(t.other, 0);
    /* the burst, then the one over it; the refill of a slow run at most */
    assert_true(sent > GW_H2_CALM_RST_STREAM_BURST);
    assert_true(sent < 2 * GW_H2_CALM_RST_STREAM_BURST);
    /* every bomb answered (trailers-only) before its reset, but the last: the GOAWAY ends the
     * session before its answer and its reset leave */
    assert_int_equal(t.answered, sent - 1);
    assert_int_equal(t.resets, sent - 1);
    assert_false(gw_h2_want_io(h->server));
    harness_free(h);
}

/* The client's trailers have the header cap too: a request whose trailers pass it (a 1000-byte
 * field added to the HPACK table, then referenced 100 times) is reset at once (the rest of the
 * block is not validated) and never runs; the connection goes on. */
static void test_trailer_bomb_resets_stream(void **state)
{
    static const char *const hdrs[][2] = {
        {":method", "POST"},
        {":scheme", "https"},
        {":path", "/t.T/Hang"},
        {":authority", "localhost"},
        {"content-type", "application/grpc"},
    };
    struct harness *h = harness_new(true);
    uint8_t f[2048];
    size_t n = 9, start;
    bool reset = false, goaway = false;

    (void)state;
    for (size_t i = 0; i < sizeof(hdrs) / sizeof(hdrs[0]); i++)
        n += hpack_literal(f + n, hdrs[i][0], hdrs[i][1]);
    raw_frame_hd(f, n - 9, NGHTTP2_HEADERS, NGHTTP2_FLAG_END_HEADERS, 1);
    start = n;
    n += 9 + frame_service(f + n + 9, "x");
    raw_frame_hd(f + start, n - start - 9, NGHTTP2_DATA, 0, 1);
    assert_int_equal(gw_h2_recv(h->server, f, n), 0);
    assert_int_equal(hang_started, 0); /* a unary call: it waits for END_STREAM */
    free(h->out);
    h->out = NULL;
    h->nout = 0;
    n = 9;
    memcpy(f + n, "\x40\x03x-b\x7f", 6); /* literal with incremental indexing: index 62 */
    f[n + 6] = (uint8_t)(((1000u - 127u) & 0x7fu) | 0x80u);
    f[n + 7] = (uint8_t)((1000u - 127u) >> 7);
    memset(f + n + 8, 'a', 1000);
    n += 1008;
    memset(f + n, 0x80 | 62, 100);
    n += 100;
    raw_frame_hd(f, n - 9, NGHTTP2_HEADERS, NGHTTP2_FLAG_END_HEADERS | NGHTTP2_FLAG_END_STREAM, 1);
    assert_int_equal(gw_h2_recv(h->server, f, n), 0);
    for (size_t off = 0; off + 9 <= h->nout;) {
        const uint8_t *p = h->out + off;
        size_t len = ((size_t)p[0] << 16) | ((size_t)p[1] << 8) | p[2];

        if (p[3] == NGHTTP2_RST_STREAM && p[8] == 1 && p[12] == NGHTTP2_INTERNAL_ERROR)
            reset = true;
        goaway = goaway || p[3] == NGHTTP2_GOAWAY;
        off += 9 + len;
    }
    assert_true(reset);
    assert_false(goaway);
    assert_int_equal(hang_started, 0); /* the request never ran */
    harness_free(h);
}

/* A policy reload while a call runs: the running call keeps the policy it started with (its
 * reference keeps it alive after the daemon dropped it; ASan would see a use after free), a
 * call started after the reload gets the new one. */
static void test_policy_swapped_under_running_call(void **state)
{
    struct harness *h = harness_new(true);
    uint8_t buf[32];
    struct body b = {buf, frame_service(buf, "x"), 0};
    const char *text = "[view.courier]\nrecipient.phone = token\n";
    struct gw_policy *np = NULL;
    struct gw_call *first, *second;
    struct reply *r1, *r2;
    char err[256];

    (void)state;
    r1 = reply_for(h, start_call(h, "/t.T/Hang", NULL, &b));
    first = hung_call;
    assert_non_null(first);
    assert_ptr_equal(gw_call_policy(first), h->policy);
    assert_int_equal(gw_policy_parse(text, strlen(text), "new.conf", test_rules,
                                     sizeof(test_rules) / sizeof(test_rules[0]), &np, err,
                                     sizeof(err)),
                     0);
    gw_rpc_set_policy(h->rpc, np);
    gw_policy_free(h->policy); /* the daemon's reference to the old policy goes */
    h->policy = np;
    assert_int_equal(gw_policy_view(gw_call_policy(first), "courier", GW_COL_RECIPIENT_PHONE),
                     GW_VIEW_MASK);
    b.off = 0;
    r2 = reply_for(h, start_call(h, "/t.T/Hang", NULL, &b));
    second = hung_call;
    assert_ptr_not_equal(first, second);
    assert_ptr_equal(gw_call_policy(second), np);
    assert_int_equal(gw_policy_view(gw_call_policy(second), "courier", GW_COL_RECIPIENT_PHONE),
                     GW_VIEW_TOKEN);
    gw_call_finish(first, GW_GRPC_OK, NULL); /* frees the old policy with the call */
    gw_call_finish(second, GW_GRPC_OK, NULL);
    pump(h);
    assert_true(r1->closed && r2->closed);
    assert_int_equal(r1->grpc_status, GW_GRPC_OK);
    assert_int_equal(r2->grpc_status, GW_GRPC_OK);
    harness_free(h);
}

/* ---- server streaming and backpressure ---- */

/* 256 messages of 16 KiB: 4 MiB through a client whose window is 16 KiB and which reads only
 * when the test says so. The server never holds more than the high-water mark plus one message
 * for the stream, parks the handler while the client reads nothing, and delivers every message
 * in order once the client reads. */
static void test_stream_backpressure(void **state)
{
    struct harness *h = harness_new_window(true, 16384);
    uint8_t buf[32];
    struct body b = {buf, frame_service(buf, "x"), 0};
    /* one message on the wire: prefix, tag, 3-byte length, payload */
    const size_t frame = GW_GRPC_PREFIX_LEN + 1 + 3 + 16384;
    const size_t bound = GW_H2_STREAM_HIGH + frame;
    size_t max_seen = 0, q;
    unsigned parked;
    struct reply *r;
    int32_t id;

    (void)state;
    h->cfg.max_message_size = 65536; /* looser than the bound: the bound must come from h2 */
    flood_count = 256;
    flood_size = 16384;
    id = start_call(h, "/t.T/Flood", NULL, &b);
    r = reply_for(h, id);
    assert_int_equal(nfloods, 1);

    /* The client reads nothing: the handler fills the queue up to the mark, then waits. */
    for (int i = 0; i < 20; i++) {
        event_base_loop(h->base, EVLOOP_NONBLOCK);
        pump(h);
    }
    parked = floods[0].sent;
    q = gw_h2_queued(h->server);
    assert_false(r->closed);
    assert_true(parked < flood_count);
    /* it did fill up to the mark (less what the window took): the bound is not vacuous */
    assert_true(q + r->received >= GW_H2_STREAM_HIGH);
    assert_true(q <= bound);
    assert_true(floods[0].max_queued <= bound);
    assert_int_equal(floods[0].writable_runs, 0);
    assert_int_equal(r->received, 16384); /* exactly the client's window */

    /* The client reads 8 KiB at a time. */
    for (int guard = 0; !r->closed; guard++) {
        assert_true(guard < 100000);
        (void)client_consume(h, id, 8192);
        pump(h);
        q = gw_h2_queued(h->server);
        if (q > max_seen)
            max_seen = q;
        event_base_loop(h->base, EVLOOP_NONBLOCK); /* the writable upcall, when due */
        pump(h);
    }
    assert_int_equal(r->grpc_status, GW_GRPC_OK);
    assert_int_equal(r->close_error, NGHTTP2_NO_ERROR);
    assert_int_equal(floods[0].send_err, 0);
    assert_int_equal(floods[0].sent, flood_count);
    assert_int_equal(r->nmsgs, flood_count);
    assert_int_equal(r->nseq, flood_count);
    assert_int_equal(r->seq_errors, 0);
    assert_int_equal(r->received, (size_t)flood_count * frame);
    assert_true(max_seen <= bound);
    assert_true(floods[0].max_queued <= bound);
    assert_true(floods[0].writable_runs > 0);
    assert_int_equal(floods[0].cancels, 0);
    assert_int_equal(gw_h2_queued(h->server), 0);
    assert_int_equal(gw_h2_live_streams(h->server), 0);
    harness_free(h);
}

/* The connection's response budget: four streams whose client reads nothing queue at most the
 * budget plus one message between them (each alone would queue GW_H2_STREAM_HIGH); the handlers
 * wait in their writable callbacks, and once the client reads, every stream gets every message. */
static void test_response_budget_backpressure(void **state)
{
    const uint32_t limit = 64u * 1024u;
    const size_t frame = GW_GRPC_PREFIX_LEN + 1 + 3 + 16384;
    struct harness *h;
    uint8_t buf[4][32];
    struct body b[4];
    int32_t ids[4];
    size_t q;
    bool all_closed = false;

    (void)state;
    harness_resp_mem = limit;
    h = harness_new_window(true, 16384);
    harness_resp_mem = 0;
    h->cfg.max_message_size = 65536;
    flood_count = 64;
    flood_size = 16384;
    for (int i = 0; i < 4; i++) {
        b[i] = (struct body){buf[i], frame_service(buf[i], "x"), 0};
        ids[i] = start_call(h, "/t.T/Flood", NULL, &b[i]);
    }
    assert_int_equal(nfloods, 4);
    for (int i = 0; i < 20; i++) {
        event_base_loop(h->base, EVLOOP_NONBLOCK);
        pump(h);
    }
    q = gw_h2_queued(h->server);
    assert_true(q <= limit + frame);
    assert_true(q >= limit); /* filled up to the budget: the bound is not vacuous */
    for (int i = 0; i < 4; i++) {
        assert_true(floods[i].max_queued <= limit + frame);
        assert_true(floods[i].sent < flood_count);
    }
    /* The client reads: the waiting handlers are woken as the budget frees, and all finish. */
    for (int guard = 0; !all_closed; guard++) {
        assert_true(guard < 100000);
        all_closed = true;
        for (int i = 0; i < 4; i++) {
            (void)client_consume(h, ids[i], 8192);
            all_closed = all_closed && reply_for(h, ids[i])->closed;
        }
        pump(h);
        q = gw_h2_queued(h->server);
        assert_true(q <= limit + frame);
        event_base_loop(h->base, EVLOOP_NONBLOCK);
        pump(h);
    }
    for (int i = 0; i < 4; i++) {
        struct reply *r = reply_for(h, ids[i]);
        assert_int_equal(r->grpc_status, GW_GRPC_OK);
        assert_int_equal(r->nmsgs, flood_count);
        assert_int_equal(floods[i].sent, flood_count);
        assert_true(floods[i].max_queued <= limit + frame);
    }
    assert_int_equal(gw_h2_queued(h->server), 0);
    harness_free(h);
}

/* Bytes a handler holds (gw_call_hold: a batch being read) count against the response budget:
 * another stream that holds nothing waits while they fill it, and is woken, and finishes, once
 * they are given back. */
static void test_response_hold_and_wake(void **state)
{
    struct harness *h;
    uint8_t buf[2][32];
    struct body b0 = {buf[0], frame_service(buf[0], "x"), 0};
    struct body b1 = {buf[1], frame_service(buf[1], "x"), 0};
    struct reply *r;

    (void)state;
    harness_resp_mem = 65536;
    h = harness_new(true);
    harness_resp_mem = 0;
    flood_count = 8;
    flood_size = 512; /* under the harness's max_message_size */
    (void)reply_for(h, start_call(h, "/t.T/Hold", "5S", &b0));
    assert_non_null(hung_call);
    gw_call_hold(hung_call, 65536); /* the whole budget */
    r = reply_for(h, start_call(h, "/t.T/Flood", "5S", &b1));
    for (int i = 0; i < 10; i++) {
        event_base_loop(h->base, EVLOOP_NONBLOCK);
        pump(h);
    }
    assert_int_equal(nfloods, 1);
    assert_int_equal(floods[0].sent, 0); /* waiting for room, not sending */
    assert_false(r->closed);
    gw_call_hold(hung_call, 0);
    for (int i = 0; i < 10 && !r->closed; i++) {
        event_base_loop(h->base, EVLOOP_NONBLOCK);
        pump(h);
    }
    assert_true(r->closed);
    assert_int_equal(r->grpc_status, GW_GRPC_OK);
    assert_int_equal(r->nmsgs, flood_count);
    assert_true(floods[0].writable_runs > 0);
    gw_call_finish(hung_call, GW_GRPC_OK, NULL);
    pump(h);
    harness_free(h);
}

/* ---- the client certificate's response budget, shared by its connections ---- */

/* Two harnesses on one loop sharing a certificate's response pool of cert_limit bytes: two
 * connections of one certificate. *a's budget per connection is a_conn_limit (0: none); *b has
 * none; neither has a gateway-wide limit. */
static struct event_base *cert_pair(size_t cert_limit, uint32_t a_conn_limit, uint32_t a_window,
                                    struct gw_h2_pool **cert, struct harness **a,
                                    struct harness **b)
{
    struct event_base *base = gw_clock_loop_new();

    assert_non_null(base);
    *cert = gw_h2_pool_new(base, cert_limit);
    assert_non_null(*cert);
    harness_base = base;
    harness_cert_pool = *cert;
    harness_resp_mem = a_conn_limit;
    *a = harness_new_window(true, a_window);
    harness_resp_mem = 0;
    *b = harness_new(true);
    harness_base = NULL;
    harness_cert_pool = NULL;
    return base;
}

/* Runs the shared loop and moves both connections' bytes, n times. */
static void cert_pair_spin(struct event_base *base, struct harness *a, struct harness *b, int n)
{
    for (int i = 0; i < n; i++) {
        event_base_loop(base, EVLOOP_NONBLOCK);
        pump(a);
        pump(b);
    }
}

static void cert_pair_free(struct event_base *base, struct gw_h2_pool *cert, struct harness *a,
                           struct harness *b)
{
    size_t used, peak, limit;

    gw_h2_pool_usage(cert, &used, &peak, &limit);
    assert_int_equal(used, 0); /* every byte given back */
    harness_free(a);
    harness_free(b);
    gw_h2_pool_free(cert);
    event_base_free(base);
}

/* A call on connection A holds its certificate's whole response budget: a Flood on connection
 * B, whose own budget and the gateway's have room, waits for the certificate's. A gives its
 * bytes back and B's waiting stream is woken (by the certificate's pool: A's session knows
 * nothing of B's streams, and B gave nothing back), and finishes. */
static void test_response_cert_wake_across_connections(void **state)
{
    struct event_base *base;
    struct gw_h2_pool *cert;
    struct harness *a, *b;
    uint8_t buf[2][32];
    struct body ba = {buf[0], frame_service(buf[0], "x"), 0};
    struct body bb = {buf[1], frame_service(buf[1], "x"), 0};
    struct gw_call *held;
    struct reply *r;
    size_t used, peak, limit;

    (void)state;
    base = cert_pair(65536, 0, 0, &cert, &a, &b);
    flood_count = 8;
    flood_size = 512;
    (void)reply_for(a, start_call(a, "/t.T/Hold", "5S", &ba));
    held = hung_call;
    assert_non_null(held);
    gw_call_hold(held, 65536);
    r = reply_for(b, start_call(b, "/t.T/Flood", "5S", &bb));
    cert_pair_spin(base, a, b, 10);
    assert_int_equal(nfloods, 1);
    assert_int_equal(floods[0].sent, 0); /* waiting for the certificate's room */
    assert_int_equal(floods[0].writable_runs, 0);
    assert_false(r->closed);
    gw_call_hold(held, 0); /* given back on A */
    for (int i = 0; i < 10 && !r->closed; i++)
        cert_pair_spin(base, a, b, 1);
    assert_true(r->closed);
    assert_int_equal(r->grpc_status, GW_GRPC_OK);
    assert_int_equal(r->nmsgs, flood_count);
    assert_true(floods[0].writable_runs > 0);
    gw_h2_pool_usage(cert, &used, &peak, &limit);
    assert_int_equal(peak, 65536);
    gw_call_finish(held, GW_GRPC_OK, NULL);
    cert_pair_spin(base, a, b, 2);
    cert_pair_free(base, cert, a, b);
}

/* Connection A's Flood, whose client reads nothing, fills the certificate's response budget (A
 * has none of its own, nor the gateway a limit); B's Flood then sends nothing. As A's client
 * reads, the bytes that leave A wake B long before A ends; both get every message, and the
 * certificate's budget is never passed by more than one message. */
static void test_response_cert_budget_shared(void **state)
{
    const size_t limit = 64u * 1024u, frame = GW_GRPC_PREFIX_LEN + 1 + 3 + 16384;
    struct event_base *base;
    struct gw_h2_pool *cert;
    struct harness *a, *b;
    uint8_t buf[2][32];
    struct body ba = {buf[0], frame_service(buf[0], "x"), 0};
    struct body bb = {buf[1], frame_service(buf[1], "x"), 0};
    struct reply *ra, *rb;
    size_t used, peak, lim;
    int32_t ida, idb;

    (void)state;
    base = cert_pair(limit, 0, 16384, &cert, &a, &b);
    a->cfg.max_message_size = b->cfg.max_message_size = 65536;
    flood_count = 16;
    flood_size = 16384;
    ida = start_call(a, "/t.T/Flood", NULL, &ba);
    cert_pair_spin(base, a, b, 20);
    gw_h2_pool_usage(cert, &used, &peak, &lim);
    assert_true(used >= limit); /* filled: the bound is not vacuous */
    assert_true(used <= limit + frame);
    assert_true(floods[0].sent < flood_count);
    idb = start_call(b, "/t.T/Flood", NULL, &bb);
    cert_pair_spin(base, a, b, 20);
    ra = reply_for(a, ida);
    rb = reply_for(b, idb);
    assert_int_equal(nfloods, 2);
    assert_int_equal(floods[1].sent, 0);
    assert_false(rb->closed);
    for (int guard = 0; floods[1].sent == 0; guard++) {
        assert_true(guard < 1000);
        (void)client_consume(a, ida, 4096);
        cert_pair_spin(base, a, b, 1);
    }
    assert_false(ra->closed); /* B was woken by what left A, not by A's end */
    for (int guard = 0; !ra->closed || !rb->closed; guard++) {
        assert_true(guard < 100000);
        (void)client_consume(a, ida, 8192);
        cert_pair_spin(base, a, b, 1);
        gw_h2_pool_usage(cert, &used, &peak, &lim);
        assert_true(used <= limit + frame);
    }
    for (int i = 0; i < 2; i++) {
        struct reply *r = i == 0 ? ra : rb;
        assert_int_equal(r->grpc_status, GW_GRPC_OK);
        assert_int_equal(r->nmsgs, flood_count);
        assert_int_equal(r->seq_errors, 0);
        assert_int_equal(floods[i].sent, flood_count);
    }
    assert_true(floods[1].writable_runs > 0);
    gw_h2_pool_usage(cert, &used, &peak, &lim);
    assert_true(peak <= limit + frame);
    cert_pair_free(base, cert, a, b);
}

/* A stream woken from the certificate's queue whose own connection has no room by then waits on
 * in its connection's queue, and is woken from there by its connection's next give. */
static void test_response_cert_wake_then_connection(void **state)
{
    struct event_base *base;
    struct gw_h2_pool *cert;
    struct harness *a, *b;
    uint8_t buf[3][32];
    struct body b0 = {buf[0], frame_service(buf[0], "x"), 0};
    struct body b1 = {buf[1], frame_service(buf[1], "x"), 0};
    struct body b2 = {buf[2], frame_service(buf[2], "x"), 0};
    struct gw_call *on_a, *on_b;
    struct reply *r;

    (void)state;
    base = cert_pair(65536, 32768, 0, &cert, &a, &b);
    flood_count = 8;
    flood_size = 512;
    (void)reply_for(b, start_call(b, "/t.T/Hold", "5S", &b0));
    on_b = hung_call;
    gw_call_hold(on_b, 65536); /* B: the certificate's budget full */
    r = reply_for(a, start_call(a, "/t.T/Flood", "5S", &b1));
    cert_pair_spin(base, a, b, 10);
    assert_int_equal(floods[0].sent, 0); /* A's connection has room, the certificate none */
    (void)reply_for(a, start_call(a, "/t.T/Hold", "5S", &b2));
    on_a = hung_call;
    assert_ptr_not_equal(on_a, on_b);
    gw_call_hold(on_a, 32768); /* A: its connection's budget full too */
    gw_call_hold(on_b, 0);     /* the certificate's has room again, A's connection none */
    cert_pair_spin(base, a, b, 10);
    assert_int_equal(floods[0].sent, 0);
    assert_false(r->closed);
    gw_call_hold(on_a, 0); /* A's connection gives back */
    for (int i = 0; i < 10 && !r->closed; i++)
        cert_pair_spin(base, a, b, 1);
    assert_true(r->closed);
    assert_int_equal(r->grpc_status, GW_GRPC_OK);
    assert_int_equal(r->nmsgs, flood_count);
    gw_call_finish(on_a, GW_GRPC_OK, NULL);
    gw_call_finish(on_b, GW_GRPC_OK, NULL);
    cert_pair_spin(base, a, b, 2);
    cert_pair_free(base, cert, a, b);
}

/* The stall rule is not kept by a drip of window: a client that grants one byte at a time
 * (each grant lets a byte out) is reset once it has not taken half of its queue within
 * stream_write_timeout_ms, long before the call's deadline. */
static void test_drip_stream_reset(void **state)
{
    struct harness *h = harness_new_window(true, 16384);
    uint8_t buf[32];
    struct body b = {buf, frame_service(buf, "x"), 0};
    struct timeval tick = {0, 20000};
    size_t dripped;
    struct reply *r;
    int32_t id;

    (void)state;
    h->cfg.stream_write_timeout_ms = 200;
    h->cfg.max_message_size = 65536;
    flood_count = 256;
    flood_size = 16384;
    id = start_call(h, "/t.T/Flood", "30S", &b); /* a deadline far past the stall limit */
    r = reply_for(h, id);
    pump(h);
    dripped = r->received;
    for (int i = 0; i < 1000 && !r->closed; i++) { /* at most 20 s of 20 ms ticks */
        assert_int_equal(nghttp2_submit_window_update(h->client, NGHTTP2_FLAG_NONE, id, 1), 0);
        pump(h);
        event_base_loopexit(h->base, &tick);
        event_base_dispatch(h->base);
        pump(h);
    }
    assert_true(r->closed);
    assert_true(r->received > dripped); /* the drip did let bytes out */
    assert_int_equal(r->close_error, NGHTTP2_CANCEL);
    assert_int_equal(r->grpc_status, 0); /* reset, not the deadline's trailers */
    assert_int_equal(floods[0].cancels, 1);
    assert_int_equal(gw_h2_queued(h->server), 0);
    harness_free(h);
}

/* A client that takes no response bytes for stream_write_timeout_ms is reset (RST_STREAM
 * CANCEL) by the stall timer on the real event loop, and the handler's cancel function runs
 * exactly once. */
static void test_stalled_stream_reset(void **state)
{
    struct harness *h = harness_new_window(true, 16384);
    uint8_t buf[32];
    struct body b = {buf, frame_service(buf, "x"), 0};
    uint64_t t0 = gw_clock_ms();
    struct reply *r;
    int32_t id;

    (void)state;
    h->cfg.stream_write_timeout_ms = 100;
    h->cfg.max_message_size = 65536;
    flood_count = 256;
    flood_size = 16384;
    /* a deadline well past the stall limit (so a missing stall reset fails, late, here) */
    id = start_call(h, "/t.T/Flood", "5S", &b);
    r = reply_for(h, id);
    assert_int_equal(nfloods, 1);
    assert_false(r->closed);
    assert_true(floods[0].sent < flood_count);
    /* Each turn waits for the next timer to fire: the stall timer, or the deadline. */
    for (int i = 0; i < 20 && !r->closed; i++) {
        event_base_loop(h->base, EVLOOP_ONCE);
        pump(h);
    }
    assert_true(r->closed);
    assert_int_equal(r->close_error, NGHTTP2_CANCEL);
    assert_int_equal(r->grpc_status, 0);    /* no trailers: the stream was reset */
    assert_true(gw_clock_ms() >= t0 + 100); /* not early (test_deadline) */
    assert_int_equal(floods[0].cancels, 1);
    assert_int_equal(floods[0].writable_runs, 0);
    assert_int_equal(gw_h2_live_streams(h->server), 0);
    assert_int_equal(gw_h2_queued(h->server), 0);
    /* the connection goes on: another call is answered */
    b.off = 0;
    r = reply_for(h, start_call(h, "/t.T/Echo", NULL, &b));
    assert_int_equal(r->grpc_status, GW_GRPC_OK);
    harness_free(h);
    assert_int_equal(floods[0].cancels, 1);
}

/* The stall clock runs only while response bytes wait: a client that took everything, then
 * gets a new message after a pause, has the whole stream_write_timeout_ms to take it. (Timing
 * can only make this test pass wrongly, never fail wrongly: timers never fire early.) */
static void test_stall_clock_starts_when_bytes_wait(void **state)
{
    Grpc__Health__V1__HealthCheckRequest out = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
    char svc[1001];
    /* the client's window holds exactly one message */
    struct harness *h = harness_new_window(true, GW_GRPC_PREFIX_LEN + 3 + 1000);
    uint8_t buf[32];
    struct body b = {buf, frame_service(buf, "x"), 0};
    struct timeval pause = {0, 60000};
    uint64_t t2;
    struct reply *r;

    (void)state;
    h->cfg.stream_write_timeout_ms = 100;
    h->cfg.max_message_size = 65536;
    memset(svc, 'x', 1000);
    svc[1000] = '\0';
    out.service = svc;
    r = reply_for(h, start_call(h, "/t.T/Hold", "5S", &b));
    assert_non_null(hung_call);
    assert_int_equal(gw_call_send(hung_call, &out.base), 0); /* taken at once: the window */
    pump(h);
    assert_int_equal(r->received, GW_GRPC_PREFIX_LEN + 3 + 1000);
    assert_int_equal(gw_h2_queued(h->server), 0);
    event_base_loopexit(h->base, &pause); /* a pause with nothing to send */
    event_base_dispatch(h->base);
    assert_false(r->closed);
    /* before the send arms the clock: a lower bound only slowness can't break */
    t2 = gw_clock_ms();
    assert_int_equal(gw_call_send(hung_call, &out.base), 0); /* waits: the window is closed */
    pump(h);
    assert_true(gw_h2_queued(h->server) > 0);
    for (int i = 0; i < 20 && !r->closed; i++) {
        event_base_loop(h->base, EVLOOP_ONCE);
        pump(h);
    }
    assert_true(r->closed);
    assert_int_equal(r->close_error, NGHTTP2_CANCEL);
    /* Not reset early (the bug left ~40 ms): the full 100 ms, less 1 ms of clock truncation and
     * libevent's timer rounding. */
    assert_true(gw_clock_ms() - t2 >= 95);
    assert_int_equal(cancels, 1);
    harness_free(h);
}

/* The policy step runs before the handler: a courier calling a security_admin-only method, or a
 * method without any rule, is PERMISSION_DENIED naming the role, and the handler never runs. */
static void test_policy_denies_before_handler(void **state)
{
    struct harness *h = harness_new(true); /* the certificate says OU=courier */
    uint8_t buf[32];
    struct body b = {buf, frame_service(buf, "x"), 0};
    struct reply *r;

    (void)state;
    r = reply_for(h, start_call(h, "/t.T/Admin", NULL, &b));
    assert_true(r->closed);
    assert_int_equal(r->grpc_status, GW_GRPC_PERMISSION_DENIED);
    assert_string_equal(r->grpc_message,
                        "role courier: may not call this method (least privilege, Art. 34)");
    assert_int_equal(r->ndata, 0);
    b.off = 0;
    r = reply_for(h, start_call(h, "/t.T/NoRule", NULL, &b));
    assert_true(r->closed);
    assert_int_equal(r->grpc_status, GW_GRPC_PERMISSION_DENIED);
    assert_string_equal(r->grpc_message,
                        "role courier: may not call this method (least privilege, Art. 34)");
    assert_int_equal(guarded_runs, 0);
    /* an unauthenticated caller is not even asked about its role */
    harness_free(h);
    h = harness_new(false);
    b.off = 0;
    r = reply_for(h, start_call(h, "/t.T/Admin", NULL, &b));
    assert_int_equal(r->grpc_status, GW_GRPC_UNAUTHENTICATED);
    assert_int_equal(guarded_runs, 0);
    harness_free(h);
}

/* Three flood calls wait for the writable upcall; the client then reads everything, so all three
 * upcalls fall due in one loop turn. */
static struct harness *three_parked_floods(int32_t ids[3])
{
    struct harness *h = harness_new_window(true, 16384);
    uint8_t buf[32];
    struct body b = {buf, frame_service(buf, "x"), 0};

    h->cfg.max_message_size = 65536;
    flood_count = 64; /* 1 MiB each: more than the high-water mark */
    flood_size = 16384;
    for (int i = 0; i < 3; i++) {
        b.off = 0;
        ids[i] = start_call(h, "/t.T/Flood", NULL, &b);
    }
    assert_int_equal(nfloods, 3);
    /* the client reads, without the loop running: the queues drain, upcalls fall due */
    for (int guard = 0; gw_h2_queued(h->server) > 0; guard++) {
        assert_true(guard < 10000);
        for (int i = 0; i < 3; i++)
            (void)client_consume(h, ids[i], 0);
        pump(h);
    }
    for (int i = 0; i < 3; i++) {
        assert_true(floods[i].sent < flood_count);
        assert_int_equal(floods[i].writable_runs, 0);
        assert_false(reply_for(h, ids[i])->closed);
    }
    return h;
}

/* Writable upcalls that finish (and so free) their own call and stream, one after the other in
 * the same loop turn: each runs once, each call ends OK, nothing is touched after it is freed
 * (the ASan build proves it). */
static void test_writable_finishes_own_call(void **state)
{
    int32_t ids[3];
    struct harness *h = three_parked_floods(ids);

    (void)state;
    flood_mode = FLOOD_FINISH_OWN;
    event_base_loop(h->base, EVLOOP_NONBLOCK); /* one turn: all three upcalls */
    for (int i = 0; i < 3; i++) {
        assert_int_equal(floods[i].writable_runs, 1);
        assert_null(floods[i].call);
    }
    pump(h);
    for (int i = 0; i < 3; i++) {
        struct reply *r = reply_for(h, ids[i]);
        assert_true(r->closed);
        assert_int_equal(r->grpc_status, GW_GRPC_OK);
        assert_int_equal(r->nseq, floods[i].sent);
        assert_int_equal(floods[i].cancels, 0);
    }
    assert_int_equal(gw_h2_live_streams(h->server), 0);
    harness_free(h);
}

/* The first writable upcall of the turn finishes every call, freeing streams whose upcalls were
 * due next: those upcalls never run, and nothing freed is touched. */
static void test_writable_finishes_other_calls(void **state)
{
    int32_t ids[3];
    struct harness *h = three_parked_floods(ids);
    unsigned runs = 0;

    (void)state;
    flood_mode = FLOOD_FINISH_GROUP;
    event_base_loop(h->base, EVLOOP_NONBLOCK);
    for (int i = 0; i < 3; i++) {
        runs += floods[i].writable_runs;
        assert_null(floods[i].call);
    }
    assert_int_equal(runs, 1);
    pump(h);
    for (int i = 0; i < 3; i++) {
        struct reply *r = reply_for(h, ids[i]);
        assert_true(r->closed);
        assert_int_equal(r->grpc_status, GW_GRPC_OK);
        assert_int_equal(floods[i].cancels, 0);
    }
    assert_int_equal(gw_h2_live_streams(h->server), 0);
    event_base_loop(h->base, EVLOOP_NONBLOCK); /* nothing late */
    assert_int_equal(floods[0].writable_runs + floods[1].writable_runs + floods[2].writable_runs,
                     1);
    harness_free(h);
}

/* Response bytes are wiped before libevent releases their memory: both the bytes the client
 * took (drained into nghttp2's frames) and the bytes a reset stream discards. */
#define MARKER "PII-4e1f-MARKER"

static void test_sent_response_wiped(void **state)
{
    struct harness *h = harness_new(true);
    uint8_t buf[64];
    struct body b = {buf, frame_service(buf, "x" MARKER "x"), 0};
    struct reply *r;

    (void)state;
    freed_marker = MARKER;
    freed_with_marker = 0;
    r = reply_for(h, start_call(h, "/t.T/Echo", NULL, &b));
    assert_true(r->closed);
    assert_int_equal(r->grpc_status, GW_GRPC_OK);
    assert_true(holds_marker((const char *)r->data, r->ndata)); /* the marker did go out */
    harness_free(h);
    assert_int_equal(freed_with_marker, 0);
    freed_marker = NULL;
}

/* A closed stream is kept for the next one wiped: the bearer token its headers held is gone. */
static void test_freed_stream_kept_wiped(void **state)
{
    struct harness *h = harness_new(true);
    uint8_t buf[32];
    struct body b = {buf, frame_service(buf, "x"), 0};
    struct reply *r;
    unsigned holding = 99;

    (void)state;
    if (GW_BLOCK_CACHE == 0) { /* AddressSanitizer: streams are freed, none kept */
        harness_free(h);
        skip();
    }
    call_authorization = "Bearer " MARKER;
    r = reply_for(h, start_call(h, "/t.T/Echo", NULL, &b));
    call_authorization = NULL;
    assert_true(r->closed);
    assert_int_equal(r->grpc_status, GW_GRPC_UNAUTHENTICATED); /* the test rule takes no token */
    assert_true(gw_h2_stream_cache_check(MARKER, strlen(MARKER), &holding) > 0);
    assert_int_equal(holding, 0);
    harness_free(h);
}

static void test_reset_response_wiped(void **state)
{
    Grpc__Health__V1__HealthCheckRequest out = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
    char svc[600];
    struct harness *h = harness_new_window(true, 16); /* takes 16 bytes, then stops reading */
    uint8_t buf[32];
    struct body b = {buf, frame_service(buf, "x"), 0};
    struct reply *r;

    (void)state;
    h->cfg.stream_write_timeout_ms = 50;
    memset(svc, 'x', sizeof(svc) - 1);
    svc[sizeof(svc) - 1] = '\0';
    memcpy(svc + 100, MARKER, strlen(MARKER));
    out.service = svc;
    freed_marker = MARKER;
    freed_with_marker = 0;
    r = reply_for(h, start_call(h, "/t.T/Hold", "5S", &b));
    assert_non_null(hung_call);
    assert_int_equal(gw_call_send(hung_call, &out.base), 0);
    pump(h);
    assert_int_equal(r->received, 16);
    assert_true(gw_h2_queued(h->server) > 0);
    for (int i = 0; i < 20 && !r->closed; i++) { /* the stall timer resets the stream */
        event_base_loop(h->base, EVLOOP_ONCE);
        pump(h);
    }
    assert_true(r->closed);
    assert_int_equal(r->close_error, NGHTTP2_CANCEL);
    assert_int_equal(freed_with_marker, 0);
    harness_free(h);
    assert_int_equal(freed_with_marker, 0);
    freed_marker = NULL;
}

/* ---- an identity step that waits (as a token lookup will) ---- */

static struct gw_call *identifying;
static int identify_cancels;

static void identify_cancel(void *arg)
{
    (void)arg;
    identify_cancels++;
    identifying = NULL;
}

static void identify_later(void *ctx, struct gw_call *call, const struct gw_peer *peer,
                           const char *authorization)
{
    (void)ctx;
    (void)peer;
    (void)authorization;
    identifying = call;
    gw_call_set_cancel(call, identify_cancel, NULL);
}

/* While the identity step runs, nothing about the request body is answered: a caller who is not
 * yet identified learns no message rule (size cap, compression) from the gateway, and a caller
 * then refused is told UNAUTHENTICATED, not what was wrong with its message. An allowed caller
 * gets the body's refusal after the step. */
static void test_identity_decides_before_body(void **state)
{
    struct harness *h;
    uint8_t buf[32];
    size_t n = frame_service(buf, "a");
    struct body b = {buf, n, 0};
    struct gw_principal who;
    struct gw_fault f;
    struct reply *r;

    (void)state;
    harness_identify = identify_later;
    h = harness_new(true);
    harness_identify = NULL;
    identify_cancels = 0;
    buf[0] = 1; /* compressed: refused, but only once the caller is known */
    r = reply_for(h, start_call(h, "/t.T/Echo", NULL, &b));
    assert_non_null(identifying);
    assert_false(r->closed);
    assert_int_equal(r->grpc_status, 0);
    (void)gw_fault_set(&f, GW_EAUTH, NULL, "authorization", GW_RULE_TOKEN_NOT_ACCEPTED);
    gw_call_identified(identifying, &f, NULL);
    pump(h);
    assert_true(r->closed);
    assert_int_equal(r->grpc_status, GW_GRPC_UNAUTHENTICATED);

    /* the same body from a caller the step allows: now the body's own refusal */
    b.off = 0;
    identifying = NULL;
    r = reply_for(h, start_call(h, "/t.T/Echo", NULL, &b));
    assert_non_null(identifying);
    assert_false(r->closed);
    memset(&who, 0, sizeof(who));
    snprintf(who.name, sizeof(who.name), "tester");
    snprintf(who.role, sizeof(who.role), "courier");
    who.authn = GW_AUTHN_CERT;
    gw_call_identified(identifying, NULL, &who);
    pump(h);
    assert_true(r->closed);
    assert_int_equal(r->grpc_status, GW_GRPC_UNIMPLEMENTED);
    assert_string_equal(r->grpc_message, "compressed messages are not supported");
    assert_int_equal(identify_cancels, 0);
    harness_free(h);
}

/* A writable callback that asks for the next one runs it at the next loop turn, after I/O, not
 * again inside the same turn: a handler that keeps asking cannot hold the event loop (and every
 * other connection) in one callback. */
static void test_writable_reasked_runs_next_turn(void **state)
{
    struct harness *h = harness_new(true);
    uint8_t buf[32];
    struct body b = {buf, frame_service(buf, "x"), 0};
    struct reply *r;

    (void)state;
    poll_runs = 0;
    polls_left = 1000;
    r = reply_for(h, start_call(h, "/t.T/Poll", NULL, &b));
    assert_false(r->closed);
    event_base_loop(h->base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
    assert_int_equal(poll_runs, 1);
    event_base_loop(h->base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
    assert_int_equal(poll_runs, 2);
    polls_left = 0;
    event_base_loop(h->base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
    assert_int_equal(poll_runs, 3);
    pump(h);
    assert_true(r->closed);
    assert_int_equal(r->grpc_status, GW_GRPC_OK);
    harness_free(h);
}

/* Issue 10, finding 1: a completion callback answers its call while the connection's output is
 * backed up and a reset of another stream waits in nghttp2's queue. Answering must not flush: a
 * flush would send that reset, close the other stream and free its call (cancelling it) inside the
 * completion's dispatch, and a dispatcher that still holds the other waiter (as the segment cache
 * once did) would then run a freed call. Rule: gw_call_finish (gw_h2_stream_finish) closes no
 * stream before it returns; the flush runs from the loop. */
static void test_finish_in_completion_closes_no_other_stream(void **state)
{
    struct harness *h = harness_new(true);
    uint8_t buf[32], wu[13];
    struct body b = {buf, frame_service(buf, "x"), 0};
    int32_t a, c;

    (void)state;
    a = start_call(h, "/t.T/Wait", NULL, &b);
    b.off = 0;
    c = start_call(h, "/t.T/Wait", NULL, &b);
    assert_int_equal(nwaiters, 2);
    /* The output backs up; then a WINDOW_UPDATE that overflows stream c's window (a stream error,
     * FLOW_CONTROL_ERROR): nghttp2 queues RST_STREAM for c, which cannot leave yet. */
    io_backlog = GW_H2_OUT_HIGH;
    wu[0] = 0, wu[1] = 0, wu[2] = 4, wu[3] = 0x8, wu[4] = 0;
    wu[5] = (uint8_t)(c >> 24), wu[6] = (uint8_t)(c >> 16), wu[7] = (uint8_t)(c >> 8);
    wu[8] = (uint8_t)c;
    wu[9] = 0x7f, wu[10] = wu[11] = wu[12] = 0xff;
    assert_int_equal(gw_h2_recv(h->server, wu, sizeof(wu)), 0);
    assert_false(reply_for(h, c)->closed);
    assert_int_equal(h->nout, 0);
    io_backlog = 0; /* the socket drains: the next flush sends the reset */
    /* The completion: the first waiter's callback answers its call... */
    gw_call_finish(waiters[0].call, GW_GRPC_OK, NULL);
    waiters[0].call = NULL;
    /* ...and the second waiter is still there, its call alive: nothing was flushed. */
    assert_int_equal(h->nout, 0);
    assert_non_null(waiters[1].call);
    assert_int_equal(waiters[1].cancels, 0);
    gw_call_fail(waiters[1].call, GW_EINVAL, "x", GW_RULE_NONE);
    waiters[1].call = NULL;
    pump(h); /* the loop's flush */
    assert_true(reply_for(h, a)->closed);
    assert_int_equal(reply_for(h, a)->grpc_status, GW_GRPC_OK);
    assert_true(reply_for(h, c)->closed);
    assert_int_equal(waiters[0].cancels + waiters[1].cancels, 0);
    assert_int_equal(gw_h2_live_streams(h->server), 0);
    harness_free(h);
}

/* Issue 10, finding 1 as the review found it: two Submits of one connection wait for the same
 * segment reload; the output is backed up while resets of the streams are queued (whichever
 * waiter the cache answers first, the other's reset waits); the load completes once the output
 * has drained. The first waiter's answer must not close the other stream (nor free its call and
 * waiter) while the cache is still dispatching: each waiter is answered by its own callback, and
 * nothing freed is touched (the ASan build proves it; with a synchronous flush in finish and a
 * cache that cancels only from its waiting list, this was a heap-use-after-free). */
static void test_segment_waiters_answered_while_reset_queued(void **state)
{
    struct gw_segcache_source src = {seg_load, seg_cancel_load, seg_now, NULL};
    struct harness *h = harness_new(true);
    uint8_t buf[32], wu[13];
    struct body b = {buf, frame_service(buf, "x"), 0};
    int32_t a, c;

    (void)state;
    segs = gw_segcache_new_source(&src, 1000);
    assert_non_null(segs);
    seg_loads = seg_answers = seg_cancels = 0;
    a = start_call(h, "/t.T/Seg", NULL, &b);
    b.off = 0;
    c = start_call(h, "/t.T/Seg", NULL, &b);
    assert_int_equal(seg_loads, 1); /* one load, two waiters */
    io_backlog = GW_H2_OUT_HIGH;
    for (int32_t id = a; id <= c; id += c - a) {
        wu[0] = 0, wu[1] = 0, wu[2] = 4, wu[3] = 0x8, wu[4] = 0;
        wu[5] = (uint8_t)(id >> 24), wu[6] = (uint8_t)(id >> 16), wu[7] = (uint8_t)(id >> 8);
        wu[8] = (uint8_t)id;
        wu[9] = 0x7f, wu[10] = wu[11] = wu[12] = 0xff;
        assert_int_equal(gw_h2_recv(h->server, wu, sizeof(wu)), 0);
    }
    io_backlog = 0;
    gw_segcache_loaded(segs, 0, NULL, 0); /* as the store's callback does: no segment matches */
    assert_int_equal(seg_answers, 2);
    assert_int_equal(seg_cancels, 0);
    pump(h);
    assert_int_equal(reply_for(h, a)->close_error, NGHTTP2_FLOW_CONTROL_ERROR);
    assert_int_equal(reply_for(h, c)->close_error, NGHTTP2_FLOW_CONTROL_ERROR);
    assert_int_equal(gw_h2_live_streams(h->server), 0);
    harness_free(h);
    gw_segcache_free(segs);
    segs = NULL;
}

/* Issue 10, finding 3: a client sends part of a message and never ends the stream. The deadline
 * answers the call; the client's half stays open; the gateway resets the stream (RST_STREAM
 * NO_ERROR) once the linger after its answer has passed, so the stream, its slot and its call
 * do not live until the client disconnects; the connection counts no live call meanwhile. */
static void test_stream_left_open_after_answer_reset(void **state)
{
    struct harness *h = harness_new(true);
    uint8_t buf[600];
    struct body b = {buf, sizeof(buf), 0};
    nghttp2_nv nv[7] = {
        HNV(":method", "POST"),
        HNV(":scheme", "http"),
        HNV(":authority", "localhost"),
        HNV(":path", "/t.T/Echo"),
        HNV("content-type", "application/grpc"),
        HNV("te", "trailers"),
        HNV("grpc-timeout", "50m"),
    };
    nghttp2_data_provider prd = {.source.ptr = &b, .read_callback = open_body_read};
    struct reply *r;
    int32_t id;

    (void)state;
    memset(buf, 'x', sizeof(buf));
    buf[0] = 0, buf[1] = 0, buf[2] = 0, buf[3] = 0x04, buf[4] = 0; /* 1024 bytes announced */
    id = nghttp2_submit_request(h->client, NULL, nv, 7, &prd, NULL);
    assert_true(id > 0);
    pump(h);
    r = reply_for(h, id);
    assert_int_equal(gw_h2_live_streams(h->server), 1);
    /* the deadline answers; the client's half of the stream stays open */
    for (int guard = 0; r->grpc_status == 0; guard++) {
        assert_true(guard < 1000);
        event_base_loop(h->base, EVLOOP_ONCE);
        pump(h);
    }
    assert_int_equal(r->grpc_status, GW_GRPC_DEADLINE_EXCEEDED);
    assert_false(r->closed);
    assert_int_equal(gw_h2_live_streams(h->server), 0);
    /* the linger timer resets it */
    for (int guard = 0; !r->closed; guard++) {
        assert_true(guard < 1000);
        event_base_loop(h->base, EVLOOP_ONCE);
        pump(h);
    }
    assert_int_equal(r->close_error, NGHTTP2_NO_ERROR);
    assert_int_equal(cancels, 0);
    harness_free(h);
}

/* Messages queued behind a closed window stay where they were written: libevent never copies a
 * queued message into a bigger block and releases the old one holding it. */
static void test_queued_responses_not_copied(void **state)
{
    Grpc__Health__V1__HealthCheckRequest out = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
    char svc[600];
    struct harness *h = harness_new_window(true, 16);
    uint8_t buf[32];
    struct body b = {buf, frame_service(buf, "x"), 0};
    struct reply *r;

    (void)state;
    memset(svc, 'x', sizeof(svc) - 1);
    svc[sizeof(svc) - 1] = '\0';
    memcpy(svc + 100, MARKER, strlen(MARKER));
    out.service = svc;
    freed_marker = MARKER;
    freed_with_marker = 0;
    r = reply_for(h, start_call(h, "/t.T/Hold", "5S", &b));
    assert_non_null(hung_call);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(gw_call_send(hung_call, &out.base), 0);
        pump(h);
    }
    assert_int_equal(r->received, 16);
    assert_int_equal(freed_with_marker, 0);
    harness_free(h);
    assert_int_equal(freed_with_marker, 0);
    freed_marker = NULL;
}

/* ---- request memory and the loop (issue 10, finding 2) ---- */

/* One loop turn, without waiting: the dispatcher's zero timer runs. */
static void one_turn(struct harness *h)
{
    assert_int_equal(event_base_loop(h->base, EVLOOP_ONCE | EVLOOP_NONBLOCK), 0);
    pump(h);
}

/* Requests completed by one read start at most handlers_per_turn handlers; the rest start at the
 * following loop turns, in order, and a queued call whose stream is reset never starts, whether
 * it is the queue's last (ids[5]) or in its middle (ids[3]: its neighbours are relinked; under
 * AddressSanitizer a stale link is a use after free). */
static void test_handlers_yield_loop(void **state)
{
    struct harness *h;
    uint8_t buf[32];
    struct body b[6];
    int32_t ids[6];

    (void)state;
    harness_per_turn = 2;
    h = harness_new(true);
    harness_per_turn = 0;
    for (int i = 0; i < 6; i++) {
        b[i] = (struct body){buf, frame_service(buf, "x"), 0};
        ids[i] = submit_call(h, "/t.T/Hang", NULL, &b[i]);
    }
    pump(h); /* all six requests arrive before the loop runs */
    assert_int_equal(hang_started, 2);
    assert_int_equal(
        nghttp2_submit_rst_stream(h->client, NGHTTP2_FLAG_NONE, ids[5], NGHTTP2_CANCEL), 0);
    assert_int_equal(
        nghttp2_submit_rst_stream(h->client, NGHTTP2_FLAG_NONE, ids[3], NGHTTP2_CANCEL), 0);
    pump(h);
    assert_int_equal(hang_started, 2);
    one_turn(h);
    assert_int_equal(hang_started, 4); /* the third and the fifth */
    one_turn(h);
    one_turn(h);
    assert_int_equal(hang_started, 4); /* the fourth and the sixth were reset while they waited */
    assert_int_equal(cancels, 0);
    for (int i = 0; i < 5; i++)
        if (i != 3)
            assert_false(reply_for(h, ids[i])->closed);
    harness_free(h);
    assert_int_equal(cancels, 4);
}

/* A 60-byte request held by a running call; n of them fit the budget, the next is refused
 * RESOURCE_EXHAUSTED naming the budget, and a freed call makes room again. cert_mem: the
 * certificate's budget (0: none), which every call gives back by the time the session is
 * freed. */
static void budget_case(uint32_t conn_mem, uint32_t total_mem, uint32_t cert_mem,
                        const char *message)
{
    struct harness *h;
    struct gw_budget cert;
    char svc[56];
    uint8_t buf[3][64];
    struct body b[3];
    struct reply *r;
    int32_t id0;

    gw_budget_init(&cert, cert_mem);
    harness_conn_mem = conn_mem;
    harness_total_mem = total_mem;
    harness_cert_mem = cert_mem != 0 ? &cert : NULL;
    h = harness_new(true);
    harness_conn_mem = harness_total_mem = 0;
    harness_cert_mem = NULL;
    memset(svc, 's', sizeof(svc) - 1);
    svc[sizeof(svc) - 1] = '\0';
    for (int i = 0; i < 3; i++)
        b[i] = (struct body){buf[i], frame_service(buf[i], svc), 0};
    id0 = start_call(h, "/t.T/Hang", NULL, &b[0]);
    (void)start_call(h, "/t.T/Hang", NULL, &b[1]);
    assert_int_equal(hang_started, 2);
    r = reply_for(h, start_call(h, "/t.T/Hang", NULL, &b[2]));
    assert_true(r->closed);
    assert_int_equal(r->grpc_status, GW_GRPC_RESOURCE_EXHAUSTED);
    assert_string_equal(r->grpc_message, message);
    assert_int_equal(hang_started, 2);
    /* the first call goes: its bytes go back to both budgets */
    assert_int_equal(nghttp2_submit_rst_stream(h->client, NGHTTP2_FLAG_NONE, id0, NGHTTP2_CANCEL),
                     0);
    pump(h);
    assert_int_equal(cancels, 1);
    b[2].off = 0;
    r = reply_for(h, start_call(h, "/t.T/Hang", NULL, &b[2]));
    assert_false(r->closed);
    assert_int_equal(hang_started, 3);
    if (cert_mem != 0)
        assert_int_not_equal(cert.used, 0); /* the two running calls hold some of it */
    harness_free(h);
    assert_int_equal(cert.used, 0);
    assert_true(cert_mem == 0 || cert.peak > 0);
}

static void test_request_memory_budgets(void **state)
{
    (void)state;
    /* the connection's budget, then the gateway's, then the client certificate's */
    budget_case(150, 100000, 0,
                "request memory in flight would exceed its budget of 150 bytes: retry later");
    budget_case(100000, 140, 0,
                "request memory in flight would exceed its budget of 140 bytes: retry later");
    budget_case(100000, 100000, 145,
                "this certificate's request memory in flight would exceed its budget of 145 bytes "
                "([server] request_memory_per_certificate): retry later");
    budget_case(150, 100000, 100000, /* a certificate with room: the connection's is named */
                "request memory in flight would exceed its budget of 150 bytes: retry later");
}

/* A message that would unpack into more than 8x its size + 64 KiB is refused before unpacking;
 * the same number of complete items is not. */
static void test_unpack_bound(void **state)
{
    struct harness *h = harness_new(true);
    uint8_t buf[1024];
    struct body b;
    struct reply *r;

    (void)state;
    gw_grpc_frame_prefix(buf, 1000);
    for (size_t k = 0; k < 500; k++) {
        buf[5 + 2 * k] = 0x0a; /* SubmitBatchRequest.waybills: an empty Waybill */
        buf[5 + 2 * k + 1] = 0x00;
    }
    b = (struct body){buf, 1005, 0};
    r = reply_for(h, start_call(h, "/t.T/Unpack", NULL, &b));
    assert_true(r->closed);
    assert_int_equal(r->grpc_status, GW_GRPC_RESOURCE_EXHAUSTED);
    assert_string_equal(r->grpc_message, "request: is too large to unpack");
    /* 30 items of 31 bytes (a waybill number each) */
    gw_grpc_frame_prefix(buf, 30 * 33);
    for (size_t k = 0; k < 30; k++) {
        uint8_t *p = buf + 5 + 33 * k;
        p[0] = 0x0a;
        p[1] = 31;
        p[2] = 0x0a; /* Waybill.waybill_no */
        p[3] = 29;
        memset(p + 4, 'A', 29);
    }
    b = (struct body){buf, 5 + 30 * 33, 0};
    r = reply_for(h, start_call(h, "/t.T/Unpack", NULL, &b));
    assert_true(r->closed);
    assert_int_equal(r->grpc_status, GW_GRPC_OK);
    harness_free(h);
}

/* Issue 10 (10 000 idle connections, at most 32 KiB of the gateway each): what nghttp2 holds for
 * a session that completed the preface, SETTINGS and a PING, and for one that has served calls
 * since. The 16 KiB frame buffer and the 4 KiB stream table are pages of their own (h2mem.h); an
 * idle session wipes the frame buffer and, once quiet (gw_h2_release_idle), gives back its pages
 * and the stream table's page, which then hold only zeros (nghttp2 reads all of it when a SETTINGS
 * changes the initial window, which makes it resident on kernels that map no shared zero page for
 * reads, like the one this was measured on), and nghttp2 keeps no closed stream. Before: 25.5 KiB
 * of heap here, then 5 KiB and a resident page, and about 216 bytes more for each call up to
 * max_concurrent_streams (100).
 */
static void test_idle_session_memory(void **state)
{
    struct harness *h = harness_new(true);
    struct gw_h2mem_held m, after;
    uint8_t buf[32];
    size_t n = frame_service(buf, "hello");
    struct body b = {buf, n, 0};

    (void)state;
    assert_int_equal(nghttp2_submit_ping(h->client, NGHTTP2_FLAG_NONE, NULL), 0);
    pump(h);
    gw_h2_mem_held(h->server, &m);
    assert_true(m.resident <= 8192); /* until the connection has been quiet for a second */
    gw_h2_release_idle(h->server);   /* what conn.c does then */
    gw_h2_mem_held(h->server, &m);
    print_message("idle session: heap %zu, mapped %zu, resident %zu\n", m.heap, m.mapped,
                  m.resident);
    assert_int_equal(m.resident, 0);
    assert_true(m.heap <= GW_H2_IDLE_SESSION_MAX);
    assert_true(m.mapped >= 16384 + 4096); /* the frame buffer and the stream table */
    assert_true(reply_for(h, start_call(h, "/t.T/Echo", "10S", &b))->closed);
    gw_h2_release_idle(h->server);
    gw_h2_mem_held(h->server, &m);
    print_message("after a call: heap %zu, mapped %zu, resident %zu\n", m.heap, m.mapped,
                  m.resident);
    assert_int_equal(m.resident, 0);
    assert_true(m.heap <= GW_H2_IDLE_SESSION_MAX + 2048); /* + HPACK entries */
    for (int i = 0; i < 14; i++) {                        /* the harness keeps 16 replies */
        b.off = 0;
        assert_true(reply_for(h, start_call(h, "/t.T/Echo", "10S", &b))->closed);
    }
    gw_h2_release_idle(h->server);
    gw_h2_mem_held(h->server, &after);
    print_message("after 15 calls: heap %zu, mapped %zu, resident %zu\n", after.heap, after.mapped,
                  after.resident);
    assert_int_equal(after.resident, 0);
    assert_true(after.heap <= m.heap + 64); /* no closed stream kept (about 216 bytes each) */
    harness_free(h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_unknown_method),
        cmocka_unit_test(test_echo),
        cmocka_unit_test(test_echo_bad_utf8),
        cmocka_unit_test(test_embedded_nul_refused),
        cmocka_unit_test(test_nested_utf8_path),
        cmocka_unit_test(test_streaming),
        cmocka_unit_test(test_oversized),
        cmocka_unit_test(test_handlers_yield_loop),
        cmocka_unit_test(test_request_memory_budgets),
        cmocka_unit_test(test_unpack_bound),
        cmocka_unit_test(test_compressed_and_second_message),
        cmocka_unit_test(test_unauthenticated),
        cmocka_unit_test(test_confidential_calls_not_counted),
        cmocka_unit_test(test_confidential_calls_not_logged),
        cmocka_unit_test(test_deadline),
        cmocka_unit_test(test_client_reset),
        cmocka_unit_test(test_identity_step_waits),
        cmocka_unit_test_teardown(test_share_hooks_get_the_resolved_principal, share_hooks_off),
        cmocka_unit_test(test_identity_step_cancelled_by_reset),
        cmocka_unit_test(test_session_freed_with_live_call),
        cmocka_unit_test(test_header_list_cap),
        cmocka_unit_test(test_header_bomb_charged),
        cmocka_unit_test(test_trailer_bomb_resets_stream),
        cmocka_unit_test(test_goaway),
        cmocka_unit_test(test_provoked_resets_charged),
        cmocka_unit_test(test_policy_swapped_under_running_call),
        cmocka_unit_test(test_stream_backpressure),
        cmocka_unit_test(test_stalled_stream_reset),
        cmocka_unit_test(test_response_budget_backpressure),
        cmocka_unit_test(test_drip_stream_reset),
        cmocka_unit_test(test_response_hold_and_wake),
        cmocka_unit_test(test_response_cert_wake_across_connections),
        cmocka_unit_test(test_response_cert_budget_shared),
        cmocka_unit_test(test_response_cert_wake_then_connection),
        cmocka_unit_test(test_stall_clock_starts_when_bytes_wait),
        cmocka_unit_test(test_policy_denies_before_handler),
        cmocka_unit_test(test_writable_finishes_own_call),
        cmocka_unit_test(test_writable_finishes_other_calls),
        cmocka_unit_test(test_sent_response_wiped),
        cmocka_unit_test(test_freed_stream_kept_wiped),
        cmocka_unit_test(test_reset_response_wiped),
        cmocka_unit_test(test_identity_decides_before_body),
        cmocka_unit_test(test_writable_reasked_runs_next_turn),
        cmocka_unit_test(test_finish_in_completion_closes_no_other_stream),
        cmocka_unit_test(test_segment_waiters_answered_while_reset_queued),
        cmocka_unit_test(test_stream_left_open_after_answer_reset),
        cmocka_unit_test(test_queued_responses_not_copied),
        cmocka_unit_test(test_idle_session_memory),
    };
    /* before any libevent call: every libevent allocation is seen by the test */
    event_set_mem_functions(ev_malloc, ev_realloc, ev_free);
    gw_log_level = getenv("TEST_LOG") ? GW_LOG_DEBUG : GW_LOG_OFF;
    return cmocka_run_group_tests(tests, NULL, NULL);
}
