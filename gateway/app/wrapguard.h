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

struct gw_wrapguard;

/* A guard over app's pool and keyring; sets app->wraps to its lease (NULL again when freed).
 * NULL on ENOMEM. */
struct gw_wrapguard *gw_wrapguard_new(struct gw_app *app);
/* Cancels what is in flight (no callback runs), clears app->wraps and frees. NULL-safe. */
void gw_wrapguard_free(struct gw_wrapguard *g);

/* The keyring app->keys seals under now (at start, and after each reload): a KEK other than the
 * lease's forgets the lease (its unused part stays counted: wasted) and asks for one under the
 * new KEK. Returns 0 or GW_ENOMEM (no timer). */
int gw_wrapguard_keyring(struct gw_wrapguard *g) GW_MUST_CHECK;

#endif
