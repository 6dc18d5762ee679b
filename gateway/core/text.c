/* text.c: strict UTF-8 decoding and the safe-text rule for the domain modules. Pure: no
 * allocation, no state; never quotes its input in a rule text. */
#include "text.h"

#include "utf8.h"

size_t gw_text_decode(const char *s, size_t n, uint32_t *cp)
{
    const unsigned char *u = (const unsigned char *)s;
    unsigned char c;
    size_t len;
    uint32_t v, min;

    if (n == 0)
        return 0;
    c = u[0];
    if (c < 0x80) {
        *cp = c;
        return 1;
    } else if (c >= 0xC2 && c <= 0xDF) {
        len = 2, v = c & 0x1F, min = 0x80;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3, v = c & 0x0F, min = 0x800;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4, v = c & 0x07, min = 0x10000;
    } else {
        return 0; /* continuation byte, C0/C1 (overlong lead) or F5..FF */
    }
    if (n < len)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((u[i] & 0xC0) != 0x80)
            return 0;
        v = (v << 6) | (u[i] & 0x3F);
    }
    if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF))
        return 0;
    *cp = v;
    return len;
}

bool gw_text_forbidden_cp(uint32_t cp)
{
    return cp < 0x20 || cp == 0x7F || (cp >= 0x80 && cp <= 0x9F) || cp == 0x2028 || cp == 0x2029 ||
           (cp >= 0x202A && cp <= 0x202E) || (cp >= 0x2066 && cp <= 0x2069) || cp == 0xFEFF;
}

int gw_text_check(const char *s, size_t n, size_t max_bytes, size_t *chars, enum gw_rule *rule)
{
    enum gw_rule dummy;
    size_t count = 0;

    if (!rule)
        rule = &dummy;
    if ((n > 0 && !s) || !gw_utf8_valid(s, n)) {
        *rule = GW_RULE_UTF8;
        return GW_EINVAL;
    }
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t l = gw_text_decode(s + i, n - i, &cp);
        if (l == 0) {
            *rule = GW_RULE_UTF8;
            return GW_EINVAL;
        }
        if (gw_text_forbidden_cp(cp)) {
            *rule = GW_RULE_CONTROL_CHAR;
            return GW_EINVAL;
        }
        i += l;
        count++;
    }
    /* Length after the encoding checks so that the rule reported for a long binary blob is the
     * encoding, which is the more useful message. */
    if (n > max_bytes) {
        *rule = GW_RULE_TOO_LONG;
        return GW_EINVAL;
    }
    if (chars)
        *chars = count;
    return 0;
}

bool gw_text_blank(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ')
            return false;
    return true;
}

size_t gw_text_i64(int64_t v, char *out, size_t cap)
{
    char tmp[20];
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    size_t n = 0, len;
    char *p = out;

    do {
        tmp[n++] = (char)('0' + (int)(u % 10u));
        u /= 10u;
    } while (u != 0);
    len = n + (v < 0 ? 1u : 0u);
    if (cap <= len) {
        if (cap > 0)
            out[0] = '\0';
        return 0;
    }
    if (v < 0)
        *p++ = '-';
    while (n > 0)
        *p++ = tmp[--n];
    *p = '\0';
    return len;
}
