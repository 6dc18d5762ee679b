/* ctl_keys.c: `waygatectl keys init|add-suite|rotate|retire|status|rewrap`: the key file's life
 * cycle per cipher suite and the batched re-wrapping of one suite's data keys under its newest
 * KEK (its SQL is in store_admin.c). Field ciphertexts are never touched; a record is never
 * re-wrapped into another suite (that is migrate-suite's job); key bytes are never printed. */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "alloc.h"
#include "crypto.h"
#include "ctl.h"
#include "ctl_admin.h"
#include "ctl_record.h"
#include "kek_check.h"
#include "kek_wrap.h"
#include "keyring.h"
#include "record.h"
#include "store.h"
#include "store_acct_admin.h"
#include "store_admin.h"

#define ME "waygatectl keys"
#define BATCH_DEFAULT 500
#define BATCH_MAX 100000

static void keys_usage(FILE *f)
{
    fprintf(
        f,
        "usage: waygatectl keys init      --keyring PATH [--suite aes|sm]\n"
        "       waygatectl keys add-suite --keyring PATH --suite aes|sm [--db CONNINFO]\n"
        "       waygatectl keys rotate    --keyring PATH [--suite S] [--db CONNINFO]\n"
        "       waygatectl keys retire    --keyring PATH [--suite S] --version N [--db CONNINFO]\n"
        "       waygatectl keys status    --keyring PATH [--db CONNINFO]\n"
        "       waygatectl keys rewrap    --keyring PATH [--suite S] [--db CONNINFO] [--batch N]\n"
        "  init    create a new key file (mode 0600) with random keys of one suite (default aes:\n"
        "          AES-256-GCM, HMAC-SHA256, Ed25519; sm: SM4, HMAC-SM3, SM2); never overwrites\n"
        "  add-suite  add a complete key set of a suite the file lacks (before [crypto] suite\n"
        "          names it, or before keys migrate-suite)\n"
        "  rotate  add a KEK version; new records use it once the gateway reloads the keys\n"
        "  rewrap  re-wrap every record's data key under the newest KEK, in batches of N, each\n"
        "          leasing its wraps first (refused at the version's limit: rotate)\n"
        "          (default %d); field ciphertexts are not touched; safe to interrupt and rerun\n"
        "  retire  erase KEK version N from the key file; refused while records still use it;\n"
        "          the database then refuses any record stored under it\n"
        "  status  KEK versions and states of each suite (never key bytes); with --db, records\n"
        "          and data-key wraps leased (of the version's limit) per suite and version\n"
        "  --suite for rotate, retire and rewrap defaults to the suite the file has (aes if "
        "both);\n"
        "  KEK versions are per suite\n"
        "  PATH defaults to $WAYGATE_KEYRING; add-suite, rotate, retire and rewrap use\n"
        "  $WAYGATE_PGURI when --db is not given, and refuse to run without a database (exit 2):\n"
        "  they are recorded in admin_log and the audit chain (Art. 31, 33), and retire first\n"
        "  checks that no record still uses the version. init is recorded when a database is\n"
        "  given: a keyring can be made before its database. If the record cannot be opened the\n"
        "  action is not done.\n",
        BATCH_DEFAULT);
}

struct keys_opts {
    const char *keyring;
    const char *db;
    enum gw_suite suite;
    bool has_suite;
    uint32_t version;
    bool has_version;
    long batch;
};

static int parse_u32(const char *s, uint32_t *v)
{
    char *end = NULL;
    unsigned long long x;
    if (!s || s[0] < '0' || s[0] > '9')
        return -1;
    x = strtoull(s, &end, 10);
    if (*end != '\0' || x == 0 || x > GW_KEYRING_MAX_VERSION)
        return -1;
    *v = (uint32_t)x;
    return 0;
}

static struct gw_admin *connect_db(const char *conninfo)
{
    struct gw_admin *a = NULL;
    char err[512];

    if (gw_admin_connect(conninfo, &a, err, sizeof err) != 0) {
        fprintf(stderr, ME ": %s\n", err);
        return NULL;
    }
    return a;
}

/* The number of records of suite whose KEK version is (equal) or is not v; -1 on error
 * (printed). */
static long long count_kek(struct gw_admin *a, enum gw_suite suite, uint32_t v, bool equal)
{
    char err[512];
    long long n = -1;

    if (gw_admin_count_kek(a, (int)suite, v, equal, &n, err, sizeof err) != 0) {
        fprintf(stderr, ME ": %s\n", err);
        return -1;
    }
    return n;
}

/* Art. 36: the check values of the keyring's active KEKs (gw_keyring_kek_checks) into *c, *n;
 * -1 on error (printed). */
static int kek_checks(const struct gw_keyring *kr, struct gw_keyring_check **c, size_t *n)
{
    int rc = gw_keyring_kek_checks(kr, c, n);
    if (rc != 0) {
        fprintf(stderr, ME ": the check values of the keyring's KEKs: %s\n", gw_err_str(rc));
        return -1;
    }
    return 0;
}

/* gw_ctl_kek_vouch, its refusal printed. Returns 0 or -1. */
static int kek_vouch(struct gw_admin *a, const struct gw_keyring_check *c, size_t n, const char *by,
                     struct gw_kek_check_outcome *o)
{
    char err[512];

    if (gw_ctl_kek_vouch(a, c, n, by, o, err, sizeof err) != 0) {
        fprintf(stderr, ME ": %s; nothing was changed\n", err);
        return -1;
    }
    return 0;
}

/* The whole keyring vouched for by the database: every active KEK compared, those it lacks
 * registered (a keys command that changes keys or records meets the database here first).
 * Returns 0 or -1 (printed). */
static int keyring_vouch(struct gw_admin *a, const struct gw_keyring *kr)
{
    char err[512];

    if (gw_ctl_keyring_vouch(a, kr, ctl_admin_actor(NULL), err, sizeof err) != 0) {
        fprintf(stderr, ME ": %s; nothing was changed\n", err);
        return -1;
    }
    return 0;
}

/* What the last operation did, for its administrative record (never key bytes). */
static char done_detail[128];
static long long done_count = -1; /* records it changed (rewrap), -1: not meaningful */

/* Art. 31, 33: a key operation (init, rotate, retire, rewrap) is an administrative act. With a
 * database (--db, else $WAYGATE_PGURI) it gets one admin_log row and one audit record (chain
 * 'ctl': key.init, key.rotate, key.retire, key.rewrap), its failures included. The transaction
 * that holds them is opened BEFORE the key file changes (record_open), so that an unreachable
 * database or a refused BEGIN stops the operation, and committed right after it (record_close);
 * the key file itself cannot be in a database transaction. A rewrap changes records in batches
 * of their own transactions (store_admin.c); its one record (count: data keys re-wrapped) is
 * written at its end. add-suite, rotate, retire and rewrap refuse to run without a database
 * (need_db); init without one says the action was not recorded (a keyring can be made before its
 * database; a suite is added to a keyring in use, whose database exists). */
static int record_open(const char *db, const char *sub, struct gw_admin **out)
{
    char err[512];

    *out = NULL;
    if (db == NULL || db[0] == '\0') {
        fprintf(stderr, ME ": note: keys %s not recorded (no --db or WAYGATE_PGURI)\n", sub);
        return 0;
    }
    if (gw_admin_connect(db, out, err, sizeof(err)) != 0 ||
        gw_admin_begin(*out, err, sizeof(err)) != 0) {
        fprintf(stderr, ME ": cannot record the action, so it was not done: %s\n", err);
        gw_admin_free(*out);
        *out = NULL;
        return GW_CTL_FAIL;
    }
    return 0;
}

/* add-suite, rotate, retire and rewrap change the keys of a keyring in use (add-suite: a new KEK,
 * new index, token and content keys and a new audit signing key): they are done only where they
 * can be recorded, and retire only where it can count the records still under the version it
 * would erase. Returns 0, or GW_CTL_USAGE after naming the missing setting and why. */
static int need_db(const char *db, const char *sub, const char *why)
{
    if (db != NULL && db[0] != '\0')
        return 0;
    fprintf(stderr,
            ME ": %s needs the database: give --db CONNINFO or set WAYGATE_PGURI (%s); nothing "
               "was changed\n",
            sub, why);
    return GW_CTL_USAGE;
}

/* Writes the records of an operation that ended with rc into the open transaction and commits.
 * Returns rc, or GW_CTL_FAIL when a successful operation could not be recorded (said loudly: the
 * key file changed, its record is missing). NULL a: nothing to record. Frees a. */
static int record_close(struct gw_admin *a, const char *sub, const char *keyring, int rc)
{
    const char *outcome = rc == GW_CTL_OK ? "ok" : "failed";
    struct gw_admin_logrec r = {ctl_admin_actor(NULL), NULL, keyring, outcome,
                                done_detail[0] ? done_detail : NULL};
    char action[32], cmd[32], err[512];
    int ok;

    if (a == NULL)
        return rc;
    snprintf(action, sizeof(action), "keys.%s", sub);
    snprintf(cmd, sizeof(cmd), "keys %s", sub);
    r.action = action;
    ok = gw_admin_log(a, &r, err, sizeof(err)) == 0;
    if (!ok)
        fprintf(stderr, ME ": could not record the administrative action: %s\n", err);
    ok = ok && ctl_record(a, cmd, r.actor, action, keyring, done_count, outcome, r.detail) == 0;
    ok = ok && gw_admin_commit(a, err, sizeof(err)) == 0;
    if (!ok) {
        gw_admin_rollback(a);
        if (rc == GW_CTL_OK)
            fprintf(stderr, ME ": keys %s was done but its record could not be written\n", sub);
        rc = GW_CTL_FAIL;
    }
    gw_admin_free(a);
    return rc;
}

static int keys_init(const struct keys_opts *o)
{
    char err[512];
    enum gw_suite suite = o->has_suite ? o->suite : GW_SUITE_AES;
    if (gw_keyring_file_init(o->keyring, suite, err, sizeof err) != 0) {
        fprintf(stderr, ME ": %s\n", err);
        return GW_CTL_FAIL;
    }
    snprintf(done_detail, sizeof(done_detail), "created with suite %s", gw_suite_name(suite));
    printf("created keyring %s (mode 0600) with suite %s: KEK version 1 and new index, token, "
           "content and audit keys\n",
           o->keyring, gw_suite_name(suite));
    return GW_CTL_OK;
}

static int keys_add_suite(const struct keys_opts *o)
{
    char err[512];
    if (gw_keyring_file_add_suite(o->keyring, o->suite, err, sizeof err) != 0) {
        fprintf(stderr, ME ": %s\n", err);
        return GW_CTL_FAIL;
    }
    snprintf(done_detail, sizeof(done_detail), "added suite %s", gw_suite_name(o->suite));
    printf("added the %s suite to %s (KEK version 1 and new index, token, content and audit "
           "keys); set [crypto] suite = %s and reload the gateways to seal new records with it\n",
           gw_suite_name(o->suite), o->keyring, gw_suite_name(o->suite));
    return GW_CTL_OK;
}

/* The suite a rotate, retire or rewrap acts on: --suite (the file must have it), else the one
 * the file has (aes if both). Loads the keyring into *kr (the caller frees it). */
static int pick_suite(const struct keys_opts *o, struct gw_keyring **kr, enum gw_suite *suite)
{
    char err[512];
    if (gw_keyring_file_load(o->keyring, kr, err, sizeof err) != 0) {
        fprintf(stderr, ME ": %s\n", err);
        return GW_CTL_FAIL;
    }
    *suite = o->has_suite                              ? o->suite
             : gw_keyring_has_suite(*kr, GW_SUITE_AES) ? GW_SUITE_AES
                                                       : GW_SUITE_SM;
    if (!gw_keyring_has_suite(*kr, *suite)) {
        fprintf(stderr, ME ": keyring %s has no keys of the %s suite (keys add-suite --suite %s)\n",
                o->keyring, gw_suite_name(*suite), gw_suite_name(*suite));
        gw_keyring_free(*kr);
        *kr = NULL;
        return GW_CTL_FAIL;
    }
    return 0;
}

static int keys_rotate(const struct keys_opts *o)
{
    char err[512];
    struct gw_keyring *kr = NULL;
    enum gw_suite suite;
    uint32_t v = 0, known = 0, current;
    struct gw_admin *a;
    if (pick_suite(o, &kr, &suite) != 0)
        return GW_CTL_FAIL;
    current = gw_keyring_current(kr, suite);
    /* Art. 36: this keyring is the one the database knows, and no other copy of it was rotated
     * past it: its version current+1 would be a second key under a number already in use */
    int rc = (a = connect_db(o->db)) != NULL && keyring_vouch(a, kr) == 0 ? 0 : -1;
    gw_keyring_free(kr);
    if (rc == 0 && gw_admin_kek_newest(a, (int)suite, &known, err, sizeof err) != 0) {
        fprintf(stderr, ME ": %s; nothing was changed\n", err);
        rc = -1;
    }
    if (rc == 0 && known > current) {
        fprintf(stderr,
                ME ": the database knows %s KEK version %" PRIu32 ", newer than this keyring's "
                   "newest (%" PRIu32 "): another copy of the keyring was rotated; use that copy "
                   "(a divergent keyring copy); nothing was changed\n",
                gw_suite_name(suite), known, current);
        rc = -1;
    }
    if (rc != 0 || gw_keyring_file_rotate(o->keyring, suite, &v, err, sizeof err) != 0) {
        if (rc == 0)
            fprintf(stderr, ME ": %s\n", err);
        gw_admin_free(a);
        return GW_CTL_FAIL;
    }
    /* the new version registered at once: a copy rotated later is refused here, above */
    rc = gw_keyring_file_load(o->keyring, &kr, err, sizeof err) != 0 ? -1 : keyring_vouch(a, kr);
    if (rc != 0 && !kr)
        fprintf(stderr, ME ": %s\n", err);
    gw_keyring_free(kr);
    gw_admin_free(a);
    if (rc != 0)
        return GW_CTL_FAIL;
    snprintf(done_detail, sizeof(done_detail), "added KEK version %" PRIu32 " (suite %s)", v,
             gw_suite_name(suite));
    printf("added %s KEK version %" PRIu32 " (now current); reload or restart the gateways, then "
           "run 'waygatectl keys rewrap --suite %s'\n",
           gw_suite_name(suite), v, gw_suite_name(suite));
    return GW_CTL_OK;
}

/* The KEK lines of one suite for `keys status`. */
static void status_suite(const struct gw_keyring *kr, enum gw_suite suite, bool use_db,
                         const struct gw_admin_kek_count *counts, size_t ncounts,
                         const struct gw_admin_wrap_count *wraps, size_t nwraps)
{
    printf("suite %s%s: current KEK version: %" PRIu32 "\n", gw_suite_name(suite),
           gw_keyring_suite(kr) == suite ? " (default for new records)" : "",
           gw_keyring_current(kr, suite));
    for (size_t i = 0; i < gw_keyring_kek_count(kr, suite); i++) {
        struct gw_keyring_kek k = gw_keyring_kek_at(kr, suite, i);
        char line[160];
        size_t n = (size_t)snprintf(line, sizeof line, "  %skek %-6" PRIu32 " %-7s",
                                    suite == GW_SUITE_SM ? "sm." : "", k.version,
                                    k.active ? "active" : "retired");
        if (use_db) {
            long long cnt = 0;
            for (size_t j = 0; j < ncounts; j++)
                if (counts[j].suite == (int)suite && counts[j].version == k.version)
                    cnt = counts[j].records;
            n += (size_t)snprintf(line + n, sizeof line - n, "  %lld records", cnt);
            /* the wraps leased under it (sql/050): never fewer than were made */
            for (size_t j = 0; j < nwraps; j++)
                if (wraps[j].suite == (int)suite && wraps[j].version == k.version)
                    n += (size_t)snprintf(line + n, sizeof line - n, "  %lld of %lld wraps leased",
                                          wraps[j].leased, wraps[j].limit);
        }
        if (k.version == gw_keyring_current(kr, suite))
            n += (size_t)snprintf(line + n, sizeof line - n, "  (current)");
        while (n > 0 && line[n - 1] == ' ')
            line[--n] = 0;
        puts(line);
    }
}

static int keys_status(const struct keys_opts *o, bool use_db)
{
    static const enum gw_suite suites[GW_SUITE_COUNT] = {GW_SUITE_AES, GW_SUITE_SM};
    char err[512];
    struct gw_keyring *kr = NULL;
    struct gw_admin *a = NULL;
    struct gw_admin_kek_count *counts = NULL;
    struct gw_admin_wrap_count *wraps = NULL;
    size_t ncounts = 0, nwraps = 0;
    int rc = GW_CTL_FAIL, vrc;
    if (gw_keyring_file_load(o->keyring, &kr, err, sizeof err) != 0) {
        fprintf(stderr, ME ": %s\n", err);
        return GW_CTL_FAIL;
    }
    if (use_db) {
        if (!(a = connect_db(o->db)))
            goto out;
        if (gw_admin_kek_counts(a, &counts, &ncounts, err, sizeof err) != 0) {
            fprintf(stderr, ME ": %s\n", err);
            goto out;
        }
        /* a database not migrated to sql/050 has no count of wraps: none shown */
        vrc = gw_admin_wrap_counts(a, &wraps, &nwraps, err, sizeof err);
        if (vrc != 0 && vrc != GW_EPRECOND) {
            fprintf(stderr, ME ": %s\n", err);
            goto out;
        }
    }
    printf("keyring %s (backend %s)\n", o->keyring, gw_keyring_backend_name(kr));
    for (size_t s = 0; s < GW_SUITE_COUNT; s++) {
        if (gw_keyring_has_suite(kr, suites[s]))
            status_suite(kr, suites[s], use_db, counts, ncounts, wraps, nwraps);
        else
            printf("suite %s: no keys\n", gw_suite_name(suites[s]));
    }
    /* suites and versions in the database that the keyring does not know */
    for (size_t j = 0; j < ncounts; j++) {
        enum gw_suite su = (enum gw_suite)counts[j].suite;
        uint32_t v = counts[j].version;
        bool known = false;
        for (size_t i = 0; i < gw_keyring_kek_count(kr, su); i++)
            known |= gw_keyring_kek_at(kr, su, i).version == v;
        if (!known)
            printf("  suite %d kek %-6" PRIu32 " unknown  %lld records (not in this keyring!)\n",
                   counts[j].suite, v, counts[j].records);
    }
    if (use_db) {
        /* Art. 36: compared only, never registered (a status is no use of the keys) */
        struct gw_keyring_check *c = NULL;
        struct gw_kek_check_outcome ko;
        size_t nc = 0;
        vrc = kek_checks(kr, &c, &nc) == 0 ? kek_vouch(a, c, nc, NULL, &ko) : -1;
        gw_free(c);
        if (vrc != 0)
            goto out;
        if (ko.absent > 0)
            printf("%zu KEK version(s) of this keyring not yet registered in the database (the "
                   "first is %s %" PRIu32 "): a gateway registers them at start or reload\n",
                   ko.absent, gw_suite_name((enum gw_suite)ko.absent_suite), ko.absent_version);
    }
    rc = GW_CTL_OK;
out:
    gw_free(counts);
    gw_free(wraps);
    gw_admin_free(a);
    gw_keyring_free(kr);
    return rc;
}

/* Art. 36, before a KEK is erased: the keyring's other versions vouched for (registered when
 * absent), and the one erased (active: its bytes still in the key file) known to the database as
 * this very key. A database that never met it is not the one whose records it seals, or cannot
 * say so: its count of records under the version proves nothing, and the key stays. A version
 * already retired in the key file has no bytes left to compare. Returns 0 or -1 (printed). */
static int retire_vouch(struct gw_admin *a, const struct gw_keyring_check *c, size_t n,
                        enum gw_suite suite, uint32_t version, bool active)
{
    struct gw_keyring_check *rest = n ? gw_calloc(n, sizeof *rest) : NULL;
    const struct gw_keyring_check *mine = NULL;
    struct gw_kek_check_outcome o;
    size_t m = 0;
    int rc = -1;

    if (n && !rest) {
        fprintf(stderr, ME ": out of memory\n");
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        if (c[i].suite == suite && c[i].version == version)
            mine = &c[i];
        else
            rest[m++] = c[i];
    }
    if (kek_vouch(a, rest, m, ctl_admin_actor(NULL), &o) != 0)
        goto out;
    if (active && (!mine || kek_vouch(a, mine, 1, NULL, &o) != 0))
        goto out;
    if (active && o.absent > 0) {
        fprintf(stderr,
                ME
                ": the database has no record of %s KEK version %" PRIu32 ": it never met this "
                "key, so it cannot vouch that no record is sealed under it (the wrong "
                "database?); nothing was erased (a gateway registers its keyring's versions with "
                "its database at start and at each reload)\n",
                gw_suite_name(suite), version);
        goto out;
    }
    rc = 0;
out:
    gw_free(rest);
    return rc;
}

static int keys_retire(const struct keys_opts *o)
{
    char err[512];
    struct gw_keyring *kr = NULL;
    enum gw_suite suite;
    const char *sn;
    /* check the keyring first: the version must exist and not be the newest */
    if (pick_suite(o, &kr, &suite) != 0)
        return GW_CTL_FAIL;
    sn = gw_suite_name(suite);
    uint32_t current = gw_keyring_current(kr, suite);
    bool known = false, active = false;
    for (size_t i = 0; i < gw_keyring_kek_count(kr, suite); i++) {
        struct gw_keyring_kek k = gw_keyring_kek_at(kr, suite, i);
        known |= k.version == o->version;
        active |= k.version == o->version && k.active;
    }
    struct gw_keyring_check *c = NULL;
    size_t n = 0;
    if (known && o->version != current && kek_checks(kr, &c, &n) != 0) {
        gw_keyring_free(kr);
        return GW_CTL_FAIL;
    }
    gw_keyring_free(kr);
    if (!known) {
        fprintf(stderr, ME ": keyring %s has no %s KEK version %" PRIu32 "\n", o->keyring, sn,
                o->version);
        return GW_CTL_FAIL;
    }
    if (o->version == current) {
        fprintf(stderr,
                ME ": %s KEK version %" PRIu32 " is the newest; rotate first, then rewrap\n", sn,
                o->version);
        return GW_CTL_FAIL;
    }
    struct gw_admin *a = connect_db(o->db);
    if (!a || retire_vouch(a, c, n, suite, o->version, active) != 0) {
        gw_free(c);
        gw_admin_free(a);
        return GW_CTL_FAIL;
    }
    gw_free(c);
    /* o->db is set (need_db): erasing a KEK that still wraps a record would lose the record.
     * The database counts them with the table held against writers and, when there are none,
     * records the retirement first, so that from then on it refuses any record stored under
     * the version (a gateway whose keyring was not reloaded, a writer in flight at the count):
     * only then are the key bytes erased (sql/033_kek_retired.sql). */
    long long left = -1;
    int drc = gw_admin_kek_retire(a, (int)suite, o->version, ctl_admin_actor(NULL), &left, err,
                                  sizeof err);
    gw_admin_free(a);
    if (drc != 0) {
        fprintf(stderr, ME ": %s; nothing was erased%s\n", err,
                drc == GW_EUNAVAIL ? ": run keys retire again" : "");
        return GW_CTL_FAIL;
    }
    if (left > 0) {
        fprintf(stderr,
                ME ": %lld records still use %s KEK version %" PRIu32
                   ": run keys rewrap --suite %s first\n",
                left, sn, o->version, sn);
        return GW_CTL_FAIL;
    }
    if (gw_keyring_file_retire(o->keyring, suite, o->version, err, sizeof err) != 0) {
        fprintf(stderr,
                ME ": %s (the database already refuses new records under %s KEK version %" PRIu32
                   "; run keys retire again to erase it from the key file)\n",
                err, sn, o->version);
        return GW_CTL_FAIL;
    }
    snprintf(done_detail, sizeof(done_detail), "retired KEK version %" PRIu32 " (suite %s)",
             o->version, sn);
    printf("retired %s KEK version %" PRIu32 "; its key bytes are erased from %s\n", sn, o->version,
           o->keyring);
    return GW_CTL_OK;
}

static void progress(bool tty, long long done, long long total)
{
    if (!tty)
        return;
    int width = 40, fill = 0;
    if (total > 0)
        fill = (int)(done >= total ? width : done * width / total);
    fprintf(stderr, "\rrewrap [%.*s%*s] %lld/%lld", fill,
            "########################################", width - fill, "", done, total);
    fflush(stderr);
}

struct rewrap {
    const struct gw_keyring *kr;
    struct gw_crypto *cx;
    enum gw_suite suite; /* the records' and the new wrapping's */
    uint32_t newest;
    bool tty; /* a progress bar is on stderr: end its line before a message */
};

/* Re-wraps one record's data key under its suite's newest KEK; a failure is printed (the record's
 * id, never key bytes) and the record left as it is. */
static int rewrap_one_cb(void *arg, const uint8_t id[16], uint32_t old, const uint8_t *w, size_t wl,
                         uint8_t *out)
{
    const struct rewrap *rw = arg;
    uint8_t dek[GW_CRYPTO_DEK_LEN];
    char idtxt[37];
    int crc;

    enum gw_suite was;
    crc = gw_crypto_sealed_suite(w, wl, &was);
    if (crc == 0 && was != rw->suite) /* the batch selects by suite: never change a record's */
        crc = GW_EDATALOSS;
    if (crc == 0)
        crc = gw_keyring_unwrap(rw->kr, rw->cx, old, GW_RECORD_TABLE, id, w, wl, dek);
    if (crc == 0)
        crc = gw_keyring_wrap(rw->kr, rw->cx, rw->suite, rw->newest, GW_RECORD_TABLE, id, dek, out);
    OPENSSL_cleanse(dek, sizeof dek);
    if (crc != 0) {
        gw_store_id_text(id, idtxt);
        fprintf(stderr, "%s" ME ": record %s (KEK version %" PRIu32 "): %s\n", rw->tty ? "\n" : "",
                idtxt, old,
                crc == GW_EDATALOSS  ? "wrapped data key does not authenticate"
                : crc == GW_EPRECOND ? "KEK version unknown or retired in this keyring"
                                     : gw_err_str(crc));
    }
    return crc;
}

static int keys_rewrap(const struct keys_opts *o)
{
    char err[512];
    struct gw_keyring *kr = NULL;
    struct gw_admin *a = NULL, *lease = NULL;
    struct rewrap rw = {.tty = isatty(STDERR_FILENO) == 1};
    struct gw_admin_rewrap b = {.limit = o->batch};
    int rc = GW_CTL_FAIL;
    long long total, left = 0, done = 0, failed = 0;

    if (pick_suite(o, &kr, &rw.suite) != 0)
        return GW_CTL_FAIL;
    rw.kr = kr;
    rw.newest = gw_keyring_current(kr, rw.suite);
    b.target = rw.newest;
    b.suite = (int)rw.suite;
    if (!(rw.cx = gw_crypto_new())) {
        fprintf(stderr, ME ": cannot set up the cryptographic library\n");
        goto out;
    }
    /* the batches' wraps are leased on a second connection, in autocommit (sql/050): committed
     * whatever the batch in the first one does */
    if (!(a = connect_db(o->db)) || !(lease = connect_db(o->db)) || keyring_vouch(a, kr) != 0)
        goto out;
    b.lease = lease;
    total = count_kek(a, rw.suite, rw.newest, false);
    if (total < 0)
        goto out;
    progress(rw.tty, 0, total);
    /* Passes over the table in id order; another pass picks up rows that were locked by a
     * concurrent writer (left over but not failed), until a pass changes nothing. */
    for (int pass = 0; pass < 100; pass++) {
        long long before = done;
        memset(b.cursor, 0, sizeof b.cursor);
        b.have_cursor = false;
        failed = 0;
        for (;;) {
            if (gw_admin_rewrap_batch(a, &b, rewrap_one_cb, &rw, err, sizeof err) != 0) {
                fprintf(stderr, "%s" ME ": database: %s\n", rw.tty ? "\n" : "", err);
                goto out;
            }
            done += b.updated;
            failed += b.failed;
            progress(rw.tty, done, total);
            if (b.seen == 0)
                break;
        }
        left = count_kek(a, rw.suite, rw.newest, false);
        if (left < 0)
            goto out;
        if (left <= failed || done == before)
            break;
    }
    if (rw.tty)
        fputc('\n', stderr);
    fprintf(stderr,
            "rewrap: %lld data keys re-wrapped under %s KEK version %" PRIu32
            ", %lld failed, %lld records left on older versions%s\n",
            done, gw_suite_name(rw.suite), rw.newest, failed, left,
            left > failed ? " (locked by other transactions, or stored since under an older "
                            "version by a gateway whose keyring was not reloaded: reload it, then "
                            "run rewrap again)"
                          : "");
    snprintf(done_detail, sizeof(done_detail),
             "%lld re-wrapped under %s KEK version %" PRIu32 ", %lld failed, %lld left", done,
             gw_suite_name(rw.suite), rw.newest, failed, left);
    done_count = done;
    rc = (failed == 0 && left == 0) ? GW_CTL_OK : GW_CTL_FAIL;
out:
    gw_admin_free(lease);
    gw_admin_free(a);
    gw_crypto_free(rw.cx);
    gw_keyring_free(kr);
    return rc;
}

int gw_ctl_keys(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"keyring", required_argument, NULL, 'k'},
        {"db", required_argument, NULL, 'd'},
        {"version", required_argument, NULL, 'v'},
        {"batch", required_argument, NULL, 'b'},
        {"suite", required_argument, NULL, 's'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    struct keys_opts o = {.batch = BATCH_DEFAULT};
    bool db_given = false;
    int c;

    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        keys_usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? GW_CTL_USAGE : GW_CTL_OK;
    }
    const char *sub = argv[1];
    if (strcmp(sub, "migrate-suite") == 0) /* its own options: ctl_migrate_suite.c */
        return gw_ctl_keys_migrate_suite(argc - 1, argv + 1);
    optind = 0; /* glibc: full re-initialisation (the command may run more than once in tests) */
    while ((c = getopt_long(argc - 1, argv + 1, "k:d:v:b:s:h", longopts, NULL)) != -1) {
        switch (c) {
        case 'k':
            o.keyring = optarg;
            break;
        case 'd':
            o.db = optarg;
            db_given = true;
            break;
        case 'v':
            if (parse_u32(optarg, &o.version) != 0) {
                fprintf(stderr, ME ": --version must be an integer from 1 to %u\n",
                        GW_KEYRING_MAX_VERSION);
                return GW_CTL_USAGE;
            }
            o.has_version = true;
            break;
        case 's':
            if (gw_suite_parse(optarg, &o.suite) != 0) {
                fprintf(stderr, ME ": --suite must be aes or sm\n");
                return GW_CTL_USAGE;
            }
            o.has_suite = true;
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
        case 'h':
            keys_usage(stdout);
            return GW_CTL_OK;
        default:
            keys_usage(stderr);
            return GW_CTL_USAGE;
        }
    }
    if (optind < argc - 1) {
        fprintf(stderr, ME ": unexpected argument '%s'\n", argv[optind + 1]);
        return GW_CTL_USAGE;
    }
    if (!o.keyring || !o.keyring[0])
        o.keyring = getenv("WAYGATE_KEYRING");
    if (!o.keyring || !o.keyring[0]) {
        fprintf(stderr, ME ": give --keyring PATH (or set WAYGATE_KEYRING)\n");
        return GW_CTL_USAGE;
    }
    bool needs_db = strcmp(sub, "rewrap") == 0;
    const char *db_source = "--db";
    if (!o.db && (needs_db || strcmp(sub, "retire") == 0 || strcmp(sub, "rotate") == 0 ||
                  strcmp(sub, "add-suite") == 0)) {
        const char *env = getenv("WAYGATE_PGURI");
        if (env && env[0]) {
            o.db = env;
            db_source = "WAYGATE_PGURI";
        }
    }
    if (o.db != NULL && o.db[0] != '\0' && ctl_conninfo_check("keys", db_source, o.db) != 0)
        return GW_CTL_USAGE;
    struct gw_admin *rec = NULL;
    int rc;
    done_detail[0] = '\0';
    done_count = -1;
    if (strcmp(sub, "init") == 0) {
        /* a new keyring usually comes before its database: recorded only with --db */
        if (o.db != NULL && record_open(o.db, sub, &rec) != 0)
            return GW_CTL_FAIL;
        rc = keys_init(&o);
        return record_close(rec, sub, o.keyring, rc);
    }
    if (strcmp(sub, "add-suite") == 0) {
        if (!o.has_suite) {
            fprintf(stderr, ME ": add-suite needs --suite aes|sm\n");
            return GW_CTL_USAGE;
        }
        if (need_db(o.db, "keys add-suite",
                    "a suite's new keys, its audit signing key among them, are recorded in "
                    "admin_log and the audit chain, Art. 31, 33") != 0)
            return GW_CTL_USAGE;
        if (record_open(o.db, sub, &rec) != 0)
            return GW_CTL_FAIL;
        rc = keys_add_suite(&o);
        return record_close(rec, sub, o.keyring, rc);
    }
    if (strcmp(sub, "rotate") == 0) {
        if (need_db(o.db, "keys rotate",
                    "a rotation is recorded in admin_log and the audit "
                    "chain, Art. 31, 33") != 0)
            return GW_CTL_USAGE;
        if (record_open(o.db, sub, &rec) != 0)
            return GW_CTL_FAIL;
        rc = keys_rotate(&o);
        return record_close(rec, sub, o.keyring, rc);
    }
    if (strcmp(sub, "status") == 0)
        return keys_status(&o, db_given);
    if (strcmp(sub, "retire") == 0) {
        if (!o.has_version) {
            fprintf(stderr, ME ": retire needs --version N\n");
            return GW_CTL_USAGE;
        }
        if (need_db(o.db, "keys retire",
                    "it checks that no record still uses the version before erasing it, and is "
                    "recorded in admin_log and the audit chain") != 0)
            return GW_CTL_USAGE;
        if (record_open(o.db, sub, &rec) != 0)
            return GW_CTL_FAIL;
        rc = keys_retire(&o);
        return record_close(rec, sub, o.keyring, rc);
    }
    if (needs_db) {
        if (need_db(o.db, "keys rewrap", "it re-wraps the records stored there") != 0)
            return GW_CTL_USAGE;
        if (record_open(o.db, sub, &rec) != 0)
            return GW_CTL_FAIL;
        rc = keys_rewrap(&o);
        return record_close(rec, sub, o.keyring, rc);
    }
    fprintf(stderr, ME ": unknown subcommand '%s'\n", sub);
    keys_usage(stderr);
    return GW_CTL_USAGE;
}
