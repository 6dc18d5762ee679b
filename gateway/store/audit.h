/* audit.h: the gateway's audit chain writer (Art. 33). One chain per gateway instance, its head
 * (seq, hash) kept here: recovered from the database at start, advanced in memory as records are
 * chained. Callers hand in an action's statements together with its audit records; both are
 * written in ONE transaction, the statements first, so a record exists exactly when its action
 * committed, and an action whose record cannot be written does not happen (fail closed).
 *
 * Group commit: at most one audit transaction is in flight per gateway; everything queued
 * meanwhile goes out together in the next one (up to GW_AUDIT_GROUP_MAX entries), chained in
 * memory in queue order. The chain thus never serialises commits on a row lock in SQL, and
 * throughput grows with the batch. When a statement of a grouped transaction fails, nothing of
 * it committed: the head is put back and each entry is retried alone, so only the failing entry
 * fails. When the outcome is unknown (connection lost), the entries fail with GW_EUNAVAIL and
 * the head is read again from the database before the next transaction.
 *
 * A head read from the database (at start, after a primary-key clash, after a lost connection)
 * that this writer's key did not sign a checkpoint over is checked before anything is chained onto
 * it: its content must give its stored hash, its prev_hash the stored hash of the record before
 * it. One that fails is not linked to: the next record, audit.break, starts a new segment linked
 * to nothing (32 zero bytes), with a critical audit_head_rejected incident and a checkpoint.
 *
 * Checkpoints: after every `checkpoint_every` records, and `checkpoint_ms` after the first record
 * not yet covered, the writer signs (sign.h: Ed25519 under the aes suite, SM2 under sm; the
 * keyring's audit key of that suite) the head and inserts the
 * checkpoint in the transaction that reaches it (or in one of its own for the timer).
 *
 * The writer's requests to the pool are GW_DB_RESERVED (db.h): a pool queue filled by other
 * requests delays an audit transaction but does not fail it, so the record of a call refused
 * for that full queue is still written.
 *
 * Callbacks never run from inside the call that queued the entry. */
#ifndef GW_STORE_AUDIT_H
#define GW_STORE_AUDIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "audit_rec.h"
#include "db.h"
#include "err.h"

struct event_base;
struct gw_audit;
struct gw_audit_req;

#define GW_AUDIT_GROUP_MAX 64   /* entries per transaction */
#define GW_AUDIT_STMTS_MAX 8    /* statements per entry */
#define GW_AUDIT_RECS_MAX 4     /* records per entry */
#define GW_AUDIT_QUEUE_MAX 4096 /* entries waiting by default; more are refused GW_EQUEUEFULL */

struct gw_audit_config {
    const char *chain;          /* this instance's chain id (^[A-Za-z0-9._:@-]{1,64}$, not "ctl",
                                 * waygatectl's) */
    uint32_t checkpoint_every;  /* records between checkpoints (>= 1) */
    uint32_t checkpoint_ms;     /* at most this long before a record is covered (>= 1) */
    enum gw_sign_alg alg;       /* the configured suite's: Ed25519 (aes) or SM2 (sm) */
    const uint8_t *seed;        /* its private key (GW_SIGN_SEED_LEN bytes), copied */
    enum gw_sign_alg other_alg; /* the keyring's audit key of its other suite (a suite
                                 * migration), or other_seed NULL: a head whose writer MAC is
                                 * under it is this writer's too */
    const uint8_t *other_seed;
    uint32_t queue_max; /* entries waiting, past which gw_audit_write answers GW_EQUEUEFULL
                         * ([audit] queue_max); 0: GW_AUDIT_QUEUE_MAX */
};

/* An entry's outcome. err: 0 (committed: seq is the sequence number of its first record; res
 * holds the results of the entry's own statements, res->results[0..nstmts), valid during the
 * callback only); GW_EINTERNAL (a statement of the entry failed: nothing of it committed;
 * res->failed_stmt indexes the entry's statements, or is >= nstmts when an audit insert failed,
 * e.g. the INSERT privilege was revoked); GW_EUNAVAIL (database down or outcome unknown: the
 * action may or may not have committed; a retry is safe only if the action is idempotent), or
 * the error gw_db_exec gave when the transaction could not be sent. res is NULL when nothing was
 * sent. A cancelled entry's callback never runs, nor do those of entries gw_audit_free drops. */
typedef void (*gw_audit_done_cb)(void *arg, int err, int64_t seq, const struct gw_db_result *res);

/* Creates the writer over db (which must outlive it). Nothing is written until gw_audit_start.
 * Returns 0 and *out, GW_EINVAL (bad config), GW_ECRYPTO (the writer-MAC keys not derived) or
 * GW_ENOMEM. */
int gw_audit_new(struct gw_db *db, const struct gw_audit_config *cfg,
                 struct gw_audit **out) GW_MUST_CHECK;
/* Registers the chain and the public key (idempotent) and recovers the head; retried while the
 * database is down. Entries may be queued before it completes. Returns 0 or GW_ENOMEM. */
int gw_audit_start(struct gw_audit *a) GW_MUST_CHECK;
/* Drops queued and in-flight entries without running their callbacks, and frees. NULL-safe;
 * not from inside an audit callback. */
void gw_audit_free(struct gw_audit *a);

/* Called once the queue is empty and nothing is in flight (left 0), or when the time given ran
 * out first (left: the entries still queued or in flight, not written). */
typedef void (*gw_audit_drained_cb)(void *arg, uint64_t left);
/* At shutdown, after the last entry was queued: cb once everything queued is written, with a
 * checkpoint over the last record, or timeout_ms passed; never from inside this call. At most
 * one drain per writer. */
void gw_audit_drain(struct gw_audit *a, uint32_t timeout_ms, gw_audit_drained_cb cb, void *arg);

/* Queues an action (stmts[0..nstmts), nstmts <= GW_AUDIT_STMTS_MAX, may be 0: a record of its
 * own) with its records (recs[0..nrecs), 1 <= nrecs <= GW_AUDIT_RECS_MAX). Everything is copied.
 * Statements that need a row-level-security scope set it themselves (store_int.h's scope
 * statement) as one of the entry's statements. Returns 0 and a handle in *out (may be NULL), or
 * GW_EINVAL (a record breaks gw_audit_rec_check, too many statements or records), GW_EQUEUEFULL
 * (queue full), GW_ENOMEM: then cb will not run. */
int gw_audit_write(struct gw_audit *a, const struct gw_db_stmt *stmts, int nstmts,
                   const struct gw_audit_rec *recs, int nrecs, gw_audit_done_cb cb, void *arg,
                   struct gw_audit_req **out) GW_MUST_CHECK;
/* As gw_audit_write, for an entry that records what already happened and that nobody waits for
 * (a refusal, a stopped run, a reload): it is queued even while the database is away and waits
 * for it instead of failing UNAVAILABLE (such entries may fill half of queue_max: past it,
 * GW_EQUEUEFULL), and a transaction of it whose outcome is unknown (its connection lost, or the
 * server shutting down: class 08, 57P0x) is settled by the next recovery, after a pause that
 * grows to 2 s when that repeats: done when its last record is stored, else sent again; one
 * that a passing error rolled back (class 53: a full disk) is sent again after that pause. When
 * that error was its own statement's, it goes in transactions of its own from then on, and
 * after three such failures each right after a transaction that committed, it fails
 * GW_EUNAVAIL (logged): it cannot hold up the others for ever. Its time (at_us) is when it is
 * chained, not when what it records happened. cb runs once: 0 when committed, or the error that
 * failed it for good (GW_EINTERNAL: a statement or record refused; GW_EUNAVAIL as above;
 * GW_ENOMEM; a full pool queue). Entries still queued at gw_audit_free are dropped (a drain
 * waits for them). No handle: it cannot be cancelled. */
int gw_audit_write_kept(struct gw_audit *a, const struct gw_db_stmt *stmts, int nstmts,
                        const struct gw_audit_rec *recs, int nrecs, gw_audit_done_cb cb,
                        void *arg) GW_MUST_CHECK;
/* An entry the writer holds that was not written: its statements and records as
 * gw_audit_write_kept took them (valid during the visit only). in_doubt: its transaction was sent
 * and its outcome is not known (a connection lost, or still in flight): it committed exactly when
 * the record at doubt_seq holds doubt_hash (the transaction's last record). */
struct gw_audit_left {
    struct gw_db_stmt stmts[GW_AUDIT_STMTS_MAX];
    int nstmts;
    struct gw_audit_rec recs[GW_AUDIT_RECS_MAX];
    int nrecs;
    bool in_doubt;
    int64_t doubt_seq;
    uint8_t doubt_hash[GW_AUDIT_HASH_LEN];
};
/* Returns 0 to go on, or an error that stops the visit. */
typedef int (*gw_audit_left_cb)(void *arg, const struct gw_audit_left *e);
/* At shutdown, right before gw_audit_leftover: from here on the writer sends nothing (no
 * recovery, no transaction: its recovery in flight is cancelled, and one that answers, or its
 * timers, start nothing) and calls nothing back, and gw_audit_write* answer GW_EUNAVAIL; so the
 * entries its leftover visits are written from the spool alone. A transaction already sent stays
 * what it was, in doubt (gw_audit_leftover marks its entries so). Only gw_audit_leftover,
 * gw_audit_sent_in_doubt, gw_audit_stats and gw_audit_free are of use after it. NULL-safe. */
void gw_audit_halt(struct gw_audit *a);
/* At shutdown, once the drain has answered: visits each kept entry (gw_audit_write_kept's, the
 * writer's own gateway.start, rebound ones) not known written, oldest first: those whose
 * transaction's outcome is unknown, the in-flight transaction's, then the queued ones. The others
 * are actions not done (their callers were answered) or rows their owner spools itself
 * (incident.h). Returns 0 or the first error cb returned. The writer is unchanged. */
int gw_audit_leftover(struct gw_audit *a, gw_audit_left_cb cb, void *arg) GW_MUST_CHECK;
/* Whether gw_audit_leftover visits the kept entry whose callback is cb(arg): queued, in flight or
 * in doubt, not cancelled. False for one gone, and for one that failed and whose failure is not
 * told yet (gw_audit_halt stops the telling: it is in no leftover, and its callback never runs),
 * so that an owner that keeps a count of its kept entries (refusals.h) can spool the count
 * itself. NULL-safe (false). */
bool gw_audit_holds(const struct gw_audit *a, gw_audit_done_cb cb, const void *arg);
/* True while an entry whose callback is cb is in a transaction this writer sent in this run
 * that may have committed unanswered: in flight, or its connection lost and no recovery has
 * settled it yet. Such entries are in doubt (gw_audit_leftover marks them so); whoever keeps a
 * copy of one elsewhere (a spool file read at start, audit_replay.h, whose entries all have its
 * one callback) must not keep it as still owed. Entries still queued, and transactions holding
 * none of cb's (a checkpoint alone, other callers' records), do not count (review). NULL-safe
 * (false). */
bool gw_audit_sent_in_doubt(const struct gw_audit *a, gw_audit_done_cb cb);
/* After gw_audit_halt, for an owner that spools its own entries (incident.h): true when r (a
 * handle of gw_audit_write's) is in the transaction this writer has in flight, sent and not
 * answered, which may commit after the exit: then *seq and hash are its last record's, as
 * gw_audit_leftover marks its kept entries of that transaction in doubt. False for an entry still
 * queued, or one whose send failed (nothing of it sent). NULL-safe (false). */
bool gw_audit_req_in_doubt(const struct gw_audit *a, const struct gw_audit_req *r, int64_t *seq,
                           uint8_t hash[GW_AUDIT_HASH_LEN]);
/* Before gw_audit_start: a kept entry left in doubt by an earlier run (e, its in_doubt fields
 * set; from a spool). The first recovery reads the record at e->doubt_seq: when it holds
 * e->doubt_hash the entry committed then (cb 0), else it is chained anew as gw_audit_write_kept's.
 * Every such entry names the same transaction (one is in doubt at a time). Returns 0, or GW_EINVAL
 * (started already, another transaction named, a record or statement refused), GW_ENOMEM; then
 * cb will not run. */
int gw_audit_write_in_doubt(struct gw_audit *a, const struct gw_audit_left *e, gw_audit_done_cb cb,
                            void *arg) GW_MUST_CHECK;

/* Cancels: the callback never runs. An entry already sent is committed or not, silently. */
void gw_audit_cancel(struct gw_audit_req *r);
/* For an entry that must be written even though its caller goes away (unlike gw_audit_cancel,
 * which drops a queued entry and one whose transaction is retried): it stays queued or in
 * flight as it is, and cb(arg) runs in place of its callback, which must not reach the caller.
 * From then on it is kept as gw_audit_write_kept's are: an outage does not fail it, even one
 * its send already met (no connection) whose failure was not yet told. */
void gw_audit_rebind(struct gw_audit_req *r, gw_audit_done_cb cb, void *arg);

struct gw_audit_stats {
    int64_t head_seq;        /* last sequence number known committed (0: empty chain) */
    uint64_t written;        /* records committed since start */
    uint64_t transactions;   /* audit transactions committed */
    uint64_t checkpoints;    /* checkpoints committed */
    uint64_t planted;        /* checkpoints not written: another row held their seq already */
    uint64_t rejected;       /* heads read from the database that failed their check: not chained
                              * onto (a new segment started after each, audit.break) */
    uint64_t failed;         /* entries that failed */
    uint64_t written_before; /* a spool's entries not written: their mark was there, written by
                              * an earlier replay (audit_spool.h); not failed */
    uint32_t queued;         /* entries waiting now */
    uint32_t queue_max;      /* entries that may wait (gw_audit_config's queue_max) */
    bool ready;              /* head recovered */
    bool down;               /* its last recovery failed (the database away, a lock held past the
                              * recovery's timeout, ...): only kept entries are queued, and wait */
};
void gw_audit_stats(const struct gw_audit *a, struct gw_audit_stats *out);
const char *gw_audit_chain(const struct gw_audit *a);

#endif
