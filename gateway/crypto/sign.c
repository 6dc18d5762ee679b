/* sign.c: Ed25519 and SM2 signatures on OpenSSL 3 EVP (sign.h). Keys are built per call from the
 * keyring's bytes and freed (and the private BIGNUM cleared) before returning; SM2 sets the
 * default distinguishing identifier on every signing and verifying context. */
#include "sign.h"

#include <stdbool.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/obj_mac.h>
#include <openssl/param_build.h>
#include <openssl/params.h>

const char *gw_sign_alg_name(enum gw_sign_alg alg)
{
    switch (alg) {
    case GW_SIGN_ED25519:
        return "ed25519";
    case GW_SIGN_SM2:
        return "sm2";
    }
    return NULL;
}

int gw_sign_alg_parse(const char *s, size_t n, enum gw_sign_alg *out)
{
    if (n == 7 && memcmp(s, "ed25519", 7) == 0)
        *out = GW_SIGN_ED25519;
    else if (n == 3 && memcmp(s, "sm2", 3) == 0)
        *out = GW_SIGN_SM2;
    else
        return GW_EINVAL;
    return 0;
}

size_t gw_sign_pub_len(enum gw_sign_alg alg)
{
    return alg == GW_SIGN_ED25519 ? GW_SIGN_ED25519_PUB_LEN
           : alg == GW_SIGN_SM2   ? GW_SIGN_SM2_PUB_LEN
                                  : 0;
}

int gw_sign_pub_alg(const uint8_t *pub, size_t len, enum gw_sign_alg *out)
{
    if (len == GW_SIGN_ED25519_PUB_LEN)
        *out = GW_SIGN_ED25519;
    else if (len == GW_SIGN_SM2_PUB_LEN && pub[0] == 0x04)
        *out = GW_SIGN_SM2;
    else
        return GW_EINVAL;
    return 0;
}

/* The SM2 public point d*G, uncompressed, into pub[65]; d must be in [1, n-2]. */
static int sm2_point(const BIGNUM *d, uint8_t pub[GW_SIGN_SM2_PUB_LEN])
{
    EC_GROUP *g = EC_GROUP_new_by_curve_name(NID_sm2);
    EC_POINT *p = g ? EC_POINT_new(g) : NULL;
    BIGNUM *max = BN_new();
    int rc = GW_ECRYPTO;
    if (!p || !max || !BN_copy(max, EC_GROUP_get0_order(g)) || !BN_sub_word(max, 2))
        goto out;
    if (BN_is_zero(d) || BN_is_negative(d) || BN_cmp(d, max) > 0)
        goto out;
    if (EC_POINT_mul(g, p, d, NULL, NULL, NULL) == 1 &&
        EC_POINT_point2oct(g, p, POINT_CONVERSION_UNCOMPRESSED, pub, GW_SIGN_SM2_PUB_LEN, NULL) ==
            GW_SIGN_SM2_PUB_LEN)
        rc = 0;
out:
    BN_free(max);
    EC_POINT_free(p);
    EC_GROUP_free(g);
    return rc;
}

/* An SM2 EVP_PKEY from params (a key pair when d is not NULL, else a public key). */
static EVP_PKEY *sm2_pkey(const BIGNUM *d, const uint8_t *pub, size_t publen)
{
    OSSL_PARAM_BLD *b = OSSL_PARAM_BLD_new();
    OSSL_PARAM *params = NULL;
    EVP_PKEY_CTX *c = EVP_PKEY_CTX_new_from_name(NULL, "SM2", NULL);
    EVP_PKEY *k = NULL;
    if (!b || !c || !OSSL_PARAM_BLD_push_utf8_string(b, OSSL_PKEY_PARAM_GROUP_NAME, "SM2", 0) ||
        !OSSL_PARAM_BLD_push_octet_string(b, OSSL_PKEY_PARAM_PUB_KEY, pub, publen) ||
        (d && !OSSL_PARAM_BLD_push_BN(b, OSSL_PKEY_PARAM_PRIV_KEY, d)))
        goto out;
    params = OSSL_PARAM_BLD_to_param(b);
    if (!params || EVP_PKEY_fromdata_init(c) != 1 ||
        EVP_PKEY_fromdata(c, &k, d ? EVP_PKEY_KEYPAIR : EVP_PKEY_PUBLIC_KEY, params) != 1)
        k = NULL;
out:
    OSSL_PARAM_free(params); /* the private part (secure BIGNUM) is cleared when freed */
    OSSL_PARAM_BLD_free(b);
    EVP_PKEY_CTX_free(c);
    return k;
}

bool gw_sign_pub_valid(const uint8_t *pub, size_t len)
{
    enum gw_sign_alg alg;
    EVP_PKEY *pk;
    bool ok;
    if (gw_sign_pub_alg(pub, len, &alg) != 0)
        return false;
    if (alg == GW_SIGN_ED25519)
        return true;
    pk = sm2_pkey(NULL, pub, len); /* OpenSSL refuses a point off the curve */
    ok = pk != NULL;
    ERR_clear_error();
    EVP_PKEY_free(pk);
    return ok;
}

/* The private EVP_PKEY of k, and its public key into pub/publen. */
static EVP_PKEY *private_key(const struct gw_sign_key *k, uint8_t pub[GW_SIGN_PUB_MAX],
                             size_t *publen)
{
    EVP_PKEY *pk = NULL;
    if (k->alg == GW_SIGN_ED25519) {
        pk = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, k->seed, GW_SIGN_SEED_LEN);
        *publen = GW_SIGN_ED25519_PUB_LEN;
        if (pk && EVP_PKEY_get_raw_public_key(pk, pub, publen) != 1) {
            EVP_PKEY_free(pk);
            pk = NULL;
        }
    } else if (k->alg == GW_SIGN_SM2) {
        BIGNUM *d = BN_secure_new();
        *publen = GW_SIGN_SM2_PUB_LEN;
        if (d && BN_bin2bn(k->seed, GW_SIGN_SEED_LEN, d) && sm2_point(d, pub) == 0)
            pk = sm2_pkey(d, pub, GW_SIGN_SM2_PUB_LEN);
        BN_clear_free(d);
    }
    return pk;
}

int gw_sign_public(const struct gw_sign_key *k, uint8_t pub[GW_SIGN_PUB_MAX], size_t *len)
{
    if (!k || !k->seed || !gw_sign_alg_name(k->alg))
        return GW_EINVAL;
    EVP_PKEY *pk = private_key(k, pub, len);
    ERR_clear_error();
    EVP_PKEY_free(pk);
    return pk ? 0 : GW_ECRYPTO;
}

/* A digest-sign/verify context for pk: SM3 and the default identifier for SM2, none for
 * Ed25519. *pc receives the SM2 key context the caller frees after md. */
static int init_md(EVP_MD_CTX *md, EVP_PKEY *pk, bool sm2, bool sign, EVP_PKEY_CTX **pc)
{
    const EVP_MD *dg = NULL;
    *pc = NULL;
    if (sm2) {
        *pc = EVP_PKEY_CTX_new(pk, NULL);
        if (!*pc || EVP_PKEY_CTX_set1_id(*pc, GW_SIGN_SM2_ID, strlen(GW_SIGN_SM2_ID)) != 1)
            return GW_ECRYPTO;
        EVP_MD_CTX_set_pkey_ctx(md, *pc);
        dg = EVP_sm3();
    }
    int ok = sign ? EVP_DigestSignInit(md, NULL, dg, NULL, pk)
                  : EVP_DigestVerifyInit(md, NULL, dg, NULL, pk);
    return ok == 1 ? 0 : GW_ECRYPTO;
}

int gw_sign(const struct gw_sign_key *k, const uint8_t *msg, size_t len,
            uint8_t sig[GW_SIGN_SIG_MAX], size_t *siglen)
{
    uint8_t pub[GW_SIGN_PUB_MAX];
    size_t publen = 0;
    if (!k || !k->seed || !gw_sign_alg_name(k->alg))
        return GW_EINVAL;
    EVP_PKEY *pk = private_key(k, pub, &publen);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    EVP_PKEY_CTX *pc = NULL;
    int rc = GW_ECRYPTO;
    *siglen = GW_SIGN_SIG_MAX;
    if (pk && md && init_md(md, pk, k->alg == GW_SIGN_SM2, true, &pc) == 0 &&
        EVP_DigestSign(md, sig, siglen, msg, len) == 1 &&
        (k->alg == GW_SIGN_SM2 || *siglen == GW_SIGN_ED25519_SIG_LEN))
        rc = 0;
    ERR_clear_error();
    EVP_MD_CTX_free(md);
    EVP_PKEY_CTX_free(pc);
    EVP_PKEY_free(pk);
    return rc;
}

int gw_sign_verify(const uint8_t *pub, size_t publen, const uint8_t *msg, size_t len,
                   const uint8_t *sig, size_t siglen)
{
    enum gw_sign_alg alg;
    if (gw_sign_pub_alg(pub, publen, &alg) != 0 || siglen == 0 || siglen > GW_SIGN_SIG_MAX ||
        (alg == GW_SIGN_ED25519 && siglen != GW_SIGN_ED25519_SIG_LEN))
        return GW_EDATALOSS;
    EVP_PKEY *pk = alg == GW_SIGN_ED25519
                       ? EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, pub, publen)
                       : sm2_pkey(NULL, pub, publen);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    EVP_PKEY_CTX *pc = NULL;
    int rc = pk ? GW_ECRYPTO : GW_EDATALOSS; /* no key: not a point on the curve */
    if (pk && md && init_md(md, pk, alg == GW_SIGN_SM2, false, &pc) == 0)
        rc = EVP_DigestVerify(md, sig, siglen, msg, len) == 1 ? 0 : GW_EDATALOSS;
    ERR_clear_error();
    EVP_MD_CTX_free(md);
    EVP_PKEY_CTX_free(pc);
    EVP_PKEY_free(pk);
    return rc;
}
