/* h2.c: the nghttp2 server session: callbacks, the stream list, request-header checks, routing
 * to the layer above (struct gw_h2_upcalls), response framing, flow-controlled output and
 * trailers. Invariants: every stream nghttp2 opens has one struct stream in the list until
 * nghttp2 closes it (or the session is freed), and its upper object gets exactly one close
 * upcall; output leaves only through gw_h2_flush, never re-entrantly, and only from the session's
 * own entry points (input, its events, the owner's calls), never from a call the layer above
 * makes (finish, commit): those schedule a flush (flush_ev), so a completion callback that
 * answers its call never closes another stream or frees another call under the feet of the code
 * that is dispatching a list of completions; a stream the client leaves open after our answer
 * went out is reset after STREAM_LINGER_MS and its queues are freed once the answer is sent; a
 * stream's queued output is
 * bounded (GW_H2_STREAM_HIGH plus one message), never copied by libevent, and wiped as it leaves
 * the queue (sent or discarded); every queued byte is charged to the connection's, the client
 * certificate's and the gateway's response budgets (struct gw_h2_pool) until it leaves, and a
 * streaming handler is writable only while all have room; a stream waiting for room waits in
 * the queue of the first full one, and each give that leaves room in a budget with waiters has
 * them woken (GW_H2_WAKE_MAX per event), whichever connection gave; a stream whose client does
 * not take at least half of what was queued at the start of each stream_write_timeout_ms is
 * reset (a drip of window does not keep it); header lists (and the client's trailers) are
 * capped at cfg->max_header_list_size, and a block over the cap is read no further than the
 * field that passes it (on_header_cb: an HPACK bomb costs its connection a reset from its
 * RST_STREAM budget, not the loop's time); a client over a control-frame budget (h2_calm.h) gets
 * GOAWAY ENHANCE_YOUR_CALM and nothing more, and every RST_STREAM we send that the client's
 * stream provoked (gw_h2_calm_provoked: not one of our own NO_ERROR, CANCEL or INTERNAL_ERROR
 * resets) is charged to its RST_STREAM budget as it leaves; per-stream log lines are
 * rate-limited per connection and, with params.lines, gateway-wide. */
#include "h2.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <nghttp2/nghttp2.h>

#include "alloc.h"
#include "budget.h"
#include "clock.h"
#include "config.h"
#include "h2_calm.h"
#include "h2mem.h"
#include "log.h"
#include "text.h"

/* A client has this long after our answer (END_STREAM sent) to close its half of the stream
 * before we reset it (RST_STREAM NO_ERROR, RFC 9113 8.1): grpc clients close at once; one that
 * keeps streams open would otherwise hold their slots until it disconnects. */
#define STREAM_LINGER_MS 2000u

/* Streams waiting for room in a response budget, in the order they started to wait. */
struct waitq {
    struct gw_h2_stream *head, *tail;
};

/* A response budget shared by sessions: the gateway's, or one client certificate's. */
struct gw_h2_pool {
    struct gw_budget mem;  /* response bytes queued on the sessions sharing it */
    struct event *wake_ev; /* wakes waiting streams from the loop */
    struct waitq q;        /* streams whose earlier budgets had room but this one had none */
};

struct gw_h2_stream {
    int32_t id;
    struct gw_h2 *h2;
    struct gw_grpc_headers hdrs;
    void *obj;                  /* the upper object, NULL until opened (or when open refused) */
    bool answered;              /* a status was decided: trailers queued or to follow the data */
    bool response_started;      /* response headers submitted with the data provider */
    bool want_writable;         /* the upper layer saw gw_h2_stream_writable() false */
    bool notify;                /* a writable upcall is due */
    bool due;                   /* its upcall runs in the notify_cb now running */
    struct evbuffer *out;       /* framed response messages not yet taken by nghttp2 */
    struct evbuffer *stage;     /* empty but for the space handed out by gw_h2_stream_reserve */
    struct evbuffer_iovec resv; /* that space, not committed */
    enum gw_grpc_status status;
    char message[512]; /* percent-encoded grpc-message for the trailers */
    size_t charged;    /* queued bytes charged to the response budgets, given back as they go */
    size_t held;      /* bytes the layer above holds for the stream (gw_h2_stream_hold), likewise */
    struct waitq *wq; /* the wait queue the stream is in, NULL when in none */
    struct gw_h2_stream *wprev, *wnext;
    /* The stall rule: a period starts when bytes start to wait, and again each time the client
     * has taken `need` bytes (half of what was queued when the period started) or the queue
     * emptied; a period that lasts stream_write_timeout_ms resets the stream. */
    uint64_t progress_ms; /* the current period's start */
    size_t need, taken;   /* bytes due in the current period, and taken so far */
    struct event *stall_ev;
    struct event *linger_ev; /* our answer is out, the client's half still open */
    uint64_t trailer_bytes;  /* the client's trailers so far, sized as the header cap counts */
    struct gw_h2_stream *prev, *next;
};

struct gw_h2 {
    nghttp2_session *session;
    const struct gw_config *cfg;
    struct event_base *base;
    const struct gw_peer *peer; /* the owner's: outlives the session */
    struct gw_log_ctx log;
    struct gw_h2_io io;
    struct gw_h2_upcalls up;
    /* Both made when the first stream opens (only a stream's upper object asks for them): an
     * idle connection that never made a call holds neither (issue 10). */
    struct event *notify_ev; /* runs due writable upcalls from the loop */
    struct event *flush_ev;  /* a flush asked for by the layer above, run from the loop */
    struct gw_h2_stream *streams;
    size_t nstreams;
    size_t nlive;    /* streams whose upper object has not been answered */
    bool busy;       /* inside nghttp2_session_mem_recv / mem_send */
    bool want_flush; /* a flush was asked for while busy */
    bool failed;
    bool preface;
    bool calmed; /* over a control-frame budget: GOAWAY ENHANCE_YOUR_CALM queued */
    bool paused; /* on_header_cb paused nghttp2_session_mem_recv (a header list over the cap) */
    struct gw_h2_calm calm;
    struct gw_lines *lines; /* the gateway's budget of per-stream lines, or NULL */
    struct gw_budget mem;   /* request memory in flight on this connection (the calls take it) */
    struct gw_budget *cert_mem;   /* the certificate's, shared (gw_h2_params); NULL: none */
    struct gw_budget resp;        /* response bytes queued on this connection's streams */
    struct gw_h2_pool *cert_pool; /* the certificate's, shared (gw_h2_params); NULL: none */
    struct gw_h2_pool *pool;      /* the gateway's */
    bool own_pool;                /* made by gw_h2_new (params.pool NULL), freed with the session */
    struct waitq q;               /* streams waiting for room in resp */
    bool wake_due;                /* resp has room again: notify_cb wakes waiters from q */
    struct gw_h2mem alloc;        /* nghttp2's allocator for this session; outlives it */
};

/* May a per-stream line (a refusal, a reset) be logged now: within the connection's budget and
 * the gateway's? Says first how many of the connection's were left out. */
static bool stream_log_ok(struct gw_h2 *h2)
{
    uint64_t dropped = 0;

    if (!gw_h2_calm_log_ok(&h2->calm, h2->lines, gw_clock_ms(), &dropped))
        return false;
    if (dropped > 0)
        GW_LOG(GW_LOG_INFO, "h2", &h2->log, "%llu per-stream log lines suppressed (rate limit)",
               (unsigned long long)dropped);
    return true;
}

bool gw_h2_stream_log_ok(struct gw_h2_stream *st)
{
    return stream_log_ok(st->h2);
}

static void mark_answered(struct gw_h2_stream *st)
{
    if (st->answered)
        return;
    st->answered = true;
    gw_h2_stream_hold(st, 0); /* what the layer above held for it is not needed any more */
    if (st->obj != NULL)
        st->h2->nlive--;
}

/* Drains n bytes from the front of b after wiping them: response messages may hold PII, and
 * libevent releases a drained chain's memory without clearing it. */
static void wipe_drain(struct evbuffer *b, size_t n)
{
    while (n > 0) {
        struct evbuffer_iovec v[8];
        int k = evbuffer_peek(b, (ev_ssize_t)n, NULL, v, 8);
        size_t done = 0;

        for (int i = 0; i < k && i < 8 && done < n; i++) {
            size_t take = v[i].iov_len < n - done ? v[i].iov_len : n - done;
            gw_wipe(v[i].iov_base, take);
            done += take;
        }
        if (done == 0)
            break;
        evbuffer_drain(b, done);
        n -= done;
    }
}

/* ---- the response budgets ---- */

static void wq_unlink(struct gw_h2_stream *st)
{
    struct waitq *q = st->wq;

    if (q == NULL)
        return;
    if (st->wprev != NULL)
        st->wprev->wnext = st->wnext;
    else
        q->head = st->wnext;
    if (st->wnext != NULL)
        st->wnext->wprev = st->wprev;
    else
        q->tail = st->wprev;
    st->wq = NULL;
    st->wprev = st->wnext = NULL;
}

/* Appends st to q (leaving the queue it was in, if any). */
static void wq_push(struct waitq *q, struct gw_h2_stream *st)
{
    if (st->wq == q)
        return;
    wq_unlink(st);
    st->wq = q;
    st->wprev = q->tail;
    if (q->tail != NULL)
        q->tail->wnext = st;
    else
        q->head = st;
    q->tail = st;
}

static void notify_soon(struct gw_h2 *h2);

static void pool_wake_soon(struct gw_h2_pool *pool)
{
    static const struct timeval zero = {0, 0};

    if (!evtimer_pending(pool->wake_ev, NULL))
        (void)evtimer_add(pool->wake_ev, &zero);
}

/* Has the pool's waiters woken from the loop if it has room for them. */
static void pool_wake_if_room(struct gw_h2_pool *pool)
{
    if (pool != NULL && pool->q.head != NULL && gw_budget_room(&pool->mem))
        pool_wake_soon(pool);
}

/* Charges n response bytes to the session's three budgets at once: the connection's, the client
 * certificate's (none without one) and the gateway's. */
static void charge_levels(struct gw_h2 *h2, size_t n)
{
    struct gw_budget *const levels[] = {
        &h2->resp, h2->cert_pool != NULL ? &h2->cert_pool->mem : NULL, &h2->pool->mem};

    gw_budget_charge_levels(levels, 3, n);
}

/* The queue a stream must wait in for response memory: none (NULL) when it holds bytes
 * (gw_h2_stream_hold) or all its budgets have room; else that of the first full one, in their
 * order: the connection's, the certificate's, the gateway's. A stream woken from one queue asks
 * again, so it moves on to the next full budget's queue, whose next give wakes it. */
static struct waitq *wait_queue(const struct gw_h2_stream *st)
{
    struct gw_h2 *h2 = st->h2;

    if (st->held != 0)
        return NULL;
    if (!gw_budget_room(&h2->resp))
        return &h2->q;
    if (h2->cert_pool != NULL && !gw_budget_room(&h2->cert_pool->mem))
        return &h2->cert_pool->q;
    if (!gw_budget_room(&h2->pool->mem))
        return &h2->pool->q;
    return NULL;
}

/* Whether the stream must wait for response memory. */
static bool budget_full(const struct gw_h2_stream *st)
{
    return wait_queue(st) != NULL;
}

/* The stream wants writing and its own queue is under GW_H2_STREAM_LOW: its upcall is due now
 * if all budgets have room; otherwise it waits in the queue of the first that has none. */
static void ready_or_wait(struct gw_h2_stream *st)
{
    struct waitq *q = wait_queue(st);

    if (q != NULL) {
        wq_push(q, st);
    } else {
        wq_unlink(st);
        if (!st->notify) {
            st->notify = true;
            notify_soon(st->h2);
        }
    }
}

/* Gives n bytes back to the session's response budgets, and has the waiters of each budget that
 * has room again woken from the loop (never here: this may run inside nghttp2). The
 * certificate's and the gateway's waiters may be on other connections: their pools wake them,
 * whichever connection gave. */
static void give_back(struct gw_h2 *h2, size_t n)
{
    struct gw_budget *const levels[] = {
        &h2->resp, h2->cert_pool != NULL ? &h2->cert_pool->mem : NULL, &h2->pool->mem};

    if (n == 0)
        return;
    gw_budget_give_levels(levels, 3, n);
    if (h2->q.head != NULL && gw_budget_room(&h2->resp) && !h2->wake_due && h2->notify_ev != NULL) {
        h2->wake_due = true;
        notify_soon(h2);
    }
    pool_wake_if_room(h2->cert_pool);
    pool_wake_if_room(h2->pool);
}

/* Gives back n of the bytes the stream has charged for its queue (they left it). */
static void uncharge(struct gw_h2_stream *st, size_t n)
{
    if (n > st->charged)
        n = st->charged;
    st->charged -= n;
    give_back(st->h2, n);
}

void gw_h2_stream_hold(struct gw_h2_stream *st, size_t n)
{
    if (st->answered)
        n = 0;
    if (n > st->held)
        charge_levels(st->h2, n - st->held);
    else
        give_back(st->h2, st->held - n);
    st->held = n;
}

/* The connection's budget has room again: up to GW_H2_WAKE_MAX of its waiters, oldest first, get
 * their upcall in this notify_cb run (or wait on for the certificate's or the gateway's budget);
 * the rest next turn. */
static void session_wake(struct gw_h2 *h2)
{
    h2->wake_due = false;
    for (unsigned i = 0; i < GW_H2_WAKE_MAX && h2->q.head != NULL && gw_budget_room(&h2->resp);
         i++) {
        struct gw_h2_stream *st = h2->q.head;
        struct waitq *q;
        wq_unlink(st);
        q = wait_queue(st); /* not h2->q: it has room */
        if (q != NULL)
            wq_push(q, st);
        else
            st->notify = true;
    }
    if (h2->q.head != NULL && gw_budget_room(&h2->resp)) {
        h2->wake_due = true;
        notify_soon(h2);
    }
}

/* A shared budget (the gateway's, or a certificate's) has room again: up to GW_H2_WAKE_MAX
 * waiters, oldest first, whatever their connection, are woken (their upcalls run from their
 * sessions' notify_cb, never from here) or, when another of their budgets has no room, move to
 * its queue. More at the next turn while room remains. */
static void pool_wake_cb(evutil_socket_t fd, short what, void *arg)
{
    struct gw_h2_pool *pool = arg;

    (void)fd;
    (void)what;
    for (unsigned i = 0; i < GW_H2_WAKE_MAX && pool->q.head != NULL && gw_budget_room(&pool->mem);
         i++) {
        struct gw_h2_stream *st = pool->q.head;
        struct waitq *q;
        wq_unlink(st);
        q = wait_queue(st); /* not pool->q: it has room */
        if (q != NULL) {
            wq_push(q, st);
        } else if (!st->notify) {
            st->notify = true;
            notify_soon(st->h2);
        }
    }
    if (pool->q.head != NULL && gw_budget_room(&pool->mem))
        pool_wake_soon(pool);
}

struct gw_h2_pool *gw_h2_pool_new(struct event_base *base, size_t limit)
{
    struct gw_h2_pool *pool = gw_calloc(1, sizeof(*pool));

    if (pool == NULL)
        return NULL;
    gw_budget_init(&pool->mem, limit);
    pool->wake_ev = evtimer_new(base, pool_wake_cb, pool);
    if (pool->wake_ev == NULL) {
        gw_free(pool);
        return NULL;
    }
    return pool;
}

void gw_h2_pool_free(struct gw_h2_pool *pool)
{
    if (pool == NULL)
        return;
    event_free(pool->wake_ev);
    gw_free(pool);
}

void gw_h2_pool_usage(const struct gw_h2_pool *pool, size_t *used, size_t *peak, size_t *limit)
{
    *used = pool->mem.used;
    *peak = pool->mem.peak;
    *limit = pool->mem.limit;
}

/* Frees the stream's response queues (wiped): at close, or once the answer has gone out. */
static void free_queues(struct gw_h2_stream *st)
{
    if (st->out != NULL) {
        wipe_drain(st->out, evbuffer_get_length(st->out)); /* what was never sent */
        evbuffer_free(st->out);
        st->out = NULL;
    }
    uncharge(st, st->charged);
    if (st->stage != NULL) {
        if (st->resv.iov_base != NULL) /* reserved, perhaps written, never committed */
            gw_wipe(st->resv.iov_base, st->resv.iov_len);
        st->resv.iov_base = NULL;
        evbuffer_free(st->stage);
        st->stage = NULL;
    }
}

/* Streams freed, wiped (all bytes zero, as calloc gives them), kept for the next stream of this
 * thread instead of going back to the C library: a stream (~2.3 KiB, its headers' buffers
 * inline) is past glibc's per-thread cache, and one comes and goes with every call. None under
 * AddressSanitizer (alloc.h). */
#define STREAM_CACHE GW_BLOCK_CACHE
static _Thread_local struct gw_h2_stream *stream_cache;
static _Thread_local unsigned stream_cached;

static struct gw_h2_stream *stream_get(void)
{
    struct gw_h2_stream *st = stream_cache;

    if (st == NULL)
        return gw_calloc(1, sizeof(*st));
    if (!gw_alloc_permitted()) /* still an allocation for the fail-nth hook */
        return NULL;
    stream_cache = st->next;
    stream_cached--;
    st->next = NULL; /* the only byte not zero: the link */
    return st;
}

static void stream_put(struct gw_h2_stream *st)
{
    gw_wipe(st, sizeof(*st));
    if (stream_cached + 1 > STREAM_CACHE) {
        gw_free(st);
        return;
    }
    st->next = stream_cache;
    stream_cache = st;
    stream_cached++;
}

unsigned gw_h2_stream_cache_check(const void *p, size_t n, unsigned *holding)
{
    unsigned k = 0;

    if (holding != NULL)
        *holding = 0;
    for (const struct gw_h2_stream *st = stream_cache; st != NULL; st = st->next, k++) {
        const unsigned char *b = (const unsigned char *)st;
        for (size_t i = 0; holding != NULL && n > 0 && i + n <= sizeof(*st); i++)
            if (memcmp(b + i, p, n) == 0) {
                (*holding)++;
                break;
            }
    }
    return k;
}

static void stream_free(struct gw_h2_stream *st)
{
    struct gw_h2 *h2 = st->h2;

    mark_answered(st);
    if (st->obj != NULL) {
        void *obj = st->obj;
        st->obj = NULL;
        h2->up.close(obj);
    }
    if (st->prev)
        st->prev->next = st->next;
    else
        h2->streams = st->next;
    if (st->next)
        st->next->prev = st->prev;
    h2->nstreams--;
    wq_unlink(st);
    if (st->stall_ev != NULL)
        event_free(st->stall_ev);
    if (st->linger_ev != NULL)
        event_free(st->linger_ev);
    free_queues(st);
    /* The headers may hold a bearer token. */
    stream_put(st);
}

static int submit_trailers_only(struct gw_h2 *h2, int32_t stream_id, int http_status,
                                enum gw_grpc_status status, const char *message)
{
    char stat[8], code[8], enc[512];
    nghttp2_nv nv[4];
    size_t n = 0;

#define NV(NAME, VALUE)                                                                            \
    do {                                                                                           \
        nv[n].name = (uint8_t *)(NAME);                                                            \
        nv[n].namelen = strlen(NAME);                                                              \
        nv[n].value = (uint8_t *)(VALUE);                                                          \
        nv[n].valuelen = strlen(VALUE);                                                            \
        nv[n].flags = NGHTTP2_NV_FLAG_NONE;                                                        \
        n++;                                                                                       \
    } while (0)

    snprintf(stat, sizeof(stat), "%d", http_status);
    snprintf(code, sizeof(code), "%d", (int)status);
    NV(":status", stat);
    NV("content-type", "application/grpc");
    NV("grpc-status", code);
    if (message != NULL && message[0] != '\0') {
        gw_grpc_percent_encode(message, enc, sizeof(enc));
        NV("grpc-message", enc);
    }
#undef NV
    /* No RST_STREAM(NO_ERROR) right after it even when the client is still sending: grpc-core
     * clients report such a reset as INTERNAL instead of the status we sent. The rest of the
     * body is discarded as it arrives; a client still sending STREAM_LINGER_MS later is reset
     * (on_frame_send_cb). */
    if (nghttp2_submit_response(h2->session, stream_id, nv, n, NULL) != 0)
        return GW_ENOMEM;
    return 0;
}

static void answer_early(struct gw_h2_stream *st, int http_status, enum gw_grpc_status status,
                         const char *message)
{
    mark_answered(st);
    if (stream_log_ok(st->h2))
        GW_LOG(GW_LOG_INFO, "h2", &st->h2->log, "stream %d refused: grpc-status %d: %s",
               (int)st->id, (int)status, message ? message : "");
    if (submit_trailers_only(st->h2, st->id, http_status, status, message) != 0)
        (void)nghttp2_submit_rst_stream(st->h2->session, NGHTTP2_FLAG_NONE, st->id,
                                        NGHTTP2_INTERNAL_ERROR);
}

/* The request headers are complete: check them and hand the stream to the layer above. */
static void on_request_headers(struct gw_h2_stream *st)
{
    struct gw_h2 *h2 = st->h2;
    struct gw_grpc_verdict v;
    uint64_t timeout_ms = 0;
    void *obj;

    if (st->answered)
        return; /* over the header cap, answered by on_header_cb */
    gw_grpc_headers_check(&st->hdrs, h2->cfg->max_deadline_ms, &v, &timeout_ms);
    if (v.status != GW_GRPC_OK) {
        answer_early(st, v.http_status, v.status, v.message);
        return;
    }
    obj = h2->up.open(h2->up.ctx, st, &st->hdrs, timeout_ms);
    if (obj == NULL) {
        if (!st->answered)
            answer_early(st, 200, GW_GRPC_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    st->obj = obj;
    if (!st->answered)
        h2->nlive++;
}

static void flush_cb(evutil_socket_t fd, short what, void *arg);
static void notify_cb(evutil_socket_t fd, short what, void *arg);

/* Makes the session's two loop events if they are not there yet; false when out of memory. */
static bool stream_events_made(struct gw_h2 *h2)
{
    if (h2->notify_ev == NULL)
        h2->notify_ev = event_new(h2->base, -1, 0, notify_cb, h2);
    if (h2->flush_ev == NULL)
        h2->flush_ev = event_new(h2->base, -1, 0, flush_cb, h2);
    return h2->notify_ev != NULL && h2->flush_ev != NULL;
}

static int on_begin_headers_cb(nghttp2_session *session, const nghttp2_frame *frame,
                               void *user_data)
{
    struct gw_h2 *h2 = user_data;
    struct gw_h2_stream *st;

    if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0;
    if (!stream_events_made(h2))
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* nghttp2 resets the stream */
    st = stream_get();
    if (st == NULL)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    st->id = frame->hd.stream_id;
    st->h2 = h2;
    gw_grpc_headers_init(&st->hdrs, h2->cfg->max_header_list_size);
    if (nghttp2_session_set_stream_user_data(session, st->id, st) != 0) {
        stream_put(st);
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    }
    st->next = h2->streams;
    if (h2->streams)
        h2->streams->prev = st;
    h2->streams = st;
    h2->nstreams++;
    gw_h2_calm_stream_opened(&h2->calm);
    return 0;
}

static int on_data_chunk_recv_cb(nghttp2_session *session, uint8_t flags, int32_t stream_id,
                                 const uint8_t *data, size_t len, void *user_data)
{
    struct gw_h2_stream *st = nghttp2_session_get_stream_user_data(session, stream_id);
    struct gw_h2 *h2 = user_data;

    (void)flags;
    if (st != NULL && st->obj != NULL && !st->answered)
        h2->up.data(st->obj, data, len);
    return 0;
}

/* Over a budget (h2_calm.h): the session is terminated with ENHANCE_YOUR_CALM, once: nghttp2 then
 * answers no PING or SETTINGS, opens no stream, and the connection closes once the GOAWAY has
 * left. provoked: what the reset of ours that spent the last of the RST_STREAM budget answered
 * (its error code's name, or the rule), or NULL when the client's own frame did. */
static void calm_down(struct gw_h2 *h2, enum gw_h2_calm_kind k, const char *provoked)
{
    h2->calmed = true;
    if (provoked != NULL)
        GW_LOG(GW_LOG_WARN, "h2", &h2->log,
               "%s flood (streams we reset for the client's protocol errors, the last %s): "
               "over the connection's budget: GOAWAY ENHANCE_YOUR_CALM, closing",
               gw_h2_calm_name(k), provoked);
    else
        GW_LOG(GW_LOG_WARN, "h2", &h2->log,
               "%s flood: over the connection's budget: GOAWAY ENHANCE_YOUR_CALM, closing",
               gw_h2_calm_name(k));
    (void)nghttp2_session_terminate_session(h2->session, NGHTTP2_ENHANCE_YOUR_CALM);
}

/* A RST_STREAM of ours has gone out: one the client's stream provoked costs it a reset from its
 * budget, as one it sent would (CVE-2025-8671). Counted as it leaves, because nghttp2 queues most
 * of them without a callback (a content-length mismatch, a forbidden header, a flow-control
 * error): every one passes here. Reading stops while our output is backed up, so what one read
 * can make us queue before the count catches up is bounded by the read watermark. */
static void charge_reset(struct gw_h2 *h2, uint32_t error_code)
{
    if (h2->calmed || !gw_h2_calm_provoked(error_code) ||
        gw_h2_calm_take(&h2->calm, GW_H2_CALM_RST_STREAM, gw_clock_ms()))
        return;
    calm_down(h2, GW_H2_CALM_RST_STREAM, nghttp2_http2_strerror(error_code));
}

/* A header block over cfg->max_header_list_size is read no further than the field that passed
 * the cap (HPACK bomb: a field in the dynamic table costs the client one byte a reference, and
 * nghttp2 validates every byte of every field it hands us; that validation was nearly all of the
 * gateway's time under a bomb). A request is answered as before (trailers-only
 * RESOURCE_EXHAUSTED), at once: NGHTTP2_ERR_PAUSE lets gw_h2_recv send the answer before the next
 * field, to which we return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE: nghttp2 resets the stream
 * (INTERNAL_ERROR; a reset queued earlier would have dropped the answer, as it does when our
 * output is backed up and the flush sends nothing) and decodes the rest of the block for the
 * HPACK table only, with neither validation nor callback. The client's trailers
 * have the same cap; over it, the stream is reset at once. Either way the stream is the client's
 * doing and costs it a reset from its RST_STREAM budget (charge_reset does not charge
 * INTERNAL_ERROR, so it is charged here, once a stream): bomb after bomb ends in
 * ENHANCE_YOUR_CALM. */
static int on_header_cb(nghttp2_session *session, const nghttp2_frame *frame, const uint8_t *name,
                        size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                        void *user_data)
{
    struct gw_h2 *h2 = user_data;
    struct gw_h2_stream *st;
    struct gw_grpc_verdict v;
    uint64_t timeout_ms;
    int rv = NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;

    (void)flags;
    if (frame->hd.type != NGHTTP2_HEADERS)
        return 0;
    st = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
    if (st == NULL)
        return 0;
    if (frame->headers.cat != NGHTTP2_HCAT_REQUEST) {
        /* client trailers carry nothing we use, but cost what headers cost */
        st->trailer_bytes += (uint64_t)namelen + valuelen + 32u;
        if (st->trailer_bytes <= h2->cfg->max_header_list_size)
            return 0;
    } else {
        gw_grpc_headers_add(&st->hdrs, name, namelen, value, valuelen);
        if (!st->hdrs.too_big)
            return 0;
        if (st->answered)
            return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* charged when it was answered */
        gw_grpc_headers_check(&st->hdrs, h2->cfg->max_deadline_ms, &v, &timeout_ms);
        answer_early(st, v.http_status, v.status, v.message);
        h2->paused = true;
        rv = NGHTTP2_ERR_PAUSE;
    }
    if (!h2->calmed && !gw_h2_calm_take(&h2->calm, GW_H2_CALM_RST_STREAM, gw_clock_ms()))
        calm_down(h2, GW_H2_CALM_RST_STREAM, "for a header list over max_header_list_size");
    return rv;
}

/* Every frame header, before nghttp2 acts on the frame: the control-frame budgets. */
static int on_begin_frame_cb(nghttp2_session *session, const nghttp2_frame_hd *hd, void *user_data)
{
    struct gw_h2 *h2 = user_data;
    enum gw_h2_calm_kind k = gw_h2_calm_kind_of(hd->type, (hd->flags & NGHTTP2_FLAG_ACK) != 0);

    (void)session;
    if (h2->calmed || k == GW_H2_CALM_NKINDS || gw_h2_calm_take(&h2->calm, k, gw_clock_ms()))
        return 0;
    calm_down(h2, k, NULL);
    return 0;
}

static int on_frame_recv_cb(nghttp2_session *session, const nghttp2_frame *frame, void *user_data)
{
    struct gw_h2 *h2 = user_data;
    struct gw_h2_stream *st;

    switch (frame->hd.type) {
    case NGHTTP2_SETTINGS:
        if (!(frame->hd.flags & NGHTTP2_FLAG_ACK))
            h2->preface = true;
        return 0;
    case NGHTTP2_HEADERS:
    case NGHTTP2_DATA:
        break;
    default:
        return 0;
    }
    st = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
    if (st == NULL)
        return 0;
    if (frame->hd.type == NGHTTP2_HEADERS && frame->headers.cat == NGHTTP2_HCAT_REQUEST)
        on_request_headers(st);
    if ((frame->hd.flags & NGHTTP2_FLAG_END_STREAM) && st->obj != NULL && !st->answered)
        h2->up.end(st->obj);
    return 0;
}

static void linger_cb(evutil_socket_t fd, short what, void *arg)
{
    struct gw_h2_stream *st = arg;
    struct gw_h2 *h2 = st->h2;

    (void)fd;
    (void)what;
    GW_LOG(GW_LOG_DEBUG, "h2", &h2->log, "stream %d reset: left open %u ms after its answer",
           (int)st->id, (unsigned)STREAM_LINGER_MS);
    (void)nghttp2_submit_rst_stream(h2->session, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_NO_ERROR);
    (void)gw_h2_flush(h2); /* closes st */
}

/* A frame of ours has gone out. DATA and HEADERS earn the client the window updates and pings
 * that follow them (h2_calm.h); a provoked RST_STREAM costs it (charge_reset). Our answer's last
 * frame (END_STREAM): the response queues are no longer needed, and a client that keeps its half
 * open gets STREAM_LINGER_MS to close it. */
static int on_frame_send_cb(nghttp2_session *session, const nghttp2_frame *frame, void *user_data)
{
    struct gw_h2 *h2 = user_data;
    struct gw_h2_stream *st;
    struct timeval tv;

    gw_h2_calm_frame_sent(&h2->calm, frame->hd.type);
    if (frame->hd.type == NGHTTP2_RST_STREAM) {
        charge_reset(h2, frame->rst_stream.error_code);
        return 0;
    }
    if ((frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA) ||
        !(frame->hd.flags & NGHTTP2_FLAG_END_STREAM))
        return 0;
    st = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
    if (st == NULL)
        return 0;
    free_queues(st);
    if (st->stall_ev != NULL)
        evtimer_del(st->stall_ev);
    if (nghttp2_session_get_stream_remote_close(session, st->id) != 0)
        return 0; /* nghttp2 closes the stream now */
    if (st->linger_ev == NULL)
        st->linger_ev = evtimer_new(h2->base, linger_cb, st);
    tv = gw_clock_tv(STREAM_LINGER_MS); /* read only here: most frames need no timer */
    if (st->linger_ev == NULL || evtimer_add(st->linger_ev, &tv) != 0)
        (void)nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_NO_ERROR);
    return 0;
}

static int on_stream_close_cb(nghttp2_session *session, int32_t stream_id, uint32_t error_code,
                              void *user_data)
{
    struct gw_h2_stream *st = nghttp2_session_get_stream_user_data(session, stream_id);

    (void)error_code;
    (void)user_data;
    if (st == NULL)
        return 0;
    (void)nghttp2_session_set_stream_user_data(session, stream_id, NULL);
    stream_free(st);
    return 0;
}

/* ---- response output ---- */

/* Output asked for by the layer above (a call answered or a message queued, often from inside a
 * completion callback that is walking a list of waiters) is produced from the loop, later in the
 * same pass: a flush sends trailers and resets and so closes streams and frees their calls, which
 * must never happen inside the caller's dispatch. */
static void flush_soon(struct gw_h2 *h2)
{
    event_active(h2->flush_ev, EV_TIMEOUT, 0);
}

static void flush_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)gw_h2_flush(arg);
}

/* Runs notify_cb at the next loop turn: a zero timeout, not event_active, which libevent would
 * run again within the same turn when activated from inside the callback. */
static void notify_soon(struct gw_h2 *h2)
{
    static const struct timeval zero = {0, 0};

    if (!evtimer_pending(h2->notify_ev, NULL))
        (void)evtimer_add(h2->notify_ev, &zero);
}

static void notify_cb(evutil_socket_t fd, short what, void *arg)
{
    struct gw_h2 *h2 = arg;

    (void)fd;
    (void)what;
    if (h2->wake_due)
        session_wake(h2);
    /* The upcalls due now. One asked for again from inside an upcall runs at the next loop turn,
     * after I/O: a handler that keeps asking cannot hold the loop. */
    for (struct gw_h2_stream *st = h2->streams; st != NULL; st = st->next) {
        st->due = st->notify;
        st->notify = false;
    }
    /* An upcall may finish, reset or close any stream, so start from the head after each. */
    for (;;) {
        struct gw_h2_stream *st = h2->streams;
        while (st != NULL && !st->due)
            st = st->next;
        if (st == NULL)
            break;
        st->due = false;
        st->want_writable = false;
        if (st->obj != NULL && !st->answered)
            h2->up.writable(st->obj);
    }
    (void)gw_h2_flush(h2);
}

/* Starts a stall period: the client must take half of what is queued now (rounded up) within
 * stream_write_timeout_ms. */
static void stall_period(struct gw_h2_stream *st)
{
    size_t queued = evbuffer_get_length(st->out);

    st->progress_ms = gw_clock_ms();
    st->taken = 0;
    st->need = queued / 2u + (queued & 1u);
}

/* The client took n bytes of the stream. A period ends only when the bytes due in it are taken
 * or the queue is empty, never on any byte: a client that opens its window a byte at a time
 * does not keep a stream whose queue does not drain. */
static void stream_progress(struct gw_h2_stream *st, size_t n)
{
    size_t queued = evbuffer_get_length(st->out);

    st->taken += n;
    if (queued == 0 || st->taken >= st->need)
        stall_period(st);
    if (st->want_writable && !st->notify && st->wq == NULL && queued < GW_H2_STREAM_LOW)
        ready_or_wait(st);
}

static void submit_trailer(struct gw_h2_stream *st)
{
    char code[8];
    nghttp2_nv nv[2];
    size_t n = 1;

    size_t codelen = gw_text_i64((int)st->status, code, sizeof(code));

    nv[0] =
        (nghttp2_nv){(uint8_t *)"grpc-status", (uint8_t *)code, 11, codelen, NGHTTP2_NV_FLAG_NONE};
    if (st->message[0] != '\0') {
        nv[1] = (nghttp2_nv){(uint8_t *)"grpc-message", (uint8_t *)st->message, 12,
                             strlen(st->message), NGHTTP2_NV_FLAG_NONE};
        n = 2;
    }
    if (nghttp2_submit_trailer(st->h2->session, st->id, nv, n) != 0)
        (void)nghttp2_submit_rst_stream(st->h2->session, NGHTTP2_FLAG_NONE, st->id,
                                        NGHTTP2_INTERNAL_ERROR);
}

static ssize_t data_read_cb(nghttp2_session *session, int32_t stream_id, uint8_t *buf,
                            size_t length, uint32_t *data_flags, nghttp2_data_source *source,
                            void *user_data)
{
    struct gw_h2_stream *st = source->ptr;
    size_t avail = evbuffer_get_length(st->out);

    (void)session;
    (void)stream_id;
    (void)user_data;
    if (avail > 0) {
        size_t n = avail < length ? avail : length;
        if (evbuffer_copyout(st->out, buf, n) != (ev_ssize_t)n)
            return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
        wipe_drain(st->out, n);
        uncharge(st, n);
        stream_progress(st, n);
        return (ssize_t)n;
    }
    if (!st->answered)
        return NGHTTP2_ERR_DEFERRED;
    *data_flags |= NGHTTP2_DATA_FLAG_EOF | NGHTTP2_DATA_FLAG_NO_END_STREAM;
    submit_trailer(st);
    return 0;
}

static void arm_stall(struct gw_h2_stream *st, uint64_t ms)
{
    struct timeval tv = gw_clock_tv(ms);

    (void)evtimer_add(st->stall_ev, &tv);
}

static void stall_cb(evutil_socket_t fd, short what, void *arg)
{
    struct gw_h2_stream *st = arg;
    uint64_t limit = st->h2->cfg->stream_write_timeout_ms, idle;
    unsigned long long taken = st->taken, need = st->need;

    (void)fd;
    (void)what;
    if (gw_h2_stream_queued(st) == 0)
        return; /* nothing waiting: re-armed by the next commit */
    idle = gw_clock_ms() - st->progress_ms;
    if (idle < limit) {
        arm_stall(st, limit - idle);
        return;
    }
    if (stream_log_ok(st->h2))
        GW_LOG(GW_LOG_INFO, "h2", &st->h2->log,
               "stream %d reset: the client took %llu of the %llu response bytes due in %u ms "
               "(half of its queue)",
               (int)st->id, taken, need, (unsigned)limit);
    gw_h2_stream_reset(st);
    (void)gw_h2_flush(st->h2);
}

const struct gw_peer *gw_h2_stream_peer(const struct gw_h2_stream *st)
{
    return st->h2->peer;
}

int32_t gw_h2_stream_id(const struct gw_h2_stream *st)
{
    return st->id;
}

struct gw_budget *gw_h2_stream_budget(struct gw_h2_stream *st)
{
    return &st->h2->mem;
}

struct gw_budget *gw_h2_stream_cert_budget(struct gw_h2_stream *st)
{
    return st->h2->cert_mem;
}

size_t gw_h2_stream_queued(const struct gw_h2_stream *st)
{
    return st->out != NULL ? evbuffer_get_length(st->out) : 0;
}

bool gw_h2_stream_writable(const struct gw_h2_stream *st)
{
    /* Bytes the layer above holds are counted already: queueing them adds nothing (it lowers
     * its hold as it sends), so a stream that holds some may queue them whatever the budgets
     * show; waiting for room it holds itself would never end. */
    return gw_h2_stream_queued(st) < GW_H2_STREAM_HIGH && !budget_full(st);
}

void gw_h2_stream_want_writable(struct gw_h2_stream *st)
{
    if (st->answered)
        return;
    st->want_writable = true;
    if (!st->notify && gw_h2_stream_queued(st) < GW_H2_STREAM_LOW)
        ready_or_wait(st);
}

uint8_t *gw_h2_stream_reserve(struct gw_h2_stream *st, size_t len)
{
    size_t queued;

    st->resv.iov_base = NULL;
    if (st->answered || len > st->h2->cfg->max_message_size)
        return NULL;
    if (st->out == NULL && (st->out = evbuffer_new()) == NULL)
        return NULL;
    if (st->stage == NULL && (st->stage = evbuffer_new()) == NULL)
        return NULL;
    /* A handler that ignores gw_h2_stream_writable() still cannot make us queue without bound. */
    queued = evbuffer_get_length(st->out);
    if (queued > 0 && queued + len > GW_H2_STREAM_HIGH + st->h2->cfg->max_message_size)
        return NULL;
    /* Nor past the response budgets: only a message on an empty queue is charged past them. */
    if (queued > 0 && budget_full(st))
        return NULL;
    /* Written in the empty stage buffer, then moved whole onto the queue: reserving on the queue
     * itself lets libevent copy queued messages into a bigger chain and free the old one
     * unwiped. Moving chains (evbuffer_add_buffer) never copies. */
    if (evbuffer_reserve_space(st->stage, (ev_ssize_t)(len + GW_GRPC_PREFIX_LEN), &st->resv, 1) <
            1 ||
        st->resv.iov_len < len + GW_GRPC_PREFIX_LEN) {
        st->resv.iov_base = NULL;
        return NULL;
    }
    gw_grpc_frame_prefix(st->resv.iov_base, (uint32_t)len);
    return (uint8_t *)st->resv.iov_base + GW_GRPC_PREFIX_LEN;
}

static int start_response(struct gw_h2_stream *st)
{
    nghttp2_nv nv[2] = {
        {(uint8_t *)":status", (uint8_t *)"200", 7, 3, NGHTTP2_NV_FLAG_NONE},
        {(uint8_t *)"content-type", (uint8_t *)"application/grpc", 12, 16, NGHTTP2_NV_FLAG_NONE},
    };
    nghttp2_data_provider prd;

    prd.source.ptr = st;
    prd.read_callback = data_read_cb;
    if (nghttp2_submit_response(st->h2->session, st->id, nv, 2, &prd) != 0)
        return GW_ENOMEM;
    st->response_started = true;
    return 0;
}

int gw_h2_stream_commit(struct gw_h2_stream *st, size_t len)
{
    bool was_empty;

    if (st->answered || st->resv.iov_base == NULL)
        return GW_EINVAL;
    was_empty = evbuffer_get_length(st->out) == 0;
    st->resv.iov_len = len + GW_GRPC_PREFIX_LEN;
    if (evbuffer_commit_space(st->stage, &st->resv, 1) != 0) {
        gw_wipe(st->resv.iov_base, st->resv.iov_len);
        st->resv.iov_base = NULL;
        return GW_ENOMEM;
    }
    st->resv.iov_base = NULL;
    if (evbuffer_add_buffer(st->out, st->stage) != 0) {
        wipe_drain(st->stage, evbuffer_get_length(st->stage));
        return GW_ENOMEM;
    }
    charge_levels(st->h2, len + GW_GRPC_PREFIX_LEN);
    st->charged += len + GW_GRPC_PREFIX_LEN;
    if (!st->response_started) {
        if (start_response(st) != 0)
            return GW_ENOMEM;
    } else {
        (void)nghttp2_session_resume_data(st->h2->session, st->id);
    }
    if (st->stall_ev == NULL) {
        st->stall_ev = evtimer_new(st->h2->base, stall_cb, st);
        if (st->stall_ev == NULL)
            return GW_ENOMEM;
    }
    /* The stall clock runs only while bytes wait: a client is not blamed for a pause of ours. A
     * timer still pending from an earlier message re-arms itself for the rest of the period. */
    if (was_empty)
        stall_period(st);
    if (!evtimer_pending(st->stall_ev, NULL))
        arm_stall(st, st->h2->cfg->stream_write_timeout_ms);
    flush_soon(st->h2);
    return 0;
}

void gw_h2_stream_finish(struct gw_h2_stream *st, enum gw_grpc_status status, const char *message)
{
    struct gw_h2 *h2 = st->h2;

    if (st->answered)
        return;
    mark_answered(st);
    if (!st->response_started) {
        if (submit_trailers_only(h2, st->id, 200, status, message) != 0)
            (void)nghttp2_submit_rst_stream(h2->session, NGHTTP2_FLAG_NONE, st->id,
                                            NGHTTP2_INTERNAL_ERROR);
    } else {
        st->status = status;
        gw_grpc_percent_encode(message ? message : "", st->message, sizeof(st->message));
        (void)nghttp2_session_resume_data(h2->session, st->id);
    }
    flush_soon(h2); /* st closes later, from the loop, never inside this call */
}

void gw_h2_stream_reset(struct gw_h2_stream *st)
{
    mark_answered(st);
    if (st->out != NULL)
        wipe_drain(st->out, evbuffer_get_length(st->out));
    uncharge(st, st->charged);
    wq_unlink(st);
    (void)nghttp2_submit_rst_stream(st->h2->session, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_CANCEL);
}

/* ---- the session ---- */

struct gw_h2 *gw_h2_new(const struct gw_h2_params *p)
{
    struct gw_h2 *h2 = NULL;
    nghttp2_session_callbacks *cbs = NULL;
    nghttp2_option *opt = NULL;
    nghttp2_settings_entry iv[3];

    h2 = gw_calloc(1, sizeof(*h2));
    if (h2 == NULL)
        goto fail;
    h2->cfg = p->cfg;
    h2->base = p->base;
    h2->peer = p->peer;
    h2->log.peer = h2->peer->addr;
    h2->log.principal = h2->peer->cert_cn[0] ? h2->peer->cert_cn : NULL;
    h2->io = p->io;
    h2->up = p->up;
    gw_h2_calm_init(&h2->calm, gw_clock_ms());
    h2->lines = p->lines;
    gw_budget_init(&h2->mem, p->cfg->request_memory_per_connection);
    h2->cert_mem = p->cert_mem;
    gw_budget_init(&h2->resp, p->cfg->response_memory_per_connection);
    h2->cert_pool = p->cert_pool;
    h2->pool = p->pool;
    if (h2->pool == NULL) {
        h2->pool = gw_h2_pool_new(p->base, 0);
        if (h2->pool == NULL)
            goto fail;
        h2->own_pool = true;
    }

    if (nghttp2_session_callbacks_new(&cbs) != 0 || nghttp2_option_new(&opt) != 0)
        goto fail;
    nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, on_begin_headers_cb);
    nghttp2_session_callbacks_set_on_header_callback(cbs, on_header_cb);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data_chunk_recv_cb);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv_cb);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close_cb);
    nghttp2_session_callbacks_set_on_begin_frame_callback(cbs, on_begin_frame_cb);
    nghttp2_session_callbacks_set_on_frame_send_callback(cbs, on_frame_send_cb);
    /* Our responses carry a handful of short headers; refuse to emit anything larger. */
    nghttp2_option_set_max_send_header_block_length(opt, 16384);
    /* A closed stream is freed at once. nghttp2 would otherwise keep up to
     * max_concurrent_streams closed streams (about 300 bytes each, and their stream-table
     * entries) per connection for RFC 7540's priority tree, which gRPC does not use and RFC 9113
     * deprecates: a connection idle after 100 calls held 30 KiB more (issue 10). A frame that
     * arrives for a stream closed since (DATA, WINDOW_UPDATE, RST_STREAM) is ignored, as RFC 9113
     * 5.1 allows; HEADERS on it is a connection error, as before. */
    nghttp2_option_set_no_closed_streams(opt, 1);
    if (nghttp2_session_server_new3(&h2->session, cbs, h2, opt, gw_h2mem_init(&h2->alloc)) != 0)
        goto fail;
    nghttp2_session_callbacks_del(cbs);
    cbs = NULL;
    nghttp2_option_del(opt);
    opt = NULL;

    iv[0].settings_id = NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS;
    iv[0].value = p->cfg->max_concurrent_streams;
    iv[1].settings_id = NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE;
    iv[1].value = p->cfg->max_header_list_size;
    iv[2].settings_id = NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE;
    iv[2].value = 1u << 20;
    if (nghttp2_submit_settings(h2->session, NGHTTP2_FLAG_NONE, iv, 3) != 0)
        goto fail;
    return h2;
fail:
    nghttp2_session_callbacks_del(cbs);
    nghttp2_option_del(opt);
    gw_h2_free(h2);
    return NULL;
}

void gw_h2_free(struct gw_h2 *h2)
{
    if (h2 == NULL)
        return;
    /* A close upcall (a call's cancel) must not make nghttp2 send while streams it still points
     * at are being freed: every flush from here on is refused. */
    h2->failed = true;
    /* The connection's last count, if the gateway's budget has room for it (the gateway's own
     * count of what it left out is reported by its owner): a flood of connections does not
     * write a line each as they close. */
    if (h2->calm.log.dropped > 0 && gw_lines_take(NULL, h2->lines, gw_clock_ms()))
        GW_LOG(GW_LOG_INFO, "h2", &h2->log, "%llu per-stream log lines suppressed (rate limit)",
               (unsigned long long)h2->calm.log.dropped);
    while (h2->streams != NULL)
        stream_free(h2->streams);
    nghttp2_session_del(h2->session);
    if (h2->notify_ev != NULL)
        event_free(h2->notify_ev);
    if (h2->flush_ev != NULL)
        event_free(h2->flush_ev);
    if (h2->own_pool)
        gw_h2_pool_free(h2->pool);
    gw_free(h2);
}

void gw_h2_mem_held(const struct gw_h2 *h2, struct gw_h2mem_held *out)
{
    gw_h2mem_held(&h2->alloc, out);
}

int gw_h2_flush(struct gw_h2 *h2)
{
    bool sent = false;

    if (h2->failed)
        return GW_EIO;
    if (h2->busy) {
        h2->want_flush = true;
        return 0;
    }
    h2->busy = true;
    for (;;) {
        const uint8_t *data = NULL;
        ssize_t n;

        h2->want_flush = false;
        if (h2->io.out_pending(h2->io.arg) >= GW_H2_OUT_HIGH)
            break; /* resumed from the owner's write callback */
        n = nghttp2_session_mem_send(h2->session, &data);
        if (n < 0) {
            GW_LOG(GW_LOG_WARN, "h2", &h2->log, "nghttp2 send failed: %s",
                   nghttp2_strerror((int)n));
            h2->failed = true;
            break;
        }
        if (n == 0) {
            /* All sent, no stream: the frame buffer holds no frame of ours any more (issue
             * 10; its pages go back with gw_h2_release_idle). */
            if (sent && h2->nstreams == 0)
                gw_h2mem_wipe_scratch(&h2->alloc);
            break;
        }
        sent = true;
        if (h2->io.send(h2->io.arg, data, (size_t)n) != 0) {
            h2->failed = true;
            break;
        }
    }
    h2->busy = false;
    return h2->failed ? GW_EIO : 0;
}

int gw_h2_recv(struct gw_h2 *h2, const uint8_t *data, size_t len)
{
    ssize_t n;
    int rc;

    if (h2->failed)
        return GW_EIO;
    for (;;) {
        h2->busy = true;
        h2->paused = false;
        n = nghttp2_session_mem_recv(h2->session, data, len);
        h2->busy = false;
        if (n < 0) {
            GW_LOG(GW_LOG_INFO, "h2", &h2->log, "protocol error: %s", nghttp2_strerror((int)n));
            h2->failed = true;
            return GW_EPROTO;
        }
        if (!h2->paused)
            break;
        /* on_header_cb answered a request over the header cap: the answer leaves before the
         * rest of the block is read. Read on even with nothing left: the block may end here. */
        data += n;
        len -= (size_t)n;
        rc = gw_h2_flush(h2);
        if (rc != 0)
            return rc;
    }
    return gw_h2_flush(h2);
}

void gw_h2_release_idle(struct gw_h2 *h2)
{
    if (!h2->failed && !h2->busy && h2->nstreams == 0 && !nghttp2_session_want_write(h2->session))
        gw_h2mem_release_idle(&h2->alloc);
}

bool gw_h2_want_io(const struct gw_h2 *h2)
{
    return !h2->failed &&
           (nghttp2_session_want_read(h2->session) || nghttp2_session_want_write(h2->session));
}

bool gw_h2_preface_received(const struct gw_h2 *h2)
{
    return h2->preface;
}

size_t gw_h2_live_streams(const struct gw_h2 *h2)
{
    return h2->nlive;
}

size_t gw_h2_queued(const struct gw_h2 *h2)
{
    size_t n = 0;

    for (const struct gw_h2_stream *st = h2->streams; st != NULL; st = st->next)
        n += gw_h2_stream_queued(st);
    return n;
}

void gw_h2_goaway(struct gw_h2 *h2)
{
    (void)nghttp2_submit_goaway(h2->session, NGHTTP2_FLAG_NONE,
                                nghttp2_session_get_last_proc_stream_id(h2->session),
                                NGHTTP2_NO_ERROR, NULL, 0);
    (void)gw_h2_flush(h2);
}

bool gw_h2_key_updates(struct gw_h2 *h2, uint32_t n)
{
    uint64_t now = gw_clock_ms();

    if (h2->calmed)
        return false;
    for (uint32_t i = 0; i < n; i++) {
        if (!gw_h2_calm_take(&h2->calm, GW_H2_CALM_KEY_UPDATE, now)) {
            calm_down(h2, GW_H2_CALM_KEY_UPDATE, NULL);
            (void)gw_h2_flush(h2);
            return false;
        }
    }
    return true;
}

void gw_h2_terminate(struct gw_h2 *h2)
{
    (void)nghttp2_session_terminate_session(h2->session, NGHTTP2_NO_ERROR);
    (void)gw_h2_flush(h2);
}
