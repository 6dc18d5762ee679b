/* api_bulk_view.c: Compliance/GetBulk (Art. 37): one bulk request as stored, for the roles that
 * may request or approve one (the policy's bulk roles, through a person's account, as every bulk
 * call: gw_api_bulk_start), so that the approver reads what it decides before ApproveBulk. A
 * request is written once (the gateway's role cannot change its selector or key, sql/040), so
 * what is shown is what a run acts on. Read with the load ApproveBulk and RunBulk decide by
 * (gw_store_bulk_load): an id that names no request is the same NOT_FOUND as theirs, and the
 * same refused record ("no such request"), bounded as every refusal a handler records
 * (gw_api_record_refusal, refusals.h).
 * Invariant: nothing is sent before the view's bulk.view record committed (fail closed); once
 * queued, that record is written whether or not the caller stays (gw_audit_rebind). */
#include <stdio.h>
#include <string.h>

#include "waygate/v1/compliance.pb-c.h"

#include "alloc.h"
#include "api.h"
#include "api_bulk_int.h"
#include "api_pb.h"
#include "api_record.h"
#include "app.h"
#include "audit.h"
#include "config.h"
#include "log.h"
#include "xseal.h"

struct bview {
    struct gw_call *call;
    struct gw_store_bulk_req *sreq;
    struct gw_audit_req *areq;
    char id[37];
    char fp[17];
    char detail[96];
    Waygate__V1__BulkRequestView out;
    Waygate__V1__BulkSelector sel;
};

static void cancel_cb(void *arg)
{
    struct bview *v = arg;

    gw_store_bulk_cancel(v->sreq); /* nothing read yet: nothing shown, nothing to record */
    v->sreq = NULL;
    gw_audit_rebind(v->areq, gw_api_unwaited_cb, NULL);
    v->areq = NULL;
}

static void viewed_cb(void *arg, int err, int64_t seq, const struct gw_db_result *res)
{
    struct bview *v = arg;
    int rc;

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
    rc = gw_call_send(v->call, &v->out.base);
    if (rc != 0) {
        gw_call_fail(v->call, rc, NULL, GW_RULE_NONE);
        return;
    }
    gw_call_finish(v->call, GW_GRPC_OK, NULL);
}

/* The stored id list (a PostgreSQL array literal of UUIDs, "{a,b}"; NULL: none) into the
 * selector's record_ids. Returns 0, GW_ENOMEM, or GW_EINTERNAL for a text that is no such list. */
static int ids_of(struct bview *v, const char *ids)
{
    struct gw_arena *a = gw_call_arena(v->call);
    size_t n, len;
    const char *p;

    if (ids == NULL)
        return 0;
    len = strlen(ids);
    if (len < 2 || ids[0] != '{' || ids[len - 1] != '}')
        return GW_EINTERNAL;
    n = len > 2 ? 1 : 0;
    for (p = ids; *p != '\0'; p++)
        n += *p == ',';
    if (n == 0)
        return 0;
    if ((v->sel.record_ids = gw_arena_alloc(a, n * sizeof(char *))) == NULL)
        return GW_ENOMEM;
    p = ids + 1;
    for (size_t i = 0; i < n; i++) {
        char one[37];
        const char *end = strpbrk(p, ",}");

        if (end == NULL || end - p != 36)
            return GW_EINTERNAL;
        memcpy(one, p, 36);
        one[36] = '\0';
        if ((v->sel.record_ids[i] = gw_arena_alloc(a, 37)) == NULL)
            return GW_ENOMEM;
        if (!gw_api_bulk_uuid(one, v->sel.record_ids[i]))
            return GW_EINTERNAL;
        p = end + 1;
    }
    v->sel.n_record_ids = n;
    return 0;
}

/* The recipient key as stored (64 hex digits, NULL: none) into the view, raw and as its rcpt=
 * fingerprint (gw_api_bulk_key_text, as the bulk.request record names it). */
static int key_of(struct bview *v, const char *stored)
{
    uint8_t *key;
    char hex[65];

    if (stored == NULL)
        return 0;
    if ((key = gw_arena_alloc(gw_call_arena(v->call), GW_XSEAL_PUB_LEN)) == NULL)
        return GW_ENOMEM;
    if (gw_api_bulk_key_parse(stored, key) != 0 || gw_api_bulk_key_text(key, hex, v->fp) != 0)
        return GW_EINTERNAL;
    v->out.recipient_public_key.data = key;
    v->out.recipient_public_key.len = GW_XSEAL_PUB_LEN;
    v->out.recipient_key_fingerprint = v->fp;
    return 0;
}

static Waygate__V1__BulkOperation operation_of(const char *op)
{
    if (strcmp(op, "export") == 0)
        return WAYGATE__V1__BULK_OPERATION__BULK_OPERATION_EXPORT;
    if (strcmp(op, "copy") == 0)
        return WAYGATE__V1__BULK_OPERATION__BULK_OPERATION_COPY;
    if (strcmp(op, "destroy") == 0)
        return WAYGATE__V1__BULK_OPERATION__BULK_OPERATION_DESTROY;
    return WAYGATE__V1__BULK_OPERATION__BULK_OPERATION_UNSPECIFIED;
}

/* The row into the view (everything copied into the call's arena). Returns 0, GW_ENOMEM or
 * GW_EINTERNAL (a stored value the view cannot hold). */
static int view_of(struct bview *v, const struct gw_bulk_row *row)
{
    Waygate__V1__BulkRequestView *o = &v->out;
    struct gw_call *call = v->call;
    int rc;

    o->request_id = v->id;
    o->operation = operation_of(row->operation);
    o->state = gw_api_approval_state(row->state, row->expired);
    if (o->operation == WAYGATE__V1__BULK_OPERATION__BULK_OPERATION_UNSPECIFIED ||
        o->state == WAYGATE__V1__APPROVAL_STATE__APPROVAL_STATE_UNSPECIFIED)
        return GW_EINTERNAL;
    o->selector = &v->sel;
    if ((v->sel.branch = gw_arena_strdup(gw_call_arena(call), row->sel_branch)) == NULL ||
        (v->sel.from_day = gw_arena_strdup(gw_call_arena(call), row->sel_from)) == NULL ||
        (v->sel.to_day = gw_arena_strdup(gw_call_arena(call), row->sel_to)) == NULL ||
        (o->purpose = gw_arena_strdup(gw_call_arena(call), row->purpose)) == NULL ||
        (o->legal_basis = gw_arena_strdup(gw_call_arena(call), row->legal_basis)) == NULL ||
        (o->destination = gw_arena_strdup(gw_call_arena(call), row->destination)) == NULL ||
        (o->requester = gw_arena_strdup(gw_call_arena(call), row->requester)) == NULL ||
        (o->requester_role = gw_arena_strdup(gw_call_arena(call), row->requester_role)) == NULL ||
        (o->requester_branch = gw_arena_strdup(gw_call_arena(call), row->requester_branch)) ==
            NULL ||
        (o->decider = gw_arena_strdup(gw_call_arena(call), row->approver)) == NULL ||
        (o->decider_role = gw_arena_strdup(gw_call_arena(call), row->approver_role)) == NULL)
        return GW_ENOMEM;
    if ((rc = ids_of(v, row->sel_ids)) != 0 || (rc = key_of(v, row->recipient_key)) != 0)
        return rc;
    o->record_count = row->record_count > 0 ? (uint64_t)row->record_count : 0;
    o->max_level = row->max_level;
    o->requested_at = row->requested_at;
    o->expires_at = row->expires_at;
    o->decided_at = row->decided_at;
    return 0;
}

static void loaded_cb(void *arg, int err, const struct gw_bulk_row *row)
{
    struct bview *v = arg;
    struct gw_call *call = v->call;
    struct gw_audit_rec rec;
    int rc;

    v->sreq = NULL;
    if (err == 0)
        err = view_of(v, row);
    if (err != 0) {
        gw_call_set_cancel(call, NULL, NULL);
        if (err == GW_ENOTFOUND) { /* ApproveBulk's and RunBulk's words for an unknown id */
            /* and their refused record (the refusals' bound: a caller asking id after id cannot
             * grow the trail at its pace), written whether or not the caller stays */
            gw_api_bulk_rec(call, &rec, "bulk.view", v->id, "refused");
            rec.approval = v->id;
            rec.detail = "no such request";
            (void)gw_api_record_refusal(call, &rec); /* (no incident to bound) */
            gw_call_fail(call, GW_ENOTFOUND, "request_id", GW_RULE_NONE);
        } else {
            gw_api_read_failed_bulk(call, err);
        }
        return;
    }
    /* who saw which request in which state: the operation, the key it showed (rcpt=, as the
     * bulk.request record names it) and the state */
    if (v->fp[0] != '\0')
        snprintf(v->detail, sizeof(v->detail), "kind=%s rcpt=%s state=%s", row->operation, v->fp,
                 row->expired ? "expired" : row->state);
    else
        snprintf(v->detail, sizeof(v->detail), "kind=%s state=%s", row->operation,
                 row->expired ? "expired" : row->state);
    gw_api_bulk_rec(call, &rec, "bulk.view", v->id, "ok");
    rec.count = row->record_count;
    rec.purpose = v->out.purpose;
    rec.legal_basis = v->out.legal_basis;
    rec.approval = v->id;
    rec.detail = v->detail;
    rc = gw_audit_write(gw_call_app(call)->audit, NULL, 0, &rec, 1, viewed_cb, v, &v->areq);
    if (rc != 0) {
        gw_call_set_cancel(call, NULL, NULL);
        gw_api_log_unrecorded(call, rc, NULL);
        gw_call_fail(call, rc, NULL, GW_RULE_ACCESS_NOT_RECORDED);
    }
}

void gw_api_compliance_get_bulk(struct gw_call *call, const uint8_t *req, size_t len)
{
    Waygate__V1__GetBulkRequest *in;
    ProtobufCMessage *msg;
    struct bview *v;
    int rc;

    v = gw_api_bulk_start(call, &waygate__v1__get_bulk_request__descriptor, req, len, sizeof(*v),
                          &msg);
    if (v == NULL)
        return;
    v->call = call;
    in = (Waygate__V1__GetBulkRequest *)msg;
    waygate__v1__bulk_request_view__init(&v->out);
    waygate__v1__bulk_selector__init(&v->sel);
    if (!gw_api_bulk_request_id(call, in->request_id, v->id))
        return;
    rc = gw_store_bulk_load(gw_call_app(call)->store, v->id, gw_call_app(call)->cfg->approval_ttl_s,
                            loaded_cb, v, &v->sreq);
    if (rc != 0) {
        gw_api_read_failed_bulk(call, rc);
        return;
    }
    gw_call_set_cancel(call, cancel_cb, v);
}
