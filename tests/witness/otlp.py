"""A real OTLP trace receiver for the tests, on loopback: OTLP/HTTP with
protobuf bodies (`POST /v1/traces`) or OTLP/gRPC, each request decoded with
the official `opentelemetry-proto` messages. It keeps every span it is sent,
flattened into dicts the tests can compare."""

import http.server
import threading
import time
from concurrent import futures

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

KINDS = {1: "internal", 2: "server", 3: "client", 4: "producer", 5: "consumer"}


def value(v):
    kind = v.WhichOneof("value")
    return getattr(v, kind) if kind else None


class Receiver:
    """Collects spans; `url` is the endpoint to give the exporter."""

    def __init__(self, protocol: str = "http/protobuf"):
        self.protocol = protocol
        self.spans: list[dict] = []
        self.requests = 0
        self.lock = threading.Lock()
        if protocol == "grpc":
            self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
            trace_service_pb2_grpc.add_TraceServiceServicer_to_server(_Servicer(self), self.server)
            self.port = self.server.add_insecure_port("127.0.0.1:0")
            self.server.start()
        else:
            receiver = self

            class Handler(http.server.BaseHTTPRequestHandler):
                def do_POST(self):
                    body = self.rfile.read(int(self.headers["Content-Length"]))
                    ok = self.path == "/v1/traces" and self.headers["Content-Type"] == "application/x-protobuf"
                    if ok:
                        request = trace_service_pb2.ExportTraceServiceRequest()
                        request.ParseFromString(body)
                        receiver.take(request)
                    reply = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
                    self.send_response(200 if ok else 404)
                    self.send_header("Content-Type", "application/x-protobuf")
                    self.send_header("Content-Length", str(len(reply)))
                    self.end_headers()
                    self.wfile.write(reply)

                def log_message(self, *args):
                    pass

            self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
            self.port = self.server.server_address[1]
            threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.port}"

    def take(self, request):
        with self.lock:
            self.requests += 1
            for resource_spans in request.resource_spans:
                resource = {a.key: value(a.value) for a in resource_spans.resource.attributes}
                for scope_spans in resource_spans.scope_spans:
                    for span in scope_spans.spans:
                        self.spans.append({
                            "name": span.name,
                            "kind": KINDS.get(span.kind, "unspecified"),
                            "trace_id": span.trace_id.hex(),
                            "span_id": span.span_id.hex(),
                            "parent": span.parent_span_id.hex(),
                            "attributes": {a.key: value(a.value) for a in span.attributes},
                            "status": span.status.code,  # 2: error
                            "resource": resource,
                        })

    def wait_for(self, predicate, timeout: float = 30.0) -> list[dict]:
        """Every span so far, once `predicate(spans)` holds."""
        deadline = time.monotonic() + timeout
        while True:
            with self.lock:
                spans = list(self.spans)
            if predicate(spans):
                return spans
            assert time.monotonic() < deadline, f"the spans never arrived: {spans}"
            time.sleep(0.05)

    def close(self):
        if self.protocol == "grpc":
            self.server.stop(None)
        else:
            self.server.shutdown()


class _Servicer(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, receiver):
        self.receiver = receiver

    def Export(self, request, context):
        self.receiver.take(request)
        return trace_service_pb2.ExportTraceServiceResponse()
