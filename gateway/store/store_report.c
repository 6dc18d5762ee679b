/* store_report.c: the SQL of the monthly report and of the incident list (store_report.h says
 * what each number counts), its parsing, the gateway's asynchronous read of it and the CLI's
 * blocking runs. The gateway's role reads audit_record directly and the incident table and
 * suspicious register only through the owner's functions of sql/010_lawful.sql. Invariants:
 * nothing read here is PII; the gateway's counts run in a read-only transaction of their own,
 * never in an audit-writer transaction. */
#include "store_report.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "store_admin.h"
#include "store_admin_int.h"

/* One row: the counts in the order of gw_store_report_parse's table. */
const char gw_store_report_counts_sql[] =
    "SELECT count(*) FILTER (WHERE outcome = 'ok' AND action = 'bulk.request'), "
    "count(*) FILTER (WHERE outcome = 'ok' AND action = 'bulk.approve'), "
    "count(*) FILTER (WHERE outcome = 'ok' AND action = 'bulk.reject'), "
    "count(*) FILTER (WHERE outcome = 'ok' AND action = 'bulk.run'), "
    "count(*) FILTER (WHERE outcome = 'ok' AND action = 'lawful.request'), "
    "count(*) FILTER (WHERE outcome = 'ok' AND action = 'lawful.approve'), "
    "count(*) FILTER (WHERE outcome = 'ok' AND action = 'lawful.reject'), "
    "count(*) FILTER (WHERE outcome = 'ok' AND action = 'lawful.read'), "
    "count(*) FILTER (WHERE outcome = 'ok' AND (action = 'retention.destroy' "
    "OR (action = 'bulk.run' AND detail LIKE 'kind=destroy%'))), "
    "coalesce(sum(count) FILTER (WHERE outcome = 'ok' AND (action = 'retention.destroy' "
    "OR (action = 'bulk.run' AND detail LIKE 'kind=destroy%'))), 0), "
    "count(*) FILTER (WHERE outcome = 'ok' AND action IN ('account.create', 'account.disable', "
    "'account.disable_inactive', 'password.change')), "
    "count(*) FILTER (WHERE outcome = 'ok' AND action IN ('principal.add', "
    "'principal.disable')), "
    "count(*) FILTER (WHERE outcome = 'refused'), "
    "(SELECT report_suspicious()) "
    "FROM audit_record WHERE at_us >= $1::bigint AND at_us < $2::bigint";

const char gw_store_report_incidents_sql[] =
    "SELECT severity, incidents FROM report_incidents(to_timestamp($1::bigint / 1000000.0), "
    "to_timestamp($2::bigint / 1000000.0))";

#define NCOUNTS 14

static uint64_t num(const PGresult *res, int row, int col)
{
    return PQgetisnull(res, row, col) ? 0 : strtoull(PQgetvalue(res, row, col), NULL, 10);
}

int gw_store_report_parse(const PGresult *counts, const PGresult *incidents, struct gw_report *r)
{
    uint64_t *dst[NCOUNTS] = {
        &r->bulk_requested,    &r->bulk_approved,    &r->bulk_rejected,
        &r->bulk_executed,     &r->lawful_requested, &r->lawful_approved,
        &r->lawful_rejected,   &r->lawful_reads,     &r->destruction_records,
        &r->records_destroyed, &r->account_changes,  &r->principal_changes,
        &r->refused,           &r->suspicious,
    };
    int i, sev;

    if (counts == NULL || incidents == NULL || PQntuples(counts) != 1 ||
        PQnfields(counts) != NCOUNTS || PQnfields(incidents) != 2)
        return GW_EINTERNAL;
    for (i = 0; i < NCOUNTS; i++)
        *dst[i] = num(counts, 0, i);
    memset(r->incidents, 0, sizeof(r->incidents));
    for (i = 0; i < PQntuples(incidents); i++) {
        sev = gw_report_sev_index(PQgetvalue(incidents, i, 0));
        if (sev < 0)
            return GW_EINTERNAL;
        r->incidents[sev] = num(incidents, i, 1);
    }
    return 0;
}

const char gw_store_report_snapshot_sql[] =
    "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY";
const char gw_store_report_timeout_sql[] = "SELECT set_config('statement_timeout', $1, true)";

/* SQLSTATE query_canceled: what a statement_timeout raises. */
#define SQLSTATE_CANCELED "57014"

struct gw_store_report_req {
    struct gw_db_req *dbreq;
    struct gw_report *r;
    gw_store_report_cb cb;
    void *arg;
};

static void read_done_cb(void *arg, int err, const struct gw_db_result *res)
{
    struct gw_store_report_req *q = arg;
    gw_store_report_cb cb = q->cb;
    void *cbarg = q->arg;

    if (err == GW_EINTERNAL && res != NULL && res->sqlstate != NULL &&
        strcmp(res->sqlstate, SQLSTATE_CANCELED) == 0)
        err = GW_ETIMEOUT;
    else if (err == 0 && (res == NULL || res->nresults != 4 ||
                          gw_store_report_parse(res->results[2], res->results[3], q->r) != 0))
        err = GW_EINTERNAL;
    else if (err != 0 && err != GW_EUNAVAIL)
        err = GW_EINTERNAL;
    gw_free(q);
    cb(cbarg, err);
}

int gw_store_report_read(struct gw_db *db, struct gw_report *r, uint32_t timeout_ms,
                         gw_store_report_cb cb, void *arg, struct gw_store_report_req **out)
{
    char from[24], to[24], ms[16];
    const char *vals[2] = {from, to}, *tv[1] = {ms};
    struct gw_db_stmt st[4];
    struct gw_store_report_req *q;
    int rc;

    if (out != NULL)
        *out = NULL;
    if (db == NULL || r == NULL || cb == NULL || timeout_ms == 0)
        return GW_EINVAL;
    q = gw_calloc(1, sizeof(*q));
    if (q == NULL)
        return GW_ENOMEM;
    q->r = r;
    q->cb = cb;
    q->arg = arg;
    snprintf(from, sizeof(from), "%" PRId64, r->from_us);
    snprintf(to, sizeof(to), "%" PRId64, r->to_us);
    snprintf(ms, sizeof(ms), "%" PRIu32, timeout_ms);
    st[0] = (struct gw_db_stmt){.sql = gw_store_report_snapshot_sql};
    st[1] = (struct gw_db_stmt){.sql = gw_store_report_timeout_sql, .nparams = 1, .values = tv};
    st[2] = (struct gw_db_stmt){.sql = gw_store_report_counts_sql, .nparams = 2, .values = vals};
    st[3] = (struct gw_db_stmt){.sql = gw_store_report_incidents_sql, .nparams = 2, .values = vals};
    rc = gw_db_exec(db, st, 4, GW_DB_TXN | GW_DB_SLOW, read_done_cb, q, &q->dbreq);
    if (rc != 0) {
        gw_free(q);
        return rc;
    }
    if (out != NULL)
        *out = q;
    return 0;
}

bool gw_store_report_detach(struct gw_store_report_req *req, gw_db_done_cb ended, void *arg)
{
    bool sent = gw_db_rebind(req->dbreq, ended, arg);

    gw_free(req); /* nothing of it is read again: the request's outcome goes to ended alone */
    return sent;
}

static PGresult *run(struct gw_admin *a, const char *sql, int n, const char *const *vals,
                     char *errbuf, size_t errlen)
{
    PGresult *res = PQexecParams(a->pg, sql, n, NULL, vals, NULL, NULL, 0);

    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        (void)gw_admin_refused(res, a, errbuf, errlen);
        PQclear(res);
        return NULL;
    }
    return res;
}

int gw_admin_report(struct gw_admin *a, struct gw_report *r, char *errbuf, size_t errlen)
{
    char from[24], to[24];
    const char *vals[2] = {from, to};
    PGresult *c = NULL, *i = NULL;
    int rc = GW_EINTERNAL;

    snprintf(from, sizeof(from), "%" PRId64, r->from_us);
    snprintf(to, sizeof(to), "%" PRId64, r->to_us);
    if (PQtransactionStatus(a->pg) == PQTRANS_INTRANS &&
        gw_admin_command(a, "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ", errbuf, errlen) != 0)
        goto out;
    c = run(a, gw_store_report_counts_sql, 2, vals, errbuf, errlen);
    if (c == NULL)
        goto out;
    i = run(a, gw_store_report_incidents_sql, 2, vals, errbuf, errlen);
    if (i == NULL)
        goto out;
    rc = gw_store_report_parse(c, i, r);
    if (rc != 0)
        snprintf(errbuf, errlen, "the report's queries answered in an unexpected shape");
out:
    PQclear(c);
    PQclear(i);
    return rc;
}

static const char incidents_sql[] =
    "SELECT id, to_char(occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), "
    "severity, kind, count, coalesce(principal, ''), coalesce(peer, ''), coalesce(branch, ''), "
    "coalesce(detail, ''), coalesce(record_id::text, '') "
    "FROM cli_incident_list(CASE WHEN $1::bigint < 0 THEN NULL "
    "ELSE to_timestamp($1::bigint / 1000000.0) END, $2, $3::integer)";

int gw_admin_incidents_list(struct gw_admin *a, int64_t since_us, const char *severity, long limit,
                            gw_admin_incident_cb cb, void *arg, char *errbuf, size_t errlen)
{
    char since[24], lim[24];
    const char *vals[3] = {since, severity, lim};
    struct gw_admin_incident inc;
    PGresult *res;
    int i;

    snprintf(since, sizeof(since), "%" PRId64, since_us);
    snprintf(lim, sizeof(lim), "%ld", limit);
    res = run(a, incidents_sql, 3, vals, errbuf, errlen);
    if (res == NULL)
        return GW_EINTERNAL;
    for (i = 0; i < PQntuples(res); i++) {
        inc.id = strtoll(PQgetvalue(res, i, 0), NULL, 10);
        inc.occurred_at = PQgetvalue(res, i, 1);
        inc.severity = PQgetvalue(res, i, 2);
        inc.kind = PQgetvalue(res, i, 3);
        inc.count = strtoll(PQgetvalue(res, i, 4), NULL, 10);
        inc.principal = PQgetvalue(res, i, 5);
        inc.peer = PQgetvalue(res, i, 6);
        inc.branch = PQgetvalue(res, i, 7);
        inc.detail = PQgetvalue(res, i, 8);
        inc.record_id = PQgetvalue(res, i, 9);
        cb(arg, &inc);
    }
    PQclear(res);
    return 0;
}
