/* Tests for the hand-written OTLP protobuf encoder (exporters/otlp_encode.c): records built with
 * rec_builder.h are encoded, decoded with protobuf-c and checked field by field; protobuf-c's
 * own re-encoding of the decoded message must equal our bytes (canonical output). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "../../collector/pc_chunk.h" /* PF_ATTR_BYTES, PF_ATTR_ANYVALUE */
#include "opentelemetry/proto/collector/trace/v1/trace_service.pb-c.h"
#include "pf_exporter.h"
#include "rec_builder.h"

typedef Opentelemetry__Proto__Collector__Trace__V1__ExportTraceServiceRequest Req;
typedef Opentelemetry__Proto__Trace__V1__Span Span;
typedef Opentelemetry__Proto__Common__V1__KeyValue KV;
typedef Opentelemetry__Proto__Common__V1__AnyValue AV;

#define AV_CASE(x) OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_##x

/* Decodes buf and checks that protobuf-c re-encodes it to exactly the same bytes. */
static Req *decode_canonical(const pf_buf *b) {
  Req *req = opentelemetry__proto__collector__trace__v1__export_trace_service_request__unpack(
      NULL, b->len, b->p);
  assert_non_null(req);
  size_t n =
      opentelemetry__proto__collector__trace__v1__export_trace_service_request__get_packed_size(
          req);
  assert_int_equal(n, b->len);
  uint8_t *again = malloc(n ? n : 1);
  assert_non_null(again);
  opentelemetry__proto__collector__trace__v1__export_trace_service_request__pack(req, again);
  assert_memory_equal(again, b->p, n);
  free(again);
  return req;
}

static void free_req(Req *r) {
  opentelemetry__proto__collector__trace__v1__export_trace_service_request__free_unpacked(r, NULL);
}

static void check_scalar(const AV *v, profilis_attr_type t, const void *elem) {
  switch (t) {
  case PROFILIS_ATTR_STRING:
  case PROFILIS_ATTR_STRING_ARRAY:
    assert_int_equal(v->value_case, AV_CASE(STRING_VALUE));
    assert_string_equal(v->string_value, (const char *)elem);
    break;
  case PROFILIS_ATTR_BOOL:
  case PROFILIS_ATTR_BOOL_ARRAY:
    assert_int_equal(v->value_case, AV_CASE(BOOL_VALUE));
    assert_int_equal(!!v->bool_value, *(const bool *)elem);
    break;
  case PROFILIS_ATTR_INT:
  case PROFILIS_ATTR_INT_ARRAY:
    assert_int_equal(v->value_case, AV_CASE(INT_VALUE));
    assert_true(v->int_value == *(const int64_t *)elem);
    break;
  default: {
    assert_int_equal(v->value_case, AV_CASE(DOUBLE_VALUE));
    double want = *(const double *)elem;
    /* bit-exact: NaN, infinities and -0.0 must survive */
    assert_memory_equal(&v->double_value, &want, sizeof want);
  }
  }
}

static const void *array_elem(const profilis_attr *a, size_t i) {
  switch (a->type) {
  case PROFILIS_ATTR_STRING_ARRAY:
    return a->v.sa[i];
  case PROFILIS_ATTR_BOOL_ARRAY:
    return &a->v.ba[i];
  case PROFILIS_ATTR_INT_ARRAY:
    return &a->v.ia[i];
  default:
    return &a->v.da[i];
  }
}

static void check_kv(const KV *kv, const profilis_attr *a) {
  assert_string_equal(kv->key, a->key);
  assert_non_null(kv->value);
  if (a->type >= PROFILIS_ATTR_STRING_ARRAY) {
    assert_int_equal(kv->value->value_case, AV_CASE(ARRAY_VALUE));
    const Opentelemetry__Proto__Common__V1__ArrayValue *arr = kv->value->array_value;
    assert_non_null(arr);
    assert_int_equal(arr->n_values, a->len);
    for (size_t i = 0; i < a->len; i++) check_scalar(arr->values[i], a->type, array_elem(a, i));
    return;
  }
  const void *elem = a->type == PROFILIS_ATTR_STRING ? (const void *)a->v.s
                     : a->type == PROFILIS_ATTR_BOOL ? (const void *)&a->v.b
                     : a->type == PROFILIS_ATTR_INT  ? (const void *)&a->v.i
                                                     : (const void *)&a->v.d;
  check_scalar(kv->value, a->type, elem);
}

static void check_kvs(KV **kvs, size_t n, const profilis_attr *want, size_t n_want) {
  assert_int_equal(n, n_want);
  for (size_t i = 0; i < n; i++) check_kv(kvs[i], &want[i]);
}

static void check_bytes(ProtobufCBinaryData d, const uint8_t *want, size_t n) {
  assert_int_equal(d.len, n);
  if (n) assert_memory_equal(d.data, want, n);
}

/* ---- fixtures: every attribute type, events, links, two scopes and a scope-less span ---- */

static const char *const g_strs[] = {"a", "", "c\"d"};
static const bool g_bools[] = {true, false, true};
static const int64_t g_ints[] = {0, -1, INT64_MAX, INT64_MIN};
static double g_dbls[4];

static profilis_attr g_span_attrs[12];
static const profilis_attr g_event_attrs[] = {PROFILIS_ATTR_STR("exception.type", "E"),
                                              PROFILIS_ATTR_INT("n", 7)};
static const profilis_attr g_link_attrs[] = {PROFILIS_ATTR_BOOL("l.b", true)};
static const profilis_attr g_res_attrs[] = {PROFILIS_ATTR_STR("service.name", "svc"),
                                            PROFILIS_ATTR_INT("pid", 4242)};

static void init_attrs(void) {
  g_dbls[0] = 1.5;
  g_dbls[1] = -0.0;
  g_dbls[2] = INFINITY;
  g_dbls[3] = NAN;
  size_t i = 0;
  g_span_attrs[i++] = PROFILIS_ATTR_STR("http.method", "GET");
  g_span_attrs[i++] = PROFILIS_ATTR_STR("empty", "");
  g_span_attrs[i++] = PROFILIS_ATTR_BOOL("ok", false);
  g_span_attrs[i++] = PROFILIS_ATTR_BOOL("yes", true);
  g_span_attrs[i++] = PROFILIS_ATTR_INT("zero", 0);
  g_span_attrs[i++] = PROFILIS_ATTR_INT("neg", -5);
  g_span_attrs[i++] = PROFILIS_ATTR_DOUBLE("pi", 3.141592653589793);
  g_span_attrs[i++] = PROFILIS_ATTR_DOUBLE("nan", NAN);
  g_span_attrs[i++] =
      (profilis_attr){.key = "sa", .type = PROFILIS_ATTR_STRING_ARRAY, .len = 3, .v.sa = g_strs};
  g_span_attrs[i++] =
      (profilis_attr){.key = "ba", .type = PROFILIS_ATTR_BOOL_ARRAY, .len = 3, .v.ba = g_bools};
  g_span_attrs[i++] =
      (profilis_attr){.key = "ia", .type = PROFILIS_ATTR_INT_ARRAY, .len = 4, .v.ia = g_ints};
  g_span_attrs[i++] =
      (profilis_attr){.key = "da", .type = PROFILIS_ATTR_DOUBLE_ARRAY, .len = 4, .v.da = g_dbls};
}

static pf_scope g_scope_a = {.name = "lib.a", .version = "1.2.3", .index = 0};
static pf_scope g_scope_b = {.name = "lib.b", .version = "", .index = 1};

static rb_span full_span(void) {
  static rb_event events[2];
  static rb_link links[2];
  events[0] = (rb_event){.name = "exception",
                         .time_ns = 1700000000000000500ull,
                         .attrs = g_event_attrs,
                         .n_attrs = 2,
                         .dropped_attrs = 3};
  events[1] = (rb_event){.name = "", .time_ns = 0}; /* every default */
  links[0] = (rb_link){.flags = 0x301,
                       .tracestate = "k=v,a=b",
                       .attrs = g_link_attrs,
                       .n_attrs = 1,
                       .dropped_attrs = 2};
  rb_id(links[0].trace_id, 16, 0x40);
  rb_id(links[0].span_id, 8, 0x60);
  links[1] = (rb_link){.flags = 0};
  rb_id(links[1].trace_id, 16, 0x70);
  rb_id(links[1].span_id, 8, 0x90);
  rb_span s = {.name = "GET /users/{id}",
               .status_msg = "boom \"x\"",
               .tracestate = "vendor=1",
               .kind = PROFILIS_SPAN_KIND_SERVER,
               .status_code = PROFILIS_STATUS_ERROR,
               .trace_flags = 1,
               .has_parent = 1,
               .start_ns = 1700000000000000000ull,
               .end_ns = 1700000000001234567ull,
               .scope = &g_scope_a,
               .attrs = g_span_attrs,
               .n_attrs = 12,
               .events = events,
               .n_events = 2,
               .links = links,
               .n_links = 2,
               .dropped_attrs = 5,
               .dropped_events = 6,
               .dropped_links = 300};
  rb_id(s.trace_id, 16, 1);
  rb_id(s.span_id, 8, 0x21);
  rb_id(s.parent_span_id, 8, 0x31);
  return s;
}

static void check_full_span(const Span *sp) {
  rb_span s = full_span();
  check_bytes(sp->trace_id, s.trace_id, 16);
  check_bytes(sp->span_id, s.span_id, 8);
  check_bytes(sp->parent_span_id, s.parent_span_id, 8);
  assert_string_equal(sp->trace_state, "vendor=1");
  assert_string_equal(sp->name, "GET /users/{id}");
  assert_int_equal(sp->kind, 2);
  assert_true(sp->start_time_unix_nano == s.start_ns);
  assert_true(sp->end_time_unix_nano == s.end_ns);
  check_kvs(sp->attributes, sp->n_attributes, g_span_attrs, 12);
  assert_int_equal(sp->dropped_attributes_count, 5);
  assert_int_equal(sp->dropped_events_count, 6);
  assert_int_equal(sp->dropped_links_count, 300);
  assert_int_equal(sp->n_events, 2);
  assert_true(sp->events[0]->time_unix_nano == 1700000000000000500ull);
  assert_string_equal(sp->events[0]->name, "exception");
  check_kvs(sp->events[0]->attributes, sp->events[0]->n_attributes, g_event_attrs, 2);
  assert_int_equal(sp->events[0]->dropped_attributes_count, 3);
  assert_true(sp->events[1]->time_unix_nano == 0);
  assert_string_equal(sp->events[1]->name, "");
  assert_int_equal(sp->events[1]->n_attributes, 0);
  assert_int_equal(sp->n_links, 2);
  check_bytes(sp->links[0]->trace_id, s.links[0].trace_id, 16);
  check_bytes(sp->links[0]->span_id, s.links[0].span_id, 8);
  assert_string_equal(sp->links[0]->trace_state, "k=v,a=b");
  check_kvs(sp->links[0]->attributes, sp->links[0]->n_attributes, g_link_attrs, 1);
  assert_int_equal(sp->links[0]->dropped_attributes_count, 2);
  assert_int_equal(sp->links[0]->flags, 0x301);
  check_bytes(sp->links[1]->trace_id, s.links[1].trace_id, 16);
  assert_string_equal(sp->links[1]->trace_state, "");
  assert_int_equal(sp->links[1]->flags, 0);
  assert_non_null(sp->status);
  assert_int_equal(sp->status->code, 2);
  assert_string_equal(sp->status->message, "boom \"x\"");
  assert_int_equal(sp->flags, 1);
}

static rb_span minimal_span(const pf_scope *scope, uint8_t seed) {
  rb_span s = {.scope = scope}; /* empty name, no parent, kind 0, no times, no status */
  rb_id(s.trace_id, 16, seed);
  rb_id(s.span_id, 8, (uint8_t)(seed + 0x80));
  return s;
}

static void check_minimal_span(const Span *sp, uint8_t seed) {
  rb_span s = minimal_span(NULL, seed);
  check_bytes(sp->trace_id, s.trace_id, 16);
  check_bytes(sp->span_id, s.span_id, 8);
  assert_int_equal(sp->parent_span_id.len, 0);
  assert_string_equal(sp->name, "");
  assert_string_equal(sp->trace_state, "");
  assert_int_equal(sp->kind, 0);
  assert_true(sp->start_time_unix_nano == 0 && sp->end_time_unix_nano == 0);
  assert_int_equal(sp->n_attributes + sp->n_events + sp->n_links, 0);
  assert_int_equal(sp->dropped_attributes_count + sp->dropped_events_count, 0);
  assert_int_equal(sp->dropped_links_count + sp->flags, 0);
  assert_null(sp->status);
}

typedef struct fixture {
  pf_buf bufs[700];
  const pf_span_rec *spans[700];
  size_t n;
  pf_resource res;
  pf_buf out;
} fixture;

static fixture *fx_new(void) {
  fixture *f = calloc(1, sizeof *f);
  assert_non_null(f);
  return f;
}

static void fx_add(fixture *f, const rb_span *s) {
  assert_int_equal(rb_build(&f->bufs[f->n], s), 0);
  f->spans[f->n] = (const pf_span_rec *)f->bufs[f->n].p;
  f->n++;
}

static void fx_free(fixture *f) {
  for (size_t i = 0; i < f->n; i++) pf_buf_free(&f->bufs[i]);
  pf_buf_free(&f->res.attrs);
  pf_buf_free(&f->out);
  free(f);
}

static pf_batch fx_batch(fixture *f) {
  return (pf_batch){.resource = &f->res, .spans = f->spans, .n = f->n};
}

/* ---- tests ---- */

static void test_every_field_two_scopes(void **state) {
  (void)state;
  fixture *f = fx_new();
  assert_int_equal(rb_resource(&f->res, g_res_attrs, 2), 0);
  rb_span full = full_span();
  rb_span min_b = minimal_span(&g_scope_b, 0x11);
  rb_span only_msg = minimal_span(&g_scope_a, 0x12);
  only_msg.status_msg = "just a message"; /* status code unset, message kept */
  only_msg.name = "n";
  rb_span only_code = minimal_span(NULL, 0x13);
  only_code.status_code = PROFILIS_STATUS_OK;
  fx_add(f, &full);      /* scope A */
  fx_add(f, &min_b);     /* scope B */
  fx_add(f, &only_msg);  /* scope A again: grouped with the first span */
  fx_add(f, &only_code); /* no scope: a ScopeSpans without InstrumentationScope */
  pf_batch b = fx_batch(f);
  assert_int_equal(pf_otlp_encode_request(&f->out, &b), 0);

  Req *req = decode_canonical(&f->out);
  assert_int_equal(req->n_resource_spans, 1);
  const Opentelemetry__Proto__Trace__V1__ResourceSpans *rs = req->resource_spans[0];
  assert_non_null(rs->resource);
  check_kvs(rs->resource->attributes, rs->resource->n_attributes, g_res_attrs, 2);
  assert_int_equal(rs->n_scope_spans, 3);

  const Opentelemetry__Proto__Trace__V1__ScopeSpans *a = rs->scope_spans[0];
  assert_string_equal(a->scope->name, "lib.a");
  assert_string_equal(a->scope->version, "1.2.3");
  assert_int_equal(a->n_spans, 2);
  check_full_span(a->spans[0]);
  assert_string_equal(a->spans[1]->name, "n");
  assert_non_null(a->spans[1]->status);
  assert_int_equal(a->spans[1]->status->code, 0);
  assert_string_equal(a->spans[1]->status->message, "just a message");

  const Opentelemetry__Proto__Trace__V1__ScopeSpans *sb = rs->scope_spans[1];
  assert_string_equal(sb->scope->name, "lib.b");
  assert_string_equal(sb->scope->version, "");
  assert_int_equal(sb->n_spans, 1);
  check_minimal_span(sb->spans[0], 0x11);

  const Opentelemetry__Proto__Trace__V1__ScopeSpans *none = rs->scope_spans[2];
  assert_null(none->scope);
  assert_int_equal(none->n_spans, 1);
  assert_non_null(none->spans[0]->status);
  assert_int_equal(none->spans[0]->status->code, 1);
  assert_string_equal(none->spans[0]->status->message, "");
  free_req(req);
  fx_free(f);
}

static void test_empty_batch_appends_nothing(void **state) {
  (void)state;
  fixture *f = fx_new();
  assert_int_equal(pf_buf_append(&f->out, "xy", 2), 0);
  pf_batch b = fx_batch(f);
  assert_int_equal(pf_otlp_encode_request(&f->out, &b), 0);
  assert_int_equal(f->out.len, 2);
  assert_memory_equal(f->out.p, "xy", 2);
  assert_int_equal(pf_otlp_encode_request(NULL, &b), PROFILIS_EINVAL);
  assert_int_equal(pf_otlp_encode_request(&f->out, NULL), PROFILIS_EINVAL);
  fx_free(f);
}

/* Appends after existing bytes; a batch without a resource and empty strings everywhere. */
static void test_appends_and_no_resource(void **state) {
  (void)state;
  fixture *f = fx_new();
  pf_scope empty_scope = {.name = "", .version = NULL};
  rb_span s = minimal_span(&empty_scope, 0x50);
  profilis_attr e = PROFILIS_ATTR_STR("k", "");
  s.attrs = &e;
  s.n_attrs = 1;
  fx_add(f, &s);
  assert_int_equal(pf_buf_append(&f->out, "HDR", 3), 0);
  pf_batch b = {.resource = NULL, .spans = f->spans, .n = 1};
  assert_int_equal(pf_otlp_encode_request(&f->out, &b), 0);
  assert_memory_equal(f->out.p, "HDR", 3);
  pf_buf body = {.p = f->out.p + 3, .len = f->out.len - 3};
  Req *req = decode_canonical(&body);
  const Opentelemetry__Proto__Trace__V1__ResourceSpans *rs = req->resource_spans[0];
  assert_null(rs->resource);
  assert_non_null(rs->scope_spans[0]->scope); /* present, with empty name and version */
  assert_string_equal(rs->scope_spans[0]->scope->name, "");
  const Span *sp = rs->scope_spans[0]->spans[0];
  assert_int_equal(sp->n_attributes, 1);
  /* an empty string value is still a set oneof */
  assert_int_equal(sp->attributes[0]->value->value_case, AV_CASE(STRING_VALUE));
  assert_string_equal(sp->attributes[0]->value->string_value, "");
  free_req(req);
  fx_free(f);
}

/* More spans than the size cache, interleaved scopes, and lengths needing 2- and 3-byte varints. */
static void test_many_spans_large_values(void **state) {
  (void)state;
  fixture *f = fx_new();
  assert_int_equal(rb_resource(&f->res, g_res_attrs, 2), 0);
  size_t big_n = 20000;
  char *big = malloc(big_n + 1);
  assert_non_null(big);
  memset(big, 'x', big_n);
  big[big_n] = 0;
  profilis_attr attrs[2] = {PROFILIS_ATTR_STR("big", big), PROFILIS_ATTR_INT("i", 1)};
  for (size_t i = 0; i < 700; i++) {
    rb_span s = minimal_span(i % 3 == 1 ? &g_scope_b : &g_scope_a, (uint8_t)i);
    s.start_ns = i + 1;
    s.attrs = attrs;
    s.n_attrs = (i % 100 == 0) ? 2 : 1; /* a few spans carry the 20 KB string */
    if (s.n_attrs == 1) s.attrs = &attrs[1];
    fx_add(f, &s);
  }
  pf_batch b = fx_batch(f);
  assert_int_equal(pf_otlp_encode_request(&f->out, &b), 0);
  Req *req = decode_canonical(&f->out);
  const Opentelemetry__Proto__Trace__V1__ResourceSpans *rs = req->resource_spans[0];
  assert_int_equal(rs->n_scope_spans, 2);
  assert_string_equal(rs->scope_spans[0]->scope->name, "lib.a");
  assert_int_equal(rs->scope_spans[0]->n_spans, 700 - 233);
  assert_int_equal(rs->scope_spans[1]->n_spans, 233);
  /* order within a scope follows the batch */
  uint64_t last = 0;
  for (size_t i = 0; i < rs->scope_spans[0]->n_spans; i++) {
    const Span *sp = rs->scope_spans[0]->spans[i];
    assert_true(sp->start_time_unix_nano > last);
    last = sp->start_time_unix_nano;
    size_t idx = (size_t)last - 1;
    if (idx % 100 == 0) {
      assert_int_equal(sp->n_attributes, 2);
      assert_int_equal(strlen(sp->attributes[0]->value->string_value), big_n);
    }
  }
  free_req(req);
  free(big);
  fx_free(f);
}

/* A record whose sections overrun its size is skipped; a truncated attribute section ends the
 * attribute list without harm. */
static void test_corrupt_records(void **state) {
  (void)state;
  fixture *f = fx_new();
  rb_span s = minimal_span(&g_scope_a, 1);
  profilis_attr attrs[2] = {PROFILIS_ATTR_INT("a", 1), PROFILIS_ATTR_STR("b", "bbbb")};
  s.attrs = attrs;
  s.n_attrs = 2;
  fx_add(f, &s); /* 0: attrs_len shortened, cutting the second entry */
  fx_add(f, &s); /* 1: attrs_len beyond the record: skipped */
  fx_add(f, &s); /* 2: intact */
  pf_span_rec *r0 = (pf_span_rec *)f->bufs[0].p;
  pf_span_rec *r1 = (pf_span_rec *)f->bufs[1].p;
  r0->attrs_len -= 3;
  r0->links_len += 3; /* keep the total consistent: the tail now reads as a bad link section */
  r1->attrs_len += 1000;
  pf_batch b = fx_batch(f);
  assert_int_equal(pf_otlp_encode_request(&f->out, &b), 0);
  Req *req = decode_canonical(&f->out);
  const Opentelemetry__Proto__Trace__V1__ScopeSpans *ss = req->resource_spans[0]->scope_spans[0];
  assert_int_equal(ss->n_spans, 2);
  assert_int_equal(ss->spans[0]->n_attributes, 1);
  assert_int_equal(ss->spans[0]->n_links, 0);
  check_kvs(ss->spans[1]->attributes, ss->spans[1]->n_attributes, attrs, 2);
  free_req(req);
  fx_free(f);
}

/* Appends one attribute entry of any type (also the collector's) straight to a section. */
static void raw_attr(pf_buf *b, int type, const char *key, const void *val, size_t n) {
  pf_attr_hdr h = {.type = (uint8_t)type, .key_len = (uint16_t)strlen(key), .val_len = (uint32_t)n};
  assert_int_equal(pf_buf_append(b, &h, sizeof h), 0);
  assert_int_equal(pf_buf_append(b, key, h.key_len), 0);
  assert_int_equal(pf_buf_append(b, val, n), 0);
}

/* The collector's bytes and raw AnyValue attributes: bytes_value (field 7), and the AnyValue
 * message written back verbatim, in span, event and resource sections alike. */
static void test_collector_value_types(void **state) {
  (void)state;
  /* AnyValue{kvlist_value{values: [{key "k", value {int_value 5}}]}} packed by protobuf-c */
  AV inner = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__INIT, outer = inner, empty = inner;
  inner.value_case = AV_CASE(INT_VALUE);
  inner.int_value = 5;
  KV kv = OPENTELEMETRY__PROTO__COMMON__V1__KEY_VALUE__INIT;
  kv.key = "k";
  kv.value = &inner;
  KV *kvs[] = {&kv};
  Opentelemetry__Proto__Common__V1__KeyValueList list =
      OPENTELEMETRY__PROTO__COMMON__V1__KEY_VALUE_LIST__INIT;
  list.n_values = 1;
  list.values = kvs;
  outer.value_case = AV_CASE(KVLIST_VALUE);
  outer.kvlist_value = &list;
  uint8_t packed[64];
  size_t plen = opentelemetry__proto__common__v1__any_value__pack(&outer, packed);
  static const uint8_t bytes[] = {0, 0xff, 'x'};

  fixture *f = fx_new();
  rb_span s = minimal_span(&g_scope_a, 3);
  fx_add(f, &s);
  pf_buf *rec = &f->bufs[0];
  size_t a0 = rec->len;
  raw_attr(rec, PF_ATTR_BYTES, "by", bytes, sizeof bytes);
  raw_attr(rec, PF_ATTR_BYTES, "nob", "", 0);
  raw_attr(rec, PF_ATTR_ANYVALUE, "kv", packed, plen);
  raw_attr(rec, PF_ATTR_ANYVALUE, "none", "", 0);
  raw_attr(rec, 77, "unknown", "zz", 2); /* still skipped */
  pf_span_rec *h = (pf_span_rec *)rec->p;
  h->n_attrs = 5;
  h->attrs_len = (uint32_t)(rec->len - a0);
  h->size = (uint32_t)rec->len;
  f->spans[0] = h;
  raw_attr(&f->res.attrs, PF_ATTR_ANYVALUE, "res.kv", packed, plen);
  f->res.n_attrs = 1;
  pf_batch b = fx_batch(f);
  assert_int_equal(pf_otlp_encode_request(&f->out, &b), 0);
  Req *req = decode_canonical(&f->out);
  const Span *sp = req->resource_spans[0]->scope_spans[0]->spans[0];
  assert_int_equal(sp->n_attributes, 4);
  assert_string_equal(sp->attributes[0]->key, "by");
  assert_int_equal(sp->attributes[0]->value->value_case, AV_CASE(BYTES_VALUE));
  check_bytes(sp->attributes[0]->value->bytes_value, bytes, sizeof bytes);
  assert_int_equal(sp->attributes[1]->value->value_case, AV_CASE(BYTES_VALUE));
  assert_int_equal(sp->attributes[1]->value->bytes_value.len, 0);
  for (int i = 2; i < 4; i++) { /* verbatim: packing the decoded value gives the same bytes */
    const AV *v = sp->attributes[i]->value;
    assert_non_null(v);
    uint8_t again[64];
    size_t n = opentelemetry__proto__common__v1__any_value__pack(v, again);
    assert_int_equal(n, i == 2 ? plen : 0);
    if (n) assert_memory_equal(again, packed, n);
  }
  assert_int_equal(sp->attributes[2]->value->value_case, AV_CASE(KVLIST_VALUE));
  assert_int_equal(sp->attributes[2]->value->kvlist_value->values[0]->value->int_value, 5);
  assert_int_equal(sp->attributes[3]->value->value_case, empty.value_case);
  const KV *rkv = req->resource_spans[0]->resource->attributes[0];
  assert_string_equal(rkv->key, "res.kv");
  assert_int_equal(rkv->value->kvlist_value->n_values, 1);
  free_req(req);
  fx_free(f);
}

/* Informational: encoder cost per span with 2 attributes (the benchmark tracks it for real). */
static void test_speed_report(void **state) {
  (void)state;
  fixture *f = fx_new();
  assert_int_equal(rb_resource(&f->res, g_res_attrs, 2), 0);
  profilis_attr attrs[2] = {PROFILIS_ATTR_STR("http.route", "/users/{id}"),
                            PROFILIS_ATTR_INT("http.status_code", 200)};
  for (size_t i = 0; i < 512; i++) {
    rb_span s = minimal_span(&g_scope_a, (uint8_t)i);
    s.name = "GET /users/{id}";
    s.kind = PROFILIS_SPAN_KIND_SERVER;
    s.start_ns = 1700000000000000000ull + i;
    s.end_ns = s.start_ns + 1000;
    s.has_parent = 1;
    s.trace_flags = 1;
    s.attrs = attrs;
    s.n_attrs = 2;
    fx_add(f, &s);
  }
  pf_batch b = fx_batch(f);
  int rounds = 200;
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  for (int r = 0; r < rounds; r++) {
    pf_buf_reset(&f->out);
    assert_int_equal(pf_otlp_encode_request(&f->out, &b), 0);
  }
  clock_gettime(CLOCK_MONOTONIC, &t1);
  double ns = ((double)(t1.tv_sec - t0.tv_sec) * 1e9 + (double)(t1.tv_nsec - t0.tv_nsec)) /
              (rounds * 512.0);
  printf("encode: %.1f ns/span, %.1f bytes/span\n", ns, (double)f->out.len / 512.0);
  Req *req = decode_canonical(&f->out);
  assert_int_equal(req->resource_spans[0]->scope_spans[0]->n_spans, 512);
  free_req(req);
  fx_free(f);
}

int main(void) {
  init_attrs();
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_every_field_two_scopes),
      cmocka_unit_test(test_empty_batch_appends_nothing),
      cmocka_unit_test(test_appends_and_no_resource),
      cmocka_unit_test(test_many_spans_large_values),
      cmocka_unit_test(test_corrupt_records),
      cmocka_unit_test(test_collector_value_types),
      cmocka_unit_test(test_speed_report),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
