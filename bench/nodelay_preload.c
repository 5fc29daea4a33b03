/* bench/nodelay_preload: a diagnostic LD_PRELOAD shim, not part of any program. It sets
 * TCP_NODELAY on every IPv4/IPv6 socket a process connects, so that `bench/incremental.py
 * --nodelay` can show what a sender loses to Nagle's algorithm meeting the receiver's delayed
 * ACK (a request written in several pieces waits ~40 ms for the ACK of the piece before).
 * Built by incremental.py itself: cc -shared -fPIC -o nodelay.so nodelay_preload.c -ldl */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

int connect(int fd, const struct sockaddr *addr, socklen_t len)
{
    static int (*real_connect)(int, const struct sockaddr *, socklen_t);
    if (!real_connect) {
        void *sym = dlsym(RTLD_NEXT, "connect");
        if (!sym)
            return -1;
        *(void **)&real_connect = sym;
    }
    if (addr && (addr->sa_family == AF_INET || addr->sa_family == AF_INET6)) {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    return real_connect(fd, addr, len);
}
