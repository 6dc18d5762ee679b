/* ratelimit.h: token buckets, and the budgets of log lines built on them. A bucket holds at most
 * `burst` tokens and gains `rate` a second; a line budget (struct gw_lines) is a bucket of log
 * lines that counts the lines it refused, so that a later line can say how many were left out.
 * Pure: no allocation, no libevent, no logging; the caller passes the time (gw_clock_ms), so
 * tests drive it without a clock.
 *
 * Two budgets may be asked at once (gw_lines_take): a connection's and the gateway's. A line is
 * written only when both have a token, and then takes one from each; a line refused is counted
 * in both. So one connection cannot write past its own budget, and no number of connections
 * (reconnecting, from many addresses) can write past the gateway's. */
#ifndef GW_RATELIMIT_H
#define GW_RATELIMIT_H

#include <stdbool.h>
#include <stdint.h>

struct gw_bucket {
    uint64_t milli; /* tokens x 1000 */
    uint64_t last_ms;
};

/* Starts b full (burst tokens) at now_ms. */
void gw_bucket_init(struct gw_bucket *b, uint32_t burst, uint64_t now_ms);
/* Adds rate tokens per second since the last refill, up to burst; time going backwards adds
 * nothing. The arithmetic is in integers and cannot overflow for any uptime. */
void gw_bucket_refill(struct gw_bucket *b, uint32_t burst, uint32_t rate, uint64_t now_ms);
/* Adds n tokens at once (credit for work), up to burst. */
void gw_bucket_credit(struct gw_bucket *b, uint32_t burst, uint32_t n);
/* Refills, then takes one token: true, or false (nothing taken) when none is left. */
bool gw_bucket_take(struct gw_bucket *b, uint32_t burst, uint32_t rate, uint64_t now_ms);

struct gw_lines {
    struct gw_bucket b;
    uint32_t burst, rate;
    uint64_t dropped;       /* refused since gw_lines_dropped last read it */
    uint64_t dropped_total; /* refused ever (metrics) */
};

void gw_lines_init(struct gw_lines *l, uint32_t burst, uint32_t rate, uint64_t now_ms);

/* May a line be written now? own and shared may each be NULL (no budget). True when both have a
 * token (one is then taken from each); false otherwise, with the line counted as dropped in both
 * (and no token taken from either). */
bool gw_lines_take(struct gw_lines *own, struct gw_lines *shared, uint64_t now_ms);

/* The lines dropped since the last call (then reset to 0). */
uint64_t gw_lines_dropped(struct gw_lines *l);

#endif
