/* Batch span processor. Application threads publish span records into a bounded MPSC ring
 * (pf_ring.h) and never wait, except under the opt-in block policy. One exporter thread
 * wakes when a batch is full, on the schedule delay, or on flush/shutdown; it copies up to a
 * batch of records out of the ring (so the ring frees up while the export runs) and hands them
 * to the exporter with a deadline. Shutdown cancels an export that would outlive its timeout. */
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

void *pf_bsp_reserve(pf_bsp *b, size_t len) {
  if (atomic_load_explicit(&b->shut, memory_order_relaxed)) {
    pf_bsp_count_drop(b, "processor shut down");
    return NULL;
  }
  uint64_t count_after = 0;
  void *p = pf_ring_reserve(&b->ring, len, &count_after);
  if (!p && b->cfg->o.queue_policy == PROFILIS_QUEUE_BLOCK)
    p = reserve_blocking(b, len, &count_after);
  if (!p) {
    pf_bsp_count_drop(b, "queue full");
    return NULL;
  }
  if ((count_after & b->wake_mask) == 0) wake_exporter(b);
  return p;
}

void pf_bsp_commit(pf_bsp *b, void *rec) {
  (void)b;
  pf_ring_commit(rec);
}

/* Copies up to max records out of the ring into the batch. Returns the count. When a record is
 * reserved but unpublished at the head and `patient`, waits briefly for its producer. */
static size_t collect(pf_bsp *b, size_t max, bool patient) {
  size_t n = 0, offs_len = 0;
  int spins = 0;
  pf_buf_reset(&b->batch_bytes);
  while (n < max) {
    size_t len;
    bool busy;
    const void *rec = pf_ring_peek(&b->ring, &len, &busy);
    if (!rec) {
      if (busy && patient && spins++ < 2000) {
        sched_yield();
        continue;
      }
      break;
    }
    const pf_span_rec *r = rec;
    size_t size = r->size <= len ? r->size : len;
    size_t at = (b->batch_bytes.len + 7) & ~(size_t)7;
    if (pf_buf_reserve(&b->batch_bytes, at - b->batch_bytes.len + size)) break;
    b->batch_bytes.len = at;
    pf_buf_append(&b->batch_bytes, rec, size);
    pf_ring_release(&b->ring, len);
    if ((n & 63) == 63) pf_ring_publish(&b->ring);
    b->batch_ptrs[n++] = (const pf_span_rec *)(uintptr_t)at; /* offset until the copy ends */
    offs_len = n;
  }
  pf_ring_publish(&b->ring);
  for (size_t i = 0; i < offs_len; i++)
    b->batch_ptrs[i] = (const pf_span_rec *)(b->batch_bytes.p + (uintptr_t)b->batch_ptrs[i]);
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

static void drain(pf_bsp *b, bool patient) {
  for (;;) {
    size_t n = collect(b, b->cfg->o.max_export_batch_size, patient);
    if (n == 0) return;
    export_collected(b, n);
  }
}

/* Waits (mu held) for a reason to export: a full batch, a flush, stop or the schedule delay. */
static void wait_for_work(pf_bsp *b) {
  uint64_t due = pf_mono_ns() + (uint64_t)b->cfg->o.schedule_delay_ms * 1000000u;
  while (!b->stop && b->flush_req == b->flush_done &&
         pf_ring_count(&b->ring) < b->cfg->o.max_export_batch_size) {
    uint64_t now = pf_mono_ns();
    if (now >= due) return;
    wait_until(&b->wake, &b->mu, now + WAIT_SLICE_NS < due ? now + WAIT_SLICE_NS : due);
  }
}

static void *exporter_main(void *arg) {
  pf_bsp *b = arg;
  uint64_t next_calibration = 0;
  pthread_mutex_lock(&b->mu);
  for (;;) {
    wait_for_work(b);
    if (pf_mono_ns() >= next_calibration) {
      pf_clock_recalibrate();
      next_calibration = pf_mono_ns() + 1000000000ull;
    }
    uint64_t want = b->flush_req;
    bool stopping = b->stop;
    pthread_mutex_unlock(&b->mu);
    drain(b, stopping || want != b->flush_done);
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

int pf_bsp_start(pf_bsp *b, const pf_config *cfg, pf_exporter *exporter,
                 const pf_resource *resource) {
  memset(b, 0, sizeof *b);
  b->cfg = cfg;
  b->exporter = exporter;
  b->resource = resource;
  b->batch_cap = cfg->o.max_export_batch_size;
  b->wake_mask = 1; /* wake every power of two <= batch size records */
  while (b->wake_mask * 2 <= b->batch_cap) b->wake_mask *= 2;
  b->wake_mask -= 1;
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
  uint64_t left = pf_ring_count(&b->ring);
  if (exited && left) {
    atomic_fetch_add(&b->dropped, left);
    pf_ring_clear(&b->ring);
  }
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
  atomic_store(&b->ring.head, 0);
  atomic_store(&b->ring.reserved, 0);
  pf_ring_clear(&b->ring);
  pf_buf_reset(&b->batch_bytes);
  b->flush_req = b->flush_done = 0;
  atomic_store(&b->cancel, 0);
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
