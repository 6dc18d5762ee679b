/* store_read.c: the store's simple operations: read a sealed waybill by its number's blind index
 * within a scope (every read column of store_int.h's list: the clear ones with fields_ct, and
 * the *_ct of versions 1 and 2; decoded by kind), the branch its
 * destination routes to, its custodian and its latest scan event), load the segments. Invariant: a
 * handle is freed exactly once, after its callback or at cancel (then the db request is cancelled
 * first). */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "db.h"
#include "log.h"
#include "pq_msg.h"
#include "store.h"
#include "store_int.h"

void gw_store_read_cols(struct gw_store_sql *b)
{
    char col[96];
    size_t k;

    for (k = 0; k < GW_STORE_READ_COLS; k++) {
        snprintf(col, sizeof(col), "w.%s", gw_store_col_name(k));
        gw_store_sql_add(b, "%s", k > 0 ? ", " : "");
        gw_store_sql_expr(b, gw_store_col_type(k)->select, col);
    }
    gw_store_sql_add(b, ", (SELECT r.branch FROM route r WHERE r.region_code = "
                        "w.dest_region_code), waybill_scan_facts(w.id)");
}

char *gw_store_get_sql_new(void)
{
    struct gw_store_sql b = {.len = 0};

    gw_store_sql_add(&b, "SELECT ");
    gw_store_read_cols(&b);
    /* GW_STORE_BIDX_ALTS; $3 the caller's highest security level, as Search asks it
     * (store_query.c): a record above it is not read, as one that does not exist */
    gw_store_sql_add(&b, " FROM waybill w WHERE w.wb_bidx IN ($1, $2) AND "
                         "COALESCE(w.security_level, 0) BETWEEN 0 AND $3::smallint");
    return b.overflow ? NULL : gw_strdup(b.buf);
}

static void simple_fail_err(int *err, const struct gw_db_result *res)
{
    (void)res;
    if (*err != 0 && *err != GW_EUNAVAIL)
        *err = GW_EINTERNAL;
}

/* Result column k into its place in *w (pointers into the result). A blob of the wrong length
 * is left zero (flag false): the record then fails to authenticate. */
static void get_col(const PGresult *res, int row, int col0, size_t k, struct gw_sealed_waybill *w)
{
    const struct gw_rec_col *c = k < GW_REC_NCOLS ? &gw_rec_cols[k] : NULL;
    char *dst = c != NULL ? (char *)w + c->off : (char *)&w->ct[k - GW_REC_NCOLS];
    int col = col0 + (int)k;
    const char *v = PQgetisnull(res, row, col) ? NULL : PQgetvalue(res, row, col);
    size_t n = (size_t)PQgetlength(res, row, col), want = 0;
    struct gw_bytes b = {NULL, 0};
    int16_t i16;
    int32_t i32;
    int64_t i64;

    switch (gw_store_col_kind(k)) {
    case GW_REC_UUID:
        want = GW_RECORD_ID_LEN;
        break;
    case GW_REC_BIDX:
        want = GW_RECORD_BIDX_LEN;
        break;
    case GW_REC_MAC:
        want = GW_RECORD_MAC_LEN;
        break;
    case GW_REC_BYTES:
        if (v != NULL) {
            b.p = (uint8_t *)v;
            b.n = n;
        }
        memcpy(dst, &b, sizeof(b));
        return;
    case GW_REC_TEXT:
    case GW_REC_DATE:
        memcpy(dst, &v, sizeof(v));
        return;
    case GW_REC_I16:
        i16 = (int16_t)gw_pq_int(res, row, col, 2);
        memcpy(dst, &i16, sizeof(i16));
        return;
    case GW_REC_I32:
        i32 = (int32_t)gw_pq_int(res, row, col, 4);
        memcpy(dst, &i32, sizeof(i32));
        return;
    case GW_REC_TIME:
        i64 = gw_pq_int(res, row, col, 8);
        memcpy(dst, &i64, sizeof(i64));
        return;
    }
    if (v == NULL || n != want)
        return;
    memcpy(dst, v, want);
    if (c->has_off >= 0)
        *(bool *)((char *)w + c->has_off) = true;
}

int gw_store_row_get(const PGresult *res, int row, struct gw_store_row *out)
{
    if (PQnfields(res) != GW_STORE_READ_COLS + GW_STORE_READ_EXTRA) {
        memset(out, 0, sizeof(*out));
        return GW_EINTERNAL;
    }
    return gw_store_row_get_at(res, row, 0, out);
}

/* One field of a binary record (record_send: type oid, length or -1 for NULL, bytes) at *p of
 * the n bytes left: its bytes in *v, *len (-1: NULL). false when it does not fit or its type is
 * not oid. */
static bool record_field(const uint8_t **p, size_t *n, uint32_t oid, const uint8_t **v,
                         int32_t *len)
{
    if (*n < 8 || gw_pq_int_at(*p, 4) != (int64_t)oid)
        return false;
    *len = (int32_t)gw_pq_int_at(*p + 4, 4);
    *p += 8;
    *n -= 8;
    if (*len < 0) {
        *v = NULL;
        return *len == -1;
    }
    if ((size_t)*len > *n)
        return false;
    *v = *p;
    *p += *len;
    *n -= (size_t)*len;
    return true;
}

/* waybill_scan_facts(w.id) (sql/017) in binary: (custodian text, last_event int2,
 * last_event_at int8). The custodian is copied into out->custody_buf (scan.branch is at most 31
 * characters). NULL (a statement that does not ask): no custody, no event. false when malformed. */
static bool scan_facts_get(const PGresult *res, int row, int col, struct gw_store_row *out)
{
    const uint8_t *p, *v;
    size_t n;
    int32_t len;

    out->custody_branch = NULL;
    out->last_event = 0;
    out->last_event_at = 0;
    if (PQgetisnull(res, row, col))
        return true;
    p = (const uint8_t *)PQgetvalue(res, row, col);
    n = (size_t)PQgetlength(res, row, col);
    if (n < 4 || gw_pq_int_at(p, 4) != 3)
        return false;
    p += 4;
    n -= 4;
    if (!record_field(&p, &n, GW_PG_TEXT_OID, &v, &len) || len >= (int32_t)sizeof(out->custody_buf))
        return false;
    if (v != NULL) {
        memcpy(out->custody_buf, v, (size_t)len);
        out->custody_buf[len] = '\0';
        out->custody_branch = out->custody_buf;
    }
    if (!record_field(&p, &n, GW_PG_INT2_OID, &v, &len) || len != 2)
        return false;
    out->last_event = (int)gw_pq_int_at(v, 2);
    if (!record_field(&p, &n, GW_PG_INT8_OID, &v, &len) || len != 8 || n != 0)
        return false;
    out->last_event_at = gw_pq_int_at(v, 8);
    return true;
}

int gw_store_row_get_at(const PGresult *res, int row, int col0, struct gw_store_row *out)
{
    int x = col0 + GW_STORE_READ_COLS;
    size_t k;

    memset(out, 0, sizeof(*out));
    if (col0 < 0 || PQnfields(res) < x + GW_STORE_READ_EXTRA || row >= PQntuples(res) ||
        PQgetlength(res, row, col0) != GW_STORE_ID_LEN)
        return GW_EINTERNAL;
    for (k = 0; k < GW_STORE_READ_COLS; k++)
        get_col(res, row, col0, k, &out->w);
    out->dest_branch = PQgetisnull(res, row, x) ? NULL : PQgetvalue(res, row, x);
    if (!scan_facts_get(res, row, x + 1, out)) {
        memset(out, 0, sizeof(*out));
        return GW_EINTERNAL;
    }
    return 0;
}

/* Sends a simple operation's one statement for r (already on the store's list, its callback
 * set); frees r if it cannot be sent. Returns 0 with *out = r (out may be NULL) or the error. */
static int simple_start(struct gw_store_req *r, const struct gw_db_stmt *st, gw_db_done_cb done,
                        struct gw_store_req **out)
{
    return gw_store_simple_start(r, st, 1, done, out);
}

int gw_store_simple_start(struct gw_store_req *r, const struct gw_db_stmt *st, int nst,
                          gw_db_done_cb done, struct gw_store_req **out)
{
    int err = gw_db_exec(r->store->db, st, nst, GW_DB_TXN, done, r, &r->dbreq);

    if (err != 0) {
        gw_store_req_free(r);
        return err;
    }
    if (out != NULL)
        *out = r;
    return 0;
}

static void get_done_cb(void *arg, int err, const struct gw_db_result *res)
{
    struct gw_store_req *r = arg;
    struct gw_store_row row;
    const PGresult *pr;

    r->dbreq = NULL;
    simple_fail_err(&err, res);
    if (err != 0) {
        r->cb.get(r->arg, err, NULL);
        goto out;
    }
    pr = res->results[1]; /* [0] set the scope */
    r->store->st.rows_read += (uint64_t)PQntuples(pr);
    if (PQntuples(pr) == 0) {
        r->cb.get(r->arg, GW_ENOTFOUND, NULL);
        goto out;
    }
    if (gw_store_row_get(pr, 0, &row) != 0) {
        r->cb.get(r->arg, GW_EINTERNAL, NULL);
        goto out;
    }
    r->cb.get(r->arg, 0, &row);
out:
    gw_store_req_free(r);
}

void gw_store_get_params(const uint8_t wb_bidx[GW_STORE_BIDX_ALTS][GW_STORE_BIDX_LEN],
                         int max_level, const char *vals[GW_STORE_GET_NPARAMS],
                         char level_text[GW_STORE_LEVEL_TEXT])
{
    vals[0] = (const char *)wb_bidx[0];
    vals[1] = (const char *)wb_bidx[1];
    snprintf(level_text, GW_STORE_LEVEL_TEXT, "%d", max_level < 0 ? -1 : max_level);
    vals[2] = level_text;
}

const int gw_store_get_lens[GW_STORE_GET_NPARAMS] = {GW_STORE_BIDX_LEN, GW_STORE_BIDX_LEN, 0};
const int gw_store_get_fmts[GW_STORE_GET_NPARAMS] = {1, 1, 0};

int gw_store_get(struct gw_store *s, const char *scope,
                 const uint8_t wb_bidx[GW_STORE_BIDX_ALTS][GW_STORE_BIDX_LEN], int max_level,
                 gw_store_get_cb cb, void *arg, struct gw_store_req **out)
{
    const char *vals[GW_STORE_GET_NPARAMS], *sv[1];
    char level[GW_STORE_LEVEL_TEXT];
    struct gw_db_stmt st[2];
    struct gw_store_req *r;

    if (out != NULL)
        *out = NULL;
    if (s == NULL || scope == NULL || scope[0] == '\0' || wb_bidx == NULL || cb == NULL)
        return GW_EINVAL;
    gw_store_get_params(wb_bidx, max_level, vals, level);
    gw_store_scope_stmt(&st[0], sv, scope);
    st[1] = (struct gw_db_stmt){.sql = s->get_sql,
                                .nparams = GW_STORE_GET_NPARAMS,
                                .values = vals,
                                .lengths = gw_store_get_lens,
                                .formats = gw_store_get_fmts,
                                .result_format = 1};
    r = gw_store_req_new(s, GW_STORE_RK_GET, arg);
    if (r == NULL)
        return GW_ENOMEM;
    r->cb.get = cb;
    return gw_store_simple_start(r, st, 2, get_done_cb, out);
}

static void segments_done_cb(void *arg, int err, const struct gw_db_result *res)
{
    struct gw_store_req *r = arg;
    struct gw_store_segment *seg = NULL;
    const PGresult *pr;
    int i, n;

    r->dbreq = NULL;
    simple_fail_err(&err, res);
    if (err != 0) {
        r->cb.segments(r->arg, err, NULL, 0);
        goto out;
    }
    pr = res->results[0];
    n = PQntuples(pr);
    if (n > 0) {
        seg = gw_calloc((size_t)n, sizeof(*seg));
        if (seg == NULL) {
            r->cb.segments(r->arg, GW_ENOMEM, NULL, 0);
            goto out;
        }
    }
    for (i = 0; i < n; i++) {
        seg[i].branch = PQgetvalue(pr, i, 0);
        seg[i].prefix = PQgetvalue(pr, i, 1);
        seg[i].range_from = strtoll(PQgetvalue(pr, i, 2), NULL, 10);
        seg[i].range_to = strtoll(PQgetvalue(pr, i, 3), NULL, 10);
    }
    r->cb.segments(r->arg, 0, seg, (size_t)n);
    gw_free(seg);
out:
    gw_store_req_free(r);
}

int gw_store_load_segments(struct gw_store *s, gw_store_segments_cb cb, void *arg,
                           struct gw_store_req **out)
{
    struct gw_db_stmt st = {.sql = "SELECT branch, prefix, range_from, range_to FROM segment "
                                   "ORDER BY prefix, range_from"};
    struct gw_store_req *r;

    if (out != NULL)
        *out = NULL;
    if (s == NULL || cb == NULL)
        return GW_EINVAL;
    r = gw_store_req_new(s, GW_STORE_RK_SEGMENTS, arg);
    if (r == NULL)
        return GW_ENOMEM;
    r->cb.segments = cb;
    return simple_start(r, &st, segments_done_cb, out);
}
