/* ctl_retention.c: `waygatectl retention floor [DAYS]`: shows or sets the retention floor, the
 * shortest period by which the database lets the gateway's retention sweep destroy records (Art.
 * 26; sql/020_retention_floor.sql). The gateway's role cannot change it, so a holder of that role
 * cannot destroy younger records by asking for a shorter period. A change is recorded in
 * admin_log (via 'cli') in the same statement, and in the audit chain 'ctl' (retention.floor) in
 * the same transaction. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl.h"
#include "ctl_admin.h"
#include "ctl_record.h"
#include "store_acct_admin.h"
#include "store_admin.h"
#include "store_retention_admin.h"

#define FLOOR_MAX 36500 /* [compliance] retention_days' own maximum */

static void retention_usage(FILE *f)
{
    fprintf(f,
            "usage: waygatectl retention floor [DAYS] [--by NAME] [--db CONNINFO]\n"
            "  Without DAYS: the floor, who set it and when. With DAYS (1 to %d): the\n"
            "  shortest retention period, in days, by which the database lets the gateway's\n"
            "  retention sweep destroy records; [compliance] retention_days must not be below\n"
            "  it, or the sweep is refused. CONNINFO defaults to $WAYGATE_PGURI.\n",
            FLOOR_MAX);
}

static void print_floor(void *arg, const struct gw_admin_floor *f)
{
    struct ctl_esc e = {0};

    (void)arg;
    printf("%d\t%s\t%s\n", (int)f->min_days, ctl_esc(&e, f->set_at), ctl_esc(&e, f->set_by));
    ctl_esc_clear(&e);
}

/* The floor, its admin_log row and its audit record in one transaction. Returns 0 (committed,
 * said on stdout), a gw_err with err filled (rolled back), or GW_CTL_FAIL when the audit record
 * failed (said on stderr; rolled back). */
static int set_floor(struct gw_admin *a, int32_t days, const char *by, char *err, size_t errlen)
{
    char object[16], detail[32];
    int32_t was = 0;
    int e;

    e = gw_admin_begin(a, err, errlen);
    if (e != 0)
        return e;
    e = gw_admin_floor_set(a, days, by, &was, err, errlen);
    if (e != 0) {
        gw_admin_rollback(a);
        return e;
    }
    snprintf(object, sizeof(object), "%d", (int)days);
    snprintf(detail, sizeof(detail), "was %d", (int)was);
    if (ctl_record(a, "retention floor", by, "retention.floor", object, -1, "ok", detail) != 0) {
        gw_admin_rollback(a);
        return GW_CTL_FAIL;
    }
    e = gw_admin_commit(a, err, errlen);
    if (e != 0)
        return e;
    printf("retention floor %d days (was %d)\n", (int)days, (int)was);
    return 0;
}

int gw_ctl_retention(int argc, char **argv)
{
    static const struct option opts[] = {
        {"db", required_argument, NULL, 'd'},
        {"by", required_argument, NULL, 'y'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *db = NULL, *by = NULL;
    struct gw_admin *a = NULL;
    char err[512], *end = NULL;
    long days = 0;
    int c, nargs, rc = GW_CTL_OK, e;

    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        retention_usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? GW_CTL_USAGE : GW_CTL_OK;
    }
    if (strcmp(argv[1], "floor") != 0) {
        retention_usage(stderr);
        return GW_CTL_USAGE;
    }
    optind = 2;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'd':
            db = optarg;
            break;
        case 'y':
            by = optarg;
            break;
        case 'h':
            retention_usage(stdout);
            return GW_CTL_OK;
        default:
            retention_usage(stderr);
            return GW_CTL_USAGE;
        }
    }
    nargs = argc - optind;
    if (nargs > 1) {
        fprintf(stderr, "waygatectl retention floor: unexpected argument '%s'\n", argv[optind + 1]);
        return GW_CTL_USAGE;
    }
    if (nargs == 1) {
        days = strtol(argv[optind], &end, 10);
        if (end == argv[optind] || *end != '\0' || days < 1 || days > FLOOR_MAX) {
            fprintf(stderr,
                    "waygatectl retention floor: DAYS must be a whole number from 1 to %d\n",
                    FLOOR_MAX);
            return GW_CTL_USAGE;
        }
    }
    if (by == NULL)
        by = ctl_admin_login_name();
    rc = ctl_admin_db("retention", db, &a);
    if (rc != 0)
        return rc;
    if (nargs == 0) {
        e = gw_admin_floor_get(a, print_floor, NULL, err, sizeof(err));
    } else {
        e = set_floor(a, (int32_t)days, by, err, sizeof(err));
        if (e == GW_CTL_FAIL) { /* the audit record failed: said, rolled back */
            gw_admin_free(a);
            return GW_CTL_FAIL;
        }
    }
    if (e != 0) {
        fprintf(stderr, "waygatectl retention floor: %s\n", err);
        rc = GW_CTL_FAIL;
    }
    gw_admin_free(a);
    return rc;
}
