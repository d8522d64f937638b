/*
 * The drain's hot path in C: take a batch of readings from the spool file and render the MySQL multi-row
 * INSERT text for it, byte for byte what gateway.sinks.mysql.build_values_sql renders for the same rows.
 *
 * Reading through Python's sqlite3 module (a tuple of 13 objects a row) and formatting in Python cost the drain
 * about 3.5 microseconds a row; here it is a fraction of one. The Python path stays the authority: this code
 * renders only rows whose every field is in a plain domain where the output is certain (text of printable ASCII
 * without quotes or backslashes, which escapes to itself under either escaping rule; integers where integers
 * belong; finite values; timestamps from 1970 to 9999). Anything else, in any row, makes take() return None and
 * the caller reads and renders that batch the Python way, with its own checks and errors.
 *
 * The connection is this module's own, read-only, on the same SQLite library Python's sqlite3 module uses
 * (the loader in gateway/native/__init__.py checks the versions agree): the spool runs in WAL mode, so it reads
 * beside the writer. The GIL is held throughout: the float rendering is Python's own repr, which allocates.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <sqlite3.h>
#include <math.h>
#include <string.h>

/* Column positions in the select the spool hands over: id, then StoredReading's fields in order. */
enum { C_ID, C_DEVICE, C_NODE, C_BOOT, C_SEQ, C_SITE, C_TS, C_SRC, C_CLOCK, C_VALUE, C_UNIT, C_CACHED,
       C_RECEIVED, N_COLUMNS };

/* The last second a timestamp fell in before 10000-01-01 (the text keeps four year digits). */
#define LAST_SECOND 253402300799LL

static PyObject *ReaderError;

typedef struct {
    char *p;
    size_t len, cap;
} Buffer;

static int buf_reserve(Buffer *b, size_t more) {
    if (b->len + more <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + more)
        cap *= 2;
    char *p = PyMem_Realloc(b->p, cap);
    if (p == NULL)
        return -1;
    b->p = p;
    b->cap = cap;
    return 0;
}

static int buf_add(Buffer *b, const char *s, size_t n) {
    if (buf_reserve(b, n) < 0)
        return -1;
    memcpy(b->p + b->len, s, n);
    b->len += n;
    return 0;
}

/* Decimal text of v (as Python's format(v, 'd')) into out; returns its length. */
static size_t format_int(char *out, long long v) {
    char tmp[24];
    size_t n = 0;
    unsigned long long u = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;
    do {
        tmp[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    size_t len = 0;
    if (v < 0)
        out[len++] = '-';
    while (n)
        out[len++] = tmp[--n];
    return len;
}

static void digits(char *out, int v, int width) {
    for (int i = width - 1; i >= 0; i--) {
        out[i] = (char)('0' + v % 10);
        v /= 10;
    }
}

/* 'YYYY-MM-DD HH:MM:SS' of a second since 1970 (UTC), 0 <= secs <= LAST_SECOND: the proleptic Gregorian
 * calendar, as time.gmtime counts it (days to civil date by 400-year eras). */
static void second_text(char out[19], long long secs) {
    long long days = secs / 86400, rem = secs % 86400;
    long long z = days + 719468, era = z / 146097, doe = z - era * 146097;
    long long yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    long long doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    long long mp = (5 * doy + 2) / 153;
    int day = (int)(doy - (153 * mp + 2) / 5 + 1);
    int month = (int)(mp < 10 ? mp + 3 : mp - 9);
    int year = (int)(yoe + era * 400 + (month <= 2));
    digits(out, year, 4);
    out[4] = '-';
    digits(out + 5, month, 2);
    out[7] = '-';
    digits(out + 8, day, 2);
    out[10] = ' ';
    digits(out + 11, (int)(rem / 3600), 2);
    out[13] = ':';
    digits(out + 14, (int)(rem / 60 % 60), 2);
    out[16] = ':';
    digits(out + 17, (int)(rem % 60), 2);
}

/* The last second rendered: a batch's readings share few seconds, and so its timestamps share the text. */
typedef struct {
    long long secs;
    char text[19];
} SecondCache;

/* "'YYYY-MM-DD HH:MM:SS.mmm'" of milliseconds since 1970; 0 if outside the plain domain. */
static int add_timestamp(Buffer *b, SecondCache *cache, long long ms) {
    if (ms < 0 || ms / 1000 > LAST_SECOND)
        return 0;
    long long secs = ms / 1000;
    if (secs != cache->secs) {
        second_text(cache->text, secs);
        cache->secs = secs;
    }
    if (buf_reserve(b, 25) < 0)
        return -1;
    char *out = b->p + b->len;
    out[0] = '\'';
    memcpy(out + 1, cache->text, 19);
    out[20] = '.';
    digits(out + 21, (int)(ms % 1000), 3);
    out[24] = '\'';
    b->len += 25;
    return 1;
}

/* A text column, quoted: only printable ASCII without quotes or backslashes (it then escapes to itself). */
static int add_text(Buffer *b, sqlite3_stmt *st, int col) {
    if (sqlite3_column_type(st, col) != SQLITE_TEXT)
        return 0;
    const unsigned char *s = sqlite3_column_text(st, col);
    int n = sqlite3_column_bytes(st, col);
    if (s == NULL)
        return 0;
    for (int i = 0; i < n; i++) {
        unsigned char c = s[i];
        if (c < 0x20 || c > 0x7e || c == '\'' || c == '"' || c == '\\')
            return 0;
    }
    if (buf_reserve(b, (size_t)n + 3) < 0)
        return -1;
    char *out = b->p + b->len;
    out[0] = '\'';
    memcpy(out + 1, s, (size_t)n);
    out[n + 1] = '\'';
    out[n + 2] = ',';
    b->len += (size_t)n + 3;
    return 1;
}

static int add_integer(Buffer *b, sqlite3_stmt *st, int col) {
    if (sqlite3_column_type(st, col) != SQLITE_INTEGER)
        return 0;
    if (buf_reserve(b, 22) < 0)
        return -1;
    b->len += format_int(b->p + b->len, sqlite3_column_int64(st, col));
    b->p[b->len++] = ',';
    return 1;
}

/* Python's repr of a float (shortest round trip, '.0' on integral values). */
static int add_value(Buffer *b, sqlite3_stmt *st, int col) {
    if (sqlite3_column_type(st, col) != SQLITE_FLOAT)
        return 0;
    double v = sqlite3_column_double(st, col);
    if (!isfinite(v))
        return 0;
    char *text = PyOS_double_to_string(v, 'r', 0, Py_DTSF_ADD_DOT_0, NULL);
    if (text == NULL)
        return -1;
    int rc = buf_add(b, text, strlen(text));
    PyMem_Free(text);
    return rc < 0 ? -1 : 1;
}

/* One row as build_values_sql renders it:
 * ('device','node','site','src','clock','unit',boot,seq,sampled,value,cached,received)
 * Returns 1 if rendered, 0 if the row is outside the plain domain, -1 on a Python error. */
static int add_row(Buffer *b, sqlite3_stmt *st, SecondCache *cache) {
    static const int texts[] = {C_DEVICE, C_NODE, C_SITE, C_SRC, C_CLOCK, C_UNIT};
    int rc;
    if (buf_add(b, "(", 1) < 0)
        return -1;
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++)
        if ((rc = add_text(b, st, texts[i])) != 1)
            return rc;
    if ((rc = add_integer(b, st, C_BOOT)) != 1 || (rc = add_integer(b, st, C_SEQ)) != 1)
        return rc;
    int ts_type = sqlite3_column_type(st, C_TS);
    if (ts_type == SQLITE_NULL) {
        if (buf_add(b, "NULL", 4) < 0)
            return -1;
    } else if (ts_type != SQLITE_INTEGER) {
        return 0;
    } else if ((rc = add_timestamp(b, cache, sqlite3_column_int64(st, C_TS))) != 1) {
        return rc;
    }
    if (buf_add(b, ",", 1) < 0)
        return -1;
    if ((rc = add_value(b, st, C_VALUE)) != 1)
        return rc;
    if (sqlite3_column_type(st, C_CACHED) != SQLITE_INTEGER || sqlite3_column_type(st, C_RECEIVED) != SQLITE_INTEGER)
        return 0;
    if (buf_add(b, sqlite3_column_int64(st, C_CACHED) ? ",1," : ",0,", 3) < 0)
        return -1;
    if ((rc = add_timestamp(b, cache, sqlite3_column_int64(st, C_RECEIVED))) != 1)
        return rc;
    return buf_add(b, ")", 1) < 0 ? -1 : 1;
}

typedef struct {
    PyObject_HEAD
    sqlite3 *db;
    sqlite3_stmt *take;
    PyObject *prefix; /* bytes: the INSERT text before the first row */
    int busy;
} Reader;

static void reader_close_db(Reader *self) {
    if (self->take) {
        sqlite3_finalize(self->take);
        self->take = NULL;
    }
    if (self->db) {
        sqlite3_close_v2(self->db);
        self->db = NULL;
    }
}

static void reader_dealloc(Reader *self) {
    reader_close_db(self);
    Py_XDECREF(self->prefix);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *sqlite_error(sqlite3 *db, const char *what) {
    PyErr_Format(ReaderError, "%s: %s", what, db ? sqlite3_errmsg(db) : "out of memory");
    return NULL;
}

static int reader_init(Reader *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"path", "select_sql", "prefix", NULL};
    PyObject *path_obj;
    const char *select_sql, *prefix;
    Py_ssize_t prefix_len;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O&ss#", kwlist, PyUnicode_FSConverter, &path_obj, &select_sql,
                                     &prefix, &prefix_len))
        return -1;
    reader_close_db(self);
    Py_CLEAR(self->prefix);
    self->prefix = PyBytes_FromStringAndSize(prefix, prefix_len);
    int rc = sqlite3_open_v2(PyBytes_AS_STRING(path_obj), &self->db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX,
                             NULL);
    Py_DECREF(path_obj);
    if (self->prefix == NULL)
        return -1;
    if (rc != SQLITE_OK) {
        sqlite_error(self->db, "opening the spool");
        reader_close_db(self);
        return -1;
    }
    sqlite3_busy_timeout(self->db, 30000);
    if (sqlite3_prepare_v3(self->db, select_sql, -1, SQLITE_PREPARE_PERSISTENT, &self->take, NULL) != SQLITE_OK) {
        sqlite_error(self->db, "preparing the select");
        reader_close_db(self);
        return -1;
    }
    if (sqlite3_column_count(self->take) != N_COLUMNS || sqlite3_bind_parameter_count(self->take) != 2) {
        PyErr_Format(ReaderError, "the select must return %d columns and take 2 parameters (after, limit)",
                     N_COLUMNS);
        reader_close_db(self);
        return -1;
    }
    return 0;
}

/* take(after, limit) -> (ids, sql) | None */
static PyObject *reader_take(Reader *self, PyObject *args) {
    long long after, limit;
    if (!PyArg_ParseTuple(args, "LL", &after, &limit))
        return NULL;
    if (self->take == NULL) {
        PyErr_SetString(ReaderError, "the reader is closed");
        return NULL;
    }
    if (self->busy) {
        PyErr_SetString(ReaderError, "take() called from two threads at once");
        return NULL;
    }
    self->busy = 1;
    sqlite3_stmt *st = self->take;
    Buffer b = {NULL, 0, 0};
    long long *ids = NULL;
    size_t n = 0, cap = 0;
    SecondCache cache = {-1, {0}};
    PyObject *result = NULL;
    int plain = 1;

    sqlite3_reset(st);
    if (sqlite3_bind_int64(st, 1, after) != SQLITE_OK || sqlite3_bind_int64(st, 2, limit) != SQLITE_OK) {
        sqlite_error(self->db, "binding the select");
        goto done;
    }
    if (buf_add(&b, PyBytes_AS_STRING(self->prefix), (size_t)PyBytes_GET_SIZE(self->prefix)) < 0)
        goto nomem;
    for (;;) {
        int rc = sqlite3_step(st);
        if (rc == SQLITE_DONE)
            break;
        if (rc != SQLITE_ROW) {
            sqlite_error(self->db, "reading the spool");
            goto done;
        }
        if (n == cap) {
            cap = cap ? cap * 2 : 1024;
            long long *grown = PyMem_Realloc(ids, cap * sizeof *ids);
            if (grown == NULL)
                goto nomem;
            ids = grown;
        }
        if (sqlite3_column_type(st, C_ID) != SQLITE_INTEGER) {
            plain = 0;
            break;
        }
        ids[n] = sqlite3_column_int64(st, C_ID);
        if (n && buf_add(&b, ",", 1) < 0)
            goto nomem;
        int row = add_row(&b, st, &cache);
        if (row < 0)
            goto done;
        if (row == 0) {
            plain = 0;
            break;
        }
        n++;
    }
    if (!plain) {
        result = Py_NewRef(Py_None);
        goto done;
    }
    PyObject *id_list = PyList_New((Py_ssize_t)n);
    if (id_list == NULL)
        goto done;
    for (size_t i = 0; i < n; i++) {
        PyObject *id = PyLong_FromLongLong(ids[i]);
        if (id == NULL) {
            Py_DECREF(id_list);
            goto done;
        }
        PyList_SET_ITEM(id_list, (Py_ssize_t)i, id);
    }
    PyObject *sql = PyUnicode_New((Py_ssize_t)b.len, 127); /* printable ASCII only: see add_text */
    if (sql == NULL) {
        Py_DECREF(id_list);
        goto done;
    }
    memcpy(PyUnicode_1BYTE_DATA(sql), b.p, b.len);
    result = PyTuple_Pack(2, id_list, sql);
    Py_DECREF(id_list);
    Py_DECREF(sql);
    goto done;
nomem:
    PyErr_NoMemory();
done:
    sqlite3_reset(st); /* ends the read transaction: the writer's checkpoints are not held back */
    PyMem_Free(b.p);
    PyMem_Free(ids);
    self->busy = 0;
    return result;
}

static PyObject *reader_close(Reader *self, PyObject *Py_UNUSED(ignored)) {
    if (self->busy) {
        PyErr_SetString(ReaderError, "close() during take()");
        return NULL;
    }
    reader_close_db(self);
    Py_RETURN_NONE;
}

static PyMethodDef reader_methods[] = {
    {"take", (PyCFunction)reader_take, METH_VARARGS,
     "take(after, limit) -> (ids, sql) or None\n\n"
     "The first `limit` rows with an id above `after`: their ids and the INSERT text (the prefix, then each row's\n"
     "VALUES tuple). None if any row is outside the plain domain: render that batch the Python way."},
    {"close", (PyCFunction)reader_close, METH_NOARGS, "Close the reader's connection to the spool."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject ReaderType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "gateway.native._values.ValuesReader",
    .tp_doc = PyDoc_STR("ValuesReader(path, select_sql, prefix): reads spool batches as MySQL INSERT text."),
    .tp_basicsize = sizeof(Reader),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)reader_init,
    .tp_dealloc = (destructor)reader_dealloc,
    .tp_methods = reader_methods,
};

static PyObject *sqlite_version(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored)) {
    return PyUnicode_FromString(sqlite3_libversion());
}

static PyMethodDef module_methods[] = {
    {"sqlite_version", sqlite_version, METH_NOARGS, "The version of the SQLite library this module calls."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef values_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "gateway.native._values",
    .m_doc = "Spool batches rendered as MySQL INSERT text, in C (see gateway/native/__init__.py).",
    .m_size = -1,
    .m_methods = module_methods,
};

PyMODINIT_FUNC PyInit__values(void) {
    if (PyType_Ready(&ReaderType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&values_module);
    if (m == NULL)
        return NULL;
    ReaderError = PyErr_NewException("gateway.native._values.ReaderError", PyExc_RuntimeError, NULL);
    if (ReaderError == NULL || PyModule_AddObjectRef(m, "ReaderError", ReaderError) < 0 ||
        PyModule_AddObjectRef(m, "ValuesReader", (PyObject *)&ReaderType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
