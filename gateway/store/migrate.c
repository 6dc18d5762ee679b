/* migrate.c: the pure version logic of schema migrations: validating our table and computing
 * which migrations a database needs. No I/O; the libpq runner is migrate_run.c.
 * Invariant: a plan is only produced for a database whose versions are a prefix of ours. */
#include "migrate.h"

#include <stdarg.h>
#include <stdio.h>

static void __attribute__((format(printf, 3, 4)))
msg(char *errbuf, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (errbuf == NULL || errlen == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(errbuf, errlen, fmt, ap);
    va_end(ap);
}

int gw_migrate_check(const struct gw_migration *known, size_t n_known, char *errbuf, size_t errlen)
{
    size_t i;

    if (n_known > 0 && known == NULL) {
        msg(errbuf, errlen, "migration table missing");
        return GW_EINTERNAL;
    }
    for (i = 0; i < n_known; i++) {
        if (known[i].version <= 0 || known[i].name == NULL || known[i].name[0] == '\0' ||
            known[i].sql == NULL) {
            msg(errbuf, errlen, "migration table entry %d is malformed (version %d)", (int)i,
                known[i].version);
            return GW_EINTERNAL;
        }
        if (i > 0 && known[i].version <= known[i - 1].version) {
            msg(errbuf, errlen, "migration versions must strictly increase: %03d follows %03d",
                known[i].version, known[i - 1].version);
            return GW_EINTERNAL;
        }
    }
    return 0;
}

int gw_migrate_newest(const struct gw_migration *known, size_t n_known)
{
    return n_known > 0 && known != NULL ? known[n_known - 1].version : 0;
}

static int is_applied(const int *applied, size_t n_applied, int v)
{
    size_t i;

    for (i = 0; i < n_applied; i++)
        if (applied[i] == v)
            return 1;
    return 0;
}

int gw_migrate_plan(const struct gw_migration *known, size_t n_known, const int *applied,
                    size_t n_applied, size_t *todo, size_t *n_todo, char *errbuf, size_t errlen)
{
    int newest_known, highest_applied = 0;
    size_t i, j, n = 0;
    int rc;

    if (errbuf != NULL && errlen > 0)
        errbuf[0] = '\0';
    if (n_todo == NULL || (n_known > 0 && todo == NULL) || (n_applied > 0 && applied == NULL)) {
        msg(errbuf, errlen, "bad arguments to the migration planner");
        return GW_EINTERNAL;
    }
    *n_todo = 0;
    rc = gw_migrate_check(known, n_known, errbuf, errlen);
    if (rc != 0)
        return rc;
    newest_known = n_known > 0 ? known[n_known - 1].version : 0;

    for (i = 0; i < n_applied; i++)
        if (applied[i] > highest_applied)
            highest_applied = applied[i];
    if (highest_applied > newest_known) {
        msg(errbuf, errlen,
            "database schema is at version %d, newer than this waygatectl knows (%d): upgrade "
            "waygatectl",
            highest_applied, newest_known);
        return GW_EPRECOND;
    }
    for (i = 0; i < n_applied; i++) {
        int found = 0;
        for (j = 0; j < n_known; j++)
            if (known[j].version == applied[i])
                found = 1;
        if (!found) {
            msg(errbuf, errlen,
                "database has migration %03d applied, which this waygatectl does not know",
                applied[i]);
            return GW_EPRECOND;
        }
        for (j = 0; j < i; j++) {
            if (applied[j] == applied[i]) {
                msg(errbuf, errlen, "database records migration %03d twice", applied[i]);
                return GW_EPRECOND;
            }
        }
    }
    for (i = 0; i < n_known; i++) {
        if (is_applied(applied, n_applied, known[i].version))
            continue;
        if (known[i].version < highest_applied) {
            msg(errbuf, errlen,
                "database lacks migration %03d although later migration %03d is applied",
                known[i].version, highest_applied);
            return GW_EPRECOND;
        }
        todo[n++] = i;
    }
    *n_todo = n;
    return 0;
}
