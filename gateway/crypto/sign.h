/* sign.h: the gateway's signatures, by suite: Ed25519 (RFC 8032, pure) for the aes suite, SM2 with
 * SM3 (GB/T 32918.2) for the sm suite, on OpenSSL 3 EVP. Audit checkpoints and bundle seals are
 * the callers (domain/audit_*.c, store/audit*.c); nothing else signs. Pure: no I/O, no logging.
 *
 * Keys: the private key is the keyring's 32-byte audit key (`audit` / `sm.audit`): an Ed25519
 * seed, or an SM2 scalar d, big-endian, 1 <= d <= n - 2 (else GW_ECRYPTO). Public keys: Ed25519
 * 32 raw bytes; SM2 the uncompressed point 04 | x | y (65 bytes) on the recommended curve of
 * GB/T 32918.5. The length of a public key tells its algorithm (gw_sign_pub_alg).
 * Signatures: Ed25519 64 bytes; SM2 the DER SEQUENCE{r, s} (at most 72 bytes), over
 * e = SM3(Z_A | M) with Z_A computed with the default distinguishing identifier
 * "1234567812345678" (GB/T 32918.2 5.5; GW_SIGN_SM2_ID). SM2 signing is randomised (fresh k from
 * the OpenSSL DRBG), Ed25519 deterministic. Verification refuses non-DER or out-of-range (r, s).
 *
 * The algorithm numbers equal the suite numbers of crypto.h (aes 1 -> Ed25519, sm 2 -> SM2). */
#ifndef GW_SIGN_H
#define GW_SIGN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

#define GW_SIGN_SEED_LEN 32
#define GW_SIGN_ED25519_PUB_LEN 32
#define GW_SIGN_SM2_PUB_LEN 65
#define GW_SIGN_PUB_MAX 65
#define GW_SIGN_ED25519_SIG_LEN 64
#define GW_SIGN_SIG_MAX 72
#define GW_SIGN_SM2_ID "1234567812345678"

enum gw_sign_alg { GW_SIGN_ED25519 = 1, GW_SIGN_SM2 = 2 };

/* A private signing key: the algorithm and the keyring's 32 bytes (borrowed, not copied). */
struct gw_sign_key {
    enum gw_sign_alg alg;
    const uint8_t *seed; /* GW_SIGN_SEED_LEN bytes */
};

/* "ed25519" / "sm2" (NULL for anything else). */
const char *gw_sign_alg_name(enum gw_sign_alg alg);
/* The algorithm named by the n bytes at s ("ed25519", "sm2"); returns 0 or GW_EINVAL. */
int gw_sign_alg_parse(const char *s, size_t n, enum gw_sign_alg *out) GW_MUST_CHECK;
/* The public key length of alg (32, 65), 0 for an unknown one. */
size_t gw_sign_pub_len(enum gw_sign_alg alg);
/* The algorithm of a public key from its length (and, for SM2, its leading 0x04); 0 or GW_EINVAL.
 */
int gw_sign_pub_alg(const uint8_t *pub, size_t len, enum gw_sign_alg *out) GW_MUST_CHECK;
/* Whether pub[0..len) is a public key of its algorithm: 32 bytes (Ed25519), or an uncompressed
 * point 04|x|y on the SM2 curve (docs/audit-bundle-format.md section 1, "key"). */
bool gw_sign_pub_valid(const uint8_t *pub, size_t len);

/* The public key of k into pub (GW_SIGN_PUB_MAX bytes of room), its length in *len.
 * Returns 0, GW_EINVAL (unknown algorithm) or GW_ECRYPTO (e.g. an SM2 scalar out of range). */
int gw_sign_public(const struct gw_sign_key *k, uint8_t pub[GW_SIGN_PUB_MAX],
                   size_t *len) GW_MUST_CHECK;
/* Signs msg[0..len) with k into sig (GW_SIGN_SIG_MAX bytes of room), its length in *siglen.
 * Returns 0, GW_EINVAL or GW_ECRYPTO. */
int gw_sign(const struct gw_sign_key *k, const uint8_t *msg, size_t len,
            uint8_t sig[GW_SIGN_SIG_MAX], size_t *siglen) GW_MUST_CHECK;
/* Verifies sig[0..siglen) over msg by pub[0..publen) (its algorithm from gw_sign_pub_alg).
 * Returns 0 (valid), GW_EDATALOSS (invalid signature, or a malformed key or signature) or
 * GW_ECRYPTO (OpenSSL failed otherwise). */
int gw_sign_verify(const uint8_t *pub, size_t publen, const uint8_t *msg, size_t len,
                   const uint8_t *sig, size_t siglen) GW_MUST_CHECK;

#endif
