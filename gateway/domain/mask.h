/* mask.h: masked renderings of PII for the views of docs/roles.md. The defaults go beyond the
 * GB/T 41833-2022 privacy-waybill minimums (name hides >= 1 character, phone >= 6 digits,
 * address at least unit and room):
 *  - name: separators stay in place (spaces, the middle dots · ‧ • ・ ．, '.', '-', '\''); every
 *    other character but the kept ones becomes one '*'.
 *    Chinese (and any non-Latin) names keep the surname: "张三丰" -> "张**", "张三" -> "张*"; a
 *    compound surname (欧阳, 司马, 诸葛, 上官, ...) is kept whole when the name has at least 3
 *    characters ("欧阳娜娜" -> "欧阳**", "欧阳" -> "欧*"). A transliterated name with a middle
 *    dot keeps only its first character ("阿依古丽·买买提" -> "阿***·***"): which part is the
 *    family name varies, and the first character alone identifies least.
 *    Latin names (ASCII letters, nothing beyond U+024F) keep the first letter of each word:
 *    "John Smith" -> "J*** S****", "Jean-Luc" -> "J***-L**".
 *    At least one character is always hidden: "张" -> "*", "J. K." -> "*. *.".
 *  - phone: on the normalised digits (phone.h; +86 etc. removed) keeps the first digit and the
 *    last four: "+86 138-0013-8000" -> "1******8000"; whatever the length, at least 6 digits
 *    are hidden (10 digits -> "******1234"); an input that is not a valid phone is masked from
 *    its digits by the same rule ("******" when it has fewer than 7).
 *  - address: keeps province, city and district and replaces the detail entirely by "****":
 *    "浙江省" "杭州市" "西湖区" "文三路 90 号 3 幢 201" -> "浙江省杭州市西湖区****"; no "****"
 *    when the detail is empty.
 *  - ID number: keeps the first and the last character, '*' in between
 *    ("110105194912310021" -> "1****************1"); letters upper-cased; 1-2 characters ->
 *    all '*'.
 *  - keep: a generic rule (keep the first f and last l characters, at least one hidden).
 *  - omit: the empty string.
 *
 * Every variant refuses input that is not valid UTF-8 with GW_EINVAL and never cuts a code
 * point.
 * Buffer variants write a NUL-terminated string into out (outsz bytes) and its length into
 * *outlen (may be NULL); they return 0, GW_EINVAL (input not valid UTF-8) or GW_ETOOBIG (out too
 * small; out is then left as an empty string when outsz > 0). GW_MASK_BOUND(n) bytes always
 * suffice for an n-byte input (address: the sum of its four lengths).
 * _dup variants return a gw_malloc'd string the caller frees with gw_free_str_wipe (it still
 * holds a surname or four digits), or NULL on GW_EINVAL / allocation failure.
 * Pure: no logging; only the _dup variants allocate. */
#ifndef GW_MASK_H
#define GW_MASK_H

#include <stddef.h>

#include "err.h"

#define GW_MASK_BOUND(n) ((n) + 16)

GW_MUST_CHECK int gw_mask_name(const char *s, size_t n, char *out, size_t outsz, size_t *outlen);
GW_MUST_CHECK int gw_mask_phone(const char *s, size_t n, char *out, size_t outsz, size_t *outlen);
GW_MUST_CHECK int gw_mask_id_number(const char *s, size_t n, char *out, size_t outsz,
                                    size_t *outlen);
GW_MUST_CHECK int gw_mask_address(const char *province, size_t pn, const char *city, size_t cn,
                                  const char *district, size_t dn, const char *detail, size_t detn,
                                  char *out, size_t outsz, size_t *outlen);
GW_MUST_CHECK int gw_mask_keep(const char *s, size_t n, size_t keep_first, size_t keep_last,
                               char *out, size_t outsz, size_t *outlen);
GW_MUST_CHECK int gw_mask_omit(char *out, size_t outsz, size_t *outlen);

char *gw_mask_name_dup(const char *s, size_t n);
char *gw_mask_phone_dup(const char *s, size_t n);
char *gw_mask_id_number_dup(const char *s, size_t n);
char *gw_mask_address_dup(const char *province, size_t pn, const char *city, size_t cn,
                          const char *district, size_t dn, const char *detail, size_t detn);

#endif
