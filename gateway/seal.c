/* seal.c: envelope encryption of a waybill record (see seal.h for the scheme).
 * Invariants: every column is sealed (absent = empty plaintext); the data key lives only on the
 * stack and is wiped before return; clear values are only ever written into the caller's arena. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>

#include "alloc.h"
#include "idcard.h"
#include "phone.h"
#include "seal.h"
#include "waybillno.h"

#define PARTY_COLS 10 /* name .. gender, in enum gw_col order */

/* Canonical text of the numeric fields; all buffers live as long as the values using them. */
struct numbufs {
    char pickup[24];
    char type[2][12];
    char gender[2][12];
    char wbno[GW_WAYBILLNO_MAX + 1];
};

static struct gw_str str_of(const char *s)
{
    struct gw_str v = {s, s != NULL ? strlen(s) : 0};
    return v;
}

static void party_values(const struct gw_party *p, char type[12], char gender[12], struct gw_str *v)
{
    if (p->id_type != GW_ID_UNSPECIFIED)
        snprintf(type, 12, "%d", (int)p->id_type);
    else
        type[0] = '\0';
    if (p->gender != GW_GENDER_UNSPECIFIED)
        snprintf(gender, 12, "%d", (int)p->gender);
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

static int waybill_values(const struct gw_waybill *w, struct numbufs *nb,
                          struct gw_str v[GW_COL_COUNT])
{
    size_t n = 0;

    if (gw_waybillno_normalize(w->waybill_no.p, w->waybill_no.n, nb->wbno, &n) != 0)
        return GW_EINVAL;
    if (w->pickup_time != 0)
        snprintf(nb->pickup, sizeof(nb->pickup), "%" PRId64, w->pickup_time);
    else
        nb->pickup[0] = '\0';
    v[GW_COL_WAYBILL_NO].p = nb->wbno;
    v[GW_COL_WAYBILL_NO].n = n;
    v[GW_COL_ITEM_DESCRIPTION] = w->item_description;
    v[GW_COL_PICKUP_TIME] = str_of(nb->pickup);
    party_values(&w->sender, nb->type[0], nb->gender[0], &v[GW_COL_SENDER_NAME]);
    party_values(&w->recipient, nb->type[1], nb->gender[1], &v[GW_COL_RECIPIENT_NAME]);
    return 0;
}

/* The clear operational fields that the content MAC also covers, canonical text. */
struct ops {
    const char *origin_branch, *dest_region_code, *service_type;
    char weight[24], level[12];
};

static int content_mac(struct gw_crypto *cx, const struct gw_keyring *kr,
                       const struct gw_str v[GW_COL_COUNT], const struct ops *o,
                       uint8_t out[GW_CRYPTO_MAC_LEN])
{
    struct gw_crypto_item items[GW_COL_COUNT + 5];
    size_t i;

    for (i = 0; i < GW_COL_COUNT; i++) {
        items[i].name = gw_col_field[i];
        items[i].p = (const uint8_t *)(v[i].p != NULL ? v[i].p : "");
        items[i].n = v[i].n;
    }
#define OPS_ITEM(k, nm, s)                                                                         \
    do {                                                                                           \
        items[GW_COL_COUNT + (k)].name = (nm);                                                     \
        items[GW_COL_COUNT + (k)].p = (const uint8_t *)((s) != NULL ? (s) : "");                   \
        items[GW_COL_COUNT + (k)].n = (s) != NULL ? strlen(s) : 0;                                 \
    } while (0)
    OPS_ITEM(0, "origin_branch", o->origin_branch);
    OPS_ITEM(1, "dest_region_code", o->dest_region_code);
    OPS_ITEM(2, "weight_grams", o->weight);
    OPS_ITEM(3, "service_type", o->service_type);
    OPS_ITEM(4, "security_level", o->level);
#undef OPS_ITEM
    return gw_crypto_content_mac(cx, gw_keyring_content_key(kr), items, GW_COL_COUNT + 5, out);
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

int gw_seal_new_id(struct gw_crypto *cx, uint8_t id[GW_STORE_ID_LEN])
{
    if (gw_crypto_random(cx, id, GW_STORE_ID_LEN) != 0)
        return GW_ECRYPTO;
    id[6] = (uint8_t)((id[6] & 0x0f) | 0x40); /* version 4 */
    id[8] = (uint8_t)((id[8] & 0x3f) | 0x80); /* RFC 4122 variant */
    return 0;
}

int gw_seal_waybill_bidx(struct gw_crypto *cx, const struct gw_keyring *kr, const char *s, size_t n,
                         uint8_t out[GW_CRYPTO_BIDX_LEN])
{
    char norm[GW_WAYBILLNO_MAX + 1];
    size_t len = 0;

    if (gw_waybillno_normalize(s, n, norm, &len) != 0)
        return GW_EINVAL;
    return gw_crypto_blind_index(cx, gw_keyring_index_key(kr), GW_BIDX_WAYBILL_NO,
                                 (const uint8_t *)norm, len, out);
}

static int phone_bidx(struct gw_crypto *cx, const struct gw_keyring *kr, struct gw_str phone,
                      uint8_t out[GW_CRYPTO_BIDX_LEN], bool *has)
{
    char norm[GW_PHONE_NORM_MAX + 1];
    size_t len = 0;

    *has = false;
    if (phone.n == 0)
        return 0;
    if (gw_phone_normalize(phone.p, phone.n, norm, sizeof(norm), &len) != 0)
        return GW_EINVAL;
    *has = true;
    return gw_crypto_blind_index(cx, gw_keyring_index_key(kr), GW_BIDX_PHONE, (const uint8_t *)norm,
                                 len, out);
}

static int id_bidx(struct gw_crypto *cx, const struct gw_keyring *kr, const struct gw_party *p,
                   uint8_t out[GW_CRYPTO_BIDX_LEN], bool *has)
{
    char norm[GW_ID_NORM_MAX + 1];
    size_t len = 0;

    *has = false;
    if (p->id_number.n == 0)
        return 0;
    if (gw_idcard_normalize(p->id_type, p->id_number.p, p->id_number.n, norm, sizeof(norm), &len) !=
        0)
        return GW_EINVAL;
    *has = true;
    return gw_crypto_blind_index(cx, gw_keyring_index_key(kr), GW_BIDX_ID_NUMBER,
                                 (const uint8_t *)norm, len, out);
}

/* The pickup day in China Standard Time (UTC+8), "YYYY-MM-DD". */
static void pickup_day(int64_t t, char out[11])
{
    time_t cst = (time_t)(t + 8 * 3600);
    struct tm tm;

    if (gmtime_r(&cst, &tm) == NULL || strftime(out, 11, "%Y-%m-%d", &tm) != 10)
        out[0] = '\0';
}

int gw_seal_waybill(struct gw_crypto *cx, const struct gw_keyring *kr, const struct gw_waybill *w,
                    const uint8_t id[GW_STORE_ID_LEN], const char *origin_branch,
                    const char *submitted_by, int64_t now, struct gw_arena *a,
                    struct gw_sealed_waybill *out)
{
    struct numbufs nb;
    struct gw_str v[GW_COL_COUNT];
    struct gw_crypto_aad aad;
    struct ops o;
    uint8_t dek[GW_CRYPTO_DEK_LEN];
    uint8_t *buf;
    char *day;
    size_t i, len;
    int rc;

    memset(out, 0, sizeof(*out));
    rc = waybill_values(w, &nb, v);
    if (rc != 0)
        goto out;
    memcpy(out->id, id, GW_STORE_ID_LEN);
    out->origin_branch = origin_branch;
    out->submitted_by = submitted_by;
    out->weight_grams = (int32_t)w->weight_grams;
    out->security_level = (int16_t)w->security_level;
    rc = GW_ENOMEM;
    out->dest_region_code = arena_strndup(a, w->dest_region_code.p, w->dest_region_code.n);
    out->service_type = arena_strndup(a, w->service_type.p, w->service_type.n);
    day = gw_arena_alloc(a, 11);
    if (out->dest_region_code == NULL || out->service_type == NULL || day == NULL)
        goto out;
    pickup_day(w->pickup_time != 0 ? w->pickup_time : now, day);
    out->pickup_day = day;

    rc = gw_seal_waybill_bidx(cx, kr, w->waybill_no.p, w->waybill_no.n, out->wb_bidx);
    if (rc == 0)
        rc = phone_bidx(cx, kr, w->sender.phone, out->sender_phone_bidx,
                        &out->has_sender_phone_bidx);
    if (rc == 0)
        rc = phone_bidx(cx, kr, w->recipient.phone, out->recipient_phone_bidx,
                        &out->has_recipient_phone_bidx);
    if (rc == 0)
        rc = id_bidx(cx, kr, &w->sender, out->sender_id_bidx, &out->has_sender_id_bidx);
    if (rc == 0)
        rc = id_bidx(cx, kr, &w->recipient, out->recipient_id_bidx, &out->has_recipient_id_bidx);
    if (rc != 0)
        goto out;

    o.origin_branch = origin_branch;
    o.dest_region_code = out->dest_region_code;
    o.service_type = out->service_type;
    snprintf(o.weight, sizeof(o.weight), "%" PRId64, w->weight_grams);
    snprintf(o.level, sizeof(o.level), "%d", w->security_level);
    rc = content_mac(cx, kr, v, &o, out->content_mac);
    if (rc != 0)
        goto out;

    rc = gw_crypto_dek_new(cx, dek);
    if (rc != 0)
        goto out;
    out->kek_version = (int32_t)gw_keyring_current(kr);
    out->dek_version = GW_SEAL_DEK_VERSION;
    rc = GW_ENOMEM;
    buf = gw_arena_alloc(a, GW_CRYPTO_WRAPPED_DEK_LEN);
    if (buf == NULL)
        goto out;
    rc = gw_keyring_wrap(kr, cx, (uint32_t)out->kek_version, GW_RECORD_TABLE, id, dek, buf);
    if (rc != 0)
        goto out;
    out->dek_wrapped.p = buf;
    out->dek_wrapped.n = GW_CRYPTO_WRAPPED_DEK_LEN;

    for (i = 0; i < GW_COL_COUNT; i++) {
        rc = gw_crypto_aad_field(&aad, GW_RECORD_TABLE, gw_col_sql[i], id, GW_SEAL_DEK_VERSION);
        if (rc != 0)
            goto out;
        rc = GW_ENOMEM;
        buf = gw_arena_alloc(a, GW_CRYPTO_SEALED_LEN(v[i].n));
        if (buf == NULL)
            goto out;
        rc = gw_crypto_seal_into(cx, dek, aad.b, aad.n, (const uint8_t *)v[i].p, v[i].n, buf,
                                 GW_CRYPTO_SEALED_LEN(v[i].n), &len);
        if (rc != 0)
            goto out;
        out->ct[i].p = buf;
        out->ct[i].n = len;
    }
    rc = 0;
out:
    OPENSSL_cleanse(dek, sizeof(dek));
    OPENSSL_cleanse(&nb, sizeof(nb));
    return rc;
}

int gw_unseal_waybill(struct gw_crypto *cx, const struct gw_keyring *kr,
                      const struct gw_sealed_waybill *row, struct gw_arena *a,
                      struct gw_str clear[GW_COL_COUNT], int *bad)
{
    struct gw_crypto_aad aad;
    struct ops o;
    uint8_t dek[GW_CRYPTO_DEK_LEN];
    uint8_t mac[GW_CRYPTO_MAC_LEN];
    char *buf;
    size_t i, len;
    int rc;

    *bad = GW_SEAL_PART_NONE;
    memset(clear, 0, sizeof(struct gw_str) * GW_COL_COUNT);
    if (row->kek_version <= 0) {
        *bad = GW_SEAL_PART_DEK;
        return GW_EDATALOSS;
    }
    rc = gw_keyring_unwrap(kr, cx, (uint32_t)row->kek_version, GW_RECORD_TABLE, row->id,
                           row->dek_wrapped.p, row->dek_wrapped.n, dek);
    if (rc != 0) {
        if (rc == GW_EDATALOSS)
            *bad = GW_SEAL_PART_DEK;
        goto out;
    }
    for (i = 0; i < GW_COL_COUNT; i++) {
        if (row->ct[i].p == NULL || row->ct[i].n < GW_CRYPTO_OVERHEAD) {
            *bad = (int)i;
            rc = GW_EDATALOSS;
            goto out;
        }
        rc = gw_crypto_aad_field(&aad, GW_RECORD_TABLE, gw_col_sql[i], row->id,
                                 (uint32_t)row->dek_version);
        if (rc != 0)
            goto out;
        rc = GW_ENOMEM;
        buf = gw_arena_alloc(a, row->ct[i].n - GW_CRYPTO_OVERHEAD + 1);
        if (buf == NULL)
            goto out;
        rc = gw_crypto_open_into(cx, dek, aad.b, aad.n, row->ct[i].p, row->ct[i].n, (uint8_t *)buf,
                                 row->ct[i].n - GW_CRYPTO_OVERHEAD + 1, &len);
        if (rc != 0) {
            if (rc == GW_EDATALOSS)
                *bad = (int)i;
            goto out;
        }
        buf[len] = '\0';
        clear[i].p = buf;
        clear[i].n = len;
    }
    o.origin_branch = row->origin_branch;
    o.dest_region_code = row->dest_region_code;
    o.service_type = row->service_type;
    snprintf(o.weight, sizeof(o.weight), "%" PRId32, row->weight_grams);
    snprintf(o.level, sizeof(o.level), "%d", (int)row->security_level);
    rc = content_mac(cx, kr, clear, &o, mac);
    if (rc != 0)
        goto out;
    if (CRYPTO_memcmp(mac, row->content_mac, sizeof(mac)) != 0) {
        *bad = GW_SEAL_PART_CONTENT;
        rc = GW_EDATALOSS;
        goto out;
    }
    rc = 0;
out:
    OPENSSL_cleanse(dek, sizeof(dek));
    if (rc != 0) {
        for (i = 0; i < GW_COL_COUNT; i++)
            if (clear[i].p != NULL)
                OPENSSL_cleanse((void *)clear[i].p, clear[i].n);
        memset(clear, 0, sizeof(struct gw_str) * GW_COL_COUNT);
    }
    return rc;
}
