/* api_lawful_read.c: WaybillQuery.Get by a lawful_access account (Art. 16): the clear fields of
 * a waybill named by one of the caller's approved, unexpired lawful-access cases (the case's
 * fields, or every field when it named none; the rest omitted). The database shows the row only
 * under the scope 'lawful:<account id>' (sql/010_lawful.sql); anything else is NOT_FOUND, the
 * same answer as for a number that does not exist. The rendered view leaves only after its
 * confidential lawful.read audit record committed, in a transaction that checks once more that
 * the case is still approved and unexpired (fail closed). A number no such case names, and a
 * record above the security level of the caller's role (policy.h: gw_policy_in_lawful_scope; the
 * levels bind lawful_access as every role), are recorded alike as a refused lawful.read (by the
 * number's blind index) and answered NOT_FOUND alike. Invariant: clear
 * values live only in the call's arena; nothing of the case or the waybill reaches a log line, nor
 * anything that tells lawful access: the call is confidential (call.h), and a failure writes only
 * the neutral lines every audited read writes (gw_api_log_unrecorded, and api_query.c's line of
 * an unreadable record, which names the record id as for any reader). */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "waygate/v1/query.pb-c.h"

#include "alloc.h"
#include "api_compliance.h"
#include "api_query.h"
#include "api_record.h"
#include "app.h"
#include "audit.h"
#include "policy.h"
#include "seal.h"
#include "store.h"
#include "store_lawful.h"
#include "waybillno.h"

struct lread {
    struct gw_call *call;
    struct gw_store_lawful_req *sreq;
    struct gw_audit_req *areq;
    char number[GW_WAYBILLNO_MAX + 1];
    size_t number_len;
    char case_id[37];
    char bidx_hex[2 * GW_CRYPTO_BIDX_LEN + 1]; /* the number's blind index, for a refusal */
    Waygate__V1__WaybillView view; /* rendered, in the call's arena, sent once recorded */
};

static void cancel_cb(void *arg)
{
    struct lread *r = arg;

    gw_store_lawful_cancel(r->sreq);
    r->sreq = NULL;
    gw_audit_cancel(r->areq);
    r->areq = NULL;
}

static void recorded_cb(void *arg, int err, int64_t seq, const struct gw_db_result *res)
{
    struct lread *r = arg;

    (void)seq;
    r->areq = NULL;
    gw_call_set_cancel(r->call, NULL, NULL);
    if (err == GW_EINTERNAL && res != NULL && res->sqlstate != NULL &&
        strcmp(res->sqlstate, GW_LAWFUL_LAPSED) == 0) { /* expired or withdrawn meanwhile */
        gw_call_fail(r->call, GW_ENOTFOUND, "waybill_no", GW_RULE_LAWFUL_NOT_GRANTED);
        return;
    }
    if (err != 0) { /* not recorded (or not known to be): nothing is released */
        /* the neutral line (call.h: a confidential call's) */
        gw_api_log_unrecorded(r->call, err, res != NULL ? res->sqlstate : NULL);
        gw_call_fail(r->call, gw_err_queue_full_or(err, GW_EUNAVAIL), NULL,
                     GW_RULE_ACCESS_NOT_RECORDED);
        return;
    }
    if (gw_call_send(r->call, &r->view.base) != 0) {
        gw_call_fail(r->call, GW_EINTERNAL, NULL, GW_RULE_NOT_RENDERED);
        return;
    }
    gw_call_finish(r->call, GW_GRPC_OK, NULL);
}

static void refusal_recorded_cb(void *arg, int err, int64_t seq, const struct gw_db_result *res)
{
    struct lread *r = arg;

    (void)seq;
    (void)res;
    r->areq = NULL;
    gw_call_set_cancel(r->call, NULL, NULL);
    if (err != 0)
        gw_api_log_refusal_unrecorded(err);
    gw_call_fail(r->call, GW_ENOTFOUND, "waybill_no", GW_RULE_LAWFUL_NOT_GRANTED);
}

/* A number no approved, unexpired case of the caller names, or whose record is above the
 * caller's role's security level: a confidential lawful.read record with outcome refused
 * (object: the number's blind index in hex, never the number or the record id), then the answer
 * of a number that does not exist. One record and one answer for both: neither the officer nor
 * a reader of the audit trail whose own level is lower learns that a classified record exists. */
static void record_refusal(struct lread *r)
{
    struct gw_app *app = gw_call_app(r->call);
    struct gw_audit_rec rec;
    int rc;

    gw_api_compliance_rec(r->call, &rec, "lawful.read", "refused");
    rec.object = r->bidx_hex;
    rec.detail = "not named by an approved, unexpired case, or above the role's security level";
    rec.confidential = true;
    rc = gw_audit_write(app->audit, NULL, 0, &rec, 1, refusal_recorded_cb, r, &r->areq);
    if (rc != 0) {
        gw_api_log_refusal_unrecorded(rc); /* the one line of every refusal's unwritten record */
        gw_call_fail(r->call, GW_ENOTFOUND, "waybill_no", GW_RULE_LAWFUL_NOT_GRANTED);
        return;
    }
    gw_call_set_cancel(r->call, cancel_cb, r);
}

/* A record the case names failed to open (err GW_EDATALOSS or GW_EPRECOND): its incident is
 * neutral (api_query.c: no principal, peer or record id, Art. 16), so which record, read under
 * which case, is kept where lawful access is kept: a confidential lawful.read record with outcome
 * failed, for the compliance auditors. Nobody waits for it: the call is answered at once. */
static void record_unreadable(struct lread *r, const struct gw_store_lawful_grant *g,
                              const uint8_t *id, int err)
{
    struct gw_audit_rec rec;
    char record_id[37];

    gw_store_id_text(id, record_id);
    gw_api_compliance_rec(r->call, &rec, "lawful.read", "failed");
    rec.object = record_id;
    rec.approval = g->case_id;
    rec.detail = err == GW_EDATALOSS ? "stored record failed authentication"
                                     : "record's key-encryption key is unavailable";
    rec.confidential = true;
    gw_api_record_unwaited(r->call, &rec);
}

/* The modes of a case's fields (comma-separated paths; "" every field): clear, else omitted. */
static void grant_modes(const char *fields, enum gw_view_mode modes[GW_COL_COUNT])
{
    const char *p = fields, *e;
    enum gw_col c;

    for (size_t i = 0; i < GW_COL_COUNT; i++)
        modes[i] = fields[0] == '\0' ? GW_VIEW_CLEAR : GW_VIEW_OMIT;
    while (*p != '\0') {
        e = strchr(p, ',');
        if (e == NULL)
            e = p + strlen(p);
        c = gw_api_col_of(p, (size_t)(e - p));
        if (c != GW_COL_COUNT)
            modes[c] = GW_VIEW_CLEAR;
        p = *e == ',' ? e + 1 : e;
    }
}

static void got_cb(void *arg, int err, const struct gw_store_row *row,
                   const struct gw_store_lawful_grant *g)
{
    struct lread *r = arg;
    struct gw_app *app = gw_call_app(r->call);
    const struct gw_principal *p = gw_call_principal(r->call);
    enum gw_view_mode modes[GW_COL_COUNT];
    struct gw_str clear[GW_COL_COUNT];
    struct gw_db_stmt st[GW_STORE_LAWFUL_STMTS];
    const char *vals[GW_STORE_LAWFUL_VALS];
    char buf[GW_STORE_LAWFUL_BUF], record_id[37], detail[48];
    struct gw_audit_rec rec;
    int nst, rc;

    r->sreq = NULL;
    gw_call_set_cancel(r->call, NULL, NULL);
    if (err == GW_ENOTFOUND) {
        record_refusal(r);
        return;
    }
    if (err != 0) {
        gw_api_read_failed(r->call, err);
        return;
    }
    rc = gw_api_open_row(r->call, &row->w, r->number, r->number_len, clear);
    if (rc == GW_EDATALOSS || rc == GW_EPRECOND) {
        record_unreadable(r, g, row->w.id, rc);
        gw_api_fail_unreadable(r->call, rc);
        return;
    }
    if (rc != 0) {
        gw_call_fail(r->call, rc, NULL, GW_RULE_NOT_READ);
        return;
    }
    /* above the role's security level: answered and recorded as a number no case names */
    if (!gw_api_in_lawful_scope(r->call, row)) {
        record_refusal(r);
        return;
    }
    grant_modes(g->fields, modes);
    waygate__v1__waybill_view__init(&r->view);
    rc = gw_api_render_modes(r->call, &row->w, clear, modes, &r->view);
    if (rc != 0) {
        gw_call_fail(r->call, rc, NULL, GW_RULE_NOT_RENDERED);
        return;
    }
    snprintf(r->case_id, sizeof(r->case_id), "%s", g->case_id);
    gw_store_id_text(row->w.id, record_id);
    nst = gw_store_lawful_check_stmts(r->case_id, p->account_id, st, vals, buf);
    gw_api_compliance_rec(r->call, &rec, "lawful.read", "ok");
    rec.object = record_id;
    rec.approval = r->case_id;
    rec.count = 1;
    rec.purpose = g->case_ref;
    snprintf(detail, sizeof(detail), "fields=%s", g->fields[0] == '\0' ? "all" : "case");
    rec.detail = detail;
    rec.confidential = true;
    rc = gw_audit_write(app->audit, st, nst, &rec, 1, recorded_cb, r, &r->areq);
    if (rc != 0) { /* not queued (the writer's queue full, the database away): nothing released */
        gw_api_log_unrecorded(r->call, rc, NULL);
        gw_call_fail(r->call, gw_err_queue_full_or(rc, GW_EUNAVAIL), NULL,
                     GW_RULE_ACCESS_NOT_RECORDED);
        return;
    }
    gw_call_set_cancel(r->call, cancel_cb, r);
}

void gw_api_lawful_get(struct gw_call *call, const uint8_t *req, size_t len)
{
    Waygate__V1__GetRequest *in;
    struct gw_app *app = gw_call_app(call);
    const struct gw_principal *p = gw_call_principal(call);
    uint8_t bidx[GW_SEAL_LOOKUP_N][GW_CRYPTO_BIDX_LEN]; /* one per suite of the keyring */
    enum gw_rule rule = GW_RULE_NONE;
    struct lread *r;
    int rc;

    if (p->authn != GW_AUTHN_TOKEN || p->account_id <= 0) {
        gw_call_fail(call, GW_EPERM, "authorization", GW_RULE_LAWFUL_ACCOUNT);
        return;
    }
    if (app == NULL || app->store == NULL || app->keys == NULL || app->crypto == NULL ||
        app->audit == NULL) {
        gw_call_fail(call, GW_EUNAVAIL, NULL, GW_RULE_NOT_CONFIGURED);
        return;
    }
    in = (Waygate__V1__GetRequest *)gw_call_unpack(call, &waygate__v1__get_request__descriptor, req,
                                                   len);
    if (in == NULL)
        return;
    if (in->waybill_no[0] == '\0') {
        gw_call_fail(call, GW_EINVAL, "waybill_no", GW_RULE_REQUIRED);
        return;
    }
    r = gw_arena_alloc(gw_call_arena(call), sizeof(*r));
    if (r == NULL) {
        gw_call_fail(call, GW_ENOMEM, NULL, GW_RULE_NONE);
        return;
    }
    memset(r, 0, sizeof(*r));
    r->call = call;
    if (gw_waybillno_normalize(in->waybill_no, strlen(in->waybill_no), r->number, &r->number_len,
                               &rule) != 0) {
        gw_call_fail(call, GW_EINVAL, "waybill_no", rule);
        return;
    }
    rc = gw_seal_lookup_bidx(app->crypto, app->keys, GW_BIDX_WAYBILL_NO, r->number, r->number_len,
                             bidx);
    if (rc != 0) {
        gw_call_fail(call, rc, NULL, GW_RULE_NONE);
        return;
    }
    for (size_t i = 0; i < GW_CRYPTO_BIDX_LEN; i++)
        snprintf(r->bidx_hex + 2 * i, 3, "%02x", bidx[0][i]);
    rc = gw_store_lawful_get(app->store, p->account_id, bidx,
                             gw_policy_max_level(gw_call_policy(r->call), p->role), got_cb, r,
                             &r->sreq);
    if (rc != 0) {
        gw_api_read_failed(call, rc);
        return;
    }
    gw_call_set_cancel(call, cancel_cb, r);
}
