/* test_waybillno.c: waybill-number grammar, normalisation and segment membership
 * (waybillno.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "waybillno.h"

static int parse(const char *s, char *pfx, int64_t *num)
{
    return gw_waybillno_parse(s, strlen(s), pfx, num);
}

static void test_parse(void **state)
{
    (void)state;
    char pfx[GW_WAYBILLNO_PREFIX_MAX + 1];
    int64_t num = -1;
    size_t nd = 0;
    enum gw_rule rule = GW_RULE_NONE;

    assert_int_equal(parse("WG1000000042", pfx, &num), 0);
    assert_string_equal(pfx, "WG");
    assert_int_equal(num, 1000000042);
    assert_int_equal(parse("1234567890", pfx, &num), 0);
    assert_string_equal(pfx, "");
    assert_int_equal(num, 1234567890);
    assert_int_equal(parse("ABCDEF0000000001", pfx, &num), 0);
    assert_string_equal(pfx, "ABCDEF");
    assert_int_equal(num, 1);
    /* 18 digits: the largest numeric part */
    assert_int_equal(parse("XY999999999999999999", pfx, &num), 0);
    assert_int_equal(num, 999999999999999999LL);
    assert_int_equal(gw_waybillno_parse_ex("SF0000000123", 12, pfx, &num, &nd, &rule), 0);
    assert_int_equal(nd, 10);
    assert_int_equal(num, 123);
}

static void test_lengths(void **state)
{
    (void)state;
    enum gw_rule rule = GW_RULE_NONE;
    assert_int_equal(gw_waybillno_parse_ex("WG12345678", 9, NULL, NULL, NULL, &rule), GW_EINVAL);
    assert_string_equal(gw_rule_str(rule), "must be 10 to 20 ASCII letters and digits");
    assert_int_equal(parse("WG12345678", NULL, NULL), 0);                    /* 10 */
    assert_int_equal(parse("WG123456789012345678", NULL, NULL), 0);          /* 20 */
    assert_int_equal(parse("WG1234567890123456789", NULL, NULL), GW_EINVAL); /* 21 */
    assert_int_equal(parse("123456789", NULL, NULL), GW_EINVAL);             /* 9 */
    assert_int_equal(parse("", NULL, NULL), GW_EINVAL);
    assert_int_equal(gw_waybillno_parse(NULL, 0, NULL, NULL), GW_EINVAL);
    /* 19 digits without a prefix: numeric part too long for int64 */
    assert_int_equal(gw_waybillno_parse_ex("1234567890123456789", 19, NULL, NULL, NULL, &rule),
                     GW_EINVAL);
    assert_string_equal(gw_rule_str(rule), "numeric part must be 1 to 18 digits");
    assert_int_equal(parse("A1234567890123456789", NULL, NULL), GW_EINVAL);
}

static void test_shape(void **state)
{
    (void)state;
    enum gw_rule rule = GW_RULE_NONE;
    char pfx[GW_WAYBILLNO_PREFIX_MAX + 1];
    int64_t num;

    /* lower case is normalised, not refused */
    assert_int_equal(parse("wg1000000042", pfx, &num), 0);
    assert_string_equal(pfx, "WG");
    char norm[GW_WAYBILLNO_MAX + 1];
    size_t len;
    assert_int_equal(gw_waybillno_normalize("sF1000000042", 12, norm, &len, NULL), 0);
    assert_string_equal(norm, "SF1000000042");
    assert_int_equal(len, 12);
    assert_int_equal(gw_waybillno_normalize("SF-100000004", 12, norm, &len, &rule), GW_EINVAL);
    assert_int_equal(rule, GW_RULE_WAYBILLNO_CHARS);

    assert_int_equal(gw_waybillno_parse_ex("WG10000000A2", 12, NULL, NULL, NULL, &rule), GW_EINVAL);
    assert_string_equal(gw_rule_str(rule),
                        "letters are allowed only as a prefix before the digits");
    assert_int_equal(gw_waybillno_parse_ex("ABCDEFG123456", 13, NULL, NULL, NULL, &rule),
                     GW_EINVAL);
    assert_string_equal(gw_rule_str(rule), "letter prefix must be at most 6 letters");
    assert_int_equal(gw_waybillno_parse_ex("ABCDEFGHIJ", 10, NULL, NULL, NULL, &rule), GW_EINVAL);
    assert_int_equal(parse("WG-100000042", NULL, NULL), GW_EINVAL);
    assert_int_equal(parse("WG 100000042", NULL, NULL), GW_EINVAL);
    assert_int_equal(parse("WG10000004\xc3\xa9", NULL, NULL), GW_EINVAL);
    assert_int_equal(gw_waybillno_parse("WG100000\0004", 11, NULL, NULL), GW_EINVAL);
}

static const struct gw_segment segs[] = {
    {"a", "WG", 1000000000, 1000999999},
    {"b", "WG", 2000000000, 2000999999},
    {"a", "", 5000000000LL, 5000000099LL},
};

static void test_segment_find(void **state)
{
    (void)state;
    size_t n = sizeof segs / sizeof segs[0];
    assert_true(gw_segment_find(segs, n, "a", "WG", 1000000000));
    assert_true(gw_segment_find(segs, n, "a", "WG", 1000999999));
    assert_false(gw_segment_find(segs, n, "a", "WG", 999999999));
    assert_false(gw_segment_find(segs, n, "a", "WG", 1001000000));
    /* another branch's segment */
    assert_false(gw_segment_find(segs, n, "a", "WG", 2000000000));
    assert_true(gw_segment_find(segs, n, "b", "WG", 2000000000));
    /* prefix must match exactly */
    assert_false(gw_segment_find(segs, n, "a", "WX", 1000000001));
    assert_false(gw_segment_find(segs, n, "a", "", 1000000001));
    assert_true(gw_segment_find(segs, n, "a", "", 5000000099LL));
    assert_false(gw_segment_find(segs, n, "a", "", 5000000100LL));
    assert_false(gw_segment_find(segs, n, "", "WG", 1000000000));
    assert_false(gw_segment_find(segs, n, NULL, "WG", 1000000000));
    assert_false(gw_segment_find(NULL, 0, "a", "WG", 1000000000));

    /* end to end: parse then find */
    char pfx[GW_WAYBILLNO_PREFIX_MAX + 1];
    int64_t num;
    assert_int_equal(parse("wg1000999999", pfx, &num), 0);
    assert_true(gw_segment_find(segs, n, "a", pfx, num));
    assert_int_equal(parse("WG0001000999999", pfx, &num), 0);
    assert_true(gw_segment_find(segs, n, "a", pfx, num));
}

static void test_overlaps(void **state)
{
    (void)state;
    struct gw_segment x = {"a", "WG", 10, 20}, y = {"b", "WG", 20, 30}, z = {"b", "WG", 21, 30},
                      w = {"b", "SF", 10, 20};
    assert_true(gw_segment_overlaps(&x, &y));
    assert_true(gw_segment_overlaps(&y, &x));
    assert_false(gw_segment_overlaps(&x, &z));
    assert_false(gw_segment_overlaps(&x, &w));
    assert_true(gw_segment_overlaps(&x, &x));
}

static void test_text_form(void **state)
{
    (void)state;
    char pfx[GW_WAYBILLNO_PREFIX_MAX + 1];
    int64_t f, t;
    enum gw_rule rule = GW_RULE_NONE;
    char buf[64];

#define P(s) gw_segment_parse_text(s, strlen(s), pfx, &f, &t, &rule)
    assert_int_equal(P("WG:1000000000-1000999999"), 0);
    assert_string_equal(pfx, "WG");
    assert_int_equal(f, 1000000000);
    assert_int_equal(t, 1000999999);
    assert_int_equal(P("wg:1-1"), 0);
    assert_string_equal(pfx, "WG");
    assert_int_equal(P(":5-999999999999999999"), 0);
    assert_string_equal(pfx, "");
    assert_int_equal(t, 999999999999999999LL);
    assert_int_equal(P("WG:10-9"), GW_EINVAL);
    assert_string_equal(gw_rule_str(rule), "segment start must not exceed its end");
    assert_int_equal(P("WG1000-2000"), GW_EINVAL);
    assert_int_equal(P("WG:1000"), GW_EINVAL);
    assert_int_equal(P("WG:-2000"), GW_EINVAL);
    assert_int_equal(P("WG:1000-"), GW_EINVAL);
    assert_int_equal(P("WG:1000-2000x"), GW_EINVAL);
    assert_int_equal(P("WG:1000-1000000000000000000"), GW_EINVAL);
    assert_int_equal(P("W1:1000-2000"), GW_EINVAL);
    assert_int_equal(P("ABCDEFG:1-2"), GW_EINVAL);
    assert_int_equal(P(" WG:1-2"), GW_EINVAL);
    assert_int_equal(P("WG:+1-2"), GW_EINVAL);
#undef P
    assert_int_equal(gw_segment_format("WG", 1000000000, 1000999999, buf, sizeof buf), 0);
    assert_string_equal(buf, "WG:1000000000-1000999999");
    assert_int_equal(gw_segment_format("", 5, 9, buf, sizeof buf), 0);
    assert_string_equal(buf, ":5-9");
    assert_int_equal(gw_segment_format("WG", 9, 5, buf, sizeof buf), GW_EINVAL);
    assert_int_equal(gw_segment_format("wg", 5, 9, buf, sizeof buf), GW_EINVAL);
    assert_int_equal(gw_segment_format("WG", 5, 9, buf, 6), GW_ETOOBIG);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse),    cmocka_unit_test(test_lengths),
        cmocka_unit_test(test_shape),    cmocka_unit_test(test_segment_find),
        cmocka_unit_test(test_overlaps), cmocka_unit_test(test_text_form),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
