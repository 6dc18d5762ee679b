/* tls.h: the server's TLS context (the only module that includes OpenSSL's TLS headers).
 * Policy: TLS 1.2 minimum (1.3 preferred), ECDHE with AES-GCM or ChaCha20-Poly1305 only, ALPN
 * must select "h2" (a client offering no h2 fails the handshake), client certificates are
 * required and verified against tls_client_ca, and the CRL in tls_crl (when configured) is
 * checked for every certificate of the chain. Session resumption is off, so every connection
 * is verified against the current CRL. */
#ifndef GW_TLS_H
#define GW_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

/* The most application data one TLS record carries. */
#define GW_TLS_RECORD_MAX 16384u

struct ssl_st;
struct gw_config;
struct gw_peer;
struct gw_tls;

/* Builds the context from cfg (reads tls_cert, tls_key, tls_client_ca, tls_crl). Returns NULL
 * on failure with one line in err naming the file and the problem. Free with gw_tls_free. */
struct gw_tls *gw_tls_new(const struct gw_config *cfg, char *err, size_t errlen);
void gw_tls_free(struct gw_tls *t);

/* A new server-side SSL for one connection, or NULL. The caller owns it (gw_tls_ssl_free), until
 * it hands it to a bufferevent created with BEV_OPT_CLOSE_ON_FREE, which then frees it. */
struct ssl_st *gw_tls_ssl_new(struct gw_tls *t);
void gw_tls_ssl_free(struct ssl_st *ssl);

/* What the peer's post-handshake messages are told to (gw_tls_watch_key_updates). */
typedef void (*gw_tls_key_update_cb)(void *arg);
struct gw_tls_watch {
    gw_tls_key_update_cb key_update;
    void *arg;
    unsigned hellos; /* ClientHellos seen (set 0 with the rest) */
};
/* Calls w->key_update(w->arg) for every post-handshake message the peer of ssl sends that costs
 * the connection work and that no well-behaved peer sends unasked, once OpenSSL has read it: a
 * TLS 1.3 KeyUpdate, and a TLS 1.2 renegotiation attempt (a HelloRequest, or a ClientHello past
 * the first two: the second answers a HelloRetryRequest), which OpenSSL refuses
 * (SSL_OP_NO_RENEGOTIATION) with a warning alert each, carrying on, and of which one record holds
 * thousands. Called from inside a read of the bufferevent that owns ssl, so the callback must
 * neither free the connection nor use the bufferevent (it counts, and schedules the rest on the
 * loop). w is borrowed: it must outlive ssl, or be taken back first with w NULL (no more
 * calls). */
void gw_tls_watch_key_updates(struct ssl_st *ssl, struct gw_tls_watch *w);

/* Encrypts and sends up to GW_TLS_RECORD_MAX bytes of data directly (one record, one write(2)),
 * for an established connection whose bufferevent holds no output. Returns the bytes sent, or 0
 * when the socket would block or the write failed: then hand the same bytes to the bufferevent,
 * which retries them and reports any error. */
int gw_tls_write(struct ssl_st *ssl, const uint8_t *data, size_t len);
/* With read-ahead, whole records can wait in OpenSSL's buffer after the bufferevent stopped
 * reading and the socket is drained (no readiness event would come for them). Decrypts up to len
 * bytes of them into buf. Returns the bytes read, 0 when no whole record waits, GW_EIO after the
 * peer's close_notify, or GW_EPROTO on a TLS error (its code in *err, for
 * gw_tls_error_string). */
int gw_tls_read_buffered(struct ssl_st *ssl, uint8_t *buf, size_t len, unsigned long *err);
/* True when OpenSSL holds received bytes not yet read (whole records or part of one). */
bool gw_tls_has_buffered(const struct ssl_st *ssl);

/* True when the completed handshake negotiated ALPN "h2". */
bool gw_tls_alpn_is_h2(const struct ssl_st *ssl);

/* Fills out's certificate fields from the verified peer certificate: subject CN, OU, L (each
 * single-valued, 1..n characters of [A-Za-z0-9_.-], "" when OU or L is absent) and the SHA-256
 * fingerprint. Returns 0 with out->cert set, GW_EAUTH when there is no verified certificate,
 * CN is missing, or a field is repeated, too long or has other characters, or GW_ENOMEM when
 * the fingerprint cannot be computed. */
int gw_tls_peer_cert(const struct ssl_st *ssl, struct gw_peer *out) GW_MUST_CHECK;

/* ---- client side (the forwarder's gRPC client, gclient.c) ----
 * The same protocol policy; the server's chain must end in `ca` and its certificate name the
 * server name given to gw_tls_client_ssl_new (DNS SAN, or IP SAN for an address); the client
 * presents cert/key; ALPN offers only "h2"; with crl (PEM, NULL or "" for none) every certificate
 * of the server's chain is checked against it. Returns NULL with one line in err naming the
 * file. */
struct gw_tls *gw_tls_client_new(const char *ca, const char *cert, const char *key, const char *crl,
                                 char *err, size_t errlen);
/* A new client-side SSL for one connection to server_name (SNI unless an IP address, and the
 * name checked), or NULL. Ownership as gw_tls_ssl_new. */
struct ssl_st *gw_tls_client_ssl_new(struct gw_tls *t, const char *server_name);

/* "TLSv1.3" etc., for logs. */
const char *gw_tls_version(const struct ssl_st *ssl);

/* Describes an OpenSSL error code (e.g. from bufferevent_get_openssl_error) for logs; 0 gives
 * "unknown". Writes a NUL-terminated string into buf. */
void gw_tls_error_string(unsigned long e, char *buf, size_t len);

/* Why the peer's certificate failed verification ("certificate revoked", "unable to get local
 * issuer certificate", ...), or NULL when verification did not fail. For logs. */
const char *gw_tls_verify_error(const struct ssl_st *ssl);

/* True when e only says the peer closed TCP without a TLS close_notify: routine for gRPC clients
 * that drop a finished connection, so not worth an info-level line. */
bool gw_tls_error_is_eof(unsigned long e);

/* Metrics: seconds until the server certificate expires, and until the earliest nextUpdate of
 * the loaded CRLs (negative once past; INT64_MIN when unknown, e.g. a CRL without nextUpdate). */
struct gw_tls_expiry {
    int64_t cert_s;
    bool has_crl;
    int64_t crl_s;
};
void gw_tls_expiry(const struct gw_tls *t, struct gw_tls_expiry *out);

/* Reload: `fresh` (a context just made by gw_tls_new from the files as they are now) replaces t's
 * context for every handshake from now on, and is consumed; connections already established keep
 * the context they were made with until they close. */
void gw_tls_swap(struct gw_tls *t, struct gw_tls *fresh);

/* The metrics listener's context (app/metrics.c): gw_tls_new's files, protocol policy and CRL, but
 * ALPN "http/1.1" (or none) instead of h2. A client certificate is required, as there: a peer
 * without one, or with one that does not verify, fails the handshake (quietly: no request, no log
 * line), so only a verified certificate's holder gets as far as a request and its refusal. */
struct gw_tls *gw_tls_http_new(const struct gw_config *cfg, char *err, size_t errlen);
/* A server-side SSL of that context for one connection of a plain libevent bufferevent (no
 * read-ahead). Ownership as gw_tls_ssl_new. */
struct ssl_st *gw_tls_http_ssl_new(struct gw_tls *t);

/* True when the verified certificate of an established connection, or a CA certificate of the
 * chain its handshake verified, is listed by a CRL of the current store (one loaded after the
 * connection's handshake). */
bool gw_tls_peer_revoked(const struct gw_tls *t, const struct ssl_st *ssl);

#endif
