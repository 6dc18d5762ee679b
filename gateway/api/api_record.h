/* api_record.h: the audit record of a gateway call (Art. 33): who (the principal's name, role,
 * branch, the certificate it came over, the peer address) filled from the call, so that every
 * handler that records an action says "who" the same way. Not for other layers. */
#ifndef GW_API_RECORD_H
#define GW_API_RECORD_H

#include "audit_rec.h"
#include "call.h"

/* Fills *r (zeroed first) with the caller's identity and action, outcome "ok", count absent (-1).
 * Every pointer points into the call's principal or into constants: *r is valid while the call
 * is. The caller sets object, count, purpose, detail, outcome as its action needs. */
void gw_api_record_init(struct gw_call *call, const char *action, struct gw_audit_rec *r);

/* Queues a refused attempt (outcome "refused", detail: a rule's words, never a value) whose
 * outcome nobody waits for: the call is answered at once; a record that cannot be queued or
 * written is logged. r's strings are copied by the writer. */
void gw_api_record_refusal(struct gw_call *call, struct gw_audit_rec *r);

#endif
