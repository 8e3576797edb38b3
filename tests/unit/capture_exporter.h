/* A test exporter that keeps copies of every exported record, and can be told to stall (to
 * fill the queue) or to fail. It is an in-process stand-in for a backend, used only where a
 * test needs to look at records before any encoding; wire-level tests use real servers. */
#ifndef CAPTURE_EXPORTER_H
#define CAPTURE_EXPORTER_H

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "pf_exporter.h"

typedef struct cap_exporter {
  pf_exporter base;
  pthread_mutex_t mu;
  pf_span_rec **recs;
  size_t n, cap;
  size_t batches;
  atomic_int stall; /* 1: hold every export until the deadline (or cancel) */
  int fail_with;    /* non-zero: return this code */
  int *destroyed;   /* set to 1 on destroy when non-NULL */
} cap_exporter;

static inline int cap_export(pf_exporter *e, const pf_batch *b, const pf_deadline *dl,
                      uint64_t *rejected) {
  cap_exporter *c = (cap_exporter *)e;
  *rejected = 0;
  while (atomic_load(&c->stall)) {
    if (pf_deadline_expired(dl)) return PROFILIS_ETIMEDOUT;
    struct timespec ts = {0, 1000000};
    nanosleep(&ts, NULL);
  }
  if (c->fail_with) return c->fail_with;
  pthread_mutex_lock(&c->mu);
  if (c->n + b->n > c->cap) {
    c->cap = (c->n + b->n) * 2;
    c->recs = realloc(c->recs, c->cap * sizeof *c->recs);
  }
  for (size_t i = 0; i < b->n; i++) {
    c->recs[c->n] = malloc(b->spans[i]->size);
    memcpy(c->recs[c->n], b->spans[i], b->spans[i]->size);
    c->n++;
  }
  c->batches++;
  pthread_mutex_unlock(&c->mu);
  return 0;
}

static inline void cap_destroy(pf_exporter *e) {
  cap_exporter *c = (cap_exporter *)e;
  if (c->destroyed) *c->destroyed = 1;
  /* records stay readable until cap_free; only the exporter role ends here */
}

static inline cap_exporter *cap_new(void) {
  cap_exporter *c = calloc(1, sizeof *c);
  c->base.name = "capture";
  c->base.export_batch = cap_export;
  c->base.destroy = cap_destroy;
  pthread_mutex_init(&c->mu, NULL);
  return c;
}

static inline void cap_free(cap_exporter *c) {
  for (size_t i = 0; i < c->n; i++) free(c->recs[i]);
  free(c->recs);
  pthread_mutex_destroy(&c->mu);
  free(c);
}

/* Finds a captured record by name (first match) or NULL. */
static inline const pf_span_rec *cap_find(cap_exporter *c, const char *name) {
  for (size_t i = 0; i < c->n; i++)
    if (c->recs[i]->name_len == strlen(name) && !memcmp(pf_rec_name(c->recs[i]), name, c->recs[i]->name_len))
      return c->recs[i];
  return NULL;
}

/* Looks up an attribute of a record by key. */
static inline bool rec_attr(const pf_span_rec *r, const char *key, pf_attr_view *out) {
  size_t off = 0;
  while (pf_attr_next(pf_rec_attrs(r), r->attrs_len, &off, out))
    if (out->key_len == strlen(key) && !memcmp(out->key, key, out->key_len)) return true;
  return false;
}

#endif
