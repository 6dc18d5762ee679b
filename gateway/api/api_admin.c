/* api_admin.c: waygate.v1.Admin/CreateAccount and /DisableAccount for a security admin (Art.
 * 34, 38); IssueSegment and RotateKey answer UNIMPLEMENTED. Login and ChangePassword are in
 * api_login.c, the shared helpers in api_admin_util.c.
 * Invariants: every Admin call that reaches a handler leaves exactly one administrative-record
 * row and one audit record (account.create, account.disable, admin.refused), in the transaction
 * of its effect when it succeeds, in one of their own when refused; a separation-of-duties
 * refusal is also an incident; the initial password is hashed on the worker pool and lives in
 * wiped memory only; the free-text reason of a disabling stays in the account row, out of the
 * audit record. Free text (person, reason) is stored only as gw_text_field allows, the rule the
 * CLI applies: no control or bidirectional characters, not blank. */
#include <stdio.h>
#include <string.h>

#include "waygate/v1/admin.pb-c.h"

#include "account.h"
#include "alloc.h"
#include "api.h"
#include "api_admin_int.h"
#include "app.h"
#include "incident.h"
#include "log.h"
#include "text.h"

#define REASON_MAX 256

/* --- CreateAccount --- */

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
        gw_admin_refuse_db(a, err);
        return;
    }
    if (r == GW_ACCT_NAME_TAKEN) {
        gw_admin_refuse(a, GW_EEXIST, "account", GW_RULE_ACCOUNT_EXISTS, 0);
        return;
    }
    if (r == GW_ACCT_SEPARATION_OF_DUTIES) {
        /* Art. 34 (三员): an attempt is an incident, not only a refusal. Not reached while
         * gw_account_role_person_only covers the three administrator roles (refused before the
         * hashing, gw_api_admin_create_account); kept for the store's answer should that
         * change. */
        snprintf(detail, sizeof(detail),
                 "CreateAccount of role %s for a person holding another administrator role",
                 a->role);
        memset(&inc, 0, sizeof(inc));
        inc.severity = "high";
        inc.kind = "separation_of_duties";
        inc.principal = p->name;
        inc.role = p->role[0] ? p->role : NULL;
        inc.cert = p->cert[0] ? p->cert : NULL;
        inc.peer = p->peer;
        inc.branch = p->branch[0] ? p->branch : NULL;
        inc.detail = detail;
        if (gw_incident_record(a->app->incidents, &inc) != 0)
            GW_LOG(GW_LOG_ERROR, "admin", gw_call_log_ctx(a->call),
                   "separation-of-duties incident not recorded");
        gw_admin_refuse(a, GW_EPERM, "role", GW_RULE_SEPARATION_OF_DUTIES, 0);
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

    j->err = gw_admin_hash_new(j->pw, j->pwn, j->scrypt_n, &j->out);
}

static void create_hashed_cb(void *arg, int lost)
{
    struct pwjob *j = arg;
    struct adm *a = j->a;
    const struct gw_principal *p = gw_call_principal(a->call);
    struct gw_acct_new n;
    char detail[96];
    int err;

    if (gw_admin_job_lost(j, lost))
        return;

    a->job = NULL;
    if (j->err != 0) {
        gw_admin_job_free(j);
        gw_admin_refuse(a, GW_EINTERNAL, NULL, GW_RULE_NONE, 0);
        return;
    }
    memset(&n, 0, sizeof(n));
    n.name = a->object;
    n.person = a->person;
    n.role = a->role;
    n.branch = a->branch[0] ? a->branch : NULL;
    n.pw = &j->out;
    n.created_by = p->name;
    gw_admin_fill_log(a, &n.log, "ok", a->role);
    snprintf(detail, sizeof(detail), "role=%s%s%s", a->role, a->branch[0] ? " branch=" : "",
             a->branch);
    gw_admin_fill_rec(a, &n.rec, "account.create", "ok", detail);
    err = gw_acct_create(a->app->audit, &n, created_cb, a, &a->req); /* copies what it needs */
    gw_admin_job_free(j);
    if (err != 0) {
        gw_admin_refuse_db(a, err);
        return;
    }
    gw_call_set_cancel(a->call, gw_admin_cancel_cb, a);
}

void gw_api_admin_create_account(struct gw_call *call, const uint8_t *req, size_t len)
{
    struct adm *a = gw_admin_new(call, "CreateAccount");
    Waygate__V1__CreateAccountRequest *in;
    struct pwjob *j;
    struct gw_fault f;
    int rc;

    if (a == NULL)
        return;
    in = (Waygate__V1__CreateAccountRequest *)gw_call_unpack(
        call, &waygate__v1__create_account_request__descriptor, req, len);
    if (in == NULL)
        return;
    /* The record names what was asked for as far as it is well-formed. */
    rc = gw_account_check(in->account, in->role, in->branch, &f);
    if (rc == 0 || f.rule != GW_RULE_ACCOUNT_NAME)
        snprintf(a->object, sizeof(a->object), "%s", in->account);
    if (rc == 0 || f.rule == GW_RULE_ACCOUNT_BRANCH)
        snprintf(a->role, sizeof(a->role), "%s", in->role);
    if (rc != 0) {
        gw_admin_finish_fault(a, &f, true);
        return;
    }
    if (gw_account_role_person_only(in->role)) {
        gw_admin_refuse(a, GW_EPERM, "role", GW_RULE_ROLE_CLI_ONLY, 0);
        return;
    }
    snprintf(a->branch, sizeof(a->branch), "%s", in->branch);
    /* the person: the account name when not given (checked above), else the CLI's rule */
    if (in->person[0] != '\0' &&
        gw_text_field(in->person, PERSON_MAX, true, GW_RULE_REQUIRED, "person", &f) != 0) {
        gw_admin_finish_fault(a, &f, true);
        return;
    }
    if (!gw_admin_copy_field(a->person, sizeof(a->person),
                             in->person[0] ? in->person : in->account)) {
        gw_admin_refuse(a, GW_EINVAL, "person", GW_RULE_TOO_LONG, PERSON_MAX);
        return;
    }
    if (gw_pwpolicy_check(in->account, in->initial_password, strlen(in->initial_password), &f) !=
        0) {
        snprintf(f.field, sizeof(f.field), "initial_password");
        gw_admin_finish_fault(a, &f, true);
        return;
    }
    j = gw_admin_job_new(a);
    if (j == NULL) {
        gw_admin_refuse(a, GW_ENOMEM, NULL, GW_RULE_NONE, 0);
        return;
    }
    gw_admin_take(j->pw, &j->pwn, in->initial_password);
    (void)gw_admin_submit(a, j, hash_work, create_hashed_cb);
}

/* --- DisableAccount --- */

static void disabled_cb(void *arg, int err, bool found, int64_t disabled_at)
{
    struct adm *a = arg;
    Waygate__V1__DisableAccountResponse resp = WAYGATE__V1__DISABLE_ACCOUNT_RESPONSE__INIT;

    a->req = NULL;
    gw_call_set_cancel(a->call, NULL, NULL);
    if (err == GW_EPRECOND) { /* sql/037: one security admin stays enabled */
        gw_admin_refuse(a, GW_EPRECOND, "account", GW_RULE_LAST_SECURITY_ADMIN, 0);
        return;
    }
    if (err != 0) {
        gw_admin_refuse_db(a, err);
        return;
    }
    if (!found) {
        gw_admin_refuse(a, GW_ENOTFOUND, "account", GW_RULE_ACCOUNT_UNKNOWN, 0);
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
    struct adm *a = gw_admin_new(call, "DisableAccount");
    const struct gw_principal *p = gw_call_principal(call);
    Waygate__V1__DisableAccountRequest *in;
    struct gw_acct_log l;
    struct gw_audit_rec r;
    struct gw_fault f;
    int err;

    if (a == NULL)
        return;
    in = (Waygate__V1__DisableAccountRequest *)gw_call_unpack(
        call, &waygate__v1__disable_account_request__descriptor, req, len);
    if (in == NULL)
        return;
    if (in->account[0] == '\0') {
        gw_admin_refuse(a, GW_EINVAL, "account", GW_RULE_REQUIRED, 0);
        return;
    }
    /* a name no account can have is refused as such, and not kept in the record */
    if (!gw_account_name_ok(in->account)) {
        gw_admin_refuse(a, GW_EINVAL, "account", GW_RULE_ACCOUNT_NAME, 0);
        return;
    }
    if (!gw_admin_copy_field(a->object, ACCOUNT_MAX + 1, in->account)) {
        gw_admin_refuse(a, GW_ENOTFOUND, "account", GW_RULE_ACCOUNT_UNKNOWN, 0);
        return;
    }
    if (gw_text_field(in->reason, REASON_MAX, true, GW_RULE_REQUIRED, "reason", &f) != 0) {
        gw_admin_finish_fault(a, &f, true);
        return;
    }
    gw_admin_fill_log(a, &l, "ok", in->reason);
    gw_admin_fill_rec(a, &r, "account.disable", "ok", "sessions ended; reason in the account row");
    err = gw_acct_disable(a->app->audit, a->object, p->name, in->reason, &l, &r, disabled_cb, a,
                          &a->req);
    if (err != 0) {
        gw_admin_refuse_db(a, err);
        return;
    }
    gw_call_set_cancel(call, gw_admin_cancel_cb, a);
}

/* --- not built yet: refused, and recorded like every Admin call --- */

void gw_api_admin_issue_segment(struct gw_call *call, const uint8_t *req, size_t len)
{
    struct adm *a = gw_admin_new(call, "IssueSegment");

    (void)req;
    (void)len;
    if (a != NULL)
        gw_admin_refuse(a, GW_EUNIMPL, "/waygate.v1.Admin/IssueSegment", GW_RULE_NOT_IMPLEMENTED,
                        0);
}

void gw_api_admin_rotate_key(struct gw_call *call, const uint8_t *req, size_t len)
{
    struct adm *a = gw_admin_new(call, "RotateKey");

    (void)req;
    (void)len;
    if (a != NULL)
        gw_admin_refuse(a, GW_EUNIMPL, "/waygate.v1.Admin/RotateKey", GW_RULE_NOT_IMPLEMENTED, 0);
}
