/* utf8.h: strict UTF-8 validation (RFC 3629): no overlong forms, no surrogates (U+D800..U+DFFF),
 * nothing above U+10FFFF. NUL bytes are valid UTF-8 and accepted. Pure. */
#ifndef GW_UTF8_H
#define GW_UTF8_H

#include <stdbool.h>
#include <stddef.h>

/* True when s[0..n) is well-formed UTF-8. */
bool gw_utf8_valid(const char *s, size_t n);

#endif
