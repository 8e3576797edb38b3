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
  const pf_config *cfg;
  pf_exporter *exporter; /* owned */
  const pf_resource *resource;

  pthread_mutex_t mu;
  pthread_cond_t wake;  /* exporter thread waits here */
  pthread_cond_t done;  /* flush/shutdown waiters wait here */
  pthread_t thread;
  bool thread_running;
  uint64_t flush_req;  /* guarded by mu */
  uint64_t flush_done; /* guarded by mu */
  bool stop;           /* guarded by mu: exit after a final drain */
  atomic_int cancel;   /* aborts an export in progress */
  atomic_int shut;     /* no more spans accepted */
  atomic_int exited;   /* the thread has left its loop */

  /* the exporter thread's batch: records copied out of the ring */
  pf_buf batch_bytes;
  const pf_span_rec **batch_ptrs;
  size_t batch_cap;
  uint64_t wake_mask;

  _Atomic uint64_t exported, dropped, failed, rejected, batches;
  pf_ratelimit drop_log;
} pf_bsp;

/* Starts the processor and its thread. Takes ownership of exporter (also on failure).
 * Returns 0, PROFILIS_ENOMEM or PROFILIS_EIO (thread could not start). */
int pf_bsp_start(pf_bsp *b, const pf_config *cfg, pf_exporter *exporter,
                 const pf_resource *resource);
/* Reserves queue room for a record of len bytes, honouring the queue policy; counts a drop
 * and returns NULL when there is none. */
void *pf_bsp_reserve(pf_bsp *b, size_t len);
/* Publishes a reserved record and wakes the exporter when a batch is ready. */
void pf_bsp_commit(pf_bsp *b, void *rec);
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
