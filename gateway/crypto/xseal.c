/* xseal.c: X25519 + HKDF-SHA256 + AES-256-GCM chunked sealing (xseal.h). Invariants: a chunk
 * counter never repeats under one key (the key is fresh per stream: a new ephemeral key and
 * salt); nothing is sealed after the final chunk; keys are wiped on free. */
#include "xseal.h"

#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/rand.h>

#include "alloc.h"

#define KEY_LEN 32
#define NONCE_LEN 12
#define TAG_LEN 16
#define INFO "waygate export v1"

struct gw_xseal {
    uint8_t header[GW_XSEAL_HEADER_LEN];
    uint8_t key[KEY_LEN];
    uint8_t nonce[NONCE_LEN];
    uint64_t counter;
    bool done;
    EVP_CIPHER_CTX *ctx;
};

/* shared = X25519(priv, peer). Returns 0, GW_EINVAL (peer unusable: zero shared secret) or
 * GW_ECRYPTO. */
static int agree(EVP_PKEY *priv, const uint8_t peer[GW_XSEAL_PUB_LEN], uint8_t shared[32])
{
    EVP_PKEY *pub = EVP_PKEY_new_raw_public_key(EVP_PKEY_X25519, NULL, peer, GW_XSEAL_PUB_LEN);
    EVP_PKEY_CTX *pc = NULL;
    size_t len = 32;
    int rc = GW_ECRYPTO;

    if (pub == NULL)
        return GW_EINVAL;
    pc = EVP_PKEY_CTX_new(priv, NULL);
    if (pc == NULL || EVP_PKEY_derive_init(pc) != 1 || EVP_PKEY_derive_set_peer(pc, pub) != 1)
        goto out;
    /* OpenSSL refuses an all-zero result (a low-order peer point): the caller's key is bad. */
    rc = EVP_PKEY_derive(pc, shared, &len) == 1 && len == 32 ? 0 : GW_EINVAL;
out:
    EVP_PKEY_CTX_free(pc);
    EVP_PKEY_free(pub);
    return rc;
}

/* key || nonce base from the shared secret, the salt and both public keys. */
static int derive(const uint8_t shared[32], const uint8_t *salt, const uint8_t *eph_pub,
                  const uint8_t *rcpt_pub, uint8_t key[KEY_LEN], uint8_t nonce[NONCE_LEN])
{
    uint8_t info[sizeof(INFO) - 1 + 2 * GW_XSEAL_PUB_LEN], okm[KEY_LEN + NONCE_LEN];
    EVP_KDF *kdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
    EVP_KDF_CTX *kc = kdf != NULL ? EVP_KDF_CTX_new(kdf) : NULL;
    OSSL_PARAM params[5];
    int rc = GW_ECRYPTO;

    memcpy(info, INFO, sizeof(INFO) - 1);
    memcpy(info + sizeof(INFO) - 1, eph_pub, GW_XSEAL_PUB_LEN);
    memcpy(info + sizeof(INFO) - 1 + GW_XSEAL_PUB_LEN, rcpt_pub, GW_XSEAL_PUB_LEN);
    params[0] = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, "SHA256", 0);
    params[1] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *)shared, 32);
    params[2] =
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, (void *)salt, GW_XSEAL_SALT_LEN);
    params[3] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, info, sizeof(info));
    params[4] = OSSL_PARAM_construct_end();
    if (kc != NULL && EVP_KDF_derive(kc, okm, sizeof(okm), params) == 1) {
        memcpy(key, okm, KEY_LEN);
        memcpy(nonce, okm + KEY_LEN, NONCE_LEN);
        rc = 0;
    }
    OPENSSL_cleanse(okm, sizeof(okm));
    EVP_KDF_CTX_free(kc);
    EVP_KDF_free(kdf);
    return rc;
}

static void put_be(uint8_t *p, uint64_t v, int n)
{
    for (int i = n - 1; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}

/* The chunk's nonce and AAD (header | counter | final). */
static void chunk_params(const uint8_t base[NONCE_LEN], const uint8_t header[GW_XSEAL_HEADER_LEN],
                         uint64_t i, bool final, uint8_t nonce[NONCE_LEN],
                         uint8_t aad[GW_XSEAL_HEADER_LEN + 9])
{
    uint8_t ctr[NONCE_LEN] = {0};

    put_be(ctr + 4, i, 8);
    for (int k = 0; k < NONCE_LEN; k++)
        nonce[k] = base[k] ^ ctr[k];
    memcpy(aad, header, GW_XSEAL_HEADER_LEN);
    put_be(aad + GW_XSEAL_HEADER_LEN, i, 8);
    aad[GW_XSEAL_HEADER_LEN + 8] = final ? 1 : 0;
}

int gw_xseal_new(const uint8_t recipient[GW_XSEAL_PUB_LEN], const uint8_t id[GW_XSEAL_ID_LEN],
                 uint8_t header[GW_XSEAL_HEADER_LEN], struct gw_xseal **out)
{
    struct gw_xseal *x = NULL;
    EVP_PKEY_CTX *kg = NULL;
    EVP_PKEY *eph = NULL;
    uint8_t shared[32], *h;
    size_t publen = GW_XSEAL_PUB_LEN;
    int rc = GW_ECRYPTO;

    *out = NULL;
    if ((x = gw_calloc(1, sizeof(*x))) == NULL)
        return GW_ENOMEM;
    h = x->header;
    memcpy(h, GW_XSEAL_MAGIC, 8);
    memcpy(h + 8, id, GW_XSEAL_ID_LEN);
    kg = EVP_PKEY_CTX_new_id(EVP_PKEY_X25519, NULL);
    if (kg == NULL || EVP_PKEY_keygen_init(kg) != 1 || EVP_PKEY_keygen(kg, &eph) != 1 ||
        EVP_PKEY_get_raw_public_key(eph, h + 8 + GW_XSEAL_ID_LEN, &publen) != 1 ||
        publen != GW_XSEAL_PUB_LEN ||
        RAND_bytes(h + 8 + GW_XSEAL_ID_LEN + GW_XSEAL_PUB_LEN, GW_XSEAL_SALT_LEN) != 1)
        goto fail;
    rc = agree(eph, recipient, shared);
    if (rc == 0)
        rc = derive(shared, h + 8 + GW_XSEAL_ID_LEN + GW_XSEAL_PUB_LEN, h + 8 + GW_XSEAL_ID_LEN,
                    recipient, x->key, x->nonce);
    OPENSSL_cleanse(shared, sizeof(shared));
    if (rc != 0)
        goto fail;
    if ((x->ctx = EVP_CIPHER_CTX_new()) == NULL) {
        rc = GW_ENOMEM;
        goto fail;
    }
    memcpy(header, h, GW_XSEAL_HEADER_LEN);
    EVP_PKEY_free(eph);
    EVP_PKEY_CTX_free(kg);
    *out = x;
    return 0;
fail:
    EVP_PKEY_free(eph);
    EVP_PKEY_CTX_free(kg);
    gw_xseal_free(x);
    return rc;
}

int gw_xseal_chunk(struct gw_xseal *x, const uint8_t *pt, size_t len, bool final, uint8_t *out)
{
    uint8_t nonce[NONCE_LEN], aad[GW_XSEAL_HEADER_LEN + 9];
    int n = 0, m = 0;

    if (x == NULL || x->done || len > GW_XSEAL_CHUNK_MAX || (len > 0 && pt == NULL))
        return GW_EINVAL;
    chunk_params(x->nonce, x->header, x->counter, final, nonce, aad);
    put_be(out, len, 4);
    if (EVP_EncryptInit_ex(x->ctx, EVP_aes_256_gcm(), NULL, x->key, nonce) != 1 ||
        EVP_EncryptUpdate(x->ctx, NULL, &n, aad, (int)sizeof(aad)) != 1 ||
        (len > 0 && EVP_EncryptUpdate(x->ctx, out + 4, &n, pt, (int)len) != 1) ||
        EVP_EncryptFinal_ex(x->ctx, out + 4 + (len > 0 ? n : 0), &m) != 1 ||
        EVP_CIPHER_CTX_ctrl(x->ctx, EVP_CTRL_GCM_GET_TAG, TAG_LEN, out + 4 + len) != 1)
        return GW_ECRYPTO;
    x->counter++;
    x->done = final;
    return 0;
}

void gw_xseal_free(struct gw_xseal *x)
{
    if (x == NULL)
        return;
    EVP_CIPHER_CTX_free(x->ctx);
    gw_free_wipe(x, sizeof(*x));
}

/* Opens one chunk at in (avail bytes left) into pt; *used: bytes of input taken. */
static int open_chunk(EVP_CIPHER_CTX *c, const uint8_t key[KEY_LEN], const uint8_t base[NONCE_LEN],
                      const uint8_t *header, uint64_t i, const uint8_t *in, size_t avail,
                      uint8_t *pt, size_t *ptlen, size_t *used, bool *final)
{
    uint8_t nonce[NONCE_LEN], aad[GW_XSEAL_HEADER_LEN + 9];
    size_t len;
    int n = 0;

    if (avail < GW_XSEAL_OVERHEAD)
        return GW_EDATALOSS;
    len = ((size_t)in[0] << 24) | ((size_t)in[1] << 16) | ((size_t)in[2] << 8) | in[3];
    if (len > GW_XSEAL_CHUNK_MAX || avail < len + GW_XSEAL_OVERHEAD)
        return GW_EDATALOSS;
    *final = avail == len + GW_XSEAL_OVERHEAD; /* only the last chunk may end the input */
    chunk_params(base, header, i, *final, nonce, aad);
    if (EVP_DecryptInit_ex(c, EVP_aes_256_gcm(), NULL, key, nonce) != 1 ||
        EVP_DecryptUpdate(c, NULL, &n, aad, (int)sizeof(aad)) != 1 ||
        (len > 0 && EVP_DecryptUpdate(c, pt, &n, in + 4, (int)len) != 1) ||
        EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, TAG_LEN, (void *)(in + 4 + len)) != 1 ||
        EVP_DecryptFinal_ex(c, pt + len, &n) != 1) {
        OPENSSL_cleanse(pt, len);
        return GW_EDATALOSS;
    }
    *ptlen = len;
    *used = len + GW_XSEAL_OVERHEAD;
    return 0;
}

int gw_xseal_open(const uint8_t priv[GW_XSEAL_PUB_LEN], const uint8_t *in, size_t inlen,
                  uint8_t id[GW_XSEAL_ID_LEN], uint8_t **pt, size_t *ptlen)
{
    EVP_PKEY *sk = NULL;
    EVP_CIPHER_CTX *c = NULL;
    uint8_t shared[32], key[KEY_LEN], nonce[NONCE_LEN], mypub[GW_XSEAL_PUB_LEN];
    uint8_t *buf = NULL;
    size_t publen = sizeof(mypub), off = GW_XSEAL_HEADER_LEN, n = 0, used, len;
    bool final = false;
    uint64_t i = 0;
    int rc;

    *pt = NULL;
    *ptlen = 0;
    if (inlen < GW_XSEAL_HEADER_LEN || memcmp(in, GW_XSEAL_MAGIC, 8) != 0)
        return GW_EDATALOSS;
    sk = EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, NULL, priv, GW_XSEAL_PUB_LEN);
    if (sk == NULL || EVP_PKEY_get_raw_public_key(sk, mypub, &publen) != 1) {
        rc = GW_EINVAL;
        goto out;
    }
    rc = agree(sk, in + 8 + GW_XSEAL_ID_LEN, shared);
    if (rc == 0)
        rc = derive(shared, in + 8 + GW_XSEAL_ID_LEN + GW_XSEAL_PUB_LEN, in + 8 + GW_XSEAL_ID_LEN,
                    mypub, key, nonce);
    if (rc != 0) {
        rc = rc == GW_EINVAL ? GW_EDATALOSS : rc;
        goto out;
    }
    if ((buf = gw_malloc(inlen + 1)) == NULL || (c = EVP_CIPHER_CTX_new()) == NULL) {
        rc = GW_ENOMEM;
        goto out;
    }
    while (!final) {
        rc =
            open_chunk(c, key, nonce, in, i++, in + off, inlen - off, buf + n, &len, &used, &final);
        if (rc != 0)
            goto out;
        off += used;
        n += len;
    }
    memcpy(id, in + 8, GW_XSEAL_ID_LEN);
    *pt = buf;
    *ptlen = n;
    buf = NULL;
out:
    if (buf != NULL)
        gw_free_wipe(buf, inlen + 1);
    OPENSSL_cleanse(shared, sizeof(shared));
    OPENSSL_cleanse(key, sizeof(key));
    EVP_CIPHER_CTX_free(c);
    EVP_PKEY_free(sk);
    return rc;
}
