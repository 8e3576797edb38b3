/* Tests for the OTLP/JSON decoder (collector/decode_json.c, json_parse.c): the specification's
 * example, every value kind in both key spellings, escapes, numbers at their limits, bad JSON
 * with its line and column, nesting bounds, truncation at every byte, and the equivalence of
 * a JSON request with the protobuf one (same records; raw bytes that decode the same). */
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

static int jdecode(const char *text, bool keep_raw, pc_decode_result *r) {
  pc_decode_opts o = {.keep_raw = keep_raw};
  return pc_decode_otlp_json((const uint8_t *)text, strlen(text), &o, r);
}

/* The attributes of a record as the JSON writer renders them (NUL-terminated, caller frees). */
static char *attrs_json(const uint8_t *sec, size_t len) {
  pf_buf out = {0};
  pf_json j = pf_json_on(&out);
  pf_json_attrs(&j, sec, len);
  pf_json_raw(&j, "", 1);
  assert_int_equal(j.err, 0);
  return (char *)out.p;
}

/* opentelemetry-proto examples/trace.json */
static const char g_spec_example[] =
    "{\n"
    "  \"resourceSpans\": [\n"
    "    {\n"
    "      \"resource\": {\n"
    "        \"attributes\": [\n"
    "          {\n"
    "            \"key\": \"service.name\",\n"
    "            \"value\": {\n"
    "              \"stringValue\": \"my.service\"\n"
    "            }\n"
    "          }\n"
    "        ]\n"
    "      },\n"
    "      \"scopeSpans\": [\n"
    "        {\n"
    "          \"scope\": {\n"
    "            \"name\": \"my.library\",\n"
    "            \"version\": \"1.0.0\",\n"
    "            \"attributes\": [\n"
    "              {\n"
    "                \"key\": \"my.scope.attribute\",\n"
    "                \"value\": {\n"
    "                  \"stringValue\": \"some scope attribute\"\n"
    "                }\n"
    "              }\n"
    "            ]\n"
    "          },\n"
    "          \"spans\": [\n"
    "            {\n"
    "              \"traceId\": \"5B8EFFF798038103D269B633813FC60C\",\n"
    "              \"spanId\": \"EEE19B7EC3C1B174\",\n"
    "              \"parentSpanId\": \"EEE19B7EC3C1B173\",\n"
    "              \"name\": \"I'm a server span\",\n"
    "              \"startTimeUnixNano\": 1544712660000000000,\n"
    "              \"endTimeUnixNano\": 1544712661000000000,\n"
    "              \"kind\": 2,\n"
    "              \"attributes\": [\n"
    "                {\n"
    "                  \"key\": \"my.span.attr\",\n"
    "                  \"value\": {\n"
    "                    \"stringValue\": \"some value\"\n"
    "                  }\n"
    "                }\n"
    "              ]\n"
    "            }\n"
    "          ]\n"
    "        }\n"
    "      ]\n"
    "    }\n"
    "  ]\n"
    "}";

static const uint8_t g_tid[16] = {0x5B, 0x8E, 0xFF, 0xF7, 0x98, 0x03, 0x81, 0x03,
                                  0xD2, 0x69, 0xB6, 0x33, 0x81, 0x3F, 0xC6, 0x0C};
static const uint8_t g_sid[8] = {0xEE, 0xE1, 0x9B, 0x7E, 0xC3, 0xC1, 0xB1, 0x74};
static const uint8_t g_pid[8] = {0xEE, 0xE1, 0x9B, 0x7E, 0xC3, 0xC1, 0xB1, 0x73};

/* The same request built with protobuf-c. */
static Req *spec_example_proto(arena *a) {
  Span *s = span_min(a, 1);
  s->trace_id = bin(a, g_tid, 16);
  s->span_id = bin(a, g_sid, 8);
  s->parent_span_id = bin(a, g_pid, 8);
  s->name = "I'm a server span";
  s->start_time_unix_nano = 1544712660000000000ull;
  s->end_time_unix_nano = 1544712661000000000ull;
  s->kind = 2;
  SET_REP(a, s, attributes, kv(a, "my.span.attr", av_str(a, "some value")));
  Scope *sc = scope_new(a, "my.library", "1.0.0");
  SET_REP(a, sc, attributes, kv(a, "my.scope.attribute", av_str(a, "some scope attribute")));
  Resource *res = resource_new(a, 1, (KV *[]){kv(a, "service.name", av_str(a, "my.service"))});
  return REQ_NEW(a, RS_NEW(a, res, SS_NEW(a, sc, s)));
}

static void test_spec_example(void **state) {
  (void)state;
  pc_decode_result rj, rp, rr;
  assert_int_equal(jdecode(g_spec_example, true, &rj), 0);
  assert_int_equal(rj.n_chunks, 1);
  assert_int_equal(rj.n_spans, 1);
  pc_chunk *c = rj.chunks[0];
  const pf_span_rec *r = c->spans[0];
  assert_memory_equal(r->trace_id, g_tid, 16);
  assert_memory_equal(r->span_id, g_sid, 8);
  assert_int_equal(r->has_parent, 1);
  assert_memory_equal(r->parent_span_id, g_pid, 8);
  assert_true(r->start_ns == 1544712660000000000ull && r->end_ns == 1544712661000000000ull);
  assert_int_equal(r->kind, 2);
  assert_int_equal(r->name_len, strlen("I'm a server span"));
  assert_string_equal(c->scopes[0].name, "my.library");
  assert_string_equal(c->scopes[0].version, "1.0.0");
  char *s = attrs_json(c->resource.attrs.p, c->resource.attrs.len);
  assert_string_equal(s, "{\"service.name\":\"my.service\"}");
  free(s);
  s = attrs_json(pf_rec_attrs(r), r->attrs_len);
  assert_string_equal(s, "{\"my.span.attr\":\"some value\"}");
  free(s);
  assert_false(c->modified);

  /* the protobuf form gives the same records, and the JSON chunk's raw bytes are protobuf
   * that decodes to them again */
  arena a = {0};
  pf_buf b = pack_req(spec_example_proto(&a));
  assert_int_equal(pc_decode_otlp_proto(b.p, b.len, NULL, &rp), 0);
  assert_true(chunks_equal(rj.chunks[0], rp.chunks[0]));
  pf_buf req = {0};
  uint8_t hdr[6] = {0x0a}, *p = hdr + 1;
  for (uint64_t v = c->raw.len;; v >>= 7) {
    *p++ = (uint8_t)(v < 0x80 ? v : (v & 0x7f) | 0x80);
    if (v < 0x80) break;
  }
  pf_buf_append(&req, hdr, (size_t)(p - hdr));
  pf_buf_append(&req, c->raw.p, c->raw.len);
  Req *back = unpack_req(req.p, req.len);
  assert_non_null(back);
  assert_string_equal(back->resource_spans[0]->scope_spans[0]->scope->attributes[0]->key,
                      "my.scope.attribute");
  free_req(back);
  assert_int_equal(pc_decode_otlp_proto(req.p, req.len, NULL, &rr), 0);
  assert_true(chunks_equal(rr.chunks[0], rp.chunks[0]));
  pc_decode_result_free(&rr);
  pc_decode_result_free(&rp);
  pc_decode_result_free(&rj);
  pf_buf_free(&req);
  pf_buf_free(&b);
  ar_free(&a);
}

static const char g_all_kinds[] =
    "{\"resource_spans\":[{\"resource\":{\"attributes\":[{\"key\":\"service.name\",\"value\":"
    "{\"stringValue\":\"svc\"}}],\"droppedAttributesCount\":3},"
    "\"scopeSpans\":[{\"scope\":{\"name\":\"lib\",\"version\":\"1\"},\"spans\":[{"
    "\"traceId\":\"0102030405060708090a0b0c0d0e0f10\",\"span_id\":\"1112131415161718\","
    "\"parentSpanId\":\"\",\"traceState\":\"a=b\",\"name\":\"n\",\"kind\":\"SPAN_KIND_CLIENT\","
    "\"startTimeUnixNano\":\"1700000000000000001\",\"end_time_unix_nano\":1700000000000000002,"
    "\"attributes\":["
    "{\"key\":\"s\",\"value\":{\"stringValue\":\"v\"}},"
    "{\"key\":\"b\",\"value\":{\"boolValue\":true}},"
    "{\"key\":\"f\",\"value\":{\"bool_value\":false}},"
    "{\"key\":\"i1\",\"value\":{\"intValue\":\"-9223372036854775808\"}},"
    "{\"key\":\"i2\",\"value\":{\"intValue\":42}},"
    "{\"key\":\"i3\",\"value\":{\"int_value\":\"1e3\"}},"
    "{\"key\":\"i0\",\"value\":{\"intValue\":0}},"
    "{\"key\":\"d1\",\"value\":{\"doubleValue\":1.25}},"
    "{\"key\":\"d2\",\"value\":{\"doubleValue\":\"NaN\"}},"
    "{\"key\":\"d3\",\"value\":{\"doubleValue\":\"-Infinity\"}},"
    "{\"key\":\"d4\",\"value\":{\"doubleValue\":\"2.5\"}},"
    "{\"key\":\"d5\",\"value\":{\"double_value\":-3E2}},"
    "{\"key\":\"es\",\"value\":{\"stringValue\":\"\"}},"
    "{\"key\":\"sa\",\"value\":{\"arrayValue\":{\"values\":[{\"stringValue\":\"x\"},"
    "{\"stringValue\":\"y\"}]}}},"
    "{\"key\":\"ia\",\"value\":{\"array_value\":{\"values\":[{\"intValue\":\"1\"},{\"intValue\":2}]"
    "}}},"
    "{\"key\":\"ea\",\"value\":{\"arrayValue\":{}}},"
    "{\"key\":\"mix\",\"value\":{\"arrayValue\":{\"values\":[{\"intValue\":\"1\"},{\"boolValue\":"
    "false}]}}},"
    "{\"key\":\"kv\",\"value\":{\"kvlistValue\":{\"values\":[{\"key\":\"a\",\"value\":{"
    "\"intValue\":\"5\"}},"
    "{\"key\":\"b\",\"value\":{\"bytesValue\":\"AAH/\"}},{\"key\":\"c\"}]}}},"
    "{\"key\":\"by\",\"value\":{\"bytesValue\":\"AAH/\"}},"
    "{\"key\":\"by2\",\"value\":{\"bytes_value\":\"AAH_\"}},"
    "{\"key\":\"by3\",\"value\":{\"bytesValue\":\"AAE\"}},"
    "{\"key\":\"e\",\"value\":{}},"
    "{\"key\":\"nv\",\"value\":null}"
    "],\"droppedAttributesCount\":1,"
    "\"events\":[{\"timeUnixNano\":\"5\",\"name\":\"ev\",\"attributes\":[{\"key\":\"k\","
    "\"value\":{\"stringValue\":\"v\"}}],\"droppedAttributesCount\":2},{}],"
    "\"droppedEventsCount\":3,"
    "\"links\":[{\"traceId\":\"A1A2A3A4A5A6A7A8A9AAABACADAEAFB0\",\"spanId\":\"b1b2b3b4b5b6b7b8\","
    "\"traceState\":\"t=1\",\"attributes\":[],\"droppedAttributesCount\":4,\"flags\":257}],"
    "\"droppedLinksCount\":5,"
    "\"status\":{\"message\":\"m\",\"code\":\"STATUS_CODE_ERROR\"},"
    "\"flags\":1,"
    "\"unknownField\":{\"nested\":[1,2,{\"x\":null}],\"deeper\":[[[\"a\"]]]},\"other\":true"
    "}]}]}],\"extra\":123}";

static void test_all_value_kinds(void **state) {
  (void)state;
  pc_decode_result r;
  assert_int_equal(jdecode(g_all_kinds, true, &r), 0);
  assert_int_equal(r.n_spans, 1);
  pc_chunk *c = r.chunks[0];
  assert_int_equal(c->resource_dropped_attrs, 3);
  const pf_span_rec *rec = c->spans[0];
  assert_int_equal(rec->trace_id[0], 1);
  assert_int_equal(rec->trace_id[15], 0x10);
  assert_int_equal(rec->span_id[7], 0x18);
  assert_int_equal(rec->has_parent, 0);
  assert_int_equal(rec->kind, 3);
  assert_true(rec->start_ns == 1700000000000000001ull && rec->end_ns == 1700000000000000002ull);
  assert_int_equal(rec->tracestate_len, 3);
  assert_int_equal(rec->dropped_attrs, 1);
  assert_int_equal(rec->dropped_events, 3);
  assert_int_equal(rec->dropped_links, 5);
  assert_int_equal(rec->status_code, 2);
  assert_int_equal(rec->status_msg_len, 1);
  assert_int_equal(rec->trace_flags, 1);
  char *s = attrs_json(pf_rec_attrs(rec), rec->attrs_len);
  assert_string_equal(
      s, "{\"s\":\"v\",\"b\":true,\"f\":false,\"i1\":-9223372036854775808,\"i2\":42,\"i3\":1000,"
         "\"i0\":0,\"d1\":1.25,\"d2\":\"NaN\",\"d3\":\"-Infinity\",\"d4\":2.5,\"d5\":-300,"
         "\"es\":\"\",\"sa\":[\"x\",\"y\"],\"ia\":[1,2],\"ea\":[],\"mix\":[1,false],"
         "\"kv\":{\"a\":5,\"b\":\"AAH/\",\"c\":null},\"by\":\"AAH/\",\"by2\":\"AAH/\","
         "\"by3\":\"AAE=\",\"e\":null,\"nv\":null}");
  free(s);
  /* the types behind that text */
  static const int types[] = {1,
                              2,
                              2,
                              3,
                              3,
                              3,
                              3,
                              4,
                              4,
                              4,
                              4,
                              4,
                              1,
                              5,
                              7,
                              5,
                              PF_ATTR_ANYVALUE,
                              PF_ATTR_ANYVALUE,
                              PF_ATTR_BYTES,
                              PF_ATTR_BYTES,
                              PF_ATTR_BYTES,
                              PF_ATTR_ANYVALUE,
                              PF_ATTR_ANYVALUE};
  size_t off = 0, i = 0;
  pf_attr_view v = {0};
  while (pf_attr_next(pf_rec_attrs(rec), rec->attrs_len, &off, &v))
    assert_int_equal(v.type, types[i++]);
  assert_int_equal(i, sizeof types / sizeof types[0]);
  assert_int_equal(rec->n_attrs, i);
  /* events and links */
  pf_event_view e = {0};
  off = 0;
  assert_int_equal(rec->n_events, 2);
  assert_true(pf_event_next(pf_rec_events(rec), rec->events_len, &off, &e));
  assert_true(e.h.time_ns == 5 && e.h.name_len == 2 && e.h.n_attrs == 1 && e.h.dropped_attrs == 2);
  pf_link_view l = {0};
  off = 0;
  assert_true(pf_link_next(pf_rec_links(rec), rec->links_len, &off, &l));
  assert_int_equal(l.h.trace_id[0], 0xA1);
  assert_int_equal(l.h.span_id[0], 0xB1);
  assert_int_equal(l.h.flags, 257);
  assert_int_equal(l.h.dropped_attrs, 4);
  assert_int_equal(l.h.tracestate_len, 3);
  assert_int_equal(reencode_count(c), 1);
  pc_decode_result_free(&r);
}

static void test_escapes(void **state) {
  (void)state;
  const char *text =
      "{\"resourceSpans\":[{\"scopeSpans\":[{\"spans\":[{\"trace\\u0049d\":"
      "\"0102030405060708090a0b0c0d0e0f10\",\"spanId\":\"1112131415161718\",\"name\":"
      "\"a\\\"b\\\\c\\/d\\n\\t\\u00e9\\ud83d\\ude00\\ud800x\\udc00\\u0000\","
      "\"attributes\":[{\"key\":\"k\\u00e9\",\"value\":{\"stringValue\":\"raw \xc3\xa9 "
      "\xff\"}}]}]}]}]}";
  pc_decode_result r;
  assert_int_equal(jdecode(text, true, &r), 0);
  const pf_span_rec *rec = r.chunks[0]->spans[0];
  static const char want[] = "a\"b\\c/d\n\t\xc3\xa9\xf0\x9f\x98\x80\xef\xbf\xbdx\xef\xbf\xbd";
  assert_int_equal(rec->name_len, sizeof want); /* includes the escaped NUL at the end */
  assert_memory_equal(pf_rec_name(rec), want, sizeof want);
  char *s = attrs_json(pf_rec_attrs(rec), rec->attrs_len);
  assert_string_equal(s, "{\"k\xc3\xa9\":\"raw \xc3\xa9 \xef\xbf\xbd\"}");
  free(s);
  assert_true(r.chunks[0]->modified); /* the raw 0xff was repaired: raw bytes are not kept */
  assert_int_equal(r.chunks[0]->raw.len, 0);
  pc_decode_result_free(&r);
}

static void want_json_error(const char *text, const char *msg) {
  pc_decode_result r;
  int rc = jdecode(text, false, &r);
  if (rc != PROFILIS_EPROTO || strcmp(r.message, msg) != 0)
    print_message("input %s\n  got %d %s\n", text, rc, r.message);
  assert_int_equal(rc, PROFILIS_EPROTO);
  assert_string_equal(r.message, msg);
  assert_int_equal(r.n_chunks, 0);
  pc_decode_result_free(&r);
}

static void test_bad_json(void **state) {
  (void)state;
  want_json_error("", "invalid JSON at line 1, column 1: expected a value");
  want_json_error("   \n  ", "invalid JSON at line 2, column 3: expected a value");
  want_json_error("{", "invalid JSON at line 1, column 2: expected a member name");
  want_json_error("{\"a\":1,}", "invalid JSON at line 1, column 8: expected a member name");
  want_json_error("{\"a\" 1}", "invalid JSON at line 1, column 6: expected ':'");
  want_json_error("{\"a\":1 \"b\":2}", "invalid JSON at line 1, column 8: expected ',' or '}'");
  want_json_error("{\"a\":[1 2]}", "invalid JSON at line 1, column 9: expected ',' or ']'");
  want_json_error("{\"a\":[1,]}", "invalid JSON at line 1, column 9: expected a value");
  want_json_error("{\"a\":tru}", "invalid JSON at line 1, column 6: expected a value");
  want_json_error("{\"a\":01}", "invalid JSON at line 1, column 7: expected ',' or '}'");
  want_json_error("{\"a\":-}", "invalid JSON at line 1, column 6: invalid number");
  want_json_error("{\"a\":1.}", "invalid JSON at line 1, column 6: invalid number");
  want_json_error("{\"a\":\"\\x\"}", "invalid JSON at line 1, column 7: invalid escape in string");
  want_json_error("{\"a\":\"\\u12\"}",
                  "invalid JSON at line 1, column 7: invalid escape in string");
  want_json_error("{\"a\":\"x\ty\"}",
                  "invalid JSON at line 1, column 8: control character in string");
  want_json_error("{\"a\":\"abc", "invalid JSON at line 1, column 10: unterminated string");
  want_json_error("{} x", "invalid JSON at line 1, column 4: unexpected text after the value");
  want_json_error("[1]", "line 1, column 1: expected an object");
  want_json_error("{\"resourceSpans\":\"x\"}",
                  "line 1, column 18: resourceSpans: expected an array");
  want_json_error("{\"resourceSpans\":[1]}",
                  "line 1, column 19: resourceSpans[0]: expected an object");
  want_json_error("{\n  \"resourceSpans\": [\n    {\"scopeSpans\": [{\"spans\": [{\"traceId\": "
                  "\"zz\"}]}]}\n  ]\n}",
                  "line 3, column 44: resourceSpans[0].scopeSpans[0].spans[0].traceId: invalid "
                  "hex string");
  want_json_error("{\"resourceSpans\":[{\"scopeSpans\":[{\"spans\":[{\"spanId\":\"abc\"}]}]}]}",
                  "line 1, column 54: resourceSpans[0].scopeSpans[0].spans[0].spanId: invalid "
                  "hex string");
  const char *pre = "{\"resourceSpans\":[{\"scopeSpans\":[{\"spans\":[{";
  char buf[512];
#define SPAN_ERR(member, why)                                                                      \
  do {                                                                                             \
    snprintf(buf, sizeof buf, "%s%s}]}]}]}", pre, member);                                         \
    pc_decode_result r_;                                                                           \
    assert_int_equal(jdecode(buf, false, &r_), PROFILIS_EPROTO);                                   \
    if (!strstr(r_.message, why)) print_message("%s\n", r_.message);                               \
    assert_non_null(strstr(r_.message, why));                                                      \
  } while (0)
  SPAN_ERR("\"droppedAttributesCount\":4294967296", "droppedAttributesCount: number out of range");
  SPAN_ERR("\"droppedAttributesCount\":-1", "number out of range");
  SPAN_ERR("\"startTimeUnixNano\":\"18446744073709551616\"", "number out of range");
  SPAN_ERR("\"startTimeUnixNano\":1.5", "expected an integer");
  SPAN_ERR("\"startTimeUnixNano\":\"12abc\"", "invalid number");
  SPAN_ERR("\"startTimeUnixNano\":true", "expected a number");
  SPAN_ERR("\"kind\":\"SPAN_KIND_FOO\"", "kind: unknown enum value");
  SPAN_ERR("\"kind\":2147483648", "kind: number out of range");
  SPAN_ERR("\"name\":5", "name: expected a string");
  SPAN_ERR("\"status\":[]", "status: expected an object");
  SPAN_ERR("\"flags\":4294967296", "flags: number out of range");
  SPAN_ERR("\"attributes\":[{\"key\":\"k\",\"value\":{\"intValue\":\"9223372036854775808\"}}]",
           "attributes[0].value.intValue: number out of range");
  SPAN_ERR("\"attributes\":[{\"key\":\"k\",\"value\":{\"intValue\":1.5}}]", "expected an integer");
  SPAN_ERR("\"attributes\":[{\"key\":\"k\",\"value\":{\"doubleValue\":\"Inf\"}}]",
           "invalid number");
  SPAN_ERR("\"attributes\":[{\"key\":\"k\",\"value\":{\"boolValue\":1}}]",
           "expected true or false");
  SPAN_ERR("\"attributes\":[{\"key\":\"k\",\"value\":{\"bytesValue\":\"A\"}}]",
           "bytesValue: invalid base64 string");
  SPAN_ERR("\"attributes\":[{\"key\":\"k\",\"value\":{\"bytesValue\":\"A=AA\"}}]",
           "invalid base64 string");
#undef SPAN_ERR
}

static void test_numbers_and_enums(void **state) {
  (void)state;
  const char *text =
      "{\"resourceSpans\":[{\"scopeSpans\":[{\"spans\":[{\"traceId\":"
      "\"0102030405060708090a0b0c0d0e0f10\",\"spanId\":\"1112131415161718\",\"kind\":5,"
      "\"startTimeUnixNano\":18446744073709551615,\"endTimeUnixNano\":\"0\","
      "\"status\":{\"code\":1},\"droppedLinksCount\":\"4294967295\",\"flags\":\"1\","
      "\"attributes\":[{\"key\":\"max\",\"value\":{\"intValue\":9223372036854775807}},"
      "{\"key\":\"e\",\"value\":{\"intValue\":-1.2e1}},"
      "{\"key\":\"tiny\",\"value\":{\"doubleValue\":0.1}}]}]}]}]}";
  pc_decode_result r;
  assert_int_equal(jdecode(text, false, &r), 0);
  const pf_span_rec *rec = r.chunks[0]->spans[0];
  assert_int_equal(rec->kind, 5);
  assert_true(rec->start_ns == UINT64_MAX);
  assert_true(rec->end_ns == 0);
  assert_int_equal(rec->status_code, 1);
  assert_int_equal(rec->dropped_links, UINT32_MAX);
  assert_int_equal(rec->trace_flags, 1);
  char *s = attrs_json(pf_rec_attrs(rec), rec->attrs_len);
  assert_string_equal(s, "{\"max\":9223372036854775807,\"e\":-12,\"tiny\":0.1}");
  free(s);
  pc_decode_result_free(&r);

  /* a wrong-length id is an invalid span (rejected), not malformed JSON */
  text = "{\"resourceSpans\":[{\"scopeSpans\":[{\"spans\":[{\"traceId\":\"0102\",\"spanId\":"
         "\"1112131415161718\"},{\"traceId\":\"0102030405060708090a0b0c0d0e0f10\",\"spanId\":"
         "\"1112131415161718\",\"status\":{\"code\":\"STATUS_CODE_OK\"}}]}]}]}";
  assert_int_equal(jdecode(text, false, &r), 0);
  assert_int_equal(r.rejected, 1);
  assert_int_equal(r.n_spans, 1);
  assert_string_equal(r.message, "1 span rejected: invalid trace_id");
  assert_int_equal(r.chunks[0]->spans[0]->status_code, 1);
  pc_decode_result_free(&r);

  /* empty request forms */
  assert_int_equal(jdecode("{}", false, &r), 0);
  assert_int_equal(r.n_chunks, 0);
  assert_int_equal(jdecode(" {\"resourceSpans\":[]} ", false, &r), 0);
  assert_int_equal(jdecode("{\"resourceSpans\":null}", false, &r), 0);
  assert_int_equal(jdecode("{\"resourceSpans\":[{}]}", false, &r), 0);
  assert_int_equal(r.n_chunks, 0);
  assert_null(r.chunks); /* nothing to free when nothing was returned */
  /* max_spans applies to JSON too */
  text = "{\"resourceSpans\":[{\"scopeSpans\":[{\"spans\":[{},{}]}]}]}";
  assert_int_equal(pc_decode_otlp_json((const uint8_t *)text, strlen(text),
                                       &(pc_decode_opts){.max_spans = 1}, &r),
                   PROFILIS_ELIMIT);
  assert_int_equal(pc_decode_otlp_json(NULL, 0, NULL, NULL), PROFILIS_EINVAL);
}

/* AnyValue nesting: 32 levels decode, 33 are refused; JSON nesting in unknown fields is bounded
 * by the parser, so a hostile document cannot exhaust the stack. */
static void test_depth(void **state) {
  (void)state;
  for (int levels = 31; levels <= 33; levels++) {
    pf_buf t = {0};
    pf_buf_puts(&t, "{\"resourceSpans\":[{\"scopeSpans\":[{\"spans\":[{\"traceId\":"
                    "\"0102030405060708090a0b0c0d0e0f10\",\"spanId\":\"1112131415161718\","
                    "\"attributes\":[{\"key\":\"deep\",\"value\":");
    for (int i = 1; i < levels; i++)
      pf_buf_puts(&t, i % 2 ? "{\"arrayValue\":{\"values\":["
                            : "{\"kvlistValue\":{\"values\":[{\"key\":\"k\",\"value\":");
    pf_buf_puts(&t, "{\"intValue\":7}");
    for (int i = levels - 1; i >= 1; i--) pf_buf_puts(&t, i % 2 ? "]}}" : "}]}}");
    pf_buf_puts(&t, "}]}]}]}]}");
    pf_buf_append(&t, "", 1);
    pc_decode_result r;
    int rc = jdecode((const char *)t.p, true, &r);
    if (levels <= PC_DECODE_MAX_DEPTH) {
      if (rc) print_message("%s\n", r.message);
      assert_int_equal(rc, 0);
      const pf_span_rec *rec = r.chunks[0]->spans[0];
      char *s = attrs_json(pf_rec_attrs(rec), rec->attrs_len);
      assert_non_null(strstr(s, "7"));
      free(s);
      assert_int_equal(reencode_count(r.chunks[0]), 1);
    } else {
      assert_int_equal(rc, PROFILIS_EPROTO);
      assert_non_null(strstr(r.message, "AnyValue nested deeper than 32 levels"));
    }
    pc_decode_result_free(&r);
    pf_buf_free(&t);
  }
  pf_buf t = {0};
  pf_buf_puts(&t, "{\"unknown\":");
  for (int i = 0; i < 100000; i++) pf_buf_puts(&t, "[");
  pf_buf_append(&t, "", 1);
  pc_decode_result r;
  assert_int_equal(jdecode((const char *)t.p, false, &r), PROFILIS_EPROTO);
  assert_non_null(strstr(r.message, "nested too deeply"));
  pf_buf_free(&t);
}

/* Every strict prefix of a request is invalid JSON: refused, never a crash or a leak. */
static void test_truncation(void **state) {
  (void)state;
  size_t n = strlen(g_all_kinds);
  for (size_t k = 0; k < n; k++) {
    uint8_t *copy = malloc(k ? k : 1);
    memcpy(copy, g_all_kinds, k);
    pc_decode_result r;
    assert_int_equal(pc_decode_otlp_json(copy, k, &(pc_decode_opts){.keep_raw = true}, &r),
                     PROFILIS_EPROTO);
    assert_null(r.chunks);
    free(copy);
  }
}

/* Informational: JSON decode cost per span (transcoding plus the protobuf decode). */
static void test_speed_report(void **state) {
  (void)state;
  pf_buf t = {0};
  pf_buf_puts(&t, "{\"resourceSpans\":[{\"resource\":{\"attributes\":[{\"key\":\"service.name\","
                  "\"value\":{\"stringValue\":\"users\"}}]},\"scopeSpans\":[{\"scope\":{\"name\":"
                  "\"io.opentelemetry.http\"},\"spans\":[");
  for (int i = 0; i < 512; i++)
    pf_buf_printf(&t,
                  "%s{\"traceId\":\"%032x\",\"spanId\":\"%016x\",\"parentSpanId\":\"%016x\","
                  "\"name\":\"GET /api/users/{id}\",\"kind\":2,\"startTimeUnixNano\":"
                  "\"17000000000000%05d\",\"endTimeUnixNano\":\"17000000010000%05d\","
                  "\"attributes\":[{\"key\":\"http.request.method\",\"value\":{\"stringValue\":"
                  "\"GET\"}},{\"key\":\"http.route\",\"value\":{\"stringValue\":"
                  "\"/api/users/{id}\"}},{\"key\":\"http.response.status_code\",\"value\":"
                  "{\"intValue\":\"200\"}},{\"key\":\"server.address\",\"value\":{\"stringValue\":"
                  "\"10.1.2.3\"}}],\"status\":{\"code\":1},\"flags\":1}",
                  i ? "," : "", i + 1, i + 1, i + 2, i, i);
  pf_buf_puts(&t, "]}]}]}");
  int rounds = 50;
  pc_decode_result r;
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  for (int i = 0; i < rounds; i++) {
    assert_int_equal(pc_decode_otlp_json(t.p, t.len, NULL, &r), 0);
    assert_int_equal(r.n_spans, 512);
    pc_decode_result_free(&r);
  }
  clock_gettime(CLOCK_MONOTONIC, &t1);
  double ns = ((double)(t1.tv_sec - t0.tv_sec) * 1e9 + (double)(t1.tv_nsec - t0.tv_nsec)) /
              (rounds * 512.0);
  printf("json decode: %.1f ns/span (%.0f bytes/span)\n", ns, (double)t.len / 512.0);
  pf_buf_free(&t);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_spec_example),      cmocka_unit_test(test_all_value_kinds),
      cmocka_unit_test(test_escapes),           cmocka_unit_test(test_bad_json),
      cmocka_unit_test(test_numbers_and_enums), cmocka_unit_test(test_depth),
      cmocka_unit_test(test_truncation),        cmocka_unit_test(test_speed_report),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
