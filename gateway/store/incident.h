/* incident.h: security incidents (Art. 17) written reliably. A refusal's incident is queued in the
 * gateway and written to the incident table through the audit writer (audit.h), each row with
 * its audit record (action "incident", object the kind, detail "severity=<s>", count the row's
 * count) in one transaction, in FIFO order; while the
 * database is away the queue retries with exponential backoff. Memory is bounded by a cap on the
 * queued rows: at the cap nothing is dropped, incidents are coalesced instead (same kind, principal
 * and peer -> one queued row whose count grows; failing that, one row per kind that keeps only the
 * kind and the count), and the start of each such episode is logged at error level once.
 *
 * Writes are at least once: a transaction whose outcome the gateway could not learn (the
 * connection broke during the commit) is sent again, so such a row may appear twice.
 * Incidents never hold PII: principal is a certificate or account name, peer an address, detail a
 * text built from counts and field names; a waybill is referred to by its record id only.
 * Storage layer: depends on db.h only (its timers run on gw_db_base()). */
#ifndef GW_INCIDENT_H
#define GW_INCIDENT_H

#include <stdbool.h>
#include <stdint.h>

#include "audit.h"
#include "err.h"

struct gw_audit;
struct gw_db;
struct gw_incidents;

#define GW_INCIDENT_ID_LEN 16 /* record id: a UUID's 16 bytes */

/* One incident. severity: "low", "medium", "high" or "critical"; kind: a machine-readable word
 * (a constant of the code: the per-kind rows beyond the cap are bounded by their number);
 * principal, role, cert, peer, branch, detail, record_id may be NULL. */
struct gw_incident {
    const char *severity;
    const char *kind;
    const char *principal;
    const char *role; /* the principal's role (for the audit record) */
    const char *cert; /* the certificate principal the call came over (likewise) */
    const char *peer;
    const char *branch;
    const char *detail;
    const uint8_t *record_id; /* GW_INCIDENT_ID_LEN bytes, or NULL */
};

struct gw_incident_stats {
    uint64_t recorded;  /* incidents accepted by gw_incident_record */
    uint64_t written;   /* incidents the database committed (a coalesced row counts its count) */
    uint64_t rows;      /* rows the database committed */
    uint64_t coalesced; /* incidents merged into an already queued row */
    uint64_t episodes;  /* times the queue reached its cap and began coalescing */
    uint64_t failures;  /* write attempts that failed (each followed by a retry) */
    uint64_t lost;      /* incidents lost for want of memory (nothing queued to merge into) */
    uint32_t queued;    /* rows waiting now (in flight included) */
    uint64_t pending;   /* incidents waiting now (sum of the queued rows' counts) */
    bool coalescing;    /* the queue is at its cap now */
};

/* Creates the queue over db and the audit writer over it (both must outlive it). cap: most rows
 * queued before coalescing (>= 1); retry_max_ms: the cap of the retry backoff (which starts at
 * 50 ms and doubles). Returns NULL on allocation failure, a missing argument or cap 0. */
struct gw_incidents *gw_incident_new(struct gw_db *db, struct gw_audit *audit, uint32_t cap,
                                     uint32_t retry_max_ms);

/* Logs, at error level, how many incidents (and rows) are still unwritten, never their contents;
 * cancels the write in flight; frees everything. NULL-safe. Call before gw_db_free. */
void gw_incident_free(struct gw_incidents *q);

/* Queues one incident (its strings are copied) and starts writing it when nothing is in flight.
 * Returns 0; GW_EINVAL (q or kind missing, unknown severity); GW_ENOMEM (no memory and no queued
 * row to merge into: the incident is lost, counted in stats.lost). Never calls back. */
int gw_incident_record(struct gw_incidents *q, const struct gw_incident *inc) GW_MUST_CHECK;

typedef void (*gw_incident_drained_cb)(void *arg, uint64_t left);
/* Shutdown: gives the queue until timeout_ms to be written (retrying at once, then with the
 * backoff), then calls cb once from the event loop with the number of incidents still unwritten
 * (0: all written). Calling it again replaces the earlier callback, which then never runs. */
void gw_incident_drain(struct gw_incidents *q, uint32_t timeout_ms, gw_incident_drained_cb cb,
                       void *arg);

/* At shutdown, right before gw_incident_leftover (and after gw_audit_halt, through which every
 * row is written): no row is sent from here on, a retry's timer included, so the rows its
 * leftover visits are written from the spool alone. Incidents recorded after it are counted at
 * gw_incident_free. NULL-safe. */
void gw_incident_halt(struct gw_incidents *q);
/* At shutdown, once the drain has answered: visits each row still queued (in flight ones
 * included: their entries are not kept, so the writer does not spool them) as the entry it is
 * written with, its INSERT keeping when the incident happened. A row whose transaction the writer
 * has sent is visited in doubt (gw_audit_req_in_doubt): the replay writes it only when that
 * transaction did not commit, so a row that commits as the gateway exits is not written again
 * from the spool. *rows: the rows visited. Returns 0 or the first error cb returned. */
int gw_incident_leftover(struct gw_incidents *q, gw_audit_left_cb cb, void *arg,
                         uint64_t *rows) GW_MUST_CHECK;
/* The rows visited are in a spool saved: gw_incident_free says so instead of their loss. */
void gw_incident_spooled(struct gw_incidents *q);

void gw_incident_stats(const struct gw_incidents *q, struct gw_incident_stats *out);

/* Incidents recorded since start by kind and severity (metrics). The table holds the kinds in the
 * order first seen; when full, the last entry counts the others (kind "other"). Returns the
 * number of entries in *out, valid until the next gw_incident_record. */
#define GW_INCIDENT_KINDS_MAX 64
struct gw_incident_kind_count {
    char kind[48];
    const char *severity;
    uint64_t count;
};
size_t gw_incident_kinds(const struct gw_incidents *q, const struct gw_incident_kind_count **out);

#endif
