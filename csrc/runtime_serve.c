/* _serve: the function runtime's serve loop, main()'s loop in
   sandbox/functions/runtime/lambda_runtime.py moved to C.

   serve(request_fd, response_fd, handler, runtime_globals) answers INVOKE
   frames until the supervisor closes the request pipe, byte for byte as the
   Python loop does (tests/unit/test_runtime_serve.py holds the two together).
   The common invocation -- no client context, a payload _fastjson parses, a
   handler that returns, a result that encodes within the size limit -- runs
   here with no Python frame of ours: that is where the Python loop spent its
   microseconds.  Everything else goes to lambda_runtime's own functions, found
   in runtime_globals (its globals()): invoke() whole while the handler has not
   run yet, after that the helper that words how the invocation ended.  So each
   error is built in one place, in Python.

   Syscalls run without the GIL: handlers start threads that must keep running
   while the loop waits for the next request. */
#include "runtime_serve.h"

#include <string.h>

/* Payloads up to this size go to the decoder as a bytes copy: cheaper than a
   memoryview slice (11 against 73 ns for 100 bytes), and still at 1 KiB. */
#define COPIED_PAYLOAD 1024

/* What the loop needs of an INVOKE body it answers itself (wire.parse_invoke's fields). */
typedef struct {
    uint64_t deadline_ms;
    const char *arn, *trace;
    Py_ssize_t arn_size, trace_size, payload_at, payload_size;   /* payload_at: from the body's start */
} Invoke;

/* -- start and end ------------------------------------------------------------------------- */
static PyObject *
global(PyObject *globals, const char *name)   /* a new reference */
{
    PyObject *value = PyDict_GetItemString(globals, name);
    if (value == NULL)
        PyErr_Format(PyExc_RuntimeError, "serve: lambda_runtime has no %s", name);
    return Py_XNewRef(value);
}

static int
number(PyObject *value, Py_ssize_t *out)   /* steals value */
{
    if (value == NULL)
        return -1;
    *out = PyLong_AsSsize_t(value);
    Py_DECREF(value);
    return *out == -1 && PyErr_Occurred() ? -1 : 0;
}

static int
struct_size(PyObject *wire, const char *name, Py_ssize_t *out)   /* wire.<name>.size */
{
    PyObject *format = PyObject_GetAttrString(wire, name);
    if (format == NULL)
        return -1;
    int status = number(PyObject_GetAttrString(format, "size"), out);
    Py_DECREF(format);
    return status;
}

static int
load(Loop *loop, PyObject *handler, PyObject *globals)
{
    Py_ssize_t header, meta, request_id, magic, invoke_kind, result_kind;
    int status = -1;
    loop->handler = Py_NewRef(handler);
    loop->globals = Py_NewRef(globals);
    PyObject *wire = global(globals, "wire"), *fastjson = global(globals, "fastjson"), *fastjson_c = NULL;
    if (wire == NULL || fastjson == NULL
        || (loop->invoke = global(globals, "invoke")) == NULL
        || (loop->context_type = global(globals, "LambdaContext")) == NULL
        || (loop->handler_failed = global(globals, "_handler_failed")) == NULL
        || (loop->marshal_failed = global(globals, "_marshal_failed")) == NULL
        || (loop->response_too_large = global(globals, "_response_too_large")) == NULL
        || (loop->trace_changed = global(globals, "_trace_changed")) == NULL
        || (loop->new_encoder = global(globals, "_new_result_encoder")) == NULL
        || (loop->trace_state = global(globals, "_trace")) == NULL
        || number(global(globals, "RECEIVE_BUFFER"), &loop->receive_buffer) < 0
        || number(global(globals, "KEEP_BUFFER_UP_TO"), &loop->keep_buffer_up_to) < 0
        || struct_size(wire, "HEADER", &header) < 0 || struct_size(wire, "INVOKE_META", &meta) < 0
        || number(PyObject_GetAttrString(wire, "REQUEST_ID_SIZE"), &request_id) < 0
        || number(PyObject_GetAttrString(wire, "MAGIC"), &magic) < 0
        || number(PyObject_GetAttrString(wire, "INVOKE"), &invoke_kind) < 0
        || number(PyObject_GetAttrString(wire, "RESULT"), &result_kind) < 0
        || number(PyObject_GetAttrString(wire, "MAX_FRAME"), &loop->max_frame) < 0
        || number(PyObject_GetAttrString(wire, "MAX_RESPONSE"), &loop->max_response) < 0
        || (fastjson_c = PyObject_GetAttrString(fastjson, "_fastjson")) == NULL
        || (loop->sys = PyImport_ImportModule("sys")) == NULL
        || (loop->sys_dict = PyObject_GetAttrString(loop->sys, "__dict__")) == NULL
        || (loop->current_request_id = PyUnicode_InternFromString("_current_request_id")) == NULL
        || (loop->flush = PyUnicode_InternFromString("flush")) == NULL
        || (loop->stdout_name = PyUnicode_InternFromString("stdout")) == NULL
        || (loop->stderr_name = PyUnicode_InternFromString("stderr")) == NULL
        || (loop->empty = PyUnicode_New(0, 0)) == NULL
        || (loop->zero = PyLong_FromLong(0)) == NULL
        || (loop->marshal_errors = PyTuple_Pack(3, PyExc_TypeError, PyExc_ValueError, PyExc_RecursionError)) == NULL)
        goto done;
    /* A wire format this file does not know would be misread: refuse to start. */
    if (header != HEADER_SIZE || meta != INVOKE_META_SIZE || request_id != REQUEST_ID_SIZE
        || magic < 0 || magic > 255 || invoke_kind < 0 || invoke_kind > 255 || result_kind < 0 || result_kind > 255
        || loop->max_frame < 0 || loop->max_frame > UINT32_MAX || loop->receive_buffer < HEADER_SIZE
        || loop->keep_buffer_up_to < loop->receive_buffer) {
        PyErr_SetString(PyExc_RuntimeError, "serve: wire.py changed; csrc/runtime_serve.c must follow it");
        goto done;
    }
    if (fastjson_c == Py_None) {
        PyErr_SetString(PyExc_ImportError, "serve: _fastjson is not built");
        goto done;
    }
    loop->loads_utf8 = PyObject_GetAttrString(fastjson_c, "loads_utf8");
    loop->dumps_ascii = PyObject_GetAttrString(fastjson_c, "dumps_ascii");
    loop->magic = magic, loop->invoke_kind = invoke_kind, loop->result_kind = result_kind;
    status = loop->loads_utf8 == NULL || loop->dumps_ascii == NULL ? -1 : 0;
done:
    Py_XDECREF(wire);
    Py_XDECREF(fastjson);
    Py_XDECREF(fastjson_c);
    return status;
}

static void
unload(Loop *loop)
{
    PyObject **owned[] = {
        &loop->handler, &loop->globals, &loop->invoke, &loop->context_type, &loop->handler_failed,
        &loop->marshal_failed, &loop->response_too_large, &loop->trace_changed, &loop->new_encoder,
        &loop->trace_state, &loop->loads_utf8, &loop->dumps_ascii, &loop->sys, &loop->sys_dict, &loop->current_request_id, &loop->flush,
        &loop->stdout_name, &loop->stderr_name, &loop->empty, &loop->zero, &loop->marshal_errors,
        &loop->encoder, &loop->arn_bytes, &loop->arn, &loop->view, &loop->buffer,
    };
    for (size_t i = 0; i < sizeof owned / sizeof owned[0]; i++)
        Py_CLEAR(*owned[i]);
}

/* sys.<name>: from sys's dict, which getattr would reach only after a lookup
   in the module type; when it is not there, getattr raises what `sys.<name>` would. */
static PyObject *
sys_stream(Loop *loop, PyObject *name)   /* a new reference */
{
    PyObject *stream = PyDict_GetItemWithError(loop->sys_dict, name);
    if (stream == NULL)
        return PyErr_Occurred() ? NULL : PyObject_GetAttr(loop->sys, name);
    return Py_NewRef(stream);
}

/* _flush_output(): the handler's output goes into the log pipe before its answer. */
static int
flush_output(Loop *loop)
{
    PyObject *streams[2] = {sys_stream(loop, loop->stdout_name), NULL};
    if (streams[0] == NULL || (streams[1] = sys_stream(loop, loop->stderr_name)) == NULL) {
        Py_XDECREF(streams[0]);
        return -1;
    }
    int status = 0;
    for (int i = 0; i < 2; i++) {
        PyObject *done = status == 0 ? PyObject_CallMethodNoArgs(streams[i], loop->flush) : Py_NewRef(Py_None);
        if (done != NULL)
            Py_DECREF(done);
        else if (PyErr_ExceptionMatches(PyExc_Exception))   /* the handler closed or replaced it: its problem */
            PyErr_Clear();
        else
            status = -1;   /* KeyboardInterrupt and the like go up, as from `except Exception` */
        Py_DECREF(streams[i]);
    }
    return status;
}

/* -- one invocation ------------------------------------------------------------------------- */
static int
python_answered(PyObject *pair, Answer *out)   /* a helper's (kind, body); steals pair */
{
    if (pair == NULL)
        return -1;
    if (!PyTuple_Check(pair) || PyTuple_GET_SIZE(pair) != 2 || !PyBytes_Check(PyTuple_GET_ITEM(pair, 1))) {
        PyErr_SetString(PyExc_TypeError, "serve: a runtime helper must return (kind, bytes)");
        Py_DECREF(pair);
        return -1;
    }
    out->kind = PyLong_AsLong(PyTuple_GET_ITEM(pair, 0));
    if (!PyErr_Occurred() && (out->kind < 0 || out->kind > 255))
        PyErr_SetString(PyExc_ValueError, "serve: a response kind must fit a byte");
    if (PyErr_Occurred()) {
        Py_DECREF(pair);
        return -1;
    }
    out->owner = Py_NewRef(PyTuple_GET_ITEM(pair, 1));
    out->data = PyBytes_AS_STRING(out->owner), out->size = PyBytes_GET_SIZE(out->owner);
    Py_DECREF(pair);
    return 0;
}

static int
answer_in_python(Loop *loop, Py_ssize_t at, Py_ssize_t length, Answer *out)   /* invoke(handler, body) */
{
    PyObject *body = PySequence_GetSlice(loop->view, at, at + length);   /* a view, as Channel.receive gives */
    if (body == NULL)
        return -1;
    PyObject *args[] = {loop->handler, body};
    PyObject *pair = PyObject_Vectorcall(loop->invoke, args, 2, NULL);
    Py_DECREF(body);
    return python_answered(pair, out);
}

static int
call_ok(PyObject *function, PyObject *arg)   /* function(arg), its result unused */
{
    PyObject *result = PyObject_CallOneArg(function, arg);
    Py_XDECREF(result);
    return result == NULL ? -1 : 0;
}

static int
answer_with(PyObject *helper, PyObject *what, PyObject *request_id, Answer *out)   /* helper(what, request_id) */
{
    PyObject *args[] = {what, request_id};
    return python_answered(PyObject_Vectorcall(helper, args, 2, NULL), out);
}

/* The raised exception, as `except ... as exc` binds it: normalized, with its traceback. */
static int
answer_with_exception(PyObject *helper, PyObject *request_id, Answer *out)
{
#if PY_VERSION_HEX >= 0x030C0000
    PyObject *exc = PyErr_GetRaisedException();
#else
    PyObject *type, *exc, *traceback;
    PyErr_Fetch(&type, &exc, &traceback);
    PyErr_NormalizeException(&type, &exc, &traceback);
    if (exc != NULL && traceback != NULL && PyException_SetTraceback(exc, traceback) < 0)
        Py_CLEAR(exc);
    Py_XDECREF(type);
    Py_XDECREF(traceback);
#endif
    if (exc == NULL) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_SystemError, "serve: an exception went missing");
        return -1;
    }
    int status = answer_with(helper, exc, request_id, out);
    Py_DECREF(exc);
    return status;
}

/* 1: the body is the common case answered here, 0: it goes to invoke() (which
   also raises what wire.parse_invoke raises for a malformed one). */
static int
common_case(const char *body, Py_ssize_t length, Invoke *out)
{
    const unsigned char *meta = (const unsigned char *)body;
    if (length < INVOKE_META_SIZE || little_endian(meta + 48, 4) != 0)   /* too short; a client context */
        return 0;
    for (int i = 0; i < REQUEST_ID_SIZE; i++)
        if (meta[i] >= 0x80)   /* str(request_id, "ascii") raises */
            return 0;
    out->deadline_ms = little_endian(meta + 36, 8);
    out->arn_size = (Py_ssize_t)little_endian(meta + 44, 2);
    out->trace_size = (Py_ssize_t)little_endian(meta + 46, 2);
    out->payload_at = INVOKE_META_SIZE + out->arn_size + out->trace_size;
    if (out->payload_at > length)   /* parse_invoke's slices come out short */
        return 0;
    out->arn = body + INVOKE_META_SIZE, out->trace = out->arn + out->arn_size;
    out->payload_size = length - out->payload_at;
    return 1;
}

static int
decoded(const char *text, Py_ssize_t size, PyObject **out)   /* 1, 0: not UTF-8 (invoke() raises), -1 */
{
    *out = PyUnicode_DecodeUTF8(text, size, NULL);
    if (*out != NULL)
        return 1;
    if (!PyErr_ExceptionMatches(PyExc_UnicodeDecodeError))
        return -1;
    PyErr_Clear();
    return 0;
}

static int
same_text(PyObject *text, const char *bytes, Py_ssize_t size)   /* text is ASCII and is `bytes` */
{
#if PY_VERSION_HEX < 0x030C0000
    if (PyUnicode_READY(text) < 0) {
        PyErr_Clear();
        return 0;
    }
#endif
    return PyUnicode_IS_ASCII(text) && PyUnicode_GET_LENGTH(text) == size
           && memcmp(PyUnicode_1BYTE_DATA(text), bytes, (size_t)size) == 0;
}

/* The ARN's str, the one of the previous request while its bytes are the same. */
static int
arn_of(Loop *loop, const Invoke *request)   /* 1, 0: not UTF-8, -1 */
{
    if (loop->arn_bytes != NULL && PyBytes_GET_SIZE(loop->arn_bytes) == request->arn_size
        && memcmp(PyBytes_AS_STRING(loop->arn_bytes), request->arn, (size_t)request->arn_size) == 0)
        return 1;
    PyObject *arn, *arn_bytes;
    int status = decoded(request->arn, request->arn_size, &arn);
    if (status <= 0)
        return status;
    if ((arn_bytes = PyBytes_FromStringAndSize(request->arn, request->arn_size)) == NULL) {
        Py_DECREF(arn);
        return -1;
    }
    Py_XSETREF(loop->arn, arn);
    Py_XSETREF(loop->arn_bytes, arn_bytes);
    return 1;
}

/* invoke()'s `trace != _trace[0]`: *changed is the new trace id's str, or NULL when it is the same. */
static int
trace_of(Loop *loop, const Invoke *request, PyObject **changed)   /* 1, 0: to invoke(), -1 */
{
    *changed = NULL;
    PyObject *state = loop->trace_state;
    if (!PyList_CheckExact(state) || PyList_GET_SIZE(state) < 1 || !PyUnicode_CheckExact(PyList_GET_ITEM(state, 0)))
        return 0;   /* not as lambda_runtime keeps it: its own code says what happens */
    PyObject *last = PyList_GET_ITEM(state, 0);
    if (same_text(last, request->trace, request->trace_size))
        return 1;   /* the common case: no trace id again, or the same one */
    PyObject *trace;
    int status = decoded(request->trace, request->trace_size, &trace);
    if (status <= 0)
        return status;
    if (PyUnicode_Compare(trace, last) == 0)
        Py_DECREF(trace);
    else
        *changed = trace;
    return 1;
}

/* fastjson.dumps_bytes(result, _unserializable): the bytes from _fastjson's
   encoder, or where it declines, the str "".join(encoder(result, 0)) of
   _json's (ASCII, so its UTF-8 is its own data).  An _json encoder that
   raised is dropped, as it may hold stale cycle markers. */
static PyObject *
encode(Loop *loop, PyObject *result)   /* bytes or str, NULL with an exception */
{
    PyObject *data = PyObject_CallOneArg(loop->dumps_ascii, result);
    if (data != Py_NotImplemented)
        return data;
    Py_DECREF(data);
    if (loop->encoder == NULL && (loop->encoder = PyObject_CallNoArgs(loop->new_encoder)) == NULL)
        return NULL;
    PyObject *args[] = {result, loop->zero};
    PyObject *chunks = PyObject_Vectorcall(loop->encoder, args, 2, NULL);
    PyObject *text = chunks == NULL ? NULL : PyUnicode_Join(loop->empty, chunks);
    Py_XDECREF(chunks);
    if (text == NULL)
        Py_CLEAR(loop->encoder);
    return text;
}

static int
answer_result(Loop *loop, PyObject *result, PyObject *request_id, Answer *out)
{
    const char *data = NULL;
    Py_ssize_t size = 0;
    PyObject *encoded = encode(loop, result);
    if (encoded != NULL && PyBytes_Check(encoded)) {
        data = PyBytes_AS_STRING(encoded), size = PyBytes_GET_SIZE(encoded);
    } else if (encoded != NULL && (data = PyUnicode_AsUTF8AndSize(encoded, &size)) == NULL) {
        Py_CLEAR(encoded);
    }
    if (encoded == NULL)
        return PyErr_ExceptionMatches(loop->marshal_errors) ? answer_with_exception(loop->marshal_failed, request_id, out)
                                                            : -1;
    if (size > loop->max_response) {
        PyObject *too_large = PyLong_FromSsize_t(size);
        int status = too_large == NULL ? -1 : answer_with(loop->response_too_large, too_large, request_id, out);
        Py_XDECREF(too_large);
        Py_DECREF(encoded);
        return status;
    }
    out->kind = loop->result_kind, out->owner = encoded, out->data = data, out->size = size;
    return 0;
}

/* invoke(handler, body) for the INVOKE body at data[at:at + length]. */
static int
answer(Loop *loop, Py_ssize_t at, Py_ssize_t length, Answer *out)
{
    const char *body = loop->data + at;
    PyObject *trace = NULL, *request_id = NULL, *payload = NULL, *event = NULL, *deadline = NULL, *context = NULL;
    PyObject *result = NULL;
    Invoke request;
    if (!common_case(body, length, &request))
        return answer_in_python(loop, at, length, out);
    int status = arn_of(loop, &request);
    if (status > 0)
        status = trace_of(loop, &request, &trace);
    if (status <= 0)
        return status < 0 ? -1 : answer_in_python(loop, at, length, out);
    /* What invoke() does before the handler runs comes out the same when done
       twice: from here on, a request may still go to invoke() whole. */
    status = -1;
    if ((request_id = PyUnicode_DecodeASCII(body, REQUEST_ID_SIZE, NULL)) == NULL
        || PyDict_SetItem(loop->globals, loop->current_request_id, request_id) < 0
        || (trace != NULL && call_ok(loop->trace_changed, trace) < 0)
        || (payload = request.payload_size <= COPIED_PAYLOAD
                          ? PyBytes_FromStringAndSize(body + request.payload_at, request.payload_size)
                          : PySequence_GetSlice(loop->view, at + request.payload_at, at + length)) == NULL
        || (event = PyObject_CallOneArg(loop->loads_utf8, payload)) == NULL)
        goto done;
    if (event == Py_NotImplemented) {   /* _fastjson declined: invoke() parses it, or words the error */
        status = answer_in_python(loop, at, length, out);
        goto done;
    }
    PyObject *context_args[] = {request_id, NULL, loop->arn, Py_None};
    if ((deadline = context_args[1] = PyLong_FromUnsignedLongLong(request.deadline_ms)) == NULL
        || (context = PyObject_Vectorcall(loop->context_type, context_args, 4, NULL)) == NULL)
        goto done;
    PyObject *handler_args[] = {event, context};
    result = PyObject_Vectorcall(loop->handler, handler_args, 2, NULL);
    if (result == NULL)   /* as `except Exception`: BaseException (SystemExit, ...) goes up */
        status = PyErr_ExceptionMatches(PyExc_Exception) ? answer_with_exception(loop->handler_failed, request_id, out)
                                                          : -1;
    else
        status = answer_result(loop, result, request_id, out);
done:   /* invoke()'s frame lets go of all of these as it returns: before the output is flushed */
    Py_XDECREF(trace);
    Py_XDECREF(request_id);
    Py_XDECREF(payload);
    Py_XDECREF(event);
    Py_XDECREF(deadline);
    Py_XDECREF(context);
    Py_XDECREF(result);
    return status;
}

/* -- the loop ------------------------------------------------------------------------------ */
static PyObject *
serve(PyObject *Py_UNUSED(module), PyObject *args)
{
    int request_fd, response_fd;
    PyObject *handler, *globals;
    if (!PyArg_ParseTuple(args, "iiOO!:serve", &request_fd, &response_fd, &handler, &PyDict_Type, &globals))
        return NULL;
    Loop loop = {0};
    int got = -1;
    if (load(&loop, handler, globals) == 0 && sbx_serve_replace_buffer(&loop, loop.receive_buffer, 0) == 0) {
        long kind;
        Py_ssize_t at, length;
        while ((got = sbx_serve_receive(&loop, request_fd, &kind, &at, &length)) > 0) {
            if (kind != loop.invoke_kind) {
                PyErr_Format(PyExc_SystemExit, "bootstrap: unexpected request kind %ld", kind);
                got = -1;
                break;
            }
            Answer reply = {0};
            /* Output the handler wrote belongs to this invocation: it must be in
               the log pipe before the response is (the supervisor reads it after). */
            if (answer(&loop, at, length, &reply) < 0 || flush_output(&loop) < 0
                || sbx_serve_send(&loop, response_fd, &reply, loop.data + at) < 0)
                got = -1;
            Py_XDECREF(reply.owner);
            if (got < 0)
                break;
        }
    }
    unload(&loop);
    if (got < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"serve", serve, METH_VARARGS,
     "serve(request_fd, response_fd, handler, runtime_globals) -> None when the supervisor closes the request pipe.\n"
     "lambda_runtime.main()'s serve loop; runtime_globals: lambda_runtime's globals()."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_serve",
    .m_doc = "The function runtime's serve loop (see lambda_runtime.main).",
    .m_size = 0,
    .m_methods = methods,
};

PyMODINIT_FUNC
PyInit__serve(void)
{
    return PyModuleDef_Init(&module_def);
}
