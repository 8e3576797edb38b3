/* Tests of the JSONL span lines (collector/json_render.c) against a reference renderer written
 * here with the plain pf_json calls (json_write.h), which is what the line format is: the fast
 * paths (numbers eight digits at a time, ids four bytes at a time, plain-text detection a word
 * at a time, the resource/scope/tenant tail rendered once per scope) must produce exactly the
 * same bytes. Spans are random (seeded): names, keys and values with quotes, backslashes,
 * control bytes, DEL, multi-byte and ill-formed UTF-8, lengths around 4/8/16/32; integers at
 * every digit count and both ends of int64; events, links, dropped counts, several scopes,
 * tenants; and a record whose sections do not fit, which is skipped. */
#define _GNU_SOURCE /* memmem */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "chunk_builder.h"
#include "json_write.h"
#include "pc_json_render.h"

/* ---- the reference: the line format spelled out with pf_json ---- */

static void ref_events(pf_json *j, const pf_span_rec *r) {
  size_t off = 0;
  pf_event_view e;
  pf_json_lit(j, "[");
  for (bool first = true; pf_event_next(pf_rec_events(r), r->events_len, &off, &e); first = false) {
    pf_json_lit(j, first ? "{\"name\":" : ",{\"name\":");
    pf_json_str(j, e.name, e.h.name_len);
    pf_json_lit(j, ",\"time_unix_nano\":");
    pf_json_u64(j, e.h.time_ns);
    pf_json_lit(j, ",\"attributes\":");
    pf_json_attrs(j, e.attrs, e.h.attrs_len);
    pf_json_lit(j, ",\"dropped_attributes_count\":");
    pf_json_u64(j, e.h.dropped_attrs);
    pf_json_lit(j, "}");
  }
  pf_json_lit(j, "]");
}

static void ref_links(pf_json *j, const pf_span_rec *r) {
  size_t off = 0;
  pf_link_view l;
  pf_json_lit(j, "[");
  for (bool first = true; pf_link_next(pf_rec_links(r), r->links_len, &off, &l); first = false) {
    pf_json_lit(j, first ? "{\"trace_id\":" : ",{\"trace_id\":");
    pf_json_hex(j, l.h.trace_id, 16);
    pf_json_lit(j, ",\"span_id\":");
    pf_json_hex(j, l.h.span_id, 8);
    pf_json_lit(j, ",\"trace_state\":");
    pf_json_str(j, l.tracestate, l.h.tracestate_len);
    pf_json_lit(j, ",\"flags\":");
    pf_json_u64(j, l.h.flags);
    pf_json_lit(j, ",\"attributes\":");
    pf_json_attrs(j, l.attrs, l.h.attrs_len);
    pf_json_lit(j, ",\"dropped_attributes_count\":");
    pf_json_u64(j, l.h.dropped_attrs);
    pf_json_lit(j, "}");
  }
  pf_json_lit(j, "]");
}

static void ref_line(pf_json *j, const pc_chunk *c, const pf_span_rec *r) {
  pf_json_lit(j, "{\"trace_id\":");
  pf_json_hex(j, r->trace_id, 16);
  pf_json_lit(j, ",\"span_id\":");
  pf_json_hex(j, r->span_id, 8);
  pf_json_lit(j, ",\"parent_span_id\":");
  if (r->has_parent)
    pf_json_hex(j, r->parent_span_id, 8);
  else
    pf_json_lit(j, "\"\"");
  pf_json_lit(j, ",\"trace_state\":");
  pf_json_str(j, pf_rec_tracestate(r), r->tracestate_len);
  pf_json_lit(j, ",\"flags\":");
  pf_json_u64(j, r->trace_flags);
  pf_json_lit(j, ",\"name\":");
  pf_json_str(j, pf_rec_name(r), r->name_len);
  pf_json_lit(j, ",\"kind\":");
  pf_json_u64(j, r->kind);
  pf_json_lit(j, ",\"start_time_unix_nano\":");
  pf_json_u64(j, r->start_ns);
  pf_json_lit(j, ",\"end_time_unix_nano\":");
  pf_json_u64(j, r->end_ns);
  pf_json_lit(j, ",\"duration_ns\":");
  pf_json_u64(j, r->end_ns > r->start_ns ? r->end_ns - r->start_ns : 0);
  pf_json_lit(j, ",\"status_code\":");
  pf_json_u64(j, r->status_code);
  pf_json_lit(j, ",\"status_message\":");
  pf_json_str(j, pf_rec_status_msg(r), r->status_msg_len);
  pf_json_lit(j, ",\"attributes\":");
  pf_json_attrs(j, pf_rec_attrs(r), r->attrs_len);
  pf_json_lit(j, ",\"dropped_attributes_count\":");
  pf_json_u64(j, r->dropped_attrs);
  pf_json_lit(j, ",\"events\":");
  ref_events(j, r);
  pf_json_lit(j, ",\"dropped_events_count\":");
  pf_json_u64(j, r->dropped_events);
  pf_json_lit(j, ",\"links\":");
  ref_links(j, r);
  pf_json_lit(j, ",\"dropped_links_count\":");
  pf_json_u64(j, r->dropped_links);
  pf_json_lit(j, ",\"resource\":");
  pf_json_attrs(j, c->resource.attrs.p, c->resource.attrs.len);
  pf_json_lit(j, ",\"scope\":{\"name\":");
  pf_json_cstr(j, r->scope ? r->scope->name : NULL);
  pf_json_lit(j, ",\"version\":");
  pf_json_cstr(j, r->scope ? r->scope->version : NULL);
  pf_json_lit(j, "},\"tenant\":");
  pf_json_str(j, c->tenant, strnlen(c->tenant, PC_TENANT_MAX));
  pf_json_lit(j, "}\n");
}

static void ref_lines(const pc_chunk *c, pf_buf *out) {
  pf_json j = pf_json_on(out);
  for (uint32_t i = 0; i < c->n_spans; i++)
    if (pf_rec_sections_fit(c->spans[i])) ref_line(&j, c, c->spans[i]);
  assert_int_equal(j.err, 0);
}

/* Renders c both ways and compares, showing the first difference. */
static void assert_same_lines(pc_json_scratch *s, const pc_chunk *c) {
  pf_buf got = {0}, want = {0};
  assert_int_equal(pc_json_span_lines(s, c, &got), 0);
  ref_lines(c, &want);
  size_t i = 0;
  while (i < got.len && i < want.len && got.p[i] == want.p[i]) i++;
  if (i != got.len || i != want.len)
    fail_msg("lines differ at byte %zu of %zu/%zu:\n got: %.80s\nwant: %.80s", i, got.len, want.len,
             (const char *)got.p + (i > 20 ? i - 20 : 0),
             (const char *)want.p + (i > 20 ? i - 20 : 0));
  pf_buf_free(&got);
  pf_buf_free(&want);
}

/* ---- random spans ---- */

static uint64_t rng = 0x243F6A8885A308D3ull;

static uint64_t rnd(void) { /* xorshift64 */
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return rng;
}

/* Text of n bytes: mostly plain, with every kind of byte that needs care now and then. */
static void rnd_text(char *dst, size_t n) {
  static const char *const odd[] = {"\"",       "\\",           "\n",
                                    "\x01",     "\x1f",         "\x7f",
                                    "\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80",
                                    "\xff",     "\xc3",         "\xed\xa0\x80"};
  size_t i = 0;
  bool plain = rnd() % 3 != 0; /* a third of the texts hold something odd */
  while (i < n) {
    const char *o = odd[rnd() % (sizeof odd / sizeof *odd)];
    if (!plain && rnd() % 6 == 0 && i + strlen(o) <= n) {
      memcpy(dst + i, o, strlen(o));
      i += strlen(o);
    } else {
      dst[i++] = (char)(' ' + rnd() % 95); /* printable ASCII, quote and backslash included */
      if (plain && (dst[i - 1] == '"' || dst[i - 1] == '\\')) dst[i - 1] = 'q';
    }
  }
  dst[n] = '\0';
}

/* Lengths around the word sizes the fast paths work in. */
static size_t rnd_len(void) {
  static const size_t lens[] = {0, 1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 32, 33, 40};
  return lens[rnd() % (sizeof lens / sizeof *lens)];
}

/* Numbers of every digit count, and the ends of the range. */
static uint64_t rnd_u64(void) {
  static const uint64_t edge[] = {0,
                                  9,
                                  10,
                                  99,
                                  100,
                                  99999999,
                                  100000000,
                                  9999999999999999ull,
                                  10000000000000000ull,
                                  999999999999999999ull,
                                  1000000000000000000ull,
                                  9999999999999999999ull,
                                  10000000000000000000ull,
                                  UINT64_MAX};
  if (rnd() % 3 == 0) return edge[rnd() % (sizeof edge / sizeof *edge)];
  return rnd() >> (rnd() % 64);
}

#define MAX_ATTRS 6
typedef struct span_text {
  char name[48], msg[48], ts[48], keys[MAX_ATTRS][48], vals[MAX_ATTRS][48], ev_name[48];
  char lk_ts[48];
  profilis_attr attrs[MAX_ATTRS], ev_attr;
  rb_event ev;
  rb_link lk;
} span_text;

static void rnd_attrs(span_text *t, size_t n) {
  for (size_t i = 0; i < n; i++) {
    rnd_text(t->keys[i], rnd_len());
    if (!t->keys[i][0]) strcpy(t->keys[i], "k"); /* the SDK refuses empty keys */
    switch (rnd() % 4) {
    case 0:
      rnd_text(t->vals[i], rnd_len());
      t->attrs[i] = PROFILIS_ATTR_STR(t->keys[i], t->vals[i]);
      break;
    case 1:
      t->attrs[i] = PROFILIS_ATTR_INT(t->keys[i], rnd() % 4 ? (int64_t)rnd_u64()
                                                            : (rnd() % 2 ? INT64_MIN : INT64_MAX));
      break;
    case 2:
      t->attrs[i] = PROFILIS_ATTR_BOOL(t->keys[i], rnd() % 2);
      break;
    default:
      t->attrs[i] = PROFILIS_ATTR_DOUBLE(t->keys[i], (double)(int64_t)rnd() / 1e6);
    }
  }
}

static void add_random_span(tchunk *c, const pf_scope *scope, span_text *t) {
  rb_span s = {.name = t->name, .scope = scope};
  rnd_text(t->name, rnd_len());
  s.name_len = strlen(t->name);
  if (rnd() % 3 == 0) rnd_text(t->msg, rnd_len()), s.status_msg = t->msg;
  if (rnd() % 3 == 0) rnd_text(t->ts, rnd_len()), s.tracestate = t->ts;
  s.kind = (uint8_t)rnd(), s.status_code = (uint8_t)rnd(), s.trace_flags = (uint8_t)rnd();
  s.start_ns = rnd_u64();
  s.end_ns = rnd() % 2 ? s.start_ns + rnd_u64() % 100000000000ull : rnd_u64();
  for (int i = 0; i < 16; i++) s.trace_id[i] = (uint8_t)rnd();
  for (int i = 0; i < 8; i++) s.span_id[i] = (uint8_t)rnd(), s.parent_span_id[i] = (uint8_t)rnd();
  s.has_parent = rnd() % 2;
  s.n_attrs = rnd() % (MAX_ATTRS + 1);
  rnd_attrs(t, s.n_attrs);
  s.attrs = t->attrs;
  if (rnd() % 4 == 0) s.dropped_attrs = (uint32_t)rnd_u64();
  if (rnd() % 4 == 0) s.dropped_events = (uint32_t)rnd();
  if (rnd() % 4 == 0) s.dropped_links = (uint32_t)rnd();
  if (rnd() % 4 == 0) {
    rnd_text(t->ev_name, rnd_len());
    t->ev_attr = PROFILIS_ATTR_INT("n", (int64_t)rnd_u64());
    t->ev = (rb_event){.name = t->ev_name,
                       .time_ns = rnd_u64(),
                       .attrs = &t->ev_attr,
                       .n_attrs = 1,
                       .dropped_attrs = (uint32_t)(rnd() % 3)};
    s.events = &t->ev, s.n_events = 1;
  }
  if (rnd() % 4 == 0) {
    rnd_text(t->lk_ts, rnd_len());
    t->lk = (rb_link){.flags = (uint32_t)rnd(), .tracestate = t->lk_ts};
    for (int i = 0; i < 16; i++) t->lk.trace_id[i] = (uint8_t)rnd();
    for (int i = 0; i < 8; i++) t->lk.span_id[i] = (uint8_t)rnd();
    s.links = &t->lk, s.n_links = 1;
  }
  tc_add(c, &s);
}

/* ---- tests ---- */

static void test_random_spans_match_reference(void **state) {
  (void)state;
  pf_scope scopes[3] = {{.name = "lib.a", .version = "1.0"},
                        {.name = "lib \"b\"\\", .version = NULL},
                        {.name = NULL, .version = "\xff"}};
  profilis_attr res[] = {PROFILIS_ATTR_STR("service.name", "svc"), PROFILIS_ATTR_INT("pid", -42),
                         PROFILIS_ATTR_BOOL("ok", true), PROFILIS_ATTR_STR("host\n", "h\"1\"")};
  static const char *const tenants[] = {NULL, "acme", "a\"b\\c\x01"};
  pc_json_scratch s = {0};
  for (int round = 0; round < 200; round++) {
    tchunk c;
    span_text t;
    tc_init(&c, res, (size_t)(round % 5), tenants[round % 3]);
    int n = 1 + (int)(rnd() % 12);
    for (int i = 0; i < n; i++) {
      /* runs of one scope and switches between scopes, as chunks have them */
      const pf_scope *sc = rnd() % 4 ? &scopes[round % 3] : &scopes[rnd() % 3];
      add_random_span(&c, rnd() % 16 ? sc : NULL, &t);
    }
    assert_same_lines(&s, &c.c);
    tc_free(&c);
  }
  pc_json_scratch_free(&s);
}

/* Attribute entries the SDK never makes: ill-formed UTF-8 in keys and strings, integers and
 * booleans with too few bytes (null), bytes, raw AnyValues. */
static void test_unusual_attributes(void **state) {
  (void)state;
  pc_json_scratch s = {0};
  tchunk c;
  tc_init(&c, NULL, 0, NULL);
  rb_span sp = {.name = "n", .start_ns = 5, .end_ns = 7};
  rb_id(sp.trace_id, 16, 1);
  rb_id(sp.span_id, 8, 2);
  tc_add(&c, &sp);
  tc_last_raw_attr(&c, PROFILIS_ATTR_STRING, "bad\xff", "v\xc3", 2);
  tc_last_raw_attr(&c, PROFILIS_ATTR_INT, "short", "\x01\x02", 2);
  tc_last_raw_attr(&c, PROFILIS_ATTR_BOOL, "empty", "", 0);
  tc_last_raw_attr(&c, PF_ATTR_BYTES, "raw", "\x00\x01\xfe\xff", 4);
  /* AnyValue{kvlist_value: {values: [{key: "k", value: {int_value: 5}}]}} */
  static const uint8_t kv[] = {0x32, 0x09, 0x0a, 0x07, 0x0a, 0x01, 'k', 0x12, 0x02, 0x18, 0x05};
  tc_last_raw_attr(&c, PF_ATTR_ANYVALUE, "any", kv, sizeof kv);
  int64_t neg = -1;
  tc_last_raw_attr(&c, PROFILIS_ATTR_INT, "neg", &neg, 8);
  assert_same_lines(&s, &c.c);
  tc_free(&c);
  pc_json_scratch_free(&s);
}

/* The tail is rendered per chunk: two chunks whose spans share a scope pointer but differ in
 * resource and tenant each get their own. A record whose sections overrun it is skipped. */
static void test_tail_per_chunk_and_bad_record(void **state) {
  (void)state;
  pf_scope sc = {.name = "s", .version = "1"};
  profilis_attr r1[] = {PROFILIS_ATTR_STR("service.name", "one")};
  profilis_attr r2[] = {PROFILIS_ATTR_STR("service.name", "two")};
  pc_json_scratch s = {0};
  tchunk a, b;
  rb_span sp = {.name = "x", .scope = &sc, .start_ns = 1, .end_ns = 2};
  rb_id(sp.trace_id, 16, 3);
  rb_id(sp.span_id, 8, 4);
  tc_init(&a, r1, 1, "ta");
  tc_init(&b, r2, 1, "tb");
  tc_add(&a, &sp);
  tc_add(&b, &sp);
  tc_add(&b, &sp);
  pf_span_rec h;
  memcpy(&h, b.recs[1].p, sizeof h);
  h.attrs_len = 1000; /* past the record's end */
  memcpy(b.recs[1].p, &h, sizeof h);
  assert_same_lines(&s, &a.c);
  assert_same_lines(&s, &b.c);
  pf_buf out = {0};
  assert_int_equal(pc_json_span_lines(&s, &b.c, &out), 0);
  assert_non_null(memmem(out.p, out.len, "\"tenant\":\"tb\"}\n", 15));
  assert_null(memmem(out.p, out.len, "\"one\"", 5));
  assert_int_equal(memchr(out.p, '\n', out.len) == (void *)(out.p + out.len - 1), true);
  pf_buf_free(&out);
  tc_free(&a);
  tc_free(&b);
  pc_json_scratch_free(&s);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_random_spans_match_reference),
      cmocka_unit_test(test_unusual_attributes),
      cmocka_unit_test(test_tail_per_chunk_and_bad_record),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
