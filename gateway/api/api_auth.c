/* api_auth.c: the identity step over registered principals and account sessions (api_auth.h).
 * The certificate cache is direct-mapped by fingerprint (CACHE_SLOTS entries, bounded memory);
 * an entry holds the last answer for one fingerprint (registered or not) and when it was
 * learnt. A certificate-only call that misses the cache joins the lookup in flight for its
 * fingerprint, if its slot has one (single flight: a busy certificate whose entry expires costs
 * one lookup, not one per call that arrives meanwhile), else starts one.
 * Invariants: a token is never stored or logged, only hashed; a call with a token owns its
 * lookup and cancels it when reset; a flight is named by its slot exactly while its lookup is
 * in flight, and its lookup is cancelled when its last waiter is reset; a call is identified
 * exactly once. */
#include "api_auth.h"

#include <stdio.h>
#include <string.h>

#include <openssl/evp.h>

#include "account.h"
#include "accounts.h"
#include "alloc.h"
#include "api_admin_int.h"
#include "app.h"
#include "clock.h"
#include "config.h"
#include "log.h"
#include "rpc.h"
#include "text.h"

#define CACHE_SLOTS 512
#define BEARER "Bearer "

struct cache_entry {
    bool used;
    uint8_t fpr[GW_PEER_FPR_LEN];
    uint64_t at_ms; /* when learnt */
    bool registered;
    struct gw_acct_cert cert;
};

struct flight;

struct gw_auth {
    struct gw_app *app;
    struct cache_entry cache[CACHE_SLOTS];
    struct flight *flights[CACHE_SLOTS]; /* a certificate lookup in flight per slot, or NULL */
};

/* A call waiting for a flight. */
struct waiter {
    struct flight *f;
    struct gw_call *call;
    struct gw_peer peer;
    bool recheck; /* a streaming call's re-check, not its identity step */
    struct waiter *prev, *next;
};

/* One certificate lookup that every certificate-only call missing the cache for fpr waits for. */
struct flight {
    struct gw_auth *auth;
    struct flight **slot; /* the auth's entry naming it while the lookup is in flight */
    struct gw_acct_req *req;
    uint8_t fpr[GW_PEER_FPR_LEN];
    struct waiter *head;
    bool answering; /* the lookup answered: its waiters are being identified */
};

/* One call waiting for the database. */
struct wait {
    struct gw_auth *auth;
    struct gw_call *call;
    struct gw_acct_req *req;
    struct gw_peer peer;
    bool recheck; /* a streaming call's re-check, not its identity step */
    bool has_token;
    bool asked_cert;        /* the certificate was not fresh in the cache */
    bool cached_registered; /* !asked_cert: the cache's answer, copied when the call began */
    struct gw_acct_cert cached;
    uint8_t token_hash[32];
};

struct gw_auth *gw_auth_new(struct gw_app *app)
{
    struct gw_auth *a;

    if (app == NULL)
        return NULL;
    a = gw_calloc(1, sizeof(*a));
    if (a != NULL)
        a->app = app;
    return a;
}

void gw_auth_free(struct gw_auth *a)
{
    gw_free(a);
}

static bool b64url(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_';
}

int gw_auth_token_hash(const char *authorization, uint8_t out[32])
{
    const char *t;
    unsigned int n = 0;

    if (authorization == NULL || strncmp(authorization, BEARER, strlen(BEARER)) != 0)
        return GW_EAUTH;
    t = authorization + strlen(BEARER);
    if (strlen(t) != GW_AUTH_TOKEN_CHARS)
        return GW_EAUTH;
    for (size_t i = 0; i < GW_AUTH_TOKEN_CHARS; i++)
        if (!b64url(t[i]))
            return GW_EAUTH;
    if (EVP_Digest(t, GW_AUTH_TOKEN_CHARS, out, &n, EVP_sha256(), NULL) != 1 || n != 32)
        return GW_EAUTH;
    return 0;
}

static struct cache_entry *slot(struct gw_auth *a, const uint8_t fpr[GW_PEER_FPR_LEN])
{
    /* A SHA-256 is uniform: its first bytes are a hash already. */
    return &a->cache[((unsigned)fpr[0] << 8 | fpr[1]) % CACHE_SLOTS];
}

/* The cached answer for fpr: fresh (within principal_cache_ms), or any age when stale_ok. */
static const struct cache_entry *cache_get(struct gw_auth *a, const uint8_t *fpr, bool stale_ok)
{
    const struct cache_entry *e = slot(a, fpr);
    uint32_t ttl = a->app->cfg->principal_cache_ms;

    if (!e->used || memcmp(e->fpr, fpr, GW_PEER_FPR_LEN) != 0)
        return NULL;
    if (stale_ok || (ttl > 0 && gw_clock_ms() - e->at_ms < ttl))
        return e;
    return NULL;
}

static void cache_put(struct gw_auth *a, const uint8_t *fpr, const struct gw_acct_cert *c)
{
    struct cache_entry *e = slot(a, fpr);

    memset(e, 0, sizeof(*e));
    e->used = true;
    memcpy(e->fpr, fpr, GW_PEER_FPR_LEN);
    e->at_ms = gw_clock_ms();
    e->registered = c != NULL;
    if (c != NULL)
        e->cert = *c;
}

/* The answer, to the identity step or to a streaming call's re-check (rpc.h). */
static void deliver(struct gw_call *call, bool recheck, const struct gw_fault *f,
                    const struct gw_principal *p)
{
    if (recheck)
        gw_call_rechecked(call, f, p);
    else
        gw_call_identified(call, f, p);
}

static void set_cancel(struct gw_call *call, bool recheck, gw_cancel_fn fn, void *arg)
{
    if (recheck)
        gw_call_set_recheck_cancel(call, fn, arg);
    else
        gw_call_set_cancel(call, fn, arg);
}

/* Finishes the identity step from what is known. cert NULL: the certificate is not
 * registered (or disabled). sess: the session when a token was presented (NULL: invalid). */
static void conclude(struct gw_call *call, bool recheck, const struct gw_peer *peer,
                     const struct gw_acct_cert *cert, bool has_token,
                     const struct gw_acct_session *sess)
{
    struct gw_principal p;
    struct gw_fault f;

    memset(&p, 0, sizeof(p));
    (void)gw_text_copy(p.peer, sizeof(p.peer), peer->addr);
    gw_fault_clear(&f);
    if (peer->cert && cert == NULL) {
        (void)gw_fault_set(&f, GW_EAUTH, NULL, "client certificate", GW_RULE_CERT_NOT_REGISTERED);
        deliver(call, recheck, &f, &p);
        return;
    }
    if (cert != NULL) {
        (void)gw_text_copy(p.name, sizeof(p.name), cert->name);
        (void)gw_text_copy(p.role, sizeof(p.role), cert->role);
        (void)gw_text_copy(p.branch, sizeof(p.branch), cert->branch);
        (void)gw_text_copy(p.cert, sizeof(p.cert), cert->name);
        p.cert_admin = cert->admin;
        p.authn = GW_AUTHN_CERT;
    }
    if (!has_token) {
        deliver(call, recheck, NULL, &p);
        return;
    }
    if (sess == NULL) {
        (void)gw_fault_set(&f, GW_EAUTH, NULL, "authorization", GW_RULE_TOKEN_INVALID);
        deliver(call, recheck, &f, &p);
        return;
    }
    /* The account's powers only over a connection entitled to them (Art. 31, 34). */
    if (gw_account_role_branch_bound(sess->role)) {
        if (cert == NULL || cert->branch[0] == '\0' || strcmp(cert->branch, sess->branch) != 0) {
            (void)gw_fault_set(&f, GW_EPERM, NULL, "authorization", GW_RULE_TOKEN_BRANCH_CERT);
            deliver(call, recheck, &f, &p);
            return;
        }
    } else if (cert == NULL || !cert->admin) {
        (void)gw_fault_set(&f, GW_EPERM, NULL, "authorization", GW_RULE_TOKEN_ADMIN_CERT);
        deliver(call, recheck, &f, &p);
        return;
    }
    (void)gw_text_copy(p.name, sizeof(p.name), sess->name);
    (void)gw_text_copy(p.role, sizeof(p.role), sess->role);
    (void)gw_text_copy(p.branch, sizeof(p.branch), sess->branch);
    p.authn = GW_AUTHN_TOKEN;
    p.account_id = sess->account_id;
    p.must_change = sess->must_change;
    deliver(call, recheck, NULL, &p);
}

/* Ends the identity step from a cache entry (a copy: the step may run the handler). */
static void conclude_cached(struct gw_call *call, bool recheck, const struct gw_peer *peer,
                            const struct cache_entry *e)
{
    struct gw_acct_cert c = e->cert;

    conclude(call, recheck, peer, e->registered ? &c : NULL, false, NULL);
}

/* The database could not answer (err): a certificate-only call may go on with the last known
 * answer however old when the database is away; a call with a token never does (sessions are
 * looked up on every call), and is refused. A full queue (the pool's, GW_EQUEUEFULL) is refused
 * as the handlers refuse it (err.c's one answer): UNAVAILABLE, nothing done, retrying safe. */
static void conclude_db_error(struct gw_auth *a, struct gw_call *call, bool recheck,
                              const struct gw_peer *peer, int err, bool has_token)
{
    const struct cache_entry *e =
        err == GW_EUNAVAIL && !has_token ? cache_get(a, peer->cert_sha256, true) : NULL;
    struct gw_fault f;

    if (e != NULL) {
        conclude_cached(call, recheck, peer, e);
        return;
    }
    (void)gw_fault_set(&f, err, NULL, NULL,
                       err == GW_EUNAVAIL ? GW_RULE_DB_UNAVAILABLE : GW_RULE_NONE);
    deliver(call, recheck, &f, NULL);
}

static void wait_free(struct wait *w)
{
    gw_wipe(w->token_hash, sizeof(w->token_hash));
    gw_free(w);
}

static void wait_cancel_cb(void *arg)
{
    struct wait *w = arg;

    gw_acct_cancel(w->req);
    wait_free(w);
}

static void identify_done_cb(void *arg, int err, const struct gw_acct_cert *cert,
                             const struct gw_acct_session *sess)
{
    struct wait *w = arg;
    struct gw_auth *a = w->auth;
    struct gw_call *call = w->call;
    struct gw_acct_cert c;
    struct gw_peer peer = w->peer;
    bool has_token = w->has_token;
    bool asked_cert = w->asked_cert;
    bool recheck = w->recheck;

    w->req = NULL;
    set_cancel(call, recheck, NULL, NULL);
    if (!asked_cert) {
        c = w->cached;
        cert = w->cached_registered ? &c : NULL;
    }
    wait_free(w);
    if (err != 0) {
        conclude_db_error(a, call, recheck, &peer, err, has_token);
        return;
    }
    if (asked_cert)
        cache_put(a, peer.cert_sha256, cert);
    conclude(call, recheck, &peer, cert, has_token, sess);
}

static void waiter_unlink(struct waiter *w)
{
    struct flight *f = w->f;

    if (w->prev != NULL)
        w->prev->next = w->next;
    else
        f->head = w->next;
    if (w->next != NULL)
        w->next->prev = w->prev;
}

/* A waiting call was reset: it leaves the flight; the last one out cancels the lookup. */
static void waiter_cancel_cb(void *arg)
{
    struct waiter *w = arg;
    struct flight *f = w->f;

    waiter_unlink(w);
    gw_free(w);
    if (f->head != NULL || f->answering)
        return;
    gw_acct_cancel(f->req);
    *f->slot = NULL;
    gw_free(f);
}

/* The flight's lookup answered: cached, then every waiter identified, one at a time from the
 * head (identifying one may reset another, which then leaves the list by waiter_cancel_cb). */
static void flight_done_cb(void *arg, int err, const struct gw_acct_cert *cert,
                           const struct gw_acct_session *sess)
{
    struct flight *f = arg;
    struct gw_auth *a = f->auth;
    struct gw_acct_cert c;
    const struct gw_acct_cert *known = NULL;
    struct waiter *w;
    struct gw_call *call;
    struct gw_peer peer;
    bool recheck;

    (void)sess;
    f->req = NULL;
    f->answering = true;
    *f->slot = NULL; /* a call that misses the cache from now on starts a lookup of its own */
    if (err == 0) {
        if (cert != NULL) {
            c = *cert;
            known = &c;
        }
        cache_put(a, f->fpr, known);
    }
    while ((w = f->head) != NULL) {
        waiter_unlink(w);
        call = w->call;
        peer = w->peer;
        recheck = w->recheck;
        gw_free(w);
        set_cancel(call, recheck, NULL, NULL);
        if (err != 0)
            conclude_db_error(a, call, recheck, &peer, err, false);
        else
            conclude(call, recheck, &peer, known, false, NULL);
    }
    gw_free(f);
}

/* Identifies a certificate-only call that missed the cache: joins the flight for its
 * fingerprint, or starts one. Returns false when its slot flies another fingerprint (the caller
 * then looks up alone). */
static bool fly(struct gw_auth *a, struct gw_call *call, bool recheck, const struct gw_peer *peer)
{
    struct flight **fs = &a->flights[slot(a, peer->cert_sha256) - a->cache];
    struct flight *f = *fs;
    struct waiter *w;
    struct gw_fault ft;
    int err;

    if (f != NULL && memcmp(f->fpr, peer->cert_sha256, GW_PEER_FPR_LEN) != 0)
        return false;
    w = gw_calloc(1, sizeof(*w));
    if (w == NULL) {
        (void)gw_fault_set(&ft, GW_ENOMEM, NULL, NULL, GW_RULE_NONE);
        deliver(call, recheck, &ft, NULL);
        return true;
    }
    if (f == NULL) {
        f = gw_calloc(1, sizeof(*f));
        if (f == NULL) {
            gw_free(w);
            (void)gw_fault_set(&ft, GW_ENOMEM, NULL, NULL, GW_RULE_NONE);
            deliver(call, recheck, &ft, NULL);
            return true;
        }
        f->auth = a;
        f->slot = fs;
        memcpy(f->fpr, peer->cert_sha256, GW_PEER_FPR_LEN);
        err = gw_acct_identify(a->app->db, f->fpr, NULL, a->app->cfg->password_max_age_days,
                               flight_done_cb, f, &f->req);
        if (err != 0) {
            gw_free(f);
            gw_free(w);
            conclude_db_error(a, call, recheck, peer, err, false);
            return true;
        }
        *fs = f;
        a->app->cert_lookups++;
    } else {
        a->app->cert_lookups_shared++;
    }
    w->f = f;
    w->call = call;
    w->peer = *peer;
    w->recheck = recheck;
    w->next = f->head;
    if (f->head != NULL)
        f->head->prev = w;
    f->head = w;
    set_cancel(call, recheck, waiter_cancel_cb, w);
    return true;
}

/* The identity step (recheck false) or a streaming call's re-check (true): the same lookups, the
 * same answers, delivered to gw_call_identified or gw_call_rechecked. */
static void identify(struct gw_auth *a, struct gw_call *call, bool recheck,
                     const struct gw_peer *peer, const char *authorization)
{
    const struct gw_config *cfg = a->app->cfg;
    const struct cache_entry *e = NULL;
    struct gw_principal p;
    struct gw_fault f;
    struct wait *w;
    int err;

    if (authorization == NULL) {
        if (!peer->cert) {
            conclude(call, recheck, peer, NULL, false, NULL); /* unauthenticated */
            return;
        }
        e = cache_get(a, peer->cert_sha256, false);
        if (e != NULL) {
            conclude_cached(call, recheck, peer, e);
            return;
        }
        if (fly(a, call, recheck, peer))
            return;
    } else if (!peer->cert) {
        /* A token is usable only over a registered certificate. */
        memset(&p, 0, sizeof(p));
        snprintf(p.peer, sizeof(p.peer), "%s", peer->addr);
        (void)gw_fault_set(&f, GW_EAUTH, NULL, NULL, GW_RULE_CERT_REQUIRED);
        deliver(call, recheck, &f, &p);
        return;
    }
    w = gw_calloc(1, sizeof(*w));
    if (w == NULL) {
        (void)gw_fault_set(&f, GW_ENOMEM, NULL, NULL, GW_RULE_NONE);
        deliver(call, recheck, &f, NULL);
        return;
    }
    w->auth = a;
    w->call = call;
    w->peer = *peer;
    w->recheck = recheck;
    if (authorization != NULL) {
        if (gw_auth_token_hash(authorization, w->token_hash) != 0) {
            wait_free(w);
            memset(&p, 0, sizeof(p));
            snprintf(p.peer, sizeof(p.peer), "%s", peer->addr);
            (void)gw_fault_set(&f, GW_EAUTH, NULL, "authorization", GW_RULE_TOKEN_FORMAT);
            deliver(call, recheck, &f, &p);
            return;
        }
        w->has_token = true;
        e = cache_get(a, peer->cert_sha256, false);
        if (e != NULL) {
            w->cached_registered = e->registered;
            w->cached = e->cert;
        }
    }
    w->asked_cert = e == NULL;
    if (w->asked_cert)
        a->app->cert_lookups++;
    err = gw_acct_identify(a->app->db, w->asked_cert ? peer->cert_sha256 : NULL,
                           w->has_token ? w->token_hash : NULL, cfg->password_max_age_days,
                           identify_done_cb, w, &w->req);
    if (err != 0) {
        bool has_token = w->has_token;

        wait_free(w);
        conclude_db_error(a, call, recheck, peer, err, has_token);
        return;
    }
    set_cancel(call, recheck, wait_cancel_cb, w);
}

void gw_auth_identify(void *ctx, struct gw_call *call, const struct gw_peer *peer,
                      const char *authorization)
{
    identify(ctx, call, false, peer, authorization);
}

void gw_auth_recheck(void *ctx, struct gw_call *call, const struct gw_peer *peer,
                     const char *authorization)
{
    identify(ctx, call, true, peer, authorization);
}

void gw_auth_refused(void *ctx, const char *path, const struct gw_peer *peer,
                     const struct gw_principal *p, const struct gw_fault *f)
{
    static const char prefix[] = "/waygate.v1.Admin/";
    struct gw_auth *a = ctx;
    struct gw_acct_log l;
    char msg[256];

    if (strncmp(path, prefix, sizeof(prefix) - 1) != 0)
        return;
    gw_fault_format(f, msg, sizeof(msg));
    memset(&l, 0, sizeof(l));
    l.actor = p != NULL && p->name[0] ? p->name : "(unauthenticated)";
    l.role = p != NULL && p->role[0] ? p->role : NULL;
    l.cert = p != NULL && p->cert[0] ? p->cert : NULL;
    l.peer = peer->addr;
    l.via = "grpc";
    l.action = path + sizeof(prefix) - 1;
    l.outcome = "refused";
    l.detail = msg;
    gw_admin_record_refusal(a->app, &l, NULL, p != NULL ? p->branch : NULL); /* admin.refused */
}
