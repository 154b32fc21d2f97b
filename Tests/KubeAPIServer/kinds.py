"""What the API server checks of a built-in kind's object before anything else, for the test server.

Names (pkg/apis/core/validation and the kinds' own validation, through
staging/src/k8s.io/apimachinery/pkg/util/validation): a Namespace's is a DNS-1123 label, a
Service's a DNS-1035 label, the RBAC kinds' a path segment (ValidateRBACName), a CronJob's a
DNS-1123 subdomain of at most 52 characters, every other kind's a DNS-1123 subdomain. 422 Invalid,
with the apimachinery messages.

Fields (staging/src/k8s.io/apiserver/pkg/endpoints/handlers/rest.go fieldValidation; the JSON
decoder's strict mode, apimachinery strictDecodingError): a field the kind does not have is, by
the request's fieldValidation, a 400 BadRequest `<Kind> in version "<v>" cannot be handled as a
<Kind>: strict decoding error: unknown field "spec.foo"` (Strict), a warning `unknown field
"spec.foo"` (Warn, the default since 1.27), or nothing (Ignore). A value of the wrong type does not
decode, whatever fieldValidation says (400). A server-side apply is typed by the field manager
(structured-merge-diff): an unknown field there fails whatever fieldValidation says, "failed to
create typed patch object (<ns>/<name>; <gv>, Kind=<kind>): .spec.foo: field not declared in
schema" (500). The kinds' schemas are Kubernetes 1.36's OpenAPI, as the kubernetes-validate
package carries them (its -strict variant closes every object). Required fields and the kinds'
other validation rules are not checked here.
"""
import functools, os, re

DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
SUBDOMAIN_MSG = ("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end "
                 "with an alphanumeric character (e.g. 'example.com', regex used for validation is "
                 "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')")
LABEL_MSG = ("a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an "
             "alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')")
DNS1035_MSG = ("a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end "
               "with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')")
RBAC_KINDS = {"roles", "clusterroles", "rolebindings", "clusterrolebindings"}


def name_problems(gv, resource, name):
    """The messages for an invalid metadata.name of a built-in kind."""
    if resource in RBAC_KINDS and gv.startswith("rbac.authorization.k8s.io/"):
        if name in (".", ".."):
            return [f"may not be '{name}'"]
        return [f"may not contain '{c}'" for c in "/%" if c in name]
    if (gv, resource) == ("v1", "namespaces"):
        out = [] if DNS1123_LABEL.match(name) else [LABEL_MSG]
        return out + (["must be no more than 63 characters"] if len(name) > 63 else [])
    if (gv, resource) == ("v1", "services"):
        out = [] if DNS1035_LABEL.match(name) else [DNS1035_MSG]
        return out + (["must be no more than 63 characters"] if len(name) > 63 else [])
    out = [] if DNS1123_SUBDOMAIN.match(name) else [SUBDOMAIN_MSG]
    out += ["must be no more than 253 characters"] if len(name) > 253 else []
    if (gv, resource) == ("batch/v1", "cronjobs") and len(name) > 52:
        out.append("must be no more than 52 characters")
    return out


SCHEMAS = "kubernetes-json-schema/v1.36.0-local-strict"


@functools.lru_cache(maxsize=128)
def _validator(gv, kind):
    """A validator of the kind's 1.36 schema, closed against unknown fields; None when there is none."""
    try:
        import json, jsonschema, kubernetes_validate
        from referencing import Registry, Resource
    except ImportError:
        return None
    base = os.path.join(os.path.dirname(kubernetes_validate.__file__), SCHEMAS)
    short = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", gv)
    path = os.path.join(base, f"{kind.lower()}-{short}.json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        schema = json.load(f)
    with open(os.path.join(base, "_definitions.json")) as f:
        definitions = json.load(f)
    registry = Resource.from_contents(schema) @ (Resource.from_contents(definitions) @ Registry())
    return jsonschema.validators.Draft202012Validator(schema, registry=registry)


def field_problems(obj):
    """(unknown fields as "spec.foo", type errors as "spec.replicas: ...") of a built-in kind's object."""
    v = _validator(obj.get("apiVersion", ""), obj.get("kind", ""))
    if v is None:
        return [], []
    unknown, typed = [], []
    for e in v.iter_errors(obj):
        where = ".".join(str(p) for p in e.absolute_path)
        if e.validator == "additionalProperties":
            for name in re.findall(r"'([^']+)'", e.message.split("(")[-1]):
                unknown.append(f"{where}.{name}" if where else name)
        elif e.validator == "type":
            typed.append(f"{where}: {e.message}")
    return sorted(set(unknown)), typed
