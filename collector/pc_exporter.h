/* Collector exporters: what an exporter thread of the pipeline calls with a batch of chunks.
 * An exporter is used from its one thread only. Retries with backoff happen inside, bounded by
 * the deadline. Internal. */
#ifndef PC_EXPORTER_H
#define PC_EXPORTER_H

#include "pc_chunk.h"
#include "pc_config.h"
#include "pc_metrics.h"
#include "pf_time.h"

#define PC_TICK_NONE UINT64_MAX

typedef struct pc_exporter pc_exporter;
struct pc_exporter {
  const pc_exporter_cfg *cfg;
  /* Delivers every span of the chunks. Returns 0, PROFILIS_EPERMANENT (the backend refused:
   * never retried), or PROFILIS_ERETRYABLE / PROFILIS_ETIMEDOUT / PROFILIS_ECANCELED (gave up
   * at the deadline). *rejected gets the spans the backend refused through partial_success. */
  int (*export_chunks)(pc_exporter *e, pc_chunk *const *chunks, size_t n, const pf_deadline *dl,
                       uint64_t *rejected);
  /* Periodic work with nothing to export (JSONL: flush retries, age-based rotation, fsync
   * interval; durable queue: replay). May be NULL. */
  void (*tick)(pc_exporter *e);
  /* When tick() next has work to do, in monotonic ns; PC_TICK_NONE when only an export can
   * make some. The thread sleeps until then (it calls tick() at most every 100 ms), so an idle
   * exporter costs no wake-ups. May be NULL: tick() then runs every 100 ms. */
  uint64_t (*next_tick)(pc_exporter *e);
  void (*destroy)(pc_exporter *e);
  /* Called once on the exporter's thread after its last export, before the slot reports
   * itself done (a successor of the same name may start right after). May be NULL. */
  void (*finish)(pc_exporter *e);
  /* When true, export_chunks and tick count every span themselves into the slot's counters
   * (pc_export_counters) and the slot only releases the chunks. */
  bool self_counting;
};

/* The per-slot span counters (series of profilis_exporter_*_spans_total). */
typedef struct pc_export_counters {
  pc_series *sent;     /* delivered and accepted by the backend */
  pc_series *failed;   /* refused by the backend (rejected included) or retries ran out */
  pc_series *rejected; /* refused through partial_success (part of failed) */
  pc_series *dropped;  /* given up: drain deadline, durable queue full (drop_oldest) */
} pc_export_counters;

/* Constructors. Return 0, PROFILIS_ENOMEM or PROFILIS_EIO (reason logged, e.g. the JSONL
 * directory cannot be created, a TLS file cannot be read). */
int pc_jsonl_exporter_new(pc_exporter **out, const pc_exporter_cfg *cfg);
int pc_otlp_exporter_new(pc_exporter **out, const pc_exporter_cfg *cfg);
/* loadbalancing: see collector/pc_loadbalance.h */
int pc_lb_exporter_new(pc_exporter **out, const pc_exporter_cfg *cfg);

#endif
