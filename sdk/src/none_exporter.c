/* The "none" exporter: accepts every batch and discards it (OTEL_TRACES_EXPORTER=none). Spans
 * still go through the whole queue, so benchmarks and disabled-export setups count them. */
#include <stdlib.h>

#include "pf_exporter.h"

static int none_export(pf_exporter *e, const pf_batch *b, const pf_deadline *dl,
                       uint64_t *rejected) {
  *rejected = 0;
  return 0;
}

static void none_destroy(pf_exporter *e) { free(e); }

int pf_none_exporter_new(pf_exporter **out, const pf_config *cfg) {
  pf_exporter *e = calloc(1, sizeof *e);
  if (!e) return PROFILIS_ENOMEM;
  e->name = "none";
  e->export_batch = none_export;
  e->destroy = none_destroy;
  *out = e;
  return 0;
}
