/* fastjson_decode.c: loads_utf8(data) of the _fastjson module (csrc/fastjson.c).

   Parses UTF-8 JSON bytes straight into Python objects, without first decoding
   the whole payload to str.  Its only promise: a value it returns equals
   json.loads(str(data, "utf-8")) exactly.  Whenever it cannot keep that
   promise -- invalid JSON or UTF-8, nesting deeper than MAX_DEPTH, an int too
   long for int(), any exception -- it returns NotImplemented and the caller
   runs json's own path, which also words the error.  The input is
   attacker-controlled: every read is checked against the end of the buffer. */
#include "fastjson.h"

#include <float.h>
#include <math.h>

#define SMALL_INT_DIGITS 18      /* 10**18 - 1 < 2**63: accumulates in a long long */
#define NUMBER_ON_STACK 64

#define KEY_CACHE_SLOTS 64        /* per call: most documents repeat a few keys */
#define KEY_CACHE_MAX_LENGTH 64

typedef struct {
    const unsigned char *pos, *end;
    PyObject *memo;              /* key -> key, so repeated keys share one str, as in json */
    PyObject *key_cache[KEY_CACHE_SLOTS];   /* ASCII keys by their bytes (borrowed from memo) */
    Py_UCS4 *scratch;            /* the code points of the current string with escapes */
    Py_ssize_t scratch_size;
    int depth;
} Parser;

static PyObject *parse_value(Parser *p);

static inline void
skip_whitespace(Parser *p)
{
    while (p->pos < p->end && (*p->pos == ' ' || *p->pos == '\t' || *p->pos == '\n' || *p->pos == '\r'))
        p->pos++;
}

static inline int
next_is(Parser *p, unsigned char c)
{
    return p->pos < p->end && *p->pos == c;
}

static PyObject *
str_from_utf8(const unsigned char *s, Py_ssize_t n, int non_ascii)
{
    if (non_ascii)
        return PyUnicode_DecodeUTF8((const char *)s, n, NULL);   /* strict, as str(data, "utf-8") */
    PyObject *str = PyUnicode_New(n, 127);
    if (str != NULL && n > 0)
        memcpy(PyUnicode_1BYTE_DATA(str), s, n);
    return str;
}

static int
grow_scratch(Parser *p, Py_ssize_t needed)
{
    Py_ssize_t size = p->scratch_size > needed / 2 ? p->scratch_size * 2 : needed + 64;
    Py_UCS4 *grown = (size_t)size <= PY_SSIZE_T_MAX / sizeof(Py_UCS4)
                     ? PyMem_Realloc(p->scratch, size * sizeof(Py_UCS4)) : NULL;
    if (grown == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    p->scratch = grown;
    p->scratch_size = size;
    return 0;
}

static inline int
reserve_scratch(Parser *p, Py_ssize_t needed)
{
    return needed <= p->scratch_size ? 0 : grow_scratch(p, needed);
}

/* Appends the code points of the raw bytes [s, s + n) (no escapes in them). */
static int
append_run(Parser *p, const unsigned char *s, Py_ssize_t n, int non_ascii, Py_ssize_t *used)
{
    if (!non_ascii) {
        if (reserve_scratch(p, *used + n) < 0)
            return -1;
        for (Py_ssize_t i = 0; i < n; i++)
            p->scratch[*used + i] = s[i];
        *used += n;
        return 0;
    }
    PyObject *decoded = str_from_utf8(s, n, 1);   /* CPython's strict validation */
    if (decoded == NULL)
        return -1;
    Py_ssize_t length = PyUnicode_GET_LENGTH(decoded);
    int failed = reserve_scratch(p, *used + length) < 0
                 || PyUnicode_AsUCS4(decoded, p->scratch + *used, length, 0) == NULL;
    Py_DECREF(decoded);
    *used += length;
    return failed ? -1 : 0;
}

static int
hex_digit(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c |= 0x20;   /* 'A'..'F' -> 'a'..'f'; nothing else lands there */
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

static long
hex4(const unsigned char *s)   /* four hex digits (either case), or -1 */
{
    long value = 0;
    for (int i = 0; i < 4; i++) {
        int digit = hex_digit(s[i]);
        if (digit < 0)
            return -1;
        value = value << 4 | digit;
    }
    return value;
}

/* The escape whose backslash is at *at: its code point, *at moved past it.
   \uD8xx\uDCxx pairs into one code point exactly where json pairs them; other
   surrogates stay lone, as in json.  -1: not a valid escape. */
static long
unescape(const unsigned char **at, const unsigned char *end)
{
    const unsigned char *s = *at + 1;
    long c;
    if (s >= end)
        return -1;
    switch (*s++) {
    case '"': c = '"'; break;
    case '\\': c = '\\'; break;
    case '/': c = '/'; break;
    case 'b': c = '\b'; break;
    case 'f': c = '\f'; break;
    case 'n': c = '\n'; break;
    case 'r': c = '\r'; break;
    case 't': c = '\t'; break;
    case 'u':
        if (end - s < 4 || (c = hex4(s)) < 0)
            return -1;
        s += 4;
        if (Py_UNICODE_IS_HIGH_SURROGATE(c) && end - s >= 6 && s[0] == '\\' && s[1] == 'u') {
            long low = hex4(s + 2);
            if (low < 0)
                return -1;   /* json rejects it here as well */
            if (Py_UNICODE_IS_LOW_SURROGATE(low)) {
                c = Py_UNICODE_JOIN_SURROGATES(c, low);
                s += 6;
            }
        }
        break;
    default:
        return -1;
    }
    *at = s;
    return c;
}

/* A string with escapes, from p->pos (after the quote); `stop` is the first
   byte that ended the plain run there. */
static PyObject *
parse_escaped_string(Parser *p, const unsigned char *stop, int non_ascii)
{
    const unsigned char *run = p->pos;
    Py_ssize_t used = 0;
    for (;;) {
        if (stop >= p->end || *stop < 0x20)
            return NULL;   /* unterminated, or a raw control character */
        if (append_run(p, run, stop - run, non_ascii, &used) < 0)
            return NULL;
        if (*stop == '"')
            break;
        long c = unescape(&stop, p->end);
        if (c < 0 || reserve_scratch(p, used + 1) < 0)
            return NULL;
        p->scratch[used++] = (Py_UCS4)c;
        run = stop;
        non_ascii = 0;
        stop = find_run_end(run, p->end, &non_ascii);
    }
    p->pos = stop + 1;
    /* picks the narrowest kind, as every str must have */
    return PyUnicode_FromKindAndData(PyUnicode_4BYTE_KIND, p->scratch, used);
}

static PyObject *
parse_string(Parser *p)   /* p->pos is just after the opening quote */
{
    int non_ascii = 0;
    const unsigned char *stop = find_run_end(p->pos, p->end, &non_ascii);
    if (stop < p->end && *stop == '"') {
        PyObject *str = str_from_utf8(p->pos, stop - p->pos, non_ascii);
        p->pos = stop + 1;
        return str;
    }
    return parse_escaped_string(p, stop, non_ascii);
}

/* The slot of an ASCII key's bytes in the key cache (FNV-1a). */
static PyObject **
key_cache_slot(Parser *p, const unsigned char *s, Py_ssize_t n)
{
    uint32_t hash = 2166136261u;
    for (Py_ssize_t i = 0; i < n; i++)
        hash = (hash ^ s[i]) * 16777619u;
    return &p->key_cache[(hash ^ hash >> 16) % KEY_CACHE_SLOTS];
}

/* A key, the same str for the same text throughout the document (json's memo);
   a plain ASCII key seen before is found by its bytes, without a new str. */
static PyObject *
parse_key(Parser *p)
{
    int non_ascii = 0;
    const unsigned char *text = p->pos, *stop = find_run_end(text, p->end, &non_ascii);
    Py_ssize_t n = stop - text;
    PyObject **slot = NULL;
    if (stop < p->end && *stop == '"' && !non_ascii && n <= KEY_CACHE_MAX_LENGTH) {
        slot = key_cache_slot(p, text, n);
        PyObject *cached = *slot;
        if (cached != NULL && PyUnicode_GET_LENGTH(cached) == n && memcmp(PyUnicode_1BYTE_DATA(cached), text, n) == 0) {
            p->pos = stop + 1;
            return Py_NewRef(cached);
        }
    }
    PyObject *key = parse_string(p);
    if (key == NULL)
        return NULL;
    if (p->memo == NULL && (p->memo = PyDict_New()) == NULL) {
        Py_DECREF(key);
        return NULL;
    }
    PyObject *shared = PyDict_SetDefault(p->memo, key, key);   /* borrowed: the memo keeps it */
    Py_DECREF(key);
    if (slot != NULL && shared != NULL)
        *slot = shared;
    return Py_XNewRef(shared);
}

static PyObject *
number_from_text(const unsigned char *text, Py_ssize_t n, int is_float)
{
    char on_stack[NUMBER_ON_STACK];
    char *copy = n < NUMBER_ON_STACK ? on_stack : PyMem_Malloc(n + 1);   /* both need a NUL */
    if (copy == NULL)
        return PyErr_NoMemory();
    memcpy(copy, text, n);
    copy[n] = '\0';
    PyObject *number;
    if (is_float) {
        /* what float() does: overflow gives inf, not an error */
        double value = PyOS_string_to_double(copy, NULL, NULL);
        number = value == -1.0 && PyErr_Occurred() ? NULL : PyFloat_FromDouble(value);
    } else {
        number = PyLong_FromString(copy, NULL, 10);   /* raises past int()'s digit limit, as json does */
    }
    if (copy != on_stack)
        PyMem_Free(copy);
    return number;
}

/* Clinger's fast path: with at most 15 digits the decimal mantissa m, and
   10**k for k <= 22, are exact doubles, so m * 10**k or m / 10**k is one
   correctly rounded operation: the same double as float()'s correctly rounded
   strtod.  Needs doubles evaluated as doubles (not x87's extended precision).
   0: not such a number (text is valid JSON number syntax). */
#define FAST_FLOAT_DIGITS 15
static int
float_exactly(const unsigned char *s, const unsigned char *end, double *value)
{
#if defined(FLT_EVAL_METHOD) && FLT_EVAL_METHOD == 0
    static const double powers_of_ten[] = {1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11,
                                           1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};
    int negative = *s == '-', digits = 0, fraction_digits = 0, exponent = 0;
    uint64_t mantissa = 0;
    s += negative;
    for (int in_fraction = 0; s < end && ((*s >= '0' && *s <= '9') || *s == '.'); s++) {
        if (*s == '.') {
            in_fraction = 1;
            continue;
        }
        if (++digits > FAST_FLOAT_DIGITS)
            return 0;
        mantissa = mantissa * 10 + (*s - '0');
        fraction_digits += in_fraction;
    }
    if (s < end && ++s < end) {   /* past the 'e': the exponent */
        int exponent_negative = *s == '-';
        s += *s == '-' || *s == '+';
        if (end - s > 3)
            return 0;
        for (; s < end; s++)
            exponent = exponent * 10 + (*s - '0');
        exponent = exponent_negative ? -exponent : exponent;
    }
    exponent -= fraction_digits;
    if (exponent < -22 || exponent > 22)
        return 0;
    double magnitude = exponent >= 0 ? (double)mantissa * powers_of_ten[exponent]
                                     : (double)mantissa / powers_of_ten[-exponent];
    *value = negative ? -magnitude : magnitude;
    return 1;
#else
    return 0;
#endif
}

static inline int
is_digit(const unsigned char *s, const unsigned char *end)
{
    return s < end && *s >= '0' && *s <= '9';
}

/* json's grammar: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?.  Where json
   would stop early ("1.", "1e+", "01") the byte after is never valid JSON, so
   those are declined here at once. */
static PyObject *
parse_number(Parser *p)
{
    const unsigned char *start = p->pos, *s = p->pos, *end = p->end;
    int negative = s < end && *s == '-', is_float = 0;
    s += negative;
    const unsigned char *digits = s;
    if (!is_digit(s, end))
        return NULL;
    if (*s++ != '0')
        while (is_digit(s, end))
            s++;
    Py_ssize_t int_digits = s - digits;
    if (s < end && *s == '.') {
        if (!is_digit(++s, end))
            return NULL;
        while (is_digit(s, end))
            s++;
        is_float = 1;
    }
    if (s < end && (*s == 'e' || *s == 'E')) {
        s++;
        if (s < end && (*s == '+' || *s == '-'))
            s++;
        if (!is_digit(s, end))
            return NULL;
        while (is_digit(s, end))
            s++;
        is_float = 1;
    }
    p->pos = s;
    if (!is_float && int_digits <= SMALL_INT_DIGITS) {
        long long value = 0;
        for (const unsigned char *d = digits; d < s; d++)
            value = value * 10 + (*d - '0');
        return PyLong_FromLongLong(negative ? -value : value);
    }
    double value;
    if (is_float && float_exactly(start, s, &value))
        return PyFloat_FromDouble(value);
    return number_from_text(start, s - start, is_float);
}

static PyObject *
parse_word(Parser *p, const char *word, Py_ssize_t n, PyObject *value)   /* null, true, false */
{
    if (p->end - p->pos < n || memcmp(p->pos, word, n) != 0)
        return NULL;
    p->pos += n;
    return Py_NewRef(value);
}

static PyObject *
parse_constant(Parser *p, const char *word, Py_ssize_t n, double value)   /* NaN, Infinity, -Infinity */
{
    if (p->end - p->pos < n || memcmp(p->pos, word, n) != 0)
        return NULL;
    p->pos += n;
    return PyFloat_FromDouble(value);
}

/* An empty array or object: the closing bracket right after the opening one. */
static int
closes_at_once(Parser *p, unsigned char close)
{
    skip_whitespace(p);
    if (!next_is(p, close))
        return 0;
    p->pos++;
    return 1;
}

/* After an array item or an object member: 1 at the closing bracket (taken),
   0 after a ',' (taken, and the whitespace after it), -1 at anything else. */
static int
end_or_next(Parser *p, unsigned char close)
{
    skip_whitespace(p);
    if (next_is(p, close)) {
        p->pos++;
        return 1;
    }
    if (!next_is(p, ','))
        return -1;
    p->pos++;
    skip_whitespace(p);
    return 0;
}

static PyObject *
parse_array(Parser *p)   /* p->pos is just after '[' */
{
    PyObject *list = PyList_New(0);
    if (list == NULL)
        return NULL;
    if (closes_at_once(p, ']'))
        return list;
    for (;;) {
        PyObject *item = parse_value(p);
        if (item == NULL || PyList_Append(list, item) < 0) {
            Py_XDECREF(item);
            break;
        }
        Py_DECREF(item);
        int end = end_or_next(p, ']');
        if (end > 0)
            return list;
        if (end < 0)
            break;
    }
    Py_DECREF(list);
    return NULL;
}

static PyObject *
parse_object(Parser *p)   /* p->pos is just after '{' */
{
    PyObject *dict = PyDict_New();
    if (dict == NULL)
        return NULL;
    if (closes_at_once(p, '}'))
        return dict;
    for (;;) {
        if (!next_is(p, '"'))
            break;
        p->pos++;
        PyObject *key = parse_key(p);
        if (key == NULL)
            break;
        skip_whitespace(p);
        if (!next_is(p, ':')) {
            Py_DECREF(key);
            break;
        }
        p->pos++;
        skip_whitespace(p);
        PyObject *value = parse_value(p);
        /* SetItem keeps the first position and the last value of a repeated key, as json does */
        int failed = value == NULL || PyDict_SetItem(dict, key, value) < 0;
        Py_DECREF(key);
        Py_XDECREF(value);
        if (failed)
            break;
        int end = end_or_next(p, '}');
        if (end > 0)
            return dict;
        if (end < 0)
            break;
    }
    Py_DECREF(dict);
    return NULL;
}

static PyObject *
parse_nested(Parser *p, PyObject *(*parse)(Parser *))
{
    if (p->depth >= MAX_DEPTH)
        return NULL;
    p->depth++;
    p->pos++;
    PyObject *value = parse(p);
    p->depth--;
    return value;
}

static PyObject *
parse_value(Parser *p)   /* NULL: declined, with or without an exception set */
{
    if (p->pos >= p->end)
        return NULL;
    switch (*p->pos) {
    case '"':
        p->pos++;
        return parse_string(p);
    case '{':
        return parse_nested(p, parse_object);
    case '[':
        return parse_nested(p, parse_array);
    case 'n':
        return parse_word(p, "null", 4, Py_None);
    case 't':
        return parse_word(p, "true", 4, Py_True);
    case 'f':
        return parse_word(p, "false", 5, Py_False);
    case 'N':
        return parse_constant(p, "NaN", 3, (double)NAN);
    case 'I':
        return parse_constant(p, "Infinity", 8, HUGE_VAL);
    case '-':
        if (p->end - p->pos > 1 && p->pos[1] == 'I')
            return parse_constant(p, "-Infinity", 9, -HUGE_VAL);
        return parse_number(p);
    default:
        return parse_number(p);
    }
}

PyObject *
sbx_json_loads_utf8(PyObject *Py_UNUSED(module), PyObject *data)
{
    Py_buffer view;
    if (PyObject_GetBuffer(data, &view, PyBUF_SIMPLE) < 0) {   /* str, non-contiguous: json's path says why */
        PyErr_Clear();
        Py_RETURN_NOTIMPLEMENTED;
    }
    PyObject *value = NULL;
    if (json_would_not_recurse_too_deep()) {
        Parser p = {.pos = view.buf, .end = (const unsigned char *)view.buf + view.len};
        skip_whitespace(&p);
        value = parse_value(&p);
        skip_whitespace(&p);
        if (value != NULL && p.pos != p.end)
            Py_CLEAR(value);   /* trailing data */
        Py_XDECREF(p.memo);
        PyMem_Free(p.scratch);
    }
    PyBuffer_Release(&view);
    if (value != NULL)
        return value;
    if (PyErr_Occurred()) {
        if (PyErr_ExceptionMatches(PyExc_MemoryError))
            return NULL;
        PyErr_Clear();
    }
    Py_RETURN_NOTIMPLEMENTED;
}
