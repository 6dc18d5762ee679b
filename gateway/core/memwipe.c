/* memwipe.c: wipe-on-free allocation for libevent and nghttp2 (memwipe.h). Invariant: a block
 * these functions free or move has all of its usable bytes overwritten first; the only state is
 * the enabled flag, set once before the loop starts. */
#include "memwipe.h"

#include <malloc.h>
#include <string.h>

#include <event2/event.h>

#include "alloc.h"

static bool disabled; /* set only by a test binary, before anything is allocated */

void *gw_memwipe_malloc(size_t n)
{
    return gw_malloc(n);
}

void *gw_memwipe_calloc(size_t nmemb, size_t size)
{
    return gw_calloc(nmemb, size);
}

void gw_memwipe_free(void *p)
{
    if (p == NULL)
        return;
    gw_free_wipe(p, malloc_usable_size(p));
}

void *gw_memwipe_realloc(void *p, size_t n)
{
    size_t have;
    void *np;

    if (p == NULL)
        return gw_malloc(n);
    have = malloc_usable_size(p);
    if (n <= have)
        return p;
    np = gw_malloc(n);
    if (np == NULL)
        return NULL;
    memcpy(np, p, have);
    gw_free_wipe(p, have);
    return np;
}

/* noinline: the array must be a frame of its own, below the caller's. gw_wipe (explicit_bzero)
 * is never elided, so the writes stay. */
__attribute__((noinline)) void gw_memwipe_scrub_stack(void)
{
    unsigned char pad[GW_MEMWIPE_STACK_SCRUB];

    gw_wipe(pad, sizeof pad);
}

void gw_memwipe_install(void)
{
    if (!disabled)
        event_set_mem_functions(gw_memwipe_malloc, gw_memwipe_realloc, gw_memwipe_free);
}

bool gw_memwipe_enabled(void)
{
    return !disabled;
}

void gw_memwipe_disable_for_tests(void)
{
    disabled = true;
}
