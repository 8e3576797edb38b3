/* A lean gRPC client for unary calls over HTTP/2 (nghttp2) with optional TLS (OpenSSL), used by
 * the SDK's OTLP exporter and the collector's OTLP exporter. One connection, kept and reused
 * across calls, dropped on any connection error and re-established by the next call. Not
 * thread-safe: one thread owns a client. Internal. */
#ifndef PF_GRPC_CLIENT_H
#define PF_GRPC_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "grpc_frame.h"
#include "pf_config.h"
#include "pf_time.h"

typedef struct pf_grpc_client pf_grpc_client;

typedef struct pf_grpc_client_opts {
  /* "host:port", "http://host:port" or "https://host[:port]"; the scheme does not choose TLS,
   * `tls` does (callers apply their own rules, e.g. OTEL_EXPORTER_OTLP_INSECURE). */
  const char *endpoint;
  bool tls;
  bool tls_no_verify;       /* skip peer and hostname verification (tests only) */
  const char *ca_file;      /* PEM bundle to verify the server; NULL = system default paths */
  const char *cert_file;    /* client certificate chain (PEM) for mTLS; needs key_file */
  const char *key_file;     /* client private key (PEM) */
  const char *authority;    /* :authority and TLS server name; NULL = the endpoint's host:port */
  const pf_header *headers; /* metadata sent on every call; copied (keys lowercased) */
  size_t n_headers;
  bool gzip;             /* compress requests and accept gzip responses */
  uint32_t max_response; /* largest response message, bytes; 0 = 4 MiB */
} pf_grpc_client_opts;

typedef struct pf_grpc_result {
  int status;                        /* gRPC status code (PF_GRPC_*) */
  int http_status;                   /* :status of the response, 0 when none arrived */
  int64_t pushback_ms;               /* grpc-retry-pushback-ms: -1 absent, -2 "do not retry" */
  int64_t retry_delay_ms;            /* RetryInfo from grpc-status-details-bin, -1 absent */
  char message[PF_GRPC_MESSAGE_MAX]; /* grpc-message, or a description of a local failure */
  const uint8_t *msg;                /* response message, owned by the client until the next call */
  size_t msg_len;
} pf_grpc_result;

typedef struct pf_grpc_client_stats {
  uint64_t connects; /* connections established (TCP + TLS + HTTP/2 preface) */
  uint64_t calls;    /* calls that produced a gRPC status */
} pf_grpc_client_stats;

/* Creates a client. Nothing is connected yet; TLS files are loaded now so a bad path fails
 * early. Returns 0, PROFILIS_EINVAL (bad endpoint, cert without key), PROFILIS_EIO
 * (unreadable or invalid CA / certificate / key file, logged) or PROFILIS_ENOMEM. */
int pf_grpc_client_new(pf_grpc_client **out, const pf_grpc_client_opts *opts);

/* Performs one unary call of `path` (e.g. "/pkg.Service/Method") with the serialized request
 * msg[0..len), connecting first when needed. The request bytes are sent straight from msg
 * (no copy without gzip). Blocks at most until dl (each wait is capped at 50 ms so dl->cancel
 * is seen promptly); only resolving a host name (getaddrinfo) cannot be cut short. Returns 0 when
 * the call completed with a gRPC status (any code, OK included) and fills *res; otherwise a
 * transport failure: PROFILIS_ECONNECT (connect refused, peer closed or reset), PROFILIS_ETLS
 * (handshake or verification failed), PROFILIS_EPROTO (HTTP/2 or gRPC framing violation, oversized
 * response), PROFILIS_ETIMEDOUT (dl passed), PROFILIS_ECANCELED (dl->cancel set), PROFILIS_EINVAL
 * or PROFILIS_ENOMEM; res->message then says what happened. A failure during the call drops the
 * connection; a deadline that passed before the call returns at once and keeps it. */
int pf_grpc_client_unary(pf_grpc_client *c, const char *path, const uint8_t *msg, size_t len,
                         const pf_deadline *dl, pf_grpc_result *res);

/* Drops the connection without sending anything to the peer (no GOAWAY, no TLS close_notify):
 * for a forked child that inherited the parent's connection. The next call reconnects. */
void pf_grpc_client_reset(pf_grpc_client *c);

/* Copies the client's counters. */
void pf_grpc_client_get_stats(const pf_grpc_client *c, pf_grpc_client_stats *out);

/* Closes the connection (politely when connected) and frees c. NULL is fine. */
void pf_grpc_client_free(pf_grpc_client *c);

#endif
