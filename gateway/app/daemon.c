/* daemon.c: waygated's body: argv, config, process hardening, the event loop, signals and
 * teardown. Owns everything in struct gw_app, the policy, the dispatcher, the TLS context and the
 * server; frees them in reverse order of creation. Returns the exit status to main(), the only
 * place that exits. */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/event.h>

#include "accounts.h"
#include "api.h"
#include "api_auth.h"
#include "app.h"
#include "audit.h"
#include "audit_signer.h"
#include "clock.h"
#include "config.h"
#include "crypto.h"
#include "daemon.h"
#include "db.h"
#include "forward.h"
#include "incident.h"
#include "kekguard.h"
#include "keyring.h"
#include "log.h"
#include "memwipe.h"
#include "metrics.h"
#include "migrate.h"
#include "nodump.h"
#include "policy.h"
#include "refusals.h"
#include "retention.h"
#include "rpc.h"
#include "segcache.h"
#include "server.h"
#include "spool.h"
#include "store.h"
#include "throttle.h"
#include "tls.h"
#include "workers.h"
#include "wrapguard.h"

struct daemon {
    struct event_base *base;
    struct gw_server *server;
    struct gw_app *app;
    struct gw_rpc *rpc;
    struct gw_policy *policy; /* the daemon's reference to the current policy */
    const struct gw_daemon_ext *ext;
    const char *config_path;
    struct gw_config *cfg; /* the running config (app->cfg): a reload's files go into it */
    bool draining;
    struct event *sweep_ev;    /* the inactivity sweep's timer (Art. 38) */
    struct gw_acct_req *sweep; /* the sweep in flight, if any */
    struct gw_tls *tls;
    struct event *crl_ev;       /* [tls] crl_reload_ms */
    struct gw_forward *forward; /* the outbox forwarder ([forward] endpoint set), or NULL */
    struct gw_metrics *metrics; /* [metrics] listen set, or NULL */
    int drains;                 /* server and forwarder drains still running */
    uint64_t incidents_left;    /* incidents the drain could not write */
    bool refusals_redrained;    /* the audit drain ran again for a count queued at its end */
    struct gw_spool *spool;     /* [audit] spool set, or NULL */
    struct gw_kekguard *kek;    /* the keyring vouched for by the database (Art. 36) */
    struct gw_wrapguard *wraps; /* data-key wraps leased from the database (Art. 36) */
    int exit_status;            /* 0, or 2: the start was refused after the loop began */
    /* a SIGHUP's parts, loaded, while its keyring is checked against the database (reload_cb,
     * reload_end) */
    struct {
        struct gw_config nc; /* waygated.conf as the SIGHUP read it */
        struct gw_keyring *kr;
        struct gw_policy *np;
        struct gw_tls *nt;
        char keys[160], policy[96], from[512];
    } rl;
};

static void usage(void)
{
    fprintf(stderr, "usage: waygated -c FILE [--check-config]\n");
}

/* The policy of [policy] file (NULL: the built-in one), with the test build's extra rules. */
static int load_policy(const char *file, const struct gw_daemon_ext *ext, struct gw_policy **out,
                       char *err, size_t errsz)
{
    const struct gw_policy_method *rules = ext ? ext->rules : NULL;
    size_t nrules = ext ? ext->nrules : 0;

    if (file == NULL) {
        *out = gw_policy_new(rules, nrules);
        if (*out == NULL)
            snprintf(err, errsz, "cannot allocate the built-in policy");
        return *out != NULL ? 0 : GW_ENOMEM;
    }
    return gw_policy_load(file, rules, nrules, out, err, errsz);
}

/* SIGHUP, the policy: the new config's [policy] file parsed. Returns the new policy and where it
 * came from in `from`, or NULL with the reason logged and a summary in out (for the audit
 * record). */
static struct gw_policy *prepare_policy(struct daemon *d, const struct gw_config *nc, char *out,
                                        size_t outsz, char *from, size_t fromsz)
{
    struct gw_policy *np = NULL;
    char err[512];

    if (load_policy(nc->policy_file, d->ext, &np, err, sizeof(err)) != 0) {
        GW_LOG(GW_LOG_ERROR, "main", NULL, "SIGHUP: policy not reloaded, the running one stays: %s",
               err);
        snprintf(out, outsz, "policy: refused (policy file)");
        return NULL;
    }
    snprintf(out, outsz, "policy: %s",
             nc->policy_file != NULL ? "policy file" : "built-in default");
    snprintf(from, fromsz, "%s",
             nc->policy_file != NULL ? nc->policy_file : "the built-in default");
    return np;
}

/* Loads the keyring of cfg and chooses the suite of new records from [crypto] suite: refused
 * (GW_EPRECOND, message in err naming the rule and the path) when the keyring lacks that suite,
 * so the gateway never writes records under a suite it was not configured for. */
static int load_keyring(const struct gw_config *cfg, struct gw_keyring **out, char *err,
                        size_t errlen)
{
    enum gw_suite want = (enum gw_suite)cfg->crypto_suite;
    int rc = gw_keyring_file_load(cfg->keyring, out, err, errlen);
    if (rc != 0)
        return rc;
    if (gw_keyring_set_suite(*out, want) != 0) {
        snprintf(err, errlen,
                 "[crypto] suite = %s: keyring %s has no keys of the %s suite (add them with "
                 "`waygatectl keys add-suite --suite %s`)",
                 gw_suite_name(want), cfg->keyring, gw_suite_name(want), gw_suite_name(want));
        gw_keyring_free(*out);
        *out = NULL;
        return GW_EPRECOND;
    }
    return 0;
}

static void reload_recorded_cb(void *arg, int err, int64_t seq, const struct gw_db_result *res)
{
    (void)arg;
    (void)res;
    if (err != 0)
        GW_LOG(GW_LOG_ERROR, "main", NULL,
               "SIGHUP: the config.reload audit record was not "
               "written: %s",
               gw_err_str(err));
    else
        GW_LOG(GW_LOG_DEBUG, "main", NULL, "SIGHUP: config.reload recorded (seq %lld)",
               (long long)seq);
}

/* The reload's audit record (Art. 33): who sent the signal is not known to the process, so the
 * actor is the gateway itself; outcome ok (everything reloaded) or failed (nothing changed). */
static void record_reload(struct daemon *d, bool ok, const char *detail)
{
    struct gw_audit_rec r;

    memset(&r, 0, sizeof(r));
    r.actor = "gateway";
    r.peer = "local";
    r.action = "config.reload";
    r.object = "SIGHUP";
    r.count = -1;
    r.outcome = ok ? "ok" : "failed";
    r.detail = detail;
    if (gw_audit_write_kept(d->app->audit, NULL, 0, &r, 1, reload_recorded_cb, d) != 0)
        GW_LOG(GW_LOG_ERROR, "main", NULL, "SIGHUP: the config.reload audit record was not queued");
}

/* An incident about the CRL (Art. 17): the gateway is the actor. */
static void crl_incident(struct daemon *d, const char *kind, const char *severity,
                         const char *detail)
{
    struct gw_incident inc = {.severity = severity, .kind = kind, .principal = "waygated"};

    inc.detail = detail;
    if (gw_incident_record(d->app->incidents, &inc) != 0)
        GW_LOG(GW_LOG_ERROR, "main", NULL, "could not record the %s incident", kind);
}

/* Whose CRL: the listener's ([tls] crl: a past nextUpdate refuses every client) or the
 * forwarder's ([forward] crl: it refuses the backend, and deliveries wait in the outbox). */
struct crl_side {
    const char *key;                /* its configuration key: "[tls] crl", "[forward] crl" */
    const char *name;               /* "CRL", "[forward] CRL": the log's and incident's subject */
    const char *refused;            /* what a past nextUpdate refuses */
    const char *expired, *expiring; /* the incidents' kinds */
};
static const struct crl_side listener_crl = {"[tls] crl", "CRL", "every client certificate",
                                             "crl_expired", "crl_expiring"};
static const struct crl_side forward_crl = {
    "[forward] crl", "[forward] CRL", "the backend's certificate (deliveries wait in the outbox)",
    "forward_crl_expired", "forward_crl_expiring"};

/* After a CRL was read again: a nextUpdate within [tls] crl_warn_s is logged and recorded
 * (expiring, high), one already past too (expired, critical: OpenSSL refuses what the CRL covers
 * until a fresh one is published, the fail-closed choice, docs/operations.md). */
static void crl_check(struct daemon *d, const struct crl_side *side, const struct gw_tls_expiry *ex)
{
    char detail[160];

    if (!ex->has_crl || ex->crl_s == INT64_MIN) /* none, or no nextUpdate (--check-config) */
        return;
    if (ex->crl_s < 0) {
        GW_LOG(GW_LOG_ERROR, "main", NULL,
               "the %s's nextUpdate passed %lld s ago: %s is refused until a fresh CRL is "
               "published",
               side->name, (long long)-ex->crl_s, side->refused);
        snprintf(detail, sizeof(detail), "%s nextUpdate passed %lld s ago", side->name,
                 (long long)-ex->crl_s);
        crl_incident(d, side->expired, "critical", detail);
    } else if (ex->crl_s < (int64_t)d->app->cfg->crl_warn_s) {
        GW_LOG(GW_LOG_WARN, "main", NULL,
               "the %s's nextUpdate is in %lld s: publish a fresh CRL before then, or %s is "
               "refused",
               side->name, (long long)ex->crl_s, side->refused);
        snprintf(detail, sizeof(detail), "%s nextUpdate in %lld s", side->name,
                 (long long)ex->crl_s);
        crl_incident(d, side->expiring, "high", detail);
    }
}

/* After a TLS context was swapped in (SIGHUP, or every [tls] crl_reload_ms): connections whose
 * certificate the new CRL revokes are closed at once, and the CRL's nextUpdate is checked. */
static void tls_swapped(struct daemon *d, const char *why)
{
    struct gw_tls_expiry ex;
    size_t dropped = gw_server_drop_revoked(d->server);

    gw_metrics_reload_tls(d->metrics, d->app->cfg); /* [metrics] tls: the same files */
    GW_LOG(dropped > 0 ? GW_LOG_WARN : GW_LOG_DEBUG, "main", NULL,
           "%s: certificates and CRL reloaded; %zu connection(s) of revoked certificates closed",
           why, dropped);
    gw_tls_expiry(d->tls, &ex);
    crl_check(d, &listener_crl, &ex);
}

/* The TLS files (certificate, key, client CA, CRL) of cfg (the running config, or a SIGHUP's new
 * one) as they are now, or NULL with the reason logged (the context in force stays). */
static struct gw_tls *prepare_tls(const struct gw_config *cfg, const char *why)
{
    char err[512];
    struct gw_tls *t = gw_tls_new(cfg, err, sizeof(err));

    if (t == NULL)
        GW_LOG(GW_LOG_ERROR, "main", NULL, "%s: certificates and CRL refused: %s", why, err);
    return t;
}

/* The forwarder's client certificate, CA and [forward] crl read again (its own context: a
 * refusal keeps the one in force, logged; a connection to a backend the new CRL revokes is
 * dropped), and that CRL's nextUpdate checked. */
static const char *reload_forward_tls(struct daemon *d, const char *why)
{
    struct gw_tls_expiry ex;
    char err[512];

    if (d->forward == NULL)
        return "";
    if (gw_forward_reload_tls(d->forward, err, sizeof(err)) != 0) {
        GW_LOG(GW_LOG_ERROR, "main", NULL,
               "%s: [forward] certificates and CRL refused, the ones in force stay: %s", why, err);
        return "; forward tls: refused, the files in force stay";
    }
    gw_forward_tls_expiry(d->forward, &ex);
    crl_check(d, &forward_crl, &ex);
    return "; forward tls: certificates and CRL";
}

static void crl_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct daemon *d = arg;
    const uint32_t ms = d->app->cfg->crl_reload_ms;
    const struct timeval tv = gw_clock_tv(ms);

    (void)fd;
    (void)what;
    if (d->app->cfg->tls_crl != NULL) { /* each side reads its files again for its own CRL */
        struct gw_tls *t = prepare_tls(d->app->cfg, "timer");

        if (t != NULL) {
            gw_tls_swap(d->tls, t);
            tls_swapped(d, "timer");
        }
    }
    if (d->app->cfg->fwd_crl != NULL)
        (void)reload_forward_tls(d, "timer");
    evtimer_add(d->crl_ev, &tv);
}

/* SIGHUP: waygated.conf is read again; a key changed there that nothing applies after the start
 * (gw_config_restart_keys: listen addresses, pools, [database], [audit] chain, ...) refuses the
 * whole reload, each such key named. Then everything a reload covers is loaded first, from the
 * files the new config names: the keyring (a rotated KEK becomes current, a retired one goes
 * away), the policy (prepare_policy) and the TLS context (certificate, key, client CA, CRL). Only
 * when all of them load are they swapped in, together, and their paths put into the running
 * config (for the CRL timer, [metrics] tls and the next reload); otherwise nothing changes, and
 * the log and the config.reload audit record say which part was refused. Handlers
 * never keep the keyring across callbacks; calls already open keep the policy they started with;
 * established connections keep their TLS context. */
static void reload_end(struct daemon *d);

/* A KEK version of the keyring is another key than the database's (Art. 36): a critical line
 * and an incident. what: "refusing to start" or "the reload is refused, the running keyring
 * stays". */
static void kek_mismatch(struct daemon *d, const char *keyring, const char *msg, const char *what)
{
    struct gw_incident inc = {
        .severity = "critical", .kind = "kek_mismatch", .principal = "waygated", .detail = msg};

    GW_LOG(GW_LOG_ERROR, "main", NULL, "critical: [keys] keyring %s: %s: %s", keyring, msg, what);
    if (gw_incident_record(d->app->incidents, &inc) != 0)
        GW_LOG(GW_LOG_ERROR, "main", NULL, "could not record the kek_mismatch incident");
}

static void reload_leased_cb(void *arg)
{
    reload_end(arg);
}

/* The reload's keyring, when it brings another current KEK, leases data-key wraps under it
 * before the swap (wrapguard.h), so that no Submit after the swap finds none held; then
 * reload_end (at once when nothing is asked). */
static void reload_lease(struct daemon *d)
{
    if (d->rl.kr != NULL && d->rl.np != NULL && (d->tls == NULL || d->rl.nt != NULL) &&
        gw_wrapguard_prepare(d->wraps, d->rl.kr, reload_leased_cb, d) == 0)
        return; /* reload_leased_cb ends it */
    reload_end(d);
}

/* The SIGHUP's keyring checked against the database: swapped in with the rest, or the whole
 * reload refused. */
static void reload_checked_cb(void *arg, int outcome, const char *msg)
{
    struct daemon *d = arg;

    if (outcome != 0) {
        if (outcome == GW_EEXIST)
            kek_mismatch(d, d->rl.nc.keyring, msg,
                         "the reload is refused, the running keyring stays");
        else
            GW_LOG(GW_LOG_ERROR, "main", NULL, "SIGHUP: keyring refused: %s (%s)", msg,
                   gw_err_str(outcome));
        snprintf(d->rl.keys, sizeof(d->rl.keys), "keyring: refused (%s)",
                 outcome == GW_EEXIST ? "a KEK version is not the key the database knows"
                                      : "its new KEK versions could not be checked");
        gw_keyring_free(d->rl.kr);
        d->rl.kr = NULL;
    }
    reload_lease(d);
}

/* The keys of a SIGHUP's config that changed but need a restart: each logged, and listed for the
 * audit record. */
struct restart_keys {
    char list[300];
    size_t len;
};

static void restart_key_cb(void *arg, const char *section, const char *key)
{
    struct restart_keys *rk = arg;
    int n;

    GW_LOG(GW_LOG_ERROR, "main", NULL, "SIGHUP: [%s] %s changed, needs a restart", section, key);
    if (rk->len >= sizeof(rk->list))
        return;
    n = snprintf(rk->list + rk->len, sizeof(rk->list) - rk->len, "%s[%s] %s",
                 rk->len > 0 ? ", " : "", section, key);
    rk->len = n < 0 ? sizeof(rk->list) : rk->len + (size_t)n;
}

/* The SIGHUP's config read again and compared with the running one: 0, or -1 with the reload
 * refused (logged, recorded, nothing changed). */
static int reload_config(struct daemon *d)
{
    struct restart_keys rk = {.len = 0};
    char err[512], detail[400];
    size_t n;

    if (gw_config_load(d->config_path, &d->rl.nc, err, sizeof(err)) != 0) {
        GW_LOG(GW_LOG_ERROR, "main", NULL,
               "SIGHUP: nothing reloaded, the running configuration stays: %s", err);
        record_reload(d, false, "nothing reloaded: configuration: refused (see the log)");
        return -1;
    }
    n = gw_config_restart_keys(d->cfg, &d->rl.nc, restart_key_cb, &rk);
    if (n == 0)
        return 0;
    GW_LOG(GW_LOG_ERROR, "main", NULL,
           "SIGHUP: nothing reloaded, the running configuration stays: %zu key(s) changed that "
           "only a restart applies (%s)",
           n, rk.list);
    snprintf(detail, sizeof(detail), "nothing reloaded: changed, needs a restart: %s", rk.list);
    record_reload(d, false, detail);
    gw_config_clear(&d->rl.nc);
    return -1;
}

static void reload_cb(evutil_socket_t sig, short what, void *arg)
{
    struct daemon *d = arg;
    char err[512];

    (void)sig;
    (void)what;
    if (d->rl.kr != NULL || d->rl.np != NULL || d->rl.nt != NULL) {
        GW_LOG(GW_LOG_WARN, "main", NULL,
               "SIGHUP ignored: the previous reload's keyring is still being checked against the "
               "database (or is leasing its data-key wraps)");
        return;
    }
    if (reload_config(d) != 0)
        return;
    if (load_keyring(&d->rl.nc, &d->rl.kr, err, sizeof(err)) != 0) {
        GW_LOG(GW_LOG_ERROR, "main", NULL, "SIGHUP: keyring refused: %s", err);
        snprintf(d->rl.keys, sizeof(d->rl.keys),
                 "keyring: refused (keyring file or [crypto] suite)");
        d->rl.kr = NULL;
    } else {
        snprintf(d->rl.keys, sizeof(d->rl.keys), "keyring: current KEK version %u (suite %s)",
                 gw_keyring_current(d->rl.kr, gw_keyring_suite(d->rl.kr)),
                 gw_suite_name(gw_keyring_suite(d->rl.kr)));
    }
    d->rl.np = prepare_policy(d, &d->rl.nc, d->rl.policy, sizeof(d->rl.policy), d->rl.from,
                              sizeof(d->rl.from));
    d->rl.nt = d->tls != NULL ? prepare_tls(&d->rl.nc, "SIGHUP") : NULL;
    /* Art. 36: a KEK version the running keyring was not vouched for with (a rotation, another
     * key file) is checked against the database before anything is swapped in */
    if (d->rl.kr != NULL && d->rl.np != NULL && (d->tls == NULL || d->rl.nt != NULL) &&
        !gw_kekguard_covers(d->kek, d->rl.kr)) {
        int rc;

        if (gw_kekguard_busy(d->kek)) { /* the start's check, retried while the database is away */
            reload_checked_cb(d, GW_EUNAVAIL,
                              "the keyring loaded at start is not yet checked against the "
                              "database");
            return;
        }
        rc = gw_kekguard_check(d->kek, d->rl.kr, reload_checked_cb, d);
        if (rc == 0)
            return; /* reload_checked_cb ends it (perhaps already has) */
        reload_checked_cb(d, rc, "the keyring could not be checked against the database");
        return;
    }
    reload_lease(d);
}

/* The end of a SIGHUP: everything swapped in together, or nothing. */
static void reload_end(struct daemon *d)
{
    struct gw_keyring *kr = d->rl.kr;
    struct gw_policy *np = d->rl.np;
    struct gw_tls *nt = d->rl.nt;
    const char *keys = d->rl.keys, *policy = d->rl.policy, *from = d->rl.from;
    char detail[400];
    bool ok;

    d->rl.kr = NULL;
    d->rl.np = NULL;
    d->rl.nt = NULL;
    ok = kr != NULL && np != NULL && (d->tls == NULL || nt != NULL);
    snprintf(detail, sizeof(detail), "%s: %s; %s; tls: %s", ok ? "reloaded" : "nothing reloaded",
             keys, policy, d->tls == NULL || nt != NULL ? "certificates and CRL" : "refused");
    if (!ok) {
        GW_LOG(GW_LOG_ERROR, "main", NULL,
               "SIGHUP: nothing reloaded, the running configuration stays (%s)", detail);
        if (np != NULL)
            GW_LOG(GW_LOG_ERROR, "main", NULL,
                   "SIGHUP: policy not reloaded, the running one stays: another part of the "
                   "reload was refused");
        gw_keyring_free(kr);
        gw_policy_free(np);
        gw_tls_free(nt);
        gw_config_clear(&d->rl.nc);
        record_reload(d, false, detail);
        return;
    }
    /* the files just loaded are the running config's now: the CRL timer, [metrics] tls and the
     * next SIGHUP read these (the other keys are the same: reload_config) */
    gw_config_take_reloaded(d->cfg, &d->rl.nc);
    gw_config_clear(&d->rl.nc);
    d->app->kek_retired_reported = false; /* a new keyring: a retired version is news again */
    d->app->keys_generation++;
    gw_keyring_free(d->app->keys);
    d->app->keys = kr;
    gw_crypto_forget(d->app->crypto); /* its cached copies of the old keys (issue 10, finding 7) */
    /* a new current KEK: its own wraps, leased anew (the old lease's unused part is wasted) */
    if (gw_wrapguard_keyring(d->wraps) != 0)
        GW_LOG(GW_LOG_ERROR, "main", NULL,
               "SIGHUP: no lease of data-key wraps can be asked: Submit is refused UNAVAILABLE");
    gw_rpc_set_policy(d->rpc, np);
    if (d->forward != NULL)
        gw_forward_set_policy(d->forward, np);
    gw_policy_free(d->policy);
    d->policy = np;
    GW_LOG(GW_LOG_INFO, "main", NULL, "SIGHUP: policy reloaded from %s", from);
    GW_LOG(GW_LOG_INFO, "main", NULL, "SIGHUP: %s reloaded", keys);
    if (nt != NULL) {
        gw_tls_swap(d->tls, nt);
        tls_swapped(d, "SIGHUP");
    }
    /* the forwarder's context is its own: refused, it keeps the one in force, and the record
     * says so (the rest was reloaded) */
    {
        size_t len = strlen(detail);
        snprintf(detail + len, sizeof(detail) - len, "%s", reload_forward_tls(d, "SIGHUP"));
    }
    GW_LOG(GW_LOG_INFO, "main", NULL, "SIGHUP: %s", detail);
    record_reload(d, true, detail);
}

/* SIGUSR1: the log file again (after a rotation renamed it); without [log] file, stderr stays. */
static void reopen_cb(evutil_socket_t sig, short what, void *arg)
{
    struct daemon *d = arg;
    const char *file = d->app->cfg->log_file;

    (void)sig;
    (void)what;
    if (file == NULL) {
        GW_LOG(GW_LOG_INFO, "main", NULL, "SIGUSR1: no [log] file: logging to stderr as before");
        return;
    }
    if (gw_log_open(file) != 0) {
        GW_LOG(GW_LOG_ERROR, "main", NULL, "SIGUSR1: cannot reopen %s: logging where it was", file);
        return;
    }
    GW_LOG(GW_LOG_INFO, "main", NULL, "SIGUSR1: log reopened");
}

static void sweep_start(struct daemon *d);

static void swept_cb(void *arg, int err, const char *const *names, size_t n, size_t purged)
{
    struct daemon *d = arg;

    d->sweep = NULL;
    if (purged > 0)
        GW_LOG(GW_LOG_INFO, "main", NULL, "%zu expired sessions deleted", purged);
    if (err != 0) {
        GW_LOG(GW_LOG_WARN, "main", NULL, "inactive-account sweep failed (%s): retried later",
               gw_err_str(err));
        return;
    }
    for (size_t i = 0; i < n; i++)
        GW_LOG(GW_LOG_INFO, "main", NULL,
               "account %s disabled: unused for more than %u days (Art. 38)", names[i],
               d->app->cfg->inactive_disable_days);
}

/* Deletes expired sessions and disables accounts unused for inactive_disable_days (0: only the
 * former), one sweep at a time. */
static void sweep_start(struct daemon *d)
{
    int err;

    if (d->sweep != NULL)
        return;
    err = gw_acct_sweep_inactive(d->app->db, d->app->audit, d->app->cfg->inactive_disable_days,
                                 swept_cb, d, &d->sweep);
    if (err != 0)
        GW_LOG(GW_LOG_DEBUG, "main", NULL, "inactive-account sweep not started (%s)",
               gw_err_str(err));
}

/* The sweep's timer: the first run soon after start (once the database pool connects), then
 * every inactive_check_ms. */
static void sweep_cb(evutil_socket_t fd, short what, void *arg)
{
    struct daemon *d = arg;
    uint32_t ms = d->app->cfg->inactive_check_ms;
    struct timeval tv;

    (void)fd;
    (void)what;
    if (!gw_db_ready(d->app->db)) {
        ms = 200; /* not connected yet: try again shortly */
    } else
        sweep_start(d);
    tv = gw_clock_tv(ms);
    if (evtimer_add(d->sweep_ev, &tv) != 0)
        GW_LOG(GW_LOG_ERROR, "main", NULL, "inactive-account sweep timer not set");
}

/* The audit chain of this instance: [audit] chain, or "gw-<host>-<port>" (hostname characters
 * outside the chain-id alphabet become '-'). */
static int start_audit(struct daemon *d, struct gw_app *app, const char *path)
{
    const struct gw_config *cfg = app->cfg;
    char chain[65], host[64] = "host", h[128];
    uint16_t port = 0;
    struct gw_audit_config ac;
    int err;

    if (cfg->audit_chain != NULL) {
        snprintf(chain, sizeof chain, "%s", cfg->audit_chain);
    } else {
        if (gethostname(host, sizeof host) != 0)
            snprintf(host, sizeof host, "host");
        host[sizeof host - 1] = '\0';
        for (char *c = host; *c; c++)
            if (!isalnum((unsigned char)*c) && *c != '.' && *c != '_' && *c != '-')
                *c = '-';
        if (gw_config_split_hostport(cfg->listen, h, sizeof h, &port) != 0)
            port = 0;
        snprintf(chain, sizeof chain, "gw-%.40s-%u", host, (unsigned)port);
    }
    struct gw_sign_key key, other;
    int has_key = gw_audit_signer(app->keys, &key);
    /* with one suite, only its own key's writer MACs are taken */
    bool two_suites = gw_audit_signer_other(app->keys, &other) == 0;
    ac = (struct gw_audit_config){.chain = chain,
                                  .checkpoint_every = cfg->checkpoint_every,
                                  .queue_max = cfg->audit_queue_max,
                                  .checkpoint_ms = cfg->checkpoint_ms,
                                  .alg = key.alg,
                                  .seed = key.seed,
                                  .other_alg = other.alg,
                                  .other_seed = two_suites ? other.seed : NULL};
    if (has_key != 0) {
        enum gw_suite suite = gw_keyring_suite(app->keys);
        GW_LOG(GW_LOG_ERROR, "main", NULL,
               "%s: [keys] keyring has no %s audit signing key (line \"%saudit <base64>\"), "
               "which signs audit checkpoints (%s) under [crypto] suite = %s: `waygatectl keys "
               "rotate --suite %s` adds it",
               path, gw_suite_name(suite), suite == GW_SUITE_SM ? "sm." : "",
               suite == GW_SUITE_SM ? "SM2" : "Ed25519", gw_suite_name(suite),
               gw_suite_name(suite));
        return -1;
    }
    err = gw_audit_new(app->db, &ac, &app->audit);
    /* a spool's entries in doubt are handed over before the first recovery, which settles them */
    if (err == 0 && gw_spool_start(app, &d->spool) != 0)
        return -1;
    if (err == 0)
        err = gw_audit_start(app->audit);
    if (err != 0) {
        GW_LOG(GW_LOG_ERROR, "main", NULL, "%s: [audit] chain \"%s\": %s", path, chain,
               err == GW_EINVAL    ? "must match ^[A-Za-z0-9._:@-]{1,64}$ and not be \"ctl\" "
                                     "(waygatectl's)"
               : err == GW_ECRYPTO ? "the writer-MAC keys could not be derived from the "
                                     "keyring's audit keys"
                                   : gw_err_str(err));
        return -1;
    }
    return 0;
}

/* --check-config, the files a start would load beyond the keyring and the policy (loaded by the
 * caller): the log file, the audit signing key of the suite, the server's certificate, key
 * (matching it), client CA and CRL, and the forwarder's; the certificates not expired, the CRL's
 * nextUpdate not past. Binds nothing, connects to nothing. Returns 0, or -1 with one line on stderr
 * naming the file. */
static int check_tls_expiry(const char *path, const char *what, const char *file,
                            const struct gw_tls *t, const struct crl_side *crl,
                            const char *crl_file)
{
    struct gw_tls_expiry ex;

    gw_tls_expiry(t, &ex);
    if (ex.cert_s < 0) {
        fprintf(stderr, "%s: %s %s: the certificate has expired (%s)\n", path, what, file,
                ex.cert_s == INT64_MIN ? "no valid notAfter" : "notAfter is past");
        return -1;
    }
    if (ex.has_crl && ex.crl_s < 0) {
        fprintf(stderr,
                "%s: %s %s: nextUpdate is past (%s): %s would be refused until a fresh CRL is "
                "published\n",
                path, crl->key, crl_file, ex.crl_s == INT64_MIN ? "none" : "expired", crl->refused);
        return -1;
    }
    return 0;
}

/* [log] file: appendable as it stands, or creatable in an existing directory the daemon may
 * write (nothing is created here). 0, or -1 with the reason on stderr. */
static int check_log_file(const char *path, const char *file)
{
    struct stat st;
    char dir[PATH_MAX];
    const char *slash;

    if (stat(file, &st) == 0) {
        if (!S_ISREG(st.st_mode)) {
            fprintf(stderr, "%s: [log] file %s: not a regular file\n", path, file);
            return -1;
        }
        if (access(file, W_OK) != 0) {
            fprintf(stderr, "%s: [log] file %s: cannot be opened for appending (%s)\n", path, file,
                    strerror(errno));
            return -1;
        }
        return 0;
    }
    slash = strrchr(file, '/');
    if (slash == NULL || (size_t)(slash - file) >= sizeof dir) {
        fprintf(stderr, "%s: [log] file %s: must be an absolute path\n", path, file);
        return -1;
    }
    memcpy(dir, file, (size_t)(slash - file));
    dir[slash - file] = '\0';
    if (dir[0] == '\0')
        snprintf(dir, sizeof dir, "/");
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode) || access(dir, W_OK | X_OK) != 0) {
        fprintf(stderr, "%s: [log] file %s: its directory %s %s\n", path, file, dir,
                stat(dir, &st) != 0 || !S_ISDIR(st.st_mode) ? "does not exist" : "is not writable");
        return -1;
    }
    return 0;
}

static int check_files(const struct gw_config *cfg, const char *path, struct gw_keyring *keys)
{
    struct gw_sign_key key;
    struct gw_tls *t;
    char err[512];
    int rc;

    if (cfg->log_file != NULL && check_log_file(path, cfg->log_file) != 0)
        return -1;
    if (gw_audit_signer(keys, &key) != 0) {
        fprintf(stderr,
                "%s: [keys] keyring %s: no %s audit signing key (`waygatectl keys rotate "
                "--suite %s` adds it)\n",
                path, cfg->keyring, gw_suite_name(gw_keyring_suite(keys)),
                gw_suite_name(gw_keyring_suite(keys)));
        return -1;
    }
    t = gw_tls_new(cfg, err, sizeof(err));
    if (t == NULL) {
        fprintf(stderr, "%s: [tls]: %s\n", path, err);
        return -1;
    }
    rc = check_tls_expiry(path, "[tls] cert", cfg->tls_cert, t, &listener_crl, cfg->tls_crl);
    gw_tls_free(t);
    if (rc != 0 || cfg->fwd_endpoint == NULL)
        return rc;
    t = gw_tls_client_new(cfg->fwd_ca, cfg->fwd_cert, cfg->fwd_key, cfg->fwd_crl, err, sizeof(err));
    if (t == NULL) {
        fprintf(stderr, "%s: [forward]: %s\n", path, err);
        return -1;
    }
    rc = check_tls_expiry(path, "[forward] cert", cfg->fwd_cert, t, &forward_crl, cfg->fwd_crl);
    gw_tls_free(t);
    return rc;
}

static void audit_flushed_cb(void *arg, uint64_t left)
{
    struct daemon *d = arg;
    uint64_t refusals = gw_refusals_left(d->app->refusals), spooled = 0, kept = 0, lost = 0;
    bool none = left == 0 && d->incidents_left == 0 && refusals == 0;
    char held[96] = ""; /* what the spool read at start still holds, when not replaced */

    /* the writer is empty, and a count its queue refused waits for its next try: written now,
     * and drained once more for it (the drain's end does not wait for that try) */
    if (left == 0 && !d->refusals_redrained && gw_refusals_retry_now(d->app->refusals)) {
        d->refusals_redrained = true;
        gw_audit_drain(d->app->audit, d->app->cfg->drain_timeout_ms, audit_flushed_cb, d);
        return;
    }
    if (d->spool == NULL) {
        GW_LOG(none ? GW_LOG_INFO : GW_LOG_ERROR, "main", NULL,
               "drained: exiting, %llu incident(s) not written, %llu audit entr%s not written, "
               "%llu counted refusal(s) not recorded",
               (unsigned long long)d->incidents_left, (unsigned long long)left,
               left == 1 ? "y" : "ies", (unsigned long long)refusals);
        event_base_loopexit(d->base, NULL);
        return;
    }
    /* what the database did not take waits in the spool for the next start */
    gw_spool_stop(d->spool, d->app, &spooled, &kept, &lost);
    if (kept > 0)
        snprintf(held, sizeof held, ", %llu kept in it as read at start", (unsigned long long)kept);
    lost += gw_refusals_left(d->app->refusals); /* counted refusals the spool did not take */
    GW_LOG(lost > 0                  ? GW_LOG_ERROR
           : spooled > 0 || kept > 0 ? GW_LOG_WARN
                                     : GW_LOG_INFO,
           "main", NULL,
           "drained: exiting, %llu incident(s) not written, %llu audit entr%s not written, "
           "%llu counted refusal(s) not recorded: %llu entr%s spooled to %s, %llu lost%s",
           (unsigned long long)d->incidents_left, (unsigned long long)left, left == 1 ? "y" : "ies",
           (unsigned long long)refusals, (unsigned long long)spooled, spooled == 1 ? "y" : "ies",
           gw_spool_path(d->spool), (unsigned long long)lost, held);
    event_base_loopexit(d->base, NULL);
}

static void incidents_flushed_cb(void *arg, uint64_t left)
{
    struct daemon *d = arg;

    d->incidents_left = left;
    gw_audit_drain(d->app->audit, d->app->cfg->drain_timeout_ms, audit_flushed_cb, d);
}

/* The calls are done: the refusals counted are recorded, and queued incidents and audit entries
 * get drain_timeout_ms more each to be written. */
static void drained_cb(void *arg)
{
    struct daemon *d = arg;

    if (--d->drains > 0) /* the server's calls and the forwarder's deliveries in flight */
        return;
    gw_refusals_flush(d->app->refusals);
    gw_incident_drain(d->app->incidents, d->app->cfg->drain_timeout_ms, incidents_flushed_cb, d);
}

/* The calls in flight end, then the queues are written (drained_cb), then the loop exits. */
static void start_drain(struct daemon *d)
{
    d->draining = true;
    d->app->draining = true; /* Health/Watch streams say NOT_SERVING and end */
    d->drains = d->forward != NULL ? 2 : 1;
    if (d->forward != NULL)
        gw_forward_drain(d->forward, drained_cb, d);
    gw_server_drain(d->server, drained_cb, d);
}

static void signal_cb(evutil_socket_t sig, short what, void *arg)
{
    struct daemon *d = arg;

    (void)what;
    if (d->draining) {
        GW_LOG(GW_LOG_WARN, "main", NULL, "second signal %d: stopping now", (int)sig);
        event_base_loopbreak(d->base);
        return;
    }
    GW_LOG(GW_LOG_INFO, "main", NULL, "signal %d: draining", (int)sig);
    start_drain(d);
}

/* The keyring loaded at start checked against the database (Art. 36): serving, or the start
 * refused (a critical line and an incident, then the drain that writes it, and exit status 2). */
static void kek_started_cb(void *arg, int outcome, const char *msg)
{
    struct daemon *d = arg;

    if (outcome == 0) {
        GW_LOG(GW_LOG_INFO, "main", NULL,
               "keyring: its KEK versions are the ones the database knows");
        return;
    }
    kek_mismatch(d, d->app->cfg->keyring, msg, "refusing to start");
    d->exit_status = 2;
    if (!d->draining)
        start_drain(d);
}

int gw_daemon_main(int argc, char **argv, const struct gw_daemon_ext *ext)
{
    struct gw_config cfg;
    struct gw_app app;
    struct daemon d;
    struct gw_tls *tls = NULL;
    struct gw_policy *policy = NULL;
    struct gw_rpc *rpc = NULL;
    struct gw_auth *auth = NULL;
    struct gw_retention *retention = NULL;
    struct gw_metrics *metrics = NULL;
    struct gw_h2_upcalls up;
    struct event *sigterm = NULL, *sigint = NULL, *sighup = NULL, *sigusr1 = NULL;
    const char *path = NULL;
    bool check_only = false;
    char err[512];
    char addr[128], iaddr[128];
    int status = 1;

    memset(&cfg, 0, sizeof(cfg));
    memset(&app, 0, sizeof(app));
    memset(&d, 0, sizeof(d));
    gw_memwipe_install(); /* before libevent allocates anything */
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-c") == 0 && i + 1 < argc)
            path = argv[++i];
        else if (strcmp(argv[i], "--check-config") == 0)
            check_only = true;
        else {
            usage();
            return 2;
        }
    }
    if (path == NULL) {
        usage();
        return 2;
    }
    if (gw_nodump() != 0) { /* memory holds PII and keys: nodump.h */
        fprintf(stderr, "waygated: cannot disable core dumps\n");
        return 1;
    }
    if (gw_config_load(path, &cfg, err, sizeof(err)) != 0) {
        fprintf(stderr, "%s\n", err);
        return 2;
    }
    /* The password-hashing process is forked first, before any key is read: it holds nothing
     * but the configuration. */
    if (!check_only) {
        app.workers = gw_workers_new(cfg.auth_workers, GW_API_AUTH_QUEUE, GW_API_AUTH_ARG_MAX,
                                     cfg.auth_worker_cgroup, cfg.auth_worker_filter_required);
        if (app.workers == NULL) {
            fprintf(stderr, "waygated: cannot start the password-hashing process\n");
            gw_config_clear(&cfg);
            return 1;
        }
    }
    if (load_keyring(&cfg, &app.keys, err, sizeof(err)) != 0) {
        fprintf(stderr, "%s: [keys] keyring: %s\n", path, err);
        gw_workers_free(app.workers);
        gw_config_clear(&cfg);
        return 2;
    }
    if (load_policy(cfg.policy_file, ext, &policy, err, sizeof(err)) != 0) {
        fprintf(stderr, "%s: [policy] file: %s\n", path, err);
        gw_workers_free(app.workers);
        gw_keyring_free(app.keys);
        gw_config_clear(&cfg);
        return 2;
    }
    d.policy = policy;
    if (check_only) {
        int rc = check_files(&cfg, path, app.keys) == 0 ? 0 : 2;
        if (rc == 0)
            printf("%s: ok\n", path);
        gw_policy_free(policy);
        gw_keyring_free(app.keys);
        gw_config_clear(&cfg);
        return rc;
    }
    gw_log_level = cfg.log_level;
    if (cfg.log_file != NULL && gw_log_open(cfg.log_file) != 0) {
        fprintf(stderr, "%s: [log] file: cannot open %s for appending\n", path, cfg.log_file);
        goto out;
    }
    if (signal(SIGPIPE, SIG_IGN) == SIG_ERR)
        goto out;
    gw_log_route_libevent();

    d.base = gw_clock_loop_new();
    if (d.base == NULL) {
        GW_LOG(GW_LOG_ERROR, "main", NULL, "cannot create the event loop");
        goto out;
    }
    app.cfg = &cfg;
    app.base = d.base;
    d.app = &app;
    app.crypto = gw_crypto_new();
    if (app.crypto == NULL) {
        GW_LOG(GW_LOG_ERROR, "main", NULL, "cannot initialise the crypto context");
        goto out;
    }
    app.db = gw_db_new(d.base, &cfg);
    /* a database not migrated for this build is not used: its statements would fail on what
     * the migrations add, each with a bare SQLSTATE */
    if (app.db == NULL ||
        gw_db_set_schema_min(app.db, gw_migrate_newest(gw_migrations, gw_migrations_count)) != 0 ||
        gw_db_start(app.db) != 0) {
        GW_LOG(GW_LOG_ERROR, "main", NULL, "cannot create the database pool");
        goto out;
    }
    if (start_audit(&d, &app, path) != 0)
        goto out;
    app.store = gw_store_new(app.db);
    app.segs = app.store != NULL ? gw_segcache_new(app.store, cfg.segment_refresh_ms) : NULL;
    app.incidents =
        gw_incident_new(app.db, app.audit, cfg.incident_queue_max, cfg.db_reconnect_max_ms);
    app.throttle = gw_throttle_new(cfg.lookup_throttle_principals, cfg.lookup_throttle_keys);
    app.refusals = gw_refusals_new(d.base, app.audit, NULL, cfg.refusal_window_s);
    if (app.segs == NULL || app.incidents == NULL || app.throttle == NULL || app.refusals == NULL) {
        GW_LOG(GW_LOG_ERROR, "main", NULL, "cannot create the store");
        goto out;
    }
    /* Art. 36: nothing is sealed until the database vouched for the keyring (kekguard.h) */
    d.kek = gw_kekguard_new(&app, gw_audit_chain(app.audit));
    if (d.kek == NULL || gw_kekguard_start(d.kek, kek_started_cb, &d) != 0) {
        GW_LOG(GW_LOG_ERROR, "main", NULL,
               "cannot check the keyring's KEK versions against the database");
        goto out;
    }
    /* Art. 36: no data key is wrapped but against a lease of the database's (wrapguard.h) */
    d.wraps = gw_wrapguard_new(&app);
    if (d.wraps == NULL || gw_wrapguard_keyring(d.wraps) != 0) {
        GW_LOG(GW_LOG_ERROR, "main", NULL, "cannot lease data-key wraps from the database");
        goto out;
    }
    gw_spool_incident(d.spool, &app);
    {
        /* the retention sweep (Art. 26): destroys what outlived [compliance] retention_days */
        struct gw_retention_config rc = {.days = cfg.retention_days,
                                         .sweep_ms = cfg.retention_sweep_ms,
                                         .batch = cfg.retention_batch};
        if (gw_retention_new(d.base, app.store, app.audit, &rc, &retention) != 0 ||
            gw_retention_start(retention) != 0) {
            GW_LOG(GW_LOG_ERROR, "main", NULL, "cannot start the retention sweep");
            goto out;
        }
    }
    auth = gw_auth_new(&app);
    if (gw_workers_attach(app.workers, d.base) != 0 || auth == NULL) {
        GW_LOG(GW_LOG_ERROR, "main", NULL, "cannot start the password-hashing workers");
        goto out;
    }
    tls = gw_tls_new(&cfg, err, sizeof(err));
    if (tls == NULL) {
        GW_LOG(GW_LOG_ERROR, "main", NULL, "%s", err);
        goto out;
    }
    {
        struct gw_rpc_params rp = {
            .cfg = &cfg,
            .base = d.base,
            .app = &app,
            .methods = ext && ext->methods ? ext->methods : gw_api_methods(),
            .policy = policy,
            /* registered principals and account sessions (the subject rule of identity.c is
             * only the unit tests' default) */
            .identify = gw_auth_identify,
            .identify_ctx = auth,
            .recheck = gw_auth_recheck,
            .refused = gw_auth_refused,
            .refused_ctx = auth,
            /* a certificate's share of the database queue (api_share.c) */
            .admit = gw_api_share_admit,
            .within = gw_api_share_within,
            .share_ctx = &app,
        };
        rpc = gw_rpc_new(&rp);
    }
    d.rpc = rpc;
    d.ext = ext;
    d.config_path = path;
    d.cfg = &cfg;
    if (rpc == NULL) {
        GW_LOG(GW_LOG_ERROR, "main", NULL, "cannot create the dispatcher");
        goto out;
    }
    up = gw_rpc_upcalls(rpc);
    d.server = gw_server_new(&cfg, d.base, tls, &up, err, sizeof(err));
    if (d.server == NULL) {
        GW_LOG(GW_LOG_ERROR, "main", NULL, "%s", err);
        goto out;
    }
    d.tls = tls;
    /* with no CRL yet too: a SIGHUP may add [tls] crl, which the timer then reads again */
    if (cfg.crl_reload_ms > 0) {
        d.crl_ev = evtimer_new(d.base, crl_timer_cb, &d);
        if (d.crl_ev == NULL) {
            GW_LOG(GW_LOG_ERROR, "main", NULL, "cannot create the CRL reload timer");
            goto out;
        }
        event_active(d.crl_ev, EV_TIMEOUT, 0); /* the expiry check at start, then periodic */
    }
    if (cfg.fwd_endpoint != NULL) {
        /* the outbox forwarder (Deliver to the carrier backend); without an endpoint the outbox
         * only fills, nothing is lost */
        d.forward = gw_forward_new(&app, policy, NULL, err, sizeof(err));
        if (d.forward == NULL) {
            GW_LOG(GW_LOG_ERROR, "main", NULL, "%s: [forward]: %s", path, err);
            goto out;
        }
    }
    d.sweep_ev = evtimer_new(d.base, sweep_cb, &d);
    if (d.sweep_ev == NULL) {
        GW_LOG(GW_LOG_ERROR, "main", NULL, "cannot create the inactive-account sweep timer");
        goto out;
    }
    event_active(d.sweep_ev, EV_TIMEOUT, 0); /* the first sweep at start */
    sigterm = evsignal_new(d.base, SIGTERM, signal_cb, &d);
    sigint = evsignal_new(d.base, SIGINT, signal_cb, &d);
    sighup = evsignal_new(d.base, SIGHUP, reload_cb, &d);
    sigusr1 = evsignal_new(d.base, SIGUSR1, reopen_cb, &d);
    if (sigterm == NULL || sigint == NULL || sighup == NULL || sigusr1 == NULL ||
        evsignal_add(sigterm, NULL) != 0 || evsignal_add(sigint, NULL) != 0 ||
        evsignal_add(sighup, NULL) != 0 || evsignal_add(sigusr1, NULL) != 0) {
        GW_LOG(GW_LOG_ERROR, "main", NULL, "cannot install signal handlers");
        goto out;
    }
    if (cfg.metrics_listen != NULL) {
        struct gw_metrics_sources ms = {
            .app = &app,
            .rpc = rpc,
            .server = d.server,
            .tls = tls,
            .forward = d.forward,
            .retention = retention,
        };
        metrics = gw_metrics_new(d.base, &cfg, &ms, err, sizeof(err));
        if (metrics == NULL) {
            GW_LOG(GW_LOG_ERROR, "main", NULL, "%s: [metrics]: %s", path, err);
            goto out;
        }
        d.metrics = metrics;
    }
    gw_server_address(d.server, 0, addr, sizeof(addr));
    gw_server_address(d.server, 1, iaddr, sizeof(iaddr));
    GW_LOG(GW_LOG_INFO, "main", NULL, "listening: tls %s%s%s", addr,
           iaddr[0] ? ", insecure loopback " : "", iaddr);
    if (event_base_dispatch(d.base) < 0) {
        GW_LOG(GW_LOG_ERROR, "main", NULL, "event loop failed");
        goto out;
    }
    status = d.exit_status;
out:
    /* Reverse order of creation: no call runs once the server is gone, so the identity
     * registry and the workers (whose done functions reach calls) go after it; the
     * password-hashing process is killed and reaped there. */
    if (d.sweep_ev != NULL)
        event_free(d.sweep_ev);
    if (d.crl_ev != NULL)
        event_free(d.crl_ev);
    gw_acct_cancel(d.sweep);
    if (sigterm != NULL)
        event_free(sigterm);
    if (sigint != NULL)
        event_free(sigint);
    if (sighup != NULL)
        event_free(sighup);
    if (sigusr1 != NULL)
        event_free(sigusr1);
    gw_metrics_free(metrics);
    gw_server_free(d.server);
    gw_forward_free(d.forward);
    gw_rpc_free(rpc);
    gw_policy_free(d.policy);
    gw_tls_free(tls);
    gw_auth_free(auth);
    gw_workers_free(app.workers);
    gw_segcache_free(app.segs);
    gw_incident_free(app.incidents);
    gw_retention_free(retention);
    gw_throttle_free(app.throttle);
    gw_store_free(app.store);
    gw_refusals_free(app.refusals);
    gw_audit_free(app.audit);
    gw_spool_free(d.spool); /* after the writer: its replay's entries never call back now */
    gw_kekguard_free(d.kek);
    gw_wrapguard_free(d.wraps);
    gw_keyring_free(d.rl.kr); /* a reload still waiting for its check */
    gw_policy_free(d.rl.np);
    gw_tls_free(d.rl.nt);
    gw_config_clear(&d.rl.nc);
    gw_db_free(app.db);
    gw_crypto_free(app.crypto);
    gw_keyring_free(app.keys);
    if (d.base != NULL)
        event_base_free(d.base);
    gw_config_clear(&cfg);
    return status;
}
