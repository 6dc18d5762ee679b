/* api_compliance.h: what the lawful-access and report handlers share (api_compliance.c): the
 * audit record of the caller's action, and the parts of a lawful read (api_lawful_read.c) that
 * WaybillQuery.Get hands over to. Not for other modules. */
#ifndef GW_API_COMPLIANCE_H
#define GW_API_COMPLIANCE_H

#include <stddef.h>
#include <stdint.h>

#include "audit_rec.h"
#include "call.h"
#include "record.h"

/* Fills *r (zeroed first; count -1) for action by the caller: actor, role, peer, certificate
 * and branch from the call's principal; outcome. The strings point into the call. */
void gw_api_compliance_rec(struct gw_call *call, struct gw_audit_rec *r, const char *action,
                           const char *outcome);

/* The column whose field path is path, or GW_COL_COUNT. */
enum gw_col gw_api_col_of(const char *path, size_t n);

/* WaybillQuery.Get by a lawful_access account (api_query.c hands the call over): the clear
 * fields of one waybill named by an approved, unexpired case of the caller, sent only after its
 * confidential lawful.read audit record committed (fail closed). */
void gw_api_lawful_get(struct gw_call *call, const uint8_t *req, size_t len);

#endif
