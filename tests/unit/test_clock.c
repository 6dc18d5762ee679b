/* test_clock.c: the event loop's timers never fire before their time by gw_clock_ms's clock
 * (clock.h); and the clocks themselves. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <cmocka.h>
#include <event2/event.h>

#include "clock.h"

#define TIMEOUT_MS 3

static uint64_t mono_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

struct probe {
    struct event *ev;
    uint64_t added_us; /* when evtimer_add ran, by CLOCK_MONOTONIC */
    uint64_t fired_us;
};

static void fired(evutil_socket_t fd, short what, void *arg)
{
    struct probe *p = arg;

    (void)fd;
    (void)what;
    p->fired_us = mono_us();
}

static void add_timer(struct probe *p)
{
    struct timeval tv;

    p->fired_us = 0;
    p->added_us = mono_us(); /* the caller's gw_clock_ms() + ms: read before gw_clock_tv */
    tv = gw_clock_tv(TIMEOUT_MS);
    assert_int_equal(evtimer_add(p->ev, &tv), 0);
}

/* A timer added through gw_clock_tv, then the loop run a little later (a loaded box: other work
 * ran in between), but before the timer is due: it must wait for its time. libevent's clock is
 * CLOCK_MONOTONIC_COARSE (a tick of 4 ms): a tick passes in that gap ~70 % of the time, and a
 * timer handed the bare timeout then fires at once, up to a tick early (and more when the ticks
 * come late: a timer given one tick more fired early once in CI, on a loaded machine). */
static void test_timer_never_early(void **state)
{
    struct event_base *base = gw_clock_loop_new();
    struct probe p;

    (void)state;
    assert_non_null(base);
    p.ev = evtimer_new(base, fired, &p);
    assert_non_null(p.ev);
    for (int i = 0; i < 50; i++) {
        uint64_t gap;

        add_timer(&p);
        gap = p.added_us + TIMEOUT_MS * 1000 - 100;
        while (mono_us() < gap)
            ;
        assert_int_equal(event_base_dispatch(base), 1); /* no events left: the timer ran */
        assert_true(p.fired_us != 0);
        assert_true(p.fired_us >= p.added_us + TIMEOUT_MS * 1000);
    }
    event_free(p.ev);
    event_base_free(base);
}

static struct event *nudge; /* another event due at once: the loop turns again at once */

static void nothing(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
}

/* A long turn of the loop (10 ms of work in a callback, a loaded box) that adds a timer at its
 * end, with other work due at once (a busy gateway's loop turns again at once): the timer counts
 * from when it was added, not from when the turn began. libevent caches the clock at a turn's
 * start unless told not to (EVENT_BASE_FLAG_NO_CACHE_TIME): the timer then counted from 10 ms
 * before it was added, and the next turn found it due, 3 ms early. */
static void long_turn(evutil_socket_t fd, short what, void *arg)
{
    static const struct timeval now = {0, 0};
    struct probe *p = arg;
    uint64_t until = mono_us() + 10000;

    (void)fd;
    (void)what;
    while (mono_us() < until)
        ;
    add_timer(p);
    assert_int_equal(evtimer_add(nudge, &now), 0);
}

static void test_timer_added_late_in_a_turn(void **state)
{
    struct event_base *base = gw_clock_loop_new();
    struct probe p;
    struct event *turn;
    const struct timeval now = {0, 0};

    (void)state;
    assert_non_null(base);
    p.ev = evtimer_new(base, fired, &p);
    turn = evtimer_new(base, long_turn, &p);
    nudge = evtimer_new(base, nothing, NULL);
    assert_non_null(p.ev);
    assert_non_null(turn);
    assert_non_null(nudge);
    for (int i = 0; i < 10; i++) {
        p.fired_us = 0;
        assert_int_equal(evtimer_add(turn, &now), 0);
        assert_int_equal(event_base_dispatch(base), 1);
        assert_true(p.fired_us != 0);
        assert_true(p.fired_us >= p.added_us + TIMEOUT_MS * 1000);
    }
    event_free(nudge);
    event_free(turn);
    event_free(p.ev);
    event_base_free(base);
}

static uint64_t tv_us(struct timeval tv)
{
    return (uint64_t)tv.tv_sec * 1000000u + (uint64_t)tv.tv_usec;
}

/* gw_clock_tv: 0 is the loop's next turn; anything else is more than what was asked (the coarse
 * clock's lag, measured, and a microsecond), a well-formed timeval, and not absurdly more (the
 * lag of a clock that ticks: far less than a second). */
static void test_tv(void **state)
{
    struct timeval z = gw_clock_tv(0), a = gw_clock_tv(1500), b = gw_clock_tv(UINT64_C(86400000));

    (void)state;
    assert_true(z.tv_sec == 0 && z.tv_usec == 0);
    assert_true(a.tv_usec >= 0 && a.tv_usec < 1000000);
    assert_true(tv_us(a) > 1500000u && tv_us(a) < 2500000u);
    assert_true(tv_us(b) > UINT64_C(86400000000) && tv_us(b) < UINT64_C(86401000000));
}

static void test_clocks(void **state)
{
    uint64_t a = gw_clock_ms(), b;
    int64_t r = gw_clock_real_us();

    (void)state;
    b = gw_clock_ms();
    assert_true(b >= a);
    /* the real-time clock in microseconds since the epoch: after 2020, before 2200 */
    assert_true(r > INT64_C(1577836800) * 1000000);
    assert_true(r < INT64_C(7258118400) * 1000000);
    assert_true(r / 1000000 - (int64_t)time(NULL) <= 1 && (int64_t)time(NULL) - r / 1000000 <= 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_timer_never_early),
        cmocka_unit_test(test_timer_added_late_in_a_turn),
        cmocka_unit_test(test_tv),
        cmocka_unit_test(test_clocks),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
