/* seal.h: a validated waybill to the sealed record the store writes, and a stored record back to
 * clear field values. This is where envelope encryption meets the record layout (record.h):
 *  - one cipher suite per record (crypto.h): a new record is sealed entirely under the keyring's
 *    suite (gw_keyring_suite: data-key wrap, fields, blind indexes, both MACs); a stored record's
 *    suite is the algorithm byte of its wrapped data key, and every part is opened under it (a
 *    field of another algorithm fails as that column; a suite the keyring lacks is GW_EPRECOND);
 *  - a fresh 256-bit data key per record, wrapped by the suite's current KEK;
 *  - every PII field sealed under the data key (AES-256-GCM or SM4-CTR + HMAC-SM3): in MAC
 *    version 3 (what is written) all 23 together as one value, fields_ct, whose plaintext is the
 *    fields' items (gw_crypto_items_encode, in enum gw_col order) and whose AAD is every clear
 *    column marked mac in gw_rec_cols (record id, blind indexes, pickup day, submitter,
 *    acceptance time, ..., content_mac, mac_version); in versions 1 and 2 (read only) each field
 *    on its own, AAD = (table, column, record id, data-key version). An absent field is sealed as
 *    the empty string, so a missing field is corruption, never "no value";
 *  - blind indexes over the normalised values validation handed back (struct gw_waybill_norm);
 *    lookups compute them under every suite the keyring holds (gw_seal_lookup_bidx), so a record
 *    is found before, during and after a migration between suites;
 *  - content_mac: a keyed digest of every field's canonical value and the clear operational
 *    fields, equal for a retried submit of the same waybill (the store's idempotency check);
 *    a new record also carries the number's blind index and its content_mac under each other
 *    suite the keyring holds (alt_*, not stored), so a retry is recognised across a migration;
 *  - record_mac (MAC version 2 only): a keyed MAC over every clear column of the row that a
 *    reader relies on (gw_rec_cols entries marked mac) and every field's clear value; version 3
 *    has none: fields_ct's seal authenticates the same columns as its AAD.
 * Opening follows the row's mac_version: version 3 opens fields_ct (the AAD is rebuilt from the
 * row's clear columns, so an edit of any of them fails the seal: GW_SEAL_PART_FIELDS); version 2
 * opens each field and checks both MACs; version 1 (rows written before record_mac) checks
 * content_mac only. The version cannot be lowered unnoticed: a version 2 content_mac includes the
 * version, so checked as version 1 it fails; a version 3 row relabelled 1 or 2 has no per-field
 * ciphertexts (and relabelled 2, no record_mac), and a version 1 or 2 row relabelled 3 has no
 * fields_ct.
 * Pure: no I/O, no logging; memory comes from the caller's arena (wiped when it is freed). */
#ifndef GW_SEAL_H
#define GW_SEAL_H

#include <stdint.h>

#include "crypto.h"
#include "err.h"
#include "keyring.h"
#include "record.h"
#include "waybill.h"

struct gw_arena;

#define GW_SEAL_DEK_VERSION 1 /* data keys are never re-keyed in place yet */
/* The most a version 3 record's fields may take, encoded (fields_ct's plaintext): a valid
 * waybill's take less than 4 KiB (seal.c checks the bound against validation's limits at compile
 * time); a longer fields_ct is refused before anything is allocated for it (DATA_LOSS), as
 * sql/053's CHECK refuses it. */
#define GW_SEAL_FIELDS_MAX (64u * 1024)

/* Which part of a record failed to open. */
enum gw_seal_part {
    GW_SEAL_PART_NONE = -1,
    GW_SEAL_PART_DEK = -2,     /* the wrapped data key */
    GW_SEAL_PART_CONTENT = -3, /* content_mac mismatch, or an unknown mac_version */
    GW_SEAL_PART_RECORD = -4,  /* record_mac mismatch: a clear column was altered */
    GW_SEAL_PART_NUMBER = -5,  /* the reader's check: not the waybill number asked for */
    GW_SEAL_PART_FIELDS = -6,  /* version 3: fields_ct, or a clear column bound to it, altered */
    /* 0..GW_COL_COUNT-1: that column's ciphertext */
};

/* Seals w (which passed gw_waybill_validate_norm, which filled norm) as record id, MAC version
 * GW_RECORD_MAC_CURRENT. origin_branch and submitted_by are NUL-terminated (the caller resolved
 * origin_branch); now (Unix seconds) is the acceptance time (accepted_at) and gives pickup_day
 * when the waybill has no pickup time. Every pointer in *out points into arena a, origin_branch
 * or submitted_by. Returns 0, GW_ENOMEM, GW_EPRECOND (current KEK unusable) or GW_ECRYPTO. */
int gw_seal_waybill(struct gw_crypto *cx, const struct gw_keyring *kr, const struct gw_waybill *w,
                    const struct gw_waybill_norm *norm, const uint8_t id[GW_RECORD_ID_LEN],
                    const char *origin_branch, const char *submitted_by, int64_t now,
                    struct gw_arena *a, struct gw_sealed_waybill *out) GW_MUST_CHECK;

/* As gw_seal_waybill, written as MAC version `version`: GW_RECORD_MAC_V3 (what gw_seal_waybill
 * writes) or GW_RECORD_MAC_V2 (the 23 fields sealed one by one, and the record MAC: the rows
 * databases hold from before version 3; kept so that the tests can make them). Additionally
 * GW_EINVAL for another version. */
int gw_seal_waybill_version(struct gw_crypto *cx, const struct gw_keyring *kr,
                            const struct gw_waybill *w, const struct gw_waybill_norm *norm,
                            const uint8_t id[GW_RECORD_ID_LEN], const char *origin_branch,
                            const char *submitted_by, int64_t now, int version, struct gw_arena *a,
                            struct gw_sealed_waybill *out) GW_MUST_CHECK;

/* Opens every ciphertext of row into clear[i] (NUL-terminated, in arena a) and checks the MACs
 * of row->mac_version. Returns 0; GW_EDATALOSS with *bad set to the failing part (enum
 * gw_seal_part or a column) when anything fails to authenticate, is of another suite than the
 * wrapped data key, or the MAC version is unknown; GW_EPRECOND when the keyring lacks the
 * record's suite or its KEK version is retired or unknown; GW_ENOMEM; GW_ECRYPTO. */
int gw_unseal_waybill(struct gw_crypto *cx, const struct gw_keyring *kr,
                      const struct gw_sealed_waybill *row, struct gw_arena *a,
                      struct gw_str clear[GW_COL_COUNT], int *bad) GW_MUST_CHECK;

/* The blind index under suite of a normalised waybill number (gw_waybillno_normalize or
 * struct gw_waybill_norm). Returns 0, GW_EPRECOND (the keyring lacks suite) or GW_ECRYPTO. */
int gw_seal_number_bidx(struct gw_crypto *cx, const struct gw_keyring *kr, enum gw_suite suite,
                        const char *norm, size_t n, uint8_t out[GW_CRYPTO_BIDX_LEN]) GW_MUST_CHECK;

/* The blind indexes to look a normalised value up by: out[0] under the keyring's suite (the one
 * new records use; throttles and logs key on it), then under each other suite the keyring holds;
 * remaining slots repeat out[0], so a lookup always matches exactly GW_SEAL_LOOKUP_N values
 * (`= ANY`). Returns 0, GW_EINVAL (purpose) or GW_ECRYPTO. */
#define GW_SEAL_LOOKUP_N GW_SUITE_COUNT
int gw_seal_lookup_bidx(struct gw_crypto *cx, const struct gw_keyring *kr, enum gw_bidx purpose,
                        const char *norm, size_t n,
                        uint8_t out[GW_SEAL_LOOKUP_N][GW_CRYPTO_BIDX_LEN]) GW_MUST_CHECK;

/* A fresh random record id (a version-4 UUID's 16 bytes), drawn through cx's randomness pool (cx
 * may be NULL). Returns 0 or GW_ECRYPTO. */
int gw_seal_new_id(struct gw_crypto *cx, uint8_t id[GW_RECORD_ID_LEN]) GW_MUST_CHECK;

#endif
