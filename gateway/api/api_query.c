/* api_query.c: waygate.v1.WaybillQuery/Get: one waybill by number, decrypted and rendered as the
 * caller's role may see it (view.h), and what Search and Reveal share with it (api_query.h). A
 * record outside the caller's scope (origin or destination branch, read under the database's
 * row-level security as well) is NOT_FOUND, exactly as a missing one (no hint that it exists). A
 * record that fails to authenticate is DATA_LOSS and an incident, never another record's data.
 * Invariant: clear values live only in the call's arena (wiped when the call ends). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "waygate/v1/query.pb-c.h"

#include "alloc.h"
#include "api.h"
#include "api_query.h"
#include "api_render.h"
#include "app.h"
#include "incident.h"
#include "log.h"
#include "policy.h"
#include "scan.h"
#include "seal.h"
#include "store.h"
#include "throttle.h"
#include "view.h"
#include "waybillno.h"

struct get {
    struct gw_call *call;
    struct gw_store_req *req;
    char number[GW_WAYBILLNO_MAX + 1]; /* the number asked for, normalised */
    size_t number_len;
};

static void cancel_cb(void *arg)
{
    struct get *g = arg;

    gw_store_cancel(g->req);
    g->req = NULL;
}

/* The string slot of the view that shows column c, or NULL for the numeric columns. */
static char **slot(Waygate__V1__Waybill *w, enum gw_col c)
{
    Waygate__V1__Party *p = c >= GW_COL_RECIPIENT_NAME ? w->recipient : w->sender;

    switch (c) {
    case GW_COL_WAYBILL_NO:
        return &w->waybill_no;
    case GW_COL_ITEM_DESCRIPTION:
        return &w->item_description;
    case GW_COL_SENDER_NAME:
    case GW_COL_RECIPIENT_NAME:
        return &p->name;
    case GW_COL_SENDER_PHONE:
    case GW_COL_RECIPIENT_PHONE:
        return &p->phone;
    case GW_COL_SENDER_PROVINCE:
    case GW_COL_RECIPIENT_PROVINCE:
        return &p->province;
    case GW_COL_SENDER_CITY:
    case GW_COL_RECIPIENT_CITY:
        return &p->city;
    case GW_COL_SENDER_DISTRICT:
    case GW_COL_RECIPIENT_DISTRICT:
        return &p->district;
    case GW_COL_SENDER_ADDRESS_DETAIL:
    case GW_COL_RECIPIENT_ADDRESS_DETAIL:
        return &p->address_detail;
    case GW_COL_SENDER_COMPANY:
    case GW_COL_RECIPIENT_COMPANY:
        return &p->company;
    case GW_COL_SENDER_ID_NUMBER:
    case GW_COL_RECIPIENT_ID_NUMBER:
        return &p->id_number;
    default:
        return NULL;
    }
}

static void set_number(Waygate__V1__Waybill *w, enum gw_col c, const struct gw_str *v)
{
    long long x = v->n > 0 ? strtoll(v->p, NULL, 10) : 0;

    switch (c) {
    case GW_COL_PICKUP_TIME:
        w->pickup_time = x;
        break;
    case GW_COL_SENDER_ID_TYPE:
        w->sender->id_type = (Waygate__V1__IdType)x;
        break;
    case GW_COL_RECIPIENT_ID_TYPE:
        w->recipient->id_type = (Waygate__V1__IdType)x;
        break;
    case GW_COL_SENDER_GENDER:
        w->sender->gender = (Waygate__V1__Gender)x;
        break;
    case GW_COL_RECIPIENT_GENDER:
        w->recipient->gender = (Waygate__V1__Gender)x;
        break;
    default:
        break;
    }
}

int gw_api_render_view(struct gw_call *call, const struct gw_sealed_waybill *row,
                       const struct gw_str clear[GW_COL_COUNT], Waygate__V1__WaybillView *view)
{
    return gw_api_render_view_in(call, gw_call_arena(call), row, clear, view);
}

static int render_modes_in(struct gw_app *app, struct gw_arena *a,
                           const struct gw_sealed_waybill *row,
                           const struct gw_str clear[GW_COL_COUNT],
                           const enum gw_view_mode modes[GW_COL_COUNT],
                           Waygate__V1__WaybillView *view);

int gw_api_render_view_in(struct gw_call *call, struct gw_arena *a,
                          const struct gw_sealed_waybill *row,
                          const struct gw_str clear[GW_COL_COUNT], Waygate__V1__WaybillView *view)
{
    return gw_api_render_role_in(gw_call_app(call), gw_call_policy(call),
                                 gw_call_principal(call)->role, a, row, clear, view);
}

int gw_api_render_role_in(struct gw_app *app, const struct gw_policy *pol, const char *role,
                          struct gw_arena *a, const struct gw_sealed_waybill *row,
                          const struct gw_str clear[GW_COL_COUNT], Waygate__V1__WaybillView *view)
{
    enum gw_view_mode modes[GW_COL_COUNT];

    gw_policy_view_modes(pol, role, modes);
    return render_modes_in(app, a, row, clear, modes, view);
}

int gw_api_render_modes(struct gw_call *call, const struct gw_sealed_waybill *row,
                        const struct gw_str clear[GW_COL_COUNT],
                        const enum gw_view_mode modes[GW_COL_COUNT], Waygate__V1__WaybillView *view)
{
    return render_modes_in(gw_call_app(call), gw_call_arena(call), row, clear, modes, view);
}

static int render_modes_in(struct gw_app *app, struct gw_arena *a,
                           const struct gw_sealed_waybill *row,
                           const struct gw_str clear[GW_COL_COUNT],
                           const enum gw_view_mode modes[GW_COL_COUNT],
                           Waygate__V1__WaybillView *view)
{
    Waygate__V1__Waybill *w;
    Waygate__V1__Party *s, *r;
    size_t c, nred = 0, len;
    char **dst, *buf;
    enum gw_suite suite = gw_keyring_suite(app->keys); /* tokens: the configured suite */
    int rc;

    w = gw_arena_alloc(a, sizeof(*w));
    s = gw_arena_alloc(a, sizeof(*s));
    r = gw_arena_alloc(a, sizeof(*r));
    view->redacted_fields = gw_arena_alloc(a, GW_COL_COUNT * sizeof(char *));
    view->id = gw_arena_alloc(a, 37);
    if (w == NULL || s == NULL || r == NULL || view->redacted_fields == NULL || view->id == NULL)
        return GW_ENOMEM;
    waygate__v1__waybill__init(w);
    waygate__v1__party__init(s);
    waygate__v1__party__init(r);
    w->sender = s;
    w->recipient = r;
    gw_store_id_text(row->id, view->id);
    view->status = "accepted";
    view->accepted_at = row->accepted_at;
    w->origin_branch = gw_arena_strdup(a, row->origin_branch);
    w->dest_region_code = gw_arena_strdup(a, row->dest_region_code);
    w->service_type = gw_arena_strdup(a, row->service_type);
    if (w->origin_branch == NULL || w->dest_region_code == NULL || w->service_type == NULL)
        return GW_ENOMEM;
    w->weight_grams = row->weight_grams > 0 ? (uint32_t)row->weight_grams : 0;
    w->security_level = (Waygate__V1__SecurityLevel)row->security_level;

    for (c = 0; c < GW_COL_COUNT; c++) {
        enum gw_view_mode mode = modes[c];
        dst = slot(w, (enum gw_col)c);
        if (mode != GW_VIEW_CLEAR && clear[c].n > 0)
            view->redacted_fields[nred++] = (char *)gw_col_field[c];
        if (dst == NULL) {
            if (mode == GW_VIEW_CLEAR)
                set_number(w, (enum gw_col)c, &clear[c]);
            continue;
        }
        buf = gw_arena_alloc(a, GW_VIEW_BOUND(clear[c].n));
        if (buf == NULL)
            return GW_ENOMEM;
        rc = gw_view_render(app->crypto, suite, gw_keyring_token_key(app->keys, suite),
                            (enum gw_col)c, mode, clear[c].p, clear[c].n, buf,
                            GW_VIEW_BOUND(clear[c].n), &len);
        if (rc != 0)
            return rc;
        *dst = buf;
    }
    view->n_redacted_fields = nred;
    view->waybill = w;
    return 0;
}

_Static_assert(GW_INCIDENT_ID_LEN == GW_STORE_ID_LEN, "an incident's record id is a record id");
_Static_assert(GW_SEAL_LOOKUP_N == GW_STORE_BIDX_ALTS, "a lookup's blind indexes, one per suite");

void gw_api_incident(struct gw_call *call, const char *severity, const char *kind,
                     const char *detail, const uint8_t *record_id)
{
    const struct gw_principal *p = gw_call_principal(call);
    const struct gw_log_ctx *lc = gw_call_log_ctx(call);
    struct gw_incident inc = {
        .severity = severity,
        .kind = kind,
        .principal = p->name,
        .peer = gw_call_peer(call),
        .branch = p->branch,
        .detail = detail,
        .record_id = record_id,
    };
    int rc;

    /* A confidential call's incident (a lawful read's, Art. 16) keeps what happened (severity,
     * kind, detail) and nothing of who, from where or which record: incidents are listed to
     * operators and the security team, and a row naming the principal or the record would tell
     * them that lawful access is under way and which waybill a case names. The record id stays
     * in the place built for it: the read's confidential audit record (api_lawful_read.c). */
    if (gw_call_confidential(call)) {
        inc.principal = inc.peer = inc.branch = NULL;
        inc.record_id = NULL;
    }
    rc = gw_incident_record(gw_call_app(call)->incidents, &inc);
    if (rc != 0)
        GW_LOG(GW_LOG_ERROR, "query", lc, "could not record the incident: %s", gw_err_str(rc));
}

/* Logs and records the incident of a row that failed to open (err GW_EDATALOSS at part bad, or
 * GW_EPRECOND: its key is unavailable). */
static void record_unreadable(struct gw_call *call, const struct gw_sealed_waybill *row, int bad,
                              int err)
{
    const struct gw_log_ctx *lc = gw_call_log_ctx(call);
    const char *part = bad >= 0                      ? gw_col_sql[bad]
                       : bad == GW_SEAL_PART_DEK     ? "dek_wrapped"
                       : bad == GW_SEAL_PART_CONTENT ? "content_mac"
                       : bad == GW_SEAL_PART_RECORD  ? "record_mac"
                       : bad == GW_SEAL_PART_NUMBER  ? "wb_bidx (another waybill's number)"
                       : bad == GW_SEAL_PART_FIELDS  ? "fields_ct (or a clear column it binds)"
                                                     : "record";
    char idtext[37], detail[160];

    gw_store_id_text(row->id, idtext);
    if (err == GW_EDATALOSS)
        snprintf(detail, sizeof(detail), "stored record failed authentication at %s", part);
    else
        snprintf(detail, sizeof(detail), "record's key-encryption key version %d is unavailable",
                 (int)row->kek_version);
    if (gw_call_confidential(call)) /* no record id: it would name a case's waybill (above) */
        GW_LOG(GW_LOG_ERROR, "query", lc, "a record read: %s", detail);
    else
        GW_LOG(GW_LOG_ERROR, "query", lc, "record=%s: %s", idtext, detail);
    gw_api_incident(call, err == GW_EDATALOSS ? "high" : "medium",
                    err == GW_EDATALOSS ? "decryption_failure" : "key_unavailable", detail,
                    row->id);
}

int gw_api_open_row(struct gw_call *call, const struct gw_sealed_waybill *row, const char *number,
                    size_t number_len, struct gw_str clear[GW_COL_COUNT])
{
    return gw_api_open_row_in(call, gw_call_arena(call), row, number, number_len, clear);
}

int gw_api_open_row_in(struct gw_call *call, struct gw_arena *a,
                       const struct gw_sealed_waybill *row, const char *number, size_t number_len,
                       struct gw_str clear[GW_COL_COUNT])
{
    struct gw_app *app = gw_call_app(call);
    int bad = GW_SEAL_PART_NONE;
    int rc;

    /* A confidential call's (a lawful read's) opens are counted nowhere: the count moving while
     * every call series stood still would tell a lawful read, and its size (Art. 16). */
    if (!gw_call_confidential(call))
        app->records_opened++;
    rc = gw_unseal_waybill(app->crypto, app->keys, row, a, clear, &bad);

    if (rc == 0 && number != NULL &&
        (clear[GW_COL_WAYBILL_NO].n != number_len ||
         memcmp(clear[GW_COL_WAYBILL_NO].p, number, number_len) != 0)) {
        bad = GW_SEAL_PART_NUMBER;
        rc = GW_EDATALOSS;
    }
    if (rc == GW_EDATALOSS || rc == GW_EPRECOND)
        record_unreadable(call, row, bad, rc);
    return rc;
}

void gw_api_fail_unreadable(struct gw_call *call, int err)
{
    gw_call_fail(call, err, NULL,
                 err == GW_EDATALOSS ? GW_RULE_RECORD_TAMPERED : GW_RULE_KEY_UNAVAILABLE);
}

/* The store could not answer: a database outage says so (retrying is safe); anything else is
 * an unreadable waybill. */
void gw_api_read_failed(struct gw_call *call, int err)
{
    gw_call_fail(call, err, NULL, err == GW_EUNAVAIL ? GW_RULE_DB_UNAVAILABLE : GW_RULE_NOT_READ);
}

const char *gw_api_who(const struct gw_principal *p, char buf[GW_API_WHO_MAX])
{
    if (p->authn == GW_AUTHN_TOKEN)
        snprintf(buf, GW_API_WHO_MAX, "account:%" PRId64, p->account_id);
    else
        snprintf(buf, GW_API_WHO_MAX, "cert:%s", p->name);
    return buf;
}

/* What the policy's scope decisions look at in a row. */
static struct gw_policy_record policy_record(const struct gw_store_row *row)
{
    return (struct gw_policy_record){.origin_branch = row->w.origin_branch,
                                     .dest_branch = row->dest_branch,
                                     .custody_branch = row->custody_branch,
                                     .custodian_delivers =
                                         row->last_event == GW_SCAN_OUT_FOR_DELIVERY ||
                                         row->last_event == GW_SCAN_DELIVERY_FAILED,
                                     .security_level = row->w.security_level};
}

/* The policy's scope: a record outside it is answered exactly like one that does not exist. */
bool gw_api_in_scope(struct gw_call *call, const struct gw_store_row *row)
{
    struct gw_policy_record rec = policy_record(row);

    return gw_policy_in_scope(gw_call_policy(call), gw_call_principal(call), &rec);
}

bool gw_api_may_reveal_here(struct gw_call *call, const struct gw_store_row *row, enum gw_col col)
{
    struct gw_policy_record rec = policy_record(row);

    return gw_policy_may_reveal_here(gw_call_policy(call), gw_call_principal(call), &rec, col);
}

bool gw_api_in_lawful_scope(struct gw_call *call, const struct gw_store_row *row)
{
    struct gw_policy_record rec = policy_record(row);

    return gw_policy_in_lawful_scope(gw_call_policy(call), gw_call_principal(call), &rec);
}

/* What one of the principal's throttled counts is (gw_throttle_check's table, shared): the
 * distinct keys it counts, its own key space in the table (a prefix of the caller's identity),
 * its limit in the role's [limits], and how a refusal over that limit is worded and recorded. */
struct throttled {
    const char *prefix; /* of the caller's identity: the count's key space */
    uint32_t (*limit)(const struct gw_policy_limits *lim);
    const char *counted; /* what the incident's detail says was counted */
    const char *refused; /* ... and what is refused past the limit */
    const char *kind;    /* the incident's kind over the limit */
    const char *field;   /* the field the refusal names (NULL: none) */
    enum gw_rule rule;   /* the refusal's rule over the limit */
};

static uint32_t lookups_limit(const struct gw_policy_limits *lim)
{
    return lim->lookups_per_window;
}

static uint32_t arrivals_limit(const struct gw_policy_limits *lim)
{
    return lim->arrivals_per_window;
}

static const struct throttled lookups = {"",
                                         lookups_limit,
                                         "distinct waybills or phone numbers looked up",
                                         "lookups",
                                         "bulk_scraping",
                                         NULL,
                                         GW_RULE_LOOKUPS_THROTTLED};
/* "arrive:" + "account:<id>" or "cert:<name of at most 63 bytes>" fits GW_THROTTLE_WHO_MAX */
static const struct throttled arrivals = {"arrive:",
                                          arrivals_limit,
                                          "distinct waybills scanned in as ARRIVED",
                                          "arrivals",
                                          "arrival_throttle",
                                          "waybill_no",
                                          GW_RULE_ARRIVALS_THROTTLED};

/* Counts key under the caller's count t (in the one throttle table, within the role's
 * lookup_window_s). Returns true when allowed, else false after failing the call. */
static bool throttle(struct gw_call *call, const uint8_t key[GW_STORE_BIDX_LEN],
                     const struct throttled *t)
{
    struct gw_app *app = gw_call_app(call);
    const struct gw_principal *p = gw_call_principal(call);
    const struct gw_log_ctx *lc = gw_call_log_ctx(call);
    struct gw_policy_limits lim;
    struct gw_fault f;
    struct timespec ts;
    char who[GW_API_WHO_MAX], id[GW_API_WHO_MAX], detail[200];
    const char *w;
    bool incident = false;
    enum gw_throttle_verdict v;
    enum gw_log_level level;
    enum gw_rule rule;
    const char *kind, *field = NULL;
    unsigned long limit;

    gw_policy_limits(gw_call_policy(call), p->role, &lim);
    clock_gettime(CLOCK_MONOTONIC, &ts);
    w = gw_api_who(p, id);
    if (t->prefix[0] != '\0') { /* an arrival's key space; a lookup (every read) needs no copy */
        snprintf(who, sizeof(who), "%s%s", t->prefix, w);
        w = who;
    }
    v = gw_throttle_check(app->throttle, w, key, t->limit(&lim), lim.lookup_window_s,
                          (uint64_t)ts.tv_sec, &incident);
    if (v == GW_THROTTLE_OK)
        return true;
    if (v == GW_THROTTLE_FULL) { /* the table's capacity, not the caller's doing */
        struct gw_throttle_stats st;

        gw_throttle_stats(app->throttle, &st);
        snprintf(detail, sizeof(detail),
                 "lookup throttle table full on this gateway instance (%zu/%zu principals, "
                 "%zu/%zu keys): new lookups refused; see [server] lookup_throttle_*",
                 st.principals, st.max_principals, st.keys, st.max_keys);
        level = GW_LOG_ERROR;
        kind = "throttle_full";
        rule = GW_RULE_LOOKUP_TABLE_FULL;
        limit = st.max_principals;
    } else {
        snprintf(detail, sizeof(detail),
                 "more than %" PRIu32 " %s within %" PRIu32
                 " s on this gateway instance; further %s refused",
                 t->limit(&lim), t->counted, lim.lookup_window_s, t->refused);
        level = GW_LOG_WARN;
        kind = t->kind;
        rule = t->rule;
        field = t->field;
        limit = t->limit(&lim);
    }
    if (incident) {
        GW_LOG(level, "query", lc, "%s", detail);
        gw_api_incident(call, "high", kind, detail, NULL);
    }
    gw_fault_set(&f, GW_ETOOBIG, NULL, field, rule);
    f.limit = limit;
    gw_call_finish_fault(call, &f);
    return false;
}

bool gw_api_throttle(struct gw_call *call, const uint8_t key[GW_STORE_BIDX_LEN])
{
    return throttle(call, key, &lookups);
}

bool gw_api_throttle_arrival(struct gw_call *call, const uint8_t key[GW_STORE_BIDX_LEN])
{
    return throttle(call, key, &arrivals);
}

void *gw_api_read_start(struct gw_call *call, const ProtobufCMessageDescriptor *desc,
                        const uint8_t *req, size_t len, size_t size, ProtobufCMessage **in)
{
    struct gw_app *app = gw_call_app(call);
    void *state;

    if (gw_call_principal(call)->branch[0] == '\0') {
        gw_call_fail(call, GW_EPERM, "principal", GW_RULE_PRINCIPAL_BRANCH);
        return NULL;
    }
    if (app == NULL || app->store == NULL || app->keys == NULL || app->crypto == NULL ||
        app->throttle == NULL) {
        gw_call_fail(call, GW_EUNAVAIL, NULL, GW_RULE_NOT_CONFIGURED);
        return NULL;
    }
    *in = gw_call_unpack(call, desc, req, len);
    if (*in == NULL)
        return NULL;
    state = gw_arena_alloc(gw_call_arena(call), size);
    if (state == NULL) {
        gw_call_fail(call, GW_ENOMEM, NULL, GW_RULE_NONE);
        return NULL;
    }
    memset(state, 0, size);
    return state;
}

bool gw_api_row_visible(struct gw_call *call, int err, const struct gw_store_row *row,
                        const char *number, size_t number_len, struct gw_str clear[GW_COL_COUNT])
{
    int rc;

    if (err == GW_ENOTFOUND) {
        gw_call_fail(call, GW_ENOTFOUND, "waybill_no", GW_RULE_NOT_IN_SCOPE);
        return false;
    }
    if (err != 0) {
        gw_api_read_failed(call, err);
        return false;
    }
    /* Authenticate before the scope check: the scope rests on origin_branch and
     * dest_region_code, clear columns that only the record MAC vouches for, and an altered
     * record deserves its incident whoever reads it in scope. (A record above the caller's
     * level was not read: the statement asks the level, gw_store_get; the check below holds the
     * authenticated level to it again.) */
    rc = gw_api_open_row(call, &row->w, number, number_len, clear);
    if (rc == GW_EDATALOSS || rc == GW_EPRECOND) {
        gw_api_fail_unreadable(call, rc);
        return false;
    }
    if (rc != 0) {
        gw_call_fail(call, rc, NULL, GW_RULE_NOT_READ);
        return false;
    }
    if (!gw_api_in_scope(call, row)) { /* exactly like a number that does not exist */
        gw_call_fail(call, GW_ENOTFOUND, "waybill_no", GW_RULE_NOT_IN_SCOPE);
        return false;
    }
    return true;
}

static void got_cb(void *arg, int err, const struct gw_store_row *row)
{
    Waygate__V1__WaybillView view = WAYGATE__V1__WAYBILL_VIEW__INIT;
    struct get *g = arg;
    struct gw_str clear[GW_COL_COUNT];
    int rc;

    g->req = NULL;
    gw_call_set_cancel(g->call, NULL, NULL);
    if (!gw_api_row_visible(g->call, err, row, g->number, g->number_len, clear))
        return;
    rc = gw_api_render_view(g->call, &row->w, clear, &view);
    view.status = (char *)gw_scan_status(row->last_event);
    if (rc == 0)
        rc = gw_call_send(g->call, &view.base);
    if (rc != 0) {
        gw_call_fail(g->call, rc, NULL, GW_RULE_NOT_RENDERED);
        return;
    }
    gw_call_finish(g->call, GW_GRPC_OK, NULL);
}

void gw_api_query_get(struct gw_call *call, const uint8_t *req, size_t len)
{
    Waygate__V1__GetRequest *in;
    ProtobufCMessage *msg;
    struct gw_app *app = gw_call_app(call);
    uint8_t bidx[GW_SEAL_LOOKUP_N][GW_CRYPTO_BIDX_LEN]; /* one per suite of the keyring */
    enum gw_rule rule = GW_RULE_NONE;
    struct get *g;
    int rc;

    g = gw_api_read_start(call, &waygate__v1__get_request__descriptor, req, len, sizeof(*g), &msg);
    if (g == NULL)
        return;
    in = (Waygate__V1__GetRequest *)msg;
    if (in->waybill_no[0] == '\0') {
        gw_call_fail(call, GW_EINVAL, "waybill_no", GW_RULE_REQUIRED);
        return;
    }
    g->call = call;
    if (gw_waybillno_normalize(in->waybill_no, strlen(in->waybill_no), g->number, &g->number_len,
                               &rule) != 0) {
        gw_call_fail(call, GW_EINVAL, "waybill_no", rule);
        return;
    }
    rc = gw_seal_lookup_bidx(app->crypto, app->keys, GW_BIDX_WAYBILL_NO, g->number, g->number_len,
                             bidx);
    if (rc != 0) {
        gw_call_fail(call, rc, NULL, GW_RULE_NONE);
        return;
    }
    if (!gw_api_throttle(call, bidx[0]))
        return;
    rc = gw_store_get(app->store, gw_call_principal(call)->branch, bidx,
                      gw_policy_max_level(gw_call_policy(call), gw_call_principal(call)->role),
                      got_cb, g, &g->req);
    if (rc != 0) {
        gw_api_read_failed(call, rc);
        return;
    }
    gw_call_set_cancel(call, cancel_cb, g);
}
