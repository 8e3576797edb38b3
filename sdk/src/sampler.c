/* Head sampling: the six OpenTelemetry samplers selected by OTEL_TRACES_SAMPLER.
 * TraceIdRatioBased reads the trace id's low 8 bytes as a big-endian integer and keeps the trace
 * when it is below ratio * 2^64, so every process with the same ratio makes the same choice for
 * a trace. The threshold is computed once per config; a decision is a few compares. */
#include "pf_config.h"

/* 2^64 as a double, exactly representable. */
#define TWO_POW_64 18446744073709551616.0

void pf_sampler_prepare(pf_config *cfg) {
  double r = cfg->o.sampler_ratio;
  if (!(r > 0.0)) /* 0 or NaN: never */
    cfg->ratio_threshold = 0;
  else if (r >= 1.0)
    cfg->ratio_threshold = UINT64_MAX; /* always, see ratio_keep */
  else /* r < 1 keeps the product at most 2^64 - 2^11, inside uint64_t */
    cfg->ratio_threshold = (uint64_t)(r * TWO_POW_64);
}

static bool ratio_keep(const pf_config *cfg, const uint8_t trace_id[16]) {
  if (cfg->ratio_threshold == UINT64_MAX) return true;
  uint64_t x = 0;
  for (int i = 8; i < 16; i++) x = (x << 8) | trace_id[i];
  return x < cfg->ratio_threshold;
}

/* A parent counts when both of its ids are non-zero (W3C: all-zero ids are invalid). */
static bool parent_valid(const profilis_span_context *p) {
  uint8_t t = 0, s = 0;
  for (int i = 0; i < 16; i++) t |= p->trace_id[i];
  for (int i = 0; i < 8; i++) s |= p->span_id[i];
  return t && s;
}

bool pf_sampler_should_sample(const pf_config *cfg, const profilis_span_context *parent,
                              const uint8_t trace_id[16]) {
  profilis_sampler_kind k = cfg->o.sampler;
  bool parent_based = k == PROFILIS_SAMPLER_PARENTBASED_ALWAYS_ON ||
                      k == PROFILIS_SAMPLER_PARENTBASED_ALWAYS_OFF ||
                      k == PROFILIS_SAMPLER_PARENTBASED_TRACEIDRATIO;
  /* ParentBased with the default delegates: a sampled parent (local or remote) means always_on,
   * an unsampled one always_off. */
  if (parent_based && parent && parent_valid(parent))
    return (parent->trace_flags & PROFILIS_TRACE_FLAG_SAMPLED) != 0;
  switch (k) {
  case PROFILIS_SAMPLER_ALWAYS_ON:
  case PROFILIS_SAMPLER_PARENTBASED_ALWAYS_ON: return true;
  case PROFILIS_SAMPLER_TRACEIDRATIO:
  case PROFILIS_SAMPLER_PARENTBASED_TRACEIDRATIO: return ratio_keep(cfg, trace_id);
  case PROFILIS_SAMPLER_ALWAYS_OFF:
  case PROFILIS_SAMPLER_PARENTBASED_ALWAYS_OFF: return false;
  }
  return false;
}
