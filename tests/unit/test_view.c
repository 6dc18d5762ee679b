/* test_view.c: the built-in field views (deploy/policy.conf compiled in; deny by default) and
 * field rendering. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "crypto.h"
#include "policy.h"
#include "view.h"

static enum gw_view_mode gw_view_policy(const char *role, enum gw_col col)
{
    struct gw_policy *p = gw_policy_new(NULL, 0);
    enum gw_view_mode m;

    assert_non_null(p);
    m = gw_policy_view(p, role, col);
    gw_policy_free(p);
    return m;
}

static void courier_sees_masked_names_and_the_delivery_address(void **state)
{
    (void)state;
    assert_int_equal(gw_view_policy("courier", GW_COL_RECIPIENT_NAME), GW_VIEW_MASK);
    assert_int_equal(gw_view_policy("courier", GW_COL_RECIPIENT_PHONE), GW_VIEW_MASK);
    assert_int_equal(gw_view_policy("courier", GW_COL_RECIPIENT_ADDRESS_DETAIL), GW_VIEW_CLEAR);
    assert_int_equal(gw_view_policy("courier", GW_COL_SENDER_ADDRESS_DETAIL), GW_VIEW_MASK);
    assert_int_equal(gw_view_policy("courier", GW_COL_SENDER_ID_NUMBER), GW_VIEW_OMIT);
    assert_int_equal(gw_view_policy("courier", GW_COL_ITEM_DESCRIPTION), GW_VIEW_OMIT);
}

static void unknown_roles_see_nothing(void **state)
{
    int c;

    (void)state;
    for (c = 0; c < GW_COL_COUNT; c++) {
        assert_int_equal(gw_view_policy("nobody", (enum gw_col)c), GW_VIEW_OMIT);
        assert_int_equal(gw_view_policy(NULL, (enum gw_col)c), GW_VIEW_OMIT);
        assert_int_equal(gw_view_policy("compliance_auditor", (enum gw_col)c), GW_VIEW_OMIT);
    }
}

static void render_modes(void **state)
{
    static const uint8_t key[GW_CRYPTO_KEY_LEN] = {1, 2, 3};
    struct gw_crypto *cx = gw_crypto_new();
    const char *name = "\xe5\xbc\xa0\xe4\xb8\x89\xe4\xb8\xb0"; /* 张三丰 */
    char out[128], out2[128];
    size_t n;

    (void)state;
    assert_non_null(cx);
    assert_int_equal(gw_view_render(cx, GW_SUITE_AES, key, GW_COL_SENDER_NAME, GW_VIEW_MASK, name,
                                    strlen(name), out, sizeof(out), &n),
                     0);
    assert_string_equal(out, "\xe5\xbc\xa0**");
    assert_int_equal(gw_view_render(cx, GW_SUITE_AES, key, GW_COL_RECIPIENT_PHONE, GW_VIEW_MASK,
                                    "+86 13800138000", 15, out, sizeof(out), &n),
                     0);
    assert_string_equal(out, "1******8000");
    assert_int_equal(gw_view_render(cx, GW_SUITE_AES, key, GW_COL_SENDER_ADDRESS_DETAIL,
                                    GW_VIEW_MASK, "Room 201", 8, out, sizeof(out), &n),
                     0);
    assert_string_equal(out, "****");
    assert_int_equal(gw_view_render(cx, GW_SUITE_AES, key, GW_COL_SENDER_COMPANY, GW_VIEW_OMIT,
                                    "Acme", 4, out, sizeof(out), &n),
                     0);
    assert_string_equal(out, "");
    assert_int_equal(n, 0);
    assert_int_equal(gw_view_render(cx, GW_SUITE_AES, key, GW_COL_SENDER_COMPANY, GW_VIEW_CLEAR,
                                    "Acme", 4, out, sizeof(out), &n),
                     0);
    assert_string_equal(out, "Acme");
    /* tokens: deterministic, not the value, differ between values */
    assert_int_equal(gw_view_render(cx, GW_SUITE_AES, key, GW_COL_SENDER_PHONE, GW_VIEW_TOKEN,
                                    "13800138000", 11, out, sizeof(out), &n),
                     0);
    assert_int_equal(gw_view_render(cx, GW_SUITE_AES, key, GW_COL_SENDER_PHONE, GW_VIEW_TOKEN,
                                    "13800138000", 11, out2, sizeof(out2), &n),
                     0);
    assert_string_equal(out, out2);
    assert_null(strstr(out, "13800138000"));
    assert_int_equal(gw_view_render(cx, GW_SUITE_AES, key, GW_COL_SENDER_PHONE, GW_VIEW_TOKEN,
                                    "13800138001", 11, out2, sizeof(out2), &n),
                     0);
    assert_string_not_equal(out, out2);
    /* the sm suite's token of the same value under the same key bytes: another token (HMAC-SM3;
     * a suite switch changes tokens) */
    assert_int_equal(gw_view_render(cx, GW_SUITE_SM, key, GW_COL_SENDER_PHONE, GW_VIEW_TOKEN,
                                    "13800138000", 11, out2, sizeof(out2), &n),
                     0);
    assert_int_equal(strncmp(out2, "tok_", 4), 0);
    assert_string_not_equal(out, out2);
    /* a buffer too small is refused, not overrun */
    assert_int_equal(gw_view_render(cx, GW_SUITE_AES, key, GW_COL_SENDER_COMPANY, GW_VIEW_CLEAR,
                                    "Acme", 4, out, 4, &n),
                     GW_ETOOBIG);
    gw_crypto_free(cx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(courier_sees_masked_names_and_the_delivery_address),
        cmocka_unit_test(unknown_roles_see_nothing),
        cmocka_unit_test(render_modes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
