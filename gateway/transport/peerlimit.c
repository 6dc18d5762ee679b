/* peerlimit.c: per-address accept rate and pre-authentication cap (see peerlimit.h), a chained
 * hash table keyed by the address (a random per-process seed, so that a client cannot choose
 * addresses that share one chain). Invariants: an entry with slots held is never dropped (a
 * slot pointer stays valid until released); an entry's preauth count equals the slots handed
 * out and not released; entries <= max_entries. */
#include "peerlimit.h"

#include <netinet/in.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "alloc.h"

#define NBUCKETS 1024u

struct gw_peerlimit_slot {
    uint8_t key[16];
    uint32_t preauth;
    uint64_t milli; /* accept tokens x 1000 */
    uint64_t last_ms;
    struct gw_peerlimit_slot *next;
};

struct gw_peerlimit {
    uint32_t rate, preauth_max;
    uint64_t cap_milli;
    size_t entries, max_entries;
    uint64_t seed;
    struct gw_peerlimit_slot *bucket[NBUCKETS];
};

/* The key: IPv4 as ::ffff:a.b.c.d, IPv6 by its first 64 bits. Returns false for other
 * families. */
static bool key_of(const struct sockaddr *sa, uint8_t key[16])
{
    memset(key, 0, 16);
    if (sa->sa_family == AF_INET) {
        key[10] = key[11] = 0xff;
        memcpy(key + 12, &((const struct sockaddr_in *)sa)->sin_addr, 4);
        return true;
    }
    if (sa->sa_family == AF_INET6) {
        const uint8_t *a = ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr;
        static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        memcpy(key, a, memcmp(a, mapped, 12) == 0 ? 16 : 8); /* v4-mapped: the v4 address */
        return true;
    }
    return false;
}

static size_t hash(const struct gw_peerlimit *pl, const uint8_t key[16])
{
    uint64_t h = pl->seed ^ 0xcbf29ce484222325ull;

    for (int i = 0; i < 16; i++) {
        h ^= key[i];
        h *= 0x100000001b3ull;
        h ^= h >> 29;
    }
    return (size_t)(h % NBUCKETS);
}

static void refill(const struct gw_peerlimit *pl, struct gw_peerlimit_slot *e, uint64_t now_ms)
{
    uint64_t elapsed;

    if (now_ms <= e->last_ms)
        return;
    elapsed = now_ms - e->last_ms;
    e->last_ms = now_ms;
    if (elapsed >= pl->cap_milli || e->milli + elapsed * pl->rate >= pl->cap_milli)
        e->milli = pl->cap_milli;
    else
        e->milli += elapsed * pl->rate;
}

/* Idle: no slot held and nothing the bucket remembers. */
static bool idle(const struct gw_peerlimit *pl, struct gw_peerlimit_slot *e, uint64_t now_ms)
{
    if (e->preauth > 0)
        return false;
    refill(pl, e, now_ms);
    return e->milli >= pl->cap_milli;
}

/* Drops the idle entries of one chain. */
static void sweep_chain(struct gw_peerlimit *pl, size_t b, uint64_t now_ms)
{
    struct gw_peerlimit_slot **pp = &pl->bucket[b];

    while (*pp != NULL) {
        struct gw_peerlimit_slot *e = *pp;
        if (idle(pl, e, now_ms)) {
            *pp = e->next;
            gw_free(e);
            pl->entries--;
        } else {
            pp = &e->next;
        }
    }
}

struct gw_peerlimit *gw_peerlimit_new(uint32_t rate_per_s, uint32_t preauth_max, size_t max_entries)
{
    struct gw_peerlimit *pl = gw_calloc(1, sizeof(*pl));

    if (pl == NULL)
        return NULL;
    pl->rate = rate_per_s;
    pl->preauth_max = preauth_max;
    pl->cap_milli = (uint64_t)rate_per_s * 2u * 1000u; /* burst: two seconds' worth */
    pl->max_entries = max_entries;
    pl->seed = ((uint64_t)arc4random() << 32) | arc4random();
    return pl;
}

void gw_peerlimit_free(struct gw_peerlimit *pl)
{
    if (pl == NULL)
        return;
    for (size_t b = 0; b < NBUCKETS; b++) {
        while (pl->bucket[b] != NULL) {
            struct gw_peerlimit_slot *e = pl->bucket[b];
            pl->bucket[b] = e->next;
            gw_free(e);
        }
    }
    gw_free(pl);
}

static struct gw_peerlimit_slot *find(const struct gw_peerlimit *pl, size_t b,
                                      const uint8_t key[16])
{
    for (struct gw_peerlimit_slot *e = pl->bucket[b]; e != NULL; e = e->next)
        if (memcmp(e->key, key, 16) == 0)
            return e;
    return NULL;
}

enum gw_peerlimit_verdict gw_peerlimit_admit(struct gw_peerlimit *pl, const struct sockaddr *sa,
                                             uint64_t now_ms, struct gw_peerlimit_slot **slot)
{
    uint8_t key[16];
    struct gw_peerlimit_slot *e;
    size_t b;

    *slot = NULL;
    if (!key_of(sa, key))
        return GW_PEERLIMIT_OK;
    b = hash(pl, key);
    sweep_chain(pl, b, now_ms);
    e = find(pl, b, key);
    if (e == NULL) {
        if (pl->entries >= pl->max_entries) {
            for (size_t i = 0; i < NBUCKETS && pl->entries >= pl->max_entries; i++)
                sweep_chain(pl, i, now_ms);
            if (pl->entries >= pl->max_entries)
                return GW_PEERLIMIT_FULL;
        }
        e = gw_calloc(1, sizeof(*e));
        if (e == NULL)
            return GW_PEERLIMIT_FULL;
        memcpy(e->key, key, 16);
        e->milli = pl->cap_milli;
        e->last_ms = now_ms;
        e->next = pl->bucket[b];
        pl->bucket[b] = e;
        pl->entries++;
    }
    refill(pl, e, now_ms);
    if (e->milli < 1000u)
        return GW_PEERLIMIT_RATE;
    e->milli -= 1000u;
    if (e->preauth >= pl->preauth_max)
        return GW_PEERLIMIT_PREAUTH;
    e->preauth++;
    *slot = e;
    return GW_PEERLIMIT_OK;
}

void gw_peerlimit_release(struct gw_peerlimit *pl, struct gw_peerlimit_slot *slot)
{
    (void)pl;
    if (slot != NULL && slot->preauth > 0)
        slot->preauth--;
}

size_t gw_peerlimit_entries(const struct gw_peerlimit *pl)
{
    return pl->entries;
}

uint32_t gw_peerlimit_preauth(const struct gw_peerlimit *pl, const struct sockaddr *sa)
{
    uint8_t key[16];
    const struct gw_peerlimit_slot *e;

    if (!key_of(sa, key))
        return 0;
    e = find(pl, hash(pl, key), key);
    return e != NULL ? e->preauth : 0;
}
