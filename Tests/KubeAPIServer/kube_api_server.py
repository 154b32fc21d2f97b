#!/usr/bin/env python3
"""A Kubernetes API test server for drctl's tests: no kube-apiserver runs on these machines.

Faithful for what drctl uses, and only that: HTTPS on loopback with a test CA; users by client
certificate (CN) or bearer token (--tokens FILE: "token user" per line); discovery documents for
the kinds drctl renders; create/get/list/delete with `Status` errors (401, 404 NotFound, 409
AlreadyExists/Conflict, 422 Invalid with causes); resourceVersion; label selectors (=, !=,
exists); `limit`/`continue` pagination; server-side apply (application/apply-patch+yaml) with
per-manager field ownership, conflicts and `force`, `dryRun=All`; namespaces that go Terminating
and disappear once their objects are gone; watch streams (resourceVersion, fieldSelector on the
name, timeoutSeconds, 410 Expired after POST /__compact); pods/log; SelfSubjectAccessReview.

--crds DIR: custom resources are validated on create and apply against their CRD's
openAPIV3Schema, strictly (unknown fields are errors), as scripts/validate-manifests does: 422
Invalid with one cause per problem.
--rbac FILE: the Roles, ClusterRoles and bindings in FILE (e.g. deploy/rbac.yaml) authorize
service-account users (`system:serviceaccount:NS:NAME`): a request no rule allows is 403 Forbidden.
Other users may do everything. Every authorization decision about a service account is kept for
GET /__audit. Not modelled: admission, defaulting, aggregated roles, non-resource URLs (discovery is
allowed to all, as Kubernetes' system:discovery role does).

  kube_api_server.py --cert server.pem --key server.key --ca ca.pem --tokens tokens --port-file F
                     [--controllers] [--crds DIR] [--rbac FILE]
"""
import argparse, base64, copy, http.server, json, os, re, socket, socketserver, ssl, sys, threading, time, urllib.parse, uuid

RESOURCES = {
    "v1": [("namespaces", "Namespace", False), ("configmaps", "ConfigMap", True), ("secrets", "Secret", True),
           ("services", "Service", True), ("serviceaccounts", "ServiceAccount", True), ("pods", "Pod", True),
           ("persistentvolumeclaims", "PersistentVolumeClaim", True)],
    "apps/v1": [("deployments", "Deployment", True), ("statefulsets", "StatefulSet", True)],
    "batch/v1": [("cronjobs", "CronJob", True), ("jobs", "Job", True)],
    "rbac.authorization.k8s.io/v1": [("roles", "Role", True), ("rolebindings", "RoleBinding", True),
                                     ("clusterroles", "ClusterRole", False), ("clusterrolebindings", "ClusterRoleBinding", False)],
    "velero.io/v1": [("backups", "Backup", True), ("restores", "Restore", True), ("schedules", "Schedule", True),
                     ("backupstoragelocations", "BackupStorageLocation", True)],
    "postgresql.cnpg.io/v1": [("clusters", "Cluster", True), ("scheduledbackups", "ScheduledBackup", True), ("backups", "Backup", True)],
    "barmancloud.cnpg.io/v1": [("objectstores", "ObjectStore", True)],
    "monitoring.coreos.com/v1": [("prometheusrules", "PrometheusRule", True), ("servicemonitors", "ServiceMonitor", True)],
}
SERVED = set(os.environ.get("KUBE_TEST_GROUPS", ",".join(RESOURCES)).split(","))
DNS = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
IGNORED_META = {"resourceVersion", "uid", "creationTimestamp", "managedFields", "generation", "deletionTimestamp"}

lock = threading.RLock()
store = {}          # (gv, resource, namespace or "", name) -> object
owners = {}         # same key -> {manager: set(paths)}
rv = [1]
events = []         # (rv, type, key, object): what watches see
compacted = [0]     # watches from a resourceVersion below this get 410 Expired
changed = threading.Condition(lock)


def record(kind, key, obj):
    """Appends a watch event (call with the lock held)."""
    events.append((rv[0], kind, key, copy.deepcopy(obj)))
    del events[:-10000]
    changed.notify_all()


def status(code, reason, message, causes=None, name=None, kind=None):
    d = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message, "reason": reason, "code": code}
    if causes or name:
        d["details"] = {k: v for k, v in (("name", name), ("kind", kind), ("causes", causes)) if v}
    return code, d


def leaves(obj, prefix=()):
    """Every leaf path of an object (lists are atomic), without server-owned metadata."""
    out = {}
    for k, v in obj.items():
        if prefix == ("metadata",) and k in IGNORED_META or prefix == () and k == "status":
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


KIND_TO_RESOURCE = {(gv, k): (r, n) for gv, rows in RESOURCES.items() for r, k, n in rows}
controllers = None   # the simulated controllers module, with --controllers
schemas = {}         # (apiVersion, kind) -> a strict validator, with --crds
bindings = None      # [(user, namespace or None for cluster-wide, rules)], with --rbac
audit = []           # every authorization decision about a service account


def load_schemas(d):
    """The CRDs' schemas, closed against unknown fields: scripts/validate-manifests' reading of them."""
    import importlib.machinery, importlib.util, jsonschema
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../scripts/validate-manifests")
    loader = importlib.machinery.SourceFileLoader("validate_manifests", path)
    vm = importlib.util.module_from_spec(importlib.util.spec_from_loader("validate_manifests", loader))
    loader.exec_module(vm)
    return {key: jsonschema.Draft7Validator(vm.strict(schema)) for key, schema in vm.load_crds(d).items()}


def schema_causes(obj):
    v = schemas.get((obj.get("apiVersion"), obj.get("kind")))
    if v is None:
        return []
    return [{"reason": "FieldValueInvalid", "field": ".".join(map(str, e.absolute_path)) or "(root)", "message": e.message}
            for e in sorted(v.iter_errors(obj), key=lambda e: list(map(str, e.absolute_path)))]


def load_rbac(path):
    import yaml
    docs = [d for d in yaml.safe_load_all(open(path)) if d]
    roles = {(d["kind"], d["metadata"].get("namespace", ""), d["metadata"]["name"]): d.get("rules", [])
             for d in docs if d["kind"] in ("Role", "ClusterRole")}
    out = []
    for d in docs:
        if d["kind"] not in ("RoleBinding", "ClusterRoleBinding"):
            continue
        scope = d["metadata"].get("namespace") if d["kind"] == "RoleBinding" else None
        ref = d["roleRef"]
        role_ns = (scope or "") if ref["kind"] == "Role" else ""
        rules = roles.get((ref["kind"], role_ns, ref["name"]), [])
        for s in d.get("subjects", []):
            if s["kind"] == "ServiceAccount":
                out.append((f"system:serviceaccount:{s['namespace']}:{s['name']}", scope, rules))
    return out


def authorized(user, verb, group, resource, ns, name, record=True):
    """RBAC for service accounts (allow rules only, as Kubernetes has); recorded for /__audit."""
    if bindings is None or not user.startswith("system:serviceaccount:"):
        return True
    if resource == "namespaces" and name:
        ns = name   # as the API server does: a namespace's own requests are in that namespace
    ok = any(u == user and (scope is None or scope == ns) and
             any((group in r.get("apiGroups", []) or "*" in r.get("apiGroups", [])) and
                 (resource in r.get("resources", []) or "*" in r.get("resources", [])) and
                 (verb in r.get("verbs", []) or "*" in r.get("verbs", [])) and
                 (not r.get("resourceNames") or name in r["resourceNames"]) for r in rules)
             for u, scope, rules in bindings)
    if not record:
        return ok
    with lock:
        audit.append({"user": user, "verb": verb, "group": group, "resource": resource, "namespace": ns, "name": name, "allowed": ok})
    return ok


class API:
    """What the simulated controllers see of the server."""
    store, owners, lock, rv = store, owners, lock, rv
    record = staticmethod(record)

    @staticmethod
    def create_object(obj, manager):
        gv, kind = obj.get("apiVersion"), obj.get("kind")
        if (gv, kind) not in KIND_TO_RESOURCE:
            return 422, {"message": f"unknown kind {gv}/{kind}"}
        resource, namespaced = KIND_TO_RESOURCE[(gv, kind)]
        meta = obj.get("metadata", {})
        ns = meta.get("namespace", "") if namespaced else ""
        key = (gv, resource, ns, meta.get("name"))
        with lock:
            if namespaced and ("v1", "namespaces", "", ns) not in store:
                return 404, {"message": f'namespaces "{ns}" not found'}
            if key in store:
                return 409, {"message": "already exists"}
            Handler.store_new(None, key, obj, ns or None, manager, "Update")
        if controllers:
            controllers.reconcile(API, key)
        return 201, store[key]


def finalize_namespaces():
    """Namespaces being deleted go once nothing is left in them."""
    while True:
        time.sleep(0.2)
        with lock:
            for key, obj in list(store.items()):
                if key[1] == "namespaces" and obj.get("status", {}).get("phase") == "Terminating":
                    ns = key[3]
                    for k in [k for k in store if k[2] == ns]:
                        rv[0] += 1
                        record("DELETED", k, store.pop(k))
                        owners.pop(k, None)
                    if time.time() - obj["_terminatingSince"] > 0.3:
                        rv[0] += 1
                        record("DELETED", key, store.pop(key))
                        owners.pop(key, None)
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
        self.end_headers()
        self.wfile.write(data)

    def user(self):
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Bearer "):
            return self.server.tokens.get(auth[7:])
        cert = self.connection.getpeercert() if hasattr(self.connection, "getpeercert") else None
        if cert:
            for rdn in cert.get("subject", ()):
                for k, v in rdn:
                    if k == "commonName":
                        return v
        return None

    def route(self):
        u = urllib.parse.urlsplit(self.path)
        q = dict(urllib.parse.parse_qsl(u.query))
        parts = [p for p in u.path.split("/") if p]
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
        n = int(self.headers.get("Content-Length", "0") or 0)
        raw = self.rfile.read(n) if n else b""
        try:
            return json.loads(raw or b"{}")
        except ValueError:
            return None

    def handle_any(self, method):
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

    def dispatch(self, method):
        # Read the body before anything can answer early: unread bytes would be taken for the
        # next request on this keep-alive connection.
        self._body = self.body() if method in ("POST", "PATCH", "PUT", "DELETE") else None
        user = self.user()
        if user is None:
            return status(401, "Unauthorized", "Unauthorized")
        if self.path.split("?")[0] == "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews" and method == "POST":
            # "May I?", answered from the same rules, as every user may ask (not audited as a use).
            a = (self._body or {}).get("spec", {}).get("resourceAttributes", {})
            resource = a.get("resource", "") + ("/" + a["subresource"] if a.get("subresource") else "")
            ok = authorized(user, a.get("verb", ""), a.get("group", ""), resource, a.get("namespace", ""), a.get("name"), record=False)
            return 201, dict(self._body, status={"allowed": ok})
        gv, resource, ns, name, q = self.route()
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
        group = gv.split("/")[0] if "/" in gv else ""
        full = resource + ("/" + self.subresource if self.subresource else "")
        if not authorized(user, verb, group, full, ns if namespaced else "", name):
            where = f' in the namespace "{ns}"' if namespaced and ns else " at the cluster scope"
            return status(403, "Forbidden", f'{resource} "{name or ""}" is forbidden: User "{user}" cannot {verb} resource "{full}" in API group "{group}"{where}',
                          name=name, kind=resource)
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
                    return status(403, "Forbidden", f'{resource} "x" is forbidden: unable to create new content in namespace {ns} because it is being terminated')
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
                return 200, {"kind": kind + "List", "apiVersion": gv, "metadata": meta, "items": [self.public(o) for o in page]}
            if method == "GET":
                if key not in store:
                    return status(404, "NotFound", f'{resource} "{name}" not found', name=name, kind=resource)
                return 200, self.public(store[key])
            if method == "DELETE":
                if key not in store:
                    return status(404, "NotFound", f'{resource} "{name}" not found', name=name, kind=resource)
                if resource == "namespaces":
                    store[key].setdefault("status", {})["phase"] = "Terminating"
                    store[key]["_terminatingSince"] = time.time()
                    rv[0] += 1
                    record("MODIFIED", key, store[key])
                    return 200, self.public(store[key])
                obj = store.pop(key)
                owners.pop(key, None)
                rv[0] += 1
                record("DELETED", key, obj)
                return 200, {"kind": "Status", "apiVersion": "v1", "status": "Success", "details": {"name": name, "kind": resource}}
            obj = self._body
            if not isinstance(obj, dict):
                return status(400, "BadRequest", "the body is not a JSON object")
            meta = obj.get("metadata") or {}
            oname = meta.get("name") or name
            causes = []
            if not oname:
                causes.append({"reason": "FieldValueRequired", "field": "metadata.name", "message": "Required value: name or generateName is required"})
            elif not DNS.match(oname) or len(oname) > 253:
                causes.append({"reason": "FieldValueInvalid", "field": "metadata.name", "message": f"Invalid value: \"{oname}\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.'"})
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
                    return status(409, "AlreadyExists", f'{resource} "{oname}" already exists', name=oname, kind=resource)
                self.store_new(key, obj, ns if namespaced else None, manager or "unknown", "Update")
                if controllers:
                    controllers.reconcile(API, key)
                return 201, self.public(store[key])
            if method == "PATCH" and self.headers.get("Content-Type", "").startswith("application/apply-patch"):
                if not manager:
                    return status(422, "Invalid", "fieldManager is required for apply patch")
                return self.apply(key, obj, ns if namespaced else None, manager, q.get("force") == "true", q.get("dryRun") == "All", kind, resource)
            return status(415, "UnsupportedMediaType", "this test server takes apply patches only")

    def watch(self, gv, resource, ns, name, q):
        """A watch stream: one JSON event per line, chunked, until timeoutSeconds."""
        since = int(q.get("resourceVersion") or rv[0])
        end = time.time() + min(float(q.get("timeoutSeconds", "30")), 60)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

        def chunk(d):
            data = (json.dumps(d) + "\n").encode()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()

        if since < compacted[0]:
            chunk({"type": "ERROR", "object": status(410, "Expired", f"too old resource version: {since} ({compacted[0]})")[1]})
        else:
            while time.time() < end:
                batch = [e for e in events if e[0] > since and e[2][:2] == (gv, resource) and (not ns or e[2][2] == ns) and (name is None or e[2][3] == name)]
                for e in batch:
                    chunk({"type": e[1], "object": self.public(e[3]) if e[1] != "DELETED" else e[3]})
                since = max([since] + [e[0] for e in events])
                changed.wait(timeout=max(0.0, min(1.0, end - time.time())))
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()
        return None, None

    def store_new(self, key, obj, ns, manager, op):
        obj = copy.deepcopy(obj)
        meta = obj.setdefault("metadata", {})
        if ns:
            meta["namespace"] = ns
        rv[0] += 1
        meta.update({"resourceVersion": str(rv[0]), "uid": str(uuid.uuid4()), "creationTimestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
        if key[1] == "namespaces":
            obj["status"] = {"phase": "Active"}
        store[key] = obj
        owners[key] = {manager: (op, set(leaves(obj)))}
        record("ADDED", key, obj)

    def apply(self, key, obj, ns, manager, force, dry, kind, resource):
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
        if key not in store:
            if not dry:
                self.store_new(key, obj, ns, manager, "Apply")
                if controllers:
                    controllers.reconcile(API, key)
            result = copy.deepcopy(store.get(key) or obj)
            return 201, self.public(result, key)
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
        changed_ = new != current
        if dry:
            return 200, self.public(new, key)
        for m, p in conflicts:      # force: the fields change hands
            mine[m][1].discard(p)
        mine[manager] = ("Apply", set(applied))
        if changed_:
            rv[0] += 1
            new["metadata"]["resourceVersion"] = str(rv[0])
            store[key] = new
            record("MODIFIED", key, new)
        return 200, self.public(store[key])

    def public(self, obj, key=None):
        out = copy.deepcopy(obj)
        out.pop("_terminatingSince", None)
        if key is None:
            key = next((k for k, o in store.items() if o is obj), None)
        if key is not None:
            out.setdefault("metadata", {})["managedFields"] = managed(key)
        return out

    def do_GET(self): self.handle_any("GET")
    def do_POST(self): self.handle_any("POST")
    def do_PATCH(self): self.handle_any("PATCH")
    def do_DELETE(self): self.handle_any("DELETE")


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--ca", required=True, help="CA that signs client certificates")
    ap.add_argument("--tokens", help="file of 'token user' lines")
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--controllers", action="store_true", help="run the simulated Velero and CNPG controllers (controllers.py)")
    ap.add_argument("--crds", help="validate custom resources against the CRDs in this directory")
    ap.add_argument("--rbac", help="authorize service accounts by the Roles and bindings in this file")
    args = ap.parse_args()
    global controllers, schemas, bindings
    if args.crds and os.path.isdir(args.crds):
        schemas = load_schemas(args.crds)
    if args.rbac:
        bindings = load_rbac(args.rbac)
    if args.controllers:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        import controllers as c
        controllers = c
    srv = Server(("127.0.0.1", 0), Handler)
    srv.tokens = {}
    if args.tokens:
        for line in open(args.tokens):
            if line.strip():
                t, u = line.split(None, 1)
                srv.tokens[t] = u.strip()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(args.cert, args.key)
    ctx.load_verify_locations(args.ca)
    ctx.verify_mode = ssl.CERT_OPTIONAL
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    with lock:
        for ns in ("default", "kube-system"):
            Handler.store_new(None, ("v1", "namespaces", "", ns), {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}, None, "system", "Update")
    threading.Thread(target=finalize_namespaces, daemon=True).start()
    with open(args.port_file + ".tmp", "w") as f:
        f.write(str(srv.server_address[1]))
    os.rename(args.port_file + ".tmp", args.port_file)
    srv.serve_forever()


if __name__ == "__main__":
    main()
