/* Allocation-failure sweep of the SDK: malloc, calloc, realloc, free and strdup are replaced at
 * link time (-Wl,--wrap, see tests/integration/sdk_failmalloc.cmake) by counting versions that
 * fail the i-th allocation. Each scenario (spans through a provider, W3C propagation, OTLP
 * encoding, configuration from the environment) runs once per i until it no longer reaches the
 * i-th allocation; every call must return 0 or a PROFILIS_E* code, whatever a call reported as
 * done must be in the output (spans not exported are counted as dropped), and nothing may stay
 * allocated. Only calls from objects linked into this program are counted: allocations inside
 * libc (stdio, pthread_create, setenv), OpenSSL, nghttp2 and protobuf-c are not.
 * The provider runs an exporter thread, so the counters are atomic; it exports only on flush
 * and shutdown here, so every run allocates in the same order. Span scenarios run in a fresh
 * thread per i because the SDK keeps ended spans in a per-thread pool freed at thread exit.
 * A span start that cannot copy the name or the parent's tracestate fails with ENOMEM; start
 * attributes and links that cannot be stored are counted as dropped (this sweep found both
 * once lost silently). */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "failmalloc_wrap.h"
#include "pf_exporter.h"
#include "pf_log.h"
#include "pf_provider.h"
#include "profilis/profilis.h"
#include "rec_builder.h"

/* ---- counting allocator (failmalloc_wrap.h) ---- */

static void arm(long fail_at) {
  atomic_store(&g_calls, 0);
  atomic_store(&g_live, 0);
  atomic_store(&g_fail_at, fail_at);
  atomic_store(&g_armed, true);
}

/* Disarms; returns the number of allocation attempts made while armed. */
static long disarm(void) {
  atomic_store(&g_armed, false);
  return atomic_load(&g_calls);
}

/* ---- checks that work off the cmocka thread ---- */

typedef struct outcome {
  int line; /* first failed check, 0 = none */
  const char *what;
  const char *span; /* the span whose record failed a check, if any */
} outcome;

static outcome g_out;

#define CHECK(c)                                                                                   \
  do {                                                                                             \
    if (!(c) && !g_out.line) g_out = (outcome){__LINE__, #c, NULL};                                \
  } while (0)

/* Every call here gets valid input, so out of memory is the only acceptable error. */
static bool ok(int rc) {
  CHECK(rc == 0 || rc == PROFILIS_ENOMEM);
  return rc == 0;
}

typedef struct job {
  void (*fn)(void *);
  void *arg;
} job;

static void *job_main(void *p) {
  job *j = p;
  j->fn(j->arg);
  return NULL;
}

/* Runs fn(arg) for fail_at = -1 (nothing fails, returns the allocation count) and then for
 * every i below that count, each time in a fresh thread when `threaded`. */
static long sweep(void (*fn)(void *), void *arg, bool threaded, long min_points) {
  long i = -1, points = 0;
  for (;; i++) {
    memset(&g_out, 0, sizeof g_out);
    arm(i);
    if (threaded) {
      pthread_t th;
      job j = {fn, arg};
      assert_int_equal(pthread_create(&th, NULL, job_main, &j), 0);
      pthread_join(th, NULL);
    } else {
      fn(arg);
    }
    long calls = disarm();
    if (g_out.line)
      print_message("fail_at=%ld: check at line %d failed: %s%s%s\n", i, g_out.line, g_out.what,
                    g_out.span ? " for span " : "", g_out.span ? g_out.span : "");
    assert_int_equal(g_out.line, 0);
    if (atomic_load(&g_live) != 0)
      print_message("fail_at=%ld: %ld allocations leaked\n", i, atomic_load(&g_live));
    assert_int_equal(atomic_load(&g_live), 0);
    if (i < 0)
      points = calls;
    else if (calls <= i)
      break; /* the i-th allocation was never reached: done */
  }
  assert_true(points >= min_points);
  assert_int_equal(i, points); /* the run is deterministic: the sweep covered every point */
  print_message("%ld allocation points\n", points);
  return points;
}

/* ---- a capturing exporter that never allocates ---- */

#define ARENA (512 * 1024)
#define MAX_RECS 32

typedef struct arena_exporter {
  pf_exporter base;
  _Alignas(16) uint8_t bytes[ARENA];
  size_t used;
  const pf_span_rec *recs[MAX_RECS];
  size_t n;
  bool overflow, destroyed;
} arena_exporter;

static arena_exporter g_cap;

static int arena_export(pf_exporter *e, const pf_batch *b, const pf_deadline *dl,
                        uint64_t *rejected) {
  arena_exporter *a = (arena_exporter *)e;
  (void)dl;
  *rejected = 0;
  for (size_t i = 0; i < b->n; i++) {
    size_t size = (b->spans[i]->size + 15u) & ~(size_t)15u;
    if (a->n == MAX_RECS || size > ARENA - a->used) {
      a->overflow = true;
      continue;
    }
    memcpy(a->bytes + a->used, b->spans[i], b->spans[i]->size);
    a->recs[a->n++] = (const pf_span_rec *)(const void *)(a->bytes + a->used);
    a->used += size;
  }
  return 0;
}

static void arena_destroy(pf_exporter *e) { ((arena_exporter *)e)->destroyed = true; }

static void arena_reset(void) {
  memset(&g_cap.base, 0, sizeof g_cap.base);
  g_cap.base.name = "arena";
  g_cap.base.export_batch = arena_export;
  g_cap.base.destroy = arena_destroy;
  g_cap.used = g_cap.n = 0;
  g_cap.overflow = g_cap.destroyed = false;
}

static const pf_span_rec *arena_find(const uint8_t span_id[8]) {
  for (size_t i = 0; i < g_cap.n; i++)
    if (!memcmp(g_cap.recs[i]->span_id, span_id, 8)) return g_cap.recs[i];
  return NULL;
}

/* ---- scenario 1: spans through a provider ---- */

/* What a span must look like once exported, from the calls that reported success. Attribute
 * counts are a range: a failed overwrite may or may not have removed the old value. */
typedef struct expect {
  bool started; /* recording span handed out */
  profilis_span_context ctx;
  const char *name, *alt_name; /* alt_name: also acceptable (after a failed rename) */
  unsigned attrs_min, attrs_max;
  unsigned events, events_maybe, links;
  unsigned start_attrs, start_links; /* given in profilis_span_opts */
  int status;                        /* -1: not checked */
  const char *status_msg;            /* NULL: not checked */
  const char *tracestate;
  bool has_parent;
  uint8_t parent_span_id[8];
} expect;

static void exp_start(expect *e, profilis_span *s, const char *name) {
  memset(e, 0, sizeof *e);
  e->started = profilis_span_is_recording(s);
  e->name = name;
  e->status = -1;
  e->tracestate = "";
  profilis_span_get_context(s, &e->ctx);
}

/* A call on a span: ENOTRECORDING is right (and only right) for a span that failed to start. */
static bool span_ok(const expect *e, int rc) {
  if (!e->started) {
    CHECK(rc == PROFILIS_ENOTRECORDING);
    return false;
  }
  return ok(rc);
}

/* A set of a new key. */
static void exp_attr(expect *e, int rc) {
  if (span_ok(e, rc)) e->attrs_min++, e->attrs_max++;
}

/* A set of a key set before (present says whether that earlier set succeeded). */
static void exp_overwrite(expect *e, int rc, bool present) {
  if (span_ok(e, rc)) {
    if (!present) e->attrs_min++, e->attrs_max++;
  } else if (present) {
    e->attrs_min--; /* the old entry may be gone */
  }
}

static const char *const g_sa[] = {"alpha", "beta", "gamma"};
static const bool g_ba[] = {true, false, true};
static const int64_t g_ia[] = {1, -2, 3, INT64_MAX};
static const double g_da[] = {0.5, -1.25, 1e300};

#define ATTR_ARR(k, t, f, arr)                                                                     \
  ((profilis_attr){.key = (k), .type = (t), .len = sizeof(arr) / sizeof((arr)[0]), .v.f = (arr)})

static const profilis_attr g_start_attrs[] = {
    PROFILIS_ATTR_STR("s", "value"),
    PROFILIS_ATTR_BOOL("b", true),
    PROFILIS_ATTR_INT("i", -42),
    PROFILIS_ATTR_DOUBLE("d", 3.5),
    ATTR_ARR("sa", PROFILIS_ATTR_STRING_ARRAY, sa, g_sa),
    ATTR_ARR("ba", PROFILIS_ATTR_BOOL_ARRAY, ba, g_ba),
    ATTR_ARR("ia", PROFILIS_ATTR_INT_ARRAY, ia, g_ia),
    ATTR_ARR("da", PROFILIS_ATTR_DOUBLE_ARRAY, da, g_da),
};
#define N_START_ATTRS (sizeof g_start_attrs / sizeof g_start_attrs[0])

enum { SP_ROOT, SP_CHILD, SP_REMOTE, SP_STACKED, SP_BIG, SP_SCOPED, SP_N };

typedef struct spans_run {
  expect e[SP_N];
  char long_name[301];
  char blob[70001];
  profilis_span_context remote, linked;
  uint64_t started;
} spans_run;

static spans_run g_sr;

static void make_ctx(profilis_span_context *c, uint8_t seed, const char *tracestate) {
  memset(c, 0, sizeof *c);
  rb_id(c->trace_id, 16, seed);
  rb_id(c->span_id, 8, (uint8_t)(seed + 100));
  c->trace_flags = PROFILIS_TRACE_FLAG_SAMPLED;
  c->is_remote = 1;
  CHECK(profilis_tracestate_parse(tracestate, strlen(tracestate), c) == 0);
}

static void child_calls(spans_run *r, profilis_span *c) {
  expect *e = &r->e[SP_CHILD];
  exp_attr(e, profilis_span_set_str(c, "http.method", "GET"));
  bool method = e->attrs_max == 1;
  exp_attr(e, profilis_span_set_strn(c, "strn", "abcdef", 3));
  exp_attr(e, profilis_span_set_bool(c, "ok", true));
  exp_attr(e, profilis_span_set_int(c, "n", 7));
  exp_attr(e, profilis_span_set_double(c, "ratio", 0.25));
  exp_attr(e, profilis_span_set_str(c, "utf8", "caf\xc3\xa9 \xff")); /* repaired: slow path */
  for (size_t i = 4; i < N_START_ATTRS; i++) {
    profilis_attr a = g_start_attrs[i];
    a.key = i == 4 ? "c.sa" : i == 5 ? "c.ba" : i == 6 ? "c.ia" : "c.da";
    exp_attr(e, profilis_span_set_attr(c, &a));
  }
  exp_overwrite(e, profilis_span_set_str(c, "http.method", "POST"), method);
  for (int i = 0; i < 24; i++) { /* grows the attribute section past its first buffer */
    char key[16];
    snprintf(key, sizeof key, "k%02d", i);
    exp_attr(e, profilis_span_set_str(c, key, "0123456789012345678901234567890123456789"));
  }
  profilis_attr ev_attrs[] = {PROFILIS_ATTR_STR("e.s", "x"), PROFILIS_ATTR_INT("e.i", 1),
                              ATTR_ARR("e.ia", PROFILIS_ATTR_INT_ARRAY, ia, g_ia)};
  if (span_ok(e, profilis_span_add_event(c, "ev1", 0, ev_attrs, 3))) e->events++;
  if (span_ok(e, profilis_span_add_event(c, "ev2", 0, NULL, 0))) e->events++;
  int rc = profilis_span_record_exception(c, "E", "boom");
  span_ok(e, rc);
  e->status = PROFILIS_STATUS_ERROR; /* set before anything that can fail */
  profilis_attr ln_attrs[] = {PROFILIS_ATTR_BOOL("l.b", false), PROFILIS_ATTR_STR("l.s", "y")};
  int lrc = profilis_span_add_link(c, &r->linked, ln_attrs, 2);
  if (span_ok(e, lrc)) e->links++;
  int src = profilis_span_set_status(c, PROFILIS_STATUS_ERROR, "final");
  e->status_msg = span_ok(e, src) ? "final" : "";
  if (span_ok(e, profilis_span_update_name(c, r->long_name)))
    e->name = r->long_name;
  else
    e->alt_name = ""; /* the old name is cleared before the copy fails (reported) */
  /* record_exception: on failure either its event or its status message is missing */
  if (rc == 0)
    e->events++;
  else if (e->started)
    e->events_maybe = 1;
}

static void spans_body(spans_run *r, profilis_tracer *t, profilis_tracer *t2) {
  profilis_span *root, *remote, *stacked;
  profilis_span_opts so = {.size = sizeof so,
                           .kind = PROFILIS_SPAN_KIND_SERVER,
                           .root = true,
                           .attrs = g_start_attrs,
                           .n_attrs = N_START_ATTRS,
                           .links = &r->linked,
                           .n_links = 1};
  ok(profilis_span_start(t, "root", &so, &root));
  exp_start(&r->e[SP_ROOT], root, "root");
  r->e[SP_ROOT].attrs_min = r->e[SP_ROOT].attrs_max = N_START_ATTRS;
  r->e[SP_ROOT].links = 1;
  r->e[SP_ROOT].start_attrs = N_START_ATTRS;
  r->e[SP_ROOT].start_links = 1;
  CHECK(profilis_context_push(root) == 0);

  profilis_span *child = profilis_span_begin(t2, "child");
  exp_start(&r->e[SP_CHILD], child, "child");
  if (r->e[SP_ROOT].started) {
    r->e[SP_CHILD].has_parent = true;
    memcpy(r->e[SP_CHILD].parent_span_id, r->e[SP_ROOT].ctx.span_id, 8);
  }
  child_calls(r, child);
  CHECK(profilis_context_push(child) == 0);

  profilis_span_opts ro = {.size = sizeof ro, .parent = &r->remote};
  ok(profilis_span_start(t, "remote-child", &ro, &remote));
  exp_start(&r->e[SP_REMOTE], remote, "remote-child");
  r->e[SP_REMOTE].tracestate = r->remote.tracestate;
  r->e[SP_REMOTE].has_parent = true;
  memcpy(r->e[SP_REMOTE].parent_span_id, r->remote.span_id, 8);
  exp_attr(&r->e[SP_REMOTE], profilis_span_set_int(remote, "depth", 3));
  CHECK(profilis_context_push(remote) == 0);
  stacked = profilis_span_begin(t, "stacked"); /* inherits the remote tracestate */
  exp_start(&r->e[SP_STACKED], stacked, "stacked");
  if (r->e[SP_REMOTE].started) {
    r->e[SP_STACKED].tracestate = r->remote.tracestate;
    r->e[SP_STACKED].has_parent = true;
    memcpy(r->e[SP_STACKED].parent_span_id, r->e[SP_REMOTE].ctx.span_id, 8);
  }
  profilis_span_end(stacked);
  profilis_context_pop();
  profilis_span_end(remote);

  profilis_span *big = profilis_span_begin(t, "big"); /* larger than the exporter's batch buffer */
  exp_start(&r->e[SP_BIG], big, "big");
  if (r->e[SP_CHILD].started) { /* the child is still current */
    r->e[SP_BIG].has_parent = true;
    memcpy(r->e[SP_BIG].parent_span_id, r->e[SP_CHILD].ctx.span_id, 8);
  }
  exp_attr(&r->e[SP_BIG], profilis_span_set_str(big, "blob", r->blob));
  profilis_span_end(big);

  PROFILIS_SPAN(t, "scoped") {
    profilis_span *cur = profilis_context_current();
    exp_start(&r->e[SP_SCOPED], cur, "scoped");
    if (r->e[SP_CHILD].started) {
      r->e[SP_SCOPED].has_parent = true;
      memcpy(r->e[SP_SCOPED].parent_span_id, r->e[SP_CHILD].ctx.span_id, 8);
    }
    exp_attr(&r->e[SP_SCOPED], profilis_span_set_int(cur, "scoped", 1));
  }
  profilis_context_pop();
  profilis_span_end(child);
  profilis_context_pop();
  profilis_span_end(root);
  CHECK(profilis_context_current() == NULL);
}

static size_t count_events(const pf_span_rec *rec, bool *has_exception) {
  size_t off = 0, n = 0;
  pf_event_view ev;
  *has_exception = false;
  while (pf_event_next(pf_rec_events(rec), rec->events_len, &off, &ev)) {
    n++;
    if (ev.h.name_len == 9 && !memcmp(ev.name, "exception", 9)) *has_exception = true;
    /* every attribute given is either kept or counted as dropped */
    if (ev.h.name_len == 3 && !memcmp(ev.name, "ev1", 3))
      CHECK(ev.h.n_attrs + ev.h.dropped_attrs == 3);
  }
  CHECK(n == rec->n_events);
  return n;
}

static bool text_eq(const char *p, size_t n, const char *want) {
  return want && strlen(want) == n && !memcmp(p, want, n);
}

static void verify_span(const expect *e) {
  const pf_span_rec *rec = arena_find(e->ctx.span_id);
  CHECK(rec != NULL);
  if (!rec) return;
  CHECK(pf_rec_sections_fit(rec));
  CHECK(text_eq(pf_rec_name(rec), rec->name_len, e->name) ||
        text_eq(pf_rec_name(rec), rec->name_len, e->alt_name));
  /* a start attribute or link that could not be stored is counted as dropped, never lost */
  CHECK(rec->n_attrs + rec->dropped_attrs >= e->attrs_min && rec->n_attrs <= e->attrs_max &&
        rec->dropped_attrs <= e->start_attrs);
  CHECK(rec->dropped_events == 0);
  bool exc;
  size_t ev = count_events(rec, &exc);
  CHECK(ev >= e->events && ev <= e->events + e->events_maybe);
  CHECK(rec->n_links + rec->dropped_links == e->links && rec->dropped_links <= e->start_links);
  if (e->status >= 0) CHECK(rec->status_code == e->status);
  if (e->status_msg) CHECK(text_eq(pf_rec_status_msg(rec), rec->status_msg_len, e->status_msg));
  CHECK(text_eq(pf_rec_tracestate(rec), rec->tracestate_len, e->tracestate));
  CHECK(rec->has_parent == e->has_parent);
  if (e->has_parent) CHECK(!memcmp(rec->parent_span_id, e->parent_span_id, 8));
}

static void spans_scenario(void *arg) {
  spans_run *r = arg;
  memset(r->e, 0, sizeof r->e);
  arena_reset();
  profilis_provider_opts o;
  profilis_provider_opts_init(&o);
  o.use_env = false;
  o.sampler = PROFILIS_SAMPLER_ALWAYS_ON;
  o.schedule_delay_ms = 60000; /* exports only on flush/shutdown: a deterministic sweep */
  o.max_queue_bytes = 1u << 20;
  o.service_name = "sweep";
  o.resource_attributes = "deployment.environment=test,team=obs";
  profilis_provider *p = NULL;
  if (!ok(pf_provider_new_with_exporter(&p, &o, &g_cap.base))) {
    CHECK(p == NULL && g_cap.destroyed); /* the exporter was handed over and released */
    return;
  }
  profilis_tracer *t = NULL, *t2 = NULL;
  if (!ok(profilis_tracer_get(p, "sweep", "1.0", &t))) CHECK(t == NULL);
  if (t && !ok(profilis_tracer_get(p, "sweep.other", NULL, &t2))) CHECK(t2 == NULL);
  if (t && t2) spans_body(r, t, t2);
  CHECK(profilis_provider_force_flush(p, 10000) == 0);
  CHECK(profilis_provider_shutdown(p, 10000) == 0);
  profilis_stats st;
  CHECK(profilis_provider_stats(p, &st) == 0);
  uint64_t started = 0;
  for (int k = 0; k < SP_N; k++) started += r->e[k].started;
  CHECK(st.spans_started == started);
  CHECK(st.spans_ended == started);
  /* nothing here justifies a drop or a failure: every started span is exported */
  CHECK(st.spans_dropped == 0 && st.spans_failed == 0);
  CHECK(st.spans_exported == started && g_cap.n == started && !g_cap.overflow);
  CHECK(st.queue_depth == 0);
  for (int k = 0; k < SP_N; k++) {
    int before = g_out.line;
    if (r->e[k].started) verify_span(&r->e[k]);
    if (g_out.line && !before) g_out.span = r->e[k].name;
  }
  r->started = started;
  profilis_provider_free(p);
}

static void test_spans(void **state) {
  (void)state;
  spans_run *r = &g_sr;
  memset(r->long_name, 'n', sizeof r->long_name - 1);
  memset(r->blob, 'b', sizeof r->blob - 1);
  make_ctx(&r->remote, 0x10, "vendor=abc,other=1,x=y");
  make_ctx(&r->linked, 0x30, "linked=1");
  assert_int_equal(g_out.line, 0);
  sweep(spans_scenario, r, true, 20);
}

/* ---- scenario 2: W3C propagation ---- */

typedef struct hdrs {
  char traceparent[64], tracestate[1024], baggage[4096];
} hdrs;

static const char *carrier_get(void *c, const char *key) {
  hdrs *h = c;
  if (!strcmp(key, "traceparent")) return h->traceparent;
  if (!strcmp(key, "tracestate")) return h->tracestate;
  if (!strcmp(key, "baggage")) return h->baggage;
  return NULL;
}

static int carrier_set(void *c, const char *key, const char *value) {
  hdrs *h = c;
  char *dst = !strcmp(key, "traceparent")  ? h->traceparent
              : !strcmp(key, "tracestate") ? h->tracestate
              : !strcmp(key, "baggage")    ? h->baggage
                                           : NULL;
  size_t cap = !strcmp(key, "traceparent")  ? sizeof h->traceparent
               : !strcmp(key, "tracestate") ? sizeof h->tracestate
                                            : sizeof h->baggage;
  if (!dst || strlen(value) >= cap) return PROFILIS_EINVAL;
  memcpy(dst, value, strlen(value) + 1);
  return 0;
}

static hdrs g_in;

static void propagation_scenario(void *arg) {
  (void)arg;
  unsigned mask = PROFILIS_PROPAGATOR_TRACECONTEXT | PROFILIS_PROPAGATOR_BAGGAGE;
  profilis_baggage *bg = NULL;
  if (!ok(profilis_baggage_new(&bg))) return;
  profilis_span_context ctx;
  CHECK(profilis_extract(mask, carrier_get, &g_in, &ctx, bg) == 0);
  CHECK(ctx.is_remote == 1 && profilis_baggage_count(bg) == 30);
  CHECK(ctx.tracestate_len > 0 && !strncmp(ctx.tracestate, "v00=val00", 9));
  /* arguments inside the baggage itself take the copying paths, which allocate */
  const char *user = profilis_baggage_get(bg, "user");
  CHECK(user && !strcmp(user, "alice smith"));
  int rc = profilis_baggage_set(bg, "copy", user, "p=1");
  if (ok(rc))
    CHECK(!strcmp(profilis_baggage_get(bg, "copy"), "alice smith"));
  else
    CHECK(profilis_baggage_get(bg, "copy") == NULL);
  const char *nested = profilis_baggage_get(bg, "nested");
  CHECK(nested && !strcmp(nested, "x=1,y=2"));
  size_t skipped = 9;
  rc = profilis_baggage_parse(bg, nested, strlen(nested), &skipped);
  if (ok(rc))
    CHECK(skipped == 0 && !strcmp(profilis_baggage_get(bg, "y"), "2"));
  else
    CHECK(profilis_baggage_get(bg, "x") == NULL && profilis_baggage_get(bg, "y") == NULL);
  CHECK(profilis_tracestate_set(&ctx, "mine", "1") == 0);
  hdrs out = {0};
  CHECK(profilis_inject(mask, &ctx, bg, carrier_set, &out) == 0);
  CHECK(!strcmp(out.traceparent, g_in.traceparent));
  CHECK(!strncmp(out.tracestate, "mine=1,v00=val00", 16));
  CHECK(strstr(out.baggage, "user=alice%20smith") != NULL);
  profilis_span_context back;
  profilis_baggage *bg2 = NULL;
  if (ok(profilis_baggage_new(&bg2))) {
    CHECK(profilis_extract(mask, carrier_get, &out, &back, bg2) == 0);
    CHECK(profilis_baggage_count(bg2) == profilis_baggage_count(bg));
    CHECK(!strcmp(back.tracestate, ctx.tracestate));
    profilis_baggage_free(bg2);
  }
  profilis_baggage_free(bg);
}

static void test_propagation(void **state) {
  (void)state;
  snprintf(g_in.traceparent, sizeof g_in.traceparent,
           "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
  size_t n = 0;
  for (int i = 0; i < 30; i++) /* tracestate: 30 members (the limit is 32) */
    n += (size_t)snprintf(g_in.tracestate + n, sizeof g_in.tracestate - n, "%sv%02d=val%02d",
                          i ? "," : "", i, i);
  n = (size_t)snprintf(g_in.baggage, sizeof g_in.baggage,
                       "user=alice%%20smith;prop=1, nested=x%%3D1%%2Cy%%3D2");
  for (int i = 0; i < 28; i++)
    n += (size_t)snprintf(g_in.baggage + n, sizeof g_in.baggage - n, ",m%02d=v%02d", i, i);
  sweep(propagation_scenario, NULL, false, 3);
}

/* ---- scenario 3: OTLP encoding and the OTLP exporter's setup ---- */

#define MAX_ENV 64
static struct { const char *name, *value; } g_env[MAX_ENV];

static const char *fake_getenv(const char *name) {
  for (int i = 0; i < MAX_ENV && g_env[i].name; i++)
    if (!strcmp(g_env[i].name, name)) return g_env[i].value;
  return NULL;
}

static void env_fill(const char *const (*vars)[2], size_t n) {
  memset(g_env, 0, sizeof g_env);
  for (size_t i = 0; i < n && i < MAX_ENV; i++) {
    g_env[i].name = vars[i][0];
    g_env[i].value = vars[i][1];
  }
}

typedef struct encode_run {
  pf_buf recs[3];
  const pf_span_rec *ptrs[3];
  pf_buf ref;    /* the request encoded with nothing failing */
  bool make_ref; /* this (unarmed) run keeps its output as the reference */
} encode_run;

static encode_run g_er;

static void encode_scenario(void *arg) {
  encode_run *r = arg;
  profilis_provider_opts o;
  profilis_provider_opts_init(&o);
  o.endpoint = "http://127.0.0.1:4317";
  pf_config cfg;
  if (!ok(pf_config_resolve_with(&cfg, &o, fake_getenv))) return;
  CHECK(cfg.n_headers == 3);
  pf_resource res;
  if (ok(pf_resource_build(&res, &cfg))) {
    CHECK(res.n_attrs == 4 + 20);
    pf_batch b = {.resource = &res, .spans = r->ptrs, .n = 3};
    pf_buf out = {0};
    int rc = pf_otlp_encode_request(&out, &b);
    if (ok(rc) && r->make_ref) {
      r->ref = out;
      out = (pf_buf){0};
    } else if (rc == 0) {
      CHECK(out.len == r->ref.len && !memcmp(out.p, r->ref.p, out.len));
    } else {
      CHECK(out.len == 0);
    }
    pf_buf_free(&out);
    pf_resource_free(&res);
  }
  pf_exporter *e = NULL;
  if (ok(pf_otlp_exporter_new(&e, &cfg)))
    e->destroy(e);
  else
    CHECK(e == NULL);
  pf_config_free(&cfg);
}

static void test_otlp_encode(void **state) {
  (void)state;
  static const char *const vars[][2] = {
      {"OTEL_SERVICE_NAME", "encoder"},
      {"OTEL_EXPORTER_OTLP_HEADERS", "authorization=Bearer%20x,x-tenant=a,x-trace=1"},
      {"OTEL_RESOURCE_ATTRIBUTES",
       "a0=0,a1=1,a2=2,a3=3,a4=4,a5=5,a6=6,a7=7,a8=8,a9=9,b0=0,b1=1,b2=2,b3=3,b4=4,b5=5,"
       "b6=6,b7=7,b8=8,b9=%E2%9C%93"},
  };
  env_fill(vars, sizeof vars / sizeof vars[0]);
  static const pf_scope sa = {.name = "lib.a", .version = "1"}, sb = {.name = "lib.b", .index = 1};
  profilis_attr ev_attrs[] = {PROFILIS_ATTR_STR("k", "v")};
  profilis_attr attrs[] = {PROFILIS_ATTR_STR("s", "v"), PROFILIS_ATTR_INT("i", 5),
                           ATTR_ARR("da", PROFILIS_ATTR_DOUBLE_ARRAY, da, g_da)};
  rb_event events[] = {{.name = "ev", .time_ns = 5, .attrs = ev_attrs, .n_attrs = 1}};
  rb_link links[] = {{.flags = 1, .tracestate = "a=b", .attrs = ev_attrs, .n_attrs = 1}};
  rb_id(links[0].trace_id, 16, 3);
  rb_id(links[0].span_id, 8, 4);
  for (int i = 0; i < 3; i++) {
    rb_span s = {.name = i == 1 ? "second" : "span",
                 .status_msg = "bad",
                 .status_code = 2,
                 .tracestate = "x=y",
                 .kind = 2,
                 .start_ns = 10,
                 .end_ns = 20,
                 .scope = i == 2 ? &sb : &sa,
                 .attrs = attrs,
                 .n_attrs = 3,
                 .events = events,
                 .n_events = 1,
                 .links = links,
                 .n_links = 1};
    rb_id(s.trace_id, 16, (uint8_t)(i + 1));
    rb_id(s.span_id, 8, (uint8_t)(i + 50));
    memset(&g_er.recs[i], 0, sizeof g_er.recs[i]);
    assert_int_equal(rb_build(&g_er.recs[i], &s), 0);
    g_er.ptrs[i] = (const pf_span_rec *)(const void *)g_er.recs[i].p;
  }
  memset(&g_er.ref, 0, sizeof g_er.ref);
  g_er.make_ref = true;
  encode_scenario(&g_er);
  g_er.make_ref = false;
  assert_int_equal(g_out.line, 0);
  sweep(encode_scenario, &g_er, false, 10);
  assert_true(g_er.ref.len > 100);
  for (int i = 0; i < 3; i++) pf_buf_free(&g_er.recs[i]);
  pf_buf_free(&g_er.ref);
}

/* ---- scenario 4: configuration from the environment ---- */

static const char *const g_config_vars[][2] = {
    {"OTEL_SDK_DISABLED", "false"},
    {"OTEL_SERVICE_NAME", "env-service"},
    {"OTEL_RESOURCE_ATTRIBUTES", "host.name=h1,k8s.pod.name=p%201,service.name=ignored"},
    {"OTEL_TRACES_SAMPLER", "parentbased_traceidratio"},
    {"OTEL_TRACES_SAMPLER_ARG", "1.0"},
    {"OTEL_PROPAGATORS", "tracecontext,baggage"},
    {"OTEL_BSP_SCHEDULE_DELAY", "60000"},
    {"OTEL_BSP_EXPORT_TIMEOUT", "5000"},
    {"OTEL_BSP_MAX_QUEUE_SIZE", "256"},
    {"OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "64"},
    {"PROFILIS_BSP_MAX_QUEUE_BYTES", "256KiB"},
    {"PROFILIS_BSP_QUEUE_POLICY", "drop"},
    {"PROFILIS_BSP_BLOCK_TIMEOUT", "50"},
    {"OTEL_ATTRIBUTE_COUNT_LIMIT", "64"},
    {"OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT", "1024"},
    {"OTEL_SPAN_EVENT_COUNT_LIMIT", "32"},
    {"OTEL_SPAN_LINK_COUNT_LIMIT", "16"},
    {"OTEL_EVENT_ATTRIBUTE_COUNT_LIMIT", "8"},
    {"OTEL_LINK_ATTRIBUTE_COUNT_LIMIT", "8"},
    {"OTEL_TRACES_EXPORTER", "none"},
    {"OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317"},
    {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://127.0.0.1:14317"},
    {"OTEL_EXPORTER_OTLP_HEADERS", "a=1,b=2"},
    {"OTEL_EXPORTER_OTLP_TRACES_HEADERS", "api-key=s%3Dcret,x-scope=team,bad key=1,c=3"},
    {"OTEL_EXPORTER_OTLP_TIMEOUT", "2500"},
    {"OTEL_EXPORTER_OTLP_COMPRESSION", "gzip"},
    {"OTEL_EXPORTER_OTLP_INSECURE", "true"},
    {"OTEL_EXPORTER_OTLP_CERTIFICATE", "/nonexistent/ca.pem"},
    {"OTEL_EXPORTER_OTLP_CLIENT_KEY", "/nonexistent/key.pem"},
    {"OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE", "/nonexistent/cert.pem"},
    {"OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"},
    {"PROFILIS_JSONL_PATH", "/tmp/profilis-sweep.jsonl"},
    {"OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT", "not-a-number"}, /* logged and ignored */
};
#define N_CONFIG_VARS (sizeof g_config_vars / sizeof g_config_vars[0])

static bool str_same(const char *a, const char *b) {
  return (!a && !b) || (a && b && !strcmp(a, b));
}

static pf_config g_ref_cfg;   /* resolved with nothing failing */
static pf_buf g_ref_resource; /* its resource attributes */

static void config_scenario(void *arg) {
  (void)arg;
  pf_config c;
  if (!ok(pf_config_resolve_with(&c, NULL, fake_getenv))) return;
  const profilis_provider_opts *a = &c.o, *b = &g_ref_cfg.o;
  /* a successful resolution is complete: no string or header was lost on the way */
  CHECK(str_same(a->service_name, b->service_name) && str_same(a->endpoint, b->endpoint));
  CHECK(str_same(a->resource_attributes, b->resource_attributes));
  CHECK(str_same(a->propagators, b->propagators) && str_same(a->jsonl_path, b->jsonl_path));
  CHECK(str_same(a->headers, b->headers) && str_same(a->certificate, b->certificate));
  CHECK(str_same(a->client_key, b->client_key));
  CHECK(str_same(a->client_certificate, b->client_certificate));
  CHECK(c.n_headers == g_ref_cfg.n_headers);
  for (size_t i = 0; i < c.n_headers && i < g_ref_cfg.n_headers; i++)
    CHECK(!strcmp(c.headers[i].key, g_ref_cfg.headers[i].key) &&
          !strcmp(c.headers[i].value, g_ref_cfg.headers[i].value));
  CHECK(a->max_queue_size == b->max_queue_size && a->timeout_ms == b->timeout_ms);
  CHECK(a->exporter == PROFILIS_EXPORTER_NONE && c.propagators == g_ref_cfg.propagators);
  pf_resource r;
  if (ok(pf_resource_build(&r, &c))) {
    CHECK(r.attrs.len == g_ref_resource.len && !memcmp(r.attrs.p, g_ref_resource.p, r.attrs.len));
    pf_resource_free(&r);
  }
  pf_config_free(&c);
}

/* The public constructor reading the real environment, with the "none" exporter. */
static void env_provider_scenario(void *arg) {
  (void)arg;
  profilis_provider *p = NULL;
  if (!ok(profilis_provider_new(&p, NULL))) {
    CHECK(p == NULL);
    return;
  }
  CHECK(p->cfg.o.exporter == PROFILIS_EXPORTER_NONE && p->cfg.n_headers == g_ref_cfg.n_headers);
  profilis_tracer *t = NULL;
  uint64_t started = 0;
  if (ok(profilis_tracer_get(p, "env", "2", &t))) {
    for (int i = 0; i < 3; i++) {
      profilis_span *s = profilis_span_begin(t, "env-span");
      started += profilis_span_is_recording(s);
      if (profilis_span_is_recording(s))
        ok(profilis_span_set_str(s, "k", "v"));
      else
        CHECK(profilis_span_set_str(s, "k", "v") == PROFILIS_ENOTRECORDING);
      profilis_span_end(s);
    }
  }
  CHECK(profilis_provider_shutdown(p, 5000) == 0);
  profilis_stats st;
  CHECK(profilis_provider_stats(p, &st) == 0);
  CHECK(st.spans_started == started && st.spans_exported == started);
  CHECK(st.spans_dropped == 0 && st.spans_failed == 0);
  profilis_provider_free(p);
}

static void test_config(void **state) {
  (void)state;
  env_fill(g_config_vars, N_CONFIG_VARS);
  pf_log_configure(-1, false);
  assert_int_equal(pf_config_resolve_with(&g_ref_cfg, NULL, fake_getenv), 0);
  assert_int_equal(g_ref_cfg.n_headers, 3); /* the signal-specific list wins; "bad key" skipped */
  assert_string_equal(g_ref_cfg.o.endpoint, "http://127.0.0.1:14317");
  pf_resource r;
  assert_int_equal(pf_resource_build(&r, &g_ref_cfg), 0);
  g_ref_resource = r.attrs;
  sweep(config_scenario, NULL, false, 15);

  for (size_t i = 0; i < N_CONFIG_VARS; i++) setenv(g_config_vars[i][0], g_config_vars[i][1], 1);
  sweep(env_provider_scenario, NULL, true, 10);
  for (size_t i = 0; i < N_CONFIG_VARS; i++) unsetenv(g_config_vars[i][0]);

  pf_buf_free(&g_ref_resource);
  pf_config_free(&g_ref_cfg);
}

int main(void) {
  pf_log_configure(-1, false); /* thousands of refusals would be logged otherwise */
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_spans),
      cmocka_unit_test(test_propagation),
      cmocka_unit_test(test_otlp_encode),
      cmocka_unit_test(test_config),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
