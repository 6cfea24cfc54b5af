"""The launch recipes in clusters/, each checked by its own tool's parser or schema, offline.

- `clusters/skypilot.yaml`: SkyPilot's own `sky.Task.from_yaml` (its schema, its resource parser);
- `clusters/aws.yaml`: Ray's cluster launcher, `prepare_config` then `validate_config` (ray-schema.json),
  as `ray up` does before it calls AWS;
- `clusters/kuberay.yaml`: the RayCluster and RayJob documents against KubeRay's own CRD schemas
  (openAPIV3Schema of ray.io/v1, from ray-project/kuberay's `ray-operator/config/crd/bases/`, see
  tests/fixtures/kuberay/README.md), with unknown fields refused as `kubectl apply --validate=strict`
  refuses them.
A deliberately broken copy of each must fail the same validation. No cloud credential is used.
"""

from __future__ import annotations

import copy
import json
import lzma
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CLUSTERS = ROOT / "clusters"
KUBERAY = ROOT / "tests" / "fixtures" / "kuberay"


def test_every_recipe_is_covered_here() -> None:
    assert sorted(p.name for p in CLUSTERS.iterdir()) == ["aws.yaml", "kuberay.yaml", "skypilot.yaml"]


# ---------------------------------------------------------------- SkyPilot


_SKY_PARSE = """
import json, sys
import sky
out = []
for text in json.load(sys.stdin):
    try:
        task = sky.Task.from_yaml_str(text)
    except ValueError as exc:  # SkyPilot's InvalidSkyPilotConfigError is one
        out.append({"error": f"{type(exc).__name__}: {exc}"})
        continue
    [res] = list(task.resources)
    out.append({"num_nodes": task.num_nodes, "accelerators": res.accelerators,
                "ports": [str(p) for p in res.ports or []], "envs": dict(task.envs),
                "setup": task.setup, "run": task.run})
print(json.dumps(out))
"""


def _sky_parse(*texts: str) -> list[dict[str, Any]]:
    """SkyPilot's own parse of each task text, in a process of its own (importing SkyPilot changes how
    this process reports import errors, which other tests check)."""
    import subprocess
    import sys

    pytest.importorskip("sky", reason="SkyPilot is a test extra (scripts/setup.sh installs it)")
    proc = subprocess.run([sys.executable, "-c", _SKY_PARSE], input=json.dumps(list(texts)), capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


BREAKAGES = [
    ("accelerators: H100:8", "accelerator: H100:8"),   # a misspelt field
    ("num_nodes: 2 ", "num_nodes: two "),              # a count that is not one
    ("accelerators: H100:8", "accelerators: H100:x"),  # a GPU count that is not one
]


@pytest.mark.slow
def test_skypilot_task_parses_with_skypilots_own_parser_and_broken_copies_fail() -> None:
    text = (CLUSTERS / "skypilot.yaml").read_text()
    assert all(old in text for old, _ in BREAKAGES)
    task, *broken = _sky_parse(text, *(text.replace(old, new, 1) for old, new in BREAKAGES))
    assert "error" not in task, task
    assert task["num_nodes"] == 2 and task["accelerators"] == {"H100": 8} and "8265" in task["ports"]
    assert task["envs"]["SPACE"] == "spaces/tokenizer_width_depth.py" and (ROOT / task["envs"]["SPACE"]).is_file()
    assert "scripts/setup.sh" in task["setup"] and "search.run" in task["run"] and "--address auto" in task["run"]
    for (old, new), result in zip(BREAKAGES, broken):
        assert "error" in result, f"{new!r} for {old!r} passed SkyPilot's parser"


# ---------------------------------------------------------------- Ray cluster launcher


def _ray_validate(config: dict[str, Any]) -> dict[str, Any]:
    from ray.autoscaler._private.util import prepare_config, validate_config

    prepared = prepare_config(copy.deepcopy(config))
    validate_config(prepared)
    return prepared


def test_ray_cluster_launcher_config_validates_as_ray_up_does() -> None:
    config = yaml.safe_load((CLUSTERS / "aws.yaml").read_text())
    prepared = _ray_validate(config)
    assert prepared["provider"]["type"] == "aws"
    types = prepared["available_node_types"]
    assert {t["node_config"]["InstanceType"] for t in types.values()} == {"p5.48xlarge"}
    assert any("scripts/setup.sh" in c for c in prepared["setup_commands"])


@pytest.mark.parametrize("edit", ["misspelt field", "wrong type"])
def test_a_broken_ray_cluster_config_fails_validation(edit: str) -> None:
    config = yaml.safe_load((CLUSTERS / "aws.yaml").read_text())
    if edit == "misspelt field":
        config["available_node_types"]["gpu_worker"]["max_worker"] = config["available_node_types"]["gpu_worker"].pop(
            "max_workers")
    else:
        config["max_workers"] = "one"
    import jsonschema

    with pytest.raises(jsonschema.ValidationError):
        _ray_validate(config)


# ---------------------------------------------------------------- KubeRay


def _strict(schema: Any) -> Any:
    """The CRD schema with unknown fields refused wherever it lists the fields (what the API server's
    strict field validation does; Kubernetes would otherwise drop them silently)."""
    if isinstance(schema, dict):
        out = {k: _strict(v) for k, v in schema.items()}
        if "properties" in schema and "additionalProperties" not in schema \
                and not schema.get("x-kubernetes-preserve-unknown-fields"):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [_strict(v) for v in schema]
    return schema


def _schemas() -> dict[tuple[str, str], dict[str, Any]]:
    schemas = {}
    for path in KUBERAY.glob("*.schema.json.xz"):
        data = json.loads(lzma.decompress(path.read_bytes()))
        schemas[(data["apiVersion"], data["kind"])] = _strict(data["openAPIV3Schema"])
    return schemas


def _kube_validate(documents: list[dict[str, Any]]) -> int:
    """Validate every ray.io document; returns how many were checked."""
    import jsonschema

    schemas, checked = _schemas(), 0
    for doc in documents:
        if str(doc.get("apiVersion", "")).startswith("ray.io/"):
            schema = schemas[(doc["apiVersion"], doc["kind"])]
            jsonschema.validate(doc, schema, cls=jsonschema.Draft7Validator)
            checked += 1
    return checked


def _kube_docs() -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((CLUSTERS / "kuberay.yaml").read_text()) if d]


def test_kuberay_manifests_validate_against_kuberays_crd_schemas() -> None:
    docs = _kube_docs()
    assert {d["kind"] for d in docs} == {"RayCluster", "RayJob", "PersistentVolumeClaim"}
    assert _kube_validate(docs) == 2
    cluster = next(d for d in docs if d["kind"] == "RayCluster")
    job = next(d for d in docs if d["kind"] == "RayJob")
    assert job["spec"]["clusterSelector"]["ray.io/cluster"] == cluster["metadata"]["name"]
    head = cluster["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]
    assert head["resources"]["limits"]["nvidia.com/gpu"] == 8
    # the job's command is one search.run understands, with a space file that exists
    from search.engine.cli import parse_args

    words = shlex.split(shlex.split(job["spec"]["entrypoint"])[2])
    opts = parse_args(words[words.index("search.run") + 1:])
    assert opts.address == "auto" and (ROOT / opts.space).is_file()


@pytest.mark.parametrize("edit", ["misspelt field", "number for a string"])
def test_a_broken_kuberay_manifest_fails_validation(edit: str) -> None:
    docs = _kube_docs()
    cluster = next(d for d in docs if d["kind"] == "RayCluster")
    if edit == "misspelt field":
        cluster["spec"]["workerGroupSpec"] = cluster["spec"].pop("workerGroupSpecs")
    else:
        cluster["spec"]["headGroupSpec"]["rayStartParams"]["num-cpus"] = 8  # rayStartParams are strings
    import jsonschema

    with pytest.raises(jsonschema.ValidationError):
        _kube_validate(docs)
