/* test_audit_rec.c: the canonical encoding of audit records and checkpoints is exactly the one
 * docs/audit-bundle-format.md specifies (golden values computed independently from that text in
 * Python), every field is hashed (changing any one changes the hash), malformed records are
 * refused, and checkpoint signatures verify only for the message signed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "audit_rec.h"

static const uint8_t seed[GW_SIGN_SEED_LEN] = {1, 2, 3};

static struct gw_audit_rec sample(void)
{
    return (struct gw_audit_rec){.actor = "clerk_a",
                                 .role = "branch_clerk",
                                 .peer = "10.0.0.1:5000",
                                 .cert = "branch_a",
                                 .branch = "a",
                                 .action = "reveal",
                                 .object = "0b0e:recipient.phone",
                                 .count = -1,
                                 .purpose = "客户来电",
                                 .outcome = "ok"};
}

static struct gw_audit_link link7(void)
{
    struct gw_audit_link l = {.chain = "gw-a", .seq = 7, .at_us = 1764633600000000};
    for (int i = 0; i < GW_AUDIT_HASH_LEN; i++)
        l.prev_hash[i] = (uint8_t)i;
    return l;
}

static void hex(const uint8_t *p, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++)
        sprintf(out + 2 * i, "%02x", p[i]);
}

static void test_golden_record(void **state)
{
    struct gw_audit_rec r = sample();
    struct gw_audit_link l = link7();
    uint8_t h[GW_AUDIT_HASH_LEN], buf[512];
    char x[2 * GW_AUDIT_HASH_LEN + 1];
    size_t len = 0;

    (void)state;
    assert_int_equal(gw_audit_rec_encode(&r, &l, buf, sizeof buf, &len), 0);
    assert_int_equal(len, 226);
    assert_int_equal(gw_audit_rec_hash(&r, &l, h), 0);
    hex(h, sizeof h, x);
    assert_string_equal(x, "1370132a591764938503993f0a0d70a6dbca5e2444d36c09881b27cae67befe7");
    /* too small a buffer: told the size needed */
    assert_int_equal(gw_audit_rec_encode(&r, &l, buf, 10, &len), GW_ETOOBIG);
    assert_int_equal(len, 226);
}

/* Each field is in the hash: absent and empty differ, and every change moves it. */
static void test_every_field_counts(void **state)
{
    struct gw_audit_link l = link7();
    uint8_t base[GW_AUDIT_HASH_LEN], h[GW_AUDIT_HASH_LEN];
    struct gw_audit_rec r = sample();

    (void)state;
    assert_int_equal(gw_audit_rec_hash(&r, &l, base), 0);
    const char **fields[] = {&r.actor,  &r.role,    &r.peer,        &r.cert,     &r.branch,
                             &r.object, &r.purpose, &r.legal_basis, &r.approval, &r.detail};
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
        const char *keep = *fields[i];
        *fields[i] = keep ? "" : "x";
        if (fields[i] == &r.actor)
            *fields[i] = "clerk_b";
        assert_int_equal(gw_audit_rec_hash(&r, &l, h), 0);
        assert_memory_not_equal(h, base, sizeof h);
        *fields[i] = keep;
    }
    r.count = 0;
    assert_int_equal(gw_audit_rec_hash(&r, &l, h), 0);
    assert_memory_not_equal(h, base, sizeof h);
    r = sample();
    r.confidential = true;
    assert_int_equal(gw_audit_rec_hash(&r, &l, h), 0);
    assert_memory_not_equal(h, base, sizeof h);
    r = sample();
    r.outcome = "refused";
    assert_int_equal(gw_audit_rec_hash(&r, &l, h), 0);
    assert_memory_not_equal(h, base, sizeof h);
    r = sample();
    l.seq = 8;
    assert_int_equal(gw_audit_rec_hash(&r, &l, h), 0);
    assert_memory_not_equal(h, base, sizeof h);
    l = link7();
    l.prev_hash[31] ^= 1;
    assert_int_equal(gw_audit_rec_hash(&r, &l, h), 0);
    assert_memory_not_equal(h, base, sizeof h);
    l = link7();
    l.at_us++;
    assert_int_equal(gw_audit_rec_hash(&r, &l, h), 0);
    assert_memory_not_equal(h, base, sizeof h);
}

static void test_malformed_refused(void **state)
{
    struct gw_audit_rec r = sample();
    char big[GW_AUDIT_TEXT_MAX + 2];

    (void)state;
    assert_int_equal(gw_audit_rec_check(&r), 0);
    r.action = "Reveal";
    assert_int_equal(gw_audit_rec_check(&r), GW_EINVAL);
    r.action = "reveal;drop";
    assert_int_equal(gw_audit_rec_check(&r), GW_EINVAL);
    r = sample();
    r.outcome = NULL;
    assert_int_equal(gw_audit_rec_check(&r), GW_EINVAL);
    r = sample();
    r.actor = "";
    assert_int_equal(gw_audit_rec_check(&r), GW_EINVAL);
    r = sample();
    r.detail = "\xff\xfe";
    assert_int_equal(gw_audit_rec_check(&r), GW_EINVAL);
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    r = sample();
    r.purpose = big;
    assert_int_equal(gw_audit_rec_check(&r), GW_EINVAL);
}

static void test_checkpoint_signature(void **state)
{
    uint8_t head[GW_AUDIT_HASH_LEN] = {0}, msg[256], pub[GW_SIGN_PUB_MAX], sig[GW_SIGN_SIG_MAX];
    char x[2 * sizeof msg + 1], id[65];
    size_t len = 0, publen = 0, siglen = 0;
    const struct gw_sign_key key = {GW_SIGN_ED25519, seed};

    (void)state;
    assert_int_equal(
        gw_audit_checkpoint_msg("gw-a", 7, head, 1764633600000001, msg, sizeof msg, &len), 0);
    hex(msg, len, x);
    assert_string_equal(x, "776179676174652e636865636b706f696e742e763100010000000467772d6101000000"
                           "013701000000200000000000000000000000000000000000000000000000000000000"
                           "000000000010000001031373634363333363030303030303031");
    assert_int_equal(gw_sign(&key, msg, len, sig, &siglen), 0);
    assert_int_equal(gw_sign_public(&key, pub, &publen), 0);
    assert_int_equal(gw_sign_verify(pub, publen, msg, len, sig, siglen), 0);
    assert_int_equal(gw_audit_key_id(pub, publen, id), 0);
    assert_int_equal(strlen(id), 64);
    msg[len - 1] ^= 1; /* another time */
    assert_int_equal(gw_sign_verify(pub, publen, msg, len, sig, siglen), GW_EDATALOSS);
    msg[len - 1] ^= 1;
    sig[0] ^= 1; /* a forged signature */
    assert_int_equal(gw_sign_verify(pub, publen, msg, len, sig, siglen), GW_EDATALOSS);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_golden_record),
        cmocka_unit_test(test_every_field_counts),
        cmocka_unit_test(test_malformed_refused),
        cmocka_unit_test(test_checkpoint_signature),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
