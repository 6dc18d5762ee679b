/* api_record.c: a call's identity as an audit record's "who", and refusals recorded without
 * holding the call (their callback never touches it: the call may be gone when it runs). */
#include <string.h>

#include "api_record.h"
#include "app.h"
#include "audit.h"
#include "log.h"

void gw_api_record_init(struct gw_call *call, const char *action, struct gw_audit_rec *r)
{
    const struct gw_principal *p = gw_call_principal(call);
    const struct gw_log_ctx *lc = gw_call_log_ctx(call);

    memset(r, 0, sizeof(*r));
    r->actor = p->name;
    r->role = p->role[0] != '\0' ? p->role : NULL;
    r->peer = lc != NULL && lc->peer != NULL ? lc->peer : p->peer[0] != '\0' ? p->peer : NULL;
    /* the certificate the call came over (for a certificate principal: itself) */
    r->cert = p->cert[0] != '\0' ? p->cert : p->authn == GW_AUTHN_CERT ? p->name : NULL;
    r->branch = p->branch[0] != '\0' ? p->branch : NULL;
    r->action = action;
    r->count = -1;
    r->outcome = "ok";
}

static void refusal_cb(void *arg, int err, int64_t seq, const struct gw_db_result *res)
{
    (void)arg;
    (void)seq;
    (void)res;
    if (err != 0)
        GW_LOG(GW_LOG_ERROR, "audit", NULL, "a refused attempt was not recorded (%s)",
               gw_err_str(err));
}

void gw_api_record_refusal(struct gw_call *call, struct gw_audit_rec *r)
{
    struct gw_app *app = gw_call_app(call);
    int rc;

    r->outcome = "refused";
    rc = app->audit != NULL ? gw_audit_write(app->audit, NULL, 0, r, 1, refusal_cb, NULL, NULL)
                            : GW_EUNAVAIL;
    if (rc != 0)
        GW_LOG(GW_LOG_ERROR, "audit", gw_call_log_ctx(call), "a refused %s was not recorded (%s)",
               r->action, gw_err_str(rc));
}
