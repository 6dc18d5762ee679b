/* ctl_audit.c: `waygatectl audit verify` (the live chains and their signed checkpoints, Art. 33),
 * `audit export` (a sealed bundle of a time range, docs/audit-bundle-format.md) and `audit verify
 * FILE` (a bundle, offline). The live check writes an unsealed bundle of every chain straight into
 * the bundle verifier, so the live chain and a bundle are checked by the same rules, except that
 * live chains must be whole (from seq 1) and their signers are pinned (--trust-key, else the
 * keyring's audit keys). Both checks name the keys that signed. Nothing here
 * changes the trail; an export is itself recorded (admin_log and audit.export on chain 'ctl')
 * before its file gets its name, and a file that could not be recorded is removed. An export's
 * seal and the checkpoint over its record are signed with the audit key of one suite (--suite,
 * else the daemon's configured one: export_suite), never a mix. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "alloc.h"
#include "audit_bundle.h"
#include "audit_read.h"
#include "audit_signer.h"
#include "clock.h"
#include "config.h"
#include "ctl.h"
#include "ctl_admin.h"
#include "ctl_record.h"
#include "file.h"
#include "keyring.h"
#include "store_admin.h"

#define ME "waygatectl audit"
#define BATCH 5000 /* records per query */

struct audit_opts {
    const char *db, *keyring, *out, *actor;
    const char *since; /* --since FILE: a bundle the live trail must still extend */
    const char *trust[GW_BUNDLE_TRUST_MAX]; /* --trust-key, as given (each checked: key_id_ok) */
    size_t ntrust;
    int64_t from_us, to_us;
    bool have_from, have_to;
    enum gw_suite suite; /* --suite: the export's signing suite */
    bool has_suite;
    bool unpinned; /* --unpinned: verify with no signer pinned, said so (never the default) */
};

static void audit_usage(FILE *f)
{
    fprintf(
        f,
        "usage: waygatectl audit verify [--db CONNINFO] [--keyring PATH] [--trust-key KEYID]...\n"
        "                               [--since BUNDLE] [--unpinned]\n"
        "       waygatectl audit verify FILE [--trust-key KEYID]...\n"
        "       waygatectl audit export --from TIME --to TIME --out FILE [--keyring PATH]\n"
        "                               [--suite aes|sm] [--db CONNINFO] [--actor NAME]\n"
        "  verify: checks every audit chain in the database whole, from seq 1 (hashes, links,\n"
        "  signed checkpoints) and names each bad place (chain and sequence number): a\n"
        "  checkpoint that fails is named, then ignored, and a record that does not fit is\n"
        "  named and the chain followed on past it, so nothing hides a later break; then a\n"
        "  'checked:' line for each broken chain (records checked, and those no valid\n"
        "  checkpoint covers). With FILE, checks an audit bundle offline (no database), by\n"
        "  the same rules ('checked:' lines for every chain of a bundle that fails).\n"
        "  --trust-key KEYID (64 hex digits, may be given up to %d times): every checkpoint\n"
        "  and the seal must be signed by one of these keys. Without it the live check pins\n"
        "  the audit keys of the keyring (--keyring, default $WAYGATE_KEYRING: of each suite\n"
        "  it holds). With neither the live check is refused (exit 2): the audit_key table\n"
        "  is the database's word, which whoever can rewrite the trail can add to.\n"
        "  --unpinned checks it all the same, accepting any key of that table, and says the\n"
        "  signers are not pinned.\n"
        "  A record of a gateway's chain that no checkpoint covers yet must carry a writer MAC\n"
        "  of the keyring, when one is read (without --trust-key, or with --keyring): one that\n"
        "  carries none, or a MAC of another key, is a bad place. So is a destruction (bulk or\n"
        "  retention) that no record of a gateway's chain accounts for.\n"
        "  Every chain is checked on its own and every broken one named. --since BUNDLE: an\n"
        "  earlier bundle (verified first, under the same pins) whose chains the trail must\n"
        "  still extend: records cut since, with the checkpoints over them, leave a chain that\n"
        "  verifies alone; the head each chain of the bundle ends at must still be there.\n"
        "  A bundle's check without --trust-key accepts any key the bundle lists: it prints\n"
        "  each signer's key id and a line saying they are not pinned, and exits 0; compare\n"
        "  the ids with the ones the operator published.\n"
        "  export: writes a sealed audit bundle of the records with time in [--from, --to)\n"
        "  plus the checkpoints covering them (docs/audit-bundle-format.md). TIME is seconds\n"
        "  since the epoch or YYYY-MM-DDTHH:MM:SSZ. The seal, and the checkpoint over the\n"
        "  export's own record, are signed with the keyring's audit key (--keyring, default\n"
        "  $WAYGATE_KEYRING) of one suite: --suite (aes: Ed25519, sm: SM2), else the\n"
        "  daemon's [crypto] suite in the file $WAYGATE_CONF names, else the keyring's\n"
        "  default (aes when it has it, else sm). The bundle is written to FILE.partial,\n"
        "  created new with mode 0600 (refused when anything, a symbolic link included,\n"
        "  is already there), synced, then renamed to FILE.\n"
        "  CONNINFO defaults to $WAYGATE_PGURI. Exit 0: verified or written; 1: a bad place\n"
        "  found (a checkpoint by a key outside the pins included), or a failure; 2: usage\n"
        "  (a live check with no pin and no --unpinned included).\n",
        GW_BUNDLE_TRUST_MAX);
}

/* TIME: decimal seconds since the epoch, or YYYY-MM-DDTHH:MM:SSZ (UTC). */
static bool parse_time(const char *s, int64_t *us)
{
    struct tm tm;
    char *end;
    long long v;
    errno = 0;
    v = strtoll(s, &end, 10);
    if (*s && *end == '\0' && errno == 0 && v >= 0 && v < 253402300800LL) {
        *us = (int64_t)v * 1000000;
        return true;
    }
    memset(&tm, 0, sizeof tm);
    end = strptime(s, "%Y-%m-%dT%H:%M:%SZ", &tm);
    if (!end || *end != '\0')
        return false;
    *us = (int64_t)timegm(&tm) * 1000000;
    return true;
}

/* ---- reading the database into a bundle writer ---- */

struct breaks;
static void break_cb(void *arg, const char *place);

struct fill {
    struct gw_bundle_writer *w;
    const uint8_t *skip; /* a key written last instead (the seal's), or NULL */
    size_t skiplen;
    struct breaks *br; /* the live check's: a row the format cannot hold is a bad place there */
    size_t left_out;   /* such rows, named and left out */
};

static int key_cb(void *arg, const uint8_t *pub, size_t publen)
{
    struct fill *f = arg;
    if (f->skip && publen == f->skiplen && memcmp(pub, f->skip, publen) == 0)
        return 0;
    return gw_bundle_write_key(f->w, pub, publen);
}

/* A stored row the bundle format cannot hold (an empty actor, a text over GW_AUDIT_TEXT_MAX
 * bytes; refused by the database since sql/026, so planted before it) is named and left out, so
 * one planted row stops neither the check of its chain or of the chains after it, nor an export.
 * The live check names it itself; an export writes a `G` item in its place, which every bundle
 * verifier names. Either way the verifier then sees its seq missing, and follows the chain on
 * from the next record. */
static int row_cb(void *arg, const struct gw_audit_row *r)
{
    struct fill *f = arg;
    char why[GW_BUNDLE_ERR_MAX];
    int rc = gw_bundle_write_record(f->w, &r->rec, &r->link, r->hash);
    if (rc != GW_EINVAL)
        return rc;
    snprintf(why, sizeof why,
             "chain %s: seq %" PRId64 ": not a record the audit format can hold (an empty "
             "actor, or a text over %d bytes); left out of the %s",
             r->link.chain, r->link.seq, GW_AUDIT_TEXT_MAX, f->br ? "check" : "bundle");
    f->left_out++;
    if (!f->br) {
        struct ctl_esc e = {0};
        fprintf(stderr, ME " export: %s\n", ctl_esc(&e, why)); /* the chain is a stored name */
        ctl_esc_clear(&e);
        return gw_bundle_write_left_out(f->w, r->link.chain, r->link.seq, r->hash);
    }
    break_cb(f->br, why);
    return 0;
}

static int ckpt_cb(void *arg, const struct gw_audit_ckpt *c)
{
    struct fill *f = arg;
    return gw_bundle_write_checkpoint(f->w, c);
}

/* An export's bundle: keys, then every span of the range's plan, into w; the seal key (if any)
 * is written last. Returns 0, or GW_EDATALOSS when the writer's sink (a verifier) found a bad
 * place, or a failure after saying why. */
static int fill(struct gw_admin *a, struct gw_bundle_writer *w, const struct audit_opts *o,
                const uint8_t *seal_pub, size_t seal_publen)
{
    char err[512];
    struct gw_audit_span *sp = NULL;
    size_t n = 0;
    struct fill f = {w, seal_pub, seal_publen, NULL, 0};
    int rc = gw_audit_read_keys(a, key_cb, &f, err, sizeof err);
    if (rc == 0 && seal_pub)
        rc = gw_bundle_write_key(w, seal_pub, seal_publen);
    if (rc == 0)
        rc = gw_audit_read_plan(a, false, o->from_us, o->to_us, &sp, &n, err, sizeof err);
    for (size_t i = 0; rc == 0 && i < n; i++)
        rc = gw_audit_read_span(a, &sp[i], BATCH, row_cb, ckpt_cb, &f, err, sizeof err);
    gw_free(sp);
    if (rc == GW_EINTERNAL)
        fprintf(stderr, ME ": reading the audit trail: %s\n", err);
    else if (rc != 0 && rc != GW_EDATALOSS)
        fprintf(stderr, ME ": %s\n", gw_err_str(rc));
    return rc;
}

/* What was verified, then who signed it (every key that signed a checkpoint or the seal, by
 * the SHA-256 key id the bundle format uses) and whether those signers were pinned: a check
 * that accepted any listed key must say so, or "verified" reads as "signed by the operator". */
#define SIGNERS_MAX 32
#define BREAKS_RECORDED 16 /* incidents one live check records; one more counts the rest */

/* What one or more verifiers found (the live check runs one per chain). */
struct summary {
    struct gw_bundle_verify_stats st;
    char signer[SIGNERS_MAX][65];
    enum gw_sign_alg alg[SIGNERS_MAX];
    size_t nsigners;
    bool more_signers; /* past SIGNERS_MAX: not listed */
    /* the live check's records of gateway chains no checkpoint covers yet: whose writer MAC
     * was checked (and held), and those left unchecked for want of a keyring */
    uint64_t mac_held, mac_unchecked;
};

static void summary_add(struct summary *s, const struct gw_bundle_verifier *v)
{
    struct gw_bundle_verify_stats st;
    enum gw_sign_alg alg;
    const char *id;
    gw_bundle_verify_stats(v, &st);
    s->st.chains += st.chains;
    s->st.records += st.records;
    s->st.checkpoints += st.checkpoints;
    s->st.keys = st.keys > s->st.keys ? st.keys : s->st.keys; /* every verifier reads them all */
    if (st.uncovered && !s->st.uncovered)
        snprintf(s->st.uncovered_note, sizeof s->st.uncovered_note, "%s", st.uncovered_note);
    s->st.uncovered += st.uncovered;
    for (size_t i = 0; (id = gw_bundle_verify_signer(v, i, &alg)) != NULL; i++) {
        size_t k = 0;
        while (k < s->nsigners && strcmp(s->signer[k], id) != 0)
            k++;
        if (k == s->nsigners && k < SIGNERS_MAX) {
            snprintf(s->signer[k], sizeof s->signer[k], "%s", id);
            s->alg[k] = alg;
            s->nsigners++;
        } else if (k == s->nsigners) {
            s->more_signers = true;
        }
    }
}

static void print_ok(const struct summary *s, bool live, const char *pinned)
{
    const struct gw_bundle_verify_stats *st = &s->st;
    struct ctl_esc e = {0};
    printf("%s verified: %" PRIu64 " chains, %" PRIu64 " records, %" PRIu64 " checkpoints, %" PRIu64
           " keys\n",
           live ? "audit trail" : "bundle", st->chains, st->records, st->checkpoints, st->keys);
    if (st->uncovered)
        printf("note: %" PRIu64 " records not yet covered by a checkpoint (%s)\n", st->uncovered,
               ctl_esc(&e, st->uncovered_note));
    if (s->mac_held)
        printf("note: %" PRIu64 " of them, in gateway chains, carry a writer MAC of the keyring\n",
               s->mac_held);
    if (s->mac_unchecked)
        printf("note: the writer MACs of %" PRIu64 " of them, in gateway chains, were not checked "
               "(no keyring): nothing but their place shows that a gateway wrote them\n",
               s->mac_unchecked);
    for (size_t i = 0; i < s->nsigners; i++)
        printf("signed by key %s (%s)\n", ctl_esc(&e, s->signer[i]), gw_sign_alg_name(s->alg[i]));
    if (s->more_signers)
        printf("note: more than %d keys signed; only the first %d are listed\n", SIGNERS_MAX,
               SIGNERS_MAX);
    if (pinned)
        printf("signers pinned: %s\n", pinned);
    else
        printf("note: the signers are not pinned (%s): any key %s was accepted; "
               "compare the key ids above with the ones the operator published\n",
               live ? "--unpinned" : "no --trust-key",
               live ? "of the audit_key table" : "the bundle lists");
    ctl_esc_clear(&e);
}

/* A --trust-key value: a key id as the bundle format writes it, 64 lowercase hex digits. */
static bool key_id_ok(const char *s)
{
    size_t n = strlen(s);
    return n == 64 && strspn(s, "0123456789abcdef") == n;
}

/* The writer-MAC keys the live check holds uncovered gateway records to (n 0: none, no keyring
 * was read), with the crypto context that computes them. */
struct writer_macs {
    struct gw_crypto *cx;
    struct gw_audit_mac_keys k;
};

static void writer_macs_free(struct writer_macs *m)
{
    OPENSSL_cleanse(&m->k, sizeof m->k);
    gw_crypto_free(m->cx);
    m->cx = NULL;
}

/* Reads the keyring at path: the audit public key of each suite it holds, by key id, into ids
 * (GW_SUITE_COUNT entries) and *n (the live check's pins when no --trust-key is given), and each
 * one's writer-MAC key into m. Returns 0, or GW_CTL_FAIL after saying why (a keyring named but
 * unreadable, or without an audit key, is a failure: the operator asked for the check it would
 * pin). */
static int load_keyring(const char *path, char ids[GW_SUITE_COUNT][65], size_t *n,
                        struct writer_macs *m)
{
    static const enum gw_suite suites[GW_SUITE_COUNT] = {GW_SUITE_AES, GW_SUITE_SM};
    struct gw_keyring *kr = NULL;
    char err[512];
    int rc = GW_CTL_FAIL;
    *n = 0;
    if (gw_keyring_file_load(path, &kr, err, sizeof err) != 0) {
        fprintf(stderr, ME " verify: keyring: %s (give --trust-key KEYID to pin without it)\n",
                err);
        return GW_CTL_FAIL;
    }
    if ((m->cx = gw_crypto_new()) == NULL) {
        fprintf(stderr, ME " verify: out of memory\n");
        goto out;
    }
    for (size_t i = 0; i < GW_SUITE_COUNT; i++) {
        struct gw_sign_key k = {gw_audit_sign_alg(suites[i]), gw_keyring_audit_seed(kr, suites[i])};
        uint8_t pub[GW_SIGN_PUB_MAX];
        size_t publen = 0;
        if (!gw_keyring_has_suite(kr, suites[i]) || k.seed == NULL)
            continue;
        if (gw_sign_public(&k, pub, &publen) != 0 || gw_audit_key_id(pub, publen, ids[*n]) != 0 ||
            gw_audit_mac_keys_add(m->cx, &m->k, &k) != 0) {
            fprintf(stderr, ME " verify: keyring %s: its %s audit key is unusable\n", path,
                    gw_suite_name(suites[i]));
            goto out;
        }
        (*n)++;
    }
    if (*n == 0) {
        fprintf(stderr, ME " verify: keyring %s has no audit key to pin (give --trust-key KEYID)\n",
                path);
        goto out;
    }
    rc = 0;
out:
    gw_keyring_free(kr);
    return rc;
}

/* The bad places one check found: each said as found (a FAILED line), the first
 * BREAKS_RECORDED kept for the incidents of a live check, the rest counted. */
struct breaks {
    const char *path; /* a bundle's file, named on stderr; NULL: the live trail */
    size_t n;         /* places found */
    char why[BREAKS_RECORDED][GW_BUNDLE_ERR_MAX];
    const char *kind[BREAKS_RECORDED]; /* each one's incident kind */
};

/* A bad place of kind (the incident's) found. */
static void add_place(struct breaks *b, const char *kind, const char *place)
{
    struct ctl_esc e = {0};
    const char *said = ctl_esc(&e, place); /* it names a chain of the trail or the bundle */

    if (b->path)
        fprintf(stderr, ME " verify: FAILED: %s: %s\n", b->path, said);
    else
        fprintf(stderr, ME " verify: FAILED: %s\n", said);
    printf("FAILED: %s\n", said);
    ctl_esc_clear(&e);
    if (b->n < BREAKS_RECORDED) {
        snprintf(b->why[b->n], sizeof b->why[0], "%s", place);
        b->kind[b->n] = kind;
    }
    b->n++;
}

static void break_cb(void *arg, const char *place)
{
    add_place(arg, "audit_chain_break", place);
}

/* After a check that found bad places: how much of each chain it read was checked, and how much
 * of that no checkpoint that holds covers (verify_bundle.py prints the same lines). Adds them up
 * in *records and *not_covered. */
static void print_tallies(const struct gw_bundle_verifier *v, uint64_t *records,
                          uint64_t *not_covered)
{
    struct ctl_esc e = {0};
    uint64_t n, u;
    const char *id;
    for (size_t i = 0; (id = gw_bundle_verify_tally(v, i, &n, &u)) != NULL; i++) {
        printf("checked: chain %s: %" PRIu64 " records, %" PRIu64
               " not covered by a valid checkpoint\n",
               ctl_esc(&e, id), n, u);
        ctl_esc_clear(&e);
        *records += n;
        *not_covered += u;
    }
}

/* The bundle at path through a new verifier (*out, the caller frees it, even on failure).
 * Returns 0, or GW_CTL_FAIL after saying why (each bad place as a FAILED line). */
static int check_file(const char *path, const struct gw_bundle_verify_opts *vo,
                      struct gw_bundle_verifier **out)
{
    uint8_t buf[65536];
    size_t n;
    int r = 0;
    struct breaks b = {.path = path};
    struct gw_bundle_verify_opts o = *vo;
    FILE *f = fopen(path, "rb");
    *out = NULL;
    if (!f) {
        fprintf(stderr, ME " verify: %s: %s\n", path, strerror(errno));
        return GW_CTL_FAIL;
    }
    o.report = break_cb;
    o.report_arg = &b;
    if (gw_bundle_verifier_new(&o, out) != 0) {
        fprintf(stderr, ME " verify: out of memory\n");
        fclose(f);
        return GW_CTL_FAIL;
    }
    while (r == 0 && (n = fread(buf, 1, sizeof buf, f)) > 0)
        r = gw_bundle_verify_feed(*out, buf, n);
    if (ferror(f)) {
        fprintf(stderr, ME " verify: %s: read error\n", path);
        fclose(f);
        return GW_CTL_FAIL;
    }
    fclose(f);
    if (r == 0)
        r = gw_bundle_verify_end(*out);
    if (r != 0 && (r != GW_EDATALOSS || b.n == 0)) /* a failure, not a bad place: said here */
        break_cb(&b, gw_bundle_verify_error(*out));
    if (r == GW_EDATALOSS) {
        uint64_t nrec = 0, nu = 0;
        print_tallies(*out, &nrec, &nu);
    }
    return r != 0 ? GW_CTL_FAIL : 0;
}

/* ---- audit verify (live) ---- */

/* A bad place of the live trail is an incident (Art. 17): critical, kind audit_chain_break (or
 * destruction_unrecorded), the place as detail (chain and seq numbers, a destruction's id, count
 * and time: the verifier's words never quote a record). */
static void record_break(struct gw_admin *a, const struct audit_opts *o, const char *kind,
                         const char *place)
{
    char err[512];
    if (gw_admin_incident(a, "critical", kind, ctl_admin_actor(o->actor), NULL, place, err,
                          sizeof err) != 0)
        fprintf(stderr, ME " verify: the incident could not be recorded: %s\n", err);
}

/* The audit_key table, read once for every chain's verifier. */
struct keyset {
    struct {
        uint8_t pub[GW_SIGN_PUB_MAX];
        size_t len;
    } * k;
    size_t n, cap;
};

static int keyset_add(void *arg, const uint8_t *pub, size_t publen)
{
    struct keyset *ks = arg;
    if (publen > sizeof ks->k[0].pub)
        return GW_EINVAL;
    if (ks->n == ks->cap) {
        size_t cap = ks->cap ? ks->cap * 2 : 8;
        void *k = gw_realloc(ks->k, cap * sizeof ks->k[0]);
        if (!k)
            return GW_ENOMEM;
        ks->k = k;
        ks->cap = cap;
    }
    memcpy(ks->k[ks->n].pub, pub, publen);
    ks->k[ks->n++].len = publen;
    return 0;
}

/* What the live check read of the chains it found broken. */
struct broken_tally {
    size_t chains;
    uint64_t records, not_covered;
};

/* What the writer-MAC check of one chain's uncovered records found. */
struct mac_tally {
    const struct writer_macs *m;
    uint64_t held, missing, wrong;
    int64_t first_missing, first_wrong;
};

static int mac_cb(void *arg, int64_t seq, const uint8_t hash[GW_AUDIT_HASH_LEN], const uint8_t *mac)
{
    struct mac_tally *t = arg;
    if (mac == NULL) {
        if (t->missing++ == 0)
            t->first_missing = seq;
    } else if (!gw_audit_mac_ok(t->m->cx, &t->m->k, hash, GW_AUDIT_HASH_LEN, mac)) {
        if (t->wrong++ == 0)
            t->first_wrong = seq;
    } else {
        t->held++;
    }
    return 0;
}

/* The records of a gateway chain (verified) that no checkpoint covers yet must each carry a
 * writer MAC of the keyring (sql/028_audit_writer_mac.sql): a record's hash uses no secret, so
 * whoever holds the gateway's database role can append one that links properly, and until a
 * checkpoint covers it only the MAC shows that a gateway wrote it. Each kind of fault is one bad
 * place, named at its first record with the count. Without a keyring (m->k.n 0) the records are
 * counted as unchecked. Returns 0, GW_EDATALOSS after naming the faults, or GW_EINTERNAL with
 * the server's message in errbuf. */
static int check_writer_macs(struct gw_admin *a, const struct gw_bundle_verifier *v,
                             const struct gw_audit_span *sp, const struct writer_macs *m,
                             struct summary *sum, struct breaks *br, char *errbuf, size_t errlen)
{
    struct mac_tally t = {.m = m};
    char why[GW_BUNDLE_ERR_MAX];
    int64_t from, to;
    int r;
    if (!sp->gateway || gw_bundle_verify_uncovered(v, 0, &from, &to) == NULL || from < 0)
        return 0;
    if (m->k.n == 0) {
        sum->mac_unchecked += (uint64_t)(to - from + 1);
        return 0;
    }
    r = gw_audit_read_macs(a, sp->chain, from, to, BATCH, mac_cb, &t, errbuf, errlen);
    if (r != 0)
        return r;
    if (t.missing) {
        snprintf(why, sizeof why,
                 "chain %s: seq %" PRId64 ": no checkpoint covers it and it carries no writer "
                 "MAC: nothing shows that a gateway holding this keyring wrote it (%" PRIu64
                 " such record%s in seq %" PRId64 "..%" PRId64 ")",
                 sp->chain, t.first_missing, t.missing, t.missing == 1 ? "" : "s", from, to);
        break_cb(br, why);
    }
    if (t.wrong) {
        snprintf(why, sizeof why,
                 "chain %s: seq %" PRId64 ": no checkpoint covers it and its writer MAC is not "
                 "one this keyring makes (%" PRIu64 " such record%s in seq %" PRId64 "..%" PRId64
                 ")",
                 sp->chain, t.first_wrong, t.wrong, t.wrong == 1 ? "" : "s", from, to);
        break_cb(br, why);
    }
    if (t.missing || t.wrong)
        return GW_EDATALOSS;
    sum->mac_held += t.held;
    return 0;
}

/* A destruction no gateway's record accounts for (gw_audit_read_unrecorded): the gateway writes
 * each destruction's record in its transaction, and its database role can call the destruction
 * functions (sql/009) itself, with a bulk request row it wrote, so a destruction without its
 * record is one not done through the gateway (or whose record is gone). A bad place each. */
static int unrecorded_cb(void *arg, const struct gw_audit_unrecorded *u)
{
    char why[GW_BUNDLE_ERR_MAX];
    bool bulk = strcmp(u->reason, "bulk") == 0;
    snprintf(why, sizeof why,
             "destruction %" PRId64 " (%s%s%s, %" PRId64 " record%s, at %s): no %s record of a "
             "gateway's chain accounts for it: not done through the gateway, or its record is "
             "gone",
             u->id, u->reason, bulk ? ", request " : "", bulk && u->request_id ? u->request_id : "",
             u->count, u->count == 1 ? "" : "s", u->at, bulk ? "bulk.run" : "retention.destroy");
    add_place(arg, "destruction_unrecorded", why);
    return 0;
}

/* One chain of the live trail through a verifier of its own (every key, then the chain). Returns
 * 0 (its figures and signers added to sum), GW_EDATALOSS after its bad places went to br (each
 * a FAILED line; then how much of the chain was checked is printed and added to bt), or another
 * error (said here). */
static int verify_one_chain(struct gw_admin *a, const struct gw_bundle_verify_opts *vo,
                            const struct keyset *ks, const struct writer_macs *m,
                            const struct gw_audit_span *sp, struct summary *sum, struct breaks *br,
                            struct broken_tally *bt)
{
    struct gw_bundle_header h = {"waygatectl", gw_clock_real_us(), 0, INT64_MAX, NULL};
    struct gw_bundle_verifier *v = NULL;
    struct gw_bundle_writer *w = NULL;
    struct fill f = {NULL, NULL, 0, br, 0};
    struct gw_bundle_verify_opts o = *vo;
    char err[512];
    int r;
    o.report = break_cb;
    o.report_arg = br;
    r = gw_bundle_verifier_new(&o, &v);
    if (r == 0)
        r = gw_bundle_writer_new(gw_bundle_verify_sink, v, &h, &w);
    f.w = w;
    for (size_t i = 0; r == 0 && i < ks->n; i++)
        r = gw_bundle_write_key(w, ks->k[i].pub, ks->k[i].len);
    if (r == 0)
        r = gw_audit_read_span(a, sp, BATCH, row_cb, ckpt_cb, &f, err, sizeof err);
    if (r == 0)
        r = gw_bundle_finish(w, NULL);
    if (r == 0 || r == GW_EDATALOSS)
        r = gw_bundle_verify_end(v);
    if (r == 0 && f.left_out > 0) /* named already, in break_cb */
        r = GW_EDATALOSS;
    if (r == 0)
        r = check_writer_macs(a, v, sp, m, sum, br, err, sizeof err);
    if (r == 0) {
        summary_add(sum, v);
    } else if (r == GW_EDATALOSS) {
        bt->chains++;
        print_tallies(v, &bt->records, &bt->not_covered);
    } else if (r == GW_EINTERNAL) {
        fprintf(stderr, ME " verify: reading the audit trail: %s\n", err);
    } else {
        fprintf(stderr, ME " verify: %s\n", gw_err_str(r));
    }
    gw_bundle_writer_free(w);
    gw_bundle_verifier_free(v);
    return r;
}

/* The live trail is checked whole (records are never deleted, so every chain starts at seq 1 and
 * no checkpoint may stand in for missing records) and its signers pinned: --trust-key, else the
 * keyring's audit keys; the audit_key table alone is the database's word, which whoever could
 * rewrite the trail could also extend. */
static int verify_live(const struct audit_opts *o)
{
    const char *pins[GW_BUNDLE_TRUST_MAX];
    char kr_ids[GW_SUITE_COUNT][65], pinned[4200];
    struct gw_bundle_verify_opts vo = {.unsealed = true, .whole = true};
    struct gw_audit_span *sp = NULL;
    struct gw_admin *a = NULL;
    struct summary sum;
    size_t n = 0, since_broken = 0;
    struct broken_tally bt = {0, 0, 0};
    struct breaks br = {.path = NULL, .n = 0};
    struct gw_bundle_verifier *since = NULL; /* --since: the earlier bundle, verified */
    struct keyset keys = {NULL, 0, 0};
    struct writer_macs macs;
    size_t nsince = 0, unrecorded = 0;
    char unrecorded_txt[64] = "";
    int64_t seq = 0;
    uint8_t head[GW_AUDIT_HASH_LEN];
    const char *keyring = o->keyring ? o->keyring : getenv("WAYGATE_KEYRING");
    char err[512];
    size_t nkr = 0;
    int r, rc;

    pinned[0] = '\0';
    memset(&macs, 0, sizeof macs);
    /* the keyring pins the signers when no --trust-key is given, and gives the writer-MAC keys
     * whenever it is read: with --trust-key, only when --keyring names it */
    if ((o->ntrust == 0 || o->keyring != NULL) && keyring != NULL && keyring[0] != '\0' &&
        load_keyring(keyring, kr_ids, &nkr, &macs) != 0) {
        writer_macs_free(&macs);
        return GW_CTL_FAIL;
    }
    if (o->ntrust > 0) {
        vo.trust_keys = o->trust;
        vo.ntrust = o->ntrust;
        snprintf(pinned, sizeof pinned, "the %zu key%s given by --trust-key", o->ntrust,
                 o->ntrust == 1 ? "" : "s");
    } else if (nkr > 0) {
        for (size_t i = 0; i < nkr; i++)
            pins[i] = kr_ids[i];
        vo.trust_keys = pins;
        vo.ntrust = nkr;
        snprintf(pinned, sizeof pinned, "the audit key%s of keyring %s", nkr == 1 ? "" : "s",
                 keyring);
    } else if (!o->unpinned) {
        /* the audit_key table is the database's word: whoever could rewrite the trail could
         * add a key to it, so a pass against it proves nothing unless asked for by name */
        fprintf(stderr, ME " verify: nothing pins the checkpoints' signers: give --keyring PATH "
                           "(or set WAYGATE_KEYRING) or --trust-key KEYID; --unpinned checks "
                           "against any key of the audit_key table, which whoever can write "
                           "the trail can add to\n");
        writer_macs_free(&macs);
        return GW_CTL_USAGE;
    }
    if (o->since != NULL) { /* the bundle first, under the same pins */
        struct gw_bundle_verify_opts bo = {.trust_keys = vo.trust_keys, .ntrust = vo.ntrust};
        if (check_file(o->since, &bo, &since) != 0) {
            gw_bundle_verifier_free(since);
            writer_macs_free(&macs);
            return GW_CTL_FAIL;
        }
        while (gw_bundle_verify_chain(since, nsince, &seq, head) != NULL)
            nsince++;
    }
    rc = ctl_admin_db("audit verify", o->db, &a);
    if (rc != 0) {
        gw_bundle_verifier_free(since);
        writer_macs_free(&macs);
        return rc;
    }
    rc = GW_CTL_FAIL;
    memset(&sum, 0, sizeof sum);
    if (gw_audit_read_begin(a, err, sizeof err) != 0) {
        fprintf(stderr, ME " verify: cannot start: %s\n", err);
        goto out;
    }
    r = gw_audit_read_keys(a, keyset_add, &keys, err, sizeof err);
    if (r == 0)
        r = gw_audit_read_plan(a, true, o->from_us, o->to_us, &sp, &n, err, sizeof err);
    if (r == GW_EINTERNAL)
        fprintf(stderr, ME " verify: reading the audit trail: %s\n", err);
    else if (r != 0)
        fprintf(stderr, ME " verify: %s\n", gw_err_str(r));
    /* each chain on its own: a break in one (a junk chain planted to sort first included) must
     * not hide a break in another; within a chain, a bad checkpoint (one planted included) is
     * named and gone past */
    for (size_t i = 0; r == 0 && i < n; i++) {
        int c = verify_one_chain(a, &vo, &keys, &macs, &sp[i], &sum, &br, &bt);
        if (c != GW_EDATALOSS)
            r = c;
    }
    /* the trail still holds the head each chain of the earlier bundle vouched for: records (and
     * the checkpoints over them) cut after the bundle was made leave a chain that verifies on
     * its own */
    for (size_t i = 0; r == 0 && i < nsince; i++) {
        uint8_t have[GW_AUDIT_HASH_LEN];
        bool found = false;
        const char *id = gw_bundle_verify_chain(since, i, &seq, head);
        char why[GW_BUNDLE_ERR_MAX];
        if (seq < 0)
            continue;
        r = gw_audit_read_hash(a, id, seq, have, &found, err, sizeof err);
        if (r != 0) {
            fprintf(stderr, ME " verify: reading the audit trail: %s\n", err);
            break;
        }
        if (found && memcmp(have, head, sizeof have) == 0)
            continue;
        snprintf(why, sizeof why,
                 "chain %s: seq %" PRId64 " of the earlier bundle %s: the trail %s", id, seq,
                 o->since,
                 found ? "has another record there (rewritten since)"
                       : "no longer holds it (cut since)");
        break_cb(&br, why);
        since_broken++;
    }
    /* every destruction has the record the gateway writes with it (Art. 26, 37) */
    if (r == 0) {
        size_t before = br.n;
        r = gw_audit_read_unrecorded(a, unrecorded_cb, &br, err, sizeof err);
        if (r != 0)
            fprintf(stderr, ME " verify: reading the destructions: %s\n", err);
        unrecorded = br.n - before;
    }
    if (gw_audit_read_end(a, err, sizeof err) != 0 && r == 0) {
        fprintf(stderr, ME " verify: %s\n", err);
        r = GW_EINTERNAL;
    }
    /* after the read-only snapshot: an incident each, at most BREAKS_RECORDED (junk chains the
     * gateway's role may register must not flood the incident table), then one that counts the
     * rest */
    for (size_t i = 0; i < br.n && i < BREAKS_RECORDED; i++)
        record_break(a, o, br.kind[i], br.why[i]);
    if (br.n > BREAKS_RECORDED) {
        char more[96];
        snprintf(more, sizeof more, "and %zu more broken places (audit verify lists them)",
                 br.n - BREAKS_RECORDED);
        record_break(a, o, "audit_chain_break", more);
    }
    if (unrecorded > 0)
        snprintf(unrecorded_txt, sizeof unrecorded_txt, ", %zu destruction%s without %s record",
                 unrecorded, unrecorded == 1 ? "" : "s", unrecorded == 1 ? "its" : "their");
    if (r == 0 && br.n > 0)
        fprintf(stderr,
                ME " verify: %zu broken place%s (%zu of %zu chains, %zu against --since%s); in "
                   "the broken chains %" PRIu64 " records checked, %" PRIu64
                   " not covered by a valid checkpoint\n",
                br.n, br.n == 1 ? "" : "s", bt.chains, n, since_broken, unrecorded_txt, bt.records,
                bt.not_covered);
    else if (r == 0) {
        sum.st.chains = n; /* chains without a record count too */
        print_ok(&sum, true, pinned[0] ? pinned : NULL);
        rc = GW_CTL_OK;
    }
out:
    gw_free(keys.k);
    gw_free(sp);
    gw_bundle_verifier_free(since);
    gw_admin_free(a);
    writer_macs_free(&macs);
    return rc;
}

/* ---- audit verify FILE ---- */

static int verify_file(const char *path, const struct audit_opts *o)
{
    struct gw_bundle_verify_opts vo = {.trust_keys = o->trust, .ntrust = o->ntrust};
    struct summary sum;
    char pinned[64];
    struct gw_bundle_verifier *v = NULL;
    int rc;
    if (o->unpinned) {
        fprintf(stderr, ME " verify FILE: --unpinned: only for the live check (a bundle's check "
                           "without --trust-key says its signers are not pinned)\n");
        return GW_CTL_USAGE;
    }
    rc = check_file(path, &vo, &v);
    if (rc == 0) {
        memset(&sum, 0, sizeof sum);
        snprintf(pinned, sizeof pinned, "the %zu key%s given by --trust-key", o->ntrust,
                 o->ntrust == 1 ? "" : "s");
        summary_add(&sum, v);
        print_ok(&sum, false, o->ntrust ? pinned : NULL);
    }
    gw_bundle_verifier_free(v);
    return rc;
}

/* ---- audit export ---- */

struct file_sink {
    FILE *f;
    struct gw_bundle_verifier *v; /* the output checked as it is written */
};

static int file_sink_cb(void *arg, const uint8_t *p, size_t n)
{
    struct file_sink *s = arg;
    if (fwrite(p, 1, n, s->f) != n)
        return GW_EIO;
    /* a bad place of the trail is reported after the export, which shows it as stored */
    if (gw_bundle_verify_feed(s->v, p, n) == GW_ENOMEM)
        return GW_ENOMEM;
    return 0;
}

/* Records the export (admin_log and the audit record audit.export on chain 'ctl', one
 * transaction) before the bundle gets its name: a bundle that was not recorded is removed. */
static int record_export(struct gw_admin *a, const struct audit_opts *o, uint64_t records,
                         const uint8_t digest[GW_AUDIT_HASH_LEN])
{
    struct ctl_admin c = {.actor = ctl_admin_actor(o->actor), .a = a};
    char object[64], detail[128];
    int n, rc;
    snprintf(c.cmd, sizeof c.cmd, "audit export");
    snprintf(c.action, sizeof c.action, "audit.export");
    snprintf(object, sizeof object, "%lld..%lld", (long long)(o->from_us / 1000000),
             (long long)(o->to_us / 1000000));
    n = snprintf(detail, sizeof detail, "records=%llu sha256=", (unsigned long long)records);
    for (size_t i = 0; i < GW_AUDIT_HASH_LEN && n > 0 && (size_t)n + 3 <= sizeof detail; i++)
        n += snprintf(detail + n, sizeof detail - (size_t)n, "%02x", digest[i]);
    rc = ctl_admin_begin(&c);
    if (rc == 0)
        rc = ctl_admin_log(&c, object, "ok", detail);
    if (rc == 0)
        rc = ctl_admin_commit(&c);
    if (rc != 0) {
        ctl_admin_rollback(&c);
        fprintf(stderr, ME " export: the export could not be recorded, so no bundle was kept\n");
    }
    return rc;
}

/* The suite an export signs with, as the daemon would: --suite; else [crypto] suite of the
 * daemon's configuration file, when $WAYGATE_CONF names one (the dev stack's env does); else the
 * keyring's default. kr must hold it. Then kr and the CLI's own checkpoint (ctl_record.h) use it.
 * Returns 0, or GW_CTL_FAIL after saying why. */
static int export_suite(const struct audit_opts *o, struct gw_keyring *kr)
{
    const char *conf = getenv("WAYGATE_CONF");
    enum gw_suite suite = gw_keyring_suite(kr);
    const char *from = "the keyring's default";
    char err[512];

    if (o->has_suite) {
        suite = o->suite;
        from = "--suite";
    } else if (conf != NULL && conf[0] != '\0') {
        struct gw_config cfg;
        if (gw_config_load(conf, &cfg, err, sizeof err) != 0) {
            fprintf(stderr, ME " export: WAYGATE_CONF: %s (give --suite aes|sm)\n", err);
            return GW_CTL_FAIL;
        }
        suite = (enum gw_suite)cfg.crypto_suite;
        from = "[crypto] suite of $WAYGATE_CONF";
        gw_config_clear(&cfg);
    }
    if (!gw_keyring_has_suite(kr, suite) || gw_keyring_set_suite(kr, suite) != 0) {
        fprintf(stderr,
                ME " export: --suite: keyring %s has no keys of the %s suite (%s; keys add-suite "
                   "--suite %s, or --suite with a suite it has)\n",
                o->keyring, gw_suite_name(suite), from, gw_suite_name(suite));
        return GW_CTL_FAIL;
    }
    ctl_audit_use_suite(suite);
    return 0;
}

static int export_bundle(const struct audit_opts *o)
{
    struct gw_bundle_verify_opts vo = {0};
    struct gw_bundle_header h = {"waygatectl", gw_clock_real_us(), o->from_us, o->to_us,
                                 ctl_admin_actor(o->actor)};
    struct gw_keyring *kr = NULL;
    struct gw_bundle_writer *w = NULL;
    struct gw_admin *a = NULL;
    struct file_sink s = {NULL, NULL};
    uint8_t pub[GW_SIGN_PUB_MAX], digest[GW_AUDIT_HASH_LEN];
    size_t publen = 0;
    struct gw_sign_key key;
    char err[512], tmp[4096];
    int r, fd = -1, rc = GW_CTL_FAIL;

    if (gw_keyring_file_load(o->keyring, &kr, err, sizeof err) != 0) {
        fprintf(stderr, ME " export: keyring: %s\n", err);
        return GW_CTL_FAIL;
    }
    if (export_suite(o, kr) != 0)
        goto out;
    if (gw_audit_signer(kr, &key) != 0 || gw_sign_public(&key, pub, &publen) != 0) {
        fprintf(stderr, ME " export: keyring: has no audit signing key\n");
        goto out;
    }
    rc = ctl_admin_db("audit export", o->db, &a);
    if (rc != 0)
        goto out;
    rc = GW_CTL_FAIL;
    /* The bundle holds confidential (lawful-access) records: OUT.partial is made new, 0600,
     * never through a file or a symbolic link already there (whoever can write the directory
     * could otherwise redirect the bundle or read it), and renamed over OUT once complete. */
    snprintf(tmp, sizeof tmp, "%s.partial", o->out);
    r = gw_file_create_new(tmp, &fd, err, sizeof err);
    if (r != 0) {
        fprintf(stderr, ME " export: %s%s\n", err,
                r == GW_EEXIST ? "; if an interrupted export left it, check and remove it, then "
                                 "export again"
                               : "");
        goto out;
    }
    s.f = fdopen(fd, "wb");
    if (!s.f) {
        fprintf(stderr, ME " export: %s: %s\n", tmp, strerror(errno));
        close(fd);
        remove(tmp);
        goto out;
    }
    if (gw_bundle_verifier_new(&vo, &s.v) != 0 || gw_audit_read_begin(a, err, sizeof err) != 0) {
        fprintf(stderr, ME " export: cannot start: %s\n", s.v ? err : "out of memory");
        goto out;
    }
    r = gw_bundle_writer_new(file_sink_cb, &s, &h, &w);
    if (r == 0)
        r = fill(a, w, o, pub, publen);
    if (r == 0)
        r = gw_bundle_finish(w, &key);
    if (r == 0 && gw_audit_read_end(a, err, sizeof err) != 0) {
        fprintf(stderr, ME " export: %s\n", err);
        goto out;
    }
    if (r == 0 && (fflush(s.f) != 0 || fsync(fileno(s.f)) != 0))
        r = GW_EIO;
    if (r != 0) {
        if (r != GW_EINTERNAL)
            fprintf(stderr, ME " export: writing %s: %s\n", tmp, gw_err_str(r));
        goto out;
    }
    fclose(s.f);
    s.f = NULL;
    gw_bundle_writer_digest(w, digest);
    if (record_export(a, o, gw_bundle_writer_records(w), digest) != 0) {
        remove(tmp);
        goto out;
    }
    if (rename(tmp, o->out) != 0) {
        fprintf(stderr, ME " export: %s: %s\n", o->out, strerror(errno));
        remove(tmp);
        goto out;
    }
    if (gw_file_sync_dir(o->out, err, sizeof err) != 0) {
        /* written and recorded, but its name may not survive a crash: say so, exit 1 */
        fprintf(stderr, ME " export: %s: written, but %s\n", o->out, err);
        goto out;
    }
    printf("wrote %s: %" PRIu64 " records, sha256 ", o->out, gw_bundle_writer_records(w));
    for (size_t i = 0; i < sizeof digest; i++)
        printf("%02x", digest[i]);
    printf(", sealed under suite %s (%s)\n", gw_suite_name(gw_keyring_suite(kr)),
           key.alg == GW_SIGN_SM2 ? "SM2" : "Ed25519");
    if (gw_bundle_verify_end(s.v) != 0) {
        /* exported as stored: the trail itself has bad places, which the bundle shows */
        struct gw_bundle_verify_stats st;
        struct ctl_esc e = {0};
        const char *why = ctl_esc(&e, gw_bundle_verify_error(s.v));
        gw_bundle_verify_stats(s.v, &st);
        fprintf(stderr, ME " export: WARNING: the exported trail does not verify: %s\n", why);
        printf("WARNING: does not verify: %s\n", why);
        ctl_esc_clear(&e);
        if (st.bad > 1)
            printf("WARNING: and %" PRIu64 " more bad place%s (audit verify %s lists them)\n",
                   st.bad - 1, st.bad == 2 ? "" : "s", o->out);
    }
    rc = GW_CTL_OK;
out:
    if (s.f) {
        fclose(s.f);
        remove(tmp);
    }
    gw_bundle_writer_free(w);
    gw_bundle_verifier_free(s.v);
    gw_admin_free(a);
    gw_keyring_free(kr);
    return rc;
}

/* ---- options ---- */

static int parse_opts(int argc, char **argv, struct audit_opts *o, const char **file)
{
    static const struct option opts[] = {
        {"db", required_argument, NULL, 'd'},    {"keyring", required_argument, NULL, 'k'},
        {"out", required_argument, NULL, 'o'},   {"from", required_argument, NULL, 'f'},
        {"to", required_argument, NULL, 't'},    {"trust-key", required_argument, NULL, 'K'},
        {"actor", required_argument, NULL, 'a'}, {"suite", required_argument, NULL, 's'},
        {"since", required_argument, NULL, 'S'}, {"unpinned", no_argument, NULL, 'U'},
        {"help", no_argument, NULL, 'h'},        {NULL, 0, NULL, 0},
    };
    int c;
    optind = 2;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'd':
            o->db = optarg;
            break;
        case 'k':
            o->keyring = optarg;
            break;
        case 'o':
            o->out = optarg;
            break;
        case 'K':
            if (!key_id_ok(optarg)) {
                fprintf(stderr, ME ": --trust-key: must be a key id, 64 lowercase hex digits\n");
                return GW_CTL_USAGE;
            }
            if (o->ntrust == GW_BUNDLE_TRUST_MAX) {
                fprintf(stderr, ME ": --trust-key: at most %d keys\n", GW_BUNDLE_TRUST_MAX);
                return GW_CTL_USAGE;
            }
            o->trust[o->ntrust++] = optarg;
            break;
        case 'a':
            o->actor = optarg;
            break;
        case 'S':
            o->since = optarg;
            break;
        case 'U':
            o->unpinned = true;
            break;
        case 's':
            if (gw_suite_parse(optarg, &o->suite) != 0) {
                fprintf(stderr, ME ": --suite: must be aes or sm\n");
                return GW_CTL_USAGE;
            }
            o->has_suite = true;
            break;
        case 'f':
        case 't':
            if (!parse_time(optarg, c == 'f' ? &o->from_us : &o->to_us)) {
                fprintf(stderr,
                        ME ": --%s: must be seconds since the epoch or "
                           "YYYY-MM-DDTHH:MM:SSZ\n",
                        c == 'f' ? "from" : "to");
                return GW_CTL_USAGE;
            }
            *(c == 'f' ? &o->have_from : &o->have_to) = true;
            break;
        case 'h':
            audit_usage(stdout);
            return -1;
        default:
            audit_usage(stderr);
            return GW_CTL_USAGE;
        }
    }
    if (optind < argc)
        *file = argv[optind++];
    if (optind != argc) {
        fprintf(stderr, ME ": unexpected argument '%s'\n", argv[optind]);
        return GW_CTL_USAGE;
    }
    return 0;
}

int gw_ctl_audit(int argc, char **argv)
{
    struct audit_opts o = {0};
    const char *file = NULL, *verb;
    int rc;
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        audit_usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? GW_CTL_USAGE : GW_CTL_OK;
    }
    verb = argv[1];
    rc = parse_opts(argc, argv, &o, &file);
    if (rc != 0)
        return rc < 0 ? GW_CTL_OK : rc;
    if (strcmp(verb, "verify") == 0) {
        if (o.has_suite) {
            /* verify signs nothing: each checkpoint is checked under its own key's algorithm */
            fprintf(stderr, ME " verify: --suite: only for export (verify checks every suite)\n");
            return GW_CTL_USAGE;
        }
        if (o.unpinned && o.ntrust > 0) {
            fprintf(stderr, ME " verify: --unpinned: not with --trust-key (which pins)\n");
            return GW_CTL_USAGE;
        }
        return file ? verify_file(file, &o) : verify_live(&o);
    }
    if (strcmp(verb, "export") == 0) {
        if (o.unpinned) {
            fprintf(stderr, ME " export: --unpinned: only for verify\n");
            return GW_CTL_USAGE;
        }
        if (file || !o.out || !o.have_from || !o.have_to) {
            fprintf(stderr, ME " export: --from, --to and --out are required\n");
            return GW_CTL_USAGE;
        }
        if (o.from_us >= o.to_us) {
            fprintf(stderr, ME " export: --from: must be before --to\n");
            return GW_CTL_USAGE;
        }
        if (!o.keyring)
            o.keyring = getenv("WAYGATE_KEYRING");
        if (!o.keyring || !o.keyring[0]) {
            fprintf(stderr, ME " export: no keyring: give --keyring PATH or set WAYGATE_KEYRING\n");
            return GW_CTL_USAGE;
        }
        /* the record of the export is covered by a checkpoint signed with the same keyring */
        if (setenv("WAYGATE_KEYRING", o.keyring, 0) != 0)
            return GW_CTL_FAIL;
        return export_bundle(&o);
    }
    fprintf(stderr, ME ": unknown action '%s' (verify, export)\n", verb);
    audit_usage(stderr);
    return GW_CTL_USAGE;
}
