/* file.h: reading a small configuration-like file (the config file, the policy file) whole, and
 * creating a new private file for output that is then renamed into place (an audit bundle, a
 * keyring, the audit spool).
 * Pure I/O: no logging; messages name the path and never quote the contents. */
#ifndef GW_FILE_H
#define GW_FILE_H

#include <stdbool.h>
#include <stddef.h>

#include "err.h"

/* Reads the regular file at path, at most max bytes, into *buf (gw_malloc, NUL-terminated one
 * past *len; the caller frees it with gw_free). path is opened without blocking and checked on
 * its descriptor before anything is read: a FIFO, socket, device or directory there (also
 * through a symbolic link, which is followed) is refused at once (GW_EIO). With operator_only, a
 * file that group or others may write is refused (GW_EPERM) before it is read. Returns 0, or GW_EIO
 * (cannot open, not a regular file, read failed or short), GW_EPERM, GW_EINVAL (larger than max) or
 * GW_ENOMEM with err holding "<path>: <reason>" and *buf NULL. */
int gw_file_read(const char *path, size_t max, bool operator_only, char **buf, size_t *len,
                 char *err, size_t errsz) GW_MUST_CHECK;

/* Creates path as a new regular file open for writing, mode 0600 whatever the umask, into *fd
 * (the caller closes it). Never opens what is already there: an existing file, or a symbolic
 * link planted at path, is refused (O_EXCL, O_NOFOLLOW), so whoever can write the directory
 * cannot redirect the output or read it through a file they made. Returns 0, or GW_EEXIST
 * (something is at path) or GW_EIO with err holding "<path>: <reason>" and *fd -1. */
int gw_file_create_new(const char *path, int *fd, char *err, size_t errsz) GW_MUST_CHECK;

/* Writes len bytes of buf to fd, again after a short write or EINTR. Returns 0, or -1 with errno
 * set (0 when write wrote nothing). */
int gw_file_write_all(int fd, const void *buf, size_t len) GW_MUST_CHECK;

/* fsyncs the directory holding path (".", when path has no slash), so that a file just renamed
 * into it keeps its name after a crash. Returns 0, or GW_EIO with err holding "<dir>: <reason>". */
int gw_file_sync_dir(const char *path, char *err, size_t errsz) GW_MUST_CHECK;

#endif
