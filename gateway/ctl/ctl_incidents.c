/* ctl_incidents.c: `waygatectl incidents list`: the security incidents (Art. 17) the gateway and
 * the CLI recorded (scraping throttles, decryption failures, audit-chain failures, repeated
 * authentication failures, segment violations, separation-of-duties refusals), newest first:
 * time, severity, kind, count, principal, peer, branch, record id and the detail, which never
 * holds PII (incident.h). Read through the owner's function cli_incident_list (sql/010). The
 * gateway's role writes these rows: every text column is printed escaped (ctl_esc). */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl.h"
#include "ctl_admin.h"
#include "report.h"
#include "store_admin.h"
#include "store_report.h"

static void incidents_usage(FILE *f)
{
    fprintf(f, "usage: waygatectl incidents list [--since YYYY-MM] [--severity S] [--limit N]\n"
               "                                 [--db CONNINFO]\n"
               "  Lists security incidents newest first: when (UTC), severity (low, medium, high,\n"
               "  critical), kind, how many occurrences the row stands for, principal, peer,\n"
               "  branch, record id, detail. --since: from the start of that month (UTC+08:00).\n"
               "  --limit defaults to 100. CONNINFO defaults to $WAYGATE_PGURI.\n");
}

static void row_cb(void *arg, const struct gw_admin_incident *i)
{
    size_t *n = arg;
    struct ctl_esc e = {0};

    if ((*n)++ == 0)
        printf("%-6s %-20s %-8s %-24s %-5s %-16s %-22s %-8s %-36s %s\n", "id", "occurred_at",
               "severity", "kind", "count", "principal", "peer", "branch", "record_id", "detail");
    printf("%-6lld %-20s %-8s %-24s %-5lld %-16s %-22s %-8s %-36s %s\n", i->id,
           ctl_esc(&e, i->occurred_at), ctl_esc(&e, i->severity), ctl_esc(&e, i->kind), i->count,
           i->principal[0] ? ctl_esc(&e, i->principal) : "-",
           i->peer[0] ? ctl_esc(&e, i->peer) : "-", i->branch[0] ? ctl_esc(&e, i->branch) : "-",
           i->record_id[0] ? ctl_esc(&e, i->record_id) : "-", ctl_esc(&e, i->detail));
    ctl_esc_clear(&e);
}

static int incidents_list(const char *conninfo, int64_t since_us, const char *severity, long limit)
{
    struct gw_admin *a;
    char err[512];
    size_t n = 0;
    int rc;

    rc = ctl_admin_db("incidents", conninfo, &a);
    if (rc != 0)
        return rc;
    rc = gw_admin_incidents_list(a, since_us, severity, limit, row_cb, &n, err, sizeof(err));
    gw_admin_free(a);
    if (rc != 0) {
        fprintf(stderr, "waygatectl incidents list: the database refused: %s\n", err);
        return GW_CTL_FAIL;
    }
    if (n == 0)
        printf("(no incidents)\n");
    return GW_CTL_OK;
}

int gw_ctl_incidents(int argc, char **argv)
{
    static const struct option opts[] = {
        {"db", required_argument, NULL, 'd'},       {"since", required_argument, NULL, 's'},
        {"severity", required_argument, NULL, 'v'}, {"limit", required_argument, NULL, 'l'},
        {"help", no_argument, NULL, 'h'},           {NULL, 0, NULL, 0},
    };
    const char *db = NULL, *since = NULL, *severity = NULL, *limit = NULL;
    int64_t since_us = -1, to_us;
    long limit_n = 100;
    char *end;
    int c;

    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        incidents_usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? GW_CTL_USAGE : GW_CTL_OK;
    }
    if (strcmp(argv[1], "list") != 0) {
        fprintf(stderr, "waygatectl incidents: unknown action '%s' (list)\n", argv[1]);
        incidents_usage(stderr);
        return GW_CTL_USAGE;
    }
    optind = 2;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'd':
            db = optarg;
            break;
        case 's':
            since = optarg;
            break;
        case 'v':
            severity = optarg;
            break;
        case 'l':
            limit = optarg;
            break;
        case 'h':
            incidents_usage(stdout);
            return GW_CTL_OK;
        default:
            incidents_usage(stderr);
            return GW_CTL_USAGE;
        }
    }
    if (optind != argc) {
        fprintf(stderr, "waygatectl incidents: unexpected argument '%s'\n", argv[optind]);
        return GW_CTL_USAGE;
    }
    if (since != NULL && gw_report_month(since, &since_us, &to_us) != 0) {
        fprintf(stderr, "waygatectl incidents list: --since: must be YYYY-MM\n");
        return GW_CTL_USAGE;
    }
    if (severity != NULL && gw_report_sev_index(severity) < 0) {
        fprintf(stderr,
                "waygatectl incidents list: --severity: must be low, medium, high or critical\n");
        return GW_CTL_USAGE;
    }
    if (limit != NULL) {
        limit_n = strtol(limit, &end, 10);
        if (*limit == '\0' || *end != '\0' || limit_n < 1 || limit_n > 100000) {
            fprintf(stderr, "waygatectl incidents list: --limit must be between 1 and 100000\n");
            return GW_CTL_USAGE;
        }
    }
    return incidents_list(db, since_us, severity, limit_n);
}
