/* store_query.c: the reads and writes of WaybillQuery beyond Get: one page of a Search (keyset
 * paging, newest first, within a scope) and the quota-checked record of a Reveal. Every request
 * sets its scope first (row-level security, sql/007_scope.sql). Invariant: a handle is freed
 * exactly once, after its callback or at cancel. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "db.h"
#include "store.h"
#include "store_int.h"

/* ---- Search ---- */

/* The condition of a key on $1 (and $7, its other suite's blind index). A person's key is matched
 * only on the sides the caller names: a side left out is never compared, so a record is not found
 * by a value its reader may not see. */
static const char *const side_cond[][2] = {
    [GW_STORE_KEY_PHONE] = {"w.sender_phone_bidx IN ($1, $7)",
                            "w.recipient_phone_bidx IN ($1, $7)"},
    [GW_STORE_KEY_ID_NUMBER] = {"w.sender_id_bidx IN ($1, $7)", "w.recipient_id_bidx IN ($1, $7)"},
};

_Static_assert(GW_STORE_BIDX_ALTS == 2, "the key conditions name $1 and $7");

static int key_cond(struct gw_store_sql *b, enum gw_store_key key, unsigned sides)
{
    const unsigned both = GW_STORE_SIDE_SENDER | GW_STORE_SIDE_RECIPIENT;

    switch (key) {
    case GW_STORE_KEY_NUMBER:
        gw_store_sql_add(b, "w.wb_bidx IN ($1, $7)");
        return 0;
    case GW_STORE_KEY_DAY:
        gw_store_sql_add(b, "w.pickup_day = $1::text::date");
        return 0;
    case GW_STORE_KEY_PHONE:
    case GW_STORE_KEY_ID_NUMBER:
        break;
    default:
        return GW_EINVAL;
    }
    if (sides == both)
        gw_store_sql_add(b, "(%s OR %s)", side_cond[key][0], side_cond[key][1]);
    else if (sides == GW_STORE_SIDE_SENDER)
        gw_store_sql_add(b, "%s", side_cond[key][0]);
    else if (sides == GW_STORE_SIDE_RECIPIENT)
        gw_store_sql_add(b, "%s", side_cond[key][1]);
    else
        return GW_EINVAL;
    return 0;
}

/* $1 the key (and $7 its other suite's blind index), $2 the branch, $3 the limit, $4/$5 the
 * keyset position (NULL: first page), $6 the highest security level. The
 * branch condition repeats what row-level security enforces: the statement asks for the branch
 * the caller named, the database shows only the caller's scope. It is leakproof and cheap (text
 * equality against the branch and an array its route lookup makes once, an InitPlan), so
 * PostgreSQL applies it before the row-level security policy, whose custody term calls
 * waybill_custodian for every row the other terms leave: another branch's records under the key
 * are passed over without that call (~20 us each), and the time of an empty page no longer
 * grows with how many of them there are (review: +5-7 ms for a phone of 300 waybills of branch
 * a, searched from branch b). With `dest_region_code IN (SELECT ...)`, a subplan, the policy
 * went first. The level is the policy's
 * (gw_policy_in_scope holds the authenticated record to it again): a record above it is not read,
 * as one that does not exist, and takes no place among the limit's rows. A NULL level is read as
 * 0, as the row's reader does. */
static int search_sql(enum gw_store_key key, unsigned sides, struct gw_store_sql *b)
{
    b->len = 0;
    b->overflow = false;
    gw_store_sql_add(b, "SELECT ");
    gw_store_read_cols(b);
    gw_store_sql_add(b, " FROM waybill w WHERE ");
    if (key_cond(b, key, sides) != 0)
        return GW_EINVAL;
    gw_store_sql_add(b, " AND (w.origin_branch = $2 OR "
                        "w.dest_region_code = ANY (ARRAY(SELECT r.region_code FROM route r WHERE "
                        "r.branch = $2))) AND "
                        "COALESCE(w.security_level, 0) BETWEEN 0 AND $6::smallint AND "
                        "($4::bigint IS NULL OR (w.accepted_at, w.id) < "
                        "(to_timestamp($4::bigint), $5::uuid)) "
                        "ORDER BY w.accepted_at DESC, w.id DESC LIMIT $3::integer");
    return b->overflow ? GW_ENOMEM : 0;
}

static void search_done_cb(void *arg, int err, const struct gw_db_result *res)
{
    struct gw_store_req *r = arg;
    struct gw_store_row *rows = NULL;
    const PGresult *pr;
    int i, n;

    r->dbreq = NULL;
    if (err != 0) {
        r->cb.search(r->arg, err == GW_EUNAVAIL ? GW_EUNAVAIL : GW_EINTERNAL, NULL, 0);
        goto out;
    }
    pr = res->results[1]; /* [0] set the scope */
    n = PQntuples(pr);
    r->store->st.rows_read += (uint64_t)n;
    if (n > 0 && (rows = gw_calloc((size_t)n, sizeof(*rows))) == NULL) {
        r->cb.search(r->arg, GW_ENOMEM, NULL, 0);
        goto out;
    }
    for (i = 0; i < n; i++) {
        if (gw_store_row_get(pr, i, &rows[i]) != 0) {
            r->cb.search(r->arg, GW_EINTERNAL, NULL, 0);
            goto out;
        }
    }
    r->cb.search(r->arg, 0, rows, (size_t)n);
out:
    gw_free(rows);
    gw_store_req_free(r);
}

static void uuid_text(const uint8_t id[GW_STORE_ID_LEN], char out[37])
{
    gw_store_id_text(id, out);
}

int gw_store_search(struct gw_store *s, const struct gw_store_search *q, gw_store_search_cb cb,
                    void *arg, struct gw_store_req **out)
{
    struct gw_store_sql b;
    char limit[16], level[8], at[24], id[37];
    const char *vals[7], *sv[1];
    int lens[7] = {0}, fmts[7] = {0};
    struct gw_db_stmt st[2];
    struct gw_store_req *r;
    int rc;

    if (out != NULL)
        *out = NULL;
    if (s == NULL || q == NULL || cb == NULL || q->scope == NULL || q->scope[0] == '\0' ||
        q->branch == NULL || q->branch[0] == '\0' || q->limit == 0 ||
        q->limit > GW_STORE_SEARCH_MAX || q->max_level < 0 || q->max_level > 3 ||
        (q->key == GW_STORE_KEY_DAY && q->day == NULL))
        return GW_EINVAL;
    rc = search_sql(q->key, q->sides, &b);
    if (rc != 0)
        return rc;
    if (q->key == GW_STORE_KEY_DAY) {
        vals[0] = q->day;
    } else {
        vals[0] = (const char *)q->bidx[0];
        vals[6] = (const char *)q->bidx[1];
        lens[0] = lens[6] = GW_STORE_BIDX_LEN;
        fmts[0] = fmts[6] = 1;
    }
    snprintf(limit, sizeof(limit), "%" PRIu32, q->limit);
    vals[1] = q->branch;
    vals[2] = limit;
    vals[3] = vals[4] = NULL;
    snprintf(level, sizeof(level), "%d", q->max_level);
    vals[5] = level;
    if (q->after) {
        snprintf(at, sizeof(at), "%" PRId64, q->after_at);
        uuid_text(q->after_id, id);
        vals[3] = at;
        vals[4] = id;
    }
    gw_store_scope_stmt(&st[0], sv, q->scope);
    st[1] = (struct gw_db_stmt){.sql = b.buf,
                                .nparams = q->key == GW_STORE_KEY_DAY ? 6 : 7,
                                .values = vals,
                                .lengths = lens,
                                .formats = fmts,
                                .result_format = 1};
    r = gw_store_req_new(s, GW_STORE_RK_SEARCH, arg);
    if (r == NULL)
        return GW_ENOMEM;
    r->cb.search = cb;
    return gw_store_simple_start(r, st, 2, search_done_cb, out);
}

/* ---- Reveal ---- */

/* $1 quota key; $2/$3 the hour's and the day's limit; $4.. the row. Counts the key's reveals in
 * the last hour and since the start of the current UTC day, and inserts only under both limits.
 * Returns (used in the hour, used in the day, the new row's id or NULL). Runs after the advisory
 * lock (previous statement of the same transaction), so its snapshot sees every reveal of this
 * key committed before. */
static const char reveal_sql[] =
    "WITH c AS (SELECT "
    "count(*) FILTER (WHERE at > now() - interval '1 hour') AS h, "
    "count(*) FILTER (WHERE at >= date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE "
    "'UTC') AS d "
    "FROM reveal_log WHERE quota_key = $1 AND at > now() - interval '1 day'), "
    "ins AS (INSERT INTO reveal_log (quota_key, principal, account_id, role, branch, cert, peer, "
    "record_id, field, reason) SELECT $1, $4, $5::bigint, $6, $7, nullif($8, ''), "
    "nullif($9, ''), $10::uuid, $11, $12 FROM c WHERE c.h < $2::bigint AND c.d < $3::bigint "
    "RETURNING id) "
    "SELECT c.h::bigint, c.d::bigint, (SELECT ins.id FROM ins) FROM c";

static const char lock_sql[] = "SELECT pg_advisory_xact_lock(hashtextextended('reveal:' || $1, 0))";

static void reveal_done_cb(void *arg, int err, const struct gw_db_result *res)
{
    struct gw_store_req *r = arg;
    struct gw_store_reveal_result out = {0};
    const PGresult *pr;

    r->dbreq = NULL;
    if (err != 0) {
        r->cb.reveal(r->arg, err == GW_EUNAVAIL ? GW_EUNAVAIL : GW_EINTERNAL, NULL);
        goto out;
    }
    pr = res->results[2]; /* [0] scope, [1] lock */
    if (PQntuples(pr) != 1 || PQnfields(pr) != 3) {
        r->cb.reveal(r->arg, GW_EINTERNAL, NULL);
        goto out;
    }
    out.used_hour = (uint32_t)strtoul(PQgetvalue(pr, 0, 0), NULL, 10);
    out.used_day = (uint32_t)strtoul(PQgetvalue(pr, 0, 1), NULL, 10);
    if (PQgetisnull(pr, 0, 2)) {
        out.hour_hit = out.used_hour >= r->n; /* r->n holds the hour's limit */
        r->cb.reveal(r->arg, GW_ETOOBIG, &out);
        goto out;
    }
    out.seq = strtoll(PQgetvalue(pr, 0, 2), NULL, 10);
    out.used_hour++;
    out.used_day++;
    r->cb.reveal(r->arg, 0, &out);
out:
    gw_store_req_free(r);
}

int gw_store_reveal(struct gw_store *s, const struct gw_store_reveal *rv, gw_store_reveal_cb cb,
                    void *arg, struct gw_store_req **out)
{
    char hour[16], day[16], acct[24], id[37];
    const char *vals[12], *sv[1], *lv[1];
    struct gw_db_stmt st[3];
    struct gw_store_req *r;

    if (out != NULL)
        *out = NULL;
    if (s == NULL || rv == NULL || cb == NULL || rv->scope == NULL || rv->scope[0] == '\0' ||
        rv->quota_key == NULL || rv->principal == NULL || rv->role == NULL || rv->cert == NULL ||
        rv->peer == NULL || rv->field == NULL || rv->reason == NULL)
        return GW_EINVAL;
    snprintf(hour, sizeof(hour), "%" PRIu32, rv->per_hour);
    snprintf(day, sizeof(day), "%" PRIu32, rv->per_day);
    snprintf(acct, sizeof(acct), "%" PRId64, rv->account_id);
    gw_store_id_text(rv->record_id, id);
    vals[0] = rv->quota_key;
    vals[1] = hour;
    vals[2] = day;
    vals[3] = rv->principal;
    vals[4] = rv->account_id > 0 ? acct : NULL;
    vals[5] = rv->role;
    vals[6] = rv->scope;
    vals[7] = rv->cert;
    vals[8] = rv->peer;
    vals[9] = id;
    vals[10] = rv->field;
    vals[11] = rv->reason;
    lv[0] = rv->quota_key;
    gw_store_scope_stmt(&st[0], sv, rv->scope);
    st[1] = (struct gw_db_stmt){.sql = lock_sql, .nparams = 1, .values = lv};
    st[2] = (struct gw_db_stmt){.sql = reveal_sql, .nparams = 12, .values = vals};
    r = gw_store_req_new(s, GW_STORE_RK_REVEAL, arg);
    if (r == NULL)
        return GW_ENOMEM;
    r->cb.reveal = cb;
    r->n = rv->per_hour;
    return gw_store_simple_start(r, st, 3, reveal_done_cb, out);
}
