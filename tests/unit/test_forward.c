/* test_forward.c: the forwarder's pure pieces (forward/forward_int.h): the request assembled from
 * separately packed deliveries is exactly the packed DeliverRequest; the backoff doubles from
 * the minimum to the cap with its jitter over the upper half; the backend's reason is kept as
 * printable ASCII within the outbox's 200 bytes; results are matched to deliveries by id, and a
 * response with more results than the call had deliveries matches none; the breaker opens at the
 * k-th refusal in a row and closes at an acceptance. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
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

/* What the backend wrote loses every digit (each run one '#'), however the value is split; its
 * letters and the gateway's own prefix stay. */
static void backend_reason_values_redacted(void **state)
{
    char out[201], longer[600];

    (void)state;
    assert_string_equal(gw_fwd_backend_reason(out, sizeof(out), "REJECTED: ",
                                              "duplicate waybill WG1000000001 of 13800138000, "
                                              "ID 11010519491231002X, at 2026-12-01T08:00:00Z"),
                        "REJECTED: duplicate waybill WG# of #, ID #X, at #-#-#T#:#:#Z");
    /* a number split by spaces, a signed one, a field's index; the prefix is never redacted */
    assert_string_equal(gw_fwd_backend_reason(out, sizeof(out), "X1234: ",
                                              "+86 138 001 38000 in deliveries[3].sender.phone"),
                        "X1234: +# # # # in deliveries[#].sender.phone");
    assert_string_equal(gw_fwd_backend_reason(out, sizeof(out), NULL, "138-0013-8000\n\xe5"),
                        "#-#-#??");
    /* redacted before it is cut: a number at the bound leaves no digit of it */
    memset(longer, 'r', sizeof(longer) - 1);
    memcpy(longer + 196, " 13800138000 ", 13); /* its first three digits would fit a plain copy */
    longer[sizeof(longer) - 1] = '\0';
    gw_fwd_backend_reason(out, sizeof(out), NULL, longer);
    assert_int_equal(strlen(out), 200);
    assert_null(strpbrk(out, "0123456789"));
    assert_string_equal(gw_fwd_backend_reason(out, sizeof(out), NULL, NULL), "");
}

static Waygate__V1__DeliveryResult result(const char *id, int outcome)
{
    Waygate__V1__DeliveryResult r = WAYGATE__V1__DELIVERY_RESULT__INIT;

    r.delivery_id = (char *)id;
    r.outcome = outcome;
    return r;
}

#define ACC WAYGATE__V1__DELIVERY_RESULT__OUTCOME__OUTCOME_ACCEPTED
#define REJ WAYGATE__V1__DELIVERY_RESULT__OUTCOME__OUTCOME_REJECTED
#define RETRY WAYGATE__V1__DELIVERY_RESULT__OUTCOME__OUTCOME_RETRY

static void results_match_by_id_in_any_order(void **state)
{
    const char *ids[] = {"a", "b", "c", "d"};
    Waygate__V1__DeliveryResult rs[] = {result("d", REJ), result("x", ACC), result("b", ACC),
                                        result("b", RETRY)};
    Waygate__V1__DeliveryResult *rp[] = {&rs[0], &rs[1], &rs[2], &rs[3]};
    Waygate__V1__DeliverResponse r = WAYGATE__V1__DELIVER_RESPONSE__INIT;
    const Waygate__V1__DeliveryResult *res[4];

    (void)state;
    r.n_results = 4;
    r.results = rp;
    assert_int_equal(gw_fwd_match_results(&r, ids, 4, res), 0);
    assert_null(res[0]);              /* no result: later */
    assert_ptr_equal(res[1], &rs[2]); /* the first result for b; the second is ignored */
    assert_null(res[2]);
    assert_ptr_equal(res[3], &rs[0]);
    r.n_results = 0;
    assert_int_equal(gw_fwd_match_results(&r, ids, 4, res), 0);
    for (size_t i = 0; i < 4; i++)
        assert_null(res[i]);
}

/* More results than deliveries sent: malformed, nothing matched (the engine sends the call's
 * deliveries again later), even when every delivery has an ACCEPTED result among them. */
static void more_results_than_deliveries_match_none(void **state)
{
    const char *ids[] = {"a", "b", "c"};
    Waygate__V1__DeliveryResult rs[] = {result("a", ACC), result("b", ACC), result("c", ACC),
                                        result("a", ACC)};
    Waygate__V1__DeliveryResult *rp[] = {&rs[0], &rs[1], &rs[2], &rs[3]};
    Waygate__V1__DeliverResponse r = WAYGATE__V1__DELIVER_RESPONSE__INIT;
    const Waygate__V1__DeliveryResult *res[3] = {&rs[0], &rs[0], &rs[0]};

    (void)state;
    r.n_results = 4;
    r.results = rp;
    assert_int_equal(gw_fwd_match_results(&r, ids, 3, res), GW_EPROTO);
    for (size_t i = 0; i < 3; i++)
        assert_null(res[i]);
    r.n_results = 3; /* one each: all accepted */
    assert_int_equal(gw_fwd_match_results(&r, ids, 3, res), 0);
    for (size_t i = 0; i < 3; i++)
        assert_ptr_equal(res[i], &rs[i]);
}

/* The review's response: the size cap at batch 1000 (65536 + 1000 x 1024 bytes) filled with
 * empty results (2 bytes each), against the 1000 deliveries of the call. */
static void a_response_of_empty_results_at_the_cap_is_malformed(void **state)
{
    enum { BATCH = 1000, RESULTS = (65536 + BATCH * 1024) / 2 };
    Waygate__V1__DeliveryResult empty = WAYGATE__V1__DELIVERY_RESULT__INIT;
    Waygate__V1__DeliveryResult **rp = malloc(RESULTS * sizeof(*rp));
    Waygate__V1__DeliverResponse r = WAYGATE__V1__DELIVER_RESPONSE__INIT;
    const Waygate__V1__DeliveryResult **res = malloc(BATCH * sizeof(*res));
    char(*idbuf)[16] = malloc(BATCH * sizeof(*idbuf));
    const char **ids = malloc(BATCH * sizeof(*ids));

    (void)state;
    assert_non_null(rp);
    assert_non_null(res);
    assert_non_null(idbuf);
    assert_non_null(ids);
    for (size_t k = 0; k < RESULTS; k++)
        rp[k] = &empty;
    for (size_t i = 0; i < BATCH; i++) {
        snprintf(idbuf[i], sizeof(idbuf[i]), "id-%zu", i);
        ids[i] = idbuf[i];
    }
    r.n_results = RESULTS;
    r.results = rp;
    assert_int_equal(gw_fwd_match_results(&r, ids, BATCH, res), GW_EPROTO);
    for (size_t i = 0; i < BATCH; i++)
        assert_null(res[i]);
    free(rp);
    free(res);
    free(idbuf);
    free(ids);
}

/* The results of m deliveries, each with a 36-character id and a reason of reason_len bytes,
 * packed into a buffer with room for pad more bytes after them (*len: the packed part). */
static uint8_t *pack_results(size_t m, size_t reason_len, size_t pad, size_t *len)
{
    Waygate__V1__DeliverResponse r = WAYGATE__V1__DELIVER_RESPONSE__INIT;
    Waygate__V1__DeliveryResult *rs = calloc(m + 1, sizeof(*rs));
    Waygate__V1__DeliveryResult **rp = calloc(m + 1, sizeof(*rp));
    char(*idbuf)[37] = calloc(m + 1, sizeof(*idbuf));
    char *reason = malloc(reason_len + 1);
    uint8_t *buf;

    assert_non_null(rs);
    assert_non_null(rp);
    assert_non_null(idbuf);
    assert_non_null(reason);
    memset(reason, 'r', reason_len);
    reason[reason_len] = '\0';
    for (size_t i = 0; i < m; i++) {
        snprintf(idbuf[i], sizeof(idbuf[i]), "00000000-0000-4000-8000-%012zu", i);
        rs[i] = result(idbuf[i], REJ);
        rs[i].reason = reason;
        rp[i] = &rs[i];
    }
    r.n_results = m;
    r.results = rp;
    buf = malloc(waygate__v1__deliver_response__get_packed_size(&r) + pad + 1);
    assert_non_null(buf);
    *len = waygate__v1__deliver_response__pack(&r, buf);
    free(rs);
    free(rp);
    free(idbuf);
    free(reason);
    return buf;
}

/* Appends n unknown fields (field 4, a varint 0: two bytes each) at buf + *len. */
static void pad_unknown(uint8_t *buf, size_t *len, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        buf[(*len)++] = 0x20;
        buf[(*len)++] = 0x00;
    }
}

/* A response is judged on its wire bytes before it is unpacked (the review's padded answer: the
 * size cap of a call of 64 filled with unknown fields, 65 536 records of protobuf-c's, 2.2 MB and
 * 20 ms of the loop for every answer). A full answer with long reasons passes, and so do a few
 * unknown fields (a newer backend's); padding beyond what its results could hold, more results
 * than deliveries, broken framing and a NUL in an id are malformed. */
static void a_response_is_judged_before_it_is_unpacked(void **state)
{
    enum { M = 64, CAP = 65536 + M * 1024 };
    size_t len;
    uint8_t *buf;

    (void)state;
    buf = pack_results(M, 200, CAP, &len);
    assert_null(gw_fwd_response_check(buf, len, M));
    pad_unknown(buf, &len, 16);
    assert_null(gw_fwd_response_check(buf, len, M));
    free(buf);
    buf = pack_results(0, 0, CAP, &len);
    assert_int_equal(len, 0);
    pad_unknown(buf, &len, CAP / 2);
    assert_string_equal(gw_fwd_response_check(buf, len, M),
                        "malformed DeliverResponse: more to unpack than its results hold "
                        "(unknown fields)");
    free(buf);
    buf = pack_results(1, 0, 2 * M * GW_FWD_RESULT_UNPACKED, &len);
    pad_unknown(buf, &len, M * GW_FWD_RESULT_UNPACKED / 16);
    /* past the bound: 1024 unknown fields, 32 KiB to unpack */
    assert_non_null(gw_fwd_response_check(buf, len, M));
    free(buf);
    buf = pack_results(M + 1, 0, 0, &len);
    assert_string_equal(gw_fwd_response_check(buf, len, M),
                        "malformed DeliverResponse: more results than deliveries");
    assert_string_equal(gw_fwd_response_check(buf, len - 1, M + 1), "malformed DeliverResponse");
    buf[4] = '\0'; /* in the first id */
    assert_string_equal(gw_fwd_response_check(buf, len, M + 1),
                        "malformed DeliverResponse: a string that is not UTF-8 or holds a NUL");
    free(buf);
}

/* A batch's next call ends a second before its lease: after a whole call refused INVALID_ARGUMENT
 * the batch sends its deliveries one call at a time, (1 + n) x deadline_ms in all, which outlived
 * the lease (another gateway then claimed and sent them too). */
static void a_call_never_outlives_the_lease(void **state)
{
    const int64_t now = 1000000;

    (void)state;
    assert_int_equal(gw_fwd_call_room_ms(INT64_MAX, now, 5000), 5000);       /* no lease known */
    assert_int_equal(gw_fwd_call_room_ms(now + 30000, now, 5000), 5000);     /* room enough */
    assert_int_equal(gw_fwd_call_room_ms(now + 3000, now, 5000), 2000);      /* cut to fit */
    assert_int_equal(gw_fwd_call_room_ms(now + 1000 + 100, now, 5000), 100); /* the least */
    assert_true(gw_fwd_call_room_ms(now + 1000 + 99, now, 5000) <= 0);       /* none: later */
    assert_true(gw_fwd_call_room_ms(now - 1, now, 5000) <= 0);               /* ended */
    /* a batch claimed with a 30 s lease, singles of 5 s each: the 6th call is cut, the 7th never
     * starts */
    int64_t t = now, end = now + 30000;
    int calls = 0;
    for (int64_t d; (d = gw_fwd_call_room_ms(end, t, 5000)) > 0; t += d)
        calls++;
    assert_int_equal(calls, 6);
    assert_true(t <= end - 1000);
}

/* [forward] breaker_after = 4: the first three refusals in a row park, the fourth opens the
 * breaker and goes back, as every later one; an acceptance closes it and the count starts again;
 * an acceptance between refusals keeps it closed; 0 never opens it. */
static void the_breaker_opens_after_k_refusals_in_a_row(void **state)
{
    struct gw_fwd_breaker br = {.after = 4};

    (void)state;
    assert_true(gw_fwd_breaker_refused(&br));
    assert_true(gw_fwd_breaker_refused(&br));
    assert_false(gw_fwd_breaker_accepted(&br)); /* closed: nothing to close */
    for (int i = 0; i < 3; i++)
        assert_true(gw_fwd_breaker_refused(&br));
    assert_false(br.open);
    assert_false(gw_fwd_breaker_refused(&br)); /* the fourth in a row: back, not parked */
    assert_true(br.open);
    assert_int_equal(br.refusals, 4);
    for (int i = 0; i < 100; i++)
        assert_false(gw_fwd_breaker_refused(&br));
    assert_true(gw_fwd_breaker_accepted(&br));
    assert_false(br.open);
    assert_int_equal(br.refusals, 0);
    assert_true(gw_fwd_breaker_refused(&br)); /* the count starts again */

    br = (struct gw_fwd_breaker){.after = 0, .refusals = UINT32_MAX - 1};
    for (int i = 0; i < 3; i++)
        assert_true(gw_fwd_breaker_refused(&br)); /* off: always parks, the count saturates */
    assert_int_equal(br.refusals, UINT32_MAX);
    assert_false(br.open);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(a_call_never_outlives_the_lease),
        cmocka_unit_test(the_breaker_opens_after_k_refusals_in_a_row),
        cmocka_unit_test(request_is_the_concatenation),
        cmocka_unit_test(backoff_doubles_to_the_cap_with_jitter),
        cmocka_unit_test(reason_is_printable_and_bounded),
        cmocka_unit_test(backend_reason_values_redacted),
        cmocka_unit_test(results_match_by_id_in_any_order),
        cmocka_unit_test(more_results_than_deliveries_match_none),
        cmocka_unit_test(a_response_of_empty_results_at_the_cap_is_malformed),
        cmocka_unit_test(a_response_is_judged_before_it_is_unpacked),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
