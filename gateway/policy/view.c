/* view.c: the built-in field-view policy and the rendering of a field in a mode.
 * Invariant: a (role, field) pair absent from the table is omitted (deny by default). */
#include <string.h>

#include "mask.h"
#include "view.h"

struct role_view {
    const char *role;
    unsigned char mode[GW_COL_COUNT]; /* enum gw_view_mode; 0 (omit) where not listed */
};

/* The courier (scanner) view of docs/roles.md: names masked (surname kept), phones masked (last
 * four kept), the full delivery address; nothing the courier does not need to deliver. */
static const struct role_view policies[] = {
    {"courier",
     {
         [GW_COL_WAYBILL_NO] = GW_VIEW_CLEAR,
         [GW_COL_SENDER_NAME] = GW_VIEW_MASK,
         [GW_COL_SENDER_PHONE] = GW_VIEW_MASK,
         [GW_COL_SENDER_PROVINCE] = GW_VIEW_CLEAR,
         [GW_COL_SENDER_CITY] = GW_VIEW_CLEAR,
         [GW_COL_SENDER_DISTRICT] = GW_VIEW_CLEAR,
         [GW_COL_SENDER_ADDRESS_DETAIL] = GW_VIEW_MASK,
         [GW_COL_RECIPIENT_NAME] = GW_VIEW_MASK,
         [GW_COL_RECIPIENT_PHONE] = GW_VIEW_MASK,
         [GW_COL_RECIPIENT_PROVINCE] = GW_VIEW_CLEAR,
         [GW_COL_RECIPIENT_CITY] = GW_VIEW_CLEAR,
         [GW_COL_RECIPIENT_DISTRICT] = GW_VIEW_CLEAR,
         [GW_COL_RECIPIENT_ADDRESS_DETAIL] = GW_VIEW_CLEAR,
         [GW_COL_RECIPIENT_COMPANY] = GW_VIEW_CLEAR,
     }},
};

enum gw_view_mode gw_view_policy(const char *role, enum gw_col col)
{
    size_t i;

    if (role == NULL || (unsigned)col >= GW_COL_COUNT)
        return GW_VIEW_OMIT;
    for (i = 0; i < sizeof(policies) / sizeof(policies[0]); i++)
        if (strcmp(policies[i].role, role) == 0)
            return (enum gw_view_mode)policies[i].mode[col];
    return GW_VIEW_OMIT;
}

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

int gw_view_render(struct gw_crypto *cx, const uint8_t token_key[GW_CRYPTO_KEY_LEN],
                   enum gw_col col, enum gw_view_mode mode, const char *value, size_t n, char *out,
                   size_t outsz, size_t *outlen)
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
        rc = gw_crypto_token(cx, token_key, gw_col_field[col], (const uint8_t *)value, n, tok);
        if (rc != 0)
            return rc;
        return put(tok, GW_CRYPTO_TOKEN_LEN, out, outsz, outlen);
    case GW_VIEW_OMIT:
    default:
        return put("", 0, out, outsz, outlen);
    }
}
