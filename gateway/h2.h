/* h2.h: one HTTP/2 server session (nghttp2) carrying gRPC calls, independent of sockets: bytes
 * come in through gw_h2_recv and go out through the io.send callback, so the session can be
 * driven from memory in tests. The session owns its streams; a stream owns its call (call.c).
 *
 * Re-entrancy: output is produced only by gw_h2_flush, never from inside nghttp2's callbacks; a
 * flush requested while the session is processing input (e.g. a handler finishing at once) runs
 * when gw_h2_recv returns. The owner frees the session only from its own callbacks, never from
 * code called by the session. */
#ifndef GW_H2_H
#define GW_H2_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "call.h"
#include "err.h"
#include "grpc.h"

struct event_base;
struct gw_app;
struct gw_config;
struct gw_rpc_table;
struct gw_rpc_method;
struct gw_h2;
struct nghttp2_session;

/* Output is not produced while out_pending() is at or above this many bytes. */
#define GW_H2_OUT_HIGH (256u * 1024u)

struct gw_h2_io {
    /* Queues len bytes for the peer; returns 0 or GW_ENOMEM (the session then fails). */
    int (*send)(void *arg, const uint8_t *data, size_t len);
    /* Bytes queued and not yet written to the peer. */
    size_t (*out_pending)(void *arg);
    void *arg;
};

struct gw_h2_params {
    const struct gw_config *cfg;
    struct gw_app *app;
    struct event_base *base; /* for call deadline timers */
    const struct gw_rpc_table *rpc;
    const struct gw_principal *principal; /* copied */
    const char *peer;                     /* copied; for logs */
    struct gw_h2_io io;
};

/* Creates the session and queues the server's SETTINGS. Returns NULL on failure. */
struct gw_h2 *gw_h2_new(const struct gw_h2_params *p);
/* Frees every stream (each live call's cancel function runs once) and the session. NULL-safe. */
void gw_h2_free(struct gw_h2 *h2);

/* Processes bytes from the peer, then flushes. Returns 0, or GW_EPROTO / GW_ENOMEM when the
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
/* Streams currently open. */
size_t gw_h2_open_streams(const struct gw_h2 *h2);
/* Graceful shutdown: GOAWAY naming the last stream accepted; open streams may finish. */
void gw_h2_goaway(struct gw_h2 *h2);
/* Immediate shutdown: GOAWAY(NO_ERROR), no stream is served further. */
void gw_h2_terminate(struct gw_h2 *h2);

/* ---- used by call.c ---- */
struct nghttp2_session *gw_h2_session(struct gw_h2 *h2);
struct event_base *gw_h2_base(struct gw_h2 *h2);
struct gw_app *gw_h2_app(struct gw_h2 *h2);
const struct gw_config *gw_h2_cfg(struct gw_h2 *h2);
const struct gw_principal *gw_h2_principal(struct gw_h2 *h2);
const char *gw_h2_peer(struct gw_h2 *h2);
/* Queues a trailers-only response (headers with grpc-status and grpc-message, END_STREAM); a
 * body the client is still sending is discarded as it arrives. http_status is 200 unless
 * the request was not gRPC at all. Returns 0 or GW_ENOMEM. Does not flush. */
int gw_h2_submit_trailers_only(struct gw_h2 *h2, int32_t stream_id, int http_status,
                               enum gw_grpc_status status, const char *message);

/* ---- implemented by call.c, used by h2.c ---- */
/* Creates the call for a stream whose request headers passed the checks; returns NULL on
 * allocation failure. Starts the deadline timer. */
struct gw_call *gw_call_new(struct gw_h2 *h2, int32_t stream_id, const struct gw_rpc_method *m,
                            const struct gw_grpc_headers *hdrs, uint64_t timeout_ms);
/* A chunk of the request body. */
void gw_call_on_data(struct gw_call *call, const uint8_t *data, size_t len);
/* The client half-closed: runs the handler if exactly one message arrived. */
void gw_call_on_request_end(struct gw_call *call);
/* The stream is gone: if the handler is still running its cancel function runs (once); then
 * the call is freed. Must not touch the nghttp2 session. */
void gw_call_on_stream_close(struct gw_call *call);

#endif
