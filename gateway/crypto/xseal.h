/* xseal.h: sealing a stream to a recipient's X25519 public key (bulk exports, Art. 37): an
 * ephemeral X25519 key agreement, HKDF-SHA256, then AES-256-GCM over chunks. Only the holder of
 * the recipient's private key can read the output; a cut, reordered or truncated stream fails
 * to open. The format (docs/bulk-export-format.md):
 *
 *   header (GW_XSEAL_HEADER_LEN bytes):
 *     magic "WGXSEAL1" (8) | export id (16) | ephemeral public key (32) | salt (16)
 *   key, nonce base = HKDF-SHA256(ikm = X25519(eph, recipient), salt,
 *                                 info = "waygate export v1" | eph public | recipient public),
 *                     44 bytes: 32 key, 12 nonce base
 *   chunks, i = 0, 1, ...: length of the plaintext (4, big-endian, <= GW_XSEAL_CHUNK_MAX) |
 *     ciphertext | GCM tag (16), nonce = nonce base XOR i (as 12 bytes big-endian),
 *     AAD = header | i (8, big-endian) | final (1: 0x01 on the last chunk, else 0x00)
 *   The last chunk is marked final (it may be empty); nothing follows it.
 *
 * Uses OpenSSL EVP only; not thread-safe per struct gw_xseal. */
#ifndef GW_XSEAL_H
#define GW_XSEAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

#define GW_XSEAL_MAGIC "WGXSEAL1"
#define GW_XSEAL_ID_LEN 16
#define GW_XSEAL_PUB_LEN 32
#define GW_XSEAL_SALT_LEN 16
#define GW_XSEAL_HEADER_LEN (8 + GW_XSEAL_ID_LEN + GW_XSEAL_PUB_LEN + GW_XSEAL_SALT_LEN)
#define GW_XSEAL_CHUNK_MAX 65536
#define GW_XSEAL_OVERHEAD (4 + 16) /* per chunk: length and tag */

struct gw_xseal;

/* Starts a sealed stream to recipient (raw X25519 public key) for export id; writes the header
 * into header. Returns 0 and *out, GW_EINVAL (the key is not a usable X25519 public key: e.g. a
 * low-order point whose shared secret is zero), GW_ENOMEM or GW_ECRYPTO. */
int gw_xseal_new(const uint8_t recipient[GW_XSEAL_PUB_LEN], const uint8_t id[GW_XSEAL_ID_LEN],
                 uint8_t header[GW_XSEAL_HEADER_LEN], struct gw_xseal **out) GW_MUST_CHECK;

/* Seals one chunk (len <= GW_XSEAL_CHUNK_MAX) into out (len + GW_XSEAL_OVERHEAD bytes).
 * final marks the last chunk; after it the stream refuses more. Returns 0, GW_EINVAL or
 * GW_ECRYPTO. */
int gw_xseal_chunk(struct gw_xseal *x, const uint8_t *pt, size_t len, bool final,
                   uint8_t *out) GW_MUST_CHECK;

/* Wipes the keys and frees. NULL-safe. */
void gw_xseal_free(struct gw_xseal *x);

/* The reader's side (tests, tools): opens a whole sealed buffer with the recipient's raw private
 * key into *pt (gw_malloc'd, *ptlen bytes; the caller frees). The export id is copied to id.
 * Returns 0, GW_EDATALOSS (not sealed to this key, altered, cut or truncated), GW_EINVAL,
 * GW_ENOMEM or GW_ECRYPTO. */
int gw_xseal_open(const uint8_t priv[GW_XSEAL_PUB_LEN], const uint8_t *in, size_t inlen,
                  uint8_t id[GW_XSEAL_ID_LEN], uint8_t **pt, size_t *ptlen) GW_MUST_CHECK;

#endif
