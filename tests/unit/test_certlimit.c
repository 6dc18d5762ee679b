/* test_certlimit.c: connections per client certificate (certlimit.h): a certificate is counted
 * up to its limit and refused beyond, one certificate never spends another's count, a released
 * connection lets one more in, and an entry lives exactly while its count is above zero. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <string.h>

#include "certlimit.h"

static void fpr_of(uint8_t fpr[GW_PEER_FPR_LEN], uint8_t tag)
{
    memset(fpr, 0xa5, GW_PEER_FPR_LEN);
    fpr[GW_PEER_FPR_LEN - 1] = tag; /* the same first bytes: the same chain, told apart */
}

static void test_limit_per_certificate(void **state)
{
    struct gw_certlimit *cl = gw_certlimit_new(3);
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
    struct gw_certlimit *cl = gw_certlimit_new(2);
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
    struct gw_certlimit *cl = gw_certlimit_new(0);
    uint8_t a[GW_PEER_FPR_LEN];

    (void)state;
    fpr_of(a, 9);
    assert_int_equal(gw_certlimit_take(cl, a), GW_CERTLIMIT_FULL);
    assert_int_equal(gw_certlimit_entries(cl), 0);
    gw_certlimit_free(cl);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_limit_per_certificate),
        cmocka_unit_test(test_entry_lives_while_counted),
        cmocka_unit_test(test_limit_zero_refuses),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
