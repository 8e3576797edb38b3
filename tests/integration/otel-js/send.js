// Sends a known set of spans to an OTLP endpoint with the OpenTelemetry JS SDK and prints a
// manifest (one JSON line per span) of what was sent, for the collector interop test.
// Usage: node send.js <grpc|http/protobuf|http/json> <endpoint> <traces>
'use strict';
const { BasicTracerProvider, SimpleSpanProcessor } = require('@opentelemetry/sdk-trace-base');
const { resourceFromAttributes } = require('@opentelemetry/resources');
const api = require('@opentelemetry/api');

const [protocol, endpoint, tracesArg] = process.argv.slice(2);
const traces = parseInt(tracesArg || '5', 10);

function exporterFor(proto) {
  if (proto === 'grpc') {
    const { OTLPTraceExporter } = require('@opentelemetry/exporter-trace-otlp-grpc');
    return new OTLPTraceExporter({ url: endpoint });
  }
  if (proto === 'http/protobuf') {
    const { OTLPTraceExporter } = require('@opentelemetry/exporter-trace-otlp-proto');
    return new OTLPTraceExporter({ url: endpoint + '/v1/traces' });
  }
  const { OTLPTraceExporter } = require('@opentelemetry/exporter-trace-otlp-http');
  return new OTLPTraceExporter({ url: endpoint + '/v1/traces' });
}

async function main() {
  const service = 'js-interop-' + protocol.replace('/', '-');
  const provider = new BasicTracerProvider({
    resource: resourceFromAttributes({ 'service.name': service, 'deployment.environment': 'interop' }),
    spanProcessors: [new SimpleSpanProcessor(exporterFor(protocol))],
  });
  const tracer = provider.getTracer('interop-scope', '4.5.6');
  const sent = [];
  const record = (span, name, parent) => {
    const c = span.spanContext();
    sent.push({ name, trace_id: c.traceId, span_id: c.spanId, parent_span_id: parent || '' });
  };
  for (let i = 0; i < traces; i++) {
    const root = tracer.startSpan('GET /items', {
      kind: api.SpanKind.SERVER,
      attributes: { 'http.request.method': 'GET', 'http.response.status_code': 200 + i,
                    'ratio': 0.25, 'cached': i % 2 === 0, 'tags': ['x', 'y'] },
    });
    const ctx = api.trace.setSpan(api.context.active(), root);
    const child = tracer.startSpan('db.query', { kind: api.SpanKind.CLIENT,
                                                 attributes: { 'db.system': 'postgresql' } }, ctx);
    child.addEvent('rows', { count: 3 });
    if (i === traces - 1) child.setStatus({ code: api.SpanStatusCode.ERROR, message: 'boom' });
    child.end();
    root.end();
    record(child, 'db.query', root.spanContext().spanId);
    record(root, 'GET /items', '');
  }
  await provider.forceFlush();
  await provider.shutdown();
  for (const s of sent) console.log(JSON.stringify(s));
}

main().catch((e) => { console.error(e); process.exit(1); });
