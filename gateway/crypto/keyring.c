/* keyring.c: the keyring: per cipher suite, the KEK versions and states and the in-memory index,
 * token, content and audit keys; the backend that holds the KEKs (wrap and unwrap go through it,
 * so an HSM backend never lets a KEK out); the suite new records use. Invariants: immutable once
 * its owner has chosen the suite; secrets wiped (and unlocked) on free; unwrap takes the suite
 * from the wrapped value itself, never from the caller. */
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
    uint8_t audit[GW_CRYPTO_KEY_LEN]; /* aes: Ed25519 seed; sm: SM2 scalar */
    bool have_audit;
};

/* The keys of one suite; present when keks != NULL. */
struct kset {
    struct gw_keyring_kek *keks; /* ascending versions */
    size_t nkeks;
    uint32_t current;
    struct secrets *sec;
};

struct gw_keyring {
    const struct gw_keyring_backend *ops;
    void *be;
    struct kset set[GW_SUITE_COUNT + 1]; /* indexed by enum gw_suite (1..GW_SUITE_COUNT) */
    enum gw_suite suite;                 /* the suite new records use */
    uint8_t *watermark;                  /* secret memory, or NULL */
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

static bool suite_ok(enum gw_suite s)
{
    return s == GW_SUITE_AES || s == GW_SUITE_SM;
}

static const struct kset *kset_of(const struct gw_keyring *kr, enum gw_suite s)
{
    return suite_ok(s) && kr->set[s].keks ? &kr->set[s] : NULL;
}

static int kek_cmp(const void *a, const void *b)
{
    uint32_t x = ((const struct gw_keyring_kek *)a)->version;
    uint32_t y = ((const struct gw_keyring_kek *)b)->version;
    return x < y ? -1 : x > y;
}

static void kset_clear(struct kset *k)
{
    gw_free(k->keks);
    secret_free(k->sec, sizeof *k->sec);
    memset(k, 0, sizeof *k);
}

/* Fills k from set: validated (versions distinct and non-zero, newest active, keys present). */
static int kset_fill(struct kset *k, const struct gw_keyring_set *set)
{
    if (!set || !set->keks || set->nkeks == 0 || set->nkeks > GW_KEYRING_MAX_KEKS || !set->index ||
        !set->token || !set->content)
        return GW_EINVAL;
    k->keks = gw_calloc(set->nkeks, sizeof *k->keks);
    k->sec = secret_alloc(sizeof *k->sec);
    if (!k->keks || !k->sec) {
        kset_clear(k);
        return GW_ENOMEM;
    }
    memcpy(k->keks, set->keks, set->nkeks * sizeof *set->keks);
    k->nkeks = set->nkeks;
    qsort(k->keks, k->nkeks, sizeof *k->keks, kek_cmp);
    for (size_t i = 1; i < k->nkeks; i++)
        if (k->keks[i].version == k->keks[i - 1].version)
            goto invalid;
    if (k->keks[0].version == 0 || !k->keks[k->nkeks - 1].active)
        goto invalid;
    k->current = k->keks[k->nkeks - 1].version;
    memcpy(k->sec->index, set->index, GW_CRYPTO_KEY_LEN);
    memcpy(k->sec->token, set->token, GW_CRYPTO_KEY_LEN);
    memcpy(k->sec->content, set->content, GW_CRYPTO_KEY_LEN);
    if (set->audit) {
        memcpy(k->sec->audit, set->audit, GW_CRYPTO_KEY_LEN);
        k->sec->have_audit = true;
    }
    return 0;
invalid:
    kset_clear(k);
    return GW_EINVAL;
}

struct gw_keyring *gw_keyring_new(const struct gw_keyring_backend *ops, void *be,
                                  enum gw_suite suite, const struct gw_keyring_set *set)
{
    struct gw_keyring *kr = NULL;
    if (!ops || !ops->wrap || !ops->unwrap || !suite_ok(suite))
        return NULL;
    kr = gw_calloc(1, sizeof *kr);
    if (!kr)
        return NULL;
    if (kset_fill(&kr->set[suite], set) != 0) {
        gw_free(kr);
        return NULL;
    }
    kr->suite = suite;
    kr->ops = ops;
    kr->be = be;
    return kr;
}

int gw_keyring_add_suite(struct gw_keyring *kr, enum gw_suite suite,
                         const struct gw_keyring_set *set)
{
    if (!suite_ok(suite))
        return GW_EINVAL;
    if (kr->set[suite].keks)
        return GW_EEXIST;
    int rc = kset_fill(&kr->set[suite], set);
    if (rc != 0)
        return rc;
    kr->suite = kr->set[GW_SUITE_AES].keks ? GW_SUITE_AES : GW_SUITE_SM; /* the default */
    return 0;
}

void gw_keyring_free(struct gw_keyring *kr)
{
    if (!kr)
        return;
    if (kr->ops && kr->ops->free)
        kr->ops->free(kr->be);
    for (int s = 0; s <= GW_SUITE_COUNT; s++)
        kset_clear(&kr->set[s]);
    secret_free(kr->watermark, GW_CRYPTO_KEY_LEN);
    gw_free(kr);
}

bool gw_keyring_has_suite(const struct gw_keyring *kr, enum gw_suite suite)
{
    return kset_of(kr, suite) != NULL;
}

enum gw_suite gw_keyring_suite(const struct gw_keyring *kr)
{
    return kr->suite;
}

int gw_keyring_set_suite(struct gw_keyring *kr, enum gw_suite suite)
{
    if (!suite_ok(suite))
        return GW_EINVAL;
    if (!kset_of(kr, suite))
        return GW_EPRECOND;
    kr->suite = suite;
    return 0;
}

uint32_t gw_keyring_current(const struct gw_keyring *kr, enum gw_suite suite)
{
    const struct kset *k = kset_of(kr, suite);
    return k ? k->current : 0;
}

size_t gw_keyring_kek_count(const struct gw_keyring *kr, enum gw_suite suite)
{
    const struct kset *k = kset_of(kr, suite);
    return k ? k->nkeks : 0;
}

struct gw_keyring_kek gw_keyring_kek_at(const struct gw_keyring *kr, enum gw_suite suite, size_t i)
{
    struct gw_keyring_kek none = {0, false};
    const struct kset *k = kset_of(kr, suite);
    return k && i < k->nkeks ? k->keks[i] : none;
}

const char *gw_keyring_backend_name(const struct gw_keyring *kr)
{
    return kr->ops->name ? kr->ops->name : "?";
}

const uint8_t *gw_keyring_index_key(const struct gw_keyring *kr, enum gw_suite suite)
{
    const struct kset *k = kset_of(kr, suite);
    return k ? k->sec->index : NULL;
}

const uint8_t *gw_keyring_token_key(const struct gw_keyring *kr, enum gw_suite suite)
{
    const struct kset *k = kset_of(kr, suite);
    return k ? k->sec->token : NULL;
}

const uint8_t *gw_keyring_content_key(const struct gw_keyring *kr, enum gw_suite suite)
{
    const struct kset *k = kset_of(kr, suite);
    return k ? k->sec->content : NULL;
}

const uint8_t *gw_keyring_audit_seed(const struct gw_keyring *kr, enum gw_suite suite)
{
    const struct kset *k = kset_of(kr, suite);
    return k && k->sec->have_audit ? k->sec->audit : NULL;
}

const uint8_t *gw_keyring_watermark_key(const struct gw_keyring *kr)
{
    return kr->watermark;
}

void gw_keyring_set_watermark(struct gw_keyring *kr, const uint8_t *watermark_key)
{
    if (!watermark_key)
        return;
    if (!kr->watermark)
        kr->watermark = secret_alloc(GW_CRYPTO_KEY_LEN);
    if (kr->watermark) /* out of memory: left absent, as if the file had none */
        memcpy(kr->watermark, watermark_key, GW_CRYPTO_KEY_LEN);
}

/* The order n of the GB/T 32918.5 recommended curve, big-endian. */
static const uint8_t SM2_N[GW_CRYPTO_KEY_LEN] = {
    0xFF, 0xFF, 0xFF, 0xFE, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
    0x72, 0x03, 0xDF, 0x6B, 0x21, 0xC6, 0x05, 0x2B, 0x53, 0xBB, 0xF4, 0x09, 0x39, 0xD5, 0x41, 0x23};

bool gw_keyring_sm2_scalar_ok(const uint8_t key[GW_CRYPTO_KEY_LEN])
{
    uint8_t max[GW_CRYPTO_KEY_LEN]; /* n - 2 (n is odd and ends in 0x23: no borrow) */
    uint8_t any = 0;
    memcpy(max, SM2_N, sizeof max);
    max[GW_CRYPTO_KEY_LEN - 1] -= 2;
    for (size_t i = 0; i < GW_CRYPTO_KEY_LEN; i++)
        any |= key[i];
    return any != 0 && memcmp(key, max, sizeof max) <= 0;
}

int gw_keyring_wrap(const struct gw_keyring *kr, struct gw_crypto *cx, enum gw_suite suite,
                    uint32_t kek_version, const char *table,
                    const uint8_t record_id[GW_CRYPTO_RECORD_ID_LEN],
                    const uint8_t dek[GW_CRYPTO_DEK_LEN], uint8_t out[GW_CRYPTO_WRAPPED_DEK_LEN])
{
    struct gw_crypto_aad aad;
    if (!kset_of(kr, suite))
        return GW_EPRECOND;
    int rc = gw_crypto_aad_dek(&aad, table, record_id, kek_version);
    if (rc != 0)
        return rc;
    return kr->ops->wrap(kr->be, cx, suite, kek_version, aad.b, aad.n, dek, out);
}

int gw_keyring_unwrap(const struct gw_keyring *kr, struct gw_crypto *cx, uint32_t kek_version,
                      const char *table, const uint8_t record_id[GW_CRYPTO_RECORD_ID_LEN],
                      const uint8_t *in, size_t inlen, uint8_t dek[GW_CRYPTO_DEK_LEN])
{
    struct gw_crypto_aad aad;
    enum gw_suite suite;
    int rc = gw_crypto_sealed_suite(in, inlen, &suite);
    if (rc == 0 && !kset_of(kr, suite))
        rc = GW_EPRECOND;
    if (rc == 0)
        rc = gw_crypto_aad_dek(&aad, table, record_id, kek_version);
    if (rc == 0)
        rc = kr->ops->unwrap(kr->be, cx, suite, kek_version, aad.b, aad.n, in, inlen, dek);
    if (rc != 0)
        OPENSSL_cleanse(dek, GW_CRYPTO_DEK_LEN);
    return rc;
}

int gw_keyring_kek_check(const struct gw_keyring *kr, struct gw_crypto *cx, enum gw_suite suite,
                         uint32_t version, uint8_t out[GW_CRYPTO_MAC_LEN])
{
    const struct kset *k = kset_of(kr, suite);
    if (!k)
        return GW_EPRECOND;
    if (!kr->ops->check)
        return GW_EUNIMPL;
    return kr->ops->check(kr->be, cx, suite, version, out);
}

int gw_keyring_kek_checks(const struct gw_keyring *kr, struct gw_keyring_check **out, size_t *n)
{
    static const enum gw_suite suites[GW_SUITE_COUNT] = {GW_SUITE_AES, GW_SUITE_SM};
    struct gw_keyring_check *v;
    struct gw_crypto *cx;
    size_t total = 0, j = 0;
    int rc = 0;

    *out = NULL;
    *n = 0;
    for (size_t s = 0; s < GW_SUITE_COUNT; s++)
        total += gw_keyring_kek_count(kr, suites[s]);
    if (total == 0)
        return 0;
    if (!(v = gw_calloc(total, sizeof *v)))
        return GW_ENOMEM;
    if (!(cx = gw_crypto_new())) {
        gw_free(v);
        return GW_ENOMEM;
    }
    for (size_t s = 0; s < GW_SUITE_COUNT && rc == 0; s++) {
        const struct kset *k = kset_of(kr, suites[s]);
        for (size_t i = 0; k && i < k->nkeks && rc == 0; i++) {
            if (!k->keks[i].active) /* retired: its bytes are gone, nothing to compare */
                continue;
            v[j].suite = suites[s];
            v[j].version = k->keks[i].version;
            rc = gw_keyring_kek_check(kr, cx, suites[s], k->keks[i].version, v[j].value);
            j++;
        }
    }
    gw_crypto_free(cx);
    if (rc != 0) {
        gw_free(v);
        return rc;
    }
    *out = v;
    *n = j;
    return 0;
}
