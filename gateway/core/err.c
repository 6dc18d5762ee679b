/* err.c: the single mapping from enum gw_err to a gRPC status, the one wording of every rule,
 * and the grpc-message of a fault. Invariant: nothing else in the tree maps errors to statuses or
 * words a refusal; every string here is a constant and never carries caller data. */
#include "err.h"

#include <stdio.h>
#include <string.h>

/* One wording per rule. A '%' marks where a bounded rule's limit goes. */
static const char *const rule_text[GW_RULE_COUNT] = {
    [GW_RULE_NONE] = "",
    [GW_RULE_REQUIRED] = "is required",
    [GW_RULE_REQUIRED_KEY_FIELD] = "is required (key field)",
    [GW_RULE_REQUIRED_REAL_NAME] = "is required (real-name pickup)",
    [GW_RULE_REQUIRED_WITH_ID_NUMBER] = "is required when an ID number is given",
    [GW_RULE_REQUIRED_WITH_ID_TYPE] = "is required when an ID type is given",
    [GW_RULE_UTF8] = "is not valid UTF-8",
    [GW_RULE_NUL] = "must not contain a NUL character",
    [GW_RULE_CONTROL_CHAR] = "must not contain control characters",
    [GW_RULE_TOO_LONG] = "is too long (at most % bytes)",
    [GW_RULE_PROTOBUF] = "is not a valid protobuf message",
    [GW_RULE_WIRE_TYPE] = "has the wrong wire type for a string or message field",
    [GW_RULE_NESTING] = "nests messages deeper than % levels",
    [GW_RULE_UNPACK_TOO_LARGE] = "is too large to unpack",
    [GW_RULE_MESSAGE_TOO_LARGE] = "request message exceeds the maximum size of % bytes",
    [GW_RULE_COMPRESSED] = "compressed messages are not supported",
    [GW_RULE_SECOND_MESSAGE] = "more than one request message for a unary request",
    [GW_RULE_MALFORMED_PREFIX] = "malformed message prefix",
    [GW_RULE_TRUNCATED_MESSAGE] = "request ended inside a message",
    [GW_RULE_NO_MESSAGE] = "request carries no message",
    [GW_RULE_REQUEST_MEMORY] =
        "request memory in flight would exceed its budget of % bytes: retry later",
    [GW_RULE_REQUEST_MEMORY_CERT] =
        "this certificate's request memory in flight would exceed its budget of % bytes ([server] "
        "request_memory_per_certificate): retry later",
    [GW_RULE_GENDER_UNKNOWN] = "unknown gender value",
    [GW_RULE_ID_TYPE_UNKNOWN] = "unknown ID type",
    [GW_RULE_SECURITY_LEVEL_UNKNOWN] = "unknown security level",
    [GW_RULE_PICKUP_BEFORE_2000] = "is before 2000-01-01",
    [GW_RULE_PICKUP_FUTURE] = "is in the future (more than 5 minutes ahead of the gateway clock)",
    [GW_RULE_BRANCH_FORMAT] = "must be 1 to 32 ASCII letters, digits, '_' or '-'",
    [GW_RULE_REGION_CODE] =
        "must be a 6-digit administrative-division code with a valid province code",
    [GW_RULE_WEIGHT] = "must be between 1 and 1000000 grams",
    [GW_RULE_SERVICE_TYPE] = "must be 1 to 32 ASCII letters, digits, '_', '-' or '.'",
    [GW_RULE_PHONE_MOBILE] = "mobile number must be 11 digits starting with 13-19",
    [GW_RULE_PHONE_LANDLINE] = "landline must be 0, an area code and a 7- or 8-digit number",
    [GW_RULE_PHONE_KIND] = "must be a mainland mobile number or a landline with area code",
    [GW_RULE_PHONE_COUNTRY] = "only the mainland country code +86 is accepted",
    [GW_RULE_PHONE_CHARS] = "must be digits, optionally separated by single spaces or dashes",
    [GW_RULE_ID_RESIDENT_LENGTH] = "must be 18 characters (or a 15-digit legacy number)",
    [GW_RULE_ID_RESIDENT_FORMAT] = "must be 17 digits followed by a digit or X",
    [GW_RULE_ID_LEGACY_DIGITS] = "a 15-character number must be all digits",
    [GW_RULE_ID_REGION] = "region code is not a valid province-level code",
    [GW_RULE_ID_CHECK_DIGIT] = "check digit does not match (GB 11643 ISO 7064 MOD 11-2)",
    [GW_RULE_ID_BIRTH_DATE] = "birth date is not a real calendar date",
    [GW_RULE_ID_BIRTH_BEFORE_1900] = "birth date is before 1900",
    [GW_RULE_ID_BIRTH_FUTURE] = "birth date is in the future",
    [GW_RULE_ID_GENDER_DIGIT] = "gender digit does not match the stated gender",
    [GW_RULE_ID_PASSPORT] = "passport number must be 5 to 17 letters and digits",
    [GW_RULE_ID_HK_MACAO] = "permit number must be H or M followed by 8 or 10 digits",
    [GW_RULE_ID_TAIWAN] =
        "permit number must be 8 digits, or 8 digits followed by 2 letters or digits",
    [GW_RULE_ID_FOREIGN] =
        "card number must be 18 characters starting with 9 (or the 15-character form)",
    [GW_RULE_ID_FOREIGN_LEGACY] =
        "a 15-character card number must be 3 letters followed by 12 digits",
    [GW_RULE_ID_FREE_FORM] =
        "document number must be 4 to 32 printable characters without outer spaces",
    [GW_RULE_ID_NOT_NORMALISABLE] = "is not a valid number of its ID type",
    [GW_RULE_WAYBILLNO_CHARS] = "must be 10 to 20 ASCII letters and digits",
    [GW_RULE_WAYBILLNO_PREFIX] = "letter prefix must be at most 6 letters",
    [GW_RULE_WAYBILLNO_LETTER_AFTER_DIGIT] =
        "letters are allowed only as a prefix before the digits",
    [GW_RULE_WAYBILLNO_DIGITS] = "numeric part must be 1 to 18 digits",
    [GW_RULE_SEGMENT_FORMAT] = "segment must be written PREFIX:FROM-TO",
    [GW_RULE_SEGMENT_PREFIX] = "segment prefix must be 0 to 6 ASCII letters",
    [GW_RULE_SEGMENT_BOUNDS] = "segment bounds must be 1 to 18 digits",
    [GW_RULE_SEGMENT_ORDER] = "segment start must not exceed its end",
    [GW_RULE_OUTSIDE_SEGMENTS] = "is outside the branch's issued segments (Art. 18)",
    [GW_RULE_SEGMENTS_UNREADABLE] = "the segment register could not be read; retrying is safe",
    [GW_RULE_OWN_BRANCH] = "must be the submitting device's own branch",
    [GW_RULE_NUMBER_REUSED] =
        "already stored with different content (a waybill number is used once)",
    [GW_RULE_BATCH_EMPTY] = "at least one waybill is required",
    [GW_RULE_BATCH_TOO_MANY] = "at most % waybills per batch",
    [GW_RULE_PRINCIPAL_BRANCH] = "the client certificate must name its branch (subject L)",
    [GW_RULE_NOT_CONFIGURED] = "this service is not configured on this gateway",
    [GW_RULE_DB_UNAVAILABLE] = "database unavailable; retrying is safe",
    [GW_RULE_NOT_STORED] = "the waybill could not be stored",
    [GW_RULE_NOT_SEALED] = "the waybill could not be encrypted",
    [GW_RULE_KEK_RETIRED] =
        "the gateway's key version is retired; an operator must reload the gateway's keyring",
    [GW_RULE_KEYS_UNCHECKED] =
        "the gateway's keyring is not yet checked against the database; retrying is safe",
    [GW_RULE_NO_WRAP_LEASE] = "the gateway holds no lease of data-key wraps from the database "
                              "(Art. 36); retrying is safe",
    [GW_RULE_KEK_WRAP_LIMIT] =
        "the gateway's KEK version has reached its limit of data-key wraps (Art. 36, NIST SP "
        "800-38D); an operator must rotate the KEK and reload the gateway's keyring",
    [GW_RULE_NOT_READ] = "the waybill could not be read",
    [GW_RULE_NOT_RENDERED] = "the waybill could not be rendered",
    [GW_RULE_NOT_IN_SCOPE] = "no waybill with this number in the caller's scope",
    [GW_RULE_RECORD_TAMPERED] = "the stored record failed authentication; an incident was recorded",
    [GW_RULE_KEY_UNAVAILABLE] = "the record's key version is not available to this gateway",
    [GW_RULE_UNKNOWN_SERVICE] = "unknown service name",
    [GW_RULE_CERT_REQUIRED] = "a verified client certificate is required (Art. 31)",
    [GW_RULE_CERT_SUBJECT] = "the subject must name the principal (CN) and its role (OU)",
    [GW_RULE_CERT_SUBJECT_FORM] =
        "the subject must hold one CN, and at most one OU and one L, each of A-Z a-z 0-9 _ . - "
        "only (CN at most 63, OU and L at most 31 characters): this connection answers no call "
        "and is closed",
    [GW_RULE_TOKEN_NOT_ACCEPTED] = "bearer tokens are not accepted by this gateway",
    [GW_RULE_ROLE_DENIED] = "may not call this method (least privilege, Art. 34)",
    [GW_RULE_NOT_IMPLEMENTED] = "is not implemented",
    [GW_RULE_UNKNOWN_METHOD] = "unknown method",
    [GW_RULE_CERT_NOT_REGISTERED] = "is not a registered, enabled principal (Art. 31)",
    [GW_RULE_LOGIN_REFUSED] =
        "login refused: unknown account, wrong password, or account locked or disabled",
    [GW_RULE_TOKEN_FORMAT] = "must be \"Bearer \" followed by a token",
    [GW_RULE_TOKEN_INVALID] =
        "is not a valid token: unknown, expired, or its account is disabled (Art. 38)",
    [GW_RULE_TOKEN_BRANCH_CERT] =
        "a branch account is usable only over a certificate of its own branch (Art. 34)",
    [GW_RULE_TOKEN_ADMIN_CERT] = "an administrative account is usable only over a certificate "
                                 "registered for administration (Art. 31)",
    [GW_RULE_PASSWORD_MUST_CHANGE] =
        "the password has expired or is an initial one: call ChangePassword first (Art. 35)",
    [GW_RULE_PASSWORD_LENGTH] = "must be at least % characters long (Art. 35)",
    [GW_RULE_PASSWORD_CLASSES] = "must mix at least three of: lower-case letters, upper-case "
                                 "letters, digits, other characters (Art. 35)",
    [GW_RULE_PASSWORD_HAS_ACCOUNT] = "must not contain the account name (Art. 35)",
    [GW_RULE_PASSWORD_REUSED] =
        "must differ from the current and the last five passwords (Art. 35)",
    [GW_RULE_PASSWORD_WRONG] = "is not the account's current password",
    [GW_RULE_PASSWORD_LOCKED] = "is not checked while the account is locked after repeated wrong "
                                "passwords: retry later (Art. 35)",
    [GW_RULE_ACCOUNT_NAME] = "must be 3 to 64 characters of a-z, 0-9, '.', '_' or '-'",
    [GW_RULE_ACCOUNT_ROLE] = "is not a role an account may hold",
    [GW_RULE_ACCOUNT_BRANCH] = "is required for branch_clerk and customer_service accounts and "
                               "must be empty for the other roles",
    [GW_RULE_ACCOUNT_EXISTS] = "an account with this name already exists",
    [GW_RULE_ACCOUNT_UNKNOWN] = "no such account",
    [GW_RULE_SEPARATION_OF_DUTIES] =
        "the person already holds one of the administrator roles system_admin, security_admin, "
        "compliance_auditor (separation of duties, Art. 34); an incident was recorded",
    [GW_RULE_BUSY] = "too many requests of this kind in progress (at most %): retry later",
    [GW_RULE_QUEUE_FULL] = "the gateway's queue for the database is full, nothing was done; "
                           "retrying is safe",
    [GW_RULE_ROLE_CLI_ONLY] =
        "security_admin, system_admin, compliance_auditor and lawful_access are created only by "
        "waygatectl accounts create: no administrator alone makes who asks and who decides, or "
        "holds two administrator roles (separation of duties, Art. 16, 34, 37)",
    [GW_RULE_LAST_SECURITY_ADMIN] =
        "is the last enabled security_admin account, and one must stay enabled to administer "
        "accounts: create another security_admin (waygatectl accounts create) before disabling "
        "it (Art. 31, 34)",
    [GW_RULE_DB_SHARE] = "this certificate's share of the gateway's database queue is in use (% "
                         "requests queued or running, [database] queue_share): retry later",
    [GW_RULE_CERT_CONNECTIONS] =
        "this certificate already holds % other connections to the gateway ([server] "
        "max_connections_per_certificate): this connection answers no call and is closed; use "
        "one of the others",
    [GW_RULE_BUSY_CERT] = "too many password checks in progress over this certificate (at most "
                          "%): retry later",
    [GW_RULE_HASHING_UNAVAILABLE] = "password hashing unavailable; retrying is safe",
    [GW_RULE_SEARCH_ONE_KEY] =
        "exactly one of phone, id_number, waybill_no, pickup_day must be set",
    [GW_RULE_SEARCH_KEY_DENIED] = "the caller's role may not search by this key (the policy's "
                                  "[search.<role>] keys; least privilege, Art. 34)",
    [GW_RULE_PICKUP_DAY_FORMAT] = "must be a calendar date YYYY-MM-DD",
    [GW_RULE_BRANCH_OUT_OF_SCOPE] = "is outside the caller's scope",
    [GW_RULE_CONTINUATION] = "is not a continuation of this search",
    [GW_RULE_CONTINUATION_EXPIRED] = "was issued by a first page more than % seconds ago: "
                                     "start the search again (its bulk threshold is checked "
                                     "anew)",
    [GW_RULE_FIELD_UNKNOWN] = "is not a field path of a waybill",
    [GW_RULE_REVEAL_DENIED] = "the caller's role may not reveal this field of this waybill "
                              "(least privilege, Art. 34)",
    [GW_RULE_REVEAL_QUOTA] =
        "reveal quota used up (% in the current period); an incident was recorded",
    [GW_RULE_LOOKUPS_THROTTLED] = "too many distinct waybills or phone numbers looked up "
                                  "(at most % in the window); an incident was recorded",
    [GW_RULE_LOOKUP_TABLE_FULL] =
        "this gateway instance's lookup throttle is tracking as many principals or lookups as it "
        "can (% principals at most; not the caller's own limit): retry later",
    [GW_RULE_ARRIVALS_THROTTLED] =
        "too many distinct waybills scanned in as ARRIVED (at most % in the window); an incident "
        "was recorded",
    [GW_RULE_ACCESS_NOT_RECORDED] =
        "the access record could not be written, so nothing was released",
    [GW_RULE_ADMIN_CERT_NEEDS_TOKEN] = "a certificate registered for administration acts only "
                                       "through an account's token: call Admin/Login first "
                                       "(Art. 31)",
    [GW_RULE_BULK_OPERATION] = "must be EXPORT, COPY or DESTROY",
    [GW_RULE_BULK_LEGAL_BASIS] = "is required for a bulk operation: a law reference or a "
                                 "written-consent reference (Art. 15)",
    [GW_RULE_BULK_PURPOSE] = "is required for a bulk operation (Art. 37)",
    [GW_RULE_BULK_UUID] = "must be a UUID",
    [GW_RULE_BULK_SELF_APPROVAL] = "a bulk request is approved by a second person, never by "
                                   "its requester (Art. 37)",
    [GW_RULE_BULK_NOT_PENDING] = "the bulk request is not pending: it was already decided, or "
                                 "it expired undecided",
    [GW_RULE_BULK_NOT_APPROVED] = "the bulk request is not approved, or was already run; a bulk "
                                  "operation runs once, after a second person approved it "
                                  "(Art. 37)",
    [GW_RULE_BULK_EXPIRED] = "the approval of the bulk request has expired; request it again",
    [GW_RULE_BULK_UNDECIDED_EXPIRED] = "the bulk request was not decided in time ([compliance] "
                                       "approval_ttl_s) and has expired; request it again",
    [GW_RULE_BULK_NOT_REQUESTER] = "a bulk request is run by its requester only",
    [GW_RULE_BULK_RECIPIENT_KEY] = "must be the recipient's raw X25519 public key (32 bytes) for "
                                   "an export or copy",
    [GW_RULE_BULK_SELECTION_CHANGED] = "the records selected changed while the destruction ran; "
                                       "nothing was destroyed",
    [GW_RULE_BULK_SELECTION_GREW] = "selects more records than the approved record_count (the "
                                    "selection grew since the request was counted); nothing was "
                                    "released; request it again",
    [GW_RULE_BULK_RUN_OVER] = "the run stopped before releasing more records than it recorded; "
                              "request it again",
    [GW_RULE_BULK_RUN_CUT] = "the run stopped part way (the database unavailable, or the "
                             "gateway's queue for it full): it is recorded as stopped with the "
                             "records sent so far and cannot be run again; request it again",
    [GW_RULE_BULK_FIELDS] = "field selection is not implemented: an export holds the role's "
                            "whole view",
    [GW_RULE_BULK_TOO_MANY_IDS] = "lists too many record ids (at most %)",
    [GW_RULE_BULK_ACCOUNT] = "acts only through a person's account token: a bulk operation "
                             "names the person who requests, approves or runs it (Art. 37)",
    [GW_RULE_BULK_LAWFUL_HOLD] = "selects a record that an approved, unexpired lawful-access "
                                 "case holds (Art. 16); nothing was destroyed",
    [GW_RULE_BULK_KEY_NOT_APPROVED] = "is not the recipient key the bulk request was approved "
                                      "with; an export or copy is sealed only to the key its "
                                      "approver saw (Art. 37)",
    [GW_RULE_BULK_NO_APPROVED_KEY] = "the bulk request was stored without a recipient key, so "
                                     "none was approved; request the export or copy again with "
                                     "its recipient_public_key (Art. 37)",
    [GW_RULE_BULK_DESTROY_KEY] = "must be empty for a destruction: nothing is sealed",
    [GW_RULE_BULK_KEY_CHANGED] = "the bulk request's recipient key is not the one it was "
                                 "requested with: it was changed in the database (an incident "
                                 "is recorded); nothing was decided or released (Art. 37)",
    [GW_RULE_BULK_APPROVER_LEVEL] = "the bulk request takes records up to a security level above "
                                    "the one the approver's role may see ([levels]): it is "
                                    "approved by a second person cleared for that level, or "
                                    "rejected (Art. 37)",
    [GW_RULE_BULK_CONTENDED] = "a record it selects was locked by another transaction (a "
                               "maintenance batch, a retention sweep) and the destruction gave "
                               "way (deadlock or lock timeout); nothing was destroyed and the "
                               "request stays approved: retry",
    /* lawful access and the monthly report */
    [GW_RULE_LAWFUL_ACCOUNT] = "acts only through a person's account token (Art. 16)",
    [GW_RULE_LAWFUL_TOO_MANY] = "names too many waybills (at most %)",
    [GW_RULE_LAWFUL_NOT_GRANTED] =
        "is not named by an approved, unexpired lawful-access case of the caller, or is above "
        "the security level its role may see (Art. 16)",
    [GW_RULE_CASE_ID] = "must be a case id (UUID)",
    [GW_RULE_CASE_UNKNOWN] = "no such lawful-access case",
    [GW_RULE_CASE_DECIDED] = "the case was already decided",
    [GW_RULE_CASE_SELF] =
        "the requester may not decide their own case (a second person decides, Art. 16)",
    [GW_RULE_DECIDER_RELATED] =
        "the decider is not independent of the requester: one created the other's account (or "
        "another account of the same person did); an independent person decides (Art. 16, 37)",
    [GW_RULE_CASE_EXPIRED] = "the case was not decided in time and has expired",
    [GW_RULE_NOT_FUTURE] = "must be in the future",
    [GW_RULE_LAWFUL_TOO_LONG] = "must be at most % s from now (an approval's longest lifetime, "
                                "[compliance] lawful_max_s)",
    [GW_RULE_MONTH_FORMAT] = "must be a month YYYY-MM (UTC+08:00)",
    [GW_RULE_MONTH_NOT_BEGUN] = "must be a month that has begun (UTC+08:00)",
    [GW_RULE_DAY_RANGE] = "must not be before selector.from_day",
    [GW_RULE_NOT_RECORDED] =
        "the action and its audit record could not be written, so nothing was done",
    [GW_RULE_REPORT_TIMEOUT] = "counting the month took longer than the report's time limit (% ms, "
                               "[compliance] report_timeout_ms); no report was made",
    [GW_RULE_REPORT_NOT_COUNTED] = "the report's counts could not be read; no report was made",
    [GW_RULE_REPORT_UNRECORDED] =
        "no report was made, and the attempt could not be recorded either "
        "(every report attempt is recorded before it is answered); "
        "retry later",
    [GW_RULE_REPORT_POOL] = "a report needs [database] pool_size of at least % connections (its "
                            "count holds one for up to [compliance] report_timeout_ms); no report "
                            "was made",
    [GW_RULE_SEARCH_BULK] = "selects more than % records: a selection that large is a bulk "
                            "operation, requested and approved through Compliance.RequestBulk "
                            "(Art. 37)",
    [GW_RULE_SCAN_EVENT_UNKNOWN] = "is not a known scan event",
    [GW_RULE_SCAN_TIME_NEGATIVE] = "must not be negative (0 means the gateway's receive time)",
    [GW_RULE_SCAN_BEFORE_PICKUP] = "is before the waybill's pickup time",
    [GW_RULE_SCAN_AFTER_DELIVERED] = "nothing but RETURNED may follow DELIVERED",
    [GW_RULE_SCAN_PICKUP_NOT_FIRST] = "PICKED_UP must be the waybill's first event",
    [GW_RULE_SCAN_DELIVERED_BACKDATED] =
        "a DELIVERED event must not be dated before the waybill's latest event",
    [GW_RULE_SCAN_CONTENDED] =
        "the waybill's events changed concurrently too often: retry (the retry is idempotent)",
    [GW_RULE_SCAN_LIMIT] = "the branch recorded the most scan events one branch may record for "
                           "one waybill (32): nothing was recorded",
    [GW_RULE_AUDIT_RANGE] = "must make a range: 0 <= from_time < to_time, in seconds since the "
                            "epoch (to_time 0: now)",
};

const char *gw_rule_str(enum gw_rule rule)
{
    if ((unsigned)rule >= GW_RULE_COUNT || rule_text[rule] == NULL)
        return "";
    return rule_text[rule];
}

int gw_rule_bounded(enum gw_rule rule)
{
    return strchr(gw_rule_str(rule), '%') != NULL;
}

int gw_fault_set(struct gw_fault *f, int code, const char *path, const char *field,
                 enum gw_rule rule)
{
    if (f == NULL)
        return code;
    if (code == GW_EQUEUEFULL) { /* one answer, whoever saw the queue full */
        path = field = NULL;
        rule = GW_RULE_QUEUE_FULL;
    }
    if (path == NULL)
        path = "";
    if (field == NULL)
        field = "";
    /* path "." field, cut like snprintf; no printf: every call clears its faults a few times */
    size_t n = 0, cap = sizeof(f->field) - 1;
    for (const char *s = path; *s && n < cap; s++)
        f->field[n++] = *s;
    if (path[0] && field[0] && n < cap)
        f->field[n++] = '.';
    for (const char *s = field; *s && n < cap; s++)
        f->field[n++] = *s;
    f->field[n] = '\0';
    f->code = code;
    f->rule = rule;
    f->limit = 0;
    return code;
}

void gw_fault_clear(struct gw_fault *f)
{
    (void)gw_fault_set(f, 0, NULL, NULL, GW_RULE_NONE);
}

static size_t format_queue_full(char *out, size_t outsz)
{
    int n = snprintf(out, outsz, "%s", rule_text[GW_RULE_QUEUE_FULL]);

    return n < 0 ? 0 : (size_t)n < outsz ? (size_t)n : outsz - 1;
}

size_t gw_fault_format(const struct gw_fault *f, char *out, size_t outsz)
{
    const char *text = gw_rule_str(f->rule);
    const char *mark;
    int n;

    if (outsz == 0)
        return 0;
    if (f->code == GW_EQUEUEFULL) /* also for a fault filled without gw_fault_set */
        return format_queue_full(out, outsz);
    if (text[0] == '\0')
        text = gw_err_str(f->code);
    mark = strchr(text, '%');
    if (mark == NULL)
        n = snprintf(out, outsz, "%s%s%s", f->field, f->field[0] ? ": " : "", text);
    else
        n = snprintf(out, outsz, "%s%s%.*s%lu%s", f->field, f->field[0] ? ": " : "",
                     (int)(mark - text), text, f->limit, mark + 1);
    if (n < 0) {
        out[0] = '\0';
        return 0;
    }
    return (size_t)n < outsz ? (size_t)n : outsz - 1;
}

enum gw_grpc_status gw_fault_status(const struct gw_fault *f)
{
    return gw_err_grpc_status(f->code);
}

enum gw_grpc_status gw_err_grpc_status(int err)
{
    switch (err) {
    case GW_OK:
        return GW_GRPC_OK;
    case GW_ENOMEM:
    case GW_ETOOBIG:
        return GW_GRPC_RESOURCE_EXHAUSTED;
    case GW_EINVAL:
        return GW_GRPC_INVALID_ARGUMENT;
    case GW_EUNAVAIL:
    case GW_EQUEUEFULL:
        return GW_GRPC_UNAVAILABLE;
    case GW_ETIMEOUT:
        return GW_GRPC_DEADLINE_EXCEEDED;
    case GW_ECANCELLED:
        return GW_GRPC_CANCELLED;
    case GW_ENOTFOUND:
        return GW_GRPC_NOT_FOUND;
    case GW_EEXIST:
        return GW_GRPC_ALREADY_EXISTS;
    case GW_EPRECOND:
        return GW_GRPC_FAILED_PRECONDITION;
    case GW_EPERM:
        return GW_GRPC_PERMISSION_DENIED;
    case GW_EAUTH:
        return GW_GRPC_UNAUTHENTICATED;
    case GW_EDATALOSS:
        return GW_GRPC_DATA_LOSS;
    case GW_EUNIMPL:
        return GW_GRPC_UNIMPLEMENTED;
    case GW_ECRYPTO:
    case GW_EIO:
    case GW_EPROTO:
    case GW_EINTERNAL:
    default:
        return GW_GRPC_INTERNAL;
    }
}

const char *gw_err_str(int err)
{
    switch (err) {
    case GW_OK:
        return "ok";
    case GW_ENOMEM:
        return "out of memory";
    case GW_EINVAL:
        return "invalid argument";
    case GW_ETOOBIG:
        return "too large";
    case GW_EUNAVAIL:
        return "unavailable";
    case GW_ETIMEOUT:
        return "deadline exceeded";
    case GW_ECANCELLED:
        return "cancelled";
    case GW_ENOTFOUND:
        return "not found";
    case GW_EEXIST:
        return "already exists";
    case GW_EPRECOND:
        return "failed precondition";
    case GW_EPERM:
        return "permission denied";
    case GW_EAUTH:
        return "unauthenticated";
    case GW_EDATALOSS:
        return "data loss";
    case GW_ECRYPTO:
        return "cryptographic failure";
    case GW_EIO:
        return "i/o error";
    case GW_EPROTO:
        return "protocol error";
    case GW_EUNIMPL:
        return "unimplemented";
    case GW_EINTERNAL:
        return "internal error";
    case GW_EQUEUEFULL:
        return "queue full";
    default:
        return "unknown error";
    }
}

const char *gw_grpc_status_name(enum gw_grpc_status s)
{
    static const char *const names[GW_GRPC_NSTATUS] = {"OK",
                                                       "CANCELLED",
                                                       "UNKNOWN",
                                                       "INVALID_ARGUMENT",
                                                       "DEADLINE_EXCEEDED",
                                                       "NOT_FOUND",
                                                       "ALREADY_EXISTS",
                                                       "PERMISSION_DENIED",
                                                       "RESOURCE_EXHAUSTED",
                                                       "FAILED_PRECONDITION",
                                                       "ABORTED",
                                                       "OUT_OF_RANGE",
                                                       "UNIMPLEMENTED",
                                                       "INTERNAL",
                                                       "UNAVAILABLE",
                                                       "DATA_LOSS",
                                                       "UNAUTHENTICATED"};

    return (unsigned)s < GW_GRPC_NSTATUS ? names[s] : "UNKNOWN";
}
