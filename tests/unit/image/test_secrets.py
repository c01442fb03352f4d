"""Secrets in the rendered configuration: the agent, its manifest, unit and target; declarations only."""

from __future__ import annotations

from tdxstore.debian.mirror import declared_mirrors
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
    assert "'ssh' (the default)" in warning


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
