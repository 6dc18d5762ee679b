/* text.c: strict UTF-8 decoding and the safe-text rule for the domain modules. Pure: no
 * allocation, no state; never quotes its input in a rule text. */
#include "text.h"

#include <string.h>

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

/* One pass: ASCII bytes are classified inline (the common case); a lead byte goes through
 * gw_text_decode, which refuses exactly what gw_utf8_valid refuses (overlongs, surrogates, values
 * above U+10FFFF, truncated or stray continuation bytes). The rule reported is the one the
 * earlier two passes (gw_utf8_valid over all of s, then the code points) reported: broken UTF-8
 * anywhere wins over a forbidden code point before it, so a forbidden code point is remembered
 * and the scan goes on to the end. */
int gw_text_check(const char *s, size_t n, size_t max_bytes, size_t *chars, enum gw_rule *rule)
{
    const unsigned char *u = (const unsigned char *)s;
    enum gw_rule dummy;
    size_t count = 0;
    bool forbidden = false;

    if (!rule)
        rule = &dummy;
    if (n > 0 && !s) {
        *rule = GW_RULE_UTF8;
        return GW_EINVAL;
    }
    for (size_t i = 0; i < n;) {
        unsigned char c = u[i];
        if (c < 0x80) {
            forbidden |= c < 0x20 || c == 0x7F;
            i++;
        } else if (c >= 0xE1 && c <= 0xEE && c != 0xE2 && c != 0xED && n - i >= 3 &&
                   (u[i + 1] & 0xC0) == 0x80 && (u[i + 2] & 0xC0) == 0x80) {
            /* U+1000-U+1FFF, U+3000-U+CFFF, U+E000-U+EFFF (most CJK text): any two continuation
             * bytes make a valid code point (overlongs need lead E0, surrogates ED) and none of
             * these is forbidden (those of three bytes have leads E2 and EF) */
            i += 3;
        } else {
            uint32_t cp;
            size_t l = gw_text_decode(s + i, n - i, &cp);
            if (l == 0) {
                *rule = GW_RULE_UTF8;
                return GW_EINVAL;
            }
            forbidden |= gw_text_forbidden_cp(cp);
            i += l;
        }
        count++;
    }
    if (forbidden) {
        *rule = GW_RULE_CONTROL_CHAR;
        return GW_EINVAL;
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

int gw_text_field(const char *s, size_t max_bytes, bool required, enum gw_rule missing,
                  const char *field, struct gw_fault *f)
{
    enum gw_rule rule = GW_RULE_NONE;
    size_t n;

    if (s == NULL)
        s = "";
    n = strlen(s);
    if (required && gw_text_blank(s, n))
        return gw_fault_set(f, GW_EINVAL, NULL, field, missing);
    if (gw_text_check(s, n, max_bytes, NULL, &rule) != 0) {
        (void)gw_fault_set(f, GW_EINVAL, NULL, field, rule);
        if (f != NULL && rule == GW_RULE_TOO_LONG)
            f->limit = max_bytes;
        return GW_EINVAL;
    }
    gw_fault_clear(f);
    return 0;
}

/* Appends esc (len bytes) at *pos when it fits before the NUL; *need grows either way. Once one
 * escape did not fit, nothing after it is written (the cut is at a whole escape). */
static void put(char *out, size_t cap, size_t *pos, size_t *need, bool *cut, const char *esc,
                size_t len)
{
    if (!*cut && cap > 0 && *pos + len <= cap - 1) {
        memcpy(out + *pos, esc, len);
        *pos += len;
    } else {
        *cut = true;
    }
    *need += len;
}

size_t gw_text_escape(char *out, size_t cap, const char *s, size_t n)
{
    static const char hexd[] = "0123456789abcdef";
    const unsigned char *u = (const unsigned char *)s;
    size_t pos = 0, need = 0, i = 0;
    bool cut = false;
    char esc[8];

    while (i < n) {
        uint32_t cp = u[i];
        size_t l = u[i] < 0x80 ? 1 : gw_text_decode(s + i, n - i, &cp);

        if (l == 0 || (cp < 0x80 && gw_text_forbidden_cp(cp))) {
            esc[0] = '\\', esc[1] = 'x', esc[2] = hexd[u[i] >> 4], esc[3] = hexd[u[i] & 15];
            put(out, cap, &pos, &need, &cut, esc, 4);
            i++;
        } else if (gw_text_forbidden_cp(cp)) {
            esc[0] = '\\', esc[1] = 'u';
            for (int k = 0; k < 4; k++)
                esc[2 + k] = hexd[(cp >> (12 - 4 * k)) & 15];
            put(out, cap, &pos, &need, &cut, esc, 6);
            i += l;
        } else if (cp == '\\') {
            put(out, cap, &pos, &need, &cut, "\\\\", 2);
            i++;
        } else {
            put(out, cap, &pos, &need, &cut, s + i, l);
            i += l;
        }
    }
    if (cap > 0)
        out[pos] = '\0';
    return need;
}

size_t gw_text_i64(int64_t v, char *out, size_t cap)
{
    static const char pairs[] =
        "00010203040506070809101112131415161718192021222324252627282930313233"
        "34353637383940414243444546474849505152535455565758596061626364656667"
        "6869707172737475767778798081828384858687888990919293949596979899";
    char tmp[20];
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    size_t n = sizeof tmp, len;

    /* two digits a division, from the right */
    while (u >= 100) {
        unsigned r = (unsigned)(u % 100u);
        u /= 100u;
        tmp[--n] = pairs[2 * r + 1];
        tmp[--n] = pairs[2 * r];
    }
    if (u >= 10) {
        tmp[--n] = pairs[2 * u + 1];
        tmp[--n] = pairs[2 * u];
    } else {
        tmp[--n] = (char)('0' + u);
    }
    len = sizeof tmp - n + (v < 0 ? 1u : 0u);
    if (cap <= len) {
        if (cap > 0)
            out[0] = '\0';
        return 0;
    }
    if (v < 0)
        *out++ = '-';
    memcpy(out, tmp + n, sizeof tmp - n);
    out[sizeof tmp - n] = '\0';
    return len;
}

size_t gw_text_copy(char *out, size_t cap, const char *src)
{
    size_t len = strlen(src);

    if (cap > 0) {
        size_t k = len < cap ? len : cap - 1;
        memcpy(out, src, k);
        out[k] = '\0';
    }
    return len;
}

size_t gw_text_day(int64_t t, char out[11])
{
    /* days to a civil date (proleptic Gregorian; H. Hinnant's days_from_civil, inverted) */
    int64_t days = t / 86400 - (t % 86400 < 0 ? 1 : 0);
    int64_t z = days + 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;                                      /* [0, 146096] */
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365; /* [0, 399] */
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);               /* [0, 365] */
    int64_t mp = (5 * doy + 2) / 153;                                    /* [0, 11], from March */
    int64_t d = doy - (153 * mp + 2) / 5 + 1;
    int64_t m = mp < 10 ? mp + 3 : mp - 9;
    int64_t y = yoe + era * 400 + (m <= 2 ? 1 : 0);

    if (t < -(INT64_C(400) * 146097 * 86400) || t > INT64_C(400) * 146097 * 86400 || y < 1000 ||
        y > 9999) {
        out[0] = '\0';
        return 0;
    }
    out[0] = (char)('0' + y / 1000);
    out[1] = (char)('0' + y / 100 % 10);
    out[2] = (char)('0' + y / 10 % 10);
    out[3] = (char)('0' + y % 10);
    out[4] = '-';
    out[5] = (char)('0' + m / 10);
    out[6] = (char)('0' + m % 10);
    out[7] = '-';
    out[8] = (char)('0' + d / 10);
    out[9] = (char)('0' + d % 10);
    out[10] = '\0';
    return 10;
}

bool gw_text_is_day(const char *s, int min_year, int max_year)
{
    static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int y, m, d;

    if (s == NULL || strlen(s) != 10 || s[4] != '-' || s[7] != '-')
        return false;
    for (int i = 0; i < 10; i++)
        if (i != 4 && i != 7 && (s[i] < '0' || s[i] > '9'))
            return false;
    y = (s[0] - '0') * 1000 + (s[1] - '0') * 100 + (s[2] - '0') * 10 + (s[3] - '0');
    m = (s[5] - '0') * 10 + (s[6] - '0');
    d = (s[8] - '0') * 10 + (s[9] - '0');
    if (y < 1000 || y < min_year || y > max_year || m < 1 || m > 12 || d < 1 || d > mdays[m - 1])
        return false;
    return !(m == 2 && d == 29 && !(y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)));
}
