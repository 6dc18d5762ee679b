/* memwipe.h: wipe-on-free allocation for the libraries whose buffers hold clear PII and keys in
 * memory the gateway does not allocate itself: libevent (socket and TLS plaintext buffers,
 * evbuffer chains) and nghttp2 (frame buffers, HPACK tables, which hold the `authorization`
 * header). Every block these functions free is overwritten in full (its malloc_usable_size, not
 * only what was asked for) with gw_wipe (explicit_bzero) first, and a block that grows is moved,
 * never left behind unwiped by realloc. OpenSSL's own record buffers are the TLS layer's business
 * (SSL_OP_CLEANSE_PLAINTEXT, tls.c), the gateway's own buffers are wiped where they are freed
 * (alloc.h). docs/threat-model.md lists what is and is not wiped.
 *
 * Invariants: gw_memwipe_install runs before libevent allocates anything (libevent refuses to
 * free a block through another allocator's free only in debug builds: mixing would go unseen);
 * wiping is on unless a test binary turned it off before the daemon started. */
#ifndef GW_MEMWIPE_H
#define GW_MEMWIPE_H

#include <stdbool.h>
#include <stddef.h>

/* Like gw_malloc / gw_calloc (the fail-nth test hook reaches them). NULL on failure. */
void *gw_memwipe_malloc(size_t n);
void *gw_memwipe_calloc(size_t nmemb, size_t size);
/* Grows by moving (new block, copy, wipe and free the old one); a block that already has room
 * for n bytes is returned as it is (its tail is wiped when it is freed). NULL on failure, p
 * untouched. */
void *gw_memwipe_realloc(void *p, size_t n);
/* Wipes the whole usable size of p, then frees it. NULL-safe. */
void gw_memwipe_free(void *p);

/* Overwrites GW_MEMWIPE_STACK_SCRUB bytes of the stack below the caller's frame: what earlier,
 * deeper calls left there (library code's temporaries: a cipher's partial block, a parser's
 * copy) is gone. The server runs it from the loop after each connection closes. */
#define GW_MEMWIPE_STACK_SCRUB (256u * 1024u)
void gw_memwipe_scrub_stack(void);

/* Hands libevent these functions (event_set_mem_functions), when wiping is on. Call first
 * thing in main, before any libevent object exists. */
void gw_memwipe_install(void);

/* True unless gw_memwipe_disable_for_tests ran: the transport then wipes (tls.c, h2.c). */
bool gw_memwipe_enabled(void);
/* For a test build only (waygated-nowipe: the baseline of test_wipe.py and of the wipe
 * benchmark): the production daemon never calls it. Call before gw_memwipe_install. */
void gw_memwipe_disable_for_tests(void);

#endif
