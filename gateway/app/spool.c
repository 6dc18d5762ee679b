/* spool.c: the daemon's audit spool (spool.h). Owns the replay of the file read at start; the
 * spool keys are derived from the keyring each time they are needed (at start to read, at
 * shutdown to write: the keyring a reload installed), never kept. */
#include "spool.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>

#include "alloc.h"
#include "app.h"
#include "audit.h"
#include "audit_replay.h"
#include "audit_signer.h"
#include "audit_spool.h"
#include "config.h"
#include "file.h"
#include "incident.h"
#include "log.h"
#include "refusals.h"

struct gw_spool {
    const char *path; /* the config's */
    struct gw_audit_replay *replay;
    char rejected[4400]; /* the incident's detail when the file was rejected, else "" */
};

/* Stops' worth of entries a file may carry: a file read at start whose entries the database
 * did not take is written again at the stop with that run's own, so a gateway stopped and
 * started during one outage grows it, as does a queue made smaller across a restart (review). */
#define SPOOL_CARRY 4

/* What a file may hold, read or written (so one written can be read): SPOOL_CARRY times every
 * entry the writer's queue, the incident queue (and its by-kind rows) and the refusals' kinds can
 * leave. */
static size_t cap_of(const struct gw_config *cfg)
{
    return gw_audit_spool_cap(SPOOL_CARRY *
                              ((size_t)cfg->audit_queue_max + cfg->incident_queue_max +
                               GW_INCIDENT_KINDS_MAX + GW_REFUSALS_KINDS + 1));
}

/* The spool keys of the keyring's audit keys: its suite's first (which writes), the other
 * suite's too during a suite migration. Returns 0 or GW_ECRYPTO. */
static int keys_of(struct gw_app *app, struct gw_audit_mac_keys *k)
{
    struct gw_sign_key key;

    memset(k, 0, sizeof *k);
    if (gw_audit_signer(app->keys, &key) != 0 || gw_audit_spool_keys_add(app->crypto, k, &key) != 0)
        return GW_ECRYPTO;
    if (gw_audit_signer_other(app->keys, &key) == 0 &&
        gw_audit_spool_keys_add(app->crypto, k, &key) != 0)
        return GW_ECRYPTO;
    return 0;
}

/* The files moved aside that are kept, the newest: a file planted before each start cannot fill
 * the directory. */
#define REJECTED_KEEP 4

/* Moves a file that failed its check aside, says so, and keeps the incident's detail. */
static int reject(struct gw_spool *s, const char *why)
{
    char aside[4200], err[4400];

    if (gw_audit_spool_reject(s->path, (long long)time(NULL), REJECTED_KEEP, aside, sizeof aside,
                              err, sizeof err) != 0) {
        GW_LOG(GW_LOG_ERROR, "audit", NULL,
               "critical: spool %s is refused (%s) and cannot be moved aside (%s): not "
               "starting, as the next stop would replace it; move it aside by hand",
               s->path, why, err);
        return -1;
    }
    GW_LOG(GW_LOG_ERROR, "audit", NULL,
           "critical: spool refused, not replayed: %s; moved aside to %s (incident "
           "audit_spool_rejected; the newest %d kept)",
           why, aside, REJECTED_KEEP);
    snprintf(s->rejected, sizeof s->rejected, "the audit spool failed its check; moved aside to %s",
             aside);
    return 0;
}

int gw_spool_start(struct gw_app *app, struct gw_spool **out)
{
    const struct gw_config *cfg = app->cfg;
    struct gw_audit_mac_keys k;
    struct gw_audit_spool *sp = NULL;
    struct gw_spool *s;
    char err[4400];
    int rc;

    *out = NULL;
    if (cfg->audit_spool == NULL) {
        GW_LOG(GW_LOG_WARN, "audit", NULL,
               "[audit] spool is not set: audit records, incidents and counted refusals that the "
               "database has not taken when the gateway stops are lost (their count is logged)");
        return 0;
    }
    if ((s = gw_calloc(1, sizeof *s)) == NULL) {
        GW_LOG(GW_LOG_ERROR, "audit", NULL, "spool: out of memory");
        return -1;
    }
    s->path = cfg->audit_spool;
    rc = keys_of(app, &k);
    if (rc == 0)
        rc = gw_audit_spool_load(s->path, cap_of(cfg), app->crypto, &k, gw_audit_chain(app->audit),
                                 &sp, err, sizeof err);
    else
        snprintf(err, sizeof err, "the spool keys could not be derived");
    OPENSSL_cleanse(&k, sizeof k);
    if (rc == 0 && gw_audit_spool_version(sp) == 1)
        GW_LOG(GW_LOG_WARN, "audit", NULL,
               "spool %s is of version 1 (written before this build): its entries carry no mark, "
               "so this replay is not checked against an earlier one of the same file; those "
               "spooled again at a stop are marked",
               s->path);
    if (rc == 0 && (s->replay = gw_audit_replay_new(app->base, app->audit, sp, s->path)) == NULL)
        rc = GW_ENOMEM;
    if (rc == GW_ENOMEM || rc == GW_ECRYPTO) {
        GW_LOG(GW_LOG_ERROR, "audit", NULL, "spool %s: %s", s->path,
               rc == GW_ENOMEM ? "out of memory" : err);
        gw_spool_free(s);
        return -1;
    }
    if (rc != 0 && rc != GW_ENOTFOUND && reject(s, err) != 0) {
        gw_spool_free(s);
        return -1;
    }
    *out = s;
    return 0;
}

void gw_spool_incident(struct gw_spool *s, struct gw_app *app)
{
    struct gw_incident inc = {.severity = "critical",
                              .kind = "audit_spool_rejected",
                              .principal = "waygated",
                              .detail = s != NULL ? s->rejected : NULL};

    if (s == NULL || s->rejected[0] == '\0')
        return;
    if (gw_incident_record(app->incidents, &inc) != 0)
        GW_LOG(GW_LOG_ERROR, "audit", NULL, "could not record the audit_spool_rejected incident");
}

/* Collects the entries left; one the spool refuses is counted, and the rest go on. */
struct spill {
    struct gw_audit_spool *sp;
    uint64_t refused;
};

static int spill_cb(void *arg, const struct gw_audit_left *e)
{
    struct spill *sl = arg;

    if (gw_audit_spool_add(sl->sp, e) != 0)
        sl->refused++;
    return 0;
}

void gw_spool_stop(struct gw_spool *s, struct gw_app *app, uint64_t *spooled, uint64_t *kept,
                   uint64_t *lost)
{
    struct spill sl = {NULL, 0};
    struct gw_audit_mac_keys k;
    uint64_t rows = 0, n = 0;
    char err[4400];
    int rc;

    *spooled = *kept = *lost = 0;
    if (s == NULL)
        return;
    /* spooled means not sent by this process: until the exit, an answer of the database (the
     * writer's recovery) or a timer (a retry) would have sent what is taken below, and the next
     * start would write it again */
    gw_audit_halt(app->audit);
    gw_audit_replay_halt(s->replay);
    gw_incident_halt(app->incidents);
    gw_refusals_halt(app->refusals);
    if ((sl.sp = gw_audit_spool_new(&rc)) == NULL) {
        GW_LOG(GW_LOG_ERROR, "audit", NULL, "spool %s: %s: nothing spooled", s->path,
               rc == GW_ECRYPTO ? "no random bytes for its id (RAND_bytes failed)"
                                : "out of memory");
        *kept = gw_audit_replay_abandon(s->replay);
        return;
    }
    /* in the order they would have been written: the writer's, the older spool's not handed
     * over, the incidents, the refusals */
    rc = gw_audit_leftover(app->audit, spill_cb, &sl);
    if (rc == 0)
        rc = gw_audit_replay_leftover(s->replay, sl.sp, &n);
    if (rc == 0)
        rc = gw_incident_leftover(app->incidents, spill_cb, &sl, &rows);
    if (rc == 0)
        rc = gw_refusals_leftover(app->refusals, spill_cb, &sl, &n);
    n = gw_audit_spool_count(sl.sp);
    if (rc != 0) {
        GW_LOG(GW_LOG_ERROR, "audit", NULL, "spool %s: %s: nothing spooled", s->path,
               gw_err_str(rc));
    } else if (n > 0) {
        rc = keys_of(app, &k);
        if (rc == 0)
            rc = gw_audit_spool_save(sl.sp, s->path, cap_of(app->cfg), app->crypto, &k,
                                     gw_audit_chain(app->audit), err, sizeof err);
        else
            snprintf(err, sizeof err, "%s: the spool keys could not be derived", s->path);
        OPENSSL_cleanse(&k, sizeof k);
        if (rc != 0)
            GW_LOG(GW_LOG_ERROR, "audit", NULL, "spool not written: %s", err);
    }
    if (rc == 0 && n > 0) {
        /* renamed into place: the entries are spooled, even if a crash of the machine could
         * still lose the name */
        *spooled = n;
        if (gw_file_sync_dir(s->path, err, sizeof err) != 0)
            GW_LOG(GW_LOG_WARN, "audit", NULL, "spool %s written, but %s", s->path, err);
        if (rows > 0)
            gw_incident_spooled(app->incidents);
    } else {
        /* the file read at start (if any is left) still holds what it held: kept as it is only
         * while none of its entries has been written, nor is in a transaction that may have
         * committed unanswered, which it then all owes */
        *kept = gw_audit_replay_abandon(s->replay);
        *lost = n > *kept ? n - *kept : 0;
    }
    *lost += sl.refused;
    gw_audit_spool_free(sl.sp);
}

const char *gw_spool_path(const struct gw_spool *s)
{
    return s != NULL ? s->path : "";
}

void gw_spool_free(struct gw_spool *s)
{
    if (s == NULL)
        return;
    gw_audit_replay_free(s->replay);
    gw_free(s);
}
