/* test_certlimit.c: connections per client certificate (certlimit.h): a certificate is counted
 * up to its limit and refused beyond, one certificate never spends another's count, a released
 * connection lets one more in, and an entry lives exactly while its count is above zero. Its
 * budget of request memory is one for all its connections, none for another certificate, and
 * what it held is still counted in the peak once it is gone; likewise its response memory (one
 * h2 pool for all its connections, made and freed with its entry). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <string.h>

#include <event2/event.h>

#include "budget.h"
#include "certlimit.h"
#include "h2.h"

static void fpr_of(uint8_t fpr[GW_PEER_FPR_LEN], uint8_t tag)
{
    memset(fpr, 0xa5, GW_PEER_FPR_LEN);
    fpr[GW_PEER_FPR_LEN - 1] = tag; /* the same first bytes: the same chain, told apart */
}

static void test_limit_per_certificate(void **state)
{
    struct gw_certlimit *cl = gw_certlimit_new(3, 0, 0, NULL);
    uint8_t a[GW_PEER_FPR_LEN], b[GW_PEER_FPR_LEN];

    (void)state;
    assert_non_null(cl);
    fpr_of(a, 1);
    fpr_of(b, 2);
    assert_int_equal(gw_certlimit_max(cl), 3);
    for (int i = 0; i < 3; i++)
        assert_int_equal(gw_certlimit_take(cl, a), GW_CERTLIMIT_OK);
    assert_int_equal(gw_certlimit_take(cl, a), GW_CERTLIMIT_FULL);
    assert_int_equal(gw_certlimit_count(cl, a), 3); /* the refusal was not counted */
    /* another certificate is not affected */
    assert_int_equal(gw_certlimit_take(cl, b), GW_CERTLIMIT_OK);
    assert_int_equal(gw_certlimit_count(cl, b), 1);
    assert_int_equal(gw_certlimit_entries(cl), 2);
    /* one closed lets one more in, and only one */
    gw_certlimit_release(cl, a);
    assert_int_equal(gw_certlimit_take(cl, a), GW_CERTLIMIT_OK);
    assert_int_equal(gw_certlimit_take(cl, a), GW_CERTLIMIT_FULL);
    gw_certlimit_free(cl); /* with entries left: no leak (ASan) */
}

static void test_entry_lives_while_counted(void **state)
{
    struct gw_certlimit *cl = gw_certlimit_new(2, 0, 0, NULL);
    uint8_t fpr[64][GW_PEER_FPR_LEN];

    (void)state;
    for (int i = 0; i < 64; i++) {
        fpr_of(fpr[i], (uint8_t)i);
        fpr[i][0] = (uint8_t)(i * 37); /* spread over chains too */
        assert_int_equal(gw_certlimit_take(cl, fpr[i]), GW_CERTLIMIT_OK);
        assert_int_equal(gw_certlimit_take(cl, fpr[i]), GW_CERTLIMIT_OK);
    }
    assert_int_equal(gw_certlimit_entries(cl), 64);
    for (int i = 0; i < 64; i++) {
        gw_certlimit_release(cl, fpr[i]);
        assert_int_equal(gw_certlimit_count(cl, fpr[i]), 1);
    }
    assert_int_equal(gw_certlimit_entries(cl), 64);
    for (int i = 0; i < 64; i++) {
        gw_certlimit_release(cl, fpr[i]);
        assert_int_equal(gw_certlimit_count(cl, fpr[i]), 0);
        assert_int_equal(gw_certlimit_entries(cl), (size_t)(63 - i));
    }
    gw_certlimit_release(cl, fpr[0]); /* nothing counted: nothing happens */
    assert_int_equal(gw_certlimit_entries(cl), 0);
    assert_int_equal(gw_certlimit_take(cl, fpr[0]), GW_CERTLIMIT_OK);
    gw_certlimit_free(cl);
    gw_certlimit_free(NULL);
}

static void test_limit_zero_refuses(void **state)
{
    struct gw_certlimit *cl = gw_certlimit_new(0, 0, 0, NULL);
    uint8_t a[GW_PEER_FPR_LEN];

    (void)state;
    fpr_of(a, 9);
    assert_int_equal(gw_certlimit_take(cl, a), GW_CERTLIMIT_FULL);
    assert_int_equal(gw_certlimit_entries(cl), 0);
    gw_certlimit_free(cl);
}

static void test_request_memory_per_certificate(void **state)
{
    struct gw_certlimit *cl = gw_certlimit_new(4, 100, 0, NULL);
    uint8_t a[GW_PEER_FPR_LEN], b[GW_PEER_FPR_LEN];
    struct gw_budget *ma, *mb, conn1, conn2, global;
    size_t most, peak, limit;

    (void)state;
    fpr_of(a, 1);
    fpr_of(b, 2);
    assert_null(gw_certlimit_budget(cl, a)); /* nothing counted: no budget */
    assert_int_equal(gw_certlimit_take(cl, a), GW_CERTLIMIT_OK);
    ma = gw_certlimit_budget(cl, a);
    assert_int_equal(gw_certlimit_take(cl, a), GW_CERTLIMIT_OK);
    assert_ptr_equal(gw_certlimit_budget(cl, a), ma); /* one budget for both connections */
    assert_int_equal(gw_certlimit_take(cl, b), GW_CERTLIMIT_OK);
    mb = gw_certlimit_budget(cl, b);
    assert_non_null(ma);
    assert_non_null(mb);
    assert_ptr_not_equal(ma, mb);
    assert_int_equal(ma->limit, 100);

    /* a's two connections share its 100 bytes; b has its own */
    gw_budget_init(&conn1, 80);
    gw_budget_init(&conn2, 80);
    gw_budget_init(&global, 1000);
    {
        struct gw_budget *const l1[] = {&conn1, ma, &global}, *const l2[] = {&conn2, ma, &global};
        struct gw_budget *const lb[] = {&conn2, mb, &global};
        struct gw_budget *over = NULL;
        assert_int_equal(gw_budget_take_levels(l1, 3, 70, &over), 0);
        assert_int_equal(gw_budget_take_levels(l2, 3, 40, &over), GW_ETOOBIG);
        assert_ptr_equal(over, ma);
        assert_int_equal(gw_budget_take_levels(l2, 3, 30, &over), 0);
        assert_int_equal(gw_budget_take_levels(lb, 3, 50, &over), 0); /* another certificate */
        gw_certlimit_request_memory(cl, &most, &peak, &limit);
        assert_int_equal(most, 100);
        assert_int_equal(peak, 100);
        assert_int_equal(limit, 100);
        gw_budget_give_levels(l1, 3, 70);
        gw_budget_give_levels(l2, 3, 30);
        gw_budget_give_levels(lb, 3, 50);
    }
    /* its connections closed, their calls gone: the certificate's entry and budget go, its
     * peak stays counted */
    gw_certlimit_release(cl, a);
    gw_certlimit_release(cl, a);
    assert_null(gw_certlimit_budget(cl, a));
    gw_certlimit_request_memory(cl, &most, &peak, &limit);
    assert_int_equal(most, 0);
    assert_int_equal(peak, 100);
    assert_int_equal(gw_certlimit_take(cl, a), GW_CERTLIMIT_OK); /* a fresh, empty budget */
    assert_int_equal(gw_certlimit_budget(cl, a)->used, 0);
    gw_certlimit_free(cl);
}

static void test_response_memory_per_certificate(void **state)
{
    struct event_base *base = event_base_new();
    struct gw_certlimit *cl, *bare;
    uint8_t a[GW_PEER_FPR_LEN], b[GW_PEER_FPR_LEN];
    struct gw_h2_pool *pa, *pb;
    size_t used, peak, limit;

    (void)state;
    assert_non_null(base);
    cl = gw_certlimit_new(4, 0, 100, base);
    assert_non_null(cl);
    fpr_of(a, 1);
    fpr_of(b, 2);
    assert_null(gw_certlimit_response_pool(cl, a)); /* nothing counted: no pool */
    assert_int_equal(gw_certlimit_take(cl, a), GW_CERTLIMIT_OK);
    pa = gw_certlimit_response_pool(cl, a);
    assert_int_equal(gw_certlimit_take(cl, a), GW_CERTLIMIT_OK);
    assert_ptr_equal(gw_certlimit_response_pool(cl, a), pa); /* one pool for both connections */
    assert_int_equal(gw_certlimit_take(cl, b), GW_CERTLIMIT_OK);
    pb = gw_certlimit_response_pool(cl, b);
    assert_non_null(pa);
    assert_non_null(pb);
    assert_ptr_not_equal(pa, pb);
    gw_h2_pool_usage(pa, &used, &peak, &limit);
    assert_int_equal(used, 0);
    assert_int_equal(limit, 100);
    gw_certlimit_response_memory(cl, &used, &peak, &limit);
    assert_int_equal(used, 0);
    assert_int_equal(peak, 0);
    assert_int_equal(limit, 100);
    /* its last connection gone, its pool goes (AddressSanitizer would see it leak) */
    gw_certlimit_release(cl, a);
    assert_ptr_equal(gw_certlimit_response_pool(cl, a), pa);
    gw_certlimit_release(cl, a);
    assert_null(gw_certlimit_response_pool(cl, a));
    assert_int_equal(gw_certlimit_take(cl, a), GW_CERTLIMIT_OK); /* a fresh pool */
    assert_non_null(gw_certlimit_response_pool(cl, a));
    gw_certlimit_free(cl); /* frees the pools of the entries still counted */

    /* without a loop: counts only, no response pools */
    bare = gw_certlimit_new(4, 0, 100, NULL);
    assert_non_null(bare);
    assert_int_equal(gw_certlimit_take(bare, a), GW_CERTLIMIT_OK);
    assert_null(gw_certlimit_response_pool(bare, a));
    gw_certlimit_free(bare);
    event_base_free(base);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_limit_per_certificate),
        cmocka_unit_test(test_entry_lives_while_counted),
        cmocka_unit_test(test_limit_zero_refuses),
        cmocka_unit_test(test_request_memory_per_certificate),
        cmocka_unit_test(test_response_memory_per_certificate),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
