/* keyring.h: the gateway's keys. Versioned key-encryption keys (KEKs) that wrap per-record data
 * keys, behind a backend interface so that KEKs can later live in an HSM (PKCS#11) and never
 * leave it; and the index, token and content keys, which the gateway needs in memory.
 *
 * keyring.c holds the generic part, keyring_file.c the key file backend.
 *
 * Key file backend, format version 1 (text, one item per line, fields separated by one space):
 *
 *   waygate-keyring 1                 first line, exactly
 *   kek <version> active <base64>     a KEK: version 1..2147483647, 32 bytes in standard base64
 *   kek <version> retired             a retired KEK: its bytes are erased from the file
 *   index <base64>                    blind-index key (32 bytes)
 *   token <base64>                    token key (32 bytes)
 *   content <base64>                  content-MAC key (32 bytes)
 *   audit <base64>                    Ed25519 private seed signing audit checkpoints (32 bytes)
 *   watermark <base64>                key of bulk-export watermark tags (32 bytes)
 *   # comment                         blank lines and lines starting with '#' are ignored
 *
 * The current KEK (the one new records use) is the highest version; it must be active. Loading
 * refuses a missing file, a file with any group or other permission bit (st_mode & 077), a file
 * not owned by the effective user, a malformed or duplicated line (the message names the line
 * number, never its content), no active KEK, a retired newest KEK, or a missing index, token or
 * content key (audit and watermark are optional when loading, for files written before they
 * existed: `keys init` writes them, `keys rotate` adds them when missing; the gateway refuses to
 * start without the audit key). Keys are held in memory that is locked when possible and wiped on
 * free.
 *
 * The CLI edits the file with gw_keyring_file_init/rotate/retire: each takes an exclusive lock
 * on the file, writes a new file (mode 0600) beside it, fsyncs, renames it over the old one and
 * fsyncs the directory, so a crash leaves either the old or the new file.
 *
 * A loaded struct gw_keyring is immutable: a process sees rotations only by loading again.
 * It can be shared between threads; the struct gw_crypto passed to wrap/unwrap cannot. */
#ifndef GW_KEYRING_H
#define GW_KEYRING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "crypto.h"
#include "err.h"

#define GW_KEYRING_MAX_VERSION 2147483647u /* KEK versions fit a PostgreSQL integer */
#define GW_KEYRING_MAX_KEKS 4096

/* One KEK version and its state, as reported by gw_keyring_kek_at (never key bytes). */
struct gw_keyring_kek {
    uint32_t version;
    bool active; /* false: retired, cannot unwrap */
};

/* A KEK backend. wrap/unwrap receive the AAD built by the keyring (gw_crypto_aad_dek) and must
 * produce/accept the sealed format of crypto.h; they return 0, GW_EDATALOSS (unwrap: not a
 * wrapped key of this AAD), GW_EPRECOND (version retired or unknown) or GW_ECRYPTO. */
struct gw_keyring_backend {
    const char *name;
    int (*wrap)(void *be, struct gw_crypto *cx, uint32_t kek_version, const uint8_t *aad,
                size_t aadlen, const uint8_t dek[GW_CRYPTO_DEK_LEN],
                uint8_t out[GW_CRYPTO_WRAPPED_DEK_LEN]);
    int (*unwrap)(void *be, struct gw_crypto *cx, uint32_t kek_version, const uint8_t *aad,
                  size_t aadlen, const uint8_t *in, size_t inlen, uint8_t dek[GW_CRYPTO_DEK_LEN]);
    void (*free)(void *be);
};

struct gw_keyring;

/* Builds a keyring over a backend (for backends other than the key file). keks lists every
 * version the backend knows (copied); index/token/content are copied. On success the keyring
 * owns be (freed through ops->free); on failure (NULL) the caller still owns it. */
struct gw_keyring *gw_keyring_new(const struct gw_keyring_backend *ops, void *be,
                                  const struct gw_keyring_kek *keks, size_t nkeks,
                                  const uint8_t index_key[GW_CRYPTO_KEY_LEN],
                                  const uint8_t token_key[GW_CRYPTO_KEY_LEN],
                                  const uint8_t content_key[GW_CRYPTO_KEY_LEN]);

/* Loads the key file at path into *out (the caller frees it with gw_keyring_free). On failure
 * *out is NULL, errbuf holds one line naming the path (and line number or mode), and the return
 * value is GW_EIO (missing or unreadable), GW_EPERM (permissions or owner), GW_EINVAL
 * (malformed or incomplete) or GW_ENOMEM. Never puts key bytes in errbuf. */
int gw_keyring_file_load(const char *path, struct gw_keyring **out, char *errbuf,
                         size_t errlen) GW_MUST_CHECK;

/* Wipes and frees; NULL-safe. */
void gw_keyring_free(struct gw_keyring *kr);

/* The KEK version new data keys are wrapped under (the newest; always active). */
uint32_t gw_keyring_current(const struct gw_keyring *kr);

/* The number of KEK versions and the i-th of them, oldest first (for `keys status`). */
size_t gw_keyring_kek_count(const struct gw_keyring *kr);
struct gw_keyring_kek gw_keyring_kek_at(const struct gw_keyring *kr, size_t i);

/* The backend's name ("file"). */
const char *gw_keyring_backend_name(const struct gw_keyring *kr);

/* Wraps dek for (table, record_id) under KEK version kek_version (normally gw_keyring_current)
 * into out. Returns 0, GW_EPRECOND (version unknown or retired), GW_EINVAL or GW_ECRYPTO. */
int gw_keyring_wrap(const struct gw_keyring *kr, struct gw_crypto *cx, uint32_t kek_version,
                    const char *table, const uint8_t record_id[GW_CRYPTO_RECORD_ID_LEN],
                    const uint8_t dek[GW_CRYPTO_DEK_LEN],
                    uint8_t out[GW_CRYPTO_WRAPPED_DEK_LEN]) GW_MUST_CHECK;

/* Unwraps a data key stored for (table, record_id) under kek_version. Returns 0, GW_EDATALOSS
 * (not a wrapped key of this record and version: moved, altered or truncated; dek wiped),
 * GW_EPRECOND (version unknown or retired), GW_EINVAL or GW_ECRYPTO. */
int gw_keyring_unwrap(const struct gw_keyring *kr, struct gw_crypto *cx, uint32_t kek_version,
                      const char *table, const uint8_t record_id[GW_CRYPTO_RECORD_ID_LEN],
                      const uint8_t *in, size_t inlen,
                      uint8_t dek[GW_CRYPTO_DEK_LEN]) GW_MUST_CHECK;

/* The in-memory keys (GW_CRYPTO_KEY_LEN bytes each), valid until gw_keyring_free. */
const uint8_t *gw_keyring_index_key(const struct gw_keyring *kr);
const uint8_t *gw_keyring_token_key(const struct gw_keyring *kr);
const uint8_t *gw_keyring_content_key(const struct gw_keyring *kr);
/* The audit checkpoint signing seed and the watermark key (32 bytes each), or NULL when the key
 * file has none. */
const uint8_t *gw_keyring_audit_seed(const struct gw_keyring *kr);
const uint8_t *gw_keyring_watermark_key(const struct gw_keyring *kr);
/* Sets the optional keys while building a keyring (either may be NULL: left absent). */
void gw_keyring_set_extra(struct gw_keyring *kr, const uint8_t *audit_seed,
                          const uint8_t *watermark_key);

/* ---- key file administration (the CLI) ---- */

/* Creates a new key file at path (O_CREAT|O_EXCL, mode 0600) with KEK version 1 and fresh
 * index, token and content keys from the OpenSSL DRBG. Refuses to overwrite (GW_EEXIST).
 * Returns 0, GW_EEXIST, GW_EIO or GW_ECRYPTO; errbuf as for load. */
int gw_keyring_file_init(const char *path, char *errbuf, size_t errlen) GW_MUST_CHECK;

/* Adds KEK version max+1 (active; the new current version) to the key file; *new_version
 * receives it. Returns 0 or an error as for load (the file is checked the same way). */
int gw_keyring_file_rotate(const char *path, uint32_t *new_version, char *errbuf,
                           size_t errlen) GW_MUST_CHECK;

/* Marks KEK version as retired and erases its bytes from the file. Refuses the newest version
 * (GW_EPRECOND) and unknown versions (GW_ENOTFOUND); retiring a retired version is a no-op
 * (returns 0). Callers check first that no record still uses the version (`keys rewrap`). */
int gw_keyring_file_retire(const char *path, uint32_t version, char *errbuf,
                           size_t errlen) GW_MUST_CHECK;

#endif
