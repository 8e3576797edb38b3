/* Quickstart: the smallest complete Profilis program. The provider takes its settings from the
 * OTEL_* environment (try OTEL_TRACES_EXPORTER=console), the program records one trace with
 * nested spans, attributes and a failed call, then shuts down and prints what happened.
 * Exits 0 when every span reached the exporter. */
#include <profilis/profilis.h>
#include <stdio.h>

/* An explicitly started CLIENT span; its parent is the thread's current span. */
static int charge_card(profilis_tracer *tracer, int64_t cents) {
  profilis_span_opts opts = {.size = sizeof opts, .kind = PROFILIS_SPAN_KIND_CLIENT};
  profilis_span *span;
  profilis_span_start(tracer, "payments.charge", &opts, &span);
  profilis_span_set_int(span, "payment.amount_cents", cents);
  int rc = 0;
  if (cents > 100000) {
    profilis_span_record_exception(span, "CardDeclined", "amount over the card limit");
    rc = -1;
  }
  profilis_span_end(span);
  return rc;
}

int main(void) {
  profilis_provider *provider;
  int rc = profilis_provider_new(&provider, NULL); /* NULL: defaults + OTEL_* variables */
  if (rc != 0) {
    fprintf(stderr, "quickstart: %s\n", profilis_strerror(rc));
    return 1;
  }
  profilis_tracer *tracer;
  profilis_tracer_get(provider, "quickstart", PROFILIS_VERSION, &tracer);

  PROFILIS_SPAN(tracer, "checkout") { /* current span for the block, ended when it is left */
    profilis_span_set_str(profilis_context_current(), "user.id", "u-42");
    PROFILIS_SPAN(tracer, "load_cart") {
      profilis_span_set_int(profilis_context_current(), "cart.items", 3);
    }
    charge_card(tracer, 2599);
    if (charge_card(tracer, 250000) != 0)
      profilis_span_set_status(profilis_context_current(), PROFILIS_STATUS_ERROR, "declined");
  }

  rc = profilis_provider_shutdown(provider, 5000); /* flushes what is queued */
  profilis_stats st;
  profilis_provider_stats(provider, &st);
  printf("spans: ended=%llu exported=%llu dropped=%llu failed=%llu (shutdown: %s)\n",
         (unsigned long long)st.spans_ended, (unsigned long long)st.spans_exported,
         (unsigned long long)st.spans_dropped, (unsigned long long)st.spans_failed,
         profilis_strerror(rc));
  profilis_provider_free(provider);
  return st.spans_exported == st.spans_ended ? 0 : 1;
}
