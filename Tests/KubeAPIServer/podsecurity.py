"""Pod Security admission for the test server (k8s.io/pod-security-admission, the policy checks of
kubernetes.io/docs/concepts/security/pod-security-standards): a pod created in a namespace
labelled pod-security.kubernetes.io/enforce=<level> is refused when it breaks that level, with
the API server's message (admission.go forbiddenResponse):

  pods "x" is forbidden: violates PodSecurity "baseline:latest": privileged (container "c" must not set securityContext.privileged=true)

Every pod is judged, whoever makes it (a controller's pods too); workload kinds (Deployments and
the like) are only warned about upstream, never refused, so they are not judged here. Exemptions
(usernames, namespaces, runtime classes of the AdmissionConfiguration) are not modelled: a stock
cluster has none. Levels: privileged (nothing checked), baseline, restricted; -version labels
are read as latest.
"""

BASELINE_CAPS = {"AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD", "NET_BIND_SERVICE", "SETFCAP",
                 "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT"}
SAFE_SYSCTLS = {"kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.ip_unprivileged_port_start", "net.ipv4.tcp_syncookies",
                "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports", "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout",
                "net.ipv4.tcp_keepalive_intvl", "net.ipv4.tcp_keepalive_probes", "net.ipv4.tcp_rmem", "net.ipv4.tcp_wmem"}
RESTRICTED_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected", "secret"}
SELINUX_TYPES = {"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"}


def containers(spec):
    for field in ("initContainers", "containers", "ephemeralContainers"):
        for c in spec.get(field) or []:
            yield c


def names(cs):
    return ", ".join(f'"{c.get("name", "")}"' for c in cs)


def baseline(spec):
    """(reason, detail) for every baseline check the pod spec fails (policy/check_*.go)."""
    out = []
    cs = list(containers(spec))
    host = [f for f in ("hostNetwork", "hostPID", "hostIPC") if spec.get(f)]
    if host:
        out.append(("host namespaces", ", ".join(f"{f}=true" for f in host)))
    priv = [c for c in cs if (c.get("securityContext") or {}).get("privileged")]
    if priv:
        out.append(("privileged", f'container{"s" if len(priv) > 1 else ""} {names(priv)} must not set securityContext.privileged=true'))
    for c in cs:
        added = [x for x in ((c.get("securityContext") or {}).get("capabilities") or {}).get("add") or [] if x not in BASELINE_CAPS]
        if added:
            out.append(("non-default capabilities", f'container "{c.get("name", "")}" must not include ' +
                        ", ".join(f'"{x}"' for x in added) + " in securityContext.capabilities.add"))
    paths = [v.get("name", "") for v in spec.get("volumes") or [] if "hostPath" in v]
    if paths:
        out.append(("hostPath volumes", "volume" + ("s " if len(paths) > 1 else " ") + ", ".join(f'"{p}"' for p in paths)))
    ports = [p.get("hostPort") for c in cs for p in c.get("ports") or [] if p.get("hostPort")]
    if ports:
        out.append(("hostPort", "container uses hostPort " + ", ".join(str(p) for p in ports)))
    contexts = [spec.get("securityContext") or {}] + [c.get("securityContext") or {} for c in cs]
    if any((sc.get("windowsOptions") or {}).get("hostProcess") for sc in contexts):
        out.append(("hostProcess", "pod or containers must not set securityContext.windowsOptions.hostProcess=true"))
    if any((sc.get("seLinuxOptions") or {}).get("type", "") not in SELINUX_TYPES or (sc.get("seLinuxOptions") or {}).get("user")
           or (sc.get("seLinuxOptions") or {}).get("role") for sc in contexts):
        out.append(("seLinuxOptions", "forbidden securityContext.seLinuxOptions"))
    if any((c.get("securityContext") or {}).get("procMount") not in (None, "Default") for c in cs):
        out.append(("procMount", "forbidden procMount"))
    if any((sc.get("seccompProfile") or {}).get("type") == "Unconfined" for sc in contexts):
        out.append(("seccompProfile", 'seccompProfile.type must not be "Unconfined"'))
    if any((sc.get("appArmorProfile") or {}).get("type") not in (None, "RuntimeDefault", "Localhost") for sc in contexts):
        out.append(("forbidden AppArmor profile", 'appArmorProfile.type must not be "Unconfined"'))
    bad = [s.get("name") for s in (spec.get("securityContext") or {}).get("sysctls") or [] if s.get("name") not in SAFE_SYSCTLS]
    if bad:
        out.append(("forbidden sysctls", ", ".join(bad)))
    return out


def restricted(spec):
    out = baseline(spec)
    cs = list(containers(spec))
    pod = spec.get("securityContext") or {}
    vols = [v.get("name", "") for v in spec.get("volumes") or [] if not (set(v) - {"name"}) & RESTRICTED_VOLUMES]
    if vols:
        out.append(("restricted volume types", "volume" + ("s " if len(vols) > 1 else " ") + ", ".join(f'"{v}"' for v in vols)))
    esc = [c for c in cs if (c.get("securityContext") or {}).get("allowPrivilegeEscalation") is not False]
    if esc:
        out.append(("allowPrivilegeEscalation != false", f'container{"s" if len(esc) > 1 else ""} {names(esc)} must set securityContext.allowPrivilegeEscalation=false'))
    caps = [c for c in cs if "ALL" not in (((c.get("securityContext") or {}).get("capabilities") or {}).get("drop") or [])]
    if caps:
        out.append(("unrestricted capabilities", f'container{"s" if len(caps) > 1 else ""} {names(caps)} must set securityContext.capabilities.drop=["ALL"]'))
    nonroot = [c for c in cs if (c.get("securityContext") or {}).get("runAsNonRoot", pod.get("runAsNonRoot")) is not True]
    if nonroot:
        out.append(("runAsNonRoot != true", f'pod or container{"s" if len(nonroot) > 1 else ""} {names(nonroot)} must set securityContext.runAsNonRoot=true'))
    if pod.get("runAsUser") == 0 or any((c.get("securityContext") or {}).get("runAsUser") == 0 for c in cs):
        out.append(("runAsUser=0", "pod or container must not set runAsUser=0"))
    seccomp = [c for c in cs if ((c.get("securityContext") or {}).get("seccompProfile") or pod.get("seccompProfile") or {}).get("type")
               not in ("RuntimeDefault", "Localhost")]
    if seccomp:
        out.append(("seccompProfile", f'pod or container{"s" if len(seccomp) > 1 else ""} {names(seccomp)} must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost"'))
    return out


def check(namespace_labels, pod):
    """None when the pod may be created in a namespace with these labels, else the message."""
    level = (namespace_labels or {}).get("pod-security.kubernetes.io/enforce", "privileged")
    version = (namespace_labels or {}).get("pod-security.kubernetes.io/enforce-version", "latest")
    if level not in ("baseline", "restricted"):
        return None
    spec = pod.get("spec") or {}
    problems = baseline(spec) if level == "baseline" else restricted(spec)
    if not problems:
        return None
    name = (pod.get("metadata") or {}).get("name", "")
    return f'pods "{name}" is forbidden: violates PodSecurity "{level}:{version}": ' + ", ".join(f"{r} ({d})" for r, d in problems)
