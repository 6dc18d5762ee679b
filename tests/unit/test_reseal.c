/* test_reseal.c: a stored record re-sealed under the other suite (reseal.h): it comes out in the
 * format written today (MAC version 3) whatever its own, and every sealed part (wrapped data key,
 * fields_ct) names the new suite; the id, the clear columns and every field value stay; the blind
 * indexes are the new suite's over the normalised values (a phone search under sm finds it);
 * aes -> sm -> aes gives back the very blind indexes and content_mac; a tampered record (version
 * 2 or 3), one whose values no longer validate, and a version 1 row whose stored pickup day
 * re-sealing would change are refused with the part named and nothing handed back; a version 1
 * or 2 row that is consistent comes out as version 3. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "alloc.h"
#include "crypto.h"
#include "keyring.h"
#include "record.h"
#include "reseal.h"
#include "seal.h"
#include "waybill.h"

#define NOW ((int64_t)1795766400) /* 2026-11-27T08:00:00Z */
#define S(lit) ((struct gw_str){(lit), sizeof(lit) - 1})

struct fx {
    char dir[64];
    char path[128];
    struct gw_crypto *cx;
    struct gw_keyring *kr; /* both suites; the suite of new records set per test */
    struct gw_arena *a;
    struct gw_waybill w;
    struct gw_waybill_norm norm;
    struct gw_sealed_waybill row; /* version 3, as written */
    struct gw_sealed_waybill row2; /* version 2, as databases still hold */ /* w sealed under aes */
    uint8_t id[GW_RECORD_ID_LEN];
};

static struct gw_waybill valid(void)
{
    struct gw_waybill w = {0};
    w.waybill_no = S("wg1000000077");
    w.sender.name = S("测试丙");
    w.sender.phone = S("+86 139 0013 9000");
    w.sender.province = S("浙江省");
    w.sender.city = S("杭州市");
    w.sender.district = S("西湖区");
    w.sender.address_detail = S("测试路3号");
    w.sender.id_type = GW_ID_RESIDENT_CARD;
    w.sender.id_number = S("330106199003071236");
    w.sender.gender = GW_GENDER_MALE;
    w.recipient.name = S("样例丁");
    w.recipient.phone = S("010-65521234");
    w.recipient.province = S("北京市");
    w.recipient.city = S("北京市");
    w.recipient.address_detail = S("样例街9号");
    w.item_description = S("茶叶 1 盒");
    w.pickup_time = NOW - 120;
    w.dest_region_code = S("110105");
    w.weight_grams = 800;
    w.service_type = S("standard");
    w.security_level = GW_SECLEVEL_NONE;
    return w;
}

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    char err[256];

    if (f == NULL)
        return -1;
    snprintf(f->dir, sizeof(f->dir), "/tmp/gw-reseal-XXXXXX");
    if (mkdtemp(f->dir) == NULL)
        return -1;
    snprintf(f->path, sizeof(f->path), "%s/keyring", f->dir);
    f->cx = gw_crypto_new();
    f->a = gw_arena_new(1 << 20);
    if (f->cx == NULL || f->a == NULL ||
        gw_keyring_file_init(f->path, GW_SUITE_AES, err, sizeof(err)) != 0 ||
        gw_keyring_file_add_suite(f->path, GW_SUITE_SM, err, sizeof(err)) != 0 ||
        gw_keyring_file_load(f->path, &f->kr, err, sizeof(err)) != 0 ||
        gw_keyring_set_suite(f->kr, GW_SUITE_AES) != 0)
        return -1;
    f->w = valid();
    if (gw_waybill_validate_norm(&f->w, NOW, "waybill", NULL, &f->norm) != 0 ||
        gw_seal_new_id(NULL, f->id) != 0 ||
        gw_seal_waybill(f->cx, f->kr, &f->w, &f->norm, f->id, "a", "courier_a", NOW, f->a,
                        &f->row) != 0 ||
        gw_seal_waybill_version(f->cx, f->kr, &f->w, &f->norm, f->id, "a", "courier_a", NOW,
                                GW_RECORD_MAC_V2, f->a, &f->row2) != 0)
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    char cmd[128];

    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
    if (system(cmd) != 0)
        return -1;
    gw_keyring_free(f->kr);
    gw_arena_free(f->a);
    gw_crypto_free(f->cx);
    free(f);
    return 0;
}

static enum gw_suite suite_of(const struct gw_bytes *b)
{
    enum gw_suite s = 0;
    assert_int_equal(gw_crypto_sealed_suite(b->p, b->n, &s), 0);
    return s;
}

static void assert_all_under(const struct gw_sealed_waybill *w, enum gw_suite want)
{
    enum gw_suite s = 0;

    assert_int_equal(gw_reseal_row_suite(w, &s), 0);
    assert_int_equal(s, want);
    assert_int_equal(w->mac_version, GW_RECORD_MAC_V3);
    assert_int_equal(suite_of(&w->fields_ct), want);
    assert_false(w->has_record_mac);
    for (size_t i = 0; i < GW_COL_COUNT; i++)
        assert_null(w->ct[i].p);
}

static void assert_same_fields(const struct gw_str *a, const struct gw_str *b)
{
    for (size_t i = 0; i < GW_COL_COUNT; i++) {
        assert_int_equal(a[i].n, b[i].n);
        if (a[i].n > 0)
            assert_memory_equal(a[i].p, b[i].p, a[i].n);
    }
}

static void bidx_of(struct fx *f, enum gw_suite s, enum gw_bidx purpose, const char *v,
                    uint8_t out[GW_CRYPTO_BIDX_LEN])
{
    assert_int_equal(gw_crypto_blind_index(f->cx, s, gw_keyring_index_key(f->kr, s), purpose,
                                           (const uint8_t *)v, strlen(v), out),
                     0);
}

static void aes_to_sm(struct fx *f, const struct gw_sealed_waybill *row)
{
    struct gw_sealed_waybill sm;
    struct gw_str before[GW_COL_COUNT], after[GW_COL_COUNT];
    uint8_t want[GW_CRYPTO_BIDX_LEN];
    int bad = 0;

    assert_int_equal(gw_unseal_waybill(f->cx, f->kr, row, f->a, before, &bad), 0);
    assert_int_equal(gw_keyring_set_suite(f->kr, GW_SUITE_SM), 0);
    assert_int_equal(gw_reseal_waybill(f->cx, f->kr, row, f->a, &sm, &bad), 0);
    assert_all_under(&sm, GW_SUITE_SM);
    assert_memory_equal(sm.id, row->id, GW_RECORD_ID_LEN);
    assert_string_equal(sm.origin_branch, "a");
    assert_string_equal(sm.submitted_by, "courier_a");
    assert_string_equal(sm.pickup_day, row->pickup_day);
    assert_int_equal(sm.accepted_at, row->accepted_at);
    assert_int_equal(sm.dek_version, row->dek_version);
    assert_int_equal(sm.kek_version, (int32_t)gw_keyring_current(f->kr, GW_SUITE_SM));
    assert_int_equal(gw_unseal_waybill(f->cx, f->kr, &sm, f->a, after, &bad), 0);
    assert_same_fields(before, after);
    /* the blind indexes are the sm suite's over the normalised values, not the aes ones */
    bidx_of(f, GW_SUITE_SM, GW_BIDX_WAYBILL_NO, "WG1000000077", want);
    assert_memory_equal(sm.wb_bidx, want, sizeof(want));
    assert_memory_not_equal(sm.wb_bidx, row->wb_bidx, sizeof(want));
    bidx_of(f, GW_SUITE_SM, GW_BIDX_PHONE, "13900139000", want);
    assert_true(sm.has_sender_phone_bidx);
    assert_memory_equal(sm.sender_phone_bidx, want, sizeof(want));
    bidx_of(f, GW_SUITE_SM, GW_BIDX_PHONE, "01065521234", want);
    assert_memory_equal(sm.recipient_phone_bidx, want, sizeof(want));
    bidx_of(f, GW_SUITE_SM, GW_BIDX_ID_NUMBER, "330106199003071236", want);
    assert_memory_equal(sm.sender_id_bidx, want, sizeof(want));
    assert_false(sm.has_recipient_id_bidx);
}

static void test_aes_to_sm(void **state)
{
    struct fx *f = *state;

    aes_to_sm(f, &f->row2); /* a row stored before version 3 */
    assert_int_equal(gw_keyring_set_suite(f->kr, GW_SUITE_AES), 0);
    aes_to_sm(f, &f->row);
}

/* aes -> sm -> aes: the deterministic parts come back byte for byte. */
static void test_round_trip_restores_digests(void **state)
{
    struct fx *f = *state;
    struct gw_sealed_waybill sm, aes;
    int bad = 0;

    assert_int_equal(gw_keyring_set_suite(f->kr, GW_SUITE_SM), 0);
    assert_int_equal(gw_reseal_waybill(f->cx, f->kr, &f->row, f->a, &sm, &bad), 0);
    assert_int_equal(gw_keyring_set_suite(f->kr, GW_SUITE_AES), 0);
    assert_int_equal(gw_reseal_waybill(f->cx, f->kr, &sm, f->a, &aes, &bad), 0);
    assert_all_under(&aes, GW_SUITE_AES);
    assert_memory_equal(aes.wb_bidx, f->row.wb_bidx, GW_RECORD_BIDX_LEN);
    assert_memory_equal(aes.sender_phone_bidx, f->row.sender_phone_bidx, GW_RECORD_BIDX_LEN);
    assert_memory_equal(aes.sender_id_bidx, f->row.sender_id_bidx, GW_RECORD_BIDX_LEN);
    assert_memory_equal(aes.content_mac, f->row.content_mac, GW_RECORD_MAC_LEN);
    assert_memory_equal(aes.content_mac, f->row2.content_mac, GW_RECORD_MAC_LEN);
    /* but a new data key: the wrapped key and the ciphertexts differ */
    assert_memory_not_equal(aes.dek_wrapped.p, f->row.dek_wrapped.p, GW_CRYPTO_WRAPPED_DEK_LEN);
}

static void assert_nothing_out(const struct gw_sealed_waybill *out)
{
    assert_null(out->dek_wrapped.p);
    assert_null(out->fields_ct.p);
    for (size_t i = 0; i < GW_COL_COUNT; i++)
        assert_null(out->ct[i].p);
}

static void test_tampered_refused(void **state)
{
    struct fx *f = *state;
    struct gw_sealed_waybill row = f->row2, out;
    uint8_t ct[2048];
    int bad = 0;

    assert_true(row.ct[GW_COL_SENDER_PHONE].n <= sizeof(ct));
    memcpy(ct, row.ct[GW_COL_SENDER_PHONE].p, row.ct[GW_COL_SENDER_PHONE].n);
    ct[20] ^= 1;
    row.ct[GW_COL_SENDER_PHONE].p = ct;
    assert_int_equal(gw_keyring_set_suite(f->kr, GW_SUITE_SM), 0);
    assert_int_equal(gw_reseal_waybill(f->cx, f->kr, &row, f->a, &out, &bad), GW_EDATALOSS);
    assert_int_equal(bad, GW_COL_SENDER_PHONE);
    assert_nothing_out(&out);
    row = f->row2;
    row.weight_grams++; /* a clear column altered: the record MAC */
    assert_int_equal(gw_reseal_waybill(f->cx, f->kr, &row, f->a, &out, &bad), GW_EDATALOSS);
    assert_int_equal(bad, GW_SEAL_PART_RECORD);
    assert_nothing_out(&out);
    /* version 3: the sealed fields, or a clear column, altered */
    row = f->row;
    assert_true(row.fields_ct.n <= sizeof(ct));
    memcpy(ct, row.fields_ct.p, row.fields_ct.n);
    ct[40] ^= 1;
    row.fields_ct.p = ct;
    assert_int_equal(gw_reseal_waybill(f->cx, f->kr, &row, f->a, &out, &bad), GW_EDATALOSS);
    assert_int_equal(bad, GW_SEAL_PART_FIELDS);
    assert_nothing_out(&out);
    row = f->row;
    row.weight_grams++;
    assert_int_equal(gw_reseal_waybill(f->cx, f->kr, &row, f->a, &out, &bad), GW_EDATALOSS);
    assert_int_equal(bad, GW_SEAL_PART_FIELDS);
    assert_nothing_out(&out);
}

/* A record sealed (by an older gateway) with a value today's validation refuses. */
static void test_no_longer_valid_refused(void **state)
{
    struct fx *f = *state;
    struct gw_waybill w = valid();
    struct gw_sealed_waybill row, out;
    int bad = 0;

    w.sender.phone = S("12345"); /* not a phone: sealed without validation */
    assert_int_equal(
        gw_seal_waybill(f->cx, f->kr, &w, &f->norm, f->id, "a", "courier_a", NOW, f->a, &row), 0);
    assert_int_equal(gw_keyring_set_suite(f->kr, GW_SUITE_SM), 0);
    assert_int_equal(gw_reseal_waybill(f->cx, f->kr, &row, f->a, &out, &bad), GW_EINVAL);
    assert_int_equal(bad, GW_RESEAL_PART_RULES);
    assert_nothing_out(&out);
}

/* The version 1 content MAC (rows before the record MAC), rendered independently: every
 * field's value, then five operational fields. */
static void v1_mac(struct fx *f, const struct gw_sealed_waybill *row, const struct gw_str *clear,
                   uint8_t out[GW_RECORD_MAC_LEN])
{
    struct gw_crypto_item it[GW_COL_COUNT + 5];
    char weight[24], level[12];
    size_t i;

    for (i = 0; i < GW_COL_COUNT; i++)
        it[i] =
            (struct gw_crypto_item){gw_col_field[i], (const uint8_t *)clear[i].p, clear[i].n, 0};
    snprintf(weight, sizeof(weight), "%d", (int)row->weight_grams);
    snprintf(level, sizeof(level), "%d", (int)row->security_level);
    it[i++] = (struct gw_crypto_item){"origin_branch", (const uint8_t *)row->origin_branch,
                                      strlen(row->origin_branch), 0};
    it[i++] = (struct gw_crypto_item){"dest_region_code", (const uint8_t *)row->dest_region_code,
                                      strlen(row->dest_region_code), 0};
    it[i++] = (struct gw_crypto_item){"weight_grams", (const uint8_t *)weight, strlen(weight), 0};
    it[i++] = (struct gw_crypto_item){"service_type", (const uint8_t *)row->service_type,
                                      strlen(row->service_type), 0};
    it[i++] = (struct gw_crypto_item){"security_level", (const uint8_t *)level, strlen(level), 0};
    assert_int_equal(gw_crypto_content_mac(f->cx, GW_SUITE_AES,
                                           gw_keyring_content_key(f->kr, GW_SUITE_AES), it, i, out),
                     0);
}

/* A version 1 row comes out as version 3; one whose stored pickup day (not covered by the
 * version 1 MAC) re-sealing would change is refused, nothing handed back. */
static void test_v1_rows(void **state)
{
    struct fx *f = *state;
    struct gw_sealed_waybill row = f->row2, out;
    struct gw_str clear[GW_COL_COUNT];
    int bad = 0;

    assert_int_equal(gw_unseal_waybill(f->cx, f->kr, &f->row2, f->a, clear, &bad), 0);
    row.mac_version = GW_RECORD_MAC_V1;
    memset(row.record_mac, 0, sizeof(row.record_mac));
    row.has_record_mac = false;
    v1_mac(f, &row, clear, row.content_mac);
    assert_int_equal(gw_keyring_set_suite(f->kr, GW_SUITE_SM), 0);
    assert_int_equal(gw_reseal_waybill(f->cx, f->kr, &row, f->a, &out, &bad), 0);
    assert_all_under(&out, GW_SUITE_SM); /* and version 3 */

    row.pickup_day = "2001-01-01";
    assert_int_equal(gw_reseal_waybill(f->cx, f->kr, &row, f->a, &out, &bad), GW_EINTERNAL);
    assert_int_equal(bad, GW_RESEAL_PART_CLEAR);
    assert_nothing_out(&out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_aes_to_sm, setup, teardown),
        cmocka_unit_test_setup_teardown(test_round_trip_restores_digests, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tampered_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_longer_valid_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_v1_rows, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
