/* wgload.h: the state shared by wgload's two halves: wlnet.c (connections, HTTP/2 streams,
 * request building, response checks, the run's phases) and wgload.c (options, set-up, report).
 * Modes: Submit, SubmitBatch (fresh numbers), Get (numbers submitted earlier), Search by phone
 * (server-streaming, a known number of results per call), Login (an account's password).
 * Closed loop by default (each connection keeps --streams calls in flight); with --rate, open
 * loop: call k is due at t0 + k / rate whatever the answers, and its latency counts from that
 * due time, so that a call the client could not send on time (no free stream, a busy loop)
 * shows its wait instead of hiding it (coordinated omission).
 * Everything runs on one libevent loop in one thread; struct load is the whole run's state. */
#ifndef WL_WGLOAD_H
#define WL_WGLOAD_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include <event2/event.h>
#include <nghttp2/nghttp2.h>
#include <openssl/ssl.h>

#include "synth.h"

#define MAX_RESP (64u << 20) /* bytes of one response body we are willing to buffer */
#define NCODES 17            /* gRPC status codes 0..16 */
#define NSAMPLES 6           /* distinct error messages kept for the report */
#define MAX_META 8           /* extra request headers (gRPC metadata) */
#define LATE_S 0.001         /* open loop: a call sent this long after it was due is late */

enum wl_mode { WL_SUBMIT, WL_BATCH, WL_GET, WL_SEARCH, WL_LOGIN };

/* Names of the gRPC status codes 0..16. */
extern const char *const wl_code_names[NCODES];

struct opts {
    const char *addr, *ca, *cert, *key, *servername, *origin_branch, *path;
    char prefix[24];
    uint64_t seg_from, seg_to, first;
    int width, conns, streams, batch, dump;
    double duration, warmup;
    long long requests;
    long timeout_ms;
    uint64_t seed;
    enum wl_mode mode;
    uint64_t count;                   /* Get: numbers first .. first + count - 1 */
    const char *search_phone;         /* Search: the phone */
    int expect;                       /* Search: results every call must return */
    const char *login_account;        /* Login: the account */
    const char *as_account;           /* other modes: log in as this account first */
    const char *password;             /* Login: its password (from the environment) */
    const char *same_phone;           /* Submit: every recipient's phone */
    double rate;                      /* open loop: calls per second over all connections; 0 off */
    int nmeta;                        /* extra headers sent with every call */
    const char *meta_name[MAX_META];  /* lower-case names */
    const char *meta_value[MAX_META]; /* values */
};

/* Failures, whatever the phase they happen in: any of them makes the exit status 1. */
struct errs {
    uint64_t grpc[NCODES + 1]; /* call-level grpc-status != 0; [NCODES] = out of range */
    uint64_t item[NCODES + 1]; /* per-item codes != 0 in SubmitBatch responses */
    uint64_t http, reset, nostatus, decode, conn, unfinished, exhausted;
    uint64_t count; /* Search answers with another number of results than expected */
};

/* PH_LOGIN: with --as, the one Login whose token the load then sends. */
enum phase { PH_CONNECT, PH_LOGIN, PH_WARMUP, PH_MEASURE, PH_DRAIN, PH_DONE };

struct load;

struct req {
    struct conn *c;
    struct req *prev, *next; /* the connection's in-flight list */
    int32_t sid;
    uint32_t nwb;
    double t0;
    uint8_t *body;
    size_t blen, boff;
    uint8_t *resp;
    size_t rlen, rcap;
    int http, grpc;
    bool wipe; /* body or response holds a secret (password, token): cleansed when freed */
    bool pre;  /* the Login of --as, before the load */
    bool meas; /* open loop: due inside the measured window (its latency is recorded) */
    char msg[128];
};

struct conn {
    struct load *L;
    struct bufferevent *bev;
    nghttp2_session *ng;
    struct req *reqs;
    int inflight;
    bool ready, dead, goaway;
};

struct load {
    struct opts o;
    struct event_base *base;
    SSL_CTX *ssl;
    struct sockaddr_storage sa;
    socklen_t salen;
    char authority[300], timeout_hdr[32];
    struct conn *conns;
    int nready;
    struct wl_synth_cfg scfg;
    struct wl_synth *synth;
    Waygate__V1__Waybill **wbp;
    uint64_t next_no;
    long long issued;
    long inflight;
    enum phase phase;
    bool count_mode;
    struct event *ev_timer;
    double t_start, t_meas0, t_meas1;
    struct rusage ru0, ru1;
    /* measured window */
    uint64_t m_req_ok, m_wb_ok;
    uint32_t *lat_us;
    size_t nlat, caplat;
    /* whole run */
    uint64_t all_wb_ok, all_dup;
    /* open loop (--rate): call k is due at r_t0 + k / rate */
    struct event *ev_pace; /* fires when the next call is due */
    double r_t0, lag_max;  /* the schedule's origin; the longest send lag of a measured call */
    uint64_t r_k;          /* the next call to send */
    uint64_t r_block_k;    /* calls before this one were due while every stream was busy */
    uint64_t r_sent;       /* measured calls sent */
    uint64_t r_late;       /* ... of which sent more than LATE_S after they were due */
    uint64_t r_waited;     /* ... of which waited for a free stream */
    uint64_t r_unsent;     /* due in the window, never sent (the drain's grace ran out) */
    int r_rr;              /* the connection the next call tries first (round robin) */
    uint64_t must_change;  /* Login: tokens that allow only ChangePassword */
    uint64_t rng;          /* Get: picks the numbers (xorshift64*) */
    char *bearer;          /* "Bearer <token>" sent with every call, or NULL; wiped at exit */
    int pre_state;         /* the Login of --as: 0 pending, 1 done, -1 failed */
    struct errs e;
    char samples[NSAMPLES][160];
    int nsamples;
};

/* Opens connection c (TCP, TLS with ALPN h2, then HTTP/2); returns 0 or -1. Progress and
 * failures are reported through the event loop. */
int wl_conn_open(struct load *L, struct conn *c);
/* The phase timer (warm-up -> measure -> drain -> done); arg is the struct load. */
void wl_timer_cb(evutil_socket_t fd, short what, void *arg);
/* Open loop: the pace timer's callback (sends every due call a free stream can take); arg is
 * the struct load. */
void wl_pace_cb(evutil_socket_t fd, short what, void *arg);
/* Open loop: calls due in the window [t_meas0, t_meas1) of the schedule. */
uint64_t wl_due_between(const struct load *L, double t0, double t1);
/* Checks wl_due_between's arithmetic (the open loop's window); 0 or -1. */
int wl_pace_selftest(void);
/* Frees one request and its buffers; NULL-safe. */
void wl_req_free(struct req *r);

#endif
