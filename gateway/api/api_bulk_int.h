/* api_bulk_int.h: what Compliance's bulk handlers share (api_bulk.c: RequestBulk, ApproveBulk;
 * api_bulk_run.c: RunBulk; api_bulk_view.c: GetBulk): the start every handler shares, the audit
 * record about the caller, request ids, the scope of a bulk operation. Not for other modules. */
#ifndef GW_API_BULK_INT_H
#define GW_API_BULK_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "audit.h"
#include "call.h"
#include "store_bulk.h"

#define GW_BULK_TEXT_MAX 512 /* purpose, legal basis, destination, comment: bytes */
#define GW_BULK_IDS_MAX 1000 /* record ids in one selector */

/* The caller must be configured for (store, audit writer, keys); then the request is unpacked
 * into *in and size bytes of zeroed state allocated in the call's arena. Returns the state, or
 * NULL after failing the call. */
void *gw_api_bulk_start(struct gw_call *call, const ProtobufCMessageDescriptor *desc,
                        const uint8_t *req, size_t len, size_t size, ProtobufCMessage **in);

/* An audit record about the caller: actor, role, peer, certificate, branch; the action, object
 * (may be NULL) and outcome; count absent. */
void gw_api_bulk_rec(struct gw_call *call, struct gw_audit_rec *r, const char *action,
                     const char *object, const char *outcome);

/* Refuses the call (err, field, rule) after writing rec, the record of the refused attempt
 * (outcome "refused"): the answer waits for the record, so what the caller saw refused is in the
 * trail. A record that cannot be written is logged; the refusal stands. Replaces the call's
 * cancel function: a caller that goes away leaves the record written all the same. */
void gw_api_bulk_refuse(struct gw_call *call, const struct gw_audit_rec *rec, int err,
                        const char *field, enum gw_rule rule);

/* The scope a bulk operation of the caller reads and destroys under (row-level security): its
 * branch, or "*" for a central role without one. */
const char *gw_api_bulk_scope(struct gw_call *call);

/* True when s is a UUID in text form; copies it lower-cased into out. */
bool gw_api_bulk_uuid(const char *s, char out[37]);

/* The request_id of ApproveBulk, RunBulk and GetBulk: present and a UUID (copied lower-cased into
 * out); else the call is refused naming request_id and false returned. */
bool gw_api_bulk_request_id(struct gw_call *call, const char *s, char out[37]);

/* A fresh random (version 4) UUID: 16 bytes into raw (may be NULL) and its text into out.
 * Returns 0 or GW_ECRYPTO. */
int gw_api_bulk_new_id(struct gw_call *call, uint8_t raw[16], char out[37]) GW_MUST_CHECK;

/* The stored recipient key of bulk request id was not, when a decision's (run: a claim's)
 * statements took the row, the one read (fingerprint fp) or the one its bulk.request (run: its
 * bulk.approve) record names (gw_store_bulk_key): another transaction wrote it, and the
 * gateway's role cannot (sql/040). Logs it and records a critical bulk_key_changed incident. */
void gw_api_bulk_key_changed(struct gw_call *call, const char *id, const char *fp, bool run);

/* A recipient key (raw X25519 public key, GW_XSEAL_PUB_LEN bytes) as 64 lower-case hex digits
 * (how bulk_request stores it, sql/040) into hex, and its fingerprint, the first 8 bytes of its
 * SHA-256 in hex (the rcpt= of the bulk records), into fp. Returns 0 or GW_ECRYPTO. */
int gw_api_bulk_key_text(const uint8_t *key, char hex[65], char fp[17]) GW_MUST_CHECK;
/* The stored form back: 64 hex digits into key (GW_XSEAL_PUB_LEN bytes). Returns 0 or
 * GW_EINTERNAL (not such a text). */
int gw_api_bulk_key_parse(const char *hex, uint8_t *key) GW_MUST_CHECK;

/* Fails the call for a store error (UNAVAILABLE for an outage, else INTERNAL). */
void gw_api_read_failed_bulk(struct gw_call *call, int err);

/* The selector as text for destruction and audit records (no PII: a branch code, days, the
 * number of ids, the highest security level it takes) into buf. */
void gw_api_bulk_selector_text(const char *branch, const char *from, const char *to,
                               const char *ids, int level, char *buf, size_t cap);

#endif
