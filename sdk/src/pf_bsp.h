/* Batch span processor: the bounded queue between application threads and the single
 * exporter thread, with flush, shutdown and fork handling. Internal. */
#ifndef PF_BSP_H
#define PF_BSP_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "pf_exporter.h"
#include "pf_log.h"
#include "pf_ring.h"

typedef struct pf_bsp {
  pf_ring ring;
  /* read by every producer; written only at start, shutdown and fork */
  _Alignas(64) atomic_int shut; /* no more spans accepted */
  uint64_t wake_mask;           /* producers wake the exporter every wake_mask + 1 records */
  const pf_config *cfg;
  pf_exporter *exporter; /* owned */
  const pf_resource *resource;

  _Alignas(64) pthread_mutex_t mu;
  pthread_cond_t wake;  /* exporter thread waits here */
  pthread_cond_t done;  /* flush/shutdown waiters wait here */
  pthread_t thread;
  bool thread_running;
  uint64_t flush_req;  /* guarded by mu */
  uint64_t flush_done; /* guarded by mu */
  bool stop;           /* guarded by mu: exit after a final drain */
  atomic_int sleeping; /* the exporter waits on `wake`: producers must signal it */
  atomic_int cancel;   /* aborts an export in progress */
  atomic_int exited;   /* the thread has left its loop */

  /* the exporter thread's batch: records copied out of the ring */
  pf_buf batch_bytes;
  const pf_span_rec **batch_ptrs;
  size_t batch_cap;

  _Atomic uint64_t exported, dropped, failed, rejected, batches;
  pf_ratelimit drop_log;
} pf_bsp;

/* Starts the processor and its thread. Takes ownership of exporter (also on failure).
 * Returns 0, PROFILIS_ENOMEM or PROFILIS_EIO (thread could not start). */
int pf_bsp_start(pf_bsp *b, const pf_config *cfg, pf_exporter *exporter,
                 const pf_resource *resource);
/* Reserves queue room for a record of len bytes, honouring the queue policy; counts a drop
 * and returns NULL when there is none. *seq receives what pf_bsp_commit needs. */
void *pf_bsp_reserve_slow(pf_bsp *b, size_t len, uint64_t *seq);
static inline void *pf_bsp_reserve(pf_bsp *b, size_t len, uint64_t *seq) {
  if (__builtin_expect(!atomic_load_explicit(&b->shut, memory_order_relaxed), 1)) {
    void *p = pf_ring_reserve(&b->ring, len, seq);
    if (__builtin_expect(p != NULL, 1)) return p;
  }
  return pf_bsp_reserve_slow(b, len, seq); /* shut down, or full: block or drop */
}
/* Signals the exporter thread if it is waiting for work. */
void pf_bsp_wake(pf_bsp *b);
/* Publishes a reserved record; every wake_mask + 1 records, wakes the exporter if it sleeps
 * (after publishing, so it finds the whole batch ready). */
static inline void pf_bsp_commit(pf_bsp *b, void *rec, uint64_t seq) {
  pf_ring_commit(rec);
  if (__builtin_expect((seq & b->wake_mask) == 0, 0)) pf_bsp_wake(b);
}
/* Counts one dropped span (e.g. too large to queue) with a rate-limited log line. */
void pf_bsp_count_drop(pf_bsp *b, const char *why);
int pf_bsp_flush(pf_bsp *b, uint32_t timeout_ms);
int pf_bsp_shutdown(pf_bsp *b, uint32_t timeout_ms);
/* Frees everything; the thread must have exited (returns false and frees nothing if not). */
bool pf_bsp_destroy(pf_bsp *b);

/* Fork handling, called by the provider's pthread_atfork handlers. */
void pf_bsp_fork_prepare(pf_bsp *b);
void pf_bsp_fork_parent(pf_bsp *b);
void pf_bsp_fork_child(pf_bsp *b);

#endif
