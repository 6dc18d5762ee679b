/* scan.h: the rules of scan events (a waybill's travel: issue 9), pure: which events exist, what
 * a waybill's status is after its latest event, whether an event may follow the latest one, and
 * whether its time is sane. The event numbers are enum waygate.v1.ScanEvent's (proto/waygate/v1/
 * intake.proto) and the scan table's (sql/011_scan.sql).
 * Transitions, judged against the waybill's latest event (by event time): anything may follow
 * none; PICKED_UP only as the first event; nothing but RETURNED after DELIVERED, and DELIVERED
 * not dated before the latest event (which would then follow it). Custody (who may
 * see the waybill while it is at a branch) is the database's derivation of the same events
 * (waybill_custodian in sql/011_scan.sql) and the policy's decision (policy.h).
 * Pure: no allocation, no I/O, no logging. */
#ifndef GW_SCAN_H
#define GW_SCAN_H

#include <stdbool.h>
#include <stdint.h>

#include "err.h"

enum gw_scan_event {
    GW_SCAN_NONE = 0, /* no event yet (and SCAN_EVENT_UNSPECIFIED in a request) */
    GW_SCAN_PICKED_UP = 1,
    GW_SCAN_ARRIVED = 2,
    GW_SCAN_DEPARTED = 3,
    GW_SCAN_OUT_FOR_DELIVERY = 4,
    GW_SCAN_DELIVERED = 5,
    GW_SCAN_DELIVERY_FAILED = 6,
    GW_SCAN_RETURNED = 7,
};
#define GW_SCAN_EVENT_MAX GW_SCAN_RETURNED

/* Seconds an event time may lie ahead of the gateway's clock (the same as a pickup time's). */
#define GW_SCAN_CLOCK_SKEW 300

/* The status a waybill shows after its latest event: "accepted" (none), "picked_up", "arrived",
 * "departed", "out_for_delivery", "delivered", "delivery_failed", "returned"; "unknown" for a
 * number that is no event. Never NULL; a static string. */
const char *gw_scan_status(int latest);

/* Checks the request's event (1..GW_SCAN_EVENT_MAX) and its time (Unix seconds; 0 means now) and
 * returns the time to record in *at. pickup is the waybill's pickup time (Unix seconds, 0: not
 * recorded). Returns 0, or GW_EINVAL with the rule in *f at field "event" (GW_RULE_REQUIRED,
 * GW_RULE_SCAN_EVENT_UNKNOWN) or "event_time" (GW_RULE_SCAN_TIME_NEGATIVE,
 * GW_RULE_PICKUP_BEFORE_2000, GW_RULE_PICKUP_FUTURE: more than GW_SCAN_CLOCK_SKEW after now,
 * GW_RULE_SCAN_BEFORE_PICKUP). */
int gw_scan_check_event(int event, int64_t event_time, int64_t now, int64_t pickup, int64_t *at,
                        struct gw_fault *f) GW_MUST_CHECK;

/* May event at time `at` follow latest (the waybill's latest event, GW_SCAN_NONE when it has
 * none) placed at latest_at? Stored events are ordered by their place, their time but never later
 * than the second they were recorded, then by the order of receipt (sql/023_scan_order.sql), so
 * an event dated ahead, as a device may date one by up to GW_SCAN_CLOCK_SKEW, is placed when it
 * arrived; latest_at is never after now, so comparing `at` itself judges the new event's place.
 * Returns 0, or GW_EPRECOND with the rule in *f at field "event" (GW_RULE_SCAN_PICKUP_NOT_FIRST,
 * GW_RULE_SCAN_AFTER_DELIVERED) or "event_time" (GW_RULE_SCAN_DELIVERED_BACKDATED: a DELIVERED
 * placed before the latest event would leave an event after it). */
int gw_scan_check_transition(int latest, int64_t latest_at, int event, int64_t at,
                             struct gw_fault *f) GW_MUST_CHECK;

#endif
