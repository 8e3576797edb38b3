/* OTLP protobuf encoding of span records as an ExportTraceServiceRequest, written straight to
 * wire bytes (protobuf-c checks the result in the tests). Two passes: the first computes the
 * exact size of every message from the records (span sizes are cached on the stack), the
 * second reserves the total once and writes through a raw cursor. Length prefixes are thus
 * exact and canonical with no back-patching or memmove, and nothing is allocated per span.
 * Both passes walk records with the same bounds-checked iterators, so they always agree. */
#include <assert.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "pf_wire.h"
#include "pf_exporter.h"
#include "profilis/common.h"

/* Wire types and the tag bytes used below (field number << 3 | wire type). */
enum { WT_VARINT = 0, WT_I64 = 1, WT_LEN = 2, WT_I32 = 5 };
#define TAG(field, wt) ((uint8_t)(((field) << 3) | (wt)))

/* Spans whose encoded size is remembered between the passes; later ones are sized twice. */
#define SIZE_CACHE 512

/* ---- primitives ---- */

/* Nearly every length and number here is below 2^14, so those cases skip the bit maths. */

/* Size of a length-delimited field with a one-byte tag and an n-byte body. */
static inline size_t len_field(size_t n) { return 1 + pf_varint_size(n) + n; }

static inline uint8_t *put_len(uint8_t *p, uint8_t tag, size_t n) {
  *p++ = tag;
  return pf_put_varint(p, n);
}

static inline uint8_t *put_bytes(uint8_t *p, uint8_t tag, const void *d, size_t n) {
  p = put_len(p, tag, n);
  pf_copy_small(p, d, n);
  return p + n;
}

static inline uint8_t *put_le(uint8_t *p, uint64_t v, size_t n) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  memcpy(p, &v, n);
#else
  for (size_t i = 0; i < n; i++) p[i] = (uint8_t)(v >> (8 * i));
#endif
  return p + n;
}

static inline uint8_t *put_fixed64(uint8_t *p, uint8_t tag, uint64_t v) {
  *p++ = tag;
  return put_le(p, v, 8);
}

/* ---- AnyValue ---- */

/* Types only the collector makes (collector/pc_chunk.h PF_ATTR_BYTES / PF_ATTR_ANYVALUE):
 * AnyValue.bytes_value, and a whole encoded AnyValue message that is written back verbatim. */
enum { ATTR_BYTES = 9, ATTR_ANYVALUE = 10 };

static inline bool attr_type_known(profilis_attr_type t) {
  return (t >= PROFILIS_ATTR_STRING && t <= PROFILIS_ATTR_DOUBLE_ARRAY) || (int)t == ATTR_BYTES ||
         (int)t == ATTR_ANYVALUE;
}

/* Walks a STRING_ARRAY value: (u32 len | bytes) repeated; stops at a malformed entry. */
static inline bool str_elem_next(const pf_attr_view *a, size_t *off, const uint8_t **s, size_t *n) {
  if (*off > a->val_len || a->val_len - *off < 4) return false;
  size_t len = pf_rd_u32(a->val + *off);
  if (len > a->val_len - *off - 4) return false;
  *s = a->val + *off + 4;
  *n = len;
  *off += 4 + len;
  return true;
}

/* Body size of the AnyValue for one scalar element of a (possibly array) attribute. */
static inline size_t scalar_body(profilis_attr_type t, const uint8_t *v, size_t n) {
  switch (t) {
  case PROFILIS_ATTR_STRING:
  case PROFILIS_ATTR_STRING_ARRAY:
    return len_field(n);
  case PROFILIS_ATTR_BOOL:
  case PROFILIS_ATTR_BOOL_ARRAY:
    return 2;
  case PROFILIS_ATTR_INT:
  case PROFILIS_ATTR_INT_ARRAY:
    return 1 + pf_varint_size((uint64_t)pf_rd_i64(v));
  default:
    return 9;
  }
}

static inline uint8_t *put_scalar(uint8_t *p, profilis_attr_type t, const uint8_t *v, size_t n) {
  switch (t) {
  case PROFILIS_ATTR_STRING:
  case PROFILIS_ATTR_STRING_ARRAY:
    return put_bytes(p, TAG(1, WT_LEN), v, n);
  case PROFILIS_ATTR_BOOL:
  case PROFILIS_ATTR_BOOL_ARRAY:
    *p++ = TAG(2, WT_VARINT);
    *p++ = *v ? 1 : 0;
    return p;
  case PROFILIS_ATTR_INT:
  case PROFILIS_ATTR_INT_ARRAY:
    *p++ = TAG(3, WT_VARINT);
    return pf_put_varint(p, (uint64_t)pf_rd_i64(v));
  default: /* the record holds the double's bits in host order; the wire wants LE */
    *p++ = TAG(4, WT_I64);
    return put_le(p, (uint64_t)pf_rd_i64(v), 8);
  }
}

static inline size_t fixed_elem_size(profilis_attr_type t) {
  return t == PROFILIS_ATTR_BOOL_ARRAY ? 1 : 8;
}

/* Body size of ArrayValue{values=1} for an array attribute. */
static size_t array_body(const pf_attr_view *a) {
  size_t total = 0;
  if (a->type == PROFILIS_ATTR_STRING_ARRAY) {
    size_t off = 0, n;
    const uint8_t *s;
    while (str_elem_next(a, &off, &s, &n)) total += len_field(len_field(n));
    return total;
  }
  size_t es = fixed_elem_size(a->type);
  for (size_t i = 0; i + es <= a->val_len; i += es)
    total += len_field(scalar_body(a->type, a->val + i, es));
  return total;
}

static uint8_t *put_array_body(uint8_t *p, const pf_attr_view *a) {
  if (a->type == PROFILIS_ATTR_STRING_ARRAY) {
    size_t off = 0, n;
    const uint8_t *s;
    while (str_elem_next(a, &off, &s, &n)) {
      p = put_len(p, TAG(1, WT_LEN), len_field(n));
      p = put_bytes(p, TAG(1, WT_LEN), s, n);
    }
    return p;
  }
  size_t es = fixed_elem_size(a->type);
  for (size_t i = 0; i + es <= a->val_len; i += es) {
    p = put_len(p, TAG(1, WT_LEN), scalar_body(a->type, a->val + i, es));
    p = put_scalar(p, a->type, a->val + i, es);
  }
  return p;
}

static inline bool is_array(profilis_attr_type t) {
  return t >= PROFILIS_ATTR_STRING_ARRAY && t <= PROFILIS_ATTR_DOUBLE_ARRAY;
}

/* Body size of the AnyValue of an attribute; a scalar shorter than its type is malformed and
 * sized (and written) as an empty AnyValue so both passes stay in step. */
static inline size_t anyvalue_body(const pf_attr_view *a) {
  if ((int)a->type == ATTR_BYTES) return len_field(a->val_len);
  if ((int)a->type == ATTR_ANYVALUE) return a->val_len;
  if (is_array(a->type)) return len_field(array_body(a));
  if (a->type != PROFILIS_ATTR_STRING && a->val_len < (a->type == PROFILIS_ATTR_BOOL ? 1u : 8u))
    return 0;
  return scalar_body(a->type, a->val, a->val_len);
}

static inline uint8_t *put_anyvalue_body(uint8_t *p, const pf_attr_view *a) {
  if ((int)a->type == ATTR_BYTES) return put_bytes(p, TAG(7, WT_LEN), a->val, a->val_len);
  if ((int)a->type == ATTR_ANYVALUE) {
    if (a->val_len) memcpy(p, a->val, a->val_len);
    return p + a->val_len;
  }
  if (is_array(a->type)) {
    p = put_len(p, TAG(5, WT_LEN), array_body(a));
    return put_array_body(p, a);
  }
  if (a->type != PROFILIS_ATTR_STRING && a->val_len < (a->type == PROFILIS_ATTR_BOOL ? 1u : 8u))
    return p;
  return put_scalar(p, a->type, a->val, a->val_len);
}

/* ---- KeyValue lists ---- */

static inline size_t kv_body(const pf_attr_view *a, size_t *av) {
  *av = anyvalue_body(a);
  return (a->key_len ? len_field(a->key_len) : 0) + len_field(*av);
}

/* Total size of the repeated KeyValue fields for an attribute section (any one-byte tag). */
static size_t attrs_size(const uint8_t *sec, size_t len) {
  size_t off = 0, total = 0, av;
  pf_attr_view a;
  while (pf_attr_next(sec, len, &off, &a))
    if (attr_type_known(a.type)) total += len_field(kv_body(&a, &av));
  return total;
}

static uint8_t *put_attrs(uint8_t *p, uint8_t tag, const uint8_t *sec, size_t len) {
  size_t off = 0, av;
  pf_attr_view a;
  while (pf_attr_next(sec, len, &off, &a)) {
    if (!attr_type_known(a.type)) continue;
    p = put_len(p, tag, kv_body(&a, &av));
    if (a.key_len) p = put_bytes(p, TAG(1, WT_LEN), a.key, a.key_len);
    p = put_len(p, TAG(2, WT_LEN), av);
    p = put_anyvalue_body(p, &a);
  }
  return p;
}

/* ---- events, links, status ---- */

static inline size_t opt_varint(uint64_t v) { return v ? 1 + pf_varint_size(v) : 0; }
static inline size_t opt_str(size_t n) { return n ? len_field(n) : 0; }

static size_t event_body(const pf_event_view *e) {
  return (e->h.time_ns ? 9 : 0) + opt_str(e->h.name_len) + attrs_size(e->attrs, e->h.attrs_len) +
         opt_varint(e->h.dropped_attrs);
}

static size_t link_body(const pf_link_view *l) {
  return 18 + 10 + opt_str(l->h.tracestate_len) + attrs_size(l->attrs, l->h.attrs_len) +
         opt_varint(l->h.dropped_attrs) + (l->h.flags ? 5 : 0);
}

static size_t events_size(const pf_span_rec *r) {
  size_t off = 0, total = 0;
  pf_event_view e;
  while (pf_event_next(pf_rec_events(r), r->events_len, &off, &e))
    total += len_field(event_body(&e));
  return total;
}

static size_t links_size(const pf_span_rec *r) {
  size_t off = 0, total = 0;
  pf_link_view l;
  while (pf_link_next(pf_rec_links(r), r->links_len, &off, &l)) total += len_field(link_body(&l));
  return total;
}

static uint8_t *put_events(uint8_t *p, const pf_span_rec *r) {
  size_t off = 0;
  pf_event_view e;
  while (pf_event_next(pf_rec_events(r), r->events_len, &off, &e)) {
    p = put_len(p, TAG(11, WT_LEN), event_body(&e));
    if (e.h.time_ns) p = put_fixed64(p, TAG(1, WT_I64), e.h.time_ns);
    if (e.h.name_len) p = put_bytes(p, TAG(2, WT_LEN), e.name, e.h.name_len);
    p = put_attrs(p, TAG(3, WT_LEN), e.attrs, e.h.attrs_len);
    if (e.h.dropped_attrs) {
      *p++ = TAG(4, WT_VARINT);
      p = pf_put_varint(p, e.h.dropped_attrs);
    }
  }
  return p;
}

static uint8_t *put_links(uint8_t *p, const pf_span_rec *r) {
  size_t off = 0;
  pf_link_view l;
  while (pf_link_next(pf_rec_links(r), r->links_len, &off, &l)) {
    p = put_len(p, TAG(13, WT_LEN), link_body(&l));
    p = put_bytes(p, TAG(1, WT_LEN), l.h.trace_id, 16);
    p = put_bytes(p, TAG(2, WT_LEN), l.h.span_id, 8);
    if (l.h.tracestate_len) p = put_bytes(p, TAG(3, WT_LEN), l.tracestate, l.h.tracestate_len);
    p = put_attrs(p, TAG(4, WT_LEN), l.attrs, l.h.attrs_len);
    if (l.h.dropped_attrs) {
      *p++ = TAG(5, WT_VARINT);
      p = pf_put_varint(p, l.h.dropped_attrs);
    }
    if (l.h.flags) {
      *p++ = TAG(6, WT_I32);
      p = put_le(p, l.h.flags, 4);
    }
  }
  return p;
}

static inline size_t status_body(const pf_span_rec *r) {
  return opt_str(r->status_msg_len) + opt_varint(r->status_code);
}

/* ---- spans ---- */

static size_t span_body(const pf_span_rec *r) {
  size_t st = status_body(r);
  return 18 + 10 + opt_str(r->tracestate_len) + (r->has_parent ? 10 : 0) + opt_str(r->name_len) +
         opt_varint(r->kind) + (r->start_ns ? 9 : 0) + (r->end_ns ? 9 : 0) +
         attrs_size(pf_rec_attrs(r), r->attrs_len) + opt_varint(r->dropped_attrs) + events_size(r) +
         opt_varint(r->dropped_events) + links_size(r) + opt_varint(r->dropped_links) +
         (st ? len_field(st) : 0) + (r->trace_flags ? 2 + 4 : 0);
}

static uint8_t *put_span(uint8_t *p, const pf_span_rec *r, size_t body) {
  p = put_len(p, TAG(2, WT_LEN), body);
  p = put_bytes(p, TAG(1, WT_LEN), r->trace_id, 16);
  p = put_bytes(p, TAG(2, WT_LEN), r->span_id, 8);
  if (r->tracestate_len) p = put_bytes(p, TAG(3, WT_LEN), pf_rec_tracestate(r), r->tracestate_len);
  if (r->has_parent) p = put_bytes(p, TAG(4, WT_LEN), r->parent_span_id, 8);
  if (r->name_len) p = put_bytes(p, TAG(5, WT_LEN), pf_rec_name(r), r->name_len);
  if (r->kind) {
    *p++ = TAG(6, WT_VARINT);
    p = pf_put_varint(p, r->kind);
  }
  if (r->start_ns) p = put_fixed64(p, TAG(7, WT_I64), r->start_ns);
  if (r->end_ns) p = put_fixed64(p, TAG(8, WT_I64), r->end_ns);
  p = put_attrs(p, TAG(9, WT_LEN), pf_rec_attrs(r), r->attrs_len);
  if (r->dropped_attrs) {
    *p++ = TAG(10, WT_VARINT);
    p = pf_put_varint(p, r->dropped_attrs);
  }
  p = put_events(p, r);
  if (r->dropped_events) {
    *p++ = TAG(12, WT_VARINT);
    p = pf_put_varint(p, r->dropped_events);
  }
  p = put_links(p, r);
  if (r->dropped_links) {
    *p++ = TAG(14, WT_VARINT);
    p = pf_put_varint(p, r->dropped_links);
  }
  size_t st = status_body(r);
  if (st) {
    p = put_len(p, TAG(15, WT_LEN), st);
    if (r->status_msg_len)
      p = put_bytes(p, TAG(2, WT_LEN), pf_rec_status_msg(r), r->status_msg_len);
    if (r->status_code) {
      *p++ = TAG(3, WT_VARINT);
      p = pf_put_varint(p, r->status_code);
    }
  }
  if (r->trace_flags) {
    *p++ = 0x85; /* field 16, wire type I32: the tag varint 133 takes two bytes */
    *p++ = 0x01;
    p = put_le(p, r->trace_flags, 4);
  }
  return p;
}

/* ---- scopes and the request ---- */

#define NO_SPAN SIZE_MAX /* span_body() marker for a record that is skipped */

typedef struct enc {
  const pf_batch *b;
  size_t body[SIZE_CACHE]; /* span_body of span i (i < SIZE_CACHE), or NO_SPAN */
} enc;

static inline size_t span_body_at(const enc *e, size_t i) {
  if (i < SIZE_CACHE) return e->body[i];
  const pf_span_rec *r = e->b->spans[i];
  return pf_rec_sections_fit(r) ? span_body(r) : NO_SPAN;
}

/* True when span i's scope already appeared earlier (its group was emitted there). A scan
 * back: O(n * distinct scopes) per batch, and batches carry few scopes in practice. */
static bool scope_seen(const pf_batch *b, size_t i) {
  const pf_scope *s = b->spans[i]->scope;
  for (size_t j = i; j-- > 0;)
    if (b->spans[j]->scope == s) return true;
  return false;
}

static inline size_t opt_cstr(const char *s) { return s && *s ? len_field(strlen(s)) : 0; }

static inline size_t scope_msg_body(const pf_scope *s) {
  return opt_cstr(s->name) + opt_cstr(s->version);
}

/* Body size of the ScopeSpans whose first span is `first`. */
static size_t scope_spans_body(const enc *e, size_t first) {
  const pf_scope *s = e->b->spans[first]->scope;
  size_t total = s ? len_field(scope_msg_body(s)) : 0;
  for (size_t j = first; j < e->b->n; j++) {
    if (e->b->spans[j]->scope != s) continue;
    size_t body = span_body_at(e, j);
    if (body != NO_SPAN) total += len_field(body);
  }
  return total;
}

static uint8_t *put_scope_spans(uint8_t *p, const enc *e, size_t first, size_t body) {
  const pf_scope *s = e->b->spans[first]->scope;
  p = put_len(p, TAG(2, WT_LEN), body);
  if (s) {
    p = put_len(p, TAG(1, WT_LEN), scope_msg_body(s));
    if (s->name && *s->name) p = put_bytes(p, TAG(1, WT_LEN), s->name, strlen(s->name));
    if (s->version && *s->version) p = put_bytes(p, TAG(2, WT_LEN), s->version, strlen(s->version));
  }
  for (size_t j = first; j < e->b->n; j++) {
    if (e->b->spans[j]->scope != s) continue;
    size_t sb = span_body_at(e, j);
    if (sb != NO_SPAN) p = put_span(p, e->b->spans[j], sb);
  }
  return p;
}

static inline size_t resource_body(const pf_batch *b) {
  return attrs_size(b->resource->attrs.p, b->resource->attrs.len);
}

/* Body size of the single ResourceSpans. */
static size_t resource_spans_body(const enc *e) {
  const pf_batch *b = e->b;
  size_t total = b->resource ? len_field(resource_body(b)) : 0;
  for (size_t i = 0; i < b->n; i++)
    if (!scope_seen(b, i)) total += len_field(scope_spans_body(e, i));
  return total;
}

static uint8_t *put_request(uint8_t *p, const enc *e, size_t rs_body) {
  const pf_batch *b = e->b;
  p = put_len(p, TAG(1, WT_LEN), rs_body);
  if (b->resource) {
    p = put_len(p, TAG(1, WT_LEN), resource_body(b));
    p = put_attrs(p, TAG(1, WT_LEN), b->resource->attrs.p, b->resource->attrs.len);
  }
  for (size_t i = 0; i < b->n; i++)
    if (!scope_seen(b, i)) p = put_scope_spans(p, e, i, scope_spans_body(e, i));
  return p;
}

/* An empty batch encodes as an empty request (zero bytes): nothing to say about a resource. */
int pf_otlp_encode_request(pf_buf *out, const pf_batch *b) {
  if (!out || !b || (b->n && !b->spans)) return PROFILIS_EINVAL;
  if (b->n == 0) return 0;
  enc e;
  e.b = b;
  size_t cached = b->n < SIZE_CACHE ? b->n : SIZE_CACHE;
  for (size_t i = 0; i < cached; i++)
    e.body[i] = pf_rec_sections_fit(b->spans[i]) ? span_body(b->spans[i]) : NO_SPAN;
  size_t rs_body = resource_spans_body(&e);
  size_t total = len_field(rs_body);
  int rc = pf_buf_reserve(out, total);
  if (rc) return rc;
  uint8_t *start = out->p + out->len;
  uint8_t *end = put_request(start, &e, rs_body);
  assert((size_t)(end - start) == total); /* the passes must agree, or we overran */
  (void)end;
  out->len += total;
  return 0;
}
