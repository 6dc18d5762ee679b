/* test_waybill.c: intake validation of a whole waybill (waybill.h): a valid waybill, every
 * missing key field, every rule with its path and rule text, and no value ever echoed in an
 * error. All people, numbers and addresses are synthetic. */
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "text.h"
#include "waybill.h"

#define NOW ((int64_t)1795766400) /* 2026-11-27T08:00:00Z */

#define S(lit) ((struct gw_str){(lit), sizeof(lit) - 1})
#define NONE ((struct gw_str){NULL, 0})

static struct gw_waybill valid(void)
{
    struct gw_waybill w = {0};
    w.waybill_no = S("WG1000000042");
    w.sender.name = S("测试甲");
    w.sender.phone = S("+86 138 0013 8000");
    w.sender.province = S("浙江省");
    w.sender.city = S("杭州市");
    w.sender.district = S("西湖区");
    w.sender.address_detail = S("测试路1号2幢301室");
    w.sender.company = S("测试科技有限公司");
    w.sender.id_type = GW_ID_RESIDENT_CARD;
    w.sender.id_number = S("330106199003071236"); /* synthetic, male */
    w.sender.gender = GW_GENDER_MALE;
    w.recipient.name = S("样例乙");
    w.recipient.phone = S("010-65521234");
    w.recipient.province = S("北京市");
    w.recipient.city = S("北京市");
    w.recipient.district = S("朝阳区");
    w.recipient.address_detail = S("样例街8号");
    w.item_description = S("书籍 2 本");
    w.pickup_time = NOW - 60;
    w.origin_branch = S("a");
    w.dest_region_code = S("110105");
    w.weight_grams = 1200;
    w.service_type = S("standard");
    w.security_level = GW_SECLEVEL_NONE;
    return w;
}

/* The refusal names path and, when given, the rule's wording: the message err.c writes for it
 * is exactly "<path>: <rule>". */
static void expect_fail(const struct gw_waybill *w, const char *path, const char *rule)
{
    struct gw_fault err;
    char msg[256], want[256];
    int rc = gw_waybill_validate(w, NOW, &err);
    if (rc != GW_EINVAL)
        fail_msg("expected %s to fail, rc=%d", path, rc);
    assert_int_equal(err.code, GW_EINVAL);
    assert_string_equal(err.field, path);
    assert_int_not_equal(err.rule, GW_RULE_NONE);
    if (rule) {
        gw_fault_format(&err, msg, sizeof msg);
        snprintf(want, sizeof want, "%s: %s", path, rule);
        assert_string_equal(msg, want);
    }
}

static void test_valid(void **state)
{
    (void)state;
    struct gw_waybill w = valid();
    struct gw_fault err;
    assert_int_equal(gw_waybill_validate(&w, NOW, &err), 0);
    assert_int_equal(err.code, 0);
    assert_string_equal(err.field, "");
    assert_int_equal(err.rule, GW_RULE_NONE);
    assert_int_equal(gw_waybill_validate(&w, NOW, NULL), 0);

    /* minimal: only key fields */
    struct gw_waybill m = valid();
    m.sender.district = NONE;
    m.sender.company = NONE;
    m.sender.gender = GW_GENDER_UNSPECIFIED;
    m.recipient.district = NONE;
    m.item_description = NONE;
    m.pickup_time = 0;
    m.origin_branch = NONE;
    m.dest_region_code = NONE;
    m.weight_grams = 0;
    m.service_type = NONE;
    assert_int_equal(gw_waybill_validate(&m, NOW, &err), 0);

    /* recipient with an ID, other ID types for the sender, legacy number */
    w.recipient.id_type = GW_ID_PASSPORT;
    w.recipient.id_number = S("E12345678");
    w.sender.id_number = S("330106900307123");
    w.security_level = GW_SECLEVEL_TOP_SECRET;
    w.pickup_time = NOW + GW_WAYBILL_CLOCK_SKEW;
    w.weight_grams = GW_WAYBILL_WEIGHT_MAX;
    assert_int_equal(gw_waybill_validate(&w, NOW, &err), 0);
}

static void test_missing_key_fields(void **state)
{
    (void)state;
    struct {
        const char *path;
        size_t off; /* offset of the gw_str in struct gw_waybill */
    } cases[] = {
        {"waybill.waybill_no", offsetof(struct gw_waybill, waybill_no)},
        {"waybill.sender.name", offsetof(struct gw_waybill, sender.name)},
        {"waybill.sender.phone", offsetof(struct gw_waybill, sender.phone)},
        {"waybill.sender.province", offsetof(struct gw_waybill, sender.province)},
        {"waybill.sender.city", offsetof(struct gw_waybill, sender.city)},
        {"waybill.sender.address_detail", offsetof(struct gw_waybill, sender.address_detail)},
        {"waybill.sender.id_number", offsetof(struct gw_waybill, sender.id_number)},
        {"waybill.recipient.name", offsetof(struct gw_waybill, recipient.name)},
        {"waybill.recipient.phone", offsetof(struct gw_waybill, recipient.phone)},
        {"waybill.recipient.province", offsetof(struct gw_waybill, recipient.province)},
        {"waybill.recipient.city", offsetof(struct gw_waybill, recipient.city)},
        {"waybill.recipient.address_detail", offsetof(struct gw_waybill, recipient.address_detail)},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct gw_waybill w = valid();
        struct gw_str *f = (struct gw_str *)((char *)&w + cases[i].off);
        *f = NONE;
        expect_fail(&w, cases[i].path, NULL);
        /* blank counts as missing */
        w = valid();
        f = (struct gw_str *)((char *)&w + cases[i].off);
        *f = S("   ");
        expect_fail(&w, cases[i].path, NULL);
    }
    struct gw_waybill w = valid();
    w.sender.name = NONE;
    expect_fail(&w, "waybill.sender.name", "is required (key field)");
    w = valid();
    w.sender.id_type = GW_ID_UNSPECIFIED;
    expect_fail(&w, "waybill.sender.id_type", "is required (real-name pickup)");
    w = valid();
    w.sender.id_number = NONE;
    expect_fail(&w, "waybill.sender.id_number", "is required (real-name pickup)");
}

static void test_rules(void **state)
{
    (void)state;
    struct gw_waybill w;

    w = valid();
    w.waybill_no = S("WG10000");
    expect_fail(&w, "waybill.waybill_no", "must be 10 to 20 ASCII letters and digits");
    w = valid();
    w.waybill_no = S("WG10000000A2");
    expect_fail(&w, "waybill.waybill_no", "letters are allowed only as a prefix before the digits");

    w = valid();
    w.sender.id_number = S("330106199003071237");
    expect_fail(&w, "waybill.sender.id_number",
                "check digit does not match (GB 11643 ISO 7064 MOD 11-2)");
    w = valid();
    w.sender.gender = GW_GENDER_FEMALE;
    expect_fail(&w, "waybill.sender.id_number", "gender digit does not match the stated gender");
    w = valid();
    w.sender.gender = (enum gw_gender)7;
    expect_fail(&w, "waybill.sender.gender", "unknown gender value");
    w = valid();
    w.sender.id_type = (enum gw_id_type)99;
    expect_fail(&w, "waybill.sender.id_type", "unknown ID type");
    w = valid();
    w.sender.id_type = GW_ID_HK_MACAO_PERMIT; /* number of another type */
    expect_fail(&w, "waybill.sender.id_number",
                "permit number must be H or M followed by 8 or 10 digits");

    w = valid();
    w.recipient.id_number = S("E12345678");
    expect_fail(&w, "waybill.recipient.id_type", "is required when an ID number is given");
    w = valid();
    w.recipient.id_type = GW_ID_PASSPORT;
    expect_fail(&w, "waybill.recipient.id_number", "is required when an ID type is given");
    w = valid();
    w.recipient.id_type = GW_ID_RESIDENT_CARD;
    w.recipient.id_number = S("330106209001011230");
    expect_fail(&w, "waybill.recipient.id_number", NULL);

    w = valid();
    w.sender.phone = S("12800138000");
    expect_fail(&w, "waybill.sender.phone", "mobile number must be 11 digits starting with 13-19");
    w = valid();
    w.recipient.phone = S("010-65521234-12");
    expect_fail(&w, "waybill.recipient.phone", NULL);

    w = valid();
    w.sender.name = S("测试\x01甲");
    expect_fail(&w, "waybill.sender.name", "must not contain control characters");
    w = valid();
    w.sender.name = S("测试\x7f");
    expect_fail(&w, "waybill.sender.name", "must not contain control characters");
    w = valid();
    w.recipient.address_detail = S("样例\xc2\x85街"); /* U+0085 NEL, a C1 control */
    expect_fail(&w, "waybill.recipient.address_detail", "must not contain control characters");
    w = valid();
    w.recipient.address_detail = S("样例\xe2\x80\xae街"); /* U+202E */
    expect_fail(&w, "waybill.recipient.address_detail", "must not contain control characters");
    w = valid();
    w.recipient.company = S("\xed\xa0\x80"); /* a surrogate */
    expect_fail(&w, "waybill.recipient.company", "is not valid UTF-8");
    w = valid();
    w.item_description = S("\xf4\x90\x80\x80"); /* > U+10FFFF */
    expect_fail(&w, "waybill.item_description", "is not valid UTF-8");
    w = valid();
    w.sender.district = S("\xc0\x80"); /* overlong NUL */
    expect_fail(&w, "waybill.sender.district", "is not valid UTF-8");
    w = valid();
    w.sender.address_detail = (struct gw_str){"测试路\0001号", 10};
    expect_fail(&w, "waybill.sender.address_detail", "must not contain control characters");

    w = valid();
    w.pickup_time = NOW + GW_WAYBILL_CLOCK_SKEW + 1;
    expect_fail(&w, "waybill.pickup_time",
                "is in the future (more than 5 minutes ahead of the gateway clock)");
    w = valid();
    w.pickup_time = 100;
    expect_fail(&w, "waybill.pickup_time", "is before 2000-01-01");
    w = valid();
    w.pickup_time = -5;
    expect_fail(&w, "waybill.pickup_time", NULL);

    w = valid();
    w.origin_branch = S("branch a");
    expect_fail(&w, "waybill.origin_branch", NULL);
    w = valid();
    w.dest_region_code = S("990105");
    expect_fail(&w, "waybill.dest_region_code",
                "must be a 6-digit administrative-division code with a valid province code");
    w = valid();
    w.dest_region_code = S("11010");
    expect_fail(&w, "waybill.dest_region_code", NULL);
    w = valid();
    w.dest_region_code = S("11010a");
    expect_fail(&w, "waybill.dest_region_code", NULL);
    w = valid();
    w.dest_region_code = S("830000"); /* 83 is valid for ID numbers, not a division code */
    expect_fail(&w, "waybill.dest_region_code", NULL);
    w = valid();
    w.weight_grams = GW_WAYBILL_WEIGHT_MAX + 1;
    expect_fail(&w, "waybill.weight_grams", "must be between 1 and 1000000 grams");
    w = valid();
    w.weight_grams = -1;
    expect_fail(&w, "waybill.weight_grams", NULL);
    w = valid();
    w.service_type = S("express\n");
    expect_fail(&w, "waybill.service_type", NULL);
    w = valid();
    w.security_level = 4;
    expect_fail(&w, "waybill.security_level", "unknown security level");
    w = valid();
    w.security_level = -1;
    expect_fail(&w, "waybill.security_level", NULL);
}

static void test_lengths(void **state)
{
    (void)state;
    static char big[600];
    memset(big, 'a', sizeof big);
    struct {
        const char *path;
        size_t off;
        size_t limit;
    } cases[] = {
        {"waybill.sender.name", offsetof(struct gw_waybill, sender.name), GW_LIMIT_NAME},
        {"waybill.sender.province", offsetof(struct gw_waybill, sender.province), 32},
        {"waybill.sender.city", offsetof(struct gw_waybill, sender.city), 32},
        {"waybill.sender.district", offsetof(struct gw_waybill, sender.district), 32},
        {"waybill.sender.address_detail", offsetof(struct gw_waybill, sender.address_detail), 256},
        {"waybill.sender.company", offsetof(struct gw_waybill, sender.company), 128},
        {"waybill.recipient.name", offsetof(struct gw_waybill, recipient.name), 64},
        {"waybill.item_description", offsetof(struct gw_waybill, item_description), 512},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct gw_waybill w = valid();
        struct gw_str *f = (struct gw_str *)((char *)&w + cases[i].off);
        *f = (struct gw_str){big, cases[i].limit};
        assert_int_equal(gw_waybill_validate(&w, NOW, NULL), 0);
        *f = (struct gw_str){big, cases[i].limit + 1};
        expect_fail(&w, cases[i].path, NULL);
        struct gw_fault err;
        assert_int_equal(gw_waybill_validate(&w, NOW, &err), GW_EINVAL);
        assert_int_equal(err.rule, GW_RULE_TOO_LONG);
        assert_int_equal(err.limit, cases[i].limit);
    }
    /* byte limit, not characters: 22 CJK characters = 66 bytes > 64 */
    struct gw_waybill w = valid();
    w.sender.name = S("测测测测测测测测测测测测测测测测测测测测测测");
    expect_fail(&w, "waybill.sender.name", "is too long (at most 64 bytes)");
}

static void test_no_value_in_error(void **state)
{
    (void)state;
    /* distinctive bad values: none may appear in the path or the rule */
    struct {
        size_t off;
        const char *val;
    } cases[] = {
        {offsetof(struct gw_waybill, waybill_no), "WG10000000Q2"},
        {offsetof(struct gw_waybill, sender.phone), "12800138000"},
        {offsetof(struct gw_waybill, sender.id_number), "330106199003071237"},
        {offsetof(struct gw_waybill, sender.name), "独特\x01名字"},
        {offsetof(struct gw_waybill, recipient.phone), "0571-870212"},
        {offsetof(struct gw_waybill, dest_region_code), "990105"},
        {offsetof(struct gw_waybill, origin_branch), "secret branch"},
        {offsetof(struct gw_waybill, service_type), "express!!"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct gw_waybill w = valid();
        struct gw_str *f = (struct gw_str *)((char *)&w + cases[i].off);
        *f = (struct gw_str){cases[i].val, strlen(cases[i].val)};
        struct gw_fault err;
        char msg[256];
        assert_int_equal(gw_waybill_validate(&w, NOW, &err), GW_EINVAL);
        gw_fault_format(&err, msg, sizeof msg);
        assert_null(strstr(msg, cases[i].val));
        /* nor any 4-byte window of it */
        size_t n = strlen(cases[i].val);
        for (size_t j = 0; j + 4 <= n; j++) {
            char win[5];
            memcpy(win, cases[i].val + j, 4);
            win[4] = 0;
            assert_null(strstr(msg + strlen(err.field), win)); /* the wording part */
        }
    }
}

static void test_root(void **state)
{
    (void)state;
    struct gw_waybill w = valid();
    struct gw_fault err;
    w.recipient.phone = NONE;
    assert_int_equal(gw_waybill_validate_at(&w, NOW, "waybills[3]", &err), GW_EINVAL);
    assert_string_equal(err.field, "waybills[3].recipient.phone");
    assert_int_equal(gw_waybill_validate(NULL, NOW, &err), GW_EINVAL);

    struct gw_party p = valid().sender;
    assert_int_equal(gw_party_validate(&p, true, NOW, "x", &err), 0);
    p.id_number = NONE;
    p.id_type = GW_ID_UNSPECIFIED;
    assert_int_equal(gw_party_validate(&p, true, NOW, "x", &err), GW_EINVAL);
    assert_string_equal(err.field, "x.id_type");
    assert_int_equal(gw_party_validate(&p, false, NOW, "x", &err), 0);
}

static void test_region_codes(void **state)
{
    (void)state;
    const char *ok[] = {"110000", "150102", "210102", "230102", "310101",
                        "370102", "410102", "460105", "500101", "540102",
                        "610102", "650102", "710000", "810000", "820000"};
    const char *bad[] = {"100000", "160000", "240000", "380000", "470000", "550000",  "660000",
                         "700000", "720000", "800000", "830000", "000000", "1101051", ""};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
        assert_true(gw_region_code_valid(ok[i], strlen(ok[i])));
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_false(gw_region_code_valid(bad[i], strlen(bad[i])));
}

/* gw_text_i64 writes what snprintf "%" PRId64 writes (the canonical numbers of sealed and
 * MAC'd columns), and nothing when the buffer is too small. */
static void test_text_i64(void **state)
{
    const int64_t vals[] = {0,          7,         -7,        10,        99,        -100,
                            1700000000, INT32_MAX, INT32_MIN, INT64_MAX, INT64_MIN, INT64_MIN + 1};
    char got[21], want[32];

    (void)state;
    for (size_t i = 0; i < sizeof(vals) / sizeof(vals[0]); i++) {
        snprintf(want, sizeof(want), "%" PRId64, vals[i]);
        assert_int_equal(gw_text_i64(vals[i], got, sizeof(got)), strlen(want));
        assert_string_equal(got, want);
    }
    /* every number of up to four digits, and each power of ten and its neighbours, both signs */
    for (int64_t v = -10000; v <= 10000; v++) {
        snprintf(want, sizeof(want), "%" PRId64, v);
        assert_int_equal(gw_text_i64(v, got, sizeof(got)), strlen(want));
        assert_string_equal(got, want);
    }
    for (int64_t p = 10; p <= INT64_MAX / 10; p *= 10)
        for (int64_t d = -1; d <= 1; d++)
            for (int sign = -1; sign <= 1; sign += 2) {
                snprintf(want, sizeof(want), "%" PRId64, sign * (p + d));
                assert_int_equal(gw_text_i64(sign * (p + d), got, sizeof(got)), strlen(want));
                assert_string_equal(got, want);
            }
    memset(got, 'x', sizeof(got));
    assert_int_equal(gw_text_i64(-2147483648LL, got, 11), 0); /* 11 characters need 12 bytes */
    assert_string_equal(got, "");
    assert_int_equal(gw_text_i64(-2147483648LL, got, 12), 11);
    assert_int_equal(gw_text_i64(5, got, 0), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid),
        cmocka_unit_test(test_text_i64),
        cmocka_unit_test(test_missing_key_fields),
        cmocka_unit_test(test_rules),
        cmocka_unit_test(test_lengths),
        cmocka_unit_test(test_no_value_in_error),
        cmocka_unit_test(test_root),
        cmocka_unit_test(test_region_codes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
