/* store_acct_admin.c: waygatectl's SQL on principals, accounts, sessions, admin_log and incidents
 * (store_acct_admin.h), blocking libpq, never the daemon. Invariants: every statement is
 * parameterised; no statement carries a clear password (only scrypt hash, salt, parameters);
 * transaction control is the caller's. */
#include "store_acct_admin.h"

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pq_msg.h"
#include "store_admin_int.h"

#define ADMIN_ROLES "('system_admin', 'security_admin', 'compliance_auditor')"
#define SQLSTATE_UNIQUE "23505"
#define SQLSTATE_LAST_SECADMIN "WA001" /* sql/037_last_security_admin.sql */

/* The value of a nullable text column: NULL for SQL NULL. */
static const char *opt(const PGresult *res, int row, int col)
{
    return PQgetisnull(res, row, col) ? NULL : PQgetvalue(res, row, col);
}

static bool is_true(const PGresult *res, int row, int col)
{
    return !PQgetisnull(res, row, col) && PQgetvalue(res, row, col)[0] == 't';
}

/* The constraint a unique violation names, or "". */
static const char *violated(const PGresult *res, const char *state)
{
    const char *s = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    const char *c = PQresultErrorField(res, PG_DIAG_CONSTRAINT_NAME);

    if (s == NULL || strcmp(s, state) != 0)
        return NULL;
    return c != NULL ? c : "";
}

int gw_admin_begin(struct gw_admin *a, char *errbuf, size_t errlen)
{
    return gw_admin_command(a, "BEGIN", errbuf, errlen);
}

int gw_admin_commit(struct gw_admin *a, char *errbuf, size_t errlen)
{
    return gw_admin_command(a, "COMMIT", errbuf, errlen);
}

void gw_admin_rollback(struct gw_admin *a)
{
    PQclear(PQexec(a->pg, "ROLLBACK"));
}

int gw_admin_xact_lock(struct gw_admin *a, const char *key, char *errbuf, size_t errlen)
{
    const char *values[1] = {key};
    PGresult *res = PQexecParams(a->pg, "SELECT pg_advisory_xact_lock(hashtext($1))", 1, NULL,
                                 values, NULL, NULL, 0);
    int rc = PQresultStatus(res) == PGRES_TUPLES_OK ? 0 : gw_admin_refused(res, a, errbuf, errlen);

    PQclear(res);
    return rc;
}

/* ---- principals ---- */

#define PRINCIPAL_COLS                                                                             \
    "id, name, role, branch, encode(fingerprint, 'hex'), admin, " UTC_TEXT(                        \
        "created_at") ", created_by, " UTC_TEXT("disabled_at") ", disabled_by"

static int principal_rows(struct gw_admin *a, PGresult *res, gw_admin_principal_cb cb, void *arg,
                          char *errbuf, size_t errlen)
{
    struct gw_admin_principal p;

    if (PQresultStatus(res) != PGRES_TUPLES_OK)
        return gw_admin_refused(res, a, errbuf, errlen);
    for (int i = 0; i < PQntuples(res); i++) {
        const char *hex = PQgetvalue(res, i, 4);
        memset(&p, 0, sizeof(p));
        p.id = strtoll(PQgetvalue(res, i, 0), NULL, 10);
        p.name = PQgetvalue(res, i, 1);
        p.role = PQgetvalue(res, i, 2);
        p.branch = opt(res, i, 3);
        if (!gw_pq_hex(hex, p.fingerprint, GW_ADMIN_FP_LEN))
            memset(p.fingerprint, 0, sizeof(p.fingerprint));
        p.admin = is_true(res, i, 5);
        p.created_at = PQgetvalue(res, i, 6);
        p.created_by = PQgetvalue(res, i, 7);
        p.disabled_at = opt(res, i, 8);
        p.disabled_by = opt(res, i, 9);
        cb(arg, &p);
    }
    return 0;
}

int gw_admin_principal_add(struct gw_admin *a, const struct gw_admin_principal *p, long long *id,
                           char *errbuf, size_t errlen)
{
    const char *values[6] = {p->name,   (const char *)p->fingerprint, p->role,
                             p->branch, p->admin ? "true" : "false",  p->created_by};
    const int lengths[6] = {0, GW_ADMIN_FP_LEN, 0, 0, 0, 0};
    const int formats[6] = {0, 1, 0, 0, 0, 0};
    PGresult *res;
    int rc = 0;

    res = PQexecParams(a->pg,
                       "INSERT INTO principal (name, fingerprint, role, branch, admin, created_by) "
                       "VALUES ($1, $2, $3, $4, $5::boolean, $6) RETURNING id",
                       6, NULL, values, lengths, formats, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
        if (violated(res, SQLSTATE_UNIQUE) != NULL) {
            gw_pq_msg(errbuf, errlen, "a principal with this name or certificate exists");
            rc = GW_EEXIST;
        } else {
            rc = gw_admin_refused(res, a, errbuf, errlen);
        }
        goto out;
    }
    *id = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
out:
    PQclear(res);
    return rc;
}

int gw_admin_principal_find(struct gw_admin *a, const char *name, const uint8_t fp[GW_ADMIN_FP_LEN],
                            gw_admin_principal_cb cb, void *arg, char *errbuf, size_t errlen)
{
    const char *values[2] = {name, (const char *)fp};
    const int lengths[2] = {0, GW_ADMIN_FP_LEN};
    const int formats[2] = {0, 1};
    PGresult *res = PQexecParams(a->pg,
                                 "SELECT " PRINCIPAL_COLS " FROM principal "
                                 "WHERE name = $1 OR fingerprint = $2 ORDER BY id",
                                 2, NULL, values, lengths, formats, 0);
    int rc = principal_rows(a, res, cb, arg, errbuf, errlen);

    PQclear(res);
    return rc;
}

int gw_admin_principal_list(struct gw_admin *a, gw_admin_principal_cb cb, void *arg, char *errbuf,
                            size_t errlen)
{
    PGresult *res = PQexec(a->pg, "SELECT " PRINCIPAL_COLS " FROM principal ORDER BY name");
    int rc = principal_rows(a, res, cb, arg, errbuf, errlen);

    PQclear(res);
    return rc;
}

/* Sets disabled_at/by on the row named $1 of table (principal or account) when still enabled,
 * returning its id; or, when it was disabled, its id with already = true. */
static int disable_row(struct gw_admin *a, const char *sql, const char *name, const char *by,
                       const char *reason, bool *already, long long *id, char *errbuf,
                       size_t errlen)
{
    const char *values[3] = {name, by, reason};
    PGresult *res = PQexecParams(a->pg, sql, reason != NULL ? 3 : 2, NULL, values, NULL, NULL, 0);
    int rc = 0;

    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
        rc = gw_admin_refused(res, a, errbuf, errlen);
        if (state != NULL && strcmp(state, SQLSTATE_LAST_SECADMIN) == 0)
            rc = GW_EPRECOND; /* sql/037: the last enabled security_admin */
        goto out;
    }
    if (PQntuples(res) != 1) {
        gw_pq_msg(errbuf, errlen, "no such name");
        rc = GW_ENOTFOUND;
        goto out;
    }
    *id = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
    *already = is_true(res, 0, 1);
out:
    PQclear(res);
    return rc;
}

int gw_admin_principal_disable(struct gw_admin *a, const char *name, const char *by, bool *already,
                               char *errbuf, size_t errlen)
{
    long long id = 0;

    /* the CTE updates an enabled row; the outer query also finds a disabled one */
    return disable_row(a,
                       "WITH d AS (UPDATE principal SET disabled_at = now(), disabled_by = $2 "
                       "WHERE name = $1 AND disabled_at IS NULL RETURNING id) "
                       "SELECT p.id, d.id IS NULL FROM principal p LEFT JOIN d ON d.id = p.id "
                       "WHERE p.name = $1",
                       name, by, NULL, already, &id, errbuf, errlen);
}

/* ---- accounts ---- */

#define ACCOUNT_COLS                                                                                   \
    "id, name, person, role, branch, must_change, failed_count, " UTC_TEXT(                            \
        "pw_set_at") ", " UTC_TEXT("locked_until") ", " UTC_TEXT("created_at") ", "                    \
                                                                               "created_by,"           \
                                                                               " " UTC_TEXT(           \
                                                                                   "last"              \
                                                                                   "_use"              \
                                                                                   "d_"                \
                                                                                   "at") ","           \
                                                                                         " " UTC_TEXT( \
                                                                                             "dis"     \
                                                                                             "abl"     \
                                                                                             "ed_"     \
                                                                                             "at") ", disabled_by, disabled_reason"

static int account_rows(struct gw_admin *a, PGresult *res, gw_admin_account_cb cb, void *arg,
                        char *errbuf, size_t errlen)
{
    struct gw_admin_account acc;

    if (PQresultStatus(res) != PGRES_TUPLES_OK)
        return gw_admin_refused(res, a, errbuf, errlen);
    for (int i = 0; i < PQntuples(res); i++) {
        memset(&acc, 0, sizeof(acc));
        acc.id = strtoll(PQgetvalue(res, i, 0), NULL, 10);
        acc.name = PQgetvalue(res, i, 1);
        acc.person = PQgetvalue(res, i, 2);
        acc.role = PQgetvalue(res, i, 3);
        acc.branch = opt(res, i, 4);
        acc.must_change = is_true(res, i, 5);
        acc.failed_count = strtoll(PQgetvalue(res, i, 6), NULL, 10);
        acc.pw_set_at = opt(res, i, 7);
        acc.locked_until = opt(res, i, 8);
        acc.created_at = opt(res, i, 9);
        acc.created_by = PQgetvalue(res, i, 10);
        acc.last_used_at = opt(res, i, 11);
        acc.disabled_at = opt(res, i, 12);
        acc.disabled_by = opt(res, i, 13);
        acc.disabled_reason = opt(res, i, 14);
        cb(arg, &acc);
    }
    return 0;
}

int gw_admin_account_insert(struct gw_admin *a, const struct gw_admin_account_new *n, long long *id,
                            char *errbuf, size_t errlen)
{
    const char *values[8] = {n->name,
                             n->person,
                             n->role,
                             n->branch,
                             (const char *)n->pw_hash,
                             (const char *)n->pw_salt,
                             n->pw_params,
                             n->created_by};
    const int lengths[8] = {0, 0, 0, 0, sizeof(n->pw_hash), sizeof(n->pw_salt), 0, 0};
    const int formats[8] = {0, 0, 0, 0, 1, 1, 0, 0};
    const char *constraint;
    PGresult *res;
    int rc = 0;

    res = PQexecParams(a->pg,
                       "INSERT INTO account (name, person, role, branch, pw_hash, pw_salt, "
                       "pw_params, must_change, created_by) "
                       "VALUES ($1, $2, $3, $4, $5, $6, $7, true, $8) RETURNING id",
                       8, NULL, values, lengths, formats, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
        constraint = violated(res, SQLSTATE_UNIQUE);
        if (constraint != NULL && strcmp(constraint, "account_one_admin_role_per_person") == 0) {
            gw_pq_msg(errbuf, errlen, "the person already holds an administrator role");
            rc = GW_EPERM;
        } else if (constraint != NULL) {
            gw_pq_msg(errbuf, errlen, "an account with this name exists");
            rc = GW_EEXIST;
        } else {
            rc = gw_admin_refused(res, a, errbuf, errlen);
        }
        goto out;
    }
    *id = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
out:
    PQclear(res);
    return rc;
}

int gw_admin_account_admin_roles(struct gw_admin *a, const char *person, gw_admin_account_cb cb,
                                 void *arg, char *errbuf, size_t errlen)
{
    const char *values[1] = {person};
    PGresult *res = PQexecParams(a->pg,
                                 "SELECT " ACCOUNT_COLS " FROM account WHERE person = $1 "
                                 "AND role IN " ADMIN_ROLES " ORDER BY id",
                                 1, NULL, values, NULL, NULL, 0);
    int rc = account_rows(a, res, cb, arg, errbuf, errlen);

    PQclear(res);
    return rc;
}

int gw_admin_account_count_role(struct gw_admin *a, const char *role, long long *n, char *errbuf,
                                size_t errlen)
{
    const char *values[1] = {role};
    PGresult *res = PQexecParams(a->pg,
                                 "SELECT count(*) FROM account WHERE role = $1 "
                                 "AND disabled_at IS NULL",
                                 1, NULL, values, NULL, NULL, 0);
    int rc = 0;

    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1)
        rc = gw_admin_refused(res, a, errbuf, errlen);
    else
        *n = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
    PQclear(res);
    return rc;
}

int gw_admin_account_list(struct gw_admin *a, const char *name, gw_admin_account_cb cb, void *arg,
                          char *errbuf, size_t errlen)
{
    const char *values[1] = {name};
    PGresult *res = PQexecParams(a->pg,
                                 "SELECT " ACCOUNT_COLS " FROM account "
                                 "WHERE $1::text IS NULL OR name = $1 ORDER BY name",
                                 1, NULL, values, NULL, NULL, 0);
    int rc = account_rows(a, res, cb, arg, errbuf, errlen);

    PQclear(res);
    return rc;
}

int gw_admin_account_disable(struct gw_admin *a, const char *name, const char *by,
                             const char *reason, bool *already, long long *sessions, char *errbuf,
                             size_t errlen)
{
    char idtxt[24];
    const char *values[1] = {idtxt};
    long long id = 0;
    PGresult *res;
    int rc;

    rc = disable_row(a,
                     "WITH d AS (UPDATE account SET disabled_at = now(), disabled_by = $2, "
                     "disabled_reason = $3 WHERE name = $1 AND disabled_at IS NULL RETURNING id) "
                     "SELECT a.id, d.id IS NULL FROM account a LEFT JOIN d ON d.id = a.id "
                     "WHERE a.name = $1",
                     name, by, reason, already, &id, errbuf, errlen);
    if (rc != 0)
        return rc;
    /* every session, also of an account disabled before: none may outlive the disabling */
    snprintf(idtxt, sizeof(idtxt), "%lld", id);
    res = PQexecParams(a->pg, "DELETE FROM session WHERE account_id = $1::bigint", 1, NULL, values,
                       NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_COMMAND_OK)
        rc = gw_admin_refused(res, a, errbuf, errlen);
    else
        *sessions = strtoll(PQcmdTuples(res), NULL, 10);
    PQclear(res);
    return rc;
}

/* The row's old values read under its lock, then the update (which finds the row locked by the
 * same statement). */
static const char *const unlock_sql =
    "WITH old AS (SELECT id, failed_count, coalesce(locked_until > now(), false) AS locked, "
    "CASE WHEN locked_until > now() THEN locked_until END AS until, disabled_at IS NOT NULL AS "
    "disabled FROM account WHERE name = $1 FOR UPDATE), u AS (UPDATE account SET failed_count "
    "= 0, locked_until = NULL WHERE id = (SELECT id FROM old)) SELECT failed_count, "
    "locked, " UTC_TEXT("until") ", disabled FROM old";

int gw_admin_account_unlock(struct gw_admin *a, const char *name, struct gw_admin_unlock *was,
                            char *errbuf, size_t errlen)
{
    const char *values[1] = {name};
    PGresult *res;
    int rc = 0;

    memset(was, 0, sizeof(*was));
    res = PQexecParams(a->pg, unlock_sql, 1, NULL, values, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        rc = gw_admin_refused(res, a, errbuf, errlen);
        goto out;
    }
    if (PQntuples(res) != 1) {
        gw_pq_msg(errbuf, errlen, "no such name");
        rc = GW_ENOTFOUND;
        goto out;
    }
    was->failed_count = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
    was->locked = is_true(res, 0, 1);
    if (opt(res, 0, 2) != NULL)
        snprintf(was->locked_until, sizeof(was->locked_until), "%s", PQgetvalue(res, 0, 2));
    was->disabled = is_true(res, 0, 3);
out:
    PQclear(res);
    return rc;
}

/* ---- admin_log and incidents ---- */

int gw_admin_log(struct gw_admin *a, const struct gw_admin_logrec *r, char *errbuf, size_t errlen)
{
    const char *values[5] = {r->actor, r->action, r->object, r->outcome, r->detail};
    PGresult *res = PQexecParams(a->pg,
                                 "INSERT INTO admin_log (actor, peer, via, action, object, "
                                 "outcome, detail) VALUES ($1, 'local', 'cli', $2, $3, $4, $5)",
                                 5, NULL, values, NULL, NULL, 0);
    int rc = PQresultStatus(res) == PGRES_COMMAND_OK ? 0 : gw_admin_refused(res, a, errbuf, errlen);

    PQclear(res);
    return rc;
}

int gw_admin_incident(struct gw_admin *a, const char *severity, const char *kind,
                      const char *principal, const char *branch, const char *detail, char *errbuf,
                      size_t errlen)
{
    const char *values[5] = {severity, kind, principal, branch, detail};
    /* sql/006_accounts.sql: the CLI's role writes incidents through this function only */
    PGresult *res = PQexecParams(a->pg, "SELECT cli_record_incident($1, $2, $3, $4, $5)", 5, NULL,
                                 values, NULL, NULL, 0);
    int rc = PQresultStatus(res) == PGRES_TUPLES_OK ? 0 : gw_admin_refused(res, a, errbuf, errlen);

    PQclear(res);
    return rc;
}
