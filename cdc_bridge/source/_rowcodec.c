/* Native RowPlan.read (values.py): one binlog row image -> (row, zeros, next_off).
 *
 * values.py stays the reference. A RowReader gets, per column, the Python decoder that
 * RowPlan would call plus an op naming the fast path for its type. The common types are
 * decoded here; everything else, and any value outside the range a valid server writes
 * (garbled DECIMAL groups, a DATETIME2 below the sign bit), goes to the Python decoder, so
 * the output is the Python output by construction. Unlike the slices of the Python code,
 * every read is bounds-checked: a truncated image raises ValueError.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

enum {
    OP_CALL,        /* the Python decoder dec(buf, off) -> (value, off); arg: fixed size or 0,
                       arg2: length prefix or 0 (bounds checked before the call) */
    OP_SKIP_FIXED,  /* arg: size */
    OP_SKIP_VAR,    /* arg: length prefix 1..4 */
    OP_BOOL, OP_I8, OP_U8, OP_I16, OP_U16, OP_I24, OP_U24, OP_I32, OP_U32, OP_I64, OP_U64,
    OP_F64,
    OP_DECIMAL,     /* arg: precision, arg2: scale */
    OP_UTF8,        /* arg: length prefix 1..4 */
    OP_DATETIME2,   /* arg: fsp */
    OP_TIMESTAMP2,  /* arg: fsp */
    OP_DATE,
    OP_ENUM,        /* arg: 1 or 2 bytes; table: ("",) + names */
    OP_COUNT
};

/* values.py passes ops by name: no numbering to keep in sync */
static const char *const OP_NAMES[OP_COUNT] = {
    "call", "skip_fixed", "skip_var",
    "bool", "i8", "u8", "i16", "u16", "i24", "u24", "i32", "u32", "i64", "u64",
    "f64", "decimal", "utf8", "datetime2", "timestamp2", "date", "enum",
};

static const int DIG2BYTES[10] = {0, 1, 1, 2, 2, 3, 3, 4, 4, 4};
static const int FSP_BYTES[7] = {0, 1, 1, 2, 2, 3, 3};
static const uint32_t FSP_SCALE[7] = {0, 10000, 10000, 100, 100, 1, 1};
static const uint32_t POW10[10] = {1, 10, 100, 1000, 10000, 100000, 1000000, 10000000, 100000000,
                                   1000000000};

typedef struct {
    PyObject *name;
    PyObject *dec;      /* RowPlan's decoder or skipper for this column */
    PyObject *table;    /* ENUM only */
    Py_ssize_t byte_i;  /* null bitmap byte and bit */
    unsigned mask;
    int skip, zero_ok;  /* RowPlan's _SKIP / _ZERO_OK */
    int op, arg, arg2;
    int size;           /* bytes of a fixed-size value */
    /* DECIMAL layout (the names of _decimal_reader) */
    int lead, intg0, intg0x, frac0, frac0x, trail;
} Step;

typedef struct {
    PyObject_HEAD
    Py_ssize_t null_bytes;
    Py_ssize_t nsteps;
    Step *steps;
    PyObject *zero;     /* values.ZERO_DATE */
} RowReader;

/* ------------------------------------------------------------------ small helpers */

static inline uint64_t be(const unsigned char *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v = v << 8 | p[i];
    return v;
}

static inline uint64_t le(const unsigned char *p, int n)
{
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

/* v in decimal with at least `width` digits (zero-padded), like Python's f"{v:0{width}d}" */
static char *put_uint(char *q, uint64_t v, int width)
{
    char tmp[24];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n < width)
        tmp[n++] = '0';
    while (n)
        *q++ = tmp[--n];
    return q;
}

static PyObject *ascii_str(const char *s, Py_ssize_t n)
{
    PyObject *u = PyUnicode_New(n, 127);
    if (u != NULL)
        memcpy(PyUnicode_1BYTE_DATA(u), s, n);
    return u;
}

/* format_datetime(): "YYYY-MM-DDTHH:MM:SS", ".ffffff" (always 6 digits) when fsp > 0 */
static char *put_datetime(char *q, uint64_t year, unsigned month, unsigned day, unsigned hour,
                          unsigned minute, unsigned second, uint64_t micro, int fsp)
{
    q = put_uint(q, year, 4); *q++ = '-';
    q = put_uint(q, month, 2); *q++ = '-';
    q = put_uint(q, day, 2); *q++ = 'T';
    q = put_uint(q, hour, 2); *q++ = ':';
    q = put_uint(q, minute, 2); *q++ = ':';
    q = put_uint(q, second, 2);
    if (fsp > 0) {
        *q++ = '.';
        q = put_uint(q, micro, 6);
    }
    return q;
}

/* Howard Hinnant's civil_from_days: days since 1970-01-01 -> proleptic Gregorian date */
static void civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    unsigned doe = (unsigned)(z - era * 146097);
    unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    unsigned mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = (int64_t)yoe + era * 400 + (*m <= 2);
}

/* _decimal_reader's text, or NULL without an exception when a digit group is out of range
 * (only garbled data; the caller then asks the Python decoder) */
static PyObject *decimal_text(const Step *s, const unsigned char *p, int *slow)
{
    unsigned char raw[64];
    char text[160];
    char *q = text + 1;  /* text[0]: room for "-" */
    int negative, nonzero = 0;
    const unsigned char *r;

    memcpy(raw, p, s->size);
    negative = !(raw[0] & 0x80);
    raw[0] ^= 0x80;
    if (negative)
        for (int i = 0; i < s->size; i++)
            raw[i] ^= 0xFF;
    r = raw;

    /* integer part: the digits of every group, then leading zeros dropped */
    char *ip = q;
    if (s->lead) {
        uint64_t v = be(r, s->lead);
        if (v >= POW10[s->intg0x])
            goto slow;
        q = put_uint(q, v, s->intg0x);
        r += s->lead;
    }
    for (int i = 0; i < s->intg0; i++, r += 4) {
        uint64_t v = be(r, 4);
        if (v >= POW10[9])
            goto slow;
        q = put_uint(q, v, 9);
    }
    while (ip < q - 1 && *ip == '0')
        ip++;
    if (ip == q)  /* no integer digits (DECIMAL(5,5)) */
        *q++ = '0';
    else if (!(q - ip == 1 && *ip == '0'))
        nonzero = 1;

    if (s->arg2) {  /* scale: exactly `scale` fraction digits */
        *q++ = '.';
        for (int i = 0; i < s->frac0; i++, r += 4) {
            uint64_t v = be(r, 4);
            if (v >= POW10[9])
                goto slow;
            nonzero |= v != 0;
            q = put_uint(q, v, 9);
        }
        if (s->trail) {
            uint64_t v = be(r, s->trail);
            if (v >= POW10[s->frac0x])
                goto slow;
            nonzero |= v != 0;
            q = put_uint(q, v, s->frac0x);
        }
    }
    if (negative && nonzero)
        *--ip = '-';
    return ascii_str(ip, q - ip);
slow:
    *slow = 1;
    return NULL;
}

/* ------------------------------------------------------------------ RowReader */

static void clear_steps(RowReader *self)
{
    if (self->steps == NULL)
        return;
    for (Py_ssize_t i = 0; i < self->nsteps; i++) {
        Py_CLEAR(self->steps[i].name);
        Py_CLEAR(self->steps[i].dec);
        Py_CLEAR(self->steps[i].table);
    }
    PyMem_Free(self->steps);
    self->steps = NULL;
    self->nsteps = 0;
}

static int RowReader_traverse(RowReader *self, visitproc visit, void *arg)
{
    for (Py_ssize_t i = 0; i < self->nsteps; i++) {
        Py_VISIT(self->steps[i].dec);
        Py_VISIT(self->steps[i].table);
    }
    Py_VISIT(self->zero);
    return 0;
}

static int RowReader_clear(RowReader *self)
{
    clear_steps(self);
    Py_CLEAR(self->zero);
    return 0;
}

static void RowReader_dealloc(RowReader *self)
{
    PyObject_GC_UnTrack(self);
    RowReader_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* checks what the read loop relies on, so a bad plan fails here and not as a wild read */
static int init_step(Step *s, Py_ssize_t null_bytes, PyObject *item)
{
    PyObject *name, *dec, *table;
    Py_ssize_t byte_i;
    int mask, skip, zero_ok, arg, arg2;
    const char *op;

    if (!PyArg_ParseTuple(item, "UOnippsiiO;a step is (name, dec, byte_i, mask, skip, zero_ok, op, arg, arg2, table)",
                          &name, &dec, &byte_i, &mask, &skip, &zero_ok, &op, &arg, &arg2, &table))
        return -1;
    if (byte_i < 0 || byte_i >= null_bytes || mask <= 0 || mask > 255) {
        PyErr_Format(PyExc_ValueError, "column %R: null bit outside the bitmap", name);
        return -1;
    }
    s->op = -1;
    for (int i = 0; i < OP_COUNT; i++)
        if (strcmp(op, OP_NAMES[i]) == 0)
            s->op = i;
    s->arg = arg;
    s->arg2 = arg2;
    switch (s->op) {
    case OP_SKIP_FIXED:
        if (arg < 0)
            goto bad;
        s->size = arg;
        break;
    case OP_SKIP_VAR:
    case OP_UTF8:
        if (arg < 1 || arg > 4)
            goto bad;
        break;
    case OP_DECIMAL: {
        int precision = arg, scale = arg2;
        if (scale < 0 || precision < 1 || scale > precision || precision > 65)
            goto bad;
        s->intg0 = (precision - scale) / 9;
        s->intg0x = (precision - scale) % 9;
        s->frac0 = scale / 9;
        s->frac0x = scale % 9;
        s->lead = DIG2BYTES[s->intg0x];
        s->trail = DIG2BYTES[s->frac0x];
        s->size = s->lead + (s->intg0 + s->frac0) * 4 + s->trail;
        break;
    }
    case OP_DATETIME2:
    case OP_TIMESTAMP2:
        if (arg < 0 || arg > 6)
            goto bad;
        s->size = (s->op == OP_DATETIME2 ? 5 : 4) + FSP_BYTES[arg];
        break;
    case OP_ENUM:
        if ((arg != 1 && arg != 2) || !PyTuple_Check(table) || PyTuple_GET_SIZE(table) < 1)
            goto bad;
        s->size = arg;
        break;
    case OP_BOOL: case OP_I8: case OP_U8: s->size = 1; break;
    case OP_I16: case OP_U16: s->size = 2; break;
    case OP_I24: case OP_U24: case OP_DATE: s->size = 3; break;
    case OP_I32: case OP_U32: s->size = 4; break;
    case OP_I64: case OP_U64: case OP_F64: s->size = 8; break;
    case OP_CALL:
        if (!PyCallable_Check(dec) || arg < 0 || arg2 < 0 || arg2 > 4)
            goto bad;
        s->size = arg;
        break;
    default:
        goto bad;
    }
    s->name = Py_NewRef(name);
    s->dec = Py_NewRef(dec);
    s->table = s->op == OP_ENUM ? Py_NewRef(table) : NULL;
    s->byte_i = byte_i;
    s->mask = (unsigned)mask;
    s->skip = skip;
    s->zero_ok = zero_ok;
    return 0;
bad:
    PyErr_Format(PyExc_ValueError, "column %R: bad step op=%s arg=%d arg2=%d", name, op, arg, arg2);
    return -1;
}

static int RowReader_init(RowReader *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"null_bytes", "steps", "zero", NULL};
    Py_ssize_t null_bytes;
    PyObject *steps, *zero;

    if (!PyArg_ParseTupleAndKeywords(args, kwds, "nO!O", kwlist, &null_bytes, &PyTuple_Type, &steps, &zero))
        return -1;
    if (null_bytes < 0) {
        PyErr_SetString(PyExc_ValueError, "null_bytes < 0");
        return -1;
    }
    RowReader_clear(self);
    Py_ssize_t n = PyTuple_GET_SIZE(steps);
    self->steps = PyMem_Calloc(n ? n : 1, sizeof(Step));
    if (self->steps == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    self->null_bytes = null_bytes;
    self->zero = Py_NewRef(zero);
    for (Py_ssize_t i = 0; i < n; i++) {
        if (init_step(&self->steps[i], null_bytes, PyTuple_GET_ITEM(steps, i)) < 0) {
            self->nsteps = i;  /* the ones holding references */
            clear_steps(self);
            return -1;
        }
    }
    self->nsteps = n;
    return 0;
}

/* the Python decoder; its new offset must stay within the buffer (the slices of the Python
 * code would return one past the end for a truncated string) */
static PyObject *call_python(const Step *s, PyObject *buf, Py_ssize_t *off, Py_ssize_t len)
{
    PyObject *offobj = PyLong_FromSsize_t(*off);
    if (offobj == NULL)
        return NULL;
    PyObject *args[2] = {buf, offobj};
    PyObject *res = PyObject_Vectorcall(s->dec, args, 2, NULL);
    Py_DECREF(offobj);
    if (res == NULL)
        return NULL;
    if (!PyTuple_Check(res) || PyTuple_GET_SIZE(res) != 2) {
        PyErr_Format(PyExc_TypeError, "column %R: the decoder did not return (value, offset)", s->name);
        Py_DECREF(res);
        return NULL;
    }
    Py_ssize_t next = PyLong_AsSsize_t(PyTuple_GET_ITEM(res, 1));
    if (next == -1 && PyErr_Occurred()) {
        Py_DECREF(res);
        return NULL;
    }
    if (next < *off || next > len) {
        PyErr_Format(PyExc_ValueError, "row image truncated: column %R ends at byte %zd, the buffer has %zd",
                     s->name, next, len);
        Py_DECREF(res);
        return NULL;
    }
    *off = next;
    PyObject *value = Py_NewRef(PyTuple_GET_ITEM(res, 0));
    Py_DECREF(res);
    return value;
}

static PyObject *RowReader_read(RowReader *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "read(buf, off) takes 2 arguments");
        return NULL;
    }
    PyObject *bufobj = args[0];
    Py_ssize_t off = PyLong_AsSsize_t(args[1]);
    if (off == -1 && PyErr_Occurred())
        return NULL;
    Py_buffer view;
    if (PyObject_GetBuffer(bufobj, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    const unsigned char *b = view.buf;
    const Py_ssize_t len = view.len;
    PyObject *row = NULL, *zeros = NULL, *value = NULL;

    if (off < 0 || self->null_bytes > len - off) {
        PyErr_Format(PyExc_ValueError, "row image truncated: no null bitmap at byte %zd, the buffer has %zd",
                     off, len);
        goto error;
    }
    const unsigned char *nulls = b + off;
    off += self->null_bytes;
    row = PyDict_New();
    if (row == NULL)
        goto error;

    for (Py_ssize_t i = 0; i < self->nsteps; i++) {
        const Step *s = &self->steps[i];
        if (nulls[s->byte_i] & s->mask) {
            if (!s->skip && PyDict_SetItem(row, s->name, Py_None) < 0)
                goto error;
            continue;
        }
        if (s->size > len - off)  /* 0 for variable-size ops: checked below */
            goto truncated;
        const unsigned char *p = b + off;
        int slow = 0;

        switch (s->op) {
        case OP_SKIP_FIXED:
            off += s->size;
            continue;
        case OP_SKIP_VAR: {
            if (s->arg > len - off)
                goto truncated;
            uint64_t n = le(p, s->arg);
            if ((uint64_t)(len - off - s->arg) < n)
                goto truncated;
            off += s->arg + (Py_ssize_t)n;
            continue;
        }
        case OP_BOOL: value = PyBool_FromLong(p[0] != 0); break;
        case OP_I8: value = PyLong_FromLong((signed char)p[0]); break;
        case OP_U8: value = PyLong_FromLong(p[0]); break;
        case OP_I16: value = PyLong_FromLong((int16_t)le(p, 2)); break;
        case OP_U16: value = PyLong_FromLong((long)le(p, 2)); break;
        case OP_I24: {
            long v = (long)le(p, 3);
            value = PyLong_FromLong(v & 0x800000 ? v - 0x1000000 : v);
            break;
        }
        case OP_U24: value = PyLong_FromLong((long)le(p, 3)); break;
        case OP_I32: value = PyLong_FromLong((int32_t)le(p, 4)); break;
        case OP_U32: value = PyLong_FromUnsignedLong((unsigned long)le(p, 4)); break;
        case OP_I64: value = PyLong_FromLongLong((int64_t)le(p, 8)); break;
        case OP_U64: value = PyLong_FromUnsignedLongLong(le(p, 8)); break;
        case OP_F64: {
            double d = PyFloat_Unpack8((const char *)p, 1);  /* what struct '<d' uses */
            if (d == -1.0 && PyErr_Occurred())
                goto error;
            value = PyFloat_FromDouble(d);
            break;
        }
        case OP_DECIMAL:
            value = decimal_text(s, p, &slow);
            break;
        case OP_UTF8: {
            if (s->arg > len - off)
                goto truncated;
            uint64_t n = le(p, s->arg);
            if ((uint64_t)(len - off - s->arg) < n)
                goto truncated;
            /* = the Python code's strict decode, then "replace" on failure */
            value = PyUnicode_DecodeUTF8((const char *)p + s->arg, (Py_ssize_t)n, "replace");
            off += s->arg + (Py_ssize_t)n;
            break;
        }
        case OP_DATETIME2: {
            uint64_t raw = be(p, 5);
            if (raw < 0x8000000000ULL) {  /* negative: Python's floor arithmetic, never written */
                slow = 1;
                break;
            }
            uint64_t v = raw - 0x8000000000ULL;
            uint64_t ymd = v >> 17, ym = ymd >> 5;
            uint64_t year = ym / 13;
            unsigned month = (unsigned)(ym % 13), day = (unsigned)(ymd & 31);
            if (!(year && month && day)) {
                value = Py_NewRef(self->zero);
                break;
            }
            unsigned hms = (unsigned)(v & 0x1FFFF);
            int fsp = s->arg;
            uint64_t micro = fsp ? be(p + 5, FSP_BYTES[fsp]) * FSP_SCALE[fsp] : 0;
            char text[64];
            char *q = put_datetime(text, year, month, day, hms >> 12, (hms >> 6) & 63, hms & 63, micro, fsp);
            value = ascii_str(text, q - text);
            break;
        }
        case OP_TIMESTAMP2: {
            uint64_t seconds = be(p, 4);
            int fsp = s->arg;
            uint64_t micro = fsp ? be(p + 4, FSP_BYTES[fsp]) * FSP_SCALE[fsp] : 0;
            if (seconds == 0 && micro == 0) {  /* '0000-00-00 00:00:00' */
                value = Py_NewRef(self->zero);
                break;
            }
            int64_t year;
            unsigned month, day, rem = (unsigned)(seconds % 86400);
            civil_from_days((int64_t)(seconds / 86400), &year, &month, &day);
            char text[64];
            char *q = put_datetime(text, (uint64_t)year, month, day, rem / 3600, rem / 60 % 60, rem % 60,
                                   micro, fsp);
            *q++ = 'Z';
            value = ascii_str(text, q - text);
            break;
        }
        case OP_DATE: {
            unsigned v = (unsigned)le(p, 3);
            unsigned year = v >> 9, month = (v >> 5) & 15, day = v & 31;
            if (!(year && month && day)) {
                value = Py_NewRef(self->zero);
                break;
            }
            char text[16], *q = text;
            q = put_uint(q, year, 4); *q++ = '-';
            q = put_uint(q, month, 2); *q++ = '-';
            q = put_uint(q, day, 2);
            value = ascii_str(text, q - text);
            break;
        }
        case OP_ENUM: {
            Py_ssize_t k = (Py_ssize_t)le(p, s->arg);
            /* index 0 (invalid value) and out of range: "" (table[0]) */
            value = Py_NewRef(PyTuple_GET_ITEM(s->table, k < PyTuple_GET_SIZE(s->table) ? k : 0));
            break;
        }
        case OP_CALL:
        default:
            if (s->arg2) {  /* a truncated value must not reach the Python slices */
                if (s->arg2 > len - off || (uint64_t)(len - off - s->arg2) < le(p, s->arg2))
                    goto truncated;
            }
            slow = 1;
            break;
        }
        if (slow)
            value = call_python(s, bufobj, &off, len);
        else if (s->op != OP_UTF8)
            off += s->size;
        if (value == NULL)
            goto error;

        if (s->skip) {
            Py_CLEAR(value);
            continue;
        }
        if (s->zero_ok && value == self->zero) {
            Py_SETREF(value, Py_NewRef(Py_None));
            if (zeros == NULL && (zeros = PyList_New(0)) == NULL)
                goto error;
            if (PyList_Append(zeros, s->name) < 0)
                goto error;
        }
        if (PyDict_SetItem(row, s->name, value) < 0)
            goto error;
        Py_CLEAR(value);
        continue;
    truncated:
        PyErr_Format(PyExc_ValueError, "row image truncated: column %R at byte %zd, the buffer has %zd",
                     s->name, off, len);
        goto error;
    }
    PyBuffer_Release(&view);
    PyObject *offobj = PyLong_FromSsize_t(off);
    if (offobj == NULL) {
        Py_DECREF(row);
        Py_XDECREF(zeros);
        return NULL;
    }
    PyObject *result = PyTuple_New(3);
    if (result == NULL) {
        Py_DECREF(row);
        Py_XDECREF(zeros);
        Py_DECREF(offobj);
        return NULL;
    }
    PyTuple_SET_ITEM(result, 0, row);
    PyTuple_SET_ITEM(result, 1, zeros ? zeros : Py_NewRef(Py_None));
    PyTuple_SET_ITEM(result, 2, offobj);
    return result;

error:
    Py_XDECREF(value);
    Py_XDECREF(row);
    Py_XDECREF(zeros);
    PyBuffer_Release(&view);
    return NULL;
}

static PyMethodDef RowReader_methods[] = {
    {"read", (PyCFunction)(void (*)(void))RowReader_read, METH_FASTCALL,
     "read(buf, off) -> (row, zeros or None, next_off), exactly as RowPlan.read"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject RowReaderType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "cdc_bridge.source._rowcodec.RowReader",
    .tp_doc = "RowReader(null_bytes, steps, zero): RowPlan.read in C (see values.py NativeRowPlan)",
    .tp_basicsize = sizeof(RowReader),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)RowReader_init,
    .tp_dealloc = (destructor)RowReader_dealloc,
    .tp_traverse = (traverseproc)RowReader_traverse,
    .tp_clear = (inquiry)RowReader_clear,
    .tp_methods = RowReader_methods,
};

static struct PyModuleDef rowcodec_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "cdc_bridge.source._rowcodec",
    .m_doc = "Native binlog row decoding for values.RowPlan (optional; values.py is the reference).",
    .m_size = -1,
};

PyMODINIT_FUNC PyInit__rowcodec(void)
{
    if (PyType_Ready(&RowReaderType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&rowcodec_module);
    if (m == NULL)
        return NULL;
    Py_INCREF(&RowReaderType);
    if (PyModule_AddObject(m, "RowReader", (PyObject *)&RowReaderType) < 0) {
        Py_DECREF(&RowReaderType);
        goto error;
    }
    return m;
error:
    Py_DECREF(m);
    return NULL;
}
