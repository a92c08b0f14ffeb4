"""The offline `mutate` command: formats, envelopes, reports and errors."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from app.cli import build_parser
from tests.support import GOLDEN, REPO, cli_mutate

SCHEDULER = (GOLDEN / "cases" / "plain-mirror-scheduler.yaml").read_text()
NGINX = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "web"},
    "spec": {"template": {"spec": {"containers": [{"name": "web", "image": "nginx"}]}}},
}


def test_console_script_and_module_give_the_same_bytes() -> None:
    source = GOLDEN / "cases" / "plain-mirror-scheduler.yaml"
    module = subprocess.run(
        [sys.executable, "-m", "app", "mutate", "-f", str(source)],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=True,
    )
    script = subprocess.run(
        [str(REPO / ".venv" / "bin" / "airflow-migration-webhook"), "mutate", "-"],
        input=source.read_text(),
        capture_output=True,
        text=True,
        cwd=REPO,
        check=True,
    )
    assert (
        module.stdout
        == script.stdout
        == (GOLDEN / "expected" / "plain-mirror-scheduler.injected.yaml").read_text()
    )
    assert "Deployment/data/scheduler: mutated injected (profile=plain component=scheduler)" in module.stderr


def test_unreadable_yaml_names_the_document_and_writes_nothing() -> None:
    text = SCHEDULER + "\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: [unclosed\n"
    code, out, err = cli_mutate(text)
    assert code == 2
    assert out == ""
    assert "document 2" in err and "invalid YAML" in err


def test_a_document_that_is_not_an_object_is_refused() -> None:
    code, out, err = cli_mutate(SCHEDULER + "\n---\n- just\n- a list\n")
    assert (code, out) == (2, "")
    assert "document 2 is a list" in err


def test_a_document_without_kind_is_refused() -> None:
    code, out, err = cli_mutate("apiVersion: v1\nmetadata: {name: x}\n")
    assert (code, out) == (2, "")
    assert "document 1 has no string `apiVersion` and `kind`" in err


def test_invalid_json_is_refused() -> None:
    code, out, err = cli_mutate('{"apiVersion": "v1", ')
    assert (code, out) == (2, "")
    assert "invalid JSON" in err


def test_missing_file_is_a_clear_error() -> None:
    code, out, err = cli_mutate("", "-f", "/nonexistent/manifests.yaml")
    assert (code, out) == (2, "")
    assert "cannot read /nonexistent/manifests.yaml" in err


def test_bad_config_is_a_clear_error(tmp_path) -> None:  # type: ignore[no-untyped-def]
    config = tmp_path / "config.yaml"
    config.write_text("engine:\n  migrating_components: 5\n  surprise: true\n")
    code, out, err = cli_mutate(SCHEDULER, "--config", str(config))
    assert (code, out) == (2, "")
    assert "engine.surprise" in err


def test_config_file_changes_the_engine(tmp_path) -> None:  # type: ignore[no-untyped-def]
    config = tmp_path / "config.yaml"
    config.write_text("engine:\n  migrating_components: [worker]\n")
    code, out, err = cli_mutate(SCHEDULER, "--config", str(config))
    assert code == 0
    assert "skipped component_not_migrating" in err
    assert yaml.safe_load(out) == yaml.safe_load(SCHEDULER)


def test_json_in_json_out_same_order() -> None:
    docs = [NGINX, *yaml.safe_load_all(SCHEDULER)]
    code, out, err = cli_mutate(json.dumps(docs))
    assert code == 0
    result = json.loads(out)
    assert [d["metadata"]["name"] for d in result] == ["web", "scheduler"]
    assert result[0] == NGINX
    assert any(
        c["name"] == "airflow-db-migrate" for c in result[1]["spec"]["template"]["spec"]["initContainers"]
    )
    assert err.splitlines()[-1] == "2 objects, 1 mutated: 1 injected, 1 not_airflow"


def test_list_is_answered_as_a_list() -> None:
    listing = {
        "apiVersion": "v1",
        "kind": "List",
        "metadata": {},
        "items": [NGINX, yaml.safe_load(SCHEDULER)],
    }
    code, out, _ = cli_mutate(yaml.safe_dump(listing))
    assert code == 0
    result = yaml.safe_load(out)
    assert result["kind"] == "List" and len(result["items"]) == 2
    assert "airflow-migration-webhook/status" in result["items"][1]["metadata"]["annotations"]


def test_resource_list_runs_as_a_krm_function() -> None:
    resource_list = {
        "apiVersion": "config.kubernetes.io/v1",
        "kind": "ResourceList",
        "items": [NGINX, yaml.safe_load(SCHEDULER)],
        "functionConfig": {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "fn"}},
    }
    code, out, _ = cli_mutate(yaml.safe_dump(resource_list))
    assert code == 0
    result = yaml.safe_load(out)
    assert result["kind"] == "ResourceList"
    assert result["functionConfig"] == resource_list["functionConfig"]
    assert result["items"][0] == NGINX
    messages = [r["message"] for r in result["results"]]
    assert messages[0].startswith("skipped not_airflow") and messages[1].startswith("mutated injected")
    assert result["results"][1]["resourceRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "scheduler",
        "namespace": "data",
    }


def test_empty_documents_are_kept_and_quiet_mode_reports_only_changes() -> None:
    text = "---\n---\n" + SCHEDULER + "---\n" + yaml.safe_dump(NGINX)
    code, out, err = cli_mutate(text, "-q")
    assert code == 0
    assert out.startswith("---\n---\n"), "an empty document stays where it was"
    assert len([d for d in yaml.safe_load_all(out) if d]) == 2
    assert err.splitlines() == [
        "Deployment/data/scheduler: mutated injected (profile=plain component=scheduler)",
        "2 objects, 1 mutated: 1 injected, 1 not_airflow",
    ]


def test_krm_function_config_overrides_the_engine_configuration() -> None:
    resource_list = {
        "apiVersion": "config.kubernetes.io/v1",
        "kind": "ResourceList",
        "items": [yaml.safe_load(SCHEDULER)],
        "functionConfig": {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "fn"},
            "data": {"migrating_components": "worker"},
        },
    }
    code, out, _ = cli_mutate(yaml.safe_dump(resource_list))
    assert code == 0
    assert yaml.safe_load(out)["results"][0]["message"].startswith("skipped component_not_migrating")
    resource_list["functionConfig"]["data"] = {"surprise": "yes"}
    code, out, err = cli_mutate(yaml.safe_dump(resource_list))
    assert (code, out) == (2, "") and "invalid functionConfig: surprise" in err


def test_certs_says_which_files_it_reused_and_which_it_wrote(tmp_path: Path) -> None:
    out_dir = tmp_path / "certs"
    for run in ("first", "second"):
        result = subprocess.run(
            [sys.executable, "-m", "app", "certs", "--out-dir", str(out_dir)], capture_output=True, text=True
        )
        assert result.returncode == 0, result.stderr
        lines = result.stderr.splitlines()
        if run == "first":
            assert lines == [
                f"wrote {out_dir}/ca.crt, {out_dir}/ca.key, {out_dir}/tls.crt, {out_dir}/tls.key"
            ]
        else:
            assert lines == [
                f"reused {out_dir}/ca.crt, {out_dir}/ca.key (--force makes a new CA)",
                f"wrote {out_dir}/tls.crt, {out_dir}/tls.key",
            ]


@pytest.mark.parametrize("command", ["serve", "mutate", "reconcile", "doctor"])
def test_help_names_values_after_their_flags(command: str) -> None:
    """`--kubeconfig KUBECONFIG`, never an internal destination name such as OPTION_KUBECONFIG."""
    parser = build_parser()
    sub = next(
        action for action in parser._actions if isinstance(action, argparse._SubParsersAction)
    ).choices[command]
    text = sub.format_help()
    assert "OPTION_" not in text, text
    if command == "doctor":
        assert "--kubeconfig KUBECONFIG" in text and "--namespace-label-key NAMESPACE_LABEL_KEY" in text
