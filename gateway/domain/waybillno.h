/* waybillno.h: waybill numbers and the number segments issued to branches (Art. 18).
 *
 * The rule (documented in docs and relied on by the store, the CLI and the dev stack):
 *  - A waybill number is 10 to 20 ASCII letters and digits.
 *  - Its PREFIX is the leading run of letters, 0 to 6 of them; the rest, the NUMERIC PART, is
 *    1 to 18 digits (so its value fits a signed 64-bit integer). A letter after a digit is
 *    refused. Hence an all-digit number has at most 18 digits; 19-20 characters need a prefix.
 *  - Letters are case-insensitive: input is normalised to upper case (a scanner that reads
 *    "sf..." and one that reads "SF..." submit the same waybill). The normalised form
 *    (gw_waybillno_normalize) is what is stored, indexed and compared.
 *  - A segment is (branch, prefix, from, to): every number with exactly that prefix whose
 *    numeric value v satisfies from <= v <= to. Leading zeros do not change the value
 *    ("SF007" and "SF7" are both 7) but they are part of the number's identity: they are
 *    distinct waybills with the same numeric value.
 *  - Text form of a segment (CLI, dev stack env WAYGATE_SEGMENT_A/B): "PREFIX:FROM-TO", e.g.
 *    "WG:1000000000-1000999999"; an empty prefix is written ":FROM-TO". FROM and TO are 1 to 18
 *    decimal digits, FROM <= TO.
 * Contract: pure, no allocation; a broken rule is an enum gw_rule (err.c words it, never quoting
 * the number). */
#ifndef GW_WAYBILLNO_H
#define GW_WAYBILLNO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

#define GW_WAYBILLNO_MIN 10
#define GW_WAYBILLNO_MAX 20
#define GW_WAYBILLNO_PREFIX_MAX 6
#define GW_WAYBILLNO_DIGITS_MAX 18

/* Parses s[0..n): prefix_out (GW_WAYBILLNO_PREFIX_MAX + 1 bytes) receives the upper-cased,
 * NUL-terminated prefix ("" when none), *numeric the value of the numeric part.
 * Returns 0 or GW_EINVAL. */
GW_MUST_CHECK int gw_waybillno_parse(const char *s, size_t n,
                                     char prefix_out[GW_WAYBILLNO_PREFIX_MAX + 1],
                                     int64_t *numeric);

/* Same, also giving the broken rule (*rule, may be NULL) and the digit count of the numeric
 * part (*ndigits, may be NULL). Outputs may be NULL. */
GW_MUST_CHECK int gw_waybillno_parse_ex(const char *s, size_t n,
                                        char prefix_out[GW_WAYBILLNO_PREFIX_MAX + 1],
                                        int64_t *numeric, size_t *ndigits, enum gw_rule *rule);

/* The normalised (upper-case) number into out (GW_WAYBILLNO_MAX + 1 bytes), NUL-terminated;
 * *outlen may be NULL. Returns 0 or GW_EINVAL (not a valid number) with *rule (may be NULL) set
 * as gw_waybillno_parse_ex sets it. */
GW_MUST_CHECK int gw_waybillno_normalize(const char *s, size_t n, char out[GW_WAYBILLNO_MAX + 1],
                                         size_t *outlen, enum gw_rule *rule);

/* A segment issued to a branch. branch is NUL-terminated and owned by whoever owns the array. */
struct gw_segment {
    const char *branch;
    char prefix[GW_WAYBILLNO_PREFIX_MAX + 1]; /* upper case, "" for none */
    int64_t from, to;                         /* inclusive, 0 <= from <= to */
};

/* True when (prefix, numeric) lies in one of the segments issued to branch. prefix is compared
 * exactly (pass the upper-cased prefix from gw_waybillno_parse). NULL or empty branch: false. */
bool gw_segment_find(const struct gw_segment *segs, size_t count, const char *branch,
                     const char *prefix, int64_t numeric);

/* True when the two segments share a prefix and their ranges intersect (whatever their
 * branches: a number may belong to one branch only). */
bool gw_segment_overlaps(const struct gw_segment *a, const struct gw_segment *b);

/* Parses the text form "PREFIX:FROM-TO" (prefix letters upper-cased; ASCII spaces around the
 * whole text are not allowed). prefix_out is GW_WAYBILLNO_PREFIX_MAX + 1 bytes.
 * Returns 0 or GW_EINVAL (+ *rule, may be NULL). */
GW_MUST_CHECK int gw_segment_parse_text(const char *s, size_t n,
                                        char prefix_out[GW_WAYBILLNO_PREFIX_MAX + 1], int64_t *from,
                                        int64_t *to, enum gw_rule *rule);

/* Writes "PREFIX:FROM-TO" into out (outsz bytes; 46 always suffice). Returns 0, GW_EINVAL (bad
 * prefix or range) or GW_ETOOBIG. */
GW_MUST_CHECK int gw_segment_format(const char *prefix, int64_t from, int64_t to, char *out,
                                    size_t outsz);

#endif
