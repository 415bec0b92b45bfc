/* channel.c: see channel.h.  Runs in the supervisor (not in a sandbox child),
 * so it may block; it never allocates. */
#include <stddef.h>
#include "channel.h"
#include <errno.h>
#include <poll.h>
#include <sched.h>
#include <time.h>
#include <unistd.h>

/* Poll the given descriptors; -1 descriptors are ignored by poll(2). */
static int wait_for(int want_write_fd, int resp_fd, int log_fd, int pid_fd, int timeout_ms, short *events)
{
    struct pollfd fds[3] = {
        {want_write_fd >= 0 ? want_write_fd : resp_fd, want_write_fd >= 0 ? POLLOUT : POLLIN, 0},
        {log_fd, POLLIN, 0},
        {pid_fd, POLLIN, 0},
    };
    int n;
    do {
        n = poll(fds, 3, timeout_ms);
    } while (n < 0 && errno == EINTR);
    if (n < 0)
        return -errno;
    events[0] = fds[0].revents;
    events[1] = fds[1].revents;
    events[2] = fds[2].revents;
    return n;
}

/* What a wait found, as sbx_channel_event bits (the answer's readiness, ev[0],
 * is the caller's business), SBX_CH_TIMEOUT, or -errno. */
static int wait_result(int n, const short *ev)
{
    if (n < 0)
        return n;
    if (n == 0)
        return SBX_CH_TIMEOUT;
    return (ev[1] ? SBX_CH_LOG : 0) | (ev[2] ? SBX_CH_EXIT : 0);
}

int sbx_channel_exchange(int req_fd, const char *frame, size_t len, size_t *written,
                         int resp_fd, int log_fd, int pid_fd, int timeout_ms, int spin_us,
                         char *buf, size_t cap, long *got)
{
    short ev[3];
    int n, result = 0;

    *got = 0;
    /* Send what is left of the request; a full pipe means the runtime is not
     * reading yet (a large payload): wait for room, its output or its end. */
    while (*written < len) {
        ssize_t w = write(req_fd, frame + *written, len - *written);
        if (w > 0) {
            *written += (size_t)w;
            continue;
        }
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && errno == EPIPE)
            return SBX_CH_EXIT;
        if (w < 0 && errno != EAGAIN)
            return -errno;
        n = wait_for(req_fd, resp_fd, log_fd, pid_fd, timeout_ms, ev);
        result = wait_result(n, ev);
        if (result)
            return result;   /* output to drain, an exit, a timeout or an error: room alone means write on */
    }
    /* A short spin before sleeping: when the runtime answers within a few
     * tens of microseconds (it runs on another CPU), this thread is still
     * awake to take the answer, which saves a cross-CPU wake-up of its own. */
    if (spin_us > 0) {
        struct timespec start, now;
        clock_gettime(CLOCK_MONOTONIC, &start);
        for (;;) {
            n = wait_for(-1, resp_fd, log_fd, pid_fd, 0, ev);
            if (n != 0)
                break;
            /* If the runtime shares this CPU, let it run now rather than after the spin. */
            sched_yield();
            clock_gettime(CLOCK_MONOTONIC, &now);
            if ((now.tv_sec - start.tv_sec) * 1000000L + (now.tv_nsec - start.tv_nsec) / 1000 >= spin_us)
                break;
        }
        if (n == 0)
            n = wait_for(-1, resp_fd, log_fd, pid_fd, timeout_ms, ev);
    } else {
        n = wait_for(-1, resp_fd, log_fd, pid_fd, timeout_ms, ev);
    }
    result = wait_result(n, ev);
    if (result < 0 || result == SBX_CH_TIMEOUT)
        return result;
    /* Read the answer when it is there -- and after an exit too: an answer
     * written just before the runtime ended still counts. */
    if (ev[0] || ev[2]) {
        ssize_t r;
        do {
            r = read(resp_fd, buf, cap);
        } while (r < 0 && errno == EINTR);
        if (r >= 0) {
            *got = (long)r;
            result |= SBX_CH_DATA;
        } else if (errno != EAGAIN) {
            return -errno;
        }
    }
    return result;
}
