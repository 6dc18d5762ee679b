/* record.h: a waybill record as stored: its encrypted columns (enum gw_col), its clear columns
 * (gw_rec_cols) and the sealed record that carries both (struct gw_sealed_waybill). Shared by the
 * sealing code (which binds each ciphertext to its column through the AAD and every clear column
 * to the record through the record MAC) and the store (which names the SQL columns and builds its
 * statements from these tables). Adding a column means adding it here and to a migration: the
 * store then writes and reads it, and the record MAC covers it unless its entry says otherwise. */
#ifndef GW_RECORD_H
#define GW_RECORD_H

#include <stdbool.h>
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
extern const uint8_t gw_col_sql_len[GW_COL_COUNT]; /* strlen of each */
/* The field's name as used in AAD and messages, e.g. "sender.phone". */
extern const char *const gw_col_field[GW_COL_COUNT];
extern const uint8_t gw_col_field_len[GW_COL_COUNT]; /* strlen of each */

#define GW_RECORD_ID_LEN 16   /* record id: a UUID's 16 bytes */
#define GW_RECORD_BIDX_LEN 16 /* blind index */
#define GW_RECORD_MAC_LEN 32  /* content digest and record MAC */
/* Cipher suites besides a record's own (GW_SUITE_COUNT - 1, crypto.h; seal.c checks). */
#define GW_RECORD_ALTS 1

/* Versions of the MAC input (column mac_version):
 *  1: rows written before the record MAC: content_mac covers the fields and origin_branch,
 *     dest_region_code, weight_grams, service_type, security_level; record_mac is NULL.
 *  2: content_mac also covers the version; record_mac covers every clear column marked mac in
 *     gw_rec_cols and every field; each field is sealed on its own in its *_ct column.
 *  3: the fields are sealed together, as one value in fields_ct (the 23 *_ct columns and
 *     record_mac are NULL), under the data key with every clear column marked mac in gw_rec_cols
 *     as its AAD: one seal binds the fields and the clear columns to the record, which version 2
 *     did with 23 seals and the record MAC. content_mac is version 2's (its version item says 2),
 *     so a retry of a waybill stored before version 3 is still recognised; version 3's own
 *     version is bound by the AAD (mac_version is marked mac). New records are written as 3;
 *     rows of 1 and 2 are read as they were written (seal.h). */
#define GW_RECORD_MAC_V1 1
#define GW_RECORD_MAC_V2 2
#define GW_RECORD_MAC_V3 3
#define GW_RECORD_MAC_CURRENT GW_RECORD_MAC_V3

/* A sealed waybill, as stored. Strings are NUL-terminated; NULL or "" means SQL NULL for the
 * optional ones (dest_region_code, service_type, pickup_day). In versions 1 and 2, ct[i].p == NULL
 * means the field is absent (SQL NULL); in version 3 every ct[i].p is NULL and fields_ct carries
 * all the fields, an absent one as an empty value. For a row read by the store the pointers point
 * into the result and are valid only during the callback. */
struct gw_sealed_waybill {
    uint8_t id[GW_RECORD_ID_LEN];
    /* clear operational fields (not PII) */
    const char *origin_branch;    /* required */
    const char *submitted_by;     /* principal name, required */
    const char *dest_region_code; /* 6-digit division code or NULL/"" */
    int32_t weight_grams;
    const char *service_type; /* NULL/"" = none */
    int16_t security_level;
    const char *pickup_day; /* "YYYY-MM-DD" or NULL/"" */
    int64_t accepted_at;    /* the gateway's acceptance time, Unix seconds, stamped when sealing */
    /* blind indexes */
    uint8_t wb_bidx[GW_RECORD_BIDX_LEN];
    uint8_t sender_phone_bidx[GW_RECORD_BIDX_LEN];
    uint8_t recipient_phone_bidx[GW_RECORD_BIDX_LEN];
    uint8_t sender_id_bidx[GW_RECORD_BIDX_LEN];
    uint8_t recipient_id_bidx[GW_RECORD_BIDX_LEN];
    bool has_sender_phone_bidx;
    bool has_recipient_phone_bidx;
    bool has_sender_id_bidx;
    bool has_recipient_id_bidx;
    /* keys and integrity */
    int32_t kek_version;
    int32_t dek_version;
    struct gw_bytes dek_wrapped;
    uint8_t content_mac[GW_RECORD_MAC_LEN]; /* idempotency digest of the submitted content */
    int16_t mac_version;                    /* GW_RECORD_MAC_V* */
    uint8_t record_mac[GW_RECORD_MAC_LEN];  /* v2: over every clear column and field */
    bool has_record_mac;                    /* false: SQL NULL (versions 1 and 3) */
    /* version 3: every field sealed as one value (p == NULL: SQL NULL, versions 1 and 2) */
    struct gw_bytes fields_ct;
    /* versions 1 and 2: one ciphertext per field, indexed by enum gw_col (NULL in version 3) */
    struct gw_bytes ct[GW_COL_COUNT];
    /* Not stored: the number's blind index and the content_mac under each other suite the
     * keyring holds (n_alt of them, filled by gw_seal_waybill), so that the store's idempotency
     * check recognises the number stored under another suite (a migration between suites). */
    size_t n_alt;
    uint8_t alt_wb_bidx[GW_RECORD_ALTS][GW_RECORD_BIDX_LEN];
    uint8_t alt_content_mac[GW_RECORD_ALTS][GW_RECORD_MAC_LEN];
};

/* How a clear column's value is held in struct gw_sealed_waybill. */
enum gw_rec_kind {
    GW_REC_UUID,  /* uint8_t[GW_RECORD_ID_LEN] */
    GW_REC_BIDX,  /* uint8_t[GW_RECORD_BIDX_LEN], with a presence flag when optional */
    GW_REC_MAC,   /* uint8_t[GW_RECORD_MAC_LEN] */
    GW_REC_BYTES, /* struct gw_bytes */
    GW_REC_TEXT,  /* const char *, NULL or "" = absent */
    GW_REC_DATE,  /* const char *, "YYYY-MM-DD", NULL or "" = absent */
    GW_REC_I16,   /* int16_t */
    GW_REC_I32,   /* int32_t */
    GW_REC_TIME,  /* int64_t Unix seconds (a timestamptz column) */
};

/* One clear column of the waybill table. */
struct gw_rec_col {
    const char *name; /* SQL column name; also the item name in the record MAC */
    enum gw_rec_kind kind;
    size_t off;  /* offsetof the value in struct gw_sealed_waybill */
    int has_off; /* offsetof its bool presence flag, or -1 (always present unless NULL/"") */
    bool mac;    /* covered by the record MAC (see gw_rec_cols in record.c for the exceptions) */
    uint8_t name_len; /* strlen(name) */
};

/* Every clear column, in the order the store writes and reads them. */
#define GW_REC_NCOLS 21
extern const struct gw_rec_col gw_rec_cols[GW_REC_NCOLS];

/* Largest canonical text of a numeric column ("-9223372036854775808" + NUL). */
#define GW_REC_NUM_MAX 21

/* The canonical value of clear column c of w: *p and *n point into w or into num (integers as
 * decimal text, dates as "YYYY-MM-DD"). Returns false when the value is absent (SQL NULL):
 * a NULL or "" text, an optional blind index without its flag, dek_wrapped without bytes. */
bool gw_rec_value(const struct gw_sealed_waybill *w, const struct gw_rec_col *c,
                  char num[GW_REC_NUM_MAX], const uint8_t **p, size_t *n);

#endif
