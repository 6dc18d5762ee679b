/* audit_replay.h: a spool read at start (audit_spool.h) written through the audit writer. Its
 * entries wait for the database as every kept entry does: those in doubt (their transaction's
 * outcome unknown when the gateway stopped) are settled by the writer's first recovery
 * (gw_audit_write_in_doubt), the others are queued with gw_audit_write_kept, as many as the
 * writer's queue takes, the rest as those commit. Once every entry has answered (committed, or
 * failed for good: logged), the spool file is removed and its directory fsynced; but a marked
 * file (version 2) with an entry that failed stays, so the next start writes that entry and skips
 * the others. At a stop, the entries the writer holds are its leftovers (gw_audit_leftover) and
 * those not handed to it yet, or failed, are this replay's (gw_audit_replay_leftover): both go
 * into the next spool, which replaces the file.
 *
 * A stop that never reaches the spool (SIGKILL, a crash) while a replay runs leaves the file as
 * it was read: its entries already committed are replayed again at the next start, and skipped
 * there, their mark found (audit_spool.h; a v1 file's entries, unmarked, are written again). A
 * stop whose spool cannot be written (gw_audit_replay_abandon) never leaves it so. */
#ifndef GW_STORE_AUDIT_REPLAY_H
#define GW_STORE_AUDIT_REPLAY_H

#include <stdint.h>

#include "audit.h"
#include "audit_spool.h"

struct event_base;
struct gw_audit_replay;

/* Takes sp (freed by gw_audit_replay_free, also on failure) and hands its entries to a, which
 * must not be started yet (gw_audit_start) and must outlive the replay's callbacks. path: the
 * spool file, removed once every entry has answered. Returns NULL on ENOMEM. */
struct gw_audit_replay *gw_audit_replay_new(struct event_base *base, struct gw_audit *a,
                                            struct gw_audit_spool *sp, const char *path);
/* At shutdown, right before gw_audit_replay_leftover: no entry is handed to the writer from
 * here on (its retry's timer included), and the file is not removed when the last entry answers
 * (by then it may be the next spool, written over it). NULL-safe. */
void gw_audit_replay_halt(struct gw_audit_replay *r);
/* At shutdown: adds to out the entries not handed to the writer yet and those it failed (nothing
 * of them committed), and counts them in *n.
 * Returns 0 or gw_audit_spool_add's error. NULL-safe (nothing added). */
int gw_audit_replay_leftover(const struct gw_audit_replay *r, struct gw_audit_spool *out,
                             uint64_t *n) GW_MUST_CHECK;
/* At shutdown, when the next spool did not replace the file (it could not be written). A marked
 * file (version 2) stays as read, whatever has answered: replayed again, an entry written (or
 * committed after the exit) is skipped by its mark; returns the entries not known written (they
 * are not lost). A version 1 file must not be replayed again once any of its entries has
 * answered, or may have been written: one the writer holds in a transaction whose outcome is
 * unknown (gw_audit_sent_in_doubt: in flight at the stop, it may commit after the exit). Nothing
 * answered yet and none such, it stays as read and holds every entry still owed: returns how
 * many. Else it is removed (its directory fsynced), logged, and 0 is returned: its entries not
 * written are lost with the spool that failed. 0 too when the file is already gone. NULL-safe
 * (0). */
uint64_t gw_audit_replay_abandon(struct gw_audit_replay *r);
/* After gw_audit_free (whose dropped entries then never call back). NULL-safe. */
void gw_audit_replay_free(struct gw_audit_replay *r);

#endif
