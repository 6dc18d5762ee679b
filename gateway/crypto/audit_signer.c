/* audit_signer.c: suite -> signature algorithm and key (audit_signer.h). */
#include "audit_signer.h"

#include <string.h>

#include <openssl/crypto.h>

#include "keyring.h"

enum gw_sign_alg gw_audit_sign_alg(enum gw_suite suite)
{
    return suite == GW_SUITE_SM ? GW_SIGN_SM2 : GW_SIGN_ED25519;
}

/* *out = kr's audit key of suite (seed NULL when it has none). */
static int signer_of(const struct gw_keyring *kr, enum gw_suite suite, struct gw_sign_key *out)
{
    out->alg = gw_audit_sign_alg(suite);
    out->seed = kr ? gw_keyring_audit_seed(kr, suite) : NULL;
    return out->seed ? 0 : GW_EPRECOND;
}

int gw_audit_signer(const struct gw_keyring *kr, struct gw_sign_key *out)
{
    return signer_of(kr, kr ? gw_keyring_suite(kr) : GW_SUITE_AES, out);
}

int gw_audit_signer_other(const struct gw_keyring *kr, struct gw_sign_key *out)
{
    enum gw_suite now = kr ? gw_keyring_suite(kr) : GW_SUITE_AES;
    return signer_of(kr, now == GW_SUITE_SM ? GW_SUITE_AES : GW_SUITE_SM, out);
}

static enum gw_suite suite_of(enum gw_sign_alg alg)
{
    return alg == GW_SIGN_SM2 ? GW_SUITE_SM : GW_SUITE_AES;
}

/* HMAC(the audit key's seed, label) under its suite's MAC. */
static int derive(struct gw_crypto *cx, const struct gw_sign_key *key, const char *label,
                  uint8_t mac_key[GW_CRYPTO_MAC_LEN])
{
    return gw_crypto_hmac(cx, suite_of(key->alg), key->seed, GW_SIGN_SEED_LEN,
                          (const uint8_t *)label, strlen(label), mac_key) == 0
               ? 0
               : GW_ECRYPTO;
}

int gw_audit_mac_key(struct gw_crypto *cx, const struct gw_sign_key *key,
                     uint8_t mac_key[GW_CRYPTO_MAC_LEN])
{
    return derive(cx, key, "waygate-audit-writer-v1", mac_key);
}

int gw_audit_writer_mac(struct gw_crypto *cx, enum gw_sign_alg alg,
                        const uint8_t mac_key[GW_CRYPTO_MAC_LEN], const uint8_t *hash,
                        size_t hashlen, uint8_t out[GW_CRYPTO_MAC_LEN])
{
    return gw_crypto_hmac(cx, suite_of(alg), mac_key, GW_CRYPTO_MAC_LEN, hash, hashlen, out) == 0
               ? 0
               : GW_ECRYPTO;
}

static int keys_add(struct gw_crypto *cx, struct gw_audit_mac_keys *k,
                    const struct gw_sign_key *key, const char *label)
{
    if (k->n >= GW_SUITE_COUNT)
        return GW_EINVAL;
    if (derive(cx, key, label, k->key[k->n]) != 0)
        return GW_ECRYPTO;
    k->alg[k->n++] = key->alg;
    return 0;
}

int gw_audit_mac_keys_add(struct gw_crypto *cx, struct gw_audit_mac_keys *k,
                          const struct gw_sign_key *key)
{
    return keys_add(cx, k, key, "waygate-audit-writer-v1");
}

int gw_audit_spool_keys_add(struct gw_crypto *cx, struct gw_audit_mac_keys *k,
                            const struct gw_sign_key *key)
{
    return keys_add(cx, k, key, "waygate spool v1");
}

bool gw_audit_mac_ok(struct gw_crypto *cx, const struct gw_audit_mac_keys *k, const uint8_t *hash,
                     size_t hashlen, const uint8_t mac[GW_CRYPTO_MAC_LEN])
{
    uint8_t want[GW_CRYPTO_MAC_LEN];
    bool ok = false;

    for (int i = 0; i < k->n; i++)
        if (gw_audit_writer_mac(cx, k->alg[i], k->key[i], hash, hashlen, want) == 0 &&
            CRYPTO_memcmp(want, mac, sizeof want) == 0)
            ok = true; /* every key tried: no early exit */
    return ok;
}
