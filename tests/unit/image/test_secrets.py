"""Secrets in the rendered configuration: the agent, its manifest, unit and target; declarations only."""

from __future__ import annotations

from pathlib import Path

import pytest

from tdxstore.debian.mirror import declared_mirrors
from tdxstore.errors import ImageError
from tdxstore.image.model.image import Image
from tdxstore.image.render import image_packages, render_config
from tdxstore.image.secrets import AGENT_SOCKET, not_implemented
from tdxstore.mkosi.config import ImageFormat
from tdxstore.secrets import AGENT_FILE, MANIFEST_PATH

EXTRA = "mkosi.extra"


def test_no_secret_no_agent() -> None:
    image = Image("n", format="tar")
    out = render_config(image, ImageFormat.TAR, declared_mirrors({}))
    assert not any("tdx-secrets" in p or "secrets-ready" in p for p in out)
    assert "python3-minimal" not in image_packages(image, ImageFormat.TAR) and not_implemented(image) == ()


def test_ssh_default_agent_listens_on_the_relay_socket_and_says_what_is_missing() -> None:
    image = Image("n", format="tar")
    image.secret("TOKEN")
    out = render_config(image, ImageFormat.TAR, declared_mirrors({}))
    assert out[f"{EXTRA}/usr/lib/tdx-secrets/tdx-secrets-agent"] == AGENT_FILE.read_bytes()
    manifest = out[f"{EXTRA}{MANIFEST_PATH}"].decode()
    assert manifest == "tdx-secrets 1\ndelivery ssh\nsecret\tTOKEN\t/run/secrets/TOKEN\troot\t\t0400\n"
    unit = out[f"{EXTRA}/usr/lib/systemd/system/tdx-secrets-agent.service"].decode()
    assert f"--listen unix:{AGENT_SOCKET} " in unit and "Type=notify" in unit
    assert b"systemctl enable secrets-ready.target" in out["mkosi.postinst.d/30-services.chroot"]
    assert "python3-minimal" in image_packages(image, ImageFormat.TAR)
    (warning,) = not_implemented(image)
    assert "'ssh' (the default)" in warning and "authorized_keys=" in warning
    assert "openssh-server" not in image_packages(image, ImageFormat.TAR)


def test_vsock_delivery_is_complete_and_a_lone_delivery_warns() -> None:
    image = Image("n", format="tar")
    image.secret("TOKEN", owner="root", group="adm", mode=0o440)
    image.secret_delivery("vsock")
    out = render_config(image, ImageFormat.TAR, declared_mirrors({}))
    assert "--listen vsock:7979 " in out[f"{EXTRA}/usr/lib/systemd/system/tdx-secrets-agent.service"].decode()
    assert b"\tadm\t0440\n" in out[f"{EXTRA}{MANIFEST_PATH}"]
    assert not_implemented(image) == ()
    lone = Image("m", format="tar")
    lone.secret_delivery("vsock")
    (warning,) = not_implemented(lone)
    assert "declares no secret" in warning


KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAINNadhPSoTREmPTtEX6xEULVW/pOIuj3l+OO+iH4+nSD deliverer"


def test_ssh_delivery_carries_sshd_a_first_boot_host_key_and_no_private_key() -> None:
    image = Image("n", format="tar")
    image.secret("TOKEN")
    image.secret_delivery("ssh", authorized_keys=[KEY])
    out = render_config(image, ImageFormat.TAR, declared_mirrors({}))
    keys = out[f"{EXTRA}/usr/lib/tdx-secrets/authorized_keys.root"].decode().splitlines()
    relay = f'/usr/bin/python3 /usr/lib/tdx-secrets/tdx-secrets-agent --relay unix:{AGENT_SOCKET}'
    assert keys[1] == f'restrict,command="{relay}" {KEY}'
    sshd = out[f"{EXTRA}/etc/ssh/sshd_config.d/50-tdx-secrets.conf"].decode()
    assert "HostKey /etc/ssh/ssh_host_ed25519_key\n" in sshd and "PasswordAuthentication no\n" in sshd
    assert "AuthorizedKeysFile /usr/lib/tdx-secrets/authorized_keys.%u .ssh/authorized_keys\n" in sshd
    script = out[f"{EXTRA}/usr/lib/tdx-secrets/ssh-host-key"].decode()
    assert "ssh-keygen -q -t ed25519" in script and 'echo "tdx-ssh-host-key: $2 ED25519"' in script
    dropin = out[f"{EXTRA}/usr/lib/systemd/system/ssh.service.d/50-tdx-secrets.conf"]
    assert b"Requires=tdx-ssh-host-key.service" in dropin
    assert b"RemoveFiles=/etc/ssh/ssh_host_*\n" in out["mkosi.conf.d/50-tdx-secrets.conf"]
    agent = out[f"{EXTRA}/usr/lib/systemd/system/tdx-secrets-agent.service"].decode()
    assert "Wants=ssh.service systemd-networkd.service\n" in agent and "Before=ssh.service" not in agent
    assert {"openssh-server", "python3-minimal"} <= set(image_packages(image, ImageFormat.TAR))
    assert not any(b"PRIVATE KEY" in data for data in out.values())
    assert not_implemented(image) == ()


def test_ssh_keys_from_a_file_and_bad_keys(tmp_path: Path) -> None:
    (tmp_path / "deliver.pub").write_text(f"# who may deliver\n{KEY}\n\n")
    image = Image("n", format="tar")
    image.directory = tmp_path
    image.secret_delivery("ssh", authorized_keys="deliver.pub")
    assert image.delivery is not None and image.delivery.authorized_keys == (KEY,)
    for bad in ("ssh-ed25519", 'command="sh" ' + KEY, KEY + "\nssh-rsa AAAA"):
        with pytest.raises(ImageError) as e:
            Image("m", format="tar").secret_delivery("ssh", authorized_keys=[bad])
        assert e.value.code == "invalid-value"
    with pytest.raises(ImageError):
        Image("m", format="tar").secret_delivery("vsock", authorized_keys=[KEY])


def test_script_delivery_ships_the_script_and_runs_the_agent_on_it(tmp_path: Path) -> None:
    (tmp_path / "fetch.sh").write_text("#!/bin/sh\necho TOKEN=$(cat /dev/vdb)\n")
    image = Image("n", format="tar")
    image.directory = tmp_path
    image.secret("TOKEN")
    image.secret_delivery("script", fetch_script="fetch.sh")
    out = render_config(image, ImageFormat.TAR, declared_mirrors({}))
    assert out[f"{EXTRA}/usr/lib/tdx-secrets/fetch-secrets"] == (tmp_path / "fetch.sh").read_bytes()
    unit = out[f"{EXTRA}/usr/lib/systemd/system/tdx-secrets-agent.service"].decode()
    assert "--script /usr/lib/tdx-secrets/fetch-secrets\n" in unit and "TimeoutStartSec=600\n" in unit
    assert "openssh-server" not in image_packages(image, ImageFormat.TAR) and not_implemented(image) == ()
