/* ratelimit.c: token buckets and line budgets (ratelimit.h). Invariants: a bucket never holds
 * more than its burst; time going backwards refills nothing; two budgets asked together change
 * both or neither. */
#include "ratelimit.h"

#include <stddef.h>

void gw_bucket_init(struct gw_bucket *b, uint32_t burst, uint64_t now_ms)
{
    b->milli = (uint64_t)burst * 1000u;
    b->last_ms = now_ms;
}

void gw_bucket_refill(struct gw_bucket *b, uint32_t burst, uint32_t rate, uint64_t now_ms)
{
    uint64_t cap = (uint64_t)burst * 1000u, elapsed;

    if (now_ms <= b->last_ms)
        return;
    elapsed = now_ms - b->last_ms;
    b->last_ms = now_ms;
    /* rate tokens per second = rate milli-tokens per ms; a long pause just fills the bucket */
    if (elapsed >= cap || b->milli + elapsed * rate >= cap)
        b->milli = cap;
    else
        b->milli += elapsed * rate;
}

void gw_bucket_credit(struct gw_bucket *b, uint32_t burst, uint32_t n)
{
    uint64_t cap = (uint64_t)burst * 1000u;

    b->milli = b->milli + (uint64_t)n * 1000u >= cap ? cap : b->milli + (uint64_t)n * 1000u;
}

bool gw_bucket_take(struct gw_bucket *b, uint32_t burst, uint32_t rate, uint64_t now_ms)
{
    gw_bucket_refill(b, burst, rate, now_ms);
    if (b->milli < 1000u)
        return false;
    b->milli -= 1000u;
    return true;
}

void gw_lines_init(struct gw_lines *l, uint32_t burst, uint32_t rate, uint64_t now_ms)
{
    gw_bucket_init(&l->b, burst, now_ms);
    l->burst = burst;
    l->rate = rate;
    l->dropped = 0;
    l->dropped_total = 0;
}

static bool has_token(struct gw_lines *l, uint64_t now_ms)
{
    if (l == NULL)
        return true;
    gw_bucket_refill(&l->b, l->burst, l->rate, now_ms);
    return l->b.milli >= 1000u;
}

static void dropped(struct gw_lines *l)
{
    if (l == NULL)
        return;
    l->dropped++;
    l->dropped_total++;
}

bool gw_lines_take(struct gw_lines *own, struct gw_lines *shared, uint64_t now_ms)
{
    bool ok_own = has_token(own, now_ms), ok_shared = has_token(shared, now_ms);

    if (!ok_own || !ok_shared) {
        dropped(own);
        dropped(shared);
        return false;
    }
    if (own != NULL)
        own->b.milli -= 1000u;
    if (shared != NULL)
        shared->b.milli -= 1000u;
    return true;
}

uint64_t gw_lines_dropped(struct gw_lines *l)
{
    uint64_t n = l->dropped;

    l->dropped = 0;
    return n;
}
