/* crypto_sm.h: internal to the crypto layer (crypto.c is its one caller): the sm suite's sealing
 * construction, SM4-CTR + HMAC-SM3 encrypt-then-MAC, on OpenSSL 3 EVP. The format and the
 * construction are specified in crypto.h; this header only splits the code out of crypto.c.
 * Not thread-safe (one per struct gw_crypto); caches the last two keys (a KEK and a data key) with
 * the contexts keyed with the k_enc and k_mac derived from each, and wipes them on
 * gw_sm_forget/gw_sm_free. */
#ifndef GW_CRYPTO_SM_H
#define GW_CRYPTO_SM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "crypto.h"

/* Constant-time equality of two GW_CRYPTO_KEY_LEN-byte keys in 8-byte words, no early exit (for
 * both suites' key caches: CRYPTO_memcmp goes byte by byte and showed in profiles, since every
 * field's seal compares its key with the cached ones). */
static inline bool gw_crypto_key_eq(const uint8_t *a, const uint8_t *b)
{
    uint64_t d = 0, x, y;

    for (size_t i = 0; i < GW_CRYPTO_KEY_LEN; i += 8) {
        memcpy(&x, a + i, 8);
        memcpy(&y, b + i, 8);
        d |= x ^ y;
    }
    return d == 0;
}

struct gw_sm;

/* Fetches SM4-CTR and HMAC (digest SM3); NULL when the library lacks them or on no memory. */
struct gw_sm *gw_sm_new(void);
/* Wipes cached keys and frees; NULL-safe. */
void gw_sm_free(struct gw_sm *sm);
/* Wipes the cached keys and key schedules without freeing; NULL-safe. */
void gw_sm_forget(struct gw_sm *sm);

/* Seals pt (ptlen <= GW_CRYPTO_MAX_PT) under key (k_enc and k_mac derived from it): head is the
 * value's first GW_CRYPTO_HDR_LEN + GW_CRYPTO_NONCE_LEN bytes (ver | alg | nonce), already written;
 * ct receives ptlen bytes and tag GW_CRYPTO_TAG_LEN bytes. Returns 0, GW_ETOOBIG or GW_ECRYPTO (ct
 * wiped). */
int gw_sm_seal(struct gw_sm *sm, const uint8_t key[GW_CRYPTO_KEY_LEN], const uint8_t *head,
               const uint8_t *aad, size_t aadlen, const uint8_t *pt, size_t ptlen, uint8_t *ct,
               uint8_t tag[GW_CRYPTO_TAG_LEN]) GW_MUST_CHECK;

/* Checks tag over head | aadlen | aad | ct, then (only if it verifies) decrypts ct into pt.
 * Returns 0, GW_EDATALOSS (the tag does not verify; pt wiped) or GW_ECRYPTO (pt wiped). */
int gw_sm_open(struct gw_sm *sm, const uint8_t key[GW_CRYPTO_KEY_LEN], const uint8_t *head,
               const uint8_t *aad, size_t aadlen, const uint8_t *ct, size_t ctlen,
               const uint8_t tag[GW_CRYPTO_TAG_LEN], uint8_t *pt) GW_MUST_CHECK;

#endif
