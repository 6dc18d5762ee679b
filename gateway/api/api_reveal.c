/* api_reveal.c: waygate.v1.WaybillQuery/Reveal: one field of one waybill in clear, for a stated
 * reason. Checks, in order: the request (number, field path, reason: text.h's free-text rule),
 * whether the role may reveal that field at all (policy), the scraping throttle, the record within
 * the caller's scope (read and authenticated exactly as Get: outside the scope is NOT_FOUND like a
 * missing number), and where the record is (policy.h, gw_policy_may_reveal_here: a branch holding
 * it only in custody reveals the recipient's phone alone, while delivering; a courier only for a
 * waybill its branch delivers). Then two transactions,
 * in this order:
 *   1. the quota ledger (store: gw_store_reveal): counts the caller's reveals in the last hour and
 *      the current UTC day and writes the reveal_log row (who, certificate, peer, record, field,
 *      reason; never the value) only under both quotas. Over quota: RESOURCE_EXHAUSTED naming the
 *      quota hit, a 'reveal_quota' incident and a "reveal" audit record with outcome "refused".
 *   2. the audit record (Art. 33; gw_audit_write, this gateway's chain): action "reveal", object
 *      "<record uuid>:<field>", purpose the reason. The value is sent only after this record
 *      committed (fail closed): a record that cannot be written fails the call UNAVAILABLE and
 *      nothing is released. audit_seq is that record's sequence number in the chain.
 * A reveal_log row whose audit record then failed counts against the quota as an attempt: the
 * ledger limits how often one asks, the chain proves what was released.
 * Invariant: the clear value lives only in the call's arena. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "waygate/v1/query.pb-c.h"

#include "alloc.h"
#include "api.h"
#include "api_query.h"
#include "api_record.h"
#include "app.h"
#include "audit.h"
#include "incident.h"
#include "log.h"
#include "policy.h"
#include "seal.h"
#include "store.h"
#include "text.h"
#include "waybillno.h"

#define REASON_MAX 512 /* bytes; reveal_log's CHECK says the same */

struct reveal {
    struct gw_call *call;
    struct gw_store_req *req;
    struct gw_audit_req *areq;
    enum gw_col col;
    char number[GW_WAYBILLNO_MAX + 1];
    size_t number_len;
    const char *reason; /* in the request, in the call's arena */
    char who[GW_API_WHO_MAX];
    struct gw_str value; /* the clear value, in the call's arena */
    struct gw_policy_limits lim;
    char object[37 + 1 + 64]; /* "<record uuid>:<field>" */
    uint32_t remaining;       /* quota left after this reveal */
};

static void cancel_cb(void *arg)
{
    struct reveal *r = arg;

    gw_store_cancel(r->req);
    r->req = NULL;
    gw_audit_cancel(r->areq);
    r->areq = NULL;
}

/* The quota's log line and incident, for the first GW_REFUSALS_EACH refusals of their kind in
 * the window (refusals.h): a flood raises no more, and the audit record counting the rest says
 * how many. */
static void quota_incident(struct reveal *r, const struct gw_store_reveal_result *res, bool raise)
{
    const struct gw_log_ctx *lc = gw_call_log_ctx(r->call);
    char detail[160];

    if (!raise)
        return;
    snprintf(detail, sizeof(detail),
             "reveal quota used up: %" PRIu32 " in the last hour (at most %" PRIu32 "), %" PRIu32
             " today (at most %" PRIu32 ")",
             res->used_hour, r->lim.reveals_per_hour, res->used_day, r->lim.reveals_per_day);
    GW_LOG(GW_LOG_WARN, "query", lc, "%s", detail);
    gw_api_incident(r->call, "medium", "reveal_quota", detail, NULL);
}

/* The reveal's audit record: who, the record and field, the reason as its purpose. */
static void reveal_record(struct reveal *r, struct gw_audit_rec *rec)
{
    gw_api_record_init(r->call, "reveal", rec);
    rec->object = r->object;
    rec->purpose = r->reason;
    rec->count = 1;
}

/* Step 2 done: the value leaves only when its record committed. */
static void audited_cb(void *arg, int err, int64_t seq, const struct gw_db_result *res)
{
    Waygate__V1__RevealResponse out = WAYGATE__V1__REVEAL_RESPONSE__INIT;
    struct reveal *r = arg;
    int rc;

    (void)res;
    r->areq = NULL;
    gw_call_set_cancel(r->call, NULL, NULL);
    if (err != 0) { /* not recorded (or not known to be): nothing is released */
        gw_api_log_unrecorded(r->call, err, NULL);
        gw_call_fail(r->call, gw_err_queue_full_or(err, GW_EUNAVAIL), NULL,
                     GW_RULE_ACCESS_NOT_RECORDED);
        return;
    }
    out.field = (char *)gw_col_field[r->col];
    out.value = (char *)r->value.p;
    out.remaining_quota = r->remaining;
    out.audit_seq = seq > 0 ? (uint64_t)seq : 0;
    GW_LOG(GW_LOG_INFO, "query", gw_call_log_ctx(r->call), "revealed %s (audit seq %" PRId64 ")",
           gw_col_field[r->col], seq);
    rc = gw_call_send(r->call, &out.base);
    if (rc != 0) {
        gw_call_fail(r->call, rc, NULL, GW_RULE_NOT_RENDERED);
        return;
    }
    gw_call_finish(r->call, GW_GRPC_OK, NULL);
}

/* Step 1 done: the ledger row committed under the quota; now the audit record. */
static void logged_cb(void *arg, int err, const struct gw_store_reveal_result *res)
{
    struct reveal *r = arg;
    struct gw_app *app = gw_call_app(r->call);
    struct gw_audit_rec rec;
    struct gw_fault f;
    uint32_t left_h, left_d;
    int rc;

    r->req = NULL;
    gw_call_set_cancel(r->call, NULL, NULL);
    if (err == GW_ETOOBIG) {
        reveal_record(r, &rec);
        rec.count = 0;
        rec.detail = res->hour_hit ? "reveal quota: hour" : "reveal quota: day";
        quota_incident(r, res, gw_api_record_refusal(r->call, &rec));
        gw_fault_set(&f, GW_ETOOBIG, NULL, NULL, GW_RULE_REVEAL_QUOTA);
        f.limit = res->hour_hit ? r->lim.reveals_per_hour : r->lim.reveals_per_day;
        gw_call_finish_fault(r->call, &f);
        return;
    }
    if (err != 0) { /* not recorded (or not known to be): nothing is released */
        gw_api_log_unrecorded(r->call, err, NULL);
        gw_call_fail(r->call, gw_err_queue_full_or(err, GW_EUNAVAIL), NULL,
                     GW_RULE_ACCESS_NOT_RECORDED);
        return;
    }
    left_h =
        res->used_hour < r->lim.reveals_per_hour ? r->lim.reveals_per_hour - res->used_hour : 0;
    left_d = res->used_day < r->lim.reveals_per_day ? r->lim.reveals_per_day - res->used_day : 0;
    r->remaining = left_h < left_d ? left_h : left_d;
    reveal_record(r, &rec);
    rc = app->audit != NULL ? gw_audit_write(app->audit, NULL, 0, &rec, 1, audited_cb, r, &r->areq)
                            : GW_EUNAVAIL;
    if (rc != 0) {
        gw_api_log_unrecorded(r->call, rc, NULL);
        gw_call_fail(r->call, gw_err_queue_full_or(rc, GW_EUNAVAIL), NULL,
                     GW_RULE_ACCESS_NOT_RECORDED);
        return;
    }
    gw_call_set_cancel(r->call, cancel_cb, r);
}

static void got_cb(void *arg, int err, const struct gw_store_row *row)
{
    struct reveal *r = arg;
    struct gw_app *app = gw_call_app(r->call);
    const struct gw_principal *p = gw_call_principal(r->call);
    struct gw_str clear[GW_COL_COUNT];
    struct gw_store_reveal rv;
    int rc;

    r->req = NULL;
    gw_call_set_cancel(r->call, NULL, NULL);
    if (!gw_api_row_visible(r->call, err, row, r->number, r->number_len, clear))
        return;
    /* Where the record is decides too: custody alone reveals only the recipient's phone while
     * delivering, a courier only for a waybill its branch delivers. */
    if (!gw_api_may_reveal_here(r->call, row, r->col)) {
        gw_call_fail(r->call, GW_EPERM, "field", GW_RULE_REVEAL_DENIED);
        return;
    }
    r->value = clear[r->col];
    memset(&rv, 0, sizeof(rv));
    rv.scope = p->branch;
    rv.quota_key = r->who;
    rv.principal = p->name;
    rv.account_id = p->authn == GW_AUTHN_TOKEN ? p->account_id : 0;
    rv.role = p->role;
    /* the certificate the call came over (for a certificate principal: itself) */
    rv.cert = p->cert[0] != '\0' ? p->cert : p->authn == GW_AUTHN_CERT ? p->name : "";
    rv.peer = gw_call_peer(r->call) != NULL ? gw_call_peer(r->call) : p->peer;
    memcpy(rv.record_id, row->w.id, sizeof(rv.record_id));
    gw_store_id_text(row->w.id, r->object);
    snprintf(r->object + 36, sizeof(r->object) - 36, ":%s", gw_col_field[r->col]);
    rv.field = gw_col_field[r->col];
    rv.reason = r->reason;
    rv.per_hour = r->lim.reveals_per_hour;
    rv.per_day = r->lim.reveals_per_day;
    rc = gw_store_reveal(app->store, &rv, logged_cb, r, &r->req);
    if (rc != 0) {
        gw_call_fail(r->call, gw_err_queue_full_or(rc, GW_EUNAVAIL), NULL,
                     GW_RULE_ACCESS_NOT_RECORDED);
        return;
    }
    gw_call_set_cancel(r->call, cancel_cb, r);
}

/* The column whose field path is path, or GW_COL_COUNT. */
static enum gw_col col_of(const char *path)
{
    for (size_t c = 0; c < GW_COL_COUNT; c++)
        if (strcmp(gw_col_field[c], path) == 0)
            return (enum gw_col)c;
    return GW_COL_COUNT;
}

void gw_api_query_reveal(struct gw_call *call, const uint8_t *req, size_t len)
{
    Waygate__V1__RevealRequest *in;
    ProtobufCMessage *msg;
    struct gw_app *app = gw_call_app(call);
    const struct gw_principal *p = gw_call_principal(call);
    uint8_t bidx[GW_SEAL_LOOKUP_N][GW_CRYPTO_BIDX_LEN]; /* one per suite of the keyring */
    enum gw_rule rule = GW_RULE_NONE;
    struct gw_fault f;
    struct reveal *r;
    int rc;

    r = gw_api_read_start(call, &waygate__v1__reveal_request__descriptor, req, len, sizeof(*r),
                          &msg);
    if (r == NULL)
        return;
    in = (Waygate__V1__RevealRequest *)msg;
    r->call = call;
    if (in->waybill_no[0] == '\0') {
        gw_call_fail(call, GW_EINVAL, "waybill_no", GW_RULE_REQUIRED);
        return;
    }
    if (gw_waybillno_normalize(in->waybill_no, strlen(in->waybill_no), r->number, &r->number_len,
                               &rule) != 0) {
        gw_call_fail(call, GW_EINVAL, "waybill_no", rule);
        return;
    }
    if (in->field[0] == '\0') {
        gw_call_fail(call, GW_EINVAL, "field", GW_RULE_REQUIRED);
        return;
    }
    r->col = col_of(in->field);
    if (r->col == GW_COL_COUNT) {
        gw_call_fail(call, GW_EINVAL, "field", GW_RULE_FIELD_UNKNOWN);
        return;
    }
    /* the one rule of a free text a person types and the gateway stores (text.h): it is the
     * audit record's purpose and a column of reveal_log */
    if (gw_text_field(in->reason, REASON_MAX, true, GW_RULE_REQUIRED, "reason", &f) != 0) {
        gw_call_finish_fault(call, &f);
        return;
    }
    r->reason = in->reason;
    /* Whether the role may reveal this field at all depends on no record: asked first. */
    if (!gw_policy_may_reveal(gw_call_policy(call), p->role, r->col)) {
        gw_call_fail(call, GW_EPERM, "field", GW_RULE_REVEAL_DENIED);
        return;
    }
    gw_policy_limits(gw_call_policy(call), p->role, &r->lim);
    gw_api_who(p, r->who);
    rc = gw_seal_lookup_bidx(app->crypto, app->keys, GW_BIDX_WAYBILL_NO, r->number, r->number_len,
                             bidx);
    if (rc != 0) {
        gw_call_fail(call, rc, NULL, GW_RULE_NONE);
        return;
    }
    if (!gw_api_throttle(call, bidx[0]))
        return;
    rc = gw_store_get(app->store, p->branch, bidx,
                      gw_policy_max_level(gw_call_policy(call), p->role), got_cb, r, &r->req);
    if (rc != 0) {
        gw_api_read_failed(call, rc);
        return;
    }
    gw_call_set_cancel(call, cancel_cb, r);
}
