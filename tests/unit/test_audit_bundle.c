/* test_audit_bundle.c: the bundle writer and verifier (domain/audit_bundle) in memory: a good
 * bundle verifies fed whole or byte by byte; a bundle cut at any byte fails; a deleted, altered
 * or swapped record, a forged checkpoint, a wrong seal key, an untrusted key each fail, naming
 * the place; the live check's whole chains take no anchor; several keys may be pinned, and the
 * signers are listed; a checkpoint that fails (signature, head, place; the anchor too) is named
 * and gone past, covering nothing, so a break after it is named as well; a junk record (linked
 * to nothing, a wrong hash, a seq taken or skipped, two of them) is named and the chain followed
 * on (resynchronised), so a later deletion, alteration or swap is named too, and each chain's
 * records checked and not covered are counted (the figures of tests/audit/test_resync.py, which
 * runs the same cases through both bundle verifiers). Every test runs twice: with Ed25519 keys
 * (the aes suite) and with SM2 keys (sm). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "audit_bundle.h"

struct buf {
    uint8_t *p;
    size_t n, cap;
};

static int buf_sink(void *arg, const uint8_t *p, size_t n)
{
    struct buf *b = arg;
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2;
        b->p = realloc(b->p, b->cap);
        assert_non_null(b->p);
    }
    memcpy(b->p + b->n, p, n);
    b->n += n;
    return 0;
}

static const uint8_t SEED[32] = {1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 12, 13, 14, 15, 16,
                                 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32};
static const uint8_t ROGUE[32] = {9};
static enum gw_sign_alg ALG; /* of the group running */

static struct gw_sign_key key_of(const uint8_t *seed)
{
    return (struct gw_sign_key){ALG, seed};
}

static size_t pub_of(const uint8_t *seed, uint8_t pub[GW_SIGN_PUB_MAX])
{
    struct gw_sign_key k = key_of(seed);
    size_t n = 0;
    assert_int_equal(gw_sign_public(&k, pub, &n), 0);
    assert_int_equal(n, gw_sign_pub_len(ALG));
    return n;
}

/* Options of a generated bundle: which record to change, and how. */
struct gen {
    int skip_seq;   /* a record left out */
    int alter_seq;  /* a record whose actor is changed after hashing (stored hash kept) */
    int swap_seq;   /* this record and the next written in the other order */
    int forge_ckpt; /* a checkpoint whose signature is made by another key */
    int wrong_head; /* a checkpoint validly signed over another head (32 zero bytes) */
    int dup_ckpt;   /* a checkpoint written twice */
    int from_seq;   /* gw1's records before it left out (a time range's bundle: the checkpoint
                     * at from_seq - 1 is its anchor) */
    bool gw2_bare;  /* gw2's records left out, its checkpoint kept */
    const uint8_t *seal_seed;
    /* junk the gateway's database role may plant: at these seqs of gw1 (0: none) a record of
     * actor "junk" linked to nothing, which the records after it follow (the gateway chains onto
     * the head it reads again); its stored hash not its content's when junk_hash */
    int junk[2];
    bool junk_hash;
    int len; /* gw1's records: 25 when 0 */
    /* a junk record put in right after gw1's record extra_after (before a checkpoint there),
     * with seq extra_seq and prev_hash the hash of extra_prev (0: linked to nothing); nothing
     * follows it (a bundle can hold one with a seq already taken) */
    int extra_after, extra_seq, extra_prev;
};

static const uint8_t NOWHERE[32] = {
    0x6a, 0x6a, 0x6a, 0x6a, 0x6a, 0x6a, 0x6a, 0x6a, 0x6a, 0x6a, 0x6a, 0x6a, 0x6a, 0x6a, 0x6a, 0x6a,
    0x6a, 0x6a, 0x6a, 0x6a, 0x6a, 0x6a, 0x6a, 0x6a, 0x6a, 0x6a, 0x6a, 0x6a, 0x6a, 0x6a, 0x6a, 0x6a};

static bool is_junk(const struct gen *g, int c, int i)
{
    return c == 0 && (g->junk[0] == i || g->junk[1] == i);
}

static void ckpt(struct gw_bundle_writer *w, const char *chain, int64_t seq, const uint8_t head[32],
                 const uint8_t *seed)
{
    struct gw_audit_ckpt c = {.chain = chain, .seq = seq, .at_us = 1000 + seq};
    uint8_t msg[256], pub[GW_SIGN_PUB_MAX];
    struct gw_sign_key k = key_of(seed);
    size_t n, publen;
    memcpy(c.head, head, 32);
    assert_int_equal(gw_audit_checkpoint_msg(chain, seq, head, c.at_us, msg, sizeof msg, &n), 0);
    assert_int_equal(gw_sign(&k, msg, n, c.sig, &c.siglen), 0);
    publen = pub_of(SEED, pub); /* the key id is always the trail's */
    assert_int_equal(gw_audit_key_id(pub, publen, c.key_id), 0);
    assert_int_equal(gw_bundle_write_checkpoint(w, &c), 0);
}

/* Chain "gw1": 25 records, checkpoints after 10 and 20; chain "gw2": 3 records, one at 3. */
static struct buf make(const struct gen *g)
{
    struct buf b = {0};
    struct gw_bundle_header h = {"test", 1, 0, 1000000, "tester"};
    struct gw_bundle_writer *w;
    uint8_t pub[GW_SIGN_PUB_MAX], hashes[32][32], prev[32] = {0};
    struct gw_audit_rec recs[32];
    struct gw_audit_link links[32];
    char objs[32][16];
    size_t publen = pub_of(SEED, pub);
    struct gw_sign_key seal = key_of(g->seal_seed ? g->seal_seed : SEED);
    assert_int_equal(gw_bundle_writer_new(buf_sink, &b, &h, &w), 0);
    assert_int_equal(gw_bundle_write_key(w, pub, publen), 0);
    const char *chains[] = {"gw1", "gw2"};
    int lens[] = {g->len ? g->len : 25, 3};
    for (int c = 0; c < 2; c++) {
        memset(prev, 0, sizeof prev);
        for (int i = 1; i <= lens[c]; i++) {
            snprintf(objs[i], sizeof objs[i], "o%d", i);
            recs[i] = (struct gw_audit_rec){.actor = is_junk(g, c, i) ? "junk" : "clerk",
                                            .action = "reveal",
                                            .object = objs[i],
                                            .count = i,
                                            .outcome = "ok"};
            links[i] = (struct gw_audit_link){.chain = chains[c], .seq = i, .at_us = 100 + i};
            memcpy(links[i].prev_hash, is_junk(g, c, i) ? NOWHERE : prev, 32);
            assert_int_equal(gw_audit_rec_hash(&recs[i], &links[i], hashes[i]), 0);
            if (is_junk(g, c, i) && g->junk_hash) /* stored so; the next record follows it */
                memset(hashes[i], 0x33, 32);
            memcpy(prev, hashes[i], 32);
        }
        for (int i = 1; i <= lens[c]; i++) {
            int k = i;
            if (c == 0 && g->swap_seq && i == g->swap_seq)
                k = i + 1;
            else if (c == 0 && g->swap_seq && i == g->swap_seq + 1)
                k = i - 1;
            struct gw_audit_rec r = recs[k];
            if (c == 0 && k == g->alter_seq)
                r.actor = "mallory";
            if (!(c == 0 && k == g->skip_seq) && !(c == 0 && k < g->from_seq) &&
                !(c == 1 && g->gw2_bare))
                assert_int_equal(gw_bundle_write_record(w, &r, &links[k], hashes[k]), 0);
            if (c == 0 && i == g->extra_after) {
                struct gw_audit_rec x = {
                    .actor = "junk", .action = "reveal", .outcome = "ok", .count = -1};
                struct gw_audit_link xl = {.chain = "gw1", .seq = g->extra_seq, .at_us = 1};
                uint8_t xh[32];
                memcpy(xl.prev_hash, g->extra_prev ? hashes[g->extra_prev] : NOWHERE, 32);
                assert_int_equal(gw_audit_rec_hash(&x, &xl, xh), 0);
                assert_int_equal(gw_bundle_write_record(w, &x, &xl, xh), 0);
            }
            if ((c == 0 && (i == 10 || i == 20)) || (c == 1 && i == 3)) {
                static const uint8_t zero[32];
                bool mine = c == 0;
                ckpt(w, chains[c], i, mine && g->wrong_head == i ? zero : hashes[i],
                     mine && g->forge_ckpt == i ? ROGUE : SEED);
                if (mine && g->dup_ckpt == i)
                    ckpt(w, chains[c], i, hashes[i], SEED);
            }
        }
    }
    assert_int_equal(gw_bundle_finish(w, &seal), 0);
    gw_bundle_writer_free(w);
    return b;
}

/* Verifies b fed in pieces of `step` bytes; returns the result and copies the message. */
static int verify(const struct buf *b, size_t step, const char *trust, char *msg)
{
    struct gw_bundle_verify_opts o = {.trust_keys = &trust, .ntrust = trust ? 1 : 0};
    struct gw_bundle_verifier *v;
    int rc = 0;
    assert_int_equal(gw_bundle_verifier_new(&o, &v), 0);
    for (size_t off = 0; off < b->n && rc == 0; off += step)
        rc = gw_bundle_verify_feed(v, b->p + off, b->n - off < step ? b->n - off : step);
    if (rc == 0)
        rc = gw_bundle_verify_end(v);
    snprintf(msg, GW_BUNDLE_ERR_MAX, "%s", gw_bundle_verify_error(v));
    gw_bundle_verifier_free(v);
    return rc;
}

/* Verifies b whole under o; returns the result, copies the message and, when it verified, the
 * ids of its signers (at most 4) into ids, their number into *nids. */
static int verify_with(const struct buf *b, const struct gw_bundle_verify_opts *o, char *msg,
                       char ids[4][65], size_t *nids)
{
    struct gw_bundle_verifier *v;
    enum gw_sign_alg alg;
    const char *id;
    int rc;
    assert_int_equal(gw_bundle_verifier_new(o, &v), 0);
    rc = gw_bundle_verify_feed(v, b->p, b->n);
    if (rc == 0)
        rc = gw_bundle_verify_end(v);
    snprintf(msg, GW_BUNDLE_ERR_MAX, "%s", gw_bundle_verify_error(v));
    *nids = 0;
    while (rc == 0 && (id = gw_bundle_verify_signer(v, *nids, &alg)) != NULL) {
        assert_true(*nids < 4);
        assert_int_equal(alg, ALG);
        snprintf(ids[(*nids)++], 65, "%s", id);
    }
    gw_bundle_verifier_free(v);
    return rc;
}

static void expect_bad(const struct gen *g, const char *needle)
{
    struct buf b = make(g);
    char msg[GW_BUNDLE_ERR_MAX];
    assert_int_equal(verify(&b, b.n, NULL, msg), GW_EDATALOSS);
    if (!strstr(msg, needle))
        fail_msg("expected \"%s\" in \"%s\"", needle, msg);
    free(b.p);
}

static void good_whole_and_bytewise(void **state)
{
    struct gen g = {0};
    struct buf b = make(&g);
    char msg[GW_BUNDLE_ERR_MAX], id[65];
    uint8_t pub[GW_SIGN_PUB_MAX];
    size_t publen = pub_of(SEED, pub);
    assert_int_equal(verify(&b, b.n, NULL, msg), 0);
    assert_int_equal(verify(&b, 1, NULL, msg), 0);
    assert_int_equal(verify(&b, 7, NULL, msg), 0);
    assert_int_equal(gw_audit_key_id(pub, publen, id), 0);
    assert_int_equal(verify(&b, b.n, id, msg), 0);
    free(b.p);
}

/* The key item names its algorithm, and a name that is not the key's (the other algorithm's, or
 * an unknown one) is refused: the K item is rewritten with the name changed. */
static void key_names_its_algorithm(void **state)
{
    struct gen g = {0};
    struct buf b = make(&g);
    char msg[GW_BUNDLE_ERR_MAX];
    const char *name = gw_sign_alg_name(ALG);
    const char *others[] = {ALG == GW_SIGN_SM2 ? "ed25519" : "sm2", "sm3"};
    size_t magic = sizeof "waygate.bundle.v1", hlen, k, klen, nlen = strlen(name);
    (void)state;
    hlen = (size_t)b.p[magic + 1] << 24 | (size_t)b.p[magic + 2] << 16 |
           (size_t)b.p[magic + 3] << 8 | b.p[magic + 4];
    k = magic + 5 + hlen; /* the K item */
    assert_int_equal(b.p[k], 'K');
    klen = (size_t)b.p[k + 3] << 8 | b.p[k + 4];
    /* its payload ends with the name field: 0x01, u32 length, the name */
    assert_memory_equal(b.p + k + 5 + klen - nlen, name, nlen);
    for (size_t i = 0; i < 2; i++) {
        size_t olen = strlen(others[i]), nl = klen - nlen + olen;
        struct buf t = {0};
        uint8_t hdr[5] = {'K', 0, 0, (uint8_t)(nl >> 8), (uint8_t)nl};
        uint8_t flen[4] = {0, 0, 0, (uint8_t)olen};
        assert_int_equal(buf_sink(&t, b.p, k), 0);
        assert_int_equal(buf_sink(&t, hdr, 5), 0);
        assert_int_equal(buf_sink(&t, b.p + k + 5, klen - nlen - 4), 0);
        assert_int_equal(buf_sink(&t, flen, 4), 0);
        assert_int_equal(buf_sink(&t, (const uint8_t *)others[i], olen), 0);
        assert_int_equal(buf_sink(&t, b.p + k + 5 + klen, b.n - k - 5 - klen), 0);
        assert_int_equal(verify(&t, t.n, NULL, msg), GW_EDATALOSS);
        assert_string_equal(msg, "key 1: malformed");
        free(t.p);
    }
    free(b.p);
}

/* Rule 4: an SM2 key item must be a point of the curve, as verify_bundle.py checks it (the C
 * verifier took any 65 bytes after 0x04, a regulator's verifier written from the format
 * refused the bundle: red before). The item is the writer's, its id the SHA-256 of its bytes. */
static void sm2_key_off_the_curve_is_malformed(void **state)
{
    struct buf b = {0};
    struct gw_bundle_header h = {"test", 1, 0, 1000000, "tester"};
    struct gw_bundle_writer *w;
    struct gw_bundle_verifier *v;
    uint8_t off[GW_SIGN_SM2_PUB_LEN];
    int rc;
    (void)state;
    memset(off, 1, sizeof off);
    off[0] = 4;
    assert_false(gw_sign_pub_valid(off, sizeof off));
    assert_int_equal(gw_bundle_writer_new(buf_sink, &b, &h, &w), 0);
    assert_int_equal(gw_bundle_write_key(w, off, sizeof off), 0);
    gw_bundle_writer_free(w);
    assert_int_equal(gw_bundle_verifier_new(NULL, &v), 0);
    rc = gw_bundle_verify_feed(v, b.p, b.n);
    assert_int_equal(rc, GW_EDATALOSS);
    assert_string_equal(gw_bundle_verify_error(v), "key 1: malformed");
    gw_bundle_verifier_free(v);
    free(b.p);
}

/* A hostile bundle of many keys costs work in proportion to its length: each key is looked up
 * by its id in an index, not against every key before it (200000 keys took 163 s, n^2/2
 * comparisons, before the index). Counted, not timed: the slots the index visited for all the
 * lookups and insertions (rehashes included) stay within a small multiple of the keys (a linear
 * probe at half load visits ~2.5 a miss); every key in one slot (red-checked: key_slot returning
 * 0) visits n^2/2. */
static void many_keys_cost_linear_time(void **state)
{
    struct gw_bundle_header h = {"test", 1, 0, 1000000, "tester"};
    struct gw_bundle_writer *w;
    struct gw_bundle_verifier *v;
    struct gw_bundle_verify_stats st;
    struct gw_sign_key seal = key_of(SEED);
    uint8_t pub[GW_SIGN_PUB_MAX] = {0};
    size_t publen;
    enum { N = 20000 };
    (void)state;
    assert_int_equal(gw_bundle_verifier_new(NULL, &v), 0);
    assert_int_equal(gw_bundle_writer_new(gw_bundle_verify_sink, v, &h, &w), 0);
    for (uint32_t i = 0; i < N; i++) {
        memcpy(pub, &i, sizeof i);
        assert_int_equal(gw_bundle_write_key(w, pub, 32), 0);
    }
    publen = pub_of(SEED, pub);
    assert_int_equal(gw_bundle_write_key(w, pub, publen), 0);
    assert_int_equal(gw_bundle_finish(w, &seal), 0);
    assert_int_equal(gw_bundle_verify_end(v), 0);
    gw_bundle_verify_stats(v, &st);
    assert_int_equal(st.keys, N + 1);
    if (st.key_probes > 8 * (uint64_t)(N + 1))
        fail_msg("%d keys visited %llu slots of the key index", N,
                 (unsigned long long)st.key_probes);
    gw_bundle_writer_free(w);
    gw_bundle_verifier_free(v);
}

static void cut_anywhere_fails(void **state)
{
    struct gen g = {0};
    struct buf b = make(&g);
    char msg[GW_BUNDLE_ERR_MAX];
    for (size_t n = 0; n < b.n; n++) {
        struct buf c = {b.p, n, n};
        if (verify(&c, 4096, NULL, msg) == 0)
            fail_msg("a bundle cut after %zu of %zu bytes verified", n, b.n);
    }
    free(b.p);
}

static void flipped_bit_anywhere_fails(void **state)
{
    struct gen g = {0};
    struct buf b = make(&g);
    char msg[GW_BUNDLE_ERR_MAX];
    for (size_t i = 0; i < b.n; i += 3) {
        b.p[i] ^= 0x20;
        if (verify(&b, b.n, NULL, msg) == 0)
            fail_msg("a bundle with byte %zu changed verified", i);
        b.p[i] ^= 0x20;
    }
    free(b.p);
}

static void deleted_record(void **state)
{
    expect_bad(&(struct gen){.skip_seq = 7}, "chain gw1: seq 7 expected after seq 6, found seq 8");
}

static void altered_record(void **state)
{
    expect_bad(&(struct gen){.alter_seq = 12},
               "chain gw1: seq 12: the record's content does not match its hash");
}

static void swapped_records(void **state)
{
    expect_bad(&(struct gen){.swap_seq = 14}, "chain gw1: seq 14 expected after seq 13, found "
                                              "seq 15");
}

static void deleted_checkpointed_record(void **state)
{
    expect_bad(&(struct gen){.skip_seq = 20}, "chain gw1: seq 20..20 missing");
}

static void forged_checkpoint(void **state)
{
    expect_bad(&(struct gen){.forge_ckpt = 20},
               "chain gw1: checkpoint at seq 20: the signature does not verify");
}

static void seal_by_another_key(void **state)
{
    /* the writer refuses to seal with a key it did not list */
    struct buf b = {0};
    struct gw_bundle_header h = {"test", 1, 0, 1, NULL};
    struct gw_bundle_writer *w;
    uint8_t pub[GW_SIGN_PUB_MAX];
    size_t publen = pub_of(SEED, pub);
    struct gw_sign_key rogue = key_of(ROGUE);
    assert_int_equal(gw_bundle_writer_new(buf_sink, &b, &h, &w), 0);
    assert_int_equal(gw_bundle_write_key(w, pub, publen), 0);
    assert_int_equal(gw_bundle_finish(w, &rogue), GW_EINVAL);
    gw_bundle_writer_free(w);
    free(b.p);
}

static void untrusted_key(void **state)
{
    struct gen g = {0};
    struct buf b = make(&g);
    char msg[GW_BUNDLE_ERR_MAX];
    assert_int_equal(verify(&b, b.n,
                            "00000000000000000000000000000000000000000000000000000000"
                            "00000000",
                            msg),
                     GW_EDATALOSS);
    assert_non_null(strstr(msg, "chain gw1: checkpoint at seq 10: signed by key"));
    assert_non_null(strstr(msg, "not by the trusted key"));
    free(b.p);
}

static void unsealed_only_when_allowed(void **state)
{
    struct buf b = {0};
    struct gw_bundle_header h = {"test", 1, 0, 1, NULL};
    struct gw_bundle_writer *w;
    struct gw_bundle_verifier *v;
    struct gw_bundle_verify_opts o = {.unsealed = true};
    char msg[GW_BUNDLE_ERR_MAX];
    assert_int_equal(gw_bundle_writer_new(buf_sink, &b, &h, &w), 0);
    assert_int_equal(gw_bundle_finish(w, NULL), 0);
    gw_bundle_writer_free(w);
    assert_int_equal(verify(&b, b.n, NULL, msg), GW_EDATALOSS);
    assert_non_null(strstr(msg, "no seal"));
    assert_int_equal(gw_bundle_verifier_new(&o, &v), 0);
    assert_int_equal(gw_bundle_verify_feed(v, b.p, b.n), 0);
    assert_int_equal(gw_bundle_verify_end(v), 0);
    gw_bundle_verifier_free(v);
    free(b.p);
}

/* A time range's bundle starts after a checkpoint (its anchor); the live trail's check (whole)
 * takes no anchor: a chain whose first records and the checkpoints below them are gone, or a
 * chain of checkpoints without records, fails naming the chain and the missing seqs. */
static void whole_chains_take_no_anchor(void **state)
{
    struct gw_bundle_verify_opts range = {0}, whole = {.whole = true};
    char msg[GW_BUNDLE_ERR_MAX], ids[4][65];
    size_t n;
    struct buf b = make(&(struct gen){.from_seq = 11});
    (void)state;
    assert_int_equal(verify_with(&b, &range, msg, ids, &n), 0);
    assert_int_equal(verify_with(&b, &whole, msg, ids, &n), GW_EDATALOSS);
    assert_string_equal(msg, "chain gw1: seq 1..10 missing: the checkpoint at seq 10 comes before "
                             "any record (a whole chain starts at seq 1)");
    free(b.p);
    b = make(&(struct gen){.gw2_bare = true});
    assert_int_equal(verify_with(&b, &whole, msg, ids, &n), GW_EDATALOSS);
    assert_string_equal(msg, "chain gw2: seq 1..3 missing: the checkpoint at seq 3 comes before "
                             "any record (a whole chain starts at seq 1)");
    free(b.p);
    b = make(&(struct gen){0});
    assert_int_equal(verify_with(&b, &whole, msg, ids, &n), 0);
    free(b.p);
}

/* Several pinned keys: a signer among them verifies, one outside them is named whole; the
 * signers of a verified bundle are listed once each; more than GW_BUNDLE_TRUST_MAX is refused. */
static void trusted_keys_and_signers(void **state)
{
    static const char other[] = "1111111111111111111111111111111111111111111111111111111111111111",
                      another[] =
                          "2222222222222222222222222222222222222222222222222222222222222222";
    char msg[GW_BUNDLE_ERR_MAX], ids[4][65], id[65], want[GW_BUNDLE_ERR_MAX];
    const char *pin[GW_BUNDLE_TRUST_MAX + 1];
    uint8_t pub[GW_SIGN_PUB_MAX];
    size_t n, publen = pub_of(SEED, pub);
    struct buf b = make(&(struct gen){0});
    struct gw_bundle_verifier *v = NULL;
    (void)state;
    assert_int_equal(gw_audit_key_id(pub, publen, id), 0);
    pin[0] = other;
    pin[1] = id;
    assert_int_equal(verify_with(&b,
                                 &(struct gw_bundle_verify_opts){.trust_keys = pin, .ntrust = 2},
                                 msg, ids, &n),
                     0);
    assert_int_equal(n, 1);
    assert_string_equal(ids[0], id);
    assert_int_equal(verify_with(&b, &(struct gw_bundle_verify_opts){0}, msg, ids, &n), 0);
    assert_int_equal(n, 1);
    assert_string_equal(ids[0], id);
    pin[1] = another;
    assert_int_equal(verify_with(&b,
                                 &(struct gw_bundle_verify_opts){.trust_keys = pin, .ntrust = 2},
                                 msg, ids, &n),
                     GW_EDATALOSS);
    snprintf(want, sizeof want,
             "chain gw1: checkpoint at seq 10: signed by key %s, which is not one of the 2 "
             "trusted keys",
             id);
    assert_string_equal(msg, want);
    for (size_t i = 0; i <= GW_BUNDLE_TRUST_MAX; i++)
        pin[i] = other;
    assert_int_equal(
        gw_bundle_verifier_new(
            &(struct gw_bundle_verify_opts){.trust_keys = pin, .ntrust = GW_BUNDLE_TRUST_MAX + 1},
            &v),
        GW_EINVAL);
    assert_null(v);
    free(b.p);
}

/* Ed25519 public keys are not checked to be points of the prime-order subgroup, and OpenSSL does
 * not check either: it takes the identity point (order 1) as a key, and under it the one signature
 * R = the identity, S = 0 verifies over every message. A verifier accepts nothing by such a key
 * that it should not: a key is trusted only when its id (the SHA-256 of its bytes, rule 4) is
 * pinned, and a pinned id is the keyring's audit key, derived from a seed (never such a point);
 * unpinned, a bundle proves only that it is consistent and signed by the keys it lists, which a
 * forger's own key achieves as well (docs/threat-model.md). Here: a checkpoint "signed" by the
 * identity key verifies unpinned, naming that key as a signer, and is refused with the trail's
 * key pinned. */
static void small_order_key_signs_only_unpinned(void **state)
{
    static const uint8_t identity[32] = {1};
    struct buf b = {0};
    struct gw_bundle_header h = {"test", 1, 0, 1000000, "tester"};
    struct gw_bundle_writer *w;
    struct gw_sign_key seal = key_of(SEED);
    struct gw_audit_ckpt c = {.chain = "gw1", .seq = 2, .at_us = 1002, .siglen = 64};
    struct gw_audit_rec r = {.actor = "clerk", .action = "reveal", .outcome = "ok", .count = -1};
    struct gw_audit_link l = {.chain = "gw1", .at_us = 100};
    uint8_t pub[GW_SIGN_PUB_MAX], hash[32], msg[256];
    char id[65], got[GW_BUNDLE_ERR_MAX], want[GW_BUNDLE_ERR_MAX], ids[4][65];
    const char *pin[1] = {id};
    size_t publen, n;
    (void)state;
    if (ALG != GW_SIGN_ED25519)
        skip();
    memset(c.sig, 0, sizeof c.sig);
    c.sig[0] = 1; /* R: the identity's encoding; S: 0 */
    assert_int_equal(gw_sign_verify(identity, 32, (const uint8_t *)"one", 3, c.sig, 64), 0);
    assert_int_equal(gw_sign_verify(identity, 32, (const uint8_t *)"another", 7, c.sig, 64), 0);
    publen = pub_of(SEED, pub);
    assert_int_equal(gw_audit_key_id(pub, publen, id), 0);
    assert_int_equal(gw_audit_key_id(identity, 32, c.key_id), 0);
    assert_int_equal(gw_bundle_writer_new(buf_sink, &b, &h, &w), 0);
    assert_int_equal(gw_bundle_write_key(w, identity, 32), 0);
    assert_int_equal(gw_bundle_write_key(w, pub, publen), 0); /* the seal's: the last listed */
    for (l.seq = 1; l.seq <= 2; l.seq++) {
        assert_int_equal(gw_audit_rec_hash(&r, &l, hash), 0);
        assert_int_equal(gw_bundle_write_record(w, &r, &l, hash), 0);
        memcpy(l.prev_hash, hash, 32);
    }
    memcpy(c.head, hash, 32);
    assert_int_equal(gw_audit_checkpoint_msg("gw1", 2, hash, c.at_us, msg, sizeof msg, &n), 0);
    assert_int_equal(gw_sign_verify(identity, 32, msg, n, c.sig, 64), 0);
    assert_int_equal(gw_bundle_write_checkpoint(w, &c), 0);
    assert_int_equal(gw_bundle_finish(w, &seal), 0);
    gw_bundle_writer_free(w);
    assert_int_equal(verify_with(&b, &(struct gw_bundle_verify_opts){0}, got, ids, &n), 0);
    assert_int_equal(n, 2);
    assert_true(strcmp(ids[0], c.key_id) == 0 || strcmp(ids[1], c.key_id) == 0);
    assert_int_equal(verify_with(&b,
                                 &(struct gw_bundle_verify_opts){.trust_keys = pin, .ntrust = 1},
                                 got, ids, &n),
                     GW_EDATALOSS);
    snprintf(want, sizeof want,
             "chain gw1: checkpoint at seq 2: signed by key %.16s..., not by the trusted key "
             "%.16s...",
             c.key_id, id);
    assert_string_equal(got, want);
    free(b.p);
}

/* Every bad place one verifier named, in order (at most 8), with its figures and each chain's
 * tally (records checked, not covered by a valid checkpoint). */
struct places {
    char at[8][GW_BUNDLE_ERR_MAX];
    size_t n;
    struct gw_bundle_verify_stats st;
    uint64_t records[4], not_covered[4];
    int64_t unc_from[4], unc_to[4]; /* each chain's records not yet covered (-1: none) */
    size_t nchains;
};

static void place_cb(void *arg, const char *place)
{
    struct places *p = arg;
    assert_true(p->n < 8);
    snprintf(p->at[p->n++], sizeof p->at[0], "%s", place);
}

/* The bundle of g verified under o (options: whole) with a report of every place; returns the
 * result, and checks that the first place is the verifier's error. */
static int verify_all(const struct gen *g, bool whole, struct places *p)
{
    struct buf b = make(g);
    struct gw_bundle_verify_opts o = {.whole = whole, .report = place_cb, .report_arg = p};
    struct gw_bundle_verifier *v;
    int rc;
    memset(p, 0, sizeof *p);
    assert_int_equal(gw_bundle_verifier_new(&o, &v), 0);
    rc = gw_bundle_verify_feed(v, b.p, b.n);
    if (rc == 0)
        rc = gw_bundle_verify_end(v);
    gw_bundle_verify_stats(v, &p->st);
    assert_int_equal(p->st.bad, p->n);
    while (p->nchains < 4 && gw_bundle_verify_tally(v, p->nchains, &p->records[p->nchains],
                                                    &p->not_covered[p->nchains]) != NULL) {
        assert_non_null(gw_bundle_verify_uncovered(v, p->nchains, &p->unc_from[p->nchains],
                                                   &p->unc_to[p->nchains]));
        p->nchains++;
    }
    assert_string_equal(gw_bundle_verify_error(v), p->n ? p->at[0] : "");
    gw_bundle_verifier_free(v);
    free(b.p);
    return rc;
}

#define FORGED_10                                                                                  \
    "chain gw1: checkpoint at seq 10: the signature does not verify (forged or altered "           \
    "checkpoint)"

/* A checkpoint that fails is named and gone past: the records after it are still linked and
 * hashed, and the first break among them is named too (a junk checkpoint planted in a chain
 * must not hide what was done to the chain after it), whole (the live check) or not. */
static void bad_checkpoint_does_not_hide_later_breaks(void **state)
{
    struct places p;
    (void)state;
    for (int whole = 0; whole < 2; whole++) {
        assert_int_equal(verify_all(&(struct gen){.forge_ckpt = 10, .alter_seq = 15}, whole, &p),
                         GW_EDATALOSS);
        assert_int_equal(p.n, 2);
        assert_string_equal(p.at[0], FORGED_10);
        assert_string_equal(p.at[1], "chain gw1: seq 15: the record's content does not match its "
                                     "hash (the record altered)");
    }
    assert_int_equal(verify_all(&(struct gen){.wrong_head = 10, .skip_seq = 15}, true, &p),
                     GW_EDATALOSS);
    assert_int_equal(p.n, 2);
    assert_string_equal(p.at[0], "chain gw1: checkpoint at seq 10: its head hash is not the hash "
                                 "of seq 10 (the record or the checkpoint altered)");
    assert_string_equal(p.at[1], "chain gw1: seq 15 expected after seq 14, found seq 16 (a "
                                 "record missing or out of order)");
    /* a swap is two records out of order: 15 before 14 (14 then follows 13, and 15 is set
     * aside), and 16 after 14 */
    assert_int_equal(verify_all(&(struct gen){.dup_ckpt = 10, .swap_seq = 14}, true, &p),
                     GW_EDATALOSS);
    assert_int_equal(p.n, 3);
    assert_string_equal(p.at[0], "chain gw1: checkpoint at seq 10: out of place (after seq 10)");
    assert_string_equal(p.at[1], "chain gw1: seq 14 expected after seq 13, found seq 15 (a "
                                 "record missing or out of order)");
    assert_string_equal(p.at[2], "chain gw1: seq 15 expected after seq 14, found seq 16 (a "
                                 "record missing or out of order)");
    /* every failing checkpoint is named, and the manifest (which lists the items as written)
     * adds nothing */
    assert_int_equal(verify_all(&(struct gen){.forge_ckpt = 10, .wrong_head = 20}, false, &p),
                     GW_EDATALOSS);
    assert_int_equal(p.n, 2);
    assert_string_equal(p.at[0], FORGED_10);
    assert_string_equal(p.at[1], "chain gw1: checkpoint at seq 20: its head hash is not the hash "
                                 "of seq 20 (the record or the checkpoint altered)");
}

/* A checkpoint that fails covers nothing: the records before it are covered only by the next
 * one that holds, and those after the last one that holds are "not yet covered", which is the
 * range the live check holds to the writer MACs (gw_bundle_verify_uncovered). */
static void bad_checkpoint_covers_nothing(void **state)
{
    struct places p;
    (void)state;
    assert_int_equal(verify_all(&(struct gen){.forge_ckpt = 10}, true, &p), GW_EDATALOSS);
    assert_int_equal(p.n, 1);
    assert_string_equal(p.at[0], FORGED_10);
    assert_int_equal(p.st.checkpoints, 3); /* the items read, as the manifest counts them */
    assert_int_equal(p.st.uncovered, 5);   /* 1..20 covered by the checkpoint at 20 */
    assert_string_equal(p.st.uncovered_note, "chain gw1: seq 21..25 not yet covered by a "
                                             "checkpoint");
    assert_int_equal(verify_all(&(struct gen){.forge_ckpt = 20}, true, &p), GW_EDATALOSS);
    assert_int_equal(p.n, 1);
    assert_int_equal(p.st.uncovered, 15);
    assert_string_equal(p.st.uncovered_note, "chain gw1: seq 11..25 not yet covered by a "
                                             "checkpoint");
    assert_int_equal(p.unc_from[0], 11);
    assert_int_equal(p.unc_to[0], 25);
    assert_int_equal(verify_all(&(struct gen){0}, true, &p), 0);
    assert_int_equal(p.n, 0);
    assert_int_equal(p.st.uncovered, 5);
    assert_int_equal(p.nchains, 2);
    assert_int_equal(p.unc_from[0], 21);
    assert_int_equal(p.unc_to[0], 25);
    assert_int_equal(p.unc_from[1], -1); /* gw2: its checkpoint at its last record */
    assert_int_equal(p.unc_to[1], -1);
}

/* A time range's bundle whose anchor fails: it anchors nothing, so the first record is taken as
 * it is (nothing trusted precedes it) and the rest of the chain is checked; the live check's
 * whole chain still starts at seq 1. */
static void bad_anchor_is_gone_past(void **state)
{
    struct places p;
    (void)state;
    assert_int_equal(verify_all(&(struct gen){.from_seq = 11, .forge_ckpt = 10}, false, &p),
                     GW_EDATALOSS);
    assert_int_equal(p.n, 1);
    assert_string_equal(p.at[0], FORGED_10);
    assert_int_equal(p.st.uncovered, 5);
    assert_int_equal(
        verify_all(&(struct gen){.from_seq = 11, .forge_ckpt = 10, .skip_seq = 15}, false, &p),
        GW_EDATALOSS);
    assert_int_equal(p.n, 2);
    assert_string_equal(p.at[1], "chain gw1: seq 15 expected after seq 14, found seq 16 (a "
                                 "record missing or out of order)");
    assert_int_equal(verify_all(&(struct gen){.from_seq = 11, .forge_ckpt = 10}, true, &p),
                     GW_EDATALOSS);
    assert_int_equal(p.n, 2);
    assert_string_equal(p.at[0], FORGED_10);
    assert_string_equal(p.at[1], "chain gw1: seq 1 expected, found seq 11 (records 1..10 "
                                 "missing, and no checkpoint anchors the chain here)");
}

#define LINK(s, p)                                                                                 \
    "chain gw1: seq " #s ": prev_hash is not the hash of seq " #p " (seq " #p                      \
    " altered, or this link)"
#define ORDER(want, after, found)                                                                  \
    "chain gw1: seq " #want " expected after seq " #after ", found seq " #found " (a record "      \
    "missing or out of order)"
#define ALTERED(s)                                                                                 \
    "chain gw1: seq " #s ": the record's content does not match its hash (the "                    \
    "record altered)"

/* Verifies g (as a time range's bundle and as the live check's whole chains: the same on chains
 * from seq 1): exactly the places want[0..n), in order; gw1's tally `records` checked and
 * `not_covered` by a valid checkpoint, gw2 clean (3 records, all covered); the figures of
 * closed chains add up (cut off, and the tail not yet covered). */
static void expect_resync(const struct gen *g, const char *const *want, size_t n, uint64_t records,
                          uint64_t not_covered)
{
    for (int whole = 0; whole < 2; whole++) {
        struct places p;
        assert_int_equal(verify_all(g, whole, &p), GW_EDATALOSS);
        for (size_t i = 0; i < n && i < p.n; i++)
            assert_string_equal(p.at[i], want[i]);
        assert_int_equal(p.n, n);
        assert_int_equal(p.nchains, 2);
        assert_int_equal(p.records[0], records);
        assert_int_equal(p.not_covered[0], not_covered);
        assert_int_equal(p.records[1], 3);
        assert_int_equal(p.not_covered[1], 0);
        assert_int_equal(p.st.records, records + 3);
        assert_int_equal(p.st.cut_off + p.st.uncovered, not_covered);
    }
}

/* A junk record the gateway's database role planted at the next seq (linked to nothing; the
 * gateway then chains onto it): named once, and the chain followed on from it. The records
 * between the last checkpoint and the junk are cut off: the next checkpoint signs a chain
 * through the junk, not through them. At the end, two of them, two together, one whose stored
 * hash is not its content's (the next record follows the stored hash). */
static void junk_record_is_named_and_gone_past(void **state)
{
    (void)state;
    expect_resync(&(struct gen){.junk = {15}}, (const char *[]){LINK(15, 14)}, 1, 25, 4 + 5);
    expect_resync(&(struct gen){.junk = {26}, .len = 26}, (const char *[]){LINK(26, 25)}, 1, 26,
                  5 + 1);
    expect_resync(&(struct gen){.junk = {8, 16}}, (const char *[]){LINK(8, 7), LINK(16, 15)}, 2, 25,
                  7 + 5 + 5);
    expect_resync(&(struct gen){.junk = {15, 16}}, (const char *[]){LINK(15, 14), LINK(16, 15)}, 2,
                  25, 1 + 4 + 5);
    expect_resync(&(struct gen){.junk = {15}, .junk_hash = true}, (const char *[]){ALTERED(15)}, 1,
                  25, 1 + 4 + 5);
}

/* Junk that nothing follows: a record with a seq already taken (only a bundle can hold it: the
 * trail's primary key refuses it), one put in between with a later seq, one past the end. Named
 * once; the next record that follows the record before it resumes the chain, the junk covered by
 * nothing; a checkpoint over the real record settles it the same way. */
static void junk_in_between_is_set_aside(void **state)
{
    (void)state;
    expect_resync(&(struct gen){.extra_after = 15, .extra_seq = 15, .extra_prev = 14},
                  (const char *[]){ORDER(16, 15, 15)}, 1, 26, 1 + 5);
    expect_resync(&(struct gen){.extra_after = 15, .extra_seq = 99},
                  (const char *[]){ORDER(16, 15, 99)}, 1, 26, 1 + 5);
    expect_resync(&(struct gen){.extra_after = 25, .extra_seq = 30},
                  (const char *[]){ORDER(26, 25, 30)}, 1, 26, 5 + 1);
    expect_resync(&(struct gen){.extra_after = 20, .extra_seq = 20, .extra_prev = 19},
                  (const char *[]){ORDER(21, 20, 20)}, 1, 26, 1 + 5);
}

/* Junk first, then the superuser deletes, alters or swaps a later record: both named. */
static void junk_does_not_hide_later_tampering(void **state)
{
    (void)state;
    expect_resync(&(struct gen){.junk = {12}, .skip_seq = 22},
                  (const char *[]){LINK(12, 11), ORDER(22, 21, 23)}, 2, 24, 1 + 1 + 3);
    expect_resync(&(struct gen){.junk = {12}, .alter_seq = 22},
                  (const char *[]){LINK(12, 11), ALTERED(22)}, 2, 25, 1 + 1 + 1 + 3);
    expect_resync(&(struct gen){.junk = {8}, .swap_seq = 14},
                  (const char *[]){LINK(8, 7), ORDER(14, 13, 15), ORDER(15, 14, 16)}, 3, 25,
                  7 + 1 + 4 + 5);
}

/* A checkpoint that holds over records the chain lacks shows them gone, and the chain goes on
 * from it as from an anchor: 21 follows the checkpoint at 20 (record 20 deleted). In the live
 * check's whole chains, a checkpoint before the first record does the same. */
static void checkpoint_over_missing_records_is_gone_past(void **state)
{
    struct places p;
    (void)state;
    expect_resync(&(struct gen){.skip_seq = 20},
                  (const char *[]){"chain gw1: seq 20..20 missing: the checkpoint at seq 20 covers "
                                   "records the chain does not have (it ends at seq 19)"},
                  1, 24, 9 + 5);
    assert_int_equal(verify_all(&(struct gen){.from_seq = 11, .skip_seq = 15}, true, &p),
                     GW_EDATALOSS);
    assert_int_equal(p.n, 2);
    assert_string_equal(p.at[0], "chain gw1: seq 1..10 missing: the checkpoint at seq 10 comes "
                                 "before any record (a whole chain starts at seq 1)");
    assert_string_equal(p.at[1], ORDER(15, 14, 16));
    assert_int_equal(p.records[0], 14);
    assert_int_equal(p.not_covered[0], 4 + 5); /* 11..14, and 21..25 */
}

static int ed25519_group(void **state)
{
    (void)state;
    ALG = GW_SIGN_ED25519;
    return 0;
}

static int sm2_group(void **state)
{
    (void)state;
    ALG = GW_SIGN_SM2;
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(good_whole_and_bytewise),
        cmocka_unit_test(cut_anywhere_fails),
        cmocka_unit_test(flipped_bit_anywhere_fails),
        cmocka_unit_test(deleted_record),
        cmocka_unit_test(altered_record),
        cmocka_unit_test(swapped_records),
        cmocka_unit_test(deleted_checkpointed_record),
        cmocka_unit_test(forged_checkpoint),
        cmocka_unit_test(key_names_its_algorithm),
        cmocka_unit_test(sm2_key_off_the_curve_is_malformed),
        cmocka_unit_test(many_keys_cost_linear_time),
        cmocka_unit_test(seal_by_another_key),
        cmocka_unit_test(untrusted_key),
        cmocka_unit_test(unsealed_only_when_allowed),
        cmocka_unit_test(whole_chains_take_no_anchor),
        cmocka_unit_test(trusted_keys_and_signers),
        cmocka_unit_test(small_order_key_signs_only_unpinned),
        cmocka_unit_test(bad_checkpoint_does_not_hide_later_breaks),
        cmocka_unit_test(bad_checkpoint_covers_nothing),
        cmocka_unit_test(bad_anchor_is_gone_past),
        cmocka_unit_test(junk_record_is_named_and_gone_past),
        cmocka_unit_test(junk_in_between_is_set_aside),
        cmocka_unit_test(junk_does_not_hide_later_tampering),
        cmocka_unit_test(checkpoint_over_missing_records_is_gone_past),
    };
    return cmocka_run_group_tests_name("ed25519", tests, ed25519_group, NULL) |
           cmocka_run_group_tests_name("sm2", tests, sm2_group, NULL);
}
