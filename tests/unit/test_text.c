/* test_text.c: the safe-text check (core/text.c) against the two-pass rule it replaced, the
 * UTF-8 validator's eight-byte ASCII runs (core/utf8.c), gw_text_copy, the free-text field rule
 * (gw_text_field) and the escaping of stored text for a listing (gw_text_escape). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "text.h"
#include "utf8.h"

/* The rule as it was written before the single pass: gw_utf8_valid over all of s, then each
 * code point for the forbidden ones, then the length. */
static int reference_check(const char *s, size_t n, size_t max_bytes, size_t *chars,
                           enum gw_rule *rule)
{
    size_t count = 0;

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
    if (n > max_bytes) {
        *rule = GW_RULE_TOO_LONG;
        return GW_EINVAL;
    }
    *chars = count;
    return 0;
}

static void same_as_reference(const char *s, size_t n, size_t max_bytes)
{
    enum gw_rule r1 = GW_RULE_NONE, r2 = GW_RULE_NONE;
    size_t c1 = 12345, c2 = 12345;
    int rc1 = gw_text_check(s, n, max_bytes, &c1, &r1);
    int rc2 = reference_check(s, n, max_bytes, &c2, &r2);

    assert_int_equal(rc1, rc2);
    if (rc1 != 0)
        assert_int_equal(r1, r2);
    else
        assert_int_equal(c1, c2);
}

/* Broken UTF-8 after a forbidden code point is reported as UTF-8 (the first pass's verdict),
 * not as a control character. */
static void test_rule_order(void **state)
{
    enum gw_rule rule = GW_RULE_NONE;

    (void)state;
    assert_int_equal(gw_text_check("a\x01"
                                   "b\xff",
                                   4, 100, NULL, &rule),
                     GW_EINVAL);
    assert_int_equal(rule, GW_RULE_UTF8);
    assert_int_equal(gw_text_check("\xe2\x80\xa8x\xe5\xbc", 6, 100, NULL, &rule), GW_EINVAL);
    assert_int_equal(rule, GW_RULE_UTF8); /* U+2028, then a truncated sequence */
    assert_int_equal(gw_text_check("a\x01"
                                   "b",
                                   3, 100, NULL, &rule),
                     GW_EINVAL);
    assert_int_equal(rule, GW_RULE_CONTROL_CHAR);
    assert_int_equal(gw_text_check("abc\x7f", 4, 2, NULL, &rule), GW_EINVAL);
    assert_int_equal(rule, GW_RULE_CONTROL_CHAR); /* before the length */
    assert_int_equal(gw_text_check("abc\xc0\xaf", 5, 2, NULL, &rule), GW_EINVAL);
    assert_int_equal(rule, GW_RULE_UTF8);
    assert_int_equal(gw_text_check("abcd", 4, 3, NULL, &rule), GW_EINVAL);
    assert_int_equal(rule, GW_RULE_TOO_LONG);
    assert_int_equal(gw_text_check(NULL, 1, 3, NULL, &rule), GW_EINVAL);
    assert_int_equal(rule, GW_RULE_UTF8);
    size_t chars = 0;
    assert_int_equal(gw_text_check("\xe5\xbc\xa0\xe4\xb8\x89 Li", 9, 9, &chars, NULL), 0);
    assert_int_equal(chars, 5);
    assert_int_equal(gw_text_check(NULL, 0, 0, &chars, NULL), 0);
    assert_int_equal(chars, 0);
}

/* Every string of up to 3 bytes from a set of interesting bytes, and pseudo-random strings of
 * interesting pieces up to 40 bytes: the same verdict, rule and count as the reference. */
static void test_same_as_two_passes(void **state)
{
    static const unsigned char bytes[] = {0x00, 0x01, 0x1f, 0x20, 'a',  0x7e, 0x7f, 0x80,
                                          0x85, 0x9f, 0xa0, 0xa8, 0xaa, 0xbf, 0xc0, 0xc1,
                                          0xc2, 0xdf, 0xe0, 0xe1, 0xe2, 0xe3, 0xe5, 0xec,
                                          0xed, 0xee, 0xef, 0xf0, 0xf4, 0xf5, 0xff};
    static const char *const pieces[] = {"a",
                                         "Z",
                                         " ",
                                         "\x01",
                                         "\x7f",
                                         "\t",
                                         "\xc2\x85",
                                         "\xc2\xa0",
                                         "\xe2\x80\xa8",
                                         "\xe2\x80\xae",
                                         "\xe2\x81\xa6",
                                         "\xef\xbb\xbf",
                                         "\xe5\xbc\xa0",
                                         "\xf0\x9f\x98\x80",
                                         "\xed\xa0\x80",
                                         "\xe0\x80\xaf",
                                         "\xf4\x90\x80\x80",
                                         "\xe5\xbc",
                                         "\x80",
                                         "\xff",
                                         "abcdefgh",
                                         "12345678",
                                         "\xe1\x80\x80",
                                         "\xec\xbf\xbf",
                                         "\xee\x80\x80",
                                         "\xe5\x41\xa0",
                                         "\xe5\xbc\x41"};
    const size_t nb = sizeof bytes, np = sizeof pieces / sizeof pieces[0];
    char s[64];
    uint32_t x = 2463534242u;

    (void)state;
    for (size_t i = 0; i < nb; i++) {
        s[0] = (char)bytes[i];
        same_as_reference(s, 1, 8);
        for (size_t j = 0; j < nb; j++) {
            s[1] = (char)bytes[j];
            same_as_reference(s, 2, 8);
            for (size_t k = 0; k < nb; k++) {
                s[2] = (char)bytes[k];
                same_as_reference(s, 3, 8);
                same_as_reference(s, 3, 2);
            }
        }
    }
    for (int t = 0; t < 20000; t++) {
        size_t n = 0;
        while (n < 40) {
            x ^= x << 13, x ^= x >> 17, x ^= x << 5; /* xorshift32: the same strings every run */
            /* mostly clean pieces, so that a bad one often comes late */
            static const size_t clean[] = {0, 1, 2, 7, 12, 13, 20, 21};
            const char *p = pieces[x % 8 != 0 ? clean[(x >> 8) % 8] : (x >> 8) % np];
            size_t l = strlen(p);
            if (n + l > 40)
                break;
            memcpy(s + n, p, l);
            n += l;
        }
        same_as_reference(s, n, 30);
    }
}

/* The eight-byte ASCII runs: one bad or non-ASCII byte at every offset of a long ASCII string. */
static void test_utf8_ascii_runs(void **state)
{
    char s[80];

    (void)state;
    memset(s, 'a', sizeof s);
    assert_true(gw_utf8_valid(s, sizeof s));
    for (size_t i = 0; i < sizeof s; i++) {
        memset(s, 'a', sizeof s);
        s[i] = (char)0xff;
        assert_false(gw_utf8_valid(s, sizeof s));
        s[i] = (char)0x80; /* lone continuation */
        assert_false(gw_utf8_valid(s, sizeof s));
        if (i + 2 < sizeof s) {
            memcpy(s + i, "\xe5\xbc\xa0", 3);
            assert_true(gw_utf8_valid(s, sizeof s));
            assert_false(gw_utf8_valid(s, i + 2)); /* cut inside the sequence */
        }
        if (i + 3 < sizeof s) {
            memcpy(s + i, "\xed\xa0\x80", 3); /* a surrogate */
            assert_false(gw_utf8_valid(s, sizeof s));
        }
    }
}

static void test_copy(void **state)
{
    char out[8], ref[8];

    (void)state;
    const char *const in[] = {"", "a", "abcdefg", "abcdefgh", "abcdefghijk"};
    for (size_t i = 0; i < sizeof in / sizeof in[0]; i++)
        for (size_t cap = 1; cap <= sizeof out; cap++) {
            memset(out, 'x', sizeof out);
            memset(ref, 'x', sizeof ref);
            int want = snprintf(ref, cap, "%s", in[i]);
            assert_int_equal(gw_text_copy(out, cap, in[i]), (size_t)want);
            assert_memory_equal(out, ref, sizeof out);
        }
    memset(out, 'x', sizeof out);
    assert_int_equal(gw_text_copy(out, 0, "abc"), 3);
    assert_int_equal(out[0], 'x');
}

/* gw_text_is_day: a calendar date, February 29 only of a leap year (divisible by 4, a century
 * only when divisible by 400: 1900 is not, 2000 is, 2024 is, 2025 is not), within the years
 * asked; what PostgreSQL's ::date would raise on ("2025-02-29", "2026-04-31") is refused. */
static void test_is_day(void **state)
{
    static const char *const ok[] = {"2000-02-29", "2024-02-29", "1900-02-28", "2025-02-28",
                                     "2026-04-30", "2026-12-31", "2026-01-01", "1600-02-29"};
    static const char *const bad[] = {
        "1900-02-29", "2025-02-29",  "2100-02-29",  "2026-04-31", "2026-02-30", "2026-13-01",
        "2026-00-10", "2026-01-00",  "2026-01-32",  "2026-1-01",  "2026-01-1",  "2026/01/01",
        "20260101",   "2026-01-01 ", " 2026-01-01", "2026-0a-01", "+026-01-01", "0999-12-31",
        "",           "2026-06-31",  "2026-09-31",  "2026-11-31"};
    int64_t n = 0;

    (void)state;
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
        assert_true(gw_text_is_day(ok[i], 1000, 9999));
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_false(gw_text_is_day(bad[i], 1000, 9999));
    assert_false(gw_text_is_day(NULL, 1000, 9999));
    /* the years asked, both ends inclusive */
    assert_true(gw_text_is_day("2000-01-01", 2000, 2099));
    assert_true(gw_text_is_day("2099-12-31", 2000, 2099));
    assert_false(gw_text_is_day("1999-12-31", 2000, 2099));
    assert_false(gw_text_is_day("2100-01-01", 2000, 2099));
    /* from 1900 to 2100: every day gw_text_day writes is a day, and there are no others */
    for (int64_t t = -2208988800; t < 4133980800; t += 86400) {
        char d[11];

        assert_int_equal(gw_text_day(t, d), 10);
        assert_true(gw_text_is_day(d, 1000, 9999));
    }
    for (int y = 1900; y <= 2100; y++)
        for (int m = 0; m <= 13; m++)
            for (int d = 0; d <= 32; d++) {
                char s[16];

                snprintf(s, sizeof s, "%04d-%02d-%02d", y, m, d);
                n += gw_text_is_day(s, 1000, 9999);
            }
    assert_int_equal(n, (4133980800 + 2208988800) / 86400);
}

static void same_day(int64_t t)
{
    char want[16], got[11];
    time_t tt = (time_t)t;
    struct tm tm;

    if (gmtime_r(&tt, &tm) == NULL || strftime(want, 11, "%Y-%m-%d", &tm) != 10)
        want[0] = '\0';
    memset(got, 'x', sizeof got);
    assert_int_equal(gw_text_day(t, got), strlen(want));
    assert_string_equal(got, want);
}

/* gw_text_day writes what gmtime_r and strftime "%Y-%m-%d" write: every day from 1900 to 2200
 * at its first and last second, every 13th day from the year 900 to 10100 around midnight, and
 * the extremes. */
static void test_day(void **state)
{
    const int64_t day = 86400;

    (void)state;
    for (int64_t d = -25567; d <= 84006; d++) {
        same_day(d * day);
        same_day(d * day + day - 1);
    }
    for (int64_t d = -391000; d <= 2970000; d += 13) {
        same_day(d * day - 1);
        same_day(d * day);
        same_day(d * day + 43200);
    }
    same_day(INT64_MAX);
    same_day(INT64_MIN);
    same_day(INT64_MAX / 2);
    same_day(-INT64_MAX / 2);
    same_day(0);
    same_day(-1);
}

/* gw_text_field: blank before the encoding, the encoding before the length; the field and the
 * bound named; an optional field may be blank. */
static void test_field(void **state)
{
    struct gw_fault f;
    char msg[160];

    (void)state;
    assert_int_equal(gw_text_field("bob", 64, true, GW_RULE_REQUIRED, "person", &f), 0);
    assert_int_equal(f.code, 0);
    assert_int_equal(gw_text_field(NULL, 64, false, GW_RULE_REQUIRED, "comment", &f), 0);
    assert_int_equal(gw_text_field("   ", 64, false, GW_RULE_REQUIRED, "comment", &f), 0);
    assert_int_equal(gw_text_field("", 64, true, GW_RULE_REQUIRED, "reason", &f), GW_EINVAL);
    gw_fault_format(&f, msg, sizeof(msg));
    assert_string_equal(msg, "reason: is required");
    assert_int_equal(gw_text_field("   ", 64, true, GW_RULE_BULK_PURPOSE, "purpose", &f),
                     GW_EINVAL);
    assert_int_equal(f.rule, GW_RULE_BULK_PURPOSE);
    assert_string_equal(f.field, "purpose");
    const char *controls[] = {"bob\nx",        "bob\xe2\x80\xaex", "left\n\x1b[2Jx", "a\tb",
                              "\xef\xbb\xbfx", "x\xc2\x85",        "\xe2\x81\xa6x"};
    for (size_t i = 0; i < sizeof(controls) / sizeof(controls[0]); i++) {
        assert_int_equal(gw_text_field(controls[i], 64, true, GW_RULE_REQUIRED, "person", &f),
                         GW_EINVAL);
        gw_fault_format(&f, msg, sizeof(msg));
        assert_string_equal(msg, "person: must not contain control characters");
        assert_int_equal(f.code, GW_EINVAL);
    }
    /* an optional field is checked all the same */
    assert_int_equal(gw_text_field(" \n", 64, false, GW_RULE_REQUIRED, "comment", &f), GW_EINVAL);
    assert_int_equal(f.rule, GW_RULE_CONTROL_CHAR);
    assert_int_equal(gw_text_field("ab\xff", 64, true, GW_RULE_REQUIRED, "agency", &f), GW_EINVAL);
    assert_int_equal(f.rule, GW_RULE_UTF8);
    char big[70];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    assert_int_equal(gw_text_field(big, 64, true, GW_RULE_REQUIRED, "officer", &f), GW_EINVAL);
    gw_fault_format(&f, msg, sizeof(msg));
    assert_string_equal(msg, "officer: is too long (at most 64 bytes)");
    big[64] = '\0';
    assert_int_equal(gw_text_field(big, 64, true, GW_RULE_REQUIRED, "officer", &f), 0);
    assert_int_equal(gw_text_field("x\n", 64, true, GW_RULE_REQUIRED, "officer", NULL), GW_EINVAL);
}

static void escaped(const char *s, size_t n, const char *want)
{
    char out[256];
    size_t need = gw_text_escape(out, sizeof(out), s, n);

    assert_string_equal(out, want);
    assert_int_equal(need, strlen(want));
    assert_true(need <= 4 * n);
}

static void test_escape(void **state)
{
    char out[16];

    (void)state;
    escaped("bob", 3, "bob");
    escaped("", 0, "");
    escaped("王警官 040123", strlen("王警官 040123"), "王警官 040123");
    escaped("bob\nx", 5, "bob\\x0ax");
    escaped("left\n\x1b[2Jx", 10, "left\\x0a\\x1b[2Jx");
    escaped("a\x7f"
            "b\tc\r",
            6, "a\\x7fb\\x09c\\x0d");
    escaped("bob\xe2\x80\xaex", 7, "bob\\u202ex");
    escaped("\xe2\x80\xa8\xe2\x81\xa9\xef\xbb\xbf", 9, "\\u2028\\u2069\\ufeff");
    escaped("x\xc2\x85y", 4, "x\\u0085y");
    escaped("a\\x0ab", 6, "a\\\\x0ab");
    escaped("\xff\xe2\x80", 3, "\\xff\\xe2\\x80"); /* not UTF-8: each byte */
    escaped("a\0b", 3, "a\\x00b");
    /* the whole table of bytes below U+0080: nothing forbidden comes out raw */
    for (unsigned c = 0; c < 0x80; c++) {
        char in = (char)c, got[8];
        gw_text_escape(got, sizeof(got), &in, 1);
        for (size_t k = 0; got[k]; k++)
            assert_false(gw_text_forbidden_cp((unsigned char)got[k]));
    }
    /* cut at a whole escape, NUL-terminated, the length needed returned */
    assert_int_equal(gw_text_escape(out, 6, "ab\ncd", 5), 8);
    assert_string_equal(out, "ab"); /* the newline's escape needs 4 more bytes */
    assert_int_equal(gw_text_escape(out, 7, "ab\ncd", 5), 8);
    assert_string_equal(out, "ab\\x0a"); /* and "cd" 2 more */
    assert_int_equal(gw_text_escape(out, 4, "abcdef", 6), 6);
    assert_string_equal(out, "abc");
    assert_int_equal(gw_text_escape(NULL, 0, "ab", 2), 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rule_order),
        cmocka_unit_test(test_same_as_two_passes),
        cmocka_unit_test(test_utf8_ascii_runs),
        cmocka_unit_test(test_copy),
        cmocka_unit_test(test_day),
        cmocka_unit_test(test_is_day),
        cmocka_unit_test(test_field),
        cmocka_unit_test(test_escape),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
