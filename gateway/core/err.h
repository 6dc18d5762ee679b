/* err.h: the project's error codes, the rules a refusal names, and the single mapping from them
 * to a gRPC status and message. Fallible functions return 0 or a negative enum gw_err; validation
 * and handlers describe a refusal as a struct gw_fault (code, field path, rule) and nothing but
 * err.c chooses the status or writes the words. */
#ifndef GW_ERR_H
#define GW_ERR_H

#include <stddef.h>

#define GW_MUST_CHECK __attribute__((warn_unused_result))

enum gw_err {
    GW_OK = 0,
    GW_ENOMEM = -1,     /* allocation failed                        -> RESOURCE_EXHAUSTED */
    GW_EINVAL = -2,     /* caller's input breaks a rule              -> INVALID_ARGUMENT */
    GW_ETOOBIG = -3,    /* input over a configured cap               -> RESOURCE_EXHAUSTED */
    GW_EUNAVAIL = -4,   /* database down, draining                   -> UNAVAILABLE */
    GW_ETIMEOUT = -5,   /* deadline passed                           -> DEADLINE_EXCEEDED */
    GW_ECANCELLED = -6, /* caller went away                          -> CANCELLED */
    GW_ENOTFOUND = -7,  /* no such object (in the caller's scope)    -> NOT_FOUND */
    GW_EEXIST = -8,     /* object exists with other content          -> ALREADY_EXISTS */
    GW_EPRECOND = -9,   /* system state forbids it (segments, ...)   -> FAILED_PRECONDITION */
    GW_EPERM = -10,     /* principal may not do this                 -> PERMISSION_DENIED */
    GW_EAUTH = -11,     /* no or bad credentials                     -> UNAUTHENTICATED */
    GW_EDATALOSS = -12, /* stored ciphertext failed to authenticate  -> DATA_LOSS */
    GW_ECRYPTO = -13,   /* crypto library failure                    -> INTERNAL */
    GW_EIO = -14,       /* file or socket I/O failed                 -> INTERNAL */
    GW_EPROTO = -15,    /* peer broke the wire protocol              -> INTERNAL */
    GW_EUNIMPL = -16,   /* method or feature not implemented         -> UNIMPLEMENTED */
    GW_EINTERNAL = -17, /* invariant broken, database error, ...     -> INTERNAL */
    /* A bounded queue on the way to the database (the pool's, the audit writer's, the store's
     * own) is full: nothing was sent or done, and a retry is safe. Not GW_ETOOBIG, which says
     * the caller's input is over a cap (a retry of the same input fails the same way): clients
     * retry UNAVAILABLE, not RESOURCE_EXHAUSTED. Every fault with this code is worded
     * GW_RULE_QUEUE_FULL (gw_fault_set, gw_fault_format), whatever rule its maker named. */
    GW_EQUEUEFULL = -18, /* a queue to the database is full          -> UNAVAILABLE */
};

/* The code a handler reports for a store or audit error err that it otherwise reports as code
 * (an outage, a record not written, ...): a full queue stays GW_EQUEUEFULL, so that it is
 * answered the one way err.c words it, wherever it comes from. */
static inline int gw_err_queue_full_or(int err, int code)
{
    return err == GW_EQUEUEFULL ? GW_EQUEUEFULL : code;
}

/* gRPC status codes, as numbered by the gRPC specification. */
enum gw_grpc_status {
    GW_GRPC_OK = 0,
    GW_GRPC_CANCELLED = 1,
    GW_GRPC_UNKNOWN = 2,
    GW_GRPC_INVALID_ARGUMENT = 3,
    GW_GRPC_DEADLINE_EXCEEDED = 4,
    GW_GRPC_NOT_FOUND = 5,
    GW_GRPC_ALREADY_EXISTS = 6,
    GW_GRPC_PERMISSION_DENIED = 7,
    GW_GRPC_RESOURCE_EXHAUSTED = 8,
    GW_GRPC_FAILED_PRECONDITION = 9,
    GW_GRPC_ABORTED = 10,
    GW_GRPC_OUT_OF_RANGE = 11,
    GW_GRPC_UNIMPLEMENTED = 12,
    GW_GRPC_INTERNAL = 13,
    GW_GRPC_UNAVAILABLE = 14,
    GW_GRPC_DATA_LOSS = 15,
    GW_GRPC_UNAUTHENTICATED = 16,
};
#define GW_GRPC_NSTATUS (GW_GRPC_UNAUTHENTICATED + 1)

/* The status's canonical name ("UNAVAILABLE"), for metrics and bookkeeping; "UNKNOWN" when out of
 * range. */
const char *gw_grpc_status_name(enum gw_grpc_status s);

/* The rules a refusal can name. Each rule has exactly one wording (err.c), a constant that never
 * contains caller data. A wording marked "(bound)" names a limit: the fault's limit is written
 * in its place. Validation and handlers report a rule; only err.c turns it into words. */
enum gw_rule {
    GW_RULE_NONE = 0, /* no rule: the message is the error code's description (gw_err_str) */
    /* any field */
    GW_RULE_REQUIRED,           /* is required */
    GW_RULE_REQUIRED_KEY_FIELD, /* is required (key field) */
    GW_RULE_REQUIRED_REAL_NAME, /* is required (real-name pickup) */
    GW_RULE_REQUIRED_WITH_ID_NUMBER,
    GW_RULE_REQUIRED_WITH_ID_TYPE,
    GW_RULE_UTF8,         /* is not valid UTF-8 */
    GW_RULE_NUL,          /* must not contain a NUL character */
    GW_RULE_CONTROL_CHAR, /* must not contain control characters */
    GW_RULE_TOO_LONG,     /* is too long (at most N bytes) (bound) */
    /* the request message */
    GW_RULE_PROTOBUF,          /* is not a valid protobuf message */
    GW_RULE_WIRE_TYPE,         /* wrong wire type for a string or message field */
    GW_RULE_NESTING,           /* nests messages too deeply (bound) */
    GW_RULE_UNPACK_TOO_LARGE,  /* is too large to unpack */
    GW_RULE_MESSAGE_TOO_LARGE, /* request message over max_message_size (bound) */
    GW_RULE_COMPRESSED,
    GW_RULE_SECOND_MESSAGE,
    GW_RULE_MALFORMED_PREFIX,
    GW_RULE_TRUNCATED_MESSAGE,
    GW_RULE_NO_MESSAGE,
    GW_RULE_REQUEST_MEMORY,      /* request memory in flight over a budget (bound) */
    GW_RULE_REQUEST_MEMORY_CERT, /* ... over the client certificate's (bound) */
    /* enumerations and simple formats of a waybill */
    GW_RULE_GENDER_UNKNOWN,
    GW_RULE_ID_TYPE_UNKNOWN,
    GW_RULE_SECURITY_LEVEL_UNKNOWN,
    GW_RULE_PICKUP_BEFORE_2000,
    GW_RULE_PICKUP_FUTURE,
    GW_RULE_BRANCH_FORMAT,
    GW_RULE_REGION_CODE,
    GW_RULE_WEIGHT,
    GW_RULE_SERVICE_TYPE,
    /* phone numbers (phone.h) */
    GW_RULE_PHONE_MOBILE,
    GW_RULE_PHONE_LANDLINE,
    GW_RULE_PHONE_KIND,
    GW_RULE_PHONE_COUNTRY,
    GW_RULE_PHONE_CHARS,
    /* identity documents (idcard.h) */
    GW_RULE_ID_RESIDENT_LENGTH,
    GW_RULE_ID_RESIDENT_FORMAT,
    GW_RULE_ID_LEGACY_DIGITS,
    GW_RULE_ID_REGION,
    GW_RULE_ID_CHECK_DIGIT,
    GW_RULE_ID_BIRTH_DATE,
    GW_RULE_ID_BIRTH_BEFORE_1900,
    GW_RULE_ID_BIRTH_FUTURE,
    GW_RULE_ID_GENDER_DIGIT,
    GW_RULE_ID_PASSPORT,
    GW_RULE_ID_HK_MACAO,
    GW_RULE_ID_TAIWAN,
    GW_RULE_ID_FOREIGN,
    GW_RULE_ID_FOREIGN_LEGACY,
    GW_RULE_ID_FREE_FORM,
    GW_RULE_ID_NOT_NORMALISABLE,
    /* waybill numbers and segments (waybillno.h) */
    GW_RULE_WAYBILLNO_CHARS,
    GW_RULE_WAYBILLNO_PREFIX,
    GW_RULE_WAYBILLNO_LETTER_AFTER_DIGIT,
    GW_RULE_WAYBILLNO_DIGITS,
    GW_RULE_SEGMENT_FORMAT,
    GW_RULE_SEGMENT_PREFIX,
    GW_RULE_SEGMENT_BOUNDS,
    GW_RULE_SEGMENT_ORDER,
    /* intake and query */
    GW_RULE_OUTSIDE_SEGMENTS,
    GW_RULE_SEGMENTS_UNREADABLE,
    GW_RULE_OWN_BRANCH,
    GW_RULE_NUMBER_REUSED,
    GW_RULE_BATCH_EMPTY,
    GW_RULE_BATCH_TOO_MANY, /* (bound) */
    GW_RULE_PRINCIPAL_BRANCH,
    GW_RULE_NOT_CONFIGURED,
    GW_RULE_DB_UNAVAILABLE,
    GW_RULE_NOT_STORED,
    GW_RULE_NOT_SEALED,
    GW_RULE_KEK_RETIRED,
    GW_RULE_KEYS_UNCHECKED,
    GW_RULE_NO_WRAP_LEASE,
    GW_RULE_KEK_WRAP_LIMIT,
    GW_RULE_NOT_READ,
    GW_RULE_NOT_RENDERED,
    GW_RULE_NOT_IN_SCOPE,
    GW_RULE_RECORD_TAMPERED,
    GW_RULE_KEY_UNAVAILABLE,
    GW_RULE_UNKNOWN_SERVICE,
    /* identity and policy */
    GW_RULE_CERT_REQUIRED,
    GW_RULE_CERT_SUBJECT,
    GW_RULE_CERT_SUBJECT_FORM,
    GW_RULE_TOKEN_NOT_ACCEPTED,
    GW_RULE_ROLE_DENIED,
    GW_RULE_NOT_IMPLEMENTED,
    GW_RULE_UNKNOWN_METHOD,
    /* principals, accounts, passwords and tokens (Art. 31, 34, 35, 38) */
    GW_RULE_CERT_NOT_REGISTERED,
    GW_RULE_LOGIN_REFUSED,
    GW_RULE_TOKEN_FORMAT,
    GW_RULE_TOKEN_INVALID,
    GW_RULE_TOKEN_BRANCH_CERT,
    GW_RULE_TOKEN_ADMIN_CERT,
    GW_RULE_PASSWORD_MUST_CHANGE,
    GW_RULE_PASSWORD_LENGTH, /* (bound) */
    GW_RULE_PASSWORD_CLASSES,
    GW_RULE_PASSWORD_HAS_ACCOUNT,
    GW_RULE_PASSWORD_REUSED,
    GW_RULE_PASSWORD_WRONG,
    GW_RULE_PASSWORD_LOCKED,
    GW_RULE_ACCOUNT_NAME,
    GW_RULE_ACCOUNT_ROLE,
    GW_RULE_ACCOUNT_BRANCH,
    GW_RULE_ACCOUNT_EXISTS,
    GW_RULE_ACCOUNT_UNKNOWN,
    GW_RULE_SEPARATION_OF_DUTIES,
    GW_RULE_BUSY,      /* (bound) */
    GW_RULE_BUSY_CERT, /* (bound) */
    GW_RULE_ROLE_CLI_ONLY,
    GW_RULE_LAST_SECURITY_ADMIN,
    GW_RULE_QUEUE_FULL,
    GW_RULE_DB_SHARE,         /* (bound) */
    GW_RULE_CERT_CONNECTIONS, /* (bound) */
    GW_RULE_HASHING_UNAVAILABLE,
    /* scope, views, search, reveal, throttling (Art. 34, 37) */
    GW_RULE_SEARCH_ONE_KEY,
    GW_RULE_SEARCH_KEY_DENIED,
    GW_RULE_PICKUP_DAY_FORMAT,
    GW_RULE_BRANCH_OUT_OF_SCOPE,
    GW_RULE_CONTINUATION,
    GW_RULE_CONTINUATION_EXPIRED, /* (bound) */
    GW_RULE_FIELD_UNKNOWN,
    GW_RULE_REVEAL_DENIED,
    GW_RULE_REVEAL_QUOTA,       /* (bound) */
    GW_RULE_LOOKUPS_THROTTLED,  /* (bound) */
    GW_RULE_LOOKUP_TABLE_FULL,  /* (bound) */
    GW_RULE_ARRIVALS_THROTTLED, /* (bound) */
    GW_RULE_ACCESS_NOT_RECORDED,
    GW_RULE_ADMIN_CERT_NEEDS_TOKEN,
    /* bulk operations, destruction (Art. 15, 26, 37) */
    GW_RULE_BULK_OPERATION,
    GW_RULE_BULK_LEGAL_BASIS,
    GW_RULE_BULK_PURPOSE,
    GW_RULE_BULK_UUID,
    GW_RULE_BULK_SELF_APPROVAL,
    GW_RULE_BULK_NOT_PENDING,
    GW_RULE_BULK_NOT_APPROVED,
    GW_RULE_BULK_EXPIRED,
    GW_RULE_BULK_UNDECIDED_EXPIRED,
    GW_RULE_BULK_NOT_REQUESTER,
    GW_RULE_BULK_RECIPIENT_KEY,
    GW_RULE_BULK_SELECTION_CHANGED,
    GW_RULE_BULK_SELECTION_GREW,
    GW_RULE_BULK_RUN_OVER,
    GW_RULE_BULK_RUN_CUT,
    GW_RULE_BULK_FIELDS,
    GW_RULE_BULK_TOO_MANY_IDS, /* (bound) */
    GW_RULE_BULK_ACCOUNT,
    GW_RULE_BULK_LAWFUL_HOLD,
    GW_RULE_BULK_KEY_NOT_APPROVED,
    GW_RULE_BULK_NO_APPROVED_KEY,
    GW_RULE_BULK_DESTROY_KEY,
    GW_RULE_BULK_KEY_CHANGED,
    GW_RULE_BULK_APPROVER_LEVEL,
    GW_RULE_BULK_CONTENDED,
    /* lawful access and the monthly report (Art. 16, 17) */
    GW_RULE_LAWFUL_ACCOUNT,
    GW_RULE_LAWFUL_TOO_MANY, /* (bound) */
    GW_RULE_LAWFUL_NOT_GRANTED,
    GW_RULE_CASE_ID,
    GW_RULE_CASE_UNKNOWN,
    GW_RULE_CASE_DECIDED,
    GW_RULE_CASE_SELF,
    GW_RULE_DECIDER_RELATED,
    GW_RULE_CASE_EXPIRED,
    GW_RULE_NOT_FUTURE,
    GW_RULE_LAWFUL_TOO_LONG, /* (bound) */
    GW_RULE_MONTH_FORMAT,
    GW_RULE_MONTH_NOT_BEGUN,
    GW_RULE_DAY_RANGE,
    GW_RULE_NOT_RECORDED,
    GW_RULE_SEARCH_BULK,    /* (bound) */
    GW_RULE_REPORT_TIMEOUT, /* (bound) */
    GW_RULE_REPORT_NOT_COUNTED,
    GW_RULE_REPORT_UNRECORDED,
    GW_RULE_REPORT_POOL, /* (bound) */
    /* scan events (domain/scan.h, api_scan.c) */
    GW_RULE_SCAN_EVENT_UNKNOWN,
    GW_RULE_SCAN_TIME_NEGATIVE,
    GW_RULE_SCAN_BEFORE_PICKUP,
    GW_RULE_SCAN_AFTER_DELIVERED,
    GW_RULE_SCAN_PICKUP_NOT_FIRST,
    GW_RULE_SCAN_DELIVERED_BACKDATED,
    GW_RULE_SCAN_CONTENDED,
    GW_RULE_SCAN_LIMIT,
    /* audit bundles (Art. 33) */
    GW_RULE_AUDIT_RANGE,
    GW_RULE_COUNT
};

/* Longest field path kept in a fault (longer paths are cut, never overflow). */
#define GW_FAULT_FIELD_MAX 96

/* One refusal: what went wrong (the error code, which decides the gRPC status), where (the field
 * path: "waybill.sender.phone", "waybills[3].recipient.id_number"; "" for the request as a
 * whole) and which rule. Never holds a value from the request. */
struct gw_fault {
    int code; /* a negative enum gw_err; 0 when there is no fault */
    char field[GW_FAULT_FIELD_MAX];
    enum gw_rule rule;
    unsigned long limit; /* the bound a "(bound)" rule names; 0 otherwise */
};

/* Fills *f (f may be NULL) with code and rule at the path "<path>.<field>" (either part may be
 * NULL or empty; then no dot) and limit 0. Returns code, so a check can end with
 * `return gw_fault_set(...)`. A GW_EQUEUEFULL fault is the request's as a whole (no field) and
 * names GW_RULE_QUEUE_FULL, whatever field and rule were given. */
int gw_fault_set(struct gw_fault *f, int code, const char *path, const char *field,
                 enum gw_rule rule);

/* Empties *f (code 0, no field, no rule). f may be NULL. */
void gw_fault_clear(struct gw_fault *f);

/* The one wording of a rule (never NULL; "" only for GW_RULE_NONE and unknown rules). A "(bound)"
 * rule's wording holds one '%' where the limit goes. */
const char *gw_rule_str(enum gw_rule rule);

/* True when the rule's wording names a bound (the fault's limit). */
int gw_rule_bounded(enum gw_rule rule);

/* Writes the fault's grpc-message into out (outsz bytes, NUL-terminated, cut to fit):
 * "<field>: <rule wording>", or the wording alone when field is empty; a fault without a rule
 * uses the error code's description; a GW_EQUEUEFULL fault, however it was filled, is
 * GW_RULE_QUEUE_FULL's wording alone. Returns the length written. Never contains a value. */
size_t gw_fault_format(const struct gw_fault *f, char *out, size_t outsz);

/* The gRPC status of a fault: gw_err_grpc_status(f->code). */
enum gw_grpc_status gw_fault_status(const struct gw_fault *f);

/* The gRPC status for an error code (0 -> OK; unknown codes -> INTERNAL). */
enum gw_grpc_status gw_err_grpc_status(int err);

/* A short constant description of an error code; never contains caller data. */
const char *gw_err_str(int err);

#endif
