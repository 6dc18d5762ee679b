/* store_acct_admin.h: waygatectl's statements on principals, people's accounts, their sessions,
 * the administrative record and incidents (sql/006_accounts.sql), on the blocking connection of
 * store_admin.h, as the database's admin role. For the CLI only, never the daemon. No function
 * here receives a clear password: callers pass the scrypt hash, salt and parameters. Strings
 * handed to callbacks live until the callback returns; timestamps are UTC text
 * (YYYY-MM-DDTHH:MM:SSZ) or NULL. Messages in errbuf are one line. */
#ifndef GW_STORE_ACCT_ADMIN_H
#define GW_STORE_ACCT_ADMIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "store_admin.h"

#define GW_ADMIN_FP_LEN 32 /* SHA-256 of the DER certificate */

/* ---- transactions ---- */

/* BEGIN, COMMIT; 0 or GW_EINTERNAL. ROLLBACK never fails (a broken connection rolls back). */
int gw_admin_begin(struct gw_admin *a, char *errbuf, size_t errlen) GW_MUST_CHECK;
int gw_admin_commit(struct gw_admin *a, char *errbuf, size_t errlen) GW_MUST_CHECK;
void gw_admin_rollback(struct gw_admin *a);

/* Inside a transaction: waits for the advisory lock named key (released at its end), so that
 * two CLIs doing the same check-then-insert run one after the other. 0 or GW_EINTERNAL. */
int gw_admin_xact_lock(struct gw_admin *a, const char *key, char *errbuf,
                       size_t errlen) GW_MUST_CHECK;

/* ---- principals ---- */

struct gw_admin_principal {
    long long id;
    const char *name, *role;
    const char *branch; /* NULL when not branch-scoped */
    uint8_t fingerprint[GW_ADMIN_FP_LEN];
    bool admin;
    const char *created_at, *created_by;
    const char *disabled_at, *disabled_by; /* NULL while enabled */
};

typedef void (*gw_admin_principal_cb)(void *arg, const struct gw_admin_principal *p);

/* Registers p (name, role, branch, fingerprint, admin, created_by; the rest is ignored).
 * Returns 0 with *id; GW_EEXIST when the name or the fingerprint is registered already (nothing
 * stored: see gw_admin_principal_find); GW_EINTERNAL otherwise. */
int gw_admin_principal_add(struct gw_admin *a, const struct gw_admin_principal *p, long long *id,
                           char *errbuf, size_t errlen) GW_MUST_CHECK;

/* Calls cb for the principals named name or registered with fingerprint fp (0, 1 or 2 rows).
 * Returns 0 or GW_EINTERNAL. */
int gw_admin_principal_find(struct gw_admin *a, const char *name, const uint8_t fp[GW_ADMIN_FP_LEN],
                            gw_admin_principal_cb cb, void *arg, char *errbuf,
                            size_t errlen) GW_MUST_CHECK;

/* Calls cb for every principal, by name. Returns 0 or GW_EINTERNAL. */
int gw_admin_principal_list(struct gw_admin *a, gw_admin_principal_cb cb, void *arg, char *errbuf,
                            size_t errlen) GW_MUST_CHECK;

/* Disables the principal named name (disabled_at = now, disabled_by = by). *already is true when
 * it was disabled before (nothing changes). Returns 0, GW_ENOTFOUND or GW_EINTERNAL. */
int gw_admin_principal_disable(struct gw_admin *a, const char *name, const char *by, bool *already,
                               char *errbuf, size_t errlen) GW_MUST_CHECK;

/* ---- accounts ---- */

struct gw_admin_account {
    long long id;
    const char *name, *person, *role;
    const char *branch; /* NULL when not branch-scoped */
    bool must_change;
    long long failed_count;
    const char *pw_set_at, *locked_until, *created_at, *created_by, *last_used_at;
    const char *disabled_at, *disabled_by, *disabled_reason;
};

typedef void (*gw_admin_account_cb)(void *arg, const struct gw_admin_account *acc);

/* A new account: its password only as scrypt hash, salt and parameter text. */
struct gw_admin_account_new {
    const char *name, *person, *role;
    const char *branch; /* NULL when not branch-scoped */
    uint8_t pw_hash[32], pw_salt[16];
    const char *pw_params;
    const char *created_by;
};

/* Inserts an account with must_change = true. Returns 0 with *id; GW_EEXIST (the name is taken);
 * GW_EPERM (the person already holds an account of an administrator role: the separation-of-
 * duties index refused it); GW_EINTERNAL otherwise. In a transaction, any error aborts it. */
int gw_admin_account_insert(struct gw_admin *a, const struct gw_admin_account_new *n, long long *id,
                            char *errbuf, size_t errlen) GW_MUST_CHECK;

/* Calls cb for the accounts of one of the three administrator roles (system_admin,
 * security_admin, compliance_auditor) held by person, disabled ones included (the database's
 * separation-of-duties index counts them too). Returns 0 or GW_EINTERNAL. */
int gw_admin_account_admin_roles(struct gw_admin *a, const char *person, gw_admin_account_cb cb,
                                 void *arg, char *errbuf, size_t errlen) GW_MUST_CHECK;

/* *n: the enabled accounts of role. Returns 0 or GW_EINTERNAL. */
int gw_admin_account_count_role(struct gw_admin *a, const char *role, long long *n, char *errbuf,
                                size_t errlen) GW_MUST_CHECK;

/* Calls cb for every account (or only the one named name, when not NULL), by name.
 * Returns 0 or GW_EINTERNAL. */
int gw_admin_account_list(struct gw_admin *a, const char *name, gw_admin_account_cb cb, void *arg,
                          char *errbuf, size_t errlen) GW_MUST_CHECK;

/* Disables the account named name (disabled_at = now, by, reason; an account disabled before
 * keeps its first disabling, *already true) and deletes all its sessions, so its tokens fail on
 * their next call; *sessions is how many were deleted. Run it in a transaction. Returns 0,
 * GW_ENOTFOUND, GW_EPRECOND (the last enabled security_admin, which the database keeps enabled:
 * sql/037; the transaction is aborted) or GW_EINTERNAL. */
int gw_admin_account_disable(struct gw_admin *a, const char *name, const char *by,
                             const char *reason, bool *already, long long *sessions, char *errbuf,
                             size_t errlen) GW_MUST_CHECK;

/* What gw_admin_account_unlock found before it cleared the count. */
struct gw_admin_unlock {
    long long failed_count; /* consecutive failed logins counted */
    bool locked;            /* locked_until was in the future */
    bool disabled;          /* the account is disabled (an unlock does not enable it) */
    char locked_until[24];  /* UTC text of that lock, "" when not locked */
};

/* Clears the failed-login count and any lock of the account named name (sql/025_account_
 * unlock.sql grants the CLI exactly these two columns); the password and everything else stay.
 * *was says what the row held (read under the row's lock). Run it in a transaction. Returns 0,
 * GW_ENOTFOUND (no such account: nothing changed) or GW_EINTERNAL. */
int gw_admin_account_unlock(struct gw_admin *a, const char *name, struct gw_admin_unlock *was,
                            char *errbuf, size_t errlen) GW_MUST_CHECK;

/* ---- the administrative record (Art. 31) and incidents (Art. 17) ---- */

/* One administrative action done through the CLI (via 'cli', peer 'local'). detail must never
 * hold a secret or PII. */
struct gw_admin_logrec {
    const char *actor, *action, *object, *outcome, *detail; /* object, detail may be NULL */
};

/* Appends one admin_log row. Returns 0 or GW_EINTERNAL. */
int gw_admin_log(struct gw_admin *a, const struct gw_admin_logrec *r, char *errbuf,
                 size_t errlen) GW_MUST_CHECK;

/* Records an incident (severity low|medium|high|critical; peer 'local') through the database's
 * cli_record_incident (the CLI's role has no grant on the table itself). principal, branch, detail
 * may be NULL; detail never holds PII or a secret. Returns 0 or GW_EINTERNAL. */
int gw_admin_incident(struct gw_admin *a, const char *severity, const char *kind,
                      const char *principal, const char *branch, const char *detail, char *errbuf,
                      size_t errlen) GW_MUST_CHECK;

#endif
