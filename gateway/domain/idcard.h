/* idcard.h: identity-document numbers collected at real-name pickup (part 12 Art. 6).
 *
 * Contract:
 *  - Pure functions over (pointer, length) byte strings; nothing is allocated, nothing logged.
 *  - Checks return 0 or GW_EINVAL and, on GW_EINVAL, set *rule (when rule != NULL) to the broken
 *    rule (enum gw_rule; its one wording is in err.c and never contains the checked value).
 *  - enum gw_id_type and enum gw_gender are numbered exactly like waygate.v1.IdType and
 *    waygate.v1.Gender (proto/waygate/v1/common.proto), so a proto value converts by a cast
 *    after a range check (gw_id_type_valid / gw_gender_valid).
 *
 * Formats accepted per document type (input may be lower case; normalisation upper-cases):
 *  - RESIDENT_CARD (GB 11643-1999): 18 characters, 17 digits + check character (0-9 or X) by
 *    ISO 7064 MOD 11-2; digits 1-2 a province-level code (11-15 21-23 31-37 41-46 50-54 61-65
 *    71 81 82, plus 83 used by Taiwan residents' residence permits); digits 7-14 a real
 *    calendar date, not before 1900-01-01 and not after today (China Standard Time, UTC+8,
 *    relative to `now`); digit 17 odd = male, even = female, which must agree with a stated
 *    gender. Legacy 15-digit numbers (GB 11643-1989): 15 digits, same region rule, YYMMDD birth
 *    date read as 19YY, gender from digit 15, no check digit; they normalise to the 18-digit form
 *    (gw_idcard_upgrade15), so one person's two numbers share one blind index.
 *  - PASSPORT: 5 to 17 ASCII letters and digits.
 *  - HK_MACAO_PERMIT (港澳居民来往内地通行证): 'H' or 'M' followed by 8 or 10 digits.
 *  - TAIWAN_PERMIT (台湾居民来往大陆通行证): 8 digits (card issued since 2015), or the legacy
 *    10-character form: 8 digits followed by 2 letters or digits (e.g. a re-issue counter).
 *  - FOREIGN_PERMANENT_RESIDENT: the 2023 18-digit form ('9', 2-digit province code, 3-digit
 *    nationality code, birth date YYYYMMDD, 3-digit sequence, MOD 11-2 check character; birth
 *    date and check rules as for a resident card), or the 2017 15-character form (3 letters of
 *    ISO 3166 nationality code followed by 12 digits).
 *  - MILITARY and OTHER: 4 to 32 characters (at most 64 bytes) of valid UTF-8, printable:
 *    ASCII letters, digits, space, '-', '(', ')', and any non-ASCII character (officer cards
 *    carry Chinese text such as "南字第…号"); no leading or trailing space.
 */
#ifndef GW_IDCARD_H
#define GW_IDCARD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

enum gw_id_type {
    GW_ID_UNSPECIFIED = 0,
    GW_ID_RESIDENT_CARD = 1,
    GW_ID_PASSPORT = 2,
    GW_ID_HK_MACAO_PERMIT = 3,
    GW_ID_TAIWAN_PERMIT = 4,
    GW_ID_FOREIGN_PERMANENT_RESIDENT = 5,
    GW_ID_MILITARY = 6,
    GW_ID_OTHER = 7,
};
#define GW_ID_TYPE_MAX GW_ID_OTHER

enum gw_gender {
    GW_GENDER_UNSPECIFIED = 0,
    GW_GENDER_MALE = 1,
    GW_GENDER_FEMALE = 2,
};

/* Longest normalised ID number (bytes, without the NUL); buffers are GW_ID_NORM_MAX + 1. */
#define GW_ID_NORM_MAX 64

/* True when v is a defined enum value (proto enums may carry any int32). */
bool gw_id_type_valid(int v);
bool gw_gender_valid(int v);

/* What a resident ID number says about its holder. */
struct gw_idcard_info {
    int year, month, day;  /* birth date */
    enum gw_gender gender; /* from the sequence digit's parity */
    bool legacy15;         /* the input was a 15-digit GB 11643-1989 number */
};

/* The MOD 11-2 check character ('0'..'9' or 'X') for 17 ASCII digits at d17.
 * Returns 0 when d17 holds a non-digit. */
char gw_idcard_check_char(const char *d17);

/* Checks a resident ID number (18 or 15 characters). now: Unix seconds; stated: the gender given
 * alongside (GW_GENDER_UNSPECIFIED: no consistency check). info may be NULL; filled on success.
 * Returns 0 or GW_EINVAL (+ *rule). */
GW_MUST_CHECK int gw_idcard_resident_check(const char *s, size_t n, int64_t now,
                                           enum gw_gender stated, struct gw_idcard_info *info,
                                           enum gw_rule *rule);

/* Converts a valid 15-digit number to its 18-digit form: inserts "19" before the YYMMDD birth
 * date and appends the check character. out must hold 19 bytes (NUL-terminated on success).
 * Returns 0, or GW_EINVAL when s is not 15 digits. */
GW_MUST_CHECK int gw_idcard_upgrade15(const char *s, size_t n, char out[19]);

/* Checks an ID number of the given type (rules above). UNSPECIFIED or an unknown type is
 * GW_EINVAL. stated is only used for the resident card. Returns 0 or GW_EINVAL (+ *rule). */
GW_MUST_CHECK int gw_idcard_check(enum gw_id_type type, const char *s, size_t n, int64_t now,
                                  enum gw_gender stated, enum gw_rule *rule);

/* The normalised form used for blind indexes: ASCII letters upper-cased; a 15-digit resident
 * number upgraded to 18 digits. The input must have passed gw_idcard_check. Writes a
 * NUL-terminated string of at most GW_ID_NORM_MAX bytes into out (outsz bytes) and its length
 * into *outlen (may be NULL). Returns 0, GW_EINVAL (not a valid number of that type) or
 * GW_ETOOBIG (out too small). */
GW_MUST_CHECK int gw_idcard_normalize(enum gw_id_type type, const char *s, size_t n, char *out,
                                      size_t outsz, size_t *outlen);

#endif
