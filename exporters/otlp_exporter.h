/* Pieces of the OTLP/gRPC exporter that other code reuses and tests reach directly: the retry
 * classification of a finished attempt and the ExportTraceServiceResponse reader. The
 * exporter itself is built with pf_otlp_exporter_new (pf_exporter.h). Internal. */
#ifndef PF_OTLP_EXPORTER_H
#define PF_OTLP_EXPORTER_H

#include <stddef.h>
#include <stdint.h>

#include "grpc_client.h"

#define PF_OTLP_TRACE_EXPORT_PATH "/opentelemetry.proto.collector.trace.v1.TraceService/Export"

enum { PF_OTLP_DONE = 0, PF_OTLP_RETRY = 1, PF_OTLP_PERMANENT = 2 };

/* What to do after one attempt that returned rc (with res filled by pf_grpc_client_unary):
 * PF_OTLP_DONE (status OK), PF_OTLP_RETRY (retryable status or transport failure), or
 * PF_OTLP_PERMANENT. For retries *server_delay_ms is the delay the server asked for
 * (grpc-retry-pushback-ms or RetryInfo), -1 when it asked for none. RESOURCE_EXHAUSTED is
 * retried only with such a delay; a negative pushback forbids any retry; ECANCELED is
 * PF_OTLP_PERMANENT (the caller stops). */
int pf_otlp_classify(int rc, const pf_grpc_result *res, int64_t *server_delay_ms);

/* Reads ExportTraceServiceResponse.partial_success: *rejected (rejected_spans, 0 when absent
 * or negative) and the error_message bytes (*msg NULL when absent). Returns 0 or
 * PROFILIS_EPROTO for malformed bytes (outputs then hold what was read before). */
int pf_otlp_parse_response(const uint8_t *p, size_t n, uint64_t *rejected, const char **msg,
                           size_t *msg_len);

#endif
