/* fastjson_encode.c: dumps_ascii(value) of the _fastjson module (csrc/fastjson.c).

   Writes a handler's result straight into the bytes json.dumps(value) would
   give with its default settings (ASCII only, NaN and Infinity allowed, ", "
   and ": ", keys in insertion order), in one growing bytes object, without
   json's str chunks, their join and the final encode.  Its only promise: bytes
   it returns equal json.dumps(value).encode().

   It answers only for values made of exact dict (with exact str keys), list,
   tuple, str, int and float, and True, False and None: for those it runs no
   Python code at all (no __repr__, no hooks, nothing that could change a
   container while we walk it).  Everything else -- a subclass, an object for
   `default`, a non-str key, nesting deeper than MAX_DEPTH (every cycle among
   them), an int that might pass the int-to-str digit limit, any error but
   MemoryError -- gets NotImplemented, and the caller runs json's own path,
   which calls `default` or words the error. */
#include "fastjson.h"

#include <math.h>

#define FIRST_CAPACITY 256     /* most results are small: one allocation, trimmed at the end */
#define LONGEST_ESCAPE 12      /* a code point above U+FFFF: two \uXXXX */
#define CHUNK_CHARS 1024       /* escaped strings reserve room this many characters at a time */
/* sys.set_int_max_str_digits takes no limit below 640, and 2**2100 < 10**633:
   an int of at most this many bits converts to str under any limit. */
#define ALWAYS_CONVERTIBLE_INT_BITS 2100

typedef struct {
    PyObject *bytes;    /* the output so far, over-allocated; NULL once a resize failed */
    char *pos, *end;    /* the next byte to write, the end of the allocation */
    int depth;          /* containers open around the value being written */
} Writer;

static int write_value(Writer *w, PyObject *value);

/* -1 without an exception: the caller returns NotImplemented. */
static int
decline(void)
{
    return -1;
}

static int
grow(Writer *w, Py_ssize_t need)
{
    char *start = PyBytes_AS_STRING(w->bytes);
    Py_ssize_t used = w->pos - start, capacity = w->end - start;
    if (need > PY_SSIZE_T_MAX / 4 - used) {   /* keeps the sums below from overflowing */
        PyErr_NoMemory();
        return -1;
    }
    Py_ssize_t wanted = used + need;
    /* Doubling keeps many small writes cheap; a long string gets its room at once. */
    Py_ssize_t grown = Py_MAX(Py_MIN(capacity, PY_SSIZE_T_MAX / 4) * 2, wanted + wanted / 4);
    if (_PyBytes_Resize(&w->bytes, grown) < 0)
        return -1;   /* w->bytes is NULL now, and MemoryError set */
    start = PyBytes_AS_STRING(w->bytes);
    w->pos = start + used;
    w->end = start + grown;
    return 0;
}

static inline int
reserve(Writer *w, Py_ssize_t need)
{
    return w->end - w->pos >= need ? 0 : grow(w, need);
}

static inline int
write_ascii(Writer *w, const char *text, Py_ssize_t n)
{
    if (reserve(w, n) < 0)
        return -1;
    memcpy(w->pos, text, n);
    w->pos += n;
    return 0;
}

static inline char *
write_u_escape(char *out, Py_UCS4 unit)   /* \uXXXX, lowercase as json writes it */
{
    static const char hex[] = "0123456789abcdef";
    out[0] = '\\', out[1] = 'u';
    out[2] = hex[(unit >> 12) & 0xf], out[3] = hex[(unit >> 8) & 0xf];
    out[4] = hex[(unit >> 4) & 0xf], out[5] = hex[unit & 0xf];
    return out + 6;
}

static char *
write_escape(char *out, Py_UCS4 c)   /* c is one json does not write as it is */
{
    char short_form = c == '"' ? '"' : c == '\\' ? '\\' : c == '\n' ? 'n' : c == '\r' ? 'r'
                    : c == '\t' ? 't' : c == '\b' ? 'b' : c == '\f' ? 'f' : 0;
    if (short_form) {
        out[0] = '\\', out[1] = short_form;
        return out + 2;
    }
    if (c >= 0x10000) {   /* beyond the BMP: a UTF-16 surrogate pair */
        c -= 0x10000;
        out = write_u_escape(out, 0xd800 | (c >> 10));
        c = 0xdc00 | (c & 0x3ff);
    }
    return write_u_escape(out, c);   /* lone surrogates included, as json does */
}

/* Inlined once per string kind, so that each gets a loop with a fixed-width read. */
static inline __attribute__((always_inline)) int
write_escaped_chars(Writer *w, int kind, const void *data, Py_ssize_t n)
{
    for (Py_ssize_t i = 0; i < n;) {
        Py_ssize_t stop = i + Py_MIN(n - i, CHUNK_CHARS);
        if (reserve(w, (stop - i) * LONGEST_ESCAPE) < 0)
            return -1;
        char *out = w->pos;   /* a local: stores through char * would make the compiler reload w->pos */
        for (; i < stop; i++) {
            Py_UCS4 c = PyUnicode_READ(kind, data, i);
            if (c >= ' ' && c <= '~' && c != '"' && c != '\\')
                *out++ = (char)c;
            else
                out = write_escape(out, c);
        }
        w->pos = out;
    }
    return 0;
}

static int
write_string(Writer *w, PyObject *text)
{
#if PY_VERSION_HEX < 0x030C0000
    if (PyUnicode_READY(text) < 0)
        return -1;
#endif
    Py_ssize_t n = PyUnicode_GET_LENGTH(text);
    const void *data = PyUnicode_DATA(text);
    int kind = PyUnicode_KIND(text), status;
    if (PyUnicode_IS_ASCII(text) && is_plain_ascii(data, n)) {   /* the common string: one copy */
        if (reserve(w, n + 2) < 0)
            return -1;
        *w->pos++ = '"';
        memcpy(w->pos, data, n);
        w->pos += n;
        *w->pos++ = '"';
        return 0;
    }
    if (write_ascii(w, "\"", 1) < 0)
        return -1;
    if (kind == PyUnicode_1BYTE_KIND)
        status = write_escaped_chars(w, PyUnicode_1BYTE_KIND, data, n);
    else if (kind == PyUnicode_2BYTE_KIND)
        status = write_escaped_chars(w, PyUnicode_2BYTE_KIND, data, n);
    else
        status = write_escaped_chars(w, PyUnicode_4BYTE_KIND, data, n);
    return status < 0 ? -1 : write_ascii(w, "\"", 1);
}

static int
write_int(Writer *w, PyObject *number)   /* as int.__repr__, which json uses */
{
    int overflow;
    long long value = PyLong_AsLongLongAndOverflow(number, &overflow);
    if (value == -1 && PyErr_Occurred())
        return -1;
    if (!overflow) {   /* the common int: our own digits, no str object */
        char digits[24], *first = digits + sizeof digits;
        unsigned long long magnitude = value < 0 ? 0ULL - (unsigned long long)value : (unsigned long long)value;
        do
            *--first = (char)('0' + magnitude % 10);
        while ((magnitude /= 10) != 0);
        if (value < 0)
            *--first = '-';
        return write_ascii(w, first, digits + sizeof digits - first);
    }
    size_t bits = _PyLong_NumBits(number);
    if (bits == (size_t)-1 && PyErr_Occurred())
        return -1;
    /* Longer ints might pass the digit limit: json's path raises its ValueError. */
    if (bits > ALWAYS_CONVERTIBLE_INT_BITS)
        return decline();
    PyObject *text = PyLong_Type.tp_repr(number);
    if (text == NULL)
        return -1;
    int status = write_ascii(w, (const char *)PyUnicode_1BYTE_DATA(text), PyUnicode_GET_LENGTH(text));
    Py_DECREF(text);
    return status;
}

static int
write_float(Writer *w, PyObject *number)   /* as json: float.__repr__, or its names for the non-finite */
{
    double value = PyFloat_AS_DOUBLE(number);
    if (isnan(value))
        return write_ascii(w, "NaN", 3);
    if (isinf(value))
        return value > 0 ? write_ascii(w, "Infinity", 8) : write_ascii(w, "-Infinity", 9);
    char *text = PyOS_double_to_string(value, 'r', 0, Py_DTSF_ADD_DOT_0, NULL);   /* float_repr's call */
    if (text == NULL)
        return -1;
    int status = write_ascii(w, text, (Py_ssize_t)strlen(text));
    PyMem_Free(text);
    return status;
}

static int
write_array(Writer *w, PyObject *sequence)   /* an exact list or tuple */
{
    if (write_ascii(w, "[", 1) < 0)
        return -1;
    /* The size is read each time round: cheap, and right even if the list could change. */
    for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(sequence); i++) {
        if ((i > 0 && write_ascii(w, ", ", 2) < 0) || write_value(w, PySequence_Fast_GET_ITEM(sequence, i)) < 0)
            return -1;
    }
    return write_ascii(w, "]", 1);
}

static int
write_dict(Writer *w, PyObject *dict)   /* an exact dict */
{
    Py_ssize_t at = 0;
    PyObject *key, *item;
    if (write_ascii(w, "{", 1) < 0)
        return -1;
    for (int first = 1; PyDict_Next(dict, &at, &key, &item); first = 0) {
        if (!PyUnicode_CheckExact(key))
            return decline();   /* json turns int, float, bool and None keys into strings: its path does that */
        if ((!first && write_ascii(w, ", ", 2) < 0) || write_string(w, key) < 0 || write_ascii(w, ": ", 2) < 0
            || write_value(w, item) < 0)
            return -1;
    }
    return write_ascii(w, "}", 1);
}

static int
write_value(Writer *w, PyObject *value)
{
    PyTypeObject *type = Py_TYPE(value);
    if (type == &PyUnicode_Type)
        return write_string(w, value);
    if (type == &PyLong_Type)
        return write_int(w, value);
    if (type == &PyFloat_Type)
        return write_float(w, value);
    if (value == Py_None)
        return write_ascii(w, "null", 4);
    if (value == Py_True)
        return write_ascii(w, "true", 4);
    if (value == Py_False)
        return write_ascii(w, "false", 5);
    int is_dict = type == &PyDict_Type;
    if (!is_dict && type != &PyList_Type && type != &PyTuple_Type)
        return decline();   /* subclasses and everything else: json's path, with `default` */
    if (w->depth >= MAX_DEPTH)
        return decline();
    w->depth++;
    int status = is_dict ? write_dict(w, value) : write_array(w, value);
    w->depth--;
    return status;
}

PyObject *
sbx_json_dumps_ascii(PyObject *Py_UNUSED(module), PyObject *value)
{
    if (!json_would_not_recurse_too_deep())
        Py_RETURN_NOTIMPLEMENTED;
    Writer w = {.bytes = PyBytes_FromStringAndSize(NULL, FIRST_CAPACITY)};
    if (w.bytes == NULL)
        return NULL;
    w.pos = PyBytes_AS_STRING(w.bytes);
    w.end = w.pos + FIRST_CAPACITY;
    if (write_value(&w, value) == 0 && _PyBytes_Resize(&w.bytes, w.pos - PyBytes_AS_STRING(w.bytes)) == 0)
        return w.bytes;
    Py_XDECREF(w.bytes);   /* NULL if a resize failed */
    if (PyErr_Occurred()) {
        if (PyErr_ExceptionMatches(PyExc_MemoryError))
            return NULL;
        PyErr_Clear();
    }
    Py_RETURN_NOTIMPLEMENTED;
}
