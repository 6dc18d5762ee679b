/* db.h: the asynchronous PostgreSQL pool on libpq and libevent. Connections connect without
 * blocking (PQconnectStart/PQconnectPoll), run in pipeline mode, and reconnect with exponential
 * backoff when the server goes away. No call in this module blocks the event loop.
 *
 * A request is a list of statements sent back to back in one pipeline, optionally wrapped in
 * BEGIN/COMMIT, ended by a sync point; its callback runs once with every statement's result,
 * unless the request was cancelled first. */
#ifndef GW_DB_H
#define GW_DB_H

#include <libpq-fe.h>
#include <stdbool.h>

#include "err.h"

struct event_base;
struct gw_config;
struct gw_db;
struct gw_db_req;

struct gw_db_stmt {
    const char *sql;
    int nparams;
    const char *const *values; /* NULL entries are SQL NULL */
    const int *lengths;        /* used for binary parameters; may be NULL when all are text */
    const int *formats;        /* 0 text, 1 binary; NULL = all text */
    int result_format;         /* 0 text, 1 binary */
};

struct gw_db_result {
    int nresults;             /* == number of statements submitted */
    PGresult *const *results; /* results[i] for stmts[i]; NULL past a failed statement */
    int failed_stmt;          /* index of the failing statement, or -1 */
    const char *sqlstate;     /* SQLSTATE of the failure, or NULL */
    const char *errmsg;       /* server's message: may quote values, never log or return it */
    /* with GW_EUNAVAIL: the statement whose error of class 53 (insufficient resources: a full
     * disk, out of memory) rolled the transaction back on a connection that stayed up, so
     * nothing committed; -1 when the outcome is unknown (connection lost, server shutting down) */
    int rolled_back_at;
};

/* err: 0; GW_EINTERNAL when a statement failed (see res->failed_stmt, res->sqlstate; the
 * transaction, if any, was rolled back); GW_EUNAVAIL when the connection was lost before the
 * outcome was known (a transaction may or may not have committed), or a statement failed for a
 * passing reason (res->rolled_back_at tells which, when it is known that nothing committed). res
 * and everything it points to are valid only during the callback. */
typedef void (*gw_db_done_cb)(void *arg, int err, const struct gw_db_result *res);

/* GW_DB_TXN: wrap the statements in one transaction. Note: every request already is one (the
 * statements between two pipeline sync points form an implicit transaction, committed at the
 * sync, rolled back when one fails), so db.c sends no BEGIN/COMMIT; the flag documents the
 * caller's intent.
 * GW_DB_RESERVED: the audit writer's (audit.c) and the data-key wrap leases' (app/wrapguard.c):
 * besides [database] queue_max requests waiting, the queue keeps GW_DB_QUEUE_RESERVE places that
 * only such requests take, so that when Submits or reads have filled the queue an audit
 * transaction (the record of a refusal among them) is still queued, not failed, and a gateway
 * whose callers fill the queue still leases the wraps its Submits need. The writer has at most
 * one request out at a time (its recovery or its one transaction), the wrap guard two (the
 * lease of the current KEK, and a reload's of its new one): what the reserve is sized for.
 * GW_DB_SLOW: the request may run long (a report's counts over a month of audit records): it is
 * sent only to a connection with no caller's request in flight, and nothing is pipelined behind
 * it while it runs, so no other request (the audit writer's among them) waits for it; it waits in
 * the queue, letting later requests pass, until such a connection is free. */
enum { GW_DB_TXN = 1 << 0, GW_DB_SLOW = 1 << 1, GW_DB_RESERVED = 1 << 2, GW_DB_SHARED = 1 << 3 };
#define GW_DB_QUEUE_RESERVE 3u

/* Shares (db_owner.c): one principal's calls cannot fill the queue and starve everyone else's
 * database work. The pool counts the callers' requests queued or in flight per owner, a 32-byte
 * key the caller chooses (the connection's certificate fingerprint, gw_db_owner_of, or a key
 * derived from it and an account: api_share.c): a request is charged to the pool's current
 * owner (gw_db_owner_swap; call.c sets it, through the rpc layer's hooks, around a call's
 * identity step, handler start and writable function) and, while
 * a charged request's callback runs, the current owner is that request's, so that the next step
 * of the same call is charged to the same principal. A request's charge is given back exactly
 * once: just before its callback runs, or when it is freed without one (cancelled while queued,
 * the pool freed); a request cancelled after it was sent keeps its charge until its result has
 * come (it holds its place in the pipeline until then). Not charged: GW_DB_RESERVED (the audit
 * writer's), GW_DB_SHARED (work that serves many callers at once or the gateway itself: the
 * store's group commits of Submits and scan events), the connections' own, and anything
 * submitted with no current owner (timers: the forwarder, retention, sweeps, the outbox).
 * gw_db_exec never refuses a request for its owner's count: the refusal is the caller's,
 * before a new call does any database work (gw_db_share_used), so that a call admitted runs
 * its steps to the end. */
#define GW_DB_OWNER_LEN 32
struct gw_db_owner {
    bool set; /* false: no owner (nothing submitted now is charged) */
    unsigned char key[GW_DB_OWNER_LEN];
};
/* The owner of a connection's calls: its certificate's fingerprint, or for calls without a
 * certificate (the unauthenticated principal) one shared key of zeros, so that anonymous
 * callers together hold one share. */
void gw_db_owner_of(struct gw_db_owner *o, bool has_cert, const unsigned char *fpr);
/* Makes owner (NULL: none) the current owner; *prev (may be NULL) gets the one it replaces, to
 * be restored by a second swap when the work submitted for owner has been. */
void gw_db_owner_swap(struct gw_db *db, const struct gw_db_owner *owner, struct gw_db_owner *prev);
/* The share: callers' requests one owner may have queued or in flight before its new calls are
 * refused ([database] queue_share; 0 there: queue_max / 16, at least pool_size x pipeline_depth).
 */
unsigned gw_db_share(const struct gw_db *db);
/* Requests charged to owner now (queued or in flight). */
unsigned gw_db_owner_pending(const struct gw_db *db, const struct gw_db_owner *owner);
/* True when owner holds its share (gw_db_owner_pending >= gw_db_share): its new call must be
 * refused (GW_ETOOBIG, GW_RULE_DB_SHARE with the share as limit); counts the refusal. */
bool gw_db_share_used(struct gw_db *db, const struct gw_db_owner *owner);
/* New calls refused so since start (metrics), and the most requests one owner held. */
unsigned long gw_db_share_refusals(const struct gw_db *db);
unsigned gw_db_share_peak(const struct gw_db *db);

/* Creates the pool; nothing connects until gw_db_start(). Returns NULL on allocation failure. */
struct gw_db *gw_db_new(struct event_base *base, const struct gw_config *cfg);
/* Starts connecting every pool slot; returns 0 (connection failures are retried, not returned). */
int gw_db_start(struct gw_db *db) GW_MUST_CHECK;
/* Closes every connection; pending requests are dropped without callbacks. NULL-safe. Must not
 * be called from inside a gw_db_done_cb. */
void gw_db_free(struct gw_db *db);

/* Queues a request (charged to the current owner, above, unless flags say otherwise). The
 * statements, parameters and SQL are copied: the caller's memory may be
 * released when this returns. Returns 0 and a cancellable handle in *out (may be NULL if the
 * caller never cancels), or GW_EUNAVAIL (no connection is up), GW_EQUEUEFULL (queue_max waiting,
 * or for a GW_DB_RESERVED request queue_max + GW_DB_QUEUE_RESERVE: nothing sent), GW_ENOMEM,
 * GW_EINVAL; on an error return cb will not be called. */
int gw_db_exec(struct gw_db *db, const struct gw_db_stmt *stmts, int nstmts, unsigned flags,
               gw_db_done_cb cb, void *arg, struct gw_db_req **out) GW_MUST_CHECK;

/* Cancels a request: its callback will not run. A request already sent still executes on the
 * server (a transaction may commit); its results are discarded. The handle is valid until its
 * callback starts or until this returns: never cancel a handle whose callback already ran. */
void gw_db_cancel(struct gw_db_req *req);
/* Its caller went away, but must know when a request ends (it holds a connection until then): a
 * request still queued is dropped and false returned (cb will not run); one already sent runs to
 * its end as before and cb, not the request's callback, gets its outcome (true). Same handle
 * rules as gw_db_cancel. */
bool gw_db_rebind(struct gw_db_req *req, gw_db_done_cb cb, void *arg);

/* Registers a statement text to be prepared (server-side, unnamed types) on every connection,
 * now and after each reconnect. Later statements whose sql is the identical text run as the
 * prepared statement on connections where the prepare succeeded (as plain text elsewhere), so the
 * server parses and plans it once per connection. Returns 0, GW_ETOOBIG (more than 16), GW_ENOMEM,
 * GW_EINVAL. Added by the database engineer. */
int gw_db_prepare(struct gw_db *db, const char *sql) GW_MUST_CHECK;

/* The connection string the pool connects with (for a module that needs a connection of its own
 * outside the pool: outbox.c's LISTEN). Valid until gw_db_free. */
const char *gw_db_conninfo(const struct gw_db *db);
/* What every session of the gateway and of waygatectl runs first. Their transactions are
 * written for READ COMMITTED: where a statement waits for a lock (the number lock of
 * store_group.c, the audit chain's head), the next statement's fresh snapshot sees what the
 * lock's holder committed. A default of REPEATABLE READ (the database's, a role's, PGOPTIONS, a
 * service file) would take that away without an error. */
#define GW_DB_SESSION_SQL "SET default_transaction_isolation = 'read committed'"

/* For tests: connections made after this call run sql first instead of GW_DB_SESSION_SQL
 * (copied; NULL restores it), so that a test can make it fail. Returns 0, GW_EINVAL, GW_ENOMEM. */
int gw_db_set_session_sql(struct gw_db *db, const char *sql) GW_MUST_CHECK;
/* The newest migration applied to the database (sql/029_schema_version.sql: a function of the
 * owner's that the gateway's role may call; it reads nothing else of schema_migrations). */
#define GW_DB_SCHEMA_SQL "SELECT schema_version()"
/* gw_db_schema_version before any connection read the version, or with no check set. */
#define GW_DB_SCHEMA_UNKNOWN (-1)
/* gw_db_schema_version when it could not be read (SQLSTATE class 42: no schema_version(), as
 * before sql/029, or the role may not call it): a schema older than any build that checks. */
#define GW_DB_SCHEMA_UNREADABLE (-2)

/* The oldest schema the pool may use: the newest migration the build embeds (the daemon's
 * gw_migrate_newest). Connections set up after this call read GW_DB_SCHEMA_SQL after their
 * session statement; one that finds the schema below min_version, or cannot read it, takes no
 * caller's request: it is closed and tried again after the backoff, like one whose session
 * statement failed, so that calls answer UNAVAILABLE as while PostgreSQL is down, until
 * `waygatectl migrate` has run (no restart). A newer schema is used (migrate first, then upgrade
 * the gateways). Each change of what the connections find is logged once: an ERROR naming both
 * versions and the remedy while behind, an INFO when it is right. 0, the default, checks
 * nothing (a pool on a bare database). Returns 0, or GW_EINVAL (db NULL, min_version < 0). */
int gw_db_set_schema_min(struct gw_db *db, int min_version) GW_MUST_CHECK;
/* The schema version the last connection to read it found (>= 0), GW_DB_SCHEMA_UNKNOWN or
 * GW_DB_SCHEMA_UNREADABLE. */
int gw_db_schema_version(const struct gw_db *db);
/* The minimum set by gw_db_set_schema_min (0: no check). */
int gw_db_schema_min(const struct gw_db *db);
/* True while the last connection to read the schema found it below the minimum (or could not
 * read it): no new connection is taken into use. */
bool gw_db_schema_behind(const struct gw_db *db);
/* Connections closed because they found the schema behind (or unreadable). */
unsigned gw_db_schema_refusals(const struct gw_db *db);
/* Connections closed because their session statement failed. */
unsigned gw_db_session_failures(const struct gw_db *db);
/* True when at least one connection is established, has run the session statement and takes
 * requests. */
bool gw_db_ready(const struct gw_db *db);
/* Connections that take callers' requests: up, their prepares answered and their session
 * statement run (at most gw_db_pool_size; fewer while some are down or still setting up). */
unsigned gw_db_nready(const struct gw_db *db);
/* Number of callers' requests queued or in flight (for drain and metrics; not the
 * connections' own: prepares, the isolation level). */
unsigned gw_db_pending(const struct gw_db *db);
/* Number of connections in the pool (the most transactions that can run at once). */
unsigned gw_db_pool_size(const struct gw_db *db);
/* The event loop the pool runs on (for modules layered on it, e.g. the store's group commit).
 * Added by the database engineer. */
struct event_base *gw_db_base(const struct gw_db *db);

#endif
