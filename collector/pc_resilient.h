/* The circuit breaker and the durable queue in front of one exporter slot (one exporter, or one
 * tenant's instance of a templated exporter). pc_resilient_new wraps the slot's exporter in an
 * exporter of the same interface, so the pipeline's slot thread stays as it is:
 *
 * - export_chunks: while the queue is empty and the breaker allows, the batch goes straight to
 *   the inner exporter (its deadline cut to one attempt's `timeout`: the breaker and the queue
 *   replace long retries) and the outcome is recorded in the breaker. When the breaker is open,
 *   the queue holds a backlog, the direct export failed retryably, or the deadline's cancel
 *   flag is set (drain), the batch is encoded (an ExportTraceServiceRequest: unchanged chunks'
 *   raw bytes, else pf_otlp_encode_request) and pushed to the LMDB queue with its tenant and
 *   span count; the chunks are then released by the slot, so memory stays flat in an outage.
 *   Without a queue (queue.enabled false) a batch the breaker refuses counts as failed.
 * - tick: replays the queue oldest first while the breaker allows (peek, decode back to chunks,
 *   inner export, ack on success), for a bounded time per call so new batches are not starved.
 * - finish: closes the queue (the directory lock is free for a successor slot).
 * - Counting (self_counting): sent/failed/rejected when a batch is delivered or refused, for
 *   direct and replayed batches alike; dropped for records drop_oldest discards.
 * - Full queue with policy refuse: the batch is counted failed and pc_resilient_full turns
 *   true until a replay frees room; the pipeline then refuses that tenant upstream.
 * - Metrics (labels exporter="..",tenant=".."): profilis_breaker_state{state} (1 for the
 *   current state), profilis_breaker_transitions_total{state}, profilis_queue_records,
 *   profilis_queue_bytes, profilis_queue_spans, profilis_queue_corrupt_records_total.
 *
 * The queue directory is <cfg->queue_directory>/<exporter name, '/' -> '_'>/<tenant or "_">.
 * It is opened lazily on the slot's thread (a predecessor slot may still hold it: the open is
 * retried while its lock is busy). Internal. */
#ifndef PC_RESILIENT_H
#define PC_RESILIENT_H

#include <stdbool.h>

#include "pc_breaker.h"
#include "pc_exporter.h"
#include "pc_metrics.h"

/* Wraps inner (ownership passes, also on error). tenant is the slot's tenant (NULL or "" for a
 * shared slot); cfg must outlive the wrapper (the slot's copy). Returns 0 or PROFILIS_ENOMEM. */
int pc_resilient_new(pc_exporter **out, pc_exporter *inner, const pc_exporter_cfg *cfg,
                     const char *tenant, pc_metrics *m, const pc_export_counters *counters);
/* True while a refuse-policy queue is full (safe from any thread). */
bool pc_resilient_full(const pc_exporter *e);
/* Breaker state (safe from any thread; for /api/). */
pc_breaker_state pc_resilient_state(const pc_exporter *e);
/* Spans waiting in the durable queue (safe from any thread). */
uint64_t pc_resilient_queued_spans(const pc_exporter *e);

#endif
