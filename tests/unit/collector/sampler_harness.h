/* Test helper for the sampler tests: chunks of hand-made spans (one service each) whose trace
 * ids carry a chosen 56-bit randomness, and a recorder for the chunks the sampler emits with
 * look-ups by (trace, span). Include after cmocka.h. */
#ifndef PC_TEST_SAMPLER_HARNESS_H
#define PC_TEST_SAMPLER_HARNESS_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chunk_builder.h"
#include "pc_sampler.h"

#define SEC 1000000000ull
#define MS 1000000ull

/* One span of a test trace. The trace id is (trace number, randomness r); parent 0 = root. */
typedef struct sp {
  uint32_t trace;
  uint64_t r;
  uint8_t sid, parent;
  const char *name;
  uint8_t status;
  uint64_t start_ns, dur_ns;
  const char *tracestate;
  const profilis_attr *attrs;
  size_t n_attrs;
} sp;

static inline void h_trace_id(uint8_t id[16], uint32_t trace, uint64_t r) {
  memset(id, 0, 16);
  memcpy(id, &trace, sizeof trace);
  id[4] = 0xab; /* never all zero */
  for (int i = 15; i >= 9; i--, r >>= 8) id[i] = (uint8_t)(r & 0xff);
}

static inline void h_span_id(uint8_t id[8], uint32_t trace, uint8_t sid) {
  memset(id, 0, 8);
  memcpy(id, &trace, sizeof trace);
  id[7] = sid;
}

/* An empty chunk of service svc (and tenant, NULL for none). */
static inline void h_chunk(tchunk *t, const char *svc, const char *tenant) {
  profilis_attr a[2] = {PROFILIS_ATTR_STR("service.name", svc),
                        PROFILIS_ATTR_STR("host.name", "h1")};
  tc_init(t, a, 2, tenant);
}

static inline void h_add(tchunk *t, const sp *s) {
  rb_span b = {.name = s->name ? s->name : "op",
               .status_code = s->status,
               .start_ns = s->start_ns ? s->start_ns : 1700000000000000000ull,
               .tracestate = s->tracestate,
               .has_parent = s->parent != 0,
               .attrs = s->attrs,
               .n_attrs = s->n_attrs,
               .kind = PROFILIS_SPAN_KIND_SERVER};
  b.end_ns = b.start_ns + (s->dur_ns ? s->dur_ns : MS);
  h_trace_id(b.trace_id, s->trace, s->r);
  h_span_id(b.span_id, s->trace, s->sid);
  if (s->parent) h_span_id(b.parent_span_id, s->trace, s->parent);
  tc_add(t, &b);
}

/* ---- what the sampler emitted ---- */

typedef struct got {
  pc_chunk **c;
  size_t n, cap;
  size_t spans;
} got;

static inline void h_emit(void *arg, pc_chunk *c) {
  got *g = (got *)arg;
  if (g->n == g->cap) {
    g->cap = g->cap ? 2 * g->cap : 16;
    g->c = (pc_chunk **)realloc(g->c, g->cap * sizeof *g->c);
    assert_non_null(g->c);
  }
  assert_true(c->modified);
  assert_true(c->n_spans > 0);
  g->c[g->n++] = c;
  g->spans += c->n_spans;
}

static inline void h_got_clear(got *g) {
  for (size_t i = 0; i < g->n; i++) assert_true(pc_chunk_unref(g->c[i]));
  free(g->c);
  memset(g, 0, sizeof *g);
}

static inline uint32_t h_trace_of(const pf_span_rec *r) {
  uint32_t t;
  memcpy(&t, r->trace_id, sizeof t);
  return t;
}

/* The emitted span (trace, sid) or NULL; *chunk gets its chunk. Fails on duplicates. */
static inline const pf_span_rec *h_find(const got *g, uint32_t trace, uint8_t sid,
                                        const pc_chunk **chunk) {
  const pf_span_rec *found = NULL;
  for (size_t i = 0; i < g->n; i++)
    for (uint32_t j = 0; j < g->c[i]->n_spans; j++) {
      const pf_span_rec *r = g->c[i]->spans[j];
      if (h_trace_of(r) == trace && r->span_id[7] == sid) {
        assert_null(found);
        found = r;
        if (chunk) *chunk = g->c[i];
      }
    }
  return found;
}

static inline size_t h_count_trace(const got *g, uint32_t trace) {
  size_t n = 0;
  for (size_t i = 0; i < g->n; i++)
    for (uint32_t j = 0; j < g->c[i]->n_spans; j++) n += h_trace_of(g->c[i]->spans[j]) == trace;
  return n;
}

/* The span's tracestate as a C string (static buffer). */
static inline const char *h_ts(const pf_span_rec *r) {
  static char buf[1024];
  size_t n = r->tracestate_len < sizeof buf - 1 ? r->tracestate_len : sizeof buf - 1;
  memcpy(buf, pf_rec_tracestate(r), n);
  buf[n] = '\0';
  return buf;
}

#endif
