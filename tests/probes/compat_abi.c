/*
 * compat_abi.c: issue system calls through the foreign ABIs a 64-bit x86
 * process can reach (catalogue #27): i386 via `int $0x80`, and x32 via the
 * `syscall` instruction with __X32_SYSCALL_BIT set.
 *
 * Built twice by tests/hostile/test_compat_abi.py:
 *   gcc -static -O1 -o compat_i386 compat_abi.c
 *   gcc -static -O1 -DPROBE_X32 -o compat_x32 compat_abi.c
 * Syscall numbers come from the kernel headers of that ABI (asm/unistd_32.h
 * or asm/unistd_x32.h), never written down here.
 *
 * Usage: compat_<abi> CASE
 *   CASE: getpid | socket_FAMILY | socketcall_FAMILY (i386 only), FAMILY: alg | vsock | packet
 * If the call returns, prints "CASE returned N" (N = raw result, -errno on
 * failure) and exits 0.  A filter that kills foreign ABIs ends the process
 * with SIGSYS before anything is printed.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <linux/net.h>

#ifdef PROBE_X32
/* <asm/unistd.h> defines __X32_SYSCALL_BIT and, for an ILP32 build, pulls in
 * unistd_x32.h; pretend to be one only for this last include. */
#define __ILP32__ 1
#include <asm/unistd.h>
#undef __ILP32__
#else
#include <asm/unistd_32.h>
#endif

static long foreign_syscall3(long nr, long a, long b, long c)
{
    long ret;
#ifdef PROBE_X32
    /* x32: the 64-bit entry point with the x32 bit in the number. */
    __asm__ volatile("syscall"
                     : "=a"(ret)
                     : "a"(nr), "D"(a), "S"(b), "d"(c)
                     : "rcx", "r11", "memory");
#else
    /* i386: the compat entry point; arguments are truncated to 32 bits. */
    __asm__ volatile("int $0x80"
                     : "=a"(ret)
                     : "a"(nr), "b"(a), "c"(b), "d"(c)
                     : "r8", "r9", "r10", "r11", "memory");
#endif
    return ret;
}

static int family(const char *name)
{
    if (strcmp(name, "alg") == 0)
        return AF_ALG;
    if (strcmp(name, "vsock") == 0)
        return AF_VSOCK;
    if (strcmp(name, "packet") == 0)
        return AF_PACKET;
    return -1;
}

int main(int argc, char **argv)
{
    const char *which = argc > 1 ? argv[1] : "getpid";
    long ret;
    int fam;

    if (strcmp(which, "getpid") == 0) {
        ret = foreign_syscall3(__NR_getpid, 0, 0, 0);
    } else if (strncmp(which, "socket_", 7) == 0 && (fam = family(which + 7)) >= 0) {
        ret = foreign_syscall3(__NR_socket, fam, SOCK_DGRAM, 0);
    } else if (strncmp(which, "socketcall_", 11) == 0 && (fam = family(which + 11)) >= 0) {
#ifdef __NR_socketcall
        /* i386 socketcall(SYS_SOCKET, args): the args live in memory a BPF
         * filter cannot read, and must sit below 4 GiB for the i386 ABI. */
        unsigned int *args = mmap(NULL, 4096, PROT_READ | PROT_WRITE,
                                  MAP_PRIVATE | MAP_ANONYMOUS | MAP_32BIT, -1, 0);
        if (args == MAP_FAILED) {
            perror("mmap");
            return 2;
        }
        args[0] = (unsigned int)fam;
        args[1] = SOCK_DGRAM;
        args[2] = 0;
        ret = foreign_syscall3(__NR_socketcall, SYS_SOCKET, (long)(unsigned long)args, 0);
#else
        printf("%s unsupported\n", which);
        return 3;
#endif
    } else {
        fprintf(stderr, "unknown case %s\n", which);
        return 2;
    }
    printf("%s returned %ld\n", which, ret);
    return 0;
}
