/* err.h: the project's error codes and the single mapping from them to a gRPC status.
 * Fallible functions return 0 or a negative enum gw_err; nothing else maps errors to statuses. */
#ifndef GW_ERR_H
#define GW_ERR_H

#define GW_MUST_CHECK __attribute__((warn_unused_result))

enum gw_err {
    GW_OK = 0,
    GW_ENOMEM = -1,     /* allocation failed                        -> RESOURCE_EXHAUSTED */
    GW_EINVAL = -2,     /* caller's input breaks a rule              -> INVALID_ARGUMENT */
    GW_ETOOBIG = -3,    /* input over a configured cap               -> RESOURCE_EXHAUSTED */
    GW_EUNAVAIL = -4,   /* database down, draining, pool full        -> UNAVAILABLE */
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
};

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

/* The gRPC status for an error code (0 -> OK; unknown codes -> INTERNAL). */
enum gw_grpc_status gw_err_grpc_status(int err);

/* A short constant description of an error code; never contains caller data. */
const char *gw_err_str(int err);

#endif
