/* acceptpause.c: pausing a listener while accept(2) lacks descriptors or memory (acceptpause.h).
 * Invariants: while paused the listener is disabled and exactly one timer is pending; an episode
 * logs at its start and at its end, never per failure; every pause object is in `all` from
 * gw_acceptpause_new to gw_acceptpause_free. */
#include "acceptpause.h"

#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include <event2/event.h>
#include <event2/listener.h>

#include "alloc.h"
#include "clock.h"
#include "log.h"

enum state {
    IDLE,    /* accepting, no episode */
    PAUSED,  /* disabled until the timer */
    PROBING, /* enabled again; the episode ends if the timer fires before another failure */
};

struct gw_acceptpause {
    struct evconnlistener *lev;
    const char *name;
    struct event *timer;
    enum state state;
    uint32_t pause_ms;
    uint64_t started_ms;   /* the episode's first failure */
    uint64_t episode;      /* failures in this episode */
    uint64_t failures;     /* for want of a resource, ever */
    uint64_t other;        /* other accept errors not logged yet */
    uint64_t other_log_ms; /* when one was last logged */
    struct gw_acceptpause *next;
};

/* The process's pauses: libevent's error callback gets the listener, and evhttp's user data. */
static struct gw_acceptpause *all;

static bool lacks_resource(int e)
{
    return e == EMFILE || e == ENFILE || e == ENOBUFS || e == ENOMEM;
}

static void arm(struct gw_acceptpause *p, uint32_t ms)
{
    struct timeval tv = gw_clock_tv(ms);

    (void)evtimer_add(p->timer, &tv);
}

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct gw_acceptpause *p = arg;

    (void)fd;
    (void)what;
    if (p->state == PAUSED) {
        p->state = PROBING;
        (void)evconnlistener_enable(p->lev);
        arm(p, ACCEPTPAUSE_SETTLE_MS);
        return;
    }
    if (p->state == PROBING) {
        GW_LOG(GW_LOG_WARN, "server", NULL,
               "accepting on the %s listener again: %llu accepts failed over %llu ms", p->name,
               (unsigned long long)p->episode, (unsigned long long)(gw_clock_ms() - p->started_ms));
        p->state = IDLE;
        p->episode = 0;
    }
}

static void failed(struct gw_acceptpause *p, int e)
{
    uint64_t now = gw_clock_ms();

    if (!lacks_resource(e)) {
        p->other++;
        if (p->other_log_ms == 0 || now - p->other_log_ms >= ACCEPTPAUSE_SETTLE_MS) {
            GW_LOG(GW_LOG_WARN, "server", NULL, "accept on the %s listener failed: %s (%llu times)",
                   p->name, evutil_socket_error_to_string(e), (unsigned long long)p->other);
            p->other = 0;
            p->other_log_ms = now;
        }
        return;
    }
    p->failures++;
    p->episode++;
    (void)evconnlistener_disable(p->lev);
    if (p->state == IDLE) {
        p->started_ms = now;
        p->pause_ms = ACCEPTPAUSE_FIRST_MS;
        GW_LOG(GW_LOG_WARN, "server", NULL,
               "accept on the %s listener failed: %s; not accepting for %u ms, then longer "
               "(up to %u ms) while it goes on",
               p->name, evutil_socket_error_to_string(e), (unsigned)p->pause_ms,
               (unsigned)ACCEPTPAUSE_MAX_MS);
    } else if (p->state == PROBING) {
        p->pause_ms = p->pause_ms * 2u > ACCEPTPAUSE_MAX_MS ? ACCEPTPAUSE_MAX_MS : p->pause_ms * 2u;
    }
    p->state = PAUSED;
    arm(p, p->pause_ms);
}

static void error_cb(struct evconnlistener *lev, void *arg)
{
    int e = EVUTIL_SOCKET_ERROR();

    (void)arg; /* evhttp's for its listeners: the pause is found by the listener */
    for (struct gw_acceptpause *p = all; p != NULL; p = p->next) {
        if (p->lev == lev) {
            failed(p, e);
            return;
        }
    }
}

struct gw_acceptpause *gw_acceptpause_new(struct event_base *base, struct evconnlistener *lev,
                                          const char *name)
{
    struct gw_acceptpause *p = gw_calloc(1, sizeof(*p));

    if (p == NULL)
        return NULL;
    p->lev = lev;
    p->name = name;
    p->timer = evtimer_new(base, timer_cb, p);
    if (p->timer == NULL) {
        gw_free(p);
        return NULL;
    }
    p->next = all;
    all = p;
    evconnlistener_set_error_cb(lev, error_cb);
    return p;
}

void gw_acceptpause_free(struct gw_acceptpause *p)
{
    struct gw_acceptpause **pp;

    if (p == NULL)
        return;
    for (pp = &all; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == p) {
            *pp = p->next;
            break;
        }
    }
    evconnlistener_set_error_cb(p->lev, NULL);
    event_free(p->timer);
    gw_free(p);
}

uint64_t gw_acceptpause_failures(const struct gw_acceptpause *p)
{
    return p != NULL ? p->failures : 0;
}
