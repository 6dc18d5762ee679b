/* audit_scan.c: the gateway's paced, asynchronous read of the audit trail (audit_scan.h). Step 1
 * reads the keys and the spans; each later step reads one batch of one span's records with the
 * checkpoints before its last record (or, once the span has no more records, the rest of its
 * checkpoints), in one pipelined request. Invariants: a checkpoint at seq s is delivered after
 * the record s and before any later one; every statement is a parameterised SELECT. */
#include "audit_scan.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "pq_msg.h"

static const char SQL_KEYS[] = GW_AUDIT_KEYS_SQL;

/* The spans of audit_read.h: from after the last checkpoint before the range's first record of
 * a chain (or seq 1) to the first checkpoint at or after its last one (or that record). */
static const char SQL_PLAN[] =
    "SELECT r.chain, coalesce((SELECT max(k.seq) FROM audit_checkpoint k WHERE k.chain = r.chain "
    "AND k.seq < r.lo), 0) + 1, coalesce((SELECT min(k.seq) FROM audit_checkpoint k "
    "WHERE k.chain = r.chain AND k.seq >= r.hi), r.hi) FROM (SELECT chain, min(seq) AS lo, "
    "max(seq) AS hi FROM audit_record WHERE at_us >= $1::bigint AND at_us < $2::bigint "
    "GROUP BY chain) r ORDER BY r.chain COLLATE \"C\"";

static const char SQL_RECORDS[] =
    "SELECT " GW_AUDIT_RECORD_COLS " FROM audit_record WHERE chain = $1 AND seq > $2::bigint "
    "AND seq <= $3::bigint ORDER BY seq LIMIT $4::bigint";

/* Checkpoints from $2 up to before the last record of the same batch, or to $5 (the span's end)
 * when the batch is empty. */
static const char SQL_CKPTS[] =
    "SELECT seq, encode(head_hash, 'hex'), at_us, key_id, encode(signature, 'hex') "
    "FROM audit_checkpoint WHERE chain = $1 AND seq >= $2::bigint AND seq < coalesce("
    "(SELECT max(b.seq) FROM (SELECT seq FROM audit_record WHERE chain = $1 AND seq > $3::bigint "
    "AND seq <= $5::bigint ORDER BY seq LIMIT $4::bigint) b), $5::bigint + 1) ORDER BY seq";

struct gw_audit_scan {
    struct gw_db *db;
    struct gw_db_req *req;
    const struct gw_audit_scan_ops *ops;
    void *arg;
    int64_t from_us, to_us;
    long batch;
    bool planned;
    struct gw_audit_span *spans;
    size_t nspans, cur;
    int64_t cursor, ck_lo; /* of spans[cur] */
};

int gw_audit_scan_new(struct gw_db *db, int64_t from_us, int64_t to_us, long batch,
                      const struct gw_audit_scan_ops *ops, void *arg, struct gw_audit_scan **out)
{
    struct gw_audit_scan *s = gw_calloc(1, sizeof *s);
    *out = NULL;
    if (!s)
        return GW_ENOMEM;
    s->db = db;
    s->ops = ops;
    s->arg = arg;
    s->from_us = from_us;
    s->to_us = to_us;
    s->batch = batch > 0 ? batch : 1000;
    *out = s;
    return 0;
}

void gw_audit_scan_free(struct gw_audit_scan *s)
{
    if (!s)
        return;
    if (s->req)
        gw_db_cancel(s->req);
    gw_free(s->spans);
    gw_free(s);
}

static int64_t num(const PGresult *res, int row, int col, int64_t absent)
{
    return PQgetisnull(res, row, col) ? absent : strtoll(PQgetvalue(res, row, col), NULL, 10);
}

static void enter_span(struct gw_audit_scan *s)
{
    if (s->cur < s->nspans)
        s->cursor = s->ck_lo = s->spans[s->cur].first - 1;
}

static int on_plan(struct gw_audit_scan *s, const struct gw_db_result *res)
{
    const PGresult *keys = res->results[0], *plan = res->results[1];
    uint8_t pub[GW_SIGN_PUB_MAX];
    size_t publen = 0;
    int rc = 0, rows = PQntuples(plan);
    for (int i = 0; i < PQntuples(keys) && rc == 0; i++) {
        int k = gw_audit_key_row(keys, i, pub, &publen);
        rc = k < 0 ? k : k > 0 ? s->ops->key(s->arg, pub, publen) : 0;
    }
    if (rc != 0)
        return rc;
    s->spans = gw_calloc(rows > 0 ? (size_t)rows : 1, sizeof *s->spans);
    if (!s->spans)
        return GW_ENOMEM;
    for (int i = 0; i < rows; i++) {
        struct gw_audit_span *sp = &s->spans[i];
        snprintf(sp->chain, sizeof sp->chain, "%s", PQgetvalue(plan, i, 0));
        sp->first = num(plan, i, 1, 1);
        sp->last = sp->ckpt_last = num(plan, i, 2, 0);
    }
    s->nspans = (size_t)rows;
    s->planned = true;
    s->cur = 0;
    enter_span(s);
    return 0;
}

static int on_batch(struct gw_audit_scan *s, const struct gw_db_result *res)
{
    const PGresult *recs = res->results[0], *cks = res->results[1];
    const struct gw_audit_span *sp = &s->spans[s->cur];
    struct gw_audit_row r;
    struct gw_audit_ckpt c;
    int nrec = PQntuples(recs), nck = PQntuples(cks), j = 0, rc = 0;
    for (int i = 0; i <= nrec && rc == 0; i++) {
        int64_t seq = i < nrec ? num(recs, i, 1, 0) : INT64_MAX;
        while (rc == 0 && j < nck && num(cks, j, 0, 0) < seq) {
            rc = gw_audit_read_ckpt(cks, j++, sp->chain, &c);
            if (rc == 0)
                rc = s->ops->ckpt(s->arg, &c);
        }
        if (rc == 0 && i < nrec) {
            rc = gw_audit_read_row(recs, i, &r);
            if (rc == 0)
                rc = s->ops->row(s->arg, &r);
        }
    }
    if (rc != 0)
        return rc;
    if (nrec == 0) { /* the span is over */
        s->cur++;
        enter_span(s);
    } else {
        s->cursor = s->ck_lo = num(recs, nrec - 1, 1, 0);
    }
    return 0;
}

static void step_cb(void *arg, int err, const struct gw_db_result *res)
{
    struct gw_audit_scan *s = arg;
    s->req = NULL;
    if (err == 0)
        err = s->planned ? on_batch(s, res) : on_plan(s, res);
    s->ops->step_done(s->arg, err, err == 0 && s->cur >= s->nspans);
}

int gw_audit_scan_step(struct gw_audit_scan *s)
{
    char t[5][24];
    const char *v[5];
    if (!s->planned) {
        const char *pv[2] = {t[0], t[1]};
        const struct gw_db_stmt st[2] = {{SQL_KEYS, 0, NULL, NULL, NULL, 0},
                                         {SQL_PLAN, 2, pv, NULL, NULL, 0}};
        snprintf(t[0], sizeof t[0], "%" PRId64, s->from_us);
        snprintf(t[1], sizeof t[1], "%" PRId64, s->to_us);
        return gw_db_exec(s->db, st, 2, 0, step_cb, s, &s->req);
    }
    if (s->cur >= s->nspans)
        return GW_EINVAL;
    const struct gw_audit_span *sp = &s->spans[s->cur];
    snprintf(t[0], sizeof t[0], "%" PRId64, s->cursor);
    snprintf(t[1], sizeof t[1], "%" PRId64, sp->last);
    snprintf(t[2], sizeof t[2], "%ld", s->batch);
    snprintf(t[3], sizeof t[3], "%" PRId64, s->ck_lo);
    /* records: chain, cursor, last, batch; checkpoints: chain, ck_lo, cursor, batch, last */
    const char *rv[4] = {sp->chain, t[0], t[1], t[2]};
    v[0] = sp->chain;
    v[1] = t[3];
    v[2] = t[0];
    v[3] = t[2];
    v[4] = t[1];
    const struct gw_db_stmt st[2] = {{SQL_RECORDS, 4, rv, NULL, NULL, 0},
                                     {SQL_CKPTS, 5, v, NULL, NULL, 0}};
    return gw_db_exec(s->db, st, 2, 0, step_cb, s, &s->req);
}
