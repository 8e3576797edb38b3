/* The sans-I/O half of the gRPC client: message framing (5-byte prefix, optional gzip), an
 * incremental parser for response DATA bytes, response metadata (grpc-status, grpc-message,
 * retry pushback, RetryInfo), grpc-timeout values, endpoint parsing and a tiny protobuf wire
 * reader. Nothing here touches a socket, so every piece is unit-tested byte by byte. Internal. */
#ifndef PF_GRPC_FRAME_H
#define PF_GRPC_FRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <zlib.h>

#include "pf_buf.h"

#define PF_GRPC_PREFIX_LEN 5

/* gRPC status codes (the numbering every gRPC implementation shares). */
enum {
  PF_GRPC_OK = 0,
  PF_GRPC_CANCELLED = 1,
  PF_GRPC_UNKNOWN = 2,
  PF_GRPC_INVALID_ARGUMENT = 3,
  PF_GRPC_DEADLINE_EXCEEDED = 4,
  PF_GRPC_NOT_FOUND = 5,
  PF_GRPC_ALREADY_EXISTS = 6,
  PF_GRPC_PERMISSION_DENIED = 7,
  PF_GRPC_RESOURCE_EXHAUSTED = 8,
  PF_GRPC_FAILED_PRECONDITION = 9,
  PF_GRPC_ABORTED = 10,
  PF_GRPC_OUT_OF_RANGE = 11,
  PF_GRPC_UNIMPLEMENTED = 12,
  PF_GRPC_INTERNAL = 13,
  PF_GRPC_UNAVAILABLE = 14,
  PF_GRPC_DATA_LOSS = 15,
  PF_GRPC_UNAUTHENTICATED = 16,
};

/* Returns the canonical upper-case name of a status code ("UNAVAILABLE"), or "UNKNOWN_CODE". */
const char *pf_grpc_status_name(int code);

/* ---- framing ---- */

/* Writes the 5-byte message prefix: compressed flag, then the length big-endian. */
void pf_grpc_prefix(uint8_t out[PF_GRPC_PREFIX_LEN], bool compressed, uint32_t len);

/* A gzip compressor whose zlib state is kept between messages (deflateReset, no malloc in
 * steady state). Zero-initialise; pf_grpc_deflater_free releases it. */
typedef struct pf_grpc_deflater {
  z_stream zs;
  bool ready;
} pf_grpc_deflater;

/* Appends the gzip form of in[0..n) to out. Returns 0, PROFILIS_ENOMEM, or PROFILIS_EIO when
 * zlib fails. */
int pf_grpc_deflate(pf_grpc_deflater *d, const uint8_t *in, size_t n, pf_buf *out);
void pf_grpc_deflater_free(pf_grpc_deflater *d);

/* Appends one whole length-prefixed message to out, gzip-compressed when gz is non-NULL.
 * Returns 0, PROFILIS_EINVAL (message of 4 GiB or more), PROFILIS_ENOMEM or PROFILIS_EIO. */
int pf_grpc_frame_build(pf_buf *out, const uint8_t *msg, size_t n, pf_grpc_deflater *gz);

/* ---- incremental response parser ---- */

typedef struct pf_grpc_parser {
  uint32_t max_len; /* largest message accepted, compressed or not */
  bool gzip;        /* the peer declared grpc-encoding: gzip (set before feeding) */
  int err;          /* sticky: once a feed failed, every later feed returns it */
  uint8_t hdr[PF_GRPC_PREFIX_LEN];
  uint8_t hdr_have;
  uint32_t need; /* body bytes still missing for the current frame */
  pf_buf body;   /* the current frame's body */
  pf_buf plain;  /* the gunzipped message when the frame was compressed */
  z_stream zs;
  bool zs_ready;
  const uint8_t *msg; /* the last complete message, valid until the next feed or reset */
  size_t msg_len;
} pf_grpc_parser;

/* Prepares p; max_len 0 means 4 MiB. Allocates nothing. */
void pf_grpc_parser_init(pf_grpc_parser *p, uint32_t max_len);
/* Forgets any partial frame and error for a new stream; keeps the memory. */
void pf_grpc_parser_reset(pf_grpc_parser *p);
void pf_grpc_parser_free(pf_grpc_parser *p);

/* Swaps the parser's message buffer with *spare, both emptied, their memory kept: a server
 * passes one buffer from call to call instead of growing a new one for each message. Only
 * between calls: the last message (p->msg) is forgotten. */
void pf_grpc_parser_swap_buffer(pf_grpc_parser *p, pf_buf *spare);

/* Consumes bytes of the DATA stream. *used says how many bytes were taken. Returns 1 when a
 * message completed (p->msg / p->msg_len hold it; feed the rest of the input afterwards), 0
 * when all input was taken without completing one, or a sticky error: PROFILIS_ELIMIT (length
 * above max_len, or gunzips to more), PROFILIS_EPROTO (flag not 0/1, compressed without gzip
 * encoding, corrupt or truncated gzip), PROFILIS_ENOMEM. */
int pf_grpc_parser_feed(pf_grpc_parser *p, const uint8_t *data, size_t n, size_t *used);

/* True while a frame is half-received (a stream ending now was truncated). */
bool pf_grpc_parser_midframe(const pf_grpc_parser *p);

/* ---- response metadata ---- */

#define PF_GRPC_MESSAGE_MAX 256

typedef struct pf_grpc_meta {
  int http_status;        /* :status, 0 until seen */
  int grpc_status;        /* -1 until seen; unparseable values become UNKNOWN */
  bool gzip;              /* grpc-encoding: gzip */
  bool bad_encoding;      /* grpc-encoding other than identity or gzip */
  bool grpc_content_type; /* content-type application/grpc[+proto|;...] */
  int64_t pushback_ms;    /* grpc-retry-pushback-ms: -1 absent, -2 "do not retry" */
  int64_t retry_delay_ms; /* RetryInfo.retry_delay from grpc-status-details-bin, -1 absent */
  char message[PF_GRPC_MESSAGE_MAX]; /* grpc-message percent-decoded, control bytes as '?' */
} pf_grpc_meta;

void pf_grpc_meta_reset(pf_grpc_meta *m);
/* Folds one response header or trailer (HEADERS in any order, trailers-only responses too)
 * into m. Unknown names are ignored; malformed values never fail, they degrade as documented
 * on the fields. */
void pf_grpc_meta_header(pf_grpc_meta *m, const uint8_t *name, size_t nlen, const uint8_t *value,
                         size_t vlen);
/* The status of a finished call: grpc-status when sent, else derived from the HTTP status as
 * gRPC's HTTP mapping says (200 without grpc-status is UNKNOWN). */
int pf_grpc_meta_final_status(const pf_grpc_meta *m);

/* Maps an HTTP/2 RST_STREAM error code to the gRPC status a client reports for it. */
int pf_grpc_status_from_h2_error(uint32_t h2_error);

/* Decodes a google.rpc.Status (the bytes of grpc-status-details-bin after base64) and returns
 * the RetryInfo delay in ms, or -1 when there is none or the input is malformed. */
int64_t pf_grpc_retry_info_ms(const uint8_t *p, size_t n);

/* Decodes standard or URL-safe base64, padding optional, into out. Returns the decoded length
 * or PROFILIS_EPROTO (bad character) / PROFILIS_ELIMIT (does not fit in cap). */
int pf_grpc_base64_decode(const char *in, size_t n, uint8_t *out, size_t cap);

/* ---- grpc-timeout ---- */

#define PF_GRPC_TIMEOUT_MAX 12
/* Formats a timeout as "<1-8 digits><unit>", the finest of m/S/M/H that fits, rounded up and
 * at least "1m". Writes a NUL-terminated string into out. */
void pf_grpc_timeout_format(char out[PF_GRPC_TIMEOUT_MAX], uint64_t ns);
/* Parses a grpc-timeout value (units H M S m u n). Returns 0 and *ns (saturating) or
 * PROFILIS_EINVAL. */
int pf_grpc_timeout_parse(const char *s, size_t n, uint64_t *ns);

/* ---- endpoints ---- */

enum { PF_GRPC_SCHEME_NONE = 0, PF_GRPC_SCHEME_HTTP, PF_GRPC_SCHEME_HTTPS };

typedef struct pf_grpc_endpoint {
  int scheme;     /* PF_GRPC_SCHEME_* */
  char host[256]; /* without IPv6 brackets */
  uint16_t port;
} pf_grpc_endpoint;

/* Parses "host:port", "http://host:port", "https://host[:port]" or "[v6]:port"; a path after
 * the authority is ignored. A missing port is 443 for https and 4317 otherwise. Returns 0 or
 * PROFILIS_EINVAL. */
int pf_grpc_endpoint_parse(const char *s, pf_grpc_endpoint *out);

/* ---- protobuf wire reader (just enough for responses) ---- */

enum { PF_PBW_VARINT = 0, PF_PBW_I64 = 1, PF_PBW_LEN = 2, PF_PBW_I32 = 5 };

typedef struct pf_grpc_pb_field {
  uint32_t num;
  uint8_t wire;     /* PF_PBW_* */
  uint64_t v;       /* varint, I64 or I32 value */
  const uint8_t *p; /* LEN: the bytes */
  size_t n;
} pf_grpc_pb_field;

/* Reads one varint at *off. Returns 0 or PROFILIS_EPROTO (truncated or longer than 10 bytes). */
int pf_grpc_pb_varint(const uint8_t *p, size_t len, size_t *off, uint64_t *v);
/* Reads the next field of the message in p[0..len) at *off. Returns 1 with *f filled, 0 at the
 * end, or PROFILIS_EPROTO (truncated, field 0, groups or unknown wire types). */
int pf_grpc_pb_next(const uint8_t *p, size_t len, size_t *off, pf_grpc_pb_field *f);

#endif
