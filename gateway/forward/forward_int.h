/* forward_int.h: what the forwarder's files share (not for other modules). */
#ifndef GW_FORWARD_INT_H
#define GW_FORWARD_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "outbox.h"

struct gw_app;
struct gw_policy;
struct Waygate__V1__DeliverResponse;
struct Waygate__V1__DeliveryResult;

/* The role whose view a delivery carries (the policy's [view.backend] and [levels] backend). */
#define GW_FWD_ROLE "backend"

/* Opens the item's sealed waybill, renders the backend role's view of it (api_render.h) with
 * its current status, and packs the Delivery message into *out (malloc'd, *outlen bytes). A
 * record above the backend's security level is delivered without its waybill. The clear values
 * live in an arena of their own, wiped before this returns. Returns 0; GW_EDATALOSS (the record
 * failed authentication: it can never be delivered), GW_EPRECOND (its key is unavailable now),
 * GW_ENOMEM or another gw_err. */
int gw_fwd_pack(struct gw_app *app, const struct gw_policy *pol, const struct gw_outbox_item *it,
                uint8_t **out, size_t *outlen) GW_MUST_CHECK;

/* Appends DeliverRequest's field 1 (deliveries, length-delimited) holding the packed Delivery pb
 * to out, which has room for len + GW_FWD_FIELD_HEAD bytes; returns the bytes written. The
 * concatenation of such fields is exactly the packed DeliverRequest: each delivery is packed
 * (and its clear values wiped) when claimed, and a batch or a single call is assembled from them.
 */
#define GW_FWD_FIELD_HEAD 11 /* the tag and a 64-bit length's varint */
size_t gw_fwd_put_delivery(uint8_t *out, const uint8_t *pb, size_t len);

/* The delay before attempt attempts + 1: min_ms doubled per attempt already made, capped at
 * max_ms, then a uniform jitter over its upper half (r: a random 32-bit number). */
uint32_t gw_fwd_backoff(uint32_t min_ms, uint32_t max_ms, int32_t attempts, uint32_t r);

/* The deadline a batch's next call may have (ms, at most deadline_ms) so that it ends a second
 * before the batch's lease (lease_end_ms, monotonic; now_ms the time): a call must not outlive the
 * lease, or its deliveries could be claimed and sent by another gateway meanwhile and its
 * settlement meet their new lease. Returns 0 or less when no call of at least
 * GW_FWD_CALL_MIN_MS fits: the rest of the batch then goes back for later. */
int64_t gw_fwd_call_room_ms(int64_t lease_end_ms, int64_t now_ms, uint32_t deadline_ms);

/* Copies the backend's reason into out (outlen bytes, NUL-terminated): printable ASCII only
 * (anything else becomes '?'), cut to fit. Returns out. */
char *gw_fwd_reason(char *out, size_t outlen, const char *prefix, const char *reason);

/* gw_fwd_reason for text the backend wrote (a REJECTED result's reason, a whole-call
 * INVALID_ARGUMENT's message), which is kept in the outbox, an incident and the log: the
 * backend's contract is "the field and the rule, never a value", but a backend that echoes a
 * waybill number, a pickup time or any value it was sent would put it there in clear. So every
 * run of digits becomes one '#' (a phone, an ID number, a time, a waybill number's digits, also
 * when split by spaces or dashes; a field's index too: "deliveries[#]"), before the text is cut
 * to fit; what is not ASCII is already '?'. Letters stay: a name written in Latin letters would
 * not be caught. */
char *gw_fwd_backend_reason(char *out, size_t outlen, const char *prefix, const char *text);

/* Whether an OK DeliverResponse, resp[0..len), of a call that sent m deliveries may be unpacked,
 * judged on its wire bytes (wirecheck.h) before protobuf-c allocates anything: at most m
 * results (counted first, stopping past m: a response at the size cap holds ~545 000 empty
 * ones), every string UTF-8 without a NUL (protobuf-c hands strings over NUL-terminated: an id
 * with a NUL would match the id before it, a delivery never acknowledged), and no more to
 * unpack than GW_FWD_RESULT_UNPACKED bytes a result above the bytes received (an answer
 * padded with unknown fields, each a record of protobuf-c's: 2 bytes of wire took 32 of
 * memory, and the loop's time). Returns NULL, or what is malformed. */
#define GW_FWD_RESULT_UNPACKED 256u
#define GW_FWD_MALFORMED "malformed DeliverResponse"
#define GW_FWD_MORE_RESULTS GW_FWD_MALFORMED ": more results than deliveries"
const char *gw_fwd_response_check(const uint8_t *resp, size_t len, size_t m);

/* Matches an OK DeliverResponse's results to the n deliveries of the call, ids[i] the
 * delivery_id of the i-th (distinct): res[i] is ids[i]'s result, or NULL when it has none (the
 * delivery goes later); a result naming no delivery of the call, or one already matched, is
 * ignored. Through a sorted index: O((n + results) log n). Returns 0; GW_EPROTO when the response
 * holds more results than n (malformed: every res[i] is NULL, every delivery of the call goes
 * later), GW_ENOMEM (the same). */
int gw_fwd_match_results(const struct Waygate__V1__DeliverResponse *r, const char *const *ids,
                         size_t n, const struct Waygate__V1__DeliveryResult **res) GW_MUST_CHECK;

/* The breaker for a backend that refuses everything (a schema or version skew after the carrier
 * deployed): a permanent refusal parks one delivery with an incident, which is right for one bad
 * delivery but parks every delivery at the intake rate, an incident each, when the backend refuses
 * them all. So after `after` ([forward] breaker_after; 0: never) permanent refusals in a row, with
 * no acceptance between them, the breaker opens: that refusal and every later one put their
 * delivery back for later instead of parking it, and the forwarder is paced as for a failing
 * backend (its calls are the probes). An answer that accepted any delivery closes it and starts
 * the count again; the refusals of that answer park as before (a class of records refused while
 * others pass is not "everything"). */
struct gw_fwd_breaker {
    uint32_t after;    /* refusals in a row that open it; 0: off */
    uint32_t refusals; /* permanent refusals since the last acceptance (saturating) */
    bool open;
};

/* An answer accepted a delivery: the count starts again. Returns true when this closed the
 * breaker (it was open). */
bool gw_fwd_breaker_accepted(struct gw_fwd_breaker *br);

/* One permanent refusal, of an answer that accepted none: counted. Returns true when its delivery
 * is parked (the breaker closed, and this is not the after-th refusal in a row), false when it
 * goes back for later (the breaker open, or opened by this one). */
bool gw_fwd_breaker_refused(struct gw_fwd_breaker *br);

#endif
