/* test_account.c: the account rules shared by Admin.CreateAccount and waygatectl accounts. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "account.h"

static void refused(const char *name, const char *role, const char *branch, const char *field,
                    enum gw_rule rule)
{
    struct gw_fault f;

    assert_int_equal(gw_account_check(name, role, branch, &f), GW_EINVAL);
    assert_string_equal(f.field, field);
    assert_int_equal(f.rule, rule);
}

static void test_accepted(void **state)
{
    struct gw_fault f;

    (void)state;
    assert_int_equal(gw_account_check("clerk_a", "branch_clerk", "a", &f), 0);
    assert_int_equal(gw_account_check("cs.a-1", "customer_service", "B_2-x", &f), 0);
    assert_int_equal(gw_account_check("sec", "security_admin", NULL, &f), 0);
    assert_int_equal(gw_account_check("lawful", "lawful_access", "", &f), 0);
    assert_int_equal(
        gw_account_check("a234567890123456789012345678901234567890123456789012345678901234",
                         "system_admin", NULL, &f),
        0);
}

static void test_name(void **state)
{
    (void)state;
    refused("ab", "system_admin", NULL, "account", GW_RULE_ACCOUNT_NAME);
    refused("Alice", "system_admin", NULL, "account", GW_RULE_ACCOUNT_NAME);
    refused("al ice", "system_admin", NULL, "account", GW_RULE_ACCOUNT_NAME);
    refused("张三丰", "system_admin", NULL, "account", GW_RULE_ACCOUNT_NAME);
    refused("a2345678901234567890123456789012345678901234567890123456789012345", "system_admin",
            NULL, "account", GW_RULE_ACCOUNT_NAME);
    refused(NULL, "system_admin", NULL, "account", GW_RULE_ACCOUNT_NAME);
}

static void test_role(void **state)
{
    (void)state;
    /* devices, branch systems and the backend are certificates, never accounts */
    refused("dev", "courier", "a", "role", GW_RULE_ACCOUNT_ROLE);
    refused("dev", "backend", NULL, "role", GW_RULE_ACCOUNT_ROLE);
    refused("dev", "root", NULL, "role", GW_RULE_ACCOUNT_ROLE);
    refused("dev", "", NULL, "role", GW_RULE_ACCOUNT_ROLE);
    refused("dev", NULL, NULL, "role", GW_RULE_ACCOUNT_ROLE);
}

static void test_branch(void **state)
{
    (void)state;
    refused("clerk", "branch_clerk", NULL, "branch", GW_RULE_ACCOUNT_BRANCH);
    refused("clerk", "branch_clerk", "", "branch", GW_RULE_ACCOUNT_BRANCH);
    refused("clerk", "customer_service", "a b", "branch", GW_RULE_ACCOUNT_BRANCH);
    refused("clerk", "customer_service", "a234567890123456789012345678901x", "branch",
            GW_RULE_ACCOUNT_BRANCH);
    refused("sec", "security_admin", "a", "branch", GW_RULE_ACCOUNT_BRANCH);
}

static void test_branch_code(void **state)
{
    (void)state;
    assert_true(gw_branch_code_ok("a"));
    assert_true(gw_branch_code_ok("Branch_07-x"));
    assert_true(gw_branch_code_ok("a234567890123456789012345678901"));
    assert_false(gw_branch_code_ok("a2345678901234567890123456789012"));
    assert_false(gw_branch_code_ok(""));
    assert_false(gw_branch_code_ok(NULL));
    assert_false(gw_branch_code_ok("a b"));
    assert_false(gw_branch_code_ok("杭州"));
}

static void test_role_kinds(void **state)
{
    (void)state;
    assert_true(gw_account_role_admin("system_admin"));
    assert_true(gw_account_role_admin("security_admin"));
    assert_true(gw_account_role_admin("compliance_auditor"));
    assert_false(gw_account_role_admin("lawful_access"));
    assert_false(gw_account_role_admin("branch_clerk"));
    assert_true(gw_account_role_branch_bound("branch_clerk"));
    assert_true(gw_account_role_branch_bound("customer_service"));
    assert_false(gw_account_role_branch_bound("security_admin"));
    /* the people's roles: only the operator's CLI creates their accounts, and their
     * certificates are registered for administration; no device's or system's role is one */
    assert_true(gw_account_role_person_only("security_admin"));
    assert_true(gw_account_role_person_only("system_admin"));
    assert_true(gw_account_role_person_only("compliance_auditor"));
    assert_true(gw_account_role_person_only("lawful_access"));
    assert_false(gw_account_role_person_only("branch_clerk"));
    assert_false(gw_account_role_person_only("customer_service"));
    assert_false(gw_account_role_person_only("courier"));
    assert_false(gw_account_role_person_only("backend"));
}

/* Which certificates an account's token may be used over (and so its password tried over):
 * a branch role over its own branch's certificates only, every other role over certificates
 * registered for administration only, whatever their branch. */
static void test_usable_over(void **state)
{
    (void)state;
    assert_true(gw_account_usable_over("branch_clerk", "a", "a", false));
    assert_true(gw_account_usable_over("customer_service", "a", "a", true));
    assert_false(gw_account_usable_over("branch_clerk", "a", "b", false));
    assert_false(gw_account_usable_over("branch_clerk", "a", "", true));
    assert_false(gw_account_usable_over("branch_clerk", "a", NULL, true));
    assert_false(gw_account_usable_over("branch_clerk", "", "", false));
    assert_false(gw_account_usable_over("branch_clerk", NULL, NULL, false));
    for (size_t i = 0; gw_account_roles[i] != NULL; i++) {
        if (gw_account_role_branch_bound(gw_account_roles[i]))
            continue;
        assert_true(gw_account_usable_over(gw_account_roles[i], NULL, "", true));
        assert_true(gw_account_usable_over(gw_account_roles[i], "", NULL, true));
        assert_false(gw_account_usable_over(gw_account_roles[i], NULL, "a", false));
        assert_false(gw_account_usable_over(gw_account_roles[i], NULL, "", false));
    }
    assert_false(gw_account_usable_over(NULL, NULL, NULL, true));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_accepted),    cmocka_unit_test(test_name),
        cmocka_unit_test(test_role),        cmocka_unit_test(test_branch),
        cmocka_unit_test(test_branch_code), cmocka_unit_test(test_role_kinds),
        cmocka_unit_test(test_usable_over),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
