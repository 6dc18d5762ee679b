/* kek_wrap.c: the lease of data-key wraps under a KEK version (kek_wrap.h). Invariants: a lease
 * is read as granted only from a row whose numbers parse and grant at least one wrap; the CLI's
 * lease is its own statement on a connection in autocommit, never inside a batch's transaction,
 * so a rolled-back batch still counts the wraps it may have made. */
#include "kek_wrap.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "pq_msg.h"
#include "store_admin_int.h"

static int parse_u64(const char *s, uint64_t *v)
{
    char *end = NULL;
    if (s[0] < '0' || s[0] > '9')
        return -1;
    *v = strtoull(s, &end, 10);
    return *end == '\0' ? 0 : -1;
}

int gw_kek_wrap_read(const PGresult *res, uint64_t *granted, uint64_t *count)
{
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1 || PQnfields(res) != 2 ||
        PQgetisnull(res, 0, 0) || PQgetisnull(res, 0, 1) ||
        parse_u64(PQgetvalue(res, 0, 0), granted) != 0 ||
        parse_u64(PQgetvalue(res, 0, 1), count) != 0 || *granted == 0)
        return GW_EINTERNAL;
    return 0;
}

static bool undefined(const PGresult *res)
{
    const char *st = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    return st != NULL && (strcmp(st, "42883") == 0 || strcmp(st, "42P01") == 0);
}

int gw_admin_wrap_cover(struct gw_admin *a, int suite, uint32_t version, uint64_t n, char *errbuf,
                        size_t errlen)
{
    uint64_t granted = 0;
    char ss[16], vs[16], ns[24], ls[24];
    const char *params[4] = {ss, vs, ns, ls};
    uint64_t count;
    PGresult *res;
    const char *st;
    int rc = 0;

    snprintf(ss, sizeof ss, "%d", suite);
    snprintf(vs, sizeof vs, "%" PRIu32, version);
    snprintf(ns, sizeof ns, "%" PRIu64, n);
    snprintf(ls, sizeof ls, "%llu", GW_KEK_WRAP_LIMIT_DEFAULT);
    res = PQexecParams(a->pg, GW_KEK_WRAP_LEASE_WHOLE_SQL, 4, NULL, params, NULL, NULL, 0);
    st = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        rc = gw_pq_refused(a->pg, res, errbuf, errlen);
        if (st != NULL && strcmp(st, GW_KEK_WRAP_AT_LIMIT) == 0)
            rc = GW_EPRECOND;
        else if (undefined(res))
            gw_pq_msg(errbuf, errlen,
                      "the database has no kek_wrap_lease (sql/050_kek_wrap_lease.sql): run "
                      "'waygatectl migrate' first");
    } else if (gw_kek_wrap_read(res, &granted, &count) != 0 || granted != n) {
        gw_pq_msg(errbuf, errlen, "kek_wrap_lease answered an unexpected row");
        rc = GW_EINTERNAL;
    }
    PQclear(res);
    return rc;
}

int gw_admin_wrap_counts(struct gw_admin *a, struct gw_admin_wrap_count **out, size_t *n,
                         char *errbuf, size_t errlen)
{
    struct gw_admin_wrap_count *v = NULL;
    PGresult *res;
    int rows, rc = 0;

    *out = NULL;
    *n = 0;
    res = PQexec(a->pg, "SELECT suite, version, count, wrap_limit FROM kek_wrap ORDER BY 1, 2");
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        rc = undefined(res) ? GW_EPRECOND : gw_pq_refused(a->pg, res, errbuf, errlen);
        goto out;
    }
    rows = PQntuples(res);
    if (rows > 0 && (v = gw_calloc((size_t)rows, sizeof(*v))) == NULL) {
        gw_pq_msg(errbuf, errlen, "out of memory");
        rc = GW_ENOMEM;
        goto out;
    }
    for (int i = 0; i < rows; i++) {
        v[i].suite = (int)strtol(PQgetvalue(res, i, 0), NULL, 10);
        v[i].version = (uint32_t)strtoul(PQgetvalue(res, i, 1), NULL, 10);
        v[i].leased = strtoll(PQgetvalue(res, i, 2), NULL, 10);
        v[i].limit = strtoll(PQgetvalue(res, i, 3), NULL, 10);
    }
    *out = v;
    *n = (size_t)rows;
out:
    PQclear(res);
    return rc;
}
