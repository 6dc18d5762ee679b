/* scan.c: the scan-event rules of scan.h: status names, the event and time checks, the
 * transitions. Pure. */
#include "scan.h"

#include "waybill.h"

static const char *const status_name[] = {
    [GW_SCAN_NONE] = "accepted",
    [GW_SCAN_PICKED_UP] = "picked_up",
    [GW_SCAN_ARRIVED] = "arrived",
    [GW_SCAN_DEPARTED] = "departed",
    [GW_SCAN_OUT_FOR_DELIVERY] = "out_for_delivery",
    [GW_SCAN_DELIVERED] = "delivered",
    [GW_SCAN_DELIVERY_FAILED] = "delivery_failed",
    [GW_SCAN_RETURNED] = "returned",
};

const char *gw_scan_status(int latest)
{
    if (latest < GW_SCAN_NONE || latest > GW_SCAN_EVENT_MAX)
        return "unknown";
    return status_name[latest];
}

int gw_scan_check_event(int event, int64_t event_time, int64_t now, int64_t pickup, int64_t *at,
                        struct gw_fault *f)
{
    gw_fault_clear(f);
    if (event == GW_SCAN_NONE)
        return gw_fault_set(f, GW_EINVAL, NULL, "event", GW_RULE_REQUIRED);
    if (event < GW_SCAN_NONE || event > GW_SCAN_EVENT_MAX)
        return gw_fault_set(f, GW_EINVAL, NULL, "event", GW_RULE_SCAN_EVENT_UNKNOWN);
    if (event_time < 0)
        return gw_fault_set(f, GW_EINVAL, NULL, "event_time", GW_RULE_SCAN_TIME_NEGATIVE);
    *at = event_time == 0 ? now : event_time;
    if (*at < GW_WAYBILL_PICKUP_MIN)
        return gw_fault_set(f, GW_EINVAL, NULL, "event_time", GW_RULE_PICKUP_BEFORE_2000);
    if (*at > now + GW_SCAN_CLOCK_SKEW)
        return gw_fault_set(f, GW_EINVAL, NULL, "event_time", GW_RULE_PICKUP_FUTURE);
    if (pickup > 0 && *at < pickup)
        return gw_fault_set(f, GW_EINVAL, NULL, "event_time", GW_RULE_SCAN_BEFORE_PICKUP);
    return 0;
}

int gw_scan_check_transition(int latest, int64_t latest_at, int event, int64_t at,
                             struct gw_fault *f)
{
    gw_fault_clear(f);
    if (event == GW_SCAN_PICKED_UP && latest != GW_SCAN_NONE)
        return gw_fault_set(f, GW_EPRECOND, NULL, "event", GW_RULE_SCAN_PICKUP_NOT_FIRST);
    if (latest == GW_SCAN_DELIVERED && event != GW_SCAN_RETURNED)
        return gw_fault_set(f, GW_EPRECOND, NULL, "event", GW_RULE_SCAN_AFTER_DELIVERED);
    if (event == GW_SCAN_DELIVERED && latest != GW_SCAN_NONE && at < latest_at)
        return gw_fault_set(f, GW_EPRECOND, NULL, "event_time", GW_RULE_SCAN_DELIVERED_BACKDATED);
    return 0;
}
