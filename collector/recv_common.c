/* The part of request handling both OTLP receivers share. A body is admitted against the
 * memory budget, decoded into chunks, and submitted all or nothing; the outcome (accepted with
 * maybe some spans rejected, malformed, refused, internal failure) is what the transport turns
 * into its own status. google.rpc.Status and RetryInfo are three tiny messages, so they are
 * written by hand here rather than compiled from protos the project does not ship. */
#include "recv_common.h"
#include "pc_tenancy.h"

#include "pf_wire.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "json_write.h"
#include "pc_decode.h"
#include "pf_log.h"
#include "profilis/common.h"

#define RETRY_INFO_TYPE "type.googleapis.com/google.rpc.RetryInfo"

static pc_series *counter(pc_metrics *m, const char *name, const char *help, const char *labels) {
  return pc_metrics_series(m, PC_COUNTER, name, help, labels);
}

void pc_recv_stats_init(pc_recv_stats *s, pc_metrics *m, const char *protocol) {
  char l[64], lr[96];
  memset(s, 0, sizeof *s);
  s->m = m;
  snprintf(s->protocol, sizeof s->protocol, "%s", protocol);
  if (!m) return; /* no metrics: every update is skipped */
  snprintf(l, sizeof l, "protocol=\"%s\"", s->protocol);
  s->received =
      counter(m, "profilis_receiver_received_spans_total",
              "Spans decoded from well-formed requests (accepted, refused or rejected).", l);
  s->accepted =
      counter(m, "profilis_receiver_accepted_spans_total", "Spans handed to the pipeline.", l);
  s->rejected = counter(m, "profilis_receiver_rejected_spans_total",
                        "Invalid spans left out of a request (partial success).", l);
  s->bytes = counter(m, "profilis_receiver_bytes_total",
                     "Request payload bytes (HTTP: the body as sent; gRPC: the message).", l);
  const char *help_refused = "Decoded spans refused with a retryable status, by reason. Requests "
                             "refused before decoding count only in requests_total.";
  snprintf(lr, sizeof lr, "%s,reason=\"budget\"", l);
  s->refused_budget = counter(m, "profilis_receiver_refused_spans_total", help_refused, lr);
  snprintf(lr, sizeof lr, "%s,reason=\"draining\"", l);
  s->refused_draining = counter(m, "profilis_receiver_refused_spans_total", help_refused, lr);
}

void pc_recv_count_request(pc_recv_stats *s, unsigned slot, const char *status) {
  if (!s->m || slot >= PC_RECV_STATUS_SLOTS) return;
  pc_series *ser = atomic_load_explicit(&s->status[slot], memory_order_acquire);
  if (!ser) {
    char l[96];
    snprintf(l, sizeof l, "protocol=\"%s\",status=\"%s\"", s->protocol, status);
    /* get-or-create is idempotent, so two threads racing here store the same pointer */
    ser = counter(s->m, "profilis_receiver_requests_total",
                  "Requests answered, by status (gRPC calls the core ended before a reply, such "
                  "as a message over max_recv_msg_size, count as CANCELLED).",
                  l);
    atomic_store_explicit(&s->status[slot], ser, memory_order_release);
  }
  pc_counter_add(ser, 1);
}

void pc_recv_refusal_status(pc_verdict v, int *rpc_code, unsigned *http_status, bool *retry) {
  *retry = true;
  switch (v) {
  case PC_REFUSED_RATE:
  case PC_REFUSED_QUEUE_FULL:
    *rpc_code = PC_RPC_RESOURCE_EXHAUSTED;
    *http_status = 429;
    return;
  case PC_REFUSED_UNAUTHENTICATED:
    *rpc_code = PC_RPC_UNAUTHENTICATED;
    *http_status = 401;
    *retry = false;
    return;
  case PC_REFUSED_FORBIDDEN:
    *rpc_code = PC_RPC_PERMISSION_DENIED;
    *http_status = 403;
    *retry = false;
    return;
  default:
    *rpc_code = PC_RPC_UNAVAILABLE;
    *http_status = 503;
    return;
  }
}

void pc_recv_refusal(pc_recv_reply *r, const pc_admission *adm) {
  memset(r, 0, sizeof *r);
  r->outcome = PC_RECV_REFUSED;
  r->verdict = adm->verdict;
  int code;
  unsigned http;
  bool retry;
  pc_recv_refusal_status(adm->verdict, &code, &http, &retry);
  r->retry_after_ms = !retry ? 0 : adm->retry_after_ms ? adm->retry_after_ms : 1000;
  const char *dflt = adm->verdict == PC_REFUSED_DRAINING ? "collector is shutting down"
                     : adm->verdict == PC_REFUSED_BUDGET ? "memory budget exhausted, retry later"
                                                         : "refused";
  snprintf(r->message, sizeof r->message, "%s", adm->message[0] ? adm->message : dflt);
}

bool pc_recv_admit(pc_recv_stats *s, pc_pipeline *p, uint64_t wire_bytes, pc_recv_reply *reply) {
  pc_admission adm = {.verdict = PC_ACCEPTED};
  memset(reply, 0, sizeof *reply);
  if (pc_pipeline_admit(p, wire_bytes, &adm) == 0 && adm.verdict == PC_ACCEPTED) return true;
  if (adm.verdict == PC_ACCEPTED) adm.verdict = PC_REFUSED_BUDGET; /* admit itself failed */
  pc_recv_refusal(reply, &adm);
  return false;
}

static void submit(pc_recv_stats *s, pc_pipeline *p, const pc_credentials *cr, pc_decode_result *d,
                   pc_recv_reply *reply) {
  pc_admission adm = {.verdict = PC_ACCEPTED};
  /* An empty request still goes through: its credentials are checked all the same. */
  int rc = pc_pipeline_submit_as(p, cr, d->chunks, d->n_chunks, &adm);
  if (rc == 0 && adm.verdict == PC_ACCEPTED) {
    pc_counter_add(s->accepted, d->n_spans);
    d->n_chunks = 0; /* the pipeline holds the chunk references now; only the array is ours */
    return;
  }
  if (rc) {
    reply->outcome = PC_RECV_INTERNAL;
    snprintf(reply->message, sizeof reply->message, "cannot queue spans: %s",
             profilis_strerror(rc));
    return;
  }
  if (adm.verdict == PC_REFUSED_DRAINING || adm.verdict == PC_REFUSED_BUDGET)
    pc_counter_add(adm.verdict == PC_REFUSED_DRAINING ? s->refused_draining : s->refused_budget,
                   d->n_spans); /* the other reasons are counted per tenant by the pipeline */
  pc_recv_refusal(reply, &adm);
}

void pc_recv_handle(pc_recv_stats *s, pc_pipeline *p, const pc_credentials *cr,
                    const uint8_t *body, size_t len, bool json, pc_recv_reply *reply) {
  pc_decode_opts o = {.keep_raw = pc_pipeline_keep_raw(p), .max_spans = 0};
  pc_decode_result d;
  memset(&d, 0, sizeof d);
  memset(reply, 0, sizeof *reply);
  pc_counter_add(s->bytes, len);
  int rc = json ? pc_decode_otlp_json(body, len, &o, &d) : pc_decode_otlp_proto(body, len, &o, &d);
  if (rc == PROFILIS_ENOMEM) {
    reply->outcome = PC_RECV_INTERNAL;
    snprintf(reply->message, sizeof reply->message, "out of memory while decoding the request");
  } else if (rc) {
    reply->outcome = PC_RECV_INVALID;
    snprintf(reply->message, sizeof reply->message, "%s",
             d.message[0] ? d.message : "malformed ExportTraceServiceRequest");
  } else {
    pc_counter_add(s->received, d.n_spans + d.rejected);
    pc_counter_add(s->rejected, d.rejected);
    reply->rejected = d.rejected;
    if (d.rejected) snprintf(reply->message, sizeof reply->message, "%s", d.message);
    submit(s, p, cr, &d, reply);
  }
  pc_decode_result_free(&d);
}

/* ---- google.rpc.Status on the wire ---- */

/* A length-delimited field whose payload is already encoded. */
static int put_bytes(pf_buf *b, unsigned field, const void *p, size_t n) {
  int rc = pf_buf_put_varint(b, (uint64_t)field << 3 | 2);
  if (!rc) rc = pf_buf_put_varint(b, n);
  if (!rc) rc = pf_buf_append(b, p, n);
  return rc;
}

/* Any{type_url, value: RetryInfo{retry_delay: Duration{seconds, nanos}}}, built inside out. */
static int put_retry_info(pf_buf *out, uint32_t retry_ms) {
  pf_buf dur = {0}, ri = {0}, any = {0};
  int rc = pf_buf_put_varint(&dur, 1 << 3);
  if (!rc) rc = pf_buf_put_varint(&dur, retry_ms / 1000);
  if (!rc && retry_ms % 1000) rc = pf_buf_put_varint(&dur, 2 << 3);
  if (!rc && retry_ms % 1000)
    rc = pf_buf_put_varint(&dur, (uint64_t)(retry_ms % 1000) * 1000000u);
  if (!rc) rc = put_bytes(&ri, 1, dur.p, dur.len);
  if (!rc) rc = put_bytes(&any, 1, RETRY_INFO_TYPE, strlen(RETRY_INFO_TYPE));
  if (!rc) rc = put_bytes(&any, 2, ri.p, ri.len);
  if (!rc) rc = put_bytes(out, 3, any.p, any.len);
  pf_buf_free(&dur);
  pf_buf_free(&ri);
  pf_buf_free(&any);
  return rc;
}

int pc_rpc_status_encode(pf_buf *out, int code, const char *message, uint32_t retry_ms) {
  int rc = 0;
  if (code != 0) {
    rc = pf_buf_put_varint(out, 1 << 3);
    if (!rc) rc = pf_buf_put_varint(out, (uint64_t)(uint32_t)code);
  }
  if (!rc && message && *message) rc = put_bytes(out, 2, message, strlen(message));
  if (!rc && retry_ms > 0) rc = put_retry_info(out, retry_ms);
  return rc;
}

int pc_rpc_status_encode_json(pf_buf *out, int code, const char *message, uint32_t retry_ms) {
  pf_json j = pf_json_on(out);
  pf_json_lit(&j, "{\"code\":");
  pf_json_i64(&j, code);
  pf_json_lit(&j, ",\"message\":");
  pf_json_cstr(&j, message);
  if (retry_ms > 0) {
    char delay[32];
    snprintf(delay, sizeof delay, "\"%u.%03us\"", retry_ms / 1000, retry_ms % 1000);
    pf_json_lit(&j, ",\"details\":[{\"@type\":\"" RETRY_INFO_TYPE "\",\"retryDelay\":");
    pf_json_lit(&j, delay);
    pf_json_lit(&j, "}]");
  }
  return pf_json_lit(&j, "}");
}

/* ---- TLS material ---- */

int pc_recv_read_file(const char *path, size_t max, char **out) {
  int rc = PROFILIS_EIO;
  char *buf = NULL;
  FILE *f = fopen(path, "rb");
  struct stat st;
  if (!f || fstat(fileno(f), &st) != 0) goto fail;
  if (!S_ISREG(st.st_mode) || (uint64_t)st.st_size > max) {
    errno = S_ISREG(st.st_mode) ? EFBIG : EINVAL;
    goto fail;
  }
  buf = malloc((size_t)st.st_size + 1);
  if (!buf) {
    rc = PROFILIS_ENOMEM;
    goto done;
  }
  size_t n = fread(buf, 1, (size_t)st.st_size, f);
  if (ferror(f)) goto fail;
  buf[n] = '\0';
  *out = buf;
  buf = NULL;
  rc = 0;
  goto done;
fail:
  pf_log(PF_LOG_ERROR, "cannot read %s: %s", path, strerror(errno ? errno : EIO));
done:
  free(buf);
  if (f) fclose(f);
  return rc;
}
