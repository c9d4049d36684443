"""An OTLP/HTTP trace and metric receiver for the tests.

It decodes every ExportTraceServiceRequest and ExportMetricsServiceRequest with
opentelemetry-proto's reference protobuf classes, and serves what it received as JSON. It prints
its port on the first line of its output, then serves until it is killed.

    POST /v1/traces    an export: 200 with an empty ExportTraceServiceResponse, or as /control says
    POST /v1/metrics   likewise, with an ExportMetricsServiceResponse
    GET  /spans        every span received, in arrival order, one JSON object each
    GET  /points       every data point received, in arrival order, one JSON object each
    POST /control?status=503&retry_after=1   answer every export so from now on (status=200 again)
    POST /control?reject=2                   answer the next export with a partial success
"""

import http.server
import json
import sys
import threading
import urllib.parse

from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

lock = threading.Lock()
spans = []
points = []
requests = {"count": 0, "refused": 0, "metrics": 0}
control = {"status": 200, "retry_after": None, "reject": 0}


def value(any_value):
    kind = any_value.WhichOneof("value")
    return getattr(any_value, kind) if kind else None


def attributes(key_values):
    return {kv.key: value(kv.value) for kv in key_values}


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def answer(self, status, body=b"", content_type="application/x-protobuf", headers=()):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, header in headers:
            self.send_header(name, header)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path == "/spans":
            with lock:
                body = json.dumps({"spans": spans, "requests": requests}).encode()
            self.answer(200, body, "application/json")
        elif self.path == "/points":
            with lock:
                body = json.dumps({"points": points, "requests": requests}).encode()
            self.answer(200, body, "application/json")
        else:
            self.answer(404)

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        url = urllib.parse.urlparse(self.path)
        if url.path == "/control":
            query = urllib.parse.parse_qs(url.query)
            with lock:
                if "status" in query:
                    control["status"] = int(query["status"][0])
                    control["retry_after"] = query.get("retry_after", [None])[0]
                if "reject" in query:
                    control["reject"] = int(query["reject"][0])
            self.answer(200, b"", "text/plain")
            return
        if url.path not in ("/v1/traces", "/v1/metrics") or self.headers.get("Content-Type") != "application/x-protobuf":
            self.answer(400)
            return
        with lock:
            requests["count"] += 1
            status, retry_after = control["status"], control["retry_after"]
            if status != 200:
                requests["refused"] += 1
        if status != 200:
            headers = [("Retry-After", retry_after)] if retry_after else []
            self.answer(status, b"", "text/plain", headers)
            return
        if url.path == "/v1/metrics":
            self.metrics(body)
            return
        request = trace_service_pb2.ExportTraceServiceRequest()
        request.ParseFromString(body)
        response = trace_service_pb2.ExportTraceServiceResponse()
        received = []
        for resource_spans in request.resource_spans:
            resource = attributes(resource_spans.resource.attributes)
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    received.append(
                        {
                            "trace_id": span.trace_id.hex(),
                            "span_id": span.span_id.hex(),
                            "parent_span_id": span.parent_span_id.hex(),
                            "name": span.name,
                            "kind": span.kind,
                            "start": span.start_time_unix_nano,
                            "end": span.end_time_unix_nano,
                            "attributes": attributes(span.attributes),
                            "status": {"code": span.status.code, "message": span.status.message},
                            "resource": resource,
                            "scope": scope_spans.scope.name,
                            "schema_url": resource_spans.schema_url,
                            "authorization": self.headers.get("Authorization"),
                        }
                    )
        with lock:
            reject, control["reject"] = control["reject"], 0
            # A partial success: the receiver keeps all but the last `reject` spans.
            kept = received[: len(received) - reject] if reject else received
            spans.extend(kept)
        if reject:
            response.partial_success.rejected_spans = reject
            response.partial_success.error_message = "the test receiver rejected spans"
        self.answer(200, response.SerializeToString())

    def metrics(self, body):
        request = metrics_service_pb2.ExportMetricsServiceRequest()
        request.ParseFromString(body)
        received = []
        for resource_metrics in request.resource_metrics:
            resource = attributes(resource_metrics.resource.attributes)
            for scope_metrics in resource_metrics.scope_metrics:
                for metric in scope_metrics.metrics:
                    kind = metric.WhichOneof("data")
                    data = getattr(metric, kind)
                    for point in data.data_points:
                        received.append(
                            {
                                "name": metric.name,
                                "unit": metric.unit,
                                "kind": kind,
                                "temporality": data.aggregation_temporality,
                                "monotonic": getattr(data, "is_monotonic", None),
                                "attributes": attributes(point.attributes),
                                "start": point.start_time_unix_nano,
                                "time": point.time_unix_nano,
                                "value": point.as_int if kind == "sum" else None,
                                "count": point.count if kind == "histogram" else None,
                                "sum": point.sum if kind == "histogram" else None,
                                "bucket_counts": list(point.bucket_counts) if kind == "histogram" else None,
                                "bounds": list(point.explicit_bounds) if kind == "histogram" else None,
                                "exemplars": [
                                    {
                                        "trace_id": e.trace_id.hex(),
                                        "span_id": e.span_id.hex(),
                                        "value": e.as_double,
                                        "time": e.time_unix_nano,
                                    }
                                    for e in point.exemplars
                                ]
                                if kind == "histogram"
                                else None,
                                "resource": resource,
                                "scope": scope_metrics.scope.name,
                                "schema_url": resource_metrics.schema_url,
                                "request": None,
                            }
                        )
        response = metrics_service_pb2.ExportMetricsServiceResponse()
        with lock:
            requests["metrics"] += 1
            for point in received:
                point["request"] = requests["metrics"]
            reject, control["reject"] = control["reject"], 0
            kept = received[: len(received) - reject] if reject else received
            points.extend(kept)
        if reject:
            response.partial_success.rejected_data_points = reject
            response.partial_success.error_message = "the test receiver rejected data points"
        self.answer(200, response.SerializeToString())


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
sys.stdout.close()
server.serve_forever()
