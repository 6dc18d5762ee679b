/* h2_resp.c: a session's response memory and slow readers. Every byte queued on a stream is
 * charged to three budgets at once: the connection's (cfg->response_memory_per_connection), the
 * client certificate's (cfg->response_memory_per_certificate, a struct gw_h2_pool shared by its
 * connections, certlimit.h) and the gateway's (cfg->response_memory, a pool shared by every
 * session), and given back as it leaves (sent or discarded). A streaming handler is writable only
 * while its own queue is under GW_H2_STREAM_HIGH and all three have room; one that asked to be
 * told waits in the queue of the first full budget, in that order, and each give that leaves room
 * in a budget with waiters has them woken from the loop (GW_H2_WAKE_MAX per event), whichever
 * connection gave: a woken stream asks again, so it moves on to the next full budget's queue.
 * Upcalls never run from here: gw_h2_notify_soon has h2.c's notify_cb run them.
 *
 * The stall rule: a stream whose client does not take at least half of what was queued at the
 * start of each stream_write_timeout_ms is reset; a period ends only when that half is taken or
 * the queue is empty, so a drip of window does not keep it. The clock runs only while bytes
 * wait. */
#include <string.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "alloc.h"
#include "budget.h"
#include "clock.h"
#include "config.h"
#include "h2_int.h"
#include "log.h"

static void wq_unlink(struct gw_h2_stream *st)
{
    struct waitq *q = st->wq;

    if (q == NULL)
        return;
    if (st->wprev != NULL)
        st->wprev->wnext = st->wnext;
    else
        q->head = st->wnext;
    if (st->wnext != NULL)
        st->wnext->wprev = st->wprev;
    else
        q->tail = st->wprev;
    st->wq = NULL;
    st->wprev = st->wnext = NULL;
}

/* Appends st to q (leaving the queue it was in, if any). */
static void wq_push(struct waitq *q, struct gw_h2_stream *st)
{
    if (st->wq == q)
        return;
    wq_unlink(st);
    st->wq = q;
    st->wprev = q->tail;
    if (q->tail != NULL)
        q->tail->wnext = st;
    else
        q->head = st;
    q->tail = st;
}

static void pool_wake_soon(struct gw_h2_pool *pool)
{
    static const struct timeval zero = {0, 0};

    if (!evtimer_pending(pool->wake_ev, NULL))
        (void)evtimer_add(pool->wake_ev, &zero);
}

/* Has the pool's waiters woken from the loop if it has room for them. */
static void pool_wake_if_room(struct gw_h2_pool *pool)
{
    if (pool != NULL && pool->q.head != NULL && gw_budget_room(&pool->mem))
        pool_wake_soon(pool);
}

/* Charges n response bytes to the session's three budgets at once: the connection's, the client
 * certificate's (none without one) and the gateway's. */
static void charge_levels(struct gw_h2 *h2, size_t n)
{
    struct gw_budget *const levels[] = {
        &h2->resp, h2->cert_pool != NULL ? &h2->cert_pool->mem : NULL, &h2->pool->mem};

    gw_budget_charge_levels(levels, 3, n);
}

void gw_h2_resp_charge(struct gw_h2_stream *st, size_t n)
{
    charge_levels(st->h2, n);
    st->charged += n;
}

void gw_h2_resp_unwait(struct gw_h2_stream *st)
{
    wq_unlink(st);
}

/* The queue a stream must wait in for response memory: none (NULL) when it holds bytes
 * (gw_h2_stream_hold) or all its budgets have room; else that of the first full one, in their
 * order: the connection's, the certificate's, the gateway's. A stream woken from one queue asks
 * again, so it moves on to the next full budget's queue, whose next give wakes it. */
static struct waitq *wait_queue(const struct gw_h2_stream *st)
{
    struct gw_h2 *h2 = st->h2;

    if (st->held != 0)
        return NULL;
    if (!gw_budget_room(&h2->resp))
        return &h2->q;
    if (h2->cert_pool != NULL && !gw_budget_room(&h2->cert_pool->mem))
        return &h2->cert_pool->q;
    if (!gw_budget_room(&h2->pool->mem))
        return &h2->pool->q;
    return NULL;
}

bool gw_h2_resp_full(const struct gw_h2_stream *st)
{
    return wait_queue(st) != NULL;
}

/* The stream wants writing and its own queue is under GW_H2_STREAM_LOW: its upcall is due now
 * if all budgets have room; otherwise it waits in the queue of the first that has none. */
static void ready_or_wait(struct gw_h2_stream *st)
{
    struct waitq *q = wait_queue(st);

    if (q != NULL) {
        wq_push(q, st);
    } else {
        wq_unlink(st);
        if (!st->notify) {
            st->notify = true;
            gw_h2_notify_soon(st->h2);
        }
    }
}

/* Gives n bytes back to the session's response budgets, and has the waiters of each budget that
 * has room again woken from the loop (never here: this may run inside nghttp2). The
 * certificate's and the gateway's waiters may be on other connections: their pools wake them,
 * whichever connection gave. */
static void give_back(struct gw_h2 *h2, size_t n)
{
    struct gw_budget *const levels[] = {
        &h2->resp, h2->cert_pool != NULL ? &h2->cert_pool->mem : NULL, &h2->pool->mem};

    if (n == 0)
        return;
    gw_budget_give_levels(levels, 3, n);
    if (h2->q.head != NULL && gw_budget_room(&h2->resp) && !h2->wake_due && h2->notify_ev != NULL) {
        h2->wake_due = true;
        gw_h2_notify_soon(h2);
    }
    pool_wake_if_room(h2->cert_pool);
    pool_wake_if_room(h2->pool);
}

void gw_h2_resp_uncharge(struct gw_h2_stream *st, size_t n)
{
    if (n > st->charged)
        n = st->charged;
    st->charged -= n;
    give_back(st->h2, n);
}

void gw_h2_stream_hold(struct gw_h2_stream *st, size_t n)
{
    if (st->answered)
        n = 0;
    if (n > st->held)
        charge_levels(st->h2, n - st->held);
    else
        give_back(st->h2, st->held - n);
    st->held = n;
}

/* The connection's budget has room again: up to GW_H2_WAKE_MAX of its waiters, oldest first, get
 * their upcall in this notify_cb run (or wait on for the certificate's or the gateway's budget);
 * the rest next turn. */
void gw_h2_resp_session_wake(struct gw_h2 *h2)
{
    h2->wake_due = false;
    for (unsigned i = 0; i < GW_H2_WAKE_MAX && h2->q.head != NULL && gw_budget_room(&h2->resp);
         i++) {
        struct gw_h2_stream *st = h2->q.head;
        struct waitq *q;
        wq_unlink(st);
        q = wait_queue(st); /* not h2->q: it has room */
        if (q != NULL)
            wq_push(q, st);
        else
            st->notify = true;
    }
    if (h2->q.head != NULL && gw_budget_room(&h2->resp)) {
        h2->wake_due = true;
        gw_h2_notify_soon(h2);
    }
}

/* A shared budget (the gateway's, or a certificate's) has room again: up to GW_H2_WAKE_MAX
 * waiters, oldest first, whatever their connection, are woken (their upcalls run from their
 * sessions' notify_cb, never from here) or, when another of their budgets has no room, move to
 * its queue. More at the next turn while room remains. */
static void pool_wake_cb(evutil_socket_t fd, short what, void *arg)
{
    struct gw_h2_pool *pool = arg;

    (void)fd;
    (void)what;
    for (unsigned i = 0; i < GW_H2_WAKE_MAX && pool->q.head != NULL && gw_budget_room(&pool->mem);
         i++) {
        struct gw_h2_stream *st = pool->q.head;
        struct waitq *q;
        wq_unlink(st);
        q = wait_queue(st); /* not pool->q: it has room */
        if (q != NULL) {
            wq_push(q, st);
        } else if (!st->notify) {
            st->notify = true;
            gw_h2_notify_soon(st->h2);
        }
    }
    if (pool->q.head != NULL && gw_budget_room(&pool->mem))
        pool_wake_soon(pool);
}

struct gw_h2_pool *gw_h2_pool_new(struct event_base *base, size_t limit)
{
    struct gw_h2_pool *pool = gw_calloc(1, sizeof(*pool));

    if (pool == NULL)
        return NULL;
    gw_budget_init(&pool->mem, limit);
    pool->wake_ev = evtimer_new(base, pool_wake_cb, pool);
    if (pool->wake_ev == NULL) {
        gw_free(pool);
        return NULL;
    }
    return pool;
}

void gw_h2_pool_free(struct gw_h2_pool *pool)
{
    if (pool == NULL)
        return;
    event_free(pool->wake_ev);
    gw_free(pool);
}

void gw_h2_pool_usage(const struct gw_h2_pool *pool, size_t *used, size_t *peak, size_t *limit)
{
    *used = pool->mem.used;
    *peak = pool->mem.peak;
    *limit = pool->mem.limit;
}

/* Starts a stall period: the client must take half of what is queued now (rounded up) within
 * stream_write_timeout_ms. */
static void stall_period(struct gw_h2_stream *st)
{
    size_t queued = evbuffer_get_length(st->out);

    st->progress_ms = gw_clock_ms();
    st->taken = 0;
    st->need = queued / 2u + (queued & 1u);
}

/* The client took n bytes of the stream. A period ends only when the bytes due in it are taken
 * or the queue is empty, never on any byte: a client that opens its window a byte at a time
 * does not keep a stream whose queue does not drain. */
void gw_h2_resp_taken(struct gw_h2_stream *st, size_t n)
{
    size_t queued = evbuffer_get_length(st->out);

    st->taken += n;
    if (queued == 0 || st->taken >= st->need)
        stall_period(st);
    if (st->want_writable && !st->notify && st->wq == NULL && queued < GW_H2_STREAM_LOW)
        ready_or_wait(st);
}

static void arm_stall(struct gw_h2_stream *st, uint64_t ms)
{
    struct timeval tv = {(time_t)(ms / 1000u), (suseconds_t)(ms % 1000u) * 1000};

    (void)evtimer_add(st->stall_ev, &tv);
}

static void stall_cb(evutil_socket_t fd, short what, void *arg)
{
    struct gw_h2_stream *st = arg;
    uint64_t limit = st->h2->cfg->stream_write_timeout_ms, idle;
    unsigned long long taken = st->taken, need = st->need;

    (void)fd;
    (void)what;
    if (gw_h2_stream_queued(st) == 0)
        return; /* nothing waiting: re-armed by the next commit */
    idle = gw_clock_ms() - st->progress_ms;
    if (idle < limit) {
        arm_stall(st, limit - idle);
        return;
    }
    if (gw_h2_stream_log_ok(st))
        GW_LOG(GW_LOG_INFO, "h2", &st->h2->log,
               "stream %d reset: the client took %llu of the %llu response bytes due in %u ms "
               "(half of its queue)",
               (int)st->id, taken, need, (unsigned)limit);
    gw_h2_stream_reset(st);
    (void)gw_h2_flush(st->h2);
}

int gw_h2_resp_queued(struct gw_h2_stream *st, bool was_empty)
{
    if (st->stall_ev == NULL) {
        st->stall_ev = evtimer_new(st->h2->base, stall_cb, st);
        if (st->stall_ev == NULL)
            return GW_ENOMEM;
    }
    /* The stall clock runs only while bytes wait: a client is not blamed for a pause of ours. A
     * timer still pending from an earlier message re-arms itself for the rest of the period. */
    if (was_empty)
        stall_period(st);
    if (!evtimer_pending(st->stall_ev, NULL))
        arm_stall(st, st->h2->cfg->stream_write_timeout_ms);
    return 0;
}

bool gw_h2_stream_writable(const struct gw_h2_stream *st)
{
    /* Bytes the layer above holds are counted already: queueing them adds nothing (it lowers
     * its hold as it sends), so a stream that holds some may queue them whatever the budgets
     * show; waiting for room it holds itself would never end. */
    return gw_h2_stream_queued(st) < GW_H2_STREAM_HIGH && !gw_h2_resp_full(st);
}

void gw_h2_stream_want_writable(struct gw_h2_stream *st)
{
    if (st->answered)
        return;
    st->want_writable = true;
    if (!st->notify && gw_h2_stream_queued(st) < GW_H2_STREAM_LOW)
        ready_or_wait(st);
}
