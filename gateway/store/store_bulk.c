/* store_bulk.c: bulk_request and destruction SQL (store_bulk.h). Reads run as one transaction of
 * their own, scoped (row-level security) where they touch waybill; writes are only built here and
 * sent by the audit writer with their records. Invariant: a handle is freed exactly once, after
 * its callback or at cancel. */
#include "store_bulk.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "store_int.h"

enum kind { K_COUNT, K_COUNT_REQ, K_LOAD, K_ROWS, K_IDS };

struct gw_store_bulk_req {
    enum kind kind;
    struct gw_db_req *dbreq;
    void *arg;
    union {
        gw_store_bulk_count_cb count;
        gw_store_bulk_request_count_cb count_req;
        gw_store_bulk_load_cb load;
        gw_store_bulk_rows_cb rows;
        gw_store_bulk_ids_cb ids;
    } cb;
};

/* The selection over waybill w by the selector parameters $1..$4 (branch, from, to, ids). */
#define SEL_PARAMS                                                                                 \
    "($1::text IS NULL OR w.origin_branch = $1) AND "                                              \
    "($2::date IS NULL OR w.pickup_day >= $2::date) AND "                                          \
    "($3::date IS NULL OR w.pickup_day <= $3::date) AND "                                          \
    "($4::uuid[] IS NULL OR w.id = ANY($4::uuid[]))"

/* The same by the stored selector of bulk_request b. */
#define SEL_STORED                                                                                 \
    "(b.sel_branch IS NULL OR w.origin_branch = b.sel_branch) AND "                                \
    "(b.sel_from IS NULL OR w.pickup_day >= b.sel_from) AND "                                      \
    "(b.sel_to IS NULL OR w.pickup_day <= b.sel_to) AND "                                          \
    "(b.sel_ids IS NULL OR w.id = ANY(b.sel_ids))"

/* The records a request selects: accepted strictly before the second of time t. accepted_at is
 * the gateway's whole second, so a record accepted in that second may have come after the
 * count: it is left out of the count and of every run alike (store_bulk.h). */
#define BEFORE_SECOND(t) "w.accepted_at < date_trunc('second', " t ")"

/* What a run of bulk_request b selects: its stored selector, frozen at the records its count
 * saw, so that waybills submitted after the request are not released or destroyed under it
 * (bulk_destroy, sql/024, selects the same). */
#define SEL_RUN SEL_STORED " AND " BEFORE_SECOND("b.requested_at")

/* The records of waybill w within the highest security level max (SQL text): bulk_within_level
 * (sql/030), the one level predicate of a bulk request, which bulk_destroy (sql/031) uses too. */
#define WITHIN_LEVEL(max) "bulk_within_level(w.security_level, " max ")"

/* A run's selection narrowed to the records within the lower of $2 (the requester's role's level
 * now, gw_policy_max_level) and the request's max_level (its role's when it was counted): the
 * ones a run may release or destroy, as its count takes them. */
#define RUN_LEVEL WITHIN_LEVEL("least($2::integer, b.max_level)")

/* The count of a new request and its time, which becomes the request's requested_at (text in
 * UTC with microseconds, read back exactly as a timestamptz). */
static const char count_sql[] =
    "SELECT count(*), to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') "
    "FROM waybill w WHERE " SEL_PARAMS
    " AND " BEFORE_SECOND("now()") " AND " WITHIN_LEVEL("$5::integer");

static const char count_run_sql[] =
    "SELECT count(*) FROM waybill w, bulk_request b WHERE b.id = $1::uuid AND " SEL_RUN
    " AND " RUN_LEVEL;

static const char load_sql[] =
    "SELECT id::text, operation, state, requester, requester_role, requester_branch, approver, "
    "purpose, legal_basis, destination, sel_branch, sel_from::text, sel_to::text, "
    "sel_ids::text, record_count, max_level, CASE state WHEN 'approved' THEN expires_at <= now() "
    "WHEN 'pending' THEN requested_at + make_interval(secs => $2::integer) <= now() ELSE false "
    "END, encode(recipient_key, 'hex'), approver_role, floor(extract(epoch FROM requested_at))"
    "::bigint, floor(extract(epoch FROM CASE state WHEN 'pending' THEN requested_at + "
    "make_interval(secs => $2::integer) ELSE expires_at END))::bigint, floor(extract(epoch FROM "
    "decided_at))::bigint FROM bulk_request WHERE id = $1::uuid";

/* sql/048: the expired records no lawful case holds, skipping the rows another transaction has
 * locked (a key batch's): those are destroyed at a later sweep, so the DELETE does not wait. */
static const char ids_sql[] =
    "SELECT id::text FROM retention_expired_ids($1::integer, $2::integer) AS id";

static struct gw_store_bulk_req *req_new(enum kind k, void *arg)
{
    struct gw_store_bulk_req *r = gw_calloc(1, sizeof(*r));

    if (r != NULL) {
        r->kind = k;
        r->arg = arg;
    }
    return r;
}

void gw_store_bulk_cancel(struct gw_store_bulk_req *r)
{
    if (r == NULL)
        return;
    gw_db_cancel(r->dbreq);
    gw_free(r);
}

static int start(struct gw_store *s, struct gw_store_bulk_req *r, const struct gw_db_stmt *st,
                 int n, gw_db_done_cb done, struct gw_store_bulk_req **out)
{
    int rc = gw_store_txn_send(s, st, n, done, r, &r->dbreq);

    if (rc == 0 && out != NULL)
        *out = r;
    return rc;
}

static int fail_err(int err)
{
    return err == GW_EUNAVAIL ? GW_EUNAVAIL : GW_EINTERNAL;
}

/* ---- count ---- */

static void count_done_cb(void *arg, int err, const struct gw_db_result *res)
{
    struct gw_store_bulk_req *r = arg;
    const PGresult *pr = err == 0 ? res->results[1] : NULL;

    r->dbreq = NULL;
    if (err != 0 || PQntuples(pr) != 1)
        r->cb.count(r->arg, err != 0 ? fail_err(err) : GW_EINTERNAL, 0);
    else
        r->cb.count(r->arg, 0, strtoll(PQgetvalue(pr, 0, 0), NULL, 10));
    gw_free(r);
}

static void count_req_done_cb(void *arg, int err, const struct gw_db_result *res)
{
    struct gw_store_bulk_req *r = arg;
    const PGresult *pr = err == 0 ? res->results[1] : NULL;

    r->dbreq = NULL;
    if (err != 0 || PQntuples(pr) != 1 || PQnfields(pr) != 2 || PQgetisnull(pr, 0, 1))
        r->cb.count_req(r->arg, err != 0 ? fail_err(err) : GW_EINTERNAL, 0, NULL);
    else
        r->cb.count_req(r->arg, 0, strtoll(PQgetvalue(pr, 0, 0), NULL, 10), PQgetvalue(pr, 0, 1));
    gw_free(r);
}

int gw_store_bulk_count(struct gw_store *s, const char *scope, const struct gw_bulk_sel *sel,
                        int level, gw_store_bulk_request_count_cb cb, void *arg,
                        struct gw_store_bulk_req **out)
{
    const char *sv[1], *vals[5];
    char lvl[16];
    struct gw_db_stmt st[2];
    struct gw_store_bulk_req *r;

    if (out != NULL)
        *out = NULL;
    if (s == NULL || scope == NULL || sel == NULL || cb == NULL)
        return GW_EINVAL;
    vals[0] = sel->branch;
    vals[1] = sel->from_day;
    vals[2] = sel->to_day;
    vals[3] = sel->ids;
    snprintf(lvl, sizeof(lvl), "%d", level);
    vals[4] = lvl;
    gw_store_scope_stmt(&st[0], sv, scope);
    st[1] = (struct gw_db_stmt){.sql = count_sql, .nparams = 5, .values = vals};
    if ((r = req_new(K_COUNT_REQ, arg)) == NULL)
        return GW_ENOMEM;
    r->cb.count_req = cb;
    return start(s, r, st, 2, count_req_done_cb, out);
}

int gw_store_bulk_count_run(struct gw_store *s, const char *scope, const char *id, int level,
                            gw_store_bulk_count_cb cb, void *arg, struct gw_store_bulk_req **out)
{
    const char *sv[1], *vals[2] = {id, NULL};
    char lvl[16];
    struct gw_db_stmt st[2];
    struct gw_store_bulk_req *r;

    if (out != NULL)
        *out = NULL;
    if (s == NULL || scope == NULL || id == NULL || cb == NULL)
        return GW_EINVAL;
    snprintf(lvl, sizeof(lvl), "%d", level);
    vals[1] = lvl;
    gw_store_scope_stmt(&st[0], sv, scope);
    st[1] = (struct gw_db_stmt){.sql = count_run_sql, .nparams = 2, .values = vals};
    if ((r = req_new(K_COUNT, arg)) == NULL)
        return GW_ENOMEM;
    r->cb.count = cb;
    return start(s, r, st, 2, count_done_cb, out);
}

/* ---- load ---- */

static const char *val(const PGresult *pr, int col)
{
    return PQgetisnull(pr, 0, col) ? NULL : PQgetvalue(pr, 0, col);
}

/* A time read as whole seconds since the Unix epoch; 0 when absent. */
static int64_t seconds(const PGresult *pr, int col)
{
    return PQgetisnull(pr, 0, col) ? 0 : strtoll(PQgetvalue(pr, 0, col), NULL, 10);
}

static void load_done_cb(void *arg, int err, const struct gw_db_result *res)
{
    struct gw_store_bulk_req *r = arg;
    const PGresult *pr = err == 0 ? res->results[0] : NULL;
    struct gw_bulk_row row;

    r->dbreq = NULL;
    if (err != 0) {
        r->cb.load(r->arg, fail_err(err), NULL);
    } else if (PQntuples(pr) != 1 || PQnfields(pr) != 22) {
        r->cb.load(r->arg, PQntuples(pr) == 0 ? GW_ENOTFOUND : GW_EINTERNAL, NULL);
    } else {
        row = (struct gw_bulk_row){
            .id = val(pr, 0),
            .operation = val(pr, 1),
            .state = val(pr, 2),
            .requester = val(pr, 3),
            .requester_role = val(pr, 4),
            .requester_branch = val(pr, 5),
            .approver = val(pr, 6),
            .purpose = val(pr, 7),
            .legal_basis = val(pr, 8),
            .destination = val(pr, 9),
            .sel_branch = val(pr, 10),
            .sel_from = val(pr, 11),
            .sel_to = val(pr, 12),
            .sel_ids = val(pr, 13),
            .record_count = strtoll(PQgetvalue(pr, 0, 14), NULL, 10),
            .max_level = (int)strtol(PQgetvalue(pr, 0, 15), NULL, 10),
            .expired = PQgetvalue(pr, 0, 16)[0] == 't',
            .recipient_key = val(pr, 17),
            .approver_role = val(pr, 18),
            .requested_at = seconds(pr, 19),
            .expires_at = seconds(pr, 20),
            .decided_at = seconds(pr, 21),
        };
        r->cb.load(r->arg, 0, &row);
    }
    gw_free(r);
}

int gw_store_bulk_load(struct gw_store *s, const char *id, uint32_t ttl_s, gw_store_bulk_load_cb cb,
                       void *arg, struct gw_store_bulk_req **out)
{
    const char *vals[2] = {id, NULL};
    char ttl[16];
    struct gw_db_stmt st = {.sql = load_sql, .nparams = 2, .values = vals};
    struct gw_store_bulk_req *r;

    if (out != NULL)
        *out = NULL;
    if (s == NULL || id == NULL || cb == NULL)
        return GW_EINVAL;
    snprintf(ttl, sizeof(ttl), "%" PRIu32, ttl_s);
    vals[1] = ttl;
    if ((r = req_new(K_LOAD, arg)) == NULL)
        return GW_ENOMEM;
    r->cb.load = cb;
    return start(s, r, &st, 1, load_done_cb, out);
}

/* ---- export pages ---- */

static void rows_done_cb(void *arg, int err, const struct gw_db_result *res)
{
    struct gw_store_bulk_req *r = arg;
    struct gw_store_row *rows = NULL;
    const PGresult *pr;
    int i, n;

    r->dbreq = NULL;
    if (err != 0) {
        r->cb.rows(r->arg, fail_err(err), NULL, 0);
        goto out;
    }
    pr = res->results[1];
    n = PQntuples(pr);
    if (n > 0 && (rows = gw_calloc((size_t)n, sizeof(*rows))) == NULL) {
        r->cb.rows(r->arg, GW_ENOMEM, NULL, 0);
        goto out;
    }
    for (i = 0; i < n; i++) {
        if (gw_store_row_get(pr, i, &rows[i]) != 0) {
            r->cb.rows(r->arg, GW_EINTERNAL, NULL, 0);
            goto out;
        }
    }
    r->cb.rows(r->arg, 0, rows, (size_t)n);
out:
    gw_free(rows);
    gw_free(r);
}

int gw_store_bulk_rows(struct gw_store *s, const char *scope, const char *id, int level,
                       const char *after, uint32_t limit, gw_store_bulk_rows_cb cb, void *arg,
                       struct gw_store_bulk_req **out)
{
    struct gw_store_sql b = {.len = 0};
    const char *sv[1], *vals[4];
    char lim[16], lvl[16];
    struct gw_db_stmt st[2];
    struct gw_store_bulk_req *r;

    if (out != NULL)
        *out = NULL;
    if (s == NULL || scope == NULL || id == NULL || cb == NULL || limit == 0)
        return GW_EINVAL;
    gw_store_sql_add(&b, "SELECT ");
    gw_store_read_cols(&b);
    gw_store_sql_add(&b, " FROM waybill w, bulk_request b WHERE b.id = $1::uuid AND " SEL_RUN
                         " AND " RUN_LEVEL " AND ($3::uuid IS NULL OR w.id > $3::uuid) "
                         "ORDER BY w.id LIMIT $4::integer");
    if (b.overflow)
        return GW_ENOMEM;
    snprintf(lim, sizeof(lim), "%" PRIu32, limit);
    snprintf(lvl, sizeof(lvl), "%d", level);
    vals[0] = id;
    vals[1] = lvl;
    vals[2] = after;
    vals[3] = lim;
    gw_store_scope_stmt(&st[0], sv, scope);
    st[1] = (struct gw_db_stmt){.sql = b.buf, .nparams = 4, .values = vals, .result_format = 1};
    if ((r = req_new(K_ROWS, arg)) == NULL)
        return GW_ENOMEM;
    r->cb.rows = cb;
    return start(s, r, st, 2, rows_done_cb, out);
}

/* ---- retention ---- */

static void ids_done_cb(void *arg, int err, const struct gw_db_result *res)
{
    struct gw_store_bulk_req *r = arg;
    const char **ids = NULL;
    const PGresult *pr;
    int i, n;

    r->dbreq = NULL;
    if (err != 0) {
        r->cb.ids(r->arg, fail_err(err), NULL, 0);
        goto out;
    }
    pr = res->results[1];
    n = PQntuples(pr);
    if (n > 0 && (ids = gw_calloc((size_t)n, sizeof(*ids))) == NULL) {
        r->cb.ids(r->arg, GW_ENOMEM, NULL, 0);
        goto out;
    }
    for (i = 0; i < n; i++)
        ids[i] = PQgetvalue(pr, i, 0);
    r->cb.ids(r->arg, 0, ids, (size_t)n);
out:
    gw_free(ids);
    gw_free(r);
}

int gw_store_bulk_expired_ids(struct gw_store *s, uint32_t days, uint32_t limit,
                              gw_store_bulk_ids_cb cb, void *arg, struct gw_store_bulk_req **out)
{
    const char *sv[1], *vals[2];
    char d[16], lim[16];
    struct gw_db_stmt st[2];
    struct gw_store_bulk_req *r;

    if (out != NULL)
        *out = NULL;
    if (s == NULL || cb == NULL || days == 0 || limit == 0)
        return GW_EINVAL;
    snprintf(d, sizeof(d), "%" PRIu32, days);
    snprintf(lim, sizeof(lim), "%" PRIu32, limit);
    vals[0] = d;
    vals[1] = lim;
    gw_store_scope_stmt(&st[0], sv, GW_STORE_SCOPE_ALL);
    st[1] = (struct gw_db_stmt){.sql = ids_sql, .nparams = 2, .values = vals};
    if ((r = req_new(K_IDS, arg)) == NULL)
        return GW_ENOMEM;
    r->cb.ids = cb;
    return start(s, r, st, 2, ids_done_cb, out);
}

/* ---- statements ---- */

static void stmt(struct gw_store_bulk_stmt *b, const char *sql, int n)
{
    b->st = (struct gw_db_stmt){.sql = sql, .nparams = n, .values = b->vals};
}

void gw_store_bulk_scope(struct gw_store_bulk_stmt *b, const char *scope)
{
    b->vals[0] = scope;
    stmt(b, GW_STORE_SCOPE_SQL, 1);
}

static const char insert_sql[] =
    "INSERT INTO bulk_request (id, operation, sel_branch, sel_from, sel_to, sel_ids, purpose, "
    "legal_basis, destination, requester, requester_role, requester_branch, record_count, "
    "requested_at, max_level, recipient_key) VALUES ($1::uuid, $2, $3, $4::date, $5::date, "
    "$6::uuid[], $7, $8, $9, $10, $11, $12, $13::bigint, $14::timestamptz, $15::smallint, "
    "decode($16, 'hex'))";

void gw_store_bulk_insert(struct gw_store_bulk_stmt *b, const struct gw_bulk_new *n)
{
    snprintf(b->num[0], sizeof(b->num[0]), "%" PRId64, n->record_count);
    b->vals[0] = n->id;
    b->vals[1] = n->operation;
    b->vals[2] = n->sel.branch;
    b->vals[3] = n->sel.from_day;
    b->vals[4] = n->sel.to_day;
    b->vals[5] = n->sel.ids;
    b->vals[6] = n->purpose;
    b->vals[7] = n->legal_basis;
    b->vals[8] = n->destination;
    b->vals[9] = n->requester;
    b->vals[10] = n->requester_role;
    b->vals[11] = n->requester_branch;
    b->vals[12] = b->num[0];
    b->vals[13] = n->requested_at;
    snprintf(b->num[1], sizeof(b->num[1]), "%d", n->max_level);
    b->vals[14] = b->num[1];
    b->vals[15] = n->recipient_key;
    stmt(b, insert_sql, 16);
}

/* FOR NO KEY UPDATE, as the decision's or claim's UPDATE locks the row: read committed, a key
 * written by a transaction this one waited for is the one compared. A key must also be the one
 * an ok record $3 of the request (bulk.request for a decision, bulk.approve for a claim) names,
 * as api_bulk.c writes their detail: "kind=OP rcpt=FP", then a space and the selector in a
 * bulk.request's, FP the first 8 bytes of the key's SHA-256 in hex. */
static const char key_sql[] =
    "SELECT 1 / (SELECT count(*) FROM (SELECT 1 FROM bulk_request b WHERE b.id = $1::uuid AND "
    "b.recipient_key IS NOT DISTINCT FROM decode($2, 'hex') AND (b.recipient_key IS NULL OR "
    "EXISTS (SELECT 1 FROM audit_record a WHERE a.action = $3 AND a.approval = b.id::text AND "
    "a.outcome = 'ok' AND starts_with(a.detail || ' ', 'kind=' || b.operation || ' rcpt=' || "
    "left(encode(sha256(b.recipient_key), 'hex'), 16) || ' '))) FOR NO KEY UPDATE OF b) k)";

void gw_store_bulk_key(struct gw_store_bulk_stmt *b, const char *id, const char *recipient_key,
                       bool approved)
{
    b->vals[0] = id;
    b->vals[1] = recipient_key;
    b->vals[2] = approved ? "bulk.approve" : "bulk.request";
    stmt(b, key_sql, 3);
}

/* Fails (division by zero) unless exactly one pending request of another person, stored with
 * the recipient key $7 (hex; NULL: none) the decision's record names, was decided. */
static const char decide_sql[] =
    "WITH u AS (UPDATE bulk_request SET state = $2, approver = $3, approver_role = $4, "
    "decision_comment = $5, decided_at = now(), expires_at = CASE WHEN $2 = 'approved' THEN "
    "now() + make_interval(secs => $6::integer) END WHERE id = $1::uuid AND CASE WHEN state = "
    "'pending' AND requested_at + make_interval(secs => $6::integer) > now() AND requester <> $3 "
    "AND recipient_key IS NOT DISTINCT FROM decode($7, 'hex') "
    "THEN bulk_decider_independent(requester, $3) ELSE false END "
    "RETURNING 1) SELECT 1 / (SELECT count(*) FROM u)";

void gw_store_bulk_decide(struct gw_store_bulk_stmt *b, const char *id, bool approve,
                          const char *approver, const char *approver_role, const char *comment,
                          uint32_t ttl_s, const char *recipient_key)
{
    snprintf(b->num[0], sizeof(b->num[0]), "%" PRIu32, ttl_s);
    b->vals[0] = id;
    b->vals[1] = approve ? "approved" : "rejected";
    b->vals[2] = approver;
    b->vals[3] = approver_role;
    b->vals[4] = comment;
    b->vals[5] = b->num[0];
    b->vals[6] = recipient_key;
    stmt(b, decide_sql, 7);
}

static const char claim_sql[] =
    "WITH u AS (UPDATE bulk_request SET state = 'executed', run_at = now(), export_id = "
    "$3::uuid WHERE id = $1::uuid AND state = 'approved' AND expires_at > now() AND "
    "requester = $2 AND recipient_key IS NOT DISTINCT FROM decode($4, 'hex') RETURNING 1) "
    "SELECT 1 / (SELECT count(*) FROM u)";

void gw_store_bulk_claim(struct gw_store_bulk_stmt *b, const char *id, const char *requester,
                         const char *export_id, const char *recipient_key)
{
    b->vals[0] = id;
    b->vals[1] = requester;
    b->vals[2] = export_id;
    b->vals[3] = recipient_key;
    stmt(b, claim_sql, 4);
}

static const char claimed_sql[] =
    "SELECT 1 / (SELECT count(*) FROM bulk_request WHERE id = $1::uuid AND state = 'executed' "
    "AND export_id = $2::uuid)";

void gw_store_bulk_claimed(struct gw_store_bulk_stmt *b, const char *id, const char *export_id)
{
    b->vals[0] = id;
    b->vals[1] = export_id;
    stmt(b, claimed_sql, 2);
}

/* sql/031_bulk_destroy_levels.sql: checks the request, deletes within the level, fails unless
 * exactly expected rows went. */
static const char destroy_request_sql[] =
    "SELECT bulk_destroy($1::uuid, $2, $3::bigint, $4::integer)";

void gw_store_bulk_destroy_request(struct gw_store_bulk_stmt *b, const char *id,
                                   const char *selector, int64_t expected, int level)
{
    snprintf(b->num[0], sizeof(b->num[0]), "%" PRId64, expected);
    snprintf(b->num[1], sizeof(b->num[1]), "%d", level);
    b->vals[0] = id;
    b->vals[1] = selector;
    b->vals[2] = b->num[0];
    b->vals[3] = b->num[1];
    stmt(b, destroy_request_sql, 4);
}

bool gw_store_bulk_contended(const char *sqlstate)
{
    return sqlstate != NULL && (strcmp(sqlstate, "40P01") == 0 || strcmp(sqlstate, "40001") == 0 ||
                                strcmp(sqlstate, "55P03") == 0);
}

/* sql/009_bulk.sql: every id must be past the retention, or nothing is destroyed. */
static const char destroy_ids_sql[] = "SELECT retention_destroy($1::uuid[], $2::integer, $3, $4)";

void gw_store_bulk_destroy_ids(struct gw_store_bulk_stmt *b, const char *ids, uint32_t days,
                               const char *selector, const char *requester)
{
    snprintf(b->num[0], sizeof(b->num[0]), "%" PRIu32, days);
    b->vals[0] = ids;
    b->vals[1] = b->num[0];
    b->vals[2] = selector;
    b->vals[3] = requester;
    stmt(b, destroy_ids_sql, 4);
}
