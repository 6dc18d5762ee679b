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
    /* CLOCK_MONOTONIC rather than _COARSE: a timer must not fire before gw_clock_ms says */
    if (event_config_set_flag(cfg, EVENT_BASE_FLAG_PRECISE_TIMER) != 0) {
        event_config_free(cfg);
        return NULL;
    }
    base = event_base_new_with_config(cfg);
    event_config_free(cfg);
    return base;
}
