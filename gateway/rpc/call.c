/* call.c: one gRPC call (call.h for handlers, rpc_int.h for the dispatcher): request assembly,
 * the identity and policy step, the deadline, the handler's lifecycle, response packing and
 * backpressure. Protocol only: HTTP/2 is reached through the call's transport stream (h2.h).
 * Invariants: the stream owns the call and the call frees itself only in its close upcall; the
 * handler runs only after the caller was identified and the policy allowed the method; the
 * cancel function runs at most once and only while the identity step or the handler is
 * running; after the call is finished (by the handler, the deadline, a refusal or an early
 * error) no handler code is called. */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>
#include <openssl/rand.h>

#include "alloc.h"
#include "call.h"
#include "config.h"
#include "h2.h"
#include "log.h"
#include "policy.h"
#include "rpc.h"
#include "rpc_int.h"
#include "utf8.h"

/* Unpacked messages take more room than their wire form (pointers, structs of defaults). */
#define ARENA_FACTOR 32u
#define ARENA_BASE (1u << 20)
#define MAX_NESTING 32

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
    enum call_state state;
    bool request_done; /* the client half-closed after exactly one whole message */
    uint64_t start_ms;
    uint64_t deadline_ms;
    struct event *deadline_ev;
    char request_id[72];
    char *authorization; /* wiped on free */
    struct gw_principal principal;
    struct gw_log_ctx log;
    struct gw_arena *arena;
    bool arena_exhausted;
    ProtobufCAllocator pba;
    struct gw_grpc_decoder dec;
    uint8_t *req; /* the one request message (gw_malloc'd) */
    size_t req_len;
    unsigned nreq;
    unsigned nsent;
    gw_cancel_fn cancel_fn;
    void *cancel_arg;
    bool in_cancel;
    gw_writable_fn writable_fn;
    void *writable_arg;
};

uint64_t gw_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

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
    finish(call, GW_GRPC_DEADLINE_EXCEEDED, "deadline exceeded"); /* may free the call */
}

static int make_request_id(char out[72])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char rnd[16];

    if (RAND_bytes(rnd, sizeof(rnd)) != 1)
        return GW_ECRYPTO;
    for (size_t i = 0; i < sizeof(rnd); i++) {
        out[2 * i] = hex[rnd[i] >> 4];
        out[2 * i + 1] = hex[rnd[i] & 15];
    }
    out[2 * sizeof(rnd)] = '\0';
    return 0;
}

static void call_free(struct gw_call *call)
{
    if (call == NULL)
        return;
    if (call->deadline_ev != NULL)
        event_free(call->deadline_ev);
    gw_grpc_decoder_clear(&call->dec);
    gw_free_wipe(call->req, call->req_len);
    gw_free_str_wipe(call->authorization);
    gw_arena_free(call->arena);
    gw_free(call);
}

/* Runs the handler once the caller is authorised and the request is complete. */
static void maybe_run(struct gw_call *call)
{
    char msg[320];

    if (call->state != CALL_AUTHORISED)
        return;
    if (call->method->handler == NULL) { /* no need to wait for the request */
        snprintf(msg, sizeof(msg), "method %s is not implemented", call->method->path);
        finish(call, GW_GRPC_UNIMPLEMENTED, msg);
        return;
    }
    if (!call->request_done)
        return;
    call->state = CALL_RUNNING;
    GW_LOG(GW_LOG_DEBUG, "call", &call->log, "call started: %s", call->method->path);
    call->method->handler(call, call->req, call->req_len);
}

void gw_call_identified(struct gw_call *call, int err, const struct gw_principal *p,
                        const char *why)
{
    const struct gw_rpc_params *rp = gw_rpc_params(call->rpc);
    char msg[320];
    int rc;

    if (call->state != CALL_IDENTIFYING)
        return;
    call->cancel_fn = NULL;
    if (err != 0) {
        finish(call, GW_GRPC_UNAUTHENTICATED, why ? why : "unauthenticated");
        return;
    }
    call->principal = *p;
    call->log.principal = call->principal.name[0] ? call->principal.name : NULL;
    rc = gw_policy_may_call(rp->policy, call->method->path, &call->principal, &why);
    if (rc == GW_EAUTH) {
        finish(call, GW_GRPC_UNAUTHENTICATED, why);
        return;
    }
    if (rc != 0) {
        snprintf(msg, sizeof(msg), "role %s may not call %s (least privilege, Art. 34)",
                 call->principal.role[0] ? call->principal.role : "(none)", call->method->path);
        finish(call, GW_GRPC_PERMISSION_DENIED, msg);
        return;
    }
    call->state = CALL_AUTHORISED;
    maybe_run(call);
}

void gw_rpc_identify_cert(void *ctx, struct gw_call *call, const struct gw_peer *peer,
                          const char *authorization)
{
    struct gw_principal p;
    const char *why = NULL;
    int rc;

    (void)ctx;
    rc = gw_identity_resolve(peer, authorization, &p, &why);
    gw_call_identified(call, rc, &p, why);
}

struct gw_call *gw_call_open(struct gw_rpc *rpc, struct gw_h2_stream *st, const struct gw_method *m,
                             const struct gw_grpc_headers *hdrs, uint64_t timeout_ms)
{
    const struct gw_rpc_params *rp = gw_rpc_params(rpc);
    const struct gw_config *cfg = rp->cfg;
    struct gw_call *call = NULL;
    size_t cap = (size_t)cfg->max_message_size * ARENA_FACTOR + ARENA_BASE;
    struct timeval tv;

    call = gw_calloc(1, sizeof(*call));
    if (call == NULL)
        return NULL;
    call->rpc = rpc;
    call->st = st;
    call->method = m;
    call->state = CALL_IDENTIFYING;
    call->start_ms = gw_now_ms();
    call->deadline_ms = call->start_ms + timeout_ms;
    gw_grpc_decoder_init(&call->dec, cfg->max_message_size);
    if (hdrs->has_request_id)
        snprintf(call->request_id, sizeof(call->request_id), "%s", hdrs->request_id);
    else if (make_request_id(call->request_id) != 0)
        goto fail;
    if (hdrs->has_authorization) {
        call->authorization = gw_strdup(hdrs->authorization);
        if (call->authorization == NULL)
            goto fail;
    }
    call->log.request_id = call->request_id;
    call->log.peer = gw_h2_stream_peer(st)->addr;
    call->arena = gw_arena_new(cap);
    call->deadline_ev = evtimer_new(rp->base, deadline_cb, call);
    if (call->arena == NULL || call->deadline_ev == NULL)
        goto fail;
    call->pba.alloc = pb_alloc;
    call->pba.free = pb_free;
    call->pba.allocator_data = call;
    tv.tv_sec = (time_t)(timeout_ms / 1000u);
    tv.tv_usec = (suseconds_t)(timeout_ms % 1000u) * 1000;
    if (evtimer_add(call->deadline_ev, &tv) != 0)
        goto fail;
    /* Inside the transport's input processing: a synchronous refusal only queues the answer. */
    (rp->identify ? rp->identify : gw_rpc_identify_cert)(
        rp->identify_ctx, call, gw_h2_stream_peer(st), call->authorization);
    return call;
fail:
    call_free(call);
    return NULL;
}

/* An error found while the request is still arriving: answer at once. */
static void fail_request(struct gw_call *call, enum gw_grpc_status status, const char *message)
{
    if (call->state == CALL_RUNNING || call->state == CALL_DONE)
        return;
    run_cancel(call);
    finish(call, status, message);
}

static int on_message(void *arg, const uint8_t *msg, size_t len)
{
    struct gw_call *call = arg;

    if (call->nreq++ > 0)
        return GW_EINVAL; /* a second message on a unary-request method */
    if (len > 0) {
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
    char msg[128];
    int rc;

    if (call->state == CALL_RUNNING || call->state == CALL_DONE || call->request_done)
        return; /* an answered call ignores the rest of the body */
    rc = gw_grpc_decoder_feed(&call->dec, data, len, on_message, call);
    switch (rc) {
    case 0:
        return;
    case GW_ETOOBIG:
        snprintf(msg, sizeof(msg), "request message exceeds the maximum size of %u bytes",
                 (unsigned)gw_rpc_params(call->rpc)->cfg->max_message_size);
        fail_request(call, GW_GRPC_RESOURCE_EXHAUSTED, msg);
        return;
    case GW_EUNIMPL:
        fail_request(call, GW_GRPC_UNIMPLEMENTED, "compressed messages are not supported");
        return;
    case GW_EINVAL:
        /* gRPC convention (grpc-java, grpc-go): a second request message on a method without
         * client streaming is a protocol violation, answered INTERNAL. */
        fail_request(call, GW_GRPC_INTERNAL, "more than one request message for a unary request");
        return;
    case GW_ENOMEM:
        fail_request(call, GW_GRPC_RESOURCE_EXHAUSTED, "out of memory");
        return;
    default:
        fail_request(call, GW_GRPC_INTERNAL, "malformed message prefix");
        return;
    }
}

void gw_call_up_end(void *obj)
{
    struct gw_call *call = obj;

    if (call->state == CALL_RUNNING || call->state == CALL_DONE || call->request_done)
        return;
    if (!gw_grpc_decoder_idle(&call->dec)) {
        fail_request(call, GW_GRPC_INTERNAL, "request ended inside a message");
        return;
    }
    if (call->nreq == 0) {
        fail_request(call, GW_GRPC_INTERNAL, "request carries no message");
        return;
    }
    call->request_done = true;
    maybe_run(call);
}

void gw_call_up_writable(void *obj)
{
    struct gw_call *call = obj;
    gw_writable_fn fn = call->writable_fn;

    if (call->state != CALL_RUNNING || fn == NULL)
        return;
    call->writable_fn = NULL;
    fn(call->writable_arg); /* may finish or free the call */
}

void gw_call_up_close(void *obj)
{
    struct gw_call *call = obj;

    call->st = NULL;
    if (cancellable(call) && call->cancel_fn != NULL && !call->in_cancel) {
        GW_LOG(GW_LOG_INFO, "call", &call->log, "call cancelled: %s", call->method->path);
        run_cancel(call);
    }
    call_free(call);
}

/* ---- responses ---- */

/* Decides the status and hands it to the stream; the last thing it does, since the stream may
 * close and free the call before gw_h2_stream_finish returns. */
static void finish(struct gw_call *call, enum gw_grpc_status status, const char *message)
{
    if (call->state == CALL_DONE)
        return;
    call->state = CALL_DONE;
    call->cancel_fn = NULL;
    call->writable_fn = NULL;
    event_del(call->deadline_ev);
    GW_LOG(status == GW_GRPC_OK ? GW_LOG_DEBUG : GW_LOG_INFO, "call", &call->log,
           "call finished: %s grpc-status %d (%s) after %llu ms", call->method->path, (int)status,
           message ? message : "", (unsigned long long)(gw_now_ms() - call->start_ms));
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
    if (size > gw_rpc_params(call->rpc)->cfg->max_message_size)
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
    return call->st != NULL && call->state == CALL_RUNNING && gw_h2_stream_writable(call->st);
}

void gw_call_on_writable(struct gw_call *call, gw_writable_fn fn, void *arg)
{
    if (call->state != CALL_RUNNING || call->st == NULL)
        return;
    call->writable_fn = fn;
    call->writable_arg = arg;
    gw_h2_stream_want_writable(call->st);
}

void gw_call_finish(struct gw_call *call, enum gw_grpc_status status, const char *message)
{
    if (call->state != CALL_RUNNING || call->in_cancel)
        return;
    finish(call, status, message);
}

void gw_call_finish_err(struct gw_call *call, int err, const char *message)
{
    gw_call_finish(call, gw_err_grpc_status(err), message ? message : gw_err_str(err));
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
    return gw_rpc_params(call->rpc)->app;
}
const struct gw_policy *gw_call_policy(const struct gw_call *call)
{
    return gw_rpc_params(call->rpc)->policy;
}
const struct gw_principal *gw_call_principal(const struct gw_call *call)
{
    return &call->principal;
}
const struct gw_log_ctx *gw_call_log_ctx(const struct gw_call *call)
{
    return &call->log;
}
const char *gw_call_request_id(const struct gw_call *call)
{
    return call->request_id;
}
uint64_t gw_call_deadline_ms(const struct gw_call *call)
{
    return call->deadline_ms;
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

/* ---- unpack with UTF-8 validation ---- */

static void path_join(char *dst, size_t dstlen, const char *parent, const char *field, long idx)
{
    if (idx >= 0)
        snprintf(dst, dstlen, "%s%s%s[%ld]", parent, parent[0] ? "." : "", field, idx);
    else
        snprintf(dst, dstlen, "%s%s%s", parent, parent[0] ? "." : "", field);
}

static bool read_varint(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
    *v = 0;
    for (unsigned shift = 0; shift < 64 && *p < end; shift += 7) {
        uint8_t b = *(*p)++;
        *v |= (uint64_t)(b & 0x7f) << shift;
        if ((b & 0x80) == 0)
            return true;
    }
    return false;
}

/* Checks every string field of the wire-format message p[0..len) of type d, at any depth, on the
 * raw bytes: valid UTF-8 and no NUL (protobuf-c hands strings over NUL-terminated, so a NUL
 * would silently cut the value short). Returns 0; GW_EINVAL with the field's path in bad and the
 * rule in *why; or GW_ETOOBIG when messages nest deeper than MAX_NESTING. Called only on bytes
 * that protobuf-c unpacked successfully, so the framing is known to be sound. */
static int check_strings(const ProtobufCMessageDescriptor *d, const uint8_t *p, size_t len,
                         const char *path, int depth, char *bad, size_t badlen, const char **why)
{
    const uint8_t *end = p + len;
    unsigned seen[64] = {0}; /* occurrences of each repeated field so far, for its index */

    if (depth > MAX_NESTING)
        return GW_ETOOBIG;
    while (p < end) {
        const ProtobufCFieldDescriptor *f;
        uint64_t key, n;
        char sub[256];
        long idx = -1;
        int rc;

        if (!read_varint(&p, end, &key))
            return GW_EINVAL;
        switch (key & 7) {
        case 0:
            if (!read_varint(&p, end, &n))
                return GW_EINVAL;
            continue;
        case 1:
            p += 8;
            continue;
        case 5:
            p += 4;
            continue;
        case 2:
            break;
        default:
            return GW_EINVAL;
        }
        if (!read_varint(&p, end, &n) || n > (uint64_t)(end - p))
            return GW_EINVAL;
        f = protobuf_c_message_descriptor_get_field(d, (unsigned)(key >> 3));
        if (f == NULL ||
            (f->type != PROTOBUF_C_TYPE_STRING && f->type != PROTOBUF_C_TYPE_MESSAGE)) {
            p += n;
            continue;
        }
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            size_t fi = (size_t)(f - d->fields);
            idx = fi < 64 ? (long)seen[fi]++ : 0;
        }
        path_join(sub, sizeof(sub), path, f->name, idx);
        if (f->type == PROTOBUF_C_TYPE_STRING) {
            if (!gw_utf8_valid((const char *)p, (size_t)n)) {
                *why = "not valid UTF-8";
                snprintf(bad, badlen, "%s", sub);
                return GW_EINVAL;
            }
            if (memchr(p, 0, (size_t)n) != NULL) {
                *why = "must not contain a NUL character";
                snprintf(bad, badlen, "%s", sub);
                return GW_EINVAL;
            }
        } else {
            rc = check_strings(f->descriptor, p, (size_t)n, sub, depth + 1, bad, badlen, why);
            if (rc != 0)
                return rc;
        }
        p += n;
    }
    return 0;
}

ProtobufCMessage *gw_call_unpack(struct gw_call *call, const ProtobufCMessageDescriptor *desc,
                                 const uint8_t *req, size_t len)
{
    ProtobufCMessage *m;
    const char *why = "not valid UTF-8";
    char bad[256], msg[320];

    m = protobuf_c_message_unpack(desc, &call->pba, len, req);
    if (m == NULL) {
        if (call->arena_exhausted)
            gw_call_finish(call, GW_GRPC_RESOURCE_EXHAUSTED, "request message too large to unpack");
        else
            gw_call_finish(call, GW_GRPC_INVALID_ARGUMENT, "request: not a valid protobuf message");
        return NULL;
    }
    bad[0] = '\0';
    switch (check_strings(desc, req, len, "", 0, bad, sizeof(bad), &why)) {
    case 0:
        return m;
    case GW_EINVAL:
        snprintf(msg, sizeof(msg), "%s: %s", bad[0] ? bad : "request", why);
        gw_call_finish(call, GW_GRPC_INVALID_ARGUMENT, msg);
        return NULL;
    default:
        gw_call_finish(call, GW_GRPC_INVALID_ARGUMENT, "request: messages nested too deeply");
        return NULL;
    }
}
