/* h2mem.c: nghttp2's allocators, wiping on free (h2mem.h). Invariants: the stateless allocator
 * (gw_h2mem) has no state, nghttp2 copies the struct into each session; a session's allocator
 * (struct gw_h2mem) maps a block only into a free slot of its own and finds it there again when
 * nghttp2 frees or moves it, so a pointer is unmapped only if this allocator mapped it; every
 * page of a mapped block that is resident is wiped before the block is unmapped. */
#include "h2mem.h"

#include <fcntl.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <malloc.h>

#include "alloc.h"
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

/* ---- one session's allocator ---- */

static size_t page_size(void)
{
    static size_t ps;

    if (ps == 0) {
        long v = sysconf(_SC_PAGESIZE);
        ps = v > 0 ? (size_t)v : 4096u;
    }
    return ps;
}

/* The slot of p when the session mapped it, the first free slot when p is NULL, else -1. */
static int slot_of(const struct gw_h2mem *m, const void *p)
{
    for (unsigned i = 0; i < GW_H2MEM_MAPS; i++)
        if (m->map[i].p == p && (p == NULL) == (m->map[i].len == 0))
            return (int)i;
    return -1;
}

/* Pages of [p, p + len) that are resident: bit 0 of out[i] (mincore). Returns false when the
 * kernel does not say (a syscall filter without mincore: then every page counts as resident, and
 * is wiped, which is right but faults untouched pages in). */
static bool resident_pages(void *p, size_t len, unsigned char *out, size_t npages)
{
    if (mincore(p, len, out) == 0)
        return true;
    memset(out, 1, npages);
    return false;
}

/* Wipes the resident pages of the block in slot i; returns how many there were. */
static size_t wipe_slot(const struct gw_h2mem *m, unsigned i)
{
    size_t ps = page_size(), len = m->map[i].len, npages = len / ps;
    unsigned char *base = m->map[i].p;
    unsigned char vec[64]; /* up to 64 pages: GW_H2MEM_MAP_MAX */
    size_t n = 0;

    (void)resident_pages(base, len, vec, npages);
    for (size_t k = 0; k < npages; k++)
        if (vec[k] & 1u) {
            gw_wipe(base + k * ps, ps);
            n++;
        }
    return n;
}

/* Wipes the block in slot i and unmaps it. */
static void unmap_slot(struct gw_h2mem *m, unsigned i)
{
    (void)wipe_slot(m, i);
    (void)munmap(m->map[i].p, m->map[i].len);
    m->map[i].p = NULL;
    m->map[i].len = 0;
    m->map[i].scratch = false;
}

/* True when the page at p holds only zero bytes. */
static bool page_is_zero(const unsigned char *p, size_t ps)
{
    const uint64_t *w = (const uint64_t *)p;
    uint64_t acc = 0;

    for (size_t k = 0; k < ps / sizeof(*w); k++)
        acc |= w[k];
    return acc == 0;
}

/* Hands back the resident pages of the block in slot i that hold only zeros: they read the same
 * afterwards (a fresh zero-filled page on the next touch), so nghttp2 cannot tell, whatever it
 * keeps there, and there is nothing to wipe. */
static void release_zero_pages(struct gw_h2mem *m, unsigned i)
{
    size_t ps = page_size(), npages = m->map[i].len / ps;
    unsigned char *base = m->map[i].p;
    unsigned char vec[64];

    if (!resident_pages(base, m->map[i].len, vec, npages))
        return; /* not known: reading untouched pages would fault them in */
    for (size_t k = 0; k < npages; k++)
        if ((vec[k] & 1u) && page_is_zero(base + k * ps, ps))
            (void)madvise(base + k * ps, ps, MADV_DONTNEED);
}

void gw_h2mem_wipe_scratch(struct gw_h2mem *m)
{
    for (unsigned i = 0; i < GW_H2MEM_MAPS; i++)
        if (m->map[i].len != 0 && m->map[i].scratch)
            (void)wipe_slot(m, i);
}

void gw_h2mem_release_idle(struct gw_h2mem *m)
{
    for (unsigned i = 0; i < GW_H2MEM_MAPS; i++)
        if (m->map[i].len != 0)
            release_zero_pages(m, i);
}

/* A block of n bytes in pages of its own (zero-filled, untouched), or NULL: no free slot, too
 * large, or the kernel refused (the caller then takes the C library's). */
static void *map_block(struct gw_h2mem *m, size_t n)
{
    size_t ps = page_size(), len;
    void *p;
    int i = slot_of(m, NULL);

    if (n < GW_H2MEM_MAP_MIN || n > GW_H2MEM_MAP_MAX || i < 0)
        return NULL;
    len = (n + ps - 1) / ps * ps;
    if (len / ps > 64)
        return NULL;
    p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return NULL;
    m->map[i].p = p;
    m->map[i].len = (uint32_t)len; /* at most 64 pages */
    m->map[i].scratch = m->scratch_known && n == GW_H2MEM_FRAMEBUF;
    return p;
}

static void *heap_block(struct gw_h2mem *m, size_t nmemb, size_t size, bool zero)
{
    void *p = zero ? gw_memwipe_calloc(nmemb, size) : gw_memwipe_malloc(nmemb * size);

    if (p != NULL)
        m->heap += malloc_usable_size(p);
    return p;
}

static void *s_alloc(struct gw_h2mem *m, size_t nmemb, size_t size, bool zero)
{
    void *p;

    if (size != 0 && nmemb > SIZE_MAX / size)
        return NULL;
    if (nmemb * size >= GW_H2MEM_MAP_MIN) {
        if (!gw_alloc_permitted())
            return NULL;
        p = map_block(m, nmemb * size);
        if (p != NULL)
            return p; /* a fresh mapping reads as zeros */
    }
    return heap_block(m, nmemb, size, zero);
}

static void *s_malloc(size_t size, void *ud)
{
    return s_alloc(ud, 1, size, false);
}

static void *s_calloc(size_t nmemb, size_t size, void *ud)
{
    return s_alloc(ud, nmemb, size, true);
}

static void s_free(void *p, void *ud)
{
    struct gw_h2mem *m = ud;
    int i;

    if (p == NULL)
        return;
    i = slot_of(m, p);
    if (i >= 0) {
        unmap_slot(m, (unsigned)i);
        return;
    }
    m->heap -= malloc_usable_size(p);
    gw_memwipe_free(p);
}

/* Grows by moving, like gw_memwipe_realloc: a block with room for n bytes stays where it is. */
static void *s_realloc(void *p, size_t n, void *ud)
{
    struct gw_h2mem *m = ud;
    int i;
    size_t have;
    void *np;

    if (p == NULL)
        return s_malloc(n, ud);
    i = slot_of(m, p);
    have = i >= 0 ? m->map[i].len : malloc_usable_size(p);
    if (n <= have)
        return p;
    np = s_malloc(n, ud);
    if (np == NULL)
        return NULL;
    memcpy(np, p, have);
    s_free(p, ud);
    return np;
}

nghttp2_mem *gw_h2mem_init(struct gw_h2mem *m)
{
    memset(m, 0, sizeof(*m));
    m->mem = (nghttp2_mem){m, s_malloc, s_free, s_calloc, s_realloc};
    m->scratch_known = nghttp2_version(0)->version_num >> 8 == 0x0134; /* 1.52.x */
    return gw_memwipe_enabled() ? &m->mem : NULL;
}

/* Bytes of [p, p + len) in pages written to: present and mapped by this process alone
 * (/proc/self/pagemap bits 63 and 56), so the shared zero page a read maps does not count;
 * mincore's resident pages when pagemap cannot be read. */
static size_t written_bytes(void *p, size_t len)
{
    size_t ps = page_size(), npages = len / ps, n = 0;
    uint64_t ent[64];
    unsigned char vec[64];
    int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
    ssize_t got = -1;

    if (fd >= 0) {
        got = pread(fd, ent, npages * sizeof(ent[0]), (off_t)((uintptr_t)p / ps * sizeof(ent[0])));
        close(fd);
    }
    if (got == (ssize_t)(npages * sizeof(ent[0]))) {
        for (size_t k = 0; k < npages; k++)
            n += (ent[k] >> 63 & 1u) && (ent[k] >> 56 & 1u) ? ps : 0;
        return n;
    }
    (void)resident_pages(p, len, vec, npages);
    for (size_t k = 0; k < npages; k++)
        n += (vec[k] & 1u) ? ps : 0;
    return n;
}

void gw_h2mem_held(const struct gw_h2mem *m, struct gw_h2mem_held *out)
{
    out->heap = m->heap;
    out->mapped = out->resident = 0;
    for (unsigned i = 0; i < GW_H2MEM_MAPS; i++) {
        if (m->map[i].len == 0)
            continue;
        out->mapped += m->map[i].len;
        out->resident += written_bytes(m->map[i].p, m->map[i].len);
    }
}
