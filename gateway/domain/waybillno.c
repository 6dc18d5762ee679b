/* waybillno.c: the waybill-number grammar (PREFIX letters + NUMERIC digits) and segment
 * membership. Pure: no allocation, no state. Numeric parts are at most 18 digits, so every value
 * handled here is in [0, 10^18) and arithmetic cannot overflow int64_t. */
#include "waybillno.h"
#include "text.h"

#include <stdio.h>
#include <string.h>

/* Leading letters into prefix_out (upper-cased); returns their count or -1 when > 6. */
static int read_prefix(const char *s, size_t n, char *prefix_out)
{
    size_t i = 0;
    while (i < n && gw_ascii_alpha(s[i])) {
        if (i == GW_WAYBILLNO_PREFIX_MAX)
            return -1;
        if (prefix_out)
            prefix_out[i] = gw_ascii_upper(s[i]);
        i++;
    }
    if (prefix_out)
        prefix_out[i] = '\0';
    return (int)i;
}

/* 1..18 digits -> value; -1 when empty, too long or not all digits. */
static int64_t read_number(const char *s, size_t n)
{
    int64_t v = 0;
    if (n == 0 || n > GW_WAYBILLNO_DIGITS_MAX)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (!gw_ascii_digit(s[i]))
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

int gw_waybillno_parse_ex(const char *s, size_t n, char prefix_out[GW_WAYBILLNO_PREFIX_MAX + 1],
                          int64_t *numeric, size_t *ndigits, enum gw_rule *rule)
{
    enum gw_rule dummy;
    char pfx[GW_WAYBILLNO_PREFIX_MAX + 1];
    int np;
    int64_t v;

    if (!rule)
        rule = &dummy;
    if (!s || n < GW_WAYBILLNO_MIN || n > GW_WAYBILLNO_MAX) {
        *rule = GW_RULE_WAYBILLNO_CHARS;
        return GW_EINVAL;
    }
    for (size_t i = 0; i < n; i++) {
        if (!gw_ascii_digit(s[i]) && !gw_ascii_alpha(s[i])) {
            *rule = GW_RULE_WAYBILLNO_CHARS;
            return GW_EINVAL;
        }
    }
    np = read_prefix(s, n, pfx);
    if (np < 0) {
        *rule = GW_RULE_WAYBILLNO_PREFIX;
        return GW_EINVAL;
    }
    for (size_t i = (size_t)np; i < n; i++) {
        if (!gw_ascii_digit(s[i])) {
            *rule = GW_RULE_WAYBILLNO_LETTER_AFTER_DIGIT;
            return GW_EINVAL;
        }
    }
    v = read_number(s + np, n - (size_t)np);
    if (v < 0) {
        *rule = GW_RULE_WAYBILLNO_DIGITS;
        return GW_EINVAL;
    }
    if (prefix_out)
        memcpy(prefix_out, pfx, (size_t)np + 1);
    if (numeric)
        *numeric = v;
    if (ndigits)
        *ndigits = n - (size_t)np;
    return 0;
}

int gw_waybillno_parse(const char *s, size_t n, char prefix_out[GW_WAYBILLNO_PREFIX_MAX + 1],
                       int64_t *numeric)
{
    return gw_waybillno_parse_ex(s, n, prefix_out, numeric, NULL, NULL);
}

int gw_waybillno_normalize(const char *s, size_t n, char out[GW_WAYBILLNO_MAX + 1], size_t *outlen,
                           enum gw_rule *rule)
{
    if (gw_waybillno_parse_ex(s, n, NULL, NULL, NULL, rule) != 0)
        return GW_EINVAL;
    for (size_t i = 0; i < n; i++)
        out[i] = gw_ascii_upper(s[i]);
    out[n] = '\0';
    if (outlen)
        *outlen = n;
    return 0;
}

bool gw_segment_find(const struct gw_segment *segs, size_t count, const char *branch,
                     const char *prefix, int64_t numeric)
{
    if (!segs || !branch || !branch[0] || !prefix)
        return false;
    for (size_t i = 0; i < count; i++) {
        const struct gw_segment *g = &segs[i];
        if (g->branch && strcmp(g->branch, branch) == 0 && strcmp(g->prefix, prefix) == 0 &&
            numeric >= g->from && numeric <= g->to)
            return true;
    }
    return false;
}

bool gw_segment_overlaps(const struct gw_segment *a, const struct gw_segment *b)
{
    return strcmp(a->prefix, b->prefix) == 0 && a->from <= b->to && b->from <= a->to;
}

int gw_segment_parse_text(const char *s, size_t n, char prefix_out[GW_WAYBILLNO_PREFIX_MAX + 1],
                          int64_t *from, int64_t *to, enum gw_rule *rule)
{
    enum gw_rule dummy;
    const char *colon, *dash;
    char pfx[GW_WAYBILLNO_PREFIX_MAX + 1];
    int np;
    int64_t f, t;

    if (!rule)
        rule = &dummy;
    colon = s ? memchr(s, ':', n) : NULL;
    if (!colon) {
        *rule = GW_RULE_SEGMENT_FORMAT;
        return GW_EINVAL;
    }
    size_t plen = (size_t)(colon - s);
    np = read_prefix(s, plen, pfx);
    if (np < 0 || (size_t)np != plen) {
        *rule = GW_RULE_SEGMENT_PREFIX;
        return GW_EINVAL;
    }
    const char *r = colon + 1;
    size_t rlen = n - plen - 1;
    dash = memchr(r, '-', rlen);
    if (!dash) {
        *rule = GW_RULE_SEGMENT_FORMAT;
        return GW_EINVAL;
    }
    f = read_number(r, (size_t)(dash - r));
    t = read_number(dash + 1, rlen - (size_t)(dash - r) - 1);
    if (f < 0 || t < 0) {
        *rule = GW_RULE_SEGMENT_BOUNDS;
        return GW_EINVAL;
    }
    if (f > t) {
        *rule = GW_RULE_SEGMENT_ORDER;
        return GW_EINVAL;
    }
    if (prefix_out)
        memcpy(prefix_out, pfx, (size_t)np + 1);
    if (from)
        *from = f;
    if (to)
        *to = t;
    return 0;
}

int gw_segment_format(const char *prefix, int64_t from, int64_t to, char *out, size_t outsz)
{
    size_t np = prefix ? strlen(prefix) : 0;
    if (np > GW_WAYBILLNO_PREFIX_MAX || from < 0 || from > to || to > 999999999999999999LL)
        return GW_EINVAL;
    for (size_t i = 0; i < np; i++)
        if (prefix[i] < 'A' || prefix[i] > 'Z')
            return GW_EINVAL;
    int w = snprintf(out, outsz, "%s:%lld-%lld", np ? prefix : "", (long long)from, (long long)to);
    if (w < 0 || (size_t)w >= outsz)
        return GW_ETOOBIG;
    return 0;
}
