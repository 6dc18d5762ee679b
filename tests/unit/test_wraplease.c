/* test_wraplease.c: the in-memory accounting of data-key wraps leased under the current KEK
 * (wraplease.h): no wrap without a lease, the prefetch at half a block, the limit, a new KEK. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "wraplease.h"

static int wants;

static void want_cb(void *arg)
{
    (void)arg;
    wants++;
}

static void setup_lease(struct gw_wraplease *l, uint64_t block)
{
    wants = 0;
    gw_wraplease_init(l, block, want_cb, NULL);
    assert_true(gw_wraplease_reset(l, 1, 3));
}

/* Nothing is taken without a lease: UNAVAILABLE, and the lease is asked for once. */
static void test_no_lease_no_wrap(void **state)
{
    struct gw_wraplease l;
    (void)state;

    setup_lease(&l, 8);
    assert_int_equal(gw_wraplease_take(&l), GW_EUNAVAIL);
    assert_int_equal(gw_wraplease_take(&l), GW_EUNAVAIL);
    assert_int_equal(wants, 1);
    assert_int_equal(l.used, 0);
    /* no KEK: nothing asked */
    gw_wraplease_init(&l, 8, want_cb, NULL);
    wants = 0;
    assert_int_equal(gw_wraplease_take(&l), GW_EUNAVAIL);
    assert_int_equal(wants, 0);
}

/* A block of 8: the next is asked when 4 are left, the wraps held are used meanwhile, and never
 * more than were leased. */
static void test_prefetch_at_half(void **state)
{
    struct gw_wraplease l;
    (void)state;

    setup_lease(&l, 8);
    gw_wraplease_ask(&l);
    assert_int_equal(wants, 1);
    gw_wraplease_grant(&l, 1, 3, 8, 108);
    assert_int_equal(l.counted, 108);
    for (int i = 0; i < 4; i++)
        assert_int_equal(gw_wraplease_take(&l), 0);
    assert_int_equal(wants, 1);
    assert_int_equal(gw_wraplease_take(&l), 0); /* the fifth: past half, asks */
    assert_int_equal(wants, 2);
    for (int i = 0; i < 3; i++)
        assert_int_equal(gw_wraplease_take(&l), 0);
    assert_int_equal(l.used, 8);
    assert_int_equal(gw_wraplease_take(&l), GW_EUNAVAIL); /* the answer is late */
    assert_int_equal(wants, 2);
    gw_wraplease_grant(&l, 1, 3, 8, 116);
    assert_int_equal(gw_wraplease_take(&l), 0);
    assert_int_equal(l.used, 9);
    assert_true(l.used <= l.leased);
}

/* A short grant near the limit: asked again at once; the refusal ends the asking, what is held
 * is used, then FAILED_PRECONDITION. */
static void test_limit(void **state)
{
    struct gw_wraplease l;
    (void)state;

    setup_lease(&l, 8);
    gw_wraplease_ask(&l);
    gw_wraplease_grant(&l, 1, 3, 2, 10);
    assert_int_equal(gw_wraplease_take(&l), 0);
    assert_int_equal(wants, 2); /* 2 held is under half a block: the next is asked */
    gw_wraplease_refused(&l, 1, 3);
    assert_int_equal(gw_wraplease_take(&l), 0);
    assert_int_equal(gw_wraplease_take(&l), GW_EPRECOND);
    assert_int_equal(gw_wraplease_take(&l), GW_EPRECOND);
    assert_int_equal(wants, 2);
    assert_int_equal(l.used, 2);
}

/* A new KEK forgets the old one's lease and its limit; a late answer for the old is ignored. */
static void test_new_kek(void **state)
{
    struct gw_wraplease l;
    (void)state;

    setup_lease(&l, 8);
    gw_wraplease_ask(&l);
    gw_wraplease_refused(&l, 1, 3);
    assert_int_equal(gw_wraplease_take(&l), GW_EPRECOND);
    assert_false(gw_wraplease_reset(&l, 1, 3)); /* the same KEK: nothing forgotten */
    assert_true(l.at_limit);
    assert_true(gw_wraplease_reset(&l, 1, 4));
    assert_int_equal(gw_wraplease_take(&l), GW_EUNAVAIL);
    gw_wraplease_grant(&l, 1, 3, 8, 8); /* the old KEK's */
    assert_int_equal(l.leased, 0);
    assert_int_equal(gw_wraplease_take(&l), GW_EUNAVAIL);
    gw_wraplease_grant(&l, 1, 4, 8, 8);
    assert_int_equal(gw_wraplease_take(&l), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_no_lease_no_wrap),
        cmocka_unit_test(test_prefetch_at_half),
        cmocka_unit_test(test_limit),
        cmocka_unit_test(test_new_kek),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
