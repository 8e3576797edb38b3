/* profilis-loadgen: drives spans through one provider from K worker threads at a target rate
 * (a token bucket per worker that sleeps, never spins, when it runs dry) and reports what the
 * SDK did with them. Traces are chains of --depth nested spans made current with the context
 * stack. After the workers stop the provider is shut down, and the last line printed is
 *   sent=N exported=N dropped=N failed=N elapsed_s=X spans_per_s=Y
 * Exit status: 0, 1 when spans were lost (unless --allow-loss) or setup failed, 2 on bad usage. */
#define _GNU_SOURCE
#include <errno.h>
#include <profilis/profilis.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_WORKERS 256
#define MAX_ATTRS 128
#define MAX_DEPTH 64 /* the SDK's context stack depth */

typedef struct lg_opts {
  const char *endpoint;
  uint64_t spans;     /* 0 = until duration */
  double duration_s;  /* 0 = until spans */
  double rate;        /* spans/s over all workers, 0 = unlimited */
  int workers, attrs, depth;
  double error_ratio;
  char *headers; /* "k=v,k2=v2", values percent-encoded; owned */
  const char *service;
  bool allow_loss, block;
  uint32_t queue_size, batch_size;
} lg_opts;

typedef struct worker {
  pthread_t thread;
  const lg_opts *o;
  profilis_tracer *tracer;
  uint64_t quota; /* spans to send, 0 = no limit */
  double rate;    /* this worker's share, spans/s */
  uint64_t rng;
  uint64_t sent;
  uint64_t first_ns; /* monotonic time of this worker's first span, 0 = none */
} worker;

static atomic_int stop_flag;
static uint64_t deadline_ns; /* monotonic; 0 = none */
static char attr_keys[MAX_ATTRS][16];

static void on_signal(int sig) { atomic_store(&stop_flag, sig); }

static uint64_t mono_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t rnd(uint64_t *s) { /* xorshift64* */
  *s ^= *s >> 12;
  *s ^= *s << 25;
  *s ^= *s >> 27;
  return *s * 2685821657736338717ull;
}

/* ---- token bucket ---- */

typedef struct bucket {
  double rate, tokens, burst;
  uint64_t last_ns;
} bucket;

static void bucket_init(bucket *b, double rate) {
  /* A burst of 5 ms worth of tokens lets a fast worker sleep in coarse steps, not per span. */
  b->rate = rate;
  b->burst = rate * 0.005 > 1 ? rate * 0.005 : 1;
  b->tokens = 1;
  b->last_ns = mono_ns();
}

/* Takes one token, sleeping until there is one. Returns false when asked to stop meanwhile. */
static bool bucket_take(bucket *b) {
  if (b->rate <= 0) return true;
  for (;;) {
    uint64_t now = mono_ns();
    b->tokens += (double)(now - b->last_ns) * b->rate / 1e9;
    if (b->tokens > b->burst) b->tokens = b->burst;
    b->last_ns = now;
    if (b->tokens >= 1) {
      b->tokens -= 1;
      return true;
    }
    if (atomic_load_explicit(&stop_flag, memory_order_relaxed)) return false;
    double wait = (1 - b->tokens) / b->rate * 1e9;
    if (wait > 50e6) wait = 50e6; /* wake up to notice a stop request */
    struct timespec ts = {.tv_sec = 0, .tv_nsec = (long)wait + 1};
    nanosleep(&ts, NULL);
  }
}

/* ---- workers ---- */

static bool should_stop(const worker *w) {
  if (atomic_load_explicit(&stop_flag, memory_order_relaxed)) return true;
  if (w->quota && w->sent >= w->quota) return true;
  return deadline_ns && mono_ns() >= deadline_ns;
}

static void decorate(worker *w, profilis_span *s) {
  for (int i = 0; i < w->o->attrs; i++) {
    if (i % 2 == 0)
      profilis_span_set_str(s, attr_keys[i], "loadgen-value");
    else
      profilis_span_set_int(s, attr_keys[i], (int64_t)(rnd(&w->rng) >> 40));
  }
  if (w->o->error_ratio > 0 && (double)(rnd(&w->rng) >> 11) / 9007199254740992.0 < w->o->error_ratio)
    profilis_span_record_exception(s, "LoadgenError", "injected failure");
}

/* One trace: up to `depth` nested spans, each the current span while its children run. */
static bool one_trace(worker *w, bucket *b) {
  profilis_span *stack[MAX_DEPTH];
  int n = w->o->depth;
  if (w->quota && (uint64_t)n > w->quota - w->sent) n = (int)(w->quota - w->sent);
  int started = 0;
  for (; started < n; started++) {
    if (!bucket_take(b)) break;
    if (!w->first_ns) w->first_ns = mono_ns();
    profilis_span_opts so = {.size = sizeof so,
                             .kind = started == 0 ? PROFILIS_SPAN_KIND_SERVER
                                                  : PROFILIS_SPAN_KIND_INTERNAL,
                             .root = started == 0};
    profilis_span_start(w->tracer, started == 0 ? "loadgen.request" : "loadgen.step", &so,
                        &stack[started]);
    decorate(w, stack[started]);
    profilis_context_push(stack[started]);
  }
  for (int i = started - 1; i >= 0; i--) {
    profilis_context_pop();
    profilis_span_end(stack[i]);
  }
  w->sent += (uint64_t)started;
  return started == n;
}

static void *worker_main(void *arg) {
  worker *w = arg;
  bucket b;
  bucket_init(&b, w->rate);
  while (!should_stop(w))
    if (!one_trace(w, &b)) break;
  return NULL;
}

/* ---- options ---- */

static void usage(FILE *f) {
  fprintf(f,
          "usage: profilis-loadgen [options]\n"
          "  --endpoint HOST:PORT  OTLP/gRPC endpoint (else OTEL_EXPORTER_OTLP_ENDPOINT)\n"
          "  --spans N             spans to send (default 10000 unless --duration)\n"
          "  --duration S          send for S seconds\n"
          "  --rate R              spans/s over all workers, 0 = as fast as possible (default)\n"
          "  --workers K           sending threads (default 1)\n"
          "  --attrs N             attributes per span (default 2)\n"
          "  --error-ratio F       fraction of spans recording an exception (default 0)\n"
          "  --depth D             spans per trace, nested (default 1)\n"
          "  --header K=V          exporter header, repeatable\n"
          "  --service NAME        service.name (default profilis-loadgen)\n"
          "  --queue-size N        max_queue_size     --batch-size N  max_export_batch_size\n"
          "  --block               wait for queue room instead of dropping\n"
          "  --allow-loss          exit 0 even when spans were dropped or failed\n"
          "The last line is: sent=N exported=N dropped=N failed=N elapsed_s=X spans_per_s=Y\n");
}

static int parse_double(const char *s, double lo, double hi, double *out) {
  char *end;
  errno = 0;
  double v = s ? strtod(s, &end) : 0;
  if (!s || errno || end == s || *end || !(v >= lo && v <= hi)) return -1;
  *out = v;
  return 0;
}

static int parse_u64(const char *s, uint64_t lo, uint64_t hi, uint64_t *out) {
  char *end;
  errno = 0;
  unsigned long long v = s && *s != '-' ? strtoull(s, &end, 10) : 0;
  if (!s || *s == '-' || errno || end == s || *end || v < lo || v > hi) return -1;
  *out = v;
  return 0;
}

/* Appends k=v to o->headers, percent-encoding what the list syntax would misread. */
static int add_header(lg_opts *o, const char *kv) {
  const char *eq = strchr(kv, '=');
  if (!eq || eq == kv) return -1;
  size_t old = o->headers ? strlen(o->headers) : 0, n = strlen(kv);
  char *h = realloc(o->headers, old + 1 + 3 * n + 1);
  if (!h) return -1;
  o->headers = h;
  char *p = h + old;
  if (old) *p++ = ',';
  for (const char *c = kv; *c; c++) {
    unsigned char u = (unsigned char)*c;
    if (c != eq && (u <= 0x20 || u >= 0x7f || u == ',' || u == '=' || u == '%')) {
      p += sprintf(p, "%%%02X", u);
    } else {
      *p++ = (char)u;
    }
  }
  *p = 0;
  return 0;
}

static int parse_int_opt(const char *v, uint64_t lo, uint64_t hi, int *out) {
  uint64_t x;
  if (parse_u64(v, lo, hi, &x)) return -1;
  *out = (int)x;
  return 0;
}

static int parse_u32_opt(const char *v, uint32_t *out) {
  uint64_t x;
  if (parse_u64(v, 1, UINT32_MAX, &x)) return -1;
  *out = (uint32_t)x;
  return 0;
}

/* Parses one option at argv[*i]; returns 0, -1 (bad usage) or 1 (--help). */
static int parse_opt(lg_opts *o, int argc, char **argv, int *i) {
  const char *a = argv[*i], *v = *i + 1 < argc ? argv[*i + 1] : NULL;
  if (!strcmp(a, "--help") || !strcmp(a, "-h")) return 1;
  if (!strcmp(a, "--allow-loss")) return o->allow_loss = true, 0;
  if (!strcmp(a, "--block")) return o->block = true, 0;
  if (!v) return -1;
  (*i)++;
  if (!strcmp(a, "--endpoint")) return *v ? (o->endpoint = v, 0) : -1;
  if (!strcmp(a, "--service")) return *v ? (o->service = v, 0) : -1;
  if (!strcmp(a, "--header")) return add_header(o, v);
  if (!strcmp(a, "--spans")) return parse_u64(v, 1, UINT64_MAX / 2, &o->spans);
  if (!strcmp(a, "--duration")) return parse_double(v, 0.001, 1e7, &o->duration_s);
  if (!strcmp(a, "--rate")) return parse_double(v, 0, 1e9, &o->rate);
  if (!strcmp(a, "--error-ratio")) return parse_double(v, 0, 1, &o->error_ratio);
  if (!strcmp(a, "--workers")) return parse_int_opt(v, 1, MAX_WORKERS, &o->workers);
  if (!strcmp(a, "--attrs")) return parse_int_opt(v, 0, MAX_ATTRS, &o->attrs);
  if (!strcmp(a, "--depth")) return parse_int_opt(v, 1, MAX_DEPTH, &o->depth);
  if (!strcmp(a, "--queue-size")) return parse_u32_opt(v, &o->queue_size);
  if (!strcmp(a, "--batch-size")) return parse_u32_opt(v, &o->batch_size);
  return -1;
}

/* ---- provider ---- */

/* An explicit flag wins over the environment: the variable is removed so that the SDK keeps
 * the field we set; everything not given on the command line still comes from OTEL_*. */
static void flag_wins(const char *var, const char *var2) {
  unsetenv(var);
  if (var2) unsetenv(var2);
}

static int make_provider(const lg_opts *lo, profilis_provider **out) {
  static char endpoint[512];
  profilis_provider_opts o;
  profilis_provider_opts_init(&o);
  o.service_name = "profilis-loadgen";
  if (lo->service) flag_wins("OTEL_SERVICE_NAME", NULL), o.service_name = lo->service;
  if (lo->endpoint) {
    flag_wins("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT");
    snprintf(endpoint, sizeof endpoint, "%s%s", strstr(lo->endpoint, "://") ? "" : "http://",
             lo->endpoint);
    o.endpoint = endpoint;
  }
  if (lo->headers) {
    flag_wins("OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_TRACES_HEADERS");
    o.headers = lo->headers;
  }
  if (lo->queue_size) {
    flag_wins("OTEL_BSP_MAX_QUEUE_SIZE", NULL);
    o.max_queue_size = lo->queue_size;
    /* Let the span count asked for be the bound, not the default byte budget. */
    if ((uint64_t)lo->queue_size * 512 > o.max_queue_bytes)
      o.max_queue_bytes = lo->queue_size > UINT32_MAX / 512 ? UINT32_MAX : lo->queue_size * 512;
  }
  if (lo->batch_size) {
    flag_wins("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", NULL);
    o.max_export_batch_size = lo->batch_size;
  }
  if (lo->block) {
    flag_wins("PROFILIS_BSP_QUEUE_POLICY", NULL);
    o.queue_policy = PROFILIS_QUEUE_BLOCK;
  }
  return profilis_provider_new(out, &o);
}

/* ---- run ---- */

static int start_workers(const lg_opts *o, profilis_tracer *t, worker *w) {
  uint64_t seed = mono_ns();
  for (int i = 0; i < o->workers; i++) {
    w[i] = (worker){.o = o, .tracer = t, .rate = o->rate / o->workers,
                    .rng = (seed + (uint64_t)i * 0x9e3779b97f4a7c15ull) | 1};
    if (o->spans) w[i].quota = o->spans / (uint64_t)o->workers + ((uint64_t)i < o->spans % (uint64_t)o->workers);
    int rc = pthread_create(&w[i].thread, NULL, worker_main, &w[i]);
    if (rc != 0) {
      fprintf(stderr, "loadgen: pthread_create: %s\n", strerror(rc));
      atomic_store(&stop_flag, 1);
      return i; /* the threads already running */
    }
  }
  return o->workers;
}

static int report(const lg_opts *o, profilis_provider *p, const worker *w, int n, int shut_rc) {
  uint64_t sent = 0, first = 0;
  for (int i = 0; i < n; i++) {
    sent += w[i].sent;
    if (w[i].first_ns && (!first || w[i].first_ns < first)) first = w[i].first_ns;
  }
  double elapsed = first ? (double)(mono_ns() - first) / 1e9 : 0;
  profilis_stats st = {0};
  profilis_provider_stats(p, &st);
  /* Spans neither exported nor counted as lost (e.g. shutdown gave up) are lost all the same. */
  uint64_t accounted = st.spans_exported + st.spans_dropped + st.spans_failed + st.spans_sampled_out;
  uint64_t missing = sent > accounted ? sent - accounted : 0;
  if (shut_rc != 0) fprintf(stderr, "loadgen: shutdown: %s\n", profilis_strerror(shut_rc));
  if (missing) fprintf(stderr, "loadgen: %llu spans unaccounted for\n", (unsigned long long)missing);
  if (st.spans_sampled_out)
    fprintf(stderr, "loadgen: %llu spans sampled out\n", (unsigned long long)st.spans_sampled_out);
  printf("sent=%llu exported=%llu dropped=%llu failed=%llu elapsed_s=%.3f spans_per_s=%.0f\n",
         (unsigned long long)sent, (unsigned long long)st.spans_exported,
         (unsigned long long)st.spans_dropped, (unsigned long long)st.spans_failed, elapsed,
         elapsed > 0 ? (double)st.spans_exported / elapsed : 0.0);
  bool lost = st.spans_dropped + st.spans_failed + missing > 0;
  return lost && !o->allow_loss ? 1 : 0;
}

int main(int argc, char **argv) {
  lg_opts o = {.workers = 1, .attrs = 2, .depth = 1};
  for (int i = 1; i < argc; i++) {
    int rc = parse_opt(&o, argc, argv, &i);
    if (rc) {
      if (rc < 0) fprintf(stderr, "loadgen: bad or incomplete option: %s\n", argv[i]);
      usage(rc > 0 ? stdout : stderr);
      free(o.headers);
      return rc > 0 ? 0 : 2;
    }
  }
  if (!o.spans && o.duration_s <= 0) o.spans = 10000;
  for (int i = 0; i < MAX_ATTRS; i++) snprintf(attr_keys[i], sizeof attr_keys[i], "attr.%d", i);

  struct sigaction sa = {.sa_handler = on_signal};
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);

  int exit_code = 1;
  profilis_provider *p = NULL;
  profilis_tracer *t = NULL;
  static worker w[MAX_WORKERS];
  int rc = make_provider(&o, &p);
  if (rc == 0) rc = profilis_tracer_get(p, "profilis-loadgen", PROFILIS_VERSION, &t);
  if (rc != 0) {
    fprintf(stderr, "loadgen: cannot start the SDK: %s\n", profilis_strerror(rc));
    goto out;
  }
  if (o.duration_s > 0) deadline_ns = mono_ns() + (uint64_t)(o.duration_s * 1e9);
  int n = start_workers(&o, t, w);
  for (int i = 0; i < n; i++) pthread_join(w[i].thread, NULL);
  int shut_rc = profilis_provider_shutdown(p, 30000);
  exit_code = report(&o, p, w, n, shut_rc);
  if (n < o.workers) exit_code = 1;
out:
  if (p) profilis_provider_free(p);
  free(o.headers);
  return exit_code;
}
