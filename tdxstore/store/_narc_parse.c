/* The NAR grammar of the C restorer (L3), run with the GIL released: tokens, faults, node creation.
 *
 * `narparser.Parser` is the reference: this follows it rule for rule. It never writes outside the
 * destination (every node is created relative to a directory fd, O_EXCL|O_NOFOLLOW), never follows a
 * symlink, and keeps no more input than one token (the carry). The Python type is in _narc.c.
 */
#include "_narc.h"

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

void narc_close_all(Restorer *r) {
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
    narc_close_all(r);
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
int narc_run(Restorer *r, Input *in) {
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
uint64_t narc_lacking(Restorer *r) {
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
void narc_truncated(Restorer *r) {
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
