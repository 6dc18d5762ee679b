/* sandbox.h: a system-call filter for a process that only computes: the password-hashing process
 * (workers.c), which takes jobs from a shared mapping and answers on its socket.
 *
 * gw_sandbox_compute() sets no_new_privs and installs a seccomp filter on the calling thread;
 * every thread it creates afterwards inherits it, and nothing can remove it. What stays allowed:
 * memory (mmap, munmap, mremap, mprotect, brk, madvise), threads (clone with CLONE_THREAD, futex,
 * set_robust_list, rseq; clone3 answers ENOSYS so that the C library falls back to clone, whose
 * flags the filter can read), messages on descriptors it already holds (recvfrom, sendto,
 * recvmsg, sendmsg, close, fcntl), time, sleep, randomness (getrandom), signals to itself only
 * (tgkill of its own pid, for abort), read-only queries about itself (getpid, gettid, getppid,
 * getsid, the ids, sched_getscheduler, sched_getparam, sched_getaffinity (pthread_getattr_np
 * asks it), prctl PR_GET_DUMPABLE) and exit. Every
 * other call fails with EPERM: no open, no socket or connect, no exec, no fork, no kill, tkill or
 * pidfd signal, no ptrace or process_vm_*, no change of another process's priority or limits,
 * no io_uring, no ioctl, no write or read (so not even its stdio). A call made under another
 * architecture's numbering (x32 on x86_64, a 32-bit entry) kills the process.
 *
 * Call it after the process's own set-up (scheduling, cgroup) and before it creates any thread
 * or reads any job. Returns 0, or an errno: ENOSYS when this build knows no filter for the
 * machine's architecture (x86_64 and aarch64 have one), else the kernel's refusal (EINVAL: no
 * seccomp filters in this kernel). The caller reports a failure; the process then runs
 * unfiltered. */
#ifndef GW_SANDBOX_H
#define GW_SANDBOX_H

int gw_sandbox_compute(void);

#endif
