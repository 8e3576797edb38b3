/* JSON text writer (see json_write.h). Strings are copied in runs of bytes that need no
 * escaping; the rest is escaped or, for ill-formed UTF-8, replaced by U+FFFD following the
 * Unicode "maximal subpart" practice (one replacement per broken sequence prefix). Numbers are
 * formatted without the C locale's help where it could put a ',' in them. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json_write.h"
#include "pf_utf8.h"
#include "profilis/common.h"

int pf_json_raw(pf_json *j, const char *s, size_t n) {
  if (!j->err) j->err = pf_buf_append(j->out, s, n);
  return j->err;
}

int pf_json_lit(pf_json *j, const char *lit) { return pf_json_raw(j, lit, strlen(lit)); }

static inline bool plain_byte(uint8_t c) { return c >= 0x20 && c < 0x80 && c != '"' && c != '\\'; }

/* Writes the escape for one byte below 0x80 that is not plain. Room is reserved by the caller. */
static char *put_escape(char *d, uint8_t c) {
  static const char hex[] = "0123456789abcdef";
  *d++ = '\\';
  switch (c) {
  case '"':
    *d++ = '"';
    break;
  case '\\':
    *d++ = '\\';
    break;
  case '\b':
    *d++ = 'b';
    break;
  case '\f':
    *d++ = 'f';
    break;
  case '\n':
    *d++ = 'n';
    break;
  case '\r':
    *d++ = 'r';
    break;
  case '\t':
    *d++ = 't';
    break;
  default:
    memcpy(d, "u00", 3);
    d[3] = hex[c >> 4];
    d[4] = hex[c & 15];
    d += 5;
  }
  return d;
}

int pf_json_escape(pf_json *j, const char *str, size_t n) {
  if (j->err || n == 0) return j->err;
  /* worst case: every byte becomes \u00XX (6 bytes) or part of one U+FFFD (3) */
  j->err = n > SIZE_MAX / 6 ? PROFILIS_ENOMEM : pf_buf_reserve(j->out, n * 6);
  if (j->err) return j->err;
  const uint8_t *s = (const uint8_t *)str;
  char *d = (char *)j->out->p + j->out->len;
  size_t i = 0;
  while (i < n) {
    size_t run = i;
    while (run < n && plain_byte(s[run])) run++;
    memcpy(d, s + i, run - i);
    d += run - i;
    i = run;
    if (i >= n) break;
    if (s[i] < 0x80) {
      d = put_escape(d, s[i++]);
      continue;
    }
    size_t bad = 0, ok = pf_utf8_seq(s + i, n - i, &bad);
    if (ok) {
      memcpy(d, s + i, ok);
      d += ok;
      i += ok;
    } else {
      memcpy(d, "\xEF\xBF\xBD", 3);
      d += 3;
      i += bad;
    }
  }
  j->out->len = (size_t)((uint8_t *)d - j->out->p);
  return 0;
}

int pf_json_str(pf_json *j, const char *s, size_t n) {
  pf_json_raw(j, "\"", 1);
  pf_json_escape(j, s, n);
  return pf_json_raw(j, "\"", 1);
}

int pf_json_cstr(pf_json *j, const char *s) {
  return pf_json_str(j, s ? s : "", s ? strlen(s) : 0);
}

void pf_hex_lower(char *dst, const uint8_t *bytes, size_t n) {
  static const char hex[] = "0123456789abcdef";
  for (size_t i = 0; i < n; i++) {
    dst[2 * i] = hex[bytes[i] >> 4];
    dst[2 * i + 1] = hex[bytes[i] & 15];
  }
}

int pf_json_hex(pf_json *j, const uint8_t *bytes, size_t n) {
  char tmp[2 * 32 + 2];
  if (n > 32) { /* ids are 8 or 16 bytes; anything longer goes in pieces */
    pf_json_raw(j, "\"", 1);
    for (size_t i = 0; i < n; i += 32) {
      size_t k = n - i < 32 ? n - i : 32;
      pf_hex_lower(tmp, bytes + i, k);
      pf_json_raw(j, tmp, 2 * k);
    }
    return pf_json_raw(j, "\"", 1);
  }
  tmp[0] = '"';
  pf_hex_lower(tmp + 1, bytes, n);
  tmp[2 * n + 1] = '"';
  return pf_json_raw(j, tmp, 2 * n + 2);
}

int pf_json_u64(pf_json *j, uint64_t v) {
  char tmp[20];
  size_t k = sizeof tmp;
  do {
    tmp[--k] = (char)('0' + v % 10);
    v /= 10;
  } while (v);
  return pf_json_raw(j, tmp + k, sizeof tmp - k);
}

int pf_json_i64(pf_json *j, int64_t v) {
  if (v >= 0) return pf_json_u64(j, (uint64_t)v);
  pf_json_raw(j, "-", 1);
  return pf_json_u64(j, (uint64_t)0 - (uint64_t)v); /* safe for INT64_MIN */
}

int pf_json_double(pf_json *j, double v) {
  if (isnan(v)) return pf_json_lit(j, "\"NaN\"");
  if (isinf(v)) return pf_json_lit(j, v > 0 ? "\"Infinity\"" : "\"-Infinity\"");
  char tmp[40];
  int n = snprintf(tmp, sizeof tmp, "%.15g", v);
  if (strtod(tmp, NULL) != v) n = snprintf(tmp, sizeof tmp, "%.17g", v);
  for (int i = 0; i < n; i++)
    if (tmp[i] == ',') tmp[i] = '.'; /* a host application may have set LC_NUMERIC */
  return pf_json_raw(j, tmp, (size_t)n);
}

int pf_json_bool(pf_json *j, bool v) {
  return v ? pf_json_raw(j, "true", 4) : pf_json_raw(j, "false", 5);
}

/* One element of an array value (or a scalar value): type is the scalar's element type. */
static void scalar(pf_json *j, profilis_attr_type t, const uint8_t *v, size_t n) {
  switch (t) {
  case PROFILIS_ATTR_STRING:
  case PROFILIS_ATTR_STRING_ARRAY:
    pf_json_str(j, (const char *)v, n);
    break;
  case PROFILIS_ATTR_BOOL:
  case PROFILIS_ATTR_BOOL_ARRAY:
    pf_json_bool(j, *v != 0);
    break;
  case PROFILIS_ATTR_INT:
  case PROFILIS_ATTR_INT_ARRAY:
    pf_json_i64(j, pf_rd_i64(v));
    break;
  default:
    pf_json_double(j, pf_rd_f64(v));
  }
}

static void array(pf_json *j, const pf_attr_view *a) {
  pf_json_raw(j, "[", 1);
  if (a->type == PROFILIS_ATTR_STRING_ARRAY) {
    for (size_t off = 0, i = 0; off + 4 <= a->val_len; i++) {
      size_t n = pf_rd_u32(a->val + off);
      if (n > a->val_len - off - 4) break; /* malformed tail: stop, keep the JSON valid */
      if (i) pf_json_raw(j, ",", 1);
      pf_json_str(j, (const char *)a->val + off + 4, n);
      off += 4 + n;
    }
  } else {
    size_t es = a->type == PROFILIS_ATTR_BOOL_ARRAY ? 1 : 8;
    for (size_t off = 0; off + es <= a->val_len; off += es) {
      if (off) pf_json_raw(j, ",", 1);
      scalar(j, a->type, a->val + off, es);
    }
  }
  pf_json_raw(j, "]", 1);
}

size_t pf_base64(char *dst, const uint8_t *s, size_t n, bool pad) {
  static const char al[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  char *d = dst;
  size_t i = 0;
  for (; i + 3 <= n; i += 3, d += 4) {
    uint32_t v = (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8 | s[i + 2];
    d[0] = al[v >> 18];
    d[1] = al[(v >> 12) & 63];
    d[2] = al[(v >> 6) & 63];
    d[3] = al[v & 63];
  }
  if (i < n) { /* one or two bytes left: two or three characters, padded to four */
    uint32_t v = (uint32_t)s[i] << 16 | (i + 1 < n ? (uint32_t)s[i + 1] << 8 : 0);
    *d++ = al[v >> 18];
    *d++ = al[(v >> 12) & 63];
    if (i + 1 < n) *d++ = al[(v >> 6) & 63];
    else if (pad) *d++ = '=';
    if (pad) *d++ = '=';
  }
  return (size_t)(d - dst);
}

int pf_json_base64(pf_json *j, const uint8_t *s, size_t n) {
  if (j->err) return j->err;
  j->err = n > SIZE_MAX / 2 ? PROFILIS_ENOMEM : pf_buf_reserve(j->out, PF_BASE64_LEN(n) + 2);
  if (j->err) return j->err;
  char *d = (char *)j->out->p + j->out->len;
  *d++ = '"';
  d += pf_base64(d, s, n, true);
  *d++ = '"';
  j->out->len = (size_t)((uint8_t *)d - j->out->p);
  return 0;
}

/* ---- raw AnyValue messages (collector): the protobuf read back as plain JSON ---- */

/* Types only the collector makes (collector/pc_chunk.h PF_ATTR_BYTES / PF_ATTR_ANYVALUE). */
enum { ATTR_BYTES = 9, ATTR_ANYVALUE = 10 };
#define ANY_MAX_DEPTH 32

typedef struct pb_field {
  uint32_t num, wt;
  uint64_t v;
  const uint8_t *p;
  size_t n;
} pb_field;

static bool pb_varint(const uint8_t **p, const uint8_t *end, uint64_t *v) {
  uint64_t x = 0;
  for (unsigned s = 0; s < 64 && *p < end; s += 7) {
    uint8_t b = *(*p)++;
    x |= (uint64_t)(b & 0x7f) << s;
    if (b < 0x80) {
      *v = x;
      return true;
    }
  }
  return false;
}

/* Reads the next field of [*p, end). False at the end or at anything malformed. */
static bool pb_next(const uint8_t **p, const uint8_t *end, pb_field *f) {
  uint64_t tag, n;
  if (*p >= end || !pb_varint(p, end, &tag)) return false;
  f->num = (uint32_t)(tag >> 3);
  f->wt = (uint32_t)(tag & 7);
  switch (f->wt) {
  case 0:
    return pb_varint(p, end, &f->v);
  case 1:
  case 5: {
    size_t w = f->wt == 1 ? 8 : 4;
    if ((size_t)(end - *p) < w) return false;
    f->v = 0;
    for (size_t i = 0; i < w; i++) f->v |= (uint64_t)(*p)[i] << (8 * i);
    *p += w;
    return true;
  }
  case 2:
    if (!pb_varint(p, end, &n) || n > (uint64_t)(end - *p)) return false;
    f->p = *p;
    f->n = (size_t)n;
    *p += n;
    return true;
  default:
    return false;
  }
}

static void any_json(pf_json *j, const uint8_t *p, size_t n, int depth);

/* ArrayValue -> [..], KeyValueList -> {..}: stops quietly at malformed bytes. */
static void list_json(pf_json *j, const uint8_t *p, size_t n, bool kv, int depth) {
  const uint8_t *end = p + n;
  pb_field f, g;
  bool first = true;
  pf_json_raw(j, kv ? "{" : "[", 1);
  while (pb_next(&p, end, &f)) {
    if (f.num != 1 || f.wt != 2) continue;
    if (!first) pf_json_raw(j, ",", 1);
    first = false;
    if (!kv) {
      any_json(j, f.p, f.n, depth + 1);
      continue;
    }
    const uint8_t *q = f.p, *qend = f.p + f.n, *key = NULL, *val = NULL;
    size_t key_n = 0, val_n = 0;
    while (pb_next(&q, qend, &g)) {
      if (g.wt != 2) continue;
      if (g.num == 1) key = g.p, key_n = g.n;
      if (g.num == 2) val = g.p, val_n = g.n;
    }
    pf_json_str(j, key ? (const char *)key : "", key_n);
    pf_json_raw(j, ":", 1);
    if (val)
      any_json(j, val, val_n, depth + 1);
    else
      pf_json_raw(j, "null", 4);
  }
  pf_json_raw(j, kv ? "}" : "]", 1);
}

/* One AnyValue (the last member of its oneof wins); empty, unknown or too deep: null. */
static void any_json(pf_json *j, const uint8_t *p, size_t n, int depth) {
  static const uint8_t want_wt[8] = {9, 2, 0, 0, 1, 2, 2, 2};
  const uint8_t *end = p + n;
  pb_field f, v = {0};
  while (pb_next(&p, end, &f))
    if (f.num >= 1 && f.num <= 7 && f.wt == want_wt[f.num]) v = f;
  if (!v.num || depth > ANY_MAX_DEPTH) {
    pf_json_raw(j, "null", 4);
    return;
  }
  double dv;
  switch (v.num) {
  case 1:
    pf_json_str(j, (const char *)v.p, v.n);
    break;
  case 2:
    pf_json_bool(j, v.v != 0);
    break;
  case 3:
    pf_json_i64(j, (int64_t)v.v);
    break;
  case 4:
    memcpy(&dv, &v.v, 8);
    pf_json_double(j, dv);
    break;
  case 5:
  case 6:
    list_json(j, v.p, v.n, v.num == 6, depth);
    break;
  default:
    pf_json_base64(j, v.p, v.n);
  }
}

int pf_json_attr_value(pf_json *j, const pf_attr_view *a) {
  if ((int)a->type == ATTR_BYTES) return pf_json_base64(j, a->val, a->val_len);
  if ((int)a->type == ATTR_ANYVALUE) {
    any_json(j, a->val, a->val_len, 1);
    return j->err;
  }
  switch (a->type) {
  case PROFILIS_ATTR_STRING:
    return pf_json_str(j, (const char *)a->val, a->val_len);
  case PROFILIS_ATTR_BOOL:
  case PROFILIS_ATTR_INT:
  case PROFILIS_ATTR_DOUBLE:
    if (a->val_len < (a->type == PROFILIS_ATTR_BOOL ? 1u : 8u)) return pf_json_raw(j, "null", 4);
    scalar(j, a->type, a->val, a->val_len);
    return j->err;
  case PROFILIS_ATTR_STRING_ARRAY:
  case PROFILIS_ATTR_BOOL_ARRAY:
  case PROFILIS_ATTR_INT_ARRAY:
  case PROFILIS_ATTR_DOUBLE_ARRAY:
    array(j, a);
    return j->err;
  }
  return pf_json_raw(j, "null", 4);
}

int pf_json_attrs(pf_json *j, const uint8_t *sec, size_t len) {
  size_t off = 0;
  pf_attr_view a;
  pf_json_raw(j, "{", 1);
  for (bool first = true; pf_attr_next(sec, len, &off, &a); first = false) {
    if (!first) pf_json_raw(j, ",", 1);
    pf_json_str(j, a.key, a.key_len);
    pf_json_raw(j, ":", 1);
    pf_json_attr_value(j, &a);
  }
  return pf_json_raw(j, "}", 1);
}
