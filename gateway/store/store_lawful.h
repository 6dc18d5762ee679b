/* store_lawful.h: the SQL of lawful access (Art. 16; sql/010_lawful.sql). A case's registration
 * and decision, and a lawful read's final check, are statements the API hands to the audit writer
 * (audit.h) with their confidential audit record, so the action and its record commit together;
 * each list begins with the scope statement it needs (a grouped audit transaction may carry
 * another entry's scope). The lawful read itself is an asynchronous request of its own here.
 * Nothing here holds a waybill number: a case names its waybills by their blind index. */
#ifndef GW_STORE_LAWFUL_H
#define GW_STORE_LAWFUL_H

#include <stdbool.h>
#include <stdint.h>

#include "db.h"
#include "err.h"
#include "store.h"

#define GW_LAWFUL_WAYBILLS_MAX 100 /* waybills one case may name */
#define GW_LAWFUL_TEXT_MAX 256     /* agency, officer, case and document references, bytes */
#define GW_LAWFUL_COMMENT_MAX 512

/* SQLSTATEs raised by lawful_case_decide / lawful_case_check. */
#define GW_LAWFUL_NO_CASE "WL001"
#define GW_LAWFUL_DECIDED "WL002"
#define GW_LAWFUL_SELF "WL003"
#define GW_LAWFUL_EXPIRED "WL004"
#define GW_LAWFUL_LAPSED "WL005"
#define GW_LAWFUL_PAST "WL006"
#define GW_LAWFUL_RELATED                                                                          \
    "WL007" /* sql/021: the decider created the requester's account, or the reverse */
/* sql/032: an approval's valid_until more than GW_LAWFUL_LONGEST_S after the decision (the
 * database's own bound, a trigger on lawful_case; [compliance] lawful_max_s may not exceed it) */
#define GW_LAWFUL_TOO_LONG "WL008"
#define GW_LAWFUL_LONGEST_S 31536000 /* 365 days: sql/032_lawful_longest.sql's constant */

/* A new case. Strings NUL-terminated; fields and bidx_hex are PostgreSQL array literals
 * ("{recipient.phone,sender.name}", "{0011..ff,...}": lowercase hex of each blind index). */
struct gw_store_lawful_case {
    const char *id; /* UUID text */
    int64_t requester_account;
    const char *requester;
    const char *agency, *officer, *case_ref, *legal_document_ref;
    const char *fields;
    const char *bidx_hex;
    int waybills;
};

/* The statements that register c: at most GW_STORE_LAWFUL_STMTS, into st (vals must hold
 * GW_STORE_LAWFUL_VALS pointers and buf GW_STORE_LAWFUL_BUF bytes, alive until st is queued).
 * Returns the number of statements. */
#define GW_STORE_LAWFUL_STMTS 3
#define GW_STORE_LAWFUL_VALS 16
#define GW_STORE_LAWFUL_BUF 64
int gw_store_lawful_request_stmts(const struct gw_store_lawful_case *c, struct gw_db_stmt *st,
                                  const char **vals, char *buf);

/* A decision. valid_until: seconds since the epoch (approvals). ttl_s: a case undecided this
 * long has expired (WL004). */
struct gw_store_lawful_decision {
    const char *case_id;
    int64_t decider_account;
    const char *decider;
    bool approve;
    const char *comment;
    int64_t valid_until;
    int64_t ttl_s;
};
/* Statements of a decision (result of the last: one row, the new state) into st as above. */
int gw_store_lawful_decide_stmts(const struct gw_store_lawful_decision *d, struct gw_db_stmt *st,
                                 const char **vals, char *buf);

/* Whether d may be decided now, asked before its entry is queued (sql/029): an expected refusal
 * then raises nothing in the database, whose server log keeps every statement that raised. err:
 * 0 (refusal: NULL when the case may be decided, else the GW_LAWFUL_* SQLSTATE the decision would
 * raise; valid during the callback), GW_EUNAVAIL, GW_EINTERNAL. The decision itself still raises
 * what changed in between. */
typedef void (*gw_store_lawful_decidable_cb)(void *arg, int err, const char *refusal);
struct gw_store_lawful_req;
/* Returns 0 and a handle in *out (cancel with gw_store_lawful_cancel; valid until the callback
 * starts), or GW_EINVAL / GW_ENOMEM / gw_db_exec's errors (GW_EQUEUEFULL: the pool's queue full):
 * then cb will not run. */
int gw_store_lawful_decidable(struct gw_store *s, const struct gw_store_lawful_decision *d,
                              gw_store_lawful_decidable_cb cb, void *arg,
                              struct gw_store_lawful_req **out) GW_MUST_CHECK;

/* A case as stored (strings valid during the callback). */
struct gw_store_lawful_row {
    const char *agency, *officer, *case_ref, *legal_document_ref;
    const char *fields;              /* comma-separated field paths; "": every field */
    const char *requester, *decider; /* decider "" while pending */
    const char *state;               /* pending, approved, rejected */
    bool expired;                    /* pending past ttl_s, or approved past valid_until */
    int waybills; /* how many numbers the request named (stored as blind indexes only) */
    int64_t requester_account;
    int64_t requested_at, decided_at, valid_until; /* epoch seconds; 0: none */
};
/* err: 0 (row valid during the callback), GW_ENOTFOUND (no such case: what a decision of it
 * answers, WL001), GW_EUNAVAIL, GW_EINTERNAL. */
typedef void (*gw_store_lawful_load_cb)(void *arg, int err, const struct gw_store_lawful_row *row);
/* Loads case_id as stored, read as a decision's question is (gw_store_lawful_decidable: the same
 * request, the same scope, its expiry by the same ttl_s), so that what GetLawfulCase shows is the
 * row a decision of that id decides. Returns 0 and a handle in *out (cancel with
 * gw_store_lawful_cancel; valid until the callback starts), or GW_EINVAL / GW_ENOMEM /
 * gw_db_exec's errors: then cb will not run. */
int gw_store_lawful_load(struct gw_store *s, const char *case_id, int64_t ttl_s,
                         gw_store_lawful_load_cb cb, void *arg,
                         struct gw_store_lawful_req **out) GW_MUST_CHECK;

/* Statements of a lawful read's last check: the case still approved, unexpired and account's,
 * else the transaction fails with WL005. */
int gw_store_lawful_check_stmts(const char *case_id, int64_t account, struct gw_db_stmt *st,
                                const char **vals, char *buf);

/* The case a lawful read rests on (strings valid during the callback). */
struct gw_store_lawful_grant {
    const char *case_id;
    const char *fields; /* comma-separated field paths; "": every field */
    const char *case_ref;
    int64_t valid_until;
};
/* err: 0 (row and grant valid during the callback), GW_ENOTFOUND (the number is in no approved,
 * unexpired case of this account requested since its waybill was accepted: the same answer as
 * no such waybill), GW_EUNAVAIL,
 * GW_EINTERNAL. */
typedef void (*gw_store_lawful_get_cb)(void *arg, int err, const struct gw_store_row *row,
                                       const struct gw_store_lawful_grant *g);

/* Reads the sealed row of any of wb_bidx (one per suite) under the scope 'lawful:<account>'
 * (row-level security shows exactly the rows of that account's approved, unexpired cases,
 * each row only to a case requested no earlier than its acceptance: sql/051) and at
 * most security level max_level (as gw_store_get) with the case it rests on. Returns 0 and a handle
 * in *out (cancel with gw_store_lawful_cancel; valid until the callback starts), or GW_EINVAL /
 * GW_ENOMEM / gw_db_exec's errors: then cb will not run. */
int gw_store_lawful_get(struct gw_store *s, int64_t account,
                        const uint8_t wb_bidx[GW_STORE_BIDX_ALTS][GW_STORE_BIDX_LEN], int max_level,
                        gw_store_lawful_get_cb cb, void *arg,
                        struct gw_store_lawful_req **out) GW_MUST_CHECK;
/* The callback never runs after this. NULL-safe. */
void gw_store_lawful_cancel(struct gw_store_lawful_req *r);

#endif
