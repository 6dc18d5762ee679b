/* store_outbox_admin.c: waygatectl's statements on the outbox (store_outbox_admin.h), as the admin
 * role (sql/012_outbox.sql grants it SELECT and the columns a retry changes). Invariant:
 * parameters only; a retry changes only a row parked on its own (and, through sql/044's trigger,
 * the rows parked behind it) and says which one. */
#include "store_outbox_admin.h"

#include <libpq-fe.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pq_msg.h"
#include "store_admin_int.h"

static long long num(const PGresult *res, int row, int col)
{
    return PQgetisnull(res, row, col) ? 0 : strtoll(PQgetvalue(res, row, col), NULL, 10);
}

int gw_admin_outbox_status(struct gw_admin *a, struct gw_admin_outbox_status *out, char *errbuf,
                           size_t errlen)
{
    PGresult *res;
    int rc = 0;

    memset(out, 0, sizeof(*out));
    res = PQexec(a->pg,
                 "SELECT count(*), count(*) FILTER (WHERE parked_at IS NOT NULL), "
                 "count(*) FILTER (WHERE parked_behind IS NOT NULL), "
                 "count(*) FILTER (WHERE parked_at IS NULL AND lease_until > now()), "
                 "count(*) FILTER (WHERE parked_at IS NULL AND coalesce(lease_until, "
                 "'-infinity') <= now() AND next_at > now()), "
                 "count(*) FILTER (WHERE parked_at IS NULL AND coalesce(lease_until, "
                 "'-infinity') <= now() AND next_at <= now()), "
                 "coalesce((extract(epoch FROM now() - min(enqueued_at) FILTER (WHERE parked_at "
                 "IS NULL)) * 1000)::bigint, 0), " UTC_TEXT(
                     "min(enqueued_at) FILTER (WHERE parked_at IS NULL)") ", "
                                                                          "coalesce(max(attempts), "
                                                                          "0), count(*) FILTER "
                                                                          "(WHERE parked_at IS "
                                                                          "NULL AND last_error "
                                                                          "LIKE 'breaker open:%') "
                                                                          "FROM outbox");
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
        rc = gw_admin_refused(res, a, errbuf, errlen);
        goto out;
    }
    out->depth = num(res, 0, 0);
    out->parked = num(res, 0, 1);
    out->behind = num(res, 0, 2);
    out->leased = num(res, 0, 3);
    out->waiting = num(res, 0, 4);
    out->ready = num(res, 0, 5);
    out->oldest_ms = num(res, 0, 6);
    snprintf(out->oldest_at, sizeof(out->oldest_at), "%s",
             PQgetisnull(res, 0, 7) ? "" : PQgetvalue(res, 0, 7));
    out->max_attempts = num(res, 0, 8);
    out->held = num(res, 0, 9);
out:
    PQclear(res);
    return rc;
}

int gw_admin_outbox_parked(struct gw_admin *a, long limit, gw_admin_outbox_parked_cb cb, void *arg,
                           char *errbuf, size_t errlen)
{
    char lim[24];
    const char *values[1] = {lim};
    struct gw_admin_outbox_parked p;
    PGresult *res;
    int i, rc = 0;

    snprintf(lim, sizeof(lim), "%ld", limit);
    res = PQexecParams(a->pg,
                       "SELECT id, delivery_id::text, CASE kind WHEN 1 THEN 'waybill' ELSE 'scan' "
                       "END, waybill_id::text, coalesce(scan_id::text, ''), attempts, " UTC_TEXT(
                           "enqueued_at") ", " UTC_TEXT("parked_at") ", coalesce(park_reason, '') "
                                                                     "FROM outbox WHERE parked_at "
                                                                     "IS NOT NULL ORDER BY id "
                                                                     "LIMIT $1::bigint",
                       1, NULL, values, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        rc = gw_admin_refused(res, a, errbuf, errlen);
        goto out;
    }
    for (i = 0; i < PQntuples(res); i++) {
        p.id = num(res, i, 0);
        p.delivery_id = PQgetvalue(res, i, 1);
        p.kind = PQgetvalue(res, i, 2);
        p.record_id = PQgetvalue(res, i, 3);
        p.scan_id = PQgetvalue(res, i, 4);
        p.attempts = num(res, i, 5);
        p.enqueued_at = PQgetvalue(res, i, 6);
        p.parked_at = PQgetvalue(res, i, 7);
        p.reason = PQgetvalue(res, i, 8);
        cb(arg, &p);
    }
out:
    PQclear(res);
    return rc;
}

/* id is all digits (an outbox id) or a UUID (a delivery id): which column to match. */
static int id_form(const char *id, bool *is_uuid)
{
    size_t n = strlen(id), i;

    if (n >= 1 && n <= 18 && strspn(id, "0123456789") == n) {
        *is_uuid = false;
        return 0;
    }
    if (n != 36)
        return GW_EINVAL;
    for (i = 0; i < n; i++) {
        bool dash = i == 8 || i == 13 || i == 18 || i == 23;

        if (dash ? id[i] != '-' : strchr("0123456789abcdefABCDEF", id[i]) == NULL)
            return GW_EINVAL;
    }
    *is_uuid = true;
    return 0;
}

int gw_admin_outbox_retry(struct gw_admin *a, const char *id, struct gw_admin_outbox_retried *out,
                          char *errbuf, size_t errlen)
{
    const char *values[2];
    bool is_uuid = false;
    PGresult *res;
    int rc;

    memset(out, 0, sizeof(*out));
    if (id == NULL || id_form(id, &is_uuid) != 0)
        return GW_EINVAL;
    values[0] = is_uuid ? NULL : id;
    values[1] = is_uuid ? id : NULL;
    /* old: the row as it was (parked or not, behind another or not); upd: unparked only if it
     * was parked on its own, which unparks the rows parked behind it (sql/044's trigger); the
     * count of those is read before the update */
    res = PQexecParams(a->pg,
                       "WITH old AS (SELECT id, parked_at IS NOT NULL AS parked, parked_behind "
                       "FROM outbox WHERE id = $1::bigint OR delivery_id = $2::uuid FOR UPDATE), "
                       "upd AS (UPDATE outbox o SET parked_at = NULL, park_reason = NULL, "
                       "next_at = '-infinity', lease_owner = NULL, lease_until = NULL "
                       "FROM old WHERE o.id = old.id AND old.parked AND old.parked_behind IS NULL "
                       "RETURNING o.id) "
                       "SELECT old.id, old.parked, coalesce(old.parked_behind, 0), "
                       "(SELECT count(*) FROM outbox b WHERE b.parked_behind = old.id) FROM old",
                       2, NULL, values, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        rc = gw_admin_refused(res, a, errbuf, errlen);
        goto out;
    }
    if (PQntuples(res) == 0) {
        rc = GW_ENOTFOUND;
        goto out;
    }
    out->id = num(res, 0, 0);
    out->behind = num(res, 0, 2);
    out->followers = num(res, 0, 3);
    rc = PQgetvalue(res, 0, 1)[0] == 't' && out->behind == 0 ? 0 : GW_EPRECOND;
out:
    PQclear(res);
    return rc;
}

int gw_admin_outbox_retry_all(struct gw_admin *a, const char *prefix, long limit,
                              struct gw_admin_outbox_retried_all *out, char *errbuf, size_t errlen)
{
    char lim[24];
    const char *values[2] = {prefix, lim};
    PGresult *res;
    int rc = 0;

    memset(out, 0, sizeof(*out));
    if (limit < 1 || limit > GW_ADMIN_OUTBOX_RETRY_MAX)
        return GW_EINVAL;
    snprintf(lim, sizeof(lim), "%ld", limit);
    /* pick: the oldest parked on their own that match, locked. Its own WHERE holds the
     * conditions, and upd's again: a row another retry unparked (and a forwarder then leased)
     * while pick waited for its lock is checked again on its newest version and left out, its
     * lease kept. The statement's snapshot is the one before the update, so the followers
     * (unparked by sql/044's trigger) and the matching rows (m) are counted as they were. */
    res = PQexecParams(a->pg,
                       "WITH m AS (SELECT id FROM outbox WHERE parked_at IS NOT NULL AND "
                       "parked_behind IS NULL AND ($1::text IS NULL OR left(park_reason, "
                       "length($1::text)) = $1::text)), "
                       "pick AS (SELECT id FROM outbox WHERE parked_at IS NOT NULL AND "
                       "parked_behind IS NULL AND ($1::text IS NULL OR left(park_reason, "
                       "length($1::text)) = $1::text) ORDER BY id LIMIT $2::bigint FOR UPDATE), "
                       "upd AS (UPDATE outbox o SET parked_at = NULL, park_reason = NULL, "
                       "next_at = '-infinity', lease_owner = NULL, lease_until = NULL FROM pick "
                       "WHERE o.id = pick.id AND o.parked_at IS NOT NULL AND o.parked_behind IS "
                       "NULL RETURNING o.id) "
                       "SELECT (SELECT count(*) FROM upd), (SELECT coalesce(min(id), 0) FROM upd), "
                       "(SELECT coalesce(max(id), 0) FROM upd), (SELECT count(*) FROM outbox b "
                       "WHERE b.parked_behind IN (SELECT id FROM upd)), (SELECT count(*) FROM m)",
                       2, NULL, values, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
        rc = gw_admin_refused(res, a, errbuf, errlen);
        goto out;
    }
    out->retried = num(res, 0, 0);
    out->first = num(res, 0, 1);
    out->last = num(res, 0, 2);
    out->followers = num(res, 0, 3);
    out->left = num(res, 0, 4) - out->retried;
out:
    PQclear(res);
    return rc;
}
