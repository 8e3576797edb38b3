/* JSON renderings of collector chunks, for the JSONL exporter: one object per span per line
 * (ids as lowercase hex, attributes as an object, the resource and scope inline), and the
 * OTLP/JSON form of a chunk as one ResourceSpans (lowerCamelCase keys, ids as hex, 64-bit
 * integers as decimal strings, enums as integers, bytes as base64, scopes grouped in order of
 * first appearance). Encoded AnyValues (kvlists, nested arrays) are read with the protobuf wire
 * reader, depth-capped. Every string goes out as valid UTF-8: printable ASCII as it is, anything
 * else escaped and repaired by pf_json. A span line's tail (resource, scope, tenant) is the same
 * for every span of a scope in a chunk, so it is rendered once and copied. */
#include <stdlib.h>
#include <string.h>

#include "grpc_frame.h"
#include "pc_decode.h"
#include "pc_json_render.h"

#define JR_ANY_DEPTH PC_DECODE_MAX_DEPTH /* AnyValue nesting rendered; deeper is {} / null */
/* ---- inline writers ----
 * Keys, punctuation, ids, integers and plain ASCII strings are most of every line; writing
 * them straight into the buffer instead of through pf_json's calls makes rendering several
 * times faster. Two layers: w_* store at a cursor into room the caller reserved (a span line's
 * head takes one reservation), put_* reserve their own. Anything that needs escaping or UTF-8
 * repair goes through pf_json. Errors stay sticky in j->err as pf_json defines. */

/* Room for n more bytes, or NULL (j->err set). */
static inline char *room(pf_json *j, size_t n) {
  pf_buf *b = j->out;
  if (j->err) return NULL;
  if (n > b->cap - b->len && pf_buf_reserve(b, n) != 0) {
    j->err = PROFILIS_ENOMEM;
    return NULL;
  }
  return (char *)b->p + b->len;
}

/* Marks the bytes written from the end of the buffer up to the cursor d as used. */
static inline void commit(pf_json *j, const char *d) {
  j->out->len = (size_t)((const uint8_t *)d - j->out->p);
}

#define HOT static inline __attribute__((always_inline)) /* the per-span helpers */

/* Copies of up to 32 bytes (names, keys, values, digits) as two overlapping moves. */
HOT char *w_copy(char *d, const char *s, size_t n) {
  if (n >= 16 && n <= 32) {
    char a[16], b[16];
    memcpy(a, s, 16);
    /* s holds n bytes, so s + n is one past its end: valid (cppcheck assumes s is shorter). */
    /* cppcheck-suppress pointerOutOfBoundsCond */
    memcpy(b, s + n - 16, 16);
    memcpy(d, a, 16);
    memcpy(d + n - 16, b, 16);
  } else if (n >= 8 && n < 16) {
    uint64_t a, b;
    memcpy(&a, s, 8);
    memcpy(&b, s + n - 8, 8);
    memcpy(d, &a, 8);
    memcpy(d + n - 8, &b, 8);
  } else if (n >= 4 && n < 8) {
    uint32_t a, b;
    memcpy(&a, s, 4);
    memcpy(&b, s + n - 4, 4);
    memcpy(d, &a, 4);
    memcpy(d + n - 4, &b, 4);
  } else if (n) {
    memcpy(d, s, n);
  }
  return d + n;
}

#define W_LIT(d, lit) (memcpy((d), "" lit, sizeof(lit) - 1), (d) + sizeof(lit) - 1)

static inline int put(pf_json *j, const char *s, size_t n) {
  char *d = room(j, n);
  if (!d) return j->err;
  commit(j, w_copy(d, s, n));
  return 0;
}

#define LIT(j, lit) put((j), "" lit, sizeof(lit) - 1)

/* Decimal digits of v (1..20): an estimate from its bit length, corrected by one compare. */
HOT unsigned dec_len(uint64_t v) {
  static const uint64_t p10[20] = {1ull,
                                   10ull,
                                   100ull,
                                   1000ull,
                                   10000ull,
                                   100000ull,
                                   1000000ull,
                                   10000000ull,
                                   100000000ull,
                                   1000000000ull,
                                   10000000000ull,
                                   100000000000ull,
                                   1000000000000ull,
                                   10000000000000ull,
                                   100000000000000ull,
                                   1000000000000000ull,
                                   10000000000000000ull,
                                   100000000000000000ull,
                                   1000000000000000000ull,
                                   10000000000000000000ull};
  unsigned t = ((unsigned)(64 - __builtin_clzll(v | 1)) * 1233u) >> 12; /* 1233/4096 ~ log10 2 */
  return v ? t + (v >= p10[t]) : 1;
}

static const char digit_pairs[] = "00010203040506070809"
                                  "10111213141516171819"
                                  "20212223242526272829"
                                  "30313233343536373839"
                                  "40414243444546474849"
                                  "50515253545556575859"
                                  "60616263646566676869"
                                  "70717273747576777879"
                                  "80818283848586878889"
                                  "90919293949596979899";

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
/* The eight digits of x < 1e8, zero-padded, as text in a register (first digit in the lowest
 * byte): built and stored whole, since storing digit pairs into a buffer and copying them on
 * stalls on store forwarding. */
HOT uint64_t digits8(uint32_t x) {
  uint32_t hi = x / 10000, lo = x % 10000;
  uint16_t p[4];
  memcpy(&p[0], digit_pairs + 2 * (hi / 100), 2);
  memcpy(&p[1], digit_pairs + 2 * (hi % 100), 2);
  memcpy(&p[2], digit_pairs + 2 * (lo / 100), 2);
  memcpy(&p[3], digit_pairs + 2 * (lo % 100), 2);
  return (uint64_t)p[0] | (uint64_t)p[1] << 16 | (uint64_t)p[2] << 32 | (uint64_t)p[3] << 48;
}

/* x < 1e8 without leading zeros. Stores eight bytes whatever its length: callers reserve
 * room for 20. */
HOT char *w_lead8(char *d, uint32_t x) {
  unsigned n = dec_len(x);
  uint64_t text = digits8(x) >> (8 * (8 - n));
  memcpy(d, &text, 8);
  return d + n;
}

HOT char *w_8digits(char *d, uint32_t x) {
  uint64_t text = digits8(x);
  memcpy(d, &text, 8);
  return d + 8;
}

/* v in decimal, at most 20 bytes (timestamps have 19): eight digits at a time. */
HOT char *w_u64(char *d, uint64_t v) {
  if (v < 10) {
    *d = (char)('0' + v);
    return d + 1;
  }
  if (v < 100000000u) return w_lead8(d, (uint32_t)v);
  uint64_t hi = v / 100000000u;
  if (hi < 100000000u) {
    d = w_lead8(d, (uint32_t)hi);
  } else {
    d = w_lead8(d, (uint32_t)(hi / 100000000u));
    d = w_8digits(d, (uint32_t)(hi % 100000000u));
  }
  return w_8digits(d, (uint32_t)(v % 100000000u));
}
#else
/* v in decimal, at most 20 bytes. */
HOT char *w_u64(char *d, uint64_t v) {
  char *end = d + dec_len(v), *e = end;
  for (; v >= 100; v /= 100) {
    e -= 2;
    memcpy(e, digit_pairs + 2 * (v % 100), 2);
  }
  if (v >= 10)
    memcpy(e - 2, digit_pairs + 2 * v, 2);
  else
    e[-1] = (char)('0' + v);
  return end;
}
#endif

/* Four bytes as eight lowercase hex digits, without a table: each byte is spread to a 16-bit
 * lane as (high nibble, low nibble), and 39 more is added to the nibbles above 9 ('a' - '0' -
 * 10), all lanes at once. */
HOT char *w_hex4(char *d, const uint8_t *p) {
  uint64_t x = (uint64_t)p[0] | (uint64_t)p[1] << 16 | (uint64_t)p[2] << 32 | (uint64_t)p[3] << 48;
  uint64_t n = (x >> 4 & 0x000f000f000f000full) | (x & 0x000f000f000f000full) << 8;
  uint64_t letters = ((n + 0x0606060606060606ull) >> 4) & 0x0101010101010101ull;
  uint64_t text = n + 0x3030303030303030ull + letters * 39;
  memcpy(d, &text, 8); /* the lanes' byte order is the text's on little-endian hosts */
  return d + 8;
}

/* Quoted lowercase hex of n bytes (ids: 8 or 16). At most 2n + 2 bytes. */
HOT char *w_hex(char *d, const uint8_t *p, size_t n) {
  static const char digits[] = "0123456789abcdef";
  *d++ = '"';
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  for (; n >= 4; n -= 4, p += 4) d = w_hex4(d, p);
#endif
  for (; n; n--, p++) *d++ = digits[*p >> 4], *d++ = digits[*p & 15];
  *d++ = '"';
  return d;
}

/* True when some byte of w is below 0x20, above 0x7e, '"' or '\\': such text needs escaping
 * or UTF-8 checks. Whole-word tests, each exact as a yes/no answer: (x - 0x01..) & ~x & 0x80..
 * finds a zero byte (and with 0x20.. a byte below 0x20); w | (w + 0x01..) has a high bit when a
 * byte is 0x7f or above (w + 0x01.. can only carry out of a byte that has the high bit already). */
HOT bool word_special(uint64_t w) {
  const uint64_t ones = 0x0101010101010101ull, high = 0x8080808080808080ull;
  uint64_t q = w ^ (ones * '"'), b = w ^ (ones * '\\');
  uint64_t ctl = (w - ones * 0x20) & ~w;
  uint64_t top = w | (w + ones);
  uint64_t quote = (q - ones) & ~q;
  uint64_t bslash = (b - ones) & ~b;
  return ((ctl | top | quote | bslash) & high) != 0;
}

/* True when s[0..n) is printable ASCII without '"' and '\\': it goes out as it is. */
HOT bool plain_text(const char *s, size_t n) {
  uint64_t w;
  if (n >= 8) {
    size_t i = 0;
    for (; i + 8 < n; i += 8) {
      memcpy(&w, s + i, 8);
      if (word_special(w)) return false;
    }
    memcpy(&w, s + n - 8, 8); /* the last word, overlapping what was checked */
    return !word_special(w);
  }
  /* shorter texts go into one word without a copy through memory: first and last four
   * bytes (overlapping), or for 1..3 bytes the first, middle and last; the rest is 'a' */
  if (n >= 4) {
    uint32_t a, b;
    memcpy(&a, s, 4);
    memcpy(&b, s + n - 4, 4);
    w = (uint64_t)a | (uint64_t)b << 32;
  } else {
    const uint8_t *u = (const uint8_t *)s;
    w = 0x6161616161616161ull;
    if (n) w = 0x6161616161000000ull | u[0] | (uint64_t)u[n / 2] << 8 | (uint64_t)u[n - 1] << 16;
  }
  return !word_special(w);
}

/* A quoted string the caller knows is plain_text. At most n + 2 bytes. */
HOT char *w_plain(char *d, const char *s, size_t n) {
  *d++ = '"';
  d = w_copy(d, s, n);
  *d++ = '"';
  return d;
}

static inline void put_u64(pf_json *j, uint64_t v) {
  char *d = room(j, 20);
  if (d) commit(j, w_u64(d, v));
}

static inline void put_i64(pf_json *j, int64_t v) {
  char *d = room(j, 21);
  if (!d) return;
  if (v < 0) *d++ = '-';
  commit(j, w_u64(d, v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v));
}

/* Quoted lowercase hex (ids). */
static inline void put_hex(pf_json *j, const uint8_t *p, size_t n) {
  char *d = room(j, 2 * n + 2);
  if (d) commit(j, w_hex(d, p, n));
}

/* A quoted string: plain text is copied as is, anything else escaped and repaired. */
HOT void put_str(pf_json *j, const char *s, size_t n) {
  if (!plain_text(s, n)) {
    pf_json_str(j, s, n);
    return;
  }
  char *d = room(j, n + 2);
  if (d) commit(j, w_plain(d, s, n));
}

static inline void put_cstr(pf_json *j, const char *s) {
  put_str(j, s ? s : "", s ? strlen(s) : 0);
}

/* ---- values ---- */

static void any_json(pf_json *j, const uint8_t *p, size_t n, bool otlp, int depth);

/* The values of an ArrayValue (otlp: each as an AnyValue object). */
static void array_json(pf_json *j, const uint8_t *p, size_t n, bool otlp, int depth) {
  size_t off = 0;
  pf_grpc_pb_field f;
  LIT(j, "[");
  for (bool first = true; pf_grpc_pb_next(p, n, &off, &f) == 1;) {
    if (f.num != 1 || f.wire != PF_PBW_LEN) continue;
    if (!first) LIT(j, ",");
    first = false;
    any_json(j, f.p, f.n, otlp, depth + 1);
  }
  LIT(j, "]");
}

/* A KeyValue's key and value bytes (value NULL when absent). */
static void kv_parts(const uint8_t *p, size_t n, pf_grpc_pb_field *key, pf_grpc_pb_field *val,
                     bool *has_val) {
  size_t off = 0;
  pf_grpc_pb_field f;
  *key = (pf_grpc_pb_field){0};
  *has_val = false;
  while (pf_grpc_pb_next(p, n, &off, &f) == 1) {
    if (f.num == 1 && f.wire == PF_PBW_LEN) *key = f;
    if (f.num == 2 && f.wire == PF_PBW_LEN) *val = f, *has_val = true;
  }
}

/* A KeyValueList: otlp [{"key":..,"value":{..}}], plain {"key": value}. */
static void kvlist_json(pf_json *j, const uint8_t *p, size_t n, bool otlp, int depth) {
  size_t off = 0;
  pf_grpc_pb_field f, k, v = {0};
  bool has_v;
  pf_json_raw(j, otlp ? "[" : "{", 1);
  for (bool first = true; pf_grpc_pb_next(p, n, &off, &f) == 1;) {
    if (f.num != 1 || f.wire != PF_PBW_LEN) continue;
    kv_parts(f.p, f.n, &k, &v, &has_v);
    if (!first) LIT(j, ",");
    first = false;
    pf_json_lit(j, otlp ? "{\"key\":" : "");
    put_str(j, (const char *)k.p, k.n);
    pf_json_lit(j, otlp ? ",\"value\":" : ":");
    if (has_v)
      any_json(j, v.p, v.n, otlp, depth + 1);
    else
      pf_json_lit(j, otlp ? "{}" : "null");
    if (otlp) LIT(j, "}");
  }
  pf_json_raw(j, otlp ? "]" : "}", 1);
}

/* The last value field of an AnyValue message (a oneof: the last one wins), or false. */
static bool any_field(const uint8_t *p, size_t n, pf_grpc_pb_field *out) {
  size_t off = 0;
  pf_grpc_pb_field f;
  bool found = false;
  int rc;
  while ((rc = pf_grpc_pb_next(p, n, &off, &f)) == 1) {
    static const uint8_t wire[8] = {0,          PF_PBW_LEN, PF_PBW_VARINT, PF_PBW_VARINT,
                                    PF_PBW_I64, PF_PBW_LEN, PF_PBW_LEN,    PF_PBW_LEN};
    if (f.num >= 1 && f.num <= 7 && f.wire == wire[f.num]) *out = f, found = true;
  }
  return found && rc == 0;
}

/* An encoded AnyValue (PF_ATTR_ANYVALUE) as OTLP/JSON ({"kvlistValue":..}) or as plain JSON. */
static void any_json(pf_json *j, const uint8_t *p, size_t n, bool otlp, int depth) {
  pf_grpc_pb_field f = {0};
  if (depth > JR_ANY_DEPTH || !any_field(p, n, &f)) {
    pf_json_lit(j, otlp ? "{}" : "null");
    return;
  }
  static const char *const keys[8] = {"",
                                      "{\"stringValue\":",
                                      "{\"boolValue\":",
                                      "{\"intValue\":\"",
                                      "{\"doubleValue\":",
                                      "{\"arrayValue\":{\"values\":",
                                      "{\"kvlistValue\":{\"values\":",
                                      "{\"bytesValue\":"};
  static const char *const ends[8] = {"", "}", "}", "\"}", "}", "}}", "}}", "}"};
  if (otlp) pf_json_lit(j, keys[f.num]);
  double d;
  switch (f.num) {
  case 1:
    put_str(j, (const char *)f.p, f.n);
    break;
  case 2:
    pf_json_bool(j, f.v != 0);
    break;
  case 3:
    put_i64(j, (int64_t)f.v);
    break;
  case 4:
    memcpy(&d, &f.v, 8), pf_json_double(j, d);
    break;
  case 5:
    array_json(j, f.p, f.n, otlp, depth);
    break;
  case 6:
    kvlist_json(j, f.p, f.n, otlp, depth);
    break;
  default:
    pf_json_base64(j, f.p, f.n);
    break;
  }
  if (otlp) pf_json_lit(j, ends[f.num]);
}

/* One scalar of a record attribute as an OTLP/JSON AnyValue. */
static void otlp_scalar(pf_json *j, profilis_attr_type t, const uint8_t *v, size_t n) {
  switch (t) {
  case PROFILIS_ATTR_STRING:
  case PROFILIS_ATTR_STRING_ARRAY:
    LIT(j, "{\"stringValue\":");
    put_str(j, (const char *)v, n);
    break;
  case PROFILIS_ATTR_BOOL:
  case PROFILIS_ATTR_BOOL_ARRAY:
    pf_json_lit(j, v[0] ? "{\"boolValue\":true" : "{\"boolValue\":false");
    break;
  case PROFILIS_ATTR_INT:
  case PROFILIS_ATTR_INT_ARRAY:
    LIT(j, "{\"intValue\":\"");
    put_i64(j, pf_rd_i64(v));
    LIT(j, "\"");
    break;
  default:
    LIT(j, "{\"doubleValue\":");
    pf_json_double(j, pf_rd_f64(v));
  }
  LIT(j, "}");
}

static void otlp_array(pf_json *j, const pf_attr_view *a) {
  LIT(j, "{\"arrayValue\":{\"values\":[");
  if (a->type == PROFILIS_ATTR_STRING_ARRAY) {
    for (size_t off = 0, i = 0; off + 4 <= a->val_len; i++) {
      size_t n = pf_rd_u32(a->val + off);
      if (n > a->val_len - off - 4) break;
      if (i) LIT(j, ",");
      otlp_scalar(j, a->type, a->val + off + 4, n);
      off += 4 + n;
    }
  } else {
    size_t es = a->type == PROFILIS_ATTR_BOOL_ARRAY ? 1 : 8;
    for (size_t off = 0; off + es <= a->val_len; off += es) {
      if (off) LIT(j, ",");
      otlp_scalar(j, a->type, a->val + off, es);
    }
  }
  LIT(j, "]}}");
}

static void otlp_value(pf_json *j, const pf_attr_view *a) {
  switch ((int)a->type) {
  case PROFILIS_ATTR_STRING:
    otlp_scalar(j, a->type, a->val, a->val_len);
    return;
  case PROFILIS_ATTR_BOOL:
  case PROFILIS_ATTR_INT:
  case PROFILIS_ATTR_DOUBLE:
    if (a->val_len >= (a->type == PROFILIS_ATTR_BOOL ? 1u : 8u))
      otlp_scalar(j, a->type, a->val, a->val_len);
    else
      LIT(j, "{}");
    return;
  case PROFILIS_ATTR_STRING_ARRAY:
  case PROFILIS_ATTR_BOOL_ARRAY:
  case PROFILIS_ATTR_INT_ARRAY:
  case PROFILIS_ATTR_DOUBLE_ARRAY:
    otlp_array(j, a);
    return;
  case PF_ATTR_BYTES:
    LIT(j, "{\"bytesValue\":");
    pf_json_base64(j, a->val, a->val_len);
    LIT(j, "}");
    return;
  case PF_ATTR_ANYVALUE:
    any_json(j, a->val, a->val_len, true, 0);
    return;
  }
  LIT(j, "{}");
}

/* An attribute section as OTLP/JSON KeyValues: [{"key":..,"value":{..}}, ...]. */
static void otlp_attrs(pf_json *j, const uint8_t *sec, size_t len) {
  size_t off = 0;
  pf_attr_view a;
  LIT(j, "[");
  for (bool first = true; pf_attr_next(sec, len, &off, &a); first = false) {
    pf_json_lit(j, first ? "{\"key\":" : ",{\"key\":");
    put_str(j, a.key, a.key_len);
    LIT(j, ",\"value\":");
    otlp_value(j, &a);
    LIT(j, "}");
  }
  LIT(j, "]");
}

/* A record attribute's value as plain JSON; the common scalars inline. */
static void plain_value(pf_json *j, const pf_attr_view *a) {
  if (a->type == PROFILIS_ATTR_STRING)
    put_str(j, (const char *)a->val, a->val_len);
  else if (a->type == PROFILIS_ATTR_INT && a->val_len >= 8)
    put_i64(j, pf_rd_i64(a->val));
  else if (a->type == PROFILIS_ATTR_BOOL && a->val_len >= 1)
    put(j, a->val[0] ? "true" : "false", a->val[0] ? 4 : 5);
  else
    pf_json_attr_value(j, a);
}

/* "key":value for the usual attributes (a plain key and a plain string, an int or a bool) in
 * one reservation. Returns false, having written nothing, for any other: plain_attrs then
 * takes the general path. */
static bool plain_attr_fast(pf_json *j, const pf_attr_view *a) {
  size_t vmax;
  if (a->type == PROFILIS_ATTR_STRING && plain_text((const char *)a->val, a->val_len))
    vmax = a->val_len + 2;
  else if (a->type == PROFILIS_ATTR_INT && a->val_len >= 8)
    vmax = 21;
  else if (a->type == PROFILIS_ATTR_BOOL && a->val_len >= 1)
    vmax = 5;
  else
    return false;
  if (!plain_text(a->key, a->key_len)) return false;
  char *d = room(j, a->key_len + 3 + vmax);
  if (!d) return true; /* the error is sticky in j */
  d = w_plain(d, a->key, a->key_len);
  *d++ = ':';
  if (a->type == PROFILIS_ATTR_STRING) {
    d = w_plain(d, (const char *)a->val, a->val_len);
  } else if (a->type == PROFILIS_ATTR_INT) {
    int64_t v = pf_rd_i64(a->val);
    if (v < 0) *d++ = '-';
    d = w_u64(d, v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v);
  } else {
    d = a->val[0] ? W_LIT(d, "true") : W_LIT(d, "false");
  }
  commit(j, d);
  return true;
}

/* An attribute section as a plain object; bytes as base64, nested values as JSON. */
static void plain_attrs(pf_json *j, const uint8_t *sec, size_t len) {
  size_t off = 0;
  pf_attr_view a;
  LIT(j, "{");
  for (bool first = true; pf_attr_next(sec, len, &off, &a); first = false) {
    if (!first) LIT(j, ",");
    if (plain_attr_fast(j, &a)) continue;
    put_str(j, a.key, a.key_len);
    LIT(j, ":");
    if ((int)a.type == PF_ATTR_BYTES)
      pf_json_base64(j, a.val, a.val_len);
    else if ((int)a.type == PF_ATTR_ANYVALUE)
      any_json(j, a.val, a.val_len, false, 0);
    else
      plain_value(j, &a);
  }
  LIT(j, "}");
}

/* ---- span lines ---- */

static void plain_events(pf_json *j, const pf_span_rec *r) {
  size_t off = 0;
  pf_event_view e;
  LIT(j, "[");
  for (bool first = true; pf_event_next(pf_rec_events(r), r->events_len, &off, &e); first = false) {
    pf_json_lit(j, first ? "{\"name\":" : ",{\"name\":");
    put_str(j, e.name, e.h.name_len);
    LIT(j, ",\"time_unix_nano\":");
    put_u64(j, e.h.time_ns);
    LIT(j, ",\"attributes\":");
    plain_attrs(j, e.attrs, e.h.attrs_len);
    LIT(j, ",\"dropped_attributes_count\":");
    put_u64(j, e.h.dropped_attrs);
    LIT(j, "}");
  }
  LIT(j, "]");
}

static void plain_links(pf_json *j, const pf_span_rec *r) {
  size_t off = 0;
  pf_link_view l;
  LIT(j, "[");
  for (bool first = true; pf_link_next(pf_rec_links(r), r->links_len, &off, &l); first = false) {
    pf_json_lit(j, first ? "{\"trace_id\":" : ",{\"trace_id\":");
    put_hex(j, l.h.trace_id, 16);
    LIT(j, ",\"span_id\":");
    put_hex(j, l.h.span_id, 8);
    LIT(j, ",\"trace_state\":");
    put_str(j, l.tracestate, l.h.tracestate_len);
    LIT(j, ",\"flags\":");
    put_u64(j, l.h.flags);
    LIT(j, ",\"attributes\":");
    plain_attrs(j, l.attrs, l.h.attrs_len);
    LIT(j, ",\"dropped_attributes_count\":");
    put_u64(j, l.h.dropped_attrs);
    LIT(j, "}");
  }
  LIT(j, "]");
}

/* The line up to status_message in three runs of keys, ids and numbers, each written into one
 * reservation (their sizes are bounded: ids are 8 or 16 bytes, numbers at most 20 digits),
 * with the three strings between them. */
static void plain_head(pf_json *j, const pf_span_rec *r) {
  char *d = room(j, 160);
  if (!d) return;
  d = W_LIT(d, "{\"trace_id\":");
  d = w_hex(d, r->trace_id, 16);
  d = W_LIT(d, ",\"span_id\":");
  d = w_hex(d, r->span_id, 8);
  d = W_LIT(d, ",\"parent_span_id\":");
  d = r->has_parent ? w_hex(d, r->parent_span_id, 8) : W_LIT(d, "\"\"");
  commit(j, W_LIT(d, ",\"trace_state\":"));
  put_str(j, pf_rec_tracestate(r), r->tracestate_len);
  if (!(d = room(j, 64))) return;
  d = W_LIT(d, ",\"flags\":");
  d = w_u64(d, r->trace_flags);
  commit(j, W_LIT(d, ",\"name\":"));
  put_str(j, pf_rec_name(r), r->name_len);
  if (!(d = room(j, 256))) return;
  d = W_LIT(d, ",\"kind\":");
  d = w_u64(d, r->kind);
  d = W_LIT(d, ",\"start_time_unix_nano\":");
  d = w_u64(d, r->start_ns);
  d = W_LIT(d, ",\"end_time_unix_nano\":");
  d = w_u64(d, r->end_ns);
  d = W_LIT(d, ",\"duration_ns\":");
  d = w_u64(d, r->end_ns > r->start_ns ? r->end_ns - r->start_ns : 0);
  d = W_LIT(d, ",\"status_code\":");
  d = w_u64(d, r->status_code);
  commit(j, W_LIT(d, ",\"status_message\":"));
  put_str(j, pf_rec_status_msg(r), r->status_msg_len);
}

/* Everything after the links that every span of one scope shares: resource, scope, tenant.
 * Rendered once per chunk and scope into s->tail. Returns 0 or PROFILIS_ENOMEM. */
static int plain_tail(pc_json_scratch *s, const pc_chunk *c, const pf_scope *scope) {
  pf_buf_reset(&s->tail);
  pf_json t = pf_json_on(&s->tail);
  LIT(&t, ",\"resource\":");
  plain_attrs(&t, c->resource.attrs.p, c->resource.attrs.len);
  LIT(&t, ",\"scope\":{\"name\":");
  put_cstr(&t, scope ? scope->name : NULL);
  LIT(&t, ",\"version\":");
  put_cstr(&t, scope ? scope->version : NULL);
  LIT(&t, "},\"tenant\":");
  put_str(&t, c->tenant, strnlen(c->tenant, PC_TENANT_MAX));
  LIT(&t, "}\n");
  s->tail_scope = scope;
  return t.err;
}

/* One span as a line, ending with the tail of its scope. */
static void plain_line(pf_json *j, const pf_span_rec *r, const pf_buf *tail) {
  plain_head(j, r);
  LIT(j, ",\"attributes\":");
  plain_attrs(j, pf_rec_attrs(r), r->attrs_len);
  if (!r->dropped_attrs && !r->events_len && !r->dropped_events && !r->links_len &&
      !r->dropped_links) { /* the usual span: what follows is always the same */
    LIT(j, ",\"dropped_attributes_count\":0,\"events\":[],\"dropped_events_count\":0,"
           "\"links\":[],\"dropped_links_count\":0");
  } else {
    LIT(j, ",\"dropped_attributes_count\":");
    put_u64(j, r->dropped_attrs);
    LIT(j, ",\"events\":");
    plain_events(j, r);
    LIT(j, ",\"dropped_events_count\":");
    put_u64(j, r->dropped_events);
    LIT(j, ",\"links\":");
    plain_links(j, r);
    LIT(j, ",\"dropped_links_count\":");
    put_u64(j, r->dropped_links);
  }
  put(j, (const char *)tail->p, tail->len);
}

int pc_json_span_lines(pc_json_scratch *s, const pc_chunk *c, pf_buf *out) {
  pf_json j = pf_json_on(out);
  bool have_tail = false;
  for (uint32_t i = 0; i < c->n_spans && !j.err; i++) {
    const pf_span_rec *r = c->spans[i];
    if (!pf_rec_sections_fit(r)) continue;
    if (!have_tail || r->scope != s->tail_scope) {
      int rc = plain_tail(s, c, r->scope);
      if (rc) return rc;
      have_tail = true;
    }
    plain_line(&j, r, &s->tail);
  }
  return j.err;
}

/* ---- OTLP/JSON ---- */

static void otlp_events(pf_json *j, const pf_span_rec *r) {
  size_t off = 0;
  pf_event_view e;
  LIT(j, "[");
  for (bool first = true; pf_event_next(pf_rec_events(r), r->events_len, &off, &e); first = false) {
    pf_json_lit(j, first ? "{\"timeUnixNano\":\"" : ",{\"timeUnixNano\":\"");
    put_u64(j, e.h.time_ns);
    LIT(j, "\",\"name\":");
    put_str(j, e.name, e.h.name_len);
    LIT(j, ",\"attributes\":");
    otlp_attrs(j, e.attrs, e.h.attrs_len);
    LIT(j, ",\"droppedAttributesCount\":");
    put_u64(j, e.h.dropped_attrs);
    LIT(j, "}");
  }
  LIT(j, "]");
}

static void otlp_links(pf_json *j, const pf_span_rec *r) {
  size_t off = 0;
  pf_link_view l;
  LIT(j, "[");
  for (bool first = true; pf_link_next(pf_rec_links(r), r->links_len, &off, &l); first = false) {
    pf_json_lit(j, first ? "{\"traceId\":" : ",{\"traceId\":");
    put_hex(j, l.h.trace_id, 16);
    LIT(j, ",\"spanId\":");
    put_hex(j, l.h.span_id, 8);
    LIT(j, ",\"traceState\":");
    put_str(j, l.tracestate, l.h.tracestate_len);
    LIT(j, ",\"attributes\":");
    otlp_attrs(j, l.attrs, l.h.attrs_len);
    LIT(j, ",\"droppedAttributesCount\":");
    put_u64(j, l.h.dropped_attrs);
    LIT(j, ",\"flags\":");
    put_u64(j, l.h.flags);
    LIT(j, "}");
  }
  LIT(j, "]");
}

static void otlp_span(pf_json *j, const pf_span_rec *r) {
  LIT(j, "{\"traceId\":");
  put_hex(j, r->trace_id, 16);
  LIT(j, ",\"spanId\":");
  put_hex(j, r->span_id, 8);
  LIT(j, ",\"traceState\":");
  put_str(j, pf_rec_tracestate(r), r->tracestate_len);
  if (r->has_parent) {
    LIT(j, ",\"parentSpanId\":");
    put_hex(j, r->parent_span_id, 8);
  }
  LIT(j, ",\"flags\":");
  put_u64(j, r->trace_flags);
  LIT(j, ",\"name\":");
  put_str(j, pf_rec_name(r), r->name_len);
  LIT(j, ",\"kind\":");
  put_u64(j, r->kind);
  LIT(j, ",\"startTimeUnixNano\":\"");
  put_u64(j, r->start_ns);
  LIT(j, "\",\"endTimeUnixNano\":\"");
  put_u64(j, r->end_ns);
  LIT(j, "\",\"attributes\":");
  otlp_attrs(j, pf_rec_attrs(r), r->attrs_len);
  LIT(j, ",\"droppedAttributesCount\":");
  put_u64(j, r->dropped_attrs);
  LIT(j, ",\"events\":");
  otlp_events(j, r);
  LIT(j, ",\"droppedEventsCount\":");
  put_u64(j, r->dropped_events);
  LIT(j, ",\"links\":");
  otlp_links(j, r);
  LIT(j, ",\"droppedLinksCount\":");
  put_u64(j, r->dropped_links);
  LIT(j, ",\"status\":{\"message\":");
  put_str(j, pf_rec_status_msg(r), r->status_msg_len);
  LIT(j, ",\"code\":");
  put_u64(j, r->status_code);
  LIT(j, "}}");
}

static bool scope_seen(pc_json_scratch *x, const pf_scope *s) {
  for (size_t i = 0; i < x->n_seen; i++)
    if (x->seen[i] == s) return true;
  if (x->n_seen == x->cap_seen) {
    size_t cap = x->cap_seen ? x->cap_seen * 2 : 8;
    const pf_scope **n = realloc(x->seen, cap * sizeof *n);
    if (!n) return false; /* the group is then written again: still valid OTLP */
    x->seen = n, x->cap_seen = cap;
  }
  x->seen[x->n_seen++] = s;
  return false;
}

/* The ScopeSpans of a chunk, one per scope in order of first appearance. */
static void otlp_scope_spans(pc_json_scratch *x, pf_json *j, const pc_chunk *c) {
  x->n_seen = 0;
  bool first_ss = true;
  for (uint32_t i = 0; i < c->n_spans; i++) {
    const pf_scope *s = c->spans[i]->scope;
    if (!pf_rec_sections_fit(c->spans[i]) || scope_seen(x, s)) continue;
    pf_json_lit(j, first_ss ? "{\"scope\":{\"name\":" : ",{\"scope\":{\"name\":");
    first_ss = false;
    put_cstr(j, s ? s->name : NULL);
    LIT(j, ",\"version\":");
    put_cstr(j, s ? s->version : NULL);
    LIT(j, "},\"spans\":[");
    for (uint32_t k = i, n = 0; k < c->n_spans; k++) {
      if (c->spans[k]->scope != s || !pf_rec_sections_fit(c->spans[k])) continue;
      if (n++) LIT(j, ",");
      otlp_span(j, c->spans[k]);
    }
    LIT(j, "]}");
  }
}

int pc_json_otlp_resource_spans(pc_json_scratch *s, const pc_chunk *c, pf_buf *out) {
  pf_json j = pf_json_on(out);
  LIT(&j, "{\"resource\":{\"attributes\":");
  otlp_attrs(&j, c->resource.attrs.p, c->resource.attrs.len);
  LIT(&j, ",\"droppedAttributesCount\":");
  put_u64(&j, c->resource_dropped_attrs);
  LIT(&j, "},\"scopeSpans\":[");
  otlp_scope_spans(s, &j, c);
  return LIT(&j, "]}");
}

bool pc_json_has_spans(const pc_chunk *c) {
  for (uint32_t i = 0; i < c->n_spans; i++)
    if (pf_rec_sections_fit(c->spans[i])) return true;
  return false;
}

void pc_json_scratch_free(pc_json_scratch *s) {
  pf_buf_free(&s->tail);
  free(s->seen);
  memset(s, 0, sizeof *s);
}
