/* libFuzzer target for the OTLP/JSON request decoder (collector/decode_json.c, json_parse.c).
 * Any input must decode or be refused with EPROTO (a message with its line and column), and
 * whatever decodes must keep the invariants in decode_check.h, raw bytes included. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "decode_check.h"
#include "pc_decode.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  pc_decode_result r;
  int rc = pc_decode_otlp_json(data, size, &(pc_decode_opts){.keep_raw = true}, &r);
  check_result(rc, &r);
  if (rc == PROFILIS_EPROTO) CHECK(strstr(r.message, "line ") != NULL);
  pc_decode_result_free(&r);
  return 0;
}
