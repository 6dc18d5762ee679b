/* kekguard.h: the gateway's keyring vouched for by its database (Art. 36, sql/036_kek_version.sql).
 * At start and at each keyring reload, every active KEK of the keyring is compared with the
 * database's kek_version: a version it lacks is registered, one whose key is another (the wrong
 * database, a divergent copy of the key file) is refused. Until the keyring loaded at start is
 * vouched for, app->keys_unchecked stays set: the health check says NOT_SERVING and Submit seals
 * nothing. A reload whose keyring holds only versions already vouched for (a policy or TLS
 * reload, the same key file) needs no database. */
#ifndef GW_APP_KEKGUARD_H
#define GW_APP_KEKGUARD_H

#include <stdbool.h>

#include "app.h"
#include "keyring.h"

struct gw_kekguard;

/* outcome: 0 (vouched for), GW_EEXIST (a version is another key: msg names it and the rule) or,
 * for gw_kekguard_check only, GW_EUNAVAIL (the database could not be asked) / GW_ENOMEM. */
typedef void (*gw_kekguard_cb)(void *arg, int outcome, const char *msg);

/* A guard over app's pool, registering versions as brought by `by` (the audit chain's id). NULL
 * on ENOMEM. */
struct gw_kekguard *gw_kekguard_new(struct gw_app *app, const char *by);
/* Cancels what is in flight (no callback runs) and frees. NULL-safe. */
void gw_kekguard_free(struct gw_kekguard *g);

/* At start: vouches for app->keys, retrying with a backoff (up to half a second) while the
 * database is away, and calls cb once with 0 or GW_EEXIST. Clears app->keys_unchecked
 * on 0. Returns 0, GW_ENOMEM or an error of gw_keyring_kek_checks. */
int gw_kekguard_start(struct gw_kekguard *g, gw_kekguard_cb cb, void *arg) GW_MUST_CHECK;

/* At reload: whether every active KEK of kr is one already vouched for (same suite, version and
 * check value): then no database is needed. False when its values cannot be computed. */
bool gw_kekguard_covers(struct gw_kekguard *g, const struct gw_keyring *kr);

/* At reload: vouches for kr once (no retry: the reload is refused when the database is away) and
 * calls cb once. On 0 its values become the vouched ones. At most one check at a time: GW_EUNAVAIL
 * (returned) while one is in flight, the start's included (nothing compared: not a mismatch).
 * Returns 0, GW_EUNAVAIL, GW_ENOMEM or an error of gw_keyring_kek_checks. */
int gw_kekguard_check(struct gw_kekguard *g, const struct gw_keyring *kr, gw_kekguard_cb cb,
                      void *arg) GW_MUST_CHECK;

/* Whether a check (start or reload) is in flight. */
bool gw_kekguard_busy(const struct gw_kekguard *g);

#endif
