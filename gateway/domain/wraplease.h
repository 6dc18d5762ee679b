/* wraplease.h: the data-key wraps this gateway may still make under its current KEK
 * (sql/050_kek_wrap_lease.sql, Art. 36; NIST SP 800-38D 8.3: a KEK with random 96-bit nonces is
 * bounded to about 2^32 wraps). The database counts the wraps leased under each KEK version and
 * refuses a lease past the version's limit; the gateway leases blocks ahead and seals a record
 * only against a wrap it holds (used < leased), so no wrap goes uncounted. A lease's unused part
 * is lost when the gateway stops or its KEK changes: the count only over-states, never under.
 *
 * The accounting only: the asking is the owner's (app/wrapguard.c), told through want_cb when a
 * lease is wanted (none held, or half of the last block used). Pure: no I/O, no logging. */
#ifndef GW_WRAPLEASE_H
#define GW_WRAPLEASE_H

#include <stdbool.h>
#include <stdint.h>

#include "err.h"

/* Told once per wanted lease: the owner asks the database, then answers with gw_wraplease_grant
 * or gw_wraplease_refused (or keeps asking: the want stays pending until one of them, or a
 * reset). */
typedef void (*gw_wraplease_want_fn)(void *arg);

struct gw_wraplease {
    /* the KEK the leases are of: its suite and version (0: none) */
    int suite;
    uint32_t version;
    uint64_t leased;  /* wraps granted under it since the reset */
    uint64_t used;    /* wraps taken: never more than leased */
    uint64_t mark;    /* gw_wraplease_take's fast path ends here: the prefetch point, or leased */
    uint64_t block;   /* wraps asked per lease */
    uint64_t counted; /* the database's count for the version at its last answer (metrics) */
    bool asking;      /* a lease is wanted and not yet answered */
    bool at_limit;    /* the database refused: the version's limit is reached */
    bool reported;    /* the version's refusal at its limit had its incident (api_intake.c) */
    gw_wraplease_want_fn want_cb;
    void *want_arg;
};

/* No KEK, no lease; asks per lease for block wraps (at least 2). */
void gw_wraplease_init(struct gw_wraplease *l, uint64_t block, gw_wraplease_want_fn want_cb,
                       void *arg);

/* The KEK is (suite, version) now: when it is another than the lease's, what was leased is
 * forgotten (its unused part is wasted: counted, never made) and nothing is held or asked.
 * Returns whether it was another. */
bool gw_wraplease_reset(struct gw_wraplease *l, int suite, uint32_t version);

/* Wants a lease now unless one is already wanted, the limit is reached or there is no KEK. */
void gw_wraplease_ask(struct gw_wraplease *l);

/* The database granted n wraps of (suite, version), its count for the version now `counted`.
 * An answer for another KEK (one a reset replaced) is ignored. */
void gw_wraplease_grant(struct gw_wraplease *l, int suite, uint32_t version, uint64_t n,
                        uint64_t counted);

/* The database refused a lease of (suite, version): its limit is reached. Ignored for another
 * KEK. What is held is still used; nothing more is asked for this KEK. */
void gw_wraplease_refused(struct gw_wraplease *l, int suite, uint32_t version);

/* True while a Submit would find no wrap held though the version is not at its limit (none
 * granted yet under this KEK, or all used while the next lease is asked): the health check
 * answers NOT_SERVING meanwhile (api_health.c), as a Submit would be refused UNAVAILABLE. */
static inline bool gw_wraplease_starved(const struct gw_wraplease *l)
{
    return l != NULL && l->version != 0 && !l->at_limit && l->used >= l->leased;
}

/* The slow path of gw_wraplease_take. */
int gw_wraplease_take_slow(struct gw_wraplease *l) GW_MUST_CHECK;

/* One wrap under the lease's KEK: 0 (taken), GW_EUNAVAIL (no lease held: asked for) or
 * GW_EPRECOND (none held and the version's limit is reached). One compare in the common case. */
static inline int GW_MUST_CHECK gw_wraplease_take(struct gw_wraplease *l)
{
    if (l->used < l->mark) {
        l->used++;
        return 0;
    }
    return gw_wraplease_take_slow(l);
}

#endif
