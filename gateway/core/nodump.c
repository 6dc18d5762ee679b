/* nodump.c: no core dumps, not dumpable (nodump.h). Keeps no state. */
#include "nodump.h"

#include <sys/prctl.h>
#include <sys/resource.h>

int gw_nodump(void)
{
    struct rlimit rl = {0, 0};

    if (setrlimit(RLIMIT_CORE, &rl) != 0 || prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0)
        return -1;
    return 0;
}
