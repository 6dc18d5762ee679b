/* seal.c: envelope encryption of a waybill record (see seal.h for the scheme).
 * Invariants: every column is sealed (absent = empty plaintext); every part of a record is under
 * one suite (new records: the keyring's; stored ones: their wrapped data key's); the data key
 * lives only on the stack and is wiped before return; clear values are only ever written into the
 * caller's arena. */
#include <string.h>

#include <openssl/crypto.h>

#include "alloc.h"
#include "seal.h"
#include "text.h"

#define PARTY_COLS 10 /* name .. gender, in enum gw_col order */

/* Canonical text of the numeric fields; all buffers live as long as the values using them. */
struct numbufs {
    char pickup[24];
    char type[2][12];
    char gender[2][12];
};

static struct gw_str str_of(const char *s)
{
    struct gw_str v = {s, s != NULL ? strlen(s) : 0};
    return v;
}

static void party_values(const struct gw_party *p, char type[12], char gender[12], struct gw_str *v)
{
    if (p->id_type != GW_ID_UNSPECIFIED)
        (void)gw_text_i64(p->id_type, type, 12);
    else
        type[0] = '\0';
    if (p->gender != GW_GENDER_UNSPECIFIED)
        (void)gw_text_i64(p->gender, gender, 12);
    else
        gender[0] = '\0';
    v[0] = p->name;
    v[1] = p->phone;
    v[2] = p->province;
    v[3] = p->city;
    v[4] = p->district;
    v[5] = p->address_detail;
    v[6] = p->company;
    v[7] = str_of(type);
    v[8] = p->id_number;
    v[9] = str_of(gender);
}

static void waybill_values(const struct gw_waybill *w, const struct gw_waybill_norm *norm,
                           struct numbufs *nb, struct gw_str v[GW_COL_COUNT])
{
    if (w->pickup_time != 0)
        (void)gw_text_i64(w->pickup_time, nb->pickup, sizeof(nb->pickup));
    else
        nb->pickup[0] = '\0';
    v[GW_COL_WAYBILL_NO].p = norm->waybill_no;
    v[GW_COL_WAYBILL_NO].n = norm->waybill_no_len;
    v[GW_COL_ITEM_DESCRIPTION] = w->item_description;
    v[GW_COL_PICKUP_TIME] = str_of(nb->pickup);
    party_values(&w->sender, nb->type[0], nb->gender[0], &v[GW_COL_SENDER_NAME]);
    party_values(&w->recipient, nb->type[1], nb->gender[1], &v[GW_COL_RECIPIENT_NAME]);
}

#define CONTENT_OPS 5 /* clear operational fields in content_mac */

/* Every field's item, in column order, into items[0..GW_COL_COUNT): returns GW_COL_COUNT. */
static size_t field_items(const struct gw_str v[GW_COL_COUNT], struct gw_crypto_item *items)
{
    for (size_t i = 0; i < GW_COL_COUNT; i++) {
        items[i].name = gw_col_field[i];
        items[i].name_len = gw_col_field_len[i];
        items[i].p = (const uint8_t *)(v[i].p != NULL ? v[i].p : "");
        items[i].n = v[i].n;
    }
    return GW_COL_COUNT;
}

/* The fields' items encoded once (gw_crypto_items_encode), for the content MAC and then, in a
 * version 2 record, the record MAC (they end the record MAC's items and begin the content MAC's)
 * or, in a version 3 record, as the plaintext of fields_ct. Holds clear values: wiped by the
 * sealer. */
struct gw_fields_enc {
    size_t n;
    uint8_t *b;
    size_t cap; /* b's size: wiped whole (a failed encoding may have written a part) */
};

/* The longest fields a valid waybill has, encoded: each party's texts at validation's limits,
 * the numbers' and codes' canonical text (at most 24 bytes each), and each item's name and
 * header (at most 45 bytes: 4 + a name under 32 + 1 + 8). */
#define PARTY_BYTES_MAX                                                                            \
    (GW_LIMIT_NAME + GW_LIMIT_PHONE + 3 * GW_LIMIT_DIVISION + GW_LIMIT_ADDRESS_DETAIL +            \
     GW_LIMIT_COMPANY + GW_LIMIT_ID_NUMBER + 2 * 24)
_Static_assert(2 * PARTY_BYTES_MAX + GW_LIMIT_ITEM_DESCRIPTION + 2 * 24 + GW_COL_COUNT * 45 <
                   GW_SEAL_FIELDS_MAX / 8,
               "a valid waybill's fields stay far below GW_SEAL_FIELDS_MAX");
#define MAC_ITEMS_MAX (1 + GW_REC_NCOLS + GW_COL_COUNT)

static void item_n(struct gw_crypto_item *it, const char *name, size_t name_len, const char *s)
{
    it->name = name;
    it->name_len = name_len;
    it->p = (const uint8_t *)(s != NULL ? s : "");
    it->n = s != NULL ? strlen(s) : 0;
}

/* an item named by a string literal (its length known at compile time; "" lit "" refuses a
 * pointer, whose sizeof would silently change the MAC) */
#define item(it, lit, s) item_n(it, "" lit "", sizeof("" lit "") - 1, s)

/* content_mac: every field's canonical value, then origin_branch, dest_region_code,
 * weight_grams, service_type, security_level of row (absent = present and empty, as version 1
 * always encoded them); from version 2 on, also the version, so that a version 2 row relabelled
 * as version 1 fails. */
static int content_digest(struct gw_crypto *cx, const struct gw_keyring *kr, enum gw_suite suite,
                          const struct gw_str v[GW_COL_COUNT], const struct gw_fields_enc *fe,
                          const struct gw_sealed_waybill *row, int version,
                          uint8_t out[GW_CRYPTO_MAC_LEN])
{
    struct gw_crypto_item items[GW_COL_COUNT + CONTENT_OPS + 1];
    char weight[24], level[12], ver[12];
    size_t n = 0, first;

    if (fe == NULL)
        n = field_items(v, items);
    first = n;
    (void)gw_text_i64(row->weight_grams, weight, sizeof(weight));
    (void)gw_text_i64(row->security_level, level, sizeof(level));
    item(&items[n++], "origin_branch", row->origin_branch);
    item(&items[n++], "dest_region_code", row->dest_region_code);
    item(&items[n++], "weight_grams", weight);
    item(&items[n++], "service_type", row->service_type);
    item(&items[n++], "security_level", level);
    if (version >= GW_RECORD_MAC_V2) {
        (void)gw_text_i64(version, ver, sizeof(ver));
        item(&items[n++], "mac_version", ver);
    }
    if (fe == NULL)
        return gw_crypto_content_mac(cx, suite, gw_keyring_content_key(kr, suite), items, n, out);
    return gw_crypto_content_mac_enc(cx, suite, gw_keyring_content_key(kr, suite), NULL, 0, fe->b,
                                     fe->n, GW_COL_COUNT, items + first, n - first, out);
}

/* The version content_mac's input is written with for a row of MAC version v: version 3 keeps
 * version 2's digest (record.h), so that the idempotency check meets a row stored before it. */
static int content_version(int v)
{
    return v == GW_RECORD_MAC_V3 ? GW_RECORD_MAC_V2 : v;
}

/* The items of every clear column of row marked mac in gw_rec_cols, in their order (canonical
 * value, p NULL when SQL NULL; numbers' text in num), into items: what the record MAC (version 2)
 * and the fields' AAD (version 3) cover of the row. Returns how many. */
static size_t clear_items(const struct gw_sealed_waybill *row, char num[][GW_REC_NUM_MAX],
                          struct gw_crypto_item *items)
{
    size_t n = 0;

    for (size_t i = 0; i < GW_REC_NCOLS; i++) {
        if (!gw_rec_cols[i].mac)
            continue;
        items[n].name = gw_rec_cols[i].name;
        items[n].name_len = gw_rec_cols[i].name_len;
        (void)gw_rec_value(row, &gw_rec_cols[i], num[i], &items[n].p, &items[n].n);
        n++;
    }
    return n;
}

/* record_mac (version 2): a purpose item, every clear column of row marked mac in gw_rec_cols
 * (canonical value, absent when SQL NULL), then every field's clear value. */
static int record_mac(struct gw_crypto *cx, const struct gw_keyring *kr, enum gw_suite suite,
                      const struct gw_str v[GW_COL_COUNT], const struct gw_fields_enc *fe,
                      const struct gw_sealed_waybill *row, uint8_t out[GW_CRYPTO_MAC_LEN])
{
    struct gw_crypto_item items[MAC_ITEMS_MAX];
    char num[GW_REC_NCOLS][GW_REC_NUM_MAX];
    size_t n = 0;

    item(&items[n++], "mac", "waygate-record-v2");
    n += clear_items(row, num, items + n);
    if (fe != NULL)
        return gw_crypto_content_mac_enc(cx, suite, gw_keyring_content_key(kr, suite), items, n,
                                         fe->b, fe->n, GW_COL_COUNT, NULL, 0, out);
    n += field_items(v, items + n);
    return gw_crypto_content_mac(cx, suite, gw_keyring_content_key(kr, suite), items, n, out);
}

/* The bytes gw_crypto_items_encode writes for items[0..n). */
static size_t items_size(const struct gw_crypto_item *items, size_t n)
{
    size_t size = 0;

    for (size_t i = 0; i < n; i++)
        size += 4 + items[i].name_len + 1 + (items[i].p != NULL ? 8 + items[i].n : 0);
    return size;
}

/* items[0..n) encoded into a block of arena a: *out, *len. Every item's name_len is set.
 * Returns 0, GW_ENOMEM or GW_EINVAL. */
static int items_encode(const struct gw_crypto_item *items, size_t n, struct gw_arena *a,
                        uint8_t **out, size_t *cap, size_t *len)
{
    size_t size = items_size(items, n);

    *cap = 0;
    *out = gw_arena_alloc(a, size > 0 ? size : 1);
    if (*out == NULL)
        return GW_ENOMEM;
    *cap = size;
    return gw_crypto_items_encode(items, n, *out, size, len);
}

/* The AAD of fields_ct (version 3): a purpose item, the table and the column, then every clear
 * column of row marked mac in gw_rec_cols (canonical value, absent when SQL NULL), as
 * gw_crypto_items_encode encodes them, into arena a. What the record MAC covered in version 2
 * besides the fields, which the seal itself now covers. Returns 0, GW_ENOMEM or GW_EINVAL. */
static int fields_aad(const struct gw_sealed_waybill *row, struct gw_arena *a, uint8_t **out,
                      size_t *len)
{
    struct gw_crypto_item items[3 + GW_REC_NCOLS];
    char num[GW_REC_NCOLS][GW_REC_NUM_MAX];
    size_t n = 0, cap;

    item(&items[n++], "aad", "waygate-fields-v3");
    item(&items[n++], "table", GW_RECORD_TABLE);
    item(&items[n++], "column", "fields_ct");
    n += clear_items(row, num, items + n);
    return items_encode(items, n, a, out, &cap, len);
}

/* Opens fields_ct's plaintext, in place: buf[0..len) holds the fields' items in column order
 * (gw_crypto_items_encode: each a 4-byte name length, the name, a presence byte, an 8-byte value
 * length, the value). Each value is moved to the front of buf followed by a NUL (an item's
 * header is longer than one byte, so a value never moves right) and clear[i] points at it; the
 * rest of buf is wiped. false (clear untouched past what it set) when the items are not exactly
 * the 23 fields, each present, in order, ending at len. */
static bool fields_parse(uint8_t *buf, size_t len, struct gw_str clear[GW_COL_COUNT])
{
    size_t r = 0, w = 0;

    for (size_t i = 0; i < GW_COL_COUNT; i++) {
        size_t nl = gw_col_field_len[i];
        uint64_t vn = 0;

        if (len - r < 4 + nl + 1 + 8)
            return false;
        if (buf[r] != 0 || buf[r + 1] != 0 || buf[r + 2] != 0 || buf[r + 3] != nl ||
            memcmp(buf + r + 4, gw_col_field[i], nl) != 0 || buf[r + 4 + nl] != 1)
            return false;
        r += 4 + nl + 1;
        for (int k = 0; k < 8; k++)
            vn = vn << 8 | buf[r + (size_t)k];
        r += 8;
        if (vn > len - r)
            return false;
        memmove(buf + w, buf + r, (size_t)vn);
        clear[i].p = (const char *)buf + w;
        clear[i].n = (size_t)vn;
        w += (size_t)vn;
        buf[w++] = '\0';
        r += (size_t)vn;
    }
    if (r != len)
        return false;
    gw_wipe(buf + w, len - w);
    return true;
}

static char *arena_strndup(struct gw_arena *a, const char *s, size_t n)
{
    char *p = gw_arena_alloc(a, n + 1);

    if (p == NULL)
        return NULL;
    if (n > 0)
        memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

int gw_seal_new_id(struct gw_crypto *cx, uint8_t id[GW_RECORD_ID_LEN])
{
    if (gw_crypto_random(cx, id, GW_RECORD_ID_LEN) != 0)
        return GW_ECRYPTO;
    id[6] = (uint8_t)((id[6] & 0x0f) | 0x40); /* version 4 */
    id[8] = (uint8_t)((id[8] & 0x3f) | 0x80); /* RFC 4122 variant */
    return 0;
}

int gw_seal_number_bidx(struct gw_crypto *cx, const struct gw_keyring *kr, enum gw_suite suite,
                        const char *norm, size_t n, uint8_t out[GW_CRYPTO_BIDX_LEN])
{
    const uint8_t *key = gw_keyring_index_key(kr, suite);
    if (key == NULL)
        return GW_EPRECOND;
    return gw_crypto_blind_index(cx, suite, key, GW_BIDX_WAYBILL_NO, (const uint8_t *)norm, n, out);
}

int gw_seal_lookup_bidx(struct gw_crypto *cx, const struct gw_keyring *kr, enum gw_bidx purpose,
                        const char *norm, size_t n,
                        uint8_t out[GW_SEAL_LOOKUP_N][GW_CRYPTO_BIDX_LEN])
{
    enum gw_suite first = gw_keyring_suite(kr);
    size_t k = 0;
    int rc = gw_crypto_blind_index(cx, first, gw_keyring_index_key(kr, first), purpose,
                                   (const uint8_t *)norm, n, out[k++]);
    for (int s = 1; rc == 0 && s <= GW_SUITE_COUNT && k < GW_SEAL_LOOKUP_N; s++) {
        if ((enum gw_suite)s == first || !gw_keyring_has_suite(kr, (enum gw_suite)s))
            continue;
        rc = gw_crypto_blind_index(cx, (enum gw_suite)s, gw_keyring_index_key(kr, (enum gw_suite)s),
                                   purpose, (const uint8_t *)norm, n, out[k++]);
    }
    for (; rc == 0 && k < GW_SEAL_LOOKUP_N; k++) /* a keyring of one suite: repeat it */
        memcpy(out[k], out[0], GW_CRYPTO_BIDX_LEN);
    return rc;
}

/* The blind index of a normalised phone or ID number; absent (len 0) leaves *has false. */
static int bidx(struct gw_crypto *cx, const struct gw_keyring *kr, enum gw_suite suite,
                enum gw_bidx purpose, const char *norm, size_t len, uint8_t out[GW_CRYPTO_BIDX_LEN],
                bool *has)
{
    *has = len > 0;
    if (len == 0)
        return 0;
    return gw_crypto_blind_index(cx, suite, gw_keyring_index_key(kr, suite), purpose,
                                 (const uint8_t *)norm, len, out);
}

_Static_assert(GW_RECORD_ALTS == GW_SUITE_COUNT - 1, "one alternative per other suite");

/* The number's blind index and the content_mac (over v and out's clear columns, out's MAC
 * version) under every suite the keyring holds besides out's, into out->alt_*: the store's
 * idempotency check across a migration between suites. */
static int alternatives(struct gw_crypto *cx, const struct gw_keyring *kr, enum gw_suite own,
                        const struct gw_waybill_norm *norm, const struct gw_str v[GW_COL_COUNT],
                        const struct gw_fields_enc *fe, struct gw_sealed_waybill *out)
{
    int rc = 0;

    out->n_alt = 0;
    for (int s = 1; rc == 0 && s <= GW_SUITE_COUNT; s++) {
        enum gw_suite suite = (enum gw_suite)s;

        if (suite == own || !gw_keyring_has_suite(kr, suite) || out->n_alt >= GW_RECORD_ALTS)
            continue;
        rc = gw_seal_number_bidx(cx, kr, suite, norm->waybill_no, norm->waybill_no_len,
                                 out->alt_wb_bidx[out->n_alt]);
        if (rc == 0)
            rc = content_digest(cx, kr, suite, v, fe, out, content_version(out->mac_version),
                                out->alt_content_mac[out->n_alt]);
        if (rc == 0)
            out->n_alt++;
    }
    return rc;
}

/* The pickup day in China Standard Time (UTC+8), "YYYY-MM-DD". */
static void pickup_day(int64_t t, char out[11])
{
    if (t > INT64_MAX - 8 * 3600)
        out[0] = '\0';
    else
        (void)gw_text_day(t + 8 * 3600, out);
}

/* The 23 fields sealed one by one under dek into out->ct (version 2). */
static int seal_each(struct gw_crypto *cx, enum gw_suite suite, const uint8_t *dek,
                     const uint8_t id[GW_RECORD_ID_LEN], const struct gw_str v[GW_COL_COUNT],
                     struct gw_arena *a, struct gw_sealed_waybill *out)
{
    struct gw_crypto_aad aad, aad0;
    uint8_t *buf;
    size_t len;
    int rc;

    rc = gw_crypto_aad_field_n(&aad0, GW_RECORD_TABLE, sizeof(GW_RECORD_TABLE) - 1, gw_col_sql[0],
                               gw_col_sql_len[0], id, GW_SEAL_DEK_VERSION);
    if (rc != 0)
        return rc;
    for (size_t i = 0; i < GW_COL_COUNT; i++) {
        /* the other columns' AADs differ from the first's in the column only */
        const struct gw_crypto_aad *ad = i == 0 ? &aad0 : &aad;
        if (i > 0 && (rc = gw_crypto_aad_field_other(&aad0, gw_col_sql_len[0], &aad, gw_col_sql[i],
                                                     gw_col_sql_len[i])) != 0)
            return rc;
        buf = gw_arena_alloc(a, GW_CRYPTO_SEALED_LEN(v[i].n));
        if (buf == NULL)
            return GW_ENOMEM;
        rc = gw_crypto_seal_into(cx, suite, dek, ad->b, ad->n, (const uint8_t *)v[i].p, v[i].n, buf,
                                 GW_CRYPTO_SEALED_LEN(v[i].n), &len);
        if (rc != 0)
            return rc;
        out->ct[i].p = buf;
        out->ct[i].n = len;
    }
    return 0;
}

/* The fields' encoding fe sealed as one value under dek into out->fields_ct, out's clear columns
 * (all set by now) as its AAD (version 3). */
static int seal_together(struct gw_crypto *cx, enum gw_suite suite, const uint8_t *dek,
                         const struct gw_fields_enc *fe, struct gw_arena *a,
                         struct gw_sealed_waybill *out)
{
    uint8_t *ad, *buf;
    size_t adn, len;
    int rc = fields_aad(out, a, &ad, &adn);

    if (rc != 0)
        return rc;
    buf = gw_arena_alloc(a, GW_CRYPTO_SEALED_LEN(fe->n));
    if (buf == NULL)
        return GW_ENOMEM;
    rc = gw_crypto_seal_into(cx, suite, dek, ad, adn, fe->b, fe->n, buf,
                             GW_CRYPTO_SEALED_LEN(fe->n), &len);
    if (rc != 0)
        return rc;
    out->fields_ct.p = buf;
    out->fields_ct.n = len;
    return 0;
}

int gw_seal_waybill_version(struct gw_crypto *cx, const struct gw_keyring *kr,
                            const struct gw_waybill *w, const struct gw_waybill_norm *norm,
                            const uint8_t id[GW_RECORD_ID_LEN], const char *origin_branch,
                            const char *submitted_by, int64_t now, int version, struct gw_arena *a,
                            struct gw_sealed_waybill *out)
{
    const struct gw_party_norm *sn = &norm->sender, *rn = &norm->recipient;
    struct numbufs nb;
    struct gw_str v[GW_COL_COUNT];
    struct gw_crypto_item items[GW_COL_COUNT];
    struct gw_fields_enc fe = {0, NULL, 0};
    uint8_t dek[GW_CRYPTO_DEK_LEN];
    uint8_t *buf;
    char *day;
    enum gw_suite suite = gw_keyring_suite(kr);
    int rc;

    memset(out, 0, sizeof(*out));
    memset(dek, 0, sizeof(dek));
    if (version != GW_RECORD_MAC_V2 && version != GW_RECORD_MAC_V3)
        return GW_EINVAL;
    waybill_values(w, norm, &nb, v);
    memcpy(out->id, id, GW_RECORD_ID_LEN);
    out->origin_branch = origin_branch;
    out->submitted_by = submitted_by;
    out->weight_grams = (int32_t)w->weight_grams;
    out->security_level = (int16_t)w->security_level;
    out->accepted_at = now;
    out->mac_version = (int16_t)version;
    out->dek_version = GW_SEAL_DEK_VERSION;
    rc = GW_ENOMEM;
    out->dest_region_code = arena_strndup(a, w->dest_region_code.p, w->dest_region_code.n);
    out->service_type = arena_strndup(a, w->service_type.p, w->service_type.n);
    day = gw_arena_alloc(a, 11);
    if (out->dest_region_code == NULL || out->service_type == NULL || day == NULL)
        goto out;
    pickup_day(w->pickup_time != 0 ? w->pickup_time : now, day);
    out->pickup_day = day;

    rc = gw_seal_number_bidx(cx, kr, suite, norm->waybill_no, norm->waybill_no_len, out->wb_bidx);
    if (rc == 0)
        rc = bidx(cx, kr, suite, GW_BIDX_PHONE, sn->phone, sn->phone_len, out->sender_phone_bidx,
                  &out->has_sender_phone_bidx);
    if (rc == 0)
        rc = bidx(cx, kr, suite, GW_BIDX_PHONE, rn->phone, rn->phone_len, out->recipient_phone_bidx,
                  &out->has_recipient_phone_bidx);
    if (rc == 0)
        rc = bidx(cx, kr, suite, GW_BIDX_ID_NUMBER, sn->id_number, sn->id_number_len,
                  out->sender_id_bidx, &out->has_sender_id_bidx);
    if (rc == 0)
        rc = bidx(cx, kr, suite, GW_BIDX_ID_NUMBER, rn->id_number, rn->id_number_len,
                  out->recipient_id_bidx, &out->has_recipient_id_bidx);
    if (rc == 0) {
        (void)field_items(v, items);
        rc = items_encode(items, GW_COL_COUNT, a, &fe.b, &fe.cap, &fe.n);
    }
    if (rc == 0 && fe.n > GW_SEAL_FIELDS_MAX) /* never for a valid waybill (the assertion) */
        rc = GW_ETOOBIG;
    if (rc == 0)
        rc = content_digest(cx, kr, suite, v, &fe, out, content_version(version), out->content_mac);
    if (rc == 0 && version == GW_RECORD_MAC_V2) {
        rc = record_mac(cx, kr, suite, v, &fe, out, out->record_mac);
        out->has_record_mac = true;
    }
    if (rc == 0)
        rc = alternatives(cx, kr, suite, norm, v, &fe, out);
    if (rc == 0)
        rc = gw_crypto_dek_new(cx, dek);
    if (rc != 0)
        goto out;
    out->kek_version = (int32_t)gw_keyring_current(kr, suite);
    rc = GW_ENOMEM;
    buf = gw_arena_alloc(a, GW_CRYPTO_WRAPPED_DEK_LEN);
    if (buf == NULL)
        goto out;
    rc = gw_keyring_wrap(kr, cx, suite, (uint32_t)out->kek_version, GW_RECORD_TABLE, id, dek, buf);
    if (rc != 0)
        goto out;
    out->dek_wrapped.p = buf;
    out->dek_wrapped.n = GW_CRYPTO_WRAPPED_DEK_LEN;
    if (version == GW_RECORD_MAC_V3)
        rc = seal_together(cx, suite, dek, &fe, a, out);
    else
        rc = seal_each(cx, suite, dek, id, v, a, out);
out:
    OPENSSL_cleanse(dek, sizeof(dek));
    OPENSSL_cleanse(&nb, sizeof(nb));
    if (fe.b != NULL)
        gw_wipe(fe.b, fe.cap);
    return rc;
}

int gw_seal_waybill(struct gw_crypto *cx, const struct gw_keyring *kr, const struct gw_waybill *w,
                    const struct gw_waybill_norm *norm, const uint8_t id[GW_RECORD_ID_LEN],
                    const char *origin_branch, const char *submitted_by, int64_t now,
                    struct gw_arena *a, struct gw_sealed_waybill *out)
{
    return gw_seal_waybill_version(cx, kr, w, norm, id, origin_branch, submitted_by, now,
                                   GW_RECORD_MAC_CURRENT, a, out);
}

/* Checks the MACs of row's version over its opened fields v: version 2 the record MAC first
 * (it covers content_mac too), then content_mac; version 1 content_mac. Returns 0, GW_EDATALOSS
 * (*bad set) or GW_ECRYPTO. */
static int check_macs(struct gw_crypto *cx, const struct gw_keyring *kr, enum gw_suite suite,
                      const struct gw_str v[GW_COL_COUNT], const struct gw_sealed_waybill *row,
                      int *bad)
{
    uint8_t mac[GW_CRYPTO_MAC_LEN];
    int rc;

    if (row->mac_version != GW_RECORD_MAC_V1 && row->mac_version != GW_RECORD_MAC_V2) {
        *bad = GW_SEAL_PART_CONTENT;
        return GW_EDATALOSS;
    }
    if (row->mac_version >= GW_RECORD_MAC_V2) {
        rc = record_mac(cx, kr, suite, v, NULL, row, mac); /* each MAC from the items */
        if (rc != 0)
            return rc;
        if (CRYPTO_memcmp(mac, row->record_mac, sizeof(mac)) != 0) {
            *bad = GW_SEAL_PART_RECORD;
            return GW_EDATALOSS;
        }
    }
    rc = content_digest(cx, kr, suite, v, NULL, row, row->mac_version, mac);
    if (rc != 0)
        return rc;
    if (CRYPTO_memcmp(mac, row->content_mac, sizeof(mac)) != 0) {
        *bad = GW_SEAL_PART_CONTENT;
        return GW_EDATALOSS;
    }
    return 0;
}

/* Opens a version 3 row's fields_ct under dek into clear (pointing into one block of arena a).
 * A version 3 row has no per-field ciphertext and no record_mac: one of them present is
 * corruption. Returns 0, GW_EDATALOSS (*bad set), GW_ENOMEM, GW_EINVAL or GW_ECRYPTO. */
static int open_together(struct gw_crypto *cx, enum gw_suite suite, const uint8_t *dek,
                         const struct gw_sealed_waybill *row, struct gw_arena *a,
                         struct gw_str clear[GW_COL_COUNT], int *bad)
{
    const struct gw_bytes *ct = &row->fields_ct;
    uint8_t *ad, *buf;
    size_t adn, len;
    int rc;

    for (size_t i = 0; i < GW_COL_COUNT; i++)
        if (row->ct[i].p != NULL) {
            *bad = (int)i;
            return GW_EDATALOSS;
        }
    if (row->has_record_mac) {
        *bad = GW_SEAL_PART_RECORD;
        return GW_EDATALOSS;
    }
    if (ct->p == NULL || ct->n < GW_CRYPTO_OVERHEAD ||
        ct->n - GW_CRYPTO_OVERHEAD > GW_SEAL_FIELDS_MAX) { /* nothing allocated for it */
        *bad = GW_SEAL_PART_FIELDS;
        return GW_EDATALOSS;
    }
    rc = fields_aad(row, a, &ad, &adn);
    if (rc != 0)
        return rc;
    buf = gw_arena_alloc(a, ct->n - GW_CRYPTO_OVERHEAD + 1);
    if (buf == NULL)
        return GW_ENOMEM;
    rc = gw_crypto_open_into(cx, suite, dek, ad, adn, ct->p, ct->n, buf,
                             ct->n - GW_CRYPTO_OVERHEAD + 1, &len);
    if (rc == GW_EDATALOSS)
        *bad = GW_SEAL_PART_FIELDS;
    if (rc != 0)
        return rc;
    if (!fields_parse(buf, len, clear)) { /* authentic but not ours: never written so */
        gw_wipe(buf, len);
        memset(clear, 0, sizeof(struct gw_str) * GW_COL_COUNT);
        *bad = GW_SEAL_PART_FIELDS;
        return GW_EDATALOSS;
    }
    return 0;
}

/* Opens a version 1 or 2 row's 23 ciphertexts under dek into clear (in arena a), then checks its
 * MACs. Returns as gw_unseal_waybill. */
static int open_each(struct gw_crypto *cx, const struct gw_keyring *kr, enum gw_suite suite,
                     const uint8_t *dek, const struct gw_sealed_waybill *row, struct gw_arena *a,
                     struct gw_str clear[GW_COL_COUNT], int *bad)
{
    struct gw_crypto_aad aad;
    char *buf;
    size_t len;
    int rc;

    if (row->fields_ct.p != NULL) { /* only version 3 has it */
        *bad = GW_SEAL_PART_FIELDS;
        return GW_EDATALOSS;
    }
    for (size_t i = 0; i < GW_COL_COUNT; i++) {
        if (row->ct[i].p == NULL || row->ct[i].n < GW_CRYPTO_OVERHEAD) {
            *bad = (int)i;
            return GW_EDATALOSS;
        }
        rc =
            gw_crypto_aad_field_n(&aad, GW_RECORD_TABLE, sizeof(GW_RECORD_TABLE) - 1, gw_col_sql[i],
                                  gw_col_sql_len[i], row->id, (uint32_t)row->dek_version);
        if (rc != 0)
            return rc;
        buf = gw_arena_alloc(a, row->ct[i].n - GW_CRYPTO_OVERHEAD + 1);
        if (buf == NULL)
            return GW_ENOMEM;
        rc = gw_crypto_open_into(cx, suite, dek, aad.b, aad.n, row->ct[i].p, row->ct[i].n,
                                 (uint8_t *)buf, row->ct[i].n - GW_CRYPTO_OVERHEAD + 1, &len);
        if (rc != 0) {
            if (rc == GW_EDATALOSS)
                *bad = (int)i;
            return rc;
        }
        buf[len] = '\0';
        clear[i].p = buf;
        clear[i].n = len;
    }
    return check_macs(cx, kr, suite, clear, row, bad);
}

int gw_unseal_waybill(struct gw_crypto *cx, const struct gw_keyring *kr,
                      const struct gw_sealed_waybill *row, struct gw_arena *a,
                      struct gw_str clear[GW_COL_COUNT], int *bad)
{
    uint8_t dek[GW_CRYPTO_DEK_LEN];
    enum gw_suite suite;
    int rc;

    *bad = GW_SEAL_PART_NONE;
    memset(clear, 0, sizeof(struct gw_str) * GW_COL_COUNT);
    memset(dek, 0, sizeof(dek));
    if (row->mac_version != GW_RECORD_MAC_V1 && row->mac_version != GW_RECORD_MAC_V2 &&
        row->mac_version != GW_RECORD_MAC_V3) {
        *bad = GW_SEAL_PART_CONTENT;
        return GW_EDATALOSS;
    }
    /* the record's suite is its wrapped data key's algorithm; every other part must be of it */
    if (row->kek_version <= 0 ||
        gw_crypto_sealed_suite(row->dek_wrapped.p, row->dek_wrapped.n, &suite) != 0) {
        *bad = GW_SEAL_PART_DEK;
        return GW_EDATALOSS;
    }
    rc = gw_keyring_unwrap(kr, cx, (uint32_t)row->kek_version, GW_RECORD_TABLE, row->id,
                           row->dek_wrapped.p, row->dek_wrapped.n, dek);
    if (rc != 0) {
        if (rc == GW_EDATALOSS)
            *bad = GW_SEAL_PART_DEK;
    } else if (row->mac_version == GW_RECORD_MAC_V3) {
        rc = open_together(cx, suite, dek, row, a, clear, bad);
    } else {
        rc = open_each(cx, kr, suite, dek, row, a, clear, bad);
    }
    OPENSSL_cleanse(dek, sizeof(dek));
    if (rc != 0) {
        for (size_t i = 0; i < GW_COL_COUNT; i++)
            if (clear[i].p != NULL)
                OPENSSL_cleanse((void *)clear[i].p, clear[i].n);
        memset(clear, 0, sizeof(struct gw_str) * GW_COL_COUNT);
    }
    return rc;
}
