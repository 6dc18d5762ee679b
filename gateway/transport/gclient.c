/* gclient.c: a gRPC client (unary calls) over one TLS + HTTP/2 connection on the gateway's loop:
 * libnghttp2 in client mode fed from an OpenSSL bufferevent, as the server side (conn.c, h2.c)
 * but the other way round. Invariants:
 *  - user code (a call's callback) runs only from done_ev, never from inside nghttp2, a
 *    bufferevent callback or gw_gclient_call; done_cb touches nothing of the client after the
 *    callback (which may free the client), and the result's bytes are moved out of the call first;
 *  - a call lives until its callback ran or it was cancelled AND nghttp2 no longer knows its
 *    stream (the stream's user data is the call, never dangling); a call that ends while its
 *    request still waits in nghttp2's queue (the server's stream limit reached) leaves the
 *    request cancelled with orphan_mark as its user data and is freed at once;
 *  - finished calls still tied to streams plus such orphans stay at most MAX_STALE: past it the
 *    connection is dropped, which frees them all;
 *  - the connection is torn down only from a libevent callback, after nghttp2 has returned;
 *  - a response is buffered up to max_response bytes (the decoder's cap), never more;
 *  - the output waiting for the socket stays under GW_GCLIENT_OUT_HIGH plus one frame: at the
 *    mark send_cb refuses frames and reading stops (what a peer sends can make nghttp2 answer:
 *    PING and SETTINGS acknowledgements), until write_cb sees it drained to GW_GCLIENT_OUT_LOW;
 *  - after a failed connection attempt, calls fail UNAVAILABLE at once until the backoff has
 *    passed; after a lost established connection the next call reconnects at once. Established
 *    means proved usable: a response (HEADERS) arrived on it. A handshake and SETTINGS are not
 *    enough: a backend that sends SETTINGS and then GOAWAY or closes, on every connection, is a
 *    failed attempt each time and meets the backoff, not a fresh TLS handshake per call;
 *  - a host name is resolved on the loop (libevent's evdns: resolv.conf and the hosts file),
 *    never by the C library's blocking resolver, so a silent DNS server costs the calls their
 *    connect deadline, not the gateway its loop. evdns runs a cancelled request's callback
 *    later, from the loop: each resolution has a ticket, detached from the client when the
 *    attempt ends (close_tcp), and the resolver is reference-counted by the client and the
 *    tickets, so neither the client nor the resolver is touched after it is gone;
 *  - the server's control frames (PING, SETTINGS, WINDOW_UPDATE, PRIORITY, RST_STREAM) have the
 *    budgets of the gateway's own server side (h2_calm.h), earned back by our requests: over
 *    one the session is terminated with ENHANCE_YOUR_CALM, input is no longer read, and the
 *    connection is dropped like a failed attempt (backoff), its calls UNAVAILABLE naming the
 *    flood, so a hostile backend costs the loop a bounded number of frames per attempt. The
 *    server's TLS 1.3 KeyUpdate messages (each two key derivations, new cipher contexts and, when
 *    it asks, a record back) have the server side's budget too (conn.c): OpenSSL's message
 *    callback counts them (gw_tls_watch_key_updates) and pump() charges them, the same way.
 *    Each drop for a flood is logged once, naming the budget. */
#include "gclient.h"

#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <nghttp2/nghttp2.h>

#include "alloc.h"
#include "clock.h"
#include "config.h"
#include "grpc_resp.h"
#include "h2_calm.h"
#include "h2mem.h"
#include "tls.h"

#define BACKOFF_MIN_MS 100u
#define BACKOFF_MAX_MS 5000u
#define MAX_HEADER_LIST (64u * 1024u)
#define MSG_MAX 256u
/* Input is fed to nghttp2 in slices of at most this, the output checked between them: one slice
 * queues at most ~900 acknowledgements (9-byte SETTINGS), under nghttp2's own flood limit of
 * 1000 queued ones, and adds at most its own size or so to the output. */
#define RECV_SLICE (8u * 1024u)
/* Finished calls still held for their streams plus orphaned requests, per connection: twice the
 * forwarder's largest inflight, so only a server that never opens or closes streams reaches it. */
#define MAX_STALE 128u

enum conn_state { C_IDLE, C_CONNECTING, C_READY };

struct gw_gclient_call {
    struct gw_gclient *c;
    struct gw_gclient_call *next, *prev; /* c->calls */
    struct gw_gclient_call *done_next;   /* c->done queue */
    gw_gclient_cb cb;
    void *arg;
    char *path;
    uint8_t *req; /* 5-byte prefix + message */
    size_t req_len, req_off;
    uint32_t deadline_ms;
    struct event *deadline_ev;
    int32_t stream_id;       /* 0 until submitted */
    bool stream_open;        /* nghttp2 holds the call as a stream's user data */
    bool completed;          /* result decided */
    bool finished;           /* callback ran, or cancelled: the user is done with it */
    bool on_done;            /* queued on c->done */
    bool queued;             /* waiting for a connection */
    struct gw_grpc_resp hdr; /* :status, grpc-status, grpc-message */
    struct gw_grpc_decoder dec;
    uint8_t *resp;
    size_t resp_len;
    unsigned messages;
    enum gw_grpc_status status;
    char message[MSG_MAX];
};

struct gw_gclient {
    struct event_base *base;
    struct gw_tls *tls;
    char *ca, *cert, *key, *crl; /* the files of tls, read again by gw_gclient_reload_tls */
    char *host, *server_name, *authority;
    uint16_t port;
    uint32_t connect_timeout_ms, max_response;
    enum conn_state state;
    bool goaway;               /* the server sent GOAWAY: no new streams on this connection */
    struct resolver *dns;      /* a host name's resolver; NULL for an address */
    struct dns_ticket *ticket; /* the resolution in progress, or NULL */
    struct evdns_getaddrinfo_request *dns_req; /* its request, once evdns_getaddrinfo returned */
    evutil_socket_t fd;   /* while TCP connects, before the bufferevent owns it; else -1 */
    struct event *tcp_ev; /* TCP connect completion */
    struct bufferevent *bev;
    nghttp2_session *sess;
    struct event *connect_ev; /* connect + handshake deadline */
    struct event *kick_ev;    /* runs send() outside the caller's stack */
    struct event *done_ev;    /* delivers completed calls' callbacks */
    struct event *ping_ev;    /* a PING sent after a deadline must be answered before it */
    bool ping_outstanding;
    bool proved; /* a response arrived: the connection counts as established (no backoff) */
    struct gw_h2_calm calm;    /* the server's control frames, per connection */
    const char *flood;         /* the budget the server went over (its frame's name), or NULL */
    struct gw_tls_watch watch; /* the server's KeyUpdates, told to key_update_cb */
    uint32_t key_updates;      /* ... read by OpenSSL and not yet charged to calm */
    struct gw_gclient_call *calls, *calls_tail; /* in the order they were started */
    struct gw_gclient_call *done_head, *done_tail;
    size_t inflight;
    size_t held;              /* calls on c->calls */
    size_t orphans;           /* requests of freed calls still in nghttp2's queue */
    size_t out_peak;          /* the most bytes the output has held (tests) */
    unsigned fails;           /* failed connection attempts in a row */
    struct timeval retry_at;  /* no new attempt before (monotonic) */
    char last_error[MSG_MAX]; /* why the last attempt failed, for calls in backoff */
};

static void conn_lost(struct gw_gclient *c, const char *why, bool established);

/* evdns for one client, freed when neither the client nor a ticket holds it. */
struct resolver {
    struct evdns_base *dns;
    struct event_base *base;
    unsigned refs;
};

/* One resolution: c is NULL once the attempt it served ended (its callback then only frees). */
struct dns_ticket {
    struct gw_gclient *c;
    struct resolver *r;
};

/* The user data of a request whose call was freed before nghttp2 opened its stream. */
static char orphan_mark;

/* The call a stream belongs to, or NULL (none, or an orphaned request). */
static struct gw_gclient_call *stream_call(nghttp2_session *s, int32_t stream_id)
{
    void *u = nghttp2_session_get_stream_user_data(s, stream_id);

    return u == &orphan_mark ? NULL : u;
}

/* ---- calls ---- */

static void link_call(struct gw_gclient *c, struct gw_gclient_call *k)
{
    c->held++;
    k->next = NULL;
    k->prev = c->calls_tail;
    if (c->calls_tail != NULL)
        c->calls_tail->next = k;
    else
        c->calls = k;
    c->calls_tail = k;
}

static void unlink_call(struct gw_gclient *c, struct gw_gclient_call *k)
{
    if (k->prev != NULL)
        k->prev->next = k->next;
    else if (c->calls == k)
        c->calls = k->next;
    if (k->next != NULL)
        k->next->prev = k->prev;
    else if (c->calls_tail == k)
        c->calls_tail = k->prev;
    k->next = k->prev = NULL;
    c->held--;
}

static void call_free(struct gw_gclient_call *k)
{
    if (k == NULL)
        return;
    if (k->deadline_ev != NULL)
        event_free(k->deadline_ev);
    gw_grpc_decoder_clear(&k->dec);
    gw_free(k->path);
    gw_free_wipe(k->req, k->req_len); /* a forwarded record's view */
    gw_free_wipe(k->resp, k->resp_len);
    gw_free(k);
}

/* Frees the call once neither the user nor nghttp2 can reach it. */
static void maybe_free(struct gw_gclient *c, struct gw_gclient_call *k)
{
    if (!k->finished || k->stream_open || k->on_done)
        return;
    unlink_call(c, k);
    call_free(k);
}

static void done_remove(struct gw_gclient *c, struct gw_gclient_call *k)
{
    struct gw_gclient_call **pp = &c->done_head, *prev = NULL;

    while (*pp != NULL && *pp != k) {
        prev = *pp;
        pp = &(*pp)->done_next;
    }
    if (*pp == NULL)
        return;
    *pp = k->done_next;
    if (c->done_tail == k)
        c->done_tail = prev;
    k->done_next = NULL;
    k->on_done = false;
}

static void set_timer(struct event *ev, uint32_t ms)
{
    struct timeval tv = gw_clock_tv(ms);

    (void)evtimer_add(ev, &tv);
}

static void kick(struct gw_gclient *c)
{
    event_active(c->kick_ev, EV_TIMEOUT, 0);
}

/* Decides the call's outcome (once) and queues its callback; resets its stream when open. */
static void complete(struct gw_gclient *c, struct gw_gclient_call *k, enum gw_grpc_status st,
                     const char *msg)
{
    if (k->completed)
        return;
    k->completed = true;
    k->status = st;
    snprintf(k->message, sizeof(k->message), "%s", msg != NULL ? msg : "");
    evtimer_del(k->deadline_ev);
    if (k->stream_open && c->sess != NULL) {
        /* Not opened yet: the request waits in nghttp2's queue while the server's
         * SETTINGS_MAX_CONCURRENT_STREAMS is reached, and would wait there, the call as its user
         * data, until the connection closes (the reset only marks it cancelled, never sent).
         * The mark takes the call's place and the call is freed like one never submitted. */
        if (nghttp2_session_find_stream(c->sess, k->stream_id) == NULL &&
            nghttp2_session_set_stream_user_data(c->sess, k->stream_id, &orphan_mark) == 0) {
            k->stream_open = false;
            c->orphans++;
        }
        (void)nghttp2_submit_rst_stream(c->sess, NGHTTP2_FLAG_NONE, k->stream_id, NGHTTP2_CANCEL);
        kick(c); /* pump() sends the reset and checks MAX_STALE */
    }
    k->queued = false;
    if (k->finished) { /* cancelled: nobody to tell */
        maybe_free(c, k);
        return;
    }
    k->on_done = true;
    k->done_next = NULL;
    if (c->done_tail != NULL)
        c->done_tail->done_next = k;
    else
        c->done_head = k;
    c->done_tail = k;
    event_active(c->done_ev, EV_TIMEOUT, 0);
}

/* One callback per run; re-arms itself first, so nothing of c is touched after the callback. */
static void done_cb(evutil_socket_t fd, short what, void *arg)
{
    struct gw_gclient *c = arg;
    struct gw_gclient_call *k = c->done_head;
    struct gw_gclient_result r;
    gw_gclient_cb cb;
    void *cbarg;
    uint8_t *resp;
    char msg[MSG_MAX];
    bool detached = false;

    (void)fd;
    (void)what;
    if (k == NULL)
        return;
    c->done_head = k->done_next;
    if (c->done_head == NULL)
        c->done_tail = NULL;
    else
        event_active(c->done_ev, EV_TIMEOUT, 0);
    k->done_next = NULL;
    k->on_done = false;
    k->finished = true;
    c->inflight--;
    cb = k->cb;
    cbarg = k->arg;
    resp = k->status == GW_GRPC_OK ? k->resp : NULL;
    if (resp != NULL)
        k->resp = NULL;
    r.status = k->status;
    r.response = resp;
    r.response_len = resp != NULL ? k->resp_len : 0;
    /* copied: a call still a stream of the session (its reset not yet processed) stays the
     * client's, and the callback may free the client */
    memcpy(msg, k->message, sizeof(msg));
    r.message = msg;
    if (!k->stream_open) { /* ours alone now: freed after the callback */
        unlink_call(c, k);
        detached = true;
    } else {
        kick(c); /* held for its stream: pump() checks MAX_STALE */
    }
    cb(cbarg, &r);
    gw_free_wipe(resp, r.response_len);
    if (detached)
        call_free(k);
}

/* A deadline passed on an open stream: the backend may be slow, or the connection silently dead
 * (a peer or a middlebox gone without a reset). A PING tells them apart: unanswered within
 * connect_timeout_ms, the connection is dropped and the next call opens a new one. */
static void deadline_cb(evutil_socket_t fd, short what, void *arg)
{
    struct gw_gclient_call *k = arg;
    struct gw_gclient *c = k->c;

    (void)fd;
    (void)what;
    if (k->stream_open && c->state == C_READY && !c->ping_outstanding &&
        nghttp2_submit_ping(c->sess, NGHTTP2_FLAG_NONE, NULL) == 0) {
        c->ping_outstanding = true;
        set_timer(c->ping_ev, c->connect_timeout_ms);
        kick(c);
    }
    complete(c, k, GW_GRPC_DEADLINE_EXCEEDED, "backend: deadline exceeded");
}

static void ping_cb(evutil_socket_t fd, short what, void *arg)
{
    struct gw_gclient *c = arg;

    (void)fd;
    (void)what;
    /* established only if it ever answered: a backend silent from its handshake on is a failed
     * attempt, and meets the backoff */
    conn_lost(c, "backend: connection unresponsive (PING unanswered)", c->proved);
}

/* ---- nghttp2 callbacks (no user code, no teardown from here) ---- */

/* Refuses the frame while the output is at the mark: nghttp2 keeps it (and everything after it)
 * and sends it when pump() runs again from write_cb. A peer that never reads thus costs at most
 * the mark plus one frame chunk (~16 KB), never a copy of every acknowledgement it provoked. */
static ssize_t send_cb(nghttp2_session *s, const uint8_t *data, size_t len, int flags, void *arg)
{
    struct gw_gclient *c = arg;
    struct evbuffer *out = bufferevent_get_output(c->bev);
    size_t queued;

    (void)s;
    (void)flags;
    if (evbuffer_get_length(out) >= GW_GCLIENT_OUT_HIGH)
        return NGHTTP2_ERR_WOULDBLOCK;
    if (evbuffer_add(out, data, len) != 0)
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    queued = evbuffer_get_length(out);
    if (queued > c->out_peak)
        c->out_peak = queued;
    return (ssize_t)len;
}

static ssize_t read_body_cb(nghttp2_session *s, int32_t stream_id, uint8_t *buf, size_t len,
                            uint32_t *flags, nghttp2_data_source *src, void *arg)
{
    struct gw_gclient_call *k = stream_call(s, stream_id);
    size_t n;

    (void)src;
    (void)arg;
    if (k == NULL)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    n = k->req_len - k->req_off;
    if (n > len)
        n = len;
    memcpy(buf, k->req + k->req_off, n);
    k->req_off += n;
    if (k->req_off == k->req_len)
        *flags |= NGHTTP2_DATA_FLAG_EOF;
    return (ssize_t)n;
}

static int on_header_cb(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name,
                        size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                        void *arg)
{
    struct gw_gclient_call *k;

    (void)flags;
    (void)arg;
    if (f->hd.type != NGHTTP2_HEADERS)
        return 0;
    k = stream_call(s, f->hd.stream_id);
    if (k == NULL || k->completed)
        return 0;
    gw_grpc_resp_header(&k->hdr, name, namelen, value, valuelen);
    return 0;
}

static int on_message(void *arg, const uint8_t *msg, size_t len)
{
    struct gw_gclient_call *k = arg;

    if (++k->messages > 1)
        return GW_EPROTO;
    if (len > 0) {
        k->resp = gw_malloc(len);
        if (k->resp == NULL)
            return GW_ENOMEM;
        memcpy(k->resp, msg, len);
    }
    k->resp_len = len;
    return 0;
}

static int on_data_chunk_cb(nghttp2_session *s, uint8_t flags, int32_t stream_id,
                            const uint8_t *data, size_t len, void *arg)
{
    struct gw_gclient_call *k = stream_call(s, stream_id);
    int rc;

    (void)flags;
    if (k == NULL || k->completed)
        return 0;
    rc = gw_grpc_decoder_feed(&k->dec, data, len, on_message, k);
    if (rc == GW_ETOOBIG)
        complete(arg, k, GW_GRPC_RESOURCE_EXHAUSTED,
                 "backend: response message larger than the client's max_response");
    else if (rc == GW_ENOMEM)
        complete(arg, k, GW_GRPC_RESOURCE_EXHAUSTED, "backend: out of memory for the response");
    else if (rc == GW_EPROTO)
        complete(arg, k, GW_GRPC_INTERNAL, "backend: more than one response message");
    else if (rc != 0)
        complete(arg, k, GW_GRPC_INTERNAL, "backend: malformed response message framing");
    return 0;
}

/* Why the calls of a connection dropped for a flood failed. */
static void flood_message(const struct gw_gclient *c, char *msg, size_t len)
{
    snprintf(msg, len, "backend: %s flood: over the connection's budget, dropped", c->flood);
}

/* The outcome of a stream that ended without a decision of ours. */
static void finish_stream(struct gw_gclient *c, struct gw_gclient_call *k, uint32_t error_code)
{
    char msg[MSG_MAX];
    enum gw_grpc_status st;

    if (error_code != NGHTTP2_NO_ERROR && c->flood != NULL) { /* closed by our GOAWAY */
        flood_message(c, msg, sizeof(msg));
        st = GW_GRPC_UNAVAILABLE;
    } else if (error_code != NGHTTP2_NO_ERROR) {
        snprintf(msg, sizeof(msg), "backend: stream reset (%s)",
                 nghttp2_http2_strerror(error_code));
        st = GW_GRPC_UNAVAILABLE;
    } else {
        st = gw_grpc_resp_verdict(&k->hdr, k->messages, !gw_grpc_decoder_idle(&k->dec), msg,
                                  sizeof(msg));
    }
    complete(c, k, st, msg);
}

static int on_stream_close_cb(nghttp2_session *s, int32_t stream_id, uint32_t error_code, void *arg)
{
    struct gw_gclient *c = arg;
    struct gw_gclient_call *k;

    if (nghttp2_session_get_stream_user_data(s, stream_id) == &orphan_mark) {
        c->orphans--; /* a cancelled request dropped from the queue */
        return 0;
    }
    k = stream_call(s, stream_id);
    if (k == NULL)
        return 0;
    k->stream_open = false;
    finish_stream(c, k, error_code);
    maybe_free(c, k);
    return 0;
}

/* The server went over kind's budget: the session ends with GOAWAY ENHANCE_YOUR_CALM and the
 * connection is dropped (pump), logged once. */
static void flooded(struct gw_gclient *c, enum gw_h2_calm_kind k)
{
    c->flood = gw_h2_calm_name(k);
    GW_LOG(GW_LOG_WARN, "forward", NULL,
           "backend %s:%u: %s flood: over the connection's budget, connection dropped "
           "(ENHANCE_YOUR_CALM)",
           c->host, (unsigned)c->port, c->flood);
    (void)nghttp2_session_terminate_session(c->sess, NGHTTP2_ENHANCE_YOUR_CALM);
    /* Nothing more is read, at once: a KeyUpdate flood brings no HTTP/2 input, so process_input's
     * own stop is never reached, and every record read would be answered while the GOAWAY waits
     * for room in the output. */
    if (c->bev != NULL)
        (void)bufferevent_disable(c->bev, EV_READ);
}

/* Every frame header from the server, before nghttp2 acts on it: the control-frame budgets. */
static int on_begin_frame_cb(nghttp2_session *s, const nghttp2_frame_hd *hd, void *arg)
{
    struct gw_gclient *c = arg;
    enum gw_h2_calm_kind k = gw_h2_calm_kind_of(hd->type, (hd->flags & NGHTTP2_FLAG_ACK) != 0);

    (void)s;
    if (c->flood != NULL || gw_h2_calm_take(&c->calm, k, gw_clock_ms()))
        return 0;
    flooded(c, k);
    return 0;
}

/* A KeyUpdate read by OpenSSL (from inside the bufferevent's read): counted, and charged by
 * pump() on the loop's next pass. */
static void key_update_cb(void *arg)
{
    struct gw_gclient *c = arg;

    if (c->key_updates < UINT32_MAX)
        c->key_updates++;
    kick(c);
}

/* Charges the KeyUpdates counted so far to the connection's budget (those before the session
 * started wait for it). */
static void charge_key_updates(struct gw_gclient *c)
{
    uint64_t now = gw_clock_ms();

    if (c->sess == NULL || c->flood != NULL)
        return;
    for (; c->key_updates > 0; c->key_updates--)
        if (!gw_h2_calm_take(&c->calm, GW_H2_CALM_KEY_UPDATE, now)) {
            flooded(c, GW_H2_CALM_KEY_UPDATE);
            c->key_updates = 0;
            return;
        }
}

/* Our requests earn the server's answers to them (window updates, pings) their credit. */
static int on_frame_send_cb(nghttp2_session *s, const nghttp2_frame *f, void *arg)
{
    struct gw_gclient *c = arg;

    (void)s;
    gw_h2_calm_frame_sent(&c->calm, f->hd.type);
    if (f->hd.type == NGHTTP2_HEADERS && f->headers.cat == NGHTTP2_HCAT_REQUEST)
        gw_h2_calm_request_sent(&c->calm);
    return 0;
}

static int on_frame_recv_cb(nghttp2_session *s, const nghttp2_frame *f, void *arg)
{
    struct gw_gclient *c = arg;

    (void)s;
    if (f->hd.type == NGHTTP2_GOAWAY)
        c->goaway = true;
    if (f->hd.type == NGHTTP2_PING && (f->hd.flags & NGHTTP2_FLAG_ACK) && c->ping_outstanding) {
        c->ping_outstanding = false;
        evtimer_del(c->ping_ev);
    }
    if (f->hd.type == NGHTTP2_HEADERS && f->headers.cat == NGHTTP2_HCAT_RESPONSE &&
        stream_call(s, f->hd.stream_id) != NULL) { /* the connection serves: backoff over */
        c->proved = true;
        c->fails = 0;
    }
    return 0;
}

/* ---- the connection ---- */

static void now_mono(struct timeval *tv)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    tv->tv_sec = ts.tv_sec;
    tv->tv_usec = ts.tv_nsec / 1000;
}

static int submit(struct gw_gclient *c, struct gw_gclient_call *k)
{
    char timeout[24];
    nghttp2_data_provider dp = {.read_callback = read_body_cb};
    nghttp2_nv nv[] = {
        {(uint8_t *)":method", (uint8_t *)"POST", 7, 4, NGHTTP2_NV_FLAG_NONE},
        {(uint8_t *)":scheme", (uint8_t *)"https", 7, 5, NGHTTP2_NV_FLAG_NONE},
        {(uint8_t *)":path", (uint8_t *)k->path, 5, strlen(k->path), NGHTTP2_NV_FLAG_NONE},
        {(uint8_t *)":authority", (uint8_t *)c->authority, 10, strlen(c->authority),
         NGHTTP2_NV_FLAG_NONE},
        {(uint8_t *)"content-type", (uint8_t *)"application/grpc", 12, 16, NGHTTP2_NV_FLAG_NONE},
        {(uint8_t *)"te", (uint8_t *)"trailers", 2, 8, NGHTTP2_NV_FLAG_NONE},
        {(uint8_t *)"grpc-timeout", (uint8_t *)timeout, 12, 0, NGHTTP2_NV_FLAG_NONE},
        {(uint8_t *)"user-agent", (uint8_t *)"waygate-gclient", 10, 15, NGHTTP2_NV_FLAG_NONE},
    };
    int32_t id;

    nv[6].valuelen = (size_t)snprintf(timeout, sizeof(timeout), "%" PRIu32 "m", k->deadline_ms);
    id = nghttp2_submit_request(c->sess, NULL, nv, sizeof(nv) / sizeof(nv[0]), &dp, k);
    if (id < 0)
        return GW_ENOMEM;
    k->stream_id = id;
    k->stream_open = true;
    k->queued = false;
    return 0;
}

/* Writes what the session has to send; tears down (from here, a libevent callback) on error or
 * when the session is over. */
static void pump(struct gw_gclient *c)
{
    char msg[MSG_MAX];

    if (c->state != C_READY)
        return;
    charge_key_updates(c);
    if (c->held - c->inflight + c->orphans > MAX_STALE) {
        conn_lost(c, "backend: too many calls ended before their streams closed", c->proved);
        return;
    }
    for (struct gw_gclient_call *k = c->calls; k != NULL && !c->goaway; k = k->next)
        if (k->queued && submit(c, k) != 0)
            complete(c, k, GW_GRPC_UNAVAILABLE, "backend: cannot open a stream");
    if (nghttp2_session_send(c->sess) != 0) {
        conn_lost(c, "backend: HTTP/2 send failed", c->proved);
        return;
    }
    if (nghttp2_session_want_read(c->sess) || nghttp2_session_want_write(c->sess))
        return;
    if (c->flood != NULL) { /* our GOAWAY is in the output; not waited for */
        flood_message(c, msg, sizeof(msg));
        conn_lost(c, msg, false);
        return;
    }
    conn_lost(c, "backend: connection closed (GOAWAY)", c->proved);
}

static void kick_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    pump(arg);
}

/* Feeds the input to nghttp2 slice by slice, sending what each produces, until the output
 * reaches the mark: then reading stops (the rest stays in the input) until write_cb resumes it.
 * nghttp2's flood limit counts only the acknowledgements in its own queue, which every pump()
 * empties into the output; without the mark a peer that sends PINGs and never reads would grow
 * the output without end. Such a peer still meets the deadline's PING, which stays unanswered. */
static void process_input(struct gw_gclient *c)
{
    struct evbuffer *in, *out;
    size_t len;
    ssize_t n;

    while (c->state == C_READY) {
        in = bufferevent_get_input(c->bev);
        out = bufferevent_get_output(c->bev);
        len = evbuffer_get_length(in);
        if (len == 0)
            return;
        if (evbuffer_get_length(out) >= GW_GCLIENT_OUT_HIGH) {
            (void)bufferevent_disable(c->bev, EV_READ); /* resumed by write_cb */
            return;
        }
        if (len > RECV_SLICE)
            len = RECV_SLICE;
        n = nghttp2_session_mem_recv(c->sess, evbuffer_pullup(in, (ev_ssize_t)len), len);
        if (n < 0) {
            conn_lost(c, "backend: HTTP/2 protocol error", c->proved);
            return;
        }
        evbuffer_drain(in, (size_t)n);
        pump(c); /* may tear the connection down: the loop's condition sees it */
        if (c->state == C_READY && c->flood != NULL) { /* the rest is not read */
            (void)bufferevent_disable(c->bev, EV_READ);
            return;
        }
    }
}

static void read_cb(struct bufferevent *bev, void *arg)
{
    (void)bev;
    process_input(arg);
}

/* The output drained to GW_GCLIENT_OUT_LOW: send what send_cb refused, then read again. */
static void write_cb(struct bufferevent *bev, void *arg)
{
    struct gw_gclient *c = arg;

    if (c->state != C_READY)
        return;
    pump(c);
    if (c->state != C_READY)
        return;
    if (evbuffer_get_length(bufferevent_get_output(bev)) < GW_GCLIENT_OUT_HIGH &&
        c->flood == NULL && !(bufferevent_get_enabled(bev) & EV_READ)) {
        (void)bufferevent_enable(bev, EV_READ);
        process_input(c);
    }
}

static int start_session(struct gw_gclient *c)
{
    nghttp2_session_callbacks *cbs = NULL;
    nghttp2_option *opt = NULL;
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, MAX_HEADER_LIST},
    };
    int rc = GW_ENOMEM;

    if (nghttp2_session_callbacks_new(&cbs) != 0 || nghttp2_option_new(&opt) != 0)
        goto out;
    nghttp2_session_callbacks_set_send_callback(cbs, send_cb);
    nghttp2_session_callbacks_set_on_header_callback(cbs, on_header_cb);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data_chunk_cb);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close_cb);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv_cb);
    nghttp2_session_callbacks_set_on_begin_frame_callback(cbs, on_begin_frame_cb);
    nghttp2_session_callbacks_set_on_frame_send_callback(cbs, on_frame_send_cb);
    nghttp2_option_set_peer_max_concurrent_streams(opt, 100);
    nghttp2_option_set_max_send_header_block_length(opt, 16384);
    if (nghttp2_session_client_new3(&c->sess, cbs, c, opt, gw_h2mem()) != 0)
        goto out;
    gw_h2_calm_init(&c->calm, gw_clock_ms());
    c->flood = NULL;
    if (nghttp2_submit_settings(c->sess, NGHTTP2_FLAG_NONE, iv, sizeof(iv) / sizeof(iv[0])) != 0)
        goto out;
    rc = 0;
out:
    nghttp2_session_callbacks_del(cbs);
    nghttp2_option_del(opt);
    return rc;
}

/* The socket's pending error (a refused or failed connect), or 0. */
static int socket_error(struct bufferevent *bev)
{
    int e = 0;
    socklen_t len = sizeof(e);
    evutil_socket_t fd = bufferevent_getfd(bev);

    if (fd < 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &len) != 0)
        return 0;
    return e;
}

static void event_cb(struct bufferevent *bev, short events, void *arg)
{
    struct gw_gclient *c = arg;
    struct ssl_st *ssl = bufferevent_openssl_get_ssl(bev);
    char reason[200], msg[MSG_MAX];

    if (events & BEV_EVENT_CONNECTED) {
        evtimer_del(c->connect_ev);
        if (!gw_tls_alpn_is_h2(ssl)) {
            conn_lost(c, "backend: ALPN h2 not negotiated", false);
            return;
        }
        if (start_session(c) != 0) {
            conn_lost(c, "backend: cannot start the HTTP/2 session", false);
            return;
        }
        c->state = C_READY;
        pump(c);
        return;
    }
    if (events & (BEV_EVENT_ERROR | BEV_EVENT_EOF)) {
        unsigned long e = bufferevent_get_openssl_error(bev);
        const char *why = c->state == C_CONNECTING ? gw_tls_verify_error(ssl) : NULL;
        int soerr = socket_error(bev);
        if (why != NULL) {
            snprintf(msg, sizeof(msg), "backend: server certificate refused: %s", why);
        } else if (e != 0) {
            gw_tls_error_string(e, reason, sizeof(reason));
            snprintf(msg, sizeof(msg), "backend: TLS error: %s", reason);
        } else if (events & BEV_EVENT_EOF) {
            snprintf(msg, sizeof(msg), "backend: connection closed by the server");
        } else {
            snprintf(msg, sizeof(msg), "backend: connection failed: %s",
                     soerr != 0 ? strerror(soerr) : "socket error");
        }
        conn_lost(c, msg, c->proved);
    }
}

static void connect_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    conn_lost(arg, "backend: connect timeout (TCP + TLS)", false);
}

/* TCP is up (or failed): the TLS handshake starts on the connected socket. */
static void tcp_cb(evutil_socket_t fd, short what, void *arg)
{
    struct gw_gclient *c = arg;
    struct ssl_st *ssl = NULL;
    char msg[MSG_MAX];
    int e = 0;
    socklen_t elen = sizeof(e);

    (void)what;
    event_free(c->tcp_ev);
    c->tcp_ev = NULL;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &elen) != 0)
        e = errno;
    if (e != 0) {
        snprintf(msg, sizeof(msg), "backend: connect failed: %s", strerror(e));
        conn_lost(c, msg, false);
        return;
    }
    ssl = gw_tls_client_ssl_new(c->tls, c->server_name);
    if (ssl == NULL) {
        conn_lost(c, "backend: cannot create a TLS session", false);
        return;
    }
    c->key_updates = 0;
    c->watch = (struct gw_tls_watch){.key_update = key_update_cb,
                                     .arg = c}; /* c outlives the SSL (conn_lost) */
    gw_tls_watch_key_updates(ssl, &c->watch);
    c->bev = bufferevent_openssl_socket_new(c->base, fd, ssl, BUFFEREVENT_SSL_CONNECTING,
                                            BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
    if (c->bev == NULL) {
        gw_tls_ssl_free(ssl);
        conn_lost(c, "backend: out of memory", false);
        return;
    }
    c->fd = -1; /* the bufferevent's now */
    bufferevent_openssl_set_allow_dirty_shutdown(c->bev, 1);
    bufferevent_setcb(c->bev, read_cb, write_cb, event_cb, c);
    bufferevent_setwatermark(c->bev, EV_WRITE, GW_GCLIENT_OUT_LOW, 0);
    (void)bufferevent_enable(c->bev, EV_READ | EV_WRITE);
}

/* The endpoint's addresses are known (or not): TCP connects to the first (non-blocking); tcp_cb
 * continues. */
static void resolved(struct gw_gclient *c, int rc, struct evutil_addrinfo *ai)
{
    char msg[MSG_MAX];

    if (rc != 0 || ai == NULL) {
        snprintf(msg, sizeof(msg), "backend: cannot resolve the endpoint's host: %s",
                 evutil_gai_strerror(rc));
        if (ai != NULL)
            evutil_freeaddrinfo(ai);
        conn_lost(c, msg, false);
        return;
    }
    c->fd = socket(ai->ai_family, SOCK_STREAM, 0);
    if (c->fd >= 0) {
        /* A Deliver request is HEADERS and DATA frames written as nghttp2 makes them: without
         * NODELAY, Nagle holds the tail of each until the backend's delayed ACK (~40 ms), and
         * every call pays for it (the forwarder's calls took ~90 ms on a local backend). */
        int one = 1;
        (void)setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }
    if (c->fd < 0 || evutil_make_socket_nonblocking(c->fd) != 0 ||
        evutil_make_socket_closeonexec(c->fd) != 0 ||
        (connect(c->fd, ai->ai_addr, ai->ai_addrlen) != 0 && errno != EINPROGRESS) ||
        (c->tcp_ev = event_new(c->base, c->fd, EV_WRITE, tcp_cb, c)) == NULL ||
        event_add(c->tcp_ev, NULL) != 0) {
        snprintf(msg, sizeof(msg), "backend: connect failed: %s", strerror(errno));
        evutil_freeaddrinfo(ai);
        conn_lost(c, msg, false);
        return;
    }
    evutil_freeaddrinfo(ai);
}

static void resolver_free_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    evdns_base_free(arg, 0);
}

/* Drops a reference; the last frees the resolver: at once outside evdns (the client's free), or
 * from the loop's next turn when called from inside an evdns callback (in_evdns), which must not
 * free its own base. */
static void resolver_unref(struct resolver *r, bool in_evdns)
{
    static const struct timeval now = {0, 0};

    if (r == NULL || --r->refs > 0)
        return;
    if (!in_evdns)
        evdns_base_free(r->dns, 0);
    else if (event_base_once(r->base, -1, EV_TIMEOUT, resolver_free_cb, r->dns, &now) != 0)
        GW_LOG(GW_LOG_ERROR, "forward", NULL, "cannot schedule the resolver's release (kept)");
    gw_free(r);
}

static void dns_cb(int rc, struct evutil_addrinfo *ai, void *arg)
{
    struct dns_ticket *t = arg;
    struct gw_gclient *c = t->c;

    resolver_unref(t->r, true);
    gw_free(t);
    if (c != NULL) {
        c->ticket = NULL;
        c->dns_req = NULL;
    }
    if (c == NULL || rc == EVUTIL_EAI_CANCEL) { /* the attempt it served is over */
        if (ai != NULL)
            evutil_freeaddrinfo(ai);
        return;
    }
    resolved(c, rc, ai);
}

/* A connection attempt: the endpoint's host looked up (an address at once), then resolved(). */
static void start_connect(struct gw_gclient *c)
{
    struct evutil_addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct evutil_addrinfo *ai = NULL;
    struct evdns_getaddrinfo_request *req;
    struct dns_ticket *t;
    char port[8];
    int rc;

    c->goaway = false;
    c->proved = false;
    c->state = C_CONNECTING;
    set_timer(c->connect_ev, c->connect_timeout_ms);
    snprintf(port, sizeof(port), "%u", (unsigned)c->port);
    if (c->dns == NULL) { /* an address: nothing to look up */
        hints.ai_flags = EVUTIL_AI_NUMERICHOST;
        rc = evutil_getaddrinfo(c->host, port, &hints, &ai);
        resolved(c, rc, ai);
        return;
    }
    if ((t = gw_calloc(1, sizeof(*t))) == NULL) {
        conn_lost(c, "backend: out of memory resolving the endpoint's host", false);
        return;
    }
    t->c = c;
    t->r = c->dns;
    c->dns->refs++;
    c->ticket = t;
    /* The callback may run before evdns_getaddrinfo returns (a hosts-file name, an error): then
     * the ticket is gone and there is no request to keep. */
    req = evdns_getaddrinfo(c->dns->dns, c->host, port, &hints, dns_cb, t);
    if (c->ticket == t)
        c->dns_req = req;
}

static void close_tcp(struct gw_gclient *c)
{
    if (c->ticket != NULL) { /* its callback comes later (EVUTIL_EAI_CANCEL) and only frees */
        struct evdns_getaddrinfo_request *req = c->dns_req;

        c->ticket->c = NULL;
        c->ticket = NULL;
        c->dns_req = NULL;
        if (req != NULL)
            evdns_getaddrinfo_cancel(req);
    }
    if (c->tcp_ev != NULL) {
        event_free(c->tcp_ev);
        c->tcp_ev = NULL;
    }
    if (c->fd >= 0) {
        evutil_closesocket(c->fd);
        c->fd = -1;
    }
}

/* The connection is gone (or never came): streams fail UNAVAILABLE; calls still waiting for a
 * connection reconnect at once after an established connection, else fail with the reason. */
static void conn_lost(struct gw_gclient *c, const char *why, bool established)
{
    struct gw_gclient_call *k, *next;
    struct timeval now, d;
    bool waiting = false;
    uint32_t ms;

    evtimer_del(c->connect_ev);
    evtimer_del(c->ping_ev);
    c->ping_outstanding = false;
    close_tcp(c);
    if (c->sess != NULL) {
        nghttp2_session_del(c->sess);
        c->sess = NULL;
    }
    if (c->bev != NULL) {
        bufferevent_free(c->bev);
        c->bev = NULL;
    }
    c->state = C_IDLE;
    c->goaway = false;
    c->proved = false;
    c->orphans = 0; /* they went with the session */
    if (!established) {
        c->fails++;
        ms = BACKOFF_MIN_MS << (c->fails < 7 ? c->fails - 1 : 6);
        if (ms > BACKOFF_MAX_MS)
            ms = BACKOFF_MAX_MS;
        now_mono(&now);
        d.tv_sec = ms / 1000;
        d.tv_usec = (ms % 1000) * 1000;
        timeradd(&now, &d, &c->retry_at);
        snprintf(c->last_error, sizeof(c->last_error), "%s", why);
    }
    for (k = c->calls; k != NULL; k = next) {
        next = k->next;
        if (k->stream_open) {
            k->stream_open = false;
            complete(c, k, GW_GRPC_UNAVAILABLE, why);
            maybe_free(c, k);
        } else if (k->queued && !k->completed) {
            if (established)
                waiting = true;
            else
                complete(c, k, GW_GRPC_UNAVAILABLE, why);
        }
    }
    if (waiting)
        start_connect(c);
}

/* ---- API ---- */

/* Whether host is an IPv4 or IPv6 address (not a name to resolve). */
static bool is_address(const char *host)
{
    unsigned char buf[sizeof(struct in6_addr)];

    return evutil_inet_pton(AF_INET, host, buf) == 1 || evutil_inet_pton(AF_INET6, host, buf) == 1;
}

struct gw_gclient *gw_gclient_new(const struct gw_gclient_params *p, char *err, size_t errlen)
{
    struct gw_gclient *c = NULL;
    char host[256];
    uint16_t port = 0;
    size_t alen;

    if (p->base == NULL || p->endpoint == NULL || p->ca == NULL || p->cert == NULL ||
        p->key == NULL) {
        snprintf(err, errlen, "gclient: endpoint, ca, cert and key are required");
        return NULL;
    }
    if (gw_config_split_hostport(p->endpoint, host, sizeof(host), &port) != 0) {
        snprintf(err, errlen, "gclient: endpoint: must be host:port");
        return NULL;
    }
    c = gw_calloc(1, sizeof(*c));
    if (c == NULL)
        goto nomem;
    c->base = p->base;
    c->fd = -1;
    c->port = port;
    c->connect_timeout_ms = p->connect_timeout_ms > 0 ? p->connect_timeout_ms : 5000;
    c->max_response = p->max_response > 0 ? p->max_response : 4u * 1024u * 1024u;
    c->host = gw_strdup(host);
    c->server_name = gw_strdup(p->server_name != NULL ? p->server_name : host);
    alen = strlen(c->server_name != NULL ? c->server_name : "") + 8;
    c->authority = gw_malloc(alen);
    if (c->host == NULL || c->server_name == NULL || c->authority == NULL)
        goto nomem;
    snprintf(c->authority, alen, "%s:%u", c->server_name, (unsigned)port);
    c->connect_ev = evtimer_new(c->base, connect_timeout_cb, c);
    c->kick_ev = event_new(c->base, -1, 0, kick_cb, c);
    c->done_ev = event_new(c->base, -1, 0, done_cb, c);
    c->ping_ev = evtimer_new(c->base, ping_cb, c);
    if (c->connect_ev == NULL || c->kick_ev == NULL || c->done_ev == NULL || c->ping_ev == NULL)
        goto nomem;
    if (!is_address(host)) {
        if ((c->dns = gw_calloc(1, sizeof(*c->dns))) == NULL)
            goto nomem;
        c->dns->base = c->base;
        c->dns->refs = 1;
        c->dns->dns = evdns_base_new(
            c->base, EVDNS_BASE_DISABLE_WHEN_INACTIVE |
                         (p->nameserver != NULL ? 0 : EVDNS_BASE_INITIALIZE_NAMESERVERS));
        if (c->dns->dns == NULL ||
            (p->nameserver != NULL &&
             evdns_base_nameserver_ip_add(c->dns->dns, p->nameserver) != 0)) {
            if (c->dns->dns != NULL)
                evdns_base_free(c->dns->dns, 0);
            gw_free(c->dns);
            c->dns = NULL;
            snprintf(err, errlen, "gclient: cannot set up the resolver for the endpoint's host");
            goto fail;
        }
    }
    c->ca = gw_strdup(p->ca);
    c->cert = gw_strdup(p->cert);
    c->key = gw_strdup(p->key);
    c->crl = p->crl != NULL ? gw_strdup(p->crl) : NULL;
    if (c->ca == NULL || c->cert == NULL || c->key == NULL || (p->crl != NULL && c->crl == NULL))
        goto nomem;
    c->tls = gw_tls_client_new(p->ca, p->cert, p->key, p->crl, err, errlen);
    if (c->tls == NULL)
        goto fail;
    return c;
nomem:
    snprintf(err, errlen, "gclient: out of memory");
fail:
    gw_gclient_free(c);
    return NULL;
}

void gw_gclient_tls_expiry(const struct gw_gclient *c, struct gw_tls_expiry *out)
{
    gw_tls_expiry(c->tls, out);
}

int gw_gclient_reload_tls(struct gw_gclient *c, char *err, size_t errlen)
{
    struct gw_tls *fresh = gw_tls_client_new(c->ca, c->cert, c->key, c->crl, err, errlen);
    struct ssl_st *ssl;

    if (fresh == NULL)
        return GW_EINVAL;
    gw_tls_swap(c->tls, fresh); /* a live connection keeps the context it was made with */
    ssl = c->bev != NULL ? bufferevent_openssl_get_ssl(c->bev) : NULL;
    if (ssl != NULL && gw_tls_peer_revoked(c->tls, ssl))
        conn_lost(c, "backend: its certificate is revoked by the CRL just read", true);
    return 0;
}

void gw_gclient_free(struct gw_gclient *c)
{
    struct gw_gclient_call *k, *next;

    if (c == NULL)
        return;
    close_tcp(c);                  /* detaches a resolution in progress */
    resolver_unref(c->dns, false); /* freed here unless a ticket still holds it */
    if (c->sess != NULL)
        nghttp2_session_del(c->sess); /* runs no callback */
    if (c->bev != NULL)
        bufferevent_free(c->bev);
    for (k = c->calls; k != NULL; k = next) {
        next = k->next;
        call_free(k);
    }
    if (c->connect_ev != NULL)
        event_free(c->connect_ev);
    if (c->kick_ev != NULL)
        event_free(c->kick_ev);
    if (c->done_ev != NULL)
        event_free(c->done_ev);
    if (c->ping_ev != NULL)
        event_free(c->ping_ev);
    gw_tls_free(c->tls);
    gw_free(c->ca);
    gw_free(c->cert);
    gw_free(c->key);
    gw_free(c->crl);
    gw_free(c->host);
    gw_free(c->server_name);
    gw_free(c->authority);
    gw_free(c);
}

int gw_gclient_call(struct gw_gclient *c, const char *path, const uint8_t *req, size_t len,
                    uint32_t deadline_ms, gw_gclient_cb cb, void *arg, struct gw_gclient_call **out)
{
    struct gw_gclient_call *k = NULL;
    struct timeval now;

    if (out != NULL)
        *out = NULL;
    if (c == NULL || path == NULL || path[0] != '/' || cb == NULL || deadline_ms == 0 ||
        len > UINT32_MAX - GW_GRPC_PREFIX_LEN || (req == NULL && len > 0))
        return GW_EINVAL;
    k = gw_calloc(1, sizeof(*k));
    if (k == NULL)
        return GW_ENOMEM;
    k->c = c;
    k->cb = cb;
    k->arg = arg;
    k->deadline_ms = deadline_ms;
    k->path = gw_strdup(path);
    k->req_len = GW_GRPC_PREFIX_LEN + len;
    k->req = gw_malloc(k->req_len);
    k->deadline_ev = evtimer_new(c->base, deadline_cb, k);
    if (k->path == NULL || k->req == NULL || k->deadline_ev == NULL) {
        call_free(k);
        return GW_ENOMEM;
    }
    gw_grpc_frame_prefix(k->req, (uint32_t)len);
    if (len > 0)
        memcpy(k->req + GW_GRPC_PREFIX_LEN, req, len);
    gw_grpc_decoder_init(&k->dec, c->max_response);
    gw_grpc_resp_init(&k->hdr);
    link_call(c, k);
    c->inflight++;
    set_timer(k->deadline_ev, deadline_ms);
    k->queued = true;
    if (out != NULL)
        *out = k;
    switch (c->state) {
    case C_READY:
        kick(c); /* submitted by pump, outside the caller's stack */
        break;
    case C_CONNECTING:
        break;
    case C_IDLE:
        now_mono(&now);
        if (c->fails > 0 && timercmp(&now, &c->retry_at, <)) {
            char msg[MSG_MAX + 40];
            snprintf(msg, sizeof(msg), "%s (reconnecting after a backoff)", c->last_error);
            complete(c, k, GW_GRPC_UNAVAILABLE, msg); /* callback from done_ev, later */
        } else {
            start_connect(c);
        }
        break;
    }
    return 0;
}

void gw_gclient_cancel(struct gw_gclient_call *k)
{
    struct gw_gclient *c;

    if (k == NULL || k->finished)
        return;
    c = k->c;
    k->finished = true;
    c->inflight--;
    if (k->on_done)
        done_remove(c, k);
    if (!k->completed) {
        complete(c, k, GW_GRPC_CANCELLED, "cancelled"); /* resets the stream when open */
        return;                                         /* complete() freed it if it could */
    }
    if (k->stream_open)
        kick(c); /* held for its stream: pump() checks MAX_STALE */
    maybe_free(c, k);
}

size_t gw_gclient_inflight(const struct gw_gclient *c)
{
    return c != NULL ? c->inflight : 0;
}

size_t gw_gclient_held(const struct gw_gclient *c)
{
    return c != NULL ? c->held : 0;
}

uint32_t gw_gclient_retry_in_ms(const struct gw_gclient *c)
{
    struct timeval now, d;

    if (c == NULL || c->state != C_IDLE || c->fails == 0)
        return 0;
    now_mono(&now);
    if (!timercmp(&now, &c->retry_at, <))
        return 0;
    timersub(&c->retry_at, &now, &d);
    return (uint32_t)d.tv_sec * 1000u + ((uint32_t)d.tv_usec + 999u) / 1000u;
}

size_t gw_gclient_out_peak(const struct gw_gclient *c)
{
    return c != NULL ? c->out_peak : 0;
}
