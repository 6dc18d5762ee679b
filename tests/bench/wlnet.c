/* wlnet.c: wgload's engine: TLS connections on bufferevents, the nghttp2 client sessions, one
 * stream per call carrying the next synthetic waybills, and the check of every response (HTTP
 * status, grpc-status, each batch item's code). Invariants: a request is on exactly one
 * connection's in-flight list until its stream closes or its connection dies, and is freed there;
 * numbers are issued once each, in order; nothing is issued outside the warm-up and measure phases
 * (open loop: nothing that was due outside them). Open loop (--rate): calls are sent in the order
 * they are due, each on a connection with a free stream, and a call's latency counts from the
 * moment it was due, never from the moment it could be sent.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "waygate/v1/admin.pb-c.h"
#include "waygate/v1/intake.pb-c.h"
#include "waygate/v1/query.pb-c.h"
#include "wgload.h"

const char *const wl_code_names[NCODES] = {
    "OK",        "CANCELLED",      "UNKNOWN",           "INVALID_ARGUMENT",   "DEADLINE_EXCEEDED",
    "NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
    "ABORTED",   "OUT_OF_RANGE",   "UNIMPLEMENTED",     "INTERNAL",           "UNAVAILABLE",
    "DATA_LOSS", "UNAUTHENTICATED"};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Keeps up to NSAMPLES distinct error descriptions: what, then detail (a gRPC message names a
 * field and a rule, never a value). */
static void sample(struct load *L, const char *what, const char *detail)
{
    char line[160];
    /* a long description is kept as its prefix (snprintf terminates it) */
    if (snprintf(line, sizeof line, "%s%s", what, detail) >= (int)sizeof line)
        line[sizeof line - 1] = '\0';
    for (int i = 0; i < L->nsamples; i++)
        if (strcmp(L->samples[i], line) == 0)
            return;
    if (L->nsamples < NSAMPLES)
        snprintf(L->samples[L->nsamples++], sizeof L->samples[0], "%s", line);
}

/* ---- request building ---- */

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* The next random number in 0 .. n - 1 (xorshift64*; n > 0). */
static uint64_t pick(struct load *L, uint64_t n)
{
    uint64_t x = L->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    L->rng = x;
    return (x * 0x2545f4914f6cdd1dULL) % n;
}

/* Frames the packed message of n bytes: a 5-byte gRPC prefix, then pack(msg) into r->body. */
static int frame(struct req *r, size_t n, const ProtobufCMessage *msg)
{
    r->body = malloc(5 + n);
    if (!r->body)
        return -1;
    r->body[0] = 0;
    put_be32(r->body + 1, (uint32_t)n);
    protobuf_c_message_pack(msg, r->body + 5);
    r->blen = 5 + n;
    return 0;
}

/* Packs the call's request: the next nwb synthetic waybills (Submit, SubmitBatch), a random
 * number of the range (Get), the phone (Search) or the account and password (Login). */
static int build_body(struct load *L, struct req *r, enum wl_mode mode)
{
    const struct opts *o = &L->o;
    char number[32];

    switch (mode) {
    case WL_GET: {
        Waygate__V1__GetRequest gr = WAYGATE__V1__GET_REQUEST__INIT;
        if (wl_synth_number(number, sizeof number, &L->scfg, o->first + pick(L, o->count)) != 0)
            return -1;
        gr.waybill_no = number;
        return frame(r, waygate__v1__get_request__get_packed_size(&gr), &gr.base);
    }
    case WL_SEARCH: {
        Waygate__V1__SearchRequest sr = WAYGATE__V1__SEARCH_REQUEST__INIT;
        sr.key_case = WAYGATE__V1__SEARCH_REQUEST__KEY_PHONE;
        sr.phone = (char *)o->search_phone;
        sr.limit = (uint32_t)o->expect + 1; /* one more: a surplus result is seen */
        return frame(r, waygate__v1__search_request__get_packed_size(&sr), &sr.base);
    }
    case WL_LOGIN: {
        Waygate__V1__LoginRequest lr = WAYGATE__V1__LOGIN_REQUEST__INIT;
        lr.account = (char *)(r->pre ? o->as_account : o->login_account);
        lr.password = (char *)o->password;
        r->wipe = true;
        return frame(r, waygate__v1__login_request__get_packed_size(&lr), &lr.base);
    }
    case WL_SUBMIT:
    case WL_BATCH:
        break;
    }
    for (uint32_t i = 0; i < r->nwb; i++) {
        if (wl_synth_fill(&L->synth[i], &L->scfg, L->next_no + i) != 0)
            return -1;
        L->wbp[i] = &L->synth[i].wb;
    }
    L->next_no += r->nwb;
    if (o->mode == WL_BATCH) {
        Waygate__V1__SubmitBatchRequest br = WAYGATE__V1__SUBMIT_BATCH_REQUEST__INIT;
        br.n_waybills = r->nwb;
        br.waybills = L->wbp;
        return frame(r, waygate__v1__submit_batch_request__get_packed_size(&br), &br.base);
    }
    Waygate__V1__SubmitRequest sr = WAYGATE__V1__SUBMIT_REQUEST__INIT;
    sr.waybill = L->wbp[0];
    return frame(r, waygate__v1__submit_request__get_packed_size(&sr), &sr.base);
}

static ssize_t body_read_cb(nghttp2_session *s, int32_t sid, uint8_t *buf, size_t len,
                            uint32_t *flags, nghttp2_data_source *src, void *ud)
{
    struct req *r = src->ptr;
    size_t n = r->blen - r->boff;
    if (n > len)
        n = len;
    memcpy(buf, r->body + r->boff, n);
    r->boff += n;
    if (r->boff == r->blen)
        *flags |= NGHTTP2_DATA_FLAG_EOF;
    return (ssize_t)n;
}

#define NV(n, v)                                                                                   \
    {                                                                                              \
        (uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, strlen(v),                                  \
            NGHTTP2_NV_FLAG_NO_COPY_NAME | NGHTTP2_NV_FLAG_NO_COPY_VALUE                           \
    }

void wl_req_free(struct req *r)
{
    if (!r)
        return;
    if (r->wipe) {
        OPENSSL_cleanse(r->body, r->blen);
        OPENSSL_cleanse(r->resp, r->rcap);
    }
    free(r->body);
    free(r->resp);
    free(r);
}

/* Opens one stream carrying the next waybills; returns 0, or -1 (nothing was issued). */
/* Sends r (its body built) on c to path; frees r and returns -1 when it cannot. */
static int send_req(struct conn *c, struct req *r, const char *path)
{
    struct load *L = c->L;
    r->c = c;
    r->grpc = -1;
    nghttp2_nv hdrs[9 + MAX_META] = {
        NV(":method", "POST"),
        NV(":scheme", "https"),
        NV(":authority", L->authority),
        NV(":path", path),
        NV("content-type", "application/grpc"),
        NV("te", "trailers"),
        NV("user-agent", "wgload/1"),
        NV("grpc-timeout", L->timeout_hdr),
    };
    size_t nh = L->timeout_hdr[0] ? 8 : 7;
    int nmeta = L->o.nmeta;
    for (int i = 0; i <= nmeta; i++) {
        const char *name = i < nmeta ? L->o.meta_name[i] : "authorization";
        const char *value = i < nmeta ? L->o.meta_value[i] : L->bearer;
        if (!value || (r->pre && strcmp(name, "authorization") == 0))
            continue;
        hdrs[nh].name = (uint8_t *)name;
        hdrs[nh].namelen = strlen(name);
        hdrs[nh].value = (uint8_t *)value;
        hdrs[nh].valuelen = strlen(value);
        /* never indexed: a bearer token must not sit in a compression table */
        hdrs[nh++].flags =
            NGHTTP2_NV_FLAG_NO_COPY_NAME | NGHTTP2_NV_FLAG_NO_COPY_VALUE | NGHTTP2_NV_FLAG_NO_INDEX;
    }
    nghttp2_data_provider prd = {.source.ptr = r, .read_callback = body_read_cb};
    r->t0 = now_s();
    int32_t sid = nghttp2_submit_request(c->ng, NULL, hdrs, nh, &prd, r);
    if (sid < 0) {
        fprintf(stderr, "wgload: nghttp2_submit_request: %s\n", nghttp2_strerror(sid));
        wl_req_free(r);
        L->e.conn++;
        c->goaway = true;
        return -1;
    }
    r->sid = sid;
    r->next = c->reqs;
    if (c->reqs)
        c->reqs->prev = r;
    c->reqs = r;
    c->inflight++;
    L->inflight++;
    return 0;
}

/* Opens one stream carrying the next call; returns 0, or -1 (nothing was issued). */
static int submit_one(struct conn *c)
{
    struct load *L = c->L;
    uint32_t nwb = L->o.batch ? (uint32_t)L->o.batch : 1;
    bool fresh = L->o.mode == WL_SUBMIT || L->o.mode == WL_BATCH;
    if (fresh && (L->next_no + nwb - 1 > L->o.seg_to || L->next_no + nwb - 1 < L->next_no)) {
        if (!L->e.exhausted)
            fprintf(stderr, "wgload: segment exhausted at %" PRIu64 "\n", L->next_no);
        L->e.exhausted = 1;
        return -1;
    }
    struct req *r = calloc(1, sizeof *r);
    if (!r || (r->nwb = nwb, build_body(L, r, L->o.mode) != 0)) {
        wl_req_free(r);
        fprintf(stderr, "wgload: cannot build a request\n");
        L->e.exhausted = 1; /* stops issuing; counted as a failure */
        return -1;
    }
    if (send_req(c, r, L->o.path) != 0)
        return -1;
    L->issued++;
    return 0;
}

static bool may_issue(const struct load *L)
{
    if (L->phase != PH_WARMUP && L->phase != PH_MEASURE)
        return false;
    if (L->e.exhausted)
        return false;
    return !(L->count_mode && L->issued >= L->o.requests);
}

static void conn_fail(struct conn *c, const char *why);

static void conn_flush(struct conn *c)
{
    if (c->dead || !c->ng)
        return;
    int rv = nghttp2_session_send(c->ng);
    if (rv != 0)
        conn_fail(c, nghttp2_strerror(rv));
}

static void conn_fill(struct conn *c)
{
    if (c->L->o.rate > 0) { /* open loop: pace() sends; here only what nghttp2 has queued */
        conn_flush(c);
        return;
    }
    while (!c->dead && c->ready && !c->goaway && c->inflight < c->L->o.streams && may_issue(c->L))
        if (submit_one(c) != 0)
            break;
    conn_flush(c);
}

/* ---- open loop (--rate) ---- */

/* When call k is due. */
static double due_at(const struct load *L, uint64_t k)
{
    return L->r_t0 + (double)k / L->o.rate;
}

/* Calls k with due_at(k) < t: ceil((t - r_t0) * rate), 0 before the origin. */
static uint64_t due_before(const struct load *L, double t)
{
    double n = (t - L->r_t0) * L->o.rate;
    if (n <= 0)
        return 0;
    uint64_t k = (uint64_t)n;
    return (double)k < n ? k + 1 : k;
}

uint64_t wl_due_between(const struct load *L, double t0, double t1)
{
    uint64_t a = due_before(L, t0), b = due_before(L, t1);
    return b > a ? b - a : 0;
}

int wl_pace_selftest(void)
{
    static struct load L; /* only o.rate and r_t0 are read */
    L.o.rate = 1000;
    L.r_t0 = 10;
    /* calls 0..999 are due in the first second; a window counts each call once, by due time */
    if (wl_due_between(&L, 10, 11) != 1000 || wl_due_between(&L, 0, 10) != 0)
        return -1;
    if (wl_due_between(&L, 10.0005, 10.0015) != 1 || wl_due_between(&L, 10.0012, 10.0031) != 2)
        return -1;
    if (wl_due_between(&L, 10, 10.0015) != 2 || /* calls 0 and 1: due at 10 and 10.001 */
        wl_due_between(&L, 10, 10.5) + wl_due_between(&L, 10.5, 11) != 1000)
        return -1;
    L.o.rate = 3;
    return wl_due_between(&L, 10, 11) == 3 && wl_due_between(&L, 10.2, 10.4) == 1 ? 0 : -1;
}

/* May a call due at `due` still be sent: in the warm-up and the window, and in the drain the
 * ones that were due inside the window. */
static bool pace_open(const struct load *L, double due)
{
    if (L->e.exhausted || (L->count_mode && L->issued >= L->o.requests))
        return false;
    if (L->phase == PH_WARMUP || L->phase == PH_MEASURE)
        return true;
    return L->phase == PH_DRAIN && due < L->t_meas1;
}

/* Open loop, and a due call not sent yet (it waits for its time or for a free stream). */
static bool pace_pending(const struct load *L)
{
    return L->o.rate > 0 && pace_open(L, due_at(L, L->r_k));
}

/* A connection with a free stream, round robin; NULL when every stream is busy. */
static struct conn *free_conn(struct load *L)
{
    for (int i = 0; i < L->o.conns; i++) {
        struct conn *c = &L->conns[(L->r_rr + i) % L->o.conns];
        if (!c->dead && c->ready && !c->goaway && c->inflight < L->o.streams) {
            L->r_rr = (L->r_rr + i + 1) % L->o.conns;
            return c;
        }
    }
    return NULL;
}

/* Sends call r_k (due at `due`) on c; its latency will count from `due`. */
static int pace_send(struct load *L, struct conn *c, double due)
{
    if (submit_one(c) != 0)
        return -1;
    struct req *r = c->reqs; /* send_req puts the new call first */
    double lag = now_s() - due;
    r->t0 = due;
    r->meas = L->t_meas0 > 0 && due >= L->t_meas0 && (L->t_meas1 == 0 || due < L->t_meas1);
    if (r->meas) {
        L->r_sent++;
        L->r_late += lag > LATE_S;
        L->r_waited += L->r_k < L->r_block_k;
        if (lag > L->lag_max)
            L->lag_max = lag;
    }
    return 0;
}

/* Sends every call that is due, as far as free streams allow, and arms the timer for the next
 * one. A call that finds every stream busy is sent when a stream ends (read_cb calls pace). */
static void pace(struct load *L)
{
    for (;;) {
        double due = due_at(L, L->r_k), now = now_s();
        if (!pace_open(L, due))
            break;
        if (due > now) {
            double d = due - now;
            struct timeval tv = {(time_t)d, (suseconds_t)((d - (double)(time_t)d) * 1e6)};
            evtimer_add(L->ev_pace, &tv);
            break;
        }
        struct conn *c = free_conn(L);
        if (!c) {
            uint64_t ndue = due_before(L, now);
            if (ndue > L->r_block_k)
                L->r_block_k = ndue;
            break;
        }
        if (pace_send(L, c, due) != 0)
            break;
        L->r_k++;
    }
    for (int i = 0; i < L->o.conns; i++)
        conn_flush(&L->conns[i]);
}

/* ---- finishing ---- */

static void finish_run(struct load *L)
{
    if (L->phase == PH_DONE)
        return;
    if (L->count_mode || L->t_meas1 == 0) {
        L->t_meas1 = now_s();
        getrusage(RUSAGE_SELF, &L->ru1);
    }
    if (L->t_meas0 == 0) { /* never measured (a failed Login of --as): an empty window */
        L->t_meas0 = L->t_meas1;
        L->ru0 = L->ru1;
    }
    if (L->o.rate > 0 && !L->count_mode) {
        /* due in the window and never sent: the calls a closed loop would have hidden */
        uint64_t due = wl_due_between(L, L->t_meas0, L->t_meas1);
        L->r_unsent = due > L->r_sent ? due - L->r_sent : 0;
        L->e.unfinished += L->r_unsent;
    }
    if (L->ev_pace)
        evtimer_del(L->ev_pace);
    L->phase = PH_DONE;
    for (int i = 0; i < L->o.conns; i++) {
        struct conn *c = &L->conns[i];
        if (!c->dead && c->ng) {
            nghttp2_session_terminate_session(c->ng, NGHTTP2_NO_ERROR);
            conn_flush(c);
        }
    }
    struct timeval tv = {0, 50000}; /* let the GOAWAYs go out */
    event_base_loopexit(L->base, &tv);
}

static void maybe_done(struct load *L)
{
    if (L->phase == PH_MEASURE && L->count_mode && !may_issue(L) && L->inflight == 0)
        finish_run(L);
    else if (L->phase == PH_DRAIN && L->inflight == 0 && !pace_pending(L))
        finish_run(L);
    else if ((L->phase == PH_WARMUP || L->phase == PH_MEASURE) && L->e.exhausted &&
             L->inflight == 0)
        finish_run(L);
}

static void record_latency(struct load *L, double sec)
{
    if (L->nlat == L->caplat) {
        size_t cap = L->caplat ? L->caplat * 2 : 65536;
        uint32_t *p = realloc(L->lat_us, cap * sizeof *p);
        if (!p)
            return;
        L->lat_us = p;
        L->caplat = cap;
    }
    double us = sec * 1e6;
    L->lat_us[L->nlat++] = us > 4e9 ? 4000000000u : (uint32_t)us;
}

static uint32_t get_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* A WaybillView from Get or Search: it must decode and carry the record id. */
static bool view_ok(const uint8_t *p, size_t n)
{
    Waygate__V1__WaybillView *v = waygate__v1__waybill_view__unpack(NULL, n, p);
    bool ok = v && v->id && v->id[0] && v->waybill;
    if (v)
        waygate__v1__waybill_view__free_unpacked(v, NULL);
    return ok;
}

/* Search: every message of the stream is a view, and there are exactly o.expect of them.
 * Returns the number of results, or -1. */
static long check_search(struct load *L, const struct req *r)
{
    size_t off = 0;
    long n = 0;
    while (off < r->rlen) {
        if (r->rlen - off < 5 || r->resp[off] != 0 ||
            get_be32(r->resp + off + 1) > r->rlen - off - 5) {
            L->e.decode++;
            sample(L, "bad gRPC framing of the response", "");
            return -1;
        }
        uint32_t len = get_be32(r->resp + off + 1);
        if (!view_ok(r->resp + off + 5, len)) {
            L->e.decode++;
            sample(L, "Search: a result is not a WaybillView with an id", "");
            return -1;
        }
        off += 5 + (size_t)len;
        n++;
    }
    if (n != L->o.expect) {
        char w[64];
        L->e.count++;
        snprintf(w, sizeof w, "%ld results, expected %d", n, L->o.expect);
        sample(L, "Search returned ", w);
        return -1;
    }
    return n;
}

/* Login: a token, never printed; a token that allows only ChangePassword is counted. The
 * Login of --as keeps "Bearer <token>" in L->bearer. */
static long check_login(struct load *L, const struct req *r)
{
    Waygate__V1__LoginResponse *m =
        waygate__v1__login_response__unpack(NULL, r->rlen - 5, r->resp + 5);
    bool ok = m && m->token && m->token[0];
    if (ok && m->must_change_password)
        L->must_change++;
    if (ok && r->pre) {
        size_t n = strlen(m->token) + sizeof "Bearer ";
        L->bearer = malloc(n);
        if (L->bearer)
            snprintf(L->bearer, n, "Bearer %s", m->token);
        ok = L->bearer != NULL;
    }
    if (m) {
        if (m->token)
            OPENSSL_cleanse(m->token, strlen(m->token));
        waygate__v1__login_response__free_unpacked(m, NULL);
    }
    if (!ok) {
        L->e.decode++;
        sample(L, "LoginResponse without a token", "");
        return -1;
    }
    return 1;
}

/* Checks a completed call; returns -1 when the call failed, else the number of items it counts
 * for: waybills accepted (items of a batch refused one by one are counted in L->e.item), 1 for
 * a Get or a Login, the results of a Search. */
static long check_response(struct load *L, struct req *r, uint32_t error_code)
{
    if (error_code != NGHTTP2_NO_ERROR && r->grpc < 0) {
        L->e.reset++;
        sample(L, "stream reset: ", nghttp2_http2_strerror(error_code));
        return -1;
    }
    if (r->http != 200) {
        L->e.http++;
        char s[16];
        snprintf(s, sizeof s, "%d", r->http);
        sample(L, "HTTP status ", s);
        return -1;
    }
    if (r->grpc < 0) {
        L->e.nostatus++;
        sample(L, "no grpc-status", "");
        return -1;
    }
    if (r->grpc != 0) {
        L->e.grpc[r->grpc < NCODES ? r->grpc : NCODES]++;
        char w[40];
        snprintf(w, sizeof w, "%s: ", r->grpc < NCODES ? wl_code_names[r->grpc] : "?");
        sample(L, w, r->msg);
        return -1;
    }
    if (L->o.mode == WL_SEARCH && !r->pre)
        return check_search(L, r);
    if (r->rlen < 5 || r->resp[0] != 0 || get_be32(r->resp + 1) != r->rlen - 5) {
        L->e.decode++;
        sample(L, "bad gRPC framing of the response", "");
        return -1;
    }
    if (L->o.mode == WL_LOGIN || r->pre)
        return check_login(L, r);
    if (L->o.mode == WL_GET) {
        if (view_ok(r->resp + 5, r->rlen - 5))
            return 1;
        L->e.decode++;
        sample(L, "Get: the answer is not a WaybillView with an id", "");
        return -1;
    }
    if (L->o.mode == WL_SUBMIT) {
        Waygate__V1__SubmitResponse *m =
            waygate__v1__submit_response__unpack(NULL, r->rlen - 5, r->resp + 5);
        if (!m || !m->id || !m->id[0]) {
            L->e.decode++;
            sample(L, "SubmitResponse without id", "");
            if (m)
                waygate__v1__submit_response__free_unpacked(m, NULL);
            return -1;
        }
        L->all_dup += m->duplicate;
        waygate__v1__submit_response__free_unpacked(m, NULL);
        return 1;
    }
    Waygate__V1__SubmitBatchResponse *m =
        waygate__v1__submit_batch_response__unpack(NULL, r->rlen - 5, r->resp + 5);
    if (!m || m->n_results != r->nwb) {
        L->e.decode++;
        sample(L, "SubmitBatchResponse: wrong number of results", "");
        if (m)
            waygate__v1__submit_batch_response__free_unpacked(m, NULL);
        return -1;
    }
    long ok = 0;
    for (size_t i = 0; i < m->n_results; i++) {
        const Waygate__V1__ItemResult *it = m->results[i];
        if (it->code == 0 && it->id && it->id[0]) {
            ok++;
            L->all_dup += it->duplicate;
        } else {
            int code = it->code;
            L->e.item[code >= 0 && code < NCODES ? code : NCODES]++;
            char w[48];
            snprintf(w, sizeof w,
                     "item %s: ", code > 0 && code < NCODES ? wl_code_names[code] : "?");
            sample(L, w, it->message ? it->message : "");
        }
    }
    waygate__v1__submit_batch_response__free_unpacked(m, NULL);
    return ok;
}

static void complete(struct load *L, struct req *r, uint32_t error_code)
{
    double t = now_s();
    long ok = check_response(L, r, error_code);
    if (r->pre) { /* acted on by read_cb, outside nghttp2's callbacks */
        L->pre_state = ok < 0 ? -1 : 1;
        return;
    }
    if (ok < 0)
        return;
    L->all_wb_ok += (uint64_t)ok;
    bool in_window =
        L->o.rate > 0 ? r->meas : L->phase == PH_MEASURE || (L->phase == PH_DRAIN && L->count_mode);
    if (in_window) {
        L->m_wb_ok += (uint64_t)ok;
        L->m_req_ok++;
        record_latency(L, t - r->t0);
    }
}

/* ---- nghttp2 callbacks ---- */

static ssize_t send_cb(nghttp2_session *s, const uint8_t *data, size_t len, int flags, void *ud)
{
    struct conn *c = ud;
    if (bufferevent_write(c->bev, data, len) != 0)
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    return (ssize_t)len;
}

static int header_cb(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags, void *ud)
{
    if (f->hd.type != NGHTTP2_HEADERS)
        return 0;
    struct req *r = nghttp2_session_get_stream_user_data(s, f->hd.stream_id);
    if (!r)
        return 0;
    if (namelen == 7 && memcmp(name, ":status", 7) == 0) {
        r->http = atoi((const char *)value);
    } else if (namelen == 11 && memcmp(name, "grpc-status", 11) == 0) {
        char v[8];
        size_t n = valuelen < sizeof v - 1 ? valuelen : sizeof v - 1;
        memcpy(v, value, n);
        v[n] = '\0';
        r->grpc = (n > 0 && n < 4) ? atoi(v) : NCODES;
    } else if (namelen == 12 && memcmp(name, "grpc-message", 12) == 0) {
        /* percent-encoded field path and rule; never a value */
        size_t n = valuelen < sizeof r->msg - 1 ? valuelen : sizeof r->msg - 1;
        memcpy(r->msg, value, n);
        r->msg[n] = '\0';
    }
    return 0;
}

static int data_cb(nghttp2_session *s, uint8_t flags, int32_t sid, const uint8_t *data, size_t len,
                   void *ud)
{
    struct req *r = nghttp2_session_get_stream_user_data(s, sid);
    if (!r)
        return 0;
    if (r->rlen + len > MAX_RESP)
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    if (r->rlen + len > r->rcap) {
        size_t cap = r->rcap ? r->rcap : 256;
        while (cap < r->rlen + len)
            cap *= 2;
        uint8_t *p = malloc(cap);
        if (!p)
            return NGHTTP2_ERR_CALLBACK_FAILURE;
        if (r->rlen)
            memcpy(p, r->resp, r->rlen);
        if (r->wipe)
            OPENSSL_cleanse(r->resp, r->rcap);
        free(r->resp);
        r->resp = p;
        r->rcap = cap;
    }
    memcpy(r->resp + r->rlen, data, len);
    r->rlen += len;
    return 0;
}

static void unlink_req(struct conn *c, struct req *r)
{
    if (r->prev)
        r->prev->next = r->next;
    else
        c->reqs = r->next;
    if (r->next)
        r->next->prev = r->prev;
    c->inflight--;
    c->L->inflight--;
}

static int close_cb(nghttp2_session *s, int32_t sid, uint32_t error_code, void *ud)
{
    struct conn *c = ud;
    struct req *r = nghttp2_session_get_stream_user_data(s, sid);
    if (!r || c->dead)
        return 0;
    nghttp2_session_set_stream_user_data(s, sid, NULL);
    unlink_req(c, r);
    complete(c->L, r, error_code);
    wl_req_free(r);
    return 0;
}

static int frame_recv_cb(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
    struct conn *c = ud;
    struct load *L = c->L;
    if (f->hd.type == NGHTTP2_SETTINGS && !(f->hd.flags & NGHTTP2_FLAG_ACK) && !c->ready) {
        c->ready = true;
        uint32_t max =
            nghttp2_session_get_remote_settings(s, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS);
        if ((uint32_t)L->o.streams > max)
            fprintf(stderr,
                    "wgload: server allows %u streams per connection; asked for %d "
                    "(the rest wait inside the client)\n",
                    max, L->o.streams);
        L->nready++;
    } else if (f->hd.type == NGHTTP2_GOAWAY) {
        c->goaway = true;
        if (L->phase != PH_DONE && f->goaway.error_code != NGHTTP2_NO_ERROR) {
            L->e.conn++;
            sample(L, "GOAWAY ", nghttp2_http2_strerror(f->goaway.error_code));
        }
    }
    return 0;
}

/* ---- libevent glue ---- */

static void conn_fail(struct conn *c, const char *why)
{
    struct load *L = c->L;
    if (c->dead)
        return;
    c->dead = true;
    if (L->phase != PH_DONE) {
        L->e.conn++;
        sample(L, "connection lost: ", why);
        L->e.unfinished += (uint64_t)c->inflight;
    }
    while (c->reqs) {
        struct req *r = c->reqs;
        unlink_req(c, r);
        wl_req_free(r);
    }
    if (c->ready)
        L->nready--;
    c->ready = false;
    nghttp2_session_del(c->ng);
    c->ng = NULL;
    bufferevent_free(c->bev);
    c->bev = NULL;
    if (L->phase == PH_CONNECT || L->phase == PH_LOGIN) {
        fprintf(stderr, "wgload: connection failed before the run: %s\n", why);
        event_base_loopbreak(L->base);
        return;
    }
    maybe_done(L);
}

static void start_phase(struct load *L);

/* With --as: one Login on the first connection; its answer starts the load (complete()). */
static void begin(struct load *L)
{
    if (!L->o.as_account) {
        start_phase(L);
        return;
    }
    L->phase = PH_LOGIN;
    struct conn *c = &L->conns[0];
    struct req *r = calloc(1, sizeof *r);
    if (r)
        r->pre = true;
    if (!r || build_body(L, r, WL_LOGIN) != 0) {
        wl_req_free(r);
        fprintf(stderr, "wgload: cannot build the Login request\n");
        L->e.exhausted = 1;
        finish_run(L);
        return;
    }
    if (send_req(c, r, "/waygate.v1.Admin/Login") != 0) {
        finish_run(L);
        return;
    }
    conn_flush(c);
}

static void read_cb(struct bufferevent *bev, void *arg)
{
    struct conn *c = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    struct evbuffer_iovec v[16];
    while (!c->dead && evbuffer_get_length(in) > 0) {
        int n = evbuffer_peek(in, -1, NULL, v, 16);
        size_t used = 0;
        for (int i = 0; i < n && i < 16; i++) {
            ssize_t rv = nghttp2_session_mem_recv(c->ng, v[i].iov_base, v[i].iov_len);
            if (rv < 0) {
                conn_fail(c, nghttp2_strerror((int)rv));
                return;
            }
            used += (size_t)rv;
        }
        evbuffer_drain(in, used);
    }
    struct load *L = c->L;
    if (L->phase == PH_CONNECT && L->nready == L->o.conns)
        begin(L);
    if (L->phase == PH_LOGIN && L->pre_state > 0)
        start_phase(L);
    if (L->phase == PH_LOGIN && L->pre_state < 0) {
        fprintf(stderr, "wgload: the Login of --as failed; no load was sent\n");
        finish_run(L);
    }
    if (L->o.rate > 0)
        pace(L); /* a stream may have ended: a call that waited for one goes now */
    conn_fill(c);
    maybe_done(L);
}

static void event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct conn *c = arg;
    struct load *L = c->L;
    if (what & BEV_EVENT_CONNECTED) {
        SSL *ssl = bufferevent_openssl_get_ssl(bev);
        const unsigned char *alpn = NULL;
        unsigned alpnlen = 0;
        SSL_get0_alpn_selected(ssl, &alpn, &alpnlen);
        if (alpnlen != 2 || memcmp(alpn, "h2", 2) != 0) {
            conn_fail(c, "server did not select ALPN h2");
            return;
        }
        int one = 1;
        setsockopt(bufferevent_getfd(bev), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        nghttp2_session_callbacks *cbs;
        if (nghttp2_session_callbacks_new(&cbs) != 0) {
            conn_fail(c, "out of memory");
            return;
        }
        nghttp2_session_callbacks_set_send_callback(cbs, send_cb);
        nghttp2_session_callbacks_set_on_header_callback(cbs, header_cb);
        nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, data_cb);
        nghttp2_session_callbacks_set_on_stream_close_callback(cbs, close_cb);
        nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, frame_recv_cb);
        int rv = nghttp2_session_client_new(&c->ng, cbs, c);
        nghttp2_session_callbacks_del(cbs);
        if (rv != 0) {
            conn_fail(c, nghttp2_strerror(rv));
            return;
        }
        nghttp2_settings_entry iv[] = {
            {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, 100},
            {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, 1u << 20},
            {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
        };
        if (nghttp2_submit_settings(c->ng, NGHTTP2_FLAG_NONE, iv, 3) != 0 ||
            nghttp2_session_set_local_window_size(c->ng, NGHTTP2_FLAG_NONE, 0, 1 << 24) != 0) {
            conn_fail(c, "cannot send SETTINGS");
            return;
        }
        conn_flush(c);
        return;
    }
    char why[300] = "";
    if (what & BEV_EVENT_EOF)
        snprintf(why, sizeof why, "closed by the server");
    else if (what & BEV_EVENT_TIMEOUT)
        snprintf(why, sizeof why, "timeout");
    else {
        unsigned long e = bufferevent_get_openssl_error(bev);
        if (e && ERR_GET_LIB(e) != 0) {
            ERR_error_string_n(e, why, sizeof why);
        } else {
            int err = EVUTIL_SOCKET_ERROR();
            snprintf(why, sizeof why, "%s",
                     err ? evutil_socket_error_to_string(err) : "closed without TLS close_notify");
        }
    }
    if (L->phase == PH_DONE)
        return;
    conn_fail(c, why);
}

void wl_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct load *L = arg;
    struct timeval tv;
    switch (L->phase) {
    case PH_WARMUP:
        L->phase = PH_MEASURE;
        L->t_meas0 = now_s();
        getrusage(RUSAGE_SELF, &L->ru0);
        if (!L->count_mode) {
            tv.tv_sec = (time_t)L->o.duration;
            tv.tv_usec = (suseconds_t)((L->o.duration - (double)tv.tv_sec) * 1e6);
            evtimer_add(L->ev_timer, &tv);
        }
        for (int i = 0; i < L->o.conns; i++)
            conn_fill(&L->conns[i]);
        if (L->o.rate > 0)
            pace(L);
        break;
    case PH_MEASURE:
        L->phase = PH_DRAIN;
        L->t_meas1 = now_s();
        getrusage(RUSAGE_SELF, &L->ru1);
        tv.tv_sec = 15;
        tv.tv_usec = 0;
        evtimer_add(L->ev_timer, &tv); /* grace for the calls still in flight */
        if (L->o.rate > 0)
            pace(L); /* the window's last due calls */
        maybe_done(L);
        break;
    case PH_DRAIN:
        fprintf(stderr, "wgload: %ld calls did not finish within 15 s\n", L->inflight);
        L->e.unfinished += (uint64_t)L->inflight;
        finish_run(L);
        break;
    default:
        break;
    }
}

void wl_pace_cb(evutil_socket_t fd, short what, void *arg)
{
    struct load *L = arg;
    pace(L);
    maybe_done(L);
}

static void start_phase(struct load *L)
{
    L->t_start = now_s();
    L->r_t0 = L->t_start; /* open loop: call 0 is due now */
    if (L->o.warmup > 0) {
        L->phase = PH_WARMUP;
        struct timeval tv = {(time_t)L->o.warmup,
                             (suseconds_t)((L->o.warmup - (double)(time_t)L->o.warmup) * 1e6)};
        evtimer_add(L->ev_timer, &tv);
        for (int i = 0; i < L->o.conns; i++)
            conn_fill(&L->conns[i]);
        if (L->o.rate > 0)
            pace(L);
    } else {
        L->phase = PH_WARMUP;
        wl_timer_cb(-1, 0, L); /* straight to PH_MEASURE */
    }
}

int wl_conn_open(struct load *L, struct conn *c)
{
    c->L = L;
    SSL *ssl = SSL_new(L->ssl);
    if (!ssl)
        return -1;
    const char *name = L->o.servername;
    unsigned char tmp[16];
    if (inet_pton(AF_INET, name, tmp) == 1 || inet_pton(AF_INET6, name, tmp) == 1) {
        if (!X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), name)) {
            SSL_free(ssl);
            return -1;
        }
    } else if (!SSL_set1_host(ssl, name) || !SSL_set_tlsext_host_name(ssl, name)) {
        SSL_free(ssl);
        return -1;
    }
    c->bev = bufferevent_openssl_socket_new(L->base, -1, ssl, BUFFEREVENT_SSL_CONNECTING,
                                            BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
    if (!c->bev) {
        SSL_free(ssl);
        return -1;
    }
    bufferevent_setcb(c->bev, read_cb, NULL, event_cb, c);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    if (bufferevent_socket_connect(c->bev, (struct sockaddr *)&L->sa, (int)L->salen) != 0)
        return -1;
    return 0;
}
