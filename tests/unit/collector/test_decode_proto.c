/* Tests for the OTLP protobuf decoder (collector/decode_proto.c), the chunk type and the
 * response encoders. Requests are built and packed with protobuf-c; decoded records are checked
 * field by field, re-encoded with the SDK encoder and compared with protobuf-c's own packing of
 * the original spans, and malformed inputs (every truncation, mutations, huge lengths, deep
 * nesting, bad ids, bad UTF-8) must fail cleanly with a message naming the field. */
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

#include "decode_fixtures.h"
#include "json_write.h"

static int decode(const pf_buf *b, bool keep_raw, pc_decode_result *r) {
  pc_decode_opts o = {.keep_raw = keep_raw};
  return pc_decode_otlp_proto(b->p, b->len, &o, r);
}

/* ---- attribute checks ---- */

static void want_attr(const pf_attr_view *v, const char *key, int type) {
  assert_int_equal(v->key_len, strlen(key));
  assert_memory_equal(v->key, key, v->key_len);
  assert_int_equal(v->type, type);
}

static void want_raw_any(const pf_attr_view *v, const AV *orig) {
  pf_buf p = pack_av(orig);
  assert_int_equal(v->type, PF_ATTR_ANYVALUE);
  assert_int_equal(v->val_len, p.len);
  if (p.len) assert_memory_equal(v->val, p.p, p.len);
  pf_buf_free(&p);
}

static void check_s0_attrs(const pf_span_rec *r, const Span *orig) {
  const uint8_t *sec = pf_rec_attrs(r);
  size_t off = 0;
  pf_attr_view v = {0};
  assert_int_equal(r->n_attrs, 14);
  assert_true(pf_attr_next(sec, r->attrs_len, &off, &v));
  want_attr(&v, "str", PROFILIS_ATTR_STRING);
  assert_int_equal(v.val_len, 5);
  assert_memory_equal(v.val, "hello", 5);
  assert_true(pf_attr_next(sec, r->attrs_len, &off, &v));
  want_attr(&v, "bool", PROFILIS_ATTR_BOOL);
  assert_int_equal(v.val_len, 1);
  assert_int_equal(v.val[0], 1);
  assert_true(pf_attr_next(sec, r->attrs_len, &off, &v));
  want_attr(&v, "int", PROFILIS_ATTR_INT);
  assert_true(pf_rd_i64(v.val) == -42);
  assert_true(pf_attr_next(sec, r->attrs_len, &off, &v));
  want_attr(&v, "dbl", PROFILIS_ATTR_DOUBLE);
  assert_true(pf_rd_f64(v.val) == 1.5);
  assert_true(pf_attr_next(sec, r->attrs_len, &off, &v));
  want_attr(&v, "sa", PROFILIS_ATTR_STRING_ARRAY);
  assert_int_equal(v.val_len, 4 + 1 + 4 + 0 + 4 + 2);
  assert_memory_equal(v.val, "\x01\0\0\0a\0\0\0\0\x02\0\0\0\xc3\xbc", v.val_len);
  assert_true(pf_attr_next(sec, r->attrs_len, &off, &v));
  want_attr(&v, "ba", PROFILIS_ATTR_BOOL_ARRAY);
  assert_int_equal(v.val_len, 2);
  assert_memory_equal(v.val, "\x01\x00", 2);
  assert_true(pf_attr_next(sec, r->attrs_len, &off, &v));
  want_attr(&v, "ia", PROFILIS_ATTR_INT_ARRAY);
  assert_int_equal(v.val_len, 24);
  assert_true(pf_rd_i64(v.val) == 1 && pf_rd_i64(v.val + 8) == -1);
  assert_true(pf_rd_i64(v.val + 16) == INT64_MAX);
  assert_true(pf_attr_next(sec, r->attrs_len, &off, &v));
  want_attr(&v, "da", PROFILIS_ATTR_DOUBLE_ARRAY);
  assert_int_equal(v.val_len, 16);
  assert_true(pf_rd_f64(v.val) == 0.5 && isnan(pf_rd_f64(v.val + 8)));
  assert_true(pf_attr_next(sec, r->attrs_len, &off, &v));
  want_attr(&v, "ea", PROFILIS_ATTR_STRING_ARRAY);
  assert_int_equal(v.val_len, 0);
  assert_true(pf_attr_next(sec, r->attrs_len, &off, &v));
  want_attr(&v, "by", PF_ATTR_BYTES);
  assert_int_equal(v.val_len, sizeof g_bytes);
  assert_memory_equal(v.val, g_bytes, sizeof g_bytes);
  for (int i = 10; i < 14; i++) { /* kv, mix, nest, empty: raw AnyValue bytes */
    assert_true(pf_attr_next(sec, r->attrs_len, &off, &v));
    assert_int_equal(v.key_len, strlen(orig->attributes[i]->key));
    assert_memory_equal(v.key, orig->attributes[i]->key, v.key_len);
    want_raw_any(&v, orig->attributes[i]->value);
  }
  assert_int_equal(off, r->attrs_len);
}

static void check_s0_events_links(const pf_span_rec *r) {
  size_t off = 0;
  pf_event_view e = {0};
  pf_attr_view v = {0};
  assert_int_equal(r->n_events, 2);
  assert_true(pf_event_next(pf_rec_events(r), r->events_len, &off, &e));
  assert_true(e.h.time_ns == 1700000000000000500ull);
  assert_int_equal(e.h.name_len, 2);
  assert_memory_equal(e.name, "ev", 2);
  assert_int_equal(e.h.n_attrs, 2);
  assert_int_equal(e.h.dropped_attrs, 1);
  size_t ao = 0;
  assert_true(pf_attr_next(e.attrs, e.h.attrs_len, &ao, &v));
  want_attr(&v, "e", PROFILIS_ATTR_STRING);
  assert_true(pf_attr_next(e.attrs, e.h.attrs_len, &ao, &v));
  want_attr(&v, "ekv", PF_ATTR_ANYVALUE);
  assert_true(pf_event_next(pf_rec_events(r), r->events_len, &off, &e));
  assert_true(e.h.time_ns == 0 && e.h.name_len == 0 && e.h.n_attrs == 0);
  assert_int_equal(off, r->events_len);

  pf_link_view l = {0};
  off = 0;
  assert_int_equal(r->n_links, 2);
  assert_true(pf_link_next(pf_rec_links(r), r->links_len, &off, &l));
  assert_int_equal(l.h.trace_id[0], 60);
  assert_int_equal(l.h.span_id[7], 77);
  assert_int_equal(l.h.flags, 0x301);
  assert_int_equal(l.h.tracestate_len, 3);
  assert_memory_equal(l.tracestate, "b=2", 3);
  assert_int_equal(l.h.n_attrs, 1);
  assert_int_equal(l.h.dropped_attrs, 5);
  ao = 0;
  assert_true(pf_attr_next(l.attrs, l.h.attrs_len, &ao, &v));
  want_attr(&v, "li", PROFILIS_ATTR_INT);
  assert_true(pf_rd_i64(v.val) == 7);
  assert_true(pf_link_next(pf_rec_links(r), r->links_len, &off, &l));
  assert_int_equal(l.h.trace_id[15], 95);
  assert_int_equal(l.h.flags, 0);
  assert_int_equal(off, r->links_len);
}

static void check_s0(const pf_span_rec *r, const Span *orig) {
  assert_true(pf_rec_sections_fit(r));
  assert_memory_equal(r->trace_id, orig->trace_id.data, 16);
  assert_memory_equal(r->span_id, orig->span_id.data, 8);
  assert_int_equal(r->has_parent, 1);
  assert_memory_equal(r->parent_span_id, orig->parent_span_id.data, 8);
  assert_int_equal(r->kind, 3);
  assert_int_equal(r->status_code, 2);
  assert_int_equal(r->trace_flags, 1);
  assert_true(r->start_ns == orig->start_time_unix_nano && r->end_ns == orig->end_time_unix_nano);
  assert_int_equal(r->name_len, 6);
  assert_memory_equal(pf_rec_name(r), "GET /x", 6);
  assert_int_equal(r->status_msg_len, 4);
  assert_memory_equal(pf_rec_status_msg(r), "boom", 4);
  assert_int_equal(r->tracestate_len, 3);
  assert_memory_equal(pf_rec_tracestate(r), "a=1", 3);
  assert_int_equal(r->dropped_attrs, 2);
  assert_int_equal(r->dropped_events, 4);
  assert_int_equal(r->dropped_links, 6);
  check_s0_attrs(r, orig);
  check_s0_events_links(r);
}

static void check_resource(const pc_chunk *c) {
  size_t off = 0;
  pf_attr_view v = {0};
  assert_int_equal(c->resource.n_attrs, 2);
  assert_int_equal(c->resource_dropped_attrs, 3);
  assert_true(pf_attr_next(c->resource.attrs.p, c->resource.attrs.len, &off, &v));
  want_attr(&v, "service.name", PROFILIS_ATTR_STRING);
  assert_memory_equal(v.val, "svc", 3);
  assert_true(pf_attr_next(c->resource.attrs.p, c->resource.attrs.len, &off, &v));
  want_attr(&v, "n", PROFILIS_ATTR_INT);
  assert_true(pf_rd_i64(v.val) == 42);
}

static void test_every_field(void **state) {
  (void)state;
  full f;
  build_full(&f);
  pf_buf b = pack_req(f.req);
  pc_decode_result r;
  assert_int_equal(decode(&b, true, &r), 0);
  assert_int_equal(r.n_chunks, 2);
  assert_int_equal(r.n_spans, 4);
  assert_int_equal(r.rejected, 0);
  assert_string_equal(r.message, "");
  pc_chunk *c = r.chunks[0];
  assert_false(c->modified);
  assert_int_equal(c->n_scopes, 2);
  assert_string_equal(c->scopes[0].name, "lib.a");
  assert_string_equal(c->scopes[0].version, "1.2");
  assert_string_equal(c->scopes[1].name, "");
  assert_string_equal(c->scopes[1].version, "");
  assert_int_equal(c->n_spans, 3);
  check_resource(c);
  check_s0(c->spans[0], f.s0);
  assert_ptr_equal(c->spans[0]->scope, &c->scopes[0]);
  assert_ptr_equal(c->spans[1]->scope, &c->scopes[0]);
  assert_ptr_equal(c->spans[2]->scope, &c->scopes[1]);
  assert_int_equal(c->spans[1]->has_parent, 0);
  assert_int_equal(c->spans[2]->has_parent, 1);
  assert_int_equal(c->spans[2]->parent_span_id[0], 9);
  for (uint32_t i = 0; i < c->n_spans; i++) assert_int_equal((uintptr_t)c->spans[i] % 8, 0);
  assert_true(c->budget_bytes == pc_chunk_size(c) && c->budget_bytes > c->records.len);
  assert_true(c->received_ns > 0);
  assert_int_equal(c->resource.n_attrs, 2);
  /* raw: exactly the ResourceSpans bytes protobuf-c packs */
  for (size_t i = 0; i < 2; i++) {
    pf_buf rs = pack_rs(f.req->resource_spans[i]);
    assert_int_equal(r.chunks[i]->raw.len, rs.len);
    assert_memory_equal(r.chunks[i]->raw.p, rs.p, rs.len);
    pf_buf_free(&rs);
  }
  assert_int_equal(r.chunks[1]->n_spans, 1);
  assert_int_equal(r.chunks[1]->resource.n_attrs, 0);
  assert_string_equal(r.chunks[1]->scopes[0].name, "lib.b");
  pc_decode_result_free(&r);
  assert_null(r.chunks);
  /* without keep_raw nothing is copied */
  assert_int_equal(decode(&b, false, &r), 0);
  assert_int_equal(r.chunks[0]->raw.len, 0);
  pc_decode_result_free(&r);
  pf_buf_free(&b);
  ar_free(&f.a);
}

/* The SDK encoder turns the chunk back into exactly what protobuf-c makes of the originals. */
static void test_round_trip(void **state) {
  (void)state;
  full f;
  build_full(&f);
  f.s0->links[0]->flags = 0x301; /* link flags are 32-bit in the record: kept whole */
  pf_buf b = pack_req(f.req);
  pc_decode_result r;
  assert_int_equal(decode(&b, false, &r), 0);
  const Span *want[2][3] = {{f.s0, f.s1, f.s2}, {f.s3}};
  for (size_t ci = 0; ci < r.n_chunks; ci++) {
    pf_buf enc = {0};
    pf_batch batch = pc_chunk_batch(r.chunks[ci]);
    assert_int_equal(pf_otlp_encode_request(&enc, &batch), 0);
    Req *back = unpack_req(enc.p, enc.len);
    assert_non_null(back);
    assert_int_equal(back->n_resource_spans, 1);
    const RS *rs = back->resource_spans[0];
    size_t k = 0;
    for (size_t si = 0; si < rs->n_scope_spans; si++) {
      for (size_t j = 0; j < rs->scope_spans[si]->n_spans; j++, k++) {
        pf_buf got = pack_span(rs->scope_spans[si]->spans[j]), exp = pack_span(want[ci][k]);
        assert_int_equal(got.len, exp.len);
        assert_memory_equal(got.p, exp.p, exp.len);
        pf_buf_free(&got);
        pf_buf_free(&exp);
      }
    }
    assert_int_equal(k, r.chunks[ci]->n_spans);
    if (ci == 0) {
      assert_int_equal(rs->resource->n_attributes, 2);
      assert_string_equal(rs->resource->attributes[0]->value->string_value, "svc");
      assert_string_equal(rs->scope_spans[0]->scope->name, "lib.a");
      assert_string_equal(rs->scope_spans[0]->scope->version, "1.2");
    }
    free_req(back);
    pf_buf_free(&enc);
    assert_int_equal(reencode_count(r.chunks[ci]), r.chunks[ci]->n_spans);
  }
  pc_decode_result_free(&r);
  pf_buf_free(&b);
  ar_free(&f.a);
}

/* Unchanged chunks forward as-is: `0x0a len raw` per chunk rebuilds the request. */
static void test_pass_through_concat(void **state) {
  (void)state;
  full f;
  build_full(&f);
  pf_buf b = pack_req(f.req), cat = {0};
  pc_decode_result r;
  assert_int_equal(decode(&b, true, &r), 0);
  for (size_t i = 0; i < r.n_chunks; i++) {
    const pf_buf *raw = &r.chunks[i]->raw;
    uint8_t hdr[11], *p = hdr;
    *p++ = 0x0a;
    for (uint64_t v = raw->len;; v >>= 7) {
      *p++ = (uint8_t)(v < 0x80 ? v : (v & 0x7f) | 0x80);
      if (v < 0x80) break;
    }
    assert_int_equal(pf_buf_append(&cat, hdr, (size_t)(p - hdr)), 0);
    assert_int_equal(pf_buf_append(&cat, raw->p, raw->len), 0);
  }
  assert_int_equal(cat.len, b.len);
  assert_memory_equal(cat.p, b.p, b.len);
  pc_decode_result_free(&r);
  pf_buf_free(&cat);
  pf_buf_free(&b);
  ar_free(&f.a);
}

/* Unknown fields of every wire type, at every level, change nothing in the records. (protobuf-c
 * writes an unknown field's data as it is: a length-delimited one carries its own length.) */
static ProtobufCMessageUnknownField g_unknown[4];
static void add_unknown(void *msg) {
  ProtobufCMessage *m = msg;
  m->n_unknown_fields = 4;
  m->unknown_fields = g_unknown;
}

static void test_unknown_fields(void **state) {
  (void)state;
  static uint8_t u64[8] = {1, 2, 3, 4, 5, 6, 7, 8}, lenb[3] = {0x02, 0xde, 0xad},
                 v[2] = {0x96, 0x01};
  g_unknown[0] = (ProtobufCMessageUnknownField){
      .tag = 1000, .wire_type = PROTOBUF_C_WIRE_TYPE_VARINT, .len = 2, .data = v};
  g_unknown[1] = (ProtobufCMessageUnknownField){
      .tag = 1001, .wire_type = PROTOBUF_C_WIRE_TYPE_64BIT, .len = 8, .data = u64};
  g_unknown[2] = (ProtobufCMessageUnknownField){
      .tag = 99, .wire_type = PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED, .len = 3, .data = lenb};
  g_unknown[3] = (ProtobufCMessageUnknownField){
      .tag = 17, .wire_type = PROTOBUF_C_WIRE_TYPE_32BIT, .len = 4, .data = u64};
  full plain, odd;
  build_full(&plain);
  build_full(&odd);
  add_unknown(odd.req);
  for (size_t i = 0; i < odd.req->n_resource_spans; i++) {
    RS *rs = odd.req->resource_spans[i];
    add_unknown(rs);
    if (rs->resource) add_unknown(rs->resource);
    for (size_t j = 0; j < rs->n_scope_spans; j++) {
      add_unknown(rs->scope_spans[j]);
      if (rs->scope_spans[j]->scope) add_unknown(rs->scope_spans[j]->scope);
      for (size_t k = 0; k < rs->scope_spans[j]->n_spans; k++)
        add_unknown(rs->scope_spans[j]->spans[k]);
    }
  }
  Span *s = odd.s0;
  add_unknown(s->status);
  add_unknown(s->events[0]);
  add_unknown(s->links[0]);
  for (size_t i = 0; i < 4; i++) { /* str, bool, int, dbl: KeyValue and scalar AnyValue */
    add_unknown(s->attributes[i]);
    add_unknown(s->attributes[i]->value);
  }
  add_unknown(s->attributes[10]->value->kvlist_value); /* raw: kept verbatim */
  /* known field numbers with the wrong wire type are skipped like unknown ones */
  static ProtobufCMessageUnknownField wrong[2];
  wrong[0] = (ProtobufCMessageUnknownField){
      .tag = 5, .wire_type = PROTOBUF_C_WIRE_TYPE_VARINT, .len = 2, .data = v};
  wrong[1] = (ProtobufCMessageUnknownField){
      .tag = 1, .wire_type = PROTOBUF_C_WIRE_TYPE_32BIT, .len = 4, .data = u64};
  s->attributes[1]->base.n_unknown_fields = 2;
  s->attributes[1]->base.unknown_fields = wrong;
  pf_buf bp = pack_req(plain.req), bo = pack_req(odd.req);
  assert_true(bo.len > bp.len + 100);
  pc_decode_result rp, ro;
  assert_int_equal(decode(&bp, true, &rp), 0);
  int rc = decode(&bo, true, &ro);
  if (rc) print_message("%s\n", ro.message);
  assert_int_equal(rc, 0);
  assert_int_equal(rp.n_chunks, ro.n_chunks);
  /* the kvlist attribute (index 10) carries its unknown fields in the raw copy: compare the
   * other chunks fully and span 0 of chunk 0 up to that attribute's value */
  assert_true(chunks_equal(rp.chunks[1], ro.chunks[1]));
  for (uint32_t i = 1; i < rp.chunks[0]->n_spans; i++)
    assert_true(recs_equal(rp.chunks[0]->spans[i], ro.chunks[0]->spans[i]));
  assert_int_equal(ro.chunks[0]->spans[0]->n_attrs, 14);
  pf_buf kvp = pack_av(plain.s0->attributes[10]->value), kvo = pack_av(s->attributes[10]->value);
  assert_int_equal(ro.chunks[0]->spans[0]->attrs_len,
                   rp.chunks[0]->spans[0]->attrs_len + kvo.len - kvp.len);
  pf_buf_free(&kvp);
  pf_buf_free(&kvo);
  assert_false(ro.chunks[0]->modified);
  pf_buf rs = pack_rs(odd.req->resource_spans[0]);
  assert_int_equal(ro.chunks[0]->raw.len, rs.len); /* raw keeps everything */
  assert_memory_equal(ro.chunks[0]->raw.p, rs.p, rs.len);
  pf_buf_free(&rs);
  pc_decode_result_free(&rp);
  pc_decode_result_free(&ro);
  pf_buf_free(&bp);
  pf_buf_free(&bo);
  ar_free(&plain.a);
  ar_free(&odd.a);
}

static void test_invalid_ids(void **state) {
  (void)state;
  arena a = {0};
  Span *ok1 = span_min(&a, 1), *ok2 = span_min(&a, 2);
  Span *short_tid = span_min(&a, 3), *zero_tid = span_min(&a, 4), *bad_sid = span_min(&a, 5);
  Span *zero_sid = span_min(&a, 6), *bad_parent = span_min(&a, 7), *zero_parent = span_min(&a, 8);
  short_tid->trace_id.len = 15;
  memset(zero_tid->trace_id.data, 0, 16);
  bad_sid->span_id.len = 16;
  bad_sid->span_id = id_bytes(&a, 16, 1);
  memset(zero_sid->span_id.data, 0, 8);
  bad_parent->parent_span_id = id_bytes(&a, 4, 1);
  zero_parent->parent_span_id = bin(&a, "\0\0\0\0\0\0\0\0", 8); /* all-zero parent: a root */
  Span *all_bad = span_min(&a, 9);
  all_bad->trace_id.len = 0;
  Req *req = REQ_NEW(&a,
                     RS_NEW(&a, NULL,
                            SS_NEW(&a, NULL, ok1, short_tid, zero_tid, bad_sid, zero_sid,
                                   bad_parent, ok2, zero_parent)),
                     RS_NEW(&a, NULL, SS_NEW(&a, NULL, all_bad)));
  pf_buf b = pack_req(req);
  pc_decode_result r;
  assert_int_equal(decode(&b, true, &r), 0);
  assert_int_equal(r.rejected, 6);
  assert_int_equal(r.n_spans, 3);
  assert_string_equal(r.message, "6 spans rejected: invalid trace_id");
  assert_int_equal(r.n_chunks, 1); /* the second resource lost its only span */
  pc_chunk *c = r.chunks[0];
  assert_true(c->modified);
  assert_int_equal(c->raw.len, 0); /* raw would still carry the invalid spans */
  assert_int_equal(c->n_spans, 3);
  assert_int_equal(c->spans[0]->trace_id[0], 1);
  assert_int_equal(c->spans[1]->trace_id[0], 2);
  assert_int_equal(c->spans[2]->trace_id[0], 8);
  assert_int_equal(c->spans[2]->has_parent, 0);
  for (uint32_t i = 0; i < c->n_spans; i++) assert_true(pf_rec_sections_fit(c->spans[i]));
  pc_decode_result_free(&r);
  pf_buf_free(&b);

  /* one reason only */
  req = REQ_NEW(&a, RS_NEW(&a, NULL, SS_NEW(&a, NULL, bad_parent)));
  b = pack_req(req);
  assert_int_equal(decode(&b, false, &r), 0);
  assert_int_equal(r.n_chunks, 0);
  assert_string_equal(r.message, "1 span rejected: invalid parent_span_id");
  pc_decode_result_free(&r);
  pf_buf_free(&b);
  ar_free(&a);
}

static void test_invalid_utf8(void **state) {
  (void)state;
  arena a = {0};
  Span *s = span_min(&a, 1);
  s->name = "a\xff"
            "b";
  s->trace_state = "k=\xc3";
  SET_REP(&a, s, attributes, kv(&a, "k\x80", av_str(&a, "\xe2\x82")),
          kv(&a, "arr", AV_ARRAY(&a, av_str(&a, "ok"), av_str(&a, "\xf0\x9f"))),
          kv(&a, "kvl", AV_KVLIST(&a, kv(&a, "in\xfe", AV_ARRAY(&a, av_str(&a, "x\xc0y"))))));
  Req *req = REQ_NEW(&a, RS_NEW(&a, NULL, SS_NEW(&a, scope_new(&a, "lib\xff", "v"), s)));
  pf_buf b = pack_req(req);
  pc_decode_result r;
  assert_int_equal(decode(&b, true, &r), 0);
  pc_chunk *c = r.chunks[0];
  assert_true(c->modified);
  assert_int_equal(c->raw.len, 0);
  assert_string_equal(c->scopes[0].name, "lib\xef\xbf\xbd");
  const pf_span_rec *rec = c->spans[0];
  assert_int_equal(rec->name_len, 5);
  assert_memory_equal(pf_rec_name(rec),
                      "a\xef\xbf\xbd"
                      "b",
                      5);
  assert_int_equal(rec->tracestate_len, 5);
  size_t off = 0;
  pf_attr_view v = {0};
  assert_true(pf_attr_next(pf_rec_attrs(rec), rec->attrs_len, &off, &v));
  assert_int_equal(v.key_len, 4);
  assert_memory_equal(v.key, "k\xef\xbf\xbd", 4);
  assert_int_equal(v.val_len, 3);
  assert_memory_equal(v.val, "\xef\xbf\xbd", 3);
  assert_true(pf_attr_next(pf_rec_attrs(rec), rec->attrs_len, &off, &v));
  assert_int_equal(v.type, PROFILIS_ATTR_STRING_ARRAY);
  assert_memory_equal(v.val, "\x02\0\0\0ok\x03\0\0\0\xef\xbf\xbd", 13);
  assert_true(pf_attr_next(pf_rec_attrs(rec), rec->attrs_len, &off, &v));
  assert_int_equal(v.type, PF_ATTR_ANYVALUE);
  AV *back = opentelemetry__proto__common__v1__any_value__unpack(NULL, v.val_len, v.val);
  assert_non_null(back);
  assert_int_equal(back->value_case, AVC(KVLIST_VALUE));
  assert_string_equal(back->kvlist_value->values[0]->key, "in\xef\xbf\xbd");
  assert_string_equal(back->kvlist_value->values[0]->value->array_value->values[0]->string_value,
                      "x\xef\xbf\xbdy");
  opentelemetry__proto__common__v1__any_value__free_unpacked(back, NULL);
  assert_int_equal(reencode_count(c), 1);
  pc_decode_result_free(&r);
  pf_buf_free(&b);
  ar_free(&a);
}

/* Every prefix of a valid request decodes exactly when protobuf-c accepts it. */
static void test_truncation_every_offset(void **state) {
  (void)state;
  full f;
  build_full(&f);
  pf_buf b = pack_req(f.req);
  size_t ok = 0;
  for (size_t n = 0; n < b.len; n++) {
    uint8_t *copy = malloc(n ? n : 1); /* exact size, so ASan catches any overread */
    memcpy(copy, b.p, n);
    pc_decode_result r;
    int rc = pc_decode_otlp_proto(copy, n, &(pc_decode_opts){.keep_raw = true}, &r);
    Req *ref = unpack_req(copy, n);
    if (ref) {
      assert_int_equal(rc, 0);
      ok++;
      free_req(ref);
    } else {
      assert_int_equal(rc, PROFILIS_EPROTO);
      assert_int_equal(r.n_chunks, 0);
      assert_null(r.chunks);
      assert_true(strlen(r.message) > 0);
    }
    pc_decode_result_free(&r);
    free(copy);
  }
  assert_true(ok >= 2); /* the empty prefix and the one ending after the first resource */
  pf_buf_free(&b);
  ar_free(&f.a);
}

static uint64_t g_rng = 0x9E3779B97F4A7C15ull;
static uint32_t rnd(void) {
  g_rng ^= g_rng << 13;
  g_rng ^= g_rng >> 7;
  g_rng ^= g_rng << 17;
  return (uint32_t)g_rng;
}

/* Random garbage and random byte mutations of a valid request: never a crash; whatever decodes
 * re-encodes and decodes again to the same spans. */
static void test_garbage_and_mutations(void **state) {
  (void)state;
  full f;
  build_full(&f);
  pf_buf b = pack_req(f.req);
  uint8_t *m = malloc(b.len);
  for (int it = 0; it < 3000; it++) {
    size_t n = b.len;
    if (it < 500) {
      n = rnd() % 200;
      for (size_t i = 0; i < n; i++) m[i] = (uint8_t)rnd();
    } else {
      memcpy(m, b.p, n);
      for (int k = 1 + (int)(rnd() % 4); k > 0; k--) m[rnd() % n] = (uint8_t)rnd();
    }
    pc_decode_result r;
    int rc = pc_decode_otlp_proto(m, n, &(pc_decode_opts){.keep_raw = true}, &r);
    assert_true(rc == 0 || rc == PROFILIS_EPROTO);
    for (size_t i = 0; rc == 0 && i < r.n_chunks; i++) {
      assert_int_equal(reencode_count(r.chunks[i]), r.chunks[i]->n_spans);
      pf_buf text = {0};
      pf_json j = pf_json_on(&text);
      for (uint32_t s = 0; s < r.chunks[i]->n_spans; s++)
        pf_json_attrs(&j, pf_rec_attrs(r.chunks[i]->spans[s]), r.chunks[i]->spans[s]->attrs_len);
      assert_int_equal(j.err, 0);
      pf_buf_free(&text);
    }
    pc_decode_result_free(&r);
  }
  free(m);
  pf_buf_free(&b);
  ar_free(&f.a);
}

/* ---- hand-written wire bytes ---- */

static void wv(pf_buf *b, uint64_t v) {
  do {
    uint8_t c = (uint8_t)(v & 0x7f);
    v >>= 7;
    if (v) c |= 0x80;
    pf_buf_append(b, &c, 1);
  } while (v);
}

static void wlen(pf_buf *b, uint32_t field, const void *p, size_t n) {
  wv(b, (uint64_t)field << 3 | 2);
  wv(b, n);
  pf_buf_append(b, p, n);
}

static void wmsg(pf_buf *b, uint32_t field, pf_buf *body) {
  wlen(b, field, body->p, body->len);
  pf_buf_free(body);
}

/* A minimal valid span body (ids only), optionally followed by extra raw bytes. */
static pf_buf span_body(uint8_t seed, const void *extra, size_t n) {
  pf_buf s = {0};
  uint8_t tid[16], sid[8];
  for (int i = 0; i < 16; i++) tid[i] = (uint8_t)(seed + i);
  for (int i = 0; i < 8; i++) sid[i] = (uint8_t)(seed + 1 + i);
  wlen(&s, 1, tid, 16);
  wlen(&s, 2, sid, 8);
  pf_buf_append(&s, extra, n);
  return s;
}

static int decode_raw(const void *p, size_t n, pc_decode_result *r) {
  return pc_decode_otlp_proto(p, n, NULL, r);
}

static void want_error(const void *p, size_t n, const char *msg) {
  pc_decode_result r;
  assert_int_equal(decode_raw(p, n, &r), PROFILIS_EPROTO);
  assert_string_equal(r.message, msg);
  assert_int_equal(r.n_chunks, 0);
  pc_decode_result_free(&r);
}

static void test_error_messages(void **state) {
  (void)state;
  want_error("\x0a\xff\xff\xff\xff\x0f", 6, "resource_spans: truncated length-delimited field");
  want_error("\x0a\xff\xff\xff\xff\xff\xff\xff\xff\x7f", 10,
             "resource_spans: truncated length-delimited field");
  want_error("\x08\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", 12,
             "resource_spans: varint longer than 10 bytes");
  want_error("\x08\xff", 2, "resource_spans: truncated varint");
  want_error("\x0b", 1, "resource_spans: groups are not supported");
  want_error("\x0c", 1, "resource_spans: groups are not supported");
  want_error("\x0f", 1, "resource_spans: invalid wire type");
  want_error("\x00", 1, "invalid field number");
  want_error("\x80\x80\x80\x80\x10", 5, "invalid field number"); /* tag beyond 32 bits */
  want_error("\x09\x01\x02", 3, "resource_spans: truncated fixed-width field");
  want_error("\x0a\x02\x12\x05", 4,
             "resource_spans[0].scope_spans: truncated length-delimited field");

  /* resource_spans[0].scope_spans[1].spans[3] has a truncated attributes field */
  pf_buf ss0 = {0}, ss1 = {0}, rs = {0}, req = {0}, sp;
  sp = span_body(1, NULL, 0);
  wmsg(&ss0, 2, &sp);
  for (uint8_t i = 0; i < 3; i++) {
    sp = span_body((uint8_t)(10 + i), NULL, 0);
    wmsg(&ss1, 2, &sp);
  }
  sp = span_body(20, "\x4a\x05\x0a\x01", 4);
  wmsg(&ss1, 2, &sp);
  wmsg(&rs, 2, &ss0);
  wmsg(&rs, 2, &ss1);
  wmsg(&req, 1, &rs);
  want_error(req.p, req.len,
             "resource_spans[0].scope_spans[1].spans[3].attributes: truncated "
             "length-delimited field");
  pf_buf_free(&req);

  /* deeper: a KeyValue whose AnyValue has a bad string field */
  pf_buf kvb = {0}, av = {0};
  wlen(&kvb, 1, "k", 1);
  pf_buf_append(&av, "\x0a\x09xy", 4);
  wmsg(&kvb, 2, &av);
  pf_buf extra = {0};
  wmsg(&extra, 9, &kvb);
  sp = span_body(1, extra.p, extra.len);
  pf_buf_free(&extra);
  pf_buf ss = {0};
  wmsg(&ss, 2, &sp);
  rs = (pf_buf){0};
  wmsg(&rs, 2, &ss);
  req = (pf_buf){0};
  wmsg(&req, 1, &rs);
  want_error(req.p, req.len,
             "resource_spans[0].scope_spans[0].spans[0].attributes[0].value.string_value: "
             "truncated length-delimited field");
  pf_buf_free(&req);
}

static AV *nested(arena *a, int levels, bool kvlist) {
  AV *v = av_int(a, 1);
  for (int i = 1; i < levels; i++) v = kvlist ? AV_KVLIST(a, kv(a, "k", v)) : AV_ARRAY(a, v);
  return v;
}

static void test_depth(void **state) {
  (void)state;
  for (int kvlist = 0; kvlist < 2; kvlist++) {
    for (int levels = 31; levels <= 34; levels++) {
      arena a = {0};
      Span *s = span_min(&a, 1);
      SET_REP(&a, s, attributes, kv(&a, "deep", nested(&a, levels, kvlist)));
      Req *req = REQ_NEW(&a, RS_NEW(&a, NULL, SS_NEW(&a, NULL, s)));
      pf_buf b = pack_req(req);
      pc_decode_result r;
      int rc = decode(&b, true, &r);
      if (levels <= PC_DECODE_MAX_DEPTH) {
        assert_int_equal(rc, 0);
        pf_attr_view v = {0};
        size_t off = 0;
        const pf_span_rec *rec = r.chunks[0]->spans[0];
        assert_true(pf_attr_next(pf_rec_attrs(rec), rec->attrs_len, &off, &v));
        assert_int_equal(v.type, PF_ATTR_ANYVALUE);
        assert_int_equal(reencode_count(r.chunks[0]), 1);
        /* the JSON writer renders every level: the innermost 1 sits under them all */
        pf_buf text = {0};
        pf_json j = pf_json_on(&text);
        assert_int_equal(pf_json_attr_value(&j, &v), 0);
        assert_int_equal(text.p[text.len - levels], '1');
        pf_buf_free(&text);
      } else {
        assert_int_equal(rc, PROFILIS_EPROTO);
        assert_non_null(strstr(r.message, "AnyValue nested deeper than 32 levels"));
        assert_non_null(strstr(r.message, "resource_spans[0].scope_spans[0].spans[0].attrib"));
      }
      pc_decode_result_free(&r);
      pf_buf_free(&b);
      ar_free(&a);
    }
  }
}

static void test_empty_and_limits(void **state) {
  (void)state;
  pc_decode_result r;
  assert_int_equal(pc_decode_otlp_proto(NULL, 0, NULL, &r), 0);
  assert_int_equal(r.n_chunks, 0);
  assert_int_equal(pc_decode_otlp_proto((const uint8_t *)"", 0, NULL, &r), 0);
  assert_int_equal(pc_decode_otlp_proto(NULL, 3, NULL, &r), PROFILIS_EINVAL);
  assert_int_equal(pc_decode_otlp_proto(NULL, 0, NULL, NULL), PROFILIS_EINVAL);
  /* a resource with no spans, and one with an empty scope: no chunks */
  arena a = {0};
  Req *req = REQ_NEW(&a, RS_NEW(&a, resource_new(&a, 1, (KV *[]){kv(&a, "k", av_int(&a, 1))}),
                                ss_new(&a, scope_new(&a, "s", ""), 0, NULL)));
  pf_buf b = pack_req(req);
  assert_int_equal(decode(&b, true, &r), 0);
  assert_int_equal(r.n_chunks, 0);
  assert_int_equal(r.n_spans, 0);
  pc_decode_result_free(&r);
  pf_buf_free(&b);
  /* max_spans */
  req = REQ_NEW(&a, RS_NEW(&a, NULL, SS_NEW(&a, NULL, span_min(&a, 1), span_min(&a, 2))),
                RS_NEW(&a, NULL, SS_NEW(&a, NULL, span_min(&a, 3))));
  b = pack_req(req);
  assert_int_equal(pc_decode_otlp_proto(b.p, b.len, &(pc_decode_opts){.max_spans = 2}, &r),
                   PROFILIS_ELIMIT);
  assert_string_equal(r.message, "request has 3 spans, more than the limit of 2");
  assert_int_equal(r.n_chunks, 0);
  assert_int_equal(pc_decode_otlp_proto(b.p, b.len, &(pc_decode_opts){.max_spans = 3}, &r), 0);
  assert_int_equal(r.n_spans, 3);
  pc_decode_result_free(&r);
  pf_buf_free(&b);
  ar_free(&a);
}

/* Over the record's u16 fields: texts are clipped at a character boundary, lists truncated
 * and the surplus counted as dropped; the chunk is marked modified. */
static void test_record_limits(void **state) {
  (void)state;
  arena a = {0};
  Span *s = span_min(&a, 1);
  char *name = ar_new(&a, 70001);
  memset(name, 'n', 70000);
  memcpy(name + 65534, "\xc3\xa9", 2); /* a 2-byte character straddling the limit */
  s->name = name;
  size_t n_attrs = 65540;
  s->n_attributes = n_attrs;
  s->attributes = ar_new(&a, n_attrs * sizeof(KV *));
  KV *one = kv(&a, "k", av_int(&a, 1));
  for (size_t i = 0; i < n_attrs; i++) s->attributes[i] = one;
  s->dropped_attributes_count = 10;
  size_t n_events = 65537;
  Event *ev = ar_new(&a, sizeof *ev);
  opentelemetry__proto__trace__v1__span__event__init(ev);
  s->n_events = n_events;
  s->events = ar_new(&a, n_events * sizeof(Event *));
  for (size_t i = 0; i < n_events; i++) s->events[i] = ev;
  char *big_key = ar_new(&a, 70001);
  memset(big_key, 'k', 70000);
  Span *s2 = span_min(&a, 2);
  SET_REP(&a, s2, attributes, kv(&a, big_key, av_int(&a, 1)), kv(&a, "small", av_int(&a, 2)));
  Req *req = REQ_NEW(&a, RS_NEW(&a, NULL, SS_NEW(&a, NULL, s, s2)));
  pf_buf b = pack_req(req);
  pc_decode_result r;
  assert_int_equal(decode(&b, true, &r), 0);
  pc_chunk *c = r.chunks[0];
  assert_true(c->modified);
  assert_int_equal(c->raw.len, 0);
  const pf_span_rec *rec = c->spans[0];
  assert_int_equal(rec->name_len, 65534);
  assert_int_equal(rec->n_attrs, 65535);
  assert_int_equal(rec->dropped_attrs, 10 + 5);
  assert_int_equal(rec->n_events, 65535);
  assert_int_equal(rec->dropped_events, 2);
  assert_true(pf_rec_sections_fit(rec));
  rec = c->spans[1];
  assert_int_equal(rec->n_attrs, 1);
  assert_int_equal(rec->dropped_attrs, 1);
  assert_int_equal(reencode_count(c), 2);
  pc_decode_result_free(&r);
  pf_buf_free(&b);
  ar_free(&a);
}

/* Links whose ids have the wrong size are dropped (counted), the span stays. Span kind and
 * status codes beyond a byte cannot be kept: the chunk is marked modified. */
static void test_links_and_enums(void **state) {
  (void)state;
  arena a = {0};
  Span *s = span_min(&a, 1);
  Link *good = ar_new(&a, sizeof *good), *bad = ar_new(&a, sizeof *bad);
  opentelemetry__proto__trace__v1__span__link__init(good);
  opentelemetry__proto__trace__v1__span__link__init(bad);
  good->trace_id = id_bytes(&a, 16, 5);
  good->span_id = id_bytes(&a, 8, 5);
  bad->trace_id = id_bytes(&a, 8, 5);
  bad->span_id = id_bytes(&a, 8, 5);
  SET_REP(&a, s, links, bad, good);
  s->kind = 5;
  Span *s2 = span_min(&a, 2);
  s2->kind = 300;
  Req *req =
      REQ_NEW(&a, RS_NEW(&a, NULL, SS_NEW(&a, NULL, s)), RS_NEW(&a, NULL, SS_NEW(&a, NULL, s2)));
  pf_buf b = pack_req(req);
  pc_decode_result r;
  assert_int_equal(decode(&b, true, &r), 0);
  assert_int_equal(r.n_chunks, 2);
  const pf_span_rec *rec = r.chunks[0]->spans[0];
  assert_int_equal(rec->n_links, 1);
  assert_int_equal(rec->dropped_links, 1);
  assert_int_equal(rec->kind, 5);
  assert_true(r.chunks[0]->modified);
  assert_int_equal(r.chunks[1]->spans[0]->kind, 0);
  assert_true(r.chunks[1]->modified);
  pc_decode_result_free(&r);
  pf_buf_free(&b);
  ar_free(&a);
}

static void test_chunk_refs(void **state) {
  (void)state;
  pc_chunk *c = pc_chunk_new();
  assert_non_null(c);
  assert_int_equal(c->refs, 1);
  assert_int_equal(pc_chunk_size(c), sizeof *c);
  pc_chunk_ref(c);
  assert_false(pc_chunk_unref(c));
  assert_true(pc_chunk_unref(c));
  assert_false(pc_chunk_unref(NULL));
}

static void test_responses(void **state) {
  (void)state;
  pf_buf b = {0};
  assert_int_equal(pc_encode_response_proto(&b, 0, NULL), 0);
  assert_int_equal(b.len, 0);
  assert_int_equal(pc_encode_response_proto(&b, 0, ""), 0);
  assert_int_equal(b.len, 0);
  assert_int_equal(pc_encode_response_proto(&b, 2, "2 spans rejected: invalid trace_id"), 0);
  Opentelemetry__Proto__Collector__Trace__V1__ExportTraceServiceResponse *resp =
      opentelemetry__proto__collector__trace__v1__export_trace_service_response__unpack(NULL, b.len,
                                                                                        b.p);
  assert_non_null(resp);
  assert_non_null(resp->partial_success);
  assert_int_equal(resp->partial_success->rejected_spans, 2);
  assert_string_equal(resp->partial_success->error_message, "2 spans rejected: invalid trace_id");
  opentelemetry__proto__collector__trace__v1__export_trace_service_response__free_unpacked(resp,
                                                                                           NULL);
  pf_buf_reset(&b);
  assert_int_equal(pc_encode_response_proto(&b, 0, "warn\xff"), 0);
  resp = opentelemetry__proto__collector__trace__v1__export_trace_service_response__unpack(
      NULL, b.len, b.p);
  assert_non_null(resp);
  assert_int_equal(resp->partial_success->rejected_spans, 0);
  assert_string_equal(resp->partial_success->error_message, "warn\xef\xbf\xbd");
  opentelemetry__proto__collector__trace__v1__export_trace_service_response__free_unpacked(resp,
                                                                                           NULL);
  pf_buf_free(&b);

  pf_buf j = {0};
  assert_int_equal(pc_encode_response_json(&j, 0, NULL), 0);
  pf_buf_append(&j, "", 1);
  assert_string_equal((char *)j.p, "{}");
  pf_buf_reset(&j);
  assert_int_equal(pc_encode_response_json(&j, 12345678901ull, "bad \"ids\""), 0);
  pf_buf_append(&j, "", 1);
  assert_string_equal((char *)j.p, "{\"partialSuccess\":{\"rejectedSpans\":\"12345678901\","
                                   "\"errorMessage\":\"bad \\\"ids\\\"\"}}");
  pf_buf_reset(&j);
  assert_int_equal(pc_encode_response_json(&j, 0, "note"), 0);
  pf_buf_append(&j, "", 1);
  assert_string_equal((char *)j.p, "{\"partialSuccess\":{\"errorMessage\":\"note\"}}");
  pf_buf_free(&j);
}

/* Informational: decode cost per span of a realistic 512-span request. */
static void test_speed_report(void **state) {
  (void)state;
  arena a = {0};
  Span *spans[512];
  for (int i = 0; i < 512; i++) {
    Span *s = spans[i] = span_min(&a, (uint8_t)(i + 1));
    s->parent_span_id = id_bytes(&a, 8, (uint8_t)(i + 3));
    s->name = "GET /api/users/{id}";
    s->flags = 1;
    SET_REP(&a, s, attributes, kv(&a, "http.request.method", av_str(&a, "GET")),
            kv(&a, "http.route", av_str(&a, "/api/users/{id}")),
            kv(&a, "http.response.status_code", av_int(&a, 200)),
            kv(&a, "server.address", av_str(&a, "10.1.2.3")));
    Status *st = ar_new(&a, sizeof *st);
    opentelemetry__proto__trace__v1__status__init(st);
    st->code = 1;
    s->status = st;
  }
  SS *ss = ss_new(&a, scope_new(&a, "io.opentelemetry.http", "1.0.0"), 512, spans);
  Resource *res = resource_new(&a, 3,
                               (KV *[]){kv(&a, "service.name", av_str(&a, "users")),
                                        kv(&a, "host.name", av_str(&a, "h1")),
                                        kv(&a, "telemetry.sdk.language", av_str(&a, "go"))});
  Req *req = REQ_NEW(&a, rs_new(&a, res, 1, (SS *[]){ss}));
  pf_buf b = pack_req(req);
  int rounds = 200;
  pc_decode_result r;
  struct timespec t0, t1;
  for (int keep = 0; keep < 2; keep++) {
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int i = 0; i < rounds; i++) {
      assert_int_equal(decode(&b, keep, &r), 0);
      pc_decode_result_free(&r);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double ns = ((double)(t1.tv_sec - t0.tv_sec) * 1e9 + (double)(t1.tv_nsec - t0.tv_nsec)) /
                (rounds * 512.0);
    printf("proto decode%s: %.1f ns/span (%.0f wire bytes/span)\n", keep ? " + keep_raw" : "", ns,
           (double)b.len / 512.0);
  }
  assert_int_equal(decode(&b, false, &r), 0);
  assert_int_equal(r.n_spans, 512);
  printf("records: %.1f bytes/span\n", (double)r.chunks[0]->records.len / 512.0);
  pc_decode_result_free(&r);
  pf_buf_free(&b);
  ar_free(&a);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_every_field),
      cmocka_unit_test(test_round_trip),
      cmocka_unit_test(test_pass_through_concat),
      cmocka_unit_test(test_unknown_fields),
      cmocka_unit_test(test_invalid_ids),
      cmocka_unit_test(test_invalid_utf8),
      cmocka_unit_test(test_truncation_every_offset),
      cmocka_unit_test(test_garbage_and_mutations),
      cmocka_unit_test(test_error_messages),
      cmocka_unit_test(test_depth),
      cmocka_unit_test(test_empty_and_limits),
      cmocka_unit_test(test_record_limits),
      cmocka_unit_test(test_links_and_enums),
      cmocka_unit_test(test_chunk_refs),
      cmocka_unit_test(test_responses),
      cmocka_unit_test(test_speed_report),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
