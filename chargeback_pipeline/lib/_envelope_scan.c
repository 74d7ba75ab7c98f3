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

enum kind { K_STR, K_INT, K_BOOL, K_OBJ, K_TAGS };

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
    S_STREAMED, S_GATEWAY_PROMPT, S_GATEWAY_COMPLETION, S_GATEWAY_TOTAL, S_COUNT
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
    {"body", K_STR, S_RESPONSE_BODY, NULL}, {"body_bytes", K_INT, S_RESPONSE_BODY_BYTES, NULL},
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
    const unsigned char *p, *end;
    unsigned char *text; /* scratch for unescaped strings, at least as long as the line */
    PyObject *out[S_COUNT];
} scan;

static void skip_space(scan *s) {
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\r' || *s->p == '\n'))
        s->p++;
}

static int take(scan *s, char c) {
    skip_space(s);
    if (s->p < s->end && *s->p == c) {
        s->p++;
        return 1;
    }
    return 0;
}

static int literal(scan *s, const char *word, size_t n) {
    if ((size_t)(s->end - s->p) >= n && memcmp(s->p, word, n) == 0) {
        s->p += n;
        return 1;
    }
    return 0;
}

static inline int plain(unsigned char c) { return c != '"' && c != '\\' && c >= 0x20; }

#if defined(__SSE2__)
#include <emmintrin.h>
/* Plain bytes (not '"', '\\' or a control byte) at the start of the 16 at p. */
static inline size_t plain16(const unsigned char *p) {
    __m128i chunk = _mm_loadu_si128((const __m128i *)p);
    __m128i quote = _mm_cmpeq_epi8(chunk, _mm_set1_epi8('"'));
    __m128i slash = _mm_cmpeq_epi8(chunk, _mm_set1_epi8('\\'));
    __m128i low = _mm_set1_epi8(0x1f);
    __m128i control = _mm_cmpeq_epi8(_mm_max_epu8(chunk, low), low); /* chunk <= 0x1f */
    unsigned mask = (unsigned)_mm_movemask_epi8(_mm_or_si128(_mm_or_si128(quote, slash), control));
    return mask ? (size_t)__builtin_ctz(mask) : 16;
}
#else
static inline size_t plain16(const unsigned char *p) {
    size_t n = 0;
    while (n < 16 && plain(p[n])) n++;
    return n;
}
#endif

/* Plain bytes from p on: where a string scan has something to look at. */
static inline const unsigned char *next_special(const unsigned char *p, const unsigned char *end) {
    while (end - p >= 16) {
        size_t n = plain16(p);
        p += n;
        if (n < 16) return p;
    }
    while (p < end && plain(*p)) p++;
    return p;
}

static int hex4(const unsigned char *p, unsigned *value) {
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        unsigned char c = p[i];
        v <<= 4;
        if (c >= '0' && c <= '9') v |= c - '0';
        else if (c >= 'a' && c <= 'f') v |= c - 'a' + 10;
        else if (c >= 'A' && c <= 'F') v |= c - 'A' + 10;
        else return 0;
    }
    *value = v;
    return 1;
}

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

/* One \-escape at s->p (after the backslash) into o; NULL when it is not one JSON allows. */
static unsigned char *unescape(scan *s, unsigned char *o) {
    if (s->p >= s->end) return NULL;
    unsigned char c = *s->p++;
    switch (c) {
    case '"': case '\\': case '/': *o++ = c; return o;
    case 'b': *o++ = '\b'; return o;
    case 'f': *o++ = '\f'; return o;
    case 'n': *o++ = '\n'; return o;
    case 'r': *o++ = '\r'; return o;
    case 't': *o++ = '\t'; return o;
    case 'u': break;
    default: return NULL;
    }
    unsigned code, low;
    if (s->end - s->p < 4 || !hex4(s->p, &code)) return NULL;
    s->p += 4;
    if (code >= 0xDC00 && code <= 0xDFFF) return NULL; /* a lone low surrogate */
    if (code >= 0xD800 && code <= 0xDBFF) {
        if (s->end - s->p < 6 || s->p[0] != '\\' || s->p[1] != 'u' || !hex4(s->p + 2, &low) ||
            low < 0xDC00 || low > 0xDFFF)
            return NULL; /* a high surrogate without its low half */
        s->p += 6;
        code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00);
    }
    return put_utf8(o, code);
}

/* A JSON string at s->p as str; the UTF-8 check is CPython's own strict decoder. A string
 * without escapes is decoded where it lies; one with escapes is rebuilt in the scratch. */
static int read_string(scan *s, PyObject **value) {
    if (s->p >= s->end || *s->p != '"') return UNSURE;
    const unsigned char *run = ++s->p; /* plain bytes not yet copied start here */
    unsigned char *o = NULL;           /* the scratch's end, once an escape was met */
    const char *text;
    Py_ssize_t length;
    for (;;) {
        s->p = next_special(s->p, s->end);
        if (s->p >= s->end || *s->p < 0x20) return UNSURE;
        if (*s->p == '"' && !o) {
            text = (const char *)run;
            length = s->p - run;
            break;
        }
        if (!o) o = s->text;
        memcpy(o, run, (size_t)(s->p - run));
        o += s->p - run;
        if (*s->p == '"') {
            text = (const char *)s->text;
            length = o - s->text;
            break;
        }
        s->p++; /* the backslash */
        if (!(o = unescape(s, o))) return UNSURE;
        run = s->p;
    }
    s->p++; /* the closing quote */
    *value = PyUnicode_DecodeUTF8(text, length, NULL);
    if (*value) return OK;
    if (!PyErr_ExceptionMatches(PyExc_UnicodeDecodeError)) return FAILED;
    PyErr_Clear();
    return UNSURE;
}

/* A key: plain ASCII between quotes (an escaped key is left to the other paths). */
static int read_key(scan *s, const unsigned char **key, size_t *length) {
    if (!take(s, '"')) return UNSURE;
    const unsigned char *start = s->p;
    while (s->p < s->end && *s->p != '"') {
        if (*s->p == '\\' || *s->p < 0x20 || *s->p >= 0x80) return UNSURE;
        s->p++;
    }
    if (s->p >= s->end) return UNSURE;
    *key = start;
    *length = (size_t)(s->p - start);
    s->p++;
    return take(s, ':') ? OK : UNSURE;
}

/* An integer of at most 18 digits (always within 64 bits); fractions and exponents are not. */
static int read_int(scan *s, PyObject **value) {
    int negative = s->p < s->end && *s->p == '-';
    s->p += negative;
    const unsigned char *start = s->p;
    long long v = 0;
    while (s->p < s->end && *s->p >= '0' && *s->p <= '9') v = v * 10 + (*s->p++ - '0');
    size_t digits = (size_t)(s->p - start);
    if (digits == 0 || digits > 18 || (digits > 1 && *start == '0')) return UNSURE;
    if (s->p < s->end && (*s->p == '.' || *s->p == 'e' || *s->p == 'E')) return UNSURE;
    *value = PyLong_FromLongLong(negative ? -v : v);
    return *value ? OK : FAILED;
}

static int read_object(scan *s, const field *fields, int presence);

static int read_tags(scan *s, PyObject **value) {
    if (!take(s, '{')) return UNSURE;
    PyObject *tags = PyDict_New();
    if (!tags) return FAILED;
    int result = OK;
    if (take(s, '}')) goto done;
    do {
        PyObject *key = NULL, *text = NULL;
        skip_space(s);
        if ((result = read_string(s, &key)) != OK) goto done;
        if (!take(s, ':')) {
            Py_DECREF(key);
            result = UNSURE;
            goto done;
        }
        skip_space(s);
        if ((result = read_string(s, &text)) == OK) {
            int seen = PyDict_Contains(tags, key);
            result = seen < 0 ? FAILED : seen ? UNSURE : OK;
            if (result == OK && PyDict_SetItem(tags, key, text) < 0) result = FAILED;
            Py_DECREF(text);
        }
        Py_DECREF(key);
        if (result != OK) goto done;
    } while (take(s, ','));
    result = take(s, '}') ? OK : UNSURE;
done:
    if (result == OK) *value = tags;
    else Py_DECREF(tags);
    return result;
}

static int read_value(scan *s, const field *f) {
    skip_space(s);
    if (literal(s, "null", 4)) return OK; /* the slot stays None, as for a missing key */
    PyObject *value = NULL;
    int result;
    switch (f->kind) {
    case K_STR: result = read_string(s, &value); break;
    case K_INT: result = read_int(s, &value); break;
    case K_BOOL:
        if (literal(s, "true", 4)) value = Py_NewRef(Py_True);
        else if (literal(s, "false", 5)) value = Py_NewRef(Py_False);
        result = value ? OK : UNSURE;
        break;
    case K_TAGS: result = read_tags(s, &value); break;
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
    if (!take(s, '{')) return UNSURE;
    if (presence >= 0) Py_XSETREF(s->out[presence], Py_NewRef(Py_True));
    if (take(s, '}')) return OK;
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
    } while (take(s, ','));
    return take(s, '}') ? OK : UNSURE;
}

static PyObject *scan_envelope(PyObject *Py_UNUSED(module), PyObject *raw) {
    Py_buffer line;
    if (PyObject_GetBuffer(raw, &line, PyBUF_SIMPLE) < 0) return NULL;
    scan s = {.p = line.buf, .end = (const unsigned char *)line.buf + line.len, .text = NULL};
    PyObject *fields = NULL;
    int result = FAILED;
    s.text = PyMem_Malloc(line.len ? (size_t)line.len : 1);
    if (!s.text) {
        PyErr_NoMemory();
        goto done;
    }
    for (int i = 0; i < S_COUNT; i++)
        s.out[i] = Py_NewRef(i == S_REQUEST || i == S_RESPONSE ? Py_False : Py_None);
    result = read_object(&s, ENVELOPE, -1);
    skip_space(&s);
    if (result == OK && s.p != s.end) result = UNSURE; /* something after the object */
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

static PyMethodDef methods[] = {
    {"scan_envelope", scan_envelope, METH_O,
     "scan_envelope(raw) -> tuple | None\n--\n\n"
     "One envelope's fields (fast_parse.EnvelopeFields), or None when another path must read it."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {
    .m_base = PyModuleDef_HEAD_INIT,
    .m_name = "_envelope_scan",
    .m_doc = "Compiled envelope scanner (see ADR 0008).",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC PyInit__envelope_scan(void) { return PyModule_Create(&module); }
