/* spool.h: the daemon's audit spool ([audit] spool; store/audit_spool.h): read and replayed at
 * start, written at shutdown with what the drains left. Wiring only: the format, its MAC and the
 * replay are the store's. */
#ifndef GW_APP_SPOOL_H
#define GW_APP_SPOOL_H

#include <stdint.h>

struct event_base;
struct gw_app;
struct gw_spool;

/* At start, after gw_audit_new and before gw_audit_start. Without [audit] spool: a warning that
 * what the database has not taken at shutdown is lost, and *out NULL. With it: a spool file there
 * is verified (its MAC under the keyring's spool key, its chain this writer's, its size within
 * what the queues can hold) and its entries handed to the writer (store/audit_replay.h); one that
 * fails is renamed aside to <spool>.rejected.<unix time>, never replayed nor deleted, with a
 * critical log line naming it and why (gw_spool_incident records the incident). Returns 0, or -1
 * (logged: out of memory, or a rejected file that cannot be moved aside). */
int gw_spool_start(struct gw_app *app, struct gw_spool **out);
/* Once app->incidents exists: the critical incident audit_spool_rejected, when a spool was. */
void gw_spool_incident(struct gw_spool *s, struct gw_app *app);

/* At shutdown, once the drains have answered: the entries left (the writer's kept ones, the
 * replay's not handed over, the incidents queued, the counted refusals not queued) are written to
 * the spool, which replaces the file. *spooled: the entries written (the file renamed into place,
 * even if its directory's fsync then failed: logged); *lost: those the spool could not take, or
 * all when it could not be written (logged), less *kept: those the file read at start still
 * holds, when it could not be replaced and none of its entries had been written, nor could have
 * been (else it is removed: gw_audit_replay_abandon). NULL-safe (all 0). */
void gw_spool_stop(struct gw_spool *s, struct gw_app *app, uint64_t *spooled, uint64_t *kept,
                   uint64_t *lost);
/* The spool's path, for the exit line. */
const char *gw_spool_path(const struct gw_spool *s);
/* After gw_audit_free. NULL-safe. */
void gw_spool_free(struct gw_spool *s);

#endif
