/* rpc_int.h: between the dispatcher (rpc.c) and the call (call.c); nothing else includes it. */
#ifndef GW_RPC_INT_H
#define GW_RPC_INT_H

#include "rpc.h"

const struct gw_rpc_params *gw_rpc_params(const struct gw_rpc *rpc);
/* For request ids: 16 random hex digits drawn when the dispatcher was made, and a counter. */
const char *gw_rpc_id_prefix(const struct gw_rpc *rpc);
uint64_t gw_rpc_next_call(struct gw_rpc *rpc);

/* Creates the call for a routed stream and starts its identity step. Returns NULL on allocation
 * failure (the transport answers). */
struct gw_call *gw_call_open(struct gw_rpc *rpc, struct gw_h2_stream *st, const struct gw_method *m,
                             const struct gw_grpc_headers *hdrs, uint64_t timeout_ms);
/* The transport upcalls of a call (h2.h). */
void gw_call_up_data(void *obj, const uint8_t *data, size_t len);
void gw_call_up_end(void *obj);
void gw_call_up_writable(void *obj);
void gw_call_up_close(void *obj);

#endif
