/* store_report.h: where the monthly report's numbers come from, for the gateway
 * (Compliance.Report, api_report.c: gw_store_report_read, a read-only transaction of its own on
 * the pool, between and apart from its two report.generate audit records, the start's and the
 * outcome's) and for waygatectl (`report
 * monthly`, `incidents list`, on the CLI's blocking connection). One SQL text per question,
 * shared by both, so they never disagree.
 *
 * Sources: audit_record actions within [from_us, to_us) on every chain (outcome "ok" unless
 * said): bulk.request / approve / reject / run; lawful.request / approve / reject / read;
 * account.create, account.disable, account.disable_inactive and password.change (account
 * changes); principal.add and principal.disable; every outcome "refused"; destructions are the
 * retention.destroy records and the bulk.run records of a destroy request (detail
 * "kind=destroy ..."), records destroyed their summed count (the bulk package's destruction table
 * is not on this branch yet; the audit records are written in the same transaction as each
 * destruction, so they count the same). Incidents by severity from the incident table (occurred_at
 * in the month, each row's count); the suspicious-customer register's size when the report runs. */
#ifndef GW_STORE_REPORT_H
#define GW_STORE_REPORT_H

#include <libpq-fe.h>
#include <stddef.h>
#include <stdint.h>

#include "db.h"
#include "err.h"
#include "report.h"

struct gw_admin;
struct gw_store_report_req;

/* $1 from_us, $2 to_us (decimal text); one row of counts, text format. */
extern const char gw_store_report_counts_sql[];
/* $1 from_us, $2 to_us; rows (severity, incidents), text format. */
extern const char gw_store_report_incidents_sql[];

/* Fills r's counts from the two statements' results. Returns 0 or GW_EINTERNAL (unexpected
 * shape). */
int gw_store_report_parse(const PGresult *counts, const PGresult *incidents,
                          struct gw_report *r) GW_MUST_CHECK;

/* The statements that open the gateway's report transaction, before the counts: one snapshot for
 * every count, nothing written (REPEATABLE READ, READ ONLY); then $1, a number of milliseconds,
 * as its statement_timeout (local to the transaction: the pooled connection keeps none). */
extern const char gw_store_report_snapshot_sql[];
extern const char gw_store_report_timeout_sql[];

/* The report's outcome: err 0 (r's counts filled), GW_ETIMEOUT (a count ran past timeout_ms),
 * GW_EUNAVAIL (database unavailable or the outcome lost), GW_EINTERNAL (the database refused or
 * answered in an unexpected shape). */
typedef void (*gw_store_report_cb)(void *arg, int err);

/* Gateway: reads r's counts for r->from_us..r->to_us in a transaction of its own on a connection
 * of the pool (gw_store_report_snapshot_sql, gw_store_report_timeout_sql with timeout_ms, the two
 * counting statements), sent GW_DB_SLOW: alone on its connection, so however long it runs no other
 * request waits behind it (the audit writer's transactions go on). r must stay valid until cb
 * runs or the request is cancelled; cb never runs from inside this call. Returns 0 and a handle in
 * *out, or an error of gw_db_exec (GW_EUNAVAIL, GW_EQUEUEFULL, GW_ENOMEM, GW_EINVAL): then cb will
 * not run. */
int gw_store_report_read(struct gw_db *db, struct gw_report *r, uint32_t timeout_ms,
                         gw_store_report_cb cb, void *arg,
                         struct gw_store_report_req **out) GW_MUST_CHECK;
/* Its caller went away: nothing more is read into its gw_report, cb never runs and req is freed.
 * A read still queued is dropped (false). One already sent still holds its connection until its
 * statement ends on the server (by its statement_timeout, or when the connection is found lost):
 * ended(arg, ...) runs then (true), so that the caller's bound on counts running at once holds
 * until they have. Never after cb ran; req not NULL. */
bool gw_store_report_detach(struct gw_store_report_req *req, gw_db_done_cb ended, void *arg);

/* CLI: runs both statements for r->from_us..r->to_us on a's connection and fills r. As the first
 * statements of the caller's open transaction (gw_admin_begin), they set it REPEATABLE READ, so
 * every count is of one snapshot. Returns 0 or GW_EINTERNAL with a one-line message. */
int gw_admin_report(struct gw_admin *a, struct gw_report *r, char *errbuf,
                    size_t errlen) GW_MUST_CHECK;

/* One incident (strings valid during the callback; absent ones are ""). */
struct gw_admin_incident {
    long long id, count;
    const char *occurred_at; /* UTC, YYYY-MM-DDTHH:MM:SSZ */
    const char *severity, *kind, *principal, *peer, *branch, *detail, *record_id;
};
typedef void (*gw_admin_incident_cb)(void *arg, const struct gw_admin_incident *inc);

/* CLI: the incidents since since_us (< 0: all) of severity (NULL: any), newest first, at most
 * limit. Returns 0 or GW_EINTERNAL with a one-line message. */
int gw_admin_incidents_list(struct gw_admin *a, int64_t since_us, const char *severity, long limit,
                            gw_admin_incident_cb cb, void *arg, char *errbuf,
                            size_t errlen) GW_MUST_CHECK;

#endif
