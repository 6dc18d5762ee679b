/* refusals.h: the audit records of refused calls, bounded (Art. 33, 34).
 *
 * Every refused Admin call (identity, policy or handler refusal, a failed login: an
 * administrative-record row and its audit record) and every refusal a handler records through
 * gw_api_record_refusal (a Reveal over its quota, a Search over the bulk threshold: the audit
 * record alone) is recorded, but a caller repeating one refusal cannot grow the append-only audit
 * trail, or fill the audit writer's queue, at its own pace: within a window (`[audit]
 * refusal_window_s`) the first GW_REFUSALS_EACH refusals of a kind (same caller: account and
 * certificate; same method, action, object, outcome and message; a row or none; as confidential;
 * not the purpose nor the legal basis, the caller's own free text such as a Reveal's reason, so
 * that rewording it makes no new kind) are recorded on their own, and the rest of that window's are
 * counted and recorded as one record (`count` = how many, the message followed by how many and over
 * how long; the purpose and legal basis of the kind's first refusal, or none when its refusals did
 * not all give the same) when the window ends. Refusal records never take more than half of the
 * writer's queue ([audit] queue_max, gw_audit_stats): past that they are counted too, so that a
 * flood of refusals never makes an audited action fail. Nothing is dropped: a refusal recorded
 * on its own waits out an outage of the database (and a stop, spooled), a count whose record
 * could not be written is carried into the next window, and gw_refusals_flush writes what is
 * counted at shutdown. At most GW_REFUSALS_KINDS kinds are told apart per window; the refusals of
 * further kinds are counted under one record of their own
 * ("refusals of more kinds than are told apart", action admin.refused, with a row); a caller's
 * kinds past its share (GW_REFUSALS_PER_CALLER) under one of the caller's (action admin.refused
 * with a row for Admin refusals, call.refused without one for the others). A counting record is
 * confidential when a refusal it counts was. A record counting several kinds still names what
 * they were of: each action and object (a Search's blind index, an unknown bulk or case id, an
 * Admin method) once with how many refusals named it, in a list of at most 640 bytes of its
 * detail, and how many refusals named an object the list had no room for.
 *
 * Invariant: an entry's strings live in its own block, and such a list in two of its own (the
 * counted refusals', the record being written's), wiped when freed (no PII: messages name fields
 * and rules, never values; objects are what the audit records name). */
#ifndef GW_API_REFUSALS_H
#define GW_API_REFUSALS_H

#include <stdint.h>

#include "accounts.h"
#include "audit.h"
#include "audit_rec.h"

struct event_base;
struct gw_audit;
struct gw_refusals;

#define GW_REFUSALS_KINDS 1024    /* kinds of refusal told apart per window */
#define GW_REFUSALS_EACH 8        /* refusals of a kind recorded on their own per window */
#define GW_REFUSALS_PER_CALLER 64 /* kinds of one caller (account and certificate) told apart */

/* How an entry is written: gw_acct_log_write_cb in the gateway (l NULL: the audit record alone,
 * gw_audit_write); a seam for unit tests. handle NULL: kept (gw_audit_write_kept's: it waits out
 * an outage, and at shutdown the writer's leftover holds it), as is every record of a refusal
 * on its own and every count written while the gateway stops; else *handle can be cancelled.
 * room: whether refusals may take another place in the writer's queue. keep: a write with a
 * handle is kept from then on, done(arg) its callback (gw_audit_rebind). held: whether the
 * writer's leftover holds the kept write whose callback is done(arg) (gw_audit_holds): not when
 * it failed and the writer halted before telling it. */
struct gw_refusals_sink {
    int (*write)(void *ctx, const struct gw_acct_log *l, const struct gw_audit_rec *r,
                 gw_audit_done_cb done, void *arg, void **handle);
    void (*cancel)(void *ctx, void *handle);
    bool (*room)(void *ctx);
    void (*keep)(void *ctx, void *handle, gw_audit_done_cb done, void *arg);
    bool (*held)(void *ctx, gw_audit_done_cb done, void *arg);
    void *ctx;
};

/* The writer over the audit chain a (NULL sink: the gateway's own), windows of window_s
 * seconds (>= 1). NULL on ENOMEM. */
struct gw_refusals *gw_refusals_new(struct event_base *base, struct gw_audit *a,
                                    const struct gw_refusals_sink *sink, uint32_t window_s);
/* Cancels what is being written (counted refusals not yet written are lost: flush first). */
void gw_refusals_free(struct gw_refusals *r);

/* Records one refusal: l is its administrative-record row (NULL: none, the audit record alone),
 * rec its audit record (both copied when kept; rec->confidential is kept with it). Returns true
 * for the first GW_REFUSALS_EACH refusals of its kind in the window, whether recorded on their
 * own or counted because the trail had no room for them (and when, out of memory, it was not
 * even counted: logged), false for the rest: a caller that raises something more per refusal (an
 * incident, a log line) does so only when true, so that a flood raises at most GW_REFUSALS_EACH
 * per window and kind, and a full audit queue suppresses none of them. */
bool gw_refusals_record(struct gw_refusals *r, const struct gw_acct_log *l,
                        const struct gw_audit_rec *rec);

/* At shutdown, before the audit writer's drain: ends the window now and writes a record for
 * every kind counted, and from then on writes each count as soon as nothing of its kind is being
 * written (queue room is not asked for). Those records, and a window's still being written,
 * are kept: a drain that times out leaves them to the writer's leftover, which spools them. One
 * the writer's queue does not take (its kept half full) is tried again every 100 ms until
 * gw_refusals_halt, which leaves it to gw_refusals_leftover. */
void gw_refusals_flush(struct gw_refusals *r);
/* At shutdown, when the audit writer's drain found its queue empty: writes now the counts whose
 * record its queue did not take (instead of at the next 100 ms try, which the drain's end may
 * come before). Returns whether one was queued (the caller drains again for it). */
bool gw_refusals_retry_now(struct gw_refusals *r);
/* At shutdown, right before gw_refusals_leftover: no record is written from here on (a refusal
 * counted after it is left, gw_refusals_left), so the counts its leftover visits are written
 * from the spool alone. */
void gw_refusals_halt(struct gw_refusals *r);
/* At shutdown, after the audit writer's drain: visits, as the entry gw_acct_log_write would
 * queue (for an entry with no row: gw_audit_write_kept's, the record alone), the record of each
 * kind's counted refusals that is not in the writer (its write could not be queued, or failed),
 * and takes them out of gw_refusals_left; *n counts the refusals. The counts whose kept record is
 * still in the writer are taken out too (the writer's leftover visits them); one whose kept
 * record failed and was not told before the writer halted is visited here as a told failure's
 * count would be. Returns 0 or the first error cb returned. */
int gw_refusals_leftover(struct gw_refusals *r, gw_audit_left_cb cb, void *arg,
                         uint64_t *n) GW_MUST_CHECK;
/* Refusals counted and not (yet) in a committed record: for the exit line; freeing logs them. */
uint64_t gw_refusals_left(const struct gw_refusals *r);

struct gw_refusals_stats {
    uint64_t recorded;  /* refusals recorded on their own */
    uint64_t counted;   /* refusals counted into a later record */
    uint64_t summaries; /* records of counted refusals written */
    uint64_t carried;   /* counted refusals whose record failed, carried to the next window */
    uint32_t kinds;     /* kinds held in this window */
};
void gw_refusals_stats(const struct gw_refusals *r, struct gw_refusals_stats *out);

#endif
