/* fuzz_h2_calls.c: one in-memory HTTP/2 connection (transport/h2.c) carrying gRPC calls through
 * the real dispatcher (rpc/), the gateway's method table (api/methods.c), the built-in policy,
 * protobuf-c unpacking, the wire-string check and the handlers' validation. No sockets and no
 * database: the pool is never started, so a handler that reaches the store is answered
 * UNAVAILABLE, which is fine; everything before it (framing, routing, identity, policy, unpack,
 * validation, refusal messages) is what is fuzzed. The segment register is a stand-in that says
 * every WG number is issued to branches a and b2, so a valid Submit goes on to the sealing.
 *
 * Input: byte 0 picks the caller's role (roles[] below; one past it: no principal at all); the
 * identity step gives the call an account principal of that role, so every handler can be
 * reached. Byte 1: bit 0 branch b2 (else a), bit 1 a token principal (else a certificate one),
 * bit 2 the certificate is registered for administration, bit 3 the password must be changed,
 * bit 5 the socket's output is backed up until every call has been sent. Then calls, each: 1
 * byte method (index into the table; past its end an unknown path), 1 byte flags, 2 bytes body
 * length (big-endian), the body. Flags: bit 0 the body is sent as it is (the fuzzer writes the
 * gRPC prefix), otherwise wrapped in one well-formed gRPC message; bit 1 no END_STREAM (the body
 * stays open); bit 2 a grpc-timeout of 1 ms; bit 3 the stream is reset by the client after its
 * request; bit 4 a bogus authorization header; bit 5 the next call goes out with this one, before
 * the server answers (the two wait together). Bytes that do not make a whole call are fed to the
 * server raw, after the client's own frames (control frames, resets, junk). A nghttp2 client
 * session writes the frames and reads the answers; the two sides are pumped until quiet, with the
 * event loop run between rounds (deferred work, writable upcalls, expired deadlines).
 *
 * Init builds what lives as long as the daemon (event base, config, keyring, crypto, policy,
 * throttle, password workers) once; each input gets its own database pool, store, segment cache,
 * audit writer, incident queue, dispatcher and session, freed before it returns, so leaks and
 * use-after-free across a session's teardown show up in the input that caused them. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <nghttp2/nghttp2.h>

#include "api.h"
#include "app.h"
#include "audit.h"
#include "config.h"
#include "crypto.h"
#include "db.h"
#include "h2.h"
#include "incident.h"
#include "keyring.h"
#include "log.h"
#include "policy.h"
#include "refusals.h"
#include "rpc.h"
#include "segcache.h"
#include "store.h"
#include "throttle.h"
#include "workers.h"
#include "wraplease.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

#define MAX_CALLS 16
#define MAX_ROUNDS 64

static const char *const roles[] = {
    "courier",
    "branch_clerk",
    "customer_service",
    "compliance_auditor",
    "security_admin",
    "system_admin",
    "lawful_access",
    "backend",
    "",
    "unknown_role",
};
#define NROLES (sizeof(roles) / sizeof(roles[0]))

/* The daemon's configuration, with the defaults for everything not named here; %s is the
 * private directory LLVMFuzzerInitialize makes (the parser checks that the files exist). */
static const char config_text[] = "[server]\n"
                                  "listen = 127.0.0.1:1\n"
                                  "max_message_size = 65536\n"
                                  "[tls]\n"
                                  "cert = %s/tls\n"
                                  "key = %s/tls\n"
                                  "client_ca = %s/tls\n"
                                  "[database]\n"
                                  "conninfo = \"host=/nonexistent dbname=fuzz\"\n"
                                  "[keys]\n"
                                  "keyring = %s/keyring\n";

static const uint8_t audit_seed[32] = {7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7,
                                       7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7};

/* What lives as long as the process. */
static struct {
    struct gw_config cfg;
    struct event_base *base;
    struct gw_keyring *keys;
    struct gw_crypto *crypto;
    struct gw_throttle *throttle;
    struct gw_workers *workers;
    struct gw_policy *policy;
    const struct gw_rpc_table *table;
} g;

/* One input's connection. */
struct conn {
    struct gw_wraplease wraps;
    struct gw_app app;
    struct gw_rpc *rpc;
    struct gw_h2 *server;
    struct gw_peer peer; /* the server session's: outlives it */
    nghttp2_session *client;
    bool server_dead; /* gw_h2_recv failed: the connection would be closed */
    bool backed_up;   /* io_pending says the socket's output is full (backpressure) */
    uint8_t *out;     /* server -> client bytes not yet delivered */
    size_t nout, capout;
    uint8_t role, branch;
};

/* The request body of one call, read by the client's data provider. */
struct body {
    const uint8_t *p;
    size_t n, off;
    bool end_stream;
};

static void die(const char *what)
{
    fprintf(stderr, "fuzz_h2_calls: %s\n", what);
    abort();
}

/* ---- the server's I/O: into a buffer the client reads ---- */

static int io_send(void *arg, const uint8_t *data, size_t len)
{
    struct conn *c = arg;

    if (c->nout + len > c->capout) {
        size_t cap = (c->nout + len) * 2;
        uint8_t *p = realloc(c->out, cap);
        if (p == NULL)
            return GW_ENOMEM;
        c->out = p;
        c->capout = cap;
    }
    memcpy(c->out + c->nout, data, len);
    c->nout += len;
    return 0;
}

static size_t io_pending(void *arg)
{
    struct conn *c = arg;

    return c->backed_up ? GW_H2_OUT_HIGH : 0;
}

/* ---- the segment register: every number of prefix WG is issued to branches a and b2 ----
 * A load answers from the loop (never from inside load), as the store's does, so a Submit that
 * passes validation goes on to the segment check, the sealing and the store. */

struct seg_load {
    struct event *ev;
    struct gw_segcache *cache;
};

static void seg_loaded_cb(evutil_socket_t fd, short what, void *arg)
{
    static const struct gw_store_segment segs[] = {{"a", "WG", 0, INT64_MAX},
                                                   {"b2", "WG", 0, INT64_MAX}};
    struct seg_load *l = arg;
    struct gw_segcache *cache = l->cache;

    (void)fd;
    (void)what;
    event_free(l->ev);
    free(l);
    gw_segcache_loaded(cache, 0, segs, 2);
}

static int seg_load(void *ctx, struct gw_segcache *c, void **handle)
{
    struct seg_load *l = calloc(1, sizeof(*l));
    struct timeval now = {0, 0};

    (void)ctx;
    if (l == NULL)
        return GW_ENOMEM;
    l->cache = c;
    l->ev = evtimer_new(g.base, seg_loaded_cb, l);
    if (l->ev == NULL || evtimer_add(l->ev, &now) != 0) {
        if (l->ev != NULL)
            event_free(l->ev);
        free(l);
        return GW_ENOMEM;
    }
    *handle = l;
    return 0;
}

static void seg_cancel(void *handle)
{
    struct seg_load *l = handle;

    event_free(l->ev);
    free(l);
}

static uint64_t seg_now(void *ctx)
{
    (void)ctx;
    return 0;
}

/* ---- the identity step: an account principal of the input's role ---- */

static void fuzz_identify(void *ctx, struct gw_call *call, const struct gw_peer *peer,
                          const char *authorization)
{
    struct conn *c = ctx;
    struct gw_principal p;

    memset(&p, 0, sizeof(p));
    snprintf(p.peer, sizeof(p.peer), "%s", peer->addr);
    if (c->role % (NROLES + 1) == NROLES) { /* no certificate, no token */
        gw_call_identified(call, NULL, &p);
        return;
    }
    snprintf(p.role, sizeof(p.role), "%s", roles[c->role % (NROLES + 1)]);
    snprintf(p.name, sizeof(p.name), "fuzz_%s", p.role);
    snprintf(p.branch, sizeof(p.branch), "%s", c->branch & 1 ? "b2" : "a");
    snprintf(p.cert, sizeof(p.cert), "cert_%s", p.branch);
    p.authn = authorization != NULL || (c->branch & 2) ? GW_AUTHN_TOKEN : GW_AUTHN_CERT;
    p.cert_admin = (c->branch & 4) != 0;
    p.account_id = p.authn == GW_AUTHN_TOKEN ? 1 + (c->branch >> 4) : 0;
    p.must_change = (c->branch & 8) != 0;
    gw_call_identified(call, NULL, &p);
}

/* ---- the client ---- */

static ssize_t body_read(nghttp2_session *s, int32_t id, uint8_t *buf, size_t len, uint32_t *flags,
                         nghttp2_data_source *src, void *ud)
{
    struct body *b = src->ptr;
    size_t take = b->n - b->off;

    (void)s;
    (void)id;
    (void)ud;
    if (take > len)
        take = len;
    memcpy(buf, b->p + b->off, take);
    b->off += take;
    if (b->off == b->n) {
        if (b->end_stream)
            *flags |= NGHTTP2_DATA_FLAG_EOF;
        else if (take == 0)
            return NGHTTP2_ERR_DEFERRED;
    }
    return (ssize_t)take;
}

static int client_new(struct conn *c)
{
    nghttp2_session_callbacks *cbs;
    int rc;

    if (nghttp2_session_callbacks_new(&cbs) != 0)
        return -1;
    rc = nghttp2_session_client_new(&c->client, cbs, c);
    nghttp2_session_callbacks_del(cbs);
    if (rc != 0)
        return -1;
    return nghttp2_submit_settings(c->client, NGHTTP2_FLAG_NONE, NULL, 0) == 0 ? 0 : -1;
}

/* Moves bytes both ways, running the loop between rounds, until nothing moves. */
static void pump(struct conn *c)
{
    for (int round = 0; round < MAX_ROUNDS; round++) {
        const uint8_t *data;
        ssize_t n;
        bool moved = false;

        while ((n = nghttp2_session_mem_send(c->client, &data)) > 0) {
            if (!c->server_dead && gw_h2_recv(c->server, data, (size_t)n) != 0)
                c->server_dead = true;
            moved = true;
        }
        if (c->nout > 0) {
            size_t len = c->nout;
            c->nout = 0;
            /* the client may refuse what the server says (that is not the server's bug) */
            (void)nghttp2_session_mem_recv(c->client, c->out, len);
            moved = true;
        }
        event_base_loop(g.base, EVLOOP_NONBLOCK);
        if (!moved && c->nout == 0)
            return;
    }
}

/* ---- one input ---- */

static int conn_open(struct conn *c, uint8_t role, uint8_t branch)
{
    struct gw_audit_config ac = {.chain = "fuzz",
                                 .checkpoint_every = 64,
                                 .checkpoint_ms = 1000,
                                 .alg = GW_SIGN_ED25519,
                                 .seed = audit_seed};
    struct gw_rpc_params rp;
    struct gw_h2_params hp;

    memset(c, 0, sizeof(*c));
    c->role = role;
    c->branch = branch;
    c->app.cfg = &g.cfg;
    c->app.base = g.base;
    c->app.keys = g.keys;
    c->app.crypto = g.crypto;
    c->app.throttle = g.throttle;
    c->app.workers = g.workers;
    /* a lease that never runs out: the sealing is reached (wraplease.h) */
    gw_wraplease_init(&c->wraps, 65536, NULL, NULL);
    {
        enum gw_suite su = gw_keyring_suite(g.keys);
        uint32_t v = gw_keyring_current(g.keys, su);
        (void)gw_wraplease_reset(&c->wraps, (int)su, v);
        gw_wraplease_grant(&c->wraps, (int)su, v, UINT64_MAX / 2, 0);
    }
    c->app.wraps = &c->wraps;
    c->app.db = gw_db_new(g.base, &g.cfg); /* never started: every request is UNAVAILABLE */
    if (c->app.db == NULL || gw_audit_new(c->app.db, &ac, &c->app.audit) != 0)
        return -1;
    c->app.store = gw_store_new(c->app.db);
    c->app.segs = gw_segcache_new_source(
        &(struct gw_segcache_source){seg_load, seg_cancel, seg_now, NULL}, 60000);
    c->app.incidents = gw_incident_new(c->app.db, c->app.audit, 64, 1000);
    c->app.refusals = gw_refusals_new(g.base, c->app.audit, NULL, 60);
    if (c->app.segs == NULL || c->app.incidents == NULL || c->app.refusals == NULL)
        return -1;

    memset(&rp, 0, sizeof(rp));
    rp.cfg = &g.cfg;
    rp.base = g.base;
    rp.app = &c->app;
    rp.methods = g.table;
    rp.policy = g.policy;
    rp.identify = fuzz_identify;
    rp.identify_ctx = c;
    c->rpc = gw_rpc_new(&rp);
    if (c->rpc == NULL)
        return -1;
    memset(&hp, 0, sizeof(hp));
    hp.cfg = &g.cfg;
    hp.base = g.base;
    c->peer = (struct gw_peer){.addr = "127.0.0.1:1", .tls = true, .cert = true};
    snprintf(c->peer.cert_cn, sizeof(c->peer.cert_cn), "fuzz");
    snprintf(c->peer.cert_ou, sizeof(c->peer.cert_ou), "%s", roles[role % NROLES]);
    hp.peer = &c->peer;
    hp.io = (struct gw_h2_io){io_send, io_pending, c};
    hp.up = gw_rpc_upcalls(c->rpc);
    c->server = gw_h2_new(&hp);
    if (c->server == NULL || client_new(c) != 0)
        return -1;
    if (gw_h2_flush(c->server) != 0)
        c->server_dead = true;
    return 0;
}

static void conn_close(struct conn *c)
{
    /* the daemon's order: the connection (its calls) first, then what they used */
    gw_h2_free(c->server);
    nghttp2_session_del(c->client);
    gw_rpc_free(c->rpc);
    gw_segcache_free(c->app.segs);
    gw_incident_free(c->app.incidents);
    gw_store_free(c->app.store);
    gw_refusals_free(c->app.refusals);
    gw_audit_free(c->app.audit);
    gw_db_free(c->app.db);
    free(c->out);
    event_base_loop(g.base, EVLOOP_NONBLOCK); /* nothing left may still point at them */
}

static int submit_call(struct conn *c, uint8_t method, uint8_t flags, struct body *b)
{
    char path[128];
    nghttp2_nv hdrs[7];
    size_t nh = 0;
    nghttp2_data_provider dp = {.source.ptr = b, .read_callback = body_read};
    int32_t id;

#define NV(n, v)                                                                                   \
    hdrs[nh++] = (nghttp2_nv)                                                                      \
    {                                                                                              \
        (uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, strlen(v), NGHTTP2_NV_FLAG_NONE             \
    }
    if (method < g.table->n)
        snprintf(path, sizeof(path), "%s", g.table->methods[method].path);
    else
        snprintf(path, sizeof(path), "/waygate.v1.Nothing/M%u", method);
    NV(":method", "POST");
    NV(":scheme", "https");
    NV(":path", path);
    NV(":authority", "gateway");
    NV("content-type", "application/grpc");
    if (flags & 4)
        NV("grpc-timeout", "1m");
    if (flags & 16)
        NV("authorization", "Bearer AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
#undef NV
    id = nghttp2_submit_request(c->client, NULL, hdrs, nh, &dp, b);
    if (id < 0)
        return -1;
    if (flags & 8)
        (void)nghttp2_submit_rst_stream(c->client, NGHTTP2_FLAG_NONE, id, NGHTTP2_CANCEL);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct conn c;
    struct body bodies[MAX_CALLS];
    uint8_t *wrapped[MAX_CALLS];
    size_t ncalls = 0, off = 2;

    if (size < 2)
        return 0;
    if (conn_open(&c, data[0], data[1]) != 0)
        die("cannot set up a connection");
    memset(wrapped, 0, sizeof(wrapped));
    pump(&c); /* the prefaces and SETTINGS */
    c.backed_up = (data[1] & 32) != 0;
    while (ncalls < MAX_CALLS && size - off >= 4) {
        uint8_t method = data[off], flags = data[off + 1];
        size_t n = (size_t)data[off + 2] << 8 | data[off + 3];
        struct body *b = &bodies[ncalls];
        if (n > size - off - 4)
            break;
        memset(b, 0, sizeof(*b));
        b->end_stream = (flags & 2) == 0;
        if (flags & 1) {
            b->p = data + off + 4;
            b->n = n;
        } else {
            uint8_t *w = malloc(n + GW_GRPC_PREFIX_LEN);
            if (w == NULL)
                die("out of memory");
            gw_grpc_frame_prefix(w, (uint32_t)n);
            memcpy(w + GW_GRPC_PREFIX_LEN, data + off + 4, n);
            wrapped[ncalls] = w;
            b->p = w;
            b->n = n + GW_GRPC_PREFIX_LEN;
        }
        if (submit_call(&c, method, flags, b) != 0)
            break;
        ncalls++;
        off += 4 + n;
        if ((flags & 32) == 0)
            pump(&c);
    }
    if (off < size && !c.server_dead && gw_h2_recv(c.server, data + off, size - off) != 0)
        c.server_dead = true;
    pump(&c);
    if (c.backed_up) { /* the socket drains: what was held back goes out */
        c.backed_up = false;
        if (!c.server_dead && gw_h2_flush(c.server) != 0)
            c.server_dead = true;
        pump(&c);
    }
    conn_close(&c);
    for (size_t i = 0; i < ncalls; i++)
        free(wrapped[i]);
    return 0;
}

static void put(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");

    if (f == NULL || fputs(text, f) < 0 || fclose(f) != 0)
        die(path);
}

/* The configuration and a real key file, made once in a private temporary directory, loaded,
 * and removed. */
static void load_config_and_keys(void)
{
    char dir[] = "/tmp/fuzz_h2_calls.XXXXXX", keys[64], tls[64], conf[64], text[1024], err[512];

    if (mkdtemp(dir) == NULL)
        die("mkdtemp");
    snprintf(keys, sizeof(keys), "%s/keyring", dir);
    snprintf(tls, sizeof(tls), "%s/tls", dir);
    snprintf(conf, sizeof(conf), "%s/waygated.conf", dir);
    snprintf(text, sizeof(text), config_text, dir, dir, dir, dir);
    put(tls, "not read: the fuzzer has no TLS\n");
    put(conf, text);
    if (gw_keyring_file_init(keys, GW_SUITE_AES, err, sizeof(err)) != 0 ||
        gw_keyring_file_load(keys, &g.keys, err, sizeof(err)) != 0 ||
        gw_config_load(conf, &g.cfg, err, sizeof(err)) != 0)
        die(err);
    unlink(keys);
    unlink(tls);
    unlink(conf);
    rmdir(dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    /* logging formats caller data: on with WAYGATE_FUZZ_LOG=1 (slower, noisy) */
    gw_log_level = getenv("WAYGATE_FUZZ_LOG") != NULL ? GW_LOG_DEBUG : GW_LOG_OFF;
    load_config_and_keys();
    g.base = event_base_new();
    g.crypto = gw_crypto_new();
    g.throttle = gw_throttle_new(64, 4096);
    g.policy = gw_policy_new(NULL, 0);
    g.table = gw_api_methods();
    if (g.base == NULL || g.crypto == NULL || g.throttle == NULL || g.policy == NULL)
        die("init");
    g.workers = gw_workers_new(1, GW_API_AUTH_QUEUE, GW_API_AUTH_ARG_MAX, NULL, true);
    if (g.workers == NULL || gw_workers_attach(g.workers, g.base) != 0)
        die("workers");
    return 0;
}
