"""Several processes on JAX's distributed runtime share one run folder: the table equals a single process's."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from schurjax.cli import main
from schurjax.runtime.distributed import Processes, initialize

ARGS = [
    "zoo:flipflop/0",
    "--families",
    "band,all_nonnormal,eigen_groups",
    "--controls",
    "1",
    "--trials",
    "8",
    "--chunk-size",
    "8",
    "--quiet",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _processes(out, argvs):
    """Start one ``schurjax sweep`` per argv tail (each a process of one sweep over loopback); wait for all."""
    port = _free_port()
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "schurjax.cli",
                "sweep",
                *argv,
                "--out",
                str(out),
                "--coordinator",
                f"127.0.0.1:{port}",
                "--num-processes",
                str(len(argvs)),
                "--process-id",
                str(i),
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i, argv in enumerate(argvs)
    ]
    out = []
    for p in procs:
        try:
            _, err = p.communicate(timeout=300)
        finally:
            p.kill()
        out.append((p.returncode, [x for x in err.splitlines() if x.startswith("schurjax")]))
    return out


def test_two_processes_give_the_table_of_one(tmp_path):
    assert main(["sweep", *ARGS, "--out", str(tmp_path / "one")]) == 0
    results = _processes(tmp_path / "two", [ARGS, ARGS])
    assert [rc for rc, _ in results] == [0, 0], results
    assert (tmp_path / "two" / "table.csv").read_bytes() == (tmp_path / "one" / "table.csv").read_bytes()
    chunks = sorted((tmp_path / "two" / "chunks").glob("*.json"))
    assert len(chunks) == len(list((tmp_path / "one" / "chunks").glob("*.json")))


def test_processes_with_different_configs_stop_with_one_line(tmp_path):
    other = [a if a != "8" or ARGS[i - 1] != "--trials" else "9" for i, a in enumerate(ARGS)]
    results = _processes(tmp_path / "run", [ARGS, other])
    for rc, lines in results:
        assert rc == 2 and len(lines) == 1, results
        assert "processes [1] were given another sweep than process 0" in lines[0]
    assert not (tmp_path / "run" / "table.csv").exists()


def test_settings_go_together():
    assert initialize().count == 1  # nothing given, no cluster: one process, JAX untouched
    with pytest.raises(ValueError, match="coordinator, num_processes and process_id go together"):
        initialize("127.0.0.1:1234")
    with pytest.raises(ValueError, match="coordinator: must be HOST:PORT"):
        initialize("nohost", 2, 0)
    with pytest.raises(ValueError, match=r"process_id: must be an int in 0\.\.1"):
        initialize("127.0.0.1:1234", 2, 2)
    p = Processes(1, 3)
    assert [j for j in range(9) if p.mine(j)] == [1, 4, 7]


def test_four_devices_give_the_table_of_one(tmp_path):
    """--devices 4 (forced CPU devices) splits each chunk's variants across them: the same table, byte for byte."""
    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="--xla_force_host_platform_device_count=4")
    argv = [
        sys.executable,
        "-m",
        "schurjax.cli",
        "sweep",
        "zoo:flipflop/0",
        "--families",
        "single,band,all_nonnormal",
        "--controls",
        "1",
        "--control-max",
        "24",
        "--trials",
        "8",
        "--chunk-size",
        "48",
        "--quiet",
    ]
    for n in ("1", "4"):
        out = subprocess.run(
            [*argv, "--devices", n, "--out", str(tmp_path / n)], env=env, capture_output=True, text=True, timeout=300
        )
        assert out.returncode == 0, out.stderr
    assert (tmp_path / "4" / "table.csv").read_bytes() == (tmp_path / "1" / "table.csv").read_bytes()
    out = subprocess.run(
        [*argv, "--devices", "5", "--out", str(tmp_path / "5")], env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 2 and "--devices: must be 'all' or an int in 1..4" in out.stderr.strip().splitlines()[-1]
