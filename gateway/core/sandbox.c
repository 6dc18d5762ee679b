/* sandbox.c: the compute-only system-call filter (sandbox.h), a classic BPF program for seccomp,
 * built at run time because one rule (tgkill) names the process's own pid.
 *
 * The program: the architecture must be this build's (else the process is killed: another
 * architecture numbers calls differently, and x32's calls on x86_64 carry a flag bit); each
 * allowed call is one comparison and one return; clone is allowed only with CLONE_THREAD in its
 * flags and tgkill only for the process's own pid (both compare the whole 64-bit argument);
 * clone3 answers ENOSYS (its flags are in memory the filter cannot read) and everything else
 * EPERM. A filter that answers EPERM instead of killing keeps a library's unforeseen call (a
 * new C library's, a sanitizer's) a failed call rather than a dead process, and lets tests watch
 * each refusal. */
#include "sandbox.h"

#include <errno.h>
#include <sched.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/prctl.h>
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

#ifdef SB_ARCH

#define SB_MAX 160 /* instructions: two per allowed call, and the fixed parts */

#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define SB_LO 0
#define SB_HI 4
#else
#define SB_LO 4
#define SB_HI 0
#endif
#define SB_ARG(i, half) ((uint32_t)(offsetof(struct seccomp_data, args) + 8 * (i) + (half)))

#define RET_ALLOW SECCOMP_RET_ALLOW
#define RET_ERRNO(e) (SECCOMP_RET_ERRNO | ((e) & SECCOMP_RET_DATA))

/* Calls allowed whatever their arguments. */
static const int allowed[] = {
    /* memory */
    SYS_mmap, SYS_munmap, SYS_mremap, SYS_mprotect, SYS_brk, SYS_madvise,
    /* threads and their synchronisation */
    SYS_futex, SYS_set_robust_list,
#ifdef SYS_rseq
    SYS_rseq,
#endif
#ifdef SYS_futex_waitv
    SYS_futex_waitv,
#endif
    SYS_sched_yield,
    /* the descriptors it holds (its socket): no call here makes a new one out of nothing */
    SYS_recvfrom, SYS_sendto, SYS_recvmsg, SYS_sendmsg, SYS_close, SYS_fcntl,
    /* time, sleep, randomness */
    SYS_clock_gettime, SYS_clock_getres, SYS_gettimeofday, SYS_clock_nanosleep,
#ifdef SYS_nanosleep
    SYS_nanosleep,
#endif
    SYS_getrandom,
    /* queries about itself */
    SYS_getpid, SYS_gettid, SYS_getppid, SYS_getsid, SYS_getuid, SYS_geteuid, SYS_getgid,
    SYS_getegid, SYS_sched_getscheduler, SYS_sched_getparam, SYS_sched_getaffinity,
    /* its own signal state, the end */
    SYS_rt_sigprocmask, SYS_rt_sigreturn, SYS_rt_sigaction, SYS_sigaltstack, SYS_restart_syscall,
    SYS_exit, SYS_exit_group,
#ifdef __SANITIZE_ADDRESS__
    /* a sanitizer's report (test builds): lost otherwise */
    SYS_write,
#endif
};

struct prog {
    struct sock_filter ins[SB_MAX];
    unsigned short n;
};

static void put(struct prog *p, struct sock_filter f)
{
    if (p->n < SB_MAX)
        p->ins[p->n] = f;
    p->n++; /* past SB_MAX: gw_sandbox_compute refuses the program */
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

/* If the call is nr and its argument i equals v (all 64 bits), allows it; if it is nr with
 * another value, EPERM; else goes on. Leaves the call number in the accumulator. */
static void call_arg_eq(struct prog *p, int nr, unsigned i, uint64_t v)
{
    jump(p, BPF_JMP | BPF_JEQ | BPF_K, (uint32_t)nr, 0, 6);
    stmt(p, BPF_LD | BPF_W | BPF_ABS, SB_ARG(i, SB_HI));
    jump(p, BPF_JMP | BPF_JEQ | BPF_K, (uint32_t)(v >> 32), 0, 3);
    stmt(p, BPF_LD | BPF_W | BPF_ABS, SB_ARG(i, SB_LO));
    jump(p, BPF_JMP | BPF_JEQ | BPF_K, (uint32_t)v, 0, 1);
    stmt(p, BPF_RET | BPF_K, RET_ALLOW);
    stmt(p, BPF_RET | BPF_K, RET_ERRNO(EPERM));
}

int gw_sandbox_compute(void)
{
    static struct prog p; /* one thread, once, before any other exists */
    struct sock_fprog fp;
    size_t i;

    p.n = 0;
    /* the architecture: another's numbering kills the process */
    stmt(&p, BPF_LD | BPF_W | BPF_ABS, (uint32_t)offsetof(struct seccomp_data, arch));
    jump(&p, BPF_JMP | BPF_JEQ | BPF_K, SB_ARCH, 1, 0);
    stmt(&p, BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS);
    stmt(&p, BPF_LD | BPF_W | BPF_ABS, (uint32_t)offsetof(struct seccomp_data, nr));
#ifdef __x86_64__
    jump(&p, BPF_JMP | BPF_JGE | BPF_K, 0x40000000u, 0, 1); /* __X32_SYSCALL_BIT */
    stmt(&p, BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS);
#endif
    for (i = 0; i < sizeof(allowed) / sizeof(allowed[0]); i++)
        call_ret(&p, allowed[i], RET_ALLOW);
    call_arg_eq(&p, SYS_tgkill, 0, (uint64_t)getpid()); /* abort() and raise(): itself only */
    stmt(&p, BPF_LD | BPF_W | BPF_ABS, (uint32_t)offsetof(struct seccomp_data, nr));
    call_arg_eq(&p, SYS_prctl, 0, PR_GET_DUMPABLE);
    stmt(&p, BPF_LD | BPF_W | BPF_ABS, (uint32_t)offsetof(struct seccomp_data, nr));
    /* clone: a thread only (CLONE_THREAD in the flags, argument 0's low half) */
    jump(&p, BPF_JMP | BPF_JEQ | BPF_K, SYS_clone, 0, 3);
    stmt(&p, BPF_LD | BPF_W | BPF_ABS, SB_ARG(0, SB_LO));
    jump(&p, BPF_JMP | BPF_JSET | BPF_K, CLONE_THREAD, 0, 1);
    stmt(&p, BPF_RET | BPF_K, RET_ALLOW);
#ifdef SYS_clone3
    stmt(&p, BPF_LD | BPF_W | BPF_ABS, (uint32_t)offsetof(struct seccomp_data, nr));
    call_ret(&p, SYS_clone3, RET_ERRNO(ENOSYS));
#endif
    stmt(&p, BPF_RET | BPF_K, RET_ERRNO(EPERM));
    if (p.n > SB_MAX)
        return E2BIG;

    fp.len = p.n;
    fp.filter = p.ins;
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
        return errno;
    if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &fp, 0, 0) != 0)
        return errno;
    return 0;
}

#else /* no filter for this architecture */

int gw_sandbox_compute(void)
{
    return ENOSYS;
}

#endif
