/* ctl_segments.c: `waygatectl segments issue|list`: the register of waybill-number segments issued
 * to branches (part 9 Art. 18). Overlaps are refused by the database (an exclusion constraint
 * on prefix and range), so two administrators racing cannot issue one number twice. */
#include <getopt.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "ctl.h"
#include "waybillno.h"

static void segments_usage(FILE *f)
{
    fprintf(f,
            "usage: waygatectl segments issue --branch B (--segment PREFIX:FROM-TO |\n"
            "                                 [--prefix P] --from N --to M) [--by NAME] [--db "
            "CONNINFO]\n"
            "       waygatectl segments list [--branch B] [--db CONNINFO]\n"
            "  FROM and TO are the numeric parts of the first and last waybill number, or whole\n"
            "  numbers such as WG1000000000 (their letter prefix then gives the prefix).\n"
            "  CONNINFO defaults to $WAYGATE_PGURI.\n");
}

static PGconn *connect_db(const char *conninfo)
{
    PGconn *pg;

    if (conninfo == NULL)
        conninfo = getenv("WAYGATE_PGURI");
    if (conninfo == NULL || conninfo[0] == '\0') {
        fprintf(stderr,
                "waygatectl segments: no database: give --db CONNINFO or set WAYGATE_PGURI\n");
        return NULL;
    }
    pg = PQconnectdb(conninfo);
    if (PQstatus(pg) != CONNECTION_OK) {
        fprintf(stderr, "waygatectl segments: cannot connect to the database: %s",
                PQerrorMessage(pg));
        PQfinish(pg);
        return NULL;
    }
    return pg;
}

/* A --from/--to value: either digits only, or a whole waybill number whose prefix is returned. */
static int parse_bound(const char *s, char prefix[GW_WAYBILLNO_PREFIX_MAX + 1], int *has_prefix,
                       long long *v)
{
    int64_t num;
    size_t i, n = strlen(s);
    enum gw_rule rule = GW_RULE_NONE;

    for (i = 0; i < n && s[i] >= '0' && s[i] <= '9'; i++)
        ;
    if (n > 0 && i == n && n <= GW_WAYBILLNO_DIGITS_MAX) {
        *has_prefix = 0;
        *v = strtoll(s, NULL, 10);
        return 0;
    }
    if (gw_waybillno_parse_ex(s, n, prefix, &num, NULL, &rule) != 0) {
        fprintf(stderr,
                "waygatectl segments: '%s' is neither a number of at most %d digits nor a "
                "waybill number (%s)\n",
                s, GW_WAYBILLNO_DIGITS_MAX, rule != GW_RULE_NONE ? gw_rule_str(rule) : "invalid");
        return -1;
    }
    *has_prefix = 1;
    *v = num;
    return 0;
}

static const char *default_issuer(void)
{
    const struct passwd *pw = getpwuid(getuid());

    return pw != NULL ? pw->pw_name : "unknown";
}

static int segments_issue(const char *conninfo, const char *branch, const char *segment,
                          const char *prefix_opt, const char *from_s, const char *to_s,
                          const char *by)
{
    char prefix[GW_WAYBILLNO_PREFIX_MAX + 1] = "", p2[GW_WAYBILLNO_PREFIX_MAX + 1] = "";
    char from_txt[24], to_txt[24], text[64];
    enum gw_rule rule = GW_RULE_NONE;
    long long from = 0, to = 0;
    int64_t f64, t64;
    int hp1 = 0, hp2 = 0, rc = GW_CTL_FAIL;
    const char *values[5];
    PGconn *pg = NULL;
    PGresult *res = NULL;
    size_t i;

    if (branch == NULL || branch[0] == '\0' || strlen(branch) > 31) {
        fprintf(stderr, "waygatectl segments issue: --branch is required (1 to 31 characters)\n");
        return GW_CTL_USAGE;
    }
    for (i = 0; branch[i]; i++)
        if (!((branch[i] >= 'a' && branch[i] <= 'z') || (branch[i] >= 'A' && branch[i] <= 'Z') ||
              (branch[i] >= '0' && branch[i] <= '9') || branch[i] == '_' || branch[i] == '-')) {
            fprintf(stderr, "waygatectl segments issue: --branch may hold only letters, digits, "
                            "'_' and '-'\n");
            return GW_CTL_USAGE;
        }
    if (segment != NULL) {
        if (gw_segment_parse_text(segment, strlen(segment), prefix, &f64, &t64, &rule) != 0) {
            fprintf(stderr, "waygatectl segments issue: --segment: %s\n",
                    rule != GW_RULE_NONE ? gw_rule_str(rule) : "invalid");
            return GW_CTL_USAGE;
        }
        from = f64;
        to = t64;
    } else {
        if (from_s == NULL || to_s == NULL) {
            fprintf(stderr, "waygatectl segments issue: give --segment, or --from and --to\n");
            return GW_CTL_USAGE;
        }
        if (parse_bound(from_s, prefix, &hp1, &from) != 0 || parse_bound(to_s, p2, &hp2, &to) != 0)
            return GW_CTL_USAGE;
        if (hp1 && hp2 && strcmp(prefix, p2) != 0) {
            fprintf(stderr, "waygatectl segments issue: --from and --to have different prefixes\n");
            return GW_CTL_USAGE;
        }
        if (!hp1 && hp2)
            memcpy(prefix, p2, sizeof(prefix));
        if (prefix_opt != NULL) {
            char check[GW_WAYBILLNO_PREFIX_MAX + 1];

            snprintf(text, sizeof(text), "%s:0-0", prefix_opt);
            if (gw_segment_parse_text(text, strlen(text), check, &f64, &t64, &rule) != 0) {
                fprintf(stderr, "waygatectl segments issue: --prefix: %s\n",
                        rule != GW_RULE_NONE ? gw_rule_str(rule) : "invalid");
                return GW_CTL_USAGE;
            }
            if ((hp1 || hp2) && strcmp(check, prefix) != 0) {
                fprintf(stderr, "waygatectl segments issue: --prefix disagrees with the prefix of "
                                "--from/--to\n");
                return GW_CTL_USAGE;
            }
            memcpy(prefix, check, sizeof(prefix));
        }
    }
    if (gw_segment_format(prefix, from, to, text, sizeof(text)) != 0) {
        fprintf(stderr,
                "waygatectl segments issue: the range is invalid (FROM must not exceed TO, "
                "both at most %d digits)\n",
                GW_WAYBILLNO_DIGITS_MAX);
        return GW_CTL_USAGE;
    }
    pg = connect_db(conninfo);
    if (pg == NULL)
        return GW_CTL_FAIL;
    snprintf(from_txt, sizeof(from_txt), "%lld", from);
    snprintf(to_txt, sizeof(to_txt), "%lld", to);
    values[0] = branch;
    values[1] = prefix;
    values[2] = from_txt;
    values[3] = to_txt;
    values[4] = by != NULL ? by : default_issuer();
    res = PQexecParams(pg,
                       "INSERT INTO segment (branch, prefix, range_from, range_to, issued_by) "
                       "VALUES ($1, $2, $3::bigint, $4::bigint, $5) RETURNING id",
                       5, NULL, values, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
        if (state != NULL && strcmp(state, "23P01") == 0)
            fprintf(stderr,
                    "waygatectl segments issue: %s overlaps a segment already issued "
                    "(Art. 18: a number belongs to one branch only); nothing issued\n",
                    text);
        else
            fprintf(stderr, "waygatectl segments issue: the database refused: %s",
                    PQresultErrorMessage(res));
        goto out;
    }
    printf("issued segment %s to branch %s (id %s)\n", text, branch, PQgetvalue(res, 0, 0));
    rc = GW_CTL_OK;
out:
    PQclear(res);
    PQfinish(pg);
    return rc;
}

static int segments_list(const char *conninfo, const char *branch)
{
    const char *values[1] = {branch};
    PGconn *pg = connect_db(conninfo);
    PGresult *res;
    char text[64];
    int i, rc = GW_CTL_FAIL;

    if (pg == NULL)
        return GW_CTL_FAIL;
    res = PQexecParams(pg,
                       "SELECT id, branch, prefix, range_from, range_to, issued_by, "
                       "to_char(issued_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') "
                       "FROM segment WHERE $1::text IS NULL OR branch = $1 "
                       "ORDER BY prefix, range_from",
                       1, NULL, values, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        fprintf(stderr, "waygatectl segments list: the database refused: %s",
                PQresultErrorMessage(res));
        goto out;
    }
    printf("%-6s %-12s %-32s %-20s %s\n", "id", "branch", "segment", "issued_at", "issued_by");
    for (i = 0; i < PQntuples(res); i++) {
        if (gw_segment_format(PQgetvalue(res, i, 2), strtoll(PQgetvalue(res, i, 3), NULL, 10),
                              strtoll(PQgetvalue(res, i, 4), NULL, 10), text, sizeof(text)) != 0)
            snprintf(text, sizeof(text), "(malformed row)");
        printf("%-6s %-12s %-32s %-20s %s\n", PQgetvalue(res, i, 0), PQgetvalue(res, i, 1), text,
               PQgetvalue(res, i, 6), PQgetvalue(res, i, 5));
    }
    rc = GW_CTL_OK;
out:
    PQclear(res);
    PQfinish(pg);
    return rc;
}

int gw_ctl_segments(int argc, char **argv)
{
    static const struct option opts[] = {
        {"db", required_argument, NULL, 'd'},
        {"branch", required_argument, NULL, 'b'},
        {"segment", required_argument, NULL, 's'},
        {"prefix", required_argument, NULL, 'p'},
        {"from", required_argument, NULL, 'f'},
        {"to", required_argument, NULL, 't'},
        {"by", required_argument, NULL, 'y'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *db = NULL, *branch = NULL, *segment = NULL, *prefix = NULL, *from = NULL,
               *to = NULL, *by = NULL, *verb;
    int c;

    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        segments_usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? GW_CTL_USAGE : GW_CTL_OK;
    }
    verb = argv[1];
    optind = 2;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'd':
            db = optarg;
            break;
        case 'b':
            branch = optarg;
            break;
        case 's':
            segment = optarg;
            break;
        case 'p':
            prefix = optarg;
            break;
        case 'f':
            from = optarg;
            break;
        case 't':
            to = optarg;
            break;
        case 'y':
            by = optarg;
            break;
        case 'h':
            segments_usage(stdout);
            return GW_CTL_OK;
        default:
            segments_usage(stderr);
            return GW_CTL_USAGE;
        }
    }
    if (optind != argc) {
        fprintf(stderr, "waygatectl segments: unexpected argument '%s'\n", argv[optind]);
        return GW_CTL_USAGE;
    }
    if (strcmp(verb, "issue") == 0)
        return segments_issue(db, branch, segment, prefix, from, to, by);
    if (strcmp(verb, "list") == 0)
        return segments_list(db, branch);
    fprintf(stderr, "waygatectl segments: unknown action '%s' (issue or list)\n", verb);
    segments_usage(stderr);
    return GW_CTL_USAGE;
}
