/* audit_read.h: waygatectl's blocking reads of the audit trail (sql/008_audit.sql), for `audit
 * verify` and `audit export`: the public keys, which spans of which chains a check or an export
 * covers, and a span's records and checkpoints in chain order, in batches (bounded memory
 * whatever the chain's length). Only reads: nothing here writes the trail. For the CLI only. */
#ifndef GW_STORE_AUDIT_READ_H
#define GW_STORE_AUDIT_READ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "audit_bundle.h"
#include "audit_rec.h"
#include "err.h"

struct gw_admin;

/* One stored record; the strings live until the callback returns. */
struct gw_audit_row {
    struct gw_audit_rec rec;
    struct gw_audit_link link;
    uint8_t hash[GW_AUDIT_HASH_LEN]; /* the stored hash column */
};

/* What to read of one chain: records with seq in [first, last] (those that exist), and the
 * checkpoints with seq in [first - 1, ckpt_last]. */
struct gw_audit_span {
    char chain[65];
    int64_t first, last, ckpt_last;
    bool gateway; /* a gateway's chain (audit_chain.kind), whose records carry writer MACs;
                   * known for a live plan only */
};

/* Callbacks return 0 to go on, or a negative gw_err that stops the read and is returned. */
/* A public key: publen 32 (Ed25519) or 65 (SM2) bytes. */
typedef int (*gw_audit_key_cb)(void *arg, const uint8_t *pub, size_t publen);
typedef int (*gw_audit_row_cb)(void *arg, const struct gw_audit_row *r);
typedef int (*gw_audit_ckpt_cb)(void *arg, const struct gw_audit_ckpt *c);

/* Opens (BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY: one snapshot for everything read) and
 * ends the read. Return 0 or GW_EINTERNAL with the server's message. */
int gw_audit_read_begin(struct gw_admin *a, char *errbuf, size_t errlen) GW_MUST_CHECK;
int gw_audit_read_end(struct gw_admin *a, char *errbuf, size_t errlen) GW_MUST_CHECK;

/* Decodes the hex text of a bytea of 1..max bytes into out, its length in *n; false if it is not
 * one. */
bool gw_audit_hex(const char *hex, uint8_t *out, size_t max, size_t *n);

/* Every public key of audit_key, oldest first, each once and only when it is one
 * (gw_audit_key_row: a bundle that listed a key twice, or an SM2 point off the curve, would fail
 * every verifier at its keys). Returns 0, GW_EINTERNAL or the callback's error. */
int gw_audit_read_keys(struct gw_admin *a, gw_audit_key_cb cb, void *arg, char *errbuf,
                       size_t errlen) GW_MUST_CHECK;

/* The spans, by chain id in byte order, into *out (gw_free) and *n. live: every chain whole
 * (records 1..its last, every checkpoint). Otherwise the chains with records whose at_us is in
 * [from_us, to_us), each from just after the last checkpoint before its first such record (or
 * seq 1) to the first checkpoint at or after its last one (or that record). Returns 0, GW_ENOMEM
 * or GW_EINTERNAL. */
int gw_audit_read_plan(struct gw_admin *a, bool live, int64_t from_us, int64_t to_us,
                       struct gw_audit_span **out, size_t *n, char *errbuf,
                       size_t errlen) GW_MUST_CHECK;

/* Calls row_cb for each record of the span by seq and ckpt_cb for each checkpoint, a checkpoint
 * at seq s after the record s (before the next record when s is missing), batch records per
 * query. Returns 0, GW_EINTERNAL (also for a row that does not decode) or a callback's error. */
int gw_audit_read_span(struct gw_admin *a, const struct gw_audit_span *s, long batch,
                       gw_audit_row_cb row_cb, gw_audit_ckpt_cb ckpt_cb, void *arg, char *errbuf,
                       size_t errlen) GW_MUST_CHECK;

/* A record's stored hash and writer MAC (sql/028_audit_writer_mac.sql); mac NULL when it has
 * none (or one that is not 32 bytes). */
typedef int (*gw_audit_mac_cb)(void *arg, int64_t seq, const uint8_t hash[GW_AUDIT_HASH_LEN],
                               const uint8_t *mac);

/* Calls cb for each record of chain with seq in [from, to], by seq, batch records per query.
 * Returns 0, GW_EINTERNAL (also for a hash that does not decode) or the callback's error. */
int gw_audit_read_macs(struct gw_admin *a, const char *chain, int64_t from, int64_t to, long batch,
                       gw_audit_mac_cb cb, void *arg, char *errbuf, size_t errlen) GW_MUST_CHECK;

/* A destruction row (sql/009_bulk.sql) that no record of a gateway's chain accounts for. */
struct gw_audit_unrecorded {
    int64_t id, count;
    const char *reason;     /* "bulk" or "retention" */
    const char *request_id; /* a bulk destruction's request, else NULL */
    const char *at;         /* when, YYYY-MM-DDTHH:MM:SSZ */
};
typedef int (*gw_audit_unrecorded_cb)(void *arg, const struct gw_audit_unrecorded *u);

/* Calls cb, by id, for each destruction row that no `ok` record of a gateway's chain accounts
 * for: a bulk destruction needs a bulk.run record whose approval is its request and whose count
 * is its count; a retention destruction a retention.destroy record whose object is its selector
 * and whose count is its count, one record for each such destruction (the gateway writes both in
 * the destruction's transaction). Returns 0, GW_EINTERNAL or the callback's error. */
int gw_audit_read_unrecorded(struct gw_admin *a, gw_audit_unrecorded_cb cb, void *arg, char *errbuf,
                             size_t errlen) GW_MUST_CHECK;

/* The stored hash of record (chain, seq) into hash; *found false when there is no such record.
 * Returns 0 or GW_EINTERNAL. */
int gw_audit_read_hash(struct gw_admin *a, const char *chain, int64_t seq,
                       uint8_t hash[GW_AUDIT_HASH_LEN], bool *found, char *errbuf,
                       size_t errlen) GW_MUST_CHECK;

/* ---- shared with the gateway's asynchronous reads (audit_scan.c) ---- */

/* The columns of a record, in the order gw_audit_read_row reads them. */
#define GW_AUDIT_RECORD_COLS                                                                       \
    "chain, seq, at_us, actor, role, peer, cert, branch, action, object, count, purpose, "         \
    "legal_basis, approval, outcome, detail, confidential, encode(prev_hash, 'hex'), "             \
    "encode(hash, 'hex')"
#define GW_AUDIT_RECORD_NCOLS 19 /* the columns of GW_AUDIT_RECORD_COLS */

/* The public keys a bundle lists: one row per public key (a row planted before
 * sql/035_audit_key_own_id.sql may repeat one under another key id), oldest first. */
#define GW_AUDIT_KEYS_SQL                                                                          \
    "SELECT encode(public_key, 'hex') FROM audit_key GROUP BY public_key "                         \
    "ORDER BY min(created_at), min(key_id)"

struct pg_result;
/* Row i of a text-format result of GW_AUDIT_KEYS_SQL into pub (GW_SIGN_PUB_MAX bytes of room) and
 * *publen. Returns 1 (a key), 0 (a row that is no public key of its algorithm, an SM2 point off
 * the curve, planted before sql/035: left out, its checkpoints then name a key not in the
 * bundle) or GW_EINTERNAL (not hex of a key's length). */
int gw_audit_key_row(const struct pg_result *res, int i, uint8_t *pub, size_t *publen);

/* Row i of a text-format result of GW_AUDIT_RECORD_COLS into *out (its strings point into res).
 * Returns 0 or GW_EINTERNAL (a hash that does not decode). */
int gw_audit_read_row(const struct pg_result *res, int i, struct gw_audit_row *out) GW_MUST_CHECK;
/* Row i of (seq, hex head_hash, at_us, key_id, hex signature) as a checkpoint of chain. Returns 0
 * or GW_EINTERNAL. */
int gw_audit_read_ckpt(const struct pg_result *res, int i, const char *chain,
                       struct gw_audit_ckpt *c) GW_MUST_CHECK;

/* Why the head of a chain (row 0 of a text-format result of GW_AUDIT_RECORD_COLS ordered by seq
 * descending; row 1, when there is one, the record before it) must not be chained onto, or NULL
 * when it may: its content must give its stored hash, and its prev_hash must be its
 * predecessor's stored hash (32 zero bytes at seq 1). Whoever may insert records into a chain
 * could otherwise put a junk row at its next seq, and the link its writer added would vouch for
 * it. *h is the head as read (its seq unset when even that failed). The check is one link deep: a
 * record that links properly and whose hash is its content's passes it (record hashes use no
 * secret). */
const char *gw_audit_head_fault(const struct pg_result *res, struct gw_audit_row *h);
/* Whether the checkpoint of row 0 of own (rows as gw_audit_read_ckpt reads them) is over the head
 * h of chain (its seq and stored hash) and signed with the key whose public half is pub. */
bool gw_audit_head_signed(const struct pg_result *own, const char *chain,
                          const struct gw_audit_row *h, const uint8_t *pub, size_t publen);
/* The audit.break record a writer puts after a head at seq planted that failed its check (why):
 * actor, object "seq <planted>", detail in one wording for the gateway and the CLI (object and
 * detail are written into the caller's buffers, which *r points to). */
void gw_audit_break_rec(const char *chain, int64_t planted, const char *why, const char *actor,
                        char object[48], char detail[256], struct gw_audit_rec *r);

#endif
