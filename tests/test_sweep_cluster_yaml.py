"""cluster.yaml passes Ray's own cluster-config validation, offline."""

from __future__ import annotations

import copy
from pathlib import Path

import jsonschema
import pytest
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

CLUSTER_YAML = Path(__file__).resolve().parent.parent / "cluster.yaml"


@pytest.fixture(scope="module")
def raw_config() -> dict:
    return yaml.safe_load(CLUSTER_YAML.read_text())


def validated(config: dict) -> dict:
    """What `ray up` checks before it touches the cloud: defaults merged, then the schema."""
    prepared = prepare_config(copy.deepcopy(config))
    validate_config(prepared)
    return prepared


def test_cluster_yaml_is_a_valid_ray_cluster_config(raw_config):
    config = validated(raw_config)
    nodes = config["available_node_types"]
    head = nodes[config["head_node_type"]]
    assert config["provider"]["type"] == "aws"
    assert head["resources"] == {"CPU": 0}  # trials stay off the driver's node
    gpu_workers = [n for name, n in nodes.items() if n["node_config"]["InstanceType"].startswith("g")]
    assert gpu_workers and all(n["min_workers"] >= 1 and n["max_workers"] > n["min_workers"]
                               for n in gpu_workers)
    assert any("pip install" in c and "/home/ray/mad-sweep" in c for c in config["setup_commands"])
    # the MLflow server's PostgreSQL driver, so that switching its backend needs no install
    assert any("/home/ray/mad-sweep[postgres]" in c for c in config["head_setup_commands"])
    server = " ".join(config["head_start_ray_commands"])
    assert "mlflow server" in server and "--host 127.0.0.1 --port 5000" in server
    assert config["file_mounts"] == {"/home/ray/mad-sweep": "."}


def test_validation_rejects_a_broken_config(raw_config):
    broken = copy.deepcopy(raw_config)
    broken["available_node_types"]["gpu_t4"]["min_wrokers"] = 1
    with pytest.raises(jsonschema.ValidationError, match="min_wrokers"):
        validated(broken)
