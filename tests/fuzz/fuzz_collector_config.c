/* libFuzzer harness for the collector's configuration parser: the input is YAML text handed to
 * pc_config_parse (libyaml events -> tree -> tables). Whatever the bytes, the parser must return
 * cleanly; a config it accepts must be consistent (every route entry resolves, histogram bounds
 * ascend, required strings are set) and come without errors, and a refusal must say why. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pc_config.h"
#include "profilis/common.h"

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  setenv("PCF_TOKEN", "fuzz-token", 1); /* something for ${env:PCF_TOKEN} to find */
  return 0;
}

static void check_exporter(const pc_exporter_cfg *e) {
  if (!e->name || !e->path) abort();
  if (e->type == PC_EXPORTER_OTLP && !e->endpoint) abort();
  if (e->n_buckets == 0 || !e->buckets_ms) abort();
  for (size_t i = 1; i < e->n_buckets; i++)
    if (!(e->buckets_ms[i] > e->buckets_ms[i - 1])) abort();
  for (size_t i = 0; i < e->n_headers; i++)
    if (!e->headers[i].key || !e->headers[i].value) abort();
}

static void check_config(const pc_config *c) {
  if (!c->grpc_endpoint || !c->http_endpoint || !c->admin_endpoint) abort();
  if (!c->grpc_enabled && !c->http_enabled) abort();
  if (c->n_route == 0 || c->n_exporters == 0 || c->n_exporters > 256) abort();
  for (size_t i = 0; i < c->n_route; i++)
    if (!pc_config_exporter(c, c->route[i])) abort();
  for (size_t i = 0; i < c->n_exporters; i++) check_exporter(&c->exporters[i]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  pc_config *c = NULL;
  pc_errors errs = {0};
  int rc = pc_config_parse((const char *)data, size, "fuzz.yaml", &c, &errs);
  if (rc == 0) {
    if (!c || errs.n) abort();
    check_config(c);
  } else if (c || (rc == PROFILIS_EINVAL && errs.n == 0)) {
    abort();
  }
  pc_config_free(c);
  pc_errors_free(&errs);
  return 0;
}
