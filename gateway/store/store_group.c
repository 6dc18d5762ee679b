/* store_group.c: the group statement: a sealed waybill copied into a self-contained item, the SQL
 * text that stores a whole group at once, and its parameters as binary PostgreSQL arrays (one
 * element per item), all built from one column list (store_int.h: the record's clear columns with
 * fields_ct, then the number's blind index under each other suite). Invariants: parameter k of
 * every item is column k of the statement (k < GW_STORE_WRITE_COLS); only version 3 is written
 * (gw_store_item_new: fields_ct, no *_ct, no record MAC); items
 * and a send's arrays carry ciphertext and blind indexes and are freed with gw_free_wipe; when the
 * keyring holds more than one suite, a group takes its numbers' locks (number_lock_key) in one
 * statement before the insert, in ascending key order, so two such groups never deadlock on them.
 */
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "db.h"
#include "store.h"
#include "store_int.h"

#define NCOLS GW_STORE_WRITE_COLS
#define NPARAMS GW_STORE_NPARAMS

/* pg_type OIDs of the parameter arrays' elements. */
#define OID_BYTEA 17
#define OID_INT4 23
#define OID_TEXT 25
#define OID_UUID 2950

/* The lock on a waybill number, for as long as the group's transaction: pg_advisory_xact_lock
 * (class, key), class 1399 (store_scan.c's scans are 1398), key a number_lock_key. The keys come
 * sorted and unnest yields them in array order, so every group takes its locks in one order. */
#define NUMBER_LOCK_CLASS "1399"
static const char number_lock_sql[] =
    "SELECT count(pg_advisory_xact_lock(" NUMBER_LOCK_CLASS ", k)) FROM unnest($1::integer[]) AS k";

/* Indexed by enum gw_rec_kind. */
static const struct gw_store_sqltype sqltypes[] = {
    [GW_REC_UUID] = {"uuid", OID_UUID, false, "%s", "%s"},
    [GW_REC_BIDX] = {"bytea", OID_BYTEA, false, "%s", "%s"},
    [GW_REC_MAC] = {"bytea", OID_BYTEA, false, "%s", "%s"},
    [GW_REC_BYTES] = {"bytea", OID_BYTEA, false, "%s", "%s"},
    [GW_REC_TEXT] = {"text", OID_TEXT, true, "%s", "%s"},
    [GW_REC_DATE] = {"text", OID_TEXT, true, "%s::date", "to_char(%s, 'YYYY-MM-DD')"},
    [GW_REC_I16] = {"text", OID_TEXT, true, "%s::smallint", "%s"},
    [GW_REC_I32] = {"text", OID_TEXT, true, "%s::integer", "%s"},
    [GW_REC_TIME] = {"text", OID_TEXT, true, "to_timestamp(%s::bigint)",
                     "extract(epoch FROM %s)::bigint"},
};

const char *gw_store_col_name(size_t k)
{
    return k < GW_REC_NCOLS ? gw_rec_cols[k].name : gw_col_sql[k - GW_REC_NCOLS];
}

enum gw_rec_kind gw_store_col_kind(size_t k)
{
    return k < GW_REC_NCOLS ? gw_rec_cols[k].kind : GW_REC_BYTES;
}

const struct gw_store_sqltype *gw_store_col_type(size_t k)
{
    return &sqltypes[gw_store_col_kind(k)];
}

/* The SQL type of parameter k: column k's, or a blind index for the alternatives after them. */
static const struct gw_store_sqltype *param_type(size_t k)
{
    return k < NCOLS ? gw_store_col_type(k) : &sqltypes[GW_REC_BIDX];
}

/* Parameter k's value in w (column k, or alternative index k - NCOLS); false when it is SQL
 * NULL. */
static bool col_value(const struct gw_sealed_waybill *w, size_t k, char num[GW_REC_NUM_MAX],
                      const uint8_t **p, size_t *n)
{
    _Static_assert(NCOLS == GW_REC_NCOLS, "the written columns are the clear ones");
    if (k < NCOLS)
        return gw_rec_value(w, &gw_rec_cols[k], num, p, n);
    *p = k - NCOLS < w->n_alt ? w->alt_wb_bidx[k - NCOLS] : NULL;
    *n = *p != NULL ? GW_STORE_BIDX_LEN : 0;
    return *p != NULL;
}

/* ---- SQL text ---- */

void gw_store_sql_add(struct gw_store_sql *b, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (b->overflow)
        return;
    va_start(ap, fmt);
    n = vsnprintf(b->buf + b->len, sizeof(b->buf) - b->len, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof(b->buf) - b->len) {
        b->overflow = true;
        return;
    }
    b->len += (size_t)n;
}

void gw_store_sql_expr(struct gw_store_sql *b, const char *expr, const char *arg)
{
    const char *at = strstr(expr, "%s");

    if (at == NULL) {
        gw_store_sql_add(b, "%s", expr);
        return;
    }
    gw_store_sql_add(b, "%.*s%s%s", (int)(at - expr), expr, arg, at + 2);
}

/* The written column names in parameter order; with prefix "v." and casts, the expressions that
 * turn the parameter arrays' elements into the columns' types. */
static void add_cols(struct gw_store_sql *b, const char *prefix, bool casts)
{
    char expr[96];
    size_t k;

    for (k = 0; k < NCOLS; k++) {
        snprintf(expr, sizeof(expr), "%s%s", prefix, gw_store_col_name(k));
        gw_store_sql_add(b, "%s", k > 0 ? ", " : "");
        if (casts)
            gw_store_sql_expr(b, gw_store_col_type(k)->insert, expr);
        else
            gw_store_sql_add(b, "%s", expr);
    }
}

/* The number's alternative indexes in v, as a list of SQL expressions. */
static void add_alts(struct gw_store_sql *b)
{
    for (size_t a = 1; a <= GW_RECORD_ALTS; a++)
        gw_store_sql_add(b, "%sv.wb_alt%zu", a > 1 ? ", " : "", a);
}

/* One statement stores a whole group: every parameter is an array with one element per waybill
 * (unnest zips them), the insert is idempotent on wb_bidx and on the number's blind index under
 * every other suite the keyring holds (wb_alt*: a row of that number stored under another suite,
 * e.g. during a migration, is not inserted again), and each waybill comes back as one row
 * (ordinal, created, id, content_mac): created with the submitted id, or the id and MAC of the
 * row already stored under that number, under any of its indexes. Each waybill inserted (only
 * those: `ins`, never a duplicate) enqueues its delivery to the backend in the same statement (ob:
 * sql/012_outbox.sql), so the two commit or roll back together. A waybill with no row met a
 * concurrent insert of the same number (in flight elsewhere, or earlier in this very group) and
 * goes again. A created waybill's row also carries its outbox row (id, delivery_id, enqueued_at:
 * GW_STORE_GROUP_RESULT_COLS), which the fast path sends from memory under the lease its insert
 * took (store.h: gw_store_fast_hook). */
char *gw_store_group_sql_new(void)
{
    struct gw_store_sql b = {.len = 0};
    size_t i;

    gw_store_sql_add(&b, "WITH v AS (SELECT * FROM unnest(");
    for (i = 0; i < NPARAMS; i++)
        gw_store_sql_add(&b, "%s$%zu::%s[]", i > 0 ? ", " : "", i + 1, param_type(i)->array);
    gw_store_sql_add(&b, ") WITH ORDINALITY AS v(");
    add_cols(&b, "", false);
    for (i = 1; i <= GW_RECORD_ALTS; i++)
        gw_store_sql_add(&b, ", wb_alt%zu", i);
    gw_store_sql_add(&b, ", ord)), ins AS (INSERT INTO waybill (");
    add_cols(&b, "", false);
    gw_store_sql_add(&b, ") SELECT ");
    add_cols(&b, "v.", true);
    gw_store_sql_add(&b, " FROM v WHERE NOT EXISTS (SELECT 1 FROM waybill x WHERE x.wb_bidx IN (");
    add_alts(&b);
    gw_store_sql_add(&b, ")) ORDER BY v.ord ON CONFLICT (wb_bidx) DO NOTHING "
                         "RETURNING id, content_mac), ");
    /* the fast path's lease: $NPARAMS+1 the owner, $NPARAMS+2 the lease in milliseconds; both
     * NULL without one (lease_until NULL + ... is NULL) */
    gw_store_sql_add(&b,
                     "ob AS (INSERT INTO outbox (kind, waybill_id, lease_owner, lease_until) "
                     "SELECT 1, ins.id, $%d::text, "
                     "clock_timestamp() + $%d::bigint * interval '1 millisecond' FROM ins "
                     "RETURNING id, delivery_id, waybill_id, enqueued_at) ",
                     NPARAMS + 1, NPARAMS + 2);
    gw_store_sql_add(&b, "SELECT v.ord::integer, true, ins.id, ins.content_mac, ob.id, "
                         "ob.delivery_id, (extract(epoch FROM ob.enqueued_at) * 1000000)::bigint "
                         "FROM v JOIN ins ON ins.id = v.id JOIN ob ON ob.waybill_id = ins.id "
                         "UNION ALL "
                         "SELECT v.ord::integer, false, w.id, w.content_mac, NULL::bigint, "
                         "NULL::uuid, NULL::bigint "
                         "FROM v JOIN waybill w ON w.wb_bidx IN (v.wb_bidx, ");
    add_alts(&b);
    gw_store_sql_add(&b, ") WHERE NOT EXISTS (SELECT 1 FROM ins WHERE ins.id = v.id)");
    return b.overflow ? NULL : gw_strdup(b.buf);
}

/* ---- binary array parameters ---- */

/* One-dimensional arrays in PostgreSQL's binary format (array_recv): a header, then each
 * element's length (-1 for NULL) and bytes. */
#define ARR_HEADER 20u

static uint8_t *put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
    return p + 4;
}

/* The size of column k's array for g. */
static size_t arr_size(const struct gw_store_group *g, size_t k)
{
    size_t n = ARR_HEADER, i;

    for (i = 0; i < g->n; i++)
        n += 4u + (g->items[i]->values[k] != NULL ? (size_t)g->items[i]->lengths[k] : 0u);
    return n;
}

/* Writes column k's array for g at p (arr_size bytes): one dimension of g->n elements of type
 * oid, lower bound 1, "may hold NULLs". Returns the end. */
/* The header of a one-dimensional binary array of n elements of type oid, lower bound 1. */
static uint8_t *arr_header(uint8_t *p, uint32_t oid, uint32_t n, bool may_hold_nulls)
{
    p = put32(p, 1);
    p = put32(p, may_hold_nulls ? 1u : 0u);
    p = put32(p, oid);
    p = put32(p, n);
    return put32(p, 1);
}

static uint8_t *arr_write(uint8_t *p, const struct gw_store_group *g, size_t k, uint32_t oid)
{
    size_t i;

    p = arr_header(p, oid, (uint32_t)g->n, true);
    for (i = 0; i < g->n; i++) {
        const struct gw_store_item *it = g->items[i];

        if (it->values[k] == NULL) {
            p = put32(p, 0xffffffffu); /* NULL */
            continue;
        }
        p = put32(p, (uint32_t)it->lengths[k]);
        if (it->lengths[k] > 0)
            memcpy(p, it->values[k], (size_t)it->lengths[k]);
        p += it->lengths[k];
    }
    return p;
}

/* ---- items ---- */

void gw_store_item_free(struct gw_store_item *it)
{
    if (it == NULL)
        return;
    gw_store_sealed_free(it->sealed);
    gw_free_wipe(it, it->alloc_size);
}

/* ---- a sealed record's deep copy (the fast path's) ---- */

struct sealed_copy {
    size_t size;
    struct gw_sealed_waybill w;
    /* then the strings and byte strings */
};

static void *copy_bytes(char **at, const void *p, size_t n)
{
    void *dst = *at;

    if (n > 0)
        memcpy(dst, p, n);
    *at += n;
    return dst;
}

static const char *copy_str(char **at, const char *s)
{
    return s != NULL ? copy_bytes(at, s, strlen(s) + 1) : NULL;
}

static size_t str_size(const char *s)
{
    return s != NULL ? strlen(s) + 1 : 0;
}

struct gw_sealed_waybill *gw_store_sealed_dup(const struct gw_sealed_waybill *w)
{
    size_t size = sizeof(struct sealed_copy) + str_size(w->origin_branch) +
                  str_size(w->submitted_by) + str_size(w->dest_region_code) +
                  str_size(w->service_type) + str_size(w->pickup_day) + w->dek_wrapped.n +
                  (w->fields_ct.p != NULL ? w->fields_ct.n : 0);
    struct sealed_copy *c;
    char *at;

    for (size_t k = 0; k < GW_COL_COUNT; k++)
        size += w->ct[k].p != NULL ? w->ct[k].n : 0;
    c = gw_malloc(size);
    if (c == NULL)
        return NULL;
    c->size = size;
    c->w = *w;
    at = (char *)(c + 1);
    c->w.origin_branch = copy_str(&at, w->origin_branch);
    c->w.submitted_by = copy_str(&at, w->submitted_by);
    c->w.dest_region_code = copy_str(&at, w->dest_region_code);
    c->w.service_type = copy_str(&at, w->service_type);
    c->w.pickup_day = copy_str(&at, w->pickup_day);
    if (w->dek_wrapped.p != NULL)
        c->w.dek_wrapped.p = copy_bytes(&at, w->dek_wrapped.p, w->dek_wrapped.n);
    if (w->fields_ct.p != NULL)
        c->w.fields_ct.p = copy_bytes(&at, w->fields_ct.p, w->fields_ct.n);
    for (size_t k = 0; k < GW_COL_COUNT; k++)
        if (w->ct[k].p != NULL)
            c->w.ct[k].p = copy_bytes(&at, w->ct[k].p, w->ct[k].n);
    return &c->w;
}

void gw_store_sealed_free(struct gw_sealed_waybill *w)
{
    struct sealed_copy *c;

    if (w == NULL)
        return;
    c = (struct sealed_copy *)((char *)w - offsetof(struct sealed_copy, w));
    gw_free_wipe(c, c->size); /* blind indexes and ciphertexts */
}

static bool opt_present(const char *s)
{
    return s != NULL && s[0] != '\0';
}

/* Whether w is a record of the version the store writes: version 3, its fields in fields_ct, no
 * field's ciphertext of its own and no record MAC (sql/053's CHECK refuses anything else, and
 * with it the whole group the record would share a statement with). */
static bool writable_version(const struct gw_sealed_waybill *w)
{
    if (w->mac_version != GW_RECORD_MAC_V3 || w->has_record_mac || w->fields_ct.p == NULL ||
        w->fields_ct.n == 0)
        return false;
    for (size_t k = 0; k < GW_COL_COUNT; k++)
        if (w->ct[k].p != NULL || w->ct[k].n != 0)
            return false;
    return true;
}

/* Copies one sealed waybill into a self-contained item with its parameter values ready: every
 * written column's value (gw_rec_value: binary bytes, or text for the text-typed columns) is
 * copied into the item's trailing buffer. */
int gw_store_item_new(const struct gw_sealed_waybill *w, struct gw_store_item **out)
{
    size_t size = sizeof(struct gw_store_item), k, n;
    char num[GW_REC_NUM_MAX];
    struct gw_store_item *it;
    const uint8_t *v;
    char *p;

    *out = NULL;
    if (!opt_present(w->origin_branch) || !opt_present(w->submitted_by) ||
        w->dek_wrapped.p == NULL || w->dek_wrapped.n == 0 || !writable_version(w))
        return GW_EINVAL;
    for (k = 0; k < NPARAMS; k++) {
        if (!col_value(w, k, num, &v, &n))
            continue;
        if (n > INT_MAX / 2)
            return GW_ETOOBIG;
        size += n;
    }
    it = gw_calloc(1, size);
    if (it == NULL)
        return GW_ENOMEM;
    it->alloc_size = size;
    memcpy(it->id, w->id, GW_STORE_ID_LEN);
    memcpy(it->mac, w->content_mac, GW_STORE_MAC_LEN);
    it->n_alt = w->n_alt < GW_RECORD_ALTS ? w->n_alt : GW_RECORD_ALTS;
    memcpy(it->alt_mac, w->alt_content_mac, it->n_alt * GW_STORE_MAC_LEN);
    memcpy(it->wb, w->wb_bidx, GW_STORE_BIDX_LEN);
    if (w->has_sender_phone_bidx)
        memcpy(it->sort_phone, w->sender_phone_bidx, GW_STORE_BIDX_LEN);
    if (w->has_sender_id_bidx)
        memcpy(it->sort_id, w->sender_id_bidx, GW_STORE_BIDX_LEN);
    p = (char *)(it + 1);
    for (k = 0; k < NPARAMS; k++) {
        if (!col_value(w, k, num, &v, &n)) {
            it->values[k] = NULL;
            continue;
        }
        if (n > 0)
            memcpy(p, v, n);
        it->values[k] = p;
        it->lengths[k] = (int)n;
        p += n;
    }
    *out = it;
    return 0;
}

/* ---- the numbers' locks ---- */

/* The number's lock key: the first 4 bytes (big-endian) of the least (memcmp) of its blind
 * indexes under the suites the keyring holds (its own, wb, and the alternatives). Gateways whose
 * keyrings hold the same suites compute the same key for a number, whatever suite each seals
 * under: an aes and an sm gateway during a migration (both holding both) wait for each other.
 * Two numbers may share a key: they are then only serialised, never confused. */
static uint32_t number_lock_key(const struct gw_store_item *it)
{
    const uint8_t *least = it->wb;

    for (size_t a = 0; a < it->n_alt; a++) {
        const uint8_t *alt = (const uint8_t *)it->values[NCOLS + a];
        if (alt != NULL && memcmp(alt, least, GW_STORE_BIDX_LEN) < 0)
            least = alt;
    }
    return (uint32_t)least[0] << 24 | (uint32_t)least[1] << 16 | (uint32_t)least[2] << 8 | least[3];
}

static int key_cmp(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

    return x < y ? -1 : x > y;
}

/* The lock keys of g's items whose keyring held another suite (n_alt > 0), sorted, without
 * repeats, as a binary integer[] at buf (room for GW_STORE_GROUP_MAX); 0 when there are none
 * (the keyring holds one suite: no lock, no statement), else the array's length in bytes. */
static size_t number_lock_array(const struct gw_store_group *g, uint8_t *buf)
{
    uint32_t keys[GW_STORE_GROUP_MAX];
    size_t n = 0, u = 0, i;
    uint8_t *p = buf;

    for (i = 0; i < g->n && n < GW_STORE_GROUP_MAX; i++)
        if (g->items[i]->n_alt > 0)
            keys[n++] = number_lock_key(g->items[i]);
    if (n == 0)
        return 0;
    qsort(keys, n, sizeof(keys[0]), key_cmp);
    for (i = 0; i < n; i++)
        if (u == 0 || keys[i] != keys[u - 1])
            keys[u++] = keys[i];
    p = arr_header(p, OID_INT4, (uint32_t)u, false);
    for (i = 0; i < u; i++) {
        p = put32(p, 4);
        p = put32(p, keys[i]);
    }
    gw_wipe(keys, n * sizeof(keys[0])); /* parts of blind indexes, like the arrays */
    return (size_t)(p - buf);
}

/* ---- sending a group ---- */

/* Sends g as one statement (one transaction), after the statement that takes its numbers' locks
 * when its keyring holds more than one suite: the insert is the request's last statement. Returns
 * 0 or the gw_db_exec error (g is then not sent). The arrays are built in one buffer of their
 * exact total size, copied by gw_db_exec and wiped and freed here. done (store.c's completion)
 * gets g. */
int gw_store_group_send(struct gw_store *s, struct gw_store_group *g, gw_db_done_cb done)
{
    uint8_t locks[ARR_HEADER + GW_STORE_GROUP_MAX * 8u];
    const char *values[NPARAMS + 2], *lock_value[1] = {(const char *)locks};
    int lengths[NPARAMS + 2], formats[NPARAMS + 2], lock_length[1], lock_format[1] = {1};
    char lease[16];
    const char *scope[1];
    struct gw_db_stmt st[3];
    size_t total = 0, k, nlocks;
    uint8_t *buf, *p;
    int rc, nst = 1;

    for (k = 0; k < NPARAMS; k++) {
        size_t n = arr_size(g, k);

        if (n > INT_MAX || total > SIZE_MAX - n)
            return GW_ENOMEM;
        lengths[k] = (int)n;
        total += n;
    }
    buf = gw_malloc(total);
    if (buf == NULL)
        return GW_ENOMEM;
    p = buf;
    for (k = 0; k < NPARAMS; k++) {
        values[k] = (const char *)p;
        formats[k] = 1;
        p = arr_write(p, g, k, param_type(k)->oid);
    }
    /* The fast path's lease (text parameters), or none. */
    snprintf(lease, sizeof(lease), "%u", (unsigned)s->fast.lease_ms);
    values[NPARAMS] = g->fast > 0 ? s->fast_owner : NULL;
    values[NPARAMS + 1] = g->fast > 0 ? lease : NULL;
    lengths[NPARAMS] = lengths[NPARAMS + 1] = 0;
    formats[NPARAMS] = formats[NPARAMS + 1] = 0;
    /* Every row: ON CONFLICT reads the row already stored under a number, of whatever branch
     * (idempotency); the waybill table by its indexes only (GW_STORE_SCOPE_INDEXED_SQL).
     * Pipelined with the insert: no extra round trip. */
    gw_store_scope_indexed_stmt(&st[0], scope, GW_STORE_SCOPE_ALL);
    /* The numbers' locks, in a statement of their own: the insert's NOT EXISTS then reads a
     * snapshot taken once they are held (READ COMMITTED: one per statement), so it sees a row
     * that a gateway of another suite committed while this one waited. Without them two such
     * inserts of one new number would each miss the other's uncommitted row under a different
     * wb_bidx (the unique index is per suite). */
    nlocks = number_lock_array(g, locks);
    if (nlocks > 0) {
        lock_length[0] = (int)nlocks;
        st[nst++] = (struct gw_db_stmt){.sql = number_lock_sql,
                                        .nparams = 1,
                                        .values = lock_value,
                                        .lengths = lock_length,
                                        .formats = lock_format};
    }
    st[nst++] = (struct gw_db_stmt){.sql = s->group_sql,
                                    .nparams = NPARAMS + 2,
                                    .values = values,
                                    .lengths = lengths,
                                    .formats = formats,
                                    .result_format = 1};
    /* GW_DB_SHARED: a group holds many callers' items (bounded by the store's own queue),
     * charged to none of them, even when one's Submit flushed it */
    rc = gw_db_exec(s->db, st, nst, GW_DB_TXN | GW_DB_SHARED, done, g, &g->dbreq);
    if (rc == 0) {
        size_t b = 0;
        s->st.groups++;
        while (b + 1 < GW_STORE_GROUP_BUCKETS && ((size_t)1 << b) < g->n)
            b++;
        s->st.group_items[b]++;
    }
    gw_free_wipe(buf, total);
    gw_wipe(locks, nlocks);
    return rc;
}
