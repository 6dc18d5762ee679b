/* store_read.c: the store's simple operations, one statement each: read a sealed waybill by its
 * number's blind index, load the segments. Invariant: a handle is freed
 * exactly once, after its callback or at cancel (then the db request is cancelled first). */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "db.h"
#include "log.h"
#include "store.h"
#include "store_int.h"

static const char *const get_fixed_cols =
    "id, origin_branch, submitted_by, dest_region_code, weight_grams, service_type, "
    "security_level, to_char(pickup_day, 'YYYY-MM-DD'), wb_bidx, sender_phone_bidx, "
    "recipient_phone_bidx, sender_id_bidx, recipient_id_bidx, kek_version, dek_version, "
    "dek_wrapped, content_mac, extract(epoch FROM created_at)::bigint";
#define GET_NFIXED 18

char *gw_store_get_sql_new(void)
{
    struct gw_store_sql b = {.len = 0};
    size_t i;

    gw_store_sql_add(&b, "SELECT %s", get_fixed_cols);
    for (i = 0; i < GW_COL_COUNT; i++)
        gw_store_sql_add(&b, ", %s", gw_col_sql[i]);
    gw_store_sql_add(&b, " FROM waybill WHERE wb_bidx = $1");
    return b.overflow ? NULL : gw_strdup(b.buf);
}

static void simple_fail_err(int *err, const struct gw_db_result *res)
{
    (void)res;
    if (*err != 0 && *err != GW_EUNAVAIL)
        *err = GW_EINTERNAL;
}

static const uint8_t *bin(const PGresult *res, int col, int len)
{
    if (PQgetisnull(res, 0, col) || (len >= 0 && PQgetlength(res, 0, col) != len))
        return NULL;
    return (const uint8_t *)PQgetvalue(res, 0, col);
}

static int32_t get_i32(const PGresult *res, int col)
{
    uint32_t v;
    if (PQgetisnull(res, 0, col) || PQgetlength(res, 0, col) != 4)
        return 0;
    memcpy(&v, PQgetvalue(res, 0, col), 4);
    return (int32_t)ntohl(v);
}

static int16_t get_i16(const PGresult *res, int col)
{
    uint16_t v;
    if (PQgetisnull(res, 0, col) || PQgetlength(res, 0, col) != 2)
        return 0;
    memcpy(&v, PQgetvalue(res, 0, col), 2);
    return (int16_t)ntohs(v);
}

static int64_t get_i64(const PGresult *res, int col)
{
    const uint8_t *p;
    uint64_t v = 0;

    if (PQgetisnull(res, 0, col) || PQgetlength(res, 0, col) != 8)
        return 0;
    p = (const uint8_t *)PQgetvalue(res, 0, col);
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return (int64_t)v;
}

static const char *get_str(const PGresult *res, int col)
{
    return PQgetisnull(res, 0, col) ? NULL : PQgetvalue(res, 0, col);
}

static void copy_bidx(const PGresult *res, int col, uint8_t dst[GW_STORE_BIDX_LEN], bool *has)
{
    const uint8_t *b = bin(res, col, GW_STORE_BIDX_LEN);
    *has = b != NULL;
    if (b != NULL)
        memcpy(dst, b, GW_STORE_BIDX_LEN);
}

/* Sends a simple operation's one statement for r (already on the store's list, its callback
 * set); frees r if it cannot be sent. Returns 0 with *out = r (out may be NULL) or the error. */
static int simple_start(struct gw_store_req *r, const struct gw_db_stmt *st, gw_db_done_cb done,
                        struct gw_store_req **out)
{
    int err = gw_db_exec(r->store->db, st, 1, 0, done, r, &r->dbreq);

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
    struct gw_sealed_waybill w;
    const PGresult *pr;
    const uint8_t *b;
    bool dummy;
    int i;

    r->dbreq = NULL;
    simple_fail_err(&err, res);
    if (err != 0) {
        r->cb.get(r->arg, err, NULL);
        goto out;
    }
    pr = res->results[0];
    if (PQntuples(pr) == 0) {
        r->cb.get(r->arg, GW_ENOTFOUND, NULL);
        goto out;
    }
    memset(&w, 0, sizeof(w));
    if (PQnfields(pr) != GET_NFIXED + GW_COL_COUNT || (b = bin(pr, 0, GW_STORE_ID_LEN)) == NULL) {
        r->cb.get(r->arg, GW_EINTERNAL, NULL);
        goto out;
    }
    memcpy(w.id, b, GW_STORE_ID_LEN);
    w.origin_branch = get_str(pr, 1);
    w.submitted_by = get_str(pr, 2);
    w.dest_region_code = get_str(pr, 3);
    w.weight_grams = get_i32(pr, 4);
    w.service_type = get_str(pr, 5);
    w.security_level = get_i16(pr, 6);
    w.pickup_day = get_str(pr, 7);
    copy_bidx(pr, 8, w.wb_bidx, &dummy);
    copy_bidx(pr, 9, w.sender_phone_bidx, &w.has_sender_phone_bidx);
    copy_bidx(pr, 10, w.recipient_phone_bidx, &w.has_recipient_phone_bidx);
    copy_bidx(pr, 11, w.sender_id_bidx, &w.has_sender_id_bidx);
    copy_bidx(pr, 12, w.recipient_id_bidx, &w.has_recipient_id_bidx);
    w.kek_version = get_i32(pr, 13);
    w.dek_version = get_i32(pr, 14);
    w.dek_wrapped.p = (uint8_t *)PQgetvalue(pr, 0, 15);
    w.dek_wrapped.n = (size_t)PQgetlength(pr, 0, 15);
    if ((b = bin(pr, 16, GW_STORE_MAC_LEN)) != NULL)
        memcpy(w.content_mac, b, GW_STORE_MAC_LEN);
    w.created_at = get_i64(pr, 17);
    for (i = 0; i < GW_COL_COUNT; i++) {
        if (PQgetisnull(pr, 0, GET_NFIXED + i))
            continue;
        w.ct[i].p = (uint8_t *)PQgetvalue(pr, 0, GET_NFIXED + i);
        w.ct[i].n = (size_t)PQgetlength(pr, 0, GET_NFIXED + i);
    }
    r->cb.get(r->arg, 0, &w);
out:
    gw_store_req_free(r);
}

int gw_store_get(struct gw_store *s, const uint8_t wb_bidx[GW_STORE_BIDX_LEN], gw_store_get_cb cb,
                 void *arg, struct gw_store_req **out)
{
    const char *vals[1] = {(const char *)wb_bidx};
    static const int lens[1] = {GW_STORE_BIDX_LEN}, fmts[1] = {1};
    struct gw_db_stmt st = {
        .nparams = 1, .values = vals, .lengths = lens, .formats = fmts, .result_format = 1};
    struct gw_store_req *r;

    if (out != NULL)
        *out = NULL;
    if (s == NULL || wb_bidx == NULL || cb == NULL)
        return GW_EINVAL;
    st.sql = s->get_sql;
    r = gw_store_req_new(s, GW_STORE_RK_GET, arg);
    if (r == NULL)
        return GW_ENOMEM;
    r->cb.get = cb;
    return simple_start(r, &st, get_done_cb, out);
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
