/* ctl_suspicious.c: `waygatectl suspicious list`: the suspicious-customer register (part 12
 * Art. 7): sender phone numbers seen with two or more different sender ID numbers. Prints only
 * what the database holds: a blind-index prefix, counts, times and record ids, never a clear value.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "ctl.h"

#define BIDX_HEX_SHOWN 12 /* hex digits of the phone's blind index shown: enough to tell apart */
#define STR_(x) #x
#define STR(x) STR_(x)

static void suspicious_usage(FILE *f)
{
    fprintf(
        f, "usage: waygatectl suspicious list [--limit N] [--db CONNINFO]\n"
           "  Lists sender phone numbers used by two or more different senders (different ID\n"
           "  numbers), newest flag first: the phone's blind-index prefix, the number of distinct\n"
           "  senders, when it was flagged, and the first record id seen for each sender.\n"
           "  No clear value is stored or shown. CONNINFO defaults to $WAYGATE_PGURI.\n");
}

static int suspicious_list(const char *conninfo, const char *limit)
{
    const char *values[1] = {limit};
    PGconn *pg = NULL;
    PGresult *res = NULL;
    int i, rc = GW_CTL_FAIL;

    if (conninfo == NULL)
        conninfo = getenv("WAYGATE_PGURI");
    if (conninfo == NULL || conninfo[0] == '\0') {
        fprintf(stderr,
                "waygatectl suspicious: no database: give --db CONNINFO or set WAYGATE_PGURI\n");
        return GW_CTL_USAGE;
    }
    pg = PQconnectdb(conninfo);
    if (PQstatus(pg) != CONNECTION_OK) {
        fprintf(stderr, "waygatectl suspicious: cannot connect to the database: %s",
                PQerrorMessage(pg));
        goto out;
    }
    res = PQexecParams(
        pg,
        "SELECT substr(encode(o.phone_bidx, 'hex'), 1, " STR(
            BIDX_HEX_SHOWN) "), o.senders, "
                            "       to_char(o.flagged_at AT TIME ZONE 'UTC', "
                            "'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), "
                            "       string_agg(s.first_record::text, ',' ORDER BY s.first_seen, "
                            "s.first_record) "
                            "FROM phone_owner o JOIN phone_sender s ON s.phone_bidx = o.phone_bidx "
                            "WHERE o.suspicious "
                            "GROUP BY o.phone_bidx, o.senders, o.flagged_at "
                            "ORDER BY o.flagged_at DESC, o.phone_bidx "
                            "LIMIT $1::bigint",
        1, NULL, values, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        /* the server's message may quote the --limit value only; no PII reaches this query */
        fprintf(stderr, "waygatectl suspicious list: the database refused: %s",
                PQresultErrorMessage(res));
        goto out;
    }
    printf("%-*s %-7s %-20s %s\n", BIDX_HEX_SHOWN + 3, "phone_bidx", "senders", "flagged_at",
           "records");
    for (i = 0; i < PQntuples(res); i++)
        printf("%s... %-7s %-20s %s\n", PQgetvalue(res, i, 0), PQgetvalue(res, i, 1),
               PQgetvalue(res, i, 2), PQgetvalue(res, i, 3));
    if (PQntuples(res) == 0)
        printf("(no suspicious phone numbers)\n");
    rc = GW_CTL_OK;
out:
    PQclear(res);
    PQfinish(pg);
    return rc;
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
    }
    if (strcmp(verb, "list") == 0)
        return suspicious_list(db, limit);
    fprintf(stderr, "waygatectl suspicious: unknown action '%s' (list)\n", verb);
    suspicious_usage(stderr);
    return GW_CTL_USAGE;
}
