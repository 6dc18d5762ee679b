/* api_report.c: Compliance.Report (compliance_auditor): the monthly regulator report of a
 * calendar month in UTC+08:00 (Art. 17, 26, 37, 16): counts only, no PII, no detail of a
 * lawful-access case. First the attempt's report.generate record with outcome "started" (an
 * entry of its own, committed before anything is counted: a gateway that dies while it counts
 * leaves a start without an outcome in the trail), then the counts (store_report.h:
 * gw_store_report_read, a read-only REPEATABLE READ transaction of its own on the pool, each
 * statement under [compliance] report_timeout_ms, alone on its connection), then the outcome's
 * report.generate record, an entry of its own holding the SHA-256 of the JSON document about to
 * be sent, and only once that record committed the answer (fail closed: no record, no report). The
 * counts never run inside an audit-writer transaction, so however long a month takes to count, no
 * audited write waits for it. At most REPORTS_COUNTING reports count at once per gateway (they hold
 * a pool connection each), and none on a pool of fewer than GW_REPORT_POOL_MIN connections. The
 * answer carries the counts, the JSON document and the CSV (domain/report.c, the same renderings as
 * `waygatectl report monthly`).
 *
 * Invariant (Art. 33): nothing is counted before the attempt's "started" record committed (when
 * it cannot be written: UNAVAILABLE, nothing counted); every attempt that started then leaves
 * exactly one outcome record besides, "ok" (counted and sent), "timeout" or "failed" (not
 * counted: the caller's status is answered only once that record committed, and UNAVAILABLE
 * when it could not be written), or "cancelled" (the caller went away while it started or
 * counted). Once a record is queued it is written whether or not the caller stays
 * (gw_audit_rebind, never cancelled). Refusals before the start (the month's format, BUSY, a
 * pool too small) are not recorded, like the argument and capacity refusals of the other audited
 * methods: they read nothing and act on nothing. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>

#include "waygate/v1/compliance.pb-c.h"

#include "alloc.h"
#include "api.h"
#include "api_compliance.h"
#include "app.h"
#include "audit.h"
#include "clock.h"
#include "config.h"
#include "db.h"
#include "log.h"
#include "report.h"
#include "store_report.h"

#define REPORTS_COUNTING 1 /* reports counting at once per gateway */

struct report {
    struct gw_call *call;
    struct gw_app *app;
    struct gw_store_report_req *read; /* the counts, while they run */
    struct gw_audit_req *areq;        /* the attempt's report.generate record, while written */
    bool starting;                    /* areq is the "started" record (no count yet) */
    bool slot;                        /* holds one of the REPORTS_COUNTING slots */
    struct gw_report r;
    struct gw_fault fault; /* why a report was not made (code 0: it was counted) */
    char *document, *csv;
    char detail[256]; /* "document_sha256=<hex>", or the words of the fault */
};

static void recorded_cb(void *arg, int err, int64_t seq, const struct gw_db_result *res);
static void started_cb(void *arg, int err, int64_t seq, const struct gw_db_result *res);

/* The callback of a record whose caller went away: nobody is left to answer. */
static void unheld_cb(void *arg, int err, int64_t seq, const struct gw_db_result *res)
{
    (void)arg;
    (void)seq;
    if (err != 0)
        GW_LOG(GW_LOG_ERROR, "report", NULL,
               "the report.generate record of a caller gone was not written: %s (SQLSTATE %s)",
               gw_err_str(err), res != NULL && res->sqlstate != NULL ? res->sqlstate : "-");
}

/* Queues the attempt's report.generate record (object the month) with outcome and detail; held:
 * its commit answers the call (the "started" record: started_cb, the others: recorded_cb), else
 * nobody waits for it and it waits out an outage (gw_audit_write_kept). Returns 0 or the
 * writer's error. */
static int record(struct report *rp, const char *outcome, const char *detail, bool held)
{
    struct gw_audit_rec rec;
    bool start = strcmp(outcome, "started") == 0;

    gw_api_compliance_rec(rp->call, &rec, "report.generate", outcome);
    rec.object = rp->r.month;
    rec.detail = detail;
    if (!held)
        return gw_audit_write_kept(rp->app->audit, NULL, 0, &rec, 1, unheld_cb, NULL);
    return gw_audit_write(rp->app->audit, NULL, 0, &rec, 1, start ? started_cb : recorded_cb, rp,
                          &rp->areq);
}

/* The attempt no longer counts nor waits to (done, failed, cancelled): its slot is free. */
static void slot_free(struct report *rp)
{
    rp->read = NULL;
    if (rp->slot)
        rp->app->reports_counting--;
    rp->slot = false;
}

/* A count whose caller went away has ended on the server (or its connection was lost): its slot
 * is free. */
static void count_ended(void *arg, int err, const struct gw_db_result *res)
{
    struct gw_app *app = arg;

    (void)err;
    (void)res;
    app->reports_counting--;
}

/* The caller went away. A count in progress, or the started record it waits for, is dropped and
 * the attempt recorded as cancelled (after its start: the writer keeps queue order); a record
 * being written is written all the same (gw_audit_rebind), answered to nobody. A count already
 * sent keeps its slot until it has ended on the server (count_ended): it holds a pool connection
 * until then, and a caller that cancels and asks again must not hold more of them than
 * REPORTS_COUNTING. */
static void cancel_cb(void *arg)
{
    struct report *rp = arg;
    int rc;

    if (rp->read != NULL || rp->starting) {
        if (rp->read != NULL && gw_store_report_detach(rp->read, count_ended, rp->app))
            rp->slot = false; /* count_ended frees it */
        slot_free(rp);
        gw_audit_rebind(rp->areq, unheld_cb, NULL); /* the start, if still being written */
        rp->areq = NULL;
        rp->starting = false;
        rc = record(rp, "cancelled", NULL, false);
        if (rc != 0)
            GW_LOG(GW_LOG_ERROR, "report", gw_call_log_ctx(rp->call),
                   "the cancelled report of %s was not recorded: %s", rp->r.month, gw_err_str(rc));
    }
    gw_audit_rebind(rp->areq, unheld_cb, NULL);
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

/* A report not made: its attempt could not be recorded either (fail closed). */
static void unrecorded(struct report *rp, int err)
{
    GW_LOG(GW_LOG_ERROR, "report", gw_call_log_ctx(rp->call),
           "report of %s not made (%s), and its attempt not recorded: %s", rp->r.month,
           gw_err_str(rp->fault.code), gw_err_str(err));
    gw_call_fail(rp->call, gw_err_queue_full_or(err, GW_EUNAVAIL), NULL, GW_RULE_REPORT_UNRECORDED);
}

static void send_report(struct report *rp)
{
    Waygate__V1__ReportResponse out = WAYGATE__V1__REPORT_RESPONSE__INIT;
    struct gw_report *r = &rp->r;

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
    out.document = rp->document;
    out.csv = rp->csv;
    if (gw_call_send(rp->call, &out.base) != 0) {
        gw_call_fail(rp->call, GW_EINTERNAL, NULL, GW_RULE_NOT_RENDERED);
        return;
    }
    gw_call_finish(rp->call, GW_GRPC_OK, NULL);
}

static void recorded_cb(void *arg, int err, int64_t seq, const struct gw_db_result *res)
{
    struct report *rp = arg;

    (void)seq;
    rp->areq = NULL;
    gw_call_set_cancel(rp->call, NULL, NULL);
    if (rp->fault.code != 0) { /* the attempt of a report not made */
        if (err != 0)
            unrecorded(rp, err);
        else
            gw_call_finish_fault(rp->call, &rp->fault);
        return;
    }
    if (err != 0) {
        GW_LOG(GW_LOG_ERROR, "report", gw_call_log_ctx(rp->call),
               "report not recorded, so not sent: %s (SQLSTATE %s)", gw_err_str(err),
               res != NULL && res->sqlstate != NULL ? res->sqlstate : "-");
        gw_call_fail(rp->call,
                     gw_err_queue_full_or(err, err == GW_EUNAVAIL ? GW_EUNAVAIL : GW_EINTERNAL),
                     NULL, err == GW_EUNAVAIL ? GW_RULE_DB_UNAVAILABLE : GW_RULE_NOT_RECORDED);
        return;
    }
    send_report(rp);
}

/* "document_sha256=" and the lowercase hex of the SHA-256 of s into out (at least 81 bytes);
 * false when the digest failed. */
static bool digest_detail(const char *s, char *out, size_t outsz)
{
    static const char hexd[] = "0123456789abcdef";
    unsigned char d[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    size_t pos = (size_t)snprintf(out, outsz, "document_sha256=");

    if (EVP_Digest(s, strlen(s), d, &n, EVP_sha256(), NULL) != 1 || n != 32 || pos + 2 * n >= outsz)
        return false;
    for (unsigned int i = 0; i < n; i++) {
        out[pos++] = hexd[d[i] >> 4];
        out[pos++] = hexd[d[i] & 15];
    }
    out[pos] = '\0';
    return true;
}

/* No report is made (rp->fault says why): the attempt is recorded with outcome and the words the
 * caller is told (never a value), and the caller answered once that record committed. */
static void not_made(struct report *rp, const char *outcome)
{
    int rc;

    (void)gw_fault_format(&rp->fault, rp->detail, sizeof(rp->detail));
    rc = record(rp, outcome, rp->detail, true);
    if (rc != 0) {
        gw_call_set_cancel(rp->call, NULL, NULL);
        unrecorded(rp, rc);
    }
}

/* The counts ended with err (not 0). */
static void not_counted(struct report *rp, int err)
{
    GW_LOG(GW_LOG_WARN, "report", gw_call_log_ctx(rp->call), "report of %s not counted: %s",
           rp->r.month, gw_err_str(err));
    not_made(rp, gw_report_not_counted(err, rp->app->cfg->report_timeout_ms, &rp->fault));
}

static void counted_cb(void *arg, int err)
{
    struct report *rp = arg;
    int rc;

    slot_free(rp);
    if (err != 0) {
        not_counted(rp, err);
        return;
    }
    /* what will be sent is fixed now, and the record names it before any of it leaves */
    rp->r.generated_at = (int64_t)time(NULL);
    rp->document = doc(rp->call, &rp->r, false);
    rp->csv = doc(rp->call, &rp->r, true);
    if (rp->document == NULL || rp->csv == NULL ||
        !digest_detail(rp->document, rp->detail, sizeof(rp->detail))) {
        (void)gw_fault_set(&rp->fault, GW_EINTERNAL, NULL, NULL, GW_RULE_NOT_RENDERED);
        not_made(rp, "failed");
        return;
    }
    rc = record(rp, "ok", rp->detail, true);
    if (rc != 0) {
        gw_call_set_cancel(rp->call, NULL, NULL);
        gw_call_fail(rp->call, gw_err_queue_full_or(rc, GW_EUNAVAIL), NULL, GW_RULE_DB_UNAVAILABLE);
    }
}

/* The attempt's start could not be recorded (err): nothing is counted (fail closed). */
static void unstarted(struct report *rp, int err, const struct gw_db_result *res)
{
    GW_LOG(GW_LOG_ERROR, "report", gw_call_log_ctx(rp->call),
           "report of %s not made: its start was not recorded: %s (SQLSTATE %s)", rp->r.month,
           gw_err_str(err), res != NULL && res->sqlstate != NULL ? res->sqlstate : "-");
    slot_free(rp);
    gw_call_set_cancel(rp->call, NULL, NULL);
    gw_call_fail(rp->call, GW_EUNAVAIL, NULL, GW_RULE_REPORT_UNRECORDED);
}

/* The attempt's start committed (or not): only now is anything counted. */
static void started_cb(void *arg, int err, int64_t seq, const struct gw_db_result *res)
{
    struct report *rp = arg;
    int rc;

    (void)seq;
    rp->areq = NULL;
    rp->starting = false;
    if (err != 0) {
        unstarted(rp, err, res);
        return;
    }
    rc = gw_store_report_read(rp->app->db, &rp->r, rp->app->cfg->report_timeout_ms, counted_cb, rp,
                              &rp->read);
    if (rc != 0) { /* not sent (the database away, the pool's queue full): not counted either */
        slot_free(rp);
        not_counted(rp, rc);
    }
}

void gw_api_compliance_report(struct gw_call *call, const uint8_t *req, size_t len)
{
    Waygate__V1__ReportRequest *in;
    struct gw_app *app = gw_call_app(call);
    struct report *rp;
    struct gw_fault f;
    int rc;

    if (app == NULL || app->audit == NULL || app->db == NULL || app->cfg == NULL) {
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
    rp->app = app;
    if (in->month[0] == '\0') {
        gw_call_fail(call, GW_EINVAL, "month", GW_RULE_REQUIRED);
        return;
    }
    if (gw_report_month(in->month, &rp->r.from_us, &rp->r.to_us) != 0) {
        gw_call_fail(call, GW_EINVAL, "month", GW_RULE_MONTH_FORMAT);
        return;
    }
    if (!gw_report_month_begun(rp->r.from_us, gw_clock_real_us())) {
        gw_call_fail(call, GW_EINVAL, "month", GW_RULE_MONTH_NOT_BEGUN);
        return;
    }
    snprintf(rp->r.month, sizeof(rp->r.month), "%s", in->month);
    if (gw_report_pool_check(gw_db_pool_size(app->db), &f) != 0) {
        gw_call_finish_fault(call, &f);
        return;
    }
    if (app->reports_counting >= REPORTS_COUNTING) {
        (void)gw_fault_set(&f, GW_ETOOBIG, NULL, NULL, GW_RULE_BUSY);
        f.limit = REPORTS_COUNTING;
        gw_call_finish_fault(call, &f);
        return;
    }
    /* the slot is taken from the start: a second report is busy while the first one's start is
     * being recorded too */
    app->reports_counting++;
    rp->slot = true;
    rc = record(rp, "started", NULL, true);
    if (rc != 0) {
        unstarted(rp, rc, NULL);
        return;
    }
    rp->starting = true;
    gw_call_set_cancel(call, cancel_cb, rp);
}
