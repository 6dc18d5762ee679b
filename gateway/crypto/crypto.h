/* crypto.h: the gateway's cryptographic primitives on OpenSSL 3 EVP: field sealing, data-key
 * wrapping, blind indexes, tokens and content MACs, each under one of two suites. Pure: no I/O,
 * no logging.
 *
 * Suites (enum gw_suite; the value is the algorithm byte of every sealed value):
 *   aes (1): AES-256-GCM sealing; HMAC-SHA256 keyed hashes.
 *   sm  (2): SM4-CTR + HMAC-SM3 encrypt-then-MAC sealing (GB/T 32907, GB/T 32905); HMAC-SM3
 *            keyed hashes (same output lengths and encodings as aes).
 * Every keyed function takes the suite right after cx; opening refuses (GW_EDATALOSS) a value
 * whose algorithm byte is not the suite asked for, so a value never opens under the other suite.
 *
 * Sealed value format (fields and wrapped data keys alike):
 *
 *   offset  size  content
 *   0       1     format version            GW_CRYPTO_FMT_V1 (1)
 *   1       1     algorithm id = the suite  GW_CRYPTO_ALG_AES256GCM (1) or
 *                                           GW_CRYPTO_ALG_SM4CTR_HMACSM3 (2)
 *   2       12    nonce                     fresh from the OpenSSL DRBG for every seal
 *   14      n     ciphertext                same length as the plaintext
 *   14+n    16    tag
 *
 * aes: the GCM AAD is the two header bytes followed by the caller's AAD, so the version and
 * algorithm bytes are authenticated too.
 * sm: both subkeys are derived from the whole 32-byte key:
 *   k_enc = HMAC-SM3(key, "waygate-sm-enc-v1")[0..16)   (SM4 is a 128-bit cipher)
 *   k_mac = HMAC-SM3(key, "waygate-sm-mac-v1")           (all 32 bytes)
 * ct = SM4-CTR(k_enc, IV = nonce | 00 00 00 00); the plaintext cap (2^20 blocks) keeps the
 * 32-bit counter from carrying into the nonce. tag = the first 16 bytes of
 * HMAC-SM3(k_mac, ver | alg | nonce | aadlen (8 bytes BE) | aad | ct). Opening checks the tag
 * (CRYPTO_memcmp) before decrypting anything.
 * What the tag does not authenticate: no byte of the value or the AAD is left out; k_enc is not
 * a MAC input, but k_enc and k_mac derive from the same whole key, so a key wrong in any bit
 * (also one right in its first or last 16 bytes) changes k_mac and is refused like any wrong
 * key (test_tamper_table). The derivation is cached for the last two keys (a record's data key
 * and the KEK that wraps it: one derivation per record).
 * Opening refuses (GW_EDATALOSS) any value that is truncated, names an unknown version, an
 * algorithm other than the suite asked for, or fails to authenticate; it never returns partial
 * plaintext.
 *
 * AAD encodings (gw_crypto_aad_field, gw_crypto_aad_dek): a purpose label, then each component as
 * a 4-byte big-endian length followed by its bytes (integers as 4-byte big-endian values, also
 * length-prefixed), so no two distinct tuples encode to the same bytes:
 *   field AAD:  "waygate-field-v1" | table | column | record id (16) | dek_version
 *   DEK AAD:    "waygate-dek-v1"   | table | record id (16) | kek_version
 * A field's AAD carries the version of the record's DATA key (dek_version), not the KEK version:
 * `keys rewrap` re-wraps data keys under a new KEK without touching field ciphertexts, so the
 * field AAD must not depend on the KEK. The wrapped data key's AAD carries the KEK version.
 *
 * HMAC below is HMAC-SHA256 under aes and HMAC-SM3 under sm (both 32 bytes).
 * Blind index: HMAC(index key, label | 0x00 | normalised value), first 16 bytes; labels
 * are "waybill_no", "phone", "id_number". Normalising is the caller's job (validation module).
 * Token: "tok_" + base32 (RFC 4648 alphabet, lower case, no padding) of the first 12 bytes of
 * HMAC(token key, field name | 0x00 | value). Deterministic; a different key from the index.
 * Content MAC: HMAC(content key, encoding below), 32 bytes:
 *   "waygate-content-v1" | count (4 BE) | per item: name length (4 BE) | name |
 *   present (1 byte: 0 absent, 1 present) | [value length (8 BE) | value]
 * Item order is part of the encoding: callers pass items in a fixed order (enum gw_col).
 *
 * Randomness: nonces, record ids and request ids (public) and data keys (private) come from the
 * OpenSSL DRBGs (RAND_bytes, RAND_priv_bytes), drawn in bulk into a per-context pool held in a
 * MADV_WIPEONFORK page (a forked child starts with an empty pool), because one RAND_bytes call
 * costs more than sealing a field.
 *
 * Threading: a struct gw_crypto is not thread-safe; use one per thread. It caches the last key
 * used per operation and suite (cipher key schedules, HMAC states) so sealing many fields under one
 * data key re-initialises only the nonce; gw_crypto_forget wipes these caches, gw_crypto_free wipes
 * all. */
#ifndef GW_CRYPTO_H
#define GW_CRYPTO_H

#include <stddef.h>
#include <stdint.h>

#include "alloc.h"
#include "err.h"

#define GW_CRYPTO_FMT_V1 1
#define GW_CRYPTO_ALG_AES256GCM 1
#define GW_CRYPTO_ALG_SM4CTR_HMACSM3 2

/* The suite; its value is the algorithm byte (offset 1) of every sealed value under it. */
enum gw_suite {
    GW_SUITE_AES = GW_CRYPTO_ALG_AES256GCM,
    GW_SUITE_SM = GW_CRYPTO_ALG_SM4CTR_HMACSM3
};
#define GW_SUITE_COUNT 2
#define GW_CRYPTO_SM4_KEY_LEN 16    /* k_enc: SM4 is a 128-bit cipher */
#define GW_CRYPTO_SM_MAC_KEY_LEN 32 /* k_mac: a whole HMAC-SM3 output */
#define GW_CRYPTO_SM4_BLOCK 16

#define GW_CRYPTO_KEY_LEN 32
#define GW_CRYPTO_NONCE_LEN 12
#define GW_CRYPTO_TAG_LEN 16
#define GW_CRYPTO_HDR_LEN 2
#define GW_CRYPTO_OVERHEAD (GW_CRYPTO_HDR_LEN + GW_CRYPTO_NONCE_LEN + GW_CRYPTO_TAG_LEN) /* 30 */
#define GW_CRYPTO_SEALED_LEN(ptlen) ((size_t)(ptlen) + GW_CRYPTO_OVERHEAD)
#define GW_CRYPTO_MAX_PT (16u * 1024 * 1024) /* larger plaintexts -> GW_ETOOBIG */

#define GW_CRYPTO_RECORD_ID_LEN 16
#define GW_CRYPTO_DEK_LEN 32
#define GW_CRYPTO_WRAPPED_DEK_LEN GW_CRYPTO_SEALED_LEN(GW_CRYPTO_DEK_LEN) /* 62 */
#define GW_CRYPTO_BIDX_LEN 16
#define GW_CRYPTO_MAC_LEN 32
#define GW_CRYPTO_TOKEN_LEN 24 /* "tok_" + 20 base32 characters, without the NUL */

#define GW_CRYPTO_AAD_MAX 256
#define GW_CRYPTO_NAME_MAX 96 /* longest table or column name in an AAD */

struct gw_crypto;

/* "aes" or "sm"; "?" for a value that is not a suite. */
const char *gw_suite_name(enum gw_suite suite);
/* Parses "aes" or "sm" into *out. Returns 0 or GW_EINVAL (out untouched). */
int gw_suite_parse(const char *s, enum gw_suite *out) GW_MUST_CHECK;
/* Whether v is one of the suites (a value read from outside, e.g. a byte). */
int gw_suite_valid(int v);
/* The suite of a sealed value (its algorithm byte), without authenticating it. Returns 0, or
 * GW_EDATALOSS when in is too short for a sealed value or names an unknown version or algorithm. */
int gw_crypto_sealed_suite(const uint8_t *in, size_t inlen, enum gw_suite *out) GW_MUST_CHECK;

/* Fetches the algorithms of both suites (AES-256-GCM, SM4-CTR, HMAC-SHA256, HMAC-SM3) once and
 * allocates reusable contexts; NULL on failure. */
struct gw_crypto *gw_crypto_new(void);
/* Wipes cached keys and frees; NULL-safe. */
void gw_crypto_free(struct gw_crypto *cx);
/* Wipes the cached keys (and key schedules) without freeing; e.g. after finishing one record. */
void gw_crypto_forget(struct gw_crypto *cx);

/* ---- AAD ---- */

struct gw_crypto_aad {
    uint8_t b[GW_CRYPTO_AAD_MAX];
    size_t n;
};

/* Builds the AAD of one field ciphertext. table and column are non-empty NUL-terminated strings
 * of at most GW_CRYPTO_NAME_MAX bytes. Returns 0 or GW_EINVAL. */
int gw_crypto_aad_field(struct gw_crypto_aad *a, const char *table, const char *column,
                        const uint8_t record_id[GW_CRYPTO_RECORD_ID_LEN],
                        uint32_t dek_version) GW_MUST_CHECK;
/* The same with the names' lengths given (each must be strlen of its name). */
int gw_crypto_aad_field_n(struct gw_crypto_aad *a, const char *table, size_t table_len,
                          const char *column, size_t column_len,
                          const uint8_t record_id[GW_CRYPTO_RECORD_ID_LEN],
                          uint32_t dek_version) GW_MUST_CHECK;
/* The field AAD of column (column_len = its strlen) for the same table, record id and data key
 * version as b, a field AAD built for a column of length b_column_len: the bytes
 * gw_crypto_aad_field_n gives, without encoding the rest again (a record's fields in turn).
 * Returns 0 or GW_EINVAL. */
int gw_crypto_aad_field_other(const struct gw_crypto_aad *b, size_t b_column_len,
                              struct gw_crypto_aad *a, const char *column,
                              size_t column_len) GW_MUST_CHECK;

/* Builds the AAD of a wrapped data key. Returns 0 or GW_EINVAL. */
int gw_crypto_aad_dek(struct gw_crypto_aad *a, const char *table,
                      const uint8_t record_id[GW_CRYPTO_RECORD_ID_LEN],
                      uint32_t kek_version) GW_MUST_CHECK;

/* ---- sealing (format above) ---- */

/* Seals pt under key with a fresh random nonce into out (capacity outcap, which must be at least
 * GW_CRYPTO_SEALED_LEN(ptlen)); *outlen receives that length. pt may be NULL when ptlen is 0.
 * Returns 0, GW_EINVAL (outcap too small, or suite not a suite), GW_ETOOBIG (ptlen >
 * GW_CRYPTO_MAX_PT) or GW_ECRYPTO. */
int gw_crypto_seal_into(struct gw_crypto *cx, enum gw_suite suite,
                        const uint8_t key[GW_CRYPTO_KEY_LEN], const uint8_t *aad, size_t aadlen,
                        const uint8_t *pt, size_t ptlen, uint8_t *out, size_t outcap,
                        size_t *outlen) GW_MUST_CHECK;

/* As gw_crypto_seal_into, into out->p allocated with gw_malloc (the caller frees it with
 * gw_free). On failure out is {NULL, 0}. Additionally GW_ENOMEM. */
int gw_crypto_seal(struct gw_crypto *cx, enum gw_suite suite, const uint8_t key[GW_CRYPTO_KEY_LEN],
                   const uint8_t *aad, size_t aadlen, const uint8_t *pt, size_t ptlen,
                   struct gw_bytes *out) GW_MUST_CHECK;

/* Opens a sealed value into buf (capacity cap >= inlen - GW_CRYPTO_OVERHEAD); *outlen receives
 * the plaintext length. Returns 0; GW_EDATALOSS if the value is truncated, has an unknown format
 * version, an algorithm byte other than suite, or fails to authenticate (buf is wiped); GW_EINVAL
 * if cap is too small or suite is not a suite; GW_ECRYPTO on a library failure. */
int gw_crypto_open_into(struct gw_crypto *cx, enum gw_suite suite,
                        const uint8_t key[GW_CRYPTO_KEY_LEN], const uint8_t *aad, size_t aadlen,
                        const uint8_t *in, size_t inlen, uint8_t *buf, size_t cap,
                        size_t *outlen) GW_MUST_CHECK;

/* As gw_crypto_open_into, into out->p allocated with gw_malloc (at least one byte, and
 * NUL-terminated one past out->n for convenience); the caller frees it with
 * gw_free_wipe(out->p, out->n). On failure out is {NULL, 0}. Additionally GW_ENOMEM. */
int gw_crypto_open(struct gw_crypto *cx, enum gw_suite suite, const uint8_t key[GW_CRYPTO_KEY_LEN],
                   const uint8_t *aad, size_t aadlen, const uint8_t *in, size_t inlen,
                   struct gw_bytes *out) GW_MUST_CHECK;

/* Low level, for known-answer tests only: AES-256-GCM with an explicit nonce and exactly the
 * given AAD (no format header). ct receives ptlen bytes, tag 16 bytes. Never use a nonce twice
 * under one key; production code calls gw_crypto_seal*. Returns 0, GW_ETOOBIG or GW_ECRYPTO. */
int gw_crypto_gcm_seal_raw(struct gw_crypto *cx, const uint8_t key[GW_CRYPTO_KEY_LEN],
                           const uint8_t nonce[GW_CRYPTO_NONCE_LEN], const uint8_t *aad,
                           size_t aadlen, const uint8_t *pt, size_t ptlen, uint8_t *ct,
                           uint8_t tag[GW_CRYPTO_TAG_LEN]) GW_MUST_CHECK;
/* Inverse of the above; GW_EDATALOSS (pt wiped) if the tag does not verify. */
int gw_crypto_gcm_open_raw(struct gw_crypto *cx, const uint8_t key[GW_CRYPTO_KEY_LEN],
                           const uint8_t nonce[GW_CRYPTO_NONCE_LEN], const uint8_t *aad,
                           size_t aadlen, const uint8_t *ct, size_t ctlen,
                           const uint8_t tag[GW_CRYPTO_TAG_LEN], uint8_t *pt) GW_MUST_CHECK;

/* Low level, for known-answer tests only (GB/T 32907 Appendix A): encrypts one 16-byte block
 * with SM4 (ECB, no padding). Returns 0 or GW_ECRYPTO. */
int gw_crypto_sm4_block_raw(const uint8_t key[GW_CRYPTO_SM4_KEY_LEN],
                            const uint8_t in[GW_CRYPTO_SM4_BLOCK],
                            uint8_t out[GW_CRYPTO_SM4_BLOCK]) GW_MUST_CHECK;

/* ---- randomness ---- */

/* Fills out with n bytes of public randomness (record ids, request ids) from the OpenSSL public
 * DRBG, drawn through cx's pool (the one nonces come from; no byte is handed out twice); cx may
 * be NULL to draw directly. Returns 0, GW_EINVAL (out NULL with n > 0), GW_ETOOBIG (n > INT_MAX)
 * or GW_ECRYPTO. */
int gw_crypto_random(struct gw_crypto *cx, uint8_t *out, size_t n) GW_MUST_CHECK;

/* ---- data keys ---- */

/* Fills dek with 32 fresh bytes from the OpenSSL private DRBG (drawn through cx's pool; cx may
 * be NULL to draw directly). Returns 0 or GW_ECRYPTO. */
int gw_crypto_dek_new(struct gw_crypto *cx, uint8_t dek[GW_CRYPTO_DEK_LEN]) GW_MUST_CHECK;

/* Wraps dek under kek (the KEK of version kek_version) with the DEK AAD of (table, record_id,
 * kek_version) into out (GW_CRYPTO_WRAPPED_DEK_LEN bytes). Returns 0, GW_EINVAL or GW_ECRYPTO.
 * Normally reached through gw_keyring_wrap, which holds the KEKs. */
int gw_crypto_dek_wrap(struct gw_crypto *cx, enum gw_suite suite,
                       const uint8_t kek[GW_CRYPTO_KEY_LEN], uint32_t kek_version,
                       const char *table, const uint8_t record_id[GW_CRYPTO_RECORD_ID_LEN],
                       const uint8_t dek[GW_CRYPTO_DEK_LEN],
                       uint8_t out[GW_CRYPTO_WRAPPED_DEK_LEN]) GW_MUST_CHECK;

/* Unwraps; GW_EDATALOSS (dek wiped) if in is not a wrapped key of exactly this table, record and
 * KEK version under kek. Returns 0, GW_EDATALOSS, GW_EINVAL or GW_ECRYPTO. */
int gw_crypto_dek_unwrap(struct gw_crypto *cx, enum gw_suite suite,
                         const uint8_t kek[GW_CRYPTO_KEY_LEN], uint32_t kek_version,
                         const char *table, const uint8_t record_id[GW_CRYPTO_RECORD_ID_LEN],
                         const uint8_t *in, size_t inlen,
                         uint8_t dek[GW_CRYPTO_DEK_LEN]) GW_MUST_CHECK;

/* ---- keyed hashes ---- */

/* HMAC-SHA256 (aes) or HMAC-SM3 (sm) with an arbitrary key length (known-answer tests; building
 * block of the rest). Returns 0, GW_EINVAL (unknown suite) or GW_ECRYPTO. */
int gw_crypto_hmac(struct gw_crypto *cx, enum gw_suite suite, const uint8_t *key, size_t keylen,
                   const uint8_t *data, size_t datalen,
                   uint8_t out[GW_CRYPTO_MAC_LEN]) GW_MUST_CHECK;

enum gw_bidx {
    GW_BIDX_WAYBILL_NO = 0, /* label "waybill_no" */
    GW_BIDX_PHONE,          /* label "phone" */
    GW_BIDX_ID_NUMBER,      /* label "id_number" */
    GW_BIDX_COUNT
};

/* The blind index of a normalised value for a purpose, under the index key.
 * Returns 0, GW_EINVAL (unknown purpose) or GW_ECRYPTO. */
int gw_crypto_blind_index(struct gw_crypto *cx, enum gw_suite suite,
                          const uint8_t key[GW_CRYPTO_KEY_LEN], enum gw_bidx purpose,
                          const uint8_t *value, size_t len,
                          uint8_t out[GW_CRYPTO_BIDX_LEN]) GW_MUST_CHECK;

/* The token of value for field (a non-empty NUL-terminated name without NUL bytes, e.g.
 * "sender.phone"; pass a shared name such as "phone" to let tokens correlate across fields),
 * under the token key. out receives GW_CRYPTO_TOKEN_LEN characters and a NUL.
 * Returns 0, GW_EINVAL or GW_ECRYPTO. */
int gw_crypto_token(struct gw_crypto *cx, enum gw_suite suite, const uint8_t key[GW_CRYPTO_KEY_LEN],
                    const char *field, const uint8_t *value, size_t len,
                    char out[GW_CRYPTO_TOKEN_LEN + 1]) GW_MUST_CHECK;

/* One item of a content MAC: name is a NUL-terminated field name; p == NULL means the field is
 * absent (distinct from present and empty: p != NULL, n == 0). name_len is strlen(name) when the
 * caller knows it (a table's or a literal's length), or 0: then it is measured. */
struct gw_crypto_item {
    const char *name;
    const uint8_t *p;
    size_t n;
    size_t name_len;
};

/* The content MAC of items[0..count) (encoding above) under the content key.
 * Returns 0, GW_EINVAL or GW_ECRYPTO. */
int gw_crypto_content_mac(struct gw_crypto *cx, enum gw_suite suite,
                          const uint8_t key[GW_CRYPTO_KEY_LEN], const struct gw_crypto_item *items,
                          size_t count, uint8_t out[GW_CRYPTO_MAC_LEN]) GW_MUST_CHECK;

/* Items encoded as a content MAC encodes them (each item's bytes, without the label and the
 * count) into out (cap bytes; *len their length): a run of items two MACs share, encoded once
 * (sealing: the fields, in the content MAC and in the record MAC). Returns 0, or GW_EINVAL (an
 * item invalid, or cap too small: out then holds part of the items, to be wiped). */
int gw_crypto_items_encode(const struct gw_crypto_item *items, size_t count, uint8_t *out,
                           size_t cap, size_t *len) GW_MUST_CHECK;

/* The content MAC of head[0..nhead), then the nenc items encoded in enc[0..enclen) by
 * gw_crypto_items_encode, then tail[0..ntail): the MAC gw_crypto_content_mac gives for the
 * same items in that order. Returns 0, GW_EINVAL or GW_ECRYPTO. */
int gw_crypto_content_mac_enc(struct gw_crypto *cx, enum gw_suite suite,
                              const uint8_t key[GW_CRYPTO_KEY_LEN],
                              const struct gw_crypto_item *head, size_t nhead, const uint8_t *enc,
                              size_t enclen, size_t nenc, const struct gw_crypto_item *tail,
                              size_t ntail, uint8_t out[GW_CRYPTO_MAC_LEN]) GW_MUST_CHECK;

#endif
