/* crypto_sm.c: the sm suite's sealing (SM4-CTR + HMAC-SM3, encrypt-then-MAC; crypto.h) and the
 * SM4 block function of the known-answer tests, on OpenSSL 3 EVP (no hand-written primitive).
 * Both subkeys are derived from the whole 32-byte key (HMAC-SM3 with a label each), so the tag
 * depends on every key bit; the derivation is cached for the last key (a record's fields share
 * one data key) and the cached key is compared in constant time.
 * Invariants: open computes and compares (CRYPTO_memcmp) the tag before decrypting a byte; every
 * key copy this file owns (data key, k_enc, k_mac) is wiped with OPENSSL_cleanse; a failed seal
 * or open wipes its output. */
#include "crypto_sm.h"

#include <stdbool.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include "alloc.h"

#define HEAD_LEN (GW_CRYPTO_HDR_LEN + GW_CRYPTO_NONCE_LEN) /* ver | alg | nonce */
#define KENC_LEN GW_CRYPTO_SM4_KEY_LEN                     /* k_enc: 16 bytes (SM4) */
#define KMAC_LEN GW_CRYPTO_SM_MAC_KEY_LEN                  /* k_mac: 32 bytes */

/* Derivation labels (crypto.h): k_enc = HMAC-SM3(key, ENC)[0..16), k_mac = HMAC-SM3(key, MAC). */
static const char label_enc[] = "waygate-sm-enc-v1";
static const char label_mac[] = "waygate-sm-mac-v1";

struct gw_sm {
    EVP_CIPHER *ctr;
    EVP_MAC *hmac;
    EVP_CIPHER_CTX *c; /* SM4-CTR keyed with k_enc: encrypting and decrypting are the same XOR */
    EVP_MAC_CTX *mac;  /* HMAC-SM3 keyed with k_mac */
    EVP_MAC_CTX *kdf;  /* HMAC-SM3 keyed with the data key: derives k_enc and k_mac */
    bool keyed;        /* c and mac hold the subkeys derived from key */
    uint8_t key[GW_CRYPTO_KEY_LEN]; /* the data key they derive from (compared, never used) */
    uint8_t k_enc[KENC_LEN];        /* the derived subkeys (wiped by forget/free) */
    uint8_t k_mac[KMAC_LEN];
};

/* Constant time over the whole key: no early exit on the first differing byte. */
static bool key_eq(const uint8_t *a, const uint8_t *b)
{
    return CRYPTO_memcmp(a, b, GW_CRYPTO_KEY_LEN) == 0;
}

static void unkey(struct gw_sm *sm)
{
    sm->keyed = false;
    OPENSSL_cleanse(sm->key, sizeof sm->key);
    OPENSSL_cleanse(sm->k_enc, sizeof sm->k_enc);
    OPENSSL_cleanse(sm->k_mac, sizeof sm->k_mac);
}

static void drop(struct gw_sm *sm)
{
    EVP_CIPHER_CTX_free(sm->c);
    EVP_MAC_CTX_free(sm->mac);
    EVP_MAC_CTX_free(sm->kdf);
    sm->c = NULL;
    sm->mac = NULL;
    sm->kdf = NULL;
    unkey(sm);
}

static EVP_MAC_CTX *hmac_sm3_ctx(EVP_MAC *hmac)
{
    OSSL_PARAM p[2];
    p[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SM3", 0);
    p[1] = OSSL_PARAM_construct_end();
    EVP_MAC_CTX *m = EVP_MAC_CTX_new(hmac);
    if (m && EVP_MAC_CTX_set_params(m, p) != 1) {
        EVP_MAC_CTX_free(m);
        m = NULL;
    }
    return m;
}

static int ensure(struct gw_sm *sm)
{
    if (!sm->c) {
        sm->c = EVP_CIPHER_CTX_new();
        if (!sm->c || EVP_EncryptInit_ex2(sm->c, sm->ctr, NULL, NULL, NULL) != 1)
            goto fail;
        unkey(sm);
    }
    if (!sm->mac) {
        sm->mac = hmac_sm3_ctx(sm->hmac);
        if (!sm->mac)
            goto fail;
        unkey(sm);
    }
    if (!sm->kdf) {
        sm->kdf = hmac_sm3_ctx(sm->hmac);
        if (!sm->kdf)
            goto fail;
    }
    return 0;
fail:
    ERR_clear_error();
    drop(sm);
    return GW_ECRYPTO;
}

/* One derivation: out = HMAC-SM3(key, label)[0..outlen). */
static int derive_one(struct gw_sm *sm, const uint8_t *key, const char *label, uint8_t *out,
                      size_t outlen)
{
    uint8_t full[EVP_MAX_MD_SIZE];
    size_t n = 0;
    int ok = EVP_MAC_init(sm->kdf, key, GW_CRYPTO_KEY_LEN, NULL) == 1 &&
             EVP_MAC_update(sm->kdf, (const uint8_t *)label, strlen(label)) == 1 &&
             EVP_MAC_final(sm->kdf, full, &n, sizeof full) == 1 && n >= outlen;
    if (ok)
        memcpy(out, full, outlen);
    OPENSSL_cleanse(full, sizeof full);
    return ok ? 0 : GW_ECRYPTO;
}

/* Keys the SM4-CTR and HMAC contexts with the subkeys of key, unless they already hold them
 * (the fields of one record share a data key: one derivation per record, not per field). */
static int use_key(struct gw_sm *sm, const uint8_t key[GW_CRYPTO_KEY_LEN])
{
    if (sm->keyed && key_eq(sm->key, key))
        return 0;
    unkey(sm);
    if (derive_one(sm, key, label_enc, sm->k_enc, KENC_LEN) != 0 ||
        derive_one(sm, key, label_mac, sm->k_mac, KMAC_LEN) != 0 ||
        EVP_EncryptInit_ex2(sm->c, NULL, sm->k_enc, NULL, NULL) != 1 ||
        EVP_MAC_init(sm->mac, sm->k_mac, KMAC_LEN, NULL) != 1) {
        ERR_clear_error();
        unkey(sm);
        return GW_ECRYPTO;
    }
    memcpy(sm->key, key, GW_CRYPTO_KEY_LEN);
    sm->keyed = true;
    return 0;
}

struct gw_sm *gw_sm_new(void)
{
    struct gw_sm *sm = gw_calloc(1, sizeof *sm);
    if (!sm)
        return NULL;
    sm->ctr = EVP_CIPHER_fetch(NULL, "SM4-CTR", NULL);
    sm->hmac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    if (!sm->ctr || !sm->hmac || ensure(sm) != 0) {
        ERR_clear_error();
        gw_sm_free(sm);
        return NULL;
    }
    return sm;
}

void gw_sm_free(struct gw_sm *sm)
{
    if (!sm)
        return;
    drop(sm);
    EVP_CIPHER_free(sm->ctr);
    EVP_MAC_free(sm->hmac);
    gw_free_wipe(sm, sizeof *sm);
}

void gw_sm_forget(struct gw_sm *sm)
{
    if (sm)
        drop(sm);
}

/* tag = HMAC-SM3(k_mac, head | aadlen (8 BE) | aad | ct)[0..16), with mac keyed by use_key;
 * head, length and AAD go in one update when they fit on the stack. */
static int tag_of(struct gw_sm *sm, const uint8_t *head, const uint8_t *aad, size_t aadlen,
                  const uint8_t *ct, size_t ctlen, uint8_t tag[GW_CRYPTO_TAG_LEN])
{
    uint8_t buf[HEAD_LEN + 8 + GW_CRYPTO_AAD_MAX], full[EVP_MAX_MD_SIZE];
    size_t n = 0, outl = 0;
    if (EVP_MAC_init(sm->mac, NULL, 0, NULL) != 1) /* restart under the key it holds */
        goto fail;
    memcpy(buf, head, HEAD_LEN);
    n = HEAD_LEN;
    for (int k = 0; k < 8; k++)
        buf[n++] = (uint8_t)((uint64_t)aadlen >> (8 * (7 - k)));
    if (aadlen && aadlen <= GW_CRYPTO_AAD_MAX) {
        memcpy(buf + n, aad, aadlen);
        n += aadlen;
    } else if (aadlen) {
        if (EVP_MAC_update(sm->mac, buf, n) != 1)
            goto fail;
        n = 0;
        if (EVP_MAC_update(sm->mac, aad, aadlen) != 1)
            goto fail;
    }
    if (n && EVP_MAC_update(sm->mac, buf, n) != 1)
        goto fail;
    if (ctlen && EVP_MAC_update(sm->mac, ct, ctlen) != 1)
        goto fail;
    if (EVP_MAC_final(sm->mac, full, &outl, sizeof full) != 1 || outl < GW_CRYPTO_TAG_LEN)
        goto fail;
    memcpy(tag, full, GW_CRYPTO_TAG_LEN);
    OPENSSL_cleanse(full, sizeof full);
    return 0;
fail:
    ERR_clear_error();
    unkey(sm);
    OPENSSL_cleanse(full, sizeof full);
    return GW_ECRYPTO;
}

/* out = SM4-CTR(k_enc, nonce | 00 00 00 00) XOR in, with c keyed by use_key. */
static int ctr_xor(struct gw_sm *sm, const uint8_t *nonce, const uint8_t *in, size_t len,
                   uint8_t *out)
{
    uint8_t iv[GW_CRYPTO_SM4_BLOCK] = {0};
    int outl = 0;
    memcpy(iv, nonce, GW_CRYPTO_NONCE_LEN);
    /* a new IV resets the provider's counter and keystream position; the key stays */
    if (EVP_EncryptInit_ex2(sm->c, NULL, NULL, iv, NULL) != 1)
        goto fail;
    if (len && (EVP_EncryptUpdate(sm->c, out, &outl, in, (int)len) != 1 || (size_t)outl != len))
        goto fail;
    if (EVP_EncryptFinal_ex(sm->c, out + len, &outl) != 1 || outl != 0)
        goto fail;
    return 0;
fail:
    ERR_clear_error();
    unkey(sm);
    return GW_ECRYPTO;
}

int gw_sm_seal(struct gw_sm *sm, const uint8_t key[GW_CRYPTO_KEY_LEN], const uint8_t *head,
               const uint8_t *aad, size_t aadlen, const uint8_t *pt, size_t ptlen, uint8_t *ct,
               uint8_t tag[GW_CRYPTO_TAG_LEN])
{
    if (ptlen > GW_CRYPTO_MAX_PT || aadlen > GW_CRYPTO_MAX_PT)
        return GW_ETOOBIG;
    if (ensure(sm) != 0 || use_key(sm, key) != 0 ||
        ctr_xor(sm, head + GW_CRYPTO_HDR_LEN, pt, ptlen, ct) != 0 ||
        tag_of(sm, head, aad, aadlen, ct, ptlen, tag) != 0) {
        if (ptlen)
            OPENSSL_cleanse(ct, ptlen);
        OPENSSL_cleanse(tag, GW_CRYPTO_TAG_LEN);
        return GW_ECRYPTO;
    }
    return 0;
}

int gw_sm_open(struct gw_sm *sm, const uint8_t key[GW_CRYPTO_KEY_LEN], const uint8_t *head,
               const uint8_t *aad, size_t aadlen, const uint8_t *ct, size_t ctlen,
               const uint8_t tag[GW_CRYPTO_TAG_LEN], uint8_t *pt)
{
    uint8_t want[GW_CRYPTO_TAG_LEN];
    int rc = GW_ECRYPTO;
    if (ctlen > GW_CRYPTO_MAX_PT || aadlen > GW_CRYPTO_MAX_PT)
        rc = GW_EDATALOSS;
    else if (ensure(sm) == 0 && use_key(sm, key) == 0 &&
             tag_of(sm, head, aad, aadlen, ct, ctlen, want) == 0)
        rc = CRYPTO_memcmp(want, tag, GW_CRYPTO_TAG_LEN) != 0 ? GW_EDATALOSS : 0;
    OPENSSL_cleanse(want, sizeof want);
    if (rc == 0)
        rc = ctr_xor(sm, head + GW_CRYPTO_HDR_LEN, ct, ctlen, pt);
    if (rc != 0 && ctlen)
        OPENSSL_cleanse(pt, ctlen);
    return rc;
}

int gw_crypto_sm4_block_raw(const uint8_t key[GW_CRYPTO_SM4_KEY_LEN],
                            const uint8_t in[GW_CRYPTO_SM4_BLOCK], uint8_t out[GW_CRYPTO_SM4_BLOCK])
{
    int rc = GW_ECRYPTO, outl = 0;
    EVP_CIPHER *ecb = EVP_CIPHER_fetch(NULL, "SM4-ECB", NULL);
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    if (ecb && c && EVP_EncryptInit_ex2(c, ecb, key, NULL, NULL) == 1 &&
        EVP_CIPHER_CTX_set_padding(c, 0) == 1 &&
        EVP_EncryptUpdate(c, out, &outl, in, GW_CRYPTO_SM4_BLOCK) == 1 &&
        outl == GW_CRYPTO_SM4_BLOCK && EVP_EncryptFinal_ex(c, out + outl, &outl) == 1 && outl == 0)
        rc = 0;
    ERR_clear_error();
    EVP_CIPHER_CTX_free(c);
    EVP_CIPHER_free(ecb);
    return rc;
}
