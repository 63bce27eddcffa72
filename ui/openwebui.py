"""Open WebUI wired to this service: the environment it needs, and a launcher for a local instance.

Open WebUI lives in its own virtualenv (``scripts/install_openwebui.sh`` makes ``.venv-openwebui``)
because its pinned libraries conflict with ours; it talks to the service over HTTP only, through
``/v1/models`` and ``/v1/chat/completions``. Our streamed answers carry Open WebUI's ``source``
events, which it shows as source cards with inline citation chips.

Run one against a service on port 8000::

    python -m ui.openwebui --rag-url http://127.0.0.1:8000/v1 --port 8080

The environment below starts it offline (no model downloads, no telemetry, no update check), with
the environment authoritative over its stored settings, and without the title/tag/follow-up
requests it would otherwise send to our model after every answer. Its state (database, and the
secret that signs its log-in sessions) stays in its data directory, so a restart keeps everyone
logged in; the service's ``rag`` model is shown to every user, not only to administrators.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
DEFAULT_VENV = REPO / ".venv-openwebui"
# Open WebUI's own variables that share our RAG_ prefix; our service must never see them.
OPENWEBUI_RAG_VARS = ("RAG_EMBEDDING_ENGINE",)
# In the data directory: the secret that signs Open WebUI's session tokens (a new one logs everyone out).
SECRET_FILE = "webui-secret-key"


def session_secret(data_dir: Path) -> str:
    """The data directory's ``WEBUI_SECRET_KEY``, made (owner-readable only) on first use."""
    path = data_dir / SECRET_FILE
    if path.is_file():
        secret = path.read_text(encoding="utf-8").strip()
        if secret:
            return secret
    data_dir.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(secret + "\n")
    return secret


def openwebui_env(
    rag_base_url: str,
    data_dir: Path,
    *,
    api_key: str = "x",
    auth: bool = False,
    base: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The environment for an Open WebUI process that uses this service at ``rag_base_url`` (``.../v1``).

    Args:
        rag_base_url: the service's OpenAI base URL, ending in ``/v1``.
        data_dir: Open WebUI's state (its SQLite database, uploads); use a fresh one per instance.
        api_key: sent as the bearer token to the service.
        auth: False = single-user mode without login (Open WebUI's ``WEBUI_AUTH=false``).
        base: the environment to start from (default: this process's, minus our ``RAG_*`` settings).
    """
    env = {k: v for k, v in (os.environ if base is None else base).items() if not k.startswith("RAG_")}
    env.update(
        {
            "DATA_DIR": str(data_dir),
            "OPENAI_API_BASE_URL": rag_base_url.rstrip("/"),
            "OPENAI_API_KEY": api_key,
            "ENABLE_OPENAI_API": "true",
            "ENABLE_OLLAMA_API": "false",
            # The environment, not the settings stored in its database at first start, decides.
            "ENABLE_PERSISTENT_CONFIG": "false",
            "WEBUI_AUTH": "true" if auth else "false",
            # Stable across restarts: sessions signed with it stay valid.
            "WEBUI_SECRET_KEY": env.get("WEBUI_SECRET_KEY") or session_secret(data_dir),
            # Open WebUI 0.12 shows a model without an access grant to administrators only; the service
            # decides what each caller may read, so every signed-in user sees the 'rag' model.
            "BYPASS_MODEL_ACCESS_CONTROL": "true",
            # Offline: no model downloads (its document embedder would be a sentence-transformers model).
            "OFFLINE_MODE": "true",
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "RAG_EMBEDDING_ENGINE": "openai",
            # Side requests to our model after every answer: each would cost a retrieval and a generation.
            "ENABLE_TITLE_GENERATION": "false",
            "ENABLE_TAGS_GENERATION": "false",
            "ENABLE_FOLLOW_UP_GENERATION": "false",
            "ENABLE_AUTOCOMPLETE_GENERATION": "false",
            "ENABLE_SEARCH_QUERY_GENERATION": "false",
            "ENABLE_RETRIEVAL_QUERY_GENERATION": "false",
            # No telemetry, no update check.
            "ANONYMIZED_TELEMETRY": "False",
            "SCARF_NO_ANALYTICS": "true",
            "DO_NOT_TRACK": "true",
            "ENABLE_VERSION_UPDATE_CHECK": "false",
        }
    )
    return env


def openwebui_executable(venv: Path = DEFAULT_VENV) -> Path:
    """The ``open-webui`` command in its virtualenv; raises FileNotFoundError naming the installer."""
    exe = venv / "bin" / "open-webui"
    if not exe.is_file():
        raise FileNotFoundError(f"{exe} is missing: run scripts/install_openwebui.sh")
    return exe


def start(
    rag_base_url: str,
    port: int,
    data_dir: Path,
    *,
    log_path: Path | None = None,
    venv: Path = DEFAULT_VENV,
    auth: bool = False,
    api_key: str = "x",
) -> subprocess.Popen[bytes]:
    """Start ``open-webui serve`` on 127.0.0.1:``port`` (not waiting for it; see :func:`wait_healthy`)."""
    # Absolute: the process runs inside data_dir, where a relative DATA_DIR would point one level deeper.
    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    env = openwebui_env(rag_base_url, data_dir, auth=auth, api_key=api_key)
    cmd = [str(openwebui_executable(venv)), "serve", "--host", "127.0.0.1", "--port", str(port)]
    out = (log_path or data_dir / "open-webui.log").open("wb")
    try:
        # cwd = data_dir: the CLI writes a .webui_secret_key into its working directory when none is set.
        return subprocess.Popen(cmd, env=env, cwd=data_dir, stdout=out, stderr=subprocess.STDOUT)
    finally:
        out.close()  # the child holds its own descriptor


def wait_healthy(url: str, process: subprocess.Popen[bytes], timeout_s: float = 300.0) -> float:
    """Wait until ``url``/health answers 200; returns the seconds waited. Raises RuntimeError on exit or timeout."""
    started = time.monotonic()
    with httpx.Client(timeout=5) as client:
        while time.monotonic() - started < timeout_s:
            if process.poll() is not None:
                raise RuntimeError(f"open-webui exited with {process.returncode}")
            try:
                if client.get(f"{url}/health").status_code == 200:
                    return time.monotonic() - started
            except httpx.TransportError:
                pass
            time.sleep(0.5)
    raise RuntimeError(f"open-webui was not healthy within {timeout_s:.0f}s")


def main(argv: list[str] | None = None) -> int:
    """Run Open WebUI against a running service until interrupted."""
    parser = argparse.ArgumentParser(prog="python -m ui.openwebui", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rag-url", default="http://127.0.0.1:8000/v1", help="the service's OpenAI base URL")
    parser.add_argument("--port", type=int, default=8080, help="Open WebUI's port on 127.0.0.1")
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path(os.environ.get("RAG_DATA_DIR") or ".rag") / "open-webui",
        help="Open WebUI's state: users, chats, the session secret (default: $RAG_DATA_DIR/open-webui, "
        "i.e. .rag/open-webui)",
    )
    parser.add_argument(
        "--temporary", action="store_true", help="use a fresh temporary data directory, removed at exit"
    )
    parser.add_argument("--venv", type=Path, default=DEFAULT_VENV, help="Open WebUI's virtualenv")
    parser.add_argument("--auth", action="store_true", help="require login (default: single-user, no login)")
    parser.add_argument(
        "--api-key",
        default=os.environ.get("OPENAI_API_KEY") or "x",
        help="bearer token sent to the service; with an access file it must be one of its keys "
        "(default: $OPENAI_API_KEY, else 'x', which only a service without an access file accepts)",
    )
    args = parser.parse_args(argv)
    data_dir = Path(tempfile.mkdtemp(prefix="open-webui-")) if args.temporary else args.data_dir
    try:
        process = start(args.rag_url, args.port, data_dir, venv=args.venv, auth=args.auth, api_key=args.api_key)
    except FileNotFoundError as e:
        print(e, file=sys.stderr)
        return 1
    url = f"http://127.0.0.1:{args.port}"
    # SIGTERM too runs the clean-up below, so Open WebUI never outlives its launcher.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        waited = wait_healthy(url, process)
        print(f"Open WebUI on {url} (healthy after {waited:.0f}s), using {args.rag_url}; log: {data_dir}")
        return process.wait()
    except RuntimeError as e:
        print(f"{e}; log: {data_dir / 'open-webui.log'}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
        if args.temporary:
            shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
