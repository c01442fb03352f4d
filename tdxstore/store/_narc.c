/* The NAR restorer's hot loop in C (L3): fed decompressed chunks, it rebuilds a tree with the GIL released.
 *
 * `narparser.Parser` is the reference and the fallback: this follows it rule for rule and word for word in
 * its errors. This file is the Python type (`Restorer`, `Malformed`) and narparser's messages; the grammar
 * itself, which never writes outside the destination, is _narc_parse.c.
 */
#include "_narc.h"

static PyObject *Malformed;

/* -- the Python type -------------------------------------------------------------------------------- */

static PyObject *bytes_of(const unsigned char *s, size_t n) { return PyBytes_FromStringAndSize((const char *)s, (Py_ssize_t)n); }

/* The exception for the fault, with narparser's message. */
static void raise_fault(Restorer *r) {
    PyObject *a = NULL, *b = NULL, *msg = NULL;
    unsigned long long n1 = r->n1, n2 = r->n2;
    switch (r->fault) {
    case F_OS:
        errno = r->err;
        PyErr_SetFromErrno(PyExc_OSError);
        return;
    case F_TRUNCATED:
        msg = PyUnicode_FromFormat("truncated stream (wanted %llu bytes, got %llu)", n1, n2);
        break;
    case F_TRUNCATED_FILE:
        msg = PyUnicode_FromFormat("truncated file contents (%llu of %llu bytes)", n1, n2);
        break;
    case F_PADDING:
        msg = PyUnicode_FromString("non-zero padding");
        break;
    case F_LIMIT:
        msg = PyUnicode_FromFormat("%s of %llu bytes exceeds the limit of %llu", r->what, n1, n2);
        break;
    case F_MAGIC:
        msg = PyUnicode_FromString("bad magic (not a Nix archive)");
        break;
    case F_DEPTH:
        msg = PyUnicode_FromFormat("directory nesting deeper than %d", MAX_DEPTH);
        break;
    case F_EXEC:
        msg = PyUnicode_FromString("'executable' must be followed by an empty string");
        break;
    case F_UNSORTED:
        if ((a = bytes_of(r->d1, r->d1_len)) && (b = bytes_of(r->d2, r->d2_len)))
            msg = PyUnicode_FromFormat("entry %R is not sorted after %R (or is a duplicate)", a, b);
        break;
    default:
        if ((a = bytes_of(r->d1, r->d1_len)) == NULL)
            break;
        if (r->fault == F_EXPECTED)
            msg = PyUnicode_FromFormat("expected '%s', found %R", r->what, a);
        else
            msg = PyUnicode_FromFormat(r->fault == F_TARGET ? "invalid symlink target %R"
                                       : r->fault == F_TYPE ? "unknown node type %R"
                                       : r->fault == F_CONTENTS ? "expected 'contents', found %R"
                                       : r->fault == F_ENTRY_TAG ? "expected 'entry' or ')', found %R"
                                       : "invalid entry name %R", a);
    }
    if (msg)
        PyErr_SetObject(Malformed, msg);
    Py_XDECREF(a);
    Py_XDECREF(b);
    Py_XDECREF(msg);
}

static int Restorer_init(Restorer *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"parent_fd", "name", "canonical", "create_canonical", "mtime", NULL};
    int parent, canonical, create_canonical;
    long long mtime;
    const char *name;
    Py_ssize_t len;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "iy#ppL", kwlist, &parent, &name, &len, &canonical,
                                     &create_canonical, &mtime))
        return -1;
    if (self->frames) {
        PyErr_SetString(PyExc_RuntimeError, "a Restorer is initialised once");
        return -1;
    }
    if (len == 0 || len > MAX_NAME || memchr(name, 0, (size_t)len) || memchr(name, '/', (size_t)len)) {
        PyErr_SetString(PyExc_ValueError, "the destination's name must be one path component");
        return -1;
    }
    self->frames = PyMem_Calloc(MAX_DEPTH + 1, sizeof(Frame));
    if (self->frames == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    memcpy(self->name, name, (size_t)len);
    self->name[len] = 0;
    self->root_parent = parent;
    self->canonical = canonical;
    self->create_canonical = create_canonical;
    self->times[0].tv_sec = self->times[1].tv_sec = (time_t)mtime;
    self->times[0].tv_nsec = self->times[1].tv_nsec = 0;
    self->file_fd = -1;
    self->state = S_MAGIC;
    return 0;
}

static void Restorer_dealloc(Restorer *self) {
    narc_close_all(self);
    PyMem_Free(self->frames);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int begin(Restorer *self) {
    if (self->frames == NULL || self->busy) {
        PyErr_SetString(PyExc_RuntimeError, "the Restorer is not initialised, or in use by another thread");
        return -1;
    }
    if (self->state == S_FAILED) {
        PyErr_SetString(PyExc_RuntimeError, "the Restorer has already failed");
        return -1;
    }
    return 0;
}

static PyObject *Restorer_feed(Restorer *self, PyObject *arg) {
    Py_buffer view;
    if (begin(self) < 0 || PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    Input in = {view.buf, (size_t)view.len, 0};
    int k;
    self->busy = 1;
    Py_BEGIN_ALLOW_THREADS
    k = narc_run(self, &in);
    Py_END_ALLOW_THREADS
    self->busy = 0;
    PyBuffer_Release(&view);
    if (k < 0) {
        raise_fault(self);
        return NULL;
    }
    if (k > 0)
        self->leftover += (Py_ssize_t)(in.len - in.pos);
    return PyBool_FromLong(k > 0);
}

static PyObject *Restorer_eof(Restorer *self, PyObject *Py_UNUSED(ignored)) {
    if (begin(self) < 0)
        return NULL;
    if (self->state == S_END)
        Py_RETURN_NONE;
    narc_truncated(self);
    raise_fault(self);
    return NULL;
}

static PyObject *Restorer_close(Restorer *self, PyObject *Py_UNUSED(ignored)) {
    if (self->busy) {
        PyErr_SetString(PyExc_RuntimeError, "the Restorer is in use by another thread");
        return NULL;
    }
    narc_close_all(self);
    if (self->state != S_END)
        self->state = S_FAILED;
    Py_RETURN_NONE;
}

static PyObject *Restorer_need(Restorer *self, void *Py_UNUSED(closure)) {
    return PyLong_FromUnsignedLongLong(self->busy ? 0 : narc_lacking(self));
}

static PyObject *Restorer_leftover(Restorer *self, void *Py_UNUSED(closure)) {
    return PyLong_FromSsize_t(self->leftover);
}

static PyMethodDef Restorer_methods[] = {
    {"feed", (PyCFunction)Restorer_feed, METH_O,
     "Parse a chunk and create what it completes (GIL released); True once the NAR has ended."},
    {"eof", (PyCFunction)Restorer_eof, METH_NOARGS,
     "The source has ended: raise Malformed unless the NAR is complete."},
    {"close", (PyCFunction)Restorer_close, METH_NOARGS, "Close every file and directory still open."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Restorer_getset[] = {
    {"need", (getter)Restorer_need, NULL, "Bytes the current token lacks (a read hint; 0 when done).", NULL},
    {"leftover", (getter)Restorer_leftover, NULL, "Bytes fed after the NAR's end.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject RestorerType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "tdxstore.store._narc.Restorer",
    .tp_doc = PyDoc_STR("Restorer(parent_fd, name, canonical, create_canonical, mtime): an incremental NAR restorer"),
    .tp_basicsize = sizeof(Restorer),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Restorer_init,
    .tp_dealloc = (destructor)Restorer_dealloc,
    .tp_methods = Restorer_methods,
    .tp_getset = Restorer_getset,
};

static struct PyModuleDef narc_module = {
    PyModuleDef_HEAD_INIT, "_narc", "The NAR restorer's hot loop (see narparser.py).", -1, NULL,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__narc(void) {
    if (PyType_Ready(&RestorerType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&narc_module);
    if (m == NULL)
        return NULL;
    Malformed = PyErr_NewExceptionWithDoc("tdxstore.store._narc.Malformed",
                                          "The NAR breaks a rule; the message is narparser's.", PyExc_ValueError, NULL);
    if (Malformed == NULL || PyModule_AddObjectRef(m, "Malformed", Malformed) < 0
        || PyModule_AddObjectRef(m, "Restorer", (PyObject *)&RestorerType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
