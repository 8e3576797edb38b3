/* Breaker + durable queue wrapper (collector/resilient.c) around a fake inner exporter that can
 * be switched between accepting, failing retryably and refusing for good (faults a unit test
 * cannot cause in a real backend), on a real LMDB queue in a temporary directory. Every span
 * carries its own span id, so the tests check that each one is delivered exactly once and in
 * order, and that the counters add up exactly. Ends with a throughput figure (printed only). */
#define _GNU_SOURCE
#include <ftw.h>
#include <lmdb.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "chunk_builder.h"
#include "pc_decode.h"
#include "pc_dqueue.h"
#include "pc_resilient.h"
#include "pf_time.h"
#include "profilis/common.h"

#define MAX_IDS 20000u

/* ---- the fake inner exporter ---- */

typedef enum fake_mode { FAKE_OK, FAKE_RETRY, FAKE_PERM } fake_mode;

typedef struct fake_backend {
  pc_exporter base;
  fake_mode mode;
  uint64_t reject_next; /* partial_success on the next accepted call */
  bool track;           /* record every span id (off for the throughput run) */
  unsigned calls, ticks, finishes;
  uint64_t spans;          /* accepted */
  uint16_t seen[MAX_IDS];  /* deliveries per span id */
  char tenant_of[MAX_IDS]; /* first letter of the tenant each id arrived with */
  uint64_t last_id, out_of_order;
  uint64_t charged_chunks, raw_chunks, chunks; /* budget_bytes != 0, raw kept, all */
  uint64_t max_window_ms;                      /* longest deadline it was given */
  bool *destroyed;
} fake_backend;

static uint64_t span_id_of(const pf_span_rec *r) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++) v = v << 8 | r->span_id[i];
  return v;
}

static int fake_export(pc_exporter *e, pc_chunk *const *chunks, size_t n, const pf_deadline *dl,
                       uint64_t *rejected) {
  fake_backend *f = (fake_backend *)e;
  f->calls++;
  uint64_t now = pf_mono_ns(), win = dl->at_mono_ns > now ? (dl->at_mono_ns - now) / 1000000u : 0;
  if (win > f->max_window_ms) f->max_window_ms = win;
  if (dl->cancel && atomic_load(dl->cancel)) return PROFILIS_ECANCELED;
  if (f->mode == FAKE_RETRY) return PROFILIS_ERETRYABLE;
  if (f->mode == FAKE_PERM) return PROFILIS_EPERMANENT;
  for (size_t i = 0; i < n; i++) {
    const pc_chunk *c = chunks[i];
    f->chunks++;
    f->charged_chunks += c->budget_bytes != 0;
    f->raw_chunks += c->raw.len > 0;
    f->spans += c->n_spans;
    if (!f->track) continue;
    for (uint32_t k = 0; k < c->n_spans; k++) {
      uint64_t id = span_id_of(c->spans[k]);
      assert_true(id > 0 && id < MAX_IDS);
      f->seen[id]++;
      f->tenant_of[id] = c->tenant[0];
      if (id <= f->last_id) f->out_of_order++;
      f->last_id = id;
    }
  }
  *rejected = f->reject_next;
  f->reject_next = 0;
  return 0;
}

static void fake_tick(pc_exporter *e) { ((fake_backend *)e)->ticks++; }
static void fake_finish(pc_exporter *e) { ((fake_backend *)e)->finishes++; }
static void fake_destroy(pc_exporter *e) {
  fake_backend *f = (fake_backend *)e;
  if (f->destroyed) *f->destroyed = true;
}

static void fake_init(fake_backend *f) {
  memset(f, 0, sizeof *f);
  f->base = (pc_exporter){.export_chunks = fake_export,
                          .tick = fake_tick,
                          .destroy = fake_destroy,
                          .finish = fake_finish};
  f->track = true;
}

/* ---- chunks: real decoded chunks (reference counted, with raw bytes) ---- */

static const pf_scope g_scope = {.name = "res.scope", .version = "1"};

/* A chunk of n spans with span ids first..first+n-1. */
static pc_chunk *mk_chunk(uint64_t first, uint32_t n, const char *tenant) {
  profilis_attr res[] = {PROFILIS_ATTR_STR("service.name", "svc")};
  tchunk t;
  tc_init(&t, res, 1, NULL);
  for (uint32_t i = 0; i < n; i++) {
    rb_span s = {.name = "op", .kind = 2, .start_ns = 1000, .end_ns = 3000, .scope = &g_scope};
    rb_id(s.trace_id, 16, 0x70);
    uint64_t id = first + i;
    for (int b = 0; b < 8; b++) s.span_id[b] = (uint8_t)(id >> (56 - 8 * b));
    tc_add(&t, &s);
  }
  pf_buf req = {0};
  pf_batch batch = pc_chunk_batch(&t.c);
  assert_int_equal(pf_otlp_encode_request(&req, &batch), 0);
  pc_decode_opts o = {.keep_raw = true};
  pc_decode_result r;
  assert_int_equal(pc_decode_otlp_proto(req.p, req.len, &o, &r), 0);
  assert_int_equal(r.n_chunks, 1);
  pc_chunk *c = r.chunks[0];
  free(r.chunks);
  pf_buf_free(&req);
  tc_free(&t);
  assert_non_null(c->raw.p);
  snprintf(c->tenant, sizeof c->tenant, "%s", tenant ? tenant : "");
  return c;
}

/* A batch of k chunks of n spans each, ids from *next on. */
typedef struct tbatch {
  pc_chunk *c[8];
  size_t k;
  uint64_t spans;
} tbatch;

static tbatch mk_batch(uint64_t *next, size_t k, uint32_t n, const char *const *tenants) {
  tbatch b = {.k = k};
  for (size_t i = 0; i < k; i++) {
    b.c[i] = mk_chunk(*next, n, tenants ? tenants[i] : NULL);
    *next += n;
    b.spans += n;
  }
  return b;
}

/* Every chunk is back to its single reference (the wrapper kept none); frees them. */
static void release(tbatch *b) {
  for (size_t i = 0; i < b->k; i++) {
    assert_int_equal(atomic_load(&b->c[i]->refs), 1);
    assert_true(pc_chunk_unref(b->c[i]));
  }
}

/* ---- fixture: temp dir, metrics, counters ---- */

/* The tenant of the chunks send_new makes (a tenant's slot gets chunks of its tenant). */
static const char *g_tenant;

typedef struct fx {
  char dir[64];
  pc_metrics *m;
  pc_export_counters ctr;
  pc_exporter_cfg cfg;
  fake_backend f;
} fx;

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
  (void)st, (void)flag, (void)ftw;
  return remove(path);
}

static int fx_setup(void **state) {
  fx *x = calloc(1, sizeof *x);
  if (!x) return -1;
  snprintf(x->dir, sizeof x->dir, "/tmp/pc_resilient_XXXXXX");
  if (!mkdtemp(x->dir) || pc_metrics_new(&x->m)) return -1;
  const char *l = "exporter=\"otlp/t\"";
  x->ctr.sent = pc_metrics_series(x->m, PC_COUNTER, "sent_total", "s", l);
  x->ctr.failed = pc_metrics_series(x->m, PC_COUNTER, "failed_total", "f", l);
  x->ctr.rejected = pc_metrics_series(x->m, PC_COUNTER, "rejected_total", "r", l);
  x->ctr.dropped = pc_metrics_series(x->m, PC_COUNTER, "dropped_total", "d", l);
  x->cfg = (pc_exporter_cfg){.name = "otlp/t",
                             .type = PC_EXPORTER_OTLP,
                             .timeout_ms = 1000,
                             .breaker_enabled = true,
                             .breaker_failures = 3,
                             .breaker_min_calls = 1,
                             .breaker_window_ms = 10000,
                             .breaker_open_ms = 300,
                             .breaker_open_max_ms = 300,
                             .breaker_probes = 1,
                             .breaker_close_after = 1,
                             .queue_enabled = true,
                             .queue_directory = x->dir,
                             .queue_max_bytes = 64u << 20,
                             .queue_full = PC_DQ_DROP_OLDEST,
                             .queue_fsync = false};
  fake_init(&x->f);
  *state = x;
  return 0;
}

static int fx_teardown(void **state) {
  fx *x = *state;
  g_tenant = NULL;
  nftw(x->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
  pc_metrics_free(x->m);
  free(x);
  return 0;
}

static uint64_t val(pc_series *s) { return atomic_load(&s->value); }

static pc_exporter *wrap(fx *x, const char *tenant) {
  pc_exporter *e;
  assert_int_equal(pc_resilient_new(&e, &x->f.base, &x->cfg, tenant, x->m, &x->ctr), 0);
  assert_true(e->self_counting);
  return e;
}

static int export_batch(pc_exporter *e, tbatch *b, const atomic_int *cancel) {
  pf_deadline dl = {.at_mono_ns = pf_mono_ns() + 60000000000ull, .cancel = cancel};
  uint64_t rej = 0;
  return e->export_chunks(e, b->c, b->k, &dl, &rej);
}

/* Exports a fresh batch and releases it. */
static int send_new(pc_exporter *e, uint64_t *next, size_t k, uint32_t n, uint64_t *total) {
  const char *t[8];
  for (size_t i = 0; i < 8; i++) t[i] = g_tenant;
  tbatch b = mk_batch(next, k, n, t);
  int rc = export_batch(e, &b, NULL);
  *total += b.spans;
  release(&b);
  return rc;
}

/* Ticks until the queue is empty (bounded). */
static void drain(pc_exporter *e) {
  uint64_t until = pf_mono_ns() + 10000000000ull;
  while (pc_resilient_queued_spans(e) && pf_mono_ns() < until) {
    e->tick(e);
    usleep(1000);
  }
  assert_int_equal(pc_resilient_queued_spans(e), 0);
}

static void sleep_ms(unsigned ms) { usleep(ms * 1000u); }

/* The rendered metrics contain this exact line. */
static bool has_line(pc_metrics *m, const char *line) {
  pf_buf b = {0};
  assert_int_equal(pc_metrics_render(m, &b), 0);
  assert_int_equal(pf_buf_append(&b, "", 1), 0);
  const char *p = (const char *)b.p;
  size_t n = strlen(line);
  bool found = false;
  for (const char *s = strstr(p, line); s && !found; s = strstr(s + 1, line))
    found = (s == p || s[-1] == '\n') && (s[n] == '\n' || s[n] == '\0');
  pf_buf_free(&b);
  return found;
}

/* Each id in [from, to) was delivered exactly once. */
static void assert_once(const fake_backend *f, uint64_t from, uint64_t to) {
  for (uint64_t i = from; i < to; i++)
    if (f->seen[i] != 1)
      fail_msg("span id %llu delivered %u times", (unsigned long long)i, f->seen[i]);
}

/* ---- tests ---- */

static void test_direct_path(void **state) {
  fx *x = *state;
  bool destroyed = false;
  x->f.destroyed = &destroyed;
  pc_exporter *e = wrap(x, NULL);
  uint64_t next = 1, total = 0;
  for (int i = 0; i < 3; i++) assert_int_equal(send_new(e, &next, 2, 10, &total), 0);
  assert_int_equal(x->f.calls, 3);
  assert_once(&x->f, 1, next);
  assert_int_equal(x->f.out_of_order, 0);
  assert_int_equal(val(x->ctr.sent), total);
  assert_int_equal(val(x->ctr.failed), 0);
  assert_true(x->f.max_window_ms <= 1000); /* one attempt's timeout, not the caller's 60 s */
  assert_int_equal(pc_resilient_queued_spans(e), 0);
  assert_int_equal(pc_resilient_state(e), PC_BREAKER_CLOSED);

  x->f.reject_next = 4; /* partial success */
  assert_int_equal(send_new(e, &next, 1, 10, &total), 0);
  assert_int_equal(val(x->ctr.sent), total - 4);
  assert_int_equal(val(x->ctr.failed), 4);
  assert_int_equal(val(x->ctr.rejected), 4);

  x->f.mode = FAKE_PERM; /* the backend answered: failed, and no trip however many */
  for (int i = 0; i < 5; i++)
    assert_int_equal(send_new(e, &next, 1, 10, &total), PROFILIS_EPERMANENT);
  assert_int_equal(val(x->ctr.failed), 4 + 50);
  assert_int_equal(pc_resilient_state(e), PC_BREAKER_CLOSED);
  assert_int_equal(pc_resilient_queued_spans(e), 0);
  assert_int_equal(val(x->ctr.sent) + val(x->ctr.failed), total);

  e->tick(e);
  assert_int_equal(x->f.ticks, 1); /* forwarded */
  assert_true(
      has_line(x->m, "profilis_breaker_state{exporter=\"otlp/t\",tenant=\"\",state=\"closed\"} 1"));
  assert_true(
      has_line(x->m, "profilis_breaker_state{exporter=\"otlp/t\",tenant=\"\",state=\"open\"} 0"));
  assert_true(has_line(x->m, "profilis_queue_records{exporter=\"otlp/t\",tenant=\"\"} 0"));
  e->finish(e);
  assert_int_equal(x->f.finishes, 1);
  e->destroy(e);
  assert_true(destroyed);
}

/* Outage: the breaker opens after 3 failures, later batches go to disk without calling the
 * backend, memory is released; after recovery every span arrives once, in order, with its
 * tenant, replayed chunks not charged to the budget and keeping their raw bytes. */
static void test_outage_then_replay(void **state) {
  fx *x = *state;
  x->cfg.breaker_open_ms = x->cfg.breaker_open_max_ms = 1000; /* no probe while it queues */
  pc_exporter *e = wrap(x, NULL);
  x->f.mode = FAKE_RETRY;
  uint64_t next = 1, total = 0;
  static const char *const tenants[] = {"alpha", "alpha", "beta", "alpha"};
  for (int i = 0; i < 12; i++) {
    tbatch b = mk_batch(&next, 4, 5, tenants);
    if (i == 5) b.c[1]->modified = true; /* re-encoded from its records, not raw */
    assert_int_equal(export_batch(e, &b, NULL), 0);
    total += b.spans;
    release(&b); /* the wrapper kept no reference: memory stays flat */
  }
  /* batch 1 direct, batches 2 and 3 each retry the backlog's head once: 3 failures */
  assert_int_equal(x->f.calls, 3);
  assert_int_equal(pc_resilient_state(e), PC_BREAKER_OPEN);
  assert_int_equal(pc_resilient_queued_spans(e), total);
  assert_true(
      has_line(x->m, "profilis_breaker_state{exporter=\"otlp/t\",tenant=\"\",state=\"open\"} 1"));
  assert_true(has_line(
      x->m,
      "profilis_breaker_transitions_total{exporter=\"otlp/t\",tenant=\"\",state=\"open\"} 1"));
  char line[200];
  snprintf(line, sizeof line, "profilis_queue_spans{exporter=\"otlp/t\",tenant=\"\"} %llu",
           (unsigned long long)total);
  assert_true(has_line(x->m, line));
  e->tick(e); /* still cooling down: no call */
  assert_int_equal(x->f.calls, 3);
  assert_int_equal(val(x->ctr.sent) + val(x->ctr.failed) + val(x->ctr.dropped), 0);

  x->f.mode = FAKE_OK;
  sleep_ms(1020);
  drain(e);
  assert_int_equal(pc_resilient_state(e), PC_BREAKER_CLOSED);
  assert_once(&x->f, 1, next);
  assert_int_equal(x->f.out_of_order, 0);
  for (uint64_t id = 1; id < next; id++) {
    uint64_t chunk = (id - 1) / 5 % 4;
    assert_int_equal(x->f.tenant_of[id], tenants[chunk][0]);
  }
  assert_int_equal(x->f.charged_chunks, 0);
  assert_int_equal(x->f.raw_chunks, x->f.chunks);
  assert_int_equal(val(x->ctr.sent), total);
  assert_int_equal(val(x->ctr.failed), 0);
  assert_true(has_line(x->m, "profilis_queue_records{exporter=\"otlp/t\",tenant=\"\"} 0"));

  /* back to the direct path */
  unsigned calls = x->f.calls;
  assert_int_equal(send_new(e, &next, 1, 5, &total), 0);
  assert_int_equal(x->f.calls, calls + 1);
  assert_int_equal(val(x->ctr.sent), total);
  e->finish(e);
  e->destroy(e);
}

/* New batches behind a backlog go to the queue; each export replays a group first, so the
 * order holds when the backend comes back while traffic flows. */
static void test_backlog_keeps_order(void **state) {
  fx *x = *state;
  x->cfg.breaker_open_ms = x->cfg.breaker_open_max_ms = 20;
  g_tenant = "acme";
  pc_exporter *e = wrap(x, "acme");
  x->f.mode = FAKE_RETRY;
  uint64_t next = 1, total = 0;
  for (int i = 0; i < 30; i++) assert_int_equal(send_new(e, &next, 1, 3, &total), 0);
  assert_true(pc_resilient_queued_spans(e) > 0);
  x->f.mode = FAKE_OK;
  sleep_ms(30);
  for (int i = 0; i < 10; i++) assert_int_equal(send_new(e, &next, 1, 3, &total), 0);
  drain(e);
  assert_once(&x->f, 1, next);
  assert_int_equal(x->f.out_of_order, 0);
  assert_int_equal(val(x->ctr.sent), total);
  assert_int_equal(x->f.tenant_of[1], 'a');
  char path[128];
  snprintf(path, sizeof path, "%s/otlp_t/acme/data.mdb", x->dir);
  struct stat st;
  assert_int_equal(stat(path, &st), 0);
  e->finish(e);
  e->destroy(e);
}

/* Puts the wrapper's breaker into the open state (3 failing direct exports, counted nowhere
 * because they are queued) and returns the spans so queued. */
static uint64_t trip(pc_exporter *e, fx *x, uint64_t *next) {
  x->f.mode = FAKE_RETRY;
  uint64_t total = 0;
  while (pc_resilient_state(e) != PC_BREAKER_OPEN) send_new(e, next, 1, 20, &total);
  return total;
}

static void test_drop_oldest(void **state) {
  fx *x = *state;
  x->cfg.queue_max_bytes = 16384;
  x->cfg.breaker_open_ms = x->cfg.breaker_open_max_ms = 2000;
  pc_exporter *e = wrap(x, NULL);
  uint64_t next = 1, total = trip(e, x, &next);
  for (int i = 0; i < 40; i++) assert_int_equal(send_new(e, &next, 1, 20, &total), 0);
  uint64_t queued = pc_resilient_queued_spans(e), dropped = val(x->ctr.dropped);
  assert_true(dropped > 0);
  assert_true(queued > 0);
  assert_int_equal(queued + dropped, total); /* each span either waits or was counted */
  assert_int_equal(dropped % 20, 0);
  /* recover: exactly the newest batches arrive */
  x->f.mode = FAKE_OK;
  sleep_ms(2050);
  drain(e);
  assert_int_equal(val(x->ctr.sent), queued);
  for (uint64_t id = 1; id < next; id++) assert_int_equal(x->f.seen[id], id > dropped ? 1 : 0);
  assert_int_equal(val(x->ctr.sent) + val(x->ctr.dropped) + val(x->ctr.failed), total);
  e->finish(e);
  e->destroy(e);
}

static void test_refuse_full(void **state) {
  fx *x = *state;
  x->cfg.queue_max_bytes = 16384;
  x->cfg.queue_full = PC_DQ_REFUSE;
  x->cfg.breaker_open_ms = x->cfg.breaker_open_max_ms = 400;
  pc_exporter *e = wrap(x, "t1");
  uint64_t next = 1, total = trip(e, x, &next), refused = 0;
  assert_false(pc_resilient_full(e));
  for (int i = 0; i < 40; i++) {
    uint64_t before = total;
    int rc = send_new(e, &next, 1, 20, &total);
    if (rc == PROFILIS_EFULL)
      refused += total - before;
    else
      assert_int_equal(rc, 0);
  }
  assert_true(refused > 0);
  assert_true(pc_resilient_full(e));
  assert_int_equal(val(x->ctr.failed), refused);
  assert_int_equal(val(x->ctr.dropped), 0);
  uint64_t queued = pc_resilient_queued_spans(e);
  assert_int_equal(queued + refused, total);
  x->f.mode = FAKE_OK;
  sleep_ms(420);
  drain(e);
  assert_false(pc_resilient_full(e));
  assert_int_equal(val(x->ctr.sent), queued);
  assert_int_equal(val(x->ctr.sent) + val(x->ctr.failed), total);
  /* the queued ones are the oldest: everything up to the first refusal */
  for (uint64_t id = 1; id <= queued; id++) assert_int_equal(x->f.seen[id], 1);
  e->finish(e);
  e->destroy(e);
}

/* A canceled export (drain deadline) is persisted with a queue, dropped without one. */
static void test_cancel(void **state) {
  fx *x = *state;
  atomic_int cancel = 1;
  pc_exporter *e = wrap(x, NULL);
  uint64_t next = 1;
  tbatch b = mk_batch(&next, 2, 10, NULL);
  assert_int_equal(export_batch(e, &b, &cancel), 0);
  release(&b);
  assert_int_equal(x->f.calls, 0); /* not even tried: the queue keeps it */
  assert_int_equal(pc_resilient_queued_spans(e), 20);
  assert_int_equal(val(x->ctr.dropped), 0);
  e->tick(e); /* replayed once the slot is not canceled any more */
  assert_int_equal(pc_resilient_queued_spans(e), 0);
  assert_once(&x->f, 1, next);
  assert_int_equal(val(x->ctr.sent), 20);
  e->finish(e);
  e->destroy(e);

  fake_init(&x->f);
  x->cfg.queue_enabled = false;
  e = wrap(x, NULL);
  b = mk_batch(&next, 1, 10, NULL);
  assert_int_equal(export_batch(e, &b, &cancel), PROFILIS_ECANCELED);
  release(&b);
  assert_int_equal(val(x->ctr.dropped), 10);
  e->finish(e);
  e->destroy(e);
}

static void *finish_later(void *arg) {
  pc_exporter *e = arg;
  sleep_ms(300);
  e->finish(e);
  return NULL;
}

/* What one slot left in its queue is replayed by the next one on the same directory (restart
 * or reload), which waits for the predecessor to let go; a corrupt record is counted. */
static void test_restart_survival(void **state) {
  fx *x = *state;
  x->cfg.breaker_open_ms = x->cfg.breaker_open_max_ms = 5000;
  g_tenant = "acme";
  pc_exporter *a = wrap(x, "acme");
  uint64_t next = 1, total = trip(a, x, &next);
  for (int i = 0; i < 4; i++) send_new(a, &next, 1, 20, &total);
  assert_int_equal(pc_resilient_queued_spans(a), total);

  fake_backend f2;
  fake_init(&f2);
  pc_exporter *b;
  assert_int_equal(pc_resilient_new(&b, &f2.base, &x->cfg, "acme", x->m, &x->ctr), 0);
  pthread_t th;
  assert_int_equal(pthread_create(&th, NULL, finish_later, a), 0);
  uint64_t t0 = pf_mono_ns();
  b->tick(b); /* waits for a's finish, then opens and replays */
  assert_true(pf_mono_ns() - t0 >= 250000000ull);
  pthread_join(th, NULL);
  a->destroy(a);
  drain(b);
  assert_once(&f2, 1, next);
  assert_int_equal(f2.out_of_order, 0);
  assert_int_equal(f2.tenant_of[1], 'a');
  assert_int_equal(val(x->ctr.sent), total);
  b->finish(b);
  b->destroy(b);
}

/* A record corrupted on disk between two runs is skipped and counted by the metric. */
static void test_corrupt_record(void **state) {
  fx *x = *state;
  x->cfg.breaker_open_ms = x->cfg.breaker_open_max_ms = 5000;
  pc_exporter *a = wrap(x, NULL);
  uint64_t next = 1, total = trip(a, x, &next);
  for (int i = 0; i < 3; i++) send_new(a, &next, 1, 20, &total);
  a->finish(a);
  a->destroy(a);
  /* flip one payload byte of the second record (key 2) */
  char dir[128];
  snprintf(dir, sizeof dir, "%s/otlp_t/_", x->dir);
  MDB_env *env;
  MDB_txn *txn;
  MDB_dbi recs;
  assert_int_equal(mdb_env_create(&env), 0);
  assert_int_equal(mdb_env_set_maxdbs(env, 2), 0);
  assert_int_equal(mdb_env_open(env, dir, MDB_NOTLS, 0600), 0);
  assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
  assert_int_equal(mdb_dbi_open(txn, "records", 0, &recs), 0);
  uint8_t kb[8] = {0, 0, 0, 0, 0, 0, 0, 2};
  MDB_val k = {8, kb}, v;
  assert_int_equal(mdb_get(txn, recs, &k, &v), 0);
  uint8_t *copy = malloc(v.mv_size);
  assert_non_null(copy);
  memcpy(copy, v.mv_data, v.mv_size);
  copy[v.mv_size - 3] ^= 0x40;
  MDB_val nv = {v.mv_size, copy};
  assert_int_equal(mdb_put(txn, recs, &k, &nv, 0), 0);
  assert_int_equal(mdb_txn_commit(txn), 0);
  mdb_env_close(env);
  free(copy);

  fake_init(&x->f);
  pc_exporter *b = wrap(x, NULL);
  b->tick(b);
  drain(b);
  assert_int_equal(val(x->ctr.sent), total - 20);
  for (uint64_t id = 1; id < next; id++)
    assert_int_equal(x->f.seen[id], id > 20 && id <= 40 ? 0 : 1);
  assert_true(
      has_line(x->m, "profilis_queue_corrupt_records_total{exporter=\"otlp/t\",tenant=\"\"} 1"));
  b->finish(b);
  b->destroy(b);
}

/* Without a queue, failures and an open breaker count every span as failed. */
static void test_no_queue_breaker_open(void **state) {
  fx *x = *state;
  x->cfg.queue_enabled = false;
  x->cfg.breaker_open_ms = x->cfg.breaker_open_max_ms = 5000;
  pc_exporter *e = wrap(x, NULL);
  x->f.mode = FAKE_RETRY;
  uint64_t next = 1, total = 0;
  for (int i = 0; i < 3; i++)
    assert_int_equal(send_new(e, &next, 1, 10, &total), PROFILIS_ERETRYABLE);
  assert_int_equal(pc_resilient_state(e), PC_BREAKER_OPEN);
  assert_int_equal(x->f.calls, 3);
  for (int i = 0; i < 4; i++)
    assert_int_equal(send_new(e, &next, 1, 10, &total), PROFILIS_ERETRYABLE);
  assert_int_equal(x->f.calls, 3); /* the breaker kept the backend out of it */
  assert_int_equal(val(x->ctr.failed), total);
  assert_int_equal(val(x->ctr.sent), 0);
  assert_int_equal(pc_resilient_queued_spans(e), 0);
  assert_false(has_line(x->m, "profilis_queue_records{exporter=\"otlp/t\",tenant=\"\"} 0"));
  e->finish(e);
  e->destroy(e);
}

/* Breaker disabled: every batch is tried; retryable failures still go to the queue. */
static void test_breaker_disabled(void **state) {
  fx *x = *state;
  x->cfg.breaker_enabled = false;
  pc_exporter *e = wrap(x, NULL);
  x->f.mode = FAKE_RETRY;
  uint64_t next = 1, total = 0;
  for (int i = 0; i < 6; i++) assert_int_equal(send_new(e, &next, 1, 10, &total), 0);
  assert_int_equal(pc_resilient_state(e), PC_BREAKER_CLOSED);
  assert_int_equal(x->f.calls, 6); /* each batch: one attempt at the head of the backlog */
  assert_int_equal(pc_resilient_queued_spans(e), total);
  x->f.mode = FAKE_OK;
  drain(e);
  assert_once(&x->f, 1, next);
  assert_int_equal(val(x->ctr.sent), total);
  e->finish(e);
  e->destroy(e);
}

/* The real JSONL exporter behind the wrapper: batches persisted during a drain are replayed
 * into the file (decoded without raw bytes), one line per span, each span once. */
static void test_jsonl_inner(void **state) {
  fx *x = *state;
  char path[128];
  snprintf(path, sizeof path, "%s/out/spans.jsonl", x->dir);
  x->cfg.name = "jsonl/t";
  x->cfg.type = PC_EXPORTER_JSONL;
  x->cfg.path = path;
  x->cfg.flush_interval_ms = 0; /* write through */
  pc_exporter *inner, *e;
  assert_int_equal(pc_jsonl_exporter_new(&inner, &x->cfg), 0);
  assert_int_equal(pc_resilient_new(&e, inner, &x->cfg, "t9", x->m, &x->ctr), 0);
  atomic_int cancel = 1;
  uint64_t next = 1, total = 0;
  static const char *const t9[] = {"t9", "t9"};
  for (int i = 0; i < 5; i++) {
    tbatch b = mk_batch(&next, 2, 10, t9);
    assert_int_equal(export_batch(e, &b, &cancel), 0);
    total += b.spans;
    release(&b);
  }
  assert_int_equal(pc_resilient_queued_spans(e), total);
  drain(e);
  e->finish(e);
  e->destroy(e);
  assert_int_equal(val(x->ctr.sent), total);
  FILE *f = fopen(path, "r");
  assert_non_null(f);
  char line[4096];
  uint64_t lines = 0, ids[2] = {0};
  while (fgets(line, sizeof line, f)) {
    lines++;
    ids[0] += strstr(line, "\"span_id\":\"0000000000000001\"") != NULL;
    ids[1] += strstr(line, "\"span_id\":\"0000000000000032\"") != NULL; /* id 50 */
  }
  fclose(f);
  assert_int_equal(lines, total);
  assert_int_equal(ids[0], 1);
  assert_int_equal(ids[1], 1);
}

/* Throughput through the wrapper: 512-span batches written to the queue (canceled exports go
 * straight to it) and replayed into a fake that only counts. Printed, never asserted. */
static void test_throughput(void **state) {
  fx *x = *state;
  for (int sync = 1; sync >= 0; sync--) {
    fake_init(&x->f);
    x->f.track = false;
    x->cfg.queue_fsync = sync;
    x->cfg.queue_max_bytes = 1ull << 30;
    pc_exporter *e = wrap(x, NULL);
    uint64_t next = 1;
    tbatch b = mk_batch(&next, 1, 512, NULL);
    atomic_int cancel = 1;
    enum { N = 150 };
    uint64_t t0 = pf_mono_ns();
    for (int i = 0; i < N; i++) assert_int_equal(export_batch(e, &b, &cancel), 0);
    uint64_t t1 = pf_mono_ns();
    drain(e);
    uint64_t t2 = pf_mono_ns();
    release(&b);
    assert_int_equal(x->f.spans, (uint64_t)N * 512);
    double spans = (double)N * 512;
    printf("resilient throughput (%s, %d batches x 512 spans): write %.0f spans/s, replay %.0f "
           "spans/s\n",
           sync ? "fsync" : "no_sync", N, spans / ((double)(t1 - t0) / 1e9),
           spans / ((double)(t2 - t1) / 1e9));
    e->finish(e);
    e->destroy(e);
    nftw(x->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    assert_int_equal(mkdir(x->dir, 0700), 0);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_direct_path, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_outage_then_replay, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_backlog_keeps_order, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_drop_oldest, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_refuse_full, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_cancel, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_restart_survival, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_corrupt_record, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_no_queue_breaker_open, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_breaker_disabled, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_jsonl_inner, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_throughput, fx_setup, fx_teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
