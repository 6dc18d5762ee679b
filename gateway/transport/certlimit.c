/* certlimit.c: connections and request and response memory per certificate fingerprint
 * (certlimit.h), a chained hash table with a random per-process seed. Invariants: every entry's
 * count is between 1 and max_per_cert; an entry whose count reaches zero is freed at once, its
 * budgets empty and no stream waiting on its response pool by the caller's contract; entries <=
 * the counted connections. */
#include "certlimit.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "budget.h"
#include "h2.h"

#define NBUCKETS 1024u

struct entry {
    uint8_t fpr[GW_PEER_FPR_LEN];
    uint32_t count;
    struct gw_budget mem;    /* request memory in flight of the certificate's connections */
    struct gw_h2_pool *resp; /* their response memory, NULL when cl has no base */
    struct entry *next;
};

struct gw_certlimit {
    uint32_t max;
    size_t mem_limit;        /* each entry's budget */
    size_t mem_peak;         /* the highest peak of the entries freed so far */
    struct event_base *base; /* for the entries' response pools; NULL: none */
    size_t resp_limit;       /* each entry's response budget */
    size_t resp_peak;        /* the highest peak of the entries freed so far */
    size_t entries;
    uint64_t seed;
    struct entry *bucket[NBUCKETS];
};

/* A fingerprint is a SHA-256 digest: its bytes are already uniform; the seed keeps a client
 * that can choose certificates from choosing one chain. */
static size_t bucket_of(const struct gw_certlimit *cl, const uint8_t fpr[GW_PEER_FPR_LEN])
{
    uint64_t h;

    memcpy(&h, fpr, sizeof(h));
    h ^= cl->seed;
    h *= 0x9e3779b97f4a7c15ull;
    return (size_t)((h >> 32) % NBUCKETS);
}

static struct entry **find(struct gw_certlimit *cl, const uint8_t fpr[GW_PEER_FPR_LEN])
{
    struct entry **pp = &cl->bucket[bucket_of(cl, fpr)];

    while (*pp != NULL && memcmp((*pp)->fpr, fpr, GW_PEER_FPR_LEN) != 0)
        pp = &(*pp)->next;
    return pp;
}

struct gw_certlimit *gw_certlimit_new(uint32_t max_per_cert, size_t request_memory,
                                      size_t response_memory, struct event_base *base)
{
    struct gw_certlimit *cl = gw_calloc(1, sizeof(*cl));

    if (cl == NULL)
        return NULL;
    cl->max = max_per_cert;
    cl->mem_limit = request_memory;
    cl->resp_limit = response_memory;
    cl->base = base;
    cl->seed = ((uint64_t)arc4random() << 32) | arc4random();
    return cl;
}

void gw_certlimit_free(struct gw_certlimit *cl)
{
    if (cl == NULL)
        return;
    for (size_t b = 0; b < NBUCKETS; b++) {
        while (cl->bucket[b] != NULL) {
            struct entry *e = cl->bucket[b];
            cl->bucket[b] = e->next;
            gw_h2_pool_free(e->resp);
            gw_free(e);
        }
    }
    gw_free(cl);
}

enum gw_certlimit_verdict gw_certlimit_take(struct gw_certlimit *cl,
                                            const uint8_t fpr[GW_PEER_FPR_LEN])
{
    struct entry **pp = find(cl, fpr);

    if (*pp == NULL) {
        if (cl->max == 0)
            return GW_CERTLIMIT_FULL;
        *pp = gw_calloc(1, sizeof(**pp));
        if (*pp == NULL)
            return GW_CERTLIMIT_NOMEM;
        if (cl->base != NULL && ((*pp)->resp = gw_h2_pool_new(cl->base, cl->resp_limit)) == NULL) {
            gw_free(*pp);
            *pp = NULL;
            return GW_CERTLIMIT_NOMEM;
        }
        memcpy((*pp)->fpr, fpr, GW_PEER_FPR_LEN);
        gw_budget_init(&(*pp)->mem, cl->mem_limit);
        cl->entries++;
    } else if ((*pp)->count >= cl->max) {
        return GW_CERTLIMIT_FULL;
    }
    (*pp)->count++;
    return GW_CERTLIMIT_OK;
}

void gw_certlimit_release(struct gw_certlimit *cl, const uint8_t fpr[GW_PEER_FPR_LEN])
{
    struct entry **pp = find(cl, fpr), *e = *pp;

    if (e == NULL)
        return;
    if (--e->count == 0) {
        if (e->mem.peak > cl->mem_peak)
            cl->mem_peak = e->mem.peak;
        if (e->resp != NULL) {
            size_t used, peak, limit;
            gw_h2_pool_usage(e->resp, &used, &peak, &limit);
            if (peak > cl->resp_peak)
                cl->resp_peak = peak;
            gw_h2_pool_free(e->resp);
        }
        *pp = e->next;
        gw_free(e);
        cl->entries--;
    }
}

struct gw_budget *gw_certlimit_budget(struct gw_certlimit *cl, const uint8_t fpr[GW_PEER_FPR_LEN])
{
    struct entry **pp = find(cl, fpr);

    return *pp != NULL ? &(*pp)->mem : NULL;
}

void gw_certlimit_request_memory(const struct gw_certlimit *cl, size_t *most, size_t *peak,
                                 size_t *limit)
{
    *most = 0;
    *peak = cl->mem_peak;
    *limit = cl->mem_limit;
    for (size_t b = 0; b < NBUCKETS; b++) {
        for (const struct entry *e = cl->bucket[b]; e != NULL; e = e->next) {
            if (e->mem.used > *most)
                *most = e->mem.used;
            if (e->mem.peak > *peak)
                *peak = e->mem.peak;
        }
    }
}

struct gw_h2_pool *gw_certlimit_response_pool(struct gw_certlimit *cl,
                                              const uint8_t fpr[GW_PEER_FPR_LEN])
{
    struct entry **pp = find(cl, fpr);

    return *pp != NULL ? (*pp)->resp : NULL;
}

void gw_certlimit_response_memory(const struct gw_certlimit *cl, size_t *most, size_t *peak,
                                  size_t *limit)
{
    *most = 0;
    *peak = cl->resp_peak;
    *limit = cl->resp_limit;
    for (size_t b = 0; b < NBUCKETS; b++) {
        for (const struct entry *e = cl->bucket[b]; e != NULL; e = e->next) {
            size_t used, p, l;
            if (e->resp == NULL)
                continue;
            gw_h2_pool_usage(e->resp, &used, &p, &l);
            if (used > *most)
                *most = used;
            if (p > *peak)
                *peak = p;
        }
    }
}

uint32_t gw_certlimit_max(const struct gw_certlimit *cl)
{
    return cl->max;
}

uint32_t gw_certlimit_count(const struct gw_certlimit *cl, const uint8_t fpr[GW_PEER_FPR_LEN])
{
    struct entry **pp = find((struct gw_certlimit *)cl, fpr);

    return *pp != NULL ? (*pp)->count : 0;
}

size_t gw_certlimit_entries(const struct gw_certlimit *cl)
{
    return cl->entries;
}
