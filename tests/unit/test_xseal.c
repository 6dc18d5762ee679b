/* test_xseal.c: sealing to an X25519 key (crypto/xseal.h): a round trip over several chunks
 * gives the plaintext back to the recipient's private key only; a flipped byte, a truncation at a
 * chunk boundary, a dropped or swapped chunk, or another key fail (GW_EDATALOSS); a low-order
 * recipient key is refused before anything is sealed. The same format is opened independently
 * with python3-cryptography in tests/integration/test_bulk.py. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/evp.h>

#include "alloc.h"
#include "xseal.h"

static const uint8_t id[GW_XSEAL_ID_LEN] = {0xe1, 0xe2, 0xe3};

static void keypair(uint8_t priv[32], uint8_t pub[32])
{
    EVP_PKEY_CTX *kg = EVP_PKEY_CTX_new_id(EVP_PKEY_X25519, NULL);
    EVP_PKEY *k = NULL;
    size_t n = 32;

    assert_non_null(kg);
    assert_int_equal(EVP_PKEY_keygen_init(kg), 1);
    assert_int_equal(EVP_PKEY_keygen(kg, &k), 1);
    assert_int_equal(EVP_PKEY_get_raw_private_key(k, priv, &n), 1);
    n = 32;
    assert_int_equal(EVP_PKEY_get_raw_public_key(k, pub, &n), 1);
    EVP_PKEY_free(k);
    EVP_PKEY_CTX_free(kg);
}

/* Seals pt in chunks of at most `step` bytes (the last one final, possibly empty). */
static uint8_t *seal(const uint8_t pub[32], const uint8_t *pt, size_t len, size_t step,
                     size_t *outlen, size_t *bounds, size_t *nb)
{
    struct gw_xseal *x = NULL;
    uint8_t *out = malloc(GW_XSEAL_HEADER_LEN + len + (len / step + 2) * GW_XSEAL_OVERHEAD);
    size_t off = GW_XSEAL_HEADER_LEN, done = 0;

    assert_non_null(out);
    assert_int_equal(gw_xseal_new(pub, id, out, &x), 0);
    *nb = 0;
    for (;;) {
        size_t k = len - done < step ? len - done : step;
        bool final = done + k == len;
        assert_int_equal(gw_xseal_chunk(x, pt + done, k, final, out + off), 0);
        bounds[(*nb)++] = off;
        off += k + GW_XSEAL_OVERHEAD;
        done += k;
        if (final)
            break;
    }
    assert_int_equal(gw_xseal_chunk(x, pt, 1, true, out + off), GW_EINVAL); /* after final */
    gw_xseal_free(x);
    *outlen = off;
    return out;
}

static void round_trip_and_tampering(void **state)
{
    uint8_t priv[32], pub[32], priv2[32], pub2[32], got_id[GW_XSEAL_ID_LEN], *pt, *back;
    size_t len = 3 * 1000 + 17, outlen, backlen, bounds[16], nb;
    uint8_t *out;

    (void)state;
    keypair(priv, pub);
    keypair(priv2, pub2);
    pt = malloc(len);
    for (size_t i = 0; i < len; i++)
        pt[i] = (uint8_t)(i * 7);
    out = seal(pub, pt, len, 1000, &outlen, bounds, &nb);
    assert_int_equal(nb, 4);
    assert_memory_equal(out, GW_XSEAL_MAGIC, 8);
    assert_memory_equal(out + 8, id, GW_XSEAL_ID_LEN);

    assert_int_equal(gw_xseal_open(priv, out, outlen, got_id, &back, &backlen), 0);
    assert_int_equal(backlen, len);
    assert_memory_equal(back, pt, len);
    assert_memory_equal(got_id, id, GW_XSEAL_ID_LEN);
    gw_free(back);

    /* another key */
    assert_int_equal(gw_xseal_open(priv2, out, outlen, got_id, &back, &backlen), GW_EDATALOSS);
    assert_null(back);
    /* truncated at a chunk boundary: the new last chunk was not sealed as final */
    assert_int_equal(gw_xseal_open(priv, out, bounds[3], got_id, &back, &backlen), GW_EDATALOSS);
    /* one byte short */
    assert_int_equal(gw_xseal_open(priv, out, outlen - 1, got_id, &back, &backlen), GW_EDATALOSS);
    /* a flipped byte in each part: header, a chunk's length, its ciphertext, its tag */
    size_t spots[] = {3, 10, 60, bounds[1] + 2, bounds[1] + 50, bounds[2] - 1};
    for (size_t i = 0; i < sizeof(spots) / sizeof(spots[0]); i++) {
        out[spots[i]] ^= 0x01;
        assert_int_not_equal(gw_xseal_open(priv, out, outlen, got_id, &back, &backlen), 0);
        assert_null(back);
        out[spots[i]] ^= 0x01;
    }
    /* chunks 1 and 2 (same length) swapped */
    {
        size_t cl = bounds[2] - bounds[1];
        uint8_t *tmp = malloc(cl);
        memcpy(tmp, out + bounds[1], cl);
        memmove(out + bounds[1], out + bounds[2], cl);
        memcpy(out + bounds[2], tmp, cl);
        assert_int_equal(gw_xseal_open(priv, out, outlen, got_id, &back, &backlen), GW_EDATALOSS);
        free(tmp);
    }
    free(out);
    free(pt);
}

static void empty_stream(void **state)
{
    uint8_t priv[32], pub[32], got_id[GW_XSEAL_ID_LEN], *back;
    size_t outlen, backlen, bounds[4], nb;
    uint8_t *out;

    (void)state;
    keypair(priv, pub);
    out = seal(pub, (const uint8_t *)"", 0, 1000, &outlen, bounds, &nb);
    assert_int_equal(outlen, GW_XSEAL_HEADER_LEN + GW_XSEAL_OVERHEAD);
    assert_int_equal(gw_xseal_open(priv, out, outlen, got_id, &back, &backlen), 0);
    assert_int_equal(backlen, 0);
    gw_free(back);
    /* the header alone (the final chunk dropped) does not open */
    assert_int_equal(gw_xseal_open(priv, out, GW_XSEAL_HEADER_LEN, got_id, &back, &backlen),
                     GW_EDATALOSS);
    free(out);
}

static void low_order_key_refused(void **state)
{
    uint8_t zero[32] = {0}, header[GW_XSEAL_HEADER_LEN];
    struct gw_xseal *x = (struct gw_xseal *)1;

    (void)state;
    assert_int_equal(gw_xseal_new(zero, id, header, &x), GW_EINVAL);
    assert_null(x);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(round_trip_and_tampering),
        cmocka_unit_test(empty_stream),
        cmocka_unit_test(low_order_key_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
