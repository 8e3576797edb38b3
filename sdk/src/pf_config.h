/* The provider's resolved configuration: the caller's options with OTEL_* environment
 * variables applied, validated, and every string owned. Internal. */
#ifndef PF_CONFIG_H
#define PF_CONFIG_H

#include "profilis/trace.h"

typedef struct pf_header {
  char *key; /* lowercase */
  char *value;
} pf_header;

typedef struct pf_config {
  profilis_provider_opts o; /* string fields point at owned copies below (or NULL) */
  char *owned[16];          /* copies of every string field, freed by pf_config_free */
  size_t n_owned;
  pf_header *headers; /* parsed o.headers, percent-decoded */
  size_t n_headers;
  unsigned propagators; /* PROFILIS_PROPAGATOR_* mask */
  /* TraceIdRatioBased, precomputed by pf_sampler_prepare(): a trace is kept when its id's low
   * 8 bytes (big-endian) are below this; UINT64_MAX keeps every trace (ratio 1). */
  uint64_t ratio_threshold;
} pf_config;

/* Copies opts (NULL = defaults) into out, then, when opts->use_env, applies the environment.
 * Bad values are logged (pf_log WARN, naming the variable) and ignored. String fields that
 * have a default (endpoint, propagators, jsonl_path) are never NULL afterwards. Returns 0,
 * PROFILIS_ENOMEM, or PROFILIS_EINVAL (NULL out, or opts->size too small to be initialised);
 * on error out holds nothing to free. */
int pf_config_resolve(pf_config *out, const profilis_provider_opts *opts);
/* Same, but reads variables through getenv_fn (tests pass their own). */
int pf_config_resolve_with(pf_config *out, const profilis_provider_opts *opts,
                           const char *(*getenv_fn)(const char *name));
void pf_config_free(pf_config *c);

/* Parses "k=v,k2=v2" (keys/values trimmed and percent-decoded) into a new array.
 * Malformed pairs are skipped and logged. Returns 0 or PROFILIS_ENOMEM. */
int pf_parse_kv_list(const char *s, pf_header **out, size_t *n_out);
void pf_free_kv_list(pf_header *h, size_t n);

/* How pf_parse_kv_list_ex treats a list. pf_parse_kv_list uses the OTLP headers rules:
 * header = true, 64 pairs, 8192 bytes. */
typedef struct pf_kv_opts {
  const char *what; /* names the list in log lines, e.g. "OTEL_RESOURCE_ATTRIBUTES" */
  bool header;      /* lowercase keys; keys [a-z0-9-_.] only, values without control chars */
  size_t max_pairs; /* later pairs are dropped with a warning */
  size_t max_bytes; /* decoded keys + values */
} pf_kv_opts;
/* Same as pf_parse_kv_list with explicit rules; an empty or NULL list gives 0 pairs.
 * Returns 0 or PROFILIS_ENOMEM. */
int pf_parse_kv_list_ex(const char *s, const pf_kv_opts *ko, pf_header **out, size_t *n_out);

/* Writes the markdown reference of every environment variable (name, type, default, meaning),
 * generated from the same table that parses them. */
void pf_config_write_env_doc(FILE *f);

/* Precomputes the sampler's threshold from cfg->o.sampler_ratio (pf_config_resolve calls it;
 * call it again after changing the ratio by hand). */
void pf_sampler_prepare(pf_config *cfg);

/* Sampler decision for a new span: parent is NULL for a root span. A pure function of the
 * configuration, the parent's flags/remoteness and the trace id, so separate processes with
 * the same ratio agree (the ratio compares the trace id's low 8 bytes, big-endian, with
 * ratio * 2^64, as the OpenTelemetry TraceIdRatioBased sampler does). */
bool pf_sampler_should_sample(const pf_config *cfg, const profilis_span_context *parent,
                              const uint8_t trace_id[16]);

#endif
