/* Tests of the collector's OTLP exporter (collector/exp_otlp.c) against a real gRPC server:
 * tests/integration/otlp_sink.py (Python grpcio, /usr/bin/python3) on a free 127.0.0.1 port.
 * Chunks are built by hand: records with chunk_builder.h, original ResourceSpans bytes with
 * protobuf-c. Covers pass-through (the request carries the original bytes: the sink sees what
 * only they contain, and the request size is exactly theirs plus framing), re-encoding of
 * modified chunks and of chunks without bytes, headers as metadata, gzip, TLS, retries on
 * UNAVAILABLE, permanent failures, the retry time limit, the deadline, partial success. */
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "chunk_builder.h"
#include "opentelemetry/proto/collector/trace/v1/trace_service.pb-c.h"
#include "pc_exporter.h"
#include "sink_proc.h"


/* ---- the sink (sink_proc.h) ---- */

static int count_lines(const char *path) {
  char *s = slurp(path);
  int n = 0;
  for (char *p = s; *p; p++) n += *p == '\n';
  free(s);
  return n;
}

/* ---- chunks ---- */

typedef Opentelemetry__Proto__Trace__V1__ResourceSpans pb_rs;
typedef Opentelemetry__Proto__Trace__V1__ScopeSpans pb_ss;
typedef Opentelemetry__Proto__Trace__V1__Span pb_span;
typedef Opentelemetry__Proto__Resource__V1__Resource pb_resource;
typedef Opentelemetry__Proto__Common__V1__KeyValue pb_kv;
typedef Opentelemetry__Proto__Common__V1__KeyValueList pb_kvlist;
typedef Opentelemetry__Proto__Common__V1__AnyValue pb_any;
typedef Opentelemetry__Proto__Common__V1__InstrumentationScope pb_scope;

static const pf_scope g_scope = {.name = "rec.scope", .version = "1"};

/* The original bytes of a ResourceSpans with n spans "<prefix>-<i>", each carrying a kvlist
 * attribute (something the records of these tests never hold), packed by protobuf-c. */
static void raw_resource_spans(pf_buf *out, const char *prefix, int n) {
  pb_any svc_v = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__INIT, one = svc_v, kl_v = svc_v;
  svc_v.value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_STRING_VALUE;
  svc_v.string_value = "raw-svc";
  pb_kv svc = OPENTELEMETRY__PROTO__COMMON__V1__KEY_VALUE__INIT, a = svc, cfg = svc;
  svc.key = "service.name";
  svc.value = &svc_v;
  pb_kv *rattrs[] = {&svc};
  pb_resource res = OPENTELEMETRY__PROTO__RESOURCE__V1__RESOURCE__INIT;
  res.n_attributes = 1;
  res.attributes = rattrs;
  one.value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_INT_VALUE;
  one.int_value = 1;
  a.key = "a";
  a.value = &one;
  pb_kv *kvs[] = {&a};
  pb_kvlist kl = OPENTELEMETRY__PROTO__COMMON__V1__KEY_VALUE_LIST__INIT;
  kl.n_values = 1;
  kl.values = kvs;
  kl_v.value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_KVLIST_VALUE;
  kl_v.kvlist_value = &kl;
  cfg.key = "cfg";
  cfg.value = &kl_v;
  pb_kv *sattrs[] = {&cfg};
  pb_span spans[8];
  pb_span *sp[8];
  char names[8][32];
  uint8_t tid[16], sid[8][8];
  rb_id(tid, 16, 0x70);
  for (int i = 0; i < n; i++) {
    pb_span s = OPENTELEMETRY__PROTO__TRACE__V1__SPAN__INIT;
    snprintf(names[i], sizeof names[i], "%s-%d", prefix, i);
    rb_id(sid[i], 8, (uint8_t)(0x80 + i));
    s.trace_id = (ProtobufCBinaryData){16, tid};
    s.span_id = (ProtobufCBinaryData){8, sid[i]};
    s.name = names[i];
    s.kind = OPENTELEMETRY__PROTO__TRACE__V1__SPAN__SPAN_KIND__SPAN_KIND_SERVER;
    s.start_time_unix_nano = 1000;
    s.end_time_unix_nano = 2000 + (uint64_t)i;
    s.n_attributes = 1;
    s.attributes = sattrs;
    spans[i] = s;
    sp[i] = &spans[i];
  }
  pb_scope scope = OPENTELEMETRY__PROTO__COMMON__V1__INSTRUMENTATION_SCOPE__INIT;
  scope.name = "raw.scope";
  pb_ss ss = OPENTELEMETRY__PROTO__TRACE__V1__SCOPE_SPANS__INIT;
  ss.scope = &scope;
  ss.n_spans = (size_t)n;
  ss.spans = sp;
  pb_ss *sss[] = {&ss};
  pb_rs rs = OPENTELEMETRY__PROTO__TRACE__V1__RESOURCE_SPANS__INIT;
  rs.resource = &res;
  rs.n_scope_spans = 1;
  rs.scope_spans = sss;
  rs.schema_url = "https://opentelemetry.io/schemas/1.21.0";
  pf_buf_reset(out);
  assert_int_equal(
      pf_buf_reserve(out, opentelemetry__proto__trace__v1__resource_spans__get_packed_size(&rs)),
      0);
  out->len = opentelemetry__proto__trace__v1__resource_spans__pack(&rs, out->p);
}

/* A chunk of n record spans "<prefix>-<i>" under service rec-svc, optionally with raw bytes. */
static void make_chunk(tchunk *t, const char *prefix, int n, const char *raw_prefix) {
  profilis_attr res[] = {PROFILIS_ATTR_STR("service.name", "rec-svc")};
  tc_init(t, res, 1, NULL);
  for (int i = 0; i < n; i++) {
    char name[32];
    snprintf(name, sizeof name, "%s-%d", prefix, i);
    rb_span s = {.name = name, .kind = 2, .start_ns = 1000, .end_ns = 3000, .scope = &g_scope};
    rb_id(s.trace_id, 16, 0x70);
    rb_id(s.span_id, 8, (uint8_t)(0x90 + i));
    tc_add(t, &s);
  }
  if (raw_prefix) raw_resource_spans(&t->c.raw, raw_prefix, n);
}

static size_t varint_len(size_t v) {
  size_t n = 1;
  for (; v >= 0x80; v >>= 7) n++;
  return n;
}

/* What the exporter must send for a chunk re-encoded from its records. */
static size_t encoded_len(const tchunk *t) {
  pf_buf b = {0};
  pf_batch batch = pc_chunk_batch(&t->c);
  assert_int_equal(pf_otlp_encode_request(&b, &batch), 0);
  size_t n = b.len;
  pf_buf_free(&b);
  return n;
}

static pc_exporter_cfg otlp_cfg(char *endpoint, size_t cap, const sink *s) {
  snprintf(endpoint, cap, "http://127.0.0.1:%d", s->port);
  return (pc_exporter_cfg){.name = "otlp/test",
                           .type = PC_EXPORTER_OTLP,
                           .endpoint = endpoint,
                           .timeout_ms = 5000,
                           .retry_initial_ms = 20,
                           .retry_max_ms = 100,
                           .retry_max_elapsed_ms = 10000};
}

static pf_deadline in_ms(uint32_t ms) {
  return (pf_deadline){.at_mono_ns = pf_mono_ns() + (uint64_t)ms * 1000000u};
}

/* The names of the spans the sink received, in order, joined by ','. Each line is one span
 * whose first "name" key is the span's own. */
static void received_names(const sink *s, char *out, size_t cap) {
  char *text = slurp(s->out);
  size_t o = 0;
  out[0] = '\0';
  for (char *line = text; *line;) {
    char *nl = strchr(line, '\n');
    assert_non_null(nl);
    *nl = '\0';
    char *p = strstr(line, "\"name\": \"");
    assert_non_null(p);
    p += 9;
    o += (size_t)snprintf(out + o, cap - o, "%s%.*s", o ? "," : "", (int)(strchr(p, '"') - p), p);
    line = nl + 1;
  }
  free(text);
}

/* The line of the span named `name`, or NULL; the caller frees *text. */
static char *span_line(const sink *s, const char *name, char **text) {
  *text = slurp(s->out);
  char key[64];
  snprintf(key, sizeof key, "\"name\": \"%s\"", name);
  for (char *line = *text; *line;) {
    char *nl = strchr(line, '\n');
    *nl = '\0';
    char *first = strstr(line, "\"name\": \"");
    if (first && strncmp(first, key, strlen(key)) == 0) return line;
    line = nl + 1;
  }
  return NULL;
}

static bool line_has(const sink *s, const char *name, const char *needle) {
  char *text, *line = span_line(s, name, &text);
  bool found = line && strstr(line, needle);
  if (!found) fprintf(stderr, "span %s: no %s in %s\n", name, needle, line ? line : "(missing)");
  free(text);
  return found;
}

/* ---- tests ---- */

static void test_pass_through_and_reencode(void **state) {
  (void)state;
  const char *args[] = {"--require-header", "x-scope-orgid=acme", NULL};
  sink s;
  sink_start(&s, 0, args);
  char ep[64];
  pc_exporter_cfg cfg = otlp_cfg(ep, sizeof ep, &s);
  pc_header_cfg hs[] = {{"x-scope-orgid", "acme"}, {"x-extra", "yes"}};
  cfg.headers = hs;
  cfg.n_headers = 2;
  cfg.gzip = true;
  pc_exporter *e;
  assert_int_equal(pc_otlp_exporter_new(&e, &cfg), 0);
  tchunk a, b, c;
  make_chunk(&a, "rec", 2, "raw");  /* unchanged: its bytes go out */
  make_chunk(&b, "mod", 2, "gone"); /* modified: its records go out */
  b.c.modified = true;
  make_chunk(&c, "enc", 1, NULL); /* no bytes kept: encoded */
  pc_chunk *cs[] = {&a.c, &b.c, &c.c};
  pf_deadline dl = in_ms(10000);
  uint64_t rejected = 9;
  for (int round = 0; round < 2; round++) /* the second reuses the request buffer */
    assert_int_equal(e->export_chunks(e, cs, 3, &dl, &rejected), 0);
  assert_int_equal(rejected, 0);
  e->destroy(e);
  char names[256];
  received_names(&s, names, sizeof names);
  assert_string_equal(names, "raw-0,raw-1,mod-0,mod-1,enc-0,raw-0,raw-1,mod-0,mod-1,enc-0");
  /* The forwarded bytes carry what only they had: their resource, scope and kvlist. */
  assert_true(line_has(&s, "raw-1", "\"resource\": {\"service.name\": \"raw-svc\"}"));
  assert_true(line_has(&s, "raw-1", "\"scope\": {\"name\": \"raw.scope\""));
  assert_true(line_has(&s, "raw-1", "\"attributes\": {\"cfg\": {\"a\": 1}}"));
  assert_true(line_has(&s, "raw-1", "\"end_time_unix_nano\": 2001"));
  assert_true(line_has(&s, "mod-1", "\"resource\": {\"service.name\": \"rec-svc\"}"));
  assert_true(line_has(&s, "enc-0", "\"scope\": {\"name\": \"rec.scope\", \"version\": \"1\"}"));
  assert_true(line_has(&s, "enc-0", "\"span_id\": \"9091929394959697\""));
  assert_true(line_has(&s, "mod-0", "\"x-scope-orgid\": \"acme\""));
  assert_true(line_has(&s, "mod-0", "\"x-extra\": \"yes\""));
  /* Byte for byte: the request is the original bytes with their tag and length, then the
   * re-encoded requests. */
  size_t want = 1 + varint_len(a.c.raw.len) + a.c.raw.len + encoded_len(&b) + encoded_len(&c);
  char needle[64];
  snprintf(needle, sizeof needle, "\"spans\": 5, \"bytes\": %zu,", want);
  char *calls = slurp(s.calls);
  if (!strstr(calls, needle)) fail_msg("want %s in\n%s", needle, calls);
  assert_int_equal(count_lines(s.calls), 2);
  free(calls);
  sink_stop(&s);
  tc_free(&a), tc_free(&b), tc_free(&c);
}

/* Counts the calls the sink logged with this gRPC status. */
static int calls_with_status(const sink *s, int status) {
  char *text = slurp(s->calls), needle[32];
  snprintf(needle, sizeof needle, "\"status\": %d,", status);
  int n = 0;
  for (char *p = text; (p = strstr(p, needle)); p++) n++;
  free(text);
  return n;
}

static int export_one(pc_exporter *e, const char *prefix, uint32_t dl_ms, uint64_t *rejected) {
  tchunk t;
  make_chunk(&t, prefix, 3, prefix);
  pc_chunk *cs[] = {&t.c};
  pf_deadline dl = in_ms(dl_ms);
  int rc = e->export_chunks(e, cs, 1, &dl, rejected);
  tc_free(&t);
  return rc;
}

static void test_retry_then_success(void **state) {
  (void)state;
  const char *args[] = {"--fail-first", "2", NULL};
  sink s;
  sink_start(&s, 0, args);
  char ep[64];
  pc_exporter_cfg cfg = otlp_cfg(ep, sizeof ep, &s);
  pc_exporter *e;
  assert_int_equal(pc_otlp_exporter_new(&e, &cfg), 0);
  uint64_t rejected;
  assert_int_equal(export_one(e, "retry", 10000, &rejected), 0);
  assert_int_equal(calls_with_status(&s, 14), 2); /* UNAVAILABLE twice, then accepted */
  assert_int_equal(calls_with_status(&s, 0), 1);
  assert_int_equal(count_lines(s.out), 3); /* delivered once */
  e->destroy(e);
  sink_stop(&s);
}

static void test_permanent_failure(void **state) {
  (void)state;
  const char *args[] = {"--status", "3", NULL}; /* INVALID_ARGUMENT */
  sink s;
  sink_start(&s, 0, args);
  char ep[64];
  pc_exporter_cfg cfg = otlp_cfg(ep, sizeof ep, &s);
  pc_exporter *e;
  assert_int_equal(pc_otlp_exporter_new(&e, &cfg), 0);
  uint64_t rejected;
  assert_int_equal(export_one(e, "perm", 10000, &rejected), PROFILIS_EPERMANENT);
  assert_int_equal(count_lines(s.calls), 1); /* never retried */
  e->destroy(e);
  /* A missing tenant header is refused (UNAUTHENTICATED): permanent too. */
  sink_stop(&s);
  const char *args2[] = {"--require-header", "x-scope-orgid=acme", NULL};
  sink_start(&s, 0, args2);
  cfg = otlp_cfg(ep, sizeof ep, &s);
  assert_int_equal(pc_otlp_exporter_new(&e, &cfg), 0);
  assert_int_equal(export_one(e, "nohdr", 10000, &rejected), PROFILIS_EPERMANENT);
  assert_int_equal(calls_with_status(&s, 16), 1);
  assert_int_equal(count_lines(s.out), 0);
  e->destroy(e);
  sink_stop(&s);
}

static void test_retry_limits(void **state) {
  (void)state;
  const char *args[] = {"--fail-first", "100000", NULL};
  sink s;
  sink_start(&s, 0, args);
  char ep[64];
  pc_exporter_cfg cfg = otlp_cfg(ep, sizeof ep, &s);
  cfg.retry_max_elapsed_ms = 400;
  pc_exporter *e;
  assert_int_equal(pc_otlp_exporter_new(&e, &cfg), 0);
  uint64_t rejected, t0 = pf_mono_ns();
  /* retry.max_elapsed_time comes first: the batch counts as failed, retryable later. */
  assert_int_equal(export_one(e, "elapsed", 10000, &rejected), PROFILIS_ERETRYABLE);
  uint64_t took_ms = (pf_mono_ns() - t0) / 1000000u;
  assert_true(took_ms < 2000);
  int calls = count_lines(s.calls);
  assert_true(calls >= 3); /* 20, 40, 80, 100 ms backoffs fit in 400 ms */
  /* The batch deadline comes first. */
  cfg.retry_max_elapsed_ms = 60000;
  t0 = pf_mono_ns();
  assert_int_equal(export_one(e, "deadline", 300, &rejected), PROFILIS_ERETRYABLE);
  took_ms = (pf_mono_ns() - t0) / 1000000u;
  assert_true(took_ms < 1500);
  assert_true(count_lines(s.calls) > calls);
  assert_int_equal(count_lines(s.out), 0);
  e->destroy(e);
  sink_stop(&s);
  /* Nobody listening: transport failures are retried until the deadline. */
  assert_int_equal(pc_otlp_exporter_new(&e, &cfg), 0);
  t0 = pf_mono_ns();
  int rc = export_one(e, "dead", 300, &rejected);
  assert_true(rc == PROFILIS_ERETRYABLE || rc == PROFILIS_ETIMEDOUT);
  assert_true((pf_mono_ns() - t0) / 1000000u < 1500);
  e->destroy(e);
}

static void test_partial_success(void **state) {
  (void)state;
  const char *args[] = {"--partial-reject", "2", NULL};
  sink s;
  sink_start(&s, 0, args);
  char ep[64];
  pc_exporter_cfg cfg = otlp_cfg(ep, sizeof ep, &s);
  pc_exporter *e;
  assert_int_equal(pc_otlp_exporter_new(&e, &cfg), 0);
  uint64_t rejected = 0;
  assert_int_equal(export_one(e, "partial", 10000, &rejected), 0);
  assert_int_equal(rejected, 2);
  assert_int_equal(count_lines(s.calls), 1); /* partial success is never retried */
  /* A batch without spans sends nothing. */
  tchunk t;
  make_chunk(&t, "none", 0, NULL);
  pc_chunk *cs[] = {&t.c};
  pf_deadline dl = in_ms(1000);
  assert_int_equal(e->export_chunks(e, cs, 1, &dl, &rejected), 0);
  assert_int_equal(rejected, 0);
  assert_int_equal(count_lines(s.calls), 1);
  tc_free(&t);
  e->destroy(e);
  sink_stop(&s);
}

static char g_certs[64];

static void make_certs(void) {
  snprintf(g_certs, sizeof g_certs, "/tmp/pc_otlp_certs_XXXXXX");
  assert_non_null(mkdtemp(g_certs));
  char cmd[1024];
  snprintf(cmd, sizeof cmd,
           "(set -e; cd %s; K='-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes'; "
           "openssl req -x509 $K -keyout ca.key -out ca.crt -days 2 -subj /CN=pc-test-ca; "
           "openssl req $K -keyout srv.key -out srv.csr -subj /CN=localhost; "
           "printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\\n' > srv.ext; "
           "openssl x509 -req -in srv.csr -CA ca.crt -CAkey ca.key -CAcreateserial "
           "-out srv.crt -days 2 -extfile srv.ext) >%s/openssl.log 2>&1",
           g_certs, g_certs);
  assert_int_equal(system(cmd), 0);
}

static void test_tls(void **state) {
  (void)state;
  make_certs();
  char crt[128], key[128], ca[128], ep[64];
  snprintf(crt, sizeof crt, "%s/srv.crt", g_certs);
  snprintf(key, sizeof key, "%s/srv.key", g_certs);
  snprintf(ca, sizeof ca, "%s/ca.crt", g_certs);
  const char *args[] = {"--tls", crt, key, NULL};
  sink s;
  sink_start(&s, 0, args);
  pc_exporter_cfg cfg = otlp_cfg(ep, sizeof ep, &s);
  snprintf(ep, sizeof ep, "127.0.0.1:%d", s.port); /* no scheme: TLS unless insecure */
  cfg.tls.ca_file = ca;
  pc_exporter *e;
  assert_int_equal(pc_otlp_exporter_new(&e, &cfg), 0);
  uint64_t rejected;
  assert_int_equal(export_one(e, "tls", 10000, &rejected), 0);
  assert_int_equal(count_lines(s.out), 3);
  e->destroy(e);
  /* tls.insecure: plaintext to a TLS server fails (and is retried until the deadline). */
  cfg.tls.insecure = true;
  assert_int_equal(pc_otlp_exporter_new(&e, &cfg), 0);
  int rc = export_one(e, "plain", 500, &rejected);
  assert_true(rc == PROFILIS_ERETRYABLE || rc == PROFILIS_ETIMEDOUT);
  e->destroy(e);
  /* An unreadable CA file stops the start. */
  cfg.tls.insecure = false;
  cfg.tls.ca_file = "/nonexistent/ca.pem";
  assert_int_equal(pc_otlp_exporter_new(&e, &cfg), PROFILIS_EIO);
  assert_null(e);
  sink_stop(&s);
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf %s", g_certs);
  assert_int_equal(system(cmd), 0);
}

static void test_bad_endpoint(void **state) {
  (void)state;
  pc_exporter_cfg cfg = {.name = "otlp/bad", .type = PC_EXPORTER_OTLP, .endpoint = "http://[::1"};
  pc_exporter *e = (pc_exporter *)1;
  assert_int_equal(pc_otlp_exporter_new(&e, &cfg), PROFILIS_EIO);
  assert_null(e);
  cfg.endpoint = NULL;
  assert_int_equal(pc_otlp_exporter_new(&e, &cfg), PROFILIS_EIO);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_pass_through_and_reencode),
      cmocka_unit_test(test_retry_then_success),
      cmocka_unit_test(test_permanent_failure),
      cmocka_unit_test(test_retry_limits),
      cmocka_unit_test(test_partial_success),
      cmocka_unit_test(test_tls),
      cmocka_unit_test(test_bad_endpoint),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
