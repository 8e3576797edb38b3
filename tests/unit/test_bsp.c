/* Batch span processor and ring: bounds in spans and bytes, drop counting without blocking,
 * the block policy, flush and shutdown deadlines with a stalled exporter, exporter wake-ups,
 * multi-producer integrity (through the SDK, and on the bare ring with every record checked
 * for loss, duplication, reordering and tearing), and cursor arithmetic across field wraps. */
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <cmocka.h>

#include "capture_exporter.h"
#include "pf_provider.h"
#include "pf_ring.h"
#include "profilis/profilis.h"

static uint32_t block_timeout_ms = 50;

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
  o.block_timeout_ms = block_timeout_ms;
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
  /* generous: a producer preempted while holding a reservation on a loaded 2-core machine
   * must not push the others past their wait */
  block_timeout_ms = 5000;
  profilis_provider *p = mk(cap, 256, 64 * 1024, PROFILIS_QUEUE_BLOCK, 1);
  block_timeout_ms = 50;
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
  /* the exporter keeps up, so the block timeout is never reached */
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

/* ---- bare ring: multi-producer stress ---- */

enum { MP_PRODUCERS = 4, MP_PER = 40000, MP_MAX_RECORDS = 20 };

typedef struct mp_ring_arg {
  pf_ring *r;
  uint32_t id;
  atomic_ullong *full; /* reservations refused (ring full), retried */
} mp_ring_arg;

/* A record: u32 producer, u32 seq, u32 len, then len - 12 bytes derived from (producer, seq). */
static uint8_t mp_byte(uint32_t id, uint32_t seq, size_t i) {
  return (uint8_t)(id * 131u + seq * 31u + i * 7u);
}

static size_t mp_len(uint32_t id, uint32_t seq) { return 12 + (seq * 37u + id * 11u) % 300u; }

static void *mp_ring_producer(void *arg) {
  mp_ring_arg *a = arg;
  for (uint32_t seq = 0; seq < MP_PER; seq++) {
    uint32_t len = (uint32_t)mp_len(a->id, seq);
    uint64_t c;
    uint8_t *p;
    while (!(p = pf_ring_reserve(a->r, len, &c))) {
      atomic_fetch_add(a->full, 1);
      sched_yield();
    }
    memcpy(p, &a->id, 4);
    memcpy(p + 4, &seq, 4);
    memcpy(p + 8, &len, 4);
    for (size_t i = 12; i < len; i++) p[i] = mp_byte(a->id, seq, i);
    pf_ring_commit(p);
  }
  return NULL;
}

/* Checks one consumed record; returns its producer id, or -1 when it is torn or misplaced. */
static int mp_check(const uint8_t *q, size_t got, uint32_t *next_seq) {
  uint32_t id, seq, len;
  memcpy(&id, q, 4);
  memcpy(&seq, q + 4, 4);
  memcpy(&len, q + 8, 4);
  if (id >= MP_PRODUCERS || seq != next_seq[id] || len != mp_len(id, seq) || got < len) return -1;
  for (size_t i = 12; i < len; i++)
    if (q[i] != mp_byte(id, seq, i)) return -1;
  next_seq[id]++;
  return (int)id;
}

static void test_ring_multi_producer_stress(void **state) {
  pf_ring r;
  /* small on purpose: constant wrapping, padding, and both bounds (bytes and records) hit */
  assert_int_equal(pf_ring_init(&r, 4096, MP_MAX_RECORDS), 0);
  atomic_ullong full = 0;
  mp_ring_arg args[MP_PRODUCERS];
  pthread_t th[MP_PRODUCERS];
  for (uint32_t i = 0; i < MP_PRODUCERS; i++) {
    args[i] = (mp_ring_arg){&r, i, &full};
    assert_int_equal(pthread_create(&th[i], NULL, mp_ring_producer, &args[i]), 0);
  }
  uint32_t next_seq[MP_PRODUCERS] = {0};
  uint64_t consumed = 0, since_publish = 0;
  while (consumed < (uint64_t)MP_PRODUCERS * MP_PER) {
    size_t got;
    bool busy;
    const uint8_t *q = pf_ring_peek(&r, &got, &busy);
    if (!q) {
      pf_ring_publish(&r);
      since_publish = 0;
      sched_yield();
      continue;
    }
    assert_true(mp_check(q, got, next_seq) >= 0);
    pf_ring_release(&r, got);
    consumed++;
    if (++since_publish == 5) { /* publish in small batches, as the exporter does */
      pf_ring_publish(&r);
      since_publish = 0;
    }
    /* the bounds hold at every point the consumer looks */
    assert_true(pf_ring_count(&r) <= MP_MAX_RECORDS);
    assert_true(pf_ring_bytes(&r) <= r.cap);
  }
  for (int i = 0; i < MP_PRODUCERS; i++) pthread_join(th[i], NULL);
  pf_ring_publish(&r);
  for (int i = 0; i < MP_PRODUCERS; i++) assert_int_equal(next_seq[i], MP_PER);
  size_t got;
  bool busy;
  assert_null(pf_ring_peek(&r, &got, &busy)); /* nothing extra, nothing half-published */
  assert_false(busy);
  assert_int_equal(pf_ring_count(&r), 0);
  assert_int_equal(pf_ring_bytes(&r), 0);
  assert_int_equal(pf_ring_total(&r), (uint64_t)MP_PRODUCERS * MP_PER);
  assert_true(atomic_load(&full) > 0); /* the bounds were actually exercised */
  pf_ring_destroy(&r);
}

/* Both cursor fields (bytes and records) wrap around their widths: bounds, counts and the
 * total stay exact across the wrap. White-box: the cursors start just below the wrap. */
static void test_ring_cursor_fields_wrap(void **state) {
  pf_ring r;
  assert_int_equal(pf_ring_init(&r, 4096, 10), 0);
  uint64_t start = (PF_RING_BYTE_MASK + 1 - 4096 + 8) | /* bytes: 8-aligned, one lap short */
                   ((UINT64_MAX >> PF_RING_BYTE_BITS) - 3) << PF_RING_BYTE_BITS;
  atomic_store(&r.head, start);
  atomic_store(&r.tail, start);
  r.ctail = r.chead = start;
  uint64_t c, released_before = atomic_load(&r.released);
  for (int round = 0; round < 200; round++) {
    size_t len = 8 + (size_t)(round * 53 % 400);
    int n = 0;
    uint8_t *p;
    while ((p = pf_ring_reserve(&r, len, &c))) { /* fill to a bound */
      memset(p, round, len);
      pf_ring_commit(p);
      n++;
    }
    assert_true(n >= 1 && n <= 10);
    assert_int_equal(pf_ring_count(&r), (uint64_t)n);
    assert_true(pf_ring_bytes(&r) <= r.cap);
    for (int i = 0; i < n; i++) {
      size_t got;
      bool busy;
      const uint8_t *q = pf_ring_peek(&r, &got, &busy);
      assert_non_null(q);
      assert_true(got >= len);
      assert_int_equal(q[0], round & 0xff);
      assert_int_equal(q[len - 1], round & 0xff);
      pf_ring_release(&r, got);
    }
    pf_ring_publish(&r);
    assert_int_equal(pf_ring_count(&r), 0);
    assert_int_equal(pf_ring_bytes(&r), 0);
  }
  /* the byte and record fields both went past their maximum */
  assert_true((atomic_load(&r.head) & PF_RING_BYTE_MASK) < (start & PF_RING_BYTE_MASK));
  assert_true((atomic_load(&r.head) >> PF_RING_BYTE_BITS) < (start >> PF_RING_BYTE_BITS));
  assert_true(pf_ring_total(&r) > released_before);
  pf_ring_destroy(&r);
}

/* A full batch is exported promptly even with an hour-long schedule delay (producers wake the
 * exporter every 128 records here, and it re-checks for a full batch every 100 ms); a partial
 * one waits for the delay; a flush takes everything. */
static void test_exporter_wakeups(void **state) {
  cap_exporter *cap = cap_new();
  profilis_provider *p = mk(cap, 1000, 1 << 20, PROFILIS_QUEUE_DROP, 3600000);
  profilis_tracer *t;
  profilis_tracer_get(p, "t", NULL, &t);
  for (int round = 1; round <= 3; round++) {
    for (int i = 0; i < 64; i++) profilis_span_end(profilis_span_begin(t, "full"));
    uint64_t t0 = pf_mono_ns();
    while (pf_mono_ns() - t0 < 2000000000ull) {
      pthread_mutex_lock(&cap->mu);
      size_t n = cap->n;
      pthread_mutex_unlock(&cap->mu);
      if (n == (size_t)round * 64) break;
      struct timespec ts = {0, 1000000};
      nanosleep(&ts, NULL);
    }
    pthread_mutex_lock(&cap->mu);
    assert_int_equal(cap->n, (size_t)round * 64);
    pthread_mutex_unlock(&cap->mu);
  }
  for (int i = 0; i < 10; i++) profilis_span_end(profilis_span_begin(t, "partial"));
  struct timespec ts = {0, 50000000};
  nanosleep(&ts, NULL);
  pthread_mutex_lock(&cap->mu);
  assert_int_equal(cap->n, 3 * 64); /* below a batch: waits for the delay */
  pthread_mutex_unlock(&cap->mu);
  assert_int_equal(profilis_provider_force_flush(p, 2000), 0);
  assert_int_equal(cap->n, 3 * 64 + 10);
  profilis_provider_free(p);
  cap_free(cap);
}

/* Spans so large that the ring's bytes fill before a batch of spans is queued still get
 * exported without waiting for the (hour-long) schedule delay. */
static void test_large_spans_wake_exporter(void **state) {
  cap_exporter *cap = cap_new();
  profilis_provider *p = mk(cap, 100000, 64 * 1024, PROFILIS_QUEUE_DROP, 3600000);
  profilis_tracer *t;
  profilis_tracer_get(p, "t", NULL, &t);
  char big[2048];
  memset(big, 'x', sizeof big - 1);
  big[sizeof big - 1] = 0;
  for (int i = 0; i < 40; i++) { /* about 80 KiB: more than the ring, far less than a batch */
    profilis_span *s = profilis_span_begin(t, "big");
    profilis_span_set_str(s, "payload", big);
    profilis_span_end(s);
  }
  uint64_t t0 = pf_mono_ns();
  size_t n = 0;
  while (n == 0 && pf_mono_ns() - t0 < 2000000000ull) {
    struct timespec ts = {0, 1000000};
    nanosleep(&ts, NULL);
    pthread_mutex_lock(&cap->mu);
    n = cap->n;
    pthread_mutex_unlock(&cap->mu);
  }
  assert_true(n > 0);
  profilis_stats st;
  assert_int_equal(profilis_provider_force_flush(p, 2000), 0);
  profilis_provider_stats(p, &st);
  assert_int_equal(st.spans_exported + st.spans_dropped, 40);
  assert_int_equal(cap->n, st.spans_exported);
  profilis_provider_free(p);
  cap_free(cap);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_drop_when_full_never_blocks),
      cmocka_unit_test(test_byte_bound),
      cmocka_unit_test(test_shutdown_within_timeout_when_stalled),
      cmocka_unit_test(test_multi_producer_block_policy_delivers_all),
      cmocka_unit_test(test_ring_wraps_and_bounds),
      cmocka_unit_test(test_ring_multi_producer_stress),
      cmocka_unit_test(test_ring_cursor_fields_wrap),
      cmocka_unit_test(test_exporter_wakeups),
      cmocka_unit_test(test_large_spans_wake_exporter),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
