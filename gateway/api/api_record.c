/* api_record.c: a call's identity as an audit record's "who", and refusals recorded without
 * holding the call (their callback never touches it: the call may be gone when it runs). */
#include <string.h>

#include "api_record.h"
#include "app.h"
#include "audit.h"
#include "log.h"
#include "refusals.h"

void gw_api_record_init(struct gw_call *call, const char *action, struct gw_audit_rec *r)
{
    const struct gw_principal *p = gw_call_principal(call);
    const char *peer = gw_call_peer(call);

    memset(r, 0, sizeof(*r));
    r->actor = p->name;
    r->role = p->role[0] != '\0' ? p->role : NULL;
    r->peer = peer != NULL ? peer : p->peer[0] != '\0' ? p->peer : NULL;
    /* the certificate the call came over (for a certificate principal: itself) */
    r->cert = p->cert[0] != '\0' ? p->cert : p->authn == GW_AUTHN_CERT ? p->name : NULL;
    r->branch = p->branch[0] != '\0' ? p->branch : NULL;
    r->action = action;
    r->count = -1;
    r->outcome = "ok";
    /* every record of a confidential call (a lawful_access account's, call.h) is marked so,
     * whatever it records: its Logins and refusals as much as its reads (Art. 16) */
    r->confidential = gw_call_confidential(call);
}

void gw_api_log_unrecorded(struct gw_call *call, int err, const char *sqlstate)
{
    /* The gateway's own codes (W....: sql/) name the function that refused (WL: lawful access):
     * PostgreSQL's are the operator's business, ours the handler's answer's. */
    if (sqlstate != NULL && sqlstate[0] == 'W')
        sqlstate = NULL;
    if (gw_call_log_ok(call, GW_LOG_ERROR)) /* one connection's flood: the counted lines */
        gw_log_write(GW_LOG_ERROR, "audit", gw_call_log_ctx(call),
                     "access not recorded in the audit chain (%s, SQLSTATE %s): nothing released",
                     gw_err_str(err), sqlstate != NULL ? sqlstate : "-");
}

void gw_api_log_refusal_unrecorded(int err)
{
    GW_LOG(GW_LOG_ERROR, "audit", NULL,
           "a record nobody waited for (a refused attempt, a stopped run, a view) was not written "
           "(%s)",
           gw_err_str(err));
}

void gw_api_unwaited_cb(void *arg, int err, int64_t seq, const struct gw_db_result *res)
{
    (void)arg;
    (void)seq;
    (void)res;
    if (err != 0)
        gw_api_log_refusal_unrecorded(err);
}

void gw_api_record_unwaited(struct gw_call *call, const struct gw_audit_rec *r)
{
    struct gw_app *app = gw_call_app(call);
    int rc;

    rc = app->audit != NULL
             ? gw_audit_write_kept(app->audit, NULL, 0, r, 1, gw_api_unwaited_cb, NULL)
             : GW_EUNAVAIL;
    /* from the connection's budget of per-call lines: a flood of refusals while the queue is
     * full writes a bounded number, and a count of the rest */
    if (rc == 0 || !gw_call_log_ok(call, GW_LOG_ERROR))
        return;
    if (gw_call_confidential(call))
        gw_api_log_refusal_unrecorded(rc); /* naming no action: a lawful one would tell */
    else
        gw_log_write(GW_LOG_ERROR, "audit", gw_call_log_ctx(call), "a %s %s was not recorded (%s)",
                     r->outcome, r->action, gw_err_str(rc));
}

bool gw_api_record_refusal(struct gw_call *call, struct gw_audit_rec *r)
{
    struct gw_app *app = gw_call_app(call);

    r->outcome = "refused";
    /* bounded as the Admin refusals are: a caller repeating one cannot grow the trail at its own
     * pace (the record alone: no administrative-record row) */
    if (app->refusals != NULL)
        return gw_refusals_record(app->refusals, NULL, r);
    gw_api_record_unwaited(call, r); /* (an app without the bounded writer: a test harness's) */
    return true;
}
