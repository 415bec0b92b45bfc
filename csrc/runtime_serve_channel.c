/* runtime_serve_channel.c: the pipes of the _serve loop (csrc/runtime_serve.c),
   lambda_runtime.Channel's receive and send, step by step.  Reads and writes
   run without the GIL; on EINTR, Python's signal handlers run, and one that
   raises ends the loop with its exception, as os.readv would (PEP 475). */
#include "runtime_serve.h"

#include <errno.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

/* -- the request pipe: Channel.receive ---------------------------------------------------- */
/* Always a new buffer, never a resized one: a request a Python helper got may
   still hold a view of the old.  The `keep` unread bytes move to its front. */
int
sbx_serve_replace_buffer(Loop *loop, Py_ssize_t size, Py_ssize_t keep)
{
    PyObject *buffer = PyByteArray_FromStringAndSize(NULL, size);
    if (buffer == NULL)
        return -1;
    PyObject *view = PyMemoryView_FromObject(buffer);
    if (view == NULL) {
        Py_DECREF(buffer);
        return -1;
    }
    if (keep > 0)
        memcpy(PyByteArray_AS_STRING(buffer), loop->data + loop->start, keep);
    Py_XSETREF(loop->view, view);
    Py_XSETREF(loop->buffer, buffer);
    loop->data = PyByteArray_AS_STRING(buffer);
    loop->size = size, loop->start = 0, loop->end = keep;
    return 0;
}

/* The unread bytes to a buffer with room for `need` (a power of two, so that
   requests of one size settle in one buffer). */
static int
move_unread(Loop *loop, Py_ssize_t need)
{
    Py_ssize_t size = 1;
    while (size < need)
        size <<= 1;
    return sbx_serve_replace_buffer(loop, size < loop->receive_buffer ? loop->receive_buffer : size, loop->end - loop->start);
}

static Py_ssize_t
read_some(int fd, char *into, size_t room)   /* bytes read, 0 at EOF, -1 with an exception */
{
    for (;;) {
        ssize_t got;
        int error;
        Py_BEGIN_ALLOW_THREADS
        got = read(fd, into, room);
        error = errno;
        Py_END_ALLOW_THREADS
        if (got >= 0)
            return got;
        if (error != EINTR) {
            errno = error;
            PyErr_SetFromErrno(PyExc_OSError);
            return -1;
        }
        if (PyErr_CheckSignals() < 0)   /* a signal handler raised: it goes up, as from os.readv (PEP 475) */
            return -1;
    }
}

/* The next frame: 1 with its kind and body (data[*at:*at + *length]), 0 when
   the supervisor hung up, -1 with an exception.  Channel.receive step by step,
   down to when the buffer is replaced. */
int
sbx_serve_receive(Loop *loop, int fd, long *kind, Py_ssize_t *at, Py_ssize_t *length)
{
    for (;;) {
        Py_ssize_t start = loop->start, end = loop->end;
        if (end - start >= HEADER_SIZE) {
            const unsigned char *header = (const unsigned char *)loop->data + start;
            Py_ssize_t body = (Py_ssize_t)little_endian(header + 4, 4);
            if (header[0] != loop->magic || body > loop->max_frame) {
                PyErr_SetString(PyExc_SystemExit, "bootstrap: corrupt request frame");
                return -1;
            }
            if (start + HEADER_SIZE + body <= end) {
                *kind = header[1], *at = start + HEADER_SIZE, *length = body;
                loop->start = start + HEADER_SIZE + body;
                return 1;
            }
            if (start + HEADER_SIZE + body > loop->size && move_unread(loop, HEADER_SIZE + body) < 0)
                return -1;
        } else if (start == end) {   /* all read: start over at the front, in a small buffer after a huge request */
            loop->start = loop->end = 0;
            if (loop->size > loop->keep_buffer_up_to && sbx_serve_replace_buffer(loop, loop->receive_buffer, 0) < 0)
                return -1;
        } else if (loop->size - start < HEADER_SIZE && move_unread(loop, HEADER_SIZE) < 0) {
            return -1;
        }
        Py_ssize_t got = read_some(fd, loop->data + loop->end, loop->size - loop->end);
        if (got <= 0)
            return (int)got;
        loop->end += got;
    }
}

/* -- the response pipe: Channel.send --------------------------------------------------------- */
int
sbx_serve_send(Loop *loop, int fd, const Answer *answer, const char *request_id)
{
    if ((size_t)answer->size > UINT32_MAX - REQUEST_ID_SIZE) {
        PyErr_SetString(PyExc_OverflowError, "serve: a response frame over 4 GiB");
        return -1;
    }
    uint32_t length = (uint32_t)(REQUEST_ID_SIZE + answer->size);
    unsigned char header[HEADER_SIZE] = {(unsigned char)loop->magic, (unsigned char)answer->kind, 0, 0,
                                         length & 0xff, length >> 8 & 0xff, length >> 16 & 0xff, length >> 24};
    struct iovec parts[3] = {{header, HEADER_SIZE}, {(void *)request_id, REQUEST_ID_SIZE},
                             {(void *)answer->data, (size_t)answer->size}};
    struct iovec *next = parts;
    int left = 3;
    while (left > 0) {
        ssize_t sent;
        int error;
        Py_BEGIN_ALLOW_THREADS
        sent = writev(fd, next, left);
        error = errno;
        Py_END_ALLOW_THREADS
        if (sent < 0) {
            if (error != EINTR) {
                errno = error;
                PyErr_SetFromErrno(PyExc_OSError);
                return -1;
            }
            if (PyErr_CheckSignals() < 0)
                return -1;
            continue;
        }
        /* A short write (a large answer, a full pipe): the rest from where it stopped. */
        for (; left > 0 && (size_t)sent >= next->iov_len; next++, left--)
            sent -= (ssize_t)next->iov_len;
        if (left > 0) {
            next->iov_base = (char *)next->iov_base + sent;
            next->iov_len -= (size_t)sent;
        }
    }
    return 0;
}
