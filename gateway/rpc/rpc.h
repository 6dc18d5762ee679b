/* rpc.h: the dispatcher between the HTTP/2 session and the handlers. It implements the
 * transport's upcalls (h2.h): a new stream is routed by its :path in the method table; the call
 * (call.h) then resolves the caller's identity, a step that may wait, asks the policy
 * (policy.h) whether that principal may call the method, and only then runs the handler. A
 * refusal is decided before any handler work. The request body may arrive while the identity
 * step runs (held within max_message_size), but a fault in it is answered only once the caller
 * is identified and allowed: a caller refused by identity or policy gets that refusal.
 * The method table (path -> handler) belongs to the handlers' layer and is passed in; who may
 * call what belongs to the policy. */
#ifndef GW_RPC_H
#define GW_RPC_H

#include <stddef.h>

#include "call.h"
#include "h2.h"
#include "prom.h"

struct event_base;
struct gw_config;
struct gw_rpc;

struct gw_rpc_table {
    const struct gw_method *methods;
    size_t n;
};

/* The identity step. Called once per call with the connection's verified peer and the call's
 * authorization metadata (NULL when absent). It must end in exactly one gw_call_identified(),
 * now or from a later callback; if it waits, it sets a cancel hook with gw_call_set_cancel()
 * first (the call may be reset meanwhile). */
typedef void (*gw_rpc_identify_fn)(void *ctx, struct gw_call *call, const struct gw_peer *peer,
                                   const char *authorization);

/* Called when a call is refused before its handler runs (identity step or policy), for the
 * record of administrative calls: p is what the identity step knew (NULL if nothing), f the
 * refusal. Must not touch the call. */
typedef void (*gw_rpc_refused_fn)(void *ctx, const char *path, const struct gw_peer *peer,
                                  const struct gw_principal *p, const struct gw_fault *f);

/* The outcome of the identity step: f NULL (or without a code) with the principal, or a fault
 * (GW_EAUTH: UNAUTHENTICATED) naming the rule; with a fault, p may still say what was known
 * (the certificate principal) for the refusal hook, or be NULL. The call then checks the policy; on
 * refusal it is finished (and may be freed) before this returns. */
void gw_call_identified(struct gw_call *call, const struct gw_fault *f,
                        const struct gw_principal *p);

/* The re-check of a server-streaming call's caller (rpc params' recheck): the identity step run
 * again, with the same arguments, while the handler streams. It must end in exactly one
 * gw_call_rechecked(), now or from a later callback; if it waits, it sets its cancel hook with
 * gw_call_set_recheck_cancel() (not gw_call_set_cancel(), which is the handler's), which runs
 * when the call ends first. A caller found again is checked against the policy again, as a new
 * call would be: a refusal then (a password to change first included) ends the stream. */
void gw_call_rechecked(struct gw_call *call, const struct gw_fault *f,
                       const struct gw_principal *p);
void gw_call_set_recheck_cancel(struct gw_call *call, gw_cancel_fn fn, void *arg);

/* The synchronous identity step for certificates (identity.h's bootstrap rule). */
void gw_rpc_identify_cert(void *ctx, struct gw_call *call, const struct gw_peer *peer,
                          const char *authorization);

/* The shares of the gateway's work per principal (the database queue's, db.h). admit is asked
 * before a call's identity step and again before its handler starts: false refuses the new call
 * with f (filled by admit; GW_ETOOBIG, which is RESOURCE_EXHAUSTED) before it does any work, and
 * without the refusal hook (a record would be work done for the caller over its share). within
 * runs fn(arg) with the caller as the owner of the work fn submits: the identity step (and its
 * re-check), the handler's start, a writable function. Both get the connection's verified peer
 * and p, the principal the identity step resolved: NULL for the identity step itself (its
 * work is the connection's, whatever token it carries), the call's principal from the
 * handler's start on. */
typedef bool (*gw_rpc_admit_fn)(void *ctx, const struct gw_peer *peer, const struct gw_principal *p,
                                struct gw_fault *f);
typedef void (*gw_rpc_run_fn)(void *arg);
typedef void (*gw_rpc_within_fn)(void *ctx, const struct gw_peer *peer,
                                 const struct gw_principal *p, gw_rpc_run_fn fn, void *arg);

struct gw_rpc_params {
    const struct gw_config *cfg;
    struct event_base *base;
    struct gw_app *app; /* handed to handlers through gw_call_app() */
    const struct gw_rpc_table *methods;
    const struct gw_policy *policy;
    gw_rpc_identify_fn identify; /* NULL: gw_rpc_identify_cert */
    void *identify_ctx;
    /* The caller of a server-streaming call is checked again (with identify_ctx) before it is
     * writable once principal_cache_ms ([auth]) has passed since the last check and a message was
     * sent since: an answer that refuses the caller (UNAUTHENTICATED, PERMISSION_DENIED: a
     * disabled account or certificate, an ended session) ends the stream with that status and
     * message, as the identity step would refuse a new call; a failed lookup (the database
     * unavailable) lets the stream go on until the next check. NULL: streams are not
     * re-checked. */
    gw_rpc_identify_fn recheck;
    gw_rpc_refused_fn refused; /* NULL: none */
    void *refused_ctx;
    gw_rpc_admit_fn admit;   /* NULL: every call admitted */
    gw_rpc_within_fn within; /* NULL: fn runs as it is */
    void *share_ctx;
    unsigned handlers_per_turn; /* handlers started per loop turn at most; 0: 16 */
    unsigned turn_ms; /* and no handler starts once this long has passed since the turn's first
                       * one started; 0: 10 ms */
};

/* Returns NULL on allocation failure. The params' pointers must outlive the dispatcher. */
struct gw_rpc *gw_rpc_new(const struct gw_rpc_params *p);
void gw_rpc_free(struct gw_rpc *rpc);

/* Replaces the policy new calls get (a reload). The calls already open keep the policy they
 * started with (each holds a reference, policy.h); the caller keeps its own reference to pol
 * and must keep it until the dispatcher is freed or the policy replaced again. */
void gw_rpc_set_policy(struct gw_rpc *rpc, const struct gw_policy *pol);

/* The upcalls the HTTP/2 sessions of a server call (ctx is rpc). */
struct gw_h2_upcalls gw_rpc_upcalls(struct gw_rpc *rpc);

/* The entry for path, or NULL when the path is not in the table. */
const struct gw_method *gw_rpc_lookup(const struct gw_rpc_table *t, const char *path);

/* Finished calls of one method (metrics): by gRPC status, and their latency from the headers'
 * arrival to the status. */
struct gw_rpc_method_stats {
    uint64_t by_status[GW_GRPC_NSTATUS];
    struct gw_prom_hist latency;
};
/* Entries: one per method of the table, in its order, then one for paths not in it. */
size_t gw_rpc_stats_n(const struct gw_rpc *rpc);
/* Entry i's path ("other" for the last); its counts. */
const char *gw_rpc_stats_path(const struct gw_rpc *rpc, size_t i);
const struct gw_rpc_method_stats *gw_rpc_stats(const struct gw_rpc *rpc, size_t i);
/* The gateway's request memory in flight (call.c's budget): bytes held now, the most held
 * since start, the limit (cfg->request_memory). */
void gw_rpc_request_memory(const struct gw_rpc *rpc, size_t *used, size_t *peak, size_t *limit);

#endif
