/* Protobuf wire helpers shared by every encoder in the project (the SDK's OTLP encoder and the
 * collector's decoders, responses and forwarders): varint size and writing, and a copy tuned for
 * the short byte strings protobuf carries. Internal. */
#ifndef PF_WIRE_H
#define PF_WIRE_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "pf_buf.h"

/* Bytes the varint encoding of v takes (1..10). */
static inline size_t pf_varint_size(uint64_t v) {
  if (v < 0x80u) return 1;
  if (v < 0x4000u) return 2;
  unsigned bits = 64u - (unsigned)__builtin_clzll(v);
  return (bits + 6u) / 7u;
}

/* Writes v as a varint at p (room for pf_varint_size(v) bytes); returns the end. */
static inline uint8_t *pf_put_varint(uint8_t *p, uint64_t v) {
  while (v >= 0x80u) {
    *p++ = (uint8_t)(v | 0x80u);
    v >>= 7;
  }
  *p++ = (uint8_t)v;
  return p;
}

/* Appends v as a varint. Returns 0 or PROFILIS_ENOMEM. */
static inline int pf_buf_put_varint(pf_buf *b, uint64_t v) {
  uint8_t tmp[10];
  return pf_buf_append(b, tmp, (size_t)(pf_put_varint(tmp, v) - tmp));
}

/* Names, keys and short values are mostly 4..16 bytes: two overlapping 8-byte (or 4-byte)
 * moves beat a call into the library memcpy for them. */
static inline void pf_copy_small(uint8_t *dst, const uint8_t *src, size_t n) {
  if (n >= 8 && n <= 16) {
    uint64_t a, b;
    memcpy(&a, src, 8);
    memcpy(&b, src + n - 8, 8);
    memcpy(dst, &a, 8);
    memcpy(dst + n - 8, &b, 8);
  } else if (n >= 4 && n < 8) {
    uint32_t a, b;
    memcpy(&a, src, 4);
    memcpy(&b, src + n - 4, 4);
    memcpy(dst, &a, 4);
    memcpy(dst + n - 4, &b, 4);
  } else if (n) {
    memcpy(dst, src, n);
  }
}

#endif
