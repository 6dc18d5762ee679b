/* sandbox.c: the compute-only system-call filter (sandbox.h), a classic BPF program for seccomp,
 * built at run time because some rules name the process's own pid or its socket.
 *
 * The program: the architecture must be this build's (else the process is killed: another
 * architecture numbers calls differently, and x32's calls on x86_64 carry a flag bit); each call
 * allowed whatever its arguments is one comparison and one return; a call allowed for some
 * arguments only compares them (an int argument's whole 64 bits: the high half must be 0, or the
 * sign extension of a negative value where the rule is about the sign); sched_getaffinity
 * answers ENOSYS (pthread_getattr_np takes that as "no affinity to report") and everything else,
 * clone, clone3 and fork included, EPERM: the process's threads are created before it, and each
 * puts the filter on itself (gw_sandbox_enter; prctl cannot synchronise threads, and the seccomp
 * call that can is not in the shipped unit's allowed set). A filter that answers EPERM instead of
 * killing keeps a library's unforeseen call (a new C library's, a sanitizer's) a failed call
 * rather than a dead process, and lets tests watch each refusal. The zygote's program
 * (gw_sandbox_enter_zygote) has the same shape: the compute-only set, then what forking, reaping
 * and a child's set-up need, with arguments compared where a call could reach further. */
#include "sandbox.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>

#if defined(__x86_64__)
#define SB_ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define SB_ARCH AUDIT_ARCH_AARCH64
#endif

#if defined(__SANITIZE_ADDRESS__)
#define SB_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SB_ASAN 1
#endif
#endif

static int refused_for_tests;

void gw_sandbox_refuse_for_tests(int err)
{
    refused_for_tests = err;
}

#ifdef SB_ARCH

#define SB_MAX 512 /* instructions; a program that would be longer is refused (E2BIG) */

#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define SB_LO 0
#define SB_HI 4
#else
#define SB_LO 4
#define SB_HI 0
#endif
#define SB_ARG(i, half) ((uint32_t)(offsetof(struct seccomp_data, args) + 8 * (i) + (half)))

#define RET_ALLOW SECCOMP_RET_ALLOW
#define RET_ERRNO(e) (SECCOMP_RET_ERRNO | ((e)&SECCOMP_RET_DATA))

/* Calls allowed whatever their arguments. */
static const int allowed[] = {
    /* memory */
    SYS_mmap,
    SYS_munmap,
    SYS_mremap,
    SYS_mprotect,
    SYS_brk,
    SYS_madvise,
    /* threads and their synchronisation */
    SYS_futex,
    SYS_set_robust_list,
#ifdef SYS_rseq
    SYS_rseq,
#endif
#ifdef SYS_futex_waitv
    SYS_futex_waitv,
#endif
    SYS_sched_yield,
    /* its descriptors (sending and receiving: its socket only, below) */
    SYS_close,
    /* time (clocks by id: below), sleep, randomness */
    SYS_gettimeofday,
#ifdef SYS_nanosleep
    SYS_nanosleep,
#endif
    SYS_getrandom,
    /* queries about itself (those that could name another process: below) */
    SYS_getpid,
    SYS_gettid,
    SYS_getppid,
    SYS_getuid,
    SYS_geteuid,
    SYS_getgid,
    SYS_getegid,
    /* its own signal state, the end */
    SYS_rt_sigprocmask,
    SYS_rt_sigreturn,
    SYS_rt_sigaction,
    SYS_sigaltstack,
    SYS_restart_syscall,
    SYS_exit,
    SYS_exit_group,
};

struct prog {
    struct sock_filter ins[SB_MAX];
    unsigned short n;
};

static void put(struct prog *p, struct sock_filter f)
{
    if (p->n < SB_MAX)
        p->ins[p->n] = f;
    p->n++; /* past SB_MAX: gw_sandbox_prepare refuses the program */
}

static void stmt(struct prog *p, uint16_t code, uint32_t k)
{
    put(p, (struct sock_filter)BPF_STMT(code, k));
}

static void jump(struct prog *p, uint16_t code, uint32_t k, uint8_t jt, uint8_t jf)
{
    put(p, (struct sock_filter)BPF_JUMP(code, k, jt, jf));
}

/* If the call is nr, returns ret; else goes on. */
static void call_ret(struct prog *p, int nr, uint32_t ret)
{
    jump(p, BPF_JMP | BPF_JEQ | BPF_K, (uint32_t)nr, 0, 1);
    stmt(p, BPF_RET | BPF_K, ret);
}

/* If the call is nr and its argument i (high half 0) is one of v[0..n-1], allows it; if it is nr
 * with another value, EPERM; else goes on with the call number still in the accumulator. */
static void call_arg_in(struct prog *p, int nr, unsigned i, const uint32_t *v, unsigned n)
{
    jump(p, BPF_JMP | BPF_JEQ | BPF_K, (uint32_t)nr, 0, (uint8_t)(5 + n));
    stmt(p, BPF_LD | BPF_W | BPF_ABS, SB_ARG(i, SB_HI));
    jump(p, BPF_JMP | BPF_JEQ | BPF_K, 0, 0, (uint8_t)(n + 2));
    stmt(p, BPF_LD | BPF_W | BPF_ABS, SB_ARG(i, SB_LO));
    for (unsigned k = 0; k < n; k++)
        jump(p, BPF_JMP | BPF_JEQ | BPF_K, v[k], (uint8_t)(n - k - 1), k + 1 == n ? 1 : 0);
    stmt(p, BPF_RET | BPF_K, RET_ALLOW);
    stmt(p, BPF_RET | BPF_K, RET_ERRNO(EPERM));
}

/* If the call is nr, allows it when its argument i is not negative (a clock id: a negative one
 * names another process's or thread's CPU clock), EPERM otherwise; else goes on with the call
 * number still in the accumulator. The high half must be 0: glibc passes a clockid_t sign-extended,
 * so a negative id has high half 0xffffffff. */
static void call_arg_not_negative(struct prog *p, int nr, unsigned i)
{
    jump(p, BPF_JMP | BPF_JEQ | BPF_K, (uint32_t)nr, 0, 6);
    stmt(p, BPF_LD | BPF_W | BPF_ABS, SB_ARG(i, SB_HI));
    jump(p, BPF_JMP | BPF_JEQ | BPF_K, 0, 0, 3);
    stmt(p, BPF_LD | BPF_W | BPF_ABS, SB_ARG(i, SB_LO));
    jump(p, BPF_JMP | BPF_JSET | BPF_K, 0x80000000u, 1, 0);
    stmt(p, BPF_RET | BPF_K, RET_ALLOW);
    stmt(p, BPF_RET | BPF_K, RET_ERRNO(EPERM));
}

/* If the call is nr, allows it when each of its arguments idx[k] (high half 0) equals val[k], EPERM
 * otherwise; else goes on with the call number still in the accumulator. */
static void call_args_eq(struct prog *p, int nr, unsigned n, const unsigned *idx,
                         const uint32_t *val)
{
    jump(p, BPF_JMP | BPF_JEQ | BPF_K, (uint32_t)nr, 0, (uint8_t)(4 * n + 2));
    for (unsigned k = 0; k < n; k++) {
        stmt(p, BPF_LD | BPF_W | BPF_ABS, SB_ARG(idx[k], SB_HI));
        jump(p, BPF_JMP | BPF_JEQ | BPF_K, 0, 0, (uint8_t)(4 * (n - k) - 1));
        stmt(p, BPF_LD | BPF_W | BPF_ABS, SB_ARG(idx[k], SB_LO));
        jump(p, BPF_JMP | BPF_JEQ | BPF_K, val[k], 0, (uint8_t)(4 * (n - k) - 3));
    }
    stmt(p, BPF_RET | BPF_K, RET_ALLOW);
    stmt(p, BPF_RET | BPF_K, RET_ERRNO(EPERM));
}

/* The architecture check every program starts with: another's numbering kills the process; then
 * the call number in the accumulator. */
static void arch_check(struct prog *p)
{
    stmt(p, BPF_LD | BPF_W | BPF_ABS, (uint32_t)offsetof(struct seccomp_data, arch));
    jump(p, BPF_JMP | BPF_JEQ | BPF_K, SB_ARCH, 1, 0);
    stmt(p, BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS);
    stmt(p, BPF_LD | BPF_W | BPF_ABS, (uint32_t)offsetof(struct seccomp_data, nr));
#ifdef __x86_64__
    jump(p, BPF_JMP | BPF_JGE | BPF_K, 0x40000000u, 0, 1); /* __X32_SYSCALL_BIT */
    stmt(p, BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS);
#endif
}

/* The rules both programs share after their own: queries about itself that could name another
 * process (pid 0 only), fcntl's harmless queries, clocks by id, sched_getaffinity's ENOSYS. */
static void shared_rules(struct prog *p)
{
    static const uint32_t zero[] = {0}, fcntl_cmds[] = {F_GETFD, F_GETFL};

    call_arg_in(p, SYS_getsid, 0, zero, 1);
    call_arg_in(p, SYS_sched_getscheduler, 0, zero, 1);
    call_arg_in(p, SYS_sched_getparam, 0, zero, 1);
    call_arg_in(p, SYS_fcntl, 1, fcntl_cmds, 2);
    call_arg_not_negative(p, SYS_clock_gettime, 0);
    call_arg_not_negative(p, SYS_clock_getres, 0);
    call_arg_not_negative(p, SYS_clock_nanosleep, 0);
    /* pthread_getattr_np (ASan) treats ENOSYS as "no affinity to report" */
    call_ret(p, SYS_sched_getaffinity, RET_ERRNO(ENOSYS));
}

static int install(const struct prog *p)
{
    struct sock_fprog fp = {.len = p->n, .filter = (struct sock_filter *)p->ins};

    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
        return errno;
    if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &fp, 0, 0) != 0)
        return errno;
    return 0;
}

static struct prog prog;  /* gw_sandbox_prepare's; read-only once built */
static int prepared = -1; /* its outcome: -1 not yet, 0 built, else errno */

bool gw_sandbox_keeps_stderr(void)
{
#ifdef SB_ASAN
    return true;
#else
    return false;
#endif
}

int gw_sandbox_prepare(int fd)
{
    static const uint32_t dumpable[] = {PR_GET_DUMPABLE};
    const uint32_t sock[] = {(uint32_t)fd}, self[] = {(uint32_t)getpid()};
#ifdef SB_ASAN
    static const uint32_t stderr_fd[] = {2};
#endif
    struct prog *p = &prog; /* one thread, before any other of the process exists */
    size_t i;

    if (refused_for_tests != 0)
        return prepared = refused_for_tests;
    p->n = 0;
    arch_check(p);
    for (i = 0; i < sizeof(allowed) / sizeof(allowed[0]); i++)
        call_ret(p, allowed[i], RET_ALLOW);
    call_arg_in(p, SYS_tgkill, 0, self, 1); /* abort() and raise(): itself only */
    call_arg_in(p, SYS_prctl, 0, dumpable, 1);
    call_arg_in(p, SYS_recvfrom, 0, sock, 1); /* its socket only: not stdio */
    call_arg_in(p, SYS_sendto, 0, sock, 1);
#ifdef SB_ASAN
    call_arg_in(p, SYS_write, 0, stderr_fd, 1); /* a sanitizer's report (test builds) */
#endif
    shared_rules(p);
    /* clone, clone3, fork: refused like everything else (the threads exist already) */
    stmt(p, BPF_RET | BPF_K, RET_ERRNO(EPERM));
    return prepared = p->n > SB_MAX ? E2BIG : 0;
}

int gw_sandbox_enter(void)
{
    if (prepared != 0)
        return prepared < 0 ? EINVAL : prepared;
    return install(&prog);
}

/* What the zygote does beyond the compute-only set, whatever the arguments: wait for its socket
 * and its children's pidfds, reap them; what a child does before its own filter: put its socket
 * at 3 and close the rest (dup2, close_range), set its robust futex list (fork). */
static const int zygote_allowed[] = {
#ifdef SYS_poll
    SYS_poll,
#endif
    SYS_ppoll,      SYS_wait4,
    SYS_waitid,
#ifdef SYS_dup2
    SYS_dup2,
#endif
    SYS_dup3,       SYS_close_range,
    SYS_pidfd_open, /* of the child it forked, before any wait (cannot name it otherwise) */
};

/* fork() as glibc makes it, and pthread_create's clone (glibc falls back to it when clone3
 * answers ENOSYS): the only two sets of clone flags allowed. No namespace, no CLONE_PARENT, no
 * thread that shares less than a thread does. */
#define SB_FORK_FLAGS (CLONE_CHILD_SETTID | CLONE_CHILD_CLEARTID | SIGCHLD)
#define SB_THREAD_FLAGS                                                                            \
    (CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD | CLONE_SYSVSEM |            \
     CLONE_SETTLS | CLONE_PARENT_SETTID | CLONE_CHILD_CLEARTID)

static struct prog zprog; /* gw_sandbox_enter_zygote's */

int gw_sandbox_enter_zygote(int fd, int oom_fd)
{
    static const uint32_t clone_flags[] = {SB_FORK_FLAGS, SB_THREAD_FLAGS};
    static const uint32_t prctl_ops[] = {PR_SET_PDEATHSIG, PR_SET_NAME, PR_SET_NO_NEW_PRIVS,
                                         PR_SET_SECCOMP, PR_GET_DUMPABLE};
    static const unsigned pair_args[] = {0, 1, 2}, sched_args[] = {0, 1}, prio_args[] = {0, 1, 2};
    static const uint32_t pair_vals[] = {AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0};
    static const uint32_t sched_vals[] = {0, SCHED_IDLE}, prio_vals[] = {PRIO_PROCESS, 0, 19};
    static const uint32_t sigkill[] = {SIGKILL};
    const uint32_t sock[] = {(uint32_t)fd}, self[] = {(uint32_t)getpid()};
    uint32_t writable[2];
    unsigned nwritable = 0;
    struct prog *p = &zprog; /* the zygote has one thread */
    size_t i;

    if (refused_for_tests != 0)
        return refused_for_tests;
    if (oom_fd >= 0)
        writable[nwritable++] = (uint32_t)oom_fd; /* its oom_score_adj, set around each fork */
#ifdef SB_ASAN
    writable[nwritable++] = 2; /* a sanitizer's report (test builds) */
#endif
    p->n = 0;
    arch_check(p);
    for (i = 0; i < sizeof(allowed) / sizeof(allowed[0]); i++)
        call_ret(p, allowed[i], RET_ALLOW);
    for (i = 0; i < sizeof(zygote_allowed) / sizeof(zygote_allowed[0]); i++)
        call_ret(p, zygote_allowed[i], RET_ALLOW);
    /* clone3's flags are in memory, out of the filter's sight: glibc then uses clone */
    call_ret(p, SYS_clone3, RET_ERRNO(ENOSYS));
    call_arg_in(p, SYS_clone, 0, clone_flags, 2);
    call_args_eq(p, SYS_socketpair, 3, pair_args, pair_vals); /* a child's socket, no other */
    call_arg_in(p, SYS_recvfrom, 0, sock, 1); /* its socket (a child's too: both are 3) */
    call_arg_in(p, SYS_sendto, 0, sock, 1);
    call_arg_in(p, SYS_sendmsg, 0, sock, 1);
    if (nwritable > 0)
        call_arg_in(p, SYS_write, 0, writable, nwritable);
    call_arg_in(p, SYS_pidfd_send_signal, 1, sigkill, 1); /* a child's end, through its pidfd */
    call_arg_in(p, SYS_tgkill, 0, self, 1);               /* its own abort() */
    call_arg_in(p, SYS_prctl, 0, prctl_ops, 5);
    /* a child's own SCHED_IDLE (or nice +19 where refused), on the calling thread only */
    call_args_eq(p, SYS_sched_setscheduler, 2, sched_args, sched_vals);
    call_args_eq(p, SYS_setpriority, 3, prio_args, prio_vals);
    shared_rules(p);
    stmt(p, BPF_RET | BPF_K, RET_ERRNO(EPERM));
    if (p->n > SB_MAX)
        return E2BIG;
    return install(p);
}

#else /* no filter for this architecture */

int gw_sandbox_prepare(int fd)
{
    (void)fd;
    return refused_for_tests != 0 ? refused_for_tests : ENOSYS;
}

int gw_sandbox_enter(void)
{
    return refused_for_tests != 0 ? refused_for_tests : ENOSYS;
}

int gw_sandbox_enter_zygote(int fd, int oom_fd)
{
    (void)fd;
    (void)oom_fd;
    return refused_for_tests != 0 ? refused_for_tests : ENOSYS;
}

#endif
