/* Collector configuration: YAML text -> pc_config. One declarative table per section (the two
 * receivers, admin, limits, log, service, and one for exporters whose rows carry the exporter
 * types that take them) drives defaults, value parsing, bounds, freeing and the markdown
 * reference, so none of them can drift from the others. The walker visits the YAML tree once and
 * collects every error as "file:line:col: key.path: message"; rules that involve several keys run
 * after the walk, pointing at the key that was set (or at its section when it was not). */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pc_config.h"
#include "pc_dqueue.h"
#include "pf_buf.h"
#include "pf_log.h"
#include "profilis/common.h"
#include "yaml_util.h"

#define MAX_FILE_BYTES (1u << 20) /* a config file is refused above this */
#define MAX_DEPTH 32
#define MAX_NODES 100000
#define MAX_ANCHORS 256
#define MAX_ALIASES 4096
#define MAX_ERRORS 100
#define MAX_EXPORTERS 256
#define MAX_TENANTS 1024
#define MAX_RULES 256
#define MAX_TOKEN_FILE (1u << 20)
#define MAX_KEY 64            /* longer mapping keys are unknown by definition */
#define MAX_VALUE (64u << 10) /* a value after ${env:} substitution */

/* ---- the tables ---- */

typedef enum key_type {
  K_BOOL,      /* true / false */
  K_STRING,    /* owned char *; .min/.max bound the length */
  K_U32,       /* uint32_t within .min/.max */
  K_DURATION,  /* uint32_t milliseconds; bounds in ms */
  K_SIZE,      /* uint64_t bytes; bounds in bytes */
  K_ENUM,      /* one of .choices, stored in a bool or an int-sized field */
  K_DURATIONS, /* double * in ms, ascending, count at .off_n; bounds = item count */
  K_HEADERS,   /* pc_header_cfg *, count at .off_n; bounds = pair count */
  K_NAMES,     /* char **, count at .off_n; bounds = item count */
  K_NUMBER,    /* double within .min/.max (whole-number bounds) */
  K_STRINGS,   /* char **, count at .off_n; bounds = item count; each item as K_STRING with
                  .kind and at most 4096 bytes */
} key_type;

typedef struct key_choice {
  const char *name;
  int value;
} key_choice;

/* What a string must look like: the doc's name for it and its check (NULL = any text). */
typedef struct str_kind {
  const char *doc;
  const char *(*check)(const char *s);
} str_kind;

enum {
  F_REQUIRED = 1u << 0,    /* no default: the key must be written */
  F_EMPTY_UNSET = 1u << 1, /* string: empty or missing value leaves it unset (NULL) */
  F_TYPED_DEFAULT = 1u << 2, /* the default applies to the row's types only: another row of
                                the same key gives the other types theirs */
};

/* Exporter types as bits, for the rows of the exporter table. */
#define T_JSONL (1u << PC_EXPORTER_JSONL)
#define T_OTLP (1u << PC_EXPORTER_OTLP)
#define T_PROM (1u << PC_EXPORTER_PROMETHEUS)
#define T_LB (1u << PC_EXPORTER_LOADBALANCING)
#define T_GRPC (T_OTLP | T_LB)            /* rows of OTLP/gRPC senders */
#define T_THREAD (T_JSONL | T_OTLP | T_LB) /* rows of exporters with a thread */
#define T_TENANT (1u << 8) /* rows of one entry of `tenants` */
#define T_RULE (1u << 9)   /* rows of one sampling rule */

typedef struct cfg_key {
  const char *key; /* dotted path inside its section */
  key_type type;
  unsigned flags;
  unsigned types; /* exporter table: the exporter types that take this key */
  size_t off, width;
  size_t off_n; /* lists: where the item count goes */
  uint64_t min, max;
  const key_choice *choices;
  const str_kind *kind;
  const char *def; /* default, written as in the YAML file (lists: comma-separated) */
  const char *doc;
} cfg_key;

typedef struct cfg_section {
  const char *prefix; /* dotted path of the section; "" for the exporter table */
  const cfg_key *keys;
  size_t n_keys;
  const char *doc;
} cfg_section;

#define CFG(f) .off = offsetof(pc_config, f), .width = sizeof(((pc_config *)0)->f)
#define EXP(f) .off = offsetof(pc_exporter_cfg, f), .width = sizeof(((pc_exporter_cfg *)0)->f)
#define TEN(f) .off = offsetof(pc_tenant_cfg, f), .width = sizeof(((pc_tenant_cfg *)0)->f)
#define RULE(f) .off = offsetof(pc_rule_cfg, f), .width = sizeof(((pc_rule_cfg *)0)->f)
#define LEN(a) (sizeof(a) / sizeof((a)[0]))
#define MS_S 1000ull
#define MS_M (60 * MS_S)
#define MS_H (60 * MS_M)
#define KIB 1024ull
#define MIB (1024 * KIB)
#define GIB (1024 * MIB)

static const char *check_listen(const char *s);
static const char *check_target(const char *s);
static const str_kind SK_LISTEN = {"`host:port`", check_listen};
static const str_kind SK_TARGET = {"URL or `host:port`", check_target};
static const str_kind SK_PATH = {"file path", NULL};
static const char *check_tenant(const char *s);
static const char *check_token(const char *s);
static const char *check_header_name(const char *s);
static const str_kind SK_TENANT = {"tenant id", check_tenant};
static const str_kind SK_TOKEN = {"token", check_token};
static const str_kind SK_HEADER = {"header name", check_header_name};
static const char *check_hostname(const char *s);
static const str_kind SK_HOST = {"host name", check_hostname};

static const key_choice level_choices[] = {{"error", PF_LOG_ERROR},
                                           {"warn", PF_LOG_WARN},
                                           {"info", PF_LOG_INFO},
                                           {"debug", PF_LOG_DEBUG},
                                           {NULL, 0}};
static const key_choice log_format_choices[] = {{"text", 0}, {"json", 1}, {NULL, 0}};
static const key_choice jsonl_format_choices[] = {{"span", 0}, {"otlp", 1}, {NULL, 0}};
static const key_choice fsync_choices[] = {{"never", PC_FSYNC_NEVER},
                                           {"batch", PC_FSYNC_BATCH},
                                           {"interval", PC_FSYNC_INTERVAL},
                                           {NULL, 0}};
static const key_choice compression_choices[] = {{"none", 0}, {"gzip", 1}, {NULL, 0}};
static const key_choice queue_full_choices[] = {
#define PC__DQ_CHOICE(name, text) {text, PC_DQ_##name},
    PC_DQ_FULL_POLICY_MAP(PC__DQ_CHOICE)
#undef PC__DQ_CHOICE
    {NULL, 0}};
static const key_choice rule_action_choices[] = {{"keep", PC_RULE_KEEP},
                                                 {"drop", PC_RULE_DROP},
                                                 {"probability", PC_RULE_PROBABILITY},
                                                 {NULL, 0}};

/* The tables: one row per key reads better than clang-format's one line per field. The
 * receivers' TLS rows are the same for gRPC and HTTP. */
/* clang-format off */
/* f names a member (grpc_tls, http_tls); CFG() cannot take it in parentheses */
// NOLINTBEGIN(bugprone-macro-parentheses)
#define TLS_ROWS(f)                                                                                \
  {.key = "tls.cert_file", .type = K_STRING, .flags = F_EMPTY_UNSET, CFG(f.cert_file),             \
   .max = 4096, .kind = &SK_PATH, .doc = "server certificate chain (PEM); TLS is on when set"},    \
  {.key = "tls.key_file", .type = K_STRING, .flags = F_EMPTY_UNSET, CFG(f.key_file),               \
   .max = 4096, .kind = &SK_PATH, .doc = "private key of the certificate (PEM)"},                  \
  {.key = "tls.client_ca_file", .type = K_STRING, .flags = F_EMPTY_UNSET, CFG(f.client_ca_file),   \
   .max = 4096, .kind = &SK_PATH,                                                                  \
   .doc = "CA certificates (PEM) that client certificates must chain to; when set, every "         \
          "client must present one (mutual TLS)"}
// NOLINTEND(bugprone-macro-parentheses)

static const cfg_key grpc_keys[] = {
    {.key = "enabled", .type = K_BOOL, CFG(grpc_enabled), .def = "true",
     .doc = "start the OTLP/gRPC receiver"},
    {.key = "endpoint", .type = K_STRING, CFG(grpc_endpoint), .min = 1, .max = 256,
     .kind = &SK_LISTEN, .def = "127.0.0.1:4317",
     .doc = "address to listen on (`0.0.0.0:4317` for every interface, `[::1]:4317` for IPv6)"},
    {.key = "max_recv_msg_size", .type = K_SIZE, CFG(grpc_max_recv_msg_size), .min = KIB,
     .max = GIB, .def = "16MiB", .doc = "largest request message accepted"},
    {.key = "max_concurrent_streams", .type = K_U32, CFG(grpc_max_concurrent_streams), .min = 1,
     .max = 65536, .def = "128", .doc = "calls in progress at once on one connection"},
    {.key = "max_connections", .type = K_U32, CFG(grpc_max_connections), .min = 1, .max = 1000000,
     .def = "1024", .doc = "connections open at once; more are closed as they arrive (counted)"},
    {.key = "keepalive.time", .type = K_DURATION, CFG(grpc_keepalive_time_ms), .min = MS_S,
     .max = 24 * MS_H, .def = "2h", .doc = "idle time after which the server pings a client"},
    {.key = "keepalive.timeout", .type = K_DURATION, CFG(grpc_keepalive_timeout_ms), .min = MS_S,
     .max = MS_H, .def = "20s",
     .doc = "wait for the ping's answer before the connection is closed"},
    TLS_ROWS(grpc_tls),
};

static const cfg_key http_keys[] = {
    {.key = "enabled", .type = K_BOOL, CFG(http_enabled), .def = "true",
     .doc = "start the OTLP/HTTP receiver"},
    {.key = "endpoint", .type = K_STRING, CFG(http_endpoint), .min = 1, .max = 256,
     .kind = &SK_LISTEN, .def = "127.0.0.1:4318",
     .doc = "address to listen on; requests go to `POST /v1/traces`"},
    {.key = "max_body_size", .type = K_SIZE, CFG(http_max_body_size), .min = KIB, .max = GIB,
     .def = "16MiB", .doc = "largest request body; a bigger one gets 413"},
    {.key = "max_connections", .type = K_U32, CFG(http_max_connections), .min = 1, .max = 1000000,
     .def = "1024", .doc = "connections open at once; more are refused"},
    {.key = "read_timeout", .type = K_DURATION, CFG(http_read_timeout_ms), .min = MS_S, .max = MS_H,
     .def = "30s", .doc = "an idle or too slow connection is closed after this"},
    TLS_ROWS(http_tls),
};

static const cfg_key admin_keys[] = {
    {.key = "endpoint", .type = K_STRING, CFG(admin_endpoint), .min = 1, .max = 256,
     .kind = &SK_LISTEN, .def = "127.0.0.1:8888",
     .doc = "address of `/metrics`, `/healthz` and `/readyz`"},
};

static const cfg_key limits_keys[] = {
    {.key = "memory_limit", .type = K_SIZE, CFG(memory_limit), .min = MIB, .max = 1024 * GIB,
     .def = "256MiB",
     .doc = "bytes of spans received and not yet exported; past it, receivers refuse new "
            "requests with a retryable status"},
    {.key = "retry_after", .type = K_DURATION, CFG(retry_after_ms), .min = 0, .max = MS_H,
     .def = "1s", .doc = "back-off advertised to refused clients"},
    {.key = "drain_timeout", .type = K_DURATION, CFG(drain_timeout_ms), .min = 0, .max = MS_H,
     .def = "30s", .doc = "on SIGTERM, time allowed to export what was already accepted"},
};

static const cfg_key log_keys[] = {
    {.key = "level", .type = K_ENUM, CFG(log_level), .choices = level_choices, .def = "info",
     .doc = "least severe messages written"},
    {.key = "format", .type = K_ENUM, CFG(log_json), .choices = log_format_choices, .def = "text",
     .doc = "one line per message, plain or as a JSON object"},
};

static const cfg_key service_keys[] = {
    {.key = "exporters", .type = K_NAMES, .flags = F_REQUIRED, CFG(route),
     .off_n = offsetof(pc_config, n_route), .min = 1, .max = MAX_EXPORTERS,
     .doc = "the route: exporters (names from `exporters`) that receive every accepted span; "
            "at most one `prometheus`. Exporters not listed are checked but not started. With "
            "`tenants`, the route of every tenant that names none"},
};

static const cfg_key tenancy_keys[] = {
    {.key = "header", .type = K_STRING, CFG(tenant_header), .min = 1, .max = 128,
     .kind = &SK_HEADER, .def = "x-scope-orgid",
     .doc = "gRPC metadata / HTTP header that names the tenant of a request"},
    {.key = "resource_attribute", .type = K_STRING, .flags = F_EMPTY_UNSET,
     CFG(tenant_attribute), .max = 256,
     .doc = "resource attribute that names the tenant of its spans (unset: not used)"},
    {.key = "default_tenant", .type = K_STRING, .flags = F_EMPTY_UNSET, CFG(default_tenant),
     .max = PC_TENANT_ID_MAX, .kind = &SK_TENANT,
     .doc = "tenant of requests that carry no token and name no tenant, or name an unknown "
            "one; unset: they are refused (UNAUTHENTICATED / 401)"},
};

static const cfg_key sampling_keys[] = {
    {.key = "decision_wait", .type = K_DURATION, CFG(sampling_wait_ms), .min = 1, .max = 10 * MS_M,
     .def = "5s",
     .doc = "spans of a sampled tenant wait this long after their trace's first span, so the "
            "whole trace is decided at once (error and latency rules); a trace is decided when "
            "its root arrives if nothing later can change the verdict (a `keep` or `drop` rule; "
            "or any probability, for a tenant with `keep_errors: false` and no `latency`), and "
            "its later spans within this time follow that verdict without being held"},
    {.key = "max_traces", .type = K_U32, CFG(sampling_max_traces), .min = 1, .max = 10000000,
     .def = "100000", .doc = "traces waiting at most; beyond it the oldest are decided early"},
    {.key = "max_memory", .type = K_SIZE, CFG(sampling_max_bytes), .min = MIB, .max = 64 * GIB,
     .def = "64MiB", .doc = "bytes of waiting spans at most; beyond it the oldest are decided early"},
    {.key = "decided_cache", .type = K_U32, CFG(sampling_decided_cache), .min = 0,
     .max = 16777216, .def = "65536",
     .doc = "verdicts remembered, so late spans follow their trace's decision"},
    {.key = "adjust", .type = K_DURATION, CFG(sampling_adjust_ms), .min = 100, .max = MS_M,
     .def = "1s", .doc = "probabilities are recomputed from the measured rates this often"},
    {.key = "load.start", .type = K_NUMBER, CFG(sampling_load_start), .min = 0, .max = 1,
     .def = "0.6",
     .doc = "memory budget fill above which sampling tightens (before receivers refuse)"},
    {.key = "load.floor", .type = K_NUMBER, CFG(sampling_load_floor), .min = 0, .max = 1,
     .def = "0.1", .doc = "fraction of each target left when the memory budget is full"},
};

static const cfg_section config_sections[] = {
    {"receivers.otlp.grpc", grpc_keys, LEN(grpc_keys),
     "The OTLP/gRPC receiver (`TraceService/Export`, gzip accepted): the collector's own small "
     "gRPC server on nghttp2 and OpenSSL (`collector/recv_grpc.c`). Its bounds: "
     "`max_connections` (a connection past it is closed as it arrives and counted in "
     "`profilis_receiver_refused_connections_total{protocol=\"grpc\"}`), "
     "`max_concurrent_streams` per connection, 16 KiB of request headers per call, "
     "`max_recv_msg_size` (checked from the message's length prefix before the body is "
     "buffered, and again while gunzipping), and half of `limits.memory_limit` for calls still "
     "arriving over all connections (their bytes and state; past it a call gets `UNAVAILABLE` "
     "with a retry delay, or a new stream REFUSED_STREAM). A connection must finish TLS and the "
     "HTTP/2 preface within 20 s; an idle one is pinged after `keepalive.time` and closed when "
     "the ping goes unanswered for `keepalive.timeout`. On SIGTERM every connection gets a "
     "GOAWAY; calls already started finish"},
    {"receivers.otlp.http", http_keys, LEN(http_keys),
     "The OTLP/HTTP receiver: `application/x-protobuf` and `application/json` bodies, gzip "
     "accepted"},
    {"admin", admin_keys, LEN(admin_keys), "The admin HTTP server"},
    {"limits", limits_keys, LEN(limits_keys), "Memory budget and shutdown"},
    {"log", log_keys, LEN(log_keys), "The collector's own log, on stderr"},
    {"service", service_keys, LEN(service_keys), "What runs"},
    {"tenancy", tenancy_keys, LEN(tenancy_keys),
     "How a request's tenant is recognised when `tenants` is configured"},
    {"sampling", sampling_keys, LEN(sampling_keys),
     "The decision window of adaptive sampling, shared by every tenant with a sampling target"},
};

#define DEFAULT_BUCKETS \
  "2ms, 4ms, 6ms, 8ms, 10ms, 50ms, 100ms, 200ms, 400ms, 800ms, 1s, 1400ms, 2s, 5s, 10s, 15s"

static const cfg_key exporter_keys[] = {
    /* A file takes big batches well: fewer exports, each written in cache-sized pieces as it
     * is rendered. A backend may refuse big requests (4 MiB is the usual gRPC limit), so otlp
     * keeps 512. */
    {.key = "batch.size", .type = K_U32, .flags = F_TYPED_DEFAULT, .types = T_JSONL,
     EXP(batch_size), .min = 1, .max = 65536, .def = "4096",
     .doc = "spans per export; the file gets them in pieces of about 256 KiB as they are "
            "rendered, all before the export counts as sent"},
    {.key = "batch.size", .type = K_U32, .flags = F_TYPED_DEFAULT, .types = T_GRPC,
     EXP(batch_size), .min = 1, .max = 65536, .def = "512", .doc = "spans per export"},
    {.key = "batch.timeout", .type = K_DURATION, .types = T_THREAD, EXP(batch_timeout_ms),
     .min = 1, .max = 10 * MS_M, .def = "200ms",
     .doc = "a partial batch is exported once its oldest span has waited this long; spans "
            "that arrive in the last quarter of that wait take it along at once"},
    {.key = "timeout", .type = K_DURATION, .types = T_GRPC, EXP(timeout_ms), .min = 1,
     .max = 10 * MS_M, .def = "10s", .doc = "one export attempt"},
    {.key = "path", .type = K_STRING, .types = T_JSONL, EXP(path), .min = 1, .max = 4096,
     .kind = &SK_PATH, .def = "./profilis-data/spans.jsonl", .doc = "output file"},
    {.key = "format", .type = K_ENUM, .types = T_JSONL, EXP(format_otlp),
     .choices = jsonl_format_choices, .def = "span",
     .doc = "`span`: one span per line; `otlp`: one OTLP/JSON ExportTraceServiceRequest per line"},
    {.key = "rotation.max_size", .type = K_SIZE, .types = T_JSONL, EXP(rotate_max_bytes), .min = 0,
     .max = 1024 * GIB, .def = "100MiB",
     .doc = "the file is rotated when it reaches this size; 0 = never"},
    {.key = "rotation.max_age", .type = K_DURATION, .types = T_JSONL, EXP(rotate_max_age_ms),
     .min = 0, .max = 720 * MS_H, .def = "24h",
     .doc = "the file is rotated when it is this old; 0 = never"},
    {.key = "rotation.max_backups", .type = K_U32, .types = T_JSONL, EXP(max_backups), .min = 0,
     .max = 100000, .def = "5", .doc = "rotated files kept; older ones are deleted"},
    {.key = "preallocate", .type = K_SIZE, .types = T_JSONL, EXP(preallocate_bytes), .min = 0,
     .max = GIB, .def = "8MiB",
     .doc = "disk space is reserved ahead of the lines, in steps that grow from 1 MiB up to this "
            "size, so the filesystem does less work per write and the file fragments less; the "
            "unused rest is given back when the file is rotated or closed; 0 = off"},
    {.key = "flush_interval", .type = K_DURATION, .types = T_JSONL, EXP(flush_interval_ms),
     .min = 1, .max = MS_H, .def = "1s",
     .doc = "every batch is written when it is exported; the rest of a batch the disk took "
            "only in part is retried this often (and `fsync: interval` syncs this often)"},
    {.key = "fsync", .type = K_ENUM, .types = T_JSONL, EXP(fsync), .choices = fsync_choices,
     .def = "never",
     .doc = "`never` leaves syncing to the OS; `batch` syncs after every batch, `interval` at "
            "every flush"},
    {.key = "endpoint", .type = K_STRING, .flags = F_REQUIRED, .types = T_OTLP, EXP(endpoint),
     .min = 1, .max = 1024, .kind = &SK_TARGET,
     .doc = "OTLP/gRPC backend: `http://host:port` is plaintext; `https://host:port` or "
            "`host:port` use TLS"},
    {.key = "headers", .type = K_HEADERS, .types = T_GRPC, EXP(headers),
     .off_n = offsetof(pc_exporter_cfg, n_headers), .min = 0, .max = 64,
     .doc = "gRPC metadata sent with every export, e.g. `x-scope-orgid` for Grafana Tempo; "
            "names are lowercased"},
    {.key = "compression", .type = K_ENUM, .types = T_GRPC, EXP(gzip),
     .choices = compression_choices, .def = "none", .doc = "request compression"},
    {.key = "tls.ca_file", .type = K_STRING, .flags = F_EMPTY_UNSET, .types = T_GRPC,
     EXP(tls.ca_file), .max = 4096, .kind = &SK_PATH,
     .doc = "CA certificates (PEM) that verify the backend; the system's when unset"},
    {.key = "tls.cert_file", .type = K_STRING, .flags = F_EMPTY_UNSET, .types = T_GRPC,
     EXP(tls.cert_file), .max = 4096, .kind = &SK_PATH,
     .doc = "client certificate (PEM) for mutual TLS"},
    {.key = "tls.key_file", .type = K_STRING, .flags = F_EMPTY_UNSET, .types = T_GRPC,
     EXP(tls.key_file), .max = 4096, .kind = &SK_PATH,
     .doc = "private key of the client certificate (PEM)"},
    {.key = "tls.insecure", .type = K_BOOL, .types = T_GRPC, EXP(tls.insecure), .def = "false",
     .doc = "plaintext even when the endpoint has no `http://`"},
    {.key = "retry.initial_interval", .type = K_DURATION, .types = T_GRPC, EXP(retry_initial_ms),
     .min = 1, .max = MS_M, .def = "100ms",
     .doc = "first wait before a retry; it doubles (with jitter) up to `max_interval`"},
    {.key = "retry.max_interval", .type = K_DURATION, .types = T_GRPC, EXP(retry_max_ms), .min = 1,
     .max = 10 * MS_M, .def = "5s", .doc = "longest wait between two attempts"},
    {.key = "retry.max_elapsed_time", .type = K_DURATION, .types = T_GRPC,
     EXP(retry_max_elapsed_ms), .min = 0, .max = MS_H, .def = "60s",
     .doc = "time spent retrying one batch, after which it counts as failed; 0 = no retries"},
    {.key = "resolver.hostname", .type = K_STRING, .types = T_LB, EXP(lb_hostname), .min = 1,
     .max = 253, .kind = &SK_HOST,
     .doc = "DNS name whose A/AAAA records are the backends (a Kubernetes headless Service), "
            "resolved again every `interval`; set this or `static`"},
    {.key = "resolver.port", .type = K_U32, .types = T_LB, EXP(lb_port), .min = 1, .max = 65535,
     .def = "4317", .doc = "OTLP/gRPC port of the resolved addresses"},
    {.key = "resolver.interval", .type = K_DURATION, .types = T_LB, EXP(lb_interval_ms),
     .min = 100, .max = MS_H, .def = "5s", .doc = "how often `hostname` is resolved again"},
    {.key = "resolver.static", .type = K_STRINGS, .types = T_LB, EXP(lb_static),
     .off_n = offsetof(pc_exporter_cfg, n_lb_static), .min = 1, .max = 1024, .kind = &SK_TARGET,
     .doc = "fixed list of backends (`host:port`, `http://` or `https://` URL) instead of "
            "`hostname`"},
    {.key = "buckets", .type = K_DURATIONS, .types = T_PROM, EXP(buckets_ms),
     .off_n = offsetof(pc_exporter_cfg, n_buckets), .min = 1, .max = 128, .def = DEFAULT_BUCKETS,
     .doc = "upper bounds of the span duration histogram, ascending"},
    {.key = "max_series", .type = K_U32, .types = T_PROM, EXP(max_series), .min = 1,
     .max = 10000000, .def = "10000",
     .doc = "label sets per metric; spans past it are counted in one overflow series"},
    {.key = "breaker.enabled", .type = K_BOOL, .types = T_THREAD, EXP(breaker_enabled),
     .def = "true", .doc = "a circuit breaker stops exporting to a failing backend for a while"},
    {.key = "breaker.failures", .type = K_U32, .types = T_THREAD, EXP(breaker_failures),
     .min = 0, .max = 1000000, .def = "5", .doc = "failed exports in a row that open it; 0 = off"},
    {.key = "breaker.failure_ratio", .type = K_NUMBER, .types = T_THREAD,
     EXP(breaker_failure_ratio), .min = 0, .max = 1, .def = "0.5",
     .doc = "failed/all exports within `window` that open it; 0 = off"},
    {.key = "breaker.min_calls", .type = K_U32, .types = T_THREAD, EXP(breaker_min_calls),
     .min = 1, .max = 1000000, .def = "20",
     .doc = "exports the window must hold before the ratio counts"},
    {.key = "breaker.window", .type = K_DURATION, .types = T_THREAD,
     EXP(breaker_window_ms), .min = 100, .max = MS_H, .def = "30s",
     .doc = "sliding window of the failure ratio"},
    {.key = "breaker.open", .type = K_DURATION, .types = T_THREAD, EXP(breaker_open_ms),
     .min = 10, .max = MS_H, .def = "1s",
     .doc = "first cool-down after it opens; doubles on each repeated trip"},
    {.key = "breaker.open_max", .type = K_DURATION, .types = T_THREAD,
     EXP(breaker_open_max_ms), .min = 10, .max = 24 * MS_H, .def = "30s",
     .doc = "longest cool-down"},
    {.key = "breaker.jitter", .type = K_NUMBER, .types = T_THREAD, EXP(breaker_jitter),
     .min = 0, .max = 1, .def = "0.2", .doc = "random fraction taken off each cool-down"},
    {.key = "breaker.probes", .type = K_U32, .types = T_THREAD, EXP(breaker_probes),
     .min = 1, .max = 1000, .def = "1",
     .doc = "exports let through at once after a cool-down (half-open)"},
    {.key = "breaker.close_after", .type = K_U32, .types = T_THREAD,
     EXP(breaker_close_after), .min = 1, .max = 1000, .def = "1",
     .doc = "successful probes that close it again"},
    {.key = "queue.enabled", .type = K_BOOL, .types = T_THREAD, EXP(queue_enabled),
     .def = "false",
     .doc = "batches the backend cannot take now wait on disk (LMDB), survive restarts and "
            "are replayed in order; an otlp exporter then makes one attempt per batch (the "
            "queue does the retrying)"},
    {.key = "queue.directory", .type = K_STRING, .types = T_THREAD, EXP(queue_directory),
     .min = 1, .max = 4096, .kind = &SK_PATH, .def = "./profilis-data/queue",
     .doc = "root of the queues; each exporter (per tenant) has its own directory below it"},
    {.key = "queue.max_size", .type = K_SIZE, .types = T_THREAD, EXP(queue_max_bytes),
     .min = MIB, .max = 1024 * GIB, .def = "1GiB", .doc = "bytes on disk per queue at most"},
    {.key = "queue.full", .type = K_ENUM, .types = T_THREAD, EXP(queue_full),
     .choices = queue_full_choices, .def = "drop_oldest",
     .doc = "when the queue is full: `drop_oldest` (counted as dropped) or `refuse` (the "
            "tenant's requests are refused with a retryable status until it drains)"},
    {.key = "queue.fsync", .type = K_BOOL, .types = T_THREAD, EXP(queue_fsync),
     .def = "true",
     .doc = "sync every commit; false survives a process crash but not a machine crash"},
};

static const cfg_section exporter_section = {"", exporter_keys, LEN(exporter_keys), "an exporter"};

static const cfg_key tenant_keys[] = {
    {.key = "id", .type = K_STRING, .flags = F_REQUIRED, .types = T_TENANT, TEN(id), .min = 1,
     .max = PC_TENANT_ID_MAX, .kind = &SK_TENANT,
     .doc = "at most 150 bytes of letters, digits and `!-_.*'()`, not `.` or `..` (Grafana "
            "Tempo's rule); sent as `x-scope-orgid` by templated exporters"},
    {.key = "tokens", .type = K_STRINGS, .types = T_TENANT, TEN(tokens),
     .off_n = offsetof(pc_tenant_cfg, n_tokens), .min = 0, .max = 1000, .kind = &SK_TOKEN,
     .doc = "bearer tokens (`authorization: Bearer <token>`) that authenticate as this tenant; "
            "use `${env:NAME}` to keep them out of the file"},
    {.key = "token_file", .type = K_STRING, .flags = F_EMPTY_UNSET, .types = T_TENANT,
     TEN(token_file), .max = 4096, .kind = &SK_PATH,
     .doc = "more tokens, one per line (`#` comments); read at start and on SIGHUP"},
    {.key = "client_subjects", .type = K_STRINGS, .types = T_TENANT, TEN(subjects),
     .off_n = offsetof(pc_tenant_cfg, n_subjects), .min = 0, .max = 1000,
     .doc = "subjects of mTLS client certificates that authenticate as this tenant, as "
            "OpenSSL prints them in RFC 2253 form, e.g. `CN=agent,O=acme`"},
    {.key = "rate_limit.spans_per_second", .type = K_U32, .types = T_TENANT, TEN(rate_spans),
     .min = 0, .max = 1000000000, .def = "0", .doc = "sustained spans/s; 0 = unlimited"},
    {.key = "rate_limit.spans_burst", .type = K_U32, .types = T_TENANT, TEN(rate_spans_burst),
     .min = 0, .max = 1000000000, .def = "0", .doc = "spans above the rate taken at once; 0 = one second's worth"},
    {.key = "rate_limit.bytes_per_second", .type = K_SIZE, .types = T_TENANT, TEN(rate_bytes),
     .min = 0, .max = 1024 * GIB, .def = "0", .doc = "sustained request bytes/s; 0 = unlimited"},
    {.key = "rate_limit.bytes_burst", .type = K_SIZE, .types = T_TENANT, TEN(rate_bytes_burst),
     .min = 0, .max = 1024 * GIB, .def = "0", .doc = "bytes above the rate taken at once; 0 = one second's worth"},
    {.key = "sampling.target", .type = K_NUMBER, .types = T_TENANT, TEN(sampling_target),
     .min = 0, .max = 10000000, .def = "0",
     .doc = "kept traces per second (adaptive, trace-consistent); 0 = keep every trace"},
    {.key = "sampling.min_probability", .type = K_NUMBER, .types = T_TENANT,
     TEN(sampling_min_probability), .min = 0, .max = 1, .def = "0.001",
     .doc = "no operation is sampled below this"},
    {.key = "sampling.keep_errors", .type = K_BOOL, .types = T_TENANT, TEN(sampling_keep_errors),
     .def = "true", .doc = "keep every trace with an ERROR span"},
    {.key = "sampling.latency", .type = K_DURATION, .types = T_TENANT, TEN(sampling_latency_ms),
     .min = 0, .max = MS_H, .def = "0", .doc = "keep every trace with a span at least this long; 0 = off"},
    {.key = "exporters", .type = K_NAMES, .types = T_TENANT, TEN(route),
     .off_n = offsetof(pc_tenant_cfg, n_route), .min = 1, .max = MAX_EXPORTERS,
     .doc = "the tenant's route; `service.exporters` when unset"},
};

static const cfg_section tenant_section = {"", tenant_keys, LEN(tenant_keys), "a tenant"};

static const cfg_key rule_keys[] = {
    {.key = "service", .type = K_STRING, .types = T_RULE, RULE(service), .min = 1, .max = 1024,
     .doc = "the trace's root `service.name`; a trailing `*` matches by prefix"},
    {.key = "span_name", .type = K_STRING, .types = T_RULE, RULE(span_name), .min = 1,
     .max = 1024, .doc = "the root span's name"},
    {.key = "route", .type = K_STRING, .types = T_RULE, RULE(route), .min = 1, .max = 1024,
     .doc = "`http.route`, `url.path` or `http.target` of the root span, or its name (also after "
            "a method: `GET /healthz` matches `/healthz`)"},
    {.key = "attribute.key", .type = K_STRING, .types = T_RULE, RULE(attr_key), .min = 1,
     .max = 1024, .doc = "a string attribute of the root span"},
    {.key = "attribute.value", .type = K_STRING, .types = T_RULE, RULE(attr_value), .min = 0,
     .max = 1024, .doc = "its value (unset: any value)"},
    {.key = "action", .type = K_ENUM, .flags = F_REQUIRED, .types = T_RULE, RULE(action),
     .choices = rule_action_choices,
     .doc = "`keep` every matching trace, `drop` them (errors included), or keep them with a "
            "fixed `probability`"},
    {.key = "probability", .type = K_NUMBER, .types = T_RULE, RULE(probability), .min = 0,
     .max = 1, .doc = "for `action: probability`, in (0, 1]"},
};

static const cfg_section rule_section = {"", rule_keys, LEN(rule_keys), "a sampling rule"};

/* clang-format on */

static const key_choice exporter_types[] = {{"jsonl", PC_EXPORTER_JSONL},
                                            {"otlp", PC_EXPORTER_OTLP},
                                            {"prometheus", PC_EXPORTER_PROMETHEUS},
                                            {"loadbalancing", PC_EXPORTER_LOADBALANCING},
                                            {NULL, 0}};

/* deploy/examples/default.yaml is this text, byte for byte (checked by a test). */
static const char default_yaml[] =
    "# Profilis collector: the embedded default configuration, what runs without --config.\n"
    "# OTLP in on loopback, every span to a JSONL file, span RED metrics on the admin port.\n"
    "# Keys not written here keep their defaults; the README lists every key.\n"
    "\n"
    "receivers:\n"
    "  otlp:\n"
    "    grpc:\n"
    "      endpoint: 127.0.0.1:4317    # OTLP/gRPC\n"
    "    http:\n"
    "      endpoint: 127.0.0.1:4318    # OTLP/HTTP: POST /v1/traces\n"
    "\n"
    "admin:\n"
    "  endpoint: 127.0.0.1:8888        # /metrics, /healthz, /readyz\n"
    "\n"
    "exporters:\n"
    "  jsonl:\n"
    "    path: ./profilis-data/spans.jsonl   # one span per line\n"
    "  prometheus: {}                  # span calls and durations by service, name, kind, status\n"
    "\n"
    "service:\n"
    "  exporters: [jsonl, prometheus]  # the route: every accepted span goes to both\n";

const char *pc_config_default_yaml(void) { return default_yaml; }

/* ---- errors ---- */

void pc_errors_add(pc_errors *e, const char *fmt, ...) {
  if (!e) return;
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  char *msg = n >= 0 ? malloc((size_t)n + 1) : NULL;
  char **msgs = msg ? realloc(e->msgs, (e->n + 1) * sizeof *msgs) : NULL;
  if (!msgs) {
    free(msg); /* out of memory: the message is lost, the caller sees the count unchanged */
    return;
  }
  va_start(ap, fmt);
  vsnprintf(msg, (size_t)n + 1, fmt, ap);
  va_end(ap);
  e->msgs = msgs;
  e->msgs[e->n++] = msg;
}

void pc_errors_free(pc_errors *e) {
  if (!e) return;
  for (size_t i = 0; i < e->n; i++) free(e->msgs[i]);
  free(e->msgs);
  e->msgs = NULL;
  e->n = 0;
}

/* ---- parser state ---- */

typedef struct mark {
  uint32_t line, col; /* 1-based; line 0 = not set */
} mark;

/* Mapping keys that open a sub-mapping ("receivers", "retry", ...): seen once each. */
typedef struct seen_prefix {
  char path[64];
  mark at;
} seen_prefix;

/* Where the walker is: the tables that apply, the struct their offsets point into and where
 * each key was found. */
typedef struct scope {
  const cfg_section *secs;
  size_t n_secs;
  unsigned types; /* exporter scope: the exporter's type bit; 0 = the config itself */
  void *base;
  const char *display; /* message prefix: "" or "exporters.otlp/tempo." */
  mark *marks;         /* one per row, numbered across secs */
  seen_prefix pre[24];
  size_t n_pre;
  mark at; /* where the scope starts: "required" errors point here */
} scope;

#define N_CONFIG_ROWS 48 /* at least the rows of config_sections */
_Static_assert(LEN(grpc_keys) + LEN(http_keys) + LEN(admin_keys) + LEN(limits_keys) +
                       LEN(log_keys) + LEN(service_keys) + LEN(tenancy_keys) +
                       LEN(sampling_keys) <=
                   N_CONFIG_ROWS,
               "N_CONFIG_ROWS is too small");

typedef struct ctx {
  const char *file;
  pc_errors *errs;
  size_t n_errs;
  bool stop; /* too many errors: the rest are not reported */
  int oom;
  pc_config *cfg;
  scope root;
  mark root_marks[N_CONFIG_ROWS];
  mark exp_at[MAX_EXPORTERS];   /* where each exporter is named */
  mark path_at[MAX_EXPORTERS];  /* where a jsonl exporter's path is set */
  mark route_at[MAX_EXPORTERS]; /* where each route entry is written */
  mark tenant_at[MAX_TENANTS];  /* where each tenant starts */
  mark troute_at[MAX_TENANTS];  /* where each tenant's exporters key is */
  mark tokens_at[MAX_TENANTS];  /* where each tenant's tokens (or token_file) key is */
  mark tenants_at;              /* the tenants key */
} ctx;

static void report(ctx *c, mark at, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void report(ctx *c, mark at, const char *path, const char *fmt, ...) {
  if (c->stop) return;
  size_t before = c->errs->n;
  if (c->n_errs == MAX_ERRORS) {
    pc_errors_add(c->errs, "%s: more than %d errors; the rest are not reported", c->file,
                  MAX_ERRORS);
    c->stop = true;
  } else {
    char msg[512], p[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    pc_errors_add(c->errs, "%s:%u:%u: %s: %s", c->file, at.line, at.col,
                  pc_yprintable(path, strlen(path), p, sizeof p), msg);
  }
  c->n_errs++;
  if (c->errs->n == before) c->oom = PROFILIS_ENOMEM;
}

static mark node_mark(const pc_ynode *n) { return (mark){n->line, n->col}; }

/* The path a message names: the scope's prefix, then rel. */
static const char *show_path(const scope *sc, const char *rel, char *buf, size_t cap) {
  snprintf(buf, cap, "%s%s", sc->display, rel);
  return buf;
}

static void report_in(ctx *c, const scope *sc, mark at, const char *rel, const char *msg) {
  char p[200];
  report(c, at, show_path(sc, rel, p, sizeof p), "%s", msg);
}

/* ---- value syntax: numbers with units ---- */

static bool is_digit(char ch) { return ch >= '0' && ch <= '9'; }

static int say(char *why, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int say(char *why, size_t cap, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(why, cap, fmt, ap);
  va_end(ap);
  return PROFILIS_EINVAL;
}

static const char *const DURATION_EXAMPLE = "a duration such as 200ms, 5s or 1.5h";
static const char *const SIZE_EXAMPLE = "a size such as 512KiB, 16MiB or 1GB";

/* Bounds and defaults in messages and docs: the largest unit that divides the value. */
static const char *fmt_ms(uint64_t ms, char *buf, size_t cap) {
  static const pc_yunit u[] = {{"h", MS_H}, {"m", MS_M}, {"s", MS_S}, {"ms", 1}};
  size_t i = 0;
  while (ms && ms % u[i].mult) i++;
  if (!ms) i = 3;
  snprintf(buf, cap, "%llu%s", (unsigned long long)(ms / u[i].mult), ms ? u[i].name : "");
  return buf;
}

static const char *fmt_bytes(uint64_t b, char *buf, size_t cap) {
  static const pc_yunit u[] = {
      {"TiB", 1024 * GIB}, {"GiB", GIB}, {"MiB", MIB}, {"KiB", KIB}, {"B", 1}};
  size_t i = 0;
  while (b && b % u[i].mult) i++;
  if (!b) i = 4;
  snprintf(buf, cap, "%llu%s", (unsigned long long)(b / u[i].mult), b ? u[i].name : "");
  return buf;
}

static const char *fmt_bound(const cfg_key *k, uint64_t v, char *buf, size_t cap) {
  if (k->type == K_DURATION) return fmt_ms(v, buf, cap);
  if (k->type == K_SIZE) return fmt_bytes(v, buf, cap);
  snprintf(buf, cap, "%llu", (unsigned long long)v);
  return buf;
}

static int out_of_range(const cfg_key *k, char *why, size_t cap) {
  char lo[32], hi[32];
  return say(why, cap, "must be between %s and %s", fmt_bound(k, k->min, lo, sizeof lo),
             fmt_bound(k, k->max, hi, sizeof hi));
}

/* ---- value syntax: strings ---- */

static bool has_control(const char *s, size_t len) {
  for (size_t i = 0; i < len; i++)
    if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) return true;
  return false;
}

static bool all_digits(const char *s, size_t len) {
  for (size_t i = 0; i < len; i++)
    if (!is_digit(s[i])) return false;
  return len > 0;
}

/* host:port, [v6]:port; port 0 (any free port) is allowed. */
static const char *check_listen(const char *s) {
  const char *colon = strrchr(s, ':');
  if (strchr(s, ' ')) return "must not contain spaces";
  if (!colon || colon == s) return "expected host:port";
  size_t hl = (size_t)(colon - s), pl = strlen(colon + 1);
  if (s[0] == '[' ? (hl < 3 || s[hl - 1] != ']') : memchr(s, ':', hl) != NULL)
    return "expected host:port, with an IPv6 address in brackets ([::1]:4317)";
  if (!all_digits(colon + 1, pl) || pl > 5 || strtoul(colon + 1, NULL, 10) > 65535)
    return "the port must be a number from 0 to 65535";
  return NULL;
}

/* A DNS name or an IPv4 address: labels of letters, digits and '-', dot-separated. */
static const char *check_hostname(const char *s) {
  size_t label = 0;
  for (const char *p = s; *p; p++) {
    if (*p == '.') {
      if (!label) return "empty label (two dots, or a leading dot)";
      label = 0;
    } else if (is_digit(*p) || (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
               *p == '-' || *p == '_') {
      if (++label > 63) return "a label is longer than 63 characters";
    } else {
      return "a host name holds letters, digits, '-', '_' and dots only (no port, no scheme)";
    }
  }
  return NULL;
}

static const char *check_target(const char *s) {
  if (strchr(s, ' ')) return "must not contain spaces";
  const char *sep = strstr(s, "://");
  if (!sep) return NULL;
  size_t sl = (size_t)(sep - s);
  if (!((sl == 4 && memcmp(s, "http", 4) == 0) || (sl == 5 && memcmp(s, "https", 5) == 0)))
    return "the scheme must be http:// or https://";
  if (!sep[3] || sep[3] == '/') return "missing host";
  return NULL;
}

/* ---- storing values ---- */

static void *field(void *base, size_t off) { return (char *)base + off; }

static void store_uint(void *p, size_t width, uint64_t v) {
  if (width == sizeof(bool)) {
    bool b = v != 0;
    memcpy(p, &b, sizeof b);
  } else if (width == sizeof(uint32_t)) {
    uint32_t u = (uint32_t)v;
    memcpy(p, &u, sizeof u);
  } else if (width == sizeof(uint64_t)) {
    memcpy(p, &v, sizeof v);
  }
}

static int set_string(const cfg_key *k, const char *s, size_t len, void *base, char *why,
                      size_t cap) {
  char **slot = field(base, k->off);
  if (len == 0 && (k->flags & F_EMPTY_UNSET)) {
    free(*slot);
    *slot = NULL;
    return 0;
  }
  if (has_control(s, len)) return say(why, cap, "must not contain control characters");
  if (len < k->min) return say(why, cap, "must not be empty");
  if (k->max && len > k->max)
    return say(why, cap, "longer than %llu bytes", (unsigned long long)k->max);
  const char *bad = k->kind && k->kind->check ? k->kind->check(s) : NULL;
  if (bad) return say(why, cap, "%s", bad);
  char *dup = strdup(s);
  if (!dup) return PROFILIS_ENOMEM;
  free(*slot);
  *slot = dup;
  return 0;
}

static int parse_bool(const char *s, uint64_t *v, char *why, size_t cap) {
  if (!strcmp(s, "true") || !strcmp(s, "True") || !strcmp(s, "TRUE")) return *v = 1, 0;
  if (!strcmp(s, "false") || !strcmp(s, "False") || !strcmp(s, "FALSE")) return *v = 0, 0;
  char pb[48];
  return say(why, cap, "expected true or false, not \"%s\"",
             pc_yprintable(s, strlen(s), pb, sizeof pb));
}

static int parse_enum(const cfg_key *k, const char *s, uint64_t *v, char *why, size_t cap) {
  char list[128] = "", pb[48];
  for (const key_choice *c = k->choices; c->name; c++) {
    if (strcmp(c->name, s) == 0) return *v = (uint64_t)c->value, 0;
    size_t n = strlen(list);
    snprintf(list + n, sizeof list - n, "%s%s", n ? ", " : "", c->name);
  }
  return say(why, cap, "expected one of %s, not \"%s\"", list,
             pc_yprintable(s, strlen(s), pb, sizeof pb));
}

static int parse_u32(const char *s, size_t len, uint64_t *v, char *why, size_t cap) {
  if (len && s[0] == '-') return say(why, cap, "must not be negative");
  if (!all_digits(s, len)) return say(why, cap, "expected a whole number");
  *v = 0;
  for (size_t i = 0; i < len; i++) {
    *v = *v * 10 + (uint64_t)(s[i] - '0');
    if (*v > UINT32_MAX) return say(why, cap, "too large");
  }
  return 0;
}

/* A decimal number within the row's bounds, stored as a double. */
static int set_number(const cfg_key *k, const char *s, size_t len, void *base, char *why,
                      size_t cap) {
  char *end = NULL;
  bool plain = len > 0 && len < 64;
  for (size_t i = 0; plain && i < len; i++)
    plain = is_digit(s[i]) || s[i] == '.' || s[i] == 'e' || s[i] == 'E' || s[i] == '-' ||
            s[i] == '+';
  errno = 0;
  double d = plain ? strtod(s, &end) : 0;
  if (!plain || end != s + len || errno || d != d)
    return say(why, cap, "expected a number such as 0.25 or 100");
  if (d < (double)k->min || d > (double)k->max)
    return say(why, cap, "must be between %llu and %llu", (unsigned long long)k->min,
               (unsigned long long)k->max);
  memcpy(field(base, k->off), &d, sizeof d);
  return 0;
}

/* Parses one scalar of row k (already substituted) and stores it in base. Returns 0,
 * PROFILIS_EINVAL (why filled; the field is unchanged) or PROFILIS_ENOMEM. */
static int set_scalar(const cfg_key *k, const char *s, size_t len, void *base, char *why,
                      size_t cap) {
  uint64_t v = 0;
  int rc;
  switch (k->type) {
  case K_STRING:
    return set_string(k, s, len, base, why, cap);
  case K_BOOL:
    rc = parse_bool(s, &v, why, cap);
    break;
  case K_ENUM:
    rc = parse_enum(k, s, &v, why, cap);
    break;
  case K_U32:
    rc = parse_u32(s, len, &v, why, cap);
    break;
  case K_SIZE:
    rc = pc_yquantity(s, len, pc_yunits_size, false, SIZE_EXAMPLE, &v, why, cap);
    break;
  case K_DURATION:
    rc = pc_yquantity(s, len, pc_yunits_duration, true, DURATION_EXAMPLE, &v, why, cap);
    if (!rc && v % 1000000) rc = say(why, cap, "must be a whole number of milliseconds");
    v /= 1000000;
    break;
  case K_NUMBER:
    return set_number(k, s, len, base, why, cap);
  default:
    return say(why, cap, "not a single value");
  }
  if (!rc && (k->type == K_U32 || k->type == K_SIZE || k->type == K_DURATION) &&
      (v < k->min || v > k->max))
    rc = out_of_range(k, why, cap);
  if (!rc) store_uint(field(base, k->off), k->width, v);
  return rc;
}

/* One histogram bound: a positive duration, kept in (fractional) milliseconds. */
static int parse_bucket(const char *s, size_t len, double *ms, char *why, size_t cap) {
  uint64_t ns;
  int rc = pc_yquantity(s, len, pc_yunits_duration, true, DURATION_EXAMPLE, &ns, why, cap);
  if (!rc && ns == 0) rc = say(why, cap, "must be more than 0");
  if (!rc) *ms = (double)ns / 1e6;
  return rc;
}

static void set_list(void *base, const cfg_key *k, void *items, size_t n) {
  void **slot = field(base, k->off);
  free(*slot);
  *slot = items;
  memcpy(field(base, k->off_n), &n, sizeof n);
}

/* ---- defaults and freeing, from the tables ---- */

static int bucket_default(const cfg_key *k, void *base) {
  size_t n = 1;
  for (const char *p = k->def; *p; p++) n += *p == ',';
  double *b = calloc(n, sizeof *b);
  if (!b) return PROFILIS_ENOMEM;
  const char *p = k->def;
  char why[128];
  for (size_t i = 0; i < n; i++) {
    while (*p == ' ') p++;
    size_t len = strcspn(p, ",");
    (void)parse_bucket(p, len, &b[i], why, sizeof why); /* a unit test checks the default */
    p += len + (p[len] == ',');
  }
  set_list(base, k, b, n);
  return 0;
}

/* types: the exporter type's bit, for rows whose default depends on it (0 elsewhere). */
static int apply_defaults(const cfg_section *secs, size_t n_secs, void *base, unsigned types) {
  char why[160];
  for (size_t s = 0; s < n_secs; s++) {
    for (size_t i = 0; i < secs[s].n_keys; i++) {
      const cfg_key *k = &secs[s].keys[i];
      int rc = 0;
      if (!k->def || ((k->flags & F_TYPED_DEFAULT) && !(k->types & types))) continue;
      if (k->type == K_DURATIONS)
        rc = bucket_default(k, base);
      else
        rc = set_scalar(k, k->def, strlen(k->def), base, why, sizeof why);
      if (rc == PROFILIS_ENOMEM) return rc;
    }
  }
  return 0;
}

static void free_fields(const cfg_section *secs, size_t n_secs, void *base) {
  for (size_t s = 0; s < n_secs; s++) {
    for (size_t i = 0; i < secs[s].n_keys; i++) {
      const cfg_key *k = &secs[s].keys[i];
      void **slot = field(base, k->off);
      size_t n = 0;
      if (k->off_n) memcpy(&n, field(base, k->off_n), sizeof n);
      if (k->type == K_HEADERS) {
        pc_header_cfg *h = *slot;
        for (size_t j = 0; j < n; j++) free(h[j].key), free(h[j].value);
      } else if (k->type == K_NAMES || k->type == K_STRINGS) {
        char **names = *slot;
        for (size_t j = 0; j < n; j++) free(names[j]);
      }
      if (k->type == K_STRING || k->type == K_DURATIONS || k->type == K_HEADERS ||
          k->type == K_NAMES || k->type == K_STRINGS) {
        free(*slot);
        *slot = NULL;
      }
    }
  }
}

static void free_exporter(pc_exporter_cfg *e) {
  free_fields(&exporter_section, 1, e);
  free(e->name);
}

static void free_tenant(pc_tenant_cfg *t);

void pc_config_free(pc_config *c) {
  if (!c) return;
  free_fields(config_sections, LEN(config_sections), c);
  for (size_t i = 0; i < c->n_exporters; i++) free_exporter(&c->exporters[i]);
  free(c->exporters);
  for (size_t i = 0; i < c->n_tenants; i++) free_tenant(&c->tenants[i]);
  free(c->tenants);
  free(c->source);
  free(c);
}

const pc_exporter_cfg *pc_config_exporter(const pc_config *c, const char *name) {
  if (!c || !name) return NULL;
  for (size_t i = 0; i < c->n_exporters; i++)
    if (strcmp(c->exporters[i].name, name) == 0) return &c->exporters[i];
  return NULL;
}

const pc_tenant_cfg *pc_config_tenant(const pc_config *c, const char *id) {
  if (!c || !id) return NULL;
  for (size_t i = 0; i < c->n_tenants; i++)
    if (c->tenants[i].id && strcmp(c->tenants[i].id, id) == 0) return &c->tenants[i];
  return NULL;
}

char *const *pc_config_route_of(const pc_config *c, const pc_tenant_cfg *t, size_t *n) {
  if (t && t->n_route) {
    *n = t->n_route;
    return t->route;
  }
  *n = c->n_route;
  return c->route;
}

void pc_exporter_cfg_free(pc_exporter_cfg *c) {
  if (!c) return;
  free_exporter(c);
  memset(c, 0, sizeof *c);
}

/* s with every ${tenant} replaced (tenant NULL: a plain copy); *out NULL for s NULL. */
static int expand_tenant(const char *s, const char *tenant, char **out) {
  *out = NULL;
  if (!s) return 0;
  pf_buf b = {0};
  int rc = 0;
  for (const char *p = s; *p && !rc;) {
    const char *hit = tenant ? strstr(p, "${tenant}") : NULL;
    size_t n = hit ? (size_t)(hit - p) : strlen(p);
    rc = pf_buf_append(&b, p, n);
    if (!rc && hit) rc = pf_buf_puts(&b, tenant);
    p += n + (hit ? 9 : 0);
  }
  if (!rc) rc = pf_buf_append(&b, "", 1);
  if (rc) {
    pf_buf_free(&b);
    return PROFILIS_ENOMEM;
  }
  *out = (char *)b.p;
  return 0;
}

/* Deep copy through the table: every owned field of the exporter rows is duplicated. */
int pc_exporter_cfg_expand(pc_exporter_cfg *dst, const pc_exporter_cfg *src, const char *tenant) {
  *dst = *src;
  dst->name = NULL;
  for (size_t i = 0; i < LEN(exporter_keys); i++) { /* nothing shared with src */
    const cfg_key *k = &exporter_keys[i];
    if (k->type == K_STRING || k->type == K_DURATIONS || k->type == K_HEADERS ||
        k->type == K_NAMES || k->type == K_STRINGS)
      memset(field(dst, k->off), 0, sizeof(void *));
    if (k->off_n) memset(field(dst, k->off_n), 0, sizeof(size_t));
  }
  int rc = expand_tenant(src->name, NULL, &dst->name);
  for (size_t i = 0; i < LEN(exporter_keys) && !rc; i++) {
    const cfg_key *k = &exporter_keys[i];
    const void *from = NULL; /* only pointer rows hold a pointer (others may be unaligned) */
    if (k->type == K_STRING || k->type == K_DURATIONS || k->type == K_HEADERS ||
        k->type == K_NAMES || k->type == K_STRINGS)
      memcpy(&from, field((void *)src, k->off), sizeof from);
    size_t n = 0;
    if (k->off_n) memcpy(&n, field((void *)src, k->off_n), sizeof n);
    if (k->type == K_STRING) {
      rc = expand_tenant(from, tenant, field(dst, k->off));
    } else if (k->type == K_DURATIONS && from) {
      double *d = malloc(n * sizeof *d);
      if (!d) rc = PROFILIS_ENOMEM;
      else memcpy(d, from, n * sizeof *d), set_list(dst, k, d, n);
    } else if ((k->type == K_STRINGS || k->type == K_NAMES) && from) {
      char *const *ss = from;
      char **l = calloc(n ? n : 1, sizeof *l);
      if (!l) rc = PROFILIS_ENOMEM;
      else set_list(dst, k, l, n);
      for (size_t j = 0; l && j < n && !rc; j++) rc = expand_tenant(ss[j], NULL, &l[j]);
    } else if (k->type == K_HEADERS && from) {
      const pc_header_cfg *hs = from;
      pc_header_cfg *h = calloc(n ? n : 1, sizeof *h);
      if (!h) rc = PROFILIS_ENOMEM;
      else set_list(dst, k, h, n);
      for (size_t j = 0; h && j < n && !rc; j++) {
        rc = expand_tenant(hs[j].key, NULL, &h[j].key);
        if (!rc) rc = expand_tenant(hs[j].value, tenant, &h[j].value);
      }
    }
  }
  if (rc) pc_exporter_cfg_free(dst);
  return rc;
}

/* ---- finding rows ---- */

/* "prefix.key" (or "key" when the prefix is empty) written into buf. */
static const char *full_key(const cfg_section *s, const cfg_key *k, char *buf, size_t cap) {
  snprintf(buf, cap, "%s%s%s", s->prefix, *s->prefix ? "." : "", k->key);
  return buf;
}

static bool row_visible(const scope *sc, const cfg_key *k) {
  return !sc->types || (k->types & sc->types);
}

/* The row whose full key is rel, or NULL; *index numbers rows across the scope's sections. */
static const cfg_key *find_row(const scope *sc, const char *rel, size_t *index) {
  char buf[160];
  size_t g = 0;
  for (size_t s = 0; s < sc->n_secs; s++) {
    for (size_t i = 0; i < sc->secs[s].n_keys; i++, g++) {
      const cfg_key *k = &sc->secs[s].keys[i];
      if (row_visible(sc, k) && !strcmp(full_key(&sc->secs[s], k, buf, sizeof buf), rel)) {
        *index = g;
        return k;
      }
    }
  }
  return NULL;
}

/* True when rel names a mapping that holds rows ("receivers", "retry", ...). */
static bool is_prefix(const scope *sc, const char *rel) {
  char buf[160];
  size_t rl = strlen(rel);
  for (size_t s = 0; s < sc->n_secs; s++) {
    for (size_t i = 0; i < sc->secs[s].n_keys; i++) {
      const cfg_key *k = &sc->secs[s].keys[i];
      full_key(&sc->secs[s], k, buf, sizeof buf);
      if (row_visible(sc, k) && !strncmp(buf, rel, rl) && buf[rl] == '.') return true;
    }
  }
  return false;
}

/* The row that writes the field at off, for the rules that span keys. */
static const cfg_key *row_by_field(const scope *sc, size_t off, size_t *index, char *path,
                                   size_t cap) {
  size_t g = 0;
  for (size_t s = 0; s < sc->n_secs; s++) {
    for (size_t i = 0; i < sc->secs[s].n_keys; i++, g++) {
      const cfg_key *k = &sc->secs[s].keys[i];
      if (k->off != off) continue;
      *index = g;
      char rel[160];
      show_path(sc, full_key(&sc->secs[s], k, rel, sizeof rel), path, cap);
      return k;
    }
  }
  return NULL; /* not reached: callers pass fields of the tables */
}

/* Reports msg at the key that sets the field at off (or at the scope when it was not set). */
static void report_field(ctx *c, const scope *sc, size_t off, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void report_field(ctx *c, const scope *sc, size_t off, const char *fmt, ...) {
  size_t g = 0;
  char path[200], msg[400];
  if (!row_by_field(sc, off, &g, path, sizeof path)) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  report(c, sc->marks[g].line ? sc->marks[g] : sc->at, path, "%s", msg);
}

static bool field_set(const scope *sc, size_t off) {
  size_t g = 0;
  char path[200];
  return row_by_field(sc, off, &g, path, sizeof path) && sc->marks[g].line;
}

/* ---- walking the tree ---- */

static const char *kind_name(const pc_ynode *n) {
  if (pc_ynode_is_null(n)) return "nothing";
  return n->kind == PC_Y_MAP ? "a mapping" : n->kind == PC_Y_SEQ ? "a list" : "a single value";
}

static const char *type_noun(const cfg_key *k) {
  switch (k->type) {
  case K_BOOL:
    return "true or false";
  case K_STRING:
    return "a string";
  case K_U32:
    return "a whole number";
  case K_DURATION:
    return "a duration";
  case K_SIZE:
    return "a size";
  case K_ENUM:
    return "one of its names";
  case K_DURATIONS:
    return "a list of durations";
  case K_HEADERS:
    return "a mapping of header names to values";
  case K_NAMES:
    return "a list of exporter names";
  case K_NUMBER:
    return "a number";
  case K_STRINGS:
    return "a list of strings";
  }
  return "a value";
}

/* Substitutes a scalar node's text into out. Returns 0, or nonzero after reporting. */
static int scalar_text(ctx *c, const pc_ynode *v, const char *path, pf_buf *out) {
  char why[200];
  out->len = 0;
  int rc = PROFILIS_EINVAL;
  if (memchr(v->text, '\0', v->len)) /* "\0" in quotes: C strings would cut the value */
    snprintf(why, sizeof why, "must not contain NUL characters");
  else
    rc = pc_yexpand_env(v->text, v->len, MAX_VALUE, out, why, sizeof why);
  if (rc == PROFILIS_ENOMEM) c->oom = rc;
  if (rc == PROFILIS_EINVAL) report(c, node_mark(v), path, "%s", why);
  return rc;
}

static void value_scalar(ctx *c, const cfg_key *k, const pc_ynode *v, void *base,
                         const char *path) {
  if (v->kind != PC_Y_SCALAR || (pc_ynode_is_null(v) && !(k->flags & F_EMPTY_UNSET))) {
    report(c, node_mark(v), path, "expected %s, found %s", type_noun(k), kind_name(v));
    return;
  }
  pf_buf b = {0};
  char why[200];
  if (pc_ynode_is_null(v)) { /* an optional string left empty: unset */
    (void)set_scalar(k, "", 0, base, why, sizeof why);
  } else if (!scalar_text(c, v, path, &b)) {
    int rc = set_scalar(k, (const char *)b.p, b.len, base, why, sizeof why);
    if (rc == PROFILIS_ENOMEM) c->oom = rc;
    if (rc == PROFILIS_EINVAL) report(c, node_mark(v), path, "%s", why);
  }
  pf_buf_free(&b);
}

static bool expect_seq(ctx *c, const cfg_key *k, const pc_ynode *v, const char *path) {
  if (v->kind == PC_Y_SEQ && v->n_items >= k->min && v->n_items <= k->max) return true;
  if (v->kind != PC_Y_SEQ)
    report(c, node_mark(v), path, "expected %s, found %s", type_noun(k), kind_name(v));
  else if (v->n_items == 0)
    report(c, node_mark(v), path, "must not be empty");
  else
    report(c, node_mark(v), path, "more than %llu items", (unsigned long long)k->max);
  return false;
}

/* The next list item as text, or NULL (reported) when it is not a usable scalar. */
static const char *item_text(ctx *c, const pc_ynode *it, const char *path, pf_buf *b) {
  if (it->kind != PC_Y_SCALAR || pc_ynode_is_null(it)) {
    report(c, node_mark(it), path, "expected a single value, found %s", kind_name(it));
    return NULL;
  }
  return scalar_text(c, it, path, b) ? NULL : (const char *)b->p;
}

static void value_durations(ctx *c, const cfg_key *k, const pc_ynode *v, void *base,
                            const char *path) {
  if (!expect_seq(c, k, v, path)) return;
  double *ms = calloc(v->n_items, sizeof *ms);
  pf_buf b = {0};
  bool ok = ms != NULL;
  if (!ms) c->oom = PROFILIS_ENOMEM;
  for (size_t i = 0; ms && i < v->n_items; i++) {
    const pc_ynode *it = v->items[i];
    char why[200];
    const char *s = item_text(c, it, path, &b);
    bool good = s && !parse_bucket(s, b.len, &ms[i], why, sizeof why);
    if (s && !good) report(c, node_mark(it), path, "%s", why);
    if (good && i && ms[i] <= ms[i - 1]) {
      report(c, node_mark(it), path, "must be larger than the bound before it");
      good = false;
    }
    ok = ok && good;
  }
  pf_buf_free(&b);
  if (ok)
    set_list(base, k, ms, v->n_items);
  else
    free(ms);
}

static bool header_name_ok(char *s, size_t len) {
  for (size_t i = 0; i < len; i++) {
    if (s[i] >= 'A' && s[i] <= 'Z') s[i] = (char)(s[i] - 'A' + 'a');
    if (!((s[i] >= 'a' && s[i] <= 'z') || is_digit(s[i]) || s[i] == '-' || s[i] == '_' ||
          s[i] == '.'))
      return false;
  }
  return len > 0 && len <= 128;
}

/* gRPC owns these: a user value would break or confuse the transport. */
static bool header_reserved(const char *s) {
  return !strncmp(s, "grpc-", 5) || !strcmp(s, "content-type") || !strcmp(s, "te") ||
         !strcmp(s, "host") || !strcmp(s, "connection");
}

/* One "name: value" header pair into h[*n]. */
static void header_pair(ctx *c, const pc_ynode *key, const pc_ynode *val, const char *path,
                        pc_header_cfg *h, size_t *n) {
  char sub[200], pb[80];
  bool text_key = key->kind == PC_Y_SCALAR && strlen(key->text) == key->len; /* no NUL */
  char *name = text_key ? strdup(key->text) : NULL;
  pf_buf b = {0};
  if (snprintf(sub, sizeof sub, "%s.%s", path,
               key->kind == PC_Y_SCALAR ? pc_yprintable(key->text, key->len, pb, sizeof pb)
                                        : "?") >= (int)sizeof sub)
    memcpy(sub + sizeof sub - 4, "...", 4); /* a long path is shown shortened */
  if (text_key && !name) {
    c->oom = PROFILIS_ENOMEM;
    goto out;
  }
  if (!name || !header_name_ok(name, key->len) || header_reserved(name)) {
    report(c, node_mark(key), sub,
           "not a usable header name: lowercase letters, digits, "
           "'-', '_' and '.', not grpc-* or a reserved name");
    goto out;
  }
  for (size_t i = 0; i < *n; i++) {
    if (strcmp(h[i].key, name) != 0) continue;
    report(c, node_mark(key), sub, "header given twice");
    goto out;
  }
  if (val->kind != PC_Y_SCALAR || pc_ynode_is_null(val)) {
    report(c, node_mark(val), sub, "expected a single value, found %s", kind_name(val));
    goto out;
  }
  if (scalar_text(c, val, sub, &b)) goto out;
  if (has_control((const char *)b.p, b.len) || b.len > 8192) {
    report(c, node_mark(val), sub, "must be at most 8192 bytes without control characters");
    goto out;
  }
  h[*n].key = name;
  h[(*n)++].value = (char *)b.p;
  return; /* both now owned by h */
out:
  free(name);
  pf_buf_free(&b);
}

static void value_headers(ctx *c, const cfg_key *k, const pc_ynode *v, void *base,
                          const char *path) {
  if (pc_ynode_is_null(v)) return;
  if (v->kind != PC_Y_MAP) {
    report(c, node_mark(v), path, "expected %s, found %s", type_noun(k), kind_name(v));
    return;
  }
  size_t pairs = v->n_items / 2, n = 0;
  if (pairs > k->max) {
    report(c, node_mark(v), path, "more than %llu headers", (unsigned long long)k->max);
    return;
  }
  pc_header_cfg *h = calloc(pairs ? pairs : 1, sizeof *h);
  if (!h) {
    c->oom = PROFILIS_ENOMEM;
    return;
  }
  for (size_t i = 0; i < pairs && !c->stop; i++)
    header_pair(c, v->items[2 * i], v->items[2 * i + 1], path, h, &n);
  set_list(base, k, h, n);
}

/* The route: names are checked against the exporters after the whole file is read. */
static void value_names(ctx *c, const cfg_key *k, const pc_ynode *v, void *base, const char *path) {
  if (pc_ynode_is_null(v) || (v->kind == PC_Y_SEQ && v->n_items == 0)) {
    report(c, node_mark(v), path, "must name at least one exporter");
    return;
  }
  if (!expect_seq(c, k, v, path)) return;
  char **names = calloc(v->n_items, sizeof *names);
  size_t n = 0;
  pf_buf b = {0};
  if (!names) c->oom = PROFILIS_ENOMEM;
  for (size_t i = 0; names && i < v->n_items; i++) {
    if (!item_text(c, v->items[i], path, &b)) continue;
    if (!(names[n] = strdup((const char *)b.p))) {
      c->oom = PROFILIS_ENOMEM;
      break;
    }
    if (base == c->cfg) c->route_at[n] = node_mark(v->items[i]);
    n++;
  }
  pf_buf_free(&b);
  if (names) set_list(base, k, names, n);
}

/* A list of strings, each checked as the row's kind; a bad item is reported (never its text for
 * tokens: a secret must not reach a log) and left out. */
static void value_strings(ctx *c, const cfg_key *k, const pc_ynode *v, void *base,
                          const char *path) {
  if (pc_ynode_is_null(v)) return;
  if (!expect_seq(c, k, v, path)) return;
  char **items = calloc(v->n_items ? v->n_items : 1, sizeof *items);
  size_t n = 0;
  pf_buf b = {0};
  if (!items) c->oom = PROFILIS_ENOMEM;
  for (size_t i = 0; items && i < v->n_items; i++) {
    const char *t = item_text(c, v->items[i], path, &b);
    if (!t) continue;
    const char *bad = has_control(t, b.len) ? "must not contain control characters"
                      : b.len == 0 || b.len > 4096 ? "must be 1 to 4096 bytes"
                      : k->kind && k->kind->check ? k->kind->check(t)
                                                  : NULL;
    if (bad) {
      report(c, node_mark(v->items[i]), path, "item %zu: %s", i + 1, bad);
      continue;
    }
    if (!(items[n] = strdup(t))) {
      c->oom = PROFILIS_ENOMEM;
      break;
    }
    n++;
  }
  pf_buf_free(&b);
  if (items) set_list(base, k, items, n);
}

static void walk_value(ctx *c, const scope *sc, const cfg_key *k, const pc_ynode *v,
                       const char *rel) {
  char path[200];
  show_path(sc, rel, path, sizeof path);
  switch (k->type) {
  case K_DURATIONS:
    value_durations(c, k, v, sc->base, path);
    break;
  case K_HEADERS:
    value_headers(c, k, v, sc->base, path);
    break;
  case K_NAMES:
    value_names(c, k, v, sc->base, path);
    break;
  case K_STRINGS:
    value_strings(c, k, v, sc->base, path);
    break;
  default:
    value_scalar(c, k, v, sc->base, path);
    break;
  }
}

static void walk_map(ctx *c, scope *sc, const pc_ynode *map, const char *rel);
static void walk_exporters(ctx *c, const pc_ynode *v);
static void walk_tenants(ctx *c, const pc_ynode *v);
static void walk_rules(ctx *c, const scope *sc, const pc_ynode *v);

/* Keys whose value is a collection of sub-configurations, walked by their own functions. */
typedef enum special_key { SPECIAL_NONE, SPECIAL_EXPORTERS, SPECIAL_TENANTS, SPECIAL_RULES } special_key;

static special_key special(const scope *sc, const char *rel) {
  if (!sc->types && !strcmp(rel, "exporters")) return SPECIAL_EXPORTERS;
  if (!sc->types && !strcmp(rel, "tenants")) return SPECIAL_TENANTS;
  if (sc->types == T_TENANT && !strcmp(rel, "sampling.rules")) return SPECIAL_RULES;
  return SPECIAL_NONE;
}

/* A key that opens a sub-mapping: once only, and its value must be a mapping (or nothing). */
static void walk_prefix(ctx *c, scope *sc, const pc_ynode *key, const pc_ynode *v,
                        const char *rel) {
  for (size_t i = 0; i < sc->n_pre; i++) {
    if (strcmp(sc->pre[i].path, rel) != 0) continue;
    char msg[64];
    snprintf(msg, sizeof msg, "duplicate key (first at %u:%u)", sc->pre[i].at.line,
             sc->pre[i].at.col);
    report_in(c, sc, node_mark(key), rel, msg);
    return;
  }
  if (sc->n_pre < LEN(sc->pre)) {
    snprintf(sc->pre[sc->n_pre].path, sizeof sc->pre[0].path, "%s", rel);
    sc->pre[sc->n_pre++].at = node_mark(key);
  }
  special_key sk = special(sc, rel);
  if (sk == SPECIAL_EXPORTERS) {
    walk_exporters(c, v);
  } else if (sk == SPECIAL_TENANTS) {
    c->tenants_at = node_mark(key);
    walk_tenants(c, v);
  } else if (sk == SPECIAL_RULES) {
    walk_rules(c, sc, v);
  } else if (pc_ynode_is_null(v)) {
    return; /* "grpc:" alone: the section with its defaults */
  } else if (v->kind != PC_Y_MAP) {
    char msg[64];
    snprintf(msg, sizeof msg, "expected a mapping, found %s", kind_name(v));
    report_in(c, sc, node_mark(v), rel, msg);
  } else {
    walk_map(c, sc, v, rel);
  }
}

static void walk_pair(ctx *c, scope *sc, const pc_ynode *key, const pc_ynode *v, const char *rel) {
  char child[160];
  size_t g;
  bool usable = key->kind == PC_Y_SCALAR && key->len <= MAX_KEY &&
                !memchr(key->text, '.', key->len) && strlen(key->text) == key->len;
  if (key->kind == PC_Y_SCALAR)
    snprintf(child, sizeof child, "%s%s%.*s", rel, *rel ? "." : "",
             (int)(key->len > MAX_KEY ? MAX_KEY : key->len), key->text);
  else
    snprintf(child, sizeof child, "%s%s?", rel, *rel ? "." : "");
  const cfg_key *k = usable ? find_row(sc, child, &g) : NULL;
  if (k && sc->marks[g].line) {
    char msg[64];
    snprintf(msg, sizeof msg, "duplicate key (first at %u:%u)", sc->marks[g].line,
             sc->marks[g].col);
    report_in(c, sc, node_mark(key), child, msg);
  } else if (k) {
    sc->marks[g] = node_mark(key);
    walk_value(c, sc, k, v, child);
  } else if (usable && (is_prefix(sc, child) || special(sc, child) != SPECIAL_NONE)) {
    walk_prefix(c, sc, key, v, child);
  } else {
    report_in(c, sc, node_mark(key), child, "unknown key");
  }
}

static void walk_map(ctx *c, scope *sc, const pc_ynode *map, const char *rel) {
  for (size_t i = 0; i + 1 < map->n_items && !c->stop; i += 2)
    walk_pair(c, sc, map->items[i], map->items[i + 1], rel);
}

/* ---- exporters ---- */

/* "type" or "type/label"; returns the type or 0 (reported). */
static int exporter_type(ctx *c, const pc_ynode *key, const char *path) {
  const char *slash = memchr(key->text, '/', key->len);
  size_t tl = slash ? (size_t)(slash - key->text) : key->len;
  for (const key_choice *t = exporter_types; t->name; t++) {
    if (strlen(t->name) != tl || memcmp(t->name, key->text, tl) != 0) continue;
    if (!slash) return t->value;
    size_t ll = key->len - tl - 1;
    bool ok = ll > 0 && ll <= 64;
    for (size_t i = 0; i < ll && ok; i++) {
      char ch = slash[1 + i];
      ok = is_digit(ch) || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || ch == '-' ||
           ch == '_';
    }
    if (ok) return t->value;
    report(c, node_mark(key), path,
           "the label after '/' must be 1 to 64 letters, digits, '-' or '_'");
    return 0;
  }
  report(c, node_mark(key), path, "unknown exporter type (expected jsonl, otlp, prometheus or loadbalancing)");
  return 0;
}

static bool exporter_name_unique(ctx *c, const pc_ynode *key, const char *path) {
  for (size_t i = 0; i < c->cfg->n_exporters; i++) {
    if (strcmp(c->cfg->exporters[i].name, key->text) != 0) continue;
    report(c, node_mark(key), path, "exporter defined twice (first at %u:%u)", c->exp_at[i].line,
           c->exp_at[i].col);
    return false;
  }
  return true;
}

/* Appends an exporter with every default filled. Returns it, or NULL when out of memory. */
static pc_exporter_cfg *add_exporter(ctx *c, const pc_ynode *key, int type) {
  pc_config *cfg = c->cfg;
  pc_exporter_cfg *arr = realloc(cfg->exporters, (cfg->n_exporters + 1) * sizeof *arr);
  if (!arr) return NULL;
  cfg->exporters = arr;
  pc_exporter_cfg *e = &arr[cfg->n_exporters];
  memset(e, 0, sizeof *e);
  e->type = (pc_exporter_type)type;
  if (!(e->name = strdup(key->text)) || apply_defaults(&exporter_section, 1, e, 1u << type)) {
    free_exporter(e);
    return NULL;
  }
  c->exp_at[cfg->n_exporters++] = node_mark(key);
  return e;
}

static void tls_pair_rules(ctx *c, const scope *sc, const pc_tls_cfg *t, size_t tls_off) {
  if (t->cert_file && !t->key_file)
    report_field(c, sc, tls_off + offsetof(pc_tls_cfg, cert_file), "needs tls.key_file too");
  if (t->key_file && !t->cert_file)
    report_field(c, sc, tls_off + offsetof(pc_tls_cfg, key_file), "needs tls.cert_file too");
  if (t->client_ca_file && !t->cert_file)
    report_field(c, sc, tls_off + offsetof(pc_tls_cfg, client_ca_file),
                 "mutual TLS needs tls.cert_file and tls.key_file too");
}

/* loadbalancing: exactly one resolver, and its port only with the DNS one. */
static void lb_rules(ctx *c, const scope *sc, const pc_exporter_cfg *e) {
  char path[200];
  if (!e->lb_hostname && !e->n_lb_static)
    report(c, sc->at, show_path(sc, "resolver", path, sizeof path),
           "required: resolver.hostname or resolver.static");
  if (e->lb_hostname && e->n_lb_static)
    report_field(c, sc, offsetof(pc_exporter_cfg, lb_static),
                 "set either resolver.hostname or resolver.static, not both");
  if (e->n_lb_static && field_set(sc, offsetof(pc_exporter_cfg, lb_port)))
    report_field(c, sc, offsetof(pc_exporter_cfg, lb_port),
                 "only for resolver.hostname (static entries carry their port)");
}

/* Rules within one exporter, and the one across jsonl exporters (one file, one writer). */
static void exporter_rules(ctx *c, const scope *sc, size_t idx) {
  const pc_exporter_cfg *e = &c->cfg->exporters[idx];
  char path[200];
  for (size_t i = 0; i < exporter_section.n_keys; i++) {
    const cfg_key *k = &exporter_keys[i];
    if ((k->flags & F_REQUIRED) && row_visible(sc, k) && !sc->marks[i].line)
      report(c, sc->at, show_path(sc, k->key, path, sizeof path), "required");
  }
  bool grpc = e->type == PC_EXPORTER_OTLP || e->type == PC_EXPORTER_LOADBALANCING;
  if (grpc && e->retry_initial_ms > e->retry_max_ms)
    report_field(c, sc, offsetof(pc_exporter_cfg, retry_initial_ms),
                 "must not be longer than retry.max_interval");
  if (grpc) tls_pair_rules(c, sc, &e->tls, offsetof(pc_exporter_cfg, tls));
  if (e->type == PC_EXPORTER_LOADBALANCING) lb_rules(c, sc, e);
  if (e->type != PC_EXPORTER_JSONL) return;
  size_t g;
  row_by_field(sc, offsetof(pc_exporter_cfg, path), &g, path, sizeof path);
  c->path_at[idx] = sc->marks[g].line ? sc->marks[g] : sc->at;
  for (size_t i = 0; i < idx; i++) {
    const pc_exporter_cfg *o = &c->cfg->exporters[i];
    if (o->type == PC_EXPORTER_JSONL && !strcmp(o->path, e->path))
      report(c, c->path_at[idx], path, "same file as exporter %s (%u:%u)", o->name,
             c->path_at[i].line, c->path_at[i].col);
  }
}

static void walk_exporter(ctx *c, const pc_ynode *key, const pc_ynode *v) {
  char path[200], display[210];
  snprintf(path, sizeof path, "exporters.%s", key->text);
  int type = exporter_type(c, key, path);
  if (!type || !exporter_name_unique(c, key, path)) return;
  pc_exporter_cfg *e = add_exporter(c, key, type);
  if (!e) {
    c->oom = PROFILIS_ENOMEM;
    return;
  }
  mark marks[LEN(exporter_keys)] = {{0, 0}};
  snprintf(display, sizeof display, "%s.", path);
  scope sc = {.secs = &exporter_section,
              .n_secs = 1,
              .types = 1u << type,
              .base = e,
              .display = display,
              .marks = marks,
              .at = node_mark(key)};
  if (!pc_ynode_is_null(v) && v->kind != PC_Y_MAP)
    report(c, node_mark(v), path, "expected a mapping, found %s", kind_name(v));
  else if (v->kind == PC_Y_MAP)
    walk_map(c, &sc, v, "");
  exporter_rules(c, &sc, c->cfg->n_exporters - 1);
}

static void walk_exporters(ctx *c, const pc_ynode *v) {
  if (pc_ynode_is_null(v)) return;
  if (v->kind != PC_Y_MAP) {
    report(c, node_mark(v), "exporters", "expected a mapping of exporters, found %s", kind_name(v));
    return;
  }
  for (size_t i = 0; i + 1 < v->n_items && !c->stop && !c->oom; i += 2) {
    const pc_ynode *key = v->items[i];
    char pb[80];
    if (key->kind != PC_Y_SCALAR || key->len > 80 || strlen(key->text) != key->len) {
      report(c, node_mark(key), "exporters", "unusable exporter name \"%s\"",
             key->kind == PC_Y_SCALAR ? pc_yprintable(key->text, key->len, pb, sizeof pb) : "?");
      continue;
    }
    if (c->cfg->n_exporters == MAX_EXPORTERS) {
      report(c, node_mark(key), "exporters", "more than %d exporters", MAX_EXPORTERS);
      return;
    }
    walk_exporter(c, key, v->items[i + 1]);
  }
}

/* ---- tenants and their sampling rules ---- */

static int read_bounded(const char *path, char **out, size_t *len, size_t max);

static void free_rule(pc_rule_cfg *r) { free_fields(&rule_section, 1, r); }

static void free_tenant(pc_tenant_cfg *t) {
  free_fields(&tenant_section, 1, t);
  for (size_t i = 0; i < t->n_rules; i++) free_rule(&t->rules[i]);
  free(t->rules);
  t->rules = NULL;
  t->n_rules = 0;
}

static void rule_checks(ctx *c, const scope *sc, const pc_rule_cfg *r) {
  size_t g = 0;
  char path[200];
  const cfg_key *k = row_by_field(sc, offsetof(pc_rule_cfg, action), &g, path, sizeof path);
  if (k && !sc->marks[g].line) report(c, sc->at, path, "required");
  bool has_p = field_set(sc, offsetof(pc_rule_cfg, probability));
  if (r->action == PC_RULE_PROBABILITY && (!has_p || r->probability <= 0))
    report_field(c, sc, offsetof(pc_rule_cfg, probability),
                 "action probability needs a probability above 0");
  else if (r->action != PC_RULE_PROBABILITY && has_p)
    report_field(c, sc, offsetof(pc_rule_cfg, probability),
                 "only for action: probability");
  if (!r->service && !r->span_name && !r->route && !r->attr_key)
    report(c, sc->at, show_path(sc, "action", path, sizeof path),
           "the rule needs a condition: service, span_name, route or attribute.key");
  if (r->attr_value && !r->attr_key)
    report_field(c, sc, offsetof(pc_rule_cfg, attr_value), "needs attribute.key too");
}

static void walk_rules(ctx *c, const scope *tsc, const pc_ynode *v) {
  pc_tenant_cfg *t = tsc->base;
  char path[220];
  snprintf(path, sizeof path, "%ssampling.rules", tsc->display);
  if (pc_ynode_is_null(v)) return;
  if (v->kind != PC_Y_SEQ) {
    report(c, node_mark(v), path, "expected a list of rules, found %s", kind_name(v));
    return;
  }
  if (v->n_items > MAX_RULES) {
    report(c, node_mark(v), path, "more than %d rules", MAX_RULES);
    return;
  }
  t->rules = calloc(v->n_items ? v->n_items : 1, sizeof *t->rules);
  if (!t->rules) {
    c->oom = PROFILIS_ENOMEM;
    return;
  }
  for (size_t i = 0; i < v->n_items && !c->stop && !c->oom; i++) {
    const pc_ynode *it = v->items[i];
    char display[260];
    snprintf(display, sizeof display, "%.220s[%zu].", path, i);
    if (it->kind != PC_Y_MAP) {
      report(c, node_mark(it), path, "rule %zu: expected a mapping, found %s", i + 1,
             kind_name(it));
      continue;
    }
    pc_rule_cfg *r = &t->rules[t->n_rules++];
    mark marks[LEN(rule_keys)] = {{0, 0}};
    scope sc = {.secs = &rule_section,
                .n_secs = 1,
                .types = T_RULE,
                .base = r,
                .display = display,
                .marks = marks,
                .at = node_mark(it)};
    walk_map(c, &sc, it, "");
    rule_checks(c, &sc, r);
  }
}

/* Tempo's tenant id rule: letters, digits and !-_.*'() only, at most 150 bytes, not . or .. */
bool pc_tenant_id_valid(const char *id, size_t len) {
  if (len == 0 || len > PC_TENANT_ID_MAX) return false;
  if ((len == 1 && id[0] == '.') || (len == 2 && id[0] == '.' && id[1] == '.')) return false;
  for (size_t i = 0; i < len; i++) {
    char ch = id[i];
    bool ok = is_digit(ch) || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
              strchr("!-_.*'()", ch) != NULL;
    if (!ok || ch == '\0') return false;
  }
  return true;
}

static const char *check_tenant(const char *s) {
  return pc_tenant_id_valid(s, strlen(s))
             ? NULL
             : "not a tenant id: at most 150 letters, digits or !-_.*'(), not . or ..";
}

/* A bearer token: visible ASCII (RFC 6750 b64token is narrower; anything printable is safe in
 * a header). The token itself is never printed. */
static const char *check_token(const char *s) {
  for (const char *p = s; *p; p++)
    if (*p < 0x21 || *p > 0x7e) return "a token must be printable ASCII without spaces";
  return NULL;
}

static const char *check_header_name(const char *s) {
  for (const char *p = s; *p; p++)
    if (!((*p >= 'a' && *p <= 'z') || is_digit(*p) || *p == '-' || *p == '_' || *p == '.'))
      return "lowercase letters, digits, '-', '_' and '.' only";
  return NULL;
}

/* Appends the tokens of t->token_file (one per line; blank lines and # comments skipped). */
static void load_token_file(ctx *c, pc_tenant_cfg *t, size_t idx) {
  char *text = NULL;
  size_t len = 0;
  char path[200];
  snprintf(path, sizeof path, "tenants[%zu].token_file", idx);
  int rc = read_bounded(t->token_file, &text, &len, MAX_TOKEN_FILE);
  if (rc == PROFILIS_ENOMEM) {
    c->oom = rc;
    return;
  }
  if (rc || len > MAX_TOKEN_FILE) {
    report(c, c->tokens_at[idx], path, "cannot read %s: %s", t->token_file,
           rc ? strerror(errno) : "larger than 1 MiB");
    free(text);
    return;
  }
  size_t line = 0;
  for (char *p = text, *end; p < text + len; p = end + 1) {
    end = memchr(p, '\n', (size_t)(text + len - p));
    if (!end) end = text + len;
    line++;
    char *a = p, *b = end;
    while (a < b && (*a == ' ' || *a == '\t')) a++;
    while (b > a && (b[-1] == ' ' || b[-1] == '\t' || b[-1] == '\r')) b--;
    if (a == b || *a == '#') continue;
    char *tok = strndup(a, (size_t)(b - a));
    if (!tok) {
      c->oom = PROFILIS_ENOMEM;
      break;
    }
    const char *bad = (size_t)(b - a) > 4096 || memchr(a, '\0', (size_t)(b - a))
                          ? "must be 1 to 4096 bytes"
                          : check_token(tok);
    char **arr = bad ? NULL : realloc(t->tokens, (t->n_tokens + 1) * sizeof *arr);
    if (bad) {
      report(c, c->tokens_at[idx], path, "%s line %zu: %s", t->token_file, line, bad);
      free(tok);
    } else if (!arr) {
      free(tok);
      c->oom = PROFILIS_ENOMEM;
      break;
    } else {
      t->tokens = arr;
      t->tokens[t->n_tokens++] = tok;
    }
  }
  free(text);
}

static pc_tenant_cfg *add_tenant(ctx *c) {
  pc_config *cfg = c->cfg;
  pc_tenant_cfg *arr = realloc(cfg->tenants, (cfg->n_tenants + 1) * sizeof *arr);
  if (!arr) return NULL;
  cfg->tenants = arr;
  pc_tenant_cfg *t = &arr[cfg->n_tenants];
  memset(t, 0, sizeof *t);
  if (apply_defaults(&tenant_section, 1, t, 0)) {
    free_tenant(t);
    return NULL;
  }
  cfg->n_tenants++;
  return t;
}

static void walk_tenant(ctx *c, const pc_ynode *v, size_t idx) {
  char display[40];
  snprintf(display, sizeof display, "tenants[%zu].", idx);
  pc_tenant_cfg *t = add_tenant(c);
  if (!t) {
    c->oom = PROFILIS_ENOMEM;
    return;
  }
  mark marks[LEN(tenant_keys)] = {{0, 0}};
  scope sc = {.secs = &tenant_section,
              .n_secs = 1,
              .types = T_TENANT,
              .base = t,
              .display = display,
              .marks = marks,
              .at = node_mark(v)};
  walk_map(c, &sc, v, "");
  size_t g = 0;
  char path[200];
  c->tenant_at[idx] = node_mark(v);
  row_by_field(&sc, offsetof(pc_tenant_cfg, route), &g, path, sizeof path);
  c->troute_at[idx] = marks[g].line ? marks[g] : sc.at;
  row_by_field(&sc, offsetof(pc_tenant_cfg, token_file), &g, path, sizeof path);
  c->tokens_at[idx] = marks[g].line ? marks[g] : sc.at;
  for (size_t i = 0; i < LEN(tenant_keys); i++)
    if ((tenant_keys[i].flags & F_REQUIRED) && !marks[i].line)
      report(c, sc.at, show_path(&sc, tenant_keys[i].key, path, sizeof path), "required");
  if (t->token_file) load_token_file(c, t, idx);
}

static void walk_tenants(ctx *c, const pc_ynode *v) {
  if (pc_ynode_is_null(v)) return;
  if (v->kind != PC_Y_SEQ) {
    report(c, node_mark(v), "tenants", "expected a list of tenants, found %s", kind_name(v));
    return;
  }
  if (v->n_items > MAX_TENANTS) {
    report(c, node_mark(v), "tenants", "more than %d tenants", MAX_TENANTS);
    return;
  }
  for (size_t i = 0; i < v->n_items && !c->stop && !c->oom; i++) {
    if (v->items[i]->kind != PC_Y_MAP) {
      report(c, node_mark(v->items[i]), "tenants", "tenant %zu: expected a mapping, found %s",
             i + 1, kind_name(v->items[i]));
      continue;
    }
    walk_tenant(c, v->items[i], c->cfg->n_tenants);
  }
}

/* ---- rules across sections ---- */

/* One route: names exist, none twice, at most one prometheus. at[i] (or `where` when at is
 * NULL) is the mark of entry i. */
static void check_route(ctx *c, char *const *route, size_t n, const mark *at, mark where,
                        const char *path) {
  const pc_config *cfg = c->cfg;
  const char *prom = NULL;
  for (size_t i = 0; i < n; i++) {
    const char *name = route[i];
    const pc_exporter_cfg *e = pc_config_exporter(cfg, name);
    mark m = at ? at[i] : where;
    char pb[80];
    pc_yprintable(name, strlen(name), pb, sizeof pb);
    size_t j = 0;
    while (j < i && strcmp(route[j], name) != 0) j++;
    if (j < i)
      report(c, m, path, "exporter %s is listed twice", pb);
    else if (!e)
      report(c, m, path, "no exporter named \"%s\" in exporters", pb);
    else if (e->type == PC_EXPORTER_PROMETHEUS && prom)
      report(c, m, path, "a route takes at most one prometheus exporter (%s is already on it)",
             prom);
    else if (e->type == PC_EXPORTER_PROMETHEUS)
      prom = e->name;
    else if (e->templated && !cfg->n_tenants)
      report(c, m, path, "exporter %s uses ${tenant}, which needs `tenants`", pb);
  }
}

static void route_rules(ctx *c) {
  const pc_config *cfg = c->cfg;
  check_route(c, cfg->route, cfg->n_route, c->route_at, (mark){0, 0}, "service.exporters");
  for (size_t i = 0; i < cfg->n_tenants; i++) {
    char path[64];
    snprintf(path, sizeof path, "tenants[%zu].exporters", i);
    check_route(c, cfg->tenants[i].route, cfg->tenants[i].n_route, NULL, c->troute_at[i], path);
  }
}

static bool has_tenant_ref(const char *s) { return s && strstr(s, "${tenant}") != NULL; }

/* Marks exporters whose settings name ${tenant}, and rejects it where it cannot apply. */
static void template_rules(ctx *c) {
  for (size_t i = 0; i < c->cfg->n_exporters; i++) {
    pc_exporter_cfg *e = &c->cfg->exporters[i];
    bool headers = false;
    for (size_t h = 0; h < e->n_headers; h++) headers |= has_tenant_ref(e->headers[h].value);
    e->templated = has_tenant_ref(e->path) || has_tenant_ref(e->endpoint) || headers;
    const char *other = has_tenant_ref(e->queue_directory)  ? "queue.directory"
                        : has_tenant_ref(e->tls.ca_file)    ? "tls.ca_file"
                        : has_tenant_ref(e->tls.cert_file)  ? "tls.cert_file"
                        : has_tenant_ref(e->tls.key_file)   ? "tls.key_file"
                                                            : NULL;
    char path[100];
    snprintf(path, sizeof path, "exporters.%s", e->name);
    if (other)
      report(c, c->exp_at[i], path,
             "${tenant} is replaced in path, endpoint and header values only, not in %s (each "
             "tenant's queue has its own directory already)",
             other);
  }
}

static bool same_secret_elsewhere(const pc_config *cfg, size_t ti, size_t k, size_t *other) {
  const char *tok = cfg->tenants[ti].tokens[k];
  for (size_t i = 0; i <= ti; i++) {
    const pc_tenant_cfg *t = &cfg->tenants[i];
    size_t lim = i == ti ? k : t->n_tokens;
    for (size_t j = 0; j < lim; j++)
      if (!strcmp(t->tokens[j], tok)) return *other = i, true;
  }
  return false;
}

static void tenant_rules(ctx *c) {
  const pc_config *cfg = c->cfg;
  for (size_t i = 0; i < cfg->n_tenants; i++) {
    const pc_tenant_cfg *t = &cfg->tenants[i];
    char path[64];
    for (size_t j = 0; j < i && t->id; j++)
      if (cfg->tenants[j].id && !strcmp(cfg->tenants[j].id, t->id)) {
        snprintf(path, sizeof path, "tenants[%zu].id", i);
        report(c, c->tenant_at[i], path, "tenant %s is defined twice (first at %u:%u)", t->id,
               c->tenant_at[j].line, c->tenant_at[j].col);
      }
    for (size_t k = 0; k < t->n_tokens; k++) {
      size_t other = 0;
      if (!same_secret_elsewhere(cfg, i, k, &other)) continue;
      snprintf(path, sizeof path, "tenants[%zu].tokens", i);
      report(c, c->tokens_at[i], path,
             "token %zu is also a token of tenant %s: a token must name one tenant", k + 1,
             cfg->tenants[other].id ? cfg->tenants[other].id : "?");
    }
    for (size_t k = 0; k < t->n_subjects; k++)
      for (size_t j = 0; j <= i; j++) {
        const pc_tenant_cfg *o = &cfg->tenants[j];
        for (size_t m = 0; m < (j == i ? k : o->n_subjects); m++)
          if (!strcmp(o->subjects[m], t->subjects[k])) {
            snprintf(path, sizeof path, "tenants[%zu].client_subjects", i);
            report(c, c->tenant_at[i], path, "subject %s also names tenant %s",
                   t->subjects[k], o->id ? o->id : "?");
          }
      }
    if (t->rate_spans_burst && !t->rate_spans) {
      snprintf(path, sizeof path, "tenants[%zu].rate_limit.spans_burst", i);
      report(c, c->tenant_at[i], path, "needs rate_limit.spans_per_second too");
    }
    if (t->rate_bytes_burst && !t->rate_bytes) {
      snprintf(path, sizeof path, "tenants[%zu].rate_limit.bytes_burst", i);
      report(c, c->tenant_at[i], path, "needs rate_limit.bytes_per_second too");
    }
  }
  if (cfg->default_tenant && !pc_config_tenant(cfg, cfg->default_tenant))
    report_field(c, &c->root, offsetof(pc_config, default_tenant),
                 "names no tenant of `tenants`");
}

static void breaker_rules(ctx *c) {
  for (size_t i = 0; i < c->cfg->n_exporters; i++) {
    const pc_exporter_cfg *e = &c->cfg->exporters[i];
    char path[100];
    snprintf(path, sizeof path, "exporters.%s.breaker.open_max", e->name);
    if (e->type != PC_EXPORTER_PROMETHEUS && e->breaker_open_max_ms < e->breaker_open_ms)
      report(c, c->exp_at[i], path, "must not be shorter than breaker.open");
  }
}

static void required_rules(ctx *c) {
  scope *sc = &c->root;
  size_t g = 0;
  char path[160];
  for (size_t s = 0; s < sc->n_secs; s++) {
    for (size_t i = 0; i < sc->secs[s].n_keys; i++, g++) {
      const cfg_key *k = &sc->secs[s].keys[i];
      if (!(k->flags & F_REQUIRED) || sc->marks[g].line) continue;
      full_key(&sc->secs[s], k, path, sizeof path);
      mark at = sc->at;
      for (size_t p = 0; p < sc->n_pre; p++) /* the section's own key when it is there */
        if (!strcmp(sc->pre[p].path, sc->secs[s].prefix)) at = sc->pre[p].at;
      report(c, at, path, "required");
    }
  }
}

static void endpoint_rules(ctx *c) {
  const pc_config *cfg = c->cfg;
  const struct {
    bool on;
    const char *ep;
    size_t off;
  } eps[] = {{cfg->grpc_enabled, cfg->grpc_endpoint, offsetof(pc_config, grpc_endpoint)},
             {cfg->http_enabled, cfg->http_endpoint, offsetof(pc_config, http_endpoint)},
             {true, cfg->admin_endpoint, offsetof(pc_config, admin_endpoint)}};
  for (size_t i = 1; i < LEN(eps); i++) {
    size_t n = eps[i].ep ? strlen(eps[i].ep) : 0;
    bool any_port = n >= 2 && !strcmp(eps[i].ep + n - 2, ":0"); /* each gets its own port */
    for (size_t j = 0; j < i && !any_port; j++)
      if (eps[i].on && eps[j].on && eps[i].ep && eps[j].ep && !strcmp(eps[i].ep, eps[j].ep))
        report_field(c, &c->root, eps[i].off, "the same address as another listener");
  }
}

/* A request bigger than the whole memory budget could never be admitted. The message goes to
 * whichever of the two keys the file set (the size when both are). */
static void budget_rule(ctx *c, bool enabled, uint64_t size, size_t size_off) {
  const uint64_t limit = c->cfg->memory_limit;
  if (!enabled || size <= limit) return;
  if (field_set(&c->root, size_off) || !field_set(&c->root, offsetof(pc_config, memory_limit))) {
    report_field(c, &c->root, size_off, "larger than limits.memory_limit");
    return;
  }
  char path[200], b[32];
  size_t g;
  row_by_field(&c->root, size_off, &g, path, sizeof path);
  report_field(c, &c->root, offsetof(pc_config, memory_limit),
               "smaller than %s (%s): such a request could never be admitted", path,
               fmt_bytes(size, b, sizeof b));
}

static void receiver_rules(ctx *c) {
  const pc_config *cfg = c->cfg;
  if (!cfg->grpc_enabled && !cfg->http_enabled)
    report_field(c, &c->root,
                 field_set(&c->root, offsetof(pc_config, http_enabled))
                     ? offsetof(pc_config, http_enabled)
                     : offsetof(pc_config, grpc_enabled),
                 "no receiver left: enable grpc or http");
  tls_pair_rules(c, &c->root, &cfg->grpc_tls, offsetof(pc_config, grpc_tls));
  tls_pair_rules(c, &c->root, &cfg->http_tls, offsetof(pc_config, http_tls));
  endpoint_rules(c);
  budget_rule(c, cfg->grpc_enabled, cfg->grpc_max_recv_msg_size,
              offsetof(pc_config, grpc_max_recv_msg_size));
  budget_rule(c, cfg->http_enabled, cfg->http_max_body_size,
              offsetof(pc_config, http_max_body_size));
}

/* ---- entry points ---- */

static int new_config(const char *name, pc_config **out) {
  pc_config *cfg = calloc(1, sizeof *cfg);
  if (!cfg) return PROFILIS_ENOMEM;
  int rc = (cfg->source = strdup(name)) ? 0 : PROFILIS_ENOMEM;
  if (!rc) rc = apply_defaults(config_sections, LEN(config_sections), cfg, 0);
  if (rc) {
    pc_config_free(cfg);
    return rc;
  }
  *out = cfg;
  return 0;
}

static void walk_document(ctx *c, const pc_ynode *root) {
  if (root && !pc_ynode_is_null(root) && root->kind != PC_Y_MAP) {
    report(c, node_mark(root), "config", "expected a mapping of sections, found %s",
           kind_name(root));
    return; /* not a config file at all: the rules below would only add noise */
  }
  if (root && root->kind == PC_Y_MAP) walk_map(c, &c->root, root, "");
  required_rules(c);
  receiver_rules(c);
  template_rules(c);
  route_rules(c);
  tenant_rules(c);
  breaker_rules(c);
}

static int parse_text(ctx *c, const char *yaml, size_t len) {
  static const pc_ylimits lim = {MAX_DEPTH, MAX_NODES, MAX_ANCHORS, MAX_ALIASES};
  pc_ydoc *doc = NULL;
  pc_yerror ye;
  if (len > MAX_FILE_BYTES) {
    pc_errors_add(c->errs, "%s: larger than 1 MiB", c->file);
    return PROFILIS_EINVAL;
  }
  int rc = pc_ydoc_parse(yaml, len, &lim, &doc, &ye);
  if (rc == PROFILIS_EINVAL)
    pc_errors_add(c->errs, "%s:%u:%u: yaml: %s", c->file, ye.line, ye.col, ye.msg);
  if (rc) return rc;
  walk_document(c, pc_ydoc_root(doc));
  pc_ydoc_free(doc);
  return c->oom ? c->oom : c->n_errs ? PROFILIS_EINVAL : 0;
}

int pc_config_parse(const char *yaml, size_t len, const char *name, pc_config **out,
                    pc_errors *errs) {
  pc_errors local = {0};
  ctx *c = NULL;
  int rc = PROFILIS_EINVAL;
  if (!out) return PROFILIS_EINVAL;
  *out = NULL;
  if (!yaml && len) return PROFILIS_EINVAL;
  rc = PROFILIS_ENOMEM;
  if (!(c = calloc(1, sizeof *c))) goto done;
  c->file = name ? name : "<config>";
  c->errs = errs ? errs : &local;
  if ((rc = new_config(c->file, &c->cfg))) goto done;
  c->root = (scope){.secs = config_sections,
                    .n_secs = LEN(config_sections),
                    .base = c->cfg,
                    .display = "",
                    .marks = c->root_marks,
                    .at = {1, 1}};
  rc = parse_text(c, yaml ? yaml : "", len);
done:
  if (!rc)
    *out = c->cfg;
  else if (c)
    pc_config_free(c->cfg);
  free(c);
  pc_errors_free(&local);
  return rc;
}

/* Reads at most max + 1 bytes, so an oversized file is recognised without reading it all. The
 * buffer grows with what is read: a fixed buffer of max bytes, freed at once, would raise
 * glibc's mmap and trim thresholds for the rest of the process and keep freed heap memory
 * resident. Returns 0, PROFILIS_EIO (errno set) or PROFILIS_ENOMEM. */
static int read_bounded(const char *path, char **out, size_t *len, size_t max) {
  FILE *f = fopen(path, "rb");
  if (!f) return PROFILIS_EIO;
  char *buf = NULL;
  size_t n = 0, cap = 0;
  int rc = 0;
  while (n <= max) {
    if (n + 1 >= cap) { /* room for one more byte and the NUL */
      size_t ncap = cap ? cap * 2 : 4096;
      if (ncap > max + 2) ncap = max + 2;
      char *nb = realloc(buf, ncap);
      if (!nb) {
        rc = PROFILIS_ENOMEM;
        break;
      }
      buf = nb;
      cap = ncap;
    }
    size_t want = cap - 1 - n;
    if (want > max + 1 - n) want = max + 1 - n;
    size_t got = fread(buf + n, 1, want, f);
    n += got;
    if (got < want) {
      if (ferror(f)) rc = PROFILIS_EIO;
      break;
    }
  }
  int saved = errno;
  fclose(f);
  errno = saved;
  if (rc) {
    free(buf);
    return rc;
  }
  buf[n] = '\0';
  *out = buf;
  *len = n;
  return 0;
}

int pc_config_load(const char *path, pc_config **out, pc_errors *errs) {
  char *text = NULL;
  size_t len = 0;
  if (!out) return PROFILIS_EINVAL;
  *out = NULL;
  if (!path) return PROFILIS_EINVAL;
  errno = 0;
  int rc = read_bounded(path, &text, &len, MAX_FILE_BYTES);
  if (rc == PROFILIS_EIO)
    pc_errors_add(errs, "%s: cannot read: %s", path, strerror(errno ? errno : EIO));
  if (rc) return rc;
  rc = pc_config_parse(text, len, path, out, errs);
  free(text);
  return rc;
}

/* ---- the reference ---- */

static void doc_type(FILE *f, const cfg_key *k) {
  char lo[32], hi[32];
  switch (k->type) {
  case K_BOOL:
    fputs("boolean", f);
    return;
  case K_STRING:
    fputs(k->kind ? k->kind->doc : "string", f);
    return;
  case K_U32:
  case K_DURATION:
  case K_SIZE:
    fprintf(f, "%s, %s to %s",
            k->type == K_U32    ? "integer"
            : k->type == K_SIZE ? "size"
                                : "duration",
            fmt_bound(k, k->min, lo, sizeof lo), fmt_bound(k, k->max, hi, sizeof hi));
    return;
  case K_ENUM:
    for (const key_choice *c = k->choices; c->name; c++)
      fprintf(f, "%s`%s`", c == k->choices ? "" : c[1].name ? ", " : " or ", c->name);
    return;
  case K_DURATIONS:
    fprintf(f, "list of %llu to %llu durations", (unsigned long long)k->min,
            (unsigned long long)k->max);
    return;
  case K_HEADERS:
    fprintf(f, "map of strings, at most %llu", (unsigned long long)k->max);
    return;
  case K_NAMES:
    fputs("list of exporter names", f);
    return;
  case K_NUMBER:
    fprintf(f, "number, %llu to %llu", (unsigned long long)k->min, (unsigned long long)k->max);
    return;
  case K_STRINGS:
    fprintf(f, "list of %ss, at most %llu", k->kind ? k->kind->doc : "string",
            (unsigned long long)k->max);
    return;
  }
}

static void doc_row(FILE *f, const char *prefix, const cfg_key *k) {
  fprintf(f, "| `%s%s%s` | ", prefix, *prefix ? "." : "", k->key);
  doc_type(f, k);
  if (k->flags & F_REQUIRED)
    fputs(" | required | ", f);
  else if (!k->def)
    fputs(" | (none) | ", f);
  else
    fprintf(f, k->type == K_DURATIONS ? " | `[%s]` | " : " | `%s` | ", k->def);
  fprintf(f, "%s |\n", k->doc);
}

static const char doc_intro[] =
    "The collector reads one YAML file (`--config FILE`); without one it runs the embedded "
    "default. Every key is optional unless marked *required*. "
    "Unknown keys, duplicate keys, wrong types and out-of-range values are errors, and every "
    "error is reported at once as `file:line:column: key.path: message`.\n\n"
    "- **durations**: a number (decimals allowed) and a unit, `ns`, `us`, `ms`, `s`, `m` or `h`: "
    "`200ms`, `1.5s`, `2h`; `0` needs no unit.\n"
    "- **sizes**: bytes as a plain integer, or a number with `B`, `KiB`, `MiB`, `GiB`, `TiB` "
    "(powers of 1024) or `KB`, `MB`, `GB`, `TB` (powers of 1000): `16MiB`, `1.5GB`.\n"
    "- **booleans**: `true` or `false`.\n"
    "- **environment**: `${env:NAME}` in a value is replaced by the variable `NAME`, also inside "
    "a longer string (`\"Bearer ${env:TOKEN}\"`); an unset variable is an error; `$$` is a "
    "literal `$`.\n"
    "- **limits**: the file may hold at most 1 MiB, nesting 32 levels deep and 256 exporters.\n";

static void doc_table_head(FILE *f) {
  fputs("| Key | Type | Default | Meaning |\n|---|---|---|---|\n", f);
}

static const char doc_lb[] =
    "OTLP/gRPC to several collector replicas, each span to the replica that wins the "
    "rendezvous hash of its trace id, so every span of a trace reaches one replica (what tail "
    "sampling needs) and a replica joining or leaving moves only the traces it takes or had. "
    "The replicas are `resolver.static` or the addresses `resolver.hostname` resolves to (a "
    "Kubernetes headless Service), resolved again every `resolver.interval`; a failed "
    "resolution keeps the last set. The otlp settings apply to every replica. A replica that "
    "still fails when `retry.max_elapsed_time` or `timeout` runs out loses its part of the "
    "batch (counted as failed) while the others keep theirs: a batch is retried as a whole "
    "(breaker, queue) only when no replica took anything, so no replica gets a span twice.\n\n";

static void doc_exporters(FILE *f) {
  fputs("\n### `exporters`\n\nEach key names one exporter: its type, optionally followed by "
        "`/label` to tell several of one type apart (`otlp/tempo`, `jsonl/audit`). Its settings "
        "depend on the type; keys below are relative to the exporter.\n\n",
        f);
  for (const key_choice *t = exporter_types; t->name; t++) {
    fprintf(f, "\n#### `%s` exporters\n\n", t->name);
    if (t->value == PC_EXPORTER_LOADBALANCING) fputs(doc_lb, f);
    doc_table_head(f);
    for (size_t i = 0; i < LEN(exporter_keys); i++)
      if (exporter_keys[i].types & (1u << t->value)) doc_row(f, "", &exporter_keys[i]);
  }
}

static void doc_tenants(FILE *f) {
  fputs("\n### `tenants`\n\nA list; each entry is one tenant. Without `tenants` the collector "
        "is single-tenant: nothing is authenticated and every span takes `service.exporters`. "
        "With it, every request must be recognised as a tenant (see `tenancy`), and exporters "
        "whose `path`, `endpoint` or header values contain `${tenant}` run once per tenant on "
        "whose route they are, with the tenant id in its place.\n\n",
        f);
  doc_table_head(f);
  for (size_t i = 0; i < LEN(tenant_keys); i++) doc_row(f, "", &tenant_keys[i]);
  fputs("| `sampling.rules` | list of rules | (none) | see below |\n", f);
  fputs("\n#### `tenants[].sampling.rules`\n\nA list, first match wins; a rule matches a "
        "trace when every condition it sets holds for the trace's root span. Precedence for "
        "a trace: a matching `keep`/`drop` rule, then an ERROR span (`keep_errors`), then a "
        "span at least `latency` long, then a matching `probability` rule, then the adaptive "
        "probability.\n\n",
        f);
  doc_table_head(f);
  for (size_t i = 0; i < LEN(rule_keys); i++) doc_row(f, "", &rule_keys[i]);
}

void pc_config_write_doc(FILE *f) {
  fputs(doc_intro, f);
  for (size_t s = 0; s < LEN(config_sections); s++) {
    const cfg_section *sec = &config_sections[s];
    if (!strcmp(sec->prefix, "service")) doc_exporters(f);
    if (!strcmp(sec->prefix, "tenancy")) doc_tenants(f);
    fprintf(f, "\n### `%s`\n\n%s.\n\n", sec->prefix, sec->doc);
    doc_table_head(f);
    for (size_t i = 0; i < sec->n_keys; i++) doc_row(f, sec->prefix, &sec->keys[i]);
  }
}
