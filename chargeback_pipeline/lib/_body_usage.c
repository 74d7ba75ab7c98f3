/* The model's reported usage in a response body, read as the reference path's
 * `usage.usage_from_body` reads it (ADR 0008): an SSE stream event by event from its end, a JSON
 * body of at most TAIL_READ_FROM characters as one whole document, a longer one from its last
 * `"usage"` object. Every rule here answers "not sure" (0) rather than guess; the Python path
 * then reads the body itself.
 */
#define _GNU_SOURCE /* memrchr */
#include <string.h>

#include "_envelope_scan.h"

#define MAX_DEPTH 64
#define MAX_DIGITS 18 /* any integer this long fits 64 bits */
#define MAX_ENTRIES 64

int utf8_text(const unsigned char *p, size_t n, size_t *chars) {
    const unsigned char *end = p + n;
    size_t count = 0;
    while (p < end) {
        while (end - p >= 16 && ascii16(p)) {
            p += 16;
            count += 16;
        }
        if (p >= end) break;
        unsigned char c = *p;
        if (c < 0x80) {
            p++;
            count++;
            continue;
        }
        /* RFC 3629: no overlong forms, no surrogates, nothing past U+10FFFF. */
        size_t more;
        unsigned char low = 0x80, high = 0xBF;
        if (c >= 0xC2 && c <= 0xDF) more = 1;
        else if (c == 0xE0) more = 2, low = 0xA0;
        else if (c == 0xED) more = 2, high = 0x9F;
        else if (c >= 0xE1 && c <= 0xEF) more = 2;
        else if (c == 0xF0) more = 3, low = 0x90;
        else if (c == 0xF4) more = 3, high = 0x8F;
        else if (c >= 0xF1 && c <= 0xF3) more = 3;
        else return 0;
        if ((size_t)(end - p) <= more || p[1] < low || p[1] > high) return 0;
        for (size_t i = 2; i <= more; i++)
            if ((p[i] & 0xC0) != 0x80) return 0;
        p += more + 1;
        count++;
    }
    *chars = count;
    return 1;
}

/* ------------------------------------------------------------------ JSON, strictly validated */

static int named(const unsigned char *key, size_t length, const char *name) {
    return strlen(name) == length && memcmp(key, name, length) == 0;
}

/* A string at c->p: its text between the quotes, and whether it holds escapes. */
static int string(cursor *c, const unsigned char **text, size_t *length, int *escaped) {
    if (c->p >= c->end || *c->p != '"') return 0;
    const unsigned char *start = ++c->p;
    *escaped = 0;
    for (;;) {
        c->p = next_special(c->p, c->end);
        if (c->p >= c->end || *c->p < 0x20) return 0;
        if (*c->p == '"') break;
        unsigned code;
        *escaped = 1;
        c->p++; /* the backslash */
        if (!read_escape(c, &code)) return 0;
    }
    *text = start;
    *length = (size_t)(c->p - start);
    c->p++;
    return 1;
}

/* A number; *integer is set when it is a whole number of at most MAX_DIGITS digits. orjson
 * refuses numbers that overflow a double, so anything near that is refused here too. */
static int number(cursor *c, long long *value, int *integer) {
    const unsigned char *p = c->p, *end = c->end;
    int negative = p < end && *p == '-';
    p += negative;
    const unsigned char *digits = p;
    long long v = 0;
    while (p < end && *p >= '0' && *p <= '9') {
        if (p - digits < MAX_DIGITS) v = v * 10 + (*p - '0');
        p++;
    }
    long whole = (long)(p - digits);
    if (whole == 0 || (whole > 1 && *digits == '0')) return 0;
    *integer = whole <= MAX_DIGITS;
    if (p < end && *p == '.') {
        const unsigned char *fraction = ++p;
        while (p < end && *p >= '0' && *p <= '9') p++;
        if (p == fraction) return 0;
        *integer = 0;
    }
    long exponent = 0;
    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        int down = p < end && *p == '-';
        p += p < end && (*p == '-' || *p == '+');
        const unsigned char *start = p;
        while (p < end && *p >= '0' && *p <= '9' && p - start < 4) exponent = exponent * 10 + (*p++ - '0');
        if (p == start || (p < end && *p >= '0' && *p <= '9')) return 0;
        exponent = down ? -exponent : exponent;
        *integer = 0;
    }
    if (whole + exponent > 300 || exponent < -300) return 0;
    *value = negative ? -v : v;
    c->p = p;
    return 1;
}

static int value(cursor *c, int depth);

static int object(cursor *c, int depth) {
    c->p++;
    if (next_is(c, '}')) return 1;
    do {
        const unsigned char *key;
        size_t length;
        int escaped;
        space(c);
        if (!string(c, &key, &length, &escaped) || !next_is(c, ':') || !value(c, depth + 1))
            return 0;
    } while (next_is(c, ','));
    return next_is(c, '}');
}

static int array(cursor *c, int depth) {
    c->p++;
    if (next_is(c, ']')) return 1;
    do {
        if (!value(c, depth + 1)) return 0;
    } while (next_is(c, ','));
    return next_is(c, ']');
}

/* Any JSON value, checked as orjson checks it (the text is known to be UTF-8). */
static int value(cursor *c, int depth) {
    space(c);
    if (c->p >= c->end || depth > MAX_DEPTH) return 0;
    const unsigned char *text;
    size_t length;
    int flag;
    long long ignored;
    switch (*c->p) {
    case '{': return object(c, depth);
    case '[': return array(c, depth);
    case '"': return string(c, &text, &length, &flag);
    case 't': return word(c, "true", 4);
    case 'f': return word(c, "false", 5);
    case 'n': return word(c, "null", 4);
    default: return number(c, &ignored, &flag);
    }
}

/* ------------------------------------------------------------------------ the usage object */

enum { E_INT, E_NULL, E_OBJECT };

typedef struct {
    const unsigned char *key;
    size_t length;
    int parent; /* -1: a key of the usage object itself */
    int kind;
    long long value;
} entry;

static int find(const entry *e, int n, int parent, const char *key) {
    for (int i = 0; i < n; i++)
        if (e[i].parent == parent && named(e[i].key, e[i].length, key)) return i;
    return -1;
}

/* An object of integers and nulls (and, at the top, objects of those), no key repeated. */
static int entries(cursor *c, entry *e, int *n, int parent) {
    c->p++;
    if (next_is(c, '}')) return 1;
    do {
        const unsigned char *key;
        size_t length;
        int escaped, integer;
        space(c);
        if (!string(c, &key, &length, &escaped) || escaped || !next_is(c, ':') ||
            *n >= MAX_ENTRIES)
            return 0;
        for (int i = 0; i < *n; i++)
            if (e[i].parent == parent && e[i].length == length && !memcmp(e[i].key, key, length))
                return 0;
        int at = (*n)++;
        e[at] = (entry){key, length, parent, E_INT, 0};
        space(c);
        if (parent < 0 && c->p < c->end && *c->p == '{') {
            e[at].kind = E_OBJECT;
            if (!entries(c, e, n, at)) return 0;
        } else if (word(c, "null", 4)) {
            e[at].kind = E_NULL;
        } else if (!number(c, &e[at].value, &integer) || !integer) {
            return 0;
        }
    } while (next_is(c, ','));
    return next_is(c, '}');
}

/* usage._count: null or missing is 0; anything but an integer is the Python path's to word. */
static int count(const entry *e, int i, long long *value) {
    if (i >= 0 && e[i].kind == E_OBJECT) return 0;
    *value = i >= 0 && e[i].kind == E_INT ? e[i].value : 0;
    return 1;
}

/* usage._detail: a count inside a details object; 0 when the section is not an object. */
static int detail(const entry *e, int n, const char *section, const char *field, long long *value) {
    int at = find(e, n, -1, section);
    if (at < 0 || e[at].kind != E_OBJECT) {
        *value = 0;
        return 1;
    }
    return count(e, find(e, n, at, field), value);
}

/* usage.usage_from_object, for the object at c->p. */
static int usage_object(cursor *c, reported_usage *r) {
    entry e[MAX_ENTRIES];
    int n = 0;
    long long total;
    if (c->p >= c->end || *c->p != '{' || !entries(c, e, &n, -1)) return 0;
    int responses = find(e, n, -1, "input_tokens") >= 0 || find(e, n, -1, "output_tokens") >= 0;
    if (!count(e, find(e, n, -1, responses ? "input_tokens" : "prompt_tokens"), &r->prompt) ||
        !count(e, find(e, n, -1, responses ? "output_tokens" : "completion_tokens"),
               &r->completion) ||
        !detail(e, n, responses ? "input_tokens_details" : "prompt_tokens_details",
                "cached_tokens", &r->cached) ||
        !detail(e, n, responses ? "output_tokens_details" : "completion_tokens_details",
                "reasoning_tokens", &r->reasoning) ||
        !count(e, find(e, n, -1, "total_tokens"), &total))
        return 0;
    r->total = total ? total : r->prompt + r->completion;
    r->images = 0;
    return 1;
}

/* -------------------------------------------------------------------- a body read as a whole */

/* A top-level `data` value; *images is its length when it is an image list (a non-empty list
 * of objects, each with a `url` or `b64_json` key: usage._is_image_list), else 0. */
static int data_value(cursor *c, long long *images) {
    long long items = 0;
    int all_images = 1;
    *images = 0;
    if (c->p >= c->end || *c->p != '[') return value(c, 1);
    c->p++;
    if (next_is(c, ']')) return 1;
    do {
        int image = 0;
        items++;
        space(c);
        if (c->p >= c->end || *c->p != '{') {
            all_images = 0;
            if (!value(c, 2)) return 0;
            continue;
        }
        c->p++;
        if (!next_is(c, '}')) {
            do {
                const unsigned char *key;
                size_t length;
                int escaped;
                space(c);
                if (!string(c, &key, &length, &escaped) || escaped || !next_is(c, ':') ||
                    !value(c, 3))
                    return 0;
                image |= named(key, length, "url") || named(key, length, "b64_json");
            } while (next_is(c, ','));
            if (!next_is(c, '}')) return 0;
        }
        all_images &= image;
    } while (next_is(c, ','));
    if (!next_is(c, ']')) return 0;
    *images = all_images ? items : 0;
    return 1;
}

/* A key and its colon at c->p: plain text only (an escaped key may spell any name). */
static int plain_key(cursor *c, const unsigned char **key, size_t *length) {
    int escaped;
    space(c);
    if (!string(c, key, length, &escaped) || escaped || !next_is(c, ':')) return 0;
    space(c);
    return 1;
}

/* A `model` value: a plain string names it (empty: none); any other value names none. */
static int model_value(cursor *c, reported_usage *r) {
    const unsigned char *text;
    size_t length;
    int escaped;
    if (c->p >= c->end || *c->p != '"') return value(c, 1);
    if (!string(c, &text, &length, &escaped) || escaped) return 0;
    r->model = length ? text : NULL;
    r->model_length = length;
    return 1;
}

/* A `usage` value: an object is read into r (*found set); any other value is no usage. */
static int usage_value(cursor *c, reported_usage *r, int *found) {
    if (c->p >= c->end || *c->p != '{') return value(c, 1);
    *found = 1;
    return usage_object(c, r);
}

/* The object a Responses event wraps: its usage and model (usage._usage_from_document). */
static int response_object(cursor *c, reported_usage *r, int *found) {
    int usage = 0, model = 0;
    c->p++;
    if (next_is(c, '}')) return 1;
    do {
        const unsigned char *key;
        size_t length;
        if (!plain_key(c, &key, &length)) return 0;
        if (named(key, length, "usage")) {
            if (usage++ || !usage_value(c, r, found)) return 0;
        } else if (named(key, length, "model")) {
            if (model++ || !model_value(c, r)) return 0;
        } else if (!value(c, 2)) {
            return 0;
        }
    } while (next_is(c, ','));
    return next_is(c, '}');
}

/* usage._usage_from_document over one whole JSON object: 1 when it reports usage or images (set
 * in r), 0 when it surely reports neither (r->model: its model), -1 when only Python can tell. */
static int document_usage(const unsigned char *text, size_t n, reported_usage *r) {
    cursor c = {text, text + n};
    int usage = 0, model = 0, data = 0, response = 0, found = 0, inner_found = 0;
    long long images = 0;
    reported_usage inner = {0};
    r->model = NULL;
    if (!next_is(&c, '{')) return -1;
    if (!next_is(&c, '}')) {
        do {
            const unsigned char *key;
            size_t length;
            if (!plain_key(&c, &key, &length)) return -1;
            if (named(key, length, "usage")) {
                if (usage++ || !usage_value(&c, r, &found)) return -1;
            } else if (named(key, length, "model")) {
                if (model++ || !model_value(&c, r)) return -1;
            } else if (named(key, length, "data")) {
                if (data++ || !data_value(&c, &images)) return -1;
            } else if (named(key, length, "response")) {
                if (response++) return -1;
                if (c.p < c.end && *c.p == '{') {
                    if (!response_object(&c, &inner, &inner_found)) return -1;
                } else if (!value(&c, 1)) {
                    return -1;
                }
            } else if (!value(&c, 1)) {
                return -1;
            }
        } while (next_is(&c, ','));
        if (!next_is(&c, '}')) return -1;
    }
    space(&c);
    if (c.p != c.end) return -1;
    if (inner_found) {
        *r = inner;
        return 1;
    }
    if (!found && !images) return 0;
    if (!found) r->prompt = r->cached = r->completion = r->reasoning = r->total = 0;
    r->images = images; /* an image list is counted beside usage, or alone */
    return 1;
}

/* ----------------------------------------------------------------------------- an SSE stream */

static int ascii_space(unsigned char c) {
    return c == ' ' || (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x1f);
}

static const unsigned char *last(const unsigned char *text, size_t end, const char *needle);

/* usage.usage_from_sse: events from the last, the first that reports usage wins; its model
 * falls back to the latest event that named one. */
static int sse_usage(const unsigned char *body, size_t n, reported_usage *r) {
    const unsigned char *fallback = NULL;
    size_t fallback_length = 0, end = n;
    if (memchr(body, '\r', n)) return 0; /* CRLF streams are the Python path's */
    while (end > 0) {
        const unsigned char *cut = last(body, end, "\n\n");
        const unsigned char *line = cut ? cut + 2 : body, *stop = body + end;
        const unsigned char *payload = NULL;
        size_t length = 0;
        int lines = 0;
        end = cut ? (size_t)(cut - body) : 0;
        while (line < stop) {
            const unsigned char *newline = memchr(line, '\n', (size_t)(stop - line));
            const unsigned char *line_end = newline ? newline : stop;
            if (line_end - line >= 5 && memcmp(line, "data:", 5) == 0) {
                if (lines++) return 0; /* data lines to join: the Python path's */
                payload = line + 5;
                while (payload < line_end && ascii_space(*payload)) payload++;
                if (payload < line_end && *payload >= 0x80) return 0;
                length = (size_t)(line_end - payload);
            }
            if (!newline) break;
            line = newline + 1;
        }
        if (!lines || (length == 6 && memcmp(payload, "[DONE]", 6) == 0)) continue;
        if (!length || *payload != '{') continue; /* no object: no usage, no model */
        int found = document_usage(payload, length, r);
        if (found < 0) return 0;
        if (found) {
            if (!r->model) {
                r->model = fallback;
                r->model_length = fallback_length;
            }
            return 1;
        }
        if (!fallback && r->model) {
            fallback = r->model;
            fallback_length = r->model_length;
        }
    }
    return 0;
}

/* ------------------------------------------------------------------- a body read from its tail */

/* The last `needle` lying wholly in text[0:end], as str.rfind finds it. */
static const unsigned char *last(const unsigned char *text, size_t end, const char *needle) {
    size_t length = strlen(needle);
    while (end >= length) {
        const unsigned char *at = memrchr(text, needle[0], end - length + 1);
        if (!at) return NULL;
        if (memcmp(at, needle, length) == 0) return at;
        end = (size_t)(at - text) + length - 1;
    }
    return NULL;
}

/* usage.json_values: where the value of the last `"key":` before `end` starts, or NULL. */
static const unsigned char *value_of(const unsigned char *text, size_t n, size_t *end,
                                     const char *needle) {
    const unsigned char *at;
    while ((at = last(text, *end, needle))) {
        *end = (size_t)(at - text);
        if (at > text && at[-1] == '\\') continue; /* inside a string value */
        cursor c = {at + strlen(needle), text + n};
        if (!next_is(&c, ':')) continue;
        space(&c);
        return c.p;
    }
    return NULL;
}

/* usage.usage_from_json_tail: the last `usage` object, and the last non-empty `model` string. */
static int tail_usage(const unsigned char *body, size_t n, reported_usage *r) {
    size_t end = n;
    const unsigned char *at = value_of(body, n, &end, "\"usage\"");
    cursor c = {at, body + n};
    /* A value other than an object sends the reference to earlier ones: not followed here. */
    if (!at || !usage_object(&c, r)) return 0;
    r->model = NULL;
    end = n;
    while ((at = value_of(body, n, &end, "\"model\""))) {
        const unsigned char *text;
        size_t length;
        int escaped;
        c = (cursor){at, body + n};
        if (at >= body + n || *at != '"') continue; /* not a string: the reference looks on */
        if (!string(&c, &text, &length, &escaped) || escaped) return 0;
        if (length) {
            r->model = text;
            r->model_length = length;
            break;
        }
    }
    return 1;
}

int body_reported_usage(const unsigned char *body, size_t n, size_t chars, int streamed,
                        int images, reported_usage *r) {
    size_t i = 0;
    if (n == 0) return 0;
    /* body.lstrip(): ASCII whitespace as str.isspace() has it; other spaces are Python's. */
    while (i < n && ascii_space(body[i])) i++;
    if (i < n && body[i] >= 0x80) return 0;
    if (streamed || (n - i >= 5 && memcmp(body + i, "data:", 5) == 0) ||
        (n - i >= 6 && memcmp(body + i, "event:", 6) == 0))
        return sse_usage(body, n, r);
    if (images < 0) return 0;
    /* An image response is read whole whatever its size, to count its images. */
    if (!images && chars > TAIL_READ_FROM) return tail_usage(body, n, r);
    return document_usage(body, n, r) == 1;
}
