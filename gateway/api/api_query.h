/* api_query.h: what WaybillQuery's handlers share (api_query.c: Get and these helpers;
 * api_search.c: Search; api_reveal.c: Reveal): one rendering of a waybill, one scope decision,
 * one answer for an unreadable record, and the scraping throttle. Not for other modules. */
#ifndef GW_API_QUERY_H
#define GW_API_QUERY_H

#include <stdbool.h>
#include <stdint.h>

#include "waygate/v1/query.pb-c.h"

#include "call.h"
#include "record.h"
#include "store.h"
#include "view.h"
#include "waybill.h"

struct gw_app;

/* The quota and throttle identity of the caller: "account:<id>" for a person's token, else
 * "cert:<principal name>" (buf of GW_API_WHO_MAX bytes). Returns buf. */
#define GW_API_WHO_MAX 80
const char *gw_api_who(const struct gw_principal *p, char buf[GW_API_WHO_MAX]);

/* True when the caller may see the row at all (policy.h: origin, destination or custody branch,
 * security level). Every read path asks this, after the row authenticated. */
bool gw_api_in_scope(struct gw_call *call, const struct gw_store_row *row);

/* Whether the caller may reveal column col of a row in its scope, by where the row is (policy.h:
 * gw_policy_may_reveal_here: custody alone reveals the recipient's phone while delivering). */
bool gw_api_may_reveal_here(struct gw_call *call, const struct gw_store_row *row, enum gw_col col);

/* The same for a lawful read (policy.h: gw_policy_in_lawful_scope): the case chose the row; the
 * caller's role's security level still bounds it. Asked after the row authenticated. */
bool gw_api_in_lawful_scope(struct gw_call *call, const struct gw_store_row *row);

/* Renders the authenticated row (clear: its opened fields) as the caller's role may see it into
 * *view (everything in the call's arena). Returns 0 or a gw_err. */
int gw_api_render_view(struct gw_call *call, const struct gw_sealed_waybill *row,
                       const struct gw_str clear[GW_COL_COUNT],
                       Waygate__V1__WaybillView *view) GW_MUST_CHECK;

/* The same into arena a (a bulk export renders page by page into an arena of its own, so that
 * its memory does not grow with the export). */
int gw_api_render_view_in(struct gw_call *call, struct gw_arena *a,
                          const struct gw_sealed_waybill *row,
                          const struct gw_str clear[GW_COL_COUNT],
                          Waygate__V1__WaybillView *view) GW_MUST_CHECK;

/* The same with each column's mode given (a lawful read's clear fields, Art. 16). */
int gw_api_render_modes(struct gw_call *call, const struct gw_sealed_waybill *row,
                        const struct gw_str clear[GW_COL_COUNT],
                        const enum gw_view_mode modes[GW_COL_COUNT],
                        Waygate__V1__WaybillView *view) GW_MUST_CHECK;

/* Opens row into clear (call's arena) and checks it: 0, or GW_EDATALOSS / GW_EPRECOND after the
 * incident was logged and recorded (the caller answers), or another gw_err. number/number_len:
 * the normalised waybill number the row must hold (NULL: no check). */
int gw_api_open_row(struct gw_call *call, const struct gw_sealed_waybill *row, const char *number,
                    size_t number_len, struct gw_str clear[GW_COL_COUNT]);

/* The same into arena a. */
int gw_api_open_row_in(struct gw_call *call, struct gw_arena *a,
                       const struct gw_sealed_waybill *row, const char *number, size_t number_len,
                       struct gw_str clear[GW_COL_COUNT]);

/* Fails the call for an unreadable row (gw_api_open_row's GW_EDATALOSS / GW_EPRECOND). */
void gw_api_fail_unreadable(struct gw_call *call, int err);

/* The start every read handler shares: the caller must have a branch scope and this gateway its
 * store, keys and throttle; then the request is unpacked into *in and the handler's state (size
 * bytes, zeroed) allocated in the call's arena. Returns the state, or NULL after failing the
 * call. */
void *gw_api_read_start(struct gw_call *call, const ProtobufCMessageDescriptor *desc,
                        const uint8_t *req, size_t len, size_t size, ProtobufCMessage **in);

/* The first steps of an answer about one waybill asked for by number (Get, Reveal), in this
 * order: the store's outcome (err, row), the row opened and authenticated against number, then
 * the scope; a row outside the scope is answered exactly like a number that does not exist.
 * Returns true with clear filled, or false after failing the call. */
bool gw_api_row_visible(struct gw_call *call, int err, const struct gw_store_row *row,
                        const char *number, size_t number_len, struct gw_str clear[GW_COL_COUNT]);

/* Fails the call for a store error (database outage: UNAVAILABLE; else INTERNAL). */
void gw_api_read_failed(struct gw_call *call, int err);

/* Records an incident (incident.h) about the caller: its principal name, peer and branch, with
 * detail (counts and field names only, never PII) and record_id (GW_STORE_ID_LEN bytes, or NULL);
 * logs at error level when it could not be queued. A confidential call's (call.h) is neutral:
 * severity, kind and detail only (Art. 16). */
void gw_api_incident(struct gw_call *call, const char *severity, const char *kind,
                     const char *detail, const uint8_t *record_id);

/* The scraping throttle: counts key (a blind index) as looked up by the caller. Returns true
 * when allowed; otherwise the call has been failed RESOURCE_EXHAUSTED: over the caller's limit
 * (named), with a 'bulk_scraping' incident once per window per principal; or the throttle's
 * table full (its capacity named), with a 'throttle_full' incident once per window. */
bool gw_api_throttle(struct gw_call *call, const uint8_t key[GW_STORE_BIDX_LEN]);

/* The arrivals throttle: counts key (the blind index of a waybill's number) as scanned in
 * (RecordScan ARRIVED) by the caller, in a count of its own beside its lookups (the same table
 * and window, the role's arrivals_per_window as its limit). Returns true when allowed; otherwise
 * the call has been failed as gw_api_throttle fails it: RESOURCE_EXHAUSTED over the caller's
 * limit (field waybill_no, GW_RULE_ARRIVALS_THROTTLED), with an 'arrival_throttle' incident once
 * per window per principal; or the table full, as there. */
bool gw_api_throttle_arrival(struct gw_call *call, const uint8_t key[GW_STORE_BIDX_LEN]);

#endif
