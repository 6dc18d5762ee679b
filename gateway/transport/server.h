/* server.h: the listeners and the connection registry. The mTLS listener serves cfg->listen; a
 * plaintext HTTP/2 (prior knowledge) listener exists only when cfg->insecure_loopback_only is
 * true and cfg->insecure_listen is a loopback address (anything else refuses to start).
 * Connections past cfg->max_connections, or past the per-address limits on unauthenticated
 * connections (max_preauth_per_address and accept_rate_per_address), are closed at once; a new
 * connection within its address's limits that finds max_preauth_connections (or max_connections)
 * reached closes the oldest unauthenticated connection instead, when there is one. */
#ifndef GW_SERVER_H
#define GW_SERVER_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

struct event_base;
struct gw_config;
struct gw_h2_upcalls;
struct gw_server;
struct gw_tls;

/* Binds the listeners (this may resolve host names: call before the loop runs). cfg and tls
 * are borrowed and must outlive the server; up (copied) is what each connection's HTTP/2
 * session does with its streams. Returns NULL with one line in err on failure. */
struct gw_server *gw_server_new(const struct gw_config *cfg, struct event_base *base,
                                struct gw_tls *tls, const struct gw_h2_upcalls *up, char *err,
                                size_t errlen);

/* Closes the listeners and every connection at once (live calls are cancelled). NULL-safe. */
void gw_server_free(struct gw_server *s);

typedef void (*gw_server_drained_cb)(void *arg);

/* Graceful drain: stops accepting, sends GOAWAY on every connection and lets in-flight calls
 * finish. done(arg) runs once, from the event loop, when no connection is left or when
 * drain_timeout_ms has passed (remaining connections are then closed, cancelling their calls). */
void gw_server_drain(struct gw_server *s, gw_server_drained_cb done, void *arg);

/* The bound address of the TLS (insecure = 0) or plaintext (insecure = 1) listener as
 * "host:port", or "" when that listener does not exist. */
void gw_server_address(const struct gw_server *s, int insecure, char *out, size_t outlen);

/* Open connections. */
size_t gw_server_connections(const struct gw_server *s);

/* Open connections not yet authenticated (TLS with a verified client certificate not done, or
 * refused over max_connections_per_certificate). */
size_t gw_server_preauth(const struct gw_server *s);
/* Response bytes queued on all connections' streams now, the most ever queued, and the limit
 * ([server] response_memory; h2.h, struct gw_h2_pool). */
void gw_server_response_memory(const struct gw_server *s, size_t *used, size_t *peak,
                               size_t *limit);
/* Request memory in flight per client certificate (certlimit.h): the most one certificate's
 * connections hold now, the most one ever held, and the limit ([server]
 * request_memory_per_certificate). */
void gw_server_request_memory_per_certificate(const struct gw_server *s, size_t *most, size_t *peak,
                                              size_t *limit);
/* Response memory per client certificate (certlimit.h): the most one certificate's connections
 * have queued now, the most one ever had, and the limit ([server]
 * response_memory_per_certificate). */
void gw_server_response_memory_per_certificate(const struct gw_server *s, size_t *most,
                                               size_t *peak, size_t *limit);

/* Connections refused, by the limit that refused them: at accept, or (the last two) once their
 * certificate is known. MAX_PREAUTH refuses none since it evicts (gw_server_evicted); it names
 * that limit. */
enum gw_server_refusal {
    GW_SERVER_REFUSED_MAX_CONNECTIONS,
    GW_SERVER_REFUSED_MAX_PREAUTH,
    GW_SERVER_REFUSED_RATE_PER_ADDRESS,
    GW_SERVER_REFUSED_PREAUTH_PER_ADDRESS,
    GW_SERVER_REFUSED_ADDRESS_TABLE_FULL,
    GW_SERVER_REFUSED_PER_CERTIFICATE, /* after the handshake: the connection answers refusals
                                        * until preauth_timeout_ms, then is closed */
    GW_SERVER_REFUSED_OUT_OF_MEMORY,   /* likewise, when it could not be counted */
    GW_SERVER_REFUSED_N
};
uint64_t gw_server_refused(const struct gw_server *s, enum gw_server_refusal r);
/* Log lines the gateway's budgets left out (conn.h, struct gw_conn_lines), ever: lines about
 * connections (their handshakes) and per-stream lines. */
void gw_server_lines_suppressed(const struct gw_server *s, uint64_t *conn, uint64_t *stream);
/* Accepts that failed for want of descriptors or memory (the listener then pauses:
 * acceptpause.h), ever. */
uint64_t gw_server_accept_paused(const struct gw_server *s);
/* Unauthenticated connections closed to make room for a new one, by the limit that was reached
 * (only GW_SERVER_REFUSED_MAX_PREAUTH and GW_SERVER_REFUSED_MAX_CONNECTIONS count any). */
uint64_t gw_server_evicted(const struct gw_server *s, enum gw_server_refusal r);
/* The limit's configuration key ("max_connections", ...), for metrics labels. */
const char *gw_server_refusal_name(enum gw_server_refusal r);

/* After a CRL reload (gw_tls_reload_crl): closes at once every connection whose client certificate
 * the new CRL revokes, cancelling its calls; returns how many. Not from inside a connection's
 * callbacks (from a signal or timer callback of the loop). */
size_t gw_server_drop_revoked(struct gw_server *s);

#endif
