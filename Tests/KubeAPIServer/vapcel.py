"""CEL for the test server's ValidatingAdmissionPolicies, with the semantics kube-apiserver's cel-go
has: Google's own CEL implementation (cel-cpp, PyPI cel-expr-python), which follows the same
specification (github.com/google/cel-spec): `has(a.b.c)` with `a.b` missing is an error (only the
last selection is a presence test); `||` and `&&` are commutative over errors (`true || error` is
true, `error || true` too); `all`/`exists` likewise; a missing map key is "no such key".

At policy creation (pkg/apis/admissionregistration/validation/validation.go, through
staging/src/k8s.io/apiserver/pkg/admission/plugin/cel/compile.go CompileCELExpression) every
expression is parsed and type-checked; "compilation failed: ..." otherwise. The declarations
(compile.go createEnvForOpts): `object`, `oldObject` and `params` (only with a paramKind) are
dyn; `request` is the typed kubernetes.AdmissionRequest and `namespaceObject` the typed
kubernetes.Namespace, so an unknown field of either does not compile; `variables` is an object
type with one field per variable, of that variable's type, each variable seeing those before it
(composition.go), and only for validations and messageExpressions, not matchConditions. The
result type must be exactly bool for validations and matchConditions, string for a
messageExpression ("must evaluate to bool but got dyn": a bare `object.spec.x` does not compile).
Checking against the object's OpenAPI schema refuses nothing (validating/typechecking.go only
warns), so `object` stays dyn here too. The libraries: the standard ones, strings (ext.Strings)
and optional types (base.go); Kubernetes' own lists, regex, URL, quantity, IP and authorizer
libraries are not here: a policy using them fails to compile on this server, visibly.

At evaluation the request is what CreateAdmissionRequest makes, converted as the API server
converts it: fields tagged omitempty are absent when empty, so `request.namespace` of a
cluster-scoped request is an error (no such key), not ''; `namespaceObject` is null for
cluster-scoped requests and for Namespaces themselves.
"""
import functools, hashlib, re

try:
    from cel_expr_python import cel
    from cel_expr_python.ext import ext_optional, ext_strings
    from google.protobuf import descriptor_pb2, descriptor_pool, struct_pb2, timestamp_pb2
except ImportError:   # scripts/install-deps.sh installs cel-expr-python into .venv-tools
    cel = None

available = cel is not None
F = descriptor_pb2.FieldDescriptorProto


class CelError(Exception):
    """An evaluation error, with cel-go's wording."""


def _message(fdp, name, fields):
    """A message type: fields are (name, type) with type "string", "bool", "int64", ".pkg.Msg",
    "[string]" (repeated) or "{string:string}" / "{string:.pkg.Msg}" (maps)."""
    m = fdp.message_type.add(name=name)
    scalar = {"string": F.TYPE_STRING, "bool": F.TYPE_BOOL, "int64": F.TYPE_INT64, "uint64": F.TYPE_UINT64,
              "double": F.TYPE_DOUBLE, "bytes": F.TYPE_BYTES}
    for i, (fname, t) in enumerate(fields, 1):
        label = F.LABEL_OPTIONAL
        if t.startswith("["):
            label, t = F.LABEL_REPEATED, t[1:-1]
        if t.startswith("{"):
            k, v = t[1:-1].split(":")
            entry = m.nested_type.add(name=fname[0].upper() + fname[1:] + "Entry")
            entry.options.map_entry = True
            for j, (n, et) in enumerate((("key", k), ("value", v)), 1):
                f = entry.field.add(name=n, number=j, label=F.LABEL_OPTIONAL)
                if et.startswith("."):
                    f.type, f.type_name = F.TYPE_MESSAGE, et
                else:
                    f.type = scalar[et]
            m.field.add(name=fname, number=i, label=F.LABEL_REPEATED, type=F.TYPE_MESSAGE, type_name=f".kubernetes.{name}.{entry.name}")
            continue
        f = m.field.add(name=fname, number=i, label=label)
        if t.startswith("."):
            f.type, f.type_name = F.TYPE_MESSAGE, t
        else:
            f.type = scalar[t]
    return m


def _kubernetes_types(pool):
    """kubernetes.AdmissionRequest (k8s.io/api/admission/v1 AdmissionRequest, as compile.go
    declares it) and kubernetes.Namespace (BuildNamespaceType: metadata, spec.finalizers,
    status.conditions and phase)."""
    fdp = descriptor_pb2.FileDescriptorProto(name="kubernetes.proto", package="kubernetes", syntax="proto3")
    fdp.dependency.extend(["google/protobuf/struct.proto", "google/protobuf/timestamp.proto"])
    _message(fdp, "GroupVersionKind", [("group", "string"), ("version", "string"), ("kind", "string")])
    _message(fdp, "GroupVersionResource", [("group", "string"), ("version", "string"), ("resource", "string")])
    _message(fdp, "UserInfo", [("username", "string"), ("uid", "string"), ("groups", "[string]"),
                               ("extra", "{string:.google.protobuf.ListValue}")])
    _message(fdp, "AdmissionRequest", [("kind", ".kubernetes.GroupVersionKind"), ("resource", ".kubernetes.GroupVersionResource"),
                                       ("subResource", "string"), ("requestKind", ".kubernetes.GroupVersionKind"),
                                       ("requestResource", ".kubernetes.GroupVersionResource"), ("requestSubResource", "string"),
                                       ("name", "string"), ("namespace", "string"), ("operation", "string"),
                                       ("userInfo", ".kubernetes.UserInfo"), ("dryRun", "bool"), ("options", ".google.protobuf.Value")])
    _message(fdp, "NamespaceMetadata", [("name", "string"), ("generateName", "string"), ("namespace", "string"),
                                        ("labels", "{string:string}"), ("annotations", "{string:string}"), ("UID", "string"),
                                        ("creationTimestamp", ".google.protobuf.Timestamp"), ("deletionGracePeriodSeconds", "int64"),
                                        ("deletionTimestamp", ".google.protobuf.Timestamp"), ("generation", "int64"),
                                        ("resourceVersion", "string"), ("finalizers", "[string]")])
    _message(fdp, "NamespaceSpec", [("finalizers", "[string]")])
    _message(fdp, "NamespaceCondition", [("type", "string"), ("status", "string"), ("lastTransitionTime", ".google.protobuf.Timestamp"),
                                         ("reason", "string"), ("message", "string")])
    _message(fdp, "NamespaceStatus", [("conditions", "[.kubernetes.NamespaceCondition]"), ("phase", "string")])
    _message(fdp, "Namespace", [("metadata", ".kubernetes.NamespaceMetadata"), ("spec", ".kubernetes.NamespaceSpec"),
                                ("status", ".kubernetes.NamespaceStatus")])
    pool.Add(fdp)


_pool = None
_variable_types = {}   # signature -> message name


def _checking_pool():
    global _pool
    if _pool is None:
        _pool = descriptor_pool.DescriptorPool()
        _pool.AddSerializedFile(struct_pb2.DESCRIPTOR.serialized_pb)
        _pool.AddSerializedFile(timestamp_pb2.DESCRIPTOR.serialized_pb)
        _kubernetes_types(_pool)
    return _pool


# A CEL type (as cel-cpp names it) -> the proto field type that checks as the same CEL type.
PROTO_OF = {"BOOL": "bool", "INT": "int64", "UINT": "uint64", "DOUBLE": "double", "STRING": "string", "BYTES": "bytes"}


def _variables_type(declared):
    """The `variables` object type for [(name, cel type name)]: one message per distinct list."""
    sig = tuple(declared)
    if sig not in _variable_types:
        name = "variables_" + hashlib.sha256(repr(sig).encode()).hexdigest()[:12]
        fdp = descriptor_pb2.FileDescriptorProto(name=name + ".proto", package="kubernetes", syntax="proto3")
        fdp.dependency.append("google/protobuf/struct.proto")
        _message(fdp, name, [(n, PROTO_OF.get(t, ".google.protobuf.Value")) for n, t in declared])
        _checking_pool().Add(fdp)
        _variable_types[sig] = name
    return _variable_types[sig]


def _extensions():
    return [ext_strings.ExtStrings(), ext_optional.ExtOptional()]


@functools.lru_cache(maxsize=256)
def _checking_env(params, variables):
    """The environment expressions are compiled in at creation: `variables` a tuple of (name, type)
    or None when they are not declared."""
    D = cel.Type.DYN
    decls = {"object": D, "oldObject": D, "request": cel.Type("kubernetes.AdmissionRequest"),
             "namespaceObject": cel.Type("kubernetes.Namespace")}
    if params:
        decls["params"] = D
    if variables is not None:
        decls["variables"] = cel.Type("kubernetes." + _variables_type(variables))
    return cel.NewEnv(descriptor_pool=_checking_pool(), variables=decls, extensions=_extensions())


@functools.lru_cache(maxsize=1)
def _evaluation_env():
    D = cel.Type.DYN
    return cel.NewEnv(variables={n: D for n in ("object", "oldObject", "request", "namespaceObject", "params", "variables")},
                      extensions=_extensions())


@functools.lru_cache(maxsize=1024)
def _program(expr):
    return _evaluation_env().compile(expr, disable_check=True)


def type_name(t):
    """cel-go's spelling of a type: bool, dyn, list(dyn), map(string, dyn)."""
    return t.name().lower().replace("<", "(").replace(">", ")").replace(",", ", ").replace(",  ", ", ")


def compile_detail(e):
    """cel-go's "ERROR: <input>:1:5: ..." text, without cel-cpp's status code around it."""
    text = str(e)
    text = re.sub(r"^[A-Z_]+: ", "", text)
    return re.sub(r" \[[A-Z_]+\]$", "", text.strip())


def check_policy(spec):
    """What the API server refuses in a policy's expressions: [(field, expression, detail)]."""
    out = []
    params = bool(spec.get("paramKind"))

    def check(field, expr, variables, want):
        if not (expr or "").strip():
            return None
        try:
            program = _checking_env(params, variables).compile(expr)
        except Exception as e:
            out.append((field, expr, "compilation failed: " + compile_detail(e)))
            return None
        got = program.return_type()
        if want and type_name(got) != want:
            out.append((field, expr, f"must evaluate to {want} but got {type_name(got)}"))
        return got

    declared = []
    for i, v in enumerate(spec.get("variables") or []):
        got = check(f"spec.variables[{i}].expression", v.get("expression"), tuple(declared), None)
        declared.append((v.get("name") or "", got.name() if got is not None else "DYN"))
    vs = tuple(declared) if declared else None
    for i, v in enumerate(spec.get("validations") or []):
        check(f"spec.validations[{i}].expression", v.get("expression"), vs, "bool")
        if v.get("messageExpression"):
            check(f"spec.validations[{i}].messageExpression", v["messageExpression"], vs, "string")
    for i, c in enumerate(spec.get("matchConditions") or []):
        check(f"spec.matchConditions[{i}].expression", c.get("expression"), None, "bool")
    return out


def _cel_go_wording(detail):
    m = re.search(r'Key not found in map\s*:\s*"?([^"]*)"?', detail)
    if m:
        return "no such key: " + m.group(1)
    if "No matching overloads" in detail or "no matching overload" in detail:
        return "no such overload"
    return re.sub(r"^[A-Z_]+: ", "", detail)


def evaluate(expr, data):
    """The value of an expression for `data` (plain JSON-like values); CelError for an error."""
    v = _program(expr).eval(data=data)
    if v.type() == cel.Type.ERROR:
        raise CelError(_cel_go_wording(str(v.value())))
    return v.plain_value()


def variables(spec, data):
    """Every variable, in order, each seeing those before it: (values, errors by name). Kubernetes
    evaluates them lazily; an error counts only where the variable is used (see `explain`)."""
    values, errors = {}, {}
    for v in spec.get("variables") or []:
        name = v.get("name") or ""
        try:
            values[name] = evaluate(v.get("expression") or "", dict(data, variables=values))
        except CelError as e:
            errors[name] = e
    return values, errors


def explain(expr, error, variable_errors):
    """A use of a variable that failed fails with that variable's error, as lazy evaluation would."""
    for name in re.findall(r"variables\.([A-Za-z_][A-Za-z0-9_]*)", expr):
        if name in variable_errors:
            return variable_errors[name]
    return error
