/* server.c: listeners, the connection cap and registry, and the graceful drain. Owns the
 * evconnlisteners and every struct gw_conn (a doubly linked list). Invariants: at most
 * cfg->max_connections connections exist; the plaintext listener binds only a loopback address
 * and only when the config explicitly allows it; the drain callback runs exactly once. */
#include "server.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include <event2/event.h>
#include <event2/listener.h>

#include "alloc.h"
#include "config.h"
#include "conn.h"
#include "h2.h"
#include "log.h"

struct gw_server {
    const struct gw_config *cfg;
    struct event_base *base;
    struct gw_tls *tls;
    struct gw_h2_upcalls up;
    struct evconnlistener *tls_lev;
    struct evconnlistener *plain_lev;
    struct gw_conn *conns;
    size_t nconns;
    bool draining;
    struct event *drain_ev; /* drain deadline */
    struct event *done_ev;  /* runs the done callback from the loop */
    gw_server_drained_cb done;
    void *done_arg;
    bool done_called;
    uint64_t refused;
};

static void unlink_conn(struct gw_server *s, struct gw_conn *c)
{
    struct gw_conn *next = *gw_conn_next(c), *prev = *gw_conn_prev(c);

    if (prev)
        *gw_conn_next(prev) = next;
    else
        s->conns = next;
    if (next)
        *gw_conn_prev(next) = prev;
    s->nconns--;
}

static void check_drained(struct gw_server *s)
{
    if (s->draining && s->nconns == 0 && !s->done_called)
        event_active(s->done_ev, EV_TIMEOUT, 0);
}

static void conn_closed_cb(void *arg, struct gw_conn *c)
{
    struct gw_server *s = arg;

    unlink_conn(s, c);
    gw_conn_free(c);
    check_drained(s);
}

static void accept_cb(struct evconnlistener *lev, evutil_socket_t fd, struct sockaddr *sa,
                      int salen, void *arg)
{
    struct gw_server *s = arg;
    struct gw_tls *tls = lev == s->tls_lev ? s->tls : NULL;
    struct gw_conn *c;

    if (s->draining) {
        evutil_closesocket(fd);
        return;
    }
    if (s->nconns >= s->cfg->max_connections) {
        /* Log the first refusal and then every 1000th, so a flood cannot flood the log. */
        if (s->refused++ % 1000 == 0)
            GW_LOG(GW_LOG_WARN, "server", NULL,
                   "max_connections (%u) reached: refusing connections (%llu so far)",
                   (unsigned)s->cfg->max_connections, (unsigned long long)s->refused);
        evutil_closesocket(fd);
        return;
    }
    (void)evutil_make_socket_nonblocking(fd);
    /* gRPC answers are small HEADERS/DATA/trailers writes: without NODELAY, Nagle holds one back
     * until the peer's delayed ACK (~40 ms) and every such answer pays for it. */
    if (sa->sa_family == AF_INET || sa->sa_family == AF_INET6) {
        int one = 1;
        (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }
    c = gw_conn_new(s->cfg, s->base, tls, &s->up, fd, sa, salen, conn_closed_cb, s);
    if (c == NULL) {
        GW_LOG(GW_LOG_WARN, "server", NULL, "cannot set up a connection (out of memory?)");
        return;
    }
    *gw_conn_next(c) = s->conns;
    *gw_conn_prev(c) = NULL;
    if (s->conns)
        *gw_conn_prev(s->conns) = c;
    s->conns = c;
    s->nconns++;
}

static void accept_error_cb(struct evconnlistener *lev, void *arg)
{
    int e = EVUTIL_SOCKET_ERROR();

    (void)lev;
    (void)arg;
    GW_LOG(GW_LOG_WARN, "server", NULL, "accept failed: %s", evutil_socket_error_to_string(e));
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
    evconnlistener_set_error_cb(lev, accept_error_cb);
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
        struct gw_conn *c = s->conns;
        unlink_conn(s, c);
        gw_conn_free(c);
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
    s->drain_ev = evtimer_new(base, drain_timeout_cb, s);
    s->done_ev = event_new(base, -1, 0, done_cb, s);
    if (s->drain_ev == NULL || s->done_ev == NULL) {
        snprintf(err, errlen, "server: out of memory");
        goto fail;
    }
    if (cfg->insecure_listen != NULL && cfg->insecure_listen[0] != '\0') {
        if (!cfg->insecure_loopback_only) {
            snprintf(err, errlen,
                     "server: insecure_listen is set but insecure_loopback_only is not true");
            goto fail;
        }
        s->plain_lev = bind_listener(s, cfg->insecure_listen, true, err, errlen);
        if (s->plain_lev == NULL)
            goto fail;
    }
    if (tls == NULL) {
        snprintf(err, errlen, "server: no TLS context");
        goto fail;
    }
    s->tls_lev = bind_listener(s, cfg->listen, false, err, errlen);
    if (s->tls_lev == NULL)
        goto fail;
    return s;
fail:
    gw_server_free(s);
    return NULL;
}

void gw_server_free(struct gw_server *s)
{
    if (s == NULL)
        return;
    if (s->tls_lev != NULL)
        evconnlistener_free(s->tls_lev);
    if (s->plain_lev != NULL)
        evconnlistener_free(s->plain_lev);
    while (s->conns != NULL) {
        struct gw_conn *c = s->conns;
        unlink_conn(s, c);
        gw_conn_free(c);
    }
    if (s->drain_ev != NULL)
        event_free(s->drain_ev);
    if (s->done_ev != NULL)
        event_free(s->done_ev);
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
    tv.tv_sec = (time_t)(s->cfg->drain_timeout_ms / 1000u);
    tv.tv_usec = (suseconds_t)(s->cfg->drain_timeout_ms % 1000u) * 1000;
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
        unlink_conn(s, c);
        gw_conn_free(c);
        n++;
    }
    return n;
}
