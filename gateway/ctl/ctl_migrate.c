/* ctl_migrate.c: `waygatectl migrate`: applies the embedded migrations to the database named by
 * --db, $WAYGATE_PGURI_OWNER or $WAYGATE_PGURI (as the database's owner: the objects it creates
 * are the owner's), printing each one applied. The connection string is never printed
 * (it may name a passfile or a host the operator does not want in logs), and one that holds a
 * password is refused before anything is done (ctl_conninfo_check). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl.h"
#include "ctl_admin.h"
#include "migrate.h"

static void migrate_usage(FILE *f)
{
    fprintf(f, "usage: waygatectl migrate [--db CONNINFO]\n"
               "  --db CONNINFO  libpq connection string or URI, as the database's owner\n"
               "                 (default: $WAYGATE_PGURI_OWNER, else $WAYGATE_PGURI);\n"
               "                 put the password in a passfile, never in CONNINFO\n");
}

static void report_cb(void *arg, const struct gw_migration *m, const char *said)
{
    const char *p = said, *nl;

    (void)arg;
    printf("applied migration %03d (%s)\n", m->version, m->name);
    for (; *p != '\0'; p = nl + 1) {
        nl = strchr(p, '\n');
        if (nl == NULL)
            break;
        printf("  migration %03d says: %.*s\n", m->version, (int)(nl - p), p);
    }
    fflush(stdout);
}

int gw_ctl_migrate(int argc, char **argv)
{
    static const struct option opts[] = {
        {"db", required_argument, NULL, 'd'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *conninfo = NULL, *source = "--db";
    char err[1024];
    int c, rc, version = 0;

    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'd':
            conninfo = optarg;
            break;
        case 'h':
            migrate_usage(stdout);
            return GW_CTL_OK;
        default:
            fprintf(stderr, "waygatectl migrate: bad option '%s'\n", argv[optind - 1]);
            migrate_usage(stderr);
            return GW_CTL_USAGE;
        }
    }
    if (optind != argc) {
        fprintf(stderr, "waygatectl migrate: unexpected argument\n");
        migrate_usage(stderr);
        return GW_CTL_USAGE;
    }
    if (conninfo == NULL) {
        conninfo = getenv("WAYGATE_PGURI_OWNER");
        source = "WAYGATE_PGURI_OWNER";
        if (conninfo == NULL || conninfo[0] == '\0') {
            conninfo = getenv("WAYGATE_PGURI");
            source = "WAYGATE_PGURI";
        }
    }
    if (conninfo == NULL || conninfo[0] == '\0') {
        fprintf(stderr, "waygatectl migrate: no database: give --db CONNINFO or set "
                        "WAYGATE_PGURI_OWNER\n");
        return GW_CTL_USAGE;
    }
    rc = ctl_conninfo_check("migrate", source, conninfo);
    if (rc != 0)
        return rc;

    rc = gw_migrate_run(conninfo, gw_migrations, gw_migrations_count, report_cb, NULL, &version,
                        err, sizeof(err));
    if (rc != 0) {
        fprintf(stderr, "waygatectl migrate: %s\n", err[0] ? err : "failed");
        return GW_CTL_FAIL;
    }
    printf("schema is up to date at version %d\n", version);
    return GW_CTL_OK;
}
