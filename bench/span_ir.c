/* profilis-span-ir: the span hot path in steady state, for instruction counting. It warms a
 * provider up (pools, ring pages, a lap of the queue), then runs N spans inside measure(), the
 * only function worth counting:
 *   valgrind --tool=callgrind --toggle-collect=measure build/bin/profilis-span-ir MODE 50000
 *   callgrind_annotate callgrind.out.<pid> | grep 'PROGRAM TOTALS'    (divide by N)
 * MODE 0: start + end; 1: plus two attributes (as profilis-bench); 2: sampled out; 3: the
 * PROFILIS_SPAN scope macro; 4: ten attributes, like an HTTP server span. Instruction counts
 * do not depend on machine load, unlike the wall-clock figures of profilis-bench. */
#include <profilis/profilis.h>
#include <stdio.h>
#include <stdlib.h>

static const profilis_span_opts internal_span = {.size = sizeof(profilis_span_opts),
                                                 .kind = PROFILIS_SPAN_KIND_INTERNAL};

static void set_http(profilis_span *s, int mode) {
  profilis_span_set_str(s, "http.request.method", "GET");
  profilis_span_set_int(s, "http.response.status_code", 200);
  if (mode != 4) return;
  profilis_span_set_str(s, "url.path", "/api/v1/items/42");
  profilis_span_set_str(s, "url.scheme", "https");
  profilis_span_set_str(s, "server.address", "api.example.com");
  profilis_span_set_int(s, "server.port", 443);
  profilis_span_set_str(s, "http.route", "/api/v1/items/{id}");
  profilis_span_set_str(s, "user_agent.original", "curl/8.4.0");
  profilis_span_set_str(s, "network.protocol.version", "1.1");
  profilis_span_set_str(s, "client.address", "10.1.2.3");
}

static void one_span(profilis_tracer *t, int mode) {
  if (mode == 3) {
    PROFILIS_SPAN(t, "bench.op") { __asm__ volatile("" ::: "memory"); }
    return;
  }
  profilis_span *s;
  profilis_span_start(t, "bench.op", &internal_span, &s);
  if (mode == 1 || mode == 4) set_http(s, mode);
  profilis_span_end(s);
}

__attribute__((noinline)) void measure(profilis_tracer *t, int mode, int n) {
  for (int i = 0; i < n; i++) one_span(t, mode);
}

int main(int argc, char **argv) {
  int mode = argc > 1 ? atoi(argv[1]) : 0, n = argc > 2 ? atoi(argv[2]) : 50000;
  if (mode < 0 || mode > 4 || n <= 0) {
    fprintf(stderr, "usage: profilis-span-ir [MODE 0-4] [SPANS]\n");
    return 2;
  }
  profilis_provider_opts o;
  profilis_provider_opts_init(&o);
  o.use_env = false;
  o.service_name = "profilis-span-ir";
  o.exporter = PROFILIS_EXPORTER_NONE;
  o.sampler = mode == 2 ? PROFILIS_SAMPLER_ALWAYS_OFF : PROFILIS_SAMPLER_ALWAYS_ON;
  o.max_queue_size = 262144; /* as profilis-bench: no timing includes the drop path */
  o.max_export_batch_size = 512;
  o.max_queue_bytes = 64u << 20;
  o.schedule_delay_ms = 100;
  profilis_provider *p;
  profilis_tracer *t;
  if (profilis_provider_new(&p, &o) || profilis_tracer_get(p, "profilis-span-ir", NULL, &t)) {
    fprintf(stderr, "profilis-span-ir: no provider\n");
    return 1;
  }
  for (int r = 0; r < 3; r++) {
    for (int i = 0; i < n; i++) one_span(t, mode);
    profilis_provider_force_flush(p, 10000);
  }
  measure(t, mode, n);
  profilis_provider_force_flush(p, 10000);
  profilis_stats st;
  profilis_provider_stats(p, &st);
  profilis_provider_free(p);
  if (st.spans_dropped)
    fprintf(stderr, "profilis-span-ir: %llu spans dropped\n", (unsigned long long)st.spans_dropped);
  return st.spans_dropped ? 1 : 0;
}
