/* _fastjson: the function runtime's JSON hot paths (sandbox/functions/runtime/fastjson.py).

   loads_utf8(data) (csrc/fastjson_decode.c) parses UTF-8 JSON bytes straight
   into Python objects; it returns a value only where json.loads would return
   the same, else NotImplemented.

   dumps_ascii(value) (csrc/fastjson_encode.c) writes the bytes of
   json.dumps(value) for values of the builtin JSON types, else NotImplemented.

   encode_basestring_ascii(s) is _json.encode_basestring_ascii(s), with a fast
   path for the common string that needs no escaping; every other string goes
   to _json itself. */
#include "fastjson.h"

typedef struct {
    PyObject *json_encode_basestring_ascii;   /* _json's, for every string that needs escaping */
} ModuleState;

static PyObject *
encode_basestring_ascii(PyObject *module, PyObject *text)
{
#if PY_VERSION_HEX < 0x030C0000
    if (PyUnicode_Check(text) && PyUnicode_READY(text) < 0)
        return NULL;
#endif
    if (PyUnicode_Check(text) && PyUnicode_IS_ASCII(text)) {
        Py_ssize_t n = PyUnicode_GET_LENGTH(text);
        const unsigned char *chars = PyUnicode_1BYTE_DATA(text);
        if (is_plain_ascii(chars, n)) {
            PyObject *quoted = PyUnicode_New(n + 2, 127);
            if (quoted == NULL)
                return NULL;
            Py_UCS1 *out = PyUnicode_1BYTE_DATA(quoted);
            out[0] = '"';
            memcpy(out + 1, chars, n);
            out[n + 1] = '"';
            return quoted;
        }
    }
    ModuleState *state = PyModule_GetState(module);
    return PyObject_CallOneArg(state->json_encode_basestring_ascii, text);
}

static int
module_exec(PyObject *module)
{
    ModuleState *state = PyModule_GetState(module);
    PyObject *json = PyImport_ImportModule("_json");
    if (json == NULL)
        return -1;
    state->json_encode_basestring_ascii = PyObject_GetAttrString(json, "encode_basestring_ascii");
    Py_DECREF(json);
    return state->json_encode_basestring_ascii == NULL ? -1 : 0;
}

static int
module_traverse(PyObject *module, visitproc visit, void *arg)
{
    ModuleState *state = PyModule_GetState(module);
    Py_VISIT(state->json_encode_basestring_ascii);
    return 0;
}

static int
module_clear(PyObject *module)
{
    ModuleState *state = PyModule_GetState(module);
    Py_CLEAR(state->json_encode_basestring_ascii);
    return 0;
}

static void
module_free(void *module)
{
    module_clear(module);
}

static PyMethodDef methods[] = {
    {"loads_utf8", sbx_json_loads_utf8, METH_O,
     "loads_utf8(data) -> json.loads(str(data, 'utf-8')), or NotImplemented where that is not certain"},
    {"dumps_ascii", sbx_json_dumps_ascii, METH_O,
     "dumps_ascii(value) -> json.dumps(value).encode(), or NotImplemented where that is not certain"},
    {"encode_basestring_ascii", encode_basestring_ascii, METH_O,
     "encode_basestring_ascii(s) -> _json.encode_basestring_ascii(s)"},
    {NULL, NULL, 0, NULL},
};

static PyModuleDef_Slot slots[] = {
    {Py_mod_exec, module_exec},
    {0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_fastjson",
    .m_doc = "The function runtime's JSON fast paths (see fastjson.py).",
    .m_size = sizeof(ModuleState),
    .m_methods = methods,
    .m_slots = slots,
    .m_traverse = module_traverse,
    .m_clear = module_clear,
    .m_free = module_free,
};

PyMODINIT_FUNC
PyInit__fastjson(void)
{
    return PyModuleDef_Init(&module_def);
}
