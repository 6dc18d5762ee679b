/* waygated_nowipe.c: the production daemon with the transport's wiping turned off (libevent and
 * nghttp2 free their buffers as they are, OpenSSL keeps record plaintext): the baseline that
 * shows tests/integration/test_wipe.py's scan finds what it looks for, and the "without" side
 * of the wipe benchmark. Never installed. */
#include "daemon.h"
#include "memwipe.h"

int main(int argc, char **argv)
{
    gw_memwipe_disable_for_tests();
    return gw_daemon_main(argc, argv, NULL);
}
