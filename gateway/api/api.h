/* api.h: the gRPC handlers, one per implemented method, and the method table that routes to
 * them (methods.c). Each handler follows the lifecycle contract of call.h. */
#ifndef GW_API_H
#define GW_API_H

#include <stddef.h>
#include <stdint.h>

#include "call.h"
#include "rpc.h"

/* The gateway's method table (static, never freed). */
const struct gw_rpc_table *gw_api_methods(void);

/* grpc.health.v1.Health/Check: SERVING when the database answers SELECT 1. */
void gw_api_health_check(struct gw_call *call, const uint8_t *req, size_t len);
void gw_api_health_watch(struct gw_call *call, const uint8_t *req, size_t len);

/* waygate.v1.WaybillIntake/Submit and /SubmitBatch (role courier). */
void gw_api_intake_submit(struct gw_call *call, const uint8_t *req, size_t len);
void gw_api_intake_submit_batch(struct gw_call *call, const uint8_t *req, size_t len);
/* waygate.v1.WaybillIntake/RecordScan (api_scan.c): one scan event, group-committed. */
void gw_api_intake_record_scan(struct gw_call *call, const uint8_t *req, size_t len);

/* waygate.v1.WaybillQuery/Get: one waybill by number, within the scope, as the policy shows it
 * (api_query.c); for a lawful_access caller, a waybill of its approved cases in clear
 * (api_lawful_read.c). gw_api_get chooses between them (api_get.c). */
void gw_api_get(struct gw_call *call, const uint8_t *req, size_t len);
void gw_api_query_get(struct gw_call *call, const uint8_t *req, size_t len);

/* waygate.v1.WaybillQuery/Search (server-streaming) and /Reveal (api_search.c, api_reveal.c). */
void gw_api_query_search(struct gw_call *call, const uint8_t *req, size_t len);
void gw_api_query_reveal(struct gw_call *call, const uint8_t *req, size_t len);

/* waygate.v1.Compliance bulk operations (Art. 37, 15; api_bulk.c, api_bulk_run.c,
 * api_bulk_view.c): RequestBulk, ApproveBulk (a second person), GetBulk (a request as stored, for
 * its approver to read), RunBulk (server-streaming: the sealed, watermarked export, or a
 * destruction's progress). */
void gw_api_compliance_request_bulk(struct gw_call *call, const uint8_t *req, size_t len);
void gw_api_compliance_approve_bulk(struct gw_call *call, const uint8_t *req, size_t len);
void gw_api_compliance_get_bulk(struct gw_call *call, const uint8_t *req, size_t len);
void gw_api_compliance_run_bulk(struct gw_call *call, const uint8_t *req, size_t len);
/* waygate.v1.Compliance/ExportAudit (server-streaming, api_export_audit.c): a sealed audit
 * bundle of a time range (docs/audit-bundle-format.md). */
void gw_api_compliance_export_audit(struct gw_call *call, const uint8_t *req, size_t len);
/* waygate.v1.Admin (api_login.c, api_admin.c): Login and ChangePassword for any authenticated
 * caller (the handler decides more), CreateAccount and DisableAccount for security_admin;
 * IssueSegment and RotateKey answer UNIMPLEMENTED. Every call leaves an administrative-record
 * row (Art. 31). */
void gw_api_admin_login(struct gw_call *call, const uint8_t *req, size_t len);
void gw_api_admin_change_password(struct gw_call *call, const uint8_t *req, size_t len);
void gw_api_admin_create_account(struct gw_call *call, const uint8_t *req, size_t len);
void gw_api_admin_disable_account(struct gw_call *call, const uint8_t *req, size_t len);
void gw_api_admin_issue_segment(struct gw_call *call, const uint8_t *req, size_t len);
void gw_api_admin_rotate_key(struct gw_call *call, const uint8_t *req, size_t len);

/* waygate.v1.Compliance lawful access (api_lawful.c, Art. 16): RequestLawfulAccess by a
 * lawful_access account, DecideLawfulAccess by a security_admin account of another person,
 * GetLawfulCase (a case as stored, for its decider to read first, recorded as lawful.view); the
 * reads go through WaybillQuery/Get (api_lawful_read.c). Each writes its audit record in the
 * transaction of its action. Report (api_report.c): the monthly regulator report, its start
 * recorded (report.generate, started), counted in a read-only transaction of its own, then its
 * outcome recorded (report.generate) before it is sent. */
void gw_api_lawful_request(struct gw_call *call, const uint8_t *req, size_t len);
void gw_api_lawful_decide(struct gw_call *call, const uint8_t *req, size_t len);
void gw_api_lawful_view(struct gw_call *call, const uint8_t *req, size_t len);
void gw_api_compliance_report(struct gw_call *call, const uint8_t *req, size_t len);

/* Password-hashing jobs waiting for a worker thread before Login and the other password
 * methods answer RESOURCE_EXHAUSTED (busy): the daemon sizes the worker queue with it. */
#define GW_API_AUTH_QUEUE 64
/* Of those, the most one certificate principal's calls may hold at a time (one device or branch
 * certificate cannot keep everyone else from logging in); more answer RESOURCE_EXHAUSTED. */
#define GW_API_AUTH_SHARE 8
/* The shares of the database queue (api_share.c over db.h's): rpc.h's admit and within hooks,
 * share_ctx the struct gw_app. The owner is the connection's certificate (its fingerprint: known
 * before any database work, registered or not) for the identity step, whose token lookup is
 * the certificate's, and for callers known by the certificate alone; from the handler's start
 * on, a call made with an account's token (GW_AUTHN_TOKEN) is its account's over that
 * certificate: SHA-256 over a label, the fingerprint and the account id, so that accounts
 * logging in over one certificate each have a share. Calls without a certificate share one
 * owner. admit refuses a new call whose owner holds gw_db_share requests queued or in flight
 * (RESOURCE_EXHAUSTED naming the share). */
bool gw_api_share_admit(void *ctx, const struct gw_peer *peer, const struct gw_principal *p,
                        struct gw_fault *f);
void gw_api_share_within(void *ctx, const struct gw_peer *peer, const struct gw_principal *p,
                         gw_rpc_run_fn fn, void *arg);

/* The largest argument of a password-hashing job (what is copied to the worker process); the
 * Admin handlers check theirs against it at compile time. */
#define GW_API_AUTH_ARG_MAX 2048

#endif
