/* account.c: the account rules of account.h, in the order a refusal reports them. */
#include "account.h"

#include <string.h>

const char *const gw_account_roles[] = {
    "branch_clerk",
    "customer_service",
    "compliance_auditor",
    "security_admin",
    "system_admin",
    "lawful_access",
    NULL,
};

bool gw_account_role_branch_bound(const char *role)
{
    return strcmp(role, "branch_clerk") == 0 || strcmp(role, "customer_service") == 0;
}

bool gw_account_role_admin(const char *role)
{
    return strcmp(role, "system_admin") == 0 || strcmp(role, "security_admin") == 0 ||
           strcmp(role, "compliance_auditor") == 0;
}

bool gw_account_role_person_only(const char *role)
{
    return gw_account_role_admin(role) || strcmp(role, "lawful_access") == 0;
}

bool gw_account_usable_over(const char *role, const char *branch, const char *cert_branch,
                            bool cert_admin)
{
    if (role == NULL)
        return false;
    if (gw_account_role_branch_bound(role))
        return branch != NULL && branch[0] != '\0' && cert_branch != NULL &&
               strcmp(branch, cert_branch) == 0;
    return cert_admin;
}

bool gw_account_name_ok(const char *s)
{
    size_t n = s != NULL ? strlen(s) : 0;

    if (n < 3 || n > 64)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '.' ||
              s[i] == '_' || s[i] == '-'))
            return false;
    return true;
}

static bool role_ok(const char *role)
{
    for (const char *const *r = gw_account_roles; *r; r++)
        if (strcmp(*r, role) == 0)
            return true;
    return false;
}

bool gw_branch_code_ok(const char *s)
{
    size_t n = s != NULL ? strlen(s) : 0;

    if (n < 1 || n > 31)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
              (s[i] >= '0' && s[i] <= '9') || s[i] == '_' || s[i] == '-'))
            return false;
    return true;
}

int gw_account_check(const char *name, const char *role, const char *branch, struct gw_fault *f)
{
    bool has_branch = branch != NULL && branch[0] != '\0';

    gw_fault_clear(f);
    if (!gw_account_name_ok(name))
        return gw_fault_set(f, GW_EINVAL, NULL, "account", GW_RULE_ACCOUNT_NAME);
    if (role == NULL || !role_ok(role))
        return gw_fault_set(f, GW_EINVAL, NULL, "role", GW_RULE_ACCOUNT_ROLE);
    if (gw_account_role_branch_bound(role) != has_branch ||
        (has_branch && !gw_branch_code_ok(branch)))
        return gw_fault_set(f, GW_EINVAL, NULL, "branch", GW_RULE_ACCOUNT_BRANCH);
    return 0;
}
