/* api_record.h: the audit record of a gateway call (Art. 33): who (the principal's name, role,
 * branch, the certificate it came over, the peer address) filled from the call, so that every
 * handler that records an action says "who" the same way. Not for other layers. */
#ifndef GW_API_RECORD_H
#define GW_API_RECORD_H

#include "audit_rec.h"
#include "call.h"

struct gw_db_result;

/* Fills *r (zeroed first) with the caller's identity and action, outcome "ok", count absent (-1).
 * Every pointer points into the call's principal or into constants: *r is valid while the call
 * is. The caller sets object, count, purpose, detail, outcome as its action needs. */
void gw_api_record_init(struct gw_call *call, const char *action, struct gw_audit_rec *r);

/* Records a refused attempt (outcome "refused", detail: a rule's words, never a value) whose
 * outcome nobody waits for: the call is answered at once; a record that cannot be queued or
 * written is logged. Bounded as the Admin refusals are (refusals.h, the app's gw_refusals, with
 * no administrative-record row): per window the first GW_REFUSALS_EACH of a kind on their own,
 * the rest counted into one record. r's strings are copied. Returns true for the first
 * GW_REFUSALS_EACH of its kind in the window (refusals.h), false for the rest: what a handler
 * raises besides (an incident, a log line) it raises only when true, so that a flood raises a
 * bounded number and the count is the record's. */
bool gw_api_record_refusal(struct gw_call *call, struct gw_audit_rec *r);

/* Logs that a call's access record was not written (error err; sqlstate, or NULL, the database's
 * code when it refused a statement: PostgreSQL's named, the gateway's own W.... left out, since
 * they name the function that refused), so nothing was released: one
 * wording for every handler that withholds an answer for want of its record (Reveal, Search, the
 * lawful-access methods and lawful reads), naming no method, object or value. The line carries
 * the call's log context, which a confidential call's is empty (call.h): so a lawful call's line
 * tells the operator that the database refused a record, and nothing of lawful access. */
void gw_api_log_unrecorded(struct gw_call *call, int err, const char *sqlstate);

/* Logs that a record nobody waited for (a refused attempt, a stopped run) was not written (error
 * err): one wording, without context or action, for every such record (gw_api_record_unwaited's,
 * a confidential call's queued one, and the lawful-access refusals'). */
void gw_api_log_refusal_unrecorded(int err);

/* The done callback of a record nobody waits for (gw_audit_write_kept's here, or one rebound when
 * its caller went away, gw_audit_rebind): a failure is logged by gw_api_log_refusal_unrecorded. */
void gw_api_unwaited_cb(void *arg, int err, int64_t seq, const struct gw_db_result *res);

/* Queues r as it is (its own outcome) without holding the call, as gw_api_record_refusal does:
 * for what is recorded while the call ends (a bulk run stopped midway). The record waits out an
 * outage of the database (gw_audit_write_kept) within the writer's queue bound. */
void gw_api_record_unwaited(struct gw_call *call, const struct gw_audit_rec *r);

#endif
