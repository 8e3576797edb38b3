/* Batch span processor and ring: bounds in spans and bytes, drop counting without blocking,
 * the block policy, flush and shutdown deadlines with a stalled exporter, multi-producer
 * integrity. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <cmocka.h>

#include "capture_exporter.h"
#include "pf_provider.h"
#include "pf_ring.h"
#include "profilis/profilis.h"

static profilis_provider *mk(cap_exporter *cap, uint32_t qsize, uint32_t qbytes,
                             profilis_queue_policy pol, uint32_t delay_ms) {
  profilis_provider_opts o;
  profilis_provider_opts_init(&o);
  o.use_env = false;
  o.sampler = PROFILIS_SAMPLER_ALWAYS_ON;
  o.max_queue_size = qsize;
  o.max_export_batch_size = qsize < 64 ? qsize : 64;
  o.max_queue_bytes = qbytes;
  o.queue_policy = pol;
  o.block_timeout_ms = 50;
  o.schedule_delay_ms = delay_ms;
  o.export_timeout_ms = 2000;
  profilis_provider *p;
  assert_int_equal(pf_provider_new_with_exporter(&p, &o, &cap->base), 0);
  return p;
}

static void test_drop_when_full_never_blocks(void **state) {
  cap_exporter *cap = cap_new();
  atomic_store(&cap->stall, 1);
  profilis_provider *p = mk(cap, 100, 1 << 20, PROFILIS_QUEUE_DROP, 5);
  profilis_tracer *t;
  profilis_tracer_get(p, "t", NULL, &t);
  uint64_t t0 = pf_mono_ns();
  for (int i = 0; i < 10000; i++) {
    profilis_span *s = profilis_span_begin(t, "s");
    profilis_span_set_int(s, "i", i);
    profilis_span_end(s);
  }
  uint64_t el = pf_mono_ns() - t0;
  assert_true(el < 1000000000ull); /* 10k spans with a stalled exporter: no waiting */
  profilis_stats st;
  profilis_provider_stats(p, &st);
  /* at most one batch in the exporter plus a full queue were accepted */
  assert_true(st.spans_queued <= 100 + 64);
  assert_int_equal(st.spans_queued + st.spans_dropped, 10000);
  assert_true(st.queue_depth <= 100);
  atomic_store(&cap->stall, 0);
  assert_int_equal(profilis_provider_force_flush(p, 3000), 0);
  profilis_provider_stats(p, &st);
  assert_int_equal(st.spans_exported, st.spans_queued);
  assert_int_equal(cap->n, st.spans_exported);
  profilis_provider_free(p);
  cap_free(cap);
}

static void test_byte_bound(void **state) {
  cap_exporter *cap = cap_new();
  atomic_store(&cap->stall, 1);
  profilis_provider *p = mk(cap, 100000, 64 * 1024, PROFILIS_QUEUE_DROP, 5);
  profilis_tracer *t;
  profilis_tracer_get(p, "t", NULL, &t);
  char big[1000];
  memset(big, 'x', sizeof big - 1);
  big[sizeof big - 1] = 0;
  for (int i = 0; i < 1000; i++) {
    profilis_span *s = profilis_span_begin(t, "big");
    profilis_span_set_str(s, "payload", big);
    profilis_span_end(s);
  }
  profilis_stats st;
  profilis_provider_stats(p, &st);
  assert_true(st.queue_bytes <= 64 * 1024);
  assert_true(st.spans_dropped > 800);
  assert_int_equal(st.spans_queued + st.spans_dropped, 1000);
  atomic_store(&cap->stall, 0);
  profilis_provider_free(p);
  cap_free(cap);
}

static void test_shutdown_within_timeout_when_stalled(void **state) {
  cap_exporter *cap = cap_new();
  atomic_store(&cap->stall, 1); /* a backend that never answers */
  profilis_provider *p = mk(cap, 1000, 1 << 20, PROFILIS_QUEUE_DROP, 1);
  profilis_tracer *t;
  profilis_tracer_get(p, "t", NULL, &t);
  for (int i = 0; i < 500; i++) profilis_span_end(profilis_span_begin(t, "s"));
  uint64_t t0 = pf_mono_ns();
  assert_int_equal(profilis_provider_force_flush(p, 200), PROFILIS_ETIMEDOUT);
  uint64_t el = (pf_mono_ns() - t0) / 1000000u;
  assert_true(el >= 190 && el < 400);
  t0 = pf_mono_ns();
  int rc = profilis_provider_shutdown(p, 300);
  el = (pf_mono_ns() - t0) / 1000000u;
  assert_int_equal(rc, PROFILIS_ETIMEDOUT);
  assert_true(el < 350);
  profilis_stats st;
  profilis_provider_stats(p, &st);
  assert_int_equal(st.spans_exported, 0);
  assert_int_equal(st.spans_exported + st.spans_failed + st.spans_dropped, 500);
  /* after shutdown: dropped and counted */
  profilis_span_end(profilis_span_begin(t, "late"));
  profilis_provider_stats(p, &st);
  assert_int_equal(st.spans_exported + st.spans_failed + st.spans_dropped, 501);
  assert_int_equal(profilis_provider_shutdown(p, 10), PROFILIS_ESHUTDOWN);
  profilis_provider_free(p);
  cap_free(cap);
}

typedef struct prod_arg {
  profilis_tracer *t;
  int n;
} prod_arg;

static void *producer(void *arg) {
  prod_arg *a = arg;
  for (int i = 0; i < a->n; i++) {
    profilis_span *s = profilis_span_begin(a->t, "mp");
    profilis_span_set_int(s, "i", i);
    if (i % 7 == 0) profilis_span_set_str(s, "pad", "some longer text to vary the record size");
    profilis_span_end(s);
  }
  return NULL;
}

static void test_multi_producer_block_policy_delivers_all(void **state) {
  cap_exporter *cap = cap_new();
  profilis_provider *p = mk(cap, 256, 64 * 1024, PROFILIS_QUEUE_BLOCK, 1);
  profilis_tracer *t;
  profilis_tracer_get(p, "t", NULL, &t);
  enum { THREADS = 4, PER = 20000 };
  pthread_t th[THREADS];
  prod_arg a = {t, PER};
  for (int i = 0; i < THREADS; i++) pthread_create(&th[i], NULL, producer, &a);
  for (int i = 0; i < THREADS; i++) pthread_join(th[i], NULL);
  assert_int_equal(profilis_provider_shutdown(p, 5000), 0);
  profilis_stats st;
  profilis_provider_stats(p, &st);
  assert_int_equal(st.spans_exported + st.spans_dropped, THREADS * PER);
  /* the exporter keeps up, so the 50 ms block timeout is never reached */
  assert_int_equal(st.spans_dropped, 0);
  assert_int_equal(cap->n, THREADS * PER);
  long sum = 0;
  for (size_t i = 0; i < cap->n; i++) {
    pf_attr_view v = {0};
    assert_true(rec_attr(cap->recs[i], "i", &v));
    sum += pf_rd_i64(v.val);
  }
  assert_int_equal(sum, (long)THREADS * PER * (PER - 1) / 2);
  profilis_provider_free(p);
  cap_free(cap);
}

static void test_ring_wraps_and_bounds(void **state) {
  pf_ring r;
  assert_int_equal(pf_ring_init(&r, 4096, 1000), 0);
  uint64_t c;
  size_t total = 0;
  for (int round = 0; round < 5000; round++) {
    size_t len = 8 + (size_t)(round * 37 % 300);
    uint8_t *p = pf_ring_reserve(&r, len, &c);
    assert_non_null(p);
    memset(p, round & 0xff, len);
    pf_ring_commit(p);
    size_t got;
    bool busy;
    const uint8_t *q = pf_ring_peek(&r, &got, &busy);
    assert_non_null(q);
    assert_true(got >= len);
    assert_int_equal(q[0], round & 0xff);
    assert_int_equal(q[len - 1], round & 0xff);
    pf_ring_release(&r, got);
    pf_ring_publish(&r);
    total += len;
  }
  assert_int_equal(pf_ring_count(&r), 0);
  assert_int_equal(pf_ring_bytes(&r), 0);
  /* fill: never more than the buffer */
  int n = 0;
  while (pf_ring_reserve(&r, 100, &c)) n++;
  assert_true(n > 10 && n * 108 <= 4096);
  assert_null(pf_ring_reserve(&r, 3000, &c)); /* larger than half the ring: never fits */
  pf_ring_destroy(&r);
  (void)total;
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_drop_when_full_never_blocks),
      cmocka_unit_test(test_byte_bound),
      cmocka_unit_test(test_shutdown_within_timeout_when_stalled),
      cmocka_unit_test(test_multi_producer_block_policy_delivers_all),
      cmocka_unit_test(test_ring_wraps_and_bounds),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
