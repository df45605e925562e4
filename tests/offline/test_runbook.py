"""docs/runbook.md: every kubectl and helm command in it names what the project deploys.

The on-call pastes these commands into a shell during an incident: a Deployment, Service, Job,
Secret, namespace or Helm release that does not exist, or a label that selects nothing, fails
there. Each shell code block and each inline code span of the runbook is split into simple
commands; those that start with `kubectl` or `helm` are parsed, and their namespace
(`-n`/`--namespace`), the objects they name (`deploy/NAME`, `get secret NAME`, a PVC in
`--overrides`, a Helm release) and their label selectors (`-l`) must exist in the rendered dev or
prod stack, the placeholders (`<model>`, `<slot>`, `<job>`, `<group>`, `<env>`, `<n>` (a
StatefulSet pod's ordinal), `<release>` with its `<namespace>`) filled in with that stack's own
values. What Helm charts create is rendered only
as a release with its values: the few objects of charts that the runbook names are computed from
the releases (`chart_made`, each with the chart template that names it).
"""

from __future__ import annotations

import json
import re
import shlex
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Optional

import pytest

from components.infra.gateway_controllers import proxy_labels
from components.infra.node_group import NODE_GROUP_LABEL
from components.offline.mockrun import Run, reveal
from components.offline.render import HELM_RELEASE, helm_document, is_kubernetes_object
from components.serving.gateway import PROXY_NAMESPACE
from components.serving.labels import MODEL_LABEL, SLOT_LABEL

from ..conftest import ROOT

RUNBOOK = ROOT / "docs" / "runbook.md"

# --------------------------------------------------------------------------------------------
# What a render deploys


def helm_fullname(release: str, chart: str, limit: int = 63) -> str:
    """The `<chart>.fullname` helper the charts below share (their templates/_helpers.tpl): the
    release name when it contains the chart's name, else `<release>-<chart>`, cut to `limit`."""
    name = release if chart in release else f"{release}-{chart}"
    return name[:limit].rstrip("-")


def operator_made(prometheus: str, alertmanager: str, values: dict) -> list[tuple[str, str, dict]]:
    """The StatefulSets the Prometheus operator makes of kube-prometheus-stack's Prometheus and
    Alertmanager (named `<crname>`: the chart's `kube-prometheus-stack.prometheus.crname` and
    `.alertmanager.crname`, templates/_helpers.tpl), their pods (`<statefulset>-<ordinal>`) and,
    with a volumeClaimTemplate, each pod's PVC `<template>-<pod>` whose template is named
    `<statefulset>-db` (prometheus-operator pkg/prometheus/common.go `VolumeName`, shard 0 without
    a suffix; pkg/alertmanager/statefulset.go `volumeName`, `prefixedName`)."""
    made = []
    for kind, cr, spec, storage in (
            ("prometheus", prometheus, values.get("prometheus", {}).get("prometheusSpec", {}), "storageSpec"),
            ("alertmanager", alertmanager, values.get("alertmanager", {}).get("alertmanagerSpec", {}), "storage")):
        statefulset = f"{kind}-{cr}"
        made.append(("StatefulSet", statefulset, {}))
        for ordinal in range(spec.get("replicas", 1)):
            made.append(("Pod", f"{statefulset}-{ordinal}", {}))
            if spec.get(storage, {}).get("volumeClaimTemplate"):
                made.append(("PersistentVolumeClaim", f"{statefulset}-db-{statefulset}-{ordinal}", {}))
    return made


def chart_made(release: dict) -> list[tuple[str, str, dict]]:
    """(kind, name, labels of its pods) of the objects the runbook names that a release's chart
    (or its operator) creates in the release's namespace."""
    name, chart, values = release["name"], release["chart"], release["values"]
    if chart == "kube-prometheus-stack":
        # kube-prometheus-stack templates/_helpers.tpl: its fullname is cut to 26 characters.
        full = helm_fullname(name, chart, 26)
        # The grafana subchart: charts/grafana templates/_helpers.tpl `grafana.fullname` with the
        # parent's release name; its Service and Deployment (templates/service.yaml,
        # deployment.yaml) carry that name.
        grafana = helm_fullname(name, "grafana")
        return [("Service", f"{full}-prometheus", {}),  # templates/prometheus/service.yaml
                ("Service", f"{full}-alertmanager", {}),  # templates/alertmanager/service.yaml
                ("Service", grafana, {}), ("Deployment", grafana, {}),
                *operator_made(f"{full}-prometheus", f"{full}-alertmanager", values)]
    if chart == "prometheus-adapter":
        # templates/deployment.yaml: `k8s-prometheus-adapter.fullname`.
        return [("Deployment", helm_fullname(name, chart), {})]
    if chart == "aws-load-balancer-controller":
        # templates/deployment.yaml: `aws-load-balancer-controller.fullname`.
        return [("Deployment", helm_fullname(name, chart), {})]
    if chart == "cluster-autoscaler":
        # templates/_helpers.tpl: the name is `<cloudProvider>-cluster-autoscaler`, the fullname
        # `<release>-<name>` unless they are equal; templates/deployment.yaml uses the fullname.
        base = f"{values['cloudProvider']}-{chart}"
        return [("Deployment", name if base == name else f"{name}-{base}", {}),
                # Written by the autoscaler itself (--status-config-map-name, its default).
                ("ConfigMap", "cluster-autoscaler-status", {})]
    if chart == "gateway-helm":
        # envoyproxy/gateway v1.8.3 charts/gateway-helm/templates/envoy-gateway-deployment.yaml.
        return [("Deployment", "envoy-gateway", {})]
    if chart == "ai-gateway-helm":
        # envoyproxy/ai-gateway v1.1.0 templates/deployment.yaml: `controller.fullname`, which
        # values.yaml sets (controller.fullnameOverride) to ai-gateway-controller.
        return [("Deployment", values.get("controller", {}).get("fullnameOverride", "ai-gateway-controller"), {})]
    if chart == "gpu-operator" and values.get("dcgmExporter", {}).get("enabled", True):
        # Made by the operator from its ClusterPolicy, in its namespace (NVIDIA/gpu-operator
        # assets/state-dcgm-exporter/0800_daemonset.yaml: name and pod label).
        return [("DaemonSet", "nvidia-dcgm-exporter", {"app": "nvidia-dcgm-exporter"})]
    return []


@dataclass
class Inventory:
    """What one rendered stack deploys, as kubectl and helm would find it."""
    stack: str
    objects: set[tuple[str, str, str]] = field(default_factory=set)  # (kind, namespace or "", name)
    labels: dict[str, list[dict]] = field(default_factory=lambda: defaultdict(list))  # by namespace
    node_labels: list[dict] = field(default_factory=list)  # the labels each node group gives
    namespaces: set[str] = field(default_factory=set)
    releases: set[tuple[str, str]] = field(default_factory=set)  # (namespace, name)
    rows: list[dict[str, str]] = field(default_factory=list)  # placeholder values that go together


def inventory(stack: str, run: Run) -> Inventory:
    inv = Inventory(stack, rows=[{"<env>": stack}])
    for r in run.resources:
        if r.type == HELM_RELEASE:
            doc = helm_document(r)
            ns = doc["namespace"]
            inv.releases.add((ns, doc["name"]))
            inv.namespaces.add(ns)  # created with the release (create_namespace)
            inv.rows.append({"<env>": stack, "<release>": doc["name"], "<namespace>": ns})
            for kind, name, pod_labels in chart_made(doc):
                inv.objects.add((kind, ns, name))
                if pod_labels:
                    inv.labels[ns].append(pod_labels)
                ordinal = re.search(r"-(\d+)$", name)
                if kind == "Pod" and ordinal:  # a StatefulSet's pod: `<n>` is its ordinal
                    inv.rows.append({"<env>": stack, "<n>": ordinal.group(1)})
        elif is_kubernetes_object(r):
            manifest = reveal(r.inputs)
            kind, meta = manifest["kind"], manifest["metadata"]
            ns, labels = meta.get("namespace", ""), meta.get("labels") or {}
            inv.objects.add((kind, ns, meta["name"]))
            if kind == "Namespace":
                inv.namespaces.add(meta["name"])
            if kind == "Gateway":
                # Envoy Gateway makes each Gateway's proxies (a Deployment and a Service named
                # with a hash) in its own namespace, labelled with the Gateway they serve.
                inv.labels[PROXY_NAMESPACE].append(proxy_labels(meta["name"], ns))
            # The object's own labels and those of the pods it makes (Deployments, Jobs).
            pods = manifest.get("spec", {}).get("template", {}).get("metadata", {}).get("labels")
            inv.labels[ns].extend(ls for ls in (labels, pods) if ls)
            if kind == "Deployment":
                inv.rows.append({"<env>": stack, "<model>": labels[MODEL_LABEL],
                                 "<slot>": labels[SLOT_LABEL]})
            elif kind == "Job":
                inv.rows.append({"<env>": stack, "<model>": labels[MODEL_LABEL], "<job>": meta["name"]})
        elif r.type == "aws:eks/nodeGroup:NodeGroup":
            labels = reveal(r.inputs).get("labels") or {}
            inv.node_labels.append(labels)
            inv.rows.append({"<env>": stack, "<group>": labels[NODE_GROUP_LABEL]})
    return inv


# --------------------------------------------------------------------------------------------
# The commands of a Markdown document

SHELL_BLOCK_LANGUAGES = {"", "sh", "bash", "shell", "console"}
FENCE = re.compile(r"^([ \t]*)```([\w-]*)[ \t]*\n(.*?)^\1```[ \t]*$", re.M | re.S)
INLINE = re.compile(r"`([^`]+)`")


def snippets(markdown: str) -> list[str]:
    """One logical shell line per entry: each line of a shell block (continuations joined) and
    each inline code span (a span wrapped over lines of a paragraph is one)."""
    out = []
    for block in FENCE.finditer(markdown):
        if block.group(2) in SHELL_BLOCK_LANGUAGES:
            text = re.sub(r"\\\n", " ", block.group(3))
            out.extend(line.strip() for line in text.splitlines() if line.strip())
    prose = FENCE.sub("", markdown)
    out.extend(" ".join(span.split()) for span in INLINE.findall(prose) if "\n\n" not in span)
    return out


SEPARATORS = {"|", "||", "&", "&&", ";", "(", ")", "$"}


def simple_commands(line: str) -> list[list[str]]:
    """The simple commands of a shell line (split at pipes, lists and `$(...)`), words unquoted,
    redirections and leading variable assignments dropped."""
    lex = shlex.shlex(line, posix=True, punctuation_chars="|&;()")
    lex.whitespace_split = True
    commands, words, skip = [], [], False
    for token in lex:
        if token in SEPARATORS:
            commands.append(words)
            words = []
        elif skip:
            skip = False
        elif token in (">", ">>", "<", "2>"):
            skip = True
        elif re.fullmatch(r"\d?>>?\S+", token):
            continue
        elif token.endswith("$") and not words:
            continue  # `VAR=$` of `VAR=$(...)`
        elif not words and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=\S*", token):
            continue
        else:
            words.append(token)
    commands.append(words)
    return [c for c in commands if c]


def tool_commands(markdown: str) -> list[tuple[str, list[str]]]:
    """(the line it came from, its words) of every kubectl and helm command with arguments."""
    return [(line, words) for line in snippets(markdown) for words in simple_commands(line)
            if words[0] in ("kubectl", "helm") and len(words) > 1]


# --------------------------------------------------------------------------------------------
# kubectl and helm command lines, parsed as far as names go

KINDS = {}
for kind, spellings in {
    "Deployment": "deploy deployment deployments", "Service": "svc service services",
    "Job": "job jobs", "HorizontalPodAutoscaler": "hpa horizontalpodautoscaler horizontalpodautoscalers",
    "PodDisruptionBudget": "pdb poddisruptionbudget poddisruptionbudgets",
    "PersistentVolumeClaim": "pvc persistentvolumeclaim persistentvolumeclaims",
    "Secret": "secret secrets", "ConfigMap": "cm configmap configmaps",
    "NetworkPolicy": "netpol networkpolicy networkpolicies", "Ingress": "ing ingress ingresses",
    "ServiceAccount": "sa serviceaccount serviceaccounts", "DaemonSet": "ds daemonset daemonsets",
    "StatefulSet": "sts statefulset statefulsets", "PrometheusRule": "prometheusrule prometheusrules",
    "PodMonitor": "podmonitor podmonitors", "Pod": "po pod pods", "Node": "no node nodes",
    "Namespace": "ns namespace namespaces", "StorageClass": "sc storageclass storageclasses",
    "Event": "ev event events", "EndpointSlice": "endpointslice endpointslices",
    "ReplicaSet": "rs replicaset replicasets",
    "TargetGroupBinding": "targetgroupbinding targetgroupbindings",
    "Gateway": "gateway gateways", "GatewayClass": "gatewayclass gatewayclasses",
    "AIGatewayRoute": "aigatewayroute aigatewayroutes", "SecurityPolicy": "securitypolicy securitypolicies",
    "BackendTrafficPolicy": "backendtrafficpolicy backendtrafficpolicies",
    "ClientTrafficPolicy": "clienttrafficpolicy clienttrafficpolicies",
}.items():
    KINDS.update(dict.fromkeys(spellings.split(), kind))
CLUSTER_SCOPED = {"Node", "Namespace", "StorageClass", "GatewayClass"}
# Made by the cluster at run time, never in a render: named only through a runtime placeholder
# (but the pods of the operator's StatefulSets, `<statefulset>-<n>`: operator_made).
RUNTIME_KINDS = {"Pod", "Node", "Event", "EndpointSlice", "ReplicaSet", "TargetGroupBinding"}

PLACEHOLDER = re.compile(r"<[a-z][a-z0-9-]*>")
FILLED = {"<env>", "<model>", "<slot>", "<job>", "<group>", "<release>", "<namespace>", "<n>"}
RUNTIME = {"<node>": "nodes come and go", "<pod>": "pods get random suffixes",
           "<zone>": "the AZs are the region's",
           "<envoy-service>": "Envoy Gateway names its proxies' Service with a hash"}
# Node labels that EKS and the kubelet set on every node: not in a render.
RUNTIME_NODE_LABELS = {"topology.kubernetes.io/zone", "topology.kubernetes.io/region",
                       "node.kubernetes.io/instance-type", "kubernetes.io/hostname",
                       "eks.amazonaws.com/nodegroup", "eks.amazonaws.com/capacityType"}

VALUE_FLAGS = {
    "-n", "--namespace", "-l", "--selector", "-o", "--output", "-c", "--container", "--timeout",
    "--tail", "--since", "--since-time", "--field-selector", "--image", "--overrides",
    "--override-type", "--type", "-p", "--patch", "--grace-period", "--context", "--kubeconfig",
    "--template", "-f", "--filename", "--sort-by", "--profile", "--replicas", "--raw", "-L",
    "--label-columns", "--restart", "--max-log-requests", "--pod-running-timeout", "--for",
    "--to-revision", "--env", "--labels", "--address", "--kube-context", "--revision", "--max",
    "--values", "--set", "--version", "--repo",
}
LOGS_BOOLEANS = {"-p", "-f"}  # `kubectl logs`: --previous, --follow
NAMED_VERBS = {"get", "describe", "delete", "edit", "patch", "label", "annotate", "scale", "wait",
               "rollout", "set"}
POD_VERBS = {"logs", "exec", "port-forward", "attach"}
NODE_VERBS = {"cordon", "uncordon", "drain"}
DRAIN_FLAGS = ("--ignore-daemonsets", "--delete-emptydir-data")


@dataclass
class Command:
    tool: str
    text: str
    verb: str = ""
    namespace: Optional[str] = None
    all_namespaces: bool = False
    flags: set[str] = field(default_factory=set)
    selectors: list[str] = field(default_factory=list)
    refs: list[tuple[str, Optional[str]]] = field(default_factory=list)  # (kind as written, name)
    release: Optional[str] = None  # helm


def _split_flags(words: list[str]) -> tuple[list[str], dict[str, list[str]]]:
    positionals, flags = [], defaultdict(list)
    i = 1
    while i < len(words):
        word = words[i]
        if word == "--":
            break
        if word.startswith("-") and len(word) > 1:
            flag, eq, value = word.partition("=")
            verb = positionals[0] if positionals else ""
            if not eq and flag in VALUE_FLAGS and not (verb == "logs" and flag in LOGS_BOOLEANS):
                i += 1
                value = words[i] if i < len(words) else ""
            flags[flag].append(value)
        else:
            positionals.append(word)
        i += 1
    return positionals, flags


def parse(words: list[str], text: str = "") -> Command:
    positionals, flags = _split_flags(words)
    cmd = Command(tool=words[0], text=text or shlex.join(words), flags=set(flags))
    cmd.namespace = (flags.get("-n") or flags.get("--namespace") or [None])[-1]
    cmd.all_namespaces = "-A" in flags or "--all-namespaces" in flags
    cmd.selectors = flags.get("-l", []) + flags.get("--selector", [])
    if not positionals:
        return cmd
    cmd.verb, args = positionals[0], positionals[1:]
    if cmd.tool == "helm":
        if cmd.verb == "get" and args:
            args = args[1:]  # helm get values|manifest|all <release>
        if cmd.verb in ("history", "status", "rollback", "uninstall", "get", "upgrade", "test") and args:
            cmd.release = args[0]
        return cmd
    if cmd.verb == "rollout" and args:
        cmd.verb, args = f"rollout {args[0]}", args[1:]
    if cmd.verb.split()[0] in NAMED_VERBS:
        args = [a for a in args if "=" not in a]  # label/annotate/set key=value pairs
        if args and "/" in args[0]:
            cmd.refs = [tuple(a.split("/", 1)) for a in args if "/" in a]
        elif args:
            names = args[1:] or [None]
            cmd.refs = [(kind, name) for kind in args[0].split(",") for name in names]
    elif cmd.verb in POD_VERBS and args:
        cmd.refs = [tuple(args[0].split("/", 1)) if "/" in args[0] else ("pod", args[0])]
    elif cmd.verb in NODE_VERBS:
        cmd.refs = [("node", a) for a in args] or [("node", None)]
    elif cmd.verb == "debug" and args:  # debug node/NAME, or a pod
        cmd.refs = [tuple(args[0].split("/", 1)) if "/" in args[0] else ("pod", args[0])]
    elif cmd.verb == "top" and args:  # top pod|node [NAME]
        cmd.refs = [(args[0], args[1] if len(args) > 1 else None)]
    elif cmd.verb == "run":
        # The volumes of the pod it starts.
        for override in flags.get("--overrides", []):
            spec = json.loads(override).get("spec", {})
            cmd.refs += [("pvc", v["persistentVolumeClaim"]["claimName"])
                         for v in spec.get("volumes", []) if "persistentVolumeClaim" in v]
    return cmd


# --------------------------------------------------------------------------------------------
# The check


def _fill(text: Optional[str], row: dict[str, str]) -> Optional[str]:
    if text is None:
        return None
    return PLACEHOLDER.sub(lambda m: row.get(m.group(0), m.group(0)), text)


def _selector_pairs(selector: str) -> Optional[dict[str, str]]:
    """An equality-based selector as a dict; None for any other form (not checked here)."""
    pairs = {}
    for term in selector.split(","):
        key, sep, value = term.partition("==") if "==" in term else term.partition("=")
        if not sep or key.endswith("!") or not key or not value:
            return None
        pairs[key] = value
    return pairs


def _structural(cmd: Command) -> list[str]:
    """Problems of the command itself, whatever is deployed."""
    problems = []
    if cmd.tool == "helm":
        if cmd.release is not None and cmd.namespace is None:
            problems.append("no -n: helm would look for the release in namespace default")
        return problems
    kinds = {KINDS.get(kind.lower()) for kind, _ in cmd.refs}
    for kind, _ in cmd.refs:
        if kind.lower() not in KINDS:
            problems.append(f"unknown resource type {kind!r} (add it to KINDS)")
    namespaced = kinds - CLUSTER_SCOPED - {None}
    if namespaced and cmd.namespace is None and not cmd.all_namespaces:
        problems.append("no -n: kubectl would look in namespace default")
    if cmd.verb == "rollout restart" and any(name is None for _, name in cmd.refs) and not cmd.selectors:
        problems.append("restarts every Deployment of the namespace at once: name one")
    if cmd.verb == "drain":
        problems += [f"drain without {flag}" for flag in DRAIN_FLAGS if flag not in cmd.flags]
    return problems


def _bound(cmd: Command, inv: Inventory, row: dict[str, str]) -> list[str]:
    """Problems of the command with the placeholders filled from one row of a stack."""
    problems = []
    ns = _fill(cmd.namespace, row)
    if ns is not None and ns not in inv.namespaces:
        problems.append(f"namespace {ns} is not deployed")
    if cmd.tool == "helm":
        release = _fill(cmd.release, row)
        if release is not None and (ns, release) not in inv.releases:
            problems.append(f"no Helm release {release} in namespace {ns}")
        return problems
    kinds = {KINDS.get(kind.lower()) for kind, _ in cmd.refs}
    for written, name in cmd.refs:
        kind = KINDS.get(written.lower())
        if kind is None or name is None or any(p in name for p in RUNTIME):
            continue
        name = _fill(name, row)
        if kind in RUNTIME_KINDS and (kind, ns, name) not in inv.objects:  # but a StatefulSet's pods
            problems.append(f"{written}/{name}: a {kind} name is known only at run time: use a placeholder")
            continue
        scope = "" if kind in CLUSTER_SCOPED else ns
        if (kind, scope, name) not in inv.objects:
            problems.append(f"no {kind} {name}" + (f" in namespace {ns}" if scope else ""))
    for selector in cmd.selectors:
        pairs = _selector_pairs(_fill(selector, row))
        if pairs is None:
            problems.append(f"selector {selector!r}: only k=v[,k=v] selectors can be checked")
        elif kinds & {"Node"} or cmd.verb in NODE_VERBS:
            pairs = {k: v for k, v in pairs.items() if k not in RUNTIME_NODE_LABELS}
            if pairs and not any(pairs.items() <= ls.items() for ls in inv.node_labels):
                problems.append(f"selector {selector!r} selects no node group's nodes")
        elif set(pairs) == {"kubernetes.io/service-name"}:
            # EndpointSlices carry the name of their Service (set by the control plane).
            if ("Service", ns, pairs["kubernetes.io/service-name"]) not in inv.objects:
                problems.append(f"selector {selector!r}: no Service of that name in namespace {ns}")
        elif not any(pairs.items() <= ls.items() for ls in inv.labels.get(ns, [])):
            problems.append(f"selector {selector!r} selects nothing in namespace {ns}")
    return problems


def check(cmd: Command, inventories: list[Inventory]) -> list[str]:
    """Why the command would fail against every rendered stack ([] when it works against one)."""
    problems = _structural(cmd)
    checked = [cmd.namespace or "", cmd.release or "", *cmd.selectors,
               *(name for _, name in cmd.refs if name)]
    used = set(PLACEHOLDER.findall(" ".join(checked)))
    if used - FILLED - set(RUNTIME):
        problems.append(f"unknown placeholders {sorted(used - FILLED - set(RUNTIME))}: "
                        f"known are {sorted(FILLED)} and, for run-time names, {sorted(RUNTIME)}")
    if problems:
        return problems
    needed = used & FILLED
    per_stack = []
    for inv in inventories:
        rows = [row for row in inv.rows if needed <= row.keys()]
        found = sorted({p for row in rows for p in _bound(cmd, inv, row)}) if rows else [
            f"no values for {sorted(needed)}"]
        if not found:
            return []
        per_stack += [f"{inv.stack}: {p}" for p in found]
    return per_stack


# --------------------------------------------------------------------------------------------
# Tests


@pytest.fixture(scope="module")
def inventories(stack_runs) -> list[Inventory]:
    return [inventory(stack, run) for stack, run in sorted(stack_runs.items())]


@pytest.fixture(scope="module")
def runbook_commands() -> list[Command]:
    return [parse(words, line) for line, words in tool_commands(RUNBOOK.read_text())]


def test_every_kubectl_and_helm_command_of_the_runbook_names_what_is_deployed(inventories, runbook_commands):
    assert runbook_commands, "no kubectl or helm command found in docs/runbook.md"
    failures = [f"{cmd.text}\n    " + "\n    ".join(problems)
                for cmd in runbook_commands if (problems := check(cmd, inventories))]
    assert not failures, "commands of docs/runbook.md that would fail:\n" + "\n".join(failures)


def test_the_runbook_drains_and_restarts_as_the_serving_pods_need(runbook_commands):
    """TGI pods mount an emptyDir at /dev/shm (a drain refuses them without
    --delete-emptydir-data) and a restart takes one slot at a time, waited for."""
    drains = [c for c in runbook_commands if c.verb == "drain"]
    restarts = [c for c in runbook_commands if c.verb == "rollout restart"]
    assert drains and restarts
    assert all(set(DRAIN_FLAGS) <= c.flags for c in drains)
    for restart in restarts:
        assert [name for _, name in restart.refs] == ["<model>-<slot>"], restart.text
        status = restart.text.replace("rollout restart", "rollout status")
        assert any(c.verb == "rollout status" and c.text.startswith(status) for c in runbook_commands), \
            f"no `{status}` to wait for it"


def test_commands_are_found_in_blocks_spans_and_substitutions():
    markdown = (
        "Look: `kubectl -n llm\ndescribe pod -l llmserve/model=<model>`, not `rollout restart deploy`.\n\n"
        "```sh\n"
        "JOB=$(kubectl -n llm get jobs -l llmserve/model=<model> -o name)   # the Job\n"
        "kubectl -n kube-system logs deploy/cluster-autoscaler-aws-cluster-autoscaler \\\n"
        "  --since=1h | grep -iE 'a|b' > /tmp/log\n"
        "kubectl -n llm port-forward svc/<model> 8080:80 &\n"
        "```\n"
        "```yaml\nkubectl: not a command here\n```\n"
    )
    assert [words for _, words in tool_commands(markdown)] == [
        ["kubectl", "-n", "llm", "get", "jobs", "-l", "llmserve/model=<model>", "-o", "name"],
        ["kubectl", "-n", "kube-system", "logs", "deploy/cluster-autoscaler-aws-cluster-autoscaler",
         "--since=1h"],
        ["kubectl", "-n", "llm", "port-forward", "svc/<model>", "8080:80"],
        ["kubectl", "-n", "llm", "describe", "pod", "-l", "llmserve/model=<model>"],
    ]


@pytest.mark.parametrize("line, expected", [
    ("kubectl -n llm rollout status deploy/<model>", "no Deployment "),
    ("kubectl -n llm logs deploy/<model>-serving", "no Deployment "),
    ("kubectl -n monitoring port-forward svc/grafana 3000:80", "no Service grafana in namespace monitoring"),
    ("kubectl -n llm port-forward svc/kube-prometheus-stack-grafana 3000:80",
     "no Service kube-prometheus-stack-grafana in namespace llm"),
    ("kubectl -n kube-system logs deploy/cluster-autoscaler", "no Deployment cluster-autoscaler in"),
    ("kubectl -n llms get pods", "namespace llms is not deployed"),
    ("kubectl logs deploy/<model>-<slot>", "no -n"),
    ("kubectl -n llm get secret hf-token", "no Secret hf-token in namespace llm"),
    ("kubectl -n llm get pvc <model>", "no PersistentVolumeClaim "),
    ("kubectl -n llm get jobs -l llmserve/model=<modle>", "unknown placeholders ['<modle>']"),
    ("kubectl -n llm get pods -l app=tgi", "selector 'app=tgi' selects nothing in namespace llm"),
    ("kubectl -n llm get endpointslices -l kubernetes.io/service-name=<model>-svc",
     "no Service of that name"),
    ("kubectl get nodes -l llmserve/node-group=gpu", "selects no node group's nodes"),
    ("kubectl -n llm rollout restart deploy", "restarts every Deployment"),
    ("kubectl drain <node> --ignore-daemonsets", "drain without --delete-emptydir-data"),
    ("kubectl -n llm describe gizmo <model>", "unknown resource type 'gizmo'"),
    ("helm -n monitoring history cluster-autoscaler", "no Helm release cluster-autoscaler in namespace monitoring"),
    ("helm history kube-prometheus-stack", "no -n"),
])
def test_a_wrong_name_is_reported(inventories, line, expected):
    (words,) = simple_commands(line)
    problems = check(parse(words, line), inventories)
    assert any(expected in p for p in problems), problems


@pytest.mark.parametrize("line", [
    "kubectl -n llm rollout status deploy/<model>-<slot> --timeout=30m",
    "kubectl -n llm logs job/<job>",
    "kubectl -n llm get pvc <model>-cache",
    "kubectl -n llm describe ingress <model>",  # prod has an ingress, dev none: one stack suffices
    "kubectl -n llm get pods -l llmserve/model=<model>,llmserve/slot=<slot>",
    "kubectl -n monitoring port-forward svc/kube-prometheus-stack-grafana 3000:80",
    "kubectl -n kube-system logs deploy/cluster-autoscaler-aws-cluster-autoscaler",
    "kubectl -n gpu-operator get pods -l app=nvidia-dcgm-exporter",
    "kubectl get nodes -l llmserve/node-group=<group> -L topology.kubernetes.io/zone",
    "kubectl drain <node> --ignore-daemonsets --delete-emptydir-data",
    "helm -n <namespace> history <release>",
    "helm -n kube-system rollback cluster-autoscaler 3",
])
def test_a_right_name_passes(inventories, line):
    (words,) = simple_commands(line)
    assert check(parse(words, line), inventories) == []


def test_chart_made_names_follow_the_release_names(inventories):
    """Computed from the rendered releases: another release name gives the chart's other names
    (kube-prometheus-stack cuts its fullname to 26 characters)."""
    names = {n for k, n, _ in chart_made({"name": "monitoring", "chart": "kube-prometheus-stack", "values": {}})
             if k == "Service"}
    assert names == {"monitoring-kube-prometheus-prometheus", "monitoring-kube-prometheus-alertmanager",
                     "monitoring-grafana"}
    autoscaler = {"name": "ca", "chart": "cluster-autoscaler", "values": {"cloudProvider": "aws"}}
    assert ("Deployment", "ca-aws-cluster-autoscaler", {}) in chart_made(autoscaler)
    for inv in inventories:
        assert ("Deployment", "kube-system", "cluster-autoscaler-aws-cluster-autoscaler") in inv.objects
        assert ("Service", "monitoring", "kube-prometheus-stack-grafana") in inv.objects
        # The operator's StatefulSets: two replicas each, Prometheus' on a PVC, Alertmanager's not.
        prometheus = "prometheus-kube-prometheus-stack-prometheus"
        alertmanager = "alertmanager-kube-prometheus-stack-alertmanager"
        for n in (0, 1):
            assert {("Pod", "monitoring", f"{prometheus}-{n}"), ("Pod", "monitoring", f"{alertmanager}-{n}"),
                    ("PersistentVolumeClaim", "monitoring", f"{prometheus}-db-{prometheus}-{n}")} <= inv.objects
        assert not any(k == "PersistentVolumeClaim" and n.startswith(alertmanager) for k, _, n in inv.objects)
