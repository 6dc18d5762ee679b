/* account.h: the rules of a person's account that the gateway (Admin.CreateAccount) and the CLI
 * (waygatectl accounts) both apply before the database does (sql/006_accounts.sql holds the
 * same checks): its name, its one role, and the branch scope that some roles need and the others
 * must not have. Art. 34: the three administrator roles are mutually exclusive per person.
 * Pure: no I/O, no logging. */
#ifndef GW_ACCOUNT_H
#define GW_ACCOUNT_H

#include <stdbool.h>

#include "err.h"

/* The roles an account may hold (people's roles; devices, branch systems and the backend are
 * certificate principals), NULL-terminated. */
extern const char *const gw_account_roles[];

/* True for the roles bound to one branch (branch_clerk, customer_service). */
bool gw_account_role_branch_bound(const char *role);

/* True for the three administrator roles (system_admin, security_admin, compliance_auditor), of
 * which one person holds at most one (separation of duties, 三员). */
bool gw_account_role_admin(const char *role);

/* True for the people's roles: those that decide or read what others may not (security_admin:
 * decides lawful access, keys, accounts; compliance_auditor: approves bulk operations;
 * lawful_access: reads in clear), and the three administrator roles (system_admin too). Only a
 * person holds them, so every act of such a role names a person (Art. 31, 34):
 *  - an account of such a role is created with the CLI (waygatectl accounts create, by the
 *    operator), never over Admin.CreateAccount: a security admin could otherwise make a requester
 *    and a decider of invented persons and approve alone, or hold a second administrator role
 *    under an invented person, `person` being what the creator typed (separation of duties, 三员,
 *    Art. 16, 34, 37);
 *  - a certificate of such a role is always registered for administration: it is a channel for
 *    such accounts' tokens and acts only through one (waygatectl principals add refuses it
 *    without --admin, sql/041's CHECK refuses the row, gw_policy_may_call treats it so whatever
 *    its flag says).
 * The one list of these roles. */
bool gw_account_role_person_only(const char *role);

/* True when a token of an account of role (branch: the account's, NULL or "" for none) may be
 * used over a connection whose certificate principal has cert_branch (NULL or "" for none) and
 * cert_admin (registered for administration): a branch-bound role only over a certificate of its
 * own branch, every other role only over a certificate registered for administration (Art. 31,
 * 34). The identity step applies this rule to every token (api_auth.c); Login applies it before
 * it looks at a password, so that an account can be guessed at, and locked, only through a
 * certificate it could be used over. */
bool gw_account_usable_over(const char *role, const char *branch, const char *cert_branch,
                            bool cert_admin);

/* True for a branch code as principals, accounts and routes store it: 1 to 31 ASCII letters,
 * digits, '_' or '-' (the columns' CHECK in sql/006_accounts.sql). NULL: false. */
bool gw_branch_code_ok(const char *s);

/* True for a well-formed account name: 3 to 64 of [a-z0-9._-] (the column's CHECK; no other
 * name can name an account). NULL: false. */
bool gw_account_name_ok(const char *s);

/* Checks a new account: name 3 to 64 of [a-z0-9._-] (GW_RULE_ACCOUNT_NAME, field "account"), a
 * role of gw_account_roles (GW_RULE_ACCOUNT_ROLE, "role"), a branch of 1 to 31 ASCII letters,
 * digits, '_' or '-' exactly when the role is branch-bound, else none (branch NULL or "";
 * GW_RULE_ACCOUNT_BRANCH, "branch"). Returns 0, or GW_EINVAL with *f naming the first rule
 * broken, in that order. */
int gw_account_check(const char *name, const char *role, const char *branch,
                     struct gw_fault *f) GW_MUST_CHECK;

#endif
