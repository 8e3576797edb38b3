/* Adaptive, trace-consistent tail sampler (issue 4). Sans-I/O: chunks go in with the time,
 * decided traces come out as new chunks through a callback; no threads, no clock, no sockets.
 *
 * Per tenant: a target rate of kept traces per second, shared max-min fairly between the
 * (service.name, root span name) operations from their measured arrival rates, so rare
 * operations keep every trace and hot ones are scaled down until the total meets the target.
 * Keep or drop is R >= T (OpenTelemetry consistent probability sampling): R is the trace's
 * 56-bit randomness (the trace id's last 7 bytes, or an explicit ot=rv), T the rejection
 * threshold of the trace's root operation; kept spans carry ot=th:T in their tracestate.
 * Spans wait in a bounded decision window (pc_tracebuf.h) so a trace is decided once, with all
 * its spans: route rules (first match wins), errors and slow spans force a keep. A trace whose
 * root settles it (a keep or drop rule; a probability when errors and latency keep nothing) is
 * decided as the root arrives. Late spans follow the remembered verdict. A load input in
 * [0,1] tightens targets and the window.
 *
 * Not thread-safe: the caller serializes every call on one sampler (the emit callback runs
 * inside offer, tick and flush and must not call back into the sampler). Internal. */
#ifndef PC_SAMPLER_H
#define PC_SAMPLER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pc_chunk.h"

/* ---- OpenTelemetry consistent probability sampling (collector/sampler_th.c) ---- */

#define PC_TH_MAX (1ull << 56) /* a threshold that rejects everything (probability 0) */
#define PC_TH_HEX_MAX 14       /* hex digits of a 56-bit threshold */

/* The rejection threshold (1 - p) * 2^56, rounded to `precision` significant hex digits after
 * the leading f's (the specification recommends 4; 1..14). p >= 1 gives 0, p <= 0 PC_TH_MAX,
 * and any p > 0 at most 2^56 - 1. */
uint64_t pc_th_from_probability(double p, unsigned precision);
/* The probability a threshold keeps: (2^56 - T) / 2^56. */
double pc_th_probability(uint64_t t);
/* Writes T < 2^56 as the th value: 14 hex digits, trailing zeros removed ("0" for 0), and a
 * NUL. out must hold PC_TH_HEX_MAX + 1 bytes. Returns the length. */
size_t pc_th_format(uint64_t t, char *out);
/* Parses a th value (1..14 hex digits, padded with trailing zeros). Returns 0 or
 * PROFILIS_EINVAL. */
int pc_th_parse(const char *s, size_t n, uint64_t *t);
/* The trace id's randomness: bytes 9..15, big-endian. */
uint64_t pc_trace_randomness(const uint8_t trace_id[16]);
/* Finds an explicit randomness value (ot=rv:<14 hex digits>) in a tracestate list.
 * Returns true and sets *rv when present and well-formed. */
bool pc_tracestate_rv(const char *ts, size_t len, uint64_t *rv);
/* Rewrites a tracestate list for a span this stage keeps with threshold t (0 when a rule kept
 * it) given its randomness r: the ot member gets th = max(t, the incoming th), or loses th when
 * the incoming th is inconsistent (r below it); its other sub-keys stay; it moves to the front
 * (W3C: a modified key moves left); members are dropped from the right to stay within 32
 * members and 512 bytes. Writes the result (no NUL) to out, which holds at least
 * PROFILIS_TRACESTATE_MAX bytes. Returns 0, or PROFILIS_EINVAL when the incoming list is not
 * valid W3C tracestate (the caller then keeps it unchanged). */
int pc_tracestate_set_th(const char *in, size_t in_len, uint64_t r, uint64_t t, char *out,
                         size_t cap, size_t *out_len);

/* ---- configuration ---- */

typedef enum pc_sample_action {
  PC_SAMPLE_KEEP = 1,        /* keep every trace (then th:0) */
  PC_SAMPLE_DROP = 2,        /* drop every trace, errors and slow ones included */
  PC_SAMPLE_PROBABILITY = 3, /* a fixed probability instead of the adaptive one */
} pc_sample_action;

/* A route rule, matched against a trace's root span (the span without parent; when none
 * arrived, the earliest-starting held span). Every condition that is set must match; a
 * pattern ending in '*' matches by prefix, otherwise exactly. */
typedef struct pc_sample_rule {
  const char *service;   /* resource service.name */
  const char *span_name; /* the span name */
  /* http.route, url.path or http.target attribute, or the span name itself or its part after
   * the first space ("GET /healthz" matches route /healthz) */
  const char *route;
  const char *attr_key; /* with attr_value: a string attribute of the span */
  const char *attr_value;
  pc_sample_action action;
  double probability; /* PC_SAMPLE_PROBABILITY: in (0, 1] */
} pc_sample_rule;

/* One tenant's policy. Precedence for a trace: the first matching keep/drop rule, then errors,
 * then slow spans, then a matching probability rule, then the adaptive probability. */
typedef struct pc_sample_policy {
  const char *tenant;     /* the tenant id; NULL or "" = the default for every other tenant */
  double target_tps;      /* kept traces per second; <= 0: no adaptive sampling (keep all) */
  double min_probability; /* floor for every adaptive operation (Jaeger's; default 0.001) */
  bool keep_errors;       /* keep traces with an ERROR span (default true) */
  uint64_t latency_ns;    /* keep traces with a span at least this long (0 = off) */
  const pc_sample_rule *rules;
  size_t n_rules;
} pc_sample_policy;

typedef struct pc_sampler_cfg {
  uint64_t window_ns;     /* how long spans wait after a trace's first span (default 5 s) */
  uint32_t max_traces;    /* traces held at most (default 100000) */
  uint64_t max_bytes;     /* span bytes held at most (default 64 MiB) */
  uint32_t decided_cache; /* verdicts remembered for late spans (default 65536) */
  uint64_t adjust_ns;     /* probabilities are recomputed this often (default 1 s) */
  uint64_t rate_tau_ns;   /* time constant of the arrival-rate EWMA (default 2 s) */
  double max_increase;    /* a probability at most multiplies by this per adjust (2) */
  double tolerance;       /* relative changes below this keep the old probability (0.05) */
  unsigned precision;     /* threshold hex digits (default 4) */
  uint32_t max_ops;       /* operations tracked per tenant; the rest share one (1000) */
  uint64_t op_idle_ns;    /* an operation without arrivals this long is forgotten (10 min) */
  double load_start;      /* load above this tightens (default 0.6) */
  double load_floor;      /* target and window factor at load 1 (default 0.1) */
  uint64_t hash_seed;     /* keys the internal hash tables (0: the sampler picks one) */
  const pc_sample_policy *policies;
  size_t n_policies;
} pc_sampler_cfg;

/* Fills defaults: every field 0/NULL becomes its default in pc_sampler_new as well, so a
 * zeroed cfg with policies is valid. */
void pc_sampler_cfg_defaults(pc_sampler_cfg *cfg);
void pc_sample_policy_defaults(pc_sample_policy *p);

/* ---- the sampler ---- */

typedef struct pc_sampler pc_sampler;

/* Receives one chunk of kept spans (all of one resource and tenant, records rewritten with
 * ot=th, modified = true, budget_bytes 0) and owns its reference. */
typedef void (*pc_sampler_emit_fn)(void *arg, pc_chunk *c);

/* Copies cfg (strings and rules included). Returns 0, PROFILIS_ENOMEM, or PROFILIS_EINVAL for
 * an invalid setting (a probability outside (0,1], two policies for one tenant, a rule
 * without conditions or action, max_traces or decided_cache above 16Mi, max_ops above 1Mi, a
 * window over 10 minutes). */
int pc_sampler_new(pc_sampler **out, const pc_sampler_cfg *cfg, pc_sampler_emit_fn emit,
                   void *emit_arg);
/* Swaps in a new configuration (SIGHUP) without losing what is held: tenants that stay keep
 * their measured operations and counters, new ones start fresh, held traces of removed ones
 * fall to the default policy; rules apply to held traces at their decision. Window, limits
 * (max_traces at most what the sampler was built with) and rate settings apply at once;
 * hash_seed and decided_cache keep their first values. Returns 0, or PROFILIS_EINVAL /
 * PROFILIS_ENOMEM with the old configuration still in force. */
int pc_sampler_reload(pc_sampler *s, uint64_t now_ns, const pc_sampler_cfg *cfg);
/* Frees the sampler; held spans are dropped and counted (call pc_sampler_flush first to
 * deliver them). */
void pc_sampler_free(pc_sampler *s);
/* True when the tenant's policy samples at all (a target or rules). When false the caller may
 * pass the tenant's chunks on untouched. */
bool pc_sampler_active(const pc_sampler *s, const char *tenant);
/* Takes in the spans of one chunk (tenant in c->tenant; c is only read, the caller keeps it):
 * spans of decided traces follow the verdict at once, the others wait. Decides traces whose
 * window has passed, and the oldest ones early when the limits are exceeded. now_ns is
 * monotonic. Returns 0; a span that cannot be held or emitted for want of memory is counted
 * (emit_failed_spans), never lost silently. */
int pc_sampler_offer(pc_sampler *s, uint64_t now_ns, const pc_chunk *c);
/* Decides traces whose window has passed and, every adjust_ns, recomputes probabilities.
 * load in [0,1] is the memory budget's fill: above load_start targets and the window shrink
 * linearly to load_floor at 1; below it they return. Call it at least every 100 ms. */
void pc_sampler_tick(pc_sampler *s, uint64_t now_ns, double load);
/* Decides every held trace now (drain, reload). */
void pc_sampler_flush(pc_sampler *s, uint64_t now_ns);

/* ---- statistics ---- */

typedef enum pc_sample_reason {
  PC_REASON_PROBABILITY = 0, /* R >= T with the adaptive threshold */
  PC_REASON_RULE,            /* a keep/drop rule, or a probability rule's threshold */
  PC_REASON_ERROR,
  PC_REASON_LATENCY,
  PC_REASON_COUNT
} pc_sample_reason;

typedef struct pc_sampler_op_stats {
  const char *service;
  const char *name;
  bool overflow;      /* the shared entry of operations beyond max_ops (names "") */
  double rate;        /* arriving traces per second (EWMA) */
  double probability; /* current adaptive probability */
  uint64_t threshold;
  uint64_t kept, dropped; /* traces */
} pc_sampler_op_stats;

typedef struct pc_sampler_tenant_stats {
  const char *tenant;               /* "" for the default policy */
  double target_tps, effective_tps; /* configured, and after load and rule keeps */
  double load_factor;
  double input_tps, kept_tps, forced_tps; /* EWMAs: arriving, kept, kept only by rules */
  uint64_t kept[PC_REASON_COUNT];         /* traces */
  uint64_t dropped[PC_REASON_COUNT];      /* traces (probability and rule only) */
  uint64_t spans_in, spans_kept, spans_dropped;
  uint64_t late_kept, late_dropped; /* spans after their trace's verdict */
  uint64_t early;                   /* traces decided before their window ended (overflow) */
  const pc_sampler_op_stats *ops;   /* valid during the callback */
  size_t n_ops;
} pc_sampler_tenant_stats;

typedef struct pc_sampler_stats {
  uint32_t held_traces;
  uint64_t held_bytes, fixed_bytes;
  uint64_t overflow;          /* early decisions forced by max_traces / max_bytes */
  uint64_t invalid_spans;     /* records that failed validation: dropped and counted */
  uint64_t tracestate_kept;   /* kept spans whose invalid tracestate stayed unchanged */
  uint64_t emit_failed_spans; /* kept spans lost to allocation failure while emitting */
  uint64_t freed_spans;       /* held spans dropped by pc_sampler_free */
} pc_sampler_stats;

void pc_sampler_global_stats(const pc_sampler *s, pc_sampler_stats *out);
/* Calls fn once per tenant policy (the default included) with its figures. */
void pc_sampler_tenant_stats_each(pc_sampler *s,
                                  void (*fn)(void *arg, const pc_sampler_tenant_stats *t),
                                  void *arg);

#endif
