/* crypto.c: sealing by suite (AES-256-GCM here, SM4-CTR + HMAC-SM3 in crypto_sm.c), data-key
 * wrapping and HMAC-SHA256/HMAC-SM3 keyed hashes on OpenSSL 3 EVP (AES-256-GCM through the
 * fetched cipher's provider functions, see struct gcm_funcs).
 * Invariants: a value opens only under the suite its algorithm byte names; algorithms are
 * fetched once per struct gw_crypto (the sm ones on first use) and contexts are reused; a cached
 * key is only a copy of one the caller holds, and every key copy and plaintext buffer this file
 * owns is wiped with OPENSSL_cleanse; a failed open never leaves plaintext in the caller's buffer.
 */
#include "crypto.h"

#include <limits.h>
#include <stdbool.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <openssl/core_dispatch.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/provider.h>
#include <openssl/rand.h>

#include "alloc.h"
#include "crypto_sm.h"

/* RAND_bytes costs ~2 us a call whatever its length (fork check, locks), more than sealing a
 * field, so nonces and data keys are drawn from pools refilled in bulk. The pools live in one
 * mapping (a few pages, locked where RLIMIT_MEMLOCK allows) marked MADV_WIPEONFORK: a forked child
 * sees them empty and refills from its own DRBG, so no nonce or data key is ever handed out twice.
 * Without that page there is no pool. */
#define PUB_POOL 24576 /* bytes of public randomness: nonces, record and request ids */
#define DEK_POOL 64    /* data keys; with PUB_POOL the mapping stays 32 KiB (below) */
/* HMAC keys cached per suite: a record's blind indexes (index key) and MACs (content key)
 * alternate between two keys, so two slots key each context once instead of twice a record. */
#define MAC_SLOTS 2
/* Sealing contexts, each keyed with the last key it sealed under: a record's data key is wrapped
 * under the KEK and then seals the fields, so with one context the KEK's key schedule was made
 * again for every record. A key no slot holds replaces the slot keyed last (an empty one first):
 * the one long-lived key (the KEK) keeps its slot while data keys come and go in the other. */
#define GCM_SLOTS 2
struct rand_pool {
    uint32_t pub_left; /* zero after fork (page wiped) */
    uint32_t deks_left;
    uint8_t pub[PUB_POOL];                     /* from RAND_bytes; each byte handed out once */
    uint8_t dek[DEK_POOL * GW_CRYPTO_DEK_LEN]; /* from RAND_priv_bytes; wiped as consumed */
};
/* mlock is all or nothing: the process's locked pages (the keyring's, this pool and the audit
 * writer's) must fit RLIMIT_MEMLOCK, 64 KiB by the old default, for the data keys to stay out of
 * swap: the mapping (a power of two of pages) stays 32 KiB */
_Static_assert(sizeof(struct rand_pool) <= 32768, "the pool's mapping stays 32 KiB");

/* Sealing under AES-256-GCM calls the cipher functions of the provider that EVP_CIPHER_fetch
 * chose, directly (OSSL_PROVIDER_query_operation, provider-cipher(7)): the same implementation
 * and the same calls EVP makes, without EVP's bookkeeping around each. In OpenSSL 3.0
 * EVP_EncryptInit_ex2 asks the context for its IV length through OSSL_PARAM on every call with
 * an IV: ~70 % of a field's init, 24 seals a record, 24 opens a read. */
struct gcm_funcs {
    void *provctx;
    OSSL_FUNC_cipher_newctx_fn *newctx;
    OSSL_FUNC_cipher_freectx_fn *freectx;
    OSSL_FUNC_cipher_encrypt_init_fn *einit;
    OSSL_FUNC_cipher_decrypt_init_fn *dinit;
    OSSL_FUNC_cipher_update_fn *update;
    OSSL_FUNC_cipher_final_fn *final;
    OSSL_FUNC_cipher_get_ctx_params_fn *get_ctx_params;
};

struct gw_crypto {
    struct rand_pool *pool; /* mmap'd page, or NULL: draw from the DRBG each time */
    size_t pool_len;
    EVP_CIPHER *gcm;
    struct gcm_funcs gf; /* gcm's provider functions, for sealing */
    EVP_MAC *hmac;
    void *enc[GCM_SLOTS]; /* the provider's GCM contexts (gf); NULL after gw_crypto_forget */
    void *dec;
    /* keyed hashes by suite - 1 (HMAC-SHA256, HMAC-SM3), MAC_SLOTS keys each */
    EVP_MAC_CTX *mac[GW_SUITE_COUNT][MAC_SLOTS];
    EVP_MAC_CTX *cur; /* the one mac_begin keyed last: update and final use it */
    struct gw_sm *sm; /* the sm suite's sealing; NULL until first used */
    bool enc_keyed[GCM_SLOTS], dec_keyed, mac_keyed[GW_SUITE_COUNT][MAC_SLOTS];
    int enc_newest;                                    /* the sealing slot keyed last */
    unsigned long mac_used[GW_SUITE_COUNT][MAC_SLOTS]; /* mac_clock at last use; 0 unkeyed */
    unsigned long mac_clock;
    uint8_t enc_key[GCM_SLOTS][GW_CRYPTO_KEY_LEN]; /* copy of the key each context is keyed with */
    uint8_t dec_key[GW_CRYPTO_KEY_LEN];
    uint8_t mac_key[GW_SUITE_COUNT][MAC_SLOTS][GW_CRYPTO_KEY_LEN]; /* only 32-byte keys */
};

static const char *const mac_digest[GW_SUITE_COUNT] = {"SHA256", "SM3"};

/* ---- suites ---- */

int gw_suite_valid(int v)
{
    return v == GW_SUITE_AES || v == GW_SUITE_SM;
}

const char *gw_suite_name(enum gw_suite suite)
{
    switch (suite) {
    case GW_SUITE_AES:
        return "aes";
    case GW_SUITE_SM:
        return "sm";
    }
    return "?";
}

int gw_suite_parse(const char *s, enum gw_suite *out)
{
    if (!s)
        return GW_EINVAL;
    if (strcmp(s, "aes") == 0)
        *out = GW_SUITE_AES;
    else if (strcmp(s, "sm") == 0)
        *out = GW_SUITE_SM;
    else
        return GW_EINVAL;
    return 0;
}

int gw_crypto_sealed_suite(const uint8_t *in, size_t inlen, enum gw_suite *out)
{
    if (!in || inlen < GW_CRYPTO_OVERHEAD || in[0] != GW_CRYPTO_FMT_V1 || !gw_suite_valid(in[1]))
        return GW_EDATALOSS;
    *out = (enum gw_suite)in[1];
    return 0;
}

static const char *const bidx_label[GW_BIDX_COUNT] = {"waybill_no", "phone", "id_number"};

/* ---- contexts ---- */

static void drop_contexts(struct gw_crypto *cx)
{
    for (int s = 0; s < GCM_SLOTS; s++) {
        if (cx->enc[s])
            cx->gf.freectx(cx->enc[s]); /* frees wipe the key schedule */
        cx->enc[s] = NULL;
        cx->enc_keyed[s] = false;
    }
    if (cx->dec)
        cx->gf.freectx(cx->dec);
    cx->dec = NULL;
    for (int i = 0; i < GW_SUITE_COUNT; i++)
        for (int j = 0; j < MAC_SLOTS; j++) {
            EVP_MAC_CTX_free(cx->mac[i][j]);
            cx->mac[i][j] = NULL;
            cx->mac_keyed[i][j] = false;
            cx->mac_used[i][j] = 0;
        }
    cx->cur = NULL;
    gw_sm_forget(cx->sm);
    cx->dec_keyed = false;
    OPENSSL_cleanse(cx->enc_key, sizeof cx->enc_key);
    OPENSSL_cleanse(cx->dec_key, sizeof cx->dec_key);
    OPENSSL_cleanse(cx->mac_key, sizeof cx->mac_key);
}

/* True when want is one of names' colon-separated names (case-insensitive, as OpenSSL's). */
static bool has_name(const char *names, const char *want)
{
    size_t n = strlen(want);
    for (const char *p = names;; p++) {
        if (OPENSSL_strncasecmp(p, want, n) == 0 && (p[n] == '\0' || p[n] == ':'))
            return true;
        p = strchr(p, ':');
        if (!p)
            return false;
    }
}

/* Finds the provider functions of cx->gcm (AES-256-GCM in the provider it was fetched from). */
static int gcm_funcs_find(struct gw_crypto *cx)
{
    const OSSL_PROVIDER *prov = EVP_CIPHER_get0_provider(cx->gcm);
    struct gcm_funcs *g = &cx->gf;
    int no_store = 0;
    const OSSL_ALGORITHM *algs =
        prov ? OSSL_PROVIDER_query_operation(prov, OSSL_OP_CIPHER, &no_store) : NULL;

    memset(g, 0, sizeof *g);
    for (const OSSL_ALGORITHM *a = algs; a && a->algorithm_names; a++) {
        if (!has_name(a->algorithm_names, EVP_CIPHER_get0_name(cx->gcm)))
            continue;
        for (const OSSL_DISPATCH *d = a->implementation; d->function_id != 0; d++) {
            switch (d->function_id) {
            case OSSL_FUNC_CIPHER_NEWCTX:
                g->newctx = OSSL_FUNC_cipher_newctx(d);
                break;
            case OSSL_FUNC_CIPHER_FREECTX:
                g->freectx = OSSL_FUNC_cipher_freectx(d);
                break;
            case OSSL_FUNC_CIPHER_ENCRYPT_INIT:
                g->einit = OSSL_FUNC_cipher_encrypt_init(d);
                break;
            case OSSL_FUNC_CIPHER_DECRYPT_INIT:
                g->dinit = OSSL_FUNC_cipher_decrypt_init(d);
                break;
            case OSSL_FUNC_CIPHER_UPDATE:
                g->update = OSSL_FUNC_cipher_update(d);
                break;
            case OSSL_FUNC_CIPHER_FINAL:
                g->final = OSSL_FUNC_cipher_final(d);
                break;
            case OSSL_FUNC_CIPHER_GET_CTX_PARAMS:
                g->get_ctx_params = OSSL_FUNC_cipher_get_ctx_params(d);
                break;
            default:
                break;
            }
        }
        break;
    }
    if (algs)
        OSSL_PROVIDER_unquery_operation(prov, OSSL_OP_CIPHER, algs);
    g->provctx = prov ? OSSL_PROVIDER_get0_provider_ctx(prov) : NULL;
    if (!g->newctx || !g->freectx || !g->einit || !g->dinit || !g->update || !g->final ||
        !g->get_ctx_params) {
        memset(g, 0, sizeof *g);
        return GW_ECRYPTO;
    }
    return 0;
}

/* A provider GCM context in *ctx (made on first use; unkeyed until a key is set). */
static int ensure_gcm(struct gw_crypto *cx, void **ctx, bool *keyed)
{
    if (*ctx)
        return 0;
    *ctx = cx->gf.newctx ? cx->gf.newctx(cx->gf.provctx) : NULL;
    if (!*ctx)
        return GW_ECRYPTO;
    *keyed = false;
    return 0;
}

/* The keyed-hash contexts of suite (index s = suite - 1, checked by the caller). */
static int ensure_mac(struct gw_crypto *cx, int s)
{
    for (int j = 0; j < MAC_SLOTS; j++) {
        if (cx->mac[s][j])
            continue;
        OSSL_PARAM params[2];
        params[0] =
            OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)mac_digest[s], 0);
        params[1] = OSSL_PARAM_construct_end();
        cx->mac[s][j] = EVP_MAC_CTX_new(cx->hmac);
        if (!cx->mac[s][j] || EVP_MAC_CTX_set_params(cx->mac[s][j], params) != 1) {
            EVP_MAC_CTX_free(cx->mac[s][j]);
            cx->mac[s][j] = NULL;
            ERR_clear_error();
            return GW_ECRYPTO;
        }
        cx->mac_keyed[s][j] = false;
        cx->mac_used[s][j] = 0;
    }
    return 0;
}

static int ensure_sm(struct gw_crypto *cx)
{
    if (!cx->sm)
        cx->sm = gw_sm_new();
    return cx->sm ? 0 : GW_ECRYPTO;
}

static void pool_new(struct gw_crypto *cx)
{
    long pg = sysconf(_SC_PAGESIZE);
    size_t len = pg > 0 ? (size_t)pg : 4096;
    while (len < sizeof(struct rand_pool))
        len *= 2;
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return;
#ifdef MADV_WIPEONFORK
    if (madvise(p, len, MADV_WIPEONFORK) == 0) {
        (void)madvise(p, len, MADV_DONTDUMP);
        (void)mlock(p, len); /* best effort: keep pooled data keys out of swap */
        cx->pool = p;
        cx->pool_len = len;
        return;
    }
#endif
    munmap(p, len);
}

static void pool_free(struct gw_crypto *cx)
{
    if (!cx->pool)
        return;
    OPENSSL_cleanse(cx->pool, cx->pool_len);
    munlock(cx->pool, cx->pool_len);
    munmap(cx->pool, cx->pool_len);
    cx->pool = NULL;
}

/* n bytes of public randomness, each pool byte handed out once; n <= PUB_POOL. */
static int next_pub(struct gw_crypto *cx, uint8_t *out, size_t n)
{
    struct rand_pool *rp = cx ? cx->pool : NULL;
    if (!rp || n > PUB_POOL)
        return RAND_bytes(out, (int)n) == 1 ? 0 : GW_ECRYPTO;
    if (rp->pub_left < n || rp->pub_left > PUB_POOL) {
        if (RAND_bytes(rp->pub, sizeof rp->pub) != 1)
            return GW_ECRYPTO;
        rp->pub_left = PUB_POOL;
    }
    rp->pub_left -= (uint32_t)n;
    memcpy(out, rp->pub + rp->pub_left, n);
    return 0;
}

static int next_nonce(struct gw_crypto *cx, uint8_t nonce[GW_CRYPTO_NONCE_LEN])
{
    return next_pub(cx, nonce, GW_CRYPTO_NONCE_LEN);
}

int gw_crypto_random(struct gw_crypto *cx, uint8_t *out, size_t n)
{
    if (!out && n)
        return GW_EINVAL;
    if (n > INT_MAX)
        return GW_ETOOBIG;
    return n ? next_pub(cx, out, n) : 0;
}

static int next_dek(struct gw_crypto *cx, uint8_t dek[GW_CRYPTO_DEK_LEN])
{
    struct rand_pool *rp = cx ? cx->pool : NULL;
    if (!rp)
        return RAND_priv_bytes(dek, GW_CRYPTO_DEK_LEN) == 1 ? 0 : GW_ECRYPTO;
    if (rp->deks_left == 0 || rp->deks_left > DEK_POOL) {
        if (RAND_priv_bytes(rp->dek, sizeof rp->dek) != 1)
            return GW_ECRYPTO;
        rp->deks_left = DEK_POOL;
    }
    rp->deks_left--;
    uint8_t *src = rp->dek + (size_t)rp->deks_left * GW_CRYPTO_DEK_LEN;
    memcpy(dek, src, GW_CRYPTO_DEK_LEN);
    OPENSSL_cleanse(src, GW_CRYPTO_DEK_LEN);
    return 0;
}

struct gw_crypto *gw_crypto_new(void)
{
    struct gw_crypto *cx = gw_calloc(1, sizeof *cx);
    if (!cx)
        return NULL;
    pool_new(cx);
    cx->gcm = EVP_CIPHER_fetch(NULL, "AES-256-GCM", NULL);
    cx->hmac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    if (!cx->gcm || !cx->hmac || gcm_funcs_find(cx) != 0 ||
        ensure_gcm(cx, &cx->enc[0], &cx->enc_keyed[0]) != 0 ||
        ensure_gcm(cx, &cx->dec, &cx->dec_keyed) != 0 || ensure_mac(cx, GW_SUITE_AES - 1) != 0) {
        ERR_clear_error();
        gw_crypto_free(cx);
        return NULL;
    }
    return cx;
}

void gw_crypto_free(struct gw_crypto *cx)
{
    if (!cx)
        return;
    drop_contexts(cx);
    gw_sm_free(cx->sm);
    pool_free(cx);
    EVP_CIPHER_free(cx->gcm);
    EVP_MAC_free(cx->hmac);
    gw_free_wipe(cx, sizeof *cx);
}

void gw_crypto_forget(struct gw_crypto *cx)
{
    if (!cx)
        return;
    drop_contexts(cx);
    if (cx->pool) {
        OPENSSL_cleanse(cx->pool->dek, sizeof cx->pool->dek);
        cx->pool->deks_left = 0;
    }
}

/* Big-endian lengths (AAD, content MAC items): one store each instead of a byte loop. */
static uint8_t *put_be32(uint8_t *p, uint32_t v)
{
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    v = __builtin_bswap32(v);
#endif
    memcpy(p, &v, 4);
    return p + 4;
}

static uint8_t *put_be64(uint8_t *p, uint64_t v)
{
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    v = __builtin_bswap64(v);
#endif
    memcpy(p, &v, 8);
    return p + 8;
}

/* ---- AAD ---- */

static int put_bytes(struct gw_crypto_aad *a, const void *p, size_t n)
{
    if (n > GW_CRYPTO_AAD_MAX || a->n + 4 + n > GW_CRYPTO_AAD_MAX)
        return GW_EINVAL;
    a->b[a->n++] = (uint8_t)(n >> 24);
    a->b[a->n++] = (uint8_t)(n >> 16);
    a->b[a->n++] = (uint8_t)(n >> 8);
    a->b[a->n++] = (uint8_t)n;
    if (n)
        memcpy(a->b + a->n, p, n);
    a->n += n;
    return 0;
}

static int put_name_n(struct gw_crypto_aad *a, const char *s, size_t n)
{
    if (!s || n == 0 || n > GW_CRYPTO_NAME_MAX)
        return GW_EINVAL;
    return put_bytes(a, s, n);
}

static int put_name(struct gw_crypto_aad *a, const char *s)
{
    return put_name_n(a, s, s ? strnlen(s, GW_CRYPTO_NAME_MAX + 1) : 0);
}

static int put_u32(struct gw_crypto_aad *a, uint32_t v)
{
    uint8_t b[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
    return put_bytes(a, b, sizeof b);
}

int gw_crypto_aad_field(struct gw_crypto_aad *a, const char *table, const char *column,
                        const uint8_t record_id[GW_CRYPTO_RECORD_ID_LEN], uint32_t dek_version)
{
    return gw_crypto_aad_field_n(a, table, table ? strnlen(table, GW_CRYPTO_NAME_MAX + 1) : 0,
                                 column, column ? strnlen(column, GW_CRYPTO_NAME_MAX + 1) : 0,
                                 record_id, dek_version);
}

int gw_crypto_aad_field_n(struct gw_crypto_aad *a, const char *table, size_t table_len,
                          const char *column, size_t column_len,
                          const uint8_t record_id[GW_CRYPTO_RECORD_ID_LEN], uint32_t dek_version)
{
    static const char label[] = "waygate-field-v1";
    a->n = 0;
    int rc = 0;
    if (!record_id || (rc = put_bytes(a, label, sizeof label - 1)) != 0 ||
        (rc = put_name_n(a, table, table_len)) != 0 ||
        (rc = put_name_n(a, column, column_len)) != 0 ||
        (rc = put_bytes(a, record_id, GW_CRYPTO_RECORD_ID_LEN)) != 0 ||
        (rc = put_u32(a, dek_version)) != 0) {
        a->n = 0;
        return GW_EINVAL;
    }
    return 0;
}

int gw_crypto_aad_field_other(const struct gw_crypto_aad *b, size_t b_column_len,
                              struct gw_crypto_aad *a, const char *column, size_t column_len)
{
    const size_t tail = 4 + GW_CRYPTO_RECORD_ID_LEN + 4 + 4; /* record id, dek_version */
    a->n = 0;
    if (!b || !column || column_len == 0 || column_len > GW_CRYPTO_NAME_MAX ||
        b_column_len > GW_CRYPTO_NAME_MAX || b->n < tail + 4 + b_column_len ||
        b->n - tail - 4 - b_column_len + 4 + column_len + tail > GW_CRYPTO_AAD_MAX)
        return GW_EINVAL;
    size_t head = b->n - tail - 4 - b_column_len; /* label, table */
    const uint8_t *len = b->b + head;             /* b's column: its length, then its name */
    if (((uint32_t)len[0] << 24 | (uint32_t)len[1] << 16 | (uint32_t)len[2] << 8 | len[3]) !=
        b_column_len)
        return GW_EINVAL; /* b_column_len is not b's: the AAD would silently differ */
    memcpy(a->b, b->b, head);
    uint8_t *o = put_be32(a->b + head, (uint32_t)column_len);
    memcpy(o, column, column_len);
    o += column_len;
    memcpy(o, b->b + b->n - tail, tail);
    a->n = (size_t)(o - a->b) + tail;
    return 0;
}

int gw_crypto_aad_dek(struct gw_crypto_aad *a, const char *table,
                      const uint8_t record_id[GW_CRYPTO_RECORD_ID_LEN], uint32_t kek_version)
{
    static const char label[] = "waygate-dek-v1";
    a->n = 0;
    int rc = 0;
    if (!record_id || (rc = put_bytes(a, label, sizeof label - 1)) != 0 ||
        (rc = put_name(a, table)) != 0 ||
        (rc = put_bytes(a, record_id, GW_CRYPTO_RECORD_ID_LEN)) != 0 ||
        (rc = put_u32(a, kek_version)) != 0) {
        a->n = 0;
        return GW_EINVAL;
    }
    return 0;
}

/* ---- AES-256-GCM ---- */

/* Feeds hdr | aad as AAD of the GCM context c (a sealing slot or cx->dec) in one update when it
 * fits on the stack (GHASH pads each update's tail, so one call is cheaper than two). */
static int aad_update(struct gw_crypto *cx, void *c, const uint8_t *p, size_t n)
{
    size_t outl = 0;
    return cx->gf.update(c, NULL, &outl, n, p, n) == 1 ? 0 : GW_ECRYPTO;
}

static int gcm_aad(struct gw_crypto *cx, void *c, const uint8_t *hdr, size_t hdrlen,
                   const uint8_t *aad, size_t aadlen)
{
    uint8_t buf[GW_CRYPTO_HDR_LEN + GW_CRYPTO_AAD_MAX];
    if (hdrlen && aadlen && hdrlen + aadlen <= sizeof buf) {
        memcpy(buf, hdr, hdrlen);
        memcpy(buf + hdrlen, aad, aadlen);
        return aad_update(cx, c, buf, hdrlen + aadlen);
    }
    if (hdrlen && aad_update(cx, c, hdr, hdrlen) != 0)
        return GW_ECRYPTO;
    if (aadlen && aad_update(cx, c, aad, aadlen) != 0)
        return GW_ECRYPTO;
    return 0;
}

/* Encrypts with AAD = hdr | aad (hdr may be NULL). */
static int gcm_seal(struct gw_crypto *cx, const uint8_t *key, const uint8_t *nonce,
                    const uint8_t *hdr, size_t hdrlen, const uint8_t *aad, size_t aadlen,
                    const uint8_t *pt, size_t ptlen, uint8_t *ct, uint8_t *tag)
{
    size_t outl = 0;
    int s;
    bool same = false;
    if (ptlen > GW_CRYPTO_MAX_PT || aadlen > GW_CRYPTO_MAX_PT)
        return GW_ETOOBIG;
    /* the slot keyed last first: a record's fields follow one another under its data key */
    for (int k = 0; k < GCM_SLOTS && !same; k++) {
        s = (cx->enc_newest + k) % GCM_SLOTS;
        same = cx->enc[s] && cx->enc_keyed[s] && gw_crypto_key_eq(cx->enc_key[s], key);
    }
    if (!same) {
        for (s = 0; s < GCM_SLOTS && cx->enc[s] && cx->enc_keyed[s]; s++)
            ;
        if (s == GCM_SLOTS)
            s = cx->enc_newest;
    }
    if (ensure_gcm(cx, &cx->enc[s], &cx->enc_keyed[s]) != 0)
        goto fail;
    void *c = cx->enc[s];
    /* the calls and arguments EVP_EncryptInit_ex2/Update/Final_ex and get_params would make */
    if (cx->gf.einit(c, same ? NULL : key, same ? 0 : GW_CRYPTO_KEY_LEN, nonce, GW_CRYPTO_NONCE_LEN,
                     NULL) != 1)
        goto fail;
    if (!same) {
        memcpy(cx->enc_key[s], key, GW_CRYPTO_KEY_LEN);
        cx->enc_keyed[s] = true;
        cx->enc_newest = s;
    }
    if (gcm_aad(cx, c, hdr, hdrlen, aad, aadlen) != 0)
        goto fail;
    if (ptlen && (cx->gf.update(c, ct, &outl, ptlen, pt, ptlen) != 1 || outl != ptlen))
        goto fail;
    if (cx->gf.final(c, ct + ptlen, &outl, 0) != 1 || outl != 0)
        goto fail;
    OSSL_PARAM tp[2] = {
        OSSL_PARAM_construct_octet_string(OSSL_CIPHER_PARAM_AEAD_TAG, tag, GW_CRYPTO_TAG_LEN),
        OSSL_PARAM_construct_end()};
    if (cx->gf.get_ctx_params(c, tp) != 1)
        goto fail;
    return 0;
fail:
    ERR_clear_error();
    cx->enc_keyed[s] = false;
    OPENSSL_cleanse(cx->enc_key[s], sizeof cx->enc_key[s]);
    if (ptlen)
        OPENSSL_cleanse(ct, ptlen);
    return GW_ECRYPTO;
}

/* Decrypts with AAD = hdr | aad; on any failure pt is wiped. */
static int gcm_open(struct gw_crypto *cx, const uint8_t *key, const uint8_t *nonce,
                    const uint8_t *hdr, size_t hdrlen, const uint8_t *aad, size_t aadlen,
                    const uint8_t *ct, size_t ctlen, const uint8_t *tag, uint8_t *pt)
{
    size_t outl = 0;
    int rc = GW_ECRYPTO;
    uint8_t tagbuf[GW_CRYPTO_TAG_LEN];
    if (ctlen > GW_CRYPTO_MAX_PT || aadlen > GW_CRYPTO_MAX_PT)
        return GW_EDATALOSS;
    memcpy(tagbuf, tag, sizeof tagbuf); /* OSSL_PARAM takes a non-const pointer */
    if (ensure_gcm(cx, &cx->dec, &cx->dec_keyed) != 0)
        goto fail;
    bool same = cx->dec_keyed && gw_crypto_key_eq(cx->dec_key, key);
    /* the expected tag goes in with the nonce (one parameter pass instead of a ctrl call) */
    OSSL_PARAM tp[2] = {
        OSSL_PARAM_construct_octet_string(OSSL_CIPHER_PARAM_AEAD_TAG, tagbuf, GW_CRYPTO_TAG_LEN),
        OSSL_PARAM_construct_end()};
    if (cx->gf.dinit(cx->dec, same ? NULL : key, same ? 0 : GW_CRYPTO_KEY_LEN, nonce,
                     GW_CRYPTO_NONCE_LEN, tp) != 1)
        goto fail;
    if (!same) {
        memcpy(cx->dec_key, key, GW_CRYPTO_KEY_LEN);
        cx->dec_keyed = true;
    }
    if (gcm_aad(cx, cx->dec, hdr, hdrlen, aad, aadlen) != 0)
        goto fail;
    if (ctlen && (cx->gf.update(cx->dec, pt, &outl, ctlen, ct, ctlen) != 1 || outl != ctlen))
        goto fail;
    if (cx->gf.final(cx->dec, pt + ctlen, &outl, 0) != 1) {
        rc = GW_EDATALOSS; /* the tag did not verify */
        goto fail;
    }
    return 0;
fail:
    ERR_clear_error();
    if (rc != GW_EDATALOSS) {
        cx->dec_keyed = false;
        OPENSSL_cleanse(cx->dec_key, sizeof cx->dec_key);
    }
    if (ctlen)
        OPENSSL_cleanse(pt, ctlen);
    return rc;
}

int gw_crypto_gcm_seal_raw(struct gw_crypto *cx, const uint8_t key[GW_CRYPTO_KEY_LEN],
                           const uint8_t nonce[GW_CRYPTO_NONCE_LEN], const uint8_t *aad,
                           size_t aadlen, const uint8_t *pt, size_t ptlen, uint8_t *ct,
                           uint8_t tag[GW_CRYPTO_TAG_LEN])
{
    return gcm_seal(cx, key, nonce, NULL, 0, aad, aadlen, pt, ptlen, ct, tag);
}

int gw_crypto_gcm_open_raw(struct gw_crypto *cx, const uint8_t key[GW_CRYPTO_KEY_LEN],
                           const uint8_t nonce[GW_CRYPTO_NONCE_LEN], const uint8_t *aad,
                           size_t aadlen, const uint8_t *ct, size_t ctlen,
                           const uint8_t tag[GW_CRYPTO_TAG_LEN], uint8_t *pt)
{
    return gcm_open(cx, key, nonce, NULL, 0, aad, aadlen, ct, ctlen, tag, pt);
}

int gw_crypto_seal_into(struct gw_crypto *cx, enum gw_suite suite,
                        const uint8_t key[GW_CRYPTO_KEY_LEN], const uint8_t *aad, size_t aadlen,
                        const uint8_t *pt, size_t ptlen, uint8_t *out, size_t outcap,
                        size_t *outlen)
{
    *outlen = 0;
    if (!gw_suite_valid((int)suite))
        return GW_EINVAL;
    if (ptlen > GW_CRYPTO_MAX_PT)
        return GW_ETOOBIG;
    if (outcap < GW_CRYPTO_SEALED_LEN(ptlen))
        return GW_EINVAL;
    out[0] = GW_CRYPTO_FMT_V1;
    out[1] = (uint8_t)suite;
    uint8_t *nonce = out + GW_CRYPTO_HDR_LEN;
    if (next_nonce(cx, nonce) != 0) {
        ERR_clear_error();
        return GW_ECRYPTO;
    }
    uint8_t *ct = nonce + GW_CRYPTO_NONCE_LEN;
    int rc;
    if (suite == GW_SUITE_SM)
        rc = ensure_sm(cx) != 0
                 ? GW_ECRYPTO
                 : gw_sm_seal(cx->sm, key, out, aad, aadlen, pt, ptlen, ct, ct + ptlen);
    else
        rc = gcm_seal(cx, key, nonce, out, GW_CRYPTO_HDR_LEN, aad, aadlen, pt, ptlen, ct,
                      ct + ptlen);
    if (rc != 0)
        return rc;
    *outlen = GW_CRYPTO_SEALED_LEN(ptlen);
    return 0;
}

int gw_crypto_seal(struct gw_crypto *cx, enum gw_suite suite, const uint8_t key[GW_CRYPTO_KEY_LEN],
                   const uint8_t *aad, size_t aadlen, const uint8_t *pt, size_t ptlen,
                   struct gw_bytes *out)
{
    out->p = NULL;
    out->n = 0;
    if (ptlen > GW_CRYPTO_MAX_PT)
        return GW_ETOOBIG;
    size_t cap = GW_CRYPTO_SEALED_LEN(ptlen), n = 0;
    uint8_t *buf = gw_malloc(cap);
    if (!buf)
        return GW_ENOMEM;
    int rc = gw_crypto_seal_into(cx, suite, key, aad, aadlen, pt, ptlen, buf, cap, &n);
    if (rc != 0) {
        gw_free(buf);
        return rc;
    }
    out->p = buf;
    out->n = n;
    return 0;
}

int gw_crypto_open_into(struct gw_crypto *cx, enum gw_suite suite,
                        const uint8_t key[GW_CRYPTO_KEY_LEN], const uint8_t *aad, size_t aadlen,
                        const uint8_t *in, size_t inlen, uint8_t *buf, size_t cap, size_t *outlen)
{
    *outlen = 0;
    if (!gw_suite_valid((int)suite))
        return GW_EINVAL;
    if (!in || inlen < GW_CRYPTO_OVERHEAD || in[0] != GW_CRYPTO_FMT_V1 || in[1] != (uint8_t)suite)
        return GW_EDATALOSS;
    size_t ctlen = inlen - GW_CRYPTO_OVERHEAD;
    if (ctlen > GW_CRYPTO_MAX_PT)
        return GW_EDATALOSS;
    if (cap < ctlen)
        return GW_EINVAL;
    const uint8_t *nonce = in + GW_CRYPTO_HDR_LEN;
    const uint8_t *ct = nonce + GW_CRYPTO_NONCE_LEN;
    int rc;
    if (suite == GW_SUITE_SM)
        rc = ensure_sm(cx) != 0
                 ? GW_ECRYPTO
                 : gw_sm_open(cx->sm, key, in, aad, aadlen, ct, ctlen, ct + ctlen, buf);
    else
        rc = gcm_open(cx, key, nonce, in, GW_CRYPTO_HDR_LEN, aad, aadlen, ct, ctlen, ct + ctlen,
                      buf);
    if (rc != 0)
        return rc;
    *outlen = ctlen;
    return 0;
}

int gw_crypto_open(struct gw_crypto *cx, enum gw_suite suite, const uint8_t key[GW_CRYPTO_KEY_LEN],
                   const uint8_t *aad, size_t aadlen, const uint8_t *in, size_t inlen,
                   struct gw_bytes *out)
{
    out->p = NULL;
    out->n = 0;
    if (!in || inlen < GW_CRYPTO_OVERHEAD || inlen - GW_CRYPTO_OVERHEAD > GW_CRYPTO_MAX_PT)
        return GW_EDATALOSS;
    size_t cap = inlen - GW_CRYPTO_OVERHEAD, n = 0;
    uint8_t *buf = gw_malloc(cap + 1);
    if (!buf)
        return GW_ENOMEM;
    int rc = gw_crypto_open_into(cx, suite, key, aad, aadlen, in, inlen, buf, cap, &n);
    if (rc != 0) {
        gw_free_wipe(buf, cap + 1);
        return rc;
    }
    buf[n] = 0;
    out->p = buf;
    out->n = n;
    return 0;
}

/* ---- data keys ---- */

int gw_crypto_dek_new(struct gw_crypto *cx, uint8_t dek[GW_CRYPTO_DEK_LEN])
{
    if (next_dek(cx, dek) != 0) {
        ERR_clear_error();
        OPENSSL_cleanse(dek, GW_CRYPTO_DEK_LEN);
        return GW_ECRYPTO;
    }
    return 0;
}

int gw_crypto_dek_wrap(struct gw_crypto *cx, enum gw_suite suite,
                       const uint8_t kek[GW_CRYPTO_KEY_LEN], uint32_t kek_version,
                       const char *table, const uint8_t record_id[GW_CRYPTO_RECORD_ID_LEN],
                       const uint8_t dek[GW_CRYPTO_DEK_LEN], uint8_t out[GW_CRYPTO_WRAPPED_DEK_LEN])
{
    struct gw_crypto_aad aad;
    size_t n = 0;
    int rc = gw_crypto_aad_dek(&aad, table, record_id, kek_version);
    if (rc != 0)
        return rc;
    return gw_crypto_seal_into(cx, suite, kek, aad.b, aad.n, dek, GW_CRYPTO_DEK_LEN, out,
                               GW_CRYPTO_WRAPPED_DEK_LEN, &n);
}

int gw_crypto_dek_unwrap(struct gw_crypto *cx, enum gw_suite suite,
                         const uint8_t kek[GW_CRYPTO_KEY_LEN], uint32_t kek_version,
                         const char *table, const uint8_t record_id[GW_CRYPTO_RECORD_ID_LEN],
                         const uint8_t *in, size_t inlen, uint8_t dek[GW_CRYPTO_DEK_LEN])
{
    struct gw_crypto_aad aad;
    size_t n = 0;
    int rc = gw_crypto_aad_dek(&aad, table, record_id, kek_version);
    if (rc != 0)
        return rc;
    if (inlen != GW_CRYPTO_WRAPPED_DEK_LEN)
        return GW_EDATALOSS;
    rc = gw_crypto_open_into(cx, suite, kek, aad.b, aad.n, in, inlen, dek, GW_CRYPTO_DEK_LEN, &n);
    if (rc == 0 && n != GW_CRYPTO_DEK_LEN)
        rc = GW_EDATALOSS;
    if (rc != 0)
        OPENSSL_cleanse(dek, GW_CRYPTO_DEK_LEN);
    return rc;
}

/* ---- HMAC-SHA256 / HMAC-SM3 ---- */

/* Keys one of the suite's HMAC contexts and makes it the current one (cx->cur) for update and
 * final: the slot already keyed with key (every slot compared in constant time), else the least
 * recently used one. GW_EINVAL for an unknown suite. */
static int mac_begin(struct gw_crypto *cx, enum gw_suite suite, const uint8_t *key, size_t keylen)
{
    if (!gw_suite_valid((int)suite))
        return GW_EINVAL;
    int s = (int)suite - 1;
    if (ensure_mac(cx, s) != 0)
        return GW_ECRYPTO;
    bool cacheable = keylen == GW_CRYPTO_KEY_LEN, same = false;
    int j = 0;
    for (int k = 0; k < MAC_SLOTS; k++) {
        bool eq = cacheable && cx->mac_keyed[s][k] && gw_crypto_key_eq(cx->mac_key[s][k], key);
        if (eq) {
            j = k;
            same = true;
        } else if (!same && cx->mac_used[s][k] < cx->mac_used[s][j]) {
            j = k;
        }
    }
    cx->cur = cx->mac[s][j];
    /* A NULL key re-initialises the HMAC with the key it already holds. */
    if (EVP_MAC_init(cx->cur, same ? NULL : key, same ? 0 : keylen, NULL) != 1) {
        ERR_clear_error();
        cx->mac_keyed[s][j] = false;
        cx->mac_used[s][j] = 0;
        OPENSSL_cleanse(cx->mac_key[s][j], sizeof cx->mac_key[s][j]);
        return GW_ECRYPTO;
    }
    if (!same) {
        cx->mac_keyed[s][j] = cacheable;
        if (cacheable)
            memcpy(cx->mac_key[s][j], key, GW_CRYPTO_KEY_LEN);
        else
            OPENSSL_cleanse(cx->mac_key[s][j], sizeof cx->mac_key[s][j]);
    }
    cx->mac_used[s][j] = cacheable ? ++cx->mac_clock : 0;
    return 0;
}

static int mac_update(struct gw_crypto *cx, const void *p, size_t n)
{
    if (n == 0)
        return 0;
    if (EVP_MAC_update(cx->cur, p, n) != 1) {
        ERR_clear_error();
        return GW_ECRYPTO;
    }
    return 0;
}

static int mac_final(struct gw_crypto *cx, uint8_t out[GW_CRYPTO_MAC_LEN])
{
    size_t outl = 0;
    if (EVP_MAC_final(cx->cur, out, &outl, GW_CRYPTO_MAC_LEN) != 1 || outl != GW_CRYPTO_MAC_LEN) {
        ERR_clear_error();
        OPENSSL_cleanse(out, GW_CRYPTO_MAC_LEN);
        return GW_ECRYPTO;
    }
    return 0;
}

int gw_crypto_hmac(struct gw_crypto *cx, enum gw_suite suite, const uint8_t *key, size_t keylen,
                   const uint8_t *data, size_t datalen, uint8_t out[GW_CRYPTO_MAC_LEN])
{
    int rc = mac_begin(cx, suite, key, keylen);
    if (rc == 0)
        rc = mac_update(cx, data, datalen);
    if (rc == 0)
        rc = mac_final(cx, out);
    return rc;
}

/* HMAC(key, label | 0x00 | value), in one update when it fits on the stack (each update is a
 * provider dispatch); the stack copy holds the value and is wiped. */
static int mac_labelled(struct gw_crypto *cx, enum gw_suite suite, const uint8_t *key,
                        const char *label, const uint8_t *value, size_t len,
                        uint8_t out[GW_CRYPTO_MAC_LEN])
{
    static const uint8_t zero = 0;
    uint8_t buf[160];
    size_t ll = strlen(label);
    int rc = mac_begin(cx, suite, key, GW_CRYPTO_KEY_LEN);
    if (rc == 0 && ll < sizeof buf && len < sizeof buf - ll) {
        memcpy(buf, label, ll);
        buf[ll] = 0;
        if (len)
            memcpy(buf + ll + 1, value, len);
        rc = mac_update(cx, buf, ll + 1 + len);
        OPENSSL_cleanse(buf, ll + 1 + len);
    } else {
        if (rc == 0)
            rc = mac_update(cx, label, ll);
        if (rc == 0)
            rc = mac_update(cx, &zero, 1);
        if (rc == 0)
            rc = mac_update(cx, value, len);
    }
    if (rc == 0)
        rc = mac_final(cx, out);
    return rc;
}

int gw_crypto_blind_index(struct gw_crypto *cx, enum gw_suite suite,
                          const uint8_t key[GW_CRYPTO_KEY_LEN], enum gw_bidx purpose,
                          const uint8_t *value, size_t len, uint8_t out[GW_CRYPTO_BIDX_LEN])
{
    uint8_t mac[GW_CRYPTO_MAC_LEN];
    if ((unsigned)purpose >= GW_BIDX_COUNT || (!value && len))
        return GW_EINVAL;
    int rc = mac_labelled(cx, suite, key, bidx_label[purpose], value, len, mac);
    if (rc == 0)
        memcpy(out, mac, GW_CRYPTO_BIDX_LEN);
    OPENSSL_cleanse(mac, sizeof mac);
    return rc;
}

int gw_crypto_token(struct gw_crypto *cx, enum gw_suite suite, const uint8_t key[GW_CRYPTO_KEY_LEN],
                    const char *field, const uint8_t *value, size_t len,
                    char out[GW_CRYPTO_TOKEN_LEN + 1])
{
    static const char b32[] = "abcdefghijklmnopqrstuvwxyz234567";
    uint8_t mac[GW_CRYPTO_MAC_LEN];
    out[0] = 0;
    if (!field || !field[0] || (!value && len))
        return GW_EINVAL;
    int rc = mac_labelled(cx, suite, key, field, value, len, mac);
    if (rc != 0)
        return rc;
    /* base32 of mac[0..12): 96 bits -> 20 characters, the last one padded with 4 zero bits */
    memcpy(out, "tok_", 4);
    size_t o = 4;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < 12; i++) {
        acc = (acc << 8) | mac[i];
        bits += 8;
        while (bits >= 5) {
            out[o++] = b32[(acc >> (bits - 5)) & 31];
            bits -= 5;
        }
    }
    if (bits > 0)
        out[o++] = b32[(acc << (5 - bits)) & 31];
    out[o] = 0;
    OPENSSL_cleanse(mac, sizeof mac);
    return 0;
}

/* The content MAC's encoding goes through one stack buffer into as few EVP_MAC_update calls as
 * possible (each is a provider dispatch); an item that fits is written whole, with its header
 * bytes stored directly (no call per piece: ~70 items a record, two MACs). */
struct macbuf {
    struct gw_crypto *cx;
    size_t n;
    size_t hi; /* the most of b ever written: what the wipe covers */
    int rc;
    uint8_t b[4096];
};

static void mb_flush(struct macbuf *m)
{
    if (m->n > m->hi)
        m->hi = m->n;
    if (m->rc == 0)
        m->rc = mac_update(m->cx, m->b, m->n);
    m->n = 0;
}

static void mb_put(struct macbuf *m, const void *p, size_t n)
{
    if (m->rc != 0 || n == 0)
        return;
    if (m->n + n > sizeof m->b) {
        mb_flush(m);
        if (n > sizeof m->b) {
            if (m->rc == 0)
                m->rc = mac_update(m->cx, p, n);
            return;
        }
    }
    memcpy(m->b + m->n, p, n);
    m->n += n;
}

static uint8_t *put_be(uint8_t *p, uint64_t v, int bytes)
{
    for (int k = 0; k < bytes; k++)
        p[k] = (uint8_t)(v >> (8 * (bytes - 1 - k)));
    return p + bytes;
}

static void mb_be(struct macbuf *m, uint64_t v, int bytes)
{
    uint8_t b[8];
    mb_put(m, b, (size_t)(put_be(b, v, bytes) - b));
}

/* One item: be32(len(name)) | name | present (1 byte) | [be64(len) | value]. */
static void mb_item(struct macbuf *m, const char *name, size_t nl, const uint8_t *p, size_t n)
{
    size_t whole = 4 + nl + 1 + (p ? 8 + n : 0);
    if (m->rc == 0 && whole <= sizeof m->b - m->n) {
        uint8_t *o = put_be32(m->b + m->n, (uint32_t)nl); /* nl <= UINT32_MAX: checked */
        memcpy(o, name, nl);
        o += nl;
        *o++ = p ? 1 : 0;
        if (p) {
            o = put_be64(o, n);
            if (n)
                memcpy(o, p, n);
        }
        m->n += whole;
        return;
    }
    uint8_t present = p ? 1 : 0;
    mb_be(m, nl, 4);
    mb_put(m, name, nl);
    mb_put(m, &present, 1);
    if (present) {
        mb_be(m, n, 8);
        mb_put(m, p, n);
    }
}

static bool items_valid(const struct gw_crypto_item *items, size_t count)
{
    if (!items && count)
        return false;
    for (size_t i = 0; i < count; i++)
        if (!items[i].name || (!items[i].p && items[i].n))
            return false;
    return true;
}

static void mb_items(struct macbuf *m, const struct gw_crypto_item *items, size_t count)
{
    for (size_t i = 0; i < count && m->rc == 0; i++) {
        size_t nl = items[i].name_len ? items[i].name_len : strlen(items[i].name);
        if (nl > UINT32_MAX)
            m->rc = GW_EINVAL;
        else
            mb_item(m, items[i].name, nl, items[i].p, items[i].n);
    }
}

int gw_crypto_items_encode(const struct gw_crypto_item *items, size_t count, uint8_t *out,
                           size_t cap, size_t *len)
{
    size_t n = 0;

    *len = 0;
    if (!items_valid(items, count) || (!out && cap))
        return GW_EINVAL;
    for (size_t i = 0; i < count; i++) {
        size_t nl = items[i].name_len ? items[i].name_len : strlen(items[i].name);
        const uint8_t *p = items[i].p;
        if (nl > UINT32_MAX || cap - n < 4 + 1 || cap - n - 5 < nl ||
            (p && (cap - n - 5 - nl < 8 || cap - n - 13 - nl < items[i].n)))
            return GW_EINVAL;
        uint8_t *o = put_be32(out + n, (uint32_t)nl);
        memcpy(o, items[i].name, nl);
        o += nl;
        *o++ = p ? 1 : 0;
        if (p) {
            o = put_be64(o, items[i].n);
            if (items[i].n)
                memcpy(o, p, items[i].n);
            o += items[i].n;
        }
        n = (size_t)(o - out);
    }
    *len = n;
    return 0;
}

int gw_crypto_content_mac_enc(struct gw_crypto *cx, enum gw_suite suite,
                              const uint8_t key[GW_CRYPTO_KEY_LEN],
                              const struct gw_crypto_item *head, size_t nhead, const uint8_t *enc,
                              size_t enclen, size_t nenc, const struct gw_crypto_item *tail,
                              size_t ntail, uint8_t out[GW_CRYPTO_MAC_LEN])
{
    static const char label[] = "waygate-content-v1";
    struct macbuf m;
    if (nhead > UINT32_MAX || nenc > UINT32_MAX - nhead || ntail > UINT32_MAX - nhead - nenc ||
        !items_valid(head, nhead) || !items_valid(tail, ntail) || (!enc && enclen) ||
        (nenc == 0) != (enclen == 0))
        return GW_EINVAL;
    m.cx = cx;
    m.n = m.hi = 0;
    m.rc = mac_begin(cx, suite, key, GW_CRYPTO_KEY_LEN);
    mb_put(&m, label, sizeof label - 1);
    mb_be(&m, nhead + nenc + ntail, 4);
    mb_items(&m, head, nhead);
    mb_put(&m, enc, enclen);
    mb_items(&m, tail, ntail);
    mb_flush(&m);
    if (m.rc == 0)
        m.rc = mac_final(cx, out);
    gw_wipe(m.b, m.hi); /* held plaintext field values (bytes past hi never written) */
    return m.rc;
}

int gw_crypto_content_mac(struct gw_crypto *cx, enum gw_suite suite,
                          const uint8_t key[GW_CRYPTO_KEY_LEN], const struct gw_crypto_item *items,
                          size_t count, uint8_t out[GW_CRYPTO_MAC_LEN])
{
    return gw_crypto_content_mac_enc(cx, suite, key, items, count, NULL, 0, 0, NULL, 0, out);
}
