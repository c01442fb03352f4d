"""Redis from Debian's `redis-server` package, as a class whose parts can be applied one by one."""

from importlib.resources import files

from tdx import Image


def _data(name: str) -> str:
    return str(files("tdx_redis").joinpath("data", name))


class Redis:
    """A Redis cache: `apply()` adds everything; `install`, `configure`, `service` add one part each."""

    def __init__(self, port: int = 6379, maxmemory: str = "256mb", datadir: str = "/var/lib/tdx-redis"):
        self.port = port
        self.maxmemory = maxmemory
        self.datadir = datadir
        self.config_path = "/etc/tdx-redis/redis.conf"

    def apply(self, image: Image) -> None:
        """The full stack: package, user and configuration, service."""
        self.install(image)
        self.configure(image)
        self.service(image)

    def install(self, image: Image) -> None:
        """The Debian package; its own redis-server.service is disabled (ours uses our config)."""
        image.install("redis-server")
        image.finalize("systemctl disable redis-server.service")

    def configure(self, image: Image) -> None:
        """The `cache` user owning the data directory, and the configuration file."""
        image.user("cache", system=True, home=self.datadir)
        image.template(
            src=_data("redis.conf.j2"),
            dest=self.config_path,
            vars={"port": self.port, "maxmemory": self.maxmemory, "datadir": self.datadir},
            mode="0640",
            owner="root",
            group="cache",
        )

    def service(self, image: Image) -> None:
        """The systemd service."""
        image.service(
            name="tdx-redis",
            exec=f"/usr/bin/redis-server {self.config_path}",
            after=["network.target"],
            restart="always",
            user="cache",
            ports=[self.port],
        )
