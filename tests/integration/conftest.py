"""Fixtures shared by the integration tier."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import TELEMETRY_OFF
from tests.integration.services import postgres_server, s3_server, tracking_server  # noqa: F401 - session fixtures


@pytest.fixture(scope="session")
def prefect_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """A real Prefect API on a temp sqlite DB (PREFECT_HOME in tmp), started once per session.

    A module that defines its own ``prefect_api`` uses that one instead.
    """
    home = tmp_path_factory.mktemp("prefect_home")
    with pytest.MonkeyPatch.context() as mp:
        for k, v in {**TELEMETRY_OFF, "PREFECT_HOME": str(home)}.items():
            mp.setenv(k, v)
        from prefect.settings import (
            PREFECT_HOME,
            PREFECT_SERVER_ANALYTICS_ENABLED,
            PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS,
            temporary_settings,
        )
        from prefect.testing.utilities import prefect_test_harness

        # prefect may have been imported (settings read) before the env above
        with temporary_settings(
            updates={
                PREFECT_HOME: home,
                PREFECT_SERVER_ANALYTICS_ENABLED: False,
                PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS: 60,
            }
        ):
            with prefect_test_harness(server_startup_timeout=60):
                yield
