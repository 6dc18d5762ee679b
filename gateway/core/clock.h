/* clock.h: the process's clocks, and the event loop that times with the same clock.
 *
 * Deadlines, leases, idle and stall limits are computed in CLOCK_MONOTONIC milliseconds
 * (gw_clock_ms) and handed to libevent as relative timeouts. libevent 2.1 by default reads
 * CLOCK_MONOTONIC_COARSE (a tick of 4 ms on the machines measured): when a tick passes between
 * adding a timer and the loop's next look at the clock (a loaded box), the timer can fire up to a
 * tick before the moment gw_clock_ms names, a deadline answered early. gw_clock_loop_new asks for
 * the precise clock: a timer never fires before its time on the clock its time came from. */
#ifndef GW_CLOCK_H
#define GW_CLOCK_H

#include <stdint.h>

struct event_base;

/* CLOCK_MONOTONIC in milliseconds: for intervals and deadlines, never for what a record says. */
uint64_t gw_clock_ms(void);

/* CLOCK_REALTIME in microseconds since the epoch: for times stored or shown (audit records). */
int64_t gw_clock_real_us(void);

/* A new event base timed with CLOCK_MONOTONIC (EVENT_BASE_FLAG_PRECISE_TIMER), or NULL. The
 * daemon's loop and the tests that run its timers use it. */
struct event_base *gw_clock_loop_new(void);

#endif
