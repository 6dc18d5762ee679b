/* accounts_int.h: what accounts.c shares with accounts_sweep.c (internal to the store layer):
 * the request handle behind struct gw_acct_req and the helpers both use. */
#ifndef GW_ACCOUNTS_INT_H
#define GW_ACCOUNTS_INT_H

#include <stdbool.h>

#include "accounts.h"
#include "db.h"

struct gw_audit_req;

enum gw_acct_kind {
    GW_ACCT_K_IDENTIFY,
    GW_ACCT_K_LOGIN,
    GW_ACCT_K_LOGIN_DONE,
    GW_ACCT_K_PW,
    GW_ACCT_K_CHANGED,
    GW_ACCT_K_PW_FAILED,
    GW_ACCT_K_CREATE,
    GW_ACCT_K_DISABLE,
    GW_ACCT_K_SWEEP
};

struct gw_acct_req {
    struct gw_db_req *dbreq;   /* a read in flight */
    struct gw_audit_req *areq; /* or an audited write */
    enum gw_acct_kind kind;
    union {
        gw_acct_identify_cb identify;
        gw_acct_login_cb login;
        gw_acct_login_done_cb login_done;
        gw_acct_pw_cb pw;
        gw_acct_changed_cb changed;
        gw_acct_pw_failed_cb pw_failed;
        gw_acct_create_cb create;
        gw_acct_disabled_cb disabled;
        gw_acct_swept_cb swept;
    } cb;
    void *arg;
    int cert_stmt, sess_stmt; /* identify: statement indexes, -1 when not asked */
    int guard;                /* writes: the guard statement's index, -1 when none */
    void *ext;                /* an operation's own state (the sweep's), freed by ext_free */
    void (*ext_free)(void *ext);
};

/* A zeroed request (indexes -1), or NULL. */
struct gw_acct_req *gw_acct_req_new(enum gw_acct_kind k, void *arg);
/* Frees r and its ext. */
void gw_acct_req_free(struct gw_acct_req *r);
/* A request's failure as the callbacks report it: GW_EUNAVAIL or GW_EINTERNAL. */
int gw_acct_fail_err(int err);
/* True when the entry failed at its guard statement guard (division by zero: the condition the
 * guard stands for did not hold, so nothing of the entry committed). */
bool gw_acct_guard_failed(int err, const struct gw_db_result *res, int guard);

/* The SQLSTATE of sql/037_last_security_admin.sql: the change would leave no enabled
 * security_admin account (nothing changed). */
#define GW_ACCT_SQLSTATE_LAST_SECADMIN "WA001"

/* True when statement stmt failed with GW_ACCT_SQLSTATE_LAST_SECADMIN. */
bool gw_acct_last_security_admin(int err, const struct gw_db_result *res, int stmt);

/* Ends every session of the account named $1. */
extern const char *const gw_acct_disable_sessions_sql;

#endif
