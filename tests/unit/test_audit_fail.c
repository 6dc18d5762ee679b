/* test_audit_fail.c: the audit writer's failure path (audit.c's fail_cb) when a failed entry's
 * callback rebinds another entry of its batch (gw_audit_rebind, as a call cancelled meanwhile
 * does). White-box: audit.c is compiled into this test, so that a batch of two entries can be
 * made to fail at once; no database (the pool is never started, so every send answers
 * GW_EUNAVAIL, as when every connection is down). */
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

/* A and B fail in one batch; A's callback rebinds B. B is then kept (it waits for the database,
 * its new callback not run yet, the old one never), and the next failed batch (C) is told: its
 * entry is on the writer's failed list, not lost to a list on fail_cb's frame. */
static void test_rebind_from_another_entrys_failure(void **state)
{
    struct event_base *base = event_base_new();
    struct gw_config cfg;
    uint8_t seed[GW_SIGN_SEED_LEN];
    struct gw_audit *a = NULL;
    struct gw_audit_req *ha = NULL, *hc = NULL;
    struct gw_audit_rec r = {.actor = "t", .action = "x.y", .outcome = "ok", .count = -1};
    struct gw_db *db;

    (void)state;
    assert_non_null(base);
    memset(&cfg, 0, sizeof cfg);
    cfg.db_conninfo = "host=/nonexistent";
    memset(seed, 7, sizeof seed);
    db = gw_db_new(base, &cfg);
    assert_non_null(db);
    struct gw_audit_config ac = {.chain = "t-rebind",
                                 .checkpoint_every = 1000,
                                 .checkpoint_ms = 100000,
                                 .alg = GW_SIGN_ED25519,
                                 .seed = seed};
    assert_int_equal(gw_audit_new(db, &ac, &a), 0);
    assert_int_equal(gw_audit_start(a), 0);
    /* as after a recovery that succeeded, before the pool lost every connection: A and B queue,
     * then go out as one batch, whose send fails */
    a->down = false;
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rebind_from_another_entrys_failure),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
