/* h2.h: one HTTP/2 server session (nghttp2) carrying gRPC calls, independent of sockets: bytes
 * come in through gw_h2_recv and go out through the io.send callback, so the session can be
 * driven from memory in tests. This module owns every nghttp2 call: streams, request-header
 * checks (grpc.h), response headers, message framing, flow control and trailers. What a stream
 * carries is the business of the layer above, reached through struct gw_h2_upcalls: the session
 * routes, it does not decide.
 *
 * Re-entrancy: output is produced only by gw_h2_flush, never from inside nghttp2's callbacks; a
 * flush requested while the session is processing input (e.g. a call finishing at once) runs
 * when gw_h2_recv returns. The stream calls of the layer above (finish, commit) never flush: they
 * schedule a flush from the event loop, so no stream closes and no upper object is freed inside
 * them (a completion callback answering its call, while its caller walks a list of waiters, can
 * never free another waiter). "Writable" notifications run from the event loop, never from
 * inside another upcall. The owner frees the session only from its own callbacks, never from
 * code called by the session. */
#ifndef GW_H2_H
#define GW_H2_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "grpc.h"
#include "peer.h"

struct event_base;
struct gw_budget;
struct gw_config;
struct gw_h2;
struct gw_h2_stream;
struct gw_h2mem_held;

/* Output is not produced while out_pending() is at or above this many bytes. */
#define GW_H2_OUT_HIGH (256u * 1024u)
/* A stream's queued response bytes: gw_h2_stream_writable() is false at or above HIGH, and the
 * writable upcall runs once the queue has drained below LOW. */
#define GW_H2_STREAM_HIGH (256u * 1024u)
#define GW_H2_STREAM_LOW (64u * 1024u)

struct gw_h2_io {
    /* Queues len bytes for the peer; returns 0 or GW_ENOMEM (the session then fails). */
    int (*send)(void *arg, const uint8_t *data, size_t len);
    /* Bytes queued and not yet written to the peer. */
    size_t (*out_pending)(void *arg);
    void *arg;
};

/* What the layer above (the rpc layer) does with a stream. Each upcall may answer the stream
 * (gw_h2_stream_finish) and may finish or reset other streams; none may free the session. */
struct gw_h2_upcalls {
    /* A request's headers passed the gRPC checks (content-type, method, te, grpc-timeout,
     * header-list cap). timeout_ms is the deadline to apply. Returns the upper object for the
     * stream, or NULL after answering it with gw_h2_stream_finish (when it returns NULL without
     * answering, the session answers RESOURCE_EXHAUSTED). */
    void *(*open)(void *ctx, struct gw_h2_stream *st, const struct gw_grpc_headers *hdrs,
                  uint64_t timeout_ms);
    /* A chunk of the request body. */
    void (*data)(void *obj, const uint8_t *data, size_t len);
    /* The client half-closed the stream. */
    void (*end)(void *obj);
    /* The stream's queued output drained below GW_H2_STREAM_LOW, and the response budgets have
     * room, after gw_h2_stream_writable() had said false (asked for with
     * gw_h2_stream_want_writable). The stream may still be unwritable by the time it runs
     * (another stream took the room): ask again. */
    void (*writable)(void *obj);
    /* The stream is gone (answered and done, reset by the client or by us, connection closed):
     * the upper object must cancel its work and free itself, and never touch st again. */
    void (*close)(void *obj);
    void *ctx;
};

/* A response budget shared by sessions, and the streams waiting for room in it: the gateway's
 * (one per server: response bytes queued on all streams of all connections,
 * cfg->response_memory) and one per client certificate (certlimit.h: on all its connections,
 * cfg->response_memory_per_certificate). A session also keeps its own connection's budget
 * (cfg->response_memory_per_connection). Every queued byte is charged to all three at once; a
 * streaming handler queues only while all have room (gw_h2_stream_writable); one waiting for
 * room waits on the first full budget (connection, certificate, gateway) and gets its writable
 * upcall once bytes have left it, on whichever connection, and room is back in all, the waiting
 * streams woken in the order they started to wait, at most GW_H2_WAKE_MAX per budget per loop
 * turn. A message queued on an empty queue (a unary answer, the first message of a stream) is
 * never refused: it is charged even past the limit, so the budgets may be passed by one message
 * per such stream, never by a streaming handler's backlog. */
struct gw_h2_pool;
struct gw_lines;
#define GW_H2_WAKE_MAX 16u

/* limit 0: no limit. Returns NULL when out of memory. */
struct gw_h2_pool *gw_h2_pool_new(struct event_base *base, size_t limit);
/* Only once every session using it is freed. NULL-safe. */
void gw_h2_pool_free(struct gw_h2_pool *pool);
/* Response bytes queued now on the sessions sharing it, the most ever queued, the limit. */
void gw_h2_pool_usage(const struct gw_h2_pool *pool, size_t *used, size_t *peak, size_t *limit);

struct gw_h2_params {
    const struct gw_config *cfg;
    struct event_base *base;
    const struct gw_peer *peer; /* not copied: must outlive the session */
    struct gw_h2_io io;
    struct gw_h2_upcalls up;
    struct gw_h2_pool *pool;      /* must outlive the session; NULL: the session makes its own,
                                   * without a gateway-wide limit (tests) */
    struct gw_lines *lines;       /* the gateway's budget of per-stream log lines, shared by every
                                   * session (ratelimit.h); must outlive it; NULL: none (tests) */
    struct gw_budget *cert_mem;   /* the client certificate's request memory in flight
                                   * (certlimit.h), shared with its other connections; must
                                   * outlive the session; NULL: none (no certificate) */
    struct gw_h2_pool *cert_pool; /* the client certificate's response memory (certlimit.h),
                                   * shared with its other connections; must outlive the
                                   * session; NULL: none (no certificate) */
};

/* Creates the session and queues the server's SETTINGS. Returns NULL on failure. */
struct gw_h2 *gw_h2_new(const struct gw_h2_params *p);
/* Frees every stream (each open upper object gets its close upcall once) and the session.
 * NULL-safe. */
void gw_h2_free(struct gw_h2 *h2);

/* Processes bytes from the peer, then flushes; also part-way, between two calls into nghttp2,
 * when a request over the header cap has been answered (its answer must leave before the reset
 * nghttp2 queues for the rest of its block). Returns 0, or GW_EPROTO / GW_ENOMEM when the
 * connection must be closed. */
int gw_h2_recv(struct gw_h2 *h2, const uint8_t *data, size_t len) GW_MUST_CHECK;
/* Sends what the session has queued while io.out_pending() stays under GW_H2_OUT_HIGH. Deferred
 * when called during gw_h2_recv. Returns 0 or an error (the session is then failed). */
int gw_h2_flush(struct gw_h2 *h2);
/* False when the session is finished (both sides done, GOAWAY completed, or failed): close the
 * connection once its output has drained. */
bool gw_h2_want_io(const struct gw_h2 *h2);
/* True once the client's connection preface (and its first SETTINGS) has been received. */
bool gw_h2_preface_received(const struct gw_h2 *h2);
/* Streams with a call still running (not yet answered). A connection with none is idle even if
 * the client keeps answered streams open. */
size_t gw_h2_live_streams(const struct gw_h2 *h2);
/* Response bytes queued on all of the session's streams and not yet taken by the peer's
 * flow-control windows: at most max_concurrent_streams x (GW_H2_STREAM_HIGH + one message), and
 * for streaming handlers at most response_memory_per_connection + one message. */
size_t gw_h2_queued(const struct gw_h2 *h2);
/* What nghttp2 holds for this session now (h2mem.h): an idle session's cost. */
void gw_h2_mem_held(const struct gw_h2 *h2, struct gw_h2mem_held *out);
/* Issue 10: a session with no stream and nothing left to send gives back the pages of nghttp2's
 * large blocks that hold only zeros (h2mem.h, gw_h2mem_release_idle); otherwise does nothing.
 * For the owner, once the connection has been quiet for a while. */
void gw_h2_release_idle(struct gw_h2 *h2);
/* Graceful shutdown: GOAWAY naming the last stream accepted; open streams may finish. */
void gw_h2_goaway(struct gw_h2 *h2);
/* Immediate shutdown: GOAWAY(NO_ERROR), no stream is served further. */
void gw_h2_terminate(struct gw_h2 *h2);
/* The TLS layer under the session received n TLS 1.3 KeyUpdate messages (conn.c): charged to
 * the connection's budget (h2_calm.h). Over it, as for a control-frame flood: a warning, GOAWAY
 * ENHANCE_YOUR_CALM, no stream served further, and gw_h2_want_io false once the GOAWAY has left.
 * Returns false when over the budget (now or before). Not from inside gw_h2_recv. */
bool gw_h2_key_updates(struct gw_h2 *h2, uint32_t n);

/* ---- one stream, for the layer above ---- */

/* The connection's peer (address, verified certificate). */
const struct gw_peer *gw_h2_stream_peer(const struct gw_h2_stream *st);
int32_t gw_h2_stream_id(const struct gw_h2_stream *st);
/* The connection's budget of request memory in flight (budget.h; limit
 * cfg->request_memory_per_connection): the layer above takes from it for a stream's request and
 * gives back before the close upcall returns. Valid until then. */
struct gw_budget *gw_h2_stream_budget(struct gw_h2_stream *st);
/* The client certificate's budget of request memory in flight (limit
 * cfg->request_memory_per_certificate), shared by its connections, or NULL (a connection
 * without a certificate): taken from and given back with the connection's. Valid as long. */
struct gw_budget *gw_h2_stream_cert_budget(struct gw_h2_stream *st);

/* Space for one response message of exactly len bytes (the 5-byte gRPC prefix is the session's
 * business). Returns a pointer valid until gw_h2_stream_commit, or NULL (GW_ENOMEM, or the
 * stream is answered or over max_message_size). */
uint8_t *gw_h2_stream_reserve(struct gw_h2_stream *st, size_t len);
/* Queues the message written into the reserved space; the flush follows from the loop. The
 * first message sends the response headers. Returns 0 or GW_ENOMEM. Closes no stream. */
int gw_h2_stream_commit(struct gw_h2_stream *st, size_t len) GW_MUST_CHECK;
/* Response bytes queued on the stream and not yet taken by the peer's flow-control window. */
size_t gw_h2_stream_queued(const struct gw_h2_stream *st);
/* False when the stream's queue is at or above GW_H2_STREAM_HIGH, or, unless the stream holds
 * bytes (gw_h2_stream_hold), when its connection's, its certificate's or the gateway's response
 * budget (struct gw_h2_pool) is at or over its limit. */
bool gw_h2_stream_writable(const struct gw_h2_stream *st);
/* Asks for one writable upcall, from the loop, once the queue is below GW_H2_STREAM_LOW and all
 * response budgets have room (at the next loop iteration if they already do). */
void gw_h2_stream_want_writable(struct gw_h2_stream *st);

/* Counts n bytes the layer above holds for this stream (read for it, not yet queued) against the
 * response budgets, in place of what it counted before (0: none); like queued bytes, they make
 * gw_h2_stream_writable() false for streams that hold nothing while a budget is full. A stream
 * that holds bytes stays writable (its queue permitting): queueing them moves bytes already
 * counted, so the layer above must lower its hold as it queues, and hold only what it can queue
 * without reading more. Given back when the stream is answered, reset or closed. */
void gw_h2_stream_hold(struct gw_h2_stream *st, size_t n);

/* Ends the stream with a gRPC status: trailers after the queued messages, or a trailers-only
 * response when nothing was sent. message (NULL for none) must never carry caller data; it is
 * percent-encoded here. The rest of a request body still arriving is discarded. The answer is
 * flushed from the loop, later in the same pass: no stream closes (no close upcall runs) before
 * this returns. Once the answer is out its queues are freed; a client that leaves its half of
 * the stream open is reset (RST_STREAM NO_ERROR) 2 s later. */
void gw_h2_stream_finish(struct gw_h2_stream *st, enum gw_grpc_status status, const char *message);
/* Resets the stream (RST_STREAM CANCEL): for a client that stopped reading. The close upcall
 * follows. Queued output is wiped and discarded at once. */
void gw_h2_stream_reset(struct gw_h2_stream *st);
/* May a line about this stream (its call's refusal, its end) be logged now? Taken from its
 * connection's budget (h2_calm.h: a burst of 20, then 2 a second); when lines were left out, says
 * first how many. A client that makes its calls fail as fast as it can does not flood the log. */
bool gw_h2_stream_log_ok(struct gw_h2_stream *st);

/* Freed streams are wiped and kept (up to 64 per thread) for the next stream instead of going
 * back to the C library. For tests: returns how many are kept; *holding (may be NULL) receives
 * how many of them hold the n bytes at p anywhere in their memory. */
unsigned gw_h2_stream_cache_check(const void *p, size_t n, unsigned *holding);

#endif
