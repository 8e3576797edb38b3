/* Integration tests of the gRPC client (exporters/grpc_client.c) and the OTLP exporter
 * (exporters/otlp_exporter.c) against a real gRPC server: tests/integration/otlp_sink.py
 * (Python grpcio) on a free 127.0.0.1 port. Covers plain calls and connection reuse, gzip and
 * metadata, retries and permanent failures, partial success, deadlines against dead and
 * frozen servers, cancellation, reconnection after a restart, fork, TLS and mutual TLS with
 * certificates made by the openssl CLI. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "fake_h2_server.h"
#include "grpc_client.h"
#include "opentelemetry/proto/collector/trace/v1/trace_service.pb-c.h"
#include "otlp_exporter.h"
#include "pf_exporter.h"
#include "rec_builder.h"
#include "sink_proc.h" /* the Python grpcio sink process */

static char g_dir[64]; /* per-run scratch directory (certificates) */

typedef struct canceler {
  atomic_int *flag;
  unsigned after_ms;
} canceler;

static uint64_t now_ms(void) { return pf_mono_ns() / 1000000u; }

static int count_lines(const char *path) {
  char *s = slurp(path);
  int n = 0;
  for (char *p = s; *p; p++) n += *p == '\n';
  free(s);
  return n;
}

static bool file_has(const char *path, const char *needle) {
  char *s = slurp(path);
  bool found = strstr(s, needle) != NULL;
  free(s);
  return found;
}

static void *cancel_later(void *arg) {
  canceler *k = arg;
  sleep_ms(k->after_ms);
  atomic_store(k->flag, 1);
  return NULL;
}

/* A port on 127.0.0.1 where nothing listens (bound once, then closed). */
static int dead_port(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
  socklen_t l = sizeof a;
  assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &l), 0);
  close(fd);
  return ntohs(a.sin_port);
}

/* ---- requests ---- */

typedef Opentelemetry__Proto__Collector__Trace__V1__ExportTraceServiceRequest pb_request;
typedef Opentelemetry__Proto__Trace__V1__ResourceSpans pb_rs;
typedef Opentelemetry__Proto__Trace__V1__ScopeSpans pb_ss;
typedef Opentelemetry__Proto__Trace__V1__Span pb_span;
typedef Opentelemetry__Proto__Resource__V1__Resource pb_resource;
typedef Opentelemetry__Proto__Common__V1__KeyValue pb_kv;
typedef Opentelemetry__Proto__Common__V1__AnyValue pb_any;
typedef Opentelemetry__Proto__Common__V1__InstrumentationScope pb_scope;

/* An ExportTraceServiceRequest with n spans named "<prefix>-<i>", built with protobuf-c so
 * the transport is tested independently of the SDK's encoder. */
static pf_buf build_request(size_t n, const char *prefix) {
  pb_any svc_val = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__INIT;
  svc_val.value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_STRING_VALUE;
  svc_val.string_value = "grpc-test";
  pb_kv svc = OPENTELEMETRY__PROTO__COMMON__V1__KEY_VALUE__INIT;
  svc.key = "service.name";
  svc.value = &svc_val;
  pb_kv *rattrs[] = {&svc};
  pb_resource res = OPENTELEMETRY__PROTO__RESOURCE__V1__RESOURCE__INIT;
  res.n_attributes = 1;
  res.attributes = rattrs;
  pb_scope scope = OPENTELEMETRY__PROTO__COMMON__V1__INSTRUMENTATION_SCOPE__INIT;
  scope.name = "grpc.test";
  scope.version = "1.0";

  pb_span *spans = calloc(n, sizeof *spans);
  pb_span **sp = calloc(n, sizeof *sp);
  char(*names)[48] = calloc(n, 48);
  uint8_t(*ids)[24] = calloc(n, 24);
  pb_any *vals = calloc(n, sizeof *vals);
  pb_kv *kvs = calloc(n, sizeof *kvs);
  pb_kv **kvp = calloc(n, sizeof *kvp);
  for (size_t i = 0; i < n; i++) {
    pb_span init = OPENTELEMETRY__PROTO__TRACE__V1__SPAN__INIT;
    spans[i] = init;
    snprintf(names[i], 48, "%s-%zu", prefix, i);
    for (int k = 0; k < 24; k++) ids[i][k] = (uint8_t)(k + 1 + (k >= 16 ? i : 0));
    spans[i].trace_id = (ProtobufCBinaryData){16, ids[i]};
    spans[i].span_id = (ProtobufCBinaryData){8, ids[i] + 16};
    spans[i].name = names[i];
    spans[i].kind = OPENTELEMETRY__PROTO__TRACE__V1__SPAN__SPAN_KIND__SPAN_KIND_SERVER;
    spans[i].start_time_unix_nano = 1700000000000000000ull + i;
    spans[i].end_time_unix_nano = 1700000000000001000ull + i;
    pb_any v = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__INIT;
    vals[i] = v;
    vals[i].value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_INT_VALUE;
    vals[i].int_value = (int64_t)i;
    pb_kv kv = OPENTELEMETRY__PROTO__COMMON__V1__KEY_VALUE__INIT;
    kvs[i] = kv;
    kvs[i].key = "i";
    kvs[i].value = &vals[i];
    kvp[i] = &kvs[i];
    spans[i].n_attributes = 1;
    spans[i].attributes = &kvp[i];
    sp[i] = &spans[i];
  }
  pb_ss ss = OPENTELEMETRY__PROTO__TRACE__V1__SCOPE_SPANS__INIT;
  ss.scope = &scope;
  ss.n_spans = n;
  ss.spans = sp;
  pb_ss *ssp[] = {&ss};
  pb_rs rs = OPENTELEMETRY__PROTO__TRACE__V1__RESOURCE_SPANS__INIT;
  rs.resource = &res;
  rs.n_scope_spans = 1;
  rs.scope_spans = ssp;
  pb_rs *rsp[] = {&rs};
  pb_request req = OPENTELEMETRY__PROTO__COLLECTOR__TRACE__V1__EXPORT_TRACE_SERVICE_REQUEST__INIT;
  req.n_resource_spans = 1;
  req.resource_spans = rsp;
  pf_buf b = {0};
  size_t len =
      opentelemetry__proto__collector__trace__v1__export_trace_service_request__get_packed_size(
          &req);
  assert_int_equal(pf_buf_reserve(&b, len), 0);
  b.len = opentelemetry__proto__collector__trace__v1__export_trace_service_request__pack(&req, b.p);
  assert_int_equal(b.len, len);
  free(spans), free(sp), free(names), free(ids), free(vals), free(kvs), free(kvp);
  return b;
}

static pf_deadline deadline_in(uint64_t ms) {
  return (pf_deadline){.at_mono_ns = pf_mono_ns() + ms * 1000000u};
}

static pf_grpc_client *client_for(const sink *s, const pf_grpc_client_opts *base) {
  char ep[64];
  snprintf(ep, sizeof ep, "http://127.0.0.1:%d", s->port);
  pf_grpc_client_opts o = base ? *base : (pf_grpc_client_opts){0};
  if (!o.endpoint) o.endpoint = ep;
  pf_grpc_client *c = NULL;
  assert_int_equal(pf_grpc_client_new(&c, &o), 0);
  return c;
}

static int call(pf_grpc_client *c, const pf_buf *req, uint64_t ms, pf_grpc_result *res) {
  pf_deadline dl = deadline_in(ms);
  return pf_grpc_client_unary(c, PF_OTLP_TRACE_EXPORT_PATH, req->p, req->len, &dl, res);
}

/* ---- exporter helpers ---- */

static pf_scope g_scope = {.name = "exporter.test", .version = "0.9", .index = 0};

typedef struct test_batch {
  pf_buf recs[8];
  const pf_span_rec *ptrs[8];
  pf_resource res;
  pf_batch batch;
} test_batch;

static void batch_make(test_batch *t, size_t n) {
  memset(t, 0, sizeof *t);
  profilis_attr ra[] = {PROFILIS_ATTR_STR("service.name", "exporter-test")};
  assert_int_equal(rb_resource(&t->res, ra, 1), 0);
  for (size_t i = 0; i < n; i++) {
    profilis_attr a[] = {PROFILIS_ATTR_INT("n", (int64_t)i)};
    rb_span s = {.name = "exported-span",
                 .kind = 2,
                 .scope = &g_scope,
                 .attrs = a,
                 .n_attrs = 1,
                 .start_ns = 1700000000000000000ull,
                 .end_ns = 1700000000000005000ull};
    rb_id(s.trace_id, 16, 0xa0);
    rb_id(s.span_id, 8, (uint8_t)(0x10 + i));
    assert_int_equal(rb_build(&t->recs[i], &s), 0);
    t->ptrs[i] = (const pf_span_rec *)t->recs[i].p;
  }
  t->batch = (pf_batch){.resource = &t->res, .spans = t->ptrs, .n = n};
}

static void batch_free(test_batch *t) {
  for (size_t i = 0; i < 8; i++) pf_buf_free(&t->recs[i]);
  pf_resource_free(&t->res);
}

static pf_exporter *exporter_for(pf_config *cfg, const char *endpoint, uint32_t timeout_ms) {
  memset(cfg, 0, sizeof *cfg);
  cfg->o.endpoint = endpoint;
  cfg->o.insecure = -1;
  cfg->o.timeout_ms = timeout_ms;
  pf_exporter *e = NULL;
  assert_int_equal(pf_otlp_exporter_new(&e, cfg), 0);
  return e;
}

/* ---- tests: transport ---- */

static void test_unary_and_reuse(void **state) {
  sink s;
  sink_start(&s, 0, NULL);
  pf_grpc_client *c = client_for(&s, NULL);
  pf_buf req = build_request(3, "basic");
  pf_grpc_result res;
  assert_int_equal(call(c, &req, 5000, &res), 0);
  assert_int_equal(res.status, PF_GRPC_OK);
  assert_int_equal(res.http_status, 200);
  assert_int_equal(count_lines(s.out), 3);
  assert_true(file_has(s.out, "\"name\": \"basic-2\""));
  assert_true(file_has(s.out, "\"trace_id\": \"0102030405060708090a0b0c0d0e0f10\""));
  assert_true(file_has(s.out, "\"service.name\": \"grpc-test\""));
  assert_true(file_has(s.out, "\"scope\": {\"name\": \"grpc.test\", \"version\": \"1.0\"}"));
  assert_true(file_has(s.calls, "profilis-c/" PROFILIS_VERSION));
  for (int i = 0; i < 20; i++) {
    assert_int_equal(call(c, &req, 5000, &res), 0);
    assert_int_equal(res.status, PF_GRPC_OK);
  }
  assert_int_equal(count_lines(s.out), 63);
  /* a deadline already past: refused before sending, the connection is kept */
  pf_deadline past = {.at_mono_ns = pf_mono_ns() - 1};
  assert_int_equal(pf_grpc_client_unary(c, PF_OTLP_TRACE_EXPORT_PATH, req.p, req.len, &past, &res),
                   PROFILIS_ETIMEDOUT);
  assert_int_equal(count_lines(s.out), 63);
  pf_grpc_client_stats st;
  pf_grpc_client_get_stats(c, &st);
  assert_int_equal(st.connects, 1); /* one connection for every call */
  assert_int_equal(st.calls, 21);
  /* an unknown method is a gRPC status, not a transport error */
  pf_deadline dl = deadline_in(5000);
  assert_int_equal(pf_grpc_client_unary(c, "/no.Such/Method", req.p, req.len, &dl, &res), 0);
  assert_int_equal(res.status, PF_GRPC_UNIMPLEMENTED);
  assert_int_equal(pf_grpc_client_unary(c, "relative", req.p, req.len, &dl, &res), PROFILIS_EINVAL);
  pf_buf_free(&req);
  pf_grpc_client_free(c);
  sink_stop(&s);
}

static void test_large_gzip_metadata(void **state) {
  /* a long, repetitive error message makes the response worth compressing for the server */
  static char reject_msg[3001];
  for (int i = 0; i < 3000; i++) reject_msg[i] = "rejected "[i % 9];
  const char *args[] = {
      "--gzip-responses", "--partial-reject",       "7", "--reject-message", reject_msg,
      "--require-header", "x-scope-orgid=tenant-a", NULL};
  sink s;
  sink_start(&s, 0, args);
  pf_header hdrs[] = {{"X-Scope-OrgID", "tenant-a"},
                      {"authorization", "Bearer s3cret"},
                      {"te", "gzip"} /* reserved: must be dropped, not break the call */};
  pf_grpc_client_opts o = {.headers = hdrs, .n_headers = 3, .gzip = true};
  pf_grpc_client *c = client_for(&s, &o);
  pf_buf big = build_request(6000, "big"); /* several hundred KiB: many DATA frames */
  assert_true(big.len > 300000);
  pf_grpc_result res;
  assert_int_equal(call(c, &big, 10000, &res), 0);
  assert_int_equal(res.status, PF_GRPC_OK);
  uint64_t rejected;
  const char *msg;
  size_t mlen;
  assert_int_equal(pf_otlp_parse_response(res.msg, res.msg_len, &rejected, &msg, &mlen), 0);
  assert_int_equal(rejected, 7);
  assert_int_equal(mlen, 3000);
  assert_memory_equal(msg, reject_msg, mlen);
  assert_int_equal(count_lines(s.out), 6000);
  assert_true(file_has(s.out, "\"name\": \"big-5999\""));
  assert_true(file_has(s.out, "\"authorization\": \"Bearer s3cret\""));
  assert_true(file_has(s.out, "\"x-scope-orgid\": \"tenant-a\""));
  pf_grpc_client_free(c);

  /* same size without gzip, then without the tenant header: UNAUTHENTICATED */
  pf_grpc_client_opts o2 = {.headers = hdrs, .n_headers = 1};
  c = client_for(&s, &o2);
  assert_int_equal(call(c, &big, 10000, &res), 0);
  assert_int_equal(res.status, PF_GRPC_OK);
  assert_int_equal(count_lines(s.out), 12000);
  pf_grpc_client_free(c);
  c = client_for(&s, NULL);
  assert_int_equal(call(c, &big, 10000, &res), 0);
  assert_int_equal(res.status, PF_GRPC_UNAUTHENTICATED);
  assert_string_equal(res.message, "missing header x-scope-orgid");
  pf_grpc_client_free(c);
  pf_buf_free(&big);
  sink_stop(&s);
}

static void test_no_listener(void **state) {
  char ep[64];
  snprintf(ep, sizeof ep, "127.0.0.1:%d", dead_port());
  pf_grpc_client_opts o = {.endpoint = ep};
  pf_grpc_client *c = NULL;
  assert_int_equal(pf_grpc_client_new(&c, &o), 0);
  pf_buf req = build_request(1, "x");
  pf_grpc_result res;
  uint64_t t0 = now_ms();
  assert_int_equal(call(c, &req, 2000, &res), PROFILIS_ECONNECT);
  assert_true(now_ms() - t0 < 500); /* refused at once, no waiting */
  assert_non_null(strstr(res.message, "connect"));
  pf_grpc_client_free(c);

  /* the exporter retries with backoff but returns within its deadline */
  char url[80];
  snprintf(url, sizeof url, "http://%s", ep);
  pf_config cfg;
  pf_exporter *e = exporter_for(&cfg, url, 1000);
  test_batch tb;
  batch_make(&tb, 2);
  pf_deadline dl = deadline_in(600);
  uint64_t rejected = 99;
  t0 = now_ms();
  int rc = e->export_batch(e, &tb.batch, &dl, &rejected);
  uint64_t took = now_ms() - t0;
  assert_true(rc == PROFILIS_ETIMEDOUT || rc == PROFILIS_ERETRYABLE);
  assert_true(took <= 700);
  assert_true(atomic_load(&e->retries) >= 1);
  e->destroy(e);
  batch_free(&tb);
  pf_buf_free(&req);
}

static void test_frozen_sink_and_cancel(void **state) {
  sink s;
  sink_start(&s, 0, NULL);
  pf_grpc_client *c = client_for(&s, NULL);
  pf_buf req = build_request(2, "frozen");
  pf_grpc_result res;
  assert_int_equal(call(c, &req, 5000, &res), 0); /* connection established while alive */
  kill(s.pid, SIGSTOP);
  int wst;
  assert_int_equal(waitpid(s.pid, &wst, WUNTRACED), s.pid); /* really frozen before timing */
  assert_true(WIFSTOPPED(wst));
  uint64_t t0 = now_ms();
  assert_int_equal(call(c, &req, 300, &res), PROFILIS_ETIMEDOUT);
  uint64_t took = now_ms() - t0;
  assert_true(took >= 290 && took <= 400);

  /* a fresh connection to the frozen server: TCP connects (backlog), nothing answers */
  pf_grpc_client_reset(c);
  t0 = now_ms();
  assert_int_equal(call(c, &req, 300, &res), PROFILIS_ETIMEDOUT);
  took = now_ms() - t0;
  assert_true(took >= 290 && took <= 400);

  /* the cancel flag stops a call long before its deadline */
  atomic_int cancel = 0;
  canceler k = {.flag = &cancel, .after_ms = 100};
  pthread_t th;
  assert_int_equal(pthread_create(&th, NULL, cancel_later, &k), 0);
  pf_deadline dl = {.at_mono_ns = pf_mono_ns() + 5000000000ull, .cancel = &cancel};
  t0 = now_ms();
  assert_int_equal(pf_grpc_client_unary(c, PF_OTLP_TRACE_EXPORT_PATH, req.p, req.len, &dl, &res),
                   PROFILIS_ECANCELED);
  took = now_ms() - t0;
  assert_true(took >= 90 && took <= 250);
  pthread_join(th, NULL);

  /* the exporter: attempts time out after timeout_ms, the batch deadline bounds the whole */
  char url[64];
  snprintf(url, sizeof url, "http://127.0.0.1:%d", s.port);
  pf_config cfg;
  pf_exporter *e = exporter_for(&cfg, url, 150);
  test_batch tb;
  batch_make(&tb, 1);
  uint64_t rejected;
  dl = deadline_in(500);
  t0 = now_ms();
  int rc = e->export_batch(e, &tb.batch, &dl, &rejected);
  took = now_ms() - t0;
  assert_true(rc == PROFILIS_ETIMEDOUT || rc == PROFILIS_ERETRYABLE);
  assert_true(took <= 600);
  assert_true(atomic_load(&e->retries) >= 1);
  e->destroy(e);
  batch_free(&tb);

  kill(s.pid, SIGCONT);
  pf_grpc_client_free(c);
  pf_buf_free(&req);
  sink_stop(&s);
}

static void test_reconnect_after_restart(void **state) {
  sink a, b;
  sink_start(&a, 0, NULL);
  int port = a.port;
  pf_grpc_client *c = client_for(&a, NULL);
  pf_buf req = build_request(1, "restart");
  pf_grpc_result res;
  assert_int_equal(call(c, &req, 5000, &res), 0);
  assert_int_equal(res.status, PF_GRPC_OK);
  sink_stop(&a);
  /* a new server on the same port: the next call notices the dead connection and redials */
  sink_start(&b, port, NULL);
  assert_int_equal(b.port, port);
  assert_int_equal(call(c, &req, 5000, &res), 0);
  assert_int_equal(res.status, PF_GRPC_OK);
  assert_int_equal(count_lines(b.out), 1);
  pf_grpc_client_stats st;
  pf_grpc_client_get_stats(c, &st);
  assert_int_equal(st.connects, 2);
  /* and with nobody listening: a transport error, then recovery once it is back */
  sink_kill(&b);
  assert_int_equal(call(c, &req, 2000, &res), PROFILIS_ECONNECT);
  sink_stop(&b);
  sink_start(&b, port, NULL);
  assert_int_equal(call(c, &req, 5000, &res), 0);
  assert_int_equal(res.status, PF_GRPC_OK);
  pf_grpc_client_free(c);
  pf_buf_free(&req);
  sink_stop(&b);
}

static void test_fork_reset(void **state) {
  sink s;
  sink_start(&s, 0, NULL);
  pf_grpc_client *c = client_for(&s, NULL);
  pf_buf req = build_request(1, "fork");
  pf_grpc_result res;
  assert_int_equal(call(c, &req, 5000, &res), 0);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    /* The child drops the inherited connection without a word and dials its own. */
    pf_grpc_client_reset(c);
    int rc = call(c, &req, 5000, &res);
    pf_grpc_client_stats st;
    pf_grpc_client_get_stats(c, &st);
    _exit(rc == 0 && res.status == PF_GRPC_OK && st.connects == 2 ? 0 : 1);
  }
  int st;
  assert_int_equal(waitpid(pid, &st, 0), pid);
  assert_true(WIFEXITED(st));
  assert_int_equal(WEXITSTATUS(st), 0);
  /* the parent's connection is untouched */
  assert_int_equal(call(c, &req, 5000, &res), 0);
  assert_int_equal(res.status, PF_GRPC_OK);
  pf_grpc_client_stats cs;
  pf_grpc_client_get_stats(c, &cs);
  assert_int_equal(cs.connects, 1);
  assert_int_equal(count_lines(s.out), 3);
  pf_grpc_client_free(c);
  pf_buf_free(&req);
  sink_stop(&s);
}

/* Responses grpcio would never send: each gets a clear status or transport error, and the
 * client recovers on the next call. */
static void test_misbehaving_server(void **state) {
  fake_srv srv;
  assert_int_equal(fake_start(&srv), 0);
  char ep[64];
  snprintf(ep, sizeof ep, "127.0.0.1:%d", srv.port);
  pf_grpc_client_opts o = {.endpoint = ep, .max_response = 1 << 20};
  pf_grpc_client *c = NULL;
  assert_int_equal(pf_grpc_client_new(&c, &o), 0);
  pf_buf req = build_request(3, "fake");
  static const struct {
    int mode, rc, status;
    bool fresh; /* the misbehaviour starts with a new connection */
  } cases[] = {
      {FAKE_OK, 0, PF_GRPC_OK, false},
      {FAKE_HTTP503, 0, PF_GRPC_UNAVAILABLE, false},
      {FAKE_REFUSED, 0, PF_GRPC_UNAVAILABLE, false},
      {FAKE_HUGE, PROFILIS_EPROTO, 0, false},
      {FAKE_TRUNCATED, PROFILIS_EPROTO, 0, false},
      {FAKE_TWO_MESSAGES, PROFILIS_EPROTO, 0, false},
      {FAKE_NO_STATUS, 0, PF_GRPC_UNKNOWN, false},
      {FAKE_TRAILERS_ONLY, 0, PF_GRPC_UNAVAILABLE, false},
      {FAKE_GOAWAY_AFTER, 0, PF_GRPC_OK, false},
      {FAKE_GARBAGE, PROFILIS_EPROTO, 0, true},
      {FAKE_CLOSE, PROFILIS_ECONNECT, 0, true},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    atomic_store(&srv.mode, cases[i].mode);
    if (cases[i].fresh) pf_grpc_client_reset(c);
    pf_grpc_result res;
    uint64_t t0 = now_ms();
    int rc = call(c, &req, 2000, &res);
    if (rc != cases[i].rc) fprintf(stderr, "case %zu: rc %d (%s)\n", i, rc, res.message);
    assert_int_equal(rc, cases[i].rc);
    assert_true(now_ms() - t0 < 1500); /* decided, not timed out */
    if (rc == 0) assert_int_equal(res.status, cases[i].status);
    if (cases[i].mode == FAKE_TRAILERS_ONLY) assert_string_equal(res.message, "try later");
    if (cases[i].mode == FAKE_HTTP503) assert_int_equal(res.http_status, 503);
    atomic_store(&srv.mode, FAKE_OK);
    int before = atomic_load(&srv.conns);
    assert_int_equal(call(c, &req, 2000, &res), 0);
    assert_int_equal(res.status, PF_GRPC_OK);
    /* errors and GOAWAY cost the connection; statuses do not */
    bool redialed = atomic_load(&srv.conns) > before;
    assert_int_equal(redialed, rc != 0 || cases[i].mode == FAKE_GOAWAY_AFTER);
  }
  pf_grpc_client_free(c);
  pf_buf_free(&req);
  fake_stop(&srv);
}

/* ---- tests: exporter ---- */

static void test_exporter_ok_and_retry(void **state) {
  const char *args[] = {"--fail-first", "2", NULL};
  sink s;
  sink_start(&s, 0, args);
  char url[64];
  snprintf(url, sizeof url, "http://127.0.0.1:%d", s.port);
  pf_config cfg;
  pf_exporter *e = exporter_for(&cfg, url, 2000);
  test_batch tb;
  batch_make(&tb, 4);
  pf_deadline dl = deadline_in(10000);
  uint64_t rejected = 99;
  assert_int_equal(e->export_batch(e, &tb.batch, &dl, &rejected), 0);
  assert_int_equal(rejected, 0);
  assert_int_equal(atomic_load(&e->retries), 2);
  assert_int_equal(count_lines(s.calls), 3); /* failed, failed, accepted */
  assert_int_equal(count_lines(s.out), 4);
  assert_true(file_has(s.out, "\"name\": \"exported-span\""));
  assert_true(file_has(s.out, "\"service.name\": \"exporter-test\""));
  assert_true(file_has(s.out, "\"span_id\": \"1011121314151617\""));
  assert_true(file_has(s.out, "\"trace_id\": \"a0a1a2a3a4a5a6a7a8a9aaabacadaeaf\""));
  /* steady state: more batches, no more retries, same connection */
  for (int i = 0; i < 5; i++) {
    dl = deadline_in(5000);
    assert_int_equal(e->export_batch(e, &tb.batch, &dl, &rejected), 0);
  }
  assert_int_equal(atomic_load(&e->retries), 2);
  assert_int_equal(count_lines(s.out), 24);
  /* after fork the child's exporter reconnects on its own */
  pid_t pid = fork();
  if (pid == 0) {
    e->after_fork_child(e);
    dl = deadline_in(5000);
    _exit(e->export_batch(e, &tb.batch, &dl, &rejected) == 0 ? 0 : 1);
  }
  int st;
  assert_int_equal(waitpid(pid, &st, 0), pid);
  assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  assert_int_equal(count_lines(s.out), 28);
  e->destroy(e);
  batch_free(&tb);
  sink_stop(&s);
}

static void test_exporter_permanent(void **state) {
  const char *args[] = {"--status", "3", NULL};
  sink s;
  sink_start(&s, 0, args);
  char url[64];
  snprintf(url, sizeof url, "http://127.0.0.1:%d", s.port);
  pf_config cfg;
  pf_exporter *e = exporter_for(&cfg, url, 2000);
  test_batch tb;
  batch_make(&tb, 1);
  pf_deadline dl = deadline_in(5000);
  uint64_t rejected;
  assert_int_equal(e->export_batch(e, &tb.batch, &dl, &rejected), PROFILIS_EPERMANENT);
  assert_int_equal(atomic_load(&e->retries), 0);
  assert_int_equal(count_lines(s.calls), 1);
  e->destroy(e);
  batch_free(&tb);
  sink_stop(&s);
}

static void test_exporter_resource_exhausted(void **state) {
  /* without retry information RESOURCE_EXHAUSTED is final */
  const char *plain[] = {"--status", "8", NULL};
  sink s;
  sink_start(&s, 0, plain);
  char url[64];
  snprintf(url, sizeof url, "http://127.0.0.1:%d", s.port);
  pf_config cfg;
  pf_exporter *e = exporter_for(&cfg, url, 2000);
  test_batch tb;
  batch_make(&tb, 1);
  pf_deadline dl = deadline_in(5000);
  uint64_t rejected;
  assert_int_equal(e->export_batch(e, &tb.batch, &dl, &rejected), PROFILIS_EPERMANENT);
  assert_int_equal(count_lines(s.calls), 1);
  e->destroy(e);
  sink_stop(&s);

  /* with RetryInfo it is retried after the server's delay, until the deadline */
  const char *info[] = {"--status", "8", "--retry-info-ms", "150", NULL};
  sink_start(&s, 0, info);
  snprintf(url, sizeof url, "http://127.0.0.1:%d", s.port);
  e = exporter_for(&cfg, url, 2000);
  dl = deadline_in(1000);
  uint64_t t0 = now_ms();
  int rc = e->export_batch(e, &tb.batch, &dl, &rejected);
  uint64_t took = now_ms() - t0;
  assert_true(rc == PROFILIS_ERETRYABLE || rc == PROFILIS_ETIMEDOUT);
  assert_true(took <= 1100);
  int calls = count_lines(s.calls);
  /* 150 ms apart within 1 s: about 6 calls, never the dozens full jitter would allow */
  assert_true(calls >= 4 && calls <= 7);
  assert_int_equal(atomic_load(&e->retries), (uint64_t)calls - 1);
  e->destroy(e);
  sink_stop(&s);

  /* a pushback asks for a delay too */
  const char *pb[] = {"--status", "8", "--pushback-ms", "300", NULL};
  sink_start(&s, 0, pb);
  snprintf(url, sizeof url, "http://127.0.0.1:%d", s.port);
  e = exporter_for(&cfg, url, 2000);
  dl = deadline_in(1000);
  rc = e->export_batch(e, &tb.batch, &dl, &rejected);
  assert_true(rc == PROFILIS_ERETRYABLE || rc == PROFILIS_ETIMEDOUT);
  calls = count_lines(s.calls);
  assert_true(calls >= 3 && calls <= 4);
  e->destroy(e);
  batch_free(&tb);
  sink_stop(&s);
}

static void test_exporter_partial_success(void **state) {
  const char *args[] = {"--partial-reject", "2", NULL};
  sink s;
  sink_start(&s, 0, args);
  char url[64];
  snprintf(url, sizeof url, "127.0.0.1:%d", s.port); /* no scheme + insecure */
  pf_config cfg;
  memset(&cfg, 0, sizeof cfg);
  cfg.o.endpoint = url;
  cfg.o.insecure = 1;
  cfg.o.compression_gzip = true;
  pf_exporter *e = NULL;
  assert_int_equal(pf_otlp_exporter_new(&e, &cfg), 0);
  test_batch tb;
  batch_make(&tb, 5);
  pf_deadline dl = deadline_in(5000);
  uint64_t rejected = 0;
  assert_int_equal(e->export_batch(e, &tb.batch, &dl, &rejected), 0);
  assert_int_equal(rejected, 2);
  assert_int_equal(atomic_load(&e->retries), 0); /* never retried */
  assert_int_equal(count_lines(s.calls), 1);
  assert_int_equal(count_lines(s.out), 5);
  e->destroy(e);
  batch_free(&tb);
  sink_stop(&s);
}

/* ---- tests: TLS ---- */

static void make_certs(void) {
  if (g_dir[0]) return;
  snprintf(g_dir, sizeof g_dir, "/tmp/pf_grpc_certs_XXXXXX");
  assert_non_null(mkdtemp(g_dir));
  char cmd[2048];
  snprintf(cmd, sizeof cmd,
           "set -e; cd %s; "
           "K='-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes'; "
           "openssl req -x509 $K -keyout ca.key -out ca.crt -days 2 -subj /CN=pf-test-ca; "
           "openssl req -x509 $K -keyout other.key -out other.crt -days 2 -subj /CN=other-ca; "
           "openssl req $K -keyout srv.key -out srv.csr -subj /CN=localhost; "
           "printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' > srv.ext; "
           "openssl x509 -req -in srv.csr -CA ca.crt -CAkey ca.key -CAcreateserial "
           "  -out srv.crt -days 2 -extfile srv.ext; "
           "openssl req $K -keyout cli.key -out cli.csr -subj /CN=pf-client; "
           "printf 'extendedKeyUsage=clientAuth\n' > cli.ext; "
           "openssl x509 -req -in cli.csr -CA ca.crt -CAkey ca.key -CAcreateserial "
           "  -out cli.crt -days 2 -extfile cli.ext",
           g_dir);
  char full[2200];
  snprintf(full, sizeof full, "(%s) >%s/openssl.log 2>&1", cmd, g_dir);
  assert_int_equal(system(full), 0);
}

static const char *cert(const char *name) {
  static char paths[8][128];
  static int next;
  char *p = paths[next++ % 8];
  snprintf(p, 128, "%s/%s", g_dir, name);
  return p;
}

static void test_tls(void **state) {
  make_certs();
  const char *args[] = {"--tls", cert("srv.crt"), cert("srv.key"), NULL};
  sink s;
  sink_start(&s, 0, args);
  pf_buf req = build_request(2, "tls");
  pf_grpc_result res;
  char ep[64];
  /* by host name and by IP address, both in the certificate */
  const char *hosts[] = {"localhost", "127.0.0.1"};
  for (int i = 0; i < 2; i++) {
    snprintf(ep, sizeof ep, "https://%s:%d", hosts[i], s.port);
    pf_grpc_client_opts o = {.endpoint = ep, .tls = true, .ca_file = cert("ca.crt"), .gzip = i};
    pf_grpc_client *c = NULL;
    assert_int_equal(pf_grpc_client_new(&c, &o), 0);
    for (int k = 0; k < 3; k++) {
      assert_int_equal(call(c, &req, 5000, &res), 0);
      assert_int_equal(res.status, PF_GRPC_OK);
    }
    pf_grpc_client_stats st;
    pf_grpc_client_get_stats(c, &st);
    assert_int_equal(st.connects, 1);
    pf_grpc_client_free(c);
  }
  pf_buf big = build_request(6000, "tlsbig");
  snprintf(ep, sizeof ep, "https://localhost:%d", s.port);
  pf_grpc_client_opts o = {.endpoint = ep, .tls = true, .ca_file = cert("ca.crt")};
  pf_grpc_client *c = NULL;
  assert_int_equal(pf_grpc_client_new(&c, &o), 0);
  assert_int_equal(call(c, &big, 10000, &res), 0);
  assert_int_equal(res.status, PF_GRPC_OK);
  pf_grpc_client_free(c);
  assert_int_equal(count_lines(s.out), 12 + 6000);

  /* the wrong CA is refused */
  o.ca_file = cert("other.crt");
  assert_int_equal(pf_grpc_client_new(&c, &o), 0);
  assert_int_equal(call(c, &req, 5000, &res), PROFILIS_ETLS);
  assert_non_null(strstr(res.message, "tls"));
  pf_grpc_client_free(c);
  /* a name the certificate does not carry is refused */
  snprintf(ep, sizeof ep, "https://127.0.0.1:%d", s.port);
  pf_grpc_client_opts o3 = {
      .endpoint = ep, .tls = true, .ca_file = cert("ca.crt"), .authority = "collector.example"};
  assert_int_equal(pf_grpc_client_new(&c, &o3), 0);
  assert_int_equal(call(c, &req, 5000, &res), PROFILIS_ETLS);
  pf_grpc_client_free(c);
  /* plaintext against a TLS port fails as a transport error, within the deadline */
  snprintf(ep, sizeof ep, "http://127.0.0.1:%d", s.port);
  pf_grpc_client_opts o4 = {.endpoint = ep};
  assert_int_equal(pf_grpc_client_new(&c, &o4), 0);
  uint64_t t0 = now_ms();
  assert_true(call(c, &req, 1000, &res) < 0);
  assert_true(now_ms() - t0 <= 1100);
  pf_grpc_client_free(c);
  /* unreadable CA file: refused when the client is made */
  pf_grpc_client_opts o5 = {.endpoint = ep, .tls = true, .ca_file = "/nonexistent/ca.pem"};
  assert_int_equal(pf_grpc_client_new(&c, &o5), PROFILIS_EIO);

  /* the exporter: https endpoint with the CA from the configuration */
  char url[64];
  snprintf(url, sizeof url, "https://localhost:%d", s.port);
  pf_config cfg;
  memset(&cfg, 0, sizeof cfg);
  cfg.o.endpoint = url;
  cfg.o.insecure = -1;
  cfg.o.certificate = cert("ca.crt");
  pf_exporter *e = NULL;
  assert_int_equal(pf_otlp_exporter_new(&e, &cfg), 0);
  test_batch tb;
  batch_make(&tb, 3);
  pf_deadline dl = deadline_in(5000);
  uint64_t rejected;
  assert_int_equal(e->export_batch(e, &tb.batch, &dl, &rejected), 0);
  e->destroy(e);
  cfg.o.certificate = "/nonexistent/ca.pem";
  assert_int_equal(pf_otlp_exporter_new(&e, &cfg), PROFILIS_EIO);
  batch_free(&tb);
  pf_buf_free(&big);
  pf_buf_free(&req);
  sink_stop(&s);
}

static void test_mtls(void **state) {
  make_certs();
  const char *args[] = {"--tls",       cert("srv.crt"), cert("srv.key"),
                        "--client-ca", cert("ca.crt"),  NULL};
  sink s;
  sink_start(&s, 0, args);
  pf_buf req = build_request(1, "mtls");
  pf_grpc_result res;
  char ep[64];
  snprintf(ep, sizeof ep, "https://localhost:%d", s.port);
  pf_grpc_client_opts o = {.endpoint = ep,
                           .tls = true,
                           .ca_file = cert("ca.crt"),
                           .cert_file = cert("cli.crt"),
                           .key_file = cert("cli.key")};
  pf_grpc_client *c = NULL;
  assert_int_equal(pf_grpc_client_new(&c, &o), 0);
  assert_int_equal(call(c, &req, 5000, &res), 0);
  assert_int_equal(res.status, PF_GRPC_OK);
  pf_grpc_client_free(c);
  /* without a client certificate the server refuses us */
  pf_grpc_client_opts o2 = {.endpoint = ep, .tls = true, .ca_file = cert("ca.crt")};
  assert_int_equal(pf_grpc_client_new(&c, &o2), 0);
  int rc = call(c, &req, 3000, &res);
  assert_true(rc == PROFILIS_ETLS || rc == PROFILIS_ECONNECT);
  pf_grpc_client_free(c);
  /* a key that does not match the certificate is caught up front */
  pf_grpc_client_opts o3 = o;
  o3.key_file = cert("other.key");
  assert_int_equal(pf_grpc_client_new(&c, &o3), PROFILIS_EIO);
  pf_grpc_client_opts o4 = o;
  o4.key_file = NULL;
  assert_int_equal(pf_grpc_client_new(&c, &o4), PROFILIS_EINVAL);

  /* the exporter with OTEL_EXPORTER_OTLP_CLIENT_* equivalents */
  pf_config cfg;
  memset(&cfg, 0, sizeof cfg);
  cfg.o.endpoint = ep;
  cfg.o.insecure = -1;
  cfg.o.certificate = cert("ca.crt");
  cfg.o.client_certificate = cert("cli.crt");
  cfg.o.client_key = cert("cli.key");
  pf_exporter *e = NULL;
  assert_int_equal(pf_otlp_exporter_new(&e, &cfg), 0);
  test_batch tb;
  batch_make(&tb, 2);
  pf_deadline dl = deadline_in(5000);
  uint64_t rejected;
  assert_int_equal(e->export_batch(e, &tb.batch, &dl, &rejected), 0);
  e->destroy(e);
  batch_free(&tb);
  assert_int_equal(count_lines(s.out), 3);
  pf_buf_free(&req);
  sink_stop(&s);
}

static int cleanup_certs(void **state) {
  if (g_dir[0]) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", g_dir);
    if (system(cmd) != 0) return -1;
  }
  return 0;
}

int main(void) {
  signal(SIGPIPE, SIG_DFL); /* the client must never raise it: keep the default (fatal) */
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_unary_and_reuse),
      cmocka_unit_test(test_large_gzip_metadata),
      cmocka_unit_test(test_no_listener),
      cmocka_unit_test(test_frozen_sink_and_cancel),
      cmocka_unit_test(test_reconnect_after_restart),
      cmocka_unit_test(test_fork_reset),
      cmocka_unit_test(test_misbehaving_server),
      cmocka_unit_test(test_exporter_ok_and_retry),
      cmocka_unit_test(test_exporter_permanent),
      cmocka_unit_test(test_exporter_resource_exhausted),
      cmocka_unit_test(test_exporter_partial_success),
      cmocka_unit_test(test_tls),
      cmocka_unit_test(test_mtls),
  };
  return cmocka_run_group_tests(tests, NULL, cleanup_certs);
}
