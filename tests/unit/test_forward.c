/* test_forward.c: the forwarder's pure pieces (forward/forward_int.h): the request assembled from
 * separately packed deliveries is exactly the packed DeliverRequest; the backoff doubles from
 * the minimum to the cap with its jitter over the upper half; the backend's reason is kept as
 * printable ASCII within the outbox's 200 bytes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "waygate/v1/backend.pb-c.h"

#include "forward_int.h"

static uint8_t *pack_one(Waygate__V1__Delivery *d, size_t *len)
{
    uint8_t *buf = malloc(waygate__v1__delivery__get_packed_size(d) + 1);

    assert_non_null(buf);
    *len = waygate__v1__delivery__pack(d, buf);
    return buf;
}

static void request_is_the_concatenation(void **state)
{
    Waygate__V1__Delivery a = WAYGATE__V1__DELIVERY__INIT, b = WAYGATE__V1__DELIVERY__INIT;
    Waygate__V1__ScanRecord s = WAYGATE__V1__SCAN_RECORD__INIT;
    Waygate__V1__DeliverRequest *req;
    char big[300];
    uint8_t *pa, *pb, *out;
    size_t la, lb, o = 0;

    (void)state;
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    a.delivery_id = "11111111-1111-4111-8111-111111111111";
    a.kind = WAYGATE__V1__DELIVERY_KIND__DELIVERY_KIND_WAYBILL_ACCEPTED;
    a.record_id = big; /* over 127 bytes: a two-byte length */
    a.enqueued_at_us = 1764633600000000;
    b.delivery_id = "22222222-2222-4222-8222-222222222222";
    b.kind = WAYGATE__V1__DELIVERY_KIND__DELIVERY_KIND_SCAN_EVENT;
    b.record_id = "r";
    s.id = "s";
    s.event = 3;
    s.event_time = 1764633600;
    s.branch = "a";
    b.scan = &s;
    pa = pack_one(&a, &la);
    pb = pack_one(&b, &lb);
    assert_true(la > 127);
    out = malloc(la + lb + 2 * GW_FWD_FIELD_HEAD);
    assert_non_null(out);
    o += gw_fwd_put_delivery(out + o, pa, la);
    o += gw_fwd_put_delivery(out + o, pb, lb);
    req = waygate__v1__deliver_request__unpack(NULL, o, out);
    assert_non_null(req);
    assert_int_equal(req->n_deliveries, 2);
    assert_string_equal(req->deliveries[0]->delivery_id, a.delivery_id);
    assert_string_equal(req->deliveries[0]->record_id, big);
    assert_int_equal(req->deliveries[0]->enqueued_at_us, a.enqueued_at_us);
    assert_string_equal(req->deliveries[1]->delivery_id, b.delivery_id);
    assert_non_null(req->deliveries[1]->scan);
    assert_int_equal(req->deliveries[1]->scan->event, 3);
    /* byte for byte what protobuf-c packs for the same request */
    {
        Waygate__V1__Delivery *ds[2] = {&a, &b};
        Waygate__V1__DeliverRequest r = WAYGATE__V1__DELIVER_REQUEST__INIT;
        uint8_t *ref;

        r.n_deliveries = 2;
        r.deliveries = ds;
        ref = malloc(waygate__v1__deliver_request__get_packed_size(&r));
        assert_non_null(ref);
        assert_int_equal(waygate__v1__deliver_request__pack(&r, ref), o);
        assert_memory_equal(ref, out, o);
        free(ref);
    }
    waygate__v1__deliver_request__free_unpacked(req, NULL);
    free(pa);
    free(pb);
    free(out);
}

static void backoff_doubles_to_the_cap_with_jitter(void **state)
{
    (void)state;
    /* r = 0: the lower end of the jitter (half the delay); r = max: the full delay */
    assert_int_equal(gw_fwd_backoff(200, 30000, 1, 0), 100);
    assert_int_equal(gw_fwd_backoff(200, 30000, 1, 100), 200);
    assert_int_equal(gw_fwd_backoff(200, 30000, 2, 100), 300);
    assert_int_equal(gw_fwd_backoff(200, 30000, 2, 200), 400);
    assert_int_equal(gw_fwd_backoff(200, 30000, 3, 400), 800);
    assert_int_equal(gw_fwd_backoff(200, 30000, 0, 100), 200);
    /* the cap, and no overflow however many attempts */
    assert_int_equal(gw_fwd_backoff(200, 30000, 9, 15000), 30000);
    assert_int_equal(gw_fwd_backoff(200, 30000, 2000000000, 15000), 30000);
    assert_int_equal(gw_fwd_backoff(200, 30000, 2000000000, 0), 15000);
    for (uint32_t r = 0; r < 100000; r += 7) {
        uint32_t d = gw_fwd_backoff(200, 30000, 40, r);
        assert_true(d >= 15000 && d <= 30000);
    }
}

static void reason_is_printable_and_bounded(void **state)
{
    char out[201], longer[600];

    (void)state;
    assert_string_equal(gw_fwd_reason(out, sizeof(out), "REJECTED: ", "unknown region\n"),
                        "REJECTED: unknown region?");
    assert_string_equal(gw_fwd_reason(out, sizeof(out), NULL, "\xe5\xbc\xa0"), "???");
    memset(longer, 'r', sizeof(longer) - 1);
    longer[sizeof(longer) - 1] = '\0';
    gw_fwd_reason(out, sizeof(out), "INVALID_ARGUMENT: ", longer);
    assert_int_equal(strlen(out), 200);
    assert_memory_equal(out, "INVALID_ARGUMENT: rrr", 21);
    assert_string_equal(gw_fwd_reason(out, sizeof(out), NULL, NULL), "");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(request_is_the_concatenation),
        cmocka_unit_test(backoff_doubles_to_the_cap_with_jitter),
        cmocka_unit_test(reason_is_printable_and_bounded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
