/* conn.c: one connection's lifecycle: accept -> TLS handshake (ALPN h2, client certificate ->
 * principal) -> HTTP/2 session -> close. Owns the bufferevent (which owns the SSL and the fd),
 * the h2 session, a handshake timer (until the client preface) and an idle timer (first a quiet
 * second, after which the session gives back its zero pages; then the idle deadline; after an
 * idle GOAWAY the linger deadline). Invariants: the connection is torn down only from its own
 * libevent callbacks or by its owner, never from code the h2 session calls; reading stops while
 * the output to the peer is backed up. Output the session queues during one loop pass is written
 * once, at the end of that pass (flush_ev): one TLS record and one write(2) for all of it, made
 * directly while the socket takes it, through the bufferevent (which waits for writability and
 * keeps the order) once it does not. The peer's TLS KeyUpdate messages are counted as OpenSSL
 * reads them and charged to the session's budget (h2_calm.h) from the loop, in the same pass. */
#include "conn.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>

#include "alloc.h"
#include "clock.h"
#include "config.h"
#include "h2.h"
#include "log.h"
#include "preauthq.h"
#include "tls.h"

#define READ_HIGH_WATERMARK (256u * 1024u)
#define LINGER_MS 2000u
#define LINGER_READ_MAX (64u * 1024u) /* bytes discarded after a refused handshake */
/* The most one read from the socket (or from OpenSSL) asks for: libevent reserves a chain of the
 * next power of two above it plus its header in the input buffer before it reads, and a read that
 * finds no record leaves that chain there, empty, until the next data: 16 KiB (libevent's
 * default) made it 32 KiB per idle connection (issue 10). This keeps it within one 4 KiB block;
 * a 16 KiB record is then copied out in four reads of one loop pass. */
#define READ_CHUNK (4096u - 256u)
/* A connection with no input for this long gives back the session's pages that hold only zeros
 * (gw_h2_release_idle, issue 10): the page faults that bring them back on the next call cost
 * 50-100 us on a virtual machine, too much for every idle moment of a busy connection. */
#define QUIET_MS 1000u

struct gw_conn {
    const struct gw_config *cfg;
    struct event_base *base;
    const struct gw_h2_upcalls *up; /* the owner's */
    struct gw_h2_pool *pool;        /* the owner's: the gateway's response memory */
    struct gw_conn_lines *lines;    /* the owner's: the gateway's log budgets, or NULL */
    struct gw_budget *cert_mem;     /* the owner's: the certificate's request memory, or NULL */
    struct gw_h2_pool *cert_resp;   /* the owner's: the certificate's response memory, or NULL */
    bool tls;
    struct bufferevent *bev;
    struct gw_h2 *h2;
    struct event *handshake_ev; /* handshake deadline; freed once the preface is in (issue 10) */
    struct event *idle_ev;      /* quiet, then idle deadline; the linger deadline after GOAWAY */
    struct event *flush_ev;     /* writes `pending`, activated by io_send; first charges the
                                 * KeyUpdates counted (key_update_cb) */
    struct event *linger_ev;    /* after a refused handshake: reads and discards */
    size_t lingered;            /* bytes discarded so far */
    struct evbuffer *pending;   /* session output not yet written or handed to the bufferevent;
                                 * NULL while there is none (an idle connection holds no buffer) */
    struct ssl_st *ssl;         /* owned by the bufferevent; NULL for plaintext */
    struct gw_tls_watch watch;  /* the peer's KeyUpdates, told to key_update_cb */
    uint32_t key_updates;       /* ... received and not yet charged to the session */
    struct gw_peer peer;
    struct gw_log_ctx log;
    gw_conn_closed_cb closed_cb;
    gw_conn_auth_cb auth_cb;
    void *cb_arg;
    struct gw_peerlimit_slot *slot;  /* the owner's, while unauthenticated */
    struct gw_preauthq_node preauth; /* the owner's, likewise */
    bool closing;
    bool auth_asked;     /* gw_conn_auth_cb has been called */
    bool authed;         /* ... and did not refuse the connection */
    bool lingering;      /* refused handshake: FIN sent, discarding input until LINGER_MS */
    bool handshake_done; /* client preface received: handshake_ev freed */
    bool terminating;    /* idle GOAWAY sent: idle_ev is the linger deadline */
    bool quiet;          /* QUIET_MS without input passed: idle_ev is the idle deadline */
    struct gw_conn *next, *prev;
};

static void set_timer(struct event *ev, uint32_t ms)
{
    struct timeval tv = gw_clock_tv(ms);

    (void)evtimer_add(ev, &tv);
}

/* May a line about the connection at level be written now? False below the log's level, and past
 * the gateway's budget of connection lines (which counts what it refused: the owner reports it).
 * Ask only just before writing the line. */
static bool conn_log_ok(const struct gw_conn *c, enum gw_log_level level)
{
    return level >= gw_log_level &&
           (c->lines == NULL ||
            gw_lines_take(NULL, c->log.principal != NULL ? &c->lines->known : &c->lines->conn,
                          gw_clock_ms()));
}

/* Reports the connection as authenticated, once; the owner may refuse it (conn.h). */
static void authenticated(struct gw_conn *c)
{
    if (c->auth_asked || c->closing)
        return;
    c->auth_asked = true;
    c->peer.over_cert_limit = c->auth_cb != NULL ? c->auth_cb(c->cb_arg, c) : 0;
    c->authed = c->peer.over_cert_limit == 0;
}

/* Reports the connection as finished; the owner frees it. */
static void conn_close(struct gw_conn *c, const char *why)
{
    if (c->closing)
        return;
    c->closing = true;
    GW_LOG(GW_LOG_DEBUG, "conn", &c->log, "connection closed: %s", why);
    bufferevent_disable(c->bev, EV_READ | EV_WRITE);
    c->closed_cb(c->cb_arg, c);
}

/* Never writes: the h2 session may call this from inside a completion. */
static int io_send(void *arg, const uint8_t *data, size_t len)
{
    struct gw_conn *c = arg;

    if (c->pending == NULL && (c->pending = evbuffer_new()) == NULL)
        return GW_ENOMEM;
    if (evbuffer_add(c->pending, data, len) != 0)
        return GW_ENOMEM;
    event_active(c->flush_ev, EV_TIMEOUT, 0);
    return 0;
}

static size_t io_out_pending(void *arg)
{
    struct gw_conn *c = arg;

    return (c->pending != NULL ? evbuffer_get_length(c->pending) : 0) +
           evbuffer_get_length(bufferevent_get_output(c->bev));
}

/* Closes the connection when the session is over and its last bytes have left. Returns true
 * when it closed (c may then be freed). */
static bool maybe_close(struct gw_conn *c)
{
    if (c->h2 != NULL && gw_h2_want_io(c->h2))
        return false;
    if (c->h2 != NULL && io_out_pending(c) > 0)
        return false;
    conn_close(c, "session finished");
    return true;
}

static int start_session(struct gw_conn *c)
{
    struct gw_h2_params p = {
        .cfg = c->cfg,
        .base = c->base,
        .peer = &c->peer,
        .io = {io_send, io_out_pending, c},
        .up = *c->up,
        .pool = c->pool,
        .lines = c->lines != NULL ? &c->lines->stream : NULL,
        .cert_mem = c->cert_mem,
        .cert_pool = c->cert_resp,
    };

    c->h2 = gw_h2_new(&p);
    if (c->h2 == NULL)
        return GW_ENOMEM;
    return gw_h2_flush(c->h2);
}

/* A KeyUpdate read by OpenSSL (from inside the bufferevent's read): counted, and charged to the
 * session's budget by flush_cb at the end of this loop pass. */
static void key_update_cb(void *arg)
{
    struct gw_conn *c = arg;

    if (c->key_updates < UINT32_MAX)
        c->key_updates++;
    event_active(c->flush_ev, EV_TIMEOUT, 0);
}

/* Charges the KeyUpdates counted so far to the session (h2.h); over its budget the session
 * queues GOAWAY ENHANCE_YOUR_CALM and the connection closes once that has left. Those counted
 * before the session started are charged when it does. */
static void charge_key_updates(struct gw_conn *c)
{
    uint32_t n = c->key_updates;

    if (n == 0 || c->h2 == NULL)
        return;
    c->key_updates = 0;
    (void)gw_h2_key_updates(c->h2, n);
}

/* Moves records left in OpenSSL's read-ahead buffer into the input buffer. Returns 1 when it
 * moved some, 0 when none wait, -1 when it closed the connection (close_notify or a TLS error;
 * c is then freed). */
static int read_buffered(struct gw_conn *c)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    struct evbuffer_iovec v;
    unsigned long e = 0;
    char reason[256];
    int n;

    if (c->ssl == NULL || !gw_tls_has_buffered(c->ssl) ||
        evbuffer_reserve_space(in, GW_TLS_RECORD_MAX, &v, 1) < 1)
        return 0;
    n = gw_tls_read_buffered(c->ssl, v.iov_base, v.iov_len, &e);
    if (n <= 0) {
        if (n == GW_EPROTO && conn_log_ok(c, GW_LOG_INFO)) {
            gw_tls_error_string(e, reason, sizeof(reason));
            gw_log_write(GW_LOG_INFO, "conn", &c->log, "tls error: %s", reason);
        }
        if (n == 0)
            return 0;
        conn_close(c, n == GW_EIO ? "peer closed" : "socket error");
        return -1;
    }
    v.iov_len = (size_t)n;
    return evbuffer_commit_space(in, &v, 1) == 0 ? 1 : 0;
}

static void process_input(struct gw_conn *c)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    struct evbuffer_iovec v;
    int r;

    if (c->h2 == NULL || c->closing)
        return;
    for (;;) {
        while (evbuffer_get_length(in) > 0) {
            if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
                break;
            if (gw_h2_recv(c->h2, v.iov_base, v.iov_len) != 0) {
                conn_close(c, "protocol error");
                return;
            }
            evbuffer_drain(in, v.iov_len);
            if (io_out_pending(c) >= GW_H2_OUT_HIGH) {
                bufferevent_disable(c->bev, EV_READ); /* resumed by output_done */
                break;
            }
        }
        if (!(bufferevent_get_enabled(c->bev) & EV_READ))
            break;
        r = read_buffered(c);
        if (r < 0)
            return; /* c is gone */
        if (r == 0)
            break;
    }
    if (!c->handshake_done && gw_h2_preface_received(c->h2)) {
        c->handshake_done = true;
        authenticated(c); /* plaintext: the preface is all there is; TLS: already done */
        if (c->authed) {
            event_free(c->handshake_ev); /* an idle connection holds one timer, not two */
            c->handshake_ev = NULL;
        } /* refused: handshake_ev is its end */
    }
    if (!c->terminating) {
        c->quiet = false;
        set_timer(c->idle_ev,
                  c->cfg->idle_timeout_ms > QUIET_MS ? QUIET_MS : c->cfg->idle_timeout_ms);
    }
    (void)maybe_close(c);
}

static void read_cb(struct bufferevent *bev, void *arg)
{
    (void)bev;
    process_input(arg);
}

/* Output left: produce more, close a finished session, resume reading. */
static void output_done(struct gw_conn *c)
{
    if (c->h2 == NULL || c->closing)
        return;
    (void)gw_h2_flush(c->h2);
    if (maybe_close(c))
        return;
    if (io_out_pending(c) < GW_H2_OUT_HIGH && !(bufferevent_get_enabled(c->bev) & EV_READ)) {
        bufferevent_enable(c->bev, EV_READ);
        process_input(c);
    }
}

static void write_cb(struct bufferevent *bev, void *arg)
{
    (void)bev;
    output_done(arg);
}

static void flush_cb(evutil_socket_t fd, short what, void *arg)
{
    struct gw_conn *c = arg;
    struct evbuffer *out = bufferevent_get_output(c->bev);
    size_t len;

    (void)fd;
    (void)what;
    if (c->closing)
        return;
    charge_key_updates(c);
    while (c->pending != NULL && (len = evbuffer_get_length(c->pending)) > 0) {
        int n = 0;

        if (c->ssl != NULL && evbuffer_get_length(out) == 0) {
            if (len > GW_TLS_RECORD_MAX)
                len = GW_TLS_RECORD_MAX;
            n = gw_tls_write(c->ssl, evbuffer_pullup(c->pending, (ev_ssize_t)len), len);
        }
        if (n <= 0) {
            if (evbuffer_add_buffer(out, c->pending) != 0) {
                conn_close(c, "out of memory");
                return;
            }
            break;
        }
        evbuffer_drain(c->pending, (size_t)n);
    }
    if (c->pending != NULL && evbuffer_get_length(c->pending) == 0) {
        evbuffer_free(c->pending); /* all written or handed over */
        c->pending = NULL;
    }
    if (evbuffer_get_length(out) == 0)
        output_done(c); /* otherwise write_cb, once the bufferevent has written it */
}

static void on_connected(struct gw_conn *c)
{
    struct ssl_st *ssl = bufferevent_openssl_get_ssl(c->bev);
    int rc;

    if (!gw_tls_alpn_is_h2(ssl)) {
        if (conn_log_ok(c, GW_LOG_INFO))
            gw_log_write(GW_LOG_INFO, "conn", &c->log, "refused: ALPN h2 not negotiated");
        conn_close(c, "no h2");
        return;
    }
    c->ssl = ssl;
    rc = gw_tls_peer_cert(ssl, &c->peer);
    if (rc != 0 && rc != GW_EAUTH) {
        conn_close(c, "cannot read the client certificate");
        return;
    }
    if (rc != 0) {
        /* Verified, so a client of ours that should be told why: it stays unauthenticated,
         * every call answered UNAUTHENTICATED (rpc/call.c), until preauth_timeout_ms. */
        c->peer.bad_subject = true;
        c->auth_asked = true; /* never authenticated: no principal to count */
        if (conn_log_ok(c, GW_LOG_WARN))
            gw_log_write(GW_LOG_WARN, "conn", &c->log,
                         "refused: client certificate subject lacks a valid CN, or has a repeated "
                         "or malformed CN, OU or L: every call is refused until the connection "
                         "closes");
    } else {
        c->log.principal = c->peer.cert_cn;
        authenticated(c);
    }
    /* Now for the HTTP/2 preface; a refused connection ends at this deadline whatever it does
     * (it holds a pre-authentication slot, and gets the time of one). */
    set_timer(c->handshake_ev,
              c->authed ? c->cfg->handshake_timeout_ms : c->cfg->preauth_timeout_ms);
    if (c->peer.over_cert_limit != 0)
        GW_LOG(GW_LOG_DEBUG, "conn", &c->log,
               "refused: the certificate holds max_connections_per_certificate (%u) already",
               c->peer.over_cert_limit);
    if (!c->peer.bad_subject && conn_log_ok(c, GW_LOG_INFO))
        gw_log_write(GW_LOG_INFO, "conn", &c->log, "tls established: %s, OU %s",
                     gw_tls_version(ssl), c->peer.cert_ou);
    if (start_session(c) != 0) {
        conn_close(c, "cannot start session");
        return;
    }
    charge_key_updates(c);
    process_input(c);
}

static void linger_cb(evutil_socket_t fd, short what, void *arg)
{
    struct gw_conn *c = arg;
    char buf[4096];

    (void)what;
    for (;;) {
        ssize_t n = recv(fd, buf, sizeof(buf), 0);
        if (n > 0) {
            c->lingered += (size_t)n;
            if (c->lingered > LINGER_READ_MAX)
                break;
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
            return;
        break; /* the client closed too, or the socket failed */
    }
    conn_close(c, "refused handshake");
}

/* A refused handshake: OpenSSL has written its alert (certificate_required, unknown_ca, ...) to
 * the socket. Closing now, with the client's next flight unread, makes the kernel answer RST,
 * and a client that writes before it reads (every HTTP/2 client after a TLS 1.3 handshake) sees
 * a reset instead of the alert. So: FIN after the alert, then read and discard what the client
 * still sends, at most LINGER_READ_MAX bytes for at most LINGER_MS, then close. The connection
 * keeps its pre-authentication slot meanwhile: lingering is bounded by the same caps. */
static void start_linger(struct gw_conn *c)
{
    evutil_socket_t fd = bufferevent_getfd(c->bev);

    bufferevent_disable(c->bev, EV_READ | EV_WRITE);
    if (fd < 0 || shutdown(fd, SHUT_WR) != 0 ||
        (c->linger_ev = event_new(c->base, fd, EV_READ | EV_PERSIST, linger_cb, c)) == NULL ||
        event_add(c->linger_ev, NULL) != 0) {
        conn_close(c, "refused handshake");
        return;
    }
    c->lingering = true;
    set_timer(c->handshake_ev, LINGER_MS);
}

static void event_cb(struct bufferevent *bev, short events, void *arg)
{
    struct gw_conn *c = arg;
    char reason[256];

    if (c->closing)
        return;
    if (events & BEV_EVENT_CONNECTED) {
        on_connected(c);
        return;
    }
    if (events & BEV_EVENT_ERROR) {
        unsigned long e = c->tls ? bufferevent_get_openssl_error(bev) : 0;
        if (e != 0) {
            const char *why =
                c->handshake_done ? NULL : gw_tls_verify_error(bufferevent_openssl_get_ssl(bev));
            enum gw_log_level level = why == NULL && c->handshake_done && gw_tls_error_is_eof(e)
                                          ? GW_LOG_DEBUG
                                          : GW_LOG_INFO;
            if (conn_log_ok(c, level)) {
                gw_tls_error_string(e, reason, sizeof(reason));
                if (why != NULL)
                    gw_log_write(level, "conn", &c->log,
                                 "tls handshake refused: client certificate: %s (%s)", why, reason);
                else
                    gw_log_write(level, "conn", &c->log, "tls error: %s", reason);
            }
        }
        if (c->tls && c->ssl == NULL && e != 0) {
            start_linger(c); /* the handshake failed: let the alert be read */
            return;
        }
        conn_close(c, "socket error");
        return;
    }
    if (events & BEV_EVENT_TIMEOUT) {
        if (conn_log_ok(c, GW_LOG_INFO))
            gw_log_write(GW_LOG_INFO, "conn", &c->log, "peer stopped reading: closing");
        conn_close(c, "write timeout");
        return;
    }
    if (events & BEV_EVENT_EOF)
        conn_close(c, "peer closed");
}

static void handshake_cb(evutil_socket_t fd, short what, void *arg)
{
    struct gw_conn *c = arg;

    (void)fd;
    (void)what;
    if (!c->lingering && (c->authed ? !c->handshake_done : !c->auth_asked) &&
        conn_log_ok(c, GW_LOG_INFO))
        gw_log_write(GW_LOG_INFO, "conn", &c->log, "handshake timeout");
    conn_close(c, "handshake, linger or refusal timeout");
}

static void idle_cb(evutil_socket_t fd, short what, void *arg)
{
    struct gw_conn *c = arg;

    (void)fd;
    (void)what;
    if (c->h2 == NULL || c->closing)
        return;
    if (c->terminating) {
        conn_close(c, "linger timeout");
        return;
    }
    if (!c->quiet && c->cfg->idle_timeout_ms > QUIET_MS) {
        c->quiet = true;
        gw_h2_release_idle(c->h2);
        set_timer(c->idle_ev, c->cfg->idle_timeout_ms - QUIET_MS);
        return;
    }
    if (gw_h2_live_streams(c->h2) > 0) {
        set_timer(c->idle_ev, c->cfg->idle_timeout_ms);
        return;
    }
    GW_LOG(GW_LOG_DEBUG, "conn", &c->log, "idle timeout");
    c->terminating = true;
    gw_h2_terminate(c->h2);
    set_timer(c->idle_ev, LINGER_MS);
    (void)maybe_close(c);
}

static void format_peer(const struct sockaddr *sa, char *out, size_t outlen)
{
    char ip[INET6_ADDRSTRLEN] = "?";
    unsigned port = 0;

    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
        evutil_inet_ntop(AF_INET, &s4->sin_addr, ip, sizeof(ip));
        port = ntohs(s4->sin_port);
        snprintf(out, outlen, "%s:%u", ip, port);
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
        evutil_inet_ntop(AF_INET6, &s6->sin6_addr, ip, sizeof(ip));
        port = ntohs(s6->sin6_port);
        snprintf(out, outlen, "[%s]:%u", ip, port);
    } else {
        snprintf(out, outlen, "unknown");
    }
}

struct gw_conn *gw_conn_new(const struct gw_config *cfg, struct event_base *base,
                            struct gw_tls *tls, const struct gw_h2_upcalls *up,
                            struct gw_h2_pool *pool, struct gw_conn_lines *lines,
                            evutil_socket_t fd, const struct sockaddr *sa, int salen,
                            gw_conn_closed_cb cb, void *cb_arg)
{
    struct gw_conn *c = NULL;
    struct ssl_st *ssl = NULL;
    int opts = BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS;

    (void)salen;
    c = gw_calloc(1, sizeof(*c));
    if (c == NULL)
        goto fail;
    c->cfg = cfg;
    c->base = base;
    c->up = up;
    c->pool = pool;
    c->lines = lines;
    c->tls = tls != NULL;
    c->peer.tls = tls != NULL;
    c->closed_cb = cb;
    c->cb_arg = cb_arg;
    format_peer(sa, c->peer.addr, sizeof(c->peer.addr));
    c->log.peer = c->peer.addr;
    c->handshake_ev = evtimer_new(base, handshake_cb, c);
    c->idle_ev = evtimer_new(base, idle_cb, c);
    c->flush_ev = event_new(base, -1, 0, flush_cb, c);
    if (c->handshake_ev == NULL || c->idle_ev == NULL || c->flush_ev == NULL)
        goto fail;
    if (tls != NULL) {
        ssl = gw_tls_ssl_new(tls);
        if (ssl == NULL)
            goto fail;
        c->watch = (struct gw_tls_watch){.key_update = key_update_cb, .arg = c};
        gw_tls_watch_key_updates(ssl, &c->watch);
        c->bev = bufferevent_openssl_socket_new(base, fd, ssl, BUFFEREVENT_SSL_ACCEPTING, opts);
        if (c->bev == NULL)
            goto fail;
        ssl = NULL; /* owned by the bufferevent now, and so is fd */
        fd = -1;
        bufferevent_openssl_set_allow_dirty_shutdown(c->bev, 1);
    } else {
        c->bev = bufferevent_socket_new(base, fd, opts);
        if (c->bev == NULL)
            goto fail;
        fd = -1;
        /* Only the loopback-only listener is plaintext: its callers are not authenticated
         * (peer.cert stays false). */
    }
    bufferevent_setcb(c->bev, read_cb, write_cb, event_cb, c);
    bufferevent_setwatermark(c->bev, EV_READ, 0, READ_HIGH_WATERMARK);
    if (bufferevent_set_max_single_read(c->bev, READ_CHUNK) != 0)
        goto fail;
    /* A peer that stops reading our output is dropped after stream_write_timeout_ms without
     * progress. */
    {
        struct timeval wt = gw_clock_tv(c->cfg->stream_write_timeout_ms);
        (void)bufferevent_set_timeouts(c->bev, NULL, &wt);
    }
    if (bufferevent_enable(c->bev, EV_READ | EV_WRITE) != 0)
        goto fail;
    /* Unauthenticated connections cost an attacker nothing: they get the shorter time. */
    set_timer(c->handshake_ev,
              tls != NULL && c->cfg->preauth_timeout_ms < c->cfg->handshake_timeout_ms
                  ? c->cfg->preauth_timeout_ms
                  : c->cfg->handshake_timeout_ms);
    if (tls == NULL && start_session(c) != 0)
        goto fail;
    GW_LOG(GW_LOG_DEBUG, "conn", &c->log, "connection accepted (%s)", tls ? "tls" : "plaintext");
    return c;
fail:
    if (ssl != NULL)
        gw_tls_ssl_free(ssl);
    if (fd >= 0)
        evutil_closesocket(fd);
    gw_conn_free(c);
    return NULL;
}

void gw_conn_free(struct gw_conn *c)
{
    if (c == NULL)
        return;
    gw_h2_free(c->h2); /* cancels live calls */
    if (c->linger_ev != NULL)
        event_free(c->linger_ev); /* before the bufferevent closes its fd */
    if (c->tls && c->bev != NULL) /* libevent may free the SSL after c */
        gw_tls_watch_key_updates(bufferevent_openssl_get_ssl(c->bev), NULL);
    if (c->bev != NULL)
        bufferevent_free(c->bev);
    if (c->handshake_ev != NULL)
        event_free(c->handshake_ev);
    if (c->idle_ev != NULL)
        event_free(c->idle_ev);
    if (c->flush_ev != NULL)
        event_free(c->flush_ev);
    if (c->pending != NULL)
        evbuffer_free(c->pending);
    gw_free(c);
}

void gw_conn_drain(struct gw_conn *c)
{
    if (c->closing)
        return;
    if (c->h2 == NULL) {
        conn_close(c, "draining before the session started");
        return;
    }
    gw_h2_goaway(c->h2);
    (void)maybe_close(c);
}

void gw_conn_set_auth_cb(struct gw_conn *c, gw_conn_auth_cb cb)
{
    c->auth_cb = cb;
}

void gw_conn_set_cert_budgets(struct gw_conn *c, struct gw_budget *mem, struct gw_h2_pool *resp)
{
    c->cert_mem = mem;
    c->cert_resp = resp;
}

bool gw_conn_authenticated(const struct gw_conn *c)
{
    return c->authed;
}

struct gw_peerlimit_slot **gw_conn_slot(struct gw_conn *c)
{
    return &c->slot;
}

struct gw_preauthq_node *gw_conn_preauth_node(struct gw_conn *c)
{
    return &c->preauth;
}

const struct gw_peer *gw_conn_peer_info(const struct gw_conn *c)
{
    return &c->peer;
}

const char *gw_conn_peer(const struct gw_conn *c)
{
    return c->peer.addr;
}

struct gw_conn **gw_conn_next(struct gw_conn *c)
{
    return &c->next;
}

struct gw_conn **gw_conn_prev(struct gw_conn *c)
{
    return &c->prev;
}

bool gw_conn_revoked(const struct gw_conn *c, const struct gw_tls *t)
{
    return c->tls && c->handshake_done && t != NULL &&
           gw_tls_peer_revoked(t, bufferevent_openssl_get_ssl(c->bev));
}
