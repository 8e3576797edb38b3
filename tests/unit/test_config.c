/* Unit tests for config.c: defaults, every environment variable (valid, invalid, empty,
 * signal-specific precedence) through a fake getenv, caller options and the headers parser.
 * Warnings are checked by capturing stderr. Run with --env-doc to print the README table. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "pf_config.h"
#include "profilis/propagation.h"

/* ---- fake environment ---- */

#define MAX_ENV 8
static struct { const char *name, *value; } fake_env[MAX_ENV];

static const char *fake_getenv(const char *name) {
  for (int i = 0; i < MAX_ENV && fake_env[i].name; i++)
    if (strcmp(fake_env[i].name, name) == 0) return fake_env[i].value;
  return NULL;
}

static void env_clear(void) { memset(fake_env, 0, sizeof fake_env); }

static void env_set(const char *name, const char *value) {
  int i = 0;
  while (i < MAX_ENV - 1 && fake_env[i].name) i++;
  fake_env[i].name = name;
  fake_env[i].value = value;
}

/* ---- stderr capture (pf_log writes there) ---- */

static FILE *cap_file;
static int saved_stderr = -1;
static char captured[16384];

static void capture_begin(void) {
  fflush(stderr);
  cap_file = tmpfile();
  assert_non_null(cap_file);
  saved_stderr = dup(2);
  dup2(fileno(cap_file), 2);
}

static const char *capture_end(void) {
  fflush(stderr);
  dup2(saved_stderr, 2);
  close(saved_stderr);
  rewind(cap_file);
  size_t n = fread(captured, 1, sizeof captured - 1, cap_file);
  captured[n] = '\0';
  fclose(cap_file);
  return captured;
}

static int count_lines(const char *s, const char *needle) {
  int n = 0;
  for (const char *p = s; (p = strstr(p, needle)); p += strlen(needle)) n++;
  return n;
}

/* Resolves the fake environment with default options; returns captured stderr. */
static const char *resolve_env(pf_config *c) {
  capture_begin();
  int rc = pf_config_resolve_with(c, NULL, fake_getenv);
  const char *log = capture_end();
  assert_int_equal(rc, 0);
  return log;
}

/* ---- defaults ---- */

static void test_opts_init_defaults(void **state) {
  (void)state;
  profilis_provider_opts o;
  memset(&o, 0x5a, sizeof o);
  profilis_provider_opts_init(&o);
  assert_int_equal(o.size, sizeof o);
  assert_true(o.use_env);
  assert_false(o.disabled);
  assert_null(o.service_name);
  assert_null(o.resource_attributes);
  assert_int_equal(o.sampler, PROFILIS_SAMPLER_PARENTBASED_ALWAYS_ON);
  assert_true(o.sampler_ratio == 1.0);
  assert_null(o.propagators);
  assert_int_equal(o.schedule_delay_ms, 5000);
  assert_int_equal(o.export_timeout_ms, 30000);
  assert_int_equal(o.max_queue_size, 2048);
  assert_int_equal(o.max_export_batch_size, 512);
  assert_int_equal(o.max_queue_bytes, 4u * 1024 * 1024);
  assert_int_equal(o.queue_policy, PROFILIS_QUEUE_DROP);
  assert_int_equal(o.block_timeout_ms, 100);
  assert_int_equal(o.attribute_count_limit, 128);
  assert_int_equal(o.attribute_value_length_limit, 0);
  assert_int_equal(o.event_count_limit, 128);
  assert_int_equal(o.link_count_limit, 128);
  assert_int_equal(o.event_attribute_count_limit, 128);
  assert_int_equal(o.link_attribute_count_limit, 128);
  assert_int_equal(o.exporter, PROFILIS_EXPORTER_OTLP);
  assert_null(o.endpoint);
  assert_null(o.headers);
  assert_int_equal(o.timeout_ms, 10000);
  assert_false(o.compression_gzip);
  assert_int_equal(o.insecure, -1);
  assert_null(o.certificate);
  assert_null(o.client_key);
  assert_null(o.client_certificate);
  assert_null(o.jsonl_path);
  assert_null(o.console_stream);
}

static void test_resolve_defaults(void **state) {
  (void)state;
  env_clear();
  pf_config c;
  const char *log = resolve_env(&c);
  assert_string_equal(log, "");
  assert_string_equal(c.o.endpoint, "http://localhost:4317");
  assert_string_equal(c.o.propagators, "tracecontext,baggage");
  assert_string_equal(c.o.jsonl_path, "profilis-spans.jsonl");
  assert_int_equal(c.propagators, PROFILIS_PROPAGATOR_TRACECONTEXT | PROFILIS_PROPAGATOR_BAGGAGE);
  assert_int_equal(c.n_headers, 0);
  assert_int_equal(c.o.max_queue_size, 2048);
  assert_int_equal(c.o.sampler, PROFILIS_SAMPLER_PARENTBASED_ALWAYS_ON);
  assert_true(c.ratio_threshold == UINT64_MAX);
  pf_config_free(&c);
}

/* ---- every variable, table-driven ---- */

typedef enum { K_U32, K_BOOL, K_INT, K_DBL, K_STR } kind;

typedef struct env_case {
  const char *env[3][2]; /* up to three NAME=VALUE pairs */
  size_t off;
  kind k;
  int64_t want_i;
  double want_d;
  const char *want_s; /* K_STR; NULL = field must be NULL */
  const char *warn;   /* substring the warning must contain (variable name); NULL = no warning */
} env_case;

#define OFF(f) offsetof(profilis_provider_opts, f)
#define E1(a, b)                                                                                   \
  {                                                                                                \
    { a, b }                                                                                       \
  }
#define E2(a, b, c, d)                                                                             \
  {                                                                                                \
    {a, b}, { c, d }                                                                               \
  }
#define U(f, v) OFF(f), K_U32, (v), 0, NULL
#define B(f, v) OFF(f), K_BOOL, (v), 0, NULL
#define I(f, v) OFF(f), K_INT, (v), 0, NULL
#define D(f, v) OFF(f), K_DBL, 0, (v), NULL
#define S(f, v) OFF(f), K_STR, 0, 0, (v)
#define MiB (1024u * 1024u)
#define NOLIMIT UINT32_MAX

static const env_case env_cases[] = {
    /* OTEL_SDK_DISABLED */
    {E1("OTEL_SDK_DISABLED", "true"), B(disabled, 1), NULL},
    {E1("OTEL_SDK_DISABLED", "TRUE"), B(disabled, 1), NULL},
    {E1("OTEL_SDK_DISABLED", "False"), B(disabled, 0), NULL},
    {E1("OTEL_SDK_DISABLED", "yes"), B(disabled, 0), "OTEL_SDK_DISABLED=\"yes\""},
    {E1("OTEL_SDK_DISABLED", "1"), B(disabled, 0), "OTEL_SDK_DISABLED=\"1\""},
    {E1("OTEL_SDK_DISABLED", ""), B(disabled, 0), NULL},
    /* service name, resource attributes, propagators */
    {E1("OTEL_SERVICE_NAME", "checkout"), S(service_name, "checkout"), NULL},
    {E1("OTEL_SERVICE_NAME", ""), S(service_name, NULL), NULL},
    {E1("OTEL_RESOURCE_ATTRIBUTES", "a=b,c=d"), S(resource_attributes, "a=b,c=d"), NULL},
    {E1("OTEL_RESOURCE_ATTRIBUTES", ""), S(resource_attributes, NULL), NULL},
    {E1("OTEL_PROPAGATORS", "baggage"), S(propagators, "baggage"), NULL},
    {E1("OTEL_PROPAGATORS", ""), S(propagators, "tracecontext,baggage"), NULL},
    /* sampler */
    {E1("OTEL_TRACES_SAMPLER", "always_on"), I(sampler, PROFILIS_SAMPLER_ALWAYS_ON), NULL},
    {E1("OTEL_TRACES_SAMPLER", "always_off"), I(sampler, PROFILIS_SAMPLER_ALWAYS_OFF), NULL},
    {E1("OTEL_TRACES_SAMPLER", "traceidratio"), I(sampler, PROFILIS_SAMPLER_TRACEIDRATIO), NULL},
    {E1("OTEL_TRACES_SAMPLER", "parentbased_always_on"),
     I(sampler, PROFILIS_SAMPLER_PARENTBASED_ALWAYS_ON), NULL},
    {E1("OTEL_TRACES_SAMPLER", "parentbased_always_off"),
     I(sampler, PROFILIS_SAMPLER_PARENTBASED_ALWAYS_OFF), NULL},
    {E1("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
     I(sampler, PROFILIS_SAMPLER_PARENTBASED_TRACEIDRATIO), NULL},
    {E1("OTEL_TRACES_SAMPLER", "jaeger_remote"), I(sampler, PROFILIS_SAMPLER_PARENTBASED_ALWAYS_ON),
     "OTEL_TRACES_SAMPLER=\"jaeger_remote\""},
    {E1("OTEL_TRACES_SAMPLER", ""), I(sampler, PROFILIS_SAMPLER_PARENTBASED_ALWAYS_ON), NULL},
    {E1("OTEL_TRACES_SAMPLER_ARG", "0.25"), D(sampler_ratio, 0.25), NULL},
    {E1("OTEL_TRACES_SAMPLER_ARG", "0"), D(sampler_ratio, 0.0), NULL},
    {E1("OTEL_TRACES_SAMPLER_ARG", "1"), D(sampler_ratio, 1.0), NULL},
    {E1("OTEL_TRACES_SAMPLER_ARG", ".5"), D(sampler_ratio, 0.5), NULL},
    {E1("OTEL_TRACES_SAMPLER_ARG", "1e-3"), D(sampler_ratio, 0.001), NULL},
    {E1("OTEL_TRACES_SAMPLER_ARG", "1.5"), D(sampler_ratio, 1.0),
     "OTEL_TRACES_SAMPLER_ARG=\"1.5\""},
    {E1("OTEL_TRACES_SAMPLER_ARG", "-0.1"), D(sampler_ratio, 1.0), "OTEL_TRACES_SAMPLER_ARG"},
    {E1("OTEL_TRACES_SAMPLER_ARG", "0,5"), D(sampler_ratio, 1.0), "OTEL_TRACES_SAMPLER_ARG"},
    {E1("OTEL_TRACES_SAMPLER_ARG", "half"), D(sampler_ratio, 1.0), "OTEL_TRACES_SAMPLER_ARG"},
    {E1("OTEL_TRACES_SAMPLER_ARG", "nan"), D(sampler_ratio, 1.0), "OTEL_TRACES_SAMPLER_ARG"},
    {E1("OTEL_TRACES_SAMPLER_ARG", ""), D(sampler_ratio, 1.0), NULL},
    {E1("OTEL_TRACES_SAMPLER_ARG", "5e-1"), D(sampler_ratio, 0.5), NULL},
    {E1("OTEL_TRACES_SAMPLER_ARG", "1."), D(sampler_ratio, 1.0), NULL},
    {E1("OTEL_TRACES_SAMPLER_ARG", "00.125"), D(sampler_ratio, 0.125), NULL},
    {E1("OTEL_TRACES_SAMPLER_ARG", "0.000001"), D(sampler_ratio, 0.000001), NULL},
    {E1("OTEL_TRACES_SAMPLER_ARG", "0.25e1"), D(sampler_ratio, 1.0), "OTEL_TRACES_SAMPLER_ARG"},
    {E1("OTEL_TRACES_SAMPLER_ARG", "1e400"), D(sampler_ratio, 1.0), "OTEL_TRACES_SAMPLER_ARG"},
    {E1("OTEL_TRACES_SAMPLER_ARG", "0.1.2"), D(sampler_ratio, 1.0), "OTEL_TRACES_SAMPLER_ARG"},
    {E1("OTEL_TRACES_SAMPLER_ARG", "."), D(sampler_ratio, 1.0), "OTEL_TRACES_SAMPLER_ARG"},
    {E1("OTEL_TRACES_SAMPLER_ARG", "1e"), D(sampler_ratio, 1.0), "OTEL_TRACES_SAMPLER_ARG"},
    /* batch span processor */
    {E1("OTEL_BSP_SCHEDULE_DELAY", "250"), U(schedule_delay_ms, 250), NULL},
    {E1("OTEL_BSP_SCHEDULE_DELAY", " 300 "), U(schedule_delay_ms, 300), NULL},
    {E1("OTEL_BSP_SCHEDULE_DELAY", "0"), U(schedule_delay_ms, 0), NULL},
    {E1("OTEL_BSP_SCHEDULE_DELAY", "-5"), U(schedule_delay_ms, 5000),
     "OTEL_BSP_SCHEDULE_DELAY=\"-5\""},
    {E1("OTEL_BSP_SCHEDULE_DELAY", "5s"), U(schedule_delay_ms, 5000),
     "OTEL_BSP_SCHEDULE_DELAY=\"5s\""},
    {E1("OTEL_BSP_SCHEDULE_DELAY", "99999999999999999999999"), U(schedule_delay_ms, 5000),
     "OTEL_BSP_SCHEDULE_DELAY"},
    {E1("OTEL_BSP_SCHEDULE_DELAY", "2147483648"), U(schedule_delay_ms, 5000), "out of range"},
    {E1("OTEL_BSP_SCHEDULE_DELAY", "18446744073709551616"), U(schedule_delay_ms, 5000),
     "OTEL_BSP_SCHEDULE_DELAY"},
    {E1("OTEL_BSP_SCHEDULE_DELAY", "2147483647"), U(schedule_delay_ms, 2147483647), NULL},
    {E1("OTEL_BSP_SCHEDULE_DELAY", ""), U(schedule_delay_ms, 5000), NULL},
    {E1("OTEL_BSP_EXPORT_TIMEOUT", "1000"), U(export_timeout_ms, 1000), NULL},
    {E1("OTEL_BSP_EXPORT_TIMEOUT", "0"), U(export_timeout_ms, NOLIMIT), NULL},
    {E1("OTEL_BSP_EXPORT_TIMEOUT", "soon"), U(export_timeout_ms, 30000), "OTEL_BSP_EXPORT_TIMEOUT"},
    {E1("OTEL_BSP_MAX_QUEUE_SIZE", "4096"), U(max_queue_size, 4096), NULL},
    {E1("OTEL_BSP_MAX_QUEUE_SIZE", "0"), U(max_queue_size, 2048), "OTEL_BSP_MAX_QUEUE_SIZE=\"0\""},
    {E1("OTEL_BSP_MAX_QUEUE_SIZE", "100"), U(max_export_batch_size, 100), NULL}, /* clamped */
    {E1("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "256"), U(max_export_batch_size, 256), NULL},
    {E1("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "4096"), U(max_export_batch_size, 512),
     "OTEL_BSP_MAX_EXPORT_BATCH_SIZE=\"4096\": larger than OTEL_BSP_MAX_QUEUE_SIZE"},
    {E1("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "0"), U(max_export_batch_size, 512),
     "OTEL_BSP_MAX_EXPORT_BATCH_SIZE"},
    {E2("OTEL_BSP_MAX_QUEUE_SIZE", "100", "OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "50"),
     U(max_export_batch_size, 50), NULL},
    {E2("OTEL_BSP_MAX_QUEUE_SIZE", "100", "OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "200"),
     U(max_export_batch_size, 100), "OTEL_BSP_MAX_EXPORT_BATCH_SIZE=\"200\""},
    {E2("OTEL_BSP_MAX_QUEUE_SIZE", "8192", "OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "4096"),
     U(max_export_batch_size, 4096), NULL},
    /* Profilis queue extras */
    {E1("PROFILIS_BSP_MAX_QUEUE_BYTES", "1048576"), U(max_queue_bytes, MiB), NULL},
    {E1("PROFILIS_BSP_MAX_QUEUE_BYTES", "64KiB"), U(max_queue_bytes, 65536), NULL},
    {E1("PROFILIS_BSP_MAX_QUEUE_BYTES", "2 MiB"), U(max_queue_bytes, 2 * MiB), NULL},
    {E1("PROFILIS_BSP_MAX_QUEUE_BYTES", "8mib"), U(max_queue_bytes, 8 * MiB), NULL},
    {E1("PROFILIS_BSP_MAX_QUEUE_BYTES", "4096MiB"), U(max_queue_bytes, 4 * MiB),
     "PROFILIS_BSP_MAX_QUEUE_BYTES=\"4096MiB\""},
    {E1("PROFILIS_BSP_MAX_QUEUE_BYTES", "10KB"), U(max_queue_bytes, 4 * MiB),
     "PROFILIS_BSP_MAX_QUEUE_BYTES=\"10KB\""},
    {E1("PROFILIS_BSP_MAX_QUEUE_BYTES", "MiB"), U(max_queue_bytes, 4 * MiB),
     "PROFILIS_BSP_MAX_QUEUE_BYTES"},
    {E1("PROFILIS_BSP_MAX_QUEUE_BYTES", "-1"), U(max_queue_bytes, 4 * MiB),
     "PROFILIS_BSP_MAX_QUEUE_BYTES"},
    {E1("PROFILIS_BSP_QUEUE_POLICY", "block"), I(queue_policy, PROFILIS_QUEUE_BLOCK), NULL},
    {E1("PROFILIS_BSP_QUEUE_POLICY", "drop"), I(queue_policy, PROFILIS_QUEUE_DROP), NULL},
    {E1("PROFILIS_BSP_QUEUE_POLICY", "wait"), I(queue_policy, PROFILIS_QUEUE_DROP),
     "PROFILIS_BSP_QUEUE_POLICY=\"wait\""},
    {E1("PROFILIS_BSP_BLOCK_TIMEOUT", "250"), U(block_timeout_ms, 250), NULL},
    {E1("PROFILIS_BSP_BLOCK_TIMEOUT", "1.5"), U(block_timeout_ms, 100),
     "PROFILIS_BSP_BLOCK_TIMEOUT"},
    /* limits: the span-specific variables win over the general ones */
    {E1("OTEL_ATTRIBUTE_COUNT_LIMIT", "10"), U(attribute_count_limit, 10), NULL},
    {E1("OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT", "20"), U(attribute_count_limit, 20), NULL},
    {E2("OTEL_ATTRIBUTE_COUNT_LIMIT", "10", "OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT", "20"),
     U(attribute_count_limit, 20), NULL},
    {E2("OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT", "many", "OTEL_ATTRIBUTE_COUNT_LIMIT", "10"),
     U(attribute_count_limit, 10), "OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT=\"many\""},
    {E1("OTEL_ATTRIBUTE_COUNT_LIMIT", "-1"), U(attribute_count_limit, 128),
     "OTEL_ATTRIBUTE_COUNT_LIMIT"},
    {E1("OTEL_ATTRIBUTE_COUNT_LIMIT", "0"), U(attribute_count_limit, 0), NULL},
    {E1("OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT", "256"), U(attribute_value_length_limit, 256), NULL},
    {E2("OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT", "256", "OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT", "64"),
     U(attribute_value_length_limit, 64), NULL},
    {E1("OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT", "x"), U(attribute_value_length_limit, 0),
     "OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT"},
    {E1("OTEL_SPAN_EVENT_COUNT_LIMIT", "7"), U(event_count_limit, 7), NULL},
    {E1("OTEL_SPAN_EVENT_COUNT_LIMIT", "seven"), U(event_count_limit, 128),
     "OTEL_SPAN_EVENT_COUNT_LIMIT"},
    {E1("OTEL_SPAN_LINK_COUNT_LIMIT", "3"), U(link_count_limit, 3), NULL},
    {E1("OTEL_SPAN_LINK_COUNT_LIMIT", "+3"), U(link_count_limit, 128),
     "OTEL_SPAN_LINK_COUNT_LIMIT"},
    {E1("OTEL_EVENT_ATTRIBUTE_COUNT_LIMIT", "5"), U(event_attribute_count_limit, 5), NULL},
    {E1("OTEL_EVENT_ATTRIBUTE_COUNT_LIMIT", ""), U(event_attribute_count_limit, 128), NULL},
    {E1("OTEL_LINK_ATTRIBUTE_COUNT_LIMIT", "9"), U(link_attribute_count_limit, 9), NULL},
    {E1("OTEL_LINK_ATTRIBUTE_COUNT_LIMIT", "0x10"), U(link_attribute_count_limit, 128),
     "OTEL_LINK_ATTRIBUTE_COUNT_LIMIT"},
    /* exporter selection */
    {E1("OTEL_TRACES_EXPORTER", "otlp"), I(exporter, PROFILIS_EXPORTER_OTLP), NULL},
    {E1("OTEL_TRACES_EXPORTER", "console"), I(exporter, PROFILIS_EXPORTER_CONSOLE), NULL},
    {E1("OTEL_TRACES_EXPORTER", "jsonl"), I(exporter, PROFILIS_EXPORTER_JSONL), NULL},
    {E1("OTEL_TRACES_EXPORTER", "none"), I(exporter, PROFILIS_EXPORTER_NONE), NULL},
    {E1("OTEL_TRACES_EXPORTER", "zipkin"), I(exporter, PROFILIS_EXPORTER_OTLP),
     "OTEL_TRACES_EXPORTER=\"zipkin\""},
    {E1("PROFILIS_JSONL_PATH", "/tmp/spans.jsonl"), S(jsonl_path, "/tmp/spans.jsonl"), NULL},
    {E1("PROFILIS_JSONL_PATH", ""), S(jsonl_path, "profilis-spans.jsonl"), NULL},
    /* OTLP: OTEL_EXPORTER_OTLP_TRACES_* wins over OTEL_EXPORTER_OTLP_* */
    {E1("OTEL_EXPORTER_OTLP_ENDPOINT", "http://a:1"), S(endpoint, "http://a:1"), NULL},
    {E1("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://b:2"), S(endpoint, "http://b:2"), NULL},
    {E2("OTEL_EXPORTER_OTLP_ENDPOINT", "http://a:1", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "https://b:2"),
     S(endpoint, "https://b:2"), NULL},
    {E2("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "", "OTEL_EXPORTER_OTLP_ENDPOINT", "http://a:1"),
     S(endpoint, "http://a:1"), NULL},
    {E1("OTEL_EXPORTER_OTLP_ENDPOINT", ""), S(endpoint, "http://localhost:4317"), NULL},
    {E1("OTEL_EXPORTER_OTLP_HEADERS", "a=1"), S(headers, "a=1"), NULL},
    {E2("OTEL_EXPORTER_OTLP_HEADERS", "a=1", "OTEL_EXPORTER_OTLP_TRACES_HEADERS", "b=2"),
     S(headers, "b=2"), NULL},
    {E1("OTEL_EXPORTER_OTLP_TIMEOUT", "500"), U(timeout_ms, 500), NULL},
    {E2("OTEL_EXPORTER_OTLP_TIMEOUT", "500", "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "700"),
     U(timeout_ms, 700), NULL},
    {E2("OTEL_EXPORTER_OTLP_TIMEOUT", "500", "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "7s"),
     U(timeout_ms, 500), "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT=\"7s\""},
    {E1("OTEL_EXPORTER_OTLP_TIMEOUT", "0"), U(timeout_ms, NOLIMIT), NULL},
    {E1("OTEL_EXPORTER_OTLP_TIMEOUT", "-1"), U(timeout_ms, 10000), "OTEL_EXPORTER_OTLP_TIMEOUT"},
    {E1("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip"), B(compression_gzip, 1), NULL},
    {E1("OTEL_EXPORTER_OTLP_COMPRESSION", "GZIP"), B(compression_gzip, 1), NULL},
    {E1("OTEL_EXPORTER_OTLP_COMPRESSION", "none"), B(compression_gzip, 0), NULL},
    {E2("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip", "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "none"),
     B(compression_gzip, 0), NULL},
    {E1("OTEL_EXPORTER_OTLP_COMPRESSION", "zstd"), B(compression_gzip, 0),
     "OTEL_EXPORTER_OTLP_COMPRESSION=\"zstd\""},
    {E1("OTEL_EXPORTER_OTLP_INSECURE", "true"), I(insecure, 1), NULL},
    {E1("OTEL_EXPORTER_OTLP_INSECURE", "false"), I(insecure, 0), NULL},
    {E2("OTEL_EXPORTER_OTLP_INSECURE", "true", "OTEL_EXPORTER_OTLP_TRACES_INSECURE", "false"),
     I(insecure, 0), NULL},
    {E1("OTEL_EXPORTER_OTLP_INSECURE", "1"), I(insecure, -1), "OTEL_EXPORTER_OTLP_INSECURE=\"1\""},
    {E1("OTEL_EXPORTER_OTLP_INSECURE", ""), I(insecure, -1), NULL},
    {E1("OTEL_EXPORTER_OTLP_CERTIFICATE", "/ca.pem"), S(certificate, "/ca.pem"), NULL},
    {E2("OTEL_EXPORTER_OTLP_CERTIFICATE", "/ca.pem", "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE",
        "/t.pem"),
     S(certificate, "/t.pem"), NULL},
    {E1("OTEL_EXPORTER_OTLP_CLIENT_KEY", "/k.pem"), S(client_key, "/k.pem"), NULL},
    {E2("OTEL_EXPORTER_OTLP_CLIENT_KEY", "/k.pem", "OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY",
        "/tk.pem"),
     S(client_key, "/tk.pem"), NULL},
    {E1("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE", "/c.pem"), S(client_certificate, "/c.pem"), NULL},
    {E2("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE", "/c.pem",
        "OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE", "/tc.pem"),
     S(client_certificate, "/tc.pem"), NULL},
    {E1("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"), S(endpoint, "http://localhost:4317"), NULL},
    {E1("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"), S(endpoint, "http://localhost:4317"),
     "OTEL_EXPORTER_OTLP_PROTOCOL=\"http/protobuf\""},
    {E1("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/json"), S(endpoint, "http://localhost:4317"),
     "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL=\"http/json\""},
};

static void check_case(const env_case *tc, const pf_config *c, const char *log) {
  const char *p = (const char *)&c->o + tc->off;
  switch (tc->k) {
  case K_U32: {
    uint32_t v;
    memcpy(&v, p, 4);
    assert_int_equal(v, tc->want_i);
    break;
  }
  case K_BOOL: {
    bool v;
    memcpy(&v, p, 1);
    assert_int_equal(v, tc->want_i);
    break;
  }
  case K_INT: {
    int v;
    memcpy(&v, p, sizeof v);
    assert_int_equal(v, tc->want_i);
    break;
  }
  case K_DBL: {
    double v;
    memcpy(&v, p, 8);
    assert_true(v == tc->want_d);
    break;
  }
  case K_STR: {
    const char *v;
    memcpy(&v, p, sizeof v);
    if (tc->want_s)
      assert_string_equal(v, tc->want_s);
    else
      assert_null(v);
    break;
  }
  }
  if (tc->warn) {
    assert_non_null(strstr(log, tc->warn));
    assert_non_null(strstr(log, "warn"));
    assert_int_equal(count_lines(log, "\n"), 1);
  } else {
    assert_string_equal(log, "");
  }
}

static void test_env_table(void **state) {
  (void)state;
  for (size_t i = 0; i < sizeof env_cases / sizeof env_cases[0]; i++) {
    const env_case *tc = &env_cases[i];
    env_clear();
    for (int j = 0; j < 3 && tc->env[j][0]; j++) env_set(tc->env[j][0], tc->env[j][1]);
    pf_config c;
    const char *log = resolve_env(&c);
    print_message("case %zu: %s=%s\n", i, tc->env[0][0], tc->env[0][1]);
    check_case(tc, &c, log);
    pf_config_free(&c);
  }
}

/* Every variable the README documents is exercised above, and vice versa. */
static void test_env_doc(void **state) {
  (void)state;
  FILE *f = tmpfile();
  assert_non_null(f);
  pf_config_write_env_doc(f);
  rewind(f);
  static char doc[32768];
  size_t n = fread(doc, 1, sizeof doc - 1, f);
  doc[n] = '\0';
  fclose(f);
  assert_non_null(strstr(doc, "| Variable | Type | Default | Meaning |"));
  assert_non_null(strstr(doc, "| `OTEL_BSP_SCHEDULE_DELAY` | duration (ms) | `5000` |"));
  assert_non_null(strstr(doc, "`OTEL_TRACES_SAMPLER` | `always_on`, `always_off`, `traceidratio`"));
  assert_non_null(strstr(doc, "`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` wins"));
  assert_non_null(strstr(doc, "`http://localhost:4317`"));
  for (size_t i = 0; i < sizeof env_cases / sizeof env_cases[0]; i++)
    for (int j = 0; j < 3 && env_cases[i].env[j][0]; j++) {
      char quoted[128];
      snprintf(quoted, sizeof quoted, "`%s`", env_cases[i].env[j][0]);
      if (!strstr(doc, quoted)) fail_msg("%s is not documented", quoted);
    }
  /* one row per table entry, each documented name tested above */
  int rows = count_lines(doc, "\n| `");
  assert_int_equal(rows, 30);
  for (const char *p = doc; (p = strstr(p, "| `")); p += 3) {
    if (p != doc && p[-1] != '\n') continue;
    char name[96];
    size_t len = strcspn(p + 3, "`");
    snprintf(name, sizeof name, "%.*s", (int)len, p + 3);
    bool tested = false;
    for (size_t i = 0; !tested && i < sizeof env_cases / sizeof env_cases[0]; i++)
      for (int j = 0; j < 3 && env_cases[i].env[j][0]; j++)
        if (strcmp(env_cases[i].env[j][0], name) == 0) tested = true;
    if (!tested) fail_msg("%s has no test case", name);
  }
}

/* ---- caller options ---- */

static void test_use_env_false(void **state) {
  (void)state;
  env_clear();
  env_set("OTEL_BSP_MAX_QUEUE_SIZE", "7");
  env_set("OTEL_SERVICE_NAME", "from-env");
  profilis_provider_opts o;
  profilis_provider_opts_init(&o);
  o.use_env = false;
  o.service_name = "from-code";
  pf_config c;
  assert_int_equal(pf_config_resolve_with(&c, &o, fake_getenv), 0);
  assert_int_equal(c.o.max_queue_size, 2048);
  assert_string_equal(c.o.service_name, "from-code");
  pf_config_free(&c);

  o.use_env = true; /* the environment overrides the code */
  assert_int_equal(pf_config_resolve_with(&c, &o, fake_getenv), 0);
  assert_int_equal(c.o.max_queue_size, 7);
  assert_string_equal(c.o.service_name, "from-env");
  pf_config_free(&c);
}

static void test_strings_are_copied(void **state) {
  (void)state;
  env_clear();
  char name[] = "svc", ep[] = "http://x:1", hdr[] = "k=v";
  profilis_provider_opts o;
  profilis_provider_opts_init(&o);
  o.service_name = name;
  o.endpoint = ep;
  o.headers = hdr;
  o.certificate = ep; /* two fields may share a caller string */
  pf_config c;
  assert_int_equal(pf_config_resolve_with(&c, &o, fake_getenv), 0);
  name[0] = ep[0] = hdr[0] = 'X';
  assert_string_equal(c.o.service_name, "svc");
  assert_string_equal(c.o.endpoint, "http://x:1");
  assert_string_equal(c.o.certificate, "http://x:1");
  assert_ptr_not_equal(c.o.endpoint, c.o.certificate);
  assert_int_equal(c.n_headers, 1);
  assert_string_equal(c.headers[0].key, "k");
  pf_config_free(&c);
  assert_int_equal(c.n_owned, 0);
}

static void test_env_replaces_caller_strings(void **state) {
  (void)state;
  env_clear();
  env_set("OTEL_EXPORTER_OTLP_ENDPOINT", "http://generic:1");
  env_set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://traces:2");
  env_set("OTEL_EXPORTER_OTLP_HEADERS", "a=1");
  env_set("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "B=2,c=3");
  profilis_provider_opts o;
  profilis_provider_opts_init(&o);
  o.endpoint = "http://code:0";
  o.headers = "z=9";
  pf_config c;
  assert_int_equal(pf_config_resolve_with(&c, &o, fake_getenv), 0);
  assert_string_equal(c.o.endpoint, "http://traces:2");
  assert_int_equal(c.n_headers, 2);
  assert_string_equal(c.headers[0].key, "b");
  assert_string_equal(c.headers[0].value, "2");
  assert_string_equal(c.headers[1].key, "c");
  assert_true(c.n_owned <= 16);
  pf_config_free(&c); /* ASan: no copy leaks */
}

static void test_older_caller_size(void **state) {
  (void)state;
  env_clear();
  /* An "old" caller whose struct ended before the batch processor fields: what lies beyond in
   * memory must not be read. */
  profilis_provider_opts o;
  memset(&o, 0xab, sizeof o);
  o.size = (uint32_t)offsetof(profilis_provider_opts, schedule_delay_ms);
  o.use_env = true;
  o.disabled = false;
  o.service_name = "old";
  o.resource_attributes = NULL;
  o.sampler = PROFILIS_SAMPLER_ALWAYS_OFF;
  o.sampler_ratio = 0.5;
  o.propagators = NULL;
  pf_config c;
  assert_int_equal(pf_config_resolve_with(&c, &o, fake_getenv), 0);
  assert_string_equal(c.o.service_name, "old");
  assert_int_equal(c.o.sampler, PROFILIS_SAMPLER_ALWAYS_OFF);
  assert_true(c.o.sampler_ratio == 0.5);
  assert_int_equal(c.o.schedule_delay_ms, 5000);
  assert_int_equal(c.o.max_queue_size, 2048);
  assert_int_equal(c.o.insecure, -1);
  assert_string_equal(c.o.endpoint, "http://localhost:4317");
  assert_null(c.o.console_stream);
  assert_null(c.o.headers);
  assert_int_equal(c.o.size, sizeof c.o);
  pf_config_free(&c);

  o.size = 2; /* never initialised */
  assert_int_equal(pf_config_resolve_with(&c, &o, fake_getenv), PROFILIS_EINVAL);
  assert_int_equal(pf_config_resolve_with(NULL, NULL, fake_getenv), PROFILIS_EINVAL);
}

static void test_bad_caller_values(void **state) {
  (void)state;
  env_clear();
  profilis_provider_opts o;
  profilis_provider_opts_init(&o);
  o.sampler_ratio = 2.0;
  o.max_queue_size = 0;
  o.sampler = (profilis_sampler_kind)42;
  o.queue_policy = (profilis_queue_policy)-3;
  o.export_timeout_ms = 0;
  pf_config c;
  capture_begin();
  assert_int_equal(pf_config_resolve_with(&c, &o, fake_getenv), 0);
  const char *log = capture_end();
  assert_true(c.o.sampler_ratio == 1.0);
  assert_int_equal(c.o.max_queue_size, 2048);
  assert_int_equal(c.o.sampler, PROFILIS_SAMPLER_PARENTBASED_ALWAYS_ON);
  assert_int_equal(c.o.queue_policy, PROFILIS_QUEUE_DROP);
  assert_int_equal(c.o.export_timeout_ms, UINT32_MAX);
  assert_non_null(strstr(log, "sampler_ratio"));
  assert_non_null(strstr(log, "max_queue_size"));
  assert_non_null(strstr(log, "queue_policy"));
  pf_config_free(&c);

  profilis_provider_opts_init(&o);
  o.sampler_ratio = 0.0 / 0.0; /* NaN */
  o.max_queue_size = 64;       /* batch 512 is lowered to fit, without a warning */
  capture_begin();
  assert_int_equal(pf_config_resolve_with(&c, &o, fake_getenv), 0);
  log = capture_end();
  assert_true(c.o.sampler_ratio == 1.0);
  assert_int_equal(c.o.max_export_batch_size, 64);
  assert_null(strstr(log, "batch"));
  pf_config_free(&c);
}

static void test_propagators_mask(void **state) {
  (void)state;
  static const struct {
    const char *env;
    unsigned mask;
  } cases[] = {
      {NULL, PROFILIS_PROPAGATOR_TRACECONTEXT | PROFILIS_PROPAGATOR_BAGGAGE},
      {"tracecontext", PROFILIS_PROPAGATOR_TRACECONTEXT},
      {"baggage", PROFILIS_PROPAGATOR_BAGGAGE},
      {"baggage, tracecontext", PROFILIS_PROPAGATOR_TRACECONTEXT | PROFILIS_PROPAGATOR_BAGGAGE},
      {"none", 0},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    env_clear();
    if (cases[i].env) env_set("OTEL_PROPAGATORS", cases[i].env);
    pf_config c;
    resolve_env(&c);
    assert_int_equal(c.propagators, cases[i].mask);
    pf_config_free(&c);
  }
}

static void test_sampler_env_precomputes(void **state) {
  (void)state;
  env_clear();
  env_set("OTEL_TRACES_SAMPLER", "traceidratio");
  env_set("OTEL_TRACES_SAMPLER_ARG", "0.25");
  pf_config c;
  resolve_env(&c);
  assert_int_equal(c.o.sampler, PROFILIS_SAMPLER_TRACEIDRATIO);
  assert_true(c.ratio_threshold == (1ull << 62));
  pf_config_free(&c);
}

/* ---- headers ---- */

typedef struct kv_case {
  const char *in;
  const char *want[6][2]; /* expected pairs in order; NULL-ended */
  int warnings;
} kv_case;

static const kv_case kv_cases[] = {
    {"a=b", {{"a", "b"}}, 0},
    {" Api-Key = secret%20value , x=1", {{"api-key", "secret value"}, {"x", "1"}}, 0},
    {"a=%41%42%2c%3D", {{"a", "AB,="}}, 0},
    {"k=", {{"k", ""}}, 0},
    {"k=a=b", {{"k", "a=b"}}, 0},
    {",,k=v,,", {{"k", "v"}}, 0},
    {"k=1,k=2", {{"k", "1"}, {"k", "2"}}, 0},
    {"\tk\t=\tv\t", {{"k", "v"}}, 0},
    {"X-Scope-OrgID=tenant-a", {{"x-scope-orgid", "tenant-a"}}, 0},
    {"novalue,k=v", {{"k", "v"}}, 1},
    {"=v,k=v", {{"k", "v"}}, 1},
    {"k=%zz,k2=%4,k3=%", {{NULL, NULL}}, 3},
    {"k=a%0D%0Ainjected: x,ok=1", {{"ok", "1"}}, 1},
    {"k=%00", {{NULL, NULL}}, 1},
    {"bad key=v,good=v", {{"good", "v"}}, 1},
    {"k%3A=v", {{NULL, NULL}}, 1},
    {"", {{NULL, NULL}}, 0},
    {"   ", {{NULL, NULL}}, 0},
};

static void test_headers_table(void **state) {
  (void)state;
  for (size_t i = 0; i < sizeof kv_cases / sizeof kv_cases[0]; i++) {
    const kv_case *tc = &kv_cases[i];
    pf_header *h = NULL;
    size_t n = 99;
    capture_begin();
    int rc = pf_parse_kv_list(tc->in, &h, &n);
    const char *log = capture_end();
    print_message("headers case %zu: %s\n", i, tc->in);
    assert_int_equal(rc, 0);
    size_t want_n = 0;
    while (want_n < 6 && tc->want[want_n][0]) want_n++;
    assert_int_equal(n, want_n);
    for (size_t j = 0; j < n; j++) {
      assert_string_equal(h[j].key, tc->want[j][0]);
      assert_string_equal(h[j].value, tc->want[j][1]);
    }
    assert_int_equal(count_lines(log, "malformed entry"), tc->warnings);
    pf_free_kv_list(h, n);
  }
}

static void test_headers_never_logs_values(void **state) {
  (void)state;
  pf_header *h;
  size_t n;
  capture_begin();
  assert_int_equal(pf_parse_kv_list("authorization=Bearer%20hunter2%zz", &h, &n), 0);
  const char *log = capture_end();
  assert_int_equal(n, 0);
  assert_non_null(strstr(log, "OTEL_EXPORTER_OTLP_HEADERS"));
  assert_null(strstr(log, "hunter2"));
  pf_free_kv_list(h, n);
}

static void test_headers_caps(void **state) {
  (void)state;
  char *big = malloc(70 * 16);
  size_t off = 0;
  for (int i = 0; i < 70; i++) off += (size_t)sprintf(big + off, "%sk%d=v%d", i ? "," : "", i, i);
  pf_header *h;
  size_t n;
  capture_begin();
  assert_int_equal(pf_parse_kv_list(big, &h, &n), 0);
  const char *log = capture_end();
  assert_int_equal(n, 64);
  assert_string_equal(h[63].key, "k63");
  assert_non_null(strstr(log, "dropped"));
  pf_free_kv_list(h, n);
  free(big);

  /* 8 KiB of decoded bytes: a 9000-byte value does not fit, the small pairs around it do */
  size_t len = 9000;
  big = malloc(len + 32);
  strcpy(big, "a=1,big=");
  memset(big + 8, 'x', len);
  strcpy(big + 8 + len, ",b=2");
  capture_begin();
  assert_int_equal(pf_parse_kv_list(big, &h, &n), 0);
  capture_end();
  assert_int_equal(n, 2);
  assert_string_equal(h[0].key, "a");
  assert_string_equal(h[1].key, "b");
  pf_free_kv_list(h, n);
  free(big);
}

static void test_kv_list_ex_keeps_case(void **state) {
  (void)state;
  static const pf_kv_opts rules = {.what = "T", .header = false, .max_pairs = 8, .max_bytes = 64};
  pf_header *h;
  size_t n;
  assert_int_equal(pf_parse_kv_list_ex("Host.Name=A%20B,k%3Dx=v", &rules, &h, &n), 0);
  assert_int_equal(n, 2);
  assert_string_equal(h[0].key, "Host.Name");
  assert_string_equal(h[0].value, "A B");
  assert_string_equal(h[1].key, "k=x");
  pf_free_kv_list(h, n);
  assert_int_equal(pf_parse_kv_list_ex(NULL, &rules, &h, &n), 0);
  assert_int_equal(n, 0);
  assert_null(h);
}

int main(int argc, char **argv) {
  if (argc > 1 && strcmp(argv[1], "--env-doc") == 0) {
    pf_config_write_env_doc(stdout);
    return 0;
  }
  setenv("PROFILIS_LOG_LEVEL", "warn", 1); /* the tests read the warnings */
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_opts_init_defaults),
      cmocka_unit_test(test_resolve_defaults),
      cmocka_unit_test(test_env_table),
      cmocka_unit_test(test_env_doc),
      cmocka_unit_test(test_use_env_false),
      cmocka_unit_test(test_strings_are_copied),
      cmocka_unit_test(test_env_replaces_caller_strings),
      cmocka_unit_test(test_older_caller_size),
      cmocka_unit_test(test_bad_caller_values),
      cmocka_unit_test(test_propagators_mask),
      cmocka_unit_test(test_sampler_env_precomputes),
      cmocka_unit_test(test_headers_table),
      cmocka_unit_test(test_headers_never_logs_values),
      cmocka_unit_test(test_headers_caps),
      cmocka_unit_test(test_kv_list_ex_keeps_case),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
