/* throttle.c: the scraping throttle's table (throttle.h): a fixed array of principals found
 * through a chained hash of their names (a random per-table seed, so that names cannot be chosen
 * to share a chain), each with a growing array of (key, last seen) entries and an open-addressing
 * index over them (keys are blind indexes, HMAC outputs: their first bytes are their hash).
 * Invariants: sum of every principal's entries <= max_keys; a principal's entries are all
 * distinct, at most its limit, each in its index once; a principal's `oldest` is at most the
 * oldest `seen` of its entries; a slot is on its name's chain xor on the free list; `room` is
 * the sum of the principals' caps, a cap at most 4 x its entries or 16 after each expiry pass. */
#include "throttle.h"

#include <stdlib.h>
#include <string.h>

#include "alloc.h"

#define NONE UINT32_MAX /* end of a chain or of the free list */
#define GROW_FIRST 16   /* a principal's first arrays, in entries */

struct entry {
    uint8_t key[GW_THROTTLE_KEY_LEN];
    uint64_t seen;
};

struct who {
    char name[GW_THROTTLE_WHO_MAX]; /* "" = free slot */
    struct entry *e;
    uint32_t *idx; /* icap slots: entry index + 1, 0 = empty */
    uint32_t n, cap, icap;
    uint32_t next;        /* the next slot on its chain, or on the free list */
    uint64_t last;        /* last lookup, for reuse */
    uint64_t incident_at; /* when the last incident was asked for; 0 = never */
    uint64_t oldest;      /* <= every entry's seen: no pass over them before it expires */
    uint32_t window;      /* its own window (its role's), which others' lookups expire it by */
};

struct gw_throttle {
    struct who *w;
    uint32_t *head; /* nbuckets chains */
    size_t nw, nbuckets, used, max_keys, keys;
    size_t room; /* sum of the principals' array lengths (cap), in entries */
    uint32_t free_list;
    uint64_t seed;
    uint64_t slot_scan_at, key_scan_at; /* when a full table was last searched for room, +1 */
    uint64_t full_incident_at;          /* 0 = never */
    uint64_t full;
};

static uint64_t name_hash(const struct gw_throttle *t, const char *s)
{
    uint64_t h = t->seed ^ 0xcbf29ce484222325ull;

    for (; *s != '\0'; s++) {
        h ^= (uint8_t)*s;
        h *= 0x100000001b3ull;
        h ^= h >> 29;
    }
    return h;
}

static uint32_t key_slot(const struct gw_throttle *t, const struct who *w, const uint8_t *key)
{
    uint64_t h;

    memcpy(&h, key, sizeof(h));
    h = (h ^ t->seed) * 0x9e3779b97f4a7c15ull;
    return (uint32_t)(h >> 32) & (w->icap - 1);
}

struct gw_throttle *gw_throttle_new(size_t max_principals, size_t max_keys)
{
    struct gw_throttle *t = gw_calloc(1, sizeof(*t));

    if (t == NULL || max_principals == 0 || max_principals >= NONE)
        goto fail;
    t->nbuckets = 1;
    while (t->nbuckets < max_principals)
        t->nbuckets *= 2;
    t->w = gw_calloc(max_principals, sizeof(*t->w));
    t->head = gw_calloc(t->nbuckets, sizeof(*t->head));
    if (t->w == NULL || t->head == NULL)
        goto fail;
    memset(t->head, 0xff, t->nbuckets * sizeof(*t->head)); /* NONE */
    for (size_t i = 0; i < max_principals; i++)
        t->w[i].next = i + 1 < max_principals ? (uint32_t)(i + 1) : NONE;
    t->free_list = 0;
    t->nw = max_principals;
    t->max_keys = max_keys;
    t->seed = ((uint64_t)arc4random() << 32) | arc4random();
    return t;
fail:
    if (t != NULL) {
        gw_free(t->w);
        gw_free(t->head);
    }
    gw_free(t);
    return NULL;
}

static void wipe_keys(struct gw_throttle *t, struct who *w)
{
    t->room -= w->cap;
    gw_free_wipe(w->e, w->cap * sizeof(struct entry));
    gw_free_wipe(w->idx, w->icap * sizeof(uint32_t));
    w->e = NULL;
    w->idx = NULL;
    w->n = w->cap = w->icap = 0;
}

void gw_throttle_free(struct gw_throttle *t)
{
    if (t == NULL)
        return;
    for (size_t i = 0; i < t->nw; i++)
        wipe_keys(t, &t->w[i]);
    gw_free(t->w);
    gw_free(t->head);
    gw_free(t);
}

/* w's index, rebuilt from its entries. */
static void reindex(const struct gw_throttle *t, struct who *w)
{
    memset(w->idx, 0, w->icap * sizeof(*w->idx));
    for (uint32_t i = 0; i < w->n; i++) {
        uint32_t s = key_slot(t, w, w->e[i].key);
        while (w->idx[s] != 0)
            s = (s + 1) & (w->icap - 1);
        w->idx[s] = i + 1;
    }
}

/* w's entry for key, or NULL. */
static struct entry *lookup(const struct gw_throttle *t, const struct who *w, const uint8_t *key)
{
    if (w->n == 0)
        return NULL;
    for (uint32_t s = key_slot(t, w, key); w->idx[s] != 0; s = (s + 1) & (w->icap - 1))
        if (memcmp(w->e[w->idx[s] - 1].key, key, GW_THROTTLE_KEY_LEN) == 0)
            return &w->e[w->idx[s] - 1];
    return NULL;
}

static bool resize(struct gw_throttle *t, struct who *w, uint32_t cap);

/* Drops w's entries last seen window_s or longer ago: a pass over them only once the oldest may
 * have expired, after which `oldest` is exact (so at most one pass a second). */
static void expire(struct gw_throttle *t, struct who *w, uint32_t window_s, uint64_t now)
{
    uint32_t i, j = 0;
    uint64_t oldest = now;

    if (w->n == 0 || now - w->oldest < window_s)
        return;
    for (i = 0; i < w->n; i++) {
        if (now - w->e[i].seen < window_s) {
            if (w->e[i].seen < oldest)
                oldest = w->e[i].seen;
            w->e[j++] = w->e[i];
        }
    }
    t->keys -= w->n - j;
    w->n = j;
    w->oldest = oldest;
    /* arrays a quarter full or less shrink to twice what is kept (never below the first size):
     * what a principal holds follows what it keeps, or one that filled its arrays once would
     * hold them for as long as it looks one thing up a window, beyond what the key cap bounds
     * (it counts entries, not arrays: review) */
    if (w->cap > GROW_FIRST && j <= w->cap / 4) {
        uint32_t cap = GROW_FIRST;
        while (cap < 2 * j)
            cap *= 2;
        if (resize(t, w, cap))
            return;
    }
    reindex(t, w);
}

static uint32_t *chain_of(struct gw_throttle *t, const char *name)
{
    return &t->head[name_hash(t, name) & (t->nbuckets - 1)];
}

/* Frees slot i, on its chain now. */
static void release(struct gw_throttle *t, uint32_t i)
{
    struct who *w = &t->w[i];
    uint32_t *pp = chain_of(t, w->name);

    while (*pp != i)
        pp = &t->w[*pp].next;
    *pp = w->next;
    t->keys -= w->n;
    wipe_keys(t, w);
    memset(w, 0, sizeof(*w));
    w->next = t->free_list;
    t->free_list = i;
    t->used--;
}

/* The slot of who, or a free one (reusing a principal with nothing in its window whose incident
 * window has passed too); NULL when none is free or reusable (then searched again a second
 * later at the earliest). */
static struct who *find(struct gw_throttle *t, const char *who, uint64_t now)
{
    uint32_t *chain = chain_of(t, who), i;
    struct who *w;

    for (i = *chain; i != NONE; i = t->w[i].next)
        if (strcmp(t->w[i].name, who) == 0)
            return &t->w[i];
    if (t->free_list == NONE && t->slot_scan_at != now + 1) {
        for (i = 0; i < t->nw; i++) {
            w = &t->w[i];
            if (now - w->last >= w->window &&
                (w->incident_at == 0 || now - w->incident_at >= w->window)) {
                release(t, i);
                break;
            }
        }
        if (t->free_list == NONE)
            t->slot_scan_at = now + 1;
    }
    if (t->free_list == NONE)
        return NULL;
    i = t->free_list;
    w = &t->w[i];
    t->free_list = w->next;
    memset(w, 0, sizeof(*w));
    memcpy(w->name, who, strlen(who) + 1);
    w->next = *chain;
    *chain = i;
    t->used++;
    return w;
}

/* A refusal; *incident (already false) becomes true for the first of its window: w's for OVER,
 * the table's for FULL. */
static enum gw_throttle_verdict refuse(struct gw_throttle *t, struct who *w,
                                       enum gw_throttle_verdict v, uint32_t window_s, uint64_t now,
                                       bool *incident)
{
    uint64_t *at = v == GW_THROTTLE_FULL ? &t->full_incident_at : &w->incident_at;

    if (v == GW_THROTTLE_FULL)
        t->full++;
    if (*at == 0 || now - *at >= window_s) {
        *at = now != 0 ? now : 1;
        if (incident != NULL)
            *incident = true;
    }
    return v;
}

/* w's arrays made cap entries long (cap >= w->n), its index twice that rounded up to a power of
 * two: false when out of memory (w unchanged). */
static bool resize(struct gw_throttle *t, struct who *w, uint32_t cap)
{
    uint32_t icap = 1;
    struct entry *e;
    uint32_t *idx;

    while (icap < 2 * cap)
        icap *= 2;
    e = gw_calloc(cap, sizeof(*e));
    idx = gw_calloc(icap, sizeof(*idx));
    if (e == NULL || idx == NULL) {
        gw_free(e);
        gw_free(idx);
        return false;
    }
    if (w->n > 0)
        memcpy(e, w->e, w->n * sizeof(*e));
    gw_free_wipe(w->e, w->cap * sizeof(*e));
    gw_free_wipe(w->idx, w->icap * sizeof(*idx));
    t->room = t->room - w->cap + cap;
    w->e = e;
    w->idx = idx;
    w->cap = cap;
    w->icap = icap;
    reindex(t, w);
    return true;
}

/* Room for one more entry in w: false when out of memory. */
static bool grow(struct gw_throttle *t, struct who *w, uint32_t limit)
{
    uint32_t cap = w->cap == 0 ? GROW_FIRST : w->cap * 2;

    return resize(t, w, cap > limit ? limit : cap);
}

enum gw_throttle_verdict gw_throttle_check(struct gw_throttle *t, const char *who,
                                           const uint8_t key[GW_THROTTLE_KEY_LEN], uint32_t limit,
                                           uint32_t window_s, uint64_t now_s, bool *incident)
{
    struct who *w;
    struct entry *e;
    uint32_t s;

    if (incident != NULL)
        *incident = false;
    if (t == NULL || who == NULL || who[0] == '\0' || strlen(who) >= GW_THROTTLE_WHO_MAX ||
        window_s == 0) /* no window would forget every key at once: nothing is allowed */
        return GW_THROTTLE_OVER;
    w = find(t, who, now_s);
    if (w == NULL)
        return refuse(t, NULL, GW_THROTTLE_FULL, window_s, now_s, incident);
    w->last = now_s;
    w->window = window_s;
    expire(t, w, window_s, now_s);
    e = lookup(t, w, key);
    if (e != NULL) {
        e->seen = now_s;
        return GW_THROTTLE_OK;
    }
    /* (so a principal never holds more keys than its limit: w->n <= limit, and w->cap too) */
    if (w->n >= limit)
        return refuse(t, w, GW_THROTTLE_OVER, window_s, now_s, incident);
    if (t->keys >= t->max_keys && t->key_scan_at != now_s + 1) {
        /* make room from the other principals' expired keys (a pass a second at most) */
        for (size_t i = 0; i < t->nw && t->keys >= t->max_keys; i++)
            if (t->w[i].name[0] != '\0')
                expire(t, &t->w[i], t->w[i].window, now_s);
        t->key_scan_at = now_s + 1;
    }
    if (t->keys >= t->max_keys || (w->n == w->cap && !grow(t, w, limit)))
        return refuse(t, w, GW_THROTTLE_FULL, window_s, now_s, incident);
    e = &w->e[w->n];
    memcpy(e->key, key, GW_THROTTLE_KEY_LEN);
    e->seen = now_s;
    if (w->n == 0 || now_s < w->oldest)
        w->oldest = now_s;
    for (s = key_slot(t, w, key); w->idx[s] != 0; s = (s + 1) & (w->icap - 1))
        ;
    w->idx[s] = ++w->n;
    t->keys++;
    return GW_THROTTLE_OK;
}

void gw_throttle_stats(const struct gw_throttle *t, struct gw_throttle_stats *st)
{
    st->principals = t->used;
    st->max_principals = t->nw;
    st->keys = t->keys;
    st->max_keys = t->max_keys;
    st->room = t->room;
    st->full = t->full;
}
