/* clock.c: the process's clocks and its event loop (clock.h). */
#include "clock.h"

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
    /* not EVENT_BASE_FLAG_PRECISE_TIMER: gw_clock_tv's lag keeps timers from firing early; and
     * the clock read when a timer is added, not the one cached when the loop's turn began */
    if (event_config_set_flag(cfg, EVENT_BASE_FLAG_NO_CACHE_TIME) != 0) {
        event_config_free(cfg);
        return NULL;
    }
    base = event_base_new_with_config(cfg);
    event_config_free(cfg);
    return base;
}

/* How far the clock libevent reads lags CLOCK_MONOTONIC now, in microseconds rounded up. The
 * coarse clock is read first: whatever happens between the two reads only makes the lag larger,
 * the timer later. 0 without a coarse clock: libevent then reads CLOCK_MONOTONIC. */
static uint64_t lag_us(void)
{
    struct timespec c, p;
    int64_t ns;

    if (clock_gettime(CLOCK_MONOTONIC_COARSE, &c) != 0 || clock_gettime(CLOCK_MONOTONIC, &p) != 0)
        return 0;
    ns = ((int64_t)p.tv_sec - (int64_t)c.tv_sec) * 1000000000 + (p.tv_nsec - c.tv_nsec);
    return ns > 0 ? ((uint64_t)ns + 999u) / 1000u : 0;
}

struct timeval gw_clock_tv(uint64_t ms)
{
    uint64_t us = ms * 1000u;

    if (ms == 0)
        return (struct timeval){0, 0};
    /* libevent's reading when the timer is added (c2, truncated to microseconds) is at least
     * this one's (c) less a microsecond, so its deadline is at least c + lag + ms = p + ms */
    us += lag_us() + 1u;
    return (struct timeval){(time_t)(us / 1000000u), (suseconds_t)(us % 1000000u)};
}
