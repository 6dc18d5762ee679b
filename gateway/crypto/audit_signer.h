/* audit_signer.h: the keyring's audit signing key for the suite new records use
 * (gw_keyring_suite): aes -> Ed25519 with `audit`, sm -> SM2 with `sm.audit` (issue 11). The one
 * place that maps a suite to its signature algorithm, so the daemon's chain, waygatectl's chain
 * and both exporters sign alike. */
#ifndef GW_AUDIT_SIGNER_H
#define GW_AUDIT_SIGNER_H

#include <stdbool.h>

#include "crypto.h"
#include "err.h"
#include "sign.h"

struct gw_keyring;

/* The signature algorithm of a suite: aes -> Ed25519, sm -> SM2. */
enum gw_sign_alg gw_audit_sign_alg(enum gw_suite suite);

/* *out = the audit key of kr's current suite (out->seed points into kr, which must outlive it).
 * Returns 0, or GW_EPRECOND when the keyring has no audit key for that suite. */
int gw_audit_signer(const struct gw_keyring *kr, struct gw_sign_key *out) GW_MUST_CHECK;

/* *out = the keyring's audit key of the suite other than its current one (a suite migration
 * keeps both), for recognising what the other key wrote. Returns 0, or GW_EPRECOND (out->seed
 * NULL) when there is none. */
int gw_audit_signer_other(const struct gw_keyring *kr, struct gw_sign_key *out) GW_MUST_CHECK;

/* Writer MACs (sql/028_audit_writer_mac.sql): the gateway stores HMAC(k, hash) beside each audit
 * record's hash, k = HMAC(the audit key's seed, "waygate-audit-writer-v1"), HMAC-SHA256 for an
 * Ed25519 key (aes), HMAC-SM3 for an SM2 key (sm); a head carrying one under a key of its keyring
 * is the gateway's own. *mac_key = k. Returns 0 or GW_ECRYPTO. */
int gw_audit_mac_key(struct gw_crypto *cx, const struct gw_sign_key *key,
                     uint8_t mac_key[GW_CRYPTO_MAC_LEN]) GW_MUST_CHECK;
/* *out = HMAC(mac_key, hash) under alg's suite. Returns 0 or GW_ECRYPTO. */
int gw_audit_writer_mac(struct gw_crypto *cx, enum gw_sign_alg alg,
                        const uint8_t mac_key[GW_CRYPTO_MAC_LEN], const uint8_t *hash,
                        size_t hashlen, uint8_t out[GW_CRYPTO_MAC_LEN]) GW_MUST_CHECK;

/* The writer-MAC keys a stored MAC is checked against: one per audit key of a keyring (the
 * gateway's own first, which it writes with; the other suite's during a suite migration).
 * Wipe with OPENSSL_cleanse when done. */
struct gw_audit_mac_keys {
    int n;
    enum gw_sign_alg alg[GW_SUITE_COUNT];
    uint8_t key[GW_SUITE_COUNT][GW_CRYPTO_MAC_LEN];
};

/* Adds the writer-MAC key of key to k. Returns 0, GW_ECRYPTO, or GW_EINVAL when k is full. */
int gw_audit_mac_keys_add(struct gw_crypto *cx, struct gw_audit_mac_keys *k,
                          const struct gw_sign_key *key) GW_MUST_CHECK;

/* The keys of the audit spool (store/audit_spool.h), derived as the writer-MAC keys are but under
 * the label "waygate spool v1": k = HMAC(the audit key's seed, "waygate spool v1"), HMAC-SHA256
 * (aes) or HMAC-SM3 (sm). A spool is MAC'd with gw_audit_writer_mac under the first key added
 * and checked with gw_audit_mac_ok against each. Returns 0, GW_ECRYPTO or GW_EINVAL (k full). */
int gw_audit_spool_keys_add(struct gw_crypto *cx, struct gw_audit_mac_keys *k,
                            const struct gw_sign_key *key) GW_MUST_CHECK;

/* True when mac is HMAC(one of k's keys, hash); every key is tried, each compared in constant
 * time. */
bool gw_audit_mac_ok(struct gw_crypto *cx, const struct gw_audit_mac_keys *k, const uint8_t *hash,
                     size_t hashlen, const uint8_t mac[GW_CRYPTO_MAC_LEN]);

#endif
