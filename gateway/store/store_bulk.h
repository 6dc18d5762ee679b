/* store_bulk.h: the SQL of reviewed bulk operations (Art. 37, 15) and of destruction (Art. 26):
 * bulk_request and destruction (sql/009_bulk.sql). Reads are asynchronous requests with
 * cancellable handles, like store.h; every write is a statement handed to the audit writer
 * (audit.h) so that it commits in one transaction with its audit record. Statements that must
 * change exactly one request fail (division by zero) when the request is not in the state they
 * expect, so the audit record of a decision or run never commits without it.
 *
 * A request's selector is stored with it; counting, exporting and destroying select by the
 * stored selector (the client never re-sends it). Selection: branch = the origin branch; from/to
 * = the pickup day (inclusive); ids = the record ids; every condition given must hold.
 *
 * A request's selection is frozen at whole-second resolution (accepted_at is the gateway's whole
 * second): its count, and every run of it (export, copy, and bulk_destroy in sql/024), take only
 * the records accepted strictly before the request's second (accepted_at < date_trunc('second',
 * requested_at)), and requested_at is the time of that count. A record accepted in the request's
 * own second, before or after the count, is in neither: what the approver saw is what runs, and
 * nothing accepted after the request is selected by it. */
#ifndef GW_STORE_BULK_H
#define GW_STORE_BULK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "db.h"
#include "err.h"
#include "store.h"

struct gw_store_bulk_req;

/* A selector as text parameters (NULL: condition absent). ids is a PostgreSQL array literal of
 * UUIDs ("{...}"). */
struct gw_bulk_sel {
    const char *branch;
    const char *from_day;
    const char *to_day;
    const char *ids;
};

/* A stored request (strings valid during the callback only; NULL when absent). */
struct gw_bulk_row {
    const char *id, *operation, *state;
    const char *requester, *requester_role, *requester_branch;
    const char *approver, *purpose, *legal_basis, *destination;
    const char *sel_branch, *sel_from, *sel_to, *sel_ids;
    int64_t record_count;
    int max_level; /* the requester's highest security level when it was counted (-1: none) */
    bool expired;  /* approved but its approval expired, or pending (undecided) longer than the
                    * ttl_s it was loaded with: either way it can no longer run or be decided */
    const char *recipient_key; /* an export's or copy's recipient X25519 public key, 64 hex
                                * digits (sql/040); NULL for a destruction or a request stored
                                * before sql/040 */
    const char *approver_role; /* the decider's role; NULL while pending */
    /* seconds since the Unix epoch, 0 when absent: when it was requested; until when it may be
     * decided (pending: requested_at + the ttl_s it was loaded with) or its approval runs
     * (approved, executed; none when rejected); when it was decided */
    int64_t requested_at, expires_at, decided_at;
};

typedef void (*gw_store_bulk_count_cb)(void *arg, int err, int64_t count);
/* A request's count: err 0 with count and requested_at (the count's time, UTC text with
 * microseconds, valid during the callback: the request's requested_at), GW_EUNAVAIL or
 * GW_EINTERNAL. */
typedef void (*gw_store_bulk_request_count_cb)(void *arg, int err, int64_t count,
                                               const char *requested_at);
/* err 0 with row, GW_ENOTFOUND, GW_EUNAVAIL or GW_EINTERNAL. */
typedef void (*gw_store_bulk_load_cb)(void *arg, int err, const struct gw_bulk_row *row);
/* err 0 with rows[0..n) (valid during the callback), GW_EUNAVAIL or GW_EINTERNAL. */
typedef void (*gw_store_bulk_rows_cb)(void *arg, int err, const struct gw_store_row *rows,
                                      size_t n);
/* err 0 with ids[0..n) (UUID text, valid during the callback), GW_EUNAVAIL or GW_EINTERNAL. */
typedef void (*gw_store_bulk_ids_cb)(void *arg, int err, const char *const *ids, size_t n);

/* Counts, for a new request, the waybills sel matches within scope (a branch, or "*" for a
 * central role) and at most security level `level` (the requester's role's, gw_policy_max_level;
 * -1: none; stored as the request's max_level, gw_bulk_new), accepted strictly before the count's
 * second; cb also gets the count's time, to be stored as the request's requested_at. The level
 * is bounded by bulk_within_level (sql/030), the predicate every run of the request uses. */
int gw_store_bulk_count(struct gw_store *s, const char *scope, const struct gw_bulk_sel *sel,
                        int level, gw_store_bulk_request_count_cb cb, void *arg,
                        struct gw_store_bulk_req **out) GW_MUST_CHECK;
/* Reads request id (UUID text) as stored (struct gw_bulk_row: what ApproveBulk and RunBulk
 * decide by and GetBulk shows); a pending request older than ttl_s ([compliance]
 * approval_ttl_s) reads as expired. */
int gw_store_bulk_load(struct gw_store *s, const char *id, uint32_t ttl_s, gw_store_bulk_load_cb cb,
                       void *arg, struct gw_store_bulk_req **out) GW_MUST_CHECK;
/* Counts the waybills a run of request id (UUID text) selects within scope and at most the lower
 * of security level `level` (the requester's role's now, gw_policy_max_level, -1: none) and the
 * request's max_level (bulk_within_level, sql/030): its stored selector, accepted strictly before
 * the request's second (the rows gw_store_bulk_rows pages with the same level). */
int gw_store_bulk_count_run(struct gw_store *s, const char *scope, const char *id, int level,
                            gw_store_bulk_count_cb cb, void *arg,
                            struct gw_store_bulk_req **out) GW_MUST_CHECK;
/* One page (at most limit rows, ordered by id, after `after` (UUID text) or from the start when
 * NULL) of the waybills an export or copy run of request id selects within scope and at most the
 * lower of security level `level` and the request's max_level (the stored selector, accepted
 * strictly before the request's second), as gw_store_bulk_count_run counts them. */
int gw_store_bulk_rows(struct gw_store *s, const char *scope, const char *id, int level,
                       const char *after, uint32_t limit, gw_store_bulk_rows_cb cb, void *arg,
                       struct gw_store_bulk_req **out) GW_MUST_CHECK;
/* The ids of at most limit waybills older than days (both the pickup day, which the device
 * sent, and the day accepted, the gateway's, in China Standard Time: sql/039), across every
 * branch, leaving out those an approved, unexpired
 * lawful-access case holds (sql/038: they are not deleted while it does). */
int gw_store_bulk_expired_ids(struct gw_store *s, uint32_t days, uint32_t limit,
                              gw_store_bulk_ids_cb cb, void *arg,
                              struct gw_store_bulk_req **out) GW_MUST_CHECK;
/* Cancels: the callback never runs. NULL-safe. */
void gw_store_bulk_cancel(struct gw_store_bulk_req *r);

/* ---- statements for the audit writer (gw_audit_write copies them) ---- */

/* Storage of one statement and its parameters; st points into it (keep it alive, unmoved, until
 * gw_audit_write returns). */
struct gw_store_bulk_stmt {
    struct gw_db_stmt st;
    const char *vals[16];
    char num[3][24];
};

/* Fills the scope statement (first of a transaction touching waybill). */
void gw_store_bulk_scope(struct gw_store_bulk_stmt *b, const char *scope);

struct gw_bulk_new {
    const char *id, *operation, *purpose, *legal_basis, *destination;
    const char *requester, *requester_role, *requester_branch; /* branch NULL: none */
    struct gw_bulk_sel sel;
    int64_t record_count;
    const char *requested_at;  /* the time of the count (gw_store_bulk_count) */
    int max_level;             /* the level of the count (gw_store_bulk_count) */
    const char *recipient_key; /* export or copy: the recipient's X25519 public key, 64 hex
                                * digits; NULL for a destruction (sql/040) */
};
/* Inserts a new pending request. */
void gw_store_bulk_insert(struct gw_store_bulk_stmt *b, const struct gw_bulk_new *n);
/* A decision's or a claim's first statement: fails (division by zero) unless request id is
 * stored with recipient_key (64 hex digits, or NULL: none; the key the gateway read and its
 * record names) and that key, if any, is the one its ok bulk.request record names (rcpt=), or,
 * if approved (a run's claim), its ok bulk.approve record; holds the request's row until the
 * transaction ends, so that the statement after it sees that key. A key changed in the database
 * (the gateway's role cannot write it, sql/040), since it was requested or approved or while the
 * caller waited on the row, fails here, which tells it from a request no longer pending or
 * approved (the statement after it failing); any other failure is no such sign. */
#define GW_BULK_KEY_CHANGED "22012" /* that failure's SQLSTATE: division_by_zero */
void gw_store_bulk_key(struct gw_store_bulk_stmt *b, const char *id, const char *recipient_key,
                       bool approved);
/* Decides pending request id by approver (never its requester): approved for ttl_s seconds, or
 * rejected. Fails unless the request is pending, stored with recipient_key (64 hex digits, or
 * NULL: none; the key the decision's audit record names), requested less than ttl_s seconds ago
 * (one left undecided longer has expired, like a lawful-access case: lawful_case_decide's WL004)
 * and approver is not its requester; with SQLSTATE GW_BULK_RELATED when the approver is not
 * independent of the requester (sql/021: one person, or either account created the other). */
#define GW_BULK_RELATED "WB001"
void gw_store_bulk_decide(struct gw_store_bulk_stmt *b, const char *id, bool approve,
                          const char *approver, const char *approver_role, const char *comment,
                          uint32_t ttl_s, const char *recipient_key);
/* Marks approved, unexpired request id of requester, stored with recipient_key (64 hex digits:
 * the key the run seals to; NULL for a destruction), executed (export_id: UUID text or NULL for
 * a destruction). Fails unless it is exactly that: a run is sealed only to the approved key. */
void gw_store_bulk_claim(struct gw_store_bulk_stmt *b, const char *id, const char *requester,
                         const char *export_id, const char *recipient_key);
/* A guard: fails unless request id was claimed by the export export_id (state executed, that
 * export id), i.e. unless that run's claim committed. Queued after a claim whose outcome its
 * caller will not see (the audit writer keeps queue order), it makes a record conditional on
 * it. */
void gw_store_bulk_claimed(struct gw_store_bulk_stmt *b, const char *id, const char *export_id);
/* Deletes every waybill request id selects within the lower of security level `level` (the
 * requester's role's now, gw_policy_max_level) and the request's max_level (its data keys with
 * it; the frozen selection, as a run counts it with that level) and writes its destruction
 * record (selector text, requester and approver from the request), through bulk_destroy
 * (sql/031_bulk_destroy_levels.sql): fails unless the request is a destroy claimed in this
 * transaction, expected is at most its record_count and exactly expected rows were deleted. A
 * record above the level stays. Fails with SQLSTATE GW_BULK_HELD, nothing deleted, when a
 * selected record is held by an approved, unexpired lawful-access case (sql/038's trigger).
 * Result: one row (destruction id). */
#define GW_BULK_HELD "WR002"
/* Whether sqlstate (NULL: no) says a statement gave way to another transaction's locks: a
 * deadlock (40P01), a serialization failure (40001) or a lock timeout (55P03). Nothing of its
 * transaction committed, and the same statement may succeed once the other has ended. */
bool gw_store_bulk_contended(const char *sqlstate);
void gw_store_bulk_destroy_request(struct gw_store_bulk_stmt *b, const char *id,
                                   const char *selector, int64_t expected, int level);
/* Deletes the waybills ids (array literal), every one older than days, and writes a retention
 * destruction record (requester: who ran the sweep), through retention_destroy
 * (sql/009_bulk.sql): fails, deleting nothing, unless every id was past the retention. */
void gw_store_bulk_destroy_ids(struct gw_store_bulk_stmt *b, const char *ids, uint32_t days,
                               const char *selector, const char *requester);

#endif
