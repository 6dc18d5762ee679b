/* ctl_suspicious.c: `waygatectl suspicious list`: the suspicious-customer register (part 12
 * Art. 7): sender phone numbers seen with two or more different sender ID numbers. Prints only
 * what the database holds: a blind-index prefix, counts, times and record ids, never a clear value.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl.h"
#include "ctl_admin.h"
#include "store_admin.h"

static void suspicious_usage(FILE *f)
{
    fprintf(
        f, "usage: waygatectl suspicious list [--limit N] [--db CONNINFO]\n"
           "  Lists sender phone numbers used by two or more different senders (different ID\n"
           "  numbers), newest flag first: the phone's blind-index prefix, the number of distinct\n"
           "  senders, when it was flagged, and the first record id seen for each sender.\n"
           "  No clear value is stored or shown. CONNINFO defaults to $WAYGATE_PGURI.\n");
}

static void row_cb(void *arg, const struct gw_admin_suspect *s)
{
    struct ctl_esc e = {0};
    size_t *n = arg;

    if ((*n)++ == 0)
        printf("%-*s %-7s %-20s %s\n", GW_ADMIN_BIDX_HEX_SHOWN + 3, "phone_bidx", "senders",
               "flagged_at", "records");
    printf("%s... %-7lld %-20s %s\n", ctl_esc(&e, s->phone_bidx), s->senders,
           ctl_esc(&e, s->flagged_at), ctl_esc(&e, s->records));
    ctl_esc_clear(&e);
}

static int suspicious_list(const char *conninfo, long limit)
{
    struct gw_admin *a;
    char err[512];
    size_t n = 0;
    int rc;

    rc = ctl_admin_db("suspicious", conninfo, &a);
    if (rc != 0)
        return rc;
    rc = gw_admin_suspicious_list(a, limit, row_cb, &n, err, sizeof(err));
    gw_admin_free(a);
    if (rc != 0) {
        /* the server's message may quote the --limit value only; no PII reaches this query */
        fprintf(stderr, "waygatectl suspicious list: the database refused: %s\n", err);
        return GW_CTL_FAIL;
    }
    if (n == 0)
        printf("%-*s %-7s %-20s %s\n(no suspicious phone numbers)\n", GW_ADMIN_BIDX_HEX_SHOWN + 3,
               "phone_bidx", "senders", "flagged_at", "records");
    return GW_CTL_OK;
}

int gw_ctl_suspicious(int argc, char **argv)
{
    static const struct option opts[] = {
        {"db", required_argument, NULL, 'd'},
        {"limit", required_argument, NULL, 'l'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *db = NULL, *limit = NULL, *verb;
    long limit_n = 0;
    char *end;
    int c;

    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        suspicious_usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? GW_CTL_USAGE : GW_CTL_OK;
    }
    verb = argv[1];
    optind = 2;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'd':
            db = optarg;
            break;
        case 'l':
            limit = optarg;
            break;
        case 'h':
            suspicious_usage(stdout);
            return GW_CTL_OK;
        default:
            suspicious_usage(stderr);
            return GW_CTL_USAGE;
        }
    }
    if (optind != argc) {
        fprintf(stderr, "waygatectl suspicious: unexpected argument '%s'\n", argv[optind]);
        return GW_CTL_USAGE;
    }
    if (limit != NULL) {
        long v = strtol(limit, &end, 10);
        if (*limit == '\0' || *end != '\0' || v < 1 || v > 1000000) {
            fprintf(stderr, "waygatectl suspicious: --limit must be between 1 and 1000000\n");
            return GW_CTL_USAGE;
        }
        limit_n = v;
    }
    if (strcmp(verb, "list") == 0)
        return suspicious_list(db, limit_n);
    fprintf(stderr, "waygatectl suspicious: unknown action '%s' (list)\n", verb);
    suspicious_usage(stderr);
    return GW_CTL_USAGE;
}
