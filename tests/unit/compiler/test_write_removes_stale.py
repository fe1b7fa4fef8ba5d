"""The writer removes what an earlier compile of the same pipeline, target and config choices generated
and this one does not (a dropped `monitor` left its workflow running on GitHub), and nothing else: not
a file a person wrote, not another pipeline's, not one changed since it was generated."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from mlprism._internal.target import GeneratedFile
from mlprism._internal.write import MANIFEST_DIR, Owner, normalize, plan_output, write_files
from mlprism.diagnostics import DiagnosticError

OWNER = Owner("qs", "github-actions", (("env", "dev"),))
WF = ".github/workflows"


def files(*names: str, text: str = "# generated\n") -> dict[str, GeneratedFile]:
    return {n: GeneratedFile(f"{text}{n}\n") for n in names}


def tree(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def test_a_file_no_longer_generated_is_deleted_with_its_empty_directories(tmp_path: Path) -> None:
    write_files(tmp_path, files(f"{WF}/qs.yml", f"{WF}/qs-monitor.yml", "k8s/extra/serving.yaml"), owner=OWNER)
    result = write_files(tmp_path, files(f"{WF}/qs.yml"), owner=OWNER)
    assert result.removed == [f"{WF}/qs-monitor.yml", "k8s/extra/serving.yaml"]
    assert tree(tmp_path) == [f"{WF}/qs.yml", OWNER.manifest]
    assert not (tmp_path / "k8s").exists()
    manifest = json.loads((tmp_path / OWNER.manifest).read_text())
    assert list(manifest["files"]) == [f"{WF}/qs.yml"] and manifest["config_choices"] == {"env": "dev"}


def test_check_lists_what_compile_would_delete_and_touches_nothing(tmp_path: Path) -> None:
    write_files(tmp_path, files(f"{WF}/qs.yml", f"{WF}/qs-monitor.yml"), owner=OWNER)
    before = {p: (tmp_path / p).read_bytes() for p in tree(tmp_path)}
    result = write_files(tmp_path, files(f"{WF}/qs.yml"), check=True, owner=OWNER)
    assert result.removed == [f"{WF}/qs-monitor.yml"]
    assert result.stale == [OWNER.manifest]       # the manifest would lose the monitor
    assert {p: (tmp_path / p).read_bytes() for p in tree(tmp_path)} == before
    write_files(tmp_path, files(f"{WF}/qs.yml"), owner=OWNER)
    again = write_files(tmp_path, files(f"{WF}/qs.yml"), check=True, owner=OWNER)
    assert again.removed == [] and again.stale == []


def test_files_mlprism_did_not_generate_are_never_touched(tmp_path: Path) -> None:
    (tmp_path / WF).mkdir(parents=True)
    (tmp_path / WF / "lint.yml").write_text("mine\n")
    write_files(tmp_path, files(f"{WF}/qs.yml", f"{WF}/qs-monitor.yml"), owner=OWNER)
    write_files(tmp_path, files(f"{WF}/qs.yml"), owner=OWNER)
    assert (tmp_path / WF / "lint.yml").read_text() == "mine\n"


def test_another_pipeline_in_the_same_directory_keeps_its_files(tmp_path: Path) -> None:
    other = Owner("churn", "github-actions", (("env", "dev"),))
    write_files(tmp_path, files(f"{WF}/qs.yml", f"{WF}/qs-monitor.yml"), owner=OWNER)
    write_files(tmp_path, files(f"{WF}/churn.yml", f"{WF}/churn-monitor.yml"), owner=other)
    write_files(tmp_path, files(f"{WF}/qs.yml"), owner=OWNER)
    assert tree(tmp_path) == sorted([f"{WF}/churn-monitor.yml", f"{WF}/churn.yml", f"{WF}/qs.yml",
                                     OWNER.manifest, other.manifest])


def test_another_config_choice_adds_to_the_directory(tmp_path: Path) -> None:
    """kubernetes: compiling env=prod into the directory of env=dev adds overlays/prod, keeps overlays/dev."""
    prod = Owner("qs", "kubernetes", (("env", "prod"),))
    dev = Owner("qs", "kubernetes", (("env", "dev"),))
    write_files(tmp_path, files("base/wf.yaml", "base/schedules.yaml", "overlays/dev/params.yaml"), owner=dev)
    write_files(tmp_path, files("base/wf.yaml", "base/schedules.yaml", "overlays/prod/params.yaml"), owner=prod)
    assert "overlays/dev/params.yaml" in tree(tmp_path)
    # the spec drops the schedule: the dev compile keeps it while the prod manifest still lists it,
    # the prod compile then removes it
    write_files(tmp_path, files("base/wf.yaml", "overlays/dev/params.yaml"), owner=dev)
    assert (tmp_path / "base/schedules.yaml").exists()
    assert write_files(tmp_path, files("base/wf.yaml", "overlays/prod/params.yaml"), owner=prod).removed == [
        "base/schedules.yaml"]
    assert "overlays/dev/params.yaml" in tree(tmp_path) and "overlays/prod/params.yaml" in tree(tmp_path)


def test_a_file_changed_since_it_was_generated_is_kept_with_a_warning(tmp_path: Path) -> None:
    write_files(tmp_path, files(f"{WF}/qs.yml", f"{WF}/qs-monitor.yml"), owner=OWNER)
    (tmp_path / WF / "qs-monitor.yml").write_text("now mine\n")
    result = write_files(tmp_path, files(f"{WF}/qs.yml"), owner=OWNER)
    assert result.removed == [] and (tmp_path / WF / "qs-monitor.yml").read_text() == "now mine\n"
    (warning,) = result.warnings
    assert warning.code == "MLP306" and not warning.is_error and "changed since" in warning.message
    assert warning.hint
    # no longer tracked: no warning the next time, and the file stays
    assert write_files(tmp_path, files(f"{WF}/qs.yml"), owner=OWNER).warnings == []
    assert (tmp_path / WF / "qs-monitor.yml").exists()


def test_a_symlink_or_a_directory_where_a_file_was_generated_is_kept(tmp_path: Path) -> None:
    write_files(tmp_path, files("a.yml", "b.yml", "keep.yml"), owner=OWNER)
    (tmp_path / "a.yml").unlink()
    (tmp_path / "a.yml").symlink_to(tmp_path / "keep.yml")
    (tmp_path / "b.yml").unlink()
    (tmp_path / "b.yml").mkdir()
    result = write_files(tmp_path, files("keep.yml"), owner=OWNER)
    assert result.removed == [] and [w.code for w in result.warnings] == ["MLP306", "MLP306"]
    assert (tmp_path / "a.yml").is_symlink() and (tmp_path / "b.yml").is_dir()


def test_a_manifest_naming_paths_outside_is_ignored(tmp_path: Path) -> None:
    outside = tmp_path / "secret.txt"
    outside.write_text("x\n")
    out = tmp_path / "out"
    write_files(out, files("a.yml"), owner=OWNER)
    manifest = out / OWNER.manifest
    doc = json.loads(manifest.read_text())
    doc["files"]["../secret.txt"] = "blake3:" + __import__("blake3").blake3(b"x\n").hexdigest()
    manifest.write_text(json.dumps(doc))
    result = write_files(out, files("a.yml"), owner=OWNER)
    assert outside.exists() and result.removed == []
    assert [w.code for w in result.warnings] == ["MLP306"] and "never writes" in result.warnings[0].message


def test_an_unusable_manifest_is_a_warning_and_deletes_nothing(tmp_path: Path) -> None:
    write_files(tmp_path, files("a.yml", "b.yml"), owner=OWNER)
    other = tmp_path / Owner("churn", "github-actions").manifest
    other.write_text("{not json")
    result = write_files(tmp_path, files("a.yml"), owner=OWNER)
    assert result.removed == [] and (tmp_path / "b.yml").exists()
    assert [w.code for w in result.warnings] == ["MLP306"] and str(other) in result.warnings[0].message
    # b.yml stays listed: once the other manifest is fixed (here: removed), it goes
    other.unlink()
    assert write_files(tmp_path, files("a.yml"), owner=OWNER).removed == ["b.yml"]
    (tmp_path / OWNER.manifest).write_text("[]")
    result = write_files(tmp_path, files("a.yml"), owner=OWNER)
    assert [w.code for w in result.warnings] == ["MLP306"] and "is not an mlprism manifest" in result.warnings[0].message


def test_a_file_may_become_a_directory(tmp_path: Path) -> None:
    write_files(tmp_path, files("a", "b/c"), owner=OWNER)
    write_files(tmp_path, files("a/x", "b"), owner=OWNER)
    assert tree(tmp_path) == sorted(["a/x", "b", OWNER.manifest])


def test_the_manifest_is_deterministic_and_written_last(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    emitted = files("z.yml", "a.yml", "m/n.yml")
    one = plan_output(tmp_path, emitted, OWNER).files[OWNER.manifest].data()
    two = plan_output(tmp_path, dict(reversed(list(emitted.items()))), OWNER).files[OWNER.manifest].data()
    assert one == two and one.endswith(b"}\n") and b"\r" not in one
    import mlprism._internal.write as write

    order: list[str] = []
    real = write.atomic_write
    monkeypatch.setattr(write, "atomic_write", lambda path, data, executable=False: (
        order.append(path.relative_to(tmp_path).as_posix()), real(path, data, executable)))
    write_files(tmp_path, emitted, owner=OWNER)
    assert order[-1] == OWNER.manifest and sorted(order[:-1]) == order[:-1]
    assert (tmp_path / OWNER.manifest).read_bytes() == one


def test_the_manifest_name_holds_pipeline_target_and_choices() -> None:
    assert OWNER.manifest == f"{MANIFEST_DIR}/qs.github-actions.env=dev.json"
    assert Owner("qs", "my/target").manifest == f"{MANIFEST_DIR}/qs.my%2Ftarget.json"


def test_without_an_owner_the_writer_keeps_no_manifest(tmp_path: Path) -> None:
    write_files(tmp_path, files("a.yml"))
    assert tree(tmp_path) == ["a.yml"]


def test_a_target_cannot_emit_into_the_manifest_directory() -> None:
    with pytest.raises(DiagnosticError) as caught:
        normalize({f"{MANIFEST_DIR}/x.json": "{}"}, "make")
    assert caught.value.diagnostics[0].code == "MLP001"
    assert MANIFEST_DIR in caught.value.diagnostics[0].message


def test_executable_bit_survives_and_mode_is_not_in_the_manifest(tmp_path: Path) -> None:
    write_files(tmp_path, {"run.sh": GeneratedFile("#!/bin/sh\n", executable=True)}, owner=OWNER)
    assert os.access(tmp_path / "run.sh", os.X_OK)
    assert write_files(tmp_path, {}, owner=OWNER).removed == ["run.sh"]
