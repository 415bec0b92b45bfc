/* _heap: how the function runtime's C library keeps freed memory
   (sandbox/functions/runtime/lambda_runtime.py, _keep_freed_heap).

   glibc gives freed heap back to the kernel once the free top passes its trim
   threshold (128 KiB at start), and serves requests from 128 KiB up with a
   fresh mapping.  Its thresholds grow with what it sees, but never past twice
   the largest block: a request of a few hundred KB allocates three or four
   payload-sized blocks (the event, the result, its bytes), frees them all, and
   every invocation then grows the heap, faults the pages in and trims them
   again.  keep_freed(trim, mmap) fixes both thresholds (mallopt), after init,
   so what init freed is still given back. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <limits.h>
#include <malloc.h>

static PyObject *
keep_freed(PyObject *Py_UNUSED(module), PyObject *args)
{
    Py_ssize_t trim, mmap_threshold;
    if (!PyArg_ParseTuple(args, "nn:keep_freed", &trim, &mmap_threshold))
        return NULL;
    if (trim < 0 || trim > INT_MAX || mmap_threshold < 0 || mmap_threshold > INT_MAX) {
        PyErr_SetString(PyExc_ValueError, "keep_freed: thresholds must be between 0 and INT_MAX bytes");
        return NULL;
    }
#if defined(M_TRIM_THRESHOLD) && defined(M_MMAP_THRESHOLD)
    /* mallopt returns 1 on success, 0 when it refuses a value (an mmap
       threshold over HEAP_MAX_SIZE / 2, 32 MiB on 64-bit). */
    if (mallopt(M_MMAP_THRESHOLD, (int)mmap_threshold) != 1 || mallopt(M_TRIM_THRESHOLD, (int)trim) != 1) {
        PyErr_SetString(PyExc_ValueError, "keep_freed: mallopt refused the thresholds");
        return NULL;
    }
    Py_RETURN_TRUE;
#else
    Py_RETURN_FALSE;   /* not glibc: its allocator's own policy stays */
#endif
}

static PyMethodDef methods[] = {
    {"keep_freed", keep_freed, METH_VARARGS,
     "keep_freed(trim, mmap) -> True: keep up to `trim` bytes of freed heap; map blocks of `mmap` bytes and up "
     "(False where the C library has no such settings)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_heap",
    .m_doc = "The function runtime's heap policy (see lambda_runtime._keep_freed_heap).",
    .m_size = 0,
    .m_methods = methods,
};

PyMODINIT_FUNC
PyInit__heap(void)
{
    return PyModuleDef_Init(&module_def);
}
