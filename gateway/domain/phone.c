/* phone.c: mainland mobile and landline numbers: one parser that both validates and produces
 * the normalised digits (so validation and blind index can never disagree). Pure: no
 * allocation, no state; rule texts never quote the number. */
#include "phone.h"
#include "text.h"

#include <string.h>

#define MAX_SEPARATORS 8

/* digits of a national number (no country code): mobile or landline with trunk 0. */
static int classify(const char *d, size_t n, enum gw_phone_kind *kind, enum gw_rule *rule)
{
    if (n > 0 && d[0] == '1') {
        if (n != 11 || d[1] < '3' || d[1] > '9') {
            *rule = GW_RULE_PHONE_MOBILE;
            return GW_EINVAL;
        }
        *kind = GW_PHONE_MOBILE;
        return 0;
    }
    if (n > 0 && d[0] == '0') {
        size_t area; /* digits of the area code, without the trunk 0 */
        if (n < 2 || d[1] == '0') {
            *rule = GW_RULE_PHONE_LANDLINE;
            return GW_EINVAL;
        }
        area = (d[1] == '1' || d[1] == '2') ? 2 : 3;
        if (area == 2 && d[1] == '1' && n > 2 && d[2] != '0') {
            *rule = GW_RULE_PHONE_LANDLINE;
            return GW_EINVAL;
        }
        size_t local = n - 1 - area;
        if (n < 1 + area || local < 7 || local > 8 || d[1 + area] == '0' || d[1 + area] == '1') {
            *rule = GW_RULE_PHONE_LANDLINE;
            return GW_EINVAL;
        }
        *kind = GW_PHONE_LANDLINE;
        return 0;
    }
    *rule = GW_RULE_PHONE_KIND;
    return GW_EINVAL;
}

int gw_phone_parse(const char *s, size_t n, char out[GW_PHONE_NORM_MAX + 1], size_t *outlen,
                   enum gw_phone_kind *kind, enum gw_rule *rule)
{
    enum gw_rule dummy;
    char d[GW_PHONE_INPUT_MAX + 2]; /* room for an inserted trunk 0 */
    size_t nd = 0, seps = 0, i = 0;
    bool intl = false;
    enum gw_phone_kind k;
    int rc;

    if (!rule)
        rule = &dummy;
    if (!s || n == 0) {
        *rule = GW_RULE_REQUIRED;
        return GW_EINVAL;
    }
    if (n > GW_PHONE_INPUT_MAX) {
        *rule = GW_RULE_TOO_LONG;
        return GW_EINVAL;
    }
    if (s[0] == '+') {
        if (n < 3 || s[1] != '8' || s[2] != '6') {
            *rule = GW_RULE_PHONE_COUNTRY;
            return GW_EINVAL;
        }
        intl = true;
        i = 3;
    }
    for (; i < n; i++) {
        char c = s[i];
        if (gw_ascii_digit(c)) {
            d[nd++] = c;
        } else if (c == ' ' || c == '-') {
            /* a separator sits between two digits (or right after "+86") */
            bool after_ok = (nd > 0 || (intl && i == 3)) && i + 1 < n && gw_ascii_digit(s[i + 1]);
            if (!after_ok || ++seps > MAX_SEPARATORS) {
                *rule = GW_RULE_PHONE_CHARS;
                return GW_EINVAL;
            }
        } else {
            *rule = GW_RULE_PHONE_CHARS;
            return GW_EINVAL;
        }
    }
    /* Country code written without '+': 0086..., or 86 + an 11-digit mobile. */
    const char *p = d;
    size_t np = nd;
    if (!intl && np >= 4 && memcmp(p, "0086", 4) == 0) {
        p += 4, np -= 4, intl = true;
    } else if (!intl && np == 13 && p[0] == '8' && p[1] == '6' && p[2] == '1') {
        p += 2, np -= 2, intl = true;
    }
    char nat[GW_PHONE_INPUT_MAX + 2];
    size_t nn = 0;
    /* After a country code a landline drops its trunk 0: restore it. A national number
     * starting with 1 is a mobile, except 10... (Beijing's area code). */
    if (intl && np > 1 && p[0] != '0' && (p[0] != '1' || p[1] == '0'))
        nat[nn++] = '0';
    memcpy(nat + nn, p, np);
    nn += np;
    rc = classify(nat, nn, &k, rule);
    if (rc)
        return rc;
    if (out) {
        memcpy(out, nat, nn);
        out[nn] = '\0';
    }
    if (outlen)
        *outlen = nn;
    if (kind)
        *kind = k;
    return 0;
}

int gw_phone_check(const char *s, size_t n, enum gw_rule *rule)
{
    return gw_phone_parse(s, n, NULL, NULL, NULL, rule);
}

int gw_phone_normalize(const char *s, size_t n, char *out, size_t outsz, size_t *outlen)
{
    char buf[GW_PHONE_NORM_MAX + 1];
    size_t len;
    if (gw_phone_parse(s, n, buf, &len, NULL, NULL) != 0)
        return GW_EINVAL;
    if (!out || outsz < len + 1)
        return GW_ETOOBIG;
    memcpy(out, buf, len + 1);
    if (outlen)
        *outlen = len;
    return 0;
}
