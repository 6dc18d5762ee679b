/* view.h: the view modes of a field and the rendering of one field in a mode. Which mode each
 * role gets for each field is the policy's (policy.h, gw_policy_view; docs/policy.md).
 * Pure: no I/O, no logging; the only allocation is the caller's buffer. */
#ifndef GW_VIEW_H
#define GW_VIEW_H

#include <stddef.h>

#include "crypto.h"
#include "err.h"
#include "record.h"

enum gw_view_mode {
    GW_VIEW_OMIT = 0, /* empty string / zero */
    GW_VIEW_CLEAR,    /* the value itself */
    GW_VIEW_MASK,     /* mask.h rendering for the field's kind */
    GW_VIEW_TOKEN,    /* keyed deterministic token (crypto.h), correlates without revealing */
};

/* Bytes that always suffice for rendering an n-byte value in any mode. */
#define GW_VIEW_BOUND(n) ((n) + 16 + GW_CRYPTO_TOKEN_LEN + 1)

/* Renders value (n bytes, the field's clear text) in mode into out (outsz bytes,
 * NUL-terminated) and *outlen (may be NULL). Masking by kind: names keep the surname, phones
 * the first digit and last four, ID numbers the first and last character, address details and
 * every other field become "****" (an empty value stays empty). Tokens are computed with cx and
 * the token key of suite over the field name (the gateway's configured suite: switching suites
 * changes every token). Returns 0, GW_ETOOBIG, GW_EINVAL or GW_ECRYPTO. */
int gw_view_render(struct gw_crypto *cx, enum gw_suite suite,
                   const uint8_t token_key[GW_CRYPTO_KEY_LEN], enum gw_col col,
                   enum gw_view_mode mode, const char *value, size_t n, char *out, size_t outsz,
                   size_t *outlen) GW_MUST_CHECK;

#endif
