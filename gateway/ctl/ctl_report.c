/* ctl_report.c: `waygatectl report monthly --month YYYY-MM [--format json|csv]`: the monthly
 * regulator report (Art. 17, 26, 37, 16) on stdout, the same numbers and documents as
 * Compliance.Report (domain/report.c renders, store/store_report.c counts). The month is a
 * calendar month in China Standard Time (UTC+08:00). Counts only: no PII, no case details. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "audit_ctl.h"
#include "clock.h"
#include "ctl.h"
#include "ctl_admin.h"
#include "report.h"
#include "store_admin.h"
#include "store_report.h"

static void report_usage(FILE *f)
{
    fprintf(f,
            "usage: waygatectl report monthly --month YYYY-MM [--format json|csv] [--actor NAME]\n"
            "                                 [--db CONNINFO]\n"
            "  The monthly regulator report of the calendar month YYYY-MM in UTC+08:00: bulk\n"
            "  operations, lawful-access counts (no details), incidents by severity, destruction\n"
            "  records and records destroyed, account and principal changes, refused attempts,\n"
            "  and the suspicious-list size. JSON (default) or CSV on stdout, once its\n"
            "  report.generate audit record (chain 'ctl', actor --actor or $USER) is written:\n"
            "  outcome started before anything is counted, then ok, or failed with the reason.\n"
            "  CONNINFO defaults to $WAYGATE_PGURI.\n");
}

/* A report.generate record of the attempt (chain 'ctl'), in a transaction of its own: the counts
 * are read in one REPEATABLE READ snapshot, which must not also pick the chain's next sequence
 * number (a record appended meanwhile would be invisible to it). */
static int record(struct gw_admin *a, const char *actor, const char *month, const char *outcome,
                  const char *detail, char *err, size_t errlen)
{
    struct gw_audit_rec rec = {.actor = actor,
                               .peer = "local",
                               .action = "report.generate",
                               .object = month,
                               .count = -1,
                               .outcome = outcome,
                               .detail = detail};

    return gw_admin_audit(a, &rec, ctl_audit_key(), NULL, err, errlen);
}

/* The counts of r's month, in a read-only snapshot of their own. */
static int count(struct gw_admin *a, struct gw_report *r, char *err, size_t errlen)
{
    int rc = gw_admin_begin(a, err, errlen);

    if (rc == 0)
        rc = gw_admin_report(a, r, err, errlen);
    if (rc == 0)
        rc = gw_admin_commit(a, err, errlen);
    if (rc != 0)
        gw_admin_rollback(a);
    return rc;
}

/* As the gateway's Compliance.Report does (Art. 33): the attempt's start is recorded before
 * anything is counted (a CLI killed while it counts leaves the start); then exactly one outcome,
 * "failed" (with the words printed, never a value) or "ok", and the report is printed only once
 * that "ok" committed. Returns a GW_CTL_* code. */
static int report_monthly(const char *conninfo, const char *month, bool csv, const char *actor)
{
    static const char what[] = "waygatectl report monthly";
    struct gw_report r;
    struct gw_admin *a;
    char err[512], why[600], doc[GW_REPORT_DOC_MAX];
    size_t len = 0;
    int rc;

    memset(&r, 0, sizeof(r));
    if (gw_report_month(month, &r.from_us, &r.to_us) != 0) {
        fprintf(stderr, "%s: --month: must be YYYY-MM (year 2000 or later)\n", what);
        return GW_CTL_USAGE;
    }
    if (!gw_report_month_begun(r.from_us, gw_clock_real_us())) {
        fprintf(stderr, "%s: --month: must be a month that has begun (UTC+08:00)\n", what);
        return GW_CTL_USAGE;
    }
    snprintf(r.month, sizeof(r.month), "%s", month);
    actor = ctl_admin_actor(actor);
    rc = ctl_admin_db("report", conninfo, &a);
    if (rc != 0)
        return rc;
    if (record(a, actor, r.month, "started", what, err, sizeof(err)) != 0) {
        fprintf(stderr, "%s: its start could not be recorded, nothing was counted: %s\n", what,
                err);
        gw_admin_free(a);
        return GW_CTL_FAIL;
    }
    if (count(a, &r, err, sizeof(err)) != 0) {
        /* the server's words, escaped once already (gw_admin_refused's gw_pq_msg: whole UTF-8
         * only, as a record's text must be), and whole: why holds the prefix and all of err */
        _Static_assert(sizeof(why) >= sizeof("the database refused: ") + sizeof(err),
                       "why holds the prefix and the whole of err");
        snprintf(why, sizeof(why), "the database refused: %s", err);
    } else {
        r.generated_at = (int64_t)time(NULL);
        rc = csv ? gw_report_csv(&r, doc, sizeof(doc), &len)
                 : gw_report_json(&r, doc, sizeof(doc), &len);
        snprintf(why, sizeof(why), "%s", rc != 0 ? "the report did not fit its buffer" : "");
    }
    if (why[0] != '\0') {
        if (record(a, actor, r.month, "failed", why, err, sizeof(err)) != 0)
            fprintf(stderr, "%s: its failure could not be recorded either: %s\n", what, err);
        fprintf(stderr, "%s: %s\n", what, why);
        gw_admin_free(a);
        return GW_CTL_FAIL;
    }
    rc = record(a, actor, r.month, "ok", what, err, sizeof(err));
    gw_admin_free(a);
    if (rc != 0) {
        fprintf(stderr, "%s: the report was not recorded, so not printed: %s\n", what, err);
        return GW_CTL_FAIL;
    }
    fwrite(doc, 1, len, stdout);
    return GW_CTL_OK;
}

int gw_ctl_report(int argc, char **argv)
{
    static const struct option opts[] = {
        {"db", required_argument, NULL, 'd'},     {"month", required_argument, NULL, 'm'},
        {"format", required_argument, NULL, 'f'}, {"actor", required_argument, NULL, 'a'},
        {"help", no_argument, NULL, 'h'},         {NULL, 0, NULL, 0},
    };
    const char *db = NULL, *month = NULL, *format = "json", *actor = NULL;
    int c;

    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        report_usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? GW_CTL_USAGE : GW_CTL_OK;
    }
    if (strcmp(argv[1], "monthly") != 0) {
        fprintf(stderr, "waygatectl report: unknown report '%s' (monthly)\n", argv[1]);
        report_usage(stderr);
        return GW_CTL_USAGE;
    }
    optind = 2;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'd':
            db = optarg;
            break;
        case 'm':
            month = optarg;
            break;
        case 'f':
            format = optarg;
            break;
        case 'a':
            actor = optarg;
            break;
        case 'h':
            report_usage(stdout);
            return GW_CTL_OK;
        default:
            report_usage(stderr);
            return GW_CTL_USAGE;
        }
    }
    if (optind != argc) {
        fprintf(stderr, "waygatectl report: unexpected argument '%s'\n", argv[optind]);
        return GW_CTL_USAGE;
    }
    if (month == NULL) {
        fprintf(stderr, "waygatectl report monthly: --month: is required\n");
        return GW_CTL_USAGE;
    }
    if (strcmp(format, "json") != 0 && strcmp(format, "csv") != 0) {
        fprintf(stderr, "waygatectl report monthly: --format: must be json or csv\n");
        return GW_CTL_USAGE;
    }
    return report_monthly(db, month, strcmp(format, "csv") == 0, actor);
}
