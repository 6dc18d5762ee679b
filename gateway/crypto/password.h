/* password.h: password hashing for people's accounts (Art. 35): scrypt through OpenSSL's KDF
 * (EVP_KDF "SCRYPT"), a per-account random 16-byte salt, 32-byte output, parameters stored with
 * each hash ("scrypt:N=32768,r=8,p=1") so that a later cost change keeps old hashes verifiable.
 * Thread-safe (no shared state): the gateway runs it on worker threads, off the event loop.
 * Pure: no I/O, no logging. */
#ifndef GW_PASSWORD_H
#define GW_PASSWORD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

#define GW_PW_HASH_LEN 32
#define GW_PW_SALT_LEN 16
#define GW_PW_PARAMS_MAX 48

struct gw_pw_params {
    uint64_t n; /* CPU/memory cost, a power of two >= 1024 */
    uint32_t r; /* block size */
    uint32_t p; /* parallelism */
};

/* The parameters for new hashes with cost n (r 8, p 1). */
struct gw_pw_params gw_pw_params_default(uint64_t n);

/* Parses "scrypt:N=<n>,r=<r>,p=<p>" into *out; GW_EINVAL on anything else or out of range
 * (N a power of two in [1024, 2^20], r in [1, 32], p in [1, 16]). */
int gw_pw_params_parse(const char *s, struct gw_pw_params *out) GW_MUST_CHECK;

/* Writes the text form of pp into out (at least GW_PW_PARAMS_MAX bytes). */
void gw_pw_params_format(const struct gw_pw_params *pp, char out[GW_PW_PARAMS_MAX]);

/* Fills salt with random bytes (RAND_bytes). Returns 0 or GW_ECRYPTO. */
int gw_pw_salt(uint8_t salt[GW_PW_SALT_LEN]) GW_MUST_CHECK;

/* scrypt(pw, salt, pp) into out. Returns 0, GW_EINVAL (bad parameters), GW_ECRYPTO. */
int gw_pw_hash(const char *pw, size_t n, const uint8_t salt[GW_PW_SALT_LEN],
               const struct gw_pw_params *pp, uint8_t out[GW_PW_HASH_LEN]) GW_MUST_CHECK;

/* True when hash(pw, salt, pp) equals want, compared in constant time (CRYPTO_memcmp). False on
 * any error. */
bool gw_pw_verify(const char *pw, size_t n, const uint8_t salt[GW_PW_SALT_LEN],
                  const struct gw_pw_params *pp, const uint8_t want[GW_PW_HASH_LEN]);

#endif
