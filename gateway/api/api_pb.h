/* api_pb.h: conversions between the protobuf-c messages of waygate.v1 and the domain structs,
 * shared by the intake and query handlers. Only the RPC layer includes generated code. */
#ifndef GW_API_PB_H
#define GW_API_PB_H

#include "waygate/v1/common.pb-c.h"

#include "waybill.h"

/* Fills *out with views into w's strings (w must outlive *out). w may be NULL: all absent. */
void gw_api_waybill_from_pb(const Waygate__V1__Waybill *w, struct gw_waybill *out);

#endif
