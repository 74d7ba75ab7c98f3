/* Compiled envelope scanner (issue #9, ADR 0008): one stored envelope's fields, or None.
 *
 * A strict reader of the envelope schema (CONTRACT §1) only: every key must be a known one,
 * every value of its declared type, no key repeated, every string well formed (escapes,
 * surrogate pairs, UTF-8, no control bytes). Whatever falls outside that returns None, and the
 * caller takes the msgspec or reference path, which words the fault. The fields come back as
 * the flat tuple `fast_parse.EnvelopeFields` describes; `_row` turns them into a row.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#include "_envelope_scan.h"

enum kind { K_STR, K_INT, K_BOOL, K_OBJ, K_TAGS, K_BODY };

typedef struct field {
    const char *key;
    int kind;
    int out; /* index in the fields tuple; -1: checked, not returned */
    const struct field *sub;
} field;

/* The order of the fields tuple; fast_parse.EnvelopeFields names the same slots. */
enum slot {
    S_SCHEMA_VERSION, S_REQUEST_ID, S_TIMESTAMP, S_ELAPSED_MS, S_GATEWAY_REGION,
    S_API_ID, S_OPERATION_ID, S_SUBSCRIPTION_ID, S_SUBSCRIPTION_NAME, S_PRODUCT_ID,
    S_USER_ID, S_APP_ID, S_TAGS, S_BACKEND_ID, S_DEPLOYMENT, S_API_VERSION,
    S_REQUEST, S_REQUEST_PATH, S_REQUEST_BODY, S_REQUEST_BODY_BYTES,
    S_RESPONSE, S_STATUS, S_RESPONSE_CONTENT_TYPE, S_RESPONSE_BODY, S_RESPONSE_BODY_BYTES,
    S_STREAMED, S_GATEWAY_PROMPT, S_GATEWAY_COMPLETION, S_GATEWAY_TOTAL, S_REPORTED,
    S_RESPONSE_BODY_LENGTH, S_COUNT
};

static const field GATEWAY[] = {
    {"service", K_STR, -1, NULL}, {"region", K_STR, S_GATEWAY_REGION, NULL}, {NULL, 0, 0, NULL}};
static const field API[] = {
    {"id", K_STR, S_API_ID, NULL}, {"operation_id", K_STR, S_OPERATION_ID, NULL}, {NULL, 0, 0, NULL}};
static const field SUBSCRIPTION[] = {
    {"id", K_STR, S_SUBSCRIPTION_ID, NULL}, {"name", K_STR, S_SUBSCRIPTION_NAME, NULL},
    {NULL, 0, 0, NULL}};
static const field PRODUCT[] = {
    {"id", K_STR, S_PRODUCT_ID, NULL}, {"name", K_STR, -1, NULL}, {NULL, 0, 0, NULL}};
static const field CALLER[] = {
    {"user_id", K_STR, S_USER_ID, NULL}, {"app_id", K_STR, S_APP_ID, NULL},
    {"ip", K_STR, -1, NULL}, {NULL, 0, 0, NULL}};
static const field BACKEND[] = {
    {"id", K_STR, S_BACKEND_ID, NULL}, {"deployment", K_STR, S_DEPLOYMENT, NULL},
    {"api_version", K_STR, S_API_VERSION, NULL}, {NULL, 0, 0, NULL}};
static const field REQUEST[] = {
    {"method", K_STR, -1, NULL}, {"path", K_STR, S_REQUEST_PATH, NULL},
    {"content_type", K_STR, -1, NULL}, {"body", K_STR, S_REQUEST_BODY, NULL},
    {"body_bytes", K_INT, S_REQUEST_BODY_BYTES, NULL}, {"truncated", K_BOOL, -1, NULL},
    {NULL, 0, 0, NULL}};
static const field RESPONSE[] = {
    {"status", K_INT, S_STATUS, NULL}, {"content_type", K_STR, S_RESPONSE_CONTENT_TYPE, NULL},
    {"body", K_BODY, S_RESPONSE_BODY, NULL}, {"body_bytes", K_INT, S_RESPONSE_BODY_BYTES, NULL},
    {"streamed", K_BOOL, S_STREAMED, NULL}, {"truncated", K_BOOL, -1, NULL}, {NULL, 0, 0, NULL}};
static const field GATEWAY_TOKENS[] = {
    {"prompt", K_INT, S_GATEWAY_PROMPT, NULL}, {"completion", K_INT, S_GATEWAY_COMPLETION, NULL},
    {"total", K_INT, S_GATEWAY_TOTAL, NULL}, {"estimated", K_BOOL, -1, NULL}, {NULL, 0, 0, NULL}};
static const field ENVELOPE[] = {
    {"schema_version", K_STR, S_SCHEMA_VERSION, NULL},
    {"request_id", K_STR, S_REQUEST_ID, NULL},
    {"timestamp", K_STR, S_TIMESTAMP, NULL},
    {"elapsed_ms", K_INT, S_ELAPSED_MS, NULL},
    {"gateway", K_OBJ, -1, GATEWAY},
    {"api", K_OBJ, -1, API},
    {"subscription", K_OBJ, -1, SUBSCRIPTION},
    {"product", K_OBJ, -1, PRODUCT},
    {"caller", K_OBJ, -1, CALLER},
    {"tags", K_TAGS, S_TAGS, NULL},
    {"backend", K_OBJ, -1, BACKEND},
    {"request", K_OBJ, S_REQUEST, REQUEST},
    {"response", K_OBJ, S_RESPONSE, RESPONSE},
    {"gateway_tokens", K_OBJ, -1, GATEWAY_TOKENS},
    {NULL, 0, 0, NULL}};

/* OK: read; UNSURE: not this reader's to judge (return None); FAILED: a Python error is set. */
enum outcome { OK = 0, UNSURE = -1, FAILED = -2 };

typedef struct {
    cursor at;
    unsigned char *text; /* scratch for unescaped strings, at least as long as the line */
    unsigned char *body_scratch; /* the response body's own, as long */
    const unsigned char *body;   /* the response body's UTF-8 text, once read */
    size_t body_length, body_chars;
    PyObject *out[S_COUNT];
} scan;

static unsigned char *put_utf8(unsigned char *o, unsigned code) {
    if (code < 0x80) {
        *o++ = (unsigned char)code;
    } else if (code < 0x800) {
        *o++ = (unsigned char)(0xC0 | (code >> 6));
        *o++ = (unsigned char)(0x80 | (code & 0x3F));
    } else if (code < 0x10000) {
        *o++ = (unsigned char)(0xE0 | (code >> 12));
        *o++ = (unsigned char)(0x80 | ((code >> 6) & 0x3F));
        *o++ = (unsigned char)(0x80 | (code & 0x3F));
    } else {
        *o++ = (unsigned char)(0xF0 | (code >> 18));
        *o++ = (unsigned char)(0x80 | ((code >> 12) & 0x3F));
        *o++ = (unsigned char)(0x80 | ((code >> 6) & 0x3F));
        *o++ = (unsigned char)(0x80 | (code & 0x3F));
    }
    return o;
}

/* One escape at s->at.p (after its backslash) written into o as UTF-8; NULL when JSON does not
 * allow it. */
static unsigned char *unescape(scan *s, unsigned char *o) {
    unsigned code;
    return read_escape(&s->at, &code) ? put_utf8(o, code) : NULL;
}

/* A JSON string at s->at.p, unescaped: where it lies when it has no escapes, else rebuilt in
 * `scratch` (as long as the line). Its bytes are not yet checked to be UTF-8. */
static int read_text(scan *s, unsigned char *scratch, const unsigned char **text, size_t *length) {
    if (s->at.p >= s->at.end || *s->at.p != '"') return UNSURE;
    const unsigned char *run = ++s->at.p; /* plain bytes not yet copied start here */
    unsigned char *o = NULL;           /* the scratch's end, once an escape was met */
    for (;;) {
        s->at.p = next_special(s->at.p, s->at.end);
        if (s->at.p >= s->at.end || *s->at.p < 0x20) return UNSURE;
        if (*s->at.p == '"' && !o) {
            *text = run;
            *length = (size_t)(s->at.p - run);
            break;
        }
        if (!o) o = scratch;
        memcpy(o, run, (size_t)(s->at.p - run));
        o += s->at.p - run;
        if (*s->at.p == '"') {
            *text = scratch;
            *length = (size_t)(o - scratch);
            break;
        }
        s->at.p++; /* the backslash */
        if (!(o = unescape(s, o))) return UNSURE;
        run = s->at.p;
    }
    s->at.p++; /* the closing quote */
    return OK;
}

/* A JSON string at s->at.p as str; the UTF-8 check is CPython's own strict decoder. */
static int read_string(scan *s, PyObject **value) {
    const unsigned char *text;
    size_t length;
    if (read_text(s, s->text, &text, &length) != OK) return UNSURE;
    *value = PyUnicode_DecodeUTF8((const char *)text, (Py_ssize_t)length, NULL);
    if (*value) return OK;
    if (!PyErr_ExceptionMatches(PyExc_UnicodeDecodeError)) return FAILED;
    PyErr_Clear();
    return UNSURE;
}

/* The response body: kept as checked UTF-8 until the whole envelope is read, when its usage
 * may be read without making it a str. */
static int read_body(scan *s) {
    if (read_text(s, s->body_scratch, &s->body, &s->body_length) != OK ||
        !utf8_text(s->body, s->body_length, &s->body_chars))
        return UNSURE;
    return OK;
}

/* A key: plain ASCII between quotes (an escaped key is left to the other paths). */
static int read_key(scan *s, const unsigned char **key, size_t *length) {
    if (!next_is(&s->at, '"')) return UNSURE;
    const unsigned char *start = s->at.p;
    while (s->at.p < s->at.end && *s->at.p != '"') {
        if (*s->at.p == '\\' || *s->at.p < 0x20 || *s->at.p >= 0x80) return UNSURE;
        s->at.p++;
    }
    if (s->at.p >= s->at.end) return UNSURE;
    *key = start;
    *length = (size_t)(s->at.p - start);
    s->at.p++;
    return next_is(&s->at, ':') ? OK : UNSURE;
}

/* An integer of at most 18 digits (always within 64 bits); fractions and exponents are not. */
static int read_int(scan *s, PyObject **value) {
    int negative = s->at.p < s->at.end && *s->at.p == '-';
    s->at.p += negative;
    const unsigned char *start = s->at.p;
    long long v = 0;
    while (s->at.p < s->at.end && *s->at.p >= '0' && *s->at.p <= '9') v = v * 10 + (*s->at.p++ - '0');
    size_t digits = (size_t)(s->at.p - start);
    if (digits == 0 || digits > 18 || (digits > 1 && *start == '0')) return UNSURE;
    if (s->at.p < s->at.end && (*s->at.p == '.' || *s->at.p == 'e' || *s->at.p == 'E')) return UNSURE;
    *value = PyLong_FromLongLong(negative ? -v : v);
    return *value ? OK : FAILED;
}

static int read_object(scan *s, const field *fields, int presence);

static int read_tags(scan *s, PyObject **value) {
    if (!next_is(&s->at, '{')) return UNSURE;
    PyObject *tags = PyDict_New();
    if (!tags) return FAILED;
    int result = OK;
    if (next_is(&s->at, '}')) goto done;
    do {
        PyObject *key = NULL, *text = NULL;
        space(&s->at);
        if ((result = read_string(s, &key)) != OK) goto done;
        if (!next_is(&s->at, ':')) {
            Py_DECREF(key);
            result = UNSURE;
            goto done;
        }
        space(&s->at);
        if ((result = read_string(s, &text)) == OK) {
            int seen = PyDict_Contains(tags, key);
            result = seen < 0 ? FAILED : seen ? UNSURE : OK;
            if (result == OK && PyDict_SetItem(tags, key, text) < 0) result = FAILED;
            Py_DECREF(text);
        }
        Py_DECREF(key);
        if (result != OK) goto done;
    } while (next_is(&s->at, ','));
    result = next_is(&s->at, '}') ? OK : UNSURE;
done:
    if (result == OK) *value = tags;
    else Py_DECREF(tags);
    return result;
}

static int read_value(scan *s, const field *f) {
    space(&s->at);
    if (word(&s->at, "null", 4)) return OK; /* the slot stays None, as for a missing key */
    PyObject *value = NULL;
    int result;
    switch (f->kind) {
    case K_STR: result = read_string(s, &value); break;
    case K_INT: result = read_int(s, &value); break;
    case K_BOOL:
        if (word(&s->at, "true", 4)) value = Py_NewRef(Py_True);
        else if (word(&s->at, "false", 5)) value = Py_NewRef(Py_False);
        result = value ? OK : UNSURE;
        break;
    case K_TAGS: result = read_tags(s, &value); break;
    case K_BODY: return read_body(s);
    default: return read_object(s, f->sub, f->out);
    }
    if (result != OK) return result;
    if (f->out < 0) {
        Py_DECREF(value);
    } else {
        Py_XSETREF(s->out[f->out], value);
    }
    return OK;
}

/* An object of known keys, each at most once; `presence` >= 0 marks the slot set to True. */
static int read_object(scan *s, const field *fields, int presence) {
    if (!next_is(&s->at, '{')) return UNSURE;
    if (presence >= 0) Py_XSETREF(s->out[presence], Py_NewRef(Py_True));
    if (next_is(&s->at, '}')) return OK;
    unsigned seen = 0;
    do {
        const unsigned char *key;
        size_t length;
        int result = read_key(s, &key, &length);
        if (result != OK) return result;
        const field *f = fields;
        while (f->key && (strlen(f->key) != length || memcmp(f->key, key, length) != 0)) f++;
        unsigned bit = 1u << (f - fields);
        if (!f->key || (seen & bit)) return UNSURE; /* unknown or repeated */
        seen |= bit;
        if ((result = read_value(s, f)) != OK) return result;
    } while (next_is(&s->at, ','));
    return next_is(&s->at, '}') ? OK : UNSURE;
}

static int event_stream(PyObject *content_type) {
    if (content_type == Py_None) return 0;
    Py_ssize_t length;
    const char *text = PyUnicode_AsUTF8AndSize(content_type, &length);
    if (!text) return -1;
    return length >= 17 && memcmp(text, "text/event-stream", 17) == 0;
}

static char ascii_lower(char c) { return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c; }

static int ends_with(const char *text, size_t length, const char *suffix) {
    size_t n = strlen(suffix);
    return length >= n && memcmp(text + length - n, suffix, n) == 0;
}

/* Whether usage.operation_of(path, operation_id) is "image_generations": 1 or 0, or -1 for
 * text that is not ASCII (str.lower() may turn such characters into ASCII letters). */
static int image_operation(PyObject *path, PyObject *operation_id) {
    char route[512], hint[512];
    size_t length = 0, hint_length = 0;
    Py_ssize_t size;
    const char *text;
    if (path != Py_None) {
        if (!(text = PyUnicode_AsUTF8AndSize(path, &size))) return -2;
        if (!PyUnicode_IS_ASCII(path) || size >= (Py_ssize_t)sizeof route) return -1;
        while (length < (size_t)size && text[length] != '?') {
            route[length] = ascii_lower(text[length]);
            length++;
        }
        while (length && route[length - 1] == '/') length--;
    }
    static const char *const others[] = {"/chat/completions", "/completions", "/embeddings",
                                         "/responses"};
    for (size_t i = 0; i < sizeof others / sizeof *others; i++)
        if (ends_with(route, length, others[i])) return 0;
    if (ends_with(route, length, "/images/generations")) return 1;
    if (operation_id != Py_None) {
        if (!(text = PyUnicode_AsUTF8AndSize(operation_id, &size))) return -2;
        if (!PyUnicode_IS_ASCII(operation_id) || size >= (Py_ssize_t)sizeof hint) return -1;
        for (Py_ssize_t i = 0; i < size; i++)
            if (text[i] != '_') hint[hint_length++] = ascii_lower(text[i]);
    }
    hint[hint_length] = '\0';
    if (strstr(hint, "chatcompletion") || strstr(hint, "embedding") || strstr(hint, "response"))
        return 0;
    return strstr(hint, "image") != NULL;
}

/* The body's reported usage and UTF-8 length, when the body settles it; else the body as str,
 * for the Python path to read. */
static int settle_body(scan *s) {
    if (!s->body) return OK;
    int stream = event_stream(s->out[S_RESPONSE_CONTENT_TYPE]);
    int images = image_operation(s->out[S_REQUEST_PATH], s->out[S_OPERATION_ID]);
    if (stream < 0 || images < -1) return FAILED;
    reported_usage r;
    if (body_reported_usage(s->body, s->body_length, s->body_chars,
                            s->out[S_STREAMED] == Py_True || stream, images, &r)) {
        PyObject *model = r.model ? PyUnicode_DecodeUTF8((const char *)r.model,
                                                          (Py_ssize_t)r.model_length, NULL)
                                  : Py_NewRef(Py_None);
        if (!model) return FAILED;
        PyObject *usage = Py_BuildValue("(LLLLLLNs)", r.prompt, r.cached, r.completion,
                                        r.reasoning, r.total, r.images, model, "reported");
        PyObject *length = PyLong_FromSize_t(s->body_length);
        Py_XSETREF(s->out[S_REPORTED], usage);
        Py_XSETREF(s->out[S_RESPONSE_BODY_LENGTH], length);
        return usage && length ? OK : FAILED;
    }
    PyObject *body =
        PyUnicode_DecodeUTF8((const char *)s->body, (Py_ssize_t)s->body_length, NULL);
    if (!body) return FAILED; /* cannot be: utf8_text took it */
    Py_XSETREF(s->out[S_RESPONSE_BODY], body);
    return OK;
}

static PyObject *scan_envelope(PyObject *Py_UNUSED(module), PyObject *raw) {
    Py_buffer line;
    if (PyObject_GetBuffer(raw, &line, PyBUF_SIMPLE) < 0) return NULL;
    const unsigned char *start = line.buf;
    scan s = {.at = {start, start + line.len}};
    PyObject *fields = NULL;
    int result = FAILED;
    /* Two scratches, each as long as the line: unescaping never lengthens a string. */
    s.text = PyMem_Malloc(line.len ? 2 * (size_t)line.len : 1);
    if (!s.text) {
        PyErr_NoMemory();
        goto done;
    }
    s.body_scratch = s.text + line.len;
    for (int i = 0; i < S_COUNT; i++)
        s.out[i] = Py_NewRef(i == S_REQUEST || i == S_RESPONSE ? Py_False : Py_None);
    result = read_object(&s, ENVELOPE, -1);
    space(&s.at);
    if (result == OK && s.at.p != s.at.end) result = UNSURE; /* something after the object */
    if (result == OK) result = settle_body(&s);
    if (result == OK && (fields = PyTuple_New(S_COUNT))) {
        for (int i = 0; i < S_COUNT; i++) {
            PyTuple_SET_ITEM(fields, i, s.out[i]);
            s.out[i] = NULL;
        }
    }
    for (int i = 0; i < S_COUNT; i++) Py_XDECREF(s.out[i]);
done:
    PyMem_Free(s.text);
    PyBuffer_Release(&line);
    if (result == UNSURE) Py_RETURN_NONE;
    return fields;
}

/* Whether bytes.strip() leaves nothing of p[0:n]. */
static int blank(const char *p, Py_ssize_t n) {
    for (Py_ssize_t i = 0; i < n; i++)
        if (p[i] != ' ' && (p[i] < '\t' || p[i] > '\r')) return 0;
    return 1;
}

/* store.base._line_views: the non-blank lines of data[start:stop] as `kind` (a NamedTuple of
 * the object's name, the 1-based line number and a memoryview of the line), and the newlines
 * passed. */
static PyObject *line_views(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "line_views(name, data, start, stop, kind)");
        return NULL;
    }
    PyObject *name = args[0], *data = args[1], *kind = args[4];
    Py_ssize_t start = PyLong_AsSsize_t(args[2]), stop = PyLong_AsSsize_t(args[3]);
    if ((start == -1 || stop == -1) && PyErr_Occurred()) return NULL;
    if (!PyBytes_Check(data) || !PyType_Check(kind) ||
        !PyType_IsSubtype((PyTypeObject *)kind, &PyTuple_Type)) {
        PyErr_SetString(PyExc_TypeError, "line_views takes bytes and a NamedTuple type");
        return NULL;
    }
    if (start < 0 || stop > PyBytes_GET_SIZE(data) || start > stop) {
        PyErr_SetString(PyExc_ValueError, "line_views: start and stop must lie within data");
        return NULL;
    }
    const char *text = PyBytes_AS_STRING(data);
    PyObject *view = PyMemoryView_FromObject(data), *found = PyList_New(0), *result = NULL;
    Py_ssize_t number = 0, newlines = 0;
    if (!view || !found) goto done;
    while (start < stop) {
        const char *newline = memchr(text + start, '\n', (size_t)(stop - start));
        Py_ssize_t end = newline ? newline - text : stop;
        newlines += newline != NULL;
        number++;
        if (end > start && !blank(text + start, end - start)) {
            /* What tuple.__new__ does for a NamedTuple: the subtype allocated, items set. */
            PyObject *item = ((PyTypeObject *)kind)->tp_alloc((PyTypeObject *)kind, 3);
            if (!item) goto done;
            PyTuple_SET_ITEM(item, 0, Py_NewRef(name));
            PyTuple_SET_ITEM(item, 1, PyLong_FromSsize_t(number));
            PyTuple_SET_ITEM(item, 2, PySequence_GetSlice(view, start, end));
            int failed = !PyTuple_GET_ITEM(item, 1) || !PyTuple_GET_ITEM(item, 2) ||
                         PyList_Append(found, item) < 0;
            Py_DECREF(item);
            if (failed) goto done;
        }
        start = end + 1;
    }
    result = Py_BuildValue("(On)", found, newlines);
done:
    Py_XDECREF(view);
    Py_XDECREF(found);
    return result;
}

static PyMethodDef methods[] = {
    {"scan_envelope", scan_envelope, METH_O,
     "scan_envelope(raw) -> tuple | None\n--\n\n"
     "One envelope's fields (fast_parse.EnvelopeFields), or None when another path must read it."},
    {"line_views", (PyCFunction)(void (*)(void))line_views, METH_FASTCALL,
     "line_views(name, data, start, stop, kind) -> (list, int)\n--\n\n"
     "store.base._line_views: the non-blank lines of data[start:stop] and the newlines passed."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {
    .m_base = PyModuleDef_HEAD_INIT,
    .m_name = "_envelope_scan",
    .m_doc = "Compiled envelope scanner (see ADR 0008).",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC PyInit__envelope_scan(void) {
    PyObject *created = PyModule_Create(&module);
    if (created && PyModule_AddIntConstant(created, "TAIL_READ_FROM", TAIL_READ_FROM) < 0)
        Py_CLEAR(created);
    return created;
}
