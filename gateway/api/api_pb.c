/* api_pb.c: protobuf-c <-> domain conversions. Strings are borrowed, never copied: the domain
 * structs point into the request message, which lives in the call's arena. */
#include <string.h>

#include "api_pb.h"

static struct gw_str view(const char *s)
{
    struct gw_str v = {s, s != NULL ? strlen(s) : 0};
    return v;
}

static void party_from_pb(const Waygate__V1__Party *p, struct gw_party *out)
{
    memset(out, 0, sizeof(*out));
    if (p == NULL)
        return;
    out->name = view(p->name);
    out->phone = view(p->phone);
    out->province = view(p->province);
    out->city = view(p->city);
    out->district = view(p->district);
    out->address_detail = view(p->address_detail);
    out->company = view(p->company);
    out->id_type = (enum gw_id_type)p->id_type;
    out->id_number = view(p->id_number);
    out->gender = (enum gw_gender)p->gender;
}

void gw_api_waybill_from_pb(const Waygate__V1__Waybill *w, struct gw_waybill *out)
{
    memset(out, 0, sizeof(*out));
    if (w == NULL)
        return;
    out->waybill_no = view(w->waybill_no);
    party_from_pb(w->sender, &out->sender);
    party_from_pb(w->recipient, &out->recipient);
    out->item_description = view(w->item_description);
    out->pickup_time = w->pickup_time;
    out->origin_branch = view(w->origin_branch);
    out->dest_region_code = view(w->dest_region_code);
    out->weight_grams = w->weight_grams;
    out->service_type = view(w->service_type);
    out->security_level = (int)w->security_level;
}

Waygate__V1__ApprovalState gw_api_approval_state(const char *state, bool expired)
{
    if (expired)
        return WAYGATE__V1__APPROVAL_STATE__APPROVAL_STATE_EXPIRED;
    if (strcmp(state, "pending") == 0)
        return WAYGATE__V1__APPROVAL_STATE__APPROVAL_STATE_PENDING;
    if (strcmp(state, "approved") == 0)
        return WAYGATE__V1__APPROVAL_STATE__APPROVAL_STATE_APPROVED;
    if (strcmp(state, "rejected") == 0)
        return WAYGATE__V1__APPROVAL_STATE__APPROVAL_STATE_REJECTED;
    if (strcmp(state, "executed") == 0)
        return WAYGATE__V1__APPROVAL_STATE__APPROVAL_STATE_EXECUTED;
    return WAYGATE__V1__APPROVAL_STATE__APPROVAL_STATE_UNSPECIFIED;
}
