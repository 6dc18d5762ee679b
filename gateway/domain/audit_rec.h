/* audit_rec.h: the audit record and checkpoint as bytes: the canonical encoding that is hashed
 * into the chain and signed in checkpoints (docs/audit-bundle-format.md specifies the same bytes
 * for independent verifiers). Pure functions; SHA-256 comes from OpenSSL, the checkpoint
 * signatures from crypto/sign.h (Ed25519 under the aes suite, SM2 under sm).
 *
 * Canonical encoding of a record, version 1:
 *   "waygate.audit.v1" 0x00, then for each field in this order:
 *     chain, seq, at_us, actor, role, peer, cert, branch, action, object, count, purpose,
 *     legal_basis, approval, outcome, detail, confidential, prev_hash
 *   an absent field (NULL; count < 0) is the single byte 0x00; a present one is 0x01, its length
 *   as 4 bytes big-endian, then its bytes. Integers (seq, at_us, count) are their decimal ASCII
 *   digits, confidential is "1" or "0", prev_hash its 32 raw bytes.
 * hash = SHA-256(encoding).
 *
 * Checkpoint message, version 1: "waygate.checkpoint.v1" 0x00, then chain, seq, head_hash,
 * at_us encoded as fields above (all present); the signature (sign.h: Ed25519 or SM2, by the
 * configured suite) is over these bytes. The message does not name the algorithm: the signing
 * key's public half does (its length), and a key has one algorithm. */
#ifndef GW_AUDIT_REC_H
#define GW_AUDIT_REC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "sign.h"

#define GW_AUDIT_HASH_LEN 32
#define GW_AUDIT_TEXT_MAX 1024 /* longest text field, in bytes (longer ones are refused) */

/* What a caller says about one action. Every string is NUL-terminated UTF-8 without PII or
 * secrets; NULL means absent. actor, action and outcome are required; action matches
 * ^[a-z][a-z0-9_.]{0,63}$ (e.g. "reveal", "search.phone", "login.fail", "bulk.approve"),
 * outcome ^[a-z][a-z0-9_]{0,31}$ ("ok", "refused", "failed", ...). */
struct gw_audit_rec {
    const char *actor;  /* account name, or certificate principal name */
    const char *role;   /* the role the action was taken in */
    const char *peer;   /* remote address ("local" for the CLI) */
    const char *cert;   /* certificate principal (device, system, workstation) */
    const char *branch; /* the actor's branch */
    const char *action;
    const char *object; /* what was acted on: an id, a record id and field, a selector */
    int64_t count;      /* records affected; < 0: absent */
    const char *purpose;
    const char *legal_basis;
    const char *approval; /* approval reference (bulk request id, lawful-access case id) */
    const char *outcome;
    const char *detail;
    bool confidential; /* lawful access (Art. 16): shown to compliance auditors only */
};

/* The chained form: the caller's record plus what the chain adds. */
struct gw_audit_link {
    const char *chain;
    int64_t seq;   /* >= 1 */
    int64_t at_us; /* microseconds since the epoch */
    uint8_t prev_hash[GW_AUDIT_HASH_LEN];
};

/* Checks a record's required fields and patterns and text lengths. Returns 0 or GW_EINVAL. */
int gw_audit_rec_check(const struct gw_audit_rec *r) GW_MUST_CHECK;

/* Encodes (r, l) canonically into buf (cap bytes) and sets *len; returns 0, GW_ETOOBIG (cap too
 * small; *len is the size needed) or GW_EINVAL. */
int gw_audit_rec_encode(const struct gw_audit_rec *r, const struct gw_audit_link *l, uint8_t *buf,
                        size_t cap, size_t *len) GW_MUST_CHECK;

/* hash = SHA-256(canonical encoding of (r, l)). Returns 0, GW_EINVAL, GW_ENOMEM or GW_ECRYPTO. */
int gw_audit_rec_hash(const struct gw_audit_rec *r, const struct gw_audit_link *l,
                      uint8_t hash[GW_AUDIT_HASH_LEN]) GW_MUST_CHECK;

/* The checkpoint message (at most 128 + strlen(chain) bytes) into buf; returns 0 or GW_ETOOBIG. */
int gw_audit_checkpoint_msg(const char *chain, int64_t seq, const uint8_t head[GW_AUDIT_HASH_LEN],
                            int64_t at_us, uint8_t *buf, size_t cap, size_t *len) GW_MUST_CHECK;

/* key_id: lowercase hex SHA-256 of the public key (publen bytes: 32 Ed25519, 65 SM2), 64
 * characters and a NUL. */
int gw_audit_key_id(const uint8_t *pub, size_t publen, char key_id[65]) GW_MUST_CHECK;

#endif
