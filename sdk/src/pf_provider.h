/* Provider, tracer and span internals shared by provider.c and span.c. Internal. */
#ifndef PF_PROVIDER_H
#define PF_PROVIDER_H

#include "pf_bsp.h"
#include "pf_config.h"
#include "pf_exporter.h"

struct profilis_tracer {
  pf_scope scope;
  profilis_provider *provider;
  struct profilis_tracer *next;
};

struct profilis_provider {
  pf_config cfg;
  pf_resource resource;
  pf_bsp bsp;
  bool disabled;   /* OTEL_SDK_DISABLED: every span is a no-op */
  bool bsp_ready;  /* bsp started */
  uint64_t sampler_threshold;
  pthread_mutex_t tracers_mu;
  profilis_tracer *tracers;
  uint32_t n_tracers;
  _Alignas(64) _Atomic uint64_t started;
  _Atomic uint64_t sampled_out;
  struct profilis_provider *next_live; /* registry for fork handling */
};

struct profilis_span {
  pf_span_rec rec; /* ids, times, kind, status, counts; sections below */
  profilis_tracer *tracer;
  pf_buf name, status_msg, tracestate, attrs, events, links;
  /* bit (n % 64) set when an attribute entry with an n-byte key was added: a new key whose
   * length has no bit cannot replace anything, so the duplicate search is skipped */
  uint64_t attr_key_lens;
  bool recording;
  bool in_use;
  struct profilis_span *next_free;
};

#endif

/* Test and embedding hook: a provider whose exporter is supplied by the caller (ownership
 * passes to the provider, also on failure). Returns as profilis_provider_new. */
int pf_provider_new_with_exporter(profilis_provider **out, const profilis_provider_opts *opts,
                                  pf_exporter *exporter);
