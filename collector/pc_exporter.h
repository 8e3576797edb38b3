/* Collector exporters: what an exporter thread of the pipeline calls with a batch of chunks.
 * An exporter is used from its one thread only. Retries with backoff happen inside, bounded by
 * the deadline. Internal. */
#ifndef PC_EXPORTER_H
#define PC_EXPORTER_H

#include "pc_chunk.h"
#include "pc_config.h"
#include "pc_metrics.h"
#include "pf_time.h"

typedef struct pc_exporter pc_exporter;
struct pc_exporter {
  const pc_exporter_cfg *cfg;
  /* Delivers every span of the chunks. Returns 0, PROFILIS_EPERMANENT (the backend refused:
   * never retried), or PROFILIS_ERETRYABLE / PROFILIS_ETIMEDOUT / PROFILIS_ECANCELED (gave up
   * at the deadline). *rejected gets the spans the backend refused through partial_success. */
  int (*export_chunks)(pc_exporter *e, pc_chunk *const *chunks, size_t n, const pf_deadline *dl,
                       uint64_t *rejected);
  /* Periodic work with nothing to export (JSONL: flush interval, age-based rotation). May be NULL. */
  void (*tick)(pc_exporter *e);
  void (*destroy)(pc_exporter *e);
};

/* Constructors. Return 0, PROFILIS_ENOMEM or PROFILIS_EIO (reason logged, e.g. the JSONL
 * directory cannot be created, a TLS file cannot be read). */
int pc_jsonl_exporter_new(pc_exporter **out, const pc_exporter_cfg *cfg);
int pc_otlp_exporter_new(pc_exporter **out, const pc_exporter_cfg *cfg);

#endif
