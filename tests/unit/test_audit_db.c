/* test_audit_db.c: the audit chain writer (store/audit.c) against a throwaway PostgreSQL with the
 * real migrations. What is checked is what `audit verify` would check, recomputed here from the
 * stored rows with the canonical encoding: sequence numbers without gaps from 1, each record's
 * prev_hash the hash of the one before, each hash the SHA-256 of its encoding, and checkpoints
 * whose signatures verify (Ed25519, and SM2 under the sm suite). Plus: an action and its record
 * commit together; a failing entry of a group fails alone and leaves no gap; the head survives a
 * restart of the writer and of the database; two writers configured with one chain id never fork
 * it. */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>

#include <event2/event.h>
#include <libpq-fe.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "audit.h"
#include "audit_rec.h"
#include "audit_spool.h"
#include "config.h"
#include "db.h"
#include "log.h"
#include "migrate.h"
#include "pg_harness.h"
#include "pq_msg.h"

static struct pgh pg;
static bool pg_ok;
static struct event_base *base;
static struct event *tick;
static struct gw_config cfg;
static struct gw_db *db;
static PGconn *check;
static const uint8_t seed[GW_SIGN_SEED_LEN] = {7, 7, 7, 7, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};

static bool db_is_ready(void *arg)
{
    return gw_db_ready(arg);
}

static bool db_is_down(void *arg)
{
    return !gw_db_ready(arg);
}

static bool run_until(bool (*pred)(void *), void *arg, long ms)
{
    return pgh_loop_until(base, pred, arg, ms);
}

static long scalar(const char *sql)
{
    PGresult *r = PQexec(check, sql);
    long v;
    assert_true(PQresultStatus(r) == PGRES_TUPLES_OK);
    v = PQgetisnull(r, 0, 0) ? -1 : strtol(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    return v;
}

static void exec_ok(const char *sql)
{
    PGresult *r = PQexec(check, sql);
    assert_true(PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK);
    PQclear(r);
}

static const char *opt(PGresult *r, int i, int c)
{
    return PQgetisnull(r, i, c) ? NULL : PQgetvalue(r, i, c);
}

/* Verifies chain as `audit verify` would; returns the number of records, or fails the test. */
static long verify_chain(const char *chain)
{
    const char *p[1] = {chain};
    PGresult *r = PQexecParams(
        check,
        "SELECT seq, at_us, actor, role, peer, cert, branch, action, object, count, purpose, "
        "legal_basis, approval, outcome, detail, confidential::int, encode(prev_hash, 'hex'), "
        "encode(hash, 'hex') FROM audit_record WHERE chain = $1 ORDER BY seq",
        1, NULL, p, NULL, NULL, 0);
    uint8_t prev[GW_AUDIT_HASH_LEN] = {0}, h[GW_AUDIT_HASH_LEN];
    char hex[2 * GW_AUDIT_HASH_LEN + 1];
    long n;

    assert_true(PQresultStatus(r) == PGRES_TUPLES_OK);
    n = PQntuples(r);
    for (int i = 0; i < n; i++) {
        struct gw_audit_rec rec = {
            .actor = opt(r, i, 2),
            .role = opt(r, i, 3),
            .peer = opt(r, i, 4),
            .cert = opt(r, i, 5),
            .branch = opt(r, i, 6),
            .action = opt(r, i, 7),
            .object = opt(r, i, 8),
            .count = PQgetisnull(r, i, 9) ? -1 : strtoll(PQgetvalue(r, i, 9), NULL, 10),
            .purpose = opt(r, i, 10),
            .legal_basis = opt(r, i, 11),
            .approval = opt(r, i, 12),
            .outcome = opt(r, i, 13),
            .detail = opt(r, i, 14),
            .confidential = PQgetvalue(r, i, 15)[0] == '1',
        };
        struct gw_audit_link l = {.chain = chain,
                                  .seq = strtoll(PQgetvalue(r, i, 0), NULL, 10),
                                  .at_us = strtoll(PQgetvalue(r, i, 1), NULL, 10)};
        assert_int_equal(l.seq, i + 1); /* no gap, no duplicate */
        for (int k = 0; k < GW_AUDIT_HASH_LEN; k++)
            snprintf(hex + 2 * k, 3, "%02x", prev[k]);
        assert_string_equal(PQgetvalue(r, i, 16), hex); /* linked to the one before */
        memcpy(l.prev_hash, prev, sizeof prev);
        assert_int_equal(gw_audit_rec_hash(&rec, &l, h), 0);
        for (int k = 0; k < GW_AUDIT_HASH_LEN; k++)
            snprintf(hex + 2 * k, 3, "%02x", h[k]);
        assert_string_equal(PQgetvalue(r, i, 17), hex); /* its hash is its content's */
        memcpy(prev, h, sizeof prev);
    }
    PQclear(r);
    return n;
}

/* Every checkpoint of chain: its head is the record's hash, its signature verifies. Returns the
 * number of checkpoints. */
static long verify_checkpoints(const char *chain)
{
    const char *p[1] = {chain};
    PGresult *r = PQexecParams(
        check,
        "SELECT c.seq, c.at_us, c.head_hash = r.hash, k.public_key, c.signature, c.head_hash "
        "FROM audit_checkpoint c JOIN audit_record r ON r.chain = c.chain AND r.seq = c.seq "
        "JOIN audit_key k ON k.key_id = c.key_id WHERE c.chain = $1 ORDER BY c.seq",
        1, NULL, p, NULL, NULL, 1);
    long n;
    assert_true(PQresultStatus(r) == PGRES_TUPLES_OK);
    n = PQntuples(r);
    for (int i = 0; i < n; i++) {
        uint8_t msg[256];
        size_t len;
        int64_t seq = 0, at = 0;
        for (int k = 0; k < 8; k++) {
            seq = seq << 8 | (uint8_t)PQgetvalue(r, i, 0)[k];
            at = at << 8 | (uint8_t)PQgetvalue(r, i, 1)[k];
        }
        assert_int_equal((uint8_t)PQgetvalue(r, i, 2)[0], 1); /* head_hash = record hash */
        assert_int_equal(gw_audit_checkpoint_msg(chain, seq, (const uint8_t *)PQgetvalue(r, i, 5),
                                                 at, msg, sizeof msg, &len),
                         0);
        assert_int_equal(
            gw_sign_verify((const uint8_t *)PQgetvalue(r, i, 3), (size_t)PQgetlength(r, i, 3), msg,
                           len, (const uint8_t *)PQgetvalue(r, i, 4), (size_t)PQgetlength(r, i, 4)),
            0);
        /* and a changed head does not */
        msg[len - 30] ^= 1;
        assert_int_equal(
            gw_sign_verify((const uint8_t *)PQgetvalue(r, i, 3), (size_t)PQgetlength(r, i, 3), msg,
                           len, (const uint8_t *)PQgetvalue(r, i, 4), (size_t)PQgetlength(r, i, 4)),
            GW_EDATALOSS);
    }
    PQclear(r);
    return n;
}

struct outcome {
    bool done;
    int err;
    int64_t seq;
    int failed_stmt;
    char value[32];
};

static void done_cb(void *arg, int err, int64_t seq, const struct gw_db_result *res)
{
    struct outcome *o = arg;
    o->done = true;
    o->err = err;
    o->seq = seq;
    o->failed_stmt = res ? res->failed_stmt : -2;
    if (err == 0 && res && res->nresults > 0 && PQntuples(res->results[0]) > 0)
        snprintf(o->value, sizeof o->value, "%s", PQgetvalue(res->results[0], 0, 0));
}

static bool all_done(void *arg)
{
    struct outcome *o = arg;
    for (; o->err != 12345; o++)
        if (!o->done)
            return false;
    return true;
}

static bool ready(void *arg)
{
    struct gw_audit_stats st;
    gw_audit_stats(arg, &st);
    return st.ready && st.queued == 0 && st.written >= 1; /* gateway.start committed */
}

/* The test writers' configuration: chain, checkpoints after 1000 records or 60 s, the test's
 * Ed25519 seed, queue_max (0: the default). */
static struct gw_audit_config config_of(const char *chain, uint32_t queue_max)
{
    return (struct gw_audit_config){.chain = chain,
                                    .checkpoint_every = 1000,
                                    .checkpoint_ms = 60000,
                                    .alg = GW_SIGN_ED25519,
                                    .seed = seed,
                                    .queue_max = queue_max};
}

/* A writer whose key is alg with seed key_seed (NULL: the test's seed), given other as the
 * keyring's other suite's audit key (NULL: none). */
static struct gw_audit *writer_other(const char *chain, uint32_t every, uint32_t ms,
                                     enum gw_sign_alg alg, const uint8_t *key_seed,
                                     const struct gw_sign_key *other)
{
    struct gw_audit_config ac = {.chain = chain,
                                 .checkpoint_every = every,
                                 .checkpoint_ms = ms,
                                 .alg = alg,
                                 .seed = key_seed ? key_seed : seed,
                                 .other_alg = other ? other->alg : GW_SIGN_ED25519,
                                 .other_seed = other ? other->seed : NULL};
    struct gw_audit *a = NULL;
    assert_int_equal(gw_audit_new(db, &ac, &a), 0);
    assert_int_equal(gw_audit_start(a), 0);
    assert_true(run_until(ready, a, 10000));
    return a;
}

static struct gw_audit *writer_alg(const char *chain, uint32_t every, uint32_t ms,
                                   enum gw_sign_alg alg)
{
    return writer_other(chain, every, ms, alg, NULL, NULL);
}

static struct gw_audit *writer(const char *chain, uint32_t every, uint32_t ms)
{
    return writer_alg(chain, every, ms, GW_SIGN_ED25519);
}

/* Writes n records r through a, one at a time, each committed. */
static void write_records(struct gw_audit *a, const struct gw_audit_rec *r, int n)
{
    struct outcome o[2] = {{0}, {.err = 12345}};

    for (int i = 0; i < n; i++) {
        o[0] = (struct outcome){0};
        assert_int_equal(gw_audit_write(a, NULL, 0, r, 1, done_cb, &o[0], NULL), 0);
        assert_true(run_until(all_done, o, 10000));
        assert_int_equal(o[0].err, 0);
    }
}

static struct gw_audit_rec rec(const char *action, const char *object)
{
    return (struct gw_audit_rec){.actor = "clerk_a",
                                 .role = "branch_clerk",
                                 .peer = "127.0.0.1:4000",
                                 .cert = "branch_a",
                                 .branch = "a",
                                 .action = action,
                                 .object = object,
                                 .count = -1,
                                 .purpose = "customer called",
                                 .outcome = "ok"};
}

/* Actions with statements and records in one transaction; records chained from the start
 * record; the entry gets its statements' results. */
static void test_chain_written(void **state)
{
    struct gw_audit *a;
    struct outcome o[4] = {{0}, {0}, {0}, {.err = 12345}};
    struct gw_db_stmt st = {"SELECT 6 * 7", 0, NULL, NULL, NULL, 0};
    struct gw_audit_rec r1 = rec("reveal", "rec-1:recipient.phone");
    struct gw_audit_rec r2[2] = {rec("bulk.approve", "req-1"), rec("incident", "scraping")};

    (void)state;
    if (!pg_ok)
        skip();
    a = writer("t-chain", 1000, 60000);
    r2[1].confidential = true;
    r2[1].count = 0;
    assert_int_equal(gw_audit_write(a, &st, 1, &r1, 1, done_cb, &o[0], NULL), 0);
    assert_int_equal(gw_audit_write(a, NULL, 0, r2, 2, done_cb, &o[1], NULL), 0);
    assert_int_equal(gw_audit_write(a, &st, 1, &r1, 1, done_cb, &o[2], NULL), 0);
    assert_false(o[0].done); /* never from inside the call */
    assert_true(run_until(all_done, o, 10000));
    assert_int_equal(o[0].err, 0);
    assert_string_equal(o[0].value, "42");
    assert_int_equal(o[0].seq, 2); /* seq 1 is gateway.start */
    assert_int_equal(o[1].seq, 3);
    assert_int_equal(o[2].seq, 5);
    assert_int_equal(verify_chain("t-chain"), 5);
    assert_int_equal(scalar("SELECT count(*) FROM audit_record WHERE chain = 't-chain' AND "
                            "action = 'gateway.start' AND seq = 1"),
                     1);
    assert_int_equal(scalar("SELECT count(*) FROM audit_record WHERE chain = 't-chain' AND "
                            "confidential AND count = 0"),
                     1);
    /* a record breaking the vocabulary is refused before anything is queued */
    struct gw_audit_rec bad = rec("Reveal!", NULL);
    assert_int_equal(gw_audit_write(a, NULL, 0, &bad, 1, done_cb, &o[0], NULL), GW_EINVAL);
    bad = rec("reveal", NULL);
    bad.actor = NULL;
    assert_int_equal(gw_audit_write(a, NULL, 0, &bad, 1, done_cb, &o[0], NULL), GW_EINVAL);
    gw_audit_free(a);
}

/* [audit] queue_max bounds the entries waiting (the one in flight aside): past it a write is
 * refused GW_EQUEUEFULL before anything is queued, and taken again once the queue moved on. */
static void test_queue_bound(void **state)
{
    struct gw_audit_config ac = config_of("t-bound", 2);
    struct outcome o[4] = {{0}, {0}, {0}, {.err = 12345}}, more[2] = {{0}, {.err = 12345}};
    struct gw_audit_rec r = rec("account.disable", "x");
    struct gw_audit_stats st;
    struct gw_audit *a = NULL;

    (void)state;
    if (!pg_ok)
        skip();
    assert_int_equal(gw_audit_new(db, &ac, &a), 0);
    assert_int_equal(gw_audit_start(a), 0);
    assert_true(run_until(ready, a, 10000));
    gw_audit_stats(a, &st);
    assert_int_equal(st.queue_max, 2);
    for (int i = 0; i < 3; i++) /* the first goes in flight at once, two wait */
        assert_int_equal(gw_audit_write(a, NULL, 0, &r, 1, done_cb, &o[i], NULL), 0);
    gw_audit_stats(a, &st);
    assert_int_equal(st.queued, 2);
    assert_int_equal(gw_audit_write(a, NULL, 0, &r, 1, done_cb, &more[0], NULL), GW_EQUEUEFULL);
    assert_true(run_until(all_done, o, 10000));
    for (int i = 0; i < 3; i++)
        assert_int_equal(o[i].err, 0);
    assert_false(more[0].done); /* refused: its callback never runs */
    assert_int_equal(gw_audit_write(a, NULL, 0, &r, 1, done_cb, &more[0], NULL), 0);
    assert_true(run_until(all_done, more, 10000));
    assert_int_equal(verify_chain("t-bound"), 5); /* gateway.start and the four taken */
    gw_audit_free(a);
    /* unset: the default bound */
    ac.queue_max = 0;
    ac.chain = "t-bound-default";
    assert_int_equal(gw_audit_new(db, &ac, &a), 0);
    gw_audit_stats(a, &st);
    assert_int_equal(st.queue_max, GW_AUDIT_QUEUE_MAX);
    gw_audit_free(a);
}

/* Three entries in one group, the middle one's statement fails: it fails alone (with its own
 * statement index), the others commit, and the chain has no gap and no record of the failure. */
static void test_failing_entry_fails_alone(void **state)
{
    struct gw_audit *a;
    struct outcome o[4] = {{0}, {0}, {0}, {.err = 12345}};
    struct gw_db_stmt ok = {"SELECT 1", 0, NULL, NULL, NULL, 0};
    struct gw_db_stmt bad[2] = {{"SELECT 1", 0, NULL, NULL, NULL, 0},
                                {"SELECT 1 / 0", 0, NULL, NULL, NULL, 0}};
    struct gw_audit_rec r = rec("bulk.request", "x");
    struct gw_audit_rec rb = rec("bulk.request", "never");

    (void)state;
    if (!pg_ok)
        skip();
    a = writer("t-fail", 1000, 60000);
    assert_int_equal(gw_audit_write(a, &ok, 1, &r, 1, done_cb, &o[0], NULL), 0);
    /* the first is in flight: the next two wait and go out together */
    assert_int_equal(gw_audit_write(a, bad, 2, &rb, 1, done_cb, &o[1], NULL), 0);
    assert_int_equal(gw_audit_write(a, &ok, 1, &r, 1, done_cb, &o[2], NULL), 0);
    assert_true(run_until(all_done, o, 10000));
    assert_int_equal(o[0].err, 0);
    assert_int_equal(o[1].err, GW_EINTERNAL);
    assert_int_equal(o[1].failed_stmt, 1);
    assert_int_equal(o[2].err, 0);
    assert_int_equal(verify_chain("t-fail"), 3);
    assert_int_equal(scalar("SELECT count(*) FROM audit_record WHERE object = 'never'"), 0);
    gw_audit_free(a);
}

/* A new writer on the chain continues it; so does the old one after the database restarts, and
 * while it is down an action fails instead of waiting. */
static void test_head_recovered(void **state)
{
    struct gw_audit *a;
    struct outcome o[2] = {{0}, {.err = 12345}};
    struct gw_audit_rec r = rec("login.ok", NULL);
    int err;

    (void)state;
    if (!pg_ok)
        skip();
    a = writer("t-head", 1000, 60000);
    gw_audit_free(a);
    a = writer("t-head", 1000, 60000); /* its own gateway.start, chained to the first */
    assert_int_equal(verify_chain("t-head"), 2);

    assert_int_equal(pgh_stop(&pg), 0);
    assert_true(run_until(db_is_down, db, 20000));
    err = gw_audit_write(a, NULL, 0, &r, 1, done_cb, &o[0], NULL);
    if (err == 0) {
        assert_true(run_until(all_done, o, 20000));
        assert_int_equal(o[0].err, GW_EUNAVAIL);
    } else {
        assert_int_equal(err, GW_EUNAVAIL);
    }
    assert_int_equal(pgh_start(&pg), 0);
    PQreset(check);
    assert_true(run_until(db_is_ready, db, 20000));
    /* recovered: writes again, continuing the chain */
    o[0] = (struct outcome){0};
    for (int tries = 0; tries < 200; tries++) {
        o[0] = (struct outcome){0};
        err = gw_audit_write(a, NULL, 0, &r, 1, done_cb, &o[0], NULL);
        if (err == 0) {
            assert_true(run_until(all_done, o, 20000));
            if (o[0].err == 0)
                break;
        }
        struct timeval tv = {0, 50000};
        event_base_loopexit(base, &tv);
        event_base_dispatch(base);
    }
    assert_int_equal(o[0].err, 0);
    long n = verify_chain("t-head");
    assert_true(n >= 3);
    assert_int_equal(scalar("SELECT count(*) FROM audit_record WHERE chain = 't-head' AND "
                            "action = 'login.ok'"),
                     1);
    gw_audit_free(a);
}

/* Checkpoints every 2 records, signed over the head; and by the timer when records stay
 * uncovered. */
static void test_checkpoints(void **state)
{
    struct gw_audit *a;
    struct gw_audit_rec r = rec("search.phone", "bidx");

    (void)state;
    if (!pg_ok)
        skip();
    a = writer("t-ckpt", 2, 60000);
    write_records(a, &r, 3);
    assert_int_equal(verify_chain("t-ckpt"), 4);
    assert_int_equal(verify_checkpoints("t-ckpt"), 2);
    assert_int_equal(scalar("SELECT max(seq) FROM audit_checkpoint WHERE chain = 't-ckpt'"), 4);
    gw_audit_free(a);

    a = writer("t-timer", 1000, 20); /* gateway.start, then covered within 20 ms */
    long want = 1;
    for (int tries = 0; tries < 400 && scalar("SELECT count(*) FROM audit_checkpoint WHERE "
                                              "chain = 't-timer'") < want;
         tries++) {
        struct timeval tv = {0, 20000};
        event_base_loopexit(base, &tv);
        event_base_dispatch(base);
    }
    assert_int_equal(verify_checkpoints("t-timer"), 1);
    assert_int_equal(scalar("SELECT max(seq) FROM audit_checkpoint WHERE chain = 't-timer'"), 1);
    gw_audit_free(a);
}

/* A checkpoint row planted far beyond the head (seq 10^15, a junk signature: anyone who may insert
 * into audit_checkpoint) does not count as this writer's last checkpoint: it goes on signing
 * every 2 records. Only a checkpoint over a stored record with its hash is taken at start. */
static void test_planted_checkpoint_ignored(void **state)
{
    struct gw_audit *a;
    struct gw_audit_rec r = rec("search.phone", "bidx");

    (void)state;
    if (!pg_ok)
        skip();
    a = writer("t-plant", 1000, 60000); /* registers the chain and its key; gateway.start */
    gw_audit_free(a);
    exec_ok("INSERT INTO audit_checkpoint (chain, seq, head_hash, at_us, key_id, signature) "
            "SELECT 't-plant', 1000000000000000, decode(repeat('00', 32), 'hex'), 0, key_id, "
            "decode(repeat('11', 64), 'hex') FROM audit_key LIMIT 1");
    a = writer("t-plant", 2, 60000); /* its gateway.start is seq 2: a checkpoint is due */
    write_records(a, &r, 2);
    assert_int_equal(verify_chain("t-plant"), 4);
    assert_int_equal(verify_checkpoints("t-plant"),
                     2); /* at 2 and 4; the planted one is no one's */
    assert_int_equal(scalar("SELECT max(c.seq) FROM audit_checkpoint c JOIN audit_record r "
                            "USING (chain, seq) WHERE c.chain = 't-plant'"),
                     4);
    gw_audit_free(a);
}

/* A checkpoint row planted at the very seq this writer signs next (a junk hash and signature; as
 * the owner: sql/034 refuses the login roles a checkpoint over no stored record) is not retried
 * without end (a duplicate key used to read the head again and send the same checkpoint at
 * once, forever): the records commit and the planted row stays for `audit verify` to judge. The
 * head it did not sign is covered at once by the next record's checkpoint, in that record's
 * transaction (red before: the planted row counted as this writer's, and the next checkpoint came
 * `every` records later, leaving the head unsigned meanwhile), then every 2 records as usual. */
static void test_planted_checkpoint_at_the_next_seq(void **state)
{
    struct gw_audit *a;
    struct gw_audit_stats st;
    struct gw_audit_rec r = rec("search.phone", "bidx");

    (void)state;
    if (!pg_ok)
        skip();
    a = writer("t-plant2", 2, 60000); /* gateway.start: seq 1, no checkpoint yet */
    exec_ok("INSERT INTO audit_checkpoint (chain, seq, head_hash, at_us, key_id, signature) "
            "SELECT 't-plant2', 2, decode(repeat('00', 32), 'hex'), 0, key_id, "
            "decode(repeat('11', 64), 'hex') FROM audit_key LIMIT 1");
    write_records(a, &r, 1); /* seq 2: its checkpoint meets the planted row */
    gw_audit_stats(a, &st);
    assert_int_equal(st.planted, 1);
    assert_int_equal(st.checkpoints, 0);
    write_records(a, &r, 1); /* seq 3: its checkpoint with it, though 2 records are not due */
    gw_audit_stats(a, &st);
    assert_int_equal(st.checkpoints, 1);
    assert_int_equal(scalar("SELECT max(c.seq) FROM audit_checkpoint c JOIN audit_record r "
                            "USING (chain, seq) WHERE c.chain = 't-plant2' AND c.head_hash = "
                            "r.hash"),
                     3);
    write_records(a, &r, 2); /* seq 4, 5: the next at 5; the planted one at 2 is no one's */
    assert_int_equal(verify_chain("t-plant2"), 5);
    gw_audit_stats(a, &st);
    assert_int_equal(st.checkpoints, 2);
    assert_int_equal(scalar("SELECT count(*) FROM audit_checkpoint c JOIN audit_record r "
                            "USING (chain, seq) WHERE c.chain = 't-plant2' AND c.head_hash = "
                            "r.hash"),
                     2);
    gw_audit_free(a);
}

/* Under the sm suite the checkpoints are SM2 (issue 11): the key stored is the 65-byte point with
 * algorithm 'sm2', the signatures DER, and they verify; the chain itself is unchanged. */
static void test_sm2_checkpoints(void **state)
{
    struct gw_audit *a;
    struct gw_audit_rec r = rec("search.phone", "bidx");

    (void)state;
    if (!pg_ok)
        skip();
    a = writer_alg("t-sm2", 2, 60000, GW_SIGN_SM2);
    write_records(a, &r, 3);
    assert_int_equal(verify_chain("t-sm2"), 4);
    assert_int_equal(verify_checkpoints("t-sm2"), 2);
    assert_int_equal(scalar("SELECT count(*) FROM audit_checkpoint c JOIN audit_key k USING "
                            "(key_id) WHERE c.chain = 't-sm2' AND k.algorithm = 'sm2' AND "
                            "octet_length(k.public_key) = 65 AND get_byte(c.signature, 0) = 48"),
                     2);
    gw_audit_free(a);
}

/* Two writers given one chain id (a configuration mistake): their records interleave, but every
 * sequence number is taken once and the chain verifies: the loser of a race reads the head
 * again instead of forking the chain. */
static void test_shared_chain_never_forks(void **state)
{
    struct gw_audit *a, *b;
    struct outcome o[21];
    struct gw_audit_rec r = rec("reveal", "shared");

    (void)state;
    if (!pg_ok)
        skip();
    a = writer("t-shared", 1000, 60000);
    b = writer("t-shared", 1000, 60000);
    memset(o, 0, sizeof o);
    o[20].err = 12345;
    for (int i = 0; i < 20; i++)
        assert_int_equal(gw_audit_write(i % 2 ? a : b, NULL, 0, &r, 1, done_cb, &o[i], NULL), 0);
    assert_true(run_until(all_done, o, 20000));
    for (int i = 0; i < 20; i++)
        assert_int_equal(o[i].err, 0);
    assert_int_equal(verify_chain("t-shared"), 22);
    gw_audit_free(a);
    gw_audit_free(b);
}

/* A cancelled entry that had not been sent is never written and its callback never runs. */
static void test_cancel(void **state)
{
    struct gw_audit *a;
    struct outcome o[3] = {{0}, {0}, {.err = 12345}};
    struct gw_audit_req *q = NULL;
    struct gw_audit_rec r = rec("reveal", "kept"), rc = rec("reveal", "cancelled");

    (void)state;
    if (!pg_ok)
        skip();
    a = writer("t-cancel", 1000, 60000);
    assert_int_equal(gw_audit_write(a, NULL, 0, &r, 1, done_cb, &o[0], NULL), 0);
    assert_int_equal(gw_audit_write(a, NULL, 0, &rc, 1, done_cb, &o[1], &q), 0);
    gw_audit_cancel(q);
    o[1].done = true;
    assert_true(run_until(all_done, o, 10000));
    assert_int_equal(o[0].err, 0);
    assert_true(run_until(ready, a, 10000));
    assert_int_equal(scalar("SELECT count(*) FROM audit_record WHERE object = 'cancelled'"), 0);
    assert_int_equal(verify_chain("t-cancel"), 2);
    gw_audit_free(a);
}

/* A rebound entry (its caller gone, the record still due: api_report.c) is written, still
 * queued or not: its new callback runs, the old one never does. */
static void test_rebind(void **state)
{
    struct gw_audit *a;
    struct outcome o[3] = {{0}, {0}, {.err = 12345}}, old = {0};
    struct gw_audit_req *q = NULL;
    struct gw_audit_rec r = rec("reveal", "first"), rb = rec("report.generate", "rebound");

    (void)state;
    if (!pg_ok)
        skip();
    a = writer("t-rebind", 1000, 60000);
    assert_int_equal(gw_audit_write(a, NULL, 0, &r, 1, done_cb, &o[0], NULL), 0);
    assert_int_equal(gw_audit_write(a, NULL, 0, &rb, 1, done_cb, &old, &q), 0);
    gw_audit_rebind(q, done_cb, &o[1]);
    assert_true(run_until(all_done, o, 10000));
    assert_int_equal(o[0].err, 0);
    assert_int_equal(o[1].err, 0);
    assert_false(old.done);
    assert_int_equal(scalar("SELECT count(*) FROM audit_record WHERE chain = 't-rebind' AND "
                            "object = 'rebound'"),
                     1);
    assert_int_equal(verify_chain("t-rebind"), 3);
    gw_audit_free(a);
}

/* Nobody may change or remove a record, not even the owner: the trigger refuses it. */
static void test_append_only(void **state)
{
    PGresult *r;
    (void)state;
    if (!pg_ok)
        skip();
    assert_true(scalar("SELECT count(*) FROM audit_record") > 0);
    r = PQexec(check, "UPDATE audit_record SET actor = 'someone else'");
    assert_true(PQresultStatus(r) == PGRES_FATAL_ERROR);
    assert_non_null(strstr(PQresultErrorMessage(r), "append-only"));
    PQclear(r);
    r = PQexec(check, "DELETE FROM audit_record");
    assert_true(PQresultStatus(r) == PGRES_FATAL_ERROR);
    PQclear(r);
    r = PQexec(check, "TRUNCATE audit_record CASCADE");
    assert_true(PQresultStatus(r) == PGRES_FATAL_ERROR);
    PQclear(r);
    r = PQexec(check, "DELETE FROM audit_checkpoint");
    assert_true(PQresultStatus(r) == PGRES_FATAL_ERROR);
    PQclear(r);
    exec_ok("SELECT 1");
}

static int group_setup(void **state)
{
    struct timeval tv = {0, 10000};

    (void)state;
    base = event_base_new();
    tick = event_new(base, -1, EV_PERSIST, pgh_on_tick, NULL);
    event_add(tick, &tv);
    gw_log_level = GW_LOG_OFF;
    if (!pgh_available())
        return 0;
    if (pgh_init_migrated(&pg, "test_audit_db", &check, &pg_ok) != 0)
        return -1;
    pgh_db_config(&pg, &cfg, 200);
    db = gw_db_new(base, &cfg);
    if (db == NULL || gw_db_start(db) != 0)
        return -1;
    if (!run_until(db_is_ready, db, 10000))
        return -1;
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    if (check != NULL)
        PQfinish(check);
    if (pg_ok)
        pgh_destroy(&pg);
    gw_db_free(db);
    event_free(tick);
    event_base_free(base);
    return 0;
}

static void hex_of(const uint8_t *p, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++)
        snprintf(out + 2 * i, 3, "%02x", p[i]);
}

/* The writer MAC a writer with audit key seed key_seed puts beside hash, computed here from its
 * definition (sql/028_audit_writer_mac.sql) with OpenSSL alone: HMAC(k, hash),
 * k = HMAC(key_seed, "waygate-audit-writer-v1"), md SHA-256 for an Ed25519 (aes) key and SM3
 * for an SM2 (sm) one. */
static void expected_mac_of(const EVP_MD *md, const uint8_t key_seed[GW_SIGN_SEED_LEN],
                            const uint8_t hash[GW_AUDIT_HASH_LEN], uint8_t mac[32])
{
    static const char label[] = "waygate-audit-writer-v1";
    uint8_t k[32];
    unsigned int n = 0;
    assert_non_null(md);
    assert_non_null(
        HMAC(md, key_seed, GW_SIGN_SEED_LEN, (const uint8_t *)label, sizeof label - 1, k, &n));
    assert_non_null(HMAC(md, k, sizeof k, hash, GW_AUDIT_HASH_LEN, mac, &n));
}

/* The writer MAC of the test's own (Ed25519) writer. */
static void expected_mac(const uint8_t hash[GW_AUDIT_HASH_LEN], uint8_t mac[32])
{
    expected_mac_of(EVP_sha256(), seed, hash, mac);
}

/* Whether the stored writer MAC of chain's record seq is HMAC over its hash as expected_mac_of
 * computes it. */
static bool stored_mac_is(const char *chain, int seq, const EVP_MD *md,
                          const uint8_t key_seed[GW_SIGN_SEED_LEN])
{
    char q[200], hex[65];
    uint8_t h[GW_AUDIT_HASH_LEN], mac[32];
    bool same;
    snprintf(q, sizeof q,
             "SELECT encode(hash, 'hex'), encode(writer_mac, 'hex') FROM audit_record WHERE chain "
             "= '%s' AND seq = %d",
             chain, seq);
    PGresult *res = PQexec(check, q);
    assert_int_equal(PQntuples(res), 1);
    assert_true(gw_pq_hex(PQgetvalue(res, 0, 0), h, sizeof h));
    expected_mac_of(md, key_seed, h, mac);
    hex_of(mac, sizeof mac, hex);
    same = strcmp(PQgetvalue(res, 0, 1), hex) == 0;
    PQclear(res);
    return same;
}

enum plant_mac { MAC_NONE, MAC_JUNK, MAC_RIGHT };

/* Plants what whoever holds the gateway's database role could: at the chain's next seq a record
 * whose hash is its content's, linked to nothing (prev_hash 32 zero bytes: a segment start) or,
 * with linked, properly (prev_hash the head's hash), with no writer MAC, a junk one, or the right
 * one (expected_mac: what only the keyring can make). *l and h: its link and hash. */
static void plant_record(const char *chain, bool linked, enum plant_mac how,
                         struct gw_audit_link *l, uint8_t h[GW_AUDIT_HASH_LEN])
{
    char seqtxt[24], attxt[24], hh[65], ph[65], mh[65];
    uint8_t mac[32];
    struct gw_audit_rec r = rec("reveal", "planted");
    const char *pv[1] = {chain};
    PGresult *res = PQexecParams(check,
                                 "SELECT seq, at_us, encode(hash, 'hex') FROM audit_record WHERE "
                                 "chain = $1 ORDER BY seq DESC LIMIT 1",
                                 1, NULL, pv, NULL, NULL, 0);
    assert_int_equal(PQntuples(res), 1);
    *l = (struct gw_audit_link){.chain = chain,
                                .seq = strtoll(PQgetvalue(res, 0, 0), NULL, 10) + 1,
                                .at_us = strtoll(PQgetvalue(res, 0, 1), NULL, 10) + 1};
    if (linked) /* else 32 zero bytes */
        assert_true(gw_pq_hex(PQgetvalue(res, 0, 2), l->prev_hash, GW_AUDIT_HASH_LEN));
    PQclear(res);
    hex_of(l->prev_hash, GW_AUDIT_HASH_LEN, ph);
    assert_int_equal(gw_audit_rec_hash(&r, l, h), 0);
    if (how == MAC_RIGHT)
        expected_mac(h, mac);
    else
        memset(mac, 0x5a, sizeof mac);
    hex_of(h, GW_AUDIT_HASH_LEN, hh);
    hex_of(mac, sizeof mac, mh);
    snprintf(seqtxt, sizeof seqtxt, "%lld", (long long)l->seq);
    snprintf(attxt, sizeof attxt, "%lld", (long long)l->at_us);
    const char *v[15] = {chain,     seqtxt,    attxt,    r.actor,  r.role,
                         r.peer,    r.cert,    r.branch, r.action, r.object,
                         r.purpose, r.outcome, ph,       hh,       how == MAC_NONE ? NULL : mh};
    res = PQexecParams(
        check,
        "INSERT INTO audit_record (chain, seq, at_us, actor, role, peer, cert, branch, action, "
        "object, purpose, outcome, confidential, prev_hash, hash, writer_mac) VALUES ($1, $2, $3, "
        "$4, $5, $6, $7, $8, $9, $10, $11, $12, false, decode($13, 'hex'), decode($14, 'hex'), "
        "decode($15, 'hex'))",
        15, NULL, v, NULL, NULL, 0);
    assert_int_equal(PQresultStatus(res), PGRES_COMMAND_OK);
    PQclear(res);
}

/* A segment start planted at the chain's next seq (plant_record, no writer MAC), with a
 * checkpoint over it signed by key (NULL: none). */
static void plant_segment_start(const char *chain, const struct gw_sign_key *key)
{
    char seqtxt[24], attxt[24], hh[65], sh[2 * GW_SIGN_SIG_MAX + 1], id[65];
    uint8_t h[GW_AUDIT_HASH_LEN], msg[256], sig[GW_SIGN_SIG_MAX], pub[GW_SIGN_PUB_MAX];
    size_t len = 0, siglen = 0, publen = 0;
    struct gw_audit_link l;
    PGresult *res;

    plant_record(chain, false, MAC_NONE, &l, h);
    if (!key)
        return;
    snprintf(seqtxt, sizeof seqtxt, "%lld", (long long)l.seq);
    snprintf(attxt, sizeof attxt, "%lld", (long long)l.at_us);
    assert_int_equal(gw_audit_checkpoint_msg(chain, l.seq, h, l.at_us, msg, sizeof msg, &len), 0);
    assert_int_equal(gw_sign(key, msg, len, sig, &siglen), 0);
    assert_int_equal(gw_sign_public(key, pub, &publen), 0);
    assert_int_equal(gw_audit_key_id(pub, publen, id), 0);
    hex_of(sig, siglen, sh);
    hex_of(pub, publen, hh); /* reused: the public key, 32 bytes */
    const char *kv[2] = {id, hh};
    res = PQexecParams(check,
                       "INSERT INTO audit_key (key_id, public_key, algorithm) VALUES ($1, "
                       "decode($2, 'hex'), 'ed25519') ON CONFLICT DO NOTHING",
                       2, NULL, kv, NULL, NULL, 0);
    assert_int_equal(PQresultStatus(res), PGRES_COMMAND_OK);
    PQclear(res);
    hex_of(h, sizeof h, hh);
    const char *cv[6] = {chain, seqtxt, hh, attxt, id, sh};
    res = PQexecParams(check,
                       "INSERT INTO audit_checkpoint (chain, seq, head_hash, at_us, key_id, "
                       "signature) VALUES ($1, $2, decode($3, 'hex'), $4, $5, decode($6, 'hex'))",
                       6, NULL, cv, NULL, NULL, 0);
    assert_int_equal(PQresultStatus(res), PGRES_COMMAND_OK);
    PQclear(res);
}

/* A head the writer did not write is checked before it is chained onto: one linked to nothing
 * is not (the link would vouch for it). The record after it, audit.break, starts a new segment
 * linked to nothing (32 zero bytes), with a critical incident and a checkpoint over the new
 * segment in the same transaction; gateway.start follows it. */
static void test_forged_head_starts_a_new_segment(void **state)
{
    struct gw_audit *a;
    struct gw_audit_stats st;

    (void)state;
    if (!pg_ok)
        skip();
    a = writer("t-forge", 1000, 60000); /* gateway.start: seq 1 */
    gw_audit_free(a);
    plant_segment_start("t-forge", NULL); /* seq 2 */
    a = writer("t-forge", 1000, 60000);
    gw_audit_stats(a, &st);
    assert_int_equal(st.rejected, 1);
    assert_int_equal(scalar("SELECT count(*) FROM audit_record WHERE chain = 't-forge' AND seq = "
                            "3 AND action = 'audit.break' AND object = 'seq 2' AND prev_hash = "
                            "decode(repeat('00', 32), 'hex')"),
                     1);
    assert_int_equal(scalar("SELECT count(*) FROM audit_record r WHERE chain = 't-forge' AND seq "
                            "= 4 AND action = 'gateway.start' AND prev_hash = (SELECT hash FROM "
                            "audit_record WHERE chain = 't-forge' AND seq = 3)"),
                     1);
    assert_int_equal(scalar("SELECT count(*) FROM audit_checkpoint c JOIN audit_record r USING "
                            "(chain, seq) WHERE chain = 't-forge' AND seq = 4 AND c.head_hash = "
                            "r.hash"),
                     1);
    assert_int_equal(scalar("SELECT count(*) FROM incident WHERE kind = 'audit_head_rejected' AND "
                            "severity = 'critical' AND detail = 'chain t-forge: seq 2: its "
                            "prev_hash is not the hash of the record before it; not chained "
                            "onto: a new segment starts at seq 3, linked to nothing'"),
                     1);
    gw_audit_free(a);
}

/* A head that this writer's own key signed a checkpoint over is taken as it is, even a segment
 * start linked to nothing (an audit.break committed without a record after it); one signed by
 * another key (the gateway's role may register keys) is checked, and refused. */
static void test_head_signed_by_the_writer_is_taken(void **state)
{
    static const uint8_t other_seed[GW_SIGN_SEED_LEN] = {9, 9, 9};
    struct gw_sign_key own = {GW_SIGN_ED25519, seed}, other = {GW_SIGN_ED25519, other_seed};
    struct gw_audit *a;
    struct gw_audit_stats st;

    (void)state;
    if (!pg_ok)
        skip();
    a = writer("t-own", 1000, 60000);
    gw_audit_free(a);
    plant_segment_start("t-own", &own); /* seq 2, signed by the writer's key */
    a = writer("t-own", 1000, 60000);
    gw_audit_stats(a, &st);
    assert_int_equal(st.rejected, 0);
    assert_int_equal(scalar("SELECT count(*) FROM audit_record WHERE chain = 't-own' AND seq = 3 "
                            "AND action = 'gateway.start' AND prev_hash = (SELECT hash FROM "
                            "audit_record WHERE chain = 't-own' AND seq = 2)"),
                     1);
    gw_audit_free(a);
    plant_segment_start("t-own", &other); /* seq 4, signed by another key */
    a = writer("t-own", 1000, 60000);
    gw_audit_stats(a, &st);
    assert_int_equal(st.rejected, 1);
    assert_int_equal(scalar("SELECT count(*) FROM audit_record WHERE chain = 't-own' AND seq = 5 "
                            "AND action = 'audit.break'"),
                     1);
    gw_audit_free(a);
}

/* The head's check is not one link deep: a record that links properly at the chain's next seq
 * (what whoever holds the gateway's role can append) is the writer's own only with the writer MAC
 * its keyring makes. Without one, or with another, it is not chained onto (audit.break, a
 * critical incident naming why); with the right one it is. And the writer's own records carry
 * exactly that MAC. */
static void plant_linked(const char *chain, enum plant_mac how)
{
    struct gw_audit_link l;
    uint8_t h[GW_AUDIT_HASH_LEN];
    plant_record(chain, true, how, &l, h);
}

static void test_linked_head_needs_the_writer_mac(void **state)
{
    struct gw_audit *a;
    struct gw_audit_stats st;

    (void)state;
    if (!pg_ok)
        skip();
    a = writer("t-mac", 1000, 60000); /* gateway.start: seq 1, no checkpoint */
    gw_audit_free(a);
    assert_true(stored_mac_is("t-mac", 1, EVP_sha256(), seed));

    plant_linked("t-mac", MAC_NONE); /* seq 2 */
    a = writer("t-mac", 1000, 60000);
    gw_audit_stats(a, &st);
    assert_int_equal(st.rejected, 1);
    assert_int_equal(scalar("SELECT count(*) FROM audit_record WHERE chain = 't-mac' AND seq = 3 "
                            "AND action = 'audit.break' AND object = 'seq 2' AND prev_hash = "
                            "decode(repeat('00', 32), 'hex')"),
                     1);
    assert_int_equal(scalar("SELECT count(*) FROM incident WHERE kind = 'audit_head_rejected' AND "
                            "severity = 'critical' AND detail = 'chain t-mac: seq 2: it carries "
                            "no writer MAC; not chained onto: a new segment starts at seq 3, "
                            "linked to nothing'"),
                     1);
    gw_audit_free(a); /* seq 4: gateway.start */

    plant_linked("t-mac", MAC_JUNK); /* seq 5 */
    a = writer("t-mac", 1000, 60000);
    gw_audit_stats(a, &st);
    assert_int_equal(st.rejected, 1);
    assert_int_equal(
        scalar("SELECT count(*) FROM incident WHERE kind = 'audit_head_rejected' AND "
               "detail = 'chain t-mac: seq 5: its writer MAC is not one this "
               "gateway''s keyring makes; not chained onto: a new segment starts at seq "
               "6, linked to nothing'"),
        1);
    gw_audit_free(a); /* seq 7: gateway.start */

    plant_linked("t-mac", MAC_RIGHT); /* seq 8: as the keyring would have made it */
    a = writer("t-mac", 1000, 60000);
    gw_audit_stats(a, &st);
    assert_int_equal(st.rejected, 0);
    assert_int_equal(scalar("SELECT count(*) FROM audit_record WHERE chain = 't-mac' AND seq = 9 "
                            "AND action = 'gateway.start' AND prev_hash = (SELECT hash FROM "
                            "audit_record WHERE chain = 't-mac' AND seq = 8)"),
                     1);
    assert_int_equal(scalar("SELECT count(*) FROM audit_record WHERE chain = 't-mac' AND "
                            "writer_mac IS NULL"),
                     1); /* the planted seq 2 only */
    gw_audit_free(a);
}

/* During a suite migration the keyring holds both suites' audit keys: a head whose writer MAC is
 * under the other suite's key (written before the switch, not signed) is the writer's own when
 * that key is given, and not when another key is given as the other suite's or none is. A writer
 * restarted on its own unsigned head takes it under either suite (HMAC-SM3 under sm, as computed
 * from its definition). */
static void test_head_of_the_other_suite_is_taken_with_its_key(void **state)
{
    static const uint8_t sm_seed[GW_SIGN_SEED_LEN] = {3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5,
                                                      8, 9, 7, 9, 3, 2, 3, 8, 4, 6};
    static const uint8_t wrong_seed[GW_SIGN_SEED_LEN] = {2, 7, 1, 8, 2, 8};
    struct gw_sign_key aes = {GW_SIGN_ED25519, seed}; /* the keyring's aes audit key */
    struct gw_sign_key wrong = {GW_SIGN_ED25519, wrong_seed};
    struct gw_audit *a;
    struct gw_audit_stats st;

    (void)state;
    if (!pg_ok)
        skip();
    a = writer("t-suite", 1000, 60000); /* Ed25519, HMAC-SHA256 writer MAC, unsigned */
    gw_audit_free(a);
    a = writer_other("t-suite", 1000, 60000, GW_SIGN_SM2, sm_seed, &aes);
    gw_audit_stats(a, &st);
    assert_int_equal(st.rejected, 0);
    gw_audit_free(a);
    assert_int_equal(scalar("SELECT count(*) FROM audit_record WHERE chain = 't-suite' AND seq = "
                            "2 AND action = 'gateway.start' AND prev_hash = (SELECT hash FROM "
                            "audit_record WHERE chain = 't-suite' AND seq = 1)"),
                     1);
    assert_true(stored_mac_is("t-suite", 2, EVP_sm3(), sm_seed));
    a = writer_other("t-suite", 1000, 60000, GW_SIGN_SM2, sm_seed, NULL); /* its own head */
    gw_audit_stats(a, &st);
    assert_int_equal(st.rejected, 0);
    gw_audit_free(a);
    a = writer("t-suite", 1000, 60000); /* the head is the SM2 writer's: no key for it */
    gw_audit_stats(a, &st);
    assert_int_equal(st.rejected, 1);
    assert_int_equal(scalar("SELECT count(*) FROM audit_record WHERE chain = 't-suite' AND seq = "
                            "4 AND action = 'audit.break' AND prev_hash = decode(repeat('00', "
                            "32), 'hex')"),
                     1);
    gw_audit_free(a);

    a = writer("t-suite2", 1000, 60000);
    gw_audit_free(a);
    a = writer_other("t-suite2", 1000, 60000, GW_SIGN_SM2, sm_seed, &wrong);
    gw_audit_stats(a, &st);
    assert_int_equal(st.rejected, 1);
    gw_audit_free(a);
}

static bool file_says(void *arg)
{
    static const char want[] = "its schema is older than this build: run `waygatectl migrate`";
    char buf[8192];
    FILE *f = fopen(arg, "r");
    size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
    if (f)
        fclose(f);
    buf[n] = '\0';
    return strstr(buf, want) != NULL;
}

/* A database not migrated to this build's schema (here: the writer_mac column of sql/028 gone)
 * is named as such, with what to run, instead of an SQLSTATE alone; audited actions wait
 * (UNAVAILABLE) and the writer recovers once the schema is there. */
static void test_schema_behind_is_named(void **state)
{
    char path[] = "/tmp/wg-audit-log-XXXXXX";
    int fd = mkstemp(path), saved = dup(STDERR_FILENO);
    struct gw_audit_config ac = config_of("t-schema", 0);
    struct gw_audit *a = NULL;
    struct gw_audit_stats st;

    (void)state;
    if (!pg_ok)
        skip();
    assert_true(fd >= 0 && saved >= 0);
    close(fd);
    assert_int_equal(gw_log_open(path), 0);
    gw_log_level = GW_LOG_WARN; /* the suite runs with the log off */
    exec_ok("ALTER TABLE audit_record RENAME COLUMN writer_mac TO writer_mac_later");
    assert_int_equal(gw_audit_new(db, &ac, &a), 0);
    assert_int_equal(gw_audit_start(a), 0);
    bool named = run_until(file_says, path, 10000);
    gw_audit_stats(a, &st);
    exec_ok("ALTER TABLE audit_record RENAME COLUMN writer_mac_later TO writer_mac");
    gw_log_level = GW_LOG_OFF;
    assert_true(dup2(saved, STDERR_FILENO) >= 0);
    close(saved);
    unlink(path);
    assert_true(named);
    assert_false(st.ready);
    assert_true(run_until(ready, a, 10000)); /* the next recovery finds the column */
    gw_audit_free(a);
}

/* A record of what already happened (gw_audit_write_kept) waits out an outage: queued while the
 * pool has no connection to send it on, written once the database is back, exactly once. An
 * ordinary entry fails UNAVAILABLE meanwhile, as before. */
static void test_kept_waits_out_an_outage(void **state)
{
    struct gw_audit *a;
    struct outcome o[3] = {{0}, {0}, {.err = 12345}}, plain[2] = {{0}, {.err = 12345}};
    struct gw_audit_rec k = rec("bulk.run", "run-kept-1"), r = rec("login.ok", NULL);
    int err;

    (void)state;
    if (!pg_ok)
        skip();
    a = writer("t-kept", 1000, 60000);
    assert_int_equal(pgh_stop(&pg), 0);
    assert_true(run_until(db_is_down, db, 20000));
    k.outcome = "stopped";
    /* the writer has not met the outage yet: the send finds no connection */
    assert_int_equal(gw_audit_write_kept(a, NULL, 0, &k, 1, done_cb, &o[0]), 0);
    err = gw_audit_write(a, NULL, 0, &r, 1, done_cb, &plain[0], NULL);
    if (err == 0) {
        assert_true(run_until(all_done, plain, 20000));
        assert_int_equal(plain[0].err, GW_EUNAVAIL);
    } else {
        assert_int_equal(err, GW_EUNAVAIL);
    }
    /* and while the writer knows the database is away */
    assert_int_equal(gw_audit_write_kept(a, NULL, 0, &k, 1, done_cb, &o[1]), 0);
    assert_false(o[0].done || o[1].done);
    assert_int_equal(pgh_start(&pg), 0);
    PQreset(check);
    assert_true(run_until(all_done, o, 20000));
    assert_int_equal(o[0].err, 0);
    assert_int_equal(o[1].err, 0);
    assert_true(o[0].seq > 1 && o[1].seq > o[0].seq); /* in the order queued */
    assert_int_equal(scalar("SELECT count(*) FROM audit_record WHERE chain = 't-kept' AND "
                            "object = 'run-kept-1' AND outcome = 'stopped'"),
                     2);
    assert_int_equal(verify_chain("t-kept"), scalar("SELECT max(seq) FROM audit_record WHERE "
                                                    "chain = 't-kept'"));
    gw_audit_free(a);
}

/* How many backends other than check's meet where (SQL over pg_stat_activity). */
static long others(const char *where)
{
    char sql[320];
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND %s", where);
    return scalar(sql);
}

static bool one_backend_waits(void *arg)
{
    char where[96];
    snprintf(where, sizeof where, "wait_event = '%s'", (const char *)arg);
    return others(where) == 1;
}

static void terminate_waiting(const char *wait_event)
{
    char sql[256];
    snprintf(sql, sizeof sql,
             "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE pid <> "
             "pg_backend_pid() AND wait_event = '%s'",
             wait_event);
    assert_int_equal(scalar(sql), 1);
}

/* An entry rebound because its caller went away (gw_audit_rebind) is kept from then on: its
 * session terminated before the commit, it is sent again and written once, and the rebound
 * callback hears it. */
static void test_rebound_entry_is_kept(void **state)
{
    struct gw_audit *a;
    struct outcome o[2] = {{0}, {.err = 12345}}, old = {0};
    struct gw_audit_req *q = NULL;
    struct gw_audit_rec r = rec("report.generate", "rebound-kept");
    struct gw_db_stmt st = {"SELECT count(*) FROM t_rebind_gate", 0, NULL, NULL, NULL, 0};

    (void)state;
    if (!pg_ok)
        skip();
    exec_ok("CREATE TABLE t_rebind_gate (x int)");
    a = writer("t-rebind-kept", 1000, 60000);
    exec_ok("BEGIN");
    exec_ok("LOCK TABLE t_rebind_gate IN ACCESS EXCLUSIVE MODE");
    assert_int_equal(gw_audit_write(a, &st, 1, &r, 1, done_cb, &old, &q), 0);
    gw_audit_rebind(q, done_cb, &o[0]);
    assert_true(run_until(one_backend_waits, "relation", 20000));
    terminate_waiting("relation");
    exec_ok("COMMIT");
    assert_true(run_until(all_done, o, 20000));
    assert_int_equal(o[0].err, 0);
    assert_false(old.done);
    assert_int_equal(scalar("SELECT count(*) FROM audit_record WHERE chain = 't-rebind-kept' AND "
                            "object = 'rebound-kept'"),
                     1);
    gw_audit_free(a);
    exec_ok("DROP TABLE t_rebind_gate");
}

/* A kept entry whose connection is lost before its transaction committed is sent again once
 * the writer has recovered (its records are not in the table): written exactly once. */
static void test_kept_lost_uncommitted_is_sent_again(void **state)
{
    struct gw_audit *a;
    struct outcome o[2] = {{0}, {.err = 12345}};
    struct gw_audit_rec k = rec("bulk.run", "run-kept-2");
    struct gw_db_stmt st = {"SELECT count(*) FROM t_kept_gate", 0, NULL, NULL, NULL, 0};

    (void)state;
    if (!pg_ok)
        skip();
    exec_ok("CREATE TABLE t_kept_gate (x int)");
    a = writer("t-kept-2", 1000, 60000);
    exec_ok("BEGIN");
    exec_ok("LOCK TABLE t_kept_gate IN ACCESS EXCLUSIVE MODE");
    assert_int_equal(gw_audit_write_kept(a, &st, 1, &k, 1, done_cb, &o[0]), 0);
    assert_true(run_until(one_backend_waits, "relation", 20000));
    terminate_waiting("relation");
    exec_ok("COMMIT");
    assert_true(run_until(all_done, o, 20000));
    assert_int_equal(o[0].err, 0);
    assert_string_equal(o[0].value, "0"); /* the statement's result, from the second sending */
    assert_int_equal(scalar("SELECT count(*) FROM audit_record WHERE chain = 't-kept-2' AND "
                            "object = 'run-kept-2'"),
                     1);
    assert_int_equal(verify_chain("t-kept-2"), scalar("SELECT max(seq) FROM audit_record WHERE "
                                                      "chain = 't-kept-2'"));
    gw_audit_free(a);
    exec_ok("DROP TABLE t_kept_gate");
}

static bool fresh_sees_sync_standby(void *arg)
{
    PGconn *c = PQconnectdb(pg.conninfo);
    PGresult *r = PQexec(c, "SHOW synchronous_standby_names");
    bool set =
        PQresultStatus(r) == PGRES_TUPLES_OK && strcmp(PQgetvalue(r, 0, 0), (const char *)arg) == 0;
    PQclear(r);
    PQfinish(c);
    return set;
}

static bool pool_reconnected(void *arg)
{
    char where[160];
    snprintf(where, sizeof where, "backend_type = 'client backend' AND backend_start > '%s'",
             (const char *)arg);
    return others(where) == cfg.db_pool_size;
}

static bool two_backends_wait_advisory(void *arg)
{
    (void)arg;
    return others("wait_event = 'advisory'") == 2;
}

/* t_kept_full(): counts each call in t_kept_tries and fails it as a full disk does (SQLSTATE
 * 53100, transient: the outcome of its transaction is unknown to the writer), until
 * full_disk_clears. */
static void full_disk_start(void)
{
    exec_ok("DROP FUNCTION IF EXISTS t_kept_full()"); /* left by a test that failed midway */
    exec_ok("DROP SEQUENCE IF EXISTS t_kept_tries");
    exec_ok("CREATE SEQUENCE t_kept_tries");
    exec_ok("CREATE FUNCTION t_kept_full() RETURNS int LANGUAGE plpgsql AS $$ BEGIN PERFORM "
            "nextval('t_kept_tries'); RAISE EXCEPTION 'full' USING ERRCODE = '53100'; END $$");
}

static void full_disk_clears(void)
{
    exec_ok("CREATE OR REPLACE FUNCTION t_kept_full() RETURNS int LANGUAGE sql AS 'SELECT 1'");
}

static void full_disk_end(void)
{
    exec_ok("DROP FUNCTION t_kept_full()");
    exec_ok("DROP SEQUENCE t_kept_tries");
}

static long full_disk_tries(void)
{
    return scalar("SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM t_kept_tries");
}

/* Inserts into table by chain's writer fail as on a full disk (full_disk_start's function, its
 * tries counted), everything else goes on. */
static void full_disk_for(const char *table, const char *chain)
{
    char sql[512];

    full_disk_start();
    snprintf(sql, sizeof sql,
             "CREATE FUNCTION t_full_for() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN IF "
             "NEW.chain = '%s' THEN PERFORM t_kept_full(); END IF; RETURN NEW; END $$",
             chain);
    exec_ok(sql);
    snprintf(sql, sizeof sql,
             "CREATE TRIGGER t_full_for BEFORE INSERT ON %s FOR EACH ROW EXECUTE FUNCTION "
             "t_full_for()",
             table);
    exec_ok(sql);
}

static void full_disk_for_end(const char *table)
{
    char sql[128];

    snprintf(sql, sizeof sql, "DROP TRIGGER t_full_for ON %s", table);
    exec_ok(sql);
    exec_ok("DROP FUNCTION t_full_for()");
    full_disk_end();
}

static bool tried_five_times(void *arg)
{
    (void)arg;
    return full_disk_tries() >= 5;
}

/* The batch's statement ran (so its own wait for the lock is over), and a session other than
 * the one whose pid is arg waits for the chain's lock. */
static bool tried_and_another_waits(void *arg)
{
    char where[96];
    snprintf(where, sizeof where, "wait_event = 'advisory' AND pid <> %d", *(const int *)arg);
    return full_disk_tries() >= 1 && others(where) == 1;
}

/* A transaction carrying kept entries holds its chain's advisory lock, and the recovery that
 * settles one whose outcome is unknown takes that lock before it reads: so a session that
 * outlives its lost connection has ended before the read. Played here by the test's sessions:
 * the batch waits while check holds the lock; a second session queued behind the batch holds it
 * when the batch has failed (class 53: outcome unknown), and the recovery waits for it. */
static void test_kept_recovery_waits_for_the_chains_lock(void **state)
{
    struct gw_audit *a;
    struct outcome o[2] = {{0}, {.err = 12345}};
    struct gw_audit_rec k = rec("bulk.run", "run-kept-6");
    struct gw_db_stmt st = {"SELECT t_kept_full()", 0, NULL, NULL, NULL, 0};
    static const char lock[] = "SELECT pg_advisory_xact_lock(1397, hashtext('t-kept-6'))";
    struct gw_audit_stats stats;
    PGconn *other;
    PGresult *r;
    int other_pid;

    (void)state;
    if (!pg_ok)
        skip();
    other = PQconnectdb(pg.conninfo);
    assert_true(PQstatus(other) == CONNECTION_OK);
    other_pid = PQbackendPID(other);
    full_disk_start();
    a = writer("t-kept-6", 1000, 60000);
    exec_ok("BEGIN");
    exec_ok(lock);
    assert_int_equal(gw_audit_write_kept(a, &st, 1, &k, 1, done_cb, &o[0]), 0);
    assert_true(run_until(one_backend_waits, "advisory", 20000)); /* the batch, before its */
    assert_int_equal(full_disk_tries(), 0);                       /* statement */
    assert_int_equal(PQsendQuery(other, "BEGIN; SELECT pg_advisory_xact_lock(1397, "
                                        "hashtext('t-kept-6'))"),
                     1);
    assert_true(run_until(two_backends_wait_advisory, NULL, 20000)); /* other behind it */
    exec_ok("COMMIT");
    /* the batch ran and failed (other took the lock), then the recovery waits for other */
    assert_true(run_until(tried_and_another_waits, &other_pid, 20000));
    gw_audit_stats(a, &stats);
    assert_false(stats.ready); /* the recovery, not a batch sent again */
    assert_false(o[0].done);
    full_disk_clears();
    while ((r = PQgetResult(other)) != NULL) {
        assert_true(PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK);
        PQclear(r);
    }
    r = PQexec(other, "COMMIT");
    assert_true(PQresultStatus(r) == PGRES_COMMAND_OK);
    PQclear(r);
    PQfinish(other);
    assert_true(run_until(all_done, o, 20000));
    assert_int_equal(o[0].err, 0);
    assert_int_equal(scalar("SELECT count(*) FROM audit_record WHERE chain = 't-kept-6' AND "
                            "object = 'run-kept-6'"),
                     1);
    gw_audit_free(a);
    full_disk_end();
}

/* Every commit from now on waits for a synchronous standby that never comes (so a session
 * terminated while it waits has committed locally: its client never learns it), the pool's
 * connections started again with the setting. */
static void commits_wait_for_a_standby(void)
{
    char since[64];
    PGresult *t;

    exec_ok("ALTER SYSTEM SET synchronous_standby_names = 'nobody'");
    exec_ok("SELECT pg_reload_conf()");
    assert_true(run_until(fresh_sees_sync_standby, "nobody", 20000));
    t = PQexec(check, "SELECT clock_timestamp()");
    assert_true(PQresultStatus(t) == PGRES_TUPLES_OK);
    snprintf(since, sizeof since, "%s", PQgetvalue(t, 0, 0));
    PQclear(t);
    exec_ok("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid <> "
            "pg_backend_pid() AND backend_type = 'client backend'");
    assert_true(run_until(pool_reconnected, since, 20000));
}

static void commits_wait_no_more(void)
{
    exec_ok("ALTER SYSTEM RESET synchronous_standby_names");
    exec_ok("SELECT pg_reload_conf()");
    assert_true(run_until(fresh_sees_sync_standby, "", 20000));
}

/* A kept entry whose transaction committed but whose answer was lost (its backend terminated
 * while the commit waited for a synchronous standby that never comes: committed locally) is
 * settled by the recovery as written: done, and never sent a second time. */
static void test_kept_lost_committed_is_not_sent_again(void **state)
{
    struct gw_audit *a;
    struct outcome o[2] = {{0}, {.err = 12345}};
    struct gw_audit_rec k = rec("bulk.run", "run-kept-3");

    (void)state;
    if (!pg_ok)
        skip();
    a = writer("t-kept-3", 1000, 60000); /* its gateway.start committed: nothing else waits */
    commits_wait_for_a_standby();
    assert_int_equal(gw_audit_write_kept(a, NULL, 0, &k, 1, done_cb, &o[0]), 0);
    assert_true(run_until(one_backend_waits, "SyncRep", 20000));
    terminate_waiting("SyncRep");
    assert_true(run_until(all_done, o, 20000));
    commits_wait_no_more();
    assert_int_equal(o[0].err, 0);
    assert_int_equal(scalar("SELECT count(*) FROM audit_record WHERE chain = 't-kept-3' AND "
                            "object = 'run-kept-3'"),
                     1);
    assert_int_equal(o[0].seq, scalar("SELECT seq FROM audit_record WHERE chain = 't-kept-3' AND "
                                      "object = 'run-kept-3'"));
    gw_audit_free(a);
}

/* Kept entries take at most half the queue: past it they are refused GW_EQUEUEFULL while an
 * action that waits is still taken, so that records piling up through an outage cannot crowd
 * out the actions that wait. */
static void test_kept_take_half_the_queue(void **state)
{
    struct gw_audit_config ac = config_of("t-kept-half", 4);
    struct outcome o[5] = {{0}, {0}, {0}, {0}, {.err = 12345}}, more = {0};
    struct gw_audit_rec r = rec("bulk.run", "run-kept-half");
    struct gw_audit *a = NULL;

    (void)state;
    if (!pg_ok)
        skip();
    assert_int_equal(gw_audit_new(db, &ac, &a), 0);
    assert_int_equal(gw_audit_start(a), 0);
    assert_true(run_until(ready, a, 10000));
    assert_int_equal(gw_audit_write(a, NULL, 0, &r, 1, done_cb, &o[0], NULL), 0); /* in flight */
    assert_int_equal(gw_audit_write_kept(a, NULL, 0, &r, 1, done_cb, &o[1]), 0);
    assert_int_equal(gw_audit_write_kept(a, NULL, 0, &r, 1, done_cb, &o[2]), 0); /* 2 of 4 */
    assert_int_equal(gw_audit_write_kept(a, NULL, 0, &r, 1, done_cb, &more), GW_EQUEUEFULL);
    assert_int_equal(gw_audit_write(a, NULL, 0, &r, 1, done_cb, &o[3], NULL), 0);
    assert_true(run_until(all_done, o, 10000));
    for (int i = 0; i < 4; i++)
        assert_int_equal(o[i].err, 0);
    assert_false(more.done);
    gw_audit_free(a);
}

static bool never(void *arg)
{
    (void)arg;
    return false;
}

/* A kept entry whose transaction keeps failing in a way that leaves its outcome unknown (class
 * 53: insufficient resources, a full disk) is sent again after a pause that grows, not as fast as
 * it fails; once the failure clears it is written, once. */
static void test_kept_failing_again_is_paced(void **state)
{
    struct gw_audit *a;
    struct outcome o[2] = {{0}, {.err = 12345}};
    struct gw_audit_rec k = rec("bulk.run", "run-kept-4");
    struct gw_db_stmt st = {"SELECT t_kept_full()", 0, NULL, NULL, NULL, 0};
    long tries;

    (void)state;
    if (!pg_ok)
        skip();
    full_disk_start();
    a = writer("t-kept-4", 1000, 60000);
    assert_int_equal(gw_audit_write_kept(a, &st, 1, &k, 1, done_cb, &o[0]), 0);
    (void)run_until(never, NULL, 1500);
    tries = full_disk_tries();
    assert_false(o[0].done);
    /* 250, 500, 1000 ms apart: at most 3 in the first 1.5 s (however slow the machine: a slower
     * one tries less); sent again as fast as it fails, hundreds */
    assert_true(tries >= 1);
    assert_true(tries <= 4);
    /* nothing else commits meanwhile (the database is what fails): it is not given up */
    assert_true(run_until(tried_five_times, NULL, 20000));
    assert_false(o[0].done);
    full_disk_clears();
    assert_true(run_until(all_done, o, 20000));
    assert_int_equal(o[0].err, 0);
    assert_int_equal(scalar("SELECT count(*) FROM audit_record WHERE chain = 't-kept-4' AND "
                            "object = 'run-kept-4'"),
                     1);
    gw_audit_free(a);
    full_disk_end();
}

/* The writer's own gateway.start failing for a passing reason (class 53: a full disk) is sent
 * again after the same growing pauses as a kept entry, not at once after each recovery: at most
 * 4 tries in 1.5 s (a slower machine tries less), where an immediate retry made over a thousand. */
static void test_own_record_failing_is_paced(void **state)
{
    struct gw_audit_config ac = config_of("t-f-own", 0);
    struct gw_audit *a = NULL;
    long tries;

    (void)state;
    if (!pg_ok)
        skip();
    full_disk_for("audit_record", "t-f-own");
    assert_int_equal(gw_audit_new(db, &ac, &a), 0);
    assert_int_equal(gw_audit_start(a), 0);
    (void)run_until(never, NULL, 1500);
    tries = full_disk_tries();
    full_disk_for_end("audit_record");
    gw_audit_free(a);
    assert_true(tries >= 1);
    assert_true(tries <= 4);
}

/* The same for a transaction of a checkpoint alone (the timer's, nothing queued) that fails for
 * a passing reason: paced, not sent again right after each recovery. */
static void test_checkpoint_failing_is_paced(void **state)
{
    struct gw_audit *a;
    struct gw_audit_rec r = rec("login.ok", NULL);
    long tries;

    (void)state;
    if (!pg_ok)
        skip();
    a = writer("t-f-ck", 1000, 100);
    full_disk_for("audit_checkpoint", "t-f-ck");
    write_records(a, &r, 1); /* committed; the 100 ms timer then wants a checkpoint over it */
    (void)run_until(never, NULL, 1500);
    tries = full_disk_tries();
    full_disk_for_end("audit_checkpoint");
    gw_audit_free(a);
    assert_true(tries >= 1);
    assert_true(tries <= 5);
}

/* An entry whose send found no pool connection waits for its failure to be told until the loop
 * runs it; rebound in that window (its caller went away in the same turn), it is kept: written
 * once the database is back, and only the new callback hears of it. */
static void test_rebound_while_failing_is_kept(void **state)
{
    struct gw_audit *a;
    struct outcome o[2] = {{0}, {.err = 12345}}, old = {0};
    struct gw_audit_req *q = NULL;
    struct gw_audit_rec r = rec("report.generate", "f-rebound");
    int err;

    (void)state;
    if (!pg_ok)
        skip();
    a = writer("t-f-rebind", 1000, 60000);
    assert_int_equal(pgh_stop(&pg), 0);
    assert_true(run_until(db_is_down, db, 20000));
    err = gw_audit_write(a, NULL, 0, &r, 1, done_cb, &old, &q);
    assert_int_equal(err, 0);           /* the writer has not met the outage yet */
    gw_audit_rebind(q, done_cb, &o[0]); /* the caller goes away at once */
    assert_int_equal(pgh_start(&pg), 0);
    PQreset(check);
    assert_true(run_until(db_is_ready, db, 20000));
    (void)run_until(all_done, o, 5000);
    assert_false(old.done);
    assert_true(o[0].done);
    assert_int_equal(o[0].err, 0);
    assert_int_equal(scalar("SELECT count(*) FROM audit_record WHERE chain = 't-f-rebind' AND "
                            "object = 'f-rebound'"),
                     1);
    gw_audit_free(a);
}

/* gateway.start whose transaction committed but whose answer was lost (its session terminated
 * while its commit waited for a synchronous standby) is settled as written: one start on the
 * chain for one process life, not a second one at the next recovery. */
static void test_start_lost_committed_is_written_once(void **state)
{
    struct gw_audit_config ac = config_of("t-f-start", 0);
    struct gw_audit *a = NULL;

    (void)state;
    if (!pg_ok)
        skip();
    /* registered beforehand, so that the recovery itself writes nothing and does not wait */
    exec_ok("INSERT INTO audit_chain (id, kind) VALUES ('t-f-start', 'gateway')");
    gw_audit_free(writer("t-f-start0", 1000, 60000)); /* the key registered too */
    commits_wait_for_a_standby();
    assert_int_equal(gw_audit_new(db, &ac, &a), 0);
    assert_int_equal(gw_audit_start(a), 0);
    assert_true(run_until(one_backend_waits, "SyncRep", 20000)); /* gateway.start's commit */
    terminate_waiting("SyncRep");
    (void)run_until(never, NULL, 1000);
    commits_wait_no_more();
    assert_true(run_until(ready, a, 20000));
    long n = scalar("SELECT count(*) FROM audit_record WHERE chain = 't-f-start' AND "
                    "action = 'gateway.start'");
    gw_audit_free(a);
    assert_int_equal(n, 1);
}

/* Cuts this process's connections to the server (not check's) without ending their backends:
 * a proxy or the network losing them while the sessions live on. */
static int cut_pool_sockets(void)
{
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    int n = 0;
    assert_non_null(d);
    while ((e = readdir(d)) != NULL) {
        int fd = atoi(e->d_name);
        struct sockaddr_un un;
        socklen_t len = sizeof un;
        if (e->d_name[0] == '.' || fd == PQsocket(check) || fd == dirfd(d))
            continue;
        memset(&un, 0, sizeof un);
        if (getpeername(fd, (struct sockaddr *)&un, &len) != 0 || un.sun_family != AF_UNIX)
            continue;
        if (strstr(un.sun_path, ".s.PGSQL.") == NULL)
            continue;
        shutdown(fd, SHUT_RDWR);
        n++;
    }
    closedir(d);
    return n;
}

static void drained_here(void *arg, uint64_t left)
{
    *(int64_t *)arg = (int64_t)left;
}

static bool drain_answered(void *arg)
{
    return *(int64_t *)arg >= 0;
}

/* A lost transaction that commits while the settling recovery waits for the chain's lock: the
 * recovery reads the head after the lock, so it takes the settled record as its head, and a
 * drain's last checkpoint covers it. Red with the head read before the lock: the head is the
 * record before it, and the drain signs over that one. */
static void test_settling_reads_the_head_after_the_lock(void **state)
{
    struct gw_audit *a;
    struct outcome o[2] = {{0}, {.err = 12345}};
    struct gw_audit_rec k = rec("bulk.run", "f-stale");
    struct gw_audit_stats st;
    int64_t left = -1;

    (void)state;
    if (!pg_ok)
        skip();
    a = writer("t-f-stale", 1000, 60000);
    commits_wait_for_a_standby();
    assert_int_equal(gw_audit_write_kept(a, NULL, 0, &k, 1, done_cb, &o[0]), 0);
    assert_true(run_until(one_backend_waits, "SyncRep", 20000)); /* holds the chain's lock */
    assert_true(cut_pool_sockets() >= 1);
    /* the settling recovery, on a new connection, waits for the lock */
    assert_true(run_until(one_backend_waits, "advisory", 20000));
    commits_wait_no_more(); /* the lost session's commit completes */
    assert_true(run_until(all_done, o, 20000));
    assert_int_equal(o[0].err, 0);
    assert_int_equal(scalar("SELECT count(*) FROM audit_record WHERE chain = 't-f-stale' AND "
                            "object = 'f-stale'"),
                     1);
    gw_audit_stats(a, &st);
    gw_audit_drain(a, 5000, drained_here, &left);
    assert_true(run_until(drain_answered, &left, 10000));
    long covered = scalar("SELECT count(*) FROM audit_checkpoint WHERE chain = 't-f-stale' AND "
                          "seq = (SELECT max(seq) FROM audit_record WHERE chain = 't-f-stale')");
    gw_audit_free(a);
    assert_true(st.head_seq >= o[0].seq);
    assert_int_equal(covered, 1);
}

/* A kept entry whose own statement fails every time for a passing reason (class 53) while the
 * database writes everything else: it goes by itself, so no ordinary entry fails with it, and
 * after failing by itself three times right after others were written it fails UNAVAILABLE
 * instead of being sent for ever. */
static void test_kept_entry_failing_alone_spares_the_others(void **state)
{
    struct gw_audit *a;
    struct outcome k = {0};
    struct gw_audit_rec kr = rec("bulk.run", "f-poison"), r = rec("login.ok", NULL);
    struct gw_db_stmt st = {"SELECT t_kept_full()", 0, NULL, NULL, NULL, 0};
    int failed = 0;
    long tries;

    (void)state;
    if (!pg_ok)
        skip();
    full_disk_start();
    a = writer("t-f-poison", 1000, 60000);
    assert_int_equal(gw_audit_write_kept(a, &st, 1, &kr, 1, done_cb, &k), 0);
    for (int i = 0; i < 8; i++) {
        struct outcome o[2] = {{0}, {.err = 12345}};
        (void)run_until(never, NULL, 600);
        assert_int_equal(gw_audit_write(a, NULL, 0, &r, 1, done_cb, &o[0], NULL), 0);
        assert_true(run_until(all_done, o, 10000));
        if (o[0].err != 0)
            failed++;
    }
    tries = full_disk_tries();
    gw_audit_free(a);
    full_disk_end();
    assert_int_equal(failed, 0);
    assert_true(k.done);
    assert_int_equal(k.err, GW_EUNAVAIL);
    assert_true(tries >= 4); /* once with the others, then three times by itself */
    assert_int_equal(scalar("SELECT count(*) FROM audit_record WHERE chain = 't-f-poison' AND "
                            "object = 'f-poison'"),
                     0);
}

/* A gw_audit_left_cb: counts the entries, keeps the last one's first record's object and its
 * doubt. */
struct left_seen {
    int n, in_doubt;
    char object[32];
};

static int left_cb(void *arg, const struct gw_audit_left *e)
{
    struct left_seen *ls = arg;
    ls->n++;
    snprintf(ls->object, sizeof ls->object, "%s", e->recs[0].object ? e->recs[0].object : "");
    ls->in_doubt += e->in_doubt;
    return 0;
}

/* A writer not started: for entries handed over before its first recovery. */
static struct gw_audit *writer_unstarted(const char *chain)
{
    struct gw_audit_config ac = config_of(chain, 0);
    struct gw_audit *a = NULL;
    assert_int_equal(gw_audit_new(db, &ac, &a), 0);
    return a;
}

/* Hands e (in doubt) to a writer of chain t-left before its start, and waits for its answer:
 * written (0), by its first recovery's settling or chained anew. */
static void settled(const struct gw_audit_left *e)
{
    struct outcome o[2] = {{0}, {.err = 12345}};
    struct gw_audit *a = writer_unstarted("t-left");

    assert_int_equal(gw_audit_write_in_doubt(a, e, done_cb, &o[0]), 0);
    assert_int_equal(gw_audit_start(a), 0);
    assert_true(run_until(all_done, o, 20000));
    assert_int_equal(o[0].err, 0);
    gw_audit_free(a);
}

/* The audit spool's side of the writer: at shutdown its kept entries are visited, the one of a
 * transaction in flight as in doubt, an ordinary one not (its caller is answered); at the next
 * start an entry left in doubt is settled by the first recovery: written once when the record its
 * transaction ended with is stored with that hash, else chained anew; a second transaction in
 * doubt, or a started writer, is refused. */
static void test_leftover_and_in_doubt(void **state)
{
    struct gw_audit *a;
    struct gw_audit_rec k = rec("bulk.run", "left-kept"), r = rec("login.ok", "left-plain");
    struct gw_audit_left e = {.nrecs = 1, .in_doubt = true};
    struct outcome o[3] = {{0}, {0}, {.err = 12345}}, plain[2] = {{0}, {.err = 12345}};
    struct left_seen ls = {0};
    PGresult *h;
    int err;

    (void)state;
    if (!pg_ok)
        skip();
    /* a transaction held in flight (its chain's lock taken): kept, ordinary, kept behind it */
    a = writer("t-left-2", 1000, 60000);
    h = PQexec(check, "BEGIN; SELECT pg_advisory_xact_lock(1397, hashtext('t-left-2'))");
    assert_int_equal(PQresultStatus(h), PGRES_TUPLES_OK);
    PQclear(h);
    assert_int_equal(gw_audit_write_kept(a, NULL, 0, &k, 1, done_cb, &o[0]), 0);
    assert_int_equal(gw_audit_write(a, NULL, 0, &r, 1, done_cb, &plain[0], NULL), 0);
    assert_int_equal(gw_audit_write_kept(a, NULL, 0, &k, 1, done_cb, &o[1]), 0);
    assert_int_equal(gw_audit_leftover(a, left_cb, &ls), 0);
    assert_int_equal(ls.n, 2);
    assert_int_equal(ls.in_doubt, 1);
    h = PQexec(check, "ROLLBACK");
    PQclear(h);
    assert_true(run_until(all_done, o, 20000) && run_until(all_done, plain, 20000));
    gw_audit_free(a);
    memset(&ls, 0, sizeof ls);
    memset(o, 0, 2 * sizeof o[0]);
    plain[0] = (struct outcome){0};

    a = writer("t-left", 1000, 60000);
    assert_int_equal(pgh_stop(&pg), 0);
    assert_true(run_until(db_is_down, db, 20000));
    assert_int_equal(gw_audit_write_kept(a, NULL, 0, &k, 1, done_cb, &o[0]), 0);
    err = gw_audit_write(a, NULL, 0, &r, 1, done_cb, &plain[0], NULL);
    if (err == 0)
        assert_true(run_until(all_done, plain, 20000));
    assert_int_equal(gw_audit_leftover(a, left_cb, &ls), 0);
    assert_int_equal(ls.n, 1);
    assert_string_equal(ls.object, "left-kept");
    assert_int_equal(ls.in_doubt, 0);
    gw_audit_free(a); /* dropped without its callback: the spool would hold it */
    assert_int_equal(pgh_start(&pg), 0);
    PQreset(check);
    assert_true(run_until(db_is_ready, db, 20000));

    /* committed: the head's seq and hash name it, the entry is answered 0 and not written */
    a = writer("t-left", 1000, 60000);
    write_records(a, &r, 1);
    gw_audit_free(a);
    h = PQexec(check, "SELECT seq, encode(hash, 'hex') FROM audit_record WHERE chain = 't-left' "
                      "ORDER BY seq DESC LIMIT 1");
    assert_int_equal(PQresultStatus(h), PGRES_TUPLES_OK);
    e.doubt_seq = strtoll(PQgetvalue(h, 0, 0), NULL, 10);
    assert_true(gw_pq_hex(PQgetvalue(h, 0, 1), e.doubt_hash, sizeof e.doubt_hash));
    PQclear(h);
    e.recs[0] = rec("bulk.run", "doubt-committed");
    a = writer_unstarted("t-left");
    assert_int_equal(gw_audit_write_in_doubt(a, &e, done_cb, &o[0]), 0);
    e.doubt_seq++; /* another transaction: refused */
    assert_int_equal(gw_audit_write_in_doubt(a, &e, done_cb, &o[1]), GW_EINVAL);
    e.doubt_seq--;
    gw_audit_free(a); /* dropped, never answered */
    a = writer("t-left", 1000, 60000);
    assert_int_equal(gw_audit_write_in_doubt(a, &e, done_cb, &o[1]), GW_EINVAL); /* started */
    gw_audit_free(a);
    settled(&e);
    assert_int_equal(scalar("SELECT count(*) FROM audit_record WHERE chain = 't-left' AND "
                            "object = 'doubt-committed'"),
                     0);

    /* not committed (no record at its seq): chained anew, written once */
    e.doubt_seq += 1000;
    e.recs[0] = rec("bulk.run", "doubt-lost");
    settled(&e);
    assert_int_equal(scalar("SELECT count(*) FROM audit_record WHERE chain = 't-left' AND "
                            "object = 'doubt-lost'"),
                     1);
    assert_int_equal(scalar("SELECT count(*) FROM audit_record WHERE chain = 't-left' AND "
                            "object = 'left-kept'"),
                     0);
    assert_int_equal(verify_chain("t-left"), scalar("SELECT max(seq) FROM audit_record WHERE "
                                                    "chain = 't-left'"));
}

/* A spool's entry written again (its mark there already: an earlier replay wrote it) is counted
 * as written before, not as failed: waygate_audit_failed_total, which operations.md alerts on,
 * does not move for a spool replayed again. A kept entry failing on another statement still
 * counts as failed. */
static void test_an_entry_met_on_its_mark_is_written_before_not_failed(void **state)
{
    static const char id[GW_AUDIT_SPOOL_ID_LEN] = "t-written-before";
    static const int lens[2] = {GW_AUDIT_SPOOL_ID_LEN, 0}, fmts[2] = {1, 0};
    const char *vals[2] = {id, "0"};
    struct gw_db_stmt mark = {GW_AUDIT_SPOOL_MARK_SQL, 2, vals, lens, fmts, 0};
    struct gw_db_stmt bad = {"SELECT 1 / 0", 0, NULL, NULL, NULL, 0};
    struct gw_audit_rec r = rec("bulk.run", "written-before");
    struct outcome o[2] = {{0}, {.err = 12345}};
    struct gw_audit_stats before, after;
    struct gw_audit *a;

    (void)state;
    if (!pg_ok)
        skip();
    a = writer("t-wbefore", 1000, 60000);
    for (int i = 0; i < 2; i++) { /* written, then met on its mark */
        if (i == 1)
            gw_audit_stats(a, &before);
        o[0] = (struct outcome){0};
        assert_int_equal(gw_audit_write_kept(a, &mark, 1, &r, 1, done_cb, &o[0]), 0);
        assert_true(run_until(all_done, o, 20000));
    }
    gw_audit_stats(a, &after);
    assert_int_equal(o[0].err, GW_EINTERNAL);
    assert_int_equal(o[0].failed_stmt, 0);
    assert_int_equal(after.failed, before.failed);
    assert_int_equal(after.written_before, before.written_before + 1);
    o[0] = (struct outcome){0};
    assert_int_equal(gw_audit_write_kept(a, &bad, 1, &r, 1, done_cb, &o[0]), 0);
    assert_true(run_until(all_done, o, 20000));
    gw_audit_stats(a, &before);
    assert_int_equal(o[0].err, GW_EINTERNAL);
    assert_int_equal(before.failed, after.failed + 1);
    assert_int_equal(before.written_before, after.written_before);
    assert_int_equal(scalar("SELECT count(*) FROM audit_record WHERE chain = 't-wbefore' AND "
                            "object = 'written-before'"),
                     1);
    gw_audit_free(a);
}

/* A gw_db_done_cb: marks its bool answered. */
static void probe_cb(void *arg, int err, const struct gw_db_result *res)
{
    (void)err;
    (void)res;
    *(bool *)arg = true;
}

static bool is_true(void *arg)
{
    return *(bool *)arg;
}

/* Sends SELECT 1 on p and waits for its answer: on a pool of one connection, everything sent
 * before it has answered, and what its callbacks sent has been sent. */
static void behind_all(struct gw_db *p)
{
    static const struct gw_db_stmt one = {"SELECT 1", 0, NULL, NULL, NULL, 0};
    bool answered = false;

    assert_int_equal(gw_db_exec(p, &one, 1, 0, probe_cb, &answered, NULL), 0);
    assert_true(run_until(is_true, &answered, 20000));
}

/* The spool's side at a stop: once halted, the writer sends nothing, so what its leftover
 * visited is written from the spool alone. Its recovery is held on the chain's lock while it is
 * halted; answered afterwards, it must not send the queued kept entry (nor gateway.start). On a
 * pool of one connection, two probes in a row show that anything the recovery's answer sent has
 * answered. */
static void test_halted_writer_sends_nothing(void **state)
{
    struct gw_config one = cfg;
    struct gw_db *p;
    struct gw_audit *a;
    struct gw_audit_config ac = config_of("t-halt", 0);
    struct gw_audit_rec k = rec("bulk.run", "halt-kept");
    struct outcome o[2] = {{0}, {.err = 12345}};
    struct left_seen ls = {0};
    PGresult *h;

    (void)state;
    if (!pg_ok)
        skip();
    one.db_pool_size = 1;
    p = gw_db_new(base, &one);
    assert_non_null(p);
    assert_int_equal(gw_db_start(p), 0);
    assert_true(run_until(db_is_ready, p, 10000));
    assert_int_equal(gw_audit_new(p, &ac, &a), 0);
    k.outcome = "stopped";
    assert_int_equal(gw_audit_write_kept(a, NULL, 0, &k, 1, done_cb, &o[0]), 0);
    h = PQexec(check, "BEGIN; SELECT pg_advisory_xact_lock(1397, hashtext('t-halt'))");
    assert_int_equal(PQresultStatus(h), PGRES_TUPLES_OK);
    PQclear(h);
    assert_int_equal(gw_audit_start(a), 0);
    assert_true(run_until(one_backend_waits, "advisory", 20000));
    gw_audit_halt(a);
    assert_int_equal(gw_audit_leftover(a, left_cb, &ls), 0);
    assert_int_equal(ls.n, 1);
    assert_string_equal(ls.object, "halt-kept");
    assert_int_equal(gw_audit_write_kept(a, NULL, 0, &k, 1, done_cb, &o[0]), GW_EUNAVAIL);
    h = PQexec(check, "ROLLBACK");
    PQclear(h);
    behind_all(p); /* the recovery has answered */
    behind_all(p); /* and what it would have sent */
    assert_false(o[0].done);
    assert_int_equal(scalar("SELECT count(*) FROM audit_record WHERE chain = 't-halt'"), 0);
    gw_audit_free(a);
    gw_db_free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_chain_written),
        cmocka_unit_test(test_failing_entry_fails_alone),
        cmocka_unit_test(test_queue_bound),
        cmocka_unit_test(test_head_recovered),
        cmocka_unit_test(test_checkpoints),
        cmocka_unit_test(test_sm2_checkpoints),
        cmocka_unit_test(test_shared_chain_never_forks),
        cmocka_unit_test(test_cancel),
        cmocka_unit_test(test_rebind),
        cmocka_unit_test(test_append_only),
        cmocka_unit_test(test_planted_checkpoint_ignored),
        cmocka_unit_test(test_planted_checkpoint_at_the_next_seq),
        cmocka_unit_test(test_forged_head_starts_a_new_segment),
        cmocka_unit_test(test_head_signed_by_the_writer_is_taken),
        cmocka_unit_test(test_linked_head_needs_the_writer_mac),
        cmocka_unit_test(test_head_of_the_other_suite_is_taken_with_its_key),
        cmocka_unit_test(test_schema_behind_is_named),
        cmocka_unit_test(test_kept_waits_out_an_outage),
        cmocka_unit_test(test_kept_lost_uncommitted_is_sent_again),
        cmocka_unit_test(test_rebound_entry_is_kept),
        cmocka_unit_test(test_kept_recovery_waits_for_the_chains_lock),
        cmocka_unit_test(test_kept_take_half_the_queue),
        cmocka_unit_test(test_kept_failing_again_is_paced),
        cmocka_unit_test(test_kept_lost_committed_is_not_sent_again),
        cmocka_unit_test(test_own_record_failing_is_paced),
        cmocka_unit_test(test_checkpoint_failing_is_paced),
        cmocka_unit_test(test_rebound_while_failing_is_kept),
        cmocka_unit_test(test_start_lost_committed_is_written_once),
        cmocka_unit_test(test_settling_reads_the_head_after_the_lock),
        cmocka_unit_test(test_kept_entry_failing_alone_spares_the_others),
        cmocka_unit_test(test_leftover_and_in_doubt),
        cmocka_unit_test(test_halted_writer_sends_nothing),
        cmocka_unit_test(test_an_entry_met_on_its_mark_is_written_before_not_failed),
    };
    if (getenv("TEST_FILTER") != NULL) /* one case, or a pattern: TEST_FILTER='test_kept_*' */
        cmocka_set_test_filter(getenv("TEST_FILTER"));
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
