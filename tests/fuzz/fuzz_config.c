/* fuzz_config.c: the configuration parser (core/config.c, gw_config_load) on arbitrary file
 * contents. gw_config_load reads a path and checks that the files it names can be opened, so the
 * input is written to fuzz.conf in a private directory (on /dev/shm when there is one) that also
 * holds files/{cert,key,ca,crl}.pem, files/keyring and files/policy.conf, the names the seeds
 * use: a line naming them parses on, and the fuzzer gets past [tls] to the rest. A load either
 * fails with a one-line message and leaves *out zeroed, or yields a config that
 * gw_config_clear frees (the leak checker sees what it forgets). */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

static char dir[64], path[96];

static void put(const char *name, const char *text)
{
    char p[160];
    FILE *f;

    snprintf(p, sizeof(p), "%s/%s", dir, name);
    f = fopen(p, "w");
    if (f == NULL || fputs(text, f) < 0 || fclose(f) != 0)
        abort();
}

static void cleanup(void)
{
    static const char *const names[] = {"fuzz.conf",        "files/cert.pem", "files/key.pem",
                                        "files/ca.pem",     "files/crl.pem",  "files/keyring",
                                        "files/policy.conf"};
    char p[160];

    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        snprintf(p, sizeof(p), "%s/%s", dir, names[i]);
        unlink(p);
    }
    snprintf(p, sizeof(p), "%s/files", dir);
    rmdir(p);
    rmdir(dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    char files[96];

    (void)argc;
    (void)argv;
    snprintf(dir, sizeof(dir), "%s/fuzz_config.XXXXXX",
             access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp");
    if (mkdtemp(dir) == NULL)
        abort();
    snprintf(files, sizeof(files), "%s/files", dir);
    if (mkdir(files, 0700) != 0)
        abort();
    put("files/cert.pem", "not read by the parser\n");
    put("files/key.pem", "not read by the parser\n");
    put("files/ca.pem", "not read by the parser\n");
    put("files/crl.pem", "not read by the parser\n");
    put("files/keyring", "not read by the parser\n");
    put("files/policy.conf", "not read by the parser\n");
    snprintf(path, sizeof(path), "%s/fuzz.conf", dir);
    atexit(cleanup);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const struct gw_config zero;
    struct gw_config c;
    char err[512];
    int fd, rc;

    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0 || write(fd, data, size) != (ssize_t)size || close(fd) != 0)
        abort();
    rc = gw_config_load(path, &c, err, sizeof(err));
    if (memchr(err, '\0', sizeof(err)) == NULL)
        __builtin_trap();
    if (rc != 0) {
        if (err[0] == '\0' || memcmp(&c, &zero, sizeof(c)) != 0)
            __builtin_trap(); /* a refusal says why and leaves nothing behind */
        return 0;
    }
    gw_config_clear(&c);
    return 0;
}
