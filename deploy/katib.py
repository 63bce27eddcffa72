"""A Katib Experiment (kubeflow-katib models) that tunes retrieval on an eval set, the eval CLI as the trial.

Each trial is a Job running ``rag eval run --beir /eval/beir --ingest --retrieval -t <setting> --katib``: it
ingests the BEIR corpus into an in-memory store with the trial's chunk size, scores retrieval with the trial's
fusion settings (and the reranker on or off), and prints ``name=value`` lines for Katib's StdOut collector
(``ndcg_at_10=0.71``). The metric cutoff is pinned at k=10 (``RAG_RETRIEVAL__K``), so every trial reports the
same metric names; the final number of sources is therefore not searched here (against a metric at a fixed
cutoff more results never score lower), the number of candidates each retriever hands to fusion is.

Search space, within ``rag.config`` bounds: ``ingest.chunk_size``, ``retrieval.candidates`` (top-k per
retriever), ``retrieval.dense_weight`` and ``lexical_weight`` (weighted RRF), ``retrieval.rrf_k``, and the
reranker on/off. On/off picks between two environment variables through Kubernetes' ``$(VAR)`` expansion,
since a categorical value cannot be empty: ``RAG_RETRIEVAL__RERANK_URL=$(RERANK_URL_on)``.
"""

from __future__ import annotations

from typing import Any

from kubeflow.katib import (
    V1beta1AlgorithmSpec,
    V1beta1CollectorSpec,
    V1beta1Experiment,
    V1beta1ExperimentSpec,
    V1beta1FeasibleSpace,
    V1beta1FilterSpec,
    V1beta1MetricsCollectorSpec,
    V1beta1ObjectiveSpec,
    V1beta1ParameterSpec,
    V1beta1SourceSpec,
    V1beta1TrialParameterSpec,
    V1beta1TrialTemplate,
)
from kubeflow.katib.api_client import ApiClient
from kubernetes import client as k8s

from deploy import commands as c

EXPERIMENT_NAME = "rag-retrieval-tuning"
LABELS = {"app.kubernetes.io/name": "onprem-rag", "app.kubernetes.io/component": "tuning"}
CUTOFF = 10
OBJECTIVE = f"ndcg_at_{CUTOFF}"
ADDITIONAL_METRICS = [f"mrr_at_{CUTOFF}", f"recall_at_{CUTOFF}", f"hit_at_{CUTOFF}", "total_ms_p95"]
# Katib's default StdOut filter, spelled out: NAME=NUMBER, the shape `rag eval ... --katib` prints.
METRICS_FILTER = r"([\w|-]+)\s*=\s*([+-]?\d*(\.\d+)?([Ee][+-]?\d+)?)"
# The reranker a trial with rerank=on uses: a TEI or KServe /rerank endpoint (or st:///path on a volume).
RERANK_URL = "http://reranker.models.svc.cluster.local/rerank"
EVAL_DATA_PVC = "rag-eval-data"
BEIR_DIR = f"{c.EVAL_DATA_MOUNT}/beir"
RUN_DIR = f"{c.TMP_MOUNT}/run"
TRIAL_CONTAINER = "trial"

# (Katib parameter, trial parameter, type, feasible space, what it sets)
SEARCH_SPACE: tuple[tuple[str, str, str, dict[str, Any], str], ...] = (
    ("chunk-size", "chunkSize", "int", {"min": "128", "max": "384", "step": "64"}, "ingest.chunk_size"),
    ("candidates", "candidates", "int", {"min": "10", "max": "100", "step": "10"}, "retrieval.candidates"),
    ("dense-weight", "denseWeight", "double", {"min": "0.25", "max": "2.0"}, "retrieval.dense_weight"),
    ("lexical-weight", "lexicalWeight", "double", {"min": "0.25", "max": "2.0"}, "retrieval.lexical_weight"),
    ("rrf-k", "rrfK", "int", {"min": "1", "max": "60"}, "retrieval.rrf_k"),
    ("rerank", "rerank", "categorical", {"list": ["off", "on"]}, "retrieval.rerank_url"),
)


def _t(name: str) -> str:
    return f"${{trialParameters.{name}}}"


def variant() -> str:
    """The ``--retrieval -t`` setting of a trial, from its parameters."""
    return (
        f"k={CUTOFF},candidates={_t('candidates')},dense_weight={_t('denseWeight')},"
        f"lexical_weight={_t('lexicalWeight')},rrf_k={_t('rrfK')}"
    )


def trial_job(image: str = c.IMAGE) -> k8s.V1Job:
    """The trial: a Job whose one container runs the eval CLI (``$(VAR)`` references need earlier variables)."""
    env = [
        k8s.V1EnvVar(name="RAG_STORE__URL", value="memory://"),
        k8s.V1EnvVar(name="RAG_DATA_DIR", value=f"{c.TMP_MOUNT}/rag"),
        k8s.V1EnvVar(name="RAG_RETRIEVAL__K", value=str(CUTOFF)),
        k8s.V1EnvVar(name="RAG_INGEST__CHUNK_SIZE", value=_t("chunkSize")),
        k8s.V1EnvVar(name="RERANK_URL_off", value=""),
        k8s.V1EnvVar(name="RERANK_URL_on", value=RERANK_URL),
        k8s.V1EnvVar(name="RAG_RETRIEVAL__RERANK_URL", value=f"$(RERANK_URL_{_t('rerank')})"),
    ]
    container = k8s.V1Container(
        name=TRIAL_CONTAINER,
        image=image,
        command=c.katib_trial(BEIR_DIR, variant(), RUN_DIR),
        env=env,
        resources=k8s.V1ResourceRequirements(requests={"cpu": "2", "memory": "4Gi"}, limits={"memory": "8Gi"}),
        security_context=k8s.V1SecurityContext(
            allow_privilege_escalation=False,
            read_only_root_filesystem=True,
            capabilities=k8s.V1Capabilities(drop=["ALL"]),
        ),
        volume_mounts=[
            k8s.V1VolumeMount(name="eval-data", mount_path=c.EVAL_DATA_MOUNT, read_only=True),
            k8s.V1VolumeMount(name="tmp", mount_path=c.TMP_MOUNT),
        ],
    )
    pod = k8s.V1PodSpec(
        restart_policy="Never",
        security_context=k8s.V1PodSecurityContext(**{_snake(k): v for k, v in c.pod_security().items()}),
        containers=[container],
        volumes=[
            k8s.V1Volume(
                name="eval-data",
                persistent_volume_claim=k8s.V1PersistentVolumeClaimVolumeSource(
                    claim_name=EVAL_DATA_PVC, read_only=True
                ),
            ),
            k8s.V1Volume(name="tmp", empty_dir=k8s.V1EmptyDirVolumeSource()),
        ],
    )
    # The trial writes only under /tmp; Katib's wrapper writes its log and pid file on a volume it adds.
    return k8s.V1Job(
        api_version="batch/v1",
        kind="Job",
        spec=k8s.V1JobSpec(backoff_limit=0, template=k8s.V1PodTemplateSpec(spec=pod)),
    )


def _snake(camel: str) -> str:
    return "".join(f"_{ch.lower()}" if ch.isupper() else ch for ch in camel)


def experiment(image: str = c.IMAGE) -> V1beta1Experiment:
    """The ``rag-retrieval-tuning`` Experiment."""
    trial_spec = k8s.ApiClient().sanitize_for_serialization(trial_job(image))
    return V1beta1Experiment(
        api_version="kubeflow.org/v1beta1",
        kind="Experiment",
        metadata=k8s.V1ObjectMeta(name=EXPERIMENT_NAME, labels=LABELS),
        spec=V1beta1ExperimentSpec(
            objective=V1beta1ObjectiveSpec(
                type="maximize", objective_metric_name=OBJECTIVE, additional_metric_names=ADDITIONAL_METRICS
            ),
            algorithm=V1beta1AlgorithmSpec(algorithm_name="tpe"),
            parallel_trial_count=3,
            max_trial_count=24,
            max_failed_trial_count=3,
            metrics_collector_spec=V1beta1MetricsCollectorSpec(
                collector=V1beta1CollectorSpec(kind="StdOut"),
                source=V1beta1SourceSpec(filter=V1beta1FilterSpec(metrics_format=[METRICS_FILTER])),
            ),
            parameters=[
                V1beta1ParameterSpec(name=name, parameter_type=kind, feasible_space=V1beta1FeasibleSpace(**space))
                for name, _, kind, space, _ in SEARCH_SPACE
            ],
            trial_template=V1beta1TrialTemplate(
                primary_container_name=TRIAL_CONTAINER,
                retain=False,
                trial_parameters=[
                    V1beta1TrialParameterSpec(name=trial, reference=name, description=f"sets {what}")
                    for name, trial, _, _, what in SEARCH_SPACE
                ],
                trial_spec=trial_spec,
            ),
        ),
    )


def documents(image: str = c.IMAGE) -> dict[str, dict[str, Any]]:
    """The rendered objects by file name."""
    return {"katib/experiment.yaml": ApiClient().sanitize_for_serialization(experiment(image))}
