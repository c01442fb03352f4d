/* The NAR dumper's hot loop in C (L3): walks a tree and fills the caller's buffer with its NAR, GIL released.
 *
 * `nar._Dumper` is the reference and the fallback: this emits the same bytes (Nix's `nix-store --dump`) and
 * reports the same faults, which nar.py turns into the same messages. Every node is opened relative to its
 * directory's fd (O_NOFOLLOW, so a symlink is never followed), entries are sorted by their raw bytes, and a
 * file's contents go straight from read(2) into the caller's buffer: no copy but the kernel's.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define FILE_FLAGS (O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK)
#define DIR_FLAGS (O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
#define TARGET_MAX 4096                /* PATH_MAX: Linux refuses longer symlink targets */

enum fault { F_NONE, F_OS, F_UNSUPPORTED, F_CHANGED, F_DEPTH, F_NOMEM };

typedef struct {
    size_t off, len;
    unsigned char type;              /* d_type; DT_UNKNOWN: ask fstatat */
} Name;

typedef struct {
    DIR *dir;                        /* open while its entries are dumped: their parent fd */
    Name *names;
    char *block;                     /* the names' bytes */
    size_t count, next;
    size_t path_len;                 /* the directory's own path, for messages */
} Frame;

typedef struct {
    PyObject_HEAD
    int busy, started, done, failed;
    int max_depth;                   /* deepest node: the root is 0 (narparser.MAX_DEPTH) */
    Frame *frames;
    int nframes;
    int file_fd;
    uint64_t file_size, left;
    unsigned char *pend;             /* framing not yet handed out */
    size_t pend_len, pend_off, pend_cap;
    char *path;                      /* the node being dumped, NUL-terminated */
    size_t path_len, path_cap;
    /* the fault, raised once the GIL is held again */
    int fault, err;
    unsigned long long value;
} Dumper;

static PyObject *Fault;

/* -- framing ------------------------------------------------------------------------------------- */

static int reserve(Dumper *d, size_t more) {
    if (d->pend_len + more <= d->pend_cap)
        return 0;
    size_t cap = d->pend_cap ? d->pend_cap : 8192;
    while (cap < d->pend_len + more)
        cap *= 2;
    unsigned char *p = realloc(d->pend, cap);
    if (p == NULL) {
        d->fault = F_NOMEM;
        return -1;
    }
    d->pend = p;
    d->pend_cap = cap;
    return 0;
}

/* str(s): its length as 8 bytes little-endian, the bytes, zeros to a multiple of 8 */
static int emit(Dumper *d, const void *s, size_t n) {
    size_t pad = (8 - n % 8) % 8;
    if (reserve(d, 8 + n + pad) < 0)
        return -1;
    unsigned char *p = d->pend + d->pend_len;
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)((uint64_t)n >> (8 * i));
    memcpy(p + 8, s, n);
    memset(p + 8 + n, 0, pad);
    d->pend_len += 8 + n + pad;
    return 0;
}

static int tag(Dumper *d, const char *s) { return emit(d, s, strlen(s)); }

static int tags(Dumper *d, const char *const *list) {
    for (; *list; list++)
        if (tag(d, *list) < 0)
            return -1;
    return 0;
}

static int fail(Dumper *d, int fault, int err, unsigned long long value) {
    d->fault = fault;
    d->err = err;
    d->value = value;
    return -1;
}

/* -- the node's path, kept for messages only --------------------------------------------------------- */

static int path_push(Dumper *d, const char *name, size_t n) {
    if (d->path_len + 1 + n + 1 > d->path_cap) {
        size_t cap = (d->path_len + 1 + n + 1) * 2;
        char *p = realloc(d->path, cap);
        if (p == NULL)
            return fail(d, F_NOMEM, 0, 0);
        d->path = p;
        d->path_cap = cap;
    }
    d->path[d->path_len++] = '/';
    memcpy(d->path + d->path_len, name, n);
    d->path_len += n;
    d->path[d->path_len] = 0;
    return 0;
}

static void path_cut(Dumper *d, size_t len) {
    d->path_len = len;
    d->path[len] = 0;
}

/* -- the walk --------------------------------------------------------------------------------------- */

static void close_frame(Frame *f) {
    if (f->dir)
        closedir(f->dir);
    free(f->names);
    free(f->block);
    memset(f, 0, sizeof *f);
}

static void close_all(Dumper *d) {
    if (d->file_fd >= 0)
        close(d->file_fd);
    d->file_fd = -1;
    while (d->nframes > 0)
        close_frame(&d->frames[--d->nframes]);
}

static int by_bytes(const void *a, const void *b, void *block) {
    const Name *x = a, *y = b;
    size_t n = x->len < y->len ? x->len : y->len;
    int c = memcmp((char *)block + x->off, (char *)block + y->off, n);
    return c ? c : (x->len > y->len) - (x->len < y->len);
}

/* Read a directory's names, sorted by their raw bytes, into a new frame. */
static int open_directory(Dumper *d, int parent, const char *name) {
    int fd = openat(parent, name, DIR_FLAGS);
    if (fd < 0)
        return fail(d, F_OS, errno, 0);
    Frame *f = &d->frames[d->nframes];
    memset(f, 0, sizeof *f);
    f->dir = fdopendir(fd);
    if (f->dir == NULL) {
        int e = errno;
        close(fd);
        return fail(d, F_OS, e, 0);
    }
    d->nframes++;  /* from here close_all frees it */
    size_t cap = 0, used = 0, block_cap = 0;
    for (;;) {
        errno = 0;
        struct dirent *e = readdir(f->dir);
        if (e == NULL) {
            if (errno)
                return fail(d, F_OS, errno, 0);
            break;
        }
        size_t n = strlen(e->d_name);
        if ((n == 1 && e->d_name[0] == '.') || (n == 2 && e->d_name[0] == '.' && e->d_name[1] == '.'))
            continue;
        if (f->count == cap) {
            cap = cap ? cap * 2 : 64;
            Name *p = realloc(f->names, cap * sizeof *p);
            if (p == NULL)
                return fail(d, F_NOMEM, 0, 0);
            f->names = p;
        }
        if (used + n > block_cap) {
            block_cap = (used + n) * 2 + 1024;
            char *p = realloc(f->block, block_cap);
            if (p == NULL)
                return fail(d, F_NOMEM, 0, 0);
            f->block = p;
        }
        memcpy(f->block + used, e->d_name, n);
        f->names[f->count++] = (Name){used, n, e->d_type};
        used += n;
    }
    if (f->count > 1)
        qsort_r(f->names, f->count, sizeof(Name), by_bytes, f->block);
    f->path_len = d->path_len;
    return tags(d, (const char *const[]){"type", "directory", NULL});
}

/* A node is complete: close it (and its entry, unless it is the root). */
static int end_node(Dumper *d) {
    if (d->nframes == 0) {
        d->done = 1;
        return tag(d, ")");
    }
    path_cut(d, d->frames[d->nframes - 1].path_len);
    return tags(d, (const char *const[]){")", ")", NULL});
}

static int end_file(Dumper *d) {
    close(d->file_fd);
    d->file_fd = -1;
    static const unsigned char zeros[8] = {0};
    size_t pad = (8 - d->file_size % 8) % 8;
    if (reserve(d, pad) < 0)
        return -1;
    memcpy(d->pend + d->pend_len, zeros, pad);
    d->pend_len += pad;
    return end_node(d);
}

static int node(Dumper *d, int parent, const char *name, unsigned char type) {
    struct stat st;
    if (type == DT_UNKNOWN || (type != DT_REG && type != DT_DIR && type != DT_LNK)) {
        if (fstatat(parent, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
            return fail(d, F_OS, errno, 0);
        type = S_ISREG(st.st_mode) ? DT_REG : S_ISDIR(st.st_mode) ? DT_DIR : S_ISLNK(st.st_mode) ? DT_LNK : DT_UNKNOWN;
        if (type == DT_UNKNOWN)
            return fail(d, F_UNSUPPORTED, 0, st.st_mode);
    }
    if (type == DT_DIR)
        return open_directory(d, parent, name);
    if (type == DT_LNK) {
        char target[TARGET_MAX];
        ssize_t n = readlinkat(parent, name, target, sizeof target);
        if (n < 0)
            return fail(d, F_OS, errno, 0);
        if ((size_t)n == sizeof target)
            return fail(d, F_OS, ENAMETOOLONG, 0);
        if (tags(d, (const char *const[]){"type", "symlink", "target", NULL}) < 0 || emit(d, target, (size_t)n) < 0)
            return -1;
        return end_node(d);
    }
    int fd = openat(parent, name, FILE_FLAGS);
    if (fd < 0)
        return fail(d, F_OS, errno, 0);
    if (fstat(fd, &st) < 0) {
        int e = errno;
        close(fd);
        return fail(d, F_OS, e, 0);
    }
    if (!S_ISREG(st.st_mode)) {  /* replaced between listing and opening */
        close(fd);
        return fail(d, F_UNSUPPORTED, 0, st.st_mode);
    }
    d->file_fd = fd;
    d->file_size = d->left = (uint64_t)st.st_size;
    if (tags(d, (const char *const[]){"type", "regular", NULL}) < 0
        || ((st.st_mode & S_IXUSR) && tags(d, (const char *const[]){"executable", "", NULL}) < 0)
        || tag(d, "contents") < 0 || reserve(d, 8) < 0)
        return -1;
    for (int i = 0; i < 8; i++)
        d->pend[d->pend_len + (size_t)i] = (unsigned char)(d->file_size >> (8 * i));
    d->pend_len += 8;
    return d->left ? 0 : end_file(d);
}

/* Advance the walk by one node (or one directory's end), appending its framing. */
static int step(Dumper *d) {
    if (!d->started) {
        d->started = 1;
        if (tag(d, "nix-archive-1") < 0 || tag(d, "(") < 0)
            return -1;
        return node(d, AT_FDCWD, d->path, DT_UNKNOWN);
    }
    Frame *f = &d->frames[d->nframes - 1];
    if (f->next == f->count) {
        close_frame(f);
        d->nframes--;
        return end_node(d);
    }
    if (d->nframes > d->max_depth)  /* the entry's depth is the number of directories above it */
        return fail(d, F_DEPTH, 0, 0);
    Name *e = &f->names[f->next++];
    const char *name = f->block + e->off;
    if (tags(d, (const char *const[]){"entry", "(", "name", NULL}) < 0 || emit(d, name, e->len) < 0
        || tags(d, (const char *const[]){"node", "(", NULL}) < 0 || path_push(d, name, e->len) < 0)
        return -1;
    /* openat needs a NUL-terminated name: the path holds one */
    return node(d, dirfd(f->dir), d->path + d->path_len - e->len, e->type);
}

/* Fill `out` with the next NAR bytes: all of it unless the NAR ends first. */
static int fill(Dumper *d, unsigned char *out, size_t cap, size_t *filled) {
    size_t k = 0;
    for (;;) {
        if (d->pend_off < d->pend_len) {
            size_t m = d->pend_len - d->pend_off;
            if (m > cap - k)
                m = cap - k;
            memcpy(out + k, d->pend + d->pend_off, m);
            k += m;
            d->pend_off += m;
            if (d->pend_off == d->pend_len)
                d->pend_off = d->pend_len = 0;
        }
        if (k == cap || (d->done && d->pend_len == 0))
            break;
        if (d->file_fd >= 0) {
            size_t want = cap - k;
            if (want > d->left)
                want = (size_t)d->left;
            ssize_t got = read(d->file_fd, out + k, want);
            if (got < 0) {
                if (errno == EINTR)
                    continue;
                *filled = k;
                return fail(d, F_OS, errno, 0);
            }
            if (got == 0) {
                *filled = k;
                return fail(d, F_CHANGED, 0, d->file_size);
            }
            k += (size_t)got;
            d->left -= (uint64_t)got;
            if (d->left == 0 && end_file(d) < 0)
                break;
            continue;
        }
        if (step(d) < 0)
            break;
    }
    *filled = k;
    return d->fault ? -1 : 0;
}

/* -- the Python type ------------------------------------------------------------------------------- */

static int Dumper_init(Dumper *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"path", "max_depth", NULL};
    const char *path;
    Py_ssize_t len;
    int max_depth;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "y#i", kwlist, &path, &len, &max_depth))
        return -1;
    if (self->frames) {
        PyErr_SetString(PyExc_RuntimeError, "a Dumper is initialised once");
        return -1;
    }
    if (len == 0 || memchr(path, 0, (size_t)len) || max_depth < 0) {
        PyErr_SetString(PyExc_ValueError, "the path must be non-empty without NUL, max_depth >= 0");
        return -1;
    }
    self->frames = PyMem_RawCalloc((size_t)max_depth + 1, sizeof(Frame));
    self->path = malloc((size_t)len + 1);
    if (self->frames == NULL || self->path == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    memcpy(self->path, path, (size_t)len);
    self->path[len] = 0;
    self->path_len = (size_t)len;
    self->path_cap = (size_t)len + 1;
    self->max_depth = max_depth;
    self->file_fd = -1;
    return 0;
}

static void Dumper_dealloc(Dumper *self) {
    close_all(self);
    PyMem_RawFree(self->frames);
    free(self->pend);
    free(self->path);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static void raise_fault(Dumper *d) {
    static const char *kinds[] = {"", "os", "unsupported", "changed", "depth", ""};
    if (d->fault == F_NOMEM) {
        PyErr_NoMemory();
        return;
    }
    unsigned long long value = d->fault == F_OS ? (unsigned long long)d->err : d->value;
    PyObject *args = Py_BuildValue("(sy#K)", kinds[d->fault], d->path, (Py_ssize_t)d->path_len, value);
    if (args) {
        PyErr_SetObject(Fault, args);
        Py_DECREF(args);
    }
}

static PyObject *Dumper_fill(Dumper *self, PyObject *arg) {
    if (self->frames == NULL || self->busy) {
        PyErr_SetString(PyExc_RuntimeError, "the Dumper is not initialised, or in use by another thread");
        return NULL;
    }
    if (self->failed) {
        PyErr_SetString(PyExc_RuntimeError, "the Dumper has already failed");
        return NULL;
    }
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_WRITABLE) < 0)
        return NULL;
    size_t n = 0;
    int k;
    self->busy = 1;
    Py_BEGIN_ALLOW_THREADS
    k = fill(self, view.buf, (size_t)view.len, &n);
    Py_END_ALLOW_THREADS
    self->busy = 0;
    PyBuffer_Release(&view);
    if (k < 0) {
        self->failed = 1;
        close_all(self);
        raise_fault(self);
        return NULL;
    }
    return PyLong_FromSize_t(n);
}

static PyObject *Dumper_close(Dumper *self, PyObject *Py_UNUSED(ignored)) {
    if (self->busy) {
        PyErr_SetString(PyExc_RuntimeError, "the Dumper is in use by another thread");
        return NULL;
    }
    close_all(self);
    if (!self->done)
        self->failed = 1;
    Py_RETURN_NONE;
}

static PyMethodDef Dumper_methods[] = {
    {"fill", (PyCFunction)Dumper_fill, METH_O,
     "Fill a writable buffer with the next NAR bytes (GIL released); return the count, short only at the end."},
    {"close", (PyCFunction)Dumper_close, METH_NOARGS, "Close every file and directory still open."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject DumperType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "tdxstore.store._nardump.Dumper",
    .tp_doc = PyDoc_STR("Dumper(path, max_depth): the NAR of `path` (not followed), a buffer at a time"),
    .tp_basicsize = sizeof(Dumper),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Dumper_init,
    .tp_dealloc = (destructor)Dumper_dealloc,
    .tp_methods = Dumper_methods,
};

static struct PyModuleDef nardump_module = {
    PyModuleDef_HEAD_INIT, "_nardump", "The NAR dumper's hot loop (see nar.py).", -1, NULL, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__nardump(void) {
    if (PyType_Ready(&DumperType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&nardump_module);
    if (m == NULL)
        return NULL;
    Fault = PyErr_NewExceptionWithDoc("tdxstore.store._nardump.Fault",
                                      "(kind, path, value): os (errno), unsupported (st_mode), changed (expected "
                                      "size) or depth; nar.py words the message.", PyExc_Exception, NULL);
    if (Fault == NULL || PyModule_AddObjectRef(m, "Fault", Fault) < 0
        || PyModule_AddObjectRef(m, "Dumper", (PyObject *)&DumperType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
