"""Turn a `SandboxSpec` into a bubblewrap argv, the build environment and the synthesized /etc files.

Pure functions only: nothing here reads the file system, the host environment or the clock, so
the argv is golden-tested byte for byte (tests/data/sandbox/). The same spec always gives the
same argv; mounts come out sorted by target, the environment sorted by name.
"""

from __future__ import annotations

from pathlib import Path

from tdxstore.sandbox.spec import BUILD_DIR, STORE_DIR, SandboxSpec

#: Defaults a derivation may override (Nix sets PATH/HOME first, then the derivation's variables).
DEFAULT_ENV = {
    "PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
    "HOME": "/homeless-shelter",
    "SOURCE_DATE_EPOCH": "0",
    "TZ": "UTC",
    "LC_ALL": "C.UTF-8",
}

#: Files under /etc the sandbox writes itself and binds read-only over the root's own.
ETC_FILES = ("group", "hosts", "passwd")

#: Host files a fixed-output (network) build needs to resolve names and check TLS certificates.
#: `--ro-bind-try` skips a missing source, which keeps `bwrap_argv` free of file-system checks.
NETWORK_HOST_FILES = ("/etc/resolv.conf", "/etc/ssl/certs")

#: Debian's merged /usr: the links a `usr_only` root needs beside its /usr (link target, link).
MERGED_USR = (("usr/bin", "/bin"), ("usr/sbin", "/sbin"), ("usr/lib", "/lib"), ("usr/lib64", "/lib64"))

USER_NAME = "tdxbld"
GROUP_NAME = "tdxbld"


def sandbox_env(spec: SandboxSpec) -> dict[str, str]:
    """The complete environment of the build: defaults, then the derivation's, then enforced values.

    The temporary-directory variables, the store location and the core count are enforced
    after the derivation's own variables because the sandbox layout, not the derivation,
    decides them.
    """
    env = dict(DEFAULT_ENV)
    env.update(spec.env_items)
    for name in ("TMPDIR", "TEMPDIR", "TMP", "TEMP", "TDX_BUILD_TOP"):
        env[name] = BUILD_DIR
    env["TDX_STORE"] = STORE_DIR
    env["TDX_BUILD_CORES"] = str(spec.cores)
    return dict(sorted(env.items()))


def etc_files(spec: SandboxSpec) -> dict[str, str]:
    """The text of /etc/passwd, /etc/group and /etc/hosts for the build user (name -> content)."""
    home = DEFAULT_ENV["HOME"]
    passwd = [f"root:x:0:0:root:{BUILD_DIR}:/noshell"]
    group = ["root:x:0:"]
    if spec.uid != 0:
        passwd.append(f"{USER_NAME}:x:{spec.uid}:{spec.gid}:tdx build user:{home}:/noshell")
    if spec.gid != 0:
        group.append(f"{GROUP_NAME}:!:{spec.gid}:")
    passwd.append("nobody:x:65534:65534:nobody:/:/noshell")
    group.append("nogroup:x:65534:")
    hosts = ["127.0.0.1 localhost", "::1 localhost"]
    if spec.hostname != "localhost":
        hosts.append(f"127.0.1.1 {spec.hostname}")
    return {
        "group": "\n".join(group) + "\n",
        "hosts": "\n".join(hosts) + "\n",
        "passwd": "\n".join(passwd) + "\n",
    }


def bwrap_argv(spec: SandboxSpec, etc_dir: Path, bwrap: str = "bwrap") -> list[str]:
    """The full bwrap command line for `spec`; `etc_dir` holds the files from `etc_files(spec)`.

    Mount order matters to bwrap (each option applies in sequence): the root first, then the
    kernel file systems, then a tmpfs at the store directory that receives the store mounts and
    is made read-only afterwards (so a build cannot create new store entries), then the
    synthesized /etc files. The root must already contain every mount point (see
    `run.ROOT_MOUNT_POINTS`): it is bound read-only, so bwrap cannot create them. A `usr_only`
    root is bwrap's own writable tmpfs, where bwrap makes the mount points itself.
    """
    argv = [bwrap, "--unshare-all"]
    if spec.network:
        argv.append("--share-net")
    # --unshare-all only *tries* a user namespace; --uid/--gid need one for certain.
    argv += ["--unshare-user", "--die-with-parent", "--new-session", "--clearenv"]
    for name, value in sandbox_env(spec).items():
        argv += ["--setenv", name, value]
    argv += ["--hostname", spec.hostname, "--uid", str(spec.uid), "--gid", str(spec.gid)]
    if spec.usr_only:  # bwrap's own empty tmpfs root, the root's /usr, and the build dir
        argv += ["--ro-bind", str(spec.root / "usr"), "/usr"]
        for target, link in MERGED_USR:
            argv += ["--symlink", target, link]
        if spec.mount_at(BUILD_DIR) is None:
            argv += ["--tmpfs", BUILD_DIR]
    else:
        argv += ["--ro-bind", str(spec.root), "/"]
    argv += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "--tmpfs", STORE_DIR]
    for mount in spec.mounts:
        argv += ["--bind" if mount.writable else "--ro-bind", str(mount.source), mount.target]
    # Mounts below the store stay as bound (writable output, read-only inputs); the tmpfs
    # holding them becomes read-only so no other store entry can be created.
    argv += ["--remount-ro", STORE_DIR]
    for name in ETC_FILES:
        argv += ["--ro-bind", str(etc_dir / name), f"/etc/{name}"]
    if spec.network:
        for host_path in NETWORK_HOST_FILES:
            argv += ["--ro-bind-try", host_path, host_path]
    argv += ["--chdir", spec.cwd, "--", *spec.argv]
    return argv
