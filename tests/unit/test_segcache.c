/* test_segcache.c: the segment cache (segcache.h) over a test source that hands it segments when
 * the test says so and a clock the test moves: hit, miss, one shared reload, the reload
 * interval, segment bounds, adjacent and overlapping segments, another branch's segment, load
 * errors and cancel. No database. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "segcache.h"

#define REFRESH_MS 1000 /* the cache's refresh interval in these tests */
#include "store.h"

struct fx {
    struct gw_segcache *c;
    int loads, cancels;
    int load_err; /* what the next load returns */
    uint64_t now;
    char token; /* the handle of a load in flight */
};

struct answer {
    int calls;
    int err;
    bool found;
};

static int src_load(void *ctx, struct gw_segcache *c, void **handle)
{
    struct fx *f = ctx;

    (void)c;
    f->loads++;
    *handle = &f->token;
    return f->load_err;
}

static void src_cancel(void *handle)
{
    struct fx *f = (struct fx *)((char *)handle - offsetof(struct fx, token));

    f->cancels++;
}

static uint64_t src_now(void *ctx)
{
    return ((struct fx *)ctx)->now;
}

static void answer_cb(void *arg, int err, bool found)
{
    struct answer *a = arg;

    a->calls++;
    a->err = err;
    a->found = found;
}

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    struct gw_segcache_source src = {src_load, src_cancel, src_now, NULL};

    if (f == NULL)
        return -1;
    src.ctx = f;
    f->now = 5000;
    f->c = gw_segcache_new_source(&src, REFRESH_MS);
    *state = f;
    return f->c != NULL ? 0 : -1;
}

static int teardown(void **state)
{
    struct fx *f = *state;

    gw_segcache_free(f->c);
    free(f);
    return 0;
}

static const struct gw_store_segment SEGS[] = {
    {"a", "WG", 1000, 1999}, {"a", "WG", 2000, 2999}, /* adjacent to the first */
    {"a", "", 500, 900},     {"a", "", 800, 1200},    /* overlaps the previous one */
    {"b", "WG", 5000, 5999},
};
#define NSEGS (sizeof(SEGS) / sizeof(SEGS[0]))

static int check(struct fx *f, const char *branch, const char *prefix, int64_t n, struct answer *a)
{
    return gw_segcache_check(f->c, branch, prefix, n, answer_cb, a, NULL);
}

/* Loads SEGS through the first miss. */
static void load_all(struct fx *f)
{
    struct answer a = {0};

    assert_int_equal(check(f, "a", "WG", 1000, &a), GW_OK_PENDING);
    gw_segcache_loaded(f->c, 0, SEGS, NSEGS);
    assert_int_equal(a.calls, 1);
    assert_int_equal(a.err, 0);
    assert_true(a.found);
}

static void test_miss_loads_once_for_every_waiting_check(void **state)
{
    struct fx *f = *state;
    struct answer in = {0}, out = {0}, other = {0};

    assert_int_equal(check(f, "a", "WG", 1500, &in), GW_OK_PENDING);
    assert_int_equal(check(f, "a", "WG", 7777, &out), GW_OK_PENDING);
    assert_int_equal(check(f, "b", "WG", 1500, &other), GW_OK_PENDING);
    assert_int_equal(f->loads, 1);                           /* one load, shared */
    assert_int_equal(in.calls + out.calls + other.calls, 0); /* nothing answered yet */

    gw_segcache_loaded(f->c, 0, SEGS, NSEGS);
    assert_int_equal(in.calls, 1);
    assert_true(in.found);
    assert_int_equal(out.calls, 1);
    assert_false(out.found);
    assert_int_equal(other.calls, 1);
    assert_false(other.found); /* branch a's number, asked for branch b */
}

static void test_hit_answers_at_once(void **state)
{
    struct fx *f = *state;
    struct answer a = {0};

    load_all(f);
    assert_int_equal(check(f, "a", "WG", 1999, &a), 1);
    assert_int_equal(check(f, "b", "WG", 5000, &a), 1);
    assert_int_equal(check(f, "a", "", 700, &a), 1);
    assert_int_equal(a.calls, 0);
    assert_int_equal(f->loads, 1);
}

static void test_bounds_adjacent_and_overlapping(void **state)
{
    struct fx *f = *state;
    struct answer a = {0};

    load_all(f);
    /* bounds are inclusive; the two adjacent WG segments leave no gap */
    assert_int_equal(check(f, "a", "WG", 1000, &a), 1);
    assert_int_equal(check(f, "a", "WG", 1999, &a), 1);
    assert_int_equal(check(f, "a", "WG", 2000, &a), 1);
    assert_int_equal(check(f, "a", "WG", 2999, &a), 1);
    assert_int_equal(check(f, "a", "WG", 999, &a), 0);
    assert_int_equal(check(f, "a", "WG", 3000, &a), 0);
    /* overlapping segments (no prefix): their union */
    assert_int_equal(check(f, "a", "", 500, &a), 1);
    assert_int_equal(check(f, "a", "", 850, &a), 1);
    assert_int_equal(check(f, "a", "", 1200, &a), 1);
    assert_int_equal(check(f, "a", "", 499, &a), 0);
    assert_int_equal(check(f, "a", "", 1201, &a), 0);
    /* the prefix is part of the segment */
    assert_int_equal(check(f, "a", "", 1500, &a), 0);
    assert_int_equal(check(f, "a", "XY", 1500, &a), 0);
    assert_int_equal(a.calls, 0);
    assert_int_equal(f->loads, 1); /* misses within the reload interval do not reload */
}

static void test_other_branch_never_matches(void **state)
{
    struct fx *f = *state;
    struct answer a = {0};

    load_all(f);
    assert_int_equal(check(f, "b", "WG", 1500, &a), 0);
    assert_int_equal(check(f, "a", "WG", 5500, &a), 0);
    assert_int_equal(check(f, "c", "WG", 1500, &a), 0);
    assert_int_equal(check(f, "", "WG", 1500, &a), 0);
    assert_int_equal(a.calls, 0);
}

/* A segment issued while the gateway runs is seen at its first use after the reload interval. */
static void test_reload_after_interval_sees_new_segment(void **state)
{
    struct fx *f = *state;
    struct gw_store_segment more[NSEGS + 1];
    struct answer a = {0};

    load_all(f);
    f->now += REFRESH_MS - 1;
    assert_int_equal(check(f, "a", "WG", 8000, &a), 0);
    assert_int_equal(f->loads, 1);

    f->now += 1;
    assert_int_equal(check(f, "a", "WG", 8000, &a), GW_OK_PENDING);
    assert_int_equal(f->loads, 2);
    memcpy(more, SEGS, sizeof(SEGS));
    more[NSEGS] = (struct gw_store_segment){"a", "WG", 8000, 8999};
    gw_segcache_loaded(f->c, 0, more, NSEGS + 1);
    assert_int_equal(a.calls, 1);
    assert_true(a.found);
    assert_int_equal(check(f, "a", "WG", 8999, &a), 1);

    /* a reload replaces the whole register: a segment gone is gone */
    f->now += REFRESH_MS;
    assert_int_equal(check(f, "a", "WG", 9000, &a), GW_OK_PENDING);
    gw_segcache_loaded(f->c, 0, SEGS, 1);
    assert_int_equal(check(f, "a", "WG", 2500, &a), 0);
    assert_int_equal(check(f, "a", "WG", 1500, &a), 1);
}

static void test_load_errors(void **state)
{
    struct fx *f = *state;
    struct answer a = {0}, b = {0};

    f->load_err = GW_EUNAVAIL; /* the load cannot start: the check fails, no callback */
    assert_int_equal(check(f, "a", "WG", 1500, &a), GW_EUNAVAIL);
    assert_int_equal(a.calls, 0);

    f->load_err = 0; /* the load fails later: every waiting check hears it */
    assert_int_equal(check(f, "a", "WG", 1500, &a), GW_OK_PENDING);
    assert_int_equal(check(f, "a", "WG", 1600, &b), GW_OK_PENDING);
    gw_segcache_loaded(f->c, GW_EUNAVAIL, NULL, 0);
    assert_int_equal(a.calls, 1);
    assert_int_equal(a.err, GW_EUNAVAIL);
    assert_false(a.found);
    assert_int_equal(b.calls, 1);
    assert_int_equal(b.err, GW_EUNAVAIL);

    /* a failed load is not a load: the next miss tries again at once */
    assert_int_equal(check(f, "a", "WG", 1500, &a), GW_OK_PENDING);
    assert_int_equal(f->loads, 3);
}

static void test_cancel(void **state)
{
    struct fx *f = *state;
    struct answer a = {0}, b = {0};
    struct gw_segcache_req *ra = NULL;

    assert_int_equal(gw_segcache_check(f->c, "a", "WG", 1500, answer_cb, &a, &ra), GW_OK_PENDING);
    assert_int_equal(check(f, "a", "WG", 1600, &b), GW_OK_PENDING);
    assert_non_null(ra);
    gw_segcache_cancel(ra);
    gw_segcache_loaded(f->c, 0, SEGS, NSEGS);
    assert_int_equal(a.calls, 0); /* cancelled: never called */
    assert_int_equal(b.calls, 1);

    /* freeing the cache with a load in flight cancels the load; no callback */
    f->now += REFRESH_MS;
    assert_int_equal(check(f, "a", "WG", 9999, &a), GW_OK_PENDING);
    gw_segcache_free(f->c);
    f->c = NULL;
    assert_int_equal(f->cancels, 1);
    assert_int_equal(a.calls, 0);
}

/* Issue 10, finding 1: a waiter's callback finishes its call, which cancels another waiter of
 * the same load (its stream closed meanwhile). Whichever runs first cancels the others: they are
 * never called back and never touched after the cancel freed them (the ASan build proves it). */
struct pair {
    struct answer a;
    struct gw_segcache_req *others[2];
};

static void cancelling_cb(void *arg, int err, bool found)
{
    struct pair *p = arg;

    answer_cb(&p->a, err, found);
    for (int i = 0; i < 2; i++)
        gw_segcache_cancel(p->others[i]);
}

static void test_cancel_from_another_waiters_callback(void **state)
{
    struct fx *f = *state;
    struct pair p[3];
    struct gw_segcache_req *h[3];

    memset(p, 0, sizeof(p));
    for (int i = 0; i < 3; i++)
        assert_int_equal(gw_segcache_check(f->c, "a", "WG", 1500 + i, cancelling_cb, &p[i], &h[i]),
                         GW_OK_PENDING);
    for (int i = 0; i < 3; i++) {
        p[i].others[0] = h[(i + 1) % 3];
        p[i].others[1] = h[(i + 2) % 3];
    }
    gw_segcache_loaded(f->c, 0, SEGS, NSEGS);
    assert_int_equal(p[0].a.calls + p[1].a.calls + p[2].a.calls, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_miss_loads_once_for_every_waiting_check, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_hit_answers_at_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bounds_adjacent_and_overlapping, setup, teardown),
        cmocka_unit_test_setup_teardown(test_other_branch_never_matches, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reload_after_interval_sees_new_segment, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_load_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel_from_another_waiters_callback, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
