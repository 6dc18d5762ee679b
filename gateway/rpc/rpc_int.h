/* rpc_int.h: between the dispatcher (rpc.c) and the call (call.c); nothing else includes it.
 * rpc.c depends on call.c, never the reverse. */
#ifndef GW_RPC_INT_H
#define GW_RPC_INT_H

#include "rpc.h"

/* The dispatcher's state, read by the calls it opens (call.c never calls into rpc.c: rpc.c opens
 * calls and routes the transport's upcalls to them, the one direction of the dependency). */
struct gw_rpc {
    struct gw_rpc_params p;
    char id_prefix[17]; /* random, per dispatcher: request ids stay unique across gateways */
    uint64_t calls;     /* request-id counter */
    struct gw_rpc_method_stats *stats; /* [p.methods->n + 1]: the table's methods, then others */
};

/* Counts a finished call of method m (NULL: a path not in the table). */
void gw_rpc_count(struct gw_rpc *rpc, const struct gw_method *m, enum gw_grpc_status status,
                  uint64_t ms);

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
