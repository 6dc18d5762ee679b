/* crypto_sm.c: the sm suite's sealing (SM4-CTR + HMAC-SM3, encrypt-then-MAC; crypto.h) and the
 * SM4 block function of the known-answer tests, on OpenSSL 3 EVP (no hand-written primitive).
 * Both subkeys are derived from the whole 32-byte key (HMAC-SM3 with a label each), so the tag
 * depends on every key bit. The derivation is cached for the last SM_SLOTS keys, each slot an
 * SM4-CTR and an HMAC context keyed with the subkeys: a record seals under the KEK (the wrapped
 * data key) and under its data key (the fields), so two slots derive once per record, not twice.
 * A key is compared against every slot in constant time (gw_crypto_key_eq: 8-byte words, no early
 * exit); a miss replaces the least recently used slot. Per field the work is the format's own: one
 * IV reset and SM4-CTR over the value, and one HMAC-SM3 restarted from the held key's precomputed
 * pads (2-3 SM3 compressions for head | aadlen | aad | ct of a ~20-byte field, 1 for the outer
 * hash), fed in one update when value and AAD fit the stack buffer; the derivation (8
 * compressions and an SM4 key schedule) runs once per key, not per field.
 * Invariants: open computes and compares (CRYPTO_memcmp) the tag before decrypting a byte; every
 * key copy this file owns (the slots' keys, the derived subkeys and the full HMAC on the stack)
 * is wiped (OPENSSL_cleanse, or gw_wipe on the per-field path), the contexts' key schedules by
 * freeing them (forget, free); a failed seal or open wipes its output and unkeys its slot. */
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
#define SM_SLOTS 2                                         /* the KEK and one data key */
#define MAC_LEN 32                                         /* HMAC-SM3's output */
/* Values up to this many bytes go into the tag's one update with head, length and AAD. */
#define TAG_INLINE_CT 256

/* Derivation labels (crypto.h): k_enc = HMAC-SM3(key, ENC)[0..16), k_mac = HMAC-SM3(key, MAC). */
static const char label_enc[] = "waygate-sm-enc-v1";
static const char label_mac[] = "waygate-sm-mac-v1";

/* One cached key: contexts keyed with the subkeys derived from key. */
struct sm_slot {
    EVP_CIPHER_CTX *c;  /* SM4-CTR keyed with k_enc: encrypting and decrypting are the same XOR */
    EVP_MAC_CTX *mac;   /* HMAC-SM3 keyed with k_mac */
    bool keyed;         /* c and mac hold the subkeys derived from key */
    unsigned long used; /* sm->clock at the last use: the least recent is replaced */
    uint8_t key[GW_CRYPTO_KEY_LEN]; /* the key they derive from (compared, never used) */
};

struct gw_sm {
    EVP_CIPHER *ctr;
    EVP_MAC *hmac;
    EVP_MAC_CTX *kdf; /* HMAC-SM3 keyed with the key being derived from */
    unsigned long clock;
    struct sm_slot slot[SM_SLOTS];
};

static void unkey(struct sm_slot *s)
{
    s->keyed = false;
    s->used = 0;
    OPENSSL_cleanse(s->key, sizeof s->key);
}

static void drop(struct gw_sm *sm)
{
    for (int i = 0; i < SM_SLOTS; i++) {
        struct sm_slot *s = &sm->slot[i];
        EVP_CIPHER_CTX_free(s->c); /* frees wipe the key schedules */
        EVP_MAC_CTX_free(s->mac);
        s->c = NULL;
        s->mac = NULL;
        unkey(s);
    }
    EVP_MAC_CTX_free(sm->kdf);
    sm->kdf = NULL;
    sm->clock = 0;
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
    for (int i = 0; i < SM_SLOTS; i++) {
        struct sm_slot *s = &sm->slot[i];
        if (!s->c) {
            s->c = EVP_CIPHER_CTX_new();
            if (!s->c || EVP_EncryptInit_ex2(s->c, sm->ctr, NULL, NULL, NULL) != 1)
                goto fail;
            unkey(s);
        }
        if (!s->mac) {
            s->mac = hmac_sm3_ctx(sm->hmac);
            if (!s->mac)
                goto fail;
            unkey(s);
        }
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

/* One derivation: out = HMAC-SM3(key, label)[0..outlen), kdf keyed with key beforehand (a NULL
 * key to EVP_MAC_init restarts it under the key it holds: one key setup for both labels). */
static int derive_one(struct gw_sm *sm, const uint8_t *key, const char *label, uint8_t *out,
                      size_t outlen)
{
    uint8_t full[MAC_LEN];
    size_t n = 0;
    int ok = EVP_MAC_init(sm->kdf, key, key ? GW_CRYPTO_KEY_LEN : 0, NULL) == 1 &&
             EVP_MAC_update(sm->kdf, (const uint8_t *)label, strlen(label)) == 1 &&
             EVP_MAC_final(sm->kdf, full, &n, sizeof full) == 1 && n >= outlen;
    if (ok)
        memcpy(out, full, outlen);
    OPENSSL_cleanse(full, sizeof full);
    return ok ? 0 : GW_ECRYPTO;
}

/* Keys slot s's contexts with the subkeys of key. */
static int key_slot(struct gw_sm *sm, struct sm_slot *s, const uint8_t key[GW_CRYPTO_KEY_LEN])
{
    uint8_t k_enc[KENC_LEN], k_mac[KMAC_LEN];
    int rc = 0;
    unkey(s);
    if (derive_one(sm, key, label_enc, k_enc, KENC_LEN) != 0 ||
        derive_one(sm, NULL, label_mac, k_mac, KMAC_LEN) != 0 ||
        EVP_EncryptInit_ex2(s->c, NULL, k_enc, NULL, NULL) != 1 ||
        EVP_MAC_init(s->mac, k_mac, KMAC_LEN, NULL) != 1) {
        ERR_clear_error();
        unkey(s);
        rc = GW_ECRYPTO;
    } else {
        memcpy(s->key, key, GW_CRYPTO_KEY_LEN);
        s->keyed = true;
    }
    OPENSSL_cleanse(k_enc, sizeof k_enc);
    OPENSSL_cleanse(k_mac, sizeof k_mac);
    return rc;
}

/* The slot whose contexts hold the subkeys of key, derived now unless a slot already holds them
 * (the fields of one record share a data key, and every record's data key is wrapped under the
 * same KEK). Every keyed slot is compared, in constant time, whether or not an earlier one
 * matched. NULL on failure. */
static struct sm_slot *use_key(struct gw_sm *sm, const uint8_t key[GW_CRYPTO_KEY_LEN])
{
    struct sm_slot *hit = NULL, *victim = &sm->slot[0];
    for (int i = 0; i < SM_SLOTS; i++) {
        struct sm_slot *s = &sm->slot[i];
        bool eq = gw_crypto_key_eq(s->key, key);
        if (s->keyed && eq)
            hit = s;
        if (s->used < victim->used) /* unkeyed slots have used == 0 */
            victim = s;
    }
    if (!hit) {
        if (key_slot(sm, victim, key) != 0)
            return NULL;
        hit = victim;
    }
    hit->used = ++sm->clock;
    return hit;
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

/* tag = HMAC-SM3(k_mac, head | aadlen (8 BE) | aad | ct)[0..16), with s->mac keyed by use_key;
 * head, length, AAD and (up to TAG_INLINE_CT bytes) the ciphertext go in one update. */
static int tag_of(struct sm_slot *s, const uint8_t *head, const uint8_t *aad, size_t aadlen,
                  const uint8_t *ct, size_t ctlen, uint8_t tag[GW_CRYPTO_TAG_LEN])
{
    uint8_t buf[HEAD_LEN + 8 + GW_CRYPTO_AAD_MAX + TAG_INLINE_CT], full[MAC_LEN];
    size_t n = 0, outl = 0;
    if (EVP_MAC_init(s->mac, NULL, 0, NULL) != 1) /* restart under the key it holds */
        goto fail;
    memcpy(buf, head, HEAD_LEN);
    n = HEAD_LEN;
    for (int k = 0; k < 8; k++)
        buf[n++] = (uint8_t)((uint64_t)aadlen >> (8 * (7 - k)));
    if (aadlen > GW_CRYPTO_AAD_MAX) { /* what is buffered so far, then the AAD itself */
        if (EVP_MAC_update(s->mac, buf, n) != 1 || EVP_MAC_update(s->mac, aad, aadlen) != 1)
            goto fail;
        n = 0;
    } else if (aadlen) {
        memcpy(buf + n, aad, aadlen);
        n += aadlen;
    }
    if (ctlen > TAG_INLINE_CT) { /* likewise for a long value */
        if (EVP_MAC_update(s->mac, buf, n) != 1 || EVP_MAC_update(s->mac, ct, ctlen) != 1)
            goto fail;
        n = 0;
    } else if (ctlen) {
        memcpy(buf + n, ct, ctlen);
        n += ctlen;
    }
    if (n && EVP_MAC_update(s->mac, buf, n) != 1)
        goto fail;
    if (EVP_MAC_final(s->mac, full, &outl, sizeof full) != 1 || outl < GW_CRYPTO_TAG_LEN)
        goto fail;
    memcpy(tag, full, GW_CRYPTO_TAG_LEN);
    gw_wipe(full, sizeof full);
    return 0;
fail:
    ERR_clear_error();
    unkey(s);
    gw_wipe(full, sizeof full);
    return GW_ECRYPTO;
}

/* out = SM4-CTR(k_enc, nonce | 00 00 00 00) XOR in, with s->c keyed by use_key. */
static int ctr_xor(struct sm_slot *s, const uint8_t *nonce, const uint8_t *in, size_t len,
                   uint8_t *out)
{
    uint8_t iv[GW_CRYPTO_SM4_BLOCK] = {0};
    int outl = 0;
    memcpy(iv, nonce, GW_CRYPTO_NONCE_LEN);
    /* a new IV resets the provider's counter and keystream position; the key stays */
    if (EVP_EncryptInit_ex2(s->c, NULL, NULL, iv, NULL) != 1)
        goto fail;
    /* CTR is a stream mode: the update returns every byte, and a final would only dispatch to
     * the provider to return none (the next IV resets the position anyway) */
    if (len && (EVP_EncryptUpdate(s->c, out, &outl, in, (int)len) != 1 || (size_t)outl != len))
        goto fail;
    return 0;
fail:
    ERR_clear_error();
    unkey(s);
    return GW_ECRYPTO;
}

int gw_sm_seal(struct gw_sm *sm, const uint8_t key[GW_CRYPTO_KEY_LEN], const uint8_t *head,
               const uint8_t *aad, size_t aadlen, const uint8_t *pt, size_t ptlen, uint8_t *ct,
               uint8_t tag[GW_CRYPTO_TAG_LEN])
{
    struct sm_slot *s = NULL;
    if (ptlen > GW_CRYPTO_MAX_PT || aadlen > GW_CRYPTO_MAX_PT)
        return GW_ETOOBIG;
    if (ensure(sm) != 0 || (s = use_key(sm, key)) == NULL ||
        ctr_xor(s, head + GW_CRYPTO_HDR_LEN, pt, ptlen, ct) != 0 ||
        tag_of(s, head, aad, aadlen, ct, ptlen, tag) != 0) {
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
    struct sm_slot *s = NULL;
    int rc = GW_ECRYPTO;
    if (ctlen > GW_CRYPTO_MAX_PT || aadlen > GW_CRYPTO_MAX_PT)
        rc = GW_EDATALOSS;
    else if (ensure(sm) == 0 && (s = use_key(sm, key)) != NULL &&
             tag_of(s, head, aad, aadlen, ct, ctlen, want) == 0)
        rc = CRYPTO_memcmp(want, tag, GW_CRYPTO_TAG_LEN) != 0 ? GW_EDATALOSS : 0;
    OPENSSL_cleanse(want, sizeof want);
    if (rc == 0)
        rc = ctr_xor(s, head + GW_CRYPTO_HDR_LEN, ct, ctlen, pt);
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
