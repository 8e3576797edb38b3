/* gRPC framing and response metadata without I/O. Requests are built as one length-prefixed
 * message (gzip through a zlib stream kept between calls); responses go through an incremental
 * parser that accepts DATA bytes in chunks of any size, bounds every length by max_len before
 * allocating, and gunzips into a buffer that may never exceed that bound. Header values are
 * parsed defensively: a bad value degrades to a documented default, never a failure. */
#include "grpc_frame.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "profilis/common.h"

#define PF_GRPC_DEFAULT_MAX (4u << 20)

static const char *const status_names[] = {
    "OK",        "CANCELLED",      "UNKNOWN",           "INVALID_ARGUMENT",   "DEADLINE_EXCEEDED",
    "NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
    "ABORTED",   "OUT_OF_RANGE",   "UNIMPLEMENTED",     "INTERNAL",           "UNAVAILABLE",
    "DATA_LOSS", "UNAUTHENTICATED"};

const char *pf_grpc_status_name(int code) {
  if (code < 0 || code >= (int)(sizeof status_names / sizeof status_names[0]))
    return "UNKNOWN_CODE";
  return status_names[code];
}

/* ---- framing ---- */

void pf_grpc_prefix(uint8_t out[PF_GRPC_PREFIX_LEN], bool compressed, uint32_t len) {
  out[0] = compressed ? 1 : 0;
  out[1] = (uint8_t)(len >> 24);
  out[2] = (uint8_t)(len >> 16);
  out[3] = (uint8_t)(len >> 8);
  out[4] = (uint8_t)len;
}

static int deflater_ready(pf_grpc_deflater *d) {
  if (d->ready) return deflateReset(&d->zs) == Z_OK ? 0 : PROFILIS_EIO;
  memset(&d->zs, 0, sizeof d->zs);
  /* Level 1: span batches compress well even at the fastest level, and the exporter thread
   * has a throughput budget; 16 + window bits selects the gzip wrapper. */
  int zr = deflateInit2(&d->zs, Z_BEST_SPEED, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY);
  if (zr != Z_OK) return zr == Z_MEM_ERROR ? PROFILIS_ENOMEM : PROFILIS_EIO;
  d->ready = true;
  return 0;
}

int pf_grpc_deflate(pf_grpc_deflater *d, const uint8_t *in, size_t n, pf_buf *out) {
  if (n > UINT_MAX) return PROFILIS_EINVAL;
  int rc = deflater_ready(d);
  if (rc) return rc;
  size_t bound = deflateBound(&d->zs, (uLong)n);
  rc = pf_buf_reserve(out, bound);
  if (rc) return rc;
  d->zs.next_in = (Bytef *)(uintptr_t)in;
  d->zs.avail_in = (uInt)n;
  d->zs.next_out = out->p + out->len;
  d->zs.avail_out = (uInt)(bound > UINT_MAX ? UINT_MAX : bound);
  /* deflateBound guarantees one Z_FINISH call completes the stream. */
  int zr = deflate(&d->zs, Z_FINISH);
  if (zr != Z_STREAM_END) return PROFILIS_EIO;
  out->len += d->zs.total_out;
  return 0;
}

void pf_grpc_deflater_free(pf_grpc_deflater *d) {
  if (d->ready) deflateEnd(&d->zs);
  d->ready = false;
}

int pf_grpc_frame_build(pf_buf *out, const uint8_t *msg, size_t n, pf_grpc_deflater *gz) {
  if (n > UINT32_MAX) return PROFILIS_EINVAL;
  size_t start = out->len;
  int rc = pf_buf_reserve(out, PF_GRPC_PREFIX_LEN);
  if (rc) return rc;
  out->len += PF_GRPC_PREFIX_LEN;
  rc = gz ? pf_grpc_deflate(gz, msg, n, out) : pf_buf_append(out, msg, n);
  if (rc) goto fail;
  size_t body = out->len - start - PF_GRPC_PREFIX_LEN;
  if (body > UINT32_MAX) {
    rc = PROFILIS_EINVAL;
    goto fail;
  }
  pf_grpc_prefix(out->p + start, gz != NULL, (uint32_t)body);
  return 0;
fail:
  out->len = start;
  return rc;
}

/* ---- incremental parser ---- */

void pf_grpc_parser_init(pf_grpc_parser *p, uint32_t max_len) {
  memset(p, 0, sizeof *p);
  p->max_len = max_len ? max_len : PF_GRPC_DEFAULT_MAX;
}

void pf_grpc_parser_reset(pf_grpc_parser *p) {
  p->err = 0;
  p->gzip = false;
  p->hdr_have = 0;
  p->need = 0;
  p->msg = NULL;
  p->msg_len = 0;
  pf_buf_reset(&p->body);
  pf_buf_reset(&p->plain);
}

void pf_grpc_parser_free(pf_grpc_parser *p) {
  pf_buf_free(&p->body);
  pf_buf_free(&p->plain);
  if (p->zs_ready) inflateEnd(&p->zs);
  p->zs_ready = false;
}

void pf_grpc_parser_swap_buffer(pf_grpc_parser *p, pf_buf *spare) {
  pf_buf t = p->body;
  p->body = *spare;
  *spare = t;
  pf_buf_reset(&p->body);
  pf_buf_reset(spare);
  p->msg = NULL;
  p->msg_len = 0;
}

bool pf_grpc_parser_midframe(const pf_grpc_parser *p) {
  return p->hdr_have > 0 && (p->hdr_have < PF_GRPC_PREFIX_LEN || p->need > 0);
}

static int inflater_ready(pf_grpc_parser *p) {
  if (p->zs_ready) return inflateReset(&p->zs) == Z_OK ? 0 : PROFILIS_EIO;
  memset(&p->zs, 0, sizeof p->zs);
  int zr = inflateInit2(&p->zs, 16 + MAX_WBITS);
  if (zr != Z_OK) return zr == Z_MEM_ERROR ? PROFILIS_ENOMEM : PROFILIS_EIO;
  p->zs_ready = true;
  return 0;
}

/* Inflates p->body into p->plain, never producing more than max_len bytes. */
static int gunzip_body(pf_grpc_parser *p) {
  int rc = inflater_ready(p);
  if (rc) return rc;
  pf_buf_reset(&p->plain);
  p->zs.next_in = p->body.p;
  p->zs.avail_in = (uInt)p->body.len;
  for (;;) {
    /* One byte past the limit is enough to tell "exactly max_len" from "too large". */
    size_t room = (size_t)p->max_len + 1 - p->plain.len;
    size_t chunk = p->plain.len < 16384 ? 16384 : p->plain.len;
    if (chunk > room) chunk = room;
    rc = pf_buf_reserve(&p->plain, chunk);
    if (rc) return rc;
    p->zs.next_out = p->plain.p + p->plain.len;
    p->zs.avail_out = (uInt)chunk;
    int zr = inflate(&p->zs, Z_NO_FLUSH);
    p->plain.len += chunk - p->zs.avail_out;
    if (p->plain.len > p->max_len) return PROFILIS_ELIMIT;
    if (zr == Z_STREAM_END) return 0;
    if (zr == Z_MEM_ERROR) return PROFILIS_ENOMEM;
    /* Z_BUF_ERROR with output room means the input ran out: a truncated stream. */
    if (zr != Z_OK) return PROFILIS_EPROTO;
    if (p->zs.avail_in == 0 && p->zs.avail_out != 0) return PROFILIS_EPROTO;
  }
}

static int start_frame(pf_grpc_parser *p) {
  if (p->hdr[0] > 1) return PROFILIS_EPROTO;
  if (p->hdr[0] == 1 && !p->gzip) return PROFILIS_EPROTO;
  uint32_t len =
      (uint32_t)p->hdr[1] << 24 | (uint32_t)p->hdr[2] << 16 | (uint32_t)p->hdr[3] << 8 | p->hdr[4];
  if (len > p->max_len) return PROFILIS_ELIMIT;
  p->need = len;
  pf_buf_reset(&p->body);
  return 0;
}

static int finish_frame(pf_grpc_parser *p) {
  bool compressed = p->hdr[0] == 1;
  p->hdr_have = 0;
  if (compressed) {
    int rc = gunzip_body(p);
    if (rc) return rc;
    p->msg = p->plain.p;
    p->msg_len = p->plain.len;
  } else {
    p->msg = p->body.p;
    p->msg_len = p->body.len;
  }
  return 1;
}

int pf_grpc_parser_feed(pf_grpc_parser *p, const uint8_t *data, size_t n, size_t *used) {
  size_t off = 0;
  int rc = p->err;
  p->msg = NULL;
  p->msg_len = 0;
  while (rc == 0 && off < n) {
    if (p->hdr_have < PF_GRPC_PREFIX_LEN) {
      size_t take = PF_GRPC_PREFIX_LEN - p->hdr_have;
      if (take > n - off) take = n - off;
      memcpy(p->hdr + p->hdr_have, data + off, take);
      p->hdr_have = (uint8_t)(p->hdr_have + take);
      off += take;
      if (p->hdr_have < PF_GRPC_PREFIX_LEN) break;
      rc = start_frame(p);
      if (rc == 0 && p->need == 0) rc = finish_frame(p);
      continue;
    }
    size_t take = p->need < n - off ? p->need : n - off;
    rc = pf_buf_append(&p->body, data + off, take);
    if (rc) break;
    off += take;
    p->need -= (uint32_t)take;
    if (p->need == 0) rc = finish_frame(p);
  }
  *used = off;
  if (rc < 0) p->err = rc;
  return rc;
}

/* ---- response metadata ---- */

void pf_grpc_meta_reset(pf_grpc_meta *m) {
  memset(m, 0, sizeof *m);
  m->grpc_status = -1;
  m->pushback_ms = -1;
  m->retry_delay_ms = -1;
}

static bool name_is(const uint8_t *name, size_t nlen, const char *lit) {
  size_t l = strlen(lit);
  return nlen == l && memcmp(name, lit, l) == 0;
}

/* Parses 1..max_digits decimal digits; returns -1 for anything else. */
static int64_t parse_decimal(const uint8_t *v, size_t n, size_t max_digits) {
  if (n == 0 || n > max_digits) return -1;
  int64_t x = 0;
  for (size_t i = 0; i < n; i++) {
    if (v[i] < '0' || v[i] > '9') return -1;
    x = x * 10 + (v[i] - '0');
  }
  return x;
}

static int hexval(uint8_t c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* grpc-message is percent-encoded UTF-8; an invalid escape is kept literally. */
static void decode_message(char *out, size_t cap, const uint8_t *v, size_t n) {
  size_t o = 0;
  for (size_t i = 0; i < n && o + 1 < cap; i++) {
    uint8_t c = v[i];
    if (c == '%' && i + 2 < n && hexval(v[i + 1]) >= 0 && hexval(v[i + 2]) >= 0) {
      c = (uint8_t)(hexval(v[i + 1]) << 4 | hexval(v[i + 2]));
      i += 2;
    }
    /* The text ends up in log lines: keep them one line and free of terminal escapes. */
    out[o++] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
  }
  out[o] = '\0';
}

static void meta_content_type(pf_grpc_meta *m, const uint8_t *v, size_t n) {
  static const char ct[] = "application/grpc";
  size_t l = sizeof ct - 1;
  m->grpc_content_type = n >= l && memcmp(v, ct, l) == 0 && (n == l || v[l] == '+' || v[l] == ';');
}

static void meta_details(pf_grpc_meta *m, const uint8_t *v, size_t n) {
  uint8_t raw[1024];
  int len = pf_grpc_base64_decode((const char *)v, n, raw, sizeof raw);
  if (len > 0) m->retry_delay_ms = pf_grpc_retry_info_ms(raw, (size_t)len);
}

void pf_grpc_meta_header(pf_grpc_meta *m, const uint8_t *name, size_t nlen, const uint8_t *value,
                         size_t vlen) {
  if (name_is(name, nlen, ":status")) {
    int64_t s = parse_decimal(value, vlen, 3);
    m->http_status = s < 0 ? 0 : (int)s;
  } else if (name_is(name, nlen, "grpc-status")) {
    int64_t s = parse_decimal(value, vlen, 4);
    m->grpc_status = (s < 0 || s > PF_GRPC_UNAUTHENTICATED) ? PF_GRPC_UNKNOWN : (int)s;
  } else if (name_is(name, nlen, "grpc-message")) {
    decode_message(m->message, sizeof m->message, value, vlen);
  } else if (name_is(name, nlen, "grpc-encoding")) {
    m->gzip = vlen == 4 && memcmp(value, "gzip", 4) == 0;
    m->bad_encoding = !m->gzip && !(vlen == 8 && memcmp(value, "identity", 8) == 0);
  } else if (name_is(name, nlen, "content-type")) {
    meta_content_type(m, value, vlen);
  } else if (name_is(name, nlen, "grpc-retry-pushback-ms")) {
    /* A negative or unparseable pushback is the server asking not to retry at all. */
    int64_t ms = parse_decimal(value, vlen, 12);
    m->pushback_ms = ms < 0 ? -2 : ms;
  } else if (name_is(name, nlen, "grpc-status-details-bin")) {
    meta_details(m, value, vlen);
  }
}

int pf_grpc_meta_final_status(const pf_grpc_meta *m) {
  if (m->grpc_status >= 0) return m->grpc_status;
  switch (m->http_status) {
  case 400:
    return PF_GRPC_INTERNAL;
  case 401:
    return PF_GRPC_UNAUTHENTICATED;
  case 403:
    return PF_GRPC_PERMISSION_DENIED;
  case 404:
    return PF_GRPC_UNIMPLEMENTED;
  case 429:
  case 502:
  case 503:
  case 504:
    return PF_GRPC_UNAVAILABLE;
  default:
    return PF_GRPC_UNKNOWN;
  }
}

int pf_grpc_status_from_h2_error(uint32_t h2_error) {
  switch (h2_error) {
  case 0x7: /* REFUSED_STREAM: the server did not process the request */
    return PF_GRPC_UNAVAILABLE;
  case 0x8: /* CANCEL */
    return PF_GRPC_CANCELLED;
  case 0xb: /* ENHANCE_YOUR_CALM */
    return PF_GRPC_RESOURCE_EXHAUSTED;
  case 0xc: /* INADEQUATE_SECURITY */
    return PF_GRPC_PERMISSION_DENIED;
  default:
    return PF_GRPC_INTERNAL;
  }
}

/* ---- base64 and RetryInfo ---- */

static int b64val(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+' || c == '-') return 62;
  if (c == '/' || c == '_') return 63;
  return -1;
}

int pf_grpc_base64_decode(const char *in, size_t n, uint8_t *out, size_t cap) {
  while (n > 0 && in[n - 1] == '=') n--;
  if (n % 4 == 1) return PROFILIS_EPROTO;
  size_t olen = n / 4 * 3 + (n % 4 ? n % 4 - 1 : 0);
  if (olen > cap || olen > INT_MAX) return PROFILIS_ELIMIT;
  uint32_t acc = 0;
  size_t bits = 0, o = 0;
  for (size_t i = 0; i < n; i++) {
    int v = b64val(in[i]);
    if (v < 0) return PROFILIS_EPROTO;
    acc = acc << 6 | (uint32_t)v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[o++] = (uint8_t)(acc >> bits);
    }
  }
  return (int)o;
}

static bool ends_with(const uint8_t *p, size_t n, const char *lit) {
  size_t l = strlen(lit);
  return n >= l && memcmp(p + n - l, lit, l) == 0;
}

/* Duration{seconds=1, nanos=2} in ms, rounded up; -1 when invalid. */
static int64_t duration_ms(const uint8_t *p, size_t n) {
  size_t off = 0;
  pf_grpc_pb_field f;
  int64_t secs = 0, nanos = 0;
  int rc;
  while ((rc = pf_grpc_pb_next(p, n, &off, &f)) == 1) {
    if (f.wire != PF_PBW_VARINT) continue;
    if (f.num == 1) secs = (int64_t)f.v;
    if (f.num == 2) nanos = (int32_t)(uint32_t)f.v;
  }
  if (rc < 0 || secs < 0 || secs > 86400 * 365 || nanos < 0 || nanos > 999999999) return -1;
  return secs * 1000 + (nanos + 999999) / 1000000;
}

/* An Any: returns the RetryInfo delay when type_url names RetryInfo, else -1. */
static int64_t any_retry_info(const uint8_t *p, size_t n) {
  size_t off = 0;
  pf_grpc_pb_field f = {0}; /* the analyzer cannot tell pf_grpc_pb_next's 1 always fills it */
  const uint8_t *type = NULL, *val = NULL;
  size_t type_n = 0, val_n = 0;
  int rc;
  while ((rc = pf_grpc_pb_next(p, n, &off, &f)) == 1) {
    if (f.wire != PF_PBW_LEN) continue;
    if (f.num == 1) type = f.p, type_n = f.n;
    if (f.num == 2) val = f.p, val_n = f.n;
  }
  if (rc < 0 || !type || !ends_with(type, type_n, "google.rpc.RetryInfo")) return -1;
  off = 0;
  int64_t ms = -1;
  while (val && (rc = pf_grpc_pb_next(val, val_n, &off, &f)) == 1)
    if (f.num == 1 && f.wire == PF_PBW_LEN) ms = duration_ms(f.p, f.n);
  return rc < 0 ? -1 : ms;
}

int64_t pf_grpc_retry_info_ms(const uint8_t *p, size_t n) {
  size_t off = 0;
  pf_grpc_pb_field f = {0}; /* the analyzer cannot tell pf_grpc_pb_next's 1 always fills it */
  int64_t ms = -1;
  int rc;
  while ((rc = pf_grpc_pb_next(p, n, &off, &f)) == 1) {
    if (f.num == 3 && f.wire == PF_PBW_LEN) {
      int64_t d = any_retry_info(f.p, f.n);
      if (d >= 0) ms = d;
    }
  }
  return rc < 0 ? -1 : ms;
}

/* ---- grpc-timeout ---- */

void pf_grpc_timeout_format(char out[PF_GRPC_TIMEOUT_MAX], uint64_t ns) {
  static const struct {
    uint64_t ns;
    char unit;
  } units[] = {
      {1000000ull, 'm'}, {1000000000ull, 'S'}, {60000000000ull, 'M'}, {3600000000000ull, 'H'}};
  uint64_t v = 0;
  char unit = 'H';
  for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
    v = ns / units[i].ns + (ns % units[i].ns != 0);
    unit = units[i].unit;
    if (v <= 99999999) break;
  }
  if (v == 0) v = 1;
  if (v > 99999999) v = 99999999;
  snprintf(out, PF_GRPC_TIMEOUT_MAX, "%llu%c", (unsigned long long)v, unit);
}

int pf_grpc_timeout_parse(const char *s, size_t n, uint64_t *ns) {
  if (n < 2) return PROFILIS_EINVAL;
  int64_t v = parse_decimal((const uint8_t *)s, n - 1, 8);
  if (v < 0) return PROFILIS_EINVAL;
  uint64_t mult;
  switch (s[n - 1]) {
  case 'H':
    mult = 3600000000000ull;
    break;
  case 'M':
    mult = 60000000000ull;
    break;
  case 'S':
    mult = 1000000000ull;
    break;
  case 'm':
    mult = 1000000ull;
    break;
  case 'u':
    mult = 1000ull;
    break;
  case 'n':
    mult = 1ull;
    break;
  default:
    return PROFILIS_EINVAL;
  }
  /* 99999999 hours does not fit in 64 bits of nanoseconds: saturate instead of wrapping. */
  *ns = (uint64_t)v > UINT64_MAX / mult ? UINT64_MAX : (uint64_t)v * mult;
  return 0;
}

/* ---- endpoints ---- */

static int parse_port(const char *s, size_t n, uint16_t *port) {
  int64_t v = parse_decimal((const uint8_t *)s, n, 5);
  if (v < 1 || v > 65535) return PROFILIS_EINVAL;
  *port = (uint16_t)v;
  return 0;
}

static int copy_host(pf_grpc_endpoint *out, const char *h, size_t n) {
  if (n == 0 || n >= sizeof out->host) return PROFILIS_EINVAL;
  for (size_t i = 0; i < n; i++)
    if ((unsigned char)h[i] <= 0x20 || h[i] == '@' || h[i] == '/') return PROFILIS_EINVAL;
  memcpy(out->host, h, n);
  out->host[n] = '\0';
  return 0;
}

int pf_grpc_endpoint_parse(const char *s, pf_grpc_endpoint *out) {
  memset(out, 0, sizeof *out);
  if (!s) return PROFILIS_EINVAL;
  if (!strncasecmp(s, "http://", 7)) {
    out->scheme = PF_GRPC_SCHEME_HTTP;
    s += 7;
  } else if (!strncasecmp(s, "https://", 8)) {
    out->scheme = PF_GRPC_SCHEME_HTTPS;
    s += 8;
  } else if (strstr(s, "://")) {
    return PROFILIS_EINVAL;
  }
  size_t alen = strcspn(s, "/?#");
  const char *end = s + alen;
  const char *port = NULL;
  int rc;
  if (*s == '[') {
    const char *rb = memchr(s, ']', alen);
    if (!rb) return PROFILIS_EINVAL;
    rc = copy_host(out, s + 1, (size_t)(rb - s - 1));
    if (rb + 1 < end && rb[1] != ':') return PROFILIS_EINVAL;
    if (rb + 1 < end) port = rb + 2;
  } else {
    const char *colon = memchr(s, ':', alen);
    if (colon && memchr(colon + 1, ':', (size_t)(end - colon - 1))) return PROFILIS_EINVAL;
    rc = copy_host(out, s, colon ? (size_t)(colon - s) : alen);
    if (colon) port = colon + 1;
  }
  if (rc) return rc;
  if (port) return parse_port(port, (size_t)(end - port), &out->port);
  out->port = out->scheme == PF_GRPC_SCHEME_HTTPS ? 443 : 4317;
  return 0;
}

/* ---- protobuf wire reader ---- */

int pf_grpc_pb_varint(const uint8_t *p, size_t len, size_t *off, uint64_t *v) {
  uint64_t x = 0;
  for (unsigned i = 0; i < 10; i++) {
    if (*off >= len) return PROFILIS_EPROTO;
    uint8_t b = p[(*off)++];
    x |= (uint64_t)(b & 0x7f) << (7 * i);
    if (!(b & 0x80)) {
      *v = x;
      return 0;
    }
  }
  return PROFILIS_EPROTO;
}

static int read_fixed(const uint8_t *p, size_t len, size_t *off, size_t width, uint64_t *v) {
  if (len - *off < width) return PROFILIS_EPROTO;
  uint64_t x = 0;
  for (size_t i = 0; i < width; i++) x |= (uint64_t)p[*off + i] << (8 * i);
  *off += width;
  *v = x;
  return 0;
}

int pf_grpc_pb_next(const uint8_t *p, size_t len, size_t *off, pf_grpc_pb_field *f) {
  if (*off >= len) return 0;
  uint64_t key;
  int rc = pf_grpc_pb_varint(p, len, off, &key);
  if (rc) return rc;
  f->num = (uint32_t)(key >> 3);
  f->wire = (uint8_t)(key & 7);
  f->v = 0;
  f->p = NULL;
  f->n = 0;
  if (f->num == 0 || key >> 3 > 0x1fffffff) return PROFILIS_EPROTO;
  switch (f->wire) {
  case PF_PBW_VARINT:
    rc = pf_grpc_pb_varint(p, len, off, &f->v);
    break;
  case PF_PBW_I64:
    rc = read_fixed(p, len, off, 8, &f->v);
    break;
  case PF_PBW_I32:
    rc = read_fixed(p, len, off, 4, &f->v);
    break;
  case PF_PBW_LEN:
    rc = pf_grpc_pb_varint(p, len, off, &f->v);
    if (rc == 0 && f->v > len - *off) rc = PROFILIS_EPROTO;
    if (rc == 0) {
      f->p = p + *off;
      f->n = (size_t)f->v;
      *off += f->n;
    }
    break;
  default:
    rc = PROFILIS_EPROTO;
  }
  return rc ? rc : 1;
}
