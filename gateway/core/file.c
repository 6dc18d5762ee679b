/* file.c: gw_file_read, gw_file_create_new, gw_file_write_all, gw_file_sync_dir (file.h).
 * Invariant: a descriptor is closed and, on failure, the buffer freed before return
 * (gw_file_create_new hands its descriptor to the caller only on success); no open blocks. */
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
    /* O_NONBLOCK: a FIFO (or a device) planted at path opens at once and is refused below,
     * instead of blocking the start until something writes to it; a regular file ignores it */
    fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        snprintf(err, errsz, "%s: cannot open: %s", path, strerror(errno));
        return GW_EIO;
    }
    if (fstat(fd, &st) != 0) {
        snprintf(err, errsz, "%s: cannot stat: %s", path, strerror(errno));
        rc = GW_EIO;
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        snprintf(err, errsz, "%s: not a regular file (a %s)", path,
                 S_ISFIFO(st.st_mode)   ? "FIFO"
                 : S_ISDIR(st.st_mode)  ? "directory"
                 : S_ISSOCK(st.st_mode) ? "socket"
                                        : "device");
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

int gw_file_create_new(const char *path, int *fd, char *err, size_t errsz)
{
    *fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY, 0600);
    if (*fd < 0) {
        int e = errno;
        if (e == EEXIST || e == ELOOP) {
            snprintf(err, errsz,
                     "%s: already exists (a new file is required: an existing file or symbolic "
                     "link there is never written through)",
                     path);
            return GW_EEXIST;
        }
        snprintf(err, errsz, "%s: cannot create: %s", path, strerror(e));
        return GW_EIO;
    }
    /* 0600 whatever the umask: the owner must be able to read back what it wrote */
    if (fchmod(*fd, 0600) != 0) {
        snprintf(err, errsz, "%s: cannot set mode 0600: %s", path, strerror(errno));
        close(*fd);
        unlink(path);
        *fd = -1;
        return GW_EIO;
    }
    return 0;
}

int gw_file_write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;

    while (len) {
        ssize_t w = write(fd, p, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

int gw_file_sync_dir(const char *path, char *err, size_t errsz)
{
    const char *slash = strrchr(path, '/');
    char dir[4096];
    int fd, rc = 0;

    if (slash == NULL)
        snprintf(dir, sizeof dir, ".");
    else if (slash == path)
        snprintf(dir, sizeof dir, "/");
    else if ((size_t)(slash - path) < sizeof dir)
        snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
    else {
        snprintf(err, errsz, "%.64s...: directory name too long", path);
        return GW_EIO;
    }
    fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0 || fsync(fd) != 0) {
        snprintf(err, errsz, "%s: cannot sync the directory: %s", dir, strerror(errno));
        rc = GW_EIO;
    }
    if (fd >= 0)
        close(fd);
    return rc;
}
