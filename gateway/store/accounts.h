/* accounts.h: the SQL of principals, accounts, sessions and the administrative record
 * (sql/006_accounts.sql), asynchronous over db.h. Every operation is one request (one round
 * trip, one transaction) and returns a cancellable handle; its callback runs once, never inside
 * the starting call, unless the request was cancelled. Tokens and passwords never reach this
 * module: only the SHA-256 of a token and scrypt hashes do. Strings handed in are copied.
 *
 * Every operation that changes an account (a login's outcome, a password change, a creation, a
 * disabling, the inactivity sweep) and every refusal goes through the audit writer (audit.h): its
 * statements, its admin_log row and its audit record (Art. 33) are one transaction, so the change
 * exists exactly when its record does. A record is hashed before it is sent, so it cannot depend
 * on what a statement finds: where the outcome depends on the data, a guard statement fails the
 * transaction instead (nothing commits, the record neither) and the callback reports the outcome
 * the guard stands for. Storage layer: depends on db.h and audit.h. */
#ifndef GW_ACCOUNTS_H
#define GW_ACCOUNTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "audit.h"
#include "audit_rec.h"
#include "err.h"

struct gw_db;
struct gw_acct_req;

#define GW_ACCT_HASH_LEN 32 /* scrypt output, token SHA-256, certificate fingerprint */
#define GW_ACCT_SALT_LEN 16
#define GW_ACCT_HISTORY 5 /* passwords kept besides the current one (Art. 35: no reuse) */

/* One row of the administrative record (Art. 31), kept beside the audit record: the CLI and the
 * existing reports read it, and it keeps the exact refusal reason of a login, which the audit
 * record reduces to a class. Any field but actor, via, action and outcome may be NULL. Never a
 * password or a token. */
struct gw_acct_log {
    const char *actor;   /* account or certificate principal name; "gateway" for the sweep */
    const char *role;    /* the actor's role */
    const char *cert;    /* the certificate principal the call came over */
    const char *peer;    /* the connection's address */
    const char *via;     /* "grpc", "cli" or "gateway" */
    const char *action;  /* "Login", "CreateAccount", ... */
    const char *object;  /* the account acted on */
    const char *outcome; /* "ok", "refused" or "error" */
    const char *detail;  /* a constant text or a refusal's message (never a value) */
};

/* A registered, enabled certificate principal. */
struct gw_acct_cert {
    int64_t id;
    char name[64];
    char role[32];
    char branch[32]; /* "" without a branch */
    bool admin;      /* registered for administration */
};

/* An account behind a live session (not expired, account not disabled). */
struct gw_acct_session {
    int64_t account_id;
    char name[65];
    char role[32];
    char branch[32];
    bool must_change; /* initial password, or older than the configured maximum age */
};

/* cert / sess: NULL when not asked for or not found (unregistered or disabled certificate;
 * unknown, expired or disabled session). err: 0, GW_EUNAVAIL, GW_EINTERNAL. */
typedef void (*gw_acct_identify_cb)(void *arg, int err, const struct gw_acct_cert *cert,
                                    const struct gw_acct_session *sess);

/* Looks up the certificate principal by fingerprint (fpr NULL: not asked) and the session by
 * the SHA-256 of its token (token_hash NULL: not asked), in one round trip. A found session
 * stamps its account's last_used_at (at most once a minute, so that a busy account does not
 * write on every call). max_age_days: password expiry (0 none). */
int gw_acct_identify(struct gw_db *db, const uint8_t *fpr, const uint8_t *token_hash,
                     uint32_t max_age_days, gw_acct_identify_cb cb, void *arg,
                     struct gw_acct_req **out) GW_MUST_CHECK;

/* What Login reads about an account. found false: unknown name (the rest zero). */
struct gw_acct_login {
    bool found;
    int64_t id;
    char role[32];
    char branch[32];
    uint8_t hash[GW_ACCT_HASH_LEN];
    uint8_t salt[GW_ACCT_SALT_LEN];
    char params[64];
    bool must_change; /* an initial password, or one older than max_age_days (0: no limit) */
    bool locked;
    bool disabled;
    bool inactive; /* unused (no login, no call) for more than inactive_days (0: no limit) */
};

typedef void (*gw_acct_login_cb)(void *arg, int err, const struct gw_acct_login *l);

int gw_acct_login_read(struct gw_db *db, const char *name, uint32_t max_age_days,
                       uint32_t inactive_days, gw_acct_login_cb cb, void *arg,
                       struct gw_acct_req **out) GW_MUST_CHECK;

/* The outcome of a login, written in one transaction whatever it is, with its log row and its
 * audit record (login.ok or login.fail). ok: reset the failure count, stamp last_used_at and
 * insert the session (token_hash, expiring in ttl_s), then delete the account's expired sessions
 * and, past sessions_max live ones (the new one included), its oldest (by issue time); if the
 * account was disabled or locked meanwhile, or its password is no longer pw_hash (the one the
 * login verified: changed meanwhile), a guard fails the transaction, nothing of it commits
 * (the login.ok record neither) and created is false: the caller then records the refusal
 * (gw_acct_log_write). Not ok: count one failure against the name (if such an enabled account
 * exists) and lock it for lockout_minutes at lockout_failures consecutive failures (a lock that has
 * run out starts a new count); with uncounted, only the log row and the record are written (a login
 * over a certificate the account could never be used through). */
/* A stored password hash. */
struct gw_acct_pw {
    uint8_t hash[GW_ACCT_HASH_LEN];
    uint8_t salt[GW_ACCT_SALT_LEN];
    char params[64];
};

struct gw_acct_login_outcome {
    bool ok;
    const char *name;
    int64_t id;
    const uint8_t *token_hash; /* ok only */
    const uint8_t *pw_hash;    /* ok only: the stored hash the password was verified against */
    /* ok only, or NULL: the same password hashed again (other parameters), stored in place of
     * pw_hash while that is still the account's; the password's age and history are unchanged */
    const struct gw_acct_pw *rehash;
    uint32_t ttl_s;
    uint32_t sessions_max; /* ok only: live sessions the account keeps, >= 1 (else GW_EINVAL) */
    bool limited;          /* the session was issued while the password must change */
    bool uncounted;        /* not ok: count no failure */
    const char *peer, *cert;
    uint32_t lockout_failures, lockout_minutes;
    struct gw_acct_log log;
    struct gw_audit_rec rec;
};

/* created: a session was inserted (ok only); expires_at: its end, Unix seconds; locked: this
 * failure reached lockout_failures and locked the account (not ok only: once per lock). */
typedef void (*gw_acct_login_done_cb)(void *arg, int err, bool created, int64_t expires_at,
                                      bool locked);

int gw_acct_login_finish(struct gw_audit *au, const struct gw_acct_login_outcome *o,
                         gw_acct_login_done_cb cb, void *arg,
                         struct gw_acct_req **out) GW_MUST_CHECK;

/* cur NULL: no such enabled account. locked: the account is locked (failed password checks,
 * Login's or ChangePassword's). hist: the last GW_ACCT_HISTORY retired ones, newest first. */
typedef void (*gw_acct_pw_cb)(void *arg, int err, const struct gw_acct_pw *cur, bool locked,
                              const struct gw_acct_pw *hist, size_t nhist);

int gw_acct_pw_read(struct gw_db *db, int64_t account_id, gw_acct_pw_cb cb, void *arg,
                    struct gw_acct_req **out) GW_MUST_CHECK;

/* Replaces the password of account_id if its hash is still old_hash (else a guard fails the
 * transaction: nothing changes, no record, and changed is false): the old one moves to the
 * history (pruned to GW_ACCT_HISTORY), must_change is reset, the failure count cleared, and every
 * session of the account but keep_token_hash ends. The log row and the audit record
 * (password.change) are part of the same transaction. set_at: Unix seconds. */
struct gw_acct_pw_change {
    int64_t account_id;
    const uint8_t *old_hash;
    const struct gw_acct_pw *new_pw;
    const uint8_t *keep_token_hash;
    struct gw_acct_log log;
    struct gw_audit_rec rec;
};

typedef void (*gw_acct_changed_cb)(void *arg, int err, bool changed, int64_t set_at);

int gw_acct_pw_write(struct gw_audit *au, const struct gw_acct_pw_change *c, gw_acct_changed_cb cb,
                     void *arg, struct gw_acct_req **out) GW_MUST_CHECK;

/* A wrong current password given to ChangePassword over a token of account_id: one failure
 * counted as a failed login's (gw_acct_login_finish, not ok), locking the account at
 * lockout_failures consecutive ones, so that a token's holder cannot try passwords without the
 * bound a Login has (Art. 35); the log row and the audit record in the same transaction. */
struct gw_acct_pw_fail {
    int64_t account_id;
    uint32_t lockout_failures, lockout_minutes;
    struct gw_acct_log log;
    struct gw_audit_rec rec;
};

/* locked: this failure reached lockout_failures and locked the account (once per lock). */
typedef void (*gw_acct_pw_failed_cb)(void *arg, int err, bool locked);

int gw_acct_pw_fail(struct gw_audit *au, const struct gw_acct_pw_fail *f, gw_acct_pw_failed_cb cb,
                    void *arg, struct gw_acct_req **out) GW_MUST_CHECK;

/* A new account (must change its password at first login). */
struct gw_acct_new {
    const char *name, *person, *role;
    const char *branch; /* NULL for roles without a branch */
    const struct gw_acct_pw *pw;
    const char *created_by;
    struct gw_acct_log log;  /* written with the account, in the same transaction */
    struct gw_audit_rec rec; /* likewise (account.create) */
};

enum gw_acct_create_result {
    GW_ACCT_CREATED = 0,
    GW_ACCT_NAME_TAKEN,           /* an account of that name exists */
    GW_ACCT_SEPARATION_OF_DUTIES, /* the person holds another of the three administrator roles */
};

typedef void (*gw_acct_create_cb)(void *arg, int err, enum gw_acct_create_result r,
                                  int64_t created_at);

/* Creates the account unless the name is taken or (for system_admin, security_admin,
 * compliance_auditor) the person already holds one of those roles: checked by guards and,
 * against concurrent creations, by the database's unique indexes (their violation is reported
 * the same way). A refused creation commits nothing, its record neither. */
int gw_acct_create(struct gw_audit *au, const struct gw_acct_new *n, gw_acct_create_cb cb,
                   void *arg, struct gw_acct_req **out) GW_MUST_CHECK;

/* found false: no such account (nothing committed, no record). err GW_EPRECOND: the account is
 * the last enabled security_admin, which the database keeps enabled (sql/037; nothing committed,
 * no record). Otherwise the account is disabled (now, or already: then disabled_at is the earlier
 * time), every session of it is gone, and the log row and the audit record (account.disable) are
 * written with it. */
typedef void (*gw_acct_disabled_cb)(void *arg, int err, bool found, int64_t disabled_at);

int gw_acct_disable(struct gw_audit *au, const char *name, const char *by, const char *reason,
                    const struct gw_acct_log *log, const struct gw_audit_rec *rec,
                    gw_acct_disabled_cb cb, void *arg, struct gw_acct_req **out) GW_MUST_CHECK;

/* names: the accounts disabled now (valid during the callback); purged: the expired sessions
 * deleted. */
typedef void (*gw_acct_swept_cb)(void *arg, int err, const char *const *names, size_t n,
                                 size_t purged);

#define GW_ACCT_SWEEP_MAX 256 /* accounts one sweep disables at most (the next sweep goes on) */
/* expired sessions one sweep deletes at most (likewise) */
#define GW_ACCT_SWEEP_SESSIONS_MAX 4096

/* First, in the read's transaction, deletes expired sessions (the longest expired first, at most
 * GW_ACCT_SWEEP_SESSIONS_MAX; no record: an expired token is no credential, and its issue is
 * login.ok's record) and reads the enabled accounts unused (last_used_at, or created_at if never
 * used) for more than days days (at most GW_ACCT_SWEEP_MAX; days 0: none, the sweep only
 * purges); then disables each in a transaction of its own that ends its sessions and writes its
 * administrative-record row (actor "gateway", via "gateway", action "DisableInactive") and its
 * audit record (account.disable_inactive); an account used meanwhile is left alone by a guard.
 * cb runs once all are done, with those disabled; err is that of the read or, when none could
 * be disabled, of the last failure. */
int gw_acct_sweep_inactive(struct gw_db *db, struct gw_audit *au, uint32_t days,
                           gw_acct_swept_cb cb, void *arg, struct gw_acct_req **out) GW_MUST_CHECK;

/* Writes one administrative-record row and its audit record in a transaction of their own (for
 * refusals, whose action's transaction is not written). Fire and forget: it waits out an outage
 * of the database (gw_audit_write_kept), and a failure is logged. */
/* The same, telling cb(arg, err, ...) the outcome unless its handle *out is cancelled first
 * (gw_audit_cancel): gw_audit_write's; out NULL: gw_audit_write_kept's (it waits out an outage,
 * as gw_acct_log_write's). cb NULL: a failure is logged. */
int gw_acct_log_write_cb(struct gw_audit *au, const struct gw_acct_log *log,
                         const struct gw_audit_rec *rec, gw_audit_done_cb cb, void *arg,
                         struct gw_audit_req **out) GW_MUST_CHECK;
int gw_acct_log_write(struct gw_audit *au, const struct gw_acct_log *log,
                      const struct gw_audit_rec *rec) GW_MUST_CHECK;
/* The entry gw_acct_log_write would queue for log and rec, handed to cb (a spool's: audit.h's
 * gw_audit_left). Returns cb's result, or GW_EINVAL (log or rec refused). */
int gw_acct_log_left(const struct gw_acct_log *log, const struct gw_audit_rec *rec,
                     gw_audit_left_cb cb, void *arg) GW_MUST_CHECK;

/* Cancels a request (its callback will not run). NULL-safe; see gw_db_cancel for the handle's
 * lifetime. */
void gw_acct_cancel(struct gw_acct_req *r);

#endif
