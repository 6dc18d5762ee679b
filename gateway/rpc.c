/* rpc.c: the method table of SPEC §7.1 plus the standard health service, and the access check.
 * Invariant: the table is static and constant; a path not in it is an unknown method; a method
 * is callable without a client certificate only if marked GW_RPC_ANYONE. */
#include "rpc.h"

#include <string.h>

#include "api.h"

#define M(path, handler, streaming, access)                                                        \
    {                                                                                              \
        {path, handler, streaming}, access, NULL                                                   \
    }
#define R(path, handler, streaming, roles)                                                         \
    {                                                                                              \
        {path, handler, streaming}, GW_RPC_AUTHENTICATED, roles                                    \
    }

static const char *const couriers[] = {"courier", NULL};
static const char *const searchers[] = {"branch_clerk", "customer_service", NULL};
static const char *const revealers[] = {"courier", "branch_clerk", "customer_service", NULL};
static const char *const bulk[] = {"security_admin", "compliance_auditor", NULL};
static const char *const auditors[] = {"compliance_auditor", NULL};
static const char *const lawful[] = {"lawful_access", NULL};
static const char *const secadmins[] = {"security_admin", NULL};

static const struct gw_rpc_method methods[] = {
    M("/grpc.health.v1.Health/Check", gw_api_health_check, false, GW_RPC_ANYONE),

    R("/waygate.v1.WaybillIntake/Submit", gw_api_intake_submit, false, couriers),
    R("/waygate.v1.WaybillIntake/SubmitBatch", gw_api_intake_submit_batch, false, couriers),
    R("/waygate.v1.WaybillIntake/RecordScan", NULL, false, couriers),

    R("/waygate.v1.WaybillQuery/Get", gw_api_query_get, false, couriers),
    R("/waygate.v1.WaybillQuery/Search", NULL, true, searchers),
    R("/waygate.v1.WaybillQuery/Reveal", NULL, false, revealers),

    R("/waygate.v1.Compliance/RequestBulk", NULL, false, bulk),
    R("/waygate.v1.Compliance/ApproveBulk", NULL, false, bulk),
    R("/waygate.v1.Compliance/RunBulk", NULL, true, bulk),
    R("/waygate.v1.Compliance/ExportAudit", NULL, true, auditors),
    R("/waygate.v1.Compliance/Report", NULL, false, auditors),
    R("/waygate.v1.Compliance/RequestLawfulAccess", NULL, false, lawful),
    R("/waygate.v1.Compliance/DecideLawfulAccess", NULL, false, secadmins),

    M("/waygate.v1.Admin/Login", NULL, false, GW_RPC_AUTHENTICATED),
    M("/waygate.v1.Admin/ChangePassword", NULL, false, GW_RPC_AUTHENTICATED),
    R("/waygate.v1.Admin/CreateAccount", NULL, false, secadmins),
    R("/waygate.v1.Admin/DisableAccount", NULL, false, secadmins),
    R("/waygate.v1.Admin/IssueSegment", NULL, false, secadmins),
    R("/waygate.v1.Admin/RotateKey", NULL, false, secadmins),
};

static const struct gw_rpc_table table = {methods, sizeof(methods) / sizeof(methods[0])};

const struct gw_rpc_table *gw_rpc_default(void)
{
    return &table;
}

const struct gw_rpc_method *gw_rpc_lookup(const struct gw_rpc_table *t, const char *path)
{
    for (size_t i = 0; i < t->n; i++)
        if (strcmp(t->methods[i].m.path, path) == 0)
            return &t->methods[i];
    return NULL;
}

int gw_rpc_authorize(const struct gw_rpc_method *m, const struct gw_principal *p)
{
    if (m->access == GW_RPC_ANYONE)
        return 0;
    if (!p->authenticated || p->role[0] == '\0')
        return GW_EAUTH;
    if (m->roles == NULL)
        return 0;
    for (const char *const *r = m->roles; *r; r++)
        if (strcmp(*r, p->role) == 0)
            return 0;
    return GW_EPERM;
}
