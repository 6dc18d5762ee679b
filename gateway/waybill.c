/* waybill.c: intake validation of a waybill (key fields, text safety, per-field formats),
 * first failure wins. Pure: no allocation, no logging; the error names a path and a constant
 * rule and never carries a value from the waybill. */
#include "waybill.h"

#include <stdio.h>
#include <string.h>

#include "phone.h"
#include "text.h"
#include "waybillno.h"

static int fail(struct gw_verr *err, const char *prefix, const char *field, const char *rule)
{
    if (err) {
        snprintf(err->path, sizeof err->path, "%s.%s", prefix, field);
        err->rule = rule;
    }
    return GW_EINVAL;
}

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

static const char *too_long(size_t limit)
{
    switch (limit) {
    case 32:
        return "is too long (at most 32 bytes)";
    case 64:
        return "is too long (at most 64 bytes)";
    case 128:
        return "is too long (at most 128 bytes)";
    case 256:
        return "is too long (at most 256 bytes)";
    case 512:
        return "is too long (at most 512 bytes)";
    default:
        return "is too long";
    }
}

/* Safe text within limit; required fields must also be non-blank. */
static int text(const struct gw_str *s, size_t limit, bool required, struct gw_verr *err,
                const char *prefix, const char *field)
{
    const char *rule = NULL;
    if (required && gw_text_blank(s->p, s->n))
        return fail(err, prefix, field, "is required (key field)");
    if (gw_text_check(s->p, s->n, limit, too_long(limit), NULL, &rule) != 0)
        return fail(err, prefix, field, rule);
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

int gw_party_validate(const struct gw_party *p, bool sender, int64_t now, const char *prefix,
                      struct gw_verr *err)
{
    const char *rule = NULL;
    int rc;

    if ((rc = text(&p->name, GW_LIMIT_NAME, true, err, prefix, "name")) != 0 ||
        (rc = text(&p->phone, GW_LIMIT_PHONE, true, err, prefix, "phone")) != 0)
        return rc;
    if (gw_phone_check(p->phone.p, p->phone.n, &rule) != 0)
        return fail(err, prefix, "phone", rule);
    if ((rc = text(&p->province, GW_LIMIT_DIVISION, true, err, prefix, "province")) != 0 ||
        (rc = text(&p->city, GW_LIMIT_DIVISION, true, err, prefix, "city")) != 0 ||
        (rc = text(&p->district, GW_LIMIT_DIVISION, false, err, prefix, "district")) != 0 ||
        (rc = text(&p->address_detail, GW_LIMIT_ADDRESS_DETAIL, true, err, prefix,
                   "address_detail")) != 0 ||
        (rc = text(&p->company, GW_LIMIT_COMPANY, false, err, prefix, "company")) != 0)
        return rc;
    if (!gw_gender_valid((int)p->gender))
        return fail(err, prefix, "gender", "unknown gender value");
    if (!gw_id_type_valid((int)p->id_type))
        return fail(err, prefix, "id_type", "unknown ID type");

    bool has_type = p->id_type != GW_ID_UNSPECIFIED;
    bool has_number = p->id_number.n > 0;
    if (sender && !has_type)
        return fail(err, prefix, "id_type", "is required (real-name pickup)");
    if (sender && !has_number)
        return fail(err, prefix, "id_number", "is required (real-name pickup)");
    if (!has_type && has_number)
        return fail(err, prefix, "id_type", "is required when an ID number is given");
    if (has_type && !has_number)
        return fail(err, prefix, "id_number", "is required when an ID type is given");
    if (!has_number)
        return 0;
    if ((rc = text(&p->id_number, GW_LIMIT_ID_NUMBER, true, err, prefix, "id_number")) != 0)
        return rc;
    if (gw_idcard_check(p->id_type, p->id_number.p, p->id_number.n, now, p->gender, &rule) != 0)
        return fail(err, prefix, "id_number", rule);
    return 0;
}

int gw_waybill_validate_at(const struct gw_waybill *w, int64_t now, const char *root,
                           struct gw_verr *err)
{
    char prefix[64];
    const char *rule = NULL;
    int rc;

    if (err) {
        err->path[0] = '\0';
        err->rule = NULL;
    }
    if (!root)
        root = "waybill";
    if (!w)
        return fail(err, root, "waybill_no", "is required (key field)");

    if (w->waybill_no.n == 0)
        return fail(err, root, "waybill_no", "is required (key field)");
    if (gw_waybillno_parse_ex(w->waybill_no.p, w->waybill_no.n, NULL, NULL, NULL, &rule) != 0)
        return fail(err, root, "waybill_no", rule);

    join(prefix, sizeof prefix, root, ".sender");
    if ((rc = gw_party_validate(&w->sender, true, now, prefix, err)) != 0)
        return rc;
    join(prefix, sizeof prefix, root, ".recipient");
    if ((rc = gw_party_validate(&w->recipient, false, now, prefix, err)) != 0)
        return rc;

    if ((rc = text(&w->item_description, GW_LIMIT_ITEM_DESCRIPTION, false, err, root,
                   "item_description")) != 0)
        return rc;
    if (w->pickup_time != 0) {
        if (w->pickup_time < GW_WAYBILL_PICKUP_MIN)
            return fail(err, root, "pickup_time", "is before 2000-01-01");
        if (w->pickup_time > now + GW_WAYBILL_CLOCK_SKEW)
            return fail(err, root, "pickup_time",
                        "is in the future (more than 5 minutes ahead of the gateway clock)");
    }
    if (!token_ok(&w->origin_branch, GW_LIMIT_BRANCH, "_-"))
        return fail(err, root, "origin_branch",
                    "must be 1 to 32 ASCII letters, digits, '_' or '-'");
    if (w->dest_region_code.n > 0 &&
        !gw_region_code_valid(w->dest_region_code.p, w->dest_region_code.n))
        return fail(err, root, "dest_region_code",
                    "must be a 6-digit administrative-division code with a valid province code");
    if (w->weight_grams < 0 || w->weight_grams > GW_WAYBILL_WEIGHT_MAX)
        return fail(err, root, "weight_grams", "must be between 1 and 1000000 grams");
    if (!token_ok(&w->service_type, GW_LIMIT_SERVICE_TYPE, "_-."))
        return fail(err, root, "service_type",
                    "must be 1 to 32 ASCII letters, digits, '_', '-' or '.'");
    if (w->security_level < GW_SECLEVEL_NONE || w->security_level > GW_SECLEVEL_TOP_SECRET)
        return fail(err, root, "security_level", "unknown security level");
    return 0;
}

int gw_waybill_validate(const struct gw_waybill *w, int64_t now, struct gw_verr *err)
{
    return gw_waybill_validate_at(w, now, "waybill", err);
}
