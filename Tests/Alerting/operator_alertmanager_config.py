#!/usr/bin/env python3
"""Stands in for the Prometheus Operator's conversion of an AlertmanagerConfig into the
configuration file its Alertmanager runs (no operator runs here). What it does, from the
operator's documentation (Documentation/user-guides/alerting.md, "AlertmanagerConfig", and the
API reference of monitoring.coreos.com/v1alpha1):

- "the Alertmanager configuration only applies to alerts for which the namespace label is equal
  to the namespace of the AlertmanagerConfig resource": the route gets a namespace="<ns>"
  matcher (alertmanagerConfigMatcherStrategy OnNamespace, the default);
- its route "will be added to the generated Alertmanager configuration as a first-level route",
  with continue: true (so one AlertmanagerConfig cannot swallow another's alerts);
- receivers are renamed "<namespace>/<name>/<receiver>", and routes refer to them so;
- Secret references (apiURL, urlSecret) are read from the Secrets given here;
- camelCase fields become Alertmanager's snake_case (groupBy -> group_by, ...); matchers
  {name, value, matchType} become "name<matchType>\"value\"" strings.

The root route is kube-prometheus-stack's default: everything not matched goes to the receiver
"null", which sends nothing (the dangerous default: an alert without the namespace label is
dropped quietly).

  operator_alertmanager_config.py CR.yaml SECRETS.json OUT.yml
SECRETS.json: {"secret-name": {"key": "value"}}.
"""
import json, sys
import yaml

SNAKE = {"groupBy": "group_by", "groupWait": "group_wait", "groupInterval": "group_interval", "repeatInterval": "repeat_interval",
         "continue": "continue", "receiver": "receiver"}


def matcher(m):
    return f'{m["name"]}{m.get("matchType", "=")}"{m["value"]}"'


def route(r, prefix, top=False, ns=None):
    out = {}
    for k, v in r.items():
        if k == "receiver":
            out["receiver"] = prefix + v
        elif k == "matchers":
            out["matchers"] = [matcher(m) for m in v]
        elif k == "routes":
            out["routes"] = [route(c, prefix) for c in v]
        elif k in SNAKE:
            out[SNAKE[k]] = v
        else:
            sys.exit(f"operator stand-in: route field {k} not handled")
    if top:
        out["matchers"] = [f'namespace="{ns}"'] + out.get("matchers", [])
        out["continue"] = True
    return out


def secret(secrets, ref):
    return secrets[ref["name"]][ref["key"]]


def receiver(r, prefix, secrets):
    out = {"name": prefix + r["name"]}
    for c in r.get("slackConfigs", []):
        out.setdefault("slack_configs", []).append({
            "api_url": secret(secrets, c["apiURL"]), "channel": c["channel"], "send_resolved": c.get("sendResolved", False),
            **({"title": c["title"]} if "title" in c else {}), **({"text": c["text"]} if "text" in c else {})})
    for c in r.get("webhookConfigs", []):
        out.setdefault("webhook_configs", []).append({
            # Alertmanager's webhook default is send_resolved: true; Slack's is false.
            "url": c["url"] if "url" in c else secret(secrets, c["urlSecret"]), "send_resolved": c.get("sendResolved", True)})
    return out


def main():
    cr = next(d for d in yaml.safe_load_all(open(sys.argv[1])) if d and d.get("kind") == "AlertmanagerConfig")
    secrets = json.load(open(sys.argv[2]))
    ns, name = cr["metadata"]["namespace"], cr["metadata"]["name"]
    prefix = f"{ns}/{name}/"
    config = {
        "route": {"receiver": "null", "group_by": ["namespace"], "group_wait": "30s", "group_interval": "5m", "repeat_interval": "12h",
                  "routes": [route(cr["spec"]["route"], prefix, top=True, ns=ns)]},
        "receivers": [{"name": "null"}] + [receiver(r, prefix, secrets) for r in cr["spec"]["receivers"]],
    }
    yaml.safe_dump(config, open(sys.argv[3], "w"), sort_keys=False)


if __name__ == "__main__":
    main()
