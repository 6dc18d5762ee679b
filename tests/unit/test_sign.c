/* test_sign.c: crypto/sign (Ed25519 and SM2 signatures). Ed25519 against RFC 8032 test 1; SM2
 * against a key and a signature made by the openssl CLI (`genpkey -algorithm SM2`, `pkeyutl
 * -sign -rawin -digest sm3 -pkeyopt distid:1234567812345678`), so the identifier and the Z_A
 * computation are the standard's and not only our own round trip (tests/audit/sm_verify.py
 * checks the same against GB/T 32918.2's example independently of OpenSSL); forged, altered,
 * non-DER and out-of-range signatures and keys refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "sign.h"

static size_t unhex(const char *h, uint8_t *out)
{
    size_t n = strlen(h) / 2;
    for (size_t i = 0; i < n; i++) {
        unsigned v;
        assert_int_equal(sscanf(h + 2 * i, "%2x", &v), 1);
        out[i] = (uint8_t)v;
    }
    return n;
}

/* RFC 8032 7.1, TEST 1 (empty message) */
static const char ED_SK[] = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
static const char ED_PK[] = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";
static const char ED_SIG[] = "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555f"
                             "b8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b";

/* openssl 3.0 CLI: an SM2 key, and its signature over "waygate.checkpoint.v1" */
static const char SM2_D[] = "0fdaedfe7d1bb9f6b017afd2ae95968ab70a79a18a581d6381dabd2bf4cef631";
static const char SM2_PK[] = "0438f66b6c2ba48b56cedc3891f09f6b888ec6ea21e66df4fe92155b965f95e865"
                             "4e8fa4629ab32659594107ffbcc1749b19b687a8bdf6ab24d3fbe1ddfe55e499";
static const char SM2_SIG[] = "3045022100ce7156695ca4e4915a4bd14ffc5faebec05532e67d2d77c51d75118c99"
                              "5464b802204fe89ff81a31e4bd04882c44729f7c75f08eeeb42b85cddc3aaf1c15"
                              "90064300";
static const char SM2_MSG[] = "waygate.checkpoint.v1";

static void ed25519_rfc8032(void **state)
{
    uint8_t sk[32], pk[32], want[64], pub[GW_SIGN_PUB_MAX], sig[GW_SIGN_SIG_MAX];
    size_t publen = 0, siglen = 0;
    (void)state;
    unhex(ED_SK, sk);
    unhex(ED_PK, pk);
    unhex(ED_SIG, want);
    struct gw_sign_key k = {GW_SIGN_ED25519, sk};
    assert_int_equal(gw_sign_public(&k, pub, &publen), 0);
    assert_int_equal(publen, 32);
    assert_memory_equal(pub, pk, 32);
    assert_int_equal(gw_sign(&k, (const uint8_t *)"", 0, sig, &siglen), 0);
    assert_int_equal(siglen, 64);
    assert_memory_equal(sig, want, 64);
    assert_int_equal(gw_sign_verify(pub, publen, (const uint8_t *)"", 0, sig, siglen), 0);
    sig[63] ^= 0x40;
    assert_int_equal(gw_sign_verify(pub, publen, (const uint8_t *)"", 0, sig, siglen),
                     GW_EDATALOSS);
}

static void sm2_matches_openssl_cli(void **state)
{
    uint8_t d[32], pk[65], want_sig[80], pub[GW_SIGN_PUB_MAX];
    size_t publen = 0, n;
    const uint8_t *m = (const uint8_t *)SM2_MSG;
    (void)state;
    unhex(SM2_D, d);
    unhex(SM2_PK, pk);
    n = unhex(SM2_SIG, want_sig);
    struct gw_sign_key k = {GW_SIGN_SM2, d};
    assert_int_equal(gw_sign_public(&k, pub, &publen), 0);
    assert_int_equal(publen, 65);
    assert_memory_equal(pub, pk, 65);
    assert_int_equal(gw_sign_verify(pk, 65, m, strlen(SM2_MSG), want_sig, n), 0);
    /* the message altered, a signature bit flipped, a trailing byte, a truncated DER */
    assert_int_equal(gw_sign_verify(pk, 65, m, strlen(SM2_MSG) - 1, want_sig, n), GW_EDATALOSS);
    want_sig[n - 1] ^= 1;
    assert_int_equal(gw_sign_verify(pk, 65, m, strlen(SM2_MSG), want_sig, n), GW_EDATALOSS);
    want_sig[n - 1] ^= 1;
    want_sig[n] = 0;
    assert_int_equal(gw_sign_verify(pk, 65, m, strlen(SM2_MSG), want_sig, n + 1), GW_EDATALOSS);
    assert_int_equal(gw_sign_verify(pk, 65, m, strlen(SM2_MSG), want_sig, n - 1), GW_EDATALOSS);
    /* another key: the public point's y changed is not on the curve; another point is */
    pk[64] ^= 1;
    assert_int_equal(gw_sign_verify(pk, 65, m, strlen(SM2_MSG), want_sig, n), GW_EDATALOSS);
}

static void sm2_round_trip_randomised(void **state)
{
    uint8_t d[32] = {1, 2, 3}, other[32] = {7}, pub[GW_SIGN_PUB_MAX], pub2[GW_SIGN_PUB_MAX];
    uint8_t s1[GW_SIGN_SIG_MAX], s2[GW_SIGN_SIG_MAX];
    size_t publen = 0, publen2 = 0, l1 = 0, l2 = 0;
    const uint8_t msg[] = "chain gw1 seq 20";
    struct gw_sign_key k = {GW_SIGN_SM2, d}, o = {GW_SIGN_SM2, other};
    (void)state;
    assert_int_equal(gw_sign_public(&k, pub, &publen), 0);
    assert_int_equal(gw_sign_public(&o, pub2, &publen2), 0);
    assert_int_equal(gw_sign(&k, msg, sizeof msg, s1, &l1), 0);
    assert_int_equal(gw_sign(&k, msg, sizeof msg, s2, &l2), 0);
    assert_true(l1 <= GW_SIGN_SIG_MAX && s1[0] == 0x30);
    assert_false(l1 == l2 && memcmp(s1, s2, l1) == 0); /* a fresh k each time */
    assert_int_equal(gw_sign_verify(pub, publen, msg, sizeof msg, s1, l1), 0);
    assert_int_equal(gw_sign_verify(pub, publen, msg, sizeof msg, s2, l2), 0);
    assert_int_equal(gw_sign_verify(pub2, publen2, msg, sizeof msg, s1, l1), GW_EDATALOSS);
    /* an Ed25519 key of the same seed does not verify an SM2 signature, nor the reverse */
    struct gw_sign_key e = {GW_SIGN_ED25519, d};
    uint8_t epub[GW_SIGN_PUB_MAX], esig[GW_SIGN_SIG_MAX];
    size_t epl = 0, esl = 0;
    assert_int_equal(gw_sign_public(&e, epub, &epl), 0);
    assert_int_equal(gw_sign(&e, msg, sizeof msg, esig, &esl), 0);
    assert_int_equal(gw_sign_verify(epub, epl, msg, sizeof msg, s1, l1), GW_EDATALOSS);
    assert_int_equal(gw_sign_verify(pub, publen, msg, sizeof msg, esig, esl), GW_EDATALOSS);
}

static void sm2_scalar_range(void **state)
{
    /* d = 0, d = n - 1 and d >= n are not SM2 private keys (GB/T 32918.1: 1 <= d <= n - 2) */
    uint8_t zero[32] = {0}, n1[32], ff[32], pub[GW_SIGN_PUB_MAX], sig[GW_SIGN_SIG_MAX];
    size_t pl = 0, sl = 0;
    (void)state;
    unhex("FFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFF7203DF6B21C6052B53BBF40939D54122", n1);
    memset(ff, 0xff, sizeof ff);
    const uint8_t *bad[] = {zero, n1, ff};
    for (size_t i = 0; i < 3; i++) {
        struct gw_sign_key k = {GW_SIGN_SM2, bad[i]};
        assert_int_equal(gw_sign_public(&k, pub, &pl), GW_ECRYPTO);
        assert_int_equal(gw_sign(&k, (const uint8_t *)"m", 1, sig, &sl), GW_ECRYPTO);
    }
    n1[31] = 0x21; /* n - 2: the largest valid one */
    struct gw_sign_key k = {GW_SIGN_SM2, n1};
    assert_int_equal(gw_sign_public(&k, pub, &pl), 0);
}

static void names_and_lengths(void **state)
{
    enum gw_sign_alg a;
    uint8_t p65[65] = {4}, p32[32] = {0};
    (void)state;
    assert_string_equal(gw_sign_alg_name(GW_SIGN_ED25519), "ed25519");
    assert_string_equal(gw_sign_alg_name(GW_SIGN_SM2), "sm2");
    assert_int_equal(gw_sign_alg_parse("sm2", 3, &a), 0);
    assert_int_equal(a, GW_SIGN_SM2);
    assert_int_equal(gw_sign_alg_parse("sm2x", 4, &a), GW_EINVAL);
    assert_int_equal(gw_sign_pub_alg(p32, 32, &a), 0);
    assert_int_equal(a, GW_SIGN_ED25519);
    assert_int_equal(gw_sign_pub_alg(p65, 65, &a), 0);
    assert_int_equal(a, GW_SIGN_SM2);
    p65[0] = 2; /* compressed points are not accepted */
    assert_int_equal(gw_sign_pub_alg(p65, 65, &a), GW_EINVAL);
    assert_int_equal(gw_sign_pub_alg(p65, 33, &a), GW_EINVAL);
}

/* gw_sign_pub_valid: a 32-byte key is an Ed25519 key; a 65-byte one must be a point of the SM2
 * curve (an audit_key row or a bundle's key item that is not one is no key: sql/035). */
static void public_key_valid(void **state)
{
    static const uint8_t seed[GW_SIGN_SEED_LEN] = {5, 4, 3, 2, 1};
    struct gw_sign_key k = {GW_SIGN_SM2, seed};
    uint8_t pub[GW_SIGN_PUB_MAX], p32[32] = {0};
    size_t pl = 0;
    (void)state;
    assert_true(gw_sign_pub_valid(p32, 32));
    assert_int_equal(gw_sign_public(&k, pub, &pl), 0);
    assert_int_equal(pl, GW_SIGN_SM2_PUB_LEN);
    assert_true(gw_sign_pub_valid(pub, pl));
    pub[64] ^= 1; /* y changed: off the curve */
    assert_false(gw_sign_pub_valid(pub, pl));
    pub[64] ^= 1;
    pub[0] = 2;
    assert_false(gw_sign_pub_valid(pub, pl));
    assert_false(gw_sign_pub_valid(pub, 33));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(ed25519_rfc8032),           cmocka_unit_test(sm2_matches_openssl_cli),
        cmocka_unit_test(sm2_round_trip_randomised), cmocka_unit_test(sm2_scalar_range),
        cmocka_unit_test(names_and_lengths),         cmocka_unit_test(public_key_valid),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
