/* libFuzzer target for how the gRPC client reads a response besides its framing
 * (exporters/grpc_frame.c, exporters/otlp_exporter.c): headers and trailers folded into
 * pf_grpc_meta (grpc-status, percent-decoded grpc-message, pushback, RetryInfo inside
 * grpc-status-details-bin), the retry classification, the ExportTraceServiceResponse reader,
 * base64, grpc-timeout and endpoint parsing. Input: "name: value" lines up to an empty line, then
 * the response message bytes. Every output must stay within its documented range. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_check.h"
#include "grpc_frame.h"
#include "otlp_exporter.h"
#include "profilis/common.h"

static void check_meta(const pf_grpc_meta *m) {
  size_t len = strnlen(m->message, sizeof m->message);
  CHECK(len < sizeof m->message);
  for (size_t i = 0; i < len; i++)
    CHECK((uint8_t)m->message[i] >= 0x20 && (uint8_t)m->message[i] != 0x7f);
  CHECK(m->http_status >= 0 && m->http_status <= 999);
  CHECK(m->grpc_status >= -1 && m->grpc_status <= PF_GRPC_UNAUTHENTICATED);
  CHECK(m->pushback_ms >= -2);
  CHECK(m->retry_delay_ms >= -1);
  CHECK(!(m->gzip && m->bad_encoding));
  int st = pf_grpc_meta_final_status(m);
  CHECK(st >= 0 && st <= PF_GRPC_UNAUTHENTICATED);
  CHECK(strcmp(pf_grpc_status_name(st), "UNKNOWN_CODE") != 0);
}

/* The retry decision built from what the headers said, as the exporter makes it. */
static void check_classify(const pf_grpc_meta *m) {
  pf_grpc_result res = {.status = pf_grpc_meta_final_status(m),
                        .http_status = m->http_status,
                        .pushback_ms = m->pushback_ms,
                        .retry_delay_ms = m->retry_delay_ms};
  memcpy(res.message, m->message, sizeof res.message);
  int64_t delay = 0;
  int d = pf_otlp_classify(0, &res, &delay);
  CHECK(d == PF_OTLP_DONE || d == PF_OTLP_RETRY || d == PF_OTLP_PERMANENT);
  CHECK((d == PF_OTLP_DONE) == (res.status == PF_GRPC_OK));
  if (d == PF_OTLP_RETRY) CHECK(delay >= -1);
  if (m->pushback_ms == -2 && res.status != PF_GRPC_OK) CHECK(d == PF_OTLP_PERMANENT);
}

/* Values of every header name also go through the stand-alone parsers. */
static void check_value(const uint8_t *v, size_t n) {
  uint8_t raw[512];
  int len = pf_grpc_base64_decode((const char *)v, n, raw, sizeof raw);
  CHECK(len == PROFILIS_EPROTO || len == PROFILIS_ELIMIT || (len >= 0 && (size_t)len <= n));
  if (len > 0) {
    int64_t ms = pf_grpc_retry_info_ms(raw, (size_t)len);
    CHECK(ms >= -1 && ms <= (int64_t)86400 * 365 * 1000 + 1000);
  }
  uint64_t ns = 0;
  if (pf_grpc_timeout_parse((const char *)v, n, &ns) == 0) {
    char out[PF_GRPC_TIMEOUT_MAX];
    pf_grpc_timeout_format(out, ns);
    uint64_t back = 0;
    CHECK(pf_grpc_timeout_parse(out, strlen(out), &back) == 0);
    /* Formatting rounds up to a coarser unit, never down (parse saturates, so this holds). */
    CHECK(back >= ns);
  }
  char s[300];
  if (n < sizeof s && !memchr(v, 0, n)) {
    memcpy(s, v, n);
    s[n] = '\0';
    pf_grpc_endpoint ep;
    if (pf_grpc_endpoint_parse(s, &ep) == 0) {
      size_t hl = strnlen(ep.host, sizeof ep.host);
      CHECK(hl > 0 && hl < sizeof ep.host && ep.port > 0);
      CHECK(ep.scheme >= PF_GRPC_SCHEME_NONE && ep.scheme <= PF_GRPC_SCHEME_HTTPS);
    }
  }
}

static void check_body(const uint8_t *p, size_t n) {
  uint64_t rejected = 1;
  const char *msg = (const char *)1;
  size_t msg_len = 1;
  int rc = pf_otlp_parse_response(p, n, &rejected, &msg, &msg_len);
  CHECK(rc == 0 || rc == PROFILIS_EPROTO);
  CHECK(rejected <= INT64_MAX);
  if (msg) CHECK((const uint8_t *)msg >= p && (const uint8_t *)msg + msg_len <= p + n);
  else CHECK(msg_len == 0);
  int64_t ms = pf_grpc_retry_info_ms(p, n);
  CHECK(ms >= -1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  pf_grpc_meta m;
  pf_grpc_meta_reset(&m);
  check_meta(&m);
  size_t off = 0;
  while (off < size) {
    const uint8_t *nl = memchr(data + off, '\n', size - off);
    size_t end = nl ? (size_t)(nl - data) : size;
    const uint8_t *line = data + off;
    size_t llen = end - off;
    off = nl ? end + 1 : size;
    if (llen == 0) break; /* the message follows */
    /* The name ends at the first ':' after position 0 (pseudo-headers start with one). */
    const uint8_t *colon = llen > 1 ? memchr(line + 1, ':', llen - 1) : NULL;
    size_t nlen = colon ? (size_t)(colon - line) : llen;
    const uint8_t *v = colon ? colon + 1 : line + llen;
    size_t vlen = colon ? llen - nlen - 1 : 0;
    if (vlen && *v == ' ') v++, vlen--;
    pf_grpc_meta_header(&m, line, nlen, v, vlen);
    check_meta(&m);
    check_value(v, vlen);
  }
  check_classify(&m);
  check_body(data + off, size - off);
  return 0;
}
