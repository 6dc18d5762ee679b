/* seal.h: a validated waybill to the sealed record the store writes, and a stored record back to
 * clear field values. This is where envelope encryption meets the record layout:
 *  - a fresh 256-bit data key per record, wrapped by the keyring's current KEK;
 *  - every PII column (record.h) sealed with AES-256-GCM under the data key, AAD = (table,
 *    column, record id, data-key version); an absent field is sealed as the empty string, so a
 *    NULL or missing ciphertext is corruption, never "no value";
 *  - blind indexes over normalised values (waybill number upper-cased; phones as phone.h
 *    normalises them; ID numbers as idcard.h normalises them);
 *  - a content MAC over every field's canonical value and the clear operational fields, used for
 *    idempotent resubmits and verified again when a record is opened, so a clear column altered
 *    in SQL is detected too.
 * Pure: no I/O, no logging; memory comes from the caller's arena (wiped when it is freed). */
#ifndef GW_SEAL_H
#define GW_SEAL_H

#include <stdint.h>

#include "crypto.h"
#include "err.h"
#include "keyring.h"
#include "store.h"
#include "waybill.h"

struct gw_arena;

#define GW_SEAL_DEK_VERSION 1 /* data keys are never re-keyed in place yet */

/* Which part of a record failed to open. */
enum gw_seal_part {
    GW_SEAL_PART_NONE = -1,
    GW_SEAL_PART_DEK = -2,     /* the wrapped data key */
    GW_SEAL_PART_CONTENT = -3, /* content MAC mismatch: a clear column or a field was altered */
    /* 0..GW_COL_COUNT-1: that column's ciphertext */
};

/* Seals w (which passed gw_waybill_validate) as record id. origin_branch and submitted_by are
 * NUL-terminated (the caller resolved origin_branch); now (Unix seconds) gives pickup_day when
 * the waybill has no pickup time. Every pointer in *out points into arena a, origin_branch or
 * submitted_by. Returns 0, GW_ENOMEM, GW_EINVAL (w not valid), GW_EPRECOND (current KEK unusable)
 * or GW_ECRYPTO. */
int gw_seal_waybill(struct gw_crypto *cx, const struct gw_keyring *kr, const struct gw_waybill *w,
                    const uint8_t id[GW_STORE_ID_LEN], const char *origin_branch,
                    const char *submitted_by, int64_t now, struct gw_arena *a,
                    struct gw_sealed_waybill *out) GW_MUST_CHECK;

/* Opens every ciphertext of row into clear[i] (NUL-terminated, in arena a) and checks the
 * content MAC. Returns 0; GW_EDATALOSS with *bad set to the failing part (enum gw_seal_part or a
 * column) when anything fails to authenticate; GW_EPRECOND when the record's KEK version is
 * retired or unknown to this keyring; GW_ENOMEM; GW_ECRYPTO. */
int gw_unseal_waybill(struct gw_crypto *cx, const struct gw_keyring *kr,
                      const struct gw_sealed_waybill *row, struct gw_arena *a,
                      struct gw_str clear[GW_COL_COUNT], int *bad) GW_MUST_CHECK;

/* The blind index of a waybill number as typed (normalised here). Returns 0, GW_EINVAL (not a
 * valid number) or GW_ECRYPTO. */
int gw_seal_waybill_bidx(struct gw_crypto *cx, const struct gw_keyring *kr, const char *s, size_t n,
                         uint8_t out[GW_CRYPTO_BIDX_LEN]) GW_MUST_CHECK;

/* A fresh random record id (a version-4 UUID's 16 bytes), drawn through cx's randomness pool (cx
 * may be NULL). Returns 0 or GW_ECRYPTO. */
int gw_seal_new_id(struct gw_crypto *cx, uint8_t id[GW_STORE_ID_LEN]) GW_MUST_CHECK;

#endif
