/*
 * The ingest connection's packet splitter in C: exactly gateway.ingest.wire._split, which stays the authority
 * (the same packets, the same bytes left over, and the same MalformedPacket with the same message for anything a
 * broker should never send). Python's version costs about a microsecond and a half a PUBLISH in interpreted
 * byte indexing; here it is one pass over the buffer.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

enum { CONNACK = 2, PUBLISH = 3, PUBACK = 4, SUBACK = 9, PINGRESP = 13, DISCONNECT = 14, AUTH = 15 };

/* Set by configure(): wire's Message and Packet named tuples and its MalformedPacket exception. */
static PyObject *message_type, *packet_type, *malformed;

/* A variable byte integer at pos: 1 with its value and the position after it, 0 if more bytes are needed, -1
 * (MalformedPacket set) beyond four bytes. */
static int read_varint(const unsigned char *data, Py_ssize_t pos, Py_ssize_t end, Py_ssize_t *value,
                       Py_ssize_t *after) {
    Py_ssize_t v = 0;
    int shift = 0;
    for (int i = 0; i < 4; i++) {
        if (pos + i >= end)
            return 0;
        unsigned char b = data[pos + i];
        v |= (Py_ssize_t)(b & 0x7F) << shift;
        if (!(b & 0x80)) {
            *value = v;
            *after = pos + i + 1;
            return 1;
        }
        shift += 7;
    }
    PyErr_SetString(malformed, "variable byte integer longer than four bytes");
    return -1;
}

/* tuple.__new__(type, items), stealing the reference to items. */
static PyObject *named(PyObject *type, PyObject *items) {
    if (items == NULL)
        return NULL;
    PyObject *args = PyTuple_Pack(1, items);
    Py_DECREF(items);
    if (args == NULL)
        return NULL;
    PyObject *out = PyTuple_Type.tp_new((PyTypeObject *)type, args, NULL);
    Py_DECREF(args);
    return out;
}

static PyObject *publish(const unsigned char *data, unsigned char first, Py_ssize_t start, Py_ssize_t stop) {
    int qos = (first >> 1) & 0x03;
    if (qos == 3)
        return PyErr_Format(malformed, "PUBLISH with QoS 3");
    if (stop - start < 3)
        return PyErr_Format(malformed, "PUBLISH too short for its topic");
    Py_ssize_t tlen = (data[start] << 8) | data[start + 1];
    Py_ssize_t p = start + 2 + tlen;
    if (p > stop)
        return PyErr_Format(malformed, "PUBLISH topic longer than the packet");
    PyObject *topic = PyUnicode_DecodeUTF8((const char *)data + start + 2, tlen, "strict");
    if (topic == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_UnicodeDecodeError))
            return NULL;
        PyErr_Clear();
        return PyErr_Format(malformed, "PUBLISH topic is not UTF-8");
    }
    long mid = 0;
    if (qos) {
        if (p + 2 > stop) {
            Py_DECREF(topic);
            return PyErr_Format(malformed, "PUBLISH without its packet identifier");
        }
        mid = (data[p] << 8) | data[p + 1];
        p += 2;
    }
    if (p < stop && data[p] == 0) { /* no properties, the usual case */
        p += 1;
    } else {
        Py_ssize_t plen;
        int got = read_varint(data, p, stop, &plen, &p);
        if (got <= 0) {
            Py_DECREF(topic);
            if (got == 0)
                PyErr_SetString(malformed, "PUBLISH properties cut short");
            return NULL;
        }
        p += plen;
        if (p > stop) {
            Py_DECREF(topic);
            return PyErr_Format(malformed, "PUBLISH properties longer than the packet");
        }
    }
    PyObject *payload = PyBytes_FromStringAndSize((const char *)data + p, stop - p);
    if (payload == NULL) {
        Py_DECREF(topic);
        return NULL;
    }
    PyObject *items = PyTuple_New(5);
    if (items == NULL) {
        Py_DECREF(topic);
        Py_DECREF(payload);
        return NULL;
    }
    PyTuple_SET_ITEM(items, 0, topic);
    PyTuple_SET_ITEM(items, 1, payload);
    PyTuple_SET_ITEM(items, 2, PyLong_FromLong(mid));
    PyTuple_SET_ITEM(items, 3, PyLong_FromLong(qos));
    PyTuple_SET_ITEM(items, 4, PyBool_FromLong(first & 0x01));
    if (PyTuple_GET_ITEM(items, 2) == NULL || PyTuple_GET_ITEM(items, 3) == NULL) {
        Py_DECREF(items);
        return NULL;
    }
    return named(message_type, items);
}

/* split(data, limit) -> (packets, rest) */
static PyObject *split(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2 || !PyBytes_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "split(data: bytes, limit: int)");
        return NULL;
    }
    if (message_type == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "configure() first");
        return NULL;
    }
    Py_ssize_t limit = PyLong_AsSsize_t(args[1]);
    if (limit == -1 && PyErr_Occurred())
        return NULL;
    PyObject *buffer = args[0];
    const unsigned char *data = (const unsigned char *)PyBytes_AS_STRING(buffer);
    Py_ssize_t pos = 0, end = PyBytes_GET_SIZE(buffer);
    PyObject *out = PyList_New(0);
    if (out == NULL)
        return NULL;
    while (end - pos >= 2) {
        unsigned char first = data[pos];
        Py_ssize_t length, start;
        int got = read_varint(data, pos + 1, end, &length, &start);
        if (got < 0)
            goto fail;
        if (got == 0)
            break;
        if (length > limit) {
            PyErr_Format(malformed, "packet of %zd bytes is larger than the %zd accepted", length, limit);
            goto fail;
        }
        Py_ssize_t stop = start + length;
        if (stop > end)
            break;
        int kind = first >> 4;
        PyObject *packet;
        if (kind == PUBLISH) {
            packet = publish(data, first, start, stop);
        } else if (kind == CONNACK || kind == PUBACK || kind == SUBACK || kind == PINGRESP || kind == DISCONNECT
                   || kind == AUTH) {
            PyObject *body = PyBytes_FromStringAndSize((const char *)data + start, stop - start);
            packet = body == NULL ? NULL : named(packet_type, Py_BuildValue("(iiN)", kind, first & 0x0F, body));
        } else {
            PyErr_Format(malformed, "unexpected packet type %d from the broker", kind);
            goto fail;
        }
        if (packet == NULL)
            goto fail;
        int rc = PyList_Append(out, packet);
        Py_DECREF(packet);
        if (rc < 0)
            goto fail;
        pos = stop;
    }
    PyObject *rest = pos == 0 ? Py_NewRef(buffer) : PyBytes_FromStringAndSize((const char *)data + pos, end - pos);
    if (rest == NULL)
        goto fail;
    return Py_BuildValue("(NN)", out, rest);
fail:
    Py_DECREF(out);
    return NULL;
}

static PyObject *configure(PyObject *Py_UNUSED(module), PyObject *args) {
    PyObject *message, *packet, *error;
    if (!PyArg_ParseTuple(args, "O!O!O", &PyType_Type, &message, &PyType_Type, &packet, &error))
        return NULL;
    if (!PyType_IsSubtype((PyTypeObject *)message, &PyTuple_Type) || !PyType_IsSubtype((PyTypeObject *)packet,
                                                                                        &PyTuple_Type)
        || !PyExceptionClass_Check(error)) {
        PyErr_SetString(PyExc_TypeError, "configure(Message, Packet, MalformedPacket): two named tuples, an exception");
        return NULL;
    }
    Py_XSETREF(message_type, Py_NewRef(message));
    Py_XSETREF(packet_type, Py_NewRef(packet));
    Py_XSETREF(malformed, Py_NewRef(error));
    Py_RETURN_NONE;
}

static PyMethodDef module_methods[] = {
    {"configure", configure, METH_VARARGS, "configure(Message, Packet, MalformedPacket)"},
    {"split", (PyCFunction)(void (*)(void))split, METH_FASTCALL,
     "split(data, limit) -> (packets, rest): gateway.ingest.wire._split's result, in one pass."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef packets_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "gateway.native._packets",
    .m_doc = "MQTT packets split in C (see gateway/native/__init__.py).",
    .m_size = -1,
    .m_methods = module_methods,
};

PyMODINIT_FUNC PyInit__packets(void) {
    return PyModule_Create(&packets_module);
}
