/* fastjson.h: what csrc/fastjson.c (the _fastjson module: the string quoter and
   the module), csrc/fastjson_decode.c (loads_utf8) and csrc/fastjson_encode.c
   (dumps_ascii) share -- the byte scans, a word or 16 bytes at a time, that find
   where a string's plain run ends. */
#ifndef SBX_FASTJSON_H
#define SBX_FASTJSON_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

/* loads_utf8(data): json.loads(str(data, "utf-8")), or NotImplemented (see fastjson_decode.c). */
PyObject *sbx_json_loads_utf8(PyObject *module, PyObject *data);
/* dumps_ascii(value): json.dumps(value).encode(), or NotImplemented (see fastjson_encode.c). */
PyObject *sbx_json_dumps_ascii(PyObject *module, PyObject *value);

/* Both directions answer values nested at most MAX_DEPTH deep (deeper ones,
   and every cycle, go the slow way: this bounds our C stack), and only while
   json itself would not run out of recursion: it spends one level per
   nesting level, plus up to RECURSION_SLACK frames of its own above them. */
#define MAX_DEPTH 200
#define RECURSION_SLACK 50

static inline int
json_would_not_recurse_too_deep(void)
{
    PyThreadState *thread = PyThreadState_Get();
#if PY_VERSION_HEX >= 0x030C0000
    return thread->c_recursion_remaining > MAX_DEPTH + RECURSION_SLACK;
#else
    return thread->recursion_remaining > MAX_DEPTH + RECURSION_SLACK;
#endif
}

#define BYTES(b) (0x0101010101010101ULL * (uint64_t)(b))

/* Word-at-a-time byte tests: nonzero iff some byte of w matches.  A borrow only
   starts at a matching byte, so a nonzero result always has a true match (the
   higher bits may be noise; callers then look byte by byte). */
static inline uint64_t
has_zero_byte(uint64_t w)
{
    return (w - BYTES(1)) & ~w & BYTES(0x80);
}

static inline uint64_t
has_byte_below(uint64_t w, unsigned char n)   /* n <= 128 */
{
    return (w - BYTES(n)) & ~w & BYTES(0x80);
}

static inline int
ends_plain_run(unsigned char c)   /* what stops a run of string bytes copied as they are */
{
    return c == '"' || c == '\\' || c < 0x20;
}

#if defined(__SSE2__)
static inline __m128i
run_ends_in(__m128i v)   /* 0xff at each '"', '\\' and control character */
{
    const __m128i last_control = _mm_set1_epi8(0x1f);
    __m128i control = _mm_cmpeq_epi8(_mm_max_epu8(v, last_control), last_control);
    return _mm_or_si128(control, _mm_or_si128(_mm_cmpeq_epi8(v, _mm_set1_epi8('"')),
                                              _mm_cmpeq_epi8(v, _mm_set1_epi8('\\'))));
}
#endif

/* The first byte in [s, end) that is '"', '\\' or a control character (json's
   strict mode rejects raw ones), or end.  Sets *non_ascii if a byte >= 0x80
   comes before it. */
static inline const unsigned char *
find_run_end(const unsigned char *s, const unsigned char *end, int *non_ascii)
{
#if defined(__SSE2__)
    __m128i high = _mm_setzero_si128();   /* top bits: bytes >= 0x80 */
    if (s < end && ends_plain_run(*s))
        return s;   /* escapes in a row */
    if (end - s >= 16) {   /* short runs (keys, between escapes) end in the first 16 bytes */
        __m128i v = _mm_loadu_si128((const __m128i *)s);
        int ends = _mm_movemask_epi8(run_ends_in(v));
        if (ends) {
            int at = __builtin_ctz((unsigned)ends);
            *non_ascii |= (_mm_movemask_epi8(v) & ((1 << at) - 1)) != 0;
            return s + at;
        }
        high = v;
        s += 16;
    }
    while (end - s >= 32) {   /* long strings: one test per 32 bytes */
        __m128i a = _mm_loadu_si128((const __m128i *)s), b = _mm_loadu_si128((const __m128i *)(s + 16));
        if (_mm_movemask_epi8(_mm_or_si128(run_ends_in(a), run_ends_in(b))))
            break;
        high = _mm_or_si128(high, _mm_or_si128(a, b));
        s += 32;
    }
    for (; end - s >= 16; s += 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)s);
        int ends = _mm_movemask_epi8(run_ends_in(v));
        if (ends) {
            int at = __builtin_ctz((unsigned)ends);
            *non_ascii |= (_mm_movemask_epi8(high) | (_mm_movemask_epi8(v) & ((1 << at) - 1))) != 0;
            return s + at;
        }
        high = _mm_or_si128(high, v);
    }
    *non_ascii |= _mm_movemask_epi8(high) != 0;
#else
    uint64_t high = 0;
    while (end - s >= 8) {
        uint64_t w;
        memcpy(&w, s, 8);
        if (has_zero_byte(w ^ BYTES('"')) | has_zero_byte(w ^ BYTES('\\')) | has_byte_below(w, 0x20))
            break;
        high |= w;
        s += 8;
    }
    *non_ascii |= (high & BYTES(0x80)) != 0;
#endif
    for (; s < end && !ends_plain_run(*s); s++)
        *non_ascii |= *s >= 0x80;
    return s;
}

/* Printable ASCII other than '"' and '\\': what json writes as it is.  s is ASCII. */
static inline int
is_plain_ascii(const unsigned char *s, Py_ssize_t n)
{
    const unsigned char *end = s + n;
#if defined(__SSE2__)
    const __m128i space = _mm_set1_epi8(0x20), quote = _mm_set1_epi8('"');
    const __m128i backslash = _mm_set1_epi8('\\'), delete = _mm_set1_epi8(0x7f);
    for (; end - s >= 16; s += 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)s);
        __m128i escaped = _mm_or_si128(_mm_or_si128(_mm_cmplt_epi8(v, space), _mm_cmpeq_epi8(v, quote)),
                                       _mm_or_si128(_mm_cmpeq_epi8(v, backslash), _mm_cmpeq_epi8(v, delete)));
        if (_mm_movemask_epi8(escaped))
            return 0;
    }
#endif
    while (end - s >= 8) {
        uint64_t w;
        memcpy(&w, s, 8);
        /* + 1 carries into the top bit only from 0x7f (DEL), as every byte is < 0x80 */
        if (has_byte_below(w, 0x20) | has_zero_byte(w ^ BYTES('"')) | has_zero_byte(w ^ BYTES('\\'))
            | ((w + BYTES(1)) & BYTES(0x80)))
            return 0;
        s += 8;
    }
    for (; s < end; s++)
        if (*s < 0x20 || *s > 0x7e || *s == '"' || *s == '\\')
            return 0;
    return 1;
}

#endif
