/* api_login.c: waygate.v1.Admin/Login and /ChangePassword (Art. 35). Password hashing runs on
 * the worker pool, never on the loop.
 * Invariants: Login answers an unknown account, a certificate the account could never be used
 * over, a wrong password, a locked, a disabled and an inactive account (unused past
 * inactive_disable_days, not yet disabled by the sweep) with the same words after the same
 * work (one database read, one scrypt, one database write); over such a certificate the password
 * is never checked (it is hashed against a dummy salt, as for an unknown name) and no failure is
 * counted, so a device cannot lock an account it could not use (Art. 31, 34, 35); passwords and
 * tokens live in wiped memory only (the call's arena, the job's buffers) and never reach a log;
 * a session is issued only while the account's password is still the one verified (a login in
 * flight across a password change issues none);
 * each call leaves one administrative-record row and one audit record, written in the
 * transaction of its effect: login.ok with the session, login.fail (detail "credentials"
 * whatever the cause) with the failure count, password.change with the new hash, or, refused
 * for a wrong old password, with the failure count (ChangePassword's wrong old passwords count
 * towards the lockout as failed logins do, and a locked account's old password is not checked);
 * the failure that locks an account is also an incident (account_locked, Art. 17). */
#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "waygate/v1/admin.pb-c.h"

#include "account.h"
#include "alloc.h"
#include "api.h"
#include "api_admin_int.h"
#include "api_auth.h"
#include "app.h"
#include "config.h"
#include "incident.h"
#include "log.h"
#include "policy.h"

/* A password to check against the stored hash: present and within GW_PWPOLICY_MAX_BYTES (what
 * a job's buffer holds). Returns true, or false after refusing the call naming field. */
static bool password_given(struct adm *a, const char *field, const char *pw)
{
    if (pw[0] == '\0') {
        gw_admin_refuse(a, GW_EINVAL, field, GW_RULE_REQUIRED, 0);
        return false;
    }
    if (strlen(pw) > GW_PWPOLICY_MAX_BYTES) {
        gw_admin_refuse(a, GW_EINVAL, field, GW_RULE_TOO_LONG, GW_PWPOLICY_MAX_BYTES);
        return false;
    }
    return true;
}

/* --- Login --- */

/* The class a login.fail record gives for every refusal of the credentials: it does not say
 * whether the name exists, the password was wrong or the account locked or disabled (the
 * administrative record keeps the exact cause). */
#define LOGIN_FAIL_CLASS "credentials"

/* The login's audit record: login.ok names the account as actor, in its role; login.fail the
 * certificate principal the attempt came over, with the account as object when it exists. */
static void login_rec(const struct adm *a, bool ok, struct gw_audit_rec *r)
{
    const struct gw_principal *p = gw_call_principal(a->call);

    if (!ok) {
        gw_admin_fill_rec(a, r, "login.fail", "refused", LOGIN_FAIL_CLASS);
        /* a lawful_access account's failed login, token or not, is its officer's attempt */
        r->confidential = r->confidential || gw_policy_confidential_role(a->role);
        return;
    }
    gw_admin_fill_rec(a, r, "login.ok", "ok", a->must_change ? "password must change" : NULL);
    r->actor = a->name;
    r->role = a->role[0] ? a->role : NULL;
    r->cert = p->cert[0] ? p->cert : p->name[0] ? p->name : NULL;
    r->branch = a->branch[0] ? a->branch : NULL;
    r->confidential = r->confidential || gw_policy_confidential_role(a->role); /* lawful access */
}

static void record_raced_login(struct adm *a)
{
    struct gw_acct_log l;
    struct gw_audit_rec r;

    gw_admin_fill_log(a, &l, "refused",
                      "account disabled, locked or its password changed during the login");
    login_rec(a, false, &r);
    if (gw_acct_log_write(a->app->audit, &l, &r) != 0)
        GW_LOG(GW_LOG_ERROR, "admin", gw_call_log_ctx(a->call),
               "the record of a refused login was not queued");
}

/* Repeated authentication failures (Art. 17): the failure that locks an account is an incident,
 * once per lock, naming the account and the certificate the attempts came over. A confidential
 * call's (a Login sent with a lawful_access account's token, call.h), and the lock of a
 * lawful_access account however its Logins came (an officer mistyping over the administration
 * certificate), says only that an account was locked: its caller, certificate and peer, and the
 * account (the officer's own, as often as not), would tell the incidents' readers of lawful
 * access (Art. 16); `waygatectl accounts list` shows which account is locked. */
static void record_lockout(struct adm *a)
{
    const struct gw_principal *p = gw_call_principal(a->call);
    bool neutral = gw_call_confidential(a->call) || gw_policy_confidential_role(a->role);
    struct gw_incident inc;
    char detail[256];

    if (neutral)
        snprintf(detail, sizeof(detail),
                 "an account locked for %u minutes after %u consecutive failed logins or "
                 "password changes (Art. 35)",
                 a->app->cfg->lockout_minutes, a->app->cfg->lockout_failures);
    else
        snprintf(detail, sizeof(detail),
                 "account %s locked for %u minutes after %u consecutive failed logins or "
                 "password changes (Art. 35)",
                 a->object, a->app->cfg->lockout_minutes, a->app->cfg->lockout_failures);
    memset(&inc, 0, sizeof(inc));
    inc.severity = "medium";
    inc.kind = "account_locked";
    if (!neutral) {
        inc.principal = p->name[0] ? p->name : NULL;
        inc.role = p->role[0] ? p->role : NULL;
        inc.cert = p->cert[0] ? p->cert : NULL;
        inc.peer = p->peer[0] ? p->peer : NULL;
        inc.branch = p->branch[0] ? p->branch : NULL;
    }
    inc.detail = detail;
    if (gw_incident_record(a->app->incidents, &inc) != 0)
        GW_LOG(GW_LOG_ERROR, "admin", gw_call_log_ctx(a->call),
               "the incident of a locked account was not recorded");
}

/* The start of the callback of a write that may have counted a failure (a Login's outcome, a
 * wrong old password): the request is over; a database error refuses the call (false); the
 * failure that locked the account is an incident. */
static bool counted(struct adm *a, int err, bool locked)
{
    a->req = NULL;
    gw_call_set_cancel(a->call, NULL, NULL);
    if (err != 0) {
        gw_admin_refuse_db(a, err);
        return false;
    }
    if (locked)
        record_lockout(a);
    return true;
}

static void login_done_cb(void *arg, int err, bool created, int64_t expires_at, bool locked)
{
    struct adm *a = arg;
    Waygate__V1__LoginResponse resp = WAYGATE__V1__LOGIN_RESPONSE__INIT;
    struct gw_fault f;

    if (!counted(a, err, locked))
        return;
    if (a->ok && !created) {
        /* Disabled, locked or its password changed meanwhile: nothing of the login committed,
         * its refusal is recorded now. */
        record_raced_login(a);
    }
    if (!a->ok || !created) {
        /* The row was written with the outcome; the words are the same for every cause. */
        (void)gw_fault_set(&f, GW_EAUTH, NULL, NULL, GW_RULE_LOGIN_REFUSED);
        gw_admin_finish_fault(a, &f, false);
        return;
    }
    resp.token = a->token;
    resp.expires_at = expires_at;
    resp.must_change_password = a->must_change;
    err = gw_call_send(a->call, &resp.base);
    if (err != 0) {
        gw_call_fail(a->call, err, NULL, GW_RULE_NONE);
        return;
    }
    /* An account of a confidential role (lawful_access) logging in is lawful access at work: the
     * call becomes confidential (call.h: no line, no metric; Art. 16), login.ok records it. */
    if (gw_policy_confidential_role(a->role))
        gw_call_set_confidential(a->call);
    else
        GW_LOG(GW_LOG_INFO, "admin", gw_call_log_ctx(a->call), "login: account %s%s", a->object,
               a->must_change ? " (password must change)" : "");
    gw_call_finish(a->call, GW_GRPC_OK, NULL);
}

static void login_work(void *arg)
{
    struct pwjob *j = arg;

    /* One scrypt whatever the account: an unknown name hashes against a dummy salt. A right
     * password of an account hashed under other parameters is hashed a second time under the
     * current ones, so that the account costs a Login what an unknown name does from then on. */
    j->verified = gw_admin_verify(j->pw, j->pwn, &j->cur) && !j->dummy;
    if (j->verified && j->upgrade)
        j->err = gw_admin_hash_new(j->pw, j->pwn, j->scrypt_n, &j->out);
}

/* 32 random bytes, base64url without padding. */
static int make_token(struct adm *a)
{
    uint8_t raw[GW_AUTH_TOKEN_BYTES];
    unsigned char b64[48];
    char bearer[8 + GW_AUTH_TOKEN_CHARS + 1];
    int rc = 0;

    if (RAND_bytes(raw, sizeof(raw)) != 1 || EVP_EncodeBlock(b64, raw, sizeof(raw)) != 44)
        rc = GW_ECRYPTO;
    for (size_t i = 0; rc == 0 && i < GW_AUTH_TOKEN_CHARS; i++)
        a->token[i] = b64[i] == '+' ? '-' : b64[i] == '/' ? '_' : (char)b64[i];
    a->token[GW_AUTH_TOKEN_CHARS] = '\0';
    snprintf(bearer, sizeof(bearer), "Bearer %s", a->token);
    if (rc == 0 && gw_auth_token_hash(bearer, a->token_hash) != 0)
        rc = GW_ECRYPTO;
    gw_wipe(raw, sizeof(raw));
    gw_wipe(b64, sizeof(b64));
    gw_wipe(bearer, sizeof(bearer));
    return rc;
}

static void login_verified_cb(void *arg, int lost)
{
    struct pwjob *j = arg;
    struct adm *a = j->a;
    const struct gw_config *cfg = a->app->cfg;
    const struct gw_principal *p = gw_call_principal(a->call);
    struct gw_acct_login_outcome o;
    const char *why;
    int err;

    if (gw_admin_job_lost(j, lost))
        return;

    a->job = NULL;
    a->ok =
        a->found && !a->cert_refused && !a->disabled && !a->inactive && !a->locked && j->verified;
    if (a->ok && j->upgrade) {
        /* A failed second hash keeps the old one: the login stands, the next one tries again. */
        a->rehashed = j->err == 0;
        if (a->rehashed)
            a->rehash = j->out;
        else
            GW_LOG(GW_LOG_WARN, "admin", gw_call_log_ctx(a->call),
                   "login: hashing the password again under [auth] scrypt_n failed (%s)",
                   gw_err_str(j->err));
    }
    why = !a->found         ? "unknown account"
          : a->cert_refused ? "certificate not usable for the account"
          : a->disabled     ? "account disabled"
          : a->inactive     ? "account unused past inactive_disable_days (Art. 38)"
          : a->locked       ? "account locked"
          : !j->verified    ? "wrong password"
          : a->must_change && a->rehashed
              ? "password must change; hashed again under [auth] scrypt_n"
          : a->must_change ? "password must change"
          : a->rehashed    ? "password hashed again under [auth] scrypt_n"
                           : NULL;
    gw_admin_job_free(j);
    if (make_token(a) != 0) { /* both outcomes draw a token: the same work either way */
        gw_admin_refuse(a, GW_ECRYPTO, NULL, GW_RULE_NONE, 0);
        return;
    }
    memset(&o, 0, sizeof(o));
    o.ok = a->ok;
    o.name = a->name;
    o.id = a->id;
    o.token_hash = a->token_hash;
    o.pw_hash = a->old_hash; /* the session only while the password is still this one */
    o.rehash = a->rehashed ? &a->rehash : NULL;
    o.ttl_s = cfg->token_ttl_s;
    o.sessions_max = GW_AUTH_SESSIONS_MAX;
    o.limited = a->must_change;
    o.uncounted = a->cert_refused; /* only guesses that could have opened the account count */
    o.peer = p->peer;
    o.cert = p->cert[0] ? p->cert : NULL;
    o.lockout_failures = cfg->lockout_failures;
    o.lockout_minutes = cfg->lockout_minutes;
    gw_admin_fill_log(a, &o.log, a->ok ? "ok" : "refused", why);
    login_rec(a, a->ok, &o.rec);
    err = gw_acct_login_finish(a->app->audit, &o, login_done_cb, a, &a->req);
    if (err != 0) {
        gw_admin_refuse_db(a, err);
        return;
    }
}

/* Whether the connection's certificate could carry a token of the account l (account.h's rule,
 * which the identity step applies to every token). The certificate principal's branch is
 * p->branch: a Login sent with a token has the token's account as principal, whose branch is the
 * certificate's (a branch account's token is honoured only over its own branch's certificate,
 * an administrative one only over a certificate registered for administration, which has no
 * branch). */
static bool cert_usable(const struct gw_principal *p, const struct gw_acct_login *l)
{
    return p->cert[0] != '\0' &&
           gw_account_usable_over(l->role, l->branch, p->branch, p->cert_admin);
}

/* Copies a password of the request into the job's wiped buffer (it fits: checked before). */
static void login_read_cb(void *arg, int err, const struct gw_acct_login *l)
{
    struct adm *a = arg;
    struct pwjob *j;
    struct gw_pw_params pp, now = gw_pw_params_default(a->app->cfg->scrypt_n);
    char params[GW_PW_PARAMS_MAX];
    uint8_t d[32];
    unsigned int dn = 0;
    char seed[128];

    a->req = NULL;
    gw_call_set_cancel(a->call, NULL, NULL);
    if (err != 0) {
        gw_admin_refuse_db(a, err);
        return;
    }
    j = gw_admin_job_new(a);
    if (j == NULL) {
        gw_admin_refuse(a, GW_ENOMEM, NULL, GW_RULE_NONE, 0);
        return;
    }
    gw_admin_take(j->pw, &j->pwn, a->pw);
    a->found = l->found;
    if (l->found) {
        snprintf(a->object, sizeof(a->object), "%s", a->name);
        a->id = l->id;
        a->locked = l->locked;
        a->disabled = l->disabled;
        a->inactive = l->inactive;
        a->must_change = l->must_change;
        snprintf(a->role, sizeof(a->role), "%s", l->role);
        snprintf(a->branch, sizeof(a->branch), "%s", l->branch);
        memcpy(a->old_hash, l->hash, sizeof(a->old_hash)); /* the gateway's copy, not the job's */
        memcpy(j->cur.hash, l->hash, sizeof(j->cur.hash));
        memcpy(j->cur.salt, l->salt, sizeof(j->cur.salt));
        snprintf(j->cur.params, sizeof(j->cur.params), "%s", l->params);
        a->cert_refused = !cert_usable(gw_call_principal(a->call), l);
    }
    if (l->found && !a->cert_refused && gw_admin_params_of(&j->cur, &pp)) {
        /* Hashed under other parameters (made with waygatectl's --scrypt-n, or before scrypt_n
         * changed): a Login costs another time than an unknown name's until it is hashed again,
         * which a right password does (login_work), in a second place of the share; only when
         * the login can succeed: on a locked, disabled or inactive account the second hash would
         * tell the right password from a wrong one by its time, guesses the lock does not count
         * included. */
        gw_pw_params_format(&now, params);
        j->upgrade =
            !a->locked && !a->disabled && !a->inactive && strcmp(params, j->cur.params) != 0;
        j->weight = j->upgrade ? 2 : 1;
    } else {
        /* A dummy hash under a salt derived from the name: the same cost as a real one. Over a
         * certificate the account could never be used through, the password is not checked:
         * the account's hash is replaced, and the refusal costs what an unknown name's does. */
        snprintf(seed, sizeof(seed), "waygate login dummy salt:%s", a->name);
        if (EVP_Digest(seed, strlen(seed), d, &dn, EVP_sha256(), NULL) != 1)
            memset(d, 0, sizeof(d));
        memcpy(j->cur.salt, d, sizeof(j->cur.salt));
        memset(j->cur.hash, 0, sizeof(j->cur.hash));
        gw_pw_params_format(&now, j->cur.params);
        j->dummy = true;
    }
    (void)gw_admin_submit(a, j, login_work, login_verified_cb);
}

void gw_api_admin_login(struct gw_call *call, const uint8_t *req, size_t len)
{
    struct adm *a = gw_admin_new(call, "Login");
    Waygate__V1__LoginRequest *in;
    int err;

    if (a == NULL)
        return;
    in = (Waygate__V1__LoginRequest *)gw_call_unpack(call, &waygate__v1__login_request__descriptor,
                                                     req, len);
    if (in == NULL)
        return;
    if (in->account[0] == '\0') {
        gw_admin_refuse(a, GW_EINVAL, "account", GW_RULE_REQUIRED, 0);
        return;
    }
    if (!gw_admin_copy_field(a->name, ACCOUNT_MAX + 1, in->account)) {
        gw_admin_refuse(a, GW_EINVAL, "account", GW_RULE_TOO_LONG, ACCOUNT_MAX);
        return;
    }
    if (!password_given(a, "password", in->password))
        return;
    a->pw = in->password;
    err = gw_acct_login_read(a->app->db, a->name, a->app->cfg->password_max_age_days,
                             a->app->cfg->inactive_disable_days, login_read_cb, a, &a->req);
    if (err != 0) {
        gw_admin_refuse_db(a, err);
        return;
    }
    gw_call_set_cancel(call, gw_admin_cancel_cb, a);
}

/* --- ChangePassword --- */

static int64_t expiry(const struct adm *a, int64_t set_at)
{
    uint32_t days = a->app->cfg->password_max_age_days;

    return days > 0 ? set_at + (int64_t)days * 86400 : 0;
}

static void changed_cb(void *arg, int err, bool changed, int64_t set_at)
{
    struct adm *a = arg;
    Waygate__V1__ChangePasswordResponse resp = WAYGATE__V1__CHANGE_PASSWORD_RESPONSE__INIT;

    a->req = NULL;
    gw_call_set_cancel(a->call, NULL, NULL);
    if (err != 0) {
        gw_admin_refuse_db(a, err);
        return;
    }
    /* Changed meanwhile by another call (the old password no longer holds), or the account
     * disabled or locked since its read: answered as a wrong old password, which counts nothing;
     * the lock's own answer would tell a guesser that this guess was right. */
    if (!changed) {
        gw_admin_refuse(a, GW_EPERM, "old_password", GW_RULE_PASSWORD_WRONG, 0);
        return;
    }
    resp.expires_at = expiry(a, set_at);
    err = gw_call_send(a->call, &resp.base);
    if (err != 0) {
        gw_call_fail(a->call, err, NULL, GW_RULE_NONE);
        return;
    }
    if (!gw_call_confidential(a->call)) /* a lawful_access account's: no line (call.h) */
        GW_LOG(GW_LOG_INFO, "admin", gw_call_log_ctx(a->call), "password changed: account %s",
               a->object);
    gw_call_finish(a->call, GW_GRPC_OK, NULL);
}

static void change_work(void *arg)
{
    struct pwjob *j = arg;

    j->verified = gw_admin_verify(j->pw, j->pwn, &j->cur);
    if (!j->verified)
        return;
    j->reused = gw_admin_verify(j->pw2, j->pw2n, &j->cur);
    for (size_t i = 0; !j->reused && i < j->nhist; i++)
        j->reused = gw_admin_verify(j->pw2, j->pw2n, &j->hist[i]);
    if (!j->reused)
        j->err = gw_admin_hash_new(j->pw2, j->pw2n, j->scrypt_n, &j->out);
}

static void pw_failed_cb(void *arg, int err, bool locked)
{
    struct adm *a = arg;
    struct gw_fault f;

    if (!counted(a, err, locked))
        return;
    /* its row and record were written with the count */
    (void)gw_fault_set(&f, GW_EPERM, NULL, "old_password", GW_RULE_PASSWORD_WRONG);
    gw_admin_finish_fault(a, &f, false);
}

/* A wrong old password counts as a failed login does (Art. 35): a token's holder (a captured
 * token) tries at most lockout_failures passwords before the account locks, and none while it is
 * locked, instead of guessing on through ChangePassword as long as the token lives. */
static void count_wrong_password(struct adm *a)
{
    const struct gw_config *cfg = a->app->cfg;
    struct gw_acct_pw_fail pf;
    struct gw_fault f;
    char msg[128];
    int err;

    (void)gw_fault_set(&f, GW_EPERM, NULL, "old_password", GW_RULE_PASSWORD_WRONG);
    gw_fault_format(&f, msg, sizeof(msg));
    memset(&pf, 0, sizeof(pf));
    pf.account_id = gw_call_principal(a->call)->account_id;
    pf.lockout_failures = cfg->lockout_failures;
    pf.lockout_minutes = cfg->lockout_minutes;
    gw_admin_fill_log(a, &pf.log, "refused", msg);
    gw_admin_fill_rec(a, &pf.rec, "password.change", "refused", msg);
    err = gw_acct_pw_fail(a->app->audit, &pf, pw_failed_cb, a, &a->req);
    if (err != 0) {
        gw_admin_refuse_db(a, err);
        return;
    }
    gw_call_set_cancel(a->call, gw_admin_cancel_cb, a);
}

/* The reused new password's answer, once the database confirms that the old password still held
 * after its hashes: the same password, and the account neither locked nor disabled meanwhile.
 * "reused" tells its caller that the old password was right, so a guess read before a lock and
 * hashed after it (five wrong guesses in flight beside the right one) is answered as a wrong old
 * password, counting nothing, as changed_cb answers a write the lock overtook (review). */
static void reuse_reread_cb(void *arg, int err, const struct gw_acct_pw *cur, bool locked,
                            const struct gw_acct_pw *hist, size_t nhist)
{
    struct adm *a = arg;

    (void)hist;
    (void)nhist;
    a->req = NULL;
    gw_call_set_cancel(a->call, NULL, NULL);
    if (err != 0) {
        gw_admin_refuse_db(a, err);
        return;
    }
    if (cur == NULL || locked || CRYPTO_memcmp(cur->hash, a->old_hash, sizeof(a->old_hash)) != 0) {
        gw_admin_refuse(a, GW_EPERM, "old_password", GW_RULE_PASSWORD_WRONG, 0);
        return;
    }
    gw_admin_refuse(a, GW_EINVAL, "new_password", GW_RULE_PASSWORD_REUSED, 0);
}

static void change_hashed_cb(void *arg, int lost)
{
    struct pwjob *j = arg;
    struct adm *a = j->a;
    struct gw_acct_pw_change c;
    uint8_t keep[32];
    int err;

    if (gw_admin_job_lost(j, lost))
        return;

    a->job = NULL;
    if (!j->verified) {
        gw_admin_job_free(j);
        count_wrong_password(a);
        return;
    }
    if (j->reused) {
        gw_admin_job_free(j);
        err = gw_acct_pw_read(a->app->db, gw_call_principal(a->call)->account_id, reuse_reread_cb,
                              a, &a->req);
        if (err != 0) {
            gw_admin_refuse_db(a, err);
            return;
        }
        gw_call_set_cancel(a->call, gw_admin_cancel_cb, a);
        return;
    }
    if (j->err != 0 || gw_auth_token_hash(gw_call_metadata(a->call, "authorization"), keep) != 0) {
        gw_admin_job_free(j);
        gw_admin_refuse(a, GW_EINTERNAL, NULL, GW_RULE_NONE, 0);
        return;
    }
    memset(&c, 0, sizeof(c));
    c.account_id = gw_call_principal(a->call)->account_id;
    c.old_hash = a->old_hash;
    c.new_pw = &j->out;
    c.keep_token_hash = keep;
    gw_admin_fill_log(a, &c.log, "ok", "other sessions of the account ended");
    gw_admin_fill_rec(a, &c.rec, "password.change", "ok", "other sessions of the account ended");
    err = gw_acct_pw_write(a->app->audit, &c, changed_cb, a, &a->req); /* copies what it needs */
    gw_admin_job_free(j);
    if (err != 0) {
        gw_admin_refuse_db(a, err);
        return;
    }
    gw_call_set_cancel(a->call, gw_admin_cancel_cb, a);
}

static void pw_read_cb(void *arg, int err, const struct gw_acct_pw *cur, bool locked,
                       const struct gw_acct_pw *hist, size_t nhist)
{
    struct adm *a = arg;
    struct pwjob *j;

    a->req = NULL;
    gw_call_set_cancel(a->call, NULL, NULL);
    if (err != 0) {
        gw_admin_refuse_db(a, err);
        return;
    }
    if (cur == NULL) { /* disabled since the identity step */
        gw_admin_refuse(a, GW_EAUTH, "authorization", GW_RULE_TOKEN_INVALID, 0);
        return;
    }
    if (locked) { /* no password is checked, so none is guessed, while the lock lasts */
        gw_admin_refuse(a, GW_EPRECOND, "old_password", GW_RULE_PASSWORD_LOCKED, 0);
        return;
    }
    j = gw_admin_job_new(a);
    if (j == NULL) {
        gw_admin_refuse(a, GW_ENOMEM, NULL, GW_RULE_NONE, 0);
        return;
    }
    gw_admin_take(j->pw, &j->pwn, a->pw);
    gw_admin_take(j->pw2, &j->pw2n, a->pw2);
    j->cur = *cur;
    memcpy(a->old_hash, cur->hash, sizeof(a->old_hash));
    for (size_t i = 0; i < nhist && i < GW_ACCT_HISTORY; i++)
        j->hist[j->nhist++] = hist[i];
    /* change_work's hashes at most: the old password, the new one against the current and each
     * remembered one, the new hash; a certificate's share counts them, not the calls (a new
     * password equal to the oldest remembered one costs all of them, is refused as reused and
     * counts no failure, so it could be sent without end) */
    _Static_assert(3 + GW_ACCT_HISTORY <= GW_API_AUTH_SHARE, "a change fits in a share");
    j->weight = (unsigned)(3 + j->nhist);
    (void)gw_admin_submit(a, j, change_work, change_hashed_cb);
}

void gw_api_admin_change_password(struct gw_call *call, const uint8_t *req, size_t len)
{
    struct adm *a = gw_admin_new(call, "ChangePassword");
    const struct gw_principal *p = gw_call_principal(call);
    Waygate__V1__ChangePasswordRequest *in;
    struct gw_fault f;
    int err;

    if (a == NULL)
        return;
    if (p->authn != GW_AUTHN_TOKEN) { /* a certificate has no password */
        gw_admin_refuse(a, GW_EAUTH, "authorization", GW_RULE_REQUIRED, 0);
        return;
    }
    snprintf(a->object, sizeof(a->object), "%s", p->name);
    in = (Waygate__V1__ChangePasswordRequest *)gw_call_unpack(
        call, &waygate__v1__change_password_request__descriptor, req, len);
    if (in == NULL)
        return;
    if (!password_given(a, "old_password", in->old_password))
        return;
    if (gw_pwpolicy_check(p->name, in->new_password, strlen(in->new_password), &f) != 0) {
        snprintf(f.field, sizeof(f.field), "new_password");
        gw_admin_finish_fault(a, &f, true);
        return;
    }
    a->pw = in->old_password;
    a->pw2 = in->new_password;
    err = gw_acct_pw_read(a->app->db, p->account_id, pw_read_cb, a, &a->req);
    if (err != 0) {
        gw_admin_refuse_db(a, err);
        return;
    }
    gw_call_set_cancel(call, gw_admin_cancel_cb, a);
}
