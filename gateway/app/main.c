/* main.c: waygated's entry point and the only place that exits (daemon.c does the work). */
#include "daemon.h"

int main(int argc, char **argv)
{
    return gw_daemon_main(argc, argv, NULL);
}
