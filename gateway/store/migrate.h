/* migrate.h: the schema migrations (sql/NNN_name.sql, embedded at build time) and the runner's
 * version logic. The plan function is pure; the runner that talks to PostgreSQL is in
 * migrate_run (used by `waygatectl migrate`). */
#ifndef GW_MIGRATE_H
#define GW_MIGRATE_H

#include <stddef.h>

#include "err.h"

struct gw_migration {
    int version;      /* NNN of the file name */
    const char *name; /* file name without .sql */
    const char *sql;  /* the file's text */
    size_t len;
};

extern const struct gw_migration gw_migrations[];
extern const size_t gw_migrations_count;

/* Checks a migration table: versions > 0 and strictly increasing, names and SQL present.
 * Returns 0, or GW_EINTERNAL with a message in errbuf. */
int gw_migrate_check(const struct gw_migration *known, size_t n_known, char *errbuf,
                     size_t errlen) GW_MUST_CHECK;

/* The newest version in known[] (n_known entries, as checked by gw_migrate_check): the schema
 * this build needs (waygated's pool refuses an older one, db.h gw_db_set_schema_min); 0 when
 * n_known is 0. */
int gw_migrate_newest(const struct gw_migration *known, size_t n_known);

/* The pure plan. known: our migrations (checked as by gw_migrate_check); applied: the versions
 * recorded in the database, in any order. On success writes to todo[] (capacity n_known) the
 * indexes into known[] of the migrations to apply, in order, and their count to *n_todo.
 * Refuses with GW_EPRECOND and a message when the database is newer than the newest known
 * version, holds a version we do not know, or lacks a known version below its highest one
 * (a gap); GW_EINTERNAL when known[] itself is malformed. */
int gw_migrate_plan(const struct gw_migration *known, size_t n_known, const int *applied,
                    size_t n_applied, size_t *todo, size_t *n_todo, char *errbuf,
                    size_t errlen) GW_MUST_CHECK;

/* Called by the runner after each migration it applied (committed). said: the primary text of
 * each WARNING the migration raised, for its operator (RAISE WARNING: what it changed that an
 * operator should know), one per line; "" when none. Its NOTICEs are not passed on. */
typedef void (*gw_migrate_report_fn)(void *arg, const struct gw_migration *m, const char *said);

/* The runner (blocking libpq; for the CLI only, never the daemon). Connects with conninfo,
 * takes an advisory lock, creates schema_migrations if absent, checks that every applied
 * migration's SHA-256 matches ours, then applies the plan, each migration and its
 * schema_migrations row in one transaction. Migration files must therefore not contain
 * transaction control or statements that cannot run inside a transaction.
 * *version_out (may be NULL) receives the schema version afterwards.
 * Returns 0; GW_EUNAVAIL (cannot connect), GW_EPRECOND (plan refused or checksum changed),
 * GW_EINTERNAL (an SQL statement failed) or GW_ENOMEM, with one line in errbuf. */
int gw_migrate_run(const char *conninfo, const struct gw_migration *known, size_t n_known,
                   gw_migrate_report_fn report, void *arg, int *version_out, char *errbuf,
                   size_t errlen) GW_MUST_CHECK;

#endif
