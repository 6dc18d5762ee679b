/* alloc.h: the one allocation wrapper (so tests can fail the N-th allocation), a wipe-on-free
 * buffer for PII, and a per-stream arena from which protobuf-c messages are allocated. */
#ifndef GW_ALLOC_H
#define GW_ALLOC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Like malloc/calloc/realloc/strdup/free; return NULL on failure (never abort). */
void *gw_malloc(size_t n);
void *gw_calloc(size_t nmemb, size_t size);
void *gw_realloc(void *p, size_t n);
char *gw_strdup(const char *s);
char *gw_strndup(const char *s, size_t n);
void gw_free(void *p);

/* Wipes n bytes at p with explicit_bzero (not optimised away); NULL-safe. */
void gw_wipe(void *p, size_t n);
/* A byte string owned by whoever holds the struct containing it. */
struct gw_bytes {
    uint8_t *p;
    size_t n;
};

/* Frees p after wiping its n bytes (gw_wipe); NULL-safe. For PII and key material. */
void gw_free_wipe(void *p, size_t n);
/* Wipes a NUL-terminated string and frees it; NULL-safe. */
void gw_free_str_wipe(char *s);

/* For memory a module obtains otherwise (mmap: h2mem.c): counts as one allocation for the
 * test hook below; false when this one must fail. */
bool gw_alloc_permitted(void);
/* Test hook: the n-th allocation from now on (1 = the next) fails; 0 disables. */
void gw_alloc_fail_nth(long n);

/* An arena: many allocations, one free. Memory is wiped on gw_arena_free (it may hold PII); a
 * wiped chunk of the usual size may be kept for the next arena of the same thread (up to 64)
 * instead of going back to the C library.
 * gw_arena_alloc returns 16-byte aligned memory or NULL; allocations over the arena's cap fail. */
struct gw_arena;
struct gw_arena *gw_arena_new(size_t cap);
void *gw_arena_alloc(struct gw_arena *a, size_t n);
/* s (NULL: "") copied into a, or NULL when a is full. */
char *gw_arena_strdup(struct gw_arena *a, const char *s);
size_t gw_arena_used(const struct gw_arena *a);
/* The arena's cap now; gw_arena_set_cap changes it (raised to what is already used when lower:
 * nothing handed out is taken back). A call bounds its unpack with it: the unpacked message may
 * take only a small multiple of its wire size, whatever room the arena has for the handler. */
size_t gw_arena_cap(const struct gw_arena *a);
void gw_arena_set_cap(struct gw_arena *a, size_t cap);
void gw_arena_free(struct gw_arena *a);

/* Blocks kept for reuse (wiped) per thread by the allocation paths that cache them (arena chunks,
 * HTTP/2 stream records): GW_BLOCK_CACHE each. 0 under AddressSanitizer, which must see every
 * free: a block kept for reuse would hide a use after free or a double free from it. */
#if defined(__SANITIZE_ADDRESS__)
#define GW_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define GW_ASAN 1
#endif
#endif
#ifdef GW_ASAN
#define GW_BLOCK_CACHE 0
#else
#define GW_BLOCK_CACHE 64
#endif

#endif
