/* The collector's own metrics: counters and gauges, each a named family with a fixed set of
 * label values per series, rendered in the Prometheus text format. Updating a series is one
 * relaxed atomic; creating one takes a lock (do it once, keep the pointer). Span-derived RED
 * metrics live in pc_spanmetrics.h and are rendered after these. Internal. */
#ifndef PC_METRICS_H
#define PC_METRICS_H

#include <stdatomic.h>
#include <stdint.h>

#include "pf_buf.h"

typedef struct pc_metrics pc_metrics;

typedef struct pc_series {
  _Atomic uint64_t value;  /* counters */
  _Atomic int64_t gauge;   /* gauges */
} pc_series;

/* PC_GAUGE_MILLI: a gauge set in thousandths (pc_gauge_set(s, v * 1000)), rendered as v with
 * three decimals, for rates and other fractional values. */
typedef enum pc_metric_kind { PC_COUNTER = 1, PC_GAUGE = 2, PC_GAUGE_MILLI = 3 } pc_metric_kind;

int pc_metrics_new(pc_metrics **out);
void pc_metrics_free(pc_metrics *m);
/* Gets or creates the series `name{labels}`; labels is the inside of the braces, already
 * escaped, e.g. `exporter="jsonl/main"`, or "" for none. The pointer stays valid until
 * pc_metrics_free. Returns NULL only on allocation failure (then updates are skipped by the
 * helpers below). */
pc_series *pc_metrics_series(pc_metrics *m, pc_metric_kind kind, const char *name,
                             const char *help, const char *labels);
static inline void pc_counter_add(pc_series *s, uint64_t v) {
  if (s) atomic_fetch_add_explicit(&s->value, v, memory_order_relaxed);
}
static inline void pc_gauge_set(pc_series *s, int64_t v) {
  if (s) atomic_store_explicit(&s->gauge, v, memory_order_relaxed);
}
static inline void pc_gauge_add(pc_series *s, int64_t v) {
  if (s) atomic_fetch_add_explicit(&s->gauge, v, memory_order_relaxed);
}
/* A gauge computed at scrape time. */
typedef int64_t (*pc_gauge_fn)(void *arg);
int pc_metrics_gauge_fn(pc_metrics *m, const char *name, const char *help, const char *labels,
                        pc_gauge_fn fn, void *arg);
/* Appends every family (# HELP, # TYPE, samples) in the text exposition format 0.0.4.
 * Returns 0 or PROFILIS_ENOMEM. */
int pc_metrics_render(pc_metrics *m, pf_buf *out);
/* Escapes a label value (\\, \", \n) into dst (cap bytes, NUL-terminated, truncated). */
void pc_label_escape(char *dst, size_t cap, const char *s, size_t n);

#endif
