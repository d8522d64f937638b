/*
 * The ingest's hot path in C: the canonical reading payload (the layout every collector emits, keys in order, no
 * spaces) read in one pass, with exactly the result of gateway.protocol._parse_canonical, which stays the
 * authority: the same layout, character sets, lengths and ranges, the same Reading, and None for anything else
 * (the general JSON path then decides). Python's version runs a regular expression and then converts each group;
 * here it is one scan with no intermediate objects.
 *
 * The rules, field by field as the Python pattern states them:
 *   {"v":1,"dev":"NAME{1,32}","node":"NAME{1,16}","boot":U,"seq":U,"ts":null|T,"src":"rtc|ntp|none",
 *    "val":-?(0|[1-9][0-9]{0,15})(.[0-9]{1,17})?,"unit":"UNIT{1,16}"[,"cached":true|false]}
 * NAME = [A-Za-z0-9_-]; U = 0|[1-9][0-9]{0,9}; T = 0|[1-9][0-9]{0,14}; UNIT = printable ASCII but " and \.
 * Then the ranges: boot and seq at most U32_MAX, ts at most TS_MAX, ts null exactly when src is none, and the
 * device equal to the topic's. Any byte outside ASCII fails the layout (as U+FFFD fails the pattern).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

/* Set by configure(): the Reading type and the protocol's limits (gateway.protocol's constants). */
static PyObject *reading_type;
static long long max_payload, u32_max, ts_max, clock_valid_from_ms, clock_future_slack_ms;
static PyObject *src_names[3], *clock_names[4];
enum { CLOCK_NONE, CLOCK_UNSET, CLOCK_FUTURE, CLOCK_OK };

typedef struct {
    const char *p, *end;
} Cursor;

static int literal(Cursor *c, const char *text) {
    size_t n = strlen(text);
    if ((size_t)(c->end - c->p) < n || memcmp(c->p, text, n) != 0)
        return 0;
    c->p += n;
    return 1;
}

static int is_name_char(char ch) {
    return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '_' || ch == '-';
}

static int is_unit_char(char ch) {
    return ch >= 0x20 && ch <= 0x7e && ch != '"' && ch != '\\';
}

/* A run of 1..longest characters of a class, then `after`; its start and length. */
static int run(Cursor *c, int (*in_class)(char), Py_ssize_t longest, const char *after, const char **start,
               Py_ssize_t *len) {
    const char *s = c->p;
    while (c->p < c->end && in_class(*c->p))
        c->p++;
    *start = s;
    *len = c->p - s;
    return *len >= 1 && *len <= longest && literal(c, after);
}

/* 0|[1-9][0-9]{0,most-1}, then `after`. */
static int number(Cursor *c, int most, const char *after, unsigned long long *value) {
    const char *s = c->p;
    unsigned long long v = 0;
    while (c->p < c->end && *c->p >= '0' && *c->p <= '9')
        v = v * 10 + (unsigned long long)(*c->p++ - '0');
    Py_ssize_t n = c->p - s;
    if (n < 1 || n > most || (n > 1 && *s == '0'))
        return 0;
    *value = v;
    return literal(c, after);
}

static int digits_run(Cursor *c) {
    const char *s = c->p;
    while (c->p < c->end && *c->p >= '0' && *c->p <= '9')
        c->p++;
    return (int)(c->p - s);
}

/* parse_canonical(payload, site, received_ms, topic_device) -> Reading | None */
static PyObject *parse_canonical(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "parse_canonical(payload, site, received_ms, topic_device)");
        return NULL;
    }
    if (reading_type == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "configure() first");
        return NULL;
    }
    PyObject *payload = args[0], *site = args[1], *received = args[2], *topic_device = args[3];
    if (!PyBytes_Check(payload) || PyBytes_GET_SIZE(payload) > max_payload)
        Py_RETURN_NONE;
    long long received_ms = PyLong_AsLongLong(received);
    if (received_ms == -1 && PyErr_Occurred()) {
        PyErr_Clear();
        Py_RETURN_NONE; /* not an int that fits: let the Python path decide */
    }
    Cursor c = {PyBytes_AS_STRING(payload), PyBytes_AS_STRING(payload) + PyBytes_GET_SIZE(payload)};
    const char *dev, *node, *unit;
    Py_ssize_t dev_len, node_len, unit_len;
    unsigned long long boot, seq, ts = 0;
    int ts_null = 0, src, cached = 0;
    if (!literal(&c, "{\"v\":1,\"dev\":\"") || !run(&c, is_name_char, 32, "\",\"node\":\"", &dev, &dev_len)
        || !run(&c, is_name_char, 16, "\",\"boot\":", &node, &node_len) || !number(&c, 10, ",\"seq\":", &boot)
        || !number(&c, 10, ",\"ts\":", &seq))
        Py_RETURN_NONE;
    if (literal(&c, "null,\"src\":\""))
        ts_null = 1;
    else if (!number(&c, 15, ",\"src\":\"", &ts))
        Py_RETURN_NONE;
    if (literal(&c, "rtc\",\"val\":"))
        src = 0;
    else if (literal(&c, "ntp\",\"val\":"))
        src = 1;
    else if (literal(&c, "none\",\"val\":"))
        src = 2;
    else
        Py_RETURN_NONE;
    const char *val = c.p;
    if (c.p < c.end && *c.p == '-')
        c.p++;
    const char *int_part = c.p;
    int n = digits_run(&c);
    if (n < 1 || n > 16 || (n > 1 && *int_part == '0'))
        Py_RETURN_NONE;
    int has_point = 0;
    if (c.p < c.end && *c.p == '.') {
        c.p++;
        has_point = 1;
        n = digits_run(&c);
        if (n < 1 || n > 17)
            Py_RETURN_NONE;
    }
    Py_ssize_t val_len = c.p - val;
    if (!literal(&c, ",\"unit\":\"") || !run(&c, is_unit_char, 16, "\"", &unit, &unit_len))
        Py_RETURN_NONE;
    if (literal(&c, ",\"cached\":true"))
        cached = 1;
    else
        literal(&c, ",\"cached\":false");
    if (!literal(&c, "}") || c.p != c.end)
        Py_RETURN_NONE;

    /* The layout matched: now the rules the pattern cannot state. */
    if (topic_device != Py_None) {
        Py_ssize_t topic_len;
        const char *topic = PyUnicode_Check(topic_device) ? PyUnicode_AsUTF8AndSize(topic_device, &topic_len) : NULL;
        if (topic == NULL) {
            PyErr_Clear();
            Py_RETURN_NONE; /* not text: let the Python path decide */
        }
        if (topic_len != dev_len || memcmp(topic, dev, (size_t)dev_len) != 0)
            Py_RETURN_NONE;
    }
    if (boot > (unsigned long long)u32_max || seq > (unsigned long long)u32_max)
        Py_RETURN_NONE;
    if (ts_null ? src != 2 : (ts > (unsigned long long)ts_max || src == 2))
        Py_RETURN_NONE;
    char val_text[40];
    memcpy(val_text, val, (size_t)val_len);
    val_text[val_len] = '\0';
    double value = PyOS_string_to_double(val_text, NULL, NULL);
    if (value == -1.0 && PyErr_Occurred())
        return NULL;
    if (value == 0.0 && !has_point)
        value = 0.0; /* JSON reads "-0" as the integer 0: no negative zero (but "-0.0" is one) */
    int clock = ts_null ? CLOCK_NONE
              : (long long)ts < clock_valid_from_ms ? CLOCK_UNSET
              : (long long)ts > received_ms + clock_future_slack_ms ? CLOCK_FUTURE
              : CLOCK_OK;

    PyObject *items = PyTuple_New(12);
    if (items == NULL)
        return NULL;
    PyObject *ts_obj = ts_null ? Py_NewRef(Py_None) : PyLong_FromUnsignedLongLong(ts);
    PyTuple_SET_ITEM(items, 0, PyUnicode_FromStringAndSize(dev, dev_len));
    PyTuple_SET_ITEM(items, 1, PyUnicode_FromStringAndSize(node, node_len));
    PyTuple_SET_ITEM(items, 2, PyLong_FromUnsignedLongLong(boot));
    PyTuple_SET_ITEM(items, 3, PyLong_FromUnsignedLongLong(seq));
    PyTuple_SET_ITEM(items, 4, Py_NewRef(site));
    PyTuple_SET_ITEM(items, 5, ts_obj);
    PyTuple_SET_ITEM(items, 6, Py_NewRef(src_names[src]));
    PyTuple_SET_ITEM(items, 7, PyFloat_FromDouble(value));
    PyTuple_SET_ITEM(items, 8, PyUnicode_FromStringAndSize(unit, unit_len));
    PyTuple_SET_ITEM(items, 9, PyBool_FromLong(cached));
    PyTuple_SET_ITEM(items, 10, Py_NewRef(clock_names[clock]));
    PyTuple_SET_ITEM(items, 11, Py_NewRef(received));
    for (int i = 0; i < 12; i++) {
        if (PyTuple_GET_ITEM(items, i) == NULL) {
            Py_DECREF(items);
            return NULL;
        }
    }
    /* tuple.__new__(Reading, items): the named tuple without a Python-level call. */
    PyObject *new_args = PyTuple_Pack(1, items);
    Py_DECREF(items);
    if (new_args == NULL)
        return NULL;
    PyObject *reading = PyTuple_Type.tp_new((PyTypeObject *)reading_type, new_args, NULL);
    Py_DECREF(new_args);
    return reading;
}

static PyObject *configure(PyObject *Py_UNUSED(module), PyObject *args) {
    PyObject *type;
    if (!PyArg_ParseTuple(args, "O!LLLLL", &PyType_Type, &type, &max_payload, &u32_max, &ts_max, &clock_valid_from_ms,
                          &clock_future_slack_ms))
        return NULL;
    if (!PyType_IsSubtype((PyTypeObject *)type, &PyTuple_Type)) {
        PyErr_SetString(PyExc_TypeError, "the reading type must be a named tuple");
        return NULL;
    }
    Py_XSETREF(reading_type, Py_NewRef(type));
    Py_RETURN_NONE;
}

static PyMethodDef module_methods[] = {
    {"configure", configure, METH_VARARGS,
     "configure(Reading, MAX_PAYLOAD, U32_MAX, TS_MAX, CLOCK_VALID_FROM_MS, CLOCK_FUTURE_SLACK_MS)"},
    {"parse_canonical", (PyCFunction)(void (*)(void))parse_canonical, METH_FASTCALL,
     "parse_canonical(payload, site, received_ms, topic_device) -> Reading | None\n\n"
     "gateway.protocol._parse_canonical's result for the payload, read in one pass."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef reading_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "gateway.native._reading",
    .m_doc = "The canonical reading payload parsed in C (see gateway/native/__init__.py).",
    .m_size = -1,
    .m_methods = module_methods,
};

PyMODINIT_FUNC PyInit__reading(void) {
    const char *srcs[] = {"rtc", "ntp", "none"}, *clocks[] = {"none", "unset", "future", "ok"};
    for (int i = 0; i < 3; i++)
        if ((src_names[i] = PyUnicode_InternFromString(srcs[i])) == NULL)
            return NULL;
    for (int i = 0; i < 4; i++)
        if ((clock_names[i] = PyUnicode_InternFromString(clocks[i])) == NULL)
            return NULL;
    return PyModule_Create(&reading_module);
}
