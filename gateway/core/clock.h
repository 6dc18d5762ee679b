/* clock.h: the process's clocks, and the event loop that times with the same clock.
 *
 * Deadlines, leases, idle and stall limits are computed in CLOCK_MONOTONIC milliseconds
 * (gw_clock_ms) and handed to libevent as relative timeouts, always through gw_clock_tv. libevent
 * 2.1 reads CLOCK_MONOTONIC_COARSE (a tick of 4 ms on the machines measured) and adds the timeout
 * to that reading, which lags the precise clock: a timer of t ms could fire that much before
 * gw_clock_ms() + t, a deadline answered early. The lag is a tick at most while ticks come on
 * time, but more when they do not (a virtual CPU not scheduled, a busy host: CI saw a timer fire
 * early with one tick added). So gw_clock_tv measures it, reading the coarse clock and then the
 * precise one, and adds it: a timer never fires before its time on the clock its time came from,
 * and may fire up to a tick late. The loop reads that clock whenever a timer is added
 * (EVENT_BASE_FLAG_NO_CACHE_TIME): by default libevent reuses the reading taken when the loop's
 * turn began, so a timer added late in a long turn (a loaded box) counted from a moment already
 * past, and fired that much early. libevent's precise timer (EVENT_BASE_FLAG_PRECISE_TIMER) would
 * give the same without the tick, at the cost of a timerfd_settime system call on every turn of the
 * loop (0.15 a waybill under Submit load, ~5 % of the gateway's CPU: docs/performance.md). */
#ifndef GW_CLOCK_H
#define GW_CLOCK_H

#include <stdint.h>

#include <sys/time.h>

struct event_base;

/* CLOCK_MONOTONIC in milliseconds: for intervals and deadlines, never for what a record says. */
uint64_t gw_clock_ms(void);

/* CLOCK_REALTIME in microseconds since the epoch: for times stored or shown (audit records). */
int64_t gw_clock_real_us(void);

/* A new event base for the daemon's loop (libevent's default clock, read afresh for each timer
 * added), or NULL. The daemon's loop and the tests that run its timers use it. */
struct event_base *gw_clock_loop_new(void);

/* The relative timeout to hand libevent for a timer due ms milliseconds from now: ms and how far
 * libevent's clock (CLOCK_MONOTONIC_COARSE) lags CLOCK_MONOTONIC now, plus a microsecond for
 * libevent's truncation to microseconds, so that a timer added with it right away never fires
 * before gw_clock_ms() + ms as read before this call. 0 stays 0: run at the loop's next turn. */
struct timeval gw_clock_tv(uint64_t ms);

#endif
