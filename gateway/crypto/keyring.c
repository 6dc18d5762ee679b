/* keyring.c: the keyring: KEK versions and states, the backend that holds the KEKs (wrap and
 * unwrap go through it, so an HSM backend never lets a KEK out), and the in-memory index, token
 * and content keys. Invariants: immutable once built; secrets wiped (and unlocked) on free. */
#include "keyring.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <openssl/crypto.h>

#include "alloc.h"

struct secrets {
    uint8_t index[GW_CRYPTO_KEY_LEN];
    uint8_t token[GW_CRYPTO_KEY_LEN];
    uint8_t content[GW_CRYPTO_KEY_LEN];
    uint8_t audit[GW_CRYPTO_KEY_LEN];     /* Ed25519 private seed: checkpoint signatures */
    uint8_t watermark[GW_CRYPTO_KEY_LEN]; /* bulk-export watermark tags */
    bool have_audit, have_watermark;
};

struct gw_keyring {
    const struct gw_keyring_backend *ops;
    void *be;
    struct gw_keyring_kek *keks; /* ascending versions */
    size_t nkeks;
    uint32_t current;
    struct secrets *sec;
};

/* Secret memory: gw_calloc'd, locked when possible, wiped on free. */
static void *secret_alloc(size_t n)
{
    void *p = gw_calloc(1, n);
    if (p)
        (void)mlock(p, n); /* best effort: RLIMIT_MEMLOCK may forbid it */
    return p;
}

static void secret_free(void *p, size_t n)
{
    if (!p)
        return;
    OPENSSL_cleanse(p, n);
    (void)munlock(p, n);
    gw_free(p);
}

static int kek_cmp(const void *a, const void *b)
{
    uint32_t x = ((const struct gw_keyring_kek *)a)->version;
    uint32_t y = ((const struct gw_keyring_kek *)b)->version;
    return x < y ? -1 : x > y;
}

struct gw_keyring *gw_keyring_new(const struct gw_keyring_backend *ops, void *be,
                                  const struct gw_keyring_kek *keks, size_t nkeks,
                                  const uint8_t index_key[GW_CRYPTO_KEY_LEN],
                                  const uint8_t token_key[GW_CRYPTO_KEY_LEN],
                                  const uint8_t content_key[GW_CRYPTO_KEY_LEN])
{
    struct gw_keyring *kr = NULL;
    if (!ops || !ops->wrap || !ops->unwrap || !keks || nkeks == 0 || nkeks > GW_KEYRING_MAX_KEKS ||
        !index_key || !token_key || !content_key)
        return NULL;
    kr = gw_calloc(1, sizeof *kr);
    if (!kr)
        return NULL;
    kr->keks = gw_calloc(nkeks, sizeof *kr->keks);
    kr->sec = secret_alloc(sizeof *kr->sec);
    if (!kr->keks || !kr->sec)
        goto fail;
    memcpy(kr->keks, keks, nkeks * sizeof *keks);
    kr->nkeks = nkeks;
    qsort(kr->keks, nkeks, sizeof *kr->keks, kek_cmp);
    for (size_t i = 1; i < nkeks; i++)
        if (kr->keks[i].version == kr->keks[i - 1].version)
            goto fail;
    if (kr->keks[0].version == 0 || !kr->keks[nkeks - 1].active)
        goto fail;
    kr->current = kr->keks[nkeks - 1].version;
    memcpy(kr->sec->index, index_key, GW_CRYPTO_KEY_LEN);
    memcpy(kr->sec->token, token_key, GW_CRYPTO_KEY_LEN);
    memcpy(kr->sec->content, content_key, GW_CRYPTO_KEY_LEN);
    kr->ops = ops;
    kr->be = be;
    return kr;
fail:
    gw_free(kr->keks);
    secret_free(kr->sec, sizeof *kr->sec);
    gw_free(kr);
    return NULL;
}

void gw_keyring_free(struct gw_keyring *kr)
{
    if (!kr)
        return;
    if (kr->ops && kr->ops->free)
        kr->ops->free(kr->be);
    gw_free(kr->keks);
    secret_free(kr->sec, sizeof *kr->sec);
    gw_free(kr);
}

uint32_t gw_keyring_current(const struct gw_keyring *kr)
{
    return kr->current;
}

size_t gw_keyring_kek_count(const struct gw_keyring *kr)
{
    return kr->nkeks;
}

struct gw_keyring_kek gw_keyring_kek_at(const struct gw_keyring *kr, size_t i)
{
    struct gw_keyring_kek none = {0, false};
    return i < kr->nkeks ? kr->keks[i] : none;
}

const char *gw_keyring_backend_name(const struct gw_keyring *kr)
{
    return kr->ops->name ? kr->ops->name : "?";
}

const uint8_t *gw_keyring_index_key(const struct gw_keyring *kr)
{
    return kr->sec->index;
}

const uint8_t *gw_keyring_token_key(const struct gw_keyring *kr)
{
    return kr->sec->token;
}

const uint8_t *gw_keyring_content_key(const struct gw_keyring *kr)
{
    return kr->sec->content;
}

void gw_keyring_set_extra(struct gw_keyring *kr, const uint8_t *audit_seed,
                          const uint8_t *watermark_key)
{
    if (audit_seed) {
        memcpy(kr->sec->audit, audit_seed, GW_CRYPTO_KEY_LEN);
        kr->sec->have_audit = true;
    }
    if (watermark_key) {
        memcpy(kr->sec->watermark, watermark_key, GW_CRYPTO_KEY_LEN);
        kr->sec->have_watermark = true;
    }
}

const uint8_t *gw_keyring_audit_seed(const struct gw_keyring *kr)
{
    return kr->sec->have_audit ? kr->sec->audit : NULL;
}

const uint8_t *gw_keyring_watermark_key(const struct gw_keyring *kr)
{
    return kr->sec->have_watermark ? kr->sec->watermark : NULL;
}

int gw_keyring_wrap(const struct gw_keyring *kr, struct gw_crypto *cx, uint32_t kek_version,
                    const char *table, const uint8_t record_id[GW_CRYPTO_RECORD_ID_LEN],
                    const uint8_t dek[GW_CRYPTO_DEK_LEN], uint8_t out[GW_CRYPTO_WRAPPED_DEK_LEN])
{
    struct gw_crypto_aad aad;
    int rc = gw_crypto_aad_dek(&aad, table, record_id, kek_version);
    if (rc != 0)
        return rc;
    return kr->ops->wrap(kr->be, cx, kek_version, aad.b, aad.n, dek, out);
}

int gw_keyring_unwrap(const struct gw_keyring *kr, struct gw_crypto *cx, uint32_t kek_version,
                      const char *table, const uint8_t record_id[GW_CRYPTO_RECORD_ID_LEN],
                      const uint8_t *in, size_t inlen, uint8_t dek[GW_CRYPTO_DEK_LEN])
{
    struct gw_crypto_aad aad;
    int rc = gw_crypto_aad_dek(&aad, table, record_id, kek_version);
    if (rc != 0)
        return rc;
    rc = kr->ops->unwrap(kr->be, cx, kek_version, aad.b, aad.n, in, inlen, dek);
    if (rc != 0)
        OPENSSL_cleanse(dek, GW_CRYPTO_DEK_LEN);
    return rc;
}
