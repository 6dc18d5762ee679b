/* api_admin.c: waygate.v1.Admin: Login, ChangePassword, CreateAccount, DisableAccount (Art. 31,
 * 34, 35, 38); IssueSegment and RotateKey answer UNIMPLEMENTED. Password hashing runs on the
 * worker pool (workers.h), never on the loop.
 * Invariants: every Admin call that reaches a handler leaves exactly one administrative-record
 * row (in the transaction of its effect when it succeeds, on its own when refused); Login
 * answers an unknown account, a wrong password, a locked and a disabled account with the same
 * words after the same work (one database read, one scrypt, one database write); passwords and
 * tokens live in wiped memory only (the call's arena, the job's buffers) and never reach a log. */
#include <stdio.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/rand.h>

#include "waygate/v1/admin.pb-c.h"

#include "accounts.h"
#include "alloc.h"
#include "api.h"
#include "api_auth.h"
#include "app.h"
#include "config.h"
#include "incident.h"
#include "log.h"
#include "password.h"
#include "pwpolicy.h"
#include "workers.h"

#define TOKEN_BYTES 32
#define TOKEN_CHARS 43
#define REASON_MAX 256
#define PERSON_MAX 64

/* One Admin call (in the call's arena: gone when the call ends). */
struct adm {
    struct gw_call *call;
    struct gw_app *app;
    const char *action;
    struct gw_acct_req *req;
    struct gw_job *job;
    char object[72]; /* the account acted on; "" when none (an unknown Login name is not kept) */
    char name[72];   /* Login: the name asked for */
    /* Login: what the read found */
    bool found, locked, disabled, must_change;
    int64_t id;
    char token[TOKEN_CHARS + 1];
    uint8_t token_hash[32];
    bool ok;
    /* the request's passwords (in the call's arena, wiped when the call ends) */
    const char *pw, *pw2;
    /* ChangePassword */
    uint8_t old_hash[GW_PW_HASH_LEN];
    /* CreateAccount */
    char role[32], branch[32], person[PERSON_MAX + 1];
};

enum job_kind { JOB_VERIFY, JOB_CHANGE, JOB_HASH };

/* A worker's job: heap memory, wiped and freed by done or drop (workers.h). */
struct pwjob {
    struct adm *a;
    enum job_kind kind;
    char pw[GW_PWPOLICY_MAX_BYTES + 1];
    size_t pwn;
    char pw2[GW_PWPOLICY_MAX_BYTES + 1];
    size_t pw2n;
    struct gw_acct_pw cur;
    bool dummy; /* Login of an unknown account: the hash runs, nothing can match */
    struct gw_acct_pw hist[GW_ACCT_HISTORY];
    size_t nhist;
    uint64_t scrypt_n;
    /* results */
    bool verified, reused;
    int err;
    struct gw_acct_pw out;
};

static void job_free(void *arg)
{
    gw_free_wipe(arg, sizeof(struct pwjob));
}

static struct pwjob *job_new(struct adm *a, enum job_kind k)
{
    struct pwjob *j = gw_calloc(1, sizeof(*j));

    if (j != NULL) {
        j->a = a;
        j->kind = k;
        j->scrypt_n = a->app->cfg->scrypt_n;
    }
    return j;
}

static void cancel_cb(void *arg)
{
    struct adm *a = arg;

    gw_acct_cancel(a->req);
    a->req = NULL;
    gw_workers_cancel(a->job); /* drops the job (job_free) once no thread uses it */
    a->job = NULL;
}

static struct adm *adm_new(struct gw_call *call, const char *action)
{
    struct adm *a = gw_arena_alloc(gw_call_arena(call), sizeof(*a));

    if (a == NULL) {
        gw_call_fail(call, GW_ENOMEM, NULL, GW_RULE_NONE);
        return NULL;
    }
    memset(a, 0, sizeof(*a));
    a->call = call;
    a->app = gw_call_app(call);
    a->action = action;
    return a;
}

static void fill_log(const struct adm *a, struct gw_acct_log *l, const char *outcome,
                     const char *detail)
{
    const struct gw_principal *p = gw_call_principal(a->call);

    memset(l, 0, sizeof(*l));
    l->actor = p->name[0] ? p->name : "(unauthenticated)";
    l->role = p->role[0] ? p->role : NULL;
    l->cert = p->cert[0] ? p->cert : NULL;
    l->peer = p->peer[0] ? p->peer : NULL;
    l->via = "grpc";
    l->action = a->action;
    l->object = a->object[0] ? a->object : NULL;
    l->outcome = outcome;
    l->detail = detail;
}

/* Ends the call with the fault; with record, also writes its administrative-record row. */
static void finish_fault(struct adm *a, const struct gw_fault *f, bool record)
{
    struct gw_acct_log l;
    char msg[256];
    bool error = f->code == GW_EUNAVAIL || f->code == GW_EINTERNAL || f->code == GW_ENOMEM ||
                 f->code == GW_ECRYPTO;

    gw_call_set_cancel(a->call, NULL, NULL);
    if (record) {
        gw_fault_format(f, msg, sizeof(msg));
        fill_log(a, &l, error ? "error" : "refused", msg);
        if (gw_acct_log_write(a->app->db, &l) != 0)
            GW_LOG(GW_LOG_ERROR, "admin", gw_call_log_ctx(a->call),
                   "the administrative-record row of %s was not queued", a->action);
    }
    gw_call_finish_fault(a->call, f);
}

static void refuse(struct adm *a, int err, const char *field, enum gw_rule rule,
                   unsigned long limit)
{
    struct gw_fault f;

    (void)gw_fault_set(&f, err, NULL, field, rule);
    f.limit = limit;
    finish_fault(a, &f, true);
}

static void refuse_db(struct adm *a, int err)
{
    refuse(a, err, NULL, err == GW_EUNAVAIL ? GW_RULE_DB_UNAVAILABLE : GW_RULE_NONE, 0);
}

static bool submit(struct adm *a, struct pwjob *j, gw_job_fn work, gw_job_fn done)
{
    int err = gw_workers_submit(a->app->workers, work, done, job_free, j, &a->job);

    if (err != 0) {
        job_free(j);
        if (err == GW_ETOOBIG)
            refuse(a, GW_ETOOBIG, NULL, GW_RULE_BUSY, GW_API_AUTH_QUEUE);
        else
            refuse(a, err, NULL, GW_RULE_NONE, 0);
        return false;
    }
    gw_call_set_cancel(a->call, cancel_cb, a);
    return true;
}

static bool params_of(const struct gw_acct_pw *pw, struct gw_pw_params *pp)
{
    return gw_pw_params_parse(pw->params, pp) == 0;
}

static bool verify(const char *pw, size_t n, const struct gw_acct_pw *h)
{
    struct gw_pw_params pp;

    return params_of(h, &pp) && gw_pw_verify(pw, n, h->salt, &pp, h->hash);
}

/* A string field of at most max bytes into out (max + 1 bytes); false when too long. */
static bool copy_field(char *out, size_t outsz, const char *s)
{
    size_t n = s != NULL ? strlen(s) : 0;

    if (n >= outsz)
        return false;
    memcpy(out, s != NULL ? s : "", n);
    out[n] = '\0';
    return true;
}

/* --- Login --- */

static void login_done_cb(void *arg, int err, bool created, int64_t expires_at)
{
    struct adm *a = arg;
    Waygate__V1__LoginResponse resp = WAYGATE__V1__LOGIN_RESPONSE__INIT;
    struct gw_fault f;

    a->req = NULL;
    gw_call_set_cancel(a->call, NULL, NULL);
    if (err != 0) {
        refuse_db(a, err);
        return;
    }
    if (!a->ok || !created) {
        /* The row was written with the outcome; the words are the same for every cause. */
        (void)gw_fault_set(&f, GW_EAUTH, NULL, NULL, GW_RULE_LOGIN_REFUSED);
        finish_fault(a, &f, false);
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
    GW_LOG(GW_LOG_INFO, "admin", gw_call_log_ctx(a->call), "login: account %s%s", a->object,
           a->must_change ? " (password must change)" : "");
    gw_call_finish(a->call, GW_GRPC_OK, NULL);
}

static void login_work(void *arg)
{
    struct pwjob *j = arg;

    /* One scrypt whatever the account: an unknown name hashes against a dummy salt. */
    j->verified = verify(j->pw, j->pwn, &j->cur) && !j->dummy;
}

/* 32 random bytes, base64url without padding. */
static int make_token(struct adm *a)
{
    uint8_t raw[TOKEN_BYTES];
    unsigned char b64[48];
    char bearer[8 + TOKEN_CHARS + 1];
    int rc = 0;

    if (RAND_bytes(raw, sizeof(raw)) != 1 || EVP_EncodeBlock(b64, raw, sizeof(raw)) != 44)
        rc = GW_ECRYPTO;
    for (size_t i = 0; rc == 0 && i < TOKEN_CHARS; i++)
        a->token[i] = b64[i] == '+' ? '-' : b64[i] == '/' ? '_' : (char)b64[i];
    a->token[TOKEN_CHARS] = '\0';
    snprintf(bearer, sizeof(bearer), "Bearer %s", a->token);
    if (rc == 0 && gw_auth_token_hash(bearer, a->token_hash) != 0)
        rc = GW_ECRYPTO;
    gw_wipe(raw, sizeof(raw));
    gw_wipe(b64, sizeof(b64));
    gw_wipe(bearer, sizeof(bearer));
    return rc;
}

static void login_verified_cb(void *arg)
{
    struct pwjob *j = arg;
    struct adm *a = j->a;
    const struct gw_config *cfg = a->app->cfg;
    const struct gw_principal *p = gw_call_principal(a->call);
    struct gw_acct_login_outcome o;
    const char *why;
    int err;

    a->job = NULL;
    a->ok = a->found && !a->disabled && !a->locked && j->verified;
    why = !a->found        ? "unknown account"
          : a->disabled    ? "account disabled"
          : a->locked      ? "account locked"
          : !j->verified   ? "wrong password"
          : a->must_change ? "password must change"
                           : NULL;
    job_free(j);
    if (make_token(a) != 0) { /* both outcomes draw a token: the same work either way */
        refuse(a, GW_ECRYPTO, NULL, GW_RULE_NONE, 0);
        return;
    }
    memset(&o, 0, sizeof(o));
    o.ok = a->ok;
    o.name = a->name;
    o.id = a->id;
    o.token_hash = a->token_hash;
    o.ttl_s = cfg->token_ttl_s;
    o.limited = a->must_change;
    o.peer = p->peer;
    o.cert = p->cert[0] ? p->cert : NULL;
    o.lockout_failures = cfg->lockout_failures;
    o.lockout_minutes = cfg->lockout_minutes;
    fill_log(a, &o.log, a->ok ? "ok" : "refused", why);
    err = gw_acct_login_finish(a->app->db, &o, login_done_cb, a, &a->req);
    if (err != 0) {
        refuse_db(a, err);
        return;
    }
}

/* Copies a password of the request into the job's wiped buffer (it fits: checked before). */
static void take(char *dst, size_t *dn, const char *src)
{
    size_t n = src != NULL ? strlen(src) : 0;

    if (n > GW_PWPOLICY_MAX_BYTES)
        n = GW_PWPOLICY_MAX_BYTES;
    memcpy(dst, src != NULL ? src : "", n);
    dst[n] = '\0';
    *dn = n;
}

static void login_read_cb(void *arg, int err, const struct gw_acct_login *l)
{
    struct adm *a = arg;
    struct pwjob *j;
    struct gw_pw_params pp;
    uint8_t d[32];
    unsigned int dn = 0;
    char seed[128];

    a->req = NULL;
    gw_call_set_cancel(a->call, NULL, NULL);
    if (err != 0) {
        refuse_db(a, err);
        return;
    }
    j = job_new(a, JOB_VERIFY);
    if (j == NULL) {
        refuse(a, GW_ENOMEM, NULL, GW_RULE_NONE, 0);
        return;
    }
    take(j->pw, &j->pwn, a->pw);
    a->found = l->found;
    if (l->found) {
        snprintf(a->object, sizeof(a->object), "%s", a->name);
        a->id = l->id;
        a->locked = l->locked;
        a->disabled = l->disabled;
        a->must_change = l->must_change;
        memcpy(j->cur.hash, l->hash, sizeof(j->cur.hash));
        memcpy(j->cur.salt, l->salt, sizeof(j->cur.salt));
        snprintf(j->cur.params, sizeof(j->cur.params), "%s", l->params);
    }
    if (!l->found || !params_of(&j->cur, &pp)) {
        /* A dummy hash under a salt derived from the name: the same cost as a real one. */
        snprintf(seed, sizeof(seed), "waygate login dummy salt:%s", a->name);
        if (EVP_Digest(seed, strlen(seed), d, &dn, EVP_sha256(), NULL) != 1)
            memset(d, 0, sizeof(d));
        memcpy(j->cur.salt, d, sizeof(j->cur.salt));
        memset(j->cur.hash, 0, sizeof(j->cur.hash));
        pp = gw_pw_params_default(a->app->cfg->scrypt_n);
        gw_pw_params_format(&pp, j->cur.params);
        j->dummy = true;
    }
    (void)submit(a, j, login_work, login_verified_cb);
}

void gw_api_admin_login(struct gw_call *call, const uint8_t *req, size_t len)
{
    struct adm *a = adm_new(call, "Login");
    Waygate__V1__LoginRequest *in;
    int err;

    if (a == NULL)
        return;
    in = (Waygate__V1__LoginRequest *)gw_call_unpack(call, &waygate__v1__login_request__descriptor,
                                                     req, len);
    if (in == NULL)
        return;
    if (in->account[0] == '\0') {
        refuse(a, GW_EINVAL, "account", GW_RULE_REQUIRED, 0);
        return;
    }
    if (!copy_field(a->name, 65, in->account)) {
        refuse(a, GW_EINVAL, "account", GW_RULE_TOO_LONG, 64);
        return;
    }
    if (in->password[0] == '\0') {
        refuse(a, GW_EINVAL, "password", GW_RULE_REQUIRED, 0);
        return;
    }
    if (strlen(in->password) > GW_PWPOLICY_MAX_BYTES) {
        refuse(a, GW_EINVAL, "password", GW_RULE_TOO_LONG, GW_PWPOLICY_MAX_BYTES);
        return;
    }
    a->pw = in->password;
    err = gw_acct_login_read(a->app->db, a->name, a->app->cfg->password_max_age_days, login_read_cb,
                             a, &a->req);
    if (err != 0) {
        refuse_db(a, err);
        return;
    }
    gw_call_set_cancel(call, cancel_cb, a);
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
        refuse_db(a, err);
        return;
    }
    if (!changed) { /* changed meanwhile by another call: the old password no longer holds */
        refuse(a, GW_EPERM, "old_password", GW_RULE_PASSWORD_WRONG, 0);
        return;
    }
    resp.expires_at = expiry(a, set_at);
    err = gw_call_send(a->call, &resp.base);
    if (err != 0) {
        gw_call_fail(a->call, err, NULL, GW_RULE_NONE);
        return;
    }
    GW_LOG(GW_LOG_INFO, "admin", gw_call_log_ctx(a->call), "password changed: account %s",
           a->object);
    gw_call_finish(a->call, GW_GRPC_OK, NULL);
}

static void change_work(void *arg)
{
    struct pwjob *j = arg;
    struct gw_pw_params pp = gw_pw_params_default(j->scrypt_n);

    j->verified = verify(j->pw, j->pwn, &j->cur);
    if (!j->verified)
        return;
    j->reused = verify(j->pw2, j->pw2n, &j->cur);
    for (size_t i = 0; !j->reused && i < j->nhist; i++)
        j->reused = verify(j->pw2, j->pw2n, &j->hist[i]);
    if (j->reused)
        return;
    gw_pw_params_format(&pp, j->out.params);
    j->err = gw_pw_salt(j->out.salt);
    if (j->err == 0)
        j->err = gw_pw_hash(j->pw2, j->pw2n, j->out.salt, &pp, j->out.hash);
}

static void change_hashed_cb(void *arg)
{
    struct pwjob *j = arg;
    struct adm *a = j->a;
    struct gw_acct_pw_change c;
    uint8_t keep[32];
    int err;

    a->job = NULL;
    if (!j->verified) {
        job_free(j);
        refuse(a, GW_EPERM, "old_password", GW_RULE_PASSWORD_WRONG, 0);
        return;
    }
    if (j->reused) {
        job_free(j);
        refuse(a, GW_EINVAL, "new_password", GW_RULE_PASSWORD_REUSED, 0);
        return;
    }
    if (j->err != 0 || gw_auth_token_hash(gw_call_metadata(a->call, "authorization"), keep) != 0) {
        job_free(j);
        refuse(a, GW_EINTERNAL, NULL, GW_RULE_NONE, 0);
        return;
    }
    memset(&c, 0, sizeof(c));
    c.account_id = gw_call_principal(a->call)->account_id;
    c.old_hash = a->old_hash;
    c.new_pw = &j->out;
    c.keep_token_hash = keep;
    fill_log(a, &c.log, "ok", "other sessions of the account ended");
    err = gw_acct_pw_write(a->app->db, &c, changed_cb, a, &a->req); /* copies what it needs */
    job_free(j);
    if (err != 0) {
        refuse_db(a, err);
        return;
    }
    gw_call_set_cancel(a->call, cancel_cb, a);
}

static void pw_read_cb(void *arg, int err, const struct gw_acct_pw *cur,
                       const struct gw_acct_pw *hist, size_t nhist)
{
    struct adm *a = arg;
    struct pwjob *j;

    a->req = NULL;
    gw_call_set_cancel(a->call, NULL, NULL);
    if (err != 0) {
        refuse_db(a, err);
        return;
    }
    if (cur == NULL) { /* disabled since the identity step */
        refuse(a, GW_EAUTH, "authorization", GW_RULE_TOKEN_INVALID, 0);
        return;
    }
    j = job_new(a, JOB_CHANGE);
    if (j == NULL) {
        refuse(a, GW_ENOMEM, NULL, GW_RULE_NONE, 0);
        return;
    }
    take(j->pw, &j->pwn, a->pw);
    take(j->pw2, &j->pw2n, a->pw2);
    j->cur = *cur;
    memcpy(a->old_hash, cur->hash, sizeof(a->old_hash));
    for (size_t i = 0; i < nhist && i < GW_ACCT_HISTORY; i++)
        j->hist[j->nhist++] = hist[i];
    (void)submit(a, j, change_work, change_hashed_cb);
}

void gw_api_admin_change_password(struct gw_call *call, const uint8_t *req, size_t len)
{
    struct adm *a = adm_new(call, "ChangePassword");
    const struct gw_principal *p = gw_call_principal(call);
    Waygate__V1__ChangePasswordRequest *in;
    struct gw_fault f;
    int err;

    if (a == NULL)
        return;
    if (p->authn != GW_AUTHN_TOKEN) { /* a certificate has no password */
        refuse(a, GW_EAUTH, "authorization", GW_RULE_REQUIRED, 0);
        return;
    }
    snprintf(a->object, sizeof(a->object), "%s", p->name);
    in = (Waygate__V1__ChangePasswordRequest *)gw_call_unpack(
        call, &waygate__v1__change_password_request__descriptor, req, len);
    if (in == NULL)
        return;
    if (in->old_password[0] == '\0') {
        refuse(a, GW_EINVAL, "old_password", GW_RULE_REQUIRED, 0);
        return;
    }
    if (strlen(in->old_password) > GW_PWPOLICY_MAX_BYTES) {
        refuse(a, GW_EINVAL, "old_password", GW_RULE_TOO_LONG, GW_PWPOLICY_MAX_BYTES);
        return;
    }
    if (gw_pwpolicy_check(p->name, in->new_password, strlen(in->new_password), &f) != 0) {
        snprintf(f.field, sizeof(f.field), "new_password");
        finish_fault(a, &f, true);
        return;
    }
    a->pw = in->old_password;
    a->pw2 = in->new_password;
    err = gw_acct_pw_read(a->app->db, p->account_id, pw_read_cb, a, &a->req);
    if (err != 0) {
        refuse_db(a, err);
        return;
    }
    gw_call_set_cancel(call, cancel_cb, a);
}

/* --- CreateAccount --- */

static bool account_name_ok(const char *s)
{
    size_t n = strlen(s);

    if (n < 3 || n > 64)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '.' ||
              s[i] == '_' || s[i] == '-'))
            return false;
    return true;
}

static bool branch_ok(const char *s)
{
    size_t n = strlen(s);

    if (n < 1 || n > 31)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
              (s[i] >= '0' && s[i] <= '9') || s[i] == '_' || s[i] == '-'))
            return false;
    return true;
}

static const char *const account_roles[] = {
    "branch_clerk",   "customer_service", "compliance_auditor",
    "security_admin", "system_admin",     "lawful_access",
};

static bool account_role_ok(const char *r)
{
    for (size_t i = 0; i < sizeof(account_roles) / sizeof(account_roles[0]); i++)
        if (strcmp(account_roles[i], r) == 0)
            return true;
    return false;
}

static bool branch_role(const char *r)
{
    return strcmp(r, "branch_clerk") == 0 || strcmp(r, "customer_service") == 0;
}

static void created_cb(void *arg, int err, enum gw_acct_create_result r, int64_t created_at)
{
    struct adm *a = arg;
    Waygate__V1__CreateAccountResponse resp = WAYGATE__V1__CREATE_ACCOUNT_RESPONSE__INIT;
    const struct gw_principal *p = gw_call_principal(a->call);
    struct gw_incident inc;
    char detail[128];

    a->req = NULL;
    gw_call_set_cancel(a->call, NULL, NULL);
    if (err != 0) {
        refuse_db(a, err);
        return;
    }
    if (r == GW_ACCT_NAME_TAKEN) {
        refuse(a, GW_EEXIST, "account", GW_RULE_ACCOUNT_EXISTS, 0);
        return;
    }
    if (r == GW_ACCT_SEPARATION_OF_DUTIES) {
        /* Art. 34 (三员): an attempt is an incident, not only a refusal. */
        snprintf(detail, sizeof(detail),
                 "CreateAccount of role %s for a person holding another administrator role",
                 a->role);
        memset(&inc, 0, sizeof(inc));
        inc.severity = "high";
        inc.kind = "separation_of_duties";
        inc.principal = p->name;
        inc.peer = p->peer;
        inc.detail = detail;
        if (gw_incident_record(a->app->incidents, &inc) != 0)
            GW_LOG(GW_LOG_ERROR, "admin", gw_call_log_ctx(a->call),
                   "separation-of-duties incident not recorded");
        refuse(a, GW_EPERM, "role", GW_RULE_SEPARATION_OF_DUTIES, 0);
        return;
    }
    resp.account = a->object;
    resp.created_at = created_at;
    err = gw_call_send(a->call, &resp.base);
    if (err != 0) {
        gw_call_fail(a->call, err, NULL, GW_RULE_NONE);
        return;
    }
    GW_LOG(GW_LOG_INFO, "admin", gw_call_log_ctx(a->call), "account created: %s (%s)", a->object,
           a->role);
    gw_call_finish(a->call, GW_GRPC_OK, NULL);
}

static void hash_work(void *arg)
{
    struct pwjob *j = arg;
    struct gw_pw_params pp = gw_pw_params_default(j->scrypt_n);

    gw_pw_params_format(&pp, j->out.params);
    j->err = gw_pw_salt(j->out.salt);
    if (j->err == 0)
        j->err = gw_pw_hash(j->pw, j->pwn, j->out.salt, &pp, j->out.hash);
}

static void create_hashed_cb(void *arg)
{
    struct pwjob *j = arg;
    struct adm *a = j->a;
    const struct gw_principal *p = gw_call_principal(a->call);
    struct gw_acct_new n;
    int err;

    a->job = NULL;
    if (j->err != 0) {
        job_free(j);
        refuse(a, GW_EINTERNAL, NULL, GW_RULE_NONE, 0);
        return;
    }
    memset(&n, 0, sizeof(n));
    n.name = a->object;
    n.person = a->person;
    n.role = a->role;
    n.branch = a->branch[0] ? a->branch : NULL;
    n.pw = &j->out;
    n.created_by = p->name;
    fill_log(a, &n.log, "ok", a->role);
    err = gw_acct_create(a->app->db, &n, created_cb, a, &a->req); /* copies what it needs */
    job_free(j);
    if (err != 0) {
        refuse_db(a, err);
        return;
    }
    gw_call_set_cancel(a->call, cancel_cb, a);
}

void gw_api_admin_create_account(struct gw_call *call, const uint8_t *req, size_t len)
{
    struct adm *a = adm_new(call, "CreateAccount");
    Waygate__V1__CreateAccountRequest *in;
    struct pwjob *j;
    struct gw_fault f;

    if (a == NULL)
        return;
    in = (Waygate__V1__CreateAccountRequest *)gw_call_unpack(
        call, &waygate__v1__create_account_request__descriptor, req, len);
    if (in == NULL)
        return;
    if (!account_name_ok(in->account)) {
        refuse(a, GW_EINVAL, "account", GW_RULE_ACCOUNT_NAME, 0);
        return;
    }
    snprintf(a->object, sizeof(a->object), "%s", in->account);
    if (!account_role_ok(in->role)) {
        refuse(a, GW_EINVAL, "role", GW_RULE_ACCOUNT_ROLE, 0);
        return;
    }
    snprintf(a->role, sizeof(a->role), "%s", in->role);
    if (branch_role(in->role) ? !branch_ok(in->branch) : in->branch[0] != '\0') {
        refuse(a, GW_EINVAL, "branch", GW_RULE_ACCOUNT_BRANCH, 0);
        return;
    }
    snprintf(a->branch, sizeof(a->branch), "%s", in->branch);
    if (!copy_field(a->person, sizeof(a->person), in->person[0] ? in->person : in->account)) {
        refuse(a, GW_EINVAL, "person", GW_RULE_TOO_LONG, PERSON_MAX);
        return;
    }
    if (gw_pwpolicy_check(in->account, in->initial_password, strlen(in->initial_password), &f) !=
        0) {
        snprintf(f.field, sizeof(f.field), "initial_password");
        finish_fault(a, &f, true);
        return;
    }
    j = job_new(a, JOB_HASH);
    if (j == NULL) {
        refuse(a, GW_ENOMEM, NULL, GW_RULE_NONE, 0);
        return;
    }
    take(j->pw, &j->pwn, in->initial_password);
    (void)submit(a, j, hash_work, create_hashed_cb);
}

/* --- DisableAccount --- */

static void disabled_cb(void *arg, int err, bool found, int64_t disabled_at)
{
    struct adm *a = arg;
    Waygate__V1__DisableAccountResponse resp = WAYGATE__V1__DISABLE_ACCOUNT_RESPONSE__INIT;

    a->req = NULL;
    gw_call_set_cancel(a->call, NULL, NULL);
    if (err != 0) {
        refuse_db(a, err);
        return;
    }
    if (!found) {
        refuse(a, GW_ENOTFOUND, "account", GW_RULE_ACCOUNT_UNKNOWN, 0);
        return;
    }
    resp.account = a->object;
    resp.disabled_at = disabled_at;
    err = gw_call_send(a->call, &resp.base);
    if (err != 0) {
        gw_call_fail(a->call, err, NULL, GW_RULE_NONE);
        return;
    }
    GW_LOG(GW_LOG_INFO, "admin", gw_call_log_ctx(a->call),
           "account disabled: %s (its sessions ended)", a->object);
    gw_call_finish(a->call, GW_GRPC_OK, NULL);
}

void gw_api_admin_disable_account(struct gw_call *call, const uint8_t *req, size_t len)
{
    struct adm *a = adm_new(call, "DisableAccount");
    const struct gw_principal *p = gw_call_principal(call);
    Waygate__V1__DisableAccountRequest *in;
    struct gw_acct_log l;
    int err;

    if (a == NULL)
        return;
    in = (Waygate__V1__DisableAccountRequest *)gw_call_unpack(
        call, &waygate__v1__disable_account_request__descriptor, req, len);
    if (in == NULL)
        return;
    if (in->account[0] == '\0') {
        refuse(a, GW_EINVAL, "account", GW_RULE_REQUIRED, 0);
        return;
    }
    if (!copy_field(a->object, 65, in->account)) {
        refuse(a, GW_ENOTFOUND, "account", GW_RULE_ACCOUNT_UNKNOWN, 0);
        return;
    }
    if (in->reason[0] == '\0') {
        refuse(a, GW_EINVAL, "reason", GW_RULE_REQUIRED, 0);
        return;
    }
    if (strlen(in->reason) > REASON_MAX) {
        refuse(a, GW_EINVAL, "reason", GW_RULE_TOO_LONG, REASON_MAX);
        return;
    }
    fill_log(a, &l, "ok", in->reason);
    err = gw_acct_disable(a->app->db, a->object, p->name, in->reason, &l, disabled_cb, a, &a->req);
    if (err != 0) {
        refuse_db(a, err);
        return;
    }
    gw_call_set_cancel(call, cancel_cb, a);
}

/* --- not built yet: refused, and recorded like every Admin call --- */

void gw_api_admin_issue_segment(struct gw_call *call, const uint8_t *req, size_t len)
{
    struct adm *a = adm_new(call, "IssueSegment");

    (void)req;
    (void)len;
    if (a != NULL)
        refuse(a, GW_EUNIMPL, "/waygate.v1.Admin/IssueSegment", GW_RULE_NOT_IMPLEMENTED, 0);
}

void gw_api_admin_rotate_key(struct gw_call *call, const uint8_t *req, size_t len)
{
    struct adm *a = adm_new(call, "RotateKey");

    (void)req;
    (void)len;
    if (a != NULL)
        refuse(a, GW_EUNIMPL, "/waygate.v1.Admin/RotateKey", GW_RULE_NOT_IMPLEMENTED, 0);
}
