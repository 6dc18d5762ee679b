/* audit_bundle.h: the audit bundle (docs/audit-bundle-format.md): a self-contained file of audit
 * records, the signed checkpoints covering them, the public keys, a manifest of SHA-256 digests
 * and a seal (Ed25519 or SM2, by the exporter's suite, over everything before it). Pure: bytes in,
 * bytes out; no I/O of its own.
 *
 * The writer emits the bundle through a sink in one pass with bounded memory (one item at a
 * time, plus one small entry per chain for the manifest). The verifier reads a bundle from bytes
 * fed in pieces of any size, also in bounded memory, and names every bad place it finds ("chain
 * ctl: seq 5: ..."). Within a chain the check never stops: a checkpoint that fails is reported,
 * then ignored (it anchors and covers nothing); a record that does not fit (its hash, seq or
 * link) is reported and the chain followed on from it, or from the run it interrupted when a
 * later record or checkpoint shows it was put in between (docs/audit-bundle-format.md §5,
 * "Going on after a broken record"). A bad place of the bundle's own (framing, order, manifest,
 * seal) ends the check. `waygatectl audit verify` checks the live chain by writing an unsealed
 * bundle of it straight into a verifier, so both checks are one code. */
#ifndef GW_AUDIT_BUNDLE_H
#define GW_AUDIT_BUNDLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "audit_rec.h"
#include "err.h"

#define GW_BUNDLE_ITEM_MAX (1u << 20) /* largest item payload accepted, in bytes */
#define GW_BUNDLE_ERR_MAX 256         /* longest message of the verifier */

/* Item types (one ASCII byte each). */
#define GW_BUNDLE_HEADER 'H'
#define GW_BUNDLE_KEY 'K'
#define GW_BUNDLE_RECORD 'R'
#define GW_BUNDLE_CHECKPOINT 'C'
#define GW_BUNDLE_MANIFEST 'M'
#define GW_BUNDLE_SEAL 'Z'
#define GW_BUNDLE_LEFT_OUT 'G' /* a stored record the format cannot hold, named and left out */

/* Where the writer's bytes go: returns 0 or a negative gw_err, which the writer passes on. */
typedef int (*gw_bundle_sink_fn)(void *arg, const uint8_t *p, size_t n);

struct gw_bundle_header {
    const char *generator;   /* "waygatectl" or "waygated" */
    int64_t created_at_us;   /* when the bundle was made */
    int64_t from_us, to_us;  /* the time range asked for: at_us in [from_us, to_us) */
    const char *exported_by; /* the actor who asked (may be NULL) */
};

/* A signed checkpoint as stored. */
struct gw_audit_ckpt {
    const char *chain;
    int64_t seq;
    uint8_t head[GW_AUDIT_HASH_LEN];
    int64_t at_us;
    char key_id[65];
    uint8_t sig[GW_SIGN_SIG_MAX]; /* Ed25519 (64 bytes) or SM2 DER (r, s), as the key's algorithm */
    size_t siglen;
};

struct gw_bundle_writer;

/* A writer that sends every byte to sink(arg, ...). Writes the magic and the header at once.
 * Returns 0 and *out, GW_EINVAL, GW_ENOMEM or the sink's error. */
int gw_bundle_writer_new(gw_bundle_sink_fn sink, void *arg, const struct gw_bundle_header *h,
                         struct gw_bundle_writer **out) GW_MUST_CHECK;
void gw_bundle_writer_free(struct gw_bundle_writer *w);

/* A public key (before any record): publen 32 (Ed25519) or 65 (SM2, 04|x|y); the item names the
 * algorithm. Returns 0, GW_EINVAL (neither), GW_ECRYPTO or the sink's error. */
int gw_bundle_write_key(struct gw_bundle_writer *w, const uint8_t *pub,
                        size_t publen) GW_MUST_CHECK;
/* A record with its stored hash (the verifier checks both the content and the links). The
 * caller keeps each chain's items together and in the order of the format. Returns 0,
 * GW_EINVAL (the record breaks gw_audit_rec_check), GW_ENOMEM, GW_ECRYPTO or the sink's. */
int gw_bundle_write_record(struct gw_bundle_writer *w, const struct gw_audit_rec *r,
                           const struct gw_audit_link *l,
                           const uint8_t hash[GW_AUDIT_HASH_LEN]) GW_MUST_CHECK;
int gw_bundle_write_checkpoint(struct gw_bundle_writer *w,
                               const struct gw_audit_ckpt *c) GW_MUST_CHECK;
/* In place of a stored record the format cannot hold (gw_bundle_write_record gave GW_EINVAL: an
 * empty actor, a text over GW_AUDIT_TEXT_MAX bytes): a `G` item naming its chain, seq and stored
 * hash, which every verifier reports as a bad place; the record's seq then shows as missing.
 * Returns 0, GW_EINVAL (a bad chain id or seq), GW_ENOMEM, GW_ECRYPTO or the sink's error. */
int gw_bundle_write_left_out(struct gw_bundle_writer *w, const char *chain, int64_t seq,
                             const uint8_t hash[GW_AUDIT_HASH_LEN]) GW_MUST_CHECK;
/* Writes the manifest and, when key is not NULL, the seal signed with it (its public key must
 * have been the last written). Returns 0, GW_EINVAL, GW_ENOMEM, GW_ECRYPTO or the sink's error. */
int gw_bundle_finish(struct gw_bundle_writer *w, const struct gw_sign_key *key) GW_MUST_CHECK;
/* SHA-256 of every byte written so far (after gw_bundle_finish: of the whole bundle). */
void gw_bundle_writer_digest(const struct gw_bundle_writer *w, uint8_t out[GW_AUDIT_HASH_LEN]);
uint64_t gw_bundle_writer_records(const struct gw_bundle_writer *w);

/* ---- the verifier ---- */

struct gw_bundle_verifier;

#define GW_BUNDLE_TRUST_MAX 16 /* most key ids a verifier pins */

/* Told each bad place as the verifier finds it, in order: one line, NUL-terminated, valid only
 * during the call (a checkpoint's or record's that the check goes on past, or the one that ends
 * it). */
typedef void (*gw_bundle_report_fn)(void *arg, const char *place);

struct gw_bundle_verify_opts {
    bool unsealed; /* accept a bundle without seal (the live chain's check) */
    /* Every chain is whole, from seq 1 (the live chain's check: records are never deleted). A
     * checkpoint before a chain's first record is then refused instead of taken as the anchor a
     * time-range bundle starts from. */
    bool whole;
    /* ntrust key ids (64 hex digits each, at most GW_BUNDLE_TRUST_MAX): the signer of every
     * checkpoint and of the seal must be one of them. ntrust 0: any key the bundle lists. */
    const char *const *trust_keys;
    size_t ntrust;
    gw_bundle_report_fn report; /* NULL: only the first is kept (gw_bundle_verify_error) */
    void *report_arg;
};

struct gw_bundle_verify_stats {
    uint64_t records, checkpoints, chains, keys; /* records: every one read, and checked */
    uint64_t bad;                                /* bad places found (each told to opts.report) */
    uint64_t left_out;  /* G items: records the exporter could not carry (each a bad place) */
    uint64_t uncovered; /* records after the last checkpoint of their chain that held */
    /* records no checkpoint that holds covers, nor can any more: before a break that a later
     * checkpoint settled the other way, put in between, or with content that does not match
     * their hash (of closed chains; with uncovered, every record not covered) */
    uint64_t cut_off;
    char uncovered_note[GW_BUNDLE_ERR_MAX]; /* the first chain with such a tail, or "" */
    int64_t from_us, to_us;                 /* the header's range */
    /* occupied slots of the key index visited, lookups and insertions (rehashes included): the
     * work keys cost, which stays in proportion to their number */
    uint64_t key_probes;
};

/* Returns 0 and *out, GW_EINVAL (more than GW_BUNDLE_TRUST_MAX trusted keys) or GW_ENOMEM. */
int gw_bundle_verifier_new(const struct gw_bundle_verify_opts *o,
                           struct gw_bundle_verifier **out) GW_MUST_CHECK;
void gw_bundle_verifier_free(struct gw_bundle_verifier *v);
/* Feeds the next n bytes of the bundle. Returns 0 (also after a bad checkpoint or record,
 * reported and gone past), or GW_EDATALOSS at a bad place that ends the check (later calls
 * return it again), GW_ENOMEM or GW_ECRYPTO. */
int gw_bundle_verify_feed(struct gw_bundle_verifier *v, const uint8_t *p, size_t n) GW_MUST_CHECK;
/* The end of the bundle: checks that it is complete. Returns 0 when no bad place was found,
 * GW_EDATALOSS when any was (stats.bad of them), or as gw_bundle_verify_feed. */
int gw_bundle_verify_end(struct gw_bundle_verifier *v) GW_MUST_CHECK;
/* The first bad place, one line ("" while none), or the failure (out of memory, crypto). */
const char *gw_bundle_verify_error(const struct gw_bundle_verifier *v);
void gw_bundle_verify_stats(const struct gw_bundle_verifier *v, struct gw_bundle_verify_stats *out);
/* The i-th key, in the bundle's order, that has signed a checkpoint or the seal so far: its id
 * (64 hex digits, the SHA-256 of its public key; valid while v lives) and *alg; NULL past the
 * last one. */
const char *gw_bundle_verify_signer(const struct gw_bundle_verifier *v, size_t i,
                                    enum gw_sign_alg *alg);

/* After a bundle verified: the i-th chain's id, with the seq and hash of its last record in the
 * bundle (the head the bundle vouches for), or NULL past the last chain; a chain without records
 * in the bundle gives *last = -1. */
const char *gw_bundle_verify_chain(const struct gw_bundle_verifier *v, size_t i, int64_t *last,
                                   uint8_t head[GW_AUDIT_HASH_LEN]);

/* How much of the i-th chain (in the bundle's order; the one being read when the check ended
 * included) was checked: its id, the records read and checked, and how many of them no
 * checkpoint that holds covers (cut off, or not yet covered); NULL past the last chain. */
const char *gw_bundle_verify_tally(const struct gw_bundle_verifier *v, size_t i, uint64_t *records,
                                   uint64_t *not_covered);

/* After the i-th chain (in the bundle's order) was read: its id, with the seq range *from..*to
 * of its last records that no checkpoint covers yet, the tail of the run the chain ended on
 * (*from = *to = -1 when there are none); NULL past the last chain read to its end. */
const char *gw_bundle_verify_uncovered(const struct gw_bundle_verifier *v, size_t i, int64_t *from,
                                       int64_t *to);

/* A sink (for gw_bundle_writer_new) that feeds a verifier (arg). */
int gw_bundle_verify_sink(void *arg, const uint8_t *p, size_t n);

#endif
