/* pwpolicy.h: the password policy for people's accounts (Art. 35), shared by the gateway
 * (ChangePassword, CreateAccount) and the CLI (waygatectl accounts):
 *  - valid UTF-8 without NUL, at most GW_PWPOLICY_MAX_BYTES bytes;
 *  - at least GW_PWPOLICY_MIN_CHARS characters, counted as Unicode code points;
 *  - at least three of four classes: ASCII lower-case, ASCII upper-case, ASCII digits, other
 *    (anything else, non-ASCII letters included);
 *  - does not contain the account name (ASCII case-insensitive).
 * "Not one of the last five" needs the stored history and is checked by the caller.
 * Contract: pure (no I/O, no logging, no allocation); the fault never quotes the password. */
#ifndef GW_PWPOLICY_H
#define GW_PWPOLICY_H

#include <stddef.h>

#include "err.h"

#define GW_PWPOLICY_MIN_CHARS 12
#define GW_PWPOLICY_MIN_CLASSES 3
#define GW_PWPOLICY_MAX_BYTES 256
/* Length of a generated password, and the buffer size gw_pwpolicy_generate needs for it. */
#define GW_PWPOLICY_GEN_CHARS 20
#define GW_PWPOLICY_GEN_SIZE (GW_PWPOLICY_GEN_CHARS + 1)

/* Checks pw[0..n) against the policy for the account named account (NUL-terminated; NULL or ""
 * skips the account-name rule). Returns 0, or GW_EINVAL with *f (may be NULL) set at field
 * "password" (a caller may overwrite f->field, e.g. with "new_password") and one of the rules
 * GW_RULE_TOO_LONG (limit GW_PWPOLICY_MAX_BYTES), GW_RULE_UTF8, GW_RULE_NUL,
 * GW_RULE_PASSWORD_LENGTH (limit GW_PWPOLICY_MIN_CHARS), GW_RULE_PASSWORD_CLASSES,
 * GW_RULE_PASSWORD_HAS_ACCOUNT, checked in that order. */
GW_MUST_CHECK int gw_pwpolicy_check(const char *account, const char *pw, size_t n,
                                    struct gw_fault *f);

/* Writes a random password of len - 1 characters and a NUL into out (len bytes; len - 1 in
 * [GW_PWPOLICY_MIN_CHARS, GW_PWPOLICY_MAX_BYTES]; GW_PWPOLICY_GEN_SIZE is the usual size). The
 * characters are drawn uniformly (OpenSSL RAND_bytes, no modulo bias) from ASCII letters, digits
 * and "-_.+=@%:" (no quote, space, '$', '#' or backslash: safe in an env file and a shell), and
 * every one of the four classes occurs. It can still contain a short account name: check it with
 * gw_pwpolicy_check and draw again. Returns 0, GW_EINVAL (bad len; out untouched) or GW_ECRYPTO
 * (out wiped). */
GW_MUST_CHECK int gw_pwpolicy_generate(char *out, size_t len);

#endif
