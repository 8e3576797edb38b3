/* OTLP protobuf request decoder (pc_decode.h): a hand-written wire scanner, zero-copy, every
 * length checked against its parent. A counting pass sizes every array and refuses max_spans
 * early; then each ResourceSpans becomes a chunk. A span is scanned once for its scalars and
 * the first offset of each repeated field, then its record is written section by section in
 * pf_record.h order, each repeated field re-walked from its first offset. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pf_wire.h"
#include "pc_decode.h"
#include "pf_time.h"
#include "pf_utf8.h"
#include "profilis/common.h"

/* Policies (a chunk whose records differ from its wire bytes is marked `modified`, so its raw
 * bytes are neither kept nor forwarded):
 * - invalid ids (trace_id not 16 non-zero bytes, span_id not 8 non-zero bytes, parent_span_id
 *   neither empty nor 8 bytes): the span is rejected and counted; an all-zero parent is a root;
 * - over the record's fields: name, status message and tracestates are clipped to 65535 bytes
 *   at a character boundary; attributes, events and links beyond 65535 are dropped and added
 *   to the dropped counts; an attribute whose key exceeds 65535 bytes is dropped (counted); a
 *   link whose ids have the wrong size is dropped (counted in dropped_links); kind and status
 *   code above 255 become 0; a record above 2 GiB is rejected ("span too large");
 * - ill-formed UTF-8 in any string, raw AnyValues included, is repaired with U+FFFD;
 * - kept as they are, with no `modified`: unknown fields and scope attributes (in raw only),
 *   span flags above the low 8 bits (raw only), known fields with an unexpected wire type
 *   (skipped like unknown ones), and for a field sent twice the last value (status merges);
 * - a resource left without spans yields no chunk (OTLP lets receivers drop empty envelopes). */
enum { WT_VARINT = 0, WT_I64 = 1, WT_LEN = 2, WT_I32 = 5 };

/* Wire-level failures; rd_next returns them negated (far from the PROFILIS_E* range so the two
 * are never confused) and wire_why[] has their text. */
#define W_BASE 100
enum {
  W_TRUNC_VARINT = W_BASE,
  W_LONG_VARINT,
  W_TRUNC_LEN,
  W_TRUNC_FIXED,
  W_GROUP,
  W_BAD_WT,
  W_FIELD
};
static const char *const wire_why[] = {
    "truncated varint",
    "varint longer than 10 bytes",
    "truncated length-delimited field",
    "truncated fixed-width field",
    "groups are not supported",
    "invalid wire type",
    "invalid field number",
};

#define PATH_CAP 128 /* path entries kept for error messages */
/* Initial record bytes reserved per span beyond the wire size: typical spans need ~45 (the
 * header is larger than the ids and times it replaces), so the guess rarely has to grow. */
#define REC_SLACK 64
#define SPAN_MAX_SIZE (UINT32_MAX / 2) /* the SDK's bound for one record, kept here too */

typedef struct slice {
  const uint8_t *p;
  size_t n;
} slice;

/* One wire field: number, wire type, scalar value or body, and where its tag starts. */
typedef struct wf {
  uint32_t num, wt;
  uint64_t v;
  const uint8_t *p;
  size_t n;
  const uint8_t *start;
} wf;

typedef struct rd {
  const uint8_t *p, *end;
} rd;

typedef struct pe {
  const char *name;
  int64_t idx; /* < 0: not an element of a repeated field */
} pe;

typedef struct counts {
  uint64_t rs, scopes, spans;
} counts;

typedef struct dec {
  const pc_decode_opts *opts;
  pc_decode_result *out;
  pc_chunk *c;  /* the chunk being built */
  size_t *offs; /* record offsets of c's spans (pointers are set once records stop moving) */
  size_t offs_cap;
  counts *per_rs; /* the counting pass's scopes and spans of each ResourceSpans */
  size_t per_rs_cap;
  pf_buf scratch; /* scope attributes are decoded here and thrown away */
  const char *reject_why;
  pe path[PATH_CAP];
  unsigned depth;
} dec;

/* ---- wire reading ---- */

/* An absent field is the slice {NULL, 0}: no arithmetic on its NULL. */
static inline rd rd_of(const uint8_t *p, size_t n) { return (rd){p, n ? p + n : p}; }

static inline uint64_t le_load(const uint8_t *p, unsigned n) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  if (n == 8) {
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
  }
  uint32_t w;
  memcpy(&w, p, 4);
  return w;
#else
  uint64_t v = 0;
  for (unsigned i = 0; i < n; i++) v |= (uint64_t)p[i] << (8 * i);
  return v;
#endif
}

static int varint_slow(rd *r, uint64_t *v) {
  uint64_t x = 0;
  const uint8_t *p = r->p;
  for (unsigned shift = 0; shift < 70; shift += 7) {
    if (p >= r->end) return -W_TRUNC_VARINT;
    uint8_t b = *p++;
    if (shift < 64) x |= (uint64_t)(b & 0x7f) << shift;
    if (b < 0x80) {
      *v = x;
      r->p = p;
      return 0;
    }
  }
  return -W_LONG_VARINT;
}

/* One- and two-byte varints (tags up to field 2047, lengths below 16 KiB) without a loop. */
static inline __attribute__((always_inline)) int rd_short(rd *r, uint64_t *v) {
  const uint8_t *p = r->p;
  if (p < r->end && p[0] < 0x80) {
    *v = p[0];
    r->p = p + 1;
    return 0;
  }
  if (r->end - p >= 2 && p[1] < 0x80) {
    *v = (uint64_t)(p[0] & 0x7f) | (uint64_t)p[1] << 7;
    r->p = p + 2;
    return 0;
  }
  return varint_slow(r, v);
}

/* Reads the next field. Returns 1 with *f filled, 0 at the end, or -W_* (f->num is set once
 * the tag was read, so errors can name the field). Tags and lengths below 128 (nearly all of
 * them in OTLP) take the one-byte path. Inlined everywhere: it is the decoder's inner loop. */
static inline __attribute__((always_inline)) int rd_next(rd *r, wf *f) {
  const uint8_t *p = r->p, *end = r->end;
  uint64_t tag, n;
  int rc;
  f->num = 0;
  if (p >= end) return 0;
  f->start = p;
  if ((rc = rd_short(r, &tag)) < 0) return rc; /* 0 or -W_* */
  if (tag > UINT32_MAX || tag < 8) return -W_FIELD;
  f->num = (uint32_t)(tag >> 3);
  f->wt = (uint32_t)(tag & 7);
  p = r->p;
  if (f->wt == WT_LEN) { /* tested first: most fields are strings and messages */
    if ((rc = rd_short(r, &n)) < 0) return rc;
    p = r->p;
    if (n > (uint64_t)(end - p)) return -W_TRUNC_LEN;
    f->p = p;
    f->n = (size_t)n;
    f->v = 0; /* every member defined on every path keeps compilers' flow analysis quiet */
    r->p = p + n;
    return 1;
  }
  f->p = NULL;
  f->n = 0;
  if (f->wt == WT_VARINT) {
    rc = rd_short(r, &f->v);
    return rc ? rc : 1;
  }
  if (f->wt == WT_I64 || f->wt == WT_I32) {
    unsigned w = f->wt == WT_I64 ? 8 : 4;
    if ((size_t)(end - p) < w) return -W_TRUNC_FIXED;
    f->v = le_load(p, w);
    r->p = p + w;
    return 1;
  }
  return f->wt == 3 || f->wt == 4 ? -W_GROUP : -W_BAD_WT;
}

static inline bool is_len(const wf *f, uint32_t num) { return f->num == num && f->wt == WT_LEN; }

/* ---- error paths ---- */

static inline void path_push(dec *d, const char *name, int64_t idx) {
  if (d->depth < PATH_CAP) d->path[d->depth] = (pe){name, idx};
  d->depth++;
}

static inline void path_pop(dec *d) { d->depth--; }

/* Field names per message, indexed by field number, for error messages. */
typedef struct names {
  const char *const *v;
  uint32_t n;
} names;
#define NAMES(...)                                                                                 \
  ((names){(const char *const[]){__VA_ARGS__},                                                     \
           sizeof((const char *const[]){__VA_ARGS__}) / sizeof(const char *)})
#define N_REQ NAMES(NULL, "resource_spans")
#define N_RS NAMES(NULL, "resource", "scope_spans", "schema_url")
#define N_RES NAMES(NULL, "attributes", "dropped_attributes_count")
#define N_SS NAMES(NULL, "scope", "spans", "schema_url")
#define N_SCOPE NAMES(NULL, "name", "version", "attributes", "dropped_attributes_count")
#define N_SPAN                                                                                     \
  NAMES(NULL, "trace_id", "span_id", "trace_state", "parent_span_id", "name", "kind",              \
        "start_time_unix_nano", "end_time_unix_nano", "attributes", "dropped_attributes_count",    \
        "events", "dropped_events_count", "links", "dropped_links_count", "status", "flags")
#define N_STATUS NAMES(NULL, NULL, "message", "code")
#define N_EVENT NAMES(NULL, "time_unix_nano", "name", "attributes", "dropped_attributes_count")
#define N_LINK                                                                                     \
  NAMES(NULL, "trace_id", "span_id", "trace_state", "attributes", "dropped_attributes_count",      \
        "flags")
#define N_KV NAMES(NULL, "key", "value")
#define N_ANY                                                                                      \
  NAMES(NULL, "string_value", "bool_value", "int_value", "double_value", "array_value",            \
        "kvlist_value", "bytes_value")
#define N_LIST NAMES(NULL, "values")

/* Writes "path[.field]: why" into the result message; a path too long for it keeps its head
 * and tail around "...", so the reason is never cut off. Returns PROFILIS_EPROTO. */
static int fail_at(dec *d, const char *field, const char *why) {
  char path[4096];
  size_t cap = sizeof path, k = 0;
  unsigned shown = d->depth < PATH_CAP ? d->depth : PATH_CAP;
  for (unsigned i = 0; i < shown && k < cap; i++) {
    const pe *e = &d->path[i];
    int w = e->idx >= 0 ? snprintf(path + k, cap - k, "%s%s[%lld]", i ? "." : "", e->name,
                                   (long long)e->idx)
                        : snprintf(path + k, cap - k, "%s%s", i ? "." : "", e->name);
    k += w > 0 ? (size_t)w : 0;
  }
  if (k < cap && d->depth > shown) k += (size_t)snprintf(path + k, cap - k, "...");
  if (k < cap && field) k += (size_t)snprintf(path + k, cap - k, "%s%s", k ? "." : "", field);
  if (k >= cap) k = cap - 1;
  char *m = d->out->message;
  size_t mcap = sizeof d->out->message, wl = strlen(why);
  if (k + 2 + wl < mcap) {
    snprintf(m, mcap, "%.*s%s%s", (int)k, path, k ? ": " : "", why);
  } else {
    size_t keep = mcap > wl + 6 ? mcap - wl - 6 : 0, head = keep / 3, tail = keep - head;
    snprintf(m, mcap, "%.*s...%s: %s", (int)head, path, path + k - tail, why);
  }
  return PROFILIS_EPROTO;
}

static int fail(dec *d, const char *why) { return fail_at(d, NULL, why); }

static int wire_fail(dec *d, int rc, names nm, const wf *f) {
  const char *field = f->num && f->num < nm.n ? nm.v[f->num] : NULL;
  return fail_at(d, field, wire_why[-rc - W_BASE]);
}

/* ---- record writing ---- */

static inline int need(pf_buf *b, size_t n) {
  return n <= b->cap - b->len ? 0 : pf_buf_reserve(b, n);
}

static inline void sat_add(uint32_t *v, uint64_t k) {
  *v = (uint64_t)*v + k > UINT32_MAX ? UINT32_MAX : (uint32_t)(*v + k);
}

/* Plain ASCII (hence well-formed UTF-8), eight bytes at a time: the common case, no call. */
static inline bool is_ascii(const uint8_t *s, size_t n) {
  uint64_t acc = 0, w;
  if (n >= 8) { /* whole words, then the last eight bytes (overlapping) for the tail */
    for (size_t i = 0; i + 8 < n; i += 8) {
      memcpy(&w, s + i, 8);
      acc |= w;
    }
    memcpy(&w, s + n - 8, 8);
    acc |= w;
  } else if (n >= 4) {
    uint32_t a, b;
    memcpy(&a, s, 4);
    memcpy(&b, s + n - 4, 4);
    acc = a | b;
  } else {
    for (size_t i = 0; i < n; i++) acc |= s[i];
  }
  return !(acc & 0x8080808080808080ull);
}

static inline size_t fixed_len(const uint8_t *s, size_t n) {
  return is_ascii(s, n) ? n : pf_utf8_fixed_len(s, n);
}

static inline bool utf8_ok(const uint8_t *s, size_t n) { return fixed_len(s, n) == n; }

static int put_text_slow(dec *d, pf_buf *b, slice s, size_t max, size_t *len) {
  size_t fixed = pf_utf8_fixed_len(s.p, s.n);
  int rc = need(b, fixed);
  if (rc) return rc;
  uint8_t *dst = b->p + b->len;
  if (fixed == s.n) {
    pf_copy_small(dst, s.p, s.n);
  } else {
    pf_utf8_fix(dst, s.p, s.n);
    d->c->modified = true;
  }
  *len = fixed;
  if (fixed > max) {
    *len = pf_utf8_clip(dst, max);
    d->c->modified = true;
  }
  b->len += *len;
  return 0;
}

/* Appends s as well-formed UTF-8 (ill-formed parts become U+FFFD), at most max bytes cut at a
 * character boundary; either change marks the chunk modified. *len gets the bytes written. */
static inline __attribute__((always_inline)) int put_text(dec *d, pf_buf *b, slice s, size_t max,
                                                          size_t *len) {
  *len = 0;
  if (!s.n) return 0;
  if (s.n <= max && is_ascii(s.p, s.n)) {
    int rc = need(b, s.n);
    if (rc) return rc;
    pf_copy_small(b->p + b->len, s.p, s.n);
    b->len += s.n;
    *len = s.n;
    return 0;
  }
  return put_text_slow(d, b, s, max, len);
}

/* ---- AnyValue ---- */

enum { AV_NONE = 0, AV_STRING, AV_BOOL, AV_INT, AV_DOUBLE, AV_ARRAY, AV_KVLIST, AV_BYTES };

typedef struct av {
  int kind;
  uint64_t v;
  slice s; /* string, bytes, array or kvlist body */
} av;

/* The value an AnyValue holds: the last member of its oneof on the wire wins. Returns 0 or a
 * negative -W_* code (f names the field). */
static int av_scan(const uint8_t *p, size_t n, av *a, wf *f) {
  if (n >= 2 && p[1] < 0x80 && (size_t)p[1] + 2 == n && p[0] == 0x0a) { /* a short string */
    *a = (av){AV_STRING, 0, {p + 2, p[1]}};
    return 0;
  }
  if (n == 2 && p[1] < 0x80 && (p[0] == 0x18 || p[0] == 0x10)) { /* a small int or a bool */
    *a = (av){p[0] == 0x18 ? AV_INT : AV_BOOL, p[0] == 0x18 ? p[1] : p[1] != 0, {0}};
    return 0;
  }
  rd r = rd_of(p, n);
  int rc;
  a->kind = AV_NONE;
  while ((rc = rd_next(&r, f)) > 0) {
    bool len = f->wt == WT_LEN;
    if (f->num == 1 && len)
      *a = (av){AV_STRING, 0, {f->p, f->n}};
    else if (f->num == 2 && f->wt == WT_VARINT)
      *a = (av){AV_BOOL, f->v != 0, {0}};
    else if (f->num == 3 && f->wt == WT_VARINT)
      *a = (av){AV_INT, f->v, {0}};
    else if (f->num == 4 && f->wt == WT_I64)
      *a = (av){AV_DOUBLE, f->v, {0}};
    else if (f->num == 5 && len)
      *a = (av){AV_ARRAY, 0, {f->p, f->n}};
    else if (f->num == 6 && len)
      *a = (av){AV_KVLIST, 0, {f->p, f->n}};
    else if (f->num == 7 && len)
      *a = (av){AV_BYTES, 0, {f->p, f->n}};
  }
  return rc;
}

static int any_validate(dec *d, const uint8_t *p, size_t n, unsigned level, bool *fix);

/* Checks a KeyValue inside a kvlist: its key's UTF-8 and its value one level deeper. */
static int kv_validate(dec *d, slice s, unsigned level, bool *fix) {
  rd r = rd_of(s.p, s.n);
  wf f;
  int rc;
  while ((rc = rd_next(&r, &f)) > 0) {
    if (is_len(&f, 1) && !utf8_ok(f.p, f.n)) *fix = true;
    if (!is_len(&f, 2)) continue;
    path_push(d, "value", -1);
    rc = any_validate(d, f.p, f.n, level + 1, fix);
    path_pop(d);
    if (rc) return rc;
  }
  return rc < 0 ? wire_fail(d, rc, N_KV, &f) : 0;
}

/* Checks the repeated field 1 of an ArrayValue (AnyValues) or a KeyValueList (KeyValues). */
static int list_validate(dec *d, slice s, bool kv, unsigned level, bool *fix) {
  rd r = rd_of(s.p, s.n);
  wf f;
  int rc;
  int64_t i = 0;
  while ((rc = rd_next(&r, &f)) > 0) {
    if (!is_len(&f, 1)) continue;
    path_push(d, "values", i++);
    rc = kv ? kv_validate(d, (slice){f.p, f.n}, level, fix)
            : any_validate(d, f.p, f.n, level + 1, fix);
    path_pop(d);
    if (rc) return rc;
  }
  return rc < 0 ? wire_fail(d, rc, N_LIST, &f) : 0;
}

/* Walks an AnyValue kept as raw bytes: wire structure, nesting depth, and whether some string
 * needs UTF-8 repair (*fix). Level 1 is an attribute's own value. */
static int any_validate(dec *d, const uint8_t *p, size_t n, unsigned level, bool *fix) {
  if (level > PC_DECODE_MAX_DEPTH) return fail(d, "AnyValue nested deeper than 32 levels");
  rd r = rd_of(p, n);
  wf f;
  int rc;
  while ((rc = rd_next(&r, &f)) > 0) {
    if (f.wt != WT_LEN) continue;
    if (f.num == 1 && !utf8_ok(f.p, f.n)) *fix = true;
    if (f.num != 5 && f.num != 6) continue;
    path_push(d, f.num == 5 ? "array_value" : "kvlist_value", -1);
    rc = list_validate(d, (slice){f.p, f.n}, f.num == 6, level, fix);
    path_pop(d);
    if (rc) return rc;
  }
  return rc < 0 ? wire_fail(d, rc, N_ANY, &f) : 0;
}

/* UTF-8 repair of a validated raw AnyValue: the same message with every string field fixed
 * and the lengths around them recomputed. Unknown fields are copied as they are. */
enum { M_ANY, M_ARRAY, M_KVLIST, M_KV, M_STR, M_COPY };

static int fix_child(int m, const wf *f) {
  if (f->wt != WT_LEN) return M_COPY;
  switch (m) {
  case M_ANY:
    return f->num == 1 ? M_STR : f->num == 5 ? M_ARRAY : f->num == 6 ? M_KVLIST : M_COPY;
  case M_ARRAY:
    return f->num == 1 ? M_ANY : M_COPY;
  case M_KVLIST:
    return f->num == 1 ? M_KV : M_COPY;
  default:
    return f->num == 1 ? M_STR : f->num == 2 ? M_ANY : M_COPY;
  }
}

static size_t fix_size(int m, const uint8_t *p, size_t n) {
  rd r = rd_of(p, n);
  wf f = {0};
  size_t total = 0;
  while (rd_next(&r, &f) > 0) {
    int k = fix_child(m, &f);
    if (k == M_COPY) {
      total += (size_t)(r.p - f.start);
      continue;
    }
    size_t body = k == M_STR ? pf_utf8_fixed_len(f.p, f.n) : fix_size(k, f.p, f.n);
    total += pf_varint_size((uint64_t)f.num << 3 | WT_LEN) + pf_varint_size(body) + body;
  }
  return total;
}

static uint8_t *fix_write(int m, const uint8_t *p, size_t n, uint8_t *dst) {
  rd r = rd_of(p, n);
  wf f = {0};
  while (rd_next(&r, &f) > 0) {
    int k = fix_child(m, &f);
    if (k == M_COPY) {
      memcpy(dst, f.start, (size_t)(r.p - f.start));
      dst += r.p - f.start;
      continue;
    }
    size_t body = k == M_STR ? pf_utf8_fixed_len(f.p, f.n) : fix_size(k, f.p, f.n);
    dst = pf_put_varint(dst, (uint64_t)f.num << 3 | WT_LEN);
    dst = pf_put_varint(dst, body);
    if (k == M_STR)
      pf_utf8_fix(dst, f.p, f.n);
    else
      fix_write(k, f.p, f.n, dst);
    dst += body;
  }
  return dst;
}

/* Appends an AnyValue as PF_ATTR_ANYVALUE: validated, repaired when needed, else verbatim. */
static int put_raw_any(dec *d, pf_buf *b, slice s) {
  bool fix = false;
  int rc = any_validate(d, s.p, s.n, 1, &fix);
  if (rc) return rc;
  size_t n = fix ? fix_size(M_ANY, s.p, s.n) : s.n;
  if ((rc = need(b, n))) return rc;
  if (fix) {
    fix_write(M_ANY, s.p, s.n, b->p + b->len);
    d->c->modified = true;
  } else if (n) {
    memcpy(b->p + b->len, s.p, n);
  }
  b->len += n;
  return 0;
}

/* Classifies an ArrayValue: the common scalar kind of its elements (AV_STRING..AV_DOUBLE), or
 * AV_NONE when it must stay raw (mixed, nested, empty elements, unknown fields, bad wire).
 * *bytes gets the size of the typed value. An empty array is a STRING_ARRAY. */
static int array_kind(slice s, size_t *bytes) {
  rd r = rd_of(s.p, s.n);
  wf f, g;
  int kind = AV_STRING, rc;
  bool first = true;
  *bytes = 0;
  while ((rc = rd_next(&r, &f)) > 0) {
    av e;
    if (!is_len(&f, 1) || av_scan(f.p, f.n, &e, &g) < 0) return AV_NONE;
    if (e.kind < AV_STRING || e.kind > AV_DOUBLE || (!first && e.kind != kind)) return AV_NONE;
    kind = e.kind;
    first = false;
    *bytes += e.kind == AV_STRING ? 4 + fixed_len(e.s.p, e.s.n) : e.kind == AV_BOOL ? 1 : 8;
  }
  return rc < 0 ? AV_NONE : kind;
}

/* Writes a homogeneous ArrayValue in the record's typed-array layout. */
static void array_write(dec *d, slice s, int kind, uint8_t *dst) {
  rd r = rd_of(s.p, s.n);
  wf f = {0}, g;
  while (rd_next(&r, &f) > 0) {
    av e;
    av_scan(f.p, f.n, &e, &g);
    if (kind == AV_BOOL) {
      *dst++ = e.v ? 1 : 0;
    } else if (kind != AV_STRING) {
      memcpy(dst, &e.v, 8); /* int64 bits, or the double's bits already in host order */
      dst += 8;
    } else {
      uint32_t n = (uint32_t)fixed_len(e.s.p, e.s.n);
      memcpy(dst, &n, 4);
      if (n != e.s.n) {
        pf_utf8_fix(dst + 4, e.s.p, e.s.n);
        d->c->modified = true;
      } else if (n) {
        memcpy(dst + 4, e.s.p, n);
      }
      dst += 4 + n;
    }
  }
}

static const uint8_t array_type[] = {[AV_STRING] = PROFILIS_ATTR_STRING_ARRAY,
                                     [AV_BOOL] = PROFILIS_ATTR_BOOL_ARRAY,
                                     [AV_INT] = PROFILIS_ATTR_INT_ARRAY,
                                     [AV_DOUBLE] = PROFILIS_ATTR_DOUBLE_ARRAY};

/* Appends the value part of an attribute entry; *type gets its attribute type. The error path
 * gets its "value" entry only where an error can happen, keeping it off the common path. */
static int put_value(dec *d, pf_buf *b, slice v, uint8_t *type) {
  av a;
  wf f;
  int rc = av_scan(v.p, v.n, &a, &f);
  if (rc < 0) {
    path_push(d, "value", -1);
    rc = wire_fail(d, rc, N_ANY, &f);
    path_pop(d);
    return rc;
  }
  size_t len, bytes;
  switch (a.kind) {
  case AV_STRING:
    *type = PROFILIS_ATTR_STRING;
    return put_text(d, b, a.s, SIZE_MAX, &len);
  case AV_BOOL:
  case AV_INT:
  case AV_DOUBLE:
    *type = a.kind == AV_BOOL  ? PROFILIS_ATTR_BOOL
            : a.kind == AV_INT ? PROFILIS_ATTR_INT
                               : PROFILIS_ATTR_DOUBLE;
    len = a.kind == AV_BOOL ? 1 : 8;
    if ((rc = need(b, len))) return rc;
    if (a.kind == AV_BOOL)
      b->p[b->len] = (uint8_t)a.v;
    else
      memcpy(b->p + b->len, &a.v, 8);
    b->len += len;
    return 0;
  case AV_BYTES:
    *type = PF_ATTR_BYTES;
    return pf_buf_append(b, a.s.p, a.s.n);
  case AV_ARRAY: {
    int kind = array_kind(a.s, &bytes);
    if (kind == AV_NONE) break;
    if ((rc = need(b, bytes))) return rc;
    array_write(d, a.s, kind, b->p + b->len);
    b->len += bytes;
    *type = array_type[kind];
    return 0;
  }
  default:
    break;
  }
  *type = PF_ATTR_ANYVALUE;
  path_push(d, "value", -1);
  rc = put_raw_any(d, b, v);
  path_pop(d);
  return rc;
}

/* ---- attributes ---- */

/* Splits a KeyValue into key and value. The usual layout (key then value, short lengths) is
 * recognised directly; anything else goes through the generic field loop. */
static inline int kv_split(dec *d, const uint8_t *p, size_t n, slice *key, slice *val) {
  if (n >= 4 && p[0] == 0x0a && p[1] < 0x80 && (size_t)p[1] + 4 <= n && p[2 + p[1]] == 0x12 &&
      p[3 + p[1]] < 0x80 && (size_t)p[1] + 4 + p[3 + p[1]] == n) {
    *key = (slice){p + 2, p[1]};
    *val = (slice){p + 4 + p[1], p[3 + p[1]]};
    return 0;
  }
  rd r = rd_of(p, n);
  wf f;
  int rc;
  *key = *val = (slice){0};
  while ((rc = rd_next(&r, &f)) > 0) {
    if (is_len(&f, 1))
      *key = (slice){f.p, f.n};
    else if (is_len(&f, 2))
      *val = (slice){f.p, f.n};
  }
  return rc < 0 ? wire_fail(d, rc, N_KV, &f) : 0;
}

/* Appends one KeyValue as an attribute entry. Returns 0, 1 when it cannot be represented (key
 * or value over the entry's length fields: nothing appended), or a negative error. */
static int put_kv(dec *d, pf_buf *b, const uint8_t *p, size_t n) {
  slice key, val;
  int rc = kv_split(d, p, n, &key, &val);
  if (rc) return rc;
  size_t at = b->len, klen;
  if ((rc = need(b, sizeof(pf_attr_hdr) + key.n))) return rc;
  b->len += sizeof(pf_attr_hdr);
  if ((rc = put_text(d, b, key, SIZE_MAX, &klen))) return rc;
  uint8_t type = 0;
  if ((rc = put_value(d, b, val, &type))) return rc;
  size_t vlen = b->len - at - sizeof(pf_attr_hdr) - klen;
  if (klen > UINT16_MAX || vlen > SPAN_MAX_SIZE) {
    b->len = at;
    return 1;
  }
  pf_attr_hdr h = {.type = type, .key_len = (uint16_t)klen, .val_len = (uint32_t)vlen};
  memcpy(b->p + at, &h, sizeof h);
  return 0;
}

/* Appends the KeyValues found in field `num` of the message [p, end), starting the walk at
 * `first` (the first such field, or NULL for none), keeping at most `limit`; the rest and the
 * unrepresentable ones are counted in *dropped and mark the chunk modified. */
static int put_attrs(dec *d, pf_buf *b, const uint8_t *first, const uint8_t *end, uint32_t num,
                     uint32_t limit, uint32_t *count, uint32_t *dropped) {
  if (!first) return 0;
  rd r = {first, end};
  wf f;
  int rc;
  int64_t i = 0;
  while ((rc = rd_next(&r, &f)) > 0) {
    if (!is_len(&f, num)) continue;
    size_t at = b->len;
    path_push(d, "attributes", i++);
    rc = put_kv(d, b, f.p, f.n);
    path_pop(d);
    if (rc < 0) return rc;
    if (rc == 0 && *count >= limit) b->len = at, rc = 1; /* decoded (validated), not kept */
    if (rc == 1) {
      sat_add(dropped, 1);
      d->c->modified = true;
    } else {
      (*count)++;
    }
  }
  return rc < 0 ? wire_fail(d, rc, N_SPAN, &f) : 0; /* framing was checked before: defensive */
}

/* ---- resource and scope ---- */

static int decode_resource(dec *d, const uint8_t *p, size_t n) {
  rd r = rd_of(p, n);
  wf f;
  int rc;
  const uint8_t *first = NULL;
  pc_chunk *c = d->c;
  while ((rc = rd_next(&r, &f)) > 0) {
    if (is_len(&f, 1) && !first)
      first = f.start;
    else if (f.num == 2 && f.wt == WT_VARINT)
      c->resource_dropped_attrs = (uint32_t)f.v;
  }
  if (rc < 0) return wire_fail(d, rc, N_RES, &f);
  return put_attrs(d, &c->resource.attrs, first, p + n, 1, UINT32_MAX, &c->resource.n_attrs,
                   &c->resource_dropped_attrs);
}

/* Copies a string field into a new NUL-terminated, repaired string. */
static int dup_text(dec *d, slice s, char **out) {
  pf_buf b = {0};
  size_t len;
  int rc = put_text(d, &b, s, SIZE_MAX, &len);
  if (!rc) rc = pf_buf_append(&b, "", 1);
  if (rc) {
    pf_buf_free(&b);
    return rc;
  }
  free(*out);
  *out = (char *)b.p;
  return 0;
}

static int decode_scope(dec *d, const uint8_t *p, size_t n, pf_scope *sc) {
  rd r = rd_of(p, n);
  wf f;
  int rc;
  const uint8_t *first = NULL;
  while ((rc = rd_next(&r, &f)) > 0) {
    if (is_len(&f, 1))
      rc = dup_text(d, (slice){f.p, f.n}, &sc->name);
    else if (is_len(&f, 2))
      rc = dup_text(d, (slice){f.p, f.n}, &sc->version);
    else if (is_len(&f, 3) && !first)
      first = f.start;
    if (rc < 0) return rc;
  }
  if (rc < 0) return wire_fail(d, rc, N_SCOPE, &f);
  uint32_t count = 0, dropped = 0;
  pf_buf_reset(&d->scratch);
  return put_attrs(d, &d->scratch, first, p + n, 3, UINT32_MAX, &count, &dropped);
}

/* ---- spans ---- */

typedef struct span_in {
  slice trace_id, span_id, parent, name, tracestate, status_msg;
  uint64_t kind, start, end, status_code, flags;
  uint64_t dropped_attrs, dropped_events, dropped_links;
  const uint8_t *attrs, *events, *links; /* first field of each, or NULL */
} span_in;

static int scan_status(dec *d, slice s, span_in *in) {
  rd r = rd_of(s.p, s.n);
  wf f;
  int rc;
  while ((rc = rd_next(&r, &f)) > 0) {
    if (is_len(&f, 2))
      in->status_msg = (slice){f.p, f.n};
    else if (f.num == 3 && f.wt == WT_VARINT)
      in->status_code = f.v;
  }
  if (rc < 0) {
    path_push(d, "status", -1);
    rc = wire_fail(d, rc, N_STATUS, &f);
    path_pop(d);
  }
  return rc;
}

static inline void first_at(const uint8_t **slot, const wf *f) {
  if (!*slot) *slot = f->start;
}

/* First pass over a span: scalars, texts, and where its repeated fields begin. A repeated
 * embedded message (status) merges, so each occurrence overrides what it carries. */
static int scan_span(dec *d, const uint8_t *p, size_t n, span_in *in) {
  rd r = rd_of(p, n);
  wf f;
  int rc;
  while ((rc = rd_next(&r, &f)) > 0) {
    slice s = {f.p, f.n};
    bool len = f.wt == WT_LEN, vi = f.wt == WT_VARINT;
    switch (f.num) {
    case 1:
      if (len) in->trace_id = s;
      break;
    case 2:
      if (len) in->span_id = s;
      break;
    case 3:
      if (len) in->tracestate = s;
      break;
    case 4:
      if (len) in->parent = s;
      break;
    case 5:
      if (len) in->name = s;
      break;
    case 6:
      if (vi) in->kind = f.v;
      break;
    case 7:
      if (f.wt == WT_I64) in->start = f.v;
      break;
    case 8:
      if (f.wt == WT_I64) in->end = f.v;
      break;
    case 9:
      if (len) first_at(&in->attrs, &f);
      break;
    case 10:
      if (vi) in->dropped_attrs = (uint32_t)f.v;
      break;
    case 11:
      if (len) first_at(&in->events, &f);
      break;
    case 12:
      if (vi) in->dropped_events = (uint32_t)f.v;
      break;
    case 13:
      if (len) first_at(&in->links, &f);
      break;
    case 14:
      if (vi) in->dropped_links = (uint32_t)f.v;
      break;
    case 15:
      if (len && (rc = scan_status(d, s, in))) return rc;
      break;
    case 16:
      if (f.wt == WT_I32) in->flags = f.v;
      break;
    default:
      break;
    }
  }
  return rc < 0 ? wire_fail(d, rc, N_SPAN, &f) : 0;
}

/* Ids are 8 or 16 bytes: whole words. */
static inline bool all_zero(const uint8_t *p, size_t n) {
  uint64_t acc = 0, w;
  for (size_t i = 0; i + 8 <= n; i += 8) {
    memcpy(&w, p + i, 8);
    acc |= w;
  }
  return acc == 0;
}

/* Why a span cannot be accepted, or NULL. */
static const char *span_invalid(const span_in *in) {
  if (in->trace_id.n != 16 || all_zero(in->trace_id.p, 16)) return "invalid trace_id";
  if (in->span_id.n != 8 || all_zero(in->span_id.p, 8)) return "invalid span_id";
  if (in->parent.n != 0 && in->parent.n != 8) return "invalid parent_span_id";
  return NULL;
}

/* One Event: pf_event_hdr | name | attributes. */
static int put_event(dec *d, pf_buf *b, const uint8_t *p, size_t n) {
  rd r = rd_of(p, n);
  wf f;
  int rc;
  pf_event_hdr h = {0};
  slice name = {0};
  const uint8_t *first = NULL;
  uint32_t count = 0;
  while ((rc = rd_next(&r, &f)) > 0) {
    if (f.num == 1 && f.wt == WT_I64)
      h.time_ns = f.v;
    else if (is_len(&f, 2))
      name = (slice){f.p, f.n};
    else if (is_len(&f, 3))
      first_at(&first, &f);
    else if (f.num == 4 && f.wt == WT_VARINT)
      h.dropped_attrs = (uint32_t)f.v;
  }
  if (rc < 0) return wire_fail(d, rc, N_EVENT, &f);
  size_t at = b->len, len;
  if ((rc = need(b, sizeof h))) return rc;
  b->len += sizeof h;
  if ((rc = put_text(d, b, name, SPAN_MAX_SIZE, &len))) return rc;
  h.name_len = (uint32_t)len;
  size_t a0 = b->len;
  rc = put_attrs(d, b, first, p + n, 3, UINT16_MAX, &count, &h.dropped_attrs);
  if (rc < 0) return rc;
  h.n_attrs = (uint16_t)count;
  h.attrs_len = (uint32_t)(b->len - a0);
  memcpy(b->p + at, &h, sizeof h);
  return 0;
}

/* One Link: pf_link_hdr | tracestate | attributes. Returns 1 (nothing kept) for a link whose
 * ids have the wrong length: the record has fixed-size id slots. */
static int put_link(dec *d, pf_buf *b, const uint8_t *p, size_t n) {
  rd r = rd_of(p, n);
  wf f;
  int rc;
  pf_link_hdr h = {0};
  slice tid = {0}, sid = {0}, ts = {0};
  const uint8_t *first = NULL;
  uint32_t count = 0;
  while ((rc = rd_next(&r, &f)) > 0) {
    if (is_len(&f, 1))
      tid = (slice){f.p, f.n};
    else if (is_len(&f, 2))
      sid = (slice){f.p, f.n};
    else if (is_len(&f, 3))
      ts = (slice){f.p, f.n};
    else if (is_len(&f, 4))
      first_at(&first, &f);
    else if (f.num == 5 && f.wt == WT_VARINT)
      h.dropped_attrs = (uint32_t)f.v;
    else if (f.num == 6 && f.wt == WT_I32)
      h.flags = (uint32_t)f.v;
  }
  if (rc < 0) return wire_fail(d, rc, N_LINK, &f);
  size_t at = b->len, len;
  if ((rc = need(b, sizeof h))) return rc;
  b->len += sizeof h;
  if ((rc = put_text(d, b, ts, UINT16_MAX, &len))) return rc;
  h.tracestate_len = (uint16_t)len;
  size_t a0 = b->len;
  rc = put_attrs(d, b, first, p + n, 4, UINT16_MAX, &count, &h.dropped_attrs);
  if (rc < 0) return rc;
  if (tid.n != 16 || sid.n != 8) {
    b->len = at;
    return 1;
  }
  memcpy(h.trace_id, tid.p, 16);
  memcpy(h.span_id, sid.p, 8);
  h.n_attrs = (uint16_t)count;
  h.attrs_len = (uint32_t)(b->len - a0);
  memcpy(b->p + at, &h, sizeof h);
  return 0;
}

/* Appends the events (link = false) or links of a span, at most UINT16_MAX of them. */
static int put_list(dec *d, const uint8_t *first, const uint8_t *end, bool link, uint16_t *count,
                    uint32_t *dropped) {
  if (!first) return 0;
  pf_buf *b = &d->c->records;
  rd r = {first, end};
  wf f;
  int rc;
  int64_t i = 0;
  uint32_t num = link ? 13 : 11;
  while ((rc = rd_next(&r, &f)) > 0) {
    if (!is_len(&f, num)) continue;
    size_t at = b->len;
    path_push(d, link ? "links" : "events", i++);
    rc = link ? put_link(d, b, f.p, f.n) : put_event(d, b, f.p, f.n);
    path_pop(d);
    if (rc < 0) return rc;
    if (rc == 0 && *count == UINT16_MAX) b->len = at, rc = 1;
    if (rc == 1) {
      sat_add(dropped, 1);
      d->c->modified = true;
    } else {
      (*count)++;
    }
  }
  return rc < 0 ? wire_fail(d, rc, N_SPAN, &f) : 0; /* framing was checked before: defensive */
}

static inline uint8_t small_enum(dec *d, uint64_t v) {
  if (v <= UINT8_MAX) return (uint8_t)v;
  d->c->modified = true; /* the record cannot hold it: re-encoding says UNSPECIFIED/UNSET */
  return 0;
}

/* Header fields that come straight from the first pass. */
static void span_header(dec *d, const span_in *in, const pf_scope *scope, pf_span_rec *h) {
  memset(h, 0, sizeof *h);
  h->kind = small_enum(d, in->kind);
  h->status_code = small_enum(d, in->status_code);
  h->trace_flags = (uint8_t)in->flags; /* bits above the W3C flags have no slot */
  if (in->trace_id.n == 16) memcpy(h->trace_id, in->trace_id.p, 16);
  if (in->span_id.n == 8) memcpy(h->span_id, in->span_id.p, 8);
  if (in->parent.n == 8 && !all_zero(in->parent.p, 8)) {
    memcpy(h->parent_span_id, in->parent.p, 8);
    h->has_parent = 1;
  }
  h->start_ns = in->start;
  h->end_ns = in->end;
  h->scope = scope;
  h->dropped_attrs = (uint32_t)in->dropped_attrs;
  h->dropped_events = (uint32_t)in->dropped_events;
  h->dropped_links = (uint32_t)in->dropped_links;
}

/* Writes the sections after the header at `start`; fills the lengths and counts in h. */
static int span_sections(dec *d, const span_in *in, const uint8_t *end, pf_span_rec *h) {
  pf_buf *b = &d->c->records;
  size_t len, mark;
  uint32_t count = 0;
  int rc = put_text(d, b, in->name, UINT16_MAX, &len);
  h->name_len = (uint16_t)len;
  if (!rc) rc = put_text(d, b, in->status_msg, UINT16_MAX, &len);
  h->status_msg_len = (uint16_t)len;
  if (!rc) rc = put_text(d, b, in->tracestate, UINT16_MAX, &len);
  h->tracestate_len = (uint16_t)len;
  if (rc) return rc;
  mark = b->len;
  rc = put_attrs(d, b, in->attrs, end, 9, UINT16_MAX, &count, &h->dropped_attrs);
  if (rc < 0) return rc;
  h->n_attrs = (uint16_t)count;
  h->attrs_len = (uint32_t)(b->len - mark);
  mark = b->len;
  if ((rc = put_list(d, in->events, end, false, &h->n_events, &h->dropped_events)) < 0) return rc;
  h->events_len = (uint32_t)(b->len - mark);
  mark = b->len;
  if ((rc = put_list(d, in->links, end, true, &h->n_links, &h->dropped_links)) < 0) return rc;
  h->links_len = (uint32_t)(b->len - mark);
  return 0;
}

static void reject(dec *d, const char *why) {
  d->out->rejected++;
  if (!d->reject_why) d->reject_why = why;
  d->c->modified = true;
}

static int decode_span(dec *d, const uint8_t *p, size_t n, const pf_scope *scope) {
  span_in in = {0};
  int rc = scan_span(d, p, n, &in);
  if (rc) return rc;
  pf_buf *b = &d->c->records;
  size_t start = (b->len + 7) & ~(size_t)7;
  if ((rc = need(b, start - b->len + sizeof(pf_span_rec)))) return rc;
  memset(b->p + b->len, 0, start - b->len);
  b->len = start + sizeof(pf_span_rec);
  pf_span_rec h;
  span_header(d, &in, scope, &h);
  if ((rc = span_sections(d, &in, p + n, &h))) return rc;
  const char *why = span_invalid(&in);
  if (!why && b->len - start > SPAN_MAX_SIZE) why = "span too large";
  if (why) {
    b->len = start;
    reject(d, why);
    return 0;
  }
  h.size = (uint32_t)(b->len - start);
  memcpy(b->p + start, &h, sizeof h);
  d->offs[d->c->n_spans++] = start;
  return 0;
}

static int decode_scope_spans(dec *d, const uint8_t *p, size_t n) {
  pc_chunk *c = d->c;
  pf_scope *sc = &c->scopes[c->n_scopes];
  sc->index = c->n_scopes++;
  rd r = rd_of(p, n);
  wf f;
  int rc;
  int64_t i = 0;
  while (rd_next(&r, &f) > 0) { /* framing was checked by the counting pass */
    if (is_len(&f, 1)) {
      path_push(d, "scope", -1);
      rc = decode_scope(d, f.p, f.n, sc);
    } else if (is_len(&f, 2)) {
      path_push(d, "spans", i++);
      rc = decode_span(d, f.p, f.n, sc);
    } else {
      if (is_len(&f, 3) && !utf8_ok(f.p, f.n)) c->modified = true; /* schema_url */
      continue;
    }
    path_pop(d);
    if (rc) return rc;
  }
  /* framing was checked by the counting pass; a scope without a name still gets "" */
  if (!sc->name && (rc = dup_text(d, (slice){0}, &sc->name))) return rc;
  if (!sc->version && (rc = dup_text(d, (slice){0}, &sc->version))) return rc;
  return 0;
}

/* ---- counting pass ---- */

static int count_scope_spans(dec *d, const uint8_t *p, size_t n, counts *k) {
  rd r = rd_of(p, n);
  wf f;
  int rc;
  while ((rc = rd_next(&r, &f)) > 0)
    if (is_len(&f, 2)) k->spans++;
  return rc < 0 ? wire_fail(d, rc, N_SS, &f) : 0;
}

static int count_rs(dec *d, const uint8_t *p, size_t n, counts *k) {
  rd r = rd_of(p, n);
  wf f;
  int rc;
  int64_t i = 0;
  while ((rc = rd_next(&r, &f)) > 0) {
    if (!is_len(&f, 2)) continue;
    k->scopes++;
    path_push(d, "scope_spans", i++);
    rc = count_scope_spans(d, f.p, f.n, k);
    path_pop(d);
    if (rc) return rc;
  }
  return rc < 0 ? wire_fail(d, rc, N_RS, &f) : 0;
}

/* Keeps what one ResourceSpans holds, for chunk_alloc, so that its framing is read once. */
static int note_rs(dec *d, uint64_t i, const counts *before, const counts *after) {
  if (i >= d->per_rs_cap) {
    size_t cap = d->per_rs_cap ? 2 * d->per_rs_cap : 8;
    counts *q = realloc(d->per_rs, cap * sizeof *q);
    if (!q) return PROFILIS_ENOMEM;
    d->per_rs = q;
    d->per_rs_cap = cap;
  }
  d->per_rs[i] = (counts){1, after->scopes - before->scopes, after->spans - before->spans};
  return 0;
}

static int count_request(dec *d, const uint8_t *p, size_t n, counts *k) {
  rd r = rd_of(p, n);
  wf f;
  int rc;
  while ((rc = rd_next(&r, &f)) > 0) {
    if (!is_len(&f, 1)) continue;
    counts before = *k;
    path_push(d, "resource_spans", (int64_t)k->rs++);
    rc = count_rs(d, f.p, f.n, k);
    path_pop(d);
    if (!rc) rc = note_rs(d, k->rs - 1, &before, k);
    if (rc) return rc;
  }
  return rc < 0 ? wire_fail(d, rc, N_REQ, &f) : 0;
}

/* ---- chunks ---- */

static int chunk_alloc(dec *d, const counts *k, size_t wire) {
  pc_chunk *c = d->c = pc_chunk_new();
  if (!c) return PROFILIS_ENOMEM;
  if (k->scopes && !(c->scopes = calloc(k->scopes, sizeof *c->scopes))) return PROFILIS_ENOMEM;
  if (k->spans && !(c->spans = malloc(k->spans * sizeof *c->spans))) return PROFILIS_ENOMEM;
  if (k->spans > d->offs_cap) {
    size_t *o = realloc(d->offs, k->spans * sizeof *o);
    if (!o) return PROFILIS_ENOMEM;
    d->offs = o;
    d->offs_cap = k->spans;
  }
  if (!k->spans) return 0;
  /* sized by hand: pf_buf_reserve would round the guess up to a power of two */
  size_t want = wire + k->spans * REC_SLACK;
  if (!(c->records.p = malloc(want))) return PROFILIS_ENOMEM;
  c->records.cap = want;
  return 0;
}

/* Gives the chunk its span pointers, raw bytes and size, and hands it to the result; a chunk
 * left without spans is dropped (OTLP lets receivers ignore empty envelopes). */
static int chunk_finish(dec *d, const uint8_t *p, size_t n) {
  pc_chunk *c = d->c;
  if (c->n_spans == 0) {
    pc_chunk_unref(c);
    d->c = NULL;
    return 0;
  }
  pf_buf *b = &c->records;
  if (b->cap - b->len > b->cap / 4) { /* the guess was far off: give the slack back */
    uint8_t *q = realloc(b->p, b->len);
    if (q) b->p = q, b->cap = b->len;
  }
  /* offs has room for every span the counting pass found (chunk_alloc) */
  // NOLINTNEXTLINE(clang-analyzer-core.NullDereference)
  for (uint32_t i = 0; i < c->n_spans; i++) c->spans[i] = (const pf_span_rec *)(b->p + d->offs[i]);
  if (d->opts->keep_raw && !c->modified) {
    int rc = pf_buf_reserve(&c->raw, n);
    if (rc) return rc;
    memcpy(c->raw.p, p, n);
    c->raw.len = n;
  }
  c->budget_bytes = pc_chunk_size(c);
  c->received_ns = pf_mono_ns();
  d->out->chunks[d->out->n_chunks++] = c;
  d->out->n_spans += c->n_spans;
  d->c = NULL;
  return 0;
}

static int decode_rs(dec *d, const uint8_t *p, size_t n, const counts *k) {
  int rc = chunk_alloc(d, k, n);
  if (rc) return rc;
  rd r = rd_of(p, n);
  wf f;
  int64_t i = 0;
  while (rd_next(&r, &f) > 0) { /* framing was checked by the counting pass */
    if (is_len(&f, 1)) {
      path_push(d, "resource", -1);
      rc = decode_resource(d, f.p, f.n);
    } else if (is_len(&f, 2)) {
      path_push(d, "scope_spans", i++);
      rc = decode_scope_spans(d, f.p, f.n);
    } else {
      if (is_len(&f, 3) && !utf8_ok(f.p, f.n)) d->c->modified = true; /* schema_url */
      continue;
    }
    path_pop(d);
    if (rc) return rc;
  }
  return chunk_finish(d, p, n);
}

static int decode_request(dec *d, const uint8_t *buf, size_t len) {
  counts k = {0};
  int rc = count_request(d, buf, len, &k);
  if (rc) return rc;
  uint32_t max = d->opts->max_spans;
  if (max && k.spans > max) {
    snprintf(d->out->message, sizeof d->out->message,
             "request has %llu spans, more than the limit of %u", (unsigned long long)k.spans, max);
    return PROFILIS_ELIMIT;
  }
  if (k.rs && !(d->out->chunks = calloc(k.rs, sizeof *d->out->chunks))) return PROFILIS_ENOMEM;
  rd r = rd_of(buf, len);
  wf f;
  int64_t i = 0;
  while (rd_next(&r, &f) > 0) {
    if (!is_len(&f, 1)) continue;
    path_push(d, "resource_spans", i);
    rc = decode_rs(d, f.p, f.n, &d->per_rs[i++]);
    path_pop(d);
    if (rc) return rc;
  }
  return 0;
}

void pc_decode_result_free(pc_decode_result *r) {
  if (!r) return;
  for (size_t i = 0; i < r->n_chunks; i++) pc_chunk_unref(r->chunks[i]);
  free(r->chunks);
  r->chunks = NULL;
  r->n_chunks = 0;
  r->n_spans = 0;
}

int pc_decode_otlp_proto(const uint8_t *buf, size_t len, const pc_decode_opts *opts,
                         pc_decode_result *out) {
  if (!out) return PROFILIS_EINVAL;
  memset(out, 0, sizeof *out);
  if (!buf && len) return PROFILIS_EINVAL;
  static const pc_decode_opts defaults = {0};
  dec d = {.opts = opts ? opts : &defaults, .out = out};
  int rc = decode_request(&d, buf ? buf : (const uint8_t *)"", len);
  if (d.c) pc_chunk_unref(d.c);
  free(d.offs);
  free(d.per_rs);
  pf_buf_free(&d.scratch);
  if (rc) {
    pc_decode_result_free(out);
    out->rejected = 0;
    if (rc == PROFILIS_ENOMEM) snprintf(out->message, sizeof out->message, "out of memory");
    return rc;
  }
  if (!out->n_chunks) { /* every resource was empty: nothing for the caller to free */
    free(out->chunks);
    out->chunks = NULL;
  }
  if (out->rejected)
    snprintf(out->message, sizeof out->message, "%llu span%s rejected: %s",
             (unsigned long long)out->rejected, out->rejected == 1 ? "" : "s", d.reject_why);
  return 0;
}
