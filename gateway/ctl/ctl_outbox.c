/* ctl_outbox.c: `waygatectl outbox status | list-parked | retry ID | retry --all`: the deliveries
 * to the carrier backend not yet acknowledged (sql/012_outbox.sql): how many, in which state, the
 * age of the oldest; the ones the backend refused for good, with its reason, and those parked
 * behind one of their waybill (sql/044); and making one refused ready again, or many (after a
 * backend that refused everything is mended), with those behind them. Every run is recorded in
 * admin_log and the audit chain 'ctl' (ctl_admin_log); a retry is recorded in the same transaction
 * as the change. Nothing printed is PII: ids, counts, times and the backend's reasons, which the
 * gateway's role writes: printed escaped (ctl_esc). */
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl.h"
#include "ctl_admin.h"
#include "store_admin.h"
#include "store_outbox_admin.h"

static void outbox_usage(FILE *f)
{
    fprintf(f,
            "usage: waygatectl outbox status [--db CONNINFO] [--actor NAME]\n"
            "       waygatectl outbox list-parked [--limit N] [--db CONNINFO] [--actor NAME]\n"
            "       waygatectl outbox retry ID [--db CONNINFO] [--actor NAME]\n"
            "       waygatectl outbox retry --all [--reason PREFIX] [--limit N] [--db CONNINFO]\n"
            "                                     [--actor NAME]\n"
            "  status: deliveries to the carrier backend not yet acknowledged, by state\n"
            "  (parked, of which behind an earlier parked one of their waybill; leased,\n"
            "  waiting for a retry, ready), the age of the oldest unparked one and the most\n"
            "  attempts of one; held: unparked ones the backend refused while the\n"
            "  forwarder's breaker was open (it refused everything: sent again, not parked).\n"
            "  list-parked: the deliveries the backend refused for good and those parked\n"
            "  behind one of their waybill, oldest first, with the reason (--limit defaults\n"
            "  to 100).\n"
            "  retry: makes the parked delivery ID (its outbox id, or its delivery id) ready\n"
            "  again at once, with the waybill's deliveries parked behind it, which follow it\n"
            "  in order; one parked behind another is retried through that one.\n"
            "  retry --all: the same for the oldest N (--limit, 1 to 1000, the default 1000)\n"
            "  parked on their own, only those whose reason starts with PREFIX if given; says\n"
            "  how many are left for another run.\n"
            "  CONNINFO defaults to $WAYGATE_PGURI.\n");
}

static int outbox_status(struct ctl_admin *c)
{
    struct gw_admin_outbox_status st;
    struct ctl_esc e = {0};
    char err[512], detail[128];

    if (gw_admin_outbox_status(c->a, &st, err, sizeof(err)) != 0)
        return ctl_admin_fail(c, NULL, "the database refused", err);
    printf("depth          %lld\n", st.depth);
    printf("ready          %lld\n", st.ready);
    printf("leased         %lld\n", st.leased);
    printf("waiting        %lld\n", st.waiting);
    printf("parked         %lld\n", st.parked);
    printf("behind         %lld\n", st.behind);
    printf("oldest_age_ms  %lld\n", st.oldest_ms);
    printf("oldest_at      %s\n", st.oldest_at[0] ? ctl_esc(&e, st.oldest_at) : "-");
    ctl_esc_clear(&e);
    printf("max_attempts   %lld\n", st.max_attempts);
    printf("held           %lld\n", st.held);
    snprintf(detail, sizeof(detail), "depth %lld, parked %lld, oldest %lld ms", st.depth, st.parked,
             st.oldest_ms);
    return ctl_admin_log(c, NULL, "ok", detail) == 0 ? GW_CTL_OK : GW_CTL_FAIL;
}

static void parked_cb(void *arg, const struct gw_admin_outbox_parked *p)
{
    size_t *n = arg;
    struct ctl_esc e = {0};

    if ((*n)++ == 0)
        printf("%-8s %-36s %-7s %-36s %-36s %-8s %-20s %-20s %s\n", "id", "delivery_id", "kind",
               "record_id", "scan_id", "attempts", "enqueued_at", "parked_at", "reason");
    printf("%-8lld %-36s %-7s %-36s %-36s %-8lld %-20s %-20s %s\n", p->id,
           ctl_esc(&e, p->delivery_id), ctl_esc(&e, p->kind), ctl_esc(&e, p->record_id),
           p->scan_id[0] ? ctl_esc(&e, p->scan_id) : "-", p->attempts, ctl_esc(&e, p->enqueued_at),
           ctl_esc(&e, p->parked_at), ctl_esc(&e, p->reason));
    ctl_esc_clear(&e);
}

static int outbox_list_parked(struct ctl_admin *c, long limit)
{
    char err[512], detail[64];
    size_t n = 0;

    if (gw_admin_outbox_parked(c->a, limit, parked_cb, &n, err, sizeof(err)) != 0)
        return ctl_admin_fail(c, NULL, "the database refused", err);
    if (n == 0)
        printf("(no parked deliveries)\n");
    snprintf(detail, sizeof(detail), "%zu parked", n);
    return ctl_admin_log(c, NULL, "ok", detail) == 0 ? GW_CTL_OK : GW_CTL_FAIL;
}

static int outbox_retry(struct ctl_admin *c, const char *id)
{
    char err[512], detail[96];
    struct gw_admin_outbox_retried r;
    int rc;

    if (ctl_admin_begin(c) != 0)
        return GW_CTL_FAIL;
    err[0] = '\0';
    rc = gw_admin_outbox_retry(c->a, id, &r, err, sizeof(err));
    if (rc == GW_EINVAL)
        return ctl_admin_refuse_text(c, NULL, "ID", "must be an outbox id or a delivery id (UUID)");
    if (rc == GW_ENOTFOUND)
        return ctl_admin_refuse_text(c, id, "ID", "no such delivery in the outbox");
    if (rc == GW_EPRECOND && r.behind != 0) {
        snprintf(detail, sizeof(detail),
                 "the delivery waits behind parked delivery %lld: retry that one", r.behind);
        return ctl_admin_refuse_text(c, id, "ID", detail);
    }
    if (rc == GW_EPRECOND)
        return ctl_admin_refuse_text(c, id, "ID", "the delivery is not parked");
    if (rc != 0)
        return ctl_admin_fail(c, id, "the database refused", err);
    if (r.followers > 0)
        snprintf(detail, sizeof(detail), "outbox id %lld ready again, %lld behind it", r.id,
                 r.followers);
    else
        snprintf(detail, sizeof(detail), "outbox id %lld ready again", r.id);
    if (ctl_admin_log(c, id, "ok", detail) != 0 || ctl_admin_commit(c) != 0)
        return GW_CTL_FAIL;
    printf("delivery %lld is ready again: the forwarder sends it next", r.id);
    if (r.followers > 0)
        printf(", then the %lld delivery(ies) of its waybill parked behind it, in order",
               r.followers);
    printf("\n");
    return GW_CTL_OK;
}

/* A --reason: what a parked reason can start with (the forwarder keeps printable ASCII, at most
 * 200 bytes), so that it is also fit for the record as typed. */
static bool reason_prefix_ok(const char *p)
{
    size_t n = strlen(p);

    if (n == 0 || n > 200)
        return false;
    for (size_t i = 0; i < n; i++)
        if (p[i] < 0x20 || p[i] > 0x7e)
            return false;
    return true;
}

static int outbox_retry_all(struct ctl_admin *c, const char *prefix, long limit)
{
    char err[512], what[256], detail[512];
    struct gw_admin_outbox_retried_all r;

    if (ctl_admin_begin(c) != 0)
        return GW_CTL_FAIL;
    err[0] = '\0';
    /* what was asked, for the record: the reason's prefix is printable ASCII (checked) */
    if (prefix != NULL)
        snprintf(what, sizeof(what), "reason \"%s\", limit %ld: ", prefix, limit);
    else
        snprintf(what, sizeof(what), "limit %ld: ", limit);
    if (gw_admin_outbox_retry_all(c->a, prefix, limit, &r, err, sizeof(err)) != 0)
        return ctl_admin_fail(c, "all", "the database refused", err);
    if (r.retried == 0)
        snprintf(detail, sizeof(detail), "%snone parked on its own", what);
    else
        snprintf(detail, sizeof(detail),
                 "%s%lld ready again (outbox ids %lld to %lld), %lld behind them, %lld left", what,
                 r.retried, r.first, r.last, r.followers, r.left);
    if (ctl_admin_log(c, "all", "ok", detail) != 0 || ctl_admin_commit(c) != 0)
        return GW_CTL_FAIL;
    if (r.retried == 0) {
        printf("no delivery parked on its own%s: nothing changed\n",
               prefix != NULL ? " has a reason starting so" : "");
        return GW_CTL_OK;
    }
    printf("%lld deliver%s ready again (outbox ids %lld to %lld), with the %lld parked behind "
           "them; the forwarder sends them next\n",
           r.retried, r.retried == 1 ? "y is" : "ies are", r.first, r.last, r.followers);
    if (r.left > 0)
        printf("%lld more parked on their own%s: run it again\n", r.left,
               prefix != NULL ? " with that reason" : "");
    return GW_CTL_OK;
}

int gw_ctl_outbox(int argc, char **argv)
{
    static const struct option opts[] = {
        {"db", required_argument, NULL, 'd'},
        {"actor", required_argument, NULL, 'a'},
        {"limit", required_argument, NULL, 'l'},
        {"all", no_argument, NULL, 'A'},
        {"reason", required_argument, NULL, 'r'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *db = NULL, *actor = NULL, *limit = NULL, *verb, *id = NULL, *prefix = NULL;
    struct ctl_admin c = {0};
    bool all = false;
    long limit_n = 100;
    char *end;
    int ch, rc;

    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        outbox_usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? GW_CTL_USAGE : GW_CTL_OK;
    }
    verb = argv[1];
    if (strcmp(verb, "status") != 0 && strcmp(verb, "list-parked") != 0 &&
        strcmp(verb, "retry") != 0) {
        fprintf(stderr, "waygatectl outbox: unknown action '%s' (status, list-parked, retry)\n",
                verb);
        outbox_usage(stderr);
        return GW_CTL_USAGE;
    }
    optind = 2;
    while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (ch) {
        case 'd':
            db = optarg;
            break;
        case 'a':
            actor = optarg;
            break;
        case 'l':
            limit = optarg;
            break;
        case 'A':
            all = true;
            break;
        case 'r':
            prefix = optarg;
            break;
        case 'h':
            outbox_usage(stdout);
            return GW_CTL_OK;
        default:
            outbox_usage(stderr);
            return GW_CTL_USAGE;
        }
    }
    if (strcmp(verb, "retry") == 0 && !all && optind < argc)
        id = argv[optind++];
    if (optind != argc) {
        fprintf(stderr, "waygatectl outbox %s: unexpected argument '%s'\n", verb, argv[optind]);
        return GW_CTL_USAGE;
    }
    if ((all || prefix != NULL) && strcmp(verb, "retry") != 0) {
        fprintf(stderr, "waygatectl outbox: --all and --reason are for retry only\n");
        return GW_CTL_USAGE;
    }
    if (strcmp(verb, "retry") == 0 && !all && id == NULL) {
        fprintf(stderr, "waygatectl outbox retry: ID or --all is required\n");
        return GW_CTL_USAGE;
    }
    if (prefix != NULL && !all) {
        fprintf(stderr, "waygatectl outbox retry: --reason goes with --all\n");
        return GW_CTL_USAGE;
    }
    if (prefix != NULL && !reason_prefix_ok(prefix)) {
        fprintf(stderr, "waygatectl outbox retry: --reason must be 1 to 200 bytes of printable "
                        "ASCII (a parked reason is nothing else)\n");
        return GW_CTL_USAGE;
    }
    if (all)
        limit_n = GW_ADMIN_OUTBOX_RETRY_MAX;
    if (limit != NULL) {
        long max = all ? GW_ADMIN_OUTBOX_RETRY_MAX : 100000;

        limit_n = strtol(limit, &end, 10);
        if ((strcmp(verb, "list-parked") != 0 && !all) || *limit == '\0' || *end != '\0' ||
            limit_n < 1 || limit_n > max) {
            fprintf(stderr,
                    "waygatectl outbox: --limit (list-parked, retry --all) must be between 1 and "
                    "%ld\n",
                    max);
            return GW_CTL_USAGE;
        }
    }
    /* the audit vocabulary has no '-': list-parked is recorded as outbox.list_parked */
    rc = ctl_admin_open(&c, "outbox", strcmp(verb, "list-parked") == 0 ? "list_parked" : verb,
                        actor, db);
    if (rc != 0)
        return rc;
    snprintf(c.cmd, sizeof(c.cmd), "outbox %s", verb);
    if (strcmp(verb, "status") == 0)
        rc = outbox_status(&c);
    else if (strcmp(verb, "list-parked") == 0)
        rc = outbox_list_parked(&c, limit_n);
    else if (all)
        rc = outbox_retry_all(&c, prefix, limit_n);
    else
        rc = outbox_retry(&c, id);
    ctl_admin_close(&c);
    return rc;
}
