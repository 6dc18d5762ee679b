/* budget.c: byte budgets for request memory in flight (budget.h). Invariants: used <= limit
 * (when limited) after every call; a take is all or nothing across its two budgets; a give never
 * drives used below zero (a mismatched give is clamped, never wrapped). */
#include "budget.h"

void gw_budget_init(struct gw_budget *b, size_t limit)
{
    b->limit = limit;
    b->used = 0;
    b->peak = 0;
}

static int has_room(const struct gw_budget *b, size_t n)
{
    return b == NULL || b->limit == 0 || (b->used <= b->limit && n <= b->limit - b->used);
}

static void take(struct gw_budget *b, size_t n)
{
    if (b == NULL)
        return;
    b->used += n;
    if (b->used > b->peak)
        b->peak = b->used;
}

int gw_budget_take(struct gw_budget *conn, struct gw_budget *global, size_t n)
{
    if (!has_room(conn, n) || !has_room(global, n))
        return GW_ETOOBIG;
    take(conn, n);
    take(global, n);
    return 0;
}

static void give(struct gw_budget *b, size_t n)
{
    if (b != NULL)
        b->used = n < b->used ? b->used - n : 0;
}

void gw_budget_give(struct gw_budget *conn, struct gw_budget *global, size_t n)
{
    give(conn, n);
    give(global, n);
}
