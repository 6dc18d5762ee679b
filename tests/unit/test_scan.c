/* test_scan.c: the scan-event rules (domain/scan.h): status names, the event and time checks
 * (each refusal's field and rule), the transitions. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "scan.h"

#define NOW 1764633600 /* 2025-12-02T00:00:00Z */
#define PICKUP (NOW - 7200)

static void status_names(void **state)
{
    (void)state;
    assert_string_equal(gw_scan_status(GW_SCAN_NONE), "accepted");
    assert_string_equal(gw_scan_status(GW_SCAN_PICKED_UP), "picked_up");
    assert_string_equal(gw_scan_status(GW_SCAN_ARRIVED), "arrived");
    assert_string_equal(gw_scan_status(GW_SCAN_DEPARTED), "departed");
    assert_string_equal(gw_scan_status(GW_SCAN_OUT_FOR_DELIVERY), "out_for_delivery");
    assert_string_equal(gw_scan_status(GW_SCAN_DELIVERED), "delivered");
    assert_string_equal(gw_scan_status(GW_SCAN_DELIVERY_FAILED), "delivery_failed");
    assert_string_equal(gw_scan_status(GW_SCAN_RETURNED), "returned");
    assert_string_equal(gw_scan_status(8), "unknown");
    assert_string_equal(gw_scan_status(-1), "unknown");
}

static void refused(int rc, const struct gw_fault *f, int code, const char *field,
                    enum gw_rule rule)
{
    assert_int_equal(rc, code);
    assert_int_equal(f->code, code);
    assert_string_equal(f->field, field);
    assert_int_equal(f->rule, rule);
}

static void event_and_time(void **state)
{
    struct gw_fault f;
    int64_t at = -1;

    (void)state;
    /* 0 is the receive time; an explicit time is kept */
    assert_int_equal(gw_scan_check_event(GW_SCAN_ARRIVED, 0, NOW, PICKUP, &at, &f), 0);
    assert_int_equal(at, NOW);
    assert_int_equal(gw_scan_check_event(GW_SCAN_ARRIVED, PICKUP, NOW, PICKUP, &at, &f), 0);
    assert_int_equal(at, PICKUP);
    /* up to the skew ahead of the clock, not a second more */
    assert_int_equal(
        gw_scan_check_event(GW_SCAN_ARRIVED, NOW + GW_SCAN_CLOCK_SKEW, NOW, 0, &at, &f), 0);
    refused(gw_scan_check_event(GW_SCAN_ARRIVED, NOW + GW_SCAN_CLOCK_SKEW + 1, NOW, 0, &at, &f), &f,
            GW_EINVAL, "event_time", GW_RULE_PICKUP_FUTURE);
    /* not before the pickup; no pickup recorded: no such bound */
    refused(gw_scan_check_event(GW_SCAN_ARRIVED, PICKUP - 1, NOW, PICKUP, &at, &f), &f, GW_EINVAL,
            "event_time", GW_RULE_SCAN_BEFORE_PICKUP);
    assert_int_equal(gw_scan_check_event(GW_SCAN_ARRIVED, PICKUP - 1, NOW, 0, &at, &f), 0);
    /* without a pickup time, not before 2000 either */
    refused(gw_scan_check_event(GW_SCAN_ARRIVED, 946684799, NOW, 0, &at, &f), &f, GW_EINVAL,
            "event_time", GW_RULE_PICKUP_BEFORE_2000);
    assert_int_equal(gw_scan_check_event(GW_SCAN_ARRIVED, 946684800, NOW, 0, &at, &f), 0);
    refused(gw_scan_check_event(GW_SCAN_ARRIVED, -1, NOW, 0, &at, &f), &f, GW_EINVAL, "event_time",
            GW_RULE_SCAN_TIME_NEGATIVE);
    /* the event */
    refused(gw_scan_check_event(GW_SCAN_NONE, 0, NOW, 0, &at, &f), &f, GW_EINVAL, "event",
            GW_RULE_REQUIRED);
    refused(gw_scan_check_event(8, 0, NOW, 0, &at, &f), &f, GW_EINVAL, "event",
            GW_RULE_SCAN_EVENT_UNKNOWN);
    refused(gw_scan_check_event(-3, 0, NOW, 0, &at, &f), &f, GW_EINVAL, "event",
            GW_RULE_SCAN_EVENT_UNKNOWN);
    for (int e = GW_SCAN_PICKED_UP; e <= GW_SCAN_EVENT_MAX; e++)
        assert_int_equal(gw_scan_check_event(e, 0, NOW, 0, &at, &f), 0);
}

static void transitions(void **state)
{
    struct gw_fault f;
    int latest, e;

    (void)state;
    for (latest = GW_SCAN_NONE; latest <= GW_SCAN_EVENT_MAX; latest++) {
        for (e = GW_SCAN_PICKED_UP; e <= GW_SCAN_EVENT_MAX; e++) {
            int rc = gw_scan_check_transition(latest, NOW - 60, e, NOW, &f);
            if (e == GW_SCAN_PICKED_UP && latest != GW_SCAN_NONE) {
                refused(rc, &f, GW_EPRECOND, "event", GW_RULE_SCAN_PICKUP_NOT_FIRST);
            } else if (latest == GW_SCAN_DELIVERED && e != GW_SCAN_RETURNED) {
                refused(rc, &f, GW_EPRECOND, "event", GW_RULE_SCAN_AFTER_DELIVERED);
            } else {
                assert_int_equal(rc, 0);
                assert_int_equal(f.code, 0);
            }
        }
    }
    /* the two rules by name: */
    assert_int_equal(gw_scan_check_transition(GW_SCAN_NONE, NOW - 60, GW_SCAN_PICKED_UP, NOW, &f),
                     0);
    assert_int_equal(
        gw_scan_check_transition(GW_SCAN_DELIVERED, NOW - 60, GW_SCAN_RETURNED, NOW, &f), 0);
    assert_int_equal(
        gw_scan_check_transition(GW_SCAN_DELIVERED, NOW - 60, GW_SCAN_ARRIVED, NOW, &f),
        GW_EPRECOND);
    assert_int_equal(
        gw_scan_check_transition(GW_SCAN_DELIVERED, NOW - 60, GW_SCAN_DELIVERED, NOW, &f),
        GW_EPRECOND);
    assert_int_equal(gw_scan_check_transition(GW_SCAN_RETURNED, NOW - 60, GW_SCAN_ARRIVED, NOW, &f),
                     0);
    /* DELIVERED not dated before the latest event (it would then be followed by it); other
     * events may be recorded late */
    refused(gw_scan_check_transition(GW_SCAN_ARRIVED, NOW, GW_SCAN_DELIVERED, NOW - 1, &f), &f,
            GW_EPRECOND, "event_time", GW_RULE_SCAN_DELIVERED_BACKDATED);
    assert_int_equal(gw_scan_check_transition(GW_SCAN_ARRIVED, NOW, GW_SCAN_DELIVERED, NOW, &f), 0);
    assert_int_equal(gw_scan_check_transition(GW_SCAN_ARRIVED, NOW, GW_SCAN_DEPARTED, NOW - 1, &f),
                     0);
    assert_int_equal(gw_scan_check_transition(GW_SCAN_NONE, 0, GW_SCAN_DELIVERED, NOW, &f), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(status_names),
        cmocka_unit_test(event_and_time),
        cmocka_unit_test(transitions),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
