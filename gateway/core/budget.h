/* budget.h: a byte budget for memory in flight. Request memory (issue 10, finding 2): a call
 * takes from three budgets at once, its connection's, its client certificate's and the
 * gateway's (gw_budget_take_levels), before it holds request bytes or unpacks a message; over
 * any one it is refused (RESOURCE_EXHAUSTED) instead of growing. Response memory (h2.c): a stream's
 * queued response bytes are charged to its connection's, its client certificate's and the
 * gateway's response budgets at once (gw_budget_charge_levels); a streaming handler may queue
 * only while all have room (gw_budget_room), and a unary answer is charged even past the limit.
 * Every byte taken is given back, to the same budgets.
 *
 * Contract: pure (no allocation, no logging, no libevent); single-threaded, like the loop that
 * uses it. gw_budget_take never makes a budget show more used than its limit; only
 * gw_budget_charge may, by what it was asked to charge. */
#ifndef GW_BUDGET_H
#define GW_BUDGET_H

#include <stdbool.h>
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

/* Takes n bytes from each of levels[0..nlevels) (a NULL entry: no budget at that level) if all
 * have room. Returns 0, or GW_ETOOBIG with none changed and, when over is not NULL, *over the
 * first of them, in their order, without room for n. */
int gw_budget_take_levels(struct gw_budget *const levels[], size_t nlevels, size_t n,
                          struct gw_budget **over) GW_MUST_CHECK;

/* Gives back n bytes taken earlier with gw_budget_take_levels or gw_budget_charge_levels from
 * the same levels. */
void gw_budget_give_levels(struct gw_budget *const levels[], size_t nlevels, size_t n);

/* Takes n bytes from conn and from global (either may be NULL) whether or not they have room:
 * used may then pass the limit (and gw_budget_room is false until enough is given back). For
 * what must not be refused (one message on an empty response queue). */
void gw_budget_charge(struct gw_budget *conn, struct gw_budget *global, size_t n);

/* gw_budget_charge for each of levels[0..nlevels) (a NULL entry: no budget at that level);
 * given back with gw_budget_give_levels. */
void gw_budget_charge_levels(struct gw_budget *const levels[], size_t nlevels, size_t n);

/* True when b (NULL: no budget) is unlimited or shows less used than its limit. */
bool gw_budget_room(const struct gw_budget *b);

/* Gives back n bytes taken earlier with gw_budget_take or gw_budget_charge from the same two
 * budgets. */
void gw_budget_give(struct gw_budget *conn, struct gw_budget *global, size_t n);

#endif
