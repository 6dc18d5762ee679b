/* nodump.h: what the daemon (waygated) and the CLI (waygatectl) do first thing in main, because
 * their memory holds clear personal data and keys (the daemon's requests; the CLI's keyring in
 * `keys rewrap`, `keys migrate-suite` and `audit export`, and clear records in migrate-suite): no
 * core file (RLIMIT_CORE 0, soft and hard, so it cannot be raised again) and not dumpable (no
 * ptrace or /proc/PID/mem by other processes of the same uid; /proc/PID is then root's). */
#ifndef GW_NODUMP_H
#define GW_NODUMP_H

/* Returns 0, or -1 (errno set) when either could not be set: the caller then stops. */
int gw_nodump(void);

#endif
