"""``evaluate.runner`` / ``evaluate.dask`` without a cluster: the settings, the runner built, the bounded check.

The real 2-worker runs are tests/integration/test_dask_fanout.py (marked ``scale``).
"""

from __future__ import annotations

import socket
import time

import pytest

from tests.conftest import ROOT


def _params(*sets: str):
    from trls_core.config import load_params

    return load_params(ROOT / "params.yaml", None, list(sets))


def _closed_port() -> int:
    """A loopback port nothing listens on (bound once to pick it, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_params_yaml_runs_units_inline_by_default() -> None:
    ev = _params().evaluate
    assert ev.runner == "inline"
    assert ev.dask.address is None and ev.dask.n_workers >= 1 and ev.dask.threads_per_worker == 1


def test_unknown_runner_and_bad_dask_values_fail_naming_the_key() -> None:
    from trls_core.errors import ConfigError

    with pytest.raises(ConfigError, match=r"evaluate\.runner"):
        _params("evaluate.runner=ray")
    with pytest.raises(ConfigError, match=r"evaluate\.dask\.n_workers"):
        _params("evaluate.runner=dask", "evaluate.dask.n_workers=0")
    with pytest.raises(ConfigError, match=r"evaluate\.dask\.connect_timeout_s"):
        _params("evaluate.dask.connect_timeout_s=0")


def test_local_cluster_runner_is_processes_with_the_settings_sizes() -> None:
    from prefect_dask import DaskTaskRunner

    from flows.dask_runner import dask_task_runner

    dask = _params("evaluate.runner=dask", "evaluate.dask.n_workers=3").evaluate.dask
    runner = dask_task_runner(dask)
    assert isinstance(runner, DaskTaskRunner) and runner.address is None
    kw = runner.cluster_kwargs
    assert (kw["n_workers"], kw["threads_per_worker"], kw["processes"], kw["host"]) == (3, 1, True, "127.0.0.1")
    assert runner.client_kwargs["timeout"] == dask.connect_timeout_s


def test_scheduler_address_runner_connects_there() -> None:
    from flows.dask_runner import dask_task_runner

    dask = _params("evaluate.runner=dask", "evaluate.dask.address=tcp://10.0.0.5:8786").evaluate.dask
    runner = dask_task_runner(dask)
    assert runner.address == "tcp://10.0.0.5:8786" and not runner.cluster_kwargs


@pytest.mark.parametrize("address", ["tcp://127.0.0.1:{port}", "not-an-address", "udp://127.0.0.1:{port}"])
def test_unreachable_or_malformed_scheduler_fails_in_bounded_time_naming_it(address: str) -> None:
    from flows.dask_runner import SchedulerUnreachable
    from flows.evaluate import check_unit_runner
    from trls_core.errors import TrlsError

    address = address.format(port=_closed_port())
    ev = _params("evaluate.runner=dask", f"evaluate.dask.address={address}", "evaluate.dask.connect_timeout_s=1.5")
    t0 = time.perf_counter()
    with pytest.raises(SchedulerUnreachable) as err:
        check_unit_runner(ev.evaluate)
    took = time.perf_counter() - t0
    assert issubclass(SchedulerUnreachable, TrlsError)  # the CLI's exit 2
    assert repr(address) in str(err.value) and "evaluate.dask.address" in str(err.value), err.value
    assert took < 1.5 + 3.0, f"{took:.1f} s for a 1.5 s connect timeout"


def test_inline_and_local_cluster_need_no_check() -> None:
    from flows.evaluate import check_unit_runner

    check_unit_runner(_params().evaluate)
    check_unit_runner(_params("evaluate.runner=dask").evaluate)  # null address: the flow starts its own cluster
