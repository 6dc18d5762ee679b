/* store_reseal.c: the batches of `keys migrate-suite` (see store_reseal.h). The row is read with
 * the store's own column list (store_int.h, decoded by gw_store_row_get like every read), so a
 * column added to record.h is read here too, and so are the *_ct columns of a row of version 1
 * or 2; it is written through waybill_reseal (sql/053) as version 3, its fields sealed as one
 * value (fields_ct). Invariants: every statement is parameterised; a batch commits whole or not
 * at all; each record's arena (clear values, new ciphertext) is wiped when freed. */
#include "store_reseal.h"

#include <arpa/inet.h>
#include <inttypes.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "kek_wrap.h"
#include "pq_msg.h"
#include "store_admin_int.h"
#include "store_int.h"

#define OID_INT4 23
#define OID_BYTEA 17
#define OID_UUID 2950
#define ARENA_CAP (256u * 1024) /* one record opened twice and sealed once, with room */

/* The algorithm byte of dek_wrapped, NULL when it is too short to have one (such a row is taken
 * and fails to open: counted as failed, never skipped silently). */
#define ROW_ALG "CASE WHEN octet_length(w.dek_wrapped) >= 2 THEN get_byte(w.dek_wrapped, 1) END"

int gw_admin_count_suite(struct gw_admin *a, uint8_t alg, bool equal, long long *n, char *errbuf,
                         size_t errlen)
{
    char as[8];
    const char *vals[1] = {as};
    PGresult *res;
    int rc = 0;

    snprintf(as, sizeof(as), "%u", (unsigned)alg);
    res = PQexecParams(a->pg,
                       equal ? "SELECT count(*) FROM waybill w WHERE " ROW_ALG " = $1::integer"
                             : "SELECT count(*) FROM waybill w WHERE (" ROW_ALG
                               ") IS DISTINCT FROM $1::integer",
                       1, NULL, vals, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1)
        rc = gw_admin_refused(res, a, errbuf, errlen);
    else
        *n = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
    PQclear(res);
    return rc;
}

/* SELECT of the batch: the store's columns (as store_read.c reads them) of the rows
 * waybill_reseal_take locks for this transaction, then the two extras gw_store_row_get expects
 * (routing, the scan facts: not needed here). */
static char *select_sql(void)
{
    struct gw_store_sql b = {.len = 0};
    char col[96];

    gw_store_sql_add(&b, "SELECT ");
    for (size_t k = 0; k < GW_STORE_READ_COLS; k++) {
        snprintf(col, sizeof(col), "w.%s", gw_store_col_name(k));
        gw_store_sql_add(&b, "%s", k > 0 ? ", " : "");
        gw_store_sql_expr(&b, gw_store_col_type(k)->select, col);
    }
    gw_store_sql_add(&b, ", NULL::text, NULL::text FROM "
                         "waybill_reseal_take($1::integer, $3, $2::integer) w ORDER BY w.id");
    return b.overflow ? NULL : gw_strdup(b.buf);
}

#define NPARAM 11

/* waybill_reseal (sql/053): the record's id, the wrapped key it was opened with, its new blind
 * indexes, KEK version, wrapped key, content MAC and fields (version 3). */
static const char reseal_sql[] =
    "SELECT waybill_reseal($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)";

/* A blind index parameter: NULL when the record has none. */
static void bidx(const char **v, int *l, const uint8_t *p, bool has)
{
    *v = has ? (const char *)p : NULL;
    *l = has ? GW_RECORD_BIDX_LEN : 0;
}

/* Writes the re-sealed record w (version 3: its fields_ct) over the row whose wrapped key was
 * old. *updated: the row changed (false: it changed meanwhile, left as it is). */
static int write_one(struct gw_admin *a, const char *sql, const struct gw_bytes *old,
                     const struct gw_sealed_waybill *w, bool *updated, char *errbuf, size_t errlen)
{
    const char *v[NPARAM];
    int l[NPARAM], f[NPARAM];
    Oid t[NPARAM];
    uint32_t kek = htonl((uint32_t)w->kek_version);
    PGresult *res;
    int i, rc = 0;

    /* waybill_reseal writes mac_version 3: a record sealed as another version would be stored
     * under a version its AAD does not name, and never open again */
    if (w->mac_version != GW_RECORD_MAC_V3) {
        snprintf(errbuf, errlen, "record re-sealed as MAC version %d, waybill_reseal writes 3",
                 (int)w->mac_version);
        return GW_EINTERNAL;
    }
    for (i = 0; i < NPARAM; i++) {
        f[i] = 1;
        t[i] = OID_BYTEA;
    }
    v[0] = (const char *)w->id;
    l[0] = GW_RECORD_ID_LEN;
    t[0] = OID_UUID;
    v[1] = (const char *)old->p;
    l[1] = (int)old->n;
    v[2] = (const char *)w->wb_bidx;
    l[2] = GW_RECORD_BIDX_LEN;
    bidx(&v[3], &l[3], w->sender_phone_bidx, w->has_sender_phone_bidx);
    bidx(&v[4], &l[4], w->recipient_phone_bidx, w->has_recipient_phone_bidx);
    bidx(&v[5], &l[5], w->sender_id_bidx, w->has_sender_id_bidx);
    bidx(&v[6], &l[6], w->recipient_id_bidx, w->has_recipient_id_bidx);
    v[7] = (const char *)&kek;
    l[7] = 4;
    t[7] = OID_INT4;
    v[8] = (const char *)w->dek_wrapped.p;
    l[8] = (int)w->dek_wrapped.n;
    v[9] = (const char *)w->content_mac;
    l[9] = GW_RECORD_MAC_LEN;
    v[10] = (const char *)w->fields_ct.p; /* NULL: refused by waybill_reseal (WS001) */
    l[10] = (int)w->fields_ct.n;
    res = PQexecParams(a->pg, sql, NPARAM, t, v, l, f, 1);
    if (PQresultStatus(res) == PGRES_FATAL_ERROR) {
        const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
        rc = gw_admin_refused(res, a, errbuf, errlen);
        if (state != NULL && strcmp(state, "23505") == 0)
            rc = GW_EEXIST;
    } else if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1 ||
               PQgetlength(res, 0, 0) != 1)
        rc = gw_admin_refused(res, a, errbuf, errlen);
    else
        *updated = PQgetvalue(res, 0, 0)[0] != 0;
    PQclear(res);
    return rc;
}

/* Appends the blind index's hex to the list at *p (one entry, comma-separated). */
static char *add_phone(char *p, const uint8_t bidx[GW_RECORD_BIDX_LEN])
{
    static const char hex[] = "0123456789abcdef";

    for (size_t k = 0; k < GW_RECORD_BIDX_LEN; k++) {
        *p++ = hex[bidx[k] >> 4];
        *p++ = hex[bidx[k] & 15];
    }
    *p++ = ',';
    return p;
}

/* Locks the register's rows (phone_owner) of the listed sender phones (hex, comma-separated,
 * list_len bytes with the last comma) in blind-index order, through phone_register_lock
 * (sql/049). */
static int lock_phones(struct gw_admin *a, char *list, size_t list_len, char *errbuf, size_t errlen)
{
    const char *vals[1] = {list};
    PGresult *res;
    int rc = 0;

    if (list_len == 0)
        return 0;
    list[list_len - 1] = '\0'; /* the last comma */
    res = PQexecParams(a->pg,
                       "SELECT phone_register_lock(ARRAY(SELECT decode(h, 'hex') FROM "
                       "unnest(string_to_array($1, ',')) AS h))",
                       1, NULL, vals, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK)
        rc = gw_admin_refused(res, a, errbuf, errlen);
    PQclear(res);
    return rc;
}

/* Opens row i of the batch and seals it under the target suite into out (arena: *arena, new).
 * Returns 0, 1 when fn refused it, or a negative error (said in errbuf). */
static int open_row(const PGresult *res, int i, gw_admin_reseal_fn fn, void *arg,
                    struct gw_store_row *row, struct gw_arena **arena,
                    struct gw_sealed_waybill *out, char *errbuf, size_t errlen)
{
    *arena = NULL;
    if (gw_store_row_get(res, i, row) != 0) {
        gw_pq_msg(errbuf, errlen, "unexpected column types in table waybill");
        return GW_EINTERNAL;
    }
    if ((*arena = gw_arena_new(ARENA_CAP)) == NULL) {
        gw_pq_msg(errbuf, errlen, "out of memory");
        return GW_ENOMEM;
    }
    if (fn(arg, &row->w, *arena, out) != 0) {
        gw_arena_free(*arena);
        *arena = NULL;
        return 1;
    }
    return 0;
}

int gw_admin_reseal_batch(struct gw_admin *a, struct gw_admin_reseal *b, gw_admin_reseal_fn fn,
                          void *arg, char *errbuf, size_t errlen)
{
    char as[8], ls[24];
    const char *params[3] = {as, ls, b->have_cursor ? (const char *)b->cursor : NULL};
    static const int lens[3] = {0, 0, 16}, fmts[3] = {0, 0, 1};
    static const Oid types[3] = {0, 0, OID_UUID};
    char *sel = NULL, *phones = NULL, *pp;
    bool *opened = NULL;
    long updated = 0, failed = 0;
    PGresult *res = NULL;
    int i, n, rc;

    b->seen = b->updated = b->failed = 0;
    sel = select_sql();
    if (sel == NULL) {
        gw_pq_msg(errbuf, errlen, "out of memory");
        return GW_ENOMEM;
    }
    snprintf(as, sizeof(as), "%u", (unsigned)b->target);
    snprintf(ls, sizeof(ls), "%ld", b->limit);
    rc = gw_admin_command(a, "BEGIN", errbuf, errlen);
    if (rc != 0)
        goto out;
    res = PQexecParams(a->pg, sel, 3, types, params, lens, fmts, 1);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        rc = gw_admin_refused(res, a, errbuf, errlen);
        goto fail;
    }
    n = PQntuples(res);
    /* two wraps a record (each is sealed twice: below), leased for exactly the records taken,
     * before the first wrap, on the lease connection (sql/050): committed even if the batch then
     * rolls back; none when nothing was taken. Short of them (the version's limit): the batch is
     * refused with the database's words */
    if (n > 0) {
        rc = gw_admin_wrap_cover(b->lease, b->target, b->kek_version, 2 * (uint64_t)n, errbuf,
                                 errlen);
        if (rc != 0)
            goto fail;
    }
    /* First every record is opened and sealed once for its sender phone's blind indexes, old and
     * new, whose register rows are then locked in blind-index order (sql/049) before the first
     * UPDATE: each UPDATE's trigger (sql/013) takes its new phone's row, in record-id order, and a
     * destruction takes its records' rows in blind-index order (sql/046), so two phones met in
     * opposite orders deadlocked. The records are sealed again to be written (fresh keys; the
     * blind indexes come out the same): the batch keeps no record's clear values meanwhile. */
    opened = gw_calloc(n > 0 ? (size_t)n : 1, sizeof(*opened));
    phones = gw_malloc((size_t)n * 2 * (2 * GW_RECORD_BIDX_LEN + 1) + 1);
    if (opened == NULL || phones == NULL) {
        gw_pq_msg(errbuf, errlen, "out of memory");
        rc = GW_ENOMEM;
        goto fail;
    }
    pp = phones;
    for (i = 0; i < n; i++) {
        struct gw_store_row row;
        struct gw_sealed_waybill out;
        struct gw_arena *arena;

        rc = open_row(res, i, fn, arg, &row, &arena, &out, errbuf, errlen);
        if (rc < 0)
            goto fail;
        memcpy(b->cursor, row.w.id, 16);
        b->have_cursor = true;
        if (rc > 0) {
            rc = 0;
            failed++;
            continue;
        }
        opened[i] = true;
        if (row.w.has_sender_phone_bidx)
            pp = add_phone(pp, row.w.sender_phone_bidx);
        if (out.has_sender_phone_bidx)
            pp = add_phone(pp, out.sender_phone_bidx);
        gw_arena_free(arena);
    }
    rc = lock_phones(a, phones, (size_t)(pp - phones), errbuf, errlen);
    if (rc != 0)
        goto fail;
    for (i = 0; i < n; i++) {
        struct gw_store_row row;
        struct gw_sealed_waybill out;
        struct gw_arena *arena;
        bool one = false;

        if (!opened[i])
            continue;
        rc = open_row(res, i, fn, arg, &row, &arena, &out, errbuf, errlen);
        if (rc < 0)
            goto fail;
        if (rc > 0) {
            rc = 0;
            failed++;
            continue;
        }
        /* a savepoint per record: a unique violation fails that record, not the batch */
        rc = gw_admin_command(a, "SAVEPOINT reseal", errbuf, errlen);
        if (rc == 0)
            rc = write_one(a, reseal_sql, &row.w.dek_wrapped, &out, &one, errbuf, errlen);
        gw_arena_free(arena);
        if (rc == GW_EEXIST) {
            rc = gw_admin_command(a, "ROLLBACK TO SAVEPOINT reseal", errbuf, errlen);
            if (rc != 0)
                goto fail;
            if (b->conflict != NULL)
                b->conflict(arg, row.w.id);
            failed++;
            continue;
        }
        if (rc != 0)
            goto fail;
        updated += one;
    }
    PQclear(res);
    res = NULL;
    rc = gw_admin_command(a, "COMMIT", errbuf, errlen);
    if (rc != 0)
        goto fail;
    b->seen = n;
    b->updated = updated;
    b->failed = failed;
    goto out;
fail:
    PQclear(res);
    res = PQexec(a->pg, "ROLLBACK");
    PQclear(res);
out:
    gw_free(opened);
    gw_free(phones);
    gw_free(sel);
    return rc;
}
