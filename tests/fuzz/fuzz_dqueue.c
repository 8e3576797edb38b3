/* libFuzzer target for the durable queue's record validator (collector/dqueue.c,
 * pc_dq_record_decode): any bytes must be refused with EPROTO or decode to fields that lie
 * inside the input, and whatever decodes must re-encode to exactly the same bytes (the header
 * has no slack a corrupt record could hide in). Each input is tried twice: as it is, and with
 * its CRC field recomputed, so mutations get past the checksum and reach the length checks'
 * success paths too. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "pc_dqueue.h"
#include "profilis/common.h"

static void check(const uint8_t *data, size_t size) {
  pc_dq_record r;
  int rc = pc_dq_record_decode(data, size, &r);
  if (rc) {
    if (rc != PROFILIS_EPROTO) abort();
    return;
  }
  const uint8_t *end = data + size;
  if (r.tenant_len > PC_DQ_TENANT_MAX || (const uint8_t *)r.tenant < data ||
      (const uint8_t *)r.tenant + r.tenant_len > end || r.payload < data ||
      r.payload + r.payload_len != end)
    abort();
  char tenant[PC_DQ_TENANT_MAX + 1];
  memcpy(tenant, r.tenant, r.tenant_len);
  tenant[r.tenant_len] = '\0';
  if (strlen(tenant) != r.tenant_len) return; /* a NUL inside: not something push can make */
  struct iovec part = {(void *)r.payload, r.payload_len};
  pc_dq_input in = {
      .tenant = tenant, .spans = r.spans, .time_ns = r.time_ns, .parts = &part, .n_parts = 1};
  if (pc_dq_record_size(&in) != size) abort();
  uint8_t *again = malloc(size);
  if (!again) return;
  if (pc_dq_record_encode(&in, again, size) || memcmp(again, data, size)) abort();
  free(again);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  check(data, size);
  if (size < 8) return 0;
  uint8_t *fixed = malloc(size);
  if (!fixed) return 0;
  memcpy(fixed, data, size);
  uint32_t c = (uint32_t)crc32_z(crc32_z(0, Z_NULL, 0), fixed + 8, size - 8);
  fixed[4] = (uint8_t)(c >> 24), fixed[5] = (uint8_t)(c >> 16), fixed[6] = (uint8_t)(c >> 8);
  fixed[7] = (uint8_t)c;
  check(fixed, size);
  free(fixed);
  return 0;
}
