/* store_int.h: private to the store (store.c: submits and group commit; store_group.c: items and
 * the group statement; store_read.c: reads, segments). Not for other modules: they use
 * store.h. */
#ifndef GW_STORE_INT_H
#define GW_STORE_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>

#include "db.h"
#include "store.h"

/* The columns of the waybill statements: the record's clear columns (gw_rec_cols, in order, with
 * fields_ct), then one per ciphertext of versions 1 and 2 (enum gw_col). The group insert writes
 * the first GW_STORE_WRITE_COLS (a new record is version 3: its fields are in fields_ct, every
 * *_ct NULL); the reads read all GW_STORE_READ_COLS (rows of versions 1 and 2 stay and are read).
 * Column k is parameter k + 1 of the group insert (k < GW_STORE_WRITE_COLS) and result column k
 * of the read; nothing is numbered by hand. */
#define GW_STORE_WRITE_COLS GW_REC_NCOLS
#define GW_STORE_READ_COLS (GW_REC_NCOLS + GW_COL_COUNT)
/* After the columns, every read (gw_store_read_cols) has the destination branch (text) and
 * waybill_scan_facts (sql/017: a record of custodian, last event and its time). */
#define GW_STORE_READ_EXTRA 2
#define GW_PG_INT8_OID 20u
#define GW_PG_INT2_OID 21u
#define GW_PG_TEXT_OID 25u
/* The group insert's parameters: the written columns, then the number's blind index under each
 * other suite (record.h: alt_wb_bidx; NULL when the keyring holds no such suite). */
#define GW_STORE_NPARAMS (GW_STORE_WRITE_COLS + GW_RECORD_ALTS)

/* How a kind of column travels: the element type of its parameter array, whether its values are
 * sent as text (else binary), the expression that turns the text into the column's type (%s is
 * the value) and the expression that reads it back (%s is the column), in binary result format. */
struct gw_store_sqltype {
    const char *array;
    uint32_t oid;
    bool text;
    const char *insert;
    const char *select;
};

/* store_group.c: column k's name, kind and SQL type (k < GW_STORE_READ_COLS). */
const char *gw_store_col_name(size_t k);
enum gw_rec_kind gw_store_col_kind(size_t k);
const struct gw_store_sqltype *gw_store_col_type(size_t k);

enum gw_store_kind {
    GW_STORE_RK_SUBMIT,
    GW_STORE_RK_BATCH,
    GW_STORE_RK_GET,
    GW_STORE_RK_SEGMENTS,
    GW_STORE_RK_SEARCH,
    GW_STORE_RK_REVEAL,
};

struct gw_store_item {
    TAILQ_ENTRY(gw_store_item) link; /* store->pending while queued */
    struct gw_store_req *req;
    size_t index;
    int requeues;
    bool queued;
    bool resolved;
    uint8_t id[GW_STORE_ID_LEN];
    uint8_t mac[GW_STORE_MAC_LEN];
    uint8_t sort_phone[GW_STORE_BIDX_LEN];
    uint8_t sort_id[GW_STORE_BIDX_LEN];
    uint8_t wb[GW_STORE_BIDX_LEN];
    size_t n_alt; /* content MACs under the other suites: an identical retry matches one */
    uint8_t alt_mac[GW_RECORD_ALTS][GW_STORE_MAC_LEN];
    const char *values[GW_STORE_NPARAMS]; /* NULL: SQL NULL */
    int lengths[GW_STORE_NPARAMS];
    size_t alloc_size;
    /* the sealed record's deep copy while a fast-path hook is set (gw_store_set_fast), handed to
     * it when the insert created the waybill; else NULL */
    struct gw_sealed_waybill *sealed;
};

struct gw_store_group {
    TAILQ_ENTRY(gw_store_group) link;
    struct gw_store *store;
    struct gw_db_req *dbreq;
    bool batch;
    int attempt;
    size_t fast; /* slots the fast-path hook reserved for this group (0: no lease in the insert) */
    int64_t sent_ms;
    size_t n;
    struct gw_store_item *items[];
};

/* A handle. Submits own their items; simple operations own one db request. */
struct gw_store_req {
    TAILQ_ENTRY(gw_store_req) link; /* store->reqs */
    struct gw_store *store;
    enum gw_store_kind kind;
    bool cancelled;
    void *arg;
    union {
        gw_store_submit_cb submit;
        gw_store_batch_cb batch;
        gw_store_get_cb get;
        gw_store_segments_cb segments;
        gw_store_search_cb search;
        gw_store_reveal_cb reveal;
    } cb;
    struct gw_db_req *dbreq; /* simple operations */
    size_t n, nleft;         /* submits: items, unresolved items */
    struct gw_store_item **items;
    struct gw_store_result *results;
};

TAILQ_HEAD(gw_store_item_list, gw_store_item);
TAILQ_HEAD(gw_store_req_list, gw_store_req);
TAILQ_HEAD(gw_store_group_list, gw_store_group);

struct gw_store {
    struct gw_db *db;
    struct event *ev_flush;
    char *group_sql; /* stores a whole group in one statement */
    char *get_sql;
    struct gw_store_item_list pending;
    struct gw_store_req_list reqs;
    struct gw_store_group_list groups;
    struct gw_store_stats st;
    struct gw_store_scanq *scans;   /* store_scan.c: scan events' queue, made at the first one */
    struct gw_store_fast_hook fast; /* reserve == NULL: no fast path */
    char fast_owner[201];           /* fast.owner points here */
};

/* store_scan.c: drops the scan queue without callbacks. NULL-safe. */
void gw_store_scanq_free(struct gw_store_scanq *q);

/* A growing SQL text in a fixed buffer; overflow is sticky and checked once at the end. */
struct gw_store_sql {
    char buf[8192];
    size_t len;
    bool overflow;
};
void gw_store_sql_add(struct gw_store_sql *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Appends expr with its one "%s" replaced by arg (a gw_store_sqltype expression). */
void gw_store_sql_expr(struct gw_store_sql *b, const char *expr, const char *arg);

/* store_req.c: a handle on store->reqs / its release (frees items; never calls back). */
struct gw_store_req *gw_store_req_new(struct gw_store *s, enum gw_store_kind kind, void *arg);
void gw_store_req_free(struct gw_store_req *r);
/* store_req.c: sends st[0..n) in one transaction (GW_DB_TXN) with done(req) as the db callback
 * and the handle in *dbreq. req is a handle of one allocation (gw_calloc) that owns nothing else
 * (store_bulk.c's, store_lawful.c's, outbox.c's); it is freed (gw_free) when they cannot be
 * sent. Returns 0 or the gw_db_exec error. */
int gw_store_txn_send(struct gw_store *s, const struct gw_db_stmt *st, int n, gw_db_done_cb done,
                      void *req, struct gw_db_req **dbreq) GW_MUST_CHECK;

/* store_group.c: the text of the group insert statement (gw_free), NULL on overflow/ENOMEM. */
char *gw_store_group_sql_new(void);
/* store_group.c: copies one sealed waybill into a self-contained item with its parameters ready;
 * 0 or a negative gw_err (*out is then NULL): GW_EINVAL for a waybill that is not version 3 (a
 * ct[k], a record MAC, no fields_ct, another mac_version: the store writes version 3 only). The
 * item is freed (wiped) with gw_store_item_free. */
int gw_store_item_new(const struct gw_sealed_waybill *w, struct gw_store_item **out) GW_MUST_CHECK;
void gw_store_item_free(struct gw_store_item *it);
/* store_group.c: the group statement's result columns: the first four (ordinal, created, id,
 * content_mac), then the created waybill's outbox row: id (bigint), delivery_id (uuid),
 * enqueued_at (Unix microseconds, bigint); NULL for a waybill not created. */
#define GW_STORE_GROUP_RESULT_COLS 7
/* store_group.c: sends g as one statement (one transaction) with done (store.c's completion,
 * called with g) as its callback. Returns 0 or the gw_db_exec error (g is then not sent). */
int gw_store_group_send(struct gw_store *s, struct gw_store_group *g,
                        gw_db_done_cb done) GW_MUST_CHECK;

/* store_read.c: the text of the read-by-wb_bidx statement (gw_free), NULL on overflow/ENOMEM. */
char *gw_store_get_sql_new(void);
/* The get statement's parameters: the two blind indexes (binary) and the highest security level
 * (text, written into level_text; below 0: none, so no row is read). */
#define GW_STORE_GET_NPARAMS 3
#define GW_STORE_LEVEL_TEXT 12
void gw_store_get_params(const uint8_t wb_bidx[GW_STORE_BIDX_ALTS][GW_STORE_BIDX_LEN],
                         int max_level, const char *vals[GW_STORE_GET_NPARAMS],
                         char level_text[GW_STORE_LEVEL_TEXT]);
extern const int gw_store_get_lens[GW_STORE_GET_NPARAMS], gw_store_get_fmts[GW_STORE_GET_NPARAMS];

/* store_read.c: row `row` of a read's result (every column of the column list, then the
 * destination branch, the custodian, the latest event and its time) into *out (pointers into the
 * result). Returns 0 or GW_EINTERNAL (the result does not have the read's shape). */
int gw_store_row_get(const PGresult *res, int row, struct gw_store_row *out) GW_MUST_CHECK;
/* store_read.c: the same, from a result whose read columns start at column col0 (other columns
 * may come before or after them: outbox.c's claim). */
int gw_store_row_get_at(const PGresult *res, int row, int col0,
                        struct gw_store_row *out) GW_MUST_CHECK;
/* store_read.c: starts r's statements (one transaction) with done as the db callback; frees r
 * when they cannot be sent. Returns 0 with *out = r (out may be NULL) or the error. */
int gw_store_simple_start(struct gw_store_req *r, const struct gw_db_stmt *st, int nst,
                          gw_db_done_cb done, struct gw_store_req **out) GW_MUST_CHECK;
/* store_read.c: the column list of a read, then the destination branch, the custodian, the
 * latest scan event and its time, from table alias w. */
void gw_store_read_cols(struct gw_store_sql *b);

/* The first statement of every request that touches a table under row-level security (sql/
 * 007_scope.sql): sets the transaction's scope, a branch code or GW_STORE_SCOPE_ALL (intake's
 * group insert only). Results of the request's statements are then at index 1 onwards. */
#define GW_STORE_SCOPE_SQL "SELECT set_config('waygate.scope', $1, true)"
#define GW_STORE_SCOPE_ALL "*"
/* Fills *st with the scope statement for scope (NUL-terminated; must outlive the gw_db_exec
 * call, which copies it). vals must hold one pointer. Inline: the reads and the outbox's claim
 * use it, in files that do not depend on one another. */
static inline void gw_store_scope_stmt(struct gw_db_stmt *st, const char **vals, const char *scope)
{
    vals[0] = scope;
    *st = (struct gw_db_stmt){.sql = GW_STORE_SCOPE_SQL, .nparams = 1, .values = vals};
}

/* The first statement of the two group inserts (store_group.c, store_scan.c): the scope as
 * above, and no sequential scan in their transaction (enable_seqscan off). Their reads of the
 * waybill table (the number's duplicate check under every suite, the stored row's read, the
 * waybill's lookup by number, the foreign keys' checks of the outbox and scan rows) are index
 * lookups by design, but a plan made while the table is small (emptied, then analysed) reads it
 * whole, and a connection keeps that plan for its prepared insert, and for its foreign-key check
 * whichever transaction made it, as the table grows: measured, Submit fell to a third
 * (docs/performance.md, issue 9's eleventh round). The reads keep GW_STORE_SCOPE_SQL: for some
 * of them a sequential scan is the right plan. */
#define GW_STORE_NO_SEQSCAN "set_config('enable_seqscan', 'off', true)" /* also outbox.c's */
#define GW_STORE_SCOPE_INDEXED_SQL                                                                 \
    "SELECT set_config('waygate.scope', $1, true), " GW_STORE_NO_SEQSCAN
static inline void gw_store_scope_indexed_stmt(struct gw_db_stmt *st, const char **vals,
                                               const char *scope)
{
    gw_store_scope_stmt(st, vals, scope);
    st->sql = GW_STORE_SCOPE_INDEXED_SQL;
}

#endif
