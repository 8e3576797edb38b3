/* Test driver for the SDK end-to-end tests: reads commands on stdin, one per line, and answers
 * each with one JSON line on stdout, so a Python test can script outages and forks around a
 * real OTLP receiver. Configured entirely by the OTEL_* environment, like any application.
 *   interop            emit a fixed set of traces; answer with a manifest of what was sent
 *   send N NAME        N traces of 2 spans (NAME-root -> NAME-child) with attributes
 *   flush MS | stats | shutdown MS
 *   flood SECONDS      create spans as fast as possible; report count, slowest end, RSS
 *   fork NAME N        fork; child and parent each send N traces (NAME-child-*, NAME-parent-*),
 *                      flush and report; the parent reports both */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "profilis/profilis.h"

static profilis_provider *prov;
static profilis_tracer *tracer;

static uint64_t mono_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static long rss_kib(void) {
  FILE *f = fopen("/proc/self/statm", "r");
  long pages = 0, res = 0;
  if (f) {
    if (fscanf(f, "%ld %ld", &pages, &res) != 2) res = 0;
    fclose(f);
  }
  return res * (sysconf(_SC_PAGESIZE) / 1024);
}

/* Times this thread gave up the CPU voluntarily (blocked: futex, sleep, I/O wait). Being
 * preempted does not count, so this tells blocking apart from a busy machine. */
static long voluntary_switches(void) {
  FILE *f = fopen("/proc/thread-self/status", "r");
  long v = -1;
  char line[256];
  while (f && fgets(line, sizeof line, f))
    if (sscanf(line, "voluntary_ctxt_switches: %ld", &v) == 1) break;
  if (f) fclose(f);
  return v;
}

static void hex(const uint8_t *p, size_t n, char *out) {
  for (size_t i = 0; i < n; i++) sprintf(out + 2 * i, "%02x", p[i]);
}

static void print_stats(const char *tag) {
  profilis_stats st;
  profilis_provider_stats(prov, &st);
  printf("{\"%s\":true,\"pid\":%d,\"started\":%" PRIu64 ",\"queued\":%" PRIu64
         ",\"exported\":%" PRIu64 ",\"dropped\":%" PRIu64 ",\"failed\":%" PRIu64
         ",\"rejected\":%" PRIu64 ",\"depth\":%" PRIu64 ",\"retries\":%" PRIu64 "}\n",
         tag, (int)getpid(), st.spans_started, st.spans_queued, st.spans_exported,
         st.spans_dropped, st.spans_failed, st.spans_rejected, st.queue_depth, st.export_retries);
  fflush(stdout);
}

static void send_traces(int n, const char *name) {
  char root_name[128], child_name[128];
  snprintf(root_name, sizeof root_name, "%s-root", name);
  snprintf(child_name, sizeof child_name, "%s-child", name);
  for (int i = 0; i < n; i++) {
    profilis_span *root = profilis_span_begin(tracer, root_name);
    profilis_span_set_int(root, "i", i);
    profilis_context_push(root);
    profilis_span *child = profilis_span_begin(tracer, child_name);
    profilis_span_set_str(child, "pid", "x");
    profilis_span_end(child);
    profilis_context_pop();
    profilis_span_end(root);
  }
}

/* Prints one manifest entry per span: what the receiver must see. */
static void manifest(profilis_span *s, const char *name, const char *parent_hex) {
  profilis_span_context c;
  profilis_span_get_context(s, &c);
  char t[33], sp[17];
  hex(c.trace_id, 16, t);
  hex(c.span_id, 8, sp);
  printf("{\"span\":true,\"name\":\"%s\",\"trace_id\":\"%s\",\"span_id\":\"%s\",\"parent\":\"%s\"}\n",
         name, t, sp, parent_hex);
}

static void interop(void) {
  for (int tr = 0; tr < 3; tr++) {
    profilis_span_opts so = {.size = sizeof so, .kind = PROFILIS_SPAN_KIND_SERVER};
    profilis_span *root;
    profilis_span_start(tracer, "GET /orders", &so, &root);
    profilis_span_set_str(root, "http.request.method", "GET");
    profilis_span_set_int(root, "http.response.status_code", 200 + tr);
    profilis_span_set_double(root, "ratio", 0.5);
    profilis_span_set_bool(root, "cached", tr % 2 == 0);
    const char *tags[] = {"a", "b"};
    profilis_attr arr = {.key = "tags", .type = PROFILIS_ATTR_STRING_ARRAY, .len = 2, .v.sa = tags};
    profilis_span_set_attr(root, &arr);
    profilis_context_push(root);
    profilis_span_opts co = {.size = sizeof co, .kind = PROFILIS_SPAN_KIND_CLIENT};
    profilis_span *db;
    profilis_span_start(tracer, "SELECT orders", &co, &db);
    profilis_span_set_str(db, "db.system", "postgresql");
    if (tr == 2) profilis_span_record_exception(db, "Timeout", "query timed out");
    char rp[17];
    profilis_span_context rc;
    profilis_span_get_context(root, &rc);
    hex(rc.span_id, 8, rp);
    manifest(db, "SELECT orders", rp);
    profilis_span_end(db);
    profilis_context_pop();
    manifest(root, "GET /orders", "");
    profilis_span_end(root);
  }
  printf("{\"interop\":true}\n");
  fflush(stdout);
}

static void flood(double seconds) {
  uint64_t end = mono_ns() + (uint64_t)(seconds * 1e9), slowest = 0, n = 0;
  long rss_start = rss_kib(), rss_max = rss_start;
  uint64_t next_sample = mono_ns() + 100000000ull;
  long vol_start = voluntary_switches(), vol_samples = 0;
  while (mono_ns() < end) {
    for (int i = 0; i < 1000; i++) {
      uint64_t t0 = mono_ns();
      profilis_span *s = profilis_span_begin(tracer, "flood");
      profilis_span_set_int(s, "n", (int64_t)n);
      profilis_span_set_str(s, "k", "value");
      profilis_span_end(s);
      uint64_t d = mono_ns() - t0;
      if (d > slowest) slowest = d;
      n++;
    }
    if (mono_ns() >= next_sample) {
      long v0 = voluntary_switches();
      long r = rss_kib();
      if (r > rss_max) rss_max = r;
      vol_samples += voluntary_switches() - v0; /* our own /proc reads, not the SDK */
      next_sample += 100000000ull;
    }
  }
  long blocked = voluntary_switches() - vol_start - vol_samples;
  printf("{\"flood\":true,\"sent\":%" PRIu64 ",\"slowest_ns\":%" PRIu64
         ",\"voluntary_switches\":%ld,\"rss_start_kib\":%ld,\"rss_max_kib\":%ld,"
         "\"rss_end_kib\":%ld}\n",
         n, slowest, blocked, rss_start, rss_max, rss_kib());
  fflush(stdout);
}

static void do_fork(const char *name, int n) {
  char cname[128], pname[128];
  snprintf(cname, sizeof cname, "%s-child", name);
  snprintf(pname, sizeof pname, "%s-parent", name);
  fflush(stdout);
  pid_t pid = fork();
  if (pid == 0) {
    send_traces(n, cname);
    int rc = profilis_provider_force_flush(prov, 10000);
    printf("{\"forked_child_flush\":%d}\n", rc);
    print_stats("child_stats");
    profilis_provider_free(prov);
    fflush(stdout);
    _exit(rc == 0 ? 0 : 3);
  }
  send_traces(n, pname);
  int rc = profilis_provider_force_flush(prov, 10000);
  int status = 0;
  waitpid(pid, &status, 0);
  printf("{\"fork\":true,\"parent_flush\":%d,\"child_exit\":%d}\n", rc,
         WIFEXITED(status) ? WEXITSTATUS(status) : -1);
  fflush(stdout);
}

int main(void) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  if (profilis_provider_new(&prov, NULL) != 0) return 2;
  profilis_tracer_get(prov, "sdk-e2e", "1.2.3", &tracer);
  char line[256];
  while (fgets(line, sizeof line, stdin)) {
    char cmd[32] = "", arg[128] = "";
    int n = 0;
    double d = 0;
    if (sscanf(line, "%31s", cmd) != 1) continue;
    if (!strcmp(cmd, "interop")) interop();
    else if (!strcmp(cmd, "send") && sscanf(line, "%*s %d %127s", &n, arg) == 2) {
      send_traces(n, arg);
      printf("{\"sent\":%d}\n", 2 * n);
    } else if (!strcmp(cmd, "flush") && sscanf(line, "%*s %d", &n) == 1) {
      uint64_t t0 = mono_ns();
      int rc = profilis_provider_force_flush(prov, (uint32_t)n);
      printf("{\"flush\":%d,\"ms\":%.1f}\n", rc, (mono_ns() - t0) / 1e6);
    } else if (!strcmp(cmd, "stats")) print_stats("stats");
    else if (!strcmp(cmd, "flood") && sscanf(line, "%*s %lf", &d) == 1) flood(d);
    else if (!strcmp(cmd, "fork") && sscanf(line, "%*s %127s %d", arg, &n) == 2) do_fork(arg, n);
    else if (!strcmp(cmd, "shutdown") && sscanf(line, "%*s %d", &n) == 1) {
      uint64_t t0 = mono_ns();
      int rc = profilis_provider_shutdown(prov, (uint32_t)n);
      printf("{\"shutdown\":%d,\"ms\":%.1f}\n", rc, (mono_ns() - t0) / 1e6);
      print_stats("final");
      break;
    } else printf("{\"error\":\"bad command\"}\n");
    fflush(stdout);
  }
  profilis_provider_free(prov);
  return 0;
}
