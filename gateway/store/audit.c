/* audit.c: the gateway's audit chain writer (audit.h). The chain head is this process's: the
 * committed head (head_seq, head_hash) is what the database holds; while a transaction is in
 * flight its records are chained past it, and only its commit moves the head. One transaction at
 * a time (so a failed one never leaves a successor chained to records that do not exist), with
 * every entry queued meanwhile going out together in the next one.
 *
 * Invariants: inflight != NULL exactly while a transaction is out; an entry is on the queue, in
 * the in-flight batch, or freed; the committed head only moves in done_cb on success or in
 * recovery. */
#include "audit.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <time.h>

#include <event2/event.h>
#include <openssl/crypto.h>

#include "alloc.h"
#include "audit_read.h"
#include "audit_signer.h"
#include "audit_spool.h"
#include "clock.h"
#include "config.h"
#include "log.h"
#include "pq_msg.h"

#define REC_PARAMS 20
#define KEY_ID_LEN 64

/* enqueue's flags */
#define ENTRY_KEPT 1u /* gw_audit_write_kept's */
#define ENTRY_OWN 2u  /* the writer's own records: past the queue's bound */
/* failures of a kept entry's own statement, each by itself right after a transaction that
 * committed, before it is dropped (failed_txn) */
#define BLAME_MAX 3u

/* Held by every audit transaction (its first statement), and taken by the recovery before it
 * reads the last record of one whose outcome is unknown (settle): a transaction whose connection
 * was lost while its session lives on (a proxy or the network cut it, not the server) has ended,
 * committed or not, before that read. Class 1397: sql/ and store/ use 1398 (scans) and 1399
 * (numbers). */
#define CHAIN_LOCK_SQL "SELECT pg_advisory_xact_lock(1397, hashtext($1))"

static const char INSERT_SQL[] =
    "INSERT INTO audit_record (chain, seq, at_us, actor, role, peer, cert, branch, action, "
    "object, count, purpose, legal_basis, approval, outcome, detail, confidential, prev_hash, "
    "hash, writer_mac) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, "
    "$16, $17, $18, $19, $20)";
/* A row already at (chain, seq) is not this writer's (it signs each seq once): someone who may
 * insert checkpoints planted it. Nothing is inserted then, the records still commit, and done_cb
 * reports it; a duplicate-key failure here would read the head again and retry the same seq
 * without end. */
/* A checkpoint over a later stored record is planted too (a login role may insert a checkpoint
 * only beyond every such one of its chain, sql/045: the insert would fail and take the records
 * with it): the same. */
static const char CHECKPOINT_SQL[] =
    "INSERT INTO audit_checkpoint (chain, seq, head_hash, at_us, key_id, signature) "
    "SELECT $1::text, $2::bigint, $3::bytea, $4::bigint, $5::text, $6::bytea WHERE NOT EXISTS "
    "(SELECT 1 FROM audit_checkpoint k JOIN audit_record p ON p.chain = k.chain AND p.seq = k.seq "
    "AND p.hash = k.head_hash WHERE k.chain = $1::text AND k.seq >= $2::bigint) "
    "ON CONFLICT (chain, seq) DO NOTHING RETURNING seq";

/* One record as chained: the caller's strings (copied) and what chaining added. */
struct crec {
    char *s[10]; /* actor role peer cert branch action object purpose legal_basis approval */
    char *outcome, *detail;
    int64_t count;
    bool confidential;
    int64_t seq, at_us;
    uint8_t prev[GW_AUDIT_HASH_LEN], hash[GW_AUDIT_HASH_LEN];
    uint8_t mac[GW_CRYPTO_MAC_LEN]; /* the writer MAC of hash */
    char seq_txt[24], at_txt[24], count_txt[24];
};

/* One statement of the caller's, copied: one block holding the SQL and every parameter. */
struct cstmt {
    struct gw_db_stmt st;
    void *block;
};

struct gw_audit_req {
    TAILQ_ENTRY(gw_audit_req) link;
    struct gw_audit *a;
    gw_audit_done_cb cb;
    void *arg;
    bool cancelled;
    bool queued;     /* on the writer's queue (else in flight or being finished) */
    bool keep;       /* gw_audit_write_kept's: waits out an outage instead of failing */
    bool failing;    /* on the writer's failed list, its callback not run yet */
    bool alone;      /* kept, and its own statement failed for a passing reason: sent by itself */
    uint32_t blamed; /* times that failed by itself right after a transaction that committed */
    int nstmts, nrecs;
    struct cstmt stmts[GW_AUDIT_STMTS_MAX];
    struct crec recs[GW_AUDIT_RECS_MAX];
    int first_stmt; /* index of stmts[0] in the transaction (while in flight) */
};

TAILQ_HEAD(req_list, gw_audit_req);

struct gw_audit {
    struct gw_db *db;
    char chain[65];
    uint32_t every, ckpt_ms;
    uint8_t seed[GW_SIGN_SEED_LEN];
    struct gw_sign_key key; /* alg and seed (the copy above) */
    uint8_t pub[GW_SIGN_PUB_MAX];
    size_t publen;
    char key_id[KEY_ID_LEN + 1];
    struct gw_crypto *cx;
    /* writer-MAC keys: [0] this writer's, which it writes with; [1] the keyring's other
     * suite's when it has one */
    struct gw_audit_mac_keys macs;

    bool ready;           /* head recovered */
    bool halted;          /* gw_audit_halt: sends nothing, calls nothing back */
    bool down;            /* the last recovery could not reach the database */
    uint32_t setup_fails; /* recoveries failed in a row (logged at the first, then 1 in 40) */
    bool announced;       /* gateway.start written since this process began */
    struct gw_audit_req *break_req; /* the audit.break entry not yet answered, or NULL */
    struct gw_db_req *setup;        /* recovery in flight */
    struct event *ev_retry;         /* recovery retry */
    struct event *ev_ckpt;          /* checkpoint timer */
    struct event *ev_fail;          /* runs the callbacks of entries that could not be sent */
    struct req_list failed;         /* those entries, and their error */
    int failed_err;
    int64_t head_seq; /* committed */
    uint8_t head_hash[GW_AUDIT_HASH_LEN];
    int64_t last_at;  /* the latest at_us chained (records never go back in time) */
    int64_t ckpt_seq; /* the newest checkpoint's seq (0: none) */
    bool ckpt_due;    /* the timer ran out with records uncovered */

    struct event *ev_drain; /* the drain's deadline, and its callback's event */
    gw_audit_drained_cb drain_cb;
    void *drain_arg;

    struct req_list queue;
    uint32_t nqueued;
    uint32_t queue_max; /* nqueued's bound: gw_audit_write answers GW_EQUEUEFULL at it */
    struct gw_db_req *inflight;
    struct req_list batch; /* entries of the in-flight transaction */
    /* kept entries of a transaction whose outcome is unknown (its connection was lost), and
     * the seq and hash of its last record: the next recovery reads that record to settle them */
    struct req_list unsure;
    int64_t unsure_seq;
    uint8_t unsure_hash[GW_AUDIT_HASH_LEN];
    bool unsure_sent; /* unsure holds a transaction of this run's (not gw_audit_write_in_doubt's) */
    uint32_t fail_rounds; /* transactions failed in a row: the recovery waits longer each time */
    int64_t batch_seq;    /* the head the in-flight transaction chains to, when committed */
    uint8_t batch_hash[GW_AUDIT_HASH_LEN];
    bool batch_ckpt; /* it carries a checkpoint over batch_seq */
    int batch_nstmts;

    struct gw_audit_stats st;
};

static void pump(struct gw_audit *a);
static void recover(struct gw_audit *a);
static void drained(struct gw_audit *a);
static void drain_cb(evutil_socket_t fd, short what, void *arg);

/* ---- copying what callers hand in ---- */

static void stmt_free(struct cstmt *c)
{
    gw_free(c->block);
    memset(c, 0, sizeof *c);
}

static size_t param_len(const struct gw_db_stmt *s, int i)
{
    if (s->values[i] == NULL)
        return 0;
    if (s->formats && s->formats[i] == 1 && s->lengths)
        return (size_t)s->lengths[i];
    return strlen(s->values[i]) + 1;
}

/* Copies one statement into a single block: [values][lengths][formats][sql][param bytes]. */
static int stmt_copy(struct cstmt *c, const struct gw_db_stmt *s)
{
    size_t n = (size_t)s->nparams, sqlen = strlen(s->sql) + 1, size, off;
    char *b;

    if (s->nparams < 0 || (s->nparams > 0 && s->values == NULL))
        return GW_EINVAL;
    size = n * (sizeof(char *) + 2 * sizeof(int)) + sqlen;
    for (int i = 0; i < s->nparams; i++)
        size += param_len(s, i);
    b = gw_malloc(size ? size : 1);
    if (!b)
        return GW_ENOMEM;
    const char **vals = (const char **)(void *)b;
    int *lens = (int *)(void *)(b + n * sizeof(char *));
    int *fmts = lens + n;
    off = n * (sizeof(char *) + 2 * sizeof(int));
    memcpy(b + off, s->sql, sqlen);
    c->st.sql = b + off;
    off += sqlen;
    for (int i = 0; i < s->nparams; i++) {
        size_t l = param_len(s, i);
        lens[i] = s->lengths ? s->lengths[i] : 0;
        fmts[i] = s->formats ? s->formats[i] : 0;
        if (s->values[i] == NULL) {
            vals[i] = NULL;
            continue;
        }
        memcpy(b + off, s->values[i], l);
        vals[i] = b + off;
        off += l;
    }
    c->block = b;
    c->st.nparams = s->nparams;
    c->st.values = n ? vals : NULL;
    c->st.lengths = n ? lens : NULL;
    c->st.formats = n ? fmts : NULL;
    c->st.result_format = s->result_format;
    return 0;
}

static void rec_free(struct crec *r)
{
    for (size_t i = 0; i < 10; i++)
        gw_free(r->s[i]);
    gw_free(r->outcome);
    gw_free(r->detail);
    memset(r, 0, sizeof *r);
}

static int dup_opt(char **dst, const char *s)
{
    *dst = NULL;
    if (s && !(*dst = gw_strdup(s)))
        return GW_ENOMEM;
    return 0;
}

static int rec_copy(struct crec *c, const struct gw_audit_rec *r)
{
    const char *s[10] = {r->actor,  r->role,   r->peer,    r->cert,        r->branch,
                         r->action, r->object, r->purpose, r->legal_basis, r->approval};
    for (size_t i = 0; i < 10; i++)
        if (dup_opt(&c->s[i], s[i]) != 0)
            return GW_ENOMEM;
    if (dup_opt(&c->outcome, r->outcome) != 0 || dup_opt(&c->detail, r->detail) != 0)
        return GW_ENOMEM;
    c->count = r->count < 0 ? -1 : r->count;
    c->confidential = r->confidential;
    return 0;
}

/* The record as the encoder sees it (pointers into c). */
static struct gw_audit_rec rec_view(const struct crec *c)
{
    struct gw_audit_rec r = {
        .actor = c->s[0],
        .role = c->s[1],
        .peer = c->s[2],
        .cert = c->s[3],
        .branch = c->s[4],
        .action = c->s[5],
        .object = c->s[6],
        .count = c->count,
        .purpose = c->s[7],
        .legal_basis = c->s[8],
        .approval = c->s[9],
        .outcome = c->outcome,
        .detail = c->detail,
        .confidential = c->confidential,
    };
    return r;
}

static void req_free(struct gw_audit_req *r)
{
    for (int i = 0; i < r->nstmts; i++)
        stmt_free(&r->stmts[i]);
    for (int i = 0; i < r->nrecs; i++)
        rec_free(&r->recs[i]);
    gw_free(r);
}

/* ---- the public interface ---- */

int gw_audit_new(struct gw_db *db, const struct gw_audit_config *cfg, struct gw_audit **out)
{
    struct gw_audit *a;

    *out = NULL;
    if (!db || !cfg || !gw_config_chain_id_ok(cfg->chain) || strcmp(cfg->chain, "ctl") == 0 ||
        !cfg->seed || cfg->checkpoint_every == 0 || cfg->checkpoint_ms == 0)
        return GW_EINVAL;
    a = gw_calloc(1, sizeof *a);
    if (!a)
        return GW_ENOMEM;
    a->db = db;
    snprintf(a->chain, sizeof a->chain, "%s", cfg->chain);
    a->every = cfg->checkpoint_every;
    a->ckpt_ms = cfg->checkpoint_ms;
    a->queue_max = cfg->queue_max > 0 ? cfg->queue_max : GW_AUDIT_QUEUE_MAX;
    memcpy(a->seed, cfg->seed, sizeof a->seed);
    a->key = (struct gw_sign_key){cfg->alg, a->seed};
    TAILQ_INIT(&a->queue);
    TAILQ_INIT(&a->batch);
    TAILQ_INIT(&a->failed);
    TAILQ_INIT(&a->unsure);
    if (gw_sign_public(&a->key, a->pub, &a->publen) != 0 ||
        gw_audit_key_id(a->pub, a->publen, a->key_id) != 0) {
        gw_audit_free(a);
        return GW_EINVAL;
    }
    a->cx = gw_crypto_new();
    for (int i = 0; a->cx != NULL && i < (cfg->other_seed != NULL ? 2 : 1); i++) {
        struct gw_sign_key k = {i == 0 ? cfg->alg : cfg->other_alg,
                                i == 0 ? a->seed : cfg->other_seed};
        if (gw_audit_mac_keys_add(a->cx, &a->macs, &k) != 0) {
            gw_audit_free(a);
            return GW_ECRYPTO;
        }
    }
    if (a->cx == NULL) {
        gw_audit_free(a);
        return GW_ENOMEM;
    }
    gw_crypto_forget(a->cx); /* the seeds the derivation cached: only the derived keys stay */
    *out = a;
    return 0;
}

static void retry_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    recover(arg);
}

static void arm_ckpt_timer(struct gw_audit *a);

static void ckpt_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct gw_audit *a = arg;
    (void)fd;
    (void)what;
    if (a->head_seq > a->ckpt_seq) {
        a->ckpt_due = true;
        pump(a);
    }
}

static void finish(struct req_list *l, int err, const struct gw_db_result *res);
static void requeue(struct gw_audit *a, struct req_list *l, bool kept_only);

/* Tells the failed entries, one at a time, each taken off a->failed only as its callback runs: a
 * callback may rebind another entry of the batch (gw_audit_rebind, a call cancelled), which must
 * find it on a->failed (before, the whole list was moved to one on this frame first, and such a
 * rebind unlinked an entry from the wrong list: a->failed's tail was left pointing into the dead
 * frame, and the next failed batch's entries were never told). At most the entries there now:
 * those a callback's own writes fail meanwhile are told at the next turn (fail_batch_later made
 * this event active again). */
static void fail_cb(evutil_socket_t fd, short what, void *arg)
{
    struct gw_audit *a = arg;
    struct gw_audit_req *r;
    size_t n = 0;
    (void)fd;
    (void)what;
    TAILQ_FOREACH(r, &a->failed, link)
    n++;
    while (n-- > 0 && (r = TAILQ_FIRST(&a->failed)) != NULL) {
        struct req_list l = TAILQ_HEAD_INITIALIZER(l);
        TAILQ_REMOVE(&a->failed, r, link);
        r->failing = false; /* off a->failed: a rebind from its own callback leaves it be */
        TAILQ_INSERT_TAIL(&l, r, link);
        finish(&l, a->failed_err, NULL);
    }
    drained(a);
}

/* Fails the in-flight batch from the loop, never from inside the caller's gw_audit_write. */
static void fail_batch_later(struct gw_audit *a, int err)
{
    struct gw_audit_req *r;
    TAILQ_FOREACH(r, &a->batch, link)
    {
        a->st.failed++;
        r->failing = true;
    }
    TAILQ_CONCAT(&a->failed, &a->batch, link);
    a->failed_err = err;
    event_active(a->ev_fail, EV_TIMEOUT, 0);
}

int gw_audit_start(struct gw_audit *a)
{
    a->ev_retry = evtimer_new(gw_db_base(a->db), retry_cb, a);
    a->ev_ckpt = evtimer_new(gw_db_base(a->db), ckpt_timer_cb, a);
    a->ev_fail = event_new(gw_db_base(a->db), -1, 0, fail_cb, a);
    a->ev_drain = evtimer_new(gw_db_base(a->db), drain_cb, a);
    if (!a->ev_retry || !a->ev_ckpt || !a->ev_fail || !a->ev_drain)
        return GW_ENOMEM;
    recover(a);
    return 0;
}

static void fail_list(struct req_list *l, int err)
{
    struct gw_audit_req *r;
    while ((r = TAILQ_FIRST(l)) != NULL) {
        TAILQ_REMOVE(l, r, link);
        req_free(r);
    }
    (void)err;
}

void gw_audit_free(struct gw_audit *a)
{
    if (!a)
        return;
    if (a->setup)
        gw_db_cancel(a->setup);
    if (a->inflight)
        gw_db_cancel(a->inflight);
    fail_list(&a->queue, GW_ECANCELLED);
    fail_list(&a->batch, GW_ECANCELLED);
    fail_list(&a->failed, GW_ECANCELLED);
    fail_list(&a->unsure, GW_ECANCELLED);
    if (a->ev_fail)
        event_free(a->ev_fail);
    if (a->ev_retry)
        event_free(a->ev_retry);
    if (a->ev_ckpt)
        event_free(a->ev_ckpt);
    if (a->ev_drain)
        event_free(a->ev_drain);
    OPENSSL_cleanse(a->seed, sizeof a->seed);
    OPENSSL_cleanse(&a->macs, sizeof a->macs);
    gw_crypto_free(a->cx);
    gw_free(a);
}

static int enqueue(struct gw_audit *a, const struct gw_db_stmt *stmts, int nstmts,
                   const struct gw_audit_rec *recs, int nrecs, gw_audit_done_cb cb, void *arg,
                   struct gw_audit_req **out, unsigned flags)
{
    bool keep = (flags & ENTRY_KEPT) != 0;
    struct gw_audit_req *r;
    int rc = 0;

    if (out)
        *out = NULL;
    if (!a || !cb || nstmts < 0 || nstmts > GW_AUDIT_STMTS_MAX || nrecs < 1 ||
        nrecs > GW_AUDIT_RECS_MAX || (nstmts > 0 && !stmts) || !recs)
        return GW_EINVAL;
    for (int i = 0; i < nrecs; i++)
        if (gw_audit_rec_check(&recs[i]) != 0)
            return GW_EINVAL;
    if ((a->down && !keep) || a->halted)
        return GW_EUNAVAIL; /* fail fast while the database is away, and once stopped */
    /* kept entries may fill half the queue, the rest is for the actions that wait; the writer's
     * own (gateway.start, audit.break) go first whatever waits */
    if ((flags & ENTRY_OWN) == 0 && a->nqueued >= (keep ? (a->queue_max + 1) / 2 : a->queue_max))
        return GW_EQUEUEFULL;
    r = gw_calloc(1, sizeof *r);
    if (!r)
        return GW_ENOMEM;
    r->a = a;
    r->cb = cb;
    r->arg = arg;
    r->keep = keep;
    for (int i = 0; i < nstmts && rc == 0; i++, r->nstmts++)
        rc = stmt_copy(&r->stmts[i], &stmts[i]);
    for (int i = 0; i < nrecs && rc == 0; i++, r->nrecs++)
        rc = rec_copy(&r->recs[i], &recs[i]);
    if (rc != 0) {
        if (r->nstmts && !r->stmts[r->nstmts - 1].block)
            r->nstmts--;
        req_free(r);
        return rc;
    }
    TAILQ_INSERT_TAIL(&a->queue, r, link);
    r->queued = true;
    a->nqueued++;
    if (out)
        *out = r;
    pump(a);
    return 0;
}

int gw_audit_write(struct gw_audit *a, const struct gw_db_stmt *stmts, int nstmts,
                   const struct gw_audit_rec *recs, int nrecs, gw_audit_done_cb cb, void *arg,
                   struct gw_audit_req **out)
{
    return enqueue(a, stmts, nstmts, recs, nrecs, cb, arg, out, 0);
}

int gw_audit_write_kept(struct gw_audit *a, const struct gw_db_stmt *stmts, int nstmts,
                        const struct gw_audit_rec *recs, int nrecs, gw_audit_done_cb cb, void *arg)
{
    return enqueue(a, stmts, nstmts, recs, nrecs, cb, arg, NULL, ENTRY_KEPT);
}

int gw_audit_write_in_doubt(struct gw_audit *a, const struct gw_audit_left *e, gw_audit_done_cb cb,
                            void *arg)
{
    struct gw_audit_req *r = NULL;
    int rc;

    if (!a || !e || !e->in_doubt || a->ev_retry != NULL ||
        (!TAILQ_EMPTY(&a->unsure) &&
         (a->unsure_seq != e->doubt_seq ||
          memcmp(a->unsure_hash, e->doubt_hash, sizeof a->unsure_hash) != 0)))
        return GW_EINVAL;
    rc = enqueue(a, e->stmts, e->nstmts, e->recs, e->nrecs, cb, arg, &r, ENTRY_KEPT | ENTRY_OWN);
    if (rc != 0)
        return rc;
    /* settled by the first recovery (settle), as an entry of this run's lost transaction is */
    TAILQ_REMOVE(&a->queue, r, link);
    r->queued = false;
    a->nqueued--;
    TAILQ_INSERT_TAIL(&a->unsure, r, link);
    a->unsure_seq = e->doubt_seq;
    memcpy(a->unsure_hash, e->doubt_hash, sizeof a->unsure_hash);
    return 0;
}

/* ---- drain (shutdown) ---- */

void gw_audit_halt(struct gw_audit *a)
{
    if (a == NULL)
        return;
    a->halted = true;
    if (a->setup != NULL) { /* reads and idempotent registrations: nothing of an entry's */
        gw_db_cancel(a->setup);
        a->setup = NULL;
    }
    /* the recovery's retry, the checkpoint's timer, the failed entries' callbacks (their callers
     * are stopped too) and the drain's deadline */
    if (a->ev_retry != NULL) {
        evtimer_del(a->ev_retry);
        evtimer_del(a->ev_ckpt);
        event_del(a->ev_fail);
        evtimer_del(a->ev_drain);
    }
}

static uint64_t left_of(const struct gw_audit *a)
{
    uint64_t n = a->nqueued;
    const struct gw_audit_req *r;

    TAILQ_FOREACH(r, &a->batch, link)
    n++;
    TAILQ_FOREACH(r, &a->failed, link)
    n++;
    TAILQ_FOREACH(r, &a->unsure, link)
    n++;
    return n;
}

static void drain_cb(evutil_socket_t fd, short what, void *arg)
{
    struct gw_audit *a = arg;
    gw_audit_drained_cb cb = a->drain_cb;

    (void)fd;
    (void)what;
    if (cb == NULL)
        return;
    a->drain_cb = NULL;
    cb(a->drain_arg, left_of(a));
}

/* A drain waiting, and nothing left to write: its callback, from the loop. */
static void drained(struct gw_audit *a)
{
    if (a->drain_cb != NULL && a->inflight == NULL && left_of(a) == 0)
        event_active(a->ev_drain, EV_TIMEOUT, 0);
}

void gw_audit_drain(struct gw_audit *a, uint32_t timeout_ms, gw_audit_drained_cb cb, void *arg)
{
    struct timeval tv = gw_clock_tv(timeout_ms);

    a->drain_cb = cb;
    a->drain_arg = arg;
    evtimer_add(a->ev_drain, &tv);
    a->ckpt_due = true; /* what was written last is covered by a checkpoint before the exit */
    pump(a);
    drained(a);
}

bool gw_audit_sent_in_doubt(const struct gw_audit *a, gw_audit_done_cb cb)
{
    const struct gw_audit_req *r;

    if (a == NULL)
        return false;
    if (a->inflight != NULL)
        TAILQ_FOREACH(r, &a->batch, link)
        {
            if (r->cb == cb)
                return true;
        }
    if (a->unsure_sent)
        TAILQ_FOREACH(r, &a->unsure, link)
        {
            if (r->cb == cb)
                return true;
        }
    return false;
}

static bool list_holds(const struct req_list *l, gw_audit_done_cb cb, const void *arg)
{
    const struct gw_audit_req *r;

    TAILQ_FOREACH(r, l, link)
    {
        if (!r->cancelled && r->keep && r->cb == cb && r->arg == arg)
            return true;
    }
    return false;
}

bool gw_audit_req_in_doubt(const struct gw_audit *a, const struct gw_audit_req *r, int64_t *seq,
                           uint8_t hash[GW_AUDIT_HASH_LEN])
{
    const struct gw_audit_req *b;

    if (a == NULL || r == NULL || a->inflight == NULL)
        return false;
    TAILQ_FOREACH(b, &a->batch, link)
    {
        if (b == r) {
            *seq = a->batch_seq;
            memcpy(hash, a->batch_hash, GW_AUDIT_HASH_LEN);
            return true;
        }
    }
    return false;
}

/* The lists gw_audit_leftover visits, with its conditions. */
bool gw_audit_holds(const struct gw_audit *a, gw_audit_done_cb cb, const void *arg)
{
    return a != NULL && (list_holds(&a->unsure, cb, arg) || list_holds(&a->batch, cb, arg) ||
                         list_holds(&a->queue, cb, arg));
}

/* Visits the kept entries of l (gw_audit_leftover), in doubt when doubt_seq is set. */
static int visit_left(const struct req_list *l, const int64_t *doubt_seq, const uint8_t *doubt_hash,
                      gw_audit_left_cb cb, void *arg)
{
    const struct gw_audit_req *r;
    struct gw_audit_left e;
    int rc;

    TAILQ_FOREACH(r, l, link)
    {
        if (r->cancelled || !r->keep)
            continue;
        memset(&e, 0, sizeof e);
        e.nstmts = r->nstmts;
        e.nrecs = r->nrecs;
        for (int i = 0; i < r->nstmts; i++)
            e.stmts[i] = r->stmts[i].st;
        for (int i = 0; i < r->nrecs; i++)
            e.recs[i] = rec_view(&r->recs[i]);
        if (doubt_seq != NULL) {
            e.in_doubt = true;
            e.doubt_seq = *doubt_seq;
            memcpy(e.doubt_hash, doubt_hash, sizeof e.doubt_hash);
        }
        if ((rc = cb(arg, &e)) != 0)
            return rc;
    }
    return 0;
}

int gw_audit_leftover(struct gw_audit *a, gw_audit_left_cb cb, void *arg)
{
    /* failing entries (a->failed) failed for good: not written again */
    int rc = visit_left(&a->unsure, &a->unsure_seq, a->unsure_hash, cb, arg);
    if (rc == 0)
        rc = visit_left(&a->batch, a->inflight != NULL ? &a->batch_seq : NULL, a->batch_hash, cb,
                        arg);
    if (rc == 0)
        rc = visit_left(&a->queue, NULL, NULL, cb, arg);
    return rc;
}

void gw_audit_cancel(struct gw_audit_req *r)
{
    struct gw_audit *a;
    if (!r)
        return;
    a = r->a;
    if (r->queued) { /* not sent: gone at once */
        TAILQ_REMOVE(&a->queue, r, link);
        a->nqueued--;
        req_free(r);
        return;
    }
    r->cancelled = true; /* sent (or failing): its callback is skipped */
}

void gw_audit_rebind(struct gw_audit_req *r, gw_audit_done_cb cb, void *arg)
{
    if (!r)
        return;
    r->cb = cb;
    r->arg = arg;
    r->keep = true; /* nobody waits for it now: an outage must not lose it */
    if (r->failing && !r->cancelled && r->a->failed_err == GW_EUNAVAIL) {
        /* its send found no connection and its failure waits to be told (fail_cb): it waits for
         * the database instead, as the kept entries of its batch do (the recovery that send
         * started sends it) */
        struct gw_audit *a = r->a;
        TAILQ_REMOVE(&a->failed, r, link);
        r->failing = false;
        a->st.failed--;
        TAILQ_INSERT_HEAD(&a->queue, r, link);
        r->queued = true;
        a->nqueued++;
    }
}

void gw_audit_stats(const struct gw_audit *a, struct gw_audit_stats *out)
{
    *out = a->st;
    out->head_seq = a->head_seq;
    out->queued = a->nqueued;
    out->queue_max = a->queue_max;
    out->ready = a->ready;
    out->down = a->down;
}

const char *gw_audit_chain(const struct gw_audit *a)
{
    return a->chain;
}

/* ---- recovery: register the chain and key, read the head ---- */

static void schedule_retry(struct gw_audit *a)
{
    struct timeval tv =
        gw_clock_tv(250); /* audited actions fail UNAVAILABLE meanwhile: keep it short */
    if (evtimer_add(a->ev_retry, &tv) != 0)
        GW_LOG(GW_LOG_ERROR, "audit", NULL, "chain %s: recovery timer not set", a->chain);
}

static void announce(struct gw_audit *a);
static void queue_break(struct gw_audit *a, const char *why);

/* Whether this writer's key signed a checkpoint over the head h (own: the rows of recover's
 * get_own): then the head is one it wrote (a drain ends with one). */
static bool head_signed(const struct gw_audit *a, const PGresult *own, const struct gw_audit_row *h)
{
    return gw_audit_head_signed(own, a->chain, h, a->pub, a->publen);
}

/* Why the head (row 0 of recover's get_head, its writer MAC in column GW_AUDIT_RECORD_NCOLS) is
 * not one this writer's keyring wrote, or NULL: its MAC must be HMAC(k, hash) under one of the
 * writer-MAC keys (sql/028_audit_writer_mac.sql). */
static const char *mac_fault(struct gw_audit *a, const PGresult *head, const struct gw_audit_row *h)
{
    uint8_t stored[GW_CRYPTO_MAC_LEN];

    if (PQnfields(head) <= GW_AUDIT_RECORD_NCOLS || PQgetisnull(head, 0, GW_AUDIT_RECORD_NCOLS))
        return "it carries no writer MAC";
    if (!gw_pq_hex(PQgetvalue(head, 0, GW_AUDIT_RECORD_NCOLS), stored, sizeof stored))
        return "its writer MAC is not 32 bytes";
    return gw_audit_mac_ok(a->cx, &a->macs, h->hash, GW_AUDIT_HASH_LEN, stored)
               ? NULL
               : "its writer MAC is not one this gateway's keyring makes";
}

/* Takes the stored head (head: recover's get_head; own: get_own) as the one to chain onto, or,
 * when it fails its check, its seq with 32 zero bytes in place of its hash: the next record
 * starts a new segment linked to nothing (docs/architecture.md, "The audit chain"). Returns why
 * it was refused, or NULL. */
static const char *take_head(struct gw_audit *a, const PGresult *head, const PGresult *own)
{
    struct gw_audit_row h = {0};
    const char *why;
    if (PQntuples(head) == 0) {
        a->head_seq = 0;
        memset(a->head_hash, 0, sizeof a->head_hash);
        return NULL;
    }
    why = gw_audit_head_fault(head, &h);
    if (why == NULL)
        why = mac_fault(a, head, &h);
    if (why && !head_signed(a, own, &h)) {
        a->head_seq = strtoll(PQgetvalue(head, 0, 1), NULL, 10);
        memset(a->head_hash, 0, sizeof a->head_hash); /* its time is not taken either */
        a->st.rejected++;
        GW_LOG(GW_LOG_ERROR, "audit", NULL,
               "chain %s: the head at seq %" PRId64 " fails its check (%s): not chained onto; "
               "a new segment starts at seq %" PRId64 " (audit.break, incident "
               "audit_head_rejected)",
               a->chain, a->head_seq, why, a->head_seq + 1);
        return why;
    }
    a->head_seq = h.link.seq;
    memcpy(a->head_hash, h.hash, GW_AUDIT_HASH_LEN);
    if (h.link.at_us > a->last_at)
        a->last_at = h.link.at_us;
    return NULL;
}

/* Whether a failed statement met a column, table or function the database lacks: its schema is
 * older than this build's (`waygatectl migrate` not run after an upgrade). */
static bool schema_behind(const struct gw_db_result *res)
{
    const char *st = res ? res->sqlstate : NULL;
    return st && (strcmp(st, "42703") == 0 || strcmp(st, "42P01") == 0 || strcmp(st, "42883") == 0);
}

/* Settles the kept entries of a transaction whose outcome was unknown, from the record it ended
 * with as stored now (last: recover's get_last): committed when that record is there with the
 * hash this writer gave it (moved to done), else queued again, first in line, to be chained anew.
 * This writer sends nothing between the loss and this read, and the read waits for the chain's
 * lock (CHAIN_LOCK_SQL), so that transaction has ended when it is read. */
static void settle(struct gw_audit *a, const PGresult *last, struct req_list *done)
{
    uint8_t stored[GW_AUDIT_HASH_LEN];
    struct gw_audit_req *r;

    if (TAILQ_EMPTY(&a->unsure))
        return;
    if (last != NULL && PQntuples(last) == 1 &&
        gw_pq_hex(PQgetvalue(last, 0, 0), stored, sizeof stored) &&
        memcmp(stored, a->unsure_hash, sizeof stored) == 0) {
        TAILQ_FOREACH(r, &a->unsure, link)
        a->st.written += (uint64_t)r->nrecs;
        TAILQ_CONCAT(done, &a->unsure, link);
        a->unsure_sent = false;
        a->fail_rounds = 0;
        return;
    }
    if (a->fail_rounds % 40 == 1) /* the first in a row, then 1 in 40 */
        GW_LOG(GW_LOG_WARN, "audit", NULL,
               "chain %s: the transaction ending at seq %" PRId64 " did not commit (%" PRIu32
               " in a row): its records of what already happened are sent again",
               a->chain, a->unsure_seq, a->fail_rounds);
    requeue(a, &a->unsure, false);
    a->unsure_sent = false;
}

static void setup_cb(void *arg, int err, const struct gw_db_result *res)
{
    struct gw_audit *a = arg;
    struct req_list done = TAILQ_HEAD_INITIALIZER(done);
    const PGresult *kind, *head, *ck;
    const char *why;

    a->setup = NULL;
    /* until a recovery succeeds nothing is written: audited actions fail at once meanwhile,
     * whatever kept it from succeeding (kept entries wait) */
    a->down = err != 0;
    if (err != 0) {
        bool say = a->setup_fails++ % 40 == 0; /* the first, then 1 in 40 */
        if (say && schema_behind(res))
            GW_LOG(GW_LOG_ERROR, "audit", NULL,
                   "chain %s: head not recovered: the database lacks a column, table or "
                   "function this build uses (SQLSTATE %s), so its schema is older than this "
                   "build: run `waygatectl migrate`; retrying; audited actions fail UNAVAILABLE "
                   "meanwhile",
                   a->chain, res->sqlstate);
        else if (say)
            GW_LOG(GW_LOG_WARN, "audit", NULL,
                   "chain %s: head not recovered (%s%s%s): retrying; audited actions fail "
                   "UNAVAILABLE meanwhile",
                   a->chain, gw_err_str(err), res && res->sqlstate ? ", SQLSTATE " : "",
                   res && res->sqlstate ? res->sqlstate : "");
        schedule_retry(a);
        return;
    }
    kind = res->results[1];
    head = res->results[5];
    ck = res->results[6];
    if (PQntuples(kind) != 1 || strcmp(PQgetvalue(kind, 0, 0), "gateway") != 0) {
        a->down = true;
        if (a->setup_fails++ % 40 == 0)
            GW_LOG(GW_LOG_ERROR, "audit", NULL,
                   "chain %s belongs to waygatectl, not to a gateway: set [audit] chain; audited "
                   "actions fail",
                   a->chain);
        schedule_retry(a);
        return;
    }
    why = take_head(a, head, res->results[7]);
    a->ckpt_seq = PQgetisnull(ck, 0, 0) ? 0 : strtoll(PQgetvalue(ck, 0, 0), NULL, 10);
    GW_LOG(GW_LOG_INFO, "audit", NULL, "chain %s: head at seq %" PRId64 ", key %.16s", a->chain,
           a->head_seq, a->key_id);
    settle(a, res->results[8], &done);
    announce(a); /* queued first, sent once ready */
    if (why)
        queue_break(a, why); /* before gateway.start: its record is the segment's first */
    a->ready = true;
    a->setup_fails = 0;
    arm_ckpt_timer(a);
    finish(&done, 0, NULL);
    pump(a);
    drained(a);
}

static void recover(struct gw_audit *a)
{
    static const char reg_chain[] = "INSERT INTO audit_chain (id, kind) VALUES ($1, 'gateway') "
                                    "ON CONFLICT (id) DO NOTHING";
    static const char get_kind[] = "SELECT kind FROM audit_chain WHERE id = $1";
    static const char reg_key[] = "INSERT INTO audit_key (key_id, public_key, algorithm) "
                                  "VALUES ($1, $2, $3) ON CONFLICT (key_id) DO NOTHING";
    /* the head and the record before it, whole: a head this writer did not sign is checked */
    static const char get_head[] = "SELECT " GW_AUDIT_RECORD_COLS ", encode(writer_mac, 'hex') "
                                   "FROM audit_record WHERE chain = $1 ORDER BY seq DESC LIMIT 2";
    /* this writer's checkpoint over the head, if any: a head it signed is one it wrote */
    static const char get_own[] =
        "SELECT seq, encode(head_hash, 'hex'), at_us, key_id, encode(signature, 'hex') FROM "
        "audit_checkpoint WHERE chain = $1 AND key_id = $2 AND seq = (SELECT max(seq) FROM "
        "audit_record WHERE chain = $1)";
    /* only a checkpoint over a stored record, its hash included: a planted row beyond the head
     * (seq 10^15) would otherwise stop this writer from ever signing again */
    static const char get_ckpt[] = "SELECT max(c.seq) FROM audit_checkpoint c JOIN audit_record r "
                                   "ON r.chain = c.chain AND r.seq = c.seq AND r.hash = "
                                   "c.head_hash WHERE c.chain = $1";
    /* the last record of a transaction whose outcome is unknown (seq 0: none; settle) */
    static const char get_last[] = "SELECT encode(hash, 'hex') FROM audit_record WHERE chain = $1 "
                                   "AND seq = $2";
    char useq[24];
    const char *cv[1] = {a->chain}, *ov[2] = {a->chain, a->key_id}, *uv[2] = {a->chain, useq};
    const char *kv[3] = {a->key_id, (const char *)a->pub, gw_sign_alg_name(a->key.alg)};
    const int kl[3] = {0, (int)a->publen, 0}, kf[3] = {0, 1, 0};
    /* a session that never ends (its commit waiting on a lock) fails the recovery, which says
     * so and is retried, instead of holding every audited action without a word */
    static const char lock_wait[] = "SELECT set_config('lock_timeout', '5s', true)";
    /* the chain's lock before anything of the chain is read: a transaction of this writer's
     * whose connection was lost may still be running, and has ended (committed or not) once the
     * lock is granted, so the head, the checkpoint and the settled record are read as it left
     * them (statement indexes: setup_cb) */
    struct gw_db_stmt st[9] = {
        {reg_chain, 1, cv, NULL, NULL, 0},
        {get_kind, 1, cv, NULL, NULL, 0},
        {reg_key, 3, kv, kl, kf, 0},
        {lock_wait, 0, NULL, NULL, NULL, 0},
        {CHAIN_LOCK_SQL, 1, cv, NULL, NULL, 0},
        {get_head, 1, cv, NULL, NULL, 0},
        {get_ckpt, 1, cv, NULL, NULL, 0},
        {get_own, 2, ov, NULL, NULL, 0},
        {get_last, 2, uv, NULL, NULL, 0},
    };
    int err;

    if (a->halted || a->setup || a->inflight)
        return;
    a->ready = false;
    snprintf(useq, sizeof useq, "%" PRId64, TAILQ_EMPTY(&a->unsure) ? (int64_t)0 : a->unsure_seq);
    err = gw_db_exec(a->db, st, 9, GW_DB_TXN | GW_DB_RESERVED, setup_cb, a, &a->setup);
    if (err != 0) {
        a->setup = NULL;
        if (!a->down) /* said once an outage (setup_cb says why a recovery that ran failed) */
            GW_LOG(GW_LOG_WARN, "audit", NULL,
                   "chain %s: head not recovered (its recovery not sent: %s); retrying; audited "
                   "actions fail UNAVAILABLE meanwhile, records of what was done wait",
                   a->chain, gw_err_str(err));
        a->down = true;
        schedule_retry(a);
    }
}

/* ---- chaining and sending ---- */

static void arm_ckpt_timer(struct gw_audit *a)
{
    if (a->head_seq > a->ckpt_seq && !evtimer_pending(a->ev_ckpt, NULL)) {
        struct timeval tv = gw_clock_tv(a->ckpt_ms);
        (void)evtimer_add(a->ev_ckpt, &tv);
    }
}

static void done_cb(void *arg, int err, const struct gw_db_result *res);

/* Chains the entry's records past (*seq, hash) and advances them. */
static int chain_entry(struct gw_audit *a, struct gw_audit_req *r, int64_t *seq, uint8_t *hash)
{
    for (int i = 0; i < r->nrecs; i++) {
        struct crec *c = &r->recs[i];
        struct gw_audit_rec v = rec_view(c);
        struct gw_audit_link l = {.chain = a->chain, .seq = *seq + 1};
        int64_t now = gw_clock_real_us();
        a->last_at = now > a->last_at ? now : a->last_at;
        l.at_us = a->last_at;
        memcpy(l.prev_hash, hash, GW_AUDIT_HASH_LEN);
        int rc = gw_audit_rec_hash(&v, &l, c->hash);
        if (rc == 0)
            rc = gw_audit_writer_mac(a->cx, a->macs.alg[0], a->macs.key[0], c->hash,
                                     GW_AUDIT_HASH_LEN, c->mac);
        if (rc != 0)
            return rc;
        c->seq = l.seq;
        c->at_us = l.at_us;
        memcpy(c->prev, hash, GW_AUDIT_HASH_LEN);
        memcpy(hash, c->hash, GW_AUDIT_HASH_LEN);
        *seq = l.seq;
        snprintf(c->seq_txt, sizeof c->seq_txt, "%" PRId64, c->seq);
        snprintf(c->at_txt, sizeof c->at_txt, "%" PRId64, c->at_us);
        if (c->count >= 0)
            snprintf(c->count_txt, sizeof c->count_txt, "%" PRId64, c->count);
    }
    return 0;
}

/* The record's INSERT parameters (pointers into c and a). */
static void rec_params(const struct gw_audit *a, const struct crec *c, const char *v[REC_PARAMS],
                       int len[REC_PARAMS], int fmt[REC_PARAMS])
{
    memset(len, 0, REC_PARAMS * sizeof *len);
    memset(fmt, 0, REC_PARAMS * sizeof *fmt);
    v[0] = a->chain;
    v[1] = c->seq_txt;
    v[2] = c->at_txt;
    for (int i = 0; i < 7; i++) /* actor .. object */
        v[3 + i] = c->s[i];
    v[10] = c->count >= 0 ? c->count_txt : NULL;
    v[11] = c->s[7];
    v[12] = c->s[8];
    v[13] = c->s[9];
    v[14] = c->outcome;
    v[15] = c->detail;
    v[16] = c->confidential ? "t" : "f";
    v[17] = (const char *)c->prev;
    v[18] = (const char *)c->hash;
    v[19] = (const char *)c->mac;
    len[17] = len[18] = GW_AUDIT_HASH_LEN;
    len[19] = GW_CRYPTO_MAC_LEN;
    fmt[17] = fmt[18] = fmt[19] = 1;
}

/* A request to the pool for the batch: every entry's statements then its records, and the
 * checkpoint last when one is due. Everything is copied by gw_db_exec. */
static int send_batch(struct gw_audit *a, const uint8_t *sig, size_t siglen, char *ck_seq,
                      char *ck_at)
{
    int n = 0, nrec = 0, err;
    struct gw_audit_req *r;

    TAILQ_FOREACH(r, &a->batch, link)
    {
        n += r->nstmts + r->nrecs;
        nrec += r->nrecs;
    }
    n += 1 + a->batch_ckpt; /* the chain's lock first */
    struct gw_db_stmt *st = gw_calloc((size_t)n, sizeof *st);
    /* the records' parameters, the checkpoint's six and the lock's one */
    const char **vals = gw_calloc((size_t)nrec * REC_PARAMS + 7, sizeof *vals);
    int *lens = gw_calloc((size_t)nrec * REC_PARAMS + 7, sizeof *lens);
    int *fmts = gw_calloc((size_t)nrec * REC_PARAMS + 7, sizeof *fmts);
    if (!st || !vals || !lens || !fmts) {
        err = GW_ENOMEM;
        goto out;
    }
    int k = 0, p = 0;
    vals[p] = a->chain;
    st[k++] = (struct gw_db_stmt){CHAIN_LOCK_SQL, 1, vals + p, lens + p, fmts + p, 0};
    p++;
    TAILQ_FOREACH(r, &a->batch, link)
    {
        r->first_stmt = k;
        for (int i = 0; i < r->nstmts; i++)
            st[k++] = r->stmts[i].st;
        for (int i = 0; i < r->nrecs; i++, p += REC_PARAMS) {
            rec_params(a, &r->recs[i], vals + p, lens + p, fmts + p);
            st[k++] = (struct gw_db_stmt){INSERT_SQL, REC_PARAMS, vals + p, lens + p, fmts + p, 0};
        }
    }
    if (a->batch_ckpt) {
        const char **cv = vals + p;
        int *cl = lens + p, *cf = fmts + p;
        cv[0] = a->chain;
        cv[1] = ck_seq;
        cv[2] = (const char *)a->batch_hash;
        cl[2] = GW_AUDIT_HASH_LEN;
        cf[2] = 1;
        cv[3] = ck_at;
        cv[4] = a->key_id;
        cv[5] = (const char *)sig;
        cl[5] = (int)siglen;
        cf[5] = 1;
        st[k++] = (struct gw_db_stmt){CHECKPOINT_SQL, 6, cv, cl, cf, 0};
    }
    a->batch_nstmts = k;
    /* the pool's reserve: a queue full of Submits must not fail the records of their refusals */
    err = gw_db_exec(a->db, st, k, GW_DB_TXN | GW_DB_RESERVED, done_cb, a, &a->inflight);
out:
    gw_free(st);
    gw_free(vals);
    gw_free(lens);
    gw_free(fmts);
    return err;
}

/* Puts the entries of l back at the head of the queue, in order; with kept_only, only the kept
 * ones (the others stay on l). Cancelled ones are freed. */
static void requeue(struct gw_audit *a, struct req_list *l, bool kept_only)
{
    struct gw_audit_req *r, *prev;
    for (r = TAILQ_LAST(l, req_list); r != NULL; r = prev) {
        prev = TAILQ_PREV(r, req_list, link);
        if (kept_only && !r->keep)
            continue;
        TAILQ_REMOVE(l, r, link);
        if (r->cancelled) {
            req_free(r);
            continue;
        }
        TAILQ_INSERT_HEAD(&a->queue, r, link);
        r->queued = true;
        a->nqueued++;
    }
}

/* Runs the callbacks of a finished list (entries already unlinked from the writer) and frees
 * them. A callback may queue, cancel (marks only: these are no longer queued) or do anything
 * but free the writer. */
static void finish(struct req_list *l, int err, const struct gw_db_result *res)
{
    struct gw_audit_req *r;
    while ((r = TAILQ_FIRST(l)) != NULL) {
        TAILQ_REMOVE(l, r, link);
        if (!r->cancelled) {
            struct gw_db_result sub = {0};
            int64_t seq = 0;
            if (res) {
                sub.nresults = r->nstmts;
                sub.results = res->results + r->first_stmt;
                sub.failed_stmt = res->failed_stmt < 0 ? -1 : res->failed_stmt - r->first_stmt;
                sub.sqlstate = res->sqlstate;
                sub.errmsg = res->errmsg;
            } else {
                sub.failed_stmt = -1;
            }
            sub.rolled_back_at = -1;
            if (err == 0)
                seq = r->recs[0].seq;
            r->cb(r->arg, err, seq, res ? &sub : NULL);
        }
        req_free(r);
    }
}

static void pump(struct gw_audit *a)
{
    struct gw_audit_req *r;
    int64_t seq;
    uint8_t hash[GW_AUDIT_HASH_LEN], sig[GW_SIGN_SIG_MAX];
    size_t siglen = 0;
    char ck_seq[24], ck_at[24];
    int n = 0, err;

    if (a->halted || !a->ready || a->inflight || a->setup)
        return;
    if (TAILQ_EMPTY(&a->queue) && !(a->ckpt_due && a->head_seq > a->ckpt_seq))
        return;
    seq = a->head_seq;
    memcpy(hash, a->head_hash, sizeof hash);
    while (n < GW_AUDIT_GROUP_MAX && (r = TAILQ_FIRST(&a->queue)) != NULL && !(r->alone && n > 0)) {
        TAILQ_REMOVE(&a->queue, r, link);
        r->queued = false;
        a->nqueued--;
        TAILQ_INSERT_TAIL(&a->batch, r, link);
        if (n++ == 0 && r->alone)
            break; /* in a transaction of its own */
    }
    TAILQ_FOREACH(r, &a->batch, link)
    {
        if (chain_entry(a, r, &seq, hash) != 0) {
            GW_LOG(GW_LOG_ERROR, "audit", NULL, "chain %s: hashing failed", a->chain);
            fail_batch_later(a, GW_EINTERNAL);
            return;
        }
    }
    a->batch_seq = seq;
    memcpy(a->batch_hash, hash, sizeof hash);
    a->batch_ckpt = seq > a->ckpt_seq && (a->ckpt_due || seq - a->ckpt_seq >= (int64_t)a->every);
    if (a->batch_ckpt) {
        uint8_t msg[256];
        size_t len = 0;
        int64_t at = a->last_at > gw_clock_real_us() ? a->last_at : gw_clock_real_us();
        snprintf(ck_seq, sizeof ck_seq, "%" PRId64, seq);
        snprintf(ck_at, sizeof ck_at, "%" PRId64, at);
        if (gw_audit_checkpoint_msg(a->chain, seq, hash, at, msg, sizeof msg, &len) != 0 ||
            gw_sign(&a->key, msg, len, sig, &siglen) != 0) {
            GW_LOG(GW_LOG_ERROR, "audit", NULL, "chain %s: checkpoint not signed", a->chain);
            a->batch_ckpt = false;
        }
    }
    err = send_batch(a, sig, siglen, ck_seq, ck_at);
    if (err != 0) {
        a->inflight = NULL;
        if (err == GW_EUNAVAIL) {
            /* no connection to send it on: kept entries wait for the database, the others
             * fail, and the recovery runs until a connection answers */
            requeue(a, &a->batch, true);
            recover(a);
        }
        if (!TAILQ_EMPTY(&a->batch))
            fail_batch_later(a, err);
    }
}

/* Which batch entry owns transaction statement i (NULL: the checkpoint). */
static struct gw_audit_req *owner_of(struct gw_audit *a, int i)
{
    struct gw_audit_req *r;
    TAILQ_FOREACH(r, &a->batch, link)
    {
        if (i >= r->first_stmt && i < r->first_stmt + r->nstmts + r->nrecs)
            return r;
    }
    return NULL;
}

/* A transaction that failed for a passing reason (err GW_EUNAVAIL: its connection was lost, or
 * a statement met a full disk or too little memory) or at its checkpoint. Ordinary entries fail;
 * kept ones go again: at once when nothing committed (a statement's error rolled it back), else
 * once the recovery has read whether it committed (settle). A kept entry whose own statement
 * failed goes by itself from then on, after what waits, so that it cannot fail the others again;
 * when it has failed by itself BLAME_MAX times, each right after a transaction that committed
 * (the database writes the others), it fails. The recovery waits 250 ms, 500 ms, 1 s, then 2 s
 * after each failed transaction in a row, so that a failure that repeats (a full disk) is not
 * sent again as fast as it fails. */
static void failed_txn(struct gw_audit *a, int err, const struct gw_db_result *res)
{
    struct req_list done = TAILQ_HEAD_INITIALIZER(done);
    struct gw_audit_req *r, *next, *blame = NULL;
    bool rolled_back = err == GW_EUNAVAIL && res != NULL && res->rolled_back_at >= 0;
    uint32_t ms;
    uint64_t n = 0;

    if (rolled_back && (blame = owner_of(a, res->rolled_back_at)) != NULL && blame->keep) {
        TAILQ_REMOVE(&a->batch, blame, link);
        if (blame->cancelled) {
            req_free(blame);
        } else if (blame->alone && a->fail_rounds == 0 && ++blame->blamed >= BLAME_MAX) {
            GW_LOG(GW_LOG_ERROR, "audit", NULL,
                   "chain %s: a record of %s is dropped: its own statement failed (SQLSTATE %s) "
                   "%u times by itself while the others were written",
                   a->chain, blame->recs[0].s[5], res->sqlstate ? res->sqlstate : "?",
                   blame->blamed);
            a->st.failed++;
            TAILQ_INSERT_TAIL(&done, blame, link);
        } else {
            blame->alone = true;
            TAILQ_INSERT_TAIL(&a->queue, blame, link);
            blame->queued = true;
            a->nqueued++;
        }
        requeue(a, &a->batch, false); /* not theirs, and nothing committed */
    } else if (rolled_back || err != GW_EUNAVAIL) {
        requeue(a, &a->batch, true); /* nothing committed */
    } else {
        for (r = TAILQ_FIRST(&a->batch); r != NULL; r = next) {
            next = TAILQ_NEXT(r, link);
            if (!r->keep)
                continue;
            TAILQ_REMOVE(&a->batch, r, link);
            TAILQ_INSERT_TAIL(&a->unsure, r, link);
            a->unsure_seq = a->batch_seq;
            memcpy(a->unsure_hash, a->batch_hash, sizeof a->unsure_hash);
            a->unsure_sent = true;
        }
    }
    TAILQ_FOREACH(r, &a->batch, link)
    n++;
    a->st.failed += n;
    TAILQ_CONCAT(&done, &a->batch, link);
    ms = 250u << (a->fail_rounds < 3 ? a->fail_rounds : 3);
    a->fail_rounds++;
    a->ready = false; /* nothing is chained before the head is read again */
    struct timeval tv = gw_clock_tv(ms);
    if (evtimer_add(a->ev_retry, &tv) != 0)
        recover(a);
    finish(&done, err == GW_EINTERNAL ? GW_EINTERNAL : GW_EUNAVAIL, res);
}

/* A spool's entry that failed on its mark (audit_spool.h): written by an earlier replay, not a
 * failure (an alert on failed entries would fire for a spool replayed again). */
static bool met_mark(const struct gw_audit_req *r, const struct gw_db_result *res)
{
    return r->keep && r->nstmts > 0 && res->failed_stmt == r->first_stmt && res->sqlstate &&
           strcmp(res->sqlstate, "23505") == 0 &&
           strcmp(r->stmts[0].st.sql, GW_AUDIT_SPOOL_MARK_SQL) == 0;
}

static void done_cb(void *arg, int err, const struct gw_db_result *res)
{
    struct gw_audit *a = arg;
    struct req_list done = TAILQ_HEAD_INITIALIZER(done);
    struct gw_audit_req *bad;

    a->inflight = NULL;
    if (a->halted)
        return; /* its entries stay in doubt as the leftover said, freed by gw_audit_free */
    if (err == 0) {
        int64_t recs = a->batch_seq - a->head_seq;
        a->fail_rounds = 0;
        a->head_seq = a->batch_seq;
        memcpy(a->head_hash, a->batch_hash, sizeof a->head_hash);
        if (a->batch_ckpt) {
            const PGresult *ck = res != NULL && res->nresults == a->batch_nstmts
                                     ? res->results[a->batch_nstmts - 1]
                                     : NULL;
            a->ckpt_seq = a->batch_seq;
            a->ckpt_due = false;
            evtimer_del(a->ev_ckpt);
            if (ck != NULL && PQntuples(ck) == 0) {
                /* the head is not signed: the next record's own transaction carries its
                 * checkpoint, which no row can be planted ahead of (sql/034), instead of one
                 * every_n records or ckpt_ms later */
                a->ckpt_due = true;
                a->st.planted++;
                GW_LOG(GW_LOG_ERROR, "audit", NULL,
                       "chain %s: a checkpoint at seq %" PRId64 " was there before this "
                       "writer signed it (planted by someone who may insert into "
                       "audit_checkpoint?): not replaced; the next record carries a checkpoint; "
                       "waygatectl audit verify judges it",
                       a->chain, a->batch_seq);
            } else {
                a->st.checkpoints++;
            }
        }
        a->st.written += (uint64_t)recs;
        a->st.transactions++;
        arm_ckpt_timer(a);
        TAILQ_CONCAT(&done, &a->batch, link);
        finish(&done, 0, res);
    } else if (err == GW_EINTERNAL && res && res->failed_stmt >= 0 &&
               (bad = owner_of(a, res->failed_stmt)) != NULL &&
               !(res->failed_stmt >= bad->first_stmt + bad->nstmts && res->sqlstate &&
                 strcmp(res->sqlstate, "23505") == 0)) {
        /* One entry's statement (or its record's insert) failed: it fails alone, the others
         * committed nothing and go again. */
        TAILQ_REMOVE(&a->batch, bad, link);
        TAILQ_INSERT_TAIL(&done, bad, link);
        requeue(a, &a->batch, false);
        if (met_mark(bad, res))
            a->st.written_before++;
        else
            a->st.failed++;
        finish(&done, GW_EINTERNAL, res);
    } else if (err == GW_EINTERNAL && res && res->sqlstate && strcmp(res->sqlstate, "23505") == 0) {
        /* A record's (chain, seq) exists: another writer shares this chain id, or the head is
         * stale. Nothing committed: read the head again and chain everything anew. */
        GW_LOG(GW_LOG_WARN, "audit", NULL,
               "chain %s: sequence taken by another writer (two gateways with one [audit] "
               "chain?): head read again",
               a->chain);
        requeue(a, &a->batch, false);
        recover(a);
        return;
    } else {
        failed_txn(a, err, res);
        return;
    }
    pump(a);
    drained(a);
}

/* gateway.start: the first record of each process life on the chain. */
static void announced_cb(void *arg, int err, int64_t seq, const struct gw_db_result *res)
{
    struct gw_audit *a = arg;
    (void)res;
    if (err == 0)
        GW_LOG(GW_LOG_INFO, "audit", NULL, "chain %s: gateway.start at seq %" PRId64, a->chain,
               seq);
    else
        a->announced = false; /* written at the next recovery */
}

/* audit.break: the first record of a new segment, after a head that failed its check. */
static void break_cb(void *arg, int err, int64_t seq, const struct gw_db_result *res)
{
    struct gw_audit *a = arg;
    (void)res;
    a->break_req = NULL; /* failed: the next recovery finds the head again and says so again */
    if (err == 0)
        GW_LOG(GW_LOG_INFO, "audit", NULL, "chain %s: audit.break at seq %" PRId64, a->chain, seq);
}

/* Queues, first in line, the record that names the refused head (action audit.break, object its
 * seq, detail why) with a critical incident in the same transaction, and has a checkpoint signed
 * in that transaction: a restart then finds a head this writer signed, not one to refuse again.
 * One still waiting names a head read before (its transaction met yet another planted row): it is
 * replaced, so that the record names the head it follows. */
static void queue_break(struct gw_audit *a, const char *why)
{
    static const char incident_sql[] = "INSERT INTO incident (severity, kind, principal, detail) "
                                       "VALUES ('critical', 'audit_head_rejected', 'waygated', $1)";
    char object[48], detail[256];
    struct gw_audit_rec r;
    struct gw_audit_req *q = NULL;
    if (a->break_req) { /* never in flight here: recover() waits for the transaction */
        gw_audit_cancel(a->break_req);
        a->break_req = NULL;
    }
    gw_audit_break_rec(a->chain, a->head_seq, why, "waygated", object, detail, &r);
    const char *v[1] = {detail};
    struct gw_db_stmt st = {incident_sql, 1, v, NULL, NULL, 0};
    if (enqueue(a, &st, 1, &r, 1, break_cb, a, &q, ENTRY_OWN) != 0) {
        GW_LOG(GW_LOG_ERROR, "audit", NULL, "chain %s: audit.break not queued", a->chain);
        return;
    }
    a->break_req = q;
    a->ckpt_due = true;
    if (q && q->queued && TAILQ_FIRST(&a->queue) != q) {
        TAILQ_REMOVE(&a->queue, q, link);
        TAILQ_INSERT_HEAD(&a->queue, q, link);
    }
}

static void announce(struct gw_audit *a)
{
    struct gw_audit_rec r = {.actor = "waygated",
                             .action = "gateway.start",
                             .outcome = "ok",
                             .count = -1,
                             .detail = "audit chain head recovered"};
    struct gw_audit_req *q = NULL;
    if (a->announced)
        return;
    a->announced = true;
    /* kept: one whose commit's answer is lost is settled, not written twice */
    if (enqueue(a, NULL, 0, &r, 1, announced_cb, a, &q, ENTRY_OWN | ENTRY_KEPT) != 0) {
        a->announced = false;
    } else if (q && q->queued && TAILQ_FIRST(&a->queue) != q) { /* first in line */
        TAILQ_REMOVE(&a->queue, q, link);
        TAILQ_INSERT_HEAD(&a->queue, q, link);
    }
}
