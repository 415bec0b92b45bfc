/*
 * warm_exchange.c: the supervisor's warm invoke path in one C call
 * (module sandbox.functions._warm).
 *
 * An invocation of a warm environment is, on the channel, one request frame
 * out and one answer frame back.  environment.py drives that with the
 * general loop of csrc/channel.c and Python around it (frame assembly,
 * header checks, the request-id check, the copy out of the read buffer);
 * for a 100-byte echo that Python was a third of the round trip.  exchange()
 * below does the common case whole and hands everything else back, with
 * the channel state it reached, to that general loop -- it never decides an
 * unusual case itself.  request_id() makes the ids.
 *
 * Runs in the supervisor, never in a sandbox.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <sys/random.h>
#include <sys/uio.h>
#include <unistd.h>

#include "channel.h"

/* The frame format of sandbox/functions/runtime/wire.py (tests check they agree). */
#define MAGIC 0xA5
#define HEADER_SIZE 8
#define KIND_INVOKE 'I'
#define KIND_RESULT 'R'
#define KIND_ERROR 'E'
#define KIND_BAD_REQUEST 'V'
#define REQUEST_ID_SIZE 36
#define META_SIZE (REQUEST_ID_SIZE + 8 + 2 + 2 + 4)   /* wire.INVOKE_META: <36sQHHI */

/* An int argument; -1 with an exception set on a bad one. */
static int as_int(PyObject *value)
{
    long v = PyLong_AsLong(value);
    if (v == -1 && PyErr_Occurred())
        return -1;
    if (v < INT_MIN || v > INT_MAX) {
        PyErr_SetString(PyExc_OverflowError, "argument out of int range");
        return -1;
    }
    return (int)v;
}

static void put_u16(unsigned char *at, unsigned v) { at[0] = v & 0xff; at[1] = (v >> 8) & 0xff; }

static void put_u32(unsigned char *at, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        at[i] = (v >> (8 * i)) & 0xff;
}

static uint32_t get_u32(const unsigned char *at)
{
    return (uint32_t)at[0] | (uint32_t)at[1] << 8 | (uint32_t)at[2] << 16 | (uint32_t)at[3] << 24;
}

/* Is anything waiting on the answer pipe or the pidfd of an idle
 * environment?  Then it is not idle: a handler's leftover thread forged an
 * answer, or the runtime died.  The general path decides what that means. */
static int channel_busy(int resp_fd, int pid_fd)
{
    struct pollfd fds[2] = {{resp_fd, POLLIN, 0}, {pid_fd, POLLIN, 0}};
    int n;
    do {
        n = poll(fds, 2, 0);
    } while (n < 0 && errno == EINTR);
    return n != 0;   /* an error counts as busy too: the general path reports it */
}

/* exchange(request_fd, response_fd, log_fd, pid_fd, request_id, deadline_ms,
 *          arn, trace, context, payload, timeout_ms, spin_us, read_buffer,
 *          check_quiet)
 *
 * Returns
 *   None                            check_quiet was true and the channel was
 *                                   not quiet; nothing was sent
 *   (kind, body)                    the answer: one whole frame, one read, no
 *                                   output pending, starting with request_id
 *                                   (body is what follows the id)
 *   (None, events, written, got)    anything else: `written` bytes of the frame
 *                                   went out, then sbx_channel_exchange
 *                                   returned `events` (0 when the frame did not
 *                                   go out whole) with `got` bytes read into
 *                                   read_buffer; the general loop goes on. */
static PyObject *exchange(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    if (nargs != 14) {
        PyErr_SetString(PyExc_TypeError, "exchange() takes 14 arguments");
        return NULL;
    }
    int check_quiet = PyObject_IsTrue(args[13]);
    if (check_quiet < 0)
        return NULL;
    int fds[4];
    for (int i = 0; i < 4; i++) {
        fds[i] = as_int(args[i]);
        if (fds[i] == -1 && PyErr_Occurred())
            return NULL;
    }
    int req_fd = fds[0], resp_fd = fds[1], log_fd = fds[2], pid_fd = fds[3];
    PyObject *request_id = args[4];
    unsigned long long deadline_ms = PyLong_AsUnsignedLongLong(args[5]);
    if (deadline_ms == (unsigned long long)-1 && PyErr_Occurred())
        return NULL;
    PyObject *parts[4] = {args[6], args[7], args[8], args[9]};   /* arn, trace, context, payload */
    int timeout_ms = as_int(args[10]);
    int spin_us = as_int(args[11]);
    if ((timeout_ms == -1 || spin_us == -1) && PyErr_Occurred())
        return NULL;
    if (!PyBytes_CheckExact(request_id) || PyBytes_GET_SIZE(request_id) != REQUEST_ID_SIZE) {
        PyErr_SetString(PyExc_ValueError, "request_id must be 36 bytes");
        return NULL;
    }
    for (int i = 0; i < 4; i++) {
        if (!PyBytes_CheckExact(parts[i])) {
            PyErr_SetString(PyExc_TypeError, "arn, trace, context and payload must be bytes");
            return NULL;
        }
    }
    Py_ssize_t arn_len = PyBytes_GET_SIZE(parts[0]), trace_len = PyBytes_GET_SIZE(parts[1]);
    Py_ssize_t context_len = PyBytes_GET_SIZE(parts[2]);
    if (arn_len > 0xffff || trace_len > 0xffff || context_len > 0xffffffffL) {
        PyErr_SetString(PyExc_ValueError, "arn, trace or context too long for the frame");
        return NULL;
    }
    size_t body_len = META_SIZE;
    for (int i = 0; i < 4; i++)
        body_len += (size_t)PyBytes_GET_SIZE(parts[i]);
    if (body_len > 0xffffffffUL) {
        PyErr_SetString(PyExc_ValueError, "frame too long");
        return NULL;
    }
    Py_buffer read_buffer;
    if (PyObject_GetBuffer(args[12], &read_buffer, PyBUF_WRITABLE) < 0)
        return NULL;
    if (read_buffer.len < HEADER_SIZE + REQUEST_ID_SIZE) {
        PyBuffer_Release(&read_buffer);
        PyErr_SetString(PyExc_ValueError, "read_buffer too small");
        return NULL;
    }

    /* header | meta: wire.HEADER then wire.INVOKE_META, little-endian */
    unsigned char head[HEADER_SIZE + META_SIZE] = {MAGIC, KIND_INVOKE, 0, 0};
    put_u32(head + 4, (uint32_t)body_len);
    memcpy(head + HEADER_SIZE, PyBytes_AS_STRING(request_id), REQUEST_ID_SIZE);
    unsigned char *meta = head + HEADER_SIZE + REQUEST_ID_SIZE;
    put_u32(meta, (uint32_t)deadline_ms);
    put_u32(meta + 4, (uint32_t)(deadline_ms >> 32));
    put_u16(meta + 8, (unsigned)arn_len);
    put_u16(meta + 10, (unsigned)trace_len);
    put_u32(meta + 12, (uint32_t)context_len);
    struct iovec iov[5] = {{head, sizeof head}};
    for (int i = 0; i < 4; i++)
        iov[i + 1] = (struct iovec){PyBytes_AS_STRING(parts[i]), (size_t)PyBytes_GET_SIZE(parts[i])};
    size_t frame_len = HEADER_SIZE + body_len;

    int busy, events = 0;
    ssize_t sent;
    size_t none_left = 0;
    long got = 0;
    unsigned char *buf = read_buffer.buf;
    /* The bytes objects stay alive (the caller holds them) and immutable
     * while the GIL is released. */
    Py_BEGIN_ALLOW_THREADS
    busy = check_quiet && channel_busy(resp_fd, pid_fd);
    sent = 0;
    if (!busy) {
        do {
            sent = writev(req_fd, iov, 5);
        } while (sent < 0 && errno == EINTR);
        if (sent == (ssize_t)frame_len)
            events = sbx_channel_exchange(req_fd, NULL, 0, &none_left, resp_fd, log_fd, pid_fd, timeout_ms,
                                          spin_us, (char *)buf, (size_t)read_buffer.len, &got);
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&read_buffer);
    if (busy)
        Py_RETURN_NONE;
    if (sent < 0)   /* EPIPE (the runtime is gone), EAGAIN (a full pipe): the general loop says which */
        sent = 0;
    if (events == SBX_CH_DATA && got >= HEADER_SIZE + REQUEST_ID_SIZE && buf[0] == MAGIC) {
        unsigned char kind = buf[1];
        uint32_t length = get_u32(buf + 4);
        if ((kind == KIND_RESULT || kind == KIND_ERROR || kind == KIND_BAD_REQUEST) &&
            (long)HEADER_SIZE + length == got &&
            memcmp(buf + HEADER_SIZE, PyBytes_AS_STRING(request_id), REQUEST_ID_SIZE) == 0) {
            PyObject *body = PyBytes_FromStringAndSize((const char *)buf + HEADER_SIZE + REQUEST_ID_SIZE,
                                                       (Py_ssize_t)length - REQUEST_ID_SIZE);
            if (body == NULL)
                return NULL;
            return Py_BuildValue("(iN)", kind, body);
        }
    }
    return Py_BuildValue("(Oinl)", Py_None, events, (Py_ssize_t)sent, got);
}

/* Request ids: random (version 4) UUIDs from a pool of getrandom() bytes,
 * 16 per id, so most ids cost no system call.  Ids must be unique, not
 * secret; the pool is emptied in a forked child so that parent and child
 * never hand out the same ids. */
#define POOL_SIZE 4096
static unsigned char pool[POOL_SIZE];
static size_t pool_left;   /* unused bytes at the end of pool; guarded by the GIL */

static void empty_pool_in_child(void) { pool_left = 0; }

static PyObject *request_id(PyObject *self, PyObject *unused)
{
    (void)self, (void)unused;
    static const char hex[] = "0123456789abcdef";
    if (pool_left < 16) {
        size_t have = 0;
        while (have < POOL_SIZE) {
            ssize_t n = getrandom(pool + have, POOL_SIZE - have, 0);
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0)
                return PyErr_SetFromErrno(PyExc_OSError);
            have += (size_t)n;
        }
        pool_left = POOL_SIZE;
    }
    unsigned char *r = pool + POOL_SIZE - pool_left;
    pool_left -= 16;
    r[6] = (r[6] & 0x0f) | 0x40;   /* version 4 */
    r[8] = (r[8] & 0x3f) | 0x80;   /* RFC 4122 variant */
    char text[REQUEST_ID_SIZE];
    for (int i = 0, at = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            text[at++] = '-';
        text[at++] = hex[r[i] >> 4];
        text[at++] = hex[r[i] & 15];
    }
    return PyUnicode_FromStringAndSize(text, REQUEST_ID_SIZE);
}

static PyMethodDef methods[] = {
    {"exchange", (PyCFunction)(void (*)(void))exchange, METH_FASTCALL,
     "Send one invoke frame and take its answer when it comes whole (see csrc/warm_exchange.c)."},
    {"request_id", request_id, METH_NOARGS, "A new random (version 4) UUID string."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_warm", NULL, -1, methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__warm(void)
{
    if (pthread_atfork(NULL, NULL, empty_pool_in_child) != 0) {
        PyErr_SetString(PyExc_OSError, "pthread_atfork failed");
        return NULL;
    }
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    if (PyModule_AddIntConstant(m, "REQUEST_ID_SIZE", REQUEST_ID_SIZE) < 0 ||
        PyModule_AddIntConstant(m, "HEADER_SIZE", HEADER_SIZE) < 0 ||
        PyModule_AddIntConstant(m, "META_SIZE", META_SIZE) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
