/* server.c: listeners, the connection caps and registry, and the graceful drain. Owns the
 * evconnlisteners, every struct gw_conn (a doubly linked list), the queue of unauthenticated ones
 * (preauthq.h), the per-address admission table (peerlimit.h) and the count per certificate
 * (certlimit.h). Invariants: at most cfg->max_connections connections exist, of which at most
 * max_preauth are unauthenticated (the rest is kept for authenticated clients), at most
 * max_preauth_per_address from one address, admitted at most accept_rate_per_address per second
 * per address; at most max_connections_per_certificate authenticated ones of one client
 * certificate (certlimit.h: one more is refused after its handshake and stays unauthenticated,
 * so it holds a pre-authentication slot until it is closed), whose connections share its budgets
 * of request and response memory, and whose count (with it, at the last, the budgets) is given
 * back only after the connection is freed with its calls and streams, so nothing charged to a
 * budget, and no stream waiting on one, outlives it; the queue
 * holds exactly the registered connections not yet authenticated, oldest first, and each of them
 * one address slot, both given back exactly once (end_preauth); a new connection admitted by its
 * address while max_preauth (or max_connections) is reached closes the oldest unauthenticated
 * connection instead of being refused (free_conn, as any other close), so an attacker keeping the
 * caps full must open max_preauth connections within one handshake's time to starve it; the
 * plaintext listener binds only a loopback address and only when the config explicitly allows
 * it; the drain callback runs exactly once. */
#include "server.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include <event2/event.h>
#include <event2/listener.h>

#include "acceptpause.h"
#include "alloc.h"
#include "certlimit.h"
#include "clock.h"
#include "config.h"
#include "conn.h"
#include "h2.h"
#include "log.h"
#include "memwipe.h"
#include "peerlimit.h"
#include "preauthq.h"

/* How often the lines the gateway's log budgets left out are counted in the log (when any were). */
#define LINES_REPORT_MS 10000u

struct gw_server {
    const struct gw_config *cfg;
    struct event_base *base;
    struct gw_tls *tls;
    struct gw_h2_upcalls up;
    struct gw_h2_pool *pool; /* response memory of all connections (cfg->response_memory) */
    struct evconnlistener *tls_lev;
    struct evconnlistener *plain_lev;
    struct gw_acceptpause *tls_pause; /* the listeners' answer to EMFILE and its kin */
    struct gw_acceptpause *plain_pause;
    struct gw_conn_lines lines; /* the log budgets every connection shares (conn.h) */
    struct event *lines_ev;     /* reports what they left out, every LINES_REPORT_MS */
    struct gw_conn *conns;
    size_t nconns;
    struct gw_preauthq preauth; /* registered connections not yet authenticated, oldest first */
    size_t max_preauth;         /* cfg->max_preauth_connections, or a quarter of max_connections */
    struct gw_peerlimit *pl;
    struct gw_certlimit *cl; /* authenticated connections per certificate */
    bool draining;
    struct event *drain_ev; /* drain deadline */
    struct event *done_ev;  /* runs the done callback from the loop */
    struct event *scrub_ev; /* scrubs the stack from the loop after a connection closed */
    gw_server_drained_cb done;
    void *done_arg;
    bool done_called;
    uint64_t refused;
    uint64_t refused_by[GW_SERVER_REFUSED_N];
    uint64_t evicted;
    uint64_t evicted_by[GW_SERVER_REFUSED_N]; /* by the limit reached: max_preauth or max */
};

/* The connection no longer counts as unauthenticated (it authenticated, or it is gone). */
static void end_preauth(struct gw_server *s, struct gw_conn *c)
{
    struct gw_peerlimit_slot **slot = gw_conn_slot(c);

    gw_peerlimit_release(s->pl, *slot);
    *slot = NULL;
    gw_preauthq_remove(&s->preauth, gw_conn_preauth_node(c));
}

/* Unlinks c and frees it; then gives back its count of its certificate (certlimit.h), whose
 * budgets of request and response memory its calls and streams charged: only once they are
 * freed (gw_conn_free cancels them, each gives back what it held, and a waiting stream leaves
 * its queue), since the last release frees the budgets. */
static void free_conn(struct gw_server *s, struct gw_conn *c)
{
    struct gw_conn *next = *gw_conn_next(c), *prev = *gw_conn_prev(c);
    uint8_t fpr[GW_PEER_FPR_LEN];
    bool counted = false;

    if (!gw_conn_authenticated(c)) {
        end_preauth(s, c);
    } else {
        const struct gw_peer *peer = gw_conn_peer_info(c);
        if (peer->cert) {
            memcpy(fpr, peer->cert_sha256, sizeof(fpr));
            counted = true;
        }
    }
    if (prev)
        *gw_conn_next(prev) = next;
    else
        s->conns = next;
    if (next)
        *gw_conn_prev(next) = prev;
    s->nconns--;
    gw_conn_free(c);
    if (counted)
        gw_certlimit_release(s->cl, fpr);
}

static void check_drained(struct gw_server *s)
{
    if (s->draining && s->nconns == 0 && !s->done_called)
        event_active(s->done_ev, EV_TIMEOUT, 0);
}

static void conn_closed_cb(void *arg, struct gw_conn *c)
{
    struct gw_server *s = arg;

    free_conn(s, c);
    if (gw_memwipe_enabled())
        event_active(s->scrub_ev, EV_TIMEOUT, 0);
    check_drained(s);
}

/* Run from the loop itself (few frames deep): what the closed connection's calls left in stack
 * frames below, library code's included, is overwritten (memwipe.h). */
static void scrub_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    gw_memwipe_scrub_stack();
}

static const char *const refusal_names[GW_SERVER_REFUSED_N] = {
    [GW_SERVER_REFUSED_MAX_CONNECTIONS] = "max_connections",
    [GW_SERVER_REFUSED_MAX_PREAUTH] = "max_preauth_connections",
    [GW_SERVER_REFUSED_RATE_PER_ADDRESS] = "accept_rate_per_address",
    [GW_SERVER_REFUSED_PREAUTH_PER_ADDRESS] = "max_preauth_per_address",
    [GW_SERVER_REFUSED_ADDRESS_TABLE_FULL] = "address_table_full",
    [GW_SERVER_REFUSED_PER_CERTIFICATE] = "max_connections_per_certificate",
    [GW_SERVER_REFUSED_OUT_OF_MEMORY] = "out_of_memory",
};

/* Closes a connection refused at accept. Logs the first refusal and then every 1000th, so that
 * a flood cannot flood the log. */
static void refuse(struct gw_server *s, evutil_socket_t fd, enum gw_server_refusal r)
{
    s->refused_by[r]++;
    if (s->refused++ % 1000 == 0)
        GW_LOG(GW_LOG_WARN, "server", NULL, "refusing connections: %s reached (%llu so far)",
               refusal_names[r], (unsigned long long)s->refused);
    evutil_closesocket(fd);
}

/* Makes room for a new connection at limit r (max_preauth_connections or max_connections):
 * closes the oldest unauthenticated connection, whatever it is doing (in its handshake, lingering
 * after a refused one, or refused over max_connections_per_certificate). Logged as refusals are:
 * the first, then every 1000th. */
static void evict_oldest(struct gw_server *s, enum gw_server_refusal r)
{
    struct gw_conn *c = gw_preauthq_victim(&s->preauth);
    struct gw_log_ctx ctx = {0};

    if (c == NULL)
        return;
    s->evicted_by[r]++;
    if (s->evicted++ % 1000 == 0) {
        ctx.peer = gw_conn_peer(c);
        GW_LOG(GW_LOG_WARN, "server", &ctx,
               "closing the oldest unauthenticated connection for a new one: %s reached (%llu so "
               "far)",
               refusal_names[r], (unsigned long long)s->evicted);
    }
    free_conn(s, c);
    if (gw_memwipe_enabled())
        event_active(s->scrub_ev, EV_TIMEOUT, 0);
}

/* Counts the connection against its certificate's max_connections_per_certificate; over it,
 * the connection stays unauthenticated (conn.h) and keeps its pre-authentication slot. */
static uint32_t conn_auth_cb(void *arg, struct gw_conn *c)
{
    struct gw_server *s = arg;
    const struct gw_peer *peer = gw_conn_peer_info(c);

    if (peer->cert) {
        enum gw_certlimit_verdict v = gw_certlimit_take(s->cl, peer->cert_sha256);
        if (v != GW_CERTLIMIT_OK) {
            enum gw_server_refusal r = v == GW_CERTLIMIT_FULL ? GW_SERVER_REFUSED_PER_CERTIFICATE
                                                              : GW_SERVER_REFUSED_OUT_OF_MEMORY;
            s->refused_by[r]++;
            if (s->refused++ % 1000 == 0)
                GW_LOG(GW_LOG_WARN, "server", NULL,
                       "refusing connections: %s reached (%llu so far; certificate CN %s)",
                       refusal_names[r], (unsigned long long)s->refused, peer->cert_cn);
            return gw_certlimit_max(s->cl);
        }
        /* its calls charge the certificate's request and response memory too: kept until
         * free_conn */
        gw_conn_set_cert_budgets(c, gw_certlimit_budget(s->cl, peer->cert_sha256),
                                 gw_certlimit_response_pool(s->cl, peer->cert_sha256));
    }
    end_preauth(s, c);
    return 0;
}

static const enum gw_server_refusal verdict_refusal[] = {
    [GW_PEERLIMIT_OK] = GW_SERVER_REFUSED_N, /* not used */
    [GW_PEERLIMIT_RATE] = GW_SERVER_REFUSED_RATE_PER_ADDRESS,
    [GW_PEERLIMIT_PREAUTH] = GW_SERVER_REFUSED_PREAUTH_PER_ADDRESS,
    [GW_PEERLIMIT_FULL] = GW_SERVER_REFUSED_ADDRESS_TABLE_FULL,
};

static void accept_cb(struct evconnlistener *lev, evutil_socket_t fd, struct sockaddr *sa,
                      int salen, void *arg)
{
    struct gw_server *s = arg;
    struct gw_tls *tls = lev == s->tls_lev ? s->tls : NULL;
    struct gw_peerlimit_slot *slot = NULL;
    enum gw_peerlimit_verdict v;
    struct gw_conn *c;

    if (s->draining) {
        evutil_closesocket(fd);
        return;
    }
    /* Only unauthenticated connections give way to a new one: with none, the gateway is full. */
    if (s->nconns >= s->cfg->max_connections && gw_preauthq_len(&s->preauth) == 0) {
        refuse(s, fd, GW_SERVER_REFUSED_MAX_CONNECTIONS);
        return;
    }
    /* The address's limits first: a connection they refuse closes no other. */
    v = gw_peerlimit_admit(s->pl, sa, gw_clock_ms(), &slot);
    if (v != GW_PEERLIMIT_OK) {
        refuse(s, fd, verdict_refusal[v]);
        return;
    }
    (void)evutil_make_socket_nonblocking(fd);
    /* gRPC answers are small HEADERS/DATA/trailers writes: without NODELAY, Nagle holds one back
     * until the peer's delayed ACK (~40 ms) and every such answer pays for it. */
    if (sa->sa_family == AF_INET || sa->sa_family == AF_INET6) {
        int one = 1;
        (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }
    c = gw_conn_new(s->cfg, s->base, tls, &s->up, s->pool, &s->lines, fd, sa, salen, conn_closed_cb,
                    s);
    if (c == NULL) {
        gw_peerlimit_release(s->pl, slot);
        GW_LOG(GW_LOG_WARN, "server", NULL, "cannot set up a connection (out of memory?)");
        return;
    }
    /* Room for it only now that it exists: a connection that cannot be set up closes no other. */
    if (s->nconns >= s->cfg->max_connections)
        evict_oldest(s, GW_SERVER_REFUSED_MAX_CONNECTIONS);
    else if (gw_preauthq_len(&s->preauth) >= s->max_preauth)
        evict_oldest(s, GW_SERVER_REFUSED_MAX_PREAUTH); /* the rest is kept for the authenticated */
    gw_conn_set_auth_cb(c, conn_auth_cb);
    *gw_conn_slot(c) = slot;
    gw_preauthq_push(&s->preauth, gw_conn_preauth_node(c), c);
    *gw_conn_next(c) = s->conns;
    *gw_conn_prev(c) = NULL;
    if (s->conns)
        *gw_conn_prev(s->conns) = c;
    s->conns = c;
    s->nconns++;
}

/* The lines the log budgets left out since the last report, if any: one line for a flood. */
static void lines_report_cb(evutil_socket_t fd, short what, void *arg)
{
    struct gw_server *s = arg;
    uint64_t conn = gw_lines_dropped(&s->lines.conn), known = gw_lines_dropped(&s->lines.known);
    uint64_t stream = gw_lines_dropped(&s->lines.stream);

    (void)fd;
    (void)what;
    if (conn > 0 || known > 0 || stream > 0)
        GW_LOG(GW_LOG_WARN, "server", NULL,
               "log rate limit: %llu lines about connections and %llu per-stream lines "
               "suppressed in the last %u s (%llu of the first about connections of known "
               "principals)",
               (unsigned long long)(conn + known), (unsigned long long)stream,
               (unsigned)(LINES_REPORT_MS / 1000u), (unsigned long long)known);
}

static bool is_loopback(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET)
        return (ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr) >> 24) == 127;
    if (sa->sa_family == AF_INET6)
        return IN6_IS_ADDR_LOOPBACK(&((const struct sockaddr_in6 *)sa)->sin6_addr);
    return false;
}

static struct evconnlistener *bind_listener(struct gw_server *s, const char *hostport,
                                            bool loopback_only, char *err, size_t errlen)
{
    char host[256], port[8];
    uint16_t portnum = 0;
    struct addrinfo hints, *res = NULL;
    struct evconnlistener *lev = NULL;
    int rc;

    if (gw_config_split_hostport(hostport, host, sizeof(host), &portnum) != 0) {
        snprintf(err, errlen, "server: cannot parse listen address \"%s\"", hostport);
        return NULL;
    }
    snprintf(port, sizeof(port), "%u", (unsigned)portnum);
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    rc = getaddrinfo(host[0] ? host : NULL, port, &hints, &res);
    if (rc != 0 || res == NULL) {
        snprintf(err, errlen, "server: cannot resolve \"%s\": %s", hostport, gai_strerror(rc));
        goto out;
    }
    if (loopback_only) {
        for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
            if (!is_loopback(ai->ai_addr)) {
                snprintf(err, errlen,
                         "server: insecure_listen \"%s\" is not a loopback address: refusing",
                         hostport);
                goto out;
            }
        }
    }
    lev = evconnlistener_new_bind(s->base, accept_cb, s,
                                  LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_EXEC,
                                  -1, res->ai_addr, (int)res->ai_addrlen);
    if (lev == NULL) {
        snprintf(err, errlen, "server: cannot listen on \"%s\": %s", hostport,
                 evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
        goto out;
    }
out:
    if (res != NULL)
        freeaddrinfo(res);
    return lev;
}

static void drain_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    struct gw_server *s = arg;

    (void)fd;
    (void)what;
    if (s->nconns > 0)
        GW_LOG(GW_LOG_WARN, "server", NULL,
               "drain timeout: closing %zu connections, cancelling their calls", s->nconns);
    while (s->conns != NULL) {
        free_conn(s, s->conns);
    }
    check_drained(s);
}

static void done_cb(evutil_socket_t fd, short what, void *arg)
{
    struct gw_server *s = arg;

    (void)fd;
    (void)what;
    if (s->done_called)
        return;
    s->done_called = true;
    evtimer_del(s->drain_ev);
    if (s->done != NULL)
        s->done(s->done_arg);
}

struct gw_server *gw_server_new(const struct gw_config *cfg, struct event_base *base,
                                struct gw_tls *tls, const struct gw_h2_upcalls *up, char *err,
                                size_t errlen)
{
    struct gw_server *s = gw_calloc(1, sizeof(*s));

    if (s == NULL) {
        snprintf(err, errlen, "server: out of memory");
        return NULL;
    }
    s->base = base;
    s->cfg = cfg;
    s->tls = tls;
    s->up = *up;
    s->max_preauth =
        cfg->max_preauth_connections > 0 ? cfg->max_preauth_connections : cfg->max_connections / 4u;
    if (s->max_preauth == 0)
        s->max_preauth = 1;
    s->drain_ev = evtimer_new(base, drain_timeout_cb, s);
    s->done_ev = event_new(base, -1, 0, done_cb, s);
    s->scrub_ev = event_new(base, -1, 0, scrub_cb, s);
    s->lines_ev = event_new(base, -1, EV_PERSIST, lines_report_cb, s);
    gw_lines_init(&s->lines.conn, GW_CONN_LOG_BURST, GW_CONN_LOG_RATE, gw_clock_ms());
    gw_lines_init(&s->lines.known, GW_CONN_LOG_BURST, GW_CONN_LOG_RATE, gw_clock_ms());
    gw_lines_init(&s->lines.stream, GW_CONN_STREAM_LOG_BURST, GW_CONN_STREAM_LOG_RATE,
                  gw_clock_ms());
    s->pl = gw_peerlimit_new(cfg->accept_rate_per_address, cfg->max_preauth_per_address,
                             4u * (size_t)cfg->max_connections + 4096u);
    s->pool = gw_h2_pool_new(base, cfg->response_memory);
    s->cl = gw_certlimit_new(cfg->max_connections_per_certificate > 0
                                 ? cfg->max_connections_per_certificate
                                 : (cfg->max_connections / 8u > 0 ? cfg->max_connections / 8u : 1u),
                             cfg->request_memory_per_certificate,
                             cfg->response_memory_per_certificate, base);
    if (s->drain_ev == NULL || s->done_ev == NULL || s->scrub_ev == NULL || s->lines_ev == NULL ||
        s->pl == NULL || s->pool == NULL || s->cl == NULL) {
        snprintf(err, errlen, "server: out of memory");
        goto fail;
    }
    {
        struct timeval tv = gw_clock_tv(LINES_REPORT_MS);
        (void)event_add(s->lines_ev, &tv);
    }
    if (cfg->insecure_listen != NULL && cfg->insecure_listen[0] != '\0') {
        if (!cfg->insecure_loopback_only) {
            snprintf(err, errlen,
                     "server: insecure_listen is set but insecure_loopback_only is not true");
            goto fail;
        }
        s->plain_lev = bind_listener(s, cfg->insecure_listen, true, err, errlen);
        if (s->plain_lev == NULL ||
            (s->plain_pause = gw_acceptpause_new(base, s->plain_lev, "plaintext")) == NULL)
            goto fail;
    }
    if (tls == NULL) {
        snprintf(err, errlen, "server: no TLS context");
        goto fail;
    }
    s->tls_lev = bind_listener(s, cfg->listen, false, err, errlen);
    if (s->tls_lev == NULL)
        goto fail;
    s->tls_pause = gw_acceptpause_new(base, s->tls_lev, "grpc");
    if (s->tls_pause == NULL) {
        snprintf(err, errlen, "server: out of memory");
        goto fail;
    }
    return s;
fail:
    gw_server_free(s);
    return NULL;
}

void gw_server_free(struct gw_server *s)
{
    if (s == NULL)
        return;
    gw_acceptpause_free(s->tls_pause); /* before their listeners */
    gw_acceptpause_free(s->plain_pause);
    if (s->tls_lev != NULL)
        evconnlistener_free(s->tls_lev);
    if (s->plain_lev != NULL)
        evconnlistener_free(s->plain_lev);
    while (s->conns != NULL) {
        free_conn(s, s->conns);
    }
    if (s->drain_ev != NULL)
        event_free(s->drain_ev);
    if (s->done_ev != NULL)
        event_free(s->done_ev);
    if (s->scrub_ev != NULL)
        event_free(s->scrub_ev);
    if (s->lines_ev != NULL)
        event_free(s->lines_ev);
    gw_peerlimit_free(s->pl);
    gw_certlimit_free(s->cl);
    gw_h2_pool_free(s->pool); /* after every connection (their sessions use it) */
    gw_free(s);
}

void gw_server_drain(struct gw_server *s, gw_server_drained_cb done, void *arg)
{
    struct timeval tv;
    struct gw_conn *c, *next;

    if (s->draining)
        return;
    s->draining = true;
    s->done = done;
    s->done_arg = arg;
    if (s->tls_lev != NULL)
        evconnlistener_disable(s->tls_lev);
    if (s->plain_lev != NULL)
        evconnlistener_disable(s->plain_lev);
    GW_LOG(GW_LOG_INFO, "server", NULL, "draining %zu connections", s->nconns);
    tv = gw_clock_tv(s->cfg->drain_timeout_ms);
    (void)evtimer_add(s->drain_ev, &tv);
    /* gw_conn_drain may close (and unlink) the connection at once. */
    for (c = s->conns; c != NULL; c = next) {
        next = *gw_conn_next(c);
        gw_conn_drain(c);
    }
    check_drained(s);
}

void gw_server_address(const struct gw_server *s, int insecure, char *out, size_t outlen)
{
    struct evconnlistener *lev = insecure ? s->plain_lev : s->tls_lev;
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    char ip[INET6_ADDRSTRLEN] = "";

    out[0] = '\0';
    if (lev == NULL || getsockname(evconnlistener_get_fd(lev), (struct sockaddr *)&ss, &len) != 0)
        return;
    if (ss.ss_family == AF_INET) {
        struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
        evutil_inet_ntop(AF_INET, &s4->sin_addr, ip, sizeof(ip));
        snprintf(out, outlen, "%s:%u", ip, (unsigned)ntohs(s4->sin_port));
    } else if (ss.ss_family == AF_INET6) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
        evutil_inet_ntop(AF_INET6, &s6->sin6_addr, ip, sizeof(ip));
        snprintf(out, outlen, "[%s]:%u", ip, (unsigned)ntohs(s6->sin6_port));
    }
}

size_t gw_server_connections(const struct gw_server *s)
{
    return s->nconns;
}

void gw_server_response_memory(const struct gw_server *s, size_t *used, size_t *peak, size_t *limit)
{
    gw_h2_pool_usage(s->pool, used, peak, limit);
}

void gw_server_response_memory_per_certificate(const struct gw_server *s, size_t *most,
                                               size_t *peak, size_t *limit)
{
    gw_certlimit_response_memory(s->cl, most, peak, limit);
}

void gw_server_request_memory_per_certificate(const struct gw_server *s, size_t *most, size_t *peak,
                                              size_t *limit)
{
    gw_certlimit_request_memory(s->cl, most, peak, limit);
}

size_t gw_server_preauth(const struct gw_server *s)
{
    return gw_preauthq_len(&s->preauth);
}

uint64_t gw_server_refused(const struct gw_server *s, enum gw_server_refusal r)
{
    return r < GW_SERVER_REFUSED_N ? s->refused_by[r] : 0;
}

void gw_server_lines_suppressed(const struct gw_server *s, uint64_t *conn, uint64_t *stream)
{
    *conn = s->lines.conn.dropped_total + s->lines.known.dropped_total;
    *stream = s->lines.stream.dropped_total;
}

uint64_t gw_server_accept_paused(const struct gw_server *s)
{
    return gw_acceptpause_failures(s->tls_pause) + gw_acceptpause_failures(s->plain_pause);
}

uint64_t gw_server_evicted(const struct gw_server *s, enum gw_server_refusal r)
{
    return r < GW_SERVER_REFUSED_N ? s->evicted_by[r] : 0;
}

const char *gw_server_refusal_name(enum gw_server_refusal r)
{
    return r < GW_SERVER_REFUSED_N ? refusal_names[r] : "?";
}

size_t gw_server_drop_revoked(struct gw_server *s)
{
    struct gw_conn *c = s->conns, *next;
    size_t n = 0;

    for (; c != NULL; c = next) {
        next = *gw_conn_next(c);
        if (!gw_conn_revoked(c, s->tls))
            continue;
        GW_LOG(GW_LOG_WARN, "server", NULL,
               "closing the connection of %s: its client certificate is now revoked",
               gw_conn_peer(c));
        free_conn(s, c);
        n++;
    }
    return n;
}
