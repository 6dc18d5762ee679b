/* phone.h: phone numbers of senders and recipients: validation (part 12 Art. 5-6) and the
 * normalised form that blind indexes, suspicious-customer matching and masking work on.
 *
 * Accepted (after removing the separators ' ' and '-', which may appear anywhere between
 * digits, never first or last, at most 8 of them):
 *  - mainland mobile: 11 digits, "1" then 3-9, e.g. 138 0013 8000;
 *  - mainland landline with area code: "0", a 2-digit area code (10, 20-29) or a 3-digit one
 *    (first digit 3-9), then a 7- or 8-digit local number not starting with 0 or 1
 *    (e.g. 010-6552 1234, 0571-8702 1234). Extensions ("-123" after the number, "ext", "#")
 *    are refused: there is no unambiguous way to tell them from the local number;
 *  - either of them after the mainland country code written "+86", "0086" or "86" (a mobile
 *    only, for bare "86"), optionally followed by a separator; after the country code the
 *    landline's trunk "0" may be present or omitted (+86 10 6552 1234 == 010 6552 1234).
 * Refused: other country codes, short service numbers (95xxx, 400/800 numbers), anything with
 * other characters, input longer than GW_PHONE_INPUT_MAX bytes.
 *
 * Normalised form: digits only, country code removed, trunk "0" present for landlines, so every
 * spelling of one line gives the same string: "13800138000", "01065521234".
 * Contract: pure, no allocation; a broken rule is an enum gw_rule (err.c words it, never quoting
 * the number). A too-long input is GW_RULE_TOO_LONG with the bound GW_PHONE_INPUT_MAX. */
#ifndef GW_PHONE_H
#define GW_PHONE_H

#include <stdbool.h>
#include <stddef.h>

#include "err.h"

#define GW_PHONE_INPUT_MAX 32 /* bytes of the raw field */
#define GW_PHONE_NORM_MAX 12  /* digits of the normalised form (0 + 3 + 8) */

enum gw_phone_kind {
    GW_PHONE_MOBILE = 1,
    GW_PHONE_LANDLINE = 2,
};

/* Validates and normalises in one pass. out (may be NULL) receives the NUL-terminated
 * normalised digits and must then hold GW_PHONE_NORM_MAX + 1 bytes; *outlen and *kind may be
 * NULL. Returns 0, or GW_EINVAL with *rule (rule may be NULL). */
GW_MUST_CHECK int gw_phone_parse(const char *s, size_t n, char out[GW_PHONE_NORM_MAX + 1],
                                 size_t *outlen, enum gw_phone_kind *kind, enum gw_rule *rule);

/* gw_phone_parse without the outputs: 0 or GW_EINVAL (+ *rule). */
GW_MUST_CHECK int gw_phone_check(const char *s, size_t n, enum gw_rule *rule);

/* The normalised form into out (outsz bytes). Returns 0, GW_EINVAL (not a valid phone) or
 * GW_ETOOBIG (outsz < normalised length + 1). */
GW_MUST_CHECK int gw_phone_normalize(const char *s, size_t n, char *out, size_t outsz,
                                     size_t *outlen);

#endif
