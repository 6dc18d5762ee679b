/* api_pb.h: conversions between the protobuf-c messages of waygate.v1 and the domain structs,
 * shared by the intake and query handlers. Only the RPC layer includes generated code. */
#ifndef GW_API_PB_H
#define GW_API_PB_H

#include <stdbool.h>

#include "waygate/v1/common.pb-c.h"
#include "waygate/v1/compliance.pb-c.h"

#include "waybill.h"

/* Fills *out with views into w's strings (w must outlive *out). w may be NULL: all absent. */
void gw_api_waybill_from_pb(const Waygate__V1__Waybill *w, struct gw_waybill *out);

/* A stored approval's state ("pending", "approved", "rejected", "executed") as the API names it;
 * expired (pending past its approval period, or approved past its end): EXPIRED whatever the
 * state. UNSPECIFIED for a state the API has no name for. Bulk requests and lawful cases. */
Waygate__V1__ApprovalState gw_api_approval_state(const char *state, bool expired);

#endif
