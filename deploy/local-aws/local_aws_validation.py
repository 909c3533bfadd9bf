"""Every request checked against AWS's own service model before it reaches moto.

The rules are botocore's service-2.json files (the ones moto installs; botocore is pinned in
requirements.txt): required members, string length (`min`/`max`), `pattern`, `enum`, numeric
`min`/`max`, list and map sizes, map keys and values, nested structures and lists. A request
that breaks one is answered as AWS answers it (HTTP 400, the service's validation error with
AWS's message text) and never reaches moto.

AWS's wording (Coral's validation message; the sources are real AWS answers quoted in issues):
- "1 validation error detected: Value 'R&D' at 'tags.1.member.value' failed to satisfy
  constraint: Member must satisfy regular expression pattern: ..." (aws/aws-cli#790 DynamoDB
  'tableName', serverless/serverless#2036 CloudFormation 'stackName',
  aws/amazon-sagemaker-examples#2236 SageMaker 'productionVariants.1.member.modelName',
  ministryofjustice/cloud-platform-environments#22667 'tags.10.member.value');
- "N validation errors detected: ...; ..." (DynamoDB "2 validation errors detected: Value ''
  at 'tableName' failed to satisfy constraint: Member must satisfy regular expression
  pattern: [a-zA-Z0-9_.-]+; Value '' at 'tableName' failed to satisfy constraint: Member must
  have length greater than or equal to 3", quoted in a DynamoDB client's tests; Firehose
  "2 validation errors detected: ..." pattern before length as well);
- "Value null at 'tags.1.member.value' failed to satisfy constraint: Member must not be null"
  (serverless/serverless#2036, CloudFormation; Coral's own example "Value null at 'bookId'");
- "Member must have length less than or equal to 256" (szuecs/kube-static-egress-controller#35,
  CloudFormation 'tags.1.member.value'), "... greater than or equal to N";
- "Member must have value greater than or equal to 1" (DynamoDB
  'provisionedThroughput.writeCapacityUnits');
- "Member must satisfy enum value set: [A, B]";
- a map: one error at the map's path, the whole map as Java prints it ('{K=V, K2=V2}'), every
  constraint of the value (key) shape listed: "Value '{SAGEMAKER_SPARKML_SCHEMA=...}' at
  'primaryContainer.environment' failed to satisfy constraint: Map value must satisfy
  constraint: [Member must have length less than or equal to 1024, Member must have length
  greater than or equal to 0, Member must satisfy regular expression pattern: [\\S\\s]*]"
  (aws/sagemaker-sparkml-serving-container#12, SageMaker CreateModel; also
  cloud-custodian/cloud-custodian#2520 and SWO-GS/auto-tag#77 for Lambda tags); keys:
  "Map keys must satisfy constraint: [Member must have length less than or equal to 256,
  Member must have length greater than or equal to 1, Member must satisfy regular expression
  pattern: [A-Za-z0-9\\_\\-]+]" (EventBridge 'targets.1.member.inputTransformer.inputPathsMap');
- a list of strings or numbers: one error at the list's path, the whole list as Java prints it:
  "Value '[GET, POST, OPTIONS]' at 'cors.allowMethods' failed to satisfy constraint: Member
  must satisfy constraint: [Member must have length less than or equal to 6, ...]" (Lambda
  CreateFunctionUrlConfig; ACM 'subjectAlternativeNames' alike); a list of structures: the
  member's path 'tags.1.member.value' (1-based).
Paths are the member names with the first letter lower-cased ('primaryContainer.environment').

Per service (the error shape):
- JSON protocol (X-Amz-Target) and rest-json: `ValidationException` (Coral's
  `com.amazon.coral.validate#ValidationException`, as DynamoDB sends it), except
  sagemaker-runtime: `ValidationError` (its only client error in botocore's model, and what
  InvokeEndpoint answers: aws/amazon-sagemaker-examples#293), and ECR: `InvalidParameterException`
  with ECR's own text, one error per answer: "Invalid parameter at 'imageTagMutability' failed
  to satisfy constraint: 'Member must satisfy enum value set: [IMMUTABLE, MUTABLE,
  MUTABLE_WITH_EXCLUSION, IMMUTABLE_WITH_EXCLUSION]'" (captured from real ECR refusals in
  mulgadc/spinifex's ECR gateway tests; ECR answers 'registryIds' alike: "Invalid parameter
  at 'registryIds' failed to satisfy constraint: 'Member must satisfy constraint: [Member must
  satisfy regular expression pattern: [0-9]{12}]'", aws-actions/amazon-ecr-login README).
  SSM answers its validation failures with `ValidationException` too (localstack/localstack#7712,
  GetParameter), Application Auto Scaling declares it in botocore's model.
- query protocol (form Action=...): `ValidationError` in the XML ErrorResponse, Type Sender
  (CloudFormation: humanmade/cf-to-tf#5 "ValidationError: 1 validation error detected: Value
  ... at 'stackName'"; IAM: the same code for 'tags.1.member.value'; CloudWatch: "Error Code:
  ValidationError" for PutMetricAlarm, aws-cloudformation/cfn-lint#771).

Not covered (passed to moto unchecked): S3 (rest-xml: S3 answers each header/query check with
its own error, e.g. InvalidArgument or InvalidStorageClass, not a model-derived message, so there
is no AWS wording to reproduce), the ec2 protocol, smithy-rpc-v2-cbor (moto 5.2.5 cannot parse
it), blobs, booleans and timestamps, values of the wrong JSON type (AWS: SerializationException),
services the credential scope does not name a botocore model for.
"""
import io
import json
import re
import sys
import threading
import uuid
from urllib.parse import parse_qs, unquote

import botocore.session
import regex  # Java-style patterns: \p{L}, \p{Z}, \p{N}, possessive quantifiers

# ------------------------------------------------------------------ the models
_SESSION = botocore.session.get_session()
_MODELS = {}
_MODELS_LOCK = threading.Lock()

# The credential scope's service is the model's signing name; where botocore's model name
# differs: CloudWatch's endpointPrefix/signing name is "monitoring" (botocore cloudwatch
# metadata), and "sagemaker" signs both SageMaker and sagemaker-runtime (botocore
# sagemaker-runtime metadata signingName "sagemaker").
SCOPE_MODELS = {"monitoring": ("cloudwatch",), "sagemaker": ("sagemaker", "sagemaker-runtime")}


def service_model(name):
    with _MODELS_LOCK:
        if name not in _MODELS:
            try:
                _MODELS[name] = _SESSION.get_service_model(name)
            except Exception:  # noqa: BLE001 - botocore.exceptions.UnknownServiceError
                _MODELS[name] = None
        return _MODELS[name]


# --------------------------------------------------- wording seen from AWS, not in botocore
# botocore's current models print some patterns without the ^( )$ AWS's services still print
# (the same regex under Coral's whole-string match). The tag pattern: SageMaker's TagKey /
# TagValue in botocore 1.44 is "([\p{L}\p{Z}\p{N}_.:/=+\-@]*)"; AWS prints
# "^([\p{L}\p{Z}\p{N}_.:/=+\-@]*)$" (SWO-GS/auto-tag#77 and cloud-custodian#2520 for Lambda,
# whose botocore TagValue is the same string; WAFv2 'tags.6.member.value' alike).
PATTERN_AS_PRINTED = {r"([\p{L}\p{Z}\p{N}_.:/=+\-@]*)": r"^([\p{L}\p{Z}\p{N}_.:/=+\-@]*)$"}
# ECR prints ImageTagMutability's values in its own order (mulgadc/spinifex, captured from real
# ECR refusals; moto's ECR tests had "[IMMUTABLE, MUTABLE]" when there were two); botocore 1.44
# lists MUTABLE, IMMUTABLE, IMMUTABLE_WITH_EXCLUSION, MUTABLE_WITH_EXCLUSION. Used only while the
# set is the model's.
ENUM_AS_PRINTED = {("ecr", "ImageTagMutability"): [
    "IMMUTABLE", "MUTABLE", "MUTABLE_WITH_EXCLUSION", "IMMUTABLE_WITH_EXCLUSION"]}
# The one constraint checked that botocore's model lacks: CloudFormation's StackName shape has
# no pattern in botocore (its documentation says "A stack name can contain only alphanumeric
# characters (case sensitive) and hyphens. It must start with an alphabetical character"), while
# AWS checks and prints this pattern for 'stackName' (humanmade/cf-to-tf#5 DescribeStacks,
# serverless/serverless#2036 CreateStack, aws/aws-toolkit-vscode#1427 CreateChangeSet,
# aws-amplify/amplify-backend#2299). The 128-character limit in that documentation is not
# checked: no AWS answer to a longer name was found to copy the wording from.
EXTRA_PATTERNS = {("cloudformation", "StackName"): r"[a-zA-Z][-a-zA-Z0-9]*|arn:[-a-zA-Z0-9:/._+]*"}

# The error AWS answers a constraint violation with, per botocore model name (default by
# protocol below; sources in the module docstring).
ERROR_CODES = {"ecr": "InvalidParameterException", "sagemaker-runtime": "ValidationError"}
DEFAULT_CODES = {"json": "ValidationException", "rest-json": "ValidationException",
                 "query": "ValidationError"}
ECR_STYLE = {"ecr"}  # "Invalid parameter at 'PATH' failed to satisfy constraint: 'C'", one error

# ------------------------------------------------------------------ patterns
_SURROGATES = re.compile(r"\\u(D[89ABab][0-9A-Fa-f]{2})\\u(D[C-Fc-f][0-9A-Fa-f]{2})")
_HEX_BRACES = re.compile(r"\\x\{([0-9A-Fa-f]+)\}")
_PATTERNS = {}


# Java's POSIX classes are US-ASCII only (java.util.regex.Pattern, "POSIX character classes
# (US-ASCII only)"); the regex module reads \p{Print} etc. as Unicode properties.
_POSIX = {"Lower": "a-z", "Upper": "A-Z", "ASCII": "\\x00-\\x7F", "Alpha": "a-zA-Z",
          "Digit": "0-9", "Alnum": "a-zA-Z0-9", "XDigit": "0-9a-fA-F",
          "Punct": "\\x21-\\x2F\\x3A-\\x40\\x5B-\\x60\\x7B-\\x7E", "Graph": "\\x21-\\x7E",
          "Print": "\\x20-\\x7E", "Blank": " \\t", "Cntrl": "\\x00-\\x1F\\x7F",
          "Space": " \\t\\n\\x0B\\f\\r"}
_ESCAPE = re.compile(r"\\p\{(\w+)\}|\\.|\[|\]|.", re.S)


def _java_to_python(pattern):
    """Java regex -> `regex` module: a UTF-16 surrogate pair escape (Java reads
    \\uD800\\uDC00 as U+10000, e.g. Application Auto Scaling's ResourceIdMaxLen1600) becomes the
    code point; \\x{HH} becomes \\UHHHHHHHH; Java's ASCII POSIX classes become ASCII ranges."""
    def pair(m):
        hi, lo = int(m.group(1), 16), int(m.group(2), 16)
        return "\\U%08X" % (0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00))
    pattern = _SURROGATES.sub(pair, pattern)
    pattern = _HEX_BRACES.sub(lambda m: "\\U%08X" % int(m.group(1), 16), pattern)
    out, depth = [], 0
    for m in _ESCAPE.finditer(pattern):
        token = m.group(0)
        if m.group(1) in _POSIX:
            ranges = _POSIX[m.group(1)]
            token = ranges if depth else f"[{ranges}]"
        elif token == "[":
            depth += 1
        elif token == "]" and depth:
            depth -= 1
        out.append(token)
    return "".join(out)


def compiled(pattern):
    if pattern not in _PATTERNS:
        try:
            _PATTERNS[pattern] = regex.compile(_java_to_python(pattern))
        except Exception as err:  # noqa: BLE001 - 10 of botocore 1.44's 10614 patterns
            print(f"sdop-local-aws: pattern not checked ({err}): {pattern}", file=sys.stderr,
                  flush=True)
            _PATTERNS[pattern] = None
    return _PATTERNS[pattern]


# ------------------------------------------------------------------ the checks
class Checker:
    def __init__(self, service, wire):
        self.service = service
        self.wire = wire  # (member name, member shape) -> the key the member has in `value`
        self.errors = []  # (path, value or None, constraint text)

    def pattern_of(self, shape):
        return shape.metadata.get("pattern") or EXTRA_PATTERNS.get((self.service, shape.name))

    def enum_of(self, shape):
        values = shape.metadata.get("enum")
        printed = ENUM_AS_PRINTED.get((self.service, shape.name))
        return printed if values and printed and set(printed) == set(values) else values

    def rules(self, shape):
        """[(failed(value) -> bool, text)] of a string or number shape, in the order AWS lists
        them inside "[...]": length/value maximum, minimum, pattern, enum."""
        m, out = shape.metadata, []
        if shape.type_name == "string":
            if "max" in m:
                out.append((lambda v, n=m["max"]: len(v) > n,
                            f"Member must have length less than or equal to {m['max']}"))
            if "min" in m:
                out.append((lambda v, n=m["min"]: len(v) < n,
                            f"Member must have length greater than or equal to {m['min']}"))
            pattern = self.pattern_of(shape)
            if pattern is not None:
                rx = compiled(pattern)
                out.append((lambda v, rx=rx: rx is not None and rx.fullmatch(v) is None,
                            "Member must satisfy regular expression pattern: "
                            + PATTERN_AS_PRINTED.get(pattern, pattern)))
            enum = self.enum_of(shape)
            if enum:
                out.append((lambda v, e=frozenset(enum): v not in e,
                            f"Member must satisfy enum value set: [{', '.join(enum)}]"))
        elif shape.type_name in ("integer", "long", "float", "double"):
            if "max" in m:
                out.append((lambda v, n=m["max"]: v > n,
                            f"Member must have value less than or equal to {m['max']}"))
            if "min" in m:
                out.append((lambda v, n=m["min"]: v < n,
                            f"Member must have value greater than or equal to {m['min']}"))
        return out

    @staticmethod
    def typed(shape, value):
        """The value when it has the shape's JSON type, else None (not checked)."""
        if shape.type_name == "string":
            return value if isinstance(value, str) else None
        if shape.type_name in ("integer", "long"):
            return value if isinstance(value, int) and not isinstance(value, bool) else None
        if shape.type_name in ("float", "double"):
            return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None
        return None

    def scalar_fails(self, shape, value):
        value = self.typed(shape, value)
        return value is not None and any(failed(value) for failed, _ in self.rules(shape))

    def size(self, shape, value, path):
        m = shape.metadata
        if "max" in m and len(value) > m["max"]:
            self.errors.append((path, value, f"Member must have length less than or equal to {m['max']}"))
        if "min" in m and len(value) < m["min"]:
            self.errors.append((path, value, f"Member must have length greater than or equal to {m['min']}"))

    def check(self, shape, value, path):
        kind = shape.type_name
        if kind == "structure":
            if not isinstance(value, dict):
                return
            required = set(shape.required_members)
            for name, member in shape.members.items():
                key = self.wire(name, member)
                child = f"{path}.{lower_camel(name)}" if path else lower_camel(name)
                if value.get(key) is None:
                    if name in required:
                        self.errors.append((child, None, "Member must not be null"))
                    continue
                self.check(member, value[key], child)
        elif kind == "list":
            if not isinstance(value, list):
                return
            self.size(shape, value, path)
            member = shape.member
            if member.type_name in ("structure", "list", "map"):
                for i, item in enumerate(value, 1):
                    if item is not None:
                        self.check(member, item, f"{path}.{i}.member")
            elif any(self.scalar_fails(member, item) for item in value):
                self.errors.append((path, value, "Member must satisfy constraint: ["
                                    + ", ".join(text for _, text in self.rules(member)) + "]"))
        elif kind == "map":
            if not isinstance(value, dict):
                return
            self.size(shape, value, path)
            if any(self.scalar_fails(shape.key, k) for k in value):
                self.errors.append((path, value, "Map keys must satisfy constraint: ["
                                    + ", ".join(text for _, text in self.rules(shape.key)) + "]"))
            if shape.value.type_name in ("structure", "list", "map"):
                for k, item in value.items():
                    if item is not None:
                        self.check(shape.value, item, f"{path}.{k}")
            elif any(self.scalar_fails(shape.value, v) for v in value.values()):
                self.errors.append((path, value, "Map value must satisfy constraint: ["
                                    + ", ".join(text for _, text in self.rules(shape.value)) + "]"))
        else:
            typed = self.typed(shape, value)
            if typed is None:
                return
            # Pattern before length when both fail, as in AWS's two-error answers quoted above.
            failed = [text for fails, text in self.rules(shape) if fails(typed)]
            failed.sort(key=lambda t: 0 if "pattern" in t else 1)
            self.errors.extend((path, value, text) for text in failed)


def lower_camel(name):
    return name[:1].lower() + name[1:]


def java_str(value):
    """A value as AWS's Java services print it: maps {K=V, ...}, lists [a, b]."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{java_str(k)}={java_str(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(java_str(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    return str(value)


def message(service, errors):
    if service in ECR_STYLE:
        path, _, text = errors[0]
        return f"Invalid parameter at '{path}' failed to satisfy constraint: '{text}'"
    parts = [f"Value {'null' if value is None else repr_value(value)} at '{path}' failed to "
             f"satisfy constraint: {text}" for path, value, text in errors]
    noun = "error" if len(parts) == 1 else "errors"
    return f"{len(parts)} validation {noun} detected: " + "; ".join(parts)


def repr_value(value):
    return f"'{java_str(value)}'"


# ------------------------------------------------------------------ reading requests
def read_body(environ):
    """The request body, read once and put back for moto."""
    stream = environ["wsgi.input"]
    if environ.get("wsgi.input_terminated"):
        body = stream.read()
    else:
        body = stream.read(int(environ.get("CONTENT_LENGTH") or 0))
    environ["wsgi.input"], environ["CONTENT_LENGTH"] = io.BytesIO(body), str(len(body))
    return body


_MISSING = object()


def _scalar(shape, text):
    """A query/URI/header string as the shape's type (numbers parsed; a number that does not
    parse is left out, AWS would not get as far as its constraints); other types stay strings
    (booleans, timestamps and blobs have no constraints checked here)."""
    try:
        if shape.type_name in ("integer", "long"):
            return int(text)
        if shape.type_name in ("float", "double"):
            return float(text)
    except ValueError:
        return _MISSING
    return text


def _indices(form, prefix):
    start = prefix + "."
    found = set()
    for key in form:
        if key.startswith(start):
            head = key[len(start):].split(".", 1)[0]
            if head.isdigit():
                found.add(int(head))
    return sorted(found)


def unflatten(shape, form, prefix):
    """Query-protocol form fields -> the value botocore's query serializer built them from
    (botocore/serialize.py QuerySerializer: members by locationName, lists as
    PREFIX.member.N (or the member's locationName; flattened: PREFIX.N with the last name
    replaced by the member's locationName), maps as PREFIX.entry.N.key / .value, an empty list
    as PREFIX='')."""
    kind = shape.type_name
    if kind == "structure":
        out = {}
        for name, member in shape.members.items():
            key = member.serialization.get("name", name)
            value = unflatten(member, form, f"{prefix}.{key}" if prefix else key)
            if value is not _MISSING:
                out[name] = value
        if prefix and not out:
            return _MISSING
        return out
    if kind == "list":
        if shape.serialization.get("flattened"):
            name = shape.member.serialization.get("name")
            list_prefix = ".".join(prefix.split(".")[:-1] + [name]) if name else prefix
        else:
            list_prefix = f"{prefix}.{shape.member.serialization.get('name', 'member')}"
        indices = _indices(form, list_prefix)
        if not indices:
            return [] if form.get(prefix) == "" else _MISSING
        items = [unflatten(shape.member, form, f"{list_prefix}.{i}") for i in indices]
        return [None if item is _MISSING else item for item in items]
    if kind == "map":
        full = prefix if shape.serialization.get("flattened") else f"{prefix}.entry"
        key_name = shape.key.serialization.get("name", "key")
        value_name = shape.value.serialization.get("name", "value")
        indices = _indices(form, full)
        if not indices:
            return _MISSING
        out = {}
        for i in indices:
            value = unflatten(shape.value, form, f"{full}.{i}.{value_name}")
            out[form.get(f"{full}.{i}.{key_name}", "")] = None if value is _MISSING else value
        return out
    if prefix not in form:
        return _MISSING
    return _scalar(shape, form[prefix])


def _json_wire(name, member):
    return member.serialization.get("name", name)


def _by_name(name, member):
    return name


def match_rest_operation(model, method, path, qs):
    """(operation model, URI labels) of a rest-json request: the operation whose method,
    requestUri path template and literal query parameters match (most literal characters
    wins), else None."""
    best = None
    for op_name in model.operation_names:
        op = model.operation_model(op_name)
        if op.http.get("method") != method:
            continue
        template, _, literals = op.http.get("requestUri", "/").partition("?")
        names, rx = [], ""
        for part in re.split(r"(\{[^}]+\})", template):
            if part.startswith("{"):
                greedy = part.endswith("+}")
                names.append(part.strip("{}+"))
                rx += "(.+)" if greedy else "([^/]+)"
            else:
                rx += re.escape(part)
        m = re.fullmatch(rx.rstrip("/") + "/?", path)
        if not m:
            continue
        needed = [p.split("=", 1) for p in literals.split("&") if p]
        if any(kv[0] not in qs or (len(kv) == 2 and qs[kv[0]][0] != kv[1]) for kv in needed):
            continue
        score = len(re.sub(r"\{[^}]+\}", "", template)) + len(literals)
        if best is None or score > best[0]:
            best = (score, op, {n: unquote(v) for n, v in zip(names, m.groups())})
    return best and best[1:]


def rest_input(op, labels, qs, environ, body):
    """The input structure of a rest-json request (botocore RestJSONSerializer locations)."""
    shape, out = op.input_shape, {}
    payload = shape.serialization.get("payload")
    body_members = {}
    for name, member in shape.members.items():
        where = member.serialization.get("location")
        wire = member.serialization.get("name", name)
        if where == "uri":
            value = labels.get(wire, _MISSING)
            value = _scalar(member, value) if value is not _MISSING else value
        elif where == "querystring":
            if member.type_name == "list":
                value = [_scalar(member.member, v) for v in qs[wire]] if wire in qs else _MISSING
            elif member.type_name == "map":
                value = _MISSING
            else:
                value = _scalar(member, qs[wire][0]) if wire in qs else _MISSING
        elif where == "header":
            raw = environ.get("HTTP_" + wire.upper().replace("-", "_"))
            if wire.lower() == "content-type":
                raw = environ.get("CONTENT_TYPE") or raw
            value = _scalar(member, raw) if raw is not None else _MISSING
        elif where in ("headers", "statusCode"):
            value = _MISSING
        else:
            body_members[name] = member
            continue
        if value is not _MISSING:
            out[_json_wire(name, member)] = value
    if payload:
        member = shape.members[payload]
        if member.type_name == "structure" and body:
            try:
                out[_json_wire(payload, member)] = json.loads(body)
            except ValueError:
                pass
        elif body:
            out[_json_wire(payload, member)] = "<payload>"  # present; blobs are not checked
    elif body_members and body:
        try:
            doc = json.loads(body)
        except ValueError:
            doc = None
        if isinstance(doc, dict):
            out.update(doc)
    return out


def resolve(environ, scope):
    """-> (service, protocol, operation model, value, wire) of a request this module checks,
    else None."""
    candidates = SCOPE_MODELS.get(scope, (scope,))
    target = environ.get("HTTP_X_AMZ_TARGET")
    if target:
        prefix, _, action = target.rpartition(".")
        for name in candidates:
            model = service_model(name)
            if model and model.metadata.get("targetPrefix") == prefix and \
                    "json" in (model.metadata.get("protocols") or [model.protocol]):
                if action not in model.operation_names:
                    return None
                body = read_body(environ)
                try:
                    value = json.loads(body) if body.strip() else {}
                except ValueError:
                    return None  # AWS: SerializationException; moto answers it
                return name, "json", model.operation_model(action), value, _json_wire
        return None
    qs = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
    form = {}
    if environ.get("CONTENT_TYPE", "").startswith("application/x-www-form-urlencoded"):
        form = parse_qs(read_body(environ).decode("utf-8", "replace"), keep_blank_values=True)
    action = (form.get("Action") or qs.get("Action") or [None])[0]
    if action:
        fields = {k: v[0] for k, v in (form or qs).items()}
        for name in candidates:
            model = service_model(name)
            if model and "query" in (model.metadata.get("protocols") or [model.protocol]):
                if action not in model.operation_names:
                    return None
                op = model.operation_model(action)
                value = unflatten(op.input_shape, fields, "") if op.input_shape else {}
                return name, "query", op, value, _by_name
        return None
    for name in candidates:
        model = service_model(name)
        if model and model.protocol == "rest-json":
            found = match_rest_operation(model, environ["REQUEST_METHOD"],
                                         environ.get("PATH_INFO", "/"), qs)
            if found:
                op, labels = found
                body = read_body(environ)
                return name, "rest-json", op, rest_input(op, labels, qs, environ, body), _json_wire
    return None


def validate(environ, scope):
    """None when the request satisfies its operation's input shape (or is not one this module
    checks), else (service, protocol, error code, message)."""
    found = resolve(environ, scope)
    if found is None:
        return None
    service, protocol, op, value, wire = found
    if op.input_shape is None:
        return None
    checker = Checker(service, wire)
    checker.check(op.input_shape, value, "")
    if not checker.errors:
        return None
    code = ERROR_CODES.get(service, DEFAULT_CODES[protocol])
    return service, protocol, code, message(service, checker.errors)


def xml_escape(text):
    return (text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&quot;"))


def refusal(protocol, code, text, start_response):
    """The HTTP 400 AWS answers a validation failure with."""
    rid = str(uuid.uuid4())
    if protocol == "query":
        body = (f"<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code><Message>"
                f"{xml_escape(text)}</Message></Error><RequestId>{rid}</RequestId>"
                "</ErrorResponse>")
        headers = [("Content-Type", "text/xml")]
    else:
        # Coral's own validation error carries its namespace ("com.amazon.coral.validate#
        # ValidationException", as DynamoDB answers); clients keep the part after '#'.
        type_ = ("com.amazon.coral.validate#ValidationException"
                 if code == "ValidationException" else code)
        body = json.dumps({"__type": type_, "message": text})
        headers = [("Content-Type", "application/x-amz-json-1.1"), ("x-amzn-ErrorType", code)]
    data = body.encode()
    start_response("400 Bad Request", headers + [
        ("x-amzn-RequestId", rid), ("Content-Length", str(len(data)))])
    return [data]
