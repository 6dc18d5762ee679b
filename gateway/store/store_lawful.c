/* store_lawful.c: lawful access in SQL (store_lawful.h): the statements of a case's registration,
 * decision and read check, built for the audit writer, and the lawful read under the scope
 * 'lawful:<account id>'. Invariant: a read handle is freed exactly once, after its callback or
 * at cancel. */
#include "store_lawful.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "store_int.h"

static const char case_sql[] =
    "INSERT INTO lawful_case (id, requester_account, requester, agency, officer, case_ref, "
    "legal_document_ref, fields, waybills) VALUES ($1::uuid, $2::bigint, $3, $4, $5, $6, $7, "
    "$8::text[], $9::integer)";
static const char items_sql[] = "INSERT INTO lawful_case_item (case_id, wb_bidx) SELECT DISTINCT "
                                "$1::uuid, decode(h, 'hex') FROM unnest($2::text[]) h";
static const char decide_sql[] =
    "SELECT lawful_case_decide($1::uuid, $2::bigint, $3, $4::boolean, $5, "
    "to_timestamp($6::bigint), $7::bigint)";
static const char decidable_sql[] = "SELECT lawful_case_decidable($1::uuid, $2::bigint, "
                                    "$3::boolean, to_timestamp($4::bigint), $5::bigint)";
static const char load_sql[] =
    "SELECT agency, officer, case_ref, legal_document_ref, array_to_string(fields, ','), "
    "requester, coalesce(decider, ''), state, (state = 'pending' AND requested_at + "
    "make_interval(secs => $2::bigint) < now()) OR (state = 'approved' AND valid_until <= now()), "
    "waybills, floor(extract(epoch FROM requested_at))::bigint, "
    "coalesce(floor(extract(epoch FROM decided_at))::bigint, 0), "
    "coalesce(floor(extract(epoch FROM valid_until))::bigint, 0), requester_account FROM "
    "lawful_case "
    "WHERE id = $1::uuid"; /* whole seconds, as every time a view shows */
static const char check_sql[] = "SELECT lawful_case_check($1::uuid, $2::bigint)";
/* The case a lawful read is recorded under and whose fields it shows: the caller's approved,
 * unexpired case that covers the record the read found, one requested no earlier than the record
 * was accepted (sql/051, as the row-level security), the one that lasts longest. */
static const char grant_sql[] =
    "SELECT c.id::text, array_to_string(c.fields, ','), c.case_ref, "
    "extract(epoch FROM c.valid_until)::bigint FROM lawful_case c "
    "JOIN lawful_case_item i ON i.case_id = c.id WHERE i.wb_bidx IN ($1, $3) "
    "AND c.requester_account = $2::bigint AND c.state = 'approved' AND c.valid_until > now() "
    "AND EXISTS (SELECT 1 FROM waybill w WHERE w.wb_bidx = i.wb_bidx "
    "AND w.accepted_at <= c.requested_at) "
    "ORDER BY c.valid_until DESC LIMIT 1";

/* The scope statement of the request (row-level security: '' for registrations and decisions,
 * which sql/010 allows only outside a branch scope). */
static void scope(struct gw_db_stmt *st, const char **vals, const char *s)
{
    gw_store_scope_stmt(st, vals, s);
}

int gw_store_lawful_request_stmts(const struct gw_store_lawful_case *c, struct gw_db_stmt *st,
                                  const char **vals, char *buf)
{
    char *acct = buf, *n = buf + 24;

    snprintf(acct, 24, "%" PRId64, c->requester_account);
    snprintf(n, 16, "%d", c->waybills);
    scope(&st[0], &vals[0], "");
    vals[1] = c->id;
    vals[2] = acct;
    vals[3] = c->requester;
    vals[4] = c->agency;
    vals[5] = c->officer;
    vals[6] = c->case_ref;
    vals[7] = c->legal_document_ref;
    vals[8] = c->fields;
    vals[9] = n;
    st[1] = (struct gw_db_stmt){.sql = case_sql, .nparams = 9, .values = &vals[1]};
    vals[10] = c->id;
    vals[11] = c->bidx_hex;
    st[2] = (struct gw_db_stmt){.sql = items_sql, .nparams = 2, .values = &vals[10]};
    return 3;
}

int gw_store_lawful_decide_stmts(const struct gw_store_lawful_decision *d, struct gw_db_stmt *st,
                                 const char **vals, char *buf)
{
    char *acct = buf, *until = buf + 24, *ttl = buf + 48;

    snprintf(acct, 24, "%" PRId64, d->decider_account);
    snprintf(until, 24, "%" PRId64, d->valid_until);
    snprintf(ttl, 16, "%" PRId64, d->ttl_s);
    scope(&st[0], &vals[0], "");
    vals[1] = d->case_id;
    vals[2] = acct;
    vals[3] = d->decider;
    vals[4] = d->approve ? "true" : "false";
    vals[5] = d->comment != NULL ? d->comment : "";
    vals[6] = until;
    vals[7] = ttl;
    st[1] = (struct gw_db_stmt){.sql = decide_sql, .nparams = 7, .values = &vals[1]};
    return 2;
}

int gw_store_lawful_check_stmts(const char *case_id, int64_t account, struct gw_db_stmt *st,
                                const char **vals, char *buf)
{
    snprintf(buf, GW_STORE_LAWFUL_BUF, "lawful:%" PRId64, account);
    scope(&st[0], &vals[0], buf);
    vals[1] = case_id;
    vals[2] = buf + 7; /* the account id after "lawful:" */
    st[1] = (struct gw_db_stmt){.sql = check_sql, .nparams = 2, .values = &vals[1]};
    return 2;
}

struct gw_store_lawful_req {
    struct gw_db_req *dbreq;
    gw_store_lawful_get_cb cb;            /* a read's */
    gw_store_lawful_decidable_cb decided; /* a decision's question's */
    gw_store_lawful_load_cb loaded;       /* a case's view's */
    void *arg;
};

static void get_done_cb(void *arg, int err, const struct gw_db_result *res)
{
    struct gw_store_lawful_req *r = arg;
    struct gw_store_lawful_grant g;
    struct gw_store_row row;
    const PGresult *pr, *pg;

    r->dbreq = NULL;
    if (err != 0) {
        r->cb(r->arg, err == GW_EUNAVAIL ? GW_EUNAVAIL : GW_EINTERNAL, NULL, NULL);
        goto out;
    }
    pr = res->results[1]; /* [0] set the scope */
    pg = res->results[2];
    if (PQntuples(pr) == 0 || PQntuples(pg) == 0) {
        r->cb(r->arg, GW_ENOTFOUND, NULL, NULL);
        goto out;
    }
    if (gw_store_row_get(pr, 0, &row) != 0 || PQnfields(pg) != 4) {
        r->cb(r->arg, GW_EINTERNAL, NULL, NULL);
        goto out;
    }
    g.case_id = PQgetvalue(pg, 0, 0);
    g.fields = PQgetvalue(pg, 0, 1);
    g.case_ref = PQgetvalue(pg, 0, 2);
    g.valid_until = strtoll(PQgetvalue(pg, 0, 3), NULL, 10);
    r->cb(r->arg, 0, &row, &g);
out:
    gw_free(r);
}

/* Sends r's statements in one transaction; r is freed when they cannot be sent. */
static int send_req(struct gw_store *s, struct gw_store_lawful_req *r, const struct gw_db_stmt *st,
                    int n, gw_db_done_cb done, struct gw_store_lawful_req **out)
{
    int rc = gw_store_txn_send(s, st, n, done, r, &r->dbreq);

    if (rc == 0 && out != NULL)
        *out = r;
    return rc;
}

int gw_store_lawful_get(struct gw_store *s, int64_t account,
                        const uint8_t wb_bidx[GW_STORE_BIDX_ALTS][GW_STORE_BIDX_LEN], int max_level,
                        gw_store_lawful_get_cb cb, void *arg, struct gw_store_lawful_req **out)
{
    char scope_text[32], acct[24], level[GW_STORE_LEVEL_TEXT];
    const char *sv[1], *vals[GW_STORE_GET_NPARAMS], *gv[3];
    static const int glens[3] = {GW_STORE_BIDX_LEN, 0, GW_STORE_BIDX_LEN}, gfmts[3] = {1, 0, 1};
    struct gw_db_stmt st[3];
    struct gw_store_lawful_req *r;

    if (out != NULL)
        *out = NULL;
    if (s == NULL || account <= 0 || wb_bidx == NULL || cb == NULL)
        return GW_EINVAL;
    snprintf(scope_text, sizeof(scope_text), "lawful:%" PRId64, account);
    snprintf(acct, sizeof(acct), "%" PRId64, account);
    gw_store_get_params(wb_bidx, max_level, vals, level);
    gv[0] = (const char *)wb_bidx[0];
    gv[2] = (const char *)wb_bidx[1];
    gv[1] = acct;
    scope(&st[0], sv, scope_text);
    st[1] = (struct gw_db_stmt){.sql = s->get_sql,
                                .nparams = GW_STORE_GET_NPARAMS,
                                .values = vals,
                                .lengths = gw_store_get_lens,
                                .formats = gw_store_get_fmts,
                                .result_format = 1};
    st[2] = (struct gw_db_stmt){
        .sql = grant_sql, .nparams = 3, .values = gv, .lengths = glens, .formats = gfmts};
    r = gw_calloc(1, sizeof(*r));
    if (r == NULL)
        return GW_ENOMEM;
    r->cb = cb;
    r->arg = arg;
    return send_req(s, r, st, 3, get_done_cb, out);
}

static void decidable_done_cb(void *arg, int err, const struct gw_db_result *res)
{
    struct gw_store_lawful_req *r = arg;
    const PGresult *pr;

    r->dbreq = NULL;
    if (err != 0) {
        r->decided(r->arg, err == GW_EUNAVAIL ? GW_EUNAVAIL : GW_EINTERNAL, NULL);
    } else {
        pr = res->results[1]; /* [0] set the scope */
        if (PQntuples(pr) != 1 || PQnfields(pr) != 1)
            r->decided(r->arg, GW_EINTERNAL, NULL);
        else
            r->decided(r->arg, 0, PQgetisnull(pr, 0, 0) ? NULL : PQgetvalue(pr, 0, 0));
    }
    gw_free(r);
}

int gw_store_lawful_decidable(struct gw_store *s, const struct gw_store_lawful_decision *d,
                              gw_store_lawful_decidable_cb cb, void *arg,
                              struct gw_store_lawful_req **out)
{
    char acct[24], until[24], ttl[24];
    const char *sv[1], *vals[5];
    struct gw_db_stmt st[2];
    struct gw_store_lawful_req *r;

    if (out != NULL)
        *out = NULL;
    if (s == NULL || d == NULL || d->case_id == NULL || cb == NULL)
        return GW_EINVAL;
    snprintf(acct, sizeof(acct), "%" PRId64, d->decider_account);
    snprintf(until, sizeof(until), "%" PRId64, d->valid_until);
    snprintf(ttl, sizeof(ttl), "%" PRId64, d->ttl_s);
    vals[0] = d->case_id;
    vals[1] = acct;
    vals[2] = d->approve ? "true" : "false";
    vals[3] = until;
    vals[4] = ttl;
    scope(&st[0], sv, ""); /* sql/010: cases are visible outside a branch scope only */
    st[1] = (struct gw_db_stmt){.sql = decidable_sql, .nparams = 5, .values = vals};
    r = gw_calloc(1, sizeof(*r));
    if (r == NULL)
        return GW_ENOMEM;
    r->decided = cb;
    r->arg = arg;
    return send_req(s, r, st, 2, decidable_done_cb, out);
}

static void load_done_cb(void *arg, int err, const struct gw_db_result *res)
{
    struct gw_store_lawful_req *r = arg;
    struct gw_store_lawful_row row;
    const PGresult *pr;

    r->dbreq = NULL;
    if (err != 0) {
        r->loaded(r->arg, err == GW_EUNAVAIL ? GW_EUNAVAIL : GW_EINTERNAL, NULL);
        goto out;
    }
    pr = res->results[1]; /* [0] set the scope */
    if (PQntuples(pr) == 0) {
        r->loaded(r->arg, GW_ENOTFOUND, NULL);
        goto out;
    }
    if (PQntuples(pr) != 1 || PQnfields(pr) != 14) {
        r->loaded(r->arg, GW_EINTERNAL, NULL);
        goto out;
    }
    row.agency = PQgetvalue(pr, 0, 0);
    row.officer = PQgetvalue(pr, 0, 1);
    row.case_ref = PQgetvalue(pr, 0, 2);
    row.legal_document_ref = PQgetvalue(pr, 0, 3);
    row.fields = PQgetvalue(pr, 0, 4);
    row.requester = PQgetvalue(pr, 0, 5);
    row.decider = PQgetvalue(pr, 0, 6);
    row.state = PQgetvalue(pr, 0, 7);
    row.expired = strcmp(PQgetvalue(pr, 0, 8), "t") == 0;
    row.waybills = atoi(PQgetvalue(pr, 0, 9));
    row.requested_at = strtoll(PQgetvalue(pr, 0, 10), NULL, 10);
    row.decided_at = strtoll(PQgetvalue(pr, 0, 11), NULL, 10);
    row.valid_until = strtoll(PQgetvalue(pr, 0, 12), NULL, 10);
    row.requester_account = strtoll(PQgetvalue(pr, 0, 13), NULL, 10);
    r->loaded(r->arg, 0, &row);
out:
    gw_free(r);
}

int gw_store_lawful_load(struct gw_store *s, const char *case_id, int64_t ttl_s,
                         gw_store_lawful_load_cb cb, void *arg, struct gw_store_lawful_req **out)
{
    char ttl[24];
    const char *sv[1], *vals[2];
    struct gw_db_stmt st[2];
    struct gw_store_lawful_req *r;

    if (out != NULL)
        *out = NULL;
    if (s == NULL || case_id == NULL || cb == NULL)
        return GW_EINVAL;
    snprintf(ttl, sizeof(ttl), "%" PRId64, ttl_s);
    vals[0] = case_id;
    vals[1] = ttl;
    scope(&st[0], sv, ""); /* as the decision's question: cases are visible outside a branch */
    st[1] = (struct gw_db_stmt){.sql = load_sql, .nparams = 2, .values = vals};
    r = gw_calloc(1, sizeof(*r));
    if (r == NULL)
        return GW_ENOMEM;
    r->loaded = cb;
    r->arg = arg;
    return send_req(s, r, st, 2, load_done_cb, out);
}

void gw_store_lawful_cancel(struct gw_store_lawful_req *r)
{
    if (r == NULL)
        return;
    gw_db_cancel(r->dbreq);
    gw_free(r);
}
