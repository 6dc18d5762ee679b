/* daemon.h: waygated as a function, so that a test build can run the same daemon with test-only
 * methods added (tests/support/). */
#ifndef GW_DAEMON_H
#define GW_DAEMON_H

#include <stddef.h>

#include "policy.h"
#include "rpc.h"

struct gw_daemon_ext {
    const struct gw_rpc_table *methods;   /* replaces the gateway's method table; NULL: keep */
    const struct gw_policy_method *rules; /* extra method-permission rules */
    size_t nrules;
};

/* Runs the daemon; returns the process exit status (0 after a clean drain, 1 on a runtime
 * failure, 2 on bad arguments or configuration). ext: NULL for the production daemon. */
int gw_daemon_main(int argc, char **argv, const struct gw_daemon_ext *ext);

#endif
