/* h2mem.h: the nghttp2 allocator of every session the gateway opens (server and client): frame
 * buffers, the HPACK tables (they hold the `authorization` header) and stream state are wiped in
 * full before nghttp2 frees them (memwipe.h).
 *
 * A server session has an allocator of its own (struct gw_h2mem, issue 10: an idle connection at
 * most 32 KiB): nghttp2 allocates at session start blocks it touches little while the connection
 * is idle (the 16 KiB outbound frame buffer, of which a SETTINGS or PING frame writes the first
 * page; the 4 KiB stream table, untouched until a stream opens). Blocks of GW_H2MEM_MAP_MIN bytes
 * or more are private anonymous mappings of their own, so a page nghttp2 never writes is never
 * resident; freeing one wipes every resident page (what was written) and unmaps it. A page that
 * is not resident was never written, or is in swap, where a wipe would not reach it either
 * (docs/threat-model.md: swap is outside the claim). Smaller blocks come from the C library, as
 * before. The allocator counts what the session holds (gw_h2mem_held): the regression guard of
 * the idle connection's cost (test_h2, test_idle_session_memory). */
#ifndef GW_H2MEM_H
#define GW_H2MEM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <nghttp2/nghttp2.h>

/* The allocator to pass to nghttp2_session_*_new3, or NULL (nghttp2's own, which does not wipe)
 * when a test build turned wiping off. Stateless: for sessions with no gw_h2mem (the forwarder's
 * client). */
nghttp2_mem *gw_h2mem(void);

/* Blocks from GW_H2MEM_MAP_MIN (one page) to GW_H2MEM_MAP_MAX bytes are mapped, GW_H2MEM_MAPS
 * of them at most per session; the others come from the C library. */
#define GW_H2MEM_MAP_MIN 4096u
#define GW_H2MEM_MAP_MAX (256u * 1024u)
#define GW_H2MEM_MAPS 6u

/* One session's allocator. Invariants: it outlives the session it serves (nghttp2 keeps a
 * pointer to it); map[] lists exactly the session's live mapped blocks; heap counts the usable
 * bytes of its live C-library blocks. */
struct gw_h2mem {
    nghttp2_mem mem;
    struct {
        void *p;
        uint32_t len; /* a multiple of the page size, at most GW_H2MEM_MAP_MAX; 0: free */
        bool scratch; /* nghttp2's outbound frame buffer (see gw_h2mem_wipe_scratch) */
    } map[GW_H2MEM_MAPS];
    size_t heap;
    bool scratch_known; /* the linked nghttp2 is the release whose frame buffer size we know */
};

/* Readies m and returns the allocator to pass to nghttp2_session_server_new3, or NULL (nghttp2's
 * own) when a test build turned wiping off. */
nghttp2_mem *gw_h2mem_init(struct gw_h2mem *m);

/* The size nghttp2 1.52 gives its outbound frame buffer (NGHTTP2_FRAMEBUF_CHUNKLEN: a frame
 * header, the pad length byte and the largest payload); it asks for no other block of this size. */
#define GW_H2MEM_FRAMEBUF (9u + 1u + 16384u)

/* Call only when the session has nothing left to send (nghttp2_session_mem_send returned 0 and
 * what it returned before was copied out) and no stream open. The frame buffer then holds only
 * frames already sent, which nghttp2 never reads again (it packs each frame from the buffer's
 * start): its resident pages are wiped, so an idle connection keeps no frame it sent (a response
 * may carry PII). Only with nghttp2 1.52, whose layout was checked. A mincore and a 4 KiB wipe;
 * the pages stay resident (see gw_h2mem_release_idle). */
void gw_h2mem_wipe_scratch(struct gw_h2mem *m);

/* Gives back to the kernel (MADV_DONTNEED) every resident page of the session's mapped blocks
 * that holds only zeros: the frame buffer once wiped, the stream table once every stream is gone
 * (nghttp2 clears a bucket it empties; it reads the whole table when a SETTINGS changes the
 * initial window, which makes it resident on kernels that map no shared zero page for reads).
 * Such a page reads the same afterwards (a zero-filled page on the next touch), so this holds
 * with any nghttp2 release and whatever the block is. The next touch costs a page fault, which
 * on a virtual machine may take 50-100 us: call it when the session has been idle for a while
 * (conn.c: a second after its last input), not at every idle moment. */
void gw_h2mem_release_idle(struct gw_h2mem *m);

/* What the session's blocks cost now: heap = usable bytes of its C-library blocks, mapped = bytes
 * mapped, resident = of those, bytes in pages written to (a page nghttp2 only read is the kernel's
 * shared zero page: it costs nothing). Reads /proc/self/pagemap: for tests and diagnostics. */
struct gw_h2mem_held {
    size_t heap, mapped, resident;
};
void gw_h2mem_held(const struct gw_h2mem *m, struct gw_h2mem_held *out);

#endif
