/* OTLP trace request decoders: protobuf (application/x-protobuf, gRPC) and OTLP/JSON, both
 * into chunks (pc_chunk.h), one per ResourceSpans. Sans-I/O and allocation-bounded: every
 * length is checked against the input, nesting depth is capped, and a malformed request is
 * refused whole with a message naming what is wrong. Spans that are well-formed protobuf but
 * invalid OTLP (trace id not 16 bytes or all zero, span id not 8 bytes or zero, parent id not
 * 8 bytes) are rejected individually and counted for partial_success. Internal. */
#ifndef PC_DECODE_H
#define PC_DECODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pc_chunk.h"

#define PC_DECODE_MAX_DEPTH 32 /* AnyValue nesting (kvlist/array) */

typedef struct pc_decode_opts {
  bool keep_raw;        /* keep each ResourceSpans' bytes for pass-through forwarding */
  uint32_t max_spans;   /* refuse a request with more spans (0 = no limit) */
} pc_decode_opts;

typedef struct pc_decode_result {
  pc_chunk **chunks; /* malloc'd array of n_chunks chunks (each with one reference) */
  size_t n_chunks;
  uint64_t n_spans;    /* accepted spans */
  uint64_t rejected;   /* invalid spans left out (partial_success.rejected_spans) */
  char message[256];   /* why spans were rejected, or why the request was refused */
} pc_decode_result;

/* Decodes an ExportTraceServiceRequest. Returns 0 (possibly with rejected spans),
 * PROFILIS_EPROTO for a malformed request (message says why; nothing is returned),
 * PROFILIS_ELIMIT when over max_spans, or PROFILIS_ENOMEM. */
int pc_decode_otlp_proto(const uint8_t *buf, size_t len, const pc_decode_opts *opts,
                         pc_decode_result *out);
/* Same for OTLP/JSON (ids as hex strings, enums as integers, int64 as strings or numbers,
 * lowerCamelCase keys, unknown fields ignored). */
int pc_decode_otlp_json(const uint8_t *buf, size_t len, const pc_decode_opts *opts,
                        pc_decode_result *out);
/* Releases whatever a decode returned (chunks not handed on). */
void pc_decode_result_free(pc_decode_result *r);

/* Encodes an ExportTraceServiceResponse with partial_success (empty message when nothing was
 * rejected) as protobuf or as OTLP/JSON. Returns 0 or PROFILIS_ENOMEM. */
int pc_encode_response_proto(pf_buf *out, uint64_t rejected, const char *message);
int pc_encode_response_json(pf_buf *out, uint64_t rejected, const char *message);

#endif
