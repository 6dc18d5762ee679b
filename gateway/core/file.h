/* file.h: reading a small configuration-like file (the config file, the policy file) whole.
 * Pure I/O: no logging; messages name the path and never quote the contents. */
#ifndef GW_FILE_H
#define GW_FILE_H

#include <stdbool.h>
#include <stddef.h>

#include "err.h"

/* Reads the regular file at path, at most max bytes, into *buf (gw_malloc, NUL-terminated one
 * past *len; the caller frees it with gw_free). With operator_only, a file that group or others
 * may write is refused (GW_EPERM) before it is read. Returns 0, or GW_EIO (cannot open, not a
 * regular file, read failed or short), GW_EPERM, GW_EINVAL (larger than max) or GW_ENOMEM with err
 * holding "<path>: <reason>" and *buf NULL. */
int gw_file_read(const char *path, size_t max, bool operator_only, char **buf, size_t *len,
                 char *err, size_t errsz) GW_MUST_CHECK;

#endif
