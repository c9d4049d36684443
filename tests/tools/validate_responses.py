"""Checks what the simulated AWS endpoint served against AWS's own models of the services.

Reads the recordings a simulator writes when SIMULATOR_RECORD_DIR names a directory (one JSON
object a line: service, operation, protocol, HTTP status, x-amzn-query-error header, body in
base64; see src/simulator/record.rs) and checks every answer against botocore's model of its
service: a 2xx body against the operation's output shape, an error against the error shape its
code names. For each value: member names, types, required members, enum values, list and map
shapes, length and range limits, patterns, and the protocol's encoding (awsJson timestamps as
epoch-second numbers, RPC v2 CBOR timestamps as tag 1 around a number, CBOR's own major types,
awsQuery XML with ISO 8601 timestamps). The service a record names must be a model's own
targetPrefix (awsJson), service shape name (RPC v2 CBOR path) or STS (awsQuery).

Usage: validate_responses.py DIR_OR_FILE... ; exits 1 listing every violation (operation, path
inside the response, rule broken; the first 200), 2 when there is nothing to check. A record seen
before, byte for byte, is counted again but checked once.
"""

import base64
import datetime
import hashlib
import json
import math
import re
import struct
import sys
from pathlib import Path
from xml.etree import ElementTree

import botocore.session

# The services the exporter calls, as botocore names their models.
SERVICES = ["codepipeline", "codeconnections", "sqs", "sts", "organizations", "codebuild"]

# Errors every AWS service may answer, whatever the operation's model lists (the "common errors"
# of each API reference): their body carries a code and a message only.
COMMON_ERRORS = {
    "AccessDeniedException", "AccessDenied", "ExpiredTokenException", "ExpiredToken", "IncompleteSignature",
    "InternalFailure", "InternalServerError", "InvalidAction", "InvalidClientTokenId", "NotAuthorized",
    "RequestExpired", "ServiceUnavailable", "ServiceUnavailableException", "ThrottlingException", "Throttling",
    "ValidationError", "ValidationException", "UnrecognizedClientException", "SerializationException",
    "RequestLimitExceeded", "TooManyRequestsException",
}


# Members AWS added to a model after botocore 1.35.99 that the pinned SDK crates know and the
# simulator serves as AWS does now, by (botocore service name, shape, member), with the values the
# crate's model allows. Organizations' Account.State (2025) replaces the deprecated Status, and the
# exporter reads it first (src/organization.rs); aws-sdk-organizations 1.137.0's AccountState lists
# these values. Any other member a model lacks is a violation.
ADDED_MEMBERS = {
    ("organizations", "Account", "State"): {"PENDING_ACTIVATION", "ACTIVE", "SUSPENDED", "PENDING_CLOSURE", "CLOSED"},
}


class Tag:
    """A CBOR tag around its value."""

    def __init__(self, number, value):
        self.number, self.value = number, value


class Undefined:
    pass


def cbor_decode(data):
    """Decodes one CBOR item (RFC 8949), keeping tags and the distinction between text and bytes."""
    pos = 0

    def argument(info):
        nonlocal pos
        if info < 24:
            return info
        size = {24: 1, 25: 2, 26: 4, 27: 8}.get(info)
        if size is None:
            return None  # indefinite length (31), or reserved
        value = int.from_bytes(data[pos:pos + size], "big")
        pos += size
        return value

    def item():
        nonlocal pos
        if pos >= len(data):
            raise ValueError("CBOR ends early")
        initial = data[pos]
        pos += 1
        major, info = initial >> 5, initial & 0x1F
        if major == 7:
            if info == 20:
                return False
            if info == 21:
                return True
            if info == 22:
                return None
            if info == 23:
                return Undefined()
            if info in (25, 26, 27):
                size = {25: 2, 26: 4, 27: 8}[info]
                raw = data[pos:pos + size]
                pos += size
                return struct.unpack({2: ">e", 4: ">f", 8: ">d"}[size], raw)[0]
            if info == 31:
                return StopIteration
            raise ValueError(f"CBOR simple value {info}")
        n = argument(info)
        if major == 0:
            return n
        if major == 1:
            return -1 - n
        if major in (2, 3):
            if n is None:
                chunks = []
                while (chunk := item()) is not StopIteration:
                    chunks.append(chunk)
                raw = b"".join(chunks) if major == 2 else "".join(chunks)
                return raw
            raw = data[pos:pos + n]
            pos += n
            return bytes(raw) if major == 2 else raw.decode("utf-8")
        if major == 4:
            out = []
            if n is None:
                while (element := item()) is not StopIteration:
                    out.append(element)
            else:
                out = [item() for _ in range(n)]
            return out
        if major == 5:
            out = {}
            count = 0
            while n is None or count < n:
                key = item()
                if key is StopIteration:
                    break
                out[key] = item()
                count += 1
            return out
        if major == 6:
            return Tag(n, item())
        raise ValueError(f"CBOR major type {major}")

    value = item()
    if pos != len(data):
        raise ValueError(f"{len(data) - pos} bytes after the CBOR item")
    return value


class Checker:
    def __init__(self, protocol, operation, service=None):
        self.protocol, self.operation, self.service = protocol, operation, service
        self.violations = []

    def fail(self, path, rule):
        self.violations.append(f"{self.operation}: {path or '(body)'}: {rule}")

    def value(self, shape, value, path):
        kind = shape.type_name
        if self.protocol == "smithy-rpc-v2-cbor" and isinstance(value, Tag) and kind != "timestamp":
            return self.fail(path, f"CBOR tag {value.number} on a {kind} ({shape.name})")
        if value is None or isinstance(value, Undefined):
            # A null member is taken as absent by every SDK; required members are checked by the
            # structure holding them. A null list element or map value is not allowed unless sparse.
            return self.fail(path, f"null for {shape.name}") if path.endswith("]") else None
        getattr(self, "check_" + kind, self.unknown)(shape, value, path)

    def unknown(self, shape, value, path):
        self.fail(path, f"shape type {shape.type_name} of {shape.name} is not checked")

    def check_structure(self, shape, value, path):
        if not isinstance(value, dict):
            return self.fail(path, f"{shape.name} must be an object, not {type(value).__name__}")
        for key, member in value.items():
            if not isinstance(key, str):
                self.fail(path, f"member name {key!r} of {shape.name} is not text")
            elif key not in shape.members:
                added = ADDED_MEMBERS.get((self.service, shape.name, key))
                if added is None:
                    self.fail(f"{path}.{key}".lstrip("."), f"{shape.name} has no member {key}")
                elif not isinstance(member, str) or member not in added:
                    self.fail(f"{path}.{key}".lstrip("."), f"{member!r} is not a value of {shape.name}.{key} ({', '.join(sorted(added))})")
            else:
                self.value(shape.members[key], member, f"{path}.{key}".lstrip("."))
        for required in shape.required_members:
            if value.get(required) is None:
                self.fail(f"{path}.{required}".lstrip("."), f"required member of {shape.name} missing")
        if shape.metadata.get("union") and sum(1 for v in value.values() if v is not None) != 1:
            self.fail(path, f"union {shape.name} must have exactly one member set")

    def limits(self, shape, size, path, what):
        low, high = shape.metadata.get("min"), shape.metadata.get("max")
        if low is not None and size < low:
            self.fail(path, f"{what} {size} below the minimum {low} of {shape.name}")
        if high is not None and size > high:
            self.fail(path, f"{what} {size} above the maximum {high} of {shape.name}")

    def check_list(self, shape, value, path):
        if not isinstance(value, list):
            return self.fail(path, f"{shape.name} must be a list, not {type(value).__name__}")
        self.limits(shape, len(value), path, "length")
        for i, element in enumerate(value):
            self.value(shape.member, element, f"{path}[{i}]")

    def check_map(self, shape, value, path):
        if not isinstance(value, dict):
            return self.fail(path, f"{shape.name} must be a map, not {type(value).__name__}")
        self.limits(shape, len(value), path, "size")
        for key, element in value.items():
            self.value(shape.key, key, f"{path}{{key}}")
            self.value(shape.value, element, f"{path}[{key!r}]")

    def check_string(self, shape, value, path):
        if not isinstance(value, str):
            return self.fail(path, f"{shape.name} must be text, not {type(value).__name__}")
        if shape.enum and value not in shape.enum:
            return self.fail(path, f"{value!r} is not a value of the enum {shape.name} ({', '.join(shape.enum)})")
        self.limits(shape, len(value), path, "length")
        pattern = shape.metadata.get("pattern")
        if pattern is not None:
            try:
                matched = re.search(pattern, value, re.DOTALL) is not None
            except re.error as error:
                return self.fail(path, f"pattern {pattern!r} of {shape.name} does not compile: {error}")
            if not matched:
                self.fail(path, f"{value!r} does not match the pattern {pattern!r} of {shape.name}")

    def integer(self, shape, value, path, bits):
        if isinstance(value, bool) or not isinstance(value, int):
            return self.fail(path, f"{shape.name} must be an integer, not {type(value).__name__} {value!r}")
        if not -(1 << (bits - 1)) <= value < (1 << (bits - 1)):
            self.fail(path, f"{value} does not fit the {bits}-bit {shape.type_name} {shape.name}")
        self.limits(shape, value, path, "value")

    def check_integer(self, shape, value, path):
        self.integer(shape, value, path, 32)

    def check_long(self, shape, value, path):
        self.integer(shape, value, path, 64)

    def check_boolean(self, shape, value, path):
        if not isinstance(value, bool):
            self.fail(path, f"{shape.name} must be a boolean, not {type(value).__name__}")

    def check_double(self, shape, value, path):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            if not (self.protocol.startswith("json") and value in ("NaN", "Infinity", "-Infinity")):
                self.fail(path, f"{shape.name} must be a number, not {type(value).__name__}")

    check_float = check_double

    def check_timestamp(self, shape, value, path):
        if self.protocol == "smithy-rpc-v2-cbor":
            if not isinstance(value, Tag) or value.number != 1:
                return self.fail(path, f"timestamp {shape.name} must be CBOR tag 1 around epoch seconds, not {type(value).__name__}")
            value = value.value
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                return self.fail(path, f"tag 1 of {shape.name} must hold a number, not {type(value).__name__}")
        elif shape.serialization.get("timestampFormat", "unixTimestamp") == "unixTimestamp":
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                return self.fail(path, f"timestamp {shape.name} must be an epoch-seconds number, not {type(value).__name__} {value!r}")
        if not math.isfinite(value) or not -62135596800 <= value <= 253402300799:
            self.fail(path, f"timestamp {value} of {shape.name} is outside years 1 to 9999")

    def check_blob(self, shape, value, path):
        if self.protocol == "smithy-rpc-v2-cbor":
            if not isinstance(value, bytes):
                self.fail(path, f"blob {shape.name} must be a CBOR byte string, not {type(value).__name__}")
        elif not isinstance(value, str):
            self.fail(path, f"blob {shape.name} must be base64 text, not {type(value).__name__}")
        else:
            try:
                base64.b64decode(value, validate=True)
            except ValueError:
                self.fail(path, f"blob {shape.name} is not base64")


def xml_value(shape, element, path, checker):
    """Checks an awsQuery XML element against its shape, by the same rules as a JSON value."""
    kind = shape.type_name
    if kind == "structure":
        seen = {}
        for child in element:
            name = child.tag.split("}")[-1]
            if name not in shape.members:
                checker.fail(f"{path}.{name}".lstrip("."), f"{shape.name} has no member {name}")
                continue
            seen[name] = True
            xml_value(shape.members[name], child, f"{path}.{name}".lstrip("."), checker)
        for required in shape.required_members:
            if required not in seen:
                checker.fail(f"{path}.{required}".lstrip("."), f"required member of {shape.name} missing")
    elif kind == "list":
        members = list(element)
        checker.limits(shape, len(members), path, "length")
        for i, child in enumerate(members):
            xml_value(shape.member, child, f"{path}[{i}]", checker)
    elif kind == "timestamp":
        text = element.text or ""
        try:
            datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            checker.fail(path, f"timestamp {shape.name} must be ISO 8601, not {text!r}")
    elif kind in ("integer", "long"):
        try:
            checker.value(shape, int(element.text or ""), path)
        except ValueError:
            checker.fail(path, f"{shape.name} must be an integer, not {element.text!r}")
    elif kind == "boolean":
        if element.text not in ("true", "false"):
            checker.fail(path, f"{shape.name} must be true or false, not {element.text!r}")
    else:
        checker.value(shape, element.text or "", path)


class Models:
    def __init__(self):
        session = botocore.session.get_session()
        self.by_wire = {}
        for name in SERVICES:
            model = session.get_service_model(name)
            prefix = model.metadata.get("targetPrefix")
            if prefix:
                self.by_wire[("json", prefix)] = model
                # RPC v2 CBOR's path names the service shape, the prefix without its namespace.
                self.by_wire[("smithy-rpc-v2-cbor", prefix.rsplit(".", 1)[-1])] = model
            if model.metadata.get("protocol") == "query":
                self.by_wire[("query", model.metadata["serviceId"])] = model
                self.by_wire[("query", "AWSSecurityTokenServiceV20110615")] = model

    def of(self, record):
        family = "json" if record["protocol"].startswith("json") else record["protocol"]
        return self.by_wire.get((family, record["service"]))


def check(record, models):
    """Every violation in one recorded answer."""
    operation = record.get("operation", "?")
    model = models.of(record)
    checker = Checker(record["protocol"], f"{record['service']}.{operation}")
    if model is None:
        checker.fail("", f"no model has the {record['protocol']} service name {record['service']!r}")
        return checker.violations
    checker.service = model.service_name
    if operation not in model.operation_names:
        checker.fail("", f"{model.service_name} has no operation {operation}")
        return checker.violations
    op = model.operation_model(operation)
    expected = {"json-1.0": "json", "json-1.1": "json"}.get(record["protocol"], record["protocol"])
    version = model.metadata.get("jsonVersion")
    if expected == "json" and version and record["protocol"] != f"json-{version}":
        checker.fail("", f"{model.service_name} speaks awsJson {version}, not {record['protocol']}")
    body = base64.b64decode(record["body"])
    status = record["status"]
    if record["protocol"] == "query":
        try:
            root = ElementTree.fromstring(body)
        except ElementTree.ParseError as error:
            checker.fail("", f"the body is not XML: {error}")
            return checker.violations
        if 200 <= status < 300:
            result = root.find(f"{{*}}{operation}Result")
            if root.tag.split("}")[-1] != f"{operation}Response" or result is None:
                checker.fail("", f"an awsQuery answer must be <{operation}Response><{operation}Result>")
            elif op.output_shape is not None:
                xml_value(op.output_shape, result, "", checker)
        else:
            code = root.findtext("{*}Error/{*}Code")
            known = {e.metadata.get("error", {}).get("code", e.name) for e in op.error_shapes}
            if code is None:
                checker.fail("Error.Code", "an awsQuery error must name its code")
            elif code not in known and code not in COMMON_ERRORS:
                checker.fail("Error.Code", f"{code} is neither an error of {operation} ({', '.join(sorted(known))}) nor a common AWS error")
        return checker.violations
    try:
        if record["protocol"] == "smithy-rpc-v2-cbor":
            document = cbor_decode(body) if body else {}
        else:
            document = json.loads(body) if body else {}
    except (ValueError, UnicodeDecodeError) as error:
        checker.fail("", f"the body does not decode as {record['protocol']}: {error}")
        return checker.violations
    if 200 <= status < 300:
        if op.output_shape is None:
            if document not in ({}, None):
                checker.fail("", "the operation has no output, but the body is not empty")
        else:
            checker.value(op.output_shape, document, "")
        return checker.violations
    if not isinstance(document, dict) or not isinstance(document.get("__type"), str):
        checker.fail("__type", "an error body must name its type in __type")
        return checker.violations
    # `__type` may carry a namespace (`ns#Name`) and, in awsJson, a trailing `:uri`.
    code = document["__type"].split("#")[-1].split(":")[0]
    errors = {e.name: e for e in op.error_shapes}
    if code in errors:
        error = errors[code]
        members = {k: v for k, v in document.items() if k != "__type"}
        # Every awsJson and RPC v2 CBOR error body may carry a message, spelt `message` or
        # `Message` whatever the model says: it is part of the protocol's error envelope, and
        # models such as CodePipeline's leave it out of their error shapes.
        for spelling in ("message", "Message"):
            if spelling in members and spelling not in error.members:
                other = "Message" if spelling == "message" else "message"
                if other in error.members:
                    members[other] = members.pop(spelling)
                elif isinstance(members[spelling], str):
                    del members[spelling]
        checker.value(error, members, "")
        status_code = error.metadata.get("error", {}).get("httpStatusCode")
        if status_code is not None and status_code != status:
            checker.fail("", f"{code} has HTTP status {status_code} in the model, not {status}")
        if record.get("query_error") is not None:
            query_code = error.metadata.get("error", {}).get("code")
            if query_code is not None and not record["query_error"].startswith(query_code + ";"):
                checker.fail("x-amzn-query-error", f"{code}'s query code is {query_code}, not {record['query_error']}")
    elif code not in COMMON_ERRORS:
        checker.fail("__type", f"{code} is neither an error of {operation} ({', '.join(sorted(errors))}) nor a common AWS error")
    else:
        for key, value in document.items():
            if key not in ("__type", "message", "Message"):
                checker.fail(key, f"a common error {code} has no member {key}")
            elif not isinstance(value, str):
                checker.fail(key, f"{key} must be text")
    if model.metadata.get("awsQueryCompatible") is not None and record.get("query_error") is None:
        checker.fail("x-amzn-query-error", f"{model.service_name} is query-compatible: every error names its awsQuery code")
    return checker.violations


def main(paths):
    files = []
    for path in map(Path, paths):
        files.extend(sorted(path.glob("*.jsonl")) if path.is_dir() else [path])
    models = Models()
    records = violations = 0
    by_operation = {}
    # The tests serve the same answer many times over (a load test polls thousands of alike
    # pipelines, every poll of an unchanged pipeline answers the same bytes): each distinct record
    # is decoded and checked once, and its verdict stands for every copy, each still counted.
    verdicts = {}
    for file in files:
        with file.open("rb") as lines:
            for number, line in enumerate(lines, 1):
                if not line.strip():
                    continue
                records += 1
                digest = hashlib.blake2b(line.rstrip(b"\r\n"), digest_size=16).digest()
                verdict = verdicts.get(digest)
                if verdict is None:
                    record = json.loads(line)
                    verdict = (f"{record['service']}.{record['operation']}", tuple(check(record, models)))
                    verdicts[digest] = verdict
                key, found = verdict
                by_operation[key] = by_operation.get(key, 0) + 1
                for violation in found:
                    violations += 1
                    if violations <= 200:
                        print(f"{file.name}:{number}: {violation}")
    if records == 0:
        print("validate_responses: no recorded answers in " + " ".join(paths))
        return 2
    summary = ", ".join(f"{k} {v}" for k, v in sorted(by_operation.items()))
    print(
        f"validate_responses: {records} answers ({len(verdicts)} distinct) in {len(files)} recordings, "
        f"{violations} violations ({summary})"
    )
    return 1 if violations else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
