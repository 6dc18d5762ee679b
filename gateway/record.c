/* record.c: the column tables declared in record.h. Order must match enum gw_col. */
#include "record.h"

const char *const gw_col_sql[GW_COL_COUNT] = {
    "waybill_no_ct",           "item_description_ct",     "pickup_time_ct",
    "sender_name_ct",          "sender_phone_ct",         "sender_province_ct",
    "sender_city_ct",          "sender_district_ct",      "sender_address_detail_ct",
    "sender_company_ct",       "sender_id_type_ct",       "sender_id_number_ct",
    "sender_gender_ct",        "recipient_name_ct",       "recipient_phone_ct",
    "recipient_province_ct",   "recipient_city_ct",       "recipient_district_ct",
    "recipient_address_detail_ct", "recipient_company_ct", "recipient_id_type_ct",
    "recipient_id_number_ct",  "recipient_gender_ct",
};

const char *const gw_col_field[GW_COL_COUNT] = {
    "waybill_no",          "item_description",   "pickup_time",
    "sender.name",         "sender.phone",       "sender.province",
    "sender.city",         "sender.district",    "sender.address_detail",
    "sender.company",      "sender.id_type",     "sender.id_number",
    "sender.gender",       "recipient.name",     "recipient.phone",
    "recipient.province",  "recipient.city",     "recipient.district",
    "recipient.address_detail", "recipient.company", "recipient.id_type",
    "recipient.id_number", "recipient.gender",
};
