/* refusals.c: the audit records of refused calls, bounded (refusals.h). A window is a timer
 * armed by the first refusal it counts; each kind of refusal is an entry of a fixed table, found
 * by a hash of its fields and compared field by field. */
#include "refusals.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "alloc.h"
#include "clock.h"
#include "log.h"
#include "policy.h"

/* The text fields of an entry, in one order: l's (all NULL for an entry with no row), then
 * rec's. Not compared: the peer (both), since a caller's every connection has its own port, and
 * the purpose and legal basis, the caller's own free text (a Reveal's reason), which would let
 * a caller make a new kind of every refusal by rewording it. */
enum {
    F_L_ACTOR,
    F_L_ROLE,
    F_L_CERT,
    F_L_PEER,
    F_L_VIA,
    F_L_ACTION,
    F_L_OBJECT,
    F_L_OUTCOME,
    F_L_DETAIL,
    F_R_ACTOR,
    F_R_ROLE,
    F_R_PEER,
    F_R_CERT,
    F_R_BRANCH,
    F_R_ACTION,
    F_R_OBJECT,
    F_R_PURPOSE,
    F_R_LEGAL,
    F_R_APPROVAL,
    F_R_OUTCOME,
    F_R_DETAIL,
    F_COUNT
};

/* What tells kinds apart: the fields, whether there is an administrative-record row, and
 * whether the record is confidential (its caller's call: a lawful_access account's, or one a
 * handler confided, call.h). */
struct kind {
    const char *f[F_COUNT];
    bool row;
    bool confidential;
};

/* What an entry counting several kinds (overflow) keeps of its counted refusals' objects, so
 * that its record still says what was probed (a Search's blind index, an unknown bulk or case
 * id, an Admin method): each action and object once, with how many refusals named it, in at most
 * OBJS_LEN bytes of the record's detail; the refusals whose object did not fit are counted (cut),
 * and the record says how many. One for the counted refusals (pending), one for those in the
 * record being written (sending). */
#define OBJS_MAX 32
#define OBJS_LEN 640
#define OBJ_COUNT_LEN 26 /* ", " and " (n)" around an object in the detail, n up to 20 digits */
/* the objects' part of a detail: "; objects: ", the list, and the note of those cut (under 128
 * bytes), so that a counting record's detail stays within GW_AUDIT_TEXT_MAX */
#define OBJS_TEXT_LEN (OBJS_LEN + 11 + 128)
/* the rest of such a detail: its message (CALLER_MORE, ALL_MORE) and the count's words */
_Static_assert(OBJS_TEXT_LEN + 200 <= GW_AUDIT_TEXT_MAX, "a counting record's detail fits");

struct objs {
    uint32_t n;
    uint32_t used; /* of OBJS_LEN: the objects' text and OBJ_COUNT_LEN each */
    uint32_t off[OBJS_MAX];
    uint64_t count[OBJS_MAX];
    uint64_t cut;        /* refusals whose object is not among them */
    char text[OBJS_LEN]; /* each "action object", NUL-terminated, from off[i] */
};

struct entry {
    struct gw_refusals *owner;
    bool used;
    uint64_t hash;
    char *block; /* every field's copy */
    size_t block_len;
    struct kind k;  /* its fields point into block */
    uint32_t alone; /* recorded on their own in this window */
    uint32_t seen;  /* refused in this window (to GW_REFUSALS_EACH): gw_refusals_record's answer */
    bool overflow;  /* counts kinds past a table's or a caller's share: never alone */
    bool mixed;     /* one counted in pending gave another purpose or legal basis than k's */
    bool sending_mixed;        /* mixed, for those in sending */
    uint64_t pending;          /* counted, in no record yet */
    uint64_t sending;          /* in the record being written (0: none is) */
    bool unqueued;             /* stopping: its record was not queued (tried again, retry_cb) */
    void *handle;              /* that write, NULL when none or when it is kept (not cancellable) */
    struct objs *objs, *sobjs; /* overflow only: pending's objects, sending's */
};

#define MORE GW_REFUSALS_KINDS
#define CALLER_MORE "refusals of more kinds than are told apart for one caller"
#define ALL_MORE "refusals of more kinds than are told apart"
/* the action of a record counting several kinds: an Admin method's refusals (with a row), or
 * other calls' (a record alone: Reveal, Search) */
#define ADMIN_MORE_ACTION "admin.refused"
#define CALL_MORE_ACTION "call.refused"
/* While the gateway stops, a count whose record the writer's queue did not take (its kept half
 * full) is tried again this often, until the halt: the drain empties the queue meanwhile. */
#define RETRY_MS 100u

struct gw_refusals {
    struct gw_refusals_sink sink;
    uint32_t window_s;
    struct event *ev_window;
    /* the kinds told apart, then (MORE) the one counting the refusals of kinds past them */
    struct entry kinds[GW_REFUSALS_KINDS + 1];
    bool flushing;  /* stopping: no more windows, records written at once */
    bool halted;    /* gw_refusals_halt: counted only, nothing more written */
    bool told_full; /* this window's log line about records that could not be queued */
    struct gw_refusals_stats st;
};

/* ---- the gateway's sink: the audit chain ---- */

static void alone_done_cb(void *arg, int err, int64_t seq, const struct gw_db_result *res)
{
    (void)arg;
    (void)seq;
    (void)res;
    if (err != 0) /* naming no action: a confidential call's would tell */
        GW_LOG(GW_LOG_ERROR, "audit", NULL, "a refused call's audit record was not written: %s",
               gw_err_str(err));
}

/* l NULL: the record alone, in a transaction of its own. handle NULL: kept (it waits out an
 * outage, and the writer's leftover spools it at shutdown), as gw_acct_log_write's. */
static int audit_write(void *ctx, const struct gw_acct_log *l, const struct gw_audit_rec *r,
                       gw_audit_done_cb done, void *arg, void **handle)
{
    struct gw_audit_req *req = NULL;
    int rc;

    if (l != NULL)
        rc = gw_acct_log_write_cb(ctx, l, r, done, arg, handle != NULL ? &req : NULL);
    else if (handle == NULL)
        rc = gw_audit_write_kept(ctx, NULL, 0, r, 1, done != NULL ? done : alone_done_cb, arg);
    else
        rc = gw_audit_write(ctx, NULL, 0, r, 1, done, arg, &req);
    if (handle != NULL)
        *handle = req;
    return rc;
}

static void audit_cancel(void *ctx, void *handle)
{
    (void)ctx;
    gw_audit_cancel(handle);
}

static void audit_keep(void *ctx, void *handle, gw_audit_done_cb done, void *arg)
{
    (void)ctx;
    gw_audit_rebind(handle, done, arg);
}

static bool audit_held(void *ctx, gw_audit_done_cb done, void *arg)
{
    return gw_audit_holds(ctx, done, arg);
}

/* Room for a refusal's record in the writer's queue: under half of it, and none while the
 * writer's recovery fails (the database away: a record on its own is kept and would wait there: a
 * caller refused again and again through an outage, 8 more each window, would fill the kept
 * entries' half, which the records of actions already done need; counted instead, the count is
 * written when the database is back, or at the stop). */
static bool audit_room(void *ctx)
{
    struct gw_audit_stats st;

    gw_audit_stats(ctx, &st);
    return !st.down && st.queued < st.queue_max / 2;
}

/* ---- entries ---- */

static void kind_of(const struct gw_acct_log *l, const struct gw_audit_rec *r, struct kind *k)
{
    static const struct gw_acct_log none;
    const struct gw_acct_log *o = l != NULL ? l : &none;
    const char *v[F_COUNT] = {
        [F_L_ACTOR] = o->actor,       [F_L_ROLE] = o->role,       [F_L_CERT] = o->cert,
        [F_L_PEER] = o->peer,         [F_L_VIA] = o->via,         [F_L_ACTION] = o->action,
        [F_L_OBJECT] = o->object,     [F_L_OUTCOME] = o->outcome, [F_L_DETAIL] = o->detail,
        [F_R_ACTOR] = r->actor,       [F_R_ROLE] = r->role,       [F_R_PEER] = r->peer,
        [F_R_CERT] = r->cert,         [F_R_BRANCH] = r->branch,   [F_R_ACTION] = r->action,
        [F_R_OBJECT] = r->object,     [F_R_PURPOSE] = r->purpose, [F_R_LEGAL] = r->legal_basis,
        [F_R_APPROVAL] = r->approval, [F_R_OUTCOME] = r->outcome, [F_R_DETAIL] = r->detail,
    };

    memcpy(k->f, v, sizeof(v));
    k->row = l != NULL;
    k->confidential = r->confidential;
}

static bool compared(int i)
{
    return i != F_L_PEER && i != F_R_PEER && i != F_R_PURPOSE && i != F_R_LEGAL;
}

/* FNV-1a over the flags and the compared fields, each with its presence and its terminator. */
static uint64_t hash_of(const struct kind *k)
{
    const char *const *f = k->f;
    uint64_t h = 14695981039346656037u;

    h = (h ^ (k->row ? 1u : 0u)) * 1099511628211u;
    h = (h ^ (k->confidential ? 1u : 0u)) * 1099511628211u;
    for (int i = 0; i < F_COUNT; i++) {
        const unsigned char *p = (const unsigned char *)(f[i] != NULL ? f[i] : "");

        if (!compared(i))
            continue;
        h = (h ^ (f[i] != NULL)) * 1099511628211u;
        do
            h = (h ^ *p) * 1099511628211u;
        while (*p++ != '\0');
    }
    return h;
}

static bool same(const char *a, const char *b)
{
    return a == NULL || b == NULL ? a == b : strcmp(a, b) == 0;
}

static bool matches(const struct entry *e, uint64_t h, const struct kind *k)
{
    if (!e->used || e->hash != h || e->k.row != k->row || e->k.confidential != k->confidential)
        return false;
    for (int i = 0; i < F_COUNT; i++)
        if (compared(i) && !same(e->k.f[i], k->f[i]))
            return false;
    return true;
}

/* Copies k into e (its fields in one block). Returns false on ENOMEM. */
static bool take(struct entry *e, uint64_t h, const struct kind *k)
{
    const char *const *f = k->f;
    size_t n = 0, o = 0;

    for (int i = 0; i < F_COUNT; i++)
        n += f[i] != NULL ? strlen(f[i]) + 1 : 0;
    if ((e->block = gw_malloc(n > 0 ? n : 1)) == NULL)
        return false;
    e->block_len = n;
    for (int i = 0; i < F_COUNT; i++) {
        size_t len = f[i] != NULL ? strlen(f[i]) + 1 : 0;

        e->k.f[i] = f[i] != NULL ? memcpy(e->block + o, f[i], len) : NULL;
        o += len;
    }
    e->k.row = k->row;
    e->k.confidential = k->confidential;
    e->hash = h;
    e->used = true;
    e->mixed = e->sending_mixed = false;
    e->alone = 0;
    e->seen = 0;
    e->pending = 0;
    e->sending = 0;
    e->unqueued = false;
    e->handle = NULL;
    return true;
}

static void drop(struct entry *e)
{
    gw_free_wipe(e->block, e->block_len);
    gw_free_wipe(e->objs, sizeof(*e->objs));
    gw_free_wipe(e->sobjs, sizeof(*e->sobjs));
    e->block = NULL;
    e->block_len = 0;
    e->objs = e->sobjs = NULL;
    e->used = false;
}

/* ---- an overflow entry's objects ---- */

static void objs_clear(struct objs *o)
{
    o->n = o->used = 0;
    o->cut = 0;
}

/* Whether the object at t is a (and b, after a space, when b is not NULL). */
static bool obj_is(const char *t, const char *a, const char *b)
{
    size_t la = strlen(a);

    if (b == NULL)
        return strcmp(t, a) == 0;
    return strncmp(t, a, la) == 0 && t[la] == ' ' && strcmp(t + la + 1, b) == 0;
}

/* n refusals of the object "a b" (b NULL: a alone is the object's text), counted under it, or
 * among the cut when it is new and does not fit. */
static void objs_add(struct objs *o, const char *a, const char *b, uint64_t n)
{
    size_t len = strlen(a) + (b != NULL ? 1 + strlen(b) : 0);

    for (uint32_t i = 0; i < o->n; i++)
        if (obj_is(o->text + o->off[i], a, b)) {
            o->count[i] += n;
            return;
        }
    if (o->n == OBJS_MAX || o->used + len + OBJ_COUNT_LEN > OBJS_LEN) {
        o->cut += n;
        return;
    }
    o->off[o->n] = o->used;
    o->count[o->n] = n;
    snprintf(o->text + o->used, len + 1, "%s%s%s", a, b != NULL ? " " : "", b != NULL ? b : "");
    o->used += (uint32_t)(len + OBJ_COUNT_LEN);
    o->n++;
}

/* from's objects and cut into to, from's emptied. */
static void objs_merge(struct objs *to, struct objs *from)
{
    for (uint32_t i = 0; i < from->n; i++)
        objs_add(to, from->text + from->off[i], NULL, from->count[i]);
    to->cut += from->cut;
    objs_clear(from);
}

/* The objects as the record's detail names them: "; objects: a b (n), ...", then how many
 * refusals named one not listed; len is OBJS_TEXT_LEN, which they fit in. */
static void objs_text(const struct objs *o, char *out, size_t len)
{
    size_t k = 0;

    out[0] = '\0';
    for (uint32_t i = 0; i < o->n && k < len; i++)
        k += (size_t)snprintf(out + k, len - k, "%s%s (%" PRIu64 ")", i == 0 ? "; objects: " : ", ",
                              o->text + o->off[i], o->count[i]);
    if (o->cut > 0 && k < len)
        snprintf(out + k, len - k,
                 "; %" PRIu64 " refusal(s) of objects not named (the list holds %d bytes)", o->cut,
                 OBJS_LEN);
}

/* A record's refusals (sending) back among the counted (pending): its write failed. */
static void carry(struct entry *e)
{
    e->pending += e->sending;
    e->mixed |= e->sending_mixed;
    e->sending = 0;
    if (e->objs != NULL) { /* the older first */
        struct objs *o = e->objs;

        objs_merge(e->sobjs, o);
        e->objs = e->sobjs;
        e->sobjs = o;
    }
}

/* The entry's row (all NULL when it has none) and record, from its fields; count < 0:
 * absent; the purpose and legal basis absent when the refusals it counts did not all give the
 * kind's. */
static void rebuild(const struct entry *e, struct gw_acct_log *l, struct gw_audit_rec *r)
{
    const char *const *f = e->k.f;

    *l = (struct gw_acct_log){.actor = f[F_L_ACTOR],
                              .role = f[F_L_ROLE],
                              .cert = f[F_L_CERT],
                              .peer = f[F_L_PEER],
                              .via = f[F_L_VIA],
                              .action = f[F_L_ACTION],
                              .object = f[F_L_OBJECT],
                              .outcome = f[F_L_OUTCOME],
                              .detail = f[F_L_DETAIL]};
    *r = (struct gw_audit_rec){.actor = f[F_R_ACTOR],
                               .role = f[F_R_ROLE],
                               .peer = f[F_R_PEER],
                               .cert = f[F_R_CERT],
                               .branch = f[F_R_BRANCH],
                               .action = f[F_R_ACTION],
                               .object = f[F_R_OBJECT],
                               .count = -1,
                               .purpose = e->mixed ? NULL : f[F_R_PURPOSE],
                               .legal_basis = e->mixed ? NULL : f[F_R_LEGAL],
                               .approval = f[F_R_APPROVAL],
                               .outcome = f[F_R_OUTCOME],
                               .detail = f[F_R_DETAIL]};
    /* as the refusal was marked (gw_admin_record_refusal: from the role; gw_api_record_init:
     * from the call, which a handler may confide whatever the role), which the entry is keyed
     * on; and, whatever the mark, a lawful_access role's */
    r->confidential =
        e->k.confidential || (r->role != NULL && gw_policy_confidential_role(r->role));
}

/* ---- the window ---- */

static void arm(struct gw_refusals *rf)
{
    struct timeval tv = gw_clock_tv((uint64_t)rf->window_s * 1000u);

    if (!rf->flushing && !evtimer_pending(rf->ev_window, NULL) &&
        evtimer_add(rf->ev_window, &tv) != 0)
        GW_LOG(GW_LOG_ERROR, "admin", NULL, "the refusals' window was not started");
}

static void write_summary(struct gw_refusals *rf, struct entry *e);

/* A summary's outcome. Nothing is dropped here (only a window's end drops entries): counted
 * refusals left, or carried after a failure, go into the next window's record, or at once while
 * the gateway stops. */
static void summary_done(void *arg, int err, int64_t seq, const struct gw_db_result *res)
{
    struct entry *e = arg;
    struct gw_refusals *rf = e->owner;

    (void)seq;
    (void)res;
    e->handle = NULL;
    if (err != 0) {
        rf->st.carried += e->sending;
        carry(e);
        if (rf->flushing) /* no later window: said at exit (gw_refusals_left) */
            GW_LOG(GW_LOG_ERROR, "admin", NULL,
                   "the record of %" PRIu64 " counted refusal(s) was not written at shutdown: %s",
                   e->pending, gw_err_str(err));
        else
            arm(rf);
        return;
    }
    rf->st.summaries++;
    e->sending = 0;
    if (e->sobjs != NULL)
        objs_clear(e->sobjs);
    if (e->pending > 0 && !rf->halted) {
        if (rf->flushing)
            write_summary(rf, e); /* counted while this one was written */
        else
            arm(rf);
    }
}

/* The row and record of e's counted refusals (count: how many; the message says so, in
 * detail). */
static void summary_of(const struct gw_refusals *rf, const struct entry *e, struct gw_acct_log *l,
                       struct gw_audit_rec *r, char *detail, char *row_detail, size_t dlen)
{
    static const char fmt[] =
        "%s [%" PRIu64 " such refusals within %" PRIu32 " s, counted in this record%s]";
    char objs[OBJS_TEXT_LEN] = "";
    const char *what;

    rebuild(e, l, r);
    what = r->detail != NULL ? r->detail : "refused";
    if (e->objs != NULL)
        objs_text(e->objs, objs, sizeof(objs));
    snprintf(detail, dlen, fmt, what, e->pending, rf->window_s, objs);
    /* the objects go into the audit record alone, which is confidential when one of them is (a
     * lawful case's id): the row (admin_log, read by the admin role, no flag) never names one */
    snprintf(row_detail, dlen, fmt, what, e->pending, rf->window_s, "");
    l->detail = row_detail;
    r->detail = detail;
    r->count = (int64_t)e->pending;
}

/* Stopping: e's record is tried again soon (the window's timer is free: no more windows). */
static void retry_later(struct gw_refusals *rf)
{
    struct timeval tv = gw_clock_tv(RETRY_MS);

    if (!evtimer_pending(rf->ev_window, NULL) && evtimer_add(rf->ev_window, &tv) != 0)
        GW_LOG(GW_LOG_ERROR, "admin", NULL,
               "the counted refusals' records are not tried again at shutdown: left to the "
               "spool");
}

/* Writes e's counted refusals as one record: kept while the gateway stops (no later window
 * writes it: the writer's leftover spools it if the drain ends first); one the writer's queue
 * does not take then is tried again until the halt, and what is still not taken then is
 * spooled by gw_refusals_leftover. */
static void write_summary(struct gw_refusals *rf, struct entry *e)
{
    struct gw_acct_log l;
    struct gw_audit_rec r;
    char detail[GW_AUDIT_TEXT_MAX], row_detail[GW_AUDIT_TEXT_MAX];
    int rc;

    summary_of(rf, e, &l, &r, detail, row_detail, sizeof(detail));
    e->sending = e->pending;
    e->pending = 0;
    e->sending_mixed = e->mixed;
    e->mixed = false;
    if (e->objs != NULL) { /* (sobjs is empty: nothing was being written) */
        struct objs *o = e->sobjs;

        e->sobjs = e->objs;
        e->objs = o;
    }
    e->handle = NULL;
    rc = rf->sink.write(rf->sink.ctx, e->k.row ? &l : NULL, &r, summary_done, e,
                        rf->flushing ? NULL : &e->handle);
    if (rc == 0) {
        e->unqueued = false;
        return;
    }
    e->handle = NULL;
    carry(e);
    if (!e->unqueued) /* (a retry at shutdown carries the same refusals again) */
        rf->st.carried += e->pending;
    if (!rf->flushing)
        return;
    if (!e->unqueued) /* (said once, not at every try) */
        GW_LOG(GW_LOG_ERROR, "admin", NULL,
               "the record of %" PRIu64 " counted refusal(s) could not be queued at shutdown "
               "(%s): tried again until the drain ends, then left to the spool",
               e->pending, gw_err_str(rc));
    e->unqueued = true;
    retry_later(rf);
}

/* The window ends: a record for every kind counted (the kinds whose record is still being
 * written wait for the next window); the kinds with nothing left to write are forgotten, and
 * every kind's next refusals are recorded on their own again. */
static void end_window(struct gw_refusals *rf, bool ask_room)
{
    bool left = false;

    rf->told_full = false;
    for (int i = 0; i <= MORE; i++) {
        struct entry *e = &rf->kinds[i];

        if (!e->used)
            continue;
        if (e->sending == 0 && e->pending > 0 && (!ask_room || rf->sink.room(rf->sink.ctx)))
            write_summary(rf, e);
        if (e->pending > 0)
            left = true; /* no room, in flight, or not written: the next window */
        else if (e->sending == 0) {
            drop(e);
            continue;
        }
        if (!e->overflow)
            e->alone = e->seen = 0; /* a new window */
    }
    if (left)
        arm(rf);
}

/* Stopping: the records the writer's queue did not take, again. */
/* Returns whether a record was queued. */
static bool retry_cb(struct gw_refusals *rf)
{
    bool queued = false;

    for (int i = 0; i <= MORE; i++) {
        struct entry *e = &rf->kinds[i];

        if (e->used && e->unqueued && e->sending == 0 && e->pending > 0) {
            write_summary(rf, e);
            queued |= !e->unqueued;
        }
    }
    return queued;
}

static void window_cb(evutil_socket_t fd, short what, void *arg)
{
    struct gw_refusals *rf = arg;

    (void)fd;
    (void)what;
    if (rf->flushing) /* no more windows: the timer is retry_later's */
        (void)retry_cb(rf);
    else
        end_window(rf, true);
}

/* ---- the interface ---- */

struct gw_refusals *gw_refusals_new(struct event_base *base, struct gw_audit *a,
                                    const struct gw_refusals_sink *sink, uint32_t window_s)
{
    struct gw_refusals *rf = gw_calloc(1, sizeof(*rf));

    if (rf == NULL)
        return NULL;
    rf->sink = sink != NULL ? *sink
                            : (struct gw_refusals_sink){.write = audit_write,
                                                        .cancel = audit_cancel,
                                                        .room = audit_room,
                                                        .keep = audit_keep,
                                                        .held = audit_held,
                                                        .ctx = a};
    rf->window_s = window_s > 0 ? window_s : 1;
    for (int i = 0; i <= MORE; i++)
        rf->kinds[i].owner = rf;
    if ((rf->ev_window = evtimer_new(base, window_cb, rf)) == NULL) {
        gw_free(rf);
        return NULL;
    }
    return rf;
}

void gw_refusals_free(struct gw_refusals *rf)
{
    uint64_t left;

    if (rf == NULL)
        return;
    if ((left = gw_refusals_left(rf)) > 0)
        GW_LOG(GW_LOG_ERROR, "admin", NULL,
               "%" PRIu64 " counted refusal(s) were not recorded (the audit trail did not take "
               "their record before the gateway stopped)",
               left);
    for (int i = 0; i <= MORE; i++) {
        struct entry *e = &rf->kinds[i];

        if (e->handle != NULL)
            rf->sink.cancel(rf->sink.ctx, e->handle);
        if (e->used)
            drop(e);
    }
    event_free(rf->ev_window);
    gw_free(rf);
}

/* Makes entry e of m's kind (h its hash), counted only when overflow. False on ENOMEM. */
static bool make(struct entry *e, uint64_t h, const struct kind *m, bool overflow)
{
    if (!take(e, h, m))
        return false;
    if (overflow && ((e->objs = gw_calloc(1, sizeof(*e->objs))) == NULL ||
                     (e->sobjs = gw_calloc(1, sizeof(*e->sobjs))) == NULL)) {
        drop(e);
        return false;
    }
    e->overflow = overflow;
    e->alone = e->seen = overflow ? GW_REFUSALS_EACH : 0;
    return true;
}

/* The caller of a kind: the record's actor and certificate (an Admin refusal's row names the
 * same, gw_admin_record_refusal). */
static bool same_caller(const struct kind *a, const struct kind *b)
{
    return same(a->f[F_R_ACTOR], b->f[F_R_ACTOR]) && same(a->f[F_R_CERT], b->f[F_R_CERT]);
}

/* The entry of k's kind, made if new: within the caller's share of the table
 * (GW_REFUSALS_PER_CALLER kinds, then one entry that counts the caller's other kinds under its
 * name: one with a row for its Admin refusals, one without for the others, each as
 * confidential as the refusals it counts), and the shared one past the table's size. NULL on
 * ENOMEM. A known kind costs a pass of hash comparisons; only a new one looks at the caller's
 * share. */
static struct entry *entry_of(struct gw_refusals *rf, const struct kind *k)
{
    const char *const *f = k->f;
    uint64_t h = hash_of(k);
    struct entry *free_slot = NULL;
    unsigned mine = 0;

    for (int i = 0; i < MORE; i++)
        if (matches(&rf->kinds[i], h, k))
            return &rf->kinds[i];
    for (int i = 0; i < MORE; i++) {
        const struct entry *e = &rf->kinds[i];

        if (!e->used)
            free_slot = free_slot != NULL ? free_slot : &rf->kinds[i];
        else if (same_caller(&e->k, k))
            mine++;
    }
    if (mine >= GW_REFUSALS_PER_CALLER) {
        /* the caller's other kinds, counted under its own name */
        struct kind m = {.row = k->row, .confidential = k->confidential};
        uint64_t mh;

        if (k->row) {
            m.f[F_L_ACTOR] = f[F_L_ACTOR];
            m.f[F_L_ROLE] = f[F_L_ROLE];
            m.f[F_L_CERT] = f[F_L_CERT];
            m.f[F_L_PEER] = f[F_L_PEER];
            m.f[F_L_VIA] = f[F_L_VIA];
            m.f[F_L_ACTION] = "(several)";
            m.f[F_L_OUTCOME] = "refused";
            m.f[F_L_DETAIL] = CALLER_MORE;
        }
        m.f[F_R_ACTOR] = f[F_R_ACTOR];
        m.f[F_R_ROLE] = f[F_R_ROLE];
        m.f[F_R_PEER] = f[F_R_PEER];
        m.f[F_R_CERT] = f[F_R_CERT];
        m.f[F_R_BRANCH] = f[F_R_BRANCH];
        m.f[F_R_ACTION] = k->row ? ADMIN_MORE_ACTION : CALL_MORE_ACTION;
        m.f[F_R_OBJECT] = "(several)";
        m.f[F_R_OUTCOME] = "refused";
        m.f[F_R_DETAIL] = CALLER_MORE;
        mh = hash_of(&m);
        for (int i = 0; i < MORE; i++)
            if (matches(&rf->kinds[i], mh, &m))
                return &rf->kinds[i];
        if (free_slot != NULL)
            return make(free_slot, mh, &m, true) ? free_slot : NULL;
    } else if (free_slot != NULL) {
        return make(free_slot, h, k, false) ? free_slot : NULL;
    }
    if (!rf->kinds[MORE].used) {
        /* every caller's kinds past the table, with or without a row: one record with the
         * Admin refusals' row (its action names no caller's); confidential when it counts a
         * confidential refusal (below, and rebuild) */
        struct kind m = {.row = true};

        m.f[F_L_ACTOR] = "(several)";
        m.f[F_L_VIA] = f[F_L_VIA] != NULL ? f[F_L_VIA] : "grpc";
        m.f[F_L_ACTION] = "(several)";
        m.f[F_L_OUTCOME] = "refused";
        m.f[F_L_DETAIL] = ALL_MORE;
        m.f[F_R_ACTOR] = "(several)";
        m.f[F_R_ACTION] = ADMIN_MORE_ACTION;
        m.f[F_R_OBJECT] = "(several)";
        m.f[F_R_OUTCOME] = "refused";
        m.f[F_R_DETAIL] = ALL_MORE;
        if (!make(&rf->kinds[MORE], hash_of(&m), &m, true))
            return NULL;
    }
    if (k->confidential) /* (keyed on nothing: it is found by its place) */
        rf->kinds[MORE].k.confidential = true;
    return &rf->kinds[MORE];
}

bool gw_refusals_record(struct gw_refusals *rf, const struct gw_acct_log *l,
                        const struct gw_audit_rec *rec)
{
    struct kind k;
    struct entry *e;
    bool first;

    kind_of(l, rec, &k);
    if ((e = entry_of(rf, &k)) == NULL) {
        if (rec->confidential) /* naming no action: a lawful one would tell */
            GW_LOG(GW_LOG_ERROR, "admin", NULL, "out of memory: a refused call was not counted");
        else
            GW_LOG(GW_LOG_ERROR, "admin", NULL, "out of memory: a refused %s was not counted",
                   l != NULL ? l->action : rec->action);
        return true; /* not even counted: what the caller raises besides is all there is */
    }
    arm(rf);
    /* among the first of its kind this window, whether or not the trail has room for it now */
    first = e->seen < GW_REFUSALS_EACH;
    e->seen += first;
    if (e->alone < GW_REFUSALS_EACH && !rf->halted && rf->sink.room(rf->sink.ctx)) {
        /* kept: an outage does not fail it, nor does a stop (spooled) */
        int rc = rf->sink.write(rf->sink.ctx, l, rec, NULL, NULL, NULL);

        if (rc == 0) {
            e->alone++;
            rf->st.recorded++;
            return first;
        }
        if (!rf->told_full) { /* (once a window) */
            rf->told_full = true;
            GW_LOG(GW_LOG_ERROR, "admin", NULL,
                   "refused calls' records cannot be queued (%s): they are counted, and "
                   "recorded when the audit trail takes them again",
                   gw_err_str(rc));
        }
    }
    e->pending++;
    if (e->objs != NULL) /* a kind of several: what its refusal named */
        objs_add(e->objs, rec->action != NULL ? rec->action : "-",
                 rec->object != NULL ? rec->object : "-", 1);
    /* the purpose and legal basis of the kind's first refusal name its counted ones only while
     * each gave the same (each recorded on its own carries its own) */
    if (!same(e->k.f[F_R_PURPOSE], rec->purpose) || !same(e->k.f[F_R_LEGAL], rec->legal_basis))
        e->mixed = true;
    rf->st.counted++;
    if (rf->flushing && !rf->halted && e->sending == 0) /* (a call refused while stopping) */
        write_summary(rf, e);
    return first;
}

void gw_refusals_flush(struct gw_refusals *rf)
{
    evtimer_del(rf->ev_window);
    rf->flushing = true; /* from here on a count is written as soon as nothing of it is */
    for (int i = 0; i <= MORE; i++) {
        struct entry *e = &rf->kinds[i];

        if (e->handle != NULL) { /* a window's record still being written: kept from now on */
            rf->sink.keep(rf->sink.ctx, e->handle, summary_done, e);
            e->handle = NULL;
        }
    }
    end_window(rf, false);
}

bool gw_refusals_retry_now(struct gw_refusals *rf)
{
    if (!rf->flushing || rf->halted)
        return false;
    evtimer_del(rf->ev_window); /* (write_summary arms it again for one still not taken) */
    return retry_cb(rf);
}

void gw_refusals_halt(struct gw_refusals *rf)
{
    rf->halted = true;
    evtimer_del(rf->ev_window);
}

/* The entry gw_audit_write_kept would queue for r alone, handed to cb. */
static int record_left(const struct gw_audit_rec *r, gw_audit_left_cb cb, void *arg)
{
    struct gw_audit_left e = {.nstmts = 0, .nrecs = 1};

    e.recs[0] = *r;
    return cb(arg, &e);
}

int gw_refusals_leftover(struct gw_refusals *rf, gw_audit_left_cb cb, void *arg, uint64_t *n)
{
    *n = 0;
    for (int i = 0; i <= MORE; i++) {
        struct entry *e = &rf->kinds[i];
        struct gw_acct_log l;
        struct gw_audit_rec r;
        char detail[GW_AUDIT_TEXT_MAX], row_detail[GW_AUDIT_TEXT_MAX];
        int rc;

        if (e->used && e->sending > 0 && e->handle == NULL) {
            /* kept: the writer's leftover (gw_audit_leftover) holds it, unless it failed and
             * the halt kept its failure from being told (summary_done): counted again here,
             * as the failure would have (else neither spooled nor said lost) */
            if (!rf->sink.held(rf->sink.ctx, summary_done, e))
                carry(e);
            e->sending = 0;
            if (e->sobjs != NULL)
                objs_clear(e->sobjs);
        }
        if (!e->used || e->pending == 0)
            continue;
        summary_of(rf, e, &l, &r, detail, row_detail, sizeof detail);
        if ((rc = e->k.row ? gw_acct_log_left(&l, &r, cb, arg) : record_left(&r, cb, arg)) ==
            GW_EINVAL)
            continue; /* its row refused: left, and said so at exit */
        if (rc != 0)
            return rc;
        *n += e->pending;
        e->pending = 0; /* spooled: no longer left */
        e->mixed = false;
        if (e->objs != NULL)
            objs_clear(e->objs);
    }
    return 0;
}

uint64_t gw_refusals_left(const struct gw_refusals *rf)
{
    uint64_t n = 0;

    for (int i = 0; i <= MORE; i++) {
        const struct entry *e = &rf->kinds[i];

        n += e->used ? e->pending + e->sending : 0;
    }
    return n;
}

void gw_refusals_stats(const struct gw_refusals *rf, struct gw_refusals_stats *out)
{
    uint32_t n = 0;

    for (int i = 0; i <= MORE; i++)
        n += rf->kinds[i].used;
    *out = rf->st;
    out->kinds = n;
}
