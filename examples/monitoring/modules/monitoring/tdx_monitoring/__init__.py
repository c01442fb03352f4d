"""Monitoring module (spec §10.1): Prometheus node exporter running as the `monitoring` user."""

from importlib.resources import files

from tdx import Image


def apply(image: Image, metrics_port: int = 9090) -> None:
    """Add Prometheus node exporter and monitoring agent."""
    image.install("prometheus-node-exporter")

    image.user("monitoring", system=True)

    image.template(
        src=str(files("tdx_monitoring").joinpath("data", "prometheus.yml.j2")),
        dest="/etc/prometheus/prometheus.yml",
        vars={"metrics_port": metrics_port},
    )

    image.service(
        name="node-exporter",
        exec=f"/usr/bin/prometheus-node-exporter --web.listen-address=:{metrics_port}",
        restart="always",
        user="monitoring",
        ports=[metrics_port],
    )
    # The Debian package enables its own exporter on port 9100; ours replaces it. Finalize runs
    # after mkosi applies presets, so the package's unit stays disabled.
    image.finalize("systemctl disable prometheus-node-exporter.service")
