/* pwpolicy.c: the password policy (Art. 35) and generated one-time passwords. Pure: no state,
 * no allocation; the randomness comes from OpenSSL's DRBG. Nothing here keeps or logs a
 * password; scratch bytes are wiped. */
#include "pwpolicy.h"
#include "text.h"

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#define FIELD "password"

static const char ALPHABET[] = "abcdefghijklmnopqrstuvwxyz"
                               "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                               "0123456789"
                               "-_.+=@%:";
#define ALPHABET_N (sizeof ALPHABET - 1)
/* largest multiple of ALPHABET_N that fits in a byte: bytes at or above it are drawn again */
#define ACCEPT_BELOW (256 - 256 % ALPHABET_N)
#define MAX_DRAWS 64

enum { CLASS_LOWER = 1, CLASS_UPPER = 2, CLASS_DIGIT = 4, CLASS_OTHER = 8 };

static unsigned class_of(uint32_t cp)
{
    if (cp >= 'a' && cp <= 'z')
        return CLASS_LOWER;
    if (cp >= 'A' && cp <= 'Z')
        return CLASS_UPPER;
    if (cp >= '0' && cp <= '9')
        return CLASS_DIGIT;
    return CLASS_OTHER;
}

static unsigned popcount4(unsigned m)
{
    return (m & 1) + ((m >> 1) & 1) + ((m >> 2) & 1) + ((m >> 3) & 1);
}

static char lower(char c)
{
    return (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
}

/* True when a (NUL-terminated) occurs in s[0..n), ASCII case-insensitively. */
static bool contains_ci(const char *s, size_t n, const char *a)
{
    size_t an = strlen(a);
    if (an == 0 || an > n)
        return false;
    for (size_t i = 0; i + an <= n; i++) {
        size_t j = 0;
        while (j < an && lower(s[i + j]) == lower(a[j]))
            j++;
        if (j == an)
            return true;
    }
    return false;
}

static int refuse(struct gw_fault *f, enum gw_rule rule, unsigned long limit)
{
    int rc = gw_fault_set(f, GW_EINVAL, NULL, FIELD, rule);
    if (f != NULL)
        f->limit = limit;
    return rc;
}

int gw_pwpolicy_check(const char *account, const char *pw, size_t n, struct gw_fault *f)
{
    size_t chars = 0;
    unsigned classes = 0;

    if (pw == NULL)
        pw = "";
    if (n > GW_PWPOLICY_MAX_BYTES)
        return refuse(f, GW_RULE_TOO_LONG, GW_PWPOLICY_MAX_BYTES);
    for (size_t i = 0; i < n;) {
        uint32_t cp = 0;
        size_t k = gw_text_decode(pw + i, n - i, &cp);
        if (k == 0)
            return refuse(f, GW_RULE_UTF8, 0);
        if (cp == 0)
            return refuse(f, GW_RULE_NUL, 0);
        classes |= class_of(cp);
        chars++;
        i += k;
    }
    if (chars < GW_PWPOLICY_MIN_CHARS)
        return refuse(f, GW_RULE_PASSWORD_LENGTH, GW_PWPOLICY_MIN_CHARS);
    if (popcount4(classes) < GW_PWPOLICY_MIN_CLASSES)
        return refuse(f, GW_RULE_PASSWORD_CLASSES, 0);
    if (account != NULL && contains_ci(pw, n, account))
        return refuse(f, GW_RULE_PASSWORD_HAS_ACCOUNT, 0);
    gw_fault_clear(f);
    return 0;
}

/* Fills out[0..n) with characters drawn uniformly from ALPHABET; returns the classes seen, or
 * 0 when the DRBG failed. */
static unsigned draw(char *out, size_t n)
{
    unsigned char buf[64];
    size_t have = 0, used = 0;
    unsigned classes = 0;

    for (size_t i = 0; i < n;) {
        if (used == have) {
            if (RAND_bytes(buf, (int)sizeof buf) != 1) {
                OPENSSL_cleanse(buf, sizeof buf);
                return 0;
            }
            have = sizeof buf;
            used = 0;
        }
        unsigned char b = buf[used++];
        if (b >= ACCEPT_BELOW)
            continue;
        out[i] = ALPHABET[b % ALPHABET_N];
        classes |= class_of((unsigned char)out[i]);
        i++;
    }
    OPENSSL_cleanse(buf, sizeof buf);
    return classes;
}

int gw_pwpolicy_generate(char *out, size_t len)
{
    if (out == NULL || len < GW_PWPOLICY_MIN_CHARS + 1 || len - 1 > GW_PWPOLICY_MAX_BYTES)
        return GW_EINVAL;
    /* Drawing again until all four classes occur keeps the choice uniform over the passwords
     * that have them; at 12 characters one draw lacks a class with probability < 0.6, so 64
     * draws all failing is below 1e-14 (and at 20 characters far below). */
    for (int t = 0; t < MAX_DRAWS; t++) {
        unsigned classes = draw(out, len - 1);
        if (classes == 0)
            break;
        if (classes == (CLASS_LOWER | CLASS_UPPER | CLASS_DIGIT | CLASS_OTHER)) {
            out[len - 1] = '\0';
            return 0;
        }
    }
    OPENSSL_cleanse(out, len);
    return GW_ECRYPTO;
}
