/* api_intake.c: waygate.v1.WaybillIntake Submit and SubmitBatch (scanners, role courier).
 * A waybill goes: unpack (UTF-8 checked) -> validate -> branch and segment checks (Art. 18) ->
 * seal (envelope encryption) -> store (group commit) -> acknowledged after its commit.
 * Invariants: every item ends with exactly one status; a refusal names the field path and the
 * rule, never a value; when the call is cancelled every pending segment check and store request
 * is cancelled first, so no callback reaches a dead call. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "waygate/v1/intake.pb-c.h"

#include "alloc.h"
#include "api.h"
#include "api_pb.h"
#include "app.h"
#include "incident.h"
#include "keyring.h"
#include "log.h"
#include "seal.h"
#include "segcache.h"
#include "store.h"
#include "wirecheck.h"
#include "wraplease.h"

#define BATCH_MAX GW_STORE_GROUP_MAX
#define BATCH_FIELD 1 /* SubmitBatchRequest.waybills */
#define ITEM_PENDING (-1)

struct intake;

struct item {
    struct intake *in;
    size_t index;
    struct gw_waybill w;
    struct gw_waybill_norm norm; /* validation's normalised values, used by sealing */
    int code;              /* its gRPC status (from err.c), or ITEM_PENDING while on its way */
    struct gw_fault fault; /* why it was refused, when code is not OK */
    char msg[200];         /* the fault's grpc-message (err.c's words) */
    struct gw_segcache_req *segreq;
    uint8_t id[GW_STORE_ID_LEN];
    char idtext[37]; /* id as UUID text, for the response */
    bool duplicate;
};

struct intake {
    struct gw_call *call;
    struct gw_app *app;
    const struct gw_principal *who;
    bool batch;
    size_t n;
    struct item *items;
    size_t seg_pending;
    size_t seg_refused; /* items refused for their segment */
    size_t *stored;     /* indexes of the items sent to the store */
    size_t nstored;
    struct gw_store_req *storereq;
    size_t kek_retired;  /* items the database refused for their retired KEK version */
    size_t wrap_limited; /* items refused: their KEK version is at its limit of wraps */
    /* the KEK the items were sealed under: its suite and version, and app->keys_generation then */
    enum gw_suite kek_suite;
    uint32_t kek_version;
    uint64_t keys_generation;
};

/* The root of an item's field paths: "waybill" (Submit) or "waybills[i]" (SubmitBatch). */
static void item_root(const struct item *it, char root[32])
{
    if (it->in->batch)
        snprintf(root, 32, "waybills[%zu]", it->index);
    else
        snprintf(root, 32, "waybill");
}

/* Refuses the item with f (whose field path starts at the item's root). A full queue has one
 * wording and no field; a batch's item still says which item it is, as its other refusals do. */
static void refuse_fault(struct item *it, const struct gw_fault *f)
{
    char root[32];
    int n = 0;

    it->fault = *f;
    it->code = gw_fault_status(f);
    if (f->code == GW_EQUEUEFULL && it->in->batch) {
        item_root(it, root);
        n = snprintf(it->msg, sizeof(it->msg), "%s: ", root);
    }
    gw_fault_format(f, it->msg + n, sizeof(it->msg) - (size_t)n);
}

/* Refuses the item for rule at <root>.<field> (field may be NULL: the waybill as a whole). */
static void refuse(struct item *it, int err, const char *field, enum gw_rule rule)
{
    struct gw_fault f;
    char root[32];

    item_root(it, root);
    (void)gw_fault_set(&f, err, root, field, rule);
    refuse_fault(it, &f);
}

/* Answers the call from its items (which live in the call's arena, as long as the call). */
static void finish(struct intake *in)
{
    Waygate__V1__SubmitBatchResponse bresp = WAYGATE__V1__SUBMIT_BATCH_RESPONSE__INIT;
    Waygate__V1__SubmitResponse resp = WAYGATE__V1__SUBMIT_RESPONSE__INIT;
    struct gw_arena *a = gw_call_arena(in->call);
    struct gw_call *call = in->call;
    const ProtobufCMessage *out;
    size_t i;
    int rc;

    gw_call_set_cancel(call, NULL, NULL);
    if (!in->batch) {
        struct item *it = &in->items[0];
        if (it->code != GW_GRPC_OK) {
            gw_call_finish_fault(call, &it->fault);
            return;
        }
        resp.id = it->idtext;
        resp.duplicate = it->duplicate;
        out = &resp.base;
    } else {
        bresp.n_results = in->n;
        bresp.results = gw_arena_alloc(a, in->n * sizeof(*bresp.results));
        if (bresp.results == NULL) {
            gw_call_fail(call, GW_ENOMEM, NULL, GW_RULE_NONE);
            return;
        }
        for (i = 0; i < in->n; i++) {
            struct item *it = &in->items[i];
            Waygate__V1__ItemResult *r = gw_arena_alloc(a, sizeof(*r));
            if (r == NULL) {
                gw_call_fail(call, GW_ENOMEM, NULL, GW_RULE_NONE);
                return;
            }
            waygate__v1__item_result__init(r);
            r->index = (int32_t)i;
            r->code = it->code;
            if (it->code == GW_GRPC_OK) {
                r->id = it->idtext;
                r->duplicate = it->duplicate;
            } else {
                r->message = it->msg;
            }
            bresp.results[i] = r;
        }
        out = &bresp.base;
    }
    rc = gw_call_send(call, out);
    if (rc != 0) {
        gw_call_fail(call, rc, NULL, GW_RULE_NONE);
        return;
    }
    gw_call_finish(call, GW_GRPC_OK, NULL);
}

static void cancel_cb(void *arg)
{
    struct intake *in = arg;
    size_t i;

    for (i = 0; i < in->n; i++) {
        gw_segcache_cancel(in->items[i].segreq);
        in->items[i].segreq = NULL;
    }
    gw_store_cancel(in->storereq);
    in->storereq = NULL;
}

static void store_outcome(struct item *it, const struct gw_store_result *r)
{
    switch (r->err) {
    case 0:
        it->code = GW_GRPC_OK;
        memcpy(it->id, r->id, GW_STORE_ID_LEN);
        it->duplicate = r->outcome == GW_STORE_EXISTING_SAME;
        gw_store_id_text(it->id, it->idtext);
        GW_LOG(GW_LOG_DEBUG, "intake", gw_call_log_ctx(it->in->call),
               "waybill stored record=%s duplicate=%s", it->idtext,
               it->duplicate ? "true" : "false");
        break;
    case GW_EEXIST:
        refuse(it, GW_EEXIST, "waybill_no", GW_RULE_NUMBER_REUSED);
        break;
    case GW_EUNAVAIL:
        refuse(it, GW_EUNAVAIL, NULL, GW_RULE_DB_UNAVAILABLE);
        break;
    case GW_EPRECOND: /* sealed under a KEK version the database has retired (store.h) */
        refuse(it, GW_EPRECOND, NULL, GW_RULE_KEK_RETIRED);
        it->in->kek_retired++;
        break;
    default:
        refuse(it, r->err, NULL, GW_RULE_NOT_STORED);
        break;
    }
}

/* Art. 36: this gateway seals under a KEK version the database retired (its keyring was not
 * reloaded after `keys retire`): nothing is stored until an operator reloads it. One incident per
 * keyring so loaded, whatever the number of refused Submits (the reload resets it: daemon.c), so
 * a stale gateway under load does not flood the queue; the log says each call's count. Both name
 * the version the items were sealed under. A refusal that arrives after a reload is of the
 * keyring that reload replaced: logged, but neither recorded as the new keyring's incident nor
 * counted as its report (if the new keyring still seals under a retired version, its own next
 * refusal says so). */
static void kek_retired_seen(struct intake *in)
{
    if (in->kek_retired == 0)
        return; /* every call but a stale gateway's: nothing more to read */
    const struct gw_log_ctx *lc = gw_call_log_ctx(in->call);
    struct gw_app *app = in->app;
    const char *suite = gw_suite_name(in->kek_suite);
    struct gw_incident inc = {.severity = "high", .kind = "kek_retired", .principal = "waygated"};
    bool replaced = in->keys_generation != app->keys_generation;
    char detail[160];

    GW_LOG(GW_LOG_ERROR, "intake", lc,
           "%zu waybill(s) refused: the database has retired %s KEK version %u, which %s: reload "
           "the gateway's keyring (SIGHUP)",
           in->kek_retired, suite, in->kek_version,
           replaced ? "the keyring a reload has since replaced sealed them under"
                    : "this gateway's keyring still seals under");
    if (replaced || app->kek_retired_reported)
        return;
    app->kek_retired_reported = true;
    snprintf(detail, sizeof(detail),
             "Submit refused: %s KEK version %u of this gateway's keyring is retired in the "
             "database; reload the gateway's keyring",
             suite, in->kek_version);
    inc.detail = detail;
    if (gw_incident_record(app->incidents, &inc) != 0)
        GW_LOG(GW_LOG_ERROR, "intake", lc, "could not record the kek_retired incident");
}

static void submit_done_cb(void *arg, const struct gw_store_result *r)
{
    struct intake *in = arg;

    in->storereq = NULL;
    store_outcome(&in->items[0], r);
    kek_retired_seen(in);
    finish(in);
}

static void batch_done_cb(void *arg, const struct gw_store_result *r, size_t n)
{
    struct intake *in = arg;
    size_t i;

    in->storereq = NULL;
    for (i = 0; i < n && i < in->nstored; i++)
        store_outcome(&in->items[in->stored[i]], &r[i]);
    kek_retired_seen(in);
    finish(in);
}

/* One incident per call for its numbers outside the branch's segments (Art. 17, 18). */
static void record_segment_incident(struct intake *in)
{
    const struct gw_log_ctx *lc = gw_call_log_ctx(in->call);
    struct gw_incident inc = {.severity = "medium", .kind = "segment_violation"};
    char detail[128];
    int rc;

    GW_LOG(GW_LOG_WARN, "intake", lc, "%zu waybill number(s) outside the branch's segments refused",
           in->seg_refused);
    snprintf(detail, sizeof(detail),
             "%zu submitted waybill number(s) outside the branch's segments", in->seg_refused);
    inc.principal = in->who->name;
    inc.peer = gw_call_peer(in->call);
    inc.branch = in->who->branch;
    inc.detail = detail;
    rc = gw_incident_record(in->app->incidents, &inc);
    if (rc != 0)
        GW_LOG(GW_LOG_ERROR, "intake", lc, "could not record the segment incident: %s",
               gw_err_str(rc));
}

/* Art. 36: the KEK version this gateway seals under has reached its limit of data-key wraps
 * (sql/050): nothing is sealed until an operator rotates the KEK and reloads the keyring. One
 * incident per version so refused, whatever the number of refused Submits (a new KEK resets it:
 * wraplease.h); the log says each call's count. */
static void wrap_limit_seen(struct intake *in)
{
    const struct gw_log_ctx *lc = gw_call_log_ctx(in->call);
    struct gw_wraplease *l = in->app->wraps;
    const char *suite = gw_suite_name((enum gw_suite)l->suite);
    struct gw_incident inc = {
        .severity = "high", .kind = "kek_wrap_limit", .principal = "waygated"};
    char detail[200];

    if (in->wrap_limited == 0)
        return;
    GW_LOG(GW_LOG_ERROR, "intake", lc,
           "%zu waybill(s) refused: %s KEK version %u has reached its limit of data-key wraps "
           "(%" PRIu64 " counted): rotate the KEK and reload the gateway's keyring (SIGHUP)",
           in->wrap_limited, suite, l->version, l->counted);
    if (l->reported)
        return;
    l->reported = true;
    snprintf(detail, sizeof(detail),
             "Submit refused: %s KEK version %u of this gateway's keyring has reached its limit of "
             "data-key wraps (%" PRIu64 " counted); rotate the KEK",
             suite, l->version, l->counted);
    inc.detail = detail;
    if (gw_incident_record(in->app->incidents, &inc) != 0)
        GW_LOG(GW_LOG_ERROR, "intake", lc, "could not record the kek_wrap_limit incident");
}

/* Seals every item still pending and hands them to the store. */
static void store_stage(struct intake *in)
{
    struct gw_arena *a = gw_call_arena(in->call);
    struct gw_sealed_waybill *sealed;
    const char *branch = in->who->branch, *by = in->who->name;
    int64_t now = (int64_t)time(NULL);
    size_t i;
    int rc;

    if (in->seg_refused > 0)
        record_segment_incident(in);
    sealed = gw_arena_alloc(a, in->n * sizeof(*sealed));
    in->stored = gw_arena_alloc(a, in->n * sizeof(*in->stored));
    if (sealed == NULL || in->stored == NULL) {
        gw_call_set_cancel(in->call, NULL, NULL);
        gw_call_fail(in->call, GW_ENOMEM, NULL, GW_RULE_NONE);
        return;
    }
    in->nstored = 0;
    for (i = 0; i < in->n; i++) {
        struct item *it = &in->items[i];
        if (it->code != ITEM_PENDING)
            continue;
        if (in->app->keys_unchecked) { /* app/kekguard.h: sealed under a key not yet vouched */
            refuse(it, GW_EUNAVAIL, NULL, GW_RULE_KEYS_UNCHECKED);
            continue;
        }
        /* Art. 36: its data key is wrapped only against a wrap leased from the database
         * (wraplease.h): none held, UNAVAILABLE; the KEK version at its limit, rotate */
        rc = gw_wraplease_take(in->app->wraps);
        if (rc != 0) {
            refuse(it, rc, NULL,
                   rc == GW_EPRECOND ? GW_RULE_KEK_WRAP_LIMIT : GW_RULE_NO_WRAP_LEASE);
            in->wrap_limited += rc == GW_EPRECOND;
            continue;
        }
        rc = gw_seal_new_id(in->app->crypto, it->id);
        if (rc == 0)
            rc = gw_seal_waybill(in->app->crypto, in->app->keys, &it->w, &it->norm, it->id, branch,
                                 by, now, a, &sealed[in->nstored]);
        if (rc != 0) {
            GW_LOG(GW_LOG_ERROR, "intake", gw_call_log_ctx(in->call),
                   "sealing a waybill failed: %s", gw_err_str(rc));
            refuse(it, rc, NULL, GW_RULE_NOT_SEALED);
            continue;
        }
        if (in->nstored == 0) { /* one keyring seals every item of the call */
            in->kek_suite = gw_keyring_suite(in->app->keys);
            in->kek_version = (uint32_t)sealed[0].kek_version;
            in->keys_generation = in->app->keys_generation;
        }
        in->stored[in->nstored++] = i;
    }
    wrap_limit_seen(in);
    if (in->nstored == 0) {
        finish(in);
        return;
    }
    if (!in->batch)
        rc = gw_store_submit(in->app->store, &sealed[0], submit_done_cb, in, &in->storereq);
    else
        rc = gw_store_submit_batch(in->app->store, sealed, in->nstored, batch_done_cb, in,
                                   &in->storereq);
    if (rc != 0) {
        struct gw_store_result r = {.err = rc};
        for (i = 0; i < in->nstored; i++)
            store_outcome(&in->items[in->stored[i]], &r);
        finish(in);
    }
}

static void segment_refused(struct item *it)
{
    refuse(it, GW_EPRECOND, "waybill_no", GW_RULE_OUTSIDE_SEGMENTS);
    it->in->seg_refused++;
}

static void segment_cb(void *arg, int err, bool found)
{
    struct item *it = arg;
    struct intake *in = it->in;

    it->segreq = NULL;
    if (err != 0)
        refuse(it, gw_err_queue_full_or(err, GW_EUNAVAIL), "waybill_no",
               GW_RULE_SEGMENTS_UNREADABLE);
    else if (!found)
        segment_refused(it);
    if (--in->seg_pending == 0)
        store_stage(in);
}

/* Runs every synchronous check on one item; leaves it ITEM_PENDING if it passed so far. */
static void check_item(struct intake *in, struct item *it, const Waygate__V1__Waybill *pb,
                       int64_t now)
{
    struct gw_fault fault;
    char root[32];
    int rc;

    gw_api_waybill_from_pb(pb, &it->w);
    if (pb == NULL) {
        refuse(it, GW_EINVAL, NULL, GW_RULE_REQUIRED);
        return;
    }
    item_root(it, root);
    if (gw_waybill_validate_norm(&it->w, now, root, &fault, &it->norm) != 0) {
        refuse_fault(it, &fault);
        return;
    }
    if (it->w.origin_branch.n != 0 &&
        (it->w.origin_branch.n != strlen(in->who->branch) ||
         memcmp(it->w.origin_branch.p, in->who->branch, it->w.origin_branch.n) != 0)) {
        refuse(it, GW_EPERM, "origin_branch", GW_RULE_OWN_BRANCH);
        return;
    }
    rc = gw_segcache_check(in->app->segs, in->who->branch, it->norm.prefix, it->norm.numeric,
                           segment_cb, it, &it->segreq);
    if (rc == 1)
        return;
    if (rc == 0)
        segment_refused(it);
    else if (rc == GW_OK_PENDING)
        in->seg_pending++;
    else
        refuse(it, gw_err_queue_full_or(rc, GW_EUNAVAIL), "waybill_no",
               GW_RULE_SEGMENTS_UNREADABLE);
}

static void intake_start(struct gw_call *call, Waygate__V1__Waybill **waybills, size_t n,
                         bool batch)
{
    struct gw_arena *a = gw_call_arena(call);
    struct intake *in;
    int64_t now = (int64_t)time(NULL);
    size_t i;

    in = gw_arena_alloc(a, sizeof(*in));
    if (in != NULL)
        in->items = gw_arena_alloc(a, n * sizeof(*in->items));
    if (in == NULL || in->items == NULL) {
        gw_call_fail(call, GW_ENOMEM, NULL, GW_RULE_NONE);
        return;
    }
    in->call = call;
    in->app = gw_call_app(call);
    in->who = gw_call_principal(call);
    in->batch = batch;
    in->n = n;
    in->seg_pending = 0;
    in->seg_refused = 0;
    in->wrap_limited = 0;
    in->stored = NULL;
    in->nstored = 0;
    in->storereq = NULL;
    memset(in->items, 0, n * sizeof(*in->items));
    gw_call_set_cancel(call, cancel_cb, in);
    for (i = 0; i < n; i++) {
        in->items[i].in = in;
        in->items[i].index = i;
        in->items[i].code = ITEM_PENDING;
        check_item(in, &in->items[i], waybills[i], now);
        if (!batch && in->items[i].code != ITEM_PENDING && in->items[i].code != GW_GRPC_OK)
            GW_LOG(GW_LOG_INFO, "intake", gw_call_log_ctx(call), "waybill refused: %s",
                   in->items[i].msg);
    }
    if (in->seg_pending == 0)
        store_stage(in);
}

/* The checks every intake call shares: a scanner with a branch, a usable app. */
static bool intake_ready(struct gw_call *call)
{
    const struct gw_principal *who = gw_call_principal(call);
    struct gw_app *app = gw_call_app(call);

    if (who->branch[0] == '\0') {
        gw_call_fail(call, GW_EPERM, "principal", GW_RULE_PRINCIPAL_BRANCH);
        return false;
    }
    if (app == NULL || app->store == NULL || app->keys == NULL || app->crypto == NULL ||
        app->segs == NULL || app->incidents == NULL) {
        gw_call_fail(call, GW_EUNAVAIL, NULL, GW_RULE_NOT_CONFIGURED);
        return false;
    }
    return true;
}

void gw_api_intake_submit(struct gw_call *call, const uint8_t *req, size_t len)
{
    Waygate__V1__SubmitRequest *in;

    if (!intake_ready(call))
        return;
    in = (Waygate__V1__SubmitRequest *)gw_call_unpack(
        call, &waygate__v1__submit_request__descriptor, req, len);
    if (in == NULL)
        return;
    intake_start(call, &in->waybill, 1, false);
}

void gw_api_intake_submit_batch(struct gw_call *call, const uint8_t *req, size_t len)
{
    Waygate__V1__SubmitBatchRequest *in;
    struct gw_fault f;
    size_t count;

    if (!intake_ready(call))
        return;
    /* Counted on the wire before anything is unpacked (issue 10, finding 2): a batch of 400 000
     * empty items is 800 KB of wire but hundreds of MB unpacked. Broken framing is left to the
     * unpack, which names it. */
    if (gw_wire_count_max(req, len, BATCH_FIELD, BATCH_MAX, &count) == 0 && count > BATCH_MAX) {
        (void)gw_fault_set(&f, GW_EINVAL, NULL, "waybills", GW_RULE_BATCH_TOO_MANY);
        f.limit = BATCH_MAX;
        gw_call_finish_fault(call, &f);
        return;
    }
    in = (Waygate__V1__SubmitBatchRequest *)gw_call_unpack(
        call, &waygate__v1__submit_batch_request__descriptor, req, len);
    if (in == NULL)
        return;
    if (in->n_waybills == 0) {
        gw_call_fail(call, GW_EINVAL, "waybills", GW_RULE_BATCH_EMPTY);
        return;
    }
    if (in->n_waybills > BATCH_MAX) {
        (void)gw_fault_set(&f, GW_EINVAL, NULL, "waybills", GW_RULE_BATCH_TOO_MANY);
        f.limit = BATCH_MAX;
        gw_call_finish_fault(call, &f);
        return;
    }
    intake_start(call, in->waybills, in->n_waybills, true);
}
