/* db_int.h: private to the database pool (db.c: the pool, its request queue and the public API;
 * db_conn.c: one connection's state machine). Not for other modules: they use db.h. */
#ifndef GW_DB_INT_H
#define GW_DB_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>

#include <event2/util.h>

#include "db.h"

#define DB_PREPARED_MAX 16

enum conn_state {
    CONN_DOWN,       /* not connected; ev_timer may hold a reconnect */
    CONN_CONNECTING, /* PQconnectPoll in progress; ev_timer holds the connect timeout */
    CONN_READY,      /* in pipeline mode; takes callers' requests once pinned */
    CONN_FAILING,    /* a send failed; ev_timer is active to tear it down from the loop */
};

/* A statement as copied into the request's single allocation. */
struct req_stmt {
    const char *sql;
    const char *const *values;
    const int *lengths;
    const int *formats;
    int nparams;
    int result_format;
    int prepare_slot; /* >= 0: this is the PQsendPrepare of db->prepared[slot] (internal) */
};

struct conn;

/* One owner's count (db_owner.c): on its hash chain while n > 0, freed when n drops to 0. */
struct db_owner {
    struct db_owner *next;
    unsigned n; /* callers' requests charged to it, queued or in flight */
    unsigned char key[GW_DB_OWNER_LEN];
};
#define DB_OWNER_BUCKETS 256

struct gw_db_req {
    TAILQ_ENTRY(gw_db_req) link;
    struct gw_db *db;
    struct conn *conn; /* NULL while queued */
    gw_db_done_cb cb;
    void *arg;
    bool queued;
    bool cancelled;
    bool internal;    /* the connection's own (a prepare, the isolation level): no caller waits */
    bool slow;        /* GW_DB_SLOW: runs alone on its connection */
    uint64_t sent;    /* the pool's count of requests sent when it was sent (its order) */
    uint64_t sent_ms; /* when it was sent (gw_clock_ms): its age in the pipeline */
    /* the count it is charged to (db_owner.c), NULL when none or once given back */
    struct db_owner *owner;
    int nstmts;
    struct req_stmt *stmts;
    PGresult **results;
    size_t alloc_size;
    /* reading state */
    int cursor;      /* statement whose results are being read; == nstmts: waiting for the sync */
    bool cur_seen;   /* a result for stmts[cursor] arrived; the next NULL ends it */
    int failed_stmt; /* -1 or index */
    char sqlstate[6];
    char *errmsg;
};

TAILQ_HEAD(req_list, gw_db_req);

struct conn {
    struct gw_db *db;
    unsigned slot;
    enum conn_state state;
    PGconn *pg;
    struct event *ev_conn;  /* connect phase: one-shot on the current PQsocket */
    struct event *ev_rd;    /* ready: persistent read */
    struct event *ev_wr;    /* ready: one-shot write, armed while PQflush has more to send */
    struct event *ev_timer; /* connect timeout, reconnect backoff, deferred teardown */
    PostgresPollingStatusType poll;
    unsigned attempt; /* failed connects or set-ups in a row (backoff exponent) */
    unsigned ninflight;
    unsigned ninternal;  /* of those, internal requests */
    bool pinned;         /* its session statement succeeded: it takes callers' requests */
    bool schema_refused; /* its last set-up found the schema behind: its retries log at debug */
    struct req_list inflight;
    uint32_t prepared_ok; /* bit i: db->prepared[i] is prepared on this connection */
};

struct prepared {
    char *sql;
    char name[16];
};

struct gw_db {
    struct event_base *base;
    char *conninfo;
    unsigned pool_size;
    unsigned depth;
    unsigned queue_max;
    uint32_t connect_timeout_ms;
    uint32_t reconnect_max_ms;
    bool started;
    unsigned nready;           /* connections that take callers' requests (ready and pinned) */
    char *session_sql;         /* NULL: GW_DB_SESSION_SQL (gw_db_set_session_sql, for tests) */
    unsigned session_failures; /* connections closed because their session statement failed */
    int schema_min;            /* 0: no check; else the oldest schema version taken into use */
    int schema_version;        /* as the last connection read it: GW_DB_SCHEMA_UNKNOWN before */
    unsigned schema_refusals;  /* connections closed because the schema was behind */
    unsigned nqueued;
    struct req_list queue;
    uint64_t nsent; /* requests sent so far (gw_db_req.sent) */
    /* shares (db_owner.c) */
    unsigned share;
    struct gw_db_owner cur; /* the current owner: charged for what is submitted now */
    struct db_owner *owners[DB_OWNER_BUCKETS];
    unsigned long share_refusals;
    unsigned share_peak;
    struct prepared prepared[DB_PREPARED_MAX];
    int nprepared;
    struct conn *conns;
    /* db.c's dispatcher (gives queued requests to connections with room), called by a connection
     * when it becomes ready or a request completes: the one upcall from db_conn.c to db.c. */
    void (*dispatch)(struct gw_db *db);
};
/* db_req.c: the request's single allocation holding copies of the statements, NULL with *err set;
 * running its callback (unless cancelled) and freeing it (r is on no list). */
struct gw_db_req *gw_db_req_new(const struct gw_db_stmt *stmts, int nstmts, int *err);
void gw_db_req_complete(struct gw_db_req *r, int err);
/* db_req.c: frees (and wipes) r without running its callback (r is on no list). NULL-safe. */
void gw_db_req_free(struct gw_db_req *r);
/* db_owner.c: charges r to db's current owner (flags permitting): 0 or GW_ENOMEM; gives r's
 * charge back (once: later calls do nothing); frees every count (gw_db_free). */
int gw_db_owner_charge(struct gw_db *db, struct gw_db_req *r, unsigned flags);
void gw_db_owner_release(struct gw_db_req *r);
void gw_db_owner_free_all(struct gw_db *db);
/* db_req.c: the slot of a prepared statement or -1. */
int gw_db_find_prepared(const struct gw_db *db, const char *sql);

/* db_conn.c: starts a non-blocking connect; closes the PGconn and its events (no callbacks). */
void gw_db_conn_connect(struct conn *c);
void gw_db_conn_close_pg(struct conn *c);
/* db_conn.c: puts r on c's in-flight FIFO and writes it; a failed send tears c down from the loop
 * (r then gets GW_EUNAVAIL). Returns 0. Queues the PQsendPrepare of db->prepared[slot] on c. */
int gw_db_conn_send(struct conn *c, struct gw_db_req *r);
void gw_db_conn_send_prepare(struct conn *c, int slot);
/* db_conn.c: a connection's ev_timer (connect timeout, reconnect backoff, deferred teardown). */
void gw_db_on_timer(evutil_socket_t fd, short what, void *arg);

#endif
