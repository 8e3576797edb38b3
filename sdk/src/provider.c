/* Tracer provider: resolves configuration, builds the resource, creates the exporter and the
 * batch span processor, hands out tracers per instrumentation scope, and keeps a registry of
 * live providers so pthread_atfork handlers can make fork() safe (no lock is held across the
 * fork, and the child restarts its exporter thread with a fresh connection). */
#include <stdlib.h>
#include <string.h>

#include "pf_provider.h"
#include "profilis/propagation.h"

void pf_span_fork_child(void);

static pthread_mutex_t live_mu = PTHREAD_MUTEX_INITIALIZER;
static profilis_provider *live_list;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

static void fork_prepare(void) {
  pthread_mutex_lock(&live_mu);
  for (profilis_provider *p = live_list; p; p = p->next_live) pf_bsp_fork_prepare(&p->bsp);
}

static void fork_parent(void) {
  for (profilis_provider *p = live_list; p; p = p->next_live) pf_bsp_fork_parent(&p->bsp);
  pthread_mutex_unlock(&live_mu);
}

static void fork_child(void) {
  pthread_mutex_init(&live_mu, NULL);
  pf_span_fork_child();
  for (profilis_provider *p = live_list; p; p = p->next_live) {
    atomic_store(&p->started, 0); /* the child's counters describe the child's spans */
    atomic_store(&p->sampled_out, 0);
    pf_bsp_fork_child(&p->bsp);
  }
}

static void atfork_init(void) { pthread_atfork(fork_prepare, fork_parent, fork_child); }

static void live_add(profilis_provider *p) {
  pthread_once(&atfork_once, atfork_init);
  pthread_mutex_lock(&live_mu);
  p->next_live = live_list;
  live_list = p;
  pthread_mutex_unlock(&live_mu);
}

static void live_remove(profilis_provider *p) {
  pthread_mutex_lock(&live_mu);
  for (profilis_provider **pp = &live_list; *pp; pp = &(*pp)->next_live) {
    if (*pp == p) {
      *pp = p->next_live;
      break;
    }
  }
  pthread_mutex_unlock(&live_mu);
}

static int exporter_new(pf_exporter **out, const pf_config *cfg) {
  switch (cfg->o.exporter) {
  case PROFILIS_EXPORTER_OTLP:
    return pf_otlp_exporter_new(out, cfg);
  case PROFILIS_EXPORTER_CONSOLE:
    return pf_console_exporter_new(out, cfg);
  case PROFILIS_EXPORTER_JSONL:
    return pf_jsonl_exporter_new(out, cfg);
  case PROFILIS_EXPORTER_NONE:
  default:
    return pf_none_exporter_new(out, cfg);
  }
}

/* Keeps limits inside what the record format can count and the queue can hold. */
static void clamp_config(pf_config *c) {
  profilis_provider_opts *o = &c->o;
  uint32_t *limits[] = {&o->attribute_count_limit, &o->event_count_limit, &o->link_count_limit,
                        &o->event_attribute_count_limit, &o->link_attribute_count_limit};
  for (size_t i = 0; i < sizeof limits / sizeof limits[0]; i++)
    if (*limits[i] > UINT16_MAX) *limits[i] = UINT16_MAX;
  if (o->max_queue_size == 0) o->max_queue_size = 2048;
  if (o->max_export_batch_size == 0) o->max_export_batch_size = 512;
  if (o->max_export_batch_size > o->max_queue_size) o->max_export_batch_size = o->max_queue_size;
  if (o->max_queue_bytes < 64 * 1024) o->max_queue_bytes = 64 * 1024;
  if (o->export_timeout_ms == 0) o->export_timeout_ms = 30000;
  if (o->schedule_delay_ms == 0) o->schedule_delay_ms = 1;
}

static int provider_start(profilis_provider *p, pf_exporter *e) {
  int rc = pf_resource_build(&p->resource, &p->cfg);
  if (rc) {
    if (e) e->destroy(e);
    return rc;
  }
  if (!e) rc = exporter_new(&e, &p->cfg);
  if (rc) return rc;
  rc = pf_bsp_start(&p->bsp, &p->cfg, e, &p->resource);
  p->bsp_ready = true; /* from here pf_bsp_destroy owns the exporter */
  return rc;
}

int profilis_provider_new(profilis_provider **out, const profilis_provider_opts *opts) {
  return pf_provider_new_with_exporter(out, opts, NULL);
}

int pf_provider_new_with_exporter(profilis_provider **out, const profilis_provider_opts *opts,
                                  pf_exporter *exporter) {
  if (!out) {
    if (exporter) exporter->destroy(exporter);
    return PROFILIS_EINVAL;
  }
  *out = NULL;
  profilis_provider *p = calloc(1, sizeof *p);
  if (!p) {
    if (exporter) exporter->destroy(exporter);
    return PROFILIS_ENOMEM;
  }
  pthread_mutex_init(&p->tracers_mu, NULL);
  int rc = pf_config_resolve(&p->cfg, opts);
  if (rc) {
    if (exporter) exporter->destroy(exporter);
    goto fail;
  }
  clamp_config(&p->cfg);
  p->disabled = p->cfg.o.disabled;
  if (p->disabled && exporter) exporter->destroy(exporter);
  if (!p->disabled) {
    rc = provider_start(p, exporter);
    if (rc) goto fail;
    live_add(p);
  }
  *out = p;
  return 0;
fail:
  pf_log(PF_LOG_ERROR, "tracer provider not created: %s", profilis_strerror(rc));
  if (p->bsp_ready) {
    pf_bsp_shutdown(&p->bsp, 100);
    pf_bsp_destroy(&p->bsp);
  }
  pf_resource_free(&p->resource);
  pf_config_free(&p->cfg);
  pthread_mutex_destroy(&p->tracers_mu);
  free(p);
  return rc;
}

int profilis_provider_force_flush(profilis_provider *p, uint32_t timeout_ms) {
  if (!p) return PROFILIS_EINVAL;
  if (p->disabled) return 0;
  return pf_bsp_flush(&p->bsp, timeout_ms);
}

int profilis_provider_shutdown(profilis_provider *p, uint32_t timeout_ms) {
  if (!p) return PROFILIS_EINVAL;
  if (p->disabled) return 0;
  return pf_bsp_shutdown(&p->bsp, timeout_ms);
}

void profilis_provider_free(profilis_provider *p) {
  if (!p) return;
  if (!p->disabled) {
    pf_bsp_shutdown(&p->bsp, p->cfg.o.export_timeout_ms);
    live_remove(p);
    if (!pf_bsp_destroy(&p->bsp)) {
      pf_log(PF_LOG_ERROR, "exporter thread did not stop; provider memory left allocated");
      return;
    }
  }
  for (profilis_tracer *t = p->tracers; t;) {
    profilis_tracer *next = t->next;
    free(t->scope.name);
    free(t->scope.version);
    free(t);
    t = next;
  }
  pf_resource_free(&p->resource);
  pf_config_free(&p->cfg);
  pthread_mutex_destroy(&p->tracers_mu);
  free(p);
}

int profilis_provider_stats(const profilis_provider *p, profilis_stats *out) {
  if (!p || !out) return PROFILIS_EINVAL;
  memset(out, 0, sizeof *out);
  out->spans_started = atomic_load(&p->started);
  out->spans_sampled_out = atomic_load(&p->sampled_out);
  if (p->disabled) return 0;
  pf_bsp *b = (pf_bsp *)&p->bsp;
  out->spans_queued = pf_ring_total(&b->ring);
  out->spans_exported = atomic_load(&b->exported);
  out->spans_dropped = atomic_load(&b->dropped);
  out->spans_failed = atomic_load(&b->failed);
  out->spans_rejected = atomic_load(&b->rejected);
  out->spans_ended = out->spans_queued + out->spans_dropped;
  out->queue_depth = pf_ring_count(&b->ring);
  out->queue_bytes = pf_ring_bytes(&b->ring);
  out->export_batches = atomic_load(&b->batches);
  out->export_retries = b->exporter ? atomic_load(&b->exporter->retries) : 0;
  return 0;
}

static bool str_eq(const char *a, const char *b) {
  return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

int profilis_tracer_get(profilis_provider *p, const char *scope_name, const char *scope_version,
                        profilis_tracer **out) {
  if (!p || !out) return PROFILIS_EINVAL;
  if (!scope_name) scope_name = "";
  int rc = 0;
  pthread_mutex_lock(&p->tracers_mu);
  profilis_tracer *t;
  for (t = p->tracers; t; t = t->next)
    if (str_eq(t->scope.name, scope_name) && str_eq(t->scope.version, scope_version)) break;
  if (!t) {
    t = calloc(1, sizeof *t);
    if (t) t->scope.name = strdup(scope_name);
    if (t && scope_version) t->scope.version = strdup(scope_version);
    if (!t || !t->scope.name || (scope_version && !t->scope.version)) {
      if (t) {
        free(t->scope.name);
        free(t->scope.version); /* set even when the name's copy failed */
      }
      free(t);
      t = NULL;
      rc = PROFILIS_ENOMEM;
    } else {
      t->provider = p;
      t->scope.index = p->n_tracers++;
      t->next = p->tracers;
      p->tracers = t;
    }
  }
  pthread_mutex_unlock(&p->tracers_mu);
  *out = t;
  return rc;
}

unsigned profilis_provider_propagators(const profilis_provider *p) {
  return p ? p->cfg.propagators : (PROFILIS_PROPAGATOR_TRACECONTEXT | PROFILIS_PROPAGATOR_BAGGAGE);
}
