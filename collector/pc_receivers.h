/* OTLP receivers and the admin server. Each decodes what arrives, asks the pipeline for
 * admission and submits; the reply follows the OTLP rules (gRPC status / HTTP status, the
 * partial_success response, retry hints on refusal). Internal. */
#ifndef PC_RECEIVERS_H
#define PC_RECEIVERS_H

#include <stdatomic.h>
#include <stdbool.h>

#include "pc_config.h"
#include "pc_metrics.h"
#include "pc_pipeline.h"

typedef struct pc_grpc_receiver pc_grpc_receiver;
typedef struct pc_http_receiver pc_http_receiver;
typedef struct pc_admin pc_admin;

/* Starts OTLP/gRPC on cfg->grpc_endpoint (nghttp2 server). Returns 0, PROFILIS_EIO (cannot
 * bind, bad TLS files; reason logged) or PROFILIS_ENOMEM. */
int pc_grpc_receiver_start(pc_grpc_receiver **out, const pc_config *cfg, pc_pipeline *p,
                           pc_metrics *m);
/* Stops accepting new calls, waits for calls in progress, frees. */
void pc_grpc_receiver_stop(pc_grpc_receiver *r);
/* Serves one plain HTTP/2 client connection whose bytes are p[0..n), in the calling thread and
 * without a socket (the fuzz target's way in); what the server answers is counted into
 * *out_bytes and dropped. Returns 0, or PROFILIS_EPROTO when the server would have closed the
 * connection for a protocol error (ENOMEM likewise). */
int pc_grpc_receiver_feed(pc_grpc_receiver *r, const uint8_t *p, size_t n, size_t *out_bytes);
/* Request bytes the receiver holds for calls still arriving (0 once their connections close). */
size_t pc_grpc_receiver_held(const pc_grpc_receiver *r);

/* Starts OTLP/HTTP on cfg->http_endpoint (libmicrohttpd). Returns as the gRPC one. */
int pc_http_receiver_start(pc_http_receiver **out, const pc_config *cfg, pc_pipeline *p,
                           pc_metrics *m);
void pc_http_receiver_stop(pc_http_receiver *r);
/* Hands the receiver a socket that is already connected to a client (inherited through socket
 * activation, one end of a socketpair as in the fuzz target): it is served like an accepted
 * connection, on the same threads and request path. The receiver owns fd from the call on and
 * closes it, also on failure. Returns 0 or PROFILIS_EIO (over the connection limit, no memory).
 * Not after pc_http_receiver_stop has begun. */
int pc_http_receiver_add_connection(pc_http_receiver *r, int fd);
/* Connections the receiver holds now: accepted or added and not yet closed and freed. */
unsigned pc_http_receiver_connections(pc_http_receiver *r);

/* What the admin port shows. `ready` is set by main once receivers listen and cleared while
 * draining. */
typedef struct pc_admin_sources {
  pc_metrics *metrics;
  pc_pipeline *pipeline; /* for span metrics and budget figures; may change on reload */
  atomic_bool *ready;
} pc_admin_sources;

/* Starts /metrics, /healthz, /readyz (and / and /api/ later) on cfg->admin_endpoint. */
int pc_admin_start(pc_admin **out, const pc_config *cfg, const pc_admin_sources *src);
void pc_admin_stop(pc_admin *a);

/* Splits "host:port" (IPv4, [IPv6] or a name). Returns 0 or PROFILIS_EINVAL. ":port" means
 * every IPv4 interface (host "0.0.0.0"); the port must be 1..65535; brackets are removed from
 * an IPv6 host. */
int pc_parse_endpoint(const char *ep, char *host, size_t host_cap, uint16_t *port);
/* Resolves ep and returns a non-blocking, close-on-exec listening TCP socket in *fd.
 * Returns 0, PROFILIS_EINVAL (bad endpoint) or PROFILIS_EIO (cannot resolve or bind; logged). */
int pc_endpoint_listen(const char *ep, int backlog, int *fd);

#endif
