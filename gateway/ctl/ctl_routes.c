/* ctl_routes.c: `waygatectl routes add REGION BRANCH | list | remove REGION`: the routing table
 * (destination region code -> delivering branch) that puts a waybill into its destination
 * branch's scope (Art. 34). Every change is recorded in admin_log (via 'cli') in the same
 * statement as the change itself, and in the audit chain 'ctl' (route.add, route.remove) in the
 * same transaction. */
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "account.h"
#include "ctl.h"
#include "ctl_admin.h"
#include "ctl_record.h"
#include "store_acct_admin.h"
#include "store_admin.h"
#include "store_routes.h"

static void routes_usage(FILE *f)
{
    fprintf(f, "usage: waygatectl routes add REGION BRANCH [--by NAME] [--db CONNINFO]\n"
               "       waygatectl routes remove REGION [--by NAME] [--db CONNINFO]\n"
               "       waygatectl routes list [--db CONNINFO]\n"
               "  REGION is a 6-digit administrative division code; BRANCH the branch that\n"
               "  delivers there (its principals then see waybills bound for REGION).\n"
               "  CONNINFO defaults to $WAYGATE_PGURI.\n");
}

static bool valid_region(const char *s)
{
    size_t i;

    for (i = 0; s[i] != '\0'; i++)
        if (s[i] < '0' || s[i] > '9')
            return false;
    return i == 6;
}

static void print_route(void *arg, const struct gw_admin_route *r)
{
    struct ctl_esc e = {0};

    (void)arg;
    printf("%s\t%s\t%s\t%s\n", ctl_esc(&e, r->region), ctl_esc(&e, r->branch),
           ctl_esc(&e, r->created_at), ctl_esc(&e, r->created_by));
    ctl_esc_clear(&e);
}

/* add or remove: the route, its admin_log row (store_routes.c) and its audit record in one
 * transaction. Returns 0 (committed, said on stdout), a gw_err with err filled (rolled back), or
 * GW_CTL_FAIL when the audit record failed (said on stderr; rolled back). */
static int change(struct gw_admin *a, const char *verb, const char *const args[2], const char *by,
                  char *err, size_t errlen)
{
    bool add = strcmp(verb, "add") == 0;
    char cmd[32], detail[64];
    int e;

    snprintf(cmd, sizeof(cmd), "routes %s", verb);
    e = gw_admin_begin(a, err, errlen);
    if (e != 0)
        return e;
    e = add ? gw_admin_route_set(a, args[0], args[1], by, err, errlen)
            : gw_admin_route_remove(a, args[0], by, err, errlen);
    if (e != 0) {
        gw_admin_rollback(a);
        return e;
    }
    if (add)
        snprintf(detail, sizeof(detail), "branch %s", args[1]);
    if (ctl_record(a, cmd, by, add ? "routes.add" : "routes.remove", args[0], -1, "ok",
                   add ? detail : NULL) != 0) {
        gw_admin_rollback(a);
        return GW_CTL_FAIL;
    }
    e = gw_admin_commit(a, err, errlen);
    if (e != 0)
        return e;
    if (add)
        printf("route %s -> %s\n", args[0], args[1]);
    else
        printf("route %s removed\n", args[0]);
    return 0;
}

int gw_ctl_routes(int argc, char **argv)
{
    static const struct option opts[] = {
        {"db", required_argument, NULL, 'd'},
        {"by", required_argument, NULL, 'y'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *db = NULL, *by = NULL, *verb, *args[2] = {NULL, NULL};
    struct gw_admin *a = NULL;
    char err[512];
    int c, nargs, rc = GW_CTL_OK, e;

    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        routes_usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? GW_CTL_USAGE : GW_CTL_OK;
    }
    verb = argv[1];
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
            routes_usage(stdout);
            return GW_CTL_OK;
        default:
            routes_usage(stderr);
            return GW_CTL_USAGE;
        }
    }
    nargs = argc - optind;
    if (nargs > 2) {
        fprintf(stderr, "waygatectl routes: unexpected argument '%s'\n", argv[optind + 2]);
        return GW_CTL_USAGE;
    }
    for (int i = 0; i < nargs; i++)
        args[i] = argv[optind + i];
    if (!((strcmp(verb, "add") == 0 && nargs == 2) || (strcmp(verb, "remove") == 0 && nargs == 1) ||
          (strcmp(verb, "list") == 0 && nargs == 0))) {
        routes_usage(stderr);
        return GW_CTL_USAGE;
    }
    if (nargs >= 1 && !valid_region(args[0])) {
        fprintf(stderr, "waygatectl routes: REGION must be 6 digits\n");
        return GW_CTL_USAGE;
    }
    if (nargs == 2 && !gw_branch_code_ok(args[1])) {
        fprintf(stderr, "waygatectl routes: BRANCH must be 1 to 31 letters, digits, '_' or '-'\n");
        return GW_CTL_USAGE;
    }
    if (by == NULL)
        by = ctl_admin_login_name();
    rc = ctl_admin_db("routes", db, &a);
    if (rc != 0)
        return rc;
    if (strcmp(verb, "list") == 0) {
        e = gw_admin_route_list(a, print_route, NULL, err, sizeof(err));
    } else {
        e = change(a, verb, args, by, err, sizeof(err));
        if (e == GW_CTL_FAIL) { /* the audit record failed: said, rolled back */
            gw_admin_free(a);
            return GW_CTL_FAIL;
        }
    }
    if (e != 0) {
        fprintf(stderr, "waygatectl routes %s: %s\n", verb, err);
        rc = GW_CTL_FAIL;
    }
    gw_admin_free(a);
    return rc;
}
