"""The saslauthd socket file gets its own owner, group and mode, like every listener."""

from __future__ import annotations

import grp
import os
import pwd
from pathlib import Path

import pytest

from mailwarden.config import SaslauthdConfig
from mailwarden.errors import ConfigError
from mailwarden.frontends.saslauthd import socket_owner, start_saslauthd
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
        socket_owner(config)
    assert raised.value.key == f"saslauthd.{key}"
