/* Collector configuration: the YAML file (or the embedded default) parsed into one struct.
 * Parsing, defaults, validation and the README reference all come from one declarative table
 * in config.c. Every error names file:line:column and the key. Internal. */
#ifndef PC_CONFIG_H
#define PC_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define PC_TENANT_ID_MAX 150

typedef struct pc_tls_cfg {
  char *cert_file;      /* PEM; TLS is on when set */
  char *key_file;       /* PEM */
  char *client_ca_file; /* receivers: require and verify client certificates (mTLS) */
  char *ca_file;        /* exporters: CAs that verify the backend */
  bool insecure;        /* exporters: plaintext even without http:// */
} pc_tls_cfg;

typedef struct pc_header_cfg {
  char *key; /* lowercase */
  char *value;
} pc_header_cfg;

typedef enum pc_exporter_type {
  PC_EXPORTER_JSONL = 1,
  PC_EXPORTER_OTLP = 2,
  PC_EXPORTER_PROMETHEUS = 3,
  PC_EXPORTER_LOADBALANCING = 4, /* otlp to one of several backends by trace id */
} pc_exporter_type;

typedef enum pc_fsync_policy { PC_FSYNC_NEVER = 0, PC_FSYNC_BATCH, PC_FSYNC_INTERVAL } pc_fsync_policy;

typedef struct pc_exporter_cfg {
  char *name; /* "type" or "type/label", e.g. "jsonl/main", "otlp/tempo", "prometheus" */
  pc_exporter_type type;
  uint32_t batch_size;       /* spans per export (default 512) */
  uint32_t batch_timeout_ms; /* export a partial batch after this (default 200) */
  uint32_t timeout_ms;       /* one export attempt (default 10s) */
  /* jsonl */
  char *path;                /* default ./profilis-data/spans.jsonl */
  bool format_otlp;          /* format: otlp (one OTLP/JSON request per line) vs span */
  uint64_t rotate_max_bytes; /* 0 = never */
  uint32_t rotate_max_age_ms;/* 0 = never */
  uint32_t max_backups;      /* rotated files kept (default 5) */
  uint64_t preallocate_bytes;/* largest preallocation step (default 8 MiB); 0 = off */
  uint32_t flush_interval_ms;/* default 1000 */
  pc_fsync_policy fsync;
  /* otlp */
  char *endpoint;
  pc_header_cfg *headers;
  size_t n_headers;
  bool gzip;
  pc_tls_cfg tls;
  uint32_t retry_initial_ms; /* default 100 */
  uint32_t retry_max_ms;     /* default 5000 */
  uint32_t retry_max_elapsed_ms; /* default 60000: then the batch counts as failed */
  /* prometheus (span metrics) */
  double *buckets_ms; /* ascending; default 2,4,6,8,10,50,100,200,400,800,1000,1400,2000,5000,10000,15000 */
  size_t n_buckets;
  uint32_t max_series; /* label sets per metric before the overflow series (default 10000) */
  /* circuit breaker (jsonl, otlp): see pc_breaker.h */
  bool breaker_enabled;          /* default true */
  uint32_t breaker_failures;     /* consecutive failures that trip it (5); 0 = off */
  double breaker_failure_ratio;  /* failures/calls over the window that trip it (0.5); 0 = off */
  uint32_t breaker_min_calls;    /* calls the window holds before the ratio counts (20) */
  uint32_t breaker_window_ms;    /* sliding window (30s) */
  uint32_t breaker_open_ms;      /* first cool-down (1s), doubling per repeated trip */
  uint32_t breaker_open_max_ms;  /* cap of the cool-down (30s) */
  double breaker_jitter;         /* random fraction of the cool-down (0.2) */
  uint32_t breaker_probes;       /* calls let through at once while half-open (1) */
  uint32_t breaker_close_after;  /* probe successes that close it (1) */
  /* durable queue (jsonl, otlp): see pc_dqueue.h */
  bool queue_enabled;            /* default false */
  char *queue_directory;         /* root; a slot's queue is <root>/<exporter>/<tenant or _> */
  uint64_t queue_max_bytes;      /* default 1GiB */
  int queue_full;                /* pc_dq_full_policy (default drop_oldest) */
  bool queue_fsync;              /* sync every commit (default true) */
  /* loadbalancing (with the otlp keys above except endpoint): one resolver */
  char *lb_hostname;       /* resolver.hostname: A/AAAA records are the backends */
  uint32_t lb_port;        /* resolver.port (4317) */
  uint32_t lb_interval_ms; /* resolver.interval (5s) */
  char **lb_static;        /* resolver.static: backends as written */
  size_t n_lb_static;
  /* derived: path, endpoint or a header value contains ${tenant}, so the exporter runs once
   * per tenant on whose route it is, with ${tenant} replaced by the tenant id */
  bool templated;
} pc_exporter_cfg;

typedef enum pc_rule_action {
  PC_RULE_KEEP = 1,
  PC_RULE_DROP = 2,
  PC_RULE_PROBABILITY = 3,
} pc_rule_action;

/* One sampling rule of a tenant: conditions (NULL = any), first match wins. */
typedef struct pc_rule_cfg {
  char *service, *span_name, *route, *attr_key, *attr_value;
  int action; /* pc_rule_action */
  double probability;
} pc_rule_cfg;

typedef struct pc_tenant_cfg {
  char *id; /* Tempo's rule: <= 150 bytes of [0-9a-zA-Z!-_.*'()], not "." or ".." */
  char **tokens; /* bearer tokens, inline ones then token_file's lines */
  size_t n_tokens;
  char *token_file;
  char **subjects; /* mTLS client certificate subjects (RFC 2253 text) */
  size_t n_subjects;
  uint32_t rate_spans;       /* spans/s; 0 = unlimited */
  uint32_t rate_spans_burst; /* 0 = one second's worth */
  uint64_t rate_bytes;       /* bytes/s; 0 = unlimited */
  uint64_t rate_bytes_burst; /* 0 = one second's worth */
  /* sampling: target 0 = keep everything */
  double sampling_target; /* kept traces per second */
  double sampling_min_probability;
  bool sampling_keep_errors;
  uint32_t sampling_latency_ms; /* 0 = off */
  pc_rule_cfg *rules;
  size_t n_rules;
  char **route; /* exporters; NULL (n_route 0) = service.exporters */
  size_t n_route;
} pc_tenant_cfg;

typedef struct pc_config {
  char *source; /* file name or "<default>" */
  /* receivers.otlp.grpc */
  bool grpc_enabled;
  char *grpc_endpoint; /* default 127.0.0.1:4317 */
  uint64_t grpc_max_recv_msg_size; /* default 16MiB */
  uint32_t grpc_max_concurrent_streams; /* default 128 */
  uint32_t grpc_max_connections;        /* default 1024 */
  uint32_t grpc_keepalive_time_ms;      /* default 2h */
  uint32_t grpc_keepalive_timeout_ms;   /* default 20s */
  pc_tls_cfg grpc_tls;
  /* receivers.otlp.http */
  bool http_enabled;
  char *http_endpoint; /* default 127.0.0.1:4318 */
  uint64_t http_max_body_size; /* default 16MiB */
  uint32_t http_max_connections; /* default 1024 */
  uint32_t http_read_timeout_ms; /* default 30s: idle/slow connections are closed */
  pc_tls_cfg http_tls;
  /* admin */
  char *admin_endpoint; /* default 127.0.0.1:8888 */
  /* limits */
  uint64_t memory_limit;    /* bytes of spans in flight and queued; default 256MiB */
  uint32_t retry_after_ms;  /* advertised to refused clients; default 1000 */
  uint32_t drain_timeout_ms;/* SIGTERM: time to deliver what was accepted; default 30s */
  /* log */
  int log_level;   /* PF_LOG_* */
  bool log_json;
  /* tenancy: how requests are recognised */
  char *tenant_header;    /* gRPC metadata / HTTP header naming the tenant (x-scope-orgid) */
  char *tenant_attribute; /* resource attribute naming the tenant; NULL = not used */
  char *default_tenant;   /* tenant of requests that name none; NULL = refuse them (401) */
  pc_tenant_cfg *tenants;
  size_t n_tenants;
  /* sampling (global): the decision window shared by every tenant */
  uint32_t sampling_wait_ms;       /* 5s */
  uint32_t sampling_max_traces;    /* 100000 */
  uint64_t sampling_max_bytes;     /* 64MiB */
  uint32_t sampling_decided_cache; /* 65536 */
  uint32_t sampling_adjust_ms;     /* 1s */
  double sampling_load_start;      /* 0.6 */
  double sampling_load_floor;      /* 0.1 */
  /* exporters and the route every span takes (a tenant may name its own) */
  pc_exporter_cfg *exporters;
  size_t n_exporters;
  char **route; /* exporter names */
  size_t n_route;
} pc_config;

/* Every error found, each "file:line:col: key: message". */
typedef struct pc_errors {
  char **msgs;
  size_t n;
} pc_errors;
void pc_errors_add(pc_errors *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void pc_errors_free(pc_errors *e);

/* The embedded default configuration (YAML text). */
const char *pc_config_default_yaml(void);
/* Parses YAML text (`name` is used in error messages). ${env:NAME} is substituted in scalar
 * values (an unset variable is an error). Returns 0, or PROFILIS_EINVAL with every problem in
 * errs (and *out NULL), or PROFILIS_ENOMEM. */
int pc_config_parse(const char *yaml, size_t len, const char *name, pc_config **out,
                    pc_errors *errs);
/* Reads and parses a file. Returns as pc_config_parse, or PROFILIS_EIO (reason in errs). */
int pc_config_load(const char *path, pc_config **out, pc_errors *errs);
void pc_config_free(pc_config *c);
/* Finds an exporter by name or returns NULL. */
const pc_exporter_cfg *pc_config_exporter(const pc_config *c, const char *name);
/* Finds a tenant by id or returns NULL. */
const pc_tenant_cfg *pc_config_tenant(const pc_config *c, const char *id);
/* The route of a tenant (its own, else service.exporters); tenant may be NULL. */
char *const *pc_config_route_of(const pc_config *c, const pc_tenant_cfg *t, size_t *n);
/* True when id is a valid tenant id (Tempo's rule). */
bool pc_tenant_id_valid(const char *id, size_t len);
/* Copies cfg into dst with every ${tenant} in path, endpoint and header values replaced by
 * tenant (deep copy; free with pc_exporter_cfg_free). Returns 0 or PROFILIS_ENOMEM. */
int pc_exporter_cfg_expand(pc_exporter_cfg *dst, const pc_exporter_cfg *cfg, const char *tenant);
void pc_exporter_cfg_free(pc_exporter_cfg *c);
/* Writes the configuration reference (markdown) generated from the table. */
void pc_config_write_doc(FILE *f);

#endif
