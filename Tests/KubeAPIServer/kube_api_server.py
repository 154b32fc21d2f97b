#!/usr/bin/env python3
"""A Kubernetes API test server for drctl's tests: no kube-apiserver runs on these machines.

Faithful for what drctl uses, and only that: HTTPS on loopback with a test CA; users by client
certificate (CN, groups from O) or bearer token (--tokens FILE: "token user [group1,group2,...]"
per line), every one of them also in system:authenticated; discovery documents for the kinds
drctl renders; create/get/list/delete with `Status` errors (401, 403, 404 NotFound, 409
AlreadyExists/Conflict, 422 Invalid with causes); resourceVersion; label selectors (=, !=,
exists); `limit`/`continue` pagination; server-side apply (application/apply-patch+yaml, its body
read as YAML the way the API server reads it: goyaml.py) with
per-manager field ownership, conflicts and `force`, `dryRun=All`; namespaces that go Terminating
and disappear once their objects are gone (default and kube-system may not be deleted); watch
streams (resourceVersion, fieldSelector on the name, timeoutSeconds, 410 Expired after POST
/__compact); pods/log; SelfSubjectAccessReview, SubjectAccessReview, LocalSubjectAccessReview,
TokenReview and SelfSubjectReview.

--crds DIR: custom resources are validated on create and apply against their CRD's
openAPIV3Schema, strictly (unknown fields are errors), as scripts/validate-manifests does: 422
Invalid with one cause per problem.
--rbac FILE: the objects in FILE (e.g. deploy/rbac.yaml) are put in the store at start, as an
admin would apply them, and RBAC is then evaluated on every request from the store's current
Roles, ClusterRoles (aggregated ones too), RoleBindings and ClusterRoleBindings: subjects
ServiceAccount, User and Group; resourceNames; `*`; subresources (`pods/log`, `*/log`); a
RoleBinding to a ClusterRole grants in its namespace only. Members of system:masters may do
everything (not recorded); every other user is held to RBAC, a request no rule allows is 403
Forbidden, and each such decision is kept for GET /__audit. Escalation prevention: a Role or
ClusterRole may be written only by someone holding all it grants at its scope (or `escalate`),
a binding only by someone holding all its role grants at the binding's scope (or `bind` on that
role, resourceNames honoured); roleRef cannot change. A server-side apply that creates its object
needs `create` as well as `patch`, as the API server's patch handler asks. Without --rbac
everyone may do everything.
Not modelled: non-resource URL enforcement (discovery is allowed to all, as Kubernetes'
system:discovery role does), impersonation.
--admission FILE: ValidatingAdmissionPolicies and their bindings in FILE are put in the store at
start; they can also be created through the API. They are evaluated with CEL (cel-python) on
every CREATE, UPDATE (each server-side apply, even one that changes nothing, and dry runs too)
and DELETE, by every user including system:masters and the simulated Velero (as its service
account); other controller writes are internal and not admitted. Not modelled: paramRef
selectors, auditAnnotations, the `authorizer` variable, the CEL cost budget.
NetworkPolicies and PodDisruptionBudgets are stored and served, not enforced. Leases are
validated as the API server does and updated (PUT) with resourceVersion conflicts: they are how
drctl serve's replicas elect a leader.
POST /__partition {"token": T, "cut": bool}: the requests of the client with bearer token T go
unanswered until healed, as across a network partition.
GET /__writes: every change to the store in order (creates, applies that change or create,
deletes, namespace finalization, controller status updates), with the user or controller that
made it; objects created at start (default namespaces, --rbac and --admission seeds) as
"bootstrap".

  kube_api_server.py --cert server.pem --key server.key --ca ca.pem --tokens tokens --port-file F
                     [--controllers] [--crds DIR] [--rbac FILE] [--admission FILE]
"""
import argparse, base64, copy, functools, http.server, json, os, re, socket, socketserver, ssl, sys, threading, time, urllib.parse, uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import goyaml, kinds, podsecurity
from controllers import merge_patch   # RFC 7386, one copy for the server and Velero's modifiers (stdlib only: no controller runs)

RESOURCES = {
    "v1": [("namespaces", "Namespace", False), ("configmaps", "ConfigMap", True), ("secrets", "Secret", True),
           ("services", "Service", True), ("serviceaccounts", "ServiceAccount", True), ("pods", "Pod", True),
           ("replicationcontrollers", "ReplicationController", True),
           ("persistentvolumeclaims", "PersistentVolumeClaim", True), ("persistentvolumes", "PersistentVolume", False)],
    "apps/v1": [("deployments", "Deployment", True), ("statefulsets", "StatefulSet", True), ("replicasets", "ReplicaSet", True),
                ("daemonsets", "DaemonSet", True)],
    "batch/v1": [("cronjobs", "CronJob", True), ("jobs", "Job", True)],
    "rbac.authorization.k8s.io/v1": [("roles", "Role", True), ("rolebindings", "RoleBinding", True),
                                     ("clusterroles", "ClusterRole", False), ("clusterrolebindings", "ClusterRoleBinding", False)],
    "networking.k8s.io/v1": [("networkpolicies", "NetworkPolicy", True)],
    "discovery.k8s.io/v1": [("endpointslices", "EndpointSlice", True)],
    "policy/v1": [("poddisruptionbudgets", "PodDisruptionBudget", True)],
    "coordination.k8s.io/v1": [("leases", "Lease", True)],
    "storage.k8s.io/v1": [("storageclasses", "StorageClass", False)],
    "admissionregistration.k8s.io/v1": [("validatingadmissionpolicies", "ValidatingAdmissionPolicy", False),
                                        ("validatingadmissionpolicybindings", "ValidatingAdmissionPolicyBinding", False)],
    "velero.io/v1": [("backups", "Backup", True), ("restores", "Restore", True), ("schedules", "Schedule", True),
                     ("backupstoragelocations", "BackupStorageLocation", True)],
    "postgresql.cnpg.io/v1": [("clusters", "Cluster", True), ("scheduledbackups", "ScheduledBackup", True), ("backups", "Backup", True)],
    "barmancloud.cnpg.io/v1": [("objectstores", "ObjectStore", True)],
    "monitoring.coreos.com/v1": [("prometheusrules", "PrometheusRule", True), ("servicemonitors", "ServiceMonitor", True)],
    "monitoring.coreos.com/v1alpha1": [("alertmanagerconfigs", "AlertmanagerConfig", True)],
}
# Reviews: create-only, answered and never stored, served by every cluster whatever KUBE_TEST_GROUPS says.
REVIEWS = {
    "authentication.k8s.io/v1": [("tokenreviews", "TokenReview", False), ("selfsubjectreviews", "SelfSubjectReview", False)],
    "authorization.k8s.io/v1": [("subjectaccessreviews", "SubjectAccessReview", False), ("selfsubjectaccessreviews", "SelfSubjectAccessReview", False),
                                ("localsubjectaccessreviews", "LocalSubjectAccessReview", True)],
}
SERVED = set(os.environ.get("KUBE_TEST_GROUPS", ",".join(RESOURCES)).split(",")) | set(REVIEWS)
# The kinds Kubernetes itself defines (the others come from CRDs): validated as kinds.py says.
BUILTIN = {"v1", "apps/v1", "batch/v1", "rbac.authorization.k8s.io/v1", "networking.k8s.io/v1", "discovery.k8s.io/v1", "policy/v1",
           "coordination.k8s.io/v1", "storage.k8s.io/v1", "admissionregistration.k8s.io/v1"}
DNS = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
IGNORED_META = {"resourceVersion", "uid", "creationTimestamp", "managedFields", "generation", "deletionTimestamp", "deletionGracePeriodSeconds"}
RBAC_GV = "rbac.authorization.k8s.io/v1"
ADMISSION_GV = "admissionregistration.k8s.io/v1"
# kubernetes.io/docs/reference/access-authn-authz/authentication/#users-in-kubernetes: every
# authenticated user is also in system:authenticated; system:masters is the superuser group.
AUTHENTICATED, MASTERS = "system:authenticated", "system:masters"

lock = threading.RLock()
store = {}          # (gv, resource, namespace or "", name) -> object
owners = {}         # same key -> {manager: set(paths)}
rv = [1]
events = []         # (rv, type, key, object, the object before): what watches see
request_context = threading.local()   # the User-Agent of the request being handled (the audit log's userAgent)
partitioned = set() # bearer tokens whose requests go unanswered (POST /__partition)
compacted = [0]     # watches from a resourceVersion below this get 410 Expired
window = [0]        # ... and below this, the oldest event the watch cache still has
WATCH_WINDOW = int(os.environ.get("KUBE_TEST_WATCH_WINDOW", "10000"))
last_recorded = {}  # key -> the object as its last event carried it
changed = threading.Condition(lock)
writes = []         # every change to the store, for GET /__writes


def now():
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def record(kind, key, obj):
    """Appends a watch event (call with the lock held), with the object as it was before (what a
    watch with a label selector needs to tell a change of labels). The watch cache keeps a window
    of events: a watch from before it is told 410 Expired."""
    previous = last_recorded.get(key)
    cleaned = {k: v for k, v in copy.deepcopy(obj).items() if not k.startswith("_")}
    events.append((rv[0], kind, key, cleaned, previous))
    if kind == "DELETED":
        last_recorded.pop(key, None)
    else:
        last_recorded[key] = cleaned
    if len(events) > WATCH_WINDOW:
        window[0] = events[-WATCH_WINDOW][0] - 1   # the oldest resourceVersion still watchable from
        del events[:-WATCH_WINDOW]
    changed.notify_all()


def log_write(verb, key, user):
    """One change to the store (call with the lock held, after rv moved): create, update, delete, status, finalize."""
    writes.append({"rv": rv[0], "time": now(), "at": time.time(), "verb": verb, "user": user, "userAgent": getattr(request_context, "agent", None), "apiVersion": key[0], "resource": key[1],
                   "namespace": key[2], "name": key[3]})


def status(code, reason, message, causes=None, name=None, kind=None, group=None):
    d = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message, "reason": reason, "code": code}
    if causes or name:
        d["details"] = {k: v for k, v in (("name", name), ("group", group), ("kind", kind), ("causes", causes)) if v}
    return code, d


def leaves(obj, prefix=()):
    """Every leaf path of an object (lists are atomic), without server-owned metadata."""
    out = {}
    for k, v in obj.items():
        if prefix == ("metadata",) and k in IGNORED_META or prefix == () and (k == "status" or k.startswith("_")):
            continue
        p = prefix + (k,)
        if isinstance(v, dict) and v:
            out.update(leaves(v, p))
        else:
            out[p] = v
    return out


def get_path(obj, path):
    for k in path:
        if not isinstance(obj, dict) or k not in obj:
            return None
        obj = obj[k]
    return obj


def set_path(obj, path, value):
    for k in path[:-1]:
        obj = obj.setdefault(k, {})
    obj[path[-1]] = copy.deepcopy(value)


def del_path(obj, path):
    parents = []
    for k in path[:-1]:
        if k not in obj:
            return
        parents.append((obj, k))
        obj = obj[k]
    obj.pop(path[-1], None)
    for parent, k in reversed(parents):
        if parent[k] == {}:
            del parent[k]


def fields_v1(paths):
    root = {}
    for p in sorted(paths):
        node = root
        for k in p:
            node = node.setdefault("f:" + k, {})
    return root


def managed(key):
    return [{"manager": m, "operation": op, "apiVersion": "v1", "fieldsType": "FieldsV1", "fieldsV1": fields_v1(paths)}
            for m, (op, paths) in sorted(owners.get(key, {}).items()) if paths]


def matches(obj, selector):
    labels = obj.get("metadata", {}).get("labels", {}) or {}
    for term in filter(None, (selector or "").split(",")):
        if "!=" in term:
            k, v = term.split("!=", 1)
            if labels.get(k) == v:
                return False
        elif "=" in term:
            k, v = term.split("=", 1)
            if labels.get(k.rstrip("=")) != v:
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


def selector_matches(sel, labels):
    """A metav1.LabelSelector (matchLabels, matchExpressions In/NotIn/Exists/DoesNotExist) against labels;
    kubernetes.io/docs/concepts/overview/working-with-objects/labels/#resources-that-support-set-based-requirements.
    An empty selector matches everything; an unknown operator raises ValueError."""
    labels = labels or {}
    sel = sel or {}
    for k, v in (sel.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for e in sel.get("matchExpressions") or []:
        op, k, vals = e.get("operator"), e.get("key"), e.get("values") or []
        if op == "In" and labels.get(k) not in vals or op == "NotIn" and k in labels and labels[k] in vals:
            return False
        if op == "Exists" and k not in labels or op == "DoesNotExist" and k in labels:
            return False
        if op not in ("In", "NotIn", "Exists", "DoesNotExist"):
            raise ValueError(f"{op!r} is not a valid label selector operator")
    return True


KIND_TO_RESOURCE = {(gv, k): (r, n) for gv, rows in RESOURCES.items() for r, k, n in rows}
RESOURCE_INFO = {(gv, r): (k, n) for gv, rows in RESOURCES.items() for r, k, n in rows}
controllers = None   # the simulated controllers module, with --controllers
schemas = {}         # (apiVersion, kind) -> a strict validator, with --crds
rbac_on = False      # with --rbac: everyone outside system:masters is held to the store's RBAC
audit = []           # every RBAC decision about a user outside system:masters


def group_of(gv):
    return gv.split("/")[0] if "/" in gv else ""


def served_gv(gv):
    return gv in SERVED and gv in RESOURCES


def load_schemas(d):
    """The CRDs' schemas, closed against unknown fields: scripts/validate-manifests' reading of them."""
    import importlib.machinery, importlib.util, jsonschema
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../scripts/validate-manifests")
    loader = importlib.machinery.SourceFileLoader("validate_manifests", path)
    vm = importlib.util.module_from_spec(importlib.util.spec_from_loader("validate_manifests", loader))
    loader.exec_module(vm)
    crds = vm.load_crds(d)
    raw_schemas.update(crds)
    return {key: jsonschema.Draft7Validator(vm.strict(schema)) for key, schema in crds.items()}


raw_schemas = {}     # (apiVersion, kind) -> the CRD's openAPIV3Schema, for defaulting


def defaulted(obj):
    """A custom resource with its CRD's defaults (apiextensions-apiserver structural defaulting,
    kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definitions/#defaulting):
    applied when the object is decoded, so before admission, for every field that is absent (or
    null and not nullable) inside an object that is present, and in every item of a list."""
    schema = raw_schemas.get((obj.get("apiVersion"), obj.get("kind")))
    if controllers and (obj.get("apiVersion"), obj.get("kind")) == ("postgresql.cnpg.io/v1", "Cluster"):
        obj = controllers.cnpg_defaults(obj)
    if schema is None:
        return obj

    def walk(node, sch):
        if isinstance(node, dict):
            for k, sub in (sch.get("properties") or {}).items():
                if "default" in sub and (k not in node or (node[k] is None and not sub.get("nullable"))):
                    node[k] = copy.deepcopy(sub["default"])
                if k in node:
                    walk(node[k], sub)
            extra = sch.get("additionalProperties")
            if isinstance(extra, dict):
                for k, v in node.items():
                    if k not in (sch.get("properties") or {}):
                        walk(v, extra)
        elif isinstance(node, list) and isinstance(sch.get("items"), dict):
            for item in node:
                walk(item, sch["items"])
        return node
    return walk(copy.deepcopy(obj), schema)


MICROTIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}(Z|[+-]\d{2}:\d{2})$")


def lease_validation(obj):
    """pkg/apis/coordination/validation ValidateLeaseSpec: leaseDurationSeconds and
    leaseTransitions are not negative, and the duration, when set, is more than 0. acquireTime
    and renewTime are MicroTime, decoded with Go's layout RFC3339Micro (exactly six fractional
    digits): anything else does not decode (returned as "decode" causes, answered 400)."""
    spec = obj.get("spec") or {}
    causes = []
    d = spec.get("leaseDurationSeconds")
    if d is not None and (not isinstance(d, int) or d <= 0):
        causes.append({"reason": "FieldValueInvalid", "field": "spec.leaseDurationSeconds", "message": f"Invalid value: {d}: must be greater than 0"})
    t = spec.get("leaseTransitions")
    if t is not None and (not isinstance(t, int) or t < 0):
        causes.append({"reason": "FieldValueInvalid", "field": "spec.leaseTransitions", "message": f"Invalid value: {t}: must be greater than or equal to 0"})
    for f in ("acquireTime", "renewTime"):
        v = spec.get(f)
        if v is not None and (not isinstance(v, str) or not MICROTIME.match(v)):
            causes.append({"reason": "decode", "field": "spec." + f, "message": f'parsing time "{v}" as "2006-01-02T15:04:05.000000Z07:00": cannot parse'})
    return causes


def schema_causes(obj):
    v = schemas.get((obj.get("apiVersion"), obj.get("kind")))
    if v is None:
        return []
    return [{"reason": "FieldValueInvalid", "field": ".".join(map(str, e.absolute_path)) or "(root)", "message": e.message}
            for e in sorted(v.iter_errors(obj), key=lambda e: list(map(str, e.absolute_path)))]


def seed(path):
    """The objects of an --rbac or --admission file, stored as an admin's `kubectl apply` would (no
    admission: they are the cluster's starting state). Namespaced ones are stored even when their
    namespace does not exist yet: the tests make the namespaces after the server starts."""
    import yaml
    for d in (d for d in yaml.safe_load_all(open(path)) if d):
        gv, kind, meta = d.get("apiVersion"), d.get("kind"), d.get("metadata") or {}
        if (gv, kind) not in KIND_TO_RESOURCE:
            sys.exit(f"kube_api_server: {path}: {gv}/{kind} is not a kind this server serves")
        resource, namespaced = KIND_TO_RESOURCE[(gv, kind)]
        ns = meta.get("namespace", "default") if namespaced else ""
        store_new((gv, resource, ns, meta["name"]), d, ns or None, "kubectl", "Update", "bootstrap")


# ---- RBAC: kubernetes.io/docs/reference/access-authn-authz/rbac/ ----

def rbac_objects():
    """The store's Roles, ClusterRoles, RoleBindings and ClusterRoleBindings (call with the lock held)."""
    out = {"roles": {}, "clusterroles": {}, "rolebindings": [], "clusterrolebindings": []}
    for (gv, resource, ns, name), o in store.items():
        if gv != RBAC_GV:
            continue
        if resource == "roles":
            out["roles"][(ns, name)] = o
        elif resource == "clusterroles":
            out["clusterroles"][name] = o
        else:
            out[resource].append(o)
    return out


def role_rules(objs, kind, ns, name, seen=None):
    """The rules a roleRef grants. An aggregated ClusterRole's rules are those of every ClusterRole its
    clusterRoleSelectors select (rbac/#aggregated-clusterroles: the controller overwrites `rules`)."""
    if kind == "Role":
        role = objs["roles"].get((ns, name))
        return (role or {}).get("rules") or [] if role else None
    role = objs["clusterroles"].get(name)
    if role is None:
        return None
    agg = role.get("aggregationRule")
    if not agg:
        return role.get("rules") or []
    seen = (seen or set()) | {name}
    out = []
    for other_name, other in sorted(objs["clusterroles"].items()):
        if other_name in seen:
            continue
        labels = other.get("metadata", {}).get("labels")
        if any(selector_matches(s, labels) for s in agg.get("clusterRoleSelectors") or []):
            out += role_rules(objs, "ClusterRole", "", other_name, seen) or []
    return out


def subject_matches(s, user, groups, binding_ns):
    """rbac/#referring-to-subjects; a ServiceAccount subject without a namespace is in the binding's."""
    kind = s.get("kind")
    if kind == "ServiceAccount":
        return user == f"system:serviceaccount:{s.get('namespace') or binding_ns}:{s.get('name')}"
    if kind == "User":
        return user == s.get("name")
    if kind == "Group":
        return s.get("name") in groups
    return False


def describe_subject(s, binding_ns):
    if s.get("kind") == "ServiceAccount":
        return f'ServiceAccount "{s.get("namespace") or binding_ns}/{s.get("name")}"'
    return f'{s.get("kind")} "{s.get("name")}"'


def granted_rules(user, groups, ns):
    """(rule, why) for every rule granted to the user at this scope: ClusterRoleBindings everywhere,
    RoleBindings only in their own namespace (rbac/#rolebinding-and-clusterrolebinding)."""
    with lock:
        objs = rbac_objects()
        out = []
        for b in sorted(objs["clusterrolebindings"], key=lambda b: b["metadata"]["name"]):
            ref = b.get("roleRef") or {}
            for s in b.get("subjects") or []:
                if ref.get("kind") == "ClusterRole" and subject_matches(s, user, groups, ""):
                    why = f'ClusterRoleBinding "{b["metadata"]["name"]}" of ClusterRole "{ref.get("name")}" to {describe_subject(s, "")}'
                    out += [(r, why) for r in role_rules(objs, "ClusterRole", "", ref.get("name")) or []]
                    break
        if ns:
            for b in sorted((b for b in objs["rolebindings"] if b["metadata"].get("namespace") == ns), key=lambda b: b["metadata"]["name"]):
                ref = b.get("roleRef") or {}
                for s in b.get("subjects") or []:
                    if subject_matches(s, user, groups, ns):
                        why = f'RoleBinding "{b["metadata"]["name"]}/{ns}" of {ref.get("kind")} "{ref.get("name")}" to {describe_subject(s, ns)}'
                        out += [(r, why) for r in role_rules(objs, ref.get("kind"), ns, ref.get("name")) or []]
                        break
        return out


def resource_matches(rule_resources, resource):
    """rbac/#referring-to-resources: `*` is every resource and subresource, `*/log` a subresource of
    every resource; `pods` alone does not grant `pods/log`."""
    if "*" in rule_resources or resource in rule_resources:
        return True
    if "/" in resource:
        return "*/" + resource.split("/", 1)[1] in rule_resources
    return False


def rule_allows(r, verb, group, resource, name):
    return ((group in (r.get("apiGroups") or []) or "*" in (r.get("apiGroups") or [])) and
            resource_matches(r.get("resources") or [], resource) and
            (verb in (r.get("verbs") or []) or "*" in (r.get("verbs") or [])) and
            (not r.get("resourceNames") or name in r["resourceNames"]))


def decide(user, groups, verb, group, resource, ns, name):
    """(allowed, reason) as the RBAC authorizer answers; system:masters may do everything."""
    if MASTERS in groups:
        return True, ""
    if not rbac_on:
        return True, ""
    for r, why in granted_rules(user, groups, ns):
        if rule_allows(r, verb, group, resource, name):
            return True, "RBAC: allowed by " + why
    return False, ""


def authorized(user, groups, verb, group, resource, ns, name, record=True):
    """RBAC for everyone outside system:masters (allow rules only, as Kubernetes has); kept for /__audit."""
    if MASTERS in groups or not rbac_on:
        return True
    if resource == "namespaces" and name:
        ns = name   # as the API server does: a namespace's own requests are in that namespace
    ok = decide(user, groups, verb, group, resource, ns, name)[0]
    if record:
        with lock:
            audit.append({"user": user, "groups": list(groups), "verb": verb, "group": group, "resource": resource,
                          "namespace": ns, "name": name, "allowed": ok})
    return ok


def forbidden(user, verb, group, resource, full, ns, name):
    where = f' in the namespace "{ns}"' if ns else " at the cluster scope"
    return status(403, "Forbidden", f'{resource}{"." + group if group else ""} "{name or ""}" is forbidden: User "{user}" cannot {verb} '
                                    f'resource "{full}" in API group "{group}"{where}', name=name, kind=resource, group=group)


def rule_atoms(rules):
    """Each rule broken down to single (group, resource, name, verb) and (url, verb) grants."""
    out = []
    for r in rules or []:
        for v in r.get("verbs") or []:
            for u in r.get("nonResourceURLs") or []:
                out.append(("url", u, v))
            for g in r.get("apiGroups") or []:
                for res in r.get("resources") or []:
                    for n in r.get("resourceNames") or [None]:
                        out.append(("res", g, res, n, v))
    return out


def covers(owner, atom):
    """rbac/#privilege-escalation-prevention-and-bootstrapping: a grant is held when a held rule covers
    it; a `*` asked for is covered only by a `*` held, a rule without resourceNames only by one without."""
    if atom[0] == "url":
        u, v = atom[1], atom[2]
        return any(("*" in (r.get("verbs") or []) or v in (r.get("verbs") or [])) and
                   any(p == u or p == "*" or p.endswith("*") and u.startswith(p[:-1]) for p in r.get("nonResourceURLs") or [])
                   for r in owner)
    _, g, res, n, v = atom
    return any(("*" in (r.get("verbs") or []) or v in (r.get("verbs") or [])) and
               ("*" in (r.get("apiGroups") or []) or g in (r.get("apiGroups") or [])) and
               resource_matches(r.get("resources") or [], res) and
               (not r.get("resourceNames") or n is not None and n in r["resourceNames"]) for r in owner)


def go_list(xs):
    return "[" + " ".join(json.dumps(x) for x in xs) + "]"


def escalation(user, groups, rules, ns):
    """The "not currently held" refusal for `rules` at this scope, or None when every grant is held."""
    owner = [r for r, _ in granted_rules(user, groups, ns)]
    missing = [a for a in rule_atoms(rules) if not covers(owner, a)]
    if not missing:
        return None
    compact = {}
    for a in missing:   # one line per group/resource/name, its verbs together, as CompactRules does
        compact.setdefault(a[:-1], []).append(a[-1])
    lines = sorted(f"{{NonResourceURLs:{go_list([k[1]])}, Verbs:{go_list(vs)}}}" if k[0] == "url" else
                   f"{{APIGroups:{go_list([k[1]])}, Resources:{go_list([k[2]])}, " + (f"ResourceNames:{go_list([k[3]])}, " if k[3] else "") +
                   f"Verbs:{go_list(vs)}}}" for k, vs in compact.items())
    return f'user "{user}" (groups={go_list(groups)}) is attempting to grant RBAC permissions not currently held:\n' + "\n".join(lines)


def only_gc_fields(obj, old):
    """Whether an update changes nothing but what the garbage collector uses (rbac registry's IsOnlyMutatingGCFields)."""
    def strip(o):
        o = {k: v for k, v in o.items() if k != "status"}
        o["metadata"] = {k: v for k, v in (o.get("metadata") or {}).items() if k not in IGNORED_META | {"ownerReferences", "finalizers"}}
        return o
    return strip(obj) == strip(old)


def rbac_write_check(user, groups, resource, obj, old):
    """Escalation prevention for Roles, ClusterRoles and their bindings (rbac/#privilege-escalation-prevention-and-bootstrapping)."""
    if MASTERS in groups or not rbac_on:
        return None
    meta = obj.get("metadata") or {}
    ns, name = meta.get("namespace", ""), meta.get("name")
    if old is not None and only_gc_fields(obj, old):
        return None   # as the RBAC storage lets through an update of nothing but ownerReferences/finalizers
    if resource in ("roles", "clusterroles"):
        # An authorizer decision like any other (and audited as one).
        if authorized(user, groups, "escalate", "rbac.authorization.k8s.io", resource, ns, name):
            return None
        rules = list(obj.get("rules") or [])
        if obj.get("aggregationRule"):   # it can gather anything: setting one needs everything
            rules.append({"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]})
        msg = escalation(user, groups, rules, ns)
    else:
        ref = obj.get("roleRef") or {}
        ref_resource = "roles" if ref.get("kind") == "Role" else "clusterroles"
        # rbac/#restrictions-on-role-binding-creation-or-update: `bind` on the referenced role, by name.
        if authorized(user, groups, "bind", "rbac.authorization.k8s.io", ref_resource, ns, ref.get("name")):
            return None
        with lock:
            rules = role_rules(rbac_objects(), ref.get("kind"), ns, ref.get("name"))
        if rules is None:
            return status(404, "NotFound", f'{ref_resource}.rbac.authorization.k8s.io "{ref.get("name")}" not found',
                          name=ref.get("name"), kind=ref_resource, group="rbac.authorization.k8s.io")
        msg = escalation(user, groups, rules, ns)
    if msg is None:
        return None
    return status(403, "Forbidden", f'{resource}.rbac.authorization.k8s.io "{name}" is forbidden: {msg}', name=name, kind=resource,
                  group="rbac.authorization.k8s.io")


def rbac_validation(resource, obj, old):
    """What the RBAC types' validation refuses (k8s.io/api/rbac/v1 types.go): roleRef is required and immutable."""
    causes = []
    if resource in ("rolebindings", "clusterrolebindings"):
        ref = obj.get("roleRef") or {}
        kinds = ("Role", "ClusterRole") if resource == "rolebindings" else ("ClusterRole",)
        if ref.get("kind") not in kinds:
            causes.append({"reason": "FieldValueNotSupported", "field": "roleRef.kind", "message": f'Unsupported value: "{ref.get("kind")}": supported values: ' + ", ".join(f'"{k}"' for k in kinds)})
        if not ref.get("name"):
            causes.append({"reason": "FieldValueRequired", "field": "roleRef.name", "message": "Required value"})
        if old is not None and (old.get("roleRef") or {}) != ref:
            causes.append({"reason": "FieldValueInvalid", "field": "roleRef", "message": f"Invalid value: {json.dumps(ref)}: cannot change roleRef"})
        for i, s in enumerate(obj.get("subjects") or []):
            if s.get("kind") not in ("ServiceAccount", "User", "Group"):
                causes.append({"reason": "FieldValueNotSupported", "field": f"subjects[{i}].kind", "message": f'Unsupported value: "{s.get("kind")}"'})
            elif s.get("kind") == "ServiceAccount" and resource == "clusterrolebindings" and not s.get("namespace"):
                causes.append({"reason": "FieldValueRequired", "field": f"subjects[{i}].namespace", "message": "Required value"})
    return causes


# ---- ValidatingAdmissionPolicy: kubernetes.io/docs/reference/access-authn-authz/validating-admission-policy/ ----

import vapcel   # CEL with cel-go's semantics (cel-expr-python), as policies are compiled and evaluated


def admission_validation(resource, obj):
    """What the API server's validation of the two admission kinds refuses (validating-admission-policy/#creating-a-validatingadmissionpolicy)."""
    spec, causes = obj.get("spec") or {}, []
    if resource == "validatingadmissionpolicies":
        if not (spec.get("matchConstraints") or {}).get("resourceRules"):
            causes.append({"reason": "FieldValueRequired", "field": "spec.matchConstraints.resourceRules", "message": "Required value"})
        if not spec.get("validations") and not spec.get("auditAnnotations"):
            causes.append({"reason": "FieldValueRequired", "field": "spec.validations", "message": "Required value: validations or auditAnnotations must contain at least one item"})
        if spec.get("failurePolicy", "Fail") not in ("Fail", "Ignore"):
            causes.append({"reason": "FieldValueNotSupported", "field": "spec.failurePolicy", "message": f'Unsupported value: "{spec.get("failurePolicy")}": supported values: "Fail", "Ignore"'})
        if not vapcel.available:
            causes.append({"reason": "FieldValueInvalid", "field": "spec", "message": "the test server cannot evaluate CEL: install cel-expr-python (scripts/install-deps.sh)"})
        else:
            for field, expr, detail in vapcel.check_policy(spec):
                causes.append({"reason": "FieldValueInvalid", "field": field, "message": f"Invalid value: {json.dumps(expr)}: {detail}"})
    else:
        if not spec.get("policyName"):
            causes.append({"reason": "FieldValueRequired", "field": "spec.policyName", "message": "Required value"})
        actions = spec.get("validationActions") or []
        if not actions:
            causes.append({"reason": "FieldValueRequired", "field": "spec.validationActions", "message": "Required value"})
        for a in actions:
            if a not in ("Deny", "Warn", "Audit"):
                causes.append({"reason": "FieldValueNotSupported", "field": "spec.validationActions", "message": f'Unsupported value: "{a}": supported values: "Audit", "Deny", "Warn"'})
        if "Deny" in actions and "Warn" in actions:
            causes.append({"reason": "FieldValueInvalid", "field": "spec.validationActions", "message": "Invalid value: must not contain both Deny and Warn (repeating the same validation failure information in the API response and headers serves no purpose)"})
    return causes


def rule_matches(rule, op, group, version, resource, sub, scope, name):
    """A NamedRuleWithOperations (kubernetes.io/docs/reference/access-authn-authz/extensible-admission-controllers/#matching-requests-rules):
    `*` is every resource but no subresource, `*/*` everything, `pods/*` every subresource of pods."""
    ops = rule.get("operations") or []
    if "*" not in ops and op not in ops:
        return False
    if not any(g in ("*", group) for g in rule.get("apiGroups") or []) or not any(v in ("*", version) for v in rule.get("apiVersions") or []):
        return False
    full = resource + ("/" + sub if sub else "")
    ok = False
    for r in rule.get("resources") or []:
        rr, _, rs = r.partition("/")
        if r == "*/*" or r == full or rr == "*" and not rs and not sub or rr == resource and rs == "*" and sub or rr == "*" and rs == sub and sub:
            ok = True
    if not ok:
        return False
    if rule.get("scope", "*") not in ("*", scope):
        return False
    return not rule.get("resourceNames") or name in rule["resourceNames"]


def resources_match(m, a, policy_level):
    """MatchResources: namespaceSelector, objectSelector, resourceRules (required on the policy, optional on
    a binding), excludeResourceRules. A Namespace is matched by its own labels, any other cluster-scoped
    object by every namespaceSelector; an object by its new or its old labels (#matching-requests-objectselector)."""
    m = m or {}
    rules = m.get("resourceRules")
    if policy_level or rules:
        if not any(rule_matches(r, a["op"], a["group"], a["version"], a["resource"], a["sub"], a["scope"], a["name"]) for r in rules or []):
            return False
    if any(rule_matches(r, a["op"], a["group"], a["version"], a["resource"], a["sub"], a["scope"], a["name"]) for r in m.get("excludeResourceRules") or []):
        return False
    if m.get("namespaceSelector"):
        if a["resource"] == "namespaces" and a["group"] == "":
            ns_labels = [((o or {}).get("metadata") or {}).get("labels") for o in (a["object"], a["old"]) if o]
            if not any(selector_matches(m["namespaceSelector"], l) for l in ns_labels):
                return False
        elif a["scope"] == "Namespaced":
            if not selector_matches(m["namespaceSelector"], ((a["nsobj"] or {}).get("metadata") or {}).get("labels")):
                return False
    if m.get("objectSelector"):
        if not any(selector_matches(m["objectSelector"], ((o or {}).get("metadata") or {}).get("labels")) for o in (a["object"], a["old"]) if o):
            return False
    return True


EXEMPT = {"validatingwebhookconfigurations", "mutatingwebhookconfigurations", "validatingadmissionpolicies",
          "validatingadmissionpolicybindings", "mutatingadmissionpolicies", "mutatingadmissionpolicybindings"}
REASON_CODES = {"Forbidden": 403, "Unauthorized": 401, "RequestEntityTooLarge": 413, "Invalid": 422}


def admission(op, key, obj, old, user, groups, warnings, dry_run=False, sub=""):
    """The validating admission plugins, in the API server's order: PodSecurity, then the
    ValidatingAdmissionPolicies. None to admit, else the Status to answer with."""
    if key[:2] == ("v1", "pods") and op == "CREATE" and not sub:
        nsobj = store.get(("v1", "namespaces", "", key[2])) or {}
        refused = podsecurity.check((nsobj.get("metadata") or {}).get("labels"), obj)
        if refused:
            return status(403, "Forbidden", refused, name=key[3], kind="pods")
    return admit(op, key, obj, old, user, groups, warnings, dry_run, sub)


def admit(op, key, obj, old, user, groups, warnings, dry_run=False, sub=""):
    """Every ValidatingAdmissionPolicyBinding's policy, for one write; None to admit, else the Status of
    the first denial (validating-admission-policy/#validation-actions). Call with the lock held."""
    gv, resource, ns, name = key
    group, version = (gv.split("/") if "/" in gv else ("", gv))
    if group == "admissionregistration.k8s.io" and resource in EXEMPT:
        return None   # admission never applies to its own configuration, lest a policy lock itself in
    kind, namespaced = RESOURCE_INFO.get((gv, resource)) or next(((k, n) for r, k, n in REVIEWS.get(gv, []) if r == resource), ("", False))
    nsobj = store.get(("v1", "namespaces", "", ns)) if namespaced and ns else None
    a = {"op": op, "group": group, "version": version, "resource": resource, "sub": sub, "name": name,
         "scope": "Namespaced" if namespaced else "Cluster", "object": obj, "old": old, "nsobj": nsobj}
    policies = {k[3]: o for k, o in store.items() if k[:2] == (ADMISSION_GV, "validatingadmissionpolicies")}
    bindings = sorted((o for k, o in store.items() if k[:2] == (ADMISSION_GV, "validatingadmissionpolicybindings")),
                      key=lambda b: (b.get("spec", {}).get("policyName", ""), b["metadata"]["name"]))
    request = {"uid": str(uuid.uuid4()), "kind": {"group": group, "version": version, "kind": kind},
               "resource": {"group": group, "version": version, "resource": resource}, "subResource": sub, "requestSubResource": sub,
               "requestKind": {"group": group, "version": version, "kind": kind},
               "requestResource": {"group": group, "version": version, "resource": resource},
               "name": name, "namespace": name if (gv, resource) == ("v1", "namespaces") and op != "CREATE" else ns, "operation": op, "userInfo": {"username": user, "groups": list(groups)},
               "dryRun": dry_run}
    # As CEL sees it: k8s.io/api/admission/v1 AdmissionRequest converted to unstructured, where a
    # field tagged omitempty is absent when empty (request.namespace of a cluster-scoped request
    # is "no such key", not '').
    for k in ("name", "namespace", "subResource", "requestSubResource"):
        if not request.get(k):
            request.pop(k, None)
    if not request["userInfo"]["groups"]:
        del request["userInfo"]["groups"]
    clean = lambda o: None if o is None else {k: v for k, v in o.items() if k != "_deletingSince"}
    denied = []
    for b in bindings:
        p = policies.get(b["spec"].get("policyName"))
        if p is None:
            continue   # "If the referenced resource does not exist, this binding is considered invalid and will be ignored"
        spec, pname, bname = p.get("spec") or {}, p["metadata"]["name"], b["metadata"]["name"]
        if not resources_match(spec.get("matchConstraints"), a, True) or not resources_match(b["spec"].get("matchResources"), a, False):
            continue
        fail = spec.get("failurePolicy", "Fail") == "Fail"
        actions = b["spec"].get("validationActions") or []
        decisions = []   # (message, reason)
        params = None
        if spec.get("paramKind"):
            ref = b["spec"].get("paramRef") or {}
            pk = spec["paramKind"]
            found = None
            if ref.get("name") and (pk.get("apiVersion"), pk.get("kind")) in KIND_TO_RESOURCE:
                pres, pnamespaced = KIND_TO_RESOURCE[(pk.get("apiVersion"), pk.get("kind"))]
                found = store.get((pk.get("apiVersion"), pres, (ref.get("namespace") or ns) if pnamespaced else "", ref["name"]))
            if found is None:
                if ref.get("parameterNotFoundAction") == "Allow":
                    continue
                decisions.append(("failed to configure binding: no params found for policy binding with `Deny` parameterNotFoundAction", None))
            params = clean(found)
        if not decisions:
            data = {"object": clean(obj), "oldObject": clean(old), "request": request, "namespaceObject": clean(nsobj), "params": params}

            def run(expr):
                try:
                    return vapcel.evaluate(expr, data), None
                except vapcel.CelError as e:
                    return None, e
            # #matching-requests-matchconditions (matchconditions/matcher.go): any false skips the
            # policy, errors or not; else errors fail by failurePolicy, all of them in one message.
            results = [(c, *run(c.get("expression", ""))) for c in spec.get("matchConditions") or []]
            if any(err is None and r is False for _, r, err in results):
                continue
            errs = [f"expression '{c.get('expression')}' resulted in error: {err if err is not None else 'no such overload'}"
                    for c, r, err in results if err is not None or not isinstance(r, bool)]
            if errs:
                if not fail:
                    continue
                decisions.append((errs[0] if len(errs) == 1 else "[" + ", ".join(errs) + "]", None))
            else:
                values, variable_errors = vapcel.variables(spec, data)
                data["variables"] = values
                for v in spec.get("validations") or []:
                    expr = v.get("expression", "")
                    r, err = run(expr)
                    if err is not None or not isinstance(r, bool):
                        if fail:   # failurePolicy (default Fail): an error denies (validator.go)
                            err = vapcel.explain(expr, err, variable_errors) if err is not None else "no such overload"
                            decisions.append((f"expression '{expr}' resulted in error: {err}", None))
                        continue
                    if r:
                        continue
                    message = ""
                    if v.get("messageExpression"):
                        m, _ = run(v["messageExpression"])
                        if isinstance(m, str) and len(m.strip()) <= 5120 and "\n" not in m.strip():
                            message = m.strip()
                    message = message or (v.get("message") or "").strip() or f"failed expression: {(v.get('expression') or '').strip()}"
                    decisions.append((message, v.get("reason")))
        for message, reason in decisions:
            if "Warn" in actions:
                warnings.append(f"Validation failed for ValidatingAdmissionPolicy '{pname}' with binding '{bname}': {message}")
            if "Deny" in actions:
                denied.append((pname, bname, message, reason))
    if not denied:
        return None
    # Every binding is evaluated (their warnings all sent); the first denial is the answer.
    pname, bname, message, reason = denied[0]
    text = f"ValidatingAdmissionPolicy '{pname}' with binding '{bname}' denied request: {message}"
    reason = reason or "Invalid"
    full = f'{resource}{"." + group if group else ""} "{name}" is forbidden: {text}'
    return status(REASON_CODES.get(reason, 422), reason, full, causes=[{"message": text}], name=name, kind=resource, group=group)


# ---- the store ----

def canonical(key, obj):
    """What the kinds' strategies set before validation and admission (PrepareForCreate,
    Canonicalize): a Namespace always carries kubernetes.io/metadata.name = its name
    (pkg/registry/core/namespace/strategy.go Canonicalize; a different value or its removal is
    overwritten, on every update too) and the `kubernetes` finalizer in spec.finalizers."""
    if key[:2] == ("v1", "namespaces"):
        meta = obj.setdefault("metadata", {})
        meta["labels"] = dict(meta.get("labels") or {}, **{"kubernetes.io/metadata.name": key[3]})
        spec = obj.setdefault("spec", {})
        if "kubernetes" not in (spec.get("finalizers") or []):
            spec["finalizers"] = list(spec.get("finalizers") or []) + ["kubernetes"]
    if key[:2] == ("v1", "services") and key not in store:
        # pkg/registry/core/service/storage (the IP allocator): a Service that is not ExternalName
        # and names no address gets one from the service range.
        spec = obj.setdefault("spec", {})
        if spec.get("type") != "ExternalName" and not spec.get("clusterIP"):
            allocated[0] += 1
            spec["clusterIP"] = f"10.96.{allocated[0] // 250 % 250}.{allocated[0] % 250 + 2}"
            spec["clusterIPs"] = [spec["clusterIP"]]
    return obj


allocated = [100]   # the service range's last address handed out


def store_new(key, obj, ns, manager, op, actor):
    """A new object in the store (call with the lock held)."""
    obj = canonical(key, copy.deepcopy(obj))
    meta = obj.setdefault("metadata", {})
    if ns:
        meta["namespace"] = ns
    rv[0] += 1
    meta.update({"resourceVersion": str(rv[0]), "uid": str(uuid.uuid4()), "creationTimestamp": now()})
    if key[1] == "namespaces":
        obj["status"] = {"phase": "Active"}
    store[key] = obj
    owners[key] = {manager: (op, set(leaves(obj)))}
    record("ADDED", key, obj)
    log_write("create", key, actor)


def terminating(resource, name, ns):
    """The NamespaceLifecycle admission plugin's refusal of new content in a Terminating namespace."""
    return status(403, "Forbidden", f'{resource} "{name}" is forbidden: unable to create new content in namespace {ns} because it is being terminated',
                  causes=[{"reason": "NamespaceTerminating", "message": f"namespace {ns} is being terminated", "field": "metadata.namespace"}],
                  name=name, kind=resource)


def public(obj, key=None):
    out = copy.deepcopy(obj)
    out.pop("_deletingSince", None)
    if key is None:
        key = next((k for k, o in store.items() if o is obj), None)
    if key is not None:
        out.setdefault("metadata", {})["managedFields"] = managed(key)
    return out


class API:
    """What the simulated controllers see of the server."""
    store, owners, lock, rv = store, owners, lock, rv
    record = staticmethod(record)
    log_write = staticmethod(log_write)
    public = staticmethod(public)
    selector_matches = staticmethod(selector_matches)
    KIND_TO_RESOURCE, RESOURCES = KIND_TO_RESOURCE, RESOURCES

    @staticmethod
    def served(gv, resource):
        """(kind, namespaced) when this server serves the resource at that groupVersion, else None."""
        return RESOURCE_INFO.get((gv, resource)) if served_gv(gv) else None

    @staticmethod
    def create_object(obj, manager, actor=None, admission_as=None, reconcile_now=True):
        """Creates as a controller would. With `admission_as` (user, groups) the write goes through
        admission as that user, as a controller's API call does (Velero's); else it is internal.
        `reconcile_now` False: the caller drives what the object's controller does."""
        gv, kind = obj.get("apiVersion"), obj.get("kind")
        if (gv, kind) not in KIND_TO_RESOURCE or not served_gv(gv):
            return status(404, "NotFound", "the server could not find the requested resource")
        resource, namespaced = KIND_TO_RESOURCE[(gv, kind)]
        meta = obj.get("metadata", {})
        ns = meta.get("namespace", "") if namespaced else ""
        key = (gv, resource, ns, meta.get("name"))
        with lock:
            if namespaced and ("v1", "namespaces", "", ns) not in store:
                return status(404, "NotFound", f'namespaces "{ns}" not found', name=ns, kind="namespaces")
            nso = store.get(("v1", "namespaces", "", ns))
            if nso and nso.get("status", {}).get("phase") == "Terminating":
                return terminating(resource, meta.get("name"), ns)
            if key in store:
                return status(409, "AlreadyExists", f'{resource}{"." + group_of(gv) if group_of(gv) else ""} "{meta.get("name")}" already exists',
                              name=meta.get("name"), kind=resource, group=group_of(gv))
            obj = defaulted(obj)
            if admission_as:
                candidate = copy.deepcopy(obj)
                if ns:
                    candidate.setdefault("metadata", {})["namespace"] = ns
                denied = admission("CREATE", key, candidate, None, admission_as[0], admission_as[1], [])
                if denied:
                    return denied
            store_new(key, obj, ns or None, manager, "Update", actor or manager)
        if controllers and reconcile_now:
            controllers.reconcile(API, key)
        return 201, public(store[key])

    @staticmethod
    def update_status(key, new_status, user, groups, actor):
        """A status write through the status subresource, as the kubelet makes it for a pod:
        admitted as an UPDATE with subResource "status" by `user`."""
        with lock:
            current = store.get(key)
            if current is None:
                return status(404, "NotFound", f'{key[1]} "{key[3]}" not found', name=key[3], kind=key[1])
            new = copy.deepcopy(current)
            new["status"] = copy.deepcopy(new_status)
            denied = admission("UPDATE", key, new, current, user, groups, [], False, "status")
            if denied:
                return denied
            rv[0] += 1
            new["metadata"]["resourceVersion"] = str(rv[0])
            store[key] = new
            record("MODIFIED", key, new)
            log_write("status", key, actor)
            return 200, public(new, key)

    @staticmethod
    def update_object(key, obj, manager, actor=None, admission_as=None):
        """Replaces an object's content as a controller's update does (metadata the server owns kept)."""
        with lock:
            current = store.get(key)
            if current is None:
                return status(404, "NotFound", f'{key[1]} "{key[3]}" not found', name=key[3], kind=key[1])
            new = copy.deepcopy(obj)
            meta = new.setdefault("metadata", {})
            for k in ("namespace", "uid", "creationTimestamp", "resourceVersion"):
                if k in current.get("metadata", {}):
                    meta[k] = current["metadata"][k]
            if "status" in current:
                new["status"] = copy.deepcopy(current["status"])
            if admission_as:
                denied = admission("UPDATE", key, new, current, admission_as[0], admission_as[1], [])
                if denied:
                    return denied
            if new != current:
                rv[0] += 1
                meta["resourceVersion"] = str(rv[0])
                store[key] = new
                owners.setdefault(key, {})[manager] = ("Update", set(leaves(new)))
                record("MODIFIED", key, new)
                log_write("update", key, actor or manager)
            return 200, public(store[key])


def now_rfc3339():
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


# How long the kubelet takes to stop a pod being deleted (its grace period, shortened): deletion
# takes time, and a namespace waits for its pods.
POD_TERMINATION = 0.5


def delete_object(key, actor):
    """DELETE after admission (call with the lock held), as the registry does it (registry/generic
    store.go Delete, markAsDeleting): an object with metadata.finalizers, or a pod (graceful
    deletion: the kubelet removes it once it has stopped), gets deletionTimestamp and stays; a
    second DELETE answers the object again. A Namespace (registry/core/namespace/storage
    REST.Delete) becomes Terminating with deletionTimestamp, 200 with the object; a DELETE of one
    already Terminating is refused while its spec.finalizers remain ("prior to final deletion, we
    must ensure that finalizers is empty": 409 Conflict, "The system is ensuring all content is
    removed from this namespace", as kubectl shows it); the namespace controller empties and then
    finalizes it. Anything else goes at once."""
    obj = store[key]
    meta = obj.setdefault("metadata", {})
    if key[:2] == ("v1", "namespaces"):
        if (obj.get("status") or {}).get("phase") != "Terminating":
            obj.setdefault("status", {})["phase"] = "Terminating"
            meta["deletionTimestamp"] = now_rfc3339()
            rv[0] += 1
            meta["resourceVersion"] = str(rv[0])
            record("MODIFIED", key, obj)
            log_write("delete", key, actor)
        elif (obj.get("spec") or {}).get("finalizers"):
            return status(409, "Conflict", f'Operation cannot be fulfilled on namespaces "{key[3]}": The system is ensuring all content is removed '
                          'from this namespace.  Upon completion, this namespace will automatically be purged by the system.', name=key[3], kind="namespaces")
        return 200, public(obj, key)
    if meta.get("finalizers") or key[:2] == ("v1", "pods"):
        if not meta.get("deletionTimestamp"):
            meta["deletionTimestamp"] = now_rfc3339()
            meta["deletionGracePeriodSeconds"] = 0 if meta.get("finalizers") and key[:2] != ("v1", "pods") else 30
            obj["_deletingSince"] = time.time()
            rv[0] += 1
            meta["resourceVersion"] = str(rv[0])
            record("MODIFIED", key, obj)
            log_write("delete", key, actor)
        return 200, public(obj, key)
    remove(key, actor, "delete")
    return 200, {"kind": "Status", "apiVersion": "v1", "status": "Success", "details": {"name": key[3], "kind": key[1]}}


def remove(key, actor, verb):
    obj = store.pop(key)
    owners.pop(key, None)
    rv[0] += 1
    record("DELETED", key, obj)
    log_write(verb, key, actor)


def finish_deletion(key, actor):
    """An object being deleted whose last finalizer went is removed (call with the lock held)."""
    obj = store.get(key)
    if obj and (obj.get("metadata") or {}).get("deletionTimestamp") and not (obj.get("metadata") or {}).get("finalizers") \
            and key[:2] not in (("v1", "pods"), ("v1", "namespaces")):
        remove(key, actor, "delete")


def finalize_namespaces():
    """The namespace controller (pkg/controller/namespace/deletion): a Terminating namespace's
    contents are deleted as a DELETE would (finalizers and graceful pod deletion honoured, so they
    may take a while); once nothing is left, the `kubernetes` finalizer is removed and the namespace
    goes. The kubelet removes deleted pods once stopped (POD_TERMINATION), unless a finalizer
    holds them."""
    while True:
        time.sleep(0.1)
        with lock:
            for key, obj in list(store.items()):
                if key not in store:
                    continue
                meta = obj.get("metadata") or {}
                if key[:2] == ("v1", "pods") and meta.get("deletionTimestamp") and not meta.get("finalizers") \
                        and time.time() - obj.get("_deletingSince", 0) > POD_TERMINATION:
                    remove(key, "kubelet", "delete")
                    continue
                if key[1] == "namespaces" and (obj.get("status") or {}).get("phase") == "Terminating":
                    ns = key[3]
                    inside = [k for k in store if k[2] == ns and k[1] != "namespaces"]
                    for k in inside:
                        if not (store[k].get("metadata") or {}).get("deletionTimestamp"):
                            delete_object(k, "namespace-controller")
                    if any(k in store for k in inside):
                        continue
                    spec = obj.setdefault("spec", {})
                    spec["finalizers"] = [f for f in spec.get("finalizers") or [] if f != "kubernetes"]
                    if not spec["finalizers"] and not meta.get("finalizers"):
                        remove(key, "namespace-controller", "finalize")
                        if controllers:
                            threading.Thread(target=controllers.namespace_deleted, args=(ns,), daemon=True).start()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self):
        super().setup()
        # Headers and body go out in two writes: without this, Nagle plus delayed ACKs add 40 ms.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, fmt, *args):
        if os.environ.get("KUBE_TEST_LOG"):
            sys.stderr.write("kube-api: " + fmt % args + "\n")

    def send(self, code, body):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for w in getattr(self, "warnings", []):   # admission's Warn: RFC 7234 warn-code 299, as the API server sends
            self.send_header("Warning", '299 - "' + w.replace("\\", "\\\\").replace('"', '\\"') + '"')
        self.end_headers()
        self.wfile.write(data)

    def user(self):
        """(name, groups): a bearer token from --tokens, else the client certificate's CN and O values."""
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Bearer "):
            return self.server.tokens.get(auth[7:])
        cert = self.connection.getpeercert() if hasattr(self.connection, "getpeercert") else None
        if cert:
            name, groups = None, []
            for rdn in cert.get("subject", ()):
                for k, v in rdn:
                    if k == "commonName":
                        name = v
                    elif k == "organizationName":
                        groups.append(v)
            if name:
                return name, groups + [AUTHENTICATED]
        return None

    def route(self):
        u = urllib.parse.urlsplit(self.path)
        q = dict(urllib.parse.parse_qsl(u.query))
        parts = [p for p in u.path.split("/") if p]
        self.subresource = None
        if parts[:1] == ["api"] and len(parts) >= 2:
            gv, rest = parts[1], parts[2:]
        elif parts[:1] == ["apis"] and len(parts) >= 3:
            gv, rest = parts[1] + "/" + parts[2], parts[3:]
        else:
            return None, None, None, None, q
        ns = ""
        if len(rest) >= 3 and rest[0] == "namespaces":
            ns, rest = rest[1], rest[2:]
        resource = rest[0] if rest else None
        name = rest[1] if len(rest) > 1 else None
        self.subresource = rest[2] if len(rest) > 2 else None
        return gv, resource, ns, name, q

    def body(self):
        """The request body: JSON (Go's encoding/json reads `\\/` as `/`), except a server-side
        apply's, which the API server reads as YAML (goyaml.py): a body it cannot read is kept as
        the Status to answer with."""
        n = int(self.headers.get("Content-Length", "0") or 0)
        raw = self.rfile.read(n) if n else b""
        self.undecodable = None
        if self.command == "PATCH" and self.headers.get("Content-Type", "").startswith("application/apply-patch"):
            q = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(self.path).query))
            try:
                obj, problems = goyaml.decode(raw)
            except goyaml.YAMLError as e:
                self.undecodable = status(400, "BadRequest", f"error decoding YAML: error converting YAML to JSON: yaml: {e}")
                return None
            # handlers/rest.go fieldValidation: Warn unless the request says otherwise. (The real
            # server checks this after computing the apply: only which error wins differs.)
            validation = q.get("fieldValidation") or "Warn"
            if problems and validation == "Strict":
                self.undecodable = status(400, "BadRequest", "error strict decoding YAML: error converting YAML to JSON: yaml: unmarshal errors:\n  " +
                                          "\n  ".join(problems))
            elif problems and validation == "Warn":
                self.warnings += problems
            return obj
        try:
            return json.loads(raw or b"{}")
        except ValueError:
            return None

    def handle_any(self, method):
        self.warnings = []
        request_context.agent = self.headers.get("User-Agent")
        if self.path == "/__shutdown" and method == "POST":
            # The tests' way to stop the server (signals may be blocked in the spawning thread):
            # the simulated controllers' PostgreSQL servers go with it.
            if controllers:
                controllers.stop_all()
            self.send(200, {})
            os._exit(0)
        if self.path == "/__audit" and method == "GET":
            with lock:
                self.send(200, {"items": list(audit)})
            return
        if self.path == "/__writes" and method == "GET":
            with lock:
                self.send(200, {"items": list(writes)})
            return
        if self.path == "/__partition" and method == "POST":
            # {"token": T, "cut": true|false}: requests bearing bearer token T get no answer (a
            # network partition drops packets: the client sees silence, then its own timeout),
            # until the cut is healed.
            req = self.body() or {}
            with lock:
                (partitioned.add if req.get("cut", True) else partitioned.discard)(req.get("token", ""))
            self.send(200, {})
            return
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Bearer ") and auth[7:] in partitioned:
            while auth[7:] in partitioned:
                time.sleep(0.1)
            self.close_connection = True   # the healed link does not carry the old request
            return
        if self.path == "/__compact" and method == "POST":
            with lock:   # every resourceVersion so far is now too old to watch from
                compacted[0] = rv[0] + 1
            self.send(200, {})
            return
        try:
            code, out = self.dispatch(method)
        except Exception as e:  # a bug here must be visible to the test, not a hang
            code, out = status(500, "InternalError", f"test server: {e!r}")
        if code is not None:
            self.send(code, out)

    def review(self, gv, resource, ns, user, groups):
        """The create-only reviews (kubernetes.io/docs/reference/access-authn-authz/authorization/#checking-api-access,
        .../authentication/#webhook-token-authentication): answered, never stored."""
        body = self._body if isinstance(self._body, dict) else {}
        spec = body.get("spec") or {}
        kind = next(k for r, k, _ in REVIEWS[gv] if r == resource)
        out = {"kind": kind, "apiVersion": gv, "metadata": {"creationTimestamp": None}, "spec": spec}
        # Reviews are creates and go through validating admission like any other: kube-apiserver's
        # REST Create of TokenReview, SubjectAccessReview and the self reviews calls createValidation
        # (pkg/registry/authentication/tokenreview/storage.go, pkg/registry/authorization/*/rest.go).
        # A policy matching every resource on CREATE therefore also judges drctl's own reviews.
        group = gv.split("/")[0]
        if resource not in ("selfsubjectaccessreviews", "selfsubjectreviews") and not authorized(user, groups, "create", group, resource, ns, None):
            return forbidden(user, "create", group, resource, resource, ns, None)
        with lock:
            denied = admit("CREATE", (gv, resource, ns, ""), dict(body, apiVersion=gv, kind=kind), None, user, groups, self.warnings)
        if denied:
            return denied
        if resource == "selfsubjectaccessreviews":
            # "May I?", answered from the same rules, as every user may ask (not audited as a use).
            a = spec.get("resourceAttributes") or {}
            full = a.get("resource", "") + ("/" + a["subresource"] if a.get("subresource") else "")
            ok = authorized(user, groups, a.get("verb", ""), a.get("group", ""), full, a.get("namespace", ""), a.get("name"), record=False)
            return 201, dict(out, status={"allowed": ok})
        if resource == "selfsubjectreviews":   # kubectl auth whoami
            return 201, dict(out, status={"userInfo": {"username": user, "groups": list(groups)}})
        if resource == "tokenreviews":
            found = self.server.tokens.get(spec.get("token") or "")
            st = ({"authenticated": True, "user": {"username": found[0], "groups": list(found[1])}} if found else
                  {"authenticated": False, "user": {}, "error": "invalid bearer token"})
            if spec.get("audiences"):
                st["audiences"] = spec["audiences"]
            return 201, dict(out, status=st)
        # (Local)SubjectAccessReview: spec.user/spec.groups as given (nothing added), system:masters allowed.
        who, their = spec.get("user") or "", list(spec.get("groups") or [])
        ra, nra = spec.get("resourceAttributes"), spec.get("nonResourceAttributes")
        causes = []
        if not who and not their:
            causes.append({"reason": "FieldValueRequired", "field": "spec.user", "message": "Required value: at least one of user or group must be specified"})
        if bool(ra) == bool(nra):
            causes.append({"reason": "FieldValueRequired", "field": "spec.resourceAttributes", "message": "Required value: exactly one of nonResourceAttributes or resourceAttributes must be specified"})
        if resource == "localsubjectaccessreviews" and ra and ra.get("namespace", "") != ns:
            causes.append({"reason": "FieldValueInvalid", "field": "spec.resourceAttributes.namespace", "message": f"Invalid value: {json.dumps(ra.get('namespace', ''))}: must match metadata.namespace"})
        if causes:
            return status(422, "Invalid", f'{kind}.{group} "" is invalid: ' + "; ".join(c["field"] + ": " + c["message"] for c in causes), causes=causes, kind=resource)
        if nra:
            url, verb = nra.get("path", ""), nra.get("verb", "")
            allowed = MASTERS in their or not rbac_on or any(covers([r], ("url", url, verb)) for r, _ in granted_rules(who, their, ""))
            return 201, dict(out, status={"allowed": allowed})
        full = ra.get("resource", "") + ("/" + ra["subresource"] if ra.get("subresource") else "")
        rns = ra.get("namespace", "")
        if ra.get("resource") == "namespaces" and ra.get("name"):
            rns = ra["name"]
        allowed, reason = decide(who, their, ra.get("verb", ""), ra.get("group", ""), full, rns, ra.get("name"))
        st = {"allowed": allowed}
        if reason:
            st["reason"] = reason
        return 201, dict(out, status=st)

    def dispatch(self, method):
        # Read the body before anything can answer early: unread bytes would be taken for the
        # next request on this keep-alive connection.
        self._body = self.body() if method in ("POST", "PATCH", "PUT", "DELETE") else None
        ident = self.user()
        if ident is None:
            return status(401, "Unauthorized", "Unauthorized")
        user, groups = ident
        gv, resource, ns, name, q = self.route()
        if gv in REVIEWS and resource is not None:
            table = {r: n for r, _, n in REVIEWS[gv]}
            if resource not in table or name is not None or table[resource] != bool(ns):
                return status(404, "NotFound", f"the server could not find the requested resource ({resource})")
            if method != "POST":
                return status(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")
            return self.review(gv, resource, ns, user, groups)
        if gv in REVIEWS:
            return 200, {"kind": "APIResourceList", "groupVersion": gv,
                         "resources": [{"name": r, "kind": k, "namespaced": n, "verbs": ["create"]} for r, k, n in REVIEWS[gv]]}
        if gv is None or gv not in RESOURCES or gv not in SERVED:
            return status(404, "NotFound", "the server could not find the requested resource")
        table = {r: (k, namespaced) for r, k, namespaced in RESOURCES[gv]}
        if resource is None:
            return 200, {"kind": "APIResourceList", "groupVersion": gv,
                         "resources": [{"name": r, "kind": k, "namespaced": n, "verbs": ["create", "delete", "get", "list", "patch", "update"]}
                                       for r, k, n in RESOURCES[gv]]}
        if resource not in table:
            return status(404, "NotFound", f"the server could not find the requested resource ({resource})")
        kind, namespaced = table[resource]
        verb = {"GET": "watch" if q.get("watch") in ("true", "1") else "get" if name else "list", "POST": "create",
                "PATCH": "patch", "PUT": "update", "DELETE": "delete"}[method]
        group = group_of(gv)
        full = resource + ("/" + self.subresource if self.subresource else "")
        if not authorized(user, groups, verb, group, full, ns if namespaced else "", name):
            return forbidden(user, verb, group, resource, full, ns if namespaced else (name if resource == "namespaces" else ""), name)
        if getattr(self, "undecodable", None):   # the handler decodes the body after authentication and authorization
            return self.undecodable
        if self.subresource == "log" and resource == "pods" and method == "GET":
            with lock:
                if (gv, resource, ns, name) not in store:
                    return status(404, "NotFound", f'pods "{name}" not found', name=name, kind=resource)
            text = (controllers.pod_logs.get((ns, name), "") if controllers else "").encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(text)))
            self.end_headers()
            self.wfile.write(text)
            return None, None
        with lock:
            if namespaced and ns and method in ("POST", "PATCH") and ("v1", "namespaces", "", ns) not in store:
                return status(404, "NotFound", f'namespaces "{ns}" not found', name=ns, kind="namespaces")
            if namespaced and ns and method == "POST":
                nso = store.get(("v1", "namespaces", "", ns))
                if nso and nso.get("status", {}).get("phase") == "Terminating":
                    return terminating(resource, ((self._body or {}).get("metadata") or {}).get("name", ""), ns)
            key = (gv, resource, ns if namespaced else "", name)
            fname = (q.get("fieldSelector") or "").removeprefix("metadata.name=") or None
            if method == "GET" and name is None and q.get("watch") in ("true", "1"):
                return self.watch(gv, resource, ns, fname, q)
            if method == "GET" and name is None:
                items = sorted((o for k, o in store.items() if k[:2] == (gv, resource) and (not ns or k[2] == ns) and matches(o, q.get("labelSelector"))
                                and (fname is None or k[3] == fname)),
                               key=lambda o: (o["metadata"].get("namespace", ""), o["metadata"]["name"]))
                start = int(base64.b64decode(q["continue"]).decode()) if q.get("continue") else 0
                limit = int(q.get("limit", "0") or 0)
                page = items[start:start + limit] if limit else items[start:]
                meta = {"resourceVersion": str(rv[0])}
                if limit and start + limit < len(items):
                    meta["continue"] = base64.b64encode(str(start + limit).encode()).decode()
                return 200, {"kind": kind + "List", "apiVersion": gv, "metadata": meta, "items": [public(o) for o in page]}
            if method == "GET":
                if key not in store:
                    return status(404, "NotFound", f'{resource} "{name}" not found', name=name, kind=resource)
                return 200, public(store[key])
            if method == "DELETE":
                if key not in store:
                    return status(404, "NotFound", f'{resource} "{name}" not found', name=name, kind=resource)
                if resource == "namespaces" and name in ("default", "kube-system", "kube-public"):
                    # The NamespaceLifecycle admission plugin (kubernetes.io/docs/reference/access-authn-authz/admission-controllers/#namespacelifecycle).
                    return status(403, "Forbidden", f'namespaces "{name}" is forbidden: this namespace may not be deleted', name=name, kind=resource)
                denied = admission("DELETE", key, None, store[key], user, groups, self.warnings)
                if denied:
                    return denied
                return delete_object(key, user)
            if self.subresource == "status" and method in ("PUT", "PATCH"):
                return self.status_update(key, kind, resource, group, user, groups)
            if self.subresource:
                return status(404, "NotFound", f"the server could not find the requested resource ({resource}/{self.subresource})")
            obj = self._body
            if not isinstance(obj, dict):
                return status(400, "BadRequest", "the body is not a JSON object")
            meta = obj.get("metadata") or {}
            oname = meta.get("name") or name
            causes = []
            builtin = gv in BUILTIN
            if builtin and obj.get("kind") in (None, kind):
                # Decoding comes first (handlers/rest.go): a wrong type does not decode, an unknown
                # field is what the request's fieldValidation (Warn by default) says.
                unknown, mistyped = kinds.field_problems(dict(obj, apiVersion=gv, kind=kind))
                cannot = f'{kind} in version "{gv.split("/")[-1]}" cannot be handled as a {kind}: '
                if mistyped:
                    return status(400, "BadRequest", cannot + "; ".join(mistyped))
                if unknown and method == "PATCH":   # a server-side apply: the field manager's typed conversion
                    ns_name = f"{ns}/{oname}" if namespaced else oname
                    return status(500, "InternalError", f"failed to create typed patch object ({ns_name}; {gv}, Kind={kind}): .{unknown[0]}: field not declared in schema")
                if unknown and q.get("fieldValidation") == "Strict":
                    return status(400, "BadRequest", cannot + "strict decoding error: " + ", ".join(f'unknown field "{u}"' for u in unknown))
                if unknown and q.get("fieldValidation") != "Ignore":
                    self.warnings += [f'unknown field "{u}"' for u in unknown]
            if not oname:
                causes.append({"reason": "FieldValueRequired", "field": "metadata.name", "message": "Required value: name or generateName is required"})
            else:
                problems = kinds.name_problems(gv, resource, oname) if builtin else ([] if DNS.match(oname) and len(oname) <= 253 else [kinds.SUBDOMAIN_MSG])
                causes += [{"reason": "FieldValueInvalid", "field": "metadata.name", "message": f'Invalid value: "{oname}": {m}'} for m in problems]
            if obj.get("kind") not in (None, kind):
                causes.append({"reason": "FieldValueInvalid", "field": "kind", "message": f"Invalid value: \"{obj.get('kind')}\": must be {kind}"})
            if method == "POST":
                causes += schema_causes(obj)
            if causes:
                return status(422, "Invalid", f'{kind} "{oname}" is invalid: ' + "; ".join(c["field"] + ": " + c["message"] for c in causes), causes=causes, name=oname, kind=resource)
            key = (gv, resource, ns if namespaced else "", oname)
            manager = q.get("fieldManager") or ("kubectl" if method == "POST" else None)
            if method == "POST":
                if key in store:
                    return status(409, "AlreadyExists", f'{resource}{"." + group if group else ""} "{oname}" already exists', name=oname, kind=resource, group=group)
                obj = defaulted(obj)
                candidate = canonical(key, copy.deepcopy(obj))
                candidate.setdefault("metadata", {}).update({"name": oname, **({"namespace": ns} if namespaced else {})})
                dry = q.get("dryRun") == "All"
                refused = self.checks(key, candidate, None, user, groups, kind, dry)
                if refused:
                    return refused
                if dry:   # api-concepts/#dry-run: every stage but storing, admission included
                    return 201, public(candidate, key)
                store_new(key, obj, ns if namespaced else None, manager or "unknown", "Update", user)
                if controllers:
                    controllers.reconcile(API, key)
                return 201, public(store[key])
            if method == "PATCH" and self.headers.get("Content-Type", "").startswith("application/apply-patch"):
                if not manager:
                    return status(422, "Invalid", "fieldManager is required for apply patch")
                return self.apply(key, obj, ns if namespaced else None, manager, q.get("force") == "true", q.get("dryRun") == "All", kind, resource, user, groups)
            if method == "PUT":
                return self.update(key, obj, name, manager or "unknown", kind, resource, group, user, groups)
            return status(415, "UnsupportedMediaType", "this test server takes apply patches only")

    # The status strategies' PrepareForUpdate: what a write to <resource>/status keeps of the old
    # object. pkg/registry/core/pod/strategy.go podStatusStrategy resets only spec,
    # deletionTimestamp and ownerReferences (a pods/status write can change labels and
    # annotations); so does replicationcontrollers' (rcStatusStrategy); the apps kinds' reset
    # labels too (deployment, replicaset, daemonset, statefulset strategy.go).
    METADATA_VIA_STATUS = {("v1", "pods"), ("v1", "replicationcontrollers")}

    def status_update(self, key, kind, resource, group, user, groups):
        """PUT or merge PATCH (RFC 7386) of the status subresource (call with the lock held):
        admitted as an UPDATE with subResource "status", which `resources: ["*"]` does not match."""
        current = store.get(key)
        if current is None:
            return status(404, "NotFound", f'{resource} "{key[3]}" not found', name=key[3], kind=resource)
        body = self._body if isinstance(self._body, dict) else None
        if body is None:
            return status(400, "BadRequest", "the body is not a JSON object")
        if self.command == "PATCH":
            if not self.headers.get("Content-Type", "").startswith("application/merge-patch+json"):
                return status(415, "UnsupportedMediaType", "this test server takes merge patches of status only")
            body = merge_patch(public(current, key), body)
        new = copy.deepcopy(current)
        new["status"] = copy.deepcopy(body.get("status") or {})
        if key[:2] in self.METADATA_VIA_STATUS:
            for f in ("labels", "annotations"):
                v = (body.get("metadata") or {}).get(f)
                if v is None:
                    new["metadata"].pop(f, None)
                else:
                    new["metadata"][f] = copy.deepcopy(v)
        refused = admission("UPDATE", key, new, current, user, groups, self.warnings, False, "status")
        if refused:
            return refused
        if new != current:
            rv[0] += 1
            new["metadata"]["resourceVersion"] = str(rv[0])
            store[key] = new
            record("MODIFIED", key, new)
            log_write("status", key, user)
        return 200, public(store[key])

    def update(self, key, obj, name, manager, kind, resource, group, user, groups):
        """PUT, a whole-object update (call with the lock held). Optimistic concurrency as
        kubernetes.io/docs/reference/using-api/api-concepts/#resource-versions documents: a
        metadata.resourceVersion that is not the current one is 409 Conflict, "the object has been
        modified". Leases (pkg/registry/coordination/lease/strategy.go) do not allow an
        unconditional update (AllowUnconditionalUpdate false: a PUT without resourceVersion is
        422) and do allow create on update (a PUT to a missing Lease creates it). Other kinds here
        take an unconditional update, the more dangerous reading. The name in the body must be the
        URL's (400)."""
        if obj.get("metadata", {}).get("name") not in (None, name):
            return status(400, "BadRequest", f'the name of the object ({obj["metadata"]["name"]}) does not match the name on the URL ({name})')
        lease = key[0] == "coordination.k8s.io/v1"
        current = store.get(key)
        sent = obj.get("metadata", {}).get("resourceVersion")
        if current is None:
            if not lease:
                return status(404, "NotFound", f'{resource}{"." + group if group else ""} "{name}" not found', name=name, kind=resource, group=group)
            if sent:
                return status(409, "Conflict", f'Operation cannot be fulfilled on {resource}.{group} "{name}": the object has been modified; please apply your changes to the latest version and try again',
                              name=name, kind=resource, group=group)
            candidate = copy.deepcopy(obj)
            candidate.setdefault("metadata", {}).update({"name": name, "namespace": key[2]})
            refused = self.checks(key, candidate, None, user, groups, kind, False)
            if refused:
                return refused
            store_new(key, candidate, key[2], manager, "Update", user)
            return 201, public(store[key])
        if lease and not sent:
            return status(422, "Invalid", f'Lease.coordination.k8s.io "{name}" is invalid: metadata.resourceVersion: Invalid value: 0x0: must be specified for an update',
                          causes=[{"reason": "FieldValueInvalid", "field": "metadata.resourceVersion", "message": "Invalid value: 0x0: must be specified for an update"}],
                          name=name, kind=resource, group=group)
        if sent and sent != current["metadata"]["resourceVersion"]:
            return status(409, "Conflict", f'Operation cannot be fulfilled on {resource}{"." + group if group else ""} "{name}": the object has been modified; please apply your changes to the latest version and try again',
                          name=name, kind=resource, group=group)
        new = copy.deepcopy(obj)
        # The main resource's PUT leaves a status subresource as it is.
        if "status" in current:
            new["status"] = copy.deepcopy(current["status"])
        else:
            new.pop("status", None)
        meta = new.setdefault("metadata", {})
        meta["name"] = name
        for k in ("namespace", "uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds"):
            if k in current["metadata"]:
                meta[k] = current["metadata"][k]
        if key[:2] == ("v1", "namespaces"):   # namespace strategy PrepareForUpdate: finalizers only through /finalize
            new.setdefault("spec", {})["finalizers"] = list((current.get("spec") or {}).get("finalizers") or [])
        canonical(key, new)
        refused = self.checks(key, new, current, user, groups, kind, False)
        if refused:
            return refused
        rv[0] += 1
        meta["resourceVersion"] = str(rv[0])
        store[key] = new
        owners.setdefault(key, {})[manager] = ("Update", set(leaves(new)))
        record("MODIFIED", key, new)
        log_write("update", key, user)
        finish_deletion(key, user)
        return 200, public(store.get(key, new), key)

    def checks(self, key, obj, old, user, groups, kind, dry, sub=""):
        """After authorization, before storing: RBAC's escalation prevention, the kinds' own validation,
        then validating admission (the API server's order; call with the lock held)."""
        resource = key[1]
        if key[0] == RBAC_GV:
            causes = rbac_validation(resource, obj, old)
            if causes:
                return status(422, "Invalid", f'{kind}.rbac.authorization.k8s.io "{key[3]}" is invalid: ' + "; ".join(c["field"] + ": " + c["message"] for c in causes),
                              causes=causes, name=key[3], kind=resource, group="rbac.authorization.k8s.io")
            refused = rbac_write_check(user, groups, resource, obj, old)
            if refused:
                return refused
        if key[0] == "coordination.k8s.io/v1":
            causes = lease_validation(obj)
            undecodable = [c for c in causes if c["reason"] == "decode"]
            if undecodable:
                return status(400, "BadRequest", "; ".join(c["message"] for c in undecodable))
            if causes:
                return status(422, "Invalid", f'Lease.coordination.k8s.io "{key[3]}" is invalid: ' + "; ".join(c["field"] + ": " + c["message"] for c in causes),
                              causes=causes, name=key[3], kind=resource, group="coordination.k8s.io")
        if key[0] == ADMISSION_GV:
            causes = admission_validation(resource, obj)
            if causes:
                return status(422, "Invalid", f'{kind}.admissionregistration.k8s.io "{key[3]}" is invalid: ' + "; ".join(c["field"] + ": " + c["message"] for c in causes),
                              causes=causes, name=key[3], kind=resource, group="admissionregistration.k8s.io")
        return admission("UPDATE" if old is not None else "CREATE", key, obj, old, user, groups, self.warnings, dry, sub)

    def watch(self, gv, resource, ns, name, q):
        """A watch stream (kubernetes.io/docs/reference/using-api/api-concepts/#efficient-detection-of-changes,
        storage/cacher cache_watcher.go): one JSON event per line, chunked, until timeoutSeconds.
        Without resourceVersion (or "0") it starts with a synthetic ADDED for every object that
        matches, as "Get State and Start at Most Recent" does; from a given resourceVersion, with
        the changes after it only; sendInitialEvents=true (with resourceVersionMatch=NotOlderThan)
        ends the initial ADDEDs with a BOOKMARK annotated k8s.io/initial-events-end when bookmarks
        are allowed. A labelSelector is applied to the object before and after each change: one
        that starts matching is ADDED, one that stops matching DELETED, one that matches before and
        after MODIFIED. A resourceVersion older than the events the cache keeps (or compacted, POST
        /__compact) gets one ERROR event with a 410 Expired Status, on a 200 stream, and the end
        (cacher.go: "errors must fail with a watch event of type ERROR")."""
        send_initial = q.get("sendInitialEvents") == "true"
        match_rv = q.get("resourceVersionMatch")
        if send_initial and match_rv != "NotOlderThan":
            return status(422, "Invalid", "resourceVersionMatch: Forbidden: sendInitialEvents requires setting resourceVersionMatch to NotOlderThan",
                          causes=[{"reason": "FieldValueForbidden", "field": "resourceVersionMatch",
                                   "message": "Forbidden: sendInitialEvents requires setting resourceVersionMatch to NotOlderThan"}])
        if match_rv and not send_initial:
            return status(422, "Invalid", "resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided",
                          causes=[{"reason": "FieldValueForbidden", "field": "resourceVersionMatch",
                                   "message": "Forbidden: resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided"}])
        given = q.get("resourceVersion") or ""
        initial = send_initial or given in ("", "0")
        since = rv[0] if initial else int(given)
        selector = q.get("labelSelector")
        end = time.time() + min(float(q.get("timeoutSeconds", "30")), 60)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

        def chunk(d):
            data = (json.dumps(d) + "\n").encode()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()

        def wanted(k):
            return k[:2] == (gv, resource) and (not ns or k[2] == ns) and (name is None or k[3] == name)

        def expired(at):
            oldest = max(compacted[0] - 1, window[0])
            chunk({"type": "ERROR", "object": status(410, "Expired", f"too old resource version: {at} ({oldest})")[1]})

        if initial:
            for k, o in sorted(((k, o) for k, o in store.items() if wanted(k) and matches(o, selector)), key=lambda x: x[0]):
                chunk({"type": "ADDED", "object": public(o, k)})
            if send_initial and q.get("allowWatchBookmarks") == "true":
                chunk({"type": "BOOKMARK", "object": {"kind": RESOURCE_INFO[(gv, resource)][0], "apiVersion": gv,
                                                      "metadata": {"resourceVersion": str(since), "annotations": {"k8s.io/initial-events-end": "true"}}}})
        if since < compacted[0] or (events and since < window[0]):
            expired(since)
        else:
            while time.time() < end:
                if events and since < window[0]:   # fell behind the cache's window while waiting
                    expired(since)
                    break
                for e in [e for e in events if e[0] > since and wanted(e[2])]:
                    kind_, obj, old = e[1], e[3], e[4]
                    now_m = kind_ != "DELETED" and matches(obj, selector)
                    was_m = old is not None and matches(old, selector)
                    if kind_ == "DELETED":
                        out = ("DELETED", obj) if was_m or matches(obj, selector) else None
                    elif now_m and not was_m:
                        out = ("ADDED", obj)
                    elif now_m:
                        out = (kind_, obj)
                    elif was_m:   # no longer matches: DELETED, the object as it was, at this event's version
                        gone = copy.deepcopy(old)
                        gone.setdefault("metadata", {})["resourceVersion"] = str(e[0])
                        out = ("DELETED", gone)
                    else:
                        out = None
                    if out:
                        chunk({"type": out[0], "object": public(out[1]) if out[0] != "DELETED" else out[1]})
                since = max([since] + [e[0] for e in events])
                changed.wait(timeout=max(0.0, min(1.0, end - time.time())))
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()
        return None, None

    def apply(self, key, obj, ns, manager, force, dry, kind, resource, user, groups):
        applied = leaves(obj)
        # The object as it would be after the apply is what the schema is checked against.
        merged = copy.deepcopy(store.get(key) or {})
        for p, v in applied.items():
            set_path(merged, p, v)
        merged = {k: v for k, v in merged.items() if k != "status"}
        causes = schema_causes(merged)
        if causes:
            return status(422, "Invalid", f'{kind} "{key[3]}" is invalid: ' + "; ".join(c["field"] + ": " + c["message"] for c in causes),
                          causes=causes, name=key[3], kind=resource)
        nso = store.get(("v1", "namespaces", "", ns)) if ns else None
        if key not in store and nso and (nso.get("status") or {}).get("phase") == "Terminating":
            return terminating(resource, key[3], ns)
        if key not in store:
            # An apply that creates needs `create` as well as `patch`: the API server's patch
            # handler authorizes the create it turns into (endpoints/handlers/patch.go,
            # withAuthorization(createValidation, ..., "create")).
            if not authorized(user, groups, "create", group_of(key[0]), key[1], ns or "", key[3]):
                return forbidden(user, "create", group_of(key[0]), key[1], key[1], ns or "", key[3])
            candidate = canonical(key, defaulted(copy.deepcopy(obj)))
            candidate.setdefault("metadata", {}).update({"name": key[3], **({"namespace": ns} if ns else {})})
            refused = self.checks(key, candidate, None, user, groups, kind, dry)
            if refused:
                return refused
            if not dry:
                store_new(key, defaulted(obj), ns, manager, "Apply", user)
                if controllers:
                    controllers.reconcile(API, key)
            result = copy.deepcopy(store.get(key) or obj)
            return 201, public(result, key)
        current = store[key]
        mine = owners.setdefault(key, {})
        conflicts = []
        for other, (op, paths) in mine.items():
            if other == manager:
                continue
            for p in paths & set(applied):
                if get_path(current, p) != applied[p]:
                    conflicts.append((other, p))
        if conflicts and not force:
            causes = [{"reason": "FieldManagerConflict", "field": "." + ".".join(p), "message": f'conflict with "{m}"'} for m, p in conflicts]
            return status(409, "Conflict", f'Apply failed with {len(conflicts)} conflict(s): ' + "; ".join(f'conflict with "{m}": .{".".join(p)}' for m, p in conflicts),
                          causes=causes, name=key[3], kind=resource)
        new = copy.deepcopy(current)
        for p, v in applied.items():
            set_path(new, p, v)
        previously = mine.get(manager, ("Apply", set()))[1]
        others = set().union(*[paths for m, (op, paths) in mine.items() if m != manager]) if len(mine) > 1 else set()
        for p in previously - set(applied) - others:
            del_path(new, p)
        new = canonical(key, defaulted(new))
        changed_ = new != current
        # Validating admission sees every update, one that changes nothing included: the API server
        # drops a no-op write only after admission (and a dry run is admitted too).
        refused = self.checks(key, new, current, user, groups, kind, dry)
        if refused:
            return refused
        if dry:
            return 200, public(new, key)
        for m, p in conflicts:      # force: the fields change hands
            mine[m][1].discard(p)
        mine[manager] = ("Apply", set(applied))
        if changed_:
            rv[0] += 1
            new["metadata"]["resourceVersion"] = str(rv[0])
            store[key] = new
            record("MODIFIED", key, new)
            log_write("update", key, user)
            finish_deletion(key, user)
        return 200, public(store.get(key, new), key)

    def do_GET(self): self.handle_any("GET")
    def do_POST(self): self.handle_any("POST")
    def do_PATCH(self): self.handle_any("PATCH")
    def do_DELETE(self): self.handle_any("DELETE")
    def do_PUT(self): self.handle_any("PUT")


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--ca", required=True, help="CA that signs client certificates")
    ap.add_argument("--tokens", help="file of 'token user [group1,group2,...]' lines")
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--controllers", action="store_true", help="run the simulated Velero and CNPG controllers (controllers.py)")
    ap.add_argument("--crds", help="validate custom resources against the CRDs in this directory")
    ap.add_argument("--rbac", help="store the objects in this file and hold everyone outside system:masters to RBAC")
    ap.add_argument("--admission", help="store the ValidatingAdmissionPolicies and bindings in this file")
    args = ap.parse_args()
    global controllers, schemas, rbac_on
    if args.crds and os.path.isdir(args.crds):
        schemas = load_schemas(args.crds)
    if args.controllers:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        import controllers as c
        controllers = c
    srv = Server(("127.0.0.1", 0), Handler)
    srv.tokens = {}
    if args.tokens:
        for line in open(args.tokens):
            if line.strip():
                t, u, *g = line.split()
                groups = [x for x in (g[0].split(",") if g else []) if x]
                srv.tokens[t] = (u, groups + ([AUTHENTICATED] if AUTHENTICATED not in groups else []))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(args.cert, args.key)
    ctx.load_verify_locations(args.ca)
    ctx.verify_mode = ssl.CERT_OPTIONAL
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    with lock:
        for ns in ("default", "kube-system", "kube-public"):
            store_new(("v1", "namespaces", "", ns), {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}, None, "system", "Update", "bootstrap")
        # The `kubernetes` Service and its EndpointSlice, as the API server keeps them
        # (pkg/controlplane/controller/kubernetesservice, reconcilers/endpointsadapter.go): port 443
        # to the API server's own address and secure port.
        port = srv.server_address[1]
        store_new(("v1", "services", "default", "kubernetes"), {"apiVersion": "v1", "kind": "Service", "metadata": {
            "name": "kubernetes", "namespace": "default", "labels": {"component": "apiserver", "provider": "kubernetes"}},
            "spec": {"clusterIP": "10.96.0.1", "type": "ClusterIP", "sessionAffinity": "None",
                     "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": port}]}}, "default", "kube-apiserver", "Update", "bootstrap")
        if served_gv("discovery.k8s.io/v1"):
            store_new(("discovery.k8s.io/v1", "endpointslices", "default", "kubernetes"), {
                "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "metadata": {"name": "kubernetes", "namespace": "default", "labels": {"kubernetes.io/service-name": "kubernetes"}},
                "addressType": "IPv4", "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": True}}],
                "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}, "default", "kube-apiserver", "Update", "bootstrap")
        if args.rbac:
            seed(args.rbac)
            rbac_on = True
        if args.admission:
            if not vapcel.available:
                sys.exit("kube_api_server: --admission needs cel-expr-python (scripts/install-deps.sh)")
            seed(args.admission)
    threading.Thread(target=finalize_namespaces, daemon=True).start()
    with open(args.port_file + ".tmp", "w") as f:
        f.write(str(srv.server_address[1]))
    os.rename(args.port_file + ".tmp", args.port_file)
    srv.serve_forever()


if __name__ == "__main__":
    main()
