/* The C restorer's shared declarations: its state (`Restorer`), the grammar's entry points (_narc_parse.c)
 * and the Python type that drives them (_narc.c). */
#ifndef TDX_NARC_H
#define TDX_NARC_H

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


void narc_close_all(Restorer *r);          /* close every file and directory still open */
int narc_run(Restorer *r, Input *in);      /* 1: the NAR ended, 0: all input used, -1: a fault */
uint64_t narc_lacking(Restorer *r);        /* bytes the current step lacks; 0 once ended */
void narc_truncated(Restorer *r);          /* the source ended early: set the fault */

#endif
