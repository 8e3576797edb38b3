/* The pipeline between receivers and exporters. submit charges the memory budget (one CAS, all
 * or nothing), feeds span metrics and queues a chunk reference per exporter under the route's
 * read lock, so a reload (write lock) swaps whole routes between submits. Each exporter has a
 * slot: a growable ring of references (the budget bounds it) and a thread that batches by span
 * count or age, exports with a deadline and drops its references; the last one returns the
 * chunk's bytes. Drain waits until its deadline, then cancels and counts leftovers as dropped. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pc_exporter.h"
#include "pc_pipeline.h"
#include "pc_spanmetrics.h"
#include "pf_log.h"
#include "profilis/common.h"

#define TICK_NS 100000000ull /* idle exporters call tick() this often */
#define DEFAULT_BATCH 512u
#define DEFAULT_EXPORT_TIMEOUT_MS 10000u
#define BATCH_INIT_CAP 64u
#define Q_KEEP_CAP 4096u /* an empty queue gives back a larger array grown by a burst */

typedef struct qent {
  pc_chunk *c;
  uint64_t enq_ns; /* monotonic; the batch timeout counts from the oldest entry */
} qent;

typedef struct pc_slot pc_slot;
struct pc_slot {
  pc_exporter_cfg cfg; /* deep copy: the exporter and span metrics keep pointers into it */
  pc_pipeline *p;
  pc_exporter *exp;   /* NULL for prometheus */
  pc_spanmetrics *sm; /* prometheus only */
  pthread_t thread;
  bool started, joined;
  pthread_mutex_t mu;
  pthread_cond_t wake; /* the thread waits here: data, close, abort */
  pthread_cond_t done_cv;
  qent *q; /* ring: q_len entries from q_head, capacity q_cap */
  size_t q_cap, q_head, q_len;
  uint64_t q_spans;
  bool closing;               /* no more input: finish the queue, then exit */
  bool done;                  /* the thread has exited */
  uint64_t close_deadline_ns; /* retired slots give up here (0 = no limit) */
  uint64_t dropped_at_close;  /* spans still queued when the thread gave up */
  atomic_int abort;           /* stop now; cancels the export in flight */
  pc_chunk **batch;           /* the thread's batch array */
  size_t batch_cap;
  pc_series *sent, *failed, *rejected, *dropped, *queue_spans, *queue_batches;
  /* The retired slot of the same name this one replaced: it exports nothing before pred is
   * done, so one name never has two writers (e.g. the same JSONL file). Cleared under mu by
   * this slot's thread once it no longer looks at pred; pred is not freed before that. */
  pc_slot *pred;
  pc_slot *next_retired;
};

typedef struct pc_route {
  pc_slot **slots; /* every exporter on the route, prometheus included */
  size_t n;
  pc_slot *prom; /* the span metrics exporter, or NULL */
  bool keep_raw;
} pc_route;

struct pc_pipeline {
  pthread_rwlock_t lock; /* submit: read; swapping the route and draining: write */
  pthread_mutex_t ctl;   /* serializes reload, drain and free */
  pc_route *route;
  bool draining;
  pc_slot *retired; /* replaced slots finishing their queues; freed by reload, drain, free */
  _Atomic uint64_t used, limit;
  _Atomic uint32_t retry_after_ms, drain_timeout_ms;
  atomic_bool keep_raw;
  pc_metrics *m;
  pc_exporter_factory factory;
  void *factory_arg;
  pc_series *budget_limit_g, *budget_used_g;
  pc_series *refused_budget, *refused_draining, *refused_req_budget, *refused_req_draining;
};

/* ---- time and waiting ---- */

static void wait_until(pthread_cond_t *cv, pthread_mutex_t *mu, uint64_t at_ns) {
  struct timespec ts = {.tv_sec = (time_t)(at_ns / 1000000000u),
                        .tv_nsec = (long)(at_ns % 1000000000u)};
  pthread_cond_timedwait(cv, mu, &ts);
}

static int cond_init_mono(pthread_cond_t *cv) {
  pthread_condattr_t a;
  int rc = pthread_condattr_init(&a);
  if (rc) return PROFILIS_ENOMEM;
  pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
  rc = pthread_cond_init(cv, &a);
  pthread_condattr_destroy(&a);
  return rc ? PROFILIS_ENOMEM : 0;
}

/* ---- memory budget ---- */

static bool budget_charge(pc_pipeline *p, uint64_t bytes) {
  uint64_t limit = atomic_load(&p->limit), used = atomic_load(&p->used);
  do {
    if (bytes > limit || used > limit - bytes) return false;
  } while (!atomic_compare_exchange_weak(&p->used, &used, used + bytes));
  pc_gauge_add(p->budget_used_g, (int64_t)bytes);
  return true;
}

/* Drops one reference; the last one returns the chunk's bytes to the budget. */
static void chunk_release(pc_pipeline *p, pc_chunk *c) {
  uint64_t bytes = c->budget_bytes;
  if (pc_chunk_unref(c)) {
    atomic_fetch_sub(&p->used, bytes);
    pc_gauge_add(p->budget_used_g, -(int64_t)bytes);
  }
}

/* ---- exporter settings: the pipeline's own copy, and "did anything change" ---- */

static int dup_str(char **dst, const char *src) {
  *dst = NULL;
  if (!src) return 0;
  *dst = strdup(src);
  return *dst ? 0 : PROFILIS_ENOMEM;
}

static bool same_str(const char *a, const char *b) {
  if (!a || !b) return a == b;
  return strcmp(a, b) == 0;
}

static void cfg_free(pc_exporter_cfg *c) {
  free(c->name);
  free(c->path);
  free(c->endpoint);
  for (size_t i = 0; c->headers && i < c->n_headers; i++) {
    free(c->headers[i].key);
    free(c->headers[i].value);
  }
  free(c->headers);
  free(c->tls.cert_file);
  free(c->tls.key_file);
  free(c->tls.client_ca_file);
  free(c->tls.ca_file);
  free(c->buckets_ms);
  memset(c, 0, sizeof *c);
}

static int dup_tls(pc_tls_cfg *dst, const pc_tls_cfg *src) {
  int rc = dup_str(&dst->cert_file, src->cert_file);
  if (!rc) rc = dup_str(&dst->key_file, src->key_file);
  if (!rc) rc = dup_str(&dst->client_ca_file, src->client_ca_file);
  if (!rc) rc = dup_str(&dst->ca_file, src->ca_file);
  return rc;
}

static int dup_headers(pc_exporter_cfg *dst, const pc_exporter_cfg *src) {
  dst->headers = NULL;
  if (!src->n_headers) return 0;
  dst->headers = calloc(src->n_headers, sizeof *dst->headers);
  if (!dst->headers) return PROFILIS_ENOMEM;
  int rc = 0;
  for (size_t i = 0; !rc && i < src->n_headers; i++) {
    rc = dup_str(&dst->headers[i].key, src->headers[i].key);
    if (!rc) rc = dup_str(&dst->headers[i].value, src->headers[i].value);
  }
  return rc;
}

/* Deep copy: scalars by assignment, then every owned pointer duplicated. */
static int cfg_dup(pc_exporter_cfg *dst, const pc_exporter_cfg *src) {
  *dst = *src;
  dst->name = dst->path = dst->endpoint = NULL;
  dst->headers = NULL;
  dst->tls = (pc_tls_cfg){.insecure = src->tls.insecure};
  dst->buckets_ms = NULL;
  int rc = dup_str(&dst->name, src->name);
  if (!rc) rc = dup_str(&dst->path, src->path);
  if (!rc) rc = dup_str(&dst->endpoint, src->endpoint);
  if (!rc) rc = dup_headers(dst, src);
  if (!rc) rc = dup_tls(&dst->tls, &src->tls);
  if (!rc && src->n_buckets) {
    dst->buckets_ms = malloc(src->n_buckets * sizeof *dst->buckets_ms);
    if (dst->buckets_ms)
      memcpy(dst->buckets_ms, src->buckets_ms, src->n_buckets * sizeof *dst->buckets_ms);
    else
      rc = PROFILIS_ENOMEM;
  }
  if (rc) cfg_free(dst);
  return rc;
}

static bool same_tls(const pc_tls_cfg *a, const pc_tls_cfg *b) {
  return same_str(a->cert_file, b->cert_file) && same_str(a->key_file, b->key_file) &&
         same_str(a->client_ca_file, b->client_ca_file) && same_str(a->ca_file, b->ca_file) &&
         a->insecure == b->insecure;
}

static bool same_lists(const pc_exporter_cfg *a, const pc_exporter_cfg *b) {
  if (a->n_headers != b->n_headers || a->n_buckets != b->n_buckets) return false;
  for (size_t i = 0; i < a->n_headers; i++)
    if (!same_str(a->headers[i].key, b->headers[i].key) ||
        !same_str(a->headers[i].value, b->headers[i].value))
      return false;
  for (size_t i = 0; i < a->n_buckets; i++)
    if (a->buckets_ms[i] != b->buckets_ms[i]) return false;
  return true;
}

/* True when an exporter built from a would behave exactly like one built from b. */
static bool cfg_same(const pc_exporter_cfg *a, const pc_exporter_cfg *b) {
  return a->type == b->type && a->batch_size == b->batch_size &&
         a->batch_timeout_ms == b->batch_timeout_ms && a->timeout_ms == b->timeout_ms &&
         a->format_otlp == b->format_otlp && a->rotate_max_bytes == b->rotate_max_bytes &&
         a->rotate_max_age_ms == b->rotate_max_age_ms && a->max_backups == b->max_backups &&
         a->flush_interval_ms == b->flush_interval_ms && a->fsync == b->fsync &&
         a->gzip == b->gzip && a->retry_initial_ms == b->retry_initial_ms &&
         a->retry_max_ms == b->retry_max_ms && a->retry_max_elapsed_ms == b->retry_max_elapsed_ms &&
         a->max_series == b->max_series && same_str(a->name, b->name) &&
         same_str(a->path, b->path) && same_str(a->endpoint, b->endpoint) &&
         same_tls(&a->tls, &b->tls) && same_lists(a, b);
}

/* ---- metrics ---- */

static pc_series *series(pc_pipeline *p, pc_metric_kind kind, const char *name, const char *help,
                         const char *labels) {
  return p->m ? pc_metrics_series(p->m, kind, name, help, labels) : NULL;
}

static void slot_series(pc_slot *s) {
  char v[256], labels[300];
  pc_label_escape(v, sizeof v, s->cfg.name, strlen(s->cfg.name));
  snprintf(labels, sizeof labels, "exporter=\"%s\"", v);
  pc_pipeline *p = s->p;
  s->sent = series(p, PC_COUNTER, "profilis_exporter_sent_spans_total",
                   "Spans the exporter delivered and the backend accepted.", labels);
  s->failed = series(p, PC_COUNTER, "profilis_exporter_failed_spans_total",
                     "Spans the exporter could not deliver: refused by the backend (rejected "
                     "included) or retries ran out.",
                     labels);
  s->rejected =
      series(p, PC_COUNTER, "profilis_exporter_rejected_spans_total",
             "Spans the backend refused through partial_success (part of failed).", labels);
  s->dropped = series(p, PC_COUNTER, "profilis_exporter_dropped_spans_total",
                      "Spans still queued when the drain deadline passed.", labels);
  s->queue_spans = series(p, PC_GAUGE, "profilis_exporter_queue_spans",
                          "Spans queued for the exporter.", labels);
  s->queue_batches =
      series(p, PC_GAUGE, "profilis_exporter_queue_batches",
             "Chunks (one ResourceSpans of a request each) queued for the exporter.", labels);
}

static void pipeline_series(pc_pipeline *p) {
  static const char refused_help[] = "Spans refused at submit, by reason.";
  static const char req_help[] = "Requests refused (admission or submit), by reason.";
  p->budget_limit_g =
      series(p, PC_GAUGE, "profilis_memory_budget_bytes",
             "Bytes of spans the collector holds at most (limits.memory_limit).", "");
  p->budget_used_g = series(p, PC_GAUGE, "profilis_memory_budget_used_bytes",
                            "Bytes of spans received and not yet released by every exporter.", "");
  p->refused_budget = series(p, PC_COUNTER, "profilis_pipeline_refused_spans_total", refused_help,
                             "reason=\"memory_budget\"");
  p->refused_draining = series(p, PC_COUNTER, "profilis_pipeline_refused_spans_total", refused_help,
                               "reason=\"draining\"");
  p->refused_req_budget = series(p, PC_COUNTER, "profilis_pipeline_refused_requests_total",
                                 req_help, "reason=\"memory_budget\"");
  p->refused_req_draining = series(p, PC_COUNTER, "profilis_pipeline_refused_requests_total",
                                   req_help, "reason=\"draining\"");
  char labels[64];
  snprintf(labels, sizeof labels, "version=\"%s\"", PROFILIS_VERSION);
  pc_gauge_set(series(p, PC_GAUGE, "profilis_build_info", "Build information; always 1.", labels),
               1);
}

/* ---- one exporter's queue ---- */

/* Makes room for one more entry, linearizing the ring when it grows. Called with s->mu held. */
static int q_reserve(pc_slot *s) {
  if (s->q_len < s->q_cap) return 0;
  size_t cap = s->q_cap ? s->q_cap * 2 : 64;
  qent *q = malloc(cap * sizeof *q);
  if (!q) return PROFILIS_ENOMEM;
  for (size_t i = 0; i < s->q_len; i++) q[i] = s->q[(s->q_head + i) % s->q_cap];
  free(s->q);
  s->q = q;
  s->q_cap = cap;
  s->q_head = 0;
  return 0;
}

static pc_chunk *q_pop(pc_slot *s) {
  pc_chunk *c = s->q[s->q_head].c;
  s->q_head = (s->q_head + 1) % s->q_cap;
  s->q_len--;
  s->q_spans -= c->n_spans;
  return c;
}

static uint32_t batch_size(const pc_slot *s) {
  return s->cfg.batch_size ? s->cfg.batch_size : DEFAULT_BATCH;
}

/* Queues a reference to every chunk that has spans. An entry that cannot be stored (no memory)
 * counts its spans as failed for this exporter, so nothing accepted goes unaccounted. */
static void slot_enqueue(pc_slot *s, pc_chunk *const *chunks, size_t n, uint64_t now) {
  static pf_ratelimit rl;
  uint64_t spans = 0, added = 0, lost = 0;
  pthread_mutex_lock(&s->mu);
  bool was_empty = s->q_len == 0;
  for (size_t i = 0; i < n; i++) {
    pc_chunk *c = chunks[i];
    if (!c->n_spans) continue;
    if (q_reserve(s)) {
      lost += c->n_spans;
      continue;
    }
    pc_chunk_ref(c);
    s->q[(s->q_head + s->q_len) % s->q_cap] = (qent){.c = c, .enq_ns = now};
    s->q_len++;
    s->q_spans += c->n_spans;
    spans += c->n_spans;
    added++;
  }
  /* Wake the thread only when it has something new to do: leave its idle wait, or export a
   * full batch. A partial batch does not change when the oldest entry times out. */
  if (added && (was_empty || s->q_spans >= batch_size(s))) pthread_cond_signal(&s->wake);
  pthread_mutex_unlock(&s->mu);
  pc_gauge_add(s->queue_spans, (int64_t)spans);
  pc_gauge_add(s->queue_batches, (int64_t)added);
  if (lost) {
    pc_counter_add(s->failed, lost);
    pf_log_rl(&rl, PF_LOG_ERROR,
              "exporter %s: out of memory queueing %llu spans: counted as failed", s->cfg.name,
              (unsigned long long)lost);
  }
}

/* Pops up to batch_size spans' worth of chunks (always at least one). Called with s->mu held. */
static size_t take_batch(pc_slot *s, uint64_t *spans) {
  uint32_t max = batch_size(s);
  size_t k = 0;
  *spans = 0;
  while (s->q_len && k < s->batch_cap) {
    uint32_t next = s->q[s->q_head].c->n_spans;
    if (k && *spans + next > max) break;
    s->batch[k++] = q_pop(s);
    *spans += next;
  }
  if (s->q_len && k == s->batch_cap) { /* grow for next time; this batch goes out as it is */
    pc_chunk **b = realloc(s->batch, s->batch_cap * 2 * sizeof *b);
    if (b) s->batch = b, s->batch_cap *= 2;
  }
  if (!s->q_len && s->q_cap > Q_KEEP_CAP) {
    free(s->q);
    s->q = NULL;
    s->q_cap = s->q_head = 0;
  }
  return k;
}

static uint64_t export_budget_ms(const pc_exporter_cfg *c) {
  uint64_t ms = c->timeout_ms ? c->timeout_ms : DEFAULT_EXPORT_TIMEOUT_MS;
  /* An otlp exporter retries inside one call until the deadline: give it the retry budget. */
  if (c->type == PC_EXPORTER_OTLP && c->retry_max_elapsed_ms > ms) ms = c->retry_max_elapsed_ms;
  return ms;
}

/* Exports one batch, counts the outcome per span and drops the batch's references. */
static void slot_export(pc_slot *s, size_t k, uint64_t spans) {
  static pf_ratelimit rl_fail, rl_rej;
  pf_deadline dl = {.at_mono_ns = pf_mono_ns() + export_budget_ms(&s->cfg) * 1000000u,
                    .cancel = &s->abort};
  uint64_t rejected = 0;
  int rc = s->exp->export_chunks(s->exp, s->batch, k, &dl, &rejected);
  if (rc == 0) {
    if (rejected > spans) rejected = spans;
    pc_counter_add(s->sent, spans - rejected);
    pc_counter_add(s->failed, rejected);
    pc_counter_add(s->rejected, rejected);
    if (rejected)
      pf_log_rl(&rl_rej, PF_LOG_WARN, "exporter %s: backend rejected %llu of %llu spans",
                s->cfg.name, (unsigned long long)rejected, (unsigned long long)spans);
  } else if (atomic_load(&s->abort)) {
    pc_counter_add(s->dropped, spans); /* canceled by the drain deadline */
    pthread_mutex_lock(&s->mu);
    s->dropped_at_close += spans;
    pthread_mutex_unlock(&s->mu);
  } else {
    pc_counter_add(s->failed, spans);
    pf_log_rl(&rl_fail, PF_LOG_WARN, "exporter %s: %llu spans failed: %s", s->cfg.name,
              (unsigned long long)spans, profilis_strerror(rc));
  }
  for (size_t i = 0; i < k; i++) chunk_release(s->p, s->batch[i]);
}

/* Counts and releases whatever is still queued when the thread gives up. Called with s->mu
 * held. */
static void slot_drop_rest(pc_slot *s) {
  uint64_t spans = s->q_spans, chunks = s->q_len;
  while (s->q_len) chunk_release(s->p, q_pop(s));
  pc_counter_add(s->dropped, spans);
  pc_gauge_add(s->queue_spans, -(int64_t)spans);
  pc_gauge_add(s->queue_batches, -(int64_t)chunks);
  s->dropped_at_close += spans;
}

/* True when the thread should export now: a full batch, the oldest entry's timeout passed, or
 * the queue is closing (no more input will come to fill a batch). Sets *due otherwise. */
static bool batch_ready(const pc_slot *s, uint64_t now, uint64_t *due) {
  if (s->q_spans >= batch_size(s) || s->closing) return true;
  *due = s->q[s->q_head].enq_ns + (uint64_t)s->cfg.batch_timeout_ms * 1000000u;
  return now >= *due;
}

static void slot_tick(pc_slot *s, uint64_t *last_tick) {
  uint64_t now = pf_mono_ns();
  if (!s->exp->tick || now - *last_tick < TICK_NS) return;
  *last_tick = now;
  s->exp->tick(s->exp);
}

/* Waits (polling the cancel flag) until the predecessor's thread is done, then forgets it. */
static void wait_pred(pc_slot *s) {
  pc_slot *pred = s->pred;
  if (!pred) return;
  pthread_mutex_lock(&pred->mu);
  while (!pred->done && !atomic_load(&s->abort))
    wait_until(&pred->done_cv, &pred->mu, pf_mono_ns() + TICK_NS);
  pthread_mutex_unlock(&pred->mu);
  pthread_mutex_lock(&s->mu);
  s->pred = NULL;
  pthread_mutex_unlock(&s->mu);
}

static void *slot_main(void *arg) {
  pc_slot *s = arg;
  uint64_t last_tick = pf_mono_ns(), dropped = 0;
  wait_pred(s);
  pthread_mutex_lock(&s->mu);
  while (!atomic_load(&s->abort)) {
    uint64_t now = pf_mono_ns(), due = 0, spans;
    if (!s->q_len) {
      if (s->closing) break;
      wait_until(&s->wake, &s->mu, now + TICK_NS);
      if (s->q_len || s->closing) continue;
      pthread_mutex_unlock(&s->mu);
      slot_tick(s, &last_tick);
      pthread_mutex_lock(&s->mu);
      continue;
    }
    if (s->closing && s->close_deadline_ns && now >= s->close_deadline_ns) break;
    if (!batch_ready(s, now, &due)) {
      wait_until(&s->wake, &s->mu, due);
      continue;
    }
    size_t k = take_batch(s, &spans);
    pthread_mutex_unlock(&s->mu);
    pc_gauge_add(s->queue_spans, -(int64_t)spans);
    pc_gauge_add(s->queue_batches, -(int64_t)k);
    slot_export(s, k, spans);
    slot_tick(s, &last_tick);
    pthread_mutex_lock(&s->mu);
  }
  if (s->q_len) slot_drop_rest(s);
  dropped = s->dropped_at_close; /* queued leftovers plus a canceled export */
  s->done = true;
  pthread_cond_broadcast(&s->done_cv);
  pthread_mutex_unlock(&s->mu);
  if (s->exp->tick) s->exp->tick(s->exp); /* flush what was written */
  if (dropped)
    pf_log(PF_LOG_WARN, "exporter %s: %llu spans not delivered by the drain deadline: dropped",
           s->cfg.name, (unsigned long long)dropped);
  return NULL;
}

/* ---- slots: build, close, free ---- */

static int default_factory(pc_exporter **out, const pc_exporter_cfg *cfg, void *arg) {
  (void)arg;
  switch (cfg->type) {
  case PC_EXPORTER_JSONL:
    return pc_jsonl_exporter_new(out, cfg);
  case PC_EXPORTER_OTLP:
    return pc_otlp_exporter_new(out, cfg);
  default:
    return PROFILIS_EINVAL;
  }
}

static void slot_free(pc_slot *s) {
  if (!s) return;
  if (s->exp) s->exp->destroy(s->exp);
  if (s->sm) pc_spanmetrics_free(s->sm);
  pthread_mutex_destroy(&s->mu);
  pthread_cond_destroy(&s->wake);
  pthread_cond_destroy(&s->done_cv);
  free(s->q);
  free(s->batch);
  cfg_free(&s->cfg);
  free(s);
}

/* Builds what the exporter needs: span metrics for prometheus, else the exporter, its batch
 * array and its thread. */
static int slot_start(pc_slot *s) {
  if (s->cfg.type == PC_EXPORTER_PROMETHEUS) return pc_spanmetrics_new(&s->sm, &s->cfg);
  int rc = s->p->factory(&s->exp, &s->cfg, s->p->factory_arg);
  if (rc) {
    s->exp = NULL;
    pf_log(PF_LOG_ERROR, "exporter %s: cannot start: %s", s->cfg.name, profilis_strerror(rc));
    return rc;
  }
  s->batch = malloc(BATCH_INIT_CAP * sizeof *s->batch);
  if (!s->batch) return PROFILIS_ENOMEM;
  s->batch_cap = BATCH_INIT_CAP;
  if (pthread_create(&s->thread, NULL, slot_main, s)) return PROFILIS_ENOMEM;
  pthread_setname_np(s->thread, "pc-export"); /* tells the threads apart in top -H, perf */
  s->started = true;
  return 0;
}

static int slot_new(pc_slot **out, pc_pipeline *p, const pc_exporter_cfg *cfg, pc_slot *pred) {
  pc_slot *s = calloc(1, sizeof *s);
  if (!s) return PROFILIS_ENOMEM;
  int rc = cfg_dup(&s->cfg, cfg);
  if (rc) {
    free(s);
    return rc;
  }
  s->p = p;
  s->pred = pred;
  pthread_mutex_init(&s->mu, NULL);
  rc = cond_init_mono(&s->wake);
  if (!rc) rc = cond_init_mono(&s->done_cv);
  if (!rc) {
    slot_series(s);
    rc = slot_start(s);
  }
  if (rc) {
    slot_free(s);
    s = NULL;
  }
  *out = s;
  return rc;
}

/* Tells the thread to finish its queue and exit (give up at deadline_ns when not 0). */
static void slot_close(pc_slot *s, uint64_t deadline_ns) {
  pthread_mutex_lock(&s->mu);
  s->closing = true;
  s->close_deadline_ns = deadline_ns;
  pthread_cond_signal(&s->wake);
  pthread_mutex_unlock(&s->mu);
}

/* Waits for the thread until deadline_ns; then cancels it (the export in flight sees the
 * cancel flag) and joins. Returns the spans dropped. */
static uint64_t slot_finish(pc_slot *s, uint64_t deadline_ns) {
  if (!s->started || s->joined) return 0;
  pthread_mutex_lock(&s->mu);
  while (!s->done && pf_mono_ns() < deadline_ns) wait_until(&s->done_cv, &s->mu, deadline_ns);
  if (!s->done) {
    atomic_store(&s->abort, 1);
    pthread_cond_signal(&s->wake);
  }
  pthread_mutex_unlock(&s->mu);
  pthread_join(s->thread, NULL);
  s->joined = true;
  return s->dropped_at_close;
}

static bool slot_is_done(pc_slot *s) {
  pthread_mutex_lock(&s->mu);
  bool done = s->done;
  pthread_mutex_unlock(&s->mu);
  return done;
}

/* ---- routes ---- */

static void route_free(pc_route *r) {
  if (!r) return;
  free(r->slots);
  free(r);
}

static pc_slot *route_find(const pc_route *r, const pc_exporter_cfg *cfg) {
  for (size_t i = 0; r && i < r->n; i++)
    if (cfg_same(&r->slots[i]->cfg, cfg)) return r->slots[i];
  return NULL;
}

static bool route_has(const pc_route *r, const pc_slot *s) {
  for (size_t i = 0; r && i < r->n; i++)
    if (r->slots[i] == s) return true;
  return false;
}

/* Stops the slots a failed build started, which have seen no data (a deadline of 0 cancels
 * at once, even a thread still waiting for its predecessor). */
static void route_discard_new(pc_route *r, const pc_route *old) {
  for (size_t i = 0; i < r->n; i++) {
    pc_slot *s = r->slots[i];
    if (route_has(old, s)) continue;
    slot_close(s, 0);
    slot_finish(s, 0);
    slot_free(s);
  }
  route_free(r);
}

/* The slot a new one of this name must wait for: the old route's, else the newest retired one
 * (the retired list is newest first; a done one is harmless to wait for). */
static pc_slot *predecessor(pc_pipeline *p, const pc_route *old, const char *name) {
  for (size_t i = 0; old && i < old->n; i++)
    if (same_str(old->slots[i]->cfg.name, name)) return old->slots[i];
  for (pc_slot *s = p->retired; s; s = s->next_retired)
    if (same_str(s->cfg.name, name)) return s;
  return NULL;
}

/* Adds the slot for one route entry: reused from `old` when its settings are unchanged. */
static int route_add(pc_pipeline *p, pc_route *r, const pc_route *old, const pc_config *cfg,
                     const char *name) {
  const pc_exporter_cfg *ec = NULL;
  for (size_t i = 0; !ec && i < cfg->n_exporters; i++)
    if (same_str(cfg->exporters[i].name, name)) ec = &cfg->exporters[i];
  if (!ec) {
    pf_log(PF_LOG_ERROR, "pipeline: route names exporter %s, which is not configured", name);
    return PROFILIS_EINVAL;
  }
  for (size_t i = 0; i < r->n; i++)
    if (!strcmp(r->slots[i]->cfg.name, ec->name)) return 0; /* listed twice: once is enough */
  pc_slot *s = route_find(old, ec);
  int rc = s ? 0 : slot_new(&s, p, ec, predecessor(p, old, ec->name));
  if (rc) return rc;
  r->slots[r->n++] = s;
  if (s->cfg.type == PC_EXPORTER_PROMETHEUS && !r->prom) r->prom = s;
  if (s->cfg.type == PC_EXPORTER_OTLP) r->keep_raw = true;
  return 0;
}

static int route_build(pc_pipeline *p, const pc_config *cfg, const pc_route *old, pc_route **out) {
  *out = NULL;
  pc_route *r = calloc(1, sizeof *r);
  if (!r) return PROFILIS_ENOMEM;
  r->slots = calloc(cfg->n_route ? cfg->n_route : 1, sizeof *r->slots);
  if (!r->slots) {
    free(r);
    return PROFILIS_ENOMEM;
  }
  int rc = 0;
  for (size_t i = 0; !rc && i < cfg->n_route; i++) rc = route_add(p, r, old, cfg, cfg->route[i]);
  if (rc) {
    route_discard_new(r, old);
    return rc;
  }
  *out = r;
  return 0;
}

static void apply_limits(pc_pipeline *p, const pc_config *cfg) {
  atomic_store(&p->limit, cfg->memory_limit);
  atomic_store(&p->retry_after_ms, cfg->retry_after_ms);
  atomic_store(&p->drain_timeout_ms, cfg->drain_timeout_ms);
  pc_gauge_set(p->budget_limit_g, (int64_t)cfg->memory_limit);
}

/* ---- public ---- */

int pc_pipeline_new_with(pc_pipeline **out, const pc_config *cfg, pc_metrics *metrics,
                         pc_exporter_factory factory, void *factory_arg) {
  *out = NULL;
  pc_pipeline *p = calloc(1, sizeof *p);
  if (!p) return PROFILIS_ENOMEM;
  pthread_rwlockattr_t ra;
  pthread_rwlockattr_init(&ra);
  /* Receivers submit all the time: a reader-preferring lock could starve a reload forever. */
  pthread_rwlockattr_setkind_np(&ra, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
  pthread_rwlock_init(&p->lock, &ra);
  pthread_rwlockattr_destroy(&ra);
  pthread_mutex_init(&p->ctl, NULL);
  p->m = metrics;
  p->factory = factory ? factory : default_factory;
  p->factory_arg = factory_arg;
  pipeline_series(p);
  apply_limits(p, cfg);
  int rc = route_build(p, cfg, NULL, &p->route);
  if (rc) {
    pthread_rwlock_destroy(&p->lock);
    pthread_mutex_destroy(&p->ctl);
    free(p);
    return rc;
  }
  atomic_store(&p->keep_raw, p->route->keep_raw);
  *out = p;
  return 0;
}

int pc_pipeline_new(pc_pipeline **out, const pc_config *cfg, pc_metrics *metrics) {
  return pc_pipeline_new_with(out, cfg, metrics, NULL, NULL);
}

static void refuse(pc_pipeline *p, pc_verdict v, uint64_t spans, pc_admission *adm) {
  adm->verdict = v;
  adm->retry_after_ms = atomic_load(&p->retry_after_ms);
  pc_counter_add(v == PC_REFUSED_BUDGET ? p->refused_req_budget : p->refused_req_draining, 1);
  pc_counter_add(v == PC_REFUSED_BUDGET ? p->refused_budget : p->refused_draining, spans);
}

int pc_pipeline_admit(pc_pipeline *p, uint64_t wire_bytes, pc_admission *adm) {
  *adm = (pc_admission){.verdict = PC_ACCEPTED};
  pthread_rwlock_rdlock(&p->lock);
  bool draining = p->draining;
  pthread_rwlock_unlock(&p->lock);
  uint64_t limit = atomic_load(&p->limit), used = atomic_load(&p->used);
  if (draining)
    refuse(p, PC_REFUSED_DRAINING, 0, adm);
  else if (wire_bytes > limit || used > limit - wire_bytes)
    refuse(p, PC_REFUSED_BUDGET, 0, adm);
  return 0;
}

/* Feeds span metrics and queues the chunks on every exporter of the route. Read lock held. */
static void route_dispatch(pc_pipeline *p, const pc_route *r, pc_chunk **chunks, size_t n,
                           uint64_t spans) {
  uint64_t now = pf_mono_ns();
  for (size_t i = 0; i < r->n; i++) {
    pc_slot *s = r->slots[i];
    if (s->exp) {
      slot_enqueue(s, chunks, n, now);
    } else if (s->sm) { /* prometheus: observing the spans is all its export */
      for (size_t j = 0; j < n; j++) pc_spanmetrics_observe(s->sm, chunks[j]);
      pc_counter_add(s->sent, spans);
    }
  }
}

int pc_pipeline_submit(pc_pipeline *p, pc_chunk **chunks, size_t n, pc_admission *adm) {
  *adm = (pc_admission){.verdict = PC_ACCEPTED};
  uint64_t bytes = 0, spans = 0;
  for (size_t i = 0; i < n; i++) {
    if (!chunks[i]->budget_bytes) chunks[i]->budget_bytes = pc_chunk_size(chunks[i]);
    bytes += chunks[i]->budget_bytes;
    spans += chunks[i]->n_spans;
  }
  pthread_rwlock_rdlock(&p->lock);
  if (p->draining) {
    refuse(p, PC_REFUSED_DRAINING, spans, adm);
  } else if (!budget_charge(p, bytes)) {
    refuse(p, PC_REFUSED_BUDGET, spans, adm);
  } else {
    route_dispatch(p, p->route, chunks, n, spans);
  }
  pthread_rwlock_unlock(&p->lock);
  if (adm->verdict == PC_ACCEPTED)
    for (size_t i = 0; i < n; i++) chunk_release(p, chunks[i]); /* the caller's reference */
  return 0;
}

bool pc_pipeline_keep_raw(const pc_pipeline *p) { return atomic_load(&p->keep_raw); }

uint64_t pc_pipeline_budget_used(const pc_pipeline *p) { return atomic_load(&p->used); }

uint64_t pc_pipeline_budget_limit(const pc_pipeline *p) { return atomic_load(&p->limit); }

struct pc_spanmetrics *pc_pipeline_spanmetrics(pc_pipeline *p) {
  pthread_rwlock_rdlock(&p->lock);
  pc_spanmetrics *sm = p->route && p->route->prom ? p->route->prom->sm : NULL;
  pthread_rwlock_unlock(&p->lock);
  return sm;
}

static bool is_pred_of(pc_slot *s, pc_slot *x) {
  pthread_mutex_lock(&x->mu);
  bool yes = x->pred == s;
  pthread_mutex_unlock(&x->mu);
  return yes;
}

/* True when a slot of the route or the retired list still waits on s. */
static bool slot_awaited(pc_pipeline *p, pc_slot *s) {
  for (size_t i = 0; p->route && i < p->route->n; i++)
    if (is_pred_of(s, p->route->slots[i])) return true;
  for (pc_slot *x = p->retired; x; x = x->next_retired)
    if (is_pred_of(s, x)) return true;
  return false;
}

/* Frees retired slots whose threads have finished. Span metrics of a retired prometheus slot
 * stay until pc_pipeline_free: the admin server may still be rendering them. */
static void reap_retired(pc_pipeline *p) {
  pc_slot **pp = &p->retired;
  while (*pp) {
    pc_slot *s = *pp;
    if (s->sm || (s->started && !slot_is_done(s)) || slot_awaited(p, s)) {
      pp = &s->next_retired;
      continue;
    }
    *pp = s->next_retired;
    slot_finish(s, UINT64_MAX);
    slot_free(s);
  }
}

/* Retires the slots of `old` that `r` does not keep: they finish their queues in the
 * background within the drain timeout. */
static size_t retire_replaced(pc_pipeline *p, const pc_route *old, const pc_route *r) {
  size_t n = 0;
  uint64_t deadline = pf_mono_ns() + (uint64_t)atomic_load(&p->drain_timeout_ms) * 1000000u;
  for (size_t i = 0; old && i < old->n; i++) {
    pc_slot *s = old->slots[i];
    if (route_has(r, s)) continue;
    if (s->started) slot_close(s, deadline);
    s->next_retired = p->retired;
    p->retired = s;
    n++;
  }
  return n;
}

int pc_pipeline_reload(pc_pipeline *p, const pc_config *cfg) {
  pthread_mutex_lock(&p->ctl);
  pc_route *r = NULL, *old = p->route;
  int rc = p->draining ? PROFILIS_ESHUTDOWN : route_build(p, cfg, old, &r);
  if (rc) goto out;
  size_t kept = 0;
  for (size_t i = 0; i < r->n; i++) kept += route_has(old, r->slots[i]);
  pthread_rwlock_wrlock(&p->lock);
  p->route = r;
  apply_limits(p, cfg);
  atomic_store(&p->keep_raw, r->keep_raw);
  pthread_rwlock_unlock(&p->lock);
  size_t retired = retire_replaced(p, old, r);
  route_free(old);
  reap_retired(p);
  pf_log(PF_LOG_INFO,
         "pipeline: configuration %s applied: %zu exporters kept, %zu started, %zu "
         "retiring after their queues empty",
         cfg->source ? cfg->source : "", kept, r->n - kept, retired);
out:
  pthread_mutex_unlock(&p->ctl);
  return rc;
}

/* Closes every slot (route and retired), waits until the deadline, cancels the rest. */
static uint64_t finish_all(pc_pipeline *p, uint64_t deadline) {
  pc_route *r = p->route;
  uint64_t dropped = 0;
  for (size_t i = 0; r && i < r->n; i++) slot_close(r->slots[i], 0);
  for (pc_slot *s = p->retired; s; s = s->next_retired) slot_close(s, 0);
  for (size_t i = 0; r && i < r->n; i++) dropped += slot_finish(r->slots[i], deadline);
  for (pc_slot *s = p->retired; s; s = s->next_retired) dropped += slot_finish(s, deadline);
  return dropped;
}

int pc_pipeline_drain(pc_pipeline *p, uint32_t timeout_ms) {
  pthread_mutex_lock(&p->ctl);
  uint64_t deadline = pf_mono_ns() + (uint64_t)timeout_ms * 1000000u;
  pthread_rwlock_wrlock(&p->lock); /* waits for submits in progress: their data is queued */
  bool first = !p->draining;
  p->draining = true;
  pthread_rwlock_unlock(&p->lock);
  uint64_t dropped = finish_all(p, deadline);
  pthread_mutex_unlock(&p->ctl);
  if (dropped)
    pf_log(PF_LOG_WARN, "pipeline: drain deadline (%u ms) passed: %llu spans dropped", timeout_ms,
           (unsigned long long)dropped);
  else if (first)
    pf_log(PF_LOG_INFO, "pipeline: drained");
  return dropped ? PROFILIS_ETIMEDOUT : 0;
}

void pc_pipeline_free(pc_pipeline *p) {
  if (!p) return;
  pc_pipeline_drain(p, 0); /* no-op when drained already; else whatever is queued is dropped */
  for (size_t i = 0; p->route && i < p->route->n; i++) slot_free(p->route->slots[i]);
  route_free(p->route);
  while (p->retired) {
    pc_slot *s = p->retired;
    p->retired = s->next_retired;
    slot_free(s);
  }
  pthread_rwlock_destroy(&p->lock);
  pthread_mutex_destroy(&p->ctl);
  free(p);
}
