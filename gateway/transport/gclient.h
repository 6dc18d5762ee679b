/* gclient.h: a gRPC client over TLS and HTTP/2 on the gateway's own event loop (libnghttp2 in
 * client mode, OpenSSL, libevent; no threads, no second HTTP/2 implementation). Used by the
 * forwarder to call CarrierBackend.Deliver. One client holds at most one connection to its
 * endpoint, opened on the first call and again after it is lost (with backoff); unary calls are
 * multiplexed on it as HTTP/2 streams. mTLS: the client presents its own certificate and verifies
 * the server's chain against `ca` and its name against `server_name` (TLS >= 1.2, ALPN h2).
 * The client knows nothing of protobuf: a request is the serialized message, a response the
 * serialized message and the gRPC status. Memory is bounded: a response larger than max_response
 * fails the call (RESOURCE_EXHAUSTED) and resets its stream; the output waiting for the socket
 * stays under GW_GCLIENT_OUT_HIGH plus one frame, whatever the server sends (reading stops at the
 * mark until the output has drained to GW_GCLIENT_OUT_LOW).
 * A call's callback runs exactly once (unless cancelled first), never from inside gw_gclient_call,
 * and may start new calls or free the client. */
#ifndef GW_GCLIENT_H
#define GW_GCLIENT_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "grpc.h"

struct gw_tls_expiry;

/* The output mark (the server side's GW_H2_OUT_HIGH) and where reading resumes. */
#define GW_GCLIENT_OUT_HIGH (256u * 1024u)
#define GW_GCLIENT_OUT_LOW (64u * 1024u)

struct event_base;
struct gw_gclient;
struct gw_gclient_call;

struct gw_gclient_params {
    struct event_base *base;
    const char *endpoint;        /* "host:port" */
    const char *server_name;     /* SNI and the name the certificate must carry; NULL = the host */
    const char *ca;              /* PEM bundle the server's chain must end in */
    const char *cert, *key;      /* the client's certificate chain and private key (PEM) */
    const char *crl;             /* CRL (PEM) for the server's chain, or NULL */
    uint32_t connect_timeout_ms; /* TCP + TLS handshake */
    uint32_t max_response;       /* bytes of one response message */
    const char *nameserver;      /* tests: resolve a host name through this server only
                                  * ("ip:port"), not resolv.conf and the hosts file; NULL */
};

/* Loads the certificates and keys (fails here, not at the first call, when one is unreadable);
 * connects lazily. NULL with a reason in err (no secret in it). */
struct gw_gclient *gw_gclient_new(const struct gw_gclient_params *p, char *err, size_t errlen);

/* Reads the certificates, key and CRL again (gw_gclient_new's files): new connections use them,
 * and a connection whose server certificate the new CRL revokes is dropped (its calls fail
 * UNAVAILABLE). Returns 0, or GW_EINVAL with the reason in err when a file is refused (the
 * context in force stays). Call it from a libevent callback, not from a call's. */
int gw_gclient_reload_tls(struct gw_gclient *c, char *err, size_t errlen);

/* The client certificate's and the CRL's remaining time in the context in force (gw_tls_expiry). */
void gw_gclient_tls_expiry(const struct gw_gclient *c, struct gw_tls_expiry *out);

/* Closes the connection and frees the client; no callback of a call in flight runs after it. A
 * host-name lookup in progress is cancelled, and its resolver is released from two later turns
 * of the loop (evdns calls a cancelled lookup back later): a caller that frees the client after
 * its loop ended and wants nothing left over runs the loop twice more (EVLOOP_NONBLOCK). */
void gw_gclient_free(struct gw_gclient *c);

/* The outcome of one call. status is GW_GRPC_OK with the response message, or the gRPC status the
 * server sent (grpc-status trailer), or one the client decided: UNAVAILABLE (no connection, TLS or
 * HTTP/2 failure, stream reset, GOAWAY before it was processed), DEADLINE_EXCEEDED (deadline_ms
 * passed; the stream is reset), RESOURCE_EXHAUSTED (response too large), INTERNAL (a malformed
 * response). message: the server's grpc-message or the client's reason; never NULL. Both valid
 * only during the callback. */
struct gw_gclient_result {
    enum gw_grpc_status status;
    const char *message;
    const uint8_t *response;
    size_t response_len;
};
typedef void (*gw_gclient_cb)(void *arg, const struct gw_gclient_result *r);

/* Starts a unary call of `path` (e.g. "/waygate.v1.CarrierBackend/Deliver") with the serialized
 * request (copied), sending grpc-timeout for deadline_ms. Returns 0 and a handle in *out (may be
 * NULL), or GW_ENOMEM / GW_EINVAL (then cb will not run). */
int gw_gclient_call(struct gw_gclient *c, const char *path, const uint8_t *req, size_t len,
                    uint32_t deadline_ms, gw_gclient_cb cb, void *arg,
                    struct gw_gclient_call **out) GW_MUST_CHECK;

/* Cancels a call (its stream is reset when it was sent); the callback never runs. NULL-safe. */
void gw_gclient_cancel(struct gw_gclient_call *call);

/* How long (ms) until the client tries to connect again after a failed attempt: calls started
 * before then fail UNAVAILABLE at once. 0 when a call would connect (or is connected) now. */
uint32_t gw_gclient_retry_in_ms(const struct gw_gclient *c);

/* Calls in flight (for tests and metrics). */
size_t gw_gclient_inflight(const struct gw_gclient *c);

/* Calls the client holds: those in flight, and finished ones whose streams nghttp2 has not yet
 * closed (at most 128 of these, counted with requests of freed calls still in nghttp2's queue;
 * past it the connection is dropped). For tests. */
size_t gw_gclient_held(const struct gw_gclient *c);

/* The most bytes the connection's output buffer has held over the client's life (for tests:
 * at most GW_GCLIENT_OUT_HIGH plus one frame chunk). */
size_t gw_gclient_out_peak(const struct gw_gclient *c);

#endif
