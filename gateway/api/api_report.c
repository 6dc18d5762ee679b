/* api_report.c: Compliance.Report (compliance_auditor): the monthly regulator report of a
 * calendar month in UTC+08:00 (Art. 17, 26, 37, 16): counts only, no PII, no detail of a
 * lawful-access case. Its queries (store_report.h) run in the transaction that writes its
 * report.generate audit record, so a report exists exactly when its generation is recorded.
 * The answer carries the counts, the JSON document and the CSV (domain/report.c, the same
 * renderings as `waygatectl report monthly`). */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "waygate/v1/compliance.pb-c.h"

#include "alloc.h"
#include "api.h"
#include "api_compliance.h"
#include "app.h"
#include "audit.h"
#include "log.h"
#include "report.h"
#include "store_report.h"

struct report {
    struct gw_call *call;
    struct gw_audit_req *areq;
    struct gw_report r;
};

static void cancel_cb(void *arg)
{
    struct report *rp = arg;

    gw_audit_cancel(rp->areq);
    rp->areq = NULL;
}

static char *doc(struct gw_call *call, const struct gw_report *r, bool csv)
{
    char *buf = gw_arena_alloc(gw_call_arena(call), GW_REPORT_DOC_MAX);
    size_t len;

    if (buf == NULL)
        return NULL;
    if ((csv ? gw_report_csv(r, buf, GW_REPORT_DOC_MAX, &len)
             : gw_report_json(r, buf, GW_REPORT_DOC_MAX, &len)) != 0)
        return NULL;
    return buf;
}

static void generated_cb(void *arg, int err, int64_t seq, const struct gw_db_result *res)
{
    Waygate__V1__ReportResponse out = WAYGATE__V1__REPORT_RESPONSE__INIT;
    struct report *rp = arg;
    struct gw_report *r = &rp->r;

    (void)seq;
    rp->areq = NULL;
    gw_call_set_cancel(rp->call, NULL, NULL);
    if (err != 0 || res == NULL || res->nresults < 2 ||
        gw_store_report_parse(res->results[0], res->results[1], r) != 0) {
        GW_LOG(GW_LOG_ERROR, "report", gw_call_log_ctx(rp->call), "report not generated: %s",
               gw_err_str(err != 0 ? err : GW_EINTERNAL));
        gw_call_fail(rp->call, err == GW_EUNAVAIL ? GW_EUNAVAIL : GW_EINTERNAL, NULL,
                     err == GW_EUNAVAIL ? GW_RULE_DB_UNAVAILABLE : GW_RULE_NOT_READ);
        return;
    }
    r->generated_at = (int64_t)time(NULL);
    out.month = r->month;
    out.bulk_requested = r->bulk_requested;
    out.bulk_approved = r->bulk_approved;
    out.bulk_executed = r->bulk_executed;
    out.lawful_access_requested = r->lawful_requested;
    out.lawful_access_approved = r->lawful_approved;
    out.lawful_access_reads = r->lawful_reads;
    out.incidents = gw_report_incidents(r);
    out.records_destroyed = r->records_destroyed;
    out.destruction_records = r->destruction_records;
    out.account_changes = r->account_changes;
    out.suspicious_list_size = r->suspicious;
    out.generated_at = r->generated_at;
    out.document = doc(rp->call, r, false);
    out.csv = doc(rp->call, r, true);
    if (out.document == NULL || out.csv == NULL || gw_call_send(rp->call, &out.base) != 0) {
        gw_call_fail(rp->call, GW_EINTERNAL, NULL, GW_RULE_NOT_RENDERED);
        return;
    }
    gw_call_finish(rp->call, GW_GRPC_OK, NULL);
}

void gw_api_compliance_report(struct gw_call *call, const uint8_t *req, size_t len)
{
    Waygate__V1__ReportRequest *in;
    struct gw_app *app = gw_call_app(call);
    struct gw_db_stmt st[2];
    char from[24], to[24];
    const char *vals[2] = {from, to};
    struct gw_audit_rec rec;
    struct report *rp;
    int rc;

    if (app == NULL || app->audit == NULL) {
        gw_call_fail(call, GW_EUNAVAIL, NULL, GW_RULE_NOT_CONFIGURED);
        return;
    }
    in = (Waygate__V1__ReportRequest *)gw_call_unpack(
        call, &waygate__v1__report_request__descriptor, req, len);
    if (in == NULL)
        return;
    rp = gw_arena_alloc(gw_call_arena(call), sizeof(*rp));
    if (rp == NULL) {
        gw_call_fail(call, GW_ENOMEM, NULL, GW_RULE_NONE);
        return;
    }
    memset(rp, 0, sizeof(*rp));
    rp->call = call;
    if (in->month[0] == '\0') {
        gw_call_fail(call, GW_EINVAL, "month", GW_RULE_REQUIRED);
        return;
    }
    if (gw_report_month(in->month, &rp->r.from_us, &rp->r.to_us) != 0) {
        gw_call_fail(call, GW_EINVAL, "month", GW_RULE_MONTH_FORMAT);
        return;
    }
    snprintf(rp->r.month, sizeof(rp->r.month), "%s", in->month);
    snprintf(from, sizeof(from), "%" PRId64, rp->r.from_us);
    snprintf(to, sizeof(to), "%" PRId64, rp->r.to_us);
    st[0] = (struct gw_db_stmt){.sql = gw_store_report_counts_sql, .nparams = 2, .values = vals};
    st[1] = (struct gw_db_stmt){.sql = gw_store_report_incidents_sql, .nparams = 2, .values = vals};
    gw_api_compliance_rec(call, &rec, "report.generate", "ok");
    rec.object = rp->r.month;
    rc = gw_audit_write(app->audit, st, 2, &rec, 1, generated_cb, rp, &rp->areq);
    if (rc != 0) {
        gw_call_fail(call, GW_EUNAVAIL, NULL, GW_RULE_DB_UNAVAILABLE);
        return;
    }
    gw_call_set_cancel(call, cancel_cb, rp);
}
