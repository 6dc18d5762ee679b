/* audit_read.c: the CLI's reads of the audit trail (audit_read.h) on blocking libpq. Invariants:
 * every statement is a parameterised SELECT; a span is read in keyset-paginated batches (seq >
 * cursor ... LIMIT batch), so memory is one batch whatever the chain's length; checkpoints are
 * merged into the record order by seq. */
#include "audit_read.h"

#include <inttypes.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "pq_msg.h"
#include "sign.h"
#include "store_admin_int.h"

int gw_audit_read_begin(struct gw_admin *a, char *errbuf, size_t errlen)
{
    return gw_admin_command(a, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", errbuf, errlen);
}

int gw_audit_read_end(struct gw_admin *a, char *errbuf, size_t errlen)
{
    return gw_admin_command(a, "COMMIT", errbuf, errlen);
}

static int bad_row(char *errbuf, size_t errlen, const char *what)
{
    gw_pq_msg(errbuf, errlen, "a stored %s does not decode", what);
    return GW_EINTERNAL;
}

bool gw_audit_hex(const char *hex, uint8_t *out, size_t max, size_t *n)
{
    size_t len = hex ? strlen(hex) : 0;
    if (len == 0 || len % 2 != 0 || len / 2 > max)
        return false;
    *n = len / 2;
    return gw_pq_hex(hex, out, *n);
}

int gw_audit_key_row(const PGresult *res, int i, uint8_t *pub, size_t *publen)
{
    if (!gw_audit_hex(PQgetvalue(res, i, 0), pub, GW_SIGN_PUB_MAX, publen))
        return GW_EINTERNAL;
    return gw_sign_pub_valid(pub, *publen) ? 1 : 0;
}

int gw_audit_read_keys(struct gw_admin *a, gw_audit_key_cb cb, void *arg, char *errbuf,
                       size_t errlen)
{
    PGresult *res = PQexec(a->pg, GW_AUDIT_KEYS_SQL);
    uint8_t pub[GW_SIGN_PUB_MAX];
    size_t publen = 0;
    int rc = 0;
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        rc = gw_admin_refused(res, a, errbuf, errlen);
        goto out;
    }
    for (int i = 0; i < PQntuples(res) && rc == 0; i++) {
        int k = gw_audit_key_row(res, i, pub, &publen);
        if (k < 0)
            rc = bad_row(errbuf, errlen, "public key");
        else if (k > 0)
            rc = cb(arg, pub, publen);
    }
out:
    PQclear(res);
    return rc;
}

int gw_audit_read_hash(struct gw_admin *a, const char *chain, int64_t seq,
                       uint8_t hash[GW_AUDIT_HASH_LEN], bool *found, char *errbuf, size_t errlen)
{
    char s[24];
    const char *p[2] = {chain, s};
    PGresult *res;
    size_t n = 0;
    int rc = 0;

    *found = false;
    snprintf(s, sizeof s, "%" PRId64, seq);
    res = PQexecParams(a->pg,
                       "SELECT encode(hash, 'hex') FROM audit_record WHERE chain = $1 AND "
                       "seq = $2::bigint",
                       2, NULL, p, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK)
        rc = gw_admin_refused(res, a, errbuf, errlen);
    else if (PQntuples(res) == 1) {
        if (!gw_audit_hex(PQgetvalue(res, 0, 0), hash, GW_AUDIT_HASH_LEN, &n) ||
            n != GW_AUDIT_HASH_LEN)
            rc = bad_row(errbuf, errlen, "hash");
        else
            *found = true;
    }
    PQclear(res);
    return rc;
}

static int64_t num(const PGresult *res, int row, int col, int64_t absent)
{
    return PQgetisnull(res, row, col) ? absent : strtoll(PQgetvalue(res, row, col), NULL, 10);
}

/* One value of a single-row query with int8 params; *v = absent when NULL. */
static int scalar(struct gw_admin *a, const char *sql, const char *chain, int64_t p, int64_t absent,
                  int64_t *v, char *errbuf, size_t errlen)
{
    char ptxt[24];
    const char *vals[2] = {chain, ptxt};
    PGresult *res;
    int rc = 0;
    snprintf(ptxt, sizeof ptxt, "%" PRId64, p);
    res = PQexecParams(a->pg, sql, 2, NULL, vals, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1)
        rc = gw_admin_refused(res, a, errbuf, errlen);
    else
        *v = num(res, 0, 0, absent);
    PQclear(res);
    return rc;
}

/* Widens a range span to the checkpoints around it (audit_read.h). */
static int widen(struct gw_admin *a, struct gw_audit_span *s, char *errbuf, size_t errlen)
{
    int64_t anchor, cover;
    int rc =
        scalar(a, "SELECT max(seq) FROM audit_checkpoint WHERE chain = $1 AND seq < $2::bigint",
               s->chain, s->first, 0, &anchor, errbuf, errlen);
    if (rc == 0)
        rc = scalar(a,
                    "SELECT min(seq) FROM audit_checkpoint WHERE chain = $1 AND seq >= $2::bigint",
                    s->chain, s->last, -1, &cover, errbuf, errlen);
    if (rc != 0)
        return rc;
    s->first = anchor + 1;
    if (cover > 0)
        s->last = cover;
    s->ckpt_last = s->last;
    return 0;
}

int gw_audit_read_plan(struct gw_admin *a, bool live, int64_t from_us, int64_t to_us,
                       struct gw_audit_span **out, size_t *n, char *errbuf, size_t errlen)
{
    char ftxt[24], ttxt[24];
    const char *vals[2] = {ftxt, ttxt};
    struct gw_audit_span *sp = NULL;
    PGresult *res;
    int rc = 0, rows;

    *out = NULL;
    *n = 0;
    snprintf(ftxt, sizeof ftxt, "%" PRId64, from_us);
    snprintf(ttxt, sizeof ttxt, "%" PRId64, to_us);
    if (live)
        res = PQexec(a->pg, "SELECT c.id, 1, (SELECT max(seq) FROM audit_record r "
                            "WHERE r.chain = c.id), c.kind = 'gateway' FROM audit_chain c "
                            "ORDER BY c.id COLLATE \"C\"");
    else
        res = PQexecParams(a->pg,
                           "SELECT chain, min(seq), max(seq) FROM audit_record "
                           "WHERE at_us >= $1::bigint AND at_us < $2::bigint "
                           "GROUP BY chain ORDER BY chain COLLATE \"C\"",
                           2, NULL, vals, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        rc = gw_admin_refused(res, a, errbuf, errlen);
        goto out;
    }
    rows = PQntuples(res);
    sp = gw_calloc(rows > 0 ? (size_t)rows : 1, sizeof *sp);
    if (!sp) {
        rc = GW_ENOMEM;
        goto out;
    }
    for (int i = 0; i < rows && rc == 0; i++) {
        snprintf(sp[i].chain, sizeof sp[i].chain, "%s", PQgetvalue(res, i, 0));
        sp[i].first = num(res, i, 1, 1);
        sp[i].last = num(res, i, 2, 0);
        sp[i].ckpt_last = INT64_MAX;
        sp[i].gateway = live && PQgetvalue(res, i, 3)[0] == 't';
        if (!live)
            rc = widen(a, &sp[i], errbuf, errlen);
    }
    if (rc == 0) {
        *out = sp;
        *n = (size_t)rows;
        sp = NULL;
    }
out:
    gw_free(sp);
    PQclear(res);
    return rc;
}

static const char *opt(const PGresult *res, int row, int col)
{
    return PQgetisnull(res, row, col) ? NULL : PQgetvalue(res, row, col);
}

int gw_audit_read_row(const PGresult *res, int i, struct gw_audit_row *out)
{
    struct gw_audit_row r;
    memset(&r, 0, sizeof r);
    r.link.chain = PQgetvalue(res, i, 0);
    r.link.seq = num(res, i, 1, 0);
    r.link.at_us = num(res, i, 2, 0);
    r.rec.actor = PQgetvalue(res, i, 3);
    r.rec.role = opt(res, i, 4);
    r.rec.peer = opt(res, i, 5);
    r.rec.cert = opt(res, i, 6);
    r.rec.branch = opt(res, i, 7);
    r.rec.action = PQgetvalue(res, i, 8);
    r.rec.object = opt(res, i, 9);
    r.rec.count = num(res, i, 10, -1);
    r.rec.purpose = opt(res, i, 11);
    r.rec.legal_basis = opt(res, i, 12);
    r.rec.approval = opt(res, i, 13);
    r.rec.outcome = PQgetvalue(res, i, 14);
    r.rec.detail = opt(res, i, 15);
    r.rec.confidential = PQgetvalue(res, i, 16)[0] == 't';
    if (!gw_pq_hex(PQgetvalue(res, i, 17), r.link.prev_hash, GW_AUDIT_HASH_LEN) ||
        !gw_pq_hex(PQgetvalue(res, i, 18), r.hash, GW_AUDIT_HASH_LEN))
        return GW_EINTERNAL;
    *out = r;
    return 0;
}

static int emit_row(const PGresult *res, int i, gw_audit_row_cb cb, void *arg, char *errbuf,
                    size_t errlen)
{
    struct gw_audit_row r;
    if (gw_audit_read_row(res, i, &r) != 0)
        return bad_row(errbuf, errlen, "record hash");
    return cb(arg, &r);
}

int gw_audit_read_ckpt(const PGresult *res, int i, const char *chain, struct gw_audit_ckpt *c)
{
    memset(c, 0, sizeof *c);
    c->chain = chain;
    c->seq = num(res, i, 0, 0);
    c->at_us = num(res, i, 2, 0);
    snprintf(c->key_id, sizeof c->key_id, "%s", PQgetvalue(res, i, 3));
    return gw_pq_hex(PQgetvalue(res, i, 1), c->head, GW_AUDIT_HASH_LEN) &&
                   gw_audit_hex(PQgetvalue(res, i, 4), c->sig, sizeof c->sig, &c->siglen)
               ? 0
               : GW_EINTERNAL;
}

static PGresult *query3(struct gw_admin *a, const char *sql, const char *chain, int64_t x,
                        int64_t y, int64_t z, int nparams)
{
    char t1[24], t2[24], t3[24];
    const char *vals[4] = {chain, t1, t2, t3};
    snprintf(t1, sizeof t1, "%" PRId64, x);
    snprintf(t2, sizeof t2, "%" PRId64, y);
    snprintf(t3, sizeof t3, "%" PRId64, z);
    return PQexecParams(a->pg, sql, nparams, NULL, vals, NULL, NULL, 0);
}

int gw_audit_read_span(struct gw_admin *a, const struct gw_audit_span *s, long batch,
                       gw_audit_row_cb row_cb, gw_audit_ckpt_cb ckpt_cb, void *arg, char *errbuf,
                       size_t errlen)
{
    int64_t cursor = s->first - 1; /* records after this seq are still to read */
    int64_t ck_lo = s->first - 1;  /* checkpoints from this seq are still to emit */
    PGresult *recs = NULL, *cks = NULL;
    struct gw_audit_ckpt c;
    int rc = 0;

    for (;;) {
        int nrec, nck, j = 0;
        int64_t hi;
        recs = query3(a,
                      "SELECT " GW_AUDIT_RECORD_COLS " FROM audit_record WHERE chain = $1 AND "
                      "seq > $2::bigint AND seq <= $3::bigint ORDER BY seq LIMIT $4::bigint",
                      s->chain, cursor, s->last, batch, 4);
        if (PQresultStatus(recs) != PGRES_TUPLES_OK) {
            rc = gw_admin_refused(recs, a, errbuf, errlen);
            goto out;
        }
        nrec = PQntuples(recs);
        /* the checkpoints before the batch's last record, or all the rest after the last batch */
        hi = nrec ? num(recs, nrec - 1, 1, 0) - 1 : s->ckpt_last;
        cks = query3(a,
                     "SELECT seq, encode(head_hash, 'hex'), at_us, key_id, encode(signature, "
                     "'hex') FROM audit_checkpoint WHERE chain = $1 AND seq >= $2::bigint AND "
                     "seq <= $3::bigint ORDER BY seq",
                     s->chain, ck_lo, hi, 0, 3);
        if (PQresultStatus(cks) != PGRES_TUPLES_OK) {
            rc = gw_admin_refused(cks, a, errbuf, errlen);
            goto out;
        }
        nck = PQntuples(cks);
        for (int i = 0; i <= nrec && rc == 0; i++) {
            int64_t seq = i < nrec ? num(recs, i, 1, 0) : INT64_MAX;
            while (rc == 0 && j < nck && num(cks, j, 0, 0) < seq) {
                rc = gw_audit_read_ckpt(cks, j++, s->chain, &c);
                if (rc != 0)
                    rc = bad_row(errbuf, errlen, "checkpoint");
                else
                    rc = ckpt_cb(arg, &c);
            }
            if (rc == 0 && i < nrec)
                rc = emit_row(recs, i, row_cb, arg, errbuf, errlen);
        }
        if (rc != 0 || nrec == 0)
            goto out;
        cursor = num(recs, nrec - 1, 1, 0);
        ck_lo = cursor;
        PQclear(recs);
        PQclear(cks);
        recs = cks = NULL;
    }
out:
    PQclear(recs);
    PQclear(cks);
    return rc;
}

int gw_audit_read_macs(struct gw_admin *a, const char *chain, int64_t from, int64_t to, long batch,
                       gw_audit_mac_cb cb, void *arg, char *errbuf, size_t errlen)
{
    uint8_t hash[GW_AUDIT_HASH_LEN], mac[GW_AUDIT_HASH_LEN];
    int64_t cursor = from - 1; /* records after this seq are still to read */
    PGresult *res = NULL;
    int rc = 0, n;

    do {
        PQclear(res);
        res = query3(a,
                     "SELECT seq, encode(hash, 'hex'), encode(writer_mac, 'hex') FROM audit_record "
                     "WHERE chain = $1 AND seq > $2::bigint AND seq <= $3::bigint ORDER BY seq "
                     "LIMIT $4::bigint",
                     chain, cursor, to, batch, 4);
        if (PQresultStatus(res) != PGRES_TUPLES_OK) {
            rc = gw_admin_refused(res, a, errbuf, errlen);
            break;
        }
        n = PQntuples(res);
        for (int i = 0; i < n && rc == 0; i++) {
            bool has_mac =
                !PQgetisnull(res, i, 2) && gw_pq_hex(PQgetvalue(res, i, 2), mac, sizeof mac);
            cursor = num(res, i, 0, 0);
            if (!gw_pq_hex(PQgetvalue(res, i, 1), hash, sizeof hash))
                rc = bad_row(errbuf, errlen, "hash");
            else
                rc = cb(arg, cursor, hash, has_mac ? mac : NULL);
        }
    } while (rc == 0 && n > 0);
    PQclear(res);
    return rc;
}

/* The destructions and the records that account for them, each side numbered within its key
 * (reason, request or selector, count), so that the k-th destruction of a key needs a k-th
 * record: two retention batches of one selector and size need two records. */
static const char unrecorded_sql[] =
    "WITH d AS (SELECT id, reason, request_id, count, "
    "to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') AS at_txt, "
    "CASE reason WHEN 'bulk' THEN request_id::text ELSE selector END AS key, "
    "row_number() OVER (PARTITION BY reason, CASE reason WHEN 'bulk' THEN request_id::text "
    "ELSE selector END, count ORDER BY id) AS k FROM destruction), "
    "r AS (SELECT CASE r.action WHEN 'bulk.run' THEN 'bulk' ELSE 'retention' END AS reason, "
    "CASE r.action WHEN 'bulk.run' THEN r.approval ELSE r.object END AS key, r.count, "
    "row_number() OVER (PARTITION BY r.action, CASE r.action WHEN 'bulk.run' THEN r.approval "
    "ELSE r.object END, r.count ORDER BY r.chain, r.seq) AS k "
    "FROM audit_record r JOIN audit_chain c ON c.id = r.chain "
    "WHERE c.kind = 'gateway' AND r.outcome = 'ok' "
    "AND r.action IN ('bulk.run', 'retention.destroy')) "
    "SELECT d.id, d.reason, d.request_id, d.count, d.at_txt FROM d WHERE NOT EXISTS "
    "(SELECT 1 FROM r WHERE r.reason = d.reason AND r.key = d.key AND r.count = d.count "
    "AND r.k = d.k) ORDER BY d.id";

int gw_audit_read_unrecorded(struct gw_admin *a, gw_audit_unrecorded_cb cb, void *arg, char *errbuf,
                             size_t errlen)
{
    PGresult *res = PQexec(a->pg, unrecorded_sql);
    int rc = 0;

    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        rc = gw_admin_refused(res, a, errbuf, errlen);
        goto out;
    }
    for (int i = 0; i < PQntuples(res) && rc == 0; i++) {
        struct gw_audit_unrecorded u = {
            .id = num(res, i, 0, 0),
            .reason = PQgetvalue(res, i, 1),
            .request_id = opt(res, i, 2),
            .count = num(res, i, 3, 0),
            .at = PQgetvalue(res, i, 4),
        };
        rc = cb(arg, &u);
    }
out:
    PQclear(res);
    return rc;
}

const char *gw_audit_head_fault(const PGresult *res, struct gw_audit_row *h)
{
    static const uint8_t zero[GW_AUDIT_HASH_LEN];
    struct gw_audit_row p;
    uint8_t hash[GW_AUDIT_HASH_LEN];

    if (gw_audit_read_row(res, 0, h) != 0)
        return "its stored hash or prev_hash is not 32 bytes";
    if (gw_audit_rec_hash(&h->rec, &h->link, hash) != 0)
        return "not a record the audit format can hold";
    if (memcmp(hash, h->hash, GW_AUDIT_HASH_LEN) != 0)
        return "its content does not match its hash";
    if (h->link.seq == 1)
        return memcmp(h->link.prev_hash, zero, GW_AUDIT_HASH_LEN) == 0
                   ? NULL
                   : "its prev_hash is not 32 zero bytes";
    if (PQntuples(res) < 2 || gw_audit_read_row(res, 1, &p) != 0 || p.link.seq != h->link.seq - 1)
        return "the record before it is missing";
    if (memcmp(h->link.prev_hash, p.hash, GW_AUDIT_HASH_LEN) != 0)
        return "its prev_hash is not the hash of the record before it";
    return NULL;
}

bool gw_audit_head_signed(const PGresult *own, const char *chain, const struct gw_audit_row *h,
                          const uint8_t *pub, size_t publen)
{
    struct gw_audit_ckpt c;
    uint8_t msg[256];
    size_t len = 0;

    if (own == NULL || pub == NULL || PQntuples(own) != 1 ||
        gw_audit_read_ckpt(own, 0, chain, &c) != 0 || c.seq != h->link.seq ||
        memcmp(c.head, h->hash, GW_AUDIT_HASH_LEN) != 0 ||
        gw_audit_checkpoint_msg(chain, c.seq, c.head, c.at_us, msg, sizeof msg, &len) != 0)
        return false;
    return gw_sign_verify(pub, publen, msg, len, c.sig, c.siglen) == 0;
}

void gw_audit_break_rec(const char *chain, int64_t planted, const char *why, const char *actor,
                        char object[48], char detail[256], struct gw_audit_rec *r)
{
    snprintf(object, 48, "seq %" PRId64, planted);
    snprintf(detail, 256,
             "chain %s: seq %" PRId64 ": %s; not chained onto: a new segment starts at seq "
             "%" PRId64 ", linked to nothing",
             chain, planted, why, planted + 1);
    *r = (struct gw_audit_rec){.actor = actor,
                               .action = "audit.break",
                               .object = object,
                               .outcome = "ok",
                               .count = -1,
                               .detail = detail};
}
