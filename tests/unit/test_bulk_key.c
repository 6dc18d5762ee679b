/* test_bulk_key.c: a bulk request's recipient key as stored (api_bulk_int.h, sql/040: 64 hex
 * digits) back to its 32 bytes, gw_api_bulk_key_parse: the text gw_api_bulk_key_text writes
 * parses back to the key (either case, as before), anything else, of another length, with a digit
 * that is not hex or none at all, is GW_EINTERNAL, and a refusal leaves nothing on OpenSSL's
 * error queue of the thread (which a later call's error report would pick up). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/err.h>

#include "api_bulk_int.h"
#include "err.h"
#include "xseal.h"

static void round_trip(void **state)
{
    uint8_t key[GW_XSEAL_PUB_LEN], back[GW_XSEAL_PUB_LEN];
    char hex[65], fp[17];

    (void)state;
    for (size_t i = 0; i < sizeof(key); i++)
        key[i] = (uint8_t)(i * 37 + 5);
    assert_int_equal(gw_api_bulk_key_text(key, hex, fp), 0);
    assert_int_equal(gw_api_bulk_key_parse(hex, back), 0);
    assert_memory_equal(back, key, sizeof(key));
    for (size_t i = 0; hex[i] != '\0'; i++) /* upper case too */
        if (hex[i] >= 'a' && hex[i] <= 'f')
            hex[i] = (char)(hex[i] - 'a' + 'A');
    memset(back, 0, sizeof(back));
    assert_int_equal(gw_api_bulk_key_parse(hex, back), 0);
    assert_memory_equal(back, key, sizeof(key));
}

static void not_a_key(void **state)
{
    char hex[70];
    uint8_t key[GW_XSEAL_PUB_LEN];
    static const char bad[] = {'g', ' ', '-', '+', 'x', ':', '\n'};

    (void)state;
    ERR_clear_error();
    assert_int_equal(gw_api_bulk_key_parse(NULL, key), GW_EINTERNAL);
    for (size_t n = 0; n < sizeof(hex) - 1; n++) { /* every length but 64 */
        if (n == 64)
            continue;
        memset(hex, 'a', n);
        hex[n] = '\0';
        assert_int_equal(gw_api_bulk_key_parse(hex, key), GW_EINTERNAL);
    }
    for (size_t i = 0; i < sizeof(bad); i++) {
        for (size_t at = 0; at < 64; at += 21) { /* first, middle, last of a pair */
            memset(hex, '0', 64);
            hex[64] = '\0';
            hex[at] = bad[i];
            assert_int_equal(gw_api_bulk_key_parse(hex, key), GW_EINTERNAL);
        }
    }
    assert_int_equal(ERR_peek_error(), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(round_trip),
        cmocka_unit_test(not_a_key),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
