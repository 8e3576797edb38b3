/* profilis-collector-micro: CPU cost per span of the collector's hot path stages, measured on
 * one thread without sockets, so figures are steady on a busy machine. A request like
 * profilis-loadgen's (512 spans, 2 attributes; or --rich: 8 attributes of mixed types, an
 * event, a link, a parent, a status message) is encoded once, then decoded, observed by span
 * metrics and rendered as JSONL lines many times; each stage prints the median over several
 * rounds of thread CPU time per span. --dump FILE writes one request's JSONL lines there (to
 * compare renderings). Usage: profilis-collector-micro [--rich] [--rounds N] [--dump FILE] */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pc_decode.h"
#include "pc_json_render.h"
#include "pc_spanmetrics.h"
#include "pf_exporter.h"
#include "rec_builder.h"

#define N_SPANS 512
#define ITERS 40 /* requests per round */

typedef struct request {
  pf_buf bytes;
  pf_resource res;
  pf_scope scope;
  pf_buf recs[N_SPANS];
  const pf_span_rec *ptrs[N_SPANS];
} request;

static double thread_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static uint64_t rnd(uint64_t *s) {
  *s ^= *s << 13;
  *s ^= *s >> 7;
  *s ^= *s << 17;
  return *s;
}

/* The resource and scope the Profilis SDK sends for loadgen. */
static int build_envelope(request *q) {
  static const profilis_attr res[] = {
      PROFILIS_ATTR_STR("service.name", "profilis-loadgen"),
      PROFILIS_ATTR_STR("telemetry.sdk.name", "profilis"),
      PROFILIS_ATTR_STR("telemetry.sdk.language", "c"),
      PROFILIS_ATTR_STR("telemetry.sdk.version", "0.1.0"),
  };
  q->scope = (pf_scope){.name = "profilis-loadgen", .version = "0.1.0"};
  return rb_resource(&q->res, res, sizeof res / sizeof res[0]);
}

static int build_span(request *q, size_t i, bool rich, uint64_t *seed) {
  profilis_attr a[8] = {
      PROFILIS_ATTR_STR("attr.0", "loadgen-value"),
      PROFILIS_ATTR_INT("attr.1", (int64_t)(rnd(seed) >> 40)),
      PROFILIS_ATTR_STR("http.request.method", "GET"),
      PROFILIS_ATTR_STR("url.path", "/api/v1/orders/12345"),
      PROFILIS_ATTR_INT("http.response.status_code", 200),
      PROFILIS_ATTR_BOOL("retry", false),
      PROFILIS_ATTR_DOUBLE("ratio", 0.125),
      PROFILIS_ATTR_STR("peer.name", "db-\"primary\"\n"),
  };
  profilis_attr ev_attr = PROFILIS_ATTR_STR("exception.type", "Timeout");
  rb_event ev = {
      .name = "exception", .time_ns = 1700000000000000500ull, .attrs = &ev_attr, .n_attrs = 1};
  rb_link lk = {.flags = 1, .tracestate = "k=v"};
  rb_span s = {.name = rich ? "GET /api/v1/orders/{id}" : "loadgen.request",
               .kind = 2,
               .trace_flags = 1,
               .start_ns = 1700000000000000000ull + i * 1000,
               .scope = &q->scope,
               .attrs = a,
               .n_attrs = rich ? 8 : 2};
  s.end_ns = s.start_ns + 200 + rnd(seed) % 100000;
  for (int k = 0; k < 16; k++) s.trace_id[k] = (uint8_t)rnd(seed) | 1;
  for (int k = 0; k < 8; k++) s.span_id[k] = (uint8_t)rnd(seed) | 1;
  if (rich) {
    for (int k = 0; k < 8; k++) s.parent_span_id[k] = (uint8_t)rnd(seed) | 1;
    for (int k = 0; k < 16; k++) lk.trace_id[k] = (uint8_t)rnd(seed) | 1;
    for (int k = 0; k < 8; k++) lk.span_id[k] = (uint8_t)rnd(seed) | 1;
    s.has_parent = 1;
    s.status_code = 2;
    s.status_msg = "deadline exceeded";
    s.events = &ev;
    s.n_events = 1;
    s.links = &lk;
    s.n_links = 1;
  }
  int rc = rb_build(&q->recs[i], &s);
  q->ptrs[i] = (const pf_span_rec *)q->recs[i].p;
  return rc;
}

static int build_request(request *q, bool rich) {
  uint64_t seed = 0x9E3779B97F4A7C15ull;
  memset(q, 0, sizeof *q);
  int rc = build_envelope(q);
  for (size_t i = 0; !rc && i < N_SPANS; i++) rc = build_span(q, i, rich, &seed);
  pf_batch b = {.resource = &q->res, .spans = q->ptrs, .n = N_SPANS};
  return rc ? rc : pf_otlp_encode_request(&q->bytes, &b);
}

typedef struct stage_state {
  const request *q;
  pc_decode_result d; /* the decoded request, for the later stages */
  pc_spanmetrics *sm;
  pc_json_scratch js;
  pf_buf out;
} stage_state;

static int run_decode(stage_state *st) {
  pc_decode_result_free(&st->d);
  pc_decode_opts o = {0};
  return pc_decode_otlp_proto(st->q->bytes.p, st->q->bytes.len, &o, &st->d);
}

static int run_spanmetrics(stage_state *st) {
  for (size_t i = 0; i < st->d.n_chunks; i++) pc_spanmetrics_observe(st->sm, st->d.chunks[i]);
  return 0;
}

static int run_render(stage_state *st) {
  pf_buf_reset(&st->out);
  int rc = 0;
  for (size_t i = 0; !rc && i < st->d.n_chunks; i++)
    rc = pc_json_span_lines(&st->js, st->d.chunks[i], &st->out);
  return rc;
}

/* ns per span of `rounds` rounds of ITERS calls: the median, and in *best the fastest round
 * (the steadier figure on a busy machine, where other processes evict caches). */
static double measure(int (*fn)(stage_state *), stage_state *st, int rounds, double *best) {
  double *v = calloc((size_t)rounds, sizeof *v), med;
  for (int r = 0; r < rounds; r++) {
    double t0 = thread_ns();
    for (int i = 0; i < ITERS; i++)
      if (fn(st)) {
        fprintf(stderr, "collector-micro: stage failed\n");
        exit(1);
      }
    v[r] = (thread_ns() - t0) / ITERS / N_SPANS;
  }
  qsort(v, (size_t)rounds, sizeof *v, cmp_double);
  med = v[rounds / 2];
  *best = v[0];
  free(v);
  return med;
}

int main(int argc, char **argv) {
  bool rich = false;
  int rounds = 31;
  const char *dump = NULL;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--rich"))
      rich = true;
    else if (!strcmp(argv[i], "--rounds") && i + 1 < argc)
      rounds = atoi(argv[++i]) > 0 ? atoi(argv[i]) : rounds;
    else if (!strcmp(argv[i], "--dump") && i + 1 < argc)
      dump = argv[++i];
    else
      return fprintf(stderr, "usage: profilis-collector-micro [--rich] [--rounds N] [--dump F]\n"),
             2;
  }
  static request q;
  stage_state st = {.q = &q};
  if (build_request(&q, rich) || pc_spanmetrics_new(&st.sm, NULL) || run_decode(&st) ||
      run_render(&st)) {
    fprintf(stderr, "collector-micro: setup failed\n");
    return 1;
  }
  FILE *f = dump ? fopen(dump, "wb") : NULL;
  if (f) fwrite(st.out.p, 1, st.out.len, f), fclose(f);
  printf("request %zu bytes, %d spans, %.0f bytes of JSONL per span\n", q.bytes.len, N_SPANS,
         (double)st.out.len / N_SPANS);
  double b_dec, b_sm, b_ren;
  double dec = measure(run_decode, &st, rounds, &b_dec);
  double sm = measure(run_spanmetrics, &st, rounds, &b_sm);
  double ren = measure(run_render, &st, rounds, &b_ren);
  printf("stage        median_ns_per_span  best_ns_per_span\n"
         "decode       %8.1f  %8.1f\nspanmetrics  %8.1f  %8.1f\nrender       %8.1f  %8.1f\n"
         "total        %8.1f  %8.1f\n",
         dec, b_dec, sm, b_sm, ren, b_ren, dec + sm + ren, b_dec + b_sm + b_ren);
  pc_decode_result_free(&st.d);
  pc_spanmetrics_free(st.sm);
  pc_json_scratch_free(&st.js);
  pf_buf_free(&st.out);
  pf_resource_free(&q.res);
  for (size_t i = 0; i < N_SPANS; i++) pf_buf_free(&q.recs[i]);
  pf_buf_free(&q.bytes);
  return 0;
}
