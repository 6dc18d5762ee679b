/* call.h: one gRPC call as a handler sees it. The rpc layer creates the call when a request's
 * headers have arrived (rpc.h), resolves who is calling and asks the policy whether it may,
 * and hands the call to the method's handler only when the caller is authorised and the one
 * request message has arrived. The call owns nothing of HTTP/2: it reaches the peer only
 * through its transport stream (h2.h).
 *
 * Lifecycle contract:
 *  - The handler must eventually call gw_call_finish() (or gw_call_finish_fault() /
 *    gw_call_fail()), possibly from a later callback; before that it may gw_call_send() responses
 * (once for unary methods).
 *  - If the stream goes away first (client reset, connection closed, deadline passed, server drain
 *    cut-off, client stopped reading) the call runs the cancel function set with
 *    gw_call_set_cancel() exactly once, then frees itself: after the cancel function returns,
 *    the handler must not touch the call, and it must have cancelled every asynchronous
 *    operation that would call back into it.
 *  - After gw_call_finish() the call pointer is dead for the handler.
 *  - Handlers never block: database work goes through db.h / store.h callbacks.
 *  - Server streaming with backpressure: send while gw_call_writable() is true; when it turns
 *    false, register gw_call_on_writable() and return to the loop; the function runs (from the
 *    loop, once) when the client has taken enough of the queue. Memory per call stays bounded
 *    whatever the client's reading speed; a client that takes nothing for
 *    stream_write_timeout_ms is reset and the cancel function runs.
 *  - A server-streaming call's caller is checked again while it streams (rpc.h's recheck): once
 *    [auth] principal_cache_ms has passed since the last check and a message was sent since,
 *    gw_call_writable() is false until the answer; the registered writable function then runs as
 *    usual, or, when the caller is no longer valid (account or certificate disabled, session
 *    ended), the cancel function runs and the call ends with the identity step's refusal. */
#ifndef GW_CALL_H
#define GW_CALL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

#include "err.h"
#include "identity.h"
#include "log.h"

struct gw_app;
struct gw_arena;
struct gw_call;
struct gw_policy;

typedef void (*gw_handler_fn)(struct gw_call *call, const uint8_t *req, size_t len);
typedef void (*gw_cancel_fn)(void *arg);
typedef void (*gw_writable_fn)(void *arg);

struct gw_method {
    const char *path;      /* "/waygate.v1.WaybillIntake/Submit" */
    gw_handler_fn handler; /* NULL: answered UNIMPLEMENTED once the caller is authorised */
    bool server_streaming; /* the handler may gw_call_send() more than once */
    bool confidential;     /* its calls, refused or not, are counted in no per-method metric and
                            * leave no line in the log that names them (lawful access, Art. 16:
                            * their number, timing and content are not the metrics' or the log's
                            * readers' to know) */
};

struct gw_app *gw_call_app(struct gw_call *call);
/* The policy the call started with: it stays valid, and the same, until the call ends, even
 * when a reload replaces the dispatcher's policy meanwhile. */
const struct gw_policy *gw_call_policy(const struct gw_call *call);
/* The resolved caller (valid from the handler's start to the call's end). */
const struct gw_principal *gw_call_principal(const struct gw_call *call);
/* The context of the call's log lines: request id, peer and principal; for a confidential call
 * none of them (gw_call_confidential). For what a record keeps, use gw_call_peer. */
const struct gw_log_ctx *gw_call_log_ctx(const struct gw_call *call);
/* May a line about this call at level be written now? False below the log's level, and past its
 * connection's budget of per-stream lines (gw_h2_stream_log_ok), which says how many it left
 * out; true for a call whose stream is gone. Ask only just before writing the line. */
bool gw_call_log_ok(struct gw_call *call, enum gw_log_level level);
/* The connection's address, for audit records and incidents (valid until the call ends). */
const char *gw_call_peer(const struct gw_call *call);
const char *gw_call_request_id(const struct gw_call *call);
/* A request metadata value, or NULL when absent. Only "authorization" is kept for now (the
 * transport drops other metadata); valid until the call ends. */
const char *gw_call_metadata(const struct gw_call *call, const char *name);
/* Monotonic deadline in milliseconds (gw_clock_ms() clock); always set (capped by config). */
uint64_t gw_call_deadline_ms(const struct gw_call *call);
/* From now on the call is confidential, as a confidential method's calls are, and as every call
 * of a principal in a confidential role is from its identity step on
 * (gw_policy_confidential_role): counted in no per-method metric; the call writes no line of its
 * own (finished, cancelled: a call writes none before its handler runs), and its log context is
 * empty, so that a line a handler must still write (an error an operator needs) names no request
 * id, peer or principal. Such a line must not name the method, a case, its free text, a waybill
 * or the caller either: handlers of confidential calls word them so. For a call whose
 * confidentiality only its handler can tell (a login to a lawful_access account). */
void gw_call_set_confidential(struct gw_call *call);
/* True once the call is confidential (above). */
bool gw_call_confidential(const struct gw_call *call);
/* The call's arena: freed (and wiped) when the call ends. */
struct gw_arena *gw_call_arena(struct gw_call *call);
/* A protobuf-c allocator drawing from the call's arena (free is a no-op). */
ProtobufCAllocator *gw_call_pb_allocator(struct gw_call *call);

/* Unpacks the request into the call's arena and checks every string field, at any depth
 * (wirecheck.h: valid UTF-8, no NUL). On failure finishes the call (INVALID_ARGUMENT naming the
 * field and the rule) and returns NULL: the handler must return at once without touching the
 * call. */
ProtobufCMessage *gw_call_unpack(struct gw_call *call, const ProtobufCMessageDescriptor *desc,
                                 const uint8_t *req, size_t len);

/* Packs msg and queues it as one response message. Returns 0, GW_ETOOBIG (over the message
 * cap, or the handler kept sending past gw_call_writable() false), GW_EINVAL (a second
 * response on a unary method, or the call is not running) or GW_ENOMEM; on error the handler
 * should finish the call with that error. */
int gw_call_send(struct gw_call *call, const ProtobufCMessage *msg) GW_MUST_CHECK;
/* True while the call's queued responses are under the stream's high-water mark and its caller
 * is not being checked again (above). */
bool gw_call_writable(struct gw_call *call);
/* Runs fn(arg) once, from the event loop, when the queue has drained below the low-water mark
 * (at the next loop turn if it already has; never twice in one turn). Replaces an earlier
 * registration. */
void gw_call_on_writable(struct gw_call *call, gw_writable_fn fn, void *arg);

/* Counts n bytes the handler holds for its responses (read from the database, not yet sent)
 * against the connection's and the gateway's response budgets, in place of what it counted
 * before: a handler that holds an estimate of its next batch before asking for it, and asks only
 * while the call is writable, cannot have many calls read batches at once past the budgets.
 * While it holds bytes the call stays writable (its own queue permitting), so it must hold only
 * what it can send without reading more, and lower the hold as it sends (h2.h,
 * gw_h2_stream_hold). Given back when the call is answered or ends. */
void gw_call_hold(struct gw_call *call, size_t n);

/* Ends the call with a status and message. Handlers use it only for OK
 * (gw_call_finish(call, GW_GRPC_OK, NULL)); every refusal goes through gw_call_finish_fault or
 * gw_call_fail, so that err.c alone chooses the status and writes the message. */
void gw_call_finish(struct gw_call *call, enum gw_grpc_status status, const char *message);
/* Ends the call refused with f: status and grpc-message from err.c (gw_fault_status,
 * gw_fault_format). */
void gw_call_finish_fault(struct gw_call *call, const struct gw_fault *f);
/* Same for a fault made here: err (enum gw_err), field path (may be NULL or "") and rule
 * (GW_RULE_NONE: the code's description). */
void gw_call_fail(struct gw_call *call, int err, const char *field, enum gw_rule rule);

void gw_call_set_cancel(struct gw_call *call, gw_cancel_fn fn, void *arg);

#endif
