/* record.c: the column tables declared in record.h and the canonical value of a clear column.
 * Invariant: gw_col_sql and gw_col_field follow enum gw_col; gw_rec_cols lists every clear column
 * of the waybill table exactly once. Pure. */
#include "record.h"

#include <string.h>

#include "text.h"

/* Each field's SQL column and field name, in enum gw_col order (the lengths come from the same
 * literals). */
#define COLS(X)                                                                                    \
    X("waybill_no_ct", "waybill_no")                                                               \
    X("item_description_ct", "item_description")                                                   \
    X("pickup_time_ct", "pickup_time")                                                             \
    X("sender_name_ct", "sender.name")                                                             \
    X("sender_phone_ct", "sender.phone")                                                           \
    X("sender_province_ct", "sender.province")                                                     \
    X("sender_city_ct", "sender.city")                                                             \
    X("sender_district_ct", "sender.district")                                                     \
    X("sender_address_detail_ct", "sender.address_detail")                                         \
    X("sender_company_ct", "sender.company")                                                       \
    X("sender_id_type_ct", "sender.id_type")                                                       \
    X("sender_id_number_ct", "sender.id_number")                                                   \
    X("sender_gender_ct", "sender.gender")                                                         \
    X("recipient_name_ct", "recipient.name")                                                       \
    X("recipient_phone_ct", "recipient.phone")                                                     \
    X("recipient_province_ct", "recipient.province")                                               \
    X("recipient_city_ct", "recipient.city")                                                       \
    X("recipient_district_ct", "recipient.district")                                               \
    X("recipient_address_detail_ct", "recipient.address_detail")                                   \
    X("recipient_company_ct", "recipient.company")                                                 \
    X("recipient_id_type_ct", "recipient.id_type")                                                 \
    X("recipient_id_number_ct", "recipient.id_number")                                             \
    X("recipient_gender_ct", "recipient.gender")

#define SQL(sql, field) sql,
#define SQL_LEN(sql, field) sizeof(sql) - 1,
#define FIELD(sql, field) field,
#define FIELD_LEN(sql, field) sizeof(field) - 1,
const char *const gw_col_sql[GW_COL_COUNT] = {COLS(SQL)};
const uint8_t gw_col_sql_len[GW_COL_COUNT] = {COLS(SQL_LEN)};
const char *const gw_col_field[GW_COL_COUNT] = {COLS(FIELD)};
const uint8_t gw_col_field_len[GW_COL_COUNT] = {COLS(FIELD_LEN)};
#undef SQL
#undef SQL_LEN
#undef FIELD
#undef FIELD_LEN

#define COL(nm, kind, field, mac)                                                                  \
    {                                                                                              \
        nm, kind, offsetof(struct gw_sealed_waybill, field), -1, mac, sizeof(nm) - 1               \
    }
#define OPT(nm, kind, field, flag, mac)                                                            \
    {                                                                                              \
        nm, kind, offsetof(struct gw_sealed_waybill, field),                                       \
            (int)offsetof(struct gw_sealed_waybill, flag), mac, sizeof(nm) - 1                     \
    }

/* Not covered by the record MAC (version 2) nor by the fields' AAD (version 3): kek_version and
 * dek_wrapped change when `keys rewrap` re-wraps the data key, and the wrapped key's own AAD binds
 * it to the record id and KEK version (a moved or altered one fails to unwrap); record_mac is the
 * MAC itself; fields_ct is what the AAD authenticates with. */
const struct gw_rec_col gw_rec_cols[GW_REC_NCOLS] = {
    COL("id", GW_REC_UUID, id, true),
    COL("wb_bidx", GW_REC_BIDX, wb_bidx, true),
    COL("origin_branch", GW_REC_TEXT, origin_branch, true),
    COL("submitted_by", GW_REC_TEXT, submitted_by, true),
    COL("dest_region_code", GW_REC_TEXT, dest_region_code, true),
    COL("weight_grams", GW_REC_I32, weight_grams, true),
    COL("service_type", GW_REC_TEXT, service_type, true),
    COL("security_level", GW_REC_I16, security_level, true),
    COL("pickup_day", GW_REC_DATE, pickup_day, true),
    COL("accepted_at", GW_REC_TIME, accepted_at, true),
    COL("kek_version", GW_REC_I32, kek_version, false),
    COL("dek_version", GW_REC_I32, dek_version, true),
    COL("dek_wrapped", GW_REC_BYTES, dek_wrapped, false),
    COL("content_mac", GW_REC_MAC, content_mac, true),
    COL("mac_version", GW_REC_I16, mac_version, true),
    OPT("record_mac", GW_REC_MAC, record_mac, has_record_mac, false),
    COL("fields_ct", GW_REC_BYTES, fields_ct, false),
    OPT("sender_phone_bidx", GW_REC_BIDX, sender_phone_bidx, has_sender_phone_bidx, true),
    OPT("recipient_phone_bidx", GW_REC_BIDX, recipient_phone_bidx, has_recipient_phone_bidx, true),
    OPT("sender_id_bidx", GW_REC_BIDX, sender_id_bidx, has_sender_id_bidx, true),
    OPT("recipient_id_bidx", GW_REC_BIDX, recipient_id_bidx, has_recipient_id_bidx, true),
};
_Static_assert(sizeof(gw_rec_cols) / sizeof(gw_rec_cols[0]) == GW_REC_NCOLS, "GW_REC_NCOLS");

bool gw_rec_value(const struct gw_sealed_waybill *w, const struct gw_rec_col *c,
                  char num[GW_REC_NUM_MAX], const uint8_t **p, size_t *n)
{
    const char *base = (const char *)w + c->off;
    const struct gw_bytes *b;
    const char *s;
    int64_t v;
    int32_t v32;
    int16_t v16;

    *p = NULL;
    *n = 0;
    if (c->has_off >= 0 && !*(const bool *)((const char *)w + c->has_off))
        return false;
    switch (c->kind) {
    case GW_REC_UUID:
    case GW_REC_BIDX:
    case GW_REC_MAC:
        *p = (const uint8_t *)base;
        *n = c->kind == GW_REC_UUID   ? GW_RECORD_ID_LEN
             : c->kind == GW_REC_BIDX ? GW_RECORD_BIDX_LEN
                                      : GW_RECORD_MAC_LEN;
        return true;
    case GW_REC_BYTES:
        b = (const struct gw_bytes *)(const void *)base;
        *p = b->p;
        *n = b->p != NULL ? b->n : 0;
        return b->p != NULL;
    case GW_REC_TEXT:
    case GW_REC_DATE:
        memcpy(&s, base, sizeof(s));
        if (s == NULL || s[0] == '\0')
            return false;
        *p = (const uint8_t *)s;
        *n = strlen(s);
        return true;
    case GW_REC_I16:
        memcpy(&v16, base, sizeof(v16));
        v = v16;
        break;
    case GW_REC_I32:
        memcpy(&v32, base, sizeof(v32));
        v = v32;
        break;
    case GW_REC_TIME:
    default:
        memcpy(&v, base, sizeof(v));
        break;
    }
    *n = gw_text_i64(v, num, GW_REC_NUM_MAX);
    *p = (const uint8_t *)num;
    return true;
}
