/* continuation.h: the continuation of a Search page (WaybillQuery.Search): the keyset position
 * after a result (its accepted_at and record id, both shown to the caller in that very result)
 * made tamper-proof by a MAC that also binds it to the search it came from (who searched, by
 * which key, within which branch) and to the time its first page was answered (when the bulk
 * threshold was checked), after which it lives GW_CONT_MAX_AGE_S seconds. It reveals nothing the
 * caller could not see: the key is only inside the MAC. Text form: 98 lowercase hex characters
 * (version, issue time, position, 16-byte MAC). Pure: no I/O, no logging, no clock (the caller
 * gives the time). */
#ifndef GW_CONTINUATION_H
#define GW_CONTINUATION_H

#include <stddef.h>
#include <stdint.h>

#include "crypto.h"
#include "err.h"

#define GW_CONT_ID_LEN 16
#define GW_CONT_TEXT_LEN 98 /* without the NUL */
/* Seconds a search may be continued after its first page (docs/architecture.md): a continuation
 * carries the first page's time, so a walk through the pages ends that long after the bulk
 * threshold was checked, and a scope grown since (a new route, a raised level) is counted again by
 * a fresh first page. */
#define GW_CONT_MAX_AGE_S 600

/* The search a continuation belongs to. key: the key's bytes (a blind index, or the day's text);
 * who: the caller's quota identity; branch: the branch searched; sides: the sides of a waybill a
 * person's key matches (the policy's, from the caller's view: a policy reloaded since the first
 * page that changed them makes it another search), 0 for the other keys; level: the highest
 * security level the caller's role may see (the first page counted only the records up to it
 * against the bulk threshold, so a level raised since makes it another search). */
struct gw_cont_search {
    const char *who;
    int key_kind;
    const uint8_t *key;
    size_t key_len;
    const char *branch;
    unsigned sides;
    int level;
};

/* Writes the continuation after (at, id) of search s, whose first page was answered at issued
 * (seconds since the epoch), into out (GW_CONT_TEXT_LEN + 1 bytes, NUL-terminated), under mac_key
 * (32 bytes) with the HMAC of suite. Returns 0, GW_EINVAL or GW_ECRYPTO. */
int gw_cont_encode(struct gw_crypto *cx, enum gw_suite suite,
                   const uint8_t mac_key[GW_CRYPTO_KEY_LEN], const struct gw_cont_search *s,
                   int64_t issued, int64_t at, const uint8_t id[GW_CONT_ID_LEN],
                   char out[GW_CONT_TEXT_LEN + 1]) GW_MUST_CHECK;

/* Checks text (n bytes) as a continuation of search s under mac_key and suite at time now
 * (seconds since the epoch); on success fills *issued, *at and id. Returns 0, GW_EINVAL
 * (malformed, altered, of another search or made under another suite: one answer for all),
 * GW_EPRECOND (genuine, but issued more than GW_CONT_MAX_AGE_S before now, or as far after it)
 * or GW_ECRYPTO. The MAC is compared in constant time, before the time is looked at. */
int gw_cont_decode(struct gw_crypto *cx, enum gw_suite suite,
                   const uint8_t mac_key[GW_CRYPTO_KEY_LEN], const struct gw_cont_search *s,
                   const char *text, size_t n, int64_t now, int64_t *issued, int64_t *at,
                   uint8_t id[GW_CONT_ID_LEN]) GW_MUST_CHECK;

#endif
