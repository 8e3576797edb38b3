/* ExportTraceServiceResponse encoders (pc_decode.h), protobuf and OTLP/JSON. Full success is
 * the empty message (zero bytes, or {}); partial_success is present only when spans were
 * rejected or there is something to say, as the OTLP specification asks. */
#include <string.h>

#include "pf_wire.h"
#include "json_write.h"
#include "pc_decode.h"
#include "pf_utf8.h"
#include "profilis/common.h"

int pc_encode_response_proto(pf_buf *out, uint64_t rejected, const char *message) {
  size_t raw = message ? strlen(message) : 0;
  if (!rejected && !raw) return 0;
  size_t mlen = pf_utf8_fixed_len((const uint8_t *)message, raw); /* string fields are UTF-8 */
  size_t body =
      (rejected ? 1 + pf_varint_size(rejected) : 0) + (mlen ? 1 + pf_varint_size(mlen) + mlen : 0);
  int rc = pf_buf_reserve(out, 1 + pf_varint_size(body) + body);
  if (rc) return rc;
  uint8_t *p = out->p + out->len;
  *p++ = 0x0a; /* partial_success = 1, length-delimited */
  p = pf_put_varint(p, body);
  if (rejected) {
    *p++ = 0x08; /* rejected_spans = 1, varint */
    p = pf_put_varint(p, rejected);
  }
  if (mlen) {
    *p++ = 0x12; /* error_message = 2, length-delimited */
    p = pf_put_varint(p, mlen);
    pf_utf8_fix(p, (const uint8_t *)message, raw);
    p += mlen;
  }
  out->len = (size_t)(p - out->p);
  return 0;
}

int pc_encode_response_json(pf_buf *out, uint64_t rejected, const char *message) {
  pf_json j = pf_json_on(out);
  size_t start = out->len;
  if (!rejected && (!message || !*message)) return pf_json_lit(&j, "{}");
  pf_json_lit(&j, "{\"partialSuccess\":{");
  if (rejected) { /* int64 goes out as a decimal string in OTLP/JSON */
    pf_json_lit(&j, "\"rejectedSpans\":\"");
    pf_json_u64(&j, rejected);
    pf_json_lit(&j, "\"");
  }
  if (message && *message) {
    pf_json_lit(&j, rejected ? ",\"errorMessage\":" : "\"errorMessage\":");
    pf_json_cstr(&j, message);
  }
  if (pf_json_lit(&j, "}}")) out->len = start;
  return j.err;
}
