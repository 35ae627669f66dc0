"""A streaming sidecar that puts the Gemini Batch API behind Kafka."""

__version__ = "0.1.0"
__all__ = ["__version__"]
