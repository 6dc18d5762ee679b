/* clock.c: the process's clocks and its event loop (clock.h). */
#include "clock.h"

#include <stdatomic.h>
#include <time.h>

#include <event2/event.h>

uint64_t gw_clock_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

int64_t gw_clock_real_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

struct event_base *gw_clock_loop_new(void)
{
    struct event_config *cfg = event_config_new();
    struct event_base *base;

    if (cfg == NULL)
        return NULL;
    /* not EVENT_BASE_FLAG_PRECISE_TIMER: gw_clock_tv's tick keeps timers from firing early; and
     * the clock read when a timer is added, not the one cached when the loop's turn began */
    if (event_config_set_flag(cfg, EVENT_BASE_FLAG_NO_CACHE_TIME) != 0) {
        event_config_free(cfg);
        return NULL;
    }
    base = event_base_new_with_config(cfg);
    event_config_free(cfg);
    return base;
}

/* A tick of the clock libevent reads, in microseconds (rounded up), read once: it does not change
 * while the process runs. 0 without a coarse clock: libevent then reads CLOCK_MONOTONIC. */
static uint64_t tick_us(void)
{
    static _Atomic int64_t cached = -1;
    int64_t t = atomic_load_explicit(&cached, memory_order_relaxed);
    struct timespec res;

    if (t < 0) {
        t = clock_getres(CLOCK_MONOTONIC_COARSE, &res) == 0
                ? (int64_t)res.tv_sec * 1000000 + (res.tv_nsec + 999) / 1000
                : 0;
        atomic_store_explicit(&cached, t, memory_order_relaxed);
    }
    return (uint64_t)t;
}

struct timeval gw_clock_tv(uint64_t ms)
{
    uint64_t us = ms * 1000u;

    if (ms == 0)
        return (struct timeval){0, 0};
    us += tick_us();
    return (struct timeval){(time_t)(us / 1000000u), (suseconds_t)(us % 1000000u)};
}
