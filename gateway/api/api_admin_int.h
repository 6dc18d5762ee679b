/* api_admin_int.h: what the Admin handlers share: the per-call state, the password job run on
 * the worker pool, and the helpers that record and refuse (api_admin_util.c). Every Admin call
 * leaves one administrative-record row (admin_log, action "Login", ...) and one audit record
 * (audit_record, action "login.ok", "account.create", ...: the vocabulary of the audit chain),
 * written together. The handlers are
 * api_login.c (Login, ChangePassword) and api_admin.c (CreateAccount, DisableAccount, the
 * methods not built yet). Internal to the api layer. */
#ifndef GW_API_ADMIN_INT_H
#define GW_API_ADMIN_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "accounts.h"
#include "api_auth.h"
#include "call.h"
#include "password.h"
#include "pwpolicy.h"
#include "workers.h"

#define PERSON_MAX 64
#define ACCOUNT_MAX 64 /* bytes of an account name asked for (Login, DisableAccount) */

struct gw_app;
struct gw_app_pwshare;

/* One Admin call (in the call's arena: gone when the call ends). */
struct adm {
    struct gw_call *call;
    struct gw_app *app;
    const char *action;       /* admin_log's word: "Login", "CreateAccount", ... */
    const char *audit_action; /* the audit record's: "login.fail", "account.create", ... */
    struct gw_acct_req *req;
    struct gw_job *job;
    char object[72]; /* the account acted on; "" when none (an unknown Login name is not kept) */
    char name[72];   /* Login: the name asked for */
    /* Login: what the read found */
    bool found, locked, disabled, inactive, must_change;
    bool cert_refused; /* the connection's certificate could never carry the account's token */
    int64_t id;
    char token[GW_AUTH_TOKEN_CHARS + 1];
    uint8_t token_hash[32];
    bool ok;
    /* the request's passwords (in the call's arena, wiped when the call ends) */
    const char *pw, *pw2;
    /* ChangePassword: the hash the old password was verified against; Login: the account's
     * hash as read (a session is issued only while it is still the account's) */
    uint8_t old_hash[GW_PW_HASH_LEN];
    /* Login: the password hashed again under [auth] scrypt_n, when the account's hash was made
     * under other parameters and the password verified (rehashed) */
    struct gw_acct_pw rehash;
    bool rehashed;
    /* CreateAccount: the new account's; Login: the account's (when found) */
    char role[32], branch[32], person[PERSON_MAX + 1];
};

/* A worker's job: heap memory, wiped and freed by done or drop (workers.h). */
struct pwjob {
    /* the gateway's alone: never copied back from the worker process (gw_workers_keep) */
    struct adm *a;
    int share;           /* its place in app->pwshare (gw_admin_submit), -1: none */
    unsigned weight;     /* the places it takes there: the password hashes it runs (1..share) */
    gw_job_done_fn done; /* the handler's, run by gw_admin_submit's own */
    /* the worker's: from here on (GW_PWJOB_KEEP), the copy comes back */
    char pw[GW_PWPOLICY_MAX_BYTES + 1];
    size_t pwn;
    char pw2[GW_PWPOLICY_MAX_BYTES + 1];
    size_t pw2n;
    struct gw_acct_pw cur;
    bool dummy;   /* Login of an unknown account: the hash runs, nothing can match */
    bool upgrade; /* Login: cur was hashed under other parameters than scrypt_n; once verified,
                   * the password is hashed again into out */
    struct gw_acct_pw hist[GW_ACCT_HISTORY];
    size_t nhist;
    uint64_t scrypt_n;
    /* results */
    bool verified, reused;
    int err;
    struct gw_acct_pw out;
};

#define GW_PWJOB_KEEP offsetof(struct pwjob, pw)

/* Wipes and frees a job (its drop function on the pool). */
void gw_admin_job_free(void *arg);
/* A job for a's call, or NULL. */
struct pwjob *gw_admin_job_new(struct adm *a);
/* The call's cancel hook: cancels the database request and the job in flight. */
void gw_admin_cancel_cb(void *arg);
/* The call's state in its arena (action: "Login", ...); on failure the call is finished and
 * NULL returned. */
struct adm *gw_admin_new(struct gw_call *call, const char *action);
/* An administrative-record row for this call: the caller, its certificate and peer, the action,
 * a's object. */
void gw_admin_fill_log(const struct adm *a, struct gw_acct_log *l, const char *outcome,
                       const char *detail);
/* The audit record of this call, as gw_admin_fill_log's row: actor, role, cert, peer and branch
 * of the caller, a's object, the given action and outcome ("ok", "refused", "failed"). */
void gw_admin_fill_rec(const struct adm *a, struct gw_audit_rec *r, const char *action,
                       const char *outcome, const char *detail);
/* Writes an Admin call's refusal: its admin_log row l (outcome "refused" or "error") and its
 * audit record (action, or "admin.refused" when NULL, with l's method as object; outcome
 * "refused" or "failed"), in one transaction of their own. branch: the caller's, or NULL. Fire
 * and forget: a failure is logged. For the refusals of the identity and policy step too. */
void gw_admin_record_refusal(struct gw_app *app, const struct gw_acct_log *l, const char *action,
                             const char *branch);
/* Ends the call with f; with record, also writes its administrative-record row and audit record
 * (refused or error). */
void gw_admin_finish_fault(struct adm *a, const struct gw_fault *f, bool record);
void gw_admin_refuse(struct adm *a, int err, const char *field, enum gw_rule rule,
                     unsigned long limit);
/* The refusal of a store error err (api_admin_util.c's gw_admin_refuse_db): an outage is
 * UNAVAILABLE GW_RULE_DB_UNAVAILABLE, anything else err alone (a full queue, GW_EQUEUEFULL: err.c's
 * one answer, UNAVAILABLE GW_RULE_QUEUE_FULL). */
void gw_admin_db_fault(int err, struct gw_fault *f);
/* Ends the call with gw_admin_db_fault(err), recorded. */
void gw_admin_refuse_db(struct adm *a, int err);
/* Takes weight places (1..GW_API_AUTH_SHARE: the password hashes the job runs) in the
 * password-hashing queue for a job of certificate cert, among slots[0..n) (app->pwshare,
 * GW_APP_PWSHARE_SLOTS of them): the index of cert's slot, whose count grew by weight (a free
 * slot is cert's from now on); or -1 with *f the refusal, RESOURCE_EXHAUSTED GW_RULE_BUSY_CERT
 * (limit GW_API_AUTH_SHARE) when cert's share has not weight places left, GW_RULE_BUSY
 * (limit GW_API_AUTH_QUEUE) when no slot is free (every one held by another certificate). Pure:
 * touches nothing but slots. */
int gw_admin_share_take(struct gw_app_pwshare *slots, size_t n, const char *cert, unsigned weight,
                        struct gw_fault *f);
/* Gives back the weight places gw_admin_share_take gave (slot < 0: none). */
void gw_admin_share_give(struct gw_app_pwshare *slots, int slot, unsigned weight);
/* Queues j on the worker pool (work on a thread, done on the loop) and sets the cancel hook;
 * on failure frees j, refuses the call (busy: RESOURCE_EXHAUSTED) and returns false. */
bool gw_admin_submit(struct adm *a, struct pwjob *j, gw_job_fn work, gw_job_done_fn done);
/* A done function's first step: with err (the password-hashing process died before the job
 * ended) the job is freed and the call refused UNAVAILABLE (no attempt is counted against the
 * account), and true returned. */
bool gw_admin_job_lost(struct pwjob *j, int err);
bool gw_admin_params_of(const struct gw_acct_pw *pw, struct gw_pw_params *pp);
/* True when pw hashes to h (thread-safe: for work functions). */
bool gw_admin_verify(const char *pw, size_t n, const struct gw_acct_pw *h);
/* pw hashed under a fresh salt with the default parameters for scrypt_n into *out (thread-safe:
 * for work functions). Returns 0 or a gw_err. */
int gw_admin_hash_new(const char *pw, size_t n, uint64_t scrypt_n,
                      struct gw_acct_pw *out) GW_MUST_CHECK;
/* s into out when it fits (outsz includes the NUL); false otherwise. */
bool gw_admin_copy_field(char *out, size_t outsz, const char *s);
/* A request's password into a job's wiped buffer (cut at GW_PWPOLICY_MAX_BYTES). */
void gw_admin_take(char *dst, size_t *dn, const char *src);

#endif
