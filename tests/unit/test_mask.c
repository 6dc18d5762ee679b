/* test_mask.c: masking rules of docs/roles.md (mask.h), UTF-8 aware, with the GB/T 41833-2022
 * minimums checked on every output. Synthetic names, phones and numbers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "alloc.h"
#include "mask.h"

typedef int (*mfn)(const char *, size_t, char *, size_t, size_t *);

static void expect(mfn fn, const char *in, const char *want)
{
    char out[256];
    size_t len = 999;
    int rc = fn(in, strlen(in), out, sizeof out, &len);
    if (rc != 0)
        fail_msg("mask of [%s] failed: %d", in, rc);
    assert_string_equal(out, want);
    assert_int_equal(len, strlen(want));
}

static void test_name(void **state)
{
    (void)state;
    expect(gw_mask_name, "张三丰", "张**");
    expect(gw_mask_name, "张三", "张*");
    expect(gw_mask_name, "张", "*");
    expect(gw_mask_name, "欧阳娜娜", "欧阳**");
    expect(gw_mask_name, "欧阳修", "欧阳*");
    expect(gw_mask_name, "欧阳", "欧*"); /* 2 characters: surname 欧 */
    expect(gw_mask_name, "诸葛亮", "诸葛*");
    /* compound surnames kept whole from three characters on */
    static const char *const compound[] = {"欧阳", "司马", "诸葛", "上官", "东方", "皇甫",
                                           "尉迟", "公孙", "慕容", "长孙", "宇文", "司徒",
                                           "令狐", "夏侯", "端木", NULL};
    for (const char *const *c = compound; *c; c++) {
        char in[32], want[32];
        snprintf(in, sizeof in, "%s小明", *c);
        snprintf(want, sizeof want, "%s**", *c);
        expect(gw_mask_name, in, want);
    }
    expect(gw_mask_name, "司马光", "司马*");
    expect(gw_mask_name, "马光明", "马**"); /* 马 alone is not compound */
    /* middle dot: the dot stays, only the first character is kept */
    expect(gw_mask_name, "买买提·艾力", "买**·**");
    expect(gw_mask_name, "阿依古丽·买买提", "阿***·***");
    expect(gw_mask_name, "阿依古丽•买买提", "阿***•***");
    expect(gw_mask_name, "阿依古丽.买买提", "阿***.***");
    /* Latin names: the first letter of each word */
    expect(gw_mask_name, "Li Lei", "L* L**");
    expect(gw_mask_name, "John Smith", "J*** S****");
    expect(gw_mask_name, "Jean-Luc O'Neil", "J***-L** O'N***");
    expect(gw_mask_name, "José Núñez", "J*** N****");
    expect(gw_mask_name, "J. K.", "*. *."); /* nothing would be hidden: all letters hidden */
    expect(gw_mask_name, "A", "*");
    expect(gw_mask_name, "𠀀二三", "𠀀**"); /* 4-byte surname (CJK Ext. B) */
    expect(gw_mask_name, "", "");
    char out[16];
    assert_int_equal(gw_mask_name("张\xff", 4, out, sizeof out, NULL), GW_EINVAL);
    assert_int_equal(gw_mask_name("\xe5\xbc", 2, out, sizeof out, NULL), GW_EINVAL);
    assert_int_equal(gw_mask_name("Jo\xc0\xafn", 5, out, sizeof out, NULL),
                     GW_EINVAL); /* overlong */
    assert_int_equal(gw_mask_name("\xed\xa0\x80", 3, out, sizeof out, NULL),
                     GW_EINVAL); /* surrogate */
}

/* GB/T 41833-2022 minimums hold for every name of 1 to 6 characters: at least one hidden, and
 * the output never holds a partial code point. */
static void test_name_minimum(void **state)
{
    static const char *const ch[] = {"张", "欧", "阳", "a", "é", "𠀀", "·", " "};
    (void)state;
    for (size_t len = 1; len <= 4; len++) {
        size_t total = 1;
        for (size_t i = 0; i < len; i++)
            total *= 8;
        for (size_t k = 0; k < total; k++) {
            char in[64] = "", out[128];
            size_t x = k, olen, letters = 0, stars = 0;
            for (size_t i = 0; i < len; i++, x /= 8) {
                strcat(in, ch[x % 8]);
                letters += (x % 8) < 6;
            }
            assert_int_equal(gw_mask_name(in, strlen(in), out, sizeof out, &olen), 0);
            for (size_t i = 0; i < olen; i++)
                stars += out[i] == '*';
            if (letters > 0 && stars == 0)
                fail_msg("[%s] -> [%s]: nothing hidden", in, out);
            assert_int_equal(gw_mask_name(out, olen, out + 64, 64, NULL), 0); /* valid UTF-8 */
        }
    }
}

static void test_phone(void **state)
{
    (void)state;
    expect(gw_mask_phone, "13800138000", "1******8000");
    expect(gw_mask_phone, "+86 138 0013 8000", "1******8000");
    expect(gw_mask_phone, "0086-138-0013-8000", "1******8000");
    expect(gw_mask_phone, "8613800138000", "1******8000");
    expect(gw_mask_phone, "0571-87021234", "0*******1234");
    expect(gw_mask_phone, "010-65521234", "0******1234");
    expect(gw_mask_phone, "+86 10 6552 1234", "0******1234");
    expect(gw_mask_phone, "010-6552123", "******2123"); /* 10 digits: still 6 hidden */
    /* not a valid phone: masked from its digits, at least 6 hidden */
    expect(gw_mask_phone, "12345", "******");
    expect(gw_mask_phone, "1234567", "******7");
    expect(gw_mask_phone, "", "******");
    expect(gw_mask_phone, "１３８００１３８０００",
           "******"); /* full-width digits are not digits */
    char out[32];
    assert_int_equal(gw_mask_phone("138\xff"
                                   "00138000",
                                   12, out, sizeof out, NULL),
                     GW_EINVAL);
}

static void test_id(void **state)
{
    (void)state;
    expect(gw_mask_id_number, "11010519491231002x", "1****************X");
    expect(gw_mask_id_number, "330106900307123", "3*************3");
    expect(gw_mask_id_number, "e12345678", "E*******8");
    expect(gw_mask_id_number, "南字第1234567号", "南*********号");
    expect(gw_mask_id_number, "AB", "**");
    expect(gw_mask_id_number, "A", "*");
    expect(gw_mask_id_number, "ABC", "A*C");
}

static void test_address(void **state)
{
    (void)state;
    char out[128];
    size_t len;
    const char *p = "浙江省", *c = "杭州市", *d = "西湖区", *det = "文三路90号3幢201室";
    assert_int_equal(gw_mask_address(p, strlen(p), c, strlen(c), d, strlen(d), det, strlen(det),
                                     out, sizeof out, &len),
                     0);
    assert_string_equal(out, "浙江省杭州市西湖区****");
    assert_int_equal(len, strlen("浙江省杭州市西湖区****"));
    assert_null(strstr(out, "201"));
    /* no district */
    assert_int_equal(
        gw_mask_address("广东省", 9, "东莞市", 9, NULL, 0, det, strlen(det), out, sizeof out, &len),
        0);
    assert_string_equal(out, "广东省东莞市****");
    /* no detail: nothing to hide */
    assert_int_equal(
        gw_mask_address(p, strlen(p), c, strlen(c), d, strlen(d), "", 0, out, sizeof out, &len), 0);
    assert_string_equal(out, "浙江省杭州市西湖区");
    /* only detail */
    assert_int_equal(
        gw_mask_address(NULL, 0, NULL, 0, NULL, 0, det, strlen(det), out, sizeof out, &len), 0);
    assert_string_equal(out, "****");
    /* exact fit and one byte short */
    size_t need = strlen("浙江省杭州市西湖区****") + 1;
    assert_int_equal(gw_mask_address(p, strlen(p), c, strlen(c), d, strlen(d), det, strlen(det),
                                     out, need, &len),
                     0);
    assert_int_equal(gw_mask_address(p, strlen(p), c, strlen(c), d, strlen(d), det, strlen(det),
                                     out, need - 1, &len),
                     GW_ETOOBIG);
    assert_string_equal(out, "");
    assert_int_equal(gw_mask_address("\xff", 1, c, strlen(c), d, strlen(d), det, strlen(det), out,
                                     sizeof out, &len),
                     GW_EINVAL);
    assert_int_equal(gw_mask_address(p, strlen(p), c, strlen(c), d, strlen(d), "3\xe5\xb9", 3, out,
                                     sizeof out, &len),
                     GW_EINVAL); /* a detail cut inside 幢 */
}

static void test_buffer_limits(void **state)
{
    (void)state;
    char out[8];
    size_t len;
    assert_int_equal(gw_mask_name("张三丰", 9, out, 6, &len), 0); /* "张**" is 5 bytes */
    assert_string_equal(out, "张**");
    assert_int_equal(gw_mask_name("张三丰", 9, out, 5, &len), GW_ETOOBIG);
    assert_string_equal(out, "");
    assert_int_equal(gw_mask_phone("13800138000", 11, out, sizeof out, &len), GW_ETOOBIG);
    assert_int_equal(gw_mask_name("张三丰", 9, out, 0, &len), GW_ETOOBIG);
    assert_int_equal(gw_mask_omit(out, sizeof out, &len), 0);
    assert_string_equal(out, "");
    assert_int_equal(len, 0);
    assert_int_equal(gw_mask_omit(out, 0, &len), GW_ETOOBIG);
}

static void test_keep(void **state)
{
    (void)state;
    char out[64];
    size_t len;
    assert_int_equal(gw_mask_keep("杭州某某科技有限公司", 30, 2, 2, out, sizeof out, &len), 0);
    assert_string_equal(out, "杭州******公司");
    /* nothing would be hidden -> everything hidden */
    assert_int_equal(gw_mask_keep("abcd", 4, 2, 2, out, sizeof out, &len), 0);
    assert_string_equal(out, "****");
}

static void test_dup(void **state)
{
    (void)state;
    char *s = gw_mask_name_dup("张三丰", 9);
    assert_non_null(s);
    assert_string_equal(s, "张**");
    gw_free_str_wipe(s);
    s = gw_mask_phone_dup("+86 138 0013 8000", 17);
    assert_non_null(s);
    assert_string_equal(s, "1******8000");
    gw_free_str_wipe(s);
    s = gw_mask_id_number_dup("11010519491231002X", 18);
    assert_non_null(s);
    assert_string_equal(s, "1****************X");
    gw_free_str_wipe(s);
    s = gw_mask_address_dup("浙江省", 9, "杭州市", 9, "西湖区", 9, "某路1号", 10);
    assert_non_null(s);
    assert_string_equal(s, "浙江省杭州市西湖区****");
    gw_free_str_wipe(s);
    assert_null(gw_mask_name_dup("\xff", 1));
    gw_alloc_fail_nth(1);
    assert_null(gw_mask_name_dup("张三丰", 9));
    gw_alloc_fail_nth(0);
}

/* GB/T 41833-2022: phone hides at least 6 digits, name at least 1 character. */
static void test_minimums(void **state)
{
    (void)state;
    const char *phones[] = {"13800138000",      "0571-87021234", "010-6552123",
                            "+86 10 6552 1234", "1234567",       "123456789012"};
    for (size_t i = 0; i < sizeof phones / sizeof phones[0]; i++) {
        char out[32];
        assert_int_equal(gw_mask_phone(phones[i], strlen(phones[i]), out, sizeof out, NULL), 0);
        size_t hidden = 0;
        for (char *q = out; *q; q++)
            hidden += *q == '*';
        assert_true(hidden >= 6);
    }
    const char *names[] = {"张", "张三", "欧阳", "欧阳修", "A", "Ab"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        char out[32];
        assert_int_equal(gw_mask_name(names[i], strlen(names[i]), out, sizeof out, NULL), 0);
        assert_non_null(strchr(out, '*'));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_name),     cmocka_unit_test(test_name_minimum),
        cmocka_unit_test(test_phone),    cmocka_unit_test(test_id),
        cmocka_unit_test(test_address),  cmocka_unit_test(test_buffer_limits),
        cmocka_unit_test(test_keep),     cmocka_unit_test(test_dup),
        cmocka_unit_test(test_minimums),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
