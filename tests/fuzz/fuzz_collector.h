/* What the fuzz targets that run a real collector receiver share: a discarding exporter that
 * checks every span record it is handed, a free loopback port for the receiver to listen on,
 * and the config, metrics and pipeline built once from a YAML text. Everything started here
 * lives for the whole process: libFuzzer exits it. */
#ifndef PF_FUZZ_COLLECTOR_H
#define PF_FUZZ_COLLECTOR_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fuzz_check.h"
#include "pc_config.h"
#include "pc_exporter.h"
#include "pc_metrics.h"
#include "pc_pipeline.h"
#include "pf_log.h"
#include "pf_record.h"
#include "profilis/common.h"

static int fuzz_discard_export(pc_exporter *e, pc_chunk *const *chunks, size_t n,
                               const pf_deadline *dl, uint64_t *rejected) {
  (void)e, (void)dl;
  for (size_t i = 0; i < n; i++)
    for (uint32_t j = 0; j < chunks[i]->n_spans; j++)
      CHECK(pf_rec_sections_fit(chunks[i]->spans[j]));
  *rejected = 0;
  return 0;
}

static void fuzz_discard_destroy(pc_exporter *e) { free(e); }

static int fuzz_discard_factory(pc_exporter **out, const pc_exporter_cfg *cfg, void *arg) {
  (void)arg;
  pc_exporter *e = calloc(1, sizeof *e);
  if (!e) return PROFILIS_ENOMEM;
  e->cfg = cfg;
  e->export_chunks = fuzz_discard_export;
  e->destroy = fuzz_discard_destroy;
  *out = e;
  return 0;
}

/* A loopback port nobody listens on now: bind port 0, read what the kernel chose, close. */
static uint16_t fuzz_free_port(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t l = sizeof a;
  CHECK(fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0);
  CHECK(getsockname(fd, (struct sockaddr *)&a, &l) == 0);
  close(fd);
  return ntohs(a.sin_port);
}

/* Parses yaml (errors printed, then a failed CHECK), quiets the log to errors and builds the
 * metrics and a pipeline whose every exporter is the discarding one. */
static void fuzz_collector_start(const char *yaml, pc_config **cfg, pc_metrics **m,
                                 pc_pipeline **p) {
  pc_errors errs = {0};
  int rc = pc_config_parse(yaml, strlen(yaml), "<fuzz>", cfg, &errs);
  for (size_t i = 0; i < errs.n; i++) fprintf(stderr, "config: %s\n", errs.msgs[i]);
  CHECK(rc == 0);
  pc_errors_free(&errs);
  pf_log_configure(PF_LOG_ERROR, false);
  CHECK(pc_metrics_new(m) == 0);
  CHECK(pc_pipeline_new_with(p, *cfg, *m, fuzz_discard_factory, NULL) == 0);
}

#endif
