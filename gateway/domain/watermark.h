/* watermark.h: the per-row watermark of a bulk export (Art. 37): every row of an export carries a
 * keyed tag derived from the export id, so that a leaked file, or any fragment of its rows, names
 * the export it came from (`waygatectl export trace`). The tag binds the row's bytes: it cannot be
 * moved to another row, and without the watermark key it can be neither forged nor recognised.
 *
 *   export key = HMAC-SHA256(watermark key, "waygate.watermark.v1" 0x00 | export id (16 bytes))
 *   tag        = first 16 bytes of HMAC-SHA256(export key, row), written as 32 lowercase hex
 *   a row line = row (printable ASCII, no space) " " tag "\n"
 *
 * Pure: no I/O, no logging. */
#ifndef GW_WATERMARK_H
#define GW_WATERMARK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

struct gw_crypto;

#define GW_WM_ID_LEN 16
#define GW_WM_KEY_LEN 32
#define GW_WM_TAG_HEX 32 /* characters of a tag */

/* The export's key from the keyring's watermark key (GW_WM_KEY_LEN bytes) and the export id.
 * Returns 0 or GW_ECRYPTO. */
int gw_wm_export_key(struct gw_crypto *cx, const uint8_t wm_key[GW_WM_KEY_LEN],
                     const uint8_t id[GW_WM_ID_LEN], uint8_t out[GW_WM_KEY_LEN]) GW_MUST_CHECK;

/* The tag of a row under an export key, as GW_WM_TAG_HEX hex characters and a NUL.
 * Returns 0 or GW_ECRYPTO. */
int gw_wm_tag(struct gw_crypto *cx, const uint8_t ekey[GW_WM_KEY_LEN], const char *row, size_t len,
              char hex[GW_WM_TAG_HEX + 1]) GW_MUST_CHECK;

/* Splits a row line (without its newline; a trailing CR is ignored) into the row and its tag.
 * Returns true when the line has the shape "row tag"; row, rowlen and tag are set to point into
 * line. */
bool gw_wm_split(const char *line, size_t len, const char **row, size_t *rowlen, const char **tag);

/* True when tag (GW_WM_TAG_HEX characters) is the row's tag under ekey (constant time). */
bool gw_wm_check(struct gw_crypto *cx, const uint8_t ekey[GW_WM_KEY_LEN], const char *row,
                 size_t len, const char *tag);

#endif
