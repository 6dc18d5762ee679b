/* text.h: code-point level helpers for the pure domain modules (validation, masking): strict
 * UTF-8 decoding one code point at a time, and the "safe text" rule applied to every string
 * field of a waybill.
 *
 * Contract: pure, no allocation; a broken rule is reported as an enum gw_rule (err.h words it). */
#ifndef GW_TEXT_H
#define GW_TEXT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

/* ASCII character classes (locale-independent, unlike <ctype.h>). */
static inline bool gw_ascii_digit(char c)
{
    return c >= '0' && c <= '9';
}

static inline bool gw_ascii_alpha(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

static inline char gw_ascii_upper(char c)
{
    return (c >= 'a' && c <= 'z') ? (char)(c - 'a' + 'A') : c;
}

/* Decodes the code point at s (n > 0 bytes available). Returns the sequence length (1-4) and
 * sets *cp, or 0 when the bytes are not well-formed UTF-8 (overlong forms, surrogates, values
 * above U+10FFFF, truncated or stray continuation bytes are all refused). */
size_t gw_text_decode(const char *s, size_t n, uint32_t *cp);

/* True for code points a stored text field may not contain: C0 controls (U+0000-U+001F, tab
 * and newlines included), DEL, C1 controls (U+0080-U+009F), the line and paragraph separators
 * (U+2028, U+2029), bidirectional embedding/override/isolate controls (U+202A-U+202E,
 * U+2066-U+2069, which can make a displayed value differ from the stored one), and U+FEFF. */
bool gw_text_forbidden_cp(uint32_t cp);

/* Checks s[0..n) is valid UTF-8 without forbidden code points, at most max_bytes long.
 * Sets *chars (may be NULL) to the number of code points. Returns 0, or GW_EINVAL with *rule
 * (may be NULL): GW_RULE_UTF8, GW_RULE_CONTROL_CHAR or GW_RULE_TOO_LONG (whose bound is the
 * caller's max_bytes). */
GW_MUST_CHECK int gw_text_check(const char *s, size_t n, size_t max_bytes, size_t *chars,
                                enum gw_rule *rule);

/* True when s[0..n) is empty or only ASCII spaces. */
bool gw_text_blank(const char *s, size_t n);

/* The one rule set of a free-text field a person types and the gateway or waygatectl stores (a
 * person's name, a reason, a comment, a purpose, a legal basis, an agency...): when required,
 * not blank (gw_text_blank: the rule `missing`, GW_RULE_REQUIRED or a more specific one); then
 * gw_text_check with max_bytes (GW_RULE_UTF8, GW_RULE_CONTROL_CHAR, GW_RULE_TOO_LONG whose limit
 * is max_bytes). An optional field may be empty or blank. s NULL is "". Returns 0, or GW_EINVAL
 * with *f (may be NULL) naming field and the rule broken; *f is cleared on success. */
GW_MUST_CHECK int gw_text_field(const char *s, size_t max_bytes, bool required,
                                enum gw_rule missing, const char *field, struct gw_fault *f);

/* Writes s[0..n) into out for a terminal or a line-oriented listing: a backslash as "\\", each
 * byte of a C0 control or DEL and each byte that is not well-formed UTF-8 as "\xHH", each other
 * code point gw_text_forbidden_cp names (C1 controls, line and paragraph separators,
 * bidirectional controls, U+FEFF) as "\uHHHH"; the rest as it is. So a stored value can neither
 * start a line of its own, nor reach the terminal as an escape sequence, nor reorder the text
 * around it, and an escaped value is told apart from one that holds the escape's characters.
 * At most cap - 1 bytes and a NUL (cut before an escape that does not fit; nothing when cap is
 * 0). Returns the length the whole escaped text needs (>= cap: it was cut); at most 4 n. */
size_t gw_text_escape(char *out, size_t cap, const char *s, size_t n);

/* Writes v in decimal ("-" for a negative value, no leading zeros) and a NUL into out, as
 * snprintf "%" PRId64 would, without its cost. Returns the length, or 0 with out = "" when cap
 * is too small (21 bytes always suffice). */
size_t gw_text_i64(int64_t v, char *out, size_t cap);

/* Writes the UTC date of t (seconds since the epoch) as "YYYY-MM-DD" and a NUL into out, as
 * gmtime_r and strftime "%Y-%m-%d" would for the years 1000-9999, without their cost. Returns
 * 10, or 0 with out = "" for a date outside those years (where strftime would write something
 * else: "-999-01-01", or more than four digits; no waybill gets there: pickup times before 2000
 * are refused). */
size_t gw_text_day(int64_t t, char out[11]);

/* True when s is a calendar date "YYYY-MM-DD" (proleptic Gregorian: February 29 only of a leap
 * year, a year divisible by 4 and, at a century, by 400) of a year from min_year to max_year
 * (within 1000-9999, gw_text_day's years): every date PostgreSQL's ::date cast reads alike and
 * nothing it raises on. The one check of a day a client sends (a Search's pickup_day, a bulk
 * selector's from_day and to_day). */
bool gw_text_is_day(const char *s, int min_year, int max_year);

/* Copies the string src into out as snprintf(out, cap, "%s", src) would, without its cost: at
 * most cap - 1 bytes and a NUL (nothing when cap is 0). Returns strlen(src), so a result >= cap
 * means it was cut. */
size_t gw_text_copy(char *out, size_t cap, const char *src);

#endif
