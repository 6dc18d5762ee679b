/* test_pwpolicy.c: the password policy (pwpolicy.h, Art. 35): length in code points, classes,
 * account name, UTF-8, and generated passwords that always pass it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "pwpolicy.h"

static enum gw_rule check(const char *account, const char *pw, unsigned long *limit)
{
    struct gw_fault f;
    memset(&f, 0x5a, sizeof f);
    int rc = gw_pwpolicy_check(account, pw, strlen(pw), &f);
    if (rc == 0) {
        assert_int_equal(f.code, 0);
        return GW_RULE_NONE;
    }
    assert_int_equal(rc, GW_EINVAL);
    assert_int_equal(f.code, GW_EINVAL);
    assert_string_equal(f.field, "password");
    if (limit != NULL)
        *limit = f.limit;
    return f.rule;
}

static void test_length(void **state)
{
    (void)state;
    unsigned long limit = 0;
    assert_int_equal(check("alice", "", &limit), GW_RULE_PASSWORD_LENGTH);
    assert_int_equal(limit, 12);
    assert_int_equal(check("alice", "Abcdefgh12!", &limit), GW_RULE_PASSWORD_LENGTH); /* 11 */
    assert_int_equal(limit, 12);
    assert_int_equal(check("alice", "Abcdefgh123!", NULL), GW_RULE_NONE); /* 12 */
    /* code points, not bytes: 11 characters of 3 bytes each is still too short ... */
    assert_int_equal(check("alice", "密码密码密码密码密A1", NULL), GW_RULE_PASSWORD_LENGTH);
    /* ... and 12 of them are enough (other + upper + digit) */
    assert_int_equal(check("alice", "密码密码密码密码密码A1", NULL), GW_RULE_NONE);
    /* the message names the bound */
    struct gw_fault f;
    char msg[160];
    assert_int_equal(gw_pwpolicy_check(NULL, "short", 5, &f), GW_EINVAL);
    gw_fault_format(&f, msg, sizeof msg);
    assert_string_equal(msg, "password: must be at least 12 characters long (Art. 35)");
    assert_int_equal(gw_fault_status(&f), GW_GRPC_INVALID_ARGUMENT);
}

static void test_classes(void **state)
{
    (void)state;
    assert_int_equal(check("bob", "abcdefghijklmnop", NULL), GW_RULE_PASSWORD_CLASSES);
    assert_int_equal(check("bob", "abcdefghABCDEFGH", NULL), GW_RULE_PASSWORD_CLASSES);
    assert_int_equal(check("bob", "abcdefgh12345678", NULL), GW_RULE_PASSWORD_CLASSES);
    assert_int_equal(check("bob", "12345678!!!!!!!!", NULL), GW_RULE_PASSWORD_CLASSES);
    assert_int_equal(check("bob", "密码密码密码密码密码密码", NULL), GW_RULE_PASSWORD_CLASSES);
    /* any three of the four */
    assert_int_equal(check("bob", "abcdefghABCD1234", NULL), GW_RULE_NONE);
    assert_int_equal(check("bob", "abcdefghABCD!!!!", NULL), GW_RULE_NONE);
    assert_int_equal(check("bob", "abcdefgh1234!!!!", NULL), GW_RULE_NONE);
    assert_int_equal(check("bob", "ABCDEFGH1234!!!!", NULL), GW_RULE_NONE);
    /* a non-ASCII letter counts as "other" */
    assert_int_equal(check("bob", "abcdefgh1234éééé", NULL), GW_RULE_NONE);
    /* a space is "other" too */
    assert_int_equal(check("bob", "correct horse 4", NULL), GW_RULE_NONE);
}

static void test_account_name(void **state)
{
    (void)state;
    assert_int_equal(check("clerk_a", "xxclerk_aX123!", NULL), GW_RULE_PASSWORD_HAS_ACCOUNT);
    assert_int_equal(check("clerk_a", "CLERK_Axx123!!", NULL), GW_RULE_PASSWORD_HAS_ACCOUNT);
    assert_int_equal(check("clerk_a", "Abc1!Clerk_A", NULL), GW_RULE_PASSWORD_HAS_ACCOUNT);
    assert_int_equal(check("clerk_a", "clerk_bX1234!", NULL), GW_RULE_NONE);
    assert_int_equal(check("clerk_a", "Clerk_X123!!!", NULL), GW_RULE_NONE);
    /* no account: the rule is skipped */
    assert_int_equal(check("", "clerk_aX1234!", NULL), GW_RULE_NONE);
    assert_int_equal(check(NULL, "clerk_aX1234!", NULL), GW_RULE_NONE);
    /* length and classes come first */
    assert_int_equal(check("clerk_a", "clerk_a", NULL), GW_RULE_PASSWORD_LENGTH);
}

static void test_bytes(void **state)
{
    (void)state;
    struct gw_fault f;
    char big[GW_PWPOLICY_MAX_BYTES + 2];
    /* invalid UTF-8: a lone continuation byte, an overlong form, a surrogate */
    assert_int_equal(check("bob", "Abcdefgh123\x80", NULL), GW_RULE_UTF8);
    assert_int_equal(check("bob", "Abcdefgh123\xc0\xaf", NULL), GW_RULE_UTF8);
    assert_int_equal(check("bob", "Abcdefgh123\xed\xa0\x80", NULL), GW_RULE_UTF8);
    /* NUL inside */
    assert_int_equal(gw_pwpolicy_check("bob",
                                       "Abcdefgh\0"
                                       "123!!",
                                       14, &f),
                     GW_EINVAL);
    assert_int_equal(f.rule, GW_RULE_NUL);
    /* bounded: at most GW_PWPOLICY_MAX_BYTES bytes */
    memset(big, 'a', sizeof big);
    memcpy(big, "A1!", 3);
    big[sizeof big - 1] = '\0';
    assert_int_equal(gw_pwpolicy_check("bob", big, GW_PWPOLICY_MAX_BYTES, &f), 0);
    assert_int_equal(gw_pwpolicy_check("bob", big, GW_PWPOLICY_MAX_BYTES + 1, &f), GW_EINVAL);
    assert_int_equal(f.rule, GW_RULE_TOO_LONG);
    assert_int_equal(f.limit, GW_PWPOLICY_MAX_BYTES);
    /* NULL fault is allowed */
    assert_int_equal(gw_pwpolicy_check("bob", "short", 5, NULL), GW_EINVAL);
}

static void test_generate(void **state)
{
    (void)state;
    char pw[GW_PWPOLICY_GEN_SIZE], prev[GW_PWPOLICY_GEN_SIZE] = "";
    for (int i = 0; i < 200; i++) {
        assert_int_equal(gw_pwpolicy_generate(pw, sizeof pw), 0);
        assert_int_equal(strlen(pw), GW_PWPOLICY_GEN_CHARS);
        assert_int_equal(gw_pwpolicy_check(NULL, pw, strlen(pw), NULL), 0);
        unsigned classes = 0;
        for (const char *p = pw; *p != '\0'; p++) {
            assert_non_null(strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                   "0123456789-_.+=@%:",
                                   *p));
            classes |= (*p >= 'a' && *p <= 'z')   ? 1u
                       : (*p >= 'A' && *p <= 'Z') ? 2u
                       : (*p >= '0' && *p <= '9') ? 4u
                                                  : 8u;
        }
        assert_int_equal(classes, 15); /* all four classes, every time */
        assert_string_not_equal(pw, prev);
        memcpy(prev, pw, sizeof pw);
    }
    /* the shortest allowed length works; shorter or missing buffers are refused */
    char small[GW_PWPOLICY_MIN_CHARS + 1];
    for (int i = 0; i < 100; i++) {
        assert_int_equal(gw_pwpolicy_generate(small, sizeof small), 0);
        assert_int_equal(gw_pwpolicy_check(NULL, small, strlen(small), NULL), 0);
    }
    assert_int_equal(gw_pwpolicy_generate(small, sizeof small - 1), GW_EINVAL);
    assert_int_equal(gw_pwpolicy_generate(NULL, 21), GW_EINVAL);
    char huge[GW_PWPOLICY_MAX_BYTES + 2];
    assert_int_equal(gw_pwpolicy_generate(huge, sizeof huge), GW_EINVAL);
    assert_int_equal(gw_pwpolicy_generate(huge, sizeof huge - 1), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_length),       cmocka_unit_test(test_classes),
        cmocka_unit_test(test_account_name), cmocka_unit_test(test_bytes),
        cmocka_unit_test(test_generate),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
