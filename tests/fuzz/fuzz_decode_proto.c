/* libFuzzer target for the OTLP protobuf request decoder (collector/decode_proto.c). Any input
 * must decode or be refused with EPROTO, and whatever decodes must keep the invariants in
 * decode_check.h: records that fit, a fixed point under SDK re-encoding, faithful raw bytes. */
#include <stddef.h>
#include <stdint.h>

#include "decode_check.h"
#include "pc_decode.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  pc_decode_result r;
  int rc = pc_decode_otlp_proto(data, size, &(pc_decode_opts){.keep_raw = size % 2 == 0}, &r);
  check_result(rc, &r);
  pc_decode_result_free(&r);
  return 0;
}
