/* profilis-collector: command line, start-up and the signal loop. Start order is metrics,
 * pipeline, receivers, admin, then readiness; every signal is blocked before the first thread
 * starts and read from a signalfd by the main thread, so handlers never run in odd places.
 * SIGHUP parses the config file again and hands a valid one to pc_pipeline_reload (a bad one
 * is logged and the running one kept); SIGTERM/SIGINT turn readiness off, stop the receivers,
 * drain the pipeline within limits.drain_timeout and exit 0. */
#define _GNU_SOURCE
#include <errno.h>
#include <malloc.h>
#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "pc_config.h"
#include "pc_log.h"
#include "pc_metrics.h"
#include "pc_pipeline.h"
#include "pc_receivers.h"
#include "pf_log.h"
#include "profilis/common.h"

#define DEFAULT_DATA_DIR "./profilis-data"

typedef enum command { CMD_RUN, CMD_VALIDATE, CMD_VERSION, CMD_HELP, CMD_DOC } command;

typedef struct cli {
  command cmd;
  const char *config, *data_dir, *grpc_ep, *http_ep, *admin_ep;
} cli;

typedef struct collector {
  const cli *o;
  pc_config *boot; /* what receivers and admin were started with; kept until exit */
  pc_config *cur;  /* the latest applied configuration (== boot until a reload) */
  pc_metrics *metrics;
  pc_pipeline *pipeline;
  pc_grpc_receiver *grpc;
  pc_http_receiver *http;
  pc_admin *admin;
  pc_admin_sources admin_src;
  atomic_bool ready;
} collector;

static void usage(FILE *f) {
  fprintf(f,
          "usage: profilis-collector [options]\n"
          "       profilis-collector validate --config FILE\n"
          "Receives OTLP traces (gRPC and HTTP) and routes them to the configured exporters.\n"
          "  --config FILE          YAML configuration (default: the embedded one, see "
          "--config-doc)\n"
          "  --data-dir DIR         directory for JSONL output that the config puts in %s\n"
          "  --grpc-endpoint H:P    OTLP/gRPC listen address (default 127.0.0.1:4317)\n"
          "  --http-endpoint H:P    OTLP/HTTP listen address (default 127.0.0.1:4318)\n"
          "  --admin-endpoint H:P   /metrics, /healthz, /readyz (default 127.0.0.1:8888)\n"
          "  --config-doc           print the configuration reference (markdown)\n"
          "  --version              print the version\n"
          "  --help                 this text\n"
          "Signals: SIGHUP reloads the config file, SIGTERM/SIGINT drain and stop.\n"
          "validate exits 0 when FILE is valid, else 1 listing every error.\n",
          DEFAULT_DATA_DIR);
}

/* ---- command line ---- */

/* Matches "--name VALUE" and "--name=VALUE"; advances *i past what it used. Returns 1 when
 * matched (*val set, NULL when the value is missing), 0 otherwise. */
static int opt_value(int argc, char **argv, int *i, const char *name, const char **val) {
  const char *a = argv[*i];
  size_t n = strlen(name);
  if (strncmp(a, name, n) != 0) return 0;
  if (a[n] == '=') {
    *val = a + n + 1;
    return 1;
  }
  if (a[n] != '\0') return 0;
  *val = *i + 1 < argc ? argv[++*i] : NULL;
  return 1;
}

/* Returns 0, or -1 for bad usage (message printed). */
static int parse_endpoint_opt(const char *name, const char *v, const char **dst) {
  char host[256];
  uint16_t port;
  if (!v || !*v || pc_parse_endpoint(v, host, sizeof host, &port)) {
    fprintf(stderr, "profilis-collector: %s needs HOST:PORT, got '%s'\n", name, v ? v : "");
    return -1;
  }
  *dst = v;
  return 0;
}

static int parse_one(cli *o, int argc, char **argv, int *i) {
  const char *a = argv[*i], *v = NULL;
  if (!strcmp(a, "--help") || !strcmp(a, "-h")) return o->cmd = CMD_HELP, 0;
  if (!strcmp(a, "--version")) return o->cmd = CMD_VERSION, 0;
  if (!strcmp(a, "--config-doc")) return o->cmd = CMD_DOC, 0;
  if (!strcmp(a, "validate") && *i == 1) return o->cmd = CMD_VALIDATE, 0;
  if (opt_value(argc, argv, i, "--config", &v)) return v && *v ? (o->config = v, 0) : -1;
  if (opt_value(argc, argv, i, "--data-dir", &v)) return v && *v ? (o->data_dir = v, 0) : -1;
  if (opt_value(argc, argv, i, "--grpc-endpoint", &v))
    return parse_endpoint_opt("--grpc-endpoint", v, &o->grpc_ep);
  if (opt_value(argc, argv, i, "--http-endpoint", &v))
    return parse_endpoint_opt("--http-endpoint", v, &o->http_ep);
  if (opt_value(argc, argv, i, "--admin-endpoint", &v))
    return parse_endpoint_opt("--admin-endpoint", v, &o->admin_ep);
  if (o->cmd == CMD_VALIDATE && a[0] != '-' && !o->config) return o->config = a, 0;
  fprintf(stderr, "profilis-collector: unknown argument '%s'\n", a);
  return -1;
}

static int parse_cli(cli *o, int argc, char **argv) {
  *o = (cli){.cmd = CMD_RUN};
  for (int i = 1; i < argc; i++)
    if (parse_one(o, argc, argv, &i)) return -1;
  if (o->cmd == CMD_VALIDATE && !o->config) {
    fprintf(stderr, "profilis-collector: validate needs --config FILE\n");
    return -1;
  }
  return 0;
}

/* ---- configuration: load, then the command line's overrides ---- */

static int replace_str(char **slot, const char *v) {
  char *s = strdup(v);
  if (!s) return PROFILIS_ENOMEM;
  free(*slot);
  *slot = s;
  return 0;
}

/* True when path lies directly in the default data directory ("./profilis-data/x" or
 * "profilis-data/x"); *base gets the file name. */
static bool in_default_dir(const char *path, const char **base) {
  const char *dir = DEFAULT_DATA_DIR "/";
  if (!path) return false;
  if (!strncmp(path, dir, strlen(dir)))
    *base = path + strlen(dir);
  else if (!strncmp(path, dir + 2, strlen(dir) - 2))
    *base = path + strlen(dir) - 2;
  else
    return false;
  return **base && !strchr(*base, '/');
}

/* --data-dir: moves JSONL files the config puts in the default data directory. */
static int apply_data_dir(pc_config *c, const char *data_dir) {
  size_t moved = 0;
  for (size_t i = 0; i < c->n_exporters; i++) {
    pc_exporter_cfg *e = &c->exporters[i];
    const char *base;
    if (e->type != PC_EXPORTER_JSONL || !in_default_dir(e->path, &base)) continue;
    size_t n = strlen(data_dir) + 1 + strlen(base) + 1;
    char *p = malloc(n);
    if (!p) return PROFILIS_ENOMEM;
    snprintf(p, n, "%s/%s", data_dir, base);
    free(e->path);
    e->path = p;
    moved++;
  }
  if (!moved)
    pf_log(PF_LOG_WARN, "--data-dir %s: no jsonl exporter writes to %s, nothing moved", data_dir,
           DEFAULT_DATA_DIR);
  return 0;
}

static int apply_overrides(const cli *o, pc_config *c) {
  int rc = 0;
  if (o->grpc_ep) rc = replace_str(&c->grpc_endpoint, o->grpc_ep);
  if (!rc && o->http_ep) rc = replace_str(&c->http_endpoint, o->http_ep);
  if (!rc && o->admin_ep) rc = replace_str(&c->admin_endpoint, o->admin_ep);
  if (!rc && o->data_dir) rc = apply_data_dir(c, o->data_dir);
  return rc;
}

/* The file named by --config, else the embedded default, with the overrides applied. Returns
 * as pc_config_load; the errors are in errs. */
static int load_config(const cli *o, pc_config **out, pc_errors *errs) {
  int rc;
  if (o->config) {
    rc = pc_config_load(o->config, out, errs);
  } else {
    const char *y = pc_config_default_yaml();
    rc = pc_config_parse(y, strlen(y), "<default>", out, errs);
  }
  if (!rc) rc = apply_overrides(o, *out);
  if (rc && *out) {
    pc_config_free(*out);
    *out = NULL;
  }
  return rc;
}

static int cmd_validate(const cli *o) {
  pc_config *c = NULL;
  pc_errors errs = {0};
  int rc = pc_config_load(o->config, &c, &errs);
  if (rc) {
    for (size_t i = 0; i < errs.n; i++) fprintf(stderr, "%s\n", errs.msgs[i]);
    if (!errs.n) fprintf(stderr, "%s: %s\n", o->config, profilis_strerror(rc));
  } else {
    printf("%s: ok (%zu exporters, route: %zu, tenants: %zu)\n", o->config, c->n_exporters,
           c->n_route, c->n_tenants);
  }
  pc_errors_free(&errs);
  pc_config_free(c);
  return rc ? 1 : 0;
}

/* ---- reload ---- */

typedef enum field_kind { F_STR, F_U64, F_U32, F_BOOL, F_TLS } field_kind;

/* Settings bound at start (sockets, servers): a reload cannot change them. */
static const struct restart_field {
  const char *key;
  size_t off;
  field_kind kind;
} restart_fields[] = {
    {"receivers.otlp.grpc", offsetof(pc_config, grpc_enabled), F_BOOL},
    {"receivers.otlp.grpc.endpoint", offsetof(pc_config, grpc_endpoint), F_STR},
    {"receivers.otlp.grpc.max_recv_msg_size", offsetof(pc_config, grpc_max_recv_msg_size), F_U64},
    {"receivers.otlp.grpc.max_concurrent_streams", offsetof(pc_config, grpc_max_concurrent_streams),
     F_U32},
    {"receivers.otlp.grpc.keepalive.time", offsetof(pc_config, grpc_keepalive_time_ms), F_U32},
    {"receivers.otlp.grpc.keepalive.timeout", offsetof(pc_config, grpc_keepalive_timeout_ms),
     F_U32},
    {"receivers.otlp.grpc.tls", offsetof(pc_config, grpc_tls), F_TLS},
    {"receivers.otlp.http", offsetof(pc_config, http_enabled), F_BOOL},
    {"receivers.otlp.http.endpoint", offsetof(pc_config, http_endpoint), F_STR},
    {"receivers.otlp.http.max_body_size", offsetof(pc_config, http_max_body_size), F_U64},
    {"receivers.otlp.http.max_connections", offsetof(pc_config, http_max_connections), F_U32},
    {"receivers.otlp.http.read_timeout", offsetof(pc_config, http_read_timeout_ms), F_U32},
    {"receivers.otlp.http.tls", offsetof(pc_config, http_tls), F_TLS},
    {"admin.endpoint", offsetof(pc_config, admin_endpoint), F_STR},
};

static bool str_eq(const char *a, const char *b) {
  if (!a || !b) return a == b;
  return !strcmp(a, b);
}

static bool field_eq(const void *a, const void *b, field_kind k) {
  switch (k) {
  case F_STR:
    return str_eq(*(char *const *)a, *(char *const *)b);
  case F_U64:
    return *(const uint64_t *)a == *(const uint64_t *)b;
  case F_U32:
    return *(const uint32_t *)a == *(const uint32_t *)b;
  case F_BOOL:
    return *(const bool *)a == *(const bool *)b;
  case F_TLS: {
    const pc_tls_cfg *x = a, *y = b;
    return str_eq(x->cert_file, y->cert_file) && str_eq(x->key_file, y->key_file) &&
           str_eq(x->client_ca_file, y->client_ca_file);
  }
  }
  return true;
}

static void warn_restart_fields(const pc_config *running, const pc_config *next) {
  for (size_t i = 0; i < sizeof restart_fields / sizeof restart_fields[0]; i++) {
    const struct restart_field *f = &restart_fields[i];
    if (!field_eq((const char *)running + f->off, (const char *)next + f->off, f->kind))
      pf_log(PF_LOG_WARN, "reload: %s changed: it takes effect after a restart; ignored", f->key);
  }
}

static void reload(collector *st) {
  const char *src = st->o->config;
  if (!src) {
    pf_log(PF_LOG_INFO, "SIGHUP: running on the embedded default config; nothing to reload");
    return;
  }
  pc_config *next = NULL;
  pc_errors errs = {0};
  int rc = load_config(st->o, &next, &errs);
  if (rc) {
    pf_log(PF_LOG_ERROR, "reload: %s rejected (%s); keeping the running configuration", src,
           profilis_strerror(rc));
    pc_log_errors(PF_LOG_ERROR, "reload", &errs);
    goto out;
  }
  warn_restart_fields(st->boot, next);
  rc = pc_pipeline_reload(st->pipeline, next);
  if (rc) {
    pf_log(PF_LOG_ERROR,
           "reload: %s: the pipeline refused it (%s); keeping the running "
           "configuration",
           src, profilis_strerror(rc));
    goto out;
  }
  pc_log_apply(next);
  if (st->cur != st->boot) pc_config_free(st->cur);
  st->cur = next;
  next = NULL;
  pf_log(PF_LOG_INFO, "reload: %s applied", src);
out:
  pc_config_free(next);
  pc_errors_free(&errs);
}

/* ---- start and stop ---- */

static const char *or_default(const char *s, const char *def) { return s ? s : def; }

static int start(collector *st) {
  const pc_config *c = st->boot;
  int rc = pc_metrics_new(&st->metrics);
  if (!rc) rc = pc_pipeline_new(&st->pipeline, c, st->metrics);
  if (!rc && c->grpc_enabled) rc = pc_grpc_receiver_start(&st->grpc, c, st->pipeline, st->metrics);
  if (!rc && c->http_enabled) rc = pc_http_receiver_start(&st->http, c, st->pipeline, st->metrics);
  st->admin_src =
      (pc_admin_sources){.metrics = st->metrics, .pipeline = st->pipeline, .ready = &st->ready};
  if (!rc) rc = pc_admin_start(&st->admin, c, &st->admin_src);
  if (rc) {
    pf_log(PF_LOG_ERROR, "start-up failed: %s", profilis_strerror(rc));
    return rc;
  }
  atomic_store(&st->ready, true);
  pf_log(PF_LOG_INFO,
         "profilis-collector %s ready (config %s): OTLP/gRPC %s, OTLP/HTTP %s, admin "
         "http://%s/ (/metrics /healthz /readyz)",
         PROFILIS_VERSION, or_default(c->source, "<default>"),
         c->grpc_enabled ? or_default(c->grpc_endpoint, "127.0.0.1:4317") : "off",
         c->http_enabled ? or_default(c->http_endpoint, "127.0.0.1:4318") : "off",
         or_default(c->admin_endpoint, "127.0.0.1:8888"));
  return 0;
}

/* Stops in the reverse order: no new data first, then the drain, then the admin port. */
static void stop(collector *st) {
  atomic_store(&st->ready, false);
  if (st->grpc) pc_grpc_receiver_stop(st->grpc);
  if (st->http) pc_http_receiver_stop(st->http);
  st->grpc = NULL;
  st->http = NULL;
  if (st->pipeline) {
    uint32_t ms = st->cur->drain_timeout_ms;
    pf_log(PF_LOG_INFO, "draining the pipeline (up to %u ms)", ms);
    pc_pipeline_drain(st->pipeline, ms);
  }
  if (st->admin) pc_admin_stop(st->admin);
  pc_pipeline_free(st->pipeline);
  pc_metrics_free(st->metrics);
  if (st->cur != st->boot) pc_config_free(st->cur);
  pc_config_free(st->boot);
}

/* Blocks the signals the loop handles (before any thread exists, so every thread inherits the
 * mask) and returns a signalfd for them, or -1. */
static int signals_setup(void) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGHUP);
  signal(SIGPIPE, SIG_IGN); /* a peer closing a socket is an error return, not a death */
  if (pthread_sigmask(SIG_BLOCK, &set, NULL)) return -1;
  return signalfd(-1, &set, SFD_CLOEXEC);
}

/* Waits for signals until SIGTERM or SIGINT; SIGHUP reloads. */
static void signal_loop(collector *st, int sfd) {
  for (;;) {
    struct signalfd_siginfo si;
    ssize_t n = read(sfd, &si, sizeof si);
    if (n < 0 && errno == EINTR) continue;
    if (n != (ssize_t)sizeof si) {
      pf_log(PF_LOG_ERROR, "signalfd: %s; stopping", strerror(errno));
      return;
    }
    if (si.ssi_signo == SIGHUP) {
      reload(st);
      continue;
    }
    pf_log(PF_LOG_INFO, "%s received: stopping", si.ssi_signo == SIGINT ? "SIGINT" : "SIGTERM");
    return;
  }
}

static int cmd_run(const cli *o) {
  collector st = {.o = o};
  pf_log_configure(PF_LOG_INFO, false); /* until the config says otherwise */
  int sfd = signals_setup();
  if (sfd < 0) {
    pf_log(PF_LOG_ERROR, "cannot set up signal handling: %s", strerror(errno));
    return 1;
  }
  pc_errors errs = {0};
  int rc = load_config(o, &st.boot, &errs);
  if (rc) {
    pf_log(PF_LOG_ERROR, "configuration %s: %s", or_default(o->config, "<default>"),
           profilis_strerror(rc));
    pc_log_errors(PF_LOG_ERROR, "config", &errs);
    pc_errors_free(&errs);
    close(sfd);
    return 1;
  }
  st.cur = st.boot;
  pc_log_apply(st.boot);
  rc = start(&st);
  if (!rc) signal_loop(&st, sfd);
  stop(&st);
  close(sfd);
  pf_log(PF_LOG_INFO, "stopped");
  return rc ? 1 : 0;
}

/* Decoded requests are freed in bursts, a batch at a time and by another thread than the one
 * that allocated them. With glibc's adaptive defaults each burst left more than the trim
 * threshold free at the top of the receiver's arena, which went back to the kernel, and the
 * next requests faulted the same pages in again (a few hundred faults a second at 10k spans/s).
 * Fixed thresholds keep up to 1 MiB free per arena for reuse; larger blocks are mapped and
 * unmapped as they come and go. After a burst the pipeline gives the rest back (malloc_trim,
 * pipeline.c). */
static void tune_malloc(void) {
  mallopt(M_MMAP_THRESHOLD, 1 << 20);
  mallopt(M_TRIM_THRESHOLD, 1 << 20);
}

int main(int argc, char **argv) {
  cli o;
  tune_malloc();
  if (parse_cli(&o, argc, argv)) {
    usage(stderr);
    return 2;
  }
  switch (o.cmd) {
  case CMD_HELP:
    usage(stdout);
    return 0;
  case CMD_VERSION:
    printf("profilis-collector %s\n", PROFILIS_VERSION);
    return 0;
  case CMD_DOC:
    pc_config_write_doc(stdout);
    return 0;
  case CMD_VALIDATE:
    return cmd_validate(&o);
  case CMD_RUN:
    break;
  }
  return cmd_run(&o);
}
