/* wrapguard.h: the gateway's leases of data-key wraps under its current KEK, asked of the
 * database ahead of need (sql/050_kek_wrap_lease.sql, Art. 36; the accounting is
 * domain/wraplease.h). At start and whenever the keyring's current KEK changes (a SIGHUP after
 * `keys rotate`) a block of GW_KEK_WRAP_BLOCK wraps is asked for, and the next one when half of
 * what is held is used, on the pool, never in a Submit's wait: Submit refuses (UNAVAILABLE)
 * while nothing is held, and (FAILED_PRECONDITION) once the version's limit is reached. While the
 * database is away the asking is retried with a backoff (up to a second). The limit passed is
 * [keys] kek_wrap_limit. */
#ifndef GW_APP_WRAPGUARD_H
#define GW_APP_WRAPGUARD_H

#include "app.h"
#include "err.h"
#include "keyring.h"

struct gw_wrapguard;

/* A guard over app's pool and keyring; sets app->wraps to its lease (NULL again when freed).
 * NULL on ENOMEM. */
struct gw_wrapguard *gw_wrapguard_new(struct gw_app *app);
/* Cancels what is in flight (no callback runs), clears app->wraps and frees. NULL-safe. */
void gw_wrapguard_free(struct gw_wrapguard *g);

/* The keyring app->keys seals under now (at start, and after each reload): a KEK other than the
 * lease's forgets the lease (its unused part stays counted: wasted) and takes the lease
 * gw_wrapguard_prepare got for the new KEK, or asks for one. Returns 0 or GW_ENOMEM (no
 * timer). */
int gw_wrapguard_keyring(struct gw_wrapguard *g) GW_MUST_CHECK;

typedef void (*gw_wrapguard_ready_fn)(void *arg);
/* Before a reload swaps in kr: when kr's current KEK is another than the lease's, leases a block
 * under it now, so that no Submit after the swap finds no wrap held (the running keyring seals
 * meanwhile, under its own lease), and runs ready(arg) once the database answered: granted,
 * refused at its limit, or failed (the reload goes on; gw_wrapguard_keyring then asks again).
 * Returns 0 (ready will run, never from within this call), 1 (the same KEK: nothing asked,
 * ready will not run) or GW_E* (not asked, ready will not run). One at a time. */
int gw_wrapguard_prepare(struct gw_wrapguard *g, const struct gw_keyring *kr,
                         gw_wrapguard_ready_fn ready, void *arg) GW_MUST_CHECK;

#endif
