"""The offline CLI as GitOps users commit its output: YAML comes back as it was written, plus exactly what
the engine adds; envelopes, empty input and the report say what they mean."""

from __future__ import annotations

import difflib
import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml

from app.engine import EngineConfig, mutate, release_of
from tests.support import CHART_RENDERS, GOLDEN, REPO, cli_mutate

RENDERS = sorted(CHART_RENDERS.glob("*.yaml"))
# lines the engine may add besides the step's own block
ADDED_KEYS = (
    "annotations:",
    "initContainers:",
    "airflow-migration-webhook/status:",
    "argocd.argoproj.io/sync-options:",
)


@pytest.mark.parametrize("render", RENDERS, ids=lambda p: p.stem)
def test_a_render_comes_back_with_additions_only(render: Path) -> None:
    text = render.read_text()
    code, out, _ = cli_mutate(text)
    assert code == 0
    before, after = text.splitlines(), out.splitlines()
    opcodes = difflib.SequenceMatcher(None, before, after, autojunk=False).get_opcodes()
    blocks = [after[j1:j2] for tag, _, _, j1, j2 in opcodes if tag != "equal"]
    assert all(tag in ("equal", "insert") for tag, *_ in opcodes), (
        "a line of the input was changed or removed"
    )
    for block in blocks:
        first = block[0].strip()
        if first == "- name: airflow-db-migrate":  # the step, one list item
            indent = len(block[0]) - len(block[0].lstrip())
            assert all(len(line) - len(line.lstrip()) > indent or not line.strip() for line in block[1:])
        else:
            assert all(line.strip().startswith(ADDED_KEYS) for line in block), block
    # and what was added is exactly what the engine adds, judging the stream as one release
    docs = [d for d in yaml.safe_load_all(text) if d]
    release = release_of(docs)
    expected = [mutate(d, "CREATE", EngineConfig(), release).object for d in docs]
    assert [d for d in yaml.safe_load_all(out) if d] == expected
    # a render that migrates without a hook comes back unchanged; every other one gains something
    assert bool(blocks) == (expected != docs)


def test_an_untouched_stream_comes_back_byte_for_byte() -> None:
    text = (
        "# a comment before anything\n"
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: 'quoted', namespace: \"x\"}\n"
        "data:\n  key: |\n    --- not a separator\n  other: yes   # a YAML 1.1 boolean, kept as written\n"
        "--- # a separator with a comment\n"
        "# Source: chart/templates/service.yaml\n"
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: svc\nspec:\n  ports: [{port: 80}]\n"
        "---\n"
        "...\n"
    )
    code, out, err = cli_mutate(text)
    assert code == 0, err
    assert out == text


def test_a_changed_document_keeps_its_comments_and_layout() -> None:
    text = (GOLDEN / "cases" / "official-airflow-2.10-webserver.yaml").read_text()
    text = text.replace("  name: af-webserver\n", "  name: af-webserver  # keep me\n")
    code, out, _ = cli_mutate(text)
    assert code == 0
    assert "  name: af-webserver  # keep me\n" in out
    assert out.startswith("# Official-chart webserver on Airflow 2.10")
    assert "    matchLabels: {tier: airflow, component: webserver, release: af}\n" in out


def test_a_one_element_json_array_stays_an_array() -> None:
    scheduler = yaml.safe_load((GOLDEN / "cases" / "plain-mirror-scheduler.yaml").read_text())
    code, out, _ = cli_mutate(json.dumps([scheduler]))
    assert code == 0
    assert isinstance(json.loads(out), list) and len(json.loads(out)) == 1
    code, out, _ = cli_mutate(json.dumps(scheduler))
    assert code == 0 and isinstance(json.loads(out), dict)


@pytest.mark.parametrize("text", ["", "\n", "---\n", "---\n---\n", "# only a comment\n", "[]"])
def test_empty_input_is_an_error(text: str) -> None:
    code, out, err = cli_mutate(text)
    assert code == 2 and out == ""
    assert "error: no Kubernetes objects in the input" in err


def test_an_empty_resource_list_is_valid() -> None:
    code, out, _ = cli_mutate(
        json.dumps({"apiVersion": "config.kubernetes.io/v1", "kind": "ResourceList", "items": []})
    )
    assert code == 0
    assert json.loads(out)["items"] == []


def test_null_label_values_do_not_make_an_object_invalid() -> None:
    code, out, err = cli_mutate((GOLDEN / "cases" / "null-label-values.yaml").read_text())
    assert code == 0
    assert "Deployment/af/af-scheduler: mutated injected" in err
    [doc] = [d for d in yaml.safe_load_all(out) if d]
    assert doc["metadata"]["labels"]["user"] is None, "the chart's value is left as rendered"
    assert "airflow-db-migrate" in [c["name"] for c in doc["spec"]["template"]["spec"]["initContainers"]]


def test_report_names_objects_and_ends_with_counts_per_reason() -> None:
    text = (
        (CHART_RENDERS / "apache-airflow-1.18.0-defaults.yaml")
        .read_text()
        .replace("  namespace: airflow\n", "")
    )
    code, _, err = cli_mutate(text)
    assert code == 0
    lines = err.splitlines()
    assert "Deployment/airflow-scheduler: mutated injected (profile=official component=scheduler)" in lines
    assert not any("/-/" in line for line in lines)
    assert lines[-1].startswith(f"{len([d for d in yaml.safe_load_all(text) if d])} objects, 3 mutated: ")
    assert "2 injected" in lines[-1] and "1 hook_job_marked" in lines[-1] and "unsupported_kind" in lines[-1]
    code, _, err = cli_mutate((GOLDEN / "cases" / "plain-mirror-scheduler.yaml").read_text())
    assert err.splitlines()[-1] == "1 object, 1 mutated: 1 injected"


# --- settings that would inject nothing are refused everywhere -----------------------------------------

NOTHING_OR_TYPO = ["", ",", " , ", "schedular", "scheduler,schedular"]


def resource_list(data: dict[str, object], key: str = "data") -> str:
    scheduler = yaml.safe_load((GOLDEN / "cases" / "plain-mirror-scheduler.yaml").read_text())
    return json.dumps(
        {
            "apiVersion": "config.kubernetes.io/v1",
            "kind": "ResourceList",
            "items": [scheduler],
            "functionConfig": {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "fn"},
                key: data,
            },
        }
    )


@pytest.mark.parametrize("value", NOTHING_OR_TYPO)
def test_krm_function_config_that_would_inject_nothing_is_refused(value: str) -> None:
    code, out, err = cli_mutate(resource_list({"migrating_components": value}))
    assert code == 2 and out == ""
    assert "migrating_components" in err


@pytest.mark.parametrize("value", NOTHING_OR_TYPO)
def test_config_file_that_would_inject_nothing_is_refused(value: str, tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"engine": {"migrating_components": value}}))
    code, _, err = cli_mutate(
        (GOLDEN / "cases" / "plain-mirror-scheduler.yaml").read_text(), "--config", str(config)
    )
    assert code == 2 and "migrating_components" in err


@pytest.mark.parametrize("value", ["all", "All", " ALL ", "all "])
def test_all_in_any_case_and_spacing(value: str) -> None:
    code, out, _ = cli_mutate(resource_list({"migrating_components": value}))
    assert code == 0
    assert "airflow-db-migrate" in out


def test_function_config_spec_is_read_and_stray_keys_are_refused() -> None:
    code, out, err = cli_mutate(resource_list({"migrating_components": "worker"}, key="spec"))
    assert code == 0 and "airflow-db-migrate" not in json.dumps(json.loads(out)["items"])
    assert "component_not_migrating" in err
    code, _, err = cli_mutate(resource_list({"migrating_components": "all"}, key="settings"))
    assert code == 2 and "put the settings under data" in err


# --- the KRM exec function, as kustomize runs it ---------------------------------------------------------

EXAMPLE = GOLDEN.parent.parent / "examples" / "kustomize"


def kustomize_input(render: Path) -> str:
    """A ResourceList as kustomize v5 writes it to an exec function: YAML, every item annotated with its
    index and path, the function's ConfigMap as functionConfig."""
    items = []
    for index, doc in enumerate(d for d in yaml.safe_load_all(render.read_text()) if d):
        annotations = doc.setdefault("metadata", {}).setdefault("annotations", None) or {}
        annotations.update(
            {
                "config.kubernetes.io/index": str(index),
                "internal.config.kubernetes.io/index": str(index),
                "internal.config.kubernetes.io/annotations-migration-resource-id": str(index),
                "config.kubernetes.io/path": f"airflow_{index}.yaml",
                "internal.config.kubernetes.io/path": f"airflow_{index}.yaml",
                "internal.config.kubernetes.io/id": str(index + 1),
            }
        )
        doc["metadata"]["annotations"] = annotations
        items.append(doc)
    function_config = yaml.safe_load((EXAMPLE / "airflow-migration-webhook.yaml").read_text())
    return yaml.safe_dump(
        {
            "apiVersion": "config.kubernetes.io/v1",
            "kind": "ResourceList",
            "items": items,
            "functionConfig": function_config,
        },
        sort_keys=False,
    )


@pytest.mark.parametrize("render", RENDERS, ids=lambda p: p.stem)
def test_the_shipped_krm_wrapper_answers_kustomize_in_kind(render: Path) -> None:
    text = kustomize_input(render)
    result = subprocess.run(
        [str(EXAMPLE / "airflow-migration-webhook-krm.sh")],
        input=text,
        capture_output=True,
        text=True,
        env={**os.environ, "AMW_BIN": str(REPO / ".venv" / "bin" / "airflow-migration-webhook")},
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    sent, answer = yaml.safe_load(text), yaml.safe_load(result.stdout)
    assert (answer["apiVersion"], answer["kind"]) == ("config.kubernetes.io/v1", "ResourceList")
    assert answer["functionConfig"] == sent["functionConfig"]
    assert len(answer["items"]) == len(sent["items"])
    for before, after in zip(sent["items"], answer["items"], strict=True):
        kept = {
            k: v
            for k, v in after["metadata"]["annotations"].items()
            if k in before["metadata"]["annotations"]
        }
        assert kept == before["metadata"]["annotations"], "kustomize's annotations must come back unchanged"
    release = release_of(sent["items"])  # the items are the release, as for `mutate`
    expected = [mutate(item, "CREATE", EngineConfig(), release).object for item in sent["items"]]
    assert answer["items"] == expected
    assert {r["severity"] for r in answer["results"]} <= {"info", "warning"}
    # only additions: the text kustomize sent is all there, in order
    opcodes = difflib.SequenceMatcher(
        None, text.splitlines(), result.stdout.splitlines(), autojunk=False
    ).get_opcodes()
    assert all(tag in ("equal", "insert") for tag, *_ in opcodes)
