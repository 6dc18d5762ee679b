/* utf8.c: the strict UTF-8 validator declared in utf8.h. Follows the well-formed byte sequence
 * table of Unicode 15 §3.9 (Table 3-7), which excludes overlongs, surrogates and > U+10FFFF. */
#include "utf8.h"

#include <stdint.h>
#include <string.h>

#define HIGH_BITS 0x8080808080808080ull

bool gw_utf8_valid(const char *s, size_t n)
{
    const uint8_t *p = (const uint8_t *)s;
    size_t i = 0;

    while (i < n) {
        uint8_t c = p[i];
        uint8_t lo = 0x80, hi = 0xBF;
        size_t more;

        if (c < 0x80) {
            /* ASCII runs eight bytes at a time (memcpy: no alignment assumed) */
            uint64_t w;
            i++;
            while (n - i >= sizeof w) {
                memcpy(&w, p + i, sizeof w);
                if (w & HIGH_BITS)
                    break;
                i += sizeof w;
            }
            continue;
        }
        if (c >= 0xC2 && c <= 0xDF) {
            more = 1;
        } else if (c >= 0xE0 && c <= 0xEF) {
            more = 2;
            if (c == 0xE0)
                lo = 0xA0; /* overlong */
            else if (c == 0xED)
                hi = 0x9F; /* surrogates */
        } else if (c >= 0xF0 && c <= 0xF4) {
            more = 3;
            if (c == 0xF0)
                lo = 0x90; /* overlong */
            else if (c == 0xF4)
                hi = 0x8F; /* > U+10FFFF */
        } else {
            return false; /* continuation byte, C0/C1, F5..FF */
        }
        if (n - i - 1 < more)
            return false;
        if (p[i + 1] < lo || p[i + 1] > hi)
            return false;
        for (size_t k = 2; k <= more; k++)
            if (p[i + k] < 0x80 || p[i + k] > 0xBF)
                return false;
        i += more + 1;
    }
    return true;
}
