/* audit_scan.h: the gateway's asynchronous read of the audit trail for Compliance.ExportAudit:
 * the same keys, spans, records and checkpoints, in the same order, as waygatectl's blocking
 * reads (audit_read.h), in steps the caller paces: each step is one database request, and the
 * next starts only when the caller asks, so memory stays one batch however long the range (the
 * caller asks again once it has sent what the step produced). The trail is append-only, so reads
 * spread over several requests see one consistent stretch: the spans are fixed by the first step
 * and the records and checkpoints inside them never change. */
#ifndef GW_STORE_AUDIT_SCAN_H
#define GW_STORE_AUDIT_SCAN_H

#include <stdbool.h>
#include <stdint.h>

#include "audit_read.h"
#include "db.h"
#include "err.h"

struct gw_audit_scan;

struct gw_audit_scan_ops {
    /* items, in bundle order; a non-zero return ends the step with that error */
    int (*key)(void *arg, const uint8_t *pub, size_t publen);
    int (*row)(void *arg, const struct gw_audit_row *r);
    int (*ckpt)(void *arg, const struct gw_audit_ckpt *c);
    /* the step is over: err 0 (finished: nothing more to read) or an error (GW_EUNAVAIL,
     * GW_EINTERNAL, or a callback's). Never runs from inside gw_audit_scan_step. */
    void (*step_done)(void *arg, int err, bool finished);
};

/* A scan of the records with at_us in [from_us, to_us) (spans as gw_audit_read_plan), batch
 * records per step. Nothing is read until gw_audit_scan_step. Returns 0 and *out, or GW_ENOMEM. */
int gw_audit_scan_new(struct gw_db *db, int64_t from_us, int64_t to_us, long batch,
                      const struct gw_audit_scan_ops *ops, void *arg,
                      struct gw_audit_scan **out) GW_MUST_CHECK;
/* Starts the next step (the first: keys and spans). Returns 0, or an error of gw_db_exec (then
 * step_done will not run). */
int gw_audit_scan_step(struct gw_audit_scan *s) GW_MUST_CHECK;
/* Cancels a step in flight (its step_done never runs) and frees. NULL-safe. */
void gw_audit_scan_free(struct gw_audit_scan *s);

#endif
