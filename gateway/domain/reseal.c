/* reseal.c: a stored record re-sealed under the keyring's current suite (see reseal.h).
 * Invariants: sealing is seal.c's (gw_seal_waybill), never repeated here; a result is handed back
 * only after it opened again to the very field values of the stored record and kept every clear
 * column that re-sealing must not change; normalised values live on the stack and are wiped. */
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "alloc.h"
#include "reseal.h"
#include "seal.h"
#include "waybill.h"

int gw_reseal_row_suite(const struct gw_sealed_waybill *row, enum gw_suite *out)
{
    return gw_crypto_sealed_suite(row->dek_wrapped.p, row->dek_wrapped.n, out);
}

/* A field's clear value as the borrowed string validation takes (empty = absent). */
static struct gw_str str(const struct gw_str *v)
{
    struct gw_str s = {v->n > 0 ? v->p : NULL, v->n};
    return s;
}

/* Decimal text of a numeric field ("" = 0, absent) into *v. Returns 0 or -1. */
static int num(const struct gw_str *s, int64_t *v)
{
    char buf[GW_REC_NUM_MAX], *end = NULL;
    long long x;

    *v = 0;
    if (s->n == 0)
        return 0;
    if (s->n >= sizeof(buf))
        return -1;
    memcpy(buf, s->p, s->n);
    buf[s->n] = '\0';
    x = strtoll(buf, &end, 10);
    if (end == buf || *end != '\0')
        return -1;
    *v = x;
    return 0;
}

static int party(const struct gw_str *v, struct gw_party *p)
{
    int64_t type = 0, gender = 0;

    p->name = str(&v[0]);
    p->phone = str(&v[1]);
    p->province = str(&v[2]);
    p->city = str(&v[3]);
    p->district = str(&v[4]);
    p->address_detail = str(&v[5]);
    p->company = str(&v[6]);
    p->id_number = str(&v[8]);
    if (num(&v[7], &type) != 0 || num(&v[9], &gender) != 0 || type < 0 || type > 1000 ||
        gender < 0 || gender > 1000)
        return -1;
    p->id_type = (enum gw_id_type)type;
    p->gender = (enum gw_gender)gender;
    return 0;
}

/* The waybill as it was submitted, from the opened fields and the row's clear columns. The
 * origin branch is left out: the record's resolved one is passed to gw_seal_waybill. */
static int rebuild(const struct gw_sealed_waybill *row, const struct gw_str clear[GW_COL_COUNT],
                   struct gw_waybill *w)
{
    memset(w, 0, sizeof(*w));
    w->waybill_no = str(&clear[GW_COL_WAYBILL_NO]);
    w->item_description = str(&clear[GW_COL_ITEM_DESCRIPTION]);
    if (num(&clear[GW_COL_PICKUP_TIME], &w->pickup_time) != 0 ||
        party(&clear[GW_COL_SENDER_NAME], &w->sender) != 0 ||
        party(&clear[GW_COL_RECIPIENT_NAME], &w->recipient) != 0)
        return -1;
    if (row->dest_region_code != NULL)
        w->dest_region_code = (struct gw_str){row->dest_region_code, strlen(row->dest_region_code)};
    if (row->service_type != NULL)
        w->service_type = (struct gw_str){row->service_type, strlen(row->service_type)};
    w->weight_grams = row->weight_grams;
    w->security_level = row->security_level;
    return 0;
}

/* Columns re-sealing rewrites; every other clear column must come out unchanged. */
static bool rewritten(const char *name)
{
    static const char *const cols[] = {
        "wb_bidx",        "kek_version",       "dek_wrapped",       "content_mac",
        "mac_version",    "record_mac",        "sender_phone_bidx", "recipient_phone_bidx",
        "sender_id_bidx", "recipient_id_bidx", "fields_ct"};
    for (size_t i = 0; i < sizeof(cols) / sizeof(cols[0]); i++)
        if (strcmp(cols[i], name) == 0)
            return true;
    return false;
}

static bool same_clear(const struct gw_sealed_waybill *a, const struct gw_sealed_waybill *b)
{
    char na[GW_REC_NUM_MAX], nb[GW_REC_NUM_MAX];
    const uint8_t *pa, *pb;
    size_t la, lb;

    for (size_t i = 0; i < GW_REC_NCOLS; i++) {
        if (rewritten(gw_rec_cols[i].name))
            continue;
        bool ha = gw_rec_value(a, &gw_rec_cols[i], na, &pa, &la);
        bool hb = gw_rec_value(b, &gw_rec_cols[i], nb, &pb, &lb);
        if (ha != hb || la != lb || (la > 0 && memcmp(pa, pb, la) != 0))
            return false;
    }
    return true;
}

static bool same_fields(const struct gw_str a[GW_COL_COUNT], const struct gw_str b[GW_COL_COUNT])
{
    for (size_t i = 0; i < GW_COL_COUNT; i++)
        if (a[i].n != b[i].n || (a[i].n > 0 && CRYPTO_memcmp(a[i].p, b[i].p, a[i].n) != 0))
            return false;
    return true;
}

int gw_reseal_waybill(struct gw_crypto *cx, const struct gw_keyring *kr,
                      const struct gw_sealed_waybill *row, struct gw_arena *a,
                      struct gw_sealed_waybill *out, int *bad)
{
    struct gw_str clear[GW_COL_COUNT], again[GW_COL_COUNT];
    struct gw_waybill_norm norm;
    struct gw_waybill w;
    int rc, bad2 = GW_SEAL_PART_NONE;

    memset(out, 0, sizeof(*out));
    memset(&norm, 0, sizeof(norm));
    rc = gw_unseal_waybill(cx, kr, row, a, clear, bad);
    if (rc != 0)
        return rc;
    if (rebuild(row, clear, &w) != 0 ||
        gw_waybill_validate_norm(&w, row->accepted_at, "waybill", NULL, &norm) != 0) {
        *bad = GW_RESEAL_PART_RULES;
        rc = GW_EINVAL;
        goto out;
    }
    rc = gw_seal_waybill(cx, kr, &w, &norm, row->id, row->origin_branch, row->submitted_by,
                         row->accepted_at, a, out);
    if (rc != 0)
        goto out;
    /* the scheme puts its own DEK version; the stored one is what the field AADs were bound to
     * and what the new ones are bound to too: both are GW_SEAL_DEK_VERSION */
    if (!same_clear(row, out)) {
        *bad = GW_RESEAL_PART_CLEAR;
        rc = GW_EINTERNAL;
        goto out;
    }
    rc = gw_unseal_waybill(cx, kr, out, a, again, &bad2);
    if (rc != 0 || !same_fields(clear, again)) {
        *bad = GW_RESEAL_PART_CLEAR;
        rc = GW_EINTERNAL;
    }
out:
    OPENSSL_cleanse(&norm, sizeof(norm));
    if (rc != 0)
        memset(out, 0, sizeof(*out));
    return rc;
}
