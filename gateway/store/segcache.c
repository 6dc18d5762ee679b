/* segcache.c: an in-memory copy of the segment register, reloaded on a miss, from a source
 * (the store, or a unit test's). Invariants: at most one load in flight; every waiting check is
 * answered exactly once when it completes, unless cancelled (also from another waiter's callback:
 * each waiter is detached before its callback runs); the cache is replaced whole, never
 * half-updated. */
#include <string.h>

#include "alloc.h"
#include "clock.h"
#include "segcache.h"
#include "store.h"
#include "waybillno.h"

struct gw_segcache_req {
    struct gw_segcache *cache;
    struct gw_segcache_req *next;
    gw_segcache_cb cb;
    void *arg;
    char branch[64];
    char prefix[GW_WAYBILLNO_PREFIX_MAX + 1];
    int64_t numeric;
};

struct gw_segcache {
    struct gw_segcache_source src;
    struct gw_segment *segs; /* branch strings allocated with the array (one block each) */
    size_t nsegs;
    bool loaded;
    uint64_t loaded_at_ms;
    void *load; /* the source's handle of the load in flight */
    uint32_t refresh_ms;
    struct gw_segcache_req *waiting;   /* for the load in flight */
    struct gw_segcache_req *answering; /* the finished load's waiters not yet called back */
};

/* ---- the production source: the store and the monotonic clock ---- */

static uint64_t mono_ms(void *ctx)
{
    (void)ctx;
    return gw_clock_ms();
}

static void store_loaded_cb(void *arg, int err, const struct gw_store_segment *seg, size_t n)
{
    gw_segcache_loaded(arg, err, seg, n);
}

static int store_load(void *ctx, struct gw_segcache *c, void **handle)
{
    struct gw_store_req *req = NULL;
    int rc = gw_store_load_segments(ctx, store_loaded_cb, c, &req);

    *handle = req;
    return rc;
}

static void store_cancel(void *handle)
{
    gw_store_cancel(handle);
}

static void free_segs(struct gw_segment *segs, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++)
        gw_free((void *)segs[i].branch);
    gw_free(segs);
}

struct gw_segcache *gw_segcache_new_source(const struct gw_segcache_source *src,
                                           uint32_t refresh_ms)
{
    struct gw_segcache *c = gw_calloc(1, sizeof(*c));

    if (c != NULL) {
        c->src = *src;
        c->refresh_ms = refresh_ms;
    }
    return c;
}

struct gw_segcache *gw_segcache_new(struct gw_store *store, uint32_t refresh_ms)
{
    struct gw_segcache_source src = {store_load, store_cancel, mono_ms, store};

    return gw_segcache_new_source(&src, refresh_ms);
}

static void free_list(struct gw_segcache_req *r)
{
    struct gw_segcache_req *next;

    for (; r != NULL; r = next) {
        next = r->next;
        gw_free(r);
    }
}

void gw_segcache_free(struct gw_segcache *c)
{
    if (c == NULL)
        return;
    if (c->load != NULL)
        c->src.cancel(c->load);
    free_list(c->waiting);
    free_list(c->answering);
    free_segs(c->segs, c->nsegs);
    gw_free(c);
}

static bool lookup(const struct gw_segcache *c, const char *branch, const char *prefix,
                   int64_t numeric)
{
    return gw_segment_find(c->segs, c->nsegs, branch, prefix, numeric);
}

void gw_segcache_loaded(struct gw_segcache *c, int err, const struct gw_store_segment *seg,
                        size_t n)
{
    struct gw_segcache_req *r;
    struct gw_segment *segs = NULL;
    size_t i, got = 0;

    c->load = NULL;
    c->answering = c->waiting;
    c->waiting = NULL;
    if (err == 0 && n > 0) {
        segs = gw_calloc(n, sizeof(*segs));
        if (segs == NULL)
            err = GW_ENOMEM;
        for (i = 0; segs != NULL && i < n; i++) {
            if (strlen(seg[i].prefix) > GW_WAYBILLNO_PREFIX_MAX)
                continue; /* cannot match any valid number */
            segs[got].branch = gw_strdup(seg[i].branch);
            if (segs[got].branch == NULL) {
                free_segs(segs, got);
                segs = NULL;
                got = 0;
                err = GW_ENOMEM;
                break;
            }
            strcpy(segs[got].prefix, seg[i].prefix);
            segs[got].from = seg[i].range_from;
            segs[got].to = seg[i].range_to;
            got++;
        }
    }
    if (err == 0) {
        free_segs(c->segs, c->nsegs);
        c->segs = segs;
        c->nsegs = got;
        c->loaded = true;
        c->loaded_at_ms = c->src.now_ms(c->src.ctx);
    }
    /* A callback may finish its call and so cancel other waiters (of its call or of another call
     * on the same connection): take each off the list before calling it, never hold a pointer into
     * the list across a callback. */
    while ((r = c->answering) != NULL) {
        c->answering = r->next;
        r->cb(r->arg, err, err == 0 && lookup(c, r->branch, r->prefix, r->numeric));
        gw_free(r);
    }
}

int gw_segcache_check(struct gw_segcache *c, const char *branch, const char *prefix,
                      int64_t numeric, gw_segcache_cb cb, void *arg, struct gw_segcache_req **out)
{
    struct gw_segcache_req *r;
    int rc;

    if (out != NULL)
        *out = NULL;
    if (branch == NULL || branch[0] == '\0' || strlen(branch) >= sizeof(r->branch) ||
        strlen(prefix) > GW_WAYBILLNO_PREFIX_MAX)
        return 0;
    if (lookup(c, branch, prefix, numeric))
        return 1;
    if (c->load == NULL && c->loaded && c->src.now_ms(c->src.ctx) - c->loaded_at_ms < c->refresh_ms)
        return 0;
    r = gw_calloc(1, sizeof(*r));
    if (r == NULL)
        return GW_ENOMEM;
    if (c->load == NULL) {
        rc = c->src.load(c->src.ctx, c, &c->load);
        if (rc != 0) {
            c->load = NULL;
            gw_free(r);
            return rc;
        }
    }
    r->cache = c;
    r->cb = cb;
    r->arg = arg;
    strcpy(r->branch, branch);
    strcpy(r->prefix, prefix);
    r->numeric = numeric;
    r->next = c->waiting;
    c->waiting = r;
    if (out != NULL)
        *out = r;
    return GW_OK_PENDING;
}

void gw_segcache_cancel(struct gw_segcache_req *req)
{
    struct gw_segcache_req **lists[2], **pp;
    size_t i;

    if (req == NULL)
        return;
    lists[0] = &req->cache->waiting;
    lists[1] = &req->cache->answering;
    for (i = 0; i < 2; i++)
        for (pp = lists[i]; *pp != NULL; pp = &(*pp)->next)
            if (*pp == req) {
                *pp = req->next;
                gw_free(req);
                return;
            }
}
