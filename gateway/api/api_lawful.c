/* api_lawful.c: Compliance.RequestLawfulAccess, GetLawfulCase and DecideLawfulAccess (Art. 16). A
 * lawful_access account registers a case (agency, officer, case and legal-document references,
 * the waybills by number, the fields wanted); a security_admin account of another person
 * approves it until a time, or rejects it; the requester then reads exactly those waybills in
 * clear through WaybillQuery.Get (api_lawful_read.c) until that time; the security admin first
 * reads the case an id names with GetLawfulCase (lawful.view, below). Each step and its
 * confidential audit record (lawful.request, lawful.approve, lawful.reject; a decision by the
 * requester's own person is recorded as refused) commit in one transaction through the audit
 * writer; the answer is sent only after that commit. A decision is asked first, in a read of its
 * own (gw_store_lawful_decidable, sql/027), so that a refusal met in the ordinary course (no
 * such case, decided, expired, the requester's person) raises nothing in the database, whose
 * server log keeps every statement that raised; only what changed in between raises. Invariant:
 * waybill numbers leave this file only as blind indexes; nothing of a case reaches a log line, nor
 * anything that tells lawful access: the three methods are confidential (methods.c, call.h), and
 * the one line a failure writes is the neutral one every audited read writes
 * (gw_api_log_unrecorded); the free texts (agency, officer, references, comment) are stored only as
 * text.h's gw_text_field allows. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "waygate/v1/compliance.pb-c.h"

#include "alloc.h"
#include "api.h"
#include "api_compliance.h"
#include "api_pb.h"
#include "api_record.h"
#include "app.h"
#include "audit.h"
#include "config.h"
#include "seal.h"
#include "store.h"
#include "store_lawful.h"
#include "text.h"
#include "waybillno.h"

struct lawful {
    struct gw_call *call;
    struct gw_store_lawful_req *sreq; /* a decision's question (gw_store_lawful_decidable) */
    struct gw_audit_req *areq;
    char case_id[37];
    bool approve;
    struct gw_store_lawful_decision d; /* a decision's, queued once it may be decided */
    enum gw_rule refusal_rule; /* a refused decision's, answered once its record is written */
};

static void cancel_cb(void *arg)
{
    struct lawful *l = arg;

    gw_store_lawful_cancel(l->sreq);
    l->sreq = NULL;
    gw_audit_cancel(l->areq);
    l->areq = NULL;
}

/* The entry of a request or decision could not be queued (rc: GW_EQUEUEFULL the audit writer's
 * queue full, GW_EUNAVAIL the database away): nothing was done. The neutral line (call.h), then
 * the status that says why (err.c words a full queue). */
static void not_queued(struct gw_call *call, int rc)
{
    gw_api_log_unrecorded(call, rc, NULL);
    if (rc == GW_EINVAL)
        gw_call_fail(call, GW_EINVAL, NULL, GW_RULE_NONE);
    else
        gw_call_fail(call, gw_err_queue_full_or(rc, GW_EUNAVAIL), NULL, GW_RULE_DB_UNAVAILABLE);
}

/* The caller must be a person's account (token); this gateway must have its audit writer. */
static struct gw_app *lawful_start(struct gw_call *call)
{
    struct gw_app *app = gw_call_app(call);
    const struct gw_principal *p = gw_call_principal(call);

    if (p->authn != GW_AUTHN_TOKEN || p->account_id <= 0) {
        gw_call_fail(call, GW_EPERM, "authorization", GW_RULE_LAWFUL_ACCOUNT);
        return NULL;
    }
    if (app == NULL || app->audit == NULL || app->crypto == NULL || app->keys == NULL ||
        app->cfg == NULL) {
        gw_call_fail(call, GW_EUNAVAIL, NULL, GW_RULE_NOT_CONFIGURED);
        return NULL;
    }
    return app;
}

/* A free text of the request (text.h's gw_text_field: not blank when required, no control or
 * bidirectional characters, at most max bytes); false after failing the call. */
static bool text_ok(struct gw_call *call, const char *field, const char *v, bool required,
                    size_t max)
{
    struct gw_fault f;

    if (gw_text_field(v, max, required, GW_RULE_REQUIRED, field, &f) == 0)
        return true;
    gw_call_finish_fault(call, &f);
    return false;
}

/* Appends the array literal of the waybills' blind indexes ("{hex,hex}") into buf (arena),
 * each number's under every suite the keyring holds (a case keeps finding its records while they
 * migrate between suites; the insert drops duplicates); false after failing the call. */
static char *waybills_literal(struct gw_call *call, struct gw_app *app, char **nos, size_t n)
{
    static const char hexd[] = "0123456789abcdef";
    char *buf = gw_arena_alloc(gw_call_arena(call),
                               n * GW_SEAL_LOOKUP_N * (2 * GW_CRYPTO_BIDX_LEN + 1) + 3);
    char norm[GW_WAYBILLNO_MAX + 1], field[40];
    uint8_t bidx[GW_SEAL_LOOKUP_N][GW_CRYPTO_BIDX_LEN];
    enum gw_rule rule = GW_RULE_NONE;
    size_t i, k, len, pos = 0;

    if (buf == NULL) {
        gw_call_fail(call, GW_ENOMEM, NULL, GW_RULE_NONE);
        return NULL;
    }
    buf[pos++] = '{';
    for (i = 0; i < n; i++) {
        snprintf(field, sizeof(field), "waybill_nos[%zu]", i);
        if (gw_waybillno_normalize(nos[i], strlen(nos[i]), norm, &len, &rule) != 0) {
            gw_call_fail(call, GW_EINVAL, field, rule);
            return NULL;
        }
        if (gw_seal_lookup_bidx(app->crypto, app->keys, GW_BIDX_WAYBILL_NO, norm, len, bidx) != 0) {
            gw_call_fail(call, GW_ECRYPTO, NULL, GW_RULE_NONE);
            return NULL;
        }
        for (size_t s = 0; s < GW_SEAL_LOOKUP_N; s++) {
            if (pos > 1)
                buf[pos++] = ',';
            for (k = 0; k < GW_CRYPTO_BIDX_LEN; k++) {
                buf[pos++] = hexd[bidx[s][k] >> 4];
                buf[pos++] = hexd[bidx[s][k] & 15];
            }
        }
    }
    buf[pos++] = '}';
    buf[pos] = '\0';
    return buf;
}

/* The array literal of the requested field paths, each checked; NULL after failing the call. */
static char *fields_literal(struct gw_call *call, char **fields, size_t n)
{
    char *buf = gw_arena_alloc(gw_call_arena(call), GW_COL_COUNT * 40 + 3), field[32];
    size_t i, pos = 0, len;

    if (buf == NULL) {
        gw_call_fail(call, GW_ENOMEM, NULL, GW_RULE_NONE);
        return NULL;
    }
    if (n > GW_COL_COUNT) {
        gw_call_fail(call, GW_EINVAL, "fields", GW_RULE_FIELD_UNKNOWN);
        return NULL;
    }
    buf[pos++] = '{';
    for (i = 0; i < n; i++) {
        len = strlen(fields[i]);
        snprintf(field, sizeof(field), "fields[%zu]", i);
        if (gw_api_col_of(fields[i], len) == GW_COL_COUNT) {
            gw_call_fail(call, GW_EINVAL, field, GW_RULE_FIELD_UNKNOWN);
            return NULL;
        }
        if (i > 0)
            buf[pos++] = ',';
        memcpy(buf + pos, fields[i], len); /* a known path: letters, '_' and '.' only */
        pos += len;
    }
    buf[pos++] = '}';
    buf[pos] = '\0';
    return buf;
}

static void requested_cb(void *arg, int err, int64_t seq, const struct gw_db_result *res)
{
    Waygate__V1__RequestLawfulAccessResponse out =
        WAYGATE__V1__REQUEST_LAWFUL_ACCESS_RESPONSE__INIT;
    struct lawful *l = arg;

    (void)seq;
    l->areq = NULL;
    gw_call_set_cancel(l->call, NULL, NULL);
    if (err != 0) {
        /* the neutral line (call.h: a confidential call's) */
        gw_api_log_unrecorded(l->call, err, res != NULL ? res->sqlstate : NULL);
        gw_call_fail(l->call,
                     gw_err_queue_full_or(err, err == GW_EUNAVAIL ? GW_EUNAVAIL : GW_EINTERNAL),
                     NULL, err == GW_EUNAVAIL ? GW_RULE_DB_UNAVAILABLE : GW_RULE_NOT_RECORDED);
        return;
    }
    out.case_id = l->case_id;
    out.state = WAYGATE__V1__APPROVAL_STATE__APPROVAL_STATE_PENDING;
    if (gw_call_send(l->call, &out.base) != 0) {
        gw_call_fail(l->call, GW_EINTERNAL, NULL, GW_RULE_NOT_RENDERED);
        return;
    }
    gw_call_finish(l->call, GW_GRPC_OK, NULL);
}

void gw_api_lawful_request(struct gw_call *call, const uint8_t *req, size_t len)
{
    Waygate__V1__RequestLawfulAccessRequest *in;
    const struct gw_principal *p = gw_call_principal(call);
    struct gw_app *app = lawful_start(call);
    struct gw_store_lawful_case c;
    struct gw_db_stmt st[GW_STORE_LAWFUL_STMTS];
    const char *vals[GW_STORE_LAWFUL_VALS];
    char buf[GW_STORE_LAWFUL_BUF];
    uint8_t id[GW_RECORD_ID_LEN];
    struct gw_audit_rec rec;
    struct gw_fault f;
    struct lawful *l;
    int nst, rc;

    if (app == NULL)
        return;
    in = (Waygate__V1__RequestLawfulAccessRequest *)gw_call_unpack(
        call, &waygate__v1__request_lawful_access_request__descriptor, req, len);
    if (in == NULL)
        return;
    if (!text_ok(call, "agency", in->agency, true, GW_LAWFUL_TEXT_MAX) ||
        !text_ok(call, "officer", in->officer, true, GW_LAWFUL_TEXT_MAX) ||
        !text_ok(call, "case_ref", in->case_ref, true, GW_LAWFUL_TEXT_MAX) ||
        !text_ok(call, "legal_document_ref", in->legal_document_ref, true, GW_LAWFUL_TEXT_MAX))
        return;
    if (in->n_waybill_nos == 0) {
        gw_call_fail(call, GW_EINVAL, "waybill_nos", GW_RULE_REQUIRED);
        return;
    }
    if (in->n_waybill_nos > GW_LAWFUL_WAYBILLS_MAX) {
        gw_fault_set(&f, GW_EINVAL, NULL, "waybill_nos", GW_RULE_LAWFUL_TOO_MANY);
        f.limit = GW_LAWFUL_WAYBILLS_MAX;
        gw_call_finish_fault(call, &f);
        return;
    }
    l = gw_arena_alloc(gw_call_arena(call), sizeof(*l));
    if (l == NULL) {
        gw_call_fail(call, GW_ENOMEM, NULL, GW_RULE_NONE);
        return;
    }
    memset(l, 0, sizeof(*l));
    l->call = call;
    memset(&c, 0, sizeof(c));
    c.bidx_hex = waybills_literal(call, app, in->waybill_nos, in->n_waybill_nos);
    if (c.bidx_hex == NULL)
        return;
    c.fields = fields_literal(call, in->fields, in->n_fields);
    if (c.fields == NULL)
        return;
    if (gw_seal_new_id(app->crypto, id) != 0) {
        gw_call_fail(call, GW_ECRYPTO, NULL, GW_RULE_NONE);
        return;
    }
    gw_store_id_text(id, l->case_id);
    c.id = l->case_id;
    c.requester_account = p->account_id;
    c.requester = p->name;
    c.agency = in->agency;
    c.officer = in->officer;
    c.case_ref = in->case_ref;
    c.legal_document_ref = in->legal_document_ref;
    c.waybills = (int)in->n_waybill_nos;
    nst = gw_store_lawful_request_stmts(&c, st, vals, buf);

    gw_api_compliance_rec(call, &rec, "lawful.request", "ok");
    rec.object = l->case_id;
    rec.approval = l->case_id;
    rec.count = (int64_t)in->n_waybill_nos;
    rec.purpose = in->case_ref;
    rec.legal_basis = in->legal_document_ref;
    rec.detail = in->agency;
    rec.confidential = true;
    rc = gw_audit_write(app->audit, st, nst, &rec, 1, requested_cb, l, &l->areq);
    if (rc != 0) {
        not_queued(call, rc);
        return;
    }
    gw_call_set_cancel(call, cancel_cb, l);
}

/* ---- DecideLawfulAccess ---- */

static bool uuid_ok(const char *s)
{
    static const char dashes[] = {8, 13, 18, 23};
    size_t i, d = 0;

    if (strlen(s) != 36)
        return false;
    for (i = 0; i < 36; i++) {
        if (d < sizeof(dashes) && i == (size_t)dashes[d]) {
            if (s[i] != '-')
                return false;
            d++;
        } else if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f') ||
                     (s[i] >= 'A' && s[i] <= 'F'))) {
            return false;
        }
    }
    return true;
}

/* The case_id of DecideLawfulAccess and GetLawfulCase: present and a UUID; else the call is
 * refused naming case_id and false returned. */
static bool case_id_given(struct gw_call *call, const char *s)
{
    if (s[0] == '\0') {
        gw_call_fail(call, GW_EINVAL, "case_id", GW_RULE_REQUIRED);
        return false;
    }
    if (!uuid_ok(s)) {
        gw_call_fail(call, GW_EINVAL, "case_id", GW_RULE_CASE_ID);
        return false;
    }
    return true;
}

static void refusal_recorded_cb(void *arg, int err, int64_t seq, const struct gw_db_result *res)
{
    struct lawful *l = arg;

    (void)seq;
    (void)res;
    l->areq = NULL;
    gw_call_set_cancel(l->call, NULL, NULL);
    if (err != 0)
        gw_api_log_refusal_unrecorded(err);
    gw_call_fail(l->call, GW_EPERM, "case_id", l->refusal_rule);
}

/* The requester's own person, or someone not independent of the requester (sql/021), tried to
 * decide: recorded as refused, then answered with rule. */
static void record_refused_decision(struct lawful *l, enum gw_rule rule)
{
    struct gw_app *app = gw_call_app(l->call);
    struct gw_audit_rec rec;
    int rc;

    gw_api_compliance_rec(l->call, &rec, l->approve ? "lawful.approve" : "lawful.reject",
                          "refused");
    rec.object = l->case_id;
    rec.approval = l->case_id;
    rec.detail = rule == GW_RULE_CASE_SELF ? "the requester may not decide"
                                           : "the decider is not independent of the requester";
    rec.confidential = true;
    l->refusal_rule = rule;
    rc = gw_audit_write(app->audit, NULL, 0, &rec, 1, refusal_recorded_cb, l, &l->areq);
    if (rc != 0) {
        gw_api_log_refusal_unrecorded(rc); /* the one line of every refusal's unwritten record */
        gw_call_fail(l->call, GW_EPERM, "case_id", rule);
        return;
    }
    gw_call_set_cancel(l->call, cancel_cb, l);
}

/* Refuses an approval's valid_until as further than max_s from now (GW_RULE_LAWFUL_TOO_LONG). */
static void too_long(struct gw_call *call, uint32_t max_s)
{
    struct gw_fault f;

    (void)gw_fault_set(&f, GW_EINVAL, NULL, "valid_until", GW_RULE_LAWFUL_TOO_LONG);
    f.limit = max_s;
    gw_call_finish_fault(call, &f);
}

/* A refusal the database named by its SQLSTATE (state), asked before the decision
 * (gw_store_lawful_decidable) or raised by it (what changed in between): answered, a refusal of
 * the decider's independence recorded first. False when state is none of them. */
static bool refused_by(struct lawful *l, const char *state)
{
    if (strcmp(state, GW_LAWFUL_NO_CASE) == 0)
        gw_call_fail(l->call, GW_ENOTFOUND, "case_id", GW_RULE_CASE_UNKNOWN);
    else if (strcmp(state, GW_LAWFUL_DECIDED) == 0)
        gw_call_fail(l->call, GW_EPRECOND, "case_id", GW_RULE_CASE_DECIDED);
    else if (strcmp(state, GW_LAWFUL_EXPIRED) == 0)
        gw_call_fail(l->call, GW_EPRECOND, "case_id", GW_RULE_CASE_EXPIRED);
    else if (strcmp(state, GW_LAWFUL_PAST) == 0)
        gw_call_fail(l->call, GW_EINVAL, "valid_until", GW_RULE_NOT_FUTURE);
    else if (strcmp(state, GW_LAWFUL_TOO_LONG) == 0)
        too_long(l->call, GW_LAWFUL_LONGEST_S); /* past the database's bound: a clock ahead */
    else if (strcmp(state, GW_LAWFUL_SELF) == 0)
        record_refused_decision(l, GW_RULE_CASE_SELF);
    else if (strcmp(state, GW_LAWFUL_RELATED) == 0)
        record_refused_decision(l, GW_RULE_DECIDER_RELATED);
    else
        return false;
    return true;
}

static void decided_cb(void *arg, int err, int64_t seq, const struct gw_db_result *res)
{
    Waygate__V1__DecideLawfulAccessResponse out = WAYGATE__V1__DECIDE_LAWFUL_ACCESS_RESPONSE__INIT;
    struct lawful *l = arg;
    const char *state = res != NULL ? res->sqlstate : NULL;

    l->areq = NULL;
    gw_call_set_cancel(l->call, NULL, NULL);
    if (err == GW_EINTERNAL && state != NULL && refused_by(l, state))
        return; /* changed since it was asked (decidable_cb): another decision, the clock */
    if (err != 0) {
        gw_api_log_unrecorded(l->call, err, res != NULL ? res->sqlstate : NULL);
        gw_call_fail(l->call,
                     gw_err_queue_full_or(err, err == GW_EUNAVAIL ? GW_EUNAVAIL : GW_EINTERNAL),
                     NULL, err == GW_EUNAVAIL ? GW_RULE_DB_UNAVAILABLE : GW_RULE_NOT_RECORDED);
        return;
    }
    out.case_id = l->case_id;
    out.state = l->approve ? WAYGATE__V1__APPROVAL_STATE__APPROVAL_STATE_APPROVED
                           : WAYGATE__V1__APPROVAL_STATE__APPROVAL_STATE_REJECTED;
    out.audit_seq = seq > 0 ? (uint64_t)seq : 0;
    if (gw_call_send(l->call, &out.base) != 0) {
        gw_call_fail(l->call, GW_EINTERNAL, NULL, GW_RULE_NOT_RENDERED);
        return;
    }
    gw_call_finish(l->call, GW_GRPC_OK, NULL);
}

/* The decision and its confidential record, one entry of the audit writer. */
static void queue_decision(struct lawful *l)
{
    struct gw_app *app = gw_call_app(l->call);
    struct gw_db_stmt st[GW_STORE_LAWFUL_STMTS];
    const char *vals[GW_STORE_LAWFUL_VALS];
    char buf[GW_STORE_LAWFUL_BUF], detail[48];
    struct gw_audit_rec rec;
    int nst, rc;

    nst = gw_store_lawful_decide_stmts(&l->d, st, vals, buf);
    gw_api_compliance_rec(l->call, &rec, l->approve ? "lawful.approve" : "lawful.reject", "ok");
    rec.object = l->case_id;
    rec.approval = l->case_id;
    rec.confidential = true;
    if (l->approve) {
        snprintf(detail, sizeof(detail), "valid_until=%" PRId64, l->d.valid_until);
        rec.detail = detail;
    }
    rc = gw_audit_write(app->audit, st, nst, &rec, 1, decided_cb, l, &l->areq);
    if (rc != 0) {
        not_queued(l->call, rc);
        return;
    }
    gw_call_set_cancel(l->call, cancel_cb, l);
}

static void decidable_cb(void *arg, int err, const char *refusal)
{
    struct lawful *l = arg;

    l->sreq = NULL;
    gw_call_set_cancel(l->call, NULL, NULL);
    if (err != 0) {
        gw_call_fail(l->call, err, NULL,
                     err == GW_EUNAVAIL ? GW_RULE_DB_UNAVAILABLE : GW_RULE_NOT_RECORDED);
        return;
    }
    if (refusal != NULL && refused_by(l, refusal))
        return;
    if (refusal != NULL) { /* a code this gateway does not know: a newer schema's */
        gw_call_fail(l->call, GW_EINTERNAL, NULL, GW_RULE_NONE);
        return;
    }
    queue_decision(l);
}

/* An approval's valid_until (0: [compliance] lawful_default_s from now) must be in the future
 * and at most max_s from now (the database holds it to GW_LAWFUL_LONGEST_S after the decision
 * too, sql/032: WL008, refused_by), decided here before any database work: a time past it is
 * refused as too long an approval, not left to PostgreSQL's to_timestamp (which overflows, and
 * raises with the lawful statement into its server log). A rejection's is not used. False after
 * failing the call. */
static bool valid_until_ok(struct gw_call *call, const Waygate__V1__DecideLawfulAccessRequest *in,
                           int64_t now, uint32_t max_s)
{
    if (!in->approve || in->valid_until == 0)
        return true;
    if (in->valid_until <= now) {
        gw_call_fail(call, GW_EINVAL, "valid_until", GW_RULE_NOT_FUTURE);
        return false;
    }
    if (in->valid_until - now > (int64_t)max_s) {
        too_long(call, max_s);
        return false;
    }
    return true;
}

void gw_api_lawful_decide(struct gw_call *call, const uint8_t *req, size_t len)
{
    Waygate__V1__DecideLawfulAccessRequest *in;
    const struct gw_principal *p = gw_call_principal(call);
    struct gw_app *app = lawful_start(call);
    struct gw_store_lawful_decision *d;
    struct lawful *l;
    int64_t now = (int64_t)time(NULL);
    int rc;

    if (app == NULL)
        return;
    if (app->store == NULL) {
        gw_call_fail(call, GW_EUNAVAIL, NULL, GW_RULE_NOT_CONFIGURED);
        return;
    }
    in = (Waygate__V1__DecideLawfulAccessRequest *)gw_call_unpack(
        call, &waygate__v1__decide_lawful_access_request__descriptor, req, len);
    if (in == NULL)
        return;
    if (!case_id_given(call, in->case_id))
        return;
    if (!text_ok(call, "comment", in->comment, false, GW_LAWFUL_COMMENT_MAX))
        return;
    if (!valid_until_ok(call, in, now, app->cfg->lawful_max_s))
        return;
    l = gw_arena_alloc(gw_call_arena(call), sizeof(*l));
    if (l == NULL) {
        gw_call_fail(call, GW_ENOMEM, NULL, GW_RULE_NONE);
        return;
    }
    memset(l, 0, sizeof(*l));
    l->call = call;
    l->approve = in->approve;
    for (size_t i = 0; i < 36; i++) /* canonical lowercase, as the database prints it */
        l->case_id[i] =
            (char)(in->case_id[i] >= 'A' && in->case_id[i] <= 'F' ? in->case_id[i] - 'A' + 'a'
                                                                  : in->case_id[i]);
    d = &l->d; /* its strings live in the call (principal, request) */
    d->case_id = l->case_id;
    d->decider_account = p->account_id;
    d->decider = p->name;
    d->approve = in->approve;
    d->comment = in->comment;
    if (!in->approve) /* a rejection has no expiry: whatever was sent is not used */
        d->valid_until = now;
    else
        d->valid_until =
            in->valid_until != 0 ? in->valid_until : now + (int64_t)app->cfg->lawful_default_s;
    d->ttl_s = (int64_t)app->cfg->approval_ttl_s;
    /* Asked first, so that an expected refusal raises nothing in the database (sql/027). */
    rc = gw_store_lawful_decidable(app->store, d, decidable_cb, l, &l->sreq);
    if (rc != 0) {
        gw_call_fail(call, gw_err_queue_full_or(rc, GW_EUNAVAIL), NULL, GW_RULE_DB_UNAVAILABLE);
        return;
    }
    gw_call_set_cancel(call, cancel_cb, l);
}

/* ---- GetLawfulCase ---- */

/* A case shown to a decider (or a requester) before a decision: read as the decision's question
 * reads it (gw_store_lawful_load, the same scope and expiry), answered only once its confidential
 * lawful.view record committed; once queued, that record is written whether or not the caller
 * stays (gw_audit_rebind). An id that names no case, or another officer's case asked by a
 * lawful_access account, is answered NOT_FOUND alike and recorded alike, a confidential refused
 * lawful.view ("no such case"), bounded as every refusal a handler records (refusals.h).
 * Confidential as the other lawful calls (methods.c): the one line a failure writes is the
 * neutral one. */
struct lview {
    struct gw_call *call;
    struct gw_store_lawful_req *sreq;
    struct gw_audit_req *areq;
    char case_id[37];
    char detail[48];
    Waygate__V1__LawfulCaseView out;
};

static void view_cancel_cb(void *arg)
{
    struct lview *v = arg;

    gw_store_lawful_cancel(v->sreq); /* nothing read yet: nothing shown, nothing to record */
    v->sreq = NULL;
    gw_audit_rebind(v->areq, gw_api_unwaited_cb, NULL);
    v->areq = NULL;
}

static void viewed_cb(void *arg, int err, int64_t seq, const struct gw_db_result *res)
{
    struct lview *v = arg;

    (void)seq;
    v->areq = NULL;
    gw_call_set_cancel(v->call, NULL, NULL);
    if (err != 0) { /* no record, no view */
        gw_api_log_unrecorded(v->call, err, res != NULL ? res->sqlstate : NULL);
        gw_call_fail(
            v->call, gw_err_queue_full_or(err, err == GW_EUNAVAIL ? GW_EUNAVAIL : GW_EINTERNAL),
            NULL, err == GW_EUNAVAIL ? GW_RULE_DB_UNAVAILABLE : GW_RULE_ACCESS_NOT_RECORDED);
        return;
    }
    if (gw_call_send(v->call, &v->out.base) != 0) {
        gw_call_fail(v->call, GW_EINTERNAL, NULL, GW_RULE_NOT_RENDERED);
        return;
    }
    gw_call_finish(v->call, GW_GRPC_OK, NULL);
}

/* The stored fields ("a.b,c.d"; "": every field) into the view. Returns 0 or GW_ENOMEM. */
static int view_fields(struct lview *v, const char *fields)
{
    struct gw_arena *a = gw_call_arena(v->call);
    char *copy, *p, *comma;
    size_t n = 1;

    if (fields[0] == '\0')
        return 0;
    for (const char *q = fields; *q != '\0'; q++)
        n += *q == ',';
    if ((copy = gw_arena_strdup(a, fields)) == NULL ||
        (v->out.fields = gw_arena_alloc(a, n * sizeof(char *))) == NULL)
        return GW_ENOMEM;
    for (p = copy; p != NULL; p = comma) {
        comma = strchr(p, ',');
        if (comma != NULL)
            *comma++ = '\0';
        v->out.fields[v->out.n_fields++] = p;
    }
    return 0;
}

/* The row into the view (copied into the call's arena). Returns 0, GW_ENOMEM or GW_EINTERNAL. */
static int view_of(struct lview *v, const struct gw_store_lawful_row *row)
{
    Waygate__V1__LawfulCaseView *o = &v->out;
    struct gw_call *call = v->call;

    o->case_id = v->case_id;
    o->state = gw_api_approval_state(row->state, row->expired);
    if (o->state == WAYGATE__V1__APPROVAL_STATE__APPROVAL_STATE_UNSPECIFIED || row->waybills < 0)
        return GW_EINTERNAL;
    if ((o->agency = gw_arena_strdup(gw_call_arena(call), row->agency)) == NULL ||
        (o->officer = gw_arena_strdup(gw_call_arena(call), row->officer)) == NULL ||
        (o->case_ref = gw_arena_strdup(gw_call_arena(call), row->case_ref)) == NULL ||
        (o->legal_document_ref = gw_arena_strdup(gw_call_arena(call), row->legal_document_ref)) ==
            NULL ||
        (o->requester = gw_arena_strdup(gw_call_arena(call), row->requester)) == NULL ||
        (o->decider = gw_arena_strdup(gw_call_arena(call), row->decider)) == NULL)
        return GW_ENOMEM;
    o->waybill_count = (uint32_t)row->waybills;
    o->requested_at = row->requested_at;
    o->decided_at = row->decided_at;
    o->valid_until = row->valid_until;
    return view_fields(v, row->fields);
}

static void case_loaded_cb(void *arg, int err, const struct gw_store_lawful_row *row)
{
    struct lview *v = arg;
    struct gw_call *call = v->call;
    struct gw_audit_rec rec;
    int rc;

    v->sreq = NULL;
    /* a lawful_access account sees its own cases only: another officer's is answered as no case */
    if (err == 0 && strcmp(gw_call_principal(call)->role, "lawful_access") == 0 &&
        row->requester_account != gw_call_principal(call)->account_id)
        err = GW_ENOTFOUND;
    if (err == 0)
        err = view_of(v, row);
    if (err != 0) {
        gw_call_set_cancel(call, NULL, NULL);
        if (err == GW_ENOTFOUND) { /* DecideLawfulAccess's words for an unknown id (refused_by) */
            /* a refused lawful.view, the same record for no case and another officer's (nothing
             * of the row in it), bounded as every refusal a handler records */
            gw_api_compliance_rec(call, &rec, "lawful.view", "refused");
            rec.object = v->case_id;
            rec.approval = v->case_id;
            rec.detail = "no such case";
            rec.confidential = true;
            (void)gw_api_record_refusal(call, &rec); /* (no incident to bound) */
            gw_call_fail(call, GW_ENOTFOUND, "case_id", GW_RULE_CASE_UNKNOWN);
        } else {
            gw_call_fail(call, err, NULL,
                         err == GW_EUNAVAIL ? GW_RULE_DB_UNAVAILABLE : GW_RULE_NONE);
        }
        return;
    }
    /* who saw which case in which state (the case's references, as lawful.request names them) */
    snprintf(v->detail, sizeof(v->detail), "state=%s", row->expired ? "expired" : row->state);
    gw_api_compliance_rec(call, &rec, "lawful.view", "ok");
    rec.object = v->case_id;
    rec.approval = v->case_id;
    rec.count = row->waybills;
    rec.purpose = v->out.case_ref;
    rec.legal_basis = v->out.legal_document_ref;
    rec.detail = v->detail;
    rec.confidential = true;
    rc = gw_audit_write(gw_call_app(call)->audit, NULL, 0, &rec, 1, viewed_cb, v, &v->areq);
    if (rc != 0) {
        gw_call_set_cancel(call, NULL, NULL);
        gw_api_log_unrecorded(call, rc, NULL);
        gw_call_fail(call, gw_err_queue_full_or(rc, GW_EUNAVAIL), NULL,
                     GW_RULE_ACCESS_NOT_RECORDED);
    }
}

void gw_api_lawful_view(struct gw_call *call, const uint8_t *req, size_t len)
{
    Waygate__V1__GetLawfulCaseRequest *in;
    struct gw_app *app = lawful_start(call);
    struct lview *v;
    int rc;

    if (app == NULL)
        return;
    if (app->store == NULL) {
        gw_call_fail(call, GW_EUNAVAIL, NULL, GW_RULE_NOT_CONFIGURED);
        return;
    }
    in = (Waygate__V1__GetLawfulCaseRequest *)gw_call_unpack(
        call, &waygate__v1__get_lawful_case_request__descriptor, req, len);
    if (in == NULL)
        return;
    if (!case_id_given(call, in->case_id))
        return;
    v = gw_arena_alloc(gw_call_arena(call), sizeof(*v));
    if (v == NULL) {
        gw_call_fail(call, GW_ENOMEM, NULL, GW_RULE_NONE);
        return;
    }
    memset(v, 0, sizeof(*v));
    v->call = call;
    waygate__v1__lawful_case_view__init(&v->out);
    for (size_t i = 0; i < 36; i++) /* canonical lowercase, as the decision's */
        v->case_id[i] =
            (char)(in->case_id[i] >= 'A' && in->case_id[i] <= 'F' ? in->case_id[i] - 'A' + 'a'
                                                                  : in->case_id[i]);
    rc = gw_store_lawful_load(app->store, v->case_id, (int64_t)app->cfg->approval_ttl_s,
                              case_loaded_cb, v, &v->sreq);
    if (rc != 0) {
        gw_call_fail(call, gw_err_queue_full_or(rc, GW_EUNAVAIL), NULL, GW_RULE_DB_UNAVAILABLE);
        return;
    }
    gw_call_set_cancel(call, view_cancel_cb, v);
}
