/* libFuzzer harness for the configuration parsers: the input is an environment, one NAME=VALUE
 * per line, fed to pf_config_resolve_with through a fake getenv; the resolved config then builds
 * a resource and takes a sampling decision. Every parser in config.c and resource.c (numbers,
 * sizes, ratios, enums, booleans, "k=v" lists with percent-encoding) sees the bytes. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pf_exporter.h"

#define MAX_VARS 64

static struct {
  char *name, *value;
} vars[MAX_VARS];
static size_t n_vars;

static const char *fake_getenv(const char *name) {
  for (size_t i = n_vars; i-- > 0;) /* the last definition wins, as in a shell */
    if (strcmp(vars[i].name, name) == 0) return vars[i].value;
  return NULL;
}

/* Splits a copy of the input into NAME=VALUE lines (in place). */
static void load_env(char *buf) {
  n_vars = 0;
  for (char *line = buf; line && n_vars < MAX_VARS;) {
    char *next = strchr(line, '\n');
    if (next) *next++ = '\0';
    char *eq = strchr(line, '=');
    if (eq) {
      *eq = '\0';
      vars[n_vars].name = line;
      vars[n_vars].value = eq + 1;
      n_vars++;
    }
    line = next;
  }
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  setenv("PROFILIS_LOG_LEVEL", "none", 1); /* warnings are expected by the thousand */
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *buf = malloc(size + 1);
  if (!buf) return 0;
  memcpy(buf, data, size);
  buf[size] = '\0';
  load_env(buf);

  pf_config c;
  if (pf_config_resolve_with(&c, NULL, fake_getenv) == 0) {
    pf_resource r;
    if (pf_resource_build(&r, &c) == 0) {
      size_t off = 0;
      pf_attr_view v = {0};
      while (pf_attr_next(r.attrs.p, r.attrs.len, &off, &v)) {
      }
      if (off != r.attrs.len) abort(); /* the section must decode completely */
      pf_resource_free(&r);
    }
    uint8_t id[16];
    memset(id, 0xa5, sizeof id);
    (void)pf_sampler_should_sample(&c, NULL, id);
    if (c.o.max_export_batch_size > c.o.max_queue_size || c.o.max_queue_size == 0) abort();
    if (!(c.o.sampler_ratio >= 0.0 && c.o.sampler_ratio <= 1.0)) abort();
    pf_config_free(&c);
  }
  free(buf);
  return 0;
}
