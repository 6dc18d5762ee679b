/* keyring.h: the gateway's keys, per cipher suite (enum gw_suite, crypto.h). For each suite:
 * versioned key-encryption keys (KEKs) that wrap per-record data keys, behind a backend interface
 * so that KEKs can later live in an HSM (PKCS#11) and never leave it; and the index, token and
 * content keys, which the gateway needs in memory; optionally the audit signing key.
 *
 * keyring.c holds the generic part, keyring_file.c the key file backend.
 *
 * Key file backend, format version 1 (text, one item per line, fields separated by one space):
 *
 *   waygate-keyring 1                 first line, exactly
 *   kek <version> active <base64>     an aes KEK: version 1..2147483647, 32 bytes in standard
 * base64 kek <version> retired             a retired KEK: its bytes are erased from the file index
 * <base64>                    blind-index key (32 bytes) token <base64>                    token
 * key (32 bytes) content <base64>                  content-MAC key (32 bytes) audit <base64>
 * Ed25519 private seed signing audit checkpoints (32 bytes) sm.kek, sm.index, sm.token,       the
 * same items of the sm suite (SM4-CTR + HMAC-SM3); KEK sm.content <...>                  versions
 * are per suite (aes 3 and sm 3 are different keys) sm.audit <base64>                 SM2 private
 * key: the 32-byte scalar d, big-endian, 1 <= d <= n-2 (GB/T 32918 recommended curve) watermark
 * <base64>                key of bulk-export watermark tags (32 bytes; one per file, whatever the
 * suites) # comment                         blank lines and lines starting with '#' are ignored
 *
 * A file holds one suite or both (at least one). Each suite present (any line of it) must be
 * complete: an active KEK, the newest KEK active, index, token and content keys (its audit key is
 * optional when loading, for files written before it existed: `keys init` writes it, `keys
 * rotate` adds it when missing; the gateway refuses to start without the audit key of its
 * suite). The current KEK of a suite (the one its new records use) is its highest version.
 * Loading refuses a missing file, a file with any group or other permission bit
 * (st_mode & 077), a file not owned by the effective user, a malformed or duplicated line (the
 * message names the line number, never its content), no suite, or an incomplete suite (the
 * message names the suite's first line and the missing item). Keys are held in memory that is
 * locked when possible and wiped on free.
 *
 * The CLI edits the file with gw_keyring_file_init/rotate/retire/add_suite: each takes an
 * exclusive lock on the file, writes a new file (mode 0600) beside it, fsyncs, renames it over
 * the old one and fsyncs the directory, so a crash leaves either the old or the new file.
 *
 * A loaded struct gw_keyring is immutable once its owner has chosen the suite of new records
 * (gw_keyring_set_suite, right after loading): a process sees rotations only by loading again.
 * It can then be shared between threads; the struct gw_crypto passed to wrap/unwrap cannot. */
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

/* A KEK backend. wrap/unwrap receive the suite, the KEK version (per suite) and the AAD built by
 * the keyring (gw_crypto_aad_dek), and must produce/accept the sealed format of crypto.h under
 * that suite; they return 0, GW_EDATALOSS (unwrap: not a wrapped key of this AAD), GW_EPRECOND
 * (suite absent, version retired or unknown) or GW_ECRYPTO. */
struct gw_keyring_backend {
    const char *name;
    int (*wrap)(void *be, struct gw_crypto *cx, enum gw_suite suite, uint32_t kek_version,
                const uint8_t *aad, size_t aadlen, const uint8_t dek[GW_CRYPTO_DEK_LEN],
                uint8_t out[GW_CRYPTO_WRAPPED_DEK_LEN]);
    int (*unwrap)(void *be, struct gw_crypto *cx, enum gw_suite suite, uint32_t kek_version,
                  const uint8_t *aad, size_t aadlen, const uint8_t *in, size_t inlen,
                  uint8_t dek[GW_CRYPTO_DEK_LEN]);
    void (*free)(void *be);
    /* The check value of the KEK (gw_keyring_kek_check), computed where the KEK is; NULL: the
     * backend cannot (gw_keyring_kek_check answers GW_EUNIMPL). Returns 0, GW_EPRECOND or
     * GW_ECRYPTO. */
    int (*check)(void *be, struct gw_crypto *cx, enum gw_suite suite, uint32_t kek_version,
                 uint8_t out[GW_CRYPTO_MAC_LEN]);
};

/* The keys of one suite, for gw_keyring_new/gw_keyring_add_suite: keks lists every version the
 * backend knows for the suite (the newest must be active); index, token and content are
 * required, audit optional (NULL). Everything is copied. */
struct gw_keyring_set {
    const struct gw_keyring_kek *keks;
    size_t nkeks;
    const uint8_t *index, *token, *content, *audit; /* GW_CRYPTO_KEY_LEN bytes each */
};

struct gw_keyring;

/* Builds a keyring with the keys of one suite over a backend (for backends other than the key
 * file; add a second suite with gw_keyring_add_suite). On success the keyring owns be (freed
 * through ops->free); on failure (NULL: invalid set or out of memory) the caller still owns it. */
struct gw_keyring *gw_keyring_new(const struct gw_keyring_backend *ops, void *be,
                                  enum gw_suite suite, const struct gw_keyring_set *set);

/* Adds the keys of a suite the keyring lacks (while building it, before sharing it). Returns 0,
 * GW_EEXIST (it has that suite), GW_EINVAL (invalid suite or set) or GW_ENOMEM. */
int gw_keyring_add_suite(struct gw_keyring *kr, enum gw_suite suite,
                         const struct gw_keyring_set *set) GW_MUST_CHECK;

/* Loads the key file at path into *out (the caller frees it with gw_keyring_free). On failure
 * *out is NULL, errbuf holds one line naming the path (and line number, mode or key), and the
 * return value is GW_EIO (missing or unreadable), GW_EPERM (permissions or owner), GW_EINVAL
 * (malformed or incomplete), GW_EPRECOND (it holds a key published in this repository: the
 * known-answer tests' keyring, which anyone can read), GW_ECRYPTO or GW_ENOMEM. Never puts key
 * bytes in errbuf. The CLI's edits (init, rotate, retire, add-suite) refuse such a file too. */
int gw_keyring_file_load(const char *path, struct gw_keyring **out, char *errbuf,
                         size_t errlen) GW_MUST_CHECK;

/* gw_keyring_file_load with flags: GW_KEYRING_PUBLISHED_OK accepts published keys. Only the
 * known-answer test (tests/unit/test_golden.c) passes it, to open its fixtures. */
#define GW_KEYRING_PUBLISHED_OK 1u
int gw_keyring_file_load_flags(const char *path, unsigned flags, struct gw_keyring **out,
                               char *errbuf, size_t errlen) GW_MUST_CHECK;

/* 1 when key is one of the keys published in this repository, 0 when not, GW_ECRYPTO when it
 * could not be compared. */
int gw_keyring_key_published(const uint8_t key[GW_CRYPTO_KEY_LEN]) GW_MUST_CHECK;

/* Wipes and frees; NULL-safe. */
void gw_keyring_free(struct gw_keyring *kr);

/* Whether the keyring holds the keys of suite. */
bool gw_keyring_has_suite(const struct gw_keyring *kr, enum gw_suite suite);

/* The suite new records use: after loading, aes if the keyring has it, else sm. */
enum gw_suite gw_keyring_suite(const struct gw_keyring *kr);

/* Chooses the suite new records use (the daemon calls it from [crypto] suite right after
 * loading, before sharing the keyring). Returns 0, or GW_EPRECOND when the keyring lacks the
 * suite's keys (the choice is left unchanged), GW_EINVAL for an unknown suite. */
int gw_keyring_set_suite(struct gw_keyring *kr, enum gw_suite suite) GW_MUST_CHECK;

/* The KEK version new data keys of suite are wrapped under (its newest; always active); 0 when
 * the keyring lacks the suite. */
uint32_t gw_keyring_current(const struct gw_keyring *kr, enum gw_suite suite);

/* The number of KEK versions of suite (0 when absent) and the i-th of them, oldest first (for
 * `keys status`); {0, false} past the end. */
size_t gw_keyring_kek_count(const struct gw_keyring *kr, enum gw_suite suite);
struct gw_keyring_kek gw_keyring_kek_at(const struct gw_keyring *kr, enum gw_suite suite, size_t i);

/* The backend's name ("file"). */
const char *gw_keyring_backend_name(const struct gw_keyring *kr);

/* Wraps dek for (table, record_id) under the KEK version kek_version of suite (normally
 * gw_keyring_current(kr, suite)) into out, in the sealed format of that suite. Returns 0,
 * GW_EPRECOND (suite absent, version unknown or retired), GW_EINVAL or GW_ECRYPTO. */
int gw_keyring_wrap(const struct gw_keyring *kr, struct gw_crypto *cx, enum gw_suite suite,
                    uint32_t kek_version, const char *table,
                    const uint8_t record_id[GW_CRYPTO_RECORD_ID_LEN],
                    const uint8_t dek[GW_CRYPTO_DEK_LEN],
                    uint8_t out[GW_CRYPTO_WRAPPED_DEK_LEN]) GW_MUST_CHECK;

/* Unwraps a data key stored for (table, record_id) under kek_version of the suite named by the
 * wrapped value's algorithm byte (gw_crypto_sealed_suite). Returns 0, GW_EDATALOSS (not a
 * wrapped key of a known suite, or not of this record and version: moved, altered or
 * truncated; dek wiped), GW_EPRECOND (the keyring lacks that suite, or the version is unknown
 * or retired), GW_EINVAL or GW_ECRYPTO. */
int gw_keyring_unwrap(const struct gw_keyring *kr, struct gw_crypto *cx, uint32_t kek_version,
                      const char *table, const uint8_t record_id[GW_CRYPTO_RECORD_ID_LEN],
                      const uint8_t *in, size_t inlen,
                      uint8_t dek[GW_CRYPTO_DEK_LEN]) GW_MUST_CHECK;

/* The check value of a KEK: HMAC(KEK, GW_KEYRING_CHECK_LABEL) (HMAC-SHA256 under aes, HMAC-SM3
 * under sm), 32 bytes that tell one key from another without revealing it (the KEK is a random
 * 32-byte key: the MAC of a fixed label under it says nothing of it). The database keeps the
 * value of each version it met (sql/036_kek_version.sql), so that a keyring whose version N is
 * another key (a divergent copy, the wrong database) is refused. */
#define GW_KEYRING_CHECK_LABEL "waygate-kek-check-v1"

/* The check value of KEK version of suite into out. Returns 0, GW_EPRECOND (suite absent,
 * version unknown or retired: no key to compute it with), GW_EUNIMPL (the backend cannot) or
 * GW_ECRYPTO. */
int gw_keyring_kek_check(const struct gw_keyring *kr, struct gw_crypto *cx, enum gw_suite suite,
                         uint32_t version, uint8_t out[GW_CRYPTO_MAC_LEN]) GW_MUST_CHECK;

/* One active KEK's check value, as gw_keyring_kek_checks lists them. */
struct gw_keyring_check {
    enum gw_suite suite;
    uint32_t version;
    uint8_t value[GW_CRYPTO_MAC_LEN];
};

/* The check values of every active KEK of the keyring, aes first, oldest first: *out (freed with
 * gw_free; NULL when none) and its length *n. Computed on a crypto context of its own, freed
 * (wiped) before it returns: a long-lived context caches its HMAC keys, and a keyring refused by
 * its database must leave no copy of its KEKs. Returns 0, GW_ENOMEM or an error of
 * gw_keyring_kek_check. */
int gw_keyring_kek_checks(const struct gw_keyring *kr, struct gw_keyring_check **out,
                          size_t *n) GW_MUST_CHECK;

/* The in-memory keys of suite (GW_CRYPTO_KEY_LEN bytes each), valid until gw_keyring_free; NULL
 * when the keyring lacks the suite. */
const uint8_t *gw_keyring_index_key(const struct gw_keyring *kr, enum gw_suite suite);
const uint8_t *gw_keyring_token_key(const struct gw_keyring *kr, enum gw_suite suite);
const uint8_t *gw_keyring_content_key(const struct gw_keyring *kr, enum gw_suite suite);
/* The audit checkpoint signing key of suite (aes: Ed25519 seed; sm: SM2 scalar, 32 bytes), or
 * NULL when the keyring has none for that suite. */
const uint8_t *gw_keyring_audit_seed(const struct gw_keyring *kr, enum gw_suite suite);
/* The watermark key (32 bytes, one per keyring), or NULL when the key file has none. */
const uint8_t *gw_keyring_watermark_key(const struct gw_keyring *kr);
/* Sets the watermark key while building a keyring (NULL: left absent). */
void gw_keyring_set_watermark(struct gw_keyring *kr, const uint8_t *watermark_key);

/* Whether key (32 bytes, big-endian) is a valid SM2 private scalar: 1 <= d <= n-2. */
bool gw_keyring_sm2_scalar_ok(const uint8_t key[GW_CRYPTO_KEY_LEN]);

/* ---- key file administration (the CLI) ---- */

/* Creates a new key file at path (O_CREAT|O_EXCL, mode 0600) holding suite with KEK version 1
 * and fresh index, token, content and audit keys (and the watermark key) from the OpenSSL DRBG.
 * Refuses to overwrite (GW_EEXIST). Returns 0, GW_EEXIST, GW_EINVAL (unknown suite), GW_EIO or
 * GW_ECRYPTO; errbuf as for load. */
int gw_keyring_file_init(const char *path, enum gw_suite suite, char *errbuf,
                         size_t errlen) GW_MUST_CHECK;

/* Adds a complete fresh key set for suite (KEK version 1, index, token, content, audit) to a key
 * file that lacks it. Returns 0, GW_EEXIST (the file has the suite), or an error as for load. */
int gw_keyring_file_add_suite(const char *path, enum gw_suite suite, char *errbuf,
                              size_t errlen) GW_MUST_CHECK;

/* Adds KEK version max+1 of suite (active; the suite's new current version) to the key file;
 * *new_version receives it. GW_EPRECOND when the file lacks the suite; else 0 or an error as
 * for load (the file is checked the same way). */
int gw_keyring_file_rotate(const char *path, enum gw_suite suite, uint32_t *new_version,
                           char *errbuf, size_t errlen) GW_MUST_CHECK;

/* Marks KEK version of suite as retired and erases its bytes from the file. Refuses the newest
 * version (GW_EPRECOND), a suite the file lacks (GW_EPRECOND) and unknown versions
 * (GW_ENOTFOUND); retiring a retired version is a no-op (returns 0). Callers check first that no
 * record still uses the version (`keys rewrap`). */
int gw_keyring_file_retire(const char *path, enum gw_suite suite, uint32_t version, char *errbuf,
                           size_t errlen) GW_MUST_CHECK;

#endif
