/* What the OTLP/gRPC and OTLP/HTTP receivers share: the receiver metrics of one protocol, the
 * admit -> decode -> submit step that turns a request body into a reply decision, the
 * google.rpc.Status message (with RetryInfo) both protocols send on errors, and a bounded
 * file reader for TLS material. Sans-I/O except pc_recv_read_file. Internal. */
#ifndef PC_RECV_COMMON_H
#define PC_RECV_COMMON_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pc_metrics.h"
#include "pc_pipeline.h"
#include "pf_buf.h"

#define PC_RECV_STATUS_SLOTS 24 /* distinct status label values per protocol */

/* google.rpc.Code values the receivers use. */
enum {
  PC_RPC_OK = 0,
  PC_RPC_INVALID_ARGUMENT = 3,
  PC_RPC_PERMISSION_DENIED = 7,
  PC_RPC_RESOURCE_EXHAUSTED = 8,
  PC_RPC_UNIMPLEMENTED = 12,
  PC_RPC_INTERNAL = 13,
  PC_RPC_UNAVAILABLE = 14,
  PC_RPC_UNAUTHENTICATED = 16,
};

/* The series of one protocol ("grpc" or "http"), created once at start. */
typedef struct pc_recv_stats {
  pc_metrics *m;
  char protocol[8];
  pc_series *received, *accepted, *rejected, *bytes;
  pc_series *refused_budget, *refused_draining;
  _Atomic(pc_series *) status[PC_RECV_STATUS_SLOTS]; /* requests_total by status, lazily */
} pc_recv_stats;

void pc_recv_stats_init(pc_recv_stats *s, pc_metrics *m, const char *protocol);
/* Counts one request answered with `status` (slot: small index unique per status text). */
void pc_recv_count_request(pc_recv_stats *s, unsigned slot, const char *status);

typedef enum pc_recv_outcome {
  PC_RECV_OK = 0,   /* accepted (rejected may be > 0: partial success) */
  PC_RECV_INVALID,  /* malformed request: message says why */
  PC_RECV_REFUSED,  /* see verdict: pc_recv_refusal_status gives the statuses */
  PC_RECV_INTERNAL, /* out of memory while decoding: retryable */
} pc_recv_outcome;

typedef struct pc_recv_reply {
  pc_recv_outcome outcome;
  pc_verdict verdict; /* for PC_RECV_REFUSED */
  uint32_t retry_after_ms;
  uint64_t rejected; /* invalid spans left out */
  char message[256];
} pc_recv_reply;

/* Early admission for a request of wire_bytes. Returns true when admitted; otherwise fills
 * *reply (PC_RECV_REFUSED). */
bool pc_recv_admit(pc_recv_stats *s, pc_pipeline *p, uint64_t wire_bytes, pc_recv_reply *reply);
/* Fills *reply for a refusal with adm's verdict (PC_RECV_REFUSED, message, retry delay). */
void pc_recv_refusal(pc_recv_reply *reply, const pc_admission *adm);
/* The answer to a refusal: google.rpc code (also the gRPC status), HTTP status, and whether a
 * retry delay goes with it (RetryInfo / Retry-After). Budget and draining: UNAVAILABLE / 503;
 * rate limit and full durable queue: RESOURCE_EXHAUSTED / 429; credentials: UNAUTHENTICATED /
 * 401 and PERMISSION_DENIED / 403, without a retry delay. */
void pc_recv_refusal_status(pc_verdict v, int *rpc_code, unsigned *http_status, bool *retry);
/* Decodes body (OTLP protobuf, or OTLP/JSON when json), submits it and fills *reply; counts
 * bytes, received, accepted, rejected and refused spans. */
struct pc_credentials;
void pc_recv_handle(pc_recv_stats *s, pc_pipeline *p, const struct pc_credentials *cr,
                    const uint8_t *body, size_t len, bool json, pc_recv_reply *reply);

/* Encodes google.rpc.Status{code, message[, details: RetryInfo{retry_delay}]}; the RetryInfo
 * detail is added when retry_ms > 0. Returns 0 or PROFILIS_ENOMEM. */
int pc_rpc_status_encode(pf_buf *out, int code, const char *message, uint32_t retry_ms);
/* The same as OTLP/JSON: {"code":N,"message":"..."[,"details":[{RetryInfo}]]}. */
int pc_rpc_status_encode_json(pf_buf *out, int code, const char *message, uint32_t retry_ms);

/* Reads a whole file of at most max bytes, NUL-terminated (PEM text). Returns 0, or
 * PROFILIS_EIO (logged with the path) or PROFILIS_ENOMEM. */
int pc_recv_read_file(const char *path, size_t max, char **out);

#endif
