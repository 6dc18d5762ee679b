/* test_seal.c: envelope sealing of a waybill record (seal.h), in the format written (MAC version
 * 3: the fields sealed together in fields_ct, the clear columns as its AAD) and in the one
 * databases still hold (version 2: a ciphertext per field and the record MAC): round trip; a
 * ciphertext moved to another column or record fails; flipping any one clear column (every entry
 * of gw_rec_cols) fails to open, each caught by the record MAC (2) or the fields' seal (3); a
 * retry keeps its content_mac across the versions; a version 1 row (before the record MAC) still
 * opens and no version can be relabelled into another; a retired KEK answers GW_EPRECOND with
 * nothing opened; validation hands back the normalised values sealing uses. */
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
#include "seal.h"
#include "waybill.h"

#define NOW ((int64_t)1795766400) /* 2026-11-27T08:00:00Z */
#define S(lit) ((struct gw_str){(lit), sizeof(lit) - 1})

struct fx {
    char dir[64];
    char path[128];
    struct gw_crypto *cx;
    struct gw_keyring *kr;
    struct gw_arena *a;
    struct gw_waybill w;
    struct gw_waybill_norm norm;
    struct gw_sealed_waybill row;  /* as written: version 3 */
    struct gw_sealed_waybill row2; /* the same waybill as version 2 rows were written */
    uint8_t id[GW_RECORD_ID_LEN];
};

static struct gw_waybill valid(void)
{
    struct gw_waybill w = {0};
    w.waybill_no = S("wg1000000042");
    w.sender.name = S("测试甲");
    w.sender.phone = S("+86 138 0013 8000");
    w.sender.province = S("浙江省");
    w.sender.city = S("杭州市");
    w.sender.district = S("西湖区");
    w.sender.address_detail = S("测试路1号2幢301室");
    w.sender.id_type = GW_ID_RESIDENT_CARD;
    w.sender.id_number = S("330106199003071236");
    w.sender.gender = GW_GENDER_MALE;
    w.recipient.name = S("样例乙");
    w.recipient.phone = S("010-65521234");
    w.recipient.province = S("北京市");
    w.recipient.city = S("北京市");
    w.recipient.address_detail = S("样例街8号");
    w.item_description = S("书籍 2 本");
    w.pickup_time = NOW - 60;
    w.dest_region_code = S("110105");
    w.weight_grams = 1200;
    w.service_type = S("standard");
    w.security_level = GW_SECLEVEL_SECRET;
    return w;
}

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    char err[256];

    if (f == NULL)
        return -1;
    snprintf(f->dir, sizeof(f->dir), "/tmp/gw-seal-XXXXXX");
    if (mkdtemp(f->dir) == NULL)
        return -1;
    snprintf(f->path, sizeof(f->path), "%s/keyring", f->dir);
    f->cx = gw_crypto_new();
    f->a = gw_arena_new(1 << 20);
    if (f->cx == NULL || f->a == NULL ||
        gw_keyring_file_init(f->path, GW_SUITE_AES, err, sizeof(err)) != 0 ||
        gw_keyring_file_load(f->path, &f->kr, err, sizeof(err)) != 0)
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

static int open_row(struct fx *f, const struct gw_sealed_waybill *row, struct gw_str *clear,
                    int *bad)
{
    return gw_unseal_waybill(f->cx, f->kr, row, f->a, clear, bad);
}

static void assert_field(const struct gw_str *v, const char *want)
{
    assert_int_equal(v->n, strlen(want));
    assert_memory_equal(v->p, want, v->n);
}

static void assert_nothing_opened(const struct gw_str clear[GW_COL_COUNT])
{
    for (size_t i = 0; i < GW_COL_COUNT; i++) {
        assert_null(clear[i].p);
        assert_int_equal(clear[i].n, 0);
    }
}

/* No clear value of the waybill appears in a sealed value. */
static void assert_no_clear(const struct gw_bytes *b)
{
    static const char *const clear[] = {"WG1000000042",       "测试甲",    "138 0013 8000",
                                        "330106199003071236", "样例街8号", "书籍"};
    for (size_t i = 0; i < sizeof(clear) / sizeof(clear[0]); i++)
        assert_null(memmem(b->p, b->n, clear[i], strlen(clear[i])));
}

static void round_trip(struct fx *f, const struct gw_sealed_waybill *row)
{
    struct gw_str clear[GW_COL_COUNT];
    int bad;

    assert_int_equal(open_row(f, row, clear, &bad), 0);
    assert_int_equal(bad, GW_SEAL_PART_NONE);
    assert_field(&clear[GW_COL_WAYBILL_NO], "WG1000000042"); /* the normalised number */
    assert_field(&clear[GW_COL_SENDER_NAME], "测试甲");
    assert_field(&clear[GW_COL_SENDER_PHONE], "+86 138 0013 8000"); /* as typed */
    assert_field(&clear[GW_COL_SENDER_ID_NUMBER], "330106199003071236");
    assert_field(&clear[GW_COL_SENDER_ID_TYPE], "1");
    assert_field(&clear[GW_COL_SENDER_GENDER], "1");
    assert_field(&clear[GW_COL_RECIPIENT_ADDRESS_DETAIL], "样例街8号");
    assert_field(&clear[GW_COL_RECIPIENT_COMPANY], "");
    assert_field(&clear[GW_COL_ITEM_DESCRIPTION], "书籍 2 本");
    assert_field(&clear[GW_COL_PICKUP_TIME], "1795766340");
    for (size_t i = 0; i < GW_COL_COUNT; i++) /* each NUL-terminated */
        assert_int_equal(clear[i].p[clear[i].n], '\0');
    /* the clear columns */
    assert_memory_equal(row->id, f->id, GW_RECORD_ID_LEN);
    assert_int_equal(row->accepted_at, NOW);
    assert_string_equal(row->pickup_day, "2026-11-27");
    assert_string_equal(row->origin_branch, "a");
    assert_string_equal(row->submitted_by, "courier_a");
    assert_int_equal(row->kek_version, 1);
    assert_true(row->has_sender_phone_bidx && row->has_recipient_phone_bidx);
    assert_true(row->has_sender_id_bidx);
    assert_false(row->has_recipient_id_bidx);
}

static void test_round_trip(void **state)
{
    struct fx *f = *state;

    round_trip(f, &f->row);
    assert_int_equal(f->row.mac_version, GW_RECORD_MAC_CURRENT);
    assert_int_equal(GW_RECORD_MAC_CURRENT, GW_RECORD_MAC_V3);
    /* version 3: one sealed value, no per-field ciphertext, no record MAC */
    assert_non_null(f->row.fields_ct.p);
    assert_true(f->row.fields_ct.n > GW_CRYPTO_OVERHEAD + 23 * 13);
    assert_no_clear(&f->row.fields_ct);
    assert_false(f->row.has_record_mac);
    for (size_t i = 0; i < GW_COL_COUNT; i++)
        assert_null(f->row.ct[i].p);

    round_trip(f, &f->row2);
    assert_int_equal(f->row2.mac_version, GW_RECORD_MAC_V2);
    assert_null(f->row2.fields_ct.p);
    assert_true(f->row2.has_record_mac);
    for (size_t i = 0; i < GW_COL_COUNT; i++) {
        assert_true(f->row2.ct[i].n >= GW_CRYPTO_OVERHEAD);
        assert_no_clear(&f->row2.ct[i]);
    }
    /* the same clear columns and digests either way */
    assert_memory_equal(f->row.wb_bidx, f->row2.wb_bidx, GW_RECORD_BIDX_LEN);
    assert_memory_equal(f->row.content_mac, f->row2.content_mac, GW_RECORD_MAC_LEN);
    assert_int_equal(gw_seal_waybill_version(f->cx, f->kr, &f->w, &f->norm, f->id, "a", "c", NOW,
                                             GW_RECORD_MAC_V1, f->a, &f->row2),
                     GW_EINVAL);
}

/* A retried submit (another id, another acceptance time) has the same content_mac (the store's
 * idempotency check), in either version: a retry after the upgrade to version 3 of a waybill
 * stored as version 2 is still the same waybill. Version 2's record_mac is its own. */
static void test_retry_same_content_mac(void **state)
{
    struct fx *f = *state;
    struct gw_sealed_waybill again, again2;
    uint8_t id[GW_RECORD_ID_LEN];

    assert_int_equal(gw_seal_new_id(NULL, id), 0);
    assert_int_equal(
        gw_seal_waybill(f->cx, f->kr, &f->w, &f->norm, id, "a", "courier_a", NOW + 5, f->a, &again),
        0);
    assert_memory_equal(again.content_mac, f->row.content_mac, GW_RECORD_MAC_LEN);
    assert_memory_equal(again.content_mac, f->row2.content_mac, GW_RECORD_MAC_LEN);
    assert_memory_equal(again.wb_bidx, f->row.wb_bidx, GW_RECORD_BIDX_LEN);
    assert_int_equal(gw_seal_waybill_version(f->cx, f->kr, &f->w, &f->norm, id, "a", "courier_a",
                                             NOW + 5, GW_RECORD_MAC_V2, f->a, &again2),
                     0);
    assert_memory_not_equal(again2.record_mac, f->row2.record_mac, GW_RECORD_MAC_LEN);
}

/* Other spellings of the same number, phones and ID number: validation hands back one
 * normalised form, so the blind indexes are equal. */
static void test_normalised_spellings_share_blind_indexes(void **state)
{
    struct fx *f = *state;
    struct gw_waybill w = valid();
    struct gw_waybill_norm norm;
    struct gw_sealed_waybill row;
    uint8_t id[GW_RECORD_ID_LEN];

    w.waybill_no = S("WG1000000042");
    w.sender.phone = S("13800138000");
    w.recipient.phone = S("+86 10 6552 1234");
    w.sender.id_number = S("330106900307123"); /* the same person's 15-digit number */
    assert_int_equal(gw_waybill_validate_norm(&w, NOW, "waybill", NULL, &norm), 0);
    assert_string_equal(norm.waybill_no, "WG1000000042");
    assert_string_equal(norm.prefix, "WG");
    assert_int_equal(norm.numeric, 1000000042);
    assert_string_equal(norm.sender.phone, "13800138000");
    assert_string_equal(norm.recipient.phone, "01065521234");
    assert_int_equal(norm.recipient.id_number_len, 0);
    assert_int_equal(gw_seal_new_id(NULL, id), 0);
    assert_int_equal(
        gw_seal_waybill(f->cx, f->kr, &w, &norm, id, "a", "courier_a", NOW, f->a, &row), 0);
    assert_memory_equal(row.wb_bidx, f->row.wb_bidx, GW_RECORD_BIDX_LEN);
    assert_memory_equal(row.sender_phone_bidx, f->row.sender_phone_bidx, GW_RECORD_BIDX_LEN);
    assert_memory_equal(row.recipient_phone_bidx, f->row.recipient_phone_bidx, GW_RECORD_BIDX_LEN);
    assert_memory_equal(row.sender_id_bidx, f->row.sender_id_bidx, GW_RECORD_BIDX_LEN);
}

/* A ciphertext moved to another column of the record, or from the same column of another
 * record, fails to authenticate at that column (the AAD names column and record). */
static void test_moved_ciphertext_fails(void **state)
{
    struct fx *f = *state;
    struct gw_sealed_waybill row = f->row2, other, other3;
    struct gw_str clear[GW_COL_COUNT];
    uint8_t id[GW_RECORD_ID_LEN];
    int bad;

    row.ct[GW_COL_SENDER_NAME] = f->row2.ct[GW_COL_RECIPIENT_NAME];
    row.ct[GW_COL_RECIPIENT_NAME] = f->row2.ct[GW_COL_SENDER_NAME];
    assert_int_equal(open_row(f, &row, clear, &bad), GW_EDATALOSS);
    assert_int_equal(bad, GW_COL_SENDER_NAME);
    assert_nothing_opened(clear);

    assert_int_equal(gw_seal_new_id(NULL, id), 0);
    assert_int_equal(gw_seal_waybill_version(f->cx, f->kr, &f->w, &f->norm, id, "a", "courier_a",
                                             NOW, GW_RECORD_MAC_V2, f->a, &other),
                     0);
    row = f->row2;
    row.ct[GW_COL_SENDER_PHONE] = other.ct[GW_COL_SENDER_PHONE];
    assert_int_equal(open_row(f, &row, clear, &bad), GW_EDATALOSS);
    assert_int_equal(bad, GW_COL_SENDER_PHONE);
    assert_nothing_opened(clear);

    row = f->row2; /* the other record's wrapped data key */
    row.dek_wrapped = other.dek_wrapped;
    assert_int_equal(open_row(f, &row, clear, &bad), GW_EDATALOSS);
    assert_int_equal(bad, GW_SEAL_PART_DEK);

    /* version 3: another record's fields_ct (same waybill, its own data key and id) */
    assert_int_equal(
        gw_seal_waybill(f->cx, f->kr, &f->w, &f->norm, id, "a", "courier_a", NOW, f->a, &other3),
        0);
    row = f->row;
    row.fields_ct = other3.fields_ct;
    assert_int_equal(open_row(f, &row, clear, &bad), GW_EDATALOSS);
    assert_int_equal(bad, GW_SEAL_PART_FIELDS);
    assert_nothing_opened(clear);
    /* ... also with its data key: the id in the AAD and in the key's own AAD differ */
    row.dek_wrapped = other3.dek_wrapped;
    assert_int_equal(open_row(f, &row, clear, &bad), GW_EDATALOSS);
    assert_nothing_opened(clear);
    /* a version 3 row given a per-field ciphertext besides, or a record MAC, is refused */
    row = f->row;
    row.ct[GW_COL_SENDER_PHONE] = f->row2.ct[GW_COL_SENDER_PHONE];
    assert_int_equal(open_row(f, &row, clear, &bad), GW_EDATALOSS);
    assert_int_equal(bad, GW_COL_SENDER_PHONE);
    row = f->row;
    row.has_record_mac = true;
    assert_int_equal(open_row(f, &row, clear, &bad), GW_EDATALOSS);
    assert_int_equal(bad, GW_SEAL_PART_RECORD);
    assert_nothing_opened(clear);
}

/* Changes clear column c of row to another value (into storage that outlives the call). */
static void flip(struct gw_sealed_waybill *row, const struct gw_rec_col *c, uint8_t *scratch)
{
    char *p = (char *)row + c->off;
    const char *s;
    struct gw_bytes b;
    int16_t i16;
    int32_t i32;
    int64_t i64;

    switch (c->kind) {
    case GW_REC_UUID:
    case GW_REC_BIDX:
    case GW_REC_MAC:
        if (c->has_off >= 0 && !*(bool *)((char *)row + c->has_off)) {
            *(bool *)((char *)row + c->has_off) = true; /* an absent index made present */
            break;
        }
        p[3] ^= 0x01;
        break;
    case GW_REC_BYTES:
        memcpy(&b, p, sizeof(b));
        if (b.p == NULL) { /* absent made present */
            memset(scratch, 1, 64);
            b.n = 64;
        } else {
            memcpy(scratch, b.p, b.n);
            scratch[b.n - 1] ^= 0x01;
        }
        b.p = scratch;
        memcpy(p, &b, sizeof(b));
        break;
    case GW_REC_TEXT:
        memcpy(&s, p, sizeof(s));
        s = s != NULL && strcmp(s, "b") == 0 ? "c" : "b";
        memcpy(p, &s, sizeof(s));
        break;
    case GW_REC_DATE:
        s = "2026-11-28";
        memcpy(p, &s, sizeof(s));
        break;
    case GW_REC_I16:
        memcpy(&i16, p, sizeof(i16));
        i16++;
        memcpy(p, &i16, sizeof(i16));
        break;
    case GW_REC_I32:
        memcpy(&i32, p, sizeof(i32));
        i32++;
        memcpy(p, &i32, sizeof(i32));
        break;
    case GW_REC_TIME:
        memcpy(&i64, p, sizeof(i64));
        i64++;
        memcpy(p, &i64, sizeof(i64));
        break;
    }
}

/* Every clear column of the table, changed alone, makes the record fail to open: DATA_LOSS, or
 * for kek_version (a version this keyring does not know) GW_EPRECOND. Nothing is opened. */
static void each_clear_column_flipped_fails(struct fx *f, const struct gw_sealed_waybill *orig)
{
    struct gw_str clear[GW_COL_COUNT];
    uint8_t scratch[1024];
    size_t k;
    int bad, rc;

    for (k = 0; k < GW_REC_NCOLS; k++) {
        const struct gw_rec_col *c = &gw_rec_cols[k];
        struct gw_sealed_waybill row = *orig;

        flip(&row, c, scratch);
        rc = open_row(f, &row, clear, &bad);
        if (strcmp(c->name, "kek_version") == 0) {
            assert_int_equal(rc, GW_EPRECOND);
        } else if (rc != GW_EDATALOSS) {
            fail_msg("version %d, column %s changed: rc=%d, expected GW_EDATALOSS",
                     orig->mac_version, c->name, rc);
        }
        if (c->mac)
            assert_true(bad != GW_SEAL_PART_NONE);
        assert_nothing_opened(clear);
    }
    /* and the untouched record still opens */
    assert_int_equal(open_row(f, orig, clear, &bad), 0);
}

static void test_each_clear_column_flipped_fails(void **state)
{
    struct fx *f = *state;

    each_clear_column_flipped_fails(f, &f->row);
    each_clear_column_flipped_fails(f, &f->row2);
}

/* Each clear column the record MAC covers is caught by the record MAC itself (version 2), or by
 * the fields' seal, whose AAD it is in (version 3): not only by a ciphertext or the wrapped key
 * that happen to depend on it. */
static void test_record_mac_covers_each_column(void **state)
{
    struct fx *f = *state;
    struct gw_str clear[GW_COL_COUNT];
    uint8_t scratch[1024];
    size_t k, covered = 0, covered3 = 0;
    int bad;

    for (k = 0; k < GW_REC_NCOLS; k++) {
        const struct gw_rec_col *c = &gw_rec_cols[k];
        struct gw_sealed_waybill row = f->row2;

        if (!c->mac || strcmp(c->name, "id") == 0 || strcmp(c->name, "mac_version") == 0)
            continue; /* caught earlier: the wrapped key's AAD binds id; an unknown or another
                       * mac_version is refused before any MAC */
        row = f->row;
        flip(&row, c, scratch);
        if (open_row(f, &row, clear, &bad) != GW_EDATALOSS || bad != GW_SEAL_PART_FIELDS)
            fail_msg("version 3, column %s changed: bad=%d, expected the fields' seal", c->name,
                     bad);
        covered3++;
        if (strcmp(c->name, "dek_version") == 0)
            continue; /* version 2: the field AADs bind it, first */
        row = f->row2;
        flip(&row, c, scratch);
        if (open_row(f, &row, clear, &bad) != GW_EDATALOSS || bad != GW_SEAL_PART_RECORD)
            fail_msg("version 2, column %s changed: bad=%d, expected the record MAC", c->name, bad);
        covered++;
    }
    assert_int_equal(covered, 14);
    assert_int_equal(covered3, 15);
}

/* The v1 content MAC exactly as rows before the record MAC were written (an independent
 * rendering of that encoding): every field's value, then five operational fields. */
static void v1_content_mac(struct fx *f, const struct gw_sealed_waybill *row,
                           const struct gw_str *clear, uint8_t out[GW_RECORD_MAC_LEN])
{
    struct gw_crypto_item items[GW_COL_COUNT + 5];
    char weight[24], level[12];
    size_t i;

    for (i = 0; i < GW_COL_COUNT; i++) {
        items[i].name = gw_col_field[i];
        items[i].name_len = 0; /* measured by the MAC */
        items[i].p = (const uint8_t *)clear[i].p;
        items[i].n = clear[i].n;
    }
    snprintf(weight, sizeof(weight), "%d", (int)row->weight_grams);
    snprintf(level, sizeof(level), "%d", (int)row->security_level);
    items[i + 0] = (struct gw_crypto_item){"origin_branch", (const uint8_t *)row->origin_branch,
                                           strlen(row->origin_branch), 0};
    items[i + 1] =
        (struct gw_crypto_item){"dest_region_code", (const uint8_t *)row->dest_region_code,
                                strlen(row->dest_region_code), 0};
    items[i + 2] =
        (struct gw_crypto_item){"weight_grams", (const uint8_t *)weight, strlen(weight), 0};
    items[i + 3] = (struct gw_crypto_item){"service_type", (const uint8_t *)row->service_type,
                                           strlen(row->service_type), 0};
    items[i + 4] =
        (struct gw_crypto_item){"security_level", (const uint8_t *)level, strlen(level), 0};
    assert_int_equal(gw_crypto_content_mac(f->cx, GW_SUITE_AES,
                                           gw_keyring_content_key(f->kr, GW_SUITE_AES), items,
                                           GW_COL_COUNT + 5, out),
                     0);
}

/* A row written before migration 003 (mac_version 1, no record_mac) still opens; its content
 * MAC still covers the operational fields. */
static void test_v1_row_still_opens(void **state)
{
    struct fx *f = *state;
    struct gw_sealed_waybill row = f->row2;
    struct gw_str clear[GW_COL_COUNT];
    int bad;

    assert_int_equal(open_row(f, &f->row2, clear, &bad), 0);
    row.mac_version = GW_RECORD_MAC_V1;
    memset(row.record_mac, 0, sizeof(row.record_mac));
    row.has_record_mac = false;
    v1_content_mac(f, &row, clear, row.content_mac);
    assert_int_equal(open_row(f, &row, clear, &bad), 0);
    assert_field(&clear[GW_COL_WAYBILL_NO], "WG1000000042");

    row.weight_grams++;
    assert_int_equal(open_row(f, &row, clear, &bad), GW_EDATALOSS);
    assert_int_equal(bad, GW_SEAL_PART_CONTENT);
}

/* A version 2 row relabelled as version 1 (record_mac dropped) fails: its content_mac includes
 * the version. A version 3 row relabelled 1 or 2 has no per-field ciphertext; a version 2 row
 * relabelled 3 has no fields_ct; and a version 3 row whose own version is changed in the AAD's
 * place fails its seal (test_record_mac_covers_each_column covers the rest). */
static void test_downgrade_to_v1_fails(void **state)
{
    struct fx *f = *state;
    struct gw_sealed_waybill row = f->row2;
    struct gw_str clear[GW_COL_COUNT];
    int bad;

    row.mac_version = GW_RECORD_MAC_V1;
    memset(row.record_mac, 0, sizeof(row.record_mac));
    row.has_record_mac = false;
    assert_int_equal(open_row(f, &row, clear, &bad), GW_EDATALOSS);
    assert_int_equal(bad, GW_SEAL_PART_CONTENT);
    assert_nothing_opened(clear);

    for (int v = GW_RECORD_MAC_V1; v <= GW_RECORD_MAC_V2; v++) {
        row = f->row;
        row.mac_version = (int16_t)v;
        assert_int_equal(open_row(f, &row, clear, &bad), GW_EDATALOSS);
        assert_int_equal(bad, GW_SEAL_PART_FIELDS); /* it has fields_ct */
        assert_nothing_opened(clear);
    }
    row = f->row2;
    row.mac_version = GW_RECORD_MAC_V3;
    row.has_record_mac = false;
    assert_int_equal(open_row(f, &row, clear, &bad), GW_EDATALOSS);
    assert_int_equal(bad, GW_COL_WAYBILL_NO); /* a per-field ciphertext in a version 3 row */
    assert_nothing_opened(clear);
    row.mac_version = 4;
    assert_int_equal(open_row(f, &row, clear, &bad), GW_EDATALOSS);
    assert_int_equal(bad, GW_SEAL_PART_CONTENT);
}

/* A version 3 row whose fields_ct is longer than any waybill's fields can be (a database writer's
 * 70 KiB) is refused as corrupt before anything is allocated for it: the reader's arena of
 * 16 KiB would have failed GW_ENOMEM on the allocation. */
static void test_oversized_fields_refused_before_allocation(void **state)
{
    struct fx *f = *state;
    struct gw_sealed_waybill row = f->row;
    struct gw_arena *small = gw_arena_new(16 * 1024);
    struct gw_str clear[GW_COL_COUNT];
    size_t n = 70 * 1024;
    uint8_t *big = calloc(1, n);
    int bad;

    assert_non_null(small);
    assert_non_null(big);
    memcpy(big, f->row.fields_ct.p, f->row.fields_ct.n); /* its header: format, algorithm */
    row.fields_ct.p = big;
    row.fields_ct.n = n;
    assert_int_equal(gw_unseal_waybill(f->cx, f->kr, &row, small, clear, &bad), GW_EDATALOSS);
    assert_int_equal(bad, GW_SEAL_PART_FIELDS);
    assert_nothing_opened(clear);
    /* the bound itself: the largest fields_ct allowed is still opened (and fails its tag) */
    row.fields_ct.n = GW_CRYPTO_SEALED_LEN(GW_SEAL_FIELDS_MAX);
    assert_int_equal(gw_unseal_waybill(f->cx, f->kr, &row, f->a, clear, &bad), GW_EDATALOSS);
    assert_int_equal(bad, GW_SEAL_PART_FIELDS);
    free(big);
    gw_arena_free(small);
}

/* A record under a KEK version that was since retired: GW_EPRECOND (not DATA_LOSS: the record is
 * whole, the key is gone), nothing opened; the current KEK's records still open. */
static void test_retired_kek_fails_cleanly(void **state)
{
    struct fx *f = *state;
    struct gw_keyring *kr2 = NULL;
    struct gw_sealed_waybill fresh;
    struct gw_str clear[GW_COL_COUNT];
    uint8_t id[GW_RECORD_ID_LEN];
    uint32_t v = 0;
    char err[256];
    int bad;

    assert_int_equal(gw_keyring_file_rotate(f->path, GW_SUITE_AES, &v, err, sizeof(err)), 0);
    assert_int_equal(v, 2);
    assert_int_equal(gw_keyring_file_retire(f->path, GW_SUITE_AES, 1, err, sizeof(err)), 0);
    assert_int_equal(gw_keyring_file_load(f->path, &kr2, err, sizeof(err)), 0);

    assert_int_equal(gw_unseal_waybill(f->cx, kr2, &f->row, f->a, clear, &bad), GW_EPRECOND);
    assert_int_not_equal(bad, GW_SEAL_PART_DEK); /* not reported as an altered key */
    assert_nothing_opened(clear);

    assert_int_equal(gw_seal_new_id(NULL, id), 0);
    assert_int_equal(
        gw_seal_waybill(f->cx, kr2, &f->w, &f->norm, id, "a", "courier_a", NOW, f->a, &fresh), 0);
    assert_int_equal(fresh.kek_version, 2);
    assert_int_equal(gw_unseal_waybill(f->cx, kr2, &fresh, f->a, clear, &bad), 0);
    gw_keyring_free(kr2);
}

/* Issue 11: a keyring with both suites set to sm seals a new record entirely under sm (every
 * sealed part names algorithm 2; blind indexes and MACs differ from the aes ones), still opens
 * the aes record, and looks values up under both suites (configured suite first); a keyring
 * without sm refuses the sm record (GW_EPRECOND); a field switched to the other algorithm fails
 * as that column. */
static void test_suites(void **state)
{
    struct fx *f = *state;
    struct gw_keyring *both = NULL;
    struct gw_sealed_waybill sm, mixed;
    struct gw_str clear[GW_COL_COUNT];
    uint8_t id[GW_RECORD_ID_LEN], look[GW_SEAL_LOOKUP_N][GW_CRYPTO_BIDX_LEN];
    uint8_t flipped[2048];
    char err[256];
    int bad;

    assert_int_equal(gw_keyring_file_add_suite(f->path, GW_SUITE_SM, err, sizeof(err)), 0);
    assert_int_equal(gw_keyring_file_load(f->path, &both, err, sizeof(err)), 0);
    assert_int_equal(gw_keyring_set_suite(both, GW_SUITE_SM), 0);
    /* the aes record written before the switch opens */
    assert_int_equal(gw_unseal_waybill(f->cx, both, &f->row, f->a, clear, &bad), 0);
    assert_field(&clear[GW_COL_SENDER_NAME], "测试甲");
    assert_int_equal(f->row.dek_wrapped.p[1], GW_SUITE_AES);

    assert_int_equal(gw_seal_new_id(NULL, id), 0);
    assert_int_equal(
        gw_seal_waybill(f->cx, both, &f->w, &f->norm, id, "a", "courier_a", NOW, f->a, &sm), 0);
    assert_int_equal(sm.dek_wrapped.p[1], GW_SUITE_SM);
    assert_int_equal(sm.fields_ct.p[1], GW_SUITE_SM);
    assert_int_equal(sm.kek_version, 1); /* the sm suite's own version 1 */
    assert_memory_not_equal(sm.wb_bidx, f->row.wb_bidx, GW_RECORD_BIDX_LEN);
    assert_memory_not_equal(sm.sender_phone_bidx, f->row.sender_phone_bidx, GW_RECORD_BIDX_LEN);
    assert_memory_not_equal(sm.content_mac, f->row.content_mac, GW_RECORD_MAC_LEN);
    assert_int_equal(gw_unseal_waybill(f->cx, both, &sm, f->a, clear, &bad), 0);
    assert_field(&clear[GW_COL_WAYBILL_NO], "WG1000000042");
    assert_field(&clear[GW_COL_RECIPIENT_ADDRESS_DETAIL], "样例街8号");

    /* lookups: the configured suite's index first, then the other suite's */
    assert_int_equal(gw_seal_lookup_bidx(f->cx, both, GW_BIDX_WAYBILL_NO, "WG1000000042", 12, look),
                     0);
    assert_memory_equal(look[0], sm.wb_bidx, GW_CRYPTO_BIDX_LEN);
    assert_memory_equal(look[1], f->row.wb_bidx, GW_CRYPTO_BIDX_LEN);
    assert_int_equal(gw_seal_lookup_bidx(f->cx, both, GW_BIDX_PHONE, "13800138000", 11, look), 0);
    assert_memory_equal(look[0], sm.sender_phone_bidx, GW_CRYPTO_BIDX_LEN);
    assert_memory_equal(look[1], f->row.sender_phone_bidx, GW_CRYPTO_BIDX_LEN);
    /* a keyring of one suite: its index, repeated */
    assert_int_equal(
        gw_seal_lookup_bidx(f->cx, f->kr, GW_BIDX_WAYBILL_NO, "WG1000000042", 12, look), 0);
    assert_memory_equal(look[0], f->row.wb_bidx, GW_CRYPTO_BIDX_LEN);
    assert_memory_equal(look[1], f->row.wb_bidx, GW_CRYPTO_BIDX_LEN);
    assert_int_equal(gw_seal_number_bidx(f->cx, f->kr, GW_SUITE_SM, "WG1000000042", 12, look[0]),
                     GW_EPRECOND);

    /* the aes-only keyring cannot open the sm record: the key is missing, nothing is corrupt */
    assert_int_equal(gw_unseal_waybill(f->cx, f->kr, &sm, f->a, clear, &bad), GW_EPRECOND);
    assert_int_not_equal(bad, GW_SEAL_PART_DEK);
    assert_nothing_opened(clear);

    /* the fields' algorithm byte switched to aes: they fail, nothing is released */
    mixed = sm;
    assert_true(sm.fields_ct.n <= sizeof(flipped));
    memcpy(flipped, sm.fields_ct.p, sm.fields_ct.n);
    flipped[1] = GW_SUITE_AES;
    mixed.fields_ct.p = flipped;
    assert_int_equal(gw_unseal_waybill(f->cx, both, &mixed, f->a, clear, &bad), GW_EDATALOSS);
    assert_int_equal(bad, GW_SEAL_PART_FIELDS);
    assert_nothing_opened(clear);
    /* the aes record's fields in the sm record: refused */
    mixed = sm;
    mixed.fields_ct = f->row.fields_ct;
    assert_int_equal(gw_unseal_waybill(f->cx, both, &mixed, f->a, clear, &bad), GW_EDATALOSS);
    assert_int_equal(bad, GW_SEAL_PART_FIELDS);
    assert_nothing_opened(clear);
    gw_keyring_free(both);
}

/* The name lengths sealing uses instead of strlen (content MAC items, field AADs) are the
 * names' lengths, and the field AAD built from them is the one built from the names. */
static void test_name_lengths(void **state)
{
    uint8_t id[GW_RECORD_ID_LEN] = {1, 2, 3};
    struct gw_crypto_aad a, b;

    (void)state;
    for (size_t i = 0; i < GW_COL_COUNT; i++) {
        assert_int_equal(gw_col_sql_len[i], strlen(gw_col_sql[i]));
        assert_int_equal(gw_col_field_len[i], strlen(gw_col_field[i]));
        assert_int_equal(gw_crypto_aad_field(&a, GW_RECORD_TABLE, gw_col_sql[i], id, 7), 0);
        assert_int_equal(gw_crypto_aad_field_n(&b, GW_RECORD_TABLE, strlen(GW_RECORD_TABLE),
                                               gw_col_sql[i], gw_col_sql_len[i], id, 7),
                         0);
        assert_int_equal(a.n, b.n);
        assert_memory_equal(a.b, b.b, a.n);
        /* from the first column's AAD, as sealing builds the others */
        assert_int_equal(gw_crypto_aad_field_n(&b, GW_RECORD_TABLE, strlen(GW_RECORD_TABLE),
                                               gw_col_sql[0], gw_col_sql_len[0], id, 7),
                         0);
        struct gw_crypto_aad c;
        assert_int_equal(
            gw_crypto_aad_field_other(&b, gw_col_sql_len[0], &c, gw_col_sql[i], gw_col_sql_len[i]),
            0);
        assert_int_equal(c.n, a.n);
        assert_memory_equal(c.b, a.b, a.n);
    }
    assert_int_equal(gw_crypto_aad_field_other(&b, 200, &a, "x", 1), GW_EINVAL);
    assert_int_equal(gw_crypto_aad_field_other(&b, 1, &a, "", 0), GW_EINVAL);
    for (size_t i = 0; i < GW_REC_NCOLS; i++)
        assert_int_equal(gw_rec_cols[i].name_len, strlen(gw_rec_cols[i].name));
    assert_int_equal(gw_crypto_aad_field_n(&b, GW_RECORD_TABLE, 0, "x", 1, id, 7), GW_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_name_lengths),
        cmocka_unit_test_setup_teardown(test_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retry_same_content_mac, setup, teardown),
        cmocka_unit_test_setup_teardown(test_normalised_spellings_share_blind_indexes, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_moved_ciphertext_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(test_each_clear_column_flipped_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(test_record_mac_covers_each_column, setup, teardown),
        cmocka_unit_test_setup_teardown(test_v1_row_still_opens, setup, teardown),
        cmocka_unit_test_setup_teardown(test_downgrade_to_v1_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(test_oversized_fields_refused_before_allocation, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_retired_kek_fails_cleanly, setup, teardown),
        cmocka_unit_test_setup_teardown(test_suites, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
