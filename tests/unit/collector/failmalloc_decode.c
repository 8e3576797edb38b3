/* Allocation-failure sweep of the OTLP decoders: malloc, calloc, realloc and free are replaced
 * at link time (-Wl,--wrap, see tests/integration/decode_failmalloc.cmake) by counting versions
 * that fail the i-th allocation. For every i a decode must return PROFILIS_ENOMEM with nothing
 * left allocated, or (when only an optional allocation failed) the complete result; the sweep
 * ends with the first i the decode never reaches. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "decode_fixtures.h"

#include "failmalloc_wrap.h"

typedef int (*decode_fn)(const uint8_t *, size_t, const pc_decode_opts *, pc_decode_result *);

static void sweep(decode_fn fn, const uint8_t *buf, size_t len, bool keep_raw) {
  pc_decode_opts o = {.keep_raw = keep_raw};
  pc_decode_result ref;
  assert_int_equal(fn(buf, len, &o, &ref), 0);
  assert_true(ref.n_spans > 0);
  long i = 0;
  for (;; i++) {
    pc_decode_result r;
    g_calls = 0;
    g_live = 0;
    g_fail_at = i;
    g_armed = true;
    int rc = fn(buf, len, &o, &r);
    long calls = g_calls;
    bool ok = rc == 0 && r.n_spans == ref.n_spans && r.n_chunks == ref.n_chunks &&
              r.rejected == ref.rejected;
    for (size_t c = 0; ok && c < r.n_chunks; c++) ok = chunks_equal(r.chunks[c], ref.chunks[c]);
    bool empty = r.n_chunks == 0 && !r.chunks && !strcmp(r.message, "out of memory");
    pc_decode_result_free(&r);
    g_armed = false;
    assert_int_equal(g_live, 0); /* nothing leaked, whatever failed */
    if (calls <= i) {            /* the decode made fewer allocations: none failed */
      assert_true(ok);
      break;
    }
    if (rc == PROFILIS_ENOMEM)
      assert_true(empty);
    else
      assert_true(ok); /* an optional allocation failed (the records' shrink) */
  }
  assert_true(i > 5);
  print_message("%ld allocation points\n", i);
  pc_decode_result_free(&ref);
}

static void test_proto(void **state) {
  (void)state;
  full f;
  build_full(&f);
  /* add what needs the slow paths: a rejected span and a kvlist with ill-formed UTF-8 */
  Span *bad = span_min(&f.a, 9);
  bad->trace_id.len = 3;
  SS *ss = f.req->resource_spans[1]->scope_spans[0];
  Span *spans[] = {ss->spans[0], bad};
  ss->n_spans = 2;
  ss->spans = ar_ptrs(&f.a, (void *const *)spans, 2);
  SET_REP(&f.a, ss->spans[0], attributes,
          kv(&f.a, "kvl", AV_KVLIST(&f.a, kv(&f.a, "k\xff", av_str(&f.a, "v\xfe")))));
  pf_buf b = pack_req(f.req);
  sweep(pc_decode_otlp_proto, b.p, b.len, true);
  sweep(pc_decode_otlp_proto, b.p, b.len, false);
  pf_buf_free(&b);
  ar_free(&f.a);
}

static void test_json(void **state) {
  (void)state;
  static const char text[] =
      "{\"resourceSpans\":[{\"resource\":{\"attributes\":[{\"key\":\"service.name\",\"value\":"
      "{\"stringValue\":\"svc\"}}]},\"scopeSpans\":[{\"scope\":{\"name\":\"lib\"},\"spans\":[{"
      "\"traceId\":\"0102030405060708090a0b0c0d0e0f10\",\"spanId\":\"1112131415161718\","
      "\"name\":\"a\\u00e9\\ud83d\\ude00\",\"kind\":2,\"startTimeUnixNano\":\"1\","
      "\"attributes\":[{\"key\":\"kv\",\"value\":{\"kvlistValue\":{\"values\":[{\"key\":\"a\","
      "\"value\":{\"doubleValue\":\"NaN\"}}]}}},{\"key\":\"b\",\"value\":{\"bytesValue\":\"AAH/"
      "\"}},"
      "{\"key\":\"ia\",\"value\":{\"arrayValue\":{\"values\":[{\"intValue\":\"1\"}]}}}],"
      "\"events\":[{\"name\":\"e\"}],\"links\":[{\"traceId\":\"0102030405060708090a0b0c0d0e0f10\","
      "\"spanId\":\"1112131415161718\"}],\"status\":{\"code\":2,\"message\":\"m\"}},"
      "{\"traceId\":\"01\",\"spanId\":\"02\"}]}]},{\"scopeSpans\":[{\"spans\":[{\"traceId\":"
      "\"0102030405060708090a0b0c0d0e0f11\",\"spanId\":\"1112131415161719\"}]}]}]}";
  sweep(pc_decode_otlp_json, (const uint8_t *)text, sizeof text - 1, true);
  sweep(pc_decode_otlp_json, (const uint8_t *)text, sizeof text - 1, false);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_proto),
      cmocka_unit_test(test_json),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
