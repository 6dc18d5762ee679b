/* h2mem.c: nghttp2's allocator, wiping on free (h2mem.h). Invariant: stateless; nghttp2 copies
 * the struct into each session. */
#include "h2mem.h"

#include "memwipe.h"

static void *mem_malloc(size_t size, void *ud)
{
    (void)ud;
    return gw_memwipe_malloc(size);
}

static void mem_free(void *p, void *ud)
{
    (void)ud;
    gw_memwipe_free(p);
}

static void *mem_calloc(size_t nmemb, size_t size, void *ud)
{
    (void)ud;
    return gw_memwipe_calloc(nmemb, size);
}

static void *mem_realloc(void *p, size_t size, void *ud)
{
    (void)ud;
    return gw_memwipe_realloc(p, size);
}

static nghttp2_mem wiping = {NULL, mem_malloc, mem_free, mem_calloc, mem_realloc};

nghttp2_mem *gw_h2mem(void)
{
    return gw_memwipe_enabled() ? &wiping : NULL;
}
