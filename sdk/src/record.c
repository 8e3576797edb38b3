/* Encoding of typed attributes into the compact record format described in pf_record.h.
 * Used by spans, events, links and the resource. Every length is measured once; plain ASCII
 * text (the usual key and value) skips the UTF-8 repair scan. */
#include <stdlib.h>
#include <string.h>

#include "pf_buf.h"
#include "pf_record.h"
#include "pf_utf8.h"

/* Raw length of a string value after the value length limit, never cutting a character. */
static size_t clip_str(const char *s, size_t n, uint32_t limit) {
  if (!limit || n <= limit) return n;
  return pf_utf8_clip((const uint8_t *)s, limit);
}

/* Copies n raw bytes as well-formed UTF-8 (fixed = pf_utf8_fixed_len of them). */
static void put_text(uint8_t *dst, const char *s, size_t n, size_t fixed) {
  if (fixed == n) memcpy(dst, s, n);
  else pf_utf8_fix(dst, (const uint8_t *)s, n);
}

static inline size_t text_len(const char *s, size_t n) {
  return pf_utf8_is_ascii((const uint8_t *)s, n) ? n : pf_utf8_fixed_len((const uint8_t *)s, n);
}

int pf_buf_append_text(pf_buf *b, const char *s, size_t n) {
  size_t fixed = text_len(s, n);
  int rc = pf_buf_reserve(b, fixed);
  if (rc) return rc;
  if (fixed) put_text(b->p + b->len, s, n, fixed);
  b->len += fixed;
  return 0;
}

/* Value size of an array attribute once encoded, or SIZE_MAX when invalid. */
static size_t array_size(const profilis_attr *a, uint32_t limit) {
  switch (a->type) {
  case PROFILIS_ATTR_STRING_ARRAY: {
    if (a->len && !a->v.sa) return SIZE_MAX;
    size_t n = 0;
    for (size_t i = 0; i < a->len; i++) {
      const char *e = a->v.sa[i];
      n += 4 + (e ? text_len(e, clip_str(e, strlen(e), limit)) : 0);
    }
    return n;
  }
  case PROFILIS_ATTR_BOOL_ARRAY:
    return (a->len && !a->v.ba) ? SIZE_MAX : a->len;
  case PROFILIS_ATTR_INT_ARRAY:
    return (a->len && !a->v.ia) ? SIZE_MAX : a->len * 8;
  case PROFILIS_ATTR_DOUBLE_ARRAY:
    return (a->len && !a->v.da) ? SIZE_MAX : a->len * 8;
  default:
    return SIZE_MAX;
  }
}

/* Writes an array value (array_size bytes). */
static void put_array(uint8_t *p, const profilis_attr *a, uint32_t limit) {
  switch (a->type) {
  case PROFILIS_ATTR_STRING_ARRAY:
    for (size_t i = 0; i < a->len; i++) {
      const char *e = a->v.sa[i];
      size_t raw = e ? clip_str(e, strlen(e), limit) : 0;
      uint32_t n = e ? (uint32_t)text_len(e, raw) : 0;
      memcpy(p, &n, 4);
      if (n) put_text(p + 4, e, raw, n);
      p += 4 + n;
    }
    break;
  case PROFILIS_ATTR_BOOL_ARRAY:
    for (size_t i = 0; i < a->len; i++) p[i] = a->v.ba[i] ? 1 : 0;
    break;
  case PROFILIS_ATTR_INT_ARRAY:
    if (a->len) memcpy(p, a->v.ia, a->len * 8);
    break;
  case PROFILIS_ATTR_DOUBLE_ARRAY:
    if (a->len) memcpy(p, a->v.da, a->len * 8);
    break;
  default:
    break;
  }
}

int pf_attr_encode(pf_buf *b, const profilis_attr *a, uint32_t value_length_limit) {
  if (!a || !a->key) return PROFILIS_EINVAL;
  return pf_attr_encode_klen(b, a, strlen(a->key), value_length_limit);
}

int pf_attr_encode_klen(pf_buf *b, const profilis_attr *a, size_t kraw, uint32_t limit) {
  size_t klen = text_len(a->key, kraw);
  size_t vraw = 0, vlen; /* raw and encoded length of a string value */
  switch (a->type) {
  case PROFILIS_ATTR_STRING:
    if (!a->v.s) return PROFILIS_EINVAL;
    vraw = clip_str(a->v.s, a->len ? a->len : strlen(a->v.s), limit);
    vlen = text_len(a->v.s, vraw);
    break;
  case PROFILIS_ATTR_BOOL:
    vlen = 1;
    break;
  case PROFILIS_ATTR_INT:
  case PROFILIS_ATTR_DOUBLE:
    vlen = 8;
    break;
  default:
    vlen = array_size(a, limit);
  }
  if (klen == 0 || klen > UINT16_MAX || vlen == SIZE_MAX || vlen > UINT32_MAX / 2)
    return PROFILIS_EINVAL;
  size_t need = sizeof(pf_attr_hdr) + klen + vlen;
  if (need > b->cap - b->len) {
    int rc = pf_buf_reserve(b, need);
    if (rc) return rc;
  }
  pf_attr_hdr h = {.type = (uint8_t)a->type, .key_len = (uint16_t)klen, .val_len = (uint32_t)vlen};
  uint8_t *p = b->p + b->len;
  memcpy(p, &h, sizeof h);
  put_text(p + sizeof h, a->key, kraw, klen);
  p += sizeof h + klen;
  switch (a->type) {
  case PROFILIS_ATTR_STRING:
    put_text(p, a->v.s, vraw, vlen);
    break;
  case PROFILIS_ATTR_BOOL:
    *p = a->v.b ? 1 : 0;
    break;
  case PROFILIS_ATTR_INT:
  case PROFILIS_ATTR_DOUBLE: /* v.i and v.d are the same 8 bytes */
    memcpy(p, &a->v, 8);
    break;
  default:
    put_array(p, a, limit);
  }
  b->len += need;
  return 0;
}

bool pf_attr_remove(pf_buf *b, const char *key, size_t key_len) {
  size_t off = 0;
  pf_attr_hdr h;
  /* walks the headers only; a key is compared when its length matches */
  while (off + sizeof h <= b->len) {
    memcpy(&h, b->p + off, sizeof h);
    size_t size = sizeof h + (size_t)h.key_len + (size_t)h.val_len;
    if (size > b->len - off) break;
    if (h.key_len == key_len && memcmp(b->p + off + sizeof h, key, key_len) == 0) {
      memmove(b->p + off, b->p + off + size, b->len - off - size);
      b->len -= size;
      return true;
    }
    off += size;
  }
  return false;
}
