/* Validates collector configuration files the way `profilis-collector validate` does: each file
 * is loaded with pc_config_load and must come out without a single error. With
 * --same-as-default FILE, FILE must also be byte for byte the embedded default, so the shipped
 * example cannot drift from what the binary runs. Exit 0, or 1 with every error on stderr. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pc_config.h"

/* Returns 0 when the file holds exactly the embedded default text. */
static int same_as_default(const char *path) {
  const char *want = pc_config_default_yaml();
  size_t n = strlen(want);
  char *buf = malloc(n + 2);
  FILE *f = fopen(path, "rb");
  size_t got = f && buf ? fread(buf, 1, n + 1, f) : 0;
  int rc = got == n && memcmp(buf, want, n) == 0 ? 0 : 1;
  if (rc) fprintf(stderr, "%s: differs from the embedded default (pc_config_default_yaml)\n", path);
  if (f) fclose(f);
  free(buf);
  return rc;
}

static int check(const char *path) {
  pc_config *cfg = NULL;
  pc_errors errs = {0};
  int rc = pc_config_load(path, &cfg, &errs);
  for (size_t i = 0; i < errs.n; i++) fprintf(stderr, "%s\n", errs.msgs[i]);
  if (!rc) printf("%s: ok (%zu exporters, route of %zu)\n", path, cfg->n_exporters, cfg->n_route);
  pc_config_free(cfg);
  pc_errors_free(&errs);
  return rc ? 1 : 0;
}

int main(int argc, char **argv) {
  int failed = 0, files = 0;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--same-as-default") && i + 1 < argc) {
      failed |= same_as_default(argv[++i]);
      continue;
    }
    failed |= check(argv[i]);
    files++;
  }
  if (!files) {
    fprintf(stderr, "usage: %s [--same-as-default FILE] FILE...\n", argv[0]);
    return 2;
  }
  return failed;
}
