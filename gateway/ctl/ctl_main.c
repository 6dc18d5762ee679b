/* ctl_main.c: waygatectl's entry point: the command table and dispatch. Commands live in
 * gateway/ctl_<name>.c (declared in ctl.h); this file only routes argv and returns their status.
 * Invariant: the only place in waygatectl that ends the process (by returning from main); before
 * anything else, it turns core dumps off (nodump.h: the keyring and clear records pass through
 * its memory). */
#include <stdio.h>
#include <string.h>

#include "ctl.h"
#include "nodump.h"

struct ctl_cmd {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *help;
};

static int cmd_help(int argc, char **argv);

/* One line per command; keep sorted by name except help, which comes first. */
static const struct ctl_cmd commands[] = {
    {"help", cmd_help, "list the commands"},
    {"accounts", gw_ctl_accounts,
     "people's accounts: bootstrap, create, list, disable, unlock (Art. 34, 35, 38)"},
    {"export", gw_ctl_export,
     "trace a leaked export file or fragment of rows to its bulk export (Art. 37)"},
    {"audit", gw_ctl_audit, "verify the audit chains; export and verify audit bundles (Art. 33)"},
    {"incidents", gw_ctl_incidents, "list the security incidents recorded (Art. 17)"},
    {"keys", gw_ctl_keys, "keyring: init, rotate, retire, status, rewrap data keys"},
    {"outbox", gw_ctl_outbox, "deliveries to the carrier backend: status, list-parked, retry ID"},
    {"migrate", gw_ctl_migrate,
     "apply the schema migrations as the owner (--db or $WAYGATE_PGURI_OWNER)"},
    {"report", gw_ctl_report, "the monthly regulator report, JSON or CSV (Art. 17, 26, 37)"},
    {"retention", gw_ctl_retention,
     "the retention floor: the shortest period the database lets a sweep destroy by (Art. 26)"},
    {"routes", gw_ctl_routes, "add, list and remove routes: region code -> delivering branch"},
    {"principals", gw_ctl_principals,
     "client certificates as principals: add, list, disable (Art. 31)"},
    {"segments", gw_ctl_segments, "issue and list waybill-number segments of branches (Art. 18)"},
    {"suspicious", gw_ctl_suspicious,
     "list phone numbers used by different senders (part 12 Art. 7)"},
};

#define NCOMMANDS (sizeof(commands) / sizeof(commands[0]))

static void usage(FILE *f)
{
    size_t i;

    fprintf(f, "usage: waygatectl COMMAND [OPTIONS]\n\ncommands:\n");
    for (i = 0; i < NCOMMANDS; i++)
        fprintf(f, "  %-12s %s\n", commands[i].name, commands[i].help);
    fprintf(f, "\nRun 'waygatectl COMMAND --help' for a command's options.\n");
}

static int cmd_help(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    usage(stdout);
    return GW_CTL_OK;
}

int main(int argc, char **argv)
{
    size_t i;

    if (gw_nodump() != 0) {
        fprintf(stderr, "waygatectl: cannot disable core dumps\n");
        return GW_CTL_FAIL;
    }
    if (argc < 2) {
        usage(stderr);
        return GW_CTL_USAGE;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)
        return cmd_help(argc - 1, argv + 1);
    for (i = 0; i < NCOMMANDS; i++)
        if (strcmp(argv[1], commands[i].name) == 0)
            return commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "waygatectl: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return GW_CTL_USAGE;
}
