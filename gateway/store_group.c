/* store_group.c: the group statement: a sealed waybill copied into a self-contained item, the SQL
 * text that stores a whole group at once, and its parameters as binary PostgreSQL arrays (one
 * element per item). Invariants: parameter k of every item is column k of the statement; items
 * and a send's arrays carry ciphertext and blind indexes and are freed with gw_free_wipe. */
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "alloc.h"
#include "db.h"
#include "store.h"
#include "store_int.h"

#define NFIXED GW_STORE_NFIXED
#define NPARAMS GW_STORE_NPARAMS

/* Parameter formats of the insert's fixed columns: 0 text, 1 binary (bytea and uuid); every
 * ciphertext column after them is binary. */
static const int fixed_formats[NFIXED] = {1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1};

static const char *const fixed_cols =
    "id, wb_bidx, origin_branch, submitted_by, dest_region_code, weight_grams, service_type, "
    "security_level, pickup_day, kek_version, dek_version, dek_wrapped, content_mac, "
    "sender_phone_bidx, recipient_phone_bidx, sender_id_bidx, recipient_id_bidx";

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

/* Element types of the group statement's array parameters (pg_type OIDs). */
#define OID_BYTEA 17
#define OID_TEXT 25
#define OID_UUID 2950

/* SQL type of the array carrying fixed parameter i, and the cast that turns its text element
 * into the column's type (text parameters only). */
static const char *const fixed_casts[NFIXED] = {
    "",          "",          "", "", "", "::integer", "", "::smallint", "::date",
    "::integer", "::integer", "", "", "", "",          "", "",
};

/* The column names in parameter order: fixed_cols, then every ciphertext column. */
static void add_cols(struct gw_store_sql *b, const char *prefix, bool casts)
{
    const char *p = fixed_cols, *q;
    size_t i = 0;

    while (*p != '\0') {
        q = strchr(p, ',');
        if (q == NULL)
            q = p + strlen(p);
        gw_store_sql_add(b, "%s%s%.*s%s", i > 0 ? ", " : "", prefix, (int)(q - p), p,
                         casts ? fixed_casts[i] : "");
        i++;
        p = *q == ',' ? q + 2 : q;
    }
    for (i = 0; i < GW_COL_COUNT; i++)
        gw_store_sql_add(b, ", %s%s", prefix, gw_col_sql[i]);
}

/* One statement stores a whole group: every parameter is an array with one element per waybill
 * (unnest zips them), the insert is idempotent on wb_bidx, and each waybill comes back as one
 * row (ordinal, created, id, content_mac): created with the submitted id, or the id and MAC of the
 * row already stored under that number. A waybill with no row met a concurrent insert of the
 * same number (in flight elsewhere, or earlier in this very group) and goes again. */
char *gw_store_group_sql_new(void)
{
    struct gw_store_sql b = {.len = 0};
    size_t i;

    gw_store_sql_add(&b, "WITH v AS (SELECT * FROM unnest(");
    for (i = 0; i < NPARAMS; i++)
        gw_store_sql_add(&b, "%s$%zu::%s[]", i > 0 ? ", " : "", i + 1,
                         i == 0                                  ? "uuid"
                         : (i < NFIXED && fixed_formats[i] == 0) ? "text"
                                                                 : "bytea");
    gw_store_sql_add(&b, ") WITH ORDINALITY AS v(");
    add_cols(&b, "", false);
    gw_store_sql_add(&b, ", ord)), ins AS (INSERT INTO waybill (");
    add_cols(&b, "", false);
    gw_store_sql_add(&b, ") SELECT ");
    add_cols(&b, "v.", true);
    gw_store_sql_add(&b, " FROM v ORDER BY v.ord ON CONFLICT (wb_bidx) DO NOTHING "
                         "RETURNING id, content_mac) "
                         "SELECT v.ord::integer, true, ins.id, ins.content_mac "
                         "FROM v JOIN ins ON ins.id = v.id UNION ALL "
                         "SELECT v.ord::integer, false, w.id, w.content_mac "
                         "FROM v JOIN waybill w ON w.wb_bidx = v.wb_bidx "
                         "WHERE NOT EXISTS (SELECT 1 FROM ins WHERE ins.id = v.id)");
    return b.overflow ? NULL : gw_strdup(b.buf);
}

/* ---- binary array parameters ---- */

/* One-dimensional arrays in PostgreSQL's binary format (array_recv), written into one buffer
 * sized exactly beforehand (element sizes are known), so a group costs one allocation. */
struct pgarray {
    uint8_t *p;
    size_t len;
};

static size_t elem_len(const struct gw_store_item *it, size_t k)
{
    const char *v = it->values[k];

    if (v == NULL)
        return 0;
    return (k < NFIXED && fixed_formats[k] == 0) ? strlen(v) : (size_t)it->lengths[k];
}

static void arr_put(struct pgarray *a, const void *src, size_t n)
{
    memcpy(a->p + a->len, src, n);
    a->len += n;
}

static void arr_put32(struct pgarray *a, uint32_t v)
{
    uint8_t b[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};

    arr_put(a, b, 4);
}

#define ARR_HEADER_LEN 20u

/* Header: one dimension of n elements of type oid, lower bound 1, "may hold NULLs". */
static void arr_begin(struct pgarray *a, uint32_t oid, size_t n)
{
    arr_put32(a, 1);
    arr_put32(a, 1);
    arr_put32(a, oid);
    arr_put32(a, (uint32_t)n);
    arr_put32(a, 1);
}

static void arr_elem(const struct gw_store_item *it, size_t k, struct pgarray *a)
{
    const char *v = it->values[k];
    size_t n;

    if (v == NULL) {
        arr_put32(a, 0xffffffffu); /* NULL */
        return;
    }
    n = elem_len(it, k);
    arr_put32(a, (uint32_t)n);
    arr_put(a, v, n);
}

/* ---- items ---- */

void gw_store_item_free(struct gw_store_item *it)
{
    if (it != NULL)
        gw_free_wipe(it, it->alloc_size);
}

static size_t dec_len(void)
{
    return 12; /* "-2147483648" + NUL */
}

/* The decimal text of v into p[0..dec_len()), cut like snprintf would, without printf (four a
 * waybill). */
static void put_dec(char *p, long v)
{
    char tmp[24];
    size_t n = 0, o = 0;
    unsigned long u = v < 0 ? 0UL - (unsigned long)v : (unsigned long)v;

    do {
        tmp[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u != 0);
    if (v < 0)
        tmp[n++] = '-';
    while (n > 0 && o < dec_len() - 1)
        p[o++] = tmp[--n];
    p[o] = '\0';
}

static bool opt_present(const char *s)
{
    return s != NULL && s[0] != '\0';
}

/* Copies one sealed waybill into a self-contained item with its parameter arrays ready. */
int gw_store_item_new(const struct gw_sealed_waybill *w, struct gw_store_item **out)
{
    const char *strs[5] = {w->origin_branch, w->submitted_by, w->dest_region_code, w->service_type,
                           w->pickup_day};
    size_t size = sizeof(struct gw_store_item), i;
    struct gw_store_item *it;
    char *p;

    *out = NULL;
    if (!opt_present(w->origin_branch) || !opt_present(w->submitted_by) ||
        w->dek_wrapped.p == NULL || w->dek_wrapped.n == 0 || w->dek_wrapped.n > INT_MAX)
        return GW_EINVAL;
    for (i = 0; i < 5; i++)
        if (strs[i] != NULL)
            size += strlen(strs[i]) + 1;
    size += 4 * dec_len() + 4 * GW_STORE_BIDX_LEN + w->dek_wrapped.n;
    for (i = 0; i < GW_COL_COUNT; i++) {
        if (w->ct[i].p == NULL && w->ct[i].n != 0)
            return GW_EINVAL;
        if (w->ct[i].n > INT_MAX / 2)
            return GW_ETOOBIG;
        size += w->ct[i].n;
    }
    it = gw_calloc(1, size);
    if (it == NULL)
        return GW_ENOMEM;
    it->alloc_size = size;
    memcpy(it->id, w->id, GW_STORE_ID_LEN);
    memcpy(it->mac, w->content_mac, GW_STORE_MAC_LEN);
    memcpy(it->wb, w->wb_bidx, GW_STORE_BIDX_LEN);
    if (w->has_sender_phone_bidx)
        memcpy(it->sort_phone, w->sender_phone_bidx, GW_STORE_BIDX_LEN);
    if (w->has_sender_id_bidx)
        memcpy(it->sort_id, w->sender_id_bidx, GW_STORE_BIDX_LEN);
    p = (char *)(it + 1);

    /* binary parameters point into the item's own copies above or into the trailing buffer */
    it->values[0] = (const char *)it->id;
    it->lengths[0] = GW_STORE_ID_LEN;
    it->values[1] = (const char *)it->wb;
    it->lengths[1] = GW_STORE_BIDX_LEN;
    {
        static const int idx[5] = {2, 3, 4, 6, 8};
        for (i = 0; i < 5; i++) {
            if (!opt_present(strs[i])) {
                it->values[idx[i]] = NULL;
                continue;
            }
            size_t n = strlen(strs[i]) + 1;
            memcpy(p, strs[i], n);
            it->values[idx[i]] = p;
            p += n;
        }
    }
    {
        static const int idx[4] = {5, 7, 9, 10};
        long v[4] = {w->weight_grams, w->security_level, w->kek_version, w->dek_version};
        for (i = 0; i < 4; i++) {
            put_dec(p, v[i]);
            it->values[idx[i]] = p;
            p += dec_len();
        }
    }
    memcpy(p, w->dek_wrapped.p, w->dek_wrapped.n);
    it->values[11] = p;
    it->lengths[11] = (int)w->dek_wrapped.n;
    p += w->dek_wrapped.n;
    it->values[12] = (const char *)it->mac;
    it->lengths[12] = GW_STORE_MAC_LEN;
    {
        const uint8_t *b[4] = {w->sender_phone_bidx, w->recipient_phone_bidx, w->sender_id_bidx,
                               w->recipient_id_bidx};
        bool has[4] = {w->has_sender_phone_bidx, w->has_recipient_phone_bidx, w->has_sender_id_bidx,
                       w->has_recipient_id_bidx};
        for (i = 0; i < 4; i++) {
            if (!has[i]) {
                it->values[13 + i] = NULL;
                continue;
            }
            memcpy(p, b[i], GW_STORE_BIDX_LEN);
            it->values[13 + i] = p;
            it->lengths[13 + i] = GW_STORE_BIDX_LEN;
            p += GW_STORE_BIDX_LEN;
        }
    }
    for (i = 0; i < GW_COL_COUNT; i++) {
        if (w->ct[i].p == NULL) {
            it->values[NFIXED + i] = NULL;
            continue;
        }
        memcpy(p, w->ct[i].p, w->ct[i].n);
        it->values[NFIXED + i] = p;
        it->lengths[NFIXED + i] = (int)w->ct[i].n;
        p += w->ct[i].n;
    }
    *out = it;
    return 0;
}

/* ---- sending a group ---- */

/* Sends g as one statement (one transaction). Returns 0 or the gw_db_exec error (g is then not
 * sent). The arrays are copied by gw_db_exec and freed here. */
int gw_store_group_send(struct gw_store *s, struct gw_store_group *g)
{
    struct pgarray arrays[NPARAMS];
    const char *values[NPARAMS];
    int lengths[NPARAMS], formats[NPARAMS];
    size_t sizes[NPARAMS];
    struct gw_db_stmt st = {.sql = s->group_sql,
                            .nparams = NPARAMS,
                            .values = values,
                            .lengths = lengths,
                            .formats = formats,
                            .result_format = 1};
    size_t i, k, total = 0;
    uint8_t *buf;
    int rc = 0;

    for (k = 0; k < NPARAMS; k++) {
        sizes[k] = ARR_HEADER_LEN + 4 * g->n;
        for (i = 0; i < g->n; i++)
            sizes[k] += elem_len(g->items[i], k);
        if (sizes[k] > INT_MAX || total > SIZE_MAX - sizes[k])
            return GW_ENOMEM;
        total += sizes[k];
    }
    buf = gw_malloc(total);
    if (buf == NULL)
        return GW_ENOMEM;
    for (k = 0; k < NPARAMS; k++) {
        arrays[k].p = k == 0 ? buf : arrays[k - 1].p + sizes[k - 1];
        arrays[k].len = 0;
        arr_begin(&arrays[k],
                  k == 0                                  ? OID_UUID
                  : (k < NFIXED && fixed_formats[k] == 0) ? OID_TEXT
                                                          : OID_BYTEA,
                  g->n);
        for (i = 0; i < g->n; i++)
            arr_elem(g->items[i], k, &arrays[k]);
        values[k] = (const char *)arrays[k].p;
        lengths[k] = (int)arrays[k].len;
        formats[k] = 1;
    }
    rc = gw_db_exec(s->db, &st, 1, GW_DB_TXN, gw_store_group_done_cb, g, &g->dbreq);
    if (rc == 0)
        s->st.groups++;
    gw_free_wipe(buf, total);
    return rc;
}
