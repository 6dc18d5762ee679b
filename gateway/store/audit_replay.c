/* audit_replay.c: a spool's entries handed to the audit writer (audit_replay.h). Each entry is
 * WAITING (not handed over), QUEUED (the writer's), DONE (written, or written before) or FAILED
 * (the writer gave up on it: known not written); the file goes once all are DONE, or FAILED in a
 * version 1 file. Invariant: entries before next are QUEUED, DONE or FAILED; entries in doubt are
 * QUEUED from the start. */
#include "audit_replay.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "alloc.h"
#include "clock.h"
#include "file.h"
#include "log.h"

#define RETRY_MS 250 /* the writer's queue was full: asked again after */

enum state { WAITING, QUEUED, DONE, FAILED };

struct item {
    struct gw_audit_replay *r;
    enum state state;
};

struct gw_audit_replay {
    struct gw_audit *a;
    struct gw_audit_spool *sp;
    char *path;
    struct item *items;
    size_t n, next, done;
    uint64_t failed;
    uint64_t skipped; /* written before: their mark was there (a replay again) */
    bool gone;        /* the file removed (or never there to remove) */
    bool halted;      /* gw_audit_replay_halt: nothing more handed over nor removed */
    struct event *ev_retry;
};

static void feed(struct gw_audit_replay *r);

/* Whether the file may be replayed again as it is: its entries are marked (version 2), so one
 * written already is skipped, not written twice. */
static bool marked(const struct gw_audit_replay *r)
{
    return gw_audit_spool_version(r->sp) >= 2;
}

/* Every entry has answered: the file is no longer needed, unless some failed and it is marked:
 * then it stays, the next start writes those and skips the others (a stop carries them into the
 * next spool all the same, gw_audit_replay_leftover, which replaces it). */
static void finished(struct gw_audit_replay *r)
{
    char err[512];

    if (r->failed > 0 && marked(r)) {
        GW_LOG(GW_LOG_ERROR, "audit", NULL,
               "spool %s: %zu entr%s written, %" PRIu64 " failed; file kept: the next start "
               "writes the failed ones and skips the others (their mark); %" PRIu64
               " written before (by an earlier replay), skipped",
               r->path, r->n - (size_t)(r->failed + r->skipped),
               r->n - (size_t)(r->failed + r->skipped) == 1 ? "y" : "ies", r->failed, r->skipped);
        return;
    }
    if (unlink(r->path) != 0 && errno != ENOENT) {
        GW_LOG(GW_LOG_ERROR, "audit", NULL,
               "spool %s: its %zu entries answered, but it cannot be removed (%s): remove it "
               "before the next start, or they are written again",
               r->path, r->n, strerror(errno));
        return;
    }
    r->gone = true;
    if (gw_file_sync_dir(r->path, err, sizeof err) != 0)
        GW_LOG(GW_LOG_WARN, "audit", NULL, "spool %s removed, but %s", r->path, err);
    GW_LOG(r->failed    ? GW_LOG_ERROR
           : r->skipped ? GW_LOG_WARN
                        : GW_LOG_INFO,
           "audit", NULL,
           "spool %s: %zu entr%s written, %" PRIu64 " failed; file removed; %" PRIu64
           " written before (by an earlier replay), skipped",
           r->path, r->n - (size_t)(r->failed + r->skipped),
           r->n - (size_t)(r->failed + r->skipped) == 1 ? "y" : "ies", r->failed, r->skipped);
}

static void answered(struct item *it, int err)
{
    struct gw_audit_replay *r = it->r;

    it->state = DONE;
    if (err != 0) {
        /* nothing of it committed (the writer fails an entry only so): owed still */
        it->state = FAILED;
        r->failed++;
        GW_LOG(GW_LOG_ERROR, "audit", NULL,
               "spool %s: an entry (%s) was not written: %s; it is kept for the next start "
               "(%s)",
               r->path, gw_audit_spool_entry(r->sp, (size_t)(it - r->items))->recs[0].action,
               gw_err_str(err),
               marked(r) ? "in this file, and in the next spool at a stop"
                         : "in the next spool at a stop");
    }
    if (++r->done == r->n && !r->halted)
        finished(r);
}

static void written_cb(void *arg, int err, int64_t seq, const struct gw_db_result *res)
{
    struct item *it = arg;
    struct gw_audit_replay *r = it->r;
    const struct gw_audit_left *e = gw_audit_spool_entry(r->sp, (size_t)(it - r->items));

    (void)seq;
    if (err != 0 && gw_audit_spool_marked(e) && gw_audit_spool_met_mark(res)) {
        /* this file (or the one it was carried from) was replayed before, up to here at least:
         * a hard kill during that replay, or a copy put back */
        if (r->skipped++ == 0)
            GW_LOG(GW_LOG_WARN, "audit", NULL,
                   "spool %s: an entry (%s) was written before, by an earlier replay of this "
                   "spool or of one it was carried from: skipped, as are the others so",
                   r->path, e->recs[0].action);
        err = 0;
    }
    answered(it, err);
    feed(it->r);
}

static void retry_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    feed(arg);
}

/* Hands the waiting entries to the writer while its queue takes them. */
static void feed(struct gw_audit_replay *r)
{
    if (r->halted)
        return;
    for (; r->next < r->n; r->next++) {
        struct item *it = &r->items[r->next];
        const struct gw_audit_left *e = gw_audit_spool_entry(r->sp, r->next);
        int rc;

        if (it->state != WAITING) /* in doubt, handed over at the start */
            continue;
        rc = gw_audit_write_kept(r->a, e->stmts, e->nstmts, e->recs, e->nrecs, written_cb, it);
        if (rc == GW_EQUEUEFULL) {
            struct timeval tv = gw_clock_tv(RETRY_MS);
            if (evtimer_add(r->ev_retry, &tv) != 0)
                GW_LOG(GW_LOG_ERROR, "audit", NULL, "spool %s: retry timer not set", r->path);
            return;
        }
        it->state = QUEUED;
        if (rc != 0)
            answered(it, rc);
    }
}

struct gw_audit_replay *gw_audit_replay_new(struct event_base *base, struct gw_audit *a,
                                            struct gw_audit_spool *sp, const char *path)
{
    struct gw_audit_replay *r = gw_calloc(1, sizeof *r);
    size_t n = gw_audit_spool_count(sp);

    if (r == NULL) {
        gw_audit_spool_free(sp);
        return NULL;
    }
    r->a = a;
    r->sp = sp;
    r->n = n;
    r->path = gw_strdup(path);
    r->items = gw_calloc(n ? n : 1, sizeof *r->items);
    r->ev_retry = evtimer_new(base, retry_cb, r);
    if (r->path == NULL || r->items == NULL || r->ev_retry == NULL) {
        gw_audit_replay_free(r);
        return NULL;
    }
    GW_LOG(GW_LOG_INFO, "audit", NULL, "spool %s: %zu entr%s verified, written again", path, n,
           n == 1 ? "y" : "ies");
    for (size_t i = 0; i < n; i++)
        r->items[i].r = r;
    /* those in doubt first, while the writer has not recovered: its first recovery settles them */
    for (size_t i = 0; i < n; i++) {
        const struct gw_audit_left *e = gw_audit_spool_entry(sp, i);
        if (e->in_doubt) {
            int rc = gw_audit_write_in_doubt(a, e, written_cb, &r->items[i]);
            r->items[i].state = QUEUED;
            if (rc != 0) /* a transaction not this one: chained anew below, as the others */
                r->items[i].state = WAITING;
        }
    }
    if (n == 0)
        finished(r);
    feed(r);
    return r;
}

void gw_audit_replay_halt(struct gw_audit_replay *r)
{
    if (r == NULL)
        return;
    r->halted = true;
    evtimer_del(r->ev_retry);
}

int gw_audit_replay_leftover(const struct gw_audit_replay *r, struct gw_audit_spool *out,
                             uint64_t *n)
{
    int rc;

    *n = 0;
    for (size_t i = 0; r != NULL && i < r->n; i++) {
        if (r->items[i].state != WAITING && r->items[i].state != FAILED)
            continue;
        if ((rc = gw_audit_spool_add(out, gw_audit_spool_entry(r->sp, i))) != 0)
            return rc;
        ++*n;
    }
    return 0;
}

uint64_t gw_audit_replay_abandon(struct gw_audit_replay *r)
{
    char err[512];

    size_t queued = 0;

    if (r == NULL || r->gone)
        return 0;
    for (size_t i = 0; i < r->n; i++)
        queued += r->items[i].state == QUEUED;
    /* marked: replayed again, what was written (or commits after the exit) is skipped, so the file
     * stays and holds every entry still owed */
    if (marked(r)) {
        size_t owed = 0;
        for (size_t i = 0; i < r->n; i++)
            owed += r->items[i].state != DONE;
        GW_LOG(GW_LOG_WARN, "audit", NULL,
               "spool %s: kept: of its %zu entries %zu are owed (%zu with the writer, whose "
               "transaction may commit after the exit); the next start writes them and skips "
               "those written (their mark)",
               r->path, r->n, owed, queued);
        return owed;
    }
    /* the file as read is still exactly what is owed while none of its entries has answered and
     * none is the writer's in a transaction that may have committed unanswered (in flight at the
     * stop, pipelined to its sync: it commits once a lock it waits on is gone, the gateway too) */
    if (r->done == 0 && (queued == 0 || !gw_audit_sent_in_doubt(r->a, written_cb)))
        return r->n;
    /* some of its entries are written (or failed for good), or may be: replayed again they would
     * be written twice, so the file goes, and those not written are lost with the next spool */
    if (unlink(r->path) != 0 && errno != ENOENT) {
        GW_LOG(GW_LOG_ERROR, "audit", NULL,
               "critical: spool %s: %zu of its %zu entries are answered, %zu with the writer, and "
               "it cannot be removed (%s): remove it before the next start, or they are written "
               "again",
               r->path, r->done, r->n, queued, strerror(errno));
        return 0;
    }
    r->gone = true;
    if (gw_file_sync_dir(r->path, err, sizeof err) != 0)
        GW_LOG(GW_LOG_WARN, "audit", NULL, "spool %s removed, but %s", r->path, err);
    GW_LOG(GW_LOG_ERROR, "audit", NULL,
           "spool %s: removed: of its %zu entries %zu were answered and %zu are with the writer, "
           "whose transaction may have committed unanswered: they would be written again; those "
           "not written were not spooled anew",
           r->path, r->n, r->done, queued);
    return 0;
}

void gw_audit_replay_free(struct gw_audit_replay *r)
{
    if (r == NULL)
        return;
    if (r->ev_retry != NULL)
        event_free(r->ev_retry);
    gw_audit_spool_free(r->sp);
    gw_free(r->items);
    gw_free(r->path);
    gw_free(r);
}
