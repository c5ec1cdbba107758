/* buf.h: growable strings for protoc-gen-ackrpc. The generator is a short
 * process reading protoc's output: running out of memory ends it with a
 * message (xmalloc), it never returns a half-built file. */
#ifndef AKRGEN_BUF_H
#define AKRGEN_BUF_H

#include <stdarg.h>
#include <stddef.h>

#if defined(__GNUC__)
#define AKRGEN_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define AKRGEN_PRINTF(f, a)
#endif

typedef struct akrgen_buf {
  char *data; /* NUL-terminated once anything was written; NULL before */
  size_t len;
  size_t cap;
} akrgen_buf;

void *xmalloc(size_t size);
void *xrealloc(void *ptr, size_t size);
char *xstrdup(const char *s);
/* A malloc'd string built like printf. */
char *xasprintf(const char *fmt, ...) AKRGEN_PRINTF(1, 2);

void buf_append(akrgen_buf *b, const char *s, size_t len);
void buf_puts(akrgen_buf *b, const char *s);
void buf_printf(akrgen_buf *b, const char *fmt, ...) AKRGEN_PRINTF(2, 3);
void buf_vprintf(akrgen_buf *b, const char *fmt, va_list ap);
/* Appends `s` as the body of a C string literal (escaped). */
void buf_c_string(akrgen_buf *b, const char *s);
/* Takes the string out of the buffer (an empty string if nothing was
 * written) and resets the buffer. */
char *buf_take(akrgen_buf *b);
void buf_free(akrgen_buf *b);

#endif /* AKRGEN_BUF_H */
