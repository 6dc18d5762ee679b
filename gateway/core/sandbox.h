/* sandbox.h: a system-call filter for a process that only computes: the password-hashing process
 * (workers.c), which takes jobs from a shared mapping and answers on its socket; and one for the
 * zygote that forks those processes (gw_sandbox_enter_zygote, below).
 *
 * gw_sandbox_prepare(fd) builds the filter (fd: the process's socket), once, before the process
 * has a second thread; gw_sandbox_enter() then sets no_new_privs and installs it on the calling
 * thread, and must be called by every thread of the process (a thread created later inherits it,
 * but the filter refuses clone: the threads are all created first); nothing can remove it. What
 * stays allowed:
 *  - memory: mmap, munmap, mremap, mprotect, brk, madvise (it holds no file to map);
 *  - the threads it has: futex, futex_waitv, set_robust_list, rseq, sched_yield;
 *    sched_getaffinity answers ENOSYS (the C library then reports no affinity); no new thread;
 *  - its socket fd: recvfrom and sendto on it alone (not on stdio), close of any descriptor, fcntl
 *    F_GETFD and F_GETFL only (F_SETOWN and F_SETSIG would have the kernel signal another process);
 *  - time and sleep: clock_gettime, clock_getres and clock_nanosleep on clocks with a non-negative
 *    id (a negative one is a CPU clock named by pid or thread, or a descriptor's clock),
 *    gettimeofday, nanosleep; getrandom;
 *  - about itself: getpid, gettid, getppid, the user and group ids, and getsid, sched_getscheduler,
 *    sched_getparam only for pid 0, prctl PR_GET_DUMPABLE only;
 *  - signals: its own mask and handlers, sigaltstack, tgkill of its own pid only (abort);
 *  - the end: exit, exit_group, rt_sigreturn, restart_syscall;
 *  - in a build with AddressSanitizer, write to descriptor 2 (its reports).
 * Every other call fails with EPERM: no open, no socket or connect, no exec, no fork, no new
 * thread, no kill, tkill, sigqueue or pidfd, no ptrace or process_vm_*, no change of any process's
 * priority or limits, no io_uring, no ioctl, no write or read. A call made under another
 * architecture's numbering (x32 on x86_64, a 32-bit entry) kills the process.
 *
 * Call them after the process's own set-up (scheduling, cgroup) and before any thread reads a
 * job. Each returns 0, or an errno (gw_sandbox_enter: prepare's, EINVAL when not prepared, or the
 * kernel's): ENOSYS when this build knows no filter for the
 * machine's architecture (x86_64 and aarch64 have one), E2BIG when the program would exceed its
 * fixed size (a change to this file; unit:test_sandbox catches it), else the kernel's refusal
 * (EINVAL: no seccomp filters in this kernel). No filter is installed then; the caller decides
 * (workers.c: the process ends and hashing is off unless [auth] worker_filter_required = false). */
#ifndef GW_SANDBOX_H
#define GW_SANDBOX_H

#include <stdbool.h>

int gw_sandbox_prepare(int fd);
int gw_sandbox_enter(void);

/* The zygote's filter (workers.c: the process that forks the hashing processes), installed at once
 * on the calling process, which has one thread; nothing can remove it, and every process it forks
 * inherits it, under the compute-only filter that one then adds (filters stack: a call must pass
 * both). fd: its socket (3), which is also the number of each child's socket; oom_fd: a
 * descriptor it may write (its /proc/self/oom_score_adj, raised around each fork so that the child
 * inherits 1000), or -1. What stays allowed, beyond the compute-only set above (its tgkill: of the
 * zygote's pid only, so a child's abort() ends it by the C library's fallback instead):
 *  - its socket: recvfrom, sendto and sendmsg on fd alone; socketpair(AF_UNIX, SOCK_SEQPACKET |
 *    SOCK_CLOEXEC, 0) only (a child's socket), poll and ppoll;
 *  - its children: clone with fork()'s flags or pthread_create's (clone3 answers ENOSYS, so the C
 *    library falls back to clone, whose flags the filter can see), pidfd_open, wait4, waitid,
 *    pidfd_send_signal of SIGKILL only, write of oom_fd;
 *  - what a child does before its own filter: dup2/dup3 and close_range (its socket to 3, the rest
 *    closed), prctl PR_SET_PDEATHSIG, PR_SET_NAME, PR_SET_NO_NEW_PRIVS, PR_SET_SECCOMP (its own
 *    filter) and PR_GET_DUMPABLE, sched_setscheduler(0, SCHED_IDLE) and setpriority(PRIO_PROCESS,
 *    0, 19) of the calling thread.
 * Every other call fails with EPERM: no open or openat, no socket, connect, bind or sendmsg
 * elsewhere, no execve, no kill, tkill or sigqueue, no ptrace or process_vm_*, no setsid, no
 * change of another process's priority or limits, no namespace, no ioctl, no read, no write but
 * oom_fd (and descriptor 2 with AddressSanitizer). Not closed: pidfd_open of any pid followed by
 * pidfd_send_signal(SIGKILL) (the pid of the child it forks cannot be known in advance), so a
 * zygote taken over can still kill a process of the gateway's user. Returns 0 or an errno as
 * gw_sandbox_enter; gw_sandbox_refuse_for_tests refuses it too. */
int gw_sandbox_enter_zygote(int fd, int oom_fd);

/* Whether the filter lets descriptor 2 be written: true only in a build with AddressSanitizer,
 * whose reports the process keeps its stderr for. */
bool gw_sandbox_keeps_stderr(void);

/* For tests: gw_sandbox_prepare (and so gw_sandbox_enter), and gw_sandbox_enter_zygote, install
 * nothing and returns err (0: back to normal). Inherited by processes forked afterwards. */
void gw_sandbox_refuse_for_tests(int err);

#endif
