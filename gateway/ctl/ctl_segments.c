/* ctl_segments.c: `waygatectl segments issue|list`: the register of waybill-number segments issued
 * to branches (part 9 Art. 18). Overlaps are refused by the database (an exclusion constraint
 * on prefix and range), so two administrators racing cannot issue one number twice. An issue is
 * recorded (admin_log and the audit chain 'ctl', segment.issue) in its own transaction. */
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl.h"
#include "ctl_admin.h"
#include "ctl_record.h"
#include "store_acct_admin.h"
#include "store_admin.h"
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

/* The administrative record of this run (Art. 31): one admin_log row, never a value of a record.
 * A failure to record is reported but does not undo what was done. */
static void record(struct gw_admin *a, const char *action, const char *actor, const char *object,
                   const char *outcome, const char *detail)
{
    struct gw_admin_logrec r = {actor, action, object, outcome, detail};
    char err[512];

    if (gw_admin_log(a, &r, err, sizeof(err)) != 0)
        fprintf(stderr, "waygatectl segments: could not record the administrative action: %s\n",
                err);
}

/* A refused or failed issue (its transaction rolled back): its admin_log row and audit record in
 * one of their own; a failure to record them is reported. */
static void refused_record(struct gw_admin *a, const char *by, const char *branch,
                           const char *outcome, const char *text)
{
    char err[512];

    if (gw_admin_begin(a, err, sizeof(err)) != 0) {
        fprintf(stderr, "waygatectl segments issue: could not record the refusal: %s\n", err);
        return;
    }
    record(a, "segments.issue", by, branch, outcome, text);
    if (ctl_record(a, "segments issue", by, "segments.issue", branch, -1, outcome, text) != 0 ||
        gw_admin_commit(a, err, sizeof(err)) != 0)
        gw_admin_rollback(a);
}

static int segments_issue(const char *conninfo, const char *branch, const char *segment,
                          const char *prefix_opt, const char *from_s, const char *to_s,
                          const char *by)
{
    char prefix[GW_WAYBILLNO_PREFIX_MAX + 1] = "", p2[GW_WAYBILLNO_PREFIX_MAX + 1] = "";
    char text[64], err[512];
    enum gw_rule rule = GW_RULE_NONE;
    long long from = 0, to = 0, id = 0;
    int64_t f64, t64;
    int hp1 = 0, hp2 = 0, rc;
    struct gw_admin *a;
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
    rc = ctl_admin_db("segments", conninfo, &a);
    if (rc != 0)
        return rc;
    if (by == NULL)
        by = ctl_admin_login_name();
    /* the segment, its admin_log row and its audit record: one transaction */
    rc = gw_admin_begin(a, err, sizeof(err));
    if (rc == 0)
        rc = gw_admin_segment_issue(a, branch, prefix, from, to, by, &id, err, sizeof(err));
    if (rc == 0) {
        record(a, "segments.issue", by, branch, "ok", text);
        if (ctl_record(a, "segments issue", by, "segments.issue", branch, -1, "ok", text) != 0) {
            gw_admin_rollback(a);
            gw_admin_free(a);
            return GW_CTL_FAIL;
        }
        rc = gw_admin_commit(a, err, sizeof(err));
    } else {
        gw_admin_rollback(a);
        refused_record(a, by, branch, rc == GW_EEXIST ? "refused" : "failed", text);
    }
    gw_admin_free(a);
    if (rc == GW_EEXIST) {
        fprintf(stderr,
                "waygatectl segments issue: %s overlaps a segment already issued "
                "(Art. 18: a number belongs to one branch only); nothing issued\n",
                text);
        return GW_CTL_FAIL;
    }
    if (rc != 0) {
        fprintf(stderr, "waygatectl segments issue: the database refused: %s\n", err);
        return GW_CTL_FAIL;
    }
    printf("issued segment %s to branch %s (id %lld)\n", text, branch, id);
    return GW_CTL_OK;
}

static void list_header(bool *printed)
{
    if (!*printed)
        printf("%-6s %-12s %-32s %-20s %s\n", "id", "branch", "segment", "issued_at", "issued_by");
    *printed = true;
}

static void list_row_cb(void *arg, const struct gw_admin_segment *seg)
{
    struct ctl_esc e = {0};
    char text[64];

    list_header(arg);
    if (gw_segment_format(seg->prefix, seg->range_from, seg->range_to, text, sizeof(text)) != 0)
        snprintf(text, sizeof(text), "(malformed row)");
    printf("%-6lld %-12s %-32s %-20s %s\n", seg->id, ctl_esc(&e, seg->branch), ctl_esc(&e, text),
           ctl_esc(&e, seg->issued_at), ctl_esc(&e, seg->issued_by));
    ctl_esc_clear(&e);
}

static int segments_list(const char *conninfo, const char *branch)
{
    struct gw_admin *a;
    bool header = false;
    char err[512];
    int rc;

    rc = ctl_admin_db("segments", conninfo, &a);
    if (rc != 0)
        return rc;
    rc = gw_admin_segment_list(a, branch, list_row_cb, &header, err, sizeof(err));
    record(a, "segments.list", ctl_admin_login_name(), branch, rc == 0 ? "ok" : "failed", NULL);
    gw_admin_free(a);
    if (rc != 0) {
        fprintf(stderr, "waygatectl segments list: the database refused: %s\n", err);
        return GW_CTL_FAIL;
    }
    list_header(&header);
    return GW_CTL_OK;
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
