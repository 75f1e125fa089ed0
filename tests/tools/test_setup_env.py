"""Unit tests of the set-up logic that does not need a network or a build."""

import io
import platform
import stat
import subprocess
import sys
import tarfile
import textwrap
from pathlib import Path

import pytest

from tools import setup_env, setup_horovod


def test_requirement_name_normalises_and_skips_comments():
    assert setup_env.requirement_name("absl-py==2.5.1  # flags") == "absl-py"
    assert setup_env.requirement_name("PyYAML==6.0.3") == "pyyaml"
    assert setup_env.requirement_name("scikit_learn>=1.0") == "scikit-learn"
    assert setup_env.requirement_name("   # only a comment") is None
    assert setup_env.requirement_name("") is None
    with pytest.raises(setup_env.SetupError, match="cannot parse"):
        setup_env.requirement_name("==1.0")


def test_preinstalled_packages_are_reused_not_reinstalled():
    lines = ["# header", "numpy==2.4.6", "tqdm==4.70.1  # bars", "absl_py==2.5.1"]
    install, reused = setup_env.split_requirements(lines, {"numpy": "1.23.5", "absl-py": "1.4.0"})
    assert install == ["tqdm==4.70.1"]
    assert reused == {"numpy": "1.23.5", "absl-py": "1.4.0"}


def test_no_preinstalled_packages_installs_everything():
    install, reused = setup_env.split_requirements(["numpy==2.4.6", "tqdm==4.70.1"], {})
    assert install == ["numpy==2.4.6", "tqdm==4.70.1"]
    assert reused == {}


def test_constraints_pin_every_preinstalled_package():
    text = setup_env.constraints_for({"tensorflow": "2.10.1", "numpy": "1.23.5"})
    assert text == "numpy==1.23.5\ntensorflow==2.10.1\n"


def test_cache_key_names_every_ingredient():
    key = setup_horovod.horovod_cache_key("0.28.1", "2.21.0", "3.11.7", "x86_64", "gloo")
    assert key == "horovod-0.28.1-tf2.21.0-py3.11.7-x86_64-gloo"
    other_tf = setup_horovod.horovod_cache_key("0.28.1", "2.20.0", "3.11.7", "x86_64", "gloo")
    with_nccl = setup_horovod.horovod_cache_key("0.28.1", "2.21.0", "3.11.7", "x86_64", "gloo-nccl")
    assert len({key, other_tf, with_nccl}) == 3
    with pytest.raises(setup_env.SetupError, match="invalid"):
        setup_horovod.horovod_cache_key("0.28.1", "", "3.11.7", "x86_64", "gloo")
    with pytest.raises(setup_env.SetupError, match="invalid"):
        setup_horovod.horovod_cache_key("0.28.1", "2.21/0", "3.11.7", "x86_64", "gloo")


def test_patch_removes_only_the_xla_source_line():
    text = textwrap.dedent(
        """\
        list(APPEND TF_SOURCES "${PROJECT_SOURCE_DIR}/horovod/tensorflow/mpi_ops.cc")
        list(APPEND TF_SOURCES "${PROJECT_SOURCE_DIR}/horovod/tensorflow/xla_mpi_ops.cc")
        add_library(x)
        """
    )
    patched, removed = setup_horovod.patch_horovod_cmake(text)
    assert removed == 1
    assert "xla_mpi_ops" not in patched
    assert "/mpi_ops.cc" in patched and "add_library(x)" in patched
    assert setup_horovod.patch_horovod_cmake(patched) == (patched, 0)


def test_missing_includes_go_before_the_first_include_once():
    text = textwrap.dedent(
        """\
        // Licence.

        #ifndef GUARD_H
        #define GUARD_H

        #include <functional>
        #include <string>
        #include "message.h"
        """
    )
    patched, added = setup_horovod.add_missing_includes(text, ("stdexcept", "string"))
    assert added == ["stdexcept"]
    lines = patched.splitlines()
    assert lines.index("#include <stdexcept>") == lines.index("#include <functional>") - 1
    assert lines.index("#define GUARD_H") < lines.index("#include <stdexcept>")
    assert patched.replace("#include <stdexcept>\n", "", 1) == text
    assert setup_horovod.add_missing_includes(patched, ("stdexcept", "string")) == (patched, [])


def test_missing_includes_in_a_file_without_includes_go_first():
    patched, added = setup_horovod.add_missing_includes("int x;\n", ("string",))
    assert (patched, added) == ("#include <string>\nint x;\n", ["string"])


def test_span_patch_makes_the_copy_assignment_valid_once():
    text = textwrap.dedent(
        """\
          FLATBUFFERS_CONSTEXPR_CPP14 span &operator=(const span &other)
              FLATBUFFERS_NOEXCEPT {
            data_ = other.data_;
            count_ = other.count_;
          }

         private:
          const_pointer const other_;
          pointer const data_;
          const size_type count_;
        };
        """
    )
    patched, edits = setup_horovod.patch_flatbuffers_span(text)
    assert edits == 3
    assert "    count_ = other.count_;\n    return *this;\n  }\n" in patched
    assert "  pointer data_;\n  size_type count_;\n" in patched
    assert "const_pointer const other_;" in patched  # only span's two members lose const
    assert setup_horovod.patch_flatbuffers_span(patched) == (patched, 0)
    assert setup_horovod.patch_flatbuffers_span("class other {};\n") == ("class other {};\n", 0)


def test_source_patches_log_their_counts_and_skip_missing_files(tmp_path, capsys):
    cmake = tmp_path / "horovod" / "tensorflow" / "CMakeLists.txt"
    cmake.parent.mkdir(parents=True)
    cmake.write_text('list(APPEND TF_SOURCES "xla_mpi_ops.cc")\nadd_library(x)\n')
    common = tmp_path / "horovod" / "common" / "common.h"
    common.parent.mkdir(parents=True)
    common.write_text("#include <string>\n")
    setup_horovod.patch_horovod_source(tmp_path)
    out = capsys.readouterr().out
    assert cmake.read_text() == "add_library(x)\n"
    assert common.read_text() == "#include <stdexcept>\n#include <string>\n"
    assert "removed 1 xla_mpi_ops.cc line(s)" in out
    assert "added 1 include(s) to horovod/common/common.h: <stdexcept>" in out
    assert "horovod/common/group_table.h not found" in out
    assert "stl_emulation.h not found" in out
    setup_horovod.patch_horovod_source(tmp_path)
    assert "added 0 include(s) to horovod/common/common.h" in capsys.readouterr().out
    assert common.read_text() == "#include <stdexcept>\n#include <string>\n"


def test_check_build_summary_lists_enabled_items_per_section():
    out = textwrap.dedent(
        """\
        Horovod v0.28.1:

        Available Frameworks:
            [X] TensorFlow
            [ ] MXNet

        Available Controllers:
            [ ] MPI
            [X] Gloo

        Available Tensor Operations:
            [ ] NCCL
        """
    )
    assert setup_horovod.summarise_check_build(out) == (
        "Frameworks: TensorFlow; Controllers: Gloo; Tensor Operations: none"
    )


def _fake_python(tmp_path, body: str):
    script = tmp_path / "python"
    script.write_text(f"#!/bin/sh\n{body}\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return script


def test_detect_tensorflow_reports_the_version_or_none(tmp_path):
    (tmp_path / "with").mkdir()
    (tmp_path / "without").mkdir()
    has_tf = _fake_python(tmp_path / "with", "echo 'some warning' >&2; echo noise; echo 2.10.1")
    no_tf = _fake_python(tmp_path / "without", "echo 'ModuleNotFoundError' >&2; exit 1")
    assert setup_env.detect_tensorflow(has_tf) == "2.10.1"
    assert setup_env.detect_tensorflow(no_tf) is None
    assert setup_env.detect_tensorflow(tmp_path / "missing") is None


def test_detect_tensorflow_on_this_interpreter():
    try:
        import tensorflow as tf
    except ImportError:
        pytest.skip("TensorFlow is not importable here")
    assert setup_env.detect_tensorflow(sys.executable) == tf.__version__


def test_existing_venv_with_other_site_packages_mode_is_refused(tmp_path):
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").write_text("")
    (venv / "pyvenv.cfg").write_text("include-system-site-packages = false\n")
    env = setup_env.Environment(venv, tmp_path / "cache")
    with pytest.raises(setup_env.SetupError, match="without the system site-packages"):
        env.create(sys.executable, system_site_packages=True)
    env.create(sys.executable, system_site_packages=False)  # same mode: reused, no error


def test_gpu_operations_need_a_gpu_not_just_a_toolkit(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("DLRM_HOROVOD_GPU_OPERATIONS", raising=False)
    assert setup_horovod.gpu_operations() == "gloo"  # no nvidia-smi at all
    _fake_python(tmp_path, "exit 9").rename(tmp_path / "nvidia-smi")
    assert setup_horovod.gpu_operations() == "gloo"  # nvidia-smi present, no GPU
    _fake_python(tmp_path, "echo 'GPU 0: NVIDIA A100 (UUID: x)'").rename(tmp_path / "nvidia-smi")
    assert setup_horovod.gpu_operations() == "gloo-nccl"
    monkeypatch.setenv("DLRM_HOROVOD_GPU_OPERATIONS", "none")
    assert setup_horovod.gpu_operations() == "gloo"
    monkeypatch.setenv("DLRM_HOROVOD_GPU_OPERATIONS", "mpi")
    with pytest.raises(setup_env.SetupError, match="NCCL or NONE"):
        setup_horovod.gpu_operations()


def test_vendor_stack_is_tensorflow_keras_horovod_and_their_direct_requirements():
    # This interpreter has tensorflow-cpu, keras and horovod: their direct
    # requirements are pinned in an image; test tools and deeper packages are not.
    stack = setup_env.vendor_stack(sys.executable)
    assert {"keras", "numpy", "protobuf", "h5py", "ml-dtypes"} <= stack
    assert any(name.startswith("tensorflow") for name in stack)
    assert not {"pytest", "pygments", "ruff"} & stack


@pytest.mark.skipif(
    __import__("importlib").util.find_spec("horovod") is None, reason="Horovod not importable"
)
def test_written_horovodrun_launches_the_importable_horovod(tmp_path):
    # An image whose Horovod is preinstalled gets a horovodrun in the venv.
    launcher = tmp_path / "horovodrun"
    setup_horovod.write_horovodrun(launcher, Path(sys.executable))
    assert launcher.stat().st_mode & stat.S_IXUSR
    import horovod

    done = subprocess.run([str(launcher), "--version"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert horovod.__version__ in done.stdout


def test_optional_parts_only_on_request():
    assert not setup_env.requested({}, "DLRM_WITH_DOCKER")
    assert not setup_env.requested({"DLRM_WITH_SPARK": "0"}, "DLRM_WITH_SPARK")
    assert setup_env.requested({"DLRM_WITH_SPARK": "1"}, "DLRM_WITH_SPARK")
    assert setup_env.requested({"DLRM_WITH_SPARK": "yes"}, "DLRM_WITH_SPARK")
    with pytest.raises(setup_env.SetupError, match="DLRM_WITH_SPARK must be 1 or 0, got 'spark'"):
        setup_env.requested({"DLRM_WITH_SPARK": "spark"}, "DLRM_WITH_SPARK")


def test_spark_requirements_are_pinned_and_ci_asks_for_them():
    root = Path(setup_env.REPO_ROOT)
    lines = (root / "requirements-spark.txt").read_text().splitlines()
    pins = [ln for ln in lines if setup_env.requirement_name(ln)]
    assert [p.split("==")[0] for p in pins] == ["pyspark"] and all("==" in p for p in pins)
    assert "pyspark" not in (root / "requirements.txt").read_text()
    assert "export DLRM_WITH_SPARK=1" in (root / ".ci" / "run").read_text()


def test_setup_env_runs_as_a_script_with_one_error_class(tmp_path):
    # tools/setup_env.sh runs `python tools/setup_env.py`: tools/ is then sys.path[0] and the
    # Horovod step must raise the very SetupError that main() catches.
    tools_dir = Path(setup_env.__file__).parent
    code = (
        f"import sys; sys.path.insert(0, {str(tools_dir)!r}); import setup_env, setup_horovod; "
        "assert setup_horovod.SetupError is setup_env.SetupError; "
        "assert setup_env.setup_horovod is setup_horovod.setup_horovod; print('ok')"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=60
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "ok"


def _sdist(path: Path, members: list[tuple[str, str | None]]) -> Path:
    """A .tar.gz with regular files (name, None) and symlinks (name, target)."""
    with tarfile.open(path, "w:gz") as tar:
        for name, link in members:
            info = tarfile.TarInfo(name)
            if link is None:
                data = b"int main() {}\n"
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                info.type, info.linkname = tarfile.SYMTYPE, link
                tar.addfile(info)
    return path


@pytest.mark.parametrize("has_data_filter", [True, False], ids=["filter", "python<3.11.4"])
def test_sdist_extraction_on_pythons_with_and_without_the_data_filter(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, has_data_filter: bool
) -> None:
    if not has_data_filter:  # as on Debian 12's Python 3.11.2
        monkeypatch.delattr(tarfile, "data_filter", raising=False)
        monkeypatch.setattr(
            tarfile.TarFile,
            "extractall",
            _no_filter_keyword(tarfile.TarFile.extractall),
        )
    good = _sdist(
        tmp_path / "good.tar.gz",
        [("horovod-0.28.1/setup.py", None), ("horovod-0.28.1/link.py", "setup.py")],
    )
    out = tmp_path / "out"
    out.mkdir()
    setup_horovod.extract_sdist(good, out)
    assert (out / "horovod-0.28.1" / "setup.py").read_bytes() == b"int main() {}\n"
    for bad in ([("../escape.py", None)], [("horovod-0.28.1/out", "../../escape.py")]):
        archive = _sdist(tmp_path / "bad.tar.gz", bad)
        with pytest.raises(setup_env.SetupError, match="refusing to unpack"):
            setup_horovod.extract_sdist(archive, out)
    # An absolute name is refused, or (the data filter) unpacked below `out`.
    try:
        setup_horovod.extract_sdist(_sdist(tmp_path / "abs.tar.gz", [("/abs/x.py", None)]), out)
    except setup_env.SetupError as error:
        assert "refusing to unpack" in str(error)
    assert not Path("/abs/x.py").exists()
    assert not (tmp_path / "escape.py").exists()


def _no_filter_keyword(extractall):
    # Keeps newer Pythons from warning about the default filter; a Python that has no
    # filter (Debian 12's 3.11.2) must not be passed one.
    trusted = {"filter": "fully_trusted"} if hasattr(tarfile, "fully_trusted_filter") else {}

    def extract(self, path=".", members=None, *, numeric_owner=False, **kwargs):
        if kwargs:  # Python 3.11.2 has no `filter` argument
            raise TypeError(f"unexpected keyword argument {next(iter(kwargs))!r}")
        return extractall(self, path, members, numeric_owner=numeric_owner, **trusted)

    return extract


def test_a_python_the_set_up_cannot_use_is_named_with_the_versions_that_work() -> None:
    assert setup_env.python_problem((3, 11, 2), None) is None  # Debian 12
    assert setup_env.python_problem((3, 13, 5), None) is None  # Debian 13
    for version in ((3, 9, 2), (3, 14, 0)):
        message = setup_env.python_problem(version, None)
        assert message.startswith(f"Python {'.'.join(map(str, version))} is not supported")
        assert "use Python 3.10 to 3.13 (tested: 3.11.2" in message
    # A preinstalled TensorFlow (vendor image) decides itself which newer Python it runs on.
    assert setup_env.python_problem((3, 14, 0), "2.22.0") is None
    assert setup_env.python_problem((3, 9, 2), "2.15.0") is not None


def test_the_set_up_modules_parse_on_old_pythons_so_they_can_say_which_to_use() -> None:
    import ast

    for name in ("setup_env.py", "setup_common.py", "setup_horovod.py"):
        source = (Path(setup_env.__file__).parent / name).read_text()
        ast.parse(source, feature_version=(3, 7))  # raises SyntaxError otherwise


def test_inside_a_virtualenv_the_base_interpreter_is_the_one_whose_packages_count(
    tmp_path: Path,
) -> None:
    # As in the Docker image: the project's virtualenv is first on PATH, so `python3` is its
    # Python; the set-up must look at the interpreter the virtualenv was made from.
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp_path / "v")], check=True)
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); import setup_env; "
        "print(setup_env.base_interpreter())"
    )
    tools = str(Path(setup_env.__file__).parent)
    inside = subprocess.run(
        [str(tmp_path / "v" / "bin" / "python"), "-c", code, tools],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    outside = subprocess.run(
        [sys._base_executable, "-c", code, tools], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert Path(inside).resolve() == Path(sys._base_executable).resolve()
    assert outside == sys._base_executable


def test_a_cached_horovod_wheel_that_does_not_import_is_rebuilt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # E.g. a wheel staged from a machine with another C++ library: rebuild, do not fail.
    env = setup_env.Environment(tmp_path / "venv", tmp_path / "cache")
    (env.venv / "bin").mkdir(parents=True)
    (env.venv / "bin" / "horovodrun").write_text("")
    key = setup_horovod.horovod_cache_key(
        "0.28.1", "2.21.0", "{}.{}".format(*sys.version_info[:2]), platform.machine(), "gloo"
    )
    stale = tmp_path / "cache" / "wheels" / key / "horovod-0.28.1-cp3-cp3-linux.whl"
    stale.parent.mkdir(parents=True)
    stale.write_text("")
    rebuilt = tmp_path / "rebuilt.whl"
    probes = iter([None, None, "0.28.1"])  # not installed; stale wheel fails; rebuilt imports
    installs: list[list[str]] = []
    monkeypatch.setattr(setup_horovod, "gpu_operations", lambda: "gloo")
    monkeypatch.setattr(setup_horovod, "probe", lambda python, code: next(probes))
    monkeypatch.setattr(setup_horovod, "run", lambda step, cmd, hint, **kw: installs.append(cmd))
    monkeypatch.setattr(setup_horovod, "build_horovod_wheel", lambda *args: rebuilt)
    monkeypatch.setattr(
        setup_horovod.subprocess,
        "run",
        lambda *a, **k: subprocess.CompletedProcess(a, 0, "Available Frameworks:\n [X] TF\n", ""),
    )
    setup_horovod.setup_horovod(env, "2.21.0")
    assert [cmd[-1] for cmd in installs] == [str(stale), str(rebuilt)]
    assert "--force-reinstall" in installs[1] and "--force-reinstall" not in installs[0]
