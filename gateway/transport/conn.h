/* conn.h: one client connection: its socket bufferevent (TLS or, on the loopback-only insecure
 * listener, plain), its SSL, its HTTP/2 session (h2.h) and through it its streams and calls.
 * Timeouts: the TLS handshake (with the client certificate verified) within the shorter of
 * preauth_timeout_ms and handshake_timeout_ms, then the HTTP/2 client preface within
 * handshake_timeout_ms; the connection is closed after idle_timeout_ms without traffic while no
 * stream is open. */
#ifndef GW_CONN_H
#define GW_CONN_H

#include <stdbool.h>

#include <event2/util.h>

#include "ratelimit.h"

struct event_base;
struct sockaddr;
struct gw_config;
struct gw_conn;
struct gw_h2_pool;
struct gw_h2_upcalls;
struct gw_budget;
struct gw_peerlimit_slot;
struct gw_preauthq_node;
struct gw_tls;

/* Called once when the connection has finished (peer gone, error, timeout, drained). The owner
 * must then free the connection with gw_conn_free (it may do so inside the callback). */
typedef void (*gw_conn_closed_cb)(void *arg, struct gw_conn *c);

/* Called once when the connection authenticates: TLS with a verified client certificate and a
 * principal, or (plaintext) the HTTP/2 client preface received. Never called after the closed
 * callback. The connection must not be freed inside it. Returning a limit (nonzero) refuses it:
 * the certificate already holds that many connections (gw_peer.over_cert_limit); the connection
 * then stays unauthenticated (gw_conn_authenticated false), every call on it is refused, and it
 * is closed preauth_timeout_ms after its handshake. A verified certificate whose subject names no
 * principal (gw_peer.bad_subject) is never reported: that connection is treated the same way. */
typedef uint32_t (*gw_conn_auth_cb)(void *arg, struct gw_conn *c);

/* The verified peer (its certificate's fingerprint is what the owner counts). */
const struct gw_peer *gw_conn_peer_info(const struct gw_conn *c);

/* The gateway's budgets of log lines, shared by every connection (ratelimit.h): `conn` for the
 * lines about a connection itself (a failed or refused handshake, a timeout, a peer that stopped
 * reading) while it has no principal, which a peer without any certificate can make the gateway
 * write; `known` for the same lines once a verified certificate named one (a TLS session
 * established, a later TLS error, a peer that stopped reading), so that ordinary reconnects
 * cannot spend the budget that reports an attack, nor an attacker the one of known clients;
 * `stream` for per-stream lines (h2.h's params.lines), on top of each connection's own. */
#define GW_CONN_LOG_BURST 20u
#define GW_CONN_LOG_RATE 2u
#define GW_CONN_STREAM_LOG_BURST 40u /* twice one connection's: one alone cannot empty it */
#define GW_CONN_STREAM_LOG_RATE 4u
struct gw_conn_lines {
    struct gw_lines conn;
    struct gw_lines known;
    struct gw_lines stream;
};

/* Takes ownership of fd (closed on failure too). tls NULL means plaintext HTTP/2 with prior
 * knowledge and a peer without a certificate. up: what the layer above does with the streams
 * (not copied: must outlive the connection). pool: the gateway's response memory (h2.h; must
 * outlive the connection; NULL: no gateway-wide bound). lines: the gateway's log budgets (must
 * outlive the connection; NULL: none). Returns NULL on failure. */
struct gw_conn *gw_conn_new(const struct gw_config *cfg, struct event_base *base,
                            struct gw_tls *tls, const struct gw_h2_upcalls *up,
                            struct gw_h2_pool *pool, struct gw_conn_lines *lines,
                            evutil_socket_t fd, const struct sockaddr *sa, int salen,
                            gw_conn_closed_cb cb, void *cb_arg);

/* Closes at once: live calls are cancelled; the closed callback is not called. NULL-safe. */
void gw_conn_free(struct gw_conn *c);

/* Graceful: sends GOAWAY; open streams may finish, then the connection closes itself. */
void gw_conn_drain(struct gw_conn *c);

/* Sets the authentication callback (called with the closed callback's arg). */
void gw_conn_set_auth_cb(struct gw_conn *c, gw_conn_auth_cb cb);

/* From the authentication callback of a TLS connection only (its session starts after it): the
 * client certificate's budgets of request memory in flight and of response memory, which the
 * connection's calls and streams charge besides its own (h2.h, gw_h2_params.cert_mem and
 * cert_pool). Not copied: the owner keeps them until after gw_conn_free. */
void gw_conn_set_cert_budgets(struct gw_conn *c, struct gw_budget *mem, struct gw_h2_pool *resp);

/* Has the connection authenticated (see gw_conn_auth_cb)? */
bool gw_conn_authenticated(const struct gw_conn *c);

/* The owner's admission slot of an unauthenticated connection (peerlimit.h); NULL otherwise. */
struct gw_peerlimit_slot **gw_conn_slot(struct gw_conn *c);

/* The owner's node in its queue of unauthenticated connections (preauthq.h). */
struct gw_preauthq_node *gw_conn_preauth_node(struct gw_conn *c);

/* True when the connection completed its TLS handshake and its client certificate is revoked by
 * t's current CRL (reloaded after the handshake). */
bool gw_conn_revoked(const struct gw_conn *c, const struct gw_tls *t);

/* Peer address "ip:port" for logs. */
const char *gw_conn_peer(const struct gw_conn *c);

/* Intrusive list links for the owner's registry. */
struct gw_conn **gw_conn_next(struct gw_conn *c);
struct gw_conn **gw_conn_prev(struct gw_conn *c);

#endif
