/* crypto_sm.c: the sm suite's sealing (SM4-CTR + HMAC-SM3, encrypt-then-MAC; crypto.h) and the
 * SM4 block function of the known-answer tests, on OpenSSL 3 EVP (no hand-written primitive).
 * Invariants: open computes and compares (CRYPTO_memcmp) the tag before decrypting a byte; every
 * key copy this file owns is wiped with OPENSSL_cleanse; a failed seal or open wipes its output. */
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
#define K_LEN GW_CRYPTO_SM4_KEY_LEN                        /* k_enc and k_mac: 16 bytes each */

struct gw_sm {
    EVP_CIPHER *ctr;
    EVP_MAC *hmac;
    EVP_CIPHER_CTX *c; /* SM4-CTR: encrypting and decrypting are the same keystream XOR */
    EVP_MAC_CTX *mac;  /* HMAC-SM3 keyed with k_mac */
    bool c_keyed, mac_keyed;
    uint8_t c_key[K_LEN]; /* copies of the keys the contexts hold */
    uint8_t mac_key[K_LEN];
};

static bool k_eq(const uint8_t *a, const uint8_t *b)
{
    uint64_t d = 0, x, y;
    for (size_t i = 0; i < K_LEN; i += 8) {
        memcpy(&x, a + i, 8);
        memcpy(&y, b + i, 8);
        d |= x ^ y;
    }
    return d == 0;
}

static void drop(struct gw_sm *sm)
{
    EVP_CIPHER_CTX_free(sm->c);
    EVP_MAC_CTX_free(sm->mac);
    sm->c = NULL;
    sm->mac = NULL;
    sm->c_keyed = sm->mac_keyed = false;
    OPENSSL_cleanse(sm->c_key, sizeof sm->c_key);
    OPENSSL_cleanse(sm->mac_key, sizeof sm->mac_key);
}

static int ensure(struct gw_sm *sm)
{
    if (!sm->c) {
        sm->c = EVP_CIPHER_CTX_new();
        if (!sm->c || EVP_EncryptInit_ex2(sm->c, sm->ctr, NULL, NULL, NULL) != 1)
            goto fail;
        sm->c_keyed = false;
    }
    if (!sm->mac) {
        OSSL_PARAM p[2];
        p[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SM3", 0);
        p[1] = OSSL_PARAM_construct_end();
        sm->mac = EVP_MAC_CTX_new(sm->hmac);
        if (!sm->mac || EVP_MAC_CTX_set_params(sm->mac, p) != 1)
            goto fail;
        sm->mac_keyed = false;
    }
    return 0;
fail:
    ERR_clear_error();
    drop(sm);
    return GW_ECRYPTO;
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

/* tag = HMAC-SM3(k_mac, head | aadlen (8 BE) | aad | ct)[0..16); head, length and AAD go in one
 * update when they fit on the stack. */
static int tag_of(struct gw_sm *sm, const uint8_t *k_mac, const uint8_t *head, const uint8_t *aad,
                  size_t aadlen, const uint8_t *ct, size_t ctlen, uint8_t tag[GW_CRYPTO_TAG_LEN])
{
    uint8_t buf[HEAD_LEN + 8 + GW_CRYPTO_AAD_MAX], full[EVP_MAX_MD_SIZE];
    size_t n = 0, outl = 0;
    bool same = sm->mac_keyed && k_eq(sm->mac_key, k_mac);
    if (EVP_MAC_init(sm->mac, same ? NULL : k_mac, same ? 0 : K_LEN, NULL) != 1)
        goto fail;
    if (!same) {
        memcpy(sm->mac_key, k_mac, K_LEN);
        sm->mac_keyed = true;
    }
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
    sm->mac_keyed = false;
    OPENSSL_cleanse(sm->mac_key, sizeof sm->mac_key);
    OPENSSL_cleanse(full, sizeof full);
    return GW_ECRYPTO;
}

/* out = SM4-CTR(k_enc, nonce | 00 00 00 00) XOR in. */
static int ctr_xor(struct gw_sm *sm, const uint8_t *k_enc, const uint8_t *nonce, const uint8_t *in,
                   size_t len, uint8_t *out)
{
    uint8_t iv[GW_CRYPTO_SM4_BLOCK] = {0};
    int outl = 0;
    memcpy(iv, nonce, GW_CRYPTO_NONCE_LEN);
    bool same = sm->c_keyed && k_eq(sm->c_key, k_enc);
    /* a new IV resets the provider's counter and keystream position */
    if (EVP_EncryptInit_ex2(sm->c, NULL, same ? NULL : k_enc, iv, NULL) != 1)
        goto fail;
    if (!same) {
        memcpy(sm->c_key, k_enc, K_LEN);
        sm->c_keyed = true;
    }
    if (len && (EVP_EncryptUpdate(sm->c, out, &outl, in, (int)len) != 1 || (size_t)outl != len))
        goto fail;
    if (EVP_EncryptFinal_ex(sm->c, out + len, &outl) != 1 || outl != 0)
        goto fail;
    return 0;
fail:
    ERR_clear_error();
    sm->c_keyed = false;
    OPENSSL_cleanse(sm->c_key, sizeof sm->c_key);
    return GW_ECRYPTO;
}

int gw_sm_seal(struct gw_sm *sm, const uint8_t key[GW_CRYPTO_KEY_LEN], const uint8_t *head,
               const uint8_t *aad, size_t aadlen, const uint8_t *pt, size_t ptlen, uint8_t *ct,
               uint8_t tag[GW_CRYPTO_TAG_LEN])
{
    if (ptlen > GW_CRYPTO_MAX_PT || aadlen > GW_CRYPTO_MAX_PT)
        return GW_ETOOBIG;
    if (ensure(sm) != 0 || ctr_xor(sm, key, head + GW_CRYPTO_HDR_LEN, pt, ptlen, ct) != 0 ||
        tag_of(sm, key + K_LEN, head, aad, aadlen, ct, ptlen, tag) != 0) {
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
    else if (ensure(sm) == 0 && tag_of(sm, key + K_LEN, head, aad, aadlen, ct, ctlen, want) == 0)
        rc = CRYPTO_memcmp(want, tag, GW_CRYPTO_TAG_LEN) != 0 ? GW_EDATALOSS : 0;
    OPENSSL_cleanse(want, sizeof want);
    if (rc == 0)
        rc = ctr_xor(sm, key, head + GW_CRYPTO_HDR_LEN, ct, ctlen, pt);
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
