/* Unit tests for the OTLP exporter's decisions (exporters/otlp_exporter.c): which attempt
 * results are retried, permanent or done, how server-requested delays are honoured, and the
 * ExportTraceServiceResponse reader on good, odd and malformed bytes (checked against
 * protobuf-c's encoding). The wire behaviour is covered by integration.grpc_client. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "opentelemetry/proto/collector/trace/v1/trace_service.pb-c.h"
#include "otlp_exporter.h"
#include "pf_exporter.h"
#include "profilis/common.h"

static pf_grpc_result result(int status, int64_t pushback, int64_t retry_info) {
  pf_grpc_result r;
  memset(&r, 0, sizeof r);
  r.status = status;
  r.pushback_ms = pushback;
  r.retry_delay_ms = retry_info;
  return r;
}

static void test_classify_status(void **state) {
  int64_t d;
  pf_grpc_result r = result(PF_GRPC_OK, -1, -1);
  assert_int_equal(pf_otlp_classify(0, &r, &d), PF_OTLP_DONE);
  const int retryable[] = {1, 4, 10, 11, 14, 15};
  for (size_t i = 0; i < sizeof retryable / sizeof retryable[0]; i++) {
    r = result(retryable[i], -1, -1);
    assert_int_equal(pf_otlp_classify(0, &r, &d), PF_OTLP_RETRY);
    assert_int_equal(d, -1);
  }
  const int permanent[] = {2, 3, 5, 6, 7, 8, 9, 12, 13, 16};
  for (size_t i = 0; i < sizeof permanent / sizeof permanent[0]; i++) {
    r = result(permanent[i], -1, -1);
    assert_int_equal(pf_otlp_classify(0, &r, &d), PF_OTLP_PERMANENT);
  }
}

static void test_classify_server_delay(void **state) {
  int64_t d;
  /* RESOURCE_EXHAUSTED only with retry information, honouring its delay */
  pf_grpc_result r = result(PF_GRPC_RESOURCE_EXHAUSTED, 250, -1);
  assert_int_equal(pf_otlp_classify(0, &r, &d), PF_OTLP_RETRY);
  assert_int_equal(d, 250);
  r = result(PF_GRPC_RESOURCE_EXHAUSTED, -1, 1500);
  assert_int_equal(pf_otlp_classify(0, &r, &d), PF_OTLP_RETRY);
  assert_int_equal(d, 1500);
  r = result(PF_GRPC_RESOURCE_EXHAUSTED, 0, -1); /* "retry now" is still retry info */
  assert_int_equal(pf_otlp_classify(0, &r, &d), PF_OTLP_RETRY);
  assert_int_equal(d, 0);
  /* a retryable code with a server delay uses it */
  r = result(PF_GRPC_UNAVAILABLE, 40, -1);
  assert_int_equal(pf_otlp_classify(0, &r, &d), PF_OTLP_RETRY);
  assert_int_equal(d, 40);
  /* a negative pushback forbids retrying, even for UNAVAILABLE */
  r = result(PF_GRPC_UNAVAILABLE, -2, -1);
  assert_int_equal(pf_otlp_classify(0, &r, &d), PF_OTLP_PERMANENT);
  r = result(PF_GRPC_RESOURCE_EXHAUSTED, -2, 100);
  assert_int_equal(pf_otlp_classify(0, &r, &d), PF_OTLP_PERMANENT);
  /* retry info never makes a permanent code retryable */
  r = result(PF_GRPC_INVALID_ARGUMENT, 100, 100);
  assert_int_equal(pf_otlp_classify(0, &r, &d), PF_OTLP_PERMANENT);
}

static void test_classify_transport(void **state) {
  int64_t d;
  pf_grpc_result r = result(PF_GRPC_UNKNOWN, -1, -1);
  const int retry[] = {PROFILIS_ECONNECT, PROFILIS_ETLS, PROFILIS_EPROTO, PROFILIS_ETIMEDOUT,
                       PROFILIS_ENOMEM};
  for (size_t i = 0; i < sizeof retry / sizeof retry[0]; i++)
    assert_int_equal(pf_otlp_classify(retry[i], &r, &d), PF_OTLP_RETRY);
  assert_int_equal(pf_otlp_classify(PROFILIS_ECANCELED, &r, &d), PF_OTLP_PERMANENT);
  assert_int_equal(pf_otlp_classify(PROFILIS_EINVAL, &r, &d), PF_OTLP_PERMANENT);
}

static size_t pack_response(uint8_t *out, int64_t rejected, const char *msg) {
  Opentelemetry__Proto__Collector__Trace__V1__ExportTracePartialSuccess ps =
      OPENTELEMETRY__PROTO__COLLECTOR__TRACE__V1__EXPORT_TRACE_PARTIAL_SUCCESS__INIT;
  ps.rejected_spans = rejected;
  ps.error_message = (char *)msg;
  Opentelemetry__Proto__Collector__Trace__V1__ExportTraceServiceResponse r =
      OPENTELEMETRY__PROTO__COLLECTOR__TRACE__V1__EXPORT_TRACE_SERVICE_RESPONSE__INIT;
  r.partial_success = &ps;
  return opentelemetry__proto__collector__trace__v1__export_trace_service_response__pack(&r, out);
}

static void test_parse_response(void **state) {
  uint8_t buf[256];
  uint64_t rej;
  const char *msg;
  size_t mlen;
  /* empty response: nothing rejected */
  assert_int_equal(pf_otlp_parse_response(NULL, 0, &rej, &msg, &mlen), 0);
  assert_int_equal(rej, 0);
  assert_null(msg);
  size_t n = pack_response(buf, 42, "too old");
  assert_int_equal(pf_otlp_parse_response(buf, n, &rej, &msg, &mlen), 0);
  assert_int_equal(rej, 42);
  assert_int_equal(mlen, 7);
  assert_memory_equal(msg, "too old", 7);
  /* a large count (multi-byte varint) and a warning without rejections */
  n = pack_response(buf, 1234567890123ll, "");
  assert_int_equal(pf_otlp_parse_response(buf, n, &rej, &msg, &mlen), 0);
  assert_int_equal(rej, 1234567890123ull);
  n = pack_response(buf, 0, "deprecated field");
  assert_int_equal(pf_otlp_parse_response(buf, n, &rej, &msg, &mlen), 0);
  assert_int_equal(rej, 0);
  assert_int_equal(mlen, 16);
  /* a negative count is nonsense: treated as none */
  n = pack_response(buf, -5, "");
  assert_int_equal(pf_otlp_parse_response(buf, n, &rej, &msg, &mlen), 0);
  assert_int_equal(rej, 0);
  /* unknown fields are skipped */
  uint8_t extra[] = {0x10, 0x05, 0x0a, 0x04, 0x08, 0x03, 0x18, 0x01, 0x22, 0x01, 'z'};
  assert_int_equal(pf_otlp_parse_response(extra, sizeof extra, &rej, &msg, &mlen), 0);
  assert_int_equal(rej, 3);
  /* every truncation fails cleanly or reads a prefix, never overruns */
  n = pack_response(buf, 300, "partial");
  for (size_t cut = 1; cut < n; cut++) {
    int rc = pf_otlp_parse_response(buf, n - cut, &rej, &msg, &mlen);
    assert_true(rc == 0 || rc == PROFILIS_EPROTO);
    if (msg) assert_true(msg + mlen <= (const char *)buf + n - cut);
  }
  uint8_t garbage[] = {0x0a, 0x80};
  assert_int_equal(pf_otlp_parse_response(garbage, sizeof garbage, &rej, &msg, &mlen),
                   PROFILIS_EPROTO);
}

static void test_exporter_config_errors(void **state) {
  pf_config cfg;
  memset(&cfg, 0, sizeof cfg);
  pf_exporter *e = NULL;
  cfg.o.endpoint = "unix:///var/run/otel.sock";
  assert_int_equal(pf_otlp_exporter_new(&e, &cfg), PROFILIS_EINVAL);
  assert_null(e);
  cfg.o.endpoint = "https://localhost:4317";
  cfg.o.certificate = "/nonexistent/ca.pem";
  assert_int_equal(pf_otlp_exporter_new(&e, &cfg), PROFILIS_EIO);
  /* a plaintext endpoint ignores TLS files; the default endpoint needs no configuration */
  cfg.o.endpoint = "http://localhost:4317";
  assert_int_equal(pf_otlp_exporter_new(&e, &cfg), 0);
  assert_string_equal(e->name, "otlp");
  assert_non_null(e->after_fork_child);
  e->after_fork_child(e); /* nothing connected: harmless */
  e->destroy(e);
  memset(&cfg, 0, sizeof cfg);
  assert_int_equal(pf_otlp_exporter_new(&e, &cfg), 0);
  e->destroy(e);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_classify_status),        cmocka_unit_test(test_classify_server_delay),
      cmocka_unit_test(test_classify_transport),     cmocka_unit_test(test_parse_response),
      cmocka_unit_test(test_exporter_config_errors),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
