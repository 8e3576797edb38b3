/* Test helper for the OTLP decoders: builds ExportTraceServiceRequests with protobuf-c (every
 * object from a small arena freed in one call), packs them, and compares decoded chunks. */
#ifndef PC_TEST_DECODE_FIXTURES_H
#define PC_TEST_DECODE_FIXTURES_H

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "opentelemetry/proto/collector/trace/v1/trace_service.pb-c.h"
#include "pc_decode.h"
#include "pf_exporter.h"

typedef Opentelemetry__Proto__Collector__Trace__V1__ExportTraceServiceRequest Req;
typedef Opentelemetry__Proto__Trace__V1__ResourceSpans RS;
typedef Opentelemetry__Proto__Trace__V1__ScopeSpans SS;
typedef Opentelemetry__Proto__Trace__V1__Span Span;
typedef Opentelemetry__Proto__Trace__V1__Span__Event Event;
typedef Opentelemetry__Proto__Trace__V1__Span__Link Link;
typedef Opentelemetry__Proto__Trace__V1__Status Status;
typedef Opentelemetry__Proto__Resource__V1__Resource Resource;
typedef Opentelemetry__Proto__Common__V1__InstrumentationScope Scope;
typedef Opentelemetry__Proto__Common__V1__KeyValue KV;
typedef Opentelemetry__Proto__Common__V1__AnyValue AV;
typedef Opentelemetry__Proto__Common__V1__ArrayValue ArrayV;
typedef Opentelemetry__Proto__Common__V1__KeyValueList KVList;

#define AVC(x) OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_##x

/* ---- arena ---- */

typedef struct arena {
  void **v;
  size_t n, cap;
} arena;

static inline void *ar_keep(arena *a, void *p) {
  if (!p) abort();
  if (a->n == a->cap) {
    a->cap = a->cap ? 2 * a->cap : 64;
    a->v = realloc(a->v, a->cap * sizeof *a->v);
    if (!a->v) abort();
  }
  a->v[a->n++] = p;
  return p;
}

static inline void *ar_new(arena *a, size_t n) { return ar_keep(a, calloc(1, n ? n : 1)); }

static inline void ar_free(arena *a) {
  for (size_t i = 0; i < a->n; i++) free(a->v[i]);
  free(a->v);
  memset(a, 0, sizeof *a);
}

static inline void *ar_ptrs(arena *a, void *const *src, size_t n) {
  void **p = ar_new(a, n * sizeof *p);
  if (n) memcpy(p, src, n * sizeof *p);
  return p;
}

static inline char *ar_str(arena *a, const char *s) {
  size_t n = strlen(s);
  char *p = ar_new(a, n + 1);
  memcpy(p, s, n);
  return p;
}

#define NPTRS(...) (sizeof((void *[]){__VA_ARGS__}) / sizeof(void *))
/* obj->n_field / obj->field from a list of pointers */
#define SET_REP(a, obj, field, ...)                                                                \
  ((obj)->n_##field = NPTRS(__VA_ARGS__),                                                          \
   (obj)->field = ar_ptrs((a), (void *[]){__VA_ARGS__}, NPTRS(__VA_ARGS__)))

/* ---- values ---- */

static inline AV *av_new(arena *a) {
  AV *v = ar_new(a, sizeof *v);
  opentelemetry__proto__common__v1__any_value__init(v);
  return v;
}

static inline AV *av_str(arena *a, const char *s) {
  AV *v = av_new(a);
  v->value_case = AVC(STRING_VALUE);
  v->string_value = (char *)s;
  return v;
}

static inline AV *av_bool(arena *a, bool b) {
  AV *v = av_new(a);
  v->value_case = AVC(BOOL_VALUE);
  v->bool_value = b;
  return v;
}

static inline AV *av_int(arena *a, int64_t i) {
  AV *v = av_new(a);
  v->value_case = AVC(INT_VALUE);
  v->int_value = i;
  return v;
}

static inline AV *av_double(arena *a, double d) {
  AV *v = av_new(a);
  v->value_case = AVC(DOUBLE_VALUE);
  v->double_value = d;
  return v;
}

static inline AV *av_bytes(arena *a, const void *p, size_t n) {
  AV *v = av_new(a);
  v->value_case = AVC(BYTES_VALUE);
  v->bytes_value.data = ar_new(a, n);
  if (n) memcpy(v->bytes_value.data, p, n);
  v->bytes_value.len = n;
  return v;
}

static inline AV *av_array(arena *a, size_t n, AV *const *elems) {
  AV *v = av_new(a);
  ArrayV *arr = ar_new(a, sizeof *arr);
  opentelemetry__proto__common__v1__array_value__init(arr);
  arr->n_values = n;
  arr->values = ar_ptrs(a, (void *const *)elems, n);
  v->value_case = AVC(ARRAY_VALUE);
  v->array_value = arr;
  return v;
}
#define AV_ARRAY(a, ...) av_array((a), NPTRS(__VA_ARGS__), (AV *[]){__VA_ARGS__})

static inline AV *av_kvlist(arena *a, size_t n, KV *const *kvs) {
  AV *v = av_new(a);
  KVList *l = ar_new(a, sizeof *l);
  opentelemetry__proto__common__v1__key_value_list__init(l);
  l->n_values = n;
  l->values = ar_ptrs(a, (void *const *)kvs, n);
  v->value_case = AVC(KVLIST_VALUE);
  v->kvlist_value = l;
  return v;
}
#define AV_KVLIST(a, ...) av_kvlist((a), NPTRS(__VA_ARGS__), (KV *[]){__VA_ARGS__})

static inline KV *kv(arena *a, const char *key, AV *v) {
  KV *k = ar_new(a, sizeof *k);
  opentelemetry__proto__common__v1__key_value__init(k);
  k->key = (char *)key;
  k->value = v;
  return k;
}

/* ---- ids, spans, containers ---- */

static inline ProtobufCBinaryData bin(arena *a, const void *p, size_t n) {
  ProtobufCBinaryData d = {n, ar_new(a, n)};
  if (n) memcpy(d.data, p, n);
  return d;
}

/* An id of n bytes: seed, seed+1, ... (non-zero for seed >= 1). */
static inline ProtobufCBinaryData id_bytes(arena *a, size_t n, uint8_t seed) {
  ProtobufCBinaryData d = {n, ar_new(a, n)};
  for (size_t i = 0; i < n; i++) d.data[i] = (uint8_t)(seed + i);
  return d;
}

/* A valid span with just ids, a name, a kind and times. */
static inline Span *span_min(arena *a, uint8_t seed) {
  Span *s = ar_new(a, sizeof *s);
  opentelemetry__proto__trace__v1__span__init(s);
  s->trace_id = id_bytes(a, 16, seed);
  s->span_id = id_bytes(a, 8, (uint8_t)(seed + 100));
  s->name = "op";
  s->kind = 2;
  s->start_time_unix_nano = 1700000000000000000ull + seed;
  s->end_time_unix_nano = 1700000000000001000ull + seed;
  return s;
}

static inline Scope *scope_new(arena *a, const char *name, const char *version) {
  Scope *s = ar_new(a, sizeof *s);
  opentelemetry__proto__common__v1__instrumentation_scope__init(s);
  s->name = (char *)name;
  s->version = (char *)version;
  return s;
}

static inline SS *ss_new(arena *a, Scope *scope, size_t n, Span *const *spans) {
  SS *s = ar_new(a, sizeof *s);
  opentelemetry__proto__trace__v1__scope_spans__init(s);
  s->scope = scope;
  s->n_spans = n;
  s->spans = ar_ptrs(a, (void *const *)spans, n);
  return s;
}
#define SS_NEW(a, scope, ...) ss_new((a), (scope), NPTRS(__VA_ARGS__), (Span *[]){__VA_ARGS__})

static inline Resource *resource_new(arena *a, size_t n, KV *const *attrs) {
  Resource *r = ar_new(a, sizeof *r);
  opentelemetry__proto__resource__v1__resource__init(r);
  r->n_attributes = n;
  r->attributes = ar_ptrs(a, (void *const *)attrs, n);
  return r;
}

static inline RS *rs_new(arena *a, Resource *res, size_t n, SS *const *ss) {
  RS *r = ar_new(a, sizeof *r);
  opentelemetry__proto__trace__v1__resource_spans__init(r);
  r->resource = res;
  r->n_scope_spans = n;
  r->scope_spans = ar_ptrs(a, (void *const *)ss, n);
  return r;
}
#define RS_NEW(a, res, ...) rs_new((a), (res), NPTRS(__VA_ARGS__), (SS *[]){__VA_ARGS__})

static inline Req *req_new(arena *a, size_t n, RS *const *rs) {
  Req *r = ar_new(a, sizeof *r);
  opentelemetry__proto__collector__trace__v1__export_trace_service_request__init(r);
  r->n_resource_spans = n;
  r->resource_spans = ar_ptrs(a, (void *const *)rs, n);
  return r;
}
#define REQ_NEW(a, ...) req_new((a), NPTRS(__VA_ARGS__), (RS *[]){__VA_ARGS__})

/* ---- packing ---- */

static inline pf_buf pack_req(const Req *r) {
  pf_buf b = {0};
  size_t n =
      opentelemetry__proto__collector__trace__v1__export_trace_service_request__get_packed_size(r);
  if (pf_buf_reserve(&b, n + 1)) abort();
  b.len = opentelemetry__proto__collector__trace__v1__export_trace_service_request__pack(r, b.p);
  return b;
}

static inline pf_buf pack_rs(const RS *r) {
  pf_buf b = {0};
  size_t n = opentelemetry__proto__trace__v1__resource_spans__get_packed_size(r);
  if (pf_buf_reserve(&b, n + 1)) abort();
  b.len = opentelemetry__proto__trace__v1__resource_spans__pack(r, b.p);
  return b;
}

static inline pf_buf pack_span(const Span *s) {
  pf_buf b = {0};
  size_t n = opentelemetry__proto__trace__v1__span__get_packed_size(s);
  if (pf_buf_reserve(&b, n + 1)) abort();
  b.len = opentelemetry__proto__trace__v1__span__pack(s, b.p);
  return b;
}

static inline pf_buf pack_av(const AV *v) {
  pf_buf b = {0};
  size_t n = opentelemetry__proto__common__v1__any_value__get_packed_size(v);
  if (pf_buf_reserve(&b, n + 1)) abort();
  b.len = opentelemetry__proto__common__v1__any_value__pack(v, b.p);
  return b;
}

static inline Req *unpack_req(const uint8_t *p, size_t n) {
  return opentelemetry__proto__collector__trace__v1__export_trace_service_request__unpack(NULL, n,
                                                                                          p);
}

static inline void free_req(Req *r) {
  opentelemetry__proto__collector__trace__v1__export_trace_service_request__free_unpacked(r, NULL);
}

/* ---- chunk comparison ---- */

/* Records equal byte for byte except for the scope pointer, which only has to name a scope
 * with the same name and version. */
static inline bool recs_equal(const pf_span_rec *a, const pf_span_rec *b) {
  if (a->size != b->size) return false;
  pf_span_rec ha = *a, hb = *b;
  const pf_scope *sa = ha.scope, *sb = hb.scope;
  ha.scope = hb.scope = NULL;
  if (memcmp(&ha, &hb, sizeof ha) != 0) return false;
  if (memcmp(a + 1, b + 1, a->size - sizeof *a) != 0) return false;
  if (!sa || !sb) return sa == sb;
  return strcmp(sa->name, sb->name) == 0 && strcmp(sa->version, sb->version) == 0;
}

static inline bool chunks_equal(const pc_chunk *a, const pc_chunk *b) {
  if (a->n_spans != b->n_spans || a->resource.n_attrs != b->resource.n_attrs ||
      a->resource.attrs.len != b->resource.attrs.len)
    return false;
  if (a->resource.attrs.len &&
      memcmp(a->resource.attrs.p, b->resource.attrs.p, a->resource.attrs.len) != 0)
    return false;
  for (uint32_t i = 0; i < a->n_spans; i++)
    if (!recs_equal(a->spans[i], b->spans[i])) return false;
  return true;
}

/* Re-encodes a chunk with the SDK encoder and decodes that again: the invariant every decoded
 * chunk must keep. Returns the number of spans the second decode found, or -1. */
static inline long reencode_count(const pc_chunk *c) {
  pf_buf b = {0};
  pf_batch batch = pc_chunk_batch(c);
  long n = -1;
  if (pf_otlp_encode_request(&b, &batch) == 0) {
    pc_decode_result r;
    if (pc_decode_otlp_proto(b.p, b.len, NULL, &r) == 0 && r.rejected == 0) n = (long)r.n_spans;
    pc_decode_result_free(&r);
  }
  pf_buf_free(&b);
  return n;
}

/* ---- the everything request ---- */

static const uint8_t g_bytes[] = {0, 1, 2, 0xff};

typedef struct full {
  arena a;
  Req *req;
  Span *s0, *s1, *s2, *s3;
} full;

/* Two resource spans, three scope spans (one without a scope), and one span with every field
 * and every kind of attribute value. */
static inline void build_full(full *f) {
  arena *a = &f->a;
  memset(f, 0, sizeof *f);
  Span *s = f->s0 = span_min(a, 1);
  s->trace_state = "a=1";
  s->parent_span_id = id_bytes(a, 8, 50);
  s->name = "GET /x";
  s->kind = 3;
  SET_REP(
      a, s, attributes, kv(a, "str", av_str(a, "hello")), kv(a, "bool", av_bool(a, true)),
      kv(a, "int", av_int(a, -42)), kv(a, "dbl", av_double(a, 1.5)),
      kv(a, "sa", AV_ARRAY(a, av_str(a, "a"), av_str(a, ""), av_str(a, "\xc3\xbc"))),
      kv(a, "ba", AV_ARRAY(a, av_bool(a, true), av_bool(a, false))),
      kv(a, "ia", AV_ARRAY(a, av_int(a, 1), av_int(a, -1), av_int(a, INT64_MAX))),
      kv(a, "da", AV_ARRAY(a, av_double(a, 0.5), av_double(a, NAN))),
      kv(a, "ea", av_array(a, 0, NULL)), kv(a, "by", av_bytes(a, g_bytes, sizeof g_bytes)),
      kv(a, "kv", AV_KVLIST(a, kv(a, "x", av_int(a, 1)), kv(a, "y", AV_ARRAY(a, av_str(a, "z"))))),
      kv(a, "mix", AV_ARRAY(a, av_str(a, "a"), av_int(a, 1))),
      kv(a, "nest", AV_ARRAY(a, AV_ARRAY(a, av_int(a, 1)))), kv(a, "empty", av_new(a)));
  s->dropped_attributes_count = 2;
  Event *e0 = ar_new(a, sizeof *e0), *e1 = ar_new(a, sizeof *e1);
  opentelemetry__proto__trace__v1__span__event__init(e0);
  opentelemetry__proto__trace__v1__span__event__init(e1);
  e0->time_unix_nano = 1700000000000000500ull;
  e0->name = "ev";
  SET_REP(a, e0, attributes, kv(a, "e", av_str(a, "v")),
          kv(a, "ekv", AV_KVLIST(a, kv(a, "q", av_bool(a, false)))));
  e0->dropped_attributes_count = 1;
  SET_REP(a, s, events, e0, e1);
  s->dropped_events_count = 4;
  Link *l0 = ar_new(a, sizeof *l0), *l1 = ar_new(a, sizeof *l1);
  opentelemetry__proto__trace__v1__span__link__init(l0);
  opentelemetry__proto__trace__v1__span__link__init(l1);
  l0->trace_id = id_bytes(a, 16, 60);
  l0->span_id = id_bytes(a, 8, 70);
  l0->trace_state = "b=2";
  SET_REP(a, l0, attributes, kv(a, "li", av_int(a, 7)));
  l0->dropped_attributes_count = 5;
  l0->flags = 0x301;
  l1->trace_id = id_bytes(a, 16, 80);
  l1->span_id = id_bytes(a, 8, 90);
  SET_REP(a, s, links, l0, l1);
  s->dropped_links_count = 6;
  Status *st = ar_new(a, sizeof *st);
  opentelemetry__proto__trace__v1__status__init(st);
  st->message = "boom";
  st->code = 2;
  s->status = st;
  s->flags = 1;

  f->s1 = span_min(a, 2);
  f->s2 = span_min(a, 3);
  f->s2->parent_span_id = id_bytes(a, 8, 9);
  f->s3 = span_min(a, 4);
  Scope *sc = scope_new(a, "lib.a", "1.2");
  SET_REP(a, sc, attributes, kv(a, "scope.attr", av_str(a, "x")));
  Resource *res = resource_new(
      a, 2, (KV *[]){kv(a, "service.name", av_str(a, "svc")), kv(a, "n", av_int(a, 42))});
  res->dropped_attributes_count = 3;
  RS *rs0 = RS_NEW(a, res, SS_NEW(a, sc, f->s0, f->s1), SS_NEW(a, NULL, f->s2));
  rs0->schema_url = "https://schema/1";
  RS *rs1 = RS_NEW(a, NULL, SS_NEW(a, scope_new(a, "lib.b", ""), f->s3));
  f->req = REQ_NEW(a, rs0, rs1);
}

#endif
