/* Span-derived RED metrics: a calls counter and a duration histogram per (service.name,
 * span name, span kind, status code[, tenant]), as traces_span_metrics_calls_total and
 * traces_span_metrics_duration_seconds{_bucket,_sum,_count}. The number of label sets is
 * capped; spans beyond it go to one overflow series (otel_metric_overflow="true") and are
 * counted. Observed before sampling, so the figures stay exact. Thread-safe. Internal. */
#ifndef PC_SPANMETRICS_H
#define PC_SPANMETRICS_H

#include "pc_chunk.h"
#include "pc_config.h"

typedef struct pc_spanmetrics pc_spanmetrics;

/* Returns 0 or PROFILIS_ENOMEM. cfg supplies buckets and max_series. */
int pc_spanmetrics_new(pc_spanmetrics **out, const pc_exporter_cfg *cfg);
void pc_spanmetrics_free(pc_spanmetrics *sm);
/* Counts every span of the chunk. */
void pc_spanmetrics_observe(pc_spanmetrics *sm, const pc_chunk *c);
/* Appends the families in Prometheus text format. Returns 0 or PROFILIS_ENOMEM. */
int pc_spanmetrics_render(pc_spanmetrics *sm, pf_buf *out);

#endif
