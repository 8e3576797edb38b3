/* Pipeline tests with real chunks (records built by rec_builder.h) and recording exporters
 * that accept, fail, reject or stall on demand: memory budget refusals, all-or-nothing submit,
 * batching by size and by timeout, drain deadline counting leftovers as dropped, reload keeping
 * queued data, and the accounting invariant (per exporter: accepted spans == sent + failed +
 * dropped) over random submit sequences, concurrent submitters and reloads. */
#include <pthread.h>
#include <stdatomic.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "pc_config.h"
#include "pc_exporter.h"
#include "pc_metrics.h"
#include "pc_pipeline.h"
#include "pc_spanmetrics.h"
#include "rec_builder.h"

/* ---- chunks ---- */

static uint32_t next_id = 1;

/* A chunk of n spans with a resource and one scope, laid out as the decoder does. */
static pc_chunk *make_chunk(uint32_t n) {
  pc_chunk *c = pc_chunk_new();
  assert_non_null(c);
  c->scopes = calloc(1, sizeof *c->scopes);
  assert_non_null(c->scopes);
  c->scopes[0].name = strdup("test-scope");
  c->n_scopes = 1;
  profilis_attr ra = PROFILIS_ATTR_STR("service.name", "svc");
  assert_int_equal(rb_attrs(&c->resource.attrs, &ra, 1), 0);
  c->resource.n_attrs = 1;
  size_t *offs = calloc(n ? n : 1, sizeof *offs);
  pf_buf one = {0};
  for (uint32_t i = 0; i < n; i++) {
    uint32_t id = __atomic_fetch_add(&next_id, 1, __ATOMIC_RELAXED);
    rb_span s = {
        .name = "op", .kind = 2, .scope = &c->scopes[0], .start_ns = 1000, .end_ns = 2000 + id};
    rb_id(s.trace_id, 16, 1);
    memcpy(s.span_id, &id, sizeof id);
    s.span_id[7] = 1;
    assert_int_equal(rb_build(&one, &s), 0);
    size_t pad = (8 - c->records.len % 8) % 8;
    static const uint8_t zeros[8];
    assert_int_equal(pf_buf_append(&c->records, zeros, pad), 0);
    offs[i] = c->records.len;
    assert_int_equal(pf_buf_append(&c->records, one.p, one.len), 0);
  }
  pf_buf_free(&one);
  c->spans = calloc(n ? n : 1, sizeof *c->spans);
  for (uint32_t i = 0; i < n; i++) c->spans[i] = (const pf_span_rec *)(c->records.p + offs[i]);
  c->n_spans = n;
  free(offs);
  return c;
}

/* ---- a recording exporter ---- */

enum { MODE_OK = 0, MODE_FAIL, MODE_REJECT, MODE_STALL };

#define MAX_CALLS 4096

typedef struct texp {
  pc_exporter base;
  char name[64];
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int mode;
  uint64_t reject_per_call;
  uint64_t spans, calls, ticks, canceled;
  uint32_t call_spans[MAX_CALLS];
  uint64_t call_ns[MAX_CALLS];
  bool in_call, destroyed;
  uint64_t delay_ms; /* MODE_OK: take this long per call */
  /* what next_tick() answers (0: due now, as an exporter without next_tick); tick() records
   * when it ran and, with tick_once, answers PC_TICK_NONE afterwards */
  uint64_t tick_at, last_tick_ns;
  bool tick_once;
} texp;

typedef struct harness {
  texp *exps[64];
  size_t n;
  pthread_mutex_t mu;
  int initial_mode;
} harness;

static harness H;

static void sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

static int texp_export(pc_exporter *e, pc_chunk *const *chunks, size_t n, const pf_deadline *dl,
                       uint64_t *rejected) {
  texp *t = (texp *)e;
  uint64_t spans = 0;
  for (size_t i = 0; i < n; i++) {
    assert_true(atomic_load(&chunks[i]->refs) >= 1);
    for (uint32_t j = 0; j < chunks[i]->n_spans; j++)
      assert_true(pf_rec_sections_fit(chunks[i]->spans[j]));
    spans += chunks[i]->n_spans;
  }
  *rejected = 0;
  pthread_mutex_lock(&t->mu);
  t->in_call = true;
  pthread_cond_broadcast(&t->cv);
  while (t->mode == MODE_STALL && !pf_deadline_expired(dl)) {
    pthread_mutex_unlock(&t->mu);
    sleep_ms(2);
    pthread_mutex_lock(&t->mu);
  }
  int mode = t->mode;
  uint64_t delay = t->delay_ms;
  pthread_mutex_unlock(&t->mu);
  if (delay) {
    pf_sleep_ms(dl, (uint32_t)delay);
  }
  int rc = 0;
  if (mode == MODE_STALL || pf_deadline_expired(dl)) {
    rc = PROFILIS_ECANCELED;
  } else if (mode == MODE_FAIL) {
    rc = PROFILIS_EPERMANENT;
  } else if (mode == MODE_REJECT) {
    *rejected = t->reject_per_call < spans ? t->reject_per_call : spans;
  }
  pthread_mutex_lock(&t->mu);
  if (t->calls < MAX_CALLS) {
    t->call_spans[t->calls] = (uint32_t)spans;
    t->call_ns[t->calls] = pf_mono_ns();
  }
  t->calls++;
  if (rc == PROFILIS_ECANCELED) t->canceled += spans;
  t->spans += spans;
  t->in_call = false;
  pthread_cond_broadcast(&t->cv);
  pthread_mutex_unlock(&t->mu);
  return rc;
}

static void texp_tick(pc_exporter *e) {
  texp *t = (texp *)e;
  pthread_mutex_lock(&t->mu);
  t->ticks++;
  t->last_tick_ns = pf_mono_ns();
  if (t->tick_once) t->tick_at = PC_TICK_NONE;
  pthread_mutex_unlock(&t->mu);
}

static uint64_t texp_next_tick(pc_exporter *e) {
  texp *t = (texp *)e;
  pthread_mutex_lock(&t->mu);
  uint64_t at = t->tick_at;
  pthread_mutex_unlock(&t->mu);
  return at;
}

static void texp_destroy(pc_exporter *e) {
  texp *t = (texp *)e;
  pthread_mutex_lock(&t->mu);
  t->destroyed = true;
  pthread_mutex_unlock(&t->mu);
}

static int test_factory(pc_exporter **out, const pc_exporter_cfg *cfg, void *arg) {
  harness *h = arg;
  texp *t = calloc(1, sizeof *t);
  if (!t) return PROFILIS_ENOMEM;
  t->base = (pc_exporter){.cfg = cfg,
                          .export_chunks = texp_export,
                          .tick = texp_tick,
                          .next_tick = texp_next_tick,
                          .destroy = texp_destroy};
  snprintf(t->name, sizeof t->name, "%s", cfg->name);
  pthread_mutex_init(&t->mu, NULL);
  pthread_cond_init(&t->cv, NULL);
  t->mode = h->initial_mode;
  pthread_mutex_lock(&h->mu);
  assert_true(h->n < 64);
  h->exps[h->n++] = t;
  pthread_mutex_unlock(&h->mu);
  *out = &t->base;
  return 0;
}

/* The newest exporter built under this name. */
static texp *exp_named(const char *name) {
  texp *found = NULL;
  pthread_mutex_lock(&H.mu);
  for (size_t i = 0; i < H.n; i++)
    if (!strcmp(H.exps[i]->name, name)) found = H.exps[i];
  pthread_mutex_unlock(&H.mu);
  assert_non_null(found);
  return found;
}

static uint64_t exp_spans(texp *t) {
  pthread_mutex_lock(&t->mu);
  uint64_t n = t->spans;
  pthread_mutex_unlock(&t->mu);
  return n;
}

static void set_mode(texp *t, int mode) {
  pthread_mutex_lock(&t->mu);
  t->mode = mode;
  pthread_mutex_unlock(&t->mu);
}

/* Waits (up to 5 s) until the exporter is inside a call. */
static void wait_in_call(texp *t) {
  uint64_t until = pf_mono_ns() + 5000000000ull;
  pthread_mutex_lock(&t->mu);
  while (!t->in_call && pf_mono_ns() < until) {
    pthread_mutex_unlock(&t->mu);
    sleep_ms(1);
    pthread_mutex_lock(&t->mu);
  }
  bool in = t->in_call;
  pthread_mutex_unlock(&t->mu);
  assert_true(in);
}

/* Waits (up to 5 s) until the exporter has seen n spans. */
static void wait_spans(texp *t, uint64_t n) {
  uint64_t until = pf_mono_ns() + 5000000000ull;
  while (exp_spans(t) < n && pf_mono_ns() < until) {
    sleep_ms(1);
  }
  assert_int_equal(exp_spans(t), n);
}

static int setup(void **state) {
  for (size_t i = 0; i < H.n; i++) {
    pthread_mutex_destroy(&H.exps[i]->mu);
    pthread_cond_destroy(&H.exps[i]->cv);
    free(H.exps[i]);
  }
  memset(&H, 0, sizeof H);
  pthread_mutex_init(&H.mu, NULL);
  return 0;
}

static int teardown(void **state) { return setup(state); }

/* ---- configs built by hand (the YAML parser is tested elsewhere) ---- */

typedef struct tcfg {
  pc_config c;
  pc_exporter_cfg ex[8];
  char *route[8];
} tcfg;

static pc_exporter_cfg *tcfg_add(tcfg *t, const char *name, pc_exporter_type type, uint32_t batch,
                                 uint32_t timeout_ms) {
  pc_exporter_cfg *e = &t->ex[t->c.n_exporters++];
  *e = (pc_exporter_cfg){.name = (char *)name,
                         .type = type,
                         .batch_size = batch,
                         .batch_timeout_ms = timeout_ms,
                         .timeout_ms = 10000};
  t->route[t->c.n_route++] = (char *)name;
  return e;
}

static void tcfg_init(tcfg *t, uint64_t limit) {
  memset(t, 0, sizeof *t);
  t->c.source = "<test>";
  t->c.memory_limit = limit;
  t->c.retry_after_ms = 1500;
  t->c.drain_timeout_ms = 2000;
  t->c.exporters = t->ex;
  t->c.route = t->route;
}

typedef struct fixture {
  pc_metrics *m;
  pc_pipeline *p;
} fixture;

static void start(fixture *f, const tcfg *t) {
  assert_int_equal(pc_metrics_new(&f->m), 0);
  assert_int_equal(pc_pipeline_new_with(&f->p, &t->c, f->m, test_factory, &H), 0);
}

static void stop(fixture *f) {
  pc_pipeline_free(f->p);
  pc_metrics_free(f->m);
}

static uint64_t counter(fixture *f, const char *metric, const char *exporter) {
  char labels[128];
  snprintf(labels, sizeof labels, "exporter=\"%s\",tenant=\"\"", exporter);
  pc_series *s = pc_metrics_series(f->m, PC_COUNTER, metric, "", labels);
  assert_non_null(s);
  return atomic_load(&s->value);
}

static int64_t gauge(fixture *f, const char *metric, const char *labels) {
  pc_series *s = pc_metrics_series(f->m, PC_GAUGE, metric, "", labels);
  assert_non_null(s);
  return atomic_load(&s->gauge);
}

static pc_verdict submit(fixture *f, pc_chunk **chunks, size_t n) {
  pc_admission adm;
  assert_int_equal(pc_pipeline_submit(f->p, chunks, n, &adm), 0);
  if (adm.verdict != PC_ACCEPTED)
    for (size_t i = 0; i < n; i++) pc_chunk_unref(chunks[i]); /* still ours */
  return adm.verdict;
}

static pc_verdict submit_one(fixture *f, uint32_t spans) {
  pc_chunk *c = make_chunk(spans);
  return submit(f, &c, 1);
}

/* ---- tests ---- */

static void test_admit_against_budget(void **state) {
  tcfg t;
  tcfg_init(&t, 10000);
  tcfg_add(&t, "jsonl", PC_EXPORTER_JSONL, 512, 50);
  fixture f;
  start(&f, &t);
  pc_admission adm;
  assert_int_equal(pc_pipeline_admit(f.p, 9999, &adm), 0);
  assert_int_equal(adm.verdict, PC_ACCEPTED);
  assert_int_equal(pc_pipeline_admit(f.p, 10001, &adm), 0);
  assert_int_equal(adm.verdict, PC_REFUSED_BUDGET);
  assert_int_equal(adm.retry_after_ms, 1500);
  assert_int_equal(pc_pipeline_budget_limit(f.p), 10000);
  assert_int_equal(gauge(&f, "profilis_memory_budget_bytes", ""), 10000);
  pc_series *b = pc_metrics_series(f.m, PC_GAUGE, "profilis_build_info", "",
                                   "version=\"" PROFILIS_VERSION "\"");
  assert_int_equal(atomic_load(&b->gauge), 1);
  stop(&f);
}

/* A request either fits the budget whole or is refused whole; the chunks stay the caller's. */
static void test_submit_all_or_nothing(void **state) {
  pc_chunk *probe = make_chunk(10);
  uint64_t one = pc_chunk_size(probe);
  pc_chunk_unref(probe);
  tcfg t;
  tcfg_init(&t, one * 2 + one / 2);
  tcfg_add(&t, "jsonl", PC_EXPORTER_JSONL, 512, 0);
  H.initial_mode = MODE_STALL;
  fixture f;
  start(&f, &t);
  texp *e = exp_named("jsonl");

  pc_chunk *three[3] = {make_chunk(10), make_chunk(10), make_chunk(10)};
  pc_admission adm;
  assert_int_equal(pc_pipeline_submit(f.p, three, 3, &adm), 0);
  assert_int_equal(adm.verdict, PC_REFUSED_BUDGET);
  assert_int_equal(adm.retry_after_ms, 1500);
  assert_int_equal(pc_pipeline_budget_used(f.p), 0);
  for (int i = 0; i < 3; i++) assert_int_equal(atomic_load(&three[i]->refs), 1);
  pc_chunk_unref(three[2]);
  assert_int_equal(submit(&f, three, 2), PC_ACCEPTED);
  assert_int_equal(pc_pipeline_budget_used(f.p), 2 * one);
  assert_int_equal(gauge(&f, "profilis_memory_budget_used_bytes", ""), (int64_t)(2 * one));
  wait_in_call(e); /* the exporter holds both chunks: the budget stays charged */
  assert_int_equal(submit_one(&f, 10), PC_REFUSED_BUDGET);
  pc_series *refused = pc_metrics_series(f.m, PC_COUNTER, "profilis_pipeline_refused_spans_total",
                                         "", "reason=\"memory_budget\"");
  assert_int_equal(atomic_load(&refused->value), 40);

  set_mode(e, MODE_OK);
  wait_spans(e, 20);
  assert_int_equal(pc_pipeline_drain(f.p, 2000), 0);
  assert_int_equal(pc_pipeline_budget_used(f.p), 0);
  assert_int_equal(gauge(&f, "profilis_memory_budget_used_bytes", ""), 0);
  assert_int_equal(counter(&f, "profilis_exporter_sent_spans_total", "jsonl"), 20);
  stop(&f);
}

/* A full batch goes out at once, never more than batch_size spans (whole chunks). */
static void test_batch_by_size(void **state) {
  tcfg t;
  tcfg_init(&t, 1 << 30);
  tcfg_add(&t, "jsonl", PC_EXPORTER_JSONL, 10, 60000);
  fixture f;
  start(&f, &t);
  texp *e = exp_named("jsonl");
  uint64_t t0 = pf_mono_ns();
  for (int i = 0; i < 20; i++) assert_int_equal(submit_one(&f, 1), PC_ACCEPTED);
  wait_spans(e, 20);
  assert_true(pf_mono_ns() - t0 < 5000000000ull); /* far below the 60 s timeout */
  assert_int_equal(e->calls, 2);
  assert_int_equal(e->call_spans[0], 10);
  assert_int_equal(e->call_spans[1], 10);
  /* 4-span chunks: two fit in 10, the third would overflow the batch */
  for (int i = 0; i < 5; i++) assert_int_equal(submit_one(&f, 4), PC_ACCEPTED);
  wait_spans(e, 36);
  assert_int_equal(e->calls, 4);
  assert_int_equal(e->call_spans[2], 8);
  assert_int_equal(e->call_spans[3], 8);
  assert_int_equal(gauge(&f, "profilis_exporter_queue_spans", "exporter=\"jsonl\",tenant=\"\""), 4);
  assert_int_equal(gauge(&f, "profilis_exporter_queue_batches", "exporter=\"jsonl\",tenant=\"\""), 1);
  assert_int_equal(pc_pipeline_drain(f.p, 2000), 0); /* closing flushes the partial batch */
  assert_int_equal(exp_spans(e), 40);
  assert_int_equal(gauge(&f, "profilis_exporter_queue_spans", "exporter=\"jsonl\",tenant=\"\""), 0);
  assert_true(e->destroyed == false); /* destroyed at free, after the drain */
  stop(&f);
}

static uint64_t exp_ticks(texp *e, uint64_t *last_ns) {
  pthread_mutex_lock(&e->mu);
  uint64_t n = e->ticks;
  if (last_ns) *last_ns = e->last_tick_ns;
  pthread_mutex_unlock(&e->mu);
  return n;
}

/* A partial batch waits batch_timeout for company, then goes out. */
static void test_batch_by_timeout(void **state) {
  tcfg t;
  tcfg_init(&t, 1 << 30);
  tcfg_add(&t, "jsonl", PC_EXPORTER_JSONL, 1000, 150);
  fixture f;
  start(&f, &t);
  texp *e = exp_named("jsonl");
  uint64_t t0 = pf_mono_ns();
  assert_int_equal(submit_one(&f, 3), PC_ACCEPTED);
  assert_int_equal(submit_one(&f, 2), PC_ACCEPTED);
  wait_spans(e, 5);
  uint64_t waited = e->call_ns[0] - t0;
  assert_int_equal(e->calls, 1);
  assert_int_equal(e->call_spans[0], 5);
  assert_true(waited >= 140000000ull);
  assert_true(waited < 2000000000ull);
  /* idle: tick() runs */
  sleep_ms(300);
  assert_true(exp_ticks(e, NULL) >= 1);
  stop(&f);
}

/* Spans that arrive in the last quarter of a partial batch's timeout take it with them at
 * once; earlier ones wait with it for the timeout. */
static void test_batch_early_with_company(void **state) {
  tcfg t;
  tcfg_init(&t, 1 << 30);
  tcfg_add(&t, "jsonl", PC_EXPORTER_JSONL, 1000, 400);
  fixture f;
  start(&f, &t);
  texp *e = exp_named("jsonl");
  /* company at 200 ms (half the timeout): all of it goes at 400 ms */
  uint64_t t0 = pf_mono_ns();
  assert_int_equal(submit_one(&f, 3), PC_ACCEPTED);
  sleep_ms(200);
  assert_int_equal(submit_one(&f, 2), PC_ACCEPTED);
  wait_spans(e, 5);
  assert_int_equal(e->calls, 1);
  assert_int_equal(e->call_spans[0], 5);
  assert_true(e->call_ns[0] - t0 >= 390000000ull);
  /* company at 330 ms (past three quarters): all of it goes then, not at 400 ms */
  t0 = pf_mono_ns();
  assert_int_equal(submit_one(&f, 4), PC_ACCEPTED);
  sleep_ms(330);
  uint64_t t1 = pf_mono_ns();
  assert_int_equal(submit_one(&f, 1), PC_ACCEPTED);
  wait_spans(e, 10);
  assert_int_equal(e->calls, 2);
  assert_int_equal(e->call_spans[1], 5);
  assert_true(e->call_ns[1] >= t1);
  assert_true(e->call_ns[1] - t0 < 390000000ull);
  stop(&f);
}

/* An exporter with no periodic work is not woken to do it: tick() runs when next_tick() says,
 * once, and an idle exporter costs no wake-ups (each costs tens of microseconds of CPU on a
 * virtual machine). */
static void test_tick_when_due(void **state) {
  tcfg t;
  tcfg_init(&t, 1 << 30);
  tcfg_add(&t, "jsonl", PC_EXPORTER_JSONL, 1, 1000);
  fixture f;
  start(&f, &t);
  texp *e = exp_named("jsonl");
  /* nothing to do: no tick in 1.5 s (a poll every 100 ms would make 15) */
  pthread_mutex_lock(&e->mu);
  e->tick_at = PC_TICK_NONE;
  e->tick_once = true;
  pthread_mutex_unlock(&e->mu);
  assert_int_equal(submit_one(&f, 1), PC_ACCEPTED); /* the thread asks again after an export */
  wait_spans(e, 1);
  uint64_t base = exp_ticks(e, NULL);
  sleep_ms(1500);
  assert_int_equal(exp_ticks(e, NULL), base);
  /* an export leaves work due in 300 ms: tick() runs then, and only then */
  pthread_mutex_lock(&e->mu);
  uint64_t at = e->tick_at = pf_mono_ns() + 300000000ull;
  pthread_mutex_unlock(&e->mu);
  assert_int_equal(submit_one(&f, 1), PC_ACCEPTED);
  wait_spans(e, 2);
  sleep_ms(150);
  assert_int_equal(exp_ticks(e, NULL), base);
  uint64_t last = 0;
  for (int i = 0; i < 200 && exp_ticks(e, &last) == base; i++) sleep_ms(10);
  assert_int_equal(exp_ticks(e, &last), base + 1);
  assert_true(last >= at);
  sleep_ms(500);
  assert_int_equal(exp_ticks(e, NULL), base + 1);
  stop(&f);
}

/* At the drain deadline what is in flight is canceled and what is queued is dropped; both are
 * counted, and the budget comes back. */
static void test_drain_deadline_drops(void **state) {
  tcfg t;
  tcfg_init(&t, 1 << 30);
  tcfg_add(&t, "jsonl", PC_EXPORTER_JSONL, 5, 0);
  H.initial_mode = MODE_STALL;
  fixture f;
  start(&f, &t);
  texp *e = exp_named("jsonl");
  for (int i = 0; i < 6; i++) assert_int_equal(submit_one(&f, 5), PC_ACCEPTED);
  wait_in_call(e);
  uint64_t t0 = pf_mono_ns();
  assert_int_equal(pc_pipeline_drain(f.p, 200), PROFILIS_ETIMEDOUT);
  uint64_t took = pf_mono_ns() - t0;
  assert_true(took >= 190000000ull && took < 3000000000ull);
  assert_int_equal(counter(&f, "profilis_exporter_dropped_spans_total", "jsonl"), 30);
  assert_int_equal(counter(&f, "profilis_exporter_sent_spans_total", "jsonl"), 0);
  assert_int_equal(counter(&f, "profilis_exporter_failed_spans_total", "jsonl"), 0);
  assert_int_equal(e->canceled, 5);
  assert_int_equal(pc_pipeline_budget_used(f.p), 0);
  /* after the drain nothing is accepted */
  pc_admission adm;
  assert_int_equal(pc_pipeline_admit(f.p, 1, &adm), 0);
  assert_int_equal(adm.verdict, PC_REFUSED_DRAINING);
  assert_int_equal(submit_one(&f, 1), PC_REFUSED_DRAINING);
  assert_int_equal(pc_pipeline_drain(f.p, 100), 0); /* twice is harmless */
  stop(&f);
}

/* Drain within the deadline delivers everything, even from a slow exporter. */
static void test_drain_delivers_all(void **state) {
  tcfg t;
  tcfg_init(&t, 1 << 30);
  tcfg_add(&t, "a", PC_EXPORTER_JSONL, 7, 1000);
  tcfg_add(&t, "b", PC_EXPORTER_JSONL, 100, 1000);
  fixture f;
  start(&f, &t);
  exp_named("a")->delay_ms = 5;
  for (int i = 0; i < 50; i++) assert_int_equal(submit_one(&f, 3), PC_ACCEPTED);
  assert_int_equal(pc_pipeline_drain(f.p, 5000), 0);
  assert_int_equal(exp_spans(exp_named("a")), 150);
  assert_int_equal(exp_spans(exp_named("b")), 150);
  assert_int_equal(counter(&f, "profilis_exporter_sent_spans_total", "a"), 150);
  assert_int_equal(counter(&f, "profilis_exporter_sent_spans_total", "b"), 150);
  assert_int_equal(pc_pipeline_budget_used(f.p), 0);
  stop(&f);
}

static void test_failed_and_rejected(void **state) {
  tcfg t;
  tcfg_init(&t, 1 << 30);
  tcfg_add(&t, "bad", PC_EXPORTER_JSONL, 10, 0);
  tcfg_add(&t, "picky", PC_EXPORTER_OTLP, 10, 0);
  fixture f;
  start(&f, &t);
  assert_true(pc_pipeline_keep_raw(f.p)); /* an otlp exporter forwards raw bytes */
  set_mode(exp_named("bad"), MODE_FAIL);
  texp *picky = exp_named("picky");
  picky->reject_per_call = 2;
  set_mode(picky, MODE_REJECT);
  for (int i = 0; i < 4; i++) assert_int_equal(submit_one(&f, 10), PC_ACCEPTED);
  assert_int_equal(pc_pipeline_drain(f.p, 2000), 0);
  assert_int_equal(counter(&f, "profilis_exporter_failed_spans_total", "bad"), 40);
  assert_int_equal(counter(&f, "profilis_exporter_sent_spans_total", "bad"), 0);
  assert_int_equal(counter(&f, "profilis_exporter_rejected_spans_total", "picky"), 8);
  assert_int_equal(counter(&f, "profilis_exporter_failed_spans_total", "picky"), 8);
  assert_int_equal(counter(&f, "profilis_exporter_sent_spans_total", "picky"), 32);
  stop(&f);
}

/* The route's prometheus exporter observes spans at submit and has no queue. */
static void test_prometheus_span_metrics(void **state) {
  tcfg t;
  tcfg_init(&t, 1 << 30);
  tcfg_add(&t, "jsonl", PC_EXPORTER_JSONL, 10, 0);
  pc_exporter_cfg *pe = tcfg_add(&t, "prometheus", PC_EXPORTER_PROMETHEUS, 0, 0);
  double buckets[] = {1, 10, 100};
  pe->buckets_ms = buckets;
  pe->n_buckets = 3;
  pe->max_series = 100;
  fixture f;
  start(&f, &t);
  assert_false(pc_pipeline_keep_raw(f.p));
  assert_int_equal(H.n, 1); /* no exporter object for prometheus */
  for (int i = 0; i < 3; i++) assert_int_equal(submit_one(&f, 4), PC_ACCEPTED);
  pc_spanmetrics *sm = pc_pipeline_spanmetrics(f.p);
  assert_non_null(sm);
  pf_buf out = {0};
  assert_int_equal(pc_spanmetrics_render(sm, &out), 0);
  assert_int_equal(pf_buf_append(&out, "", 1), 0);
  const char *calls = strstr((char *)out.p, "traces_span_metrics_calls_total{");
  assert_non_null(calls);
  assert_non_null(strstr(calls, "} 12"));
  pf_buf_free(&out);
  assert_int_equal(counter(&f, "profilis_exporter_sent_spans_total", "prometheus"), 12);
  assert_int_equal(pc_pipeline_drain(f.p, 2000), 0);
  stop(&f);
}

/* Reload: an unchanged exporter keeps its queue and its data, a changed one is replaced after
 * its queue empties, a removed one finishes its queue, a new one starts empty. */
static void test_reload_keeps_data(void **state) {
  tcfg t;
  tcfg_init(&t, 1 << 30);
  tcfg_add(&t, "keep", PC_EXPORTER_JSONL, 100, 0);
  tcfg_add(&t, "change", PC_EXPORTER_JSONL, 100, 0);
  tcfg_add(&t, "remove", PC_EXPORTER_JSONL, 100, 0);
  H.initial_mode = MODE_STALL;
  fixture f;
  start(&f, &t);
  texp *keep = exp_named("keep"), *change = exp_named("change"), *rm = exp_named("remove");
  for (int i = 0; i < 5; i++) assert_int_equal(submit_one(&f, 2), PC_ACCEPTED);
  wait_in_call(keep);
  wait_in_call(change);

  tcfg t2;
  tcfg_init(&t2, 1 << 30);
  tcfg_add(&t2, "keep", PC_EXPORTER_JSONL, 100, 0);
  tcfg_add(&t2, "change", PC_EXPORTER_JSONL, 50, 0); /* a new batch size */
  tcfg_add(&t2, "new", PC_EXPORTER_JSONL, 100, 0);
  H.initial_mode = MODE_OK;
  assert_int_equal(pc_pipeline_reload(f.p, &t2.c), 0);
  assert_int_equal(H.n, 5); /* change and new were built; keep was not */
  assert_ptr_equal(exp_named("keep"), keep);
  texp *change2 = exp_named("change"), *fresh = exp_named("new");
  assert_ptr_not_equal(change2, change);
  for (int i = 0; i < 5; i++) assert_int_equal(submit_one(&f, 2), PC_ACCEPTED);
  wait_spans(fresh, 10);
  /* the replacement waits for its predecessor: the same name never has two writers */
  assert_int_equal(exp_spans(change2), 0);

  /* a route naming an unknown exporter is refused and changes nothing */
  tcfg bad;
  tcfg_init(&bad, 1 << 30);
  tcfg_add(&bad, "keep", PC_EXPORTER_JSONL, 100, 0);
  bad.route[bad.c.n_route++] = "missing";
  assert_int_equal(pc_pipeline_reload(f.p, &bad.c), PROFILIS_EINVAL);
  assert_int_equal(submit_one(&f, 1), PC_ACCEPTED);

  set_mode(keep, MODE_OK);
  set_mode(change, MODE_OK);
  set_mode(rm, MODE_OK);
  assert_int_equal(pc_pipeline_drain(f.p, 3000), 0);
  assert_int_equal(exp_spans(keep), 21);
  assert_int_equal(exp_spans(change), 10);
  assert_int_equal(exp_spans(change2), 11);
  assert_int_equal(exp_spans(rm), 10);
  assert_int_equal(exp_spans(fresh), 11);
  assert_int_equal(counter(&f, "profilis_exporter_sent_spans_total", "change"), 21);
  assert_int_equal(pc_pipeline_budget_used(f.p), 0);
  stop(&f);
  assert_true(rm->destroyed && change->destroyed && keep->destroyed);
}

/* ---- the accounting invariant ---- */

typedef struct inv_state {
  fixture *f;
  uint64_t rng;
  uint64_t accepted[4]; /* per exporter index, spans accepted while it was on the route */
  int rounds;
} inv_state;

static const char *inv_names[4] = {"e0", "e1", "e2", "e3"};

static uint64_t rnd(uint64_t *s) {
  *s ^= *s << 13;
  *s ^= *s >> 7;
  *s ^= *s << 17;
  return *s;
}

static void inv_check(fixture *f, const uint64_t *accepted) {
  for (int i = 0; i < 4; i++) {
    uint64_t sent = counter(f, "profilis_exporter_sent_spans_total", inv_names[i]);
    uint64_t failed = counter(f, "profilis_exporter_failed_spans_total", inv_names[i]);
    uint64_t dropped = counter(f, "profilis_exporter_dropped_spans_total", inv_names[i]);
    print_message("%s: accepted %llu sent %llu failed %llu dropped %llu\n", inv_names[i],
                  (unsigned long long)accepted[i], (unsigned long long)sent,
                  (unsigned long long)failed, (unsigned long long)dropped);
    assert_int_equal(accepted[i], sent + failed + dropped);
  }
  assert_int_equal(pc_pipeline_budget_used(f->p), 0);
}

/* Random submits (some refused by a small budget) against exporters that succeed, fail,
 * reject or are slow, then a drain whose deadline may cut them short. */
static void test_invariant_random(void **state) {
  for (int trial = 0; trial < 6; trial++) {
    setup(state);
    tcfg t;
    tcfg_init(&t, 200000);
    for (int i = 0; i < 4; i++)
      tcfg_add(&t, inv_names[i], PC_EXPORTER_JSONL, (uint32_t)(5 + 17 * i), (uint32_t)(3 * i));
    fixture f;
    start(&f, &t);
    exp_named("e1")->reject_per_call = 3;
    set_mode(exp_named("e1"), MODE_REJECT);
    set_mode(exp_named("e2"), trial % 2 ? MODE_FAIL : MODE_OK);
    exp_named("e3")->delay_ms = (uint64_t)(trial % 3);
    uint64_t rng = 0x9e3779b97f4a7c15ull * (uint64_t)(trial + 1), accepted = 0, refused = 0;
    set_mode(exp_named("e0"), MODE_STALL); /* fills the budget: the middle gets refusals */
    for (int k = 0; k < 400; k++) {
      if (k == 250) set_mode(exp_named("e0"), MODE_OK);
      size_t n = 1 + rnd(&rng) % 3;
      pc_chunk *cs[3];
      uint64_t spans = 0;
      for (size_t j = 0; j < n; j++) {
        cs[j] = make_chunk((uint32_t)(rnd(&rng) % 12)); /* empty chunks too */
        spans += cs[j]->n_spans;
      }
      if (submit(&f, cs, n) == PC_ACCEPTED)
        accepted += spans;
      else
        refused += spans;
    }
    int rc = pc_pipeline_drain(f.p, trial < 3 ? 5000 : (uint32_t)(rnd(&rng) % 20));
    assert_true(rc == 0 || rc == PROFILIS_ETIMEDOUT);
    uint64_t acc[4] = {accepted, accepted, accepted, accepted};
    inv_check(&f, acc);
    assert_true(accepted > 0);
    assert_true(refused > 0); /* the small budget did push back */
    pc_series *rs = pc_metrics_series(f.m, PC_COUNTER, "profilis_pipeline_refused_spans_total", "",
                                      "reason=\"memory_budget\"");
    assert_int_equal(atomic_load(&rs->value), refused);
    stop(&f);
  }
}

typedef struct submitter {
  fixture *f;
  uint64_t rng;
  atomic_int *stop;
  uint64_t accepted_ab, accepted_c; /* spans accepted while c was / was not routed: see below */
  uint64_t accepted;
} submitter;

static void *submit_loop(void *arg) {
  submitter *s = arg;
  while (!atomic_load(s->stop)) {
    pc_chunk *c = make_chunk(1 + (uint32_t)(rnd(&s->rng) % 8));
    uint32_t n = c->n_spans;
    if (submit(s->f, &c, 1) == PC_ACCEPTED) s->accepted += n;
  }
  return NULL;
}

/* Submitters race with reloads that replace e1 (new batch size) and flip e2 on and off the
 * route; e0 stays. After the drain e0 accounts for every accepted span, and e1 (kept by name
 * across replacements) too; e2's counters must never exceed what was accepted. */
static void test_invariant_concurrent_reload(void **state) {
  tcfg t;
  tcfg_init(&t, 1 << 22);
  tcfg_add(&t, "e0", PC_EXPORTER_JSONL, 16, 1);
  tcfg_add(&t, "e1", PC_EXPORTER_JSONL, 32, 2);
  fixture f;
  start(&f, &t);
  atomic_int stop_flag = 0;
  submitter subs[3];
  pthread_t th[3];
  for (int i = 0; i < 3; i++) {
    subs[i] = (submitter){.f = &f, .rng = 77u + (uint64_t)i, .stop = &stop_flag};
    assert_int_equal(pthread_create(&th[i], NULL, submit_loop, &subs[i]), 0);
  }
  for (int r = 0; r < 20; r++) {
    tcfg t2;
    tcfg_init(&t2, 1 << 22);
    tcfg_add(&t2, "e0", PC_EXPORTER_JSONL, 16, 1);
    tcfg_add(&t2, "e1", PC_EXPORTER_JSONL, (uint32_t)(32 + r), 2);
    if (r % 2 == 0) tcfg_add(&t2, "e2", PC_EXPORTER_JSONL, 8, 1);
    assert_int_equal(pc_pipeline_reload(f.p, &t2.c), 0);
    sleep_ms(10);
  }
  atomic_store(&stop_flag, 1);
  uint64_t accepted = 0;
  for (int i = 0; i < 3; i++) {
    pthread_join(th[i], NULL);
    accepted += subs[i].accepted;
  }
  assert_int_equal(pc_pipeline_drain(f.p, 10000), 0);
  assert_true(accepted > 0);
  for (int i = 0; i < 2; i++) {
    uint64_t sent = counter(&f, "profilis_exporter_sent_spans_total", inv_names[i]);
    assert_int_equal(sent, accepted);
  }
  uint64_t sent2 = counter(&f, "profilis_exporter_sent_spans_total", "e2");
  assert_true(sent2 > 0 && sent2 < accepted);
  assert_int_equal(pc_pipeline_budget_used(f.p), 0);
  stop(&f);
}

/* A sampled tenant's chunks go through the sampler stage (its own thread): submitters race
 * with each other, with the stage and with reloads that change the sampling policy; every
 * accepted span is kept (the target is far above the rate) and reaches the exporter by the
 * drain, which takes what is still queued for the stage and then what waits in the window. */
static void test_sampled_tenant_stage(void **state) {
  (void)state;
  static const char yaml[] = "exporters:\n"
                             "  jsonl: {path: /nonexistent/unused.jsonl, batch: {size: 64, timeout: 5ms}}\n"
                             "service: {exporters: [jsonl]}\n"
                             "tenants:\n"
                             "  - id: acme\n"
                             "    sampling: {target: 1000000}\n"
                             "tenancy: {default_tenant: acme}\n"
                             "sampling: {decision_wait: 20ms}\n";
  pc_config *cfg = NULL;
  pc_errors errs = {0};
  assert_int_equal(pc_config_parse(yaml, sizeof yaml - 1, "<test>", &cfg, &errs), 0);
  fixture f;
  assert_int_equal(pc_metrics_new(&f.m), 0);
  assert_int_equal(pc_pipeline_new_with(&f.p, cfg, f.m, test_factory, &H), 0);
  atomic_int stop_flag = 0;
  submitter subs[2];
  pthread_t th[2];
  for (int i = 0; i < 2; i++) {
    subs[i] = (submitter){.f = &f, .rng = 91u + (uint64_t)i, .stop = &stop_flag};
    assert_int_equal(pthread_create(&th[i], NULL, submit_loop, &subs[i]), 0);
  }
  for (int r = 0; r < 10; r++) {
    sleep_ms(15);
    cfg->tenants[0].sampling_target = 1000000 + r; /* a reload the sampler must take */
    assert_int_equal(pc_pipeline_reload(f.p, cfg), 0);
  }
  atomic_store(&stop_flag, 1);
  uint64_t accepted = 0;
  for (int i = 0; i < 2; i++) {
    pthread_join(th[i], NULL);
    accepted += subs[i].accepted;
  }
  assert_int_equal(pc_pipeline_drain(f.p, 10000), 0);
  assert_true(accepted > 0);
  uint64_t got = 0; /* a reload of the tenants may rebuild the exporter: count every instance */
  for (size_t i = 0; i < H.n; i++) got += exp_spans(H.exps[i]);
  assert_int_equal(got, accepted);
  assert_int_equal(pc_pipeline_budget_used(f.p), 0);
  stop(&f);
  pc_config_free(cfg);
  pc_errors_free(&errs);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_admit_against_budget, setup, teardown),
      cmocka_unit_test_setup_teardown(test_submit_all_or_nothing, setup, teardown),
      cmocka_unit_test_setup_teardown(test_batch_by_size, setup, teardown),
      cmocka_unit_test_setup_teardown(test_batch_by_timeout, setup, teardown),
      cmocka_unit_test_setup_teardown(test_tick_when_due, setup, teardown),
      cmocka_unit_test_setup_teardown(test_batch_early_with_company, setup, teardown),
      cmocka_unit_test_setup_teardown(test_drain_deadline_drops, setup, teardown),
      cmocka_unit_test_setup_teardown(test_drain_delivers_all, setup, teardown),
      cmocka_unit_test_setup_teardown(test_failed_and_rejected, setup, teardown),
      cmocka_unit_test_setup_teardown(test_prometheus_span_metrics, setup, teardown),
      cmocka_unit_test_setup_teardown(test_reload_keeps_data, setup, teardown),
      cmocka_unit_test_setup_teardown(test_invariant_random, setup, teardown),
      cmocka_unit_test_setup_teardown(test_invariant_concurrent_reload, setup, teardown),
      cmocka_unit_test_setup_teardown(test_sampled_tenant_stage, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
