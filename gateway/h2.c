/* h2.c: the nghttp2 server session glue: callbacks, the stream list, request-header checks and
 * routing to calls. Invariants: every stream nghttp2 opens has one struct stream in the list
 * until nghttp2 closes it (or the session is freed); output leaves only through gw_h2_flush,
 * never re-entrantly; header lists are capped at cfg->max_header_list_size. */
#include "h2.h"

#include <stdio.h>
#include <string.h>

#include <nghttp2/nghttp2.h>

#include "alloc.h"
#include "config.h"
#include "log.h"
#include "rpc.h"

/* A client resetting more streams than this within one window is flooding us (CVE-2023-44487). */
#define RESET_WINDOW_MS 10000u
#define RESET_MAX 400u

struct stream {
    int32_t id;
    struct gw_h2 *h2;
    struct gw_grpc_headers hdrs;
    struct gw_call *call; /* NULL until the headers pass, or after an early answer */
    bool answered;        /* an early (trailers-only) answer was queued */
    struct stream *prev, *next;
};

struct gw_h2 {
    nghttp2_session *session;
    const struct gw_config *cfg;
    struct gw_app *app;
    struct event_base *base;
    const struct gw_rpc_table *rpc;
    struct gw_principal principal;
    char peer[64];
    struct gw_log_ctx log;
    struct gw_h2_io io;
    struct stream *streams;
    size_t nstreams;
    bool busy;       /* inside nghttp2_session_mem_recv / mem_send */
    bool want_flush; /* a flush was asked for while busy */
    bool failed;
    bool preface;
    uint64_t reset_window_start;
    unsigned resets;
};

static void stream_free(struct stream *s)
{
    struct gw_h2 *h2 = s->h2;

    if (s->call != NULL) {
        struct gw_call *c = s->call;
        s->call = NULL;
        gw_call_on_stream_close(c);
    }
    if (s->prev)
        s->prev->next = s->next;
    else
        h2->streams = s->next;
    if (s->next)
        s->next->prev = s->prev;
    h2->nstreams--;
    /* The headers may hold a bearer token. */
    gw_free_wipe(s, sizeof(*s));
}

int gw_h2_submit_trailers_only(struct gw_h2 *h2, int32_t stream_id, int http_status,
                               enum gw_grpc_status status, const char *message)
{
    char st[8], code[8], enc[512];
    nghttp2_nv nv[4];
    size_t n = 0;

#define NV(NAME, VALUE)                                                                            \
    do {                                                                                           \
        nv[n].name = (uint8_t *)(NAME);                                                            \
        nv[n].namelen = strlen(NAME);                                                              \
        nv[n].value = (uint8_t *)(VALUE);                                                          \
        nv[n].valuelen = strlen(VALUE);                                                            \
        nv[n].flags = NGHTTP2_NV_FLAG_NONE;                                                        \
        n++;                                                                                       \
    } while (0)

    snprintf(st, sizeof(st), "%d", http_status);
    snprintf(code, sizeof(code), "%d", (int)status);
    NV(":status", st);
    NV("content-type", "application/grpc");
    NV("grpc-status", code);
    if (message != NULL && message[0] != '\0') {
        gw_grpc_percent_encode(message, enc, sizeof(enc));
        NV("grpc-message", enc);
    }
#undef NV
    /* No RST_STREAM(NO_ERROR) after it even when the client is still sending: grpc-core
     * clients report such a reset as INTERNAL instead of the status we sent. The rest of the
     * body is discarded as it arrives. */
    if (nghttp2_submit_response(h2->session, stream_id, nv, n, NULL) != 0)
        return GW_ENOMEM;
    return 0;
}

static void answer_early(struct stream *s, int http_status, enum gw_grpc_status status,
                         const char *message)
{
    s->answered = true;
    GW_LOG(GW_LOG_INFO, "h2", &s->h2->log, "stream %d refused: grpc-status %d: %s", (int)s->id,
           (int)status, message ? message : "");
    if (gw_h2_submit_trailers_only(s->h2, s->id, http_status, status, message) != 0)
        (void)nghttp2_submit_rst_stream(s->h2->session, NGHTTP2_FLAG_NONE, s->id,
                                        NGHTTP2_INTERNAL_ERROR);
}

/* The request headers are complete: check them, route, authorise, create the call. */
static void on_request_headers(struct stream *s)
{
    struct gw_h2 *h2 = s->h2;
    struct gw_grpc_verdict v;
    uint64_t timeout_ms = 0;
    const struct gw_rpc_method *m;
    char msg[320];
    int rc;

    gw_grpc_headers_check(&s->hdrs, h2->cfg->max_deadline_ms, &v, &timeout_ms);
    if (v.status != GW_GRPC_OK) {
        answer_early(s, v.http_status, v.status, v.message);
        return;
    }
    m = gw_rpc_lookup(h2->rpc, s->hdrs.path);
    if (m == NULL) {
        answer_early(s, 200, GW_GRPC_UNIMPLEMENTED, "unknown method");
        return;
    }
    rc = gw_rpc_authorize(m, &h2->principal);
    if (rc == GW_EAUTH) {
        answer_early(s, 200, GW_GRPC_UNAUTHENTICATED, "client certificate required");
        return;
    }
    if (rc != 0) {
        snprintf(msg, sizeof(msg), "role %s may not call %s (least privilege, Art. 34)",
                 h2->principal.role, m->m.path);
        answer_early(s, 200, GW_GRPC_PERMISSION_DENIED, msg);
        return;
    }
    if (m->m.handler == NULL) {
        snprintf(msg, sizeof(msg), "method %s is not implemented", m->m.path);
        answer_early(s, 200, GW_GRPC_UNIMPLEMENTED, msg);
        return;
    }
    s->call = gw_call_new(h2, s->id, m, &s->hdrs, timeout_ms);
    if (s->call == NULL)
        answer_early(s, 200, GW_GRPC_RESOURCE_EXHAUSTED, "out of memory");
}

static int on_begin_headers_cb(nghttp2_session *session, const nghttp2_frame *frame,
                               void *user_data)
{
    struct gw_h2 *h2 = user_data;
    struct stream *s;

    if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0;
    s = gw_calloc(1, sizeof(*s));
    if (s == NULL)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* nghttp2 resets the stream */
    s->id = frame->hd.stream_id;
    s->h2 = h2;
    gw_grpc_headers_init(&s->hdrs, h2->cfg->max_header_list_size);
    if (nghttp2_session_set_stream_user_data(session, s->id, s) != 0) {
        gw_free(s);
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    }
    s->next = h2->streams;
    if (h2->streams)
        h2->streams->prev = s;
    h2->streams = s;
    h2->nstreams++;
    return 0;
}

static int on_header_cb(nghttp2_session *session, const nghttp2_frame *frame, const uint8_t *name,
                        size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                        void *user_data)
{
    struct stream *s;

    (void)flags;
    (void)user_data;
    if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0; /* client trailers carry nothing we use */
    s = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
    if (s != NULL)
        gw_grpc_headers_add(&s->hdrs, name, namelen, value, valuelen);
    return 0;
}

static int on_data_chunk_recv_cb(nghttp2_session *session, uint8_t flags, int32_t stream_id,
                                 const uint8_t *data, size_t len, void *user_data)
{
    struct stream *s = nghttp2_session_get_stream_user_data(session, stream_id);

    (void)flags;
    (void)user_data;
    if (s != NULL && s->call != NULL)
        gw_call_on_data(s->call, data, len);
    return 0;
}

static void note_reset(struct gw_h2 *h2)
{
    uint64_t now = gw_now_ms();

    if (now - h2->reset_window_start > RESET_WINDOW_MS) {
        h2->reset_window_start = now;
        h2->resets = 0;
    }
    if (++h2->resets == RESET_MAX) {
        GW_LOG(GW_LOG_WARN, "h2", &h2->log, "too many stream resets: closing the connection");
        (void)nghttp2_session_terminate_session(h2->session, NGHTTP2_ENHANCE_YOUR_CALM);
    }
}

static int on_frame_recv_cb(nghttp2_session *session, const nghttp2_frame *frame, void *user_data)
{
    struct gw_h2 *h2 = user_data;
    struct stream *s;

    switch (frame->hd.type) {
    case NGHTTP2_SETTINGS:
        if (!(frame->hd.flags & NGHTTP2_FLAG_ACK))
            h2->preface = true;
        return 0;
    case NGHTTP2_RST_STREAM:
        note_reset(h2);
        return 0;
    case NGHTTP2_HEADERS:
    case NGHTTP2_DATA:
        break;
    default:
        return 0;
    }
    s = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
    if (s == NULL)
        return 0;
    if (frame->hd.type == NGHTTP2_HEADERS && frame->headers.cat == NGHTTP2_HCAT_REQUEST)
        on_request_headers(s);
    if ((frame->hd.flags & NGHTTP2_FLAG_END_STREAM) && s->call != NULL)
        gw_call_on_request_end(s->call);
    return 0;
}

static int on_stream_close_cb(nghttp2_session *session, int32_t stream_id, uint32_t error_code,
                              void *user_data)
{
    struct stream *s = nghttp2_session_get_stream_user_data(session, stream_id);

    (void)error_code;
    (void)user_data;
    if (s == NULL)
        return 0;
    (void)nghttp2_session_set_stream_user_data(session, stream_id, NULL);
    stream_free(s);
    return 0;
}

struct gw_h2 *gw_h2_new(const struct gw_h2_params *p)
{
    struct gw_h2 *h2 = NULL;
    nghttp2_session_callbacks *cbs = NULL;
    nghttp2_option *opt = NULL;
    nghttp2_settings_entry iv[3];

    h2 = gw_calloc(1, sizeof(*h2));
    if (h2 == NULL)
        goto fail;
    h2->cfg = p->cfg;
    h2->app = p->app;
    h2->base = p->base;
    h2->rpc = p->rpc;
    h2->principal = *p->principal;
    snprintf(h2->peer, sizeof(h2->peer), "%s", p->peer ? p->peer : "");
    h2->log.peer = h2->peer;
    h2->log.principal = h2->principal.name[0] ? h2->principal.name : NULL;
    h2->io = p->io;
    h2->reset_window_start = gw_now_ms();

    if (nghttp2_session_callbacks_new(&cbs) != 0 || nghttp2_option_new(&opt) != 0)
        goto fail;
    nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, on_begin_headers_cb);
    nghttp2_session_callbacks_set_on_header_callback(cbs, on_header_cb);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data_chunk_recv_cb);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv_cb);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close_cb);
    /* Our responses carry a handful of short headers; refuse to emit anything larger. */
    nghttp2_option_set_max_send_header_block_length(opt, 16384);
    if (nghttp2_session_server_new2(&h2->session, cbs, h2, opt) != 0)
        goto fail;
    nghttp2_session_callbacks_del(cbs);
    cbs = NULL;
    nghttp2_option_del(opt);
    opt = NULL;

    iv[0].settings_id = NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS;
    iv[0].value = p->cfg->max_concurrent_streams;
    iv[1].settings_id = NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE;
    iv[1].value = p->cfg->max_header_list_size;
    iv[2].settings_id = NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE;
    iv[2].value = 1u << 20;
    if (nghttp2_submit_settings(h2->session, NGHTTP2_FLAG_NONE, iv, 3) != 0)
        goto fail;
    return h2;
fail:
    nghttp2_session_callbacks_del(cbs);
    nghttp2_option_del(opt);
    gw_h2_free(h2);
    return NULL;
}

void gw_h2_free(struct gw_h2 *h2)
{
    if (h2 == NULL)
        return;
    while (h2->streams != NULL)
        stream_free(h2->streams);
    nghttp2_session_del(h2->session);
    gw_free(h2);
}

int gw_h2_flush(struct gw_h2 *h2)
{
    if (h2->failed)
        return GW_EIO;
    if (h2->busy) {
        h2->want_flush = true;
        return 0;
    }
    h2->busy = true;
    for (;;) {
        const uint8_t *data = NULL;
        ssize_t n;

        h2->want_flush = false;
        if (h2->io.out_pending(h2->io.arg) >= GW_H2_OUT_HIGH)
            break; /* resumed from the owner's write callback */
        n = nghttp2_session_mem_send(h2->session, &data);
        if (n < 0) {
            GW_LOG(GW_LOG_WARN, "h2", &h2->log, "nghttp2 send failed: %s",
                   nghttp2_strerror((int)n));
            h2->failed = true;
            break;
        }
        if (n == 0)
            break;
        if (h2->io.send(h2->io.arg, data, (size_t)n) != 0) {
            h2->failed = true;
            break;
        }
    }
    h2->busy = false;
    return h2->failed ? GW_EIO : 0;
}

int gw_h2_recv(struct gw_h2 *h2, const uint8_t *data, size_t len)
{
    ssize_t n;

    if (h2->failed)
        return GW_EIO;
    h2->busy = true;
    n = nghttp2_session_mem_recv(h2->session, data, len);
    h2->busy = false;
    if (n < 0) {
        GW_LOG(GW_LOG_INFO, "h2", &h2->log, "protocol error: %s", nghttp2_strerror((int)n));
        h2->failed = true;
        return GW_EPROTO;
    }
    return gw_h2_flush(h2);
}

bool gw_h2_want_io(const struct gw_h2 *h2)
{
    return !h2->failed &&
           (nghttp2_session_want_read(h2->session) || nghttp2_session_want_write(h2->session));
}

bool gw_h2_preface_received(const struct gw_h2 *h2)
{
    return h2->preface;
}

size_t gw_h2_open_streams(const struct gw_h2 *h2)
{
    return h2->nstreams;
}

void gw_h2_goaway(struct gw_h2 *h2)
{
    (void)nghttp2_submit_goaway(h2->session, NGHTTP2_FLAG_NONE,
                                nghttp2_session_get_last_proc_stream_id(h2->session),
                                NGHTTP2_NO_ERROR, NULL, 0);
    (void)gw_h2_flush(h2);
}

void gw_h2_terminate(struct gw_h2 *h2)
{
    (void)nghttp2_session_terminate_session(h2->session, NGHTTP2_NO_ERROR);
    (void)gw_h2_flush(h2);
}

struct nghttp2_session *gw_h2_session(struct gw_h2 *h2)
{
    return h2->session;
}
struct event_base *gw_h2_base(struct gw_h2 *h2)
{
    return h2->base;
}
struct gw_app *gw_h2_app(struct gw_h2 *h2)
{
    return h2->app;
}
const struct gw_config *gw_h2_cfg(struct gw_h2 *h2)
{
    return h2->cfg;
}
const struct gw_principal *gw_h2_principal(struct gw_h2 *h2)
{
    return &h2->principal;
}
const char *gw_h2_peer(struct gw_h2 *h2)
{
    return h2->peer;
}
