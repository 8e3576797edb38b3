'use strict';
// Times the OpenTelemetry JS SDK on the loop that profilis-bench times as
// span_start_end_2attrs_ns: startSpan + 2 setAttribute + end, always_on sampler, and a
// BatchSpanProcessor whose exporter discards the batches. Spans are made in chunks with a
// turn of the event loop in between: JS has no exporter thread, so this is when the processor
// hands full batches to the exporter (without it the queue fills and spans are dropped).
// Prints "otel_js_ns=<median ns per span over RUNS runs>"; warnings go to stderr.
const { BasicTracerProvider, BatchSpanProcessor, AlwaysOnSampler } =
  require('@opentelemetry/sdk-trace-base');

const RUNS = 7;
const SPANS = Number(process.env.COMPARE_SPANS || 200000);
const CHUNK = 1000;

// An exporter that accepts every batch at once and keeps only a count.
class DiscardExporter {
  constructor() { this.spans = 0; }
  export(spans, done) { this.spans += spans.length; done({ code: 0 }); }
  shutdown() { return Promise.resolve(); }
  forceFlush() { return Promise.resolve(); }
}

const yieldToLoop = () => new Promise((resolve) => setImmediate(resolve));

async function oneRun(tracer, n) {
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i += CHUNK) {
    const end = Math.min(n, i + CHUNK);
    for (let j = i; j < end; j++) {
      const span = tracer.startSpan('bench.op');
      span.setAttribute('http.request.method', 'GET');
      span.setAttribute('http.response.status_code', 200);
      span.end();
    }
    await yieldToLoop();
  }
  return Number(process.hrtime.bigint() - t0) / n;
}

async function main() {
  const exporter = new DiscardExporter();
  const processor = new BatchSpanProcessor(exporter, {
    maxQueueSize: 65536, maxExportBatchSize: 512, scheduledDelayMillis: 100,
  });
  const provider = new BasicTracerProvider({
    sampler: new AlwaysOnSampler(), spanProcessors: [processor],
  });
  const tracer = provider.getTracer('compare-sdk');
  await oneRun(tracer, SPANS); // warm-up: let the JIT settle
  const results = [];
  for (let r = 0; r < RUNS; r++) results.push(await oneRun(tracer, SPANS));
  await provider.forceFlush();
  await provider.shutdown();
  const made = (RUNS + 1) * SPANS;
  if (exporter.spans !== made) {
    console.error(`otel-js-bench: exporter saw ${exporter.spans} of ${made} spans`);
  }
  results.sort((a, b) => a - b);
  console.log(`otel_js_ns=${results[Math.floor(RUNS / 2)].toFixed(1)}`);
}

main().catch((err) => { console.error(err); process.exit(1); });
