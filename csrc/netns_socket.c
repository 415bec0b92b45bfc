/* netns_socket.c: create a socket inside another network namespace.
 *
 * Runs in the supervisor.  A socket belongs for its whole life to the network
 * namespace it was created in, whichever process later holds it: so the
 * supervisor can make a listening socket that exists only inside a sandbox's
 * private namespace (its loopback) and serve it from outside, without the
 * sandbox getting any other network and without a process of ours inside.
 *
 * setns(CLONE_NEWNET) changes the namespace of the calling thread only, which
 * is why this is C and one call: nothing else runs on this thread (cffi has
 * released the GIL, and no Python runs here) while it is in the sandbox's
 * namespace.
 */
#include "sbx_sys.h"   /* first: _GNU_SOURCE for setns and CLONE_NEWNET */
#include "sandbox_core.h"
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

int sbx_socket_in_netns(int netns_fd, int domain, int type, int protocol)
{
    /* thread-self, not self: another thread may be somewhere else. */
    int home = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    if (home < 0)
        return -errno;
    if (setns(netns_fd, CLONE_NEWNET) < 0) {
        int err = errno;
        close(home);
        return -err;
    }
    int fd = socket(domain, type | SOCK_CLOEXEC, protocol);
    int err = fd < 0 ? errno : 0;
    if (setns(home, CLONE_NEWNET) < 0) {
        /* This thread would stay in the sandbox's namespace, and every socket
         * it made later (an HTTP server, a connection to a database) would
         * silently live there: the sandbox could reach it, and it could reach
         * nothing it should.  No error code makes that safe for a caller to
         * ignore, so end the process. */
        abort();
    }
    close(home);
    return fd < 0 ? -err : fd;
}
