/* db_owner.c: the pool's shares (db.h): callers' requests queued or in flight, counted per owner
 * (a 32-byte key: a certificate's fingerprint, or a digest naming an account over one) in a
 * hash table of DB_OWNER_BUCKETS chains. Invariants: an owner's count is on its chain exactly
 * while it is above 0, and equals the number of requests whose r->owner points at it; a
 * request's charge is taken once, in gw_db_exec, and given back once (gw_db_owner_release
 * clears r->owner). */
#include <string.h>

#include "alloc.h"
#include "db_int.h"

/* A SHA-256 is uniform: its first byte is a hash already. */
static struct db_owner **bucket(struct gw_db *db, const unsigned char *key)
{
    return &db->owners[key[0] % DB_OWNER_BUCKETS];
}

static const struct db_owner *find(const struct gw_db *db, const struct gw_db_owner *o)
{
    const struct db_owner *e;

    if (o == NULL || !o->set)
        return NULL;
    for (e = db->owners[o->key[0] % DB_OWNER_BUCKETS]; e != NULL; e = e->next)
        if (memcmp(e->key, o->key, GW_DB_OWNER_LEN) == 0)
            return e;
    return NULL;
}

void gw_db_owner_of(struct gw_db_owner *o, bool has_cert, const unsigned char *fpr)
{
    memset(o, 0, sizeof(*o));
    o->set = true;
    if (has_cert && fpr != NULL)
        memcpy(o->key, fpr, GW_DB_OWNER_LEN);
}

void gw_db_owner_swap(struct gw_db *db, const struct gw_db_owner *owner, struct gw_db_owner *prev)
{
    if (db == NULL)
        return;
    if (prev != NULL)
        *prev = db->cur;
    if (owner != NULL && owner->set)
        db->cur = *owner;
    else
        memset(&db->cur, 0, sizeof(db->cur));
}

unsigned gw_db_share(const struct gw_db *db)
{
    return db != NULL ? db->share : 0;
}

unsigned gw_db_owner_pending(const struct gw_db *db, const struct gw_db_owner *owner)
{
    const struct db_owner *e = db != NULL ? find(db, owner) : NULL;

    return e != NULL ? e->n : 0;
}

bool gw_db_share_used(struct gw_db *db, const struct gw_db_owner *owner)
{
    if (db == NULL || gw_db_owner_pending(db, owner) < db->share)
        return false;
    db->share_refusals++;
    return true;
}

unsigned long gw_db_share_refusals(const struct gw_db *db)
{
    return db != NULL ? db->share_refusals : 0;
}

unsigned gw_db_share_peak(const struct gw_db *db)
{
    return db != NULL ? db->share_peak : 0;
}

int gw_db_owner_charge(struct gw_db *db, struct gw_db_req *r, unsigned flags)
{
    struct db_owner *e;

    if (!db->cur.set || (flags & (GW_DB_RESERVED | GW_DB_SHARED)) != 0)
        return 0;
    e = (struct db_owner *)find(db, &db->cur);
    if (e == NULL) {
        struct db_owner **b = bucket(db, db->cur.key);
        e = gw_calloc(1, sizeof(*e));
        if (e == NULL)
            return GW_ENOMEM;
        memcpy(e->key, db->cur.key, GW_DB_OWNER_LEN);
        e->next = *b;
        *b = e;
    }
    e->n++;
    if (e->n > db->share_peak)
        db->share_peak = e->n;
    r->owner = e;
    return 0;
}

void gw_db_owner_release(struct gw_db_req *r)
{
    struct db_owner *e = r->owner, **pp;

    if (e == NULL)
        return;
    r->owner = NULL;
    if (--e->n > 0)
        return;
    for (pp = bucket(r->db, e->key); *pp != NULL; pp = &(*pp)->next)
        if (*pp == e) {
            *pp = e->next;
            break;
        }
    gw_free(e);
}

void gw_db_owner_free_all(struct gw_db *db)
{
    for (size_t i = 0; i < DB_OWNER_BUCKETS; i++)
        while (db->owners[i] != NULL) {
            struct db_owner *e = db->owners[i];
            db->owners[i] = e->next;
            gw_free(e);
        }
}
