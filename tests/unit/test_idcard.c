/* test_idcard.c: GB 11643 resident ID checks and the other document formats (idcard.h).
 * Every number here is synthetic except the standard's own published example
 * 11010519491231002X; check digits were computed with the MOD 11-2 algorithm. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "idcard.h"

#define NOW ((int64_t)1795766400) /* 2026-11-27T08:00:00Z */

static int res(const char *s, enum gw_gender g, enum gw_rule *rule)
{
    return gw_idcard_resident_check(s, strlen(s), NOW, g, NULL, rule);
}

static void test_check_char(void **state)
{
    (void)state;
    assert_int_equal(gw_idcard_check_char("11010519491231002"), 'X');
    assert_int_equal(gw_idcard_check_char("33010619900307123"), '6');
    assert_int_equal(gw_idcard_check_char("44030520000229001"), '0');
    assert_int_equal(gw_idcard_check_char("1101051949123100A"), 0);
}

static void test_valid(void **state)
{
    (void)state;
    enum gw_rule rule = GW_RULE_NONE;
    struct gw_idcard_info info;

    /* the standard's published example (female, born 1949-12-31) */
    assert_int_equal(gw_idcard_resident_check("11010519491231002X", 18, NOW, GW_GENDER_UNSPECIFIED,
                                              &info, &rule),
                     0);
    assert_int_equal(info.year, 1949);
    assert_int_equal(info.month, 12);
    assert_int_equal(info.day, 31);
    assert_int_equal(info.gender, GW_GENDER_FEMALE);
    assert_false(info.legacy15);
    /* lower-case x accepted */
    assert_int_equal(res("11010519491231002x", GW_GENDER_FEMALE, &rule), 0);
    /* synthetic: male 1990-03-07, female 1990-03-07, male on 2000-02-29 (leap) */
    assert_int_equal(res("330106199003071236", GW_GENDER_MALE, &rule), 0);
    assert_int_equal(res("330106199003071244", GW_GENDER_FEMALE, &rule), 0);
    assert_int_equal(res("440305200002290010", GW_GENDER_UNSPECIFIED, &rule), 0);
    /* 83: Taiwan residents' residence permit */
    assert_int_equal(res("830000199001010020", GW_GENDER_UNSPECIFIED, &rule), 0);
}

static void test_bad_check_digit(void **state)
{
    (void)state;
    enum gw_rule rule = GW_RULE_NONE;
    assert_int_equal(res("330106199003071237", 0, &rule), GW_EINVAL);
    assert_string_equal(gw_rule_str(rule),
                        "check digit does not match (GB 11643 ISO 7064 MOD 11-2)");
    assert_int_equal(res("110105194912310021", 0, &rule), GW_EINVAL);
    assert_string_equal(gw_rule_str(rule),
                        "check digit does not match (GB 11643 ISO 7064 MOD 11-2)");
    /* single transposition of two digits is caught */
    assert_int_equal(res("330106199030071236", 0, &rule), GW_EINVAL);
}

static void test_bad_shape(void **state)
{
    (void)state;
    enum gw_rule rule = GW_RULE_NONE;
    assert_int_equal(res("33010619900307123", 0, &rule), GW_EINVAL);   /* 17 */
    assert_int_equal(res("3301061990030712366", 0, &rule), GW_EINVAL); /* 19 */
    assert_int_equal(res("33010619900307123A", 0, &rule), GW_EINVAL);
    assert_string_equal(gw_rule_str(rule), "must be 17 digits followed by a digit or X");
    assert_int_equal(res("3301061990X3071236", 0, &rule), GW_EINVAL);
    assert_int_equal(res("", 0, &rule), GW_EINVAL);
    assert_int_equal(gw_idcard_resident_check(NULL, 0, NOW, 0, NULL, &rule), GW_EINVAL);
}

static void test_bad_date(void **state)
{
    (void)state;
    enum gw_rule rule = GW_RULE_NONE;
    char id[19];
    /* 1999-02-30 */
    memcpy(id, "33010619990230123", 17);
    id[17] = gw_idcard_check_char(id);
    id[18] = 0;
    assert_int_equal(res(id, 0, &rule), GW_EINVAL);
    assert_string_equal(gw_rule_str(rule), "birth date is not a real calendar date");
    /* 1900-02-29: 1900 is not a leap year */
    memcpy(id, "33010619000229123", 17);
    id[17] = gw_idcard_check_char(id);
    assert_int_equal(res(id, 0, &rule), GW_EINVAL);
    assert_string_equal(gw_rule_str(rule), "birth date is not a real calendar date");
    /* month 13, day 00 */
    memcpy(id, "33010619991301123", 17);
    id[17] = gw_idcard_check_char(id);
    assert_int_equal(res(id, 0, &rule), GW_EINVAL);
    memcpy(id, "33010619991200123", 17);
    id[17] = gw_idcard_check_char(id);
    assert_int_equal(res(id, 0, &rule), GW_EINVAL);
    /* before 1900 */
    assert_int_equal(res("330106189912310012", 0, &rule), GW_EINVAL);
    assert_string_equal(gw_rule_str(rule), "birth date is before 1900");
}

static void test_future_date(void **state)
{
    (void)state;
    enum gw_rule rule = GW_RULE_NONE;
    /* born 2026-11-27: fine from 2026-11-27 00:00 China Standard Time (16:00Z the day before) */
    assert_int_equal(gw_idcard_resident_check("330106202611270014", 18, 1795708800, 0, NULL, &rule),
                     0);
    assert_int_equal(gw_idcard_resident_check("330106202611270014", 18, 1795708799, 0, NULL, &rule),
                     GW_EINVAL);
    assert_string_equal(gw_rule_str(rule), "birth date is in the future");
    char id[19];
    memcpy(id, "33010620900101123", 17);
    id[17] = gw_idcard_check_char(id);
    id[18] = 0;
    assert_int_equal(res(id, 0, &rule), GW_EINVAL);
    assert_string_equal(gw_rule_str(rule), "birth date is in the future");
}

static void test_bad_region(void **state)
{
    (void)state;
    enum gw_rule rule = GW_RULE_NONE;
    const char *bad[] = {"00", "10", "16", "20", "24", "38", "47",
                         "55", "66", "70", "72", "80", "84", "99"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char id[19];
        memcpy(id, bad[i], 2);
        memcpy(id + 2, "010619900307123", 15);
        id[17] = gw_idcard_check_char(id);
        id[18] = 0;
        assert_int_equal(res(id, 0, &rule), GW_EINVAL);
        assert_string_equal(gw_rule_str(rule), "region code is not a valid province-level code");
    }
}

static void test_gender_mismatch(void **state)
{
    (void)state;
    enum gw_rule rule = GW_RULE_NONE;
    assert_int_equal(res("330106199003071236", GW_GENDER_FEMALE, &rule), GW_EINVAL);
    assert_string_equal(gw_rule_str(rule), "gender digit does not match the stated gender");
    assert_int_equal(res("11010519491231002X", GW_GENDER_MALE, &rule), GW_EINVAL);
    assert_string_equal(gw_rule_str(rule), "gender digit does not match the stated gender");
}

static void test_legacy15(void **state)
{
    (void)state;
    enum gw_rule rule = GW_RULE_NONE;
    struct gw_idcard_info info;
    char up[19];
    char norm[GW_ID_NORM_MAX + 1];
    size_t len;

    assert_int_equal(
        gw_idcard_resident_check("330106900307123", 15, NOW, GW_GENDER_MALE, &info, &rule), 0);
    assert_true(info.legacy15);
    assert_int_equal(info.year, 1990);
    assert_int_equal(info.gender, GW_GENDER_MALE);
    assert_int_equal(res("330106900307124", GW_GENDER_MALE, &rule), GW_EINVAL);
    assert_string_equal(gw_rule_str(rule), "gender digit does not match the stated gender");
    assert_int_equal(res("330106990230123", 0, &rule), GW_EINVAL); /* 1999-02-30 */
    assert_int_equal(res("99010690030712X", 0, &rule), GW_EINVAL);
    assert_int_equal(res("990106900307123", 0, &rule), GW_EINVAL);

    assert_int_equal(gw_idcard_upgrade15("330106900307123", 15, up), 0);
    assert_string_equal(up, "330106199003071236");
    assert_int_equal(gw_idcard_upgrade15("33010690030712", 14, up), GW_EINVAL);
    assert_int_equal(gw_idcard_upgrade15("33010690030712A", 15, up), GW_EINVAL);

    /* the 15- and the 18-digit numbers of one person normalise alike */
    assert_int_equal(
        gw_idcard_normalize(GW_ID_RESIDENT_CARD, "330106900307123", 15, norm, sizeof norm, &len),
        0);
    assert_string_equal(norm, "330106199003071236");
    assert_int_equal(len, 18);
    assert_int_equal(
        gw_idcard_normalize(GW_ID_RESIDENT_CARD, "11010519491231002x", 18, norm, sizeof norm, &len),
        0);
    assert_string_equal(norm, "11010519491231002X");
    assert_int_equal(
        gw_idcard_normalize(GW_ID_RESIDENT_CARD, "11010519491231002x", 18, norm, 18, &len),
        GW_ETOOBIG);
    assert_int_equal(
        gw_idcard_normalize(GW_ID_RESIDENT_CARD, "110105194912310021", 18, norm, sizeof norm, &len),
        GW_EINVAL);
}

static int chk(enum gw_id_type t, const char *s, enum gw_rule *rule)
{
    return gw_idcard_check(t, s, strlen(s), NOW, GW_GENDER_UNSPECIFIED, rule);
}

static void test_other_types(void **state)
{
    (void)state;
    enum gw_rule rule = GW_RULE_NONE;
    char norm[GW_ID_NORM_MAX + 1];

    assert_int_equal(chk(GW_ID_UNSPECIFIED, "E12345678", &rule), GW_EINVAL);
    assert_int_equal(chk((enum gw_id_type)42, "E12345678", &rule), GW_EINVAL);

    assert_int_equal(chk(GW_ID_PASSPORT, "E12345678", &rule), 0);
    assert_int_equal(chk(GW_ID_PASSPORT, "AB123", &rule), 0);
    assert_int_equal(chk(GW_ID_PASSPORT, "AB12", &rule), GW_EINVAL);
    assert_int_equal(chk(GW_ID_PASSPORT, "A1234567890123456", &rule), 0);
    assert_int_equal(chk(GW_ID_PASSPORT, "A12345678901234567", &rule), GW_EINVAL);
    assert_int_equal(chk(GW_ID_PASSPORT, "E1234-5678", &rule), GW_EINVAL);
    assert_int_equal(gw_idcard_normalize(GW_ID_PASSPORT, "e12345678", 9, norm, sizeof norm, NULL),
                     0);
    assert_string_equal(norm, "E12345678");

    assert_int_equal(chk(GW_ID_HK_MACAO_PERMIT, "H12345678", &rule), 0);
    assert_int_equal(chk(GW_ID_HK_MACAO_PERMIT, "M1234567890", &rule), 0);
    assert_int_equal(chk(GW_ID_HK_MACAO_PERMIT, "m12345678", &rule), 0);
    assert_int_equal(chk(GW_ID_HK_MACAO_PERMIT, "X12345678", &rule), GW_EINVAL);
    assert_int_equal(chk(GW_ID_HK_MACAO_PERMIT, "H123456789", &rule), GW_EINVAL);
    assert_int_equal(chk(GW_ID_HK_MACAO_PERMIT, "H1234567A", &rule), GW_EINVAL);

    assert_int_equal(chk(GW_ID_TAIWAN_PERMIT, "12345678", &rule), 0);
    assert_int_equal(chk(GW_ID_TAIWAN_PERMIT, "1234567801", &rule), 0);
    assert_int_equal(chk(GW_ID_TAIWAN_PERMIT, "12345678AB", &rule), 0);
    assert_int_equal(chk(GW_ID_TAIWAN_PERMIT, "1234567", &rule), GW_EINVAL);
    assert_int_equal(chk(GW_ID_TAIWAN_PERMIT, "A234567801", &rule), GW_EINVAL);

    assert_int_equal(chk(GW_ID_FOREIGN_PERMANENT_RESIDENT, "911000198506151239", &rule), 0);
    assert_int_equal(chk(GW_ID_FOREIGN_PERMANENT_RESIDENT, "911000198506151230", &rule), GW_EINVAL);
    assert_string_equal(gw_rule_str(rule),
                        "check digit does not match (GB 11643 ISO 7064 MOD 11-2)");
    assert_int_equal(chk(GW_ID_FOREIGN_PERMANENT_RESIDENT, "ABC110078123101", &rule), 0);
    assert_int_equal(chk(GW_ID_FOREIGN_PERMANENT_RESIDENT, "AB1110078123101", &rule), GW_EINVAL);
    assert_int_equal(chk(GW_ID_FOREIGN_PERMANENT_RESIDENT, "330106199003071236", &rule), GW_EINVAL);

    assert_int_equal(chk(GW_ID_MILITARY, "南字第1234567号", &rule), 0);
    assert_int_equal(chk(GW_ID_MILITARY, "A-12(3)", &rule), 0);
    assert_int_equal(chk(GW_ID_MILITARY, "abc", &rule), GW_EINVAL);
    assert_int_equal(chk(GW_ID_MILITARY, " abcd", &rule), GW_EINVAL);
    assert_int_equal(chk(GW_ID_OTHER, "abcd\tef", &rule), GW_EINVAL);
    assert_int_equal(chk(GW_ID_OTHER,
                         "abcd\xe2\x80\xae"
                         "f",
                         &rule),
                     GW_EINVAL);                                          /* U+202E */
    assert_int_equal(chk(GW_ID_OTHER, "abcd\xc0\xaf", &rule), GW_EINVAL); /* overlong */
    assert_string_equal(gw_rule_str(rule), "is not valid UTF-8");
    assert_int_equal(chk(GW_ID_OTHER, "123456789012345678901234567890123", &rule), GW_EINVAL);
    assert_int_equal(chk(GW_ID_OTHER, "12345678901234567890123456789012", &rule), 0);
    assert_int_equal(gw_idcard_normalize(GW_ID_OTHER, "ab-cd", 5, norm, sizeof norm, NULL), 0);
    assert_string_equal(norm, "AB-CD");
}

static void test_enums(void **state)
{
    (void)state;
    assert_true(gw_id_type_valid(0));
    assert_true(gw_id_type_valid(7));
    assert_false(gw_id_type_valid(8));
    assert_false(gw_id_type_valid(-1));
    assert_true(gw_gender_valid(2));
    assert_false(gw_gender_valid(3));
}

/* MOD 11-2 catches every single-character substitution: mutate each position of a valid
 * synthetic number to every other value and expect a refusal. */
static void test_single_substitution(void **state)
{
    (void)state;
    const char *valid = "330106199003071236";
    enum gw_rule rule = GW_RULE_NONE;
    for (int pos = 0; pos < 18; pos++) {
        for (const char *c = "0123456789X"; *c; c++) {
            char id[19];
            memcpy(id, valid, 19);
            if (id[pos] == *c || (pos < 17 && *c == 'X'))
                continue;
            id[pos] = *c;
            assert_int_equal(gw_idcard_resident_check(id, 18, NOW, 0, NULL, &rule), GW_EINVAL);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_check_char),      cmocka_unit_test(test_valid),
        cmocka_unit_test(test_bad_check_digit), cmocka_unit_test(test_bad_shape),
        cmocka_unit_test(test_bad_date),        cmocka_unit_test(test_future_date),
        cmocka_unit_test(test_bad_region),      cmocka_unit_test(test_gender_mismatch),
        cmocka_unit_test(test_legacy15),        cmocka_unit_test(test_other_types),
        cmocka_unit_test(test_enums),           cmocka_unit_test(test_single_substitution),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
