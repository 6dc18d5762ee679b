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

struct timeval gw_clock_tv(uint64_t ms)
{
    struct timespec res;
    uint64_t us = ms * 1000u;

    if (ms == 0)
        return (struct timeval){0, 0};
    /* a tick of the clock libevent reads; without it libevent reads CLOCK_MONOTONIC */
    if (clock_getres(CLOCK_MONOTONIC_COARSE, &res) == 0)
        us += (uint64_t)res.tv_sec * 1000000u + ((uint64_t)res.tv_nsec + 999u) / 1000u;
    return (struct timeval){(time_t)(us / 1000000u), (suseconds_t)(us % 1000000u)};
}
