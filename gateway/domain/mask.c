/* mask.c: masked renderings of names, phones, addresses and ID numbers (docs/roles.md). Pure apart
 * from the _dup helpers' allocation; code-point aware (a masked character is one '*'). Every
 * rule hides at least what GB/T 41833-2022 requires, whatever the input length. */
#include "mask.h"

#include <string.h>

#include "alloc.h"
#include "phone.h"
#include "text.h"

/* A bounded output: the first overflow makes the result GW_ETOOBIG. */
struct out {
    char *p;
    size_t cap, len;
    bool over;
};

static void put(struct out *o, const char *s, size_t n)
{
    if (n == 0)
        return;
    if (o->over || o->len + n + 1 > o->cap) {
        o->over = true;
        return;
    }
    memcpy(o->p + o->len, s, n);
    o->len += n;
}

static void stars(struct out *o, size_t k)
{
    for (size_t i = 0; i < k; i++)
        put(o, "*", 1);
}

static int finish(struct out *o, size_t *outlen)
{
    if (o->over) {
        if (o->cap > 0)
            o->p[0] = '\0';
        return GW_ETOOBIG;
    }
    o->p[o->len] = '\0';
    if (outlen)
        *outlen = o->len;
    return 0;
}

static int count_chars(const char *s, size_t n, size_t *chars)
{
    size_t c = 0;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t l = gw_text_decode(s + i, n - i, &cp);
        if (l == 0)
            return GW_EINVAL;
        i += l;
        c++;
    }
    *chars = c;
    return 0;
}

/* Byte offset of the k-th code point (s is valid UTF-8 with at least k code points). */
static size_t offset_of(const char *s, size_t n, size_t k)
{
    size_t i = 0;
    while (k-- > 0 && i < n) {
        uint32_t cp;
        i += gw_text_decode(s + i, n - i, &cp);
    }
    return i;
}

static void put_upper(struct out *o, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char c = gw_ascii_upper(s[i]);
        put(o, &c, 1);
    }
}

static int mask_keep(const char *s, size_t n, size_t kf, size_t kl, bool up, char *out,
                     size_t outsz, size_t *outlen)
{
    struct out o = {out, outsz, 0, false};
    size_t chars;
    if (n > 0 && !s)
        return GW_EINVAL;
    if (count_chars(s, n, &chars) != 0)
        return GW_EINVAL;
    if (kf + kl >= chars) {
        /* nothing would be hidden: hide everything */
        stars(&o, chars);
        return finish(&o, outlen);
    }
    size_t a = offset_of(s, n, kf);
    size_t b = offset_of(s, n, chars - kl);
    if (up) {
        put_upper(&o, s, a);
        stars(&o, chars - kf - kl);
        put_upper(&o, s + b, n - b);
    } else {
        put(&o, s, a);
        stars(&o, chars - kf - kl);
        put(&o, s + b, n - b);
    }
    return finish(&o, outlen);
}

int gw_mask_keep(const char *s, size_t n, size_t keep_first, size_t keep_last, char *out,
                 size_t outsz, size_t *outlen)
{
    return mask_keep(s, n, keep_first, keep_last, false, out, outsz, outlen);
}

/* Common two-character (复姓) surnames, UTF-8. */
static const char *const compound_surnames[] = {
    "欧阳", "司马", "上官", "诸葛", "东方", "皇甫", "尉迟", "公孙", "慕容", "长孙",
    "宇文", "司徒", "司空", "夏侯", "轩辕", "令狐", "端木", "独孤", "南宫", "西门",
    "呼延", "澹台", "公冶", "太史", "申屠", "闻人", "万俟", "钟离", "赫连", "濮阳",
    "第五", "百里", "东郭", "左丘", "拓跋", "单于", "仲孙", "淳于", "巫马", "公西",
};

static bool compound_surname(const char *s, size_t n)
{
    for (size_t i = 0; i < sizeof compound_surnames / sizeof compound_surnames[0]; i++) {
        size_t l = strlen(compound_surnames[i]);
        if (n >= l && memcmp(s, compound_surnames[i], l) == 0)
            return true;
    }
    return false;
}

/* Separators a masked name keeps in place: spaces, the middle dots of transliterated names
 * (U+00B7 ·, U+2027 ‧, U+2022 •, U+30FB ・, U+FF0E ．), the ASCII full stop, hyphen and
 * apostrophe of Latin names. */
static bool name_separator(uint32_t cp)
{
    return cp == ' ' || cp == '.' || cp == '-' || cp == '\'' || cp == 0xB7 || cp == 0x2027 ||
           cp == 0x2022 || cp == 0x30FB || cp == 0xFF0E || cp == 0x3000;
}

/* A Latin-script name: an ASCII letter and nothing beyond Latin Extended-B (U+024F). */
static bool latin_name(const char *s, size_t n)
{
    bool letter = false;

    for (size_t i = 0; i < n;) {
        uint32_t cp;
        i += gw_text_decode(s + i, n - i, &cp);
        if (cp > 0x24F)
            return false;
        if ((cp >= 'A' && cp <= 'Z') || (cp >= 'a' && cp <= 'z'))
            letter = true;
    }
    return letter;
}

/* Names (docs/roles.md): separators stay; a Latin name keeps the first letter of each word
 * ("John Smith" -> "J*** S****"); any other keeps its surname, two characters for a compound
 * one when the name has three or more ("欧阳娜娜" -> "欧阳**"), one otherwise, and nothing after
 * a middle dot ("阿依古丽·买买提" -> "阿***·***"). At least one character is always hidden:
 * when the rule would hide none, every character but the separators is hidden. chars: the code
 * points of s, counted by the caller. */
static int mask_name(const char *s, size_t n, size_t chars, bool all, struct out *o)
{
    bool latin = latin_name(s, n), word_start = true;
    size_t idx = 0, keep, hidden = 0;

    keep = chars >= 3 && compound_surname(s, n) ? 2 : 1;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t l = gw_text_decode(s + i, n - i, &cp);

        if (name_separator(cp)) {
            put(o, s + i, l);
            word_start = true;
        } else {
            if (!all && (latin ? word_start : idx < keep)) {
                put(o, s + i, l);
            } else {
                put(o, "*", 1);
                hidden++;
            }
            word_start = false;
            idx++;
        }
        i += l;
    }
    return hidden > 0 || all ? 0 : 1; /* 1: nothing hidden, mask all */
}

int gw_mask_name(const char *s, size_t n, char *out, size_t outsz, size_t *outlen)
{
    struct out o = {out, outsz, 0, false};
    size_t chars;

    if ((n > 0 && !s) || count_chars(s, n, &chars) != 0)
        return GW_EINVAL;
    if (mask_name(s, n, chars, false, &o) != 0) {
        o.len = 0;
        o.over = false;
        (void)mask_name(s, n, chars, true, &o);
    }
    return finish(&o, outlen);
}

int gw_mask_phone(const char *s, size_t n, char *out, size_t outsz, size_t *outlen)
{
    struct out o = {out, outsz, 0, false};
    char d[GW_PHONE_INPUT_MAX + 1];
    size_t nd = 0, chars;

    if ((n > 0 && !s) || count_chars(s, n, &chars) != 0)
        return GW_EINVAL;
    if (gw_phone_parse(s, n, d, &nd, NULL, NULL) != 0) {
        /* Not a valid phone: mask whatever digits it has (at most the first 32). */
        nd = 0;
        for (size_t i = 0; i < n && nd < sizeof d - 1; i++)
            if (s[i] >= '0' && s[i] <= '9')
                d[nd++] = s[i];
    }
    if (nd < 7) {
        stars(&o, 6);
        return finish(&o, outlen);
    }
    /* hide at least 6: keep the last 4 and, when 11 or more digits, the first one */
    size_t kl = 4, kf = nd >= 11 ? 1 : 0;
    if (nd - kl - kf < 6)
        kl = nd - 6 - kf;
    put(&o, d, kf);
    stars(&o, nd - kf - kl);
    put(&o, d + nd - kl, kl);
    return finish(&o, outlen);
}

int gw_mask_id_number(const char *s, size_t n, char *out, size_t outsz, size_t *outlen)
{
    return mask_keep(s, n, 1, 1, true, out, outsz, outlen);
}

int gw_mask_address(const char *province, size_t pn, const char *city, size_t cn,
                    const char *district, size_t dn, const char *detail, size_t detn, char *out,
                    size_t outsz, size_t *outlen)
{
    struct out o = {out, outsz, 0, false};
    size_t ignore;
    if ((pn && !province) || (cn && !city) || (dn && !district) || (detn && !detail))
        return GW_EINVAL;
    if (count_chars(province, pn, &ignore) || count_chars(city, cn, &ignore) ||
        count_chars(district, dn, &ignore) || count_chars(detail, detn, &ignore))
        return GW_EINVAL; /* the detail is not shown, but bad input is refused all the same */
    put(&o, province, pn);
    put(&o, city, cn);
    put(&o, district, dn);
    if (detn > 0)
        put(&o, "****", 4);
    return finish(&o, outlen);
}

int gw_mask_omit(char *out, size_t outsz, size_t *outlen)
{
    if (!out || outsz < 1)
        return GW_ETOOBIG;
    out[0] = '\0';
    if (outlen)
        *outlen = 0;
    return 0;
}

typedef int (*mask_fn)(const char *, size_t, char *, size_t, size_t *);

static char *dup_with(mask_fn fn, const char *s, size_t n)
{
    size_t cap = GW_MASK_BOUND(n);
    char *p = gw_malloc(cap);
    if (!p)
        return NULL;
    if (fn(s, n, p, cap, NULL) != 0) {
        gw_free_wipe(p, cap);
        return NULL;
    }
    return p;
}

char *gw_mask_name_dup(const char *s, size_t n)
{
    return dup_with(gw_mask_name, s, n);
}

char *gw_mask_phone_dup(const char *s, size_t n)
{
    return dup_with(gw_mask_phone, s, n);
}

char *gw_mask_id_number_dup(const char *s, size_t n)
{
    return dup_with(gw_mask_id_number, s, n);
}

char *gw_mask_address_dup(const char *province, size_t pn, const char *city, size_t cn,
                          const char *district, size_t dn, const char *detail, size_t detn)
{
    size_t cap = GW_MASK_BOUND(pn + cn + dn);
    char *p = gw_malloc(cap);
    if (!p)
        return NULL;
    if (gw_mask_address(province, pn, city, cn, district, dn, detail, detn, p, cap, NULL) != 0) {
        gw_free_wipe(p, cap);
        return NULL;
    }
    return p;
}
