"""``rag kserve``: an InferenceService's readiness, URL and model, and the backend URL for ``RAG_CHAT__URL``.

Reads ``serving.kserve.io/v1beta1`` InferenceServices through the ``kserve`` SDK (extra ``kserve``): its
``KServeClient`` loads the kubeconfig (or the pod's service account) and holds the Kubernetes client.
Mounted by the ``rag`` app; project errors become a one-line message and an exit code here, and only here.
Exit codes: 0 ok, 2 usage or configuration, 3 the API failed or the InferenceService is not ready.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlsplit

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from rag.errors import (
    ConfigError,
    Forbidden,
    InvalidRequest,
    MissingExtra,
    NotFound,
    RagError,
    Unauthenticated,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnavailable,
)

kserve_app = typer.Typer(
    help="KServe InferenceServices: readiness, URL and model; the backend URL to put in RAG_CHAT__URL.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)
log = logging.getLogger(__name__)

EXIT_CONFIG, EXIT_BACKEND = 2, 3
# The KServe huggingface runtime (vLLM underneath) serves the OpenAI routes under this prefix.
OPENAI_PREFIX = "/openai/v1"
MODE_ANNOTATION = "serving.kserve.io/deploymentMode"
# KServe renamed the modes (Serverless -> Knative, RawDeployment -> Standard); both spellings occur.
KNATIVE, STANDARD, MODELMESH = "Knative", "Standard", "ModelMesh"
_MODES = {"Serverless": KNATIVE, "Knative": KNATIVE, "RawDeployment": STANDARD, "Standard": STANDARD}
_MODEL_NAME_FLAGS = ("--model_name", "--model-name", "--served-model-name", "--served_model_name")


@dataclass(frozen=True)
class Condition:
    """One entry of ``status.conditions``."""

    type: str
    status: str
    reason: str = ""
    message: str = ""


@dataclass(frozen=True)
class IsvcStatus:
    """What ``rag kserve status`` reports about one InferenceService."""

    name: str
    namespace: str
    mode: str  # Knative, Standard, ModelMesh, or "" when neither the status nor an annotation says
    ready: bool
    conditions: tuple[Condition, ...]
    url: str  # status.url: the ingress (external) URL
    address: str  # status.address.url: the in-cluster URL
    model_format: str
    model_name: str  # the id clients put in "model"
    storage_uri: str
    runtime: str
    model_state: str  # status.modelStatus.states.activeModelState
    transition: str  # status.modelStatus.transitionStatus
    failure: str  # status.modelStatus.lastFailureInfo, as "reason: message"

    def not_ready_reason(self) -> str:
        """The conditions that are not True, as one line."""
        if not self.conditions:
            return "it has no status conditions yet (the controller has not reconciled it)"
        # Knative repeats one cause on several conditions: name each cause once, after its conditions.
        causes: dict[tuple[str, str], list[str]] = {}
        for c in self.conditions:
            if c.status != "True":
                causes.setdefault((c.reason, c.message), []).append(f"{c.type} {c.status}")
        parts = [
            ", ".join(names) + (": " + " - ".join(x for x in cause if x) if any(cause) else "")
            for cause, names in causes.items()
        ]
        if self.failure:
            parts.append(f"model {self.failure}")
        return "; ".join(parts)


def summarize(obj: dict[str, Any]) -> IsvcStatus:
    """An InferenceService object (as the API returns it) reduced to what the commands report."""
    meta = obj.get("metadata") or {}
    status = obj.get("status") or {}
    name, namespace = str(meta.get("name", "")), str(meta.get("namespace", ""))
    conditions = tuple(
        Condition(str(c.get("type", "")), str(c.get("status", "Unknown")), c.get("reason", ""), c.get("message", ""))
        for c in status.get("conditions") or []
    )
    ready = any(c.type == "Ready" and c.status == "True" for c in conditions)
    raw_mode = status.get("deploymentMode") or (meta.get("annotations") or {}).get(MODE_ANNOTATION, "")
    model = _predictor_model(obj.get("spec") or {})
    model_status = status.get("modelStatus") or {}
    failure = model_status.get("lastFailureInfo") or {}
    return IsvcStatus(
        name=name,
        namespace=namespace,
        mode=_MODES.get(raw_mode, raw_mode),
        ready=ready,
        conditions=conditions,
        url=str(status.get("url") or ""),
        address=str((status.get("address") or {}).get("url") or ""),
        model_format=str((model.get("modelFormat") or {}).get("name", "")),
        model_name=_served_name(model.get("args") or [], name),
        storage_uri=str(model.get("storageUri", "")),
        runtime=str(
            model.get("runtime") or status.get("servingRuntimeName") or status.get("clusterServingRuntimeName") or ""
        ),
        model_state=str((model_status.get("states") or {}).get("activeModelState", "")),
        transition=str(model_status.get("transitionStatus", "")),
        failure=": ".join(str(failure[k]) for k in ("reason", "message") if failure.get(k)),
    )


def _predictor_model(spec: dict[str, Any]) -> dict[str, Any]:
    """``spec.predictor.model``, or the older framework-named block (``predictor.sklearn`` ...), or ``{}``."""
    predictor = spec.get("predictor") or {}
    if isinstance(predictor.get("model"), dict):
        return dict(predictor["model"])
    for key, value in predictor.items():
        if isinstance(value, dict) and "storageUri" in value:
            return {"modelFormat": {"name": key}, **value}
    return {}


def _served_name(args: list[Any], default: str) -> str:
    """The model id the server answers to: its ``--model_name``/``--served-model-name`` argument, else the name."""
    items = [str(a) for a in args]
    for i, arg in enumerate(items):
        flag, sep, value = arg.partition("=")
        if flag in _MODEL_NAME_FLAGS:
            if sep:
                return value
            if i + 1 < len(items):
                return items[i + 1]
    # KServe's huggingface runtime passes --model_name={{.Name}}: the InferenceService's name.
    return default


def backend_url(s: IsvcStatus, *, external: bool = False, prefix: str = OPENAI_PREFIX, model: str = "") -> str:
    """The ``kserve+http(s)://host/openai/v1?model=x`` URL of the InferenceService's OpenAI routes.

    In-cluster (the default) it is ``status.address.url``: for Knative the cluster-local gateway's
    ``<isvc>.<ns>.svc.cluster.local``, for Standard (RawDeployment) the predictor's Service
    ``<isvc>-predictor.<ns>.svc.cluster.local``. ``external`` takes ``status.url``, the ingress host.
    """
    if s.mode == MODELMESH:
        raise InvalidRequest(
            f"InferenceService {s.namespace}/{s.name} runs on ModelMesh, which serves no OpenAI routes"
        )
    if external:
        base = s.url
        if not base:
            raise UpstreamUnavailable(f"InferenceService {s.namespace}/{s.name} has no status.url (no ingress) yet")
    elif s.address:
        base = s.address
    elif s.mode == STANDARD:
        base = f"http://{s.name}-predictor.{s.namespace}.svc.cluster.local"
    elif s.mode == KNATIVE:
        base = f"http://{s.name}.{s.namespace}.svc.cluster.local"
    else:
        raise UpstreamUnavailable(
            f"InferenceService {s.namespace}/{s.name} has no status.address yet, nor a deployment mode to derive it"
        )
    parts = urlsplit(base)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise UpstreamError(f"InferenceService {s.namespace}/{s.name} reports an unusable URL {base!r}")
    path = parts.path.rstrip("/") + "/" + prefix.strip("/")
    return f"kserve+{parts.scheme}://{parts.netloc}{path.rstrip('/')}?model={quote(model or s.model_name, safe='')}"


def fetch(
    name: str, namespace: str | None, kubeconfig: str | None, context: str | None, timeout_s: float
) -> IsvcStatus:
    """Read one InferenceService through the kserve SDK's client; SDK and HTTP errors become RagErrors."""
    try:
        from kserve import KServeClient, constants
        from kubernetes import config as kube_config
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError as TransportError
    except ImportError as e:
        raise MissingExtra("kserve", "kserve") from e

    # KUBECONFIG may list several files (':'-separated); the client merges those that exist.
    if kubeconfig and not any(Path(p).is_file() for p in kubeconfig.split(os.pathsep) if p):
        raise ConfigError(f"kubeconfig {kubeconfig} does not exist")
    try:
        client = KServeClient(config_file=kubeconfig or None, context=context)
        ns = namespace or _default_namespace(kube_config, kubeconfig, context)
    except kube_config.ConfigException as e:
        where = kubeconfig or "KUBECONFIG or ~/.kube/config"
        raise ConfigError(
            f"no usable Kubernetes configuration ({where}): {e}; give --kubeconfig FILE, or run in a pod"
        ) from e
    host = client.api_instance.api_client.configuration.host
    what = f"InferenceService {ns}/{name}"
    log.debug("reading %s from %s", what, host)
    try:
        obj = client.api_instance.get_namespaced_custom_object(
            constants.KSERVE_GROUP,
            constants.KSERVE_V1BETA1_VERSION,
            ns,
            constants.KSERVE_PLURAL_INFERENCESERVICE,
            name,
            _request_timeout=timeout_s,
        )
    except ApiException as e:
        raise _api_error(e, what, name, host) from e
    except TransportError as e:
        cause = getattr(e, "reason", None) or e  # MaxRetryError wraps what happened on the last try
        if "timed out" in str(cause).lower():
            raise UpstreamTimeout(f"the Kubernetes API at {host} did not answer in {timeout_s:g} s") from e
        raise UpstreamUnavailable(f"cannot reach the Kubernetes API at {host}: {cause}") from e
    return summarize(obj)


def _default_namespace(kube_config: Any, kubeconfig: str | None, context: str | None) -> str:
    """The kubeconfig context's namespace (as kubectl uses it), in a pod its own namespace, else 'default'."""
    from kserve import utils

    if kubeconfig is None and utils.is_running_in_k8s():
        return str(utils.get_default_target_namespace())
    contexts, active = kube_config.list_kube_config_contexts(config_file=kubeconfig or None)
    chosen = next((c for c in contexts if c.get("name") == context), None) if context else active
    return str(((chosen or {}).get("context") or {}).get("namespace") or "default")


def _api_error(e: Any, what: str, name: str, host: str) -> RagError:
    """A RagError for an ApiException, with the API server's own message (its Status object) when there is one."""
    body: dict[str, Any] = {}
    try:
        parsed = json.loads(e.body) if e.body else {}
        body = parsed if isinstance(parsed, dict) else {}
    except (TypeError, ValueError):
        pass
    message = str(body.get("message") or e.reason or "").strip()
    if e.status == 0:  # the client's own failure before any answer (TLS, for one)
        return UpstreamUnavailable(f"cannot reach the Kubernetes API at {host}: {message}")
    if e.status == 404:
        if body.get("kind") == "Status" and (body.get("details") or {}).get("name") == name:
            return NotFound(f"{what} not found")
        return NotFound(f"the Kubernetes API at {host} does not serve serving.kserve.io/v1beta1 (is KServe installed?)")
    if e.status == 401:
        return Unauthenticated(f"the Kubernetes API at {host} refused the credentials: {message}")
    if e.status == 403:
        return Forbidden(f"not allowed to read {what}: {message}")
    if e.status in (502, 503, 504):
        return UpstreamUnavailable(f"the Kubernetes API at {host} is unavailable ({e.status}): {message}")
    return UpstreamError(f"the Kubernetes API at {host} answered {e.status}: {message}")


def _fail(e: RagError) -> typer.Exit:
    # escape(): messages hold brackets that are not markup ("pip install 'onprem-rag[kserve]'").
    if isinstance(e, ConfigError):
        err.print(f"[bold red]configuration error:[/] {escape(e.message)}", highlight=False)
        return typer.Exit(EXIT_CONFIG)
    err.print(f"[bold red]error ({e.status} {e.code or e.type}):[/] {escape(e.message)}", highlight=False)
    return typer.Exit(EXIT_BACKEND if e.status >= 500 else EXIT_CONFIG)


NameArg = Annotated[str, typer.Argument(help="InferenceService name.")]
NamespaceOpt = Annotated[
    str | None, typer.Option("--namespace", "-n", help="Namespace (default: the kubeconfig context's, else 'default').")
]
KubeconfigOpt = Annotated[
    str | None, typer.Option("--kubeconfig", envvar="KUBECONFIG", help="kubeconfig file (default ~/.kube/config).")
]
ContextOpt = Annotated[str | None, typer.Option("--context", help="kubeconfig context (default: the current one).")]
TimeoutOpt = Annotated[float, typer.Option("--timeout", min=0.1, help="Seconds to wait for the Kubernetes API.")]


@kserve_app.command("status")
def status_command(
    name: NameArg,
    namespace: NamespaceOpt = None,
    kubeconfig: KubeconfigOpt = None,
    context: ContextOpt = None,
    timeout: TimeoutOpt = 10.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Report an InferenceService's readiness (conditions), URLs and model; exit 3 when it is not ready.

    Example: rag kserve status llm -n models
    """
    try:
        s = fetch(name, namespace, kubeconfig, context, timeout)
        try:
            backend = backend_url(s)
        except RagError as e:
            backend = f"(none: {e.message})"
    except RagError as e:
        raise _fail(e) from None
    if as_json:
        out.print_json(data={**asdict(s), "backend_url": backend})
    else:
        _print_status(s, backend)
    if not s.ready:
        err.print(f"[bold red]not ready:[/] {escape(s.not_ready_reason())}", highlight=False)
        raise typer.Exit(EXIT_BACKEND)


def _print_status(s: IsvcStatus, backend: str) -> None:
    state = "[green]Ready[/]" if s.ready else "[red]not ready[/]"
    out.print(f"InferenceService [bold]{s.namespace}/{s.name}[/]: {state}  (mode {escape(s.mode or 'unknown')})")
    rows = [
        ("URL", s.url or "-"),
        ("address", s.address or "-"),
        ("model format", s.model_format or "-"),
        ("model name", s.model_name),
        ("storageUri", s.storage_uri or "-"),
        ("runtime", s.runtime or "-"),
        ("model state", " / ".join(x for x in (s.model_state, s.transition) if x) or "-"),
        ("backend URL", backend),
    ]
    if s.failure:
        rows.insert(7, ("last failure", s.failure))
    for key, value in rows:
        out.print(f"  {key:<13} {escape(value)}", highlight=False)
    table = Table(title="conditions", title_justify="left")
    for col in ("type", "status", "reason", "message"):
        table.add_column(col)
    for c in s.conditions:
        color = "green" if c.status == "True" else "red"
        table.add_row(escape(c.type), f"[{color}]{escape(c.status)}[/]", escape(c.reason), escape(c.message))
    out.print(table)


@kserve_app.command("url")
def url_command(
    name: NameArg,
    namespace: NamespaceOpt = None,
    kubeconfig: KubeconfigOpt = None,
    context: ContextOpt = None,
    timeout: TimeoutOpt = 10.0,
    external: Annotated[
        bool, typer.Option("--external", help="The ingress URL (status.url) instead of the in-cluster address.")
    ] = False,
    prefix: Annotated[str, typer.Option(help="Path of the OpenAI routes (a plain vLLM runtime: /v1).")] = OPENAI_PREFIX,
    model: Annotated[
        str | None, typer.Option(help="Model id (default: the predictor's --model_name, else NAME).")
    ] = None,
    allow_not_ready: Annotated[bool, typer.Option(help="Print the URL even when the service is not ready.")] = False,
) -> None:
    """Print the kserve+http://.../openai/v1?model=x backend URL of an InferenceService, for RAG_CHAT__URL.

    Examples:
      rag kserve url llm -n models

      export RAG_CHAT__URL="$(rag kserve url llm -n models)"
    """
    try:
        s = fetch(name, namespace, kubeconfig, context, timeout)
        if not s.ready and not allow_not_ready:
            raise UpstreamUnavailable(f"InferenceService {s.namespace}/{s.name} is not ready: {s.not_ready_reason()}")
        url = backend_url(s, external=external, prefix=prefix, model=model or "")
    except RagError as e:
        raise _fail(e) from None
    if not s.ready:
        err.print(f"[yellow]warning:[/] not ready: {escape(s.not_ready_reason())}", highlight=False)
    out.print(url, highlight=False, markup=False)
