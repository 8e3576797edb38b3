/* OTLP/JSON request decoder (pc_decode.h): the JSON is transcoded, driven by one declarative
 * table per message (lowerCamelCase and snake_case names, field number, kind), into the
 * protobuf encoding of the same request, which then goes through the protobuf decoder: both
 * encodings share every check and limit, and a JSON chunk's raw bytes are forwardable protobuf.
 * Nested lengths get 5-byte placeholders, shrunk to canonical varints as each message closes.
 * Errors name line, column and the JSON path of the offending value. */
#define _GNU_SOURCE /* strtod_l: numbers must not depend on the process locale */
#include <locale.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pf_wire.h"
#include "json_parse.h"
#include "pc_decode.h"
#include "profilis/common.h"

#define JSON_MAX_DEPTH 200 /* deepest valid request: ~140 (32 nested kvlists in an event) */
#define PATH_CAP 128
#define NUM_MAX 128 /* longest number text accepted */
#define LEN_HOLD 5  /* placeholder bytes for a length varint */

enum { WT_VARINT = 0, WT_I64 = 1, WT_LEN = 2, WT_I32 = 5 };

enum kind {
  K_STRING,
  K_HEX,
  K_BYTES,
  K_BOOL,
  K_U32,
  K_I64,
  K_FIXED64,
  K_FIXED32,
  K_DOUBLE,
  K_KIND,
  K_CODE,
  K_MSG,
  K_REP
};

typedef struct msg_def msg_def;

typedef struct field_def {
  const char *camel, *snake; /* snake NULL: same as camel */
  uint8_t camel_len, snake_len;
  uint8_t num, kind;
  bool always; /* a oneof member: written even when it holds the default value */
  const msg_def *sub;
} field_def;

struct msg_def {
  const field_def *f;
  size_t n;
  bool any; /* AnyValue: counts one nesting level */
};

#define DEF(arr, is_any)                                                                           \
  { arr, sizeof(arr) / sizeof((arr)[0]), is_any }
/* A field with one JSON name, or with its lowerCamelCase and its proto (snake_case) name. */
#define F1(name, num, kind, always, sub)                                                           \
  { name, NULL, sizeof(name) - 1, 0, num, kind, always, sub }
#define F2(camel, snake, num, kind, always, sub)                                                   \
  { camel, snake, sizeof(camel) - 1, sizeof(snake) - 1, num, kind, always, sub }

static const msg_def any_def, kv_def;

static const field_def arr_fields[] = {F1("values", 1, K_REP, false, &any_def)};
static const field_def kvl_fields[] = {F1("values", 1, K_REP, false, &kv_def)};
static const msg_def arr_def = DEF(arr_fields, false);
static const msg_def kvl_def = DEF(kvl_fields, false);

static const field_def any_fields[] = {
    F2("stringValue", "string_value", 1, K_STRING, true, NULL),
    F2("boolValue", "bool_value", 2, K_BOOL, true, NULL),
    F2("intValue", "int_value", 3, K_I64, true, NULL),
    F2("doubleValue", "double_value", 4, K_DOUBLE, true, NULL),
    F2("arrayValue", "array_value", 5, K_MSG, true, &arr_def),
    F2("kvlistValue", "kvlist_value", 6, K_MSG, true, &kvl_def),
    F2("bytesValue", "bytes_value", 7, K_BYTES, true, NULL),
};
static const msg_def any_def = DEF(any_fields, true);

static const field_def kv_fields[] = {F1("key", 1, K_STRING, false, NULL),
                                      F1("value", 2, K_MSG, false, &any_def)};
static const msg_def kv_def = DEF(kv_fields, false);

#define ATTRS(num) F1("attributes", num, K_REP, false, &kv_def)
#define DROPPED(camel, snake, num) F2(camel, snake, num, K_U32, false, NULL)

static const field_def status_fields[] = {F1("message", 2, K_STRING, false, NULL),
                                          F1("code", 3, K_CODE, false, NULL)};
static const msg_def status_def = DEF(status_fields, false);

static const field_def event_fields[] = {
    F2("timeUnixNano", "time_unix_nano", 1, K_FIXED64, false, NULL),
    F1("name", 2, K_STRING, false, NULL),
    ATTRS(3),
    DROPPED("droppedAttributesCount", "dropped_attributes_count", 4),
};
static const msg_def event_def = DEF(event_fields, false);

static const field_def link_fields[] = {
    F2("traceId", "trace_id", 1, K_HEX, false, NULL),
    F2("spanId", "span_id", 2, K_HEX, false, NULL),
    F2("traceState", "trace_state", 3, K_STRING, false, NULL),
    ATTRS(4),
    DROPPED("droppedAttributesCount", "dropped_attributes_count", 5),
    F1("flags", 6, K_FIXED32, false, NULL),
};
static const msg_def link_def = DEF(link_fields, false);

static const field_def span_fields[] = {
    F2("traceId", "trace_id", 1, K_HEX, false, NULL),
    F2("spanId", "span_id", 2, K_HEX, false, NULL),
    F2("traceState", "trace_state", 3, K_STRING, false, NULL),
    F2("parentSpanId", "parent_span_id", 4, K_HEX, false, NULL),
    F1("name", 5, K_STRING, false, NULL),
    F1("kind", 6, K_KIND, false, NULL),
    F2("startTimeUnixNano", "start_time_unix_nano", 7, K_FIXED64, false, NULL),
    F2("endTimeUnixNano", "end_time_unix_nano", 8, K_FIXED64, false, NULL),
    ATTRS(9),
    DROPPED("droppedAttributesCount", "dropped_attributes_count", 10),
    F1("events", 11, K_REP, false, &event_def),
    DROPPED("droppedEventsCount", "dropped_events_count", 12),
    F1("links", 13, K_REP, false, &link_def),
    DROPPED("droppedLinksCount", "dropped_links_count", 14),
    F1("status", 15, K_MSG, false, &status_def),
    F1("flags", 16, K_FIXED32, false, NULL),
};
static const msg_def span_def = DEF(span_fields, false);

static const field_def scope_fields[] = {
    F1("name", 1, K_STRING, false, NULL),
    F1("version", 2, K_STRING, false, NULL),
    ATTRS(3),
    DROPPED("droppedAttributesCount", "dropped_attributes_count", 4),
};
static const msg_def scope_def = DEF(scope_fields, false);

static const field_def resource_fields[] = {
    ATTRS(1),
    DROPPED("droppedAttributesCount", "dropped_attributes_count", 2),
};
static const msg_def resource_def = DEF(resource_fields, false);

static const field_def ss_fields[] = {
    F1("scope", 1, K_MSG, false, &scope_def),
    F1("spans", 2, K_REP, false, &span_def),
    F2("schemaUrl", "schema_url", 3, K_STRING, false, NULL),
};
static const msg_def ss_def = DEF(ss_fields, false);

static const field_def rs_fields[] = {
    F1("resource", 1, K_MSG, false, &resource_def),
    F2("scopeSpans", "scope_spans", 2, K_REP, false, &ss_def),
    F2("schemaUrl", "schema_url", 3, K_STRING, false, NULL),
};
static const msg_def rs_def = DEF(rs_fields, false);

static const field_def req_fields[] = {
    F2("resourceSpans", "resource_spans", 1, K_REP, false, &rs_def)};
static const msg_def req_def = DEF(req_fields, false);

static const char *const kind_names[] = {"SPAN_KIND_UNSPECIFIED", "SPAN_KIND_INTERNAL",
                                         "SPAN_KIND_SERVER",      "SPAN_KIND_CLIENT",
                                         "SPAN_KIND_PRODUCER",    "SPAN_KIND_CONSUMER"};
static const char *const code_names[] = {"STATUS_CODE_UNSET", "STATUS_CODE_OK",
                                         "STATUS_CODE_ERROR"};

/* ---- transcoder state ---- */

typedef struct tr {
  pc_json j;
  pf_buf w;
  unsigned any_level;
  bool schema_err; /* the JSON is well-formed but does not fit OTLP */
  size_t value_at; /* where the member value being transcoded starts (schema errors point here) */
  struct {
    const char *name;
    int64_t idx;
  } path[PATH_CAP];
  unsigned depth;
} tr;

static inline void path_push(tr *t, const char *name, int64_t idx) {
  if (t->depth < PATH_CAP) {
    t->path[t->depth].name = name;
    t->path[t->depth].idx = idx;
  }
  t->depth++;
}

static int tr_fail(tr *t, const char *why) {
  if (!t->j.err) {
    t->schema_err = true;
    t->j.err = why;
    t->j.err_pos = t->value_at;
  }
  return PROFILIS_EPROTO;
}

/* Checks the type of the next value: a wrong type is a schema error pointing at the value; no
 * value at all is a syntax error. */
static int want_type(tr *t, pc_json_type want, const char *why) {
  pc_json_type ty = pc_json_peek(&t->j);
  if (ty == want) return 0;
  if (ty == PC_JSON_BAD) return pc_json_fail(&t->j, "expected a value");
  t->value_at = t->j.pos;
  return tr_fail(t, why);
}

/* ---- protobuf writing ---- */

static inline int need(pf_buf *b, size_t n) {
  return n <= b->cap - b->len ? 0 : pf_buf_reserve(b, n);
}

static int w_tag_varint(tr *t, uint32_t num, uint32_t wt, uint64_t v, bool with_value) {
  int rc = need(&t->w, 20);
  if (rc) return rc;
  uint8_t *p = pf_put_varint(t->w.p + t->w.len, (uint64_t)num << 3 | wt);
  if (with_value) p = pf_put_varint(p, v);
  t->w.len = (size_t)(p - t->w.p);
  return 0;
}

static int w_fixed(tr *t, uint32_t num, uint64_t v, unsigned width) {
  int rc = w_tag_varint(t, num, width == 8 ? WT_I64 : WT_I32, 0, false);
  if (!rc) rc = need(&t->w, 8);
  if (rc) return rc;
  for (unsigned i = 0; i < width; i++) t->w.p[t->w.len++] = (uint8_t)(v >> (8 * i));
  return 0;
}

typedef struct mark {
  size_t tag_at, len_at;
} mark;

/* Starts a length-delimited field: tag plus a placeholder for the length. */
static int len_begin(tr *t, uint32_t num, mark *m) {
  m->tag_at = t->w.len;
  int rc = w_tag_varint(t, num, WT_LEN, 0, false);
  if (!rc) rc = need(&t->w, LEN_HOLD);
  if (rc) return rc;
  m->len_at = t->w.len;
  t->w.len += LEN_HOLD;
  return 0;
}

/* Closes it: the body moves down over the unused placeholder bytes. */
static int len_end(tr *t, const mark *m) {
  size_t body = t->w.len - m->len_at - LEN_HOLD;
  if (body > UINT32_MAX) return tr_fail(t, "message too large");
  size_t k = pf_varint_size(body);
  uint8_t *at = t->w.p + m->len_at;
  if (k < LEN_HOLD && body) memmove(at + k, at + LEN_HOLD, body);
  pf_put_varint(at, body);
  t->w.len -= LEN_HOLD - k;
  return 0;
}

/* ---- scalars ---- */

static locale_t c_locale;
static pthread_once_t c_locale_once = PTHREAD_ONCE_INIT;
static void c_locale_init(void) { c_locale = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0); }

static double c_strtod(const char *s) {
  pthread_once(&c_locale_once, c_locale_init);
  return c_locale ? strtod_l(s, NULL, c_locale) : strtod(s, NULL);
}

/* Reads a number given as a JSON number or as a string into buf (NUL-terminated). */
static int num_text(tr *t, char *buf, bool *quoted) {
  pc_json_str s;
  pc_json_type ty = pc_json_peek(&t->j);
  *quoted = ty == PC_JSON_STRING;
  if (ty == PC_JSON_STRING) {
    if (pc_json_string(&t->j, &s)) return PROFILIS_EPROTO;
  } else if (ty == PC_JSON_NUMBER) {
    if (pc_json_number(&t->j, &s)) return PROFILIS_EPROTO;
  } else {
    return want_type(t, PC_JSON_NUMBER, "expected a number");
  }
  if (s.n >= NUM_MAX) return tr_fail(t, "number too long");
  size_t n = pc_json_unescape(&s, (uint8_t *)buf);
  buf[n] = '\0';
  return 0;
}

static bool is_integer_text(const char *s) {
  if (*s == '-') s++;
  if (!*s) return false;
  for (; *s; s++)
    if (*s < '0' || *s > '9') return false;
  return true;
}

/* An integer in [lo, hi] (hi <= INT64_MAX or lo == 0 for unsigned) from a number or string;
 * a fraction or exponent is accepted when the value is integral. */
static int tr_integer(tr *t, bool is_signed, uint64_t hi, uint64_t *out) {
  char buf[NUM_MAX];
  bool quoted;
  if (num_text(t, buf, &quoted)) return PROFILIS_EPROTO;
  if (!pc_json_is_number((const uint8_t *)buf, strlen(buf))) return tr_fail(t, "invalid number");
  bool neg = buf[0] == '-';
  if (is_integer_text(buf)) {
    uint64_t v = 0;
    for (const char *s = buf + neg; *s; s++) {
      uint64_t digit = (uint64_t)(*s - '0');
      if (v > (UINT64_MAX - digit) / 10) return tr_fail(t, "number out of range");
      v = v * 10 + digit;
    }
    uint64_t lim = neg ? (is_signed ? (uint64_t)INT64_MAX + 1 : 0) : hi;
    if (v > lim) return tr_fail(t, "number out of range");
    *out = neg ? (uint64_t)0 - v : v;
    return 0;
  }
  double d = c_strtod(buf);
  if (!isfinite(d) || d != floor(d)) return tr_fail(t, "expected an integer");
  if (d < 0 ? (!is_signed || d < -9223372036854775808.0) : d >= (double)hi + 1.0)
    return tr_fail(t, "number out of range");
  *out = d < 0 ? (uint64_t)(int64_t)d : (uint64_t)d;
  return 0;
}

static int tr_double(tr *t, double *out) {
  char buf[NUM_MAX];
  bool quoted;
  if (num_text(t, buf, &quoted)) return PROFILIS_EPROTO;
  if (quoted && !strcmp(buf, "NaN"))
    *out = NAN;
  else if (quoted && !strcmp(buf, "Infinity"))
    *out = INFINITY;
  else if (quoted && !strcmp(buf, "-Infinity"))
    *out = -INFINITY;
  else if (pc_json_is_number((const uint8_t *)buf, strlen(buf)))
    *out = c_strtod(buf);
  else
    return tr_fail(t, "invalid number");
  return 0;
}

/* An enum as an integer (the OTLP/JSON form) or by its name (proto3 JSON form). */
static int tr_enum(tr *t, const char *const *names, size_t n, uint64_t *out) {
  if (pc_json_peek(&t->j) != PC_JSON_STRING) {
    if (tr_integer(t, true, INT32_MAX, out)) return PROFILIS_EPROTO;
    if ((int64_t)*out < INT32_MIN) return tr_fail(t, "number out of range");
    return 0;
  }
  pc_json_str s;
  if (pc_json_string(&t->j, &s)) return PROFILIS_EPROTO;
  for (size_t i = 0; i < n; i++) {
    if (pc_json_str_eq(&s, names[i])) {
      *out = i;
      return 0;
    }
  }
  return tr_fail(t, "unknown enum value");
}

static int tr_bool(tr *t, bool *out) {
  pc_json_type ty;
  pc_json_type peek = pc_json_peek(&t->j);
  if (peek != PC_JSON_TRUE && peek != PC_JSON_FALSE)
    return want_type(t, PC_JSON_TRUE, "expected true or false");
  if (pc_json_literal(&t->j, &ty)) return PROFILIS_EPROTO;
  *out = ty == PC_JSON_TRUE;
  return 0;
}

static inline int b64_val(uint8_t c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+' || c == '-') return 62; /* standard or URL-safe alphabet */
  if (c == '/' || c == '_') return 63;
  return -1;
}

/* Decodes base64 in place; returns the byte count or -1. Padding is optional. */
static long b64_decode(uint8_t *p, size_t n) {
  if (n && p[n - 1] == '=') n--;
  if (n && p[n - 1] == '=') n--;
  if (n % 4 == 1) return -1;
  size_t o = 0;
  for (size_t i = 0; i < n; i += 4) {
    size_t k = n - i < 4 ? n - i : 4;
    uint32_t v = 0;
    for (size_t q = 0; q < 4; q++) {
      int c = q < k ? b64_val(p[i + q]) : 0;
      if (c < 0) return -1;
      v = v << 6 | (uint32_t)c;
    }
    uint8_t out[3] = {(uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
    memcpy(p + o, out, k - 1); /* k chars carry k-1 bytes; writes stay behind the reads */
    o += k - 1;
  }
  return (long)o;
}

static inline int hex_val(uint8_t c) {
  if (c >= '0' && c <= '9') return c - '0';
  c |= 0x20;
  return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Decodes hex (either case) in place; returns the byte count or -1. */
static long hex_decode(uint8_t *p, size_t n) {
  if (n % 2) return -1;
  for (size_t i = 0; i < n; i += 2) {
    int hi = hex_val(p[i]), lo = hex_val(p[i + 1]);
    if (hi < 0 || lo < 0) return -1;
    p[i / 2] = (uint8_t)(hi << 4 | lo);
  }
  return (long)(n / 2);
}

/* string, hex or base64 field: unescaped straight into the output, decoded there. */
static int tr_text(tr *t, const field_def *f) {
  pc_json_str s;
  if (want_type(t, PC_JSON_STRING, "expected a string") || pc_json_string(&t->j, &s))
    return PROFILIS_EPROTO;
  mark m;
  int rc = len_begin(t, f->num, &m);
  if (!rc) rc = need(&t->w, s.n);
  if (rc) return rc;
  uint8_t *dst = t->w.p + t->w.len;
  long n = (long)pc_json_unescape(&s, dst);
  if (f->kind == K_HEX)
    n = hex_decode(dst, (size_t)n);
  else if (f->kind == K_BYTES)
    n = b64_decode(dst, (size_t)n);
  if (n < 0) return tr_fail(t, f->kind == K_HEX ? "invalid hex string" : "invalid base64 string");
  if (n == 0 && !f->always) { /* proto3: an empty string is the same as no field */
    t->w.len = m.tag_at;
    return 0;
  }
  t->w.len += (size_t)n;
  return len_end(t, &m);
}

/* ---- messages ---- */

static int tr_msg(tr *t, const msg_def *def);

static inline bool key_is(const pc_json_str *key, const char *name, size_t len) {
  if (key->escaped) return pc_json_str_eq(key, name); /* rare: compare the unescaped text */
  return key->n == len && memcmp(key->p, name, len) == 0;
}

static const field_def *find_field(const msg_def *def, const pc_json_str *key) {
  for (size_t i = 0; i < def->n; i++) {
    const field_def *f = &def->f[i];
    if (key_is(key, f->camel, f->camel_len) || (f->snake && key_is(key, f->snake, f->snake_len)))
      return f;
  }
  return NULL;
}

static int tr_sub(tr *t, const field_def *f) {
  mark m;
  int rc = len_begin(t, f->num, &m);
  if (!rc) rc = tr_msg(t, f->sub);
  return rc ? rc : len_end(t, &m);
}

static int tr_repeated(tr *t, const field_def *f) {
  if (want_type(t, PC_JSON_ARRAY, "expected an array") || pc_json_arr_begin(&t->j))
    return PROFILIS_EPROTO;
  size_t i = 0;
  int rc;
  while ((rc = pc_json_arr_next(&t->j, &i)) == 1) {
    if (t->depth - 1 < PATH_CAP) t->path[t->depth - 1].idx = (int64_t)i - 1;
    if (want_type(t, PC_JSON_OBJECT, "expected an object")) return PROFILIS_EPROTO;
    t->value_at = t->j.pos;
    if ((rc = tr_sub(t, f))) return rc;
  }
  return rc;
}

static int tr_number_field(tr *t, const field_def *f) {
  uint64_t v = 0;
  double d = 0;
  bool b = false;
  int rc;
  switch (f->kind) {
  case K_BOOL:
    if ((rc = tr_bool(t, &b))) return rc;
    return b || f->always ? w_tag_varint(t, f->num, WT_VARINT, b, true) : 0;
  case K_DOUBLE:
    if ((rc = tr_double(t, &d))) return rc;
    memcpy(&v, &d, 8);
    return w_fixed(t, f->num, v, 8);
  case K_KIND:
  case K_CODE:
    rc = f->kind == K_KIND ? tr_enum(t, kind_names, 6, &v) : tr_enum(t, code_names, 3, &v);
    break;
  case K_I64:
    rc = tr_integer(t, true, INT64_MAX, &v);
    break;
  case K_FIXED64:
    rc = tr_integer(t, false, UINT64_MAX, &v);
    break;
  default: /* K_U32, K_FIXED32 */
    rc = tr_integer(t, false, UINT32_MAX, &v);
  }
  if (rc) return rc;
  if (!v && !f->always) return 0;
  if (f->kind == K_FIXED64) return w_fixed(t, f->num, v, 8);
  if (f->kind == K_FIXED32) return w_fixed(t, f->num, v, 4);
  return w_tag_varint(t, f->num, WT_VARINT, v, true);
}

static int tr_field(tr *t, const field_def *f) {
  switch (f->kind) {
  case K_MSG:
    return want_type(t, PC_JSON_OBJECT, "expected an object") ? PROFILIS_EPROTO : tr_sub(t, f);
  case K_REP:
    return tr_repeated(t, f);
  case K_STRING:
  case K_HEX:
  case K_BYTES:
    return tr_text(t, f);
  default:
    return tr_number_field(t, f);
  }
}

static int tr_msg(tr *t, const msg_def *def) {
  if (def->any && ++t->any_level > PC_DECODE_MAX_DEPTH)
    return tr_fail(t, "AnyValue nested deeper than 32 levels");
  if (pc_json_obj_begin(&t->j)) return PROFILIS_EPROTO;
  size_t i = 0;
  pc_json_str key;
  pc_json_type lit;
  int rc;
  while ((rc = pc_json_obj_next(&t->j, &i, &key)) == 1) {
    const field_def *f = find_field(def, &key);
    if (!f) { /* unknown fields are ignored, as OTLP/JSON requires */
      if (pc_json_skip(&t->j)) return PROFILIS_EPROTO;
      continue;
    }
    if (pc_json_peek(&t->j) == PC_JSON_NULL) { /* null: the field is absent */
      if (pc_json_literal(&t->j, &lit)) return PROFILIS_EPROTO;
      continue;
    }
    path_push(t, f->camel, -1);
    t->value_at = t->j.pos; /* peek skipped the blanks: this is the value's first byte */
    if ((rc = tr_field(t, f))) return rc; /* the path stays as it is for the message */
    t->depth--;
  }
  if (def->any) t->any_level--;
  return rc;
}

/* ---- entry point ---- */

/* "line L, column C: path: why"; a path too long for the message loses its middle. */
static void json_message(const tr *t, char *m, size_t cap) {
  size_t line, col, k = 0;
  pc_json_where(&t->j, t->j.err_pos, &line, &col);
  if (!t->schema_err) {
    snprintf(m, cap, "invalid JSON at line %zu, column %zu: %s", line, col, t->j.err);
    return;
  }
  char path[4096];
  unsigned shown = t->depth < PATH_CAP ? t->depth : PATH_CAP;
  path[0] = '\0';
  for (unsigned i = 0; i < shown && k < sizeof path; i++) {
    int w = t->path[i].idx >= 0
                ? snprintf(path + k, sizeof path - k, "%s%s[%lld]", i ? "." : "", t->path[i].name,
                           (long long)t->path[i].idx)
                : snprintf(path + k, sizeof path - k, "%s%s", i ? "." : "", t->path[i].name);
    k += w > 0 ? (size_t)w : 0;
  }
  if (k >= sizeof path) k = sizeof path - 1;
  char head[64];
  int hn = snprintf(head, sizeof head, "line %zu, column %zu: ", line, col);
  size_t fixed = (size_t)(hn > 0 ? hn : 0) + strlen(t->j.err) + 2;
  if (fixed + k < cap) {
    snprintf(m, cap, "%s%.*s%s%s", head, (int)k, path, k ? ": " : "", t->j.err);
  } else {
    size_t keep = cap > fixed + 4 ? cap - fixed - 4 : 0, h = keep / 3, tl = keep - h;
    snprintf(m, cap, "%s%.*s...%s: %s", head, (int)h, path, path + k - tl, t->j.err);
  }
}

int pc_decode_otlp_json(const uint8_t *buf, size_t len, const pc_decode_opts *opts,
                        pc_decode_result *out) {
  if (!out) return PROFILIS_EINVAL;
  memset(out, 0, sizeof *out);
  if (!buf && len) return PROFILIS_EINVAL;
  tr *t = calloc(1, sizeof *t);
  if (!t) {
    snprintf(out->message, sizeof out->message, "out of memory");
    return PROFILIS_ENOMEM;
  }
  pc_json_init(&t->j, buf ? buf : (const uint8_t *)"", len, JSON_MAX_DEPTH);
  int rc = want_type(t, PC_JSON_OBJECT, "expected an object");
  if (!rc) rc = tr_msg(t, &req_def);
  if (!rc) rc = pc_json_end(&t->j);
  if (rc == PROFILIS_EPROTO)
    json_message(t, out->message, sizeof out->message);
  else if (rc == PROFILIS_ENOMEM)
    snprintf(out->message, sizeof out->message, "out of memory");
  else
    rc = pc_decode_otlp_proto(t->w.p ? t->w.p : (const uint8_t *)"", t->w.len, opts, out);
  pf_buf_free(&t->w);
  free(t);
  return rc;
}
