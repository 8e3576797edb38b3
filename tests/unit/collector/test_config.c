/* Collector configuration: defaults, every key, every error class with its exact
 * file:line:column, several errors at once, ${env:} substitution, durations and sizes at their
 * edges, input bounds, loading files, the generated reference, and an allocation-failure sweep
 * (glibc builds without ASan). Run with --config-doc to print the README reference. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "pc_config.h"
#include "pf_log.h"
#include "profilis/common.h"

/* ---- helpers ---- */

static pc_config *cfg;
static pc_errors errs;

static void reset(void) {
  pc_config_free(cfg);
  cfg = NULL;
  pc_errors_free(&errs);
}

static int teardown(void **state) {
  (void)state;
  reset();
  return 0;
}

static int parse(const char *yaml) {
  reset();
  return pc_config_parse(yaml, strlen(yaml), "t.yaml", &cfg, &errs);
}

static void dump_errors(void) {
  for (size_t i = 0; i < errs.n; i++) print_message("  error[%zu] %s\n", i, errs.msgs[i]);
}

static void expect_ok(const char *yaml) {
  int rc = parse(yaml);
  if (rc) dump_errors();
  assert_int_equal(rc, 0);
  assert_non_null(cfg);
  assert_int_equal(errs.n, 0);
}

/* The parse fails with exactly these messages, in this order. */
static void expect_errors(const char *yaml, const char *const *want, size_t n) {
  int rc = parse(yaml);
  if (errs.n != n) dump_errors();
  assert_int_equal(rc, PROFILIS_EINVAL);
  assert_null(cfg);
  assert_int_equal(errs.n, n);
  for (size_t i = 0; i < n; i++) {
    if (strcmp(errs.msgs[i], want[i])) dump_errors();
    assert_string_equal(errs.msgs[i], want[i]);
  }
}

static void expect_error(const char *yaml, const char *want) { expect_errors(yaml, &want, 1); }

/* A valid exporter and route, so a snippet above it is the only thing that can be wrong. */
#define ROUTE "exporters: {jsonl: {}}\nservice: {exporters: [jsonl]}\n"

/* ---- defaults ---- */

static void check_default_receivers(const pc_config *c) {
  assert_true(c->grpc_enabled);
  assert_string_equal(c->grpc_endpoint, "127.0.0.1:4317");
  assert_int_equal(c->grpc_max_recv_msg_size, 16u << 20);
  assert_int_equal(c->grpc_max_concurrent_streams, 128);
  assert_int_equal(c->grpc_keepalive_time_ms, 2 * 3600 * 1000);
  assert_int_equal(c->grpc_keepalive_timeout_ms, 20000);
  assert_null(c->grpc_tls.cert_file);
  assert_null(c->grpc_tls.key_file);
  assert_null(c->grpc_tls.client_ca_file);
  assert_true(c->http_enabled);
  assert_string_equal(c->http_endpoint, "127.0.0.1:4318");
  assert_int_equal(c->http_max_body_size, 16u << 20);
  assert_int_equal(c->http_max_connections, 1024);
  assert_int_equal(c->http_read_timeout_ms, 30000);
  assert_null(c->http_tls.cert_file);
  assert_string_equal(c->admin_endpoint, "127.0.0.1:8888");
  assert_int_equal(c->memory_limit, 256u << 20);
  assert_int_equal(c->retry_after_ms, 1000);
  assert_int_equal(c->drain_timeout_ms, 30000);
  assert_int_equal(c->log_level, PF_LOG_INFO);
  assert_false(c->log_json);
}

/* batch.size has a default per type: jsonl 4096, otlp 512, none for prometheus (no batches). */
static void check_default_exporter(const pc_exporter_cfg *e) {
  static const double buckets[] = {2,   4,   6,    8,    10,   50,   100,   200,
                                   400, 800, 1000, 1400, 2000, 5000, 10000, 15000};
  assert_int_equal(e->batch_size, e->type == PC_EXPORTER_JSONL ? 4096
                                  : e->type == PC_EXPORTER_OTLP ? 512
                                                                : 0);
  assert_int_equal(e->preallocate_bytes, 8u << 20);
  assert_int_equal(e->batch_timeout_ms, 200);
  assert_int_equal(e->timeout_ms, 10000);
  assert_string_equal(e->path, "./profilis-data/spans.jsonl");
  assert_false(e->format_otlp);
  assert_int_equal(e->rotate_max_bytes, 100u << 20);
  assert_int_equal(e->rotate_max_age_ms, 24 * 3600 * 1000);
  assert_int_equal(e->max_backups, 5);
  assert_int_equal(e->flush_interval_ms, 1000);
  assert_int_equal(e->fsync, PC_FSYNC_NEVER);
  assert_null(e->endpoint);
  assert_int_equal(e->n_headers, 0);
  assert_false(e->gzip);
  assert_null(e->tls.ca_file);
  assert_false(e->tls.insecure);
  assert_int_equal(e->retry_initial_ms, 100);
  assert_int_equal(e->retry_max_ms, 5000);
  assert_int_equal(e->retry_max_elapsed_ms, 60000);
  assert_int_equal(e->n_buckets, 16);
  for (size_t i = 0; i < 16; i++) assert_true(e->buckets_ms[i] == buckets[i]);
  assert_int_equal(e->max_series, 10000);
}

static void test_embedded_default(void **state) {
  (void)state;
  const char *y = pc_config_default_yaml();
  reset();
  assert_int_equal(pc_config_parse(y, strlen(y), "<default>", &cfg, &errs), 0);
  assert_int_equal(errs.n, 0);
  assert_string_equal(cfg->source, "<default>");
  check_default_receivers(cfg);
  assert_int_equal(cfg->n_exporters, 2);
  assert_string_equal(cfg->exporters[0].name, "jsonl");
  assert_int_equal(cfg->exporters[0].type, PC_EXPORTER_JSONL);
  assert_string_equal(cfg->exporters[1].name, "prometheus");
  assert_int_equal(cfg->exporters[1].type, PC_EXPORTER_PROMETHEUS);
  check_default_exporter(&cfg->exporters[0]);
  check_default_exporter(&cfg->exporters[1]);
  assert_int_equal(cfg->n_route, 2);
  assert_string_equal(cfg->route[0], "jsonl");
  assert_string_equal(cfg->route[1], "prometheus");
  assert_ptr_equal(pc_config_exporter(cfg, "prometheus"), &cfg->exporters[1]);
  assert_null(pc_config_exporter(cfg, "otlp"));
  assert_null(pc_config_exporter(NULL, "jsonl"));
}

/* Only the route is required: every other field comes from the table's defaults. */
static void test_minimal_file_defaults(void **state) {
  (void)state;
  expect_ok("exporters:\n  otlp:\n    endpoint: collector:4317\nservice:\n  exporters: [otlp]\n");
  check_default_receivers(cfg);
  assert_int_equal(cfg->n_exporters, 1);
  assert_string_equal(cfg->exporters[0].endpoint, "collector:4317");
  assert_string_equal(cfg->source, "t.yaml");
  pc_exporter_cfg e = cfg->exporters[0];
  e.endpoint = NULL; /* the one key set; the rest must be defaults */
  check_default_exporter(&e);
}

static const char every_key[] =
    "receivers:\n"
    "  otlp:\n"
    "    grpc:\n"
    "      enabled: false\n"
    "      endpoint: 0.0.0.0:14317\n"
    "      max_recv_msg_size: 4MiB\n"
    "      max_concurrent_streams: 64\n"
    "      keepalive: {time: 30m, timeout: 5s}\n"
    "      tls: {cert_file: /g/cert.pem, key_file: /g/key.pem, client_ca_file: /g/ca.pem}\n"
    "    http:\n"
    "      enabled: true\n"
    "      endpoint: \"[::1]:14318\"\n"
    "      max_body_size: 8MB\n"
    "      max_connections: 10\n"
    "      read_timeout: 1m\n"
    "      tls: {cert_file: /h/cert.pem, key_file: /h/key.pem, client_ca_file: /h/ca.pem}\n"
    "admin: {endpoint: \"0.0.0.0:18888\"}\n"
    "limits: {memory_limit: 1GiB, retry_after: 250ms, drain_timeout: 0}\n"
    "log: {level: debug, format: json}\n"
    "exporters:\n"
    "  jsonl/main:\n"
    "    path: /var/lib/profilis/spans.jsonl\n"
    "    format: otlp\n"
    "    rotation: {max_size: 10MiB, max_age: 1h, max_backups: 3}\n"
    "    flush_interval: 100ms\n"
    "    fsync: interval\n"
    "    batch: {size: 1000, timeout: 50ms}\n"
    "  otlp/tempo:\n"
    "    endpoint: https://tempo.example:4317\n"
    "    headers: {X-Scope-OrgID: acme, authorization: \"Bearer t\"}\n"
    "    compression: gzip\n"
    "    timeout: 3s\n"
    "    tls: {ca_file: /t/ca.pem, cert_file: /t/c.pem, key_file: /t/k.pem, insecure: true}\n"
    "    retry: {initial_interval: 10ms, max_interval: 1s, max_elapsed_time: 30s}\n"
    "    batch: {size: 100, timeout: 1s}\n"
    "  prometheus:\n"
    "    buckets: [500us, 1ms, 2.5ms, 1s]\n"
    "    max_series: 50\n"
    "service:\n"
    "  exporters: [jsonl/main, otlp/tempo, prometheus]\n";

static void check_every_key_config(const pc_config *c) {
  assert_false(c->grpc_enabled);
  assert_string_equal(c->grpc_endpoint, "0.0.0.0:14317");
  assert_int_equal(c->grpc_max_recv_msg_size, 4u << 20);
  assert_int_equal(c->grpc_max_concurrent_streams, 64);
  assert_int_equal(c->grpc_keepalive_time_ms, 30 * 60 * 1000);
  assert_int_equal(c->grpc_keepalive_timeout_ms, 5000);
  assert_string_equal(c->grpc_tls.cert_file, "/g/cert.pem");
  assert_string_equal(c->grpc_tls.key_file, "/g/key.pem");
  assert_string_equal(c->grpc_tls.client_ca_file, "/g/ca.pem");
  assert_true(c->http_enabled);
  assert_string_equal(c->http_endpoint, "[::1]:14318");
  assert_int_equal(c->http_max_body_size, 8000000);
  assert_int_equal(c->http_max_connections, 10);
  assert_int_equal(c->http_read_timeout_ms, 60000);
  assert_string_equal(c->http_tls.cert_file, "/h/cert.pem");
  assert_string_equal(c->http_tls.key_file, "/h/key.pem");
  assert_string_equal(c->http_tls.client_ca_file, "/h/ca.pem");
  assert_string_equal(c->admin_endpoint, "0.0.0.0:18888");
  assert_int_equal(c->memory_limit, 1u << 30);
  assert_int_equal(c->retry_after_ms, 250);
  assert_int_equal(c->drain_timeout_ms, 0);
  assert_int_equal(c->log_level, PF_LOG_DEBUG);
  assert_true(c->log_json);
  assert_int_equal(c->n_route, 3);
  assert_string_equal(c->route[0], "jsonl/main");
  assert_string_equal(c->route[1], "otlp/tempo");
  assert_string_equal(c->route[2], "prometheus");
}

static void check_every_key_jsonl(const pc_exporter_cfg *j) {
  assert_int_equal(j->type, PC_EXPORTER_JSONL);
  assert_string_equal(j->path, "/var/lib/profilis/spans.jsonl");
  assert_true(j->format_otlp);
  assert_int_equal(j->rotate_max_bytes, 10u << 20);
  assert_int_equal(j->rotate_max_age_ms, 3600 * 1000);
  assert_int_equal(j->max_backups, 3);
  assert_int_equal(j->flush_interval_ms, 100);
  assert_int_equal(j->fsync, PC_FSYNC_INTERVAL);
  assert_int_equal(j->batch_size, 1000);
  assert_int_equal(j->batch_timeout_ms, 50);
}

static void check_every_key_otlp(const pc_exporter_cfg *o) {
  assert_int_equal(o->type, PC_EXPORTER_OTLP);
  assert_string_equal(o->endpoint, "https://tempo.example:4317");
  assert_int_equal(o->n_headers, 2);
  assert_string_equal(o->headers[0].key, "x-scope-orgid");
  assert_string_equal(o->headers[0].value, "acme");
  assert_string_equal(o->headers[1].key, "authorization");
  assert_string_equal(o->headers[1].value, "Bearer t");
  assert_true(o->gzip);
  assert_int_equal(o->timeout_ms, 3000);
  assert_string_equal(o->tls.ca_file, "/t/ca.pem");
  assert_string_equal(o->tls.cert_file, "/t/c.pem");
  assert_string_equal(o->tls.key_file, "/t/k.pem");
  assert_true(o->tls.insecure);
  assert_int_equal(o->retry_initial_ms, 10);
  assert_int_equal(o->retry_max_ms, 1000);
  assert_int_equal(o->retry_max_elapsed_ms, 30000);
  assert_int_equal(o->batch_size, 100);
  assert_int_equal(o->batch_timeout_ms, 1000);
}

static void test_every_key(void **state) {
  (void)state;
  expect_ok(every_key);
  check_every_key_config(cfg);
  assert_int_equal(cfg->n_exporters, 3);
  check_every_key_jsonl(pc_config_exporter(cfg, "jsonl/main"));
  check_every_key_otlp(pc_config_exporter(cfg, "otlp/tempo"));
  const pc_exporter_cfg *p = pc_config_exporter(cfg, "prometheus");
  assert_int_equal(p->type, PC_EXPORTER_PROMETHEUS);
  assert_int_equal(p->n_buckets, 4);
  assert_true(p->buckets_ms[0] == 0.5 && p->buckets_ms[1] == 1.0);
  assert_true(p->buckets_ms[2] == 2.5 && p->buckets_ms[3] == 1000.0);
  assert_int_equal(p->max_series, 50);
}

/* ---- errors, one class at a time, with exact positions ---- */

static void test_unknown_keys(void **state) {
  (void)state;
  expect_error("receivers:\n  otlp:\n    grpc:\n      endpoitn: x:1\n" ROUTE,
               "t.yaml:4:7: receivers.otlp.grpc.endpoitn: unknown key");
  expect_error("recievers: {}\n" ROUTE, "t.yaml:1:1: recievers: unknown key");
  expect_error(ROUTE "limits: {memory_limit: 1GiB, budget: 2}\n",
               "t.yaml:3:30: limits.budget: unknown key");
  /* A dotted key is not a shortcut for nesting. */
  expect_error("receivers: {otlp: {grpc: {keepalive.time: 1s}}}\n" ROUTE,
               "t.yaml:1:27: receivers.otlp.grpc.keepalive.time: unknown key");
  /* Keys belong to exporter types: path is jsonl's, not otlp's. */
  expect_error("exporters:\n  otlp: {endpoint: h:1, path: x}\nservice: {exporters: [otlp]}\n",
               "t.yaml:2:25: exporters.otlp.path: unknown key");
}

static void test_wrong_types(void **state) {
  (void)state;
  expect_error("limits:\n  memory_limit: [1]\n" ROUTE,
               "t.yaml:2:17: limits.memory_limit: expected a size, found a list");
  expect_error("receivers: {otlp: {grpc: {enabled: yes}}}\n" ROUTE,
               "t.yaml:1:36: receivers.otlp.grpc.enabled: expected true or false, not \"yes\"");
  expect_error("admin:\n  endpoint: {host: x}\n" ROUTE,
               "t.yaml:2:13: admin.endpoint: expected a string, found a mapping");
  expect_error("admin:\n  endpoint:\n" ROUTE,
               "t.yaml:2:12: admin.endpoint: expected a string, found nothing");
  expect_error("log: {level: verbose}\n" ROUTE,
               "t.yaml:1:14: log.level: expected one of error, warn, info, debug, not \"verbose\"");
  expect_error("limits: 5\n" ROUTE, "t.yaml:1:9: limits: expected a mapping, found a single value");
  expect_error("- a\n- b\n", "t.yaml:1:1: config: expected a mapping of sections, found a list");
  expect_error("exporters: {jsonl: 5}\nservice: {exporters: [jsonl]}\n",
               "t.yaml:1:20: exporters.jsonl: expected a mapping, found a single value");
  static const char *const not_map[] = {
      "t.yaml:1:12: exporters: expected a mapping of exporters, found a list",
      "t.yaml:2:23: service.exporters: no exporter named \"jsonl\" in exporters"};
  expect_errors("exporters: [jsonl]\nservice: {exporters: [jsonl]}\n", not_map, 2);
  expect_error("exporters: {jsonl: {batch: {size: 1.5}}}\nservice: {exporters: [jsonl]}\n",
               "t.yaml:1:35: exporters.jsonl.batch.size: expected a whole number");
}

static void test_out_of_range(void **state) {
  (void)state;
  expect_error("limits:\n  memory_limit: 1KiB\n" ROUTE,
               "t.yaml:2:17: limits.memory_limit: must be between 1MiB and 1TiB");
  expect_error("receivers: {otlp: {grpc: {max_concurrent_streams: 0}}}\n" ROUTE,
               "t.yaml:1:51: receivers.otlp.grpc.max_concurrent_streams: must be between 1 and "
               "65536");
  expect_error("receivers: {otlp: {grpc: {keepalive: {time: 25h}}}}\n" ROUTE,
               "t.yaml:1:45: receivers.otlp.grpc.keepalive.time: must be between 1s and 24h");
  expect_error("exporters: {jsonl: {batch: {size: 4294967296}}}\nservice: {exporters: [jsonl]}\n",
               "t.yaml:1:35: exporters.jsonl.batch.size: too large");
  expect_error("admin: {endpoint: \"127.0.0.1:65536\"}\n" ROUTE,
               "t.yaml:1:19: admin.endpoint: the port must be a number from 0 to 65535");
  expect_error("admin: {endpoint: \"::1:8888\"}\n" ROUTE,
               "t.yaml:1:19: admin.endpoint: expected host:port, with an IPv6 address in "
               "brackets ([::1]:4317)");
  expect_error("admin: {endpoint: localhost}\n" ROUTE,
               "t.yaml:1:19: admin.endpoint: expected host:port");
  expect_error("exporters: {otlp: {endpoint: \"ftp://x:1\"}}\nservice: {exporters: [otlp]}\n",
               "t.yaml:1:30: exporters.otlp.endpoint: the scheme must be http:// or https://");
}

static void test_exporter_names(void **state) {
  (void)state;
  expect_error("exporters:\n  jsonl: {}\n  kafka: {}\nservice: {exporters: [jsonl]}\n",
               "t.yaml:3:3: exporters.kafka: unknown exporter type (expected jsonl, otlp, "
               "prometheus or loadbalancing)");
  expect_error("exporters:\n  jsonl: {}\n  jsonl/: {}\nservice: {exporters: [jsonl]}\n",
               "t.yaml:3:3: exporters.jsonl/: the label after '/' must be 1 to 64 letters, "
               "digits, '-' or '_'");
  expect_error("exporters:\n  jsonl: {}\n  jsonl: {path: b}\nservice: {exporters: [jsonl]}\n",
               "t.yaml:3:3: exporters.jsonl: exporter defined twice (first at 2:3)");
  expect_ok("exporters:\n  jsonl/a: {path: a}\n  jsonl/b-2: {path: b}\n"
            "service: {exporters: [jsonl/a, jsonl/b-2]}\n");
  assert_int_equal(cfg->n_exporters, 2);
}

static void test_route_errors(void **state) {
  (void)state;
  expect_error("exporters: {jsonl: {}}\nservice: {exporters: [jsonl, otlp/x]}\n",
               "t.yaml:2:30: service.exporters: no exporter named \"otlp/x\" in exporters");
  expect_error("exporters: {jsonl: {}}\nservice:\n  exporters: []\n",
               "t.yaml:3:14: service.exporters: must name at least one exporter");
  expect_error("exporters: {jsonl: {}}\nservice:\n  exporters:\n",
               "t.yaml:3:13: service.exporters: must name at least one exporter");
  expect_error("exporters: {jsonl: {}}\n", "t.yaml:1:1: service.exporters: required");
  expect_error("exporters: {jsonl: {}}\nservice: {}\n", "t.yaml:2:1: service.exporters: required");
  expect_error("exporters: {jsonl: {}}\nservice: {exporters: [jsonl, jsonl]}\n",
               "t.yaml:2:30: service.exporters: exporter jsonl is listed twice");
  expect_error("exporters: {prometheus: {}, prometheus/b: {}}\n"
               "service: {exporters: [prometheus, prometheus/b]}\n",
               "t.yaml:2:35: service.exporters: a route takes at most one prometheus exporter "
               "(prometheus is already on it)");
  expect_error("exporters: {otlp: {}}\nservice: {exporters: [otlp]}\n",
               "t.yaml:1:13: exporters.otlp.endpoint: required");
  /* An exporter that is defined but not routed is still checked, and allowed. */
  expect_ok("exporters: {jsonl: {}, otlp: {endpoint: h:1}}\nservice: {exporters: [jsonl]}\n");
}

static void test_duplicate_keys(void **state) {
  (void)state;
  expect_error("limits:\n  retry_after: 1s\n  retry_after: 2s\n" ROUTE,
               "t.yaml:3:3: limits.retry_after: duplicate key (first at 2:3)");
  expect_error("log: {}\nlog: {}\n" ROUTE, "t.yaml:2:1: log: duplicate key (first at 1:1)");
  expect_error("exporters: {jsonl: {}}\nexporters: {}\nservice: {exporters: [jsonl]}\n",
               "t.yaml:2:1: exporters: duplicate key (first at 1:1)");
  expect_error("exporters:\n  otlp:\n    endpoint: h:1\n    headers: {A: 1, a: 2}\n"
               "service: {exporters: [otlp]}\n",
               "t.yaml:4:21: exporters.otlp.headers.a: header given twice");
}

static void test_syntax_errors(void **state) {
  (void)state;
  expect_error("limits:\n  retry_after: [1s\n",
               "t.yaml:3:1: yaml: did not find expected ',' or ']' (while parsing a flow "
               "sequence at 2:16)");
  expect_error("a: b: c\n", "t.yaml:1:5: yaml: mapping values are not allowed in this context");
  expect_error("log: {level: info}\n\tformat: json\n",
               "t.yaml:2:1: yaml: found character that cannot start any token (while scanning "
               "for the next token at 2:1)");
  expect_error("a: 1\n---\nb: 2\n", "t.yaml:2:1: yaml: only one YAML document is allowed");
  expect_error("limits: !custom {}\n", "t.yaml:1:9: yaml: unsupported tag \"!custom\"");
  const char bad_utf8[] = "log: {level: \"\xff\"}\n";
  expect_error(bad_utf8, "t.yaml:1:15: yaml: invalid leading UTF-8 octet");
}

static void test_cross_key_rules(void **state) {
  (void)state;
  expect_error("receivers: {otlp: {grpc: {tls: {cert_file: /c.pem}}}}\n" ROUTE,
               "t.yaml:1:33: receivers.otlp.grpc.tls.cert_file: needs tls.key_file too");
  expect_error("receivers: {otlp: {http: {tls: {client_ca_file: /ca.pem}}}}\n" ROUTE,
               "t.yaml:1:33: receivers.otlp.http.tls.client_ca_file: mutual TLS needs "
               "tls.cert_file and tls.key_file too");
  expect_error("receivers: {otlp: {grpc: {enabled: false}, http: {enabled: false}}}\n" ROUTE,
               "t.yaml:1:51: receivers.otlp.http.enabled: no receiver left: enable grpc or http");
  expect_error("admin: {endpoint: \"127.0.0.1:4317\"}\n" ROUTE,
               "t.yaml:1:9: admin.endpoint: the same address as another listener");
  static const char *const budget[] = {
      "t.yaml:1:27: receivers.otlp.grpc.max_recv_msg_size: larger than limits.memory_limit",
      "t.yaml:2:10: limits.memory_limit: smaller than receivers.otlp.http.max_body_size (16MiB): "
      "such a request could never be admitted"};
  expect_errors("receivers: {otlp: {grpc: {max_recv_msg_size: 9MiB}}}\n"
                "limits: {memory_limit: 8MiB}\n" ROUTE,
                budget, 2);
  /* A disabled receiver's size does not count. */
  expect_ok("receivers: {otlp: {grpc: {enabled: false}, http: {max_body_size: 8MiB}}}\n"
            "limits: {memory_limit: 8MiB}\n" ROUTE);
  expect_error("exporters:\n  otlp: {endpoint: h:1, retry: {initial_interval: 10s}}\n"
               "service: {exporters: [otlp]}\n",
               "t.yaml:2:33: exporters.otlp.retry.initial_interval: must not be longer than "
               "retry.max_interval");
  expect_error("exporters:\n  otlp: {endpoint: h:1, tls: {key_file: k.pem}}\n"
               "service: {exporters: [otlp]}\n",
               "t.yaml:2:31: exporters.otlp.tls.key_file: needs tls.cert_file too");
  expect_error("exporters:\n  jsonl/a: {}\n  jsonl/b: {path: ./profilis-data/spans.jsonl}\n"
               "service: {exporters: [jsonl/a, jsonl/b]}\n",
               "t.yaml:3:13: exporters.jsonl/b.path: same file as exporter jsonl/a (2:3)");
  /* Port 0 asks for any free port: two listeners may both say so. */
  expect_ok("receivers: {otlp: {grpc: {endpoint: \"127.0.0.1:0\"}, http: {endpoint: "
            "\"127.0.0.1:0\"}}}\n" ROUTE);
}

static void test_many_errors_at_once(void **state) {
  (void)state;
  static const char *const want[] = {
      "t.yaml:4:26: receivers.otlp.grpc.max_recv_msg_size: unknown unit \"MB2\" in a size such "
      "as 512KiB, 16MiB or 1GB",
      "t.yaml:5:5: receivers.otlp.htp: unknown key",
      "t.yaml:7:10: log.level: expected one of error, warn, info, debug, not \"loud\"",
      "t.yaml:9:3: exporters.kafka: unknown exporter type (expected jsonl, otlp, prometheus or "
      "loadbalancing)",
      "t.yaml:10:28: exporters.jsonl.batch.timeout: missing unit: expected a duration such as "
      "200ms, 5s or 1.5h",
      "t.yaml:12:22: service.exporters: no exporter named \"kafka\" in exporters",
  };
  expect_errors("receivers:\n"
                "  otlp:\n"
                "    grpc:\n"
                "      max_recv_msg_size: 4MB2\n"
                "    htp: {}\n"
                "log:\n"
                "  level: loud\n"
                "exporters:\n"
                "  kafka: {brokers: [a]}\n"
                "  jsonl: {batch: {timeout: 5}}\n"
                "service:\n"
                "  exporters: [jsonl, kafka]\n",
                want, sizeof want / sizeof want[0]);
}

static void test_error_cap(void **state) {
  (void)state;
  char *y = malloc(200 * 16 + 64);
  assert_non_null(y);
  size_t n = 0;
  for (int i = 0; i < 200; i++) n += (size_t)sprintf(y + n, "k%03d: 1\n", i);
  assert_int_equal(parse(y), PROFILIS_EINVAL);
  assert_int_equal(errs.n, 101);
  assert_string_equal(errs.msgs[0], "t.yaml:1:1: k000: unknown key");
  assert_string_equal(errs.msgs[99], "t.yaml:100:1: k099: unknown key");
  assert_string_equal(errs.msgs[100], "t.yaml: more than 100 errors; the rest are not reported");
  free(y);
}

/* ---- ${env:NAME} ---- */

static void test_env_substitution(void **state) {
  (void)state;
  setenv("PCT_TOKEN", "s3cr3t", 1);
  setenv("PCT_SIZE", "2MiB", 1);
  setenv("PCT_EMPTY", "", 1);
  setenv("PCT_TRICK", "${env:PCT_TOKEN}", 1);
  unsetenv("PCT_UNSET");
  expect_ok("exporters:\n  otlp:\n    endpoint: h:1\n"
            "    headers: {authorization: \"Bearer ${env:PCT_TOKEN}\", x-a: \"$${env:PCT_TOKEN}\","
            " x-b: \"${env:PCT_TRICK}\", x-c: \"a$b$\", x-d: \"<${env:PCT_EMPTY}>\"}\n"
            "receivers: {otlp: {http: {max_body_size: \"${env:PCT_SIZE}\"}}}\n"
            "service: {exporters: [otlp]}\n");
  const pc_exporter_cfg *o = pc_config_exporter(cfg, "otlp");
  assert_int_equal(o->n_headers, 5);
  assert_string_equal(o->headers[0].value, "Bearer s3cr3t");
  assert_string_equal(o->headers[1].value, "${env:PCT_TOKEN}"); /* $$ escapes */
  assert_string_equal(o->headers[2].value, "${env:PCT_TOKEN}"); /* no second pass */
  assert_string_equal(o->headers[3].value, "a$b$");             /* a lone $ stays */
  assert_string_equal(o->headers[4].value, "<>");
  assert_int_equal(cfg->http_max_body_size, 2u << 20);

  expect_error("admin: {endpoint: \"${env:PCT_UNSET}\"}\n" ROUTE,
               "t.yaml:1:19: admin.endpoint: environment variable PCT_UNSET is not set");
  expect_error("admin: {endpoint: \"${PCT_TOKEN}\"}\n" ROUTE,
               "t.yaml:1:19: admin.endpoint: unsupported substitution \"${PCT_TOKEN}\": write "
               "${env:NAME}");
  expect_error("admin: {endpoint: \"${env:PCT_TOKEN\"}\n" ROUTE,
               "t.yaml:1:19: admin.endpoint: unterminated \"${\"");
  expect_error("admin: {endpoint: \"${env:1X}\"}\n" ROUTE,
               "t.yaml:1:19: admin.endpoint: unsupported substitution \"${env:1X}\": write "
               "${env:NAME}");
  /* Route entries are values too. */
  setenv("PCT_EXPORTER", "jsonl", 1);
  expect_ok("exporters: {jsonl: {}}\nservice: {exporters: [\"${env:PCT_EXPORTER}\"]}\n");
  assert_string_equal(cfg->route[0], "jsonl");
  /* An optional file left empty through the environment stays unset. */
  expect_ok("receivers: {otlp: {grpc: {tls: {cert_file: \"${env:PCT_EMPTY}\"}}}}\n" ROUTE);
  assert_null(cfg->grpc_tls.cert_file);
  unsetenv("PCT_TOKEN");
  unsetenv("PCT_SIZE");
  unsetenv("PCT_EMPTY");
  unsetenv("PCT_TRICK");
  unsetenv("PCT_EXPORTER");
}

/* ---- durations and sizes ---- */

typedef struct quantity_case {
  const char *text;
  uint64_t want; /* when why is NULL */
  const char *why;
} quantity_case;

/* Puts `text` into limits.<key> and checks the result or the message. */
static void check_quantity(const char *key, const quantity_case *q) {
  char y[512], want[300];
  snprintf(
      y, sizeof y,
      "limits:\n  %s: \"%s\"\n"
      "receivers: {otlp: {grpc: {max_recv_msg_size: 1KiB}, http: {max_body_size: 1KiB}}}\n" ROUTE,
      key, q->text);
  int rc = parse(y);
  if (!q->why) {
    if (rc) dump_errors();
    assert_int_equal(rc, 0);
    uint64_t got = !strcmp(key, "memory_limit") ? cfg->memory_limit : cfg->retry_after_ms;
    if (got != q->want) print_message("%s: %s -> %llu\n", key, q->text, (unsigned long long)got);
    assert_true(got == q->want);
    return;
  }
  snprintf(want, sizeof want, "t.yaml:2:%zu: limits.%s: %s", strlen(key) + 5, key, q->why);
  if (rc != PROFILIS_EINVAL || errs.n != 1 || strcmp(errs.msgs[0], want)) {
    print_message("case \"%s\"\n want %s\n", q->text, want);
    dump_errors();
  }
  assert_int_equal(rc, PROFILIS_EINVAL);
  assert_int_equal(errs.n, 1);
  assert_string_equal(errs.msgs[0], want);
}

static void test_durations(void **state) {
  (void)state;
  static const char *const ex = "a duration such as 200ms, 5s or 1.5h";
  char missing[80], bad[80];
  snprintf(missing, sizeof missing, "missing unit: expected %s", ex);
  snprintf(bad, sizeof bad, "expected %s", ex);
  const quantity_case cases[] = {
      {"5s", 5000, NULL},
      {"200ms", 200, NULL},
      {"1.5s", 1500, NULL},
      {"0.25m", 15000, NULL},
      {"1h", 3600000, NULL},
      {"0", 0, NULL},
      {"0s", 0, NULL},
      {"1000000us", 1000, NULL},
      {"2000000000ns", 2000, NULL},
      {"1 s", 1000, NULL},
      {"1.000s", 1000, NULL},
      {"5", 0, missing},
      {"-1s", 0, "must not be negative"},
      {"5sx", 0, "unknown unit \"sx\" in a duration such as 200ms, 5s or 1.5h"},
      {"5S", 0, "unknown unit \"S\" in a duration such as 200ms, 5s or 1.5h"},
      {"1e3s", 0, "unknown unit \"e3s\" in a duration such as 200ms, 5s or 1.5h"},
      {"s", 0, bad},
      {".5s", 0, bad},
      {"5.s", 0, bad},
      {"", 0, bad},
      {"1.5ms", 0, "must be a whole number of milliseconds"},
      {"0.5ns", 0, "too precise: finer than 1ns"},
      {"1.0000000000000000001s", 0, "too many decimals"},
      {"2h", 0, "must be between 0 and 1h"},
      {"3600001ms", 0, "must be between 0 and 1h"},
      {"18446744073709000000ns", 0, "must be between 0 and 1h"},
      {"18446744073709551615ns", 0, "must be a whole number of milliseconds"},
      {"18446744073709551616ns", 0, "too large"},
      {"5124096h", 0, "too large"},
      {"99999999999999999999h", 0, "too large"},
      {"999999999999999999999s", 0, "too large"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
    check_quantity("retry_after", &cases[i]);
}

static void test_sizes(void **state) {
  (void)state;
  const quantity_case cases[] = {
      {"64MiB", 64ull << 20, NULL},
      {"1048576", 1048576, NULL},
      {"1.5GiB", 3ull << 29, NULL},
      {"2GB", 2000000000, NULL},
      {"2 MB", 2000000, NULL},
      {"1024KiB", 1048576, NULL},
      {"1TiB", 1ull << 40, NULL},
      {"3000kB", 3000000, NULL},
      {"1048576B", 1048576, NULL},
      {"-5MiB", 0, "must not be negative"},
      {"10XB", 0, "unknown unit \"XB\" in a size such as 512KiB, 16MiB or 1GB"},
      {"10mib", 0, "unknown unit \"mib\" in a size such as 512KiB, 16MiB or 1GB"},
      {"16MiB!", 0, "unknown unit \"MiB!\" in a size such as 512KiB, 16MiB or 1GB"},
      {"MiB", 0, "expected a size such as 512KiB, 16MiB or 1GB"},
      {"1048576.5", 0, "too precise: finer than 1B"},
      {"1KiB", 0, "must be between 1MiB and 1TiB"},
      {"2TiB", 0, "must be between 1MiB and 1TiB"},
      {"16777216TiB", 0, "too large"},
      {"99999999999999999999GiB", 0, "too large"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
    check_quantity("memory_limit", &cases[i]);
}

static void test_buckets(void **state) {
  (void)state;
  expect_error("exporters: {prometheus: {buckets: [1ms, 1ms]}}\n"
               "service: {exporters: [prometheus]}\n",
               "t.yaml:1:41: exporters.prometheus.buckets: must be larger than the bound before "
               "it");
  expect_error("exporters: {prometheus: {buckets: [0s, 1ms]}}\n"
               "service: {exporters: [prometheus]}\n",
               "t.yaml:1:36: exporters.prometheus.buckets: must be more than 0");
  expect_error("exporters: {prometheus: {buckets: []}}\nservice: {exporters: [prometheus]}\n",
               "t.yaml:1:35: exporters.prometheus.buckets: must not be empty");
  expect_error("exporters: {prometheus: {buckets: 5ms}}\nservice: {exporters: [prometheus]}\n",
               "t.yaml:1:35: exporters.prometheus.buckets: expected a list of durations, found "
               "a single value");
  expect_error("exporters: {prometheus: {buckets: [1ms, [2ms]]}}\n"
               "service: {exporters: [prometheus]}\n",
               "t.yaml:1:41: exporters.prometheus.buckets: expected a single value, found a list");
}

static void test_headers(void **state) {
  (void)state;
  expect_error("exporters:\n  otlp: {endpoint: h:1, headers: {grpc-timeout: 1S}}\n"
               "service: {exporters: [otlp]}\n",
               "t.yaml:2:35: exporters.otlp.headers.grpc-timeout: not a usable header name: "
               "lowercase letters, digits, '-', '_' and '.', not grpc-* or a reserved name");
  expect_error("exporters:\n  otlp: {endpoint: h:1, headers: {x-a: \"a\\r\\nb\"}}\n"
               "service: {exporters: [otlp]}\n",
               "t.yaml:2:40: exporters.otlp.headers.x-a: must be at most 8192 bytes without "
               "control characters");
  static const char nul_name[] = "exporters:\n  otlp: {endpoint: h:1, headers: {\"a\\0b\": 1}}\n"
                                 "service: {exporters: [otlp]}\n";
  expect_error(nul_name, "t.yaml:2:35: exporters.otlp.headers.a?b: not a usable header name: "
                         "lowercase letters, digits, '-', '_' and '.', not grpc-* or a reserved "
                         "name");
  expect_error("receivers: {otlp: {grpc: {enabled: \"true\\0x\"}}}\n" ROUTE,
               "t.yaml:1:36: receivers.otlp.grpc.enabled: must not contain NUL characters");
  expect_error("exporters:\n  otlp: {endpoint: h:1, headers: [a]}\n"
               "service: {exporters: [otlp]}\n",
               "t.yaml:2:34: exporters.otlp.headers: expected a mapping of header names to "
               "values, found a list");
}

static void test_booleans_and_enums(void **state) {
  (void)state;
  expect_ok("receivers: {otlp: {grpc: {enabled: True}, http: {enabled: FALSE}}}\n"
            "exporters: {otlp: {endpoint: h:1, compression: gzip, tls: {insecure: true}}, "
            "jsonl: {fsync: batch}}\nservice: {exporters: [otlp, jsonl]}\n");
  assert_true(cfg->grpc_enabled);
  assert_false(cfg->http_enabled);
  assert_true(pc_config_exporter(cfg, "otlp")->gzip);
  assert_true(pc_config_exporter(cfg, "otlp")->tls.insecure);
  assert_int_equal(pc_config_exporter(cfg, "jsonl")->fsync, PC_FSYNC_BATCH);
  expect_error("receivers: {otlp: {grpc: {enabled: \"1\"}}}\n" ROUTE,
               "t.yaml:1:36: receivers.otlp.grpc.enabled: expected true or false, not \"1\"");
  expect_error("exporters: {jsonl: {fsync: always}}\nservice: {exporters: [jsonl]}\n",
               "t.yaml:1:28: exporters.jsonl.fsync: expected one of never, batch, interval, not "
               "\"always\"");
}

/* ---- YAML features and bounds ---- */

static void test_aliases(void **state) {
  (void)state;
  expect_ok("exporters:\n"
            "  otlp/a: {endpoint: a:1, retry: &r {initial_interval: 1ms, max_interval: 2ms}}\n"
            "  otlp/b: {endpoint: b:1, retry: *r}\n"
            "receivers:\n  otlp:\n    grpc:\n    http: ~\n"
            "service: {exporters: [otlp/a, otlp/b]}\n");
  assert_int_equal(pc_config_exporter(cfg, "otlp/b")->retry_max_ms, 2);
  assert_true(cfg->grpc_enabled && cfg->http_enabled);
  /* An alias inside its own anchor would make a cycle. */
  expect_error("limits: &a {x: *a}\n" ROUTE,
               "t.yaml:1:16: yaml: alias *a names no complete anchor");
  expect_error("limits: *nope\n" ROUTE, "t.yaml:1:9: yaml: alias *nope names no complete anchor");
}

static void test_unknown_top_level_section(void **state) {
  (void)state;
  expect_error("x-shared: &retry {initial_interval: 1ms}\n" ROUTE,
               "t.yaml:1:1: x-shared: unknown key");
}

static char *nested(size_t depth) {
  char *y = malloc(2 * depth + 16 + sizeof ROUTE);
  size_t n = (size_t)sprintf(y, "limits: ");
  for (size_t i = 0; i < depth; i++) y[n++] = '[';
  for (size_t i = 0; i < depth; i++) y[n++] = ']';
  strcpy(y + n, "\n" ROUTE);
  return y;
}

static void test_input_bounds(void **state) {
  (void)state;
  /* 32 levels (the root mapping and 31 lists) parse; the error is then about the value. */
  char *y = nested(31);
  expect_error(y, "t.yaml:1:9: limits: expected a mapping, found a list");
  free(y);
  y = nested(32);
  expect_error(y, "t.yaml:1:40: yaml: nested deeper than 32 levels");
  free(y);

  size_t big = (1u << 20) + 1;
  y = malloc(big);
  memset(y, '#', big);
  reset();
  assert_int_equal(pc_config_parse(y, big, "big.yaml", &cfg, &errs), PROFILIS_EINVAL);
  assert_int_equal(errs.n, 1);
  assert_string_equal(errs.msgs[0], "big.yaml: larger than 1 MiB");
  /* Exactly 1 MiB is fine (a comment: no route, so just that error). */
  assert_int_equal(pc_config_parse(y, big - 1, "big.yaml", &cfg, &errs), PROFILIS_EINVAL);
  assert_string_equal(errs.msgs[1], "big.yaml:1:1: service.exporters: required");
  free(y);

  /* 256 exporters are fine, the 257th is refused. */
  size_t cap = 300 * 40;
  y = malloc(cap);
  size_t n = (size_t)sprintf(y, "service: {exporters: [jsonl/e0]}\nexporters:\n");
  for (int i = 0; i < 257; i++) n += (size_t)sprintf(y + n, "  jsonl/e%d: {path: p%d}\n", i, i);
  expect_error(y, "t.yaml:259:3: exporters: more than 256 exporters");
  y[n - strlen("  jsonl/e256: {path: p256}\n")] = '\0';
  expect_ok(y);
  assert_int_equal(cfg->n_exporters, 256);
  free(y);

  /* Anchors, aliases and nodes are capped, so no input makes the tree builder slow or big. */
  y = malloc(300000);
  n = 0;
  for (int i = 0; i < 257; i++) n += (size_t)sprintf(y + n, "a%d: &x%d 1\n", i, i);
  expect_error(y, "t.yaml:257:7: yaml: more than 256 anchors");
  n = (size_t)sprintf(y, "a: &x 1\nb: [");
  for (int i = 0; i < 4097; i++) n += (size_t)sprintf(y + n, "*x, ");
  strcpy(y + n, "1]\n");
  expect_error(y, "t.yaml:2:16389: yaml: more than 4096 aliases");
  n = (size_t)sprintf(y, "b: [");
  for (int i = 0; i < 100000; i++) n += (size_t)sprintf(y + n, "1,");
  strcpy(y + n, "1]\n");
  expect_error(y, "t.yaml:1:199999: yaml: more than 100000 YAML nodes");
  free(y);

  /* NUL bytes and other control characters are YAML reader errors. */
  static const char nul[] = "log: {level: info}\n\0\n";
  reset();
  assert_int_equal(pc_config_parse(nul, sizeof nul - 1, "t.yaml", &cfg, &errs), PROFILIS_EINVAL);
  assert_string_equal(errs.msgs[0], "t.yaml:2:1: yaml: control characters are not allowed");
  /* An empty file: everything defaults, and the route is missing. */
  expect_error("", "t.yaml:1:1: service.exporters: required");
}

/* ---- files ---- */

static char *write_temp(const char *text, size_t len) {
  const char *dir = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
  char *path = malloc(strlen(dir) + 32);
  sprintf(path, "%s/pc_cfg_XXXXXX", dir);
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  assert_int_equal(write(fd, text, len), (ssize_t)len);
  close(fd);
  return path;
}

static void test_load(void **state) {
  (void)state;
  reset();
  assert_int_equal(pc_config_load("/nonexistent/profilis.yaml", &cfg, &errs), PROFILIS_EIO);
  assert_null(cfg);
  assert_int_equal(errs.n, 1);
  assert_string_equal(errs.msgs[0],
                      "/nonexistent/profilis.yaml: cannot read: No such file or directory");
  reset();
  assert_int_equal(pc_config_load("/", &cfg, &errs), PROFILIS_EIO);
  assert_string_equal(errs.msgs[0], "/: cannot read: Is a directory");

  char *path = write_temp(every_key, sizeof every_key - 1);
  reset();
  assert_int_equal(pc_config_load(path, &cfg, &errs), 0);
  assert_string_equal(cfg->source, path);
  check_every_key_config(cfg);
  unlink(path);
  free(path);

  path = write_temp("limits: {memory_limit: lots}\n" ROUTE, strlen(ROUTE) + 29);
  reset();
  assert_int_equal(pc_config_load(path, &cfg, &errs), PROFILIS_EINVAL);
  char want[256];
  snprintf(want, sizeof want,
           "%s:1:24: limits.memory_limit: expected a size such as 512KiB, 16MiB or 1GB", path);
  assert_string_equal(errs.msgs[0], want);
  unlink(path);
  free(path);

  size_t big = (2u << 20);
  char *text = malloc(big);
  memset(text, '#', big);
  path = write_temp(text, big);
  reset();
  assert_int_equal(pc_config_load(path, &cfg, &errs), PROFILIS_EINVAL);
  snprintf(want, sizeof want, "%s: larger than 1 MiB", path);
  assert_string_equal(errs.msgs[0], want);
  unlink(path);
  free(path);
  free(text);
}

static void test_errors_api(void **state) {
  (void)state;
  pc_errors e = {0};
  pc_errors_add(&e, "%s:%d: %s", "f", 3, "bad");
  pc_errors_add(&e, "second");
  assert_int_equal(e.n, 2);
  assert_string_equal(e.msgs[0], "f:3: bad");
  assert_string_equal(e.msgs[1], "second");
  pc_errors_free(&e);
  assert_int_equal(e.n, 0);
  assert_null(e.msgs);
  pc_errors_free(&e); /* twice is harmless */
  pc_errors_add(NULL, "ignored");
  /* errs may be NULL: the result is the same, the messages are dropped. */
  pc_config *c = NULL;
  assert_int_equal(pc_config_parse("log: 1\n", 7, NULL, &c, NULL), PROFILIS_EINVAL);
  assert_null(c);
  assert_int_equal(pc_config_parse(NULL, 0, NULL, &c, NULL), PROFILIS_EINVAL); /* no route */
  assert_int_equal(pc_config_parse("x", 1, NULL, NULL, NULL), PROFILIS_EINVAL);
  pc_config_free(NULL);
}

/* ---- the reference ---- */

static void test_doc(void **state) {
  (void)state;
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  pc_config_write_doc(f);
  fclose(f);
  static const char *const must[] = {
      "| `receivers.otlp.grpc.endpoint` | `host:port` | `127.0.0.1:4317` |",
      "| `receivers.otlp.grpc.keepalive.time` | duration, 1s to 24h | `2h` |",
      "| `receivers.otlp.http.max_body_size` | size, 1KiB to 1GiB | `16MiB` |",
      "| `receivers.otlp.http.tls.client_ca_file` | file path | (none) |",
      "| `limits.memory_limit` | size, 1MiB to 1TiB | `256MiB` |",
      "| `log.level` | `error`, `warn`, `info` or `debug` | `info` |",
      "#### `jsonl` exporters",
      "| `rotation.max_size` | size, 0 to 1TiB | `100MiB` |",
      "| `endpoint` | URL or `host:port` | required |",
      ("| `buckets` | list of 1 to 128 durations | `[2ms, 4ms, 6ms, 8ms, 10ms, 50ms, 100ms, "
       "200ms, 400ms, 800ms, 1s, 1400ms, 2s, 5s, 10s, 15s]` |"),
      "| `service.exporters` | list of exporter names | required |",
      "`${env:NAME}`",
  };
  for (size_t i = 0; i < sizeof must / sizeof must[0]; i++) {
    if (!strstr(buf, must[i])) print_message("missing from the doc: %s\n", must[i]);
    assert_non_null(strstr(buf, must[i]));
  }
  /* Every row of every table is a documented key; count them against the tables' size. */
  size_t rows = 0;
  for (const char *p = buf; (p = strstr(p, "\n| `")); p++) rows++;
  /* config + jsonl + otlp + prometheus + loadbalancing + tenant + rule rows */
  assert_int_equal(rows, 35 + 25 + 28 + 2 + 31 + 14 + 7);
  assert_null(strchr(buf, '\t'));
  free(buf);
}

/* ---- allocation failures ---- */

/* ---- tenants ---- */

static const char tenants_yaml[] =
    "tenancy: {default_tenant: acme, resource_attribute: tenant.id}\n"
    "sampling: {decision_wait: 2s, load: {start: 0.5}}\n"
    "tenants:\n"
    "  - id: acme\n"
    "    tokens: [tok-a1, \"${env:PCT_TENANT_TOKEN}\"]\n"
    "    token_file: %s\n"
    "    client_subjects: [\"CN=agent,O=acme\"]\n"
    "    rate_limit: {spans_per_second: 5000, bytes_per_second: 1MiB, bytes_burst: 4MiB}\n"
    "    sampling:\n"
    "      target: 12.5\n"
    "      latency: 2s\n"
    "      rules:\n"
    "        - {route: /healthz, action: drop}\n"
    "        - {service: batch, action: probability, probability: 0.01}\n"
    "        - {attribute: {key: tier, value: gold}, action: keep}\n"
    "    exporters: [jsonl/t, otlp/tempo, prometheus]\n"
    "  - id: \"beta_(2).x*'!\"\n"
    "    tokens: [tok-b]\n"
    "exporters:\n"
    "  jsonl/t: {path: \"/tmp/pct/${tenant}/spans.jsonl\"}\n"
    "  jsonl: {path: /tmp/pct/all.jsonl}\n"
    "  otlp/tempo:\n"
    "    endpoint: http://127.0.0.1:4317\n"
    "    headers: {x-scope-orgid: \"${tenant}\", x-fixed: \"a${tenant}b${tenant}\"}\n"
    "    queue: {enabled: true, full: refuse, max_size: 2MiB}\n"
    "    breaker: {failures: 3, failure_ratio: 0.25, open: 500ms}\n"
    "  prometheus: {}\n"
    "service: {exporters: [jsonl, prometheus]}\n";

static void test_tenants(void **state) {
  (void)state;
  char tokfile[] = "/tmp/pct-tokens-XXXXXX";
  int fd = mkstemp(tokfile);
  assert_true(fd >= 0);
  static const char lines[] = "# tokens of acme\n\n  tok-file-1  \r\ntok-file-2\n";
  assert_int_equal(write(fd, lines, sizeof lines - 1), (ssize_t)(sizeof lines - 1));
  close(fd);
  setenv("PCT_TENANT_TOKEN", "tok-env", 1);
  char yaml[4096];
  snprintf(yaml, sizeof yaml, tenants_yaml, tokfile);
  expect_ok(yaml);
  unlink(tokfile);
  assert_int_equal(cfg->n_tenants, 2);
  const pc_tenant_cfg *a = pc_config_tenant(cfg, "acme");
  assert_non_null(a);
  assert_int_equal(a->n_tokens, 4);
  assert_string_equal(a->tokens[1], "tok-env");
  assert_string_equal(a->tokens[2], "tok-file-1");
  assert_string_equal(a->tokens[3], "tok-file-2");
  assert_string_equal(a->subjects[0], "CN=agent,O=acme");
  assert_int_equal(a->rate_spans, 5000);
  assert_int_equal(a->rate_spans_burst, 0);
  assert_int_equal(a->rate_bytes_burst, 4 << 20);
  assert_true(a->sampling_target == 12.5);
  assert_true(a->sampling_min_probability == 0.001);
  assert_true(a->sampling_keep_errors);
  assert_int_equal(a->sampling_latency_ms, 2000);
  assert_int_equal(a->n_rules, 3);
  assert_int_equal(a->rules[0].action, PC_RULE_DROP);
  assert_string_equal(a->rules[0].route, "/healthz");
  assert_true(a->rules[1].probability == 0.01);
  assert_string_equal(a->rules[2].attr_key, "tier");
  assert_string_equal(a->rules[2].attr_value, "gold");
  size_t n = 0;
  char *const *r = pc_config_route_of(cfg, a, &n);
  assert_int_equal(n, 3);
  assert_string_equal(r[1], "otlp/tempo");
  const pc_tenant_cfg *b = pc_config_tenant(cfg, "beta_(2).x*'!");
  assert_non_null(b);
  r = pc_config_route_of(cfg, b, &n);
  assert_int_equal(n, 2);
  assert_string_equal(r[0], "jsonl");
  assert_null(pc_config_tenant(cfg, "beta"));
  assert_string_equal(cfg->default_tenant, "acme");
  assert_string_equal(cfg->tenant_header, "x-scope-orgid");
  assert_string_equal(cfg->tenant_attribute, "tenant.id");
  assert_int_equal(cfg->sampling_wait_ms, 2000);
  assert_true(cfg->sampling_load_start == 0.5 && cfg->sampling_load_floor == 0.1);
  const pc_exporter_cfg *t = pc_config_exporter(cfg, "otlp/tempo");
  assert_true(t->templated);
  assert_true(pc_config_exporter(cfg, "jsonl/t")->templated);
  assert_false(pc_config_exporter(cfg, "jsonl")->templated);
  assert_true(t->queue_enabled && t->queue_full == 1 && t->queue_max_bytes == 2u << 20);
  assert_true(t->breaker_enabled && t->breaker_failures == 3 && t->breaker_open_ms == 500);
  assert_true(t->breaker_failure_ratio == 0.25 && t->breaker_open_max_ms == 30000);
  /* Expansion: a deep copy with the tenant in place of ${tenant}, in values only. */
  pc_exporter_cfg e;
  assert_int_equal(pc_exporter_cfg_expand(&e, t, "acme"), 0);
  assert_string_equal(e.name, "otlp/tempo");
  assert_string_equal(e.headers[0].key, "x-scope-orgid");
  assert_string_equal(e.headers[0].value, "acme");
  assert_string_equal(e.headers[1].value, "aacmebacme");
  assert_ptr_not_equal(e.endpoint, t->endpoint);
  assert_string_equal(e.queue_directory, t->queue_directory);
  pc_exporter_cfg_free(&e);
  assert_int_equal(pc_exporter_cfg_expand(&e, pc_config_exporter(cfg, "jsonl/t"), "beta"), 0);
  assert_string_equal(e.path, "/tmp/pct/beta/spans.jsonl");
  pc_exporter_cfg_free(&e);
  assert_int_equal(pc_exporter_cfg_expand(&e, t, NULL), 0); /* a plain copy */
  assert_string_equal(e.headers[0].value, "${tenant}");
  pc_exporter_cfg_free(&e);
}

static void test_tenant_errors(void **state) {
  (void)state;
  static const char yaml[] =
      "tenancy: {default_tenant: nope, header: \"X Bad\"}\n"      /* 1 */
      "tenants:\n"                                                /* 2 */
      "  - id: \"..\"\n"                                          /* 3 */
      "    tokens: [same, \"has space\"]\n"                       /* 4 */
      "    rate_limit: {spans_burst: 5}\n"                        /* 5 */
      "    sampling:\n"                                           /* 6 */
      "      rules:\n"                                            /* 7 */
      "        - {route: /x}\n"                                   /* 8 */
      "        - {action: probability, span_name: a}\n"          /* 9 */
      "        - {action: keep, probability: 0.5}\n"              /* 10 */
      "    exporters: [nope]\n"                                   /* 11 */
      "  - id: b\n"                                               /* 12 */
      "    tokens: [same]\n"                                      /* 13 */
      "  - {id: b, client_subjects: [CN=x, CN=x]}\n"              /* 14 */
      "  - {tokens: [t]}\n"                                       /* 15 */
      "exporters:\n"                                              /* 16 */
      "  jsonl: {path: \"/tmp/${tenant}.jsonl\"}\n"               /* 17 */
      "  otlp: {endpoint: \"h:1\", breaker: {open: 2s, open_max: 1s}}\n" /* 18 */
      "service: {exporters: [jsonl, otlp]}\n";                    /* 19 */
  static const char *const want[] = {
      "t.yaml:1:41: tenancy.header: lowercase letters, digits, '-', '_' and '.' only",
      "t.yaml:3:9: tenants[0].id: not a tenant id: at most 150 letters, digits or !-_.*'(), "
      "not . or ..",
      "t.yaml:4:20: tenants[0].tokens: item 2: a token must be printable ASCII without spaces",
      "t.yaml:8:11: tenants[0].sampling.rules[0].action: required",
      "t.yaml:9:11: tenants[0].sampling.rules[1].probability: action probability needs a "
      "probability above 0",
      "t.yaml:10:26: tenants[0].sampling.rules[2].probability: only for action: probability",
      "t.yaml:10:11: tenants[0].sampling.rules[2].action: the rule needs a condition: service, "
      "span_name, route or attribute.key",
      "t.yaml:15:5: tenants[3].id: required",
      "t.yaml:11:5: tenants[0].exporters: no exporter named \"nope\" in exporters",
      "t.yaml:3:5: tenants[0].rate_limit.spans_burst: needs rate_limit.spans_per_second too",
      "t.yaml:12:5: tenants[1].tokens: token 1 is also a token of tenant ?: a token must name "
      "one tenant",
      "t.yaml:14:5: tenants[2].id: tenant b is defined twice (first at 12:5)",
      "t.yaml:14:5: tenants[2].client_subjects: subject CN=x also names tenant b",
      "t.yaml:1:11: tenancy.default_tenant: names no tenant of `tenants`",
      "t.yaml:18:3: exporters.otlp.breaker.open_max: must not be shorter than breaker.open",
  };
  expect_errors(yaml, want, sizeof want / sizeof want[0]);
  /* ${tenant} needs tenants; the token never appears in a message. */
  static const char single[] = "exporters: {jsonl: {path: \"/tmp/${tenant}.jsonl\"}}\n"
                               "service: {exporters: [jsonl]}\n";
  static const char *const want1[] = {
      "t.yaml:2:23: service.exporters: exporter jsonl uses ${tenant}, which needs `tenants`"};
  expect_errors(single, want1, 1);
  static const char secret[] = "tenants: [{id: a, tokens: [\"s3cr3t\\u0001\"]}]\n"
                               "exporters: {jsonl: {}}\nservice: {exporters: [jsonl]}\n";
  assert_int_equal(parse(secret), PROFILIS_EINVAL);
  for (size_t i = 0; i < errs.n; i++) assert_null(strstr(errs.msgs[i], "s3cr3t"));
}

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define PCT_NO_FAILMALLOC 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__) || !defined(__GLIBC__)
#define PCT_NO_FAILMALLOC 1
#endif

#ifndef PCT_NO_FAILMALLOC
/* glibc lets a program replace malloc; these count and fail allocations while armed. */
extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void __libc_free(void *);
static int fail_countdown;    /* 0 = never fail */
static long live_allocations; /* allocations minus frees while armed */
static int armed;

static int should_fail(void) { return armed && fail_countdown && --fail_countdown == 0; }
void *malloc(size_t n) {
  if (should_fail()) return NULL;
  void *p = __libc_malloc(n);
  live_allocations += armed && p;
  return p;
}
void *calloc(size_t a, size_t b) {
  if (should_fail()) return NULL;
  void *p = __libc_calloc(a, b);
  live_allocations += armed && p;
  return p;
}
void *realloc(void *old, size_t n) {
  if (should_fail()) return NULL;
  void *p = __libc_realloc(old, n);
  live_allocations += armed && p && !old;
  return p;
}
void free(void *p) {
  live_allocations -= armed && p;
  __libc_free(p);
}


static void test_allocation_failures(void **state) {
  (void)state;
  reset();
  int failures = 0;
  for (int i = 1; i < 5000; i++) {
    pc_config *c = NULL;
    live_allocations = 0;
    fail_countdown = i;
    armed = 1;
    int rc = pc_config_parse(every_key, sizeof every_key - 1, "t.yaml", &c, NULL);
    if (rc == 0) pc_config_free(c);
    armed = 0;
    assert_int_equal(live_allocations, 0); /* nothing leaks on any path */
    if (rc == 0 && fail_countdown) break;  /* every allocation succeeded: done */
    assert_int_equal(rc, PROFILIS_ENOMEM);
    assert_null(c);
    failures++;
  }
  assert_true(failures > 50);
}
#else
static void test_allocation_failures(void **state) {
  (void)state;
  skip(); /* the sanitizer owns malloc */
}
#endif

int main(int argc, char **argv) {
  if (argc > 1 && strcmp(argv[1], "--config-doc") == 0) {
    pc_config_write_doc(stdout);
    return 0;
  }
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_teardown(test_embedded_default, teardown),
      cmocka_unit_test_teardown(test_minimal_file_defaults, teardown),
      cmocka_unit_test_teardown(test_every_key, teardown),
      cmocka_unit_test_teardown(test_unknown_keys, teardown),
      cmocka_unit_test_teardown(test_wrong_types, teardown),
      cmocka_unit_test_teardown(test_out_of_range, teardown),
      cmocka_unit_test_teardown(test_exporter_names, teardown),
      cmocka_unit_test_teardown(test_route_errors, teardown),
      cmocka_unit_test_teardown(test_duplicate_keys, teardown),
      cmocka_unit_test_teardown(test_syntax_errors, teardown),
      cmocka_unit_test_teardown(test_cross_key_rules, teardown),
      cmocka_unit_test_teardown(test_many_errors_at_once, teardown),
      cmocka_unit_test_teardown(test_error_cap, teardown),
      cmocka_unit_test_teardown(test_env_substitution, teardown),
      cmocka_unit_test_teardown(test_durations, teardown),
      cmocka_unit_test_teardown(test_sizes, teardown),
      cmocka_unit_test_teardown(test_buckets, teardown),
      cmocka_unit_test_teardown(test_headers, teardown),
      cmocka_unit_test_teardown(test_booleans_and_enums, teardown),
      cmocka_unit_test_teardown(test_aliases, teardown),
      cmocka_unit_test_teardown(test_unknown_top_level_section, teardown),
      cmocka_unit_test_teardown(test_input_bounds, teardown),
      cmocka_unit_test_teardown(test_load, teardown),
      cmocka_unit_test_teardown(test_errors_api, teardown),
      cmocka_unit_test_teardown(test_doc, teardown),
      cmocka_unit_test_teardown(test_tenants, teardown),
      cmocka_unit_test_teardown(test_tenant_errors, teardown),
      cmocka_unit_test_teardown(test_allocation_failures, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
