/* Shared by the compiled envelope scanner's two files (ADR 0008). */
#ifndef ENVELOPE_SCAN_H
#define ENVELOPE_SCAN_H

#include <stddef.h>
#include <string.h>

/* The reference path's usage.TAIL_READ_FROM (a test checks the two agree). */
#define TAIL_READ_FROM 8192

static inline int plain(unsigned char c) { return c != '"' && c != '\\' && c >= 0x20; }

#if defined(__SSE2__)
#include <emmintrin.h>
/* A bit for each of the 16 bytes at p that is '"', '\\' or a control byte. */
static inline unsigned special16(const unsigned char *p) {
    __m128i chunk = _mm_loadu_si128((const __m128i *)p);
    __m128i quote = _mm_cmpeq_epi8(chunk, _mm_set1_epi8('"'));
    __m128i slash = _mm_cmpeq_epi8(chunk, _mm_set1_epi8('\\'));
    __m128i low = _mm_set1_epi8(0x1f);
    __m128i control = _mm_cmpeq_epi8(_mm_max_epu8(chunk, low), low); /* chunk <= 0x1f */
    return (unsigned)_mm_movemask_epi8(_mm_or_si128(_mm_or_si128(quote, slash), control));
}

/* Whether the 16 bytes at p are all ASCII. */
static inline int ascii16(const unsigned char *p) {
    return !_mm_movemask_epi8(_mm_loadu_si128((const __m128i *)p));
}
#else
static inline unsigned special16(const unsigned char *p) {
    unsigned mask = 0;
    for (int i = 0; i < 16; i++) mask |= (unsigned)!plain(p[i]) << i;
    return mask;
}

static inline int ascii16(const unsigned char *p) {
    for (int i = 0; i < 16; i++)
        if (p[i] >= 0x80) return 0;
    return 1;
}
#endif

/* The first byte from p on that a string scan must look at ('"', '\\', control), or end.
 * Escapes come close together in JSON text, so 16 bytes are looked at first; past them, 64 a
 * step: four independent loads keep the memory system busy on long plain runs. */
static inline const unsigned char *next_special(const unsigned char *p, const unsigned char *end) {
    if (end - p >= 16) {
        unsigned mask = special16(p);
        if (mask) return p + __builtin_ctz(mask);
        p += 16;
    }
    while (end - p >= 64) {
        unsigned long long mask = (unsigned long long)special16(p) |
                                  (unsigned long long)special16(p + 16) << 16 |
                                  (unsigned long long)special16(p + 32) << 32 |
                                  (unsigned long long)special16(p + 48) << 48;
        if (mask) return p + __builtin_ctzll(mask);
        p += 64;
    }
    while (end - p >= 16) {
        unsigned mask = special16(p);
        if (mask) return p + __builtin_ctz(mask);
        p += 16;
    }
    while (p < end && plain(*p)) p++;
    return p;
}

/* A read position in a text and the text's end. */
typedef struct {
    const unsigned char *p, *end;
} cursor;

/* JSON whitespace skipped. */
static inline void space(cursor *c) {
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r'))
        c->p++;
}

/* Whitespace skipped, then `want` taken if it comes next. */
static inline int next_is(cursor *c, unsigned char want) {
    space(c);
    if (c->p < c->end && *c->p == want) {
        c->p++;
        return 1;
    }
    return 0;
}

/* `text` (n bytes) taken if it comes next. */
static inline int word(cursor *c, const char *text, size_t n) {
    if ((size_t)(c->end - c->p) < n || memcmp(c->p, text, n) != 0) return 0;
    c->p += n;
    return 1;
}

static inline int hex4(const unsigned char *p, unsigned *value) {
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

/* One escape at c->p, after its backslash: the character it stands for in *code, a surrogate
 * pair joined; 0 when JSON does not allow it or it leaves half a pair (orjson refuses both). */
static inline int read_escape(cursor *c, unsigned *code) {
    unsigned low;
    if (c->p >= c->end) return 0;
    switch (*c->p++) {
    case '"': *code = '"'; return 1;
    case '\\': *code = '\\'; return 1;
    case '/': *code = '/'; return 1;
    case 'b': *code = '\b'; return 1;
    case 'f': *code = '\f'; return 1;
    case 'n': *code = '\n'; return 1;
    case 'r': *code = '\r'; return 1;
    case 't': *code = '\t'; return 1;
    case 'u': break;
    default: return 0;
    }
    if (c->end - c->p < 4 || !hex4(c->p, code)) return 0;
    c->p += 4;
    if (*code >= 0xDC00 && *code <= 0xDFFF) return 0; /* a lone low surrogate */
    if (*code >= 0xD800 && *code <= 0xDBFF) {
        if (c->end - c->p < 6 || c->p[0] != '\\' || c->p[1] != 'u' || !hex4(c->p + 2, &low) ||
            low < 0xDC00 || low > 0xDFFF)
            return 0; /* a high surrogate without its low half */
        c->p += 6;
        *code = 0x10000 + ((*code - 0xD800) << 10) + (low - 0xDC00);
    }
    return 1;
}

typedef struct {
    long long prompt, cached, completion, reasoning, total, images;
    const unsigned char *model; /* NULL: no model named */
    size_t model_length;
} reported_usage;

/* Whether p[0:n] is UTF-8 as CPython's strict decoder takes it; counts its characters. */
int utf8_text(const unsigned char *p, size_t n, size_t *chars);

/* 1 when `usage.usage_from_body(body, streamed, counts_images)` is surely the model's usage
 * set in r; 0 when only the Python path can tell (no usage, CRLF streams, anything unusual).
 * body[0:n] is UTF-8 text of `chars` characters; `images` is 1 for an image operation, 0 for
 * another, -1 when not sure which. */
int body_reported_usage(const unsigned char *body, size_t n, size_t chars, int streamed,
                        int images, reported_usage *r);

#endif
