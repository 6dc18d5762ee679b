/* api_auth.h: the gateway's identity step (rpc.h's gw_rpc_identify_fn) over the registered
 * principals and the sessions of people's accounts (store/accounts.h), and the
 * administrative-record hook for Admin calls refused before their handler runs.
 *
 *  - A client certificate must be registered and enabled (principal table, by the SHA-256 of the
 *    DER certificate): else UNAUTHENTICATED, "is not a registered, enabled principal". The
 *    answer is cached per fingerprint for [auth] principal_cache_ms (0: looked up on every
 *    call); while the database is unavailable the last answer is used however old (a disabled
 *    certificate cannot be learnt of then anyway). No certificate: the unauthenticated
 *    principal (the policy then allows only methods open to anyone).
 *  - "authorization: Bearer <token>": the session is looked up on every call (so that a disabled
 *    account's tokens fail on their very next call on every gateway); the principal is then the
 *    account (role, branch, must_change), over the connection's certificate principal, which
 *    must be of the account's branch (branch roles) or registered for administration (the
 *    administrative roles).
 *  - A server-streaming call's caller is checked again the same way while it streams
 *    (gw_auth_recheck, rpc.h's recheck).
 * A call with a token owns its lookup and cancels it when reset; certificate-only calls that miss
 * the cache for one fingerprint share one lookup (the last one reset cancels it). */
#ifndef GW_API_AUTH_H
#define GW_API_AUTH_H

#include "call.h"
#include "peer.h"

struct gw_app;
struct gw_auth;

/* Returns NULL on allocation failure. app (its db and cfg) must outlive the registry. */
struct gw_auth *gw_auth_new(struct gw_app *app);
/* NULL-safe. Call after every call has ended (the server is freed first). */
void gw_auth_free(struct gw_auth *a);

/* The identity step: pass gw_auth_identify with the registry as identify_ctx to gw_rpc_new. */
void gw_auth_identify(void *ctx, struct gw_call *call, const struct gw_peer *peer,
                      const char *authorization);

/* The re-check of a server-streaming call's caller: pass gw_auth_recheck as the rpc params'
 * recheck (with the registry as identify_ctx). The identity step's lookups and answers (a session
 * looked up again, a certificate from the cache while fresh), ending in gw_call_rechecked. */
void gw_auth_recheck(void *ctx, struct gw_call *call, const struct gw_peer *peer,
                     const char *authorization);

/* The refusal hook (refused_ctx: the registry): writes the administrative-record row of an
 * Admin call refused by the identity step or the policy (Art. 31). Other paths: nothing. */
void gw_auth_refused(void *ctx, const char *path, const struct gw_peer *peer,
                     const struct gw_principal *p, const struct gw_fault *f);

/* A session token: 32 random bytes in base64url without padding. */
#define GW_AUTH_TOKEN_BYTES 32
#define GW_AUTH_TOKEN_CHARS 43

/* "Bearer <token>" -> the SHA-256 of the token as sent (what sessions store). Returns 0 or
 * GW_EAUTH (not "Bearer " followed by 43 base64url characters). */
int gw_auth_token_hash(const char *authorization, uint8_t out[32]) GW_MUST_CHECK;

#endif
