/* throttle.c: the scraping throttle's table (throttle.h): a fixed array of principals, each with
 * a growing array of (key, last seen) entries; expired entries are dropped as each principal is
 * visited. Invariants: sum of every principal's entries <= max_keys; a principal's entries are
 * all distinct; memory only grows up to the caps and is released by gw_throttle_free. */
#include "throttle.h"

#include <string.h>

#include "alloc.h"

struct entry {
    uint8_t key[GW_THROTTLE_KEY_LEN];
    uint64_t seen;
};

struct who {
    char name[GW_THROTTLE_WHO_MAX]; /* "" = free slot */
    struct entry *e;
    size_t n, cap;
    uint64_t last;        /* last lookup, for eviction */
    uint64_t incident_at; /* when the last incident was asked for; 0 = never */
};

struct gw_throttle {
    struct who *w;
    size_t nw, max_keys, keys;
};

struct gw_throttle *gw_throttle_new(size_t max_principals, size_t max_keys)
{
    struct gw_throttle *t = gw_calloc(1, sizeof(*t));

    if (t == NULL || max_principals == 0)
        goto fail;
    t->w = gw_calloc(max_principals, sizeof(*t->w));
    if (t->w == NULL)
        goto fail;
    t->nw = max_principals;
    t->max_keys = max_keys;
    return t;
fail:
    gw_free(t);
    return NULL;
}

void gw_throttle_free(struct gw_throttle *t)
{
    if (t == NULL)
        return;
    for (size_t i = 0; i < t->nw; i++)
        gw_free_wipe(t->w[i].e, t->w[i].cap * sizeof(struct entry));
    gw_free(t->w);
    gw_free(t);
}

/* Drops w's entries last seen window_s or longer ago. */
static void expire(struct gw_throttle *t, struct who *w, uint32_t window_s, uint64_t now)
{
    size_t i, j = 0;

    for (i = 0; i < w->n; i++)
        if (now - w->e[i].seen < window_s)
            w->e[j++] = w->e[i];
    t->keys -= w->n - j;
    w->n = j;
}

static void release(struct gw_throttle *t, struct who *w)
{
    t->keys -= w->n;
    gw_free_wipe(w->e, w->cap * sizeof(struct entry));
    memset(w, 0, sizeof(*w));
}

/* The slot of who, or a free one (evicting a principal with nothing in its window, then the one
 * idle longest that holds no keys); NULL when every slot holds live keys. */
static struct who *find(struct gw_throttle *t, const char *who, uint32_t window_s, uint64_t now)
{
    struct who *free_slot = NULL;
    size_t i;

    for (i = 0; i < t->nw; i++) {
        struct who *w = &t->w[i];
        if (w->name[0] != '\0' && strcmp(w->name, who) == 0)
            return w;
        if (free_slot == NULL && w->name[0] == '\0')
            free_slot = w;
    }
    if (free_slot == NULL) {
        for (i = 0; i < t->nw && free_slot == NULL; i++) {
            struct who *w = &t->w[i];
            /* a principal whose window and incident window have both passed */
            if (now - w->last >= window_s &&
                (w->incident_at == 0 || now - w->incident_at >= window_s)) {
                release(t, w);
                free_slot = w;
            }
        }
    }
    if (free_slot == NULL)
        return NULL;
    memset(free_slot, 0, sizeof(*free_slot));
    memcpy(free_slot->name, who, strlen(who) + 1);
    return free_slot;
}

/* A refusal; *incident (already false) becomes true for w's first refusal of the window. With
 * w NULL (the table is full) there is no principal to charge: no incident. */
static enum gw_throttle_verdict over(struct who *w, uint32_t window_s, uint64_t now, bool *incident)
{
    if (w != NULL && (w->incident_at == 0 || now - w->incident_at >= window_s)) {
        w->incident_at = now != 0 ? now : 1;
        if (incident != NULL)
            *incident = true;
    }
    return GW_THROTTLE_OVER;
}

enum gw_throttle_verdict gw_throttle_check(struct gw_throttle *t, const char *who,
                                           const uint8_t key[GW_THROTTLE_KEY_LEN], uint32_t limit,
                                           uint32_t window_s, uint64_t now_s, bool *incident)
{
    struct who *w;
    size_t i;

    if (incident != NULL)
        *incident = false;
    if (t == NULL || who == NULL || who[0] == '\0' || strlen(who) >= GW_THROTTLE_WHO_MAX ||
        window_s == 0) /* no window would forget every key at once: nothing is allowed */
        return GW_THROTTLE_OVER;
    w = find(t, who, window_s, now_s);
    if (w == NULL)
        return over(NULL, window_s, now_s, incident);
    w->last = now_s;
    expire(t, w, window_s, now_s);
    for (i = 0; i < w->n; i++) {
        if (memcmp(w->e[i].key, key, GW_THROTTLE_KEY_LEN) == 0) {
            w->e[i].seen = now_s;
            return GW_THROTTLE_OK;
        }
    }
    if (w->n >= limit)
        return over(w, window_s, now_s, incident);
    if (t->keys >= t->max_keys) {
        /* make room from the other principals' expired keys, then give up (fail closed) */
        for (i = 0; i < t->nw && t->keys >= t->max_keys; i++)
            if (t->w[i].name[0] != '\0')
                expire(t, &t->w[i], window_s, now_s);
        if (t->keys >= t->max_keys)
            return over(w, window_s, now_s, incident);
    }
    if (w->n == w->cap) {
        size_t cap = w->cap == 0 ? 16 : w->cap * 2;
        struct entry *e;
        if (cap > limit)
            cap = limit;
        e = gw_calloc(cap, sizeof(*e));
        if (e == NULL)
            return over(w, window_s, now_s, incident);
        if (w->n > 0)
            memcpy(e, w->e, w->n * sizeof(*e));
        gw_free_wipe(w->e, w->cap * sizeof(*e));
        w->e = e;
        w->cap = cap;
    }
    memcpy(w->e[w->n].key, key, GW_THROTTLE_KEY_LEN);
    w->e[w->n].seen = now_s;
    w->n++;
    t->keys++;
    return GW_THROTTLE_OK;
}

void gw_throttle_usage(const struct gw_throttle *t, size_t *principals, size_t *keys)
{
    size_t n = 0;

    for (size_t i = 0; i < t->nw; i++)
        n += t->w[i].name[0] != '\0';
    *principals = n;
    *keys = t->keys;
}
