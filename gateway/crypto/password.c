/* password.c: scrypt password hashes through OpenSSL's EVP_KDF. Invariant: derived keys and
 * copies of a password live only on the stack and are wiped (OPENSSL_cleanse) before return. */
#include "password.h"

#include <stdio.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/params.h>
#include <openssl/rand.h>

struct gw_pw_params gw_pw_params_default(uint64_t n)
{
    struct gw_pw_params pp = {n, 8, 1};

    return pp;
}

static bool params_ok(const struct gw_pw_params *pp)
{
    return pp->n >= 1024 && pp->n <= (1u << 20) && (pp->n & (pp->n - 1)) == 0 && pp->r >= 1 &&
           pp->r <= 32 && pp->p >= 1 && pp->p <= 16;
}

int gw_pw_params_parse(const char *s, struct gw_pw_params *out)
{
    unsigned long long n;
    unsigned r, p;
    int used = 0;

    if (s == NULL || sscanf(s, "scrypt:N=%llu,r=%u,p=%u%n", &n, &r, &p, &used) != 3 ||
        s[used] != '\0')
        return GW_EINVAL;
    out->n = n;
    out->r = r;
    out->p = p;
    return params_ok(out) ? 0 : GW_EINVAL;
}

void gw_pw_params_format(const struct gw_pw_params *pp, char out[GW_PW_PARAMS_MAX])
{
    snprintf(out, GW_PW_PARAMS_MAX, "scrypt:N=%llu,r=%u,p=%u", (unsigned long long)pp->n, pp->r,
             pp->p);
}

int gw_pw_salt(uint8_t salt[GW_PW_SALT_LEN])
{
    return RAND_bytes(salt, GW_PW_SALT_LEN) == 1 ? 0 : GW_ECRYPTO;
}

int gw_pw_hash(const char *pw, size_t n, const uint8_t salt[GW_PW_SALT_LEN],
               const struct gw_pw_params *pp, uint8_t out[GW_PW_HASH_LEN])
{
    EVP_KDF *kdf;
    EVP_KDF_CTX *kctx;
    OSSL_PARAM params[6];
    uint64_t nn = pp->n;
    uint32_t r = pp->r, p = pp->p;
    int rc = GW_ECRYPTO;

    if (!params_ok(pp))
        return GW_EINVAL;
    kdf = EVP_KDF_fetch(NULL, OSSL_KDF_NAME_SCRYPT, NULL);
    kctx = kdf != NULL ? EVP_KDF_CTX_new(kdf) : NULL;
    EVP_KDF_free(kdf);
    if (kctx == NULL)
        return GW_ECRYPTO;
    /* The KDF only reads the password; OSSL_PARAM's type is not const. */
    params[0] =
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_PASSWORD, (void *)(uintptr_t)pw, n);
    params[1] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, (void *)(uintptr_t)salt,
                                                  GW_PW_SALT_LEN);
    params[2] = OSSL_PARAM_construct_uint64(OSSL_KDF_PARAM_SCRYPT_N, &nn);
    params[3] = OSSL_PARAM_construct_uint32(OSSL_KDF_PARAM_SCRYPT_R, &r);
    params[4] = OSSL_PARAM_construct_uint32(OSSL_KDF_PARAM_SCRYPT_P, &p);
    params[5] = OSSL_PARAM_construct_end();
    if (EVP_KDF_derive(kctx, out, GW_PW_HASH_LEN, params) == 1)
        rc = 0;
    else
        OPENSSL_cleanse(out, GW_PW_HASH_LEN);
    EVP_KDF_CTX_free(kctx);
    return rc;
}

bool gw_pw_verify(const char *pw, size_t n, const uint8_t salt[GW_PW_SALT_LEN],
                  const struct gw_pw_params *pp, const uint8_t want[GW_PW_HASH_LEN])
{
    uint8_t got[GW_PW_HASH_LEN];
    bool ok;

    if (gw_pw_hash(pw, n, salt, pp, got) != 0)
        return false;
    ok = CRYPTO_memcmp(got, want, GW_PW_HASH_LEN) == 0;
    OPENSSL_cleanse(got, sizeof(got));
    return ok;
}
