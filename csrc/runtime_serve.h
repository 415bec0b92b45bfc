/* runtime_serve.h: what the two files of the _serve module share
   (csrc/runtime_serve.c, the loop; csrc/runtime_serve_channel.c, its pipes). */
#ifndef SBX_RUNTIME_SERVE_H
#define SBX_RUNTIME_SERVE_H
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

/* wire.HEADER and wire.INVOKE_META; checked against wire when the loop starts. */
#define HEADER_SIZE 8
#define INVOKE_META_SIZE 52
#define REQUEST_ID_SIZE 36

typedef struct {
    PyObject *handler;
    PyObject *globals;            /* lambda_runtime's: the helpers below, and _current_request_id */
    PyObject *invoke, *context_type, *handler_failed, *marshal_failed, *response_too_large;
    PyObject *trace_changed, *new_encoder, *trace_state, *loads_utf8, *dumps_ascii;
    PyObject *sys, *sys_dict;     /* stdout and stderr are looked up each time: a handler may replace them */
    PyObject *current_request_id, *flush, *stdout_name, *stderr_name, *empty, *zero, *marshal_errors;
    PyObject *encoder;            /* NULL until made, and again after it raised */
    PyObject *arn_bytes, *arn;    /* the last ARN: every request of an environment has the same */
    long magic, invoke_kind, result_kind;
    Py_ssize_t max_frame, max_response, receive_buffer, keep_buffer_up_to;
    /* The receive buffer, kept as lambda_runtime.Channel keeps it; unread: data[start:end]. */
    PyObject *buffer, *view;      /* a bytearray, and a memoryview of all of it to slice for Python */
    char *data;
    Py_ssize_t size, start, end;
} Loop;

/* A response body: `owner` keeps `data` alive until it is sent. */
typedef struct {
    long kind;
    PyObject *owner;
    const char *data;
    Py_ssize_t size;
} Answer;

static inline uint64_t
little_endian(const unsigned char *at, int bytes)
{
    uint64_t value = 0;
    while (bytes-- > 0)
        value = value << 8 | at[bytes];
    return value;
}

/* The request pipe (lambda_runtime.Channel.receive): replace_buffer makes the
   loop's first buffer; receive gives the next frame, data[*at:*at + *length]:
   1, 0 when the supervisor hung up, -1 with an exception. */
int sbx_serve_replace_buffer(Loop *loop, Py_ssize_t size, Py_ssize_t keep);
int sbx_serve_receive(Loop *loop, int fd, long *kind, Py_ssize_t *at, Py_ssize_t *length);
/* The response pipe (Channel.send): header, request id and body in one writev. */
int sbx_serve_send(Loop *loop, int fd, const Answer *answer, const char *request_id);

#endif
