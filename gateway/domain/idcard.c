/* idcard.c: format checks and normalisation of identity-document numbers (GB 11643 resident
 * cards and the other document types of enum gw_id_type). Pure: no allocation, no logging, no
 * global state; rule texts are constants and never quote the number. */
#include "idcard.h"

#include <string.h>

#include "text.h"

#define SECONDS_PER_DAY 86400
#define CST_OFFSET (8 * 3600) /* China Standard Time, UTC+08:00, no DST */

bool gw_id_type_valid(int v)
{
    return v >= GW_ID_UNSPECIFIED && v <= GW_ID_TYPE_MAX;
}

bool gw_gender_valid(int v)
{
    return v >= GW_GENDER_UNSPECIFIED && v <= GW_GENDER_FEMALE;
}

static bool all_digits(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!gw_ascii_digit(s[i]))
            return false;
    return true;
}

static int num(const char *s, size_t n)
{
    int v = 0;
    for (size_t i = 0; i < n; i++)
        v = v * 10 + (s[i] - '0');
    return v;
}

/* Province-level codes of GB/T 2260, plus 83 (Taiwan residents' residence permits, which use
 * the resident-card number format). */
static bool province_ok(int p)
{
    return (p >= 11 && p <= 15) || (p >= 21 && p <= 23) || (p >= 31 && p <= 37) ||
           (p >= 41 && p <= 46) || (p >= 50 && p <= 54) || (p >= 61 && p <= 65) || p == 71 ||
           p == 81 || p == 82 || p == 83;
}

static bool leap(int y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static bool date_ok(int y, int m, int d)
{
    static const int mdays[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (m < 1 || m > 12 || d < 1)
        return false;
    int lim = mdays[m - 1] + (m == 2 && leap(y) ? 1 : 0);
    return d <= lim;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil). */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static int64_t floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    if ((a % b != 0) && ((a < 0) != (b < 0)))
        q--;
    return q;
}

/* Birth date rules shared by the resident card and the 2023 foreigner's card. */
static int birth_check(int y, int m, int d, int64_t now, enum gw_rule *rule)
{
    if (!date_ok(y, m, d)) {
        *rule = GW_RULE_ID_BIRTH_DATE;
        return GW_EINVAL;
    }
    if (y < 1900) {
        *rule = GW_RULE_ID_BIRTH_BEFORE_1900;
        return GW_EINVAL;
    }
    int64_t today = floor_div(now + CST_OFFSET, SECONDS_PER_DAY);
    if (days_from_civil(y, m, d) > today) {
        *rule = GW_RULE_ID_BIRTH_FUTURE;
        return GW_EINVAL;
    }
    return 0;
}

char gw_idcard_check_char(const char *d17)
{
    static const int w[17] = {7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2};
    static const char map[] = "10X98765432";
    int sum = 0;
    for (int i = 0; i < 17; i++) {
        if (!gw_ascii_digit(d17[i]))
            return 0;
        sum += (d17[i] - '0') * w[i];
    }
    return map[sum % 11];
}

int gw_idcard_resident_check(const char *s, size_t n, int64_t now, enum gw_gender stated,
                             struct gw_idcard_info *info, enum gw_rule *rule)
{
    enum gw_rule dummy;
    struct gw_idcard_info inf = {0};
    int y, m, d, seq_digit;

    if (!rule)
        rule = &dummy;
    if (!s || (n != 18 && n != 15)) {
        *rule = GW_RULE_ID_RESIDENT_LENGTH;
        return GW_EINVAL;
    }
    if (n == 18) {
        if (!all_digits(s, 17) || !(gw_ascii_digit(s[17]) || gw_ascii_upper(s[17]) == 'X')) {
            *rule = GW_RULE_ID_RESIDENT_FORMAT;
            return GW_EINVAL;
        }
        y = num(s + 6, 4);
        m = num(s + 10, 2);
        d = num(s + 12, 2);
        seq_digit = s[16] - '0';
    } else {
        if (!all_digits(s, 15)) {
            *rule = GW_RULE_ID_LEGACY_DIGITS;
            return GW_EINVAL;
        }
        y = 1900 + num(s + 6, 2);
        m = num(s + 8, 2);
        d = num(s + 10, 2);
        seq_digit = s[14] - '0';
        inf.legacy15 = true;
    }
    if (!province_ok(num(s, 2))) {
        *rule = GW_RULE_ID_REGION;
        return GW_EINVAL;
    }
    int rc = birth_check(y, m, d, now, rule);
    if (rc)
        return rc;
    if (n == 18 && gw_idcard_check_char(s) != gw_ascii_upper(s[17])) {
        *rule = GW_RULE_ID_CHECK_DIGIT;
        return GW_EINVAL;
    }
    inf.year = y;
    inf.month = m;
    inf.day = d;
    inf.gender = (seq_digit % 2) ? GW_GENDER_MALE : GW_GENDER_FEMALE;
    if (stated != GW_GENDER_UNSPECIFIED && stated != inf.gender) {
        *rule = GW_RULE_ID_GENDER_DIGIT;
        return GW_EINVAL;
    }
    if (info)
        *info = inf;
    return 0;
}

int gw_idcard_upgrade15(const char *s, size_t n, char out[19])
{
    if (!s || n != 15 || !all_digits(s, 15))
        return GW_EINVAL;
    memcpy(out, s, 6);
    out[6] = '1';
    out[7] = '9';
    memcpy(out + 8, s + 6, 9);
    out[17] = gw_idcard_check_char(out);
    out[18] = '\0';
    return 0;
}

static int check_passport(const char *s, size_t n, enum gw_rule *rule)
{
    if (n < 5 || n > 17) {
        *rule = GW_RULE_ID_PASSPORT;
        return GW_EINVAL;
    }
    for (size_t i = 0; i < n; i++) {
        if (!gw_ascii_digit(s[i]) && !gw_ascii_alpha(s[i])) {
            *rule = GW_RULE_ID_PASSPORT;
            return GW_EINVAL;
        }
    }
    return 0;
}

static int check_hk_macao(const char *s, size_t n, enum gw_rule *rule)
{
    char c = n ? gw_ascii_upper(s[0]) : 0;
    if ((n != 9 && n != 11) || (c != 'H' && c != 'M') || !all_digits(s + 1, n - 1)) {
        *rule = GW_RULE_ID_HK_MACAO;
        return GW_EINVAL;
    }
    return 0;
}

static int check_taiwan(const char *s, size_t n, enum gw_rule *rule)
{
    if (n == 8 && all_digits(s, 8))
        return 0;
    if (n == 10 && all_digits(s, 8) && (gw_ascii_digit(s[8]) || gw_ascii_alpha(s[8])) &&
        (gw_ascii_digit(s[9]) || gw_ascii_alpha(s[9])))
        return 0;
    *rule = GW_RULE_ID_TAIWAN;
    return GW_EINVAL;
}

static int check_foreign(const char *s, size_t n, int64_t now, enum gw_rule *rule)
{
    if (n == 15) {
        if (!gw_ascii_alpha(s[0]) || !gw_ascii_alpha(s[1]) || !gw_ascii_alpha(s[2]) ||
            !all_digits(s + 3, 12)) {
            *rule = GW_RULE_ID_FOREIGN_LEGACY;
            return GW_EINVAL;
        }
        return 0;
    }
    if (n != 18 || s[0] != '9' || !all_digits(s, 17) ||
        !(gw_ascii_digit(s[17]) || gw_ascii_upper(s[17]) == 'X')) {
        *rule = GW_RULE_ID_FOREIGN;
        return GW_EINVAL;
    }
    if (!province_ok(num(s + 1, 2))) {
        *rule = GW_RULE_ID_REGION;
        return GW_EINVAL;
    }
    int rc = birth_check(num(s + 6, 4), num(s + 10, 2), num(s + 12, 2), now, rule);
    if (rc)
        return rc;
    if (gw_idcard_check_char(s) != gw_ascii_upper(s[17])) {
        *rule = GW_RULE_ID_CHECK_DIGIT;
        return GW_EINVAL;
    }
    return 0;
}

static int check_free_form(const char *s, size_t n, enum gw_rule *rule)
{
    size_t chars = 0;
    if (n == 0 || n > 64 || s[0] == ' ' || s[n - 1] == ' ') {
        *rule = GW_RULE_ID_FREE_FORM;
        return GW_EINVAL;
    }
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t l = gw_text_decode(s + i, n - i, &cp);
        if (l == 0) {
            *rule = GW_RULE_UTF8;
            return GW_EINVAL;
        }
        bool ok = (cp >= 0xA0 && !gw_text_forbidden_cp(cp)) || gw_ascii_digit((char)cp) ||
                  gw_ascii_alpha((char)cp) || cp == ' ' || cp == '-' || cp == '(' || cp == ')';
        if (!ok) {
            *rule = GW_RULE_ID_FREE_FORM;
            return GW_EINVAL;
        }
        i += l;
        chars++;
    }
    if (chars < 4 || chars > 32) {
        *rule = GW_RULE_ID_FREE_FORM;
        return GW_EINVAL;
    }
    return 0;
}

int gw_idcard_check(enum gw_id_type type, const char *s, size_t n, int64_t now,
                    enum gw_gender stated, enum gw_rule *rule)
{
    enum gw_rule dummy;
    if (!rule)
        rule = &dummy;
    if (!s)
        n = 0;
    switch (type) {
    case GW_ID_RESIDENT_CARD:
        return gw_idcard_resident_check(s, n, now, stated, NULL, rule);
    case GW_ID_PASSPORT:
        return check_passport(s, n, rule);
    case GW_ID_HK_MACAO_PERMIT:
        return check_hk_macao(s, n, rule);
    case GW_ID_TAIWAN_PERMIT:
        return check_taiwan(s, n, rule);
    case GW_ID_FOREIGN_PERMANENT_RESIDENT:
        return check_foreign(s, n, now, rule);
    case GW_ID_MILITARY:
    case GW_ID_OTHER:
        return check_free_form(s, n, rule);
    case GW_ID_UNSPECIFIED:
    default:
        *rule = GW_RULE_ID_TYPE_UNKNOWN;
        return GW_EINVAL;
    }
}

int gw_idcard_normalize(enum gw_id_type type, const char *s, size_t n, char *out, size_t outsz,
                        size_t *outlen)
{
    char up[19];
    /* Only structural rules matter here (no date horizon): a far-future `now`. */
    if (gw_idcard_check(type, s, n, INT64_MAX / 2, GW_GENDER_UNSPECIFIED, NULL) != 0)
        return GW_EINVAL;
    if (type == GW_ID_RESIDENT_CARD && n == 15) {
        if (gw_idcard_upgrade15(s, n, up) != 0)
            return GW_EINVAL;
        s = up;
        n = 18;
    }
    if (n > GW_ID_NORM_MAX || outsz < n + 1)
        return GW_ETOOBIG;
    for (size_t i = 0; i < n; i++)
        out[i] = gw_ascii_upper(s[i]);
    out[n] = '\0';
    if (outlen)
        *outlen = n;
    return 0;
}
