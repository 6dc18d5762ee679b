/* metrics.h: the Prometheus metrics listener (metrics.c). */
#ifndef GW_METRICS_H
#define GW_METRICS_H

#include <stddef.h>

struct event_base;
struct evbuffer;
struct gw_app;
struct gw_config;
struct gw_forward;
struct gw_retention;
struct gw_rpc;
struct gw_server;
struct gw_tls;

/* What a scrape reads; every pointer must outlive the listener. `more`, when set, appends further
 * families (e.g. the forwarder's) to the text. */
struct gw_metrics_sources {
    const struct gw_app *app;
    const struct gw_rpc *rpc;
    const struct gw_server *server;
    const struct gw_tls *tls;
    const struct gw_forward *forward;     /* the outbox forwarder, or NULL when it does not run */
    const struct gw_retention *retention; /* the retention sweep, or NULL */
    void (*more)(void *arg, struct evbuffer *b);
    void *more_arg;
};

struct gw_metrics;

/* Listens on cfg's [metrics] listen ("host:port"): plain HTTP (a loopback address: config.c
 * checks), or with [metrics] tls HTTPS answering only a registered system_admin certificate. NULL
 * with a reason in err. cfg must outlive the listener. */
struct gw_metrics *gw_metrics_new(struct event_base *base, const struct gw_config *cfg,
                                  const struct gw_metrics_sources *src, char *err, size_t errlen);
/* After a reload of the [tls] files (SIGHUP, the CRL timer): the listener's TLS context is made
 * again from them (new connections use it); on failure the old one stays and the reason is
 * logged. Nothing without [metrics] tls. NULL-safe. */
void gw_metrics_reload_tls(struct gw_metrics *m, const struct gw_config *cfg);
/* Closes the listener and its connections. NULL-safe. */
void gw_metrics_free(struct gw_metrics *m);

#endif
