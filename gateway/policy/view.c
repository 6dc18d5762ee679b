/* view.c: the rendering of one field in a view mode (which mode a role gets is the policy's,
 * policy.h). Invariant: an unknown mode renders as omitted. */
#include <string.h>

#include "mask.h"
#include "view.h"

static int put(const char *s, size_t n, char *out, size_t outsz, size_t *outlen)
{
    if (outsz < n + 1)
        return GW_ETOOBIG;
    memcpy(out, s, n);
    out[n] = '\0';
    if (outlen != NULL)
        *outlen = n;
    return 0;
}

static int mask(enum gw_col col, const char *value, size_t n, char *out, size_t outsz,
                size_t *outlen)
{
    if (n == 0)
        return put("", 0, out, outsz, outlen);
    switch (col) {
    case GW_COL_SENDER_NAME:
    case GW_COL_RECIPIENT_NAME:
        return gw_mask_name(value, n, out, outsz, outlen);
    case GW_COL_SENDER_PHONE:
    case GW_COL_RECIPIENT_PHONE:
        return gw_mask_phone(value, n, out, outsz, outlen);
    case GW_COL_SENDER_ID_NUMBER:
    case GW_COL_RECIPIENT_ID_NUMBER:
        return gw_mask_id_number(value, n, out, outsz, outlen);
    default:
        return put("****", 4, out, outsz, outlen);
    }
}

int gw_view_render(struct gw_crypto *cx, enum gw_suite suite,
                   const uint8_t token_key[GW_CRYPTO_KEY_LEN], enum gw_col col,
                   enum gw_view_mode mode, const char *value, size_t n, char *out, size_t outsz,
                   size_t *outlen)
{
    char tok[GW_CRYPTO_TOKEN_LEN + 1];
    int rc;

    if ((unsigned)col >= GW_COL_COUNT || out == NULL || outsz == 0)
        return GW_EINVAL;
    switch (mode) {
    case GW_VIEW_CLEAR:
        return put(value, n, out, outsz, outlen);
    case GW_VIEW_MASK:
        return mask(col, value, n, out, outsz, outlen);
    case GW_VIEW_TOKEN:
        if (n == 0)
            return put("", 0, out, outsz, outlen);
        rc = gw_crypto_token(cx, suite, token_key, gw_col_field[col], (const uint8_t *)value, n,
                             tok);
        if (rc != 0)
            return rc;
        return put(tok, GW_CRYPTO_TOKEN_LEN, out, outsz, outlen);
    case GW_VIEW_OMIT:
    default:
        return put("", 0, out, outsz, outlen);
    }
}
