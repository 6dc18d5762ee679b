/* metrics.h: the Prometheus metrics listener (metrics.c). */
#ifndef GW_METRICS_H
#define GW_METRICS_H

#include <stddef.h>

struct event_base;
struct evbuffer;
struct gw_app;
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
    void (*more)(void *arg, struct evbuffer *b);
    void *more_arg;
};

struct gw_metrics;

/* Listens on `listen` ("host:port", loopback: config.c checks). NULL with a reason in err. */
struct gw_metrics *gw_metrics_new(struct event_base *base, const char *listen,
                                  const struct gw_metrics_sources *src, char *err, size_t errlen);
/* Closes the listener and its connections. NULL-safe. */
void gw_metrics_free(struct gw_metrics *m);

#endif
