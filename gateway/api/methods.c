/* methods.c: the method table of the API (proto/waygate/v1) plus the standard health service: path
 * -> handler. Who may call each method is the policy's business (policy.c), not this table's.
 * Invariant: static and constant; a method not built yet has a NULL handler (UNIMPLEMENTED for
 * callers the policy allows); the lawful-access methods are confidential (counted in no
 * per-method metric, named in no log line: call.h, Art. 16), as is every call of a lawful_access
 * account, a lawful read through Get included (call.c, api_get.c). */
#include "api.h"

static const struct gw_method methods[] = {
    {"/grpc.health.v1.Health/Check", gw_api_health_check, false, false},
    {"/grpc.health.v1.Health/Watch", gw_api_health_watch, true, false},

    {"/waygate.v1.WaybillIntake/Submit", gw_api_intake_submit, false, false},
    {"/waygate.v1.WaybillIntake/SubmitBatch", gw_api_intake_submit_batch, false, false},
    {"/waygate.v1.WaybillIntake/RecordScan", gw_api_intake_record_scan, false, false},

    {"/waygate.v1.WaybillQuery/Get", gw_api_get, false, false},
    {"/waygate.v1.WaybillQuery/Search", gw_api_query_search, true, false},
    {"/waygate.v1.WaybillQuery/Reveal", gw_api_query_reveal, false, false},

    {"/waygate.v1.Compliance/RequestBulk", gw_api_compliance_request_bulk, false, false},
    {"/waygate.v1.Compliance/ApproveBulk", gw_api_compliance_approve_bulk, false, false},
    {"/waygate.v1.Compliance/GetBulk", gw_api_compliance_get_bulk, false, false},
    {"/waygate.v1.Compliance/RunBulk", gw_api_compliance_run_bulk, true, false},
    {"/waygate.v1.Compliance/ExportAudit", gw_api_compliance_export_audit, true, false},
    {"/waygate.v1.Compliance/Report", gw_api_compliance_report, false, false},
    {"/waygate.v1.Compliance/RequestLawfulAccess", gw_api_lawful_request, false, true},
    {"/waygate.v1.Compliance/DecideLawfulAccess", gw_api_lawful_decide, false, true},
    {"/waygate.v1.Compliance/GetLawfulCase", gw_api_lawful_view, false, true},

    {"/waygate.v1.Admin/Login", gw_api_admin_login, false, false},
    {"/waygate.v1.Admin/ChangePassword", gw_api_admin_change_password, false, false},
    {"/waygate.v1.Admin/CreateAccount", gw_api_admin_create_account, false, false},
    {"/waygate.v1.Admin/DisableAccount", gw_api_admin_disable_account, false, false},
    {"/waygate.v1.Admin/IssueSegment", gw_api_admin_issue_segment, false, false},
    {"/waygate.v1.Admin/RotateKey", gw_api_admin_rotate_key, false, false},
};

static const struct gw_rpc_table table = {methods, sizeof(methods) / sizeof(methods[0])};

const struct gw_rpc_table *gw_api_methods(void)
{
    return &table;
}
