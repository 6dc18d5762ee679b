/* test_h2_calm.c: the control-frame budgets and the per-stream log limit (h2_calm.h): each
 * bucket allows its burst and not one frame more, refills at its rate, earns credit only from
 * our DATA and HEADERS, never past its burst; ACKs are free; TLS KeyUpdate has a bucket no frame
 * type maps to and no output credits; only the resets a client provokes are charged; the log
 * limit counts what it drops. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "h2_calm.h"

static unsigned take_all(struct gw_h2_calm *c, enum gw_h2_calm_kind k, uint64_t now)
{
    unsigned n = 0;

    while (gw_h2_calm_take(c, k, now) && n < 1000000u)
        n++;
    return n;
}

static void test_bursts(void **state)
{
    static const unsigned burst[GW_H2_CALM_NKINDS] = {
        GW_H2_CALM_PING_BURST,     GW_H2_CALM_SETTINGS_BURST,   GW_H2_CALM_WINDOW_UPDATE_BURST,
        GW_H2_CALM_PRIORITY_BURST, GW_H2_CALM_RST_STREAM_BURST, GW_H2_CALM_KEY_UPDATE_BURST,
    };
    struct gw_h2_calm c;

    (void)state;
    gw_h2_calm_init(&c, 1000);
    for (int k = 0; k < GW_H2_CALM_NKINDS; k++)
        assert_int_equal(take_all(&c, (enum gw_h2_calm_kind)k, 1000), burst[k]);
}

static void test_refill_and_clock(void **state)
{
    struct gw_h2_calm c;

    (void)state;
    gw_h2_calm_init(&c, 5000);
    assert_int_equal(take_all(&c, GW_H2_CALM_PING, 5000), GW_H2_CALM_PING_BURST);
    /* one second refills RATE frames, no more */
    assert_int_equal(take_all(&c, GW_H2_CALM_PING, 6000), GW_H2_CALM_PING_RATE);
    /* time going backwards refills nothing */
    assert_int_equal(take_all(&c, GW_H2_CALM_PING, 10), 0);
    /* a long pause fills the bucket to its burst, not beyond */
    assert_int_equal(take_all(&c, GW_H2_CALM_PING, 6000 + 86400000ull), GW_H2_CALM_PING_BURST);
}

static void test_credit(void **state)
{
    struct gw_h2_calm c;

    (void)state;
    gw_h2_calm_init(&c, 0);
    assert_int_equal(take_all(&c, GW_H2_CALM_WINDOW_UPDATE, 0), GW_H2_CALM_WINDOW_UPDATE_BURST);
    assert_int_equal(take_all(&c, GW_H2_CALM_PING, 0), GW_H2_CALM_PING_BURST);
    assert_int_equal(take_all(&c, GW_H2_CALM_RST_STREAM, 0), GW_H2_CALM_RST_STREAM_BURST);
    gw_h2_calm_frame_sent(&c, 0x6); /* our PING ACK earns nothing */
    gw_h2_calm_frame_sent(&c, 0x4); /* nor our SETTINGS */
    assert_false(gw_h2_calm_take(&c, GW_H2_CALM_PING, 0));
    for (int i = 0; i < 10; i++)
        gw_h2_calm_frame_sent(&c, 0x0); /* DATA */
    gw_h2_calm_frame_sent(&c, 0x1);     /* HEADERS */
    assert_int_equal(take_all(&c, GW_H2_CALM_WINDOW_UPDATE, 0), 22);
    assert_int_equal(take_all(&c, GW_H2_CALM_PING, 0), 11);
    /* opening streams buys no resets (rapid reset), two PRIORITY frames each */
    gw_h2_calm_stream_opened(&c);
    assert_false(gw_h2_calm_take(&c, GW_H2_CALM_RST_STREAM, 0));
    /* credit never fills a bucket past its burst */
    for (int i = 0; i < 100000; i++)
        gw_h2_calm_frame_sent(&c, 0x0);
    assert_int_equal(take_all(&c, GW_H2_CALM_PING, 0), GW_H2_CALM_PING_BURST);
}

/* Client side: each request we open earns the server one reset and two PRIORITY frames. */
static void test_request_sent(void **state)
{
    struct gw_h2_calm c;

    (void)state;
    gw_h2_calm_init(&c, 0);
    assert_int_equal(take_all(&c, GW_H2_CALM_RST_STREAM, 0), GW_H2_CALM_RST_STREAM_BURST);
    assert_int_equal(take_all(&c, GW_H2_CALM_PRIORITY, 0), GW_H2_CALM_PRIORITY_BURST);
    for (int i = 0; i < 3; i++)
        gw_h2_calm_request_sent(&c);
    assert_int_equal(take_all(&c, GW_H2_CALM_RST_STREAM, 0), 3);
    assert_int_equal(take_all(&c, GW_H2_CALM_PRIORITY, 0), 6);
}

static void test_kinds(void **state)
{
    (void)state;
    assert_int_equal(gw_h2_calm_kind_of(0x6, false), GW_H2_CALM_PING);
    assert_int_equal(gw_h2_calm_kind_of(0x6, true), GW_H2_CALM_NKINDS); /* our PING's ACK */
    assert_int_equal(gw_h2_calm_kind_of(0x4, false), GW_H2_CALM_SETTINGS);
    assert_int_equal(gw_h2_calm_kind_of(0x4, true), GW_H2_CALM_NKINDS);
    assert_int_equal(gw_h2_calm_kind_of(0x8, false), GW_H2_CALM_WINDOW_UPDATE);
    assert_int_equal(gw_h2_calm_kind_of(0x2, false), GW_H2_CALM_PRIORITY);
    assert_int_equal(gw_h2_calm_kind_of(0x3, false), GW_H2_CALM_RST_STREAM);
    assert_int_equal(gw_h2_calm_kind_of(0x0, false), GW_H2_CALM_NKINDS);
    assert_int_equal(gw_h2_calm_kind_of(0x1, false), GW_H2_CALM_NKINDS);
    assert_string_equal(gw_h2_calm_name(GW_H2_CALM_WINDOW_UPDATE), "WINDOW_UPDATE");
    assert_string_equal(gw_h2_calm_name(GW_H2_CALM_KEY_UPDATE), "TLS KeyUpdate or renegotiation");
    /* no HTTP/2 frame type is a KeyUpdate */
    for (unsigned t = 0; t < 256; t++) {
        assert_int_not_equal(gw_h2_calm_kind_of((uint8_t)t, false), GW_H2_CALM_KEY_UPDATE);
        assert_int_not_equal(gw_h2_calm_kind_of((uint8_t)t, true), GW_H2_CALM_KEY_UPDATE);
    }
}

/* The resets the gateway chooses (NO_ERROR, CANCEL, INTERNAL_ERROR) are free; every other code,
 * known or not, is nghttp2 answering the client's stream and is charged (CVE-2025-8671). */
static void test_provoked(void **state)
{
    (void)state;
    assert_false(gw_h2_calm_provoked(0x0)); /* NO_ERROR: a stream left open after our answer */
    assert_false(gw_h2_calm_provoked(0x2)); /* INTERNAL_ERROR: out of memory */
    assert_false(gw_h2_calm_provoked(0x8)); /* CANCEL: a stalled reader */
    for (uint32_t code = 0; code <= 0xd; code++)
        if (code != 0x0 && code != 0x2 && code != 0x8)
            assert_true(gw_h2_calm_provoked(code));
    assert_true(gw_h2_calm_provoked(0xe));
    assert_true(gw_h2_calm_provoked(UINT32_MAX));
}

/* A KeyUpdate earns no credit from our output (a flood of them would otherwise pay for itself
 * with the records it makes us send) and refills at its own rate. */
static void test_key_update_budget(void **state)
{
    struct gw_h2_calm c;

    (void)state;
    gw_h2_calm_init(&c, 0);
    assert_int_equal(take_all(&c, GW_H2_CALM_KEY_UPDATE, 0), GW_H2_CALM_KEY_UPDATE_BURST);
    for (int i = 0; i < 1000; i++) {
        gw_h2_calm_frame_sent(&c, 0x0);
        gw_h2_calm_frame_sent(&c, 0x1);
        gw_h2_calm_stream_opened(&c);
    }
    assert_false(gw_h2_calm_take(&c, GW_H2_CALM_KEY_UPDATE, 0));
    assert_int_equal(take_all(&c, GW_H2_CALM_KEY_UPDATE, 10000), 10 * GW_H2_CALM_KEY_UPDATE_RATE);
}

static void test_log_limit(void **state)
{
    struct gw_h2_calm c;
    uint64_t dropped = 99;
    unsigned ok = 0;

    (void)state;
    gw_h2_calm_init(&c, 0);
    for (int i = 0; i < 1000; i++)
        ok += gw_h2_calm_log_ok(&c, NULL, 0, &dropped);
    assert_int_equal(ok, GW_H2_CALM_LOG_BURST);
    assert_int_equal(dropped, 0);
    assert_int_equal(c.log.dropped, 1000 - GW_H2_CALM_LOG_BURST);
    /* the next line allowed says how many were dropped */
    assert_true(gw_h2_calm_log_ok(&c, NULL, 1000, &dropped));
    assert_int_equal(dropped, 1000 - GW_H2_CALM_LOG_BURST);
    assert_int_equal(c.log.dropped, 0);
}

/* The gateway's budget, shared by connections: a new connection's fresh budget does not write
 * past it, and a line it refuses is counted in both. */
static void test_log_limit_shared(void **state)
{
    struct gw_lines gateway;
    struct gw_h2_calm c[10];
    unsigned ok = 0;

    (void)state;
    gw_lines_init(&gateway, 2 * GW_H2_CALM_LOG_BURST, 4, 0);
    for (int k = 0; k < 10; k++) {
        gw_h2_calm_init(&c[k], 0);
        for (int i = 0; i < 100; i++)
            ok += gw_h2_calm_log_ok(&c[k], &gateway, 0, NULL);
    }
    assert_int_equal(ok, 2 * GW_H2_CALM_LOG_BURST);
    assert_int_equal(gateway.dropped_total, 1000 - 2 * GW_H2_CALM_LOG_BURST);
    assert_int_equal(c[0].log.dropped, 100 - GW_H2_CALM_LOG_BURST); /* its own budget */
    assert_int_equal(c[9].log.dropped, 100);
    /* one second later: the gateway's rate, not ten connections' */
    ok = 0;
    for (int k = 0; k < 10; k++)
        for (int i = 0; i < 100; i++)
            ok += gw_h2_calm_log_ok(&c[k], &gateway, 1000, NULL);
    assert_int_equal(ok, 4);
    assert_int_equal(gw_lines_dropped(&gateway), 2000 - 2 * GW_H2_CALM_LOG_BURST - 4);
    assert_int_equal(gw_lines_dropped(&gateway), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bursts),
        cmocka_unit_test(test_refill_and_clock),
        cmocka_unit_test(test_credit),
        cmocka_unit_test(test_request_sent),
        cmocka_unit_test(test_kinds),
        cmocka_unit_test(test_log_limit),
        cmocka_unit_test(test_log_limit_shared),
        cmocka_unit_test(test_key_update_budget),
        cmocka_unit_test(test_provoked),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
