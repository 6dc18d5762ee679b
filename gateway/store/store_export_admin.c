/* store_export_admin.c: the CLI's reads of the exports that ran and of their requests' audit
 * records (store_export_admin.h). Read-only, one statement each. */
#include "store_export_admin.h"

#include <stdlib.h>
#include <string.h>

#include "store_admin_int.h"

#define UTC(col)                                                                                   \
    "coalesce(to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), '')"

static const char exports_sql[] =
    "SELECT export_id::text, id::text, operation, requester, "
    "requester_role, " UTC("requested_at") ", coalesce(approver, "
                                           "''), "
                                           "coalesce(approver_role, "
                                           "''), " UTC("decided_at") ", " UTC(
                                               "run_at") ", purpose, "
                                                         "legal_"
                                                         "basis, "
                                                         "coalesce("
                                                         "destination"
                                                         ", ''), "
                                                         "record_"
                                                         "count "
                                                         "FROM "
                                                         "bulk_"
                                                         "request "
                                                         "WHERE "
                                                         "export_id "
                                                         "IS NOT "
                                                         "NULL ORDER "
                                                         "BY run_at, "
                                                         "id";

/* The gateway writes every bulk record with approval = the request id (api_bulk.c,
 * api_bulk_run.c); read through the action index. */
static const char records_sql[] =
    "SELECT chain, seq::text, action, outcome, actor, coalesce(role, ''), coalesce(detail, '') "
    "FROM audit_record WHERE action IN ('bulk.request', 'bulk.approve', 'bulk.reject', "
    "'bulk.run') AND approval = $1 ORDER BY at_us, chain, seq";

static int hexval(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* 16 bytes from UUID text. */
static void uuid_bytes(const char *s, uint8_t out[16])
{
    size_t k = 0;

    for (const char *p = s; *p != '\0' && k < 16; p++) {
        if (*p == '-')
            continue;
        out[k++] = (uint8_t)(hexval(p[0]) << 4 | hexval(p[1]));
        p++;
    }
}

int gw_admin_exports(struct gw_admin *a, gw_admin_export_cb cb, void *arg, char *errbuf,
                     size_t errlen)
{
    struct gw_admin_export e;
    PGresult *res = PQexecParams(a->pg, exports_sql, 0, NULL, NULL, NULL, NULL, 0);
    int rc = 0;

    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        rc = gw_admin_refused(res, a, errbuf, errlen);
        goto out;
    }
    for (int i = 0; i < PQntuples(res); i++) {
        memset(&e, 0, sizeof(e));
        e.export_text = PQgetvalue(res, i, 0);
        uuid_bytes(e.export_text, e.export_id);
        e.request_id = PQgetvalue(res, i, 1);
        e.operation = PQgetvalue(res, i, 2);
        e.requester = PQgetvalue(res, i, 3);
        e.requester_role = PQgetvalue(res, i, 4);
        e.requested_at = PQgetvalue(res, i, 5);
        e.approver = PQgetvalue(res, i, 6);
        e.approver_role = PQgetvalue(res, i, 7);
        e.decided_at = PQgetvalue(res, i, 8);
        e.run_at = PQgetvalue(res, i, 9);
        e.purpose = PQgetvalue(res, i, 10);
        e.legal_basis = PQgetvalue(res, i, 11);
        e.destination = PQgetvalue(res, i, 12);
        e.record_count = strtoll(PQgetvalue(res, i, 13), NULL, 10);
        cb(arg, &e);
    }
out:
    PQclear(res);
    return rc;
}

int gw_admin_export_records(struct gw_admin *a, const char *request_id, gw_admin_bulk_rec_cb cb,
                            void *arg, char *errbuf, size_t errlen)
{
    struct gw_admin_bulk_rec r;
    const char *vals[1] = {request_id};
    PGresult *res = PQexecParams(a->pg, records_sql, 1, NULL, vals, NULL, NULL, 0);
    int rc = 0;

    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        rc = gw_admin_refused(res, a, errbuf, errlen);
        goto out;
    }
    for (int i = 0; i < PQntuples(res); i++) {
        memset(&r, 0, sizeof(r));
        r.chain = PQgetvalue(res, i, 0);
        r.seq = strtoll(PQgetvalue(res, i, 1), NULL, 10);
        r.action = PQgetvalue(res, i, 2);
        r.outcome = PQgetvalue(res, i, 3);
        r.actor = PQgetvalue(res, i, 4);
        r.role = PQgetvalue(res, i, 5);
        r.detail = PQgetvalue(res, i, 6);
        cb(arg, &r);
    }
out:
    PQclear(res);
    return rc;
}
