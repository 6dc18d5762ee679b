/* record.h: the names of a waybill record's encrypted columns. Shared by the sealing code (which
 * binds each ciphertext to its column through the AAD) and the store (which names the SQL
 * columns). Adding a column means appending here and adding it to a migration. */
#ifndef GW_RECORD_H
#define GW_RECORD_H

#include <stddef.h>
#include <stdint.h>

#include "alloc.h"

#define GW_RECORD_TABLE "waybill"

enum gw_col {
    GW_COL_WAYBILL_NO = 0,
    GW_COL_ITEM_DESCRIPTION,
    GW_COL_PICKUP_TIME,
    GW_COL_SENDER_NAME,
    GW_COL_SENDER_PHONE,
    GW_COL_SENDER_PROVINCE,
    GW_COL_SENDER_CITY,
    GW_COL_SENDER_DISTRICT,
    GW_COL_SENDER_ADDRESS_DETAIL,
    GW_COL_SENDER_COMPANY,
    GW_COL_SENDER_ID_TYPE,
    GW_COL_SENDER_ID_NUMBER,
    GW_COL_SENDER_GENDER,
    GW_COL_RECIPIENT_NAME,
    GW_COL_RECIPIENT_PHONE,
    GW_COL_RECIPIENT_PROVINCE,
    GW_COL_RECIPIENT_CITY,
    GW_COL_RECIPIENT_DISTRICT,
    GW_COL_RECIPIENT_ADDRESS_DETAIL,
    GW_COL_RECIPIENT_COMPANY,
    GW_COL_RECIPIENT_ID_TYPE,
    GW_COL_RECIPIENT_ID_NUMBER,
    GW_COL_RECIPIENT_GENDER,
    GW_COL_COUNT
};

/* SQL column name of each encrypted field: "<field>_ct", e.g. "sender_phone_ct". */
extern const char *const gw_col_sql[GW_COL_COUNT];
/* The field's name as used in AAD and messages, e.g. "sender.phone". */
extern const char *const gw_col_field[GW_COL_COUNT];

#endif
