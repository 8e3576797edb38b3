/* The pipeline between receivers and exporters. submit charges the memory budget (one CAS, all
 * or nothing), feeds span metrics and queues a chunk reference per exporter under the route's
 * read lock, so a reload (write lock) swaps whole routes between submits. Each exporter has a
 * slot: a growable ring of references (the budget bounds it) and a thread that batches by span
 * count or age, exports with a deadline and drops its references; the last one returns the
 * chunk's bytes. Drain waits until its deadline, then cancels and counts leftovers as dropped. */
#define _GNU_SOURCE
#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pc_exporter.h"
#include "pc_pipeline.h"
#include "pc_resilient.h"
#include "pc_sampler.h"
#include "pc_spanmetrics.h"
#include "pc_tenancy.h"
#include "json_write.h"
#include "pf_log.h"
#include "profilis/common.h"

#define TICK_NS 100000000ull       /* an exporter's tick() runs at most this often */
#define IDLE_WAIT_NS 1000000000ull /* an idle exporter thread looks around this often */
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
  pc_exporter_cfg cfg; /* deep copy (${tenant} expanded): the exporter keeps pointers into it */
  char tenant[PC_TENANT_MAX + 1]; /* of a templated exporter's instance; "" when shared */
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
  bool early;                 /* new spans came in the last quarter of the oldest's timeout */
  bool closing;               /* no more input: finish the queue, then exit */
  bool done;                  /* the thread has exited */
  uint64_t close_deadline_ns; /* retired slots give up here (0 = no limit) */
  uint64_t dropped_at_close;  /* spans still queued when the thread gave up */
  atomic_int abort;           /* stop now; cancels the export in flight */
  pc_chunk **batch;           /* the thread's batch array */
  size_t batch_cap;
  pc_series *sent, *failed, *rejected, *dropped, *queue_spans, *queue_batches;
  bool resilient; /* exp is a pc_resilient wrapper (breaker, durable queue) */
  /* The retired slot of the same name this one replaced: it exports nothing before pred is
   * done, so one name never has two writers (e.g. the same JSONL file). Cleared under mu by
   * this slot's thread once it no longer looks at pred; pred is not freed before that. */
  pc_slot *pred;
  pc_slot *next_retired;
};

/* Why a tenant's spans were refused: metric label, and the verdict it answers with. */
#define REFUSAL_MAP(X)                                                                             \
  X(UNAUTHENTICATED, "unauthenticated", PC_REFUSED_UNAUTHENTICATED)                                \
  X(FORBIDDEN, "cross_tenant", PC_REFUSED_FORBIDDEN)                                               \
  X(RATE, "rate_limited", PC_REFUSED_RATE)                                                         \
  X(QUEUE_FULL, "queue_full", PC_REFUSED_QUEUE_FULL)                                               \
  X(BUDGET, "memory_budget", PC_REFUSED_BUDGET)                                                    \
  X(DRAINING, "draining", PC_REFUSED_DRAINING)

typedef enum refusal {
#define REFUSAL_ENUM(e, label, verdict) R_##e,
  REFUSAL_MAP(REFUSAL_ENUM)
#undef REFUSAL_ENUM
      R_COUNT
} refusal;

/* The per-tenant series (tenant "" = requests whose tenant is unknown, or no tenants). */
typedef struct tenant_series {
  pc_series *accepted;
  pc_series *refused_spans[R_COUNT], *refused_requests[R_COUNT];
} tenant_series;

/* One tenant's view of the route; without tenants, the only one (id ""). */
typedef struct pc_troute {
  char id[PC_TENANT_MAX + 1];
  pc_slot **slots; /* exporters with a thread */
  size_t n;
  pc_slot *prom; /* the span metrics exporter, or NULL */
  bool sampled;  /* its spans wait in the sampler's decision window */
  tenant_series ts;
} pc_troute;

typedef struct pc_route {
  pc_slot **all; /* every distinct slot of every tenant, prometheus included */
  size_t n_all;
  pc_troute *tr; /* in tenancy order: tr[i] is tenant i */
  size_t n_tr;
  pc_tenancy *tenancy;
  char *tenant_header; /* tenancy.header, or NULL without tenants */
  bool keep_raw;
} pc_route;

struct pc_pipeline {
  pthread_rwlock_t lock; /* submit: read; swapping the route and draining: write */
  pthread_mutex_t ctl;   /* serializes reload, drain and free */
  pc_route *route;
  bool draining;
  pc_slot *retired; /* replaced slots finishing their queues; freed by reload, drain, free */
  _Atomic uint64_t used, limit;
  _Atomic uint64_t used_peak; /* the most `used` reached since memory was last given back */
  /* since when the budget has held less than an eighth of used_peak (0: it has not) */
  uint64_t trim_quiet_ns;
  pthread_mutex_t trim_mu; /* guards trim_quiet_ns */
  _Atomic uint32_t retry_after_ms, drain_timeout_ms;
  atomic_bool keep_raw;
  pc_metrics *m;
  pc_exporter_factory factory;
  void *factory_arg;
  pc_series *budget_limit_g, *budget_used_g;
  pc_series *refused_budget, *refused_draining, *refused_req_budget, *refused_req_draining;
  tenant_series unknown; /* refusals before a tenant is known */
  pc_series *dropped_removed; /* sampled spans whose tenant a reload removed */
  /* adaptive sampling: the sampler (NULL until a tenant samples), its lock, and its stage: a
   * thread that takes the sampled tenants' chunks from a queue (so the receivers only hand
   * them over) and ticks the sampler every TICK_NS */
  pc_sampler *sampler;
  pthread_mutex_t smu; /* order: p->lock (read), then smu */
  pthread_t tick_thread;
  bool tick_started;
  pthread_mutex_t tick_mu; /* guards the queue and tick_stop */
  pthread_cond_t tick_cv;
  bool tick_stop;
  pc_chunk *sq_head, *sq_tail; /* queued for the sampler, each holding a reference */
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

/* Raises used_peak to `used` (a relaxed load in the common case: no new peak). */
static void note_peak(pc_pipeline *p, uint64_t used) {
  uint64_t peak = atomic_load_explicit(&p->used_peak, memory_order_relaxed);
  while (used > peak &&
         !atomic_compare_exchange_weak_explicit(&p->used_peak, &peak, used, memory_order_relaxed,
                                                memory_order_relaxed)) {
  }
}

static bool budget_charge(pc_pipeline *p, uint64_t bytes) {
  uint64_t limit = atomic_load(&p->limit), used = atomic_load(&p->used);
  do {
    if (bytes > limit || used > limit - bytes) return false;
  } while (!atomic_compare_exchange_weak(&p->used, &used, used + bytes));
  note_peak(p, used + bytes);
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

static bool same_str(const char *a, const char *b) {
  if (!a || !b) return a == b;
  return strcmp(a, b) == 0;
}

static bool same_tls(const pc_tls_cfg *a, const pc_tls_cfg *b) {
  return same_str(a->cert_file, b->cert_file) && same_str(a->key_file, b->key_file) &&
         same_str(a->client_ca_file, b->client_ca_file) && same_str(a->ca_file, b->ca_file) &&
         a->insecure == b->insecure;
}

static bool same_lists(const pc_exporter_cfg *a, const pc_exporter_cfg *b) {
  if (a->n_headers != b->n_headers || a->n_buckets != b->n_buckets ||
      a->n_lb_static != b->n_lb_static)
    return false;
  for (size_t i = 0; i < a->n_lb_static; i++)
    if (!same_str(a->lb_static[i], b->lb_static[i])) return false;
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
         a->preallocate_bytes == b->preallocate_bytes &&
         a->flush_interval_ms == b->flush_interval_ms && a->fsync == b->fsync &&
         a->gzip == b->gzip && a->retry_initial_ms == b->retry_initial_ms &&
         a->retry_max_ms == b->retry_max_ms && a->retry_max_elapsed_ms == b->retry_max_elapsed_ms &&
         a->max_series == b->max_series && same_str(a->name, b->name) &&
         a->breaker_enabled == b->breaker_enabled && a->breaker_failures == b->breaker_failures &&
         a->breaker_failure_ratio == b->breaker_failure_ratio &&
         a->breaker_min_calls == b->breaker_min_calls &&
         a->breaker_window_ms == b->breaker_window_ms && a->breaker_open_ms == b->breaker_open_ms &&
         a->breaker_open_max_ms == b->breaker_open_max_ms &&
         a->breaker_jitter == b->breaker_jitter && a->breaker_probes == b->breaker_probes &&
         a->breaker_close_after == b->breaker_close_after &&
         a->queue_enabled == b->queue_enabled && a->queue_max_bytes == b->queue_max_bytes &&
         a->queue_full == b->queue_full && a->queue_fsync == b->queue_fsync &&
         same_str(a->queue_directory, b->queue_directory) &&
         same_str(a->lb_hostname, b->lb_hostname) && a->lb_port == b->lb_port &&
         a->lb_interval_ms == b->lb_interval_ms &&
         same_str(a->path, b->path) && same_str(a->endpoint, b->endpoint) &&
         same_tls(&a->tls, &b->tls) && same_lists(a, b);
}

/* ---- metrics ---- */

static pc_series *series(pc_pipeline *p, pc_metric_kind kind, const char *name, const char *help,
                         const char *labels) {
  return p->m ? pc_metrics_series(p->m, kind, name, help, labels) : NULL;
}

static void slot_series(pc_slot *s) {
  char v[256], t[PC_TENANT_MAX + 1], labels[600];
  pc_label_escape(v, sizeof v, s->cfg.name, strlen(s->cfg.name));
  pc_label_escape(t, sizeof t, s->tenant, strlen(s->tenant));
  snprintf(labels, sizeof labels, "exporter=\"%s\",tenant=\"%s\"", v, t);
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
                      "Spans given up: still queued when the drain deadline passed, or pushed out "
                      "of a full durable queue (drop_oldest).",
                      labels);
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
  /* q_len <= q_cap: nothing is copied while q_cap is still 0 */
  // NOLINTNEXTLINE(clang-analyzer-core.DivideZero)
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
   * full batch. A partial batch does not change when the oldest entry times out; but spans
   * that arrive in the last quarter of its wait take it with them now. The thread would wake
   * by its timer soon anyway, and a timer wake-up costs more than this one (~50 us of CPU on
   * a virtual machine against ~10), so at a steady low rate every batch leaves this way. */
  uint64_t timeout_ns = (uint64_t)s->cfg.batch_timeout_ms * 1000000u;
  /* another receiver's `now` may be later than this one */
  uint64_t oldest = was_empty ? now : s->q[s->q_head].enq_ns;
  bool late = !s->early && now > oldest && now - oldest >= timeout_ns - timeout_ns / 4;
  if (added && late) s->early = true;
  bool wake = added && (was_empty || late || s->q_spans >= batch_size(s));
  pthread_mutex_unlock(&s->mu);
  /* Signalled after the unlock, so that the thread does not wake only to wait for the mutex
   * (a second wake-up, and this thread preempted by it). The slot outlives the call: callers
   * hold p->lock, and slots are freed under its write side. */
  if (wake) pthread_cond_signal(&s->wake);
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
  s->early = false;
  while (s->q_len && k < s->batch_cap) {
    uint32_t next = s->q[s->q_head].c->n_spans;
    if (k && *spans + next > max) break;
    s->batch[k++] = q_pop(s);
    *spans += next;
  }
  if (s->q_len && k == s->batch_cap) { /* grow for next time; this batch goes out as it is */
    /* batch_cap starts at BATCH_INIT_CAP (slot_new), so this never asks for 0 bytes */
    // NOLINTNEXTLINE(clang-analyzer-optin.portability.UnixAPI)
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
  if ((c->type == PC_EXPORTER_OTLP || c->type == PC_EXPORTER_LOADBALANCING) &&
      c->retry_max_elapsed_ms > ms)
    ms = c->retry_max_elapsed_ms;
  return ms;
}

/* Exports one batch, counts the outcome per span and drops the batch's references. */
static void slot_export(pc_slot *s, size_t k, uint64_t spans) {
  static pf_ratelimit rl_fail, rl_rej;
  pf_deadline dl = {.at_mono_ns = pf_mono_ns() + export_budget_ms(&s->cfg) * 1000000u,
                    .cancel = &s->abort};
  uint64_t rejected = 0;
  int rc = s->exp->export_chunks(s->exp, s->batch, k, &dl, &rejected);
  if (s->exp->self_counting) {
    /* the wrapper counted every span (delivered, failed, or waiting on disk) */
  } else if (rc == 0) {
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

/* True when the thread should export now: a full batch, the oldest entry's timeout passed (or
 * nearly: early), or the queue is closing (no more input will come to fill a batch). Sets
 * *due otherwise. */
static bool batch_ready(const pc_slot *s, uint64_t now, uint64_t *due) {
  if (s->q_spans >= batch_size(s) || s->closing || s->early) return true;
  *due = s->q[s->q_head].enq_ns + (uint64_t)s->cfg.batch_timeout_ms * 1000000u;
  return now >= *due;
}

/* Once a burst is over (the budget held at least TRIM_AFTER, then less than an eighth of that
 * for TRIM_QUIET_NS), the free memory it left inside the allocator's heaps goes back to the
 * kernel: the receiver keeps its heap for steady traffic (main.c), so without this RSS would
 * stay at the burst's peak. Not sooner: during a burst the budget dips whenever the exporters
 * catch up, and trimming then costs the receivers their warm memory. Called by the exporter
 * threads after each export and once a second while idle, and by the sampler thread on its
 * ticks, holding no lock: a trim can take milliseconds. */
#define TRIM_AFTER (8u << 20)
#define TRIM_QUIET_NS 1000000000ull
static void release_after_burst(pc_pipeline *p, uint64_t now) {
  if (pthread_mutex_trylock(&p->trim_mu)) return; /* another thread is at it */
  uint64_t used = atomic_load(&p->used), peak = atomic_load(&p->used_peak);
  if (peak < TRIM_AFTER || used > peak / 8) {
    p->trim_quiet_ns = 0;
  } else if (!p->trim_quiet_ns) {
    p->trim_quiet_ns = now;
  } else if (now - p->trim_quiet_ns >= TRIM_QUIET_NS) {
    malloc_trim(0);
    atomic_store(&p->used_peak, used); /* a charge racing this one only lowers the next peak */
    p->trim_quiet_ns = 0;
  }
  pthread_mutex_unlock(&p->trim_mu);
}

/* When the exporter's tick() is next due: when it has work (next_tick), but not sooner than
 * TICK_NS after the last call. */
static uint64_t tick_due(const pc_slot *s, uint64_t last_tick) {
  if (!s->exp->tick) return PC_TICK_NONE;
  uint64_t want = s->exp->next_tick ? s->exp->next_tick(s->exp) : 0;
  return want > last_tick + TICK_NS ? want : last_tick + TICK_NS;
}

/* Calls tick() if it is due. The thread's own state; s->mu is not held. */
static void slot_tick(pc_slot *s, uint64_t *last_tick, uint64_t *next_tick) {
  uint64_t now = pf_mono_ns();
  if (now < *next_tick) return;
  *last_tick = now;
  s->exp->tick(s->exp);
  *next_tick = tick_due(s, *last_tick);
}

static uint64_t min_ns(uint64_t a, uint64_t b) { return a < b ? a : b; }

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
  wait_pred(s);
  uint64_t last_tick = pf_mono_ns(), dropped = 0, last_idle = last_tick;
  uint64_t next_tick = tick_due(s, last_tick);
  pthread_mutex_lock(&s->mu);
  while (!atomic_load(&s->abort)) {
    uint64_t now = pf_mono_ns(), due = 0, spans;
    if (s->q_len && s->closing && s->close_deadline_ns && now >= s->close_deadline_ns) break;
    if (!s->q_len && s->closing) break;
    if (!s->q_len || !batch_ready(s, now, &due)) {
      if (now >= next_tick) { /* the exporter's own work, while no batch is ready */
        pthread_mutex_unlock(&s->mu);
        slot_tick(s, &last_tick, &next_tick);
        pthread_mutex_lock(&s->mu);
      } else if (!s->q_len && now - last_idle >= IDLE_WAIT_NS) {
        last_idle = now;
        pthread_mutex_unlock(&s->mu);
        release_after_burst(s->p, now);
        pthread_mutex_lock(&s->mu);
      } else {
        wait_until(&s->wake, &s->mu, min_ns(s->q_len ? due : now + IDLE_WAIT_NS, next_tick));
      }
      continue;
    }
    size_t k = take_batch(s, &spans);
    pthread_mutex_unlock(&s->mu);
    pc_gauge_add(s->queue_spans, -(int64_t)spans);
    pc_gauge_add(s->queue_batches, -(int64_t)k);
    slot_export(s, k, spans);
    last_idle = pf_mono_ns();
    release_after_burst(s->p, last_idle);
    next_tick = tick_due(s, last_tick); /* the export may have left work for tick() */
    slot_tick(s, &last_tick, &next_tick);
    pthread_mutex_lock(&s->mu);
  }
  if (s->q_len) slot_drop_rest(s);
  dropped = s->dropped_at_close; /* queued leftovers plus a canceled export */
  pthread_mutex_unlock(&s->mu);
  if (s->exp->finish) s->exp->finish(s->exp); /* e.g. the durable queue's directory lock */
  pthread_mutex_lock(&s->mu);
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
  case PC_EXPORTER_LOADBALANCING:
    return pc_lb_exporter_new(out, cfg);
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
  pc_exporter_cfg_free(&s->cfg);
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
  if (s->cfg.breaker_enabled || s->cfg.queue_enabled) {
    pc_export_counters c = {s->sent, s->failed, s->rejected, s->dropped};
    pc_exporter *inner = s->exp;
    s->exp = NULL;
    rc = pc_resilient_new(&s->exp, inner, &s->cfg, s->tenant, s->p->m, &c);
    if (rc) return rc;
    s->resilient = true;
  }
  s->batch = malloc(BATCH_INIT_CAP * sizeof *s->batch);
  if (!s->batch) return PROFILIS_ENOMEM;
  s->batch_cap = BATCH_INIT_CAP;
  if (pthread_create(&s->thread, NULL, slot_main, s)) return PROFILIS_ENOMEM;
  pthread_setname_np(s->thread, "pc-export"); /* tells the threads apart in top -H, perf */
  s->started = true;
  return 0;
}

/* A slot running cfg (already expanded for tenant; the slot takes it over, also on error). */
static int slot_new(pc_slot **out, pc_pipeline *p, pc_exporter_cfg *cfg, const char *tenant,
                    pc_slot *pred) {
  pc_slot *s = calloc(1, sizeof *s);
  if (!s) {
    pc_exporter_cfg_free(cfg);
    return PROFILIS_ENOMEM;
  }
  s->cfg = *cfg;
  memset(cfg, 0, sizeof *cfg);
  snprintf(s->tenant, sizeof s->tenant, "%s", tenant ? tenant : "");
  int rc = 0;
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
  /* s comes from a route's all[], which holds only slots route_slot_for stored (never NULL) */
  pthread_mutex_lock(&s->mu); // NOLINT(clang-analyzer-core.NonNullParamChecker)
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

/* ---- per-tenant series ---- */

static void tenant_series_init(pc_pipeline *p, tenant_series *ts, const char *tenant) {
  static const char *const labels[R_COUNT] = {
#define REFUSAL_LABEL(e, label, verdict) label,
      REFUSAL_MAP(REFUSAL_LABEL)
#undef REFUSAL_LABEL
  };
  char t[PC_TENANT_MAX + 1], l[PC_TENANT_MAX + 64];
  pc_label_escape(t, sizeof t, tenant, strlen(tenant));
  snprintf(l, sizeof l, "tenant=\"%s\"", t);
  ts->accepted = series(p, PC_COUNTER, "profilis_tenant_accepted_spans_total",
                        "Spans accepted per tenant (after authentication, rate limits and the "
                        "memory budget; before sampling).",
                        l);
  for (int r = 0; r < R_COUNT; r++) {
    snprintf(l, sizeof l, "tenant=\"%s\",reason=\"%s\"", t, labels[r]);
    ts->refused_spans[r] = series(p, PC_COUNTER, "profilis_tenant_refused_spans_total",
                                  "Decoded spans refused per tenant, by reason (tenant \"\": "
                                  "not recognised).",
                                  l);
    ts->refused_requests[r] =
        series(p, PC_COUNTER, "profilis_tenant_refused_requests_total",
               "Requests refused per tenant, by reason (tenant \"\": not recognised).", l);
  }
}

/* ---- routes ---- */

static void route_free(pc_route *r) {
  if (!r) return;
  for (size_t i = 0; i < r->n_tr; i++) free(r->tr[i].slots);
  free(r->tr);
  free(r->all);
  pc_tenancy_free(r->tenancy);
  free(r->tenant_header);
  free(r);
}

static bool route_has(const pc_route *r, const pc_slot *s) {
  for (size_t i = 0; r && i < r->n_all; i++)
    if (r->all[i] == s) return true;
  return false;
}

/* The slot of this name and instance tenant in r, or NULL. */
static pc_slot *route_slot(const pc_route *r, const char *name, const char *tenant) {
  for (size_t i = 0; r && i < r->n_all; i++)
    /* all[] holds only the slots route_slot_for stored, never NULL */
    // NOLINTNEXTLINE(clang-analyzer-core.NullDereference)
    if (!strcmp(r->all[i]->cfg.name, name) && !strcmp(r->all[i]->tenant, tenant))
      return r->all[i];
  return NULL;
}

/* Stops the slots a failed build started, which have seen no data (a deadline of 0 cancels
 * at once, even a thread still waiting for its predecessor). */
static void route_discard_new(pc_route *r, const pc_route *old) {
  for (size_t i = 0; i < r->n_all; i++) {
    pc_slot *s = r->all[i];
    if (route_has(old, s)) continue;
    slot_close(s, 0);
    slot_finish(s, 0);
    slot_free(s);
  }
  route_free(r);
}

/* The slot a new one of this name and tenant must wait for: the old route's, else the newest
 * retired one (the retired list is newest first; a done one is harmless to wait for). */
static pc_slot *predecessor(pc_pipeline *p, const pc_route *old, const char *name,
                            const char *tenant) {
  pc_slot *s = route_slot(old, name, tenant);
  if (s) return s;
  for (s = p->retired; s; s = s->next_retired)
    if (same_str(s->cfg.name, name) && !strcmp(s->tenant, tenant)) return s;
  return NULL;
}

/* The slot of exporter ec for tenant (instance "" unless ec is templated): already in r, kept
 * from old when its settings are unchanged, or new. */
static int route_slot_for(pc_pipeline *p, pc_route *r, const pc_route *old,
                          const pc_exporter_cfg *ec, const char *tenant, pc_slot **out) {
  const char *inst = ec->templated ? tenant : "";
  pc_slot *s = route_slot(r, ec->name, inst);
  if (s) return *out = s, 0;
  pc_exporter_cfg x;
  int rc = pc_exporter_cfg_expand(&x, ec, ec->templated ? tenant : NULL);
  if (rc) return rc;
  s = route_slot(old, ec->name, inst);
  if (s && cfg_same(&s->cfg, &x)) {
    pc_exporter_cfg_free(&x);
  } else {
    rc = slot_new(&s, p, &x, inst, predecessor(p, old, ec->name, inst));
    if (rc) return rc;
  }
  r->all[r->n_all++] = s;
  if (s->cfg.type == PC_EXPORTER_OTLP || s->cfg.type == PC_EXPORTER_LOADBALANCING)
    r->keep_raw = true; /* unchanged chunks are forwarded as they arrived */
  *out = s;
  return 0;
}

/* Fills one tenant's view from its list of exporter names (checked by the config). */
static int troute_build(pc_pipeline *p, pc_route *r, const pc_route *old, const pc_config *cfg,
                        pc_troute *t, char *const *names, size_t n) {
  t->slots = calloc(n ? n : 1, sizeof *t->slots);
  if (!t->slots) return PROFILIS_ENOMEM;
  for (size_t i = 0; i < n; i++) {
    const pc_exporter_cfg *ec = pc_config_exporter(cfg, names[i]);
    if (!ec) {
      pf_log(PF_LOG_ERROR, "pipeline: route names exporter %s, which is not configured",
             names[i]);
      return PROFILIS_EINVAL;
    }
    pc_slot *s = NULL;
    int rc = route_slot_for(p, r, old, ec, t->id, &s);
    if (rc) return rc;
    bool listed = s == t->prom;
    for (size_t j = 0; j < t->n; j++) listed |= t->slots[j] == s;
    if (listed) continue; /* named twice: once is enough */
    if (s->sm) {
      if (!t->prom) t->prom = s;
    } else {
      t->slots[t->n++] = s;
    }
  }
  tenant_series_init(p, &t->ts, t->id);
  return 0;
}

static int route_build(pc_pipeline *p, const pc_config *cfg, const pc_route *old, pc_route **out) {
  *out = NULL;
  pc_route *r = calloc(1, sizeof *r);
  if (!r) return PROFILIS_ENOMEM;
  size_t n_tr = cfg->n_tenants ? cfg->n_tenants : 1, slots = 0;
  for (size_t i = 0; i < n_tr; i++) {
    size_t n = 0;
    pc_config_route_of(cfg, cfg->n_tenants ? &cfg->tenants[i] : NULL, &n);
    slots += n;
  }
  int rc = pc_tenancy_new(&r->tenancy, cfg);
  r->tr = calloc(n_tr, sizeof *r->tr);
  r->all = calloc(slots ? slots : 1, sizeof *r->all);
  if (!rc && (!r->tr || !r->all)) rc = PROFILIS_ENOMEM;
  if (!rc && cfg->n_tenants && !(r->tenant_header = strdup(cfg->tenant_header)))
    rc = PROFILIS_ENOMEM;
  for (size_t i = 0; !rc && i < n_tr; i++) {
    const pc_tenant_cfg *tc = cfg->n_tenants ? &cfg->tenants[i] : NULL;
    size_t n = 0;
    char *const *names = pc_config_route_of(cfg, tc, &n);
    r->n_tr++;
    snprintf(r->tr[i].id, sizeof r->tr[i].id, "%s", tc ? tc->id : "");
    rc = troute_build(p, r, old, cfg, &r->tr[i], names, n);
  }
  if (rc) {
    if (r->all) route_discard_new(r, old);
    else route_free(r);
    return rc;
  }
  *out = r;
  return 0;
}

/* The tenant's view of a chunk's tenant, or NULL (its tenant was removed). */
static pc_troute *troute_of(const pc_route *r, const char *tenant) {
  if (!pc_tenancy_enabled(r->tenancy)) return &r->tr[0];
  int i = pc_tenancy_find(r->tenancy, tenant, strlen(tenant));
  return i >= 0 ? &r->tr[i] : NULL;
}

static void apply_limits(pc_pipeline *p, const pc_config *cfg) {
  atomic_store(&p->limit, cfg->memory_limit);
  atomic_store(&p->retry_after_ms, cfg->retry_after_ms);
  atomic_store(&p->drain_timeout_ms, cfg->drain_timeout_ms);
  pc_gauge_set(p->budget_limit_g, (int64_t)cfg->memory_limit);
}

/* ---- sampling ---- */

/* The sampler's view of the configuration; rules point into cfg. Returns 0 or ENOMEM. */
static int sampler_cfg(const pc_config *cfg, pc_sampler_cfg *sc, pc_sample_policy **pols,
                       pc_sample_rule **rules) {
  pc_sampler_cfg_defaults(sc);
  sc->window_ns = (uint64_t)cfg->sampling_wait_ms * 1000000u;
  sc->max_traces = cfg->sampling_max_traces;
  sc->max_bytes = cfg->sampling_max_bytes;
  sc->decided_cache = cfg->sampling_decided_cache;
  sc->adjust_ns = (uint64_t)cfg->sampling_adjust_ms * 1000000u;
  sc->load_start = cfg->sampling_load_start;
  sc->load_floor = cfg->sampling_load_floor;
  size_t n_rules = 0;
  for (size_t i = 0; i < cfg->n_tenants; i++) n_rules += cfg->tenants[i].n_rules;
  *pols = calloc(cfg->n_tenants ? cfg->n_tenants : 1, sizeof **pols);
  *rules = calloc(n_rules ? n_rules : 1, sizeof **rules);
  if (!*pols || !*rules) return PROFILIS_ENOMEM;
  pc_sample_rule *ru = *rules;
  for (size_t i = 0; i < cfg->n_tenants; i++) {
    const pc_tenant_cfg *t = &cfg->tenants[i];
    pc_sample_policy *pol = &(*pols)[i];
    pc_sample_policy_defaults(pol);
    pol->tenant = t->id;
    pol->target_tps = t->sampling_target;
    pol->min_probability = t->sampling_min_probability;
    pol->keep_errors = t->sampling_keep_errors;
    pol->latency_ns = (uint64_t)t->sampling_latency_ms * 1000000u;
    pol->rules = ru;
    pol->n_rules = t->n_rules;
    for (size_t k = 0; k < t->n_rules; k++, ru++) {
      const pc_rule_cfg *rc = &t->rules[k];
      *ru = (pc_sample_rule){.service = rc->service,
                             .span_name = rc->span_name,
                             .route = rc->route,
                             .attr_key = rc->attr_key,
                             .attr_value = rc->attr_value,
                             .action = (pc_sample_action)rc->action,
                             .probability = rc->probability};
    }
  }
  sc->policies = *pols;
  sc->n_policies = cfg->n_tenants;
  return 0;
}

static bool any_sampling(const pc_config *cfg) {
  for (size_t i = 0; i < cfg->n_tenants; i++)
    if (cfg->tenants[i].sampling_target > 0 || cfg->tenants[i].n_rules) return true;
  return false;
}

/* Kept spans come back as new chunks: charge them (never refused: they were accepted) and
 * queue them on their tenant's exporters. Runs under the sampler lock with p->lock held. */
static void troute_enqueue(pc_troute *t, pc_chunk *c, uint64_t now) {
  for (size_t i = 0; i < t->n; i++) slot_enqueue(t->slots[i], &c, 1, now);
}

/* Queues a chunk from the sampler's side of the pipeline on its tenant's exporters, or counts
 * its spans dropped when a reload removed the tenant meanwhile. */
static void route_sampled(pc_pipeline *p, pc_chunk *c, uint64_t now) {
  pc_troute *t = troute_of(p->route, c->tenant);
  if (t)
    troute_enqueue(t, c, now);
  else
    pc_counter_add(p->dropped_removed, c->n_spans);
}

static void sampler_emit(void *arg, pc_chunk *c) {
  pc_pipeline *p = arg;
  c->budget_bytes = pc_chunk_size(c);
  note_peak(p, atomic_fetch_add(&p->used, c->budget_bytes) + c->budget_bytes);
  pc_gauge_add(p->budget_used_g, (int64_t)c->budget_bytes);
  route_sampled(p, c, pf_mono_ns());
  chunk_release(p, c);
}

/* Builds the sampler, or reloads it, when cfg has tenants that sample. p->lock is held for
 * writing (or the pipeline is not shared yet). */
static int sampler_apply(pc_pipeline *p, const pc_config *cfg) {
  if (!p->sampler && !any_sampling(cfg)) return 0;
  pc_sampler_cfg sc;
  pc_sample_policy *pols = NULL;
  pc_sample_rule *rules = NULL;
  int rc = sampler_cfg(cfg, &sc, &pols, &rules);
  pthread_mutex_lock(&p->smu);
  if (!rc && p->sampler)
    rc = pc_sampler_reload(p->sampler, pf_mono_ns(), &sc);
  else if (!rc)
    rc = pc_sampler_new(&p->sampler, &sc, sampler_emit, p);
  pthread_mutex_unlock(&p->smu);
  free(pols);
  free(rules);
  if (rc) pf_log(PF_LOG_ERROR, "pipeline: sampler: %s", profilis_strerror(rc));
  return rc;
}

static void set_sampled(pc_pipeline *p, pc_route *r) {
  for (size_t i = 0; i < r->n_tr; i++)
    r->tr[i].sampled = p->sampler && pc_tenancy_enabled(r->tenancy) &&
                       pc_sampler_active(p->sampler, r->tr[i].id);
}

static void sampler_metrics_tenant(void *arg, const pc_sampler_tenant_stats *t) {
  pc_pipeline *p = arg;
  static const char *const reasons[PC_REASON_COUNT] = {"probability", "rule", "error", "latency"};
  char id[PC_TENANT_MAX + 1], l[PC_TENANT_MAX + 96];
  pc_label_escape(id, sizeof id, t->tenant, strlen(t->tenant));
  for (int r = 0; r < PC_REASON_COUNT; r++) {
    for (int kept = 0; kept < 2; kept++) {
      uint64_t v = kept ? t->kept[r] : t->dropped[r];
      if (!v) continue;
      snprintf(l, sizeof l, "tenant=\"%s\",decision=\"%s\",reason=\"%s\"", id,
               kept ? "kept" : "dropped", reasons[r]);
      pc_series *s = series(p, PC_COUNTER, "profilis_sampler_traces_total",
                            "Traces decided by the sampler, by decision and reason.", l);
      if (s) atomic_store_explicit(&s->value, v, memory_order_relaxed);
    }
  }
  const struct {
    const char *name, *help;
    double v;
  } g[] = {
      {"profilis_sampler_target_traces_per_second", "Configured kept traces per second.",
       t->target_tps},
      {"profilis_sampler_effective_target_traces_per_second",
       "Target after load degradation and rule keeps.", t->effective_tps},
      {"profilis_sampler_input_traces_per_second", "Arriving traces per second (EWMA).",
       t->input_tps},
      {"profilis_sampler_kept_traces_per_second", "Kept traces per second (EWMA).", t->kept_tps},
  };
  snprintf(l, sizeof l, "tenant=\"%s\"", id);
  for (size_t i = 0; i < sizeof g / sizeof g[0]; i++)
    pc_gauge_set(series(p, PC_GAUGE_MILLI, g[i].name, g[i].help, l),
                 (int64_t)(g[i].v * 1000 + 0.5)); /* rates are never negative */
  const struct {
    const char *name, *help;
    uint64_t v;
  } c[] = {
      {"profilis_sampler_spans_kept_total", "Spans kept by the sampler.", t->spans_kept},
      {"profilis_sampler_spans_dropped_total", "Spans dropped by the sampler.", t->spans_dropped},
      {"profilis_sampler_late_spans_total", "Spans that arrived after their trace's verdict.",
       t->late_kept + t->late_dropped},
      {"profilis_sampler_early_decisions_total",
       "Traces decided before their window ended (memory bound).", t->early},
  };
  for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
    pc_series *s = series(p, PC_COUNTER, c[i].name, c[i].help, l);
    if (s) atomic_store_explicit(&s->value, c[i].v, memory_order_relaxed);
  }
}

static void sampler_metrics(pc_pipeline *p) {
  pc_sampler_stats st;
  pc_sampler_global_stats(p->sampler, &st);
  pc_gauge_set(series(p, PC_GAUGE, "profilis_sampler_held_traces",
                      "Traces waiting in the decision window.", ""),
               st.held_traces);
  pc_gauge_set(series(p, PC_GAUGE, "profilis_sampler_held_bytes",
                      "Bytes of spans waiting in the decision window.", ""),
               (int64_t)st.held_bytes);
  pc_series *lost = series(p, PC_COUNTER, "profilis_sampler_lost_spans_total",
                           "Kept spans lost to allocation failure.", "");
  if (lost) atomic_store_explicit(&lost->value, st.emit_failed_spans, memory_order_relaxed);
  pc_series *inv = series(p, PC_COUNTER, "profilis_sampler_invalid_spans_total",
                          "Span records that failed validation in the sampler.", "");
  if (inv) atomic_store_explicit(&inv->value, st.invalid_spans, memory_order_relaxed);
  pc_sampler_tenant_stats_each(p->sampler, sampler_metrics_tenant, p);
}

/* Offers queued chunks to the sampler. p->lock (read) and smu are held. A chunk the sampler
 * cannot take (no memory for its window; no sampler) goes to its exporters unsampled: accepted
 * spans are never lost. */
static void sampler_take(pc_pipeline *p, pc_chunk *list, uint64_t now) {
  for (pc_chunk *c = list; c; c = c->qnext)
    if (!p->sampler || pc_sampler_offer(p->sampler, now, c) != 0) route_sampled(p, c, now);
}

/* The sampler stage: takes the queued chunks as they come; every 100 ms decides the traces
 * whose window ended and adapts to the load (the memory budget's fill); every second its
 * figures go to the metrics. On stop it takes what is still queued first. */
static void *tick_main(void *arg) {
  pc_pipeline *p = arg;
  uint64_t last_metrics = 0, next_tick = pf_mono_ns() + TICK_NS;
  pthread_mutex_lock(&p->tick_mu);
  for (;;) {
    if (!p->sq_head && !p->tick_stop && pf_mono_ns() < next_tick)
      wait_until(&p->tick_cv, &p->tick_mu, next_tick);
    pc_chunk *list = p->sq_head;
    p->sq_head = p->sq_tail = NULL;
    bool stop = p->tick_stop;
    pthread_mutex_unlock(&p->tick_mu);
    uint64_t now = pf_mono_ns();
    bool ticked = now >= next_tick;
    pthread_rwlock_rdlock(&p->lock);
    pthread_mutex_lock(&p->smu);
    sampler_take(p, list, now);
    if (ticked) {
      next_tick = now + TICK_NS;
      uint64_t limit = atomic_load(&p->limit), used = atomic_load(&p->used);
      double load = limit ? (double)used / (double)limit : 0;
      if (p->sampler) pc_sampler_tick(p->sampler, now, load > 1 ? 1 : load);
      if (p->sampler && now - last_metrics >= 1000000000u) {
        last_metrics = now;
        sampler_metrics(p);
      }
    }
    pthread_mutex_unlock(&p->smu);
    pthread_rwlock_unlock(&p->lock);
    while (list) {
      pc_chunk *next = list->qnext;
      chunk_release(p, list);
      list = next;
    }
    if (ticked) release_after_burst(p, now);
    pthread_mutex_lock(&p->tick_mu);
    if (stop && !p->sq_head) break;
  }
  pthread_mutex_unlock(&p->tick_mu);
  return NULL;
}

/* Hands a sampled tenant's chunk to the sampler stage (a reference goes with it). Returns
 * false when the stage is not running. */
static bool sampler_queue(pc_pipeline *p, pc_chunk *c) {
  pthread_mutex_lock(&p->tick_mu);
  bool running = p->tick_started && !p->tick_stop;
  if (running) {
    pc_chunk_ref(c);
    c->qnext = NULL;
    if (p->sq_tail)
      p->sq_tail->qnext = c;
    else {
      p->sq_head = c;
      pthread_cond_signal(&p->tick_cv);
    }
    p->sq_tail = c;
  }
  pthread_mutex_unlock(&p->tick_mu);
  return running;
}

static int tick_start(pc_pipeline *p) {
  if (p->tick_started || !p->sampler) return 0;
  if (pthread_create(&p->tick_thread, NULL, tick_main, p)) return PROFILIS_ENOMEM;
  pthread_setname_np(p->tick_thread, "pc-sampler");
  pthread_mutex_lock(&p->tick_mu);
  p->tick_started = true;
  pthread_mutex_unlock(&p->tick_mu);
  return 0;
}

static void tick_stop(pc_pipeline *p) {
  if (!p->tick_started) return;
  pthread_mutex_lock(&p->tick_mu);
  p->tick_stop = true;
  pthread_cond_signal(&p->tick_cv);
  pthread_mutex_unlock(&p->tick_mu);
  pthread_join(p->tick_thread, NULL); /* it takes what was queued before it ends */
  pthread_mutex_lock(&p->tick_mu);
  p->tick_started = false;
  pthread_mutex_unlock(&p->tick_mu);
}

/* ---- public ---- */

static void pipeline_destroy(pc_pipeline *p) {
  pc_sampler_free(p->sampler);
  pthread_rwlock_destroy(&p->lock);
  pthread_mutex_destroy(&p->ctl);
  pthread_mutex_destroy(&p->smu);
  pthread_mutex_destroy(&p->tick_mu);
  pthread_mutex_destroy(&p->trim_mu);
  pthread_cond_destroy(&p->tick_cv);
  free(p);
}

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
  pthread_mutex_init(&p->smu, NULL);
  pthread_mutex_init(&p->tick_mu, NULL);
  pthread_mutex_init(&p->trim_mu, NULL);
  cond_init_mono(&p->tick_cv);
  p->m = metrics;
  p->factory = factory ? factory : default_factory;
  p->factory_arg = factory_arg;
  pipeline_series(p);
  tenant_series_init(p, &p->unknown, "");
  p->dropped_removed = series(p, PC_COUNTER, "profilis_pipeline_dropped_spans_total",
                              "Spans dropped inside the pipeline, by reason.",
                              "reason=\"tenant_removed\"");
  apply_limits(p, cfg);
  int rc = route_build(p, cfg, NULL, &p->route);
  if (!rc) rc = sampler_apply(p, cfg);
  if (!rc) rc = tick_start(p);
  if (rc) {
    if (p->route) {
      route_discard_new(p->route, NULL);
      p->route = NULL;
    }
    pipeline_destroy(p);
    return rc;
  }
  set_sampled(p, p->route);
  atomic_store(&p->keep_raw, p->route->keep_raw);
  *out = p;
  return 0;
}

int pc_pipeline_new(pc_pipeline **out, const pc_config *cfg, pc_metrics *metrics) {
  return pc_pipeline_new_with(out, cfg, metrics, NULL, NULL);
}

static const pc_verdict refusal_verdict[R_COUNT] = {
#define REFUSAL_VERDICT(e, label, verdict) verdict,
    REFUSAL_MAP(REFUSAL_VERDICT)
#undef REFUSAL_VERDICT
};

/* Counts a refusal of spans (0 before decoding) for tenant series ts (NULL: none). */
static void refuse(pc_pipeline *p, refusal why, const tenant_series *ts, uint64_t spans,
                   uint32_t retry_ms, pc_admission *adm) {
  adm->verdict = refusal_verdict[why];
  adm->retry_after_ms = retry_ms;
  if (why == R_BUDGET || why == R_DRAINING) {
    if (!retry_ms) adm->retry_after_ms = atomic_load(&p->retry_after_ms);
    pc_counter_add(why == R_BUDGET ? p->refused_req_budget : p->refused_req_draining, 1);
    pc_counter_add(why == R_BUDGET ? p->refused_budget : p->refused_draining, spans);
    if (!adm->message[0])
      snprintf(adm->message, sizeof adm->message, "%s",
               why == R_DRAINING ? "collector is shutting down"
                                 : "memory budget exhausted, retry later");
  }
  if (ts) {
    pc_counter_add(ts->refused_requests[why], 1);
    pc_counter_add(ts->refused_spans[why], spans);
  }
}

int pc_pipeline_admit(pc_pipeline *p, uint64_t wire_bytes, pc_admission *adm) {
  *adm = (pc_admission){.verdict = PC_ACCEPTED};
  pthread_rwlock_rdlock(&p->lock);
  bool draining = p->draining;
  pthread_rwlock_unlock(&p->lock);
  uint64_t limit = atomic_load(&p->limit), used = atomic_load(&p->used);
  if (draining)
    refuse(p, R_DRAINING, NULL, 0, 0, adm);
  else if (wire_bytes > limit || used > limit - wire_bytes)
    refuse(p, R_BUDGET, NULL, 0, 0, adm);
  return 0;
}

/* The tenants of one request: each distinct tenant view once, with its spans and bytes. */
typedef struct req_group {
  pc_troute *t;
  uint64_t spans, bytes;
} req_group;

/* Groups the chunks by tenant view (g has room for n). Returns the group count, or 0 when a
 * chunk's tenant has no view (cannot happen: tenancy assigned it from the same route). */
static size_t group_chunks(const pc_route *r, pc_chunk **chunks, size_t n, req_group *g,
                           pc_troute **of) {
  size_t k = 0;
  for (size_t i = 0; i < n; i++) {
    pc_troute *t = troute_of(r, chunks[i]->tenant);
    if (!t) return 0;
    of[i] = t;
    size_t j = 0;
    while (j < k && g[j].t != t) j++;
    if (j == k) g[k++] = (req_group){.t = t};
    g[j].spans += chunks[i]->n_spans;
    g[j].bytes += chunks[i]->budget_bytes;
  }
  return k;
}

static bool troute_queue_full(const pc_troute *t) {
  for (size_t i = 0; i < t->n; i++)
    if (t->slots[i]->resilient && pc_resilient_full(t->slots[i]->exp)) return true;
  return false;
}

/* Span metrics (before sampling), then the sampler or the exporters' queues. */
static void dispatch(pc_pipeline *p, pc_troute *t, pc_chunk *c, uint64_t now) {
  if (t->prom) {
    pc_spanmetrics_observe(t->prom->sm, c);
    pc_counter_add(t->prom->sent, c->n_spans);
  }
  pc_counter_add(t->ts.accepted, c->n_spans);
  if (t->sampled) {
    if (sampler_queue(p, c)) return; /* the stage holds its own reference */
    pthread_mutex_lock(&p->smu);
    int rc = pc_sampler_offer(p->sampler, now, c);
    pthread_mutex_unlock(&p->smu);
    if (rc == 0) return; /* copied into the window; the caller's reference is released */
    /* out of memory in the window: deliver unsampled rather than lose accepted spans */
  }
  troute_enqueue(t, c, now);
}

/* Rate limits, durable queues and the budget for an authenticated request; read lock held. */
static void admit_groups(pc_pipeline *p, const pc_route *r, pc_chunk **chunks, size_t n,
                         uint64_t bytes, uint64_t spans, pc_admission *adm) {
  req_group gbuf[4];
  pc_troute *obuf[16];
  req_group *g = n <= 4 ? gbuf : malloc(n * sizeof *g);
  pc_troute **of = n <= 16 ? obuf : malloc(n * sizeof *of);
  size_t k = g && of ? group_chunks(r, chunks, n, g, of) : 0;
  size_t taken = 0;
  uint64_t now = pf_mono_ns();
  if (!k) {
    refuse(p, R_BUDGET, &p->unknown, spans, 0, adm); /* out of memory: retryable */
    goto out;
  }
  for (size_t i = 0; i < k; i++)
    if (troute_queue_full(g[i].t)) {
      snprintf(adm->message, sizeof adm->message,
               "a durable queue of tenant %s is full; retry later", g[i].t->id);
      refuse(p, R_QUEUE_FULL, &g[i].t->ts, g[i].spans, atomic_load(&p->retry_after_ms), adm);
      goto out;
    }
  if (!budget_charge(p, bytes)) {
    refuse(p, R_BUDGET, &g[0].t->ts, spans, 0, adm);
    goto out;
  }
  for (; taken < k; taken++) {
    uint32_t retry = 0;
    int idx = (int)(g[taken].t - r->tr);
    if (pc_tenancy_rate_take(r->tenancy, (size_t)idx, g[taken].spans, g[taken].bytes, now,
                             &retry))
      continue;
    snprintf(adm->message, sizeof adm->message, "tenant %s is over its rate limit",
             g[taken].t->id);
    refuse(p, R_RATE, &g[taken].t->ts, g[taken].spans, retry, adm);
    while (taken--)
      pc_tenancy_rate_return(r->tenancy, (size_t)(g[taken].t - r->tr), g[taken].spans,
                             g[taken].bytes);
    atomic_fetch_sub(&p->used, bytes);
    pc_gauge_add(p->budget_used_g, -(int64_t)bytes);
    goto out;
  }
  for (size_t i = 0; i < n; i++) dispatch(p, of[i], chunks[i], now);
out:
  if (g != gbuf) free(g);
  if (of != obuf) free(of);
}

int pc_pipeline_submit_as(pc_pipeline *p, const pc_credentials *cr, pc_chunk **chunks, size_t n,
                          pc_admission *adm) {
  *adm = (pc_admission){.verdict = PC_ACCEPTED};
  uint64_t bytes = 0, spans = 0;
  for (size_t i = 0; i < n; i++) {
    if (!chunks[i]->budget_bytes) chunks[i]->budget_bytes = pc_chunk_size(chunks[i]);
    bytes += chunks[i]->budget_bytes;
    spans += chunks[i]->n_spans;
  }
  pthread_rwlock_rdlock(&p->lock);
  const pc_route *r = p->route;
  const char *who = "";
  pc_auth a = p->draining ? PC_AUTH_OK
                          : pc_tenancy_assign(r->tenancy, cr, chunks, n, &who, adm->message,
                                              sizeof adm->message);
  if (p->draining) {
    refuse(p, R_DRAINING, &p->unknown, spans, 0, adm);
  } else if (a != PC_AUTH_OK) {
    const pc_troute *t = *who ? troute_of(r, who) : NULL;
    refuse(p, a == PC_AUTH_FORBIDDEN ? R_FORBIDDEN : R_UNAUTHENTICATED, t ? &t->ts : &p->unknown,
           spans, 0, adm);
  } else if (n) {
    admit_groups(p, r, chunks, n, bytes, spans, adm);
  }
  pthread_rwlock_unlock(&p->lock);
  if (adm->verdict == PC_ACCEPTED)
    for (size_t i = 0; i < n; i++) chunk_release(p, chunks[i]); /* the caller's reference */
  return 0;
}

int pc_pipeline_submit(pc_pipeline *p, pc_chunk **chunks, size_t n, pc_admission *adm) {
  return pc_pipeline_submit_as(p, NULL, chunks, n, adm);
}

void pc_pipeline_tenant_header(pc_pipeline *p, char *out, size_t cap) {
  pthread_rwlock_rdlock(&p->lock);
  snprintf(out, cap, "%s", p->route->tenant_header ? p->route->tenant_header : "");
  pthread_rwlock_unlock(&p->lock);
}

bool pc_pipeline_keep_raw(const pc_pipeline *p) { return atomic_load(&p->keep_raw); }

uint64_t pc_pipeline_budget_used(const pc_pipeline *p) { return atomic_load(&p->used); }

uint64_t pc_pipeline_budget_limit(const pc_pipeline *p) { return atomic_load(&p->limit); }

struct pc_spanmetrics *pc_pipeline_spanmetrics(pc_pipeline *p) {
  pthread_rwlock_rdlock(&p->lock);
  pc_spanmetrics *sm = NULL;
  for (size_t i = 0; p->route && i < p->route->n_all && !sm; i++) sm = p->route->all[i]->sm;
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
  for (size_t i = 0; p->route && i < p->route->n_all; i++)
    if (is_pred_of(s, p->route->all[i])) return true;
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
  for (size_t i = 0; old && i < old->n_all; i++) {
    pc_slot *s = old->all[i];
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
  for (size_t i = 0; i < r->n_all; i++) kept += route_has(old, r->all[i]);
  pthread_rwlock_wrlock(&p->lock);
  p->route = r;
  apply_limits(p, cfg);
  atomic_store(&p->keep_raw, r->keep_raw);
  /* Held traces stay in the window; a removed tenant's are counted as dropped when decided. */
  if (sampler_apply(p, cfg) == 0) tick_start(p);
  set_sampled(p, r);
  pthread_rwlock_unlock(&p->lock);
  size_t retired = retire_replaced(p, old, r);
  route_free(old);
  reap_retired(p);
  pf_log(PF_LOG_INFO,
         "pipeline: configuration %s applied: %zu tenants, %zu exporters kept, %zu started, "
         "%zu retiring after their queues empty",
         cfg->source ? cfg->source : "", cfg->n_tenants, kept, r->n_all - kept, retired);
out:
  pthread_mutex_unlock(&p->ctl);
  return rc;
}

/* Closes every slot (route and retired), waits until the deadline, cancels the rest. */
static uint64_t finish_all(pc_pipeline *p, uint64_t deadline) {
  pc_route *r = p->route;
  uint64_t dropped = 0;
  for (size_t i = 0; r && i < r->n_all; i++) slot_close(r->all[i], 0);
  for (pc_slot *s = p->retired; s; s = s->next_retired) slot_close(s, 0);
  for (size_t i = 0; r && i < r->n_all; i++) dropped += slot_finish(r->all[i], deadline);
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
  tick_stop(p);
  if (p->sampler) { /* what waits in the decision window is decided now and exported */
    pthread_rwlock_rdlock(&p->lock);
    pthread_mutex_lock(&p->smu);
    pc_sampler_flush(p->sampler, pf_mono_ns());
    pthread_mutex_unlock(&p->smu);
    pthread_rwlock_unlock(&p->lock);
  }
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
  for (size_t i = 0; p->route && i < p->route->n_all; i++) slot_free(p->route->all[i]);
  route_free(p->route);
  while (p->retired) {
    pc_slot *s = p->retired;
    p->retired = s->next_retired;
    slot_free(s);
  }
  pipeline_destroy(p);
}

/* ---- /api/tenants ---- */

static uint64_t val(const pc_series *s) { return s ? atomic_load(&s->value) : 0; }

static void api_slot(pf_json *j, const pc_slot *s) {
  pf_json_lit(j, "{\"name\":");
  pf_json_cstr(j, s->cfg.name);
  pf_json_lit(j, ",\"instance\":");
  pf_json_cstr(j, s->tenant);
  pf_json_lit(j, ",\"sent_spans\":");
  pf_json_u64(j, val(s->sent));
  pf_json_lit(j, ",\"failed_spans\":");
  pf_json_u64(j, val(s->failed));
  pf_json_lit(j, ",\"dropped_spans\":");
  pf_json_u64(j, val(s->dropped));
  pf_json_lit(j, ",\"queued_spans\":");
  pf_json_i64(j, s->queue_spans ? atomic_load(&s->queue_spans->gauge) : 0);
  if (s->resilient) {
    pf_json_lit(j, ",\"breaker\":");
    pf_json_cstr(j, pc_breaker_state_name(pc_resilient_state(s->exp)));
    pf_json_lit(j, ",\"durable_queue_spans\":");
    pf_json_u64(j, pc_resilient_queued_spans(s->exp));
    pf_json_lit(j, ",\"durable_queue_full\":");
    pf_json_bool(j, pc_resilient_full(s->exp));
  }
  pf_json_lit(j, "}");
}

static void api_troute(pf_json *j, const pc_troute *t) {
  static const char *const labels[R_COUNT] = {
#define REFUSAL_LABEL(e, label, verdict) label,
      REFUSAL_MAP(REFUSAL_LABEL)
#undef REFUSAL_LABEL
  };
  pf_json_lit(j, "{\"id\":");
  pf_json_cstr(j, t->id);
  pf_json_lit(j, ",\"accepted_spans\":");
  pf_json_u64(j, val(t->ts.accepted));
  pf_json_lit(j, ",\"refused_spans\":{");
  for (int r = 0; r < R_COUNT; r++) {
    pf_json_lit(j, r ? ",\"" : "\"");
    pf_json_lit(j, labels[r]);
    pf_json_lit(j, "\":");
    pf_json_u64(j, val(t->ts.refused_spans[r]));
  }
  pf_json_lit(j, "},\"sampled\":");
  pf_json_bool(j, t->sampled);
  pf_json_lit(j, ",\"exporters\":[");
  size_t k = 0;
  if (t->prom) api_slot(j, t->prom), k++;
  for (size_t i = 0; i < t->n; i++) {
    if (k++) pf_json_lit(j, ",");
    api_slot(j, t->slots[i]);
  }
  pf_json_lit(j, "]}");
}

static void api_sampling_tenant(void *arg, const pc_sampler_tenant_stats *t) {
  pf_json *j = arg;
  if (j->out->p[j->out->len - 1] != '[') pf_json_lit(j, ",");
  pf_json_lit(j, "{\"tenant\":");
  pf_json_cstr(j, t->tenant);
  pf_json_lit(j, ",\"target_traces_per_second\":");
  pf_json_double(j, t->target_tps);
  pf_json_lit(j, ",\"effective_target\":");
  pf_json_double(j, t->effective_tps);
  pf_json_lit(j, ",\"input_traces_per_second\":");
  pf_json_double(j, t->input_tps);
  pf_json_lit(j, ",\"kept_traces_per_second\":");
  pf_json_double(j, t->kept_tps);
  pf_json_lit(j, ",\"spans_kept\":");
  pf_json_u64(j, t->spans_kept);
  pf_json_lit(j, ",\"spans_dropped\":");
  pf_json_u64(j, t->spans_dropped);
  pf_json_lit(j, ",\"operations\":[");
  for (size_t i = 0; i < t->n_ops; i++) {
    const pc_sampler_op_stats *o = &t->ops[i];
    pf_json_lit(j, i ? ",{\"service\":" : "{\"service\":");
    pf_json_cstr(j, o->service);
    pf_json_lit(j, ",\"name\":");
    pf_json_cstr(j, o->name);
    pf_json_lit(j, ",\"overflow\":");
    pf_json_bool(j, o->overflow);
    pf_json_lit(j, ",\"rate\":");
    pf_json_double(j, o->rate);
    pf_json_lit(j, ",\"probability\":");
    pf_json_double(j, o->probability);
    pf_json_lit(j, ",\"kept\":");
    pf_json_u64(j, o->kept);
    pf_json_lit(j, ",\"dropped\":");
    pf_json_u64(j, o->dropped);
    pf_json_lit(j, "}");
  }
  pf_json_lit(j, "]}");
}

int pc_pipeline_api_tenants(pc_pipeline *p, pf_buf *out) {
  pf_json j = pf_json_on(out);
  pthread_rwlock_rdlock(&p->lock);
  const pc_route *r = p->route;
  pf_json_lit(&j, "{\"tenancy\":");
  pf_json_bool(&j, pc_tenancy_enabled(r->tenancy));
  pf_json_lit(&j, ",\"memory_budget\":{\"used_bytes\":");
  pf_json_u64(&j, atomic_load(&p->used));
  pf_json_lit(&j, ",\"limit_bytes\":");
  pf_json_u64(&j, atomic_load(&p->limit));
  pf_json_lit(&j, "},\"unrecognised\":");
  pc_troute unknown = {.ts = p->unknown};
  api_troute(&j, &unknown);
  pf_json_lit(&j, ",\"tenants\":[");
  for (size_t i = 0; i < r->n_tr; i++) {
    if (i) pf_json_lit(&j, ",");
    api_troute(&j, &r->tr[i]);
  }
  pf_json_lit(&j, "],\"sampling\":[");
  pthread_mutex_lock(&p->smu);
  if (p->sampler) pc_sampler_tenant_stats_each(p->sampler, api_sampling_tenant, &j);
  pthread_mutex_unlock(&p->smu);
  pthread_rwlock_unlock(&p->lock);
  return pf_json_lit(&j, "]}");
}
