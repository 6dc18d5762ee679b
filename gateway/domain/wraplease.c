/* wraplease.c: the data-key wraps held under the current KEK (wraplease.h). Invariants: used <=
 * leased; used < mark only while a wrap is held; a lease is wanted (want_cb) at most once until it
 * is answered or the KEK changes; nothing is wanted at the limit or without a KEK. */
#include "wraplease.h"

#include <string.h>

/* Where the fast path stops: half a block before the end of what is held, so the next lease is
 * asked while half a block is left; at once (used) when less is left and more may be asked. */
static void set_mark(struct gw_wraplease *l)
{
    uint64_t half = l->block / 2;

    if (l->at_limit || l->asking)
        l->mark = l->leased;
    else
        l->mark = l->leased - l->used > half ? l->leased - half : l->used;
}

void gw_wraplease_init(struct gw_wraplease *l, uint64_t block, gw_wraplease_want_fn want_cb,
                       void *arg)
{
    memset(l, 0, sizeof *l);
    l->block = block < 2 ? 2 : block;
    l->want_cb = want_cb;
    l->want_arg = arg;
}

bool gw_wraplease_reset(struct gw_wraplease *l, int suite, uint32_t version)
{
    if (l->suite == suite && l->version == version)
        return false;
    l->suite = suite;
    l->version = version;
    l->leased = l->used = l->mark = l->counted = 0;
    l->asking = l->at_limit = l->reported = false;
    return true;
}

void gw_wraplease_ask(struct gw_wraplease *l)
{
    if (l->asking || l->at_limit || l->version == 0)
        return;
    l->asking = true;
    set_mark(l);
    if (l->want_cb)
        l->want_cb(l->want_arg);
}

void gw_wraplease_grant(struct gw_wraplease *l, int suite, uint32_t version, uint64_t n,
                        uint64_t counted)
{
    if (suite != l->suite || version != l->version)
        return;
    l->leased += n;
    if (counted > l->counted)
        l->counted = counted;
    l->asking = false;
    set_mark(l);
}

void gw_wraplease_refused(struct gw_wraplease *l, int suite, uint32_t version)
{
    if (suite != l->suite || version != l->version)
        return;
    l->asking = false;
    l->at_limit = true;
    set_mark(l);
}

int gw_wraplease_take_slow(struct gw_wraplease *l)
{
    gw_wraplease_ask(l); /* past the prefetch point, or nothing held */
    if (l->used < l->leased) {
        l->used++;
        return 0;
    }
    return l->at_limit ? GW_EPRECOND : GW_EUNAVAIL;
}
