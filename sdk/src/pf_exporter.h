/* What the batch span processor hands to an exporter, and the exporter interface itself.
 * An exporter runs on the processor's single exporter thread only; it needs no locking of its
 * own. Internal. */
#ifndef PF_EXPORTER_H
#define PF_EXPORTER_H

#include "pf_buf.h"
#include "pf_config.h"
#include "pf_record.h"
#include "pf_time.h"

/* An instrumentation scope (one per tracer). */
typedef struct pf_scope {
  char *name;
  char *version;
  uint32_t index; /* dense id, 0..n-1 in creation order */
} pf_scope;

/* The provider's resource: attributes in the record attribute format (pf_record.h). */
typedef struct pf_resource {
  pf_buf attrs;
  uint32_t n_attrs;
} pf_resource;

/* Builds the resource: service.name, telemetry.sdk.{name="profilis",language="c",version},
 * then OTEL_RESOURCE_ATTRIBUTES (cfg->o.resource_attributes); service.name from
 * cfg->o.service_name wins over the attribute list. Returns 0 or PROFILIS_ENOMEM. */
int pf_resource_build(pf_resource *out, const pf_config *cfg);
void pf_resource_free(pf_resource *r);

typedef struct pf_batch {
  const pf_resource *resource;
  const pf_span_rec *const *spans;
  size_t n;
} pf_batch;

typedef struct pf_exporter pf_exporter;
struct pf_exporter {
  const char *name;
  /* Delivers a batch. Retries (where the exporter retries) happen inside, until the deadline.
   * Returns 0 when the batch was accepted (*rejected = spans the backend refused through
   * partial_success, else 0), PROFILIS_EPERMANENT for a non-retryable failure, or
   * PROFILIS_ETIMEDOUT / PROFILIS_ECANCELED / PROFILIS_ERETRYABLE when retries ran out. */
  int (*export_batch)(pf_exporter *e, const pf_batch *b, const pf_deadline *dl,
                      uint64_t *rejected);
  /* Called in a forked child before the exporter is used again: drop connections inherited
   * from the parent without touching the parent's peer state. May be NULL. */
  void (*after_fork_child)(pf_exporter *e);
  void (*destroy)(pf_exporter *e);
  _Atomic uint64_t retries; /* export attempts beyond the first, for stats */
};

/* Exporter constructors. Return 0, PROFILIS_ENOMEM, or PROFILIS_EIO / PROFILIS_EINVAL when the
 * configuration cannot work (unreadable file, bad endpoint), with the reason logged. */
int pf_otlp_exporter_new(pf_exporter **out, const pf_config *cfg);
int pf_console_exporter_new(pf_exporter **out, const pf_config *cfg);
int pf_jsonl_exporter_new(pf_exporter **out, const pf_config *cfg);
int pf_none_exporter_new(pf_exporter **out, const pf_config *cfg);

/* OTLP protobuf encoding of a batch as an ExportTraceServiceRequest: one ResourceSpans, one
 * ScopeSpans per scope present (in order of first appearance). Appends to out.
 * Returns 0 or PROFILIS_ENOMEM. */
int pf_otlp_encode_request(pf_buf *out, const pf_batch *b);

#endif
