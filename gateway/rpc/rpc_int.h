/* rpc_int.h: between the dispatcher (rpc.c) and the call (call.c); nothing else includes it.
 * rpc.c depends on call.c, never the reverse. */
#ifndef GW_RPC_INT_H
#define GW_RPC_INT_H

#include "budget.h"
#include "rpc.h"

struct event;

/* Handlers started per loop turn at most (gw_rpc_params.handlers_per_turn 0): a read that
 * completes more requests queues the rest for the next turns, so one connection cannot hold the
 * loop (issue 10, finding 2). */
#define GW_RPC_HANDLERS_PER_TURN 16u
#define GW_RPC_TURN_MS 10u

/* The dispatcher's state, read by the calls it opens (call.c never calls into rpc.c: rpc.c opens
 * calls and routes the transport's upcalls to them, the one direction of the dependency). */
struct gw_rpc {
    struct gw_rpc_params p;
    char id_prefix[17]; /* random, per dispatcher: request ids stay unique across gateways */
    uint64_t calls;     /* request-id counter */
    struct gw_rpc_method_stats *stats; /* [p.methods->n + 1]: the table's methods, then others */
    struct gw_budget mem; /* request memory in flight, all connections (cfg->request_memory) */
    /* Calls whose request is complete and whose handler waits for a loop turn (call.c). */
    struct gw_call *ready_head, *ready_tail;
    unsigned ran;           /* handlers started since run_ev last fired */
    uint64_t turn_start_ms; /* when the first of them started */
    struct event *run_ev;   /* zero timer: a new loop turn; runs queued handlers */
};

/* run_ev's work (rpc.c owns the event): starts queued handlers, at most the per-turn number. */
void gw_call_run_ready(struct gw_rpc *rpc);

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
