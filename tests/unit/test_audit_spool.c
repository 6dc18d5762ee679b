/* test_audit_spool.c: store/audit_spool.c, the file that keeps what the database did not take at
 * shutdown: its entries come back exactly (SQL, text, binary and NULL parameters, every record
 * field, an entry in doubt); a file with any byte flipped, cut short anywhere, written for another
 * chain or under another keyring's key, or malformed under a valid MAC is refused whole (no entry
 * handed out); a file over the cap is refused before it is read, and not written; a refused
 * file is moved aside under a new name each time, and only the newest four are kept. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <sys/stat.h>
#include <unistd.h>

#include "alloc.h"
#include "audit_signer.h"
#include "audit_spool.h"

#define CHAIN "gw-spool-test"

struct fx {
    char dir[64], path[128], tmp[160];
    struct gw_crypto *cx;
    struct gw_audit_mac_keys keys, other, sm;
    struct gw_audit_spool *sp;
};

static const uint8_t record_id[16] = {0xde, 0xad, 0, 0xbe, 0xef, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0};

static void keys_of(struct fx *f, struct gw_audit_mac_keys *k, uint8_t fill, enum gw_sign_alg alg)
{
    uint8_t seed[GW_SIGN_SEED_LEN];
    struct gw_sign_key key = {alg, seed};

    memset(seed, fill, sizeof seed);
    memset(k, 0, sizeof *k);
    assert_int_equal(gw_audit_spool_keys_add(f->cx, k, &key), 0);
}

/* The sample's records. */
static const struct gw_audit_rec rec0 = {.actor = "courier_a",
                                         .role = "courier",
                                         .peer = "127.0.0.1:5555",
                                         .branch = "a",
                                         .action = "incident",
                                         .object = "segment_violation",
                                         .count = 3,
                                         .outcome = "ok",
                                         .detail = "severity=medium"};
static const struct gw_audit_rec rec1 = {.actor = "gateway",
                                         .action = "config.reload",
                                         .object = "SIGHUP",
                                         .count = -1,
                                         .purpose = "p",
                                         .legal_basis = "lb",
                                         .approval = "ap",
                                         .cert = "c",
                                         .outcome = "ok",
                                         .detail = "",
                                         .confidential = true};
static const struct gw_audit_rec rec2 = {.actor = "x", .action = "y", .count = 0, .outcome = "ok"};
static const struct gw_audit_rec rec3 = {
    .actor = "gateway", .action = "gateway.start", .count = -1};

/* Three entries: an incident's row with its record, two records alone, an entry in doubt. */
static struct gw_audit_spool *sample(void)
{
    static const char *vals[5] = {"critical", "audit_spool_rejected", NULL, (const char *)record_id,
                                  "2026-12-05 07:00:00.000001+00"};
    static const int lens[5] = {0, 0, 0, sizeof record_id, 0};
    static const int fmts[5] = {0, 0, 0, 1, 0};
    struct gw_audit_spool *sp = gw_audit_spool_new(NULL);
    struct gw_audit_left e;

    assert_non_null(sp);
    memset(&e, 0, sizeof e);
    e.nstmts = 1;
    e.stmts[0] = (struct gw_db_stmt){
        "INSERT INTO incident VALUES ($1, $2, $3, $4, $5)", 5, vals, lens, fmts, 0};
    e.nrecs = 1;
    e.recs[0] = rec0;
    assert_int_equal(gw_audit_spool_add(sp, &e), 0);
    memset(&e, 0, sizeof e);
    e.nrecs = 2;
    e.recs[0] = rec1;
    e.recs[1] = rec2;
    assert_int_equal(gw_audit_spool_add(sp, &e), 0);
    memset(&e, 0, sizeof e);
    e.nstmts = 1;
    e.stmts[0] = (struct gw_db_stmt){"SELECT 1", 0, NULL, NULL, NULL, 1};
    e.nrecs = 1;
    e.recs[0] = rec3;
    e.in_doubt = true;
    e.doubt_seq = 42;
    memset(e.doubt_hash, 0xab, sizeof e.doubt_hash);
    assert_int_equal(gw_audit_spool_add(sp, &e), 0);
    assert_int_equal(gw_audit_spool_count(sp), 3);
    return sp;
}

static int setup(void **state)
{
    static struct fx f;

    memset(&f, 0, sizeof f);
    snprintf(f.dir, sizeof f.dir, "/tmp/gw-spool-XXXXXX");
    if (!mkdtemp(f.dir))
        return -1;
    snprintf(f.path, sizeof f.path, "%s/waygated.spool", f.dir);
    snprintf(f.tmp, sizeof f.tmp, "%s.tmp", f.path);
    f.cx = gw_crypto_new();
    if (f.cx == NULL)
        return -1;
    keys_of(&f, &f.keys, 0x11, GW_SIGN_ED25519);
    keys_of(&f, &f.other, 0x22, GW_SIGN_ED25519);
    keys_of(&f, &f.sm, 0x11, GW_SIGN_SM2);
    f.sp = sample();
    *state = &f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;

    gw_audit_spool_free(f->sp);
    gw_crypto_free(f->cx);
    unlink(f->path);
    unlink(f->tmp);
    return rmdir(f->dir) == 0 ? 0 : -1;
}

static void encode(struct fx *f, const struct gw_audit_mac_keys *k, const char *chain, uint8_t **b,
                   size_t *n)
{
    assert_int_equal(gw_audit_spool_encode(f->sp, f->cx, k, chain, b, n), 0);
}

/* buf refused: an error, a reason, and no spool handed out. */
static void refused(struct fx *f, const uint8_t *buf, size_t n, const struct gw_audit_mac_keys *k,
                    const char *chain)
{
    struct gw_audit_spool *got = (struct gw_audit_spool *)1;
    const char *why = NULL;

    assert_int_equal(gw_audit_spool_decode(buf, n, f->cx, k, chain, &got, &why), GW_EDATALOSS);
    assert_null(got);
    assert_non_null(why);
}

static void assert_same_str(const char *a, const char *b)
{
    if (a == NULL || b == NULL)
        assert_ptr_equal(a, b);
    else
        assert_string_equal(a, b);
}

static void assert_same_rec(const struct gw_audit_rec *a, const struct gw_audit_rec *b)
{
    assert_same_str(a->actor, b->actor);
    assert_same_str(a->role, b->role);
    assert_same_str(a->peer, b->peer);
    assert_same_str(a->cert, b->cert);
    assert_same_str(a->branch, b->branch);
    assert_same_str(a->action, b->action);
    assert_same_str(a->object, b->object);
    assert_same_str(a->purpose, b->purpose);
    assert_same_str(a->legal_basis, b->legal_basis);
    assert_same_str(a->approval, b->approval);
    assert_same_str(a->outcome, b->outcome);
    assert_same_str(a->detail, b->detail);
    assert_int_equal(a->count, b->count);
    assert_int_equal(a->confidential, b->confidential);
}

/* e begins with its mark: index idx, the spool id *id (taken from it when *id is NULL). */
static void assert_mark(const struct gw_audit_left *e, int idx, const uint8_t **id)
{
    char want[12];

    assert_true(gw_audit_spool_marked(e));
    assert_string_equal(e->stmts[0].sql, GW_AUDIT_SPOOL_MARK_SQL);
    snprintf(want, sizeof want, "%d", idx);
    assert_string_equal(e->stmts[0].values[1], want);
    if (*id == NULL)
        *id = (const uint8_t *)e->stmts[0].values[0];
    else
        assert_memory_equal(e->stmts[0].values[0], *id, GW_AUDIT_SPOOL_ID_LEN);
}

/* The sample read back: each entry behind its mark (one spool id, its index), as added. */
static void assert_sample(const struct gw_audit_spool *got)
{
    const struct gw_audit_left *e = gw_audit_spool_entry(got, 0);
    const struct gw_db_stmt *s = &e->stmts[1];
    const uint8_t *bin, *id = NULL;

    assert_int_equal(gw_audit_spool_version(got), 2);
    assert_int_equal(gw_audit_spool_count(got), 3);
    assert_int_equal(e->nstmts, 2);
    assert_mark(e, 0, &id);
    assert_string_equal(s->sql, "INSERT INTO incident VALUES ($1, $2, $3, $4, $5)");
    assert_int_equal(s->nparams, 5);
    assert_string_equal(s->values[0], "critical");
    assert_int_equal(s->formats[0], 0);
    assert_string_equal(s->values[1], "audit_spool_rejected");
    assert_null(s->values[2]);
    bin = (const uint8_t *)s->values[3];
    assert_int_equal(s->formats[3], 1);
    assert_int_equal(s->lengths[3], sizeof record_id);
    assert_memory_equal(bin, record_id, sizeof record_id);
    assert_string_equal(s->values[4], "2026-12-05 07:00:00.000001+00");
    assert_int_equal(s->result_format, 0);
    assert_int_equal(e->nrecs, 1);
    assert_false(e->in_doubt);
    assert_same_rec(&e->recs[0], &rec0);

    e = gw_audit_spool_entry(got, 1);
    assert_int_equal(e->nstmts, 1);
    assert_mark(e, 1, &id);
    assert_int_equal(e->nrecs, 2);
    assert_same_rec(&e->recs[0], &rec1);
    assert_same_rec(&e->recs[1], &rec2);

    e = gw_audit_spool_entry(got, 2);
    assert_true(e->in_doubt);
    assert_int_equal(e->doubt_seq, 42);
    for (size_t i = 0; i < sizeof e->doubt_hash; i++)
        assert_int_equal(e->doubt_hash[i], 0xab);
    assert_mark(e, 2, &id);
    assert_string_equal(e->stmts[1].sql, "SELECT 1");
    assert_int_equal(e->stmts[1].nparams, 0);
    assert_int_equal(e->stmts[1].result_format, 1);
    assert_same_rec(&e->recs[0], &rec3);
    assert_null(gw_audit_spool_entry(got, 3));
}

/* Encodes the sample under k, decodes it back whole; its bytes in *b (the caller wipes them). */
static void round_trip_under(struct fx *f, const struct gw_audit_mac_keys *k, uint8_t **b,
                             size_t *n)
{
    struct gw_audit_spool *got = NULL;
    const char *why = NULL;

    encode(f, k, CHAIN, b, n);
    assert_int_equal(gw_audit_spool_decode(*b, *n, f->cx, k, CHAIN, &got, &why), 0);
    assert_null(why);
    assert_sample(got);
    gw_audit_spool_free(got);
}

static void test_round_trip(void **state)
{
    struct fx *f = *state;
    uint8_t *b;
    size_t n;

    round_trip_under(f, &f->keys, &b, &n);
    gw_free_wipe(b, n);
}

static void test_round_trip_through_the_file(void **state)
{
    struct fx *f = *state;
    struct gw_audit_spool *got = NULL;
    struct stat st;
    char err[512];

    assert_int_equal(
        gw_audit_spool_load(f->path, 1 << 20, f->cx, &f->keys, CHAIN, &got, err, sizeof err),
        GW_ENOTFOUND);
    assert_int_equal(
        gw_audit_spool_save(f->sp, f->path, 1 << 20, f->cx, &f->keys, CHAIN, err, sizeof err), 0);
    assert_int_equal(stat(f->path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(access(f->tmp, F_OK), -1); /* renamed into place */
    /* a second save replaces the file */
    assert_int_equal(
        gw_audit_spool_save(f->sp, f->path, 1 << 20, f->cx, &f->keys, CHAIN, err, sizeof err), 0);
    assert_int_equal(
        gw_audit_spool_load(f->path, 1 << 20, f->cx, &f->keys, CHAIN, &got, err, sizeof err), 0);
    assert_sample(got);
    gw_audit_spool_free(got);
}

/* Under the sm suite's key (HMAC-SM3) it verifies as well, and neither suite's key takes the
 * other's file. */
static void test_sm_suite(void **state)
{
    struct fx *f = *state;
    uint8_t *b;
    size_t n;

    round_trip_under(f, &f->sm, &b, &n);
    refused(f, b, n, &f->keys, CHAIN);
    gw_free_wipe(b, n);
}

static void test_any_flipped_byte_is_refused(void **state)
{
    struct fx *f = *state;
    uint8_t *b;
    size_t n;

    encode(f, &f->keys, CHAIN, &b, &n);
    for (size_t i = 0; i < n; i++) {
        b[i] ^= 0x01;
        refused(f, b, n, &f->keys, CHAIN);
        b[i] ^= 0x01;
    }
    gw_free_wipe(b, n);
}

static void test_truncated_is_refused(void **state)
{
    struct fx *f = *state;
    uint8_t *b;
    size_t n;

    encode(f, &f->keys, CHAIN, &b, &n);
    for (size_t len = 0; len < n; len++)
        refused(f, b, len, &f->keys, CHAIN);
    gw_free_wipe(b, n);
}

static void test_another_chain_is_refused(void **state)
{
    struct fx *f = *state;
    struct gw_audit_spool *got = NULL;
    const char *why = NULL;
    uint8_t *b;
    size_t n;

    encode(f, &f->keys, CHAIN, &b, &n);
    refused(f, b, n, &f->keys, "gw-another");
    refused(f, b, n, &f->keys, CHAIN "x");
    assert_int_equal(gw_audit_spool_decode(b, n, f->cx, &f->keys, "gw-another", &got, &why),
                     GW_EDATALOSS);
    assert_string_equal(why, "it was written for another audit chain");
    gw_free_wipe(b, n);
}

static void test_another_key_is_refused(void **state)
{
    struct fx *f = *state;
    uint8_t *b;
    size_t n;

    encode(f, &f->keys, CHAIN, &b, &n);
    refused(f, b, n, &f->other, CHAIN);
    gw_free_wipe(b, n);
    /* the writer-MAC key of the same audit key is not the spool key */
    struct gw_audit_mac_keys writer = {0};
    uint8_t seed[GW_SIGN_SEED_LEN];
    struct gw_sign_key key = {GW_SIGN_ED25519, seed};
    memset(seed, 0x11, sizeof seed);
    assert_int_equal(gw_audit_mac_keys_add(f->cx, &writer, &key), 0);
    encode(f, &writer, CHAIN, &b, &n);
    refused(f, b, n, &f->keys, CHAIN);
    gw_free_wipe(b, n);
}

/* A body that does not parse is refused even under a MAC that verifies (the writer's own key). */
static void test_malformed_under_a_valid_mac_is_refused(void **state)
{
    struct fx *f = *state;
    uint8_t *b, *c;
    size_t n;

    encode(f, &f->keys, CHAIN, &b, &n);
    c = gw_malloc(n + 1);
    assert_non_null(c);
    /* one more entry than there are, one fewer, and a byte after the last entry */
    for (int k = 0; k < 3; k++) {
        size_t len = k == 2 ? n + 1 : n, count_at = 8 + 1 + strlen(CHAIN) + 3;
        memcpy(c, b, n - GW_CRYPTO_MAC_LEN);
        if (k < 2)
            c[count_at] = (uint8_t)(k == 0 ? 4 : 2);
        else
            c[n - GW_CRYPTO_MAC_LEN] = 0;
        assert_int_equal(gw_audit_writer_mac(f->cx, f->keys.alg[0], f->keys.key[0], c,
                                             len - GW_CRYPTO_MAC_LEN, c + len - GW_CRYPTO_MAC_LEN),
                         0);
        refused(f, c, len, &f->keys, CHAIN);
    }
    gw_free(c);
    gw_free_wipe(b, n);
}

/* An entry carried into a new spool (a stop during a replay) keeps its mark, so that it is
 * written at most once whichever file holds it; a new spool has an id of its own; an entry with
 * no room for its mark is not added. */
static void test_a_carried_entry_keeps_its_mark(void **state)
{
    struct fx *f = *state;
    struct gw_audit_spool *got = NULL, *next = gw_audit_spool_new(NULL), *again = NULL;
    struct gw_audit_left full;
    const char *why = NULL;
    const uint8_t *id = NULL;
    uint8_t *b, *b2;
    size_t n, n2;

    assert_non_null(next);
    encode(f, &f->keys, CHAIN, &b, &n);
    assert_int_equal(gw_audit_spool_decode(b, n, f->cx, &f->keys, CHAIN, &got, &why), 0);
    assert_int_equal(gw_audit_spool_add(next, gw_audit_spool_entry(got, 2)), 0); /* carried */
    memset(&full, 0, sizeof full);
    full.nrecs = 1;
    full.recs[0] = rec2;
    assert_int_equal(gw_audit_spool_add(next, &full), 0); /* new: this spool's index 1 */
    full.nstmts = GW_AUDIT_STMTS_MAX;
    for (int i = 0; i < GW_AUDIT_STMTS_MAX; i++)
        full.stmts[i] = (struct gw_db_stmt){"SELECT 1", 0, NULL, NULL, NULL, 0};
    assert_int_equal(gw_audit_spool_add(next, &full), GW_EINVAL);
    assert_int_equal(gw_audit_spool_encode(next, f->cx, &f->keys, CHAIN, &b2, &n2), 0);
    assert_int_equal(gw_audit_spool_decode(b2, n2, f->cx, &f->keys, CHAIN, &again, &why), 0);
    assert_mark(gw_audit_spool_entry(got, 2), 2, &id);
    assert_mark(gw_audit_spool_entry(again, 0), 2, &id); /* the first spool's id and index */
    assert_int_equal(gw_audit_spool_entry(again, 0)->nstmts, 2);
    id = NULL;
    assert_mark(gw_audit_spool_entry(again, 1), 1, &id);
    assert_memory_not_equal(id, gw_audit_spool_entry(got, 2)->stmts[0].values[0],
                            GW_AUDIT_SPOOL_ID_LEN);
    gw_audit_spool_free(again);
    gw_audit_spool_free(next);
    gw_audit_spool_free(got);
    gw_free_wipe(b2, n2);
    gw_free_wipe(b, n);
}

/* A file of one entry, a record alone with no mark, under magic and a valid MAC. */
static size_t unmarked_file(struct fx *f, const char *magic, uint8_t *c)
{
    size_t k = 0, body;

    memcpy(c, magic, 8);
    k = 8;
    c[k++] = (uint8_t)strlen(CHAIN);
    memcpy(c + k, CHAIN, strlen(CHAIN));
    k += strlen(CHAIN);
    memcpy(c + k, "\0\0\0\1", 4); /* one entry */
    k += 4;
    body = 1 + 2 + 12 + 8 + 1; /* flags, nstmts and nrecs, 12 absent texts, count, confidential */
    memcpy(c + k, "\0\0\0", 3);
    c[k + 3] = (uint8_t)body;
    k += 4;
    memset(c + k, 0, body);
    c[k + 2] = 1;                /* one record */
    memset(c + k + 15, 0xff, 8); /* count -1 */
    k += body;
    assert_int_equal(gw_audit_writer_mac(f->cx, f->keys.alg[0], f->keys.key[0], c, k, c + k), 0);
    return k + GW_CRYPTO_MAC_LEN;
}

/* Version 1 (before the marks) is read, its entries unmarked; in version 2 an entry that does
 * not begin with its mark is refused whole. */
static void test_version_1_is_read_and_an_unmarked_v2_entry_refused(void **state)
{
    struct fx *f = *state;
    struct gw_audit_spool *got = NULL;
    const char *why = NULL;
    uint8_t c[256];
    size_t n;

    n = unmarked_file(f, "WGSPOOL1", c);
    assert_int_equal(gw_audit_spool_decode(c, n, f->cx, &f->keys, CHAIN, &got, &why), 0);
    assert_int_equal(gw_audit_spool_version(got), 1);
    assert_int_equal(gw_audit_spool_count(got), 1);
    assert_false(gw_audit_spool_marked(gw_audit_spool_entry(got, 0)));
    gw_audit_spool_free(got);
    n = unmarked_file(f, "WGSPOOL2", c);
    refused(f, c, n, &f->keys, CHAIN);
}

static void test_oversized_is_refused_and_not_written(void **state)
{
    struct fx *f = *state;
    struct gw_audit_spool *got = (struct gw_audit_spool *)1;
    char err[512];
    uint8_t *b;
    size_t n;

    encode(f, &f->keys, CHAIN, &b, &n);
    gw_free_wipe(b, n);
    /* not written over the cap: the next start would refuse it */
    assert_int_equal(
        gw_audit_spool_save(f->sp, f->path, n - 1, f->cx, &f->keys, CHAIN, err, sizeof err),
        GW_ETOOBIG);
    assert_int_equal(access(f->path, F_OK), -1);
    assert_int_equal(access(f->tmp, F_OK), -1);
    /* one written under a larger cap is refused by a smaller one, before it is read */
    assert_int_equal(
        gw_audit_spool_save(f->sp, f->path, n, f->cx, &f->keys, CHAIN, err, sizeof err), 0);
    assert_int_equal(
        gw_audit_spool_load(f->path, n - 1, f->cx, &f->keys, CHAIN, &got, err, sizeof err),
        GW_ETOOBIG);
    assert_null(got);
    /* the cap of n entries takes n of the largest */
    assert_true(gw_audit_spool_cap(3) >= n);
    assert_true(gw_audit_spool_cap(1) >= 4 + GW_AUDIT_SPOOL_ENTRY_MAX);
    /* the default queues' 9281 entries (4096 + 4096 + 64 + 1024 + 1): under 20 MiB, not 145 */
    assert_true(gw_audit_spool_cap(9281) < (size_t)20 << 20);
}

/* An entry over the bound is not taken (it would make a file the next start refuses). */
static void test_entry_over_the_bound_is_not_added(void **state)
{
    struct fx *f = *state;
    struct gw_audit_left e;
    char *big = gw_malloc(GW_AUDIT_SPOOL_ENTRY_MAX + 1);

    assert_non_null(big);
    memset(big, 'a', GW_AUDIT_SPOOL_ENTRY_MAX);
    big[GW_AUDIT_SPOOL_ENTRY_MAX] = '\0';
    memset(&e, 0, sizeof e);
    e.nstmts = 1;
    e.stmts[0] = (struct gw_db_stmt){big, 0, NULL, NULL, NULL, 0};
    e.nrecs = 1;
    e.recs[0] = (struct gw_audit_rec){.actor = "x", .action = "y", .count = -1};
    assert_int_equal(gw_audit_spool_add(f->sp, &e), GW_EINVAL);
    e.nstmts = 0;
    e.nrecs = 0;
    assert_int_equal(gw_audit_spool_add(f->sp, &e), GW_EINVAL);
    assert_int_equal(gw_audit_spool_count(f->sp), 3);
    gw_free(big);
}

static void put_file(const char *path, const char *text)
{
    FILE *w = fopen(path, "w");
    assert_non_null(w);
    assert_true(fputs(text, w) >= 0);
    assert_int_equal(fclose(w), 0);
}

static bool holds(const char *path, const char *text)
{
    char buf[64] = {0};
    FILE *r = fopen(path, "r");
    if (r == NULL)
        return false;
    size_t n = fread(buf, 1, sizeof buf - 1, r);
    fclose(r);
    return n == strlen(text) && strcmp(buf, text) == 0;
}

/* A rejected file is moved aside under a name never taken (same second: a counter), and only the
 * newest four such files stay, the one just moved always among them; other names are untouched. */
static void test_rejected_files_never_overwrite_and_the_newest_four_stay(void **state)
{
    struct fx *f = *state;
    char aside[256], err[512], name[256];
    static const long long t[] = {1000, 1000, 1001, 1002, 1003, 1004, 5};
    static const char *const gone[] = {".rejected.1000", ".rejected.1000.1", ".rejected.1001"};
    static const char *const stay[] = {".rejected.1002", ".rejected.1003", ".rejected.1004",
                                       ".rejected.5",    ".rejected.x",    ".rejectedness.1"};

    put_file(f->tmp, "not ours");
    snprintf(name, sizeof name, "%s.rejected.x", f->path);
    put_file(name, "x");
    snprintf(name, sizeof name, "%s.rejectedness.1", f->path);
    put_file(name, "x");
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        char text[32];
        snprintf(text, sizeof text, "spool %zu", i);
        put_file(f->path, text);
        assert_int_equal(
            gw_audit_spool_reject(f->path, t[i], 4, aside, sizeof aside, err, sizeof err), 0);
        assert_int_equal(access(f->path, F_OK), -1);
        assert_true(holds(aside, text));
        if (i == 1) { /* the same second as the first: a counter, the first kept as it was */
            snprintf(name, sizeof name, "%s.rejected.1000.1", f->path);
            assert_string_equal(aside, name);
            snprintf(name, sizeof name, "%s.rejected.1000", f->path);
            assert_true(holds(name, "spool 0"));
        }
    }
    for (size_t i = 0; i < sizeof gone / sizeof gone[0]; i++) {
        snprintf(name, sizeof name, "%s%s", f->path, gone[i]);
        assert_int_equal(access(name, F_OK), -1);
    }
    for (size_t i = 0; i < sizeof stay / sizeof stay[0]; i++) {
        snprintf(name, sizeof name, "%s%s", f->path, stay[i]);
        assert_int_equal(access(name, F_OK), 0);
        assert_int_equal(unlink(name), 0);
    }
    assert_true(holds(f->tmp, "not ours"));
    /* nothing at path: an error, nothing moved */
    assert_int_equal(gw_audit_spool_reject(f->path, 7, 4, aside, sizeof aside, err, sizeof err),
                     GW_EIO);
    assert_non_null(strstr(err, "cannot be moved aside"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_round_trip_through_the_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sm_suite, setup, teardown),
        cmocka_unit_test_setup_teardown(test_any_flipped_byte_is_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_truncated_is_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_another_chain_is_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_another_key_is_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_malformed_under_a_valid_mac_is_refused, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_oversized_is_refused_and_not_written, setup, teardown),
        cmocka_unit_test_setup_teardown(test_a_carried_entry_keeps_its_mark, setup, teardown),
        cmocka_unit_test_setup_teardown(test_version_1_is_read_and_an_unmarked_v2_entry_refused,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_entry_over_the_bound_is_not_added, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_rejected_files_never_overwrite_and_the_newest_four_stay, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
