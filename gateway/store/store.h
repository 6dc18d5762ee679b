/* store.h: the SQL layer for waybills and segments, asynchronous over db.h; the only
 * module that holds waybill SQL. Nothing here sees clear PII: a waybill arrives sealed
 * (ciphertexts, blind indexes, wrapped data key) with its operational fields in clear.
 *
 * Every call copies what it needs: the caller's buffers may be freed once the call returns.
 * Every call returns a handle that gw_store_cancel() cancels: after cancel the callback never
 * runs. A handle is valid until its callback starts or until gw_store_cancel returns.
 * Callbacks never run from inside the call that started the operation. */
#ifndef GW_STORE_H
#define GW_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "record.h"

struct gw_db;
struct gw_store;
struct gw_store_req;

/* A waybill arrives and leaves as struct gw_sealed_waybill (record.h); for gw_store_get its
 * pointers point into the result and are valid only during the callback. */
#define GW_STORE_ID_LEN GW_RECORD_ID_LEN
#define GW_STORE_BIDX_LEN GW_RECORD_BIDX_LEN
/* Lookups match any of this many blind indexes of one value: one per cipher suite
 * (GW_SUITE_COUNT, crypto.h; gw_seal_lookup_bidx fills them), so that records of either suite
 * are found while a database holds both. */
#define GW_STORE_BIDX_ALTS 2
#define GW_STORE_MAC_LEN GW_RECORD_MAC_LEN
#define GW_STORE_GROUP_MAX 256

enum gw_store_outcome {
    GW_STORE_NEW = 1,       /* stored under the submitted id */
    GW_STORE_EXISTING_SAME, /* same number, same content_mac: idempotent retry; id = stored id */
    GW_STORE_EXISTING_DIFFERENT, /* same number, other content: err == GW_EEXIST */
};

/* The SQLSTATE of a row sealed under a KEK version the database has retired (constraint
 * waybill_kek_retired, sql/033_kek_retired.sql): the only object_not_in_prerequisite_state an
 * insert of waybill raises. */
#define GW_STORE_KEK_RETIRED "55000"

/* One waybill's outcome. err: 0 (NEW or EXISTING_SAME), GW_EEXIST (EXISTING_DIFFERENT),
 * GW_EUNAVAIL (database down, or deadlock/serialization failure twice: the waybill may or may
 * not be stored; a retry by the client is safe), GW_EPRECOND (sealed under a retired KEK
 * version: GW_STORE_KEK_RETIRED; nothing stored), GW_EINTERNAL (the database refused this row
 * otherwise), GW_ENOMEM. outcome and id are meaningful when err is 0 or GW_EEXIST. */
struct gw_store_result {
    int err;
    enum gw_store_outcome outcome;
    uint8_t id[GW_STORE_ID_LEN];
};

typedef void (*gw_store_submit_cb)(void *arg, const struct gw_store_result *r);
/* r[i] is the outcome of items[i]; r is valid only during the callback. */
typedef void (*gw_store_batch_cb)(void *arg, const struct gw_store_result *r, size_t n);
/* A row read within a scope: the sealed waybill, the branch its destination region routes to
 * (table route) or NULL when no route covers it, the branch holding custody of it (its latest
 * arrival scan, until it departs from there or is delivered; sql/011_scan.sql) or NULL, and its
 * latest scan event (enum gw_scan_event; 0: none) with its time. Pointers valid only during the
 * callback. */
struct gw_store_row {
    struct gw_sealed_waybill w;
    const char *dest_branch;
    const char *custody_branch; /* NULL, or custody_buf */
    char custody_buf[32];       /* scan.branch: at most 31 characters (sql/011) */
    int last_event;
    int64_t last_event_at; /* its time, Unix seconds; 0: none */
};

/* err: 0 (row valid during the callback), GW_ENOTFOUND (no such number within the scope: the
 * same answer as no such number at all), GW_EUNAVAIL, GW_EINTERNAL. */
typedef void (*gw_store_get_cb)(void *arg, int err, const struct gw_store_row *row);

/* What a Search looks for: exactly one key; within the branch `branch` (records it accepted or
 * delivers) and up to the security level max_level; newest first (accepted_at, then id,
 * descending); after a keyset position when `after` is set; at most limit rows. */
enum gw_store_key {
    GW_STORE_KEY_PHONE = 1, /* bidx: a phone's blind index, on the sides `sides` names */
    GW_STORE_KEY_ID_NUMBER, /* bidx: an ID number's blind index, on the sides `sides` names */
    GW_STORE_KEY_NUMBER,    /* bidx: the waybill number's blind index */
    GW_STORE_KEY_DAY,       /* day: "YYYY-MM-DD" pickup day */
};
/* The sides a person's key (phone, ID number) is matched on: the caller decides them (the
 * policy's gw_policy_search_sides); the store matches no other. */
enum gw_store_side {
    GW_STORE_SIDE_SENDER = 1u << 0,
    GW_STORE_SIDE_RECIPIENT = 1u << 1,
};
struct gw_store_search {
    const char *scope; /* the caller's scope (row-level security): a branch code */
    const char *branch;
    enum gw_store_key key;
    unsigned sides; /* a person's key: a non-empty set of enum gw_store_side; others: ignored */
    uint8_t bidx[GW_STORE_BIDX_ALTS][GW_STORE_BIDX_LEN]; /* any of them */
    const char *day;
    bool after;
    int64_t after_at; /* Unix seconds */
    uint8_t after_id[GW_STORE_ID_LEN];
    uint32_t limit; /* 1..GW_STORE_SEARCH_MAX */
    int max_level;  /* 0..3: records of a higher security_level are not selected */
};
#define GW_STORE_SEARCH_MAX 1000
/* err: 0 (rows[0..n) valid during the callback, newest first), GW_EUNAVAIL, GW_EINTERNAL,
 * GW_ENOMEM. */
typedef void (*gw_store_search_cb)(void *arg, int err, const struct gw_store_row *rows, size_t n);

/* One reveal to record, under a quota: every string NUL-terminated (cert and peer may be ""). */
struct gw_store_reveal {
    const char *scope; /* the revealer's branch: the row is written and counted in it */
    const char *quota_key;
    const char *principal;
    int64_t account_id; /* 0: none */
    const char *role;
    const char *cert;
    const char *peer;
    uint8_t record_id[GW_STORE_ID_LEN];
    const char *field;
    const char *reason;
    uint32_t per_hour, per_day; /* the quota */
};
/* err: 0 and seq (the reveal_log row's id, committed) with used_hour/used_day counting it; or
 * GW_ETOOBIG (over quota: nothing written; hour_hit tells which limit) with the counts; or
 * GW_EUNAVAIL / GW_EINTERNAL (nothing known to be written). */
struct gw_store_reveal_result {
    int64_t seq;
    uint32_t used_hour, used_day;
    bool hour_hit;
};
typedef void (*gw_store_reveal_cb)(void *arg, int err, const struct gw_store_reveal_result *r);

struct gw_store_segment {
    const char *branch;
    const char *prefix;
    int64_t range_from; /* inclusive */
    int64_t range_to;   /* inclusive */
};
/* err: 0 (seg[0..n) valid during the callback), GW_EUNAVAIL, GW_EINTERNAL. */
typedef void (*gw_store_segments_cb)(void *arg, int err, const struct gw_store_segment *seg,
                                     size_t n);

/* Counters since gw_store_new (for tests and metrics). */
#define GW_STORE_GROUP_BUCKETS 9
struct gw_store_stats {
    uint64_t submits;        /* waybills accepted by gw_store_submit / _batch */
    uint64_t groups;         /* insert transactions sent (each is one commit) */
    uint64_t groups_retried; /* after a deadlock or serialization failure */
    uint64_t items_requeued; /* zero-row outcomes (a concurrent insert of the same number) */
    uint64_t queued;         /* single submits waiting for a group now */
    uint64_t groups_inflight;
    /* waybill rows that Get, Reveal and Search statements returned (under the caller's scope):
     * a number outside the scope must cost what a missing one costs (issue 10, finding 8) */
    uint64_t rows_read;
    /* groups sent by their number of waybills: <= 1, 2, 4, ... 128, more */
    uint64_t group_items[GW_STORE_GROUP_BUCKETS];
};

/* Creates the store over db (which must outlive it); registers its statements with
 * gw_db_prepare. Returns NULL on allocation failure. */
struct gw_store *gw_store_new(struct gw_db *db);
/* Drops every operation without callbacks. NULL-safe. Not from inside a store callback. */
void gw_store_free(struct gw_store *store);

/* Stores one waybill, idempotently on its wb_bidx. Group commit: submits wait in the store and
 * are sent together, up to GW_STORE_GROUP_MAX per transaction, whenever fewer than
 * gw_db_pool_size() insert transactions are in flight; cb runs only after the transaction that
 * holds the waybill committed (or failed). Returns 0 and a handle in *out (may be NULL);
 * GW_EUNAVAIL (no database connection), GW_EQUEUEFULL (too many waiting), GW_EINVAL, GW_ENOMEM:
 * then cb will not run. */
int gw_store_submit(struct gw_store *store, const struct gw_sealed_waybill *w,
                    gw_store_submit_cb cb, void *arg, struct gw_store_req **out) GW_MUST_CHECK;

/* Stores n waybills (1..GW_STORE_GROUP_MAX) in one transaction, outcomes per item. Items that
 * meet a concurrent insert of the same number, and the other items when one row is refused by
 * the database, are retried transparently in a follow-up transaction. Returns as gw_store_submit.
 */
int gw_store_submit_batch(struct gw_store *store, const struct gw_sealed_waybill *items, size_t n,
                          gw_store_batch_cb cb, void *arg, struct gw_store_req **out) GW_MUST_CHECK;

/* Reads the sealed row whose waybill-number blind index is any of wb_bidx (one per suite),
 * within scope (a branch code: the database's row-level security shows only that branch's rows,
 * sql/007_scope.sql) and at most security level max_level (the caller role's,
 * gw_policy_max_level; below 0: none): a record above it is GW_ENOTFOUND, not read, as a number
 * that does not exist (neither opened nor timed apart from one). */
int gw_store_get(struct gw_store *store, const char *scope,
                 const uint8_t wb_bidx[GW_STORE_BIDX_ALTS][GW_STORE_BIDX_LEN], int max_level,
                 gw_store_get_cb cb, void *arg, struct gw_store_req **out) GW_MUST_CHECK;

/* Reads one page of a search (struct gw_store_search, copied). GW_EINVAL for a person's key
 * without a side. */
int gw_store_search(struct gw_store *store, const struct gw_store_search *q, gw_store_search_cb cb,
                    void *arg, struct gw_store_req **out) GW_MUST_CHECK;

/* Records one reveal in one transaction: serialised per quota_key (advisory lock), counts the
 * key's reveals in the last hour and the current UTC day, and writes the reveal_log row only
 * when both are under their limit. cb runs after the commit. */
int gw_store_reveal(struct gw_store *store, const struct gw_store_reveal *rv, gw_store_reveal_cb cb,
                    void *arg, struct gw_store_req **out) GW_MUST_CHECK;

/* Reads every issued segment (branch, prefix, range). */
int gw_store_load_segments(struct gw_store *store, gw_store_segments_cb cb, void *arg,
                           struct gw_store_req **out) GW_MUST_CHECK;

/* The forwarder's fast path (gateway/forward registers it; the store knows nothing else of it).
 * When a hook is set and its reserve(n) answers yes for a group of n waybills about to be sent,
 * the group's insert writes each new waybill's outbox row with lease_owner = owner and
 * lease_until = now + lease_ms (nobody claims it while the lease lives: sql/012's claim skips a
 * live lease), and after the commit done() gets, for every waybill that statement created, its
 * outbox row and a deep copy of its sealed record; done(reserved, NULL, 0) when the group failed
 * or created none. A retried group keeps its reservation; a group split into singles or re-queued
 * items reserve again. Without a reservation (no hook, or reserve says no) the rows carry no lease
 * and the claim sends them, as before. */
struct gw_store_fast_item {
    int64_t outbox_id;
    char delivery_id[37];        /* UUID text */
    int64_t enqueued_at_us;      /* outbox.enqueued_at, Unix microseconds */
    struct gw_sealed_waybill *w; /* deep copy: the callee's, freed with gw_store_sealed_free */
};
struct gw_store_fast_hook {
    const char *owner; /* the lease owner (copied by gw_store_set_fast) */
    uint32_t lease_ms;
    bool (*reserve)(void *arg, size_t n);
    /* sent_ms: CLOCK_MONOTONIC milliseconds when the group's insert was first sent (its leases
     * run from at most then) */
    void (*done)(void *arg, size_t reserved, struct gw_store_fast_item *items, size_t n,
                 int64_t sent_ms);
    void *arg;
};
/* Sets (hook copied) or removes (NULL) the fast path's hook. Groups in flight when it is removed
 * report to nobody (their copies are freed; their leases run out and a claim sends them).
 * GW_EINVAL (owner missing or too long), GW_ENOMEM, or 0. */
int gw_store_set_fast(struct gw_store *store, const struct gw_store_fast_hook *hook) GW_MUST_CHECK;
/* A deep copy of w in one allocation (NULL on ENOMEM); freed (wiped) by gw_store_sealed_free. */
struct gw_sealed_waybill *gw_store_sealed_dup(const struct gw_sealed_waybill *w);
void gw_store_sealed_free(struct gw_sealed_waybill *w);

/* Cancels any store operation; its callback never runs. A submit still waiting in the store is
 * dropped; one already sent is committed or not by the server, silently. NULL-safe. */
void gw_store_cancel(struct gw_store_req *req);

void gw_store_stats(const struct gw_store *store, struct gw_store_stats *out);

/* The record id as the canonical 36-character UUID text (buf of at least 37 bytes), for logs. */
void gw_store_id_text(const uint8_t id[GW_STORE_ID_LEN], char buf[37]);

#endif
