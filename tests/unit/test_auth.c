/* test_auth.c: the pure parts of the gateway's identity step and of the rules it feeds: the bearer
 * token's format and the hash that sessions store (api_auth.h), and the policy's forced password
 * change (policy.h: a token principal whose password must change may call only
 * ChangePassword). The database-backed parts are covered by tests/integration/test_accounts.py. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/evp.h>

#include "api_auth.h"
#include "policy.h"

#define TOKEN "abcdefghijklmnopqrstuvwxyzABCDEFGHIJ0123-_Z" /* 43 base64url characters */

static void test_token_hash_is_sha256_of_the_token(void **state)
{
    uint8_t got[32], want[32];
    unsigned int n = 0;

    (void)state;
    assert_int_equal(strlen(TOKEN), 43);
    assert_int_equal(gw_auth_token_hash("Bearer " TOKEN, got), 0);
    assert_int_equal(EVP_Digest(TOKEN, 43, want, &n, EVP_sha256(), NULL), 1);
    assert_memory_equal(got, want, 32);
}

static void test_token_format_refused(void **state)
{
    uint8_t h[32];
    static const char *const bad[] = {
        NULL,
        "",
        "Bearer ",
        "bearer " TOKEN,                                     /* the scheme is case-sensitive here */
        "Basic " TOKEN,                                      /* another scheme */
        "Bearer  " TOKEN,                                    /* two spaces */
        "Bearer " TOKEN "A",                                 /* 44 characters */
        "Bearer abcdefghijklmnopqrstuvwxyzABCDEFGHIJ0123-_", /* 42 */
        "Bearer abcdefghijklmnopqrstuvwxyzABCDEFGHIJ0123+/Z", /* base64, not base64url */
        "Bearer abcdefghijklmnopqrstuvwxyzABCDEFGHIJ0123-_=", /* padding */
    };

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(gw_auth_token_hash(bad[i], h), GW_EAUTH);
}

static struct gw_principal token_principal(const char *role, bool must_change)
{
    struct gw_principal p;

    memset(&p, 0, sizeof(p));
    strcpy(p.name, "clerk");
    strcpy(p.role, role);
    strcpy(p.branch, "a");
    strcpy(p.cert, "branch_a");
    p.authn = GW_AUTHN_TOKEN;
    p.account_id = 7;
    p.must_change = must_change;
    return p;
}

static void test_must_change_allows_only_change_password(void **state)
{
    struct gw_policy *pol = gw_policy_new(NULL, 0);
    struct gw_principal p = token_principal("security_admin", true);
    struct gw_fault f;

    (void)state;
    assert_non_null(pol);
    assert_int_equal(gw_policy_may_call(pol, "/waygate.v1.Admin/ChangePassword", &p, &f), 0);
    assert_int_equal(gw_policy_may_call(pol, "/waygate.v1.Admin/CreateAccount", &p, &f),
                     GW_EPRECOND);
    assert_int_equal(f.rule, GW_RULE_PASSWORD_MUST_CHANGE);
    assert_string_equal(f.field, "authorization");
    assert_int_equal(gw_policy_may_call(pol, "/waygate.v1.Admin/Login", &p, &f), GW_EPRECOND);
    /* the health check stays open to anyone */
    assert_int_equal(gw_policy_may_call(pol, "/grpc.health.v1.Health/Check", &p, &f), 0);
    /* once changed, the role decides again */
    p.must_change = false;
    assert_int_equal(gw_policy_may_call(pol, "/waygate.v1.Admin/CreateAccount", &p, &f), 0);
    /* a certificate principal has no password: the flag means nothing for it (a branch
     * system's: a people's role's certificate acts only through a token, test_policy.c) */
    p.authn = GW_AUTHN_CERT;
    p.must_change = true;
    strcpy(p.role, "branch_clerk");
    assert_int_equal(gw_policy_may_call(pol, "/waygate.v1.WaybillQuery/Search", &p, &f), 0);
    gw_policy_free(pol);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_token_hash_is_sha256_of_the_token),
        cmocka_unit_test(test_token_format_refused),
        cmocka_unit_test(test_must_change_allows_only_change_password),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
