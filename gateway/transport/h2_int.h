/* h2_int.h: what the HTTP/2 session's two files share (h2.c: the nghttp2 session, its callbacks,
 * streams, framing and trailers; h2_resp.c: the response memory a stream's queue is charged to,
 * the waits for room in it, and the stall rule for a client that does not read). Not for other
 * modules: the layer above sees only h2.h. */
#ifndef GW_H2_INT_H
#define GW_H2_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <event2/buffer.h>
#include <nghttp2/nghttp2.h>

#include "budget.h"
#include "h2.h"
#include "h2_calm.h"
#include "h2mem.h"
#include "log.h"

struct event;
struct event_base;

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

/* h2.c: has the session's notify_cb run at the next loop turn (due writable upcalls, wakes of the
 * connection's waiters); never from inside it. */
void gw_h2_notify_soon(struct gw_h2 *h2);

/* h2_resp.c, the response memory: */
/* Charges n bytes newly queued on st to the connection's, the certificate's and the gateway's
 * budgets (counted in st->charged). */
void gw_h2_resp_charge(struct gw_h2_stream *st, size_t n);
/* Gives back n of the bytes st has charged (they left its queue), and has the waiters of each
 * budget that has room again woken from the loop. */
void gw_h2_resp_uncharge(struct gw_h2_stream *st, size_t n);
/* Whether st must wait for response memory (gw_h2_stream_hold: never while it holds some). */
bool gw_h2_resp_full(const struct gw_h2_stream *st);
/* Takes st out of the wait queue it is in, if any. */
void gw_h2_resp_unwait(struct gw_h2_stream *st);
/* notify_cb found the connection's budget with room again: wakes its waiters, oldest first. */
void gw_h2_resp_session_wake(struct gw_h2 *h2);
/* The client took n bytes of st's queue: the stall rule's progress, and st's writable upcall if
 * it asked for one and its queue is now under GW_H2_STREAM_LOW. */
void gw_h2_resp_taken(struct gw_h2_stream *st, size_t n);
/* A message was queued on st (was_empty: the queue was empty before it): the stall clock starts
 * or runs on. Returns 0 or GW_ENOMEM (its timer not made). */
int gw_h2_resp_queued(struct gw_h2_stream *st, bool was_empty);

#endif
