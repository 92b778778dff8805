/* Optional C versions of the middleware's two per-request hot spots (pinsignal/asgi.py).
 *
 * cookie_send(send, scope, key, sent)
 *     The ``send`` the app is given: appends ``scope[key]`` (a list of Set-Cookie headers) to a copy
 *     of the first ``http.response.start`` message and marks ``scope[key] = sent``; every message
 *     is then passed to ``send``. Same behaviour as ``asgi._cookie_send`` in Python.
 *
 * first_visit_epik(quick, scope, before, after, key)
 *     The ``_epik`` cookie of a first visit with a plain click id: no header named in
 *     ``quick[0]``, the query ``before + b"epik=" + after`` with ``before`` empty or ending in
 *     ``&``, and ``after`` 1-1024 ASCII letters and digits. Stores
 *     ``scope[key] = [(b"set-cookie", quick[1] + after + quick[2][scope["scheme"]])]`` and returns
 *     True; returns False (storing nothing) for anything else, which the general path then handles.
 *     Same behaviour as ``asgi._first_visit_epik`` in Python.
 *
 * The pure-Python versions are the reference: tests hold both to the same results. Built when a C
 * compiler is there (hatch_build.py); PINSIGNAL_PURE_PYTHON=1 skips the build and the import.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stddef.h>

#define EPIK_MAX_LENGTH 1024

static PyObject *str_type, *str_start, *str_headers, *str_scheme, *str_setdefault, *bytes_set_cookie, *empty_tuple;

/* --- cookie_send ------------------------------------------------------------------------------ */

typedef struct {
    PyObject_HEAD
    PyObject *send;
    PyObject *scope;
    PyObject *key;
    PyObject *sent;
    vectorcallfunc vectorcall;
} CookieSend;

static int
cookie_send_traverse(CookieSend *self, visitproc visit, void *arg)
{
    Py_VISIT(self->send);
    Py_VISIT(self->scope);
    Py_VISIT(self->key);
    Py_VISIT(self->sent);
    return 0;
}

static int
cookie_send_clear(CookieSend *self)
{
    Py_CLEAR(self->send);
    Py_CLEAR(self->scope);
    Py_CLEAR(self->key);
    Py_CLEAR(self->sent);
    return 0;
}

static void
cookie_send_dealloc(CookieSend *self)
{
    PyObject_GC_UnTrack(self);
    cookie_send_clear(self);
    PyObject_GC_Del(self);
}

/* The start message with the cookies appended: a new dict and a new headers list, as
 * ``dict(message, headers=[*message.get("headers", ()), *cookies])``. New reference. */
static PyObject *
with_cookies(PyObject *message, PyObject *cookies)
{
    PyObject *copy = PyDict_New();
    if (copy == NULL) {
        return NULL;
    }
    if (PyDict_Merge(copy, message, 1) < 0) {
        goto fail;
    }
    PyObject *headers = PyDict_GetItemWithError(copy, str_headers); /* borrowed */
    if (headers == NULL && PyErr_Occurred()) {
        goto fail;
    }
    PyObject *list = PySequence_List(headers != NULL ? headers : empty_tuple);
    if (list == NULL) {
        goto fail;
    }
    PyObject *extended = PySequence_InPlaceConcat(list, cookies); /* list += cookies: the same list */
    Py_DECREF(list);
    if (extended == NULL) {
        goto fail;
    }
    int failed = PyDict_SetItem(copy, str_headers, extended);
    Py_DECREF(extended);
    if (failed < 0) {
        goto fail;
    }
    return copy;
fail:
    Py_DECREF(copy);
    return NULL;
}

static PyObject *
cookie_send_call(PyObject *callable, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    CookieSend *self = (CookieSend *)callable;
    if (PyVectorcall_NARGS(nargsf) != 1 || (kwnames != NULL && PyTuple_GET_SIZE(kwnames) != 0)) {
        PyErr_SetString(PyExc_TypeError, "send() takes exactly one message");
        return NULL;
    }
    PyObject *message = args[0];
    PyObject *type = PyObject_GetItem(message, str_type);
    if (type == NULL) {
        return NULL;
    }
    int start = PyObject_RichCompareBool(type, str_start, Py_EQ);
    Py_DECREF(type);
    if (start <= 0) {
        return start < 0 ? NULL : PyObject_CallOneArg(self->send, message);
    }
    PyObject *cookies;
    if (PyDict_CheckExact(self->scope)) {
        cookies = PyDict_SetDefault(self->scope, self->key, self->sent); /* borrowed */
        Py_XINCREF(cookies);
    }
    else {
        cookies = PyObject_CallMethodObjArgs(self->scope, str_setdefault, self->key, self->sent, NULL);
    }
    if (cookies == NULL) {
        return NULL;
    }
    if (cookies == self->sent) {
        Py_DECREF(cookies);
        return PyObject_CallOneArg(self->send, message);
    }
    if (PyObject_SetItem(self->scope, self->key, self->sent) < 0) {
        Py_DECREF(cookies);
        return NULL;
    }
    int any = PyObject_IsTrue(cookies);
    if (any <= 0) {
        Py_DECREF(cookies);
        return any < 0 ? NULL : PyObject_CallOneArg(self->send, message);
    }
    PyObject *started = with_cookies(message, cookies);
    Py_DECREF(cookies);
    if (started == NULL) {
        return NULL;
    }
    PyObject *result = PyObject_CallOneArg(self->send, started);
    Py_DECREF(started);
    return result;
}

static PyTypeObject CookieSendType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "pinsignal._speedups.CookieSend",
    .tp_doc = "The send() that adds the request's cookies to the response (see cookie_send).",
    .tp_basicsize = sizeof(CookieSend),
    .tp_dealloc = (destructor)cookie_send_dealloc,
    .tp_vectorcall_offset = offsetof(CookieSend, vectorcall),
    .tp_call = PyVectorcall_Call,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_traverse = (traverseproc)cookie_send_traverse,
    .tp_clear = (inquiry)cookie_send_clear,
};

static PyObject *
cookie_send(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "cookie_send(send, scope, key, sent) takes 4 arguments");
        return NULL;
    }
    CookieSend *self = PyObject_GC_New(CookieSend, &CookieSendType);
    if (self == NULL) {
        return NULL;
    }
    self->send = Py_NewRef(args[0]);
    self->scope = Py_NewRef(args[1]);
    self->key = Py_NewRef(args[2]);
    self->sent = Py_NewRef(args[3]);
    self->vectorcall = cookie_send_call;
    PyObject_GC_Track(self);
    return (PyObject *)self;
}

/* --- first_visit_epik ------------------------------------------------------------------------- */

static int
is_plain(const unsigned char *text, Py_ssize_t length)
{
    for (Py_ssize_t i = 0; i < length; i++) {
        unsigned char c = text[i];
        if (!((c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z'))) {
            return 0;
        }
    }
    return 1;
}

/* 1 when a header of the request is named in ``breakers``, 0 when none is, -1 on error, 2 when the
 * headers are not a list of 2-tuples (the general path then reads them). */
static int
any_header_in(PyObject *scope, PyObject *breakers)
{
    PyObject *headers = PyObject_GetItem(scope, str_headers);
    if (headers == NULL) {
        return -1;
    }
    int found = 0;
    if (!PyList_CheckExact(headers)) {
        found = 2;
    }
    for (Py_ssize_t i = 0; found == 0 && i < PyList_GET_SIZE(headers); i++) {
        PyObject *item = PyList_GET_ITEM(headers, i);
        if (!PyTuple_CheckExact(item) || PyTuple_GET_SIZE(item) != 2) {
            found = 2;
            break;
        }
        Py_INCREF(item); /* a name's own __eq__ could change the list while it is compared */
        found = PySet_Contains(breakers, PyTuple_GET_ITEM(item, 0));
        Py_DECREF(item);
    }
    Py_DECREF(headers);
    return found;
}

static PyObject *
first_visit_epik(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "first_visit_epik(quick, scope, before, after, key) takes 5 arguments");
        return NULL;
    }
    PyObject *quick = args[0], *scope = args[1], *before = args[2], *after = args[3], *key = args[4];
    if (!PyTuple_CheckExact(quick) || PyTuple_GET_SIZE(quick) != 3 || !PyAnySet_Check(PyTuple_GET_ITEM(quick, 0)) ||
        !PyBytes_CheckExact(PyTuple_GET_ITEM(quick, 1)) || !PyDict_CheckExact(PyTuple_GET_ITEM(quick, 2))) {
        PyErr_SetString(PyExc_TypeError, "quick must be (breakers: frozenset, prefix: bytes, suffixes: dict)");
        return NULL;
    }
    if (!PyBytes_CheckExact(before) || !PyBytes_CheckExact(after)) {
        Py_RETURN_FALSE;
    }
    Py_ssize_t before_length = PyBytes_GET_SIZE(before), length = PyBytes_GET_SIZE(after);
    if ((before_length > 0 && PyBytes_AS_STRING(before)[before_length - 1] != '&') || length < 1 ||
        length > EPIK_MAX_LENGTH || !is_plain((const unsigned char *)PyBytes_AS_STRING(after), length)) {
        Py_RETURN_FALSE;
    }
    int found = any_header_in(scope, PyTuple_GET_ITEM(quick, 0));
    if (found != 0) {
        if (found < 0) {
            return NULL;
        }
        Py_RETURN_FALSE;
    }
    PyObject *scheme = PyObject_GetItem(scope, str_scheme);
    if (scheme == NULL) {
        return NULL;
    }
    PyObject *suffix = PyDict_GetItemWithError(PyTuple_GET_ITEM(quick, 2), scheme); /* borrowed */
    Py_DECREF(scheme);
    if (suffix == NULL) {
        if (PyErr_Occurred()) {
            return NULL;
        }
        Py_RETURN_FALSE;
    }
    if (!PyBytes_CheckExact(suffix)) {
        PyErr_SetString(PyExc_TypeError, "cookie suffixes must be bytes");
        return NULL;
    }
    PyObject *prefix = PyTuple_GET_ITEM(quick, 1);
    Py_ssize_t prefix_length = PyBytes_GET_SIZE(prefix), suffix_length = PyBytes_GET_SIZE(suffix);
    PyObject *value = PyBytes_FromStringAndSize(NULL, prefix_length + length + suffix_length);
    if (value == NULL) {
        return NULL;
    }
    char *out = PyBytes_AS_STRING(value);
    memcpy(out, PyBytes_AS_STRING(prefix), prefix_length);
    memcpy(out + prefix_length, PyBytes_AS_STRING(after), length);
    memcpy(out + prefix_length + length, PyBytes_AS_STRING(suffix), suffix_length);
    PyObject *header = PyTuple_Pack(2, bytes_set_cookie, value);
    Py_DECREF(value);
    if (header == NULL) {
        return NULL;
    }
    PyObject *cookies = PyList_New(1);
    if (cookies == NULL) {
        Py_DECREF(header);
        return NULL;
    }
    PyList_SET_ITEM(cookies, 0, header);
    int failed = PyObject_SetItem(scope, key, cookies);
    Py_DECREF(cookies);
    if (failed < 0) {
        return NULL;
    }
    Py_RETURN_TRUE;
}

/* --- module ----------------------------------------------------------------------------------- */

static PyMethodDef methods[] = {
    {"cookie_send", (PyCFunction)(void (*)(void))cookie_send, METH_FASTCALL,
     "cookie_send(send, scope, key, sent): the send() that adds scope[key]'s cookies to the response."},
    {"first_visit_epik", (PyCFunction)(void (*)(void))first_visit_epik, METH_FASTCALL,
     "first_visit_epik(quick, scope, before, after, key): the _epik cookie of a plain first visit, or False."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef speedups = {
    PyModuleDef_HEAD_INIT,
    .m_name = "pinsignal._speedups",
    .m_doc = "C versions of the middleware's per-request hot spots; pinsignal/asgi.py has the reference.",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    if (PyType_Ready(&CookieSendType) < 0) {
        return NULL;
    }
    str_type = PyUnicode_InternFromString("type");
    str_start = PyUnicode_InternFromString("http.response.start");
    str_headers = PyUnicode_InternFromString("headers");
    str_scheme = PyUnicode_InternFromString("scheme");
    str_setdefault = PyUnicode_InternFromString("setdefault");
    bytes_set_cookie = PyBytes_FromString("set-cookie");
    empty_tuple = PyTuple_New(0);
    if (str_type == NULL || str_start == NULL || str_headers == NULL || str_scheme == NULL || str_setdefault == NULL ||
        bytes_set_cookie == NULL || empty_tuple == NULL) {
        return NULL;
    }
    return PyModule_Create(&speedups);
}
