/* call.c: one gRPC call (call.h for handlers, h2.h for the transport): request assembly, the
 * deadline, the handler's lifecycle, response framing through a deferred nghttp2 data provider,
 * and trailers. Invariants: the stream owns the call and frees it only in gw_call_on_stream_close;
 * the cancel function runs at most once and only while the handler is running; after the call
 * is finished (by the handler, the deadline or an early error) no handler code is called. */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <nghttp2/nghttp2.h>

#include "alloc.h"
#include "app.h"
#include "call.h"
#include "config.h"
#include "crypto.h"
#include "h2.h"
#include "log.h"
#include "rpc.h"
#include "utf8.h"

/* Unpacked messages take more room than their wire form (pointers, structs of defaults). */
#define ARENA_FACTOR 32u
#define ARENA_BASE (1u << 20)
#define MAX_NESTING 32

enum call_state {
    CALL_RECEIVING, /* waiting for the request message and the client's half-close */
    CALL_RUNNING,   /* the handler has the call */
    CALL_DONE,      /* status decided; responses and trailers draining */
};

struct gw_call {
    struct gw_h2 *h2;
    int32_t stream_id;
    const struct gw_rpc_method *method;
    enum call_state state;
    uint64_t start_ms;
    uint64_t deadline_ms;
    struct event *deadline_ev;
    char request_id[72];
    char *authorization; /* wiped on free */
    struct gw_log_ctx log;
    struct gw_arena *arena;
    bool arena_exhausted;
    ProtobufCAllocator pba;
    struct gw_grpc_decoder dec;
    uint8_t *req; /* the one request message (gw_malloc'd) */
    size_t req_len;
    unsigned nreq;
    unsigned nsent;
    struct evbuffer *out; /* framed response messages not yet handed to nghttp2 */
    bool response_started;
    enum gw_grpc_status status;
    char message[512]; /* percent-encoded grpc-message */
    gw_cancel_fn cancel_fn;
    void *cancel_arg;
    bool in_cancel;
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

static void deadline_cb(evutil_socket_t fd, short what, void *arg)
{
    struct gw_call *call = arg;

    (void)fd;
    (void)what;
    if (call->state == CALL_DONE)
        return;
    if (call->state == CALL_RUNNING && call->cancel_fn != NULL) {
        gw_cancel_fn fn = call->cancel_fn;
        call->cancel_fn = NULL;
        call->in_cancel = true;
        fn(call->cancel_arg);
        call->in_cancel = false;
    }
    evbuffer_drain(call->out, evbuffer_get_length(call->out));
    finish(call, GW_GRPC_DEADLINE_EXCEEDED, "deadline exceeded"); /* may free the call */
}

/* Random bits through the loop's crypto pool (one RAND_bytes a call cost ~6% of a Submit). */
static int make_request_id(struct gw_h2 *h2, char out[72])
{
    static const char hex[] = "0123456789abcdef";
    const struct gw_app *app = gw_h2_app(h2);
    unsigned char rnd[16];

    if (gw_crypto_random(app != NULL ? app->crypto : NULL, rnd, sizeof(rnd)) != 0)
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
    if (call->out != NULL)
        evbuffer_free(call->out);
    gw_grpc_decoder_clear(&call->dec);
    gw_free_wipe(call->req, call->req_len);
    gw_free_str_wipe(call->authorization);
    gw_arena_free(call->arena);
    gw_free(call);
}

struct gw_call *gw_call_new(struct gw_h2 *h2, int32_t stream_id, const struct gw_rpc_method *m,
                            const struct gw_grpc_headers *hdrs, uint64_t timeout_ms)
{
    const struct gw_config *cfg = gw_h2_cfg(h2);
    const struct gw_principal *p = gw_h2_principal(h2);
    struct gw_call *call = NULL;
    size_t cap = (size_t)cfg->max_message_size * ARENA_FACTOR + ARENA_BASE;
    struct timeval tv;

    call = gw_calloc(1, sizeof(*call));
    if (call == NULL)
        return NULL;
    call->h2 = h2;
    call->stream_id = stream_id;
    call->method = m;
    call->state = CALL_RECEIVING;
    call->start_ms = gw_now_ms();
    call->deadline_ms = call->start_ms + timeout_ms;
    gw_grpc_decoder_init(&call->dec, cfg->max_message_size);
    if (hdrs->has_request_id)
        snprintf(call->request_id, sizeof(call->request_id), "%s", hdrs->request_id);
    else if (make_request_id(h2, call->request_id) != 0)
        goto fail;
    if (hdrs->has_authorization) {
        call->authorization = gw_strdup(hdrs->authorization);
        if (call->authorization == NULL)
            goto fail;
    }
    call->log.request_id = call->request_id;
    call->log.peer = gw_h2_peer(h2);
    call->log.principal = p->name[0] ? p->name : NULL;
    call->arena = gw_arena_new(cap);
    call->out = evbuffer_new();
    call->deadline_ev = evtimer_new(gw_h2_base(h2), deadline_cb, call);
    if (call->arena == NULL || call->out == NULL || call->deadline_ev == NULL)
        goto fail;
    call->pba.alloc = pb_alloc;
    call->pba.free = pb_free;
    call->pba.allocator_data = call;
    tv.tv_sec = (time_t)(timeout_ms / 1000u);
    tv.tv_usec = (suseconds_t)(timeout_ms % 1000u) * 1000;
    if (evtimer_add(call->deadline_ev, &tv) != 0)
        goto fail;
    GW_LOG(GW_LOG_DEBUG, "call", &call->log, "call started: %s, deadline in %llu ms", m->m.path,
           (unsigned long long)timeout_ms);
    return call;
fail:
    call_free(call);
    return NULL;
}

/* An error found while the request is still arriving: answer trailers-only at once. */
static void fail_request(struct gw_call *call, enum gw_grpc_status status, const char *message)
{
    if (call->state != CALL_RECEIVING)
        return;
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

void gw_call_on_data(struct gw_call *call, const uint8_t *data, size_t len)
{
    char msg[128];
    int rc;

    if (call->state != CALL_RECEIVING)
        return; /* an answered call ignores the rest of the body */
    rc = gw_grpc_decoder_feed(&call->dec, data, len, on_message, call);
    switch (rc) {
    case 0:
        return;
    case GW_ETOOBIG:
        snprintf(msg, sizeof(msg), "request message exceeds the maximum size of %u bytes",
                 (unsigned)gw_h2_cfg(call->h2)->max_message_size);
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

void gw_call_on_request_end(struct gw_call *call)
{
    if (call->state != CALL_RECEIVING)
        return;
    if (!gw_grpc_decoder_idle(&call->dec)) {
        fail_request(call, GW_GRPC_INTERNAL, "request ended inside a message");
        return;
    }
    if (call->nreq == 0) {
        fail_request(call, GW_GRPC_INTERNAL, "request carries no message");
        return;
    }
    call->state = CALL_RUNNING;
    call->method->m.handler(call, call->req, call->req_len);
}

void gw_call_on_stream_close(struct gw_call *call)
{
    if (call->state == CALL_RUNNING && call->cancel_fn != NULL && !call->in_cancel) {
        gw_cancel_fn fn = call->cancel_fn;
        call->cancel_fn = NULL;
        call->in_cancel = true;
        GW_LOG(GW_LOG_INFO, "call", &call->log, "call cancelled: %s", call->method->m.path);
        fn(call->cancel_arg);
    }
    call_free(call);
}

/* ---- responses ---- */

static void submit_trailer(struct gw_call *call)
{
    char code[8];
    nghttp2_nv nv[2];
    size_t n = 1;

    snprintf(code, sizeof(code), "%d", (int)call->status);
    nv[0] = (nghttp2_nv){(uint8_t *)"grpc-status", (uint8_t *)code, 11, strlen(code),
                         NGHTTP2_NV_FLAG_NONE};
    if (call->message[0] != '\0') {
        nv[1] = (nghttp2_nv){(uint8_t *)"grpc-message", (uint8_t *)call->message, 12,
                             strlen(call->message), NGHTTP2_NV_FLAG_NONE};
        n = 2;
    }
    if (nghttp2_submit_trailer(gw_h2_session(call->h2), call->stream_id, nv, n) != 0)
        (void)nghttp2_submit_rst_stream(gw_h2_session(call->h2), NGHTTP2_FLAG_NONE, call->stream_id,
                                        NGHTTP2_INTERNAL_ERROR);
}

static ssize_t data_read_cb(nghttp2_session *session, int32_t stream_id, uint8_t *buf,
                            size_t length, uint32_t *data_flags, nghttp2_data_source *source,
                            void *user_data)
{
    struct gw_call *call = source->ptr;
    size_t avail = evbuffer_get_length(call->out);

    (void)session;
    (void)stream_id;
    (void)user_data;
    if (avail > 0) {
        int n = evbuffer_remove(call->out, buf, avail < length ? avail : length);
        return n < 0 ? NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE : n;
    }
    if (call->state != CALL_DONE)
        return NGHTTP2_ERR_DEFERRED;
    *data_flags |= NGHTTP2_DATA_FLAG_EOF | NGHTTP2_DATA_FLAG_NO_END_STREAM;
    submit_trailer(call);
    return 0;
}

static int start_response(struct gw_call *call)
{
    nghttp2_nv nv[2] = {
        {(uint8_t *)":status", (uint8_t *)"200", 7, 3, NGHTTP2_NV_FLAG_NONE},
        {(uint8_t *)"content-type", (uint8_t *)"application/grpc", 12, 16, NGHTTP2_NV_FLAG_NONE},
    };
    nghttp2_data_provider prd;

    prd.source.ptr = call;
    prd.read_callback = data_read_cb;
    if (nghttp2_submit_response(gw_h2_session(call->h2), call->stream_id, nv, 2, &prd) != 0)
        return GW_ENOMEM;
    call->response_started = true;
    return 0;
}

/* Decides the status and queues what remains; the last thing it does is flush, which may close
 * the stream and free the call. */
static void finish(struct gw_call *call, enum gw_grpc_status status, const char *message)
{
    struct gw_h2 *h2 = call->h2;

    if (call->state == CALL_DONE)
        return;
    call->state = CALL_DONE;
    call->cancel_fn = NULL;
    event_del(call->deadline_ev);
    call->status = status;
    gw_grpc_percent_encode(message ? message : "", call->message, sizeof(call->message));
    GW_LOG(status == GW_GRPC_OK ? GW_LOG_DEBUG : GW_LOG_INFO, "call", &call->log,
           "call finished: %s grpc-status %d (%s) after %llu ms", call->method->m.path, (int)status,
           message ? message : "", (unsigned long long)(gw_now_ms() - call->start_ms));
    if (!call->response_started) {
        if (gw_h2_submit_trailers_only(h2, call->stream_id, 200, status, message) != 0)
            (void)nghttp2_submit_rst_stream(gw_h2_session(h2), NGHTTP2_FLAG_NONE, call->stream_id,
                                            NGHTTP2_INTERNAL_ERROR);
    } else {
        (void)nghttp2_session_resume_data(gw_h2_session(h2), call->stream_id);
    }
    (void)gw_h2_flush(h2);
}

int gw_call_send(struct gw_call *call, const ProtobufCMessage *msg)
{
    size_t size = protobuf_c_message_get_packed_size(msg);
    struct evbuffer_iovec v;

    if (call->state != CALL_RUNNING || call->in_cancel)
        return GW_EINVAL;
    if (!call->method->m.server_streaming && call->nsent > 0)
        return GW_EINVAL;
    if (size > gw_h2_cfg(call->h2)->max_message_size)
        return GW_ETOOBIG;
    /* A client that does not read cannot make us queue without bound. */
    if (evbuffer_get_length(call->out) > (size_t)gw_h2_cfg(call->h2)->max_message_size * 4u)
        return GW_ETOOBIG;
    if (evbuffer_reserve_space(call->out, (ev_ssize_t)(size + GW_GRPC_PREFIX_LEN), &v, 1) < 1 ||
        v.iov_len < size + GW_GRPC_PREFIX_LEN)
        return GW_ENOMEM;
    gw_grpc_frame_prefix(v.iov_base, (uint32_t)size);
    if (protobuf_c_message_pack(msg, (uint8_t *)v.iov_base + GW_GRPC_PREFIX_LEN) != size)
        return GW_EINTERNAL;
    v.iov_len = size + GW_GRPC_PREFIX_LEN;
    if (evbuffer_commit_space(call->out, &v, 1) != 0)
        return GW_ENOMEM;
    call->nsent++;
    if (!call->response_started) {
        if (start_response(call) != 0)
            return GW_ENOMEM;
    } else {
        (void)nghttp2_session_resume_data(gw_h2_session(call->h2), call->stream_id);
    }
    (void)gw_h2_flush(call->h2); /* sends DATA without END_STREAM: the stream stays open */
    return 0;
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
    if (call->state != CALL_RUNNING)
        return;
    call->cancel_fn = fn;
    call->cancel_arg = arg;
}

/* ---- accessors ---- */

struct gw_app *gw_call_app(struct gw_call *call)
{
    return gw_h2_app(call->h2);
}
const struct gw_principal *gw_call_principal(const struct gw_call *call)
{
    return gw_h2_principal(call->h2);
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

/* A field's place in the message, a frame per nesting level on the stack: the text of a path is
 * rendered only for a refusal, never for every string field that passes. */
struct field_path {
    const struct field_path *up; /* NULL at the top-level message */
    const char *name;
    long idx; /* index among the repeated field's occurrences, or -1 */
};

static void path_render(const struct field_path *fp, char *dst, size_t dstlen)
{
    size_t n;

    if (fp == NULL) {
        dst[0] = '\0';
        return;
    }
    path_render(fp->up, dst, dstlen);
    n = strlen(dst);
    if (fp->idx >= 0)
        snprintf(dst + n, dstlen - n, "%s%s[%ld]", n ? "." : "", fp->name, fp->idx);
    else
        snprintf(dst + n, dstlen - n, "%s%s", n ? "." : "", fp->name);
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
                         const struct field_path *path, int depth, char *bad, size_t badlen,
                         const char **why)
{
    const uint8_t *end = p + len;
    unsigned seen[64] = {0}; /* occurrences of each repeated field so far, for its index */

    if (depth > MAX_NESTING)
        return GW_ETOOBIG;
    while (p < end) {
        const ProtobufCFieldDescriptor *f;
        uint64_t key, n;
        struct field_path sub = {path, NULL, -1};
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
            sub.idx = fi < 64 ? (long)seen[fi]++ : 0;
        }
        sub.name = f->name;
        if (f->type == PROTOBUF_C_TYPE_STRING) {
            if (!gw_utf8_valid((const char *)p, (size_t)n)) {
                *why = "not valid UTF-8";
                path_render(&sub, bad, badlen);
                return GW_EINVAL;
            }
            if (memchr(p, 0, (size_t)n) != NULL) {
                *why = "must not contain a NUL character";
                path_render(&sub, bad, badlen);
                return GW_EINVAL;
            }
        } else {
            rc = check_strings(f->descriptor, p, (size_t)n, &sub, depth + 1, bad, badlen, why);
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
    switch (check_strings(desc, req, len, NULL, 0, bad, sizeof(bad), &why)) {
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
