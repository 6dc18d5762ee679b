/* store_routes.c: waygatectl's statements on the routing table (store_routes.h). Invariant: every
 * change and its admin_log row are one statement (one transaction); parameters only. */
#include "store_routes.h"

#include <libpq-fe.h>
#include <stdlib.h>
#include <string.h>

#include "pq_msg.h"
#include "store_admin_int.h"

int gw_admin_route_set(struct gw_admin *a, const char *region, const char *branch, const char *by,
                       char *errbuf, size_t errlen)
{
    PGconn *pg = gw_admin_conn(a);
    const char *values[3] = {region, branch, by};
    PGresult *res;
    int rc = 0;

    res = PQexecParams(pg,
                       "WITH old AS (SELECT branch FROM route WHERE region_code = $1), "
                       "r AS (INSERT INTO route (region_code, branch, created_by) "
                       "VALUES ($1, $2, $3) ON CONFLICT (region_code) DO UPDATE SET "
                       "branch = EXCLUDED.branch, created_at = now(), "
                       "created_by = EXCLUDED.created_by RETURNING region_code, branch), "
                       "l AS (INSERT INTO admin_log (actor, via, action, object, outcome, detail) "
                       "SELECT $3, 'cli', 'routes.add', r.region_code, 'ok', 'branch ' || "
                       "r.branch || coalesce(' (was ' || (SELECT branch FROM old) || ')', '') "
                       "FROM r RETURNING id) "
                       "SELECT (SELECT count(*) FROM r), (SELECT count(*) FROM l)",
                       3, NULL, values, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1)
        rc = gw_pq_refused(pg, res, errbuf, errlen);
    PQclear(res);
    return rc;
}

int gw_admin_route_remove(struct gw_admin *a, const char *region, const char *by, char *errbuf,
                          size_t errlen)
{
    PGconn *pg = gw_admin_conn(a);
    const char *values[2] = {region, by};
    PGresult *res;
    int rc = 0;

    res = PQexecParams(pg,
                       "WITH d AS (DELETE FROM route WHERE region_code = $1 "
                       "RETURNING region_code, branch), "
                       "l AS (INSERT INTO admin_log (actor, via, action, object, outcome, detail) "
                       "SELECT $2, 'cli', 'routes.remove', d.region_code, 'ok', 'branch ' || "
                       "d.branch FROM d RETURNING id) "
                       "SELECT (SELECT count(*) FROM d), (SELECT count(*) FROM l)",
                       2, NULL, values, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1)
        rc = gw_pq_refused(pg, res, errbuf, errlen);
    else if (strcmp(PQgetvalue(res, 0, 0), "0") == 0) {
        gw_pq_msg(errbuf, errlen, "no route for this region code");
        rc = GW_ENOTFOUND;
    }
    PQclear(res);
    return rc;
}

int gw_admin_route_list(struct gw_admin *a, gw_admin_route_cb cb, void *arg, char *errbuf,
                        size_t errlen)
{
    PGconn *pg = gw_admin_conn(a);
    struct gw_admin_route r;
    PGresult *res;
    int i, rc = 0;

    res = PQexec(pg, "SELECT region_code, branch, created_by, " UTC_TEXT(
                         "created_at") " FROM route ORDER BY region_code");
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        rc = gw_pq_refused(pg, res, errbuf, errlen);
        goto out;
    }
    for (i = 0; i < PQntuples(res); i++) {
        r.region = PQgetvalue(res, i, 0);
        r.branch = PQgetvalue(res, i, 1);
        r.created_by = PQgetvalue(res, i, 2);
        r.created_at = PQgetvalue(res, i, 3);
        cb(arg, &r);
    }
out:
    PQclear(res);
    return rc;
}
