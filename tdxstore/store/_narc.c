/* The NAR restorer's hot loop in C (L3): fed decompressed chunks, it rebuilds a tree with the GIL released.
 *
 * `narparser.Parser` is the reference and the fallback: this follows it rule for rule and word for word in
 * its errors. It never writes outside the destination (every node is created relative to a directory fd,
 * O_EXCL|O_NOFOLLOW), never follows a symlink, and keeps no more input than one token (the carry).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_DEPTH 256
#define MAX_TAG 16
#define MAX_NAME 255
#define MAX_TARGET 4095
#define CARRY (8 + MAX_TARGET + 1)     /* the longest token: a symlink target with its length and padding */
#define HINT (1 << 20)                 /* what `need` asks for at most inside file contents (nar.CHUNK) */
#define WRITE_FLAGS (O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC)
#define DIR_FLAGS (O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)

enum state {
    S_MAGIC, S_OPEN, S_TYPE_TAG, S_TYPE, S_REG_TAG, S_REG_EXEC, S_REG_TAG2, S_REG_SIZE, S_REG_DATA, S_REG_PAD,
    S_SYM_TAG, S_SYM_TARGET, S_CLOSE, S_DIR_ENTRY, S_ENTRY_OPEN, S_ENTRY_NAME_TAG, S_ENTRY_NAME,
    S_ENTRY_NODE_TAG, S_ENTRY_CLOSE, S_END, S_FAILED
};

enum fault {
    F_NONE, F_OS, F_TRUNCATED, F_TRUNCATED_FILE, F_PADDING, F_LIMIT, F_EXPECTED, F_MAGIC, F_DEPTH, F_TARGET,
    F_TYPE, F_EXEC, F_CONTENTS, F_ENTRY_TAG, F_NAME, F_UNSORTED
};

typedef struct {
    int fd;                          /* the directory, open until its ")" */
    int prev_len;                    /* -1: no entry yet */
    unsigned char prev[MAX_NAME];    /* the last entry's name, for the strict order */
} Frame;

typedef struct {
    const unsigned char *p;
    size_t len, pos;
} Input;

typedef struct {
    PyObject_HEAD
    int state, busy;
    int root_parent;                 /* the caller's fd of the destination's parent (not ours to close) */
    int canonical, create_canonical;
    struct timespec times[2];
    Frame *frames;
    int nframes;
    int file_fd, executable;
    uint64_t size, left;
    unsigned char name[MAX_NAME + 1];        /* the node to create next, NUL-terminated */
    unsigned char target[MAX_TARGET + 1];
    size_t carry_len;
    unsigned char carry[CARRY];
    Py_ssize_t leftover;
    /* the fault, turned into an exception once the GIL is held again */
    int fault, err;
    const char *what;
    uint64_t n1, n2;
    size_t d1_len, d2_len;
    unsigned char d1[MAX_TARGET], d2[MAX_NAME];
} Restorer;

static PyObject *Malformed;

static uint64_t le64(const unsigned char *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static size_t pad8(uint64_t n) { return (size_t)((8 - n % 8) % 8); }

static int eq(const unsigned char *s, size_t n, const char *tag) {
    return n == strlen(tag) && memcmp(s, tag, n) == 0;
}

/* -- faults (no GIL) -------------------------------------------------------------------------------- */

static void close_all(Restorer *r) {
    if (r->file_fd >= 0)
        close(r->file_fd);
    r->file_fd = -1;
    while (r->nframes > 0)
        close(r->frames[--r->nframes].fd);
}

static int fail(Restorer *r, int fault) {
    if (fault == F_OS)
        r->err = errno;
    r->fault = fault;
    r->state = S_FAILED;
    close_all(r);
    return -1;
}

static int fail_with(Restorer *r, int fault, const unsigned char *s, size_t n) {
    if (n > sizeof r->d1)
        n = sizeof r->d1;
    memcpy(r->d1, s, n);
    r->d1_len = n;
    return fail(r, fault);
}

static int fail_expected(Restorer *r, const char *tag, const unsigned char *s, size_t n) {
    r->what = tag;
    return fail_with(r, F_EXPECTED, s, n);
}

/* -- tokens ----------------------------------------------------------------------------------------- */

/* The first `total` bytes of the current step, contiguous, or NULL while they are not all there: then
 * whatever the input had is kept in the carry, which never holds more than the step. */
static const unsigned char *peek(Restorer *r, Input *in, size_t total) {
    size_t avail = in->len - in->pos;
    if (r->carry_len == 0 && avail >= total)
        return in->p + in->pos;
    if (r->carry_len < total) {
        size_t k = total - r->carry_len;
        if (k > avail)
            k = avail;
        memcpy(r->carry + r->carry_len, in->p + in->pos, k);
        r->carry_len += k;
        in->pos += k;
    }
    return r->carry_len >= total ? r->carry : NULL;
}

/* Done with the step's `total` bytes (what `peek` returned stays readable until the next `peek`). */
static void consume(Restorer *r, Input *in, size_t total) {
    if (r->carry_len)
        r->carry_len = 0;
    else
        in->pos += total;
}

/* str(s) with |s| <= limit: 1 and *s, *n when whole, 0 when more input is needed, -1 on a fault. */
static int string(Restorer *r, Input *in, uint64_t limit, const char *what, const unsigned char **s, size_t *n) {
    const unsigned char *p = peek(r, in, 8);
    if (p == NULL)
        return 0;
    uint64_t len = le64(p);
    if (len > limit) {
        r->what = what;
        r->n1 = len;
        r->n2 = limit;
        return fail(r, F_LIMIT);
    }
    size_t pad = pad8(len), total = 8 + (size_t)len + pad;
    if ((p = peek(r, in, total)) == NULL)
        return 0;
    for (size_t i = 0; i < pad; i++)
        if (p[8 + len + i])
            return fail(r, F_PADDING);
    consume(r, in, total);
    *s = p + 8;
    *n = (size_t)len;
    return 1;
}

static int expect(Restorer *r, Input *in, const char *tag) {
    const unsigned char *s;
    size_t n;
    int k = string(r, in, MAX_TAG, "tag", &s, &n);
    if (k > 0 && !eq(s, n, tag))
        return fail_expected(r, tag, s, n);
    return k;
}

/* -- the tree --------------------------------------------------------------------------------------- */

static int parent_fd(Restorer *r) { return r->nframes ? r->frames[r->nframes - 1].fd : r->root_parent; }

static int write_all(int fd, const unsigned char *p, size_t n) {
    while (n) {
        ssize_t w = write(fd, p, n > (1u << 30) ? (1u << 30) : n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int open_file(Restorer *r) {
    mode_t mode = r->canonical ? (r->executable ? 0555 : 0444) : (r->executable ? 0755 : 0644);
    r->file_fd = openat(parent_fd(r), (const char *)r->name, WRITE_FLAGS,
                        r->canonical && !r->create_canonical ? 0700 : mode);
    return r->file_fd < 0 ? -1 : 0;
}

/* Canonical as normalise_tree leaves it: 0444/0555 (set by the create mode when the umask allows it),
 * mtime and atime 1. */
static int finish_file(Restorer *r) {
    int fd = r->file_fd, bad = 0;
    r->file_fd = -1;
    if (r->canonical) {
        if (!r->create_canonical && fchmod(fd, r->executable ? 0555 : 0444) < 0)
            bad = 1;
        if (!bad && futimens(fd, r->times) < 0)
            bad = 1;
    }
    int saved = errno;
    if (close(fd) < 0 && !bad)
        return -1;
    errno = saved;
    return bad ? -1 : 0;
}

static int open_directory(Restorer *r) {
    int parent = parent_fd(r);
    if (mkdirat(parent, (const char *)r->name, r->canonical ? 0700 : 0755) < 0)
        return -1;
    int fd = openat(parent, (const char *)r->name, DIR_FLAGS);
    if (fd < 0)
        return -1;
    Frame *f = &r->frames[r->nframes++];  /* nframes <= MAX_DEPTH: a deeper node was refused */
    f->fd = fd;
    f->prev_len = -1;
    return 0;
}

/* Last: creating the children needed write access and changed the mtime. */
static int finish_directory(Restorer *r) {
    int fd = r->frames[--r->nframes].fd, bad = 0;
    if (r->canonical && (fchmod(fd, 0555) < 0 || futimens(fd, r->times) < 0))
        bad = 1;
    int saved = errno;
    close(fd);
    errno = saved;
    return bad ? -1 : 0;
}

static int check_name(Restorer *r, const unsigned char *s, size_t n) {
    if (n == 0 || eq(s, n, ".") || eq(s, n, "..") || memchr(s, '/', n) || memchr(s, 0, n))
        return fail_with(r, F_NAME, s, n);
    Frame *f = &r->frames[r->nframes - 1];
    if (f->prev_len >= 0) {
        size_t m = (size_t)f->prev_len < n ? (size_t)f->prev_len : n;
        int c = memcmp(s, f->prev, m);
        if (c < 0 || (c == 0 && n <= (size_t)f->prev_len)) {
            memcpy(r->d2, f->prev, (size_t)f->prev_len);
            r->d2_len = (size_t)f->prev_len;
            return fail_with(r, F_UNSORTED, s, n);
        }
    }
    memcpy(f->prev, s, n);
    f->prev_len = (int)n;
    memcpy(r->name, s, n);
    r->name[n] = 0;
    return 0;
}

/* -- the grammar ------------------------------------------------------------------------------------ */

/* 1: the NAR ended (`in->pos` is just past it), 0: all input used, -1: a fault. */
static int run(Restorer *r, Input *in) {
    const unsigned char *s;
    size_t n;
    int k;
    for (;;) {
        switch (r->state) {
        case S_MAGIC:
            if ((k = string(r, in, MAX_TAG, "magic", &s, &n)) <= 0)
                return k;
            if (!eq(s, n, "nix-archive-1"))
                return fail(r, F_MAGIC);
            r->state = S_OPEN;
            break;
        case S_OPEN:
            if ((k = expect(r, in, "(")) <= 0)
                return k;
            r->state = S_TYPE_TAG;
            break;
        case S_TYPE_TAG:
            if ((k = expect(r, in, "type")) <= 0)
                return k;
            r->state = S_TYPE;
            break;
        case S_TYPE:
            if ((k = string(r, in, MAX_TAG, "tag", &s, &n)) <= 0)
                return k;
            if (eq(s, n, "regular")) {
                r->executable = 0;
                r->state = S_REG_TAG;
            } else if (eq(s, n, "symlink")) {
                r->state = S_SYM_TAG;
            } else if (eq(s, n, "directory")) {
                if (open_directory(r) < 0)
                    return fail(r, F_OS);
                r->state = S_DIR_ENTRY;
            } else {
                return fail_with(r, F_TYPE, s, n);
            }
            break;
        case S_REG_TAG:
        case S_REG_TAG2:
            if ((k = string(r, in, MAX_TAG, "tag", &s, &n)) <= 0)
                return k;
            if (r->state == S_REG_TAG && eq(s, n, "executable")) {
                r->executable = 1;
                r->state = S_REG_EXEC;
            } else if (eq(s, n, "contents")) {
                r->state = S_REG_SIZE;
            } else {
                return fail_with(r, F_CONTENTS, s, n);
            }
            break;
        case S_REG_EXEC:
            if ((k = string(r, in, MAX_TAG, "tag", &s, &n)) <= 0)
                return k;
            if (n)
                return fail(r, F_EXEC);
            r->state = S_REG_TAG2;
            break;
        case S_REG_SIZE:
            if ((s = peek(r, in, 8)) == NULL)
                return 0;
            r->size = r->left = le64(s);
            consume(r, in, 8);
            if (open_file(r) < 0)
                return fail(r, F_OS);
            r->state = S_REG_DATA;
            break;
        case S_REG_DATA:
            if (r->left) {
                size_t avail = in->len - in->pos;
                if (avail == 0)
                    return 0;
                size_t take = avail < r->left ? avail : (size_t)r->left;
                if (write_all(r->file_fd, in->p + in->pos, take) < 0)
                    return fail(r, F_OS);
                in->pos += take;
                r->left -= take;
                if (r->left)
                    return 0;
            }
            if (finish_file(r) < 0)
                return fail(r, F_OS);
            r->state = pad8(r->size) ? S_REG_PAD : S_CLOSE;
            break;
        case S_REG_PAD:
            n = pad8(r->size);
            if ((s = peek(r, in, n)) == NULL)
                return 0;
            for (size_t i = 0; i < n; i++)
                if (s[i])
                    return fail(r, F_PADDING);
            consume(r, in, n);
            r->state = S_CLOSE;
            break;
        case S_SYM_TAG:
            if ((k = expect(r, in, "target")) <= 0)
                return k;
            r->state = S_SYM_TARGET;
            break;
        case S_SYM_TARGET:
            if ((k = string(r, in, MAX_TARGET, "symlink target", &s, &n)) <= 0)
                return k;
            if (n == 0 || memchr(s, 0, n))
                return fail_with(r, F_TARGET, s, n);
            memcpy(r->target, s, n);
            r->target[n] = 0;
            if (symlinkat((const char *)r->target, parent_fd(r), (const char *)r->name) < 0)
                return fail(r, F_OS);
            if (r->canonical && utimensat(parent_fd(r), (const char *)r->name, r->times, AT_SYMLINK_NOFOLLOW) < 0)
                return fail(r, F_OS);
            r->state = S_CLOSE;
            break;
        case S_CLOSE:
            if ((k = expect(r, in, ")")) <= 0)
                return k;
            r->state = r->nframes ? S_ENTRY_CLOSE : S_END;
            break;
        case S_DIR_ENTRY:
            if ((k = string(r, in, MAX_TAG, "tag", &s, &n)) <= 0)
                return k;
            if (eq(s, n, ")")) {
                if (finish_directory(r) < 0)
                    return fail(r, F_OS);
                r->state = r->nframes ? S_ENTRY_CLOSE : S_END;
            } else if (eq(s, n, "entry")) {
                r->state = S_ENTRY_OPEN;
            } else {
                return fail_with(r, F_ENTRY_TAG, s, n);
            }
            break;
        case S_ENTRY_OPEN:
            if ((k = expect(r, in, "(")) <= 0)
                return k;
            r->state = S_ENTRY_NAME_TAG;
            break;
        case S_ENTRY_NAME_TAG:
            if ((k = expect(r, in, "name")) <= 0)
                return k;
            r->state = S_ENTRY_NAME;
            break;
        case S_ENTRY_NAME:
            if ((k = string(r, in, MAX_NAME, "name", &s, &n)) <= 0)
                return k;
            if (check_name(r, s, n) < 0)
                return -1;
            r->state = S_ENTRY_NODE_TAG;
            break;
        case S_ENTRY_NODE_TAG:
            if ((k = expect(r, in, "node")) <= 0)
                return k;
            if (r->nframes > MAX_DEPTH)  /* the new node's depth */
                return fail(r, F_DEPTH);
            r->state = S_OPEN;
            break;
        case S_ENTRY_CLOSE:
            if ((k = expect(r, in, ")")) <= 0)
                return k;
            r->state = S_DIR_ENTRY;
            break;
        case S_END:
            return 1;
        default:
            return -1;
        }
    }
}

/* Bytes the current step still lacks (at most HINT inside file contents); 0 once the NAR has ended. */
static uint64_t lacking(Restorer *r) {
    size_t c = r->carry_len;
    switch (r->state) {
    case S_END:
    case S_FAILED:
        return 0;
    case S_REG_DATA:
        return r->left < HINT ? r->left : HINT;
    case S_REG_SIZE:
        return 8 - c;
    case S_REG_PAD:
        return pad8(r->size) - c;
    default:
        if (c < 8)
            return 8 - c;
        return 8 + le64(r->carry) + pad8(le64(r->carry)) - c;
    }
}

/* The source ended before the NAR did: the fault the Python parser names for the step it was in. */
static void truncated(Restorer *r) {
    size_t c = r->carry_len;
    if (r->state == S_REG_DATA) {
        r->n1 = r->size - r->left;
        r->n2 = r->size;
        fail(r, F_TRUNCATED_FILE);
        return;
    }
    if (r->state == S_REG_PAD) {
        r->n1 = pad8(r->size);
        r->n2 = c;
    } else if (r->state == S_REG_SIZE || c < 8) {
        r->n1 = 8;
        r->n2 = c;
    } else {
        uint64_t len = le64(r->carry);
        r->n1 = c < 8 + len ? len : pad8(len);
        r->n2 = c < 8 + len ? c - 8 : c - 8 - len;
    }
    fail(r, F_TRUNCATED);
}

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
    close_all(self);
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
    k = run(self, &in);
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
    truncated(self);
    raise_fault(self);
    return NULL;
}

static PyObject *Restorer_close(Restorer *self, PyObject *Py_UNUSED(ignored)) {
    if (self->busy) {
        PyErr_SetString(PyExc_RuntimeError, "the Restorer is in use by another thread");
        return NULL;
    }
    close_all(self);
    if (self->state != S_END)
        self->state = S_FAILED;
    Py_RETURN_NONE;
}

static PyObject *Restorer_need(Restorer *self, void *Py_UNUSED(closure)) {
    return PyLong_FromUnsignedLongLong(self->busy ? 0 : lacking(self));
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
