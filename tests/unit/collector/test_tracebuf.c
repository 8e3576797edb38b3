/* Tests of the sampler's decision window (collector/tracebuf.c): held traces are found by key
 * (tenant and trace id both count), kept in first-span order, and closed from anywhere in the
 * order; spans come back byte for byte, aligned, with their origin and scope; the byte count
 * follows what is held and returns to zero; the limits report overflow at max_traces + 1 and
 * past max_bytes; many traces with colliding low bits stay reachable; the verdict cache
 * recalls, overwrites a key in place and evicts the oldest entry of a full set. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "pc_tracebuf.h"
#include "profilis/common.h"
#include "rec_builder.h"

static pc_tb_key key(uint64_t tenant, uint32_t n) {
  pc_tb_key k = {.tenant = tenant};
  memcpy(k.trace_id, &n, sizeof n); /* low bytes vary, the rest stay zero */
  k.trace_id[15] = 0x5a;
  return k;
}

static pc_tracebuf *tb_new(uint32_t max_traces, uint64_t max_bytes, uint32_t cache) {
  pc_tb_limits lim = {
      .max_traces = max_traces, .max_bytes = max_bytes, .cache_entries = cache, .seed = 42};
  pc_tracebuf *tb = NULL;
  assert_int_equal(pc_tracebuf_new(&tb, &lim), 0);
  return tb;
}

/* A record named name (attributes make it larger) in its own buffer. */
static const pf_span_rec *rec(pf_buf *b, const char *name, uint8_t sid, size_t n_attrs) {
  profilis_attr a[4] = {PROFILIS_ATTR_STR("a", "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"),
                        PROFILIS_ATTR_INT("b", 7), PROFILIS_ATTR_STR("c", "yy"),
                        PROFILIS_ATTR_BOOL("d", true)};
  rb_span s = {.name = name, .start_ns = 10, .end_ns = 20, .attrs = a, .n_attrs = n_attrs};
  rb_id(s.trace_id, 16, 1);
  rb_id(s.span_id, 8, sid);
  memset(b, 0, sizeof *b);
  assert_int_equal(rb_build(b, &s), 0);
  return (const pf_span_rec *)b->p;
}

static void test_invalid_limits(void **state) {
  (void)state;
  pc_tracebuf *tb = NULL;
  pc_tb_limits lim = {.max_traces = 0, .max_bytes = 10};
  assert_int_equal(pc_tracebuf_new(&tb, &lim), PROFILIS_EINVAL);
  lim = (pc_tb_limits){.max_traces = 10, .max_bytes = 0};
  assert_int_equal(pc_tracebuf_new(&tb, &lim), PROFILIS_EINVAL);
  assert_null(tb);
}

static void test_open_get_order_close(void **state) {
  (void)state;
  pc_tracebuf *tb = tb_new(100, 1 << 20, 0);
  pc_tb_trace *t[5];
  for (uint32_t i = 0; i < 5; i++) {
    pc_tb_key k = key(1, i);
    assert_null(pc_tracebuf_get(tb, &k));
    assert_int_equal(pc_tracebuf_open(tb, &k, 100 + i, &t[i]), 0);
    assert_int_equal(t[i]->first_ns, 100 + i);
    assert_int_equal(t[i]->info.op, -1);
    assert_int_equal(t[i]->info.rule, -2);
  }
  assert_int_equal(pc_tracebuf_traces(tb), 5);
  /* The same id in another tenant is another trace. */
  pc_tb_key other = key(2, 3);
  assert_null(pc_tracebuf_get(tb, &other));
  for (uint32_t i = 0; i < 5; i++) {
    pc_tb_key k = key(1, i);
    assert_ptr_equal(pc_tracebuf_get(tb, &k), t[i]);
  }
  /* Close from the middle, the oldest and the newest: the order stays intact. */
  pc_tracebuf_close(tb, t[2]);
  pc_tracebuf_close(tb, t[0]);
  pc_tracebuf_close(tb, t[4]);
  assert_ptr_equal(pc_tracebuf_oldest(tb), t[1]);
  assert_ptr_equal(t[1]->next, t[3]);
  assert_null(t[3]->next);
  pc_tb_key k2 = key(1, 2);
  assert_null(pc_tracebuf_get(tb, &k2));
  pc_tb_trace *n;
  assert_int_equal(pc_tracebuf_open(tb, &k2, 200, &n), 0);
  assert_ptr_equal(t[3]->next, n);
  assert_int_equal(pc_tracebuf_traces(tb), 3);
  pc_tracebuf_free(tb); /* frees held traces too (ASan checks) */
}

static void test_spans_round_trip(void **state) {
  (void)state;
  pc_tracebuf *tb = tb_new(10, 1 << 20, 0);
  pc_tb_key k = key(1, 1);
  pc_tb_trace *t;
  assert_int_equal(pc_tracebuf_open(tb, &k, 0, &t), 0);
  pf_buf b[3];
  const pf_span_rec *r[3] = {rec(&b[0], "a", 1, 0), rec(&b[1], "odd-length-name", 2, 3),
                             rec(&b[2], "c", 3, 4)};
  int origins[3];
  for (int i = 0; i < 3; i++)
    assert_int_equal(pc_tracebuf_append(tb, t, &origins[i], (uint32_t)i * 7, r[i]), 0);
  assert_int_equal(t->n_spans, 3);
  size_t off = 0;
  pc_tb_span h;
  const pf_span_rec *got;
  for (int i = 0; i < 3; i++) {
    assert_true(pc_tracebuf_next(t, &off, &h, &got));
    assert_ptr_equal(h.origin, &origins[i]);
    assert_int_equal(h.scope, (uint32_t)i * 7);
    assert_int_equal(h.size, r[i]->size);
    assert_int_equal((uintptr_t)got % 8, 0);
    assert_memory_equal(got, r[i], r[i]->size);
  }
  assert_false(pc_tracebuf_next(t, &off, &h, &got));
  for (int i = 0; i < 3; i++) pf_buf_free(&b[i]);
  pc_tracebuf_free(tb);
}

static void test_bytes_and_limits(void **state) {
  (void)state;
  pc_tracebuf *tb = tb_new(3, 4096, 0);
  assert_int_equal(pc_tracebuf_bytes(tb), 0);
  pf_buf b;
  const pf_span_rec *r = rec(&b, "span", 1, 4);
  pc_tb_trace *t[4];
  for (uint32_t i = 0; i < 3; i++) {
    pc_tb_key k = key(9, i);
    assert_int_equal(pc_tracebuf_open(tb, &k, i, &t[i]), 0);
    assert_false(pc_tracebuf_over(tb));
  }
  uint64_t empty = pc_tracebuf_bytes(tb);
  assert_true(empty >= 3 * sizeof(pc_tb_trace));
  pc_tb_key k = key(9, 3);
  assert_int_equal(pc_tracebuf_open(tb, &k, 3, &t[3]), 0);
  assert_true(pc_tracebuf_over(tb)); /* max_traces + 1 */
  pc_tracebuf_close(tb, t[0]);
  assert_false(pc_tracebuf_over(tb));
  /* Bytes: append until the byte limit is passed; the count grows with what is held. */
  uint64_t before = pc_tracebuf_bytes(tb);
  int n = 0;
  while (!pc_tracebuf_over(tb)) {
    assert_int_equal(pc_tracebuf_append(tb, t[1], NULL, 0, r), 0);
    n++;
    assert_true(n < 100);
  }
  assert_true(pc_tracebuf_bytes(tb) > 4096);
  assert_true(pc_tracebuf_bytes(tb) >= before + (uint64_t)n * r->size);
  pc_tracebuf_close(tb, t[1]);
  pc_tracebuf_close(tb, t[2]);
  pc_tracebuf_close(tb, t[3]);
  assert_int_equal(pc_tracebuf_bytes(tb), 0);
  assert_int_equal(pc_tracebuf_traces(tb), 0);
  assert_null(pc_tracebuf_oldest(tb));
  pf_buf_free(&b);
  pc_tracebuf_free(tb);
}

/* Ids that differ only in their high bytes (or only by tenant) all stay reachable. */
static void test_many_traces(void **state) {
  (void)state;
  enum { N = 20000 };
  pc_tracebuf *tb = tb_new(N, 1ull << 30, 0);
  pc_tb_trace **t = calloc(N, sizeof *t);
  assert_non_null(t);
  for (uint32_t i = 0; i < N; i++) {
    pc_tb_key k = {.tenant = i % 3};
    memcpy(k.trace_id + 4, &i, sizeof i);
    assert_int_equal(pc_tracebuf_open(tb, &k, i, &t[i]), 0);
  }
  for (uint32_t i = 0; i < N; i++) {
    pc_tb_key k = {.tenant = i % 3};
    memcpy(k.trace_id + 4, &i, sizeof i);
    assert_ptr_equal(pc_tracebuf_get(tb, &k), t[i]);
    k.tenant += 3;
    assert_null(pc_tracebuf_get(tb, &k));
  }
  for (uint32_t i = 0; i < N; i += 2) pc_tracebuf_close(tb, t[i]);
  for (uint32_t i = 0; i < N; i++) {
    pc_tb_key k = {.tenant = i % 3};
    memcpy(k.trace_id + 4, &i, sizeof i);
    assert_ptr_equal(pc_tracebuf_get(tb, &k), i % 2 ? t[i] : NULL);
  }
  assert_int_equal(pc_tracebuf_traces(tb), N / 2);
  assert_ptr_equal(pc_tracebuf_oldest(tb), t[1]);
  free(t);
  pc_tracebuf_free(tb);
}

static void test_cache(void **state) {
  (void)state;
  pc_tracebuf *tb = tb_new(10, 1 << 20, 8); /* 2 sets of 4 */
  pc_tb_verdict v;
  pc_tb_key k = key(1, 1);
  assert_false(pc_tracebuf_recall(tb, &k, &v));
  pc_tb_verdict in = {
      .randomness = 0x12345678abcdefull, .threshold = 0x8ull << 52, .keep = 1, .reason = 2};
  pc_tracebuf_remember(tb, &k, &in);
  assert_true(pc_tracebuf_recall(tb, &k, &v));
  assert_int_equal(v.randomness, in.randomness);
  assert_int_equal(v.threshold, in.threshold);
  assert_int_equal(v.keep, 1);
  assert_int_equal(v.reason, 2);
  pc_tb_key other = key(2, 1);
  assert_false(pc_tracebuf_recall(tb, &other, &v));
  /* The same key again is updated in place. */
  in.keep = 0;
  pc_tracebuf_remember(tb, &k, &in);
  assert_true(pc_tracebuf_recall(tb, &k, &v));
  assert_int_equal(v.keep, 0);
  /* Storing many more keys evicts the oldest: the first ones go, the last 4 stay. */
  for (uint32_t i = 100; i < 200; i++) {
    pc_tb_key x = key(1, i);
    pc_tb_verdict xv = {.randomness = i};
    pc_tracebuf_remember(tb, &x, &xv);
  }
  assert_false(pc_tracebuf_recall(tb, &k, &v));
  int found = 0;
  for (uint32_t i = 100; i < 200; i++) {
    pc_tb_key x = key(1, i);
    if (pc_tracebuf_recall(tb, &x, &v)) {
      assert_int_equal(v.randomness, i);
      found++;
    }
  }
  assert_int_equal(found, 8); /* every way of both sets holds one of the newest */
  pc_tb_key last = key(1, 199);
  assert_true(pc_tracebuf_recall(tb, &last, &v));
  pc_tracebuf_free(tb);
}

static void test_no_cache(void **state) {
  (void)state;
  pc_tracebuf *tb = tb_new(10, 1 << 20, 0);
  pc_tb_key k = key(1, 1);
  pc_tb_verdict v = {.keep = 1};
  pc_tracebuf_remember(tb, &k, &v);
  assert_false(pc_tracebuf_recall(tb, &k, &v));
  pc_tracebuf_free(tb);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_invalid_limits),   cmocka_unit_test(test_open_get_order_close),
      cmocka_unit_test(test_spans_round_trip), cmocka_unit_test(test_bytes_and_limits),
      cmocka_unit_test(test_many_traces),      cmocka_unit_test(test_cache),
      cmocka_unit_test(test_no_cache),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
