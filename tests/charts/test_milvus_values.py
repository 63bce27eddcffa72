"""charts/milvus-ha-values.yaml: a highly available Milvus cluster whose components use the object
storage credentials MinIO was given.

The official chart cannot be fetched here, so the values are read as the chart reads them: MinIO's
root keys from `minio.existingSecret` (keys accesskey/secretkey in the milvus-helm MinIO subchart),
Milvus's from its config file unless the environment overrides them (Milvus maps MINIO_ACCESS_KEY_ID
onto minio.accessKeyID and ranks environment variables above the file).
"""

from __future__ import annotations

import pytest
import yaml

from tests.charts.render import ROOT

VALUES = ROOT / "charts" / "milvus-ha-values.yaml"
# Milvus processes of a 2.6 cluster that read or write object storage.
STORAGE_COMPONENTS = ("mixCoordinator", "proxy", "queryNode", "dataNode", "streamingNode")


@pytest.fixture(scope="module")
def values() -> dict:
    return yaml.safe_load(VALUES.read_text())


def test_milvus_values_describe_a_highly_available_cluster(values):
    v = values
    assert v["cluster"]["enabled"] is True
    assert v["mixCoordinator"]["replicas"] == 2 and v["mixCoordinator"]["activeStandby"]["enabled"] is True
    for c in ("proxy", "queryNode", "dataNode", "streamingNode"):
        assert v[c]["replicas"] >= 2, c
    assert v["queryNode"]["replicas"] >= 2  # collections load with replica_number >= 2
    assert v["etcd"]["replicaCount"] == 3
    assert (v["minio"]["enabled"] and v["minio"]["mode"] == "distributed") or v["externalS3"]["enabled"]
    assert v["woodpecker"]["enabled"] is True and v["pulsarv3"]["enabled"] is False


def test_every_milvus_component_reads_the_keys_minio_was_given(values):
    secret = values["minio"]["existingSecret"]
    assert secret, "MinIO's keys come from a Secret"
    for c in STORAGE_COMPONENTS:
        env = {e["name"]: e for e in values[c].get("extraEnv", [])}
        for variable, key in (("MINIO_ACCESS_KEY_ID", "accesskey"), ("MINIO_SECRET_ACCESS_KEY", "secretkey")):
            assert variable in env, f"{c} would use the chart's minio.accessKey/secretKey (minioadmin)"
            assert env[variable]["valueFrom"]["secretKeyRef"] == {"name": secret, "key": key}, c


def test_no_object_storage_key_is_written_into_the_values(values):
    for section in ("minio", "externalS3"):
        for key in ("accessKey", "secretKey"):
            assert key not in values.get(section, {}), f"{section}.{key} would land in Milvus's ConfigMap"


def test_woodpecker_runs_inside_the_streaming_nodes_that_carry_the_keys(values):
    assert values["streaming"]["woodpecker"]["embedded"] is True
