/* acceptpause.h: a listener's answer to accept(2) failing for want of a resource (EMFILE,
 * ENFILE, ENOBUFS, ENOMEM). libevent's listener would retry on every loop turn (the listening
 * socket stays readable) and warn each time: the loop spins and the log floods. Instead the
 * listener is disabled for a pause (ACCEPTPAUSE_FIRST_MS, doubling while the failures go on, up
 * to ACCEPTPAUSE_MAX_MS) and enabled again by a timer, so it recovers by itself once descriptors
 * are free. An episode writes two lines: a warning when it starts (naming the error), and one
 * when accepting has worked for ACCEPTPAUSE_SETTLE_MS, counting the failed accepts. Any other
 * accept error is logged at most once per ACCEPTPAUSE_SETTLE_MS, with the count of the rest.
 *
 * libevent gives a listener's error callback the listener's user data, which evhttp owns for its
 * listeners: so the pause is found from the listener (a short list kept here, one entry per
 * listener of the process). */
#ifndef GW_ACCEPTPAUSE_H
#define GW_ACCEPTPAUSE_H

#include <stdint.h>

#define ACCEPTPAUSE_FIRST_MS 100u
#define ACCEPTPAUSE_MAX_MS 2000u
#define ACCEPTPAUSE_SETTLE_MS 1000u

struct event_base;
struct evconnlistener;
struct gw_acceptpause;

/* Installs the error callback on lev (borrowed: free the pause before the listener). name says
 * which listener in the log ("grpc", "metrics"; a static string). NULL when out of memory (the
 * listener then keeps libevent's behaviour). */
struct gw_acceptpause *gw_acceptpause_new(struct event_base *base, struct evconnlistener *lev,
                                          const char *name);
/* NULL-safe. Leaves the listener as it is (disabled if paused). */
void gw_acceptpause_free(struct gw_acceptpause *p);

/* Accepts that failed for want of a resource, ever (metrics). NULL-safe (0). */
uint64_t gw_acceptpause_failures(const struct gw_acceptpause *p);

#endif
