/* The pipeline between receivers and exporters: admission against the memory budget, span
 * metrics (before any sampling so RED metrics stay exact), then the route: every chunk is
 * queued (by reference) for each exporter on its route, and each exporter's thread batches by
 * size and timeout and exports. Stages that issue 4 adds (tenancy, sampling, breakers, durable
 * queues) slot in between submit and the exporter queues. Thread-safe: receivers call admit and
 * submit from any thread. Internal. */
#ifndef PC_PIPELINE_H
#define PC_PIPELINE_H

#include <stdbool.h>
#include <stdint.h>

#include "pc_chunk.h"
#include "pc_config.h"
#include "pc_metrics.h"
#include "pf_buf.h"

typedef struct pc_pipeline pc_pipeline;

typedef enum pc_verdict {
  PC_ACCEPTED = 0,
  PC_REFUSED_BUDGET,          /* memory budget full: gRPC UNAVAILABLE / HTTP 503, retry-after */
  PC_REFUSED_DRAINING,        /* shutting down: gRPC UNAVAILABLE / HTTP 503 */
  PC_REFUSED_RATE,            /* tenant over its rate limit: RESOURCE_EXHAUSTED+RetryInfo / 429 */
  PC_REFUSED_QUEUE_FULL,      /* a durable queue of the tenant's route is full (refuse policy):
                                 RESOURCE_EXHAUSTED+RetryInfo / 429 */
  PC_REFUSED_UNAUTHENTICATED, /* no or bad credentials: UNAUTHENTICATED / 401 */
  PC_REFUSED_FORBIDDEN,       /* credentials of one tenant naming another: PERMISSION_DENIED / 403 */
} pc_verdict;

typedef struct pc_admission {
  pc_verdict verdict;
  uint32_t retry_after_ms;
  char message[200]; /* why, for the client (never a secret) */
} pc_admission;

struct pc_credentials;

/* Builds the pipeline and starts one thread per exporter. The pipeline keeps its own copies of
 * the exporter settings (cfg may be freed afterwards); metrics may be NULL and must outlive the
 * pipeline. Returns 0, PROFILIS_ENOMEM, PROFILIS_EINVAL (the route names an exporter that is
 * not configured) or PROFILIS_EIO when an exporter cannot start (reason logged). */
int pc_pipeline_new(pc_pipeline **out, const pc_config *cfg, pc_metrics *metrics);

/* Builds the exporter of one exporter config (jsonl and otlp; prometheus has none). The default
 * calls pc_jsonl_exporter_new / pc_otlp_exporter_new; tests substitute recording exporters. */
struct pc_exporter;
typedef int (*pc_exporter_factory)(struct pc_exporter **out, const pc_exporter_cfg *cfg,
                                   void *arg);
/* pc_pipeline_new with another factory, used for every exporter built now and on reload. */
int pc_pipeline_new_with(pc_pipeline **out, const pc_config *cfg, pc_metrics *metrics,
                         pc_exporter_factory factory, void *factory_arg);
/* Cheap early check before reading/decoding a request of wire_bytes: refuses when the budget
 * cannot take it. Returns 0 (see adm->verdict). */
int pc_pipeline_admit(pc_pipeline *p, uint64_t wire_bytes, pc_admission *adm);
/* Hands decoded chunks to the pipeline, all or nothing. On PC_ACCEPTED the pipeline owns the
 * chunks' references and will deliver or count every span; otherwise the caller still owns them.
 * Returns 0 (see adm->verdict). */
int pc_pipeline_submit(pc_pipeline *p, pc_chunk **chunks, size_t n, pc_admission *adm);
/* pc_pipeline_submit for a request with credentials (pc_tenancy.h; NULL = none): tenancy
 * decides each chunk's tenant, then the tenant's rate limit and route apply. */
int pc_pipeline_submit_as(pc_pipeline *p, const struct pc_credentials *cr, pc_chunk **chunks,
                          size_t n, pc_admission *adm);
/* The tenant header name receivers should read (tenancy.header), or NULL when tenants are not
 * configured. Valid until the next reload; copy it. */
void pc_pipeline_tenant_header(pc_pipeline *p, char *out, size_t cap);
/* Appends per-tenant figures as a JSON object (the admin port's /api/tenants): for each tenant
 * its accepted and refused spans, its exporters with breaker state and queue depth, and its
 * sampler figures. Returns 0 or PROFILIS_ENOMEM. */
int pc_pipeline_api_tenants(pc_pipeline *p, pf_buf *out);
/* True when the pipeline wants raw ResourceSpans bytes kept (an otlp exporter exists). */
bool pc_pipeline_keep_raw(const pc_pipeline *p);
/* Bytes charged to the budget now, and the limit. */
uint64_t pc_pipeline_budget_used(const pc_pipeline *p);
uint64_t pc_pipeline_budget_limit(const pc_pipeline *p);
/* Stops accepting (submit refuses with PC_REFUSED_DRAINING), delivers everything accepted
 * within timeout_ms, stops the exporter threads. Returns 0 or PROFILIS_ETIMEDOUT (what was
 * still queued is counted as dropped, never silently). */
int pc_pipeline_drain(pc_pipeline *p, uint32_t timeout_ms);
/* Swaps in a new configuration (SIGHUP): exporters whose settings are unchanged keep their
 * queues; removed and changed ones finish their queues in the background (within
 * limits.drain_timeout), and a changed one's replacement exports only after its predecessor is
 * done. Limits (memory_limit, retry_after, drain_timeout) apply at once. cfg may be freed after
 * the call. Returns 0 or an error (old config stays). */
int pc_pipeline_reload(pc_pipeline *p, const pc_config *cfg);
void pc_pipeline_free(pc_pipeline *p);

struct pc_spanmetrics;
/* The span metrics of the route's prometheus exporter, or NULL when there is none. The pointer
 * stays valid until pc_pipeline_free, even after a reload replaced that exporter. */
struct pc_spanmetrics *pc_pipeline_spanmetrics(pc_pipeline *p);

#endif
