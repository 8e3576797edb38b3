/* Growable byte buffer used by spans, encoders and exporters. Memory is kept across
 * pf_buf_reset() so steady-state reuse allocates nothing. Internal. */
#ifndef PF_BUF_H
#define PF_BUF_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef struct pf_buf {
  uint8_t *p;
  size_t len;
  size_t cap;
} pf_buf;

/* Makes room for `extra` more bytes. Returns 0 or PROFILIS_ENOMEM. */
int pf_buf_reserve(pf_buf *b, size_t extra);
/* Appends n bytes. Returns 0 or PROFILIS_ENOMEM. */
int pf_buf_append(pf_buf *b, const void *data, size_t n);
/* Appends a NUL-terminated string without its NUL. Returns 0 or PROFILIS_ENOMEM. */
int pf_buf_puts(pf_buf *b, const char *s);
/* printf-style append. Returns 0 or PROFILIS_ENOMEM. */
int pf_buf_printf(pf_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void pf_buf_free(pf_buf *b);

static inline void pf_buf_reset(pf_buf *b) { b->len = 0; }

#endif
