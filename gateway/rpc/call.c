/* call.c: one gRPC call (call.h for handlers, rpc_int.h for the dispatcher): request assembly,
 * the identity and policy step, the deadline, the handler's lifecycle, response packing and
 * backpressure. Protocol only: HTTP/2 is reached through the call's transport stream (h2.h).
 * Invariants: the stream owns the call and the call frees itself only in its close upcall; the
 * handler runs only after the caller was identified and the policy allowed the method; the
 * cancel function runs at most once and only while the identity step or the handler is
 * running; a server-streaming call's re-check of its caller runs one at a time, starts from the
 * loop, and is cancelled (its answer never delivered) when the call ends; after the call is
 * finished (by the handler, the deadline, a refusal or an early error) no handler code is
 * called; a request error is answered only after the identity and policy steps allowed the
 * caller.
 * Memory (issue 10, finding 2): the request's bytes and its unpacked message are taken from
 * the connection's, the client certificate's (certlimit.h; none without a certificate) and the
 * gateway's budgets of request memory in flight (budget.h) before they are held, and given back
 * when the call ends; a request over any of them is refused RESOURCE_EXHAUSTED, naming it; a
 * message is measured on the wire before it is unpacked, and unpacked only within UNPACK_FACTOR x
 * its size + UNPACK_BASE; at most handlers_per_turn handlers start per loop turn, and none once
 * turn_ms has passed since the turn's first: the others wait in the dispatcher's ready queue for
 * the next turns. */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>

#include "alloc.h"
#include "budget.h"
#include "call.h"
#include "clock.h"
#include "config.h"
#include "h2.h"
#include "log.h"
#include "policy.h"
#include "rpc.h"
#include "rpc_int.h"
#include "wirecheck.h"

/* The arena's cap for the handler's whole life (responses and state are built in it too). */
#define ARENA_FACTOR 32u
#define ARENA_BASE (1u << 20)
/* An unpacked request may take at most UNPACK_FACTOR x its wire size + UNPACK_BASE: real
 * messages take under 4x (strings rounded to 16 bytes, structs of defaults), while 2 bytes of
 * an empty repeated submessage would take a whole struct. */
#define UNPACK_FACTOR 8u
#define UNPACK_BASE (64u * 1024u)
/* Connections remembered in one round-robin pass of the ready queue. */
#define RUN_FAIR_MAX 64u

enum call_state {
    CALL_IDENTIFYING, /* the identity step runs; the request may still be arriving */
    CALL_AUTHORISED,  /* the policy allowed the method; waiting for the request to end */
    CALL_RUNNING,     /* the handler has the call */
    CALL_DONE,        /* status decided; responses and trailers draining */
};

struct gw_call {
    struct gw_rpc *rpc;
    struct gw_h2_stream *st;
    const struct gw_method *method;
    bool confidential;              /* counted in no metric, named in no log line (confide) */
    const struct gw_policy *policy; /* a reference: the policy the call started with, kept
                                     * across a reload until the call ends */
    enum call_state state;
    bool request_done; /* the client half-closed after exactly one whole message */
    /* A request error found while the identity step ran: answered only once the caller is
     * identified and allowed (an unidentified caller learns nothing about message rules). */
    int held_err;
    enum gw_rule held_rule;
    unsigned long held_limit;
    uint64_t start_ms;
    uint64_t deadline_ms;
    struct event *deadline_ev;
    char request_id[72];
    char *authorization; /* wiped on free */
    struct gw_principal principal;
    const char *peer; /* the connection's address (the stream's peer outlives the call) */
    const struct gw_peer *peer_info; /* the stream's peer, whole */
    struct gw_log_ctx log;           /* empty while confidential */
    struct gw_arena *arena;
    bool arena_exhausted;
    ProtobufCAllocator pba;
    struct gw_grpc_decoder dec;
    uint8_t *req; /* the one request message (gw_malloc'd) */
    size_t req_len;
    unsigned nreq;
    unsigned nsent;
    struct gw_budget *conn_mem; /* the connection's budget (its h2 session outlives the call) */
    struct gw_budget *cert_mem; /* the certificate's, or NULL (outlives the h2 session) */
    size_t held;                /* request bytes taken from conn_mem, cert_mem and rpc->mem */
    size_t unpack_held;         /* unpacked-message bytes taken likewise */
    bool queued;                /* in rpc's ready queue */
    struct gw_call *ready_next, *ready_prev; /* doubly linked: any call leaves it in O(1) */
    gw_cancel_fn cancel_fn;
    void *cancel_arg;
    bool in_cancel;
    gw_writable_fn writable_fn;
    void *writable_arg;
    /* The caller re-checked while a server-streaming handler runs (rpc.h's recheck). */
    struct event *recheck_ev; /* starts the check from the loop; NULL: never re-checked */
    bool rechecking;          /* a check queued or in flight: the call is not writable */
    uint64_t checked_ms;      /* when the caller was last checked */
    unsigned checked_nsent;   /* nsent then: no check before another message went out */
    gw_cancel_fn recheck_cancel_fn;
    void *recheck_cancel_arg;
};

static void *pb_alloc(void *data, size_t size)
{
    struct gw_call *call = data;
    void *p = gw_arena_alloc(call->arena, size);

    if (p == NULL)
        call->arena_exhausted = true;
    return p;
}

static void pb_free(void *data, void *p)
{
    (void)data;
    (void)p;
}

static void finish(struct gw_call *call, enum gw_grpc_status status, const char *message);
static void fail_request(struct gw_call *call, int err, enum gw_rule rule, unsigned long limit);

static bool cancellable(const struct gw_call *call)
{
    return call->state == CALL_IDENTIFYING || call->state == CALL_RUNNING;
}

static void run_cancel(struct gw_call *call)
{
    if (cancellable(call) && call->cancel_fn != NULL && !call->in_cancel) {
        gw_cancel_fn fn = call->cancel_fn;
        call->cancel_fn = NULL;
        call->in_cancel = true;
        fn(call->cancel_arg);
        call->in_cancel = false;
    }
}

static void deadline_cb(evutil_socket_t fd, short what, void *arg)
{
    struct gw_call *call = arg;

    (void)fd;
    (void)what;
    if (call->state == CALL_DONE)
        return;
    run_cancel(call);
    finish(call, gw_err_grpc_status(GW_ETIMEOUT), gw_err_str(GW_ETIMEOUT)); /* may free call */
}

/* A request id for logs: the dispatcher's random prefix (drawn once) and a per-dispatcher counter,
 * so ids are unique across gateways and restarts without a RAND_bytes per call. Not a secret. */
static void make_request_id(struct gw_rpc *rpc, char out[72])
{
    static const char hex[] = "0123456789abcdef";
    uint64_t n = ++rpc->calls;
    const char *prefix = rpc->id_prefix;
    size_t len = strlen(prefix);

    memcpy(out, prefix, len);
    out[len++] = '-';
    for (int shift = 60; shift >= 0; shift -= 4)
        out[len++] = hex[(n >> shift) & 15];
    out[len] = '\0';
}

/* ---- request memory in flight ---- */

/* Sets what the call holds of the budgets to held + unpack_held, taking or giving back the
 * difference. Returns 0, or GW_ETOOBIG with *rule naming the exceeded budget (the
 * certificate's, or the connection's or the gateway's) and *limit its limit (nothing taken). */
static int hold(struct gw_call *call, size_t held, size_t unpack_held, enum gw_rule *rule,
                unsigned long *limit)
{
    size_t now = call->held + call->unpack_held, want = held + unpack_held;
    struct gw_budget *const levels[] = {call->conn_mem, call->cert_mem, &call->rpc->mem};
    struct gw_budget *over = NULL;

    if (want > now && gw_budget_take_levels(levels, 3, want - now, &over) != 0) {
        *rule = over == call->cert_mem ? GW_RULE_REQUEST_MEMORY_CERT : GW_RULE_REQUEST_MEMORY;
        *limit = (unsigned long)over->limit;
        return GW_ETOOBIG;
    }
    if (want < now)
        gw_budget_give_levels(levels, 3, now - want);
    call->held = held;
    call->unpack_held = unpack_held;
    return 0;
}

/* Gives back all the call holds of the budgets. */
static void hold_none(struct gw_call *call)
{
    struct gw_budget *const levels[] = {call->conn_mem, call->cert_mem, &call->rpc->mem};

    gw_budget_give_levels(levels, 3, call->held + call->unpack_held);
    call->held = 0;
    call->unpack_held = 0;
}

/* ---- the ready queue: handlers started at most handlers_per_turn per loop turn ---- */

static void arm_run(struct gw_rpc *rpc)
{
    static const struct timeval zero = {0, 0};

    if (!evtimer_pending(rpc->run_ev, NULL))
        (void)evtimer_add(rpc->run_ev, &zero);
}

/* True when this turn has started its share of handlers: handlers_per_turn of them, or any
 * number once turn_ms has passed since the first. */
static bool turn_full(const struct gw_rpc *rpc)
{
    return rpc->ran >= rpc->p.handlers_per_turn ||
           (rpc->ran > 0 && gw_clock_ms() - rpc->turn_start_ms >= rpc->p.turn_ms);
}

/* Counts a handler start in this turn. */
static void count_start(struct gw_rpc *rpc)
{
    if (rpc->ran++ == 0)
        rpc->turn_start_ms = gw_clock_ms();
}

/* Takes call out of the ready queue, wherever it is (a peer resetting the newest of many queued
 * streams first made a walk from the head quadratic). */
static void unqueue(struct gw_call *call)
{
    struct gw_rpc *rpc = call->rpc;

    if (!call->queued)
        return;
    if (call->ready_prev != NULL)
        call->ready_prev->ready_next = call->ready_next;
    else
        rpc->ready_head = call->ready_next;
    if (call->ready_next != NULL)
        call->ready_next->ready_prev = call->ready_prev;
    else
        rpc->ready_tail = call->ready_prev;
    call->ready_next = call->ready_prev = NULL;
    call->queued = false;
}

static void call_free(struct gw_call *call)
{
    if (call == NULL)
        return;
    unqueue(call);
    hold_none(call);
    if (call->deadline_ev != NULL)
        event_free(call->deadline_ev);
    if (call->recheck_ev != NULL)
        event_free(call->recheck_ev);
    gw_grpc_decoder_clear(&call->dec);
    gw_free_wipe(call->req, call->req_len);
    gw_free_str_wipe(call->authorization);
    gw_arena_free(call->arena);
    gw_policy_unref(call->policy);
    gw_free(call);
}

/* The call is confidential from now on (call.h, gw_call_set_confidential): no metric counts it,
 * call.c logs nothing of it, and its log context is emptied, since a request id (a client may
 * choose it), a peer or a principal on a line are what would tie that line to lawful access. */
static void confide(struct gw_call *call)
{
    call->confidential = true;
    memset(&call->log, 0, sizeof(call->log));
}

/* A refusal decided by the call itself (identity, policy, an unimplemented method), before
 * the handler runs. */
static void refuse(struct gw_call *call, const struct gw_fault *f)
{
    char msg[256];

    gw_fault_format(f, msg, sizeof(msg));
    finish(call, gw_fault_status(f), msg);
}

/* False when the caller holds its share of the gateway's work (rpc.h's admit): *f is the
 * refusal. p: NULL before the identity step, the call's principal after it. */
static bool admitted(struct gw_call *call, const struct gw_principal *p, struct gw_fault *f)
{
    const struct gw_rpc_params *rp = &call->rpc->p;

    return rp->admit == NULL || rp->admit(rp->share_ctx, call->peer_info, p, f);
}

/* fn(arg) with the caller (the peer's certificate, or p once known) as the owner of the work
 * it submits (rpc.h's within). */
static void within(struct gw_call *call, const struct gw_principal *p, gw_rpc_run_fn fn, void *arg)
{
    const struct gw_rpc_params *rp = &call->rpc->p;

    if (rp->within != NULL)
        rp->within(rp->share_ctx, call->peer_info, p, fn, arg);
    else
        fn(arg);
}

static void run_handler(void *arg)
{
    struct gw_call *call = arg;

    call->method->handler(call, call->req, call->req_len);
}

static void start_handler(struct gw_call *call)
{
    struct gw_fault f;

    /* Asked again here, now of the principal the identity step resolved (an account's own
     * share, not its certificate's): calls admitted at their identity step may have waited in
     * the ready queue meanwhile, and their principal's earlier calls filled its share. */
    if (!admitted(call, &call->principal, &f)) {
        refuse(call, &f);
        return;
    }
    /* No "call started" line: the finish line names the method and the time taken, and a line
     * written here would outlive a handler's learning that its call is confidential (a login to
     * a lawful_access account: only the account's lookup tells). */
    call->state = CALL_RUNNING;
    within(call, &call->principal, run_handler, call);
}

/* Runs the handler once the caller is authorised and the request is complete: now, or from the
 * ready queue (round robin over connections) when this turn has started its share of handlers
 * already or others wait. */
static void maybe_run(struct gw_call *call)
{
    struct gw_rpc *rpc = call->rpc;

    if (call->state != CALL_AUTHORISED)
        return;
    if (call->method->handler == NULL) { /* no need to wait for the request */
        struct gw_fault f;
        (void)gw_fault_set(&f, GW_EUNIMPL, NULL, call->method->path, GW_RULE_NOT_IMPLEMENTED);
        refuse(call, &f);
        return;
    }
    if (!call->request_done || call->queued)
        return;
    if (rpc->ready_head != NULL || turn_full(rpc)) {
        call->queued = true; /* started by gw_call_run_ready at a later turn */
        call->ready_prev = rpc->ready_tail;
        if (rpc->ready_tail != NULL)
            rpc->ready_tail->ready_next = call;
        else
            rpc->ready_head = call;
        rpc->ready_tail = call;
        arm_run(rpc);
        return;
    }
    count_start(rpc);
    arm_run(rpc); /* the next turn starts the count again */
    start_handler(call);
}

/* True when conn is among seen[0..n). */
static bool served(struct gw_budget *const *seen, size_t n, const struct gw_budget *conn)
{
    for (size_t i = 0; i < n; i++)
        if (seen[i] == conn)
            return true;
    return false;
}

void gw_call_run_ready(struct gw_rpc *rpc)
{
    struct gw_budget *seen[RUN_FAIR_MAX]; /* connections served in this pass */
    size_t nseen = 0;

    rpc->ran = 0;
    /* Round robin over connections: each pass starts the first waiting call of each connection
     * (a connection with a backlog does not hold back another's one call). A handler may finish,
     * reset or free any queued call, so the scan starts again from the head after each. */
    while (rpc->ready_head != NULL && !turn_full(rpc)) {
        struct gw_call *call = rpc->ready_head;
        while (call != NULL && served(seen, nseen, call->conn_mem))
            call = call->ready_next;
        if (call == NULL) {
            nseen = 0; /* every waiting connection served once: the next pass */
            continue;
        }
        unqueue(call);
        if (call->state != CALL_AUTHORISED || !call->request_done)
            continue;
        if (nseen == RUN_FAIR_MAX)
            nseen = 0;
        seen[nseen++] = call->conn_mem;
        count_start(rpc);
        start_handler(call); /* may free the call, and others */
    }
    if (rpc->ready_head != NULL || rpc->ran > 0)
        arm_run(rpc);
}

void gw_call_identified(struct gw_call *call, const struct gw_fault *f,
                        const struct gw_principal *p)
{
    const struct gw_rpc_params *rp = &call->rpc->p;
    struct gw_fault denied;

    if (call->state != CALL_IDENTIFYING)
        return;
    call->cancel_fn = NULL;
    if (p != NULL && gw_policy_confidential_role(p->role))
        confide(call); /* a lawful_access account's call, answered or refused */
    if (f != NULL && f->code != 0) {
        if (rp->refused != NULL)
            rp->refused(rp->refused_ctx, call->method->path, gw_h2_stream_peer(call->st), p, f);
        refuse(call, f);
        return;
    }
    call->principal = *p;
    if (!call->confidential)
        call->log.principal = call->principal.name[0] ? call->principal.name : NULL;
    if (gw_policy_may_call(call->policy, call->method->path, &call->principal, &denied) != 0) {
        if (rp->refused != NULL)
            rp->refused(rp->refused_ctx, call->method->path, gw_h2_stream_peer(call->st),
                        &call->principal, &denied);
        refuse(call, &denied);
        return;
    }
    call->state = CALL_AUTHORISED;
    call->checked_ms = gw_clock_ms();
    if (call->held_err != 0) {
        fail_request(call, call->held_err, call->held_rule, call->held_limit);
        return;
    }
    maybe_run(call);
}

static void run_identify(void *arg)
{
    struct gw_call *call = arg;
    const struct gw_rpc_params *rp = &call->rpc->p;

    rp->identify(rp->identify_ctx, call, call->peer_info, call->authorization);
}

/* ---- the caller re-checked while the handler streams (rpc.h's recheck) ---- */

static void run_recheck(void *arg)
{
    struct gw_call *call = arg;
    const struct gw_rpc_params *rp = &call->rpc->p;

    rp->recheck(rp->identify_ctx, call, call->peer_info, call->authorization);
}

/* From the loop, never inside the handler: an answer known at once (a cached certificate) may end
 * the call, which must not happen under a handler asking whether it may send. */
static void recheck_cb(evutil_socket_t fd, short what, void *arg)
{
    struct gw_call *call = arg;

    (void)fd;
    (void)what;
    if (call->state != CALL_RUNNING || !call->rechecking)
        return;
    within(call, NULL, run_recheck, call); /* the identity step's: the certificate's */
}

/* True when the caller is due to be checked again: an authenticated caller, a message sent since
 * the last check, and principal_cache_ms passed since it. */
static bool recheck_due(const struct gw_call *call)
{
    return call->recheck_ev != NULL && gw_principal_authenticated(&call->principal) &&
           call->nsent != call->checked_nsent &&
           gw_clock_ms() - call->checked_ms >= call->rpc->p.cfg->principal_cache_ms;
}

/* The call ends: a check queued is dropped, one in flight cancelled (its answer never comes). */
static void stop_recheck(struct gw_call *call)
{
    gw_cancel_fn fn = call->recheck_cancel_fn;

    if (!call->rechecking)
        return;
    call->rechecking = false;
    call->recheck_cancel_fn = NULL;
    (void)event_del(call->recheck_ev);
    if (fn != NULL)
        fn(call->recheck_cancel_arg);
}

void gw_call_set_recheck_cancel(struct gw_call *call, gw_cancel_fn fn, void *arg)
{
    call->recheck_cancel_fn = fn;
    call->recheck_cancel_arg = arg;
}

void gw_call_rechecked(struct gw_call *call, const struct gw_fault *f, const struct gw_principal *p)
{
    struct gw_fault denied;
    char msg[256];

    if (call->state != CALL_RUNNING || !call->rechecking)
        return;
    /* the caller found again is asked the policy's question again: a password expired (or
     * marked to change) since the call began refuses every method but ChangePassword, and so
     * ends the stream as it refuses a new call (review: the check saw only a session gone) */
    if (f == NULL && p != NULL &&
        gw_policy_may_call(call->policy, call->method->path, p, &denied) != 0)
        f = &denied;
    call->rechecking = false;
    call->recheck_cancel_fn = NULL;
    call->checked_ms = gw_clock_ms();
    call->checked_nsent = call->nsent;
    /* any refusal of the policy, or a fault of identity from the lookup: the caller is no longer
     * who the call was allowed for, refused as a new call would be */
    if (f == &denied || (f != NULL && (f->code == GW_EAUTH || f->code == GW_EPERM))) {
        run_cancel(call);
        gw_fault_format(f, msg, sizeof(msg));
        finish(call, gw_fault_status(f), msg); /* may free the call */
        return;
    }
    /* valid, or the lookup failed (nothing learnt): the stream goes on */
    if (call->writable_fn != NULL && call->st != NULL)
        gw_h2_stream_want_writable(call->st);
}

struct gw_call *gw_call_open(struct gw_rpc *rpc, struct gw_h2_stream *st, const struct gw_method *m,
                             const struct gw_grpc_headers *hdrs, uint64_t timeout_ms)
{
    const struct gw_rpc_params *rp = &rpc->p;
    const struct gw_config *cfg = rp->cfg;
    struct gw_call *call = NULL;
    size_t cap = (size_t)cfg->max_message_size * ARENA_FACTOR + ARENA_BASE;
    struct gw_fault f;
    const uint64_t start_ms = gw_clock_ms(); /* read first: the timer never fires before it + ms */
    struct timeval tv = gw_clock_tv(timeout_ms);

    call = gw_calloc(1, sizeof(*call));
    if (call == NULL)
        return NULL;
    call->rpc = rpc;
    call->st = st;
    call->method = m;
    call->policy = gw_policy_ref(rp->policy);
    call->state = CALL_IDENTIFYING;
    call->start_ms = start_ms;
    call->deadline_ms = call->start_ms + timeout_ms;
    gw_grpc_decoder_init(&call->dec, cfg->max_message_size);
    if (hdrs->has_request_id)
        snprintf(call->request_id, sizeof(call->request_id), "%s", hdrs->request_id);
    else
        make_request_id(rpc, call->request_id);
    if (hdrs->has_authorization) {
        call->authorization = gw_strdup(hdrs->authorization);
        if (call->authorization == NULL)
            goto fail;
    }
    call->peer_info = gw_h2_stream_peer(st);
    call->peer = call->peer_info->addr;
    call->log.request_id = call->request_id;
    call->log.peer = call->peer;
    if (m->confidential)
        confide(call);
    call->conn_mem = gw_h2_stream_budget(st);
    call->cert_mem = gw_h2_stream_cert_budget(st);
    call->arena = gw_arena_new(cap);
    call->deadline_ev = evtimer_new(rp->base, deadline_cb, call);
    if (call->arena == NULL || call->deadline_ev == NULL)
        goto fail;
    if (m->server_streaming && rp->recheck != NULL &&
        (call->recheck_ev = evtimer_new(rp->base, recheck_cb, call)) == NULL)
        goto fail;
    call->pba.alloc = pb_alloc;
    call->pba.free = pb_free;
    call->pba.allocator_data = call;
    if (evtimer_add(call->deadline_ev, &tv) != 0)
        goto fail;
    /* Inside the transport's input processing: a synchronous refusal only queues the answer.
     * A principal over its share is refused before the identity step (whose lookup of a token
     * is the call's first database request) does anything. */
    if (call->peer_info->bad_subject) {
        (void)gw_fault_set(&f, GW_EAUTH, NULL, "client certificate", GW_RULE_CERT_SUBJECT_FORM);
        refuse(call, &f);
        return call;
    }
    if (call->peer_info->over_cert_limit != 0) {
        (void)gw_fault_set(&f, GW_ETOOBIG, NULL, NULL, GW_RULE_CERT_CONNECTIONS);
        f.limit = call->peer_info->over_cert_limit;
        refuse(call, &f);
        return call;
    }
    if (!admitted(call, NULL, &f)) {
        refuse(call, &f);
        return call;
    }
    within(call, NULL, run_identify, call);
    return call;
fail:
    call_free(call);
    return NULL;
}

/* An error found while the request is still arriving: answer at once. */
static void fail_request(struct gw_call *call, int err, enum gw_rule rule, unsigned long limit)
{
    struct gw_fault f;
    char msg[256];

    if (call->state == CALL_RUNNING || call->state == CALL_DONE)
        return;
    if (call->state == CALL_IDENTIFYING) {
        if (call->held_err == 0) {
            call->held_err = err;
            call->held_rule = rule;
            call->held_limit = limit;
        }
        return;
    }
    run_cancel(call);
    (void)gw_fault_set(&f, err, NULL, NULL, rule);
    f.limit = limit;
    gw_fault_format(&f, msg, sizeof(msg));
    finish(call, gw_fault_status(&f), msg);
}

static int on_message(void *arg, const uint8_t *msg, size_t len)
{
    struct gw_call *call = arg;

    if (call->nreq++ > 0)
        return GW_EPROTO; /* a second message on a unary-request method */
    if (len > 0 && msg == call->dec.buf) {
        /* assembled from several DATA frames: the decoder's buffer becomes the request, no
         * second copy of up to max_message_size (issue 10, finding 2: the loop held) */
        call->req = gw_grpc_decoder_take(&call->dec);
    } else if (len > 0) {
        call->req = gw_malloc(len);
        if (call->req == NULL)
            return GW_ENOMEM;
        memcpy(call->req, msg, len);
    }
    call->req_len = len;
    return 0;
}

void gw_call_up_data(void *obj, const uint8_t *data, size_t len)
{
    struct gw_call *call = obj;
    enum gw_rule rule;
    unsigned long limit;
    int rc;

    if (call->state == CALL_RUNNING || call->state == CALL_DONE || call->request_done ||
        call->held_err != 0)
        return; /* an answered (or refused) call ignores the rest of the body */
    rc = gw_grpc_decoder_feed(&call->dec, data, len, on_message, call);
    if (rc == 0 && hold(call, (size_t)call->dec.bufcap + call->req_len, 0, &rule, &limit) != 0) {
        /* over a budget: what was buffered goes at once, the rest of the body is discarded */
        gw_grpc_decoder_clear(&call->dec);
        gw_free_wipe(call->req, call->req_len);
        call->req = NULL;
        call->req_len = 0;
        hold_none(call);
        fail_request(call, GW_ETOOBIG, rule, limit);
        return;
    }
    switch (rc) {
    case 0:
        return;
    case GW_ETOOBIG:
        fail_request(call, rc, GW_RULE_MESSAGE_TOO_LARGE, call->rpc->p.cfg->max_message_size);
        return;
    case GW_EUNIMPL:
        fail_request(call, rc, GW_RULE_COMPRESSED, 0);
        return;
    case GW_EPROTO:
        /* gRPC convention (grpc-java, grpc-go): a second request message on a method without
         * client streaming is a protocol violation, answered INTERNAL like a bad prefix. */
        fail_request(call, rc, call->nreq > 1 ? GW_RULE_SECOND_MESSAGE : GW_RULE_MALFORMED_PREFIX,
                     0);
        return;
    default:
        fail_request(call, rc, GW_RULE_NONE, 0);
        return;
    }
}

void gw_call_up_end(void *obj)
{
    struct gw_call *call = obj;

    if (call->state == CALL_RUNNING || call->state == CALL_DONE || call->request_done ||
        call->held_err != 0)
        return;
    if (!gw_grpc_decoder_idle(&call->dec)) {
        fail_request(call, GW_EPROTO, GW_RULE_TRUNCATED_MESSAGE, 0);
        return;
    }
    if (call->nreq == 0) {
        fail_request(call, GW_EPROTO, GW_RULE_NO_MESSAGE, 0);
        return;
    }
    call->request_done = true;
    maybe_run(call);
}

void gw_call_up_writable(void *obj)
{
    struct gw_call *call = obj;
    gw_writable_fn fn = call->writable_fn;

    if (call->state != CALL_RUNNING || fn == NULL || call->rechecking)
        return; /* while the caller is re-checked, fn waits for the answer */
    call->writable_fn = NULL;
    /* may finish or free the call (within reads the peer and the principal before fn runs) */
    within(call, &call->principal, fn, call->writable_arg);
}

void gw_call_up_close(void *obj)
{
    struct gw_call *call = obj;
    bool cancel = cancellable(call) && call->cancel_fn != NULL && !call->in_cancel;

    /* the line asks the stream's connection for its budget: before the stream is let go */
    if ((cancel || call->rechecking) && !call->confidential && gw_call_log_ok(call, GW_LOG_INFO))
        gw_log_write(GW_LOG_INFO, "call", &call->log, "call cancelled: %s", call->method->path);
    call->st = NULL;
    stop_recheck(call);
    if (call->state != CALL_DONE && !call->confidential) /* closed before a status: cancelled */
        gw_rpc_count(call->rpc, call->method, GW_GRPC_CANCELLED, gw_clock_ms() - call->start_ms);
    if (cancel)
        run_cancel(call);
    call_free(call);
}

/* ---- responses ---- */

/* The request's buffers (the message being assembled, the whole message) are not needed once the
 * call is answered: freed (wiped) at once, not when the client gets round to closing its stream. */
static void release_request(struct gw_call *call)
{
    gw_grpc_decoder_clear(&call->dec);
    gw_free_wipe(call->req, call->req_len);
    call->req = NULL;
    call->req_len = 0;
}

/* Decides the status and hands it to the stream (which closes later, from the loop: never inside
 * gw_h2_stream_finish, so a completion callback that finishes its call frees no other call). */
static void finish(struct gw_call *call, enum gw_grpc_status status, const char *message)
{
    if (call->state == CALL_DONE)
        return;
    stop_recheck(call);
    call->state = CALL_DONE;
    release_request(call);
    call->cancel_fn = NULL;
    call->writable_fn = NULL;
    event_del(call->deadline_ev);
    /* A confidential call: no line at all, not even one without its method (its status,
     * message and timing would tell a lawful case's progress). */
    if (!call->confidential) {
        enum gw_log_level level = status == GW_GRPC_OK ? GW_LOG_DEBUG : GW_LOG_INFO;
        gw_rpc_count(call->rpc, call->method, status, gw_clock_ms() - call->start_ms);
        if (gw_call_log_ok(call, level))
            gw_log_write(level, "call", &call->log,
                         "call finished: %s grpc-status %d (%s) after %llu ms", call->method->path,
                         (int)status, message ? message : "",
                         (unsigned long long)(gw_clock_ms() - call->start_ms));
    }
    if (call->st != NULL)
        gw_h2_stream_finish(call->st, status, message); /* may free the call */
}

int gw_call_send(struct gw_call *call, const ProtobufCMessage *msg)
{
    size_t size = protobuf_c_message_get_packed_size(msg);
    uint8_t *p;
    int rc;

    if (call->state != CALL_RUNNING || call->in_cancel || call->st == NULL)
        return GW_EINVAL;
    if (!call->method->server_streaming && call->nsent > 0)
        return GW_EINVAL;
    if (size > call->rpc->p.cfg->max_message_size)
        return GW_ETOOBIG;
    p = gw_h2_stream_reserve(call->st, size);
    if (p == NULL)
        return gw_h2_stream_writable(call->st) ? GW_ENOMEM : GW_ETOOBIG;
    if (protobuf_c_message_pack(msg, p) != size)
        return GW_EINTERNAL;
    rc = gw_h2_stream_commit(call->st, size);
    if (rc != 0)
        return rc;
    call->nsent++;
    return 0;
}

bool gw_call_writable(struct gw_call *call)
{
    static const struct timeval now = {0, 0};

    if (call->st == NULL || call->state != CALL_RUNNING || call->rechecking)
        return false;
    if (recheck_due(call) && evtimer_add(call->recheck_ev, &now) == 0) {
        call->rechecking = true; /* writable again once the caller is found valid */
        return false;
    }
    return gw_h2_stream_writable(call->st);
}

void gw_call_on_writable(struct gw_call *call, gw_writable_fn fn, void *arg)
{
    if (call->state != CALL_RUNNING || call->st == NULL)
        return;
    call->writable_fn = fn;
    call->writable_arg = arg;
    if (!call->rechecking) /* else asked for once the caller is found valid */
        gw_h2_stream_want_writable(call->st);
}

void gw_call_hold(struct gw_call *call, size_t n)
{
    if (call->st != NULL && call->state == CALL_RUNNING)
        gw_h2_stream_hold(call->st, n);
}

void gw_call_finish(struct gw_call *call, enum gw_grpc_status status, const char *message)
{
    if (call->state != CALL_RUNNING || call->in_cancel)
        return;
    finish(call, status, message);
}

void gw_call_finish_fault(struct gw_call *call, const struct gw_fault *f)
{
    char msg[256];

    gw_fault_format(f, msg, sizeof(msg));
    gw_call_finish(call, gw_fault_status(f), msg);
}

void gw_call_fail(struct gw_call *call, int err, const char *field, enum gw_rule rule)
{
    struct gw_fault f;

    (void)gw_fault_set(&f, err, NULL, field, rule);
    gw_call_finish_fault(call, &f);
}

void gw_call_set_cancel(struct gw_call *call, gw_cancel_fn fn, void *arg)
{
    if (!cancellable(call))
        return;
    call->cancel_fn = fn;
    call->cancel_arg = arg;
}

/* ---- accessors ---- */

struct gw_app *gw_call_app(struct gw_call *call)
{
    return call->rpc->p.app;
}
const struct gw_policy *gw_call_policy(const struct gw_call *call)
{
    return call->policy;
}
const struct gw_principal *gw_call_principal(const struct gw_call *call)
{
    return &call->principal;
}

bool gw_call_log_ok(struct gw_call *call, enum gw_log_level level)
{
    if (level < gw_log_level)
        return false;
    return call->st == NULL || gw_h2_stream_log_ok(call->st);
}

const struct gw_log_ctx *gw_call_log_ctx(const struct gw_call *call)
{
    return &call->log;
}
const char *gw_call_peer(const struct gw_call *call)
{
    return call->peer;
}
const char *gw_call_request_id(const struct gw_call *call)
{
    return call->request_id;
}
uint64_t gw_call_deadline_ms(const struct gw_call *call)
{
    return call->deadline_ms;
}
void gw_call_set_confidential(struct gw_call *call)
{
    confide(call);
}
bool gw_call_confidential(const struct gw_call *call)
{
    return call->confidential;
}
struct gw_arena *gw_call_arena(struct gw_call *call)
{
    return call->arena;
}
ProtobufCAllocator *gw_call_pb_allocator(struct gw_call *call)
{
    return &call->pba;
}

const char *gw_call_metadata(const struct gw_call *call, const char *name)
{
    if (strcmp(name, "authorization") == 0)
        return call->authorization;
    return NULL;
}

/* ---- unpack with string checking ---- */

ProtobufCMessage *gw_call_unpack(struct gw_call *call, const ProtobufCMessageDescriptor *desc,
                                 const uint8_t *req, size_t len)
{
    ProtobufCMessage *m;
    struct gw_wire_measure wm;
    struct gw_fault f;
    size_t bound = (size_t)UNPACK_FACTOR * len + UNPACK_BASE, cap;
    enum gw_rule rule;
    unsigned long limit;

    /* Checked and measured on the wire first: nothing is unpacked that breaks a string rule or
     * would take more than its bound. */
    if (gw_wire_measure_max(desc, req, len, bound, &wm, &f) != 0) {
        gw_call_finish_fault(call, &f);
        return NULL;
    }
    if (wm.unpacked > bound) {
        gw_call_fail(call, GW_ETOOBIG, "request", GW_RULE_UNPACK_TOO_LARGE);
        return NULL;
    }
    if (hold(call, call->held, call->unpack_held + wm.unpacked, &rule, &limit) != 0) {
        (void)gw_fault_set(&f, GW_ETOOBIG, NULL, "request", rule);
        f.limit = limit;
        gw_call_finish_fault(call, &f);
        return NULL;
    }
    cap = gw_arena_cap(call->arena);
    gw_arena_set_cap(call->arena, gw_arena_used(call->arena) + bound);
    m = protobuf_c_message_unpack(desc, &call->pba, len, req);
    gw_arena_set_cap(call->arena, cap);
    if (m == NULL) {
        if (call->arena_exhausted)
            gw_call_fail(call, GW_ETOOBIG, "request", GW_RULE_UNPACK_TOO_LARGE);
        else
            gw_call_fail(call, GW_EINVAL, "request", GW_RULE_PROTOBUF);
        return NULL;
    }
    return m;
}
