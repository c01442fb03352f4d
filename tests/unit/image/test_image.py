"""Image model: every method's validation and every conflict error (code "conflict", both call sites)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tdxstore.builders.script import Build
from tdxstore.errors import ConflictError, ImageError
from tdxstore.image.model.hooks import Phase
from tdxstore.image.model.image import Image
from tdxstore.image.model.secret import DeliveryMethod
from tdxstore.mkosi.config import ImageFormat

HERE = Path(__file__).name


def sites(error: ConflictError) -> list[str]:
    """The file:line call sites named in a conflict message."""
    return re.findall(rf"{re.escape(HERE)}:\d+", error.message)


def assert_conflict(excinfo: pytest.ExceptionInfo[ConflictError]) -> None:
    assert excinfo.value.code == "conflict"
    found = sites(excinfo.value)
    assert len(found) == 2 and found[0] != found[1], excinfo.value.message
    assert excinfo.value.hint


def test_image_defaults_and_bases() -> None:
    image = Image("node-1")
    assert (image.distribution, image.release, image.format) == ("debian", "bookworm", ImageFormat.UKI)
    assert Image("x", base="debian/trixie", format="tar").format is ImageFormat.TAR
    assert HERE in str(image.site)


@pytest.mark.parametrize("base", ["ubuntu/noble", "debian", "debian/buster", ""])
def test_unknown_base(base: str) -> None:
    with pytest.raises(ImageError) as e:
        Image("x", base=base)
    assert e.value.code == "unknown-base"


@pytest.mark.parametrize("kwargs,code", [
    ({"name": "bad name"}, "invalid-name"), ({"name": ""}, "invalid-name"),
    ({"name": "x", "format": "qcow2"}, "invalid-value"),
])
def test_bad_image_arguments(kwargs: dict[str, str], code: str) -> None:
    with pytest.raises(ImageError) as e:
        Image(**kwargs)
    assert e.value.code == code


def test_install_sorted_deduplicated_and_validated() -> None:
    image = Image("x")
    image.install("jq", "curl")
    image.install(["curl", "libssl3", "python3=3.11.2-1+b1"])
    assert image.packages == ("curl", "jq", "libssl3", "python3=3.11.2-1+b1")
    for bad in ("Curl", "a b", "", "-x"):
        with pytest.raises(ImageError) as e:
            image.install(bad)
        assert e.value.code == "invalid-package"


def test_file_content_src_mode_owner(tmp_path: Path) -> None:
    (tmp_path / "app.conf").write_bytes(b"a=1\n")
    image = Image("x")
    image.directory = tmp_path
    image.file("/etc/app.conf", src="app.conf", mode="0600", owner="app")
    image.file("//etc//motd", content="hi\n")
    conf, motd = image.files
    assert (conf.dest, conf.content, conf.mode, conf.owner, conf.group) == ("/etc/app.conf", b"a=1\n", 0o600,
                                                                             "app", "app")
    assert conf.origin == str(tmp_path / "app.conf") and conf.needs_fixup
    assert (motd.dest, motd.content, motd.mode, motd.needs_fixup) == ("/etc/motd", b"hi\n", 0o644, False)


@pytest.mark.parametrize("kwargs,code", [
    ({"dest": "etc/x", "content": "a"}, "invalid-path"),
    ({"dest": "/etc/../x", "content": "a"}, "invalid-path"),
    ({"dest": "/", "content": "a"}, "invalid-path"),
    ({"dest": "/etc/x"}, "invalid-value"),
    ({"dest": "/etc/x", "content": "a", "src": "y"}, "invalid-value"),
    ({"dest": "/etc/x", "content": "a", "mode": "rw-"}, "invalid-mode"),
    ({"dest": "/etc/x", "content": "a", "mode": 0o10000}, "invalid-mode"),
    ({"dest": "/etc/x", "content": "a", "owner": "Bad Owner"}, "invalid-name"),
    ({"dest": "/etc/x", "src": "does-not-exist.conf"}, "missing-source"),
])
def test_file_rejects(kwargs: dict[str, str], code: str, tmp_path: Path) -> None:
    image = Image("x")
    image.directory = tmp_path
    with pytest.raises(ImageError) as e:
        image.file(**kwargs)  # type: ignore[arg-type]
    assert e.value.code == code
    if code == "missing-source":
        assert "does-not-exist.conf" in e.value.message


def test_template_renders_strictly(tmp_path: Path) -> None:
    (tmp_path / "t.j2").write_text("port={{ port }}\n{% include 'inc.j2' %}")
    (tmp_path / "inc.j2").write_text("net={{ network }}\n")
    image = Image("x")
    image.directory = tmp_path
    image.template("t.j2", "/etc/t.conf", vars={"port": 9090, "network": "holesky"})
    assert image.files[0].content == b"port=9090\nnet=holesky\n"
    with pytest.raises(ImageError) as e:
        image.template("t.j2", "/etc/u.conf", vars={"port": 1})
    assert e.value.code == "template-undefined"
    assert "'network'" in e.value.message and "inc.j2" in e.value.message
    (tmp_path / "bad.j2").write_text("{{ port ")
    with pytest.raises(ImageError) as e:
        image.template("bad.j2", "/etc/v.conf", vars={"port": 1})
    assert e.value.code == "template-syntax"


def test_template_missing_variable_names_variable_and_template(tmp_path: Path) -> None:
    (tmp_path / "cfg.j2").write_text("{{ datadir }} {{ network }}")
    image = Image("x")
    image.directory = tmp_path
    with pytest.raises(ImageError) as e:
        image.template("cfg.j2", "/etc/c", vars={"datadir": "/d"})
    assert e.value.code == "template-undefined"
    assert "'network'" in e.value.message and "cfg.j2" in e.value.message


def test_file_written_twice_is_a_conflict_naming_both_sites() -> None:
    image = Image("x")
    image.file("/etc/a", content="1")
    with pytest.raises(ConflictError) as e:
        image.file("/etc/a", content="2")
    assert_conflict(e)
    image.file("/etc/a", content="3", overwrite=True)
    image.file("/etc/a", content="3")  # identical re-definition is fine
    assert image.files[0].content == b"3"


def test_template_and_file_on_same_destination_conflict(tmp_path: Path) -> None:
    (tmp_path / "t.j2").write_text("x")
    image = Image("x")
    image.directory = tmp_path
    image.file("/etc/t", content="y")
    with pytest.raises(ConflictError) as e:
        image.template("t.j2", "/etc/t")
    assert_conflict(e)


def test_service_model() -> None:
    image = Image("x")
    image.service("app", exec=["/usr/bin/app", "--name", "a b"], after="network-online.target",
                  requires=["secrets-ready.target"], restart="always", user="app", group="app",
                  environment={"B": "2", "A": "1"}, working_directory="/var/lib/app", ports=[443, 80, 80],
                  extra_unit={"Service": {"MemoryMax": "8G", "LimitNOFILE": 65535}})
    (svc,) = image.services
    assert svc.exec == "/usr/bin/app --name 'a b'"
    assert svc.after == ("network-online.target",) and svc.ports == (80, 443)
    assert svc.environment == (("A", "1"), ("B", "2"))
    assert svc.extra_unit == (("Service", (("LimitNOFILE", ("65535",)), ("MemoryMax", ("8G",)))),)


@pytest.mark.parametrize("kwargs", [
    {"name": "a.service", "exec": "/x"}, {"name": "a b", "exec": "/x"}, {"name": "a", "exec": ""},
    {"name": "a", "exec": "/x\n/y"}, {"name": "a", "exec": "/x", "restart": "sometimes"},
    {"name": "a", "exec": "/x", "ports": [0]}, {"name": "a", "exec": "/x", "ports": [70000]},
    {"name": "a", "exec": "/x", "environment": {"1A": "x"}}, {"name": "a", "exec": "/x", "user": "Root"},
    {"name": "a", "exec": "/x", "working_directory": "rel"}, {"name": "a", "exec": "/x", "type": "daemon"},
    {"name": "a", "exec": "/x", "extra_unit": {"service": {"X": "1"}}},
    {"name": "a", "exec": "/x", "extra_unit": {"Service": {"memory-max": "1"}}},
    {"name": "a", "exec": "/x", "extra_unit": {"Service": {"MemoryMax": "1\n2"}}},
])
def test_service_rejects(kwargs: dict[str, object]) -> None:
    with pytest.raises(ImageError) as e:
        Image("x").service(**kwargs)  # type: ignore[arg-type]
    assert e.value.code in ("invalid-name", "invalid-value", "invalid-path")


def test_service_redefinition() -> None:
    image = Image("x")
    image.service("app", exec="/usr/bin/app", restart="always")
    image.service("app", exec="/usr/bin/app", restart="always")  # identical: fine
    with pytest.raises(ConflictError) as e:
        image.service("app", exec="/usr/bin/app", restart="on-failure")
    assert_conflict(e)


def test_two_services_claiming_a_port() -> None:
    image = Image("x")
    image.service("a", exec="/a", ports=[8080, 9090])
    with pytest.raises(ConflictError) as e:
        image.service("b", exec="/b", ports=[9090])
    assert_conflict(e)
    assert "9090" in e.value.message and "'a'" in e.value.message and "'b'" in e.value.message


def test_file_on_a_service_unit_path_conflicts() -> None:
    image = Image("x")
    image.service("a", exec="/a")
    with pytest.raises(ConflictError) as e:
        image.file("/etc/systemd/system/a.service", content="[Unit]\n")
    assert_conflict(e)
    image2 = Image("y")
    image2.file("/etc/systemd/system/b.service", content="[Unit]\n")
    with pytest.raises(ConflictError) as e:
        image2.service("b", exec="/b")
    assert_conflict(e)


def test_user_model_and_conflicts() -> None:
    image = Image("x")
    image.user("nethermind", system=True, home="/var/lib/nethermind")
    image.user("monitoring", shell="/bin/bash", groups=["adm"], uid=990, system=False)
    monitoring, nethermind = image.users
    assert (nethermind.home, nethermind.shell, nethermind.system) == ("/var/lib/nethermind",
                                                                      "/usr/sbin/nologin", True)
    assert (monitoring.groups, monitoring.uid, monitoring.system) == (("adm",), 990, False)
    image.user("nethermind", system=True, home="/var/lib/nethermind")  # identical: fine
    with pytest.raises(ConflictError) as e:
        image.user("nethermind", home="/srv/nethermind")
    assert_conflict(e)
    with pytest.raises(ConflictError) as e:
        image.user("other", uid=990)
    assert_conflict(e)
    for kwargs in ({"name": "Bad"}, {"name": "a", "home": "rel"}, {"name": "a", "uid": 0},
                   {"name": "a", "uid": 70000}, {"name": "a", "shell": "bash"},
                   {"name": "a", "groups": ["A B"]}):
        with pytest.raises(ImageError):
            image.user(**kwargs)  # type: ignore[arg-type]


def test_hooks_keep_order_and_phase() -> None:
    image = Image("x")
    image.run("echo 1")
    image.prepare("echo 2")
    image.finalize("echo 3")
    image.run("echo 4\necho 5")
    assert [(h.phase, h.command) for h in image.hooks] == [
        (Phase.POSTINST, "echo 1"), (Phase.PREPARE, "echo 2"), (Phase.FINALIZE, "echo 3"),
        (Phase.POSTINST, "echo 4\necho 5")]
    with pytest.raises(ImageError):
        image.run("   ")


def test_kernel_settings() -> None:
    image = Image("x")
    assert image.kernel.snapshot().command_line() == ("console=ttyS0",)
    image.kernel.cmdline("quiet", "loglevel=3").cmdline("quiet")
    image.kernel.console = "hvc0"
    assert image.kernel.snapshot().command_line() == ("console=hvc0", "quiet", "loglevel=3")
    image.kernel.console = None
    assert image.kernel.snapshot().command_line() == ("quiet", "loglevel=3")
    with pytest.raises(ImageError):
        image.kernel.cmdline("a b")
    with pytest.raises(ImageError):
        image.kernel.package = "Bad Kernel"


def test_build_records_opaque_objects() -> None:
    image = Image("x")
    build = Build.script(name="my-tool", src="./tools/my-tool/", build_script="make release",
                         artifacts={"build/my-tool": "/usr/local/bin/my-tool"}, build_deps=["cmake"])
    assert image.build(build) is build
    image.build(build)
    image.build(Build.script(name="my-tool", src="./tools/my-tool/", build_script="make release",
                             artifacts={"build/my-tool": "/usr/local/bin/my-tool"}, build_deps=["cmake"]))
    assert image.builds == (build,)
    with pytest.raises(ConflictError) as e:
        image.build(Build.script(name="my-tool", src=".", build_script="make", output="/opt/x"))
    assert_conflict(e)
    with pytest.raises(ImageError) as e2:
        image.build(object())
    assert e2.value.code == "invalid-value"


def test_secrets_are_declarations_only(tmp_path: Path) -> None:
    image = Image("x")
    image.directory = tmp_path
    image.secret("NETHERMIND_JWT", description="JWT", dest="/etc/nethermind/jwt.hex", owner="nethermind",
                 mode="0400")
    image.secret("API_KEY")
    api, jwt = image.secrets
    assert (jwt.dest, jwt.owner, jwt.mode) == ("/etc/nethermind/jwt.hex", "nethermind", 0o400)
    assert api.dest is None
    assert not hasattr(jwt, "value")
    image.secret_delivery("vsock")
    image.secret_delivery("vsock")
    assert image.delivery is not None and image.delivery.method is DeliveryMethod.VSOCK
    with pytest.raises(ConflictError) as e:
        image.secret_delivery("ssh")
    assert_conflict(e)
    for bad in ({"name": "BAD NAME"}, {"name": "A", "dest": "rel"}, {"name": "A", "mode": "9999"}):
        with pytest.raises(ImageError):
            image.secret(**bad)  # type: ignore[arg-type]
    with pytest.raises(ImageError):
        Image("y").secret_delivery("carrier-pigeon")
    with pytest.raises(ImageError):
        Image("y").secret_delivery("script")
    (tmp_path / "fetch.sh").write_text("#!/bin/sh\n")
    other = Image("z")
    other.directory = tmp_path
    other.secret_delivery("script", fetch_script="fetch.sh")
    assert other.delivery is not None and other.delivery.fetch_script == str(tmp_path / "fetch.sh")


def test_secret_conflicts() -> None:
    image = Image("x")
    image.secret("A", dest="/etc/a")
    with pytest.raises(ConflictError) as e:
        image.secret("A", dest="/etc/other")
    assert_conflict(e)
    with pytest.raises(ConflictError) as e:
        image.secret("B", dest="/etc/a")
    assert_conflict(e)
    with pytest.raises(ConflictError) as e:
        image.file("/etc/a", content="x")
    assert_conflict(e)
    image.file("/etc/c", content="x")
    with pytest.raises(ConflictError) as e:
        image.secret("C", dest="/etc/c")
    assert_conflict(e)
