/* Demo shop: sends a steady, realistic mix of traces through the SDK until Ctrl-C, SIGTERM or
 * --duration. Four services (frontend, checkout, payments, inventory) each own a provider, as
 * four processes would; every call between them carries W3C trace context and baggage through
 * an in-memory header carrier (profilis_inject / profilis_extract). Span times are laid out on
 * a simulated clock that starts in the recent past, so slow requests (100-800 ms) need no real
 * sleeping. About 5% of requests fail somewhere with an exception event and ERROR status. */
#define _GNU_SOURCE
#include <errno.h>
#include <profilis/profilis.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { FRONTEND, CHECKOUT, PAYMENTS, INVENTORY, N_SERVICES };
static const char *const service_names[N_SERVICES] = {"frontend", "checkout", "payments",
                                                      "inventory"};

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig) { stop_requested = sig; }

/* One trace being built: the services, the simulated clock and what goes wrong this time. */
typedef struct sim {
  profilis_provider *provider[N_SERVICES];
  profilis_tracer *tracer[N_SERVICES];
  uint64_t rng;
  uint64_t clock_ns; /* simulated wall clock of the trace being built */
  int step;          /* fallible operations done so far in this trace */
  int fail_step;     /* the step that fails, or -1 */
  int slow_step;     /* the step that is slow, or -1 */
  const char *tier;  /* customer tier, carried as baggage */
} sim;

/* ---- small helpers ---- */

static uint64_t rnd(sim *s) { /* xorshift64* */
  s->rng ^= s->rng >> 12;
  s->rng ^= s->rng << 25;
  s->rng ^= s->rng >> 27;
  return s->rng * 2685821657736338717ull;
}

static uint64_t rnd_range(sim *s, uint64_t lo, uint64_t hi) { return lo + rnd(s) % (hi - lo + 1); }

static void advance_us(sim *s, uint64_t lo, uint64_t hi) { s->clock_ns += rnd_range(s, lo, hi) * 1000; }

/* Starts a span of `svc` at the simulated time; parent NULL starts a new trace. */
static profilis_span *begin(sim *s, int svc, const char *name, profilis_span_kind kind,
                            const profilis_span_context *parent) {
  profilis_span_opts o = {.size = sizeof o, .kind = kind, .parent = parent, .root = !parent,
                          .start_time_ns = s->clock_ns};
  profilis_span *span;
  profilis_span_start(s->tracer[svc], name, &o, &span);
  return span;
}

static void finish(sim *s, profilis_span *span) { profilis_span_end_at(span, s->clock_ns); }

/* profilis_span_record_exception() stamps its event with the real time; these spans live on
 * the simulated clock, so the same "exception" event is added with the simulated time. */
static void fail_span(sim *s, profilis_span *span, const char *type, const char *message) {
  profilis_attr attrs[] = {PROFILIS_ATTR_STR("exception.type", type),
                           PROFILIS_ATTR_STR("exception.message", message)};
  profilis_span_add_event(span, "exception", s->clock_ns, attrs, 2);
  profilis_span_set_status(span, PROFILIS_STATUS_ERROR, message);
}

/* Returns true when the operation now being done is the one chosen to fail (or be slow). */
static bool next_step(sim *s, bool *slow) {
  int k = s->step++;
  *slow = k == s->slow_step;
  return k == s->fail_step;
}

/* ---- the in-memory carrier: a few header name/value pairs ---- */

typedef struct carrier {
  int n;
  char key[4][16];
  char value[4][PROFILIS_TRACESTATE_MAX + 128];
} carrier;

static int carrier_set(void *c, const char *key, const char *value) {
  carrier *h = c;
  if (h->n == 4 || strlen(key) >= sizeof h->key[0] || strlen(value) >= sizeof h->value[0])
    return PROFILIS_ELIMIT;
  strcpy(h->key[h->n], key);
  strcpy(h->value[h->n], value);
  h->n++;
  return 0;
}

static const char *carrier_get(void *c, const char *key) {
  carrier *h = c;
  for (int i = 0; i < h->n; i++)
    if (strcmp(h->key[i], key) == 0) return h->value[i];
  return NULL;
}

/* ---- leaf operations ---- */

/* A database or cache call: a CLIENT span with db.* attributes. Returns 0 or -1 on failure. */
static int db_call(sim *s, int svc, profilis_span *parent, const char *system, const char *op,
                   const char *target, const char *query) {
  profilis_span_context pc;
  profilis_span_get_context(parent, &pc);
  char name[96];
  snprintf(name, sizeof name, "%s %s", op, target);
  profilis_span *span = begin(s, svc, name, PROFILIS_SPAN_KIND_CLIENT, &pc);
  profilis_span_set_str(span, "db.system", system);
  profilis_span_set_str(span, "db.operation.name", op);
  if (query) profilis_span_set_str(span, "db.query.text", query);
  bool slow;
  bool fail = next_step(s, &slow);
  if (slow)
    advance_us(s, 100000, 800000);
  else
    advance_us(s, 200, strcmp(system, "redis") == 0 ? 900 : 6000);
  if (fail) {
    bool is_redis = strcmp(system, "redis") == 0;
    fail_span(s, span, is_redis ? "TimeoutError" : "OperationalError",
              is_redis ? "redis read timed out" : "deadlock detected");
  }
  finish(s, span);
  return fail ? -1 : 0;
}

/* Local work inside a service: an INTERNAL span. Returns 0 or -1 on failure. */
static int internal_work(sim *s, int svc, profilis_span *parent, const char *name) {
  profilis_span_context pc;
  profilis_span_get_context(parent, &pc);
  profilis_span *span = begin(s, svc, name, PROFILIS_SPAN_KIND_INTERNAL, &pc);
  bool slow;
  bool fail = next_step(s, &slow);
  advance_us(s, slow ? 100000 : 50, slow ? 400000 : 2500);
  if (fail) {
    char msg[96];
    snprintf(msg, sizeof msg, "invalid state in %s", name);
    fail_span(s, span, "ValueError", msg);
  }
  finish(s, span);
  return fail ? -1 : 0;
}

/* ---- calls between services ---- */

typedef int (*handler_fn)(sim *s, profilis_span *server_span);

/* `from` calls `to`: a CLIENT span in the caller, its context injected into a carrier; the
 * callee extracts it and serves the request under a SERVER span. Returns the HTTP status. */
static int http_call(sim *s, int from, profilis_span *parent, int to, const char *method,
                     const char *route, const char *path, handler_fn handler) {
  char name[128];
  snprintf(name, sizeof name, "%s %s", method, route);
  profilis_span_context pc;
  profilis_span_get_context(parent, &pc);
  profilis_span *client = begin(s, from, name, PROFILIS_SPAN_KIND_CLIENT, &pc);
  profilis_span_set_str(client, "http.request.method", method);
  profilis_span_set_str(client, "server.address", service_names[to]);
  profilis_span_set_str(client, "url.path", path);
  advance_us(s, 100, 400); /* network */

  carrier headers = {0};
  profilis_span_context cc;
  profilis_span_get_context(client, &cc);
  profilis_baggage *bg = NULL;
  if (profilis_baggage_new(&bg) == 0) profilis_baggage_set(bg, "customer.tier", s->tier, NULL);
  profilis_inject(profilis_provider_propagators(s->provider[from]), &cc, bg, carrier_set,
                  &headers);
  profilis_baggage_free(bg);

  /* ---- in the callee ---- */
  profilis_span_context remote;
  bg = NULL;
  profilis_baggage_new(&bg);
  int rc = profilis_extract(profilis_provider_propagators(s->provider[to]), carrier_get, &headers,
                            &remote, bg);
  profilis_span *server =
      begin(s, to, name, PROFILIS_SPAN_KIND_SERVER, rc == 0 ? &remote : NULL);
  profilis_span_set_str(server, "http.request.method", method);
  profilis_span_set_str(server, "http.route", route);
  profilis_span_set_str(server, "url.path", path);
  const char *tier = bg ? profilis_baggage_get(bg, "customer.tier") : NULL;
  if (tier) profilis_span_set_str(server, "app.customer.tier", tier);
  profilis_baggage_free(bg);
  advance_us(s, 20, 150);
  int status = handler(s, server);
  advance_us(s, 20, 150);
  profilis_span_set_int(server, "http.response.status_code", status);
  if (status >= 500) profilis_span_set_status(server, PROFILIS_STATUS_ERROR, NULL);
  finish(s, server);
  /* ---- back in the caller ---- */

  advance_us(s, 100, 400);
  profilis_span_set_int(client, "http.response.status_code", status);
  if (status >= 500) profilis_span_set_status(client, PROFILIS_STATUS_ERROR, NULL);
  finish(s, client);
  return status;
}

/* ---- handlers of the backend services ---- */

static int inventory_list(sim *s, profilis_span *srv) {
  if (db_call(s, INVENTORY, srv, "redis", "GET", "catalog", NULL) != 0) return 500;
  if (db_call(s, INVENTORY, srv, "postgresql", "SELECT", "shop.items",
              "SELECT id, name, price FROM items WHERE stock > 0 LIMIT $1") != 0)
    return 500;
  return 200;
}

static int inventory_item(sim *s, profilis_span *srv) {
  if (db_call(s, INVENTORY, srv, "postgresql", "SELECT", "shop.items",
              "SELECT * FROM items WHERE id = $1") != 0)
    return 500;
  return (rnd(s) % 50 == 0) ? 404 : 200;
}

static int inventory_reserve(sim *s, profilis_span *srv) {
  if (db_call(s, INVENTORY, srv, "postgresql", "UPDATE", "shop.items",
              "UPDATE items SET stock = stock - $1 WHERE id = $2 AND stock >= $1") != 0)
    return 500;
  return 200;
}

static int payments_charge(sim *s, profilis_span *srv) {
  if (internal_work(s, PAYMENTS, srv, "fraud_check") != 0) return 500;
  if (db_call(s, PAYMENTS, srv, "postgresql", "INSERT", "payments.charges",
              "INSERT INTO charges (order_id, amount) VALUES ($1, $2)") != 0)
    return 500;
  return 200;
}

static int checkout_place_order(sim *s, profilis_span *srv) {
  if (internal_work(s, CHECKOUT, srv, "validate_cart") != 0) return 400;
  if (db_call(s, CHECKOUT, srv, "redis", "GET", "cart", NULL) != 0) return 500;
  if (http_call(s, CHECKOUT, srv, INVENTORY, "POST", "/api/inventory/reserve",
                "/api/inventory/reserve", inventory_reserve) >= 500)
    return 502;
  if (http_call(s, CHECKOUT, srv, PAYMENTS, "POST", "/api/payments/charge",
                "/api/payments/charge", payments_charge) >= 500)
    return 502;
  if (db_call(s, CHECKOUT, srv, "postgresql", "INSERT", "shop.orders",
              "INSERT INTO orders (user_id, total) VALUES ($1, $2)") != 0)
    return 500;
  return 201;
}

/* ---- frontend requests: the roots of the traces ---- */

typedef struct request_kind {
  const char *method, *route;
  int weight;
  int steps; /* fallible operations a request of this kind goes through */
} request_kind;

static const request_kind kinds[] = {
    {"GET", "/products", 50, 3},
    {"GET", "/products/{id}", 30, 2},
    {"POST", "/checkout", 20, 7},
};

static int frontend_request(sim *s, const request_kind *k, const char *path) {
  char name[96];
  snprintf(name, sizeof name, "%s %s", k->method, k->route);
  profilis_span *srv = begin(s, FRONTEND, name, PROFILIS_SPAN_KIND_SERVER, NULL);
  profilis_span_set_str(srv, "http.request.method", k->method);
  profilis_span_set_str(srv, "http.route", k->route);
  profilis_span_set_str(srv, "url.path", path);
  int status;
  if (k == &kinds[0]) {
    status = http_call(s, FRONTEND, srv, INVENTORY, "GET", "/api/inventory/items",
                       "/api/inventory/items", inventory_list);
    if (status < 500 && internal_work(s, FRONTEND, srv, "render_page") != 0) status = 500;
  } else if (k == &kinds[1]) {
    char api[64];
    snprintf(api, sizeof api, "/api/inventory/items%s", path + strlen("/products"));
    status = http_call(s, FRONTEND, srv, INVENTORY, "GET", "/api/inventory/items/{id}", api,
                       inventory_item);
  } else {
    status = http_call(s, FRONTEND, srv, CHECKOUT, "POST", "/api/checkout", "/api/checkout",
                       checkout_place_order);
  }
  if (status >= 500) status = 502;
  profilis_span_set_int(srv, "http.response.status_code", status);
  if (status >= 500) profilis_span_set_status(srv, PROFILIS_STATUS_ERROR, NULL);
  advance_us(s, 30, 300);
  finish(s, srv);
  return status;
}

/* Builds one whole trace. The simulated clock starts 1.5 s in the past, longer than the
 * slowest trace, so every span has ended by the time it is exported. */
static void one_trace(sim *s) {
  int total = 0, pick;
  for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) total += kinds[i].weight;
  pick = (int)(rnd(s) % (uint64_t)total);
  const request_kind *k = kinds;
  while (pick >= k->weight) pick -= k++->weight;

  s->clock_ns = profilis_now_ns() - 1500000000ull;
  s->step = 0;
  s->fail_step = rnd(s) % 100 < 6 ? (int)(rnd(s) % (uint64_t)k->steps) : -1;
  s->slow_step = rnd(s) % 100 < 4 ? (int)(rnd(s) % (uint64_t)k->steps) : -1;
  s->tier = rnd(s) % 4 == 0 ? "gold" : "standard";
  char path[48];
  if (k == &kinds[1])
    snprintf(path, sizeof path, "/products/%u", (unsigned)rnd_range(s, 1000, 1999));
  else
    snprintf(path, sizeof path, "%s", k->route);
  frontend_request(s, k, path);
}

/* ---- setup, the paced main loop and shutdown ---- */

static int start_services(sim *s, const char *endpoint) {
  /* Each service names itself: a global OTEL_SERVICE_NAME must not rename all four. An explicit
   * --endpoint wins over the environment. */
  unsetenv("OTEL_SERVICE_NAME");
  if (endpoint) {
    unsetenv("OTEL_EXPORTER_OTLP_ENDPOINT");
    unsetenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT");
  }
  for (int i = 0; i < N_SERVICES; i++) {
    profilis_provider_opts o;
    profilis_provider_opts_init(&o);
    o.service_name = service_names[i];
    o.resource_attributes = "service.namespace=shop,deployment.environment.name=demo";
    o.schedule_delay_ms = 1000;
    o.endpoint = endpoint;
    int rc = profilis_provider_new(&s->provider[i], &o);
    if (rc == 0) rc = profilis_tracer_get(s->provider[i], "profilis-demo", PROFILIS_VERSION,
                                          &s->tracer[i]);
    if (rc != 0) {
      fprintf(stderr, "demo: cannot start %s: %s\n", service_names[i], profilis_strerror(rc));
      return rc;
    }
  }
  return 0;
}

static void print_stats(sim *s, const char *when, uint64_t traces) {
  printf("demo: %s: %llu traces |", when, (unsigned long long)traces);
  for (int i = 0; i < N_SERVICES; i++) {
    profilis_stats st = {0};
    profilis_provider_stats(s->provider[i], &st);
    printf(" %s exported=%llu dropped=%llu failed=%llu", service_names[i],
           (unsigned long long)st.spans_exported, (unsigned long long)st.spans_dropped,
           (unsigned long long)st.spans_failed);
  }
  printf("\n");
  fflush(stdout);
}

static void add_ns(struct timespec *t, uint64_t ns) {
  uint64_t v = (uint64_t)t->tv_nsec + ns;
  t->tv_sec += (time_t)(v / 1000000000u);
  t->tv_nsec = (long)(v % 1000000000u);
}

/* Sends traces at `rate` per second until a signal arrives or `duration_s` (0 = forever). */
static uint64_t run(sim *s, double rate, double duration_s) {
  struct timespec next, start, now;
  clock_gettime(CLOCK_MONOTONIC, &start);
  next = start;
  uint64_t interval = (uint64_t)(1e9 / rate), traces = 0, last_report = 0;
  while (!stop_requested) {
    one_trace(s);
    traces++;
    clock_gettime(CLOCK_MONOTONIC, &now);
    double elapsed = (double)(now.tv_sec - start.tv_sec) + (now.tv_nsec - start.tv_nsec) / 1e9;
    if (duration_s > 0 && elapsed >= duration_s) break;
    if ((uint64_t)elapsed / 10 != last_report) {
      last_report = (uint64_t)elapsed / 10;
      print_stats(s, "running", traces);
    }
    add_ns(&next, interval);
    if (now.tv_sec > next.tv_sec + 1) next = now; /* fell far behind: do not burst to catch up */
    /* EINTR (a signal) ends the wait early; the loop condition then sees the flag. */
    clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL);
  }
  return traces;
}

static void *shutdown_one(void *provider) {
  profilis_provider_shutdown(provider, 3000);
  return NULL;
}

/* Shuts the services down side by side, so that stopping takes at most one timeout even when
 * the collector is unreachable. */
static void shutdown_all(sim *s) {
  pthread_t th[N_SERVICES];
  bool started[N_SERVICES];
  for (int i = 0; i < N_SERVICES; i++) {
    started[i] = pthread_create(&th[i], NULL, shutdown_one, s->provider[i]) == 0;
    if (!started[i]) shutdown_one(s->provider[i]);
  }
  for (int i = 0; i < N_SERVICES; i++)
    if (started[i]) pthread_join(th[i], NULL);
}

static void usage(FILE *f) {
  fprintf(f, "usage: profilis-demo [--rate TRACES_PER_S] [--duration S] [--endpoint URL]\n"
             "  Sends a realistic mix of traces from four services until Ctrl-C.\n"
             "  --rate      traces per second (default 20)\n"
             "  --duration  stop after S seconds (default: run until Ctrl-C / SIGTERM)\n"
             "  --endpoint  OTLP/gRPC endpoint, e.g. http://127.0.0.1:4317 (default:\n"
             "              OTEL_EXPORTER_OTLP_ENDPOINT, else http://localhost:4317)\n"
             "  OTEL_* variables apply as in any OpenTelemetry SDK (e.g. OTEL_TRACES_EXPORTER).\n");
}

/* Parses a positive number; returns 0 or -1. */
static int parse_num(const char *s, double *out) {
  char *end;
  errno = 0;
  double v = s ? strtod(s, &end) : 0;
  if (!s || errno || end == s || *end || !(v > 0) || v > 1e9) return -1;
  *out = v;
  return 0;
}

int main(int argc, char **argv) {
  double rate = 20, duration = 0;
  const char *endpoint = NULL;
  char endpoint_buf[512];
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    int bad = 0;
    if (!strcmp(a, "--rate")) bad = parse_num(v, &rate), i++;
    else if (!strcmp(a, "--duration")) bad = parse_num(v, &duration), i++;
    else if (!strcmp(a, "--endpoint") && v) endpoint = v, i++;
    else if (!strcmp(a, "--help") || !strcmp(a, "-h")) return usage(stdout), 0;
    else bad = -1;
    if (bad) return usage(stderr), 2;
  }
  if (endpoint && !strstr(endpoint, "://")) { /* host:port means plain-text gRPC */
    snprintf(endpoint_buf, sizeof endpoint_buf, "http://%s", endpoint);
    endpoint = endpoint_buf;
  }

  struct sigaction sa = {.sa_handler = on_signal}; /* no SA_RESTART: wake the sleep */
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);

  sim s = {.rng = (uint64_t)profilis_now_ns() | 1};
  int rc = start_services(&s, endpoint);
  if (rc == 0) {
    printf("demo: sending %.0f traces/s from %d services (Ctrl-C to stop)\n", rate, N_SERVICES);
    fflush(stdout);
    uint64_t traces = run(&s, rate, duration);
    shutdown_all(&s);
    print_stats(&s, "stopped", traces);
  }
  for (int i = 0; i < N_SERVICES; i++)
    if (s.provider[i]) profilis_provider_free(s.provider[i]);
  return rc == 0 ? 0 : 1;
}
