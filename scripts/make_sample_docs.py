"""Generate the binary and HTML documents of the sample corpus in examples/docs.

Run from the repository root: ``.venv/bin/python scripts/make_sample_docs.py``.
Needs fpdf2 (dev only) for the PDF and python-docx for the DOCX; the outputs are committed.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "examples" / "docs"
FIXED_TIME = dt.datetime(2025, 3, 3, 9, 0, 0, tzinfo=dt.UTC)

# --- PDF: data retention policy, three pages (core PDF fonts are Latin-1 only, so English) ---

RETENTION_TITLE = "Data Retention Policy"
RETENTION_PAGES = [
    (
        "1. Scope and principles",
        [
            "This policy sets how long the Hanbit AI Research Institute (HARI) keeps research data, "
            "models, logs and personal data, and how they are deleted. It applies to every storage "
            "system run by the MLOps Platform Team: the NAS, node-local scratch disks, the MinIO object "
            "store and the MLflow tracking server.",
            "The Data Governance Officer owns this policy. Questions and requests for exceptions go to "
            "data-governance@hari.re.kr. Exceptions are granted for at most 12 months at a time.",
            "Principles: keep data only as long as it serves research or a legal duty; delete on "
            "schedule, automatically where possible; record every manual deletion in the deletion log.",
        ],
    ),
    (
        "2. Retention periods",
        [
            "Raw research datasets: kept for 5 years after the end of the project that collected them.",
            "Processed and derived datasets: kept for 2 years after their last use.",
            "Training checkpoints: kept for 180 days; only the final checkpoint of a published model is "
            "kept permanently in the model registry.",
            "Experiment tracking data (MLflow runs, metrics and parameters): kept for 2 years.",
            "Kubeflow pipeline artifacts: kept for 30 days.",
            "Node-local scratch files: purged after 30 days without access.",
            "Application and audit logs: application logs 90 days in Loki; audit logs 3 years.",
            "Off-site backups of project directories: kept for 90 days.",
        ],
    ),
    (
        "3. Personal data and deletion",
        [
            "Datasets that contain personal data must be pseudonymised within 30 days of collection. "
            "The key that links pseudonyms to people is stored separately by the Data Governance Officer.",
            "Personal data is deleted 1 year after the end of the project, unless the consent form "
            "states a shorter period.",
            "A deletion request from a data subject must be completed within 14 days. The request is "
            "logged with ticket type DATA-DEL in the service desk.",
            "Deletion is verified by a second person, and the deletion log entry names both people.",
            "Violations of this policy are reported to the Security Team (extension 2119).",
        ],
    ),
]


def make_pdf(path: Path) -> None:
    """The multi-page data retention policy PDF."""
    from fpdf import FPDF

    pdf = FPDF(format="A4")
    pdf.set_creation_date(FIXED_TIME)
    pdf.set_title(RETENTION_TITLE)
    pdf.set_author("HARI Data Governance Office")
    pdf.set_auto_page_break(auto=True, margin=20)
    for heading, paragraphs in RETENTION_PAGES:
        pdf.add_page()
        pdf.set_font("Helvetica", "B", 16)
        pdf.multi_cell(0, 10, f"HARI {RETENTION_TITLE}", new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("Helvetica", "B", 13)
        pdf.multi_cell(0, 9, heading, new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("Helvetica", "", 11)
        for text in paragraphs:
            pdf.multi_cell(0, 6, text, new_x="LMARGIN", new_y="NEXT")
            pdf.ln(3)
    pdf.output(str(path))


# --- DOCX: onboarding checklist, in Korean, with headings and a table ---

ONBOARDING = [
    ("Title", "신규 입사자 온보딩 체크리스트"),
    ("Normal", "한빛 AI 연구소에 오신 것을 환영합니다. 아래 항목을 순서대로 완료하고 멘토에게 확인을 받으세요."),
    ("Heading 1", "입사 첫날"),
    ("List Bullet", "인사팀에서 사번과 SSO 계정을 발급받습니다."),
    ("List Bullet", "정보보안 서약서에 서명하여 인사팀에 제출합니다."),
    ("List Bullet", "업무용 노트북을 IT 지원팀(내선 1300)에서 수령합니다."),
    ("List Bullet", "배정된 멘토와 첫 면담을 진행합니다. 멘토는 입사 첫 3개월 동안 매주 30분씩 면담합니다."),
    ("Heading 1", "첫 주"),
    ("List Bullet", "HARI Authenticator 앱을 설치하고 VPN과 다중 인증(MFA)을 설정합니다."),
    ("List Bullet", "온라인 정보보안 교육(약 40분)을 입사 후 7일 이내에 이수합니다."),
    ("List Bullet", "서비스 데스크에서 GPU 계정을 신청합니다."),
    ("List Bullet", "슬랙 채널 #general, #gpu-help, #mlops-announce에 가입합니다."),
    ("Heading 1", "첫 달"),
    ("List Bullet", "소속 팀의 Kubeflow 네임스페이스(team-<팀이름>)에 기여자로 등록됩니다."),
    ("List Bullet", "GPU 클러스터 사용 정책과 데이터 보존 정책을 읽고 확인란에 서명합니다."),
    ("List Bullet", "첫 달 마지막 금요일에 열리는 신규 입사자 세미나에서 자기소개 발표를 합니다."),
    ("Heading 1", "담당 부서 연락처"),
]
ONBOARDING_TABLE = [
    ("부서", "담당 업무", "연락처"),
    ("인사팀", "계정 발급, 근무 및 휴가", "내선 1200"),
    ("IT 지원팀", "노트북, VPN", "내선 1300"),
    ("정보보안팀", "보안 교육, 보안 사고 신고", "내선 2119"),
    ("MLOps 플랫폼팀", "GPU 계정, JupyterHub, Kubeflow", "#gpu-help"),
]


def make_docx(path: Path) -> None:
    """The Korean onboarding checklist DOCX."""
    import docx

    document = docx.Document()
    props = document.core_properties
    props.title = "신규 입사자 온보딩 체크리스트"
    props.author = "HARI 인사팀"
    props.created = FIXED_TIME.replace(tzinfo=None)
    props.modified = FIXED_TIME.replace(tzinfo=None)
    for style, text in ONBOARDING:
        document.add_paragraph(text, style=style)
    table = document.add_table(rows=0, cols=3)
    for row in ONBOARDING_TABLE:
        cells = table.add_row().cells
        for cell, value in zip(cells, row, strict=True):
            cell.text = value
    document.add_paragraph("궁금한 점은 멘토 또는 인사팀에 언제든지 문의하세요.")
    document.save(str(path))


# --- HTML: KServe model serving guide, with site boilerplate the loader must drop ---

KSERVE_HTML = """<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Model Serving with KServe - HARI Platform Docs</title>
  <style>body { font-family: sans-serif; } nav a { margin-right: 1em; }</style>
  <script>window.analytics = { site: "hari-docs", track: function () {} };</script>
</head>
<body>
  <header><div class="logo">HARI Platform Docs</div><p>Internal documentation portal</p></header>
  <nav>
    <a href="/">Home</a> <a href="/gpu">GPU cluster</a> <a href="/jupyter">JupyterHub</a>
    <a href="/kubeflow">Kubeflow</a> <a href="/kserve">KServe</a> <a href="/storage">Storage</a>
  </nav>
  <main>
    <h1>Model Serving with KServe</h1>
    <p>HARI serves models on the <code>l40s</code> node pool with <strong>KServe</strong> 0.14.
       This page explains how to deploy a model as an InferenceService.</p>

    <h2>Before you start</h2>
    <ul>
      <li>You need a serving namespace named <code>serve-&lt;team&gt;</code>, for example <code>serve-nlp</code>.
          Request it with a SERVE-NS ticket.</li>
      <li>Upload the model to MinIO under <code>s3://&lt;team&gt;-models/</code>.</li>
    </ul>

    <h2>Deploying an LLM</h2>
    <p>Large language models use our vLLM runtime <code>hari-vllm-runtime</code>, which exposes an
       OpenAI-compatible API under <code>/openai/v1</code>.</p>
    <pre>apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata:
  name: qwen-7b
  namespace: serve-nlp
spec:
  predictor:
    minReplicas: 0
    maxReplicas: 4
    model:
      modelFormat: {name: huggingface}
      runtime: hari-vllm-runtime
      storageUri: s3://nlp-models/qwen-7b/
      resources:
        limits: {nvidia.com/gpu: "1"}</pre>
    <p>Inside the cluster the endpoint is
       <code>http://qwen-7b.serve-nlp.svc.cluster.local/openai/v1</code>.</p>

    <h2>Scaling</h2>
    <p>Predictors scale to zero after 10 minutes without requests; the first request after that
       waits for a cold start of about 90 seconds for a 7B model. The default limit is
       <strong>4 replicas</strong> per InferenceService; ask in <code>#kserve-help</code> to raise it.</p>

    <h2>Canary rollouts</h2>
    <p>To test a new model version, set <code>canaryTrafficPercent: 10</code> on the predictor.
       Promote the canary by removing the field once the error rate stays below 1% for 24 hours.</p>

    <h2>Resource limits</h2>
    <table>
      <tr><th>Model size</th><th>GPUs</th><th>Memory limit</th></tr>
      <tr><td>up to 8B parameters</td><td>1 × L40S</td><td>64 GiB</td></tr>
      <tr><td>8B to 34B parameters</td><td>2 × L40S</td><td>128 GiB</td></tr>
      <tr><td>above 34B parameters</td><td>A100 pool, by approval</td><td>256 GiB</td></tr>
    </table>
  </main>
  <aside><h3>Related pages</h3><a href="/kubeflow">Kubeflow Pipelines Guide</a></aside>
  <footer><p>© 2025 Hanbit AI Research Institute · Platform docs · Contact: mlops@hari.re.kr</p></footer>
  <script>analytics.track("pageview");</script>
</body>
</html>
"""


def make_html(path: Path) -> None:
    """The KServe guide HTML page."""
    path.write_text(KSERVE_HTML, encoding="utf-8")


def main() -> None:
    """Write all generated sample documents."""
    OUT.mkdir(parents=True, exist_ok=True)
    make_pdf(OUT / "data-retention-policy.pdf")
    make_docx(OUT / "onboarding-checklist-ko.docx")
    make_html(OUT / "kserve-serving-guide.html")


if __name__ == "__main__":
    main()
