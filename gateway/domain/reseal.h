/* reseal.h: a stored waybill record re-sealed under another cipher suite (issue 11, `waygatectl
 * keys migrate-suite`). The record is opened under its own suite (the algorithm byte of its
 * dek_wrapped, seal.h), its clear values are validated again to recover the normalised forms the
 * blind indexes are computed over, and it is sealed anew by seal.c itself (gw_seal_waybill: no
 * second copy of the sealing scheme) under the keyring's current suite (gw_keyring_suite): a
 * fresh data key wrapped under that suite's current KEK, the fields (sealed together, MAC
 * version 3, whatever the stored row's version was), every blind index and content_mac. What
 * does not change is checked: the record id,
 * every clear operational column (origin branch, submitter, destination, weight, service type,
 * security level, pickup day, acceptance time) and dek_version come out equal to the stored
 * ones, and the result is opened again and must give back exactly the same field values, before
 * the caller may write it.
 * Pure: no I/O, no logging; memory from the caller's arena (wiped when it is freed). */
#ifndef GW_RESEAL_H
#define GW_RESEAL_H

#include "crypto.h"
#include "err.h"
#include "keyring.h"
#include "record.h"

struct gw_arena;

/* Why a record could not be re-sealed, beyond enum gw_seal_part (opening it). */
enum gw_reseal_part {
    GW_RESEAL_PART_RULES = -10, /* its opened values no longer pass validation (waybill.h) */
    GW_RESEAL_PART_CLEAR = -11, /* re-sealing would change a clear column or a field value */
};

/* Re-seals the stored row (its pointers stay valid during the call) under gw_keyring_suite(kr)
 * into *out (pointers into arena a, row or the keyring's strings). Returns 0; the errors of
 * gw_unseal_waybill (GW_EDATALOSS, GW_EPRECOND: *bad names the part); GW_EINVAL with *bad =
 * GW_RESEAL_PART_RULES; GW_EINTERNAL with *bad = GW_RESEAL_PART_CLEAR; GW_ENOMEM; GW_ECRYPTO.
 * Re-sealing a record already under that suite works too (a new data key, the same values). */
int gw_reseal_waybill(struct gw_crypto *cx, const struct gw_keyring *kr,
                      const struct gw_sealed_waybill *row, struct gw_arena *a,
                      struct gw_sealed_waybill *out, int *bad) GW_MUST_CHECK;

/* The suite a stored row is sealed under: the algorithm byte of its dek_wrapped. Returns 0 or
 * GW_EDATALOSS (not a sealed value of a known suite). */
int gw_reseal_row_suite(const struct gw_sealed_waybill *row, enum gw_suite *out) GW_MUST_CHECK;

#endif
