/* store_retention_admin.c: waygatectl's statements on the retention floor
 * (store_retention_admin.h). Invariant: a change and its admin_log row are one statement (one
 * transaction); parameters only. */
#include "store_retention_admin.h"

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>

#include "store_admin_int.h"

int gw_admin_floor_get(struct gw_admin *a, gw_admin_floor_cb cb, void *arg, char *errbuf,
                       size_t errlen)
{
    struct gw_admin_floor f;
    PGresult *res;
    int rc = 0;

    res = PQexec(a->pg, "SELECT min_days, set_by, " UTC_TEXT("set_at") " FROM retention_floor");
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
        rc = gw_admin_refused(res, a, errbuf, errlen);
    } else {
        f.min_days = (int32_t)strtol(PQgetvalue(res, 0, 0), NULL, 10);
        f.set_by = PQgetvalue(res, 0, 1);
        f.set_at = PQgetvalue(res, 0, 2);
        cb(arg, &f);
    }
    PQclear(res);
    return rc;
}

int gw_admin_floor_set(struct gw_admin *a, int32_t days, const char *by, int32_t *was, char *errbuf,
                       size_t errlen)
{
    char num[16];
    const char *values[2] = {num, by};
    PGresult *res;
    int rc = 0;

    snprintf(num, sizeof(num), "%d", (int)days);
    res = PQexecParams(a->pg,
                       "WITH old AS (SELECT min_days FROM retention_floor), "
                       "u AS (UPDATE retention_floor SET min_days = $1::integer, set_by = $2, "
                       "set_at = now() RETURNING min_days), "
                       "l AS (INSERT INTO admin_log (actor, via, action, object, outcome, detail) "
                       "SELECT $2, 'cli', 'retention.floor', u.min_days::text, 'ok', "
                       "'was ' || (SELECT min_days FROM old) FROM u RETURNING id) "
                       "SELECT (SELECT min_days FROM old), (SELECT count(*) FROM u), "
                       "(SELECT count(*) FROM l)",
                       2, NULL, values, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1 || PQgetisnull(res, 0, 0) ||
        PQgetvalue(res, 0, 1)[0] != '1')
        rc = gw_admin_refused(res, a, errbuf, errlen);
    else
        *was = (int32_t)strtol(PQgetvalue(res, 0, 0), NULL, 10);
    PQclear(res);
    return rc;
}
