/* waybill.h: the waybill as the domain sees it, and its intake validation (Art. 3, 36; part 12 Art.
 * 5-7 Art. 5-6, Art. 18 format; issue 3 "Intake").
 *
 * Strings are (pointer, length) views into the request message; the caller owns the bytes and
 * keeps them alive while the struct is used. Length 0 means "absent" for every string.
 *
 * gw_waybill_validate checks, in this order, and stops at the first broken rule:
 *  1. waybill_no: present; 10-20 ASCII letters and digits, letter prefix (0-6) then 1-18 digits
 *     (waybillno.h). Segment membership is NOT checked here (it needs the segment table).
 *  2. sender, then recipient (paths "<root>.sender.<field>", "<root>.recipient.<field>"):
 *     - every string: valid UTF-8, no control characters (text.h: C0, DEL, C1, U+2028/2029,
 *       bidi controls, U+FEFF), at most its byte limit:
 *         name 64, phone 32, province 32, city 32, district 32, address_detail 256,
 *         company 128, id_number 64 (and per type, idcard.h);
 *     - key fields (part 12 Art. 5), required and not blank: name, phone, province, city,
 *       address_detail for both parties. district is optional: some prefecture-level cities
 *       (东莞, 中山, 儋州, 嘉峪关) have no county level.
 *     - phone: phone.h (mainland mobile or landline with area code, optional +86);
 *     - gender: a defined enum value;
 *     - id_type: a defined enum value. Sender: id_type and id_number required (real-name
 *       pickup). Recipient: optional, but an id_number requires an id_type and an id_type
 *       requires an id_number; when present it is checked like the sender's;
 *     - id_number: idcard.h rules for its type, including the resident card's check digit,
 *       birth date (not in the future relative to `now`) and gender-digit consistency.
 *  3. item_description: optional, at most 512 bytes, safe text.
 *  4. pickup_time: 0 = absent; otherwise not before 2000-01-01T00:00:00Z and not more than
 *     GW_WAYBILL_CLOCK_SKEW (300) seconds after `now`.
 *  5. origin_branch: optional, 1-32 ASCII letters, digits, '_' or '-'.
 *  6. dest_region_code: optional; 6 ASCII digits whose first two are a province-level code
 *     (11-15 21-23 31-37 41-46 50-54 61-65 71 81 82).
 *  7. weight_grams: 0 = absent; otherwise 1..1000000.
 *  8. service_type: optional, 1-32 ASCII letters, digits, '_', '-' or '.'.
 *  9. security_level: 0 none, 1 秘密, 2 机密, 3 绝密 (enum gw_security_level).
 * On failure the fault (err.h) holds GW_EINVAL, the field path ("waybill.sender.id_number") and
 * the rule (GW_RULE_ID_CHECK_DIGIT; GW_RULE_TOO_LONG with the byte limit in err->limit). Neither
 * ever contains a value from the waybill; err.c turns them into the grpc-message.
 * Pure: no allocation, no logging. */
#ifndef GW_WAYBILL_H
#define GW_WAYBILL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "idcard.h"
#include "phone.h"
#include "waybillno.h"

#define GW_WAYBILL_CLOCK_SKEW 300
#define GW_WAYBILL_PICKUP_MIN 946684800 /* 2000-01-01T00:00:00Z */
#define GW_WAYBILL_WEIGHT_MAX 1000000

/* Byte limits of the string fields. */
#define GW_LIMIT_NAME 64
#define GW_LIMIT_PHONE 32
#define GW_LIMIT_DIVISION 32 /* province, city, district */
#define GW_LIMIT_ADDRESS_DETAIL 256
#define GW_LIMIT_COMPANY 128
#define GW_LIMIT_ID_NUMBER 64
#define GW_LIMIT_ITEM_DESCRIPTION 512
#define GW_LIMIT_BRANCH 32
#define GW_LIMIT_SERVICE_TYPE 32

/* Numbered like waygate.v1.SecurityLevel. */
enum gw_security_level {
    GW_SECLEVEL_NONE = 0,
    GW_SECLEVEL_SECRET = 1,        /* 秘密 */
    GW_SECLEVEL_HIGHLY_SECRET = 2, /* 机密 */
    GW_SECLEVEL_TOP_SECRET = 3,    /* 绝密 */
};

/* A borrowed byte string; n == 0 means absent. */
struct gw_str {
    const char *p;
    size_t n;
};

struct gw_party {
    struct gw_str name;
    struct gw_str phone;
    struct gw_str province;
    struct gw_str city;
    struct gw_str district;
    struct gw_str address_detail;
    struct gw_str company;
    enum gw_id_type id_type; /* may hold any int from the wire; validated */
    struct gw_str id_number;
    enum gw_gender gender; /* may hold any int from the wire; validated */
};

struct gw_waybill {
    struct gw_str waybill_no;
    struct gw_party sender;
    struct gw_party recipient;
    struct gw_str item_description;
    int64_t pickup_time; /* Unix seconds; 0 = absent */
    struct gw_str origin_branch;
    struct gw_str dest_region_code;
    int64_t weight_grams; /* 0 = absent */
    struct gw_str service_type;
    int security_level; /* enum gw_security_level; validated */
};

/* The normalised values validation hands back (gw_waybill_validate_norm), so that sealing and
 * storing use them and never parse the same value again. Holds PII: keep it in memory that is
 * wiped when freed (a call's arena). */
struct gw_party_norm {
    char phone[GW_PHONE_NORM_MAX + 1]; /* phone.h normalised digits */
    size_t phone_len;
    char id_number[GW_ID_NORM_MAX + 1]; /* idcard.h normalised form; "" when absent */
    size_t id_number_len;
};

struct gw_waybill_norm {
    char waybill_no[GW_WAYBILLNO_MAX + 1]; /* upper-cased (waybillno.h) */
    size_t waybill_no_len;
    char prefix[GW_WAYBILLNO_PREFIX_MAX + 1]; /* upper-cased letter prefix, "" when none */
    int64_t numeric;                          /* value of the numeric part (segment check) */
    struct gw_party_norm sender, recipient;
};

/* Validates w against the rules above; now is Unix seconds. err may be NULL; on success it is
 * left empty (code 0, no field, GW_RULE_NONE). Returns 0 or GW_EINVAL. */
GW_MUST_CHECK int gw_waybill_validate(const struct gw_waybill *w, int64_t now,
                                      struct gw_fault *err);

/* Same with another root for the paths, e.g. "waybills[3]" for SubmitBatch item 3 (the path
 * is cut to fit err->field). */
GW_MUST_CHECK int gw_waybill_validate_at(const struct gw_waybill *w, int64_t now, const char *root,
                                         struct gw_fault *err);

/* gw_waybill_validate_at that also fills *norm (not NULL) with the normalised waybill number
 * (and its prefix and numeric value), phones and ID numbers when w is valid. */
GW_MUST_CHECK int gw_waybill_validate_norm(const struct gw_waybill *w, int64_t now,
                                           const char *root, struct gw_fault *err,
                                           struct gw_waybill_norm *norm);

/* Validates one party; path prefix is e.g. "waybill.sender". sender selects the real-name rule
 * (ID required). Returns 0 or GW_EINVAL. */
GW_MUST_CHECK int gw_party_validate(const struct gw_party *p, bool sender, int64_t now,
                                    const char *prefix, struct gw_fault *err);

/* True when code[0..n) is a 6-digit administrative-division code with a valid province part. */
bool gw_region_code_valid(const char *code, size_t n);

#endif
