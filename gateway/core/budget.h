/* budget.h: a byte budget for request memory in flight (issue 10, finding 2). A call takes from
 * two budgets at once, its connection's and the gateway's, before it holds request bytes or
 * unpacks a message; over either one it is refused (RESOURCE_EXHAUSTED) instead of growing.
 * Every byte taken is given back, to the same two budgets, when the call ends.
 *
 * Contract: pure (no allocation, no logging, no libevent); single-threaded, like the loop that
 * uses it. A budget never shows more used than its limit. */
#ifndef GW_BUDGET_H
#define GW_BUDGET_H

#include <stddef.h>

#include "err.h"

struct gw_budget {
    size_t limit; /* 0: no limit (unit-test harnesses); the daemon's limits come from config */
    size_t used;
    size_t peak; /* the highest `used` seen: for tests, logs and metrics */
};

void gw_budget_init(struct gw_budget *b, size_t limit);

/* Takes n bytes from conn and from global (either may be NULL) if both have room. Returns 0, or
 * GW_ETOOBIG with neither changed. */
int gw_budget_take(struct gw_budget *conn, struct gw_budget *global, size_t n) GW_MUST_CHECK;

/* Gives back n bytes taken earlier with gw_budget_take from the same two budgets. */
void gw_budget_give(struct gw_budget *conn, struct gw_budget *global, size_t n);

#endif
