/* outbox_listen.c: LISTEN waygate_outbox on a libpq connection of its own (outbox.h), outside the
 * pool (a pooled connection runs pipelines; a listening one only waits). Non-blocking connect and
 * reads on the store's event base, reconnect with jittered exponential backoff when the connection
 * is lost. Invariants: wake runs from the loop only, once per batch of notifications read and once
 * after each LISTEN is confirmed, and it is the last thing a handler does (it may free the
 * listener); nothing runs after gw_outbox_listener_free. */
#include <string.h>
#include <sys/time.h>

#include <event2/event.h>
#include <event2/util.h>
#include <libpq-fe.h>

#include "alloc.h"
#include "clock.h"
#include "db.h"
#include "log.h"
#include "outbox.h"
#include "store_int.h"

#define LISTEN_SQL "LISTEN waygate_outbox"
#define CONNECT_TIMEOUT_MS 5000u
#define BACKOFF_MIN_MS 200u
#define BACKOFF_MAX_MS 10000u

enum lstate {
    L_DOWN,       /* not connected; ev_timer holds the reconnect */
    L_CONNECTING, /* PQconnectPoll in progress; ev_timer holds the connect timeout */
    L_LISTENING,  /* LISTEN sent, its result awaited */
    L_READY,      /* listening */
};

struct gw_outbox_listener {
    struct event_base *base;
    char *conninfo;
    gw_outbox_wake_cb wake;
    void *arg;
    enum lstate state;
    PGconn *pg;
    struct event *ev_io;    /* connect phase: one-shot; then persistent read */
    struct event *ev_timer; /* connect timeout, reconnect backoff */
    PostgresPollingStatusType poll;
    unsigned attempt;
};

static void on_timer(evutil_socket_t fd, short what, void *arg);
static void on_connect_io(evutil_socket_t fd, short what, void *arg);
static void on_read(evutil_socket_t fd, short what, void *arg);
static void start_connect(struct gw_outbox_listener *l);

static void quiet_notice(void *arg, const char *message)
{
    /* Server notices may quote values: never printed. */
    (void)arg;
    (void)message;
}

static void arm_timer(struct gw_outbox_listener *l, uint32_t ms)
{
    struct timeval tv = gw_clock_tv(ms);

    evtimer_add(l->ev_timer, &tv);
}

static void close_pg(struct gw_outbox_listener *l)
{
    if (l->ev_io != NULL) {
        event_free(l->ev_io);
        l->ev_io = NULL;
    }
    if (l->pg != NULL) {
        PQfinish(l->pg);
        l->pg = NULL;
    }
}

/* Closes the connection and schedules the next attempt in [d/2, d], d doubling per failure. */
static void lost(struct gw_outbox_listener *l, const char *why)
{
    uint32_t d = BACKOFF_MIN_MS, rnd = 0;
    unsigned i;

    close_pg(l);
    for (i = 0; i < l->attempt && d < BACKOFF_MAX_MS; i++)
        d *= 2;
    if (d > BACKOFF_MAX_MS)
        d = BACKOFF_MAX_MS;
    if (l->attempt < 32)
        l->attempt++;
    evutil_secure_rng_get_bytes(&rnd, sizeof(rnd)); /* jitter, not security relevant */
    d = d / 2 + rnd % (d / 2 + 1);
    GW_LOG(GW_LOG_INFO, "outbox", NULL, "listener: %s; reconnect in %u ms", why, (unsigned)d);
    l->state = L_DOWN;
    evtimer_del(l->ev_timer);
    arm_timer(l, d);
}

/* Arms the one-shot connect-phase event for what PQconnectPoll asked for. */
static void wait_poll(struct gw_outbox_listener *l)
{
    short what = l->poll == PGRES_POLLING_READING ? EV_READ : EV_WRITE;

    if (l->ev_io != NULL)
        event_free(l->ev_io);
    l->ev_io = event_new(l->base, PQsocket(l->pg), what, on_connect_io, l);
    if (l->ev_io == NULL || event_add(l->ev_io, NULL) != 0)
        lost(l, "out of memory");
}

/* Connected: LISTEN, then read. */
static void established(struct gw_outbox_listener *l)
{
    evtimer_del(l->ev_timer);
    if (l->ev_io != NULL) {
        event_free(l->ev_io);
        l->ev_io = NULL;
    }
    if (PQsetnonblocking(l->pg, 1) != 0 || PQsendQuery(l->pg, LISTEN_SQL) != 1 ||
        PQflush(l->pg) != 0) {
        lost(l, "LISTEN not sent");
        return;
    }
    l->ev_io = event_new(l->base, PQsocket(l->pg), EV_READ | EV_PERSIST, on_read, l);
    if (l->ev_io == NULL || event_add(l->ev_io, NULL) != 0) {
        lost(l, "out of memory");
        return;
    }
    l->state = L_LISTENING;
}

static void on_connect_io(evutil_socket_t fd, short what, void *arg)
{
    struct gw_outbox_listener *l = arg;

    (void)fd;
    (void)what;
    l->poll = PQconnectPoll(l->pg);
    if (l->poll == PGRES_POLLING_OK)
        established(l);
    else if (l->poll == PGRES_POLLING_FAILED)
        lost(l, "server refused or unreachable");
    else
        wait_poll(l);
}

static void start_connect(struct gw_outbox_listener *l)
{
    const char *kw[] = {"dbname", "fallback_application_name", NULL};
    const char *val[] = {l->conninfo, "waygated-listen", NULL};

    l->pg = PQconnectStartParams(kw, val, 1);
    if (l->pg == NULL || PQstatus(l->pg) == CONNECTION_BAD) {
        lost(l, "connect failed at start");
        return;
    }
    PQsetNoticeProcessor(l->pg, quiet_notice, NULL);
    l->state = L_CONNECTING;
    l->poll = PGRES_POLLING_WRITING;
    arm_timer(l, CONNECT_TIMEOUT_MS);
    wait_poll(l);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    struct gw_outbox_listener *l = arg;

    (void)fd;
    (void)what;
    if (l->state == L_DOWN)
        start_connect(l);
    else if (l->state == L_CONNECTING)
        lost(l, "connect timeout");
}

/* Reads what arrived: the LISTEN's result, then notifications. Wakes last. */
static void on_read(evutil_socket_t fd, short what, void *arg)
{
    struct gw_outbox_listener *l = arg;
    bool wake = false;
    PGnotify *n;
    PGresult *res;

    (void)fd;
    (void)what;
    if (PQconsumeInput(l->pg) != 1) {
        lost(l, "connection lost");
        return;
    }
    while (!PQisBusy(l->pg) && (res = PQgetResult(l->pg)) != NULL) {
        ExecStatusType st = PQresultStatus(res);

        PQclear(res);
        if (st != PGRES_COMMAND_OK) {
            lost(l, "LISTEN refused");
            return;
        }
        if (l->state == L_LISTENING) {
            l->state = L_READY;
            l->attempt = 0;
            GW_LOG(GW_LOG_INFO, "outbox", NULL, "listener: listening");
            wake = true; /* deliveries may have been added while it was away */
        }
    }
    while ((n = PQnotifies(l->pg)) != NULL) {
        PQfreemem(n);
        wake = true;
    }
    if (wake && l->state == L_READY)
        l->wake(l->arg);
}

struct gw_outbox_listener *gw_outbox_listen(struct gw_store *store, gw_outbox_wake_cb wake,
                                            void *arg)
{
    struct gw_outbox_listener *l;
    const char *ci = store != NULL ? gw_db_conninfo(store->db) : NULL;

    if (ci == NULL || wake == NULL)
        return NULL;
    l = gw_calloc(1, sizeof(*l));
    if (l == NULL)
        return NULL;
    l->base = gw_db_base(store->db);
    l->wake = wake;
    l->arg = arg;
    l->conninfo = gw_strdup(ci);
    l->ev_timer = evtimer_new(l->base, on_timer, l);
    if (l->conninfo == NULL || l->ev_timer == NULL) {
        gw_outbox_listener_free(l);
        return NULL;
    }
    /* Connect from the loop, never from inside this call. */
    l->state = L_DOWN;
    arm_timer(l, 0);
    return l;
}

void gw_outbox_listener_free(struct gw_outbox_listener *l)
{
    if (l == NULL)
        return;
    close_pg(l);
    if (l->ev_timer != NULL)
        event_free(l->ev_timer);
    gw_free(l->conninfo);
    gw_free(l);
}
