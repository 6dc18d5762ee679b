/* api_admin_util.c: the Admin handlers' shared helpers (api_admin_int.h): per-call state in the
 * call's arena, password jobs on the worker pool, and refusals that write their
 * administrative-record row and audit record together. Invariant: a refusal ends the call after
 * clearing its cancel hook; a job is wiped whenever it is freed. */
#include <stdio.h>
#include <string.h>

#include "alloc.h"
#include "api.h"
#include "api_admin_int.h"
#include "api_record.h"
#include "app.h"
#include "audit.h"
#include "config.h"
#include "log.h"
#include "policy.h"
#include "refusals.h"
#include "text.h"

_Static_assert(sizeof(struct pwjob) <= GW_API_AUTH_ARG_MAX, "a password job outgrew its slot");

void gw_admin_job_free(void *arg)
{
    gw_free_wipe(arg, sizeof(struct pwjob));
}

struct pwjob *gw_admin_job_new(struct adm *a)
{
    struct pwjob *j = gw_calloc(1, sizeof(*j));

    if (j != NULL) {
        j->a = a;
        j->scrypt_n = a->app->cfg->scrypt_n;
        j->share = -1;
        j->weight = 1;
    }
    return j;
}

/* ---- one certificate's share of the hashing queue ---- */

_Static_assert(GW_APP_PWSHARE_SLOTS >= GW_API_AUTH_QUEUE + 64, "a share slot per job in flight");

int gw_admin_share_take(struct gw_app_pwshare *slots, size_t nslots, const char *cert,
                        unsigned weight, struct gw_fault *f)
{
    size_t free_slot = nslots;

    for (size_t i = 0; i < nslots; i++) {
        struct gw_app_pwshare *s = &slots[i];

        if (s->n > 0 && strcmp(s->cert, cert) == 0) {
            if (s->n + weight > GW_API_AUTH_SHARE) {
                (void)gw_fault_set(f, GW_ETOOBIG, NULL, NULL, GW_RULE_BUSY_CERT);
                f->limit = GW_API_AUTH_SHARE;
                return -1;
            }
            s->n += weight;
            return (int)i;
        }
        if (s->n == 0 && free_slot == nslots)
            free_slot = i;
    }
    if (free_slot == nslots) { /* as many certificates as slots have jobs in flight */
        (void)gw_fault_set(f, GW_ETOOBIG, NULL, NULL, GW_RULE_BUSY);
        f->limit = GW_API_AUTH_QUEUE;
        return -1;
    }
    gw_text_copy(slots[free_slot].cert, sizeof(slots[free_slot].cert), cert);
    slots[free_slot].n = weight;
    return (int)free_slot;
}

void gw_admin_share_give(struct gw_app_pwshare *slots, int slot, unsigned weight)
{
    if (slot >= 0)
        slots[slot].n -= weight <= slots[slot].n ? weight : slots[slot].n;
}

static void share_give(struct pwjob *j)
{
    gw_admin_share_give(j->a->app->pwshare, j->share, j->weight);
    j->share = -1;
}

/* The pool's done and drop for every password job: the place is given back first. */
static void job_done(void *arg, int err)
{
    struct pwjob *j = arg;

    share_give(j);
    j->done(arg, err);
}

static void job_drop(void *arg)
{
    share_give(arg);
    gw_admin_job_free(arg);
}

void gw_admin_cancel_cb(void *arg)
{
    struct adm *a = arg;

    gw_acct_cancel(a->req);
    a->req = NULL;
    gw_workers_cancel(a->job); /* drops the job (gw_admin_job_free) once no thread uses it */
    a->job = NULL;
}

/* The audit action of an Admin method's refusal (and, but for Login, of its success). */
static const char *audit_action_of(const char *method)
{
    static const struct {
        const char *method, *action;
    } map[] = {
        {"Login", "login.fail"},
        {"ChangePassword", "password.change"},
        {"CreateAccount", "account.create"},
        {"DisableAccount", "account.disable"},
    };

    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
        if (strcmp(method, map[i].method) == 0)
            return map[i].action;
    return "admin.refused";
}

struct adm *gw_admin_new(struct gw_call *call, const char *action)
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
    a->audit_action = audit_action_of(action);
    return a;
}

void gw_admin_fill_log(const struct adm *a, struct gw_acct_log *l, const char *outcome,
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

void gw_admin_fill_rec(const struct adm *a, struct gw_audit_rec *r, const char *action,
                       const char *outcome, const char *detail)
{
    gw_api_record_init(a->call, action, r);
    if (r->actor[0] == '\0')
        r->actor = "(unauthenticated)";
    r->object = a->object[0] ? a->object : NULL;
    r->outcome = outcome;
    r->detail = detail;
}

void gw_admin_record_refusal(struct gw_app *app, const struct gw_acct_log *l, const char *action,
                             const char *branch)
{
    struct gw_audit_rec r;

    memset(&r, 0, sizeof(r));
    r.actor = l->actor;
    r.role = l->role;
    r.cert = l->cert;
    r.peer = l->peer;
    r.branch = branch != NULL && branch[0] ? branch : NULL;
    r.action = action != NULL ? action : "admin.refused";
    /* admin.refused names the method refused; the other actions name what they act on */
    r.object = action != NULL ? l->object : l->action;
    r.count = -1;
    r.outcome = strcmp(l->outcome, "error") == 0 ? "failed" : "refused";
    r.detail = l->detail;
    /* refused over a lawful_access account's token: its call is confidential (call.c, confide) */
    r.confidential = l->role != NULL && gw_policy_confidential_role(l->role);
    if (app->refusals != NULL) {
        gw_refusals_record(app->refusals, l, &r); /* a flood of them is counted, not queued */
        return;
    }
    /* (an app without the bounded writer: a test harness's) */
    if (gw_acct_log_write(app->audit, l, &r) != 0)
        GW_LOG(GW_LOG_ERROR, "admin", NULL,
               "the administrative-record row and audit record of a refused %s were not queued",
               l->action);
}

/* Login refusals are recorded with the reason's class (login.fail), the others with the
 * refusal's message (field and rule, never a value). */
void gw_admin_finish_fault(struct adm *a, const struct gw_fault *f, bool record)
{
    const struct gw_principal *p = gw_call_principal(a->call);
    struct gw_acct_log l;
    char msg[256];
    bool error = f->code == GW_EUNAVAIL || f->code == GW_EQUEUEFULL || f->code == GW_EINTERNAL ||
                 f->code == GW_ENOMEM || f->code == GW_ECRYPTO;

    gw_call_set_cancel(a->call, NULL, NULL);
    if (record) {
        gw_fault_format(f, msg, sizeof(msg));
        gw_admin_fill_log(a, &l, error ? "error" : "refused", msg);
        gw_admin_record_refusal(
            a->app, &l, strcmp(a->audit_action, "admin.refused") == 0 ? NULL : a->audit_action,
            p->branch);
    }
    gw_call_finish_fault(a->call, f);
}

void gw_admin_refuse(struct adm *a, int err, const char *field, enum gw_rule rule,
                     unsigned long limit)
{
    struct gw_fault f;

    (void)gw_fault_set(&f, err, NULL, field, rule);
    f.limit = limit;
    gw_admin_finish_fault(a, &f, true);
}

void gw_admin_db_fault(int err, struct gw_fault *f)
{
    /* a full queue (GW_EQUEUEFULL) is worded by err.c like every other one */
    (void)gw_fault_set(f, err, NULL, NULL,
                       err == GW_EUNAVAIL ? GW_RULE_DB_UNAVAILABLE : GW_RULE_NONE);
}

void gw_admin_refuse_db(struct adm *a, int err)
{
    struct gw_fault f;

    gw_admin_db_fault(err, &f);
    gw_admin_finish_fault(a, &f, true);
}

bool gw_admin_submit(struct adm *a, struct pwjob *j, gw_job_fn work, gw_job_done_fn done)
{
    const struct gw_principal *p = gw_call_principal(a->call);
    struct gw_fault f;
    int err;

    j->share = gw_admin_share_take(a->app->pwshare, GW_APP_PWSHARE_SLOTS, p->cert, j->weight, &f);
    if (j->share < 0) {
        gw_admin_job_free(j);
        gw_admin_finish_fault(a, &f, true);
        return false;
    }
    j->done = done;
    gw_workers_keep(a->app->workers, GW_PWJOB_KEEP); /* (the same for every job) */
    err = gw_workers_submit(a->app->workers, work, job_done, job_drop, j, sizeof(*j), &a->job);
    if (err != 0) {
        share_give(j);
        gw_admin_job_free(j);
        if (err == GW_ETOOBIG)
            gw_admin_refuse(a, GW_ETOOBIG, NULL, GW_RULE_BUSY, GW_API_AUTH_QUEUE);
        else
            gw_admin_refuse(a, err, NULL,
                            err == GW_EUNAVAIL ? GW_RULE_HASHING_UNAVAILABLE : GW_RULE_NONE, 0);
        return false;
    }
    gw_call_set_cancel(a->call, gw_admin_cancel_cb, a);
    return true;
}

bool gw_admin_job_lost(struct pwjob *j, int err)
{
    struct adm *a = j->a;

    if (err == 0)
        return false;
    a->job = NULL;
    gw_admin_job_free(j);
    gw_admin_refuse(a, GW_EUNAVAIL, NULL, GW_RULE_HASHING_UNAVAILABLE, 0);
    return true;
}

bool gw_admin_params_of(const struct gw_acct_pw *pw, struct gw_pw_params *pp)
{
    return gw_pw_params_parse(pw->params, pp) == 0;
}

bool gw_admin_verify(const char *pw, size_t n, const struct gw_acct_pw *h)
{
    struct gw_pw_params pp;

    return gw_admin_params_of(h, &pp) && gw_pw_verify(pw, n, h->salt, &pp, h->hash);
}

int gw_admin_hash_new(const char *pw, size_t n, uint64_t scrypt_n, struct gw_acct_pw *out)
{
    struct gw_pw_params pp = gw_pw_params_default(scrypt_n);
    int err;

    gw_pw_params_format(&pp, out->params);
    err = gw_pw_salt(out->salt);
    if (err == 0)
        err = gw_pw_hash(pw, n, out->salt, &pp, out->hash);
    return err;
}

/* A string field of at most max bytes into out (max + 1 bytes); false when too long. */
bool gw_admin_copy_field(char *out, size_t outsz, const char *s)
{
    size_t n = s != NULL ? strlen(s) : 0;

    if (n >= outsz)
        return false;
    memcpy(out, s != NULL ? s : "", n);
    out[n] = '\0';
    return true;
}

void gw_admin_take(char *dst, size_t *dn, const char *src)
{
    size_t n = src != NULL ? strlen(src) : 0;

    if (n > GW_PWPOLICY_MAX_BYTES)
        n = GW_PWPOLICY_MAX_BYTES;
    memcpy(dst, src != NULL ? src : "", n);
    dst[n] = '\0';
    *dn = n;
}
