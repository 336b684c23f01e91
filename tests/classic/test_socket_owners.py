"""The saslauthd and control socket files get their own owner, group and mode, like
every listener."""

from __future__ import annotations

import grp
import os
import pwd
from pathlib import Path

import pytest

from mailwarden.config import SaslauthdConfig, ServerConfig
from mailwarden.errors import ConfigError
from mailwarden.frontends.control import control_socket_owner, start_control
from mailwarden.frontends.saslauthd import saslauthd_socket_owner, start_saslauthd
from tests.conftest import EngineFactory
from tests.helpers import FAST

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")


async def test_the_socket_file_has_the_configured_owner_group_and_mode(
    tmp_path: Path, make_engine: EngineFactory
) -> None:
    config = SaslauthdConfig(
        enabled=True,
        socket=str(tmp_path / "mux"),
        socket_mode=0o660,
        socket_user="nobody",
        socket_group="nogroup",
    )
    server = await start_saslauthd(make_engine(FAST), config, resolve=Path)
    try:
        st = (tmp_path / "mux").stat()
        assert (st.st_uid, st.st_gid) == (
            pwd.getpwnam("nobody").pw_uid,
            grp.getgrnam("nogroup").gr_gid,
        )
        assert st.st_mode & 0o777 == 0o660
    finally:
        await server.close(drain=0)


@pytest.mark.parametrize("key", ["socket_user", "socket_group"])
def test_an_owner_that_does_not_exist_is_a_config_error_naming_the_key(key: str) -> None:
    config = SaslauthdConfig(**{key: "no-such-name-mw"})  # type: ignore[arg-type]
    with pytest.raises(ConfigError) as raised:
        saslauthd_socket_owner(config)
    assert raised.value.key == f"saslauthd.{key}"


async def test_the_control_socket_file_has_the_configured_owner_and_group(
    tmp_path: Path, make_engine: EngineFactory
) -> None:
    config = ServerConfig(control_socket_user="nobody", control_socket_group="nogroup")

    async def status() -> dict[str, object]:
        return {}

    server = await start_control(
        make_engine(FAST),
        tmp_path / "control",
        mode=0o660,
        status=status,
        owner=control_socket_owner(config),
    )
    try:
        st = (tmp_path / "control").stat()
        nobody, nogroup = pwd.getpwnam("nobody").pw_uid, grp.getgrnam("nogroup").gr_gid
        assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (nobody, nogroup, 0o660)
    finally:
        await server.close(drain=0)
    with pytest.raises(ConfigError) as raised:
        control_socket_owner(ServerConfig(control_socket_group="no-such-name-mw"))
    assert raised.value.key == "server.control_socket_group"
