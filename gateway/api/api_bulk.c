/* api_bulk.c: Compliance/RequestBulk and ApproveBulk (Art. 37, 15): a bulk export, copy or
 * destruction is requested by one person with a purpose and a legal basis (refused without one,
 * Art. 15) and approved or rejected by a second person, never the requester (PERMISSION_DENIED,
 * and a refused record); an approval expires after [compliance] approval_ttl_s, and so does a
 * request left undecided that long (FAILED_PRECONDITION, like a lawful-access case). Each step
 * writes its row and its audit record (bulk.request, bulk.approve, bulk.reject) in one transaction
 * through the audit writer, and answers only after it committed. A request's record_count, as
 * every run of it, takes only the records within its requester's security levels (stored as its
 * max_level). An export or copy is requested with the recipient's X25519 public key (required,
 * a usable key; none for a destruction), stored with it (sql/040) and named in the bulk.request
 * and bulk.approve records (rcpt=, the first 8 bytes of its SHA-256): the approver approves the
 * key, and the decision holds only while the stored key is the one its record and the request's
 * bulk.request record name (one changed in the database: FAILED_PRECONDITION, a refused record
 * and a critical bulk_key_changed incident, told from a request no longer pending). RunBulk is
 * in api_bulk_run.c.
 * Invariant: every refusal names the field and the rule; no request text reaches a log. */
#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>

#include "waygate/v1/compliance.pb-c.h"

#include "alloc.h"
#include "api.h"
#include "api_bulk_int.h"
#include "api_query.h"
#include "api_record.h"
#include "app.h"
#include "config.h"
#include "crypto.h"
#include "keyring.h"
#include "log.h"
#include "policy.h"
#include "store.h"
#include "text.h"
#include "xseal.h"

/* ---- shared ---- */

void *gw_api_bulk_start(struct gw_call *call, const ProtobufCMessageDescriptor *desc,
                        const uint8_t *req, size_t len, size_t size, ProtobufCMessage **in)
{
    struct gw_app *app = gw_call_app(call);
    const struct gw_principal *p = gw_call_principal(call);
    void *state;

    /* Art. 37: a second person approves, checked against the requester's account and its
     * person (sql/021's account_related); a certificate names no person, so one person holding
     * a certificate of a bulk role and an account could approve their own request. Defense in
     * depth: such a certificate is registered for administration (sql/041), and the policy
     * refuses it every method but Login and ChangePassword whatever its flag (policy.c) */
    if (p->authn != GW_AUTHN_TOKEN || p->account_id <= 0) {
        gw_call_fail(call, GW_EPERM, "authorization", GW_RULE_BULK_ACCOUNT);
        return NULL;
    }
    if (app == NULL || app->store == NULL || app->audit == NULL || app->keys == NULL ||
        app->crypto == NULL) {
        gw_call_fail(call, GW_EUNAVAIL, NULL, GW_RULE_NOT_CONFIGURED);
        return NULL;
    }
    *in = gw_call_unpack(call, desc, req, len);
    if (*in == NULL)
        return NULL;
    if ((state = gw_arena_alloc(gw_call_arena(call), size)) == NULL) {
        gw_call_fail(call, GW_ENOMEM, NULL, GW_RULE_NONE);
        return NULL;
    }
    memset(state, 0, size);
    return state;
}

static const char *nonempty(const char *s)
{
    return s != NULL && s[0] != '\0' ? s : NULL;
}

void gw_api_bulk_rec(struct gw_call *call, struct gw_audit_rec *r, const char *action,
                     const char *object, const char *outcome)
{
    gw_api_record_init(call, action, r);
    r->object = object;
    r->outcome = outcome;
}

struct refusal {
    struct gw_call *call;
    struct gw_audit_req *areq;
    struct gw_fault f;
};

/* The caller went away (a reset, its deadline) while its refusal's record was being written:
 * the record is written all the same, answered to nobody, so that cancelling the call cannot
 * erase the attempt from the trail. */
static void refusal_cancel_cb(void *arg)
{
    struct refusal *r = arg;

    gw_audit_rebind(r->areq, gw_api_unwaited_cb, NULL);
    r->areq = NULL;
}

static void refusal_written_cb(void *arg, int err, int64_t seq, const struct gw_db_result *res)
{
    struct refusal *r = arg;

    (void)seq;
    (void)res;
    r->areq = NULL;
    gw_call_set_cancel(r->call, NULL, NULL);
    if (err != 0) /* the refusal stands; its record is missing, which the log says */
        GW_LOG(GW_LOG_ERROR, "bulk", gw_call_log_ctx(r->call),
               "the audit record of a refused bulk call failed: %s", gw_err_str(err));
    gw_call_finish_fault(r->call, &r->f);
}

void gw_api_bulk_refuse(struct gw_call *call, const struct gw_audit_rec *rec, int err,
                        const char *field, enum gw_rule rule)
{
    struct refusal *r = gw_arena_alloc(gw_call_arena(call), sizeof(*r));
    int rc;

    gw_call_set_cancel(call, NULL, NULL);
    if (r == NULL) {
        gw_call_fail(call, err, field, rule);
        return;
    }
    memset(r, 0, sizeof(*r));
    r->call = call;
    gw_fault_set(&r->f, err, NULL, field, rule);
    rc = gw_audit_write(gw_call_app(call)->audit, NULL, 0, rec, 1, refusal_written_cb, r, &r->areq);
    if (rc != 0) {
        GW_LOG(GW_LOG_ERROR, "bulk", gw_call_log_ctx(call),
               "could not queue the audit record of a refused %s: %s", rec->action, gw_err_str(rc));
        gw_call_finish_fault(call, &r->f);
        return;
    }
    gw_call_set_cancel(call, refusal_cancel_cb, r);
}

bool gw_api_bulk_request_id(struct gw_call *call, const char *s, char out[37])
{
    if (s[0] == '\0') {
        gw_call_fail(call, GW_EINVAL, "request_id", GW_RULE_REQUIRED);
        return false;
    }
    if (!gw_api_bulk_uuid(s, out)) {
        gw_call_fail(call, GW_EINVAL, "request_id", GW_RULE_BULK_UUID);
        return false;
    }
    return true;
}

const char *gw_api_bulk_scope(struct gw_call *call)
{
    const struct gw_principal *p = gw_call_principal(call);

    return p->branch[0] != '\0' ? p->branch : "*";
}

bool gw_api_bulk_uuid(const char *s, char out[37])
{
    if (strlen(s) != 36)
        return false;
    for (int i = 0; i < 36; i++) {
        bool dash = i == 8 || i == 13 || i == 18 || i == 23;
        if (dash ? s[i] != '-' : !isxdigit((unsigned char)s[i]))
            return false;
        out[i] = (char)tolower((unsigned char)s[i]);
    }
    out[36] = '\0';
    return true;
}

int gw_api_bulk_new_id(struct gw_call *call, uint8_t raw[16], char out[37])
{
    uint8_t id[16];

    if (gw_crypto_random(gw_call_app(call)->crypto, id, sizeof(id)) != 0)
        return GW_ECRYPTO;
    id[6] = (uint8_t)((id[6] & 0x0f) | 0x40); /* version 4 */
    id[8] = (uint8_t)((id[8] & 0x3f) | 0x80); /* RFC 4122 variant */
    gw_store_id_text(id, out);
    if (raw != NULL)
        memcpy(raw, id, sizeof(id));
    return 0;
}

int gw_api_bulk_key_text(const uint8_t *key, char hex[65], char fp[17])
{
    uint8_t md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;

    if (EVP_Digest(key, GW_XSEAL_PUB_LEN, md, &mdlen, EVP_sha256(), NULL) != 1 || mdlen != 32)
        return GW_ECRYPTO;
    for (size_t i = 0; i < GW_XSEAL_PUB_LEN; i++)
        snprintf(hex + 2 * i, 3, "%02x", key[i]);
    for (size_t i = 0; i < 8; i++)
        snprintf(fp + 2 * i, 3, "%02x", md[i]);
    return 0;
}

int gw_api_bulk_key_parse(const char *hex, uint8_t *key)
{
    size_t n = 0;
    int ok;

    if (hex == NULL || strlen(hex) != 2 * GW_XSEAL_PUB_LEN)
        return GW_EINTERNAL;
    /* no separator ('\0'); a digit that is not hex fails it, leaving its error on the thread's
     * queue, which the mark takes away again */
    ERR_set_mark();
    ok = OPENSSL_hexstr2buf_ex(key, GW_XSEAL_PUB_LEN, &n, hex, '\0') == 1 && n == GW_XSEAL_PUB_LEN;
    ERR_pop_to_mark();
    return ok ? 0 : GW_EINTERNAL;
}

void gw_api_bulk_key_changed(struct gw_call *call, const char *id, const char *fp, bool run)
{
    char detail[200];

    snprintf(detail, sizeof(detail),
             "bulk request %s: its stored recipient key (read rcpt=%s) is not the one its %s "
             "names: changed in the database; not %s",
             id, fp[0] != '\0' ? fp : "none", run ? "approval" : "request",
             run ? "run" : "decided");
    GW_LOG(GW_LOG_ERROR, "bulk", gw_call_log_ctx(call), "%s", detail);
    gw_api_incident(call, "critical", "bulk_key_changed", detail, NULL);
}

void gw_api_bulk_selector_text(const char *branch, const char *from, const char *to,
                               const char *ids, int level, char *buf, size_t cap)
{
    size_t n = 0;

    if (ids != NULL) { /* "{a,b,c}": commas + 1, or 0 for "{}" */
        n = strlen(ids) > 2 ? 1 : 0;
        for (const char *p = ids; *p != '\0'; p++)
            n += *p == ',';
    }
    snprintf(buf, cap, "branch=%s from=%s to=%s ids=%s%zu level<=%d", branch != NULL ? branch : "*",
             from != NULL ? from : "-", to != NULL ? to : "-", ids != NULL ? "" : "any/", n, level);
}

/* ---- RequestBulk ---- */

struct breq {
    struct gw_call *call;
    struct gw_store_bulk_req *sreq;
    struct gw_audit_req *areq;
    Waygate__V1__RequestBulkRequest *in;
    const char *op;
    struct gw_bulk_sel sel;
    char id[37];
    char selector[160];
    char detail[240];
    char key_hex[65], key_fp[17]; /* an export's or copy's recipient key: empty for a destroy */
    int64_t count;
    int level; /* the requester's role's highest security level (gw_policy_max_level) */
};

static void breq_cancel_cb(void *arg)
{
    struct breq *b = arg;

    gw_store_bulk_cancel(b->sreq);
    b->sreq = NULL;
    gw_audit_cancel(b->areq);
    b->areq = NULL;
}

/* A free text field of the request: required or optional, checked and capped (text.h's
 * gw_text_field, the rule of every free text an Admin or Compliance method stores). */
static bool text_ok(struct gw_call *call, const char *field, const char *s, bool required,
                    enum gw_rule missing)
{
    struct gw_fault f;

    if (gw_text_field(s, GW_BULK_TEXT_MAX, required, missing, field, &f) == 0)
        return true;
    gw_call_finish_fault(call, &f);
    return false;
}

static bool branch_ok(const char *b)
{
    size_t n = strlen(b);

    if (n == 0 || n > 31)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)b[i]) && b[i] != '_' && b[i] != '-')
            return false;
    return true;
}

/* The selector into b->sel (the id list as an array literal in the call's arena). */
static bool selector_ok(struct breq *b, const Waygate__V1__BulkSelector *s)
{
    struct gw_call *call = b->call;
    const struct gw_principal *p = gw_call_principal(call);
    char *ids, *q, field[64];
    struct gw_fault f;

    if (s == NULL)
        return true; /* everything within the scope */
    if (s->branch[0] != '\0' && !branch_ok(s->branch)) {
        gw_call_fail(call, GW_EINVAL, "selector.branch", GW_RULE_BRANCH_FORMAT);
        return false;
    }
    if (s->branch[0] != '\0' && p->branch[0] != '\0' && strcmp(s->branch, p->branch) != 0) {
        gw_call_fail(call, GW_EPERM, "selector.branch", GW_RULE_BRANCH_OUT_OF_SCOPE);
        return false;
    }
    /* a calendar date (text.h: February 29 only of a leap year), of a year 2000-2999 */
    if (s->from_day[0] != '\0' && !gw_text_is_day(s->from_day, 2000, 2999)) {
        gw_call_fail(call, GW_EINVAL, "selector.from_day", GW_RULE_PICKUP_DAY_FORMAT);
        return false;
    }
    if (s->to_day[0] != '\0' && !gw_text_is_day(s->to_day, 2000, 2999)) {
        gw_call_fail(call, GW_EINVAL, "selector.to_day", GW_RULE_PICKUP_DAY_FORMAT);
        return false;
    }
    /* YYYY-MM-DD compares as text in date order: a range that selects no day is a mistake */
    if (s->from_day[0] != '\0' && s->to_day[0] != '\0' && strcmp(s->to_day, s->from_day) < 0) {
        gw_call_fail(call, GW_EINVAL, "selector.to_day", GW_RULE_DAY_RANGE);
        return false;
    }
    if (s->n_record_ids > GW_BULK_IDS_MAX) {
        gw_fault_set(&f, GW_EINVAL, NULL, "selector.record_ids", GW_RULE_BULK_TOO_MANY_IDS);
        f.limit = GW_BULK_IDS_MAX;
        gw_call_finish_fault(call, &f);
        return false;
    }
    b->sel.branch = nonempty(s->branch);
    b->sel.from_day = nonempty(s->from_day);
    b->sel.to_day = nonempty(s->to_day);
    if (s->n_record_ids == 0)
        return true;
    if ((ids = gw_arena_alloc(gw_call_arena(call), s->n_record_ids * 37 + 3)) == NULL) {
        gw_call_fail(call, GW_ENOMEM, NULL, GW_RULE_NONE);
        return false;
    }
    q = ids;
    *q++ = '{';
    for (size_t i = 0; i < s->n_record_ids; i++) {
        if (!gw_api_bulk_uuid(s->record_ids[i], q)) {
            snprintf(field, sizeof(field), "selector.record_ids[%zu]", i);
            gw_call_fail(call, GW_EINVAL, field, GW_RULE_BULK_UUID);
            return false;
        }
        q += 36;
        *q++ = i + 1 < s->n_record_ids ? ',' : '}';
    }
    *q = '\0';
    b->sel.ids = ids;
    return true;
}

/* The recipient key of an export or copy (required, a usable X25519 public key: RunBulk's check
 * before it, gw_xseal_new) into b->key_hex and b->key_fp; none for a destruction. */
static bool recipient_ok(struct breq *b)
{
    const ProtobufCBinaryData *k = &b->in->recipient_public_key;
    uint8_t id[GW_XSEAL_ID_LEN] = {0}, header[GW_XSEAL_HEADER_LEN];
    struct gw_xseal *xs = NULL;
    int rc;

    if (strcmp(b->op, "destroy") == 0) {
        if (k->len == 0)
            return true;
        gw_call_fail(b->call, GW_EINVAL, "recipient_public_key", GW_RULE_BULK_DESTROY_KEY);
        return false;
    }
    if (k->len != GW_XSEAL_PUB_LEN) {
        gw_call_fail(b->call, GW_EINVAL, "recipient_public_key", GW_RULE_BULK_RECIPIENT_KEY);
        return false;
    }
    rc = gw_xseal_new(k->data, id, header, &xs);
    gw_xseal_free(xs);
    if (rc == 0)
        rc = gw_api_bulk_key_text(k->data, b->key_hex, b->key_fp);
    if (rc != 0) {
        gw_call_fail(b->call, rc, rc == GW_EINVAL ? "recipient_public_key" : NULL,
                     rc == GW_EINVAL ? GW_RULE_BULK_RECIPIENT_KEY : GW_RULE_NONE);
        return false;
    }
    return true;
}

static void requested_cb(void *arg, int err, int64_t seq, const struct gw_db_result *res)
{
    Waygate__V1__RequestBulkResponse out = WAYGATE__V1__REQUEST_BULK_RESPONSE__INIT;
    struct breq *b = arg;
    int rc;

    (void)seq;
    (void)res;
    b->areq = NULL;
    gw_call_set_cancel(b->call, NULL, NULL);
    if (err != 0) {
        gw_call_fail(
            b->call, gw_err_queue_full_or(err, err == GW_EUNAVAIL ? GW_EUNAVAIL : GW_EINTERNAL),
            NULL, err == GW_EUNAVAIL ? GW_RULE_DB_UNAVAILABLE : GW_RULE_ACCESS_NOT_RECORDED);
        return;
    }
    GW_LOG(GW_LOG_INFO, "bulk", gw_call_log_ctx(b->call),
           "bulk %s requested: request=%s records=%" PRId64, b->op, b->id, b->count);
    out.request_id = b->id;
    out.state = WAYGATE__V1__APPROVAL_STATE__APPROVAL_STATE_PENDING;
    out.record_count = (uint64_t)b->count;
    rc = gw_call_send(b->call, &out.base);
    if (rc != 0) {
        gw_call_fail(b->call, rc, NULL, GW_RULE_NONE);
        return;
    }
    gw_call_finish(b->call, GW_GRPC_OK, NULL);
}

/* The selection counted (records accepted before the count's second, store_bulk.h): stored with
 * the count's time as its requested_at, which every run of it selects by. */
static void counted_cb(void *arg, int err, int64_t count, const char *requested_at)
{
    struct breq *b = arg;
    struct gw_call *call = b->call;
    const struct gw_principal *p = gw_call_principal(call);
    struct gw_store_bulk_stmt st;
    struct gw_audit_rec rec;
    struct gw_bulk_new n;
    int rc;

    b->sreq = NULL;
    if (err != 0) {
        gw_call_set_cancel(call, NULL, NULL);
        gw_api_read_failed_bulk(call, err);
        return;
    }
    b->count = count;
    if (gw_api_bulk_new_id(call, NULL, b->id) != 0) {
        gw_call_set_cancel(call, NULL, NULL);
        gw_call_fail(call, GW_ECRYPTO, NULL, GW_RULE_NONE);
        return;
    }
    n = (struct gw_bulk_new){
        .id = b->id,
        .operation = b->op,
        .purpose = b->in->purpose,
        .legal_basis = b->in->legal_basis,
        .destination = nonempty(b->in->destination),
        .requester = p->name,
        .requester_role = p->role,
        .requester_branch = nonempty(p->branch),
        .sel = b->sel,
        .record_count = count,
        .requested_at = requested_at,
        .max_level = b->level,
        .recipient_key = nonempty(b->key_hex),
    };
    gw_store_bulk_insert(&st, &n);
    gw_api_bulk_selector_text(b->sel.branch, b->sel.from_day, b->sel.to_day, b->sel.ids, b->level,
                              b->selector, sizeof(b->selector));
    /* the key the approver approves with the destination (Art. 37); the decision's key
     * statement reads this record's "kind=OP rcpt=FP " (store_bulk.c) */
    if (b->key_fp[0] != '\0')
        snprintf(b->detail, sizeof(b->detail), "kind=%s rcpt=%s %s", b->op, b->key_fp, b->selector);
    else
        snprintf(b->detail, sizeof(b->detail), "kind=%s %s", b->op, b->selector);
    gw_api_bulk_rec(call, &rec, "bulk.request", b->id, "ok");
    rec.count = count;
    rec.purpose = b->in->purpose;
    rec.legal_basis = b->in->legal_basis;
    rec.approval = b->id;
    rec.detail = b->detail;
    rc = gw_audit_write(gw_call_app(call)->audit, &st.st, 1, &rec, 1, requested_cb, b, &b->areq);
    if (rc != 0) {
        gw_call_set_cancel(call, NULL, NULL);
        gw_call_fail(call, rc, NULL, GW_RULE_ACCESS_NOT_RECORDED);
    }
}

static const char *op_name(Waygate__V1__BulkOperation op)
{
    switch (op) {
    case WAYGATE__V1__BULK_OPERATION__BULK_OPERATION_EXPORT:
        return "export";
    case WAYGATE__V1__BULK_OPERATION__BULK_OPERATION_COPY:
        return "copy";
    case WAYGATE__V1__BULK_OPERATION__BULK_OPERATION_DESTROY:
        return "destroy";
    default:
        return NULL;
    }
}

void gw_api_compliance_request_bulk(struct gw_call *call, const uint8_t *req, size_t len)
{
    ProtobufCMessage *msg;
    struct breq *b;
    int rc;

    b = gw_api_bulk_start(call, &waygate__v1__request_bulk_request__descriptor, req, len,
                          sizeof(*b), &msg);
    if (b == NULL)
        return;
    b->call = call;
    b->in = (Waygate__V1__RequestBulkRequest *)msg;
    if ((b->op = op_name(b->in->operation)) == NULL) {
        gw_call_fail(call, GW_EINVAL, "operation", GW_RULE_BULK_OPERATION);
        return;
    }
    if (!text_ok(call, "purpose", b->in->purpose, true, GW_RULE_BULK_PURPOSE) ||
        !text_ok(call, "legal_basis", b->in->legal_basis, true, GW_RULE_BULK_LEGAL_BASIS) ||
        !text_ok(call, "destination", b->in->destination, false, GW_RULE_REQUIRED))
        return;
    if (b->in->n_fields > 0) {
        gw_call_fail(call, GW_EUNIMPL, "fields", GW_RULE_BULK_FIELDS);
        return;
    }
    if (!recipient_ok(b))
        return;
    if (!selector_ok(b, b->in->selector))
        return;
    /* counted within the requester's levels, as every run of it selects (its max_level): the
     * count neither hints at records above them nor shows the approver a figure no run matches */
    b->level = gw_policy_max_level(gw_call_policy(call), gw_call_principal(call)->role);
    rc = gw_store_bulk_count(gw_call_app(call)->store, gw_api_bulk_scope(call), &b->sel, b->level,
                             counted_cb, b, &b->sreq);
    if (rc != 0) {
        gw_api_read_failed_bulk(call, rc);
        return;
    }
    gw_call_set_cancel(call, breq_cancel_cb, b);
}

/* ---- ApproveBulk ---- */

struct bdec {
    struct gw_call *call;
    struct gw_store_bulk_req *sreq;
    struct gw_audit_req *areq;
    Waygate__V1__ApproveBulkRequest *in;
    char id[37];
    char purpose[GW_BULK_TEXT_MAX + 1], legal_basis[GW_BULK_TEXT_MAX + 1];
    char detail[64];
    char key_hex[65], key_fp[17]; /* the request's recipient key as read (empty: none) */
};

static void bdec_cancel_cb(void *arg)
{
    struct bdec *d = arg;

    gw_store_bulk_cancel(d->sreq);
    d->sreq = NULL;
    gw_audit_cancel(d->areq);
    d->areq = NULL;
}

/* A decision its statements refused: refused, and recorded as such (why: detail), the
 * decision's own record having gone with its failed transaction. */
static void refuse_decision(struct bdec *d, const char *detail, int err, enum gw_rule rule)
{
    struct gw_audit_rec rec;

    gw_api_bulk_rec(d->call, &rec, d->in->approve ? "bulk.approve" : "bulk.reject", d->id,
                    "refused");
    rec.purpose = nonempty(d->purpose);
    rec.legal_basis = nonempty(d->legal_basis);
    rec.approval = d->id;
    rec.detail = detail;
    gw_api_bulk_refuse(d->call, &rec, err, "request_id", rule);
}

static void decided_cb(void *arg, int err, int64_t seq, const struct gw_db_result *res)
{
    Waygate__V1__ApproveBulkResponse out = WAYGATE__V1__APPROVE_BULK_RESPONSE__INIT;
    struct bdec *d = arg;
    int rc;

    d->areq = NULL;
    gw_call_set_cancel(d->call, NULL, NULL);
    if (err == GW_EINTERNAL && res != NULL && res->sqlstate != NULL &&
        strcmp(res->sqlstate, GW_BULK_RELATED) == 0) {
        /* the approver created the requester's account or the reverse (sql/021) */
        refuse_decision(d, "decider not independent", GW_EPERM, GW_RULE_DECIDER_RELATED);
        return;
    }
    if (err == GW_EINTERNAL && res != NULL && res->failed_stmt == 0 && res->sqlstate != NULL &&
        strcmp(res->sqlstate, GW_BULK_KEY_CHANGED) == 0) {
        /* the stored key is not the one read and named by the decision's record, or not the
         * one the request's bulk.request record names (the key statement, gw_store_bulk_key):
         * changed in the database, which the gateway never does; refused, recorded as such, and
         * an incident */
        gw_api_bulk_key_changed(d->call, d->id, d->key_fp, false);
        refuse_decision(d, "recipient key changed", GW_EPRECOND, GW_RULE_BULK_KEY_CHANGED);
        return;
    }
    if (err == GW_EINTERNAL && res != NULL && res->failed_stmt == 1) {
        /* decided meanwhile by someone else, or expired undecided since it was read: the
         * statement found no pending request within approval_ttl_s */
        refuse_decision(d, "not pending", GW_EPRECOND, GW_RULE_BULK_NOT_PENDING);
        return;
    }
    if (err != 0) {
        gw_call_fail(
            d->call, gw_err_queue_full_or(err, err == GW_EUNAVAIL ? GW_EUNAVAIL : GW_EINTERNAL),
            NULL, err == GW_EUNAVAIL ? GW_RULE_DB_UNAVAILABLE : GW_RULE_ACCESS_NOT_RECORDED);
        return;
    }
    GW_LOG(GW_LOG_INFO, "bulk", gw_call_log_ctx(d->call), "bulk request %s %s", d->id,
           d->in->approve ? "approved" : "rejected");
    out.request_id = d->id;
    out.state = d->in->approve ? WAYGATE__V1__APPROVAL_STATE__APPROVAL_STATE_APPROVED
                               : WAYGATE__V1__APPROVAL_STATE__APPROVAL_STATE_REJECTED;
    out.audit_seq = seq > 0 ? (uint64_t)seq : 0;
    rc = gw_call_send(d->call, &out.base);
    if (rc != 0) {
        gw_call_fail(d->call, rc, NULL, GW_RULE_NONE);
        return;
    }
    gw_call_finish(d->call, GW_GRPC_OK, NULL);
}

static void copy_text(char *dst, size_t cap, const char *s)
{
    snprintf(dst, cap, "%s", s != NULL ? s : "");
}

/* The decision's detail: the operation and, for an export or copy, the recipient key the
 * approver decides on (rcpt=, as the bulk.request record names it), which the decision's
 * statement binds: it holds only while the request is stored with that key. */
static bool decided_key(struct bdec *d, const struct gw_bulk_row *row)
{
    uint8_t key[GW_XSEAL_PUB_LEN];
    char hex[65], fp[17];

    snprintf(d->detail, sizeof(d->detail), "kind=%s", row->operation);
    if (row->recipient_key == NULL)
        return true;
    if (gw_api_bulk_key_parse(row->recipient_key, key) != 0 ||
        gw_api_bulk_key_text(key, hex, fp) != 0) {
        gw_call_set_cancel(d->call, NULL, NULL);
        gw_call_fail(d->call, GW_EINTERNAL, NULL, GW_RULE_NOT_READ);
        return false;
    }
    copy_text(d->key_hex, sizeof(d->key_hex), hex);
    copy_text(d->key_fp, sizeof(d->key_fp), fp);
    /* exactly this text: a run's claim holds only with the key an ok bulk.approve record's
     * detail names so (store_bulk.c's key statement) */
    snprintf(d->detail, sizeof(d->detail), "kind=%s rcpt=%s", row->operation, fp);
    return true;
}

static void loaded_for_decision_cb(void *arg, int err, const struct gw_bulk_row *row)
{
    struct bdec *d = arg;
    struct gw_call *call = d->call;
    const struct gw_principal *p = gw_call_principal(call);
    struct gw_app *app = gw_call_app(call);
    struct gw_store_bulk_stmt st[2];
    struct gw_audit_rec rec;
    const char *action = d->in->approve ? "bulk.approve" : "bulk.reject";
    int rc;

    d->sreq = NULL;
    if (err == GW_ENOTFOUND) { /* no such id, or one above the caller's level: alike */
        refuse_decision(d, "no such request", GW_ENOTFOUND, GW_RULE_NONE);
        return;
    }
    if (err != 0) {
        gw_call_set_cancel(call, NULL, NULL);
        gw_api_read_failed_bulk(call, err);
        return;
    }
    copy_text(d->purpose, sizeof(d->purpose), row->purpose);
    copy_text(d->legal_basis, sizeof(d->legal_basis), row->legal_basis);
    if (!decided_key(d, row))
        return;
    gw_api_bulk_rec(call, &rec, action, d->id, "ok");
    rec.count = row->record_count;
    rec.purpose = d->purpose;
    rec.legal_basis = d->legal_basis;
    rec.approval = d->id;
    rec.detail = d->detail;
    if (strcmp(row->requester, p->name) == 0) {
        rec.outcome = "refused";
        rec.detail = "self-approval";
        gw_api_bulk_refuse(call, &rec, GW_EPERM, "request_id", GW_RULE_BULK_SELF_APPROVAL);
        return;
    }
    if (strcmp(row->state, "pending") != 0) {
        refuse_decision(d, "not pending", GW_EPRECOND, GW_RULE_BULK_NOT_PENDING);
        return;
    }
    if (row->expired) { /* undecided past approval_ttl_s, as a lawful-access case (WL004) */
        refuse_decision(d, "expired undecided", GW_EPRECOND, GW_RULE_BULK_UNDECIDED_EXPIRED);
        return;
    }
    /* an approval releases (or destroys) records up to the request's level: its approver is
     * cleared for them as its requester was; a rejection releases nothing and needs no level */
    if (d->in->approve && row->max_level > gw_policy_max_level(gw_call_policy(call), p->role)) {
        refuse_decision(d, "approver level", GW_EPERM, GW_RULE_BULK_APPROVER_LEVEL);
        return;
    }
    /* the key statement first: its failure says the key changed, the decision's that the
     * request is no longer pending (decided_cb), in one round trip */
    gw_store_bulk_key(&st[0], d->id, nonempty(d->key_hex), false);
    gw_store_bulk_decide(&st[1], d->id, d->in->approve, p->name, p->role, nonempty(d->in->comment),
                         app->cfg->approval_ttl_s, nonempty(d->key_hex));
    {
        struct gw_db_stmt s[2] = {st[0].st, st[1].st};
        rc = gw_audit_write(app->audit, s, 2, &rec, 1, decided_cb, d, &d->areq);
    }
    if (rc != 0) {
        gw_call_set_cancel(call, NULL, NULL);
        gw_call_fail(call, rc, NULL, GW_RULE_ACCESS_NOT_RECORDED);
    }
}

void gw_api_compliance_approve_bulk(struct gw_call *call, const uint8_t *req, size_t len)
{
    ProtobufCMessage *msg;
    struct bdec *d;
    int rc;

    d = gw_api_bulk_start(call, &waygate__v1__approve_bulk_request__descriptor, req, len,
                          sizeof(*d), &msg);
    if (d == NULL)
        return;
    d->call = call;
    d->in = (Waygate__V1__ApproveBulkRequest *)msg;
    if (!gw_api_bulk_request_id(call, d->in->request_id, d->id))
        return;
    if (!text_ok(call, "comment", d->in->comment, false, GW_RULE_REQUIRED))
        return;
    rc = gw_store_bulk_load(gw_call_app(call)->store, d->id, gw_call_app(call)->cfg->approval_ttl_s,
                            loaded_for_decision_cb, d, &d->sreq);
    if (rc != 0) {
        gw_api_read_failed_bulk(call, rc);
        return;
    }
    gw_call_set_cancel(call, bdec_cancel_cb, d);
}

void gw_api_read_failed_bulk(struct gw_call *call, int err)
{
    gw_call_fail(call, err, NULL, err == GW_EUNAVAIL ? GW_RULE_DB_UNAVAILABLE : GW_RULE_NOT_READ);
}
