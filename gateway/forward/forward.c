/* forward.c: the forwarder's engine (forward.h): claims ready deliveries, sends them in batches
 * over CarrierBackend.Deliver, and settles each one by the backend's answer (ack, later with
 * backoff, park with an incident). One claim at a time; at most [forward] inflight batches, each
 * holding one Deliver call at a time. Woken by the outbox listener (NOTIFY) and a poll timer.
 * Invariants: a delivery leaves the outbox only through gw_outbox_ack after the backend answered
 * ACCEPTED for its delivery_id; every claimed delivery ends acked, put back (later), parked, or
 * with its lease running out (when the outcome could not be recorded): never dropped. A batch
 * never waits for another: a slow or refused delivery holds only its own batch. Accepted
 * deliveries are deleted by one gw_outbox_ack at a time for all of them (ack_flush), so a call's
 * slot is free at the backend's answer; [forward] fast_max bounds those whose delete is pending.
 * The fast path ([forward] fast): a waybill this gateway accepted is sent without a claim. The
 * store asks fast_reserve for room before each group insert (all or nothing); with room, the
 * insert takes the lease of the new outbox rows itself (store.h: gw_store_fast_hook) and after
 * the commit fast_done queues each created waybill's outbox row and sealed copy here, bounded by
 * [forward] fast_max (reserved + queued). Queued items go out in batches like claimed ones
 * (a batch that is not full waits up to [forward] linger_ms for more: fast_lingers), packed by
 * the same code from the same kind of row; settlement is the same (the rows carry this owner's
 * lease). An item that waited more than half the lease is dropped from memory: its lease
 * runs out and a claim sends it, so a lease never expires while its item is still queued here.
 * Only deliveries of kind 1 (waybill accepted) go fast: each is its waybill's first row, so the
 * claim's "no earlier row" rule keeps the waybill's scans behind it.
 * The pause: while the backend fails (a call failed or was not started, an answer was malformed,
 * or no delivery of a call was accepted or refused: every one RETRY or without a result), the
 * forwarder claims nothing until resume_ms: its own backoff ([forward] backoff_min_ms doubled per
 * pause in a row, capped at backoff_max_ms, jittered), and never before the client's next
 * connection attempt is due (before it a call fails at once). Then one claim, one batch, probes
 * the backend; no other claim while that batch lives. Its failure pauses again; any call that
 * succeeds ends the pause at once (full speed). Without it, every ready row was claimed,
 * decrypted, sent into an instant failure and put back, back to back, for as long as the backend
 * failed. The rows' own backoff, leases and order are untouched: paused rows stay in the outbox.
 * The breaker (forward_int.h): after [forward] breaker_after permanent refusals in a row with no
 * acceptance (counted per answer, at the answer, on the loop: so at most breaker_after - 1 are
 * parked before it opens), a refused delivery is put back for later instead of parked, an answer
 * that accepted nothing pauses the forwarder as above, and a batch in singles mode sends no more
 * singles; one incident and one ERROR line say so. The first answer that accepts a delivery closes
 * it. Without it, a backend that refused everything had every delivery parked, an incident each,
 * at the intake's rate. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "waygate/v1/backend.pb-c.h"

#include "alloc.h"
#include "app.h"
#include "clock.h"
#include "config.h"
#include "crypto.h"
#include "forward.h"
#include "forward_int.h"
#include "gclient.h"
#include "incident.h"
#include "log.h"
#include "outbox.h"
#include "policy.h"
#include "store.h"

#define FWD_PATH "/waygate.v1.CarrierBackend/Deliver"
#define FWD_REASON_MAX 200 /* outbox.park_reason and last_error: octet_length <= 200 */
/* After a claim that did not fill a batch, the next waits this long: under a steady stream of
 * commits (each one a NOTIFY) the forwarder then claims a batch every 50 ms instead of a few
 * rows per commit, one claim, Deliver call and acknowledgement each (the latency it adds stays
 * far below the backoff of a retry). A full batch is followed by the next claim at once. */
#define FWD_LINGER_MS 50
/* A stop waits this long past a call's deadline for that call's delete. */
#define FWD_DRAIN_SETTLE_MS 2000

enum item_state {
    IT_SEND,  /* to be sent (again) */
    IT_ACK,   /* the backend accepted it */
    IT_LATER, /* send again later */
    IT_PARK,  /* refused for good */
};

struct item {
    int64_t id;
    char delivery_id[37];
    uint8_t record_id[GW_STORE_ID_LEN];
    int32_t attempts;
    uint8_t *pb; /* the packed Delivery */
    size_t pb_len;
    enum item_state st;
    bool sent; /* part of the call in flight */
    bool fast; /* came by the fast path (not claimed) */
    char reason[FWD_REASON_MAX + 1];
};

struct batch;
/* One settlement request (ack, later, or a park) of a batch. */
struct sreq {
    struct batch *b;
    struct gw_outbox_req *req;
};

struct batch {
    struct gw_forward *f;
    struct batch *prev, *next;
    size_t n;
    struct item *items;
    bool singles;         /* the backend refused the whole call: one delivery per call now */
    int64_t lease_end_ms; /* CLOCK_MONOTONIC: the batch's lease ends no earlier than this */
    struct gw_gclient_call *call;
    struct sreq *sreqs; /* n + 1: the later, one park per item (accepted ones: ack_flush) */
    size_t pending;     /* settlement requests in flight */
};

/* A delivery handed over by the store's fast path, waiting for a batch. */
struct fast_item {
    struct gw_store_fast_item s; /* s.w: the sealed copy, owned */
    int64_t sent_ms;             /* its insert was sent then (CLOCK_MONOTONIC ms) */
    int64_t queued_ms;           /* handed over then (CLOCK_MONOTONIC ms): [forward] linger_ms */
};

struct gw_forward {
    struct gw_app *app;
    const struct gw_config *cfg;
    const struct gw_policy *policy;
    char owner[96];
    struct gw_gclient *client;
    struct gw_outbox_listener *listener;
    struct event *poll_ev;
    struct event *linger_ev;     /* ends the rest after a claim that did not fill a batch */
    struct event *drain_ev;      /* bounds a drain: a call's deadline + FWD_DRAIN_SETTLE_MS */
    struct event *fast_ev;       /* ends the linger of a fast batch that is not full */
    struct gw_outbox_req *claim; /* the claim in flight */
    int64_t claim_sent_ms;       /* when it was sent: its leases end no earlier than + lease_ms */
    bool dirty;                  /* woken while a claim was in flight or while resting */
    bool resting;                /* linger_ev pending: the next claim waits for it */
    struct batch *batches;       /* live batches */
    uint32_t nbatches;
    uint64_t fail_streak;  /* consecutive failed calls or claims, for the log's rate */
    char fail_logged[160]; /* "what: why" of the streak's last line */
    bool backend_failing;  /* the last Deliver call failed: no fast sends until one succeeds,
                            * one batch at a time (the probe) */
    int64_t resume_ms;     /* while backend_failing: no claim before (CLOCK_MONOTONIC ms) */
    int32_t pauses;        /* pauses in a row (the backoff's exponent) */
    struct gw_fwd_breaker breaker; /* a backend that refuses everything (forward_int.h) */
    struct fast_item *fastq;       /* ring of cfg->fwd_fast_max; NULL: no fast path */
    size_t fast_head, fast_n;
    size_t fast_reserved; /* promised to group inserts in flight */
    int64_t *acks;        /* accepted by the backend, their delete not yet sent */
    size_t nacks, acks_cap;
    struct gw_outbox_req *ack_req; /* the one delete in flight */
    int64_t *flight;               /* the ids it carries (kept to queue again if it is lost) */
    size_t nack_flight, flight_cap;
    bool draining;
    gw_forward_drained_cb drained_cb;
    void *drained_arg;
    struct gw_forward_stats stats;
};

static void pump(struct gw_forward *f);
static void send_batch(struct batch *b);

/* ---- logging without a flood: the first failure of a streak, then one in 64 ---- */

static void failed(struct gw_forward *f, const char *what, const char *why)
{
    char now[sizeof(f->fail_logged)];

    /* the first of a streak, every 64th, and one whose kind differs from the last line's (a
     * backend that went from refusing connections to answering malformed responses) */
    snprintf(now, sizeof(now), "%s: %s", what, why);
    f->fail_streak++;
    if (f->fail_streak == 1 || f->fail_streak % 64 == 0 || strcmp(now, f->fail_logged) != 0) {
        GW_LOG(GW_LOG_WARN, "forward", NULL, "%s (%" PRIu64 " failure(s) in a row; retried)", now,
               f->fail_streak);
        memcpy(f->fail_logged, now, sizeof(now));
    }
}

static void succeeded(struct gw_forward *f)
{
    if (f->fail_streak > 0)
        GW_LOG(GW_LOG_INFO, "forward", NULL, "backend reachable again after %" PRIu64 " failure(s)",
               f->fail_streak);
    f->fail_streak = 0;
    if (f->backend_failing && f->resting) { /* the pause's rest: full speed from the next pump */
        event_del(f->linger_ev);
        f->resting = false;
    }
    f->backend_failing = false;
    f->resume_ms = 0;
    f->pauses = 0;
}

/* A Deliver call failed (or answered nothing that settles a delivery): the forwarder pauses its
 * claims (the file's comment). A failure while a pause runs (a call started before it) is that
 * pause's: only the probe's, after it, pauses again and longer. */
static void backend_failed(struct gw_forward *f)
{
    int64_t now = (int64_t)gw_clock_ms();
    uint32_t r = 0, ms, client;

    f->backend_failing = true;
    if (f->resume_ms > now)
        return;
    if (f->pauses < 32)
        f->pauses++;
    if (gw_crypto_random(f->app->crypto, (uint8_t *)&r, sizeof(r)) != 0)
        r = (uint32_t)getpid();
    ms = gw_fwd_backoff(f->cfg->fwd_backoff_min_ms, f->cfg->fwd_backoff_max_ms, f->pauses, r);
    client = gw_gclient_retry_in_ms(f->client);
    f->resume_ms = now + (int64_t)(client > ms ? client : ms);
    f->stats.pauses++;
}

/* ---- drain ---- */

static void drained_now_cb(evutil_socket_t fd, short what, void *arg)
{
    struct gw_forward *f = arg;
    gw_forward_drained_cb cb = f->drained_cb;

    (void)fd;
    (void)what;
    f->drained_cb = NULL;
    if (cb != NULL)
        cb(f->drained_arg);
}

static void check_drained(struct gw_forward *f)
{
    if (!f->draining || f->drained_cb == NULL || f->nbatches > 0 || f->claim != NULL ||
        f->fast_n > 0 || f->nacks > 0 || f->ack_req != NULL)
        return;
    if (event_base_once(f->app->base, -1, EV_TIMEOUT, drained_now_cb, f, NULL) != 0)
        drained_now_cb(-1, 0, f);
}

/* ---- batches ---- */

static void batch_free(struct batch *b)
{
    gw_gclient_cancel(b->call);
    for (size_t i = 0; b->sreqs != NULL && i < b->n + 1; i++)
        gw_outbox_cancel(b->sreqs[i].req);
    for (size_t i = 0; i < b->n; i++)
        gw_free_wipe(b->items[i].pb, b->items[i].pb_len); /* a record's view: may hold PII */
    free(b->items);
    free(b->sreqs);
    free(b);
}

static void batch_done(struct batch *b)
{
    struct gw_forward *f = b->f;

    if (b->prev != NULL)
        b->prev->next = b->next;
    else
        f->batches = b->next;
    if (b->next != NULL)
        b->next->prev = b->prev;
    f->nbatches--;
    batch_free(b);
    pump(f);
    check_drained(f);
}

static void settled_cb(void *arg, int err)
{
    struct sreq *s = arg;
    struct batch *b = s->b;

    s->req = NULL;
    if (err != 0) /* the lease runs out and the delivery is claimed again */
        GW_LOG(GW_LOG_WARN, "forward", NULL,
               "a settlement was not recorded (%s): its deliveries are sent again after the "
               "lease",
               gw_err_str(err));
    if (--b->pending == 0)
        batch_done(b);
}

/* Queues an incident of the forwarder's (as the backend role, towards the endpoint): 0, or
 * what gw_incident_record returned. */
static int fwd_incident(struct gw_forward *f, const char *severity, const char *kind,
                        const char *detail, const uint8_t *record_id)
{
    struct gw_incident inc = {
        .severity = severity,
        .kind = kind,
        .principal = f->owner,
        .role = GW_FWD_ROLE,
        .peer = f->cfg->fwd_endpoint,
        .detail = detail,
        .record_id = record_id,
    };

    return gw_incident_record(f->app->incidents, &inc);
}

static void incident_parked(struct gw_forward *f, const struct item *it)
{
    char detail[300];

    snprintf(detail, sizeof(detail), "delivery %s parked after %d attempt(s): %s", it->delivery_id,
             (int)it->attempts, it->reason);
    if (fwd_incident(f, "medium", "delivery_parked", detail, it->record_id) != 0)
        GW_LOG(GW_LOG_ERROR, "forward", NULL, "delivery %s parked: incident not queued",
               it->delivery_id);
}

/* ---- the breaker (forward_int.h): a backend that refuses everything parks nothing more ---- */

/* Opened by the refusal of the delivery whose (redacted) reason is why: one ERROR line and one
 * incident for the whole episode, instead of a park and an incident per delivery. */
static void breaker_opened(struct gw_forward *f, const char *why)
{
    char detail[FWD_REASON_MAX + 200]; /* the words below and the reason whole */

    f->stats.breaker_opens++;
    snprintf(detail, sizeof(detail),
             "%" PRIu32 " deliveries refused in a row, none accepted: refused ones are sent again "
             "later, not parked, until one is accepted; last: %s",
             f->breaker.refusals, why);
    GW_LOG(GW_LOG_ERROR, "forward", NULL,
           "breaker open: the backend refused %" PRIu32 " deliveries in a row and accepted none "
           "([forward] breaker_after); no delivery is parked until it accepts one, refused ones "
           "are sent again at the backoff's pace; last: %s",
           f->breaker.refusals, why);
    if (fwd_incident(f, "high", "forward_breaker_open", detail, NULL) != 0)
        GW_LOG(GW_LOG_ERROR, "forward", NULL, "breaker open: incident not queued");
}

/* An answer that accepted a delivery: the count starts again, and an open breaker closes. */
static void breaker_accepted(struct gw_forward *f)
{
    uint32_t n = f->breaker.refusals;

    if (gw_fwd_breaker_accepted(&f->breaker))
        GW_LOG(GW_LOG_INFO, "forward", NULL,
               "breaker closed: the backend accepted a delivery after %" PRIu32
               " refused in a row; refusals park again",
               n);
}

/* The backend refused it for good (its reason already in it->reason), in an answer that accepted
 * none: parked while the breaker is closed, else back for later, its reason saying why. */
static void breaker_refused(struct gw_forward *f, struct item *it)
{
    bool was_open = f->breaker.open;
    char why[FWD_REASON_MAX + 1];

    if (gw_fwd_breaker_refused(&f->breaker)) {
        it->st = IT_PARK;
        return;
    }
    if (!was_open)
        breaker_opened(f, it->reason);
    it->st = IT_LATER;
    memcpy(why, it->reason, sizeof(why));
    gw_fwd_reason(it->reason, sizeof(it->reason), "breaker open: ", why);
}

/* ---- acknowledgements: one delete at a time, carrying every delivery accepted since the last ----
 * A batch's call slot is free as soon as the backend answered: its accepted deliveries join
 * f->acks, and one gw_outbox_ack at a time deletes all of them. Under sustained intake the
 * deletes wait in the pool behind group commits; the calls no longer wait for them. */

/* Accepted by the backend, still in the outbox (queued for a delete or in the one in flight).
 * New calls wait while it reaches ack_max (the calls in flight may add up to inflight x batch):
 * bounded memory, and a bounded number of rows a crash would send again. */
static size_t ack_backlog(const struct gw_forward *f)
{
    return f->nacks + f->nack_flight;
}

static size_t ack_max(const struct gw_config *cfg)
{
    size_t batch = cfg->fwd_batch;

    return cfg->fwd_fast_max > batch ? cfg->fwd_fast_max : batch;
}

static void ack_flush(struct gw_forward *f);
static bool ack_add(struct gw_forward *f, int64_t id);

/* The delete's ids go back to the queue (the database was away: the delete is idempotent under
 * our lease, so sending it again is safe); false when memory ran out (they are then sent again
 * after their lease). */
static bool ack_requeue(struct gw_forward *f)
{
    for (size_t i = 0; i < f->nack_flight; i++)
        if (!ack_add(f, f->flight[i]))
            return false;
    return true;
}

static void ack_done_cb(void *arg, int err)
{
    struct gw_forward *f = arg;

    f->ack_req = NULL;
    if (err == GW_EUNAVAIL && !f->draining && ack_requeue(f)) {
        failed(f, "delete of acknowledged deliveries", "database unavailable; kept for the next");
    } else if (err != 0) { /* the leases run out and the deliveries are claimed and sent again */
        GW_LOG(GW_LOG_WARN, "forward", NULL,
               "the delete of %zu acknowledged deliveries was not recorded (%s): they are sent "
               "again after the lease",
               f->nack_flight, gw_err_str(err));
    }
    f->nack_flight = 0;
    ack_flush(f);
    pump(f);
    check_drained(f);
}

/* Sends queued acknowledgements as one delete (at most GW_OUTBOX_IDS_MAX; the rest wait for the
 * next), unless one is in flight: its callback sends the rest. A delete that cannot start for want
 * of a connection or of room in the pool's queue keeps its ids for the next try (pump, at the
 * latest the poll timer); any other failure, and any failure while draining (so that a drain
 * ends), leaves them to their leases. */
static void ack_flush(struct gw_forward *f)
{
    size_t n = f->nacks < GW_OUTBOX_IDS_MAX ? f->nacks : GW_OUTBOX_IDS_MAX;
    int rc;

    if (f->ack_req != NULL || n == 0)
        return;
    if (f->flight_cap < n) {
        int64_t *a = realloc(f->flight, n * sizeof(*a));

        if (a == NULL)
            return; /* tried again at the next settlement or pump */
        f->flight = a;
        f->flight_cap = n;
    }
    rc = gw_outbox_ack(f->app->store, f->owner, f->acks, n, ack_done_cb, f, &f->ack_req);
    if ((rc == GW_EUNAVAIL || rc == GW_EQUEUEFULL) && !f->draining) {
        f->ack_req = NULL;
        failed(f, "delete of acknowledged deliveries not started", gw_err_str(rc));
        return; /* kept */
    }
    if (rc != 0) {
        f->ack_req = NULL;
        GW_LOG(GW_LOG_WARN, "forward", NULL,
               "the delete of %zu acknowledged deliveries was not sent (%s): they are sent "
               "again after the lease",
               n, gw_err_str(rc));
    } else {
        memcpy(f->flight, f->acks, n * sizeof(*f->acks)); /* gw_outbox_ack copied them too */
        f->nack_flight = n;
    }
    f->nacks -= n;
    memmove(f->acks, f->acks + n, f->nacks * sizeof(*f->acks));
}

/* Queues an accepted delivery's delete. false on ENOMEM (the caller deletes it with its batch). */
static bool ack_add(struct gw_forward *f, int64_t id)
{
    if (f->nacks == f->acks_cap) {
        size_t cap = f->acks_cap > 0 ? f->acks_cap * 2 : 256;
        int64_t *a = realloc(f->acks, cap * sizeof(*a));

        if (a == NULL)
            return false;
        f->acks = a;
        f->acks_cap = cap;
    }
    f->acks[f->nacks++] = id;
    return true;
}

/* Records every delivery's outcome: accepted ones join the forwarder's next delete (ack_add; one
 * that finds no memory is sent again later), one later (the batch's largest backoff), one park
 * each. The batch, and its call slot, end when the later and the parks are recorded: at once when
 * every delivery was accepted. */
static void settle(struct batch *b)
{
    struct gw_forward *f = b->f;
    const struct gw_config *cfg = f->cfg;
    int64_t *later = calloc(b->n, sizeof(*later));
    size_t nl = 0;
    int32_t most = 0;
    const char *why = "later";
    uint32_t r = 0;
    int rc;

    b->pending = 1; /* held until every request is queued */
    for (size_t i = 0; i < b->n; i++) {
        struct item *it = &b->items[i];

        if (it->st == IT_ACK && ack_add(f, it->id)) {
            f->stats.acked++;
            f->stats.fast_acked += it->fast;
        } else if (it->st == IT_PARK) {
            GW_LOG(GW_LOG_WARN, "forward", NULL, "delivery %s parked: %s", it->delivery_id,
                   it->reason);
            rc = gw_outbox_park(f->app->store, f->owner, it->id, it->reason, settled_cb,
                                &b->sreqs[1 + i], &b->sreqs[1 + i].req);
            if (rc == 0) {
                b->pending++;
                f->stats.parked++;
                incident_parked(f, it);
            }
        } else if (later != NULL) { /* IT_LATER, IT_SEND left over, or an ack without memory */
            later[nl++] = it->id;
            if (it->attempts > most)
                most = it->attempts;
            if (it->st != IT_ACK && it->reason[0])
                why = it->reason;
            f->stats.later++;
        }
    }
    if (nl > 0) {
        if (gw_crypto_random(f->app->crypto, (uint8_t *)&r, sizeof(r)) != 0)
            r = (uint32_t)getpid();
        if (gw_outbox_later(
                f->app->store, f->owner, later, nl,
                gw_fwd_backoff(cfg->fwd_backoff_min_ms, cfg->fwd_backoff_max_ms, most, r), why,
                settled_cb, &b->sreqs[0], &b->sreqs[0].req) == 0)
            b->pending++;
    }
    free(later);
    ack_flush(f);
    if (--b->pending == 0)
        batch_done(b);
}

/* The deliveries of the call in flight get outcome st (with reason); a refusal (IT_PARK) is
 * counted by the breaker, which may send it back for later instead. */
static void mark_sent(struct batch *b, enum item_state st, const char *prefix, const char *why,
                      bool backend)
{
    for (size_t i = 0; i < b->n; i++) {
        struct item *it = &b->items[i];

        if (!it->sent)
            continue;
        it->sent = false;
        it->st = st;
        if (backend) /* the backend's words: values in them redacted */
            gw_fwd_backend_reason(it->reason, sizeof(it->reason), prefix, why);
        else
            gw_fwd_reason(it->reason, sizeof(it->reason), prefix, why);
        if (st == IT_PARK)
            breaker_refused(b->f, it);
    }
}

static size_t count_sent(const struct batch *b)
{
    size_t n = 0;

    for (size_t i = 0; i < b->n; i++)
        n += b->items[i].sent;
    return n;
}

/* An OK answer: one result per delivery (any order); a delivery without one goes later, and all
 * of them when the answer is malformed (gw_fwd_response_check). Returns NULL, or what was
 * malformed: the backend failed (logged and paced as a failed call). */
static const char *apply_results(struct batch *b, const uint8_t *resp, size_t len)
{
    Waygate__V1__DeliverResponse *r = NULL;
    size_t m = count_sent(b), n = 0;
    const char **ids = NULL;
    struct item **its = NULL;
    const Waygate__V1__DeliveryResult **res = NULL;
    const char *bad;
    bool accepted = false;
    int rc;

    bad = gw_fwd_response_check(resp, len, m);
    if (bad == NULL && (r = waygate__v1__deliver_response__unpack(NULL, len, resp)) == NULL)
        bad = GW_FWD_MALFORMED;
    if (bad != NULL) {
        mark_sent(b, IT_LATER, NULL, bad, false);
        return bad;
    }
    ids = malloc((m > 0 ? m : 1) * sizeof(*ids));
    its = malloc((m > 0 ? m : 1) * sizeof(*its));
    res = malloc((m > 0 ? m : 1) * sizeof(*res));
    if (ids == NULL || its == NULL || res == NULL) {
        mark_sent(b, IT_LATER, NULL, "out of memory for the DeliverResponse", false);
        goto out;
    }
    for (size_t i = 0; i < b->n; i++)
        if (b->items[i].sent) {
            ids[n] = b->items[i].delivery_id;
            its[n++] = &b->items[i];
        }
    rc = gw_fwd_match_results(r, ids, n, res);
    if (rc == GW_EPROTO) {
        bad = GW_FWD_MORE_RESULTS;
        mark_sent(b, IT_LATER, NULL, bad, false);
        goto out;
    }
    if (rc != 0) {
        mark_sent(b, IT_LATER, NULL, "out of memory for the DeliverResponse", false);
        goto out;
    }
    /* an answer that accepted any delivery closes the breaker first: its refusals park */
    for (size_t i = 0; i < n; i++)
        if (res[i] != NULL &&
            res[i]->outcome == WAYGATE__V1__DELIVERY_RESULT__OUTCOME__OUTCOME_ACCEPTED) {
            breaker_accepted(b->f);
            accepted = true;
            break;
        }
    for (size_t i = 0; i < n; i++) {
        struct item *it = its[i];

        if (res[i] == NULL)
            continue; /* no result: later, below */
        it->sent = false;
        switch (res[i]->outcome) {
        case WAYGATE__V1__DELIVERY_RESULT__OUTCOME__OUTCOME_ACCEPTED:
            it->st = IT_ACK;
            break;
        case WAYGATE__V1__DELIVERY_RESULT__OUTCOME__OUTCOME_REJECTED:
            it->st = IT_PARK;
            gw_fwd_backend_reason(it->reason, sizeof(it->reason), "REJECTED: ",
                                  res[i]->reason[0] ? res[i]->reason : "(no reason given)");
            if (!accepted)
                breaker_refused(b->f, it);
            break;
        default:
            it->st = IT_LATER;
            gw_fwd_reason(it->reason, sizeof(it->reason), NULL, "RETRY");
            break;
        }
    }
    mark_sent(b, IT_LATER, NULL, "no result", false);
out:
    free(ids);
    free(its);
    free(res);
    waygate__v1__deliver_response__free_unpacked(r, NULL);
    return bad;
}

/* What the batch has not sent yet goes back for later (why: the reason kept with it), and the
 * batch is settled. */
static void settle_unsent(struct batch *b, const char *why)
{
    for (size_t i = 0; i < b->n; i++)
        if (b->items[i].st == IT_SEND) {
            b->items[i].st = IT_LATER;
            gw_fwd_reason(b->items[i].reason, sizeof(b->items[i].reason), NULL, why);
        }
    settle(b);
}

/* Deliveries of the batch accepted or refused (by any of its calls). */
static size_t count_settled(const struct batch *b)
{
    size_t n = 0;

    for (size_t i = 0; i < b->n; i++)
        n += b->items[i].st == IT_ACK || b->items[i].st == IT_PARK;
    return n;
}

/* The breaker is open after an answer that accepted nothing: paced as a failing backend (one
 * probe batch per pause), so refusals cost the backoff's pace, not the intake's. */
static void breaker_pause(struct gw_forward *f)
{
    failed(f, "Deliver answered", "no delivery accepted while the breaker is open");
    backend_failed(f);
}

static bool has_unsent(const struct batch *b)
{
    for (size_t i = 0; i < b->n; i++)
        if (b->items[i].st == IT_SEND)
            return true;
    return false;
}

static void call_cb(void *arg, const struct gw_gclient_result *res)
{
    struct batch *b = arg;
    struct gw_forward *f = b->f;

    b->call = NULL;
    if (res->status == GW_GRPC_OK) {
        size_t before = count_settled(b);
        const char *bad = apply_results(b, res->response, res->response_len);

        if (bad == NULL && f->breaker.open) {
            breaker_pause(f); /* it accepted none (an acceptance closes the breaker) */
        } else if (bad == NULL && count_settled(b) > before) {
            succeeded(f);
        } else if (bad == NULL) { /* a backend that takes nothing: paced as a failing one */
            failed(f, "Deliver answered", "no delivery accepted or refused (RETRY, no result)");
            backend_failed(f);
        } else {
            failed(f, "Deliver answered", bad);
            backend_failed(f);
        }
    } else if (res->status == GW_GRPC_INVALID_ARGUMENT && count_sent(b) > 1 && !f->breaker.open) {
        /* the backend refused the whole call: find the refused one by sending one by one */
        succeeded(f);
        for (size_t i = 0; i < b->n; i++)
            b->items[i].sent = false;
        b->singles = true;
    } else if (res->status == GW_GRPC_INVALID_ARGUMENT) {
        /* one delivery refused, or a whole batch while the breaker is open (each goes back) */
        mark_sent(b, IT_PARK, "INVALID_ARGUMENT: ", res->message, true);
        if (f->breaker.open)
            breaker_pause(f);
        else
            succeeded(f);
    } else {
        failed(f, "Deliver", gw_grpc_status_name(res->status));
        backend_failed(f);
        mark_sent(b, IT_LATER, NULL, gw_grpc_status_name(res->status), false);
    }
    if (f->draining) /* the drain waits for the calls in flight and starts none */
        settle_unsent(b, "the gateway is stopping");
    else if (f->breaker.open && has_unsent(b)) /* singles: no call each at the intake's pace */
        settle_unsent(b, "breaker open: not sent");
    else
        send_batch(b);
}

/* Sends what is left to send (all of it, or the next one alone in singles mode); when nothing
 * is, settles the batch. The request is the concatenation of the packed deliveries, which is
 * exactly the packed DeliverRequest. */
static void send_batch(struct batch *b)
{
    struct gw_forward *f = b->f;
    size_t len = 0, o = 0, n = 0;
    uint32_t deadline = f->cfg->fwd_deadline_ms;
    int64_t room = gw_fwd_call_room_ms(b->lease_end_ms, (int64_t)gw_clock_ms(), deadline);
    uint8_t *req;
    int rc;

    if (room <= 0) {
        /* no call may outlive the batch's lease (the deliveries would be another gateway's,
         * and its settlement could meet the other's lease): what is left goes back for later */
        settle_unsent(b, "the lease ends before another call could");
        return;
    }
    deadline = (uint32_t)room;
    for (size_t i = 0; i < b->n; i++)
        if (b->items[i].st == IT_SEND && (!b->singles || n == 0)) {
            b->items[i].sent = true;
            len += b->items[i].pb_len + GW_FWD_FIELD_HEAD;
            n++;
        }
    if (n == 0) {
        settle(b);
        return;
    }
    req = malloc(len);
    if (req != NULL)
        for (size_t i = 0; i < b->n; i++)
            if (b->items[i].sent)
                o += gw_fwd_put_delivery(req + o, b->items[i].pb, b->items[i].pb_len);
    rc = req != NULL ? gw_gclient_call(f->client, FWD_PATH, req, o, deadline, call_cb, b, &b->call)
                     : GW_ENOMEM;
    gw_free_wipe(req, len); /* the client keeps its own copy (wiped when the call is freed) */
    if (rc != 0) {
        failed(f, "Deliver not started", gw_err_str(rc));
        backend_failed(f);
        mark_sent(b, IT_LATER, NULL, "not sent", false);
        settle(b);
        return;
    }
    f->stats.sent += n;
    for (size_t i = 0; i < b->n; i++)
        f->stats.fast_sent += b->items[i].sent && b->items[i].fast;
}

/* A claimed item: its ids, and its packed Delivery, or already its outcome when it cannot be
 * packed (a record that fails authentication is parked; a missing key waits). */
static void take_item(struct gw_forward *f, struct item *it, const struct gw_outbox_item *src)
{
    int rc;

    it->id = src->id;
    memcpy(it->delivery_id, src->delivery_id, sizeof(it->delivery_id));
    it->delivery_id[sizeof(it->delivery_id) - 1] = '\0';
    memcpy(it->record_id, src->row->w.id, sizeof(it->record_id));
    it->attempts = src->attempts;
    it->st = IT_SEND;
    rc = gw_fwd_pack(f->app, f->policy, src, &it->pb, &it->pb_len);
    if (rc == GW_EDATALOSS) {
        it->st = IT_PARK;
        gw_fwd_reason(it->reason, sizeof(it->reason), NULL,
                      "the stored record failed authentication: not delivered");
    } else if (rc != 0) {
        it->st = IT_LATER;
        gw_fwd_reason(it->reason, sizeof(it->reason),
                      rc == GW_EPRECOND ? "key unavailable: " : "not packed: ", gw_err_str(rc));
    }
}

/* An empty batch of n items (NULL on ENOMEM), not yet listed. */
static struct batch *batch_alloc(struct gw_forward *f, size_t n)
{
    struct batch *b = calloc(1, sizeof(*b));

    if (b == NULL)
        return NULL;
    b->f = f;
    b->n = n;
    b->lease_end_ms = INT64_MAX; /* its maker sets the lease's end */
    b->items = calloc(n > 0 ? n : 1, sizeof(*b->items));
    b->sreqs = calloc(n + 1, sizeof(*b->sreqs));
    if (b->items == NULL || b->sreqs == NULL) {
        batch_free(b);
        return NULL;
    }
    for (size_t i = 0; i < n + 1; i++)
        b->sreqs[i].b = b;
    return b;
}

static void batch_list(struct gw_forward *f, struct batch *b)
{
    b->next = f->batches;
    if (f->batches != NULL)
        f->batches->prev = b;
    f->batches = b;
    f->nbatches++;
}

static struct batch *batch_new(struct gw_forward *f, const struct gw_outbox_claim *c)
{
    size_t n = gw_outbox_claim_count(c);
    struct batch *b = batch_alloc(f, n);

    if (b == NULL)
        return NULL;
    for (size_t i = 0; i < n; i++)
        take_item(f, &b->items[i], gw_outbox_claim_item(c, i));
    f->stats.claimed += n;
    batch_list(f, b);
    return b;
}

/* ---- the fast path ---- */

/* The store's question before a group insert: room for n more? Reserves them. No while the
 * backend fails (the last Deliver call failed: the claim's backoff paces the retries) or while
 * draining. A failed claim (the database) does not close it: the insert's commit is what proves
 * the database, and a claim that only other gateways' rows keep empty would never reopen it. */
static bool fast_reserve(void *arg, size_t n)
{
    struct gw_forward *f = arg;

    if (f->draining || f->backend_failing ||
        f->fast_reserved + f->fast_n + n > f->cfg->fwd_fast_max)
        return false;
    f->fast_reserved += n;
    return true;
}

/* The group that reserved `reserved` ended: its created waybills join the queue (the
 * reservation guarantees the room). */
static void fast_done(void *arg, size_t reserved, struct gw_store_fast_item *items, size_t n,
                      int64_t sent_ms)
{
    struct gw_forward *f = arg;
    size_t cap = f->cfg->fwd_fast_max;
    int64_t now = (int64_t)gw_clock_ms();

    f->fast_reserved -= reserved < f->fast_reserved ? reserved : f->fast_reserved;
    for (size_t i = 0; i < n; i++) {
        if (f->draining || f->fast_n >= cap) { /* the lease runs out; a claim sends it */
            gw_store_sealed_free(items[i].w);
            f->stats.fast_dropped++;
            continue;
        }
        f->fastq[(f->fast_head + f->fast_n) % cap] =
            (struct fast_item){.s = items[i], .sent_ms = sent_ms, .queued_ms = now};
        f->fast_n++;
    }
    if (n > 0)
        pump(f);
}

/* The oldest queued item, removed from the queue (its copy now the caller's). */
static struct fast_item fast_pop(struct gw_forward *f)
{
    struct fast_item q = f->fastq[f->fast_head];

    f->fast_head = (f->fast_head + 1) % f->cfg->fwd_fast_max;
    f->fast_n--;
    return q;
}

/* A fast item into a batch item: the same gw_outbox_item a claim makes of the row (a new
 * waybill: kind 1, no scan facts yet, status none; the backend's view does not depend on the
 * destination branch), packed by the same code. */
static void take_fast(struct gw_forward *f, struct item *it, const struct fast_item *q)
{
    struct gw_store_row row;
    struct gw_outbox_item src;

    memset(&row, 0, sizeof(row));
    memset(&src, 0, sizeof(src));
    row.w = *q->s.w;
    src.id = q->s.outbox_id;
    memcpy(src.delivery_id, q->s.delivery_id, sizeof(src.delivery_id));
    src.kind = GW_OUTBOX_WAYBILL;
    gw_store_id_text(q->s.w->id, src.record_id);
    src.enqueued_at_us = q->s.enqueued_at_us;
    src.attempts = 1;
    src.row = &row;
    take_item(f, it, &src);
    it->fast = true;
    gw_wipe(&row, sizeof(row)); /* its blind indexes and MACs, as the heap copy's free does */
}

/* Drops every queued fast item: their leases run out and a claim sends them. */
static void drop_fast(struct gw_forward *f)
{
    while (f->fast_n > 0) {
        gw_store_sealed_free(fast_pop(f).s.w);
        f->stats.fast_dropped++;
    }
}

/* Stopping while the backend fails: what is queued is dropped at once (said once). */
static void drop_fast_draining(struct gw_forward *f)
{
    if (f->fast_n == 0)
        return;
    GW_LOG(GW_LOG_WARN, "forward", NULL,
           "stopping while the backend fails: %zu queued deliveries left to their leases (a claim "
           "sends them)",
           f->fast_n);
    drop_fast(f);
}

static void fast_linger_cb(evutil_socket_t fd, short what, void *arg)
{
    struct gw_forward *f = arg;

    (void)fd;
    (void)what;
    pump(f);
}

/* Whether the queue, not a full batch, waits for more ([forward] linger_ms): until its oldest
 * item has been queued that long, counted from its handover (the group commit's time is not
 * the backend's), and never past half the time an item may wait in memory counted from its
 * insert's sending (pump_fast drops it past the whole, counted so: a linger near its bound, or
 * a slow commit, would otherwise have the batch dropped when it leaves). Fewer, fuller Deliver
 * calls under load (a call, its acknowledgement's delete and the wake-ups on both sides cost as
 * much as twenty deliveries' packing), at most linger_ms more on the way when idle. A stop sends
 * at once. Sets the timer that ends the wait to the queue's end as it is now (event_add moves a
 * pending one). The queue holds fewer than batch items here, so the walk over it is short. */
static bool fast_lingers(struct gw_forward *f, int64_t now)
{
    const struct gw_config *cfg = f->cfg;
    int64_t end = f->fastq[f->fast_head].queued_ms + (int64_t)cfg->fwd_linger_ms;
    int64_t half = gw_config_fwd_fast_wait_ms(cfg) / 2;
    struct timeval tv;

    if (f->draining || f->fast_n >= cfg->fwd_batch || now >= end)
        return false;
    for (size_t i = 0; i < f->fast_n; i++) {
        int64_t cut = f->fastq[(f->fast_head + i) % cfg->fwd_fast_max].sent_ms + half;
        if (cut < end)
            end = cut;
    }
    if (now >= end)
        return false;
    tv = gw_clock_tv((uint64_t)(end - now));
    return event_add(f->fast_ev, &tv) == 0; /* no timer: sent now rather than left waiting */
}

/* Sends queued fast items in batches while a batch slot is free and the queue does not linger
 * (fast_lingers); a claim in flight holds a slot of its own (pump starts a due claim first), so
 * the fast path never starves what only a claim sends (scans, retries, rows whose lease ran
 * out). Items that waited longer than gw_config_fwd_fast_wait_ms are dropped (a claim sends
 * them once their lease ran out). */
static void pump_fast(struct gw_forward *f)
{
    const struct gw_config *cfg = f->cfg;
    int64_t now = (int64_t)gw_clock_ms(), max_wait = gw_config_fwd_fast_wait_ms(cfg);

    /* while draining, what is queued goes out only to a backend that answers: a failing one
     * would hold the drain a deadline per call, and nothing but a successful call would ever
     * empty the queue the drain waits for (review: a stop that never ended). Dropped: the
     * queued rows' leases run out and a claim sends them. */
    if (f->draining && f->backend_failing) {
        drop_fast_draining(f);
        return;
    }

    while (f->fast_n > 0 && f->nbatches + (f->claim != NULL) < cfg->fwd_inflight &&
           ack_backlog(f) < ack_max(cfg) && !fast_lingers(f, now)) {
        size_t n = f->fast_n < cfg->fwd_batch ? f->fast_n : cfg->fwd_batch, k = 0;
        struct batch *b = batch_alloc(f, n);

        if (b == NULL)
            return; /* tried again at the next pump; past the fast wait, dropped */
        while (k < n && f->fast_n > 0) {
            struct fast_item q = fast_pop(f);

            if (now - q.sent_ms > max_wait) {
                f->stats.fast_dropped++;
            } else {
                /* the insert took the lease after it was sent (a second's margin below) */
                int64_t end = q.sent_ms + (int64_t)cfg->fwd_lease_ms;
                if (end < b->lease_end_ms)
                    b->lease_end_ms = end;
                take_fast(f, &b->items[k++], &q);
            }
            gw_store_sealed_free(q.s.w);
        }
        b->n = k;
        if (k == 0) {
            batch_free(b);
            continue;
        }
        batch_list(f, b);
        send_batch(b);
    }
}

/* The next claim waits ms (a wake meanwhile only marks the forwarder dirty). */
static void rest(struct gw_forward *f, int64_t ms)
{
    struct timeval tv = gw_clock_tv(ms);

    if (event_add(f->linger_ev, &tv) == 0)
        f->resting = true;
}

static void linger_cb(evutil_socket_t fd, short what, void *arg)
{
    struct gw_forward *f = arg;

    (void)fd;
    (void)what;
    f->resting = false;
    if (f->dirty)
        pump(f);
}

static void claimed_cb(void *arg, int err, struct gw_outbox_claim *claim)
{
    struct gw_forward *f = arg;
    struct batch *b = NULL;
    size_t n;

    f->claim = NULL;
    if (err != 0) {
        failed(f, "claim", gw_err_str(err)); /* the poll timer tries again */
        pump_fast(f);                        /* the slot it held */
        check_drained(f);
        return;
    }
    n = gw_outbox_claim_count(claim);
    if (n > 0) {
        b = batch_new(f, claim);
        if (b != NULL)
            b->lease_end_ms = f->claim_sent_ms + (int64_t)f->cfg->fwd_lease_ms;
        else /* the leases run out and the deliveries are claimed again */
            GW_LOG(GW_LOG_ERROR, "forward", NULL,
                   "%zu claimed deliveries dropped for want of "
                   "memory: sent after their lease",
                   n);
    }
    gw_outbox_claim_free(claim);
    if (b != NULL)
        send_batch(b);
    if (n < f->cfg->fwd_batch)
        rest(f, FWD_LINGER_MS);
    else
        f->dirty = true; /* a full batch: more may be ready */
    if (f->dirty)
        pump(f);
    else
        pump_fast(f); /* fast items the claim's slot kept waiting (inflight = 1): now, not at the
                       * next poll, which could come after they were dropped to their leases */
    check_drained(f);
}

/* Claims more when a batch slot is free, no claim is in flight and none is resting, and, while
 * the backend fails, once the pause is over and no batch lives (the probe); then fills the free
 * slots with queued fast items (a due claim goes first, so fast items never starve it). */
static void pump(struct gw_forward *f)
{
    const struct gw_config *cfg = f->cfg;
    int64_t wait;
    int rc;

    ack_flush(f); /* one that could not start before (no connection, a full queue) */
    if (f->draining) {
        /* claims nothing more */
    } else if (f->claim != NULL || f->resting || f->nbatches >= cfg->fwd_inflight ||
               ack_backlog(f) >= ack_max(cfg) || (f->backend_failing && f->nbatches > 0)) {
        f->dirty = true; /* claimed_cb, linger_cb, batch_done or ack_done_cb pumps again */
    } else if (f->backend_failing && (wait = f->resume_ms - (int64_t)gw_clock_ms()) > 0) {
        f->dirty = true; /* paused: linger_cb pumps again when it is over */
        rest(f, wait);
    } else {
        f->dirty = false;
        f->claim_sent_ms = (int64_t)gw_clock_ms();
        /* while the breaker is open a probe carries one delivery: a refused one goes back
         * under its own backoff, so the next probe is another (a group refused together for one
         * bad delivery would be claimed together again and keep the breaker open) */
        rc = gw_outbox_claim(f->app->store, f->owner, f->breaker.open ? 1u : cfg->fwd_batch,
                             cfg->fwd_lease_ms, claimed_cb, f, &f->claim);
        if (rc != 0) {
            f->claim = NULL;
            failed(f, "claim not started", gw_err_str(rc));
        }
    }
    pump_fast(f); /* also while draining: what is queued goes out */
}

static void wake_cb(void *arg)
{
    pump(arg);
}

static void poll_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    pump(arg);
}

/* ---- lifecycle ---- */

static void make_owner(struct gw_forward *f, const char *owner)
{
    char host[64] = "host";
    uint32_t r = 0;

    if (owner != NULL && owner[0]) {
        snprintf(f->owner, sizeof(f->owner), "%s", owner);
        return;
    }
    if (gethostname(host, sizeof(host)) != 0)
        snprintf(host, sizeof(host), "host");
    host[sizeof(host) - 1] = '\0';
    if (gw_crypto_random(f->app->crypto, (uint8_t *)&r, sizeof(r)) != 0)
        r = 0;
    snprintf(f->owner, sizeof(f->owner), "%.48s:%ld:%08x", host, (long)getpid(), (unsigned)r);
}

/* Registers the fast path's hook with the store (the queue allocated first). */
static bool fast_start(struct gw_forward *f)
{
    struct gw_store_fast_hook h = {.owner = f->owner,
                                   .lease_ms = f->cfg->fwd_lease_ms,
                                   .reserve = fast_reserve,
                                   .done = fast_done,
                                   .arg = f};

    f->fastq = calloc(f->cfg->fwd_fast_max, sizeof(*f->fastq));
    return f->fastq != NULL && gw_store_set_fast(f->app->store, &h) == 0;
}

static void drain_timeout_cb(evutil_socket_t fd, short what, void *arg);

struct gw_forward *gw_forward_new(struct gw_app *app, const struct gw_policy *policy,
                                  const char *owner, char *err, size_t errlen)
{
    const struct gw_config *cfg = app->cfg;
    struct gw_forward *f = calloc(1, sizeof(*f));
    struct gw_gclient_params gp = {
        .base = app->base,
        .endpoint = cfg->fwd_endpoint,
        .server_name = cfg->fwd_server_name,
        .ca = cfg->fwd_ca,
        .cert = cfg->fwd_cert,
        .key = cfg->fwd_key,
        .crl = cfg->fwd_crl,
        .connect_timeout_ms = cfg->fwd_deadline_ms,
        /* one result per delivery: ids, an outcome, a reason of a few hundred bytes */
        .max_response = 65536u + cfg->fwd_batch * 1024u,
    };
    struct timeval tv = gw_clock_tv(cfg->fwd_poll_ms);

    if (f == NULL) {
        snprintf(err, errlen, "[forward]: out of memory");
        return NULL;
    }
    f->app = app;
    f->cfg = cfg;
    f->policy = gw_policy_ref(policy);
    f->breaker.after = cfg->fwd_breaker_after;
    make_owner(f, owner);
    f->client = gw_gclient_new(&gp, err, errlen);
    if (f->client == NULL) {
        gw_forward_free(f);
        return NULL;
    }
    f->poll_ev = event_new(app->base, -1, EV_PERSIST, poll_cb, f);
    f->linger_ev = evtimer_new(app->base, linger_cb, f);
    f->drain_ev = evtimer_new(app->base, drain_timeout_cb, f);
    f->fast_ev = evtimer_new(app->base, fast_linger_cb, f);
    f->listener = gw_outbox_listen(app->store, wake_cb, f);
    if (gw_outbox_prepare(app->store) != 0)
        GW_LOG(GW_LOG_WARN, "forward", NULL, "outbox statements not prepared");
    if (cfg->fwd_fast && !fast_start(f)) {
        snprintf(err, errlen, "[forward]: cannot start the fast path");
        gw_forward_free(f);
        return NULL;
    }
    if (f->poll_ev == NULL || f->linger_ev == NULL || f->drain_ev == NULL || f->fast_ev == NULL ||
        f->listener == NULL || event_add(f->poll_ev, &tv) != 0) {
        snprintf(err, errlen, "[forward]: cannot start the outbox listener or poll timer");
        gw_forward_free(f);
        return NULL;
    }
    GW_LOG(GW_LOG_INFO, "forward", NULL,
           "forwarding the outbox to %s (lease owner %s, batch %u, inflight %u, fast path %s, "
           "linger %u ms)",
           cfg->fwd_endpoint, f->owner, cfg->fwd_batch, cfg->fwd_inflight,
           cfg->fwd_fast ? "on" : "off", cfg->fwd_fast ? cfg->fwd_linger_ms : 0u);
    return f;
}

void gw_forward_set_policy(struct gw_forward *f, const struct gw_policy *policy)
{
    const struct gw_policy *old = f->policy;

    f->policy = gw_policy_ref(policy);
    gw_policy_unref(old);
}

int gw_forward_reload_tls(struct gw_forward *f, char *err, size_t errlen)
{
    return gw_gclient_reload_tls(f->client, err, errlen);
}

void gw_forward_tls_expiry(const struct gw_forward *f, struct gw_tls_expiry *out)
{
    gw_gclient_tls_expiry(f->client, out);
}

/* The drain's bound: one call's deadline after it began, and FWD_DRAIN_SETTLE_MS for the
 * settlement of a call that began just before it (its delete). What is still queued is dropped
 * and the calls still in flight are left to end on their own; the deliveries of either are sent
 * again after their leases (at least once: a call that ends meanwhile is settled as usual). */
static void drain_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    struct gw_forward *f = arg;

    (void)fd;
    (void)what;
    if (f->drained_cb == NULL)
        return;
    GW_LOG(
        GW_LOG_WARN, "forward", NULL,
        "stopping: the forwarder's drain reached [forward] deadline_ms and 2 s; %zu queued and the "
        "deliveries of %" PRIu32 " call(s) in flight are sent again after their leases",
        f->fast_n, f->nbatches);
    drop_fast(f);
    drained_now_cb(-1, 0, f);
}

void gw_forward_drain(struct gw_forward *f, gw_forward_drained_cb cb, void *arg)
{
    struct timeval tv = gw_clock_tv((uint64_t)f->cfg->fwd_deadline_ms + FWD_DRAIN_SETTLE_MS);

    f->draining = true;
    f->drained_cb = cb;
    f->drained_arg = arg;
    if (f->poll_ev != NULL)
        event_del(f->poll_ev);
    if (evtimer_add(f->drain_ev, &tv) != 0)
        GW_LOG(GW_LOG_ERROR, "forward", NULL, "the drain's bound was not set");
    ack_flush(f); /* ids kept from a delete that could not start: sent now, or left to leases */
    pump_fast(f);
    check_drained(f);
}

void gw_forward_free(struct gw_forward *f)
{
    struct batch *b, *next;

    if (f == NULL)
        return;
    if (f->fastq != NULL) { /* queued items: their leases run out and a claim sends them */
        if (gw_store_set_fast(f->app->store, NULL) != 0)
            GW_LOG(GW_LOG_ERROR, "forward", NULL, "fast path not removed");
        while (f->fast_n > 0)
            gw_store_sealed_free(fast_pop(f).s.w);
        free(f->fastq);
    }
    for (b = f->batches; b != NULL; b = next) {
        next = b->next;
        batch_free(b);
    }
    gw_outbox_cancel(f->claim);
    gw_outbox_cancel(
        f->ack_req); /* its deliveries and the queued ones: sent again after the lease */
    free(f->acks);
    free(f->flight);
    gw_outbox_listener_free(f->listener);
    if (f->poll_ev != NULL)
        event_free(f->poll_ev);
    if (f->linger_ev != NULL)
        event_free(f->linger_ev);
    if (f->fast_ev != NULL)
        event_free(f->fast_ev);
    if (f->drain_ev != NULL)
        event_free(f->drain_ev);
    gw_gclient_free(f->client);
    gw_policy_unref(f->policy);
    free(f);
}

void gw_forward_stats(const struct gw_forward *f, struct gw_forward_stats *out)
{
    *out = f->stats;
    out->inflight = f->nbatches;
    out->fast_queued = (uint32_t)f->fast_n;
    out->ack_pending = (uint32_t)ack_backlog(f);
    out->paused = f->backend_failing;
    out->breaker_open = f->breaker.open;
    out->breaker_refusals = f->breaker.refusals;
}
