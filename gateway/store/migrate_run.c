/* migrate_run.c: the migration runner on blocking libpq, used only by `waygatectl migrate`
 * (never by the daemon, which must not block its loop). Invariants: one runner at a time
 * (advisory lock); each migration commits together with its schema_migrations row or not at
 * all; an applied migration whose SHA-256 differs from ours stops everything. */
#include "migrate.h"

#include <libpq-fe.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "alloc.h"
#include "conninfo.h"
#include "pq_msg.h"

/* pg_advisory_lock key of the runner: "Waygate\0" read as a big-endian int64. */
#define MIGRATE_LOCK_KEY "6296447238964274432"

static const char *const create_sql = "CREATE TABLE IF NOT EXISTS schema_migrations ("
                                      " version int PRIMARY KEY,"
                                      " name text NOT NULL,"
                                      " checksum bytea NOT NULL,"
                                      " applied_at timestamptz NOT NULL DEFAULT now())";

/* What a migration said for its operator: the primary text of each WARNING it raised, one per
 * line, cut at sizeof(text). NOTICEs (IF NOT EXISTS and the like) are chatter and dropped. */
struct said {
    char text[2048];
    size_t len;
    bool cut;
};

static void notice_cb(void *arg, const PGresult *res)
{
    struct said *s = arg;
    const char *sev = PQresultErrorField(res, PG_DIAG_SEVERITY_NONLOCALIZED);
    const char *msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
    size_t n;

    if (sev == NULL || strcmp(sev, "WARNING") != 0 || msg == NULL)
        return;
    n = strlen(msg);
    if (s->len + n + 2 > sizeof(s->text)) {
        s->cut = true;
        return;
    }
    memcpy(s->text + s->len, msg, n);
    s->len += n;
    s->text[s->len++] = '\n';
    s->text[s->len] = '\0';
}

/* SHA-256 of the migration's text, as lowercase hex (65 bytes with NUL). */
static int sha256_hex(const struct gw_migration *m, char hex[65])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    unsigned int i;

    if (EVP_Digest(m->sql, m->len, md, &mdlen, EVP_sha256(), NULL) != 1 || mdlen != 32)
        return GW_ECRYPTO;
    for (i = 0; i < mdlen; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    return 0;
}

/* Runs one statement that returns no rows. */
static int exec_cmd(PGconn *conn, const char *sql, const char *what, char *errbuf, size_t errlen)
{
    PGresult *res = PQexec(conn, sql);
    int rc = 0;

    if (PQresultStatus(res) != PGRES_COMMAND_OK && PQresultStatus(res) != PGRES_TUPLES_OK) {
        gw_pq_msg(errbuf, errlen, "%s failed: %s", what, PQerrorMessage(conn));
        rc = GW_EINTERNAL;
    }
    PQclear(res);
    return rc;
}

/* Applies one migration and records it, in one transaction. */
static int apply_one(PGconn *conn, const struct gw_migration *m, char *errbuf, size_t errlen)
{
    char hex[65];
    char ver[16];
    const char *params[3];
    PGresult *res = NULL;
    int rc;

    rc = sha256_hex(m, hex);
    if (rc != 0) {
        gw_pq_msg(errbuf, errlen, "migration %03d: cannot compute its checksum", m->version);
        return rc;
    }
    snprintf(ver, sizeof(ver), "%d", m->version);
    rc = exec_cmd(conn, "BEGIN", "BEGIN", errbuf, errlen);
    if (rc != 0)
        return rc;
    res = PQexec(conn, m->sql);
    if (PQresultStatus(res) != PGRES_COMMAND_OK && PQresultStatus(res) != PGRES_TUPLES_OK &&
        PQresultStatus(res) != PGRES_EMPTY_QUERY) {
        gw_pq_msg(errbuf, errlen, "migration %03d (%s) failed: %s", m->version, m->name,
                  PQerrorMessage(conn));
        rc = GW_EINTERNAL;
        goto fail;
    }
    PQclear(res);
    params[0] = ver;
    params[1] = m->name;
    params[2] = hex;
    res = PQexecParams(conn,
                       "INSERT INTO schema_migrations (version, name, checksum)"
                       " VALUES ($1::int, $2::text, decode($3::text, 'hex'))",
                       3, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        gw_pq_msg(errbuf, errlen, "migration %03d: recording it failed: %s", m->version,
                  PQerrorMessage(conn));
        rc = GW_EINTERNAL;
        goto fail;
    }
    PQclear(res);
    res = NULL;
    return exec_cmd(conn, "COMMIT", "COMMIT", errbuf, errlen);
fail:
    PQclear(res);
    res = PQexec(conn, "ROLLBACK");
    PQclear(res);
    return rc;
}

int gw_migrate_run(const char *conninfo, const struct gw_migration *known, size_t n_known,
                   gw_migrate_report_fn report, void *arg, int *version_out, char *errbuf,
                   size_t errlen)
{
    PGconn *conn = NULL;
    PGresult *res = NULL;
    struct said said = {.len = 0};
    int *applied = NULL;
    size_t *todo = NULL;
    size_t n_applied = 0, n_todo = 0, i, j;
    int rc, highest = 0;

    if (errbuf != NULL && errlen > 0)
        errbuf[0] = '\0';
    rc = gw_migrate_check(known, n_known, errbuf, errlen);
    if (rc != 0)
        return rc;
    if (conninfo == NULL) {
        gw_pq_msg(errbuf, errlen, "no database connection string given");
        return GW_EINVAL;
    }
    if (gw_conninfo_check(conninfo) == GW_CONNINFO_PASSWORD) {
        gw_pq_msg(errbuf, errlen,
                  "the connection string must not contain a password: use a "
                  "passfile (passfile=, PGPASSFILE or ~/.pgpass)");
        return GW_EINVAL;
    }

    conn = PQconnectdb(conninfo);
    if (conn == NULL) {
        gw_pq_msg(errbuf, errlen, "cannot connect to the database: out of memory");
        return GW_ENOMEM;
    }
    if (PQstatus(conn) != CONNECTION_OK) {
        gw_pq_msg(errbuf, errlen, "cannot connect to the database: %s", PQerrorMessage(conn));
        rc = GW_EUNAVAIL;
        goto out;
    }
    PQsetNoticeReceiver(conn, notice_cb, &said);

    rc = exec_cmd(conn, "SELECT pg_advisory_lock(" MIGRATE_LOCK_KEY ")",
                  "taking the migration lock", errbuf, errlen);
    if (rc != 0)
        goto out;
    rc = exec_cmd(conn, create_sql, "creating schema_migrations", errbuf, errlen);
    if (rc != 0)
        goto out;

    res = PQexec(conn, "SELECT version, encode(checksum, 'hex') FROM schema_migrations"
                       " ORDER BY version");
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        gw_pq_msg(errbuf, errlen, "reading schema_migrations failed: %s", PQerrorMessage(conn));
        rc = GW_EINTERNAL;
        goto out;
    }
    n_applied = (size_t)PQntuples(res);
    applied = gw_calloc(n_applied ? n_applied : 1, sizeof(*applied));
    todo = gw_calloc(n_known ? n_known : 1, sizeof(*todo));
    if (applied == NULL || todo == NULL) {
        gw_pq_msg(errbuf, errlen, "out of memory");
        rc = GW_ENOMEM;
        goto out;
    }
    for (i = 0; i < n_applied; i++) {
        applied[i] = atoi(PQgetvalue(res, (int)i, 0));
        if (applied[i] > highest)
            highest = applied[i];
    }

    rc = gw_migrate_plan(known, n_known, applied, n_applied, todo, &n_todo, errbuf, errlen);
    if (rc != 0)
        goto out;

    /* every applied migration must be byte-for-byte the one we carry */
    for (i = 0; i < n_applied; i++) {
        for (j = 0; j < n_known; j++) {
            char hex[65];
            if (known[j].version != applied[i])
                continue;
            rc = sha256_hex(&known[j], hex);
            if (rc != 0) {
                gw_pq_msg(errbuf, errlen, "migration %03d: cannot compute its checksum",
                          known[j].version);
                goto out;
            }
            if (strcmp(hex, PQgetvalue(res, (int)i, 1)) != 0) {
                gw_pq_msg(errbuf, errlen, "migration %03d was changed after it was applied",
                          known[j].version);
                rc = GW_EPRECOND;
                goto out;
            }
        }
    }
    PQclear(res);
    res = NULL;

    for (i = 0; i < n_todo; i++) {
        const struct gw_migration *m = &known[todo[i]];
        said.len = 0;
        said.text[0] = '\0';
        said.cut = false;
        rc = apply_one(conn, m, errbuf, errlen);
        if (rc != 0)
            goto out;
        highest = m->version;
        if (said.cut && said.len + sizeof("(more warnings cut)\n") <= sizeof(said.text)) {
            memcpy(said.text + said.len, "(more warnings cut)\n", sizeof("(more warnings cut)\n"));
            said.len += sizeof("(more warnings cut)\n") - 1;
        }
        if (report != NULL)
            report(arg, m, said.text);
    }
    if (version_out != NULL)
        *version_out = highest;

    res = PQexec(conn, "SELECT pg_advisory_unlock(" MIGRATE_LOCK_KEY ")");
out:
    PQclear(res);
    PQfinish(conn); /* ends the session, which also releases the advisory lock */
    gw_free(applied);
    gw_free(todo);
    return rc;
}
