"""Kernel settings of an image (`image.kernel`): command line additions, console, kernel package.

`KernelSettings` is the mutable collector the Image exposes; `snapshot()` gives the frozen `Kernel`
that render.py reads. The console defaults to ttyS0 and only applies to bootable formats.
"""

from __future__ import annotations

from dataclasses import dataclass

from tdxstore.errors import ImageError
from tdxstore.image.model import _validate

DEFAULT_CONSOLE = "ttyS0"
DEFAULT_PACKAGE = "linux-image-cloud-amd64"
# A TDX guest needs Linux >= 6.9 for its EFI stub to measure the command line and initrd into RTMR2
# (the CC-measurement fallback of efi/libstub); bookworm's own kernel is 6.1, its backports kernel 6.12.
TDX_KERNEL = {"bookworm": "linux-image-cloud-amd64/bookworm-backports"}


def kernel_package(package: str, release: str) -> str:
    """The package to install: the default kernel becomes the release's TDX-capable one."""
    return TDX_KERNEL.get(release, package) if package == DEFAULT_PACKAGE else package


@dataclass(frozen=True, slots=True)
class Kernel:
    """Frozen kernel settings: extra command line words, console device (None: none), package."""

    cmdline: tuple[str, ...] = ()
    console: str | None = DEFAULT_CONSOLE
    package: str = DEFAULT_PACKAGE

    def __post_init__(self) -> None:
        for word in self.cmdline:
            if not isinstance(word, str) or not word or any(c.isspace() for c in word):
                raise ImageError(f"kernel command line word {word!r} is empty or contains whitespace",
                                 hint="one parameter per argument: kernel.cmdline('quiet', 'loglevel=3')",
                                 code="invalid-value")
        if self.console is not None and (not self.console or any(c.isspace() for c in self.console)):
            raise ImageError(f"kernel console {self.console!r} is not a device name",
                             hint="use e.g. 'ttyS0' or 'hvc0', or None for no console", code="invalid-value")
        _validate.package_name(self.package)

    def command_line(self) -> tuple[str, ...]:
        """The full list of words: console first, then the additions in declaration order."""
        head = (f"console={self.console}",) if self.console else ()
        return head + self.cmdline


class KernelSettings:
    """Mutable view used as `image.kernel`: `image.kernel.cmdline("quiet")`, `.console = "hvc0"`."""

    def __init__(self) -> None:
        self._state = Kernel()

    def cmdline(self, *words: str) -> KernelSettings:
        """Append kernel command line parameters (duplicates are kept once, first position wins)."""
        merged = list(self._state.cmdline)
        merged += [w for w in words if w not in merged]
        self._state = Kernel(tuple(merged), self._state.console, self._state.package)
        return self

    @property
    def console(self) -> str | None:
        return self._state.console

    @console.setter
    def console(self, value: str | None) -> None:
        self._state = Kernel(self._state.cmdline, value, self._state.package)

    @property
    def package(self) -> str:
        return self._state.package

    @package.setter
    def package(self, value: str) -> None:
        self._state = Kernel(self._state.cmdline, self._state.console, value)

    def snapshot(self) -> Kernel:
        return self._state

    def __repr__(self) -> str:
        return f"KernelSettings({self._state!r})"
