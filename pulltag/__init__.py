"""pulltag: tag container images in their registry once Kubernetes has really pulled them."""

__version__ = "0.1.0"
