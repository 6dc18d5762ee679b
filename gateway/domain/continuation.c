/* continuation.c: Search continuations (continuation.h): version 2 | issue time (8 bytes, big
 * endian seconds) | accepted_at (8, big endian) | record id (16) | HMAC (SHA-256 or SM3, by
 * suite) truncated to 16 bytes over a label, the search, the issue time and the position, all in
 * hex. Invariant: decode accepts only what encode under the same key and search produced, and only
 * within GW_CONT_MAX_AGE_S of its issue time. */
#include "continuation.h"

#include <openssl/crypto.h>
#include <string.h>

#define VERSION 2 /* 1 had no issue time: refused as malformed */
#define MAC_LEN 16
#define POS_LEN (1 + 8 + 8 + GW_CONT_ID_LEN) /* version, issue time, accepted_at, id */
#define RAW_LEN (POS_LEN + MAC_LEN)
#define LABEL "waygate.v1.search.continuation"

_Static_assert(GW_CONT_TEXT_LEN == 2 * RAW_LEN, "hex of the raw form");

/* The MAC over label, search, issue time and position (each variable part length-prefixed). */
static int mac(struct gw_crypto *cx, enum gw_suite suite, const uint8_t key[GW_CRYPTO_KEY_LEN],
               const struct gw_cont_search *s, const uint8_t pos[POS_LEN],
               uint8_t out[GW_CRYPTO_MAC_LEN])
{
    uint8_t buf[512];
    size_t n = 0, who = strlen(s->who), br = strlen(s->branch);
    const struct {
        const void *p;
        size_t n;
    } parts[] = {
        {LABEL, sizeof(LABEL) - 1},
        {s->who, who},
        {s->key, s->key_len},
        {s->branch, br},
        {pos, POS_LEN},
    };
    int rc;

    if (s->key_kind < 0 || s->key_kind > 255 || s->sides > 255 || s->level < -128 || s->level > 127)
        return GW_EINVAL;
    buf[n++] = (uint8_t)s->key_kind;
    buf[n++] = (uint8_t)s->sides;
    buf[n++] = (uint8_t)(s->level + 128);
    for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); i++) {
        if (parts[i].n > 255 || n + 1 + parts[i].n > sizeof(buf))
            return GW_EINVAL;
        buf[n++] = (uint8_t)parts[i].n;
        memcpy(buf + n, parts[i].p, parts[i].n);
        n += parts[i].n;
    }
    rc = gw_crypto_hmac(cx, suite, key, GW_CRYPTO_KEY_LEN, buf, n, out);
    OPENSSL_cleanse(buf, n);
    return rc;
}

static void be64_put(uint8_t *p, int64_t x)
{
    uint64_t v = (uint64_t)x;

    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (56 - 8 * i));
}

static int64_t be64_get(const uint8_t *p)
{
    uint64_t v = 0;

    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return (int64_t)v;
}

static void pos_encode(int64_t issued, int64_t at, const uint8_t id[GW_CONT_ID_LEN], uint8_t pos[])
{
    pos[0] = VERSION;
    be64_put(pos + 1, issued);
    be64_put(pos + 9, at);
    memcpy(pos + 17, id, GW_CONT_ID_LEN);
}

int gw_cont_encode(struct gw_crypto *cx, enum gw_suite suite,
                   const uint8_t mac_key[GW_CRYPTO_KEY_LEN], const struct gw_cont_search *s,
                   int64_t issued, int64_t at, const uint8_t id[GW_CONT_ID_LEN],
                   char out[GW_CONT_TEXT_LEN + 1])
{
    static const char hex[] = "0123456789abcdef";
    uint8_t raw[RAW_LEN], m[GW_CRYPTO_MAC_LEN];
    int rc;

    if (s == NULL || s->who == NULL || s->branch == NULL || (s->key == NULL && s->key_len > 0))
        return GW_EINVAL;
    pos_encode(issued, at, id, raw);
    rc = mac(cx, suite, mac_key, s, raw, m);
    if (rc != 0)
        return rc;
    memcpy(raw + POS_LEN, m, MAC_LEN);
    for (size_t i = 0; i < RAW_LEN; i++) {
        out[2 * i] = hex[raw[i] >> 4];
        out[2 * i + 1] = hex[raw[i] & 15];
    }
    out[GW_CONT_TEXT_LEN] = '\0';
    return 0;
}

static int unhex(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

int gw_cont_decode(struct gw_crypto *cx, enum gw_suite suite,
                   const uint8_t mac_key[GW_CRYPTO_KEY_LEN], const struct gw_cont_search *s,
                   const char *text, size_t n, int64_t now, int64_t *issued, int64_t *at,
                   uint8_t id[GW_CONT_ID_LEN])
{
    uint8_t raw[RAW_LEN], m[GW_CRYPTO_MAC_LEN];
    int64_t t;
    int rc;

    if (s == NULL || s->who == NULL || s->branch == NULL || text == NULL || n != GW_CONT_TEXT_LEN ||
        (s->key == NULL && s->key_len > 0))
        return GW_EINVAL;
    for (size_t i = 0; i < RAW_LEN; i++) {
        int hi = unhex(text[2 * i]), lo = unhex(text[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return GW_EINVAL;
        raw[i] = (uint8_t)(hi << 4 | lo);
    }
    if (raw[0] != VERSION)
        return GW_EINVAL;
    rc = mac(cx, suite, mac_key, s, raw, m);
    if (rc != 0)
        return rc;
    if (CRYPTO_memcmp(m, raw + POS_LEN, MAC_LEN) != 0)
        return GW_EINVAL;
    /* genuine: its age, either way (another gateway's clock may be ahead), bounds its use;
     * compared without subtracting, so no value of either overflows */
    t = be64_get(raw + 1);
    if (t < INT64_MIN + GW_CONT_MAX_AGE_S || t > INT64_MAX - GW_CONT_MAX_AGE_S ||
        now > t + GW_CONT_MAX_AGE_S || now < t - GW_CONT_MAX_AGE_S)
        return GW_EPRECOND;
    *issued = t;
    *at = be64_get(raw + 9);
    memcpy(id, raw + 17, GW_CONT_ID_LEN);
    return 0;
}
