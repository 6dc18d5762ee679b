/* ctl_migrate_suite.c: `waygatectl keys migrate-suite --to SUITE`: re-seals every stored waybill
 * that is not under SUITE (the algorithm byte of its dek_wrapped) under it, in batches of one
 * transaction each (store_reseal.c: rows locked FOR UPDATE SKIP LOCKED, so the gateway keeps
 * serving; a record is readable at every moment, under its old suite until its batch commits and
 * under the new one after), with a progress bar on stderr when it is a terminal. Resumable: every
 * run picks whatever is left, so an interrupted run (SIGINT/SIGTERM end it after the batch in
 * flight; a kill rolls that batch back) is finished by running the command again. Audited: a
 * record (admin_log and the 'ctl' audit chain, action key.migrate_suite) when it starts, committed
 * before the first batch, and one when it ends (ok, failed, interrupted, with the count).
 * Key bytes and field values are never printed; a record that cannot be re-sealed is named by
 * its id and the part that failed, and stays as it is (readable, under its old suite). */
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "crypto.h"
#include "ctl.h"
#include "ctl_admin.h"
#include "ctl_record.h"
#include "keyring.h"
#include "reseal.h"
#include "seal.h"
#include "store.h"
#include "store_admin.h"
#include "store_reseal.h"

#define ME "waygatectl keys migrate-suite"
#define BATCH_DEFAULT 500
#define BATCH_MAX 100000
#define LOCK_WAIT_DEFAULT 30 /* seconds */
#define LOCK_WAIT_MAX 86400
#define LOCK_RETRY_MS 100

static volatile sig_atomic_t stop_requested;

static void stop_cb(int sig)
{
    (void)sig;
    stop_requested = 1;
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: waygatectl keys migrate-suite --to aes|sm [--keyring PATH] [--db CONNINFO]\n"
            "                                     [--batch N] [--lock-wait S]\n"
            "  re-seal every stored waybill that is not under the suite --to: a new data key\n"
            "  wrapped under that suite's current KEK, every field, blind index and MAC anew,\n"
            "  in batches of N records (default %d), one transaction each, while the gateway\n"
            "  serves. The keyring must hold the target suite's keys (keys add-suite), and the\n"
            "  gateways should already seal new records under it ([crypto] suite) and be\n"
            "  reloaded. Records other transactions hold locked are skipped and retried every\n"
            "  %d ms for up to S seconds (default %d) once nothing else is left.\n"
            "  SIGINT or SIGTERM stop it after the batch in flight; run it again to\n"
            "  finish (it always takes what is left). PATH defaults to $WAYGATE_KEYRING, CONNINFO\n"
            "  to $WAYGATE_PGURI. Recorded in admin_log and the audit chain (Art. 31, 33).\n",
            BATCH_DEFAULT, LOCK_RETRY_MS, LOCK_WAIT_DEFAULT);
}

struct opts {
    const char *keyring, *db, *to;
    long batch, lock_wait;
};

/* The words for the part of a record that could not be re-sealed (never a value). */
static const char *part_words(int rc, int bad)
{
    if (rc == GW_EPRECOND)
        return "its KEK version is retired or unknown, or its suite's keys are missing";
    switch (bad) {
    case GW_SEAL_PART_DEK:
        return "wrapped data key does not authenticate";
    case GW_SEAL_PART_CONTENT:
        return "content_mac does not authenticate";
    case GW_SEAL_PART_RECORD:
        return "record_mac does not authenticate (a clear column was altered)";
    case GW_SEAL_PART_FIELDS:
        return "fields_ct does not authenticate (it or a clear column was altered)";
    case GW_RESEAL_PART_RULES:
        return "its values no longer pass validation";
    case GW_RESEAL_PART_CLEAR:
        return "re-sealing would change a clear column or a field value";
    default:
        break;
    }
    if (bad >= 0 && bad < GW_COL_COUNT)
        return "a field ciphertext does not authenticate";
    return gw_err_str(rc);
}

struct run {
    const struct gw_keyring *kr;
    struct gw_crypto *cx;
    bool tty;   /* a progress bar is on stderr: end its line before a message */
    bool quiet; /* a later pass: failures were named by the first */
};

static int reseal_one_cb(void *arg, const struct gw_sealed_waybill *row, struct gw_arena *arena,
                         struct gw_sealed_waybill *out)
{
    struct run *r = arg;
    char idtxt[37];
    int bad = GW_SEAL_PART_NONE;
    int rc = gw_reseal_waybill(r->cx, r->kr, row, arena, out, &bad);

    gw_crypto_forget(r->cx); /* no data key stays cached past its record */
    if (rc != 0 && !r->quiet) {
        gw_store_id_text(row->id, idtxt);
        int col = bad >= 0 && bad < GW_COL_COUNT ? bad : -1;
        fprintf(stderr, "%s" ME ": record %s%s%s: %s; left as it is\n", r->tty ? "\n" : "", idtxt,
                col >= 0 ? " column " : "", col >= 0 ? gw_col_sql[col] : "", part_words(rc, bad));
    }
    return rc;
}

static void conflict_cb(void *arg, const uint8_t id[16])
{
    struct run *r = arg;
    char idtxt[37];

    if (r->quiet)
        return;
    gw_store_id_text(id, idtxt);
    fprintf(stderr,
            "%s" ME ": record %s: another record holds its waybill number under the target "
            "suite (stored twice); left as it is\n",
            r->tty ? "\n" : "", idtxt);
}

static void progress(bool tty, long long done, long long total)
{
    if (!tty)
        return;
    int width = 40, fill = 0;
    if (total > 0)
        fill = (int)(done >= total ? width : done * width / total);
    fprintf(stderr, "\rmigrate-suite [%.*s%*s] %lld/%lld", fill,
            "########################################", width - fill, "", done, total);
    fflush(stderr);
}

/* One administrative record of this run, in a transaction of its own on c. */
static int record(struct ctl_admin *c, const char *keyring, long long count, const char *outcome,
                  const char *detail)
{
    struct gw_admin_logrec r = {c->actor, c->action, keyring, outcome, detail};
    char err[512];

    if (ctl_admin_begin(c) != 0)
        return GW_CTL_FAIL;
    if (gw_admin_log(c->a, &r, err, sizeof(err)) != 0) {
        fprintf(stderr, ME ": could not record the administrative action: %s\n", err);
        ctl_admin_rollback(c);
        return GW_CTL_FAIL;
    }
    if (ctl_record(c->a, c->cmd, c->actor, c->action, keyring, count, outcome, detail) != 0) {
        ctl_admin_rollback(c);
        return GW_CTL_FAIL;
    }
    return ctl_admin_commit(c);
}

struct totals {
    long long done, failed, left;
};

/* Seconds since some fixed point (CLOCK_MONOTONIC). */
static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* The passes over the table: each in id order from the start. Rows another transaction holds
 * locked (the gateway, a concurrent rewrap) are skipped by a batch and taken by a later pass: a
 * pass that changes nothing while such rows are left is retried every LOCK_RETRY_MS for up to
 * lock_wait seconds. Ends when nothing is left but failures, that wait runs out, or a stop is
 * requested (between batches). The batches lease their wraps on lease (a second connection, in
 * autocommit). Returns 0 or GW_CTL_FAIL (database; said). */
static int passes(struct gw_admin *a, struct gw_admin *lease, struct run *r, uint8_t alg,
                  long batch, long lock_wait, struct totals *t)
{
    struct gw_admin_reseal b = {.target = alg,
                                .kek_version = gw_keyring_current(r->kr, (enum gw_suite)alg),
                                .lease = lease,
                                .limit = batch,
                                .conflict = conflict_cb};
    const struct timespec pause = {0, LOCK_RETRY_MS * 1000000L};
    double idle_since = 0;
    long long total = 0;
    char err[512];

    if (gw_admin_count_suite(a, alg, false, &total, err, sizeof(err)) != 0) {
        fprintf(stderr, ME ": database: %s\n", err);
        return GW_CTL_FAIL;
    }
    t->left = total;
    progress(r->tty, 0, total);
    for (int pass = 0; !stop_requested; pass++) {
        long long before = t->done;
        memset(b.cursor, 0, sizeof(b.cursor));
        b.have_cursor = false;
        t->failed = 0;
        r->quiet = pass > 0; /* a record that fails is named once */
        while (!stop_requested) {
            if (gw_admin_reseal_batch(a, &b, reseal_one_cb, r, err, sizeof(err)) != 0) {
                fprintf(stderr, "%s" ME ": database: %s\n", r->tty ? "\n" : "", err);
                return GW_CTL_FAIL;
            }
            t->done += b.updated;
            t->failed += b.failed;
            progress(r->tty, t->done, total);
            if (b.seen == 0)
                break;
        }
        if (gw_admin_count_suite(a, alg, false, &t->left, err, sizeof(err)) != 0) {
            fprintf(stderr, "%s" ME ": database: %s\n", r->tty ? "\n" : "", err);
            return GW_CTL_FAIL;
        }
        if (t->left <= t->failed)
            break;
        if (t->done != before) {
            idle_since = 0;
            continue;
        }
        if (idle_since == 0)
            idle_since = now_s();
        else if (now_s() - idle_since >= (double)lock_wait)
            break;
        (void)nanosleep(&pause, NULL); /* a signal cuts it short: stop_requested is then set */
    }
    if (r->tty)
        fputc('\n', stderr);
    return 0;
}

static int run(const struct opts *o, enum gw_suite to)
{
    struct ctl_admin c = {.a = NULL};
    struct gw_admin *a = NULL, *lease = NULL;
    struct gw_keyring *kr = NULL;
    struct run r = {.tty = isatty(STDERR_FILENO) == 1};
    struct totals t = {0, 0, 0};
    struct sigaction sa;
    char err[512], detail[200];
    const char *outcome;
    int rc = GW_CTL_FAIL, crc;

    rc = ctl_admin_open(&c, "keys", "migrate_suite", NULL, o->db);
    if (rc != 0)
        return rc;
    rc = GW_CTL_FAIL;
    snprintf(c.cmd, sizeof(c.cmd), "keys migrate-suite");
    if (gw_keyring_file_load(o->keyring, &kr, err, sizeof(err)) != 0) {
        rc = ctl_admin_fail(&c, o->keyring, "keyring", err);
        goto out;
    }
    if (!gw_keyring_has_suite(kr, to) || gw_keyring_set_suite(kr, to) != 0) {
        snprintf(detail, sizeof(detail),
                 "the keyring has no complete %s key set: run 'waygatectl keys add-suite "
                 "--suite %s' first",
                 gw_suite_name(to), gw_suite_name(to));
        rc = ctl_admin_refuse_text(&c, o->keyring, "--to", detail);
        goto out;
    }
    if ((r.cx = gw_crypto_new()) == NULL) {
        rc = ctl_admin_fail(&c, o->keyring, "crypto", "cannot set up the cryptographic library");
        goto out;
    }
    r.kr = kr;
    /* the batches' wraps are leased on a second connection, in autocommit (sql/050): committed
     * whatever the batch in the first one does */
    if (gw_admin_connect(o->db, &a, err, sizeof(err)) != 0 ||
        gw_admin_connect(o->db, &lease, err, sizeof(err)) != 0) {
        rc = ctl_admin_fail(&c, o->keyring, "database", err);
        goto out;
    }
    /* Art. 36: records are re-sealed only under KEKs the database knows as these keys */
    if (gw_ctl_keyring_vouch(a, kr, ctl_admin_actor(NULL), err, sizeof(err)) != 0) {
        rc = ctl_admin_fail(&c, o->keyring, "keyring", err);
        goto out;
    }
    snprintf(detail, sizeof(detail), "to %s, batches of %ld", gw_suite_name(to), o->batch);
    if (record(&c, o->keyring, -1, "started", detail) != 0)
        goto out; /* not recorded: not done */
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = stop_cb;
    sigemptyset(&sa.sa_mask);
    (void)sigaction(SIGINT, &sa, NULL);
    (void)sigaction(SIGTERM, &sa, NULL);
    crc = passes(a, lease, &r, (uint8_t)to, o->batch, o->lock_wait, &t);
    outcome = crc != 0                       ? "failed"
              : stop_requested               ? "interrupted"
              : t.failed == 0 && t.left == 0 ? "ok"
                                             : "failed";
    fprintf(stderr,
            "migrate-suite: %lld records re-sealed under %s, %lld failed, %lld left under other "
            "suites%s\n",
            t.done, gw_suite_name(to), t.failed, t.left,
            stop_requested      ? " (interrupted: run the command again to finish)"
            : t.left > t.failed ? " (locked by other transactions: run the command again)"
                                : "");
    snprintf(detail, sizeof(detail), "%lld re-sealed under %s, %lld failed, %lld left", t.done,
             gw_suite_name(to), t.failed, t.left);
    if (record(&c, o->keyring, t.done, outcome, detail) != 0) {
        fprintf(stderr, ME ": the migration ran but its closing record could not be written\n");
        goto out;
    }
    rc = strcmp(outcome, "ok") == 0 ? GW_CTL_OK : GW_CTL_FAIL;
out:
    gw_admin_free(lease);
    gw_admin_free(a);
    gw_crypto_free(r.cx);
    gw_keyring_free(kr);
    ctl_admin_close(&c);
    return rc;
}

int gw_ctl_keys_migrate_suite(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"to", required_argument, NULL, 't'},
        {"keyring", required_argument, NULL, 'k'},
        {"db", required_argument, NULL, 'd'},
        {"batch", required_argument, NULL, 'b'},
        {"lock-wait", required_argument, NULL, 'w'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    struct opts o = {.batch = BATCH_DEFAULT, .lock_wait = LOCK_WAIT_DEFAULT};
    enum gw_suite to;
    int ch;

    optind = 0; /* glibc: full re-initialisation */
    while ((ch = getopt_long(argc, argv, "t:k:d:b:w:h", longopts, NULL)) != -1) {
        switch (ch) {
        case 't':
            o.to = optarg;
            break;
        case 'k':
            o.keyring = optarg;
            break;
        case 'd':
            o.db = optarg;
            break;
        case 'b': {
            char *end = NULL;
            o.batch = strtol(optarg, &end, 10);
            if (*end != '\0' || o.batch < 1 || o.batch > BATCH_MAX) {
                fprintf(stderr, ME ": --batch must be an integer from 1 to %d\n", BATCH_MAX);
                return GW_CTL_USAGE;
            }
            break;
        }
        case 'w': {
            char *end = NULL;
            o.lock_wait = strtol(optarg, &end, 10);
            if (*end != '\0' || o.lock_wait < 0 || o.lock_wait > LOCK_WAIT_MAX) {
                fprintf(stderr, ME ": --lock-wait must be an integer from 0 to %d\n",
                        LOCK_WAIT_MAX);
                return GW_CTL_USAGE;
            }
            break;
        }
        case 'h':
            usage(stdout);
            return GW_CTL_OK;
        default:
            usage(stderr);
            return GW_CTL_USAGE;
        }
    }
    if (optind < argc) {
        fprintf(stderr, ME ": unexpected argument '%s'\n", argv[optind]);
        return GW_CTL_USAGE;
    }
    if (o.to == NULL || gw_suite_parse(o.to, &to) != 0) {
        fprintf(stderr, ME ": --to must be aes or sm\n");
        return GW_CTL_USAGE;
    }
    if (!o.keyring || !o.keyring[0])
        o.keyring = getenv("WAYGATE_KEYRING");
    if (!o.keyring || !o.keyring[0]) {
        fprintf(stderr, ME ": give --keyring PATH (or set WAYGATE_KEYRING)\n");
        return GW_CTL_USAGE;
    }
    const char *db_source = "--db";
    if (!o.db || !o.db[0]) {
        o.db = getenv("WAYGATE_PGURI");
        db_source = "WAYGATE_PGURI";
    }
    if (!o.db || !o.db[0]) {
        fprintf(stderr, ME ": give --db CONNINFO (or set WAYGATE_PGURI)\n");
        return GW_CTL_USAGE;
    }
    if (ctl_conninfo_check("keys migrate-suite", db_source, o.db) != 0)
        return GW_CTL_USAGE;
    return run(&o, to);
}
