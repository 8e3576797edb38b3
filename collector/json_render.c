/* JSON renderings of collector chunks, for the JSONL exporter: one object per span per line
 * (ids as lowercase hex, attributes as an object, the resource and scope inline), and the
 * OTLP/JSON form of a chunk as one ResourceSpans (lowerCamelCase keys, ids as hex, 64-bit
 * integers as decimal strings, enums as integers, bytes as base64, scopes grouped in order of
 * first appearance). Encoded AnyValues (kvlists, nested arrays) are read with the protobuf wire
 * reader, depth-capped. Every string goes out as valid UTF-8 through pf_json. */
#include <stdlib.h>
#include <string.h>

#include "grpc_frame.h"
#include "pc_decode.h"
#include "pc_json_render.h"

#define JR_ANY_DEPTH PC_DECODE_MAX_DEPTH /* AnyValue nesting rendered; deeper is {} / null */
/* ---- inline writers ----
 * Keys, punctuation, ids, integers and plain ASCII strings are most of every line; writing
 * them straight into the buffer (one capacity check each) instead of through pf_json's calls
 * makes rendering several times faster. Anything else goes through pf_json, which escapes and
 * repairs UTF-8. Errors stay sticky in j->err as pf_json defines. */

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

static inline int put(pf_json *j, const char *s, size_t n) {
  char *d = room(j, n);
  if (!d) return j->err;
  memcpy(d, s, n);
  j->out->len += n;
  return 0;
}

#define LIT(j, lit) put((j), "" lit, sizeof(lit) - 1)

static inline void put_u64(pf_json *j, uint64_t v) {
  char tmp[20];
  size_t i = sizeof tmp;
  do tmp[--i] = (char)('0' + v % 10);
  while (v /= 10);
  put(j, tmp + i, sizeof tmp - i);
}

static inline void put_i64(pf_json *j, int64_t v) {
  if (v < 0) put(j, "-", 1);
  put_u64(j, v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v);
}

/* Quoted lowercase hex (ids). */
static inline void put_hex(pf_json *j, const uint8_t *p, size_t n) {
  static const char digits[] = "0123456789abcdef";
  char *d = room(j, 2 * n + 2);
  if (!d) return;
  *d++ = '"';
  for (size_t i = 0; i < n; i++) *d++ = digits[p[i] >> 4], *d++ = digits[p[i] & 15];
  *d = '"';
  j->out->len += 2 * n + 2;
}

/* A quoted string: printable ASCII without quote or backslash is copied as is. */
static inline void put_str(pf_json *j, const char *s, size_t n) {
  for (size_t i = 0; i < n; i++) {
    uint8_t c = (uint8_t)s[i];
    if (c < 0x20 || c > 0x7e || c == '"' || c == '\\') {
      pf_json_str(j, s, n);
      return;
    }
  }
  char *d = room(j, n + 2);
  if (!d) return;
  d[0] = '"';
  memcpy(d + 1, s, n);
  d[n + 1] = '"';
  j->out->len += n + 2;
}

static inline void put_cstr(pf_json *j, const char *s) {
  put_str(j, s ? s : "", s ? strlen(s) : 0);
}

/* ---- values ---- */

static int b64(pf_json *j, const uint8_t *p, size_t n) {
  static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  LIT(j, "\"");
  for (size_t i = 0; i < n; i += 3) {
    uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < n ? (uint32_t)p[i + 1] << 8 : 0) |
                 (i + 2 < n ? p[i + 2] : 0);
    char q[4] = {tbl[v >> 18], tbl[(v >> 12) & 63], i + 1 < n ? tbl[(v >> 6) & 63] : '=',
                 i + 2 < n ? tbl[v & 63] : '='};
    pf_json_raw(j, q, 4);
  }
  return LIT(j, "\"");
}

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
    b64(j, f.p, f.n);
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
    b64(j, a->val, a->val_len);
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

/* An attribute section as a plain object; bytes as base64, nested values as JSON. */
static void plain_attrs(pf_json *j, const uint8_t *sec, size_t len) {
  size_t off = 0;
  pf_attr_view a;
  LIT(j, "{");
  for (bool first = true; pf_attr_next(sec, len, &off, &a); first = false) {
    if (!first) LIT(j, ",");
    put_str(j, a.key, a.key_len);
    LIT(j, ":");
    if ((int)a.type == PF_ATTR_BYTES)
      b64(j, a.val, a.val_len);
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

static void plain_head(pf_json *j, const pf_span_rec *r) {
  LIT(j, "{\"trace_id\":");
  put_hex(j, r->trace_id, 16);
  LIT(j, ",\"span_id\":");
  put_hex(j, r->span_id, 8);
  LIT(j, ",\"parent_span_id\":");
  if (r->has_parent)
    put_hex(j, r->parent_span_id, 8);
  else
    LIT(j, "\"\"");
  LIT(j, ",\"trace_state\":");
  put_str(j, pf_rec_tracestate(r), r->tracestate_len);
  LIT(j, ",\"flags\":");
  put_u64(j, r->trace_flags);
  LIT(j, ",\"name\":");
  put_str(j, pf_rec_name(r), r->name_len);
  LIT(j, ",\"kind\":");
  put_u64(j, r->kind);
  LIT(j, ",\"start_time_unix_nano\":");
  put_u64(j, r->start_ns);
  LIT(j, ",\"end_time_unix_nano\":");
  put_u64(j, r->end_ns);
  LIT(j, ",\"duration_ns\":");
  put_u64(j, r->end_ns > r->start_ns ? r->end_ns - r->start_ns : 0);
  LIT(j, ",\"status_code\":");
  put_u64(j, r->status_code);
  LIT(j, ",\"status_message\":");
  put_str(j, pf_rec_status_msg(r), r->status_msg_len);
}

/* One span as a line; `res` is the chunk's resource object, rendered once. */
static void plain_line(pf_json *j, const pf_span_rec *r, const pf_buf *res, const char *tenant) {
  plain_head(j, r);
  LIT(j, ",\"attributes\":");
  plain_attrs(j, pf_rec_attrs(r), r->attrs_len);
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
  LIT(j, ",\"resource\":");
  put(j, (const char *)res->p, res->len);
  LIT(j, ",\"scope\":{\"name\":");
  put_cstr(j, r->scope ? r->scope->name : NULL);
  LIT(j, ",\"version\":");
  put_cstr(j, r->scope ? r->scope->version : NULL);
  LIT(j, "},\"tenant\":");
  put_str(j, tenant, strnlen(tenant, PC_TENANT_MAX));
  LIT(j, "}\n");
}

int pc_json_span_lines(pc_json_scratch *s, const pc_chunk *c, pf_buf *out) {
  pf_buf_reset(&s->res);
  pf_json rj = pf_json_on(&s->res);
  plain_attrs(&rj, c->resource.attrs.p, c->resource.attrs.len);
  if (rj.err) return rj.err;
  pf_json j = pf_json_on(out);
  for (uint32_t i = 0; i < c->n_spans && !j.err; i++)
    if (pf_rec_sections_fit(c->spans[i])) plain_line(&j, c->spans[i], &s->res, c->tenant);
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
  pf_buf_free(&s->res);
  free(s->seen);
  memset(s, 0, sizeof *s);
}
