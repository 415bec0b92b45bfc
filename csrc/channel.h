/*
 * channel.h: the supervisor's side of an execution environment's channel, in C.
 *
 * One call writes a request frame and waits for the answer, the runtime's exit,
 * log output or the deadline -- one GIL release (cffi drops it around the call)
 * instead of one per write/poll/read.  Doubles as a cffi cdef: no macros with
 * bodies, no includes.
 */

/* Bits of sbx_channel_exchange's result. */
enum sbx_channel_event {
    SBX_CH_DATA = 1,      /* *got bytes of the answer were read into buf (0: end of file) */
    SBX_CH_LOG = 2,       /* the log pipe is readable: drain it, then call again */
    SBX_CH_EXIT = 4,      /* the pidfd is readable: the runtime's process ended */
    SBX_CH_TIMEOUT = 8    /* timeout_ms passed first */
};

/* Write frame[*written, len) to req_fd (non-blocking; *written advances), then
 * wait up to timeout_ms for resp_fd, log_fd or pid_fd (first polling without
 * sleeping for up to spin_us microseconds).  Returns a set of
 * sbx_channel_event bits, or -errno.  Call again with the same frame and
 * written counter after SBX_CH_LOG, or after SBX_CH_DATA with an incomplete
 * answer (nothing is re-sent once written == len). */
int sbx_channel_exchange(int req_fd, const char *frame, size_t len, size_t *written,
                         int resp_fd, int log_fd, int pid_fd, int timeout_ms, int spin_us,
                         char *buf, size_t cap, long *got);
