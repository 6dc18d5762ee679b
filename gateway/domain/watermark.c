/* watermark.c: per-row export watermarks (watermark.h). Invariant: the tag depends only on the
 * watermark key, the export id and the row's bytes. */
#include "watermark.h"

#include <string.h>

#include <openssl/crypto.h>

#include "crypto.h"

#define LABEL "waygate.watermark.v1"

int gw_wm_export_key(struct gw_crypto *cx, const uint8_t wm_key[GW_WM_KEY_LEN],
                     const uint8_t id[GW_WM_ID_LEN], uint8_t out[GW_WM_KEY_LEN])
{
    uint8_t msg[sizeof(LABEL) + GW_WM_ID_LEN]; /* the label, its NUL, the id */

    memcpy(msg, LABEL, sizeof(LABEL));
    memcpy(msg + sizeof(LABEL), id, GW_WM_ID_LEN);
    return gw_crypto_hmac(cx, GW_SUITE_AES, wm_key, GW_WM_KEY_LEN, msg, sizeof(msg), out);
}

int gw_wm_tag(struct gw_crypto *cx, const uint8_t ekey[GW_WM_KEY_LEN], const char *row, size_t len,
              char hex[GW_WM_TAG_HEX + 1])
{
    static const char digits[] = "0123456789abcdef";
    uint8_t mac[GW_CRYPTO_MAC_LEN];
    int rc = gw_crypto_hmac(cx, GW_SUITE_AES, ekey, GW_WM_KEY_LEN, (const uint8_t *)row, len, mac);

    if (rc != 0)
        return rc;
    for (size_t i = 0; i < GW_WM_TAG_HEX / 2; i++) {
        hex[2 * i] = digits[mac[i] >> 4];
        hex[2 * i + 1] = digits[mac[i] & 15];
    }
    hex[GW_WM_TAG_HEX] = '\0';
    return 0;
}

bool gw_wm_split(const char *line, size_t len, const char **row, size_t *rowlen, const char **tag)
{
    if (len > 0 && line[len - 1] == '\r')
        len--;
    if (len < GW_WM_TAG_HEX + 2 || line[len - GW_WM_TAG_HEX - 1] != ' ')
        return false;
    for (size_t i = len - GW_WM_TAG_HEX; i < len; i++)
        if (!((line[i] >= '0' && line[i] <= '9') || (line[i] >= 'a' && line[i] <= 'f')))
            return false;
    *row = line;
    *rowlen = len - GW_WM_TAG_HEX - 1;
    *tag = line + len - GW_WM_TAG_HEX;
    return true;
}

bool gw_wm_check(struct gw_crypto *cx, const uint8_t ekey[GW_WM_KEY_LEN], const char *row,
                 size_t len, const char *tag)
{
    char want[GW_WM_TAG_HEX + 1];

    if (gw_wm_tag(cx, ekey, row, len, want) != 0)
        return false;
    return CRYPTO_memcmp(want, tag, GW_WM_TAG_HEX) == 0;
}
