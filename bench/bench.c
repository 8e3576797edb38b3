/* profilis-bench: microbenchmarks of the SDK hot paths and of the whole export pipeline.
 * Every result is one line "name value unit"; each is the median of RUNS (>= 7) runs timed
 * with CLOCK_MONOTONIC after a warm-up run. Internal headers are used only where a benchmark
 * needs an internal function: the OTLP encoder, an exporter that captures real SDK records,
 * and a malloc counter (the binary links with --wrap=malloc etc.). export_spans_per_s talks to
 * a minimal OTLP/gRPC receiver inside this program: an nghttp2 server thread on 127.0.0.1 that
 * answers every Export with an empty OK. --quick: small iteration counts for a smoke run;
 * --only NAME: run just that benchmark. Exit status 1 when any benchmark could not run. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <nghttp2/nghttp2.h>
#include <poll.h>
#include <profilis/profilis.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "pf_buf.h"
#include "pf_exporter.h"
#include "pf_provider.h"

#define RUNS 7
#define ENCODE_BATCH 512

static volatile uint64_t sink; /* results feed this so loops cannot be optimised away */
static bool quick;

static uint64_t mono_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static inline void clobber(void) { __asm__ volatile("" ::: "memory"); }

/* ==== allocation counter: the binary links with -Wl,--wrap=<fn> for each of these, so every
 * call made by this program and by the statically linked SDK passes through here. ==== */

static atomic_int alloc_armed;
static atomic_ullong alloc_calls;

static inline void count_alloc(void) {
  if (atomic_load_explicit(&alloc_armed, memory_order_relaxed))
    atomic_fetch_add_explicit(&alloc_calls, 1, memory_order_relaxed);
}

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t sz);
void *__real_realloc(void *p, size_t n);
int __real_posix_memalign(void **p, size_t align, size_t n);
void *__real_aligned_alloc(size_t align, size_t n);
char *__real_strdup(const char *s);
char *__real_strndup(const char *s, size_t n);

void *__wrap_malloc(size_t n) { return count_alloc(), __real_malloc(n); }
void *__wrap_calloc(size_t n, size_t sz) { return count_alloc(), __real_calloc(n, sz); }
void *__wrap_realloc(void *p, size_t n) { return count_alloc(), __real_realloc(p, n); }
int __wrap_posix_memalign(void **p, size_t a, size_t n) {
  return count_alloc(), __real_posix_memalign(p, a, n);
}
void *__wrap_aligned_alloc(size_t a, size_t n) { return count_alloc(), __real_aligned_alloc(a, n); }
char *__wrap_strdup(const char *s) { return count_alloc(), __real_strdup(s); }
char *__wrap_strndup(const char *s, size_t n) { return count_alloc(), __real_strndup(s, n); }

/* ==== harness ==== */

typedef struct bstate {
  profilis_provider *p;
  profilis_tracer *t;
  void *extra;      /* benchmark-specific state */
  double companion; /* a second figure some runs report (e.g. bytes per span) */
  uint64_t dropped; /* spans the SDK dropped during the runs: they skew a timing */
} bstate;

typedef struct bench_def {
  const char *name, *unit;
  uint64_t iters, quick_iters;
  int (*setup)(bstate *st); /* may be NULL */
  /* One run of `iters` iterations; stores the result in *out. Returns 0 or -1. */
  int (*run)(bstate *st, uint64_t iters, double *out);
  void (*teardown)(bstate *st); /* may be NULL */
  int warmup; /* unmeasured runs first: caches, pools and fresh queue pages warm up */
  const char *companion_name, *companion_unit;
} bench_def;

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static double median(double *v, int n) {
  qsort(v, (size_t)n, sizeof *v, cmp_double);
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static void print_result(const char *name, double v, const char *unit) {
  if (v == (double)(uint64_t)v && v < 1e15)
    printf("%s %llu %s\n", name, (unsigned long long)v, unit);
  else
    printf("%s %.*f %s\n", name, v < 10 ? 3 : 1, v, unit);
  fflush(stdout);
}

/* Runs one benchmark's warm-up runs, then RUNS measured runs, and prints the medians. */
static int run_bench(const bench_def *b) {
  bstate st = {0};
  double v[RUNS], c[RUNS];
  uint64_t iters = quick ? b->quick_iters : b->iters;
  int rc = b->setup ? b->setup(&st) : 0;
  for (int i = 0; rc == 0 && i < b->warmup; i++) rc = b->run(&st, iters, &v[0]);
  for (int i = 0; rc == 0 && i < RUNS; i++) {
    st.companion = 0;
    rc = b->run(&st, iters, &v[i]);
    c[i] = st.companion;
  }
  if (b->teardown) b->teardown(&st);
  if (rc != 0) {
    fprintf(stderr, "bench: %s failed\n", b->name);
    return -1;
  }
  print_result(b->name, median(v, RUNS), b->unit);
  if (b->companion_name) print_result(b->companion_name, median(c, RUNS), b->companion_unit);
  if (st.dropped)
    fprintf(stderr, "bench: note: %llu spans dropped or failed during %s\n",
            (unsigned long long)st.dropped, b->name);
  return 0;
}

/* ==== providers ==== */

/* Options isolated from the environment: a NONE exporter, always_on, and a queue that holds
 * a whole timed run (SPAN_RUN spans), so a span timing never includes the drop path. The
 * warm-up runs write the whole queue once: first-touch page faults are not steady state. */
#define SPAN_RUN 200000
static void base_opts(profilis_provider_opts *o) {
  profilis_provider_opts_init(o);
  o->use_env = false;
  o->service_name = "profilis-bench";
  o->exporter = PROFILIS_EXPORTER_NONE;
  o->sampler = PROFILIS_SAMPLER_ALWAYS_ON;
  o->max_queue_size = 262144;
  o->max_export_batch_size = 512;
  o->max_queue_bytes = 64u << 20;
  o->schedule_delay_ms = 100;
}

static int start_provider(bstate *st, const profilis_provider_opts *o) {
  int rc = profilis_provider_new(&st->p, o);
  if (rc == 0) rc = profilis_tracer_get(st->p, "profilis-bench", PROFILIS_VERSION, &st->t);
  if (rc != 0) fprintf(stderr, "bench: provider: %s\n", profilis_strerror(rc));
  return rc ? -1 : 0;
}

static void stop_provider(bstate *st) {
  if (!st->p) return;
  profilis_provider_free(st->p);
  st->p = NULL;
}

static uint64_t dropped_now(const profilis_provider *p) {
  profilis_stats s = {0};
  profilis_provider_stats(p, &s);
  return s.spans_dropped;
}

static int setup_on(bstate *st) {
  profilis_provider_opts o;
  base_opts(&o);
  return start_provider(st, &o);
}

static int setup_off(bstate *st) {
  profilis_provider_opts o;
  base_opts(&o);
  o.sampler = PROFILIS_SAMPLER_ALWAYS_OFF;
  return start_provider(st, &o);
}

/* ==== span API ==== */

static const profilis_span_opts internal_span = {.size = sizeof(profilis_span_opts),
                                                 .kind = PROFILIS_SPAN_KIND_INTERNAL};

static inline void one_span(profilis_tracer *t, int n_attrs) {
  profilis_span *s;
  profilis_span_start(t, "bench.op", &internal_span, &s);
  if (n_attrs) {
    profilis_span_set_str(s, "http.request.method", "GET");
    profilis_span_set_int(s, "http.response.status_code", 200);
  }
  profilis_span_end(s);
}

static int spans_run(bstate *st, uint64_t n, int n_attrs, double *out) {
  uint64_t d0 = dropped_now(st->p), t0 = mono_ns();
  for (uint64_t i = 0; i < n; i++) one_span(st->t, n_attrs);
  uint64_t t1 = mono_ns();
  st->dropped += dropped_now(st->p) - d0;
  /* Let the exporter thread drain so the next run starts with an empty queue. */
  profilis_provider_force_flush(st->p, 10000);
  *out = (double)(t1 - t0) / (double)n;
  return 0;
}

static int run_span(bstate *st, uint64_t n, double *out) { return spans_run(st, n, 0, out); }
static int run_span_2attrs(bstate *st, uint64_t n, double *out) { return spans_run(st, n, 2, out); }

static int run_scoped(bstate *st, uint64_t n, double *out) {
  uint64_t d0 = dropped_now(st->p), t0 = mono_ns();
  for (uint64_t i = 0; i < n; i++) {
    PROFILIS_SPAN(st->t, "bench.op") { clobber(); }
  }
  uint64_t t1 = mono_ns();
  st->dropped += dropped_now(st->p) - d0;
  profilis_provider_force_flush(st->p, 10000);
  *out = (double)(t1 - t0) / (double)n;
  return 0;
}

/* ==== propagation ==== */

static const char tp_header[] = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

static int run_tp_parse(bstate *st, uint64_t n, double *out) {
  profilis_span_context ctx;
  uint64_t acc = 0, t0 = mono_ns();
  for (uint64_t i = 0; i < n; i++) {
    clobber(); /* the header could have changed: parse it again */
    if (profilis_traceparent_parse(tp_header, sizeof tp_header - 1, &ctx) != 0) return -1;
    acc += ctx.span_id[7] + ctx.trace_flags;
  }
  uint64_t t1 = mono_ns();
  sink += acc;
  *out = (double)(t1 - t0) / (double)n;
  return 0;
}

static int run_tp_format(bstate *st, uint64_t n, double *out) {
  profilis_span_context ctx;
  if (profilis_traceparent_parse(tp_header, sizeof tp_header - 1, &ctx) != 0) return -1;
  char buf[64];
  uint64_t acc = 0, t0 = mono_ns();
  for (uint64_t i = 0; i < n; i++) {
    clobber();
    if (profilis_traceparent_format(&ctx, buf, sizeof buf) != 0) return -1;
    acc += (uint8_t)buf[40];
  }
  uint64_t t1 = mono_ns();
  sink += acc;
  *out = (double)(t1 - t0) / (double)n;
  return 0;
}

/* ==== OTLP encoding of records made by the real SDK ==== */

/* An exporter that keeps copies of the first ENCODE_BATCH records it is handed. */
typedef struct capture {
  pf_exporter base;
  pf_span_rec *recs[ENCODE_BATCH];
  size_t n;
  const pf_resource *resource;
  pf_buf out;
} capture;

static int capture_export(pf_exporter *e, const pf_batch *b, const pf_deadline *dl,
                          uint64_t *rejected) {
  capture *c = (capture *)e;
  c->resource = b->resource;
  for (size_t i = 0; i < b->n && c->n < ENCODE_BATCH; i++) {
    pf_span_rec *r = malloc(b->spans[i]->size);
    if (!r) return PROFILIS_ENOMEM;
    memcpy(r, b->spans[i], b->spans[i]->size);
    c->recs[c->n++] = r;
  }
  *rejected = 0;
  return 0;
}

static void capture_destroy(pf_exporter *e) {
  capture *c = (capture *)e;
  for (size_t i = 0; i < c->n; i++) free(c->recs[i]);
  pf_buf_free(&c->out);
  free(c);
}

static int setup_encode(bstate *st) {
  capture *c = calloc(1, sizeof *c);
  if (!c) return -1;
  c->base.name = "capture";
  c->base.export_batch = capture_export;
  c->base.destroy = capture_destroy;
  profilis_provider_opts o;
  base_opts(&o);
  int rc = pf_provider_new_with_exporter(&st->p, &o, &c->base); /* owns c from here */
  if (rc == 0) rc = profilis_tracer_get(st->p, "profilis-bench", PROFILIS_VERSION, &st->t);
  if (rc != 0) return -1;
  st->extra = c;
  profilis_span_opts so = internal_span;
  so.kind = PROFILIS_SPAN_KIND_SERVER;
  for (int i = 0; i < ENCODE_BATCH; i++) {
    profilis_span *s;
    profilis_span_start(st->t, "GET /api/items", &so, &s);
    profilis_span_set_str(s, "http.request.method", "GET");
    profilis_span_set_int(s, "http.response.status_code", 200);
    profilis_span_end(s);
  }
  profilis_provider_force_flush(st->p, 10000);
  if (c->n != ENCODE_BATCH) {
    fprintf(stderr, "bench: captured %zu of %d records\n", c->n, ENCODE_BATCH);
    return -1;
  }
  return 0;
}

static int run_encode(bstate *st, uint64_t n, double *out) {
  capture *c = st->extra;
  pf_batch b = {.resource = c->resource, .spans = (const pf_span_rec *const *)c->recs,
                .n = ENCODE_BATCH};
  uint64_t t0 = mono_ns();
  for (uint64_t i = 0; i < n; i++) {
    pf_buf_reset(&c->out);
    if (pf_otlp_encode_request(&c->out, &b) != 0) return -1;
    clobber();
  }
  uint64_t t1 = mono_ns();
  sink += c->out.len;
  *out = (double)(t1 - t0) / (double)(n * ENCODE_BATCH);
  st->companion = (double)c->out.len / ENCODE_BATCH;
  return 0;
}

/* The provider owns the capture exporter and frees it. */
static void teardown_provider(bstate *st) { stop_provider(st); }

/* ==== memory: queue bytes per span, allocations per span ==== */

/* Queues n spans on a provider whose exporter cannot start yet (hour-long schedule delay, a
 * batch as big as the queue) and reads the queue's own accounting. */
static int queued_bytes(uint64_t n, int n_attrs, double *out) {
  bstate st = {0};
  profilis_provider_opts o;
  base_opts(&o);
  o.schedule_delay_ms = 3600000;
  o.max_queue_size = o.max_export_batch_size = (uint32_t)n * 2;
  if (start_provider(&st, &o) != 0) return -1;
  for (uint64_t i = 0; i < n; i++) one_span(st.t, n_attrs);
  profilis_stats s = {0};
  profilis_provider_stats(st.p, &s);
  stop_provider(&st);
  if (s.queue_depth != n) {
    fprintf(stderr, "bench: expected %llu queued spans, found %llu\n", (unsigned long long)n,
            (unsigned long long)s.queue_depth);
    return -1;
  }
  *out = (double)s.queue_bytes / (double)s.queue_depth;
  return 0;
}

static int run_qbytes(bstate *st, uint64_t n, double *out) { return queued_bytes(n, 0, out); }
static int run_qbytes_2attrs(bstate *st, uint64_t n, double *out) { return queued_bytes(n, 2, out); }

static int setup_block(bstate *st) {
  profilis_provider_opts o;
  base_opts(&o);
  o.queue_policy = PROFILIS_QUEUE_BLOCK; /* every span goes the whole way, none dropped */
  o.block_timeout_ms = 10000;
  return start_provider(st, &o);
}

/* Counts allocation calls in every thread (exporter included) while n spans are made and
 * exported. The setup and warm-up run leave the SDK's pools and buffers in steady state. */
static int run_allocs(bstate *st, uint64_t n, double *out) {
  profilis_provider_force_flush(st->p, 10000);
  atomic_store(&alloc_calls, 0);
  atomic_store(&alloc_armed, 1);
  for (uint64_t i = 0; i < n; i++) one_span(st->t, 2);
  int rc = profilis_provider_force_flush(st->p, 10000);
  atomic_store(&alloc_armed, 0);
  *out = (double)atomic_load(&alloc_calls) / (double)n;
  return rc == 0 ? 0 : -1;
}

/* ==== a minimal OTLP/gRPC receiver ==== */

#define SINK_MAX_CONNS 16

typedef struct sink_conn {
  int fd;
  nghttp2_session *h2;
  uint8_t *out; /* bytes nghttp2 produced that the socket has not taken yet */
  size_t out_len, out_off, out_cap;
  struct sink_server *srv;
} sink_conn;

typedef struct sink_server {
  int lfd, wake[2];
  uint16_t port;
  pthread_t thread;
  sink_conn conns[SINK_MAX_CONNS];
  atomic_ullong data_bytes, messages;
} sink_server;

/* The empty ExportTraceServiceResponse as one gRPC message: no compression, length 0. */
static ssize_t sink_read_body(nghttp2_session *h2, int32_t stream_id, uint8_t *buf, size_t len,
                              uint32_t *flags, nghttp2_data_source *src, void *user) {
  static const nghttp2_nv trailers[] = {
      {(uint8_t *)"grpc-status", (uint8_t *)"0", 11, 1, NGHTTP2_NV_FLAG_NONE}};
  memset(buf, 0, 5);
  *flags |= NGHTTP2_DATA_FLAG_EOF | NGHTTP2_DATA_FLAG_NO_END_STREAM;
  if (nghttp2_submit_trailer(h2, stream_id, trailers, 1) != 0)
    return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
  return 5;
}

static int sink_on_frame(nghttp2_session *h2, const nghttp2_frame *f, void *user) {
  sink_conn *c = user;
  bool request_done = (f->hd.type == NGHTTP2_DATA || f->hd.type == NGHTTP2_HEADERS) &&
                      (f->hd.flags & NGHTTP2_FLAG_END_STREAM);
  if (!request_done) return 0;
  static const nghttp2_nv hdrs[] = {
      {(uint8_t *)":status", (uint8_t *)"200", 7, 3, NGHTTP2_NV_FLAG_NONE},
      {(uint8_t *)"content-type", (uint8_t *)"application/grpc", 12, 16, NGHTTP2_NV_FLAG_NONE}};
  nghttp2_data_provider body = {.read_callback = sink_read_body};
  atomic_fetch_add(&c->srv->messages, 1);
  return nghttp2_submit_response(h2, f->hd.stream_id, hdrs, 2, &body) == 0
             ? 0
             : NGHTTP2_ERR_CALLBACK_FAILURE;
}

static int sink_on_data(nghttp2_session *h2, uint8_t flags, int32_t stream_id,
                        const uint8_t *data, size_t len, void *user) {
  sink_conn *c = user;
  atomic_fetch_add_explicit(&c->srv->data_bytes, len, memory_order_relaxed);
  return 0;
}

static void sink_close(sink_conn *c) {
  if (c->fd < 0) return;
  close(c->fd);
  nghttp2_session_del(c->h2);
  free(c->out);
  *c = (sink_conn){.fd = -1};
}

static int sink_open(sink_server *srv, int fd) {
  sink_conn *c = NULL;
  nghttp2_session_callbacks *cb = NULL;
  int rc;
  for (int i = 0; i < SINK_MAX_CONNS && !c; i++)
    if (srv->conns[i].fd < 0) c = &srv->conns[i];
  if (!c || nghttp2_session_callbacks_new(&cb) != 0) goto fail;
  nghttp2_session_callbacks_set_on_frame_recv_callback(cb, sink_on_frame);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, sink_on_data);
  *c = (sink_conn){.fd = fd, .srv = srv};
  rc = nghttp2_session_server_new(&c->h2, cb, c);
  nghttp2_session_callbacks_del(cb);
  if (rc != 0) goto fail;
  /* Big windows so flow control never paces the client. */
  nghttp2_settings_entry s[] = {{NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, 128},
                                {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, 16 << 20}};
  nghttp2_submit_settings(c->h2, NGHTTP2_FLAG_NONE, s, 2);
  nghttp2_session_set_local_window_size(c->h2, NGHTTP2_FLAG_NONE, 0, 64 << 20);
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return 0;
fail:
  if (c && c->fd == fd) c->fd = -1;
  close(fd);
  return -1;
}

/* Moves nghttp2's output to the socket, gathered into one write so that a response's frames
 * leave together. Returns 0, or -1 when the connection is done. */
static int sink_flush(sink_conn *c) {
  for (;;) {
    if (c->out_off == c->out_len) {
      c->out_len = c->out_off = 0;
      const uint8_t *data;
      ssize_t n;
      while ((n = nghttp2_session_mem_send(c->h2, &data)) > 0) {
        if (c->out_len + (size_t)n > c->out_cap) {
          size_t cap = (c->out_len + (size_t)n) * 2;
          uint8_t *p = realloc(c->out, cap);
          if (!p) return -1;
          c->out = p;
          c->out_cap = cap;
        }
        memcpy(c->out + c->out_len, data, (size_t)n);
        c->out_len += (size_t)n;
      }
      if (n < 0) return -1;
      if (c->out_len == 0) break;
    }
    ssize_t w = write(c->fd, c->out + c->out_off, c->out_len - c->out_off);
    if (w < 0) return errno == EAGAIN || errno == EINTR ? 0 : -1; /* POLLOUT resumes */
    c->out_off += (size_t)w;
  }
  bool idle = !nghttp2_session_want_read(c->h2) && !nghttp2_session_want_write(c->h2);
  return idle ? -1 : 0;
}

static int sink_read(sink_conn *c) {
  uint8_t buf[65536];
  ssize_t n = read(c->fd, buf, sizeof buf);
  if (n < 0) return errno == EAGAIN || errno == EINTR ? 0 : -1;
  if (n == 0) return -1;
  return nghttp2_session_mem_recv(c->h2, buf, (size_t)n) < 0 ? -1 : 0;
}

static void *sink_main(void *arg) {
  sink_server *srv = arg;
  for (;;) {
    struct pollfd pf[SINK_MAX_CONNS + 2] = {{.fd = srv->lfd, .events = POLLIN},
                                            {.fd = srv->wake[0], .events = POLLIN}};
    for (int i = 0; i < SINK_MAX_CONNS; i++) {
      sink_conn *c = &srv->conns[i];
      pf[i + 2].fd = c->fd;
      pf[i + 2].events = POLLIN | (c->out_off < c->out_len ? POLLOUT : 0);
    }
    if (poll(pf, SINK_MAX_CONNS + 2, 1000) < 0 && errno != EINTR) break;
    if (pf[1].revents) break;
    if (pf[0].revents & POLLIN) {
      int fd = accept(srv->lfd, NULL, NULL);
      if (fd >= 0) sink_open(srv, fd);
    }
    for (int i = 0; i < SINK_MAX_CONNS; i++) {
      sink_conn *c = &srv->conns[i];
      if (c->fd < 0 || !pf[i + 2].revents) continue;
      int rc = (pf[i + 2].revents & (POLLIN | POLLHUP | POLLERR)) ? sink_read(c) : 0;
      if (rc == 0) rc = sink_flush(c);
      if (rc != 0) sink_close(c);
    }
  }
  for (int i = 0; i < SINK_MAX_CONNS; i++) sink_close(&srv->conns[i]);
  return NULL;
}

static void sink_stop(sink_server *srv) {
  if (srv->wake[1] >= 0) {
    (void)!write(srv->wake[1], "x", 1);
    pthread_join(srv->thread, NULL);
  }
  if (srv->lfd >= 0) close(srv->lfd);
  if (srv->wake[0] >= 0) close(srv->wake[0]);
  if (srv->wake[1] >= 0) close(srv->wake[1]);
  free(srv);
}

/* Starts the receiver on 127.0.0.1 on a free port. Returns 0 or -1. */
static int sink_start(sink_server **out) {
  sink_server *srv = calloc(1, sizeof *srv);
  if (!srv) return -1;
  srv->lfd = srv->wake[0] = srv->wake[1] = -1;
  for (int i = 0; i < SINK_MAX_CONNS; i++) srv->conns[i].fd = -1;
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t alen = sizeof a;
  srv->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (srv->lfd < 0 || bind(srv->lfd, (struct sockaddr *)&a, sizeof a) != 0 ||
      listen(srv->lfd, 16) != 0 || getsockname(srv->lfd, (struct sockaddr *)&a, &alen) != 0 ||
      pipe2(srv->wake, O_CLOEXEC) != 0)
    goto fail;
  srv->port = ntohs(a.sin_port);
  if (pthread_create(&srv->thread, NULL, sink_main, srv) != 0) {
    close(srv->wake[1]);
    srv->wake[1] = -1; /* no thread to stop */
    goto fail;
  }
  *out = srv;
  return 0;
fail:
  perror("bench: receiver");
  sink_stop(srv);
  return -1;
}

/* ==== end-to-end export throughput ==== */

static int setup_export(bstate *st) {
  sink_server *srv;
  if (sink_start(&srv) != 0) return -1;
  st->extra = srv;
  return 0;
}

static void teardown_export(bstate *st) {
  if (st->extra) sink_stop(st->extra);
}

/* Sends n spans to the receiver through a fresh provider (queue 65536, batch 512, blocking
 * policy) and reports exported spans per second from the first span to shutdown's return. */
static int run_export(bstate *st, uint64_t n, double *out) {
  sink_server *srv = st->extra;
  char endpoint[64];
  snprintf(endpoint, sizeof endpoint, "http://127.0.0.1:%u", srv->port);
  profilis_provider_opts o;
  base_opts(&o);
  o.exporter = PROFILIS_EXPORTER_OTLP;
  o.endpoint = endpoint;
  o.queue_policy = PROFILIS_QUEUE_BLOCK;
  o.block_timeout_ms = 2000;
  bstate run = {0};
  if (start_provider(&run, &o) != 0) return -1;
  uint64_t bytes0 = atomic_load(&srv->data_bytes), msgs0 = atomic_load(&srv->messages);
  uint64_t t0 = mono_ns();
  for (uint64_t i = 0; i < n; i++) {
    one_span(run.t, 2);
    /* A drop under the blocking policy means export stalled: stop rather than crawl on. */
    if ((i & 4095) == 4095 && dropped_now(run.p) != 0) break;
  }
  int rc = profilis_provider_shutdown(run.p, 60000);
  uint64_t t1 = mono_ns();
  profilis_stats s = {0};
  profilis_provider_stats(run.p, &s);
  stop_provider(&run);
  st->dropped += s.spans_dropped + s.spans_failed;
  uint64_t msgs = atomic_load(&srv->messages) - msgs0;
  /* Every acknowledged batch must have reached the receiver as one Export call. */
  if (rc != 0 || s.spans_exported == 0 || msgs < s.export_batches) {
    fprintf(stderr, "bench: export run: %s, %llu spans exported in %llu batches, %llu received\n",
            profilis_strerror(rc), (unsigned long long)s.spans_exported,
            (unsigned long long)s.export_batches, (unsigned long long)msgs);
    return -1;
  }
  *out = (double)s.spans_exported / ((double)(t1 - t0) / 1e9);
  st->companion = (double)(atomic_load(&srv->data_bytes) - bytes0) / (double)s.spans_exported;
  return 0;
}

/* ==== main ==== */

/* SPAN: a span-API timing on a provider set up by `setup`, with a warm-up run. */
#define SPAN(nm, it, su, fn)                                                                   \
  {.name = nm, .unit = "ns", .iters = it, .quick_iters = 20000, .setup = su, .run = fn,         \
   .teardown = teardown_provider, .warmup = 3}

static const bench_def benches[] = {
    SPAN("span_start_end_ns", SPAN_RUN, setup_on, run_span),
    SPAN("span_start_end_2attrs_ns", SPAN_RUN, setup_on, run_span_2attrs),
    SPAN("span_start_end_unsampled_ns", SPAN_RUN, setup_off, run_span),
    SPAN("scoped_span_ns", SPAN_RUN, setup_on, run_scoped),
    {.name = "traceparent_parse_ns", .unit = "ns", .iters = 2000000, .quick_iters = 20000,
     .run = run_tp_parse, .warmup = 1},
    {.name = "traceparent_format_ns", .unit = "ns", .iters = 2000000, .quick_iters = 20000,
     .run = run_tp_format, .warmup = 1},
    {.name = "encode_ns_per_span", .unit = "ns", .iters = 400, .quick_iters = 10,
     .setup = setup_encode, .run = run_encode, .teardown = teardown_provider, .warmup = 1,
     .companion_name = "encode_bytes_per_span", .companion_unit = "bytes"},
    {.name = "bytes_per_queued_span", .unit = "bytes", .iters = 1000, .quick_iters = 1000,
     .run = run_qbytes},
    {.name = "bytes_per_queued_span_2attrs", .unit = "bytes", .iters = 1000, .quick_iters = 1000,
     .run = run_qbytes_2attrs},
    {.name = "allocs_per_span", .unit = "allocs", .iters = 100000, .quick_iters = 10000,
     .setup = setup_block, .run = run_allocs, .teardown = teardown_provider, .warmup = 1},
    {.name = "export_spans_per_s", .unit = "spans/s", .iters = 2000000, .quick_iters = 20000,
     .setup = setup_export, .run = run_export, .teardown = teardown_export,
     .companion_name = "export_wire_bytes_per_span", .companion_unit = "bytes"},
};
#undef SPAN

static void usage(FILE *f) {
  fprintf(f, "usage: profilis-bench [--quick] [--only NAME] [--list]\n"
             "  Prints one line per benchmark: name value unit (median of %d runs).\n",
          RUNS);
}

int main(int argc, char **argv) {
  const char *only = NULL;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--quick")) {
      quick = true;
    } else if (!strcmp(argv[i], "--only") && i + 1 < argc) {
      only = argv[++i];
    } else if (!strcmp(argv[i], "--list")) {
      for (size_t k = 0; k < sizeof benches / sizeof benches[0]; k++) puts(benches[k].name);
      return 0;
    } else {
      usage(strcmp(argv[i], "--help") ? stderr : stdout);
      return strcmp(argv[i], "--help") ? 2 : 0;
    }
  }
  int failed = 0, ran = 0;
  for (size_t k = 0; k < sizeof benches / sizeof benches[0]; k++) {
    if (only && strcmp(only, benches[k].name) != 0) continue;
    ran++;
    if (run_bench(&benches[k]) != 0) failed++;
  }
  if (ran == 0) fprintf(stderr, "bench: no benchmark named %s\n", only);
  return failed || ran == 0 ? 1 : 0;
}
