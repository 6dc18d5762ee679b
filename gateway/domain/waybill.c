/* waybill.c: intake validation of a waybill (key fields, text safety, per-field formats),
 * first failure wins. Pure: no allocation, no logging; the fault names a path and a rule
 * (err.h) and never carries a value from the waybill. */
#include "waybill.h"

#include <stdio.h>
#include <string.h>

#include "phone.h"
#include "text.h"
#include "waybillno.h"

/* dst = a | b, cut to cap - 1 bytes like snprintf (called for every waybill, so no printf). */
static void join(char *dst, size_t cap, const char *a, const char *b)
{
    size_t na = strlen(a), nb = strlen(b);

    if (na > cap - 1)
        na = cap - 1;
    if (nb > cap - 1 - na)
        nb = cap - 1 - na;
    memcpy(dst, a, na);
    memcpy(dst + na, b, nb);
    dst[na + nb] = '\0';
}

static int fail(struct gw_fault *err, const char *prefix, const char *field, enum gw_rule rule)
{
    return gw_fault_set(err, GW_EINVAL, prefix, field, rule);
}

/* A rule that names a bound (GW_RULE_TOO_LONG): the bound goes into the fault. */
static int fail_bound(struct gw_fault *err, const char *prefix, const char *field,
                      enum gw_rule rule, size_t limit)
{
    int rc = fail(err, prefix, field, rule);

    if (err)
        err->limit = limit;
    return rc;
}

/* Safe text within limit; required fields must also be non-blank. */
static int text(const struct gw_str *s, size_t limit, bool required, struct gw_fault *err,
                const char *prefix, const char *field)
{
    enum gw_rule rule = GW_RULE_NONE;
    if (required && gw_text_blank(s->p, s->n))
        return fail(err, prefix, field, GW_RULE_REQUIRED_KEY_FIELD);
    if (gw_text_check(s->p, s->n, limit, NULL, &rule) != 0)
        return fail_bound(err, prefix, field, rule, rule == GW_RULE_TOO_LONG ? limit : 0);
    return 0;
}

/* Optional ASCII token: 1..limit characters of letters, digits and the extra characters. */
static bool token_ok(const struct gw_str *s, size_t limit, const char *extra)
{
    if (s->n == 0)
        return true;
    if (s->n > limit)
        return false;
    for (size_t i = 0; i < s->n; i++) {
        char c = s->p[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  (c != '\0' && strchr(extra, c) != NULL);
        if (!ok)
            return false;
    }
    return true;
}

bool gw_region_code_valid(const char *code, size_t n)
{
    if (!code || n != 6)
        return false;
    for (size_t i = 0; i < 6; i++)
        if (code[i] < '0' || code[i] > '9')
            return false;
    int p = (code[0] - '0') * 10 + (code[1] - '0');
    return (p >= 11 && p <= 15) || (p >= 21 && p <= 23) || (p >= 31 && p <= 37) ||
           (p >= 41 && p <= 46) || (p >= 50 && p <= 54) || (p >= 61 && p <= 65) || p == 71 ||
           p == 81 || p == 82;
}

/* Validates p; when norm is not NULL, fills it with the normalised phone and ID number. */
static int party_check(const struct gw_party *p, bool sender, int64_t now, const char *prefix,
                       struct gw_fault *err, struct gw_party_norm *norm)
{
    enum gw_rule rule = GW_RULE_NONE;
    int rc;

    if ((rc = text(&p->name, GW_LIMIT_NAME, true, err, prefix, "name")) != 0 ||
        (rc = text(&p->phone, GW_LIMIT_PHONE, true, err, prefix, "phone")) != 0)
        return rc;
    if (gw_phone_parse(p->phone.p, p->phone.n, norm != NULL ? norm->phone : NULL,
                       norm != NULL ? &norm->phone_len : NULL, NULL, &rule) != 0)
        return fail_bound(err, prefix, "phone", rule,
                          rule == GW_RULE_TOO_LONG ? GW_PHONE_INPUT_MAX : 0);
    if ((rc = text(&p->province, GW_LIMIT_DIVISION, true, err, prefix, "province")) != 0 ||
        (rc = text(&p->city, GW_LIMIT_DIVISION, true, err, prefix, "city")) != 0 ||
        (rc = text(&p->district, GW_LIMIT_DIVISION, false, err, prefix, "district")) != 0 ||
        (rc = text(&p->address_detail, GW_LIMIT_ADDRESS_DETAIL, true, err, prefix,
                   "address_detail")) != 0 ||
        (rc = text(&p->company, GW_LIMIT_COMPANY, false, err, prefix, "company")) != 0)
        return rc;
    if (!gw_gender_valid((int)p->gender))
        return fail(err, prefix, "gender", GW_RULE_GENDER_UNKNOWN);
    if (!gw_id_type_valid((int)p->id_type))
        return fail(err, prefix, "id_type", GW_RULE_ID_TYPE_UNKNOWN);

    bool has_type = p->id_type != GW_ID_UNSPECIFIED;
    bool has_number = p->id_number.n > 0;
    if (sender && !has_type)
        return fail(err, prefix, "id_type", GW_RULE_REQUIRED_REAL_NAME);
    if (sender && !has_number)
        return fail(err, prefix, "id_number", GW_RULE_REQUIRED_REAL_NAME);
    if (!has_type && has_number)
        return fail(err, prefix, "id_type", GW_RULE_REQUIRED_WITH_ID_NUMBER);
    if (has_type && !has_number)
        return fail(err, prefix, "id_number", GW_RULE_REQUIRED_WITH_ID_TYPE);
    if (!has_number)
        return 0;
    if ((rc = text(&p->id_number, GW_LIMIT_ID_NUMBER, true, err, prefix, "id_number")) != 0)
        return rc;
    if (gw_idcard_check(p->id_type, p->id_number.p, p->id_number.n, now, p->gender, &rule) != 0)
        return fail(err, prefix, "id_number", rule);
    if (norm != NULL &&
        gw_idcard_normalize(p->id_type, p->id_number.p, p->id_number.n, norm->id_number,
                            sizeof(norm->id_number), &norm->id_number_len) != 0)
        return fail(err, prefix, "id_number", GW_RULE_ID_NOT_NORMALISABLE);
    return 0;
}

int gw_party_validate(const struct gw_party *p, bool sender, int64_t now, const char *prefix,
                      struct gw_fault *err)
{
    return party_check(p, sender, now, prefix, err, NULL);
}

/* The normalised number: the upper-cased prefix, then the numeric part's digits as given. */
static void number_norm(const struct gw_str *s, size_t ndigits, struct gw_waybill_norm *norm)
{
    size_t plen = strlen(norm->prefix);

    memcpy(norm->waybill_no, norm->prefix, plen);
    memcpy(norm->waybill_no + plen, s->p + s->n - ndigits, ndigits);
    norm->waybill_no_len = plen + ndigits;
    norm->waybill_no[norm->waybill_no_len] = '\0';
}

int gw_waybill_validate_norm(const struct gw_waybill *w, int64_t now, const char *root,
                             struct gw_fault *err, struct gw_waybill_norm *norm)
{
    char prefix[64];
    enum gw_rule rule = GW_RULE_NONE;
    size_t ndigits = 0;
    int rc;

    gw_fault_clear(err);
    if (norm)
        memset(norm, 0, sizeof(*norm));
    if (!root)
        root = "waybill";
    if (!w)
        return fail(err, root, "waybill_no", GW_RULE_REQUIRED_KEY_FIELD);

    if (w->waybill_no.n == 0)
        return fail(err, root, "waybill_no", GW_RULE_REQUIRED_KEY_FIELD);
    if (gw_waybillno_parse_ex(w->waybill_no.p, w->waybill_no.n, norm ? norm->prefix : NULL,
                              norm ? &norm->numeric : NULL, &ndigits, &rule) != 0)
        return fail(err, root, "waybill_no", rule);
    if (norm)
        number_norm(&w->waybill_no, ndigits, norm);

    join(prefix, sizeof prefix, root, ".sender");
    if ((rc = party_check(&w->sender, true, now, prefix, err, norm ? &norm->sender : NULL)) != 0)
        return rc;
    join(prefix, sizeof prefix, root, ".recipient");
    if ((rc = party_check(&w->recipient, false, now, prefix, err,
                          norm ? &norm->recipient : NULL)) != 0)
        return rc;

    if ((rc = text(&w->item_description, GW_LIMIT_ITEM_DESCRIPTION, false, err, root,
                   "item_description")) != 0)
        return rc;
    if (w->pickup_time != 0) {
        if (w->pickup_time < GW_WAYBILL_PICKUP_MIN)
            return fail(err, root, "pickup_time", GW_RULE_PICKUP_BEFORE_2000);
        if (w->pickup_time > now + GW_WAYBILL_CLOCK_SKEW)
            return fail(err, root, "pickup_time", GW_RULE_PICKUP_FUTURE);
    }
    if (!token_ok(&w->origin_branch, GW_LIMIT_BRANCH, "_-"))
        return fail(err, root, "origin_branch", GW_RULE_BRANCH_FORMAT);
    if (w->dest_region_code.n > 0 &&
        !gw_region_code_valid(w->dest_region_code.p, w->dest_region_code.n))
        return fail(err, root, "dest_region_code", GW_RULE_REGION_CODE);
    if (w->weight_grams < 0 || w->weight_grams > GW_WAYBILL_WEIGHT_MAX)
        return fail(err, root, "weight_grams", GW_RULE_WEIGHT);
    if (!token_ok(&w->service_type, GW_LIMIT_SERVICE_TYPE, "_-."))
        return fail(err, root, "service_type", GW_RULE_SERVICE_TYPE);
    if (w->security_level < GW_SECLEVEL_NONE || w->security_level > GW_SECLEVEL_TOP_SECRET)
        return fail(err, root, "security_level", GW_RULE_SECURITY_LEVEL_UNKNOWN);
    return 0;
}

int gw_waybill_validate_at(const struct gw_waybill *w, int64_t now, const char *root,
                           struct gw_fault *err)
{
    return gw_waybill_validate_norm(w, now, root, err, NULL);
}

int gw_waybill_validate(const struct gw_waybill *w, int64_t now, struct gw_fault *err)
{
    return gw_waybill_validate_at(w, now, "waybill", err);
}
