/* budget.c: byte budgets for memory in flight (budget.h). Invariants: used <= limit (when
 * limited) after every take, and after a charge by at most what was charged; a take is all or
 * nothing across its budgets; a give never drives used below zero (a mismatched give is
 * clamped, never wrapped); used never wraps (a charge saturates). */
#include "budget.h"

#include <stdint.h>

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
    b->used = n <= SIZE_MAX - b->used ? b->used + n : SIZE_MAX;
    if (b->used > b->peak)
        b->peak = b->used;
}

int gw_budget_take(struct gw_budget *conn, struct gw_budget *global, size_t n)
{
    struct gw_budget *const levels[] = {conn, global};

    return gw_budget_take_levels(levels, 2, n, NULL);
}

int gw_budget_take_levels(struct gw_budget *const levels[], size_t nlevels, size_t n,
                          struct gw_budget **over)
{
    for (size_t i = 0; i < nlevels; i++) {
        if (!has_room(levels[i], n)) {
            if (over != NULL)
                *over = levels[i];
            return GW_ETOOBIG;
        }
    }
    for (size_t i = 0; i < nlevels; i++)
        take(levels[i], n);
    return 0;
}

void gw_budget_charge(struct gw_budget *conn, struct gw_budget *global, size_t n)
{
    take(conn, n);
    take(global, n);
}

void gw_budget_charge_levels(struct gw_budget *const levels[], size_t nlevels, size_t n)
{
    for (size_t i = 0; i < nlevels; i++)
        take(levels[i], n);
}

bool gw_budget_room(const struct gw_budget *b)
{
    return b == NULL || b->limit == 0 || b->used < b->limit;
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

void gw_budget_give_levels(struct gw_budget *const levels[], size_t nlevels, size_t n)
{
    for (size_t i = 0; i < nlevels; i++)
        give(levels[i], n);
}
