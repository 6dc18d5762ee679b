/* test_phone.c: mainland phone validation and normalisation (phone.h). Synthetic numbers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "phone.h"

static void ok_norm(const char *in, const char *want, enum gw_phone_kind want_kind)
{
    char out[GW_PHONE_NORM_MAX + 1];
    size_t len = 0;
    enum gw_phone_kind kind = 0;
    enum gw_rule rule = GW_RULE_NONE;
    int rc = gw_phone_parse(in, strlen(in), out, &len, &kind, &rule);
    if (rc != 0)
        fail_msg("refused [%s]: %s", in, gw_rule_str(rule));
    assert_string_equal(out, want);
    assert_int_equal(len, strlen(want));
    assert_int_equal(kind, want_kind);
}

static const char *bad(const char *in)
{
    enum gw_rule rule = GW_RULE_NONE;
    int rc = gw_phone_check(in, strlen(in), &rule);
    if (rc != GW_EINVAL)
        fail_msg("accepted [%s]", in);
    assert_int_not_equal(rule, GW_RULE_NONE);
    if (strlen(in) >= 4)
        assert_null(strstr(gw_rule_str(rule), in)); /* never echoes the value */
    return gw_rule_str(rule);
}

static void test_mobile(void **state)
{
    (void)state;
    ok_norm("13800138000", "13800138000", GW_PHONE_MOBILE);
    ok_norm("19912345678", "19912345678", GW_PHONE_MOBILE);
    ok_norm("138 0013 8000", "13800138000", GW_PHONE_MOBILE);
    ok_norm("138-0013-8000", "13800138000", GW_PHONE_MOBILE);
    ok_norm("+8613800138000", "13800138000", GW_PHONE_MOBILE);
    ok_norm("+86 138 0013 8000", "13800138000", GW_PHONE_MOBILE);
    ok_norm("+86-138-0013-8000", "13800138000", GW_PHONE_MOBILE);
    ok_norm("8613800138000", "13800138000", GW_PHONE_MOBILE);
    ok_norm("86 138 0013 8000", "13800138000", GW_PHONE_MOBILE);
    ok_norm("008613800138000", "13800138000", GW_PHONE_MOBILE);
    ok_norm("0086 138 0013 8000", "13800138000", GW_PHONE_MOBILE);
}

static void test_mobile_bad(void **state)
{
    (void)state;
    assert_string_equal(bad("12800138000"), "mobile number must be 11 digits starting with 13-19");
    bad("10800138000");
    bad("1380013800");   /* 10 digits */
    bad("138001380001"); /* 12 digits */
    bad("+1 415 555 0100");
    bad("+44 20 7946 0000");
    bad("");
    bad("138 0013 8000 ");
    bad(" 13800138000");
    bad("138  0013 8000");
    bad("138--0013-8000");
    bad("138.0013.8000");
    bad("(010)65521234");
    bad("13800138000\n");
    bad("１３８００１３８０００"); /* full-width digits */
    bad("+86");
    bad("+");
    bad("8612800138000");
    bad("123456789012345678901234567890123"); /* over 32 bytes */
}

static void test_landline(void **state)
{
    (void)state;
    ok_norm("010-65521234", "01065521234", GW_PHONE_LANDLINE);
    ok_norm("01065521234", "01065521234", GW_PHONE_LANDLINE);
    ok_norm("021 5552 1234", "02155521234", GW_PHONE_LANDLINE);
    ok_norm("0571-87021234", "057187021234", GW_PHONE_LANDLINE);
    ok_norm("0571-8702123", "05718702123", GW_PHONE_LANDLINE);
    ok_norm("010 6552123", "0106552123", GW_PHONE_LANDLINE);
    ok_norm("+86 10 6552 1234", "01065521234", GW_PHONE_LANDLINE);
    ok_norm("+86 571 8702 1234", "057187021234", GW_PHONE_LANDLINE);
    ok_norm("+86 0571 8702 1234", "057187021234", GW_PHONE_LANDLINE);
    ok_norm("0086 10 65521234", "01065521234", GW_PHONE_LANDLINE);
}

static void test_landline_bad(void **state)
{
    (void)state;
    bad("011-65521234");  /* 01x other than 010 */
    bad("010-05521234");  /* local number starting with 0 */
    bad("010-15521234");  /* local number starting with 1 */
    bad("010-655212");    /* 6-digit local */
    bad("010-655212345"); /* 9-digit local */
    bad("0571-870212");
    bad("0571-870212345");
    bad("000-12345678");
    bad("0");
    bad("010-65521234-123"); /* extension */
    bad("010-65521234#123");
    bad("65521234");   /* no area code */
    bad("4008001234"); /* 400 number */
    bad("95338");      /* service number */
}

static void test_normalize(void **state)
{
    (void)state;
    char out[GW_PHONE_NORM_MAX + 1];
    size_t len;
    assert_int_equal(gw_phone_normalize("+86 138 0013 8000", 17, out, sizeof out, &len), 0);
    assert_string_equal(out, "13800138000");
    assert_int_equal(gw_phone_normalize("+86 138 0013 8000", 17, out, 11, &len), GW_ETOOBIG);
    assert_int_equal(gw_phone_normalize("+86 138 0013 8000", 17, out, 12, &len), 0);
    assert_int_equal(gw_phone_normalize("x", 1, out, sizeof out, &len), GW_EINVAL);
    /* same line, different spellings -> same normalised value */
    const char *spellings[] = {"0571-87021234", "+86 571 8702 1234", "0086-571-8702-1234",
                               "057187021234", "+86 0571 87021234"};
    for (size_t i = 0; i < sizeof spellings / sizeof spellings[0]; i++) {
        assert_int_equal(
            gw_phone_normalize(spellings[i], strlen(spellings[i]), out, sizeof out, NULL), 0);
        assert_string_equal(out, "057187021234");
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mobile),    cmocka_unit_test(test_mobile_bad),
        cmocka_unit_test(test_landline),  cmocka_unit_test(test_landline_bad),
        cmocka_unit_test(test_normalize),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
