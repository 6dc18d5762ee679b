/* file.c: gw_file_read (file.h). Invariant: the descriptor is closed and, on failure, the buffer
 * freed before return. */
#include "file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "alloc.h"

int gw_file_read(const char *path, size_t max, bool operator_only, char **buf, size_t *len,
                 char *err, size_t errsz)
{
    struct stat st;
    char *b = NULL;
    size_t n = 0;
    int fd, rc = 0;

    *buf = NULL;
    *len = 0;
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        snprintf(err, errsz, "%s: cannot open: %s", path, strerror(errno));
        return GW_EIO;
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        snprintf(err, errsz, "%s: not a regular file", path);
        rc = GW_EIO;
        goto out;
    }
    if (operator_only && (st.st_mode & (S_IWGRP | S_IWOTH))) {
        /* whoever may write it decides what the gateway does: the operator only */
        snprintf(err, errsz, "%s: mode %04o lets group or others write it; run chmod go-w on it",
                 path, (unsigned)(st.st_mode & 07777));
        rc = GW_EPERM;
        goto out;
    }
    if (st.st_size < 0 || (unsigned long long)st.st_size > max) {
        snprintf(err, errsz, "%s: larger than %zu bytes", path, max);
        rc = GW_EINVAL;
        goto out;
    }
    b = gw_malloc((size_t)st.st_size + 1);
    if (b == NULL) {
        snprintf(err, errsz, "%s: out of memory", path);
        rc = GW_ENOMEM;
        goto out;
    }
    while (n < (size_t)st.st_size) {
        ssize_t r = read(fd, b + n, (size_t)st.st_size - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            snprintf(err, errsz, "%s: read failed: %s", path, strerror(errno));
            rc = GW_EIO;
            goto out;
        }
        if (r == 0) {
            snprintf(err, errsz, "%s: cannot read (it shrank while read)", path);
            rc = GW_EIO;
            goto out;
        }
        n += (size_t)r;
    }
    b[n] = '\0';
    *buf = b;
    *len = n;
    b = NULL;
out:
    gw_free(b);
    close(fd);
    return rc;
}
