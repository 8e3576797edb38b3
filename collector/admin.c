/* The admin port (libmicrohttpd, one internal thread): /metrics renders the collector's own
 * metrics followed by the span-derived RED metrics of the current pipeline, /healthz answers
 * while the process runs, /readyz follows the ready flag main sets, / lists the endpoints.
 * Read-only: GET and HEAD only. */
#include <microhttpd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pc_receivers.h"
#include "pc_spanmetrics.h"
#include "pf_log.h"
#include "profilis/common.h"

#define ADMIN_MAX_CONNECTIONS 64
#define ADMIN_TIMEOUT_S 10

struct pc_admin {
  struct MHD_Daemon *d;
  pc_admin_sources src;
};

static const char index_html[] =
    "<!doctype html>\n<html><head><meta "
    "charset=\"utf-8\"><title>profilis-collector</title></head>\n"
    "<body><h1>profilis-collector</h1>\n<ul>\n"
    "<li><a href=\"/metrics\">/metrics</a> &mdash; Prometheus metrics (collector and span "
    "RED)</li>\n"
    "<li><a href=\"/healthz\">/healthz</a> &mdash; liveness</li>\n"
    "<li><a href=\"/readyz\">/readyz</a> &mdash; readiness (receivers up, not draining)</li>\n"
    "<li><a href=\"/api/tenants\">/api/tenants</a> &mdash; per-tenant figures as JSON "
    "(accepted and refused spans, exporters with breaker state and durable queue depth, "
    "sampling)</li>\n"
    "</ul></body></html>\n";

static enum MHD_Result reply(struct MHD_Connection *c, unsigned status, const char *type,
                             void *body, size_t len, enum MHD_ResponseMemoryMode mode) {
  struct MHD_Response *resp = MHD_create_response_from_buffer(len, body, mode);
  if (!resp) {
    if (mode == MHD_RESPMEM_MUST_FREE) free(body);
    return MHD_NO;
  }
  MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, type);
  MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
  if (status == MHD_HTTP_METHOD_NOT_ALLOWED)
    MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
  enum MHD_Result ret = MHD_queue_response(c, status, resp);
  MHD_destroy_response(resp);
  return ret;
}

static enum MHD_Result text(struct MHD_Connection *c, unsigned status, const char *s) {
  return reply(c, status, "text/plain; charset=utf-8", (void *)s, strlen(s),
               MHD_RESPMEM_PERSISTENT);
}

static enum MHD_Result metrics(pc_admin *a, struct MHD_Connection *c) {
  pf_buf b = {0};
  int rc = a->src.metrics ? pc_metrics_render(a->src.metrics, &b) : 0;
  struct pc_spanmetrics *sm = a->src.pipeline ? pc_pipeline_spanmetrics(a->src.pipeline) : NULL;
  if (!rc && sm) rc = pc_spanmetrics_render(sm, &b);
  if (rc) {
    pf_buf_free(&b);
    return text(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory rendering metrics\n");
  }
  /* MHD frees the rendered text with free() once it is sent */
  return reply(c, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8", b.p, b.len,
               MHD_RESPMEM_MUST_FREE);
}

static enum MHD_Result api_tenants(pc_admin *a, struct MHD_Connection *c) {
  pf_buf b = {0};
  int rc = a->src.pipeline ? pc_pipeline_api_tenants(a->src.pipeline, &b) : pf_buf_puts(&b, "{}");
  if (rc) {
    pf_buf_free(&b);
    return text(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory rendering /api/tenants\n");
  }
  return reply(c, MHD_HTTP_OK, "application/json", b.p, b.len, MHD_RESPMEM_MUST_FREE);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *upload,
                                  size_t *upload_size, void **con_cls) {
  pc_admin *a = cls;
  if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
    return text(c, MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed\n");
  if (strcmp(url, "/metrics") == 0) return metrics(a, c);
  if (strcmp(url, "/healthz") == 0) return text(c, MHD_HTTP_OK, "ok\n");
  if (strcmp(url, "/api/tenants") == 0) return api_tenants(a, c);
  if (strcmp(url, "/readyz") == 0) {
    bool ready = a->src.ready && atomic_load(a->src.ready);
    return ready ? text(c, MHD_HTTP_OK, "ready\n")
                 : text(c, MHD_HTTP_SERVICE_UNAVAILABLE, "not ready\n");
  }
  if (strcmp(url, "/") == 0)
    return reply(c, MHD_HTTP_OK, "text/html; charset=utf-8", (void *)index_html,
                 sizeof index_html - 1, MHD_RESPMEM_PERSISTENT);
  return text(c, MHD_HTTP_NOT_FOUND, "not found\n");
}

static void mhd_logger(void *cls, const char *fmt, va_list ap) {
  char line[512];
  vsnprintf(line, sizeof line, fmt, ap);
  line[strcspn(line, "\n")] = '\0';
  pf_log(PF_LOG_DEBUG, "admin: %s", line);
}

int pc_admin_start(pc_admin **out, const pc_config *cfg, const pc_admin_sources *src) {
  const char *ep = cfg->admin_endpoint ? cfg->admin_endpoint : "127.0.0.1:8888";
  int fd = -1;
  pc_admin *a = calloc(1, sizeof *a);
  if (!a) return PROFILIS_ENOMEM;
  a->src = *src;
  if (pc_endpoint_listen(ep, 128, &fd)) {
    free(a);
    return PROFILIS_EIO;
  }
  a->d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL | MHD_USE_ERROR_LOG, 0,
                          NULL, NULL, on_request, a, MHD_OPTION_EXTERNAL_LOGGER, mhd_logger, a,
                          MHD_OPTION_LISTEN_SOCKET, fd, MHD_OPTION_CONNECTION_LIMIT,
                          (unsigned)ADMIN_MAX_CONNECTIONS, MHD_OPTION_CONNECTION_TIMEOUT,
                          (unsigned)ADMIN_TIMEOUT_S, MHD_OPTION_END);
  if (!a->d) {
    pf_log(PF_LOG_ERROR, "admin: cannot start on %s", ep); /* libmicrohttpd closed fd */
    free(a);
    return PROFILIS_EIO;
  }
  pf_log(PF_LOG_INFO, "admin listening on %s (/metrics /healthz /readyz /api/tenants)", ep);
  *out = a;
  return 0;
}

void pc_admin_stop(pc_admin *a) {
  if (!a) return;
  MHD_stop_daemon(a->d);
  free(a);
}
