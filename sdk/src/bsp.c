/* Batch span processor. Application threads publish span records into a bounded MPSC ring
 * (pf_ring.h) and never wait, except under the opt-in block policy. One exporter thread
 * wakes when a batch is full (producers signal it only while it sleeps), on the schedule
 * delay, or on flush/shutdown; it copies a batch of records out of the ring (so the ring frees
 * up while the export runs) and hands them to the exporter with a deadline. It takes only full
 * batches until the delay runs out or a flush asks for everything, so it stays clear of the
 * slots producers are writing. Shutdown cancels an export that would outlive its timeout. */
#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>

#include "pf_bsp.h"

#define WAIT_SLICE_NS 100000000ull /* re-check state at least every 100 ms */

static void abs_time(struct timespec *ts, uint64_t mono_ns) {
  ts->tv_sec = (time_t)(mono_ns / 1000000000ull);
  ts->tv_nsec = (long)(mono_ns % 1000000000ull);
}

/* Waits on cond until mono_ns (CLOCK_MONOTONIC); mu held. */
static void wait_until(pthread_cond_t *c, pthread_mutex_t *mu, uint64_t mono_ns) {
  struct timespec ts;
  abs_time(&ts, mono_ns);
  pthread_cond_timedwait(c, mu, &ts);
}

static int init_sync(pf_bsp *b) {
  pthread_condattr_t ca;
  if (pthread_mutex_init(&b->mu, NULL)) return PROFILIS_ENOMEM;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  int rc = pthread_cond_init(&b->wake, &ca) || pthread_cond_init(&b->done, &ca);
  pthread_condattr_destroy(&ca);
  return rc ? PROFILIS_ENOMEM : 0;
}

void pf_bsp_count_drop(pf_bsp *b, const char *why) {
  atomic_fetch_add_explicit(&b->dropped, 1, memory_order_relaxed);
  pf_log_rl(&b->drop_log, PF_LOG_WARN,
            "span dropped (%s); queue holds %llu spans / %llu bytes (limits %u spans / %u bytes)",
            why, (unsigned long long)pf_ring_count(&b->ring),
            (unsigned long long)pf_ring_bytes(&b->ring), b->cfg->o.max_queue_size,
            b->cfg->o.max_queue_bytes);
}

static void wake_exporter(pf_bsp *b) {
  pthread_mutex_lock(&b->mu);
  pthread_cond_signal(&b->wake);
  pthread_mutex_unlock(&b->mu);
}

void pf_bsp_wake(pf_bsp *b) {
  /* seq_cst pairs with the exporter's store of `sleeping` then read of the ring (Dekker): one
   * of the two sees the other, so a full batch never goes unnoticed */
  if (atomic_load_explicit(&b->sleeping, memory_order_seq_cst)) wake_exporter(b);
}

static void *reserve_blocking(pf_bsp *b, size_t len, uint64_t *count_after) {
  uint64_t until = pf_mono_ns() + (uint64_t)b->cfg->o.block_timeout_ms * 1000000u;
  wake_exporter(b);
  while (!atomic_load_explicit(&b->shut, memory_order_relaxed) && pf_mono_ns() < until) {
    struct timespec ts = {.tv_sec = 0, .tv_nsec = 20000};
    nanosleep(&ts, NULL);
    void *p = pf_ring_reserve(&b->ring, len, count_after);
    if (p) return p;
  }
  return NULL;
}

void *pf_bsp_reserve_slow(pf_bsp *b, size_t len, uint64_t *seq) {
  if (atomic_load_explicit(&b->shut, memory_order_relaxed)) {
    pf_bsp_count_drop(b, "processor shut down");
    return NULL;
  }
  void *p = pf_ring_reserve(&b->ring, len, seq); /* the ring may have room again */
  if (!p && b->cfg->o.queue_policy == PROFILIS_QUEUE_BLOCK) p = reserve_blocking(b, len, seq);
  if (!p) {
    pf_bsp_wake(b); /* full in bytes before a batch of spans: the exporter has work */
    pf_bsp_count_drop(b, "queue full");
  }
  return p;
}

/* Appends the pending run of ring slots to the batch (room was reserved as it grew). */
static void flush_run(pf_buf *out, const uint8_t **run, size_t *run_len) {
  if (*run_len) memcpy(out->p + out->len, *run, *run_len);
  out->len += *run_len;
  *run = NULL;
  *run_len = 0;
}

/* Copies up to max records out of the ring into the batch. Returns the count. Contiguous slots
 * (headers included, so records stay 8-aligned) are copied as one run, a few large copies per
 * batch, each before pf_ring_publish hands its space back to producers. A record that is
 * reserved but not yet published stops the copy; its producer is normally a few instructions
 * from publishing it, so the thread yields up to `patience` times for it first. */
static size_t collect(pf_bsp *b, size_t max, int patience) {
  pf_buf *out = &b->batch_bytes;
  const uint8_t *run = NULL; /* released slots not copied yet start here */
  size_t run_len = 0, n = 0;
  int spins = 0;
  pf_buf_reset(out);
  while (n < max) {
    size_t len;
    bool busy;
    const uint8_t *rec = pf_ring_peek(&b->ring, &len, &busy);
    if (!rec) {
      if (busy && spins++ < patience) {
        sched_yield();
        continue;
      }
      break;
    }
    const uint8_t *slot = rec - sizeof(pf_ring_hdr);
    size_t slot_len = len + sizeof(pf_ring_hdr);
    if (run && slot != run + run_len) flush_run(out, &run, &run_len); /* wrapped */
    if (pf_buf_reserve(out, run_len + slot_len)) break; /* not released: stays queued */
    if (!run) run = slot;
    /* an offset until the copy ends (the buffer may move) */
    b->batch_ptrs[n++] = (const pf_span_rec *)(uintptr_t)(out->len + run_len + sizeof(pf_ring_hdr));
    run_len += slot_len;
    pf_ring_release(&b->ring, len);
    if ((n & 63) == 0) {
      flush_run(out, &run, &run_len);
      pf_ring_publish(&b->ring);
    }
  }
  flush_run(out, &run, &run_len);
  pf_ring_publish(&b->ring);
  for (size_t i = 0; i < n; i++)
    b->batch_ptrs[i] = (const pf_span_rec *)(out->p + (uintptr_t)b->batch_ptrs[i]);
  return n;
}

static void export_collected(pf_bsp *b, size_t n) {
  if (atomic_load(&b->cancel)) {
    atomic_fetch_add(&b->dropped, n);
    pf_log_rl(&b->drop_log, PF_LOG_WARN, "%zu spans dropped: shutdown timeout", n);
    return;
  }
  pf_batch batch = {.resource = b->resource, .spans = b->batch_ptrs, .n = n};
  pf_deadline dl = {.at_mono_ns = pf_mono_ns() + (uint64_t)b->cfg->o.export_timeout_ms * 1000000u,
                    .cancel = &b->cancel};
  uint64_t rejected = 0;
  int rc = b->exporter->export_batch(b->exporter, &batch, &dl, &rejected);
  atomic_fetch_add(&b->batches, 1);
  if (rc == 0) {
    if (rejected > n) rejected = n;
    atomic_fetch_add(&b->exported, n - rejected);
    atomic_fetch_add(&b->failed, rejected);
    atomic_fetch_add(&b->rejected, rejected);
  } else {
    atomic_fetch_add(&b->failed, n);
    static pf_ratelimit rl;
    pf_log_rl(&rl, PF_LOG_WARN, "export of %zu spans via %s failed: %s", n, b->exporter->name,
              profilis_strerror(rc));
  }
}

/* A batch is ready when a batch of spans is queued, or when large spans fill half the ring's
 * bytes first. */
static bool batch_ready(pf_bsp *b) {
  return pf_ring_count(&b->ring) >= b->cfg->o.max_export_batch_size ||
         pf_ring_bytes(&b->ring) >= b->ring.cap / 2;
}

/* Exports while a batch is ready; with `all`, also the partial batch at the end (a short batch
 * means the ring was caught up with, so everything queued before is taken). */
static void drain(pf_bsp *b, bool all, bool patient) {
  size_t max = b->cfg->o.max_export_batch_size;
  for (;;) {
    if (!all && !batch_ready(b)) return;
    size_t n = collect(b, max, patient ? 2000 : 100);
    if (n) export_collected(b, n);
    if (n < max) return;
  }
}

/* Waits (mu held) for a reason to export: a full batch, a flush, stop or the schedule delay.
 * Returns true when the delay ran out (export whatever is queued). */
static bool wait_for_work(pf_bsp *b) {
  uint64_t due = pf_mono_ns() + (uint64_t)b->cfg->o.schedule_delay_ms * 1000000u;
  while (!b->stop && b->flush_req == b->flush_done && !batch_ready(b)) {
    uint64_t now = pf_mono_ns();
    if (now >= due) return true;
    atomic_store(&b->sleeping, 1);
    atomic_thread_fence(memory_order_seq_cst); /* see pf_bsp_wake */
    if (!batch_ready(b))
      wait_until(&b->wake, &b->mu, now + WAIT_SLICE_NS < due ? now + WAIT_SLICE_NS : due);
    atomic_store(&b->sleeping, 0);
  }
  return false;
}

static void *exporter_main(void *arg) {
  pf_bsp *b = arg;
  uint64_t next_calibration = 0;
  pthread_mutex_lock(&b->mu);
  for (;;) {
    bool due = wait_for_work(b);
    if (pf_mono_ns() >= next_calibration) {
      pf_clock_recalibrate();
      next_calibration = pf_mono_ns() + 1000000000ull;
    }
    uint64_t want = b->flush_req;
    bool stopping = b->stop, patient = stopping || want != b->flush_done;
    pthread_mutex_unlock(&b->mu);
    drain(b, patient || due, patient);
    pthread_mutex_lock(&b->mu);
    if (want > b->flush_done) {
      b->flush_done = want;
      pthread_cond_broadcast(&b->done);
    }
    if (stopping) break;
  }
  atomic_store(&b->exited, 1);
  pthread_cond_broadcast(&b->done);
  pthread_mutex_unlock(&b->mu);
  return NULL;
}

static int start_thread(pf_bsp *b) {
  atomic_store(&b->exited, 0);
  if (pthread_create(&b->thread, NULL, exporter_main, b) != 0) {
    b->thread_running = false;
    return PROFILIS_EIO;
  }
  b->thread_running = true;
  return 0;
}

/* Producers wake a sleeping exporter every this many records (a power of two): about a batch,
 * or with a queue much larger than a batch up to eight batches but at most a quarter of the
 * queue. A wake-up costs a futex call and two context switches (microseconds on a VM), so it is
 * paid per thousands of spans where the queue allows; three quarters of the queue stay as
 * headroom, and a full batch never waits longer than the exporter's WAIT_SLICE_NS re-check. */
static uint64_t wake_interval(uint64_t batch, uint64_t queue) {
  uint64_t want = batch, w = 1;
  if (queue / 4 > want) want = queue / 4 < 8 * batch ? queue / 4 : 8 * batch;
  while (w * 2 <= want) w *= 2;
  return w;
}

int pf_bsp_start(pf_bsp *b, const pf_config *cfg, pf_exporter *exporter,
                 const pf_resource *resource) {
  memset(b, 0, sizeof *b);
  b->cfg = cfg;
  b->exporter = exporter;
  b->resource = resource;
  b->batch_cap = cfg->o.max_export_batch_size;
  b->wake_mask = wake_interval(cfg->o.max_export_batch_size, cfg->o.max_queue_size) - 1;
  int rc = init_sync(b);
  if (rc) return rc;
  rc = pf_ring_init(&b->ring, cfg->o.max_queue_bytes, cfg->o.max_queue_size);
  if (rc) return rc;
  b->batch_ptrs = calloc(b->batch_cap, sizeof *b->batch_ptrs);
  if (!b->batch_ptrs || pf_buf_reserve(&b->batch_bytes, 64 * 1024)) return PROFILIS_ENOMEM;
  return start_thread(b);
}

int pf_bsp_flush(pf_bsp *b, uint32_t timeout_ms) {
  uint64_t until = pf_mono_ns() + (uint64_t)timeout_ms * 1000000u;
  int rc = 0;
  pthread_mutex_lock(&b->mu);
  if (!b->thread_running || atomic_load(&b->exited)) {
    pthread_mutex_unlock(&b->mu);
    return PROFILIS_ESHUTDOWN;
  }
  uint64_t want = ++b->flush_req;
  pthread_cond_signal(&b->wake);
  while (b->flush_done < want && !atomic_load(&b->exited)) {
    uint64_t now = pf_mono_ns();
    if (now >= until) {
      rc = PROFILIS_ETIMEDOUT;
      break;
    }
    wait_until(&b->done, &b->mu, until);
  }
  pthread_mutex_unlock(&b->mu);
  return rc;
}

/* Waits (mu held) until the thread exits or mono time `until`. */
static void wait_exit(pf_bsp *b, uint64_t until) {
  while (!atomic_load(&b->exited) && pf_mono_ns() < until) wait_until(&b->done, &b->mu, until);
}

int pf_bsp_shutdown(pf_bsp *b, uint32_t timeout_ms) {
  if (atomic_exchange(&b->shut, 1)) return PROFILIS_ESHUTDOWN;
  if (!b->thread_running) return 0;
  uint64_t start = pf_mono_ns(), total = (uint64_t)timeout_ms * 1000000u;
  uint64_t margin = total / 4 < 200000000u ? total / 4 : 200000000u;
  int rc = 0;
  pthread_mutex_lock(&b->mu);
  b->stop = true;
  b->flush_req++;
  pthread_cond_signal(&b->wake);
  wait_exit(b, start + total - margin);
  if (!atomic_load(&b->exited)) {
    atomic_store(&b->cancel, 1); /* abort the export in progress; leftovers count as dropped */
    rc = PROFILIS_ETIMEDOUT;
    wait_exit(b, start + total);
  }
  bool exited = atomic_load(&b->exited);
  pthread_mutex_unlock(&b->mu);
  if (exited) {
    pthread_join(b->thread, NULL);
    b->thread_running = false;
  }
  /* anything still queued now can never be exported */
  if (exited && pf_ring_count(&b->ring)) atomic_fetch_add(&b->dropped, pf_ring_clear(&b->ring));
  return exited ? rc : PROFILIS_ETIMEDOUT;
}

bool pf_bsp_destroy(pf_bsp *b) {
  if (b->thread_running && !atomic_load(&b->exited)) return false;
  if (b->thread_running) pthread_join(b->thread, NULL);
  if (b->exporter) b->exporter->destroy(b->exporter);
  pf_ring_destroy(&b->ring);
  pf_buf_free(&b->batch_bytes);
  free(b->batch_ptrs);
  pthread_mutex_destroy(&b->mu);
  pthread_cond_destroy(&b->wake);
  pthread_cond_destroy(&b->done);
  return true;
}

void pf_bsp_fork_prepare(pf_bsp *b) { pthread_mutex_lock(&b->mu); }

void pf_bsp_fork_parent(pf_bsp *b) { pthread_mutex_unlock(&b->mu); }

/* In the child only this thread exists: the exporter thread and any producer mid-write are
 * gone, so the queue (which the parent will export) is emptied and a fresh thread started. */
void pf_bsp_fork_child(pf_bsp *b) {
  init_sync(b);
  pf_ring_reset(&b->ring);
  pf_buf_reset(&b->batch_bytes);
  b->flush_req = b->flush_done = 0;
  atomic_store(&b->cancel, 0);
  atomic_store(&b->sleeping, 0);
  atomic_store(&b->exported, 0);
  atomic_store(&b->dropped, 0);
  atomic_store(&b->failed, 0);
  atomic_store(&b->rejected, 0);
  atomic_store(&b->batches, 0);
  if (b->exporter->after_fork_child) b->exporter->after_fork_child(b->exporter);
  bool was_running = b->thread_running && !b->stop && !atomic_load(&b->shut);
  b->thread_running = false;
  if (was_running) start_thread(b);
}
