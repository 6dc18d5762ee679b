/* h2mem.h: the nghttp2 allocator of every session the gateway opens (server and client): frame
 * buffers, the HPACK tables (they hold the `authorization` header) and stream state are wiped in
 * full before nghttp2 frees them (memwipe.h). */
#ifndef GW_H2MEM_H
#define GW_H2MEM_H

#include <nghttp2/nghttp2.h>

/* The allocator to pass to nghttp2_session_*_new3, or NULL (nghttp2's own, which does not wipe)
 * when a test build turned wiping off. */
nghttp2_mem *gw_h2mem(void);

#endif
