/* test_audit_fail.c: the audit writer's failure paths: audit.c's fail_cb when a failed entry's
 * callback rebinds another entry of its batch (gw_audit_rebind, as a call cancelled meanwhile
 * does), and done_cb when a destruction's own statement gives way to another transaction's
 * locks; gw_audit_holds, against what gw_audit_leftover visits. White-box: audit.c is compiled into
 * this test, so that a batch of two entries can be made to fail at once; no database (the pool is
 * never started, so every send answers GW_EUNAVAIL, as when every connection is down). */
#include "audit.c"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "config.h"

struct told {
    int n, err;
};

static struct gw_audit_req *other; /* the entry the first callback rebinds */
static struct told told_a, told_b, told_b_rebound, told_c;

static void note(void *arg, int err, int64_t seq, const struct gw_db_result *res)
{
    struct told *t = arg;

    (void)seq;
    (void)res;
    t->n++;
    t->err = err;
}

static void rebinds_the_other(void *arg, int err, int64_t seq, const struct gw_db_result *res)
{
    note(arg, err, seq, res);
    gw_audit_rebind(other, note, &told_b_rebound); /* its caller went away: kept */
}

/* A writer on chain over a pool that is never started (every send answers GW_EUNAVAIL), its
 * recovery done as far as the tests need: a->ready is theirs to set. */
static struct gw_audit *writer(struct event_base *base, struct gw_db **db, const char *chain)
{
    static uint8_t seed[GW_SIGN_SEED_LEN];
    struct gw_config cfg;
    struct gw_audit *a = NULL;

    memset(&cfg, 0, sizeof cfg);
    cfg.db_conninfo = "host=/nonexistent";
    memset(seed, 7, sizeof seed);
    *db = gw_db_new(base, &cfg);
    assert_non_null(*db);
    struct gw_audit_config ac = {.chain = chain,
                                 .checkpoint_every = 1000,
                                 .checkpoint_ms = 100000,
                                 .alg = GW_SIGN_ED25519,
                                 .seed = seed};
    assert_int_equal(gw_audit_new(*db, &ac, &a), 0);
    assert_int_equal(gw_audit_start(a), 0);
    a->down = false;
    return a;
}

/* A and B fail in one batch; A's callback rebinds B. B is then kept (it waits for the database,
 * its new callback not run yet, the old one never), and the next failed batch (C) is told: its
 * entry is on the writer's failed list, not lost to a list on fail_cb's frame. */
static void test_rebind_from_another_entrys_failure(void **state)
{
    struct event_base *base = event_base_new();
    struct gw_audit *a;
    struct gw_audit_req *ha = NULL, *hc = NULL;
    struct gw_audit_rec r = {.actor = "t", .action = "x.y", .outcome = "ok", .count = -1};
    struct gw_db *db;

    (void)state;
    assert_non_null(base);
    a = writer(base, &db, "t-rebind");
    /* as after a recovery that succeeded, before the pool lost every connection: A and B queue,
     * then go out as one batch, whose send fails */
    a->ready = false;
    assert_int_equal(gw_audit_write(a, NULL, 0, &r, 1, rebinds_the_other, &told_a, &ha), 0);
    assert_int_equal(gw_audit_write(a, NULL, 0, &r, 1, note, &told_b, &other), 0);
    a->ready = true;
    pump(a);
    event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK); /* fail_cb */
    assert_int_equal(told_a.n, 1);
    assert_int_equal(told_a.err, GW_EUNAVAIL);
    assert_int_equal(told_b.n, 0); /* rebound: kept, not failed */
    assert_int_equal(told_b_rebound.n, 0);
    assert_true(TAILQ_EMPTY(&a->failed));
    assert_true(a->failed.tqh_last == &a->failed.tqh_first);
    /* the next batch fails too: its entry is told */
    a->down = false;
    a->ready = true;
    assert_int_equal(gw_audit_write(a, NULL, 0, &r, 1, note, &told_c, &hc), 0);
    event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
    assert_int_equal(told_c.n, 1);
    assert_int_equal(told_c.err, GW_EUNAVAIL);
    gw_audit_free(a);
    gw_db_free(db);
    event_base_free(base);
}

static struct told told_x, told_destroy, told_y;

/* Takes every queued entry into the batch as pump and send_batch leave it in flight: the
 * chain's lock first, then each entry's statements and records. Returns the statement count. */
static int in_flight(struct gw_audit *a)
{
    struct gw_audit_req *r;
    int k = 1;

    while ((r = TAILQ_FIRST(&a->queue)) != NULL) {
        TAILQ_REMOVE(&a->queue, r, link);
        r->queued = false;
        a->nqueued--;
        TAILQ_INSERT_TAIL(&a->batch, r, link);
        r->first_stmt = k;
        k += r->nstmts + r->nrecs;
    }
    a->batch_nstmts = k;
    return k;
}

/* A destruction (retention's batch, an approved bulk destroy) whose own statement gives way to
 * another transaction's locks (lock timeout 55P03, sql/048; a deadlock 40P01) in an audit
 * transaction it shares with ordinary entries (other callers' Search and Reveal records): the
 * destruction alone is failed (its caller answers, retries at its next sweep), the ordinary
 * entries are told nothing and go again, first in line, in their order: their calls do not fail
 * for it. Driven through done_cb with the pool's answer as a statement's error. */
static void test_a_destructions_lock_failure_fails_it_alone(void **state)
{
    static const char destroy_sql[] = "SELECT retention_destroy($1::uuid[], 1, 's', 'r')";
    static const char *const states[2] = {"55P03", "40P01"}; /* lock timeout, deadlock */
    struct event_base *base = event_base_new();
    struct gw_audit *a;
    struct gw_audit_req *hx = NULL, *hd = NULL, *hy = NULL;
    struct gw_audit_rec rec = {.actor = "t", .action = "x.y", .outcome = "ok", .count = -1};
    const char *v[1] = {"{}"};
    struct gw_db_stmt st = {destroy_sql, 1, v, NULL, NULL, 0};
    PGresult *results[16] = {0};
    struct gw_db_result res = {.results = results, .rolled_back_at = -1};
    struct gw_db *db;

    (void)state;
    assert_non_null(base);
    a = writer(base, &db, "t-destroy");
    a->ready = false; /* queued, not sent: done_cb then sends nothing again here */
    assert_int_equal(gw_audit_write(a, NULL, 0, &rec, 1, note, &told_x, &hx), 0);
    for (int i = 0; i < 2; i++) {
        told_destroy.n = 0;
        assert_int_equal(gw_audit_write(a, &st, 1, &rec, 1, note, &told_destroy, &hd), 0);
        if (i == 0)
            assert_int_equal(gw_audit_write(a, NULL, 0, &rec, 1, note, &told_y, &hy), 0);
        assert_int_equal(a->nqueued, 3);
        res.nresults = in_flight(a);
        res.failed_stmt = hd->first_stmt; /* the destruction's own statement */
        res.sqlstate = states[i];
        res.errmsg = "the destruction gave way";
        done_cb(a, GW_EINTERNAL, &res);
        assert_int_equal(told_destroy.n, 1);
        assert_int_equal(told_destroy.err, GW_EINTERNAL);
        assert_int_equal(told_x.n, 0);
        assert_int_equal(told_y.n, 0);
        assert_int_equal(a->nqueued, 2);
        assert_ptr_equal(TAILQ_FIRST(&a->queue), hx);
        assert_ptr_equal(TAILQ_NEXT(hx, link), hy);
        assert_true(hx->queued && hy->queued);
        assert_true(TAILQ_EMPTY(&a->batch));
        assert_true(TAILQ_EMPTY(&a->failed));
    }
    gw_audit_free(a);
    gw_db_free(db);
    event_base_free(base);
}

static struct told told_k, told_other;

static int count_left(void *arg, const struct gw_audit_left *e)
{
    (void)e;
    ++*(int *)arg;
    return 0;
}

/* gw_audit_holds: a kept entry queued or in flight is held (the leftover visits it); one that
 * failed and whose failure is still to be told when the writer halts is not: the halt stops its
 * telling and the leftover skips it, so its owner must spool what it stood for (refusals.c). */
static void test_holds_what_the_leftover_visits(void **state)
{
    struct event_base *base = event_base_new();
    struct gw_audit *a;
    struct gw_audit_rec r = {.actor = "t", .action = "x.y", .outcome = "ok", .count = -1};
    struct gw_db *db;
    int visited = 0;

    (void)state;
    assert_non_null(base);
    a = writer(base, &db, "t-holds");
    a->ready = false; /* queued, not sent */
    assert_int_equal(gw_audit_write_kept(a, NULL, 0, &r, 1, note, &told_k), 0);
    assert_true(gw_audit_holds(a, note, &told_k));
    assert_false(gw_audit_holds(a, note, &told_other));
    assert_false(gw_audit_holds(NULL, note, &told_k));
    in_flight(a);
    assert_true(gw_audit_holds(a, note, &told_k));
    fail_batch_later(a, GW_EINTERNAL); /* failed for good, its callback to run from the loop */
    assert_false(gw_audit_holds(a, note, &told_k));
    gw_audit_halt(a);
    event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
    assert_int_equal(told_k.n, 0); /* never told */
    assert_int_equal(gw_audit_leftover(a, count_left, &visited), 0);
    assert_int_equal(visited, 0); /* nor visited */
    gw_audit_free(a);
    gw_db_free(db);
    event_base_free(base);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rebind_from_another_entrys_failure),
        cmocka_unit_test(test_a_destructions_lock_failure_fails_it_alone),
        cmocka_unit_test(test_holds_what_the_leftover_visits),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
