/* test_continuation.c: Search continuations (domain/continuation.h): a round trip gives back the
 * position and the first page's time; any altered character (the time's included), another key,
 * another search or another caller is refused; a genuine one is refused once older than
 * GW_CONT_MAX_AGE_S (the clock is decode's argument: no sleeps). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "continuation.h"
#include "crypto.h"

static const uint8_t key1[GW_CRYPTO_KEY_LEN] = {1, 2, 3, 4};
static const uint8_t key2[GW_CRYPTO_KEY_LEN] = {9, 9, 9};
static const uint8_t bidx[16] = {0xaa, 0xbb, 0xcc};
static const uint8_t id[GW_CONT_ID_LEN] = {0x10, 0x20, 0x30, 0x40, 5, 6, 7, 8, 9, 10, 11, 12};
#define T0 1796000000 /* the first page's time, and the clock given to decode (seconds) */

static struct gw_cont_search search(void)
{
    struct gw_cont_search s = {
        .who = "cert:branch_a", .key_kind = 1, .key = bidx, .key_len = 16, .branch = "a"};
    return s;
}

static void round_trip(void **state)
{
    struct gw_crypto *cx = gw_crypto_new();
    struct gw_cont_search s = search();
    char text[GW_CONT_TEXT_LEN + 1];
    uint8_t got[GW_CONT_ID_LEN];
    int64_t at = 0, iss = 0;

    (void)state;
    assert_int_equal(gw_cont_encode(cx, GW_SUITE_AES, key1, &s, T0, 1795766400, id, text), 0);
    assert_int_equal(strlen(text), GW_CONT_TEXT_LEN);
    assert_int_equal(
        gw_cont_decode(cx, GW_SUITE_AES, key1, &s, text, strlen(text), T0, &iss, &at, got), 0);
    assert_int_equal(at, 1795766400);
    assert_int_equal(iss, T0);
    assert_memory_equal(got, id, GW_CONT_ID_LEN);
    gw_crypto_free(cx);
}

static void every_altered_character_refused(void **state)
{
    struct gw_crypto *cx = gw_crypto_new();
    struct gw_cont_search s = search();
    char text[GW_CONT_TEXT_LEN + 1], bad[GW_CONT_TEXT_LEN + 1];
    uint8_t got[GW_CONT_ID_LEN];
    int64_t at, iss;

    (void)state;
    assert_int_equal(gw_cont_encode(cx, GW_SUITE_AES, key1, &s, T0, 1795766400, id, text), 0);
    for (size_t i = 0; i < GW_CONT_TEXT_LEN; i++) {
        memcpy(bad, text, sizeof(bad));
        bad[i] = bad[i] == '0' ? '1' : '0';
        assert_int_equal(
            gw_cont_decode(cx, GW_SUITE_AES, key1, &s, bad, GW_CONT_TEXT_LEN, T0, &iss, &at, got),
            GW_EINVAL);
    }
    /* upper-case hex, truncation, extension: not the encoder's form */
    memcpy(bad, text, sizeof(bad));
    for (size_t i = 0; i < GW_CONT_TEXT_LEN; i++)
        if (bad[i] >= 'a' && bad[i] <= 'f') {
            bad[i] = (char)(bad[i] - 'a' + 'A');
            break;
        }
    if (strcmp(bad, text) != 0)
        assert_int_equal(
            gw_cont_decode(cx, GW_SUITE_AES, key1, &s, bad, GW_CONT_TEXT_LEN, T0, &iss, &at, got),
            GW_EINVAL);
    assert_int_equal(
        gw_cont_decode(cx, GW_SUITE_AES, key1, &s, text, GW_CONT_TEXT_LEN - 2, T0, &iss, &at, got),
        GW_EINVAL);
    assert_int_equal(gw_cont_decode(cx, GW_SUITE_AES, key1, &s, "", 0, T0, &iss, &at, got),
                     GW_EINVAL);
    gw_crypto_free(cx);
}

static void other_key_search_or_caller_refused(void **state)
{
    struct gw_crypto *cx = gw_crypto_new();
    struct gw_cont_search s = search(), t;
    static const uint8_t other[16] = {0xaa, 0xbb, 0xcd};
    char text[GW_CONT_TEXT_LEN + 1];
    uint8_t got[GW_CONT_ID_LEN];
    int64_t at, iss;

    (void)state;
    assert_int_equal(gw_cont_encode(cx, GW_SUITE_AES, key1, &s, T0, 42, id, text), 0);
    assert_int_equal(
        gw_cont_decode(cx, GW_SUITE_AES, key2, &s, text, GW_CONT_TEXT_LEN, T0, &iss, &at, got),
        GW_EINVAL);
    t = s;
    t.key = other;
    assert_int_equal(
        gw_cont_decode(cx, GW_SUITE_AES, key1, &t, text, GW_CONT_TEXT_LEN, T0, &iss, &at, got),
        GW_EINVAL);
    t = s;
    t.key_kind = 2;
    assert_int_equal(
        gw_cont_decode(cx, GW_SUITE_AES, key1, &t, text, GW_CONT_TEXT_LEN, T0, &iss, &at, got),
        GW_EINVAL);
    t = s;
    t.who = "cert:branch_b";
    assert_int_equal(
        gw_cont_decode(cx, GW_SUITE_AES, key1, &t, text, GW_CONT_TEXT_LEN, T0, &iss, &at, got),
        GW_EINVAL);
    t = s;
    t.branch = "b";
    assert_int_equal(
        gw_cont_decode(cx, GW_SUITE_AES, key1, &t, text, GW_CONT_TEXT_LEN, T0, &iss, &at, got),
        GW_EINVAL);
    t = s;
    t.sides = 1; /* a policy reloaded since: the key now matches one side only */
    assert_int_equal(
        gw_cont_decode(cx, GW_SUITE_AES, key1, &t, text, GW_CONT_TEXT_LEN, T0, &iss, &at, got),
        GW_EINVAL);
    t = s;
    t.level = 1; /* the role's level raised since: records the first page did not count */
    assert_int_equal(
        gw_cont_decode(cx, GW_SUITE_AES, key1, &t, text, GW_CONT_TEXT_LEN, T0, &iss, &at, got),
        GW_EINVAL);
    /* made under the other suite (HMAC-SM3), same key bytes: refused; its own suite accepts it */
    assert_int_equal(
        gw_cont_decode(cx, GW_SUITE_SM, key1, &s, text, GW_CONT_TEXT_LEN, T0, &iss, &at, got),
        GW_EINVAL);
    assert_int_equal(gw_cont_encode(cx, GW_SUITE_SM, key1, &s, T0, 42, id, text), 0);
    assert_int_equal(
        gw_cont_decode(cx, GW_SUITE_SM, key1, &s, text, GW_CONT_TEXT_LEN, T0, &iss, &at, got), 0);
    gw_crypto_free(cx);
}

static void reveals_only_the_position(void **state)
{
    struct gw_crypto *cx = gw_crypto_new();
    struct gw_cont_search s = search();
    char text[GW_CONT_TEXT_LEN + 1], hex[33];

    (void)state;
    assert_int_equal(gw_cont_encode(cx, GW_SUITE_AES, key1, &s, T0, 42, id, text), 0);
    /* the key's blind index is not in the text (only inside the MAC) */
    for (int i = 0; i < 16; i++)
        snprintf(hex + 2 * i, 3, "%02x", bidx[i]);
    assert_null(strstr(text, hex));
    assert_null(strstr(text, "aabbcc"));
    gw_crypto_free(cx);
}

/* A genuine continuation lives GW_CONT_MAX_AGE_S seconds from its first page, either way of the
 * clock; older, it is refused as such (GW_EPRECOND), and a time altered to look fresh fails the
 * MAC (GW_EINVAL). */
static void expires_after_max_age(void **state)
{
    struct gw_crypto *cx = gw_crypto_new();
    struct gw_cont_search s = search();
    char text[GW_CONT_TEXT_LEN + 1], bad[GW_CONT_TEXT_LEN + 1];
    uint8_t got[GW_CONT_ID_LEN];
    int64_t at, iss;
    char hex[17];

    (void)state;
    assert_int_equal(gw_cont_encode(cx, GW_SUITE_AES, key1, &s, T0, 42, id, text), 0);
    /* fresh: at its issue time, and at the last second of its life */
    assert_int_equal(
        gw_cont_decode(cx, GW_SUITE_AES, key1, &s, text, GW_CONT_TEXT_LEN, T0, &iss, &at, got), 0);
    assert_int_equal(gw_cont_decode(cx, GW_SUITE_AES, key1, &s, text, GW_CONT_TEXT_LEN,
                                    T0 + GW_CONT_MAX_AGE_S, &iss, &at, got),
                     0);
    assert_int_equal(iss, T0);
    assert_int_equal(at, 42);
    /* expired: a second later; or issued as far ahead of this clock (another gateway's) */
    assert_int_equal(gw_cont_decode(cx, GW_SUITE_AES, key1, &s, text, GW_CONT_TEXT_LEN,
                                    T0 + GW_CONT_MAX_AGE_S + 1, &iss, &at, got),
                     GW_EPRECOND);
    assert_int_equal(gw_cont_decode(cx, GW_SUITE_AES, key1, &s, text, GW_CONT_TEXT_LEN,
                                    T0 - GW_CONT_MAX_AGE_S - 1, &iss, &at, got),
                     GW_EPRECOND);
    assert_int_equal(gw_cont_decode(cx, GW_SUITE_AES, key1, &s, text, GW_CONT_TEXT_LEN, INT64_MIN,
                                    &iss, &at, got),
                     GW_EPRECOND);
    /* the issue time is the 16 hex characters after the version: made fresh, the MAC fails */
    snprintf(hex, sizeof(hex), "%016llx", (unsigned long long)(T0 + 2 * GW_CONT_MAX_AGE_S));
    memcpy(bad, text, sizeof(bad));
    assert_memory_equal(bad + 2, "000000006b0cc900", 16); /* T0, big endian */
    memcpy(bad + 2, hex, 16);
    assert_int_equal(gw_cont_decode(cx, GW_SUITE_AES, key1, &s, bad, GW_CONT_TEXT_LEN,
                                    T0 + 2 * GW_CONT_MAX_AGE_S, &iss, &at, got),
                     GW_EINVAL);
    /* issue times at the ends of the range: refused, no overflow */
    assert_int_equal(gw_cont_encode(cx, GW_SUITE_AES, key1, &s, INT64_MAX, 42, id, text), 0);
    assert_int_equal(gw_cont_decode(cx, GW_SUITE_AES, key1, &s, text, GW_CONT_TEXT_LEN, INT64_MAX,
                                    &iss, &at, got),
                     GW_EPRECOND);
    assert_int_equal(gw_cont_encode(cx, GW_SUITE_AES, key1, &s, INT64_MIN, 42, id, text), 0);
    assert_int_equal(gw_cont_decode(cx, GW_SUITE_AES, key1, &s, text, GW_CONT_TEXT_LEN, INT64_MIN,
                                    &iss, &at, got),
                     GW_EPRECOND);
    gw_crypto_free(cx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(round_trip),
        cmocka_unit_test(every_altered_character_refused),
        cmocka_unit_test(other_key_search_or_caller_refused),
        cmocka_unit_test(reveals_only_the_position),
        cmocka_unit_test(expires_after_max_age),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
