"""Protocol-faithful fake of the Kubernetes API server for KServe tests; not a Kubernetes API server.

A real HTTPS server (uvicorn, loopback, free port, a self-signed certificate made per instance) that
answers ``GET /apis/serving.kserve.io/v1beta1/namespaces/{ns}/inferenceservices[/{name}]`` with
InferenceService objects in the API's JSON shape, checks ``Authorization: Bearer <token>``, and fails
the way the API server does: a ``Status`` object (``kind: Status``, ``reason: NotFound`` with
``details``, ``Unauthorized``, ``Forbidden``) and ``404 page not found`` as plain text for an API group
it does not serve. :meth:`FakeKubeAPI.write_kubeconfig` writes a kubeconfig that reaches it.

The objects come from :func:`knative_isvc` and :func:`standard_isvc`, modelled on what the KServe
controller writes (conditions, ``status.address``, ``status.url``, ``components.predictor``,
``modelStatus``); tests/deploy checks them against the InferenceService CRD's schema.
"""

from __future__ import annotations

import copy
import datetime
import ipaddress
import socket
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Self

import uvicorn
import yaml
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse

GROUP, VERSION, PLURAL = "serving.kserve.io", "v1beta1", "inferenceservices"
_T0 = "2026-11-02T08:14:31Z"
_T1 = "2026-11-02T08:19:02Z"


def status_object(code: int, reason: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    """A ``meta/v1`` Status, the API server's error body."""
    body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    if details is not None:
        body["details"] = details
    return body


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 that is its own CA (the kubeconfig trusts exactly it), and its key."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fake-kube-apiserver")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "apiserver.crt", directory / "apiserver.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


class FakeKubeAPI:
    """Fake Kubernetes API serving InferenceServices; ``with FakeKubeAPI() as api: api.put(obj)``."""

    def __init__(self, token: str = "fake-token") -> None:
        self.token = token
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}
        self.forbidden_namespaces: set[str] = set()
        self.serves_kserve = True
        self.requests: list[dict[str, Any]] = []
        self._tmp = tempfile.TemporaryDirectory(prefix="fake-kube-")
        self.ca_path, key_path = self_signed(Path(self._tmp.name))
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind(("127.0.0.1", 0))
        self.port: int = self._sock.getsockname()[1]
        config = uvicorn.Config(
            self._app(),
            log_level="warning",
            lifespan="off",
            access_log=False,
            ssl_certfile=str(self.ca_path),
            ssl_keyfile=str(key_path),
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True)

    @property
    def url(self) -> str:
        """``https://127.0.0.1:<port>``, the cluster's ``server``."""
        return f"https://127.0.0.1:{self.port}"

    def put(self, obj: dict[str, Any]) -> None:
        """Store (or replace) an InferenceService object under its metadata namespace and name."""
        meta = obj["metadata"]
        self.objects[(meta["namespace"], meta["name"])] = copy.deepcopy(obj)

    def write_kubeconfig(self, path: Path, *, namespace: str | None = None, token: str | None = None) -> Path:
        """A kubeconfig with one cluster (this server, its CA inline), one token user, one current context."""
        import base64

        context: dict[str, Any] = {"cluster": "fake", "user": "rag"}
        if namespace:
            context["namespace"] = namespace
        doc = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "fake",
                    "cluster": {
                        "server": self.url,
                        "certificate-authority-data": base64.b64encode(self.ca_path.read_bytes()).decode(),
                    },
                }
            ],
            "users": [{"name": "rag", "user": {"token": token or self.token}}],
            "contexts": [{"name": "fake", "context": context}],
            "current-context": "fake",
            "preferences": {},
        }
        path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
        return path

    def _app(self) -> FastAPI:
        app = FastAPI()

        @app.middleware("http")
        async def record(request: Request, call_next: Any) -> Any:
            self.requests.append(
                {"method": request.method, "path": request.url.path, "auth": request.headers.get("authorization")}
            )
            if request.headers.get("authorization") != f"Bearer {self.token}":
                return JSONResponse(status_object(401, "Unauthorized", "Unauthorized"), status_code=401)
            return await call_next(request)

        def forbidden(ns: str, verb: str, name: str | None) -> JSONResponse:
            what = f'{PLURAL}.{GROUP} "{name}"' if name else f"{PLURAL}.{GROUP}"
            message = (
                f'{what} is forbidden: User "system:serviceaccount:rag:onprem-rag" cannot {verb} resource '
                f'"{PLURAL}" in API group "{GROUP}" in the namespace "{ns}"'
            )
            details: dict[str, Any] = {"group": GROUP, "kind": PLURAL}
            if name:
                details["name"] = name
            return JSONResponse(status_object(403, "Forbidden", message, details), status_code=403)

        def not_served() -> PlainTextResponse:
            return PlainTextResponse("404 page not found\n", status_code=404)

        @app.get(f"/apis/{GROUP}/{VERSION}/namespaces/{{ns}}/{PLURAL}/{{name}}")
        async def get_one(ns: str, name: str) -> Any:
            if not self.serves_kserve:
                return not_served()
            if ns in self.forbidden_namespaces:
                return forbidden(ns, "get", name)
            obj = self.objects.get((ns, name))
            if obj is None:
                message = f'{PLURAL}.{GROUP} "{name}" not found'
                details = {"name": name, "group": GROUP, "kind": PLURAL}
                return JSONResponse(status_object(404, "NotFound", message, details), status_code=404)
            return JSONResponse(obj)

        @app.get(f"/apis/{GROUP}/{VERSION}/namespaces/{{ns}}/{PLURAL}")
        async def list_all(ns: str) -> Any:
            if not self.serves_kserve:
                return not_served()
            if ns in self.forbidden_namespaces:
                return forbidden(ns, "list", None)
            items = [o for (n, _), o in sorted(self.objects.items()) if n == ns]
            return JSONResponse(
                {
                    "apiVersion": f"{GROUP}/{VERSION}",
                    "kind": "InferenceServiceList",
                    "metadata": {"resourceVersion": "4818900"},
                    "items": items,
                }
            )

        @app.api_route("/{path:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
        async def anything_else(path: str) -> Any:
            return not_served()

        return app

    def start(self) -> Self:
        """Start serving and wait until the socket accepts TLS connections."""
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("fake Kubernetes API did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        """Stop serving and remove the certificate."""
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._sock.close()
        self._tmp.cleanup()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _meta(name: str, namespace: str, annotations: dict[str, str]) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "creationTimestamp": _T0,
        "finalizers": ["inferenceservice.finalizers"],
        "generation": 1,
        "name": name,
        "namespace": namespace,
        "resourceVersion": "4818811",
        "uid": str(uuid.uuid5(uuid.NAMESPACE_URL, f"isvc/{namespace}/{name}")),
    }
    if annotations:
        meta["annotations"] = annotations
    return meta


def _spec(model_name: str | None, storage_uri: str) -> dict[str, Any]:
    model: dict[str, Any] = {"modelFormat": {"name": "huggingface"}, "storageUri": storage_uri}
    if model_name:
        model["args"] = [f"--model_name={model_name}", "--max-model-len=8192"]
    model["resources"] = {
        "limits": {"cpu": "6", "memory": "24Gi", "nvidia.com/gpu": "1"},
        "requests": {"cpu": "6", "memory": "24Gi", "nvidia.com/gpu": "1"},
    }
    return {"predictor": {"minReplicas": 1, "model": model}}


def _condition(type_: str, status: str, reason: str = "", message: str = "", info: bool = False) -> dict[str, Any]:
    c: dict[str, Any] = {"lastTransitionTime": _T1, "status": status, "type": type_}
    if info:
        c["severity"] = "Info"
    if reason:
        c["reason"] = reason
    if message:
        c["message"] = message
    return c


def _model_status(ready: bool, failed: bool = False) -> dict[str, Any]:
    if failed:
        return {
            "copies": {"failedCopies": 1, "totalCopies": 1},
            "lastFailureInfo": {
                "exitCode": 1,
                "location": "llm-predictor-7d9c6b5f4-x2x8q",
                "message": "CUDA out of memory. Tried to allocate 2.00 GiB",
                "reason": "ModelLoadFailed",
                "time": _T1,
            },
            "states": {"activeModelState": "FailedToLoad", "targetModelState": "Loaded"},
            "transitionStatus": "BlockedByFailedLoad",
        }
    if ready:
        return {
            "copies": {"failedCopies": 0, "totalCopies": 1},
            "states": {"activeModelState": "Loaded", "targetModelState": "Loaded"},
            "transitionStatus": "UpToDate",
        }
    return {
        "copies": {"failedCopies": 0},
        "states": {"activeModelState": "Pending", "targetModelState": "Pending"},
        "transitionStatus": "InProgress",
    }


def knative_isvc(
    name: str = "llm",
    namespace: str = "models",
    *,
    ready: bool = True,
    model_name: str | None = "qwen",
    storage_uri: str = "hf://Qwen/Qwen2.5-7B-Instruct",
    domain: str = "example.com",
    mode: str = "Serverless",
) -> dict[str, Any]:
    """A Knative-mode ("Serverless") InferenceService as the controller reports it; ready, or waiting for a GPU."""
    revision = f"{name}-predictor-00001"
    predictor: dict[str, Any] = {"latestCreatedRevision": revision}
    if ready:
        predictor |= {
            "address": {"url": f"http://{name}-predictor.{namespace}.svc.cluster.local"},
            "latestReadyRevision": revision,
            "latestRolledoutRevision": revision,
            "traffic": [{"latestRevision": True, "percent": 100, "revisionName": revision}],
            "url": f"http://{name}-predictor.{namespace}.{domain}",
        }
        conditions = [
            _condition("IngressReady", "True"),
            _condition("LatestDeploymentReady", "True", info=True),
            _condition("PredictorConfigurationReady", "True", info=True),
            _condition("PredictorReady", "True"),
            _condition("PredictorRouteReady", "True", info=True),
            _condition("Ready", "True"),
            _condition("RoutesReady", "True", info=True),
        ]
    else:
        waiting = f'Configuration "{name}-predictor" is waiting for a Revision to become ready.'
        unschedulable = "0/3 nodes are available: 3 Insufficient nvidia.com/gpu."
        conditions = [
            _condition("LatestDeploymentReady", "Unknown", "Unschedulable", unschedulable, info=True),
            _condition("PredictorConfigurationReady", "Unknown", "Unschedulable", unschedulable, info=True),
            _condition("PredictorReady", "False", "RevisionMissing", waiting),
            _condition("PredictorRouteReady", "False", "RevisionMissing", waiting, info=True),
            _condition("Ready", "False", "RevisionMissing", waiting),
            _condition("RoutesReady", "False", "RevisionMissing", waiting, info=True),
        ]
    status: dict[str, Any] = {
        "components": {"predictor": predictor},
        "conditions": conditions,
        "deploymentMode": mode,
        "modelStatus": _model_status(ready),
        "observedGeneration": 1,
    }
    if ready:
        status["address"] = {"url": f"http://{name}.{namespace}.svc.cluster.local"}
        status["url"] = f"http://{name}.{namespace}.{domain}"
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "InferenceService",
        "metadata": _meta(name, namespace, {"serving.kserve.io/deploymentMode": mode}),
        "spec": _spec(model_name, storage_uri),
        "status": status,
    }


def standard_isvc(
    name: str = "llm",
    namespace: str = "models",
    *,
    ready: bool = True,
    failed: bool = False,
    model_name: str | None = "qwen",
    storage_uri: str = "pvc://models/qwen2.5-7b-instruct",
    domain: str = "example.com",
    mode: str = "RawDeployment",
    annotate: bool = True,
) -> dict[str, Any]:
    """A Standard-mode ("RawDeployment") InferenceService: a Deployment and a Service ``<name>-predictor``.

    Its ``status.url`` is the ingress host from the domain template (``<name>-<namespace>.<domain>``), its
    ``status.address`` the predictor Service. ``failed``: the model could not load.
    """
    if ready and not failed:
        conditions = [
            _condition("IngressReady", "True"),
            _condition("PredictorReady", "True"),
            _condition("Ready", "True"),
        ]
    else:
        reason, message = (
            ("ModelLoadFailed", "CUDA out of memory. Tried to allocate 2.00 GiB")
            if failed
            else ("MinimumReplicasUnavailable", "Deployment does not have minimum availability.")
        )
        conditions = [
            _condition("IngressReady", "False", "Predictor ingress not created"),
            _condition("PredictorReady", "False", reason, message),
            _condition("Ready", "False", reason, message),
        ]
    status: dict[str, Any] = {
        "address": {"url": f"http://{name}-predictor.{namespace}.svc.cluster.local"},
        "components": {
            "predictor": {
                "latestCreatedRevision": f"{name}-predictor-00001",
                "url": f"http://{name}-predictor-{namespace}.{domain}",
            }
        },
        "conditions": conditions,
        "deploymentMode": mode,
        "modelStatus": _model_status(ready and not failed, failed),
        "observedGeneration": 1,
        "url": f"http://{name}-{namespace}.{domain}",
    }
    annotations = {"serving.kserve.io/deploymentMode": mode} if annotate else {}
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "InferenceService",
        "metadata": _meta(name, namespace, annotations),
        "spec": _spec(model_name, storage_uri),
        "status": status,
    }


def fresh_isvc(name: str = "llm", namespace: str = "models") -> dict[str, Any]:
    """An InferenceService the controller has not reconciled yet: no status at all."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "InferenceService",
        "metadata": _meta(name, namespace, {}),
        "spec": _spec(None, "hf://Qwen/Qwen2.5-7B-Instruct"),
    }
