/* alloc.c: the one allocation wrapper, wipe-on-free helpers and the per-stream arena.
 * Invariants: every allocation in the tree passes through gw_malloc/gw_calloc/gw_realloc, or asks
 * gw_alloc_permitted first (so the fail-nth test hook reaches all of them); arena memory is 16-byte
 * aligned, never exceeds the arena's cap, and is wiped before it goes back to the C library.
 * Wiping is glibc's explicit_bzero: memset that the compiler may not remove (it is never elided,
 * like OPENSSL_cleanse, and uses the vectorised memset: 5-10x faster on blocks of 0.5-64 KiB). */
#include "alloc.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* The one test hook: when > 0, counts down on every allocation; the allocation that brings it
 * to 0 fails. 0 (the default) disables it. Not thread-safe, like the rest of the daemon, which
 * runs on one event loop thread. */
static long fail_countdown;

void gw_alloc_fail_nth(long n)
{
    fail_countdown = n > 0 ? n : 0;
}

/* True when the allocation now being made must fail (test hook). */
static int should_fail(void)
{
    if (fail_countdown <= 0)
        return 0;
    fail_countdown--;
    return fail_countdown == 0;
}

bool gw_alloc_permitted(void)
{
    return !should_fail();
}

void *gw_malloc(size_t n)
{
    if (should_fail())
        return NULL;
    return malloc(n ? n : 1);
}

void *gw_calloc(size_t nmemb, size_t size)
{
    if (size != 0 && nmemb > SIZE_MAX / size)
        return NULL;
    if (should_fail())
        return NULL;
    if (nmemb == 0 || size == 0)
        return calloc(1, 1);
    return calloc(nmemb, size);
}

void *gw_realloc(void *p, size_t n)
{
    if (should_fail())
        return NULL;
    return realloc(p, n ? n : 1);
}

char *gw_strndup(const char *s, size_t n)
{
    size_t len;
    char *d;

    if (s == NULL)
        return NULL;
    len = strnlen(s, n);
    d = gw_malloc(len + 1);
    if (d == NULL)
        return NULL;
    memcpy(d, s, len);
    d[len] = '\0';
    return d;
}

char *gw_strdup(const char *s)
{
    if (s == NULL)
        return NULL;
    return gw_strndup(s, SIZE_MAX);
}

void gw_free(void *p)
{
    free(p);
}

void gw_wipe(void *p, size_t n)
{
    if (p != NULL && n > 0)
        explicit_bzero(p, n);
}

void gw_free_wipe(void *p, size_t n)
{
    if (p == NULL)
        return;
    explicit_bzero(p, n);
    free(p);
}

void gw_free_str_wipe(char *s)
{
    if (s == NULL)
        return;
    gw_free_wipe(s, strlen(s));
}

/* ---- arena ---- */

#define ARENA_ALIGN 16u
#define ARENA_CHUNK 8192u /* usual chunk payload; larger requests get a chunk of their own */

struct chunk {
    struct chunk *next;
    size_t size;         /* usable bytes from base */
    size_t off;          /* bytes handed out from base */
    unsigned char *base; /* first 16-byte aligned byte after the header */
};

struct gw_arena {
    size_t cap;         /* most bytes (rounded up to 16 each) that may be handed out */
    size_t used;        /* bytes handed out so far (rounded) */
    struct chunk *head; /* the chunk being filled; older chunks follow */
};

static size_t round_up(size_t n)
{
    return (n + (ARENA_ALIGN - 1)) & ~(size_t)(ARENA_ALIGN - 1);
}

struct gw_arena *gw_arena_new(size_t cap)
{
    struct gw_arena *a;

    if (cap == 0 || cap > SIZE_MAX / 2)
        return NULL;
    a = gw_calloc(1, sizeof(*a));
    if (a == NULL)
        return NULL;
    a->cap = cap;
    return a;
}

/* Chunks of the usual size, wiped, kept for the next arena instead of going back to the C
 * library (a call's arena takes one and gives it back; malloc and free of 8 KiB cost more than
 * the small blocks glibc caches per thread). Per thread, at most CHUNK_CACHE: 512 KiB (a burst of
 * calls ending together). None under AddressSanitizer (alloc.h). */
#define CHUNK_CACHE GW_BLOCK_CACHE
static _Thread_local struct chunk *chunk_cache;
static _Thread_local unsigned chunk_cached;

static struct chunk *chunk_new(size_t payload)
{
    struct chunk *c;
    uintptr_t start;

    if (payload == ARENA_CHUNK && chunk_cache != NULL) {
        if (!gw_alloc_permitted()) /* still an allocation for the fail-nth hook */
            return NULL;
        c = chunk_cache;
        chunk_cache = c->next;
        chunk_cached--;
        c->next = NULL;
        c->off = 0;
        return c;
    }
    /* header + slack for alignment + payload */
    c = gw_malloc(sizeof(*c) + ARENA_ALIGN + payload);
    if (c == NULL)
        return NULL;
    start = (uintptr_t)(c + 1);
    start = (start + (ARENA_ALIGN - 1)) & ~(uintptr_t)(ARENA_ALIGN - 1);
    c->next = NULL;
    c->size = payload;
    c->off = 0;
    c->base = (unsigned char *)start;
    return c;
}

void *gw_arena_alloc(struct gw_arena *a, size_t n)
{
    struct chunk *c;
    size_t need;
    void *p;

    if (a == NULL || n > a->cap)
        return NULL;
    need = round_up(n ? n : 1);
    if (need > a->cap - a->used)
        return NULL;

    c = a->head;
    if (c == NULL || c->size - c->off < need) {
        size_t payload = need > ARENA_CHUNK / 2 ? need : ARENA_CHUNK;
        /* never reserve more than the cap can still hand out (round_up(left) >= need) */
        if (payload > a->cap - a->used)
            payload = round_up(a->cap - a->used);
        c = chunk_new(payload);
        if (c == NULL)
            return NULL;
        if (a->head != NULL && need > ARENA_CHUNK / 2) {
            /* a big one-off chunk: keep filling the current chunk afterwards */
            c->next = a->head->next;
            a->head->next = c;
        } else {
            c->next = a->head;
            a->head = c;
        }
    }
    p = c->base + c->off;
    c->off += need;
    a->used += need;
    return p;
}

char *gw_arena_strdup(struct gw_arena *a, const char *s)
{
    size_t n = s != NULL ? strlen(s) : 0;
    char *p = gw_arena_alloc(a, n + 1);

    if (p != NULL) {
        if (n > 0)
            memcpy(p, s, n);
        p[n] = '\0';
    }
    return p;
}

size_t gw_arena_used(const struct gw_arena *a)
{
    return a == NULL ? 0 : a->used;
}

size_t gw_arena_cap(const struct gw_arena *a)
{
    return a == NULL ? 0 : a->cap;
}

void gw_arena_set_cap(struct gw_arena *a, size_t cap)
{
    if (a == NULL)
        return;
    a->cap = cap > a->used ? cap : a->used;
}

void gw_arena_free(struct gw_arena *a)
{
    struct chunk *c, *next;

    if (a == NULL)
        return;
    for (c = a->head; c != NULL; c = next) {
        next = c->next;
        gw_wipe(c->base, c->off); /* bytes past off were never handed out */
        if (c->size == ARENA_CHUNK && chunk_cached + 1 <= CHUNK_CACHE) {
            c->off = 0;
            c->next = chunk_cache;
            chunk_cache = c;
            chunk_cached++;
        } else {
            free(c);
        }
    }
    gw_wipe(a, sizeof(*a));
    free(a);
}
