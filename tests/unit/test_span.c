/* Span lifecycle through a real provider and batch processor, captured before encoding:
 * parents and the current-span stack, the scoped macro, attributes and limits, events, links,
 * status, sampling, ids. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <cmocka.h>

#include "capture_exporter.h"
#include "pf_provider.h"
#include "profilis/profilis.h"

typedef struct fixture {
  profilis_provider *p;
  profilis_tracer *t;
  cap_exporter *cap;
} fixture;

static fixture fx_new(void (*tweak)(profilis_provider_opts *)) {
  fixture f = {0};
  profilis_provider_opts o;
  profilis_provider_opts_init(&o);
  o.use_env = false;
  o.sampler = PROFILIS_SAMPLER_ALWAYS_ON;
  o.schedule_delay_ms = 10;
  if (tweak) tweak(&o);
  f.cap = cap_new();
  assert_int_equal(pf_provider_new_with_exporter(&f.p, &o, &f.cap->base), 0);
  assert_int_equal(profilis_tracer_get(f.p, "test", "1.0", &f.t), 0);
  return f;
}

static void fx_flush(fixture *f) { assert_int_equal(profilis_provider_force_flush(f->p, 5000), 0); }

static void fx_free(fixture *f) {
  profilis_provider_free(f->p);
  cap_free(f->cap);
}

static void test_parent_child_via_stack(void **state) {
  fixture f = fx_new(NULL);
  profilis_span *root = profilis_span_begin(f.t, "root");
  profilis_context_push(root);
  profilis_span *child = profilis_span_begin(f.t, "child");
  profilis_context_push(child);
  profilis_span *grandchild = profilis_span_begin(f.t, "grandchild");
  profilis_span_end(grandchild);
  profilis_context_pop();
  profilis_span_end(child);
  profilis_span *sibling = profilis_span_begin(f.t, "sibling");
  profilis_span_end(sibling);
  profilis_context_pop();
  profilis_span_end(root);
  assert_null(profilis_context_current());
  fx_flush(&f);
  assert_int_equal(f.cap->n, 4);
  const pf_span_rec *r = cap_find(f.cap, "root"), *c = cap_find(f.cap, "child"),
                    *g = cap_find(f.cap, "grandchild"), *s = cap_find(f.cap, "sibling");
  assert_non_null(r);
  assert_false(r->has_parent);
  assert_memory_equal(c->trace_id, r->trace_id, 16);
  assert_memory_equal(g->trace_id, r->trace_id, 16);
  assert_memory_equal(c->parent_span_id, r->span_id, 8);
  assert_memory_equal(g->parent_span_id, c->span_id, 8);
  assert_memory_equal(s->parent_span_id, r->span_id, 8);
  assert_true(r->end_ns >= r->start_ns);
  assert_int_equal(r->kind, PROFILIS_SPAN_KIND_INTERNAL);
  assert_int_equal(r->trace_flags, PROFILIS_TRACE_FLAG_SAMPLED);
  fx_free(&f);
}

static int scoped_return(profilis_tracer *t) {
  PROFILIS_SPAN(t, "returns") {
    PROFILIS_SPAN(t, "inner_return") { return 7; }
  }
  return 0;
}

static void scoped_goto(profilis_tracer *t) {
  PROFILIS_SPAN(t, "goes") { goto out; }
out:
  PROFILIS_SPAN(t, "after_goto") {}
}

static void test_scoped_macro(void **state) {
  fixture f = fx_new(NULL);
  PROFILIS_SPAN(f.t, "outer") {
    profilis_span_set_int(profilis_context_current(), "depth", 1);
    PROFILIS_SPAN(f.t, "inner") { profilis_span_set_int(profilis_context_current(), "depth", 2); }
    for (int i = 0; i < 3; i++) {
      PROFILIS_SPAN(f.t, "loop") {
        if (i == 1) break; /* leaves the span block only */
      }
    }
  }
  assert_int_equal(scoped_return(f.t), 7);
  scoped_goto(f.t);
  assert_null(profilis_context_current());
  fx_flush(&f);
  assert_int_equal(f.cap->n, 2 + 3 + 2 + 2);
  const pf_span_rec *o = cap_find(f.cap, "outer"), *in = cap_find(f.cap, "inner");
  assert_memory_equal(in->parent_span_id, o->span_id, 8);
  pf_attr_view v = {0};
  assert_true(rec_attr(in, "depth", &v));
  assert_int_equal(pf_rd_i64(v.val), 2);
  const pf_span_rec *ir = cap_find(f.cap, "inner_return"), *rr = cap_find(f.cap, "returns");
  assert_memory_equal(ir->parent_span_id, rr->span_id, 8);
  const pf_span_rec *ag = cap_find(f.cap, "after_goto");
  assert_false(ag->has_parent); /* the goto left "goes": it was popped */
  fx_free(&f);
}

static void limits3(profilis_provider_opts *o) {
  o->attribute_count_limit = 3;
  o->event_count_limit = 2;
  o->link_count_limit = 1;
  o->attribute_value_length_limit = 5;
  o->event_attribute_count_limit = 1;
}

static void test_attributes_and_limits(void **state) {
  fixture f = fx_new(limits3);
  profilis_span *s = profilis_span_begin(f.t, "attrs");
  assert_int_equal(profilis_span_set_str(s, "a", "0123456789"), 0);
  assert_int_equal(profilis_span_set_int(s, "b", 1), 0);
  assert_int_equal(profilis_span_set_int(s, "b", 2), 0); /* overwrite, no new slot */
  assert_int_equal(profilis_span_set_double(s, "c", 1.5), 0);
  assert_int_equal(profilis_span_set_bool(s, "d", true), PROFILIS_ELIMIT);
  assert_int_equal(profilis_span_set_bool(s, "e", true), PROFILIS_ELIMIT);
  int64_t ints[] = {1, 2, 3};
  profilis_attr arr = {.key = "c", .type = PROFILIS_ATTR_INT_ARRAY, .len = 3, .v.ia = ints};
  assert_int_equal(profilis_span_set_attr(s, &arr), 0); /* replaces c */
  assert_int_equal(profilis_span_set_str(s, NULL, "x"), PROFILIS_EINVAL);
  profilis_attr ev[] = {PROFILIS_ATTR_INT("k1", 1), PROFILIS_ATTR_INT("k2", 2)};
  assert_int_equal(profilis_span_add_event(s, "e1", 0, ev, 2), 0);
  assert_int_equal(profilis_span_add_event(s, "e2", 5, NULL, 0), 0);
  assert_int_equal(profilis_span_add_event(s, "e3", 0, NULL, 0), PROFILIS_ELIMIT);
  profilis_span_context lc = {.trace_id = {1}, .span_id = {2}, .trace_flags = 1};
  strcpy(lc.tracestate, "v=1");
  lc.tracestate_len = 3;
  assert_int_equal(profilis_span_add_link(s, &lc, ev, 1), 0);
  assert_int_equal(profilis_span_add_link(s, &lc, NULL, 0), PROFILIS_ELIMIT);
  profilis_span_context zero = {0};
  profilis_span_set_status(s, PROFILIS_STATUS_ERROR, "boom");
  profilis_span_end(s);
  assert_int_equal(profilis_span_add_link(NULL, &zero, NULL, 0), PROFILIS_ENOTRECORDING);
  fx_flush(&f);
  const pf_span_rec *r = cap_find(f.cap, "attrs");
  assert_non_null(r);
  assert_int_equal(r->n_attrs, 3);
  assert_int_equal(r->dropped_attrs, 2);
  pf_attr_view v = {0};
  assert_true(rec_attr(r, "a", &v));
  assert_int_equal(v.val_len, 5);
  assert_memory_equal(v.val, "01234", 5);
  assert_true(rec_attr(r, "b", &v));
  assert_int_equal(pf_rd_i64(v.val), 2);
  assert_true(rec_attr(r, "c", &v));
  assert_int_equal(v.type, PROFILIS_ATTR_INT_ARRAY);
  assert_int_equal(v.val_len, 24);
  assert_int_equal(r->n_events, 2);
  assert_int_equal(r->dropped_events, 1);
  size_t off = 0;
  pf_event_view e = {0};
  assert_true(pf_event_next(pf_rec_events(r), r->events_len, &off, &e));
  assert_int_equal(e.h.n_attrs, 1);
  assert_int_equal(e.h.dropped_attrs, 1);
  assert_memory_equal(e.name, "e1", 2);
  assert_true(pf_event_next(pf_rec_events(r), r->events_len, &off, &e));
  assert_int_equal(e.h.time_ns, 5);
  assert_int_equal(r->n_links, 1);
  assert_int_equal(r->dropped_links, 1);
  off = 0;
  pf_link_view l = {0};
  assert_true(pf_link_next(pf_rec_links(r), r->links_len, &off, &l));
  assert_memory_equal(l.tracestate, "v=1", 3);
  assert_int_equal(l.h.trace_id[0], 1);
  assert_int_equal(r->status_code, PROFILIS_STATUS_ERROR);
  assert_memory_equal(pf_rec_status_msg(r), "boom", 4);
  fx_free(&f);
}

static void test_status_and_exception(void **state) {
  fixture f = fx_new(NULL);
  profilis_span *s = profilis_span_begin(f.t, "exc");
  assert_int_equal(profilis_span_record_exception(s, "IOError", "disk full"), 0);
  profilis_span_end(s);
  profilis_span *ok = profilis_span_begin(f.t, "ok");
  profilis_span_set_status(ok, PROFILIS_STATUS_OK, "ignored");
  profilis_span_set_status(ok, PROFILIS_STATUS_ERROR, "too late"); /* OK is final */
  profilis_span_end(ok);
  fx_flush(&f);
  const pf_span_rec *r = cap_find(f.cap, "exc");
  assert_int_equal(r->status_code, PROFILIS_STATUS_ERROR);
  assert_int_equal(r->status_msg_len, strlen("disk full"));
  size_t off = 0;
  pf_event_view e = {0};
  assert_true(pf_event_next(pf_rec_events(r), r->events_len, &off, &e));
  assert_memory_equal(e.name, "exception", 9);
  assert_int_equal(e.h.n_attrs, 2);
  const pf_span_rec *o = cap_find(f.cap, "ok");
  assert_int_equal(o->status_code, PROFILIS_STATUS_OK);
  assert_int_equal(o->status_msg_len, 0);
  fx_free(&f);
}

static void sampler_off(profilis_provider_opts *o) { o->sampler = PROFILIS_SAMPLER_PARENTBASED_ALWAYS_OFF; }

static void test_sampling_and_remote_parent(void **state) {
  fixture f = fx_new(sampler_off);
  profilis_span *root = profilis_span_begin(f.t, "unsampled-root");
  assert_false(profilis_span_is_recording(root));
  profilis_span_context rc;
  assert_int_equal(profilis_span_get_context(root, &rc), 0);
  assert_true(profilis_span_context_is_valid(&rc));
  assert_int_equal(rc.trace_flags & 1, 0);
  profilis_context_push(root);
  profilis_span *child = profilis_span_begin(f.t, "child-of-unsampled");
  assert_false(profilis_span_is_recording(child));
  profilis_span_context cc;
  profilis_span_get_context(child, &cc);
  assert_memory_equal(cc.trace_id, rc.trace_id, 16);
  profilis_span_end(child);
  profilis_context_pop();
  profilis_span_end(root);

  profilis_span_context remote = {.trace_id = {0xab, 1}, .span_id = {0xcd, 2}, .trace_flags = 1,
                                  .is_remote = 1};
  strcpy(remote.tracestate, "vendor=x");
  remote.tracestate_len = 8;
  profilis_span_opts so = {.size = sizeof so, .kind = PROFILIS_SPAN_KIND_SERVER, .parent = &remote};
  profilis_span *srv;
  assert_int_equal(profilis_span_start(f.t, "server", &so, &srv), 0);
  assert_true(profilis_span_is_recording(srv));
  profilis_span_end(srv);
  fx_flush(&f);
  assert_int_equal(f.cap->n, 1);
  const pf_span_rec *r = f.cap->recs[0];
  assert_memory_equal(r->trace_id, remote.trace_id, 16);
  assert_memory_equal(r->parent_span_id, remote.span_id, 8);
  assert_int_equal(r->kind, PROFILIS_SPAN_KIND_SERVER);
  assert_int_equal(r->tracestate_len, 8);
  assert_memory_equal(pf_rec_tracestate(r), "vendor=x", 8);
  profilis_stats st;
  profilis_provider_stats(f.p, &st);
  assert_int_equal(st.spans_sampled_out, 2);
  assert_int_equal(st.spans_exported, 1);
  fx_free(&f);
}

static void test_ids_unique_nonzero(void **state) {
  fixture f = fx_new(NULL);
  enum { N = 2000 };
  static uint8_t ids[N][8];
  for (int i = 0; i < N; i++) {
    profilis_span *s = profilis_span_begin(f.t, "id");
    profilis_span_context c;
    profilis_span_get_context(s, &c);
    memcpy(ids[i], c.span_id, 8);
    uint8_t z[16] = {0};
    assert_memory_not_equal(c.trace_id, z, 16);
    assert_memory_not_equal(c.span_id, z, 8);
    profilis_span_end(s);
  }
  for (int i = 0; i < N; i++)
    for (int j = i + 1; j < N; j += 97) assert_memory_not_equal(ids[i], ids[j], 8);
  fx_free(&f);
}

static void test_noop_handles_are_safe(void **state) {
  profilis_span *s = NULL;
  assert_int_equal(profilis_span_start(NULL, "x", NULL, &s), PROFILIS_EINVAL);
  assert_non_null(s);
  assert_false(profilis_span_is_recording(s));
  assert_int_equal(profilis_span_set_str(s, "k", "v"), PROFILIS_ENOTRECORDING);
  profilis_span_end(s);
  profilis_span_end(NULL);
  assert_int_equal(profilis_span_set_int(NULL, "k", 1), PROFILIS_ENOTRECORDING);
  profilis_context_pop(); /* empty stack: nothing happens */
}

static void disabled(profilis_provider_opts *o) { o->disabled = true; }

static void test_disabled_sdk(void **state) {
  fixture f = fx_new(disabled);
  profilis_span *s;
  assert_int_equal(profilis_span_start(f.t, "x", NULL, &s), PROFILIS_EDISABLED);
  assert_false(profilis_span_is_recording(s));
  profilis_span_end(s);
  assert_int_equal(profilis_provider_force_flush(f.p, 10), 0);
  profilis_provider_free(f.p);
  cap_free(f.cap);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_parent_child_via_stack), cmocka_unit_test(test_scoped_macro),
      cmocka_unit_test(test_attributes_and_limits),  cmocka_unit_test(test_status_and_exception),
      cmocka_unit_test(test_sampling_and_remote_parent), cmocka_unit_test(test_ids_unique_nonzero),
      cmocka_unit_test(test_noop_handles_are_safe),  cmocka_unit_test(test_disabled_sdk),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
