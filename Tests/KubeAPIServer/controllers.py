"""Simulated controllers for the Kubernetes API test server, driven by real data.

velero: a Restore is performed by reading the backup tarball from the real object store (the
        BackupStorageLocation's bucket and prefix) and creating its objects in the mapped
        namespace; a missing or corrupt tarball fails the Restore, as Velero would.
cnpg:   a Cluster with bootstrap.recovery from a barmanObjectStore is recovered for real: the
        base backup CNPG would pick (newest DONE that ended before the target) is restored with
        barman-cloud-restore, WAL is replayed through barman-cloud-wal-restore by a local
        PostgreSQL 15 to recoveryTarget.targetTime, and the server is exposed as the `<name>-rw`
        Service. With enableSuperuserAccess, the `<name>-superuser` Secret holds the password of
        `postgres`, which TCP connections must give (scram-sha-256). Deleting the namespace stops
        and removes it.
        KUBE_TEST_SERVICE_NETWORK=loopback: the Service's clusterIP is 127.0.0.1 and its port the
        server's, so the test host reaches it directly; otherwise (`cluster`) it is 10.96.0.x:5432,
        reachable only from inside: from a Job.
apps:   Deployments and StatefulSets become available (status.*Replicas = spec.replicas) a second
        or two after they are created: the kubelet, as far as drctl looks at it.
batch:  a Job runs its pod's container locally (only `psql` is run), with env values and
        secretKeyRefs resolved and host names of Services in the namespace resolved to their
        backend, as cluster DNS would; the pod (label job-name) keeps its output for pods/log.

The object store is reached with KUBE_TEST_S3_ENDPOINT and the Cluster's s3Credentials Secret.
"""
import base64, io, json, os, secrets, shutil, socket, subprocess, tarfile, tempfile, threading, time, zlib

BARMAN = os.environ.get("KUBE_TEST_BARMAN", "/opt/drctl-barman/bin")
PGBIN = "/usr/lib/postgresql/15/bin"
servers = {}   # namespace -> [(data dir, work dir)]
gone = set()   # namespaces deleted while a recovery in them was still running
workers = []   # recovery threads
every = []     # every (data dir, work dir) ever made, for the final sweep
shutting = False
pod_logs = {}  # (namespace, pod) -> output
backends = {}  # (namespace, service) -> (host, port, service port): what cluster DNS and kube-proxy do
LOOPBACK = os.environ.get("KUBE_TEST_SERVICE_NETWORK", "loopback") == "loopback"


def as_postgres(cmd):
    return (["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []) + cmd


def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close()
    return p


def reconcile(api, key):
    gv, resource = key[0], key[1]
    if (gv, resource) == ("velero.io/v1", "restores"):
        threading.Thread(target=velero_restore, args=(api, key), daemon=True).start()
    elif (gv, resource) in (("apps/v1", "deployments"), ("apps/v1", "statefulsets")):
        threading.Thread(target=become_available, args=(api, key), daemon=True).start()
    elif (gv, resource) == ("batch/v1", "jobs"):
        threading.Thread(target=run_job, args=(api, key), daemon=True).start()
    elif (gv, resource) == ("postgresql.cnpg.io/v1", "clusters"):
        obj = api.store.get(key)
        if obj and obj.get("spec", {}).get("bootstrap", {}).get("recovery"):
            t = threading.Thread(target=cnpg_recover, args=(api, key), daemon=True)
            workers.append(t)
            t.start()


def set_status(api, key, status):
    with api.lock:
        if key in api.store:
            api.store[key]["status"] = status
            api.rv[0] += 1
            api.store[key]["metadata"]["resourceVersion"] = str(api.rv[0])
            api.record("MODIFIED", key, api.store[key])


def secret_value(api, ns, ref):
    s = api.store.get(("v1", "secrets", ns, ref["name"]))
    if not s or ref["key"] not in s.get("data", {}):
        return None
    return base64.b64decode(s["data"][ref["key"]]).decode()


def become_available(api, key):
    obj = api.store.get(key)
    n = (obj or {}).get("spec", {}).get("replicas", 1)
    # Pods take a moment (a StatefulSet's start one after another): drctl has to wait and watch.
    time.sleep(1.0 + (0.5 * n if key[1] == "statefulsets" else 0))
    obj = api.store.get(key)
    if not obj or obj["metadata"].get("annotations", {}).get("drctl-test/unavailable") == "true":
        return
    set_status(api, key, {"observedGeneration": 1, "replicas": n, "readyReplicas": n, "availableReplicas": n, "updatedReplicas": n})


def resolve(ns, host, port):
    """A Service name (short or qualified) in `ns` -> its backend; anything else unchanged."""
    for svc in [k[1] for k in backends if k[0] == ns]:
        if host in (svc, f"{svc}.{ns}", f"{svc}.{ns}.svc", f"{svc}.{ns}.svc.cluster.local"):
            real_host, real_port, svc_port = backends[(ns, svc)]
            return real_host, str(real_port) if str(port or svc_port) == str(svc_port) else port
    return host, port


def run_job(api, key):
    time.sleep(0.1)
    ns, name = key[2], key[3]
    job = api.store.get(key)
    if not job:
        return
    container = job["spec"]["template"]["spec"]["containers"][0]
    argv = list(container.get("command") or []) + list(container.get("args") or [])
    env = {"PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8"}
    problem = None
    for e in container.get("env", []):
        if "value" in e:
            env[e["name"]] = e["value"]
        elif "secretKeyRef" in e.get("valueFrom", {}):
            v = secret_value(api, ns, e["valueFrom"]["secretKeyRef"])
            if v is None:
                problem = f'CreateContainerConfigError: secret "{e["valueFrom"]["secretKeyRef"]["name"]}" not found'
            env[e["name"]] = v or ""
    if not argv or os.path.basename(argv[0]) != "psql":
        problem = problem or f"the test server runs only psql containers, not {argv[:1]}"
    out, ok = problem or "", False
    if not problem:
        args = argv[1:]
        host_i = next((i + 1 for i, a in enumerate(args) if a in ("-h", "--host")), None)
        port_i = next((i + 1 for i, a in enumerate(args) if a in ("-p", "--port")), None)
        host = args[host_i] if host_i else env.get("PGHOST")
        port = args[port_i] if port_i else env.get("PGPORT")
        host, port = resolve(ns, host, port)
        if host_i:
            args[host_i] = host
        else:
            env["PGHOST"] = host or ""
        if port_i:
            args[port_i] = port
        elif port:
            env["PGPORT"] = port
        try:
            r = subprocess.run(["/usr/bin/psql"] + args, env=env, capture_output=True, text=True,
                               timeout=job["spec"].get("activeDeadlineSeconds", 300))
            out, ok = r.stdout + r.stderr, r.returncode == 0
        except subprocess.TimeoutExpired:
            out = "DeadlineExceeded"
    pod = f"{name}-{secrets.token_hex(3)[:5]}"
    api.create_object({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": pod, "namespace": ns, "labels": {"job-name": name, "batch.kubernetes.io/job-name": name}},
                       "spec": job["spec"]["template"]["spec"]}, "job-controller")
    pod_logs[(ns, pod)] = out
    set_status(api, ("v1", "pods", ns, pod), {"phase": "Succeeded" if ok else "Failed"})
    cond = {"type": "Complete" if ok else "Failed", "status": "True"}
    set_status(api, key, {"succeeded": 1, "conditions": [cond]} if ok else {"failed": 1, "conditions": [dict(cond, reason="BackoffLimitExceeded")]})


def velero_restore(api, key):
    import boto3
    time.sleep(0.1)
    spec = api.store[key]["spec"]
    backup = spec["backupName"]
    bsls = [o for k, o in api.store.items() if k[:3] == ("velero.io/v1", "backupstoragelocations", key[2])]
    if not bsls:
        return set_status(api, key, {"phase": "FailedValidation", "validationErrors": ["no BackupStorageLocation"]})
    storage = bsls[0]["spec"]["objectStorage"]
    prefix = storage.get("prefix", "").strip("/")
    tar_key = f"{prefix + '/' if prefix else ''}backups/{backup}/{backup}.tar.gz"
    s3 = boto3.client("s3", endpoint_url=os.environ["KUBE_TEST_S3_ENDPOINT"], aws_access_key_id=os.environ["KUBE_TEST_S3_KEY"],
                      aws_secret_access_key=os.environ["KUBE_TEST_S3_SECRET"], region_name="us-east-1")
    try:
        data = s3.get_object(Bucket=storage["bucket"], Key=tar_key)["Body"].read()
    except Exception as e:
        return set_status(api, key, {"phase": "Failed", "failureReason": f"error downloading backup {tar_key}: {e}"})
    mapping = spec.get("namespaceMapping", {})
    restored, errors = 0, []
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            for m in tar.getmembers():
                parts = m.name.lstrip("./").split("/")
                if not m.isfile() or parts[0] != "resources" or "namespaces" not in parts:
                    continue
                obj = json.loads(tar.extractfile(m).read())
                src = obj["metadata"].get("namespace")
                if spec.get("includedNamespaces") and src not in spec["includedNamespaces"]:
                    continue
                ns = mapping.get(src, src)
                obj["metadata"] = {k: v for k, v in obj["metadata"].items() if k in ("name", "labels", "annotations")}
                obj["metadata"]["namespace"] = ns
                obj.pop("status", None)
                code, out = api.create_object(obj, "velero")
                if code in (200, 201):
                    restored += 1
                elif code != 409:
                    errors.append(out.get("message", str(code)))
    except (tarfile.TarError, EOFError, zlib.error, OSError, ValueError) as e:
        return set_status(api, key, {"phase": "Failed", "failureReason": f"backup {backup} is corrupt: {e}"})
    set_status(api, key, {"phase": "PartiallyFailed" if errors else "Completed", "errors": len(errors),
                          "progress": {"itemsRestored": restored, "totalItems": restored + len(errors)}})


def cnpg_recover(api, key):
    made = []
    try:
        recover(api, key, made)
    finally:
        # The namespace went while this recovery ran: remove whatever it started or left.
        if key[2] in gone or shutting:
            for data, work in made:
                stop(data, work)


def recover(api, key, made):
    time.sleep(0.1)
    ns, name = key[2], key[3]
    spec = api.store[key]["spec"]
    recovery = spec["bootstrap"]["recovery"]
    origin = next(c for c in spec["externalClusters"] if c["name"] == recovery["source"])
    bos = origin.get("barmanObjectStore")
    if not bos and origin.get("plugin", {}).get("name") == "barman-cloud.cloudnative-pg.io":
        # The Barman Cloud Plugin: the configuration is the ObjectStore's, in the Cluster's namespace.
        params = origin["plugin"].get("parameters", {})
        store = api.store.get(("barmancloud.cnpg.io/v1", "objectstores", ns, params.get("barmanObjectName")))
        if not store:
            return set_status(api, key, {"phase": "Cluster cannot proceed", "phaseReason": f"ObjectStore {params.get('barmanObjectName')} not found in {ns}"})
        bos = dict(store["spec"]["configuration"], serverName=params.get("serverName", origin["name"]))
    if not bos:
        return set_status(api, key, {"phase": "Cluster cannot proceed", "phaseReason": "no barmanObjectStore or Barman Cloud Plugin source"})
    creds = bos["s3Credentials"]
    ak, sk = secret_value(api, ns, creds["accessKeyId"]), secret_value(api, ns, creds["secretAccessKey"])
    if ak is None or sk is None:
        return set_status(api, key, {"phase": "Setting up primary", "phaseReason": f"secret {creds['accessKeyId']['name']} not found in {ns}"})
    env = dict(os.environ, AWS_ACCESS_KEY_ID=ak, AWS_SECRET_ACCESS_KEY=sk, AWS_DEFAULT_REGION="us-east-1")
    server = bos.get("serverName", origin["name"])
    target = recovery.get("recoveryTarget", {}).get("targetTime")
    set_status(api, key, {"phase": "Setting up primary", "instances": 1, "readyInstances": 0})
    listing = subprocess.run([f"{BARMAN}/barman-cloud-backup-list", "--endpoint-url", bos["endpointURL"], "--format", "json",
                              bos["destinationPath"], server], env=env, capture_output=True, text=True)
    if listing.returncode != 0:
        return set_status(api, key, {"phase": "Cluster cannot proceed", "phaseReason": listing.stderr[-500:]})
    done = [b for b in json.loads(listing.stdout)["backups_list"] if b["status"] == "DONE"]
    if target:
        done = [b for b in done if b["end_time_iso"].replace("T", " ") <= target.replace("T", " ")]
    if not done:
        return set_status(api, key, {"phase": "Cluster cannot proceed", "phaseReason": "no backup before the target"})
    backup = max(done, key=lambda b: b["end_time_iso"])["backup_id"]
    work = tempfile.mkdtemp(prefix="drctl-test-cnpg-")
    os.chmod(work, 0o711)
    data = os.path.join(work, "pgdata")
    os.mkdir(data, 0o700)
    shutil.chown(data, "postgres", "postgres")
    servers.setdefault(ns, []).append((data, work))
    made.append((data, work))
    every.append((data, work))
    if ns in gone or shutting:
        return
    r = subprocess.run(as_postgres([f"{BARMAN}/barman-cloud-restore", "--endpoint-url", bos["endpointURL"], bos["destinationPath"], server, backup, data]),
                       env=env, capture_output=True, text=True)
    if r.returncode != 0:
        return set_status(api, key, {"phase": "Cluster cannot proceed", "phaseReason": r.stderr[-500:]})
    port = free_port()
    conf = os.path.join(work, "postgresql.conf")
    lines = ["listen_addresses = '127.0.0.1'", f"port = {port}", f"unix_socket_directories = '{data}'", "archive_mode = off", "hot_standby = off",
             f"hba_file = '{data}/pg_hba.conf'", f"ident_file = '{data}/pg_ident.conf'",
             f"restore_command = '{BARMAN}/barman-cloud-wal-restore --endpoint-url {bos['endpointURL']} {bos['destinationPath']} {server} %f %p'",
             "recovery_target_action = 'promote'", "recovery_target_timeline = 'latest'"]
    if target:
        lines.append(f"recovery_target_time = '{target}'")
    with open(conf, "w") as f:
        f.write("\n".join(lines) + "\n")
    os.chmod(conf, 0o644)
    with open(os.path.join(data, "pg_hba.conf"), "w") as f:   # as CNPG's: TCP needs the password
        f.write("local all all trust\nhost all all 127.0.0.1/32 scram-sha-256\n")
    open(os.path.join(data, "recovery.signal"), "w").close()
    shutil.chown(os.path.join(data, "recovery.signal"), "postgres", "postgres")
    log = os.path.join(data, "recovery.log")
    subprocess.run(as_postgres([f"{PGBIN}/pg_ctl", "-D", data, "-o", f"-c config_file={conf}", "-l", log, "start"]), env=env, capture_output=True)
    if ns in gone or shutting:
        return
    deadline = time.time() + 600
    while time.time() < deadline:
        q = subprocess.run(["psql", "-X", "-h", data, "-p", str(port), "-U", "postgres", "-Atqc", "select pg_is_in_recovery()"], capture_output=True, text=True)
        if q.stdout.strip() == "f":
            break
        if not os.path.exists(os.path.join(data, "postmaster.pid")):
            tail = open(log).read()[-500:] if os.path.exists(log) else ""
            return set_status(api, key, {"phase": "Cluster cannot proceed", "phaseReason": f"recovery failed: {tail}"})
        time.sleep(0.2)
    if spec.get("enableSuperuserAccess"):
        password = os.environ.get("KUBE_TEST_SUPERUSER_PASSWORD") or secrets.token_urlsafe(18)
        subprocess.run(["psql", "-X", "-h", data, "-p", str(port), "-U", "postgres", "-qc", f"alter role postgres password '{password}'"], capture_output=True)
        api.create_object({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/basic-auth", "metadata": {"name": f"{name}-superuser", "namespace": ns},
                           "data": {"username": base64.b64encode(b"postgres").decode(), "password": base64.b64encode(password.encode()).decode()}}, "cnpg")
    backends[(ns, f"{name}-rw")] = ("127.0.0.1", port, port if LOOPBACK else 5432)
    cluster_ip = "127.0.0.1" if LOOPBACK else f"10.96.0.{len(backends) % 250 + 2}"
    api.create_object({"apiVersion": "v1", "kind": "Service", "metadata": {"name": f"{name}-rw", "namespace": ns},
                       "spec": {"clusterIP": cluster_ip, "ports": [{"name": "postgres", "port": port if LOOPBACK else 5432}]}}, "cnpg")
    set_status(api, key, {"phase": "Cluster in healthy state", "instances": 1, "readyInstances": 1, "currentPrimary": f"{name}-1"})


def stop(data, work):
    subprocess.run(as_postgres([f"{PGBIN}/pg_ctl", "-D", data, "-m", "immediate", "-w", "stop"]), capture_output=True)
    shutil.rmtree(work, ignore_errors=True)


def namespace_deleted(ns):
    gone.add(ns)
    for k in [k for k in backends if k[0] == ns]:
        backends.pop(k, None)
    for data, work in servers.pop(ns, []):
        stop(data, work)


def stop_all():
    """At shutdown: no recovery may start a server any more; wait for running ones, then remove everything."""
    for ns in list(servers):
        namespace_deleted(ns)
    global shutting
    shutting = True
    for t in workers:
        t.join(timeout=30)
    for data, work in every:
        stop(data, work)
