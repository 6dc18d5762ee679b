/* err.c: the single mapping from enum gw_err to a gRPC status, and constant descriptions.
 * Invariant: nothing else in the tree maps errors to statuses; strings never carry caller data. */
#include "err.h"

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
    default:
        return "unknown error";
    }
}
